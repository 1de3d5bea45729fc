/* LLM call tracking for one HTTP exchange: see llm.h.
 *
 * The pieces: llm_providers (is this an LLM API, which flavour, what it
 * costs), llm_body (framing, decompression, bounded accumulation, server-
 * sent events), llm_extract (what the JSON says). This file only routes the
 * exchange's bytes between them and writes the result on the span.
 */
#define _GNU_SOURCE

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "http_util.h"
#include "llm.h"
#include "llm_body.h"
#include "llm_extract.h"
#include "llm_providers.h"
#include "span.h"

/* A provider request id longer than this is not one. */
#define REQUEST_ID_MAX 128

struct osh_llm {
	struct osh_llm_route route;
	struct osh_llm_call call;

	struct osh_llm_body req;
	bool req_started;	/* request body framing known */
	uint64_t req_seen;	/* stream offset up to which request bytes were fed */

	struct osh_llm_body resp;
	bool resp_started;
	bool resp_is_stream;	/* server-sent events or NDJSON */
	int status;
	uint64_t start_ns;	/* request start (CLOCK_REALTIME) */
	uint64_t first_token_ns; /* first generated output read, 0 if none */
	size_t request_id_len;
	char request_id[REQUEST_ID_MAX];
	uint8_t retry_after_len;
	char retry_after[40];	/* a rate limit's Retry-After (seconds or a date) */
};

/* @path without its query. */
static struct osh_str path_only(struct osh_str path)
{
	const char *q = path.len ? memchr(path.p, '?', path.len) : NULL;

	if (q)
		path.len = (size_t)(q - path.p);
	return path;
}

bool osh_llm_target_maybe(struct osh_str path)
{
	path = path_only(path);
	return osh_llm_path_maybe(path.p, path.len);
}

/* One freed tracker kept for the next call: calloc of its ~3 KB took
 * ~4k instructions through malloc's bins, a reset ~100. One slot for the
 * process, so nothing piles up; a thread that finds it empty allocates. */
static struct osh_llm *_Atomic spare;

static struct osh_llm *tracker_new(void)
{
	struct osh_llm *l = atomic_exchange_explicit(&spare, NULL, memory_order_acquire);

	if (!l)
		return calloc(1, sizeof(*l));
	memset(l, 0, sizeof(*l));
	return l;
}

static void tracker_release(struct osh_llm *l)
{
	struct osh_llm *none = NULL;

	if (!atomic_compare_exchange_strong_explicit(&spare, &none, l, memory_order_release,
						     memory_order_relaxed))
		free(l);
}

struct osh_llm *osh_llm_start(struct osh_str authority, struct osh_str path)
{
	struct osh_llm_route route;
	struct osh_str host = { 0 };
	struct osh_llm *l;
	int port;

	path = path_only(path);
	/* Nearly every request stops here, on the path's last bytes. */
	if (!osh_llm_path_maybe(path.p, path.len))
		return NULL;
	if (!authority.len || !osh_http_split_authority(authority, &host, &port))
		host.len = 0;
	if (!osh_llm_match(host.p, host.len, path.p, path.len, &route))
		return NULL;
	l = tracker_new();
	if (!l)
		return NULL;
	l->route = route;
	osh_llm_call_init(&l->call, route.flavour, route.operation,
			  osh_cfg.llm_capture_content &&
				  !(osh_cfg.llm_omit_prompts && osh_cfg.llm_omit_completions));
	l->call.stream = route.stream;
	return l;
}

static bool framing_of(enum osh_http_body_kind kind, enum osh_llm_framing *ret)
{
	switch (kind) {
	case OSH_BODY_LENGTH:
		*ret = OSH_LLM_FRAMING_LENGTH;
		return true;
	case OSH_BODY_CHUNKED:
		*ret = OSH_LLM_FRAMING_CHUNKED;
		return true;
	case OSH_BODY_UNTIL_CLOSE:
		*ret = OSH_LLM_FRAMING_CLOSE;
		return true;
	default:
		return false;
	}
}

