/* Tests for src/queue.c: the bounded MPSC span queue.
 *
 * The queue only moves pointers, so tests push fake ones (small integers
 * cast to struct osh_span *) and never dereference them. The threaded test
 * retries pushes on a full queue instead of sleeping: nothing depends on
 * timing, only on every pointer arriving exactly once. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

static struct osh_span *fake(uintptr_t v)
{
	return (struct osh_span *)(v);
}

static uintptr_t unfake(struct osh_span *s)
{
	return (uintptr_t)s;
}

Test(queue, init_and_empty_pop)
{
	struct osh_queue q;

	cr_assert_eq(osh_queue_init(&q, 8), 0);
	cr_assert_eq(q.capacity, 8);
	cr_assert_null(osh_queue_pop(&q));
	cr_assert_eq(osh_queue_size(&q), 0);
	osh_queue_finish(&q);
	cr_assert_null(q.cells);
	cr_assert_eq(q.capacity, 0);
}

Test(queue, capacity_zero_becomes_one)
{
	struct osh_queue q;

	cr_assert_eq(osh_queue_init(&q, 0), 0);
	cr_assert_eq(q.capacity, 1);
	cr_assert(osh_queue_push(&q, fake(1)));
	cr_assert_not(osh_queue_push(&q, fake(2)));
	cr_assert_eq(unfake(osh_queue_pop(&q)), 1);
	cr_assert_null(osh_queue_pop(&q));
	osh_queue_finish(&q);
}

/* Capacities that are and are not powers of two. */
Test(queue, fill_to_capacity_then_refuse_fifo)
{
	static const uint32_t caps[] = {1, 2, 3, 7, 8, 100, 2048};

	for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		struct osh_queue q;
		uint32_t cap = caps[c];

		cr_assert_eq(osh_queue_init(&q, cap), 0);
		for (uint32_t i = 0; i < cap; i++) {
			cr_assert(osh_queue_push(&q, fake(i + 1)), "cap %u push %u", cap, i);
			cr_assert_eq(osh_queue_size(&q), i + 1);
		}
		cr_assert_not(osh_queue_push(&q, fake(999999)), "cap %u: accepted past capacity",
			      cap);
		cr_assert_not(osh_queue_push(&q, fake(999999)));
		cr_assert_eq(osh_queue_size(&q), cap);
		for (uint32_t i = 0; i < cap; i++)
			cr_assert_eq(unfake(osh_queue_pop(&q)), i + 1, "cap %u pop %u", cap, i);
		cr_assert_null(osh_queue_pop(&q));
		cr_assert_eq(osh_queue_size(&q), 0);
		/* One freed cell takes one more span. */
		cr_assert(osh_queue_push(&q, fake(7)));
		cr_assert_eq(unfake(osh_queue_pop(&q)), 7);
		osh_queue_finish(&q);
	}
}

Test(queue, refuse_then_accept_after_pop)
{
	struct osh_queue q;

	cr_assert_eq(osh_queue_init(&q, 3), 0);
	for (int i = 1; i <= 3; i++)
		cr_assert(osh_queue_push(&q, fake(i)));
	cr_assert_not(osh_queue_push(&q, fake(4)));
	cr_assert_eq(unfake(osh_queue_pop(&q)), 1);
	cr_assert(osh_queue_push(&q, fake(4)));
	cr_assert_not(osh_queue_push(&q, fake(5)));
	for (int i = 2; i <= 4; i++)
		cr_assert_eq(unfake(osh_queue_pop(&q)), i);
	cr_assert_null(osh_queue_pop(&q));
	osh_queue_finish(&q);
}

/* Many laps around a small ring with a varying fill level: order is kept
 * and the cell sequence numbers stay consistent across wrap-around. */
Test(queue, wrap_around_many_laps)
{
	struct osh_queue q;
	uintptr_t next_in = 1, next_out = 1;
	unsigned rng = 12345;

	cr_assert_eq(osh_queue_init(&q, 5), 0);
	for (int round = 0; round < 20000; round++) {
		unsigned pushes, pops;

		rng = rng * 1103515245u + 12345u;
		pushes = (rng >> 16) % 7;
		rng = rng * 1103515245u + 12345u;
		pops = (rng >> 16) % 7;
		for (unsigned i = 0; i < pushes; i++) {
			bool ok = osh_queue_push(&q, fake(next_in));
			cr_assert_eq(ok, next_in - next_out < 5, "round %d", round);
			if (ok)
				next_in++;
		}
		for (unsigned i = 0; i < pops; i++) {
			/* The warming hint changes nothing. */
			struct osh_span *s;

			osh_queue_warm_tail(&q);
			s = osh_queue_pop(&q);
			if (next_out == next_in) {
				cr_assert_null(s);
			} else {
				cr_assert_eq(unfake(s), next_out, "round %d", round);
				next_out++;
			}
		}
		cr_assert_eq(osh_queue_size(&q), next_in - next_out);
	}
	cr_assert_gt(next_out, 20000); /* the ring went round many times */
	osh_queue_finish(&q);
}

