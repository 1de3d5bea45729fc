/* Client-side HTTP/1.x exchange tracking (see http_client.h and
 * docs/ARCHITECTURE.md, "Writes and injection").
 *
 * The write side keeps a parser position (struct osh_tx_parse) over the
 * program's outgoing byte stream. Each send call is first parsed as a dry
 * run on a copy of that position: requests that start get an exchange (a
 * ring slot, published at once so that a response read on another thread
 * always finds it), heads that complete get their trace context decided
 * and, unless the program sent its own traceparent, an injection point in
 * the stream. After the real call, the position is advanced over exactly
 * the program bytes that were accepted (re-parsing the prefix when the
 * call was partial) and exchanges whose first byte never left are dropped.
 */
#include "buildconf.h"

#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "conn.h"
#include "context.h"
#include "diag.h"
#include "exporter.h"
#include "http_client.h"
#include "http_server.h"
#include "http_util.h"
#include "ids.h"
#include "procspan.h"
#include "propagation.h"
#include "llm.h"
#include "redact.h"
#include "route.h"
#include "span.h"

enum tx_state {
	TX_IDLE = 0,	/* between requests */
	TX_HEAD,	/* inside a request head */
	TX_BODY,	/* inside a request body */
	TX_TUNNEL,	/* after CONNECT/Upgrade: opaque bytes */
	TX_DEAD,	/* not HTTP or lost track: pass through */
};

enum rx_state {
	RX_HEAD = 0,
	RX_BODY,
	RX_DEAD,
};

/* Values longer than these are cut before they reach a span. */
#define URL_MAX 1024
#define UA_MAX 256

/* The tracestate/baggage lines injected with the environment context:
 * "tracestate: ...\r\nbaggage: ...\r\n", built once at load. A request
 * that already has one of the headers gets only the other line. */
static char *env_lines;
static size_t env_ts_len;	/* length of the tracestate line (first) */
static size_t env_bg_len;	/* length of the baggage line (after it) */

void osh_client_init(void)
{
	size_t ts = osh_cfg.propagate_tracecontext ? osh_env_ctx.tracestate_len : 0;
	size_t bg = osh_cfg.propagate_baggage ? osh_env_ctx.baggage_len : 0;
	size_t n = 0;

	if (!ts && !bg)
		return;
	env_lines = malloc((ts ? ts + 14 : 0) + (bg ? bg + 11 : 0) + 1);
	if (!env_lines)
		return;
	if (ts) {
		n += (size_t)sprintf(env_lines + n, "tracestate: %.*s\r\n", (int)ts,
				     osh_env_ctx.tracestate);
		env_ts_len = n;
	}
	if (bg) {
		n += (size_t)sprintf(env_lines + n, "baggage: %.*s\r\n", (int)bg,
				     osh_env_ctx.baggage);
		env_bg_len = n - env_ts_len;
	}
}

/* ---- small helpers ---------------------------------------------------- */

static struct osh_exchange *ring_at(struct osh_client *cl, uint64_t seq)
{
	return &cl->ring[seq % OSH_CLIENT_RING];
}




/* ---- span attributes -------------------------------------------------- */







/* Attributes known once the request head is complete. Runs for every
 * sampled request: string building by hand, the URL redacted once, and
 * url.path sharing url.full's bytes in the span arena. */
