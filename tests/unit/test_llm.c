/* The per-exchange LLM tracker (llm.c): bytes in as the engines see them
 * (request body by stream offset, retried writes, response framing and
 * events), attributes out on the span. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "http.h"
#include "llm.h"
#include "llm_providers.h"
#include "span.h"

static struct osh_span *rec;

static void setup(void)
{
	rec = osh_span_create();
	osh_cfg.llm_body_limit = 1 << 20;
	osh_cfg.llm_capture_content = false;
	osh_cfg.attr_value_limit = 0;
	osh_span_set_limits(0, 128);
	osh_llm_tables_reset();
}

static void teardown(void)
{
	osh_span_destroy(rec);
}

TestSuite(llm, .init = setup, .fini = teardown);

static const struct osh_attr *find(const char *key)
{
	return osh_span_find(rec, key);
}

static int64_t int_attr(const char *key)
{
	const struct osh_attr *a = find(key);

	cr_assert_not_null(a, "%s missing", key);
	return a->v.i;
}

static struct osh_llm *start(const char *path)
{
	return osh_llm_start((struct osh_str){ "api.openai.com", 14 },
			     (struct osh_str){ path, strlen(path) });
}

Test(llm, no_tracker_for_other_requests)
{
	cr_assert_null(start("/v1/models"));
	cr_assert_null(start("/index.html"));
	cr_assert_null(osh_llm_start((struct osh_str){ "api.openai.com", 14 }, (struct osh_str){ 0 }));
	osh_llm_free(NULL);
	cr_assert_not(osh_llm_finish(NULL, rec));
}

static const char req_body[] = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":9,\"messages\":[]}";

static void request(struct osh_llm *l, uint64_t body_pos)
{
	struct osh_http_request req = { 0 };

	req.body = OSH_BODY_LENGTH;
	req.content_length = sizeof(req_body) - 1;
	osh_llm_request_head(l, &req, body_pos);
}

Test(llm, request_body_by_offset_retries_skipped_gaps_lost)
{
	struct osh_llm *l = start("/v1/chat/completions");
	size_t n = sizeof(req_body) - 1;

	cr_assert_not_null(l);
	request(l, 1000);
	/* A partial write, then the program sends from where it stopped, the
	 * dry run having seen more: bytes seen twice count once. */
	osh_llm_request_body(l, 1000, req_body, 20);
	osh_llm_request_body(l, 1010, req_body + 10, 30);
	osh_llm_request_body(l, 1000, req_body, 5);
	osh_llm_request_body(l, 1040, req_body + 40, n - 40);
	osh_llm_finish(l, rec);
	cr_assert_eq(int_attr("gen_ai.request.max_tokens"), 9);

	/* A gap: what follows cannot be placed, the request is not read. */
	osh_span_destroy(rec);
	rec = osh_span_create();
	l = start("/v1/chat/completions");
	request(l, 0);
	osh_llm_request_body(l, 0, req_body, 10);
	osh_llm_request_body(l, 20, req_body + 20, n - 20);
	osh_llm_finish(l, rec);
	cr_assert_null(find("gen_ai.request.max_tokens"));
	cr_assert_not_null(find("gen_ai.operation.name"), "still an LLM span");
}

static void response_head(struct osh_llm *l, int status, const char *ctype, const char *ce,
			  enum osh_http_body_kind kind, uint64_t cl, const char *request_id)
{
	struct osh_http_response resp = { 0 };

	resp.status = status;
	resp.content_type = (struct osh_str){ ctype, ctype ? strlen(ctype) : 0 };
	resp.content_encoding = (struct osh_str){ ce, ce ? strlen(ce) : 0 };
	resp.request_id = (struct osh_str){ request_id, request_id ? strlen(request_id) : 0 };
	resp.content_length = cl;
	osh_llm_response_head(l, &resp, kind, 1000000000ull);
}

