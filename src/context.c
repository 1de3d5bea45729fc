/* The thread's active SERVER-span context (see context.h). */
#include "buildconf.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"

/* Where the strings of a context go: one buffer per thread, sized for the
 * largest of each, allocated on first need. */
#define BUF_SIZE (OSH_CONTEXT_TRACESTATE_MAX + OSH_CONTEXT_BAGGAGE_MAX + OSH_CONTEXT_REQUEST_ID_MAX)

struct record {
	const struct osh_context_anchor *anchor;	/* NULL: no context */
	uint32_t gen;
	uint64_t seq;
	char *buf;
	struct osh_context ctx;
};

static __thread struct record tls __attribute__((tls_model("initial-exec")));

/* While a thread of the shim replays calls another thread logged
 * (http_server.c, deferred observation), enter and leave act on the
 * logging thread's record instead of its own. */
static __thread struct record *redirect __attribute__((tls_model("initial-exec")));

/* Run at a thread's exit, before its record goes away (see
 * osh_context_on_exit). */
static void (*exit_hook)(void);

static inline struct record *rec(void)
{
	return redirect ? redirect : &tls;
}

/* The buffer is freed by a key destructor when the thread exits (threads
 * that serve one connection each come and go). */
static pthread_key_t buf_key;
static bool key_ok;

static void free_buf(void *p)
{
	/* Nothing may still be about to write into this record. */
	if (exit_hook)
		exit_hook();
	/* The thread is going; its record must not point at freed memory if a
	 * later destructor round still runs hooks on it. */
	if (tls.buf == p) {
		tls.buf = NULL;
		tls.anchor = NULL;
	}
	free(p);
}

static void make_key(void)
{
	key_ok = pthread_key_create(&buf_key, free_buf) == 0;
}

static char *thread_buf(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	char *b;

	if (tls.buf)
		return tls.buf;
	pthread_once(&once, make_key);
	if (!key_ok)
		return NULL;
	b = malloc(BUF_SIZE);
	if (!b)
		return NULL;
	if (pthread_setspecific(buf_key, b) != 0) {
		free(b);
		return NULL;
	}
	tls.buf = b;
	return b;
}

/* x-request-id goes into outgoing heads verbatim: only visible ASCII and
 * inner spaces, nothing that could end or fold a header line. */
static bool request_id_ok(struct osh_str s)
{
	if (!s.len || s.len > OSH_CONTEXT_REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (c < 0x20 || c > 0x7e)
			return false;
	}
	return s.p[0] != ' ' && s.p[s.len - 1] != ' ';
}

void osh_context_enter(const struct osh_context_anchor *anchor, uint64_t seq,
		       const struct osh_trace_ctx *span, struct osh_str tracestate,
		       struct osh_str baggage, struct osh_str request_id)
{
	struct record *r = rec();
	struct osh_context *ctx = &r->ctx;
	bool ts = tracestate.len && osh_tracestate_valid(tracestate.p, tracestate.len);
	bool bg = baggage.len > 0;
	bool rid = request_id_ok(request_id);
	char *b = NULL;

	/* Published last: a signal handler that runs a hook in between sees
	 * either no context or a complete one. */
	r->anchor = NULL;
	memset(ctx, 0, sizeof(*ctx));
	ctx->span = *span;
	ctx->span.valid = true;
	ctx->span.remote = false;
	/* A redirected record has its buffer already (osh_context_self), or
	 * keeps no strings. */
	if ((ts || bg || rid) && (b = (r == &tls ? thread_buf() : r->buf)) != NULL) {
		char *p = b;

		if (ts) {
			ctx->tracestate_len = osh_tracestate_truncate(tracestate.p, tracestate.len, p,
								      OSH_CONTEXT_TRACESTATE_MAX);
			ctx->tracestate = p;
			p += OSH_CONTEXT_TRACESTATE_MAX;
		}
		if (bg) {
			/* Members that would not fit are dropped whole, as the
			 * W3C limits allow. */
			ctx->baggage_len = osh_baggage_sanitize(baggage.p, baggage.len, p,
								OSH_CONTEXT_BAGGAGE_MAX);
			ctx->baggage = ctx->baggage_len ? p : NULL;
			p += OSH_CONTEXT_BAGGAGE_MAX;
		}
		if (rid) {
			memcpy(p, request_id.p, request_id.len);
			ctx->request_id = p;
			ctx->request_id_len = request_id.len;
		}
	}
	r->gen = atomic_load_explicit(&anchor->gen, memory_order_acquire);
	r->seq = seq;
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	r->anchor = anchor;
}

void osh_context_leave(const struct osh_context_anchor *anchor, uint64_t seq)
{
	struct record *r = rec();

	if (r->anchor == anchor && r->seq == seq)
		r->anchor = NULL;
}

void osh_context_clear(void)
{
	tls.anchor = NULL;
}

const struct osh_context *osh_context_current(void)
{
	struct record *r = rec();
	const struct osh_context_anchor *a = r->anchor;
	uint64_t done;

	if (__builtin_expect(!a, 1))
		return NULL;
	/* done first: a reset stores the new generation before zeroing it
	 * (osh_context_anchor_reset). */
	done = atomic_load_explicit(&a->done, memory_order_acquire);
	if (atomic_load_explicit(&a->gen, memory_order_acquire) != r->gen || done > r->seq) {
		r->anchor = NULL;
		return NULL;
	}
	return &r->ctx;
}

struct osh_context_record *osh_context_self(void)
{
	/* The buffer now, on the owning thread: its key destructor must be
	 * this thread's, and it is what runs the exit hook. */
	if (!thread_buf())
		return NULL;
	return (struct osh_context_record *)&tls;
}

void osh_context_redirect(struct osh_context_record *r)
{
	redirect = r == (struct osh_context_record *)&tls ? NULL : (struct record *)r;
}

void osh_context_on_exit(void (*hook)(void))
{
	exit_hook = hook;
}
