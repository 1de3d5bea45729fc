/* Server-side HTTP/1.x exchange tracking (see http_server.h and
 * docs/ARCHITECTURE.md, "Server connections").
 *
 * Two parsers per connection, both fed after the real call with exactly the
 * bytes that went through it: requests on the read side, responses on the
 * write side. An exchange (a ring slot) starts with the first byte of a
 * request; its head decides the trace context and starts the SERVER span;
 * it ends when the response body is complete, or when the connection ends
 * first. Responses are matched to requests in order (HTTP/1.1 pipelining).
 */
#include "buildconf.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "conn.h"
#include "context.h"
#include "diag.h"
#include "exporter.h"
#include "http_server.h"
#include "http_util.h"
#include "ids.h"
#include "propagation.h"
#include "redact.h"
#include "route.h"
#include "sampler.h"
#include "span.h"

/* When the call being observed returned: now, or, while a logged call is
 * replayed, the time it was logged with (deferred observation, below). */
static __thread uint64_t replay_time __attribute__((tls_model("initial-exec")));

static inline uint64_t call_time(void)
{
	return replay_time ? replay_time : osh_clock_realtime_ns();
}

enum rq_state {
	RQ_IDLE = 0,	/* between requests */
	RQ_HEAD,	/* inside a request head */
	RQ_BODY,	/* inside a request body */
	RQ_DEAD,	/* not HTTP, or lost track: requests no longer parsed */
};

enum rs_state {
	RS_IDLE = 0,	/* between responses */
	RS_HEAD,	/* inside a response head (interim or final) */
	RS_BODY,	/* inside a response body */
	RS_DEAD,	/* lost track: the connection stops being traced */
};

/* Values longer than these are cut before they reach a span. */
#define URL_MAX 1024
#define UA_MAX 256
#define REQUEST_ID_MAX 256
#define BAGGAGE_VALUE_MAX 256

/* Several tracestate lines are joined into a buffer this large before
 * validation; lines beyond it are dropped whole (from the right, as W3C
 * truncation does). The context keeps at most OSH_CONTEXT_TRACESTATE_MAX. */
#define TRACESTATE_JOIN_MAX 4096

/* ---- small helpers ---------------------------------------------------- */

static struct osh_srv_exchange *ring_at(struct osh_server *sv, uint64_t seq)
{
	return &sv->ring[seq % OSH_SERVER_RING];
}



/* Gather a head that may arrive in pieces. Returns 1 with the complete head
 * in *ret_head (in place, or in @acc: the caller empties it after use) and
 * in *ret_used the bytes of @p it took; 0 when all of @p was taken and the
 * head goes on; -1 when it is malformed or too large. */
static int gather_head(struct osh_buf *acc, uint32_t *scanned, const char *p, size_t len,
		       const char **ret_head, size_t *ret_hlen, size_t *ret_used)
{
	uint32_t old = acc->len;
	size_t take = len;
	ssize_t h;

	if (!old) {
		h = osh_http_head_end(p, len, 0);
		if (h > 0) {
			*ret_head = p;
			*ret_hlen = (size_t)h;
			*ret_used = (size_t)h;
			return 1;
		}
		if (h == OSH_HTTP_INVALID)
			return -1;
	}
	if (old + take > OSH_HTTP_MAX_HEAD)
		take = OSH_HTTP_MAX_HEAD - old;
	if (!take || !osh_buf_put(acc, acc->len, p, take))
		return -1;
	acc->len += (uint32_t)take;
	h = osh_http_head_end(acc->p, acc->len, *scanned);
	if (h > 0) {
		*ret_head = acc->p;
		*ret_hlen = (size_t)h;
		*ret_used = (size_t)h - old;
		return 1;
	}
	if (h == OSH_HTTP_INVALID || acc->len >= OSH_HTTP_MAX_HEAD)
		return -1;
	*scanned = acc->len;
	*ret_used = take;
	return 0;
}

/* Sniff the first bytes of a stream, some of which may be gathered in @acc
 * already. */
static int sniff(int (*fn)(const char *, size_t), const struct osh_buf *acc, const char *p,
		 size_t len)
{
	char tmp[32];
	size_t n = 0;

	if (!acc->len)
		return fn(p, len);
	for (uint32_t i = 0; i < acc->len && n < sizeof(tmp); i++)
		tmp[n++] = acc->p[i];
	for (size_t i = 0; i < len && n < sizeof(tmp); i++)
		tmp[n++] = p[i];
	return fn(tmp, n);
}








static bool is_wildcard(const struct osh_peer *p)
{
	static const uint8_t zero[16];

	return memcmp(p->addr, zero, p->family == AF_INET6 ? 16 : 4) == 0;
}


/* ---- what a target alone decides --------------------------------------- */

/* A request target's path [? query] [# fragment], redacted, where its path
 * and query are, and its route template. */
struct target_view {
	char red[URL_MAX + 1];
	char route[256];
	size_t red_len, path_len, query_len, route_len;
	bool has_query;
};

static void derive_fresh(struct osh_str pq, struct target_view *d)
{
	size_t n = osh_redact_url(pq.p, pq.len < URL_MAX ? pq.len : URL_MAX, d->red,
				  sizeof(d->red));
	size_t pl = 0;

	while (pl < n && d->red[pl] != '?' && d->red[pl] != '#')
		pl++;
	d->red_len = n;
	d->path_len = pl;
	d->has_query = pl < n && d->red[pl] == '?';
	d->query_len = 0;
	if (d->has_query)
		while (pl + 1 + d->query_len < n && d->red[pl + 1 + d->query_len] != '#')
			d->query_len++;
	d->route_len = osh_route_template(pq.p, pq.len, d->route, sizeof(d->route));
}

/* Redacting and templating a target scan it byte by byte, ~1k instructions
 * for a short one, and the exporter thread does both for every server span
 * (docs/BENCHMARKS.md), while a server sees the same few targets over and
 * over (its endpoints, a health check). Both depend on the target's bytes
 * alone, so the answers for recent short targets are kept: a direct-mapped
 * table keyed by the exact bytes (compared in full, never by hash alone).
 * One thread uses it at a time; a thread that finds it taken derives
 * afresh instead of waiting. */
#define MEMO_SLOTS 16
#define MEMO_TARGET_MAX 128
#define MEMO_OUT_MAX 192

struct memo_slot {
	uint16_t target_len;	/* 0: empty */
	uint16_t red_len, path_len, query_len, route_len;
	bool has_query;
	char target[MEMO_TARGET_MAX];
	char red[MEMO_OUT_MAX];
	char route[MEMO_OUT_MAX];
};

static struct memo_slot memo[MEMO_SLOTS];
static atomic_flag memo_busy = ATOMIC_FLAG_INIT;