void osh_llm_request_head(struct osh_llm *l, const struct osh_http_request *req,
			  uint64_t body_pos)
{
	enum osh_llm_framing framing;

	if (!l || l->req_started || !framing_of(req->body, &framing))
		return;
	osh_llm_body_init(&l->req, framing, req->content_length, NULL, 0, OSH_LLM_STREAM_NONE,
			  osh_cfg.llm_body_limit, NULL);
	l->req_started = true;
	l->req_seen = body_pos;
}

void osh_llm_request_body(struct osh_llm *l, uint64_t pos, const char *p, size_t n)
{
	if (!l || !l->req_started || !n)
		return;
	if (pos + n <= l->req_seen)
		return;	/* already seen: a write retried after a partial one */
	if (pos > l->req_seen)
		return;	/* a gap (bytes sent past the shim): the body is lost */
	p += l->req_seen - pos;
	n -= (size_t)(l->req_seen - pos);
	l->req_seen += n;
	(void)osh_llm_body_feed(&l->req, p, n, 0);
}

/* One server-sent event or NDJSON line of the response. */
static void on_event(void *arg, const char *event, size_t event_len, const char *data,
		     size_t data_len, uint64_t now_ns)
{
	struct osh_llm *l = arg;

	if (osh_llm_extract_event(&l->call, event, event_len, data, data_len) && !l->first_token_ns)
		l->first_token_ns = now_ns;
	/* Once the first output is in and the text is not wanted, an
	 * OpenAI-style stream is only skimmed: its later events matter only
	 * when they carry a tool call, a finish reason, or come last (usage,
	 * errors). Other flavours mark such events differently and are
	 * split as they come. */
	if (l->call.got_output && !l->call.capture && l->route.flavour == OSH_LLM_OPENAI)
		osh_llm_body_skim(&l->resp);
}

void osh_llm_response_head(struct osh_llm *l, const struct osh_http_response *resp,
			   enum osh_http_body_kind kind, uint64_t start_ns)
{
	struct osh_llm_event_sink sink = { on_event, l };
	enum osh_llm_stream stream = OSH_LLM_STREAM_NONE;
	enum osh_llm_framing framing;

	if (!l)
		return;
	l->status = resp->status;
	l->start_ns = start_ns;
	if (resp->request_id.len && resp->request_id.len <= REQUEST_ID_MAX) {
		memcpy(l->request_id, resp->request_id.p, resp->request_id.len);
		l->request_id_len = resp->request_id.len;
	}
	if (resp->retry_after.len && resp->retry_after.len <= sizeof(l->retry_after)) {
		memcpy(l->retry_after, resp->retry_after.p, resp->retry_after.len);
		l->retry_after_len = (uint8_t)resp->retry_after.len;
	}
	if (l->resp_started || !framing_of(kind, &framing))
		return;
	if (osh_str_has_prefix_ci(resp->content_type, "text/event-stream"))
		stream = OSH_LLM_STREAM_SSE;
	else if (osh_str_has_prefix_ci(resp->content_type, "application/x-ndjson") ||
		 osh_str_has_prefix_ci(resp->content_type, "application/jsonl"))
		stream = OSH_LLM_STREAM_NDJSON;
	else if (l->route.flavour == OSH_LLM_OLLAMA && l->call.stream && resp->status < 300 &&
		 !osh_str_has_prefix_ci(resp->content_type, "application/json"))
		stream = OSH_LLM_STREAM_NDJSON;	/* Ollama without a content type */
	l->resp_is_stream = stream != OSH_LLM_STREAM_NONE;
	osh_llm_body_init(&l->resp, framing, resp->content_length, resp->content_encoding.p,
			  resp->content_encoding.len, stream, osh_cfg.llm_body_limit, &sink);
	l->resp_started = true;
}

void osh_llm_response_body(struct osh_llm *l, const char *p, size_t n, uint64_t now_ns)
{
	if (!l || !l->resp_started || !n)
		return;
	(void)osh_llm_body_feed(&l->resp, p, n, now_ns);
}