Test(llm, streamed_response_time_to_first_token)
{
	static const char sse[] =
		"b\r\ndata: {\"id\"\r\n"
		"3d\r\n:\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n\r\n"
		"3a\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n\r\n"
		"0\r\n\r\n";
	struct osh_llm *l = start("/v1/chat/completions");
	const struct osh_attr *a;

	request(l, 0);
	osh_llm_request_body(l, 0, req_body, sizeof(req_body) - 1);
	response_head(l, 200, "text/event-stream; charset=utf-8", NULL, OSH_BODY_CHUNKED, 0,
		      "req-77");
	/* The role-only chunk is no token; the content one, fed at +250 ms, is. */
	osh_llm_response_body(l, sse, 83, 1100000000ull);
	osh_llm_response_body(l, sse + 83, sizeof(sse) - 1 - 83, 1250000000ull);
	osh_llm_finish(l, rec);
	a = find("llm.response.time_to_first_token_ms");
	cr_assert_not_null(a);
	cr_assert_float_eq(a->v.d, 250.0, 1e-6);
	a = find("gen_ai.response.time_to_first_chunk");
	cr_assert_float_eq(a->v.d, 0.25, 1e-9);
	a = find("llm.request_id");
	cr_assert(a && a->v.s.len == 6 && memcmp(osh_span_str(rec, a->v.s), "req-77", 6) == 0);
}

/* Trackers are reused (one freed tracker is kept for the next call): a
 * call after a streamed one starts from nothing, with no time to first
 * token, request id or response fields of the one before. */
Test(llm, next_call_inherits_nothing)
{
	static const char sse[] =
		"data: {\"id\":\"c1\",\"model\":\"m-1\",\"choices\":[{\"index\":0,\"delta\":"
		"{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n";
	static const char body[] = "{\"choices\":[]}";
	struct osh_llm *l = start("/v1/chat/completions"), *l2;

	request(l, 0);
	osh_llm_request_body(l, 0, req_body, sizeof(req_body) - 1);
	response_head(l, 200, "text/event-stream", NULL, OSH_BODY_UNTIL_CLOSE, 0, "req-1");
	osh_llm_response_body(l, sse, sizeof(sse) - 1, 1200000000ull);
	osh_llm_finish(l, rec);
	cr_assert_not_null(find("llm.response.time_to_first_token_ms"));
	osh_span_destroy(rec);
	rec = osh_span_create();

	l2 = start("/v1/chat/completions");
	cr_assert_not_null(l2);
	request(l2, 0);
	osh_llm_request_body(l2, 0, req_body, sizeof(req_body) - 1);
	response_head(l2, 200, "application/json", NULL, OSH_BODY_LENGTH, sizeof(body) - 1, NULL);
	osh_llm_response_body(l2, body, sizeof(body) - 1, 5);
	osh_llm_finish(l2, rec);
	cr_assert_null(find("llm.response.time_to_first_token_ms"), "not a stream");
	cr_assert_null(find("llm.request_id"));
	cr_assert_null(find("gen_ai.response.id"));
	cr_assert_null(find("gen_ai.response.model"));
	cr_assert_null(find("gen_ai.response.finish_reasons"));
}

Test(llm, response_id_stands_in_for_a_missing_request_id)
{
	static const char body[] = "{\"id\":\"chatcmpl-z\",\"choices\":[],\"usage\":{"
				   "\"prompt_tokens\":1000000,\"completion_tokens\":1000000}}";
	struct osh_llm *l = start("/v1/chat/completions");
	const struct osh_attr *a;

	request(l, 0);
	osh_llm_request_body(l, 0, req_body, sizeof(req_body) - 1);
	response_head(l, 200, "application/json", NULL, OSH_BODY_LENGTH, sizeof(body) - 1, NULL);
	osh_llm_response_body(l, body, sizeof(body) - 1, 5);
	cr_assert_not(osh_llm_finish(l, rec));
	a = find("llm.request_id");
	cr_assert(a && a->v.s.len == 10 && memcmp(osh_span_str(rec, a->v.s), "chatcmpl-z", 10) == 0);
	cr_assert_null(find("llm.response.time_to_first_token_ms"), "not a stream");
	/* Built-in price of gpt-4o-mini: 0.15 / 0.60 USD per million. */
	cr_assert_float_eq(find("llm.cost.input_cost_usd")->v.d, 0.15, 1e-9);
	cr_assert_float_eq(find("llm.cost.output_cost_usd")->v.d, 0.60, 1e-9);
}

Test(llm, body_over_the_limit_is_flagged)
{
	char body[600];
	struct osh_llm *l = start("/v1/chat/completions");

	memset(body, ' ', sizeof(body));
	memcpy(body, "{\"id\":\"x\"}", 10);
	osh_cfg.llm_body_limit = 100;
	response_head(l, 200, "application/json", NULL, OSH_BODY_LENGTH, sizeof(body), NULL);
	osh_llm_response_body(l, body, sizeof(body), 1);
	osh_llm_finish(l, rec);
	cr_assert_not_null(find("llm.response.truncated"));
}

