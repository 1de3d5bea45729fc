/* LLM message bodies: framing off, compression off, then kept or split into
 * events. See llm_body.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdatomic.h>
#define OSH_SKIM_AVX2 1
#endif

#include "lazylib.h"
#include "llm_body.h"

enum coding {
	CODING_IDENTITY = 0,
	CODING_AUTO,		/* gzip or zlib-wrapped deflate: zlib tells them apart */
	CODING_RAW,		/* raw deflate (some servers send it as "deflate") */
	CODING_SNIFF,		/* "deflate": zlib-wrapped or raw, the first bytes say */
	CODING_NONE,		/* unsupported: counted only */
};

/* What the Content-Encoding value asks for. Several codings, or one zlib
 * cannot undo, leave the body unparsed. */
static enum coding coding_of(const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (!v || !n || (n == 8 && strncasecmp(v, "identity", 8) == 0))
		return CODING_IDENTITY;
	if ((n == 4 && strncasecmp(v, "gzip", 4) == 0) || (n == 6 && strncasecmp(v, "x-gzip", 6) == 0))
		return CODING_AUTO;
	if (n == 7 && strncasecmp(v, "deflate", 7) == 0)
		return CODING_SNIFF;
	return CODING_NONE;
}

void osh_llm_body_init(struct osh_llm_body *b, enum osh_llm_framing framing,
		       uint64_t content_length, const char *coding, size_t coding_len,
		       enum osh_llm_stream stream, size_t limit,
		       const struct osh_llm_event_sink *sink)
{
	enum osh_http_body_kind kind = framing == OSH_LLM_FRAMING_LENGTH    ? OSH_BODY_LENGTH
				       : framing == OSH_LLM_FRAMING_CHUNKED ? OSH_BODY_CHUNKED
									    : OSH_BODY_UNTIL_CLOSE;

	memset(b, 0, sizeof(*b));
	osh_http_body_start(&b->frame, kind, content_length);
	b->fr = &b->frame;
	b->done = b->frame.done;
	b->coding = (uint8_t)coding_of(coding ? coding : "", coding ? coding_len : 0);
	b->unparsed = b->coding == CODING_NONE;
	b->stream = (uint8_t)stream;
	b->limit = limit;
	if (sink)
		b->sink = *sink;
}

/* ---- after decoding: keep, or split into events --------------------------- */

static void keep(struct osh_llm_body *b, const char *p, size_t n)
{
	size_t room = b->limit > b->len ? b->limit - b->len : 0;

	if (n > room) {
		b->truncated = true;
		n = room;
	}
	if (!n)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *q;

		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > b->limit + 1)
			cap = b->limit + 1;
		q = realloc(b->buf, cap);
		if (!q) {
			b->truncated = true;
			return;
		}
		b->buf = q;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, p, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

/* Room for @want bytes (and a NUL) in the line or data buffer @p of
 * capacity *@cap: grown by doubling from 1 KiB, never past the event cap. */
static bool grow(char **p, size_t *cap, size_t want)
{
	size_t c = *cap ? *cap : 1024;
	char *q;

	if (want + 1 <= *cap)
		return true;
	if (want > OSH_LLM_EVENT_MAX)
		return false;
	while (c < want + 1)
		c *= 2;
	if (c > OSH_LLM_EVENT_MAX + 1)
		c = OSH_LLM_EVENT_MAX + 1;
	q = realloc(*p, c);
	if (!q)
		return false;
	*p = q;
	*cap = c;
	return true;
}

static void dispatch(struct osh_llm_body *b, const char *event, size_t event_len,
		     const char *data, size_t data_len)
{
	if (b->sink.on_event)
		b->sink.on_event(b->sink.arg, event, event_len, data, data_len, b->now_ns);
}

/* The SSE event built so far is complete (a blank line). */
static void sse_event_end(struct osh_llm_body *b)
{
	if (b->data_ref)
		dispatch(b, b->event, b->event_len, b->data_ref, b->data_ref_len);
	else if (b->data_any && !b->data_over)
		dispatch(b, b->event, b->event_len, b->data ? b->data : "", b->data_len);
	else if (b->data_over)
		b->malformed = true;
	b->data_ref = NULL;
	b->data_len = 0;
	b->data_any = false;
	b->data_over = false;
	b->event_len = 0;
	if (b->skim_wanted && !b->flushing)
		b->skim_now = true;
}

