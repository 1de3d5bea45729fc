/* Incremental HTTP/1.x parsing for the shim: bounded, allocation-free,
 * borrowed pointers (picohttpparser-style return codes).
 *
 * The shim sees a byte stream in arbitrary pieces. Heads (request line or
 * status line plus header fields) are parsed once complete: callers find the
 * end with osh_http_head_end() and accumulate split heads themselves. Bodies
 * are never buffered: osh_http_body_feed() walks Content-Length, chunked and
 * read-until-close framing and counts payload bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define OSH_HTTP_PARTIAL (-2)
#define OSH_HTTP_INVALID (-1)

/* Largest head the shim will parse; beyond it the connection passes through. */
#define OSH_HTTP_MAX_HEAD (64 * 1024)

/* A view into the caller's buffer. */
struct osh_str {
	const char *p;
	size_t len;
};

enum osh_http_body_kind {
	OSH_BODY_NONE = 0,	 /* no body */
	OSH_BODY_LENGTH,	 /* Content-Length bytes */
	OSH_BODY_CHUNKED,	 /* Transfer-Encoding: chunked (last coding) */
	OSH_BODY_UNTIL_CLOSE,	 /* response without length: until EOF */
	OSH_BODY_TUNNEL,	 /* after CONNECT 2xx / 101: opaque bytes */
};

struct osh_http_request {
	struct osh_str method;
	struct osh_str target;		/* request-target as sent */
	int minor_version;		/* HTTP/1.<minor> */
	size_t line_len;		/* request line incl. its line ending */
	size_t head_len;		/* whole head incl. the empty line */
	size_t blank_line_off;		/* offset of the terminating empty line */
	struct osh_str host;
	struct osh_str user_agent;
	struct osh_str traceparent;	/* first one seen */
	struct osh_str tracestate;	/* first one seen */
	struct osh_str baggage;		/* first one seen */
	struct osh_str content_type;
	struct osh_str x_request_id;
	unsigned traceparent_count;
	unsigned tracestate_count;
	unsigned baggage_count;
	enum osh_http_body_kind body;	/* NONE, LENGTH or CHUNKED */
	uint64_t content_length;
	bool expect_continue;
	bool connection_close;
	bool upgrade;			/* Upgrade header present */
};

struct osh_http_response {
	int status;			/* 100..999 */
	int minor_version;
	size_t head_len;
	enum osh_http_body_kind body;	/* framing from the headers alone */
	uint64_t content_length;
	bool connection_close;
	struct osh_str content_type;
	struct osh_str content_encoding;
	struct osh_str request_id;	/* x-request-id / request-id */
	struct osh_str retry_after;	/* Retry-After (rate limits) */
};

/* Return the length of the head in @buf (up to and including the empty line
 * ending it: CRLF CRLF, or bare LF LF), or OSH_HTTP_PARTIAL, or
 * OSH_HTTP_INVALID when no head ends within OSH_HTTP_MAX_HEAD bytes. @last_len is how
 * much of @buf was already searched without success (0 the first time) so a
 * re-scan after more bytes is cheap. */
ssize_t osh_http_head_end(const char *buf, size_t len, size_t last_len);

/* Cheap sniff of a connection's first bytes. Returns 1 when @buf starts like
 * an HTTP/1.x request ("TOKEN SP target"), 0 when it cannot be one (TLS,
 * binary protocols, HTTP/2 preface), OSH_HTTP_PARTIAL when too short to
 * tell. */
int osh_http_sniff_request(const char *buf, size_t len);
/* Same for a response ("HTTP/1."). */
int osh_http_sniff_response(const char *buf, size_t len);

/* Parse a complete request head at the start of @buf. Returns head length
 * (> 0), OSH_HTTP_PARTIAL, or OSH_HTTP_INVALID (bad request line, not
 * HTTP/1.x, conflicting Content-Length, over OSH_HTTP_MAX_HEAD). *ret is
 * written as the parse goes: meaningful only when a length is returned. */
int osh_http_parse_request(struct osh_http_request *ret, const char *buf, size_t len);

/* Parse a complete response head. The body kind is from the headers only;
 * osh_http_response_body() applies the request method and status rules.
 * *ret as for requests: meaningful only when a length is returned. */
int osh_http_parse_response(struct osh_http_response *ret, const char *buf, size_t len);
/* The same for a response head the program itself writes (the server
 * side): the status line, the head's end and its framing (status,
 * minor_version, head_len, body, content_length, connection_close; the
 * other fields are left empty). Lines other than framing fields are only
 * stepped over, not checked: a head the program wrote is not an attack on
 * it, and its framing is all the server side needs: only the lines that
 * start with c, t or the end of the head are looked at. */