Test(queue, reset_forgets_everything)
{
	struct osh_queue q;

	cr_assert_eq(osh_queue_init(&q, 4), 0);
	/* Move head and tail off zero first. */
	for (int i = 1; i <= 6; i++) {
		cr_assert(osh_queue_push(&q, fake(i)));
		if (i % 2 == 0) {
			cr_assert_not_null(osh_queue_pop(&q));
			cr_assert_not_null(osh_queue_pop(&q));
		}
	}
	cr_assert(osh_queue_push(&q, fake(10)));
	cr_assert(osh_queue_push(&q, fake(11)));
	osh_queue_reset(&q);
	cr_assert_eq(osh_queue_size(&q), 0);
	cr_assert_null(osh_queue_pop(&q));
	/* Full capacity is available again, in order. */
	for (int i = 1; i <= 4; i++)
		cr_assert(osh_queue_push(&q, fake(100 + i)));
	cr_assert_not(osh_queue_push(&q, fake(200)));
	for (int i = 1; i <= 4; i++)
		cr_assert_eq(unfake(osh_queue_pop(&q)), 100 + i);
	cr_assert_null(osh_queue_pop(&q));
	osh_queue_finish(&q);
}

/* ---- threads -------------------------------------------------------------- */

#define PRODUCERS    6
#define PER_PRODUCER 40000

struct producer {
	struct osh_queue *q;
	uintptr_t id;
	uint64_t refused;
};

/* Pointer value: producer id in the high bits, 1-based sequence below. */
static void *produce(void *arg)
{
	struct producer *p = arg;

	for (uintptr_t i = 1; i <= PER_PRODUCER; i++) {
		while (!osh_queue_push(p->q, fake(p->id << 20 | i))) {
			p->refused++;
			sched_yield();
		}
	}
	return NULL;
}

static void run_mpsc(uint32_t capacity)
{
	struct osh_queue q;
	pthread_t th[PRODUCERS];
	struct producer pr[PRODUCERS];
	uintptr_t last[PRODUCERS + 1] = {0};
	static unsigned char seen[PRODUCERS + 1][PER_PRODUCER + 1];
	uint64_t got = 0;

	memset(seen, 0, sizeof(seen));
	cr_assert_eq(osh_queue_init(&q, capacity), 0);
	for (int i = 0; i < PRODUCERS; i++) {
		pr[i] = (struct producer){.q = &q, .id = (uintptr_t)i + 1};
		cr_assert_eq(pthread_create(&th[i], NULL, produce, &pr[i]), 0);
	}
	while (got < (uint64_t)PRODUCERS * PER_PRODUCER) {
		struct osh_span *s = osh_queue_pop(&q);
		uintptr_t v, id, seq;

		if (!s) {
			sched_yield();
			continue;
		}
		v = unfake(s);
		id = v >> 20;
		seq = v & ((1u << 20) - 1);
		cr_assert(id >= 1 && id <= PRODUCERS, "bad pointer %#lx", (unsigned long)v);
		cr_assert(seq >= 1 && seq <= PER_PRODUCER, "bad pointer %#lx", (unsigned long)v);
		cr_assert_eq(seen[id][seq], 0, "pointer %#lx popped twice", (unsigned long)v);
		seen[id][seq] = 1;
		/* One producer's pushes come out in the order it made them. */
		cr_assert_gt(seq, last[id], "producer %lu out of order", (unsigned long)id);
		last[id] = seq;
		got++;
	}
	for (int i = 0; i < PRODUCERS; i++)
		cr_assert_eq(pthread_join(th[i], NULL), 0);
	cr_assert_null(osh_queue_pop(&q));
	for (int id = 1; id <= PRODUCERS; id++)
		cr_assert_eq(last[id], PER_PRODUCER);
	osh_queue_finish(&q);
}

Test(queue, mpsc_every_pointer_once_small_ring, .timeout = 60)
{
	run_mpsc(4);
}

Test(queue, mpsc_every_pointer_once_large_ring, .timeout = 60)
{
	run_mpsc(1000);
}

/* Several consumers (the record pool pops from any thread): every pointer
 * still comes out exactly once. */
#define CONSUMERS 4

struct consumer {
	struct osh_queue *q;
	_Atomic uint64_t *popped;
	_Atomic unsigned char (*seen)[PER_PRODUCER + 1];
	_Atomic int *dupes;
};

static void *consume(void *arg)
{
	struct consumer *c = arg;

	while (atomic_load(c->popped) < (uint64_t)PRODUCERS * PER_PRODUCER) {
		struct osh_span *s = osh_queue_pop(c->q);
		uintptr_t v, id, seq;

		if (!s) {
			sched_yield();
			continue;
		}
		v = unfake(s);
		id = v >> 20;
		seq = v & ((1u << 20) - 1);
		if (id < 1 || id > PRODUCERS || seq < 1 || seq > PER_PRODUCER ||
		    atomic_exchange(&c->seen[id][seq], 1) != 0)
			atomic_fetch_add(c->dupes, 1);
		atomic_fetch_add(c->popped, 1);
	}
	return NULL;
}