/* Copy the data line the event points at into its own buffer. */
static void keep_data_ref(struct osh_llm_body *b)
{
	const char *v = b->data_ref;
	size_t vn = b->data_ref_len;

	b->data_ref = NULL;
	if (vn > OSH_LLM_EVENT_MAX || !grow(&b->data, &b->data_cap, vn)) {
		b->data_over = true;
		return;
	}
	memcpy(b->data, v, vn);
	b->data_len = vn;
	b->data[vn] = '\0';
}

/* One complete SSE line (without its end); @in_place: @l lies in the piece
 * being fed, not in the line buffer. */
static void sse_line(struct osh_llm_body *b, const char *l, size_t n, bool in_place)
{
	const char *colon;
	size_t name_len;
	const char *v = "";
	size_t vn = 0;

	if (n == 0) {
		sse_event_end(b);
		return;
	}
	if (l[0] == ':')
		return;	/* comment (keep-alive pings) */
	colon = memchr(l, ':', n);
	name_len = colon ? (size_t)(colon - l) : n;
	if (colon) {
		v = colon + 1;
		vn = n - name_len - 1;
		if (vn && *v == ' ') {
			v++;
			vn--;
		}
	}
	if (name_len == 4 && memcmp(l, "data", 4) == 0) {
		size_t need = (b->data_any ? 1 : 0) + vn;

		/* The usual event: one data line, read in the same piece as
		 * its blank line. Point at it; split() copies it if the piece
		 * ends first. */
		if (!b->data_any && in_place) {
			b->data_ref = v;
			b->data_ref_len = vn;
			b->data_any = true;
			return;
		}
		if (b->data_ref)
			keep_data_ref(b);

		if (b->data_over || b->data_len + need > OSH_LLM_EVENT_MAX ||
		    !grow(&b->data, &b->data_cap, b->data_len + need)) {
			b->data_over = true;
			b->data_any = true;
			return;
		}
		if (b->data_any)
			b->data[b->data_len++] = '\n';
		memcpy(b->data + b->data_len, v, vn);
		b->data_len += vn;
		b->data[b->data_len] = '\0';
		b->data_any = true;
	} else if (name_len == 5 && memcmp(l, "event", 5) == 0) {
		b->event_len = vn < sizeof(b->event) - 1 ? vn : sizeof(b->event) - 1;
		memcpy(b->event, v, b->event_len);
		b->event[b->event_len] = '\0';
	}
	/* id, retry and unknown fields change nothing here. */
}

static void stream_line(struct osh_llm_body *b, const char *l, size_t n, bool in_place)
{
	if (b->stream == OSH_LLM_STREAM_SSE) {
		sse_line(b, l, n, in_place);
		return;
	}
	/* NDJSON: blank lines are nothing. */
	while (n && (l[n - 1] == ' ' || l[n - 1] == '\t'))
		n--;
	if (n)
		dispatch(b, "", 0, l, n);
}

/* A line ended (its bytes in b->line, or over the cap). */
static void line_done(struct osh_llm_body *b)
{
	if (b->line_over)
		b->malformed = true;
	else
		stream_line(b, b->line ? b->line : "", b->line_len, false);
	b->line_len = 0;
	b->line_over = false;
}

/* Offset of the first CR or LF in @p, or @n: 16 bytes at a time (event
 * lines are 100-200 bytes of JSON). */
static size_t eol_at(const char *p, size_t n)
{
	size_t i = 0;

#ifdef __SSE2__
	const __m128i lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');

	for (; i + 16 <= n; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		unsigned m = (unsigned)_mm_movemask_epi8(
			_mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, cr)));

		if (m)
			return i + (size_t)__builtin_ctz(m);
	}
#endif
	for (; i < n; i++)
		if (p[i] == '\n' || p[i] == '\r')
			return i;
	return n;
}