static void set_request_attrs(struct osh_span *rec, const struct osh_conn *c,
			      const struct osh_http_request *req)
{
	const char *method = osh_http_set_method(rec, req->method);
	struct osh_str target = req->target;
	struct osh_str host = { 0 }, path = target;
	int port = 0;
	/* Nearly every target is origin-form ("/..."): one byte decides. */
	bool absolute = target.len && target.p[0] != '/' &&
			(osh_str_has_prefix_ci(target, "https://") ||
			 osh_str_has_prefix_ci(target, "http://"));
	/* An absolute target names its scheme; otherwise the connection does
	 * (plaintext seen through a TLS library is https). */
	bool https = absolute ? osh_str_has_prefix_ci(target, "https://") : c->tls;
	const char *scheme = https ? "https://" : "http://";
	size_t scheme_len = https ? 8 : 7;
	int default_port = https ? 443 : 80;
	bool authority_form = !absolute && target.len && target.p[0] != '/' && target.p[0] != '*';
	char raw[URL_MAX + 300];
	struct osh_sb b = { raw, 0, sizeof(raw) };
	char name[300];
	struct osh_sb nb = { name, 0, sizeof(name) };


	/* Where the request goes: the URL authority, else Host, else the peer. */
	if (absolute) {
		struct osh_str auth;

		osh_http_split_absolute(target, &auth, &path);
		if (!osh_http_split_authority(auth, &host, &port))
			host.len = 0;
	} else if (authority_form) {
		if (!osh_http_split_authority(target, &host, &port))
			host.len = 0;
		path.len = 0;
	} else if (req->host.len) {
		if (!osh_http_split_authority(req->host, &host, &port))
			host.len = 0;
	}
	if (!host.len) {
		host.p = c->peer_text;
		host.len = c->peer_text_len;
		port = c->peer.port;
	}
	if (!port)
		port = default_port;

	/* url.full, redacted; from the Host header for origin-form targets.
	 * The usual case, an origin-form target and a plain host, redacts only
	 * the target: the prefix built here has nothing to redact. */
	char red[URL_MAX + 300];
	size_t n = 0, path_at = 0;
	bool have_path = false;

	if (!absolute && !authority_form && target.p[0] == '/' && !memchr(host.p, '@', host.len)) {
		bool v6 = memchr(host.p, ':', host.len) != NULL;
		struct osh_sb pre = { red, 0, 300 };

		osh_sb_put(&pre, scheme, scheme_len);
		if (v6)
			osh_sb_put(&pre, "[", 1);
		osh_sb_put(&pre, host.p, host.len);
		if (v6)
			osh_sb_put(&pre, "]", 1);
		if (port != default_port) {
			osh_sb_put(&pre, ":", 1);
			osh_sb_uint(&pre, (unsigned)port);
		}
		path_at = pre.len;
		have_path = true;
		n = pre.len + osh_redact_url(target.p, target.len < URL_MAX ? target.len : URL_MAX,
					     red + pre.len, sizeof(red) - pre.len);
	} else {
		if (absolute) {
			osh_sb_put(&b, target.p, target.len < URL_MAX ? target.len : URL_MAX);
		} else if (!authority_form) {
			bool v6 = memchr(host.p, ':', host.len) != NULL;
			osh_sb_put(&b, scheme, scheme_len);
			if (v6)
				osh_sb_lit(&b, "[");
			osh_sb_put(&b, host.p, host.len);
			if (v6)
				osh_sb_lit(&b, "]");
			if (port != default_port) {
				osh_sb_lit(&b, ":");
				osh_sb_uint(&b, (unsigned)port);
			}
			if (target.p[0] == '/')
				osh_sb_put(&b, target.p, target.len < URL_MAX ? target.len : URL_MAX);
		}
		if (b.len) {
			n = osh_redact_url(raw, b.len, red, sizeof(red));
			have_path = osh_url_path_at(red, n, &path_at);
		}
	}
	osh_http_set_url_full(rec, red, n, have_path, path_at);
	osh_span_set_cstr(rec, "url.scheme", https ? "https" : "http");
	osh_span_set_str(rec, "server.address", host.p, host.len);
	osh_span_set_int(rec, "server.port", port);
	/* No peer: a TLS session over memory BIOs (no socket to ask). */
	if (c->peer.family) {
		osh_span_set_str(rec, "network.peer.address", c->peer_text, c->peer_text_len);
		osh_span_set_int(rec, "network.peer.port", c->peer.port);
	}
	if (req->user_agent.len) {
		size_t ua = req->user_agent.len < UA_MAX ? req->user_agent.len : UA_MAX;

		/* Cut before a character, not inside one (OTLP strings are
		 * UTF-8). */
		while (ua < req->user_agent.len && ua > 0 &&
		       ((unsigned char)req->user_agent.p[ua] & 0xC0) == 0x80)
			ua--;
		osh_span_set_str(rec, "user_agent.original", req->user_agent.p, ua);
	}
	if (req->body == OSH_BODY_LENGTH)
		osh_span_set_int(rec, "http.request.body.size", (int64_t)req->content_length);

	/* Name: "{METHOD} {templated path}"; "HTTP" for unknown methods. */
	osh_sb_lit(&nb, method ? method : "HTTP");
	if (!authority_form && !(target.len == 1 && target.p[0] == '*')) {
		char tmpl[256];
		size_t tl = osh_route_template(path.len ? path.p : "/", path.len ? path.len : 1,
					       tmpl, sizeof(tmpl));
		osh_sb_lit(&nb, " ");
		osh_sb_put(&nb, tmpl, tl);
	}
	osh_span_set_name(rec, name, nb.len);
}

/* ---- exchange lifecycle ----------------------------------------------- */

/* The current parent for requests that carry none of their own: the
 * SERVER span this thread is serving (context.h); then this process's span
 * (OTELSHIM_PROCESS_SPANS), then the environment carrier, or nothing. */
const struct osh_trace_ctx *osh_client_current_parent(void)
{
	const struct osh_context *t;
	const struct osh_trace_ctx *proc;

	/* The thread's context may still be in the server log. */
	osh_server_before_context();
	t = osh_context_current();
	if (t)
		return &t->span;
	proc = osh_procspan_parent();

	if (proc)
		return proc;
	return osh_env_ctx.parent.valid ? &osh_env_ctx.parent : NULL;
}

static void finish(struct osh_client *cl, struct osh_exchange *ex, const char *error_type)
{
	struct osh_span *rec = ex->rec;
	struct osh_llm *llm = ex->llm;
	bool llm_error;

	ex->rec = NULL;
	ex->llm = NULL;
	if (cl->ring_head == ex->seq)
		cl->ring_head++;
	if (!rec) {
		osh_llm_free(llm);
		return;
	}
	rec->end_ns = osh_clock_realtime_ns();
	/* An LLM call's provider error names the failure better than the
	 * status code does. */
	llm_error = llm && osh_llm_finish(llm, rec);
	if (ex->got_response) {
		/* The parser guarantees one minor digit and a 3-digit status:
		 * no printf on the per-request path. */
		char v[3] = { '1', '.', (char)('0' + cl->rx_minor) };

		osh_span_set_int(rec, "http.response.status_code", cl->rx_status);
		osh_span_set_str(rec, "network.protocol.version", v, sizeof(v));
		osh_span_set_int(rec, "http.response.body.size", (int64_t)cl->rx_body.payload);
		if (cl->rx_status >= 400 && !error_type && !llm_error) {
			char code[12];
			struct osh_sb b = { code, 0, sizeof(code) };

			osh_sb_uint(&b, (unsigned)cl->rx_status);
			osh_span_set_str(rec, "error.type", code, b.len);
			osh_span_set_status(rec, OSH_STATUS_ERROR, NULL);
		}
	}
	if (ex->req_chunked_done)
		osh_span_set_int(rec, "http.request.body.size", (int64_t)ex->req_chunked_size);
	if (error_type) {
		osh_span_set_cstr(rec, "error.type", error_type);
		osh_span_set_status(rec, OSH_STATUS_ERROR, NULL);
	}
	osh_exporter_submit(rec);
}

