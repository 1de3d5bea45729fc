/* OTLP/HTTP transport over libcurl (module side, internal to the module).
 *
 * One transport per exporter: a curl multi handle driving one reused easy
 * handle, so the connection to the collector stays alive between batches.
 * Everything runs on the exporter thread except osh_otlp_http_interrupt().
 * Response handling and retries follow otlp.md §1.2.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct curl_slist;
struct osh_config;
struct osh_otlp_host;
struct osh_otlp_stats;
struct osh_otlp_http;

/* Request bodies above this are refused (otlp.md §1, before compression). */
#define OSH_OTLP_MAX_REQUEST (64u << 20)
/* Response bodies above this abort the transfer (otlp.md §1). */
#define OSH_OTLP_MAX_RESPONSE (4u << 20)

/* A transport for cfg->traces_url. @cfg must outlive it; @host is copied.
 * curl_global_init() must have run. NULL on failure (reported via host). */
struct osh_otlp_http *osh_otlp_http_create(const struct osh_config *cfg,
					   const struct osh_otlp_host *host);
void osh_otlp_http_destroy(struct osh_otlp_http *h); /* accepts NULL */

/* POST @body (an encoded ExportTraceServiceRequest) and handle the answer,
 * retrying until @deadline_ns (CLOCK_MONOTONIC) unless @final. Returns an
 * enum osh_export_result. Exporter thread only. */
int osh_otlp_http_send(struct osh_otlp_http *h, const uint8_t *body, size_t len,
		       uint64_t deadline_ns, bool final);

/* Any thread: cap the deadline of the send in progress, and of every later
 * one, at @deadline_ns, and wake the exporter thread so it notices. Meant for
 * shutdown: the cap is never lifted. */
void osh_otlp_http_interrupt(struct osh_otlp_http *h, uint64_t deadline_ns);

/* Exporter thread only. */
void osh_otlp_http_stats(const struct osh_otlp_http *h, struct osh_otlp_stats *ret);

/* Parse OTEL_EXPORTER_OTLP_HEADERS ("k=v,k2=v2", percent-encoded, blanks
 * around keys and values ignored) into "Key: value" lines appended to *list.
 * Members without '=', with an empty or non-token key, a bad %-escape, a
 * control character in the value, or a key the transport sets itself
 * (content-type, content-encoding, content-length, transfer-encoding, host,
 * expect) are skipped and counted in *ret_skipped. 0, or -ENOMEM (*list then
 * holds what was appended so far; the caller frees it). */
int osh_otlp_http_parse_headers(const char *text, struct curl_slist **list, size_t *ret_skipped);

/* Parse a Retry-After value: delta-seconds or an HTTP-date, relative to
 * @now (CLOCK_REALTIME seconds). A date in the past means 0. False when the
 * value is neither; *ret_ms is written only on success. */
bool osh_otlp_http_parse_retry_after(const char *value, time_t now, uint64_t *ret_ms);

/* Copy @url to @out (NUL-terminated, truncated to @outsz - 1) without its
 * userinfo ("http://user:pw@host/" -> "http://host/"), for messages. */
void osh_otlp_http_redact_url(const char *url, char *out, size_t outsz);
