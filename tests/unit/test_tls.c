/* Tests for src/tls.c: TLS sessions traced through the library's calls.
 *
 * Real OpenSSL, no preloading: a client and a server SSL object talk over a
 * BIO pair (memory, with a buffer size the test picks, small enough to force
 * SSL_ERROR_WANT_WRITE) or a loopback TCP connection. The test plays the
 * program and calls osh_tls_ossl_* with the real libssl functions, exactly
 * where the hooks (hooks/openssl.c) call them; the other end uses libssl
 * directly and checks the bytes it gets. Finished spans are captured with
 * osh_exporter_set_capture() instead of being queued.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config.h"
#include "conn.h"
#include "exporter.h"
#include "guard.h"
#include "http_client.h"
#include "propagation.h"
#include "span.h"
#include "test_support.h"
#include "tls.h"

/* ---- set-up ---------------------------------------------------------------- */

static void setup(void)
{
	test_config(OSH_SAMPLER_ALWAYS_ON, NULL, NULL, NULL);
	osh_client_init();
}

static void teardown(void)
{
	drop_captured();
	osh_exporter_set_capture(NULL);
	osh_env_ctx_finish(&osh_env_ctx);
}

TestSuite(tls, .init = setup, .fini = teardown);

static const char *str_attr(const struct osh_span *s, const char *key)
{
	static char out[4][1024];
	static int which;
	const struct osh_attr *a = osh_span_find(s, key);
	char *o;

	if (!a || a->type != OSH_ATTR_STRING)
		return NULL;
	o = out[which++ % 4];
	snprintf(o, sizeof(out[0]), "%.*s", (int)a->v.s.len, osh_span_str(s, a->v.s));
	return o;
}

static int64_t int_attr(const struct osh_span *s, const char *key)
{
	const struct osh_attr *a = osh_span_find(s, key);

	cr_assert_not_null(a, "no attribute %s", key);
	cr_assert_eq(a->type, OSH_ATTR_INT, "%s is not an int", key);
	return a->v.i;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* ---- the real library, as the hooks resolve it ------------------------------ */

static const struct osh_ossl_api api = {
	.SSL_write = SSL_write,
	.SSL_write_ex = SSL_write_ex,
	.SSL_read = SSL_read,
	.SSL_read_ex = SSL_read_ex,
	.SSL_peek = SSL_peek,
	.SSL_peek_ex = SSL_peek_ex,
	.SSL_shutdown = SSL_shutdown,
	.SSL_free = SSL_free,
	.SSL_clear = SSL_clear,
	.SSL_get_error = SSL_get_error,
	.SSL_get_fd = SSL_get_fd,
	.SSL_is_server = SSL_is_server,
	.SSL_ctrl = SSL_ctrl,
	.SSL_get0_alpn_selected = SSL_get0_alpn_selected,
	.SSL_is_init_finished = SSL_is_init_finished,
	.SSL_sendfile = SSL_sendfile,
};

/* An address in this program (a call site). */
static void main_site(void)
{
}

/* What the program calls, through the shim's logic. */
static int t_write(SSL *ssl, const void *buf, int num)
{
	return osh_tls_ossl_write(&api, ssl, buf, (size_t)num, false, NULL);
}

static int t_read(SSL *ssl, void *buf, int num)
{
	return osh_tls_ossl_read(&api, ssl, buf, (size_t)num, false, false, NULL);
}

static int t_peek(SSL *ssl, void *buf, int num)
{
	return osh_tls_ossl_read(&api, ssl, buf, (size_t)num, false, true, NULL);
}

/* The program frees a session (the SSL_free hook). */
static void t_free(SSL *ssl)
{
	osh_tls_close(ssl);
	SSL_free(ssl);
}

/* ---- client/server pairs -------------------------------------------------- */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == 2 && i + 3 <= inlen && memcmp(in + i + 1, "h2", 2) == 0) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* A self-signed P-256 certificate for the server. */
static SSL_CTX *server_ctx(bool h2)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;

	cr_assert(ctx && key && x);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1,
				   0);
	X509_set_issuer_name(x, name);
	cr_assert(X509_sign(x, key, EVP_sha256()) > 0);
	cr_assert_eq(SSL_CTX_use_certificate(ctx, x), 1);
	cr_assert_eq(SSL_CTX_use_PrivateKey(ctx, key), 1);
	X509_free(x);
	EVP_PKEY_free(key);
	if (h2)
		SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	return ctx;
}

static SSL_CTX *client_ctx(bool h2)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	cr_assert_not_null(ctx);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (h2)
		SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2\x08http/1.1", 12);
	return ctx;
}

struct pair {
	SSL_CTX *cctx, *sctx;
	SSL *c, *s;
	int cfd, sfd, lfd;	/* TCP pairs only */
};

/* On a TCP pair: wait (bounded) until @fd has something to read. Loopback
 * delivery may be deferred to another CPU's softirq. */
static void wait_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	if (fd >= 0)
		poll(&pfd, 1, 50);
}

static void handshake(struct pair *p)
{
	int rc = 0, rs = 0;

	for (int i = 0; i < 2000 && (rc != 1 || rs != 1); i++) {
		if (rc != 1)
			rc = SSL_do_handshake(p->c);
		if (rs != 1)
			rs = SSL_do_handshake(p->s);
		if (rc != 1 && rs != 1)
			wait_readable(p->cfd < 0 ? -1 : (i & 1) ? p->cfd : p->sfd);
	}
	cr_assert_eq(rc, 1, "client handshake: %d", SSL_get_error(p->c, rc));
	cr_assert_eq(rs, 1, "server handshake: %d", SSL_get_error(p->s, rs));
}

/* Client and server over a BIO pair of @bufsz bytes each way, before the
 * handshake. */
