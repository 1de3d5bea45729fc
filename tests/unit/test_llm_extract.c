/* LLM JSON extraction per provider flavour, and what lands on the span.
 * Bodies follow the providers' documented shapes (written here by hand). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "llm_extract.h"
#include "llm_providers.h"
#include "span.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static struct osh_span *rec;

static void setup(void)
{
	rec = osh_span_create();
	osh_span_set_limits(0, 128);
	osh_cfg.attr_value_limit = 0;
}

static void teardown(void)
{
	osh_span_destroy(rec);
}

TestSuite(llm_extract, .init = setup, .fini = teardown);

static const struct osh_attr *need(const char *key)
{
	const struct osh_attr *a = osh_span_find(rec, key);

	cr_assert_not_null(a, "attribute %s missing", key);
	return a;
}

static void want_str(const char *key, const char *v)
{
	const struct osh_attr *a = need(key);

	cr_assert_eq(a->type, OSH_ATTR_STRING, "%s", key);
	cr_assert(a->v.s.len == strlen(v) && memcmp(osh_span_str(rec, a->v.s), v, a->v.s.len) == 0,
		  "%s = \"%.*s\", want \"%s\"", key, (int)a->v.s.len, osh_span_str(rec, a->v.s), v);
}

static void want_int(const char *key, int64_t v)
{
	const struct osh_attr *a = need(key);

	cr_assert_eq(a->type, OSH_ATTR_INT, "%s", key);
	cr_assert_eq(a->v.i, v, "%s = %lld, want %lld", key, (long long)a->v.i, (long long)v);
}

static void want_double(const char *key, double v)
{
	const struct osh_attr *a = need(key);

	cr_assert_eq(a->type, OSH_ATTR_DOUBLE, "%s", key);
	cr_assert_float_eq(a->v.d, v, 1e-12, "%s", key);
}

/* A string[] attribute: its elements joined with '|'. */
static void want_strs(const char *key, const char *joined)
{
	const struct osh_attr *a = need(key);
	const char *region = osh_span_str(rec, a->v.s), *e;
	char got[512] = "";
	size_t at = 0, n, w = 0;

	cr_assert_eq(a->type, OSH_ATTR_STRING_ARRAY, "%s", key);
	while (osh_span_strs_next(region, a->v.s.len, &at, &e, &n)) {
		w += (size_t)snprintf(got + w, sizeof(got) - w, "%s%.*s", w ? "|" : "", (int)n, e);
	}
	cr_assert_str_eq(got, joined, "%s", key);
}

static void want_none(const char *key)
{
	cr_assert_null(osh_span_find(rec, key), "attribute %s present", key);
}

static void want_name(const char *name)
{
	cr_assert(rec->name.len == strlen(name) &&
		  memcmp(osh_span_str(rec, rec->name), name, rec->name.len) == 0);
}

/* ---- OpenAI -------------------------------------------------------------------- */

static const char oa_req[] =
	"{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
	"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi there\"}]}],"
	"\"max_completion_tokens\":100,\"max_tokens\":5,\"temperature\":0.7,\"top_p\":1,"
	"\"frequency_penalty\":0.5,\"presence_penalty\":-0.5,\"seed\":42,\"n\":2,"
	"\"stop\":\"END\",\"stream\":false}";
static const char oa_resp[] =
	"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini-2024-07-18\","
	"\"system_fingerprint\":\"fp_9\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
	"\"content\":\"Hello!\"},\"finish_reason\":\"stop\"},{\"index\":1,\"message\":{\"role\":"
	"\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
	"\"function\":{\"name\":\"lookup\",\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}],"
	"\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":10,\"total_tokens\":60,"
	"\"prompt_tokens_details\":{\"cached_tokens\":20},\"completion_tokens_details\":"
	"{\"reasoning_tokens\":3}}}";

Test(llm_extract, openai_chat)
{
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c, S(oa_req));
	osh_llm_extract_response(&c, 200, S(oa_resp));
	cr_assert_not(osh_llm_call_apply(&c, rec, "", false, false));
	want_name("llm.completion");
	want_str("gen_ai.request.model", "gpt-4o-mini");
	want_int("gen_ai.request.max_tokens", 100);	/* the current field wins */
	want_double("gen_ai.request.temperature", 0.7);
	want_double("gen_ai.request.top_p", 1);
	want_double("gen_ai.request.frequency_penalty", 0.5);
	want_double("gen_ai.request.presence_penalty", -0.5);
	want_int("gen_ai.request.seed", 42);
	want_int("gen_ai.request.choice.count", 2);
	want_strs("gen_ai.request.stop_sequences", "END");
	want_none("gen_ai.request.stream");
	want_str("gen_ai.response.id", "chatcmpl-1");
	want_str("gen_ai.response.model", "gpt-4o-mini-2024-07-18");
	want_str("openai.response.system_fingerprint", "fp_9");
	want_strs("gen_ai.response.finish_reasons", "stop|tool_calls");
	want_int("gen_ai.usage.input_tokens", 50);
	want_int("gen_ai.usage.output_tokens", 10);
	want_int("gen_ai.usage.cache_read.input_tokens", 20);
	want_int("gen_ai.usage.reasoning.output_tokens", 3);
	cr_assert_eq(rec->n_events, 1);
	cr_assert_eq(rec->status_code, OSH_STATUS_UNSET);
	want_none("gen_ai.input.messages");
	osh_llm_call_free(&c);
}