/* Part of a line that goes on past this piece: kept, up to the cap. */
static void line_append(struct osh_llm_body *b, const char *p, size_t n)
{
	if (b->line_over || b->line_len + n > OSH_LLM_EVENT_MAX ||
	    !grow(&b->line, &b->line_cap, b->line_len + n)) {
		b->line_over = true;
		return;
	}
	memcpy(b->line + b->line_len, p, n);
	b->line_len += n;
}

static void skim(struct osh_llm_body *b, const char *p, size_t n);

static void split(struct osh_llm_body *b, const char *p, size_t n)
{
	while (n) {
		size_t i;

		if (b->cr_seen && p[0] == '\n') {
			/* The LF of a CRLF whose CR ended the line already. */
			b->cr_seen = false;
			p++;
			n--;
			continue;
		}
		b->cr_seen = false;
		/* The line's end: LF or CR (CR alone ends a line too). */
		i = eol_at(p, n);
		if (i == n) {
			line_append(b, p, i);
			break;
		}
		b->cr_seen = p[i] == '\r';
		if (!b->line_len && !b->line_over) {
			/* The whole line is in this piece: no copy. */
			stream_line(b, p, i, true);
		} else {
			line_append(b, p, i);
			line_done(b);
		}
		p += i + 1;
		n -= i + 1;
		if (b->skim_now) {
			/* An event ended and skimming was asked for: the rest
			 * of the piece starts the next event. */
			b->skim_now = false;
			b->skimming = true;
			skim(b, p, n);
			return;
		}
	}
	/* An event pointing into this piece outlives it: keep its data. */
	if (b->data_ref)
		keep_data_ref(b);
}

/* ---- skimming ---------------------------------------------------------------- */

/* Kept bytes: trimmed to the last SKIM_KEEP or fewer (from an event
 * boundary) when SKIM_CAP would be exceeded, so that each trim moves at
 * most a seventh of what was appended since the last one (a quarter, with
 * 8 KiB, cost a 500-event stream 5 % more time). */
#define SKIM_KEEP 2048
#define SKIM_CAP (8 * SKIM_KEEP)

void osh_llm_body_skim(struct osh_llm_body *b)
{
	if (b->stream == OSH_LLM_STREAM_SSE)
		b->skim_wanted = true;
}

/* The kept bytes and then @p go through the splitter; skimming starts again
 * at the first boundary after them when still wanted. */
static void skim_flush(struct osh_llm_body *b, const char *p, size_t n)
{
	b->skimming = false;
	b->flushing = true;
	if (b->tail_len)
		split(b, b->tail, b->tail_len);
	b->tail_len = 0;
	b->tail_scanned = 0;
	if (n)
		split(b, p, n);
	b->flushing = false;
	/* The splitter may have stopped right at a boundary. */
	if (b->skim_wanted && !b->line_len && !b->line_over && !b->data_any && !b->data_over &&
	    !b->event_len)
		b->skimming = true;
}

/* How far after "tool_" / "function_" a call's "id" or "name" is looked
 * for: it comes right after the call's index. */
#define CALL_LOOK 256

/* Whether the bytes after the '_' at @i start a tool call: an "id" or a
 * "name" follows within CALL_LOOK bytes of the same event. The deltas that
 * only add to a call's arguments have neither (the chunk's own "id" comes
 * before its choices), and they are most of a tool call's stream. 1: yes;
 * 0: no; -1: the bytes are not there yet. */
static int skim_call_start(const char *t, size_t len, size_t i)
{
	size_t end = i + CALL_LOOK < len ? i + CALL_LOOK : len;

	for (size_t j = i; j + 1 < end; j++) {
		if (t[j] == '\n' && (t[j + 1] == '\n' || (t[j + 1] == '\r' && j + 2 < end &&
							    t[j + 2] == '\n')))
			return 0;	/* the event ended */
		if (t[j] != '"')
			continue;
		if (end - j >= 4 && memcmp(t + j, "\"id\"", 4) == 0)
			return 1;
		if (end - j >= 6 && memcmp(t + j, "\"name\"", 6) == 0)
			return 1;
	}
	return end == len && len - i < CALL_LOOK ? -1 : 0;
}

