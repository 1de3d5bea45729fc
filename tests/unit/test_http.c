/* Tests for src/http.c: head boundaries, sniffing, request and response heads,
 * body framing and the chunked decoder.
 *
 * Every input that can arrive in pieces is run whole, byte at a time and split
 * at every point into two pieces. Inputs are copied to the very end of a
 * readable mapping followed by a PROT_NONE page, so a read past the caller's
 * length crashes the test instead of passing silently. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "http.h"

/* ---- helpers ---------------------------------------------------------- */

/* Readable pages followed by an inaccessible one. */
struct guard {
	char *base;
	size_t size;		/* readable bytes */
	size_t map_len;
};

static void guard_init(struct guard *g, size_t max)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t n = (max + page - 1) / page * page;

	if (n == 0)
		n = page;
	g->map_len = n + page;
	g->base = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	cr_assert_neq(g->base, MAP_FAILED);
	cr_assert_eq(mprotect(g->base + n, page, PROT_NONE), 0);
	g->size = n;
}

static void guard_finish(struct guard *g)
{
	munmap(g->base, g->map_len);
}

/* Copy @len bytes so that they end exactly at the inaccessible page. */
static const char *guard_place(struct guard *g, const char *data, size_t len)
{
	char *dst = g->base + g->size - len;

	cr_assert_leq(len, g->size);
	memmove(dst, data, len);
	return dst;
}