static unsigned memo_index(struct osh_str t)
{
	uint64_t h = t.len * 0x9e3779b97f4a7c15ull;
	size_t i = 0;

	for (; i + 8 <= t.len; i += 8) {
		uint64_t w;

		memcpy(&w, t.p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
	}
	for (; i < t.len; i++)
		h = (h ^ (unsigned char)t.p[i]) * 0x100000001b3ull;
	return (unsigned)(h >> 59) & (MEMO_SLOTS - 1);
}

static void derive_target(struct osh_str pq, struct target_view *d)
{
	struct memo_slot *m;

	if (pq.len > MEMO_TARGET_MAX || atomic_flag_test_and_set_explicit(&memo_busy,
									  memory_order_acquire)) {
		derive_fresh(pq, d);
		return;
	}
	m = &memo[memo_index(pq)];
	if (m->target_len == pq.len && memcmp(m->target, pq.p, pq.len) == 0) {
		memcpy(d->red, m->red, m->red_len);
		memcpy(d->route, m->route, m->route_len);
		d->red_len = m->red_len;
		d->path_len = m->path_len;
		d->query_len = m->query_len;
		d->route_len = m->route_len;
		d->has_query = m->has_query;
	} else {
		derive_fresh(pq, d);
		if (d->red_len <= MEMO_OUT_MAX && d->route_len <= MEMO_OUT_MAX) {
			m->target_len = (uint16_t)pq.len;
			memcpy(m->target, pq.p, pq.len);
			memcpy(m->red, d->red, d->red_len);
			memcpy(m->route, d->route, d->route_len);
			m->red_len = (uint16_t)d->red_len;
			m->path_len = (uint16_t)d->path_len;
			m->query_len = (uint16_t)d->query_len;
			m->route_len = (uint16_t)d->route_len;
			m->has_query = d->has_query;
		}
	}
	atomic_flag_clear_explicit(&memo_busy, memory_order_release);
}

/* ---- span attributes -------------------------------------------------- */

/* What the request attributes are made of: the request head's fields, the
 * connection's addresses and the incoming baggage. */
struct req_view {
	struct osh_str method, target, host, user_agent, x_request_id, baggage;
	struct osh_peer local;
	const char *peer_text;
	uint8_t peer_text_len;
	bool has_peer;
	bool tls;
	int minor_version;
	uint16_t peer_port;
};

/* Attributes known once the request head is complete (stable HTTP server
 * semconv, plus the LLM DevOps standard's x-request-id and baggage ids). */
static void set_request_attrs(struct osh_span *rec, const struct req_view *req)
{
	const char *method = osh_http_set_method(rec, req->method);
	struct osh_str target = req->target;
	struct osh_str pq = target;	/* path [? query] [# fragment] */
	struct osh_str authority = req->host;
	struct osh_str host = { 0 };
	/* Nearly every target is origin-form ("/..."): one byte decides. */
	bool absolute = target.len && target.p[0] != '/' &&
			(osh_str_has_prefix_ci(target, "http://") ||
			 osh_str_has_prefix_ci(target, "https://"));
	bool authority_form = !absolute && target.len && target.p[0] != '/' && target.p[0] != '*';
	int port = 0;
	char name[300];
	struct osh_sb nb = { name, 0, sizeof(name) };
	char num[12];
	struct target_view d;

	/* An absolute-form target (a request meant for a proxy) names the
	 * authority itself, which then wins over Host (RFC 9112, 3.2.2). */
	if (absolute) {
		osh_http_split_absolute(target, &authority, &pq);
	} else if (authority_form) {
		authority = target;
		pq.len = 0;
	}

	/* url.path and url.query, redacted (secret-looking segments and
	 * values, sensitive keys); http.route and the name: the templated
	 * path. */
	if (pq.len) {
		derive_target(pq, &d);
		if (d.path_len)
			osh_span_set_str(rec, "url.path", d.red, d.path_len);
		else
			osh_span_set_cstr(rec, "url.path", "/");
		if (d.has_query)
			osh_span_set_str(rec, "url.query", d.red + d.path_len + 1, d.query_len);
	} else {
		d.route_len = osh_route_template("/", 1, d.route, sizeof(d.route));
	}
	/* Plaintext seen through a TLS library was sent as https. */
	osh_span_set_cstr(rec, "url.scheme", req->tls ? "https" : "http");

	osh_sb_lit(&nb, method ? method : "HTTP");
	if (!authority_form && !(target.len == 1 && target.p[0] == '*')) {
		osh_span_set_str(rec, "http.route", d.route, d.route_len);
		osh_sb_lit(&nb, " ");
		osh_sb_put(&nb, d.route, d.route_len);
	}
	osh_span_set_name(rec, name, nb.len);

	/* server.address/port: the authority the client asked for, else the
	 * local end of the connection. */
	if (authority.len && osh_http_split_authority(authority, &host, &port)) {
		bool https = absolute ? osh_str_has_prefix_ci(target, "https://") : req->tls;

		osh_span_set_str(rec, "server.address", host.p, host.len);
		osh_span_set_int(rec, "server.port", port ? port : https ? 443 : 80);
	} else if (req->local.family) {
		if (!is_wildcard(&req->local)) {
			char text[48];
			size_t n = osh_peer_format(&req->local, text, sizeof(text));
			osh_span_set_str(rec, "server.address", text, n);
		}
		osh_span_set_int(rec, "server.port", req->local.port);
	}

	/* No peer: a TLS session over memory BIOs (no socket to ask). */
	if (req->has_peer) {
		osh_span_set_str(rec, "client.address", req->peer_text, req->peer_text_len);
		osh_span_set_str(rec, "network.peer.address", req->peer_text, req->peer_text_len);
		osh_span_set_int(rec, "network.peer.port", req->peer_port);
	}
	num[0] = '1';
	num[1] = '.';
	num[2] = (char)('0' + req->minor_version);
	osh_span_set_str(rec, "network.protocol.version", num, 3);
	if (req->user_agent.len)
		osh_span_set_str(rec, "user_agent.original", req->user_agent.p,
				 osh_utf8_cut(req->user_agent.p, req->user_agent.len, UA_MAX));
	if (req->x_request_id.len)
		osh_span_set_str(rec, "http.request.header.x-request-id", req->x_request_id.p,
				 osh_utf8_cut(req->x_request_id.p, req->x_request_id.len,
					  REQUEST_ID_MAX));

	/* LLM DevOps standard, 6: user and tenant ids from the baggage. */
	if (req->baggage.len) {
		char v[BAGGAGE_VALUE_MAX];
		int n = osh_baggage_get(req->baggage.p, req->baggage.len, "user_id", v, sizeof(v));

		if (n >= 0)
			osh_span_set_str(rec, "user_id", v, (size_t)n);
		n = osh_baggage_get(req->baggage.p, req->baggage.len, "tenant_id", v, sizeof(v));
		if (n >= 0)
			osh_span_set_str(rec, "tenant_id", v, (size_t)n);
	}
}

/* The facts of a req_view, kept at a record's top for the exporter thread:
 * this header, then the peer text and the strings, in req_view order. The
 * response's facts join them when the exchange ends. */
struct req_facts {
	struct osh_peer local;
	uint16_t peer_port;
	uint16_t len[6];	/* method, target, host, user_agent, x_request_id, baggage */
	uint8_t peer_text_len;
	uint8_t flags;		/* FACT_* */
	uint8_t minor_version;
	uint16_t status;	/* FACT_RESPONSE: the response's status code */
	uint64_t resp_body;	/* FACT_RESPONSE: its body size */
	uint64_t req_body;	/* FACT_REQ_BODY: the request's body size */
};

#define FACT_TLS 1
#define FACT_PEER 2
#define FACT_RESPONSE 4
#define FACT_REQ_BODY 8
/* More than this and the request path derives the attributes itself: the
 * arena must keep room for what they become. */
#define FACTS_MAX 768

static void complete_request_attrs(struct osh_span *rec)
{
	char copy[FACTS_MAX];
	struct req_facts f;
	struct req_view v;
	struct osh_str *strs[6] = { &v.method, &v.target, &v.host, &v.user_agent,
				    &v.x_request_id, &v.baggage };
	struct osh_sref name = rec->name;
	size_t n = rec->arena_top;
	const char *p = copy + sizeof(f);

	memcpy(copy, rec->arena + OSH_SPAN_ARENA - n, n);
	osh_span_release_top(rec);
	memcpy(&f, copy, sizeof(f));
	/* First, as when the request path sets them itself (finish()). */
	if (f.flags & FACT_RESPONSE) {
		osh_span_set_int(rec, "http.response.status_code", f.status);
		osh_span_set_int(rec, "http.response.body.size", (int64_t)f.resp_body);
	}
	if (f.flags & FACT_REQ_BODY)
		osh_span_set_int(rec, "http.request.body.size", (int64_t)f.req_body);
	v.local = f.local;
	v.peer_port = f.peer_port;
	v.peer_text = p;
	v.peer_text_len = f.peer_text_len;
	v.has_peer = f.flags & FACT_PEER;
	v.tls = f.flags & FACT_TLS;
	v.minor_version = f.minor_version;
	p += f.peer_text_len;
	for (int i = 0; i < 6; i++) {
		*strs[i] = (struct osh_str){ .p = p, .len = f.len[i] };
		p += f.len[i];
	}
	set_request_attrs(rec, &v);
	/* A name given on the request path (an LLM call's) stays. */
	if (name.len)
		rec->name = name;
}

/* Copy @n bytes of @p to @dst; the byte after them. */
static inline char *put(char *dst, const char *p, size_t n)
{
	if (n)
		memcpy(dst, p, n);
	return dst + n;
}

/* Give @rec its request attributes: kept as facts for the exporter thread
 * when they fit (the request path then only copies bytes, straight from
 * the head and the connection), else derived now. */
static void request_attrs(struct osh_span *rec, const struct osh_conn *c,
			  const struct osh_http_request *req, struct osh_str baggage)
{
	struct osh_str ua = { req->user_agent.p,
			      osh_utf8_cut(req->user_agent.p, req->user_agent.len, UA_MAX) };
	struct osh_str xr = { req->x_request_id.p,
			      osh_utf8_cut(req->x_request_id.p, req->x_request_id.len,
					   REQUEST_ID_MAX) };
	size_t total = sizeof(struct req_facts) + c->peer_text_len + req->method.len +
		       req->target.len + req->host.len + ua.len + xr.len + baggage.len;
	char *dst = total <= FACTS_MAX ? osh_span_reserve_top(rec, total) : NULL;
	struct req_facts f;

	if (!dst) {
		struct req_view v = {
			.method = req->method,
			.target = req->target,
			.host = req->host,
			.user_agent = ua,
			.x_request_id = xr,
			.baggage = baggage,
			.local = c->local,
			.peer_text = c->peer_text,
			.peer_text_len = c->peer_text_len,
			.has_peer = c->peer.family != 0,
			.tls = c->tls,
			.minor_version = req->minor_version,
			.peer_port = c->peer.port,
		};

		set_request_attrs(rec, &v);
		return;
	}
	memset(&f, 0, sizeof(f));
	f.local = c->local;
	f.peer_port = c->peer.port;
	f.peer_text_len = c->peer_text_len;
	f.flags = (uint8_t)((c->tls ? FACT_TLS : 0) | (c->peer.family ? FACT_PEER : 0));
	f.minor_version = (uint8_t)req->minor_version;
	f.len[0] = (uint16_t)req->method.len;
	f.len[1] = (uint16_t)req->target.len;
	f.len[2] = (uint16_t)req->host.len;
	f.len[3] = (uint16_t)ua.len;
	f.len[4] = (uint16_t)xr.len;
	f.len[5] = (uint16_t)baggage.len;
	memcpy(dst, &f, sizeof(f));
	dst = put(dst + sizeof(f), c->peer_text, c->peer_text_len);
	dst = put(dst, req->method.p, req->method.len);
	dst = put(dst, req->target.p, req->target.len);
	dst = put(dst, req->host.p, req->host.len);
	dst = put(dst, ua.p, ua.len);
	dst = put(dst, xr.p, xr.len);
	put(dst, baggage.p, baggage.len);
	osh_span_defer(rec, complete_request_attrs);
}

/* The response's facts, for a record whose request facts wait for the
 * exporter thread: stored beside them, made attributes there. False when
 * the record keeps no facts. */
static bool keep_response_facts(struct osh_span *rec, int status, uint64_t resp_body,
				bool req_body_known, uint64_t req_body)
{
	char *f;
	uint8_t flags;
	uint16_t st = (uint16_t)status;

	if (rec->deferred != complete_request_attrs)
		return false;
	f = rec->arena + OSH_SPAN_ARENA - rec->arena_top;
	memcpy(&flags, f + offsetof(struct req_facts, flags), 1);
	flags |= FACT_RESPONSE | (req_body_known ? FACT_REQ_BODY : 0);
	memcpy(f + offsetof(struct req_facts, flags), &flags, 1);
	memcpy(f + offsetof(struct req_facts, status), &st, sizeof(st));
	memcpy(f + offsetof(struct req_facts, resp_body), &resp_body, sizeof(resp_body));
	memcpy(f + offsetof(struct req_facts, req_body), &req_body, sizeof(req_body));
	return true;
}

/* ---- exchange lifecycle ----------------------------------------------- */

/* End the oldest exchange: its response is complete (@status > 0), or it
 * ends without one (@error_type, or NULL when the shim merely lost track). */
static void finish(struct osh_conn *c, struct osh_srv_exchange *ex, int status,
		   const char *error_type)
{
	struct osh_server *sv = &c->server;
	struct osh_span *rec = ex->rec;

	ex->rec = NULL;
	if (sv->ring_head == ex->seq)
		sv->ring_head++;
	osh_context_anchor_done(&c->anchor, sv->ring_head);
	osh_context_leave(&c->anchor, ex->seq);
	if (!rec)
		return;
	rec->end_ns = call_time();
	/* The common end (a response below 500) is stored as facts for the
	 * exporter thread when the request's are. */
	if (status > 0 && status < 500 && !error_type &&
	    keep_response_facts(rec, status, sv->rs_body.payload, ex->req_body_known,
				ex->req_body)) {
		osh_exporter_submit(rec);
		return;
	}
	if (status) {
		osh_span_set_int(rec, "http.response.status_code", status);
		osh_span_set_int(rec, "http.response.body.size", (int64_t)sv->rs_body.payload);
		/* Server spans: 5xx is an error, 4xx is the client's. */
		if (status >= 500 && !error_type) {
			char code[12];
			struct osh_sb b = { code, 0, sizeof(code) };

			osh_sb_uint(&b, (unsigned)status);
			osh_span_set_str(rec, "error.type", code, b.len);
			osh_span_set_status(rec, OSH_STATUS_ERROR, NULL);
		}
	}
	if (ex->req_body_known)
		osh_span_set_int(rec, "http.request.body.size", (int64_t)ex->req_body);
	if (error_type) {
		osh_span_set_cstr(rec, "error.type", error_type);
		osh_span_set_status(rec, OSH_STATUS_ERROR, NULL);
	}
	osh_exporter_submit(rec);
}

/* Drop the newest exchanges whose request head never parsed: no span can
 * be named for them, and they would hold the connection tracked. */
static void drop_unparsed(struct osh_conn *c)
{
	struct osh_server *sv = &c->server;

	while (sv->ring_tail > sv->ring_head && !ring_at(sv, sv->ring_tail - 1)->head_parsed) {
		struct osh_srv_exchange *ex = ring_at(sv, --sv->ring_tail);

		osh_span_destroy(ex->rec);
		ex->rec = NULL;
	}
}

/* Join a field sent on several lines (RFC 9110, 5.3: one list, in order).
 * When not even the first line fits @buf, the first line alone is used in
 * place, as when it comes alone. */
static struct osh_str join_lines(const char *head, const struct osh_http_request *req,
				 const char *name, struct osh_str first, char *buf, size_t bufsz)
{
	size_t n = osh_http_join_field(head, req->head_len, name, buf, bufsz);

	return n ? (struct osh_str){ buf, n } : first;
}

/* Enter the exchange's context with the repeated tracestate and/or baggage
 * lines joined (@join_ts, @join_bg). Rare, and the buffers (12 KiB) come
 * from the heap: hooks run on the program's threads, whose stacks may be
 * small. Without memory the first lines are used alone, as when they come
 * alone; the context copies what it keeps. */
static void enter_joined(struct osh_conn *c, uint64_t seq, const struct osh_trace_ctx *me,
			 const struct osh_http_request *req, const char *head, struct osh_str ts,
			 struct osh_str bg, bool join_ts, bool join_bg)
{
	enum { TS_SZ = TRACESTATE_JOIN_MAX + 1, BG_SZ = OSH_CONTEXT_BAGGAGE_MAX + 1 };
	char *buf = malloc(TS_SZ + BG_SZ);

	if (buf && join_ts)
		ts = join_lines(head, req, "tracestate", ts, buf, TS_SZ);
	if (buf && join_bg)
		bg = join_lines(head, req, "baggage", bg, buf + TS_SZ, BG_SZ);
	osh_context_enter(&c->anchor, seq, me, ts, bg, req->x_request_id);
	free(buf);
}

/* A request head is complete (@head: its bytes, req->head_len of them):
 * extract the caller's context, decide sampling, make the exchange the
 * reading thread's context, and start its span. */
static void decide(struct osh_conn *c, struct osh_srv_exchange *ex,
		   const struct osh_http_request *req, const char *head)
{
	struct osh_trace_ctx parent = { 0 };
	struct osh_trace_ctx me = { 0 };
	struct osh_str ts = { 0 }, bg = { 0 };
	const struct osh_context *ctx;
	struct osh_span *rec;
	bool has_parent = false;
	bool join_ts = false, join_bg = false;
	bool sampled;

	/* Exactly one valid traceparent, or the request starts a new trace
	 * (W3C trace-context: two headers are as bad as a malformed one). */
	if (osh_cfg.propagate_tracecontext && req->traceparent_count == 1 &&
	    osh_traceparent_parse(req->traceparent.p, req->traceparent.len, &parent))
		has_parent = true;
	if (has_parent)
		memcpy(ex->trace_id, parent.trace_id, 16);
	else
		osh_ids_trace_id(ex->trace_id);
	osh_ids_span_id(ex->span_id);
	sampled = osh_sampler_decide(osh_cfg.sampler, osh_cfg.sampler_ratio,
				     has_parent ? &parent : NULL, ex->trace_id);
	ex->flags = (uint8_t)((sampled ? OSH_FLAG_SAMPLED : 0) |
			      (has_parent ? (parent.flags & OSH_FLAG_RANDOM) : 0));
	ex->head_parsed = true;
	ex->minor = (uint8_t)req->minor_version;
	ex->is_head = req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
	ex->is_connect = req->method.len == 7 && memcmp(req->method.p, "CONNECT", 7) == 0;
	if (req->body == OSH_BODY_LENGTH) {
		ex->req_body = req->content_length;
		ex->req_body_known = true;
	}

	/* The thread that read the head is now serving this request. A
	 * tracestate travels only with the traceparent it belongs to. Either
	 * field may come on several lines: W3C (trace-context, baggage) makes
	 * them one list, which is then validated as a whole. */
	memcpy(me.trace_id, ex->trace_id, 16);
	memcpy(me.span_id, ex->span_id, 8);
	me.flags = ex->flags;
	me.valid = true;
	if (has_parent && req->tracestate_count) {
		ts = req->tracestate;
		join_ts = req->tracestate_count > 1;
	}
	if (osh_cfg.propagate_baggage && req->baggage_count) {
		bg = req->baggage;
		join_bg = req->baggage_count > 1;
	}
	if (join_ts || join_bg)
		enter_joined(c, ex->seq, &me, req, head, ts, bg, join_ts, join_bg);
	else
		osh_context_enter(&c->anchor, ex->seq, &me, ts, bg, req->x_request_id);

	if (!sampled || osh_cfg.exporter == OSH_EXPORTER_NONE)
		return;
	rec = osh_span_create();
	if (!rec)
		return;
	ctx = osh_context_current();
	memcpy(rec->trace_id, ex->trace_id, 16);
	memcpy(rec->span_id, ex->span_id, 8);
	rec->trace_flags = ex->flags;
	rec->kind = OSH_SPAN_SERVER;
	rec->start_ns = ex->start_ns;
	if (has_parent) {
		rec->has_parent = true;
		rec->parent_remote = true;
		memcpy(rec->parent_span_id, parent.span_id, 8);
		if (ctx && ctx->tracestate_len)
			osh_span_set_trace_state(rec, ctx->tracestate, ctx->tracestate_len);
	}
	request_attrs(rec, c, req,
		      ctx && ctx->baggage_len ? (struct osh_str){ ctx->baggage, ctx->baggage_len }
					      : (struct osh_str){ 0 });
	ex->rec = rec;
}

void osh_server_abandon(struct osh_conn *c, enum osh_end_reason why, int err)
{
	struct osh_server *sv = &c->server;

	while (sv->ring_head < sv->ring_tail) {
		struct osh_srv_exchange *ex = ring_at(sv, sv->ring_head);
		bool answering = sv->rs_state == RS_BODY && !sv->rs_orphan;
		const char *etype = NULL;
		int status = 0;

		if (!ex->head_parsed) {
			/* Never became a request we could name. */
			osh_span_destroy(ex->rec);
			ex->rec = NULL;
			sv->ring_head++;
			osh_context_anchor_done(&c->anchor, sv->ring_head);
			continue;
		}
		if (answering) {
			/* The head went out: the status is known. A body
			 * delimited by the close is complete now; anything
			 * else was cut short. */
			status = sv->rs_status;
			if (sv->rs_body.kind != OSH_BODY_UNTIL_CLOSE && why != OSH_END_DESYNC)
				etype = why == OSH_END_ERROR ? osh_http_error_type(err)
							     : "response_incomplete";
			sv->rs_state = RS_IDLE;
		} else {
			switch (why) {
			case OSH_END_CLOSED:
			case OSH_END_EOF:
				etype = sv->peer_eof ? "client_closed" : "no_response";
				break;
			case OSH_END_ERROR:
				etype = osh_http_error_type(err);
				break;
			case OSH_END_DESYNC:
			default:
				break;
			}
		}
		finish(c, ex, status, etype);
	}
}

void osh_server_reset(struct osh_server *sv)
{
	for (int i = 0; i < OSH_SERVER_RING; i++) {
		osh_span_destroy(sv->ring[i].rec);
		sv->ring[i].rec = NULL;
	}
	osh_buf_free(&sv->rq_acc);
	osh_buf_free(&sv->rs_acc);
	memset(sv, 0, sizeof(*sv));
}

/* True when nothing is left to observe: the slot should be released. */
static bool should_release(const struct osh_server *sv)
{
	if (sv->rs_state == RS_DEAD)
		return true;
	return sv->rq_state == RQ_DEAD && sv->ring_head == sv->ring_tail;
}

/* Stop interpreting requests; the ones already read still get their
 * responses matched. */
static void rq_kill(struct osh_conn *c)
{
	c->server.rq_state = RQ_DEAD;
	c->server.rq_acc.len = 0;
	drop_unparsed(c);
}

/* Lost the response stream: end what is in flight, without blame. */
static void rs_kill(struct osh_conn *c)
{
	osh_server_abandon(c, OSH_END_DESYNC, 0);
	c->server.rs_state = RS_DEAD;
	c->server.rq_state = RQ_DEAD;
}

/* Unlock @o and stop tracking it when nothing is left to observe. */
static void unlock_and_settle(struct osh_conn *o)
{
	bool release = should_release(&o->server) && atomic_load(&o->role) == OSH_ROLE_SERVER;

	osh_conn_unlock(o);
	if (release)
		osh_conn_release(o, OSH_END_DESYNC);
}

/* ---- requests (the read side) ------------------------------------------ */

/* A complete, parsed request head, whose bytes start at @head. */
static void rq_head_parsed(struct osh_conn *c, const struct osh_http_request *req,
			   const char *head)
{
	struct osh_server *sv = &c->server;
	struct osh_srv_exchange *ex = ring_at(sv, sv->rq_seq);

	sv->rq_sniffed = true;
	/* seq < ring_head: the program answered before the head was complete
	 * (400, 431), which ended the exchange. */
	if (sv->rq_seq >= sv->ring_head && !ex->head_parsed)
		decide(c, ex, req, head);
	osh_http_body_start(&sv->rq_body, req->body, req->content_length);
	sv->rq_state = sv->rq_body.done ? RQ_IDLE : RQ_BODY;
}

static void rq_malformed(struct osh_conn *c)
{
	osh_diag_once(OSH_ONCE_HEAD_TOO_LARGE, OSH_LOG_DEBUG,
		      "malformed request head; connection passes through");
	rq_kill(c);
}

/* A complete head gathered across reads. */
static void rq_head_done(struct osh_conn *c, const char *head, size_t h)
{
	struct osh_http_request req;

	if (osh_http_parse_request(&req, head, h) < 0) {
		rq_malformed(c);
		return;
	}
	rq_head_parsed(c, &req, head);
}

static void rq_walk(struct osh_conn *c, const char *p, size_t len, uint64_t now)
{
	struct osh_server *sv = &c->server;

	while (len > 0 && sv->rq_state != RQ_DEAD) {
		switch (sv->rq_state) {
		case RQ_IDLE: {
			struct osh_srv_exchange *ex;

			/* Empty lines before a request line are tolerated
			 * (RFC 9112, 2.2): a client's stray CRLF after a body. */
			if (*p == '\r' || *p == '\n') {
				p++;
				len--;
				break;
			}
			if (sv->ring_tail - sv->ring_head >= OSH_SERVER_RING) {
				rq_kill(c);
				return;
			}
			ex = ring_at(sv, sv->ring_tail);
			memset(ex, 0, sizeof(*ex));
			ex->seq = sv->ring_tail++;
			ex->start_ns = now;
			sv->rq_seq = ex->seq;
			sv->rq_acc.len = 0;
			sv->rq_scanned = 0;
			sv->rq_state = RQ_HEAD;
			break;
		}
		case RQ_HEAD: {
			const char *head;
			size_t hlen, used;
			int g;

			if (!sv->rq_sniffed) {
				/* The connection's first bytes decide whether it
				 * is HTTP at all: TLS, HTTP/2 prior knowledge,
				 * other protocols pass through. */
				int sn = sniff(osh_http_sniff_request, &sv->rq_acc, p, len);

				if (sn == 0) {
					rq_kill(c);
					return;
				}
			}
			if (!sv->rq_acc.len) {
				/* The whole head in this read (the usual case):
				 * one parse finds its end too. */
				struct osh_http_request req;
				int rc = osh_http_parse_request(&req, p, len);

				if (rc > 0) {
					rq_head_parsed(c, &req, p);
					p += rc;
					len -= (size_t)rc;
					break;
				}
				if (rc == OSH_HTTP_INVALID) {
					rq_malformed(c);
					return;
				}
			}
			g = gather_head(&sv->rq_acc, &sv->rq_scanned, p, len, &head, &hlen, &used);
			if (g < 0) {
				osh_diag_once(OSH_ONCE_HEAD_TOO_LARGE, OSH_LOG_DEBUG,
					      "request head over %d bytes or malformed; "
					      "connection passes through",
					      OSH_HTTP_MAX_HEAD);
				rq_kill(c);
				return;
			}
			p += used;
			len -= used;
			if (g > 0) {
				rq_head_done(c, head, hlen);
				sv->rq_acc.len = 0;
				sv->rq_scanned = 0;
			}
			break;
		}
		case RQ_BODY: {
			ssize_t n = osh_http_body_feed(&sv->rq_body, p, len);

			if (n < 0) {
				rq_kill(c);
				return;
			}
			p += n;
			len -= (size_t)n;
			if (sv->rq_body.done) {
				struct osh_srv_exchange *ex = ring_at(sv, sv->rq_seq);

				if (sv->rq_seq >= sv->ring_head &&
				    sv->rq_body.kind == OSH_BODY_CHUNKED) {
					ex->req_body = sv->rq_body.payload;
					ex->req_body_known = true;
				}
				sv->rq_state = RQ_IDLE;
			}
			break;
		}
		default:
			return;
		}
	}
}

static void server_rx_now(struct osh_conn *c, const struct iovec *iov, int iovcnt, ssize_t ret,
			  int err)
{
	struct osh_conn *o;
	struct osh_server *sv;

	o = osh_conn_lock_server(c);
	if (!o)
		return;
	sv = &o->server;
	if (ret > 0) {
		size_t left = (size_t)ret;
		uint64_t now = call_time();

		for (int i = 0; i < iovcnt && left > 0 && sv->rq_state != RQ_DEAD; i++) {
			size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
			rq_walk(o, iov[i].iov_base, n, now);
			left -= n;
		}
	} else if (ret == 0) {
		/* The client closed its side; it may still read what the
		 * program answers to requests already sent. */
		sv->peer_eof = true;
		rq_kill(o);
	} else {
		osh_server_abandon(o, OSH_END_ERROR, err);
		sv->rq_state = RQ_DEAD;
		sv->rs_state = RS_DEAD;
	}
	unlock_and_settle(o);
}

/* ---- responses (the write side) ----------------------------------------- */

/* A complete, parsed response head. */
static void rs_head_parsed(struct osh_conn *c, const struct osh_http_response *resp)
{
	struct osh_server *sv = &c->server;
	struct osh_srv_exchange *ex = NULL;
	enum osh_http_body_kind kind;
	const char *method = "GET";

	sv->rs_sniffed = true;
	if (sv->ring_head < sv->ring_tail) {
		ex = ring_at(sv, sv->ring_head);
		method = ex->is_head ? "HEAD" : ex->is_connect ? "CONNECT" : "GET";
	}
	if (resp->status < 200 && resp->status != 101) {
		/* Interim (100 Continue, 103 Early Hints): the final
		 * response follows. */
		sv->rs_state = RS_IDLE;
		return;
	}
	kind = osh_http_response_body(resp, method, strlen(method));
	sv->rs_status = resp->status;
	sv->rs_orphan = ex == NULL;
	osh_http_body_start(&sv->rs_body, kind, resp->content_length);
	if (kind == OSH_BODY_TUNNEL) {
		/* 101 Switching Protocols, CONNECT 2xx: the bytes that follow
		 * are another protocol's. */
		if (ex)
			finish(c, ex, resp->status, NULL);
		sv->rs_state = RS_DEAD;
		sv->rq_state = RQ_DEAD;
		return;
	}
	if (kind == OSH_BODY_NONE || sv->rs_body.done) {
		if (ex)
			finish(c, ex, resp->status, NULL);
		sv->rs_state = RS_IDLE;
		return;
	}
	sv->rs_state = RS_BODY;
}

/* A complete head gathered across writes. */
static void rs_head_done(struct osh_conn *c, const char *head, size_t h)
{
	struct osh_http_response resp;

	if (osh_http_scan_response_head(&resp, head, h) < 0) {
		rs_kill(c);
		return;
	}
	rs_head_parsed(c, &resp);
}

/* The response being written is complete. */
static void rs_complete(struct osh_conn *c)
{
	struct osh_server *sv = &c->server;

	if (!sv->rs_orphan && sv->ring_head < sv->ring_tail)
		finish(c, ring_at(sv, sv->ring_head), sv->rs_status, NULL);
	sv->rs_state = RS_IDLE;
	sv->rs_orphan = false;
}

static void rs_walk(struct osh_conn *c, const char *p, size_t len)
{
	struct osh_server *sv = &c->server;

	while (len > 0 && sv->rs_state != RS_DEAD) {
		switch (sv->rs_state) {
		case RS_IDLE:
			sv->rs_acc.len = 0;
			sv->rs_scanned = 0;
			sv->rs_state = RS_HEAD;
			break;
		case RS_HEAD: {
			const char *head;
			size_t hlen, used;
			int g;

			if (!sv->rs_sniffed) {
				int sn = sniff(osh_http_sniff_response, &sv->rs_acc, p, len);

				if (sn == 0) {
					rs_kill(c);
					return;
				}
			}
			if (!sv->rs_acc.len) {
				/* The whole head in this write: one parse. */
				struct osh_http_response resp;
				int rc = osh_http_scan_response_head(&resp, p, len);

				if (rc > 0) {
					rs_head_parsed(c, &resp);
					p += rc;
					len -= (size_t)rc;
					break;
				}
				if (rc == OSH_HTTP_INVALID) {
					rs_kill(c);
					return;
				}
			}
			g = gather_head(&sv->rs_acc, &sv->rs_scanned, p, len, &head, &hlen, &used);
			if (g < 0) {
				rs_kill(c);
				return;
			}
			p += used;
			len -= used;
			if (g > 0) {
				rs_head_done(c, head, hlen);
				sv->rs_acc.len = 0;
				sv->rs_scanned = 0;
			}
			break;
		}
		case RS_BODY: {
			ssize_t n = osh_http_body_feed(&sv->rs_body, p, len);

			if (n < 0) {
				rs_kill(c);
				return;
			}
			p += n;
			len -= (size_t)n;
			if (sv->rs_body.done)
				rs_complete(c);
			break;
		}
		default:
			return;
		}
	}
}

static void server_tx_now(struct osh_conn *c, const struct iovec *iov, int iovcnt, ssize_t ret,
			  int err)
{
	struct osh_conn *o;
	struct osh_server *sv;

	o = osh_conn_lock_server(c);
	if (!o)
		return;
	sv = &o->server;
	if (ret > 0) {
		size_t left = (size_t)ret;

		for (int i = 0; i < iovcnt && left > 0 && sv->rs_state != RS_DEAD; i++) {
			size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
			rs_walk(o, iov[i].iov_base, n);
			left -= n;
		}
	} else {
		/* The connection broke under the response. */
		osh_server_abandon(o, OSH_END_ERROR, err);
		sv->rq_state = RQ_DEAD;
		sv->rs_state = RS_DEAD;
	}
	unlock_and_settle(o);
}

static void server_tx_opaque_now(struct osh_conn *c, size_t n)
{
	struct osh_conn *o;
	struct osh_server *sv;
	struct osh_http_body *b;

	if (!n)
		return;
	o = osh_conn_lock_server(c);
	if (!o)
		return;
	sv = &o->server;
	b = &sv->rs_body;
	if (sv->rs_state == RS_BODY && osh_http_body_skip(b, n)) {
		/* Payload only (a Content-Length or close-delimited body, or
		 * the inside of one chunk: nginx writes the chunk-size line,
		 * sends the data from the file, then writes the CRLF): only
		 * the count matters. The final chunk, written as usual, ends
		 * a chunked response. */
		if (b->done)
			rs_complete(o);
	} else if (sv->rs_state != RS_DEAD) {
		/* Framing (a chunk-size line, a CRLF, trailers, or bytes
		 * outside any body) cannot be followed blind. The response is
		 * as good as sent: end it now, then let the connection go. */
		if (sv->rs_state == RS_BODY) {
			b->payload += n;
			rs_complete(o);
		}
		rs_kill(o);
	}
	unlock_and_settle(o);
}

void osh_server_rx_lost(struct osh_conn *c)
{
	struct osh_conn *o;

	/* After the calls logged before it. */
	osh_server_replay();
	o = osh_conn_lock_server(c);

	if (!o)
		return;
	rq_kill(o);
	unlock_and_settle(o);
}

void osh_server_shutdown(struct osh_conn *c)
{
	struct osh_conn *o;

	/* After the calls logged before it (the response it ends). */
	osh_server_replay();
	o = osh_conn_lock_server(c);

	if (!o)
		return;
	osh_server_abandon(o, OSH_END_CLOSED, 0);
	o->server.rq_state = RQ_DEAD;
	o->server.rs_state = RS_DEAD;
	unlock_and_settle(o);
}

/* ---- deferred observation ----------------------------------------------
 *
 * docs/BENCHMARKS.md, "Results, seventeenth session": a pure server's thread
 * only logs what went through each call, with its time, and the exporter
 * thread replays the log through the engine above, off the program's
 * thread. The log is one ring for the process: a call's entry is appended
 * before its hook returns, so before anything the program does next, and
 * each connection's calls replay in the order they happened. A replayed
 * call enters and leaves contexts in the record of the thread that made it
 * (context.h, osh_context_redirect). No thread reads its own record while
 * the process defers: the first one about to (an outgoing request,
 * osh_server_before_context) ends deferral for good, after replaying the
 * log under the replay lock, which orders every write into its record
 * before its read.
 *
 * Whatever cannot be logged (an alias, a call larger than an entry, a full
 * log, an error, a thread without a record) is observed at once, as
 * before, after the log is replayed on the calling thread. */

enum {
	LOG_BYTES = 1 << 20,
	LOG_ENTRY_MAX = 2048,	/* bytes of one call kept in the log */
	LOG_WAKE_EVERY = 256,	/* entries between wakes of the exporter */
	LOG_ALIGN = 64,
};

enum log_kind { LOG_RX, LOG_TX, LOG_TX_OPAQUE };

enum defer_mode { DEFER_OFF, DEFER_ON, DEFER_ENDED };

/* One call, followed by its bytes. Entries take multiples of LOG_ALIGN
 * bytes, at least the header's size, so that a wrap marker always fits at
 * the ring's end. */
struct log_entry {
	struct osh_conn *conn;
	struct osh_context_record *thread;	/* the calling thread's record */
	uint64_t time;
	int64_t ret;
	uint16_t size;		/* of the entry with its bytes */
	uint8_t kind;
	uint8_t wrap;		/* the rest of the ring is unused */
};

_Static_assert(sizeof(struct log_entry) <= LOG_ALIGN, "a wrap marker must fit in LOG_ALIGN");
_Static_assert(LOG_BYTES % LOG_ALIGN == 0, "the ring's end falls on an entry boundary");

static char *log_ring;
static struct {
	_Alignas(64) _Atomic uint64_t v;
} log_head, log_tail;
static uint64_t log_tail_seen;	/* producers' last look at log_tail */
static uint64_t log_entries;	/* under log_producers */
static pthread_mutex_t log_producers = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t log_replay = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int defer_mode;
static __thread bool replaying __attribute__((tls_model("initial-exec")));
static __thread struct osh_context_record *my_record __attribute__((tls_model("initial-exec")));
static __thread bool my_record_failed __attribute__((tls_model("initial-exec")));

static bool log_pending(void)
{
	return atomic_load_explicit(&log_head.v, memory_order_acquire) !=
	       atomic_load_explicit(&log_tail.v, memory_order_acquire);
}

static void replay_entry(struct log_entry *e)
{
	struct iovec v = { (char *)(e + 1), e->ret > 0 ? (size_t)e->ret : 0 };

	replay_time = e->time;
	osh_context_redirect(e->thread);
	switch (e->kind) {
	case LOG_RX:
		server_rx_now(e->conn, &v, 1, e->ret, 0);
		break;
	case LOG_TX:
		server_tx_now(e->conn, &v, 1, e->ret, 0);
		break;
	default:
		server_tx_opaque_now(e->conn, (size_t)e->ret);
		break;
	}
	osh_context_redirect(NULL);
	replay_time = 0;
}

void osh_server_replay(void)
{
	uint64_t t, h;

	/* A release during a replay comes back here: already under way. */
	if (replaying || !log_pending())
		return;
	pthread_mutex_lock(&log_replay);
	replaying = true;
	t = atomic_load_explicit(&log_tail.v, memory_order_relaxed);
	h = atomic_load_explicit(&log_head.v, memory_order_acquire);
	while (t < h) {
		struct log_entry *e = (struct log_entry *)(log_ring + t % LOG_BYTES);

		if (e->wrap) {
			t += LOG_BYTES - t % LOG_BYTES;
		} else {
			replay_entry(e);
			t += e->size;
		}
		/* Room for the producers as it is made. */
		atomic_store_explicit(&log_tail.v, t, memory_order_release);
	}
	replaying = false;
	pthread_mutex_unlock(&log_replay);
}

void osh_server_before_context(void)
{
	int m = atomic_load_explicit(&defer_mode, memory_order_relaxed);

	if (__builtin_expect(m == DEFER_OFF, 1))
		return;
	if (m == DEFER_ON)
		atomic_store(&defer_mode, DEFER_ENDED);
	osh_server_replay();
}

/* Never waits for the replay: false when the entry does not fit now. */
static bool log_append(struct osh_conn *c, enum log_kind kind, const struct iovec *iov,
		       int iovcnt, ssize_t ret)
{
	size_t need = kind != LOG_TX_OPAQUE ? (size_t)ret : 0;
	size_t size = (sizeof(struct log_entry) + need + LOG_ALIGN - 1) & ~(size_t)(LOG_ALIGN - 1);
	struct log_entry *e;
	uint64_t h, room;
	size_t off = 0;
	bool wake;

	if (need > LOG_ENTRY_MAX)
		return false;
	pthread_mutex_lock(&log_producers);
	h = atomic_load_explicit(&log_head.v, memory_order_relaxed);
	room = LOG_BYTES - h % LOG_BYTES;
	if (room < size) {
		/* Skip the ring's end (a marker fills it). */
		if (h + room + size - log_tail_seen > LOG_BYTES)
			log_tail_seen = atomic_load_explicit(&log_tail.v, memory_order_acquire);
		if (h + room + size - log_tail_seen > LOG_BYTES) {
			pthread_mutex_unlock(&log_producers);
			return false;
		}
		((struct log_entry *)(log_ring + h % LOG_BYTES))->wrap = 1;
		h += room;
	} else if (h + size - log_tail_seen > LOG_BYTES) {
		log_tail_seen = atomic_load_explicit(&log_tail.v, memory_order_acquire);
		if (h + size - log_tail_seen > LOG_BYTES) {
			pthread_mutex_unlock(&log_producers);
			return false;
		}
	}
	e = (struct log_entry *)(log_ring + h % LOG_BYTES);
	e->conn = c;
	e->thread = my_record;
	e->time = osh_clock_realtime_ns();
	e->ret = ret;
	e->kind = (uint8_t)kind;
	e->wrap = 0;
	e->size = (uint16_t)size;
	for (int i = 0; i < iovcnt && need > 0; i++) {
		size_t n = iov[i].iov_len < need ? iov[i].iov_len : need;

		memcpy((char *)(e + 1) + off, iov[i].iov_base, n);
		off += n;
		need -= n;
	}
	atomic_store_explicit(&log_head.v, h + size, memory_order_release);
	wake = ++log_entries % LOG_WAKE_EVERY == 0;
	pthread_mutex_unlock(&log_producers);
	if (wake)
		osh_exporter_wake();
	return true;
}

/* Log the call when the process defers and this one can be; else observe
 * it now, after whatever is logged. */
static bool deferred(struct osh_conn *c, enum log_kind kind, const struct iovec *iov,
		     int iovcnt, ssize_t ret)
{
	int m = atomic_load_explicit(&defer_mode, memory_order_relaxed);

	if (__builtin_expect(m == DEFER_OFF, 1))
		return false;
	if (m == DEFER_ENDED || replaying) {
		/* Calls logged just before deferral ended go first. */
		osh_server_replay();
		return false;
	}
	if (ret > 0 && atomic_load_explicit(&c->role, memory_order_relaxed) == OSH_ROLE_SERVER) {
		if (__builtin_expect(!my_record && !my_record_failed, 0)) {
			my_record = osh_context_self();
			my_record_failed = !my_record;
		}
		if (my_record && log_append(c, kind, iov, iovcnt, ret))
			return true;
	}
	osh_server_replay();
	return false;
}

/* A failed call that moved nothing and leaves the connection fine: a retry,
 * or a bad buffer that is the program's own business. Filtered before the
 * log, so that a server's EAGAIN reads never make it replay. */
static bool failed_harmlessly(ssize_t ret, int err)
{
	return ret < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == EFAULT);
}

