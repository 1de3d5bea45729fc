/* Process spans (see procspan.h and docs/ARCHITECTURE.md, "Process spans"). */
#include "buildconf.h"

#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "exporter.h"
#include "guard.h"
#include "ids.h"
#include "init.h"
#include "procspan.h"
#include "propagation.h"
#include "sampler.h"
#include "span.h"

/* ---- helpers shared with the launcher ------------------------------------- */

void osh_procspan_begin(struct osh_procspan *ps, const struct osh_trace_ctx *parent,
			enum osh_sampler_kind sampler, double ratio)
{
	struct osh_trace_ctx ctx = {0}, par = {0};
	bool sampled;

	if (parent && parent->valid) {
		par = *parent;
		memcpy(ctx.trace_id, par.trace_id, sizeof(ctx.trace_id));
	} else {
		osh_ids_trace_id(ctx.trace_id);
	}
	osh_ids_span_id(ctx.span_id);
	sampled = osh_sampler_decide(sampler, ratio, par.valid ? &par : NULL, ctx.trace_id);
	/* As for client spans: the random flag is the parent's to give. */
	ctx.flags = (uint8_t)((sampled ? OSH_FLAG_SAMPLED : 0) | (par.flags & OSH_FLAG_RANDOM));
	ctx.valid = true;
	ctx.remote = false;
	ps->ctx = ctx;
	ps->parent = par;
}

void osh_procspan_traceparent(const struct osh_procspan *ps, char out[OSH_TRACEPARENT_LEN + 1])
{
	osh_traceparent_format(ps->ctx.trace_id, ps->ctx.span_id, ps->ctx.flags, out);
	out[OSH_TRACEPARENT_LEN] = '\0';
}

/* Copy @s into @out (@size > 0), cut to fit, NUL-terminated. */
static void copy_str(char *out, size_t size, const char *s)
{
	size_t n = strnlen(s, size - 1);

	memcpy(out, s, n);
	out[n] = '\0';
}

/* The last path component of @path ("" for "" or a trailing '/'). */
static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

void osh_procspan_fill(struct osh_span *rec, const struct osh_procspan *ps, const char *tracestate,
		       size_t tracestate_len, enum osh_proc_end how, int code, uint64_t end_ns)
{
	const char *base = base_name(ps->command);
	const char *exe = ps->exe_name[0] ? ps->exe_name : base;
	char name[5 + sizeof(ps->command)];
	char msg[96];
	size_t n;

	memcpy(rec->trace_id, ps->ctx.trace_id, sizeof(rec->trace_id));
	memcpy(rec->span_id, ps->ctx.span_id, sizeof(rec->span_id));
	rec->trace_flags = ps->ctx.flags;
	rec->kind = OSH_SPAN_INTERNAL;
	if (ps->parent.valid) {
		rec->has_parent = true;
		rec->parent_remote = ps->parent.remote;
		memcpy(rec->parent_span_id, ps->parent.span_id, sizeof(rec->parent_span_id));
	}
	rec->start_ns = ps->start_ns;
	/* A wall clock stepped back meanwhile must not make a negative span. */
	rec->end_ns = end_ns > ps->start_ns ? end_ns : ps->start_ns;

	/* The base name only: a path says where, not what, and costs
	 * cardinality in span names. */
	memcpy(name, "exec", 4);
	n = 4;
	if (*base) {
		size_t bl = strnlen(base, sizeof(ps->command));

		name[n++] = ' ';
		memcpy(name + n, base, bl);
		n += bl;
	}
	osh_span_set_name(rec, name, n);
	if (tracestate && tracestate_len)
		osh_span_set_trace_state(rec, tracestate, tracestate_len);

	if (ps->pid > 0)
		osh_span_set_int(rec, "process.pid", ps->pid);
	if (ps->parent_pid > 0)
		osh_span_set_int(rec, "process.parent_pid", ps->parent_pid);
	if (*exe)
		osh_span_set_str(rec, "process.executable.name", exe,
				 strnlen(exe, sizeof(ps->exe_name)));
	if (ps->command[0])
		osh_span_set_str(rec, "process.command", ps->command,
				 strnlen(ps->command, sizeof(ps->command)));

	switch (how) {
	case OSH_PROC_EXITED:
		osh_span_set_int(rec, "process.exit.code", code);
		if (code != 0) {
			snprintf(msg, sizeof(msg), "exit code %d", code);
			osh_span_set_status(rec, OSH_STATUS_ERROR, msg);
		}
		break;
	case OSH_PROC_SIGNALED: {
		const char *abbrev = sigabbrev_np(code);

		if (abbrev)
			snprintf(msg, sizeof(msg), "terminated by SIG%s", abbrev);
		else
			snprintf(msg, sizeof(msg), "terminated by signal %d", code);
		osh_span_set_status(rec, OSH_STATUS_ERROR, msg);
		break;
	}
	case OSH_PROC_START_FAILED:
		snprintf(msg, sizeof(msg), "cannot start: %s", strerrordesc_np(code) ?: "error");
		osh_span_set_status(rec, OSH_STATUS_ERROR, msg);
		break;
	case OSH_PROC_EXEC:
	case OSH_PROC_UNKNOWN:
	default:
		break;
	}
}

