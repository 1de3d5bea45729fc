/* Tests for src/http_server.c (with src/conn.c and src/context.c): the
 * server exchange engine, and client requests made under its context.
 *
 * No preloading and no network traffic: a real listening socket gives the
 * engine a listener to classify, a socketpair stands in for the accepted
 * connection (the engine never touches it), and the test plays the hooks:
 * it shows the engine the bytes a program read (osh_server_rx) and wrote
 * (osh_server_tx), in any split. Finished spans are captured with
 * osh_exporter_set_capture() instead of being queued.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "context.h"
#include "exporter.h"
#include "http_client.h"
#include "http_server.h"
#include "ids.h"
#include "propagation.h"
#include "span.h"
#include "test_support.h"

static void engine_init(enum osh_sampler_kind sampler, const char *bg)
{
	test_config(sampler, NULL, NULL, bg);
	osh_client_init();
}

static void setup_default(void)
{
	engine_init(OSH_SAMPLER_PARENTBASED_ALWAYS_ON, NULL);
}

static void teardown(void)
{
	drop_captured();
	osh_exporter_set_capture(NULL);
	osh_context_clear();
}

TestSuite(server, .init = setup_default, .fini = teardown);

/* ---- the simulated connection ---------------------------------------------- */

struct srv {
	int lfd;	/* the listener */
	uint16_t lport;
	int fd;		/* the accepted connection */
	int peer;
};

static int listener(uint32_t addr, uint16_t *ret_port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(addr) };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	cr_assert_eq(listen(fd, 4), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	*ret_port = ntohs(sin.sin_port);
	return fd;
}

static void srv_accept(struct srv *s)
{
	struct sockaddr_in cli = { .sin_family = AF_INET, .sin_port = htons(40123) };
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s->fd = sv[0];
	s->peer = sv[1];
	cli.sin_addr.s_addr = htonl(0x7f000002);
	osh_conn_track_server(s->fd, s->lfd, (struct sockaddr *)&cli, sizeof(cli));
	cr_assert_not_null(osh_conn_get(s->fd), "accepted connection not tracked");
}

static void srv_open_on(struct srv *s, uint32_t addr)
{
	memset(s, 0, sizeof(*s));
	s->lfd = listener(addr, &s->lport);
	srv_accept(s);
}

static void srv_open(struct srv *s)
{
	srv_open_on(s, INADDR_LOOPBACK);
}

static struct osh_conn *conn(const struct srv *s)
{
	return osh_conn_get(s->fd);
}

static bool tracked(const struct srv *s)
{
	return conn(s) != NULL;
}

/* What the program read. */
static void rx(struct srv *s, const char *p, size_t n)
{
	struct osh_conn *c = conn(s);
	struct iovec iov = { (void *)p, n };

	if (c)
		osh_server_rx(c, &iov, 1, (ssize_t)n, 0);
}

static void rx_str(struct srv *s, const char *p)
{
	rx(s, p, strlen(p));
}

static void rx_pieces(struct srv *s, const char *p, size_t n, size_t piece)
{
	for (size_t off = 0; off < n; off += piece)
		rx(s, p + off, n - off < piece ? n - off : piece);
}

static void rx_ret(struct srv *s, ssize_t ret, int err)
{
	struct osh_conn *c = conn(s);

	if (c)
		osh_server_rx(c, NULL, 0, ret, err);
}

/* What the program wrote (all of it accepted). */
static void tx(struct srv *s, const char *p, size_t n)
{
	struct osh_conn *c = conn(s);
	struct iovec iov = { (void *)p, n };

	if (c)
		osh_server_tx(c, &iov, 1, (ssize_t)n, 0);
}

static void tx_str(struct srv *s, const char *p)
{
	tx(s, p, strlen(p));
}

static void tx_pieces(struct srv *s, const char *p, size_t n, size_t piece)
{
	for (size_t off = 0; off < n; off += piece)
		tx(s, p + off, n - off < piece ? n - off : piece);
}

static void tx_ret(struct srv *s, ssize_t ret, int err)
{
	struct osh_conn *c = conn(s);

	if (c)
		osh_server_tx(c, NULL, 0, ret, err);
}

/* The program closes the socket (what the close hook does). */
static void srv_close(struct srv *s)
{
	struct osh_conn *c = conn(s);

	if (c)
		osh_conn_release(c, OSH_END_CLOSED);
	cr_assert_null(osh_conn_get(s->fd), "slot still tracked after close");
	if (osh_conn_get(s->lfd))
		osh_conn_release(osh_conn_get(s->lfd), OSH_END_CLOSED);
	close(s->fd);
	close(s->peer);
	close(s->lfd);
}

/* ---- span assertions -------------------------------------------------------- */

static const struct osh_attr *attr(const struct osh_span *sp, const char *key)
{
	return osh_span_find(sp, key);
}

static void assert_attr_str_(const struct osh_span *sp, const char *key, const char *want,
			     int line)
{
	const struct osh_attr *a = attr(sp, key);

	cr_assert_not_null(a, "line %d: attribute %s missing", line, key);
	cr_assert_eq(a->type, OSH_ATTR_STRING, "line %d: %s not a string", line, key);
	cr_assert(a->v.s.len == strlen(want) &&
			  memcmp(osh_span_str(sp, a->v.s), want, a->v.s.len) == 0,
		  "line %d: %s = \"%.*s\", want \"%s\"", line, key, (int)a->v.s.len,
		  osh_span_str(sp, a->v.s), want);
}
#define assert_attr_str(sp, key, want) assert_attr_str_(sp, key, want, __LINE__)

static void assert_attr_int_(const struct osh_span *sp, const char *key, int64_t want, int line)
{
	const struct osh_attr *a = attr(sp, key);

	cr_assert_not_null(a, "line %d: attribute %s missing", line, key);
	cr_assert_eq(a->type, OSH_ATTR_INT, "line %d: %s not an int", line, key);
	cr_assert_eq(a->v.i, want, "line %d: %s = %lld, want %lld", line, key,
		     (long long)a->v.i, (long long)want);
}
#define assert_attr_int(sp, key, want) assert_attr_int_(sp, key, want, __LINE__)

#define assert_no_attr(sp, key) cr_assert_null(attr(sp, key), "attribute %s present", key)

static void assert_name(const struct osh_span *sp, const char *want)
{
	cr_assert(sp->name.len == strlen(want) &&
			  memcmp(osh_span_str(sp, sp->name), want, sp->name.len) == 0,
		  "name \"%.*s\", want \"%s\"", (int)sp->name.len, osh_span_str(sp, sp->name),
		  want);
}

static void hex_to(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
}

static const char T[] = "4bf92f3577b34da6a3ce929d0e0e4736";
static const char P[] = "00f067aa0ba902b7";

static void assert_parent_is_TP(const struct osh_span *sp)
{
	uint8_t tid[16], pid[8];

	hex_to(T, tid, 16);
	hex_to(P, pid, 8);
	cr_assert(sp->has_parent);
	cr_assert(sp->parent_remote);
	cr_assert_eq(memcmp(sp->trace_id, tid, 16), 0, "trace id not the caller's");
	cr_assert_eq(memcmp(sp->parent_span_id, pid, 8), 0, "parent is not the caller's span");
}

static void assert_root(const struct osh_span *sp)
{
	uint8_t tid[16];

	hex_to(T, tid, 16);
	cr_assert_not(sp->has_parent, "span has a parent");
	cr_assert_neq(memcmp(sp->trace_id, tid, 16), 0, "kept the ignored trace id");
}

/* ---- basic exchanges ---------------------------------------------------------- */

static const char get_req[] = "GET /users/12345/orders?color=blue&sig=s3cr3t HTTP/1.1\r\n"
			      "Host: api.example.com:8443\r\n"
			      "User-Agent: test-agent/1.0\r\n"
			      "Accept: */*\r\n\r\n";
static const char ok_resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			      "Content-Length: 12\r\n\r\nhello world\n";

static void check_get_span(const struct osh_span *sp)
{
	assert_name(sp, "GET /users/{id}/orders");
	cr_assert_eq(sp->kind, OSH_SPAN_SERVER);
	cr_assert_eq(sp->status_code, OSH_STATUS_UNSET);
	cr_assert_not(sp->has_parent);
	cr_assert_eq(sp->trace_flags & OSH_FLAG_SAMPLED, OSH_FLAG_SAMPLED);
	cr_assert_gt(sp->start_ns, 0);
	cr_assert_geq(sp->end_ns, sp->start_ns);
	assert_attr_str(sp, "http.request.method", "GET");
	assert_no_attr(sp, "http.request.method_original");
	assert_attr_str(sp, "url.path", "/users/12345/orders");
	assert_attr_str(sp, "url.query", "color=blue&sig=REDACTED");
	assert_attr_str(sp, "url.scheme", "http");
	assert_attr_str(sp, "http.route", "/users/{id}/orders");
	assert_attr_str(sp, "server.address", "api.example.com");
	assert_attr_int(sp, "server.port", 8443);
	assert_attr_str(sp, "client.address", "127.0.0.2");
	assert_attr_str(sp, "network.peer.address", "127.0.0.2");
	assert_attr_int(sp, "network.peer.port", 40123);
	assert_attr_str(sp, "network.protocol.version", "1.1");
	assert_attr_str(sp, "user_agent.original", "test-agent/1.0");
	assert_attr_int(sp, "http.response.status_code", 200);
	assert_attr_int(sp, "http.response.body.size", 12);
	assert_no_attr(sp, "http.request.body.size");
	assert_no_attr(sp, "error.type");
	assert_no_attr(sp, "url.full");
}

