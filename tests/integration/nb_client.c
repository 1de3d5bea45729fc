/* A small HTTP client exercising the awkward write paths: non-blocking
 * socket, tiny SO_SNDBUF, partial writes, EAGAIN (poll and retry), and in
 * "blocking" mode EINTR from an interval timer whose handler is installed
 * without SA_RESTART. It accounts for every byte with the counts the
 * kernel (or the shim) reports, so a count that includes injected bytes
 * shows up as a short body on the server.
 *
 *   nb_client MODE PORT BODY_BYTES REQUESTS OUT_FILE
 *     MODE: nonblocking | blocking
 *   Writes the exact bytes it sent (its own view) to OUT_FILE and prints
 *   "ok <bytes>" on success.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks;

static void on_alarm(int sig)
{
	(void)sig;
	ticks++;
}

static int wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;

	do
		r = poll(&p, 1, 10000);
	while (r < 0 && errno == EINTR);
	return r > 0 ? 0 : -1;
}

static size_t zeros; /* write() returning 0 for a non-empty buffer */

static int send_all(int fd, const char *buf, size_t len, int nonblocking, size_t *partials,
		    size_t *eintrs, size_t *eagains)
{
	size_t off = 0;
	int guard = 0;

	while (off < len) {
		ssize_t n = write(fd, buf + off, len - off);
		if (n < 0) {
			if (errno == EINTR) {
				(*eintrs)++;
				continue;
			}
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				(*eagains)++;
				if (wait_fd(fd, POLLOUT) < 0)
					return -1;
				continue;
			}
			perror("write");
			return -1;
		}
		if (n == 0) {
			zeros++;
			if (++guard > 1000)
				return -1;
		}
		if ((size_t)n < len - off)
			(*partials)++;
		off += (size_t)n;
	}
	(void)nonblocking;
	return 0;
}

/* Read one response with a Content-Length body. */
static int read_response(int fd, int *status)
{
	char buf[65536];
	size_t have = 0;
	long clen = -1;
	char *body = NULL;

	for (int guard = 0; guard < 100000; guard++) {
		ssize_t n;

		if (body && clen >= 0 && (size_t)(body - buf) + (size_t)clen <= have)
			return 0;
		n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (wait_fd(fd, POLLIN) < 0)
					return -1;
				continue;
			}
			return -1;
		}
		if (n == 0)
			return -1;
		have += (size_t)n;
		buf[have] = '\0';
		if (!body) {
			char *end = strstr(buf, "\r\n\r\n");
			if (end) {
				char *cl = strcasestr(buf, "\r\ncontent-length:");
				body = end + 4;
				*status = atoi(buf + 9);
				clen = cl ? atol(cl + 17) : 0;
			}
		}
	}
	return -1;
}

int main(int argc, char **argv)
{
	int nonblocking, port, requests, fd, one = 1, sndbuf = 2048;
	size_t body_len, partials = 0, eintrs = 0, eagains = 0, total = 0;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	FILE *out;

	if (argc != 6) {
		fprintf(stderr, "usage: nb_client MODE PORT BODY_BYTES REQUESTS OUT_FILE\n");
		return 2;
	}
	nonblocking = strcmp(argv[1], "nonblocking") == 0;
	port = atoi(argv[2]);
	body_len = (size_t)atol(argv[3]);
	requests = atoi(argv[4]);
	out = fopen(argv[5], "wb");
	if (!out)
		return 2;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof(one));
	sin.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (nonblocking)
		fcntl(fd, F_SETFL, O_NONBLOCK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		if (errno != EINPROGRESS) {
			perror("connect");
			return 1;
		}
		if (wait_fd(fd, POLLOUT) < 0)
			return 1;
	}
	if (!nonblocking) {
		/* Interrupt blocking writes now and then. Armed once connected:
		 * a connect the timer interrupted would fail with EINTR, which
		 * is not what this client tests (a busy machine took over the
		 * timer's 2 ms to connect once). */
		struct sigaction sa = { .sa_handler = on_alarm };
		struct itimerval it = { { 0, 2000 }, { 0, 2000 } };
		sigaction(SIGALRM, &sa, NULL);
		setitimer(ITIMER_REAL, &it, NULL);
	}

	for (int r = 0; r < requests; r++) {
		char head[256];
		char *body = malloc(body_len);
		int status = 0;
		int hl = snprintf(head, sizeof(head),
				  "POST /upload/%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
				  "Content-Type: application/octet-stream\r\n"
				  "Content-Length: %zu\r\n\r\n",
				  r, port, body_len);
		for (size_t i = 0; i < body_len; i++)
			body[i] = (char)('a' + (i * 7 + (size_t)r) % 26);
		/* Head and body in one buffer, written with partial-write loops. */
		char *msg = malloc((size_t)hl + body_len);
		memcpy(msg, head, (size_t)hl);
		memcpy(msg + hl, body, body_len);
		if (send_all(fd, msg, (size_t)hl + body_len, nonblocking, &partials, &eintrs,
			     &eagains) < 0)
			return 1;
		fwrite(msg, 1, (size_t)hl + body_len, out);
		total += (size_t)hl + body_len;
		free(msg);
		free(body);
		if (read_response(fd, &status) < 0 || status != 200) {
			fprintf(stderr, "bad response (status %d)\n", status);
			return 1;
		}
	}
	fclose(out);
	close(fd);
	printf("ok %zu partials=%zu eintr=%zu eagain=%zu zeros=%zu\n", total, partials, eintrs,
	       eagains, zeros);
	return 0;
}