Test(llm_extract, openai_stream_events)
{
	static const char *const ev[] = {
		"{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
		"\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}",
		"{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
		"\"Hel\"},\"finish_reason\":null}]}",
		"{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
		"[{\"index\":0,\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":"
		"\"search\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}",
		"{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
		"[{\"index\":0,\"function\":{\"arguments\":\"{\\\"q\\\":1}\"}}]},\"finish_reason\":null}]}",
		"{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},"
		"\"finish_reason\":\"tool_calls\"}]}",
		"{\"id\":\"c1\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
		"\"completion_tokens\":4}}",
		"[DONE]",
	};
	static const bool content[] = { false, true, true, true, false, false, false };
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, true);
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
		cr_assert_eq(osh_llm_extract_event(&c, "", 0, ev[i], strlen(ev[i])), content[i],
			     "event %zu", i);
	osh_llm_call_apply(&c, rec, NULL, false, true);
	want_str("gen_ai.response.id", "c1");
	want_strs("gen_ai.response.finish_reasons", "tool_calls");
	want_int("gen_ai.usage.input_tokens", 9);
	want_int("gen_ai.usage.output_tokens", 4);
	cr_assert_eq(c.n_tools, 1, "one call, whatever its argument pieces");
	cr_assert_str_eq(c.tools[0].name, "search");
	want_str("gen_ai.output.messages",
		 "[{\"role\":\"assistant\",\"parts\":[{\"type\":\"text\",\"content\":\"Hel\"}],"
		 "\"finish_reason\":\"tool_calls\"}]");
	osh_llm_call_free(&c);
}

/* "error": null in a chunk (some OpenAI-compatible servers send it in
 * every chunk) is no error, whether the chunk is slimmed or captured whole. */
Test(llm_extract, stream_null_error_is_no_error)
{
	static const char ev[] =
		"{\"id\":\"c2\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
		"{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}],\"error\":null}";

	for (int capture = 0; capture < 2; capture++) {
		struct osh_llm_call c;

		osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, capture);
		cr_assert(osh_llm_extract_event(&c, "", 0, S(ev)), "capture %d", capture);
		cr_assert_str_eq(c.error_type, "", "capture %d", capture);
		cr_assert_eq(c.n_finish, 1, "capture %d", capture);
		osh_llm_call_free(&c);
	}
}

/* Groq (OpenAI-compatible) streams report usage under x_groq in the chunk
 * that finishes. */
Test(llm_extract, groq_stream_usage)
{
	static const char *const ev[] = {
		"{\"id\":\"chatcmpl-g\",\"model\":\"llama-3.3-70b-versatile\",\"choices\":[{\"index\":0,"
		"\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"x_groq\":{\"id\":\"req_01\"}}",
		"{\"id\":\"chatcmpl-g\",\"model\":\"llama-3.3-70b-versatile\",\"choices\":[{\"index\":0,"
		"\"delta\":{},\"finish_reason\":\"stop\"}],\"x_groq\":{\"id\":\"req_01\",\"usage\":"
		"{\"queue_time\":0.01,\"prompt_tokens\":12,\"prompt_time\":0.002,\"completion_tokens\":3,"
		"\"completion_time\":0.01,\"total_tokens\":15,\"total_time\":0.012}}}",
	};
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
		osh_llm_extract_event(&c, "", 0, ev[i], strlen(ev[i]));
	osh_llm_call_apply(&c, rec, NULL, false, true);
	want_int("gen_ai.usage.input_tokens", 12);
	want_int("gen_ai.usage.output_tokens", 3);
	want_strs("gen_ai.response.finish_reasons", "stop");
	osh_llm_call_free(&c);
}

Test(llm_extract, openai_embeddings_and_responses_api)
{
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_EMBEDDINGS, false);
	osh_llm_extract_request(&c, S("{\"model\":\"text-embedding-3-large\",\"input\":[\"a\",\"b\"],"
				      "\"dimensions\":256,\"encoding_format\":\"base64\"}"));
	osh_llm_extract_response(&c, 200, S("{\"object\":\"list\",\"data\":[],\"model\":"
					    "\"text-embedding-3-large\",\"usage\":{\"prompt_tokens\":"
					    "4,\"total_tokens\":4}}"));
	osh_llm_call_apply(&c, rec, NULL, false, false);
	want_name("llm.embedding");
	want_int("gen_ai.embeddings.dimension.count", 256);
	want_strs("gen_ai.request.encoding_formats", "base64");
	want_int("gen_ai.usage.input_tokens", 4);
	want_none("gen_ai.usage.output_tokens");
	osh_llm_call_free(&c);

	osh_span_destroy(rec);
	rec = osh_span_create();
	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c, S("{\"model\":\"gpt-4.1\",\"input\":\"hi\","
				      "\"max_output_tokens\":30}"));
	osh_llm_extract_response(&c, 200, S(
		"{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":"
		"\"gpt-4.1-2025\",\"output\":[{\"type\":\"function_call\",\"call_id\":\"fc_1\","
		"\"name\":\"f\"},{\"type\":\"message\",\"content\":[{\"type\":\"output_text\","
		"\"text\":\"x\"}]}],\"usage\":{\"input_tokens\":7,\"output_tokens\":2,"
		"\"input_tokens_details\":{\"cached_tokens\":1},\"output_tokens_details\":"
		"{\"reasoning_tokens\":0}}}"));
	osh_llm_call_apply(&c, rec, NULL, false, false);
	want_int("gen_ai.request.max_tokens", 30);
	want_str("gen_ai.response.id", "resp_1");
	want_strs("gen_ai.response.finish_reasons", "completed");
	want_int("gen_ai.usage.input_tokens", 7);
	want_int("gen_ai.usage.cache_read.input_tokens", 1);
	cr_assert_eq(rec->n_events, 1);
	osh_llm_call_free(&c);
}