Test(server, simple_get)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, get_req);
	cr_assert_eq(n_captured, 0, "span ended before the response");
	tx_str(&s, ok_resp);
	cr_assert_eq(n_captured, 1);
	check_get_span(captured[0]);
	cr_assert(tracked(&s), "keep-alive connection released");
	srv_close(&s);
	cr_assert_eq(n_captured, 1, "close after a complete exchange made a span");
}

Test(server, every_split_of_request_and_response)
{
	size_t rl = strlen(get_req), tl = strlen(ok_resp);

	for (size_t cut = 1; cut < rl; cut++) {
		struct srv s;

		srv_open(&s);
		rx(&s, get_req, cut);
		rx(&s, get_req + cut, rl - cut);
		tx(&s, ok_resp, cut % tl ? cut % tl : 1);
		tx(&s, ok_resp + (cut % tl ? cut % tl : 1), tl - (cut % tl ? cut % tl : 1));
		cr_assert_eq(n_captured, 1, "cut %zu", cut);
		check_get_span(captured[0]);
		srv_close(&s);
		drop_captured();
	}
}

Test(server, byte_at_a_time)
{
	struct srv s;

	srv_open(&s);
	rx_pieces(&s, get_req, strlen(get_req), 1);
	for (size_t i = 0; i + 1 < strlen(ok_resp); i++) {
		tx(&s, ok_resp + i, 1);
		cr_assert_eq(n_captured, 0, "ended at byte %zu", i);
	}
	tx(&s, ok_resp + strlen(ok_resp) - 1, 1);
	cr_assert_eq(n_captured, 1);
	check_get_span(captured[0]);
	srv_close(&s);
}

Test(server, keep_alive_sequence_gets_fresh_ids)
{
	struct srv s;

	srv_open(&s);
	for (int i = 0; i < 5; i++) {
		rx_str(&s, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
		tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
		cr_assert_eq(n_captured, i + 1);
	}
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < i; j++) {
			cr_assert_neq(memcmp(captured[i]->span_id, captured[j]->span_id, 8), 0);
			cr_assert_neq(memcmp(captured[i]->trace_id, captured[j]->trace_id, 16), 0);
		}
	srv_close(&s);
}

Test(server, pipelined_requests_in_one_read)
{
	static const char reqs[] = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
				   "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
				   "\r\nGET /three HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char resps[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
				    "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
				    "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
				    "3\r\nabc\r\n0\r\n\r\n";

	for (size_t piece = 1; piece <= sizeof(reqs); piece += 7) {
		struct srv s;

		srv_open(&s);
		rx_pieces(&s, reqs, sizeof(reqs) - 1, piece);
		tx_pieces(&s, resps, sizeof(resps) - 1, piece);
		cr_assert_eq(n_captured, 3, "piece %zu", piece);
		assert_name(captured[0], "GET /one");
		assert_attr_int(captured[0], "http.response.status_code", 200);
		assert_name(captured[1], "POST /two");
		assert_attr_int(captured[1], "http.response.status_code", 201);
		assert_attr_int(captured[1], "http.request.body.size", 5);
		assert_name(captured[2], "GET /three");
		assert_attr_int(captured[2], "http.response.status_code", 404);
		assert_attr_int(captured[2], "http.response.body.size", 3);
		/* 4xx is the client's error, not the server's. */
		cr_assert_eq(captured[2]->status_code, OSH_STATUS_UNSET);
		assert_no_attr(captured[2], "error.type");
		srv_close(&s);
		drop_captured();
	}
}

Test(server, expect_continue_interim_response)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "PUT /upload HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
		   "Content-Length: 10\r\n\r\n");
	tx_str(&s, "HTTP/1.1 100 Continue\r\n\r\n");
	cr_assert_eq(n_captured, 0, "an interim response ended the exchange");
	rx_str(&s, "0123");
	rx_str(&s, "456789");
	tx_str(&s, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
	cr_assert_eq(n_captured, 0);
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_attr_int(captured[0], "http.response.status_code", 200);
	assert_attr_int(captured[0], "http.request.body.size", 10);
	srv_close(&s);
}

Test(server, chunked_request_and_response_bodies)
{
	static const char req[] = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "a\r\n0123456789\r\n3\r\nabc\r\n0\r\n\r\n";

	for (size_t piece = 1; piece < sizeof(resp); piece++) {
		struct srv s;
		size_t n = sizeof(resp) - 1;

		srv_open(&s);
		rx_pieces(&s, req, sizeof(req) - 1, piece);
		/* Not complete before the final chunk's last byte. */
		tx_pieces(&s, resp, n - 1, piece);
		cr_assert_eq(n_captured, 0, "piece %zu", piece);
		tx(&s, resp + n - 1, 1);
		cr_assert_eq(n_captured, 1, "piece %zu", piece);
		assert_attr_int(captured[0], "http.request.body.size", 11);
		assert_attr_int(captured[0], "http.response.body.size", 13);
		srv_close(&s);
		drop_captured();
	}
}