Test(llm, error_reported_to_the_engine)
{
	static const char body[] = "{\"error\":{\"type\":\"invalid_request_error\"}}";
	struct osh_llm *l = start("/v1/chat/completions");

	response_head(l, 400, "application/json", NULL, OSH_BODY_UNTIL_CLOSE, 0, NULL);
	osh_llm_response_body(l, body, sizeof(body) - 1, 1);
	cr_assert(osh_llm_finish(l, rec));
	cr_assert_eq(rec->status_code, OSH_STATUS_ERROR);
}

Test(llm, dropped_exchange_frees_everything)
{
	struct osh_llm *l = start("/v1/chat/completions");

	request(l, 0);
	osh_llm_request_body(l, 0, req_body, 7);
	response_head(l, 200, "text/event-stream", "gzip", OSH_BODY_CHUNKED, 0, NULL);
	osh_llm_response_body(l, "5\r\n\x1f\x8b\x08\x00\x00", 8, 1);
	osh_llm_free(l);	/* ASan: no leak */
	l = start("/v1/chat/completions");
	osh_llm_finish(l, NULL);
}

/* ---- long streams: skimmed after the first output ---------------------------- */

/* An OpenAI stream of @n_events content chunks, one per HTTP chunk, with
 * tool calls starting at events 150 and 300, choice 1 finishing at 200,
 * choice 0 at the end, a long event (10 KB of text) at 250, then the usage
 * chunk and [DONE]. Returns the wire bytes (malloc'd). */
static char *long_stream(int n_events, size_t *ret_len)
{
	size_t cap = (size_t)n_events * 300 + 64 * 1024, w = 0;
	char *wire = malloc(cap), ev[12 * 1024];

	cr_assert_not_null(wire);
	for (int i = 0; i <= n_events + 2; i++) {
		int n;

		if (i == 0)
			n = snprintf(ev, sizeof(ev), "data: {\"id\":\"chatcmpl-L\",\"model\":\"gpt-4o-mini\","
				     "\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":"
				     "{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n");
		else if (i == 150 || i == 300)
			n = snprintf(ev, sizeof(ev), "data: {\"id\":\"chatcmpl-L\",\"choices\":[{\"index\":0,"
				     "\"delta\":{\"tool_calls\":[{\"index\":%d,\"id\":\"call_%c\",\"type\":"
				     "\"function\",\"function\":{\"name\":\"%s\",\"arguments\":\"\"}}]},"
				     "\"finish_reason\":null}]}\n\n",
				     i / 150 - 1, i == 150 ? 'A' : 'B', i == 150 ? "lookup" : "search");
		else if ((i > 150 && i < 170) || (i > 300 && i < 320))
			/* Argument pieces of the call under way (CRLF lines for
			 * the second): no id, no name. */
			n = snprintf(ev, sizeof(ev), "data: {\"id\":\"chatcmpl-L\",\"choices\":[{\"index\":0,"
				     "\"delta\":{\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":"
				     "\"{\\\"q%d\\\"\"}}]},\"finish_reason\":null}]}%s",
				     i < 300 ? 0 : 1, i, i < 300 ? "\n\n" : "\r\n\r\n");
		else if (i == 200)
			n = snprintf(ev, sizeof(ev), "data: {\"id\":\"chatcmpl-L\",\"choices\":[{\"index\":1,"
				     "\"delta\":{},\"finish_reason\" : \"length\"}]}\n\n");
		else if (i == 250) {
			n = snprintf(ev, sizeof(ev), "data: {\"id\":\"chatcmpl-L\",\"choices\":[{\"index\":0,"
				     "\"delta\":{\"content\":\"");
			memset(ev + n, 'x', 10000);
			n += 10000;
			n += snprintf(ev + n, sizeof(ev) - (size_t)n, "\"},\"finish_reason\":null}]}\n\n");
		} else if (i < n_events)
			n = snprintf(ev, sizeof(ev), "data: {\"id\":\"chatcmpl-L\",\"object\":\"chat.completion."
				     "chunk\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,"
				     "\"delta\":{\"content\":\" w%d\"},\"finish_reason\":null}],"
				     "\"usage\":null}\r\n\r\n", i);
		else if (i == n_events)
			n = snprintf(ev, sizeof(ev), "data: {\"id\":\"chatcmpl-L\",\"choices\":[{\"index\":0,"
				     "\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n");
		else if (i == n_events + 1)
			n = snprintf(ev, sizeof(ev), "data: {\"id\":\"chatcmpl-L\",\"choices\":[],\"usage\":"
				     "{\"prompt_tokens\":41,\"completion_tokens\":%d}}\n\n", n_events);
		else
			n = snprintf(ev, sizeof(ev), "data: [DONE]\n\n");
		cr_assert_lt(w + (size_t)n + 32, cap);
		w += (size_t)sprintf(wire + w, "%x\r\n", n);
		memcpy(wire + w, ev, (size_t)n);
		w += (size_t)n;
		memcpy(wire + w, "\r\n", 2);
		w += 2;
	}
	memcpy(wire + w, "0\r\n\r\n", 5);
	*ret_len = w + 5;
	return wire;
}