/* ---- Anthropic ---------------------------------------------------------------- */

Test(llm_extract, anthropic_message_tokens_include_the_cache)
{
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_ANTHROPIC, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c, S("{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,"
				      "\"top_k\":40,\"stop_sequences\":[\"a\",\"b\",\"c\",\"d\",\"e\"],"
				      "\"system\":\"s\",\"messages\":[]}"));
	osh_llm_extract_response(&c, 200, S(
		"{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
		"\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"},"
		"{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get\",\"input\":{}}],"
		"\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":100,"
		"\"cache_creation_input_tokens\":20,\"cache_read_input_tokens\":300,"
		"\"output_tokens\":50}}"));
	osh_llm_call_apply(&c, rec, NULL, false, false);
	want_int("gen_ai.request.max_tokens", 1024);
	want_double("gen_ai.request.top_k", 40);
	want_strs("gen_ai.request.stop_sequences", "a|b|c|d");	/* bounded */
	want_int("gen_ai.usage.input_tokens", 420);
	want_int("gen_ai.usage.cache_read.input_tokens", 300);
	want_int("gen_ai.usage.cache_creation.input_tokens", 20);
	want_int("gen_ai.usage.output_tokens", 50);
	cr_assert(osh_span_find(rec, "llm.cache.hit"));
	want_strs("gen_ai.response.finish_reasons", "tool_use");
	cr_assert_eq(rec->n_events, 1);
	osh_llm_call_free(&c);
}

Test(llm_extract, anthropic_stream)
{
	static const char *const ev[] = {
		"{\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"model\":\"claude-x\","
		"\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}",
		"{\"type\":\"ping\"}",
		"{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
		"\"text\":\"\"}}",
		"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
		"\"text\":\"Hi\"}}",
		"{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
		"\"tool_use\",\"id\":\"toolu_2\",\"name\":\"calc\",\"input\":{}}}",
		"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":"
		"{\"output_tokens\":33}}",
		"{\"type\":\"message_stop\"}",
	};
	static const bool content[] = { false, false, false, true, true, false, false };
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_ANTHROPIC, OSH_LLM_OP_CHAT, false);
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
		cr_assert_eq(osh_llm_extract_event(&c, "x", 1, ev[i], strlen(ev[i])), content[i],
			     "event %zu", i);
	osh_llm_call_apply(&c, rec, NULL, false, false);
	want_str("gen_ai.response.id", "msg_s");
	want_int("gen_ai.usage.input_tokens", 15);
	want_int("gen_ai.usage.output_tokens", 33);
	want_strs("gen_ai.response.finish_reasons", "tool_use");
	cr_assert_eq(rec->n_events, 1);
	osh_llm_call_free(&c);
}

/* ---- errors ---------------------------------------------------------------------- */

Test(llm_extract, provider_errors)
{
	static const struct {
		uint8_t flavour;
		int status;
		const char *body;
		const char *want;
	} cases[] = {
		{ OSH_LLM_OPENAI, 429, "{\"error\":{\"message\":\"slow down\",\"type\":\"requests\","
				       "\"code\":\"rate_limit_exceeded\"}}", "rate_limit_exceeded" },
		{ OSH_LLM_OPENAI, 400, "{\"error\":{\"message\":\"x\",\"type\":"
				       "\"invalid_request_error\",\"code\":null}}",
		  "invalid_request_error" },
		{ OSH_LLM_ANTHROPIC, 529, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
					  "\"message\":\"Overloaded\"}}", "overloaded_error" },
		{ OSH_LLM_GEMINI, 429, "{\"error\":{\"code\":429,\"message\":\"q\",\"status\":"
				       "\"RESOURCE_EXHAUSTED\"}}", "RESOURCE_EXHAUSTED" },
		{ OSH_LLM_OLLAMA, 404, "{\"error\":\"model 'x' not found\"}", "error" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_llm_call c;

		osh_span_destroy(rec);
		rec = osh_span_create();
		osh_llm_call_init(&c, cases[i].flavour, OSH_LLM_OP_CHAT, false);
		osh_llm_extract_response(&c, cases[i].status, cases[i].body, strlen(cases[i].body));
		cr_assert(osh_llm_call_apply(&c, rec, NULL, false, false), "case %zu", i);
		want_str("error.type", cases[i].want);
		cr_assert_eq(rec->status_code, OSH_STATUS_ERROR);
		osh_llm_call_free(&c);
	}
}

Test(llm_extract, anthropic_error_mid_stream)
{
	struct osh_llm_call c;
	const char ev[] = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}";

	osh_llm_call_init(&c, OSH_LLM_ANTHROPIC, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_event(&c, S("error"), S(ev));
	cr_assert(osh_llm_call_apply(&c, rec, NULL, false, false));
	want_str("error.type", "overloaded_error");
	osh_llm_call_free(&c);
}

/* ---- Gemini, Ollama, Bedrock -------------------------------------------------------- */

Test(llm_extract, gemini_generate_content)
{
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_GEMINI, OSH_LLM_OP_GENERATE_CONTENT, false);
	osh_llm_extract_request(&c, S("{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":"
				      "\"q\"}]}],\"generationConfig\":{\"maxOutputTokens\":64,"
				      "\"topK\":3,\"candidateCount\":1,\"stopSequences\":[\"x\"]}}"));
	osh_llm_extract_response(&c, 200, S(
		"{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"},{\"functionCall\":"
		"{\"name\":\"fn\",\"args\":{}}}],\"role\":\"model\"},\"finishReason\":\"STOP\","
		"\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":5,\"candidatesTokenCount\":"
		"2,\"cachedContentTokenCount\":1},\"modelVersion\":\"gemini-2.0-flash-001\","
		"\"responseId\":\"r9\"}"));
	osh_llm_call_apply(&c, rec, "gemini-2.0-flash", false, false);
	want_str("gen_ai.request.model", "gemini-2.0-flash");
	want_int("gen_ai.request.max_tokens", 64);
	want_none("gen_ai.request.choice.count");
	want_str("gen_ai.response.model", "gemini-2.0-flash-001");
	want_str("gen_ai.response.id", "r9");
	want_int("gen_ai.usage.input_tokens", 5);
	want_int("gen_ai.usage.output_tokens", 2);
	want_int("gen_ai.usage.cache_read.input_tokens", 1);
	cr_assert_eq(rec->n_events, 1);
	osh_llm_call_free(&c);
}