/* Build in ex->extra_heap the lines a request made under the thread's
 * context @t carries besides its traceparent: the context's tracestate, its
 * baggage (else the environment's), its x-request-id, each only when the
 * request has none of its own. Returns their length (0: none, or no
 * memory). */
static size_t ctx_lines(struct osh_exchange *ex, const struct osh_context *t,
			const struct osh_http_request *req)
{
	size_t ts = osh_cfg.propagate_tracecontext && !req->tracestate_count ? t->tracestate_len : 0;
	const char *bg = t->baggage;
	size_t bg_len = t->baggage_len;
	size_t rid = req->x_request_id.len ? 0 : t->request_id_len;
	size_t n = 0;
	char *p;

	if (!bg_len && env_bg_len) {
		/* "baggage: " + value + CRLF, as built at load. */
		bg = env_lines + env_ts_len + 9;
		bg_len = env_bg_len - 11;
	}
	if (!osh_cfg.propagate_baggage || req->baggage_count)
		bg_len = 0;
	if (!ts && !bg_len && !rid)
		return 0;
	p = malloc((ts ? ts + 14 : 0) + (bg_len ? bg_len + 11 : 0) + (rid ? rid + 16 : 0));
	if (!p)
		return 0;
#define PUT(lit, v, l)                                     \
	do {                                               \
		memcpy(p + n, lit, sizeof(lit) - 1);       \
		n += sizeof(lit) - 1;                      \
		memcpy(p + n, v, l);                       \
		n += l;                                    \
		memcpy(p + n, "\r\n", 2);                  \
		n += 2;                                    \
	} while (0)
	if (ts)
		PUT("tracestate: ", t->tracestate, ts);
	if (bg_len)
		PUT("baggage: ", bg, bg_len);
	if (rid)
		PUT("x-request-id: ", t->request_id, rid);
#undef PUT
	free(ex->extra_heap);
	ex->extra_heap = p;
	return n;
}

/* Decide the trace context of a request whose head is complete, create its
 * span record, and plan its injection. @head_call_off: where the head
 * starts relative to this call's first byte (negative when earlier calls
 * carried its beginning); @call_pos: stream offset of this call. */
/* A tracker when @req calls an LLM API (llm.h): its host and path. */
static struct osh_llm *llm_begin(const struct osh_http_request *req)
{
	struct osh_str auth = req->host, path = req->target;

	/* Every LLM API call is a POST. */
	if (req->method.len != 4 || memcmp(req->method.p, "POST", 4) != 0)
		return NULL;
	if (path.len && path.p[0] != '/') {
		if (!osh_str_has_prefix_ci(path, "http://") &&
		    !osh_str_has_prefix_ci(path, "https://"))
			return NULL;
		osh_http_split_absolute(req->target, &auth, &path);
	}
	return osh_llm_start(auth, path);
}

static void decide(struct osh_conn *c, struct osh_exchange *ex, const struct osh_http_request *req,
		   int64_t head_call_off, uint64_t call_pos)
{
	struct osh_http_trace t;
	bool app_has_tp = req->traceparent_count > 0;
	bool sampled = osh_http_client_trace(&t, req->traceparent_count, req->traceparent);
	struct osh_span *rec = NULL;
	const char *extra = NULL;
	size_t extra_len = 0;

	memcpy(ex->trace_id, t.trace_id, 16);
	ex->flags = t.flags;
	ex->is_head = req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
	ex->is_connect = req->method.len == 7 && memcmp(req->method.p, "CONNECT", 7) == 0;
	ex->head_parsed = true;

	if (sampled && osh_cfg.exporter != OSH_EXPORTER_NONE)
		rec = osh_span_create();
	if (rec) {
		osh_http_client_span_init(rec, &t, ex->span_id, req->tracestate_count,
					  req->tracestate);
		rec->start_ns = ex->start_ns;
		set_request_attrs(rec, c, req);
		ex->rec = rec;
		ex->llm = llm_begin(req);
	}

	/* Injection: never when the program propagates by itself. */
	if (app_has_tp || (!osh_cfg.propagate_tracecontext && !osh_cfg.propagate_baggage))
		return;
	if (t.tctx) {
		extra_len = ctx_lines(ex, t.tctx, req);
		extra = ex->extra_heap;
	} else if (env_lines &&
		   (t.parent == &osh_env_ctx.parent || t.parent == osh_procspan_parent())) {
		bool ts = env_ts_len && req->tracestate_count == 0;
		bool bg = env_bg_len && req->baggage_count == 0;
		extra = env_lines + (ts ? 0 : env_ts_len);
		extra_len = (ts ? env_ts_len : 0) + (bg ? env_bg_len : 0);
	} else if (env_lines && env_bg_len && req->baggage_count == 0) {
		/* Baggage is independent of the trace context. */
		extra = env_lines + env_ts_len;
		extra_len = env_bg_len;
	}
	ex->tp_len = 0;
	if (osh_cfg.propagate_tracecontext) {
		memcpy(ex->tp_line, "traceparent: ", 13);
		osh_traceparent_format(ex->trace_id, ex->span_id, ex->flags, ex->tp_line + 13);
		memcpy(ex->tp_line + 13 + OSH_TRACEPARENT_LEN, "\r\n", 2);
		ex->tp_len = 13 + OSH_TRACEPARENT_LEN + 2;
	}
	if (!ex->tp_len && !extra_len)
		return;
	ex->extra = extra;
	ex->extra_len = (uint16_t)extra_len;
	ex->ins_len = (uint16_t)(ex->tp_len + extra_len);
	ex->ins_sent = 0;
	/* Right after the request line when that is still to be sent, else
	 * just before the empty line that ends the head. */
	if (head_call_off + (int64_t)req->line_len >= 0) {
		ex->ins_pos = (uint64_t)((int64_t)call_pos + head_call_off + (int64_t)req->line_len);
		ex->inject = true;
	} else if (head_call_off + (int64_t)req->blank_line_off >= 0) {
		ex->ins_pos =
			(uint64_t)((int64_t)call_pos + head_call_off + (int64_t)req->blank_line_off);
		ex->inject = true;
	} else {
		osh_diag_once(OSH_ONCE_INJECT_SKIPPED, OSH_LOG_DEBUG,
			      "a request head ended in a split the shim cannot inject into; "
			      "that request goes without traceparent");
	}
}

