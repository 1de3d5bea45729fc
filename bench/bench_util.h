/* What the benchmark clients share (keepalive_client.c over TCP,
 * tls_client.c over OpenSSL): the connection, the requests they loop over
 * and the result line bench/run.py reads, so that the plain and HTTPS
 * figures measure the same requests. Header-only.
 */
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

/* CPU time of the whole process (user + system, every thread: the shim's
 * exporter thread included). */
static inline double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* A TCP connection to 127.0.0.1:@port with Nagle off, or -1. */
static inline int connect_local(int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sin.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)))
		return -1;
	return fd;
}

/* Request number @i, a small GET as an API client sends it, into @req;
 * returns its length. */
static inline int format_request(char *req, size_t cap, int i, int port)
{
	return snprintf(req, cap,
			"GET /v1/models/%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
			"User-Agent: bench/1.0\r\nAccept: application/json\r\n\r\n",
			i, port);
}

/* The line bench/run.py parses: @n requests between @t0 and @t1, and the
 * CPU time so far (the exit flush comes after it). */
static inline void print_result(int n, const struct timespec *t0, const struct timespec *t1)
{
	printf("requests=%d wall_s=%.4f cpu_before_exit_s=%.4f\n", n,
	       (double)(t1->tv_sec - t0->tv_sec) + (double)(t1->tv_nsec - t0->tv_nsec) / 1e9,
	       cpu_seconds());
	fflush(stdout);
}