Test(llm_extract, ollama_stream_and_generate)
{
	struct osh_llm_call c;
	const char l1[] = "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":"
			  "\"The\"},\"done\":false}";
	const char l2[] = "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":"
			  "\"\"},\"done\":true,\"done_reason\":\"length\",\"prompt_eval_count\":26,"
			  "\"eval_count\":290}";

	osh_llm_call_init(&c, OSH_LLM_OLLAMA, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c, S("{\"model\":\"llama3\",\"messages\":[],\"options\":"
				      "{\"num_predict\":290,\"temperature\":0}}"));
	cr_assert(c.stream, "Ollama streams unless told not to");
	cr_assert(osh_llm_extract_event(&c, "", 0, S(l1)));
	cr_assert_not(osh_llm_extract_event(&c, "", 0, S(l2)));
	osh_llm_call_apply(&c, rec, NULL, false, false);
	want_int("gen_ai.request.max_tokens", 290);
	want_double("gen_ai.request.temperature", 0);
	want_int("gen_ai.usage.input_tokens", 26);
	want_int("gen_ai.usage.output_tokens", 290);
	want_strs("gen_ai.response.finish_reasons", "length");
	cr_assert(osh_span_find(rec, "gen_ai.request.stream"));
	osh_llm_call_free(&c);
}

Test(llm_extract, bedrock_converse)
{
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_BEDROCK, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c, S("{\"messages\":[],\"inferenceConfig\":{\"maxTokens\":512,"
				      "\"temperature\":0.5,\"topP\":0.9}}"));
	osh_llm_extract_response(&c, 200, S(
		"{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"hi\"},"
		"{\"toolUse\":{\"toolUseId\":\"t1\",\"name\":\"w\",\"input\":{}}}]}},"
		"\"stopReason\":\"tool_use\",\"usage\":{\"inputTokens\":30,\"outputTokens\":8,"
		"\"totalTokens\":38}}"));
	osh_llm_call_apply(&c, rec, "anthropic.claude-3-haiku", false, false);
	want_str("gen_ai.request.model", "anthropic.claude-3-haiku");
	want_int("gen_ai.request.max_tokens", 512);
	want_int("gen_ai.usage.input_tokens", 30);
	want_int("gen_ai.usage.output_tokens", 8);
	want_strs("gen_ai.response.finish_reasons", "tool_use");
	cr_assert_eq(rec->n_events, 1);
	osh_llm_call_free(&c);
}

/* ---- robustness and bounds ------------------------------------------------------------ */

Test(llm_extract, cut_and_malformed_json_record_what_is_known)
{
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	for (size_t n = 0; n < sizeof(oa_resp) - 1; n += 7)
		osh_llm_extract_response(&c, 200, oa_resp, n);	/* every prefix: not JSON */
	osh_llm_extract_request(&c, S("{\"model\": 42, \"max_tokens\": \"x\", \"stop\": {}}"));
	osh_llm_extract_event(&c, "", 0, S("{\"choices\":\"nope\",\"usage\":[1]}"));
	osh_llm_extract_response(&c, 200, S("[1,2,3]"));
	osh_llm_extract_response(&c, 200, NULL, 0);
	osh_llm_call_apply(&c, rec, NULL, false, false);
	want_none("gen_ai.request.model");
	want_none("gen_ai.usage.input_tokens");
	want_none("gen_ai.response.finish_reasons");
	osh_llm_call_free(&c);
}

Test(llm_extract, tool_calls_bounded)
{
	char body[8192];
	size_t w = 0;
	struct osh_llm_call c;

	w += (size_t)snprintf(body + w, sizeof(body) - w,
			      "{\"id\":\"x\",\"choices\":[{\"index\":0,\"finish_reason\":"
			      "\"tool_calls\",\"message\":{\"tool_calls\":[");
	for (int i = 0; i < 20; i++)
		w += (size_t)snprintf(body + w, sizeof(body) - w,
				      "%s{\"id\":\"call_%d\",\"function\":{\"name\":\"f%d\"}}",
				      i ? "," : "", i, i);
	w += (size_t)snprintf(body + w, sizeof(body) - w, "]}}]}");
	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_response(&c, 200, body, w);
	cr_assert_eq(c.n_tools, OSH_LLM_MAX_TOOLS);
	cr_assert_eq(c.dropped_tools, 20 - OSH_LLM_MAX_TOOLS);
	osh_llm_call_apply(&c, rec, NULL, false, false);
	cr_assert_eq(rec->n_events, OSH_SPAN_MAX_EVENTS);
	cr_assert_eq(rec->dropped_events, 20 - OSH_LLM_MAX_TOOLS);
	osh_llm_call_free(&c);
}

