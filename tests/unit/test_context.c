/* Tests for src/context.c: the thread's active SERVER-span context, its
 * validation of the strings it keeps, and stale-context detection through
 * the connection's anchor. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "context.h"
#include "propagation.h"

static struct osh_trace_ctx span_ctx(uint8_t fill, uint8_t flags)
{
	struct osh_trace_ctx t = { 0 };

	memset(t.trace_id, fill, 16);
	memset(t.span_id, fill + 1, 8);
	t.flags = flags;
	t.valid = true;
	t.remote = true;	/* must come out false: the server span is local */
	return t;
}

static struct osh_str S(const char *s)
{
	return (struct osh_str){ s, s ? strlen(s) : 0 };
}

static const struct osh_str none = { 0 };

static void assert_view(const char *p, size_t len, const char *want)
{
	cr_assert_eq(len, strlen(want), "length %zu, want %zu (\"%s\")", len, strlen(want), want);
	cr_assert(len == 0 || memcmp(p, want, len) == 0, "got \"%.*s\", want \"%s\"", (int)len, p,
		  want);
}

Test(context, none_at_start)
{
	cr_assert_null(osh_context_current());
}

Test(context, enter_then_current_copies_everything)
{
	struct osh_context_anchor a = { 0 };
	struct osh_trace_ctx t = span_ctx(0x11, OSH_FLAG_SAMPLED);
	char ts[] = "vendor=abc,other=1";
	char bg[] = "user_id=u1,tenant_id=t%201";
	char rid[] = "req-42";
	const struct osh_context *c;

	osh_context_enter(&a, 3, &t, S(ts), S(bg), S(rid));
	/* The caller's buffers are the connection's and get reused. */
	memset(ts, 'x', sizeof(ts) - 1);
	memset(bg, 'x', sizeof(bg) - 1);
	memset(rid, 'x', sizeof(rid) - 1);
	c = osh_context_current();
	cr_assert_not_null(c);
	cr_assert(c->span.valid);
	cr_assert_not(c->span.remote);
	cr_assert_eq(c->span.flags, OSH_FLAG_SAMPLED);
	cr_assert_eq(memcmp(c->span.trace_id, t.trace_id, 16), 0);
	cr_assert_eq(memcmp(c->span.span_id, t.span_id, 8), 0);
	assert_view(c->tracestate, c->tracestate_len, "vendor=abc,other=1");
	assert_view(c->baggage, c->baggage_len, "user_id=u1,tenant_id=t%201");
	assert_view(c->request_id, c->request_id_len, "req-42");
	osh_context_clear();
	cr_assert_null(osh_context_current());
}

Test(context, empty_strings_keep_nothing)
{
	struct osh_context_anchor a = { 0 };
	struct osh_trace_ctx t = span_ctx(0x21, 0);
	const struct osh_context *c;

	osh_context_enter(&a, 0, &t, none, none, none);
	c = osh_context_current();
	cr_assert_not_null(c);
	cr_assert_eq(c->tracestate_len, 0);
	cr_assert_eq(c->baggage_len, 0);
	cr_assert_eq(c->request_id_len, 0);
	cr_assert_eq(c->span.flags, 0);
}

Test(context, stale_once_the_exchange_is_done)
{
	struct osh_context_anchor a = { 0 };
	struct osh_trace_ctx t = span_ctx(0x31, 1);

	osh_context_anchor_done(&a, 5);
	osh_context_enter(&a, 5, &t, none, none, none);
	cr_assert_not_null(osh_context_current());
	/* Exchanges before 5 are over: 5 itself is live. */
	osh_context_anchor_done(&a, 5);
	cr_assert_not_null(osh_context_current());
	osh_context_anchor_done(&a, 6);
	cr_assert_null(osh_context_current());
	/* Cleared for good: a later count going back does not revive it. */
	osh_context_anchor_reset(&a);
	cr_assert_null(osh_context_current());
}

Test(context, stale_after_the_connection_is_reset)
{
	struct osh_context_anchor a = { 0 };
	struct osh_trace_ctx t = span_ctx(0x41, 1);

	osh_context_anchor_done(&a, 7);
	osh_context_enter(&a, 9, &t, none, none, none);
	cr_assert_not_null(osh_context_current());
	/* The slot is reused for another connection: done goes back to 0,
	 * which alone would make seq 9 look live; the generation says no. */
	osh_context_anchor_reset(&a);
	cr_assert_eq(atomic_load(&a.done), 0);
	cr_assert_null(osh_context_current());
}