static bool str_is(struct osh_str s, const char *lit)
{
	if (!lit)
		return s.p == NULL && s.len == 0;
	return s.p && s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

#define assert_str(s, lit, what)                                                                   \
	cr_assert(str_is((s), (lit)), "%s: got '%.*s' (len %zu, %s), want '%s'", (what),          \
		  (int)(s).len, (s).p ? (s).p : "", (s).len, (s).p ? "set" : "NULL",             \
		  (lit) ? (lit) : "(absent)")

/* Drop every CR: the same head with bare LF line endings. */
static char *to_lf(const char *s)
{
	char *out = malloc(strlen(s) + 1);
	char *o = out;

	cr_assert_not_null(out);
	for (; *s; s++) {
		if (*s != '\r')
			*o++ = *s;
	}
	*o = '\0';
	return out;
}

/* Deterministic xorshift for the property tests. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Straightforward reference for osh_http_head_end. */
static ssize_t ref_head_end(const char *b, size_t len)
{
	size_t lim = len < OSH_HTTP_MAX_HEAD ? len : OSH_HTTP_MAX_HEAD;

	for (size_t i = 0; i < lim; i++) {
		if (b[i] != '\n')
			continue;
		if (i + 1 < lim && b[i + 1] == '\n')
			return (ssize_t)(i + 2);
		if (i + 2 < lim && b[i + 1] == '\r' && b[i + 2] == '\n')
			return (ssize_t)(i + 3);
	}
	return len >= OSH_HTTP_MAX_HEAD ? OSH_HTTP_INVALID : OSH_HTTP_PARTIAL;
}

/* Check osh_http_head_end on @s whose head is @want long (or a code): whole,
 * at every prefix, resumed from every split point, and byte at a time. */
static void check_head_end(const char *s, size_t len, ssize_t want)
{
	struct guard g;
	const char *b;
	size_t last = 0;
	ssize_t r = OSH_HTTP_PARTIAL;

	guard_init(&g, len);
	b = guard_place(&g, s, len);
	cr_assert_eq(osh_http_head_end(b, len, 0), want, "whole: %.*s", (int)len, s);
	for (size_t k = 0; k <= len; k++) {
		ssize_t first;
		const char *pre = guard_place(&g, s, k);

		first = osh_http_head_end(pre, k, 0);
		if (want > 0 && k < (size_t)want)
			cr_assert_eq(first, OSH_HTTP_PARTIAL, "prefix %zu of %.*s", k, (int)len, s);
		if (first != OSH_HTTP_PARTIAL)
			continue;
		b = guard_place(&g, s, len);
		cr_assert_eq(osh_http_head_end(b, len, k), want, "resume at %zu: %.*s", k,
			     (int)len, s);
	}
	/* Byte at a time, as a caller appending to its buffer would. */
	for (size_t k = 1; k <= len; k++) {
		b = guard_place(&g, s, k);
		r = osh_http_head_end(b, k, last);
		if (r != OSH_HTTP_PARTIAL)
			break;
		last = k;
	}
	cr_assert_eq(r, want, "byte at a time: %.*s", (int)len, s);
	guard_finish(&g);
}

/* Parse a valid request head @s: every strict prefix must be PARTIAL, the
 * whole must give strlen(@s), trailing body bytes must not matter, and
 * head_end must agree. The result points into @s. */
static void parse_req_ok(const char *s, struct osh_http_request *out)
{
	size_t len = strlen(s);
	size_t extra_len = len + 7;
	char *extra = malloc(extra_len);
	struct osh_http_request r;
	struct guard g;
	int n;

	guard_init(&g, extra_len);
	for (size_t k = 0; k < len; k++) {
		const char *b = guard_place(&g, s, k);

		memset(&r, 0xa5, sizeof(r));
		n = osh_http_parse_request(&r, b, k);
		cr_assert_eq(n, OSH_HTTP_PARTIAL, "prefix %zu of '%s' gave %d", k, s, n);
	}
	n = osh_http_parse_request(&r, guard_place(&g, s, len), len);
	cr_assert_eq(n, (int)len, "whole '%s' gave %d", s, n);

	memcpy(extra, s, len);
	memcpy(extra + len, "BODY...", 7);
	n = osh_http_parse_request(&r, guard_place(&g, extra, extra_len), extra_len);
	cr_assert_eq(n, (int)len, "with body '%s' gave %d", s, n);
	guard_finish(&g);
	free(extra);

	check_head_end(s, len, (ssize_t)len);

	memset(out, 0xa5, sizeof(*out));
	n = osh_http_parse_request(out, s, len);
	cr_assert_eq(n, (int)len);
	cr_assert_eq(out->head_len, len);
	cr_assert_lt(out->blank_line_off, len);
	cr_assert(out->head_len - out->blank_line_off == 1 ||
		  out->head_len - out->blank_line_off == 2);
	cr_assert(s[out->blank_line_off] == '\r' || s[out->blank_line_off] == '\n');
	cr_assert_eq(s[out->line_len - 1], '\n');
	/* The sniff only takes uppercase methods; the parser any token. */
	if (s[0] >= 'A' && s[0] <= 'Z')
		cr_assert_eq(osh_http_sniff_request(s, len), 1, "sniff '%s'", s);
}

/* An invalid request head: INVALID whole; each prefix PARTIAL or INVALID. */
static void parse_req_invalid(const char *s, size_t len)
{
	struct osh_http_request r;
	struct guard g;
	int n;

	guard_init(&g, len);
	for (size_t k = 0; k < len; k++) {
		n = osh_http_parse_request(&r, guard_place(&g, s, k), k);
		cr_assert(n == OSH_HTTP_PARTIAL || n == OSH_HTTP_INVALID,
			  "prefix %zu of '%.*s' gave %d", k, (int)len, s, n);
	}
	n = osh_http_parse_request(&r, guard_place(&g, s, len), len);
	cr_assert_eq(n, OSH_HTTP_INVALID, "'%.*s' gave %d", (int)len, s, n);
	guard_finish(&g);
}

/* @parse (a response head parser) on every prefix of @s, each placed at a
 * page's end, asks for more bytes; returns what it gives for all @len
 * bytes, its result in *@r. */
static int resp_prefixes_partial(int (*parse)(struct osh_http_response *, const char *, size_t),
				 const char *s, size_t len, struct osh_http_response *r)
{
	struct guard g;
	int n;

	guard_init(&g, len);
	for (size_t k = 0; k < len; k++) {
		n = parse(r, guard_place(&g, s, k), k);
		cr_assert_eq(n, OSH_HTTP_PARTIAL, "prefix %zu of '%s' gave %d", k, s, n);
	}
	n = parse(r, guard_place(&g, s, len), len);
	guard_finish(&g);
	return n;
}

/* The server side's scan of a head (osh_http_scan_response_head) gives
 * what the full parse gave (@full, of the whole @s) for its framing, and
 * asks for more bytes at every shorter length. */
static void scan_agrees(const char *s, size_t len, const struct osh_http_response *full)
{
	struct osh_http_response r;
	int n = resp_prefixes_partial(osh_http_scan_response_head, s, len, &r);

	cr_assert_eq(n, (int)full->head_len, "scan of '%s' gave %d", s, n);
	cr_assert_eq(r.head_len, full->head_len);
	cr_assert_eq(r.status, full->status, "%s", s);
	cr_assert_eq(r.minor_version, full->minor_version, "%s", s);
	cr_assert_eq(r.body, full->body, "%s", s);
	cr_assert_eq(r.content_length, full->content_length, "%s", s);
	cr_assert_eq(r.connection_close, full->connection_close, "%s", s);
	cr_assert_eq(r.content_type.len, 0);
	cr_assert_eq(r.request_id.len, 0);
}

static void parse_resp_ok(const char *s, struct osh_http_response *out)
{
	size_t len = strlen(s);
	struct osh_http_response r;
	int n = resp_prefixes_partial(osh_http_parse_response, s, len, &r);

	cr_assert_eq(n, (int)len, "whole '%s' gave %d", s, n);
	check_head_end(s, len, (ssize_t)len);

	memset(out, 0xa5, sizeof(*out));
	n = osh_http_parse_response(out, s, len);
	cr_assert_eq(n, (int)len);
	cr_assert_eq(out->head_len, len);
	cr_assert_eq(osh_http_sniff_response(s, len), 1);
	scan_agrees(s, len, out);
}

static void parse_resp_invalid(const char *s, size_t len)
{
	struct osh_http_response r;
	struct guard g;
	int n;

	guard_init(&g, len);
	for (size_t k = 0; k < len; k++) {
		n = osh_http_parse_response(&r, guard_place(&g, s, k), k);
		cr_assert(n == OSH_HTTP_PARTIAL || n == OSH_HTTP_INVALID,
			  "prefix %zu of '%.*s' gave %d", k, (int)len, s, n);
	}
	n = osh_http_parse_response(&r, guard_place(&g, s, len), len);
	cr_assert_eq(n, OSH_HTTP_INVALID, "'%.*s' gave %d", (int)len, s, n);
	guard_finish(&g);
}

/* Feed @len bytes to a fresh walker in pieces. @cuts lists piece ends
 * (ascending, the last == len). Returns bytes consumed in total, or INVALID;
 * stops at the first piece not fully consumed (the body ended there). */
static ssize_t feed_pieces(struct osh_http_body *b, enum osh_http_body_kind kind, uint64_t cl,
			   const char *data, const size_t *cuts, size_t ncuts,
			   struct guard *g)
{
	size_t pos = 0;

	osh_http_body_start(b, kind, cl);
	for (size_t i = 0; i < ncuts; i++) {
		size_t n = cuts[i] - pos;
		const char *p = guard_place(g, data + pos, n);
		ssize_t r = osh_http_body_feed(b, p, n);

		if (r < 0) {
			cr_assert_eq(r, OSH_HTTP_INVALID);
			/* An error is sticky. */
			cr_assert_eq(osh_http_body_feed(b, "0\r\n\r\n", 5), OSH_HTTP_INVALID);
			return r;
		}
		cr_assert_leq((size_t)r, n);
		pos += (size_t)r;
		if ((size_t)r < n) {
			cr_assert(b->done, "piece not consumed but body not done");
			break;
		}
		if (b->done)
			break;
	}
	if (b->done) {
		/* Nothing more belongs to a finished body. */
		cr_assert_eq(osh_http_body_feed(b, "xyz", 3), 0);
	}
	return (ssize_t)pos;
}

/* Run a body whole, byte at a time and split in two at every point: each way
 * must consume @want bytes (or be INVALID when @want is), reach @done and
 * count @payload. */
static void check_body(enum osh_http_body_kind kind, uint64_t cl, const char *data, size_t len,
		       ssize_t want, bool done, uint64_t payload)
{
	struct osh_http_body b;
	struct guard g;
	size_t *cuts = malloc((len + 2) * sizeof(*cuts));
	ssize_t r;

	guard_init(&g, len);

	/* whole */
	cuts[0] = len;
	r = feed_pieces(&b, kind, cl, data, cuts, 1, &g);
	cr_assert_eq(r, want, "whole '%.*s': %zd", (int)len, data, r);
	if (want >= 0) {
		cr_assert_eq(b.done, done, "whole '%.*s': done", (int)len, data);
		cr_assert_eq(b.payload, payload, "whole '%.*s': payload %llu", (int)len, data,
			     (unsigned long long)b.payload);
	}

	/* byte at a time */
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	r = feed_pieces(&b, kind, cl, data, cuts, len, &g);
	cr_assert_eq(r, want, "bytewise '%.*s': %zd", (int)len, data, r);
	if (want >= 0) {
		cr_assert_eq(b.done, done);
		cr_assert_eq(b.payload, payload, "bytewise '%.*s': payload %llu", (int)len, data,
			     (unsigned long long)b.payload);
	}

	/* two pieces, including an empty first or second piece */
	for (size_t k = 0; k <= len; k++) {
		cuts[0] = k;
		cuts[1] = len;
		r = feed_pieces(&b, kind, cl, data, cuts, 2, &g);
		cr_assert_eq(r, want, "split %zu '%.*s': %zd", k, (int)len, data, r);
		if (want >= 0) {
			cr_assert_eq(b.done, done);
			cr_assert_eq(b.payload, payload, "split %zu: payload", k);
		}
	}
	guard_finish(&g);
	free(cuts);
}

#define CHECK_BODY(kind, cl, lit, want, done, payload)                                            \
	check_body((kind), (cl), (lit), sizeof(lit) - 1, (want), (done), (payload))
/* A complete chunked body @lit, optionally followed by the next message. */
#define CHECK_CHUNKED(lit, payload)                                                                \
	CHECK_BODY(OSH_BODY_CHUNKED, 0, lit, (ssize_t)sizeof(lit) - 1, true, (payload))
#define CHECK_CHUNKED_TAIL(lit, tail, payload)                                                     \
	CHECK_BODY(OSH_BODY_CHUNKED, 0, lit tail, (ssize_t)sizeof(lit) - 1, true, (payload))
#define CHECK_CHUNKED_BAD(lit) CHECK_BODY(OSH_BODY_CHUNKED, 0, lit, OSH_HTTP_INVALID, false, 0)

/* ---- osh_str_ieq ------------------------------------------------------ */

Test(http_str, ieq)
{
	struct osh_str s = { .p = "Content-Length", .len = 14 };
	struct osh_str part = { .p = "Content-Length", .len = 7 };
	struct osh_str empty = { 0 };

	cr_assert(osh_str_ieq(s, "content-length"));
	cr_assert(osh_str_ieq(s, "CONTENT-LENGTH"));
	cr_assert(osh_str_ieq(s, "Content-Length"));
	cr_assert_not(osh_str_ieq(s, "content-lengths"));
	cr_assert_not(osh_str_ieq(s, "content-lengt"));
	cr_assert_not(osh_str_ieq(s, "content_length"));
	cr_assert(osh_str_ieq(part, "CONTENT"));
	cr_assert_not(osh_str_ieq(part, "content-length"));
	cr_assert(osh_str_ieq(empty, ""));
	cr_assert_not(osh_str_ieq(empty, "a"));
	/* Only ASCII letters fold: '@' (0x40) and '`' (0x60) differ. */
	cr_assert_not(osh_str_ieq((struct osh_str){ .p = "@", .len = 1 }, "`"));
	cr_assert_not(osh_str_ieq((struct osh_str){ .p = "[", .len = 1 }, "{"));
}

/* ---- osh_http_head_end ------------------------------------------------ */

Test(http_head_end, terminators)
{
	static const struct {
		const char *s;
		ssize_t want;
	} cases[] = {
		{ "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27 },
		{ "GET / HTTP/1.1\nHost: a\n\n", 24 },
		{ "GET / HTTP/1.1\nHost: a\n\r\n", 25 },
		{ "GET / HTTP/1.1\r\nHost: a\r\n\n", 26 },
		{ "GET / HTTP/1.1\r\n\r\n", 18 },
		{ "GET / HTTP/1.1\r\n\r\nbody\r\n\r\n", 18 },
		{ "HTTP/1.1 200 OK\r\n\r\n\r\n", 19 },
		{ "\n\n", 2 },
		{ "\r\n\r\n", 4 },
		{ "GET / HTTP/1.1\r\nHost: a\r\n\r", OSH_HTTP_PARTIAL },
		{ "GET / HTTP/1.1\r\nHost: a\r\n", OSH_HTTP_PARTIAL },
		{ "GET / HTTP/1.1\r\nHost: a\r\r\n", OSH_HTTP_PARTIAL },
		{ "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", OSH_HTTP_PARTIAL },
		{ "a\rb\r\r", OSH_HTTP_PARTIAL },
		{ "", OSH_HTTP_PARTIAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_head_end(cases[i].s, strlen(cases[i].s), cases[i].want);
}

/* Random mixes of the bytes that matter, against the reference, resumed from
 * every earlier length. */
Test(http_head_end, matches_reference)
{
	static const char alphabet[] = "a\r\n :";
	char buf[48];

	for (int iter = 0; iter < 3000; iter++) {
		size_t len = rng() % sizeof(buf);

		for (size_t i = 0; i < len; i++)
			buf[i] = alphabet[rng() % (sizeof(alphabet) - 1)];
		for (size_t k = 0; k <= len; k++) {
			if (ref_head_end(buf, k) != OSH_HTTP_PARTIAL)
				break;
			cr_assert_eq(osh_http_head_end(buf, len, k), ref_head_end(buf, len),
				     "iter %d resume %zu", iter, k);
		}
	}
}

Test(http_head_end, cap)
{
	size_t big = OSH_HTTP_MAX_HEAD + 100;
	char *buf = malloc(big);

	memset(buf, 'a', big);
	for (size_t i = 60; i < big; i += 61)
		buf[i] = '\n'; /* many lines, no empty one */
	cr_assert_eq(osh_http_head_end(buf, OSH_HTTP_MAX_HEAD - 1, 0), OSH_HTTP_PARTIAL);
	cr_assert_eq(osh_http_head_end(buf, OSH_HTTP_MAX_HEAD, 0), OSH_HTTP_INVALID);
	cr_assert_eq(osh_http_head_end(buf, big, 0), OSH_HTTP_INVALID);
	cr_assert_eq(osh_http_head_end(buf, big, OSH_HTTP_MAX_HEAD - 1), OSH_HTTP_INVALID);
	cr_assert_eq(osh_http_head_end(buf, big, big), OSH_HTTP_INVALID);

	/* An end finishing exactly at the cap is accepted, one byte later not. */
	memset(buf, 'a', big);
	memcpy(buf + OSH_HTTP_MAX_HEAD - 4, "\r\n\r\n", 4);
	cr_assert_eq(osh_http_head_end(buf, big, 0), OSH_HTTP_MAX_HEAD);
	cr_assert_eq(osh_http_head_end(buf, OSH_HTTP_MAX_HEAD, OSH_HTTP_MAX_HEAD - 2),
		     OSH_HTTP_MAX_HEAD);
	memset(buf, 'a', big);
	memcpy(buf + OSH_HTTP_MAX_HEAD - 3, "\r\n\r\n", 4);
	cr_assert_eq(osh_http_head_end(buf, big, 0), OSH_HTTP_INVALID);
	free(buf);
}

/* A last_len larger than the data (a confused caller) must not read past it. */
Test(http_head_end, last_len_beyond_len)
{
	struct guard g;
	const char *b;

	guard_init(&g, 64);
	b = guard_place(&g, "GET / HTTP/1.1\r\n\r\n", 18);
	cr_assert_eq(osh_http_head_end(b, 18, 1000), 18);
	b = guard_place(&g, "GET / HTTP/1.1\r\n", 16);
	cr_assert_eq(osh_http_head_end(b, 16, 1000), OSH_HTTP_PARTIAL);
	guard_finish(&g);
}

/* ---- sniffing --------------------------------------------------------- */

Test(http_sniff, request_table)
{
	static const struct {
		const char *s;
		size_t len;	/* 0: strlen */
		int want;
	} cases[] = {
		{ "GET / HTTP/1.1\r\n", 0, 1 },
		{ "GET /", 0, 1 },
		{ "POST /api", 0, 1 },
		{ "OPTIONS * HTTP/1.1", 0, 1 },
		{ "CONNECT example.com:443 HTTP/1.1", 0, 1 },
		{ "GET http://example.com/ HTTP/1.1", 0, 1 },
		{ "M-SEARCH * HTTP/1.1", 0, 1 },
		{ "VERSION_CONTROL /x", 0, 1 },
		{ "B2 /x", 0, 1 },
		{ "ABCDEFGHIJKLMNOPQRST /", 0, 1 },	/* 20 chars */
		{ "ABCDEFGHIJKLMNOPQRSTU /", 0, 0 },	/* 21 chars */
		{ "PRI /foo HTTP/1.1", 0, 1 },
		{ "PRI * HTTP/1.1", 0, 1 },
		{ "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 0, 0 },
		{ "PRI * HTTP/2.0", 0, 0 },
		{ "get / HTTP/1.1", 0, 0 },
		{ "Get / HTTP/1.1", 0, 0 },
		{ "1GET /", 0, 0 },
		{ "-GET /", 0, 0 },
		{ " GET /", 0, 0 },
		{ "GET  /", 0, 0 },
		{ "GET\t/", 0, 0 },
		{ "GET\r\n", 0, 0 },
		{ "GET .", 0, 0 },
		{ "GET %", 0, 0 },
		{ "GET 1", 0, 0 },
		{ "G.T /", 0, 0 },
		{ "HTTP/1.1 200 OK\r\n", 0, 0 },
		{ "SSH-2.0-OpenSSH_9.2\r\n", 0, 0 },
		{ "*1\r\n$4\r\nPING\r\n", 0, 0 },	/* Redis */
		{ "+OK\r\n", 0, 0 },
		{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, 0 }, /* TLS */
		{ "\x00\x00\x00\x08\x04\xd2\x16\x2f", 8, 0 },	/* PostgreSQL SSLRequest */
		{ "\x00\x00\x00\x54\x00\x03\x00\x00user", 12, 0 }, /* PostgreSQL startup */
		{ "\x80\x01\x00\x01", 4, 0 },
		{ "GET \x00", 5, 0 },
		{ "G\x00T /", 5, 0 },
		{ "GET \xc3\xa9", 6, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].s);
		struct guard g;

		guard_init(&g, len);
		cr_assert_eq(osh_http_sniff_request(guard_place(&g, cases[i].s, len), len),
			     cases[i].want, "case %zu '%.*s'", i, (int)len, cases[i].s);
		guard_finish(&g);
	}
}

/* Every prefix of something that becomes a request is PARTIAL until the
 * first target byte, and never 0. */
Test(http_sniff, request_partial)
{
	static const char *const starts[] = {
		"GET / HTTP/1.1\r\n",
		"M-SEARCH * HTTP/1.1\r\n",
		"ABCDEFGHIJKLMNOPQRST /x",
		"CONNECT h:1 HTTP/1.1\r\n",
	};

	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		const char *s = starts[i];
		size_t decide = (size_t)(strchr(s, ' ') - s) + 2;
		struct guard g;

		guard_init(&g, strlen(s));
		for (size_t k = 0; k <= strlen(s); k++) {
			int r = osh_http_sniff_request(guard_place(&g, s, k), k);

			cr_assert_eq(r, k < decide ? OSH_HTTP_PARTIAL : 1, "'%s' at %zu: %d", s, k,
				     r);
		}
		guard_finish(&g);
	}
}

/* The HTTP/2 preface stays PARTIAL while it could still be one, then 0. */
Test(http_sniff, h2_preface)
{
	static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	struct guard g;

	guard_init(&g, sizeof(preface));
	for (size_t k = 0; k < sizeof(preface); k++) {
		int r = osh_http_sniff_request(guard_place(&g, preface, k), k);

		cr_assert_eq(r, k < 14 ? OSH_HTTP_PARTIAL : 0, "at %zu: %d", k, r);
	}
	guard_finish(&g);
	cr_assert_eq(osh_http_sniff_request("PRI * HTTP/2.1", 14), 1);
	cr_assert_eq(osh_http_sniff_request("PRI * X", 7), 1);
	cr_assert_eq(osh_http_sniff_request("PRIX * HTTP/2.0", 15), 1);
}

Test(http_sniff, response)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\n";
	struct guard g;

	guard_init(&g, sizeof(ok));
	for (size_t k = 0; k < sizeof(ok); k++) {
		int r = osh_http_sniff_response(guard_place(&g, ok, k), k);

		cr_assert_eq(r, k < 7 ? OSH_HTTP_PARTIAL : 1, "at %zu", k);
	}
	guard_finish(&g);
	cr_assert_eq(osh_http_sniff_response("HTTP/1.0 200", 12), 1);
	cr_assert_eq(osh_http_sniff_response("HTTP/2 200", 10), 0);
	cr_assert_eq(osh_http_sniff_response("HTTP/2.0 200", 12), 0);
	cr_assert_eq(osh_http_sniff_response("http/1.1 200", 12), 0);
	cr_assert_eq(osh_http_sniff_response("HTTX", 4), 0);
	cr_assert_eq(osh_http_sniff_response("\x16\x03\x03", 3), 0);
	cr_assert_eq(osh_http_sniff_response("GET / HTTP/1.1", 14), 0);
	cr_assert_eq(osh_http_sniff_response("+OK\r\n", 5), 0);
	cr_assert_eq(osh_http_sniff_response("H", 1), OSH_HTTP_PARTIAL);
}

/* Random binary never looks like a request unless it really starts like one. */
Test(http_sniff, random_binary)
{
	unsigned char buf[32];

	for (int iter = 0; iter < 20000; iter++) {
		size_t len = rng() % sizeof(buf);
		int r;

		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)rng();
		r = osh_http_sniff_request((const char *)buf, len);
		cr_assert(r == 0 || r == 1 || r == OSH_HTTP_PARTIAL);
		if (len && (buf[0] < 'A' || buf[0] > 'Z'))
			cr_assert_eq(r, 0);
		r = osh_http_sniff_response((const char *)buf, len);
		if (len && buf[0] != 'H')
			cr_assert_eq(r, 0);
	}
}

/* ---- requests --------------------------------------------------------- */

struct req_case {
	const char *head;
	const char *method;
	const char *target;
	int minor;
	enum osh_http_body_kind body;
	uint64_t cl;
	const char *host;
	unsigned flags;
};

enum { CLOSE = 1, EXPECT = 2, UPGRADE = 4 };

static const struct req_case req_cases[] = {
	{ "GET /index.html?q=1&r=%20 HTTP/1.1\r\nHost: example.com\r\n"
	  "User-Agent: curl/8.1.2\r\nAccept: */*\r\n\r\n",
	  "GET", "/index.html?q=1&r=%20", 1, OSH_BODY_NONE, 0, "example.com", 0 },
	{ "POST /api/v1/items HTTP/1.1\r\nHost: api.local:8080\r\n"
	  "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n",
	  "POST", "/api/v1/items", 1, OSH_BODY_LENGTH, 13, "api.local:8080", 0 },
	{ "HEAD / HTTP/1.0\r\n\r\n", "HEAD", "/", 0, OSH_BODY_NONE, 0, NULL, 0 },
	{ "GET http://example.com:8080/x?y HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
	  "GET", "http://example.com:8080/x?y", 1, OSH_BODY_NONE, 0, "example.com:8080", 0 },
	{ "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
	  "Proxy-Connection: keep-alive\r\n\r\n",
	  "CONNECT", "example.com:443", 1, OSH_BODY_NONE, 0, "example.com:443", 0 },
	{ "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", 1, OSH_BODY_NONE, 0, "h", 0 },
	{ "PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "PUT", "/up", 1,
	  OSH_BODY_CHUNKED, 0, NULL, 0 },
	/* Transfer-Encoding wins over Content-Length, whichever comes first. */
	{ "POST /x HTTP/1.1\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n",
	  "POST", "/x", 1, OSH_BODY_CHUNKED, 0, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\n\r\n",
	  "POST", "/x", 1, OSH_BODY_CHUNKED, 0, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "POST", "/x", 1,
	  OSH_BODY_CHUNKED, 0, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
	  "POST", "/x", 1, OSH_BODY_CHUNKED, 0, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked,\r\nTransfer-Encoding:\r\n\r\n",
	  "POST", "/x", 1, OSH_BODY_CHUNKED, 0, NULL, 0 },
	{ "POST /x HTTP/1.1\r\ntransfer-encoding: CHUNKED\r\n\r\n", "POST", "/x", 1,
	  OSH_BODY_CHUNKED, 0, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "POST", "/x",
	  1, OSH_BODY_LENGTH, 5, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 005\r\n\r\n", "POST",
	  "/x", 1, OSH_BODY_LENGTH, 5, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "POST", "/x", 1, OSH_BODY_LENGTH,
	  0, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nContent-Length: \t 42 \t\r\n\r\n", "POST", "/x", 1,
	  OSH_BODY_LENGTH, 42, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nContent-Length:42\r\n\r\n", "POST", "/x", 1, OSH_BODY_LENGTH,
	  42, NULL, 0 },
	{ "POST /x HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n", "POST", "/x", 1,
	  OSH_BODY_LENGTH, UINT64_MAX, NULL, 0 },
	/* Names are case-insensitive. */
	{ "PATCH /p HTTP/1.1\r\nHOST: Mixed.Case\r\ncOnTeNt-LeNgTh: 3\r\n"
	  "CONNECTION: CLOSE\r\nEXPECT: 100-CONTINUE\r\nUPGRADE: h2c\r\n\r\n",
	  "PATCH", "/p", 1, OSH_BODY_LENGTH, 3, "Mixed.Case", CLOSE | EXPECT | UPGRADE },
	{ "GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", "GET", "/", 1,
	  OSH_BODY_NONE, 0, NULL, CLOSE },
	{ "GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "GET", "/",
	  1, OSH_BODY_NONE, 0, NULL, UPGRADE },
	{ "GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", "GET",
	  "/", 1, OSH_BODY_NONE, 0, NULL, CLOSE },
	{ "GET / HTTP/1.1\r\nConnection: closed, keep-alive\r\n\r\n", "GET", "/", 1,
	  OSH_BODY_NONE, 0, NULL, 0 },
	{ "GET / HTTP/1.1\r\nConnection: ,,close,,\r\n\r\n", "GET", "/", 1, OSH_BODY_NONE,
	  0, NULL, CLOSE },
	{ "POST / HTTP/1.1\r\nExpect:100-continue\r\nContent-Length: 1\r\n\r\n", "POST", "/",
	  1, OSH_BODY_LENGTH, 1, NULL, EXPECT },
	{ "POST / HTTP/1.1\r\nExpect: 100-continuex\r\n\r\n", "POST", "/", 1, OSH_BODY_NONE,
	  0, NULL, 0 },
	/* Values compare a word at a time with bit 0x20 set: control bytes
	 * that would then pass for digits or '-' must not match. */
	{ "POST / HTTP/1.1\r\nExpect: \x11\x10\x10-continue\r\n\r\n", "POST", "/", 1,
	  OSH_BODY_NONE, 0, NULL, 0 },
	{ "POST / HTTP/1.1\r\nExpect: 100\x0d" "continue\r\n\r\n", "POST", "/", 1,
	  OSH_BODY_NONE, 0, NULL, 0 },
	{ "GET / HTTP/1.1\r\nConnection: CLOSE, Keep-Alive\r\n\r\n", "GET", "/", 1,
	  OSH_BODY_NONE, 0, NULL, CLOSE },
	/* The first Host wins; empty values are values. */
	{ "GET / HTTP/1.1\r\nHost:\r\nHost: second\r\n\r\n", "GET", "/", 1, OSH_BODY_NONE,
	  0, "", 0 },
	{ "GET / HTTP/1.1\r\nX-Empty:\r\nX-Spaces:   \r\nHost: h\r\n\r\n", "GET", "/", 1,
	  OSH_BODY_NONE, 0, "h", 0 },
	/* Odd but legal tokens and values. */
	{ "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n",
	  "M-SEARCH", "*", 1, OSH_BODY_NONE, 0, "239.255.255.250:1900", 0 },
	{ "GET /caf\xc3\xa9 HTTP/1.1\r\nX-Bin: \x01\x7f\xff\r\nHost: h\r\n\r\n", "GET",
	  "/caf\xc3\xa9", 1, OSH_BODY_NONE, 0, "h", 0 },
	{ "GET / HTTP/1.9\r\n\r\n", "GET", "/", 9, OSH_BODY_NONE, 0, NULL, 0 },
	{ "get /lower HTTP/1.1\r\n\r\n", "get", "/lower", 1, OSH_BODY_NONE, 0, NULL, 0 },
};

static void check_req_case(const struct req_case *c, const char *head)
{
	struct osh_http_request r;

	parse_req_ok(head, &r);
	assert_str(r.method, c->method, head);
	assert_str(r.target, c->target, head);
	cr_assert_eq(r.minor_version, c->minor, "%s", head);
	cr_assert_eq(r.body, c->body, "%s: body %d", head, r.body);
	cr_assert_eq(r.content_length, c->cl, "%s: cl %llu", head,
		     (unsigned long long)r.content_length);
	assert_str(r.host, c->host, head);
	cr_assert_eq(r.connection_close, !!(c->flags & CLOSE), "%s: close", head);
	cr_assert_eq(r.expect_continue, !!(c->flags & EXPECT), "%s: expect", head);
	cr_assert_eq(r.upgrade, !!(c->flags & UPGRADE), "%s: upgrade", head);
	cr_assert_eq(r.line_len, (size_t)(strchr(head, '\n') - head) + 1, "%s", head);
	cr_assert(r.method.p == head);
}

Test(http_request, table_crlf)
{
	for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
		const char *h = req_cases[i].head;
		struct osh_http_request r;

		check_req_case(&req_cases[i], h);
		cr_assert_eq(osh_http_parse_request(&r, h, strlen(h)), (int)strlen(h));
		cr_assert_eq(r.blank_line_off, strlen(h) - 2);
	}
}