Test(llm_extract, captured_content_is_redacted_json_cut_to_fit)
{
	struct osh_llm_call c;
	char req[4096];
	int n;
	const struct osh_attr *a;

	n = snprintf(req, sizeof(req),
		     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"mail me at "
		     "bob@example.org \\\"quoted\\\" \\u00e9t\\u00e9 %0*d\"}]}",
		     2000, 7);
	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, true);
	osh_llm_extract_request(&c, req, (size_t)n);
	osh_cfg.attr_value_limit = 300;
	osh_llm_call_apply(&c, rec, NULL, true, true);
	a = need("gen_ai.input.messages");
	cr_assert_leq(a->v.s.len, 300);
	{
		char *s = strndup(osh_span_str(rec, a->v.s), a->v.s.len);

		cr_assert(strstr(s, "[REDACTED:email]"), "%s", s);
		cr_assert_null(strstr(s, "bob@"), "%s", s);
		cr_assert(strstr(s, "\\\"quoted\\\""), "%s", s);
		cr_assert(strstr(s, "\xc3\xa9t\xc3\xa9"), "%s", s);
		/* Valid JSON whatever the cut: it closes. */
		cr_assert_eq(s[a->v.s.len - 1], ']', "%s", s);
		cr_assert(strstr(s, "\"}]}]") != NULL, "%s", s);
		free(s);
	}
	want_none("gen_ai.output.messages");	/* nothing came back */
	osh_llm_call_free(&c);
}

/* Bodies over 1 KiB are parsed with their long strings emptied (content is
 * not captured): quotes escaped inside them, backslashes before a closing
 * quote, and the short fields after them must come through. */
Test(llm_extract, long_strings_skipped_fields_kept)
{
	static char body[16384];
	struct osh_llm_call c;
	size_t w = 0;

	w += (size_t)snprintf(body + w, sizeof(body) - w,
			      "{\"id\":\"chatcmpl-L\",\"choices\":[{\"index\":0,\"message\":{"
			      "\"content\":\"");
	for (int i = 0; i < 300; i++)
		w += (size_t)snprintf(body + w, sizeof(body) - w, "say \\\"hi\\\" \\\\ ");
	w += (size_t)snprintf(body + w, sizeof(body) - w,
			      "end\\\\\"},\"finish_reason\":\"length\"}],\"model\":\"m-\\\"q\","
			      "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}");
	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_response(&c, 200, body, w);
	osh_llm_call_apply(&c, rec, NULL, false, false);
	want_str("gen_ai.response.id", "chatcmpl-L");
	want_str("gen_ai.response.model", "m-\"q");
	want_strs("gen_ai.response.finish_reasons", "length");
	want_int("gen_ai.usage.output_tokens", 4);
	osh_llm_call_free(&c);
}

/* After the first output, events that only add text are not parsed: a
 * broken one is taken as more output, and the ones that carry a finish
 * reason or usage are still read. */
Test(llm_extract, stream_text_events_skipped_after_the_first)
{
	struct osh_llm_call c;
	const char first[] = "{\"id\":\"s\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},"
			     "\"finish_reason\":null}],\"usage\":null}";
	const char text_only[] = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"},"
				 "\"finish_reason\": null";	/* cut: not JSON */
	const char last[] = "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\": \"length\"}]}";
	const char usage[] = "{\"choices\":[],\"usage\": {\"prompt_tokens\":1,\"completion_tokens\":2}}";

	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	cr_assert_not(osh_llm_extract_event(&c, "", 0, S(text_only)), "parsed before any output");
	cr_assert(osh_llm_extract_event(&c, "", 0, S(first)));
	cr_assert(osh_llm_extract_event(&c, "", 0, S(text_only)), "skipped: more output");
	osh_llm_extract_event(&c, "", 0, S(last));
	osh_llm_extract_event(&c, "", 0, S(usage));
	osh_llm_call_apply(&c, rec, NULL, false, false);
	want_strs("gen_ai.response.finish_reasons", "length");
	want_int("gen_ai.usage.output_tokens", 2);
	osh_llm_call_free(&c);

	/* Anthropic: by event name; Ollama: its last line. */
	osh_llm_call_init(&c, OSH_LLM_ANTHROPIC, OSH_LLM_OP_CHAT, false);
	cr_assert(osh_llm_extract_event(&c, S("content_block_delta"),
					S("{\"type\":\"content_block_delta\",\"delta\":{\"text\":\"x\"}}")));
	cr_assert(osh_llm_extract_event(&c, S("content_block_delta"), S("{broken")));
	osh_llm_extract_event(&c, S("message_delta"), S("{\"type\":\"message_delta\",\"delta\":"
							"{\"stop_reason\":\"end_turn\"},\"usage\":"
							"{\"output_tokens\":5}}"));
	cr_assert_eq(c.output_tokens, 5);
	osh_llm_call_free(&c);
	osh_llm_call_init(&c, OSH_LLM_OLLAMA, OSH_LLM_OP_CHAT, false);
	cr_assert(osh_llm_extract_event(&c, "", 0, S("{\"message\":{\"content\":\"a\"},\"done\":false}")));
	cr_assert(osh_llm_extract_event(&c, "", 0, S("{\"message\":{\"content\":\"b\"},\"done\": false")));
	osh_llm_extract_event(&c, "", 0, S("{\"message\":{\"content\":\"\"},\"done\": true,"
					   "\"eval_count\":7}"));
	cr_assert_eq(c.output_tokens, 7);
	osh_llm_call_free(&c);
}

