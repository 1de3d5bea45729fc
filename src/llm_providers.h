/* Which requests are LLM calls, whose, and what they cost.
 *
 * The tables are data: data/llm-providers.json and data/llm-pricing.json,
 * compiled in at build time (scripts/gen-llm-tables.py), or files named by
 * OTELSHIM_LLM_PROVIDERS / OTELSHIM_LLM_PRICING, parsed with the lazily
 * loaded jansson at first use and then used instead of the built-in ones
 * (a file that does not parse is reported once and the built-in table
 * stays).
 *
 * osh_llm_match() runs for every sampled client request the shim sees: a
 * path no rule can match is turned away by its last byte (a few
 * instructions); no allocation, no lock, no syscall after the first call.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct osh_span;

/* The API's shape (decides how bodies are read). */
enum osh_llm_flavour {
	OSH_LLM_OPENAI = 1,	/* and every OpenAI-compatible server */
	OSH_LLM_ANTHROPIC,
	OSH_LLM_GEMINI,
	OSH_LLM_OLLAMA,
	OSH_LLM_BEDROCK,
	OSH_LLM_FLAVOURS,
};

/* gen_ai.operation.name */
enum osh_llm_operation {
	OSH_LLM_OP_CHAT = 1,
	OSH_LLM_OP_TEXT_COMPLETION,
	OSH_LLM_OP_EMBEDDINGS,
	OSH_LLM_OP_GENERATE_CONTENT,
};

struct osh_llm_provider {
	const char *name;	/* gen_ai.provider.name (and llm.provider.name) */
	const char *system;	/* gen_ai.system, the older spelling */
	const char *const *hosts; /* lowercase; one '*' matches any run of characters */
	size_t n_hosts;
};

#define OSH_LLM_ENDPOINT_MAX 256
#define OSH_LLM_MODEL_MAX 128

struct osh_llm_route {
	const struct osh_llm_provider *provider;
	uint8_t flavour;	/* enum osh_llm_flavour */
	uint8_t operation;	/* enum osh_llm_operation */
	bool stream;		/* the endpoint itself streams (Gemini, Bedrock) */
	uint8_t path_model_len;
	char path_model[OSH_LLM_MODEL_MAX];	/* Gemini and Bedrock name the model in the path */
	uint16_t endpoint_len;
	char endpoint[OSH_LLM_ENDPOINT_MAX];	/* host + path: llm.provider.endpoint */
};

/* False when no rule can match @path (no query): the pre-filter alone, for
 * callers that can then skip the rest (splitting the host, ...). */
bool osh_llm_path_maybe(const char *path, size_t path_len);

/* Whether a request to @host (no port; may be empty) for @path (no query)
 * is an LLM call; fills @ret when it is. */
bool osh_llm_match(const char *host, size_t host_len, const char *path, size_t path_len,
		   struct osh_llm_route *ret);

const char *osh_llm_operation_name(enum osh_llm_operation op);

/* gen_ai.operation.name, gen_ai.provider.name, gen_ai.system,
 * llm.provider.name and llm.provider.endpoint on @rec. */
void osh_llm_route_apply(const struct osh_llm_route *route, struct osh_span *rec);

/* USD per million tokens; a negative field is "not given". */
struct osh_llm_price {
	double input;
	double output;
	double input_cached;	/* cache reads */
	double cache_write;	/* cache creation */
};

/* The price of @model at @provider: an exact entry, else the longest
 * prefix entry; entries for provider "*" apply to any. False: unknown. */
bool osh_llm_price(const char *provider, const char *model, struct osh_llm_price *ret);

/* Cost of a call: @input tokens in all (cache reads and writes included,
 * as gen_ai.usage.input_tokens counts them), of which @cache_read and
 * @cache_write; @output tokens. */
void osh_llm_cost(const struct osh_llm_price *p, int64_t input, int64_t output,
		  int64_t cache_read, int64_t cache_write, double *ret_input_usd,
		  double *ret_output_usd);

/* Tests: forget the loaded tables (the next call loads them again, from
 * the paths in osh_cfg). Not thread-safe. */
void osh_llm_tables_reset(void);