int osh_http_scan_response_head(struct osh_http_response *ret, const char *buf, size_t len);

/* Body framing of a response to a request with @method:
 * HEAD, 1xx, 204, 304 -> NONE; CONNECT + 2xx or 101 -> TUNNEL;
 * chunked -> CHUNKED; Content-Length -> LENGTH; else UNTIL_CLOSE. */
enum osh_http_body_kind osh_http_response_body(const struct osh_http_response *resp,
					       const char *method, size_t method_len);

/* Incremental body walker. Zero-initialise, then osh_http_body_start(). */
struct osh_http_body {
	uint8_t kind;		/* enum osh_http_body_kind */
	uint8_t state;		/* chunked decoder state */
	bool done;
	uint64_t remaining;	/* LENGTH: bytes left; CHUNKED: bytes left in chunk */
	uint64_t payload;	/* payload bytes seen so far (decoded for chunked) */
	uint32_t line_len;	/* chunk-size / trailer line length so far (bounded) */
};

void osh_http_body_start(struct osh_http_body *b, enum osh_http_body_kind kind,
			 uint64_t content_length);

/* How many of the next body bytes are payload that osh_http_body_skip()
 * can take as they are (inside a chunk's data, or a length/close body);
 * 0 when framing bytes (a chunk-size line, CRLF, trailers) come next or the
 * body is done. For readers that want the payload itself. */
uint64_t osh_http_body_payload_ahead(const struct osh_http_body *b);

/* The payload in @buf copied to @dst, for readers that want it without a
 * call per chunk: from where the walker stands, as long as the framing is
 * the usual kind (chunk data, the CRLF after it, a chunk-size line without
 * extensions whole in @buf; any length or until-close body), up to @cap
 * bytes of payload are copied (*ret_copied) and the walker moves past them.
 * Returns the bytes of @buf used; it stops before anything else (the last
 * chunk, extensions, a line cut by the buffer's end), which the general
 * walker must see. */
size_t osh_http_body_copy_payload(struct osh_http_body *b, const char *buf, size_t len,
				  char *dst, size_t cap, size_t *ret_copied);

/* A chunked body at a chunk boundary (the CRLF after a chunk's data, or
 * the first chunk-size line) whose next chunk-size line, without
 * extensions, is whole in @buf: take those framing bytes at once and return
 * how many (the chunk's data comes next). 0 when the general walker must
 * see them (another state, the last chunk, extensions, a cut line). For
 * readers that walk a chunked body a piece at a time. */
size_t osh_http_body_next_chunk(struct osh_http_body *b, const char *buf, size_t len);

/* Feed body bytes. Returns how many bytes of @buf belong to this body (the
 * rest starts the next message), or OSH_HTTP_INVALID on malformed chunked
 * framing. Sets b->done when the body is complete (never for UNTIL_CLOSE or
 * TUNNEL). */
ssize_t osh_http_body_feed(struct osh_http_body *b, const char *buf, size_t len);

/* Case-insensitive ASCII comparison of a view with a literal. */
bool osh_str_ieq(struct osh_str s, const char *lit);

/* Account for @n body bytes the caller sent or received without showing
 * them (sendfile, splice). Returns true when they lie entirely inside the
 * body's payload (the current chunk's data; a Content-Length body up to its
 * end; an until-close or tunnel stream), and updates @b exactly as feeding
 * those bytes would: remaining, payload, done, and for chunked the state
 * (ending a chunk's data leaves its CRLF to be fed). Returns false, leaving
 * @b untouched, when they would reach framing the walker must read
 * (chunk-size line, CRLF after the data, trailers) or go past the body's
 * end (or the walker is done or failed): the caller has lost the framing.
 * @n == 0 is always true. Any thread; pure. */
bool osh_http_body_skip(struct osh_http_body *b, uint64_t n);

/* Join every value of the field named @lowercase_name in a complete head
 * (request or status line, fields, empty line; already accepted by
 * osh_http_parse_request/osh_http_parse_response), as one list (RFC 9110,
 * 5.3): values in order, OWS-trimmed, empty ones skipped, separated by ",".
 * The name matches in any case. Writes at most @outsz bytes to @out
 * including a NUL; a value that does not fit whole ends the list there
 * (later values are dropped too, so nothing is cut mid-value). Returns the
 * length written, 0 when the field is absent or nothing fits. Pure. */
size_t osh_http_join_field(const char *head, size_t head_len, const char *lowercase_name,
			   char *out, size_t outsz);
