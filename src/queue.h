/* Bounded lock-free queue of span pointers: finished spans on their way to
 * the exporter (many app threads push, the exporter pops), and the pool of
 * free span records (any thread pushes and pops).
 *
 * Producers never block and never allocate. A full queue refuses the
 * span: the caller frees it and counts the drop. Cells carry a sequence
 * number (Vyukov's bounded queue), so a producer preempted mid-push delays
 * the consumer only at that cell.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct osh_span;

struct osh_queue_cell {
	_Atomic uint64_t seq;
	struct osh_span *span;
};

struct osh_queue {
	struct osh_queue_cell *cells;
	uint64_t capacity;
	bool pow2;		/* capacity a power of two (the default sizes):
				 * cells found by mask, else by modulo */
	_Alignas(64) _Atomic uint64_t tail; /* next position to claim (producers) */
	_Alignas(64) _Atomic uint64_t head; /* next position to read (consumer) */
};

/* Allocate @capacity cells (>= 1). 0 or -ENOMEM. */
int osh_queue_init(struct osh_queue *q, uint32_t capacity);
void osh_queue_finish(struct osh_queue *q);

/* App threads: false when the queue is full (span not taken). */
bool osh_queue_push(struct osh_queue *q, struct osh_span *span);

/* A push in two steps, as a producer preempted between them makes it:
 * claim a position (false when full), then fill it. Until the fill, pops
 * stop at that position (NULL) while the size counts it. */
bool osh_queue_claim(struct osh_queue *q, uint64_t *pos);
void osh_queue_fill(struct osh_queue *q, uint64_t pos, struct osh_span *span);

/* Positions claimed so far (the tail): a mark for osh_queue_head_unfilled. */
uint64_t osh_queue_claimed(const struct osh_queue *q);

/* True when the oldest queued position is below @below and claimed but not
 * yet filled (its producer is between the two steps of a push): pops
 * return NULL until it is. Racy by nature, like the size. */
bool osh_queue_head_unfilled(const struct osh_queue *q, uint64_t below);

/* True when a position below @below is still queued, filled or not (a
 * flush's mark: it still owes those spans). Racy, like the size. */
bool osh_queue_holds_below(const struct osh_queue *q, uint64_t below);

/* Any thread: next span or NULL when none is ready. */
struct osh_span *osh_queue_pop(struct osh_queue *q);

/* Warm, for writing, the cell the next push will fill: the consumer wrote
 * it last, on another core. A hint; changes nothing. */
void osh_queue_warm_tail(const struct osh_queue *q);

/* Approximate number of queued spans (racy by nature). */
uint64_t osh_queue_size(const struct osh_queue *q);

/* In a fork child: forget every cell (the parent's spans are never
 * re-sent; their records are left to the child's copy-on-write heap).
 * Async-signal-safe. */
void osh_queue_reset(struct osh_queue *q);
