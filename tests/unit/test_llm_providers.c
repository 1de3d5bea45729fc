/* Provider matching, pricing and the override files. */
/* Table rows leave their trailing fields (stream, model) out when unset. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "llm_providers.h"

static void reset(void)
{
	free(osh_cfg.llm_providers_path);
	free(osh_cfg.llm_pricing_path);
	osh_cfg.llm_providers_path = NULL;
	osh_cfg.llm_pricing_path = NULL;
	osh_llm_tables_reset();
}

TestSuite(llm_providers, .init = reset, .fini = reset);

static bool match(const char *host, const char *path, struct osh_llm_route *r)
{
	return osh_llm_match(host, strlen(host), path, strlen(path), r);
}

Test(llm_providers, paths_give_flavour_and_operation)
{
	static const struct {
		const char *host, *path, *provider;
		int flavour, op;
		bool stream;
		const char *model;
	} cases[] = {
		{ "api.openai.com", "/v1/chat/completions", "openai", OSH_LLM_OPENAI, OSH_LLM_OP_CHAT },
		{ "api.openai.com", "/v1/completions", "openai", OSH_LLM_OPENAI,
		  OSH_LLM_OP_TEXT_COMPLETION },
		{ "api.openai.com", "/v1/embeddings", "openai", OSH_LLM_OPENAI, OSH_LLM_OP_EMBEDDINGS },
		{ "api.openai.com", "/v1/responses", "openai", OSH_LLM_OPENAI, OSH_LLM_OP_CHAT },
		{ "myres.openai.azure.com", "/openai/deployments/gpt4/chat/completions",
		  "azure.ai.openai", OSH_LLM_OPENAI, OSH_LLM_OP_CHAT },
		{ "api.groq.com", "/openai/v1/chat/completions", "groq", OSH_LLM_OPENAI,
		  OSH_LLM_OP_CHAT },
		{ "API.Mistral.AI", "/v1/chat/completions", "mistral_ai", OSH_LLM_OPENAI,
		  OSH_LLM_OP_CHAT },
		{ "openrouter.ai", "/api/v1/chat/completions", "openrouter", OSH_LLM_OPENAI,
		  OSH_LLM_OP_CHAT },
		/* OpenAI-compatible servers anywhere (vLLM, llama.cpp): "openai". */
		{ "10.0.0.7", "/v1/chat/completions", "openai", OSH_LLM_OPENAI, OSH_LLM_OP_CHAT },
		{ "", "/v1/chat/completions", "openai", OSH_LLM_OPENAI, OSH_LLM_OP_CHAT },
		{ "api.anthropic.com", "/v1/messages", "anthropic", OSH_LLM_ANTHROPIC,
		  OSH_LLM_OP_CHAT },
		{ "proxy.internal", "/v1/messages", "anthropic", OSH_LLM_ANTHROPIC, OSH_LLM_OP_CHAT },
		{ "generativelanguage.googleapis.com", "/v1beta/models/gemini-1.5-pro:generateContent",
		  "gcp.gemini", OSH_LLM_GEMINI, OSH_LLM_OP_GENERATE_CONTENT, false, "gemini-1.5-pro" },
		{ "generativelanguage.googleapis.com",
		  "/v1beta/models/gemini-2.0-flash:streamGenerateContent", "gcp.gemini",
		  OSH_LLM_GEMINI, OSH_LLM_OP_GENERATE_CONTENT, true, "gemini-2.0-flash" },
		/* Gemini's OpenAI-compatible endpoint: OpenAI bodies, Google's host. */
		{ "generativelanguage.googleapis.com", "/v1beta/openai/chat/completions",
		  "gcp.gemini", OSH_LLM_OPENAI, OSH_LLM_OP_CHAT },
		{ "localhost", "/api/chat", "ollama", OSH_LLM_OLLAMA, OSH_LLM_OP_CHAT },
		{ "localhost", "/api/generate", "ollama", OSH_LLM_OLLAMA, OSH_LLM_OP_TEXT_COMPLETION },
		{ "localhost", "/api/embed", "ollama", OSH_LLM_OLLAMA, OSH_LLM_OP_EMBEDDINGS },
		{ "bedrock-runtime.us-east-1.amazonaws.com",
		  "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", "aws.bedrock",
		  OSH_LLM_BEDROCK, OSH_LLM_OP_CHAT, false, "anthropic.claude-3-haiku-20240307-v1:0" },
		{ "bedrock-runtime.eu-west-1.amazonaws.com", "/model/m1/invoke-with-response-stream",
		  "aws.bedrock", OSH_LLM_BEDROCK, OSH_LLM_OP_CHAT, true, "m1" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_llm_route r;

		cr_assert(match(cases[i].host, cases[i].path, &r), "%s%s", cases[i].host,
			  cases[i].path);
		cr_assert_str_eq(r.provider->name, cases[i].provider, "%s", cases[i].path);
		cr_assert_eq(r.flavour, cases[i].flavour, "%s", cases[i].path);
		cr_assert_eq(r.operation, cases[i].op, "%s", cases[i].path);
		cr_assert_eq(r.stream, cases[i].stream, "%s", cases[i].path);
		cr_assert_str_eq(r.path_model, cases[i].model ? cases[i].model : "", "%s",
				 cases[i].path);
	}
}