static void pair_bio_raw(struct pair *p, size_t bufsz, bool h2)
{
	BIO *b1, *b2;

	memset(p, 0, sizeof(*p));
	p->cfd = p->sfd = p->lfd = -1;
	p->cctx = client_ctx(h2);
	p->sctx = server_ctx(h2);
	p->c = SSL_new(p->cctx);
	p->s = SSL_new(p->sctx);
	cr_assert_eq(BIO_new_bio_pair(&b1, bufsz, &b2, bufsz), 1);
	SSL_set_bio(p->c, b1, b1);
	SSL_set_bio(p->s, b2, b2);
	SSL_set_connect_state(p->c);
	SSL_set_accept_state(p->s);
}

/* The same, handshake done. */
static void pair_bio(struct pair *p, size_t bufsz, bool h2)
{
	pair_bio_raw(p, bufsz, h2);
	handshake(p);
}

/* Client and server over a loopback TCP connection (non-blocking). When
 * @track, the fd table tracks both ends, as connect() and accept() do. */
static void pair_tcp(struct pair *p, bool track)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in peer;
	socklen_t sl = sizeof(sin), pl = sizeof(peer);

	memset(p, 0, sizeof(*p));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(p->lfd, 0);
	cr_assert_eq(bind(p->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(p->lfd, 4), 0);
	cr_assert_eq(getsockname(p->lfd, (struct sockaddr *)&sin, &sl), 0);
	p->cfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(p->cfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	p->sfd = accept(p->lfd, (struct sockaddr *)&peer, &pl);
	cr_assert_geq(p->sfd, 0);
	if (track) {
		osh_conn_track_client(p->cfd, (struct sockaddr *)&sin, sizeof(sin));
		osh_conn_track_server(p->sfd, p->lfd, (struct sockaddr *)&peer, pl);
		cr_assert_not_null(osh_conn_get(p->cfd));
		cr_assert_not_null(osh_conn_get(p->sfd));
	}
	fcntl(p->cfd, F_SETFL, O_NONBLOCK);
	fcntl(p->sfd, F_SETFL, O_NONBLOCK);
	p->cctx = client_ctx(false);
	p->sctx = server_ctx(false);
	p->c = SSL_new(p->cctx);
	p->s = SSL_new(p->sctx);
	SSL_set_fd(p->c, p->cfd);
	SSL_set_fd(p->s, p->sfd);
	SSL_set_connect_state(p->c);
	SSL_set_accept_state(p->s);
	handshake(p);
}

static uint16_t tcp_port(const struct pair *p)
{
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);

	cr_assert_eq(getsockname(p->lfd, (struct sockaddr *)&sin, &sl), 0);
	return ntohs(sin.sin_port);
}

static void pair_free(struct pair *p)
{
	if (p->c)
		t_free(p->c);
	if (p->s)
		t_free(p->s);
	SSL_CTX_free(p->cctx);
	SSL_CTX_free(p->sctx);
	if (p->cfd >= 0)
		close(p->cfd);
	if (p->sfd >= 0)
		close(p->sfd);
	if (p->lfd >= 0)
		close(p->lfd);
	memset(p, 0, sizeof(*p));
}

/* Everything @ssl can read now, with libssl directly, appended to @buf. */
static size_t drain(SSL *ssl, char *buf, size_t have, size_t cap)
{
	for (;;) {
		int n;

		if (have >= cap)
			return have;
		n = SSL_read(ssl, buf + have, (int)(cap - have));
		if (n <= 0) {
			int e = SSL_get_error(ssl, n);

			cr_assert(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_ZERO_RETURN,
				  "peer read failed: %d", e);
			return have;
		}
		have += (size_t)n;
	}
}

/* Write all of @buf with libssl directly (the untraced peer). */
static void put_all(SSL *ssl, const char *buf, size_t len)
{
	size_t off = 0;

	for (int i = 0; off < len && i < 10000; i++) {
		int n = SSL_write(ssl, buf + off, (int)(len - off));

		if (n > 0)
			off += (size_t)n;
		else
			cr_assert_eq(SSL_get_error(ssl, n), SSL_ERROR_WANT_WRITE);
	}
	cr_assert_eq(off, len);
}

/* @wire must be @orig with one "traceparent: ...\r\n" line after the request
 * line; returns that line's value (55 bytes, NUL-terminated). */
static const char *check_injected(const char *wire, size_t wn, const char *orig, size_t on)
{
	static char tp[56];
	const char *eol = memchr(orig, '\n', on);
	size_t line, ins = 13 + 55 + 2;

	cr_assert_not_null(eol);
	line = (size_t)(eol - orig) + 1;
	cr_assert_eq(wn, on + ins, "wire has %zu bytes, expected %zu", wn, on + ins);
	cr_assert_eq(memcmp(wire, orig, line), 0, "request line changed");
	cr_assert_eq(memcmp(wire + line, "traceparent: 00-", 16), 0, "no traceparent at %.20s",
		     wire + line);
	cr_assert_eq(memcmp(wire + line + ins - 2, "\r\n", 2), 0);
	cr_assert_eq(memcmp(wire + line + ins, orig + line, on - line), 0,
		     "bytes after the injected line differ");
	memcpy(tp, wire + line + 13, 55);
	tp[55] = '\0';
	return tp;
}

/* The span's traceparent as the shim would inject it. */
static void span_tp(const struct osh_span *s, char *out)
{
	char t[33], i[17];

	hex(s->trace_id, 16, t);
	hex(s->span_id, 8, i);
	sprintf(out, "00-%s-%s-01", t, i);
}

