/* One message body of an LLM call, decoded as it crosses the wire.
 *
 * Fed the raw body bytes (after the head) in whatever pieces the program
 * reads or writes them, it removes the framing (Content-Length, chunked,
 * until close), undoes Content-Encoding gzip/deflate through the lazily
 * loaded zlib (br, zstd and other codings: flagged unparsed, bytes only
 * counted), and then either keeps the decoded bytes (a JSON body, up to a
 * limit: past it the body is flagged truncated and only counted) or splits
 * them into server-sent events or NDJSON lines, handed to a callback one at
 * a time with memory bounded per event whatever the stream's length.
 *
 * Memory held: at most @limit bytes of body plus OSH_LLM_EVENT_MAX per
 * event and zlib's window (~40 KiB), however much is fed. Caller-owned
 * state, one thread at a time; allocation happens on first need only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http.h"

/* A streamed event larger than this is dropped (flagged malformed). */
#define OSH_LLM_EVENT_MAX (256 * 1024)

enum osh_llm_framing {
	OSH_LLM_FRAMING_LENGTH = 1,
	OSH_LLM_FRAMING_CHUNKED,
	OSH_LLM_FRAMING_CLOSE,
};

enum osh_llm_stream {
	OSH_LLM_STREAM_NONE = 0,	/* keep the body (JSON) */
	OSH_LLM_STREAM_SSE,		/* text/event-stream */
	OSH_LLM_STREAM_NDJSON,		/* one JSON document per line */
};

/* One event: its name (SSE "event:" field, empty when none; always empty
 * for NDJSON) and its data (SSE "data:" lines joined by LF; the line for
 * NDJSON), and when the bytes that completed it were fed. */
struct osh_llm_event_sink {
	void (*on_event)(void *arg, const char *event, size_t event_len, const char *data,
			 size_t data_len, uint64_t now_ns);
	void *arg;
};

struct osh_llm_body {
	struct osh_http_body frame;	/* its own walker of the framing, */
	struct osh_http_body *fr;	/* or the caller's (osh_llm_body_walk) */
	uint8_t coding;		/* internal: identity, zlib/gzip, raw deflate, sniffing */
	uint8_t stream;		/* enum osh_llm_stream */
	bool unparsed;		/* a coding this cannot undo: bytes counted only */
	bool truncated;		/* more decoded bytes than the limit: kept the first */
	bool malformed;		/* bad framing, bad compressed data or an oversized event */
	bool done;		/* the framing says the body is complete */
	bool frame_bad;		/* the framing broke: nothing more is read */
	uint64_t wire_bytes;	/* payload bytes after framing, before decoding */
	uint64_t decoded;	/* bytes after decoding */
	uint64_t first_ns;	/* when the first decoded byte came (0: none yet) */
	size_t limit;
	void *z;		/* z_stream, allocated when the body is compressed */
	uint8_t sniff[2];	/* "deflate": the first bytes, to tell zlib from raw */
	uint8_t sniff_len;
	char *buf;		/* kept bytes (no stream) */
	size_t len, cap;
	/* Streams: the line being assembled and the event being built. */
	char *line;
	size_t line_len, line_cap;
	bool line_over;		/* this line is over OSH_LLM_EVENT_MAX: skipped */
	bool cr_seen;		/* the last byte was CR (a CRLF's LF is not a second end) */
	char *data;
	size_t data_len, data_cap;
	bool data_any;		/* a data field was seen for this event */
	bool data_over;
	/* The event's only data line, still in the piece being fed (not
	 * copied unless the event outlives the piece). */
	const char *data_ref;
	size_t data_ref_len;
	char event[64];
	size_t event_len;
	uint64_t now_ns;	/* of the piece being fed */
	struct osh_llm_event_sink sink;
	/* Skimming (osh_llm_body_skim): the bytes since an event boundary,
	 * kept unsplit, and how far they were searched for triggers. */
	bool skim_wanted;	/* asked for: starts at the next event boundary */
	bool skimming;
	bool skim_now;		/* an event just ended: skim the rest of the piece */
	bool flushing;		/* kept bytes going through the splitter */
	char *tail;
	size_t tail_len;
	size_t tail_scanned;	/* triggers decided up to here */
};

/* Start @b. @content_length: for LENGTH framing. @coding: the
 * Content-Encoding value (NULL or empty: identity). @limit: bytes kept of
 * a non-stream body. @sink: for streams (ignored with OSH_LLM_STREAM_NONE). */
void osh_llm_body_init(struct osh_llm_body *b, enum osh_llm_framing framing,
		       uint64_t content_length, const char *coding, size_t coding_len,
		       enum osh_llm_stream stream, size_t limit,
		       const struct osh_llm_event_sink *sink);

/* Feed @n raw bytes read at @now_ns (any clock the caller keeps; 0 is "no
 * time"). Returns true once the body is complete by its framing; bytes past
 * the end are ignored. Never fails: trouble is flagged. */
bool osh_llm_body_feed(struct osh_llm_body *b, const char *p, size_t n, uint64_t now_ns);

/* As osh_llm_body_feed, for a caller that tracks the same body's framing
 * itself (the HTTP engine, for its span): @w is the caller's walker,
 * started for this body when @b was, and from the first call on it is the
 * one walked, so that the framing is read once, not twice. Returns the
 * bytes of @p that belong to the body (the rest follows it on the
 * connection), or -1 when the framing is malformed (nothing more is
 * read). */
ssize_t osh_llm_body_walk(struct osh_llm_body *b, struct osh_http_body *w, const char *p, size_t n,
			  uint64_t now_ns);

/* After an event, the sink may ask for the rest of an SSE stream to be
 * skimmed: from the next event boundary on, events are no longer split and
 * delivered one by one. The bytes are searched, 64 at a time, for what
 * would make an event matter before the stream ends (the start of an
 * OpenAI-style tool or function call, a finish reason that is not null);
 * the last events are kept (the bytes from an event boundary: at most
 * 16 KiB, trimmed to the last 2 KiB or fewer when full). The event holding
 * a trigger goes through the splitter as usual (the events before it are
 * dropped) and skimming goes on after it; at the end of the body, the
 * events ending in the last 2 KiB do (the usage, error and final events).
 * Memory: 16 KiB; an event that does not fit is split as usual. Only for
 * SSE streams. */
void osh_llm_body_skim(struct osh_llm_body *b);

/* Tests: search with AVX2 (@on, when the CPU has it) or with the baseline
 * code; returns whether AVX2 is used now. By default the CPU decides. */
bool osh_llm_body_search_avx2(bool on);

/* The body ended (complete, or the connection closed): a last event without
 * its blank line or a last NDJSON line without LF is delivered now. */
void osh_llm_body_end(struct osh_llm_body *b);

/* The kept bytes of a non-stream body (NUL-terminated, *ret_len without
 * it); NULL with 0 when none. */
const char *osh_llm_body_data(const struct osh_llm_body *b, size_t *ret_len);

void osh_llm_body_free(struct osh_llm_body *b);
