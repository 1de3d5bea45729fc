/* Benchmark server: HTTP/1.1 keep-alive on a loopback port, one thread per
 * connection, answers every request with a small fixed response. Serves
 * both the benchmark client's requests and the shim's OTLP posts (for
 * those it returns an empty 200 protobuf body). Counts requests per path
 * prefix, and the spans inside the OTLP posts (a minimal protobuf walk:
 * ExportTraceServiceRequest.resource_spans(1) -> ResourceSpans.scope_spans(2)
 * -> ScopeSpans.spans(2)), and prints the counts on SIGTERM/SIGINT.
 *
 *   http_sink PORT_FILE     (binds 127.0.0.1:0, writes the port there)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static _Atomic unsigned long app_requests, otlp_requests, otlp_bytes, otlp_spans;

static bool varint(const unsigned char **p, const unsigned char *e, unsigned long *v)
{
	*v = 0;
	for (int shift = 0; *p < e && shift < 64; shift += 7) {
		unsigned char b = *(*p)++;
		*v |= (unsigned long)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* Spans in one message at nesting @depth (0 = the request). */
static unsigned long count_spans(const unsigned char *p, const unsigned char *e, int depth)
{
	unsigned long n = 0, key, len;

	while (p < e && varint(&p, e, &key)) {
		unsigned field = (unsigned)(key >> 3), wire = key & 7;

		if (wire == 0) {
			if (!varint(&p, e, &len))
				break;
		} else if (wire == 1 || wire == 5) {
			p += wire == 1 ? 8 : 4;
		} else if (wire == 2) {
			if (!varint(&p, e, &len) || len > (unsigned long)(e - p))
				break;
			if (depth == 2 && field == 2)
				n++;
			else if ((depth == 0 && field == 1) || (depth == 1 && field == 2))
				n += count_spans(p, p + len, depth + 1);
			p += len;
		} else {
			break;
		}
	}
	return n;
}

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	static const char app_resp[] =
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
		"{\"status\":\"ok\"}\n";
	static const char otlp_resp[] =
		"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
	char *buf = malloc(1 << 20);
	size_t have = 0;

	if (!buf) {
		close(fd);
		return NULL;
	}
	for (;;) {
		char *end;
		ssize_t n;

		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			if (have == (1 << 20))
				goto out;
			n = read(fd, buf + have, (1 << 20) - have);
			if (n <= 0)
				goto out;
			have += (size_t)n;
		}
		size_t head = (size_t)(end + 4 - buf);
		size_t clen = 0;
		char *cl = memmem(buf, head, "\r\nContent-Length:", 17);
		if (!cl)
			cl = memmem(buf, head, "\r\ncontent-length:", 17);
		if (cl)
			clen = strtoul(cl + 17, NULL, 10);
		bool otlp = head > 12 && memcmp(buf, "POST /v1/traces", 15) == 0;
		/* Drain the body (possibly larger than the buffer). */
		size_t need = head + clen;
		bool whole = need <= (1 << 20);
		while (have < need) {
			if (have == (1 << 20)) {
				need -= have;
				have = 0;
			}
			size_t room = (1 << 20) - have;
			n = read(fd, buf + have, need - have < room ? need - have : room);
			if (n <= 0)
				goto out;
			have += (size_t)n;
		}
		if (otlp) {
			otlp_requests++;
			otlp_bytes += clen;
			/* Only when the whole body fit in the buffer (it does
			 * for batches under 1 MiB). */
			if (whole)
				otlp_spans += count_spans((unsigned char *)buf + head,
							  (unsigned char *)buf + need, 0);
			if (write(fd, otlp_resp, sizeof(otlp_resp) - 1) < 0)
				goto out;
		} else {
			app_requests++;
			if (write(fd, app_resp, sizeof(app_resp) - 1) < 0)
				goto out;
		}
		memmove(buf, buf + need, have - need);
		have -= need;
	}
out:
	close(fd);
	free(buf);
	return NULL;
}

static void report(int sig)
{
	char line[200];
	int n = snprintf(line, sizeof(line),
			 "app_requests=%lu otlp_requests=%lu otlp_bytes=%lu otlp_spans=%lu\n",
			 app_requests, otlp_requests, otlp_bytes, otlp_spans);
	(void)!write(1, line, (size_t)n);
	_exit(sig == SIGTERM ? 0 : 1);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int one = 1, s = socket(AF_INET, SOCK_STREAM, 0);
	FILE *f;

	if (argc != 2)
		return 2;
	signal(SIGTERM, report);
	signal(SIGINT, report);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (struct sockaddr *)&sin, sizeof(sin)) || listen(s, 64))
		return 1;
	getsockname(s, (struct sockaddr *)&sin, &len);
	f = fopen(argv[1], "w");
	fprintf(f, "%d\n", ntohs(sin.sin_port));
	fclose(f);
	for (;;) {
		int c = accept(s, NULL, NULL);
		pthread_t t;
		if (c < 0)
			continue;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pthread_create(&t, NULL, serve, (void *)(long)c);
		pthread_detach(t);
	}
}
