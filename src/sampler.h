/* Head sampling as the OTel SDK defines it (OTEL_TRACES_SAMPLER). Pure. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "propagation.h"

/* Decide whether a new span with @trace_id and parent @parent (NULL or
 * !valid for a root) is sampled. ParentBased samplers follow the parent's
 * sampled flag; TraceIdRatioBased compares the trace id's lower 64 bits
 * (big-endian bytes 8..15) against @ratio * 2^64, so the decision is the
 * same for every span of a trace. */
bool osh_sampler_decide(enum osh_sampler_kind kind, double ratio,
			const struct osh_trace_ctx *parent, const uint8_t trace_id[16]);

/* TraceIdRatioBased alone. */
bool osh_sampler_ratio(double ratio, const uint8_t trace_id[16]);
