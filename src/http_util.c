/* Helpers shared by the client and server engines (see http_util.h). */
#include "buildconf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "context.h"
#include "diag.h"
#include "http_util.h"
#include "ids.h"
#include "redact.h"
#include "sampler.h"
#include "span.h"

bool osh_buf_put(struct osh_buf *b, uint32_t at, const char *p, size_t len)
{
	size_t need = (size_t)at + len;

	if (need > OSH_HTTP_MAX_HEAD)
		return false;
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *np;

		while (cap < need)
			cap *= 2;
		if (cap > OSH_HTTP_MAX_HEAD)
			cap = OSH_HTTP_MAX_HEAD;
		np = realloc(b->p, cap);
		if (!np) {
			osh_diag_once(OSH_ONCE_ALLOC, OSH_LOG_WARN,
				      "out of memory for a split HTTP head; connection not traced");
			return false;
		}
		b->p = np;
		b->cap = (uint32_t)cap;
	}
	memcpy(b->p + at, p, len);
	return true;
}

void osh_buf_free(struct osh_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

const char *osh_http_known_method(struct osh_str m)
{
	static const char *const by_len[8][3] = {
		[3] = { "GET", "PUT" },
		[4] = { "HEAD", "POST" },
		[5] = { "TRACE", "PATCH", "QUERY" },
		[6] = { "DELETE" },
		[7] = { "CONNECT", "OPTIONS" },
	};

	if (m.len >= 8)
		return NULL;
	for (int i = 0; i < 3 && by_len[m.len][i]; i++)
		if (memcmp(by_len[m.len][i], m.p, m.len) == 0)
			return by_len[m.len][i];
	return NULL;
}

const char *osh_http_set_method(struct osh_span *rec, struct osh_str m)
{
	const char *known = osh_http_known_method(m);

	/* Normalised per semconv: methods off the list are _OTHER. */
	if (known) {
		osh_span_set_cstr(rec, "http.request.method", known);
	} else {
		osh_span_set_cstr(rec, "http.request.method", "_OTHER");
		osh_span_set_str(rec, "http.request.method_original", m.p, m.len);
	}
	return known;
}

bool osh_http_split_authority(struct osh_str a, struct osh_str *ret_host, int *ret_port)
{
	const char *p = a.p, *end = a.p + a.len;
	const char *colon = NULL;
	struct osh_str host;
	int port = 0;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (p == end)
		return false;
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (!close)
			return false;
		host.p = p + 1;
		host.len = (size_t)(close - p - 1);
		if (close + 1 < end) {
			if (close[1] != ':')
				return false;
			colon = close + 1;
		}
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		host.p = p;
		host.len = (size_t)((colon ? colon : end) - p);
	}
	if (colon) {
		if (colon + 1 == end)
			return false;
		for (const char *q = colon + 1; q < end; q++) {
			if (*q < '0' || *q > '9')
				return false;
			port = port * 10 + (*q - '0');
			if (port > 65535)
				return false;
		}
	}
	if (!host.len)
		return false;
	*ret_host = host;
	*ret_port = port;
	return true;
}

void osh_http_split_absolute(struct osh_str target, struct osh_str *ret_auth,
			     struct osh_str *ret_rest)
{
	const char *auth = memchr(target.p, '/', target.len) + 2;
	const char *tend = target.p + target.len;
	const char *aend = auth;
	const char *at;

	while (aend < tend && *aend != '/' && *aend != '?' && *aend != '#')
		aend++;
	at = memchr(auth, '@', (size_t)(aend - auth));
	if (at)
		auth = at + 1;
	*ret_auth = (struct osh_str){ auth, (size_t)(aend - auth) };
	*ret_rest = (struct osh_str){ aend, (size_t)(tend - aend) };
}

bool osh_str_has_prefix_ci(struct osh_str s, const char *lit)
{
	size_t n = strlen(lit);

	if (s.len < n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s.p[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c + 32);
		if (c != lit[i])
			return false;
	}
	return true;
}