/* ---- the write-side parser -------------------------------------------- */

struct tx_run {
	struct osh_conn *c;
	bool replay;		/* re-walking bytes the dry run already saw */
	uint64_t call_pos;	/* stream offset of this call's first byte */
	uint64_t now;
	uint64_t next_seq;	/* replay: the next exchange to revisit */
	/* Head bytes from earlier calls at the start of the tx buffer (the
	 * saved parser's acc_len). A head that begins in this call gathers
	 * its bytes after them: the dry run must not overwrite what a replay
	 * from the saved state reads again. */
	uint32_t prot;
};

static struct osh_exchange *tx_new_exchange(struct tx_run *r, struct osh_tx_parse *t)
{
	struct osh_client *cl = &r->c->client;
	struct osh_exchange *ex;

	if (r->replay) {
		if (r->next_seq >= cl->ring_tail)
			return NULL;
		return ring_at(cl, r->next_seq++);
	}
	/* No per-request identity check (fstat): it cost more than the rest
	 * of the request path together. Fds closed behind our back are caught
	 * by the close, fclose, dup2/dup3, close_range and closefrom hooks and
	 * by connect() on a reused number; see docs/RELIABILITY.md. */
	(void)t;
	if (cl->ring_tail - cl->ring_head >= OSH_CLIENT_RING)
		return NULL;
	ex = ring_at(cl, cl->ring_tail);
	/* The slot's previous request is over: its lines are no longer sent. */
	free(ex->extra_heap);
	osh_llm_free(ex->llm);
	memset(ex, 0, offsetof(struct osh_exchange, tp_line));
	ex->seq = cl->ring_tail++;
	ex->start_ns = r->now;
	ex->head_pos = t->pos;
	osh_ids_span_id(ex->span_id);
	return ex;
}

/* The exchange whose request is being written (the newest). */
static struct osh_exchange *tx_current(struct tx_run *r)
{
	struct osh_client *cl = &r->c->client;
	uint64_t seq = r->replay ? r->next_seq : cl->ring_tail;

	return seq ? ring_at(cl, seq - 1) : NULL;
}

/* A complete, parsed request head: decide, set up body framing. */
static void tx_head_parsed(struct tx_run *r, struct osh_tx_parse *t,
			   const struct osh_http_request *req)
{
	struct osh_exchange *ex = tx_current(r);

	if (!ex) {
		t->state = TX_DEAD;
		return;
	}
	t->sniffed = true;
	/* seq < ring_head: the server answered (408, 400) before the head was
	 * complete and that ended the exchange; a record created now would
	 * never be finished or freed. */
	if (!ex->head_parsed && !r->replay && ex->seq >= r->c->client.ring_head)
		decide(r->c, ex, req, (int64_t)t->head_pos - (int64_t)r->call_pos, r->call_pos);
	if (ex->is_connect || req->upgrade) {
		t->state = TX_TUNNEL;
		return;
	}
	osh_http_body_start(&t->body, req->body, req->content_length);
	if (ex->llm)
		osh_llm_request_head(ex->llm, req, t->head_pos + req->head_len);
	t->state = req->body == OSH_BODY_NONE || t->body.done ? TX_IDLE : TX_BODY;
}

/* A complete head at @head (len @h), gathered across calls. */
static void tx_head_done(struct tx_run *r, struct osh_tx_parse *t, const char *head, size_t h)
{
	struct osh_http_request req;

	if (osh_http_parse_request(&req, head, h) < 0) {
		t->state = TX_DEAD;
		return;
	}
	tx_head_parsed(r, t, &req);
}

