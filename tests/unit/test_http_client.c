/* Tests for src/http_client.c (with src/conn.c): the client exchange engine.
 *
 * No preloading and no network: a socketpair stands in for the connection
 * (the engine checks the fd is a socket) and the test plays both the hook
 * and the kernel. For every send call the test asks the engine for a plan,
 * decides how many bytes the "kernel" accepts (anything from -1 with EAGAIN
 * or EINTR to the whole planned length), records those bytes as the wire,
 * and commits; the simulated program then resends from the count it was
 * given, as a correct program does. At the end the wire must be exactly the
 * program's bytes with one "traceparent" line (plus the environment's
 * tracestate/baggage lines) spliced in right after each request line, and
 * the ids in that line must be those of the span captured for the exchange.
 *
 * Responses are fed with osh_client_rx() and finished spans are captured
 * with osh_exporter_set_capture() instead of being queued.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "exporter.h"
#include "http_client.h"
#include "ids.h"
#include "propagation.h"
#include "span.h"
#include "test_support.h"

/* ---- global set-up, as init does it ------------------------------------------ */

static void engine_init(enum osh_sampler_kind sampler, const char *tp, const char *ts,
			const char *bg)
{
	test_config(sampler, tp, ts, bg);
	osh_client_init();
}

static void setup_default(void)
{
	engine_init(OSH_SAMPLER_ALWAYS_ON, NULL, NULL, NULL);
}

static void teardown(void)
{
	drop_captured();
	osh_exporter_set_capture(NULL);
	osh_env_ctx_finish(&osh_env_ctx);
}

TestSuite(client, .init = setup_default, .fini = teardown);

/* ---- printable bytes for failure messages -------------------------------------- */

static const char *esc(const char *p, size_t n)
{
	static char out[4][2048];
	static int which;
	char *o = out[which++ % 4];
	size_t k = 0;

	for (size_t i = 0; i < n && k < sizeof(out[0]) - 8; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r') {
			o[k++] = '\\';
			o[k++] = 'r';
		} else if (c == '\n') {
			o[k++] = '\\';
			o[k++] = 'n';
		} else if (c < 0x20 || c >= 0x7f) {
			k += (size_t)snprintf(o + k, 5, "\\x%02x", c);
		} else {
			o[k++] = (char)c;
		}
	}
	if (k >= sizeof(out[0]) - 8)
		memcpy(o + k, "...", 4);
	else
		o[k] = '\0';
	return o;
}

/* What the current loop iteration is, for failure messages. */
static const char *g_what = "";

/* ---- the simulated connection ----------------------------------------------------- */

struct sim {
	int fd;
	int peer;
	char *wire;
	size_t wire_len;
	size_t wire_cap;
};

static void sim_open(struct sim *s)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(8080)};
	int sv[2];

	memset(s, 0, sizeof(*s));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s->fd = sv[0];
	s->peer = sv[1];
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	osh_conn_track_client(s->fd, (struct sockaddr *)&sin, sizeof(sin));
	cr_assert_not_null(osh_conn_get(s->fd));
}

/* The program closes the socket (the close hook releases the slot). */
static void sim_close(struct sim *s)
{
	struct osh_conn *c = osh_conn_get(s->fd);

	if (c)
		osh_conn_release(c, OSH_END_CLOSED);
	close(s->fd);
	close(s->peer);
	free(s->wire);
	s->wire = NULL;
}

static void wire_add(struct sim *s, const struct iovec *iov, int n, size_t k)
{
	for (int i = 0; i < n && k > 0; i++) {
		size_t m = iov[i].iov_len < k ? iov[i].iov_len : k;

		if (s->wire_len + m > s->wire_cap) {
			s->wire_cap = (s->wire_len + m) * 2 + 256;
			s->wire = realloc(s->wire, s->wire_cap);
			cr_assert_not_null(s->wire);
		}
		memcpy(s->wire + s->wire_len, iov[i].iov_base, m);
		s->wire_len += m;
		k -= m;
	}
}

/* How many bytes the kernel accepts in each call. */
enum policy_kind {
	P_FULL,	  /* everything */
	P_FIRST,  /* @first in the first call (-1: EAGAIN, -2: EINTR), then everything */
	P_STEP,	  /* at most @step each time */
	P_RANDOM, /* seeded: -1 (EAGAIN/EINTR) sometimes, else 0..all */
};

struct policy {
	enum policy_kind kind;
	ssize_t first;
	size_t step;
	unsigned seed;
	unsigned calls;
};

static ssize_t policy_next(struct policy *p, size_t len, int *ret_err)
{
	ssize_t k = (ssize_t)len;

	*ret_err = 0;
	switch (p->kind) {
	case P_FULL:
		break;
	case P_FIRST:
		if (p->calls == 0)
			k = p->first;
		break;
	case P_STEP:
		k = (ssize_t)(len < p->step ? len : p->step);
		break;
	case P_RANDOM:
		p->seed = p->seed * 1103515245u + 12345u;
		if (((p->seed >> 16) & 7) == 0) {
			k = ((p->seed >> 20) & 1) ? -1 : -2;
		} else {
			p->seed = p->seed * 1103515245u + 12345u;
			k = (ssize_t)((p->seed >> 8) % (len + 1));
		}
		break;
	}
	p->calls++;
	if (k == -1)
		*ret_err = EAGAIN;
	else if (k == -2)
		*ret_err = EINTR;
	if (k < 0)
		return -1;
	return k > (ssize_t)len ? (ssize_t)len : k;
}