/* Whether the '_' at @i of the kept bytes makes its event matter: the tail
 * of "tool_..." / "function_..." starting a tool call, or "finish_reason"
 * with a value other than null. 1: yes; 0: no; -1: the bytes after it are
 * not there yet. */
static int skim_trigger_at(const char *t, size_t len, size_t i)
{
	size_t v;

	/* The byte before '_' tells the three words apart at once. */
	switch (i >= 8 ? t[i - 1] : 0) {
	case 'l':
		return memcmp(t + i - 5, "\"tool", 5) == 0 ? skim_call_start(t, len, i) : 0;
	case 'n':
		return memcmp(t + i - 8, "function", 8) == 0 ? skim_call_start(t, len, i) : 0;
	case 'h':
		break;	/* (a null one is settled by the caller) */
	default:
		return 0;
	}
	if (memcmp(t + i - 6, "finish", 6) != 0)
		return 0;
	if (len - i < 8)
		return -1;
	if (memcmp(t + i, "_reason\"", 8) != 0)
		return 0;
	for (v = i + 8; v < len && (t[v] == ' ' || t[v] == ':' || t[v] == '\t'); v++)
		;
	if (len - v < 4)
		return -1;
	return memcmp(t + v, "null", 4) != 0;
}

/* A '_' at @at of the kept bytes: false to go on searching; true to stop,
 * with *ret the trigger's offset, or SIZE_MAX when the bytes after it are
 * not there yet (tail_scanned left at it). */
static inline bool skim_hit(struct osh_llm_body *b, size_t at, size_t *ret)
{
	int r;

	/* Nearly every chunk's '_': settled here, without a call. */
	if (at >= 8 && b->tail_len - at >= 10 &&
	    memcmp(b->tail + at - 6, "finish_reason\":n", 16) == 0)
		return false;
	r = skim_trigger_at(b->tail, b->tail_len, at);

	if (!r)
		return false;
	if (r < 0) {
		b->tail_scanned = at;
		*ret = SIZE_MAX;
	} else {
		*ret = at;
	}
	return true;
}

/* Search what was kept since tail_scanned: the offset of a trigger, or
 * SIZE_MAX. Stops early at a '_' that cannot be decided yet. 64 bytes a
 * step with one test for all of them (most steps find no '_' at all); the
 * last, shorter stretch as the 64 bytes that end the kept ones, what was
 * searched already shifted out (nothing is read past the kept bytes), or
 * by memchr when fewer than 64 are kept.
 * MASK64(t + i) is the step's '_' bits; AVX2 where the CPU has it (two
 * compares a step instead of four). */
#define SKIM_SEARCH_BODY(MASK64)                                                              \
	const char *t = b->tail;                                                              \
	size_t len = b->tail_len;                                                             \
	size_t i = b->tail_scanned, ret;                                                      \
                                                                                              \
	for (; i + 64 <= len; i += 64) {                                                      \
		uint64_t m = MASK64(t + i);                                                   \
                                                                                              \
		for (; m; m &= m - 1)                                                         \
			if (skim_hit(b, i + (size_t)__builtin_ctzll(m), &ret))                \
				return ret;                                                   \
	}                                                                                     \
	if (i < len && len >= 64) {                                                           \
		/* The last, partial step: the 64 bytes that end the kept ones,   \
		 * those already searched shifted out. */                          \
		uint64_t m = MASK64(t + len - 64) >> (64 - (len - i));                        \
                                                                                              \
		for (; m; m &= m - 1)                                                         \
			if (skim_hit(b, i + (size_t)__builtin_ctzll(m), &ret))                \
				return ret;                                                   \
		i = len;                                                                      \
	}                                                                                     \
	for (const char *u; i < len && (u = memchr(t + i, '_', len - i)); i = (size_t)(u - t) + 1) \
		if (skim_hit(b, (size_t)(u - t), &ret))                                       \
			return ret;                                                           \
	b->tail_scanned = len;                                                                \
	return SIZE_MAX