/* Walk @len program bytes at @p. */
static void tx_walk(struct tx_run *r, struct osh_tx_parse *t, const char *p, size_t len)
{
	struct osh_client *cl = &r->c->client;

	while (len > 0) {
		switch (t->state) {
		case TX_IDLE:
			if (!tx_new_exchange(r, t)) {
				t->state = TX_DEAD;
				break;
			}
			t->head_pos = t->pos;
			t->acc_len = 0;
			t->acc_scanned = 0;
			t->state = TX_HEAD;
			break;
		case TX_HEAD: {
			ssize_t h;
			uint32_t old = t->acc_len;
			/* Where this head's gathered bytes live in tx_acc (see
			 * struct tx_run, prot). */
			uint32_t base = t->head_pos >= r->call_pos ? r->prot : 0;
			size_t take;

			if (!t->sniffed) {
				/* The connection's first bytes decide whether
				 * it is HTTP at all: TLS, Redis, PostgreSQL...
				 * pass through from here on. */
				const char *s = p;
				size_t slen = len;
				int sn;

				if (old) {
					size_t add = len < 32 ? len : 32;
					if (!osh_buf_put(&cl->tx_acc, base + old, p, add)) {
						t->state = TX_DEAD;
						break;
					}
					/* After the append: it may have moved. */
					s = cl->tx_acc.p + base;
					slen = old + add;
				}
				sn = osh_http_sniff_request(s, slen);
				if (sn == 0) {
					t->state = TX_DEAD;
					break;
				}
			}
			if (!old) {
				/* The whole head in this call (the usual case):
				 * one parse finds its end too. */
				struct osh_http_request req;
				int rc = osh_http_parse_request(&req, p, len);

				if (rc > 0) {
					tx_head_parsed(r, t, &req);
					t->pos += (uint64_t)rc;
					p += rc;
					len -= (size_t)rc;
					break;
				}
				if (rc == OSH_HTTP_INVALID) {
					t->state = TX_DEAD;
					break;
				}
			}
			/* Split head: gather it in the tx buffer. */
			take = len;
			if (old + take > OSH_HTTP_MAX_HEAD)
				take = OSH_HTTP_MAX_HEAD - old;
			if (!take || !osh_buf_put(&cl->tx_acc, base + old, p, take)) {
				t->state = TX_DEAD;
				break;
			}
			t->acc_len = old + (uint32_t)take;
			h = osh_http_head_end(cl->tx_acc.p + base, t->acc_len, t->acc_scanned);
			if (h > 0) {
				size_t used = (size_t)h - old;
				tx_head_done(r, t, cl->tx_acc.p + base, (size_t)h);
				t->acc_len = 0;
				t->acc_scanned = 0;
				t->pos += used;
				p += used;
				len -= used;
				break;
			}
			if (h == OSH_HTTP_INVALID || t->acc_len >= OSH_HTTP_MAX_HEAD) {
				osh_diag_once(OSH_ONCE_HEAD_TOO_LARGE, OSH_LOG_DEBUG,
					      "request head over %d bytes or malformed; "
					      "connection passes through",
					      OSH_HTTP_MAX_HEAD);
				t->state = TX_DEAD;
				break;
			}
			t->acc_scanned = t->acc_len;
			t->pos += take;
			p += take;
			len -= take;
			break;
		}
		case TX_BODY: {
			ssize_t n = osh_http_body_feed(&t->body, p, len);
			struct osh_exchange *bx;

			if (n < 0) {
				t->state = TX_DEAD;
				break;
			}
			bx = tx_current(r);
			if (bx && bx->llm)
				osh_llm_request_body(bx->llm, t->pos, p, (size_t)n);
			t->pos += (uint64_t)n;
			p += n;
			len -= (size_t)n;
			if (t->body.done) {
				struct osh_exchange *ex = tx_current(r);
				if (ex && t->body.kind == OSH_BODY_CHUNKED) {
					ex->req_chunked_size = t->body.payload;
					ex->req_chunked_done = true;
				}
				t->state = TX_IDLE;
			}
			break;
		}
		case TX_TUNNEL:
		case TX_DEAD:
		default:
			t->pos += len;
			len = 0;
			break;
		}
	}
}

static void tx_walk_iov(struct tx_run *r, struct osh_tx_parse *t, const struct iovec *iov,
			int iovcnt, size_t limit)
{
	for (int i = 0; i < iovcnt && limit > 0; i++) {
		size_t n = iov[i].iov_len < limit ? iov[i].iov_len : limit;
		tx_walk(r, t, iov[i].iov_base, n);
		limit -= n;
	}
}

/* ---- connection end of life -------------------------------------------- */

static bool tx_finished(const struct osh_client *cl)
{
	return cl->tx.state == TX_DEAD || cl->tx.state == TX_TUNNEL;
}

/* Once the write side stops interpreting the stream (not HTTP, a head too
 * large or malformed), a request whose head never parsed is no exchange:
 * forget it, or it would keep the connection tracked (and every later
 * write on the slow path) until a response or close that may never come. */
static void drop_unparsed(struct osh_client *cl)
{
	if (!tx_finished(cl))
		return;
	while (cl->ring_tail > cl->ring_head && !ring_at(cl, cl->ring_tail - 1)->head_parsed) {
		struct osh_exchange *ex = ring_at(cl, --cl->ring_tail);

		osh_span_destroy(ex->rec);
		ex->rec = NULL;
		osh_llm_free(ex->llm);
		ex->llm = NULL;
	}
}

/* True when nothing is left to observe and the slot should be released. */
static bool should_release(const struct osh_client *cl)
{
	if (cl->rx_state == RX_DEAD)
		return true;
	return tx_finished(cl) && cl->ring_head == cl->ring_tail;
}

void osh_client_abandon(struct osh_client *cl, enum osh_end_reason why, int err)
{
	while (cl->ring_head < cl->ring_tail) {
		struct osh_exchange *ex = ring_at(cl, cl->ring_head);
		const char *etype = NULL;

		if (!ex->head_parsed) {
			/* Never became a request we could name: drop it. */
			osh_span_destroy(ex->rec);
			ex->rec = NULL;
			osh_llm_free(ex->llm);
			ex->llm = NULL;
			cl->ring_head++;
			continue;
		}
		switch (why) {
		case OSH_END_CLOSED:
			/* The program stopped: an error only when nothing
			 * came back (it gave up waiting). */
			if (!ex->got_response)
				etype = osh_http_error_type(ex->tx_errno);
			break;
		case OSH_END_EOF:
			if (!ex->got_response)
				etype = osh_http_error_type(ex->tx_errno);
			else if (cl->rx_state == RX_BODY && cl->rx_body.kind != OSH_BODY_UNTIL_CLOSE)
				etype = "response_incomplete";
			break;
		case OSH_END_ERROR:
			etype = osh_http_error_type(err ? err : ex->tx_errno);
			break;
		case OSH_END_DESYNC:
		default:
			break;
		}
		finish(cl, ex, etype);
	}
}

void osh_client_reset(struct osh_client *cl)
{
	for (uint64_t s = cl->ring_head; s < cl->ring_tail; s++) {
		struct osh_exchange *ex = ring_at(cl, s);
		osh_span_destroy(ex->rec);
		ex->rec = NULL;
	}
	for (int i = 0; i < OSH_CLIENT_RING; i++) {
		free(cl->ring[i].extra_heap);
		osh_llm_free(cl->ring[i].llm);
	}
	osh_buf_free(&cl->tx_acc);
	osh_buf_free(&cl->rx_acc);
	memset(cl, 0, sizeof(*cl));
}

