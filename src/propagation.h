/* W3C Trace Context (traceparent, tracestate) and W3C Baggage, plus the
 * environment-variable carrier (TRACEPARENT / TRACESTATE / BAGGAGE).
 *
 * Parsers follow trace-context Level 2 (the level OTel requires): lowercase
 * hex only, all-zero ids and version ff invalid, no trailing data for version
 * 00, future versions accepted by prefix, unknown flag bits dropped. Pure
 * functions: any thread, no allocation.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OSH_TRACEPARENT_LEN 55
#define OSH_FLAG_SAMPLED 0x01
#define OSH_FLAG_RANDOM 0x02

/* A span context: the identity of a (possibly remote) parent span. */
struct osh_trace_ctx {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t flags;	/* sampled (0x01) and random (0x02) bits only */
	bool valid;
	bool remote;
};

/* Parse one traceparent value; surrounding spaces/tabs are trimmed. On
 * success fills *ret (valid = true, remote = true) and returns true; *ret is
 * untouched otherwise. */
bool osh_traceparent_parse(const char *s, size_t len, struct osh_trace_ctx *ret);

/* Write "00-<trace>-<span>-<flags>" (exactly 55 chars, no NUL). */
void osh_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
			    char out[OSH_TRACEPARENT_LEN]);

/* True when @s is a valid tracestate value per Level 2: list-members with
 * key grammar (lcalpha/digit start, keychars, <= 256), value grammar
 * (<= 256, printable, no ',' '='), OWS around members, empty members allowed,
 * at most 32 non-empty members. */
bool osh_tracestate_valid(const char *s, size_t len);

/* Copy a valid tracestate into @out trimmed to at most @max chars by removing
 * whole members: first members longer than 128 chars, then from the right.
 * Returns the length written (0 when nothing is left). */
size_t osh_tracestate_truncate(const char *s, size_t len, char *out, size_t max);

/* True when @s is valid baggage: list-members key OWS "=" OWS value with
 * optional ";" properties, token keys, baggage-octet values, at most 64
 * members and 8192 bytes. */
bool osh_baggage_valid(const char *s, size_t len);

/* Copy the members of @s that fit the W3C limits (64 members, 8192 bytes)
 * into @out, dropping malformed members and whole members beyond the limits.
 * Returns the length written. @out needs @len + 1 bytes at most. */
size_t osh_baggage_sanitize(const char *s, size_t len, char *out, size_t outsz);

/* Look up @key (exact, case-sensitive) in a baggage string and write its
 * percent-decoded value (invalid UTF-8 becomes U+FFFD) into @out, NUL
 * terminated and truncated to @outsz - 1. Returns the decoded length, or -1
 * when the key is absent. Properties are not part of the value. */
int osh_baggage_get(const char *s, size_t len, const char *key, char *out, size_t outsz);

/* Percent-decode @len bytes into @out (size @outsz, NUL-terminated);
 * invalid UTF-8 sequences decode to U+FFFD. Returns the decoded length. */
size_t osh_percent_decode(const char *s, size_t len, char *out, size_t outsz);

/* The process-wide context from the environment carrier, read once at load:
 * the remote parent of every span that has no other parent, and the
 * tracestate / baggage lines injected with it. */
struct osh_env_ctx {
	struct osh_trace_ctx parent;	/* valid = false when TRACEPARENT is absent/bad */
	char tracestate[513];		/* valid and truncated, "" when none */
	size_t tracestate_len;
	char *baggage;			/* sanitized BAGGAGE value or NULL */
	size_t baggage_len;
};

extern struct osh_env_ctx osh_env_ctx;

/* Parse TRACEPARENT/TRACESTATE/BAGGAGE values (NULL = unset) into @ret.
 * TRACESTATE is kept only with a valid TRACEPARENT. */
void osh_env_ctx_load(struct osh_env_ctx *ret, const char *traceparent, const char *tracestate,
		      const char *baggage);
void osh_env_ctx_finish(struct osh_env_ctx *ctx);