/* ---- this process's span --------------------------------------------------- */

enum { OWN_NONE = 0, OWN_OPEN, OWN_ENDED };

static struct osh_procspan own;
static struct osh_span *own_rec; /* NULL when not sampled (or no memory) */
static bool own_active;		 /* own.ctx is published */
static _Atomic int own_state;

/* process.executable.name per semconv: the base name of /proc/self/exe
 * (before exec, the image that is ending). */
static void probe_exe_name(char *out, size_t size)
{
	static const char deleted[] = " (deleted)";
	char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	size_t len, dl = sizeof(deleted) - 1;
	const char *base;

	if (n <= 0)
		return;
	len = (size_t)n;
	/* Replaced on disk since exec (an upgrade): still the one that ran. */
	if (len > dl && memcmp(path + len - dl, deleted, dl) == 0)
		len -= dl;
	path[len] = '\0';
	base = base_name(path);
	if (*base)
		copy_str(out, size, base);
}

/* The exit handler of last resort: exit() called from inside libc (error(),
 * the last thread's pthread_exit) reaches neither our exit hook nor main's
 * return; on_exit still hears the status. Registered in the constructor, so
 * it runs after the program's own handlers; the exporter's flush may have
 * run already, so flush again (the same exit budget bounds both). */
static void own_at_exit(int status, void *arg)
{
	bool outer = osh_guard_enter();

	(void)arg;
	osh_procspan_end(OSH_PROC_EXITED, status & 0xff);
	osh_exporter_shutdown();
	if (outer)
		osh_guard_leave();
}

void osh_procspan_start(void)
{
	static bool handlers;
	char tp[OSH_TRACEPARENT_LEN + 1];

	if (!__atomic_load_n(&osh_enabled, __ATOMIC_ACQUIRE) || !osh_cfg.process_spans ||
	    own_active)
		return;
	memset(&own, 0, sizeof(own));
	osh_procspan_begin(&own, &osh_env_ctx.parent, osh_cfg.sampler, osh_cfg.sampler_ratio);
	own.start_ns = osh_clock_realtime_ns();
	own.pid = getpid();
	own.parent_pid = getppid();
	/* argv[0], copied now: programs rewrite their argv (setproctitle). */
	if (program_invocation_name)
		copy_str(own.command, sizeof(own.command), program_invocation_name);

	if (osh_procspan_sampled(&own) && osh_cfg.exporter != OSH_EXPORTER_NONE)
		own_rec = osh_span_create();

	/* The one visible change to the program's environment: children
	 * (exec, posix_spawn, system) name this span as their parent. */
	if (osh_cfg.propagate_tracecontext) {
		osh_procspan_traceparent(&own, tp);
		setenv("TRACEPARENT", tp, 1);
	}

	if (!handlers) {
		handlers = true;
		/* This process may start the exporter (at its end) and then
		 * fork (exec failed, exit handlers): the child must not wait
		 * on a thread it does not have. */
		osh_init_arm_fork();
		on_exit(own_at_exit, NULL);
	}
	atomic_store(&own_state, OWN_OPEN);
	__atomic_store_n(&own_active, true, __ATOMIC_RELEASE);
}

const struct osh_trace_ctx *osh_procspan_parent(void)
{
	return __atomic_load_n(&own_active, __ATOMIC_ACQUIRE) ? &own.ctx : NULL;
}

bool osh_procspan_end(enum osh_proc_end how, int code)
{
	int open = OWN_OPEN;
	struct osh_span *rec;

	if (atomic_load(&own_state) != OWN_OPEN)
		return false;
	/* A fork child has a copy of the span, a vfork child shares it: in
	 * neither may it end, and a vfork child must not even write. */
	if ((int64_t)getpid() != own.pid)
		return false;
	if (!atomic_compare_exchange_strong(&own_state, &open, OWN_ENDED))
		return false;
	rec = own_rec;
	own_rec = NULL;
	if (!rec)
		return true;
	probe_exe_name(own.exe_name, sizeof(own.exe_name));
	osh_procspan_fill(rec, &own, osh_env_ctx.tracestate, osh_env_ctx.tracestate_len, how, code,
			  osh_clock_realtime_ns());
	osh_exporter_submit(rec);
	return true;
}

void osh_procspan_reset(void)
{
	__atomic_store_n(&own_active, false, __ATOMIC_RELEASE);
	atomic_store(&own_state, OWN_NONE);
	osh_span_destroy(own_rec);
	own_rec = NULL;
	memset(&own, 0, sizeof(own));
}