static inline uint64_t us_mask(const char *p)
{
#ifdef __SSE2__
	const __m128i us = _mm_set1_epi8('_');
	__m128i c0 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), us);
	__m128i c1 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16)), us);
	__m128i c2 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 32)), us);
	__m128i c3 = _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 48)), us);

	if (!_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(c0, c1), _mm_or_si128(c2, c3))))
		return 0;
	return (uint64_t)(uint32_t)_mm_movemask_epi8(c0) |
	       (uint64_t)(uint32_t)_mm_movemask_epi8(c1) << 16 |
	       (uint64_t)(uint32_t)_mm_movemask_epi8(c2) << 32 |
	       (uint64_t)(uint32_t)_mm_movemask_epi8(c3) << 48;
#else
	uint64_t m = 0;

	for (unsigned j = 0; j < 64; j++)
		m |= (uint64_t)(p[j] == '_') << j;
	return m;
#endif
}

static size_t skim_search_base(struct osh_llm_body *b)
{
	SKIM_SEARCH_BODY(us_mask);
}

#ifdef OSH_SKIM_AVX2
__attribute__((target("avx2"))) static inline uint64_t us_mask_avx2(const char *p)
{
	const __m256i us = _mm256_set1_epi8('_');
	__m256i c0 = _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(const void *)p), us);
	__m256i c1 = _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(const void *)(p + 32)),
				       us);

	if (_mm256_testz_si256(_mm256_or_si256(c0, c1), _mm256_or_si256(c0, c1)))
		return 0;
	return (uint64_t)(uint32_t)_mm256_movemask_epi8(c0) |
	       (uint64_t)(uint32_t)_mm256_movemask_epi8(c1) << 32;
}

__attribute__((target("avx2"))) static size_t skim_search_avx2(struct osh_llm_body *b)
{
	SKIM_SEARCH_BODY(us_mask_avx2);
}
#endif

#ifdef OSH_SKIM_AVX2
/* -1 until decided, once per process (the same answer every time, so a
 * race between threads is harmless). */
static _Atomic int search_avx2 = -1;

static bool cpu_has_avx2(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2");
}
#endif

bool osh_llm_body_search_avx2(bool on)
{
#ifdef OSH_SKIM_AVX2
	on = on && cpu_has_avx2();
	atomic_store_explicit(&search_avx2, on, memory_order_relaxed);
	return on;
#else
	(void)on;
	return false;
#endif
}

static size_t skim_search(struct osh_llm_body *b)
{
#ifdef OSH_SKIM_AVX2
	int have = atomic_load_explicit(&search_avx2, memory_order_relaxed);

	if (have < 0) {
		have = cpu_has_avx2();
		atomic_store_explicit(&search_avx2, have, memory_order_relaxed);
	}
	if (have)
		return skim_search_avx2(b);
#endif
	return skim_search_base(b);
}

/* Where the event holding offset @at of the kept bytes starts: just past
 * the blank line before it (LF-ended), else 0 (the kept bytes start at a
 * boundary). */
static size_t skim_event_start(const char *t, size_t at)
{
	for (size_t i = at; i >= 2; i--) {
		if (t[i - 1] != '\n')
			continue;
		if (t[i - 2] == '\n' || (i >= 3 && t[i - 2] == '\r' && t[i - 3] == '\n'))
			return i;
	}
	return 0;
}

/* Just past the blank line (LF-ended) that ends the event holding offset
 * @at of the kept bytes, or SIZE_MAX when it has not come yet. */
static size_t skim_event_end(const char *t, size_t len, size_t at)
{
	const char *p = t + at, *end = t + len;

	/* An LF with a byte after it: memchr, one event's length at a time. */
	while (p + 1 < end && (p = memchr(p, '\n', (size_t)(end - 1 - p)))) {
		if (p[1] == '\n')
			return (size_t)(p - t) + 2;
		if (p[1] == '\r' && p + 2 < end && p[2] == '\n')
			return (size_t)(p - t) + 3;
		p++;
	}
	return SIZE_MAX;
}