/* The marks are found wherever the event puts them: in a 16-byte block,
 * across two, or in the bytes after the last whole block. */
Test(llm_extract, marks_found_at_any_offset)
{
	for (int pad = 0; pad < 40; pad++) {
		struct osh_llm_call c;
		char ev[256];
		int n;

		osh_llm_call_init(&c, OSH_LLM_OLLAMA, OSH_LLM_OP_CHAT, false);
		cr_assert(osh_llm_extract_event(&c, "", 0, S("{\"message\":{\"content\":\"a\"}}")));
		n = snprintf(ev, sizeof(ev), "{\"x\":\"%.*s\",\"done\":true,\"eval_count\":%d}", pad,
			     "0123456789012345678901234567890123456789", pad + 1);
		osh_llm_extract_event(&c, "", 0, ev, (size_t)n);
		cr_assert_eq(c.output_tokens, pad + 1, "pad %d", pad);
		osh_llm_call_free(&c);

		osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
		cr_assert(osh_llm_extract_event(&c, "", 0, S("{\"choices\":[{\"delta\":{\"content\":\"a\"}}]}")));
		n = snprintf(ev, sizeof(ev), "{\"x\":\"%.*s\",\"usage\":{\"completion_tokens\":%d}}", pad,
			     "0123456789012345678901234567890123456789", pad + 2);
		osh_llm_extract_event(&c, "", 0, ev, (size_t)n);
		cr_assert_eq(c.output_tokens, pad + 2, "pad %d", pad);
		osh_llm_call_free(&c);
	}
}

/* With content capture off, the conversation, system prompt and tool
 * schemas are left out before the request is parsed: every other field
 * still comes out, wherever the content fields sit, whatever they hold
 * (brackets and quotes inside strings, nesting, whitespace), and a field
 * of the same name deeper down, or a value spelling one, is kept. */
Test(llm_extract, request_content_fields_left_out_the_rest_read)
{
	static const char *const reqs[] = {
		"{\"messages\":[{\"role\":\"user\",\"content\":\"]} \\\"tricky\\\" {[\"},"
		"{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}],"
		"\"model\":\"gpt-4o\",\"max_tokens\":77,\"temperature\":0.25,\"stop\":[\"A\",\"B\"],"
		"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
		"{\"type\":\"object\",\"properties\":{\"messages\":{\"type\":\"string\"}}}}}],"
		"\"stream\":true}",
		"{ \"model\" : \"gpt-4o\" , \"messages\" :\n [ ] , \"tools\" : null ,"
		" \"max_tokens\" : 77 , \"temperature\" : 0.25 , \"stop\" : [ \"A\" , \"B\" ] ,"
		" \"stream\" : true , \"input\" : \"a long prompt, with, commas }\" }",
		"{\"model\":\"gpt-4o\",\"stream_options\":{\"messages\":[1,2,3],\"include_usage\":true},"
		"\"max_tokens\":77,\"temperature\":0.25,\"stop\":[\"A\",\"B\"],\"stream\":true,"
		"\"prompt\":[[1,2],[3,4]],\"system\":{\"a\":[{\"b\":\"}\"}]}}",
	};

	for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
		struct osh_llm_call c;

		osh_span_destroy(rec);
		rec = osh_span_create();
		osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
		osh_llm_extract_request(&c, reqs[i], strlen(reqs[i]));
		cr_assert_str_eq(c.request_model, "gpt-4o", "request %zu", i);
		cr_assert_eq(c.max_tokens, 77, "request %zu", i);
		cr_assert(c.has_temperature && c.temperature == 0.25, "request %zu", i);
		cr_assert_eq(c.n_stop, 2, "request %zu", i);
		cr_assert(c.stream, "request %zu", i);
		if (i == 2)
			cr_assert(c.include_usage, "a nested \"messages\" is kept");
		osh_llm_call_free(&c);
	}
}

/* The request memo: a request that reads as the last one did once its
 * content fields are left out gets the same fields without a parse, one
 * with other parameters is parsed, and so is one whose call had other
 * request fields set before (a Gemini stream's route sets "stream"), or
 * one whose text is captured. */