static void run_mpmc(uint32_t capacity)
{
	struct osh_queue q;
	pthread_t pth[PRODUCERS], cth[CONSUMERS];
	struct producer pr[PRODUCERS];
	struct consumer co[CONSUMERS];
	static _Atomic unsigned char seen[PRODUCERS + 1][PER_PRODUCER + 1];
	_Atomic uint64_t popped = 0;
	_Atomic int dupes = 0;

	memset((void *)seen, 0, sizeof(seen));
	cr_assert_eq(osh_queue_init(&q, capacity), 0);
	for (int i = 0; i < CONSUMERS; i++) {
		co[i] = (struct consumer){&q, &popped, seen, &dupes};
		cr_assert_eq(pthread_create(&cth[i], NULL, consume, &co[i]), 0);
	}
	for (int i = 0; i < PRODUCERS; i++) {
		pr[i] = (struct producer){.q = &q, .id = (uintptr_t)i + 1};
		cr_assert_eq(pthread_create(&pth[i], NULL, produce, &pr[i]), 0);
	}
	for (int i = 0; i < PRODUCERS; i++)
		cr_assert_eq(pthread_join(pth[i], NULL), 0);
	for (int i = 0; i < CONSUMERS; i++)
		cr_assert_eq(pthread_join(cth[i], NULL), 0);
	cr_assert_eq(atomic_load(&dupes), 0);
	cr_assert_eq(atomic_load(&popped), (uint64_t)PRODUCERS * PER_PRODUCER);
	for (int id = 1; id <= PRODUCERS; id++)
		for (int sq = 1; sq <= PER_PRODUCER; sq++)
			cr_assert_eq(seen[id][sq], 1, "pointer %d/%d never popped", id, sq);
	cr_assert_null(osh_queue_pop(&q));
	osh_queue_finish(&q);
}

Test(queue, mpmc_every_pointer_once_small_ring, .timeout = 60)
{
	run_mpmc(3);
}

Test(queue, mpmc_every_pointer_once_large_ring, .timeout = 60)
{
	run_mpmc(1024);
}

/* A push in two steps, as a producer preempted between them leaves it:
 * the claimed cell counts in the size, pops stop there until it is filled,
 * and spans pushed behind it keep their order. */
Test(queue, claimed_cell_holds_up_pops_until_filled)
{
	struct osh_queue q;
	uint64_t pos;

	cr_assert_eq(osh_queue_init(&q, 8), 0);
	cr_assert_not(osh_queue_head_unfilled(&q, UINT64_MAX), "empty");
	cr_assert_not(osh_queue_holds_below(&q, UINT64_MAX), "empty");
	cr_assert(osh_queue_push(&q, fake(1)));
	cr_assert(osh_queue_claim(&q, &pos));
	cr_assert_eq(pos, 1);
	cr_assert(osh_queue_push(&q, fake(3)));
	cr_assert_eq(osh_queue_size(&q), 3);
	cr_assert_not(osh_queue_head_unfilled(&q, UINT64_MAX), "the oldest is filled");
	cr_assert_eq(osh_queue_claimed(&q), 3);
	cr_assert_eq(unfake(osh_queue_pop(&q)), 1);
	cr_assert(osh_queue_head_unfilled(&q, UINT64_MAX));
	cr_assert(osh_queue_head_unfilled(&q, 2), "position 1 is below 2");
	cr_assert_not(osh_queue_head_unfilled(&q, 1), "claimed at or after the mark");
	cr_assert(osh_queue_holds_below(&q, 2), "unfilled, still queued");
	cr_assert_not(osh_queue_holds_below(&q, 1), "queued at or after the mark");
	cr_assert_null(osh_queue_pop(&q), "the claimed cell is not filled yet");
	cr_assert_null(osh_queue_pop(&q));
	cr_assert_eq(osh_queue_size(&q), 2);
	osh_queue_fill(&q, pos, fake(2));
	cr_assert_not(osh_queue_head_unfilled(&q, UINT64_MAX));
	cr_assert(osh_queue_holds_below(&q, 2), "filled now, and still owed to a flush marked at 2");
	cr_assert_eq(unfake(osh_queue_pop(&q)), 2);
	cr_assert_not(osh_queue_holds_below(&q, 2), "popped");
	cr_assert(osh_queue_holds_below(&q, 3));
	cr_assert_eq(unfake(osh_queue_pop(&q)), 3);
	cr_assert_null(osh_queue_pop(&q));
	cr_assert_not(osh_queue_holds_below(&q, UINT64_MAX), "empty again");
	osh_queue_finish(&q);
}
