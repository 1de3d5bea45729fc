/* The per-exchange LLM tracker (llm.c): bytes in as the engines see them
 * (request body by stream offset, retried writes, response framing and
 * events), attributes out on the span. */
#include <criterion/criterion.h>
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
