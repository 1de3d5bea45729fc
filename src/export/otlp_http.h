/* OTLP/HTTP transport (module side, internal to the module).
 *
 * One transport per exporter, with one of two engines chosen at creation:
 * - plain http:// endpoints (nearly every deployment: a local collector) use
 *   a small built-in HTTP/1.1 client over one non-blocking keep-alive TCP
 *   connection;
 * - https:// (and anything the built-in client does not handle: a proxy
 *   named by the environment at load, an unusual URL) uses libcurl,
 *   dlopen()ed on first use, and is given that proxy explicitly.
 *   Loading libcurl with OpenSSL costs ~16 ms of CPU (33 libraries), which
 *   every traced process would otherwise pay on its first export.
 * OTELSHIM_OTLP_TRANSPORT=curl|builtin overrides the choice.
 *
 * Everything runs on the exporter thread except osh_otlp_http_interrupt().
 * Response handling and retries follow otlp.md §1.2, the same for both.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct osh_config;
struct osh_otlp_host;
struct osh_otlp_stats;
struct osh_otlp_http;

/* Request bodies above this are refused (otlp.md §1, before compression). */
#define OSH_OTLP_MAX_REQUEST (64u << 20)
/* Response bodies above this abort the transfer (otlp.md §1). */
#define OSH_OTLP_MAX_RESPONSE (4u << 20)

/* A transport for cfg->traces_url. @cfg must outlive it; @host is copied.
 * The transport choice and the proxy come from @cfg (captured at load from
 * OTELSHIM_OTLP_TRANSPORT and the proxy variables), never from getenv().
 * NULL on failure (reported via host). */
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

/* True when @h sends with the built-in client, false when with libcurl. */
bool osh_otlp_http_is_builtin(const struct osh_otlp_http *h);

/* Tests only, before the first libcurl use in the process: dlopen()
 * @soname instead of "libcurl.so.4" (NULL restores it). */
void osh_otlp_http_set_curl_library(const char *soname);

/* ---- pure helpers, exposed for tests ---- */

/* Parse OTEL_EXPORTER_OTLP_HEADERS ("k=v,k2=v2", percent-encoded, blanks
 * around keys and values ignored) into a NUL-terminated block of
 * "Key: value\r\n" lines (an empty value gives "Key:\r\n"), malloc()ed into
 * *ret_block (the caller frees it). Members without '=', with an empty or
 * non-token key, a bad %-escape, a control character in the value, or a key
 * the transport sets itself (content-type, content-encoding, content-length,
 * transfer-encoding, host, expect) are skipped and counted in *ret_skipped.
 * 0, or -ENOMEM (nothing written). @text may be NULL. */
int osh_otlp_http_parse_headers(const char *text, char **ret_block, size_t *ret_skipped);

/* Parse a Retry-After value: delta-seconds or an HTTP-date (IMF-fixdate,
 * RFC 850 or asctime form, RFC 9110 §5.6.7), relative to @now
 * (CLOCK_REALTIME seconds). A date in the past means 0. False when the value
 * is neither; *ret_ms is written only on success. */
bool osh_otlp_http_parse_retry_after(const char *value, time_t now, uint64_t *ret_ms);

/* Copy @url to @out (NUL-terminated, truncated to @outsz - 1) without its
 * userinfo ("http://user:pw@host/" -> "http://host/"), for messages. */
void osh_otlp_http_redact_url(const char *url, char *out, size_t outsz);

/* How a response body is delimited (RFC 9112 §6.3, for a POST). */
enum osh_otlp_http_body {
	OSH_OTLP_BODY_NONE,	/* 1xx, 204, 304 */
	OSH_OTLP_BODY_LENGTH,	/* Content-Length */
	OSH_OTLP_BODY_CHUNKED,	/* Transfer-Encoding ending in chunked */
	OSH_OTLP_BODY_CLOSE,	/* neither: the body ends when the server closes */
};

struct osh_otlp_http_head {
	int status;
	enum osh_otlp_http_body body;
	uint64_t length;	/* OSH_OTLP_BODY_LENGTH only */
	bool close;		/* the connection cannot carry another request */
	char retry_after[64];	/* trimmed, "" if absent or longer than this */
};

/* Where the response head at the start of @buf ends: the length up to and
 * including the empty line, or 0 when it is not complete yet. Only the
 * bytes from @from (an earlier @len, to avoid rescanning) on may hold the
 * end. Lines may end in CRLF or a bare LF. */
size_t osh_otlp_http_head_end(const char *buf, size_t len, size_t from);

/* Parse a complete response head (@len as osh_otlp_http_head_end() gave it):
 * "HTTP/1.x NNN reason", then header fields. 0, or -EINVAL for a malformed
 * head (bad status line, field without a colon, obsolete line folding,
 * conflicting or malformed Content-Length). *ret is written only on success. */
int osh_otlp_http_parse_head(const char *buf, size_t len, struct osh_otlp_http_head *ret);

/* Chunked transfer-coding decoder (RFC 9112 §7.1), zero-initialised. */
struct osh_otlp_http_chunked {
	uint64_t left;		/* data bytes left in the current chunk */
	uint32_t meta;		/* extension and trailer bytes so far (capped) */
	uint8_t state;
	uint8_t digits;
};

/* Decode the @*len bytes at @buf in place: on return the first @*len bytes of
 * @buf are body data. Returns -2 when the body is not complete yet (all input
 * consumed), -1 on malformed input (or over 64 KiB of chunk extensions and
 * trailers), or, once the last chunk and the trailers are in, how many input
 * bytes followed them (>= 0; not body data, their content is lost). Feeding
 * the input in pieces of any size gives the same result. */
ssize_t osh_otlp_http_dechunk(struct osh_otlp_http_chunked *d, uint8_t *buf, size_t *len);