Test(context, leave_only_the_matching_exchange)
{
	struct osh_context_anchor a = { 0 }, b = { 0 };
	struct osh_trace_ctx t = span_ctx(0x51, 1);

	osh_context_enter(&a, 2, &t, none, none, none);
	osh_context_leave(&a, 1);
	cr_assert_not_null(osh_context_current());
	osh_context_leave(&b, 2);
	cr_assert_not_null(osh_context_current());
	osh_context_leave(&a, 2);
	cr_assert_null(osh_context_current());
}

Test(context, enter_replaces_the_previous_one)
{
	struct osh_context_anchor a = { 0 }, b = { 0 };
	struct osh_trace_ctx t1 = span_ctx(0x61, 1), t2 = span_ctx(0x71, 0);
	const struct osh_context *c;

	osh_context_enter(&a, 0, &t1, S("k=v"), S("user_id=a"), S("r1"));
	osh_context_enter(&b, 4, &t2, none, S("tenant_id=b"), none);
	c = osh_context_current();
	cr_assert_not_null(c);
	cr_assert_eq(memcmp(c->span.trace_id, t2.trace_id, 16), 0);
	cr_assert_eq(c->tracestate_len, 0);
	cr_assert_eq(c->request_id_len, 0);
	assert_view(c->baggage, c->baggage_len, "tenant_id=b");
	/* The first exchange ending says nothing about the second. */
	osh_context_anchor_done(&a, 1);
	osh_context_leave(&a, 0);
	cr_assert_not_null(osh_context_current());
}

Test(context, tracestate_validated_and_trimmed)
{
	struct osh_context_anchor a = { 0 };
	struct osh_trace_ctx t = span_ctx(0x81, 1);
	const struct osh_context *c;
	char big[2048];
	size_t n = 0;

	osh_context_enter(&a, 0, &t, S("foo =1"), none, none);
	c = osh_context_current();
	cr_assert_eq(c->tracestate_len, 0, "invalid tracestate kept");
	osh_context_enter(&a, 0, &t, S("UPPER=1"), none, none);
	cr_assert_eq(osh_context_current()->tracestate_len, 0);

	/* 10 members of ~100 chars: over the 512 kept, trimmed by whole
	 * members from the right. */
	for (int i = 0; i < 10; i++) {
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%sk%d=", i ? "," : "", i);
		memset(big + n, 'a' + i, 96);
		n += 96;
	}
	big[n] = '\0';
	osh_context_enter(&a, 0, &t, (struct osh_str){ big, n }, none, none);
	c = osh_context_current();
	cr_assert_gt(c->tracestate_len, 0);
	cr_assert_leq(c->tracestate_len, OSH_CONTEXT_TRACESTATE_MAX);
	cr_assert(osh_tracestate_valid(c->tracestate, c->tracestate_len));
	cr_assert_eq(memcmp(c->tracestate, "k0=", 3), 0, "members kept from the left");
	cr_assert(c->tracestate[c->tracestate_len - 1] != ',');
}

Test(context, baggage_sanitized)
{
	struct osh_context_anchor a = { 0 };
	struct osh_trace_ctx t = span_ctx(0x91, 1);
	const struct osh_context *c;

	osh_context_enter(&a, 0, &t, none, S("user_id=u1, bad key=1 ,tenant_id=t2"), none);
	c = osh_context_current();
	cr_assert_not_null(c->baggage);
	cr_assert_null(memmem(c->baggage, c->baggage_len, "bad", 3), "malformed member kept");
	cr_assert_not_null(memmem(c->baggage, c->baggage_len, "user_id=u1", 10));
	cr_assert_not_null(memmem(c->baggage, c->baggage_len, "tenant_id=t2", 12));
	cr_assert(osh_baggage_valid(c->baggage, c->baggage_len));

	osh_context_enter(&a, 0, &t, none, S(",,,"), none);
	cr_assert_eq(osh_context_current()->baggage_len, 0);
}

