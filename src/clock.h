/* Time sources. Span timestamps are CLOCK_REALTIME in nanoseconds since the
 * Unix epoch (what OTLP wants); deadlines and durations inside the shim use
 * CLOCK_MONOTONIC. Both are vDSO calls on Linux: no syscall. */
#pragma once

#include <stdint.h>
#include <time.h>

static inline uint64_t osh_clock_realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t osh_clock_monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