void osh_server_rx(struct osh_conn *c, const struct iovec *iov, int iovcnt, ssize_t ret, int err)
{
	if (!failed_harmlessly(ret, err) && !deferred(c, LOG_RX, iov, iovcnt, ret))
		server_rx_now(c, iov, iovcnt, ret, err);
}

void osh_server_tx(struct osh_conn *c, const struct iovec *iov, int iovcnt, ssize_t ret, int err)
{
	if (ret != 0 && !failed_harmlessly(ret, err) && !deferred(c, LOG_TX, iov, iovcnt, ret))
		server_tx_now(c, iov, iovcnt, ret, err);
}

void osh_server_tx_opaque(struct osh_conn *c, size_t n)
{
	if (n && !deferred(c, LOG_TX_OPAQUE, NULL, 0, (ssize_t)n))
		server_tx_opaque_now(c, n);
}

/* Fork: the log is replayed first, so that parent and child start from the
 * same, complete connection states (a fork child reports what it then
 * answers, as without deferral). Calls another thread logs in between stay
 * the parent's: the child drops them, and its copies of those connections
 * miss them. */
static void log_fork_prepare(void)
{
	osh_server_replay();
	pthread_mutex_lock(&log_replay);
	pthread_mutex_lock(&log_producers);
}

static void log_fork_parent(void)
{
	pthread_mutex_unlock(&log_producers);
	pthread_mutex_unlock(&log_replay);
}

/* The child has no exporter thread yet: it observes at once until its own
 * starts and defers again. */
static void log_fork_child(void)
{
	int m = atomic_load(&defer_mode);

	if (m == DEFER_ON)
		atomic_store(&defer_mode, DEFER_OFF);
	atomic_store(&log_tail.v, atomic_load(&log_head.v));
	pthread_mutex_init(&log_producers, NULL);
	pthread_mutex_init(&log_replay, NULL);
}

bool osh_server_defer_start(void)
{
	/* The exporter thread calls this, one at a time (again in a fork
	 * child, whose handlers are the parent's). */
	static bool armed;
	int off = DEFER_OFF;

	if (!log_ring) {
		char *r = calloc(1, LOG_BYTES);

		if (!r)
			return false;
		log_ring = r;
	}
	if (!armed) {
		if (pthread_atfork(log_fork_prepare, log_fork_parent, log_fork_child) != 0)
			return false;
		osh_context_on_exit(osh_server_replay);
		armed = true;
	}
	return atomic_compare_exchange_strong(&defer_mode, &off, DEFER_ON);
}