/* The rest of @iov after the first @skip bytes, into @out (at most 256). */
static int iov_suffix(const struct iovec *iov, int n, size_t skip, struct iovec *out)
{
	int m = 0;

	for (int i = 0; i < n; i++) {
		if (skip >= iov[i].iov_len && iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		if (skip >= iov[i].iov_len && !m)
			continue; /* empty pieces before the resume point */
		cr_assert_lt(m, 256);
		out[m].iov_base = (char *)iov[i].iov_base + skip;
		out[m].iov_len = iov[i].iov_len - skip;
		skip = 0;
		m++;
	}
	return m;
}

/* A span record is only ever held by an exchange in flight: one outside
 * [ring_head, ring_tail) can never be finished, and leaks. */
static void check_ring(const struct osh_client *cl)
{
	for (int i = 0; i < OSH_CLIENT_RING; i++) {
		const struct osh_exchange *ex = &cl->ring[i];
		bool live = false;

		for (uint64_t q = cl->ring_head; q < cl->ring_tail; q++)
			live |= q % OSH_CLIENT_RING == (uint64_t)i && ex->seq == q;
		cr_assert(live || !ex->rec,
			  "%s: slot %d (seq %llu) holds a record outside %llu..%llu", g_what, i,
			  (unsigned long long)ex->seq, (unsigned long long)cl->ring_head,
			  (unsigned long long)cl->ring_tail);
	}
	cr_assert_leq(cl->ring_tail - cl->ring_head, OSH_CLIENT_RING);
}

/* One planned send call: returns what the program was told. */
static ssize_t sim_call(struct sim *s, const struct iovec *cur, int cn, struct policy *p,
			struct osh_tx_plan *plan)
{
	struct osh_conn *c = osh_conn_get(s->fd);
	size_t left = 0, real_len;
	ssize_t k, ret;
	int err;

	for (int i = 0; i < cn; i++)
		left += cur[i].iov_len;
	if (!c) {
		/* The hooks' fast path: an untracked fd goes straight through. */
		plan->active = plan->changed = false;
		k = policy_next(p, left, &err);
		if (k > 0)
			wire_add(s, cur, cn, (size_t)k);
		return k;
	}
	osh_client_tx_prepare(c, s->fd, cur, cn, plan);
	real_len = left;
	if (plan->changed) {
		size_t sum = 0;

		for (int i = 0; i < plan->iovcnt; i++)
			sum += plan->iov[i].iov_len;
		cr_assert_eq(sum, plan->real_total, "plan iovec holds %zu, says %zu", sum,
			     plan->real_total);
		cr_assert_gt(plan->real_total, left);
		cr_assert_eq(plan->total, left);
		real_len = plan->real_total;
	}
	k = policy_next(p, real_len, &err);
	if (k > 0) {
		if (plan->changed)
			wire_add(s, plan->iov, plan->iovcnt, (size_t)k);
		else
			wire_add(s, cur, cn, (size_t)k);
	}
	ret = osh_client_tx_commit(c, plan, cur, cn, k, err);
	cr_assert_not(c->client.tx_busy, "tx_busy left set");
	check_ring(&c->client);
	if (k < 0) {
		cr_assert_eq(ret, -1, "failed call returned %zd", ret);
		return -1;
	}
	cr_assert_geq(ret, 0);
	cr_assert_leq(ret, k, "program told %zd bytes, kernel took %zd", ret, k);
	cr_assert_leq((size_t)ret, left);
	if (!plan->changed)
		cr_assert_eq(ret, k);
	if (getenv("SIM_TRACE")) {
		struct osh_client *cl = &c->client;
		fprintf(stderr,
			"call: left %zu planned %zu (ins %d) k %zd -> %zd | tx st %d pos %llu acc "
			"%u ring %llu..%llu\n",
			left, real_len, plan->n_ins, k, ret, cl->tx.state,
			(unsigned long long)cl->tx.pos, cl->tx.acc_len,
			(unsigned long long)cl->ring_head, (unsigned long long)cl->ring_tail);
		for (uint64_t q = cl->ring_head; q < cl->ring_tail; q++) {
			struct osh_exchange *e = &cl->ring[q % OSH_CLIENT_RING];
			fprintf(stderr,
				"   ex %llu parsed %d inject %d ins_pos %llu sent %u head_pos "
				"%llu\n",
				(unsigned long long)e->seq, e->head_parsed, e->inject,
				(unsigned long long)e->ins_pos, e->ins_sent,
				(unsigned long long)e->head_pos);
		}
		if (cl->tx_acc.p)
			fprintf(stderr, "   acc: %s\n", esc(cl->tx_acc.p, cl->tx.acc_len));
	}
	return ret;
}

/* The program sends all of @iov, resending from its own offset. */
static void sim_sendv(struct sim *s, const struct iovec *iov, int n, struct policy *p)
{
	size_t total = 0, done = 0;
	unsigned guard = 0;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	while (done < total) {
		struct iovec cur[256];
		struct osh_tx_plan plan;
		int cn = iov_suffix(iov, n, done, cur);
		ssize_t ret;

		cr_assert_lt(++guard, 2000000, "no progress");
		ret = sim_call(s, cur, cn, p, &plan);
		if (ret > 0)
			done += (size_t)ret;
	}
	cr_assert_eq(done, total);
}

static void sim_send(struct sim *s, const char *data, size_t len, struct policy *p)
{
	struct iovec iov = {(void *)data, len};

	sim_sendv(s, &iov, 1, p);
}

static void sim_send_full(struct sim *s, const char *data, size_t len)
{
	struct policy p = {.kind = P_FULL};

	sim_send(s, data, len, &p);
}

#define SEND(s, lit) sim_send_full((s), (lit), sizeof(lit) - 1)

/* A read returned @len bytes in one buffer (the read hook's fast path
 * skips untracked fds). */
static void sim_rx(struct sim *s, const char *data, size_t len)
{
	struct osh_conn *c = osh_conn_get(s->fd);
	struct iovec iov = {(void *)data, len};

	if (c) {
		osh_client_rx(c, &iov, 1, (ssize_t)len, 0);
		check_ring(&c->client);
	}
}

static void sim_rx_pieces(struct sim *s, const char *data, size_t len, size_t piece)
{
	for (size_t off = 0; off < len; off += piece)
		sim_rx(s, data + off, len - off < piece ? len - off : piece);
}

static void sim_rx_ret(struct sim *s, ssize_t ret, int err)
{
	struct osh_conn *c = osh_conn_get(s->fd);
	char dummy[16];
	struct iovec iov = {dummy, sizeof(dummy)};

	if (c)
		osh_client_rx(c, &iov, 1, ret, err);
}

#define RX(s, lit) sim_rx((s), (lit), sizeof(lit) - 1)
/* clang-format off */
#define IOV(lit) { (void *)(lit), sizeof(lit) - 1 }
/* clang-format on */

/* ---- checking the wire ----------------------------------------------------------- */

struct tp {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t flags;
};

static bool is_lower_hex(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return false;
	return true;
}

#define TP_LINE_LEN (13 + OSH_TRACEPARENT_LEN + 2)

/* The wire must be @prog with, at each program offset @at[i], one
 * "traceparent: 00-<32hex>-<16hex>-<flags>\r\n" line followed by @extra
 * (NULL: nothing). The parsed ids go to @ret[i] when @ret is set. */
static void check_wire(const struct sim *s, const char *prog, size_t plen, const size_t *at, int n,
		       const char *extra, struct tp *ret)
{
	size_t w = 0, p = 0;
	size_t xl = extra ? strlen(extra) : 0;

	for (int i = 0; i <= n; i++) {
		size_t upto = i < n ? at[i] : plen;
		const char *l;
		struct osh_trace_ctx ctx = {0};

		cr_assert_geq(upto, p);
		cr_assert(w + (upto - p) <= s->wire_len &&
				  memcmp(s->wire + w, prog + p, upto - p) == 0,
			  "%s: wire differs from program bytes %zu..%zu\nwire: %s\nprog: %s",
			  g_what, p, upto, esc(s->wire, s->wire_len), esc(prog, plen));
		w += upto - p;
		p = upto;
		if (i == n)
			break;
		l = s->wire + w;
		cr_assert(w + TP_LINE_LEN <= s->wire_len && memcmp(l, "traceparent: 00-", 16) == 0,
			  "%s: no traceparent line at program offset %zu\nwire: %s", g_what, at[i],
			  esc(s->wire, s->wire_len));
		cr_assert(is_lower_hex(l + 16, 32) && l[48] == '-' && is_lower_hex(l + 49, 16) &&
				  l[65] == '-' && is_lower_hex(l + 66, 2) && l[68] == '\r' &&
				  l[69] == '\n',
			  "malformed traceparent line: %s", esc(l, TP_LINE_LEN));
		cr_assert(osh_traceparent_parse(l + 13, OSH_TRACEPARENT_LEN, &ctx),
			  "invalid traceparent: %s", esc(l, TP_LINE_LEN));
		if (ret) {
			memcpy(ret[i].trace_id, ctx.trace_id, 16);
			memcpy(ret[i].span_id, ctx.span_id, 8);
			ret[i].flags = (uint8_t)((l[66] - '0') * 16 + (l[67] - '0'));
		}
		w += TP_LINE_LEN;
		if (xl) {
			cr_assert(w + xl <= s->wire_len && memcmp(s->wire + w, extra, xl) == 0,
				  "extra lines missing after traceparent\nwire: %s",
				  esc(s->wire, s->wire_len));
			w += xl;
		}
	}
	cr_assert_eq(w, s->wire_len, "trailing bytes on the wire: %s", esc(s->wire, s->wire_len));
}

static void check_unchanged(const struct sim *s, const char *prog, size_t plen)
{
	check_wire(s, prog, plen, NULL, 0, NULL, NULL);
}

/* ---- checking spans ----------------------------------------------------------------- */

static const struct osh_attr *attr(const struct osh_span *sp, const char *key)
{
	return osh_span_find(sp, key);
}

static void assert_attr_str_(const struct osh_span *sp, const char *key, const char *want, int line)
{
	const struct osh_attr *a = attr(sp, key);

	cr_assert_not_null(a, "line %d: attribute %s missing", line, key);
	cr_assert_eq(a->type, OSH_ATTR_STRING, "line %d: %s not a string", line, key);
	cr_assert(a->v.s.len == strlen(want) &&
			  memcmp(osh_span_str(sp, a->v.s), want, a->v.s.len) == 0,
		  "line %d: %s = '%.*s', want '%s'", line, key, (int)a->v.s.len,
		  osh_span_str(sp, a->v.s), want);
}

static void assert_attr_int_(const struct osh_span *sp, const char *key, int64_t want, int line)
{
	const struct osh_attr *a = attr(sp, key);

	cr_assert_not_null(a, "line %d: attribute %s missing", line, key);
	cr_assert_eq(a->type, OSH_ATTR_INT, "line %d: %s not an int", line, key);
	cr_assert_eq(a->v.i, want, "line %d: %s = %lld, want %lld", line, key, (long long)a->v.i,
		     (long long)want);
}

#define assert_attr_str(sp, k, w) assert_attr_str_((sp), (k), (w), __LINE__)
#define assert_attr_int(sp, k, w) assert_attr_int_((sp), (k), (w), __LINE__)
#define assert_no_attr(sp, k)	  cr_assert_null(attr((sp), (k)), "unexpected attribute %s", (k))

static void assert_name(const struct osh_span *sp, const char *want)
{
	cr_assert(sp->name.len == strlen(want) &&
			  memcmp(osh_span_str(sp, sp->name), want, sp->name.len) == 0,
		  "name '%.*s', want '%s'", (int)sp->name.len, osh_span_str(sp, sp->name), want);
}

/* The span is the one whose ids went out in @tp. */
static void assert_span_is(const struct osh_span *sp, const struct tp *tp)
{
	cr_assert_eq(memcmp(sp->trace_id, tp->trace_id, 16), 0, "trace id differs from the header");
	cr_assert_eq(memcmp(sp->span_id, tp->span_id, 8), 0, "span id differs from the header");
	cr_assert_eq(sp->kind, OSH_SPAN_CLIENT);
}

static const char resp_ok0[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/* ---- 1. byte-exactness under every partial-write pattern ---------------------------- */

struct reqcase {
	const char *name;
	const char *prog;
	size_t at[4]; /* where the lines go: after each request line */
	int n;
	const char *resp; /* responses for all requests, in one read */
};

static const struct reqcase reqcases[] = {
	{"get",
	 "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
	 {17},
	 1,
	 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"post-length",
	 "POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
	 {23},
	 1,
	 "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"},
	{"post-chunked",
	 "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	 "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
	 {19},
	 1,
	 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
	{"pipelined",
	 "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
	 {17, 45},
	 2,
	 "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: "
	 "1\r\n\r\nb"},
	{"post-then-get",
	 "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /g HTTP/1.1\r\nHost: y\r\n\r\n",
	 {18, 59},
	 2,
	 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: "
	 "0\r\n\r\n"},
};

/* Sends @rc under @p, checks the wire, answers, and checks one span per
 * request carrying the header's ids. @first_tp: when set, the ids the
 * first request must have (planned before any retry). */
static void run_reqcase(const struct reqcase *rc, struct policy *p, const char *what)
{
	struct sim s;
	struct tp tp[4];
	size_t len = strlen(rc->prog);
	uint8_t first_span_id[8];
	bool first_known = false;
	struct iovec iov = {(void *)rc->prog, len};
	size_t done = 0;
	unsigned guard = 0;

	g_what = what;
	sim_open(&s);
	/* The send loop, inlined to look at the exchange after the first call. */
	while (done < len) {
		struct iovec cur[4];
		struct osh_tx_plan plan;
		int cn = iov_suffix(&iov, 1, done, cur);
		/* The slot itself (type-stable), even if it were released. */
		struct osh_client *cl = &osh_conn_slot(s.fd)->client;
		ssize_t ret;

		cr_assert_lt(++guard, 100000);
		ret = sim_call(&s, cur, cn, p, &plan);
		if (ret < 0) {
			/* A failed call consumed nothing. */
			if (!done) {
				cr_assert_eq(cl->tx.pos, 0, "%s", what);
				cr_assert_eq(cl->ring_tail, cl->ring_head, "%s", what);
				cr_assert_eq(s.wire_len, 0, "%s", what);
			}
			continue;
		}
		done += (size_t)ret;
		cr_assert_eq(cl->tx.pos, done, "%s: parser at %llu, program at %zu", what,
			     (unsigned long long)cl->tx.pos, done);
		if (!first_known && cl->ring_tail > 0) {
			/* The first request's first byte is out: its ids are final. */
			memcpy(first_span_id, cl->ring[0].span_id, 8);
			first_known = true;
		}
	}
	check_wire(&s, rc->prog, len, rc->at, rc->n, NULL, tp);
	cr_assert(first_known);
	cr_assert_eq(memcmp(first_span_id, tp[0].span_id, 8), 0,
		     "%s: ids changed after the request started going out", what);
	for (int i = 0; i < rc->n; i++) {
		cr_assert_eq(tp[i].flags, 0x01, "%s", what);
		for (int j = 0; j < i; j++)
			cr_assert_neq(memcmp(tp[i].span_id, tp[j].span_id, 8), 0);
	}
	cr_assert_eq(n_captured, 0, "%s: span before any response", what);
	sim_rx(&s, rc->resp, strlen(rc->resp));
	cr_assert_eq(n_captured, rc->n, "%s: %d spans, want %d", what, n_captured, rc->n);
	for (int i = 0; i < rc->n; i++) {
		assert_span_is(captured[i], &tp[i]);
		cr_assert_eq(captured[i]->has_parent, false);
		cr_assert_eq(captured[i]->status_code, OSH_STATUS_UNSET, "%s", what);
	}
	drop_captured();
	sim_close(&s);
	cr_assert_eq(n_captured, 0, "%s: span left after close", what);
}

Test(client, every_first_call_count)
{
	for (size_t c = 0; c < sizeof(reqcases) / sizeof(reqcases[0]); c++) {
		const struct reqcase *rc = &reqcases[c];
		size_t max = strlen(rc->prog) + (size_t)rc->n * TP_LINE_LEN;
		char what[128];

		for (ssize_t k = -2; k <= (ssize_t)max; k++) {
			struct policy p = {.kind = P_FIRST, .first = k};

			snprintf(what, sizeof(what), "%s first=%zd", rc->name, k);
			run_reqcase(rc, &p, what);
		}
	}
}

Test(client, every_step_size)
{
	for (size_t c = 0; c < sizeof(reqcases) / sizeof(reqcases[0]); c++) {
		const struct reqcase *rc = &reqcases[c];
		char what[128];

		for (size_t step = 1; step <= 80; step++) {
			struct policy p = {.kind = P_STEP, .step = step};

			snprintf(what, sizeof(what), "%s step=%zu", rc->name, step);
			run_reqcase(rc, &p, what);
		}
	}
}

Test(client, random_partial_writes)
{
	for (size_t c = 0; c < sizeof(reqcases) / sizeof(reqcases[0]); c++) {
		const struct reqcase *rc = &reqcases[c];
		char what[128];

		for (unsigned seed = 1; seed <= 300; seed++) {
			struct policy p = {.kind = P_RANDOM, .seed = seed * 7919u};

			snprintf(what, sizeof(what), "%s seed=%u", rc->name, seed);
			run_reqcase(rc, &p, what);
		}
	}
}

/* EAGAIN and EINTR consume nothing: the next call plans the same. */
Test(client, eagain_and_eintr_consume_nothing)
{
	static const char req[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
	static const int errs[] = {EAGAIN, EINTR, EWOULDBLOCK};

	for (size_t e = 0; e < 3; e++) {
		struct sim s;
		struct iovec iov = {(void *)req, sizeof(req) - 1};
		struct osh_tx_plan plan;
		struct osh_conn *c;
		struct policy p = {.kind = P_FULL};
		struct tp tp;

		sim_open(&s);
		c = osh_conn_get(s.fd);
		/* Half the request goes out, then the retry fails twice. */
		osh_client_tx_prepare(c, s.fd, &iov, 1, &plan);
		cr_assert(plan.changed);
		wire_add(&s, plan.iov, plan.iovcnt, 40);
		cr_assert_eq(osh_client_tx_commit(c, &plan, &iov, 1, 40, 0), 17);
		iov.iov_base = (char *)req + 17;
		iov.iov_len = sizeof(req) - 1 - 17;
		for (int r = 0; r < 2; r++) {
			osh_client_tx_prepare(c, s.fd, &iov, 1, &plan);
			cr_assert(plan.changed);
			cr_assert_eq(plan.real_total, iov.iov_len + TP_LINE_LEN - 23);
			cr_assert_eq(osh_client_tx_commit(c, &plan, &iov, 1, -1, errs[e]), -1);
			cr_assert_eq(c->client.tx.pos, 17);
			cr_assert_eq(c->client.ring[0].ins_sent, 23);
		}
		sim_send(&s, req + 17, sizeof(req) - 1 - 17, &p);
		check_wire(&s, req, sizeof(req) - 1, (size_t[]){17}, 1, NULL, &tp);
		RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
		cr_assert_eq(n_captured, 1);
		assert_span_is(captured[0], &tp);
		cr_assert_null(attr(captured[0], "error.type"));
		drop_captured();
		sim_close(&s);
	}
}

/* A hard write error is not a partial write: nothing is consumed, and the
 * exchange ends in error when the connection goes away. */
Test(client, hard_write_error)
{
	static const char req[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
	struct sim s;
	struct policy p = {.kind = P_FULL};
	struct iovec iov = {(void *)req, sizeof(req) - 1};
	struct osh_tx_plan plan;
	struct osh_conn *c;

	sim_open(&s);
	c = osh_conn_get(s.fd);
	/* First byte out, then EPIPE. */
	osh_client_tx_prepare(c, s.fd, &iov, 1, &plan);
	wire_add(&s, plan.iov, plan.iovcnt, 5);
	cr_assert_eq(osh_client_tx_commit(c, &plan, &iov, 1, 5, 0), 5);
	iov.iov_base = (char *)req + 5;
	iov.iov_len -= 5;
	osh_client_tx_prepare(c, s.fd, &iov, 1, &plan);
	cr_assert_eq(osh_client_tx_commit(c, &plan, &iov, 1, -1, EPIPE), -1);
	cr_assert_eq(c->client.tx.pos, 5);
	(void)p;
	sim_close(&s);
	cr_assert_eq(n_captured, 1);
	assert_attr_str(captured[0], "error.type", "broken_pipe");
	cr_assert_eq(captured[0]->status_code, OSH_STATUS_ERROR);
}

/* ---- 2. heads written in pieces ---------------------------------------------------- */

/* Request line, then headers, then the empty line: the line goes before the
 * empty line, since the request line had already left. */
Test(client, request_line_headers_blank_separately)
{
	static const char *const pieces[] = {"GET /a HTTP/1.1\r\n", "Host: x\r\n", "\r\n"};
	static const char all[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

	for (size_t step = 0; step <= 3; step++) {
		struct sim s;
		struct tp tp;

		sim_open(&s);
		for (int i = 0; i < 3; i++) {
			struct policy p = {.kind = step ? P_STEP : P_FULL, .step = step};
			sim_send(&s, pieces[i], strlen(pieces[i]), &p);
		}
		check_wire(&s, all, sizeof(all) - 1, (size_t[]){26}, 1, NULL, &tp);
		RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
		cr_assert_eq(n_captured, 1);
		assert_span_is(captured[0], &tp);
		assert_name(captured[0], "GET /a");
		drop_captured();
		sim_close(&s);
	}
}

/* Head (and body) split into two send calls at every position, each call
 * with every kernel count for its first attempt. */
Test(client, head_split_at_every_position)
{
	static const char req[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
	const size_t len = sizeof(req) - 1;

	for (size_t cut = 1; cut < len; cut++) {
		for (ssize_t k = -1; k <= (ssize_t)(len + TP_LINE_LEN); k++) {
			struct sim s;
			struct policy p1 = {.kind = P_FIRST, .first = k};
			struct policy p2 = {.kind = P_FIRST, .first = k};
			struct tp tp;
			size_t at;

			sim_open(&s);
			sim_send(&s, req, cut, &p1);
			sim_send(&s, req + cut, len - cut, &p2);
			/* After the request line when it was still to come,
			 * else before the empty line, else not at all. */
			if (cut <= 17)
				at = 17;
			else if (cut <= 26)
				at = 26;
			else
				at = SIZE_MAX;
			if (at == SIZE_MAX)
				check_unchanged(&s, req, len);
			else
				check_wire(&s, req, len, &at, 1, NULL, &tp);
			RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
			cr_assert_eq(n_captured, 1, "cut %zu k %zd", cut, k);
			if (at != SIZE_MAX)
				assert_span_is(captured[0], &tp);
			drop_captured();
			sim_close(&s);
		}
	}
}

/* "...\r\n\r" | "\n": the empty line is already half out, nothing can be
 * injected; the request goes out unchanged, once, and is still traced. */
Test(client, blank_line_split_cannot_inject)
{
	static const char req[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
	struct sim s;

	sim_open(&s);
	sim_send_full(&s, req, 27);
	sim_send_full(&s, req + 27, 1);
	check_unchanged(&s, req, sizeof(req) - 1);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_name(captured[0], "GET /a");
	/* A second request on the connection is injected normally. */
	drop_captured();
	SEND(&s, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
	cr_assert_eq(s.wire_len, 2 * (sizeof(req) - 1) + TP_LINE_LEN);
	sim_close(&s);
}

/* Every byte in its own send call: each head ends with its empty line
 * already started, so nothing is injected, and nothing is corrupted. */
Test(client, byte_per_call)
{
	static const char req[] = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbodyGET "
				  "/y HTTP/1.1\r\n\r\n";
	struct sim s;

	sim_open(&s);
	for (size_t i = 0; i < sizeof(req) - 1; i++)
		sim_send_full(&s, req + i, 1);
	check_unchanged(&s, req, sizeof(req) - 1);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 2);
	assert_name(captured[0], "POST /x");
	assert_attr_int(captured[0], "http.request.body.size", 4);
	assert_name(captured[1], "GET /y");
	sim_close(&s);
}

/* Bare-LF heads are HTTP too: injection after the request line. */
Test(client, lf_only_head)
{
	static const char req[] = "GET /a HTTP/1.1\nHost: x\n\n";
	struct sim s;
	struct tp tp;

	sim_open(&s);
	SEND(&s, req);
	check_wire(&s, req, sizeof(req) - 1, (size_t[]){16}, 1, NULL, &tp);
	RX(&s, "HTTP/1.1 200 OK\nContent-Length: 0\n\n");
	cr_assert_eq(n_captured, 1);
	assert_span_is(captured[0], &tp);
	sim_close(&s);
}

/* A head left open by an earlier call completes in a call that also
 * starts the next request, whose head is split (across iovecs, or by the
 * end of the call), and the kernel takes only part of it. The dry run of
 * that call must not overwrite the earlier head's gathered bytes: a replay
 * from the saved state reads them again. */
Test(client, open_head_then_new_split_head_partial_writes)
{
	static const char prog[] = "POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /bb "
				   "HTTP/1.1\r\nHost: y\r\n\r\n";
	/* Call 1: A's request line and a bit more. Call 2: the rest of A
	 * and B's head in pieces. Shape 1: B's head ends in a third call. */
	static const struct iovec call2_iov[] = {
		IOV("ent-Length: 2\r\n\r\nhi"),
		IOV("GET /bb HTTP/1.1\r\n"),
		IOV("Host: y\r\n\r\n"),
	};
	static const struct iovec call2_short[] = {
		IOV("ent-Length: 2\r\n\r\nhi"),
		IOV("GET /bb HTTP/1.1\r\nHo"),
	};
	const size_t a_sent = 22, a_blank = 37, b_line = 41 + 18;

	for (int shape = 0; shape < 2; shape++) {
		for (ssize_t k = -1; k <= 200; k++) {
			struct sim s;
			struct policy full = {.kind = P_FULL};
			struct policy p = {.kind = P_FIRST, .first = k};
			struct tp tp[2];
			char what[64];

			snprintf(what, sizeof(what), "shape %d first %zd", shape, k);
			g_what = what;
			sim_open(&s);
			sim_send(&s, prog, a_sent, &full);
			if (shape == 0) {
				sim_sendv(&s, call2_iov, 3, &p);
			} else {
				sim_sendv(&s, call2_short, 2, &p);
				sim_send(&s, prog + b_line + 2, sizeof(prog) - 1 - b_line - 2,
					 &full);
			}
			/* Shape 1 sent B's request line whole: B's line goes
			 * before its empty line. */
			check_wire(&s, prog, sizeof(prog) - 1,
				   (size_t[]){a_blank, shape ? b_line + 9 : b_line}, 2, NULL, tp);
			RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
			       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
			cr_assert_eq(n_captured, 2, "%s", what);
			assert_name(captured[0], "POST /a");
			assert_attr_int(captured[0], "http.request.body.size", 2);
			assert_span_is(captured[0], &tp[0]);
			assert_name(captured[1], "GET /bb");
			assert_attr_str(captured[1], "server.address", "y");
			assert_span_is(captured[1], &tp[1]);
			drop_captured();
			sim_close(&s);
		}
	}
}

/* ---- 3. the program's own traceparent ------------------------------------------------ */

static const char own_tid[] = "4bf92f3577b34da6a3ce929d0e0e4736";
static const char own_sid[] = "00f067aa0ba902b7";

static void hex_to(const char *hex, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static void check_own_parent(const struct osh_span *sp)
{
	uint8_t tid[16], sid[8];

	hex_to(own_tid, tid, 16);
	hex_to(own_sid, sid, 8);
	cr_assert(sp->has_parent);
	cr_assert(sp->parent_remote);
	cr_assert_eq(memcmp(sp->trace_id, tid, 16), 0);
	cr_assert_eq(memcmp(sp->parent_span_id, sid, 8), 0);
	cr_assert_neq(memcmp(sp->span_id, sid, 8), 0);
}

Test(client, own_traceparent_any_case_any_split)
{
	static const char *const names[] = {"traceparent", "TraceParent", "TRACEPARENT",
					    "tRaCePaReNt"};

	for (size_t n = 0; n < 4; n++) {
		char req[256];
		int len = snprintf(req, sizeof(req),
				   "GET /a HTTP/1.1\r\nHost: x\r\n%s: 00-%s-%s-01\r\n\r\n",
				   names[n], own_tid, own_sid);

		/* cut == len: whole; otherwise two calls, then byte at a time. */
		for (int cut = 1; cut <= len + 1; cut++) {
			struct sim s;

			sim_open(&s);
			if (cut <= len) {
				sim_send_full(&s, req, (size_t)cut);
				if (cut < len)
					sim_send_full(&s, req + cut, (size_t)(len - cut));
			} else {
				struct policy p = {.kind = P_STEP, .step = 1};
				sim_send(&s, req, (size_t)len, &p);
			}
			check_unchanged(&s, req, (size_t)len);
			RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
			cr_assert_eq(n_captured, 1, "%s cut %d", names[n], cut);
			check_own_parent(captured[0]);
			drop_captured();
			sim_close(&s);
		}
	}
}

/* Own tracestate goes to the span along with the own parent. */
Test(client, own_traceparent_with_tracestate)
{
	char req[256];
	int len = snprintf(
		req, sizeof(req),
		"GET /a HTTP/1.1\r\ntraceparent: 00-%s-%s-01\r\ntracestate: ro=1,x=y\r\n\r\n",
		own_tid, own_sid);
	struct sim s;
	const struct osh_span *sp;

	sim_open(&s);
	sim_send_full(&s, req, (size_t)len);
	check_unchanged(&s, req, (size_t)len);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	sp = captured[0];
	check_own_parent(sp);
	cr_assert(sp->trace_state.len == 8 &&
		  memcmp(osh_span_str(sp, sp->trace_state), "ro=1,x=y", 8) == 0);
	sim_close(&s);
}

/* Invalid or duplicated traceparent headers: nothing injected (the program
 * propagates, badly), and the span is a root. */
Test(client, own_invalid_traceparent_is_root)
{
	static const char *const reqs[] = {
		"GET /a HTTP/1.1\r\ntraceparent: 00-zz-00f067aa0ba902b7-01\r\n\r\n",
		"GET /a HTTP/1.1\r\ntraceparent: "
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n\r\n",
		"GET /a HTTP/1.1\r\ntraceparent: \r\n\r\n",
		"GET /a HTTP/1.1\r\ntraceparent: "
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n",
	};
	uint8_t tid[16];

	hex_to(own_tid, tid, 16);
	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		struct sim s;

		sim_open(&s);
		sim_send_full(&s, reqs[i], strlen(reqs[i]));
		check_unchanged(&s, reqs[i], strlen(reqs[i]));
		RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
		cr_assert_eq(n_captured, 1, "case %zu", i);
		cr_assert_not(captured[0]->has_parent, "case %zu", i);
		cr_assert_neq(memcmp(captured[0]->trace_id, tid, 16), 0, "case %zu", i);
		drop_captured();
		sim_close(&s);
	}
}

/* ---- 4. writev ---------------------------------------------------------------------- */

static void run_iov_case(const struct iovec *iov, int n, const size_t *at, int n_at,
			 struct policy *p, const char *what)
{
	struct sim s;
	char prog[4096];
	size_t len = 0;
	struct tp tp[4];

	for (int i = 0; i < n; i++) {
		memcpy(prog + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	g_what = what;
	sim_open(&s);
	sim_sendv(&s, iov, n, p);
	check_wire(&s, prog, len, at, n_at, NULL, tp);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, n_at, "%s", what);
	for (int i = 0; i < n_at; i++)
		assert_span_is(captured[i], &tp[i]);
	drop_captured();
	sim_close(&s);
}

Test(client, writev_head_over_several_iovecs)
{
	static const struct iovec a[] = {
		IOV("GET /a HT"),
		IOV("TP/1.1\r"),
		IOV("\nHost: x\r\n"),
		IOV(""),
		IOV("Content-Length: 3\r\n\r\n"),
		IOV("abc"),
	};
	/* The request line ends exactly at an iovec boundary. */
	static const struct iovec b[] = {
		IOV("POST /b HTTP/1.1\r\n"),
		IOV(""),
		IOV("Content-Length: 3\r\n"),
		IOV("\r\n"),
		IOV("xyz"),
	};
	/* Two requests, one iovec per line, bodies apart. */
	static const struct iovec c[] = {
		IOV("PUT /c HTTP/1.1\r\n"),
		IOV("Content-Length: 2\r\n"),
		IOV("\r\n"),
		IOV("12"),
		IOV("GET /d HTTP/1.1\r\n"),
		IOV("\r\n"),
	};
	static const struct {
		const struct iovec *iov;
		int n;
		size_t at[2];
		int n_at;
	} cases[] = {
		{a, 6, {17}, 1},
		{b, 5, {18}, 1},
		{c, 6, {17, 57}, 2},
	};

	for (size_t i = 0; i < 3; i++) {
		for (ssize_t k = -1; k <= 150; k++) {
			struct policy p = {.kind = P_FIRST, .first = k};
			char what[64];

			snprintf(what, sizeof(what), "case %zu first %zd", i, k);
			run_iov_case(cases[i].iov, cases[i].n, cases[i].at, cases[i].n_at, &p,
				     what);
		}
		for (unsigned seed = 1; seed < 100; seed++) {
			struct policy p = {.kind = P_RANDOM, .seed = seed};
			char what[64];

			snprintf(what, sizeof(what), "case %zu seed %u", i, seed);
			run_iov_case(cases[i].iov, cases[i].n, cases[i].at, cases[i].n_at, &p,
				     what);
		}
	}
}

/* One byte per iovec for the whole head: still spliced correctly. */
Test(client, writev_one_byte_iovecs)
{
	static const char req[] = "GET /abc HTTP/1.1\r\nHost: xy\r\n\r\n";
	struct iovec iov[64];
	int n = (int)sizeof(req) - 1;

	for (int i = 0; i < n; i++) {
		iov[i].iov_base = (void *)(req + i);
		iov[i].iov_len = 1;
	}
	for (ssize_t k = -1; k <= 110; k++) {
		struct policy p = {.kind = P_FIRST, .first = k};

		run_iov_case(iov, n, (size_t[]){19}, 1, &p, "one-byte iovecs");
	}
}

/* More iovecs than a plan can splice into: the request goes unchanged
 * (and is still traced), never half-injected. */
Test(client, writev_too_many_iovecs_unchanged)
{
	static char req[256];
	struct iovec iov[200];
	int len = snprintf(req, sizeof(req), "GET /a HTTP/1.1\r\nHost: x\r\nX-Pad: %0100d\r\n\r\n",
			   0);
	struct sim s;
	struct policy p = {.kind = P_FULL};

	for (int i = 0; i < len; i++) {
		iov[i].iov_base = req + i;
		iov[i].iov_len = 1;
	}
	sim_open(&s);
	sim_sendv(&s, iov, len, &p);
	check_unchanged(&s, req, (size_t)len);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	sim_close(&s);
}

/* ---- 5. responses ------------------------------------------------------------------- */

static struct tp last_tp[4];

static size_t line_end(const char *req)
{
	return (size_t)(strchr(req, '\n') - req) + 1;
}

/* Open, send @req whole (checking the line after its request line), then
 * feed @resp whole (@piece 0) or in pieces; "" feeds nothing. */
static void exchange(struct sim *s, const char *req, const char *resp, size_t piece)
{
	size_t len = strlen(req);
	size_t at = line_end(req);

	sim_open(s);
	sim_send_full(s, req, len);
	check_wire(s, req, len, &at, 1, NULL, last_tp);
	if (!*resp)
		return;
	if (piece)
		sim_rx_pieces(s, resp, strlen(resp), piece);
	else
		sim_rx(s, resp, strlen(resp));
}

Test(client, response_content_length_attributes)
{
	static const char req[] =
		"GET /users/12345/orders/550e8400-e29b-41d4-a716-446655440000?x=1 HTTP/1.1\r\n"
		"Host: example.com:8081\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
	static const char resp[] =
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

	for (size_t piece = 0; piece <= 3; piece++) {
		struct sim s;
		const struct osh_span *sp;

		exchange(&s, req, resp, piece);
		cr_assert_eq(n_captured, 1, "piece %zu", piece);
		sp = captured[0];
		assert_span_is(sp, &last_tp[0]);
		assert_name(sp, "GET /users/{id}/orders/{id}");
		assert_attr_str(sp, "http.request.method", "GET");
		assert_attr_str(sp, "url.full",
				"http://example.com:8081/users/12345/orders/"
				"550e8400-e29b-41d4-a716-446655440000?x=1");
		assert_attr_str(sp, "url.path",
				"/users/12345/orders/550e8400-e29b-41d4-a716-446655440000");
		assert_attr_str(sp, "url.scheme", "http");
		assert_attr_str(sp, "server.address", "example.com");
		assert_attr_int(sp, "server.port", 8081);
		assert_attr_str(sp, "network.peer.address", "127.0.0.1");
		assert_attr_int(sp, "network.peer.port", 8080);
		assert_attr_str(sp, "user_agent.original", "curl/8.5.0");
		assert_attr_int(sp, "http.response.status_code", 200);
		assert_attr_str(sp, "network.protocol.version", "1.1");
		assert_attr_int(sp, "http.response.body.size", 5);
		assert_no_attr(sp, "error.type");
		assert_no_attr(sp, "http.request.body.size");
		cr_assert_eq(sp->status_code, OSH_STATUS_UNSET);
		cr_assert_eq(sp->kind, OSH_SPAN_CLIENT);
		cr_assert_not(sp->has_parent);
		cr_assert_gt(sp->start_ns, 0);
		cr_assert_geq(sp->end_ns, sp->start_ns);
		drop_captured();
		sim_close(&s);
	}
}

Test(client, request_body_sizes)
{
	static const struct {
		const char *req;
		size_t at;
		int64_t size;
	} cases[] = {
		{"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world", 18, 11},
		{"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
		 18, 11},
		{"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", 18, 0},
	};

	for (size_t i = 0; i < 3; i++) {
		struct sim s;

		exchange(&s, cases[i].req, resp_ok0, 0);
		cr_assert_eq(n_captured, 1);
		assert_attr_int(captured[0], "http.request.body.size", cases[i].size);
		assert_attr_str(captured[0], "http.request.method", "POST");
		drop_captured();
		sim_close(&s);
	}
}

Test(client, response_chunked)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";

	for (size_t piece = 0; piece <= 2; piece++) {
		struct sim s;

		exchange(&s, "GET /w HTTP/1.1\r\nHost: h\r\n\r\n", resp, piece);
		cr_assert_eq(n_captured, 1);
		assert_attr_int(captured[0], "http.response.body.size", 9);
		assert_attr_int(captured[0], "http.response.status_code", 200);
		drop_captured();
		sim_close(&s);
	}
}

/* No length: the body ends when the peer closes (read returns 0). */
Test(client, response_until_close)
{
	struct sim s;

	exchange(&s, "GET /c HTTP/1.0\r\nHost: h\r\n\r\n", "HTTP/1.0 200 OK\r\n\r\nhello", 0);
	RX(&s, " world");
	cr_assert_eq(n_captured, 0, "ended before EOF");
	sim_rx_ret(&s, 0, 0);
	cr_assert_eq(n_captured, 1);
	assert_attr_int(captured[0], "http.response.body.size", 11);
	assert_attr_str(captured[0], "network.protocol.version", "1.0");
	assert_no_attr(captured[0], "error.type");
	cr_assert_eq(captured[0]->status_code, OSH_STATUS_UNSET);
	cr_assert_null(osh_conn_get(s.fd), "connection not released at EOF");
	sim_close(&s);
}

/* HEAD: the response's Content-Length describes a body that never comes;
 * the next pipelined response must still be read right. */
Test(client, head_request_has_no_body)
{
	struct sim s;
	static const char req[] =
		"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /g HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
				   "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop";

	for (size_t piece = 0; piece <= 1; piece++) {
		sim_open(&s);
		sim_send_full(&s, req, sizeof(req) - 1);
		check_wire(&s, req, sizeof(req) - 1, (size_t[]){18, 46}, 2, NULL, last_tp);
		if (piece)
			sim_rx_pieces(&s, resp, sizeof(resp) - 1, 1);
		else
			sim_rx(&s, resp, sizeof(resp) - 1);
		cr_assert_eq(n_captured, 2);
		assert_name(captured[0], "HEAD /h");
		assert_attr_int(captured[0], "http.response.status_code", 200);
		assert_attr_int(captured[0], "http.response.body.size", 0);
		assert_span_is(captured[0], &last_tp[0]);
		assert_name(captured[1], "GET /g");
		assert_attr_int(captured[1], "http.response.status_code", 404);
		assert_attr_int(captured[1], "http.response.body.size", 3);
		assert_span_is(captured[1], &last_tp[1]);
		drop_captured();
		sim_close(&s);
	}
}

Test(client, no_body_statuses_204_304)
{
	static const char req[] =
		"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
	static const char resp[] = "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
				   "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
				   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
	struct sim s;

	sim_open(&s);
	sim_send_full(&s, req, sizeof(req) - 1);
	check_wire(&s, req, sizeof(req) - 1, (size_t[]){17, 36, 55}, 3, NULL, last_tp);
	sim_rx(&s, resp, sizeof(resp) - 1);
	cr_assert_eq(n_captured, 3);
	assert_attr_int(captured[0], "http.response.status_code", 204);
	assert_attr_int(captured[1], "http.response.status_code", 304);
	assert_attr_int(captured[2], "http.response.status_code", 200);
	assert_attr_int(captured[2], "http.response.body.size", 2);
	for (int i = 0; i < 3; i++) {
		assert_span_is(captured[i], &last_tp[i]);
		assert_no_attr(captured[i], "error.type");
	}
	sim_close(&s);
}

Test(client, interim_responses_then_final)
{
	static const char resp[] = "HTTP/1.1 100 Continue\r\n\r\n"
				   "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
				   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

	for (size_t piece = 0; piece <= 1; piece++) {
		struct sim s;

		exchange(&s,
			 "POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
			 resp, piece);
		cr_assert_eq(n_captured, 1);
		assert_attr_int(captured[0], "http.response.status_code", 200);
		assert_attr_int(captured[0], "http.response.body.size", 2);
		drop_captured();
		sim_close(&s);
	}
}

/* The body of a 100-continue request is written after the interim
 * response arrived. */
Test(client, expect_continue_body_after_interim)
{
	static const char head[] =
		"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
	static const char all[] =
		"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nDATA";
	struct sim s;

	sim_open(&s);
	SEND(&s, head);
	RX(&s, "HTTP/1.1 100 Continue\r\n\r\n");
	SEND(&s, "DATA");
	check_wire(&s, all, sizeof(all) - 1, (size_t[]){17}, 1, NULL, last_tp);
	cr_assert_eq(n_captured, 0);
	RX(&s, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_attr_int(captured[0], "http.response.status_code", 201);
	assert_attr_int(captured[0], "http.request.body.size", 4);
	sim_close(&s);
}

Test(client, pipelined_responses)
{
	static const char req[] =
		"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char resp[] =
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
		"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n";

	for (size_t piece = 0; piece <= 7; piece += 1) {
		struct sim s;

		sim_open(&s);
		sim_send_full(&s, req, sizeof(req) - 1);
		check_wire(&s, req, sizeof(req) - 1, (size_t[]){19, 49}, 2, NULL, last_tp);
		if (piece)
			sim_rx_pieces(&s, resp, sizeof(resp) - 1, piece);
		else
			sim_rx(&s, resp, sizeof(resp) - 1);
		cr_assert_eq(n_captured, 2);
		assert_name(captured[0], "GET /one");
		assert_span_is(captured[0], &last_tp[0]);
		assert_attr_int(captured[0], "http.response.body.size", 3);
		assert_no_attr(captured[0], "error.type");
		assert_name(captured[1], "GET /two");
		assert_span_is(captured[1], &last_tp[1]);
		assert_attr_int(captured[1], "http.response.status_code", 500);
		assert_attr_int(captured[1], "http.response.body.size", 1);
		assert_attr_str(captured[1], "error.type", "500");
		drop_captured();
		sim_close(&s);
	}
}

/* A read spread over several iovecs, the count smaller than their room. */
Test(client, response_over_iovecs)
{
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody";
	char b1[10], b2[7], b3[100];
	struct iovec iov[3] = {{b1, sizeof(b1)}, {b2, sizeof(b2)}, {b3, sizeof(b3)}};
	size_t n = sizeof(resp) - 1;
	struct sim s;

	exchange(&s, "GET /v HTTP/1.1\r\n\r\n", "", 0);
	memcpy(b1, resp, 10);
	memcpy(b2, resp + 10, 7);
	memcpy(b3, resp + 17, n - 17);
	/* Garbage past the count must be ignored. */
	memset(b3 + (n - 17), 'Z', sizeof(b3) - (n - 17));
	osh_client_rx(osh_conn_get(s.fd), iov, 3, (ssize_t)n, 0);
	cr_assert_eq(n_captured, 1);
	assert_attr_int(captured[0], "http.response.body.size", 4);
	sim_close(&s);
}

Test(client, error_status_codes)
{
	static const struct {
		const char *resp;
		int status;
		bool error;
	} cases[] = {
		{"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 404, true},
		{"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n", 503, true},
		{"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n", 400, true},
		{"HTTP/1.1 399 Odd\r\nContent-Length: 0\r\n\r\n", 399, false},
		{"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n", 302, false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sim s;
		char code[8];

		exchange(&s, "GET /a HTTP/1.1\r\n\r\n", cases[i].resp, 0);
		cr_assert_eq(n_captured, 1);
		assert_attr_int(captured[0], "http.response.status_code", cases[i].status);
		if (cases[i].error) {
			snprintf(code, sizeof(code), "%d", cases[i].status);
			assert_attr_str(captured[0], "error.type", code);
			cr_assert_eq(captured[0]->status_code, OSH_STATUS_ERROR);
		} else {
			assert_no_attr(captured[0], "error.type");
			cr_assert_eq(captured[0]->status_code, OSH_STATUS_UNSET);
		}
		drop_captured();
		sim_close(&s);
	}
}

Test(client, read_errors)
{
	static const struct {
		int err;
		const char *type;
	} cases[] = {
		{ECONNRESET, "connection_reset"},
		{ETIMEDOUT, "timeout"},
		{EIO, "_OTHER"},
	};

	for (size_t i = 0; i < 3; i++) {
		struct sim s;

		exchange(&s, "GET /a HTTP/1.1\r\n\r\n", "", 0);
		/* Retryable read results change nothing. */
		sim_rx_ret(&s, -1, EAGAIN);
		sim_rx_ret(&s, -1, EINTR);
		cr_assert_eq(n_captured, 0);
		sim_rx_ret(&s, -1, cases[i].err);
		cr_assert_eq(n_captured, 1);
		assert_attr_str(captured[0], "error.type", cases[i].type);
		cr_assert_eq(captured[0]->status_code, OSH_STATUS_ERROR);
		assert_span_is(captured[0], &last_tp[0]);
		cr_assert_null(osh_conn_get(s.fd));
		drop_captured();
		sim_close(&s);
		cr_assert_eq(n_captured, 0);
	}
}

Test(client, reset_in_the_middle_of_a_body)
{
	struct sim s;

	exchange(&s, "GET /a HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		 0);
	sim_rx_ret(&s, -1, ECONNRESET);
	cr_assert_eq(n_captured, 1);
	assert_attr_int(captured[0], "http.response.status_code", 200);
	assert_attr_str(captured[0], "error.type", "connection_reset");
	cr_assert_eq(captured[0]->status_code, OSH_STATUS_ERROR);
	sim_close(&s);
}

Test(client, eof_before_response)
{
	struct sim s;

	exchange(&s, "GET /a HTTP/1.1\r\n\r\n", "", 0);
	sim_rx_ret(&s, 0, 0);
	cr_assert_eq(n_captured, 1);
	cr_assert_not_null(attr(captured[0], "error.type"));
	cr_assert_eq(captured[0]->status_code, OSH_STATUS_ERROR);
	assert_no_attr(captured[0], "http.response.status_code");
	cr_assert_null(osh_conn_get(s.fd));
	sim_close(&s);
	cr_assert_eq(n_captured, 1);
}

Test(client, eof_inside_length_body)
{
	struct sim s;

	exchange(&s, "GET /a HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		 0);
	sim_rx_ret(&s, 0, 0);
	cr_assert_eq(n_captured, 1);
	assert_attr_str(captured[0], "error.type", "response_incomplete");
	sim_close(&s);
}

/* The program closes while waiting: an error span; after a complete
 * exchange, closing adds nothing. */
Test(client, close_while_waiting)
{
	struct sim s;

	exchange(&s, "GET /a HTTP/1.1\r\n\r\n", "", 0);
	sim_close(&s);
	cr_assert_eq(n_captured, 1);
	cr_assert_not_null(attr(captured[0], "error.type"));
	drop_captured();

	exchange(&s, "GET /a HTTP/1.1\r\n\r\n", resp_ok0, 0);
	cr_assert_eq(n_captured, 1);
	sim_close(&s);
	cr_assert_eq(n_captured, 1);
}

Test(client, keep_alive_sequence)
{
	struct sim s;
	uint8_t first_sid[8];

	sim_open(&s);
	for (int i = 0; i < 10; i++) {
		size_t base = s.wire_len;
		struct tp tp;
		struct sim view;

		SEND(&s, "GET /k HTTP/1.1\r\nHost: h\r\n\r\n");
		view = s;
		view.wire = s.wire + base;
		view.wire_len = s.wire_len - base;
		check_wire(&view, "GET /k HTTP/1.1\r\nHost: h\r\n\r\n", 28, (size_t[]){17}, 1, NULL,
			   &tp);
		RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!");
		cr_assert_eq(n_captured, i + 1);
		assert_span_is(captured[i], &tp);
		if (i == 0)
			memcpy(first_sid, tp.span_id, 8);
		else
			cr_assert_neq(memcmp(first_sid, tp.span_id, 8), 0);
	}
	cr_assert_not_null(osh_conn_get(s.fd));
	sim_close(&s);
	cr_assert_eq(n_captured, 10);
}

/* LLM calls on one keep-alive connection: each response body's framing
 * is walked by the call's tracker, on the engine's walker
 * (osh_llm_response_walk). The engine still ends each span with its body,
 * counts the body, and reads the next response's head where the body ends,
 * in reads of any size; the tracker still decodes everything. */
Test(client, llm_bodies_walked_once_on_keep_alive)
{
	static const char req[] = "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n"
				  "Content-Length: 15\r\n\r\n{\"model\":\"m-1\"}";
	static const char sse[] =
		"data: {\"id\":\"c1\",\"model\":\"m-1\",\"choices\":[{\"index\":0,\"delta\":"
		"{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
		"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n"
		"data: [DONE]\n\n";
	static const char json[] = "{\"id\":\"c2\",\"model\":\"m-2\",\"choices\":[{\"index\":0,"
				   "\"message\":{\"content\":\"ok\"},\"finish_reason\":\"length\"}]}";
	static const size_t pieces[] = { 1, 5, 64, 100000 };
	char *wire = malloc(8192);

	for (size_t pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]); pi++) {
		size_t w = (size_t)sprintf(wire, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
						 "Transfer-Encoding: chunked\r\n\r\n");
		size_t body = 0;
		struct sim s;

		/* One chunk per event, then the end. */
		for (const char *e = sse, *next; *e; e = next) {
			next = strstr(e, "\n\n") + 2;
			w += (size_t)sprintf(wire + w, "%zx\r\n%.*s\r\n", (size_t)(next - e),
					     (int)(next - e), e);
			body += (size_t)(next - e);
		}
		w += (size_t)sprintf(wire + w, "0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: "
					       "application/json\r\nContent-Length: %zu\r\n\r\n%s",
				     strlen(json), json);
		drop_captured();
		sim_open(&s);
		SEND(&s, req);
		SEND(&s, req);
		sim_rx_pieces(&s, wire, w, pieces[pi]);
		cr_assert_eq(n_captured, 2, "piece %zu: %d spans", pieces[pi], n_captured);
		assert_name(captured[0], "llm.completion");
		assert_attr_int(captured[0], "http.response.status_code", 200);
		assert_attr_int(captured[0], "http.response.body.size", (int64_t)body);
		assert_attr_str(captured[0], "gen_ai.response.id", "c1");
		assert_attr_int(captured[0], "gen_ai.usage.input_tokens", 7);
		assert_attr_int(captured[0], "gen_ai.usage.output_tokens", 3);
		cr_assert_not_null(attr(captured[0], "llm.response.time_to_first_token_ms"));
		assert_attr_int(captured[1], "http.response.status_code", 200);
		assert_attr_int(captured[1], "http.response.body.size", (int64_t)strlen(json));
		assert_attr_str(captured[1], "gen_ai.response.id", "c2");
		assert_attr_str(captured[1], "gen_ai.response.model", "m-2");
		sim_close(&s);
	}
	free(wire);
}

Test(client, url_and_server_attributes)
{
	static const struct {
		const char *req;
		size_t at;
		const char *url, *path, *addr, *name;
		int port;
	} cases[] = {
		{"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 17, "http://x/a", "/a", "x", "GET /a", 80},
		{"GET /a?q=1 HTTP/1.1\r\nHost: h:9\r\n\r\n", 21, "http://h:9/a?q=1", "/a", "h",
		 "GET /a", 9},
		{"GET http://abs.example:7000/p/1?z HTTP/1.1\r\nHost: other\r\n\r\n", 43,
		 "http://abs.example:7000/p/1?z", "/p/1", "abs.example", "GET /p/{id}", 7000},
		{"GET /v6 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n", 18, "http://[::1]:8443/v6", "/v6",
		 "::1", "GET /v6", 8443},
		{"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 20, "http://x", NULL, "x", "OPTIONS", 80},
		{"GET / HTTP/1.1\r\n\r\n", 16, "http://127.0.0.1:8080/", "/", "127.0.0.1", "GET /",
		 8080},
		{"FOO /a HTTP/1.1\r\nHost: x\r\n\r\n", 17, "http://x/a", "/a", "x", "HTTP /a", 80},
		{"GET /a?token=s3cr3t HTTP/1.1\r\nHost: x\r\n\r\n", 30, "http://x/a?token=REDACTED",
		 "/a", "x", "GET /a", 80},
		/* Invalid UTF-8 stored as U+FFFD: url.path must follow the
		 * stored url.full, not the bytes before sanitising. */
		{"GET /a\xff/b?q HTTP/1.1\r\nHost: x\r\n\r\n", 22, "http://x/a\xEF\xBF\xBD/b?q",
		 "/a\xEF\xBF\xBD/b", "x", "GET /a\xEF\xBF\xBD/b", 80},
		/* A credential as a path segment, origin-form. */
		{"GET /k/sk-proj-abcdefghijklmnopqrstuvwx/v HTTP/1.1\r\nHost: x:81\r\n\r\n", 50,
		 "http://x:81/k/REDACTED/v", "/k/REDACTED/v", "x", "GET /k/{id}/v", 81},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sim s;
		const struct osh_span *sp;

		exchange(&s, cases[i].req, resp_ok0, 0);
		cr_assert_eq(n_captured, 1, "case %zu", i);
		sp = captured[0];
		assert_attr_str(sp, "url.full", cases[i].url);
		if (cases[i].path)
			assert_attr_str(sp, "url.path", cases[i].path);
		else
			assert_no_attr(sp, "url.path");
		assert_attr_str(sp, "server.address", cases[i].addr);
		assert_attr_int(sp, "server.port", cases[i].port);
		assert_name(sp, cases[i].name);
		drop_captured();
		sim_close(&s);
	}
}

Test(client, unknown_method_attributes)
{
	struct sim s;

	exchange(&s, "FOO /a HTTP/1.1\r\nHost: x\r\n\r\n", resp_ok0, 0);
	cr_assert_eq(n_captured, 1);
	assert_attr_str(captured[0], "http.request.method", "_OTHER");
	assert_attr_str(captured[0], "http.request.method_original", "FOO");
	sim_close(&s);
}

/* user_agent.original is capped at 256 bytes, cut between characters. */
Test(client, user_agent_cut_at_character_boundary)
{
	for (int pad = 250; pad <= 256; pad++) {
		char req[600];
		char ua[300];
		struct sim s;
		const struct osh_attr *a;
		size_t want;

		memset(ua, 'a', (size_t)pad);
		strcpy(ua + pad, "\xe2\x82\xac\xe2\x82\xac"); /* two euro signs */
		snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nUser-Agent: %s\r\n\r\n", ua);
		exchange(&s, req, resp_ok0, 0);
		cr_assert_eq(n_captured, 1);
		a = attr(captured[0], "user_agent.original");
		cr_assert_not_null(a);
		/* Whole characters only, at most 256 bytes. */
		want = (size_t)pad +
		       3 * ((256 - (size_t)pad) / 3 < 2 ? (256 - (size_t)pad) / 3 : 2);
		cr_assert_eq(a->v.s.len, want, "pad %d: len %u, want %zu", pad, a->v.s.len, want);
		cr_assert_eq(memcmp(osh_span_str(captured[0], a->v.s), ua, want), 0);
		drop_captured();
		sim_close(&s);
	}
}

/* A Host header and a path long enough to overflow the URL being built:
 * url.full is bounded, built without writing past its buffer (run this
 * under ASan or valgrind to see the difference). */
Test(client, long_host_and_path_bounded)
{
	static const int host_lens[] = {280, 300, 700, 1300, 1316, 1317, 1320, 2000};

	for (size_t h = 0; h < sizeof(host_lens) / sizeof(host_lens[0]); h++) {
		char *req = malloc(8192);
		char *host = malloc((size_t)host_lens[h] + 1);
		char *path = malloc(1201);
		struct sim s;
		const struct osh_attr *a;
		int len;

		cr_assert(req && host && path);
		memset(host, 'h', (size_t)host_lens[h]);
		host[host_lens[h]] = '\0';
		path[0] = '/';
		memset(path + 1, 'p', 1199);
		path[1200] = '\0';
		len = snprintf(req, 8192, "GET %s HTTP/1.1\r\nHost: %s:8080\r\n\r\n", path, host);
		sim_open(&s);
		sim_send_full(&s, req, (size_t)len);
		check_wire(&s, req, (size_t)len, (size_t[]){1215}, 1, NULL, NULL);
		RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
		cr_assert_eq(n_captured, 1);
		a = attr(captured[0], "url.full");
		cr_assert_not_null(a);
		cr_assert_leq(a->v.s.len, 1024 + 300);
		cr_assert_eq(memcmp(osh_span_str(captured[0], a->v.s), "http://hhh", 10), 0);
		drop_captured();
		sim_close(&s);
		free(req);
		free(host);
		free(path);
	}
}

/* Upgrade and CONNECT: the exchange ends with the 101 / 2xx head, and
 * what follows is not HTTP any more. */
Test(client, upgrade_and_connect_tunnels)
{
	static const struct {
		const char *req;
		const char *resp;
		int status;
		const char *name;
	} cases[] = {
		{"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", 101,
		 "GET /ws"},
		{"CONNECT db.example:443 HTTP/1.1\r\nHost: db.example:443\r\n\r\n",
		 "HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03", 200, "CONNECT"},
	};
	static const char after[] = "\x16\x03\x01GET /not-http HTTP/1.1\r\n\r\n";

	for (size_t i = 0; i < 2; i++) {
		struct sim s;

		exchange(&s, cases[i].req, cases[i].resp, 0);
		cr_assert_eq(n_captured, 1, "case %zu", i);
		assert_name(captured[0], cases[i].name);
		assert_attr_int(captured[0], "http.response.status_code", cases[i].status);
		assert_span_is(captured[0], &last_tp[0]);
		/* Tunnel bytes are never touched. */
		s.wire_len = 0;
		SEND(&s, after);
		check_unchanged(&s, after, sizeof(after) - 1);
		cr_assert_null(osh_conn_get(s.fd));
		sim_close(&s);
		cr_assert_eq(n_captured, 1);
		drop_captured();
	}
}

/* ---- 6. not HTTP ---------------------------------------------------------------------- */

static void check_passthrough(const char *data, size_t len, size_t piece, const char *what)
{
	struct sim s;
	struct policy p = {.kind = piece ? P_STEP : P_FULL, .step = piece};

	sim_open(&s);
	sim_send(&s, data, len, &p);
	check_unchanged(&s, data, len);
	cr_assert_null(osh_conn_get(s.fd), "%s (piece %zu): connection still tracked", what, piece);
	cr_assert_eq(n_captured, 0);
	sim_close(&s);
	cr_assert_eq(n_captured, 0);
}

Test(client, non_http_passes_through_and_releases)
{
	static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x11\x22\x33";
	static const char redis[] = "*1\r\n$4\r\nPING\r\n";
	static const char pg[] = "\x00\x00\x00\x08\x04\xd2\x16\x2f";
	static const char h2[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	static const char lower[] = "get / HTTP/1.1\r\n\r\n";
	static const struct {
		const char *p;
		size_t n;
		const char *what;
	} cases[] = {
		{tls, sizeof(tls) - 1, "tls"},		 {redis, sizeof(redis) - 1, "redis"},
		{pg, sizeof(pg) - 1, "postgres"},	 {h2, sizeof(h2) - 1, "h2 preface"},
		{lower, sizeof(lower) - 1, "lowercase"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t piece = 0; piece <= 3; piece++)
			check_passthrough(cases[i].p, cases[i].n, piece, cases[i].what);
}

/* A line protocol that looks like a request line ("EHLO example.com")
 * cannot be told apart until the peer answers; then it is let go. */
Test(client, request_like_protocol_released_on_answer)
{
	static const char ehlo[] = "EHLO example.com\r\n";
	struct sim s;

	sim_open(&s);
	SEND(&s, ehlo);
	check_unchanged(&s, ehlo, sizeof(ehlo) - 1);
	RX(&s, "250-mail.example.com\r\n250 OK\r\n");
	cr_assert_null(osh_conn_get(s.fd));
	sim_close(&s);
	cr_assert_eq(n_captured, 0);
}

Test(client, random_binary_passes_through)
{
	unsigned seed = 4242;

	for (int r = 0; r < 200; r++) {
		char buf[300];
		size_t n = 1 + (size_t)(r % 299);

		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			buf[i] = (char)(seed >> 16);
		}
		/* Make sure it does not start like a request by accident. */
		if (buf[0] >= 'A' && buf[0] <= 'Z')
			buf[0] = '\x01';
		check_passthrough(buf, n, (size_t)(r % 4), "random");
	}
}

/* ---- 7. heads too large to parse ------------------------------------------------------- */

Test(client, head_over_64k_passes_through)
{
	size_t pad = 70000;
	char *req = malloc(pad + 64);
	size_t len;

	cr_assert_not_null(req);
	len = (size_t)sprintf(req, "GET /a HTTP/1.1\r\nX-Big: ");
	memset(req + len, 'a', pad);
	len += pad;
	memcpy(req + len, "\r\n\r\n", 4);
	len += 4;
	for (size_t piece = 0; piece <= 4096; piece += 4096) {
		struct sim s;
		struct policy p = {.kind = piece ? P_STEP : P_FULL, .step = piece};

		sim_open(&s);
		sim_send(&s, req, len, &p);
		check_unchanged(&s, req, len);
		cr_assert_null(osh_conn_get(s.fd), "piece %zu: still tracked", piece);
		sim_close(&s);
		cr_assert_eq(n_captured, 0);
	}
	free(req);
}

Test(client, megabyte_request_line_passes_through)
{
	size_t n = 1 << 20;
	char *req = malloc(n + 64);
	size_t len;

	cr_assert_not_null(req);
	memcpy(req, "GET /", 5);
	memset(req + 5, 'x', n);
	len = 5 + n;
	len += (size_t)sprintf(req + len, " HTTP/1.1\r\n\r\n");
	for (size_t piece = 0; piece <= 65536; piece += 8192) {
		struct sim s;
		struct policy p = {.kind = piece ? P_STEP : P_FULL, .step = piece};

		sim_open(&s);
		sim_send(&s, req, len, &p);
		check_unchanged(&s, req, len);
		cr_assert_null(osh_conn_get(s.fd), "piece %zu: still tracked", piece);
		sim_close(&s);
		cr_assert_eq(n_captured, 0);
	}
	free(req);
}

/* Over 64 KiB after a normal exchange on the same connection: the first is
 * traced, the connection then passes through. */
Test(client, big_head_after_good_exchange)
{
	size_t pad = 70000;
	char *req = malloc(pad + 64);
	size_t len;
	struct sim s;

	cr_assert_not_null(req);
	len = (size_t)sprintf(req, "GET /b HTTP/1.1\r\nX-Big: ");
	memset(req + len, 'a', pad);
	len += pad;
	memcpy(req + len, "\r\n\r\n", 4);
	len += 4;
	exchange(&s, "GET /a HTTP/1.1\r\n\r\n", resp_ok0, 0);
	cr_assert_eq(n_captured, 1);
	s.wire_len = 0;
	sim_send_full(&s, req, len);
	check_unchanged(&s, req, len);
	cr_assert_null(osh_conn_get(s.fd));
	sim_close(&s);
	cr_assert_eq(n_captured, 1);
	free(req);
}

/* ---- ring limits ------------------------------------------------------------------------ */

/* Five pipelined requests with room for four in flight: the first four are
 * injected and traced, the rest of the stream passes through unchanged. */
Test(client, pipeline_deeper_than_ring)
{
	static const char one[] = "GET /p HTTP/1.1\r\n\r\n";
	char req[256] = "";
	char resp[512] = "";
	size_t at[OSH_CLIENT_RING];
	struct tp tp[OSH_CLIENT_RING];
	struct sim s;

	for (int i = 0; i < OSH_CLIENT_RING + 1; i++) {
		strcat(req, one);
		strcat(resp, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	}
	for (int i = 0; i < OSH_CLIENT_RING; i++)
		at[i] = (size_t)i * (sizeof(one) - 1) + 17;
	sim_open(&s);
	sim_send_full(&s, req, strlen(req));
	check_wire(&s, req, strlen(req), at, OSH_CLIENT_RING, NULL, tp);
	sim_rx(&s, resp, strlen(resp));
	cr_assert_eq(n_captured, OSH_CLIENT_RING);
	for (int i = 0; i < OSH_CLIENT_RING; i++)
		assert_span_is(captured[i], &tp[i]);
	cr_assert_null(osh_conn_get(s.fd));
	sim_close(&s);
}

/* ---- 8. the environment carrier ----------------------------------------------------------- */

static const char env_tp[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

static void check_env_child(const struct osh_span *sp, const struct tp *tp)
{
	uint8_t tid[16], sid[8];

	hex_to("0af7651916cd43dd8448eb211c80319c", tid, 16);
	hex_to("b7ad6b7169203331", sid, 8);
	cr_assert_eq(memcmp(tp->trace_id, tid, 16), 0, "header trace id is not the env's");
	assert_span_is(sp, tp);
	cr_assert(sp->has_parent);
	cr_assert(sp->parent_remote);
	cr_assert_eq(memcmp(sp->parent_span_id, sid, 8), 0);
	cr_assert_neq(memcmp(sp->span_id, sid, 8), 0);
}

Test(client, env_parent_lines_under_every_pattern)
{
	static const char extra[] =
		"tracestate: vendor=abc,x=1\r\nbaggage: user=alice,tier=gold\r\n";

	engine_init(OSH_SAMPLER_PARENTBASED_ALWAYS_ON, env_tp, "vendor=abc,x=1",
		    "user=alice,tier=gold");
	for (size_t c = 0; c < sizeof(reqcases) / sizeof(reqcases[0]); c++) {
		const struct reqcase *rc = &reqcases[c];
		size_t len = strlen(rc->prog);
		size_t max = len + (size_t)rc->n * (TP_LINE_LEN + sizeof(extra) - 1);

		for (ssize_t k = -2; k <= (ssize_t)max + 300; k++) {
			struct policy p;
			struct tp tp[4];
			struct sim s;

			/* Every first count, then random patterns. */
			if (k <= (ssize_t)max)
				p = (struct policy){.kind = P_FIRST, .first = k};
			else
				p = (struct policy){.kind = P_RANDOM, .seed = (unsigned)k};
			sim_open(&s);
			sim_send(&s, rc->prog, len, &p);
			check_wire(&s, rc->prog, len, rc->at, rc->n, extra, tp);
			sim_rx(&s, rc->resp, strlen(rc->resp));
			cr_assert_eq(n_captured, rc->n);
			for (int i = 0; i < rc->n; i++) {
				check_env_child(captured[i], &tp[i]);
				cr_assert_eq(tp[i].flags, 0x01);
				cr_assert(
					captured[i]->trace_state.len == 14 &&
					memcmp(osh_span_str(captured[i], captured[i]->trace_state),
					       "vendor=abc,x=1", 14) == 0);
			}
			drop_captured();
			sim_close(&s);
		}
	}
}

Test(client, env_lines_skip_headers_the_request_has)
{
	static const struct {
		const char *req;
		size_t at;
		const char *extra;
	} cases[] = {
		{"GET /a HTTP/1.1\r\nBaggage: mine=1\r\n\r\n", 17, "tracestate: vendor=abc\r\n"},
		{"GET /a HTTP/1.1\r\ntracestate: mine=1\r\n\r\n", 17, "baggage: user=alice\r\n"},
		{"GET /a HTTP/1.1\r\nTRACESTATE: a=1\r\nbaggage: b=2\r\n\r\n", 17, NULL},
		{"GET /a HTTP/1.1\r\n\r\n", 17,
		 "tracestate: vendor=abc\r\nbaggage: user=alice\r\n"},
	};

	engine_init(OSH_SAMPLER_ALWAYS_ON, env_tp, "vendor=abc", "user=alice");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sim s;
		struct tp tp;

		sim_open(&s);
		sim_send_full(&s, cases[i].req, strlen(cases[i].req));
		check_wire(&s, cases[i].req, strlen(cases[i].req), &cases[i].at, 1, cases[i].extra,
			   &tp);
		RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
		cr_assert_eq(n_captured, 1);
		check_env_child(captured[0], &tp);
		drop_captured();
		sim_close(&s);
	}
}

/* With the request line already sent, the env lines go before the empty
 * line along with traceparent. */
Test(client, env_lines_before_blank_line)
{
	static const char all[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
	struct sim s;
	struct tp tp;

	engine_init(OSH_SAMPLER_ALWAYS_ON, env_tp, NULL, "k=v");
	sim_open(&s);
	SEND(&s, "GET /a HTTP/1.1\r\nHost: x\r\n");
	for (int i = 0; i < 2; i++) {
		struct policy p = {.kind = P_STEP, .step = 7};
		sim_send(&s, "\r\n" + i, 1, &p);
	}
	check_unchanged(&s, all, sizeof(all) - 1);
	sim_close(&s);
	drop_captured();

	sim_open(&s);
	SEND(&s, "GET /a HTTP/1.1\r\nHost: x\r\n");
	{
		struct policy p = {.kind = P_STEP, .step = 7};
		sim_send(&s, "\r\n", 2, &p);
	}
	check_wire(&s, all, sizeof(all) - 1, (size_t[]){26}, 1, "baggage: k=v\r\n", &tp);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	check_env_child(captured[0], &tp);
	sim_close(&s);
}

/* Baggage alone (no TRACEPARENT): a root trace, and the baggage line. */
Test(client, env_baggage_without_parent)
{
	struct sim s;
	struct tp tp;
	static const char req[] = "GET /a HTTP/1.1\r\n\r\n";

	engine_init(OSH_SAMPLER_ALWAYS_ON, NULL, "ignored=1", "only=bag");
	sim_open(&s);
	SEND(&s, req);
	check_wire(&s, req, sizeof(req) - 1, (size_t[]){17}, 1, "baggage: only=bag\r\n", &tp);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	assert_span_is(captured[0], &tp);
	cr_assert_not(captured[0]->has_parent);
	sim_close(&s);
}

/* An own traceparent wins over the environment: nothing injected at all. */
Test(client, own_traceparent_beats_env)
{
	char req[256];
	int len = snprintf(req, sizeof(req), "GET /a HTTP/1.1\r\ntraceparent: 00-%s-%s-01\r\n\r\n",
			   own_tid, own_sid);
	struct sim s;

	engine_init(OSH_SAMPLER_ALWAYS_ON, env_tp, "vendor=abc", "user=alice");
	sim_open(&s);
	sim_send_full(&s, req, (size_t)len);
	check_unchanged(&s, req, (size_t)len);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	check_own_parent(captured[0]);
	sim_close(&s);
}

/* An unsampled env parent with a parent-based sampler: flags 00 go out,
 * no span is recorded. */
Test(client, env_parent_unsampled)
{
	static const char req[] = "GET /a HTTP/1.1\r\n\r\n";
	struct sim s;
	struct tp tp;

	engine_init(OSH_SAMPLER_PARENTBASED_ALWAYS_ON,
		    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", NULL, NULL);
	sim_open(&s);
	SEND(&s, req);
	check_wire(&s, req, sizeof(req) - 1, (size_t[]){17}, 1, NULL, &tp);
	cr_assert_eq(tp.flags, 0x00);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 0);
	sim_close(&s);
	cr_assert_eq(n_captured, 0);
}

/* ---- 9. not sampled / not exported ------------------------------------------------------- */

Test(client, sampler_always_off_still_propagates)
{
	engine_init(OSH_SAMPLER_ALWAYS_OFF, NULL, NULL, NULL);
	for (size_t c = 0; c < sizeof(reqcases) / sizeof(reqcases[0]); c++) {
		const struct reqcase *rc = &reqcases[c];

		for (unsigned seed = 1; seed <= 50; seed++) {
			struct policy p = {.kind = P_RANDOM, .seed = seed};
			struct tp tp[4];
			struct sim s;

			sim_open(&s);
			sim_send(&s, rc->prog, strlen(rc->prog), &p);
			check_wire(&s, rc->prog, strlen(rc->prog), rc->at, rc->n, NULL, tp);
			for (int i = 0; i < rc->n; i++)
				cr_assert_eq(tp[i].flags, 0x00);
			sim_rx(&s, rc->resp, strlen(rc->resp));
			cr_assert_eq(n_captured, 0);
			sim_close(&s);
			cr_assert_eq(n_captured, 0);
		}
	}
}

Test(client, exporter_none_still_propagates_sampled)
{
	static const char req[] = "GET /a HTTP/1.1\r\n\r\n";
	struct sim s;
	struct tp tp;

	osh_cfg.exporter = OSH_EXPORTER_NONE;
	sim_open(&s);
	SEND(&s, req);
	check_wire(&s, req, sizeof(req) - 1, (size_t[]){17}, 1, NULL, &tp);
	cr_assert_eq(tp.flags, 0x01);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 0);
	sim_close(&s);
}

Test(client, propagators_off_inject_nothing)
{
	static const char req[] = "GET /a HTTP/1.1\r\n\r\n";
	struct sim s;

	osh_cfg.propagate_tracecontext = false;
	osh_cfg.propagate_baggage = false;
	sim_open(&s);
	SEND(&s, req);
	check_unchanged(&s, req, sizeof(req) - 1);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(n_captured, 1);
	sim_close(&s);
}

/* ---- odd orders of events ------------------------------------------------------------------ */

/* The server answers before the request head is complete (408, early
 * 400): the exchange ends with that response and nothing leaks (valgrind)
 * when the rest of the head is written later. */
Test(client, response_before_head_complete)
{
	static const char req[] = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
	struct sim s;

	sim_open(&s);
	sim_send_full(&s, req, 20);
	RX(&s, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	sim_send_full(&s, req + 20, sizeof(req) - 1 - 20);
	/* The rest of the head goes out unchanged: that exchange is over. */
	check_unchanged(&s, req, sizeof(req) - 1);
	sim_rx_ret(&s, 0, 0);
	sim_close(&s);
	/* Nothing half-recorded is handed over (and, under valgrind, nothing
	 * leaks). */
	cr_assert_eq(n_captured, 0);
}

/* A response with no request in flight: the connection stops being
 * interpreted, and is let go. */
Test(client, response_without_request)
{
	struct sim s;

	sim_open(&s);
	RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	cr_assert_null(osh_conn_get(s.fd));
	sim_close(&s);
	cr_assert_eq(n_captured, 0);
}

/* A zero-length write touches nothing. */
Test(client, empty_write)
{
	struct sim s;
	struct osh_tx_plan plan;
	struct iovec iov = {(void *)"", 0};
	struct osh_conn *c;

	sim_open(&s);
	c = osh_conn_get(s.fd);
	osh_client_tx_prepare(c, s.fd, &iov, 1, &plan);
	cr_assert_not(plan.active);
	cr_assert_eq(osh_client_tx_commit(c, &plan, &iov, 1, 0, 0), 0);
	cr_assert_eq(c->client.tx.pos, 0);
	sim_close(&s);
}

/* A tracked fd number is reused without the shim seeing the close (the
 * next connect() on it re-tracks the slot): whatever the old connection
 * left (a half-written head, a request awaiting its response) is dropped,
 * and the new connection is parsed from scratch. */
Test(client, retrack_reused_fd_starts_clean)
{
	static const char req[] = "GET /new HTTP/1.1\r\nHost: n\r\n\r\n";
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(9090)};
	struct sim s;
	struct tp tp;

	for (int old = 0; old < 2; old++) {
		sim_open(&s);
		if (old == 0)
			SEND(&s, "POST /old HTTP/1.1\r\nContent-Le"); /* half a head */
		else
			SEND(&s, "GET /old HTTP/1.1\r\n\r\n"); /* awaiting its response */
		sin.sin_addr.s_addr = htonl(0x0a000001);
		osh_conn_track_client(s.fd, (struct sockaddr *)&sin, sizeof(sin));
		cr_assert_not_null(osh_conn_get(s.fd));
		/* The old request ended without a response, and without error
		 * (the shim lost track; nothing says it failed). */
		cr_assert_eq(n_captured, old);
		drop_captured();
		s.wire_len = 0;
		SEND(&s, req);
		check_wire(&s, req, sizeof(req) - 1, (size_t[]){19}, 1, NULL, &tp);
		RX(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
		cr_assert_eq(n_captured, 1);
		assert_span_is(captured[0], &tp);
		assert_name(captured[0], "GET /new");
		assert_attr_str(captured[0], "network.peer.address", "10.0.0.1");
		assert_attr_int(captured[0], "network.peer.port", 9090);
		drop_captured();
		sim_close(&s);
	}
}