/* The same heads with bare LF line endings parse the same way. */
Test(http_request, table_lf_only)
{
	for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
		char *h = to_lf(req_cases[i].head);
		struct osh_http_request r;

		check_req_case(&req_cases[i], h);
		cr_assert_eq(osh_http_parse_request(&r, h, strlen(h)), (int)strlen(h));
		cr_assert_eq(r.blank_line_off, strlen(h) - 1);
		free(h);
	}
}

Test(http_request, mixed_line_endings)
{
	static const char h[] = "GET /m HTTP/1.1\nHost: a\r\nX: y\n\r\n";
	struct osh_http_request r;

	parse_req_ok(h, &r);
	assert_str(r.host, "a", h);
	cr_assert_eq(r.line_len, 16);
	cr_assert_eq(r.blank_line_off, sizeof(h) - 1 - 2);
}

/* A CR alone is not a line ending; field values are taken as they are. */
Test(http_request, bare_cr_in_value)
{
	struct osh_http_request r;

	parse_req_ok("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", &r);
	assert_str(r.host, "a\rX: b", "host");
	parse_req_ok("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", &r);
	assert_str(r.host, "a\r", "host");
}

Test(http_request, fields_and_offsets)
{
	static const char h[] =
		"POST /v1/chat HTTP/1.1\r\n"
		"Host: api.example.com\r\n"
		"User-Agent:  python-requests/2.31  \r\n"
		"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
		"TraceParent: 00-11111111111111111111111111111111-2222222222222222-00\r\n"
		"tracestate: a=1\r\n"
		"Tracestate: b=2\r\n"
		"TRACESTATE: c=3\r\n"
		"baggage: k=v\r\n"
		"Content-Type: application/json; charset=utf-8\r\n"
		"X-Request-ID: req-42\r\n"
		"x-request-id: req-43\r\n"
		"Content-Length: 2\r\n"
		"\r\n";
	struct osh_http_request r;

	parse_req_ok(h, &r);
	assert_str(r.method, "POST", "method");
	assert_str(r.target, "/v1/chat", "target");
	cr_assert_eq(r.line_len, strlen("POST /v1/chat HTTP/1.1\r\n"));
	cr_assert_eq(r.head_len, sizeof(h) - 1);
	cr_assert_eq(r.blank_line_off, sizeof(h) - 1 - 2);
	assert_str(r.host, "api.example.com", "host");
	assert_str(r.user_agent, "python-requests/2.31", "user-agent");
	assert_str(r.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		   "traceparent");
	cr_assert_eq(r.traceparent_count, 2);
	assert_str(r.tracestate, "a=1", "tracestate");
	cr_assert_eq(r.tracestate_count, 3);
	assert_str(r.baggage, "k=v", "baggage");
	cr_assert_eq(r.baggage_count, 1);
	assert_str(r.content_type, "application/json; charset=utf-8", "content-type");
	assert_str(r.x_request_id, "req-42", "x-request-id");
	cr_assert_eq(r.body, OSH_BODY_LENGTH);
	cr_assert_eq(r.content_length, 2);
	/* Pointers are into the caller's buffer. */
	cr_assert(r.host.p > h && r.host.p < h + sizeof(h));
}

Test(http_request, absent_fields_are_null)
{
	struct osh_http_request r;

	parse_req_ok("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", &r);
	assert_str(r.host, NULL, "host");
	assert_str(r.user_agent, NULL, "ua");
	assert_str(r.traceparent, NULL, "tp");
	assert_str(r.tracestate, NULL, "ts");
	assert_str(r.baggage, NULL, "bg");
	assert_str(r.content_type, NULL, "ct");
	assert_str(r.x_request_id, NULL, "rid");
	cr_assert_eq(r.traceparent_count, 0);
	cr_assert_eq(r.tracestate_count, 0);
	cr_assert_eq(r.baggage_count, 0);
	cr_assert_not(r.expect_continue);
	cr_assert_not(r.connection_close);
	cr_assert_not(r.upgrade);
}

/* The empty line offset is where a caller inserts a header before the end. */
Test(http_request, insert_at_blank_line)
{
	static const char h[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
	static const char add[] = "traceparent: 00-x-y-01\r\n";
	struct osh_http_request r;
	char out[128];
	size_t n;

	cr_assert_eq(osh_http_parse_request(&r, h, sizeof(h) - 1), 27);
	memcpy(out, h, r.blank_line_off);
	n = r.blank_line_off;
	memcpy(out + n, add, sizeof(add) - 1);
	n += sizeof(add) - 1;
	memcpy(out + n, h + r.blank_line_off, sizeof(h) - 1 - r.blank_line_off);
	n += sizeof(h) - 1 - r.blank_line_off;
	cr_assert_eq(osh_http_parse_request(&r, out, n), 27 + (int)sizeof(add) - 1);
	assert_str(r.traceparent, "00-x-y-01", "inserted");
	cr_assert_eq(r.traceparent_count, 1);
}

#define REQ_INVALID(lit) parse_req_invalid((lit), sizeof(lit) - 1)

Test(http_request, invalid_request_lines)
{
	REQ_INVALID("GET / HTTP/2.0\r\n\r\n");
	REQ_INVALID("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.10\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.x\r\n\r\n");
	REQ_INVALID("GET / HTTP/1\r\n\r\n");
	REQ_INVALID("GET / HTTP/0.9\r\n\r\n");
	REQ_INVALID("GET / http/1.1\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1 \r\n\r\n");
	REQ_INVALID("GET  / HTTP/1.1\r\n\r\n");
	REQ_INVALID("GET /  HTTP/1.1\r\n\r\n");
	REQ_INVALID("GET\t/ HTTP/1.1\r\n\r\n");
	REQ_INVALID(" GET / HTTP/1.1\r\n\r\n");
	REQ_INVALID("GET /\r\n\r\n");
	REQ_INVALID("GET\r\n\r\n");
	REQ_INVALID("/ HTTP/1.1\r\n\r\n");
	REQ_INVALID("GET HTTP/1.1\r\n\r\n");
	REQ_INVALID("\r\n\r\n");
	REQ_INVALID("\n\n");
	REQ_INVALID("\r\nGET / HTTP/1.1\r\n\r\n");
	/* Control characters in the method or target. */
	REQ_INVALID("GET /a\x01 HTTP/1.1\r\n\r\n");
	REQ_INVALID("GET /a\x7f HTTP/1.1\r\n\r\n");
	REQ_INVALID("GET /a\tb HTTP/1.1\r\n\r\n");
	REQ_INVALID("GET /a\rb HTTP/1.1\r\n\r\n");
	REQ_INVALID("GET /a\x00 HTTP/1.1\r\n\r\n");
	REQ_INVALID("G\x01T / HTTP/1.1\r\n\r\n");
	REQ_INVALID("G(T / HTTP/1.1\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\r\r\n\r\n");
	REQ_INVALID("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n");
}

Test(http_request, invalid_fields)
{
	/* No colon, empty name, whitespace before the colon. */
	REQ_INVALID("GET / HTTP/1.1\r\nHost example.com\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\r\nHost: a\r\nbogus\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\r\n: value\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\r\nHost : a\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\r\nHo st: a\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\r\nX-A: 1\r\nX\"B: 2\r\n\r\n");
	/* Obsolete line folding, and whitespace before the first field. */
	REQ_INVALID("GET / HTTP/1.1\r\nX-Long: a\r\n b\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\r\nX-Long: a\r\n\tb\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\r\n Host: a\r\n\r\n");
	REQ_INVALID("GET / HTTP/1.1\n X: a\n\n");
}

Test(http_request, invalid_framing)
{
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
		    "Content-Length: 6\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 184467440737095516150\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 18446744073709551620\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n");
	/* A request body not ending in chunked has no knowable length. */
	REQ_INVALID("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
		    "Transfer-Encoding: identity\r\n\r\n");
	REQ_INVALID("POST / HTTP/1.1\r\nTransfer-Encoding: chunkedx\r\n\r\n");
}

/* A request line of 1 MiB, with and without its end, and heads just under and
 * over the cap: INVALID or PARTIAL, never a read past the buffer. */
