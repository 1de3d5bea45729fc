/* An HTTPS client using GnuTLS directly, for test_tls.py: a non-blocking
 * socket with a tiny send buffer and one large request, so that
 * gnutls_record_send answers GNUTLS_E_AGAIN and is called again.
 *
 *     gnutls_client HOST PORT PATH BODY_SIZE [same|null|cork] [SENT_FILE]
 *
 * BODY_SIZE 0 sends a GET, else a POST with a fixed-pattern body. The whole
 * request is offered to each gnutls_record_send call from the first unsent
 * byte (GnuTLS sends one record per call). After GNUTLS_E_AGAIN the call is
 * repeated with the same arguments (same) or with NULL/0 (null), as the
 * GnuTLS manual allows. With cork, the request is written in 64 KiB pieces
 * between gnutls_record_cork and gnutls_record_uncork (which libgnutls
 * sends with its own gnutls_record_send calls). Prints "status <code>" and the response body on
 * stdout, "again=<n> calls=<n>" on stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "https_request.h"

static void wait_fd(int fd, gnutls_session_t s)
{
	struct pollfd p = { .fd = fd,
			    .events = gnutls_record_get_direction(s) ? POLLOUT : POLLIN };

	poll(&p, 1, 20000);
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "gnutls_client: %s: %s\n", what, rc ? gnutls_strerror(rc) : "");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 5 ? argv[5] : "same";
	bool null_retry = !strcmp(mode, "null");
	struct sockaddr_in sin = { .sin_family = AF_INET };
	gnutls_certificate_credentials_t cred;
	gnutls_session_t s;
	size_t body, len, off = 0, rlen = 0, rcap = 0;
	char *req, *resp = NULL;
	int fd, rc, sndbuf = 4096, again = 0, calls = 0;

	if (argc < 5)
		die("usage: HOST PORT PATH BODY_SIZE [same|null|cork] [SENT_FILE]", 0);
	body = strtoul(argv[4], NULL, 10);
	sin.sin_port = htons((unsigned short)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &sin.sin_addr) != 1)
		die("bad host", 0);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
		die("connect", 0);
	fcntl(fd, F_SETFL, O_NONBLOCK);

	gnutls_global_init();
	gnutls_certificate_allocate_credentials(&cred);
	if ((rc = gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NONBLOCK)) < 0)
		die("init", rc);
	gnutls_set_default_priority(s);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
	gnutls_transport_set_int(s, fd);
	do {
		rc = gnutls_handshake(s);
		if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED)
			wait_fd(fd, s);
	} while (rc < 0 && !gnutls_error_is_fatal(rc));
	if (rc < 0)
		die("handshake", rc);

	req = build_request("gnutls_client/1", argv[1], argv[2], argv[3], body,
			    argc > 6 ? argv[6] : NULL, &len);
	if (!req)
		die("sent file", 0);

	if (!strcmp(mode, "cork")) {
		gnutls_record_cork(s);
		for (off = 0; off < len;) {
			size_t piece = len - off < 65536 ? len - off : 65536;
			ssize_t n = gnutls_record_send(s, req + off, piece);

			calls++;
			if (n <= 0)
				die("corked send", (int)n);
			off += (size_t)n;
		}
		for (;;) {
			rc = gnutls_record_uncork(s, 0);
			if (rc != GNUTLS_E_AGAIN && rc != GNUTLS_E_INTERRUPTED)
				break;
			again++;
			wait_fd(fd, s);
		}
		if (rc < 0)
			die("uncork", rc);
	}
	while (off < len) {
		ssize_t n = gnutls_record_send(s, req + off, len - off);

		calls++;
		while (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			again++;
			wait_fd(fd, s);
			n = null_retry ? gnutls_record_send(s, NULL, 0)
				       : gnutls_record_send(s, req + off, len - off);
			calls++;
		}
		if (n <= 0)
			die("send", (int)n);
		off += (size_t)n;
	}

	for (;;) {
		ssize_t n;

		if (rlen + 16384 > rcap) {
			rcap = rcap * 2 + 65536;
			resp = realloc(resp, rcap);
		}
		n = gnutls_record_recv(s, resp + rlen, 16384);
		if (n > 0) {
			rlen += (size_t)n;
			continue;
		}
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			wait_fd(fd, s);
			continue;
		}
		break; /* end of stream (or the peer closing without close_notify) */
	}
	fprintf(stderr, "again=%d calls=%d\n", again, calls);
	if (!print_response(resp, rlen))
		die("no response", 0);
	gnutls_bye(s, GNUTLS_SHUT_WR);
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(cred);
	gnutls_global_deinit();
	close(fd);
	free(req);
	free(resp);
	return 0;
}
