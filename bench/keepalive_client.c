/* Benchmark client: N sequential keep-alive GET requests on one connection,
 * the way an API client loops. Prints its own CPU time (user + system,
 * every thread of the process, so the shim's exporter thread is included)
 * per request, and the wall time. The process exits through exit(), so the
 * shim's exit flush is part of what is measured.
 *
 *   keepalive_client PORT N
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
	int port, n, one = 1, fd;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char req[256], buf[4096];
	struct timespec t0, t1;
	int len;

	if (argc != 3)
		return 2;
	port = atoi(argv[1]);
	n = atoi(argv[2]);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sin.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)))
		return 1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		len = snprintf(req, sizeof(req),
			       "GET /v1/models/%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
			       "User-Agent: bench/1.0\r\nAccept: application/json\r\n\r\n",
			       i, port);
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
	printf("requests=%d wall_s=%.4f cpu_before_exit_s=%.4f\n", n,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
	       cpu_seconds());
	fflush(stdout);
	return 0;
}