Test(server, no_body_responses)
{
	static const struct {
		const char *req;
		const char *resp;
		int status;
	} cases[] = {
		{ "HEAD /h HTTP/1.1\r\nHost: h\r\n\r\n",
		  "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 200 },
		{ "GET /n HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n", 204 },
		{ "GET /m HTTP/1.1\r\nHost: h\r\n\r\n",
		  "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n", 304 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct srv s;

		srv_open(&s);
		rx_str(&s, cases[i].req);
		tx_str(&s, cases[i].resp);
		cr_assert_eq(n_captured, 1, "case %zu", i);
		assert_attr_int(captured[0], "http.response.status_code", cases[i].status);
		assert_attr_int(captured[0], "http.response.body.size", 0);
		/* The next request on the connection is still followed. */
		rx_str(&s, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
		tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
		cr_assert_eq(n_captured, 2, "case %zu", i);
		assert_name(captured[1], "GET /next");
		srv_close(&s);
		drop_captured();
	}
}

Test(server, close_delimited_response_ends_at_shutdown_or_close)
{
	for (int how = 0; how < 2; how++) {
		struct srv s;

		srv_open(&s);
		rx_str(&s, "GET /old HTTP/1.0\r\n\r\n");
		tx_str(&s, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n");
		tx_str(&s, "some body bytes");
		cr_assert_eq(n_captured, 0);
		if (how == 0) {
			osh_server_shutdown(conn(&s));
			cr_assert_eq(n_captured, 1);
			cr_assert_not(tracked(&s), "still tracked after shutdown");
		}
		srv_close(&s);
		cr_assert_eq(n_captured, 1);
		assert_attr_int(captured[0], "http.response.body.size", 15);
		assert_attr_str(captured[0], "network.protocol.version", "1.0");
		assert_no_attr(captured[0], "error.type");
		cr_assert_eq(captured[0]->status_code, OSH_STATUS_UNSET);
		drop_captured();
	}
}

Test(server, server_errors_are_errors)
{
	static const int codes[] = { 500, 502, 503, 599 };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct srv s;
		char resp[128], want[8];

		snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", codes[i]);
		snprintf(want, sizeof(want), "%d", codes[i]);
		srv_open(&s);
		rx_str(&s, "GET /e HTTP/1.1\r\nHost: h\r\n\r\n");
		tx_str(&s, resp);
		cr_assert_eq(n_captured, 1);
		assert_attr_int(captured[0], "http.response.status_code", codes[i]);
		assert_attr_str(captured[0], "error.type", want);
		cr_assert_eq(captured[0]->status_code, OSH_STATUS_ERROR);
		srv_close(&s);
		drop_captured();
	}
}

/* The program's response heads are only scanned for their framing: a line
 * the full parse would reject (no colon, a control byte) does not stop the
 * server side from following the response to its end. */
Test(server, response_framing_past_lines_that_are_not_fields)
{
	static const char *const heads[] = {
		"HTTP/1.1 200 OK\r\nX-No-Colon\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX\x01Y: 1\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nContent-Length: 2\r\n\r\nok",
	};

	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		struct srv s;

		srv_open(&s);
		rx_str(&s, "GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
		tx_str(&s, heads[i]);
		cr_assert_eq(n_captured, 1, "%s: the response was not followed to its end", heads[i]);
		assert_attr_int(captured[0], "http.response.status_code", 200);
		assert_attr_int(captured[0], "http.response.body.size", 2);
		/* The next exchange on the connection is traced too. */
		rx_str(&s, "GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
		tx_str(&s, "HTTP/1.1 204 No Content\r\n\r\n");
		cr_assert_eq(n_captured, 2, "%s", heads[i]);
		assert_attr_int(captured[1], "http.response.status_code", 204);
		srv_close(&s);
		drop_captured();
	}
}

/* ---- extraction (W3C) ----------------------------------------------------------- */

static struct osh_span *one_exchange(const char *head_fields)
{
	struct srv s;
	char req[4096];

	snprintf(req, sizeof(req), "GET /x HTTP/1.1\r\nHost: h\r\n%s\r\n", head_fields);
	srv_open(&s);
	rx_str(&s, req);
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	srv_close(&s);
	return n_captured ? captured[n_captured - 1] : NULL;
}

Test(server, valid_traceparent_is_the_remote_parent)
{
	struct osh_span *sp = one_exchange("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"
					   "00f067aa0ba902b7-03\r\n"
					   "tracestate: vendor=abc, other=x\r\n");

	cr_assert_not_null(sp);
	assert_parent_is_TP(sp);
	/* Sampled and random bits kept (Level 2: random is copied). */
	cr_assert_eq(sp->trace_flags, OSH_FLAG_SAMPLED | OSH_FLAG_RANDOM);
	/* Kept (its members; OWS between them is not significant). */
	cr_assert_eq(sp->trace_state.len, strlen("vendor=abc,other=x"));
	cr_assert_eq(memcmp(osh_span_str(sp, sp->trace_state), "vendor=abc,other=x",
			    sp->trace_state.len),
		     0);
	cr_assert_neq(memcmp(sp->span_id, sp->parent_span_id, 8), 0);
}

Test(server, traceparent_any_case_name_and_ows)
{
	struct osh_span *sp = one_exchange("TraceParent: \t 00-4bf92f3577b34da6a3ce929d0e0e4736-"
					   "00f067aa0ba902b7-01 \t\r\n");

	cr_assert_not_null(sp);
	assert_parent_is_TP(sp);
}

Test(server, invalid_traceparents_start_new_traces)
{
	static const char *const bad[] = {
		"traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\r\n",
		"traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n",
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01\r\n",
		"traceparent: ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra\r\n",
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1\r\n",
		"traceparent: garbage\r\n",
		/* Exactly one header is required. */
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char fields[512];
		struct osh_span *sp;

		/* A tracestate without a valid traceparent is dropped. */
		snprintf(fields, sizeof(fields), "%stracestate: vendor=abc\r\n", bad[i]);
		sp = one_exchange(fields);
		cr_assert_not_null(sp, "case %zu: no span", i);
		assert_root(sp);
		cr_assert_eq(sp->trace_state.len, 0, "case %zu: tracestate kept", i);
		drop_captured();
	}
}

Test(server, future_version_traceparent_accepted)
{
	struct osh_span *sp = one_exchange("traceparent: cc-4bf92f3577b34da6a3ce929d0e0e4736-"
					   "00f067aa0ba902b7-09-what-the-future-holds\r\n");

	cr_assert_not_null(sp);
	assert_parent_is_TP(sp);
	cr_assert_eq(sp->trace_flags, OSH_FLAG_SAMPLED, "unknown flag bits kept");
}

Test(server, invalid_tracestate_dropped_traceparent_kept)
{
	struct osh_span *sp = one_exchange("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"
					   "00f067aa0ba902b7-01\r\ntracestate: foo =1\r\n");

	cr_assert_not_null(sp);
	assert_parent_is_TP(sp);
	cr_assert_eq(sp->trace_state.len, 0);
}

Test(server, unsampled_parent_is_respected)
{
	struct srv s;
	const struct osh_context *ctx;
	uint8_t tid[16];

	srv_open(&s);
	rx_str(&s, "GET /x HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"
		   "00f067aa0ba902b7-00\r\n\r\n");
	/* Not recorded, but the context carries the decision onwards. */
	ctx = osh_context_current();
	cr_assert_not_null(ctx);
	hex_to(T, tid, 16);
	cr_assert_eq(memcmp(ctx->span.trace_id, tid, 16), 0);
	cr_assert_eq(ctx->span.flags & OSH_FLAG_SAMPLED, 0);
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 0);
	cr_assert_null(osh_context_current());
	srv_close(&s);
}

Test(server, always_on_ignores_the_parent_flag)
{
	struct osh_span *sp;

	engine_init(OSH_SAMPLER_ALWAYS_ON, NULL);
	sp = one_exchange("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\r\n");
	cr_assert_not_null(sp);
	assert_parent_is_TP(sp);
	cr_assert_eq(sp->trace_flags & OSH_FLAG_SAMPLED, OSH_FLAG_SAMPLED);
}

Test(server, propagators_off_extracts_nothing)
{
	struct osh_span *sp;

	osh_cfg.propagate_tracecontext = false;
	osh_cfg.propagate_baggage = false;
	sp = one_exchange("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
			  "baggage: user_id=u1\r\n");
	cr_assert_not_null(sp);
	assert_root(sp);
	assert_no_attr(sp, "user_id");
}

Test(server, request_id_and_baggage_ids_recorded)
{
	struct osh_span *sp = one_exchange("x-request-id: req-8f2c\r\n"
					   "baggage: other=1, user_id=Am%C3%A9lie;p=1,tenant_id=t-9\r\n");

	cr_assert_not_null(sp);
	assert_attr_str(sp, "http.request.header.x-request-id", "req-8f2c");
	assert_attr_str(sp, "user_id", "Am\xc3\xa9lie");
	assert_attr_str(sp, "tenant_id", "t-9");
	drop_captured();
	sp = one_exchange("baggage: user_id=only\r\n");
	assert_attr_str(sp, "user_id", "only");
	assert_no_attr(sp, "tenant_id");
	assert_no_attr(sp, "http.request.header.x-request-id");
}

#define TP_LINE "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"

static void assert_trace_state(const struct osh_span *sp, const char *want)
{
	cr_assert(sp->trace_state.len == strlen(want) &&
			  memcmp(osh_span_str(sp, sp->trace_state), want, sp->trace_state.len) == 0,
		  "tracestate \"%.*s\", want \"%s\"", (int)sp->trace_state.len,
		  osh_span_str(sp, sp->trace_state), want);
}

/* Several tracestate lines are one list (W3C trace-context, RFC 9110 5.3),
 * in order, however the head arrived. */
Test(server, repeated_tracestate_lines_are_one_list)
{
	static const char req[] = "GET /x HTTP/1.1\r\nHost: h\r\n" TP_LINE
				  "tracestate: v1=a, v2=b\r\nX-Other: 1\r\n"
				  "TraceState: \r\ntracestate: v3=c\r\n\r\n";
	struct osh_span *sp = one_exchange(TP_LINE "tracestate: v1=a, v2=b\r\nX-Other: 1\r\n"
					   "TraceState: \r\ntracestate: v3=c\r\n");

	cr_assert_not_null(sp);
	assert_parent_is_TP(sp);
	assert_trace_state(sp, "v1=a,v2=b,v3=c");
	drop_captured();

	/* A head gathered across reads. */
	for (size_t piece = 1; piece <= 16; piece += 5) {
		struct srv s;

		srv_open(&s);
		rx_pieces(&s, req, sizeof(req) - 1, piece);
		tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
		cr_assert_eq(n_captured, 1, "piece %zu", piece);
		assert_trace_state(captured[0], "v1=a,v2=b,v3=c");
		srv_close(&s);
		drop_captured();
	}
}

/* The joined list is validated as a whole: 33 members over two lines, or
 * one bad member in either line, drop the tracestate (not the parent). */
Test(server, repeated_tracestate_lines_validated_together)
{
	char fields[2048];
	size_t n = 0;
	struct osh_span *sp;

	n += (size_t)snprintf(fields + n, sizeof(fields) - n, TP_LINE "tracestate: ");
	for (int i = 0; i < 20; i++)
		n += (size_t)snprintf(fields + n, sizeof(fields) - n, "%sk%d=v", i ? "," : "", i);
	n += (size_t)snprintf(fields + n, sizeof(fields) - n, "\r\ntracestate: ");
	for (int i = 20; i < 33; i++)
		n += (size_t)snprintf(fields + n, sizeof(fields) - n, "%sk%d=v", i > 20 ? "," : "",
				      i);
	snprintf(fields + n, sizeof(fields) - n, "\r\n");
	sp = one_exchange(fields);
	cr_assert_not_null(sp);
	assert_parent_is_TP(sp);
	cr_assert_eq(sp->trace_state.len, 0, "33 members kept");
	drop_captured();

	/* 32 members over the same two lines are fine. */
	*strstr(fields, ",k32=v") = '\0';
	strcat(fields, "\r\n");
	sp = one_exchange(fields);
	cr_assert_not_null(sp);
	cr_assert_gt(sp->trace_state.len, 0, "32 members dropped");
	drop_captured();

	sp = one_exchange(TP_LINE "tracestate: a=1\r\ntracestate: foo =1\r\n");
	cr_assert_not_null(sp);
	assert_parent_is_TP(sp);
	cr_assert_eq(sp->trace_state.len, 0);
	drop_captured();
	sp = one_exchange(TP_LINE "tracestate: FOO=1\r\ntracestate: a=1\r\n");
	cr_assert_not_null(sp);
	cr_assert_eq(sp->trace_state.len, 0);
	drop_captured();

	/* Without a traceparent, no number of lines makes a tracestate. */
	sp = one_exchange("tracestate: a=1\r\ntracestate: b=2\r\n");
	cr_assert_not_null(sp);
	assert_root(sp);
	cr_assert_eq(sp->trace_state.len, 0);
}

/* Several baggage lines are one list: members of every line count. */
Test(server, repeated_baggage_lines_are_one_list)
{
	struct osh_span *sp = one_exchange("baggage: user_id=u1\r\nHost2: x\r\n"
					   "Baggage: tenant_id=t2;p=1, other=3\r\n");

	cr_assert_not_null(sp);
	assert_attr_str(sp, "user_id", "u1");
	assert_attr_str(sp, "tenant_id", "t2");
	drop_captured();
	/* An empty first line does not hide the second. */
	sp = one_exchange("baggage:\r\nbaggage: tenant_id=t9\r\n");
	cr_assert_not_null(sp);
	assert_attr_str(sp, "tenant_id", "t9");
	assert_no_attr(sp, "user_id");
	drop_captured();
	/* Off means off, however many lines. */
	osh_cfg.propagate_baggage = false;
	sp = one_exchange("baggage: user_id=u1\r\nbaggage: tenant_id=t2\r\n");
	cr_assert_not_null(sp);
	assert_no_attr(sp, "user_id");
	assert_no_attr(sp, "tenant_id");
}

/* ---- attributes ------------------------------------------------------------------- */

Test(server, host_and_local_address)
{
	struct osh_span *sp;
	struct srv s;
	char want_port[8];

	sp = one_exchange("");	/* Host: h */
	assert_attr_str(sp, "server.address", "h");
	assert_attr_int(sp, "server.port", 80);
	drop_captured();

	/* HTTP/1.0 without Host: the listener's address. */
	srv_open(&s);
	rx_str(&s, "GET /ten HTTP/1.0\r\n\r\n");
	tx_str(&s, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_attr_str(captured[0], "server.address", "127.0.0.1");
	assert_attr_int(captured[0], "server.port", s.lport);
	srv_close(&s);
	drop_captured();

	/* A wildcard listener has no useful address, only its port. */
	srv_open_on(&s, INADDR_ANY);
	rx_str(&s, "GET /any HTTP/1.0\r\n\r\n");
	tx_str(&s, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_no_attr(captured[0], "server.address");
	assert_attr_int(captured[0], "server.port", s.lport);
	snprintf(want_port, sizeof(want_port), "%u", s.lport);
	srv_close(&s);
	drop_captured();

	sp = one_exchange("X-Other: 1\r\nHost: [::1]:9000\r\n");
	/* The first Host wins ("h"); make sure v6 parsing works too. */
	assert_attr_str(sp, "server.address", "h");
	drop_captured();
	{
		struct srv s6;
		srv_open(&s6);
		rx_str(&s6, "GET / HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n");
		tx_str(&s6, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
		assert_attr_str(captured[0], "server.address", "::1");
		assert_attr_int(captured[0], "server.port", 9000);
		assert_attr_str(captured[0], "url.path", "/");
		assert_attr_str(captured[0], "http.route", "/");
		assert_name(captured[0], "GET /");
		srv_close(&s6);
	}
}

Test(server, absolute_form_and_odd_targets)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET http://upstream.test:8080/v1/items/42?key=abc HTTP/1.1\r\nHost: other\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_name(captured[0], "GET /v1/items/{id}");
	assert_attr_str(captured[0], "server.address", "upstream.test");
	assert_attr_int(captured[0], "server.port", 8080);
	assert_attr_str(captured[0], "url.path", "/v1/items/42");
	assert_attr_str(captured[0], "url.query", "key=REDACTED");

	rx_str(&s, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	assert_name(captured[1], "OPTIONS");
	assert_no_attr(captured[1], "http.route");

	rx_str(&s, "BREW /pot/77 HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 3);
	assert_name(captured[2], "HTTP /pot/{id}");
	assert_attr_str(captured[2], "http.request.method", "_OTHER");
	assert_attr_str(captured[2], "http.request.method_original", "BREW");

	/* Secrets in the path are scrubbed from url.path and the route. */
	rx_str(&s, "GET /keys/sk-proj-abcdefghijklmnopqrstuvwxyz0123456789/use HTTP/1.1\r\n"
		   "Host: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 4);
	assert_attr_str(captured[3], "url.path", "/keys/REDACTED/use");
	assert_attr_str(captured[3], "http.route", "/keys/{id}/use");

	/* Userinfo in an absolute-form target is not part of server.address. */
	rx_str(&s, "GET http://u:pw@upstream.test:8081/x HTTP/1.1\r\nHost: other\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 5);
	assert_attr_str(captured[4], "server.address", "upstream.test");
	assert_attr_int(captured[4], "server.port", 8081);
	srv_close(&s);
}

Test(server, user_agent_cut_at_character_boundary)
{
	char fields[1200];
	struct osh_span *sp;
	const struct osh_attr *a;
	size_t n = 0;

	n += (size_t)snprintf(fields, sizeof(fields), "User-Agent: ");
	for (int i = 0; i < 200; i++) {
		memcpy(fields + n, "\xc3\xa9", 2);	/* 2-byte characters */
		n += 2;
	}
	fields[n - 1] = '\0';	/* odd count of bytes: ends mid-character */
	n--;
	memcpy(fields + n, "\r\n", 3);
	sp = one_exchange(fields);
	a = attr(sp, "user_agent.original");
	cr_assert_not_null(a);
	cr_assert_leq(a->v.s.len, 256);
	cr_assert_eq(a->v.s.len % 2, 0, "cut inside a character");
}

/* The request path keeps the facts and the exporter thread derives the
 * attributes: the record has none of them until completed. */
Test(server, request_attributes_derived_off_the_request_path)
{
	struct srv s;
	struct osh_conn *c;
	struct osh_span *rec;

	srv_open(&s);
	rx_str(&s, get_req);
	c = osh_conn_get(s.fd);
	cr_assert_not_null(c);
	rec = c->server.ring[c->server.ring_head % OSH_SERVER_RING].rec;
	cr_assert_not_null(rec);
	cr_assert_not_null(rec->deferred, "request attributes were derived on the request path");
	cr_assert_gt(rec->arena_top, 0);
	assert_no_attr(rec, "url.path");
	tx_str(&s, ok_resp);
	srv_close(&s);
	cr_assert_eq(n_captured, 1);
	cr_assert_null(captured[0]->deferred);
	cr_assert_eq(captured[0]->arena_top, 0);
	check_get_span(captured[0]);
}

/* Facts too large to keep (a long target): derived at once, same result. */
Test(server, long_request_attributes_derived_at_once)
{
	char target[1001], req[1400];
	struct srv s;
	struct osh_conn *c;
	struct osh_span *rec;

	target[0] = '/';
	memset(target + 1, 'a', sizeof(target) - 2);
	target[sizeof(target) - 1] = '\0';
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", target);
	srv_open(&s);
	rx_str(&s, req);
	c = osh_conn_get(s.fd);
	rec = c->server.ring[c->server.ring_head % OSH_SERVER_RING].rec;
	cr_assert_not_null(rec);
	cr_assert_null(rec->deferred);
	assert_attr_str(rec, "url.path", target);
	tx_str(&s, ok_resp);
	srv_close(&s);
	cr_assert_eq(n_captured, 1);
	assert_attr_str(captured[0], "url.path", target);
	assert_attr_str(captured[0], "server.address", "h");
	assert_attr_int(captured[0], "http.response.status_code", 200);
}

/* What a target alone decides is remembered per target (a small table, so
 * targets share slots): every span still gets its own target's path, query
 * and route, whether its answer came fresh, from the table, or after another
 * target took the slot, and a remembered secret stays redacted. */
Test(server, repeated_targets_keep_their_own_attributes)
{
	enum { TARGETS = 40 };
	static const int order[3][2] = { { 0, 1 }, { TARGETS - 1, -1 }, { 7, 3 } };
	char pad[100];
	struct srv s;

	memset(pad, 'p', sizeof(pad));

	srv_open(&s);
	for (int pass = 0; pass < 3; pass++) {
		for (int k = 0, i = order[pass][0]; k < TARGETS; k++) {
			char req[512], path[256], query[64], route[256];
			struct osh_span *sp;

			/* Eight targets of each length (the same length, other
			 * bytes), from ~50 to past 128 bytes (the table's limit). */
			int np = (i % 5) * 22;

			snprintf(path, sizeof(path), "/items/%02d/%.*s", i, np, pad);
			snprintf(route, sizeof(route), "/items/{id}/%.*s", np, pad);
			snprintf(query, sizeof(query), "n=%02d&token=REDACTED", i);
			snprintf(req, sizeof(req),
				 "GET %s?n=%02d&token=sk-live-%04dabcdefghijklmnop HTTP/1.1\r\n"
				 "Host: h\r\n\r\n", path, i, i);
			rx_str(&s, req);
			tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
			cr_assert_eq(n_captured, 1);
			sp = captured[0];
			assert_attr_str(sp, "url.path", path);
			assert_attr_str(sp, "url.query", query);
			assert_attr_str(sp, "http.route", route);
			drop_captured();
			i = (i + order[pass][1] + TARGETS) % TARGETS;
		}
	}
	srv_close(&s);
}

/* ---- ends without a complete response ------------------------------------------ */

Test(server, closed_without_response)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
	srv_close(&s);
	cr_assert_eq(n_captured, 1);
	assert_attr_str(captured[0], "error.type", "no_response");
	cr_assert_eq(captured[0]->status_code, OSH_STATUS_ERROR);
	assert_no_attr(captured[0], "http.response.status_code");
}

Test(server, client_went_away_first)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
	rx_ret(&s, 0, 0);
	cr_assert(tracked(&s), "released while a response is still due");
	cr_assert_eq(n_captured, 0);
	srv_close(&s);
	cr_assert_eq(n_captured, 1);
	assert_attr_str(captured[0], "error.type", "client_closed");
}

Test(server, half_closed_client_still_gets_its_answer)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /h HTTP/1.1\r\nHost: h\r\n\r\n");
	rx_ret(&s, 0, 0);
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_no_attr(captured[0], "error.type");
	cr_assert_not(tracked(&s), "nothing left to observe, still tracked");
	srv_close(&s);
}

Test(server, response_cut_short)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
	srv_close(&s);
	cr_assert_eq(n_captured, 1);
	assert_attr_int(captured[0], "http.response.status_code", 200);
	assert_attr_int(captured[0], "http.response.body.size", 10);
	assert_attr_str(captured[0], "error.type", "response_incomplete");
	cr_assert_eq(captured[0]->status_code, OSH_STATUS_ERROR);
}

Test(server, write_and_read_errors)
{
	static const struct {
		bool on_write;
		int err;
		const char *etype;
	} cases[] = {
		{ true, EPIPE, "broken_pipe" },
		{ true, ECONNRESET, "connection_reset" },
		{ false, ECONNRESET, "connection_reset" },
		{ false, ETIMEDOUT, "timeout" },
		{ false, EIO, "_OTHER" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct srv s;

		srv_open(&s);
		rx_str(&s, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
		/* Retries are no errors. */
		tx_ret(&s, -1, EAGAIN);
		tx_ret(&s, -1, EINTR);
		rx_ret(&s, -1, EAGAIN);
		cr_assert_eq(n_captured, 0);
		if (cases[i].on_write)
			tx_ret(&s, -1, cases[i].err);
		else
			rx_ret(&s, -1, cases[i].err);
		cr_assert_eq(n_captured, 1, "case %zu", i);
		assert_attr_str(captured[0], "error.type", cases[i].etype);
		cr_assert_not(tracked(&s));
		srv_close(&s);
		drop_captured();
	}
}

Test(server, unfinished_request_head_makes_no_span)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /partial HTTP/1.1\r\nHost: ");
	srv_close(&s);
	cr_assert_eq(n_captured, 0);
}

/* ---- not HTTP, or lost track ------------------------------------------------------ */

Test(server, non_http_first_bytes_pass_through)
{
	static const char *const firsts[] = {
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",	/* TLS ClientHello */
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",		/* HTTP/2 preface */
		"*1\r\n$4\r\nPING\r\n",				/* Redis */
		"get /lower HTTP/1.1\r\n\r\n",			/* not a method */
	};

	for (size_t i = 0; i < sizeof(firsts) / sizeof(firsts[0]); i++) {
		struct srv s;

		srv_open(&s);
		rx_str(&s, firsts[i]);
		cr_assert_not(tracked(&s), "case %zu still tracked", i);
		srv_close(&s);
		cr_assert_eq(n_captured, 0);
	}
}

Test(server, non_http_server_greeting_passes_through)
{
	struct srv s;

	srv_open(&s);
	tx_str(&s, "220 mail.example.com ESMTP\r\n");
	cr_assert_not(tracked(&s));
	srv_close(&s);
	cr_assert_eq(n_captured, 0);
}

Test(server, malformed_request_head_stops_parsing)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	rx_str(&s, "GET /bad HTTP/1.1\r\n Folded: x\r\n\r\n");
	cr_assert_not(tracked(&s));
	srv_close(&s);
	cr_assert_eq(n_captured, 1);
}

Test(server, head_over_the_limit)
{
	static char big[OSH_HTTP_MAX_HEAD + 100];
	struct srv s;
	size_t n = (size_t)snprintf(big, sizeof(big), "GET /x HTTP/1.1\r\nX-Pad: ");

	memset(big + n, 'a', sizeof(big) - n);
	srv_open(&s);
	rx_pieces(&s, big, sizeof(big), 4096);
	cr_assert_not(tracked(&s));
	srv_close(&s);
	cr_assert_eq(n_captured, 0);
}

Test(server, answered_before_head_complete)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /x HTTP/1.1\r\nX-Huge: ");
	tx_str(&s, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n");
	rx_str(&s, "aaaa\r\n\r\n");
	cr_assert_eq(n_captured, 0, "a request without a parsed head got a span");
	rx_str(&s, "GET /after HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_name(captured[0], "GET /after");
	srv_close(&s);
}

Test(server, response_with_no_request_is_skipped)
{
	struct srv s;

	srv_open(&s);
	/* Some servers answer an idle connection with 408 before closing;
	 * the stream must stay in step. */
	tx_str(&s, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 4\r\n\r\nbye!");
	rx_str(&s, "GET /late HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_name(captured[0], "GET /late");
	assert_attr_int(captured[0], "http.response.status_code", 200);
	srv_close(&s);
}

Test(server, stray_empty_lines_between_requests)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "\r\n\r\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	rx_str(&s, "\r\n");
	rx_str(&s, "GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	srv_close(&s);
}

Test(server, too_many_pipelined_requests)
{
	struct srv s;

	srv_open(&s);
	for (int i = 0; i < OSH_SERVER_RING + 2; i++)
		rx_str(&s, "GET /p HTTP/1.1\r\nHost: h\r\n\r\n");
	cr_assert(tracked(&s), "released with answers still due");
	for (int i = 0; i < OSH_SERVER_RING + 2; i++)
		tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, OSH_SERVER_RING);
	cr_assert_not(tracked(&s), "still tracked after the traced ones ended");
	srv_close(&s);
}

Test(server, upgrade_ends_tracing)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
	tx_str(&s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
	cr_assert_eq(n_captured, 1);
	assert_attr_int(captured[0], "http.response.status_code", 101);
	cr_assert_not(tracked(&s));
	srv_close(&s);
}

Test(server, msg_trunc_or_splice_loses_the_requests)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n");
	osh_server_rx_lost(conn(&s));
	cr_assert(tracked(&s), "the request already read is still due an answer");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	cr_assert_not(tracked(&s));
	srv_close(&s);
}

/* ---- sendfile ---------------------------------------------------------------------- */

Test(server, sendfile_body_of_known_length)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /file HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
	osh_server_tx_opaque(conn(&s), 60000);
	cr_assert_eq(n_captured, 0);
	osh_server_tx_opaque(conn(&s), 40000);
	cr_assert_eq(n_captured, 1);
	assert_attr_int(captured[0], "http.response.body.size", 100000);
	assert_no_attr(captured[0], "error.type");
	/* Keep-alive goes on. */
	rx_str(&s, "GET /again HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
	osh_server_tx_opaque(conn(&s), 3);
	cr_assert_eq(n_captured, 2);
	srv_close(&s);
}

Test(server, sendfile_close_delimited)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /file HTTP/1.0\r\n\r\n");
	tx_str(&s, "HTTP/1.0 200 OK\r\n\r\n");
	osh_server_tx_opaque(conn(&s), 500);
	osh_server_shutdown(conn(&s));
	cr_assert_eq(n_captured, 1);
	assert_attr_int(captured[0], "http.response.body.size", 500);
	srv_close(&s);
}

/* nginx with chunked encoding and sendfile: it writes each chunk-size line,
 * sends the chunk's data from the file, then writes the CRLF; the final
 * chunk ends the response as usual. */
Test(server, sendfile_inside_chunks_is_followed)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /file HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n");
	osh_server_tx_opaque(conn(&s), 1000);
	osh_server_tx_opaque(conn(&s), 3096);
	cr_assert_eq(n_captured, 0, "span ended inside the body");
	cr_assert(tracked(&s));
	tx_str(&s, "\r\n800;ext=1\r\n");
	osh_server_tx_opaque(conn(&s), 2048);
	tx_str(&s, "\r\n");
	cr_assert_eq(n_captured, 0, "span ended before the final chunk");
	tx_str(&s, "0\r\n\r\n");
	cr_assert_eq(n_captured, 1, "final chunk did not end the span");
	assert_attr_int(captured[0], "http.response.status_code", 200);
	assert_attr_int(captured[0], "http.response.body.size", 4096 + 2048);
	assert_no_attr(captured[0], "error.type");
	cr_assert_eq(captured[0]->status_code, OSH_STATUS_UNSET);
	/* Keep-alive goes on: the next exchange is traced as usual. */
	cr_assert(tracked(&s), "connection released after a followed chunked body");
	rx_str(&s, "GET /again HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n");
	osh_server_tx_opaque(conn(&s), 5);
	tx_str(&s, "\r\n0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	assert_name(captured[1], "GET /again");
	assert_attr_int(captured[1], "http.response.body.size", 5);
	srv_close(&s);
}

/* Unseen bytes that reach the chunk framing (the data's CRLF, the next
 * size line) cannot be followed: the response is taken as sent there. */
Test(server, sendfile_across_chunk_framing_ends_the_response)
{
	static const size_t over[] = { 4098, 4097 };
	struct srv s;

	for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
		srv_open(&s);
		rx_str(&s, "GET /file HTTP/1.1\r\nHost: h\r\n\r\n");
		tx_str(&s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n");
		osh_server_tx_opaque(conn(&s), over[i]);
		cr_assert_eq(n_captured, 1, "case %zu", i);
		assert_attr_int(captured[0], "http.response.status_code", 200);
		assert_no_attr(captured[0], "error.type");
		cr_assert_not(tracked(&s), "case %zu: still tracked", i);
		srv_close(&s);
		drop_captured();
	}

	/* Unseen bytes where a size line is due. */
	srv_open(&s);
	rx_str(&s, "GET /file HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
	osh_server_tx_opaque(conn(&s), 10);
	cr_assert_eq(n_captured, 1);
	cr_assert_not(tracked(&s));
	srv_close(&s);
}

Test(server, sendfile_beyond_content_length)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /file HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
	osh_server_tx_opaque(conn(&s), 20);
	cr_assert_eq(n_captured, 1);
	cr_assert_not(tracked(&s));
	srv_close(&s);
}

/* ---- listeners ----------------------------------------------------------------------- */

Test(server, unix_and_datagram_listeners_untraced)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct sockaddr_in cli = { .sin_family = AF_INET };
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	int sv[2];

	snprintf(sun.sun_path, sizeof(sun.sun_path), "/tmp/osh-test-%d.sock", getpid());
	unlink(sun.sun_path);
	cr_assert_eq(bind(l, (struct sockaddr *)&sun, sizeof(sun)), 0);
	cr_assert_eq(listen(l, 1), 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	osh_conn_track_server(sv[0], l, (struct sockaddr *)&sun, sizeof(sun));
	cr_assert_null(osh_conn_get(sv[0]));
	/* The verdict is kept: the listener's slot says "untraced". */
	cr_assert_not_null(osh_conn_get(l));
	cr_assert_eq(atomic_load(&osh_conn_get(l)->role), OSH_ROLE_LISTENER);
	cr_assert_not(osh_conn_get(l)->listener.traced);
	osh_conn_track_server(sv[0], u, (struct sockaddr *)&cli, sizeof(cli));
	cr_assert_null(osh_conn_get(sv[0]));
	osh_conn_release(osh_conn_get(l), OSH_END_CLOSED);
	cr_assert_null(osh_conn_get(l));
	unlink(sun.sun_path);
}

Test(server, peer_address_from_getpeername_when_the_program_gave_none)
{
	struct srv s;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int c = socket(AF_INET, SOCK_STREAM, 0), a;

	memset(&s, 0, sizeof(s));
	s.lfd = listener(INADDR_LOOPBACK, &s.lport);
	sin.sin_port = htons(s.lport);
	cr_assert_eq(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
	a = accept(s.lfd, NULL, NULL);
	cr_assert_geq(a, 0);
	osh_conn_track_server(a, s.lfd, NULL, 0);
	cr_assert_not_null(osh_conn_get(a));
	cr_assert_str_eq(osh_conn_get(a)->peer_text, "127.0.0.1");
	s.fd = a;
	s.peer = c;
	srv_close(&s);
}

Test(server, dup_of_listener_is_a_listener)
{
	struct srv s;
	int l2;

	srv_open(&s);
	l2 = dup(s.lfd);
	osh_conn_dup(s.lfd, l2);
	cr_assert_not_null(osh_conn_get(l2));
	cr_assert_eq(atomic_load(&osh_conn_get(l2)->role), OSH_ROLE_LISTENER);
	cr_assert_eq(osh_conn_get(l2)->local.port, s.lport);
	osh_conn_release(osh_conn_get(l2), OSH_END_CLOSED);
	close(l2);
	srv_close(&s);
}

/* ---- duplicated descriptors -------------------------------------------------------- */

static void rx_fd(int fd, const char *p)
{
	struct iovec iov = { (void *)p, strlen(p) };

	osh_server_rx(osh_conn_get(fd), &iov, 1, (ssize_t)strlen(p), 0);
}

static void tx_fd(int fd, const char *p)
{
	struct iovec iov = { (void *)p, strlen(p) };

	osh_server_tx(osh_conn_get(fd), &iov, 1, (ssize_t)strlen(p), 0);
}

Test(server, dup_shares_the_state_and_outlives_the_original)
{
	struct srv s;
	int d1, d2;

	srv_open(&s);
	d1 = dup(s.fd);
	osh_conn_dup(s.fd, d1);
	cr_assert_eq(atomic_load(&osh_conn_get(d1)->role), OSH_ROLE_ALIAS);
	/* Read through one fd, answer through the other (fdopen "r" + "w"). */
	rx_fd(s.fd, "GET /dup HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_fd(d1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	cr_assert_eq(n_captured, 1);
	assert_name(captured[0], "GET /dup");

	/* A dup of the dup names the same owner. */
	d2 = dup(d1);
	osh_conn_dup(d1, d2);
	cr_assert_eq(atomic_load(&osh_conn_get(d2)->role), OSH_ROLE_ALIAS);

	/* The original fd closes first: the exchange in flight goes on. */
	rx_fd(d2, "GET /after-close HTTP/1.1\r\nHost: h\r\n\r\n");
	osh_conn_release(osh_conn_get(s.fd), OSH_END_CLOSED);
	/* Its slot keeps the state for the dups, but does not claim the
	 * number any more. */
	cr_assert_not(osh_conn_is_ours(osh_conn_get(s.fd)), "closed number still looks ours");
	cr_assert_eq(atomic_load(&osh_conn_get(s.fd)->role), OSH_ROLE_ZOMBIE);
	cr_assert_eq(n_captured, 1, "closing one of the fds ended the exchange");
	tx_fd(d1, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	assert_name(captured[1], "GET /after-close");

	/* The last fd going ends what is left. */
	rx_fd(d2, "GET /unanswered HTTP/1.1\r\nHost: h\r\n\r\n");
	osh_conn_release(osh_conn_get(d1), OSH_END_CLOSED);
	cr_assert_eq(n_captured, 2);
	osh_conn_release(osh_conn_get(d2), OSH_END_CLOSED);
	cr_assert_eq(n_captured, 3);
	assert_attr_str(captured[2], "error.type", "no_response");
	cr_assert_null(osh_conn_get(d1));
	cr_assert_null(osh_conn_get(d2));
	close(d1);
	close(d2);
	close(s.fd);
	close(s.peer);
	close(s.lfd);
}

Test(server, zombie_number_reused_by_a_new_connection)
{
	struct sockaddr_in cli = { .sin_family = AF_INET, .sin_port = htons(1) };
	struct srv s;
	int d;

	srv_open(&s);
	d = dup(s.fd);
	osh_conn_dup(s.fd, d);
	rx_fd(d, "GET /z HTTP/1.1\r\nHost: h\r\n\r\n");
	osh_conn_release(osh_conn_get(s.fd), OSH_END_CLOSED);
	close(s.fd);
	/* The freed number is accepted again: its slot is needed, the old
	 * state goes (ending its exchange), and the alias finds it gone. */
	cli.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	osh_conn_track_server(s.fd, s.lfd, (struct sockaddr *)&cli, sizeof(cli));
	cr_assert_not_null(osh_conn_get(s.fd));
	cr_assert_eq(n_captured, 1);
	assert_attr_str(captured[0], "error.type", "no_response");
	tx_fd(d, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	rx_fd(d, "GET /stale HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_fd(d, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1, "a stale alias fed the new connection");
	osh_conn_release(osh_conn_get(d), OSH_END_CLOSED);
	cr_assert_null(osh_conn_get(d));
	close(d);
	/* The new connection is untouched by all that. */
	rx_str(&s, "GET /new HTTP/1.1\r\nHost: h\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	assert_name(captured[1], "GET /new");
	osh_conn_release(osh_conn_get(s.fd), OSH_END_CLOSED);
	close(s.peer);
	close(s.lfd);
}

Test(server, dup2_back_onto_the_original_number)
{
	struct srv s;
	int d;

	srv_open(&s);
	d = dup(s.fd);
	osh_conn_dup(s.fd, d);
	rx_fd(d, "GET /back HTTP/1.1\r\nHost: h\r\n\r\n");
	/* close(fd); dup2(d, fd): the number names the same socket again. */
	osh_conn_release(osh_conn_get(s.fd), OSH_END_CLOSED);
	cr_assert_eq(atomic_load(&osh_conn_get(s.fd)->role), OSH_ROLE_ZOMBIE);
	osh_conn_dup(d, s.fd);
	cr_assert_eq(atomic_load(&osh_conn_get(s.fd)->role), OSH_ROLE_SERVER);
	cr_assert_eq(n_captured, 0, "the exchange in flight was ended");
	tx_fd(s.fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_name(captured[0], "GET /back");
	osh_conn_release(osh_conn_get(d), OSH_END_CLOSED);
	cr_assert_eq(atomic_load(&osh_conn_get(s.fd)->role), OSH_ROLE_SERVER);
	close(d);
	srv_close(&s);
}

Test(server, dup_of_a_client_connection_stops_tracing_it)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(80) };
	int sv[2], d;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	osh_conn_track_client(sv[0], (struct sockaddr *)&sin, sizeof(sin));
	cr_assert_not_null(osh_conn_get(sv[0]));
	d = dup(sv[0]);
	osh_conn_dup(sv[0], d);
	cr_assert_null(osh_conn_get(sv[0]));
	cr_assert_null(osh_conn_get(d));
	close(d);
	close(sv[0]);
	close(sv[1]);
}

Test(server, close_range_releases_server_slots)
{
	struct srv s;
	int d;

	srv_open(&s);
	d = dup(s.fd);
	osh_conn_dup(s.fd, d);
	rx_str(&s, "GET /r HTTP/1.1\r\nHost: h\r\n\r\n");
	osh_conn_release_range(0, ~0u);
	cr_assert_null(osh_conn_get(s.fd));
	cr_assert_null(osh_conn_get(d));
	cr_assert_null(osh_conn_get(s.lfd));
	cr_assert_eq(n_captured, 1);
	close(d);
	close(s.fd);
	close(s.peer);
	close(s.lfd);
}

/* ---- thread context ------------------------------------------------------------------ */

Test(server, context_from_head_read_to_response_complete)
{
	struct srv s;
	const struct osh_context *ctx;

	srv_open(&s);
	cr_assert_null(osh_context_current());
	rx_str(&s, "POST /ctx HTTP/1.1\r\nHost: h\r\nx-request-id: rid-1\r\n"
		   "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		   "tracestate: v=1\r\nbaggage: user_id=u\r\nContent-Length: 4\r\n\r\n");
	ctx = osh_context_current();
	cr_assert_not_null(ctx, "no context after the head was read");
	rx_str(&s, "body");
	cr_assert_not_null(osh_context_current());
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	cr_assert_null(osh_context_current(), "context outlived the response");
	srv_close(&s);
}

Test(server, context_names_the_server_span)
{
	struct srv s;
	const struct osh_context *ctx;
	uint8_t span_id[8], trace_id[16];

	srv_open(&s);
	rx_str(&s, "GET /ctx HTTP/1.1\r\nHost: h\r\nx-request-id: rid-1\r\n"
		   "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		   "tracestate: v=1\r\nbaggage: user_id=u\r\n\r\n");
	ctx = osh_context_current();
	cr_assert_not_null(ctx);
	memcpy(span_id, ctx->span.span_id, 8);
	memcpy(trace_id, ctx->span.trace_id, 16);
	cr_assert_not(ctx->span.remote);
	cr_assert_eq(ctx->tracestate_len, 3);
	cr_assert_eq(ctx->baggage_len, 9);
	cr_assert_eq(ctx->request_id_len, 5);
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(memcmp(captured[0]->span_id, span_id, 8), 0);
	cr_assert_eq(memcmp(captured[0]->trace_id, trace_id, 16), 0);
	srv_close(&s);
}

struct writer_arg {
	struct srv *s;
};

static void *respond_elsewhere(void *arg)
{
	struct writer_arg *w = arg;

	tx_str(w->s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	return NULL;
}

Test(server, response_written_by_another_thread_retires_the_context)
{
	struct srv s;
	struct writer_arg w = { &s };
	pthread_t th;

	srv_open(&s);
	rx_str(&s, "GET /handoff HTTP/1.1\r\nHost: h\r\n\r\n");
	cr_assert_not_null(osh_context_current());
	cr_assert_eq(pthread_create(&th, NULL, respond_elsewhere, &w), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_eq(n_captured, 1);
	cr_assert_null(osh_context_current(), "stale context still active");
	srv_close(&s);
}

Test(server, closed_connection_retires_the_context)
{
	struct srv s;

	srv_open(&s);
	rx_str(&s, "GET /gone HTTP/1.1\r\nHost: h\r\n\r\n");
	cr_assert_not_null(osh_context_current());
	srv_close(&s);
	cr_assert_null(osh_context_current());
}

Test(server, pipelined_context_is_the_newest_head)
{
	struct srv s;
	const struct osh_context *ctx;

	srv_open(&s);
	rx_str(&s, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
	ctx = osh_context_current();
	cr_assert_not_null(ctx);
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	/* The first response completing does not end the second's context. */
	ctx = osh_context_current();
	cr_assert_not_null(ctx);
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	cr_assert_eq(memcmp(captured[1]->span_id, ctx->span.span_id, 8), 0);
	cr_assert_null(osh_context_current());
	srv_close(&s);
}

/* ---- client requests under the context ----------------------------------------------- */

struct cli {
	int fd;
	int peer;
	char wire[8192];
	size_t wire_len;
};

static void cli_open(struct cli *c)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(9090) };
	int sv[2];

	memset(c, 0, sizeof(*c));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c->fd = sv[0];
	c->peer = sv[1];
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	osh_conn_track_client(c->fd, (struct sockaddr *)&sin, sizeof(sin));
	cr_assert_not_null(osh_conn_get(c->fd));
}

/* The program writes @req; the kernel takes everything. */
static void cli_send(struct cli *c, const char *req)
{
	struct osh_conn *conn_ = osh_conn_get(c->fd);
	struct iovec iov = { (void *)req, strlen(req) };
	struct osh_tx_plan plan;
	const struct iovec *v;
	int n;
	ssize_t total = 0;

	cr_assert_not_null(conn_);
	osh_client_tx_prepare(conn_, c->fd, &iov, 1, &plan);
	v = plan.changed ? plan.iov : &iov;
	n = plan.changed ? plan.iovcnt : 1;
	for (int i = 0; i < n; i++) {
		cr_assert_lt(c->wire_len + v[i].iov_len, sizeof(c->wire));
		memcpy(c->wire + c->wire_len, v[i].iov_base, v[i].iov_len);
		c->wire_len += v[i].iov_len;
		total += (ssize_t)v[i].iov_len;
	}
	cr_assert_eq(osh_client_tx_commit(conn_, &plan, &iov, 1, total, 0), (ssize_t)strlen(req));
}

static void cli_recv(struct cli *c, const char *resp)
{
	struct iovec iov = { (void *)resp, strlen(resp) };

	osh_client_rx(osh_conn_get(c->fd), &iov, 1, (ssize_t)strlen(resp), 0);
}

static void cli_close(struct cli *c)
{
	if (osh_conn_get(c->fd))
		osh_conn_release(osh_conn_get(c->fd), OSH_END_CLOSED);
	close(c->fd);
	close(c->peer);
}

static bool wire_has(const struct cli *c, const char *line)
{
	return memmem(c->wire, c->wire_len, line, strlen(line)) != NULL;
}

static const struct osh_span *find_kind(enum osh_span_kind k)
{
	for (int i = 0; i < n_captured; i++)
		if (captured[i]->kind == k)
			return captured[i];
	return NULL;
}

Test(server, client_request_under_the_context_is_its_child)
{
	struct srv s;
	struct cli c;
	const struct osh_span *srv_span, *cli_span;
	char tp[128], hex_tid[33], hex_sid[17];

	srv_open(&s);
	rx_str(&s, "GET /front HTTP/1.1\r\nHost: h\r\nx-request-id: rid-77\r\n"
		   "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		   "tracestate: vendor=abc\r\nbaggage: user_id=u1,tenant_id=t2\r\n\r\n");
	cli_open(&c);
	cli_send(&c, "GET /backend/1 HTTP/1.1\r\nHost: backend\r\n\r\n");
	cli_recv(&c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	srv_span = find_kind(OSH_SPAN_SERVER);
	cli_span = find_kind(OSH_SPAN_CLIENT);
	cr_assert_not_null(srv_span);
	cr_assert_not_null(cli_span);

	/* One trace: client span under the server span, under the caller. */
	assert_parent_is_TP(srv_span);
	cr_assert_eq(memcmp(cli_span->trace_id, srv_span->trace_id, 16), 0);
	cr_assert(cli_span->has_parent);
	cr_assert_not(cli_span->parent_remote);
	cr_assert_eq(memcmp(cli_span->parent_span_id, srv_span->span_id, 8), 0);
	cr_assert_eq(cli_span->trace_state.len, strlen("vendor=abc"));

	/* On the wire: its traceparent, the context's tracestate, baggage and
	 * x-request-id. */
	osh_hex_encode(cli_span->trace_id, 16, hex_tid);
	osh_hex_encode(cli_span->span_id, 8, hex_sid);
	hex_tid[32] = hex_sid[16] = '\0';
	snprintf(tp, sizeof(tp), "\r\ntraceparent: 00-%s-%s-01\r\n", hex_tid, hex_sid);
	cr_assert(wire_has(&c, tp), "wire: %.*s", (int)c.wire_len, c.wire);
	cr_assert(wire_has(&c, "\r\ntracestate: vendor=abc\r\n"));
	cr_assert(wire_has(&c, "\r\nbaggage: user_id=u1,tenant_id=t2\r\n"));
	cr_assert(wire_has(&c, "\r\nx-request-id: rid-77\r\n"));
	cr_assert_eq(memcmp(c.wire, "GET /backend/1 HTTP/1.1\r\ntraceparent: ", 38), 0);
	cr_assert_eq(memcmp(c.wire + c.wire_len - 17, "Host: backend\r\n\r\n", 17), 0,
		     "program bytes after the injection changed");
	cli_close(&c);
	srv_close(&s);
}

Test(server, client_request_keeps_its_own_headers)
{
	struct srv s;
	struct cli c;

	srv_open(&s);
	rx_str(&s, "GET /front HTTP/1.1\r\nHost: h\r\nx-request-id: incoming\r\n"
		   "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		   "tracestate: vendor=abc\r\nbaggage: user_id=u1\r\n\r\n");
	cli_open(&c);
	cli_send(&c, "GET /b HTTP/1.1\r\nHost: b\r\nX-Request-ID: mine\r\n"
		     "tracestate: own=1\r\nbaggage: own=2\r\n\r\n");
	cr_assert_not(wire_has(&c, "incoming"), "x-request-id added twice");
	cr_assert_not(wire_has(&c, "vendor=abc"), "tracestate added twice");
	cr_assert_not(wire_has(&c, "user_id"), "baggage added twice");
	cr_assert(wire_has(&c, "\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"));
	cli_close(&c);
	srv_close(&s);
}

Test(server, client_request_after_the_response_is_a_new_trace)
{
	struct srv s;
	struct cli c;
	const struct osh_span *cli_span;

	srv_open(&s);
	rx_str(&s, "GET /front HTTP/1.1\r\nHost: h\r\nx-request-id: rid\r\n"
		   "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cli_open(&c);
	cli_send(&c, "GET /later HTTP/1.1\r\nHost: b\r\n\r\n");
	cli_recv(&c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cli_span = find_kind(OSH_SPAN_CLIENT);
	cr_assert_not_null(cli_span);
	cr_assert_not(cli_span->has_parent);
	cr_assert_not(wire_has(&c, "4bf92f3577b34da6a3ce929d0e0e4736"));
	cr_assert_not(wire_has(&c, "x-request-id"));
	cli_close(&c);
	srv_close(&s);
}

Test(server, client_request_without_context_extras_allocates_nothing_extra)
{
	struct srv s;
	struct cli c;
	struct osh_conn *cc;

	srv_open(&s);
	rx_str(&s, "GET /front HTTP/1.1\r\nHost: h\r\n\r\n");
	cli_open(&c);
	cli_send(&c, "GET /b HTTP/1.1\r\nHost: b\r\n\r\n");
	cc = osh_conn_get(c.fd);
	cr_assert_null(cc->client.ring[0].extra_heap);
	cr_assert(wire_has(&c, "\r\ntraceparent: 00-"));
	cr_assert_not(wire_has(&c, "baggage"));
	cli_close(&c);
	srv_close(&s);
}

Test(server, environment_baggage_when_the_request_had_none)
{
	struct srv s;
	struct cli c;

	engine_init(OSH_SAMPLER_PARENTBASED_ALWAYS_ON, "env_key=1");
	srv_open(&s);
	rx_str(&s, "GET /front HTTP/1.1\r\nHost: h\r\nx-request-id: r\r\n\r\n");
	cli_open(&c);
	cli_send(&c, "GET /b HTTP/1.1\r\nHost: b\r\n\r\n");
	cr_assert(wire_has(&c, "\r\nbaggage: env_key=1\r\n"), "wire: %.*s", (int)c.wire_len,
		  c.wire);
	cr_assert(wire_has(&c, "\r\nx-request-id: r\r\n"));
	cli_close(&c);
	srv_close(&s);
}

/* The joined tracestate and baggage are the thread's context, and what a
 * call made while serving the request carries. */
Test(server, repeated_lines_joined_in_the_context_and_on_the_wire)
{
	static const char req[] = "GET /front HTTP/1.1\r\nHost: h\r\n" TP_LINE
				  "tracestate: v1=a\r\nbaggage: user_id=u1\r\n"
				  "tracestate: v2=b\r\nbaggage: tenant_id=t2\r\n\r\n";
	struct srv s;
	struct cli c;
	const struct osh_context *ctx;
	const struct osh_span *cli_span, *srv_span;

	srv_open(&s);
	rx_pieces(&s, req, sizeof(req) - 1, 7);
	ctx = osh_context_current();
	cr_assert_not_null(ctx);
	cr_assert(ctx->tracestate_len == 9 && memcmp(ctx->tracestate, "v1=a,v2=b", 9) == 0,
		  "context tracestate \"%.*s\"", (int)ctx->tracestate_len, ctx->tracestate);
	cr_assert(ctx->baggage_len == 23 &&
			  memcmp(ctx->baggage, "user_id=u1,tenant_id=t2", 23) == 0,
		  "context baggage \"%.*s\"", (int)ctx->baggage_len, ctx->baggage);

	cli_open(&c);
	cli_send(&c, "GET /backend HTTP/1.1\r\nHost: backend\r\n\r\n");
	cr_assert(wire_has(&c, "\r\ntracestate: v1=a,v2=b\r\n"), "wire: %.*s", (int)c.wire_len,
		  c.wire);
	cr_assert(wire_has(&c, "\r\nbaggage: user_id=u1,tenant_id=t2\r\n"), "wire: %.*s",
		  (int)c.wire_len, c.wire);
	cli_recv(&c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	tx_str(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	srv_span = find_kind(OSH_SPAN_SERVER);
	cli_span = find_kind(OSH_SPAN_CLIENT);
	cr_assert_not_null(srv_span);
	cr_assert_not_null(cli_span);
	assert_trace_state(srv_span, "v1=a,v2=b");
	assert_trace_state(cli_span, "v1=a,v2=b");
	assert_attr_str(srv_span, "user_id", "u1");
	assert_attr_str(srv_span, "tenant_id", "t2");
	cli_close(&c);
	srv_close(&s);
}

Test(server, client_sendfile_inside_a_known_length_body)
{
	struct cli c;

	cli_open(&c);
	cli_send(&c, "PUT /up HTTP/1.1\r\nHost: b\r\nContent-Length: 1000\r\n\r\n");
	osh_client_tx_opaque(osh_conn_get(c.fd), 600);
	osh_client_tx_opaque(osh_conn_get(c.fd), 400);
	/* The next request is parsed (and gets its header) as usual. */
	c.wire_len = 0;
	cli_send(&c, "GET /next HTTP/1.1\r\nHost: b\r\n\r\n");
	cr_assert(wire_has(&c, "\r\ntraceparent: 00-"));
	cli_recv(&c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
		     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	assert_attr_int(captured[0], "http.request.body.size", 1000);
	cli_close(&c);
}

Test(server, client_sendfile_elsewhere_degrades_to_pass_through)
{
	struct cli c;

	cli_open(&c);
	osh_client_tx_opaque(osh_conn_get(c.fd), 100);
	cr_assert_null(osh_conn_get(c.fd), "client still tracked after unseen request bytes");
	cli_close(&c);

	cli_open(&c);
	cli_send(&c, "PUT /up HTTP/1.1\r\nHost: b\r\nContent-Length: 10\r\n\r\n");
	osh_client_tx_opaque(osh_conn_get(c.fd), 50);	/* past the body */
	/* The request in flight still gets its response. */
	cr_assert_not_null(osh_conn_get(c.fd));
	cli_recv(&c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	cr_assert_null(osh_conn_get(c.fd));
	cli_close(&c);
}

/* A chunked upload whose chunk data goes out through sendfile: followed to
 * its end, so the request's size is known and the next request is traced. */
Test(server, client_sendfile_inside_chunks)
{
	struct cli c;

	cli_open(&c);
	cli_send(&c, "PUT /up HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n");
	osh_client_tx_opaque(osh_conn_get(c.fd), 1000);
	osh_client_tx_opaque(osh_conn_get(c.fd), 24);
	cli_send(&c, "\r\n0\r\n\r\n");
	c.wire_len = 0;
	cli_send(&c, "GET /next HTTP/1.1\r\nHost: b\r\n\r\n");
	cr_assert(wire_has(&c, "\r\ntraceparent: 00-"));
	cli_recv(&c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
		     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	assert_attr_int(captured[0], "http.request.body.size", 1024);
	cr_assert_not_null(osh_conn_get(c.fd));
	cli_close(&c);

	/* Across the chunk's end: the write side stops being followed. */
	cli_open(&c);
	cli_send(&c, "PUT /up HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n");
	osh_client_tx_opaque(osh_conn_get(c.fd), 1026);
	cli_recv(&c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 3);
	cr_assert_null(osh_conn_get(c.fd));
	cli_close(&c);
}

/* ---- deferred observation: calls logged, replayed later ------------------ */

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The span is made at the replay, with the times of the calls. */
Test(server, deferred_calls_become_a_span_at_replay_with_their_times)
{
	struct timespec nap = { 0, 20 * 1000 * 1000 };
	uint64_t before, after;
	struct srv s;

	srv_open(&s);
	cr_assert(osh_server_defer_start());
	before = realtime_ns();
	rx_str(&s, get_req);
	tx_str(&s, ok_resp);
	after = realtime_ns();
	cr_assert_eq(n_captured, 0, "observed on the calling thread");
	nanosleep(&nap, NULL);
	osh_server_replay();
	cr_assert_eq(n_captured, 1);
	check_get_span(captured[0]);
	cr_assert_geq(captured[0]->start_ns, before);
	cr_assert_leq(captured[0]->end_ns, after, "the end is the replay's time, not the call's");
	srv_close(&s);
}

/* A close ends the connection's state: what was logged goes first. */
Test(server, close_replays_what_was_logged)
{
	struct srv s;

	srv_open(&s);
	cr_assert(osh_server_defer_start());
	rx_str(&s, get_req);
	tx_str(&s, ok_resp);
	cr_assert_eq(n_captured, 0);
	srv_close(&s);
	cr_assert_eq(n_captured, 1);
	check_get_span(captured[0]);
}

/* shutdown(SHUT_WR) after a logged response: the response is complete, not
 * cut short by the shutdown. */
Test(server, shutdown_comes_after_the_logged_response)
{
	struct srv s;

	srv_open(&s);
	cr_assert(osh_server_defer_start());
	rx_str(&s, get_req);
	tx_str(&s, ok_resp);
	osh_server_shutdown(conn(&s));
	cr_assert_eq(n_captured, 1);
	check_get_span(captured[0]);
	srv_close(&s);
}

struct serving {
	struct srv *s;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int step;		/* 1: request read; 2: replayed elsewhere */
	struct osh_trace_ctx parent;
	bool had_parent;
};

static void serving_step(struct serving *v, int step, bool wait)
{
	pthread_mutex_lock(&v->mu);
	if (wait) {
		while (v->step < step)
			pthread_cond_wait(&v->cv, &v->mu);
	} else {
		v->step = step;
		pthread_cond_broadcast(&v->cv);
	}
	pthread_mutex_unlock(&v->mu);
}

static void *read_then_call_out(void *arg)
{
	struct serving *v = arg;
	const struct osh_trace_ctx *p;

	rx_str(v->s, "GET /x HTTP/1.1\r\nHost: h\r\n" TP_LINE "\r\n");
	serving_step(v, 1, false);
	serving_step(v, 2, true);
	/* What a client request started here asks for. */
	p = osh_client_current_parent();
	if ((v->had_parent = p != NULL))
		v->parent = *p;
	return NULL;
}

/* The request was logged on one thread and replayed on another (as by the
 * exporter thread): the SERVER span is still the reading thread's context
 * when it calls out, and never the replaying thread's. */
Test(server, replayed_request_is_the_reading_threads_context)
{
	struct serving v = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct srv s;
	pthread_t th;
	uint8_t tid[16];

	srv_open(&s);
	v.s = &s;
	cr_assert(osh_server_defer_start());
	cr_assert_eq(pthread_create(&th, NULL, read_then_call_out, &v), 0);
	serving_step(&v, 1, true);
	osh_server_replay();
	cr_assert_null(osh_context_current(), "the replaying thread took the context");
	serving_step(&v, 2, false);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert(v.had_parent, "the reading thread has no context");
	hex_to(T, tid, 16);
	cr_assert_eq(memcmp(v.parent.trace_id, tid, 16), 0, "not the caller's trace");
	/* The response then ends the span as usual. */
	tx_str(&s, ok_resp);
	cr_assert_eq(n_captured, 1, "after an outgoing request, observed at once");
	cr_assert_eq(memcmp(captured[0]->span_id, v.parent.span_id, 8), 0,
		     "the context was not the SERVER span");
	srv_close(&s);
}

/* The first outgoing request ends deferral for the process: calls are then
 * observed at once again. */
Test(server, an_outgoing_request_ends_deferral)
{
	struct srv s;

	srv_open(&s);
	cr_assert(osh_server_defer_start());
	rx_str(&s, get_req);
	(void)osh_client_current_parent();
	tx_str(&s, ok_resp);
	cr_assert_eq(n_captured, 1);
	check_get_span(captured[0]);
	srv_close(&s);
}
