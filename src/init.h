/* Process-wide start-up of the shim. */
#pragma once

#include <stdbool.h>

/* True once the shim is configured and tracing (false when
 * OTEL_SDK_DISABLED=true: every hook is then a plain pass-through). */
extern bool osh_enabled;

/* Set (by the exporter) when this image started exporting. It lives here,
 * next to the flags every process reads at load: a process that never
 * exported checks it at exit without touching the exporter's code and data
 * pages (each a page fault the first time). */
extern bool osh_exporter_started;

/* Idempotent and thread-safe: resolve real symbols, read the environment,
 * register fork handling. Runs from our constructor, or from the first hook
 * called before it (another library's constructor). Cheap: no threads, no
 * dlopen, no file I/O. */
void osh_init(void);

/* Register fork handling (once): called when the shim starts holding
 * state, at the first tracked connection. */
void osh_init_arm_fork(void);

static inline void osh_init_ensure(void)
{
	extern bool osh_init_done;
	if (__builtin_expect(!__atomic_load_n(&osh_init_done, __ATOMIC_ACQUIRE), 0))
		osh_init();
}