static const char RESP[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* ---- requests, responses and their spans -------------------------------------- */

/* Origin-form requests over TLS are https: scheme, url.full, default port. */
Test(tls, client_request_gets_traceparent_and_https_span)
{
	static const struct {
		const char *target, *host;
		const char *full, *scheme, *addr;
		int port;
	} cases[] = {
		{ "/users/42?q=1", "example.com", "https://example.com/users/42?q=1", "https",
		  "example.com", 443 },
		{ "/a", "example.com:8443", "https://example.com:8443/a", "https", "example.com",
		  8443 },
		{ "/a", "example.com:443", "https://example.com/a", "https", "example.com", 443 },
		{ "/v6", "[::1]:9443", "https://[::1]:9443/v6", "https", "::1", 9443 },
		/* An absolute target names its own scheme (a proxy over TLS). */
		{ "http://origin.test/p", "origin.test", "http://origin.test/p", "http",
		  "origin.test", 80 },
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct pair p;
		char req[512], wire[1024], tp[56];
		int n, len;
		size_t wn;
		const char *got;
		const struct osh_span *s;

		pair_bio(&p, 65536, false);
		len = snprintf(req, sizeof(req),
			       "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: t\r\n\r\n",
			       cases[k].target, cases[k].host);
		n = t_write(p.c, req, len);
		cr_assert_eq(n, len, "SSL_write told the program %d, not %d", n, len);
		wn = drain(p.s, wire, 0, sizeof(wire));
		got = check_injected(wire, wn, req, (size_t)len);

		put_all(p.s, RESP, sizeof(RESP) - 1);
		n = t_read(p.c, wire, sizeof(wire));
		cr_assert_eq(n, (int)sizeof(RESP) - 1);
		cr_assert_eq(memcmp(wire, RESP, sizeof(RESP) - 1), 0);

		cr_assert_eq(n_captured, 1, "case %zu: %d spans", k, n_captured);
		s = captured[0];
		span_tp(s, tp);
		cr_assert_str_eq(got, tp, "injected ids are not the span's");
		cr_assert_eq(s->kind, OSH_SPAN_CLIENT);
		cr_assert_str_eq(str_attr(s, "url.scheme"), cases[k].scheme);
		cr_assert_str_eq(str_attr(s, "url.full"), cases[k].full);
		cr_assert_str_eq(str_attr(s, "server.address"), cases[k].addr);
		cr_assert_eq(int_attr(s, "server.port"), cases[k].port);
		cr_assert_eq(int_attr(s, "http.response.status_code"), 200);
		cr_assert_eq(int_attr(s, "http.response.body.size"), 2);
		/* A memory BIO has no peer. */
		cr_assert_null(osh_span_find(s, "network.peer.address"));
		pair_free(&p);
		teardown();
		setup();
	}
}

/* The server's plaintext is exactly what the client sent, however it is
 * read (here one byte per SSL_read_ex); the SERVER span is https and
 * continues the incoming trace. */
Test(tls, server_reads_exact_plaintext_and_makes_https_span)
{
	static const char req[] =
		"POST /items/7 HTTP/1.1\r\nHost: api.test\r\n"
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		"Content-Length: 11\r\n\r\nhello world";
	static const char resp[] = "HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nthere";
	struct pair p;
	char got[sizeof(req)], back[256];
	size_t have = 0, rb = 0;
	const struct osh_span *s;
	char t[33];

	pair_bio(&p, 65536, false);
	put_all(p.c, req, sizeof(req) - 1);
	for (int i = 0; i < 1000 && have < sizeof(req) - 1; i++) {
		int r = osh_tls_ossl_read(&api, p.s, got + have, 1, true, false, &rb);

		cr_assert_eq(r, 1);
		cr_assert_eq(rb, 1);
		have += rb;
	}
	cr_assert_eq(have, sizeof(req) - 1);
	cr_assert_eq(memcmp(got, req, have), 0, "plaintext changed on the way in");
	cr_assert_eq(n_captured, 0);

	/* The response in three writes, unchanged on the wire. */
	cr_assert_eq(t_write(p.s, resp, 10), 10);
	cr_assert_eq(t_write(p.s, resp + 10, 30), 30);
	cr_assert_eq(t_write(p.s, resp + 40, (int)sizeof(resp) - 1 - 40),
		     (int)sizeof(resp) - 1 - 40);
	cr_assert_eq(drain(p.c, back, 0, sizeof(back)), sizeof(resp) - 1);
	cr_assert_eq(memcmp(back, resp, sizeof(resp) - 1), 0);

	cr_assert_eq(n_captured, 1);
	s = captured[0];
	cr_assert_eq(s->kind, OSH_SPAN_SERVER);
	hex(s->trace_id, 16, t);
	cr_assert_str_eq(t, "4bf92f3577b34da6a3ce929d0e0e4736");
	cr_assert(s->has_parent);
	cr_assert_str_eq(str_attr(s, "url.scheme"), "https");
	cr_assert_str_eq(str_attr(s, "url.path"), "/items/7");
	cr_assert_str_eq(str_attr(s, "server.address"), "api.test");
	cr_assert_eq(int_attr(s, "server.port"), 443);
	cr_assert_eq(int_attr(s, "http.request.body.size"), 11);
	cr_assert_eq(int_attr(s, "http.response.status_code"), 201);
	cr_assert_eq(int_attr(s, "http.response.body.size"), 5);
	pair_free(&p);
}

/* SSL_write_ex/SSL_read_ex: counts through the out-parameters. */
Test(tls, ex_variants)
{
	static const char req[] = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
	struct pair p;
	char wire[512];
	size_t w = 12345, rb = 0;
	size_t wn;

	pair_bio(&p, 65536, false);
	cr_assert_eq(osh_tls_ossl_write(&api, p.c, req, sizeof(req) - 1, true, &w), 1);
	cr_assert_eq(w, sizeof(req) - 1);
	wn = drain(p.s, wire, 0, sizeof(wire));
	check_injected(wire, wn, req, sizeof(req) - 1);
	put_all(p.s, RESP, sizeof(RESP) - 1);
	cr_assert_eq(osh_tls_ossl_read(&api, p.c, wire, sizeof(wire), true, false, &rb), 1);
	cr_assert_eq(rb, sizeof(RESP) - 1);
	cr_assert_eq(n_captured, 1);
	pair_free(&p);
}

/* ---- the retry contract --------------------------------------------------------- */

/* A request with a body, written in one SSL_write. */
static char *big_request(size_t body, size_t *ret_len)
{
	char *r = malloc(body + 256);
	int h;

	cr_assert_not_null(r);
	h = sprintf(r, "POST /upload HTTP/1.1\r\nHost: up.test\r\nContent-Length: %zu\r\n\r\n",
		    body);
	for (size_t i = 0; i < body; i++)
		r[h + i] = (char)('a' + i % 26);
	*ret_len = (size_t)h + body;
	return r;
}

/* WANT_WRITE: the program retries with the same arguments until the write
 * completes; the peer gets the program's bytes plus one traceparent line,
 * written once (the rewritten buffer was kept, not rebuilt). */
static void want_write_run(bool moving)
{
	struct pair p;
	size_t len, wn = 0;
	char *req = big_request(20000, &len);
	char *wire = malloc(len + 1024);
	char *copy = NULL;
	int n = -1, agains = 0;

	pair_bio(&p, 1024, false);
	if (moving)
		SSL_set_mode(p.c, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	for (int i = 0; i < 10000; i++) {
		const char *src = req;

		if (moving) {
			/* Same bytes, somewhere else each time. */
			free(copy);
			copy = malloc(len);
			memcpy(copy, req, len);
			src = copy;
		}
		n = t_write(p.c, src, (int)len);
		if (n > 0)
			break;
		cr_assert_eq(SSL_get_error(p.c, n), SSL_ERROR_WANT_WRITE);
		cr_assert(osh_tls_find(p.c)->pending, "no pending write after WANT_WRITE");
		agains++;
		wn = drain(p.s, wire, wn, len + 1024);
	}
	cr_assert_eq(n, (int)len, "the program was told %d of %zu", n, len);
	cr_assert_gt(agains, 3, "the write never had to be retried");
	cr_assert_not(osh_tls_find(p.c)->pending);
	wn = drain(p.s, wire, wn, len + 1024);
	check_injected(wire, wn, req, len);

	put_all(p.s, RESP, sizeof(RESP) - 1);
	cr_assert_eq(t_read(p.c, wire, 100), (int)sizeof(RESP) - 1);
	cr_assert_eq(n_captured, 1);
	cr_assert_eq(int_attr(captured[0], "http.request.body.size"), 20000);
	cr_assert_str_eq(str_attr(captured[0], "url.full"), "https://up.test/upload");
	pair_free(&p);
	free(copy);
	free(req);
	free(wire);
}

Test(tls, want_write_retry_resends_the_pending_rewritten_buffer)
{
	want_write_run(false);
}

Test(tls, want_write_retry_with_moving_buffer)
{
	want_write_run(true);
}

/* No explicit handshake: the program's first SSL_write makes it, answering
 * SSL_ERROR_WANT_READ until the server has spoken; the request (rewritten
 * once) goes out when the handshake is done. */
Test(tls, handshake_inside_the_first_write)
{
	static const char req[] = "GET /first HTTP/1.1\r\nHost: hs\r\n\r\n";
	struct pair p;
	char wire[1024];
	size_t wn = 0;
	int n = -1, wants = 0;

	pair_bio_raw(&p, 65536, false);
	for (int i = 0; i < 100 && n <= 0; i++) {
		n = t_write(p.c, req, sizeof(req) - 1);
		if (n > 0)
			break;
		cr_assert_eq(SSL_get_error(p.c, n), SSL_ERROR_WANT_READ);
		cr_assert(osh_tls_find(p.c)->pending);
		wants++;
		SSL_do_handshake(p.s);
	}
	cr_assert_eq(n, (int)sizeof(req) - 1);
	cr_assert_gt(wants, 0);
	wn = drain(p.s, wire, wn, sizeof(wire));
	check_injected(wire, wn, req, sizeof(req) - 1);
	put_all(p.s, RESP, sizeof(RESP) - 1);
	cr_assert_eq(t_read(p.c, wire, sizeof(wire)), (int)sizeof(RESP) - 1);
	cr_assert_eq(n_captured, 1);
	pair_free(&p);
}

/* A retry that breaks the contract: the session stops being traced. */
static void broken_retry(SSL *c, const char *buf, int len)
{
	struct osh_tls_session *s;

	t_write(c, buf, len);
	s = osh_tls_find(c);
	cr_assert_eq(s->mode, OSH_TLS_PASS);
	cr_assert_not(s->pending);
	cr_assert_eq(s->conn.role, OSH_ROLE_NONE);
	ERR_clear_error();
}

/* The same bytes elsewhere, without SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER:
 * libssl refuses the retry, under the shim as without it. */
Test(tls, retry_with_a_moved_buffer_not_allowed_passes_through)
{
	struct pair p, q;
	size_t len;
	char *req = big_request(20000, &len);
	char *copy = malloc(len);
	int a, b, ea, eb;

	memcpy(copy, req, len);
	pair_bio(&p, 1024, false);
	pair_bio(&q, 1024, false);
	a = t_write(p.c, req, (int)len);
	b = SSL_write(q.c, req, (int)len);
	cr_assert_eq(a, b);
	cr_assert_eq(SSL_get_error(p.c, a), SSL_ERROR_WANT_WRITE);
	cr_assert_eq(SSL_get_error(q.c, b), SSL_ERROR_WANT_WRITE);
	a = t_write(p.c, copy, (int)len);
	b = SSL_write(q.c, copy, (int)len);
	ea = SSL_get_error(p.c, a);
	eb = SSL_get_error(q.c, b);
	cr_assert_eq(a, b, "return %d under the shim, %d without", a, b);
	cr_assert_eq(ea, eb, "SSL_get_error %d under the shim, %d without", ea, eb);
	cr_assert_eq(ea, SSL_ERROR_SSL);
	broken_retry(p.c, copy, (int)len);
	pair_free(&p);
	pair_free(&q);
	free(req);
	free(copy);
}

/* Another length: the pending plan no longer describes the program's
 * bytes. */
Test(tls, retry_with_another_length_passes_through)
{
	struct pair p;
	size_t len;
	char *req = big_request(20000, &len);

	pair_bio(&p, 1024, false);
	cr_assert_eq(SSL_get_error(p.c, t_write(p.c, req, (int)len)), SSL_ERROR_WANT_WRITE);
	cr_assert(osh_tls_find(p.c)->pending);
	broken_retry(p.c, req, (int)len - 100);
	pair_free(&p);
	free(req);
	cr_assert_eq(n_captured, 0);
}

/* A retry from the same buffer with more bytes appended (OpenSSL accepts
 * a longer retry): the pending piece goes out as it was, the new bytes
 * after it (a second request, with its own traceparent), and the program
 * is told the whole length, as OpenSSL alone would tell it. */
Test(tls, longer_retry_goes_on_after_the_pending_piece)
{
	static const char second[] = "GET /second HTTP/1.1\r\nHost: up.test\r\n\r\n";
	struct pair p;
	size_t len, wn = 0;
	char *req = big_request(20000, &len);
	char *buf = malloc(len + sizeof(second));
	char *wire = malloc(len + 4096);
	int n, agains = 0;
	const char *eol;

	memcpy(buf, req, len);
	memcpy(buf + len, second, sizeof(second) - 1);
	pair_bio(&p, 1024, false);
	n = t_write(p.c, buf, (int)len);
	cr_assert_eq(SSL_get_error(p.c, n), SSL_ERROR_WANT_WRITE);
	for (int i = 0; i < 10000; i++) {
		n = t_write(p.c, buf, (int)(len + sizeof(second) - 1));
		if (n > 0)
			break;
		cr_assert_eq(SSL_get_error(p.c, n), SSL_ERROR_WANT_WRITE);
		agains++;
		wn = drain(p.s, wire, wn, len + 4096);
	}
	cr_assert_eq(n, (int)(len + sizeof(second) - 1));
	cr_assert_gt(agains, 1);
	cr_assert_eq(osh_tls_find(p.c)->mode, OSH_TLS_TRACE);
	wn = drain(p.s, wire, wn, len + 4096);
	/* Both requests, each with its traceparent. */
	cr_assert_eq(wn, len + sizeof(second) - 1 + 2 * 70);
	check_injected(wire, len + 70, req, len);
	check_injected(wire + len + 70, sizeof(second) - 1 + 70, second, sizeof(second) - 1);
	eol = wire + len + 70;
	cr_assert_eq(memcmp(eol, "GET /second", 11), 0);
	put_all(p.s, RESP, sizeof(RESP) - 1);
	put_all(p.s, RESP, sizeof(RESP) - 1);
	cr_assert_eq(t_read(p.c, wire, 200), (int)sizeof(RESP) - 1);
	cr_assert_eq(t_read(p.c, wire, 200), (int)sizeof(RESP) - 1);
	cr_assert_eq(n_captured, 2);
	pair_free(&p);
	free(req);
	free(buf);
	free(wire);
}

/* SSL_MODE_ENABLE_PARTIAL_WRITE with small records: each SSL_write takes
 * one record; the counts the program sees are its own bytes (injected
 * ones not counted), including a record that ends inside the injected
 * line, and it goes on from there as a correct program does. */
Test(tls, partial_write_mode_maps_counts_to_program_bytes)
{
	struct pair p;
	char req[8192];
	char *wire = malloc(16384);
	size_t len, off = 0, wn = 0;
	int h, calls = 0, odd = 0;

	/* A request line of 500 bytes: the first 512-byte record ends 12
	 * bytes into the injected line. */
	h = sprintf(req, "POST /");
	memset(req + h, 'p', 500 - 11 - (size_t)h);
	h = 500 - 11;
	h += sprintf(req + h, " HTTP/1.1\r\nHost: part.test\r\nContent-Length: 5000\r\n\r\n");
	cr_assert_eq(memcmp(req + 500 - 10, "HTTP/1.1\r\n", 10), 0);
	for (int i = 0; i < 5000; i++)
		req[h + i] = (char)('0' + i % 10);
	len = (size_t)h + 5000;

	pair_bio(&p, 4096, false);
	SSL_set_mode(p.c, SSL_MODE_ENABLE_PARTIAL_WRITE);
	cr_assert_eq(SSL_set_max_send_fragment(p.c, 512), 1);
	for (int i = 0; i < 10000 && off < len; i++) {
		int n = t_write(p.c, req + off, (int)(len - off));

		if (n > 0) {
			cr_assert_leq((size_t)n, len - off);
			if (calls == 0)
				cr_assert_eq(n, 500, "first record: told %d", n);
			if (n != 512)
				odd++;
			off += (size_t)n;
			calls++;
			continue;
		}
		cr_assert_eq(SSL_get_error(p.c, n), SSL_ERROR_WANT_WRITE);
		wn = drain(p.s, wire, wn, 16384);
	}
	cr_assert_eq(off, len);
	cr_assert_gt(calls, 5, "the writes were not partial");
	cr_assert_gt(odd, 1, "no count was mapped around the injected bytes");
	wn = drain(p.s, wire, wn, 16384);
	check_injected(wire, wn, req, len);
	put_all(p.s, RESP, sizeof(RESP) - 1);
	cr_assert_eq(t_read(p.c, wire, 100), (int)sizeof(RESP) - 1);
	cr_assert_eq(n_captured, 1);
	cr_assert_eq(int_attr(captured[0], "http.request.body.size"), 5000);
	pair_free(&p);
	free(wire);
}

/* ---- peek, shutdown, free ----------------------------------------------------- */

/* Peeked bytes are not parsed: they are parsed when read. A peek fed to
 * the engine would make the request (and the response) count twice. */
Test(tls, peek_does_not_feed_the_parser)
{
	static const char req[] = "PUT /k HTTP/1.1\r\nHost: pk\r\nContent-Length: 3\r\n\r\nabc";
	struct pair p;
	char buf[256];
	int n;

	pair_bio(&p, 65536, false);
	put_all(p.c, req, sizeof(req) - 1);
	n = t_peek(p.s, buf, sizeof(buf));
	cr_assert_eq(n, (int)sizeof(req) - 1);
	cr_assert_eq(osh_tls_ossl_read(&api, p.s, buf, 10, true, true, &(size_t){ 0 }), 1);
	n = t_read(p.s, buf, sizeof(buf));
	cr_assert_eq(n, (int)sizeof(req) - 1);
	cr_assert_eq(t_write(p.s, RESP, sizeof(RESP) - 1), (int)sizeof(RESP) - 1);
	cr_assert_eq(n_captured, 1);
	cr_assert_eq(int_attr(captured[0], "http.request.body.size"), 3);

	/* The client side: peek the response, then read it. */
	cr_assert_eq(t_write(p.c, "GET / HTTP/1.1\r\nHost: pk\r\n\r\n", 28), 28);
	drain(p.s, buf, 0, sizeof(buf));
	put_all(p.s, RESP, sizeof(RESP) - 1);
	cr_assert_eq(t_peek(p.c, buf, sizeof(buf)), (int)sizeof(RESP) - 1);
	cr_assert_eq(t_read(p.c, buf, sizeof(buf)), (int)sizeof(RESP) - 1);
	cr_assert_eq(n_captured, 2);
	cr_assert_eq(int_attr(captured[1], "http.response.body.size"), 2);

	/* Nothing left in flight: freeing ends no further span. */
	pair_free(&p);
	cr_assert_eq(n_captured, 2);
}

/* SSL_free ends what is in flight (the program gave up waiting) and the
 * record goes. */
Test(tls, free_ends_spans_and_forgets_the_session)
{
	struct pair p;
	char buf[256];
	SSL *c;

	pair_bio(&p, 65536, false);
	c = p.c;
	cr_assert_eq(t_write(p.c, "GET /slow HTTP/1.1\r\nHost: s\r\n\r\n", 31), 31);
	drain(p.s, buf, 0, sizeof(buf));
	cr_assert_eq(osh_tls_count(), 1);
	cr_assert_eq(n_captured, 0);
	t_free(p.c);
	p.c = NULL;
	cr_assert_eq(n_captured, 1);
	cr_assert_str_eq(str_attr(captured[0], "error.type"), "no_response");
	cr_assert_null(osh_tls_lookup(c));
	cr_assert_eq(osh_tls_count(), 0);
	pair_free(&p);
}

/* A response delimited by the close: complete at SSL_shutdown (the
 * close_notify), and at SSL_free when the program never shuts down. */
Test(tls, close_delimited_response_ends_at_shutdown_or_free)
{
	static const char req[] = "GET /stream HTTP/1.1\r\nHost: c\r\n\r\n";
	static const char head[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";

	for (int way = 0; way < 2; way++) {
		struct pair p;
		char buf[256];
		const struct osh_span *s;

		pair_bio(&p, 65536, false);
		put_all(p.c, req, sizeof(req) - 1);
		cr_assert_eq(t_read(p.s, buf, sizeof(buf)), (int)sizeof(req) - 1);
		cr_assert_eq(t_write(p.s, head, sizeof(head) - 1), (int)sizeof(head) - 1);
		cr_assert_eq(t_write(p.s, "data", 4), 4);
		cr_assert_eq(n_captured, 0);
		if (way == 0) {
			cr_assert_geq(osh_tls_ossl_shutdown(&api, p.s), 0);
			cr_assert_eq(n_captured, 1, "shutdown did not end the response");
		} else {
			t_free(p.s);
			p.s = NULL;
			cr_assert_eq(n_captured, 1, "free did not end the response");
		}
		s = captured[0];
		cr_assert_eq(s->kind, OSH_SPAN_SERVER);
		cr_assert_eq(int_attr(s, "http.response.status_code"), 200);
		cr_assert_eq(int_attr(s, "http.response.body.size"), 4);
		cr_assert_null(osh_span_find(s, "error.type"));
		pair_free(&p);
		teardown();
		setup();
	}
}

/* SSL_sendfile (kernel TLS) sends a response body the shim cannot see: it
 * is counted, and completes the response. Kernel TLS is not available
 * here: the library's function is replaced by one that "sends" @size. */
static ssize_t fake_sendfile(SSL *ssl, int fd, off_t off, size_t size, int flags)
{
	(void)ssl;
	(void)fd;
	(void)off;
	(void)flags;
	return (ssize_t)size;
}

Test(tls, sendfile_body_is_counted)
{
	static const char req[] = "GET /file HTTP/1.1\r\nHost: f\r\n\r\n";
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
	struct osh_ossl_api fake = api;
	struct pair p;
	char buf[256];

	fake.SSL_sendfile = fake_sendfile;
	pair_bio(&p, 65536, false);
	put_all(p.c, req, sizeof(req) - 1);
	cr_assert_eq(t_read(p.s, buf, sizeof(buf)), (int)sizeof(req) - 1);
	cr_assert_eq(t_write(p.s, head, sizeof(head) - 1), (int)sizeof(head) - 1);
	cr_assert_eq(osh_tls_ossl_sendfile(&fake, p.s, 0, 0, 3000, 0), 3000);
	cr_assert_eq(n_captured, 0);
	cr_assert_eq(osh_tls_ossl_sendfile(&fake, p.s, 0, 3000, 2000, 0), 2000);
	cr_assert_eq(n_captured, 1, "the response did not end with its body");
	cr_assert_eq(int_attr(captured[0], "http.response.body.size"), 5000);
	pair_free(&p);
}

/* ---- sessions left alone -------------------------------------------------------- */

/* ALPN h2: detection only, nothing injected or parsed. */
Test(tls, alpn_h2_session_passes_through)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: h2\r\n\r\n";
	struct pair p;
	const unsigned char *proto = NULL;
	unsigned int plen = 0;
	char buf[256];

	pair_bio(&p, 65536, true);
	SSL_get0_alpn_selected(p.c, &proto, &plen);
	cr_assert_eq(plen, 2);
	cr_assert_eq(t_write(p.c, req, sizeof(req) - 1), (int)sizeof(req) - 1);
	cr_assert_eq(drain(p.s, buf, 0, sizeof(buf)), sizeof(req) - 1, "bytes were injected");
	cr_assert_eq(memcmp(buf, req, sizeof(req) - 1), 0);
	cr_assert_eq(osh_tls_find(p.c)->mode, OSH_TLS_PASS);
	put_all(p.s, RESP, sizeof(RESP) - 1);
	cr_assert_eq(t_read(p.c, buf, sizeof(buf)), (int)sizeof(RESP) - 1);
	pair_free(&p);
	cr_assert_eq(n_captured, 0);
}

/* HTTP/2 with prior knowledge: the preface, on either side. */
Test(tls, h2_preface_passes_through)
{
	/* The preface, then an empty SETTINGS frame. */
	static const char pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
				  "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
	struct pair p;
	char buf[256];

	pair_bio(&p, 65536, false);
	cr_assert_eq(t_write(p.c, pre, sizeof(pre) - 1), (int)sizeof(pre) - 1);
	cr_assert_eq(osh_tls_find(p.c)->mode, OSH_TLS_PASS);
	cr_assert_eq(t_read(p.s, buf, sizeof(buf)), (int)sizeof(pre) - 1);
	cr_assert_eq(memcmp(buf, pre, sizeof(pre) - 1), 0);
	cr_assert_eq(osh_tls_find(p.s)->mode, OSH_TLS_PASS);
	pair_free(&p);
	cr_assert_eq(n_captured, 0);
}

/* A session first used while a traced library (libcurl) drives it is
 * that library's: never traced, even when used later outside it. */
Test(tls, session_first_used_inside_a_traced_library_passes_through)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: lib\r\n\r\n";
	struct pair p;
	char buf[256];

	pair_bio(&p, 65536, false);
	osh_in_traced_library = true;
	cr_assert_eq(t_write(p.c, req, sizeof(req) - 1), (int)sizeof(req) - 1);
	osh_in_traced_library = false;
	cr_assert_eq(t_write(p.c, req, sizeof(req) - 1), (int)sizeof(req) - 1);
	cr_assert_eq(drain(p.s, buf, 0, sizeof(buf)), 2 * (sizeof(req) - 1));
	cr_assert_eq(memcmp(buf + sizeof(req) - 1, req, sizeof(req) - 1), 0);
	put_all(p.s, RESP, sizeof(RESP) - 1);
	cr_assert_eq(t_read(p.c, buf, sizeof(buf)), (int)sizeof(RESP) - 1);
	pair_free(&p);
	cr_assert_eq(n_captured, 0);
}

/* ---- the socket underneath -------------------------------------------------------- */

/* On a socket, the session takes the connection's addresses: from the fd
 * table when it tracks the socket (whose own tracing then stops: no
 * ciphertext parsing, no second span), else from getpeername. */
static void tcp_run(bool track)
{
	static const char req[] = "GET /t HTTP/1.1\r\nHost: tcp.test:8443\r\n\r\n";
	struct pair p;
	char buf[512];
	int n = -1;
	uint16_t port;
	const struct osh_span *cs, *ss;

	pair_tcp(&p, track);
	port = tcp_port(&p);
	cr_assert_eq(t_write(p.c, req, sizeof(req) - 1), (int)sizeof(req) - 1);
	cr_assert_null(osh_conn_get(p.cfd), "the socket is still traced below TLS");
	for (int i = 0; i < 200 && n <= 0; i++) {
		wait_readable(p.sfd);
		n = t_read(p.s, buf, sizeof(buf));
	}
	cr_assert_eq(n, (int)sizeof(req) - 1 + 70);
	cr_assert_null(osh_conn_get(p.sfd), "the socket is still traced below TLS");
	cr_assert_eq(t_write(p.s, RESP, sizeof(RESP) - 1), (int)sizeof(RESP) - 1);
	n = -1;
	for (int i = 0; i < 200 && n <= 0; i++) {
		wait_readable(p.cfd);
		n = t_read(p.c, buf, sizeof(buf));
	}
	cr_assert_eq(n, (int)sizeof(RESP) - 1, "n %d err %d errno %d", n, SSL_get_error(p.c, n),
		     errno);
	cr_assert_eq(n_captured, 2);
	ss = captured[0]->kind == OSH_SPAN_SERVER ? captured[0] : captured[1];
	cs = captured[0]->kind == OSH_SPAN_CLIENT ? captured[0] : captured[1];
	cr_assert_eq(cs->kind, OSH_SPAN_CLIENT);
	cr_assert_eq(ss->kind, OSH_SPAN_SERVER);
	cr_assert_str_eq(str_attr(cs, "url.full"), "https://tcp.test:8443/t");
	cr_assert_str_eq(str_attr(cs, "network.peer.address"), "127.0.0.1");
	cr_assert_eq(int_attr(cs, "network.peer.port"), port);
	cr_assert_str_eq(str_attr(ss, "url.scheme"), "https");
	cr_assert_str_eq(str_attr(ss, "client.address"), "127.0.0.1");
	cr_assert_eq(int_attr(ss, "server.port"), 8443);
	cr_assert_eq(memcmp(cs->trace_id, ss->trace_id, 16), 0);
	cr_assert_eq(memcmp(cs->span_id, ss->parent_span_id, 8), 0);
	pair_free(&p);
}

Test(tls, socket_tracked_by_the_fd_table)
{
	tcp_run(true);
}

Test(tls, socket_not_tracked)
{
	tcp_run(false);
}

/* ---- which libssl ------------------------------------------------------------------ */

/* Calls from this program go to the libssl it links (the next definition
 * after the code that holds the shim's core, here the test itself); a call
 * site's answer is cached. (Several copies in one process: test_tls.py.) */
Test(tls, library_resolved_per_call_site)
{
	const struct osh_ossl_api *a = osh_tls_ossl_api(__builtin_return_address(0));
	const struct osh_ossl_api *b = osh_tls_ossl_api((const void *)main_site);

	cr_assert_not_null(a);
	cr_assert_eq((void *)a->SSL_write, (void *)SSL_write);
	cr_assert_eq((void *)a->SSL_get_error, (void *)SSL_get_error);
	cr_assert_eq((void *)a->SSL_sendfile, (void *)SSL_sendfile);
	cr_assert_eq(a, b, "one table per copy of the library");
	cr_assert_eq(osh_tls_ossl_api((const void *)main_site), b);
}

/* ---- the session table ------------------------------------------------------------ */

#define KEY(i) ((void *)(uintptr_t)(0x10000 + (uintptr_t)(i) * 48))

/* Many sessions: every one found, removed ones gone, removed slots reused
 * without losing the others. */
Test(tls, table_insert_lookup_delete)
{
	enum { N = 20000 };

	cr_assert_null(osh_tls_lookup(KEY(1)));
	osh_tls_close(KEY(1));
	for (int i = 0; i < N; i++)
		cr_assert_not_null(osh_tls_open(KEY(i), OSH_ROLE_CLIENT));
	cr_assert_eq(osh_tls_count(), N);
	for (int i = 0; i < N; i++) {
		struct osh_tls_session *s = osh_tls_find(KEY(i));

		cr_assert_not_null(s, "session %d not found", i);
		cr_assert_eq(s->key, (uintptr_t)KEY(i));
		/* Opening again finds the same record. */
		cr_assert_eq(osh_tls_open(KEY(i), OSH_ROLE_CLIENT), s);
	}
	for (int round = 0; round < 3; round++) {
		for (int i = round; i < N; i += 3)
			osh_tls_close(KEY(i));
		for (int i = 0; i < N; i++) {
			bool gone = i % 3 == round;

			cr_assert_eq(osh_tls_lookup(KEY(i)) == NULL, gone, "round %d session %d",
				     round, i);
		}
		for (int i = round; i < N; i += 3)
			cr_assert_not_null(osh_tls_open(KEY(i), OSH_ROLE_SERVER));
		cr_assert_eq(osh_tls_count(), N);
	}
	for (int i = 0; i < N; i++)
		osh_tls_close(KEY(i));
	cr_assert_eq(osh_tls_count(), 0);
	for (int i = 0; i < N; i++)
		cr_assert_null(osh_tls_find(KEY(i)));
}

struct churn {
	int id;
	int errors;
};

/* One thread's sessions come and go while the others grow and shrink the
 * table: its live sessions are always found, never someone else's. */
static void *churn_thread(void *arg)
{
	struct churn *ch = arg;
	enum { PER = 3000 };

	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < PER; i++) {
			void *k = KEY(ch->id * 100000 + i);

			if (!osh_tls_open(k, OSH_ROLE_CLIENT))
				ch->errors++;
		}
		for (int i = 0; i < PER; i++) {
			void *k = KEY(ch->id * 100000 + i);
			struct osh_tls_session *s = osh_tls_find(k);

			if (!s)
				s = osh_tls_lookup(k);
			if (!s || s->key != (uintptr_t)k)
				ch->errors++;
		}
		for (int i = 0; i < PER; i += 2)
			osh_tls_close(KEY(ch->id * 100000 + i));
		for (int i = 1; i < PER; i += 2) {
			void *k = KEY(ch->id * 100000 + i);

			if (!osh_tls_lookup(k))
				ch->errors++;
		}
		for (int i = 1; i < PER; i += 2)
			osh_tls_close(KEY(ch->id * 100000 + i));
	}
	return NULL;
}

Test(tls, table_under_threads)
{
	enum { T = 4 };
	pthread_t th[T];
	struct churn ch[T];

	for (int i = 0; i < T; i++) {
		ch[i] = (struct churn){ .id = i + 1 };
		cr_assert_eq(pthread_create(&th[i], NULL, churn_thread, &ch[i]), 0);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(ch[i].errors, 0, "thread %d: %d lookups failed", i, ch[i].errors);
	}
	cr_assert_eq(osh_tls_count(), 0);
}
