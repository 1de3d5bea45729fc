/* Bounded lock-free queue (see queue.h and docs/ARCHITECTURE.md, "The span
 * queue"). Each cell's sequence number tells whose turn it is: a producer
 * may fill cell i when seq == 2 * position, the consumer may take it when
 * seq == 2 * position + 1, and hands it back for the next lap with
 * seq == 2 * (position + capacity). Consumers claim a cell with a CAS on the
 * head, so the record pool may have several.
 *
 * The doubling keeps "full at position p" (odd) apart from "free for
 * position p + 1" (even). With plain Vyukov numbering (p + 1 for both) a
 * queue of capacity 1 (OTEL_BSP_MAX_QUEUE_SIZE=1) let a second push
 * overwrite an unread span, after which the consumer never saw a ready cell
 * again. */
#include "buildconf.h"

#include <errno.h>
#include <stdlib.h>

#include "prefetch.h"
#include "queue.h"

int osh_queue_init(struct osh_queue *q, uint32_t capacity)
{
	if (capacity == 0)
		capacity = 1;
	q->cells = calloc(capacity, sizeof(*q->cells));
	if (!q->cells)
		return -ENOMEM;
	q->capacity = capacity;
	q->pow2 = (capacity & (capacity - 1)) == 0;
	osh_queue_reset(q);
	return 0;
}

/* The cell of position @pos: a mask for a power-of-two capacity (a 64-bit
 * division costs ~40 cycles, and every span takes four of these). */
static inline struct osh_queue_cell *cell_at(const struct osh_queue *q, uint64_t pos)
{
	return &q->cells[q->pow2 ? pos & (q->capacity - 1) : pos % q->capacity];
}

void osh_queue_finish(struct osh_queue *q)
{
	free(q->cells);
	q->cells = NULL;
	q->capacity = 0;
	q->pow2 = false;
}

void osh_queue_reset(struct osh_queue *q)
{
	for (uint64_t i = 0; i < q->capacity; i++) {
		atomic_store_explicit(&q->cells[i].seq, 2 * i, memory_order_relaxed);
		atomic_store_explicit(&q->cells[i].span, NULL, memory_order_relaxed);
	}
	atomic_store_explicit(&q->head, 0, memory_order_relaxed);
	atomic_store_explicit(&q->tail, 0, memory_order_release);
}

/* Claim the next position for a producer: its cell, or NULL when the
 * queue is full. */
static inline struct osh_queue_cell *claim(struct osh_queue *q, uint64_t *ret)
{
	uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);

	for (;;) {
		struct osh_queue_cell *cell = cell_at(q, pos);
		uint64_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
		int64_t diff = (int64_t)(seq - 2 * pos);

		if (diff == 0) {
			if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed)) {
				*ret = pos;
				return cell;
			}
			/* pos was reloaded by the failed exchange */
		} else if (diff < 0) {
			return NULL; /* the consumer has not freed this cell: full */
		} else {
			pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
		}
	}
}

/* Publish @span at a claimed position. */
static inline void fill(struct osh_queue_cell *cell, uint64_t pos, struct osh_span *span)
{
	cell->span = span;
	atomic_store_explicit(&cell->seq, 2 * pos + 1, memory_order_release);
}

bool osh_queue_push(struct osh_queue *q, struct osh_span *span)
{
	uint64_t pos;
	struct osh_queue_cell *cell = claim(q, &pos);

	if (!cell)
		return false;
	fill(cell, pos, span);
	return true;
}

bool osh_queue_claim(struct osh_queue *q, uint64_t *pos)
{
	return claim(q, pos) != NULL;
}

void osh_queue_fill(struct osh_queue *q, uint64_t pos, struct osh_span *span)
{
	fill(cell_at(q, pos), pos, span);
}

struct osh_span *osh_queue_pop(struct osh_queue *q)
{
	uint64_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);

	for (;;) {
		struct osh_queue_cell *cell = cell_at(q, pos);
		uint64_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
		int64_t diff = (int64_t)(seq - (2 * pos + 1));

		if (diff == 0) {
			/* Claim the cell; with one consumer this always wins. */
			if (atomic_compare_exchange_weak_explicit(&q->head, &pos, pos + 1,
								  memory_order_relaxed,
								  memory_order_relaxed)) {
				struct osh_span *span = cell->span;

				cell->span = NULL;
				atomic_store_explicit(&cell->seq, 2 * (pos + q->capacity),
						      memory_order_release);
				return span;
			}
		} else if (diff < 0) {
			return NULL; /* nothing published here yet: empty */
		} else {
			pos = atomic_load_explicit(&q->head, memory_order_relaxed);
		}
	}
}

OSH_PREFETCHW_TARGET void osh_queue_warm_tail(const struct osh_queue *q)
{
	uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);

	__builtin_prefetch(cell_at(q, pos), 1, 3);
}

uint64_t osh_queue_size(const struct osh_queue *q)
{
	uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);
	uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);

	return tail > head ? tail - head : 0;
}

uint64_t osh_queue_claimed(const struct osh_queue *q)
{
	return atomic_load_explicit(&q->tail, memory_order_relaxed);
}

/* The oldest queued position, @head, is below a flush's mark @below. */
static inline bool queued_below(uint64_t head, uint64_t tail, uint64_t below)
{
	return tail > head && head < below;
}

bool osh_queue_holds_below(const struct osh_queue *q, uint64_t below)
{
	return queued_below(atomic_load_explicit(&q->head, memory_order_relaxed),
			    atomic_load_explicit(&q->tail, memory_order_relaxed), below);
}

bool osh_queue_head_unfilled(const struct osh_queue *q, uint64_t below)
{
	uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&q->tail, memory_order_relaxed);

	if (!queued_below(head, tail, below))
		return false;
	return atomic_load_explicit(&cell_at(q, head)->seq, memory_order_acquire) !=
	       2 * head + 1;
}
