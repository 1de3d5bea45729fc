/* The contract between the preloaded shim and its OTLP module.
 *
 * libotelshim-otlp.so links protobuf-c and zlib, and dlopen()s libcurl itself
 * for https collectors only; the shim links none of them. The exporter thread dlopen()s the module on first use and looks up a
 * single symbol, osh_otlp_module_v1. Both sides are built from one tree, so
 * the check on abi and span_size only guards against a stale module next to
 * a newer shim.
 *
 * Every function runs on the exporter thread, except interrupt(), which any
 * thread may call (at exit, to cut a transfer short).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct osh_config;
struct osh_resource;
struct osh_span;

#define OSH_OTLP_ABI 3

enum osh_export_result {
	OSH_EXPORT_OK = 0,	  /* accepted (possibly partially: see stats) */
	OSH_EXPORT_DROPPED,	  /* permanent failure (4xx, 5xx other than the retryable ones) */
	OSH_EXPORT_GAVE_UP,	  /* retryable failures until the deadline */
	OSH_EXPORT_UNREACHABLE,	  /* could not connect at all (collector absent) */
};

/* What the shim lends the module. */
struct osh_otlp_host {
	/* Diagnostics through the shim's single door (level = enum osh_log_level). */
	void (*log)(int level, const char *msg);
	/* Mark/unmark an fd as the exporter's own (close() protection). */
	void (*own_fd)(int fd, bool owned);
	/* Give the exporter thread an fd table of its own, empty (see
	 * docs/ARCHITECTURE.md, "The exporter's own fd table"). Only for a
	 * transport whose every fd is used on that thread alone: another
	 * thread cannot reach them afterwards (interrupt() then has no fd to
	 * write). Call before opening any; true if the thread now has one. */
	bool (*private_fds)(void);
};

struct osh_otlp_stats {
	uint64_t requests;	  /* HTTP attempts */
	uint64_t retries;
	uint64_t rejected_spans;  /* partial_success.rejected_spans */
	uint64_t bytes_sent;	  /* request bodies, after compression */
};

struct osh_otlp_module {
	uint32_t abi;		/* OSH_OTLP_ABI */
	uint32_t span_size;	/* sizeof(struct osh_span) as the module saw it */

	/* An exporter for cfg->traces_url with the resource @res (copied
	 * by the module as an encoded template). NULL on failure. */
	void *(*create)(const struct osh_config *cfg, const struct osh_resource *res,
			const struct osh_otlp_host *host);

	/* Send @n spans as one ExportTraceServiceRequest. Retries 429/502/503/
	 * 504 and connection failures with exponential backoff and jitter,
	 * honouring Retry-After, until @deadline_ns (CLOCK_MONOTONIC). @final:
	 * shutting down, make a single attempt. Returns enum osh_export_result. */
	int (*export_spans)(void *exp, struct osh_span *const *spans, size_t n,
			    uint64_t deadline_ns, bool final);

	/* The same, a few spans at a time: add_spans() encodes @n spans into
	 * the batch under way (the caller frees them right after) and returns
	 * how many it took (fewer on memory shortage); send_pending() sends
	 * that batch as export_spans() would (0 spans: OSH_EXPORT_OK, nothing
	 * sent). pending() counts the spans waiting. */
	size_t (*add_spans)(void *exp, struct osh_span *const *spans, size_t n);
	size_t (*pending)(void *exp);
	int (*send_pending)(void *exp, uint64_t deadline_ns, bool final);

	/* Any thread: pull the current deadline in to @deadline_ns and wake a
	 * transfer or backoff wait so it notices. */
	void (*interrupt)(void *exp, uint64_t deadline_ns);

	void (*stats)(void *exp, struct osh_otlp_stats *ret);

	/* Release everything (not after fork: a child leaks the parent's). */
	void (*destroy)(void *exp);
};
