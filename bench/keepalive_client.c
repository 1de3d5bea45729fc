/* Benchmark client: N sequential keep-alive GET requests on one connection,
 * the way an API client loops. Prints its own CPU time (user + system,
 * every thread of the process, so the shim's exporter thread is included)
 * per request, and the wall time. The process exits through exit(), so the
 * shim's exit flush is part of what is measured.
 *
 *   keepalive_client PORT N
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

int main(int argc, char **argv)
{
	int port, n, fd;
	char req[256], buf[4096];
	struct timespec t0, t1;
	int len;

	if (argc != 3)
		return 2;
	port = atoi(argv[1]);
	n = atoi(argv[2]);
	fd = connect_local(port);
	if (fd < 0)
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		len = format_request(req, sizeof(req), i, port);
		if (write(fd, req, (size_t)len) != len)
			return 1;
		/* The response is small and fixed: read until its body ends. */
		size_t have = 0;
		for (;;) {
			ssize_t r = read(fd, buf + have, sizeof(buf) - have);
			if (r <= 0)
				return 1;
			have += (size_t)r;
			char *e = memmem(buf, have, "\r\n\r\n", 4);
			if (e && (size_t)(e + 4 - buf) + 16 <= have)
				break;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(fd);
	print_result(n, &t0, &t1);
	return 0;
}