size_t osh_utf8_cut(const char *s, size_t len, size_t max)
{
	size_t n = len < max ? len : max;

	while (n < len && n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

const char *osh_http_error_type(int err)
{
	switch (err) {
	case ECONNRESET:
		return "connection_reset";
	case EPIPE:
		return "broken_pipe";
	case ETIMEDOUT:
		return "timeout";
	case ECONNREFUSED:
		return "connection_refused";
	case EHOSTUNREACH:
	case ENETUNREACH:
		return "unreachable";
	case 0:
		return "no_response";
	default:
		return "_OTHER";
	}
}

bool osh_url_path_at(const char *url, size_t n, size_t *ret_at)
{
	for (size_t i = 0; i + 2 < n; i++) {
		if (url[i] == ':' && url[i + 1] == '/' && url[i + 2] == '/') {
			const char *ps = memchr(url + i + 3, '/', n - i - 3);

			if (!ps)
				return false;
			*ret_at = (size_t)(ps - url);
			return true;
		}
	}
	return false;
}

void osh_http_set_url_full(struct osh_span *rec, const char *red, size_t n, bool have_path,
			   size_t path_at)
{
	static const char url_full[] = "url.full";
	const struct osh_attr *full;
	size_t plen;

	if (!n)
		return;
	osh_span_set_str(rec, url_full, red, n);
	if (!have_path || path_at > n)
		return;
	full = rec->n_attrs ? &rec->attrs[rec->n_attrs - 1] : NULL;
	plen = osh_url_path_len(red + path_at, n - path_at);
	if (full && full->key == url_full && full->v.s.len == n &&
	    memcmp(osh_span_str(rec, full->v.s), red, n) == 0)
		osh_span_set_sref(rec, "url.path",
				  (struct osh_sref){ (uint16_t)(full->v.s.off + path_at),
						     (uint16_t)plen });
	else
		osh_span_set_str(rec, "url.path", red + path_at, plen);
}

bool osh_http_client_trace(struct osh_http_trace *t, unsigned tp_count, struct osh_str tp)
{
	const struct osh_trace_ctx *parent = NULL;
	bool sampled;

	t->tctx = NULL;
	if (tp_count) {
		if (tp_count == 1 && osh_traceparent_parse(tp.p, tp.len, &t->app))
			parent = &t->app;
	} else {
		parent = osh_client_current_parent();
		t->tctx = osh_context_current();
		if (t->tctx && parent != &t->tctx->span)
			t->tctx = NULL;
	}
	t->parent = parent;
	if (parent)
		memcpy(t->trace_id, parent->trace_id, 16);
	else
		osh_ids_trace_id(t->trace_id);
	sampled = osh_sampler_decide(osh_cfg.sampler, osh_cfg.sampler_ratio, parent, t->trace_id);
	t->flags = (uint8_t)((sampled ? OSH_FLAG_SAMPLED : 0) |
			     (parent ? (parent->flags & OSH_FLAG_RANDOM) : 0));
	return sampled;
}

void osh_http_client_span_init(struct osh_span *rec, const struct osh_http_trace *t,
			       const uint8_t span_id[8], unsigned ts_count, struct osh_str ts)
{
	const struct osh_trace_ctx *parent = t->parent;

	memcpy(rec->trace_id, t->trace_id, 16);
	memcpy(rec->span_id, span_id, 8);
	rec->trace_flags = t->flags;
	rec->kind = OSH_SPAN_CLIENT;
	if (!parent)
		return;
	rec->has_parent = true;
	rec->parent_remote = parent->remote;
	memcpy(rec->parent_span_id, parent->span_id, 8);
	if (parent == &t->app) {
		if (ts_count == 1 && osh_tracestate_valid(ts.p, ts.len))
			osh_span_set_trace_state(rec, ts.p, ts.len);
	} else if (t->tctx) {
		if (t->tctx->tracestate_len)
			osh_span_set_trace_state(rec, t->tctx->tracestate, t->tctx->tracestate_len);
	} else if (osh_env_ctx.tracestate_len) {
		osh_span_set_trace_state(rec, osh_env_ctx.tracestate, osh_env_ctx.tracestate_len);
	}
}
