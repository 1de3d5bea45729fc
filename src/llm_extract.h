/* What an LLM call's JSON says: the request's parameters, the response's
 * ids, finish reasons, token usage, tool calls and errors, from whole bodies
 * or from a stream's events, for each API flavour (llm_providers.h); and
 * writing it all onto the exchange's span.
 *
 * JSON is parsed with the lazily loaded jansson (lazylib.h); without it
 * nothing is extracted. Everything kept is bounded: strings are cut to
 * fixed buffers, lists to fixed counts, captured content to
 * OSH_LLM_CONTENT_MAX per direction. Caller-owned state, one thread at a
 * time.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

struct osh_span;

#define OSH_LLM_STR_MAX 128
#define OSH_LLM_MAX_FINISH 8
#define OSH_LLM_MAX_STOP 4
/* Tool calls recorded as span events (the rest are counted). */
#define OSH_LLM_MAX_TOOLS OSH_SPAN_MAX_EVENTS
/* Text kept per direction for content capture. */
#define OSH_LLM_CONTENT_MAX (64 * 1024)

struct osh_llm_tool_call {
	char name[64];
	char id[64];
};

/* Text of the messages of one direction (content capture): roles and
 * their text, kept as a compact list. */
struct osh_llm_text {
	char *buf;		/* "role\0text\0role\0text\0..." */
	size_t len;
	bool cut;		/* more text than OSH_LLM_CONTENT_MAX */
};

struct osh_llm_call {
	uint8_t flavour;	/* enum osh_llm_flavour */
	uint8_t operation;	/* enum osh_llm_operation */

	/* Request: one block, request_model up to response_id (the request
	 * memo in llm_extract.c keeps and restores it whole). */
	char request_model[OSH_LLM_STR_MAX];
	int64_t max_tokens;	/* -1: not given */
	int64_t seed;
	int64_t choice_count;	/* -1: not given */
	int64_t dimensions;	/* embeddings: -1 not given */
	double temperature, top_p, top_k, frequency_penalty, presence_penalty;
	bool has_temperature, has_top_p, has_top_k, has_frequency_penalty, has_presence_penalty;
	bool has_seed;
	bool stream;		/* the request asked for a stream */
	bool include_usage;	/* OpenAI stream_options.include_usage */
	uint8_t n_stop;
	char stop[OSH_LLM_MAX_STOP][64];
	char encoding_format[16];

	/* Response. */
	char response_id[OSH_LLM_STR_MAX];
	char response_model[OSH_LLM_STR_MAX];
	char system_fingerprint[64];
	uint8_t n_finish;
	char finish[OSH_LLM_MAX_FINISH][32];
	int64_t input_tokens;	/* as gen_ai.usage.input_tokens counts them; -1 unknown */
	int64_t output_tokens;
	int64_t cache_read_tokens;
	int64_t cache_write_tokens;
	int64_t reasoning_tokens;
	uint8_t n_tools;
	uint16_t dropped_tools;
	struct osh_llm_tool_call tools[OSH_LLM_MAX_TOOLS];
	char error_type[64];	/* the provider's error code or type, "" when none */

	/* Anthropic counts input without the cache; kept apart until the end. */
	int64_t anthropic_input, anthropic_cache_read, anthropic_cache_write;

	bool got_output;	/* a streamed event carried output already */

	/* Content capture (only filled when asked). */
	bool capture;
	struct osh_llm_text input;
	struct osh_llm_text output;
	char output_role[16];
};

/* A fresh call of @flavour / @operation; @capture: keep message text. */
void osh_llm_call_init(struct osh_llm_call *c, uint8_t flavour, uint8_t operation, bool capture);
void osh_llm_call_free(struct osh_llm_call *c);

/* The request body (@json, @n bytes; may be cut short: then little is
 * found). Without content capture a request that reads as the last one
 * did once its content fields are left out (the same model and
 * parameters) is not parsed again: its fields come from a memo. */
void osh_llm_extract_request(struct osh_llm_call *c, const char *json, size_t n);

/* Tests: how many requests the memo answered. */
uint64_t osh_llm_request_memo_hits(void);

/* A whole (non-streamed) response body, with the HTTP @status. */
void osh_llm_extract_response(struct osh_llm_call *c, int status, const char *json, size_t n);

/* A request body made cheaper to parse when content is not captured:
 * strings longer than @max emptied, and every top-level field the
 * extraction does not read without capture left out with its comma (the
 * conversation, tools, system prompt, a response_format's schema,
 * metadata, the end user's id, ...). @out has room for @n bytes; returns
 * the bytes written. Valid JSON stays valid, the fields kept byte for
 * byte. */
size_t osh_llm_slim_request(const char *in, size_t n, char *out, size_t max);

/* An OpenAI stream chunk made cheaper to parse when content is not
 * captured: the top-level fields never read (object, created,
 * system_fingerprint, service_tier, obfuscation) removed, and the response
 * id and model too when @id_known; every "arguments" text emptied, every
 * "content" text cut to one character; strings over 200 bytes emptied;
 * at any depth, the refusal and logprobs fields and every field whose
 * value is null (read as absent) removed. Once the call's first output
 * came (@output_seen, with @id_known), the content and arguments fields go
 * too (tool calls keep their id and name).
 * @out has room for @n bytes; returns the bytes written. Valid JSON stays
 * valid. */
size_t osh_llm_slim_chunk(const char *in, size_t n, char *out, bool id_known, bool output_seen);

/* One streamed event (SSE: @event name and @data; NDJSON: the line as
 * @data). Returns true when it carried generated output (text, a tool
 * call): the first such event is the time to first token. */
bool osh_llm_extract_event(struct osh_llm_call *c, const char *event, size_t event_len,
			   const char *data, size_t data_len);

/* Write the call on @rec: the standard's span name (llm.completion,
 * llm.embedding), gen_ai.request.* / gen_ai.response.* / gen_ai.usage.*,
 * error.type (true is returned when it was set: the caller then leaves its
 * own HTTP error.type out), tool-call events, and with @capture_in /
 * @capture_out the redacted messages (gen_ai.input.messages /
 * gen_ai.output.messages, JSON strings cut to fit the record).
 * @path_model: the model the path named (Gemini, Bedrock), used when the
 * body names none. */
bool osh_llm_call_apply(const struct osh_llm_call *c, struct osh_span *rec, const char *path_model,
			bool capture_in, bool capture_out);

/* The model the call is priced by: the response's, else the request's. */
const char *osh_llm_call_model(const struct osh_llm_call *c, const char *path_model);