Test(llm_providers, other_paths_are_no_llm_call)
{
	static const char *const paths[] = {
		"/", "/index.html", "/v1/models", "/v1/chat/completions/x", "/api/chat2",
		"/api/chats", "/x/api/chat", "/v1/message", "/model/x", "/model/x/other",
		"/users/42/orders", "/v1/chat/completion", "s", "",
	};
	struct osh_llm_route r;

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		cr_assert_not(match("api.openai.com", paths[i], &r), "%s", paths[i]);
}

Test(llm_providers, endpoint_and_legacy_system)
{
	struct osh_llm_route r;

	cr_assert(match("generativelanguage.googleapis.com", "/v1beta/models/g:generateContent", &r));
	cr_assert_str_eq(r.endpoint, "generativelanguage.googleapis.com/v1beta/models/g:generateContent");
	cr_assert_eq(r.endpoint_len, strlen(r.endpoint));
	cr_assert_str_eq(r.provider->system, "gemini");
	cr_assert_str_eq(osh_llm_operation_name(r.operation), "generate_content");
}

Test(llm_providers, prices_exact_prefix_and_unknown)
{
	struct osh_llm_price p;

	cr_assert(osh_llm_price("openai", "gpt-4o", &p));
	cr_assert_float_eq(p.input, 2.50, 1e-9);
	/* Longest prefix: gpt-4o-mini* over gpt-4o-2024-*. */
	cr_assert(osh_llm_price("openai", "gpt-4o-mini-2024-07-18", &p));
	cr_assert_float_eq(p.input, 0.15, 1e-9);
	cr_assert(osh_llm_price("openai", "gpt-4o-2024-08-06", &p));
	cr_assert_float_eq(p.output, 10.0, 1e-9);
	/* Exact names are not prefixes. */
	cr_assert_not(osh_llm_price("openai", "gpt-4o-audio", &p));
	cr_assert_not(osh_llm_price("openai", "unknown-model", &p));
	cr_assert_not(osh_llm_price("groq", "gpt-4o", &p), "another provider's price");
	cr_assert_not(osh_llm_price("openai", "", &p));
	cr_assert(osh_llm_price("anthropic", "claude-3-5-haiku-20241022", &p));
	cr_assert_float_eq(p.input_cached, 0.08, 1e-9);
	cr_assert_float_eq(p.cache_write, 1.00, 1e-9);
}

Test(llm_providers, cost)
{
	struct osh_llm_price p = { 2.0, 8.0, 0.5, -1 };
	double in, out;

	/* 1000 input of which 400 cached, 200 output. */
	osh_llm_cost(&p, 1000, 200, 400, 0, &in, &out);
	cr_assert_float_eq(in, (600 * 2.0 + 400 * 0.5) / 1e6, 1e-15);
	cr_assert_float_eq(out, 200 * 8.0 / 1e6, 1e-15);
	/* No cached price: cached tokens at the input price; writes too. */
	p.input_cached = -1;
	osh_llm_cost(&p, 1000, 0, 400, 100, &in, &out);
	cr_assert_float_eq(in, 1000 * 2.0 / 1e6, 1e-15);
	cr_assert_float_eq(out, 0, 1e-15);
	/* Unknown counts are no tokens. */
	osh_llm_cost(&p, 10, -1, -1, -1, &in, &out);
	cr_assert_float_eq(in, 10 * 2.0 / 1e6, 1e-15);
	cr_assert_float_eq(out, 0, 1e-15);
}

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/otelshim-llm-XXXXXX");
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