/* ---- write path --------------------------------------------------------- */

/* Append the not-yet-sent part of @ex's injected lines to the plan. */
static bool plan_add_injection(struct osh_tx_plan *plan, struct osh_exchange *ex, size_t at)
{
	uint16_t from = ex->ins_sent;
	int k = plan->n_ins;

	if (k >= OSH_TX_MAX_INS)
		return false;
	plan->ins[k].seq = ex->seq;
	plan->ins[k].at = at;
	plan->ins[k].from = from;
	plan->ins[k].len = (uint16_t)(ex->ins_len - from);
	plan->n_ins = k + 1;
	return true;
}

/* Build plan->iov: the program's bytes with the injections spliced in. */
static bool plan_build_iov(struct osh_client *cl, struct osh_tx_plan *plan,
			   const struct iovec *iov, int iovcnt)
{
	int out = 0, k = 0;
	size_t off = 0;

#define PUSH(base, n)                                                                  \
	do {                                                                           \
		if ((n) == 0)                                                          \
			break;                                                         \
		if (out >= OSH_TX_MAX_IOV)                                             \
			return false;                                                  \
		plan->iov[out].iov_base = (void *)(base);                              \
		plan->iov[out].iov_len = (n);                                          \
		out++;                                                                 \
	} while (0)

	for (int i = 0; i <= iovcnt; i++) {
		const char *base = i < iovcnt ? iov[i].iov_base : NULL;
		size_t len = i < iovcnt ? iov[i].iov_len : 0;
		size_t done = 0;

		/* Injections that fall inside (or at the start of) this piece. */
		while (k < plan->n_ins && plan->ins[k].at <= off + len &&
		       (plan->ins[k].at < off + len || i == iovcnt)) {
			struct osh_exchange *ex = ring_at(cl, plan->ins[k].seq);
			size_t cut = plan->ins[k].at - off;
			size_t from = plan->ins[k].from;

			PUSH(base + done, cut - done);
			done = cut;
			if (from < ex->tp_len)
				PUSH(ex->tp_line + from, (size_t)ex->tp_len - from);
			if (ex->extra_len) {
				size_t ef = from > ex->tp_len ? from - ex->tp_len : 0;
				PUSH(ex->extra + ef, (size_t)ex->extra_len - ef);
			}
			k++;
		}
		if (i < iovcnt)
			PUSH(base + done, len - done);
		off += len;
	}
#undef PUSH
	plan->iovcnt = out;
	return true;
}

void osh_client_tx_prepare(struct osh_conn *c, int fd, const struct iovec *iov, int iovcnt,
			   struct osh_tx_plan *plan)
{
	struct osh_client *cl = &c->client;
	struct tx_run r = { .c = c };
	size_t total = 0;
	bool release = false;

	(void)fd;
	plan->active = false;
	plan->changed = false;
	plan->n_ins = 0;
	for (int i = 0; i < iovcnt; i++) {
		/* A NULL buffer is the program's EFAULT from the kernel; the
		 * parser must not be the one to touch it. */
		if (!iov || (!iov[i].iov_base && iov[i].iov_len))
			return;
		total += iov[i].iov_len;
	}
	if (total == 0 || !osh_conn_lock(c))
		return;
	if (atomic_load(&c->role) != OSH_ROLE_CLIENT || tx_finished(cl)) {
		/* (Another role's state is not ours to judge.) */
		release = atomic_load(&c->role) == OSH_ROLE_CLIENT && should_release(cl);
		goto out;
	}
	if (cl->tx_busy) {
		/* Two threads writing one socket at once: their bytes
		 * interleave unpredictably, so stop interpreting them. The
		 * other writer's commit applies this (it would overwrite a
		 * state change made here). */
		cl->tx_abandoned = true;
		goto out;
	}
	cl->tx_busy = true;
	plan->active = true;
	plan->total = total;
	plan->saved = cl->tx;
	plan->after = cl->tx;
	plan->start_pos = cl->tx.pos;
	plan->tail_before = cl->ring_tail;
	r.call_pos = cl->tx.pos;
	r.prot = cl->tx.acc_len;
	r.now = osh_clock_realtime_ns();
	tx_walk_iov(&r, &plan->after, iov, iovcnt, total);

	/* Collect injections that fall inside this call, in stream order. */
	for (uint64_t s = cl->ring_head; s < cl->ring_tail; s++) {
		struct osh_exchange *ex = ring_at(cl, s);

		if (!ex->inject || ex->ins_pos < plan->start_pos ||
		    ex->ins_pos >= plan->start_pos + total)
			continue;
		if (!plan_add_injection(plan, ex, (size_t)(ex->ins_pos - plan->start_pos)))
			break;
	}
	if (plan->n_ins) {
		if (iovcnt > OSH_TX_MAX_IOV - 3 * OSH_TX_MAX_INS ||
		    !plan_build_iov(cl, plan, iov, iovcnt)) {
			/* Too many pieces to splice: send unchanged. */
			for (int k = 0; k < plan->n_ins; k++)
				ring_at(cl, plan->ins[k].seq)->inject = false;
			plan->n_ins = 0;
		} else {
			plan->changed = true;
			plan->real_total = total;
			for (int k = 0; k < plan->n_ins; k++)
				plan->real_total += plan->ins[k].len;
		}
	}
out:
	osh_conn_unlock(c);
	if (release)
		osh_conn_release(c, OSH_END_DESYNC);
}

