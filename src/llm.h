/* LLM calls seen in HTTP exchanges (issue 5): a request whose host and path
 * match the provider table gets an osh_llm tracker that watches the request
 * body and the response (head, then body: framed, decompressed, JSON or
 * server-sent events) and, when the exchange ends, turns the exchange's
 * CLIENT span into an LLM span: gen_ai.* and llm.* attributes, the
 * standard's span name, time to first token, cost, tool-call events.
 *
 * The engines (http_client.c for sockets and TLS sessions, curl_trace.c for
 * libcurl transfers) call these under their connection's lock. Only sampled
 * exchanges get a tracker, and a request that is no LLM call costs the
 * provider match's pre-filter (a few dozen instructions). Memory per
 * tracker is bounded by osh_cfg.llm_body_limit per body.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

struct osh_llm;
struct osh_span;

/* A tracker when a request to @authority (host[:port], may be empty) for
 * @path (the origin-form target: path, maybe a query) is an LLM call, else
 * NULL (also when memory is short). The path is tested first: most
 * requests cost that test only. */
struct osh_llm *osh_llm_start(struct osh_str authority, struct osh_str path);

/* osh_llm_start's first test alone: false when @path (maybe with a query)
 * cannot be an LLM API's. */
bool osh_llm_target_maybe(struct osh_str path);

/* The request's body framing (from its head) and its first byte's stream
 * offset. */
void osh_llm_request_head(struct osh_llm *l, const struct osh_http_request *req,
			  uint64_t body_pos);

/* Request body bytes at stream offset @pos, as the program writes them
 * (framed). Bytes already seen (a write retried after a partial one) are
 * skipped by offset. */
void osh_llm_request_body(struct osh_llm *l, uint64_t pos, const char *p, size_t n);

/* The final response head (@kind: its body framing after the method's
 * rules). @start_ns: when the request started (CLOCK_REALTIME). */
void osh_llm_response_head(struct osh_llm *l, const struct osh_http_response *resp,
			   enum osh_http_body_kind kind, uint64_t start_ns);

/* Response body bytes as read (framed), at @now_ns (CLOCK_REALTIME). */
void osh_llm_response_body(struct osh_llm *l, const char *p, size_t n, uint64_t now_ns);

/* The same, for an engine that walks the body's framing itself (for its
 * span's end and sizes): @w is that walker, started for this response.
 * The tracker walks it while it decodes, so the framing is read once per
 * byte, not twice. Returns the bytes of @p the body holds (up to its
 * end), -1 when its framing is malformed, or OSH_LLM_NOT_WALKED when the
 * tracker does not read this body (then the engine walks it). */
#define OSH_LLM_NOT_WALKED (-2)
ssize_t osh_llm_response_walk(struct osh_llm *l, struct osh_http_body *w, const char *p, size_t n,
			      uint64_t now_ns);

/* The exchange is over: write what was learnt onto @rec (may be NULL) and
 * free @l. True when it set error.type (a provider error): the engine then
 * leaves its own HTTP error.type out. */
bool osh_llm_finish(struct osh_llm *l, struct osh_span *rec);

/* Free @l without recording anything (exchange dropped). NULL is fine. */
void osh_llm_free(struct osh_llm *l);
