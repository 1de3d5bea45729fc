/* Set-up shared by the unit tests that run an engine and look at the spans
 * it finishes (test_http_client.c, test_http_server.c, test_tls.c,
 * test_curl_trace.c): finished spans are captured with
 * osh_exporter_set_capture() instead of being queued, and the configuration
 * is the one init would make, with the test's sampler and environment
 * carrier. Header-only: each test program has its own captured spans.
 * Define MAX_CAPTURED before including it for another capacity.
 */
#pragma once

#include <criterion/criterion.h>

#include "config.h"
#include "exporter.h"
#include "propagation.h"
#include "span.h"

#ifndef MAX_CAPTURED
#define MAX_CAPTURED 64
#endif

static struct osh_span *captured[MAX_CAPTURED];
static int n_captured;

static inline void capture(struct osh_span *s)
{
	cr_assert_lt(n_captured, MAX_CAPTURED, "too many spans");
	captured[n_captured++] = s;
}

static inline void drop_captured(void)
{
	for (int i = 0; i < n_captured; i++)
		osh_span_destroy(captured[i]);
	n_captured = 0;
}

/* Tracing on with @sampler (ratio 1), console export (so records are made),
 * both propagators, the default batch settings and span limits, the
 * environment carrier @tp/@ts/@bg (NULL: unset), spans captured. */
static inline void test_config(enum osh_sampler_kind sampler, const char *tp, const char *ts,
			       const char *bg)
{
	osh_cfg.disabled = false;
	osh_cfg.exporter = OSH_EXPORTER_CONSOLE;
	osh_cfg.sampler = sampler;
	osh_cfg.sampler_ratio = 1.0;
	osh_cfg.propagate_tracecontext = true;
	osh_cfg.propagate_baggage = true;
	osh_cfg.bsp_max_queue = 2048;
	osh_cfg.bsp_max_batch = 512;
	osh_cfg.bsp_delay_ms = 5000;
	osh_span_set_limits(0, 128);
	osh_env_ctx_finish(&osh_env_ctx);
	osh_env_ctx_load(&osh_env_ctx, tp, ts, bg);
	osh_exporter_set_capture(capture);
}