Test(llm_extract, request_memo_gives_what_a_parse_gives)
{
	static const char a[] = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
				"\"first\"}],\"max_tokens\":77,\"temperature\":0.25,\"stop\":[\"A\",\"B\"],"
				"\"stream\":true}";
	static const char a2[] = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
				 "\"second, longer\"},{\"role\":\"assistant\",\"content\":\"x\"}],"
				 "\"max_tokens\":77,\"temperature\":0.25,\"stop\":[\"A\",\"B\"],"
				 "\"stream\":true}";
	static const char a3[] = "{\"user\":\"u-2\",\"model\":\"gpt-4o\",\"metadata\":{\"run\":\"9\"},"
				 "\"max_tokens\":77,\"temperature\":0.25,\"stop\":[\"A\",\"B\"],"
				 "\"stream\":true,\"messages\":[]}";
	static const char b[] = "{\"model\":\"gpt-4o\",\"messages\":[],\"max_tokens\":78,"
				"\"temperature\":0.25,\"stop\":[\"A\",\"B\"],\"stream\":true}";
	static const char g[] = "{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}],"
				"\"generationConfig\":{\"maxOutputTokens\":9}}";
	struct osh_llm_call c1, c2, c3, c4, c5, c6, c7;
	uint64_t hits = osh_llm_request_memo_hits();

	osh_llm_call_init(&c1, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c1, S(a));
	cr_assert_eq(osh_llm_request_memo_hits(), hits, "the first one is parsed");
	osh_llm_call_init(&c2, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c2, S(a2));
	cr_assert_eq(osh_llm_request_memo_hits(), hits + 1, "another conversation, same parameters");
	cr_assert_str_eq(c2.request_model, "gpt-4o");
	cr_assert_eq(c2.max_tokens, 77);
	cr_assert(c2.has_temperature && c2.temperature == 0.25);
	cr_assert(c2.stream);
	cr_assert_eq(c2.n_stop, 2);
	cr_assert_str_eq(c2.stop[1], "B");
	cr_assert_eq(memcmp(c1.request_model, c2.request_model,
			    offsetof(struct osh_llm_call, response_id) -
				    offsetof(struct osh_llm_call, request_model)),
		     0, "every request field as the parse gave them");
	/* Another end user, other metadata: what is not read does not count. */
	osh_llm_call_free(&c2);
	osh_llm_call_init(&c2, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c2, S(a3));
	cr_assert_eq(osh_llm_request_memo_hits(), hits + 2, "another user, same parameters");
	cr_assert_eq(c2.max_tokens, 77);

	osh_llm_call_init(&c3, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c3, S(b));
	cr_assert_eq(osh_llm_request_memo_hits(), hits + 2, "other parameters are parsed");
	cr_assert_eq(c3.max_tokens, 78);
	osh_llm_call_init(&c4, OSH_LLM_OPENAI, OSH_LLM_OP_EMBEDDINGS, false);
	osh_llm_extract_request(&c4, S(b));
	cr_assert_eq(osh_llm_request_memo_hits(), hits + 2, "another operation is parsed");

	/* The same Gemini body for a streaming and a plain route. */
	osh_llm_call_init(&c5, OSH_LLM_GEMINI, OSH_LLM_OP_CHAT, false);
	c5.stream = true;
	osh_llm_extract_request(&c5, S(g));
	osh_llm_call_init(&c6, OSH_LLM_GEMINI, OSH_LLM_OP_CHAT, false);
	osh_llm_extract_request(&c6, S(g));
	cr_assert_eq(osh_llm_request_memo_hits(), hits + 2, "other fields before: parsed");
	cr_assert(c5.stream && !c6.stream);
	cr_assert_eq(c5.max_tokens, 9);
	cr_assert_eq(c6.max_tokens, 9);

	osh_llm_call_init(&c7, OSH_LLM_GEMINI, OSH_LLM_OP_CHAT, true);
	osh_llm_extract_request(&c7, S(g));
	cr_assert_eq(osh_llm_request_memo_hits(), hits + 2, "captured text is never from the memo");
	cr_assert(c7.input.len > 0 && memmem(c7.input.buf, c7.input.len, "hi", 2));
	osh_llm_call_free(&c1);
	osh_llm_call_free(&c2);
	osh_llm_call_free(&c3);
	osh_llm_call_free(&c4);
	osh_llm_call_free(&c5);
	osh_llm_call_free(&c6);
	osh_llm_call_free(&c7);
}

/* Content capture on: the same fields are read in full. */
Test(llm_extract, request_content_fields_read_when_captured)
{
	static const char req[] =
		"{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}],"
		"\"max_tokens\":5}";
	struct osh_llm_call c;

	osh_llm_call_init(&c, OSH_LLM_OPENAI, OSH_LLM_OP_CHAT, true);
	osh_llm_extract_request(&c, S(req));
	cr_assert_eq(c.max_tokens, 5);
	cr_assert(c.input.len > 0 && memmem(c.input.buf, c.input.len, "Hello there", 11),
		  "captured text missing");
	osh_llm_call_free(&c);
}

static void want_slim(const char *in, const char *want)
{
	char out[1024];
	size_t n = osh_llm_slim_request(in, strlen(in), out, 200);

	cr_assert_leq(n, strlen(in));
	out[n] = '\0';
	cr_assert_str_eq(out, want);
}

/* What the parser is given: the top-level fields not read go with their
 * commas (first, between, last, alone: the conversation, tools, a
 * response_format's schema, metadata, the user), the ones read stay
 * whatever they hold (a nested field of a dropped name too), a value
 * spelling a dropped name stays, and long strings are emptied. */