Test(context, baggage_over_the_limit_keeps_whole_members)
{
	static char big[OSH_CONTEXT_BAGGAGE_MAX + 2000];
	struct osh_context_anchor a = { 0 };
	struct osh_trace_ctx t = span_ctx(0xa1, 1);
	const struct osh_context *c;
	size_t n = 0;

	/* 40 members of 249 bytes and their commas: 9,999 bytes in all. */
	for (int i = 0; i < 40; i++) {
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%sk%02d=", i ? "," : "", i);
		memset(big + n, 'v', 245);
		n += 245;
	}
	osh_context_enter(&a, 0, &t, none, (struct osh_str){ big, n }, none);
	c = osh_context_current();
	cr_assert_gt(c->baggage_len, 0);
	cr_assert_lt(c->baggage_len, OSH_CONTEXT_BAGGAGE_MAX);
	cr_assert(osh_baggage_valid(c->baggage, c->baggage_len));
	/* Whole members only: 32 of them fit. */
	cr_assert_eq(c->baggage_len, 32 * 250 - 1, "a member was cut: %zu", c->baggage_len);
}

Test(context, request_id_must_be_safe_to_send)
{
	static const struct {
		const char *v;
		bool kept;
	} cases[] = {
		{ "abc-123", true },
		{ "with inner space", true },
		{ "0123456789abcdef0123456789abcdef", true },
		{ " leading", false },
		{ "trailing ", false },
		{ "cr\rinside", false },
		{ "lf\ninside", false },
		{ "tab\tinside", false },
		{ "nul\0inside", true },	/* cut at the NUL by strlen: "nul" */
		{ "del\x7f", false },
		{ "caf\xc3\xa9", false },
	};
	struct osh_context_anchor a = { 0 };
	struct osh_trace_ctx t = span_ctx(0xb1, 1);
	char longv[OSH_CONTEXT_REQUEST_ID_MAX + 2];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct osh_context *c;

		osh_context_enter(&a, 0, &t, none, none, S(cases[i].v));
		c = osh_context_current();
		cr_assert_eq(c->request_id_len != 0, cases[i].kept, "case %zu \"%s\"", i, cases[i].v);
		if (cases[i].kept)
			assert_view(c->request_id, c->request_id_len, cases[i].v);
	}
	memset(longv, 'r', sizeof(longv) - 1);
	longv[sizeof(longv) - 1] = '\0';
	osh_context_enter(&a, 0, &t, none, none, S(longv));
	cr_assert_eq(osh_context_current()->request_id_len, 0, "over the limit kept");
	longv[OSH_CONTEXT_REQUEST_ID_MAX] = '\0';
	osh_context_enter(&a, 0, &t, none, none, S(longv));
	cr_assert_eq(osh_context_current()->request_id_len, OSH_CONTEXT_REQUEST_ID_MAX);
}

/* ---- threads ------------------------------------------------------------ */

static struct osh_context_anchor shared_anchor;

static void *peek_other_thread(void *arg)
{
	(void)arg;
	return (void *)osh_context_current();
}

static void *finish_on_other_thread(void *arg)
{
	(void)arg;
	/* The response completes on another thread: the reader's record
	 * cannot be touched from here, only the anchor. */
	osh_context_anchor_done(&shared_anchor, 2);
	osh_context_leave(&shared_anchor, 1);
	return NULL;
}

static void *enter_with_strings(void *arg)
{
	struct osh_context_anchor *a = arg;
	struct osh_trace_ctx t = span_ctx(0xc1, 1);
	const struct osh_context *c;

	osh_context_enter(a, 0, &t, S("k=v"), S("user_id=thread"), S("rid-thread"));
	c = osh_context_current();
	/* The thread's buffer is freed at exit by the key destructor (ASan
	 * reports it otherwise). */
	return (void *)(uintptr_t)(c && c->baggage_len == 14);
}

Test(context, per_thread)
{
	struct osh_context_anchor a = { 0 };
	struct osh_trace_ctx t = span_ctx(0xd1, 1);
	pthread_t th;
	void *got = (void *)1;

	osh_context_enter(&a, 0, &t, none, none, none);
	cr_assert_eq(pthread_create(&th, NULL, peek_other_thread, NULL), 0);
	cr_assert_eq(pthread_join(th, &got), 0);
	cr_assert_null(got, "another thread saw this thread's context");
	cr_assert_not_null(osh_context_current());
}

