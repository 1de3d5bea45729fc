/* The export pipeline: the bounded span queue and the background thread
 * that drains it in batches to the configured exporter (OTLP module,
 * console or none). See docs/ARCHITECTURE.md, "Export".
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

struct osh_span;

/* App threads: hand over a finished span (ownership passes). Never blocks:
 * when the queue is full the span is freed and counted as dropped. The first
 * call starts the exporter thread. */
void osh_exporter_submit(struct osh_span *span);

/* Flush what is queued and wait for it, within OTELSHIM_EXIT_TIMEOUT_MS at
 * most (2 s by default). Runs at exit; a later call sends only spans
 * submitted since, within the budget the first call set. Does nothing in a
 * process that did not start the exporter thread (fork, vfork children). */
void osh_exporter_shutdown(void);

/* Wake the exporter thread if it runs (logged server calls are waiting). */
void osh_exporter_wake(void);

/* Before exec and _exit, which skip the exit handlers: flush what is queued
 * as at exit and wait within OTELSHIM_EXIT_TIMEOUT_MS. Returns true when it
 * flushed, i.e. this process runs the exporter and had new spans; call
 * osh_exporter_resume() afterwards if the program goes on (exec failed).
 * Never touches anything in a vfork child. */
bool osh_exporter_flush_sync(void);
void osh_exporter_resume(void);

/* The launcher: the resource describes @proc (the command it runs) instead
 * of the calling process. Before the first submit; @proc must outlive the
 * exporter. */
struct osh_process_info;
void osh_exporter_set_process(const struct osh_process_info *proc);

/* In a fork child: the parent's exporter thread does not exist here and
 * its queued spans are the parent's to send. Forget both; the child's first
 * span starts its own exporter. Async-signal-safe. */
void osh_exporter_after_fork_child(void);

struct osh_exporter_stats {
	uint64_t submitted;
	uint64_t dropped_queue_full;
	uint64_t exported;
	uint64_t failed;
};

void osh_exporter_stats(struct osh_exporter_stats *ret);

/* Tests only: hand every submitted span to @capture (which takes
 * ownership) instead of the queue. NULL restores normal operation. */
void osh_exporter_set_capture(void (*capture)(struct osh_span *span));

/* Tests: the span queue (made if need be), to stall a push midway as a
 * preempted producer does. NULL when it cannot be made. */
struct osh_queue;
struct osh_queue *osh_exporter_queue_for_tests(void);

/* Tests: how long a flush waits for a half-pushed cell (0: the product's
 * 50 ms). A test that plays the late producer lengthens it, so that a
 * loaded machine descheduling that producer cannot end the hold first. */
void osh_exporter_set_flush_hold_for_tests(uint64_t ns);
