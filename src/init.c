/* Process start-up, fork and exit (see init.h). */
#include "buildconf.h"

#include <pthread.h>
#include <sched.h>

#include "config.h"
#include "diag.h"
#include "exporter.h"
#include "guard.h"
#include "http_client.h"
#include "ids.h"
#include "init.h"
#include "propagation.h"
#include "real.h"
#include "span.h"

__thread bool osh_in_shim __attribute__((tls_model("initial-exec")));
__thread bool osh_in_traced_library __attribute__((tls_model("initial-exec")));
bool osh_enabled;
bool osh_init_done;
bool osh_exporter_started;

/* A fork child inherits a copy of our memory but not the exporter thread.
 * Only async-signal-safe work here: the child may be about to exec. */
static void after_fork_child(void)
{
	osh_ids_after_fork();
	osh_span_pool_after_fork();
	osh_exporter_after_fork_child();
}

static void init_once(void)
{
	osh_config_load(&osh_cfg);
	if (osh_cfg.disabled)
		return;
	osh_span_set_limits(osh_cfg.attr_value_limit, osh_cfg.attr_count_limit);
	osh_env_ctx_load(&osh_env_ctx, osh_cfg.env_traceparent, osh_cfg.env_tracestate,
			 osh_cfg.env_baggage);
	osh_client_init();
	__atomic_store_n(&osh_enabled, true, __ATOMIC_RELEASE);
}

/* pthread_atfork allocates; registering it at load would be the first
 * malloc of a process that may never allocate otherwise. Nothing needs
 * resetting in a fork child until the shim holds state, which starts with
 * the first tracked connection, so that is when the handler is registered. */
void osh_init_arm_fork(void)
{
	static bool armed;

	if (!__atomic_exchange_n(&armed, true, __ATOMIC_ACQ_REL))
		pthread_atfork(NULL, NULL, after_fork_child);
}

/* Once per process. Not pthread_once, whose completion is a futex wake
 * (a system call in every process, at load). A thread that finds another
 * one mid-way waits for it (the work is short: no I/O, no locks); the
 * initialising thread itself, re-entering from a hook, goes on (its hooks
 * are guarded and see osh_enabled false until the end). */
void osh_init(void)
{
	static int state;	/* 0 not started, 1 running, 2 done */
	static __thread bool initialising __attribute__((tls_model("initial-exec")));
	int expected = 0;
	bool outer;

	if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == 2 || initialising)
		return;
	if (!__atomic_compare_exchange_n(&state, &expected, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		while (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != 2)
			sched_yield();
		return;
	}
	initialising = true;
	outer = osh_guard_enter();
	init_once();
	__atomic_store_n(&osh_init_done, true, __ATOMIC_RELEASE);
	__atomic_store_n(&state, 2, __ATOMIC_RELEASE);
	if (outer)
		osh_guard_leave();
	initialising = false;
}

__attribute__((constructor)) static void otelshim_load(void)
{
	osh_init();
}

/* Normal exit: flush what is queued, within the exit budget. (The exporter
 * also registers this with atexit once libcurl is up, so that it runs
 * before libcurl's and OpenSSL's own exit handlers; running twice is
 * harmless.) */
__attribute__((destructor)) static void otelshim_unload(void)
{
	if (__atomic_load_n(&osh_exporter_started, __ATOMIC_ACQUIRE))
		osh_exporter_shutdown();
}