/* Drop kept bytes from the front, up to an event boundary (a blank line,
 * LF-ended). Room (@at_end false): the first boundary past which SKIM_KEEP
 * bytes or fewer remain, else the last one (a long event is being kept
 * whole); false when there is none at all. At the end (@at_end): the last
 * boundary before the last SKIM_KEEP bytes, so that every event ending in
 * them is kept whole, however long; nothing dropped when there is none. */
static bool skim_trim(struct osh_llm_body *b, bool at_end)
{
	const char *t = b->tail;
	size_t len = b->tail_len;
	size_t at = at_end ? SIZE_MAX : skim_event_end(t, len, len - SKIM_KEEP);

	if (at == SIZE_MAX)
		at = skim_event_start(t, len - SKIM_KEEP);
	if (!at)
		return at_end;
	/* Past "\n\n" or "\n\r\n": the next event starts here. */
	memmove(b->tail, t + at, len - at);
	b->tail_len = len - at;
	b->tail_scanned = b->tail_scanned > at ? b->tail_scanned - at : 0;
	b->cr_seen = false;
	return true;
}

/* Search the kept bytes (what is new since the last search) and deal with
 * each trigger found: the event holding it goes through the splitter and
 * skimming goes on with what follows; when that event goes on past the kept
 * bytes, everything from its start is split and skimming stops until the
 * splitter reaches the next boundary (skim_flush). The events before a
 * trigger held none and are not the last: a usage in them is one a later
 * event repeats. */
static void skim_settle(struct osh_llm_body *b)
{
	size_t at = skim_search(b);

	while (at != SIZE_MAX) {
		size_t from = skim_event_start(b->tail, at);
		size_t to = skim_event_end(b->tail, b->tail_len, at);

		if (to == SIZE_MAX) {
			if (from) {
				memmove(b->tail, b->tail + from, b->tail_len - from);
				b->tail_len -= from;
				b->cr_seen = false;
			}
			skim_flush(b, NULL, 0);
			return;
		}
		b->flushing = true;
		split(b, b->tail + from, to - from);
		b->flushing = false;
		memmove(b->tail, b->tail + to, b->tail_len - to);
		b->tail_len -= to;
		b->tail_scanned = 0;
		b->cr_seen = false;
		at = skim_search(b);
	}
}

/* Room for @k more kept bytes (k <= SKIM_KEEP). What is kept is searched
 * before a trim drops any of it. False: no room, and either skimming
 * stopped (a trigger's event goes on: the rest is split) or, still
 * skimming, there is no boundary to cut at or no memory (the caller
 * flushes). */
static bool skim_room(struct osh_llm_body *b, size_t k)
{
	if (!b->tail && !(b->tail = malloc(SKIM_CAP)))
		return false;
	if (b->tail_len + k <= SKIM_CAP)
		return true;
	skim_settle(b);
	if (!b->skimming)
		return false;
	if (b->tail_len + k <= SKIM_CAP)
		return true;
	return skim_trim(b, false) && b->tail_len + k <= SKIM_CAP;
}

/* Decoded bytes while skimming: kept, not yet searched. The search runs
 * once per piece fed (osh_llm_body_feed), or when room is needed: a read
 * of many small chunks costs one search, not one per chunk. */
static void skim(struct osh_llm_body *b, const char *p, size_t n)
{
	while (n && b->skimming) {
		size_t k = n < SKIM_KEEP ? n : SKIM_KEEP;

		if (!skim_room(b, k)) {
			if (b->skimming) {
				/* An event this long is better split as
				 * usual. */
				skim_flush(b, p, n);
				return;
			}
			continue;	/* skimming may start again at once */
		}
		/* memmove: GCC turns a memcpy of this size into "rep movsq", which
		 * costs ~3x libc's vector copy on the AMD machines measured. */
		memmove(b->tail + b->tail_len, p, k);
		b->tail_len += k;
		p += k;
		n -= k;
	}
	if (n)
		split(b, p, n);
}

