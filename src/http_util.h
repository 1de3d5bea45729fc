/* Helpers the client and server engines share: head buffers, a bounded
 * string builder, the small parsers behind span attributes (method
 * normalisation, Host/authority splitting, UTF-8-safe cuts, error.type
 * names), and the trace decision of an outgoing request (also used by
 * the libcurl level). Pure or caller-owned state; any thread; no locks,
 * no syscalls. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http.h"
#include "http_client.h"	/* struct osh_buf */
#include "propagation.h"	/* struct osh_trace_ctx */

/* Copy @len bytes to @at in @b, growing it (capped at OSH_HTTP_MAX_HEAD);
 * b->len is the caller's. False when over the cap or out of memory (the
 * connection then stops being traced). */
bool osh_buf_put(struct osh_buf *b, uint32_t at, const char *p, size_t len);
void osh_buf_free(struct osh_buf *b);

/* A bounded string builder: no printf on the per-request path. Writes
 * beyond @cap are cut. */
struct osh_sb {
	char *p;
	size_t len;
	size_t cap;
};

static inline void osh_sb_put(struct osh_sb *b, const char *s, size_t n)
{
	if (n > b->cap - b->len)
		n = b->cap - b->len;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static inline void osh_sb_uint(struct osh_sb *b, unsigned v)
{
	char t[12];
	int i = (int)sizeof(t);

	do {
		t[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	osh_sb_put(b, t + i, sizeof(t) - (size_t)i);
}

static inline void osh_sb_lit(struct osh_sb *b, const char *s)
{
	osh_sb_put(b, s, __builtin_strlen(s));
}

/* The semconv method list (case-sensitive): the static name, or NULL for
 * any other method (reported as _OTHER). */
const char *osh_http_known_method(struct osh_str m);

/* http.request.method (and http.request.method_original for a method off
 * the list) on @rec; returns the known method's name, or NULL. */
struct osh_span;
const char *osh_http_set_method(struct osh_span *rec, struct osh_str method);

/* Split "host[:port]" or "[v6]:port" (a Host header or URL authority),
 * trimmed; *ret_port is 0 without a port. False when malformed. */
bool osh_http_split_authority(struct osh_str a, struct osh_str *ret_host, int *ret_port);

/* An absolute-form target ("scheme://[userinfo@]host[:port]/path?query",
 * a request meant for a proxy): the authority without its userinfo in
 * *ret_auth, the rest (path, query, fragment) in *ret_rest. @target must
 * contain "//". */
void osh_http_split_absolute(struct osh_str target, struct osh_str *ret_auth,
			     struct osh_str *ret_rest);

/* @s starts with the lowercase literal @lit, ignoring ASCII case. */
bool osh_str_has_prefix_ci(struct osh_str s, const char *lit);

/* The length of @s cut to at most @max bytes, before a UTF-8 character
 * rather than inside one. */
size_t osh_utf8_cut(const char *s, size_t len, size_t max);

/* error.type for a connection that failed with @err (0: it closed before
 * the response). */
const char *osh_http_error_type(int err);

/* Where the path starts in the URL @url (@n bytes): the first '/' after
 * "scheme://". False when there is no "://" or no path after it. */
bool osh_url_path_at(const char *url, size_t n, size_t *ret_at);

/* url.full = @red (a redacted URL, @n bytes) and, when @have_path, url.path
 * = its path from @path_at to the query or fragment. url.path shares
 * url.full's bytes in the span arena when url.full went in unchanged; when
 * storing cut it or replaced invalid UTF-8, offsets into it no longer hold,
 * and the path is stored on its own. Nothing when @n is 0. */
void osh_http_set_url_full(struct osh_span *rec, const char *red, size_t n, bool have_path,
			   size_t path_at);

/* ---- the trace of an outgoing request ------------------------------------ */

/* What an outgoing request is traced under. The client engine and the
 * libcurl level (curl_trace.c) must decide exactly alike: both go through
 * osh_http_client_trace and osh_http_client_span_init. Not to be copied
 * (parent may point at app). */
struct osh_context;
struct osh_http_trace {
	uint8_t trace_id[16];
	uint8_t flags;				/* W3C flags: sampled, random */
	struct osh_trace_ctx app;		/* the program's own traceparent, when parsed */
	const struct osh_trace_ctx *parent;	/* &app, the thread context's span, the
						 * process span or the environment's;
						 * NULL: a root */
	const struct osh_context *tctx;		/* the thread's context when it is the
						 * parent, else NULL */
};

/* Decide @t for a request carrying @tp_count traceparent headers of its
 * own (@tp: the one that counts): exactly one that parses is the parent,
 * several or one that does not parse make a root, none means
 * osh_client_current_parent(). The trace id is the parent's or a new one.
 * Returns the sampler's decision (also in t->flags). App thread; no
 * allocation, no lock. */
bool osh_http_client_trace(struct osh_http_trace *t, unsigned tp_count, struct osh_str tp);

/* A new CLIENT record for the request decided in @t, with span id
 * @span_id: ids, flags, and the parent with its tracestate: the program's
 * own when its traceparent is the parent (@ts_count tracestate headers,
 * @ts the one that counts: kept when it is the only one and valid), else
 * the thread context's, else the environment's. */
void osh_http_client_span_init(struct osh_span *rec, const struct osh_http_trace *t,
			       const uint8_t span_id[8], unsigned ts_count, struct osh_str ts);