ssize_t osh_client_tx_commit(struct osh_conn *c, struct osh_tx_plan *plan, const struct iovec *iov,
			     int iovcnt, ssize_t real_ret, int err)
{
	struct osh_client *cl = &c->client;
	size_t sent_app = 0;	/* program bytes the real call accepted */
	size_t left = real_ret > 0 ? (size_t)real_ret : 0;
	size_t prev = 0;
	bool all = true;
	bool release;

	if (!plan->active)
		return real_ret;
	if (!osh_conn_lock(c)) {
		/* Cannot happen with tx_busy held by us unless the lock is
		 * stuck; the stream is now unknown. */
		return real_ret < 0 ? real_ret : (ssize_t)(left > plan->total ? plan->total : left);
	}
	if (atomic_load(&c->role) != OSH_ROLE_CLIENT) {
		/* The fd was closed under the call (and its slot maybe reused
		 * by another kind of connection): the state is not ours. */
		osh_conn_unlock(c);
		return real_ret < 0 ? real_ret : (ssize_t)(left > plan->total ? plan->total : left);
	}

	/* Map the real count back onto the program's bytes, walking the
	 * injected pieces in stream order. */
	for (int k = 0; k < plan->n_ins; k++) {
		struct osh_exchange *ex = ring_at(cl, plan->ins[k].seq);
		size_t gap = plan->ins[k].at - prev;

		if (left <= gap) {
			sent_app = prev + left;
			left = 0;
			all = false;
			break;
		}
		left -= gap;
		prev = plan->ins[k].at;
		if (left < plan->ins[k].len) {
			ex->ins_sent = (uint16_t)(ex->ins_sent + left);
			sent_app = prev;
			left = 0;
			all = false;
			break;
		}
		left -= plan->ins[k].len;
		ex->ins_sent = ex->ins_len;
		ex->inject = false;
	}
	if (all)
		sent_app = prev + (left < plan->total - prev ? left : plan->total - prev);

	if (sent_app == plan->total) {
		cl->tx = plan->after;
	} else {
		/* Partial (or failed) call: advance over exactly what went
		 * out, revisiting the exchanges the dry run created, and drop
		 * those whose first byte is still with the program. */
		struct tx_run r = { .c = c, .replay = true, .call_pos = plan->start_pos,
				    .next_seq = plan->tail_before, .prot = plan->saved.acc_len };
		struct osh_tx_parse t = plan->saved;
		uint64_t keep;

		tx_walk_iov(&r, &t, iov, iovcnt, sent_app);
		cl->tx = t;
		keep = r.next_seq > cl->ring_head ? r.next_seq : cl->ring_head;
		while (cl->ring_tail > keep) {
			struct osh_exchange *ex = ring_at(cl, --cl->ring_tail);
			osh_span_destroy(ex->rec);
			ex->rec = NULL;
			osh_llm_free(ex->llm);
			ex->llm = NULL;
		}
	}
	/* A head begun in this call and still open was gathered after the
	 * earlier call's bytes (struct tx_run, prot), which are done with now:
	 * move it to the start, where the next call looks for it. */
	if (plan->saved.acc_len && cl->tx.state == TX_HEAD && cl->tx.acc_len &&
	    cl->tx.head_pos >= plan->start_pos)
		memmove(cl->tx_acc.p, cl->tx_acc.p + plan->saved.acc_len, cl->tx.acc_len);
	if (cl->tx_abandoned)
		cl->tx.state = TX_DEAD;
	drop_unparsed(cl);
	if (real_ret < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
		/* The connection broke under this request. */
		for (uint64_t s = cl->ring_head; s < cl->ring_tail; s++)
			ring_at(cl, s)->tx_errno = err;
	}
	cl->tx_busy = false;
	release = should_release(cl);
	osh_conn_unlock(c);
	if (release)
		osh_conn_release(c, OSH_END_DESYNC);
	if (real_ret < 0)
		return real_ret;
	return (ssize_t)sent_app;
}

void osh_client_tx_opaque(struct osh_conn *c, size_t n)
{
	struct osh_client *cl = &c->client;
	struct osh_http_body *b = &cl->tx.body;
	bool release;

	if (!n || !osh_conn_lock(c))
		return;
	if (atomic_load(&c->role) != OSH_ROLE_CLIENT) {
		osh_conn_unlock(c);
		return;
	}
	if (cl->tx_busy) {
		/* Another thread is between prepare and commit; its commit
		 * applies this (see osh_client_tx_prepare). */
		cl->tx_abandoned = true;
	} else if (cl->tx.state == TX_BODY && osh_http_body_skip(b, n)) {
		/* Payload of a known-length body or inside one chunk: only the
		 * count matters. Any injection for this request was in its
		 * head, all sent already. */
		cl->tx.pos += n;
		if (b->done)
			cl->tx.state = TX_IDLE;
	} else {
		cl->tx.pos += n;
		if (!tx_finished(cl))
			cl->tx.state = TX_DEAD;
	}
	drop_unparsed(cl);
	release = should_release(cl);
	osh_conn_unlock(c);
	if (release)
		osh_conn_release(c, OSH_END_DESYNC);
}

/* ---- read path ---------------------------------------------------------- */

