/* An HTTPS client using OpenSSL directly, for test_tls.py: a non-blocking
 * socket with a tiny send buffer, and one request whose body is large
 * enough that SSL_write answers SSL_ERROR_WANT_WRITE and is retried.
 *
 *     tls_client HOST PORT PATH BODY_SIZE [same|moving|partial|implicit] [SENT_FILE]
 *
 * BODY_SIZE 0 sends a GET, else a POST whose body is a fixed pattern, in
 * one SSL_write call (head and body together). Retry modes:
 *   same     retry with the same buffer and length (the default);
 *   moving   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, each retry from a fresh
 *            copy of the bytes;
 *   partial  SSL_MODE_ENABLE_PARTIAL_WRITE, going on from each count;
 *   implicit like same, without an explicit handshake: the first SSL_write
 *            makes it (libssl then calls SSL_clear inside that call).
 * The bytes of the request are written to SENT_FILE when given. Prints
 * "status <code>" and the response body on stdout, and "want_write=<n>
 * want_read=<n> calls=<n>" on stderr. Exit status 0 when a response came.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "https_request.h"

static int wait_fd(int fd, short ev)
{
	struct pollfd p = { .fd = fd, .events = ev };

	return poll(&p, 1, 20000);
}

static void die(const char *what)
{
	fprintf(stderr, "tls_client: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 5 ? argv[5] : "same";
	struct sockaddr_in sin = { .sin_family = AF_INET };
	size_t body, len, off = 0;
	char *req, *copy = NULL;
	int fd, sndbuf = 4096, want_write = 0, want_read = 0, calls = 0;
	SSL_CTX *ctx;
	SSL *ssl;
	char *resp = NULL;
	size_t rlen = 0, rcap = 0;

	if (argc < 5)
		die("usage: HOST PORT PATH BODY_SIZE [same|moving|partial|implicit] [SENT_FILE]");
	body = strtoul(argv[4], NULL, 10);
	sin.sin_port = htons((unsigned short)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &sin.sin_addr) != 1)
		die("bad host");

	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		die("connect");
	fcntl(fd, F_SETFL, O_NONBLOCK);

	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_connect_state(ssl);
	if (!strcmp(mode, "moving"))
		SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	else if (!strcmp(mode, "partial"))
		SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
	while (strcmp(mode, "implicit")) {
		int r = SSL_do_handshake(ssl);
		int e;

		if (r == 1)
			break;
		e = SSL_get_error(ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			wait_fd(fd, POLLIN);
		else if (e == SSL_ERROR_WANT_WRITE)
			wait_fd(fd, POLLOUT);
		else
			die("handshake");
	}

	req = build_request("tls_client/1", argv[1], argv[2], argv[3], body,
			    argc > 6 ? argv[6] : NULL, &len);
	if (!req)
		die("sent file");

	/* The request in one call; retried exactly as OpenSSL asks. */
	while (off < len) {
		const char *src = req + off;
		int n, e;

		if (!strcmp(mode, "moving")) {
			free(copy);
			copy = malloc(len - off);
			memcpy(copy, req + off, len - off);
			src = copy;
		}
		n = SSL_write(ssl, src, (int)(len - off));
		calls++;
		if (n > 0) {
			if (strcmp(mode, "partial") && (size_t)n != len - off)
				die("short count without partial-write mode");
			off += (size_t)n;
			continue;
		}
		e = SSL_get_error(ssl, n);
		if (e == SSL_ERROR_WANT_WRITE) {
			want_write++;
			wait_fd(fd, POLLOUT);
		} else if (e == SSL_ERROR_WANT_READ) {
			want_read++;
			wait_fd(fd, POLLIN);
		} else {
			die("SSL_write");
		}
	}

	for (;;) {
		int n, e;

		if (rlen + 16384 > rcap) {
			rcap = rcap * 2 + 65536;
			resp = realloc(resp, rcap);
		}
		n = SSL_read(ssl, resp + rlen, 16384);
		if (n > 0) {
			rlen += (size_t)n;
			continue;
		}
		e = SSL_get_error(ssl, n);
		if (e == SSL_ERROR_WANT_READ)
			wait_fd(fd, POLLIN);
		else if (e == SSL_ERROR_WANT_WRITE)
			wait_fd(fd, POLLOUT);
		else
			break; /* close_notify, or the peer closing without it */
	}
	fprintf(stderr, "want_write=%d want_read=%d calls=%d\n", want_write, want_read, calls);
	if (!print_response(resp, rlen))
		die("no response");
	SSL_shutdown(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	free(req);
	free(copy);
	free(resp);
	return 0;
}