Test(llm_extract, slim_request_output)
{
	want_slim("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"]}\\\"{[\"}],\"n\":1}",
		  "{\"model\":\"m\",\"n\":1}");
	want_slim("{ \"tools\" :\n [ {\"a\":1} ] }", "{}");
	want_slim("{\"system\":\"be terse\",\"prompt\":\"hi\"}", "{}");
	want_slim("{\"model\":\"messages\",\"x\":{\"messages\":[1,2,3]}}",
		  "{\"model\":\"messages\"}");
	want_slim("{\"stream_options\":{\"messages\":[1],\"include_usage\":true}}",
		  "{\"stream_options\":{\"messages\":[1],\"include_usage\":true}}");
	want_slim("{\"messages\":[],\"n\":2,\"input\":12345}", "{\"n\":2}");
	want_slim("{\"model\":\"gpt-4o\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
		  "{\"name\":\"r\",\"schema\":{\"type\":\"object\"}}},\"user\":\"u-17\","
		  "\"metadata\":{\"k\":\"v\"},\"temperature\":0}",
		  "{\"model\":\"gpt-4o\",\"temperature\":0}");
	want_slim("{\"generationConfig\":{\"maxOutputTokens\":9},\"safetySettings\":[]}",
		  "{\"generationConfig\":{\"maxOutputTokens\":9}}");
	/* Cut short: the rest is copied as it is (the parser then says no). */
	want_slim("{\"model\":\"m\",\"messages\":[{\"role\":\"us", "{\"model\":\"m\",\"messages\":[{\"role\":\"us");
}

static void want_slim_at(const char *in, bool id_known, bool output_seen, const char *want)
{
	char out[1024];
	size_t n = osh_llm_slim_chunk(in, strlen(in), out, id_known, output_seen);

	cr_assert_leq(n, strlen(in));
	out[n] = '\0';
	cr_assert_str_eq(out, want);
}

static void want_slim_chunk(const char *in, bool id_known, const char *want)
{
	want_slim_at(in, id_known, false, want);
}

/* What the parser is given for an OpenAI stream chunk: the fields never
 * read go wherever they stand (first, between, last: the commas stay
 * right), the id and model only once known, a nested "id" (a tool call's)
 * stays; content text is cut to one character, argument text emptied. */
Test(llm_extract, slim_chunk_output)
{
	static const char chunk[] =
		"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
		"\"model\":\"gpt-4o\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,"
		"\"delta\":{\"content\":\" word\"},\"finish_reason\":\"stop\"}]}";

	want_slim_chunk(chunk, false,
			"{\"id\":\"chatcmpl-1\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,"
			"\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}");
	want_slim_chunk(chunk, true,
			"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},"
			"\"finish_reason\":\"stop\"}]}");
	/* Last and only fields, spaces around. */
	want_slim_chunk("{ \"choices\" : [], \"object\" : \"c\" }", true, "{ \"choices\" : []}");
	want_slim_chunk("{\"created\":1}", true, "{}");
	/* Tool calls: the call's own id and name stay, the arguments go;
	 * empty and one-character content stays as it is. */
	want_slim_chunk("{\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"\",\"tool_calls\":[{\"id\":"
			"\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}",
			true,
			"{\"choices\":[{\"delta\":{\"content\":\"\",\"tool_calls\":[{\"id\":\"call_1\","
			"\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}");
	/* Nulls, log-probabilities and refusal text go from every chunk,
	 * at any depth; the first chunk's content stays (it tells whether
	 * output came). */
	want_slim_chunk("{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
			"\"content\":\"\",\"refusal\":null},\"logprobs\":{\"content\":[]},"
			"\"finish_reason\":null}],\"usage\":null}",
			false,
			"{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
			"\"content\":\"\"}}]}");
	/* Usage and errors are read: kept. */
	want_slim_chunk("{\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":4}}", true,
			"{\"choices\":[],\"usage\":{\"prompt_tokens\":4}}");
	want_slim_chunk("{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit\"}}", true,
			"{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit\"}}");
}

static void want_slim_seen(const char *in, const char *want)
{
	want_slim_at(in, true, true, want);
}

/* After the first output: what only tells whether there is output goes,
 * at any depth, and so does every null; what is read stays (index, finish
 * reason, a tool call's id and name, usage, errors). A "content" that is
 * a value, not a key, stays. */
Test(llm_extract, slim_chunk_after_output)
{
	want_slim_seen("{\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
		       "{\"content\":\" word\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
		       "\"usage\":null}",
		       "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}");
	want_slim_seen("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}",
		       "{\"choices\":[{\"index\":0,\"finish_reason\":\"length\"}]}");
	want_slim_seen("{\"choices\":[{\"index\":1,\"delta\":{\"refusal\":null,\"content\":\"a\","
		       "\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"function\":{\"name\":\"g\","
		       "\"arguments\":\"{}\"}}]},\"finish_reason\":null}]}",
		       "{\"choices\":[{\"index\":1,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":"
		       "\"call_9\",\"function\":{\"name\":\"g\"}}]}}]}");
	want_slim_seen("{\"choices\":[],\"usage\":{\"prompt_tokens\":41,\"completion_tokens\":500,"
		       "\"prompt_tokens_details\":{\"cached_tokens\":3}}}",
		       "{\"usage\":{\"prompt_tokens\":41,\"completion_tokens\":500,"
		       "\"prompt_tokens_details\":{\"cached_tokens\":3}}}");
	/* Empty: gone, but an empty "error" still says there was one. */
	want_slim_seen("{\"error\":{},\"x\":[],\"y\":{}}", "{\"error\":{}}");
	want_slim_seen("{\"choices\":[{\"delta\":{\"role\":\"content\"}}]}",
		       "{\"choices\":[{\"delta\":{\"role\":\"content\"}}]}");
	want_slim_seen("{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"param\":null}}",
		       "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}");
}
