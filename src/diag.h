/* The shim's own diagnostics: the only code that writes to the host's stderr
 * (besides the console exporter, which the user asked for).
 *
 * Silent unless OTEL_LOG_LEVEL asks: the host's stderr must not change. Lines
 * are prefixed "otelshim: " (or are JSON objects when LOG_FORMAT=json),
 * formatted into a stack buffer and written with one real write(2).
 * Any thread; not async-signal-safe (vsnprintf). */
#pragma once

#include <stdbool.h>

enum osh_log_level {
	OSH_LOG_NONE = 0,
	OSH_LOG_ERROR,
	OSH_LOG_WARN,
	OSH_LOG_INFO,
	OSH_LOG_DEBUG,
};

/* Conditions reported at most once per process (a bit each). */
enum osh_diag_once {
	OSH_ONCE_QUEUE_FULL,
	OSH_ONCE_EXPORT_FAILED,
	OSH_ONCE_EXPORT_REJECTED,
	OSH_ONCE_MODULE_MISSING,
	OSH_ONCE_CONN_LOCK,
	OSH_ONCE_INJECT_SKIPPED,
	OSH_ONCE_SERVICE_NAME,
	OSH_ONCE_HEAD_TOO_LARGE,
	OSH_ONCE_ALLOC,
	OSH_ONCE_PROPAGATOR,
	OSH_ONCE__COUNT,
};

void osh_diag_set(enum osh_log_level level, bool json);
bool osh_diag_enabled(enum osh_log_level level);
void osh_diag(enum osh_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Like osh_diag, but only the first call for @what prints anything. */
void osh_diag_once(enum osh_diag_once what, enum osh_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