Test(context, response_completed_by_another_thread)
{
	struct osh_trace_ctx t = span_ctx(0xe1, 1);
	pthread_t th;

	osh_context_anchor_done(&shared_anchor, 1);
	osh_context_enter(&shared_anchor, 1, &t, S("a=b"), none, none);
	cr_assert_not_null(osh_context_current());
	cr_assert_eq(pthread_create(&th, NULL, finish_on_other_thread, NULL), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_null(osh_context_current());
}

Test(context, thread_buffer_freed_at_exit)
{
	struct osh_context_anchor a = { 0 };
	pthread_t th;
	void *ok = NULL;

	for (int i = 0; i < 4; i++) {
		cr_assert_eq(pthread_create(&th, NULL, enter_with_strings, &a), 0);
		cr_assert_eq(pthread_join(th, &ok), 0);
		cr_assert_not_null(ok);
	}
}

/* ---- redirection: another thread enters this thread's context ----------- */

struct handoff {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int step;	/* 1: record published; 2: context entered for it */
	struct osh_context_record *rec;
	struct osh_context_anchor anchor;
	bool saw;	/* the thread found the context with its strings */
};

static void wait_step(struct handoff *h, int step)
{
	pthread_mutex_lock(&h->mu);
	while (h->step < step)
		pthread_cond_wait(&h->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

static void set_step(struct handoff *h, int step)
{
	pthread_mutex_lock(&h->mu);
	h->step = step;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

static void *serving_thread(void *arg)
{
	struct handoff *h = arg;
	const struct osh_context *c;

	h->rec = osh_context_self();
	set_step(h, 1);
	wait_step(h, 2);
	c = osh_context_current();
	h->saw = c && c->span.trace_id[0] == 0xa7 && c->request_id_len == 5 &&
		 memcmp(c->request_id, "rq-42", 5) == 0 && c->baggage_len == 9;
	return NULL;
}

/* A serving thread that has published its record and waits; the calling
 * thread then acts on that record. */
static void start_serving(struct handoff *h, pthread_t *th)
{
	cr_assert_eq(pthread_create(th, NULL, serving_thread, h), 0);
	wait_step(h, 1);
	cr_assert_not_null(h->rec);
	osh_context_redirect(h->rec);
}

Test(context, entered_for_another_thread)
{
	struct handoff h = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct osh_trace_ctx t = span_ctx(0xa7, 1);
	pthread_t th;

	start_serving(&h, &th);
	osh_context_enter(&h.anchor, 0, &t, none, S("tenant=ab"), S("rq-42"));
	cr_assert_not_null(osh_context_current(), "current follows the redirection");
	osh_context_redirect(NULL);
	cr_assert_null(osh_context_current(), "the replaying thread's own context is untouched");
	set_step(&h, 2);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert(h.saw, "the serving thread did not find the context entered for it");
}

Test(context, left_for_another_thread)
{
	struct handoff h = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct osh_trace_ctx t = span_ctx(0xa7, 1);
	pthread_t th;

	start_serving(&h, &th);
	osh_context_enter(&h.anchor, 3, &t, none, S("tenant=ab"), S("rq-42"));
	osh_context_leave(&h.anchor, 3);
	osh_context_redirect(NULL);
	set_step(&h, 2);
	cr_assert_eq(pthread_join(th, NULL), 0);
	cr_assert_not(h.saw, "a context left for the thread was still live there");
}

static _Atomic int exit_hook_calls;

static void count_exit(void)
{
	atomic_fetch_add(&exit_hook_calls, 1);
}

static void *publish_and_exit(void *arg)
{
	(void)arg;
	return osh_context_self();
}

Test(context, exit_hook_runs_when_a_published_thread_ends)
{
	pthread_t th;
	void *rec = NULL;

	osh_context_on_exit(count_exit);
	cr_assert_eq(pthread_create(&th, NULL, publish_and_exit, NULL), 0);
	cr_assert_eq(pthread_join(th, &rec), 0);
	osh_context_on_exit(NULL);
	cr_assert_not_null(rec);
	cr_assert_eq(atomic_load(&exit_hook_calls), 1);
}