Test(http_request, oversized)
{
	size_t big = 1024 * 1024;
	char *buf = malloc(big);
	struct osh_http_request r;
	struct guard g;
	const char *b;
	size_t n;

	memcpy(buf, "GET /", 5);
	memset(buf + 5, 'a', big - 5);
	guard_init(&g, big);
	b = guard_place(&g, buf, big);
	cr_assert_eq(osh_http_parse_request(&r, b, big), OSH_HTTP_INVALID);
	cr_assert_eq(osh_http_head_end(b, big, 0), OSH_HTTP_INVALID);
	cr_assert_eq(osh_http_sniff_request(b, big), 1);
	/* The same line, complete. */
	memcpy(buf + big - 15, " HTTP/1.1\r\n\r\n", 13);
	b = guard_place(&g, buf, big - 2);
	cr_assert_eq(osh_http_parse_request(&r, b, big - 2), OSH_HTTP_INVALID);
	cr_assert_eq(osh_http_head_end(b, big - 2, 0), OSH_HTTP_INVALID);
	/* Under the cap, incomplete: PARTIAL. */
	b = guard_place(&g, buf, OSH_HTTP_MAX_HEAD - 1);
	cr_assert_eq(osh_http_parse_request(&r, b, OSH_HTTP_MAX_HEAD - 1), OSH_HTTP_PARTIAL);

	/* Many header lines: a head of exactly the cap parses, one more byte
	 * does not. */
	n = 0;
	n += (size_t)sprintf(buf + n, "GET / HTTP/1.1\r\n");
	while (n < OSH_HTTP_MAX_HEAD - 200)
		n += (size_t)sprintf(buf + n, "X-Filler-%06zu: %s\r\n", n,
				     "0123456789012345678901234567890123456789");
	{
		/* pad one last field so the head is exactly OSH_HTTP_MAX_HEAD */
		size_t pad = OSH_HTTP_MAX_HEAD - n - strlen("X-Pad: \r\n\r\n");

		memcpy(buf + n, "X-Pad: ", 7);
		memset(buf + n + 7, 'p', pad);
		memcpy(buf + n + 7 + pad, "\r\n\r\n", 4);
		n += 7 + pad + 4;
	}
	cr_assert_eq(n, OSH_HTTP_MAX_HEAD);
	b = guard_place(&g, buf, n);
	cr_assert_eq(osh_http_parse_request(&r, b, n), (int)n);
	cr_assert_eq(osh_http_head_end(b, n, 0), (ssize_t)n);
	cr_assert_eq(osh_http_parse_request(&r, b, n - 1), OSH_HTTP_PARTIAL);
	/* One byte longer. */
	memmove(buf + 16 + 1, buf + 16, n - 16);
	buf[16] = 'Y';
	buf[17] = '-';
	b = guard_place(&g, buf, n + 1);
	cr_assert_eq(osh_http_head_end(b, n + 1, 0), OSH_HTTP_INVALID);
	cr_assert_eq(osh_http_parse_request(&r, b, n + 1), OSH_HTTP_INVALID);
	/* And with more bytes behind it. */
	b = guard_place(&g, buf, n + 100);
	cr_assert_eq(osh_http_parse_request(&r, b, n + 100), OSH_HTTP_INVALID);
	guard_finish(&g);
	free(buf);
}

/* Mutated heads never crash, never claim more than the buffer, and agree with
 * head_end when they succeed. */
Test(http_request, mutation_fuzz)
{
	static const char seed[] = "POST /a?b=c HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n"
				   "Transfer-Encoding: chunked\r\nTraceparent: 00-a-b-01\r\n\r\n";
	static const char bytes[] = "\r\n :\t,;0aZ\x00\x7f\x80/";
	char buf[sizeof(seed)];
	struct osh_http_request r;
	struct osh_http_response resp;

	for (int iter = 0; iter < 20000; iter++) {
		size_t len = sizeof(seed) - 1;
		int n;

		memcpy(buf, seed, len);
		for (int m = (int)(rng() % 4); m >= 0; m--)
			buf[rng() % len] = bytes[rng() % (sizeof(bytes) - 1)];
		len = rng() % (len + 1);
		n = osh_http_parse_request(&r, buf, len);
		cr_assert(n == OSH_HTTP_PARTIAL || n == OSH_HTTP_INVALID ||
			  (n > 0 && (size_t)n <= len));
		if (n > 0) {
			cr_assert_eq(osh_http_head_end(buf, len, 0), n);
			cr_assert_eq(r.head_len, (size_t)n);
			cr_assert(r.method.p == buf);
			cr_assert_leq(r.target.p + r.target.len, buf + len);
		}
		n = osh_http_parse_response(&resp, buf, len);
		cr_assert(n == OSH_HTTP_PARTIAL || n == OSH_HTTP_INVALID);
	}
}

/* ---- responses -------------------------------------------------------- */

Test(http_response, content_length)
{
	static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
				"Content-Length: 5\r\nContent-Encoding: gzip\r\n"
				"X-Request-Id: abc\r\n\r\n";
	struct osh_http_response r;

	parse_resp_ok(h, &r);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.minor_version, 1);
	cr_assert_eq(r.body, OSH_BODY_LENGTH);
	cr_assert_eq(r.content_length, 5);
	cr_assert_not(r.connection_close);
	assert_str(r.content_type, "text/plain", "ct");
	assert_str(r.content_encoding, "gzip", "ce");
	assert_str(r.request_id, "abc", "rid");
	cr_assert_eq(osh_http_response_body(&r, "GET", 3), OSH_BODY_LENGTH);
}

struct resp_case {
	const char *head;
	int status;
	int minor;
	enum osh_http_body_kind body;	/* from the headers */
	uint64_t cl;
	bool close;
};

static const struct resp_case resp_cases[] = {
	{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, 1, OSH_BODY_CHUNKED, 0,
	  false },
	{ "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n", 200,
	  1, OSH_BODY_CHUNKED, 0, false },
	{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 7\r\n\r\n", 200, 1,
	  OSH_BODY_UNTIL_CLOSE, 0, false },
	{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 200, 1,
	  OSH_BODY_UNTIL_CLOSE, 0, false },
	{ "HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", 200, 0, OSH_BODY_UNTIL_CLOSE, 0, false },
	{ "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", 200, 1, OSH_BODY_UNTIL_CLOSE, 0,
	  true },
	{ "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n", 200, 0,
	  OSH_BODY_LENGTH, 3, false },
	{ "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", 200, 1, OSH_BODY_LENGTH, 0, false },
	{ "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", 200, 1, OSH_BODY_LENGTH, 1, false },
	{ "HTTP/1.1 404 Not Found Here\r\ncontent-length: 9\r\n\r\n", 404, 1, OSH_BODY_LENGTH,
	  9, false },
	{ "HTTP/1.1 999 Whatever\r\n\r\n", 999, 1, OSH_BODY_UNTIL_CLOSE, 0, false },
	{ "HTTP/1.1 100 Continue\r\n\r\n", 100, 1, OSH_BODY_UNTIL_CLOSE, 0, false },
	{ "HTTP/1.1 204 No Content\r\n\r\n", 204, 1, OSH_BODY_UNTIL_CLOSE, 0, false },
	{ "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", 304, 1,
	  OSH_BODY_LENGTH, 100, false },
	{ "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n", 200, 1,
	  OSH_BODY_LENGTH, 4, false },
	{ "HTTP/1.1 500 Internal Server Error\r\nCONNECTION: Keep-Alive, CLOSE\r\n\r\n", 500,
	  1, OSH_BODY_UNTIL_CLOSE, 0, true },
	{ "HTTP/1.1 200 Caf\xc3\xa9\t\x01\r\n\r\n", 200, 1, OSH_BODY_UNTIL_CLOSE, 0, false },
};

Test(http_response, table)
{
	for (size_t i = 0; i < sizeof(resp_cases) / sizeof(resp_cases[0]); i++) {
		const struct resp_case *c = &resp_cases[i];

		for (int lf = 0; lf < 2; lf++) {
			char *h = lf ? to_lf(c->head) : strdup(c->head);
			struct osh_http_response r;

			parse_resp_ok(h, &r);
			cr_assert_eq(r.status, c->status, "%s", h);
			cr_assert_eq(r.minor_version, c->minor, "%s", h);
			cr_assert_eq(r.body, c->body, "%s: body %d", h, r.body);
			cr_assert_eq(r.content_length, c->cl, "%s", h);
			cr_assert_eq(r.connection_close, c->close, "%s", h);
			free(h);
		}
	}
}

Test(http_response, request_id_fields)
{
	struct osh_http_response r;

	parse_resp_ok("HTTP/1.1 200 OK\r\nRequest-Id: r1\r\n\r\n", &r);
	assert_str(r.request_id, "r1", "request-id alone");
	parse_resp_ok("HTTP/1.1 200 OK\r\nRequest-Id: r1\r\nX-Request-Id: x1\r\n\r\n", &r);
	assert_str(r.request_id, "x1", "x-request-id after request-id");
	parse_resp_ok("HTTP/1.1 200 OK\r\nx-request-id: x1\r\nrequest-id: r1\r\n\r\n", &r);
	assert_str(r.request_id, "x1", "x-request-id before request-id");
	parse_resp_ok("HTTP/1.1 200 OK\r\nx-request-id: x1\r\nx-request-id: x2\r\n\r\n", &r);
	assert_str(r.request_id, "x1", "first x-request-id");
	parse_resp_ok("HTTP/1.1 200 OK\r\nContent-Type: a\r\ncontent-type: b\r\n"
		      "Content-Encoding:  br \r\n\r\n",
		      &r);
	assert_str(r.content_type, "a", "first content-type");
	assert_str(r.content_encoding, "br", "content-encoding");
	assert_str(r.request_id, NULL, "no id");
	parse_resp_ok("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nretry-after: 9\r\n\r\n", &r);
	assert_str(r.retry_after, "7", "first retry-after");
}

#define RESP_INVALID(lit) parse_resp_invalid((lit), sizeof(lit) - 1)

Test(http_response, invalid_status_lines)
{
	RESP_INVALID("HTTP/1.1 20 OK\r\n\r\n");
	RESP_INVALID("HTTP/1.1 20\r\n\r\n");
	RESP_INVALID("HTTP/1.1 2000 OK\r\n\r\n");
	RESP_INVALID("HTTP/1.1 2000\r\n\r\n");
	RESP_INVALID("HTTP/1.1 abc OK\r\n\r\n");
	RESP_INVALID("HTTP/1.1 2O0 OK\r\n\r\n");
	RESP_INVALID("HTTP/1.1 099 Low\r\n\r\n");
	RESP_INVALID("HTTP/1.1 000 Zero\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200OK\r\n\r\n");
	RESP_INVALID("HTTP/1.1  200 OK\r\n\r\n");
	RESP_INVALID("HTTP/1.1\t200 OK\r\n\r\n");
	RESP_INVALID("HTTP/1.1\r\n\r\n");
	RESP_INVALID("HTTP/1.1 \r\n\r\n");
	RESP_INVALID("HTTP/1.x 200 OK\r\n\r\n");
	RESP_INVALID("HTTP/2.0 200 OK\r\n\r\n");
	RESP_INVALID("HTTP/2 200 OK\r\n\r\n");
	RESP_INVALID("http/1.1 200 OK\r\n\r\n");
	RESP_INVALID("HTTP/1.10 200 OK\r\n\r\n");
	RESP_INVALID(" HTTP/1.1 200 OK\r\n\r\n");
	RESP_INVALID("ICY 200 OK\r\n\r\n");
	RESP_INVALID("\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n");
}

/* Response field names are found 16 bytes at a time: names shorter and
 * longer than that, fields at the very end of the buffer (the byte scan),
 * and what makes a line no field line. */
Test(http_response, field_names_any_length)
{
	struct osh_http_response r;

	parse_resp_ok("HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"
		      "X-A-Very-Long-Header-Name-Beyond-Sixteen: 1\r\n"
		      "Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n"
		      "X-Request-Id: abc\r\n\r\n", &r);
	cr_assert_eq(r.body, OSH_BODY_CHUNKED);
	assert_str(r.content_encoding, "gzip", "16-byte name");
	assert_str(r.request_id, "abc", "after a long name");
	/* Short heads: every field is within the last 16 bytes. */
	parse_resp_ok("HTTP/1.1 200 OK\r\nA: b\r\n\r\n", &r);
	cr_assert_eq(r.body, OSH_BODY_UNTIL_CLOSE);
	parse_resp_ok("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", &r);
	cr_assert_eq(r.body, OSH_BODY_LENGTH);
	cr_assert_eq(r.content_length, 0);
	/* Names of a framing field's length that are not one are stepped over. */
	parse_resp_ok("HTTP/1.1 200 OK\r\nContent-Lengtx: zz\r\nConnectioN: close\r\n\r\n", &r);
	cr_assert_eq(r.body, OSH_BODY_UNTIL_CLOSE);
	cr_assert(r.connection_close);
	/* Looser than requests: separators in a name are the reader's call. */
	parse_resp_ok("HTTP/1.1 200 OK\r\nX\"B: 2\r\nContent-Length: 3\r\n\r\n", &r);
	cr_assert_eq(r.content_length, 3);
}

/* Response names and line ends are found 16 bytes at a time: every field
 * of interest, and every kind of bad line, at every offset against those
 * steps (names and values straddling one, a CR in one step and its LF in
 * the next), each head also cut at every length by parse_resp_ok. */
Test(http_response, fields_across_blocks)
{
	char pad[160], head[512];
	struct osh_http_response r;

	for (int n = 0; n < 140; n++) {
		memset(pad, 'p', (size_t)n);
		pad[n] = '\0';
		snprintf(head, sizeof(head),
			 "HTTP/1.1 200 OK\r\nX-Pad: %s\r\nContent-Length: 42\r\n"
			 "Connection: keep-alive, close\r\nX-Request-Id: rid-%d\r\n"
			 "Content-Type: application/json\r\nServer: t\r\n\r\n", pad, n);
		parse_resp_ok(head, &r);
		cr_assert_eq(r.body, OSH_BODY_LENGTH, "pad %d", n);
		cr_assert_eq(r.content_length, 42, "pad %d", n);
		cr_assert(r.connection_close, "pad %d", n);
		cr_assert(r.request_id.len >= 5 && memcmp(r.request_id.p, "rid-", 4) == 0 &&
			  atoi(r.request_id.p + 4) == n, "pad %d", n);
		assert_str(r.content_type, "application/json", "content-type");

		snprintf(head, sizeof(head),
			 "HTTP/1.1 200 OK\r\nX-Pad: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
			 pad);
		parse_resp_ok(head, &r);
		cr_assert_eq(r.body, OSH_BODY_CHUNKED, "pad %d", n);

		/* A name with a space, a line without a colon, a folded line,
		 * a colon-first line: each wherever the block boundary falls. */
		static const char *const bad[] = { "Content Length: 1", "NoColonAtAll",
						   " folded: x", ": x", "X\x80Y: 1" };
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			int len = snprintf(head, sizeof(head),
					   "HTTP/1.1 200 OK\r\nX-Pad: %s\r\n%s\r\nA: b\r\n\r\n",
					   pad, bad[i]);
			parse_resp_invalid(head, (size_t)len);
		}
	}
}