static void decoded(struct osh_llm_body *b, const char *p, size_t n)
{
	if (!n)
		return;
	if (!b->first_ns)
		b->first_ns = b->now_ns ? b->now_ns : 1;
	b->decoded += n;
	if (b->stream == OSH_LLM_STREAM_NONE)
		keep(b, p, n);
	else if (b->skimming)
		skim(b, p, n);
	else
		split(b, p, n);
}

/* ---- decompression ---------------------------------------------------------- */

static bool inflate_start(struct osh_llm_body *b, int window_bits)
{
	const struct osh_zlib *z = osh_zlib();
	z_stream *s;

	if (!z) {
		b->unparsed = true;
		b->coding = CODING_NONE;
		return false;
	}
	s = calloc(1, sizeof(*s));
	if (!s || osh_inflate_init(z, s, window_bits) != Z_OK) {
		free(s);
		b->unparsed = true;
		b->coding = CODING_NONE;
		return false;
	}
	b->z = s;
	return true;
}

static void inflate_bytes(struct osh_llm_body *b, const char *p, size_t n)
{
	const struct osh_zlib *z = osh_zlib();
	z_stream *s = b->z;
	char out[16384];

	s->next_in = (Bytef *)(uintptr_t)p;
	s->avail_in = (uInt)n;
	while (s->avail_in) {
		int r;

		s->next_out = (Bytef *)out;
		s->avail_out = sizeof(out);
		r = z->inflate(s, Z_NO_FLUSH);
		decoded(b, out, sizeof(out) - s->avail_out);
		if (r == Z_STREAM_END) {
			/* Concatenated gzip members are rare here; what follows is
			 * ignored. */
			s->avail_in = 0;
			break;
		}
		if (r != Z_OK && r != Z_BUF_ERROR) {
			b->malformed = true;
			b->coding = CODING_NONE;
			return;
		}
		if (r == Z_BUF_ERROR && s->avail_out)
			break;
	}
}

static void payload(struct osh_llm_body *b, const char *p, size_t n)
{
	b->wire_bytes += n;
	switch (b->coding) {
	case CODING_IDENTITY:
		decoded(b, p, n);
		return;
	case CODING_SNIFF: {
		/* zlib's header: CM 8 in the low nibble of the first byte, and
		 * the first two bytes a multiple of 31 (RFC 1950). */
		while (n && b->sniff_len < 2) {
			b->sniff[b->sniff_len++] = (uint8_t)*p++;
			n--;
		}
		if (b->sniff_len < 2)
			return;
		bool zlib = (b->sniff[0] & 0x0f) == 8 && ((b->sniff[0] << 8) | b->sniff[1]) % 31 == 0;

		if (!inflate_start(b, zlib ? 15 : -15))
			return;
		b->coding = zlib ? CODING_AUTO : CODING_RAW;
		inflate_bytes(b, (const char *)b->sniff, 2);
		if (n && b->coding != CODING_NONE)
			inflate_bytes(b, p, n);
		return;
	}
	case CODING_AUTO:
	case CODING_RAW:
		if (!b->z && !inflate_start(b, b->coding == CODING_AUTO ? 15 + 32 : -15))
			return;
		inflate_bytes(b, p, n);
		return;
	default:
		return;	/* counted only */
	}
}

/* ---- framing ------------------------------------------------------------------ */

/* Skimming an identity-coded stream (a long answer, the common case): the
 * payload of chunk after chunk is copied into the kept bytes by one walker
 * call for many chunks; the search comes once, after.
 * Stops at framing that the general walker must see, or when skimming
 * stops. Returns the bytes of @p used. */
static size_t skim_gather(struct osh_llm_body *b, const char *p, size_t n)
{
	const char *start = p;

	while (n && b->skimming) {
		size_t used, copied;

		/* Room for SKIM_KEEP at least (or all of @n): the walker
		 * stops where the room ends. */
		if (!skim_room(b, n < SKIM_KEEP ? n : SKIM_KEEP))
			break;	/* the general path flushes or splits */
		used = osh_http_body_copy_payload(b->fr, p, n, b->tail + b->tail_len,
						  SKIM_CAP - b->tail_len, &copied);
		if (!used)
			break;
		b->tail_len += copied;
		b->wire_bytes += copied;
		b->decoded += copied;
		p += used;
		n -= used;
	}
	return (size_t)(p - start);
}