ssize_t osh_llm_response_walk(struct osh_llm *l, struct osh_http_body *w, const char *p, size_t n,
			      uint64_t now_ns)
{
	if (!l || !l->resp_started)
		return OSH_LLM_NOT_WALKED;
	return osh_llm_body_walk(&l->resp, w, p, n, now_ns);
}

void osh_llm_free(struct osh_llm *l)
{
	if (!l)
		return;
	if (l->req_started)
		osh_llm_body_free(&l->req);
	if (l->resp_started)
		osh_llm_body_free(&l->resp);
	osh_llm_call_free(&l->call);
	tracker_release(l);
}

static void set_cost(const struct osh_llm *l, struct osh_span *rec)
{
	const struct osh_llm_call *c = &l->call;
	const char *model = osh_llm_call_model(c, l->route.path_model);
	struct osh_llm_price price;
	int64_t in = c->input_tokens, cr = c->cache_read_tokens, cw = c->cache_write_tokens;
	double in_usd, out_usd;

	if (c->anthropic_input >= 0) {
		cr = c->anthropic_cache_read;
		cw = c->anthropic_cache_write;
		in = c->anthropic_input + (cr > 0 ? cr : 0) + (cw > 0 ? cw : 0);
	}
	/* No usage, no cost: never a guess. */
	if (!model[0] || in < 0 || !osh_llm_price(l->route.provider->name, model, &price))
		return;
	osh_llm_cost(&price, in, c->output_tokens, cr, cw, &in_usd, &out_usd);
	osh_span_set_double(rec, "llm.cost.input_cost_usd", in_usd);
	osh_span_set_double(rec, "llm.cost.output_cost_usd", out_usd);
}

bool osh_llm_finish(struct osh_llm *l, struct osh_span *rec)
{
	bool error_set = false;

	if (!l)
		return false;
	if (rec) {
		size_t n;
		const char *json;

		if (l->req_started) {
			json = osh_llm_body_data(&l->req, &n);
			osh_llm_extract_request(&l->call, json, n);
			l->call.stream |= l->route.stream;
		}
		if (l->resp_started) {
			osh_llm_body_end(&l->resp);
			if (!l->resp_is_stream) {
				json = osh_llm_body_data(&l->resp, &n);
				osh_llm_extract_response(&l->call, l->status, json, n);
			}
		}
		osh_llm_route_apply(&l->route, rec);
		error_set = osh_llm_call_apply(&l->call, rec, l->route.path_model,
					       l->call.capture && !osh_cfg.llm_omit_prompts,
					       l->call.capture && !osh_cfg.llm_omit_completions);
		if (l->request_id_len)
			osh_span_set_str(rec, "llm.request_id", l->request_id, l->request_id_len);
		else if (l->call.response_id[0])
			osh_span_set_str(rec, "llm.request_id", l->call.response_id,
					 strlen(l->call.response_id));
		/* When to try again: what a rate-limited caller needs to know. */
		if (l->retry_after_len)
			osh_span_set_str(rec, "http.response.header.retry-after", l->retry_after,
					 l->retry_after_len);
		if (l->first_token_ns && l->first_token_ns >= l->start_ns) {
			uint64_t ttft = l->first_token_ns - l->start_ns;

			osh_span_set_double(rec, "gen_ai.response.time_to_first_chunk",
					    (double)ttft / 1e9);
			osh_span_set_double(rec, "llm.response.time_to_first_token_ms",
					    (double)ttft / 1e6);
		}
		if (l->resp_started && l->resp.truncated)
			osh_span_set_bool(rec, "llm.response.truncated", true);
		if (l->req_started && l->req.truncated)
			osh_span_set_bool(rec, "llm.request.truncated", true);
		if (l->resp_started && (l->resp.unparsed || l->resp.malformed))
			osh_span_set_bool(rec, "llm.response.unparsed", true);
		set_cost(l, rec);
	}
	osh_llm_free(l);
	return error_set;
}