Test(http_response, field_lines_that_are_not)
{
	RESP_INVALID("HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nX\x7f: 1\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nX\xc3\xa9: 1\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nX\tY: 1\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nA-Name-Longer-Than-Sixteen-Bytes\r\nX: 1\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nA-Name-Longer-Than-Sixteen Bytes: 1\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\n\tX: 1\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nX: 1\r\n\r\r\n\r\n");
	RESP_INVALID("HTTP/1.1 200 OK\r\nX: 1\r\nab\r\n\r\n");
}

/* What the server side's scan still rejects: a status line that is not
 * one, and framing that cannot be trusted. */
Test(http_response_scan, rejects_what_framing_cannot_use)
{
	static const char *const bad[] = {
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/2.0 200 OK\r\n\r\n",
		"http/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Pad: 0123456789abcdef0123456789\r\nContent-Length: abc\r\n\r\n",
	};
	struct osh_http_response r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = strlen(bad[i]);

		for (size_t k = 0; k < len; k++) {
			int n = osh_http_scan_response_head(&r, bad[i], k);

			cr_assert(n == OSH_HTTP_PARTIAL || n == OSH_HTTP_INVALID, "%s at %zu", bad[i], k);
		}
		cr_assert_eq(osh_http_scan_response_head(&r, bad[i], len), OSH_HTTP_INVALID, "%s",
			     bad[i]);
	}
	/* Too long a head with no end is not waited for forever. */
	{
		size_t len = OSH_HTTP_MAX_HEAD + 64;
		char *big = malloc(len);

		cr_assert_not_null(big);
		memset(big, 'x', len);
		memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 21);
		cr_assert_eq(osh_http_scan_response_head(&r, big, len), OSH_HTTP_INVALID);
		cr_assert_eq(osh_http_scan_response_head(&r, big, 4000), OSH_HTTP_PARTIAL);
		free(big);
	}
}

/* Where the scan is looser than the full parse, on purpose: lines that are
 * no field lines are passed over, and the framing of the valid ones used
 * (the program wrote the head; it is not input to defend against). */
Test(http_response_scan, steps_over_lines_it_does_not_need)
{
	static const struct {
		const char *head;
		enum osh_http_body_kind body;
		uint64_t cl;
		bool close;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\nNoColon\r\nContent-Length: 3\r\n\r\n", OSH_BODY_LENGTH, 3, false },
		{ "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\nConnection: close\r\n\r\n",
		  OSH_BODY_UNTIL_CLOSE, 0, true },
		{ "HTTP/1.1 200 OK\r\nX\xc3\xa9: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		  OSH_BODY_CHUNKED, 0, false },
		/* A control byte never passes for a letter of a framing name. */
		{ "HTTP/1.1 200 OK\r\nContent\rLength: 3\r\n\r\n", OSH_BODY_UNTIL_CLOSE, 0, false },
		/* Nor does a name with a space before its colon. */
		{ "HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n", OSH_BODY_UNTIL_CLOSE, 0, false },
		/* A line starting with a stray CR is passed over too. */
		{ "HTTP/1.1 200 OK\r\n\rX\r\ncontent-length: 7\r\n\r\n", OSH_BODY_LENGTH, 7, false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *h = cases[i].head;
		size_t len = strlen(h);
		struct osh_http_response r;

		cr_assert_eq(osh_http_parse_response(&r, h, len), OSH_HTTP_INVALID, "%s", h);
		cr_assert_eq(osh_http_scan_response_head(&r, h, len), (int)len, "%s", h);
		cr_assert_eq(r.status, 200);
		cr_assert_eq(r.body, cases[i].body, "%s", h);
		cr_assert_eq(r.content_length, cases[i].cl, "%s", h);
		cr_assert_eq(r.connection_close, cases[i].close, "%s", h);
	}
}

/* Random heads (field lines picked from framing fields in any letter case,
 * lines the scan steps over, LF or CRLF line ends, padding that moves every
 * line across the 16-byte steps, body bytes after the head): wherever the
 * full parse finds a head, the scan finds the same end and framing. */
Test(http_response_scan, agrees_with_the_full_parse)
{
	static const char *const lines[] = {
		"Content-Length: 12", "content-length: 12", "CONTENT-LENGTH:12",
		"Content-Length: 0", "Content-Length: 5", "Transfer-Encoding: chunked",
		"transfer-encoding: gzip", "Transfer-Encoding: gzip, chunked", "Connection: close",
		"connection: keep-alive", "Connection: Upgrade, close", "Content-Type: text/html",
		"Cache-Control: no-cache", "Date: Mon, 07 Dec 2026 18:42:27 GMT",
		"Server: nginx/1.22.1", "ETag: \"6571a2-1a4\"", "Accept-Ranges: bytes",
		"Connectionx: close", "Content-Lengthy: 9", "Trailer: x", "C: 1", "t: 2",
		"X-Content-Length: 3", "Transfer-Encodings: chunked",
	};
	static const char *const status[] = { "HTTP/1.1 200 OK", "HTTP/1.0 404 Not Found",
					       "HTTP/1.1 204", "HTTP/1.1 500 " };
	char head[1024];
	int agreed = 0;

	rng_state = 0x243F6A8885A308D3ull;
	for (int iter = 0; iter < 20000; iter++) {
		const char *eol = rng() % 3 ? "\r\n" : "\n";
		size_t len = (size_t)snprintf(head, sizeof(head), "%s%s",
					      status[rng() % (sizeof(status) / sizeof(status[0]))],
					      eol);
		int nlines = (int)(rng() % 8);
		struct osh_http_response full, scan;
		int nf, ns;

		for (int i = 0; i < nlines; i++) {
			if (rng() % 4 == 0)
				len += (size_t)snprintf(head + len, sizeof(head) - len, "X-Pad: %.*s%s",
							(int)(rng() % 40), "0123456789012345678901234567890123456789",
							eol);
			len += (size_t)snprintf(head + len, sizeof(head) - len, "%s%s",
						lines[rng() % (sizeof(lines) / sizeof(lines[0]))], eol);
		}
		len += (size_t)snprintf(head + len, sizeof(head) - len, "%sBODY", eol);
		/* Sometimes cut short, sometimes cut inside the head. */
		if (rng() % 4 == 0)
			len = (size_t)(rng() % (len + 1));
		nf = osh_http_parse_response(&full, head, len);
		ns = osh_http_scan_response_head(&scan, head, len);
		if (nf == OSH_HTTP_PARTIAL)
			cr_assert_eq(ns, OSH_HTTP_PARTIAL, "'%.*s'", (int)len, head);
		if (nf <= 0)
			continue;
		cr_assert_eq(ns, nf, "'%.*s'", (int)len, head);
		cr_assert_eq(scan.status, full.status);
		cr_assert_eq(scan.minor_version, full.minor_version);
		cr_assert_eq(scan.body, full.body, "'%.*s'", (int)len, head);
		cr_assert_eq(scan.content_length, full.content_length, "'%.*s'", (int)len, head);
		cr_assert_eq(scan.connection_close, full.connection_close, "'%.*s'", (int)len, head);
		agreed++;
	}
	/* Most heads were complete and valid: the comparison ran. */
	cr_assert_gt(agreed, 10000, "%d", agreed);
}

Test(http_response, body_rules)
{
	static const struct {
		const char *head;
		const char *method;
		enum osh_http_body_kind want;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET", OSH_BODY_LENGTH },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", OSH_BODY_NONE },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", OSH_BODY_NONE },
		{ "HTTP/1.1 200 OK\r\n\r\n", "HEAD", OSH_BODY_NONE },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "POST",
		  OSH_BODY_CHUNKED },
		{ "HTTP/1.1 200 OK\r\n\r\n", "GET", OSH_BODY_UNTIL_CLOSE },
		{ "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", "GET",
		  OSH_BODY_UNTIL_CLOSE },
		{ "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", "GET",
		  OSH_BODY_LENGTH },
		{ "HTTP/1.0 304 Not Modified\r\nConnection: keep-alive\r\n\r\n", "GET",
		  OSH_BODY_NONE },
		{ "HTTP/1.1 204 No Content\r\n\r\n", "DELETE", OSH_BODY_NONE },
		{ "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "GET", OSH_BODY_NONE },
		{ "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET",
		  OSH_BODY_NONE },
		{ "HTTP/1.1 100 Continue\r\n\r\n", "POST", OSH_BODY_NONE },
		{ "HTTP/1.1 102 Processing\r\n\r\n", "POST", OSH_BODY_NONE },
		{ "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", "GET", OSH_BODY_NONE },
		{ "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		  "Connection: Upgrade\r\n\r\n",
		  "GET", OSH_BODY_TUNNEL },
		{ "HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT", OSH_BODY_TUNNEL },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "CONNECT", OSH_BODY_TUNNEL },
		{ "HTTP/1.1 299 OK\r\n\r\n", "CONNECT", OSH_BODY_TUNNEL },
		{ "HTTP/1.1 407 Proxy Auth\r\nContent-Length: 4\r\n\r\n", "CONNECT",
		  OSH_BODY_LENGTH },
		{ "HTTP/1.1 300 Multiple\r\n\r\n", "CONNECT", OSH_BODY_UNTIL_CLOSE },
		{ "HTTP/1.1 200 Connection established\r\n\r\n", "GET", OSH_BODY_UNTIL_CLOSE },
		/* Methods are case-sensitive. */
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "head", OSH_BODY_LENGTH },
		{ "HTTP/1.1 200 OK\r\n\r\n", "connect", OSH_BODY_UNTIL_CLOSE },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEADX", OSH_BODY_LENGTH },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_http_response r;
		const char *h = cases[i].head;

		cr_assert_eq(osh_http_parse_response(&r, h, strlen(h)), (int)strlen(h), "%s", h);
		cr_assert_eq(osh_http_response_body(&r, cases[i].method, strlen(cases[i].method)),
			     cases[i].want, "%s %s", cases[i].method, h);
	}
	/* A method given by length, not by terminator; and no method at all. */
	{
		struct osh_http_response r;

		cr_assert_gt(osh_http_parse_response(&r, "HTTP/1.1 200 OK\r\n\r\n", 19), 0);
		cr_assert_eq(osh_http_response_body(&r, "CONNECTION", 7), OSH_BODY_TUNNEL);
		cr_assert_eq(osh_http_response_body(&r, "HEADER", 4), OSH_BODY_NONE);
		cr_assert_eq(osh_http_response_body(&r, NULL, 0), OSH_BODY_UNTIL_CLOSE);
	}
}

/* A connection's worth of responses, read the way the shim reads them: head
 * bytes accumulate in a capped buffer rescanned with last_len, body bytes go
 * straight to the walker, leftovers start the next message. */
struct reader {
	char head[1024];
	size_t hlen;
	size_t last;
	bool in_body;
	const char *const *methods;
	struct osh_http_body body;
	int count;
	int status[16];
	uint64_t payload[16];
	size_t head_len[16];
};

static void reader_feed(struct reader *rd, const char *p, size_t n)
{
	while (n > 0) {
		if (!rd->in_body) {
			size_t room = sizeof(rd->head) - rd->hlen;
			size_t take = n < room ? n : room;
			struct osh_http_response r;
			ssize_t end;
			size_t extra;

			memcpy(rd->head + rd->hlen, p, take);
			rd->hlen += take;
			end = osh_http_head_end(rd->head, rd->hlen, rd->last);
			if (end == OSH_HTTP_PARTIAL) {
				rd->last = rd->hlen;
				p += take;
				n -= take;
				continue;
			}
			cr_assert_gt(end, 0);
			cr_assert_eq(osh_http_parse_response(&r, rd->head, rd->hlen), end);
			osh_http_body_start(&rd->body,
					    osh_http_response_body(&r, rd->methods[rd->count],
								   strlen(rd->methods[rd->count])),
					    r.content_length);
			rd->status[rd->count] = r.status;
			rd->head_len[rd->count] = (size_t)end;
			extra = rd->hlen - (size_t)end;
			cr_assert_lt(extra, take);
			p += take - extra;
			n -= take - extra;
			rd->hlen = 0;
			rd->last = 0;
			rd->in_body = true;
		} else {
			ssize_t used = osh_http_body_feed(&rd->body, p, n);

			cr_assert_geq(used, 0);
			p += used;
			n -= (size_t)used;
		}
		if (rd->in_body && rd->body.done) {
			rd->payload[rd->count++] = rd->body.payload;
			rd->in_body = false;
		}
	}
	/* A body that needs no bytes ends with its head. */
	if (rd->in_body && rd->body.done) {
		rd->payload[rd->count++] = rd->body.payload;
		rd->in_body = false;
	}
}

Test(http_response, pipelined)
{
	static const char stream[] =
		"HTTP/1.1 100 Continue\r\n\r\n"
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		"3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer-A: 1\r\n\r\n"
		"HTTP/1.1 204 No Content\r\n\r\n"
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"
		"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"	/* to a HEAD */
		"HTTP/1.0 200 OK\n\nuntil the end";
	static const char *const methods[] = { "POST", "POST", "GET", "DELETE",
					       "GET",  "GET",  "HEAD", "GET" };
	static const int want_status[] = { 100, 200, 200, 204, 200, 304, 200, 200 };
	static const uint64_t want_payload[] = { 0, 5, 19, 0, 0, 0, 0 };
	size_t len = sizeof(stream) - 1;

	for (size_t piece = 1; piece <= len; piece++) {
		struct reader rd = { .methods = methods };
		struct guard g;

		guard_init(&g, piece);
		for (size_t off = 0; off < len; off += piece) {
			size_t n = len - off < piece ? len - off : piece;

			reader_feed(&rd, guard_place(&g, stream + off, n), n);
		}
		guard_finish(&g);
		cr_assert_eq(rd.count, 7, "piece %zu: %d responses", piece, rd.count);
		for (int i = 0; i < 7; i++) {
			cr_assert_eq(rd.status[i], want_status[i], "piece %zu #%d", piece, i);
			cr_assert_eq(rd.payload[i], want_payload[i], "piece %zu #%d: %llu", piece,
				     i, (unsigned long long)rd.payload[i]);
		}
		/* The last one reads until close. */
		cr_assert(rd.in_body);
		cr_assert_eq(rd.body.kind, OSH_BODY_UNTIL_CLOSE);
		cr_assert_eq(rd.body.payload, strlen("until the end"));
		cr_assert_not(rd.body.done);
	}
}