static void want_joined(const char *key, const char *joined)
{
	const struct osh_attr *a = find(key);
	const char *region, *e;
	char got[256] = "";
	size_t at = 0, n, w = 0;

	cr_assert_not_null(a, "%s missing", key);
	region = osh_span_str(rec, a->v.s);
	while (osh_span_strs_next(region, a->v.s.len, &at, &e, &n))
		w += (size_t)snprintf(got + w, sizeof(got) - w, "%s%.*s", w ? "|" : "", (int)n, e);
	cr_assert_str_eq(got, joined, "%s", key);
}

static bool event_has(const struct osh_event *ev, const char *key, const char *value)
{
	for (unsigned i = 0; i < ev->n_attrs; i++) {
		const struct osh_attr *a = &ev->attrs[i];

		if (a->key_len == strlen(key) && memcmp(a->key, key, a->key_len) == 0)
			return a->v.s.len == strlen(value) &&
			       memcmp(osh_span_str(rec, a->v.s), value, a->v.s.len) == 0;
	}
	return false;
}

/* After the first output the rest of an OpenAI stream is skimmed: read in
 * every piece size, the tool calls, the finish reasons (one mid-stream),
 * the usage at the end and the response id all come out as when every
 * event is parsed; so do they with content capture on (no skimming). */
Test(llm, long_stream_skimmed_loses_nothing)
{
	static const size_t pieces[] = { 1, 7, 100, 1024, 4096, 65536 };
	size_t len;
	char *wire = long_stream(600, &len);

	for (size_t pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]) * 2; pi++) {
		size_t piece = pieces[pi % 6];
		struct osh_llm *l;

		osh_span_destroy(rec);
		rec = osh_span_create();
		osh_cfg.llm_capture_content = pi >= 6;
		l = start("/v1/chat/completions");
		request(l, 0);
		osh_llm_request_body(l, 0, req_body, sizeof(req_body) - 1);
		response_head(l, 200, "text/event-stream", NULL, OSH_BODY_CHUNKED, 0, NULL);
		for (size_t off = 0; off < len; off += piece)
			osh_llm_response_body(l, wire + off, len - off < piece ? len - off : piece,
					      2000000000ull + off);
		osh_llm_finish(l, rec);
		cr_assert_eq(int_attr("gen_ai.usage.input_tokens"), 41, "piece %zu", piece);
		cr_assert_eq(int_attr("gen_ai.usage.output_tokens"), 600, "piece %zu", piece);
		want_joined("gen_ai.response.finish_reasons", "tool_calls|length");
		cr_assert_eq(rec->n_events, 2, "piece %zu: %u tool call events", piece, rec->n_events);
		cr_assert(event_has(&rec->events[0], "gen_ai.tool.name", "lookup"), "piece %zu", piece);
		cr_assert(event_has(&rec->events[0], "gen_ai.tool.call.id", "call_A"));
		cr_assert(event_has(&rec->events[1], "gen_ai.tool.name", "search"), "piece %zu", piece);
		cr_assert(event_has(&rec->events[1], "gen_ai.tool.call.id", "call_B"));
		cr_assert_not_null(find("llm.response.time_to_first_token_ms"));
	}
	osh_cfg.llm_capture_content = false;
	free(wire);
}
