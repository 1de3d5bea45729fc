/* HTTPS benchmark client: N sequential keep-alive GET requests over one
 * TLS connection (OpenSSL, certificate not verified: a local test server),
 * the way an API client loops. Prints its own CPU time like
 * keepalive_client.c, so the shim's exporter thread is included.
 *
 *   tls_client PORT N
 */
#define _GNU_SOURCE
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

/* Read one response (head + Content-Length body) into @buf; 0 or -1. */
static int read_response(SSL *ssl, char *buf, size_t cap)
{
	size_t have = 0;

	for (;;) {
		char *e;
		int r = SSL_read(ssl, buf + have, (int)(cap - have - 1));

		if (r <= 0)
			return -1;
		have += (size_t)r;
		buf[have] = '\0';
		e = memmem(buf, have, "\r\n\r\n", 4);
		if (e) {
			char *cl = strcasestr(buf, "\r\ncontent-length:");
			size_t body = cl && cl < e ? strtoul(cl + 17, NULL, 10) : 0;

			if ((size_t)(e + 4 - buf) + body <= have)
				return 0;
		}
		if (have + 1 >= cap)
			return -1;
	}
}

int main(int argc, char **argv)
{
	int port, n, fd;
	char req[256], buf[16384];
	struct timespec t0, t1;
	SSL_CTX *ctx;
	SSL *ssl;

	if (argc != 3)
		return 2;
	port = atoi(argv[1]);
	n = atoi(argv[2]);
	fd = connect_local(port);
	if (fd < 0)
		return 1;
	ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	ssl = SSL_new(ctx);
	SSL_set_fd(ssl, fd);
	SSL_set_tlsext_host_name(ssl, "localhost");
	if (SSL_connect(ssl) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		int len = format_request(req, sizeof(req), i, port);

		if (SSL_write(ssl, req, len) != len || read_response(ssl, buf, sizeof(buf)))
			return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	SSL_shutdown(ssl);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	print_result(n, &t0, &t1);
	return 0;
}