/* The bytes of @p used (up to the body's end), or -1: the framing broke. */
static ssize_t feed(struct osh_llm_body *b, const char *p, size_t n, uint64_t now_ns)
{
	struct osh_http_body *fr = b->fr;
	const char *start = p;

	b->now_ns = now_ns;
	while (n && !fr->done && !b->frame_bad) {
		uint64_t ahead;

		if (b->skimming && b->coding == CODING_IDENTITY) {
			size_t used = skim_gather(b, p, n);

			p += used;
			n -= used;
			if (!n || fr->done)
				break;
		}
		ahead = osh_http_body_payload_ahead(fr);

		if (ahead) {
			size_t k = ahead < n ? (size_t)ahead : n;

			(void)osh_http_body_skip(fr, k);
			payload(b, p, k);
			p += k;
			n -= k;
			continue;
		}
		/* The usual framing between two chunks, at once. */
		{
			size_t k = osh_http_body_next_chunk(fr, p, n);

			if (k) {
				p += k;
				n -= k;
				continue;
			}
		}
		/* Other framing bytes (a chunk-size line, the CRLF after data,
		 * trailers): up to the next LF at once. The walker stops at
		 * the end of a line when data follows (and when a CRLF stands
		 * where data should, it says so). */
		{
			const char *lf = memchr(p, '\n', n);
			size_t k = lf ? (size_t)(lf - p) + 1 : n;
			ssize_t used = osh_http_body_feed(fr, p, k);

			if (used < 0) {
				b->malformed = true;
				b->frame_bad = true;
				break;
			}
			if ((size_t)used < k && !fr->done) {
				/* Data began inside what we gave: cannot be, the
				 * walker consumed payload we did not see. */
				b->malformed = true;
				b->frame_bad = true;
				break;
			}
			p += used;
			n -= (size_t)used;
		}
	}
	if (b->skimming)
		skim_settle(b);
	if (fr->done && !b->done) {
		b->done = true;
		osh_llm_body_end(b);
	}
	return b->frame_bad ? -1 : p - start;
}

bool osh_llm_body_feed(struct osh_llm_body *b, const char *p, size_t n, uint64_t now_ns)
{
	(void)feed(b, p, n, now_ns);
	return b->done;
}

ssize_t osh_llm_body_walk(struct osh_llm_body *b, struct osh_http_body *w, const char *p, size_t n,
			  uint64_t now_ns)
{
	b->fr = w;
	return feed(b, p, n, now_ns);
}

void osh_llm_body_end(struct osh_llm_body *b)
{
	if (b->stream == OSH_LLM_STREAM_NONE)
		return;
	/* Triggers first: the trim below drops bytes. */
	if (b->skimming)
		skim_settle(b);
	/* What was skimmed goes through the splitter now: the stream's last
	 * events (usage, errors) are in it. */
	if (b->skimming || b->tail_len) {
		/* The last events are what matters: those ending in the
		 * last 2 KiB. */
		if (b->tail_len > SKIM_KEEP)
			(void)skim_trim(b, true);
		skim_flush(b, NULL, 0);
	}
	b->skimming = false;
	b->skim_wanted = false;
	if (b->line_len || b->line_over)
		line_done(b);
	if (b->stream == OSH_LLM_STREAM_SSE && (b->data_any || b->data_over))
		sse_event_end(b);
}

const char *osh_llm_body_data(const struct osh_llm_body *b, size_t *ret_len)
{
	*ret_len = b->buf ? b->len : 0;
	return b->buf;
}

void osh_llm_body_free(struct osh_llm_body *b)
{
	if (b->z) {
		const struct osh_zlib *z = osh_zlib();

		if (z)
			z->inflateEnd(b->z);
		free(b->z);
	}
	free(b->buf);
	free(b->line);
	free(b->data);
	free(b->tail);
	memset(b, 0, sizeof(*b));
}