/* Whole buffer at once, the way a caller holding one read would do it. */
Test(http_response, pipelined_single_buffer)
{
	static const char buf[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
				  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "2\r\nxy\r\n0\r\n\r\n"
				  "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
	const char *p = buf;
	const char *end = buf + sizeof(buf) - 1;
	static const int want[] = { 200, 200, 404 };
	static const uint64_t want_payload[] = { 3, 2, 2 };

	for (int i = 0; i < 3; i++) {
		struct osh_http_response r;
		struct osh_http_body b;
		int n = osh_http_parse_response(&r, p, (size_t)(end - p));
		ssize_t used;

		cr_assert_gt(n, 0, "response %d", i);
		cr_assert_eq(r.status, want[i]);
		p += n;
		osh_http_body_start(&b, osh_http_response_body(&r, "GET", 3), r.content_length);
		used = osh_http_body_feed(&b, p, (size_t)(end - p));
		cr_assert_geq(used, 0);
		cr_assert(b.done);
		cr_assert_eq(b.payload, want_payload[i]);
		p += used;
	}
	cr_assert_eq(p, end);
}

/* Pipelined requests with bodies, parsed from one buffer. */
Test(http_request, pipelined)
{
	static const char buf[] = "POST /a HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
				  "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "4\r\nwxyz\r\n0\r\n\r\n"
				  "GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
				  "POST /d HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
				  "GET /e HTTP/1.1\r\n\r\n";
	static const char *const targets[] = { "/a", "/b", "/c", "/d", "/e" };
	static const uint64_t payloads[] = { 4, 4, 0, 0, 0 };
	const char *p = buf;
	const char *end = buf + sizeof(buf) - 1;

	for (int i = 0; i < 5; i++) {
		struct osh_http_request r;
		struct osh_http_body b;
		int n = osh_http_parse_request(&r, p, (size_t)(end - p));
		ssize_t used;

		cr_assert_gt(n, 0, "request %d", i);
		assert_str(r.target, targets[i], "target");
		p += n;
		osh_http_body_start(&b, r.body, r.content_length);
		used = osh_http_body_feed(&b, p, (size_t)(end - p));
		cr_assert_geq(used, 0);
		cr_assert(b.done);
		cr_assert_eq(b.payload, payloads[i]);
		p += used;
	}
	cr_assert_eq(p, end);
}

/* ---- body walker ------------------------------------------------------ */

Test(http_body, length)
{
	CHECK_BODY(OSH_BODY_LENGTH, 5, "hello", 5, true, 5);
	CHECK_BODY(OSH_BODY_LENGTH, 5, "helloHTTP/1.1 200 OK\r\n", 5, true, 5);
	CHECK_BODY(OSH_BODY_LENGTH, 10, "hello", 5, false, 5);
	CHECK_BODY(OSH_BODY_LENGTH, 1, "\r\n", 1, true, 1);
	CHECK_BODY(OSH_BODY_LENGTH, 0, "next", 0, true, 0);
	CHECK_BODY(OSH_BODY_LENGTH, 0, "", 0, true, 0);
}

Test(http_body, length_zero_is_done_at_start)
{
	struct osh_http_body b = { 0 };

	osh_http_body_start(&b, OSH_BODY_LENGTH, 0);
	cr_assert(b.done);
	cr_assert_eq(osh_http_body_feed(&b, "abc", 3), 0);
	osh_http_body_start(&b, OSH_BODY_NONE, 99);
	cr_assert(b.done);
	cr_assert_eq(osh_http_body_feed(&b, "abc", 3), 0);
	cr_assert_eq(b.payload, 0);
}

Test(http_body, large_length)
{
	struct osh_http_body b = { 0 };
	static char block[65536];

	osh_http_body_start(&b, OSH_BODY_LENGTH, UINT64_MAX);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(osh_http_body_feed(&b, block, sizeof(block)), (ssize_t)sizeof(block));
	cr_assert_not(b.done);
	cr_assert_eq(b.payload, 100ull * sizeof(block));
	cr_assert_eq(b.remaining, UINT64_MAX - 100ull * sizeof(block));
}

Test(http_body, none)
{
	CHECK_BODY(OSH_BODY_NONE, 0, "HTTP/1.1 200 OK\r\n", 0, true, 0);
	CHECK_BODY(OSH_BODY_NONE, 0, "", 0, true, 0);
}

Test(http_body, until_close_and_tunnel)
{
	CHECK_BODY(OSH_BODY_UNTIL_CLOSE, 0, "anything\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK", 32, false,
		   32);
	CHECK_BODY(OSH_BODY_TUNNEL, 0, "\x16\x03\x01\x00\x05hello", 10, false, 10);
	CHECK_BODY(OSH_BODY_UNTIL_CLOSE, 123, "ab", 2, false, 2);
}

Test(http_body, unknown_kind)
{
	struct osh_http_body b = { 0 };

	osh_http_body_start(&b, (enum osh_http_body_kind)77, 0);
	cr_assert_eq(osh_http_body_feed(&b, "x", 1), OSH_HTTP_INVALID);
}

Test(http_chunked, valid)
{
	CHECK_CHUNKED("5\r\nhello\r\n0\r\n\r\n", 5);
	CHECK_CHUNKED("0\r\n\r\n", 0);
	CHECK_CHUNKED("0\n\n", 0);
	CHECK_CHUNKED("5\nhello\n0\n\n", 5);
	CHECK_CHUNKED("5\r\nhello\n0\r\n\n", 5);
	CHECK_CHUNKED("1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", 3);
	CHECK_CHUNKED("A\r\n0123456789\r\n0\r\n\r\n", 10);
	CHECK_CHUNKED("a\r\n0123456789\r\n0\r\n\r\n", 10);
	CHECK_CHUNKED("10\r\n0123456789abcdef\r\n0\r\n\r\n", 16);
	CHECK_CHUNKED("1a\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\nabc\r\n0\r\n\r\n", 29);
	CHECK_CHUNKED("0005\r\nhello\r\n000\r\n\r\n", 5);
	/* Chunk data may contain anything, including what looks like framing. */
	CHECK_CHUNKED("7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n", 7);
	CHECK_CHUNKED("3\r\n\x00\xff\n\r\n0\r\n\r\n", 3);
	/* Extensions. */
	CHECK_CHUNKED("5;name=value;x\r\nhello\r\n0;last=\"a;b\"\r\n\r\n", 5);
	CHECK_CHUNKED("5 ;a=b\r\nhello\r\n0\t;z\r\n\r\n", 5);
	CHECK_CHUNKED("5;\r\nhello\r\n0;\n\n", 5);
	/* Trailers. */
	CHECK_CHUNKED("5\r\nhello\r\n0\r\nX-Checksum: abc\r\nServer-Timing: db;dur=5\r\n\r\n", 5);
	CHECK_CHUNKED("0\nA: 1\nB: 2\n\n", 0);
	CHECK_CHUNKED("0\r\nA: 1\r\n\n", 0);
	/* Bytes after the end belong to the next message. */
	CHECK_CHUNKED_TAIL("3\r\nabc\r\n0\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n", 3);
	CHECK_CHUNKED_TAIL("0\r\n\r\n", "0\r\n\r\n", 0);
	CHECK_CHUNKED_TAIL("0\r\nT: v\r\n\r\n", "GET / HTTP/1.1\r\n", 0);
	CHECK_CHUNKED_TAIL("2\nab\n0\n\n", "\n", 2);
}

Test(http_chunked, incomplete)
{
	/* Not done yet: everything consumed, nothing invalid. */
	CHECK_BODY(OSH_BODY_CHUNKED, 0, "5\r\nhel", 6, false, 3);
	CHECK_BODY(OSH_BODY_CHUNKED, 0, "5\r\nhello\r\n0\r\n", 13, false, 5);
	CHECK_BODY(OSH_BODY_CHUNKED, 0, "5\r\nhello\r\n0\r\nX: 1\r\n", 19, false, 5);
	CHECK_BODY(OSH_BODY_CHUNKED, 0, "5\r\nhello\r\n0\r\n\r", 14, false, 5);
	/* The largest size that fits 64 bits. */
	CHECK_BODY(OSH_BODY_CHUNKED, 0, "ffffffffffffffff\r\nabc", 21, false, 3);
	CHECK_BODY(OSH_BODY_CHUNKED, 0, "0000000000000000000000001\r\n", 27, false, 0);
}

Test(http_chunked, malformed)
{
	CHECK_CHUNKED_BAD("x\r\n");
	CHECK_CHUNKED_BAD("\r\n5\r\nhello\r\n0\r\n\r\n");
	CHECK_CHUNKED_BAD(" 5\r\nhello\r\n0\r\n\r\n");
	CHECK_CHUNKED_BAD("-1\r\n");
	CHECK_CHUNKED_BAD("+1\r\n");
	CHECK_CHUNKED_BAD("0x5\r\nhello\r\n0\r\n\r\n");
	CHECK_CHUNKED_BAD("5g\r\nhello\r\n0\r\n\r\n");
	CHECK_CHUNKED_BAD("5,\r\nhello\r\n0\r\n\r\n");
	CHECK_CHUNKED_BAD("5\rhello\r\n0\r\n\r\n");
	CHECK_CHUNKED_BAD("5\r\r\nhello\r\n0\r\n\r\n");
	/* Missing or wrong CRLF after the data. */
	CHECK_CHUNKED_BAD("5\r\nhelloX\r\n0\r\n\r\n");
	CHECK_CHUNKED_BAD("5\r\nhello0\r\n\r\n");
	CHECK_CHUNKED_BAD("5\r\nhello\r0\r\n\r\n");
	CHECK_CHUNKED_BAD("5\r\nhello\r\r\n0\r\n\r\n");
	CHECK_CHUNKED_BAD("5\r\nhelloX0\r\n\r\n");
	CHECK_CHUNKED_BAD("5\r\nhello\rX0\r\n\r\n");
	CHECK_CHUNKED_BAD("3\r\nhello\r\n0\r\n\r\n");
	/* Overflow: 17 significant hex digits. */
	CHECK_CHUNKED_BAD("10000000000000000\r\n");
	CHECK_CHUNKED_BAD("fffffffffffffffff\r\n");
	CHECK_CHUNKED_BAD("00000000ffffffffffffffff0\r\n");
	/* Final empty line broken. */
	CHECK_CHUNKED_BAD("0\r\n\rX");
	CHECK_CHUNKED_BAD("0\r\nA: 1\r\n\r\r\n");
}

Test(http_chunked, long_lines)
{
	size_t n = 10000;
	char *s = malloc(n + 64);
	size_t len = 2;

	cr_assert_not_null(s);
	/* An extension line far past the bound. */
	memcpy(s, "5;", 2);
	memset(s + len, 'e', n);
	len += n;
	len += (size_t)sprintf(s + len, "\r\nhello\r\n0\r\n\r\n");
	check_body(OSH_BODY_CHUNKED, 0, s, len, OSH_HTTP_INVALID, false, 0);
	/* Without its end: still rejected, not waited on forever. */
	check_body(OSH_BODY_CHUNKED, 0, s, n, OSH_HTTP_INVALID, false, 0);
	/* Leading zeros count as line bytes too. */
	memset(s, '0', n);
	memcpy(s + n, "5\r\nhello\r\n0\r\n\r\n", 15);
	check_body(OSH_BODY_CHUNKED, 0, s, n + 15, OSH_HTTP_INVALID, false, 0);
	/* A trailer line far past its bound. */
	len = (size_t)sprintf(s, "0\r\nX-Long: ");
	memset(s + len, 't', n);
	len += n;
	len += (size_t)sprintf(s + len, "\r\n\r\n");
	check_body(OSH_BODY_CHUNKED, 0, s, len, OSH_HTTP_INVALID, false, 0);

	/* Reasonable lengths pass: a 1000-byte extension, a 4000-byte trailer. */
	len = (size_t)sprintf(s, "5;");
	memset(s + len, 'e', 1000);
	len += 1000;
	len += (size_t)sprintf(s + len, "\r\nhello\r\n0\r\n\r\n");
	check_body(OSH_BODY_CHUNKED, 0, s, len, (ssize_t)len, true, 5);
	len = (size_t)sprintf(s, "0\r\nX-Long: ");
	memset(s + len, 't', 4000);
	len += 4000;
	len += (size_t)sprintf(s + len, "\r\n\r\n");
	check_body(OSH_BODY_CHUNKED, 0, s, len, (ssize_t)len, true, 0);
	free(s);
}

/* Many chunks of varying sizes: payload equals the decoded size whatever the
 * split. */
Test(http_chunked, payload_count)
{
	char *s = malloc(64 * 1024);
	size_t len = 0;
	uint64_t total = 0;

	for (unsigned i = 1; i < 40; i++) {
		unsigned size = (i * 37) % 300 + 1;

		len += (size_t)sprintf(s + len, "%x%s\r\n", size, i % 3 ? "" : ";i=1");
		memset(s + len, 'a' + (int)(i % 26), size);
		len += size;
		memcpy(s + len, i % 5 ? "\r\n" : "\n", i % 5 ? 2 : 1);
		len += i % 5 ? 2 : 1;
		total += size;
	}
	len += (size_t)sprintf(s + len, "0\r\nT: 1\r\n\r\n");
	check_body(OSH_BODY_CHUNKED, 0, s, len, (ssize_t)len, true, total);
	free(s);
}

/* Restarting a walker clears an earlier error. */
Test(http_chunked, restart_after_error)
{
	struct osh_http_body b = { 0 };

	osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
	cr_assert_eq(osh_http_body_feed(&b, "zz", 2), OSH_HTTP_INVALID);
	cr_assert_eq(osh_http_body_feed(&b, "0\r\n\r\n", 5), OSH_HTTP_INVALID);
	osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
	cr_assert_eq(osh_http_body_feed(&b, "0\r\n\r\n", 5), 5);
	cr_assert(b.done);
}

/* An empty read may hand over a NULL buffer. */
Test(http_guard, empty_null_buffer)
{
	struct osh_http_request req;
	struct osh_http_response resp;
	struct osh_http_body b = { 0 };

	cr_assert_eq(osh_http_head_end(NULL, 0, 0), OSH_HTTP_PARTIAL);
	cr_assert_eq(osh_http_sniff_request(NULL, 0), OSH_HTTP_PARTIAL);
	cr_assert_eq(osh_http_sniff_response(NULL, 0), OSH_HTTP_PARTIAL);
	cr_assert_eq(osh_http_parse_request(&req, NULL, 0), OSH_HTTP_PARTIAL);
	cr_assert_eq(osh_http_parse_response(&resp, NULL, 0), OSH_HTTP_PARTIAL);
	cr_assert_eq(osh_http_scan_response_head(&resp, NULL, 0), OSH_HTTP_PARTIAL);
	osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
	cr_assert_eq(osh_http_body_feed(&b, NULL, 0), 0);
	osh_http_body_start(&b, OSH_BODY_LENGTH, 5);
	cr_assert_eq(osh_http_body_feed(&b, NULL, 0), 0);
	cr_assert_not(b.done);
}

/* ---- guard page --------------------------------------------------------- */

/* Complete and incomplete heads and bodies ending exactly at an inaccessible
 * page: any read past the given length faults the test. */
Test(http_guard, heads_at_page_end)
{
	static const char *const heads[] = {
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r",
		"GET / HTTP/1.1\r\nHost: a\r\n",
		"GET / HTTP/1.1\r\nHost: a",
		"GET / HTTP/1.1\r\nHost:",
		"GET / HTTP/1.1\r\nHost",
		"GET / HTTP/1.1\r",
		"GET / HTTP/1.",
		"GET /",
		"GET",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5",
		"HTTP/1.1 200",
		"HTTP/1.1 20",
		"HTTP/1.",
		"PRI * HTTP/2.",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip",
		"POST / HTTP/1.1\r\nConnection: close,",
		"\n",
		"\r",
		"",
	};
	long page = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(map, MAP_FAILED);
	cr_assert_eq(mprotect(map + page, (size_t)page, PROT_NONE), 0);
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		size_t len = strlen(heads[i]);
		char *p = map + page - len;
		struct osh_http_request req;
		struct osh_http_response resp;
		struct osh_http_body b = { 0 };

		memcpy(p, heads[i], len);
		(void)osh_http_head_end(p, len, 0);
		(void)osh_http_head_end(p, len, len / 2);
		(void)osh_http_sniff_request(p, len);
		(void)osh_http_sniff_response(p, len);
		(void)osh_http_parse_request(&req, p, len);
		(void)osh_http_parse_response(&resp, p, len);
		(void)osh_http_scan_response_head(&resp, p, len);
		osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
		(void)osh_http_body_feed(&b, p, len);
	}
	/* Checked results at the edge, too. */
	memcpy(map + page - 27, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27);
	{
		struct osh_http_request req;

		cr_assert_eq(osh_http_head_end(map + page - 27, 27, 0), 27);
		cr_assert_eq(osh_http_parse_request(&req, map + page - 27, 27), 27);
		assert_str(req.host, "a", "host");
		memcpy(map + page - 26, "GET / HTTP/1.1\r\nHost: a\r\n\r", 26);
		cr_assert_eq(osh_http_head_end(map + page - 26, 26, 0), OSH_HTTP_PARTIAL);
		cr_assert_eq(osh_http_parse_request(&req, map + page - 26, 26), OSH_HTTP_PARTIAL);
	}
	{
		struct osh_http_body b = { 0 };

		memcpy(map + page - 8, "5\r\nhello", 8);
		osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
		cr_assert_eq(osh_http_body_feed(&b, map + page - 8, 8), 8);
		cr_assert_not(b.done);
		memcpy(map + page - 4, "\r\n0\r", 4);
		cr_assert_eq(osh_http_body_feed(&b, map + page - 4, 4), 4);
		cr_assert_not(b.done);
		memcpy(map + page - 2, "\n\r", 2);
		cr_assert_eq(osh_http_body_feed(&b, map + page - 2, 2), 2);
		memcpy(map + page - 1, "\n", 1);
		cr_assert_eq(osh_http_body_feed(&b, map + page - 1, 1), 1);
		cr_assert(b.done);
		cr_assert_eq(b.payload, 5);
	}
	munmap(map, (size_t)page * 2);
}

