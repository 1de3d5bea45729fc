/* The active context of a thread: the SERVER span whose request the thread
 * is serving (docs/ARCHITECTURE.md, "Thread context").
 *
 * When a server connection's request head has been read, the reading thread
 * enters that exchange's context; client requests the thread starts while it
 * is active become children of the SERVER span and carry its tracestate,
 * baggage and x-request-id. The context ends when the exchange's response is
 * complete. The response may be written by another thread, which cannot
 * reach the reader's thread-local record; so the record also names the
 * exchange (an anchor in the connection's slot, the exchange's sequence
 * number and the anchor's generation) and is treated as cleared as soon as
 * the anchor says that exchange is over. Slots are type-stable memory, so
 * reading an anchor is always safe.
 *
 * The record is initial-exec TLS (no __tls_get_addr). Its strings live in a
 * per-thread buffer allocated the first time a context with any of them is
 * entered and freed when the thread exits.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "propagation.h"

/* Longest values a context keeps (longer tracestates are trimmed by whole
 * members; a longer x-request-id is not propagated). Baggage is kept up to
 * the W3C limit of 8192 bytes. */
#define OSH_CONTEXT_TRACESTATE_MAX 512
#define OSH_CONTEXT_BAGGAGE_MAX 8192
#define OSH_CONTEXT_REQUEST_ID_MAX 256

/* Liveness of the exchanges of one connection, kept in its slot outside the
 * state that is reset: exchange @seq is live while gen is what it was when
 * the context was entered and done <= seq. */
struct osh_context_anchor {
	_Atomic uint32_t gen;	/* bumped whenever the slot's state is reset */
	_Atomic uint64_t done;	/* exchanges (by sequence) that are over */
};

struct osh_context {
	struct osh_trace_ctx span;	/* the SERVER span (valid, remote = false) */
	const char *tracestate;		/* the incoming tracestate, valid, trimmed */
	size_t tracestate_len;
	const char *baggage;		/* the incoming baggage, sanitized */
	size_t baggage_len;
	const char *request_id;		/* the incoming x-request-id, printable ASCII */
	size_t request_id_len;
};

/* Make @span the calling thread's context for exchange @seq of the
 * connection whose anchor is @anchor, replacing any earlier one. The strings
 * are validated and copied (tracestate: only when valid, trimmed to
 * OSH_CONTEXT_TRACESTATE_MAX; baggage: sanitized; x-request-id: only when
 * made of printable ASCII and at most OSH_CONTEXT_REQUEST_ID_MAX bytes);
 * empty views are fine. Allocates the thread's buffer once (malloc) when a
 * string must be kept; without memory the strings are dropped, the span
 * still becomes the context. App thread. */
void osh_context_enter(const struct osh_context_anchor *anchor, uint64_t seq,
		       const struct osh_trace_ctx *span, struct osh_str tracestate,
		       struct osh_str baggage, struct osh_str request_id);

/* Clear the calling thread's context if it is exchange @seq of @anchor
 * (the response was completed on the thread that read the request). */
void osh_context_leave(const struct osh_context_anchor *anchor, uint64_t seq);

/* The calling thread's live context, or NULL (none entered, or its
 * exchange is over: then it is cleared). A load when there is none, a few
 * more when there is. The pointer is valid until the thread enters or
 * clears a context. */
const struct osh_context *osh_context_current(void);

/* Forget the calling thread's context. */
void osh_context_clear(void);

/* A thread's record, as a handle another thread can act on (deferred
 * observation: the thread that replays a logged call enters the context of
 * the thread that made it). */
struct osh_context_record;

/* The calling thread's record; allocates its string buffer now, so that a
 * context entered into it from elsewhere keeps its strings, and so that the
 * exit hook runs when the thread ends. NULL without memory: nothing may then
 * be redirected to this thread. App thread. */
struct osh_context_record *osh_context_self(void);

/* Until called again with NULL (or the caller's own record), enter, leave
 * and current on the calling thread act on @r. The caller must make sure
 * @r's thread neither runs them nor exits meanwhile (a lock both take). */
void osh_context_redirect(struct osh_context_record *r);

/* @hook runs on a thread that exits with a string buffer, before its
 * record goes away: whatever could still be redirected to the record must
 * be done by then. */
void osh_context_on_exit(void (*hook)(void));

/* The connection's exchanges before @done are over (release: a reader on
 * another thread that sees it also sees everything before). */
static inline void osh_context_anchor_done(struct osh_context_anchor *a, uint64_t done)
{
	atomic_store_explicit(&a->done, done, memory_order_release);
}

/* The connection's state is being reset: every context entered under the
 * old generation is over. The generation moves first, so a reader that sees
 * the reset count also sees the new generation. */
static inline void osh_context_anchor_reset(struct osh_context_anchor *a)
{
	atomic_fetch_add_explicit(&a->gen, 1, memory_order_release);
	atomic_store_explicit(&a->done, 0, memory_order_release);
}
