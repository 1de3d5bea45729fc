/* Thread-local re-entrancy guard.
 *
 * Every hook enters the shim through osh_guard_enter(); a call made while the
 * flag is set (the shim's own I/O, a signal handler interrupting a hook, a
 * library below us calling back into libc) goes straight to the real symbol.
 * The exporter thread sets the flag once and never clears it, so the shim
 * never sees its own traffic.
 *
 * initial-exec TLS: the flag lives in the static TLS block, so reading it
 * never calls __tls_get_addr (which may allocate) and is async-signal-safe.
 */
#pragma once

#include <stdbool.h>

extern __thread bool osh_in_shim __attribute__((tls_model("initial-exec")));

static inline bool osh_guard_enter(void)
{
	if (osh_in_shim)
		return false;
	osh_in_shim = true;
	return true;
}

static inline void osh_guard_leave(void)
{
	osh_in_shim = false;
}

/* Set while a library the shim traces at its own level (libcurl) is
 * driving its transfers on this thread. Sockets connected and TLS sessions
 * first used meanwhile belong to those transfers: they are never traced
 * below it (one span per transfer, not one per layer). Unlike osh_in_shim,
 * it leaves everything else alone: an application callback running inside
 * the library that writes to its own (traced) connection is still seen. */
extern __thread bool osh_in_traced_library __attribute__((tls_model("initial-exec")));

/* For threads that must never be traced (the exporter). */
static inline void osh_guard_hold_forever(void)
{
	osh_in_shim = true;
}