/* ---- skipping unseen body bytes (sendfile, splice) ---------------------- */

static bool same_walker(const struct osh_http_body *a, const struct osh_http_body *b)
{
	return a->kind == b->kind && a->state == b->state && a->done == b->done &&
	       a->remaining == b->remaining && a->payload == b->payload &&
	       a->line_len == b->line_len;
}

#define assert_same_walker(a, b, ...)                                                              \
	cr_assert(same_walker((a), (b)), __VA_ARGS__)

/* A generated body: its bytes, how many belong to the body (the rest starts
 * the next message), and which are payload a sender could hand the kernel
 * unseen (chunk data; all of a Content-Length or until-close body). */
struct gen_body {
	enum osh_http_body_kind kind;
	uint64_t cl;
	char buf[2048];
	bool data[2048];
	size_t len;
	size_t body_len;
	uint64_t payload;
};

static void gen_put(struct gen_body *g, const char *s, size_t n, bool data)
{
	cr_assert_leq(g->len + n, sizeof(g->buf));
	memcpy(g->buf + g->len, s, n);
	memset(g->data + g->len, data, n);
	g->len += n;
}

static void gen_framing(struct gen_body *g, const char *s)
{
	gen_put(g, s, strlen(s), false);
}

static void gen_payload(struct gen_body *g, size_t n, unsigned seed)
{
	char tmp[512];

	cr_assert_leq(n, sizeof(tmp));
	/* Payload bytes that look like framing, to show they are not read. */
	for (size_t i = 0; i < n; i++)
		tmp[i] = "0\r\n;x:"[(seed + i) % 6];
	gen_put(g, tmp, n, true);
	g->payload += n;
}

/* Chunks of varied sizes and shapes (extensions, bare LF), trailers, then
 * the next message. */
static void gen_chunked(struct gen_body *g)
{
	static const unsigned sizes[] = { 1, 5, 16, 2, 31, 3 };
	char line[64];

	memset(g, 0, sizeof(*g));
	g->kind = OSH_BODY_CHUNKED;
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		snprintf(line, sizeof(line), "%x%s%s", sizes[i], i % 3 == 1 ? ";ext=\"v\"" : "",
			 i % 2 ? "\n" : "\r\n");
		gen_framing(g, line);
		gen_payload(g, sizes[i], i);
		gen_framing(g, i == 4 ? "\n" : "\r\n");
	}
	gen_framing(g, "0\r\nX-Trailer: t\r\n\r\n");
	g->body_len = g->len;
	gen_framing(g, "HTTP/1.1 200 OK\r\n");
}

static void gen_length(struct gen_body *g, size_t n)
{
	memset(g, 0, sizeof(*g));
	g->kind = OSH_BODY_LENGTH;
	g->cl = n;
	gen_payload(g, n, 3);
	g->body_len = g->len;
	gen_framing(g, "GET / HTTP/1.1\r\n");
}

static void gen_until_close(struct gen_body *g, enum osh_http_body_kind kind)
{
	memset(g, 0, sizeof(*g));
	g->kind = kind;
	gen_payload(g, 40, 1);
	g->body_len = g->len;
}

/* The walker after the first @at bytes of @g, fed in one piece. */
static void walker_at(const struct gen_body *g, size_t at, struct osh_http_body *ret)
{
	osh_http_body_start(ret, g->kind, g->cl);
	cr_assert_eq(osh_http_body_feed(ret, g->buf, at), (ssize_t)at);
}

/* From every point of the body, skip every count up to the end of the
 * buffer: accepted exactly when all the skipped bytes are payload inside the
 * body, and then the walker equals one fed the same bytes; refused
 * otherwise, and then untouched. */
static void check_skip_everywhere(const struct gen_body *g)
{
	for (size_t i = 0; i <= g->body_len; i++) {
		struct osh_http_body at;

		walker_at(g, i, &at);
		for (size_t j = i; j <= g->len; j++) {
			struct osh_http_body skipped = at;
			struct osh_http_body fed = at;
			bool want = true;
			bool ok;

			for (size_t k = i; k < j && want; k++)
				want = k < g->body_len && g->data[k];
			ok = osh_http_body_skip(&skipped, j - i);
			cr_assert_eq(ok, want, "kind %d: skip %zu bytes at %zu: %d", g->kind,
				     j - i, i, ok);
			if (!ok) {
				assert_same_walker(&skipped, &at, "refused skip at %zu changed it",
						   i);
				continue;
			}
			cr_assert_eq(osh_http_body_feed(&fed, g->buf + i, j - i), (ssize_t)(j - i));
			assert_same_walker(&skipped, &fed,
					   "kind %d: skip %zu..%zu differs from feed", g->kind, i,
					   j);
		}
	}
}

Test(http_skip, chunked_every_point)
{
	struct gen_body g;
	struct osh_http_body b;

	gen_chunked(&g);
	/* The generator's own sanity: fed whole, it is the body it claims. */
	osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
	cr_assert_eq(osh_http_body_feed(&b, g.buf, g.len), (ssize_t)g.body_len);
	cr_assert(b.done);
	cr_assert_eq(b.payload, g.payload);
	check_skip_everywhere(&g);
}

Test(http_skip, length_every_point)
{
	struct gen_body g;

	gen_length(&g, 37);
	check_skip_everywhere(&g);
	gen_length(&g, 1);
	check_skip_everywhere(&g);
	gen_length(&g, 0);
	check_skip_everywhere(&g);
}

Test(http_skip, until_close_and_tunnel_every_point)
{
	struct gen_body g;

	gen_until_close(&g, OSH_BODY_UNTIL_CLOSE);
	check_skip_everywhere(&g);
	gen_until_close(&g, OSH_BODY_TUNNEL);
	check_skip_everywhere(&g);
}

/* A sender that writes the framing and sends every chunk's data unseen, in
 * pieces of every size: the walker ends the body where feeding it would. */
Test(http_skip, chunked_data_all_unseen)
{
	struct gen_body g;

	gen_chunked(&g);
	for (size_t piece = 1; piece <= 32; piece++) {
		struct osh_http_body b;
		size_t pos = 0;

		osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
		while (pos < g.len && !b.done) {
			size_t run = 0;
			ssize_t r;

			while (pos + run < g.body_len && g.data[pos + run] && run < piece)
				run++;
			if (run) {
				cr_assert(osh_http_body_skip(&b, run), "piece %zu: refused at %zu",
					  piece, pos);
				pos += run;
				continue;
			}
			r = osh_http_body_feed(&b, g.buf + pos, 1);
			cr_assert_eq(r, 1, "piece %zu: framing byte at %zu", piece, pos);
			pos++;
		}
		cr_assert(b.done, "piece %zu: not done", piece);
		cr_assert_eq(pos, g.body_len);
		cr_assert_eq(b.payload, g.payload);
	}
}

/* A reader that takes the framing between chunks through
 * osh_http_body_next_chunk() (the LLM body path), pieces of every size:
 * what it takes is framing only, and the body ends where the walker alone
 * ends it, with the same payload. Extensions, bare LF lines, the last
 * chunk and trailers go to the walker. */
Test(http_skip, next_chunk_fast_path)
{
	struct gen_body g;
	size_t fast_total = 0;

	gen_chunked(&g);
	for (size_t piece = 1; piece <= 40; piece++) {
		struct osh_http_body b;
		size_t pos = 0;

		osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
		while (pos < g.len && !b.done) {
			size_t avail = g.len - pos < piece ? g.len - pos : piece;
			uint64_t ahead = osh_http_body_payload_ahead(&b);
			size_t k;

			if (ahead) {
				k = ahead < avail ? (size_t)ahead : avail;
				for (size_t i = 0; i < k; i++)
					cr_assert(g.data[pos + i], "piece %zu: framing as data at %zu",
						  piece, pos + i);
				cr_assert(osh_http_body_skip(&b, k));
				pos += k;
				continue;
			}
			k = osh_http_body_next_chunk(&b, g.buf + pos, avail);
			if (k) {
				for (size_t i = 0; i < k; i++)
					cr_assert_not(g.data[pos + i], "piece %zu: data taken as "
						      "framing at %zu", piece, pos + i);
				fast_total += k;
				pos += k;
				continue;
			}
			cr_assert_eq(osh_http_body_feed(&b, g.buf + pos, 1), 1,
				     "piece %zu: framing byte at %zu", piece, pos);
			pos++;
		}
		cr_assert(b.done, "piece %zu: not done", piece);
		cr_assert_eq(pos, g.body_len, "piece %zu", piece);
		cr_assert_eq(b.payload, g.payload, "piece %zu", piece);
	}
	cr_assert_gt(fast_total, 0, "the fast path never applied");
	/* Not at a boundary, or not chunked: nothing taken. */
	{
		struct osh_http_body b;

		osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
		cr_assert_eq(osh_http_body_next_chunk(&b, "0\r\n\r\n", 5), 0, "last chunk");
		cr_assert_eq(osh_http_body_next_chunk(&b, "5;x=1\r\n", 8), 0, "extension");
		cr_assert_eq(osh_http_body_next_chunk(&b, "5\r", 2), 0, "cut line");
		cr_assert_eq(osh_http_body_next_chunk(&b, "5\r\nhello", 10), 3);
		cr_assert_eq(osh_http_body_next_chunk(&b, "\r\n5\r\n", 7), 0, "inside data");
		osh_http_body_start(&b, OSH_BODY_LENGTH, 9);
		cr_assert_eq(osh_http_body_next_chunk(&b, "5\r\nhello", 10), 0, "length body");
	}
}

/* A reader that copies the payload out through osh_http_body_copy_payload()
 * (skimmed LLM streams), pieces of every size and room of every size: the
 * bytes copied are exactly the payload, in order, and the body ends where
 * the walker alone ends it. What it refuses (extensions, bare LF lines, the
 * last chunk, a cut line) goes to the walker a byte at a time. */