Test(llm_providers, provider_override_file)
{
	char *path = write_tmp("{\"paths\":[{\"exact\":\"/llm\",\"flavour\":\"anthropic\","
			       "\"operation\":\"chat\"},{\"suffix\":\"/x\",\"flavour\":\"nope\","
			       "\"operation\":\"chat\"}],\"defaults\":{\"anthropic\":\"gw\"},"
			       "\"providers\":[{\"name\":\"gw\",\"hosts\":[\"GW.*.local\"]},"
			       "{\"name\":\"other\",\"system\":\"o\",\"hosts\":[\"x.example\"]}]}");
	struct osh_llm_route r;

	osh_cfg.llm_providers_path = strdup(path);
	cr_assert(match("gw.a.local", "/llm", &r));
	cr_assert_str_eq(r.provider->name, "gw");
	cr_assert_str_eq(r.provider->system, "gw");
	cr_assert_eq(r.flavour, OSH_LLM_ANTHROPIC);
	cr_assert(match("x.example", "/llm", &r));
	cr_assert_str_eq(r.provider->system, "o");
	cr_assert(match("elsewhere", "/llm", &r));
	cr_assert_str_eq(r.provider->name, "gw", "the default of the flavour");
	/* Replaced, not merged; the rule with a bad flavour is skipped. */
	cr_assert_not(match("api.openai.com", "/v1/chat/completions", &r));
	cr_assert_not(match("gw.a.local", "/a/x", &r));
	unlink(path);
	free(path);
}

Test(llm_providers, broken_override_keeps_the_builtin_table)
{
	const char *bad[] = { "{not json", "[]", "{\"paths\":[]}",
			      "{\"paths\":[{\"suffix\":\"/x\"}],\"providers\":[]}" };
	struct osh_llm_route r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *path = write_tmp(bad[i]);

		reset();
		osh_cfg.llm_providers_path = strdup(path);
		cr_assert(match("api.openai.com", "/v1/chat/completions", &r), "%s", bad[i]);
		cr_assert_str_eq(r.provider->name, "openai");
		unlink(path);
		free(path);
	}
	reset();
	osh_cfg.llm_providers_path = strdup("/nonexistent/providers.json");
	cr_assert(match("api.openai.com", "/v1/chat/completions", &r));
}

Test(llm_providers, pricing_override_file)
{
	char *path = write_tmp("{\"prices\":[{\"provider\":\"*\",\"model\":\"m-*\",\"input\":1,"
			       "\"output\":3},{\"provider\":\"p\",\"model\":\"m-1\",\"input\":7,"
			       "\"output\":9,\"input_cached\":0.5},{\"provider\":\"p\",\"model\":\"bad\"}]}");
	struct osh_llm_price p;

	osh_cfg.llm_pricing_path = strdup(path);
	cr_assert(osh_llm_price("p", "m-1", &p));
	cr_assert_float_eq(p.input, 7, 1e-9);
	cr_assert_float_eq(p.input_cached, 0.5, 1e-9);
	cr_assert_float_eq(p.cache_write, -1, 1e-9);
	cr_assert(osh_llm_price("anyone", "m-2", &p));
	cr_assert_float_eq(p.output, 3, 1e-9);
	cr_assert_not(osh_llm_price("p", "bad", &p), "an entry without prices");
	cr_assert_not(osh_llm_price("openai", "gpt-4o", &p), "replaced, not merged");
	unlink(path);
	free(path);
}

/* The cheap stages: a path ending like no rule (last byte, then last four
 * bytes) is turned away before any rule is compared. */
Test(llm_providers, path_pre_filter)
{
	static const char *const no[] = { "/index.html", "/api/v2/users/12345/orders",
					  "/v1/models/items", "/static/app.js", "/x" };
	static const char *const maybe[] = { "/v1/chat/completions", "/api/chat", "/v1/messages",
					     "/v1beta/models/g:generateContent", "/model/m/invoke",
					     "/other/chat/completions" };

	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		cr_assert_not(osh_llm_path_maybe(no[i], strlen(no[i])), "%s", no[i]);
	for (size_t i = 0; i < sizeof(maybe) / sizeof(maybe[0]); i++)
		cr_assert(osh_llm_path_maybe(maybe[i], strlen(maybe[i])), "%s", maybe[i]);
}
