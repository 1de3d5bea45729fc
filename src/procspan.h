/* Process spans: one INTERNAL span per process covering its life, so that
 * `otelshim-run -- sh -c 'curl A; curl B'` is one trace, a tree of processes
 * with their HTTP calls beneath (docs/ARCHITECTURE.md, "Process spans").
 *
 * Two layers:
 * - Helpers that decide a process span's identity, format the TRACEPARENT
 *   handing it to children and fill its record. Any thread, no allocation.
 *   The launcher (src/launch/otelshim-launch.c) uses them for its root span.
 * - This process's own span, in the preloaded shim only: started at load
 *   when OTELSHIM_PROCESS_SPANS=true, ended once by whichever comes first of
 *   exit(), main's return, _exit(), exec, and the exit handlers. It belongs
 *   to the process that started it: a fork child keeps its context (the
 *   child's HTTP spans stay under it) but never ends or exports it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "propagation.h"

struct osh_span;

struct osh_procspan {
	struct osh_trace_ctx ctx;    /* this span: valid, !remote; flags carry the sampling */
	struct osh_trace_ctx parent; /* valid = false: the span is a trace root */
	uint64_t start_ns;	     /* CLOCK_REALTIME, ns */
	int64_t pid;		     /* process.pid */
	int64_t parent_pid;	     /* process.parent_pid, 0 = unknown */
	char command[256];	     /* process.command: argv[0] only, never the arguments */
	char exe_name[256];	     /* process.executable.name; "" = basename of command */
};

/* How a process span ends. */
enum osh_proc_end {
	OSH_PROC_UNKNOWN = 0,  /* ended without seeing how (no attribute) */
	OSH_PROC_EXITED,       /* code: the exit status, 0-255 */
	OSH_PROC_SIGNALED,     /* code: the signal that ended it */
	OSH_PROC_EXEC,	       /* the image was replaced: its successor is a child span */
	OSH_PROC_START_FAILED, /* launcher: the command could not be started; code: errno */
};

/* Give @ps a context: @parent's trace (a new trace id when @parent is NULL or
 * invalid), a new span id, the sampler's decision as the sampled flag and
 * the parent's random flag. Only ctx and parent are written. */
void osh_procspan_begin(struct osh_procspan *ps, const struct osh_trace_ctx *parent,
			enum osh_sampler_kind sampler, double ratio);

static inline bool osh_procspan_sampled(const struct osh_procspan *ps)
{
	return ps->ctx.flags & OSH_FLAG_SAMPLED;
}

/* The TRACEPARENT value naming @ps as the parent: 55 chars and a NUL. */
void osh_procspan_traceparent(const struct osh_procspan *ps, char out[OSH_TRACEPARENT_LEN + 1]);

/* Fill @rec (fresh from osh_span_create) as @ps ending at @end_ns: name
 * "exec {basename of command}", kind INTERNAL, ids and parent, @tracestate
 * (may be NULL), process.pid, process.parent_pid, process.executable.name,
 * process.command, and by @how: process.exit.code (EXITED); ERROR status
 * for a non-zero exit code, a signal or a failed start. */
void osh_procspan_fill(struct osh_span *rec, const struct osh_procspan *ps, const char *tracestate,
		       size_t tracestate_len, enum osh_proc_end how, int code, uint64_t end_ns);

/* Start this process's span, once, from the shim's constructor after
 * osh_init(): nothing unless the shim is enabled and OTELSHIM_PROCESS_SPANS
 * is on. Then the span's parent is the environment carrier (osh_env_ctx),
 * its start is now, and its context replaces TRACEPARENT in the environment
 * (TRACESTATE and BAGGAGE stay) so that children started with exec or
 * posix_spawn inherit it as their parent; with OTEL_PROPAGATORS lacking
 * tracecontext the environment is left alone. Allocates (the record, the
 * environment entry, the fork and exit handlers): only when on. */
void osh_procspan_start(void);

/* The parent of spans that have none of their own: this process's span,
 * also in a fork child and after the span has ended (exec failed, exit
 * handlers); NULL when process spans are off. Any thread, no syscall. */
const struct osh_trace_ctx *osh_procspan_parent(void);

/* End this process's span as @how/@code and submit it. Only the first call
 * in the process that started the span does anything (true); every other
 * call returns false without writing anything, which makes it safe in a
 * vfork child that shares our memory. One getpid() while the span is open;
 * allocates only if the exporter thread has to be started. */
bool osh_procspan_end(enum osh_proc_end how, int code);

/* Tests only: forget this process's span (its record is freed). */
void osh_procspan_reset(void);