Test(http_skip, copy_payload_every_piece_and_room)
{
	struct gen_body g;
	char want[2048], got[2048];
	size_t want_len = 0, fast_total = 0;

	gen_chunked(&g);
	for (size_t i = 0; i < g.body_len; i++)
		if (g.data[i])
			want[want_len++] = g.buf[i];
	for (size_t piece = 1; piece <= 40; piece++) {
		for (size_t room = 1; room <= 64; room += 9) {
			struct osh_http_body b;
			size_t pos = 0, got_len = 0;

			osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
			while (pos < g.len && !b.done) {
				size_t avail = g.len - pos < piece ? g.len - pos : piece;
				size_t copied, used;

				used = osh_http_body_copy_payload(&b, g.buf + pos, avail, got + got_len,
								  room, &copied);
				cr_assert_leq(copied, room);
				cr_assert_leq(copied, used);
				if (used) {
					got_len += copied;
					fast_total += used;
					pos += used;
					continue;
				}
				cr_assert_eq(copied, 0);
				if (osh_http_body_payload_ahead(&b)) {
					got[got_len++] = g.buf[pos];
					cr_assert(osh_http_body_skip(&b, 1));
				} else {
					cr_assert_eq(osh_http_body_feed(&b, g.buf + pos, 1), 1,
						     "piece %zu room %zu: framing byte at %zu", piece,
						     room, pos);
				}
				pos++;
			}
			cr_assert(b.done, "piece %zu room %zu: not done", piece, room);
			cr_assert_eq(pos, g.body_len, "piece %zu room %zu", piece, room);
			cr_assert_eq(b.payload, g.payload, "piece %zu room %zu", piece, room);
			cr_assert_eq(got_len, want_len, "piece %zu room %zu", piece, room);
			cr_assert(memcmp(got, want, want_len) == 0, "piece %zu room %zu: bytes differ",
				  piece, room);
		}
	}
	cr_assert_gt(fast_total, 0, "the copy path never applied");
	/* A length body: up to its end and the room; done at its end. */
	{
		struct osh_http_body b;
		char out[16];
		size_t copied;

		osh_http_body_start(&b, OSH_BODY_LENGTH, 9);
		cr_assert_eq(osh_http_body_copy_payload(&b, "hello wor", 9, out, 5, &copied), 5);
		cr_assert_eq(copied, 5);
		cr_assert_eq(osh_http_body_copy_payload(&b, " world!", 7, out + 5, 16, &copied), 4);
		cr_assert_eq(copied, 4);
		cr_assert(b.done);
		cr_assert(memcmp(out, "hello wor", 9) == 0);
		cr_assert_eq(osh_http_body_copy_payload(&b, "x", 1, out, 16, &copied), 0, "done");
	}
}

/* The fast path's size lines: every digit count, either case, with the
 * bytes ending right after the line or data following; and what is not a
 * plain size line is left to the general walker (0 taken). */
Test(http_skip, size_line_digits)
{
	static const struct { const char *line; uint64_t size; } ok[] = {
		{ "1\r\n", 0x1 }, { "f\r\n", 0xf }, { "F\r\n", 0xf }, { "10\r\n", 0x10 },
		{ "aB\r\n", 0xab }, { "0f\r\n", 0xf }, { "F0\r\n", 0xf0 }, { "FfF\r\n", 0xfff },
		{ "1234\r\n", 0x1234 },
		{ "0000a\r\n", 0xa }, { "abcde\r\n", 0xabcde }, { "ABCDEF\r\n", 0xabcdef },
		{ "9a9f90\r\n", 0x9a9f90 }, { "1234567\r\n", 0x1234567 },
		{ "12345678\r\n", 0x12345678 }, { "fedcba9876\r\n", 0xfedcba9876 },
	};
	static const char *const refused[] = {
		"12g\r\n", "g1\r\n", "1g\r\n", "00\r\n", "\r\n", "1\r\r\n", "12 ;x\r\n",
		"1;a=b\r\n", "0\r\n", "000\r\n",
		"1\n", ":1\r\n", "1\rx\n",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		for (int padded = 0; padded < 2; padded++) {
			char buf[64];
			size_t n = (size_t)snprintf(buf, sizeof(buf), "%s%s", ok[i].line,
						    padded ? "0123456789abcdef" : "");
			struct osh_http_body b;

			osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
			cr_assert_eq(osh_http_body_next_chunk(&b, buf, n), strlen(ok[i].line), "%s",
				     ok[i].line);
			cr_assert_eq(osh_http_body_payload_ahead(&b), ok[i].size, "%s padded %d",
				     ok[i].line, padded);
		}
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		for (int padded = 0; padded < 2; padded++) {
			char buf[64];
			size_t n = (size_t)snprintf(buf, sizeof(buf), "%s%s", refused[i],
						    padded ? "0123456789abcdef" : "");
			struct osh_http_body b;

			osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
			cr_assert_eq(osh_http_body_next_chunk(&b, buf, n), 0, "%s", refused[i]);
			cr_assert_eq(osh_http_body_payload_ahead(&b), 0);
		}
	}
}

Test(http_skip, chunked_crossings_refused)
{
	struct osh_http_body b;
	struct osh_http_body before;

	osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
	cr_assert(osh_http_body_skip(&b, 0));
	cr_assert_not(osh_http_body_skip(&b, 1), "skipped into a chunk-size line");
	cr_assert_eq(osh_http_body_feed(&b, "5\r", 2), 2);
	cr_assert_not(osh_http_body_skip(&b, 1), "skipped the size line's LF");
	cr_assert_eq(osh_http_body_feed(&b, "\nhel", 4), 4);
	before = b;
	cr_assert_not(osh_http_body_skip(&b, 3), "skipped past the chunk's data");
	assert_same_walker(&b, &before, "refused skip changed the walker");
	cr_assert(osh_http_body_skip(&b, 2));
	cr_assert_eq(b.payload, 5);
	cr_assert_eq(b.remaining, 0);
	cr_assert_not(osh_http_body_skip(&b, 1), "skipped the CRLF after the data");
	/* The CRLF is expected next, exactly as after feeding "lo". */
	cr_assert_eq(osh_http_body_feed(&b, "\r\n0\r\n", 5), 5);
	cr_assert_not(osh_http_body_skip(&b, 1), "skipped into the trailers");
	cr_assert_eq(osh_http_body_feed(&b, "\r\n", 2), 2);
	cr_assert(b.done);
	cr_assert_not(osh_http_body_skip(&b, 1), "skipped past the end");
	cr_assert(osh_http_body_skip(&b, 0));

	/* A failed walker accepts nothing. */
	osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
	cr_assert_eq(osh_http_body_feed(&b, "5\r\nhelloX", 9), OSH_HTTP_INVALID);
	cr_assert_not(osh_http_body_skip(&b, 1));
}

/* A chunk far larger than anything fed: nginx sends a file of many GiB as
 * one chunk. */
Test(http_skip, huge_chunk)
{
	struct osh_http_body b;
	uint64_t size = 0xffffffffffull;

	osh_http_body_start(&b, OSH_BODY_CHUNKED, 0);
	cr_assert_eq(osh_http_body_feed(&b, "ffffffffff\r\n", 12), 12);
	for (int i = 0; i < 255; i++)
		cr_assert(osh_http_body_skip(&b, 0x100000000ull));
	cr_assert_eq(b.remaining, size - 255 * 0x100000000ull);
	cr_assert_not(osh_http_body_skip(&b, b.remaining + 1));
	cr_assert(osh_http_body_skip(&b, b.remaining));
	cr_assert_eq(b.payload, size);
	cr_assert_eq(osh_http_body_feed(&b, "\r\n0\r\n\r\n", 7), 7);
	cr_assert(b.done);
	cr_assert_eq(b.payload, size);

	osh_http_body_start(&b, OSH_BODY_LENGTH, UINT64_MAX);
	cr_assert(osh_http_body_skip(&b, UINT64_MAX - 1));
	cr_assert_not(b.done);
	cr_assert_not(osh_http_body_skip(&b, 2));
	cr_assert(osh_http_body_skip(&b, 1));
	cr_assert(b.done);
	cr_assert_eq(b.payload, UINT64_MAX);
}

Test(http_skip, no_body_refuses)
{
	struct osh_http_body b;

	osh_http_body_start(&b, OSH_BODY_NONE, 0);
	cr_assert(osh_http_body_skip(&b, 0));
	cr_assert_not(osh_http_body_skip(&b, 1));
	cr_assert_eq(b.payload, 0);
	osh_http_body_start(&b, OSH_BODY_LENGTH, 0);
	cr_assert_not(osh_http_body_skip(&b, 1));
	osh_http_body_start(&b, (enum osh_http_body_kind)77, 0);
	cr_assert_not(osh_http_body_skip(&b, 1));
}

/* ---- joining repeated fields -------------------------------------------- */

struct join_case {
	const char *head;
	const char *name;
	const char *want;
};

static const struct join_case join_cases[] = {
	/* one */
	{ "GET / HTTP/1.1\r\nHost: h\r\ntracestate: a=1\r\n\r\n", "tracestate", "a=1" },
	/* several, in order, other fields between them, any case */
	{ "GET / HTTP/1.1\r\ntracestate: a=1\r\nHost: h\r\nTraceState: b=2\r\n"
	  "X: y\r\nTRACESTATE: c=3,d=4\r\n\r\n",
	  "tracestate", "a=1,b=2,c=3,d=4" },
	{ "GET / HTTP/1.1\r\nbaggage: user_id=u1\r\nbaggage: tenant_id=t2;p=1\r\n\r\n",
	  "baggage", "user_id=u1,tenant_id=t2;p=1" },
	/* OWS trimmed around values, kept inside them */
	{ "GET / HTTP/1.1\r\ntracestate: \t a=1 , b=2 \t\r\ntracestate:c=3\r\n\r\n",
	  "tracestate", "a=1 , b=2,c=3" },
	/* empty values contribute nothing */
	{ "GET / HTTP/1.1\r\ntracestate:\r\ntracestate: \t \r\ntracestate: a=1\r\n"
	  "tracestate:\r\ntracestate: b=2\r\n\r\n",
	  "tracestate", "a=1,b=2" },
	{ "GET / HTTP/1.1\r\ntracestate:\r\ntracestate:  \r\n\r\n", "tracestate", "" },
	/* empty list members inside a value are the value's own */
	{ "GET / HTTP/1.1\r\ntracestate: a=1,\r\ntracestate: ,b=2\r\n\r\n", "tracestate",
	  "a=1,,,b=2" },
	/* absent; names that only look alike */
	{ "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "tracestate", "" },
	{ "GET / HTTP/1.1\r\ntracestatex: z\r\nx-tracestate: z\r\ntracestat: z\r\n"
	  "tracestate: a=1\r\n\r\n",
	  "tracestate", "a=1" },
	/* the start line is not a field, even when it looks like one */
	{ "GET /tracestate:z HTTP/1.1\r\ntracestate: a=1\r\n\r\n", "tracestate", "a=1" },
	/* bare LF line endings */
	{ "GET / HTTP/1.1\ntracestate: a=1\ntracestate: b=2\n\n", "tracestate", "a=1,b=2" },
	/* responses too */
	{ "HTTP/1.1 200 OK\r\nbaggage: k=v\r\nContent-Length: 0\r\nbaggage: k2=v2\r\n\r\n",
	  "baggage", "k=v,k2=v2" },
	/* bytes after the head are not fields */
	{ "GET / HTTP/1.1\r\ntracestate: a=1\r\n\r\ntracestate: body=1\r\n", "tracestate",
	  "a=1" },
};

Test(http_join, table)
{
	struct guard g;

	guard_init(&g, 4096);
	for (size_t i = 0; i < sizeof(join_cases) / sizeof(join_cases[0]); i++) {
		const struct join_case *c = &join_cases[i];
		size_t len = strlen(c->head);
		/* At the page end: nothing past head_len may be read. */
		const char *head = guard_place(&g, c->head, len);
		char out[256];
		size_t n;

		memset(out, 'X', sizeof(out));
		n = osh_http_join_field(head, len, c->name, out, sizeof(out));
		cr_assert(n == strlen(c->want) && strcmp(out, c->want) == 0,
			  "case %zu: got '%s' (%zu), want '%s'", i, out, n, c->want);
	}
	guard_finish(&g);
}

/* What the server passes: a head the request parser accepted, at the
 * length it reported, whatever follows in the buffer. */
Test(http_join, parsed_request_head)
{
	static const char s[] = "POST /x HTTP/1.1\r\nHost: h\r\ntracestate: a=1\r\n"
				"Content-Length: 5\r\ntracestate: b=2\r\n\r\n"
				"tracestate: c=3";
	struct osh_http_request req;
	char out[64];
	int rc = osh_http_parse_request(&req, s, sizeof(s) - 1);

	cr_assert_gt(rc, 0);
	cr_assert_eq(req.tracestate_count, 2);
	cr_assert_eq(osh_http_join_field(s, req.head_len, "tracestate", out, sizeof(out)), 7);
	cr_assert_str_eq(out, "a=1,b=2");
}

/* A value that does not fit whole ends the list: nothing is cut inside a
 * value, and later (even shorter) values are not moved up past it. */
Test(http_join, truncation)
{
	static const char head[] = "GET / HTTP/1.1\r\ntracestate: a=1\r\n"
				   "tracestate: long=0123456789\r\ntracestate: c=3\r\n\r\n";
	static const char full[] = "a=1,long=0123456789,c=3";
	char out[64];

	for (size_t sz = 0; sz <= sizeof(full) + 1; sz++) {
		const char *want;
		size_t n;

		if (sz >= sizeof(full))
			want = full;
		else if (sz >= sizeof("a=1,long=0123456789"))
			want = "a=1,long=0123456789";
		else if (sz >= sizeof("a=1"))
			want = "a=1";
		else
			want = "";
		memset(out, 'X', sizeof(out));
		n = osh_http_join_field(head, sizeof(head) - 1, "tracestate", out, sz);
		cr_assert_eq(n, strlen(want), "outsz %zu: %zu", sz, n);
		if (sz) {
			cr_assert_str_eq(out, want, "outsz %zu", sz);
		} else {
			cr_assert_eq(out[0], 'X', "wrote into a zero-sized buffer");
		}
		/* Never past outsz. */
		cr_assert_eq(out[sz], 'X', "outsz %zu: wrote past the end", sz);
	}
}

Test(http_join, degenerate_inputs)
{
	char out[8] = "XXXXXXX";

	cr_assert_eq(osh_http_join_field(NULL, 0, "tracestate", out, sizeof(out)), 0);
	cr_assert_eq(out[0], '\0');
	cr_assert_eq(osh_http_join_field("GET / HTTP/1.1\r\n", 16, NULL, out, sizeof(out)), 0);
	/* No line end at all, or a head cut before its empty line: what is
	 * whole is used, nothing is read past the length. */
	cr_assert_eq(osh_http_join_field("tracestate: a=1", 15, "tracestate", out, sizeof(out)),
		     0);
	cr_assert_eq(osh_http_join_field("GET / HTTP/1.1\r\ntracestate: a=1\r\ntracestate: b",
					 46, "tracestate", out, sizeof(out)),
		     3);
	cr_assert_str_eq(out, "a=1");
	/* Lines that are no field are skipped. */
	cr_assert_eq(osh_http_join_field("GET / HTTP/1.1\r\n junk\r\nno colon\r\ntracestate: a\r\n"
					 "\r\n",
					 50, "tracestate", out, sizeof(out)),
		     1);
	cr_assert_str_eq(out, "a");
}