/* A complete, parsed response head. */
static void rx_head_parsed(struct osh_client *cl, const struct osh_http_response *resp)
{
	struct osh_exchange *ex;
	enum osh_http_body_kind kind;

	if (cl->ring_head == cl->ring_tail) {
		cl->rx_state = RX_DEAD;
		return;
	}
	ex = ring_at(cl, cl->ring_head);
	if (resp->status < 200 && resp->status != 101)
		return; /* interim (100 Continue, 103 Early Hints): the final one follows */
	kind = osh_http_response_body(resp, ex->is_head ? "HEAD" : ex->is_connect ? "CONNECT" : "GET",
				      ex->is_head ? 4 : ex->is_connect ? 7 : 3);
	ex->got_response = true;
	cl->rx_status = resp->status;
	cl->rx_minor = resp->minor_version;
	osh_http_body_start(&cl->rx_body, kind, resp->content_length);
	if (ex->llm)
		osh_llm_response_head(ex->llm, resp, kind, ex->start_ns);
	if (kind == OSH_BODY_TUNNEL) {
		finish(cl, ex, NULL);
		cl->rx_state = RX_DEAD;
		return;
	}
	if (kind == OSH_BODY_NONE || cl->rx_body.done) {
		finish(cl, ex, NULL);
		return;
	}
	cl->rx_state = RX_BODY;
}

/* A complete head at @head (len @h), gathered across reads. */
static void rx_head_done(struct osh_client *cl, const char *head, size_t h)
{
	struct osh_http_response resp;

	if (osh_http_parse_response(&resp, head, h) < 0) {
		cl->rx_state = RX_DEAD;
		return;
	}
	rx_head_parsed(cl, &resp);
}

static void rx_walk(struct osh_client *cl, const char *p, size_t len)
{
	while (len > 0 && cl->rx_state != RX_DEAD) {
		if (cl->rx_state == RX_BODY) {
			struct osh_exchange *bx = ring_at(cl, cl->ring_head);
			/* An LLM call's tracker walks the framing as it
			 * decodes: once, for both. */
			ssize_t n = bx->llm ? osh_llm_response_walk(bx->llm, &cl->rx_body, p, len,
								    osh_clock_realtime_ns())
					    : OSH_LLM_NOT_WALKED;

			if (n == OSH_LLM_NOT_WALKED)
				n = osh_http_body_feed(&cl->rx_body, p, len);
			if (n < 0) {
				cl->rx_state = RX_DEAD;
				return;
			}
			p += n;
			len -= (size_t)n;
			if (cl->rx_body.done) {
				finish(cl, ring_at(cl, cl->ring_head), NULL);
				cl->rx_state = RX_HEAD;
			}
			continue;
		}

		/* RX_HEAD */
		uint32_t old = cl->rx_acc.len;
		ssize_t h;
		size_t take;

		if (!cl->rx_sniffed) {
			const char *s = old ? cl->rx_acc.p : p;
			size_t slen = old ? old : len;
			int sn;

			if (old) {
				size_t add = len < 16 ? len : 16;
				if (!osh_buf_put(&cl->rx_acc, old, p, add)) {
					cl->rx_state = RX_DEAD;
					return;
				}
				slen = old + add;
			}
			sn = osh_http_sniff_response(s, slen);
			if (sn == 0) {
				cl->rx_state = RX_DEAD;
				return;
			}
			if (sn > 0)
				cl->rx_sniffed = true;
		}
		if (!old) {
			/* The whole head in this read: one parse finds its
			 * end too. */
			struct osh_http_response resp;
			int rc = osh_http_parse_response(&resp, p, len);

			if (rc > 0) {
				rx_head_parsed(cl, &resp);
				p += rc;
				len -= (size_t)rc;
				continue;
			}
			if (rc == OSH_HTTP_INVALID) {
				cl->rx_state = RX_DEAD;
				return;
			}
		}
		take = len;
		if (old + take > OSH_HTTP_MAX_HEAD)
			take = OSH_HTTP_MAX_HEAD - old;
		if (!take || !osh_buf_put(&cl->rx_acc, old, p, take)) {
			cl->rx_state = RX_DEAD;
			return;
		}
		cl->rx_acc.len = old + (uint32_t)take;
		h = osh_http_head_end(cl->rx_acc.p, cl->rx_acc.len, cl->rx_scanned);
		if (h > 0) {
			size_t used = (size_t)h - old;
			rx_head_done(cl, cl->rx_acc.p, (size_t)h);
			cl->rx_acc.len = 0;
			cl->rx_scanned = 0;
			p += used;
			len -= used;
			continue;
		}
		if (h == OSH_HTTP_INVALID || cl->rx_acc.len >= OSH_HTTP_MAX_HEAD) {
			cl->rx_state = RX_DEAD;
			return;
		}
		cl->rx_scanned = cl->rx_acc.len;
		p += take;
		len -= take;
	}
}

void osh_client_rx(struct osh_conn *c, const struct iovec *iov, int iovcnt, ssize_t ret, int err)
{
	struct osh_client *cl = &c->client;
	bool release;

	/* Nothing was read and the connection is fine: a retry, or a bad
	 * buffer that is the program's own business. */
	if (ret < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == EFAULT))
		return;
	if (!osh_conn_lock(c))
		return;
	if (atomic_load(&c->role) != OSH_ROLE_CLIENT) {
		osh_conn_unlock(c);
		return;
	}
	if (ret > 0) {
		size_t left = (size_t)ret;
		for (int i = 0; i < iovcnt && left > 0 && cl->rx_state != RX_DEAD; i++) {
			size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
			rx_walk(cl, iov[i].iov_base, n);
			left -= n;
		}
	} else if (ret == 0) {
		if (cl->rx_state == RX_BODY && cl->rx_body.kind == OSH_BODY_UNTIL_CLOSE &&
		    cl->ring_head < cl->ring_tail) {
			finish(cl, ring_at(cl, cl->ring_head), NULL);
			cl->rx_state = RX_HEAD;
		}
		osh_client_abandon(cl, OSH_END_EOF, 0);
		cl->rx_state = RX_DEAD;
	} else {
		osh_client_abandon(cl, OSH_END_ERROR, err);
		cl->rx_state = RX_DEAD;
	}
	release = should_release(cl);
	osh_conn_unlock(c);
	if (release)
		osh_conn_release(c, OSH_END_DESYNC);
}
