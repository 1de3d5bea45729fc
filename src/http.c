/* Incremental HTTP/1.x parsing (see http.h).
 *
 * Runs on app threads inside the preloaded shim, for every message the host
 * sends or receives: no allocation, no syscalls, no locale (ctype is avoided
 * on purpose), and every loop is bounded by the caller's length or by a fixed
 * cap. Results point into the caller's buffer.
 *
 * Conventions chosen here, where http.h leaves room:
 * - A request with "Content-Length: 0" reports OSH_BODY_LENGTH with
 *   content_length 0 (the body walker is done at once); NONE means no framing
 *   header at all. content_length is only meaningful with OSH_BODY_LENGTH: it
 *   is 0 when chunked wins over a Content-Length.
 * - A request whose Transfer-Encoding does not end in "chunked" is INVALID:
 *   its body length cannot be known (RFC 9112, 6.3), so the connection should
 *   pass through. A response in that case reads until close.
 * - connection_close reflects the Connection header only; the HTTP/1.0
 *   "close unless keep-alive" default is left to the caller.
 * - Field values are not checked for odd bytes: the shim observes, and a peer
 *   that accepts a value should not make us lose the exchange. Names, the
 *   request line and the status line are checked strictly.
 */
#include "buildconf.h"

#include <limits.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "http.h"
#include "ids.h"

/* Longest chunk-size line (size plus extensions) and trailer field line the
 * body walker accepts; longer ones are treated as an attack or garbage. */
#define CHUNK_LINE_MAX 4096
#define TRAILER_LINE_MAX 8192

/* The method token sniff accepts: long enough for any registered method. */
#define SNIFF_METHOD_MAX 20

/* RFC 9110 tchar. */
static const unsigned char tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
	['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
	['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
	['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
	['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
	['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
	['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
	['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
	['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
	['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static inline unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool is_upper(unsigned char c)
{
	return c >= 'A' && c <= 'Z';
}

static inline bool is_alpha(unsigned char c)
{
	return lower(c) >= 'a' && lower(c) <= 'z';
}

static inline bool is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Request-target bytes: anything visible, obs-text included; no controls,
 * no SP (which ends the target), no DEL. */
static inline bool is_target_char(unsigned char c)
{
	return c > 0x20 && c != 0x7f;
}

/* @p/@n equals the lowercase literal @lit/@lit_len, ignoring ASCII case. */
static bool ieq(const char *p, size_t n, const char *lit, size_t lit_len)
{
	if (n != lit_len)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (lower((unsigned char)p[i]) != lower((unsigned char)lit[i]))
			return false;
	}
	return true;
}

static inline uint64_t load64(const char *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return w;
}

static inline uint32_t load32(const char *p)
{
	uint32_t w;

	memcpy(&w, p, 4);
	return w;
}

static inline uint16_t load16(const char *p)
{
	uint16_t w;

	memcpy(&w, p, 2);
	return w;
}

/* "\r\n" as load16() reads it. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define CRLF16 ((uint16_t)('\r' | '\n' << 8))
#else
#define CRLF16 ((uint16_t)('\r' << 8 | '\n'))
#endif

/* Field names, already checked to be tokens (split_field), against a
 * lowercase literal of letters, digits and '-': setting bit 0x20 lowercases
 * a letter and leaves '-' and digits alone, and the only other bytes it
 * could map onto them (CR, controls) are not token characters. So whole
 * words compare at once, the last one overlapping: a header name costs a
 * few instructions instead of a lowercase-and-compare per byte. Always
 * inlined: @lit_len is a constant, and the branches fold away. */
static inline __attribute__((always_inline)) bool name_is(const char *p, size_t n,
							 const char *lit, size_t lit_len)
{
	const uint64_t lc64 = 0x2020202020202020ull;
	const uint32_t lc32 = 0x20202020u;

	if (n != lit_len)
		return false;
	if (n >= 8) {
		size_t i = 0;

		for (; i + 8 < n; i += 8)
			if ((load64(p + i) | lc64) != load64(lit + i))
				return false;
		return (load64(p + n - 8) | lc64) == load64(lit + n - 8);
	}
	if (n >= 4)
		return (load32(p) | lc32) == load32(lit) &&
		       (load32(p + n - 4) | lc32) == load32(lit + n - 4);
	return ieq(p, n, lit, lit_len);
}

#define NAME_IS(p, n, lit) name_is((p), (n), lit, sizeof(lit) - 1)

/* Values (list elements, Expect) are not validated: a byte below 0x20
 * could pass for '-' or a digit once 0x20 is set (CR for '-'), so the words
 * are also checked for such bytes (the usual "has a byte less than" trick,
 * exact for whether one exists). Letters map only onto their two cases. */
static inline __attribute__((always_inline)) bool value_is(const char *p, size_t n,
							  const char *lit, size_t lit_len)
{
	const uint64_t lc64 = 0x2020202020202020ull, hi64 = 0x8080808080808080ull;
	const uint32_t lc32 = 0x20202020u, hi32 = 0x80808080u;

	if (n != lit_len)
		return false;
	if (n >= 8) {
		uint64_t ctl = 0;
		size_t i = 0;

		for (; i + 8 < n; i += 8) {
			uint64_t w = load64(p + i);

			if ((w | lc64) != load64(lit + i))
				return false;
			ctl |= (w - lc64) & ~w;
		}
		uint64_t w = load64(p + n - 8);

		ctl |= (w - lc64) & ~w;
		return (w | lc64) == load64(lit + n - 8) && !(ctl & hi64);
	}
	if (n >= 4) {
		uint32_t a = load32(p), z = load32(p + n - 4);

		return (a | lc32) == load32(lit) && (z | lc32) == load32(lit + n - 4) &&
		       !((((a - lc32) & ~a) | ((z - lc32) & ~z)) & hi32);
	}
	return ieq(p, n, lit, lit_len);
}

#define VALUE_IS(p, n, lit) value_is((p), (n), lit, sizeof(lit) - 1)

bool osh_str_ieq(struct osh_str s, const char *lit)
{
	if (!lit)
		return false;
	if (s.len && !s.p)
		return false;
	return ieq(s.p, s.len, lit, strlen(lit));
}

static inline size_t head_limit(size_t len)
{
	return len < OSH_HTTP_MAX_HEAD ? len : OSH_HTTP_MAX_HEAD;
}

/* What running out of bytes means: PARTIAL while the head could still fit
 * under the cap, INVALID once the cap itself was searched. */
static inline int out_of_bytes(size_t len)
{
	return len >= OSH_HTTP_MAX_HEAD ? OSH_HTTP_INVALID : OSH_HTTP_PARTIAL;
}

ssize_t osh_http_head_end(const char *buf, size_t len, size_t last_len)
{
	size_t limit = head_limit(len);
	const char *end = buf + limit;
	const char *p;
	const char *nl;

	/* An end that was not found before may straddle the old length: the
	 * first LF of "\n\r\n" can sit two bytes before it. Back up three to be
	 * safe. */
	if (last_len > limit)
		last_len = limit;
	p = buf + (last_len > 3 ? last_len - 3 : 0);

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p)))) {
		const char *q = nl + 1;

		if (q < end && q[0] == '\n')
			return q + 1 - buf;
		if (end - q >= 2 && q[0] == '\r' && q[1] == '\n')
			return q + 2 - buf;
		p = q;
	}
	return out_of_bytes(len);
}

int osh_http_sniff_request(const char *buf, size_t len)
{
	static const char h2_preface[] = "PRI * HTTP/2.0";
	const unsigned char *u = (const unsigned char *)buf;
	size_t i;

	if (len == 0)
		return OSH_HTTP_PARTIAL;
	if (!is_upper(u[0]))
		return 0;
	for (i = 1; i < len && i <= SNIFF_METHOD_MAX; i++) {
		unsigned char c = u[i];

		if (c == ' ')
			break;
		if (!is_upper(c) && !is_digit(c) && c != '-' && c != '_')
			return 0;
	}
	if (i > SNIFF_METHOD_MAX)
		return 0;
	if (i >= len)
		return OSH_HTTP_PARTIAL;
	/* u[i] is the SP after the method. */
	if (i + 1 >= len)
		return OSH_HTTP_PARTIAL;
	if (u[i + 1] != '/' && u[i + 1] != '*' && !is_alpha(u[i + 1]))
		return 0;

	/* "PRI * HTTP/2.0" is the HTTP/2 connection preface (RFC 9113, 3.4):
	 * shaped like a request line but not HTTP/1.x. Wait for enough bytes to
	 * tell it apart from some other use of a PRI method. */
	if (i == 3 && memcmp(buf, "PRI", 3) == 0) {
		size_t n = len < sizeof(h2_preface) - 1 ? len : sizeof(h2_preface) - 1;

		if (memcmp(buf, h2_preface, n) != 0)
			return 1;
		return n < sizeof(h2_preface) - 1 ? OSH_HTTP_PARTIAL : 0;
	}
	return 1;
}

int osh_http_sniff_response(const char *buf, size_t len)
{
	static const char prefix[] = "HTTP/1.";
	size_t n = len < sizeof(prefix) - 1 ? len : sizeof(prefix) - 1;

	if (len == 0)
		return OSH_HTTP_PARTIAL;
	if (memcmp(buf, prefix, n) != 0)
		return 0;
	return n < sizeof(prefix) - 1 ? OSH_HTTP_PARTIAL : 1;
}

/* Find the line starting at @p: returns the byte after its LF, or NULL when
 * there is none before @end. *ret_eol is the end of its content (before the
 * CR of a CRLF). @lo is where the buffer starts: the last bytes of a
 * buffer of 16 or more are read by one load ending at @end. */
static inline const char *find_lf(const char *lo, const char *p, const char *end)
{
#ifdef __SSE2__
	/* Header lines are 10-40 bytes: 16 at a time inline beats a libc call
	 * per line. */
	const __m128i lf = _mm_set1_epi8('\n');

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf));

		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
	if (p < end && end - lo >= 16) {
		/* Bit i is the byte at end - 16 + i: shifted so that bit 0 is
		 * the byte at @p (1..15 bytes are left). */
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(end - 16));
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf)) >>
			     (16 - (end - p));

		return m ? p + __builtin_ctz(m) : NULL;
	}
#else
	(void)lo;
#endif
	return memchr(p, '\n', (size_t)(end - p));
}

static inline const char *next_line(const char *lo, const char *p, const char *end,
				     const char **ret_eol)
{
	const char *nl = find_lf(lo, p, end);
	const char *eol;

	if (!nl)
		return NULL;
	eol = nl;
	if (eol > p && eol[-1] == '\r')
		eol--;
	*ret_eol = eol;
	return nl + 1;
}

/* The end of the token starting at @p. The caller guarantees a byte that
 * is no token character before the buffer ends (a line's CR or LF), so the
 * scan needs no bound; unrolled, since names are ~10 bytes and this runs
 * for every header line the shim sees. */
static inline const char *token_end(const char *p)
{
	const unsigned char *q = (const unsigned char *)p;

	for (;;) {
		if (!tchar[q[0]])
			return (const char *)q;
		if (!tchar[q[1]])
			return (const char *)q + 1;
		if (!tchar[q[2]])
			return (const char *)q + 2;
		if (!tchar[q[3]])
			return (const char *)q + 3;
		q += 4;
	}
}

/* The end of a request-target starting at @p: like token_end(), unbounded,
 * the line's CR or LF (no target character) stopping it at the latest. */
static inline const char *target_end(const char *p)
{
	const unsigned char *q = (const unsigned char *)p;

	for (;;) {
		if (!is_target_char(q[0]))
			return (const char *)q;
		if (!is_target_char(q[1]))
			return (const char *)q + 1;
		if (!is_target_char(q[2]))
			return (const char *)q + 2;
		if (!is_target_char(q[3]))
			return (const char *)q + 3;
		q += 4;
	}
}

static inline struct osh_str trim_value(const char *p, const char *end)
{
	/* The usual shape, one space then a value with nothing trailing. */
	if (end - p >= 2 && p[0] == ' ' && !is_ows((unsigned char)p[1]) &&
	    !is_ows((unsigned char)end[-1]))
		return (struct osh_str){ .p = p + 1, .len = (size_t)(end - p - 1) };
	while (p < end && is_ows((unsigned char)*p))
		p++;
	while (end > p && is_ows((unsigned char)end[-1]))
		end--;
	return (struct osh_str){ .p = p, .len = (size_t)(end - p) };
}

/* Split a header line [p, eol) into a name and a trimmed value. The name is a
 * non-empty token followed directly by ':' (RFC 9112, 5.1: no whitespace
 * before the colon). */
static bool split_field(const char *p, const char *eol, struct osh_str *ret_name,
			struct osh_str *ret_value)
{
	const char *q = token_end(p);

	(void)eol;	/* *eol, the line's CR or LF, ends the token scan */
	if (q == p || *q != ':')
		return false;
	*ret_name = (struct osh_str){ .p = p, .len = (size_t)(q - p) };
	*ret_value = trim_value(q + 1, eol);
	return true;
}

/* Next element of a comma-separated list in [*pp, end), trimmed; elements
 * may be empty. *pp becomes NULL after the last one; returns false once the
 * list is exhausted. */
static bool next_element(const char **pp, const char *end, struct osh_str *ret_elem)
{
	const char *p = *pp;
	const char *comma;

	if (!p)
		return false;
	comma = memchr(p, ',', (size_t)(end - p));
	if (comma) {
		*ret_elem = trim_value(p, comma);
		*pp = comma + 1;
	} else {
		*ret_elem = trim_value(p, end);
		*pp = NULL;
	}
	return true;
}

/* Framing facts common to requests and responses. */
struct framing {
	bool cl_seen;
	bool te_seen;
	bool te_chunked;	/* last transfer coding seen is chunked */
	bool close;
	uint64_t cl;
};

static bool parse_content_length(struct osh_str v, uint64_t *ret)
{
	uint64_t n = 0;

	if (v.len == 0)
		return false;
	for (size_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.p[i];

		/* Overflow by the flags of a multiply and an add: a division
		 * per digit cost more than the rest of the head's field. */
		if (!is_digit(c) || __builtin_mul_overflow(n, 10, &n) ||
		    __builtin_add_overflow(n, (uint64_t)(c - '0'), &n))
			return false;
	}
	*ret = n;
	return true;
}

static bool framing_content_length(struct framing *f, struct osh_str v)
{
	uint64_t n;

	if (!parse_content_length(v, &n))
		return false;
	/* Repeats are tolerated only when they agree (RFC 9110, 8.6); anything
	 * else is a request-smuggling shape. */
	if (f->cl_seen && f->cl != n)
		return false;
	f->cl_seen = true;
	f->cl = n;
	return true;
}

/* Several Transfer-Encoding lines form one list: what matters is the last
 * non-empty coding of the last line that has one. */
static void framing_transfer_encoding(struct framing *f, struct osh_str v)
{
	const char *p = v.p;
	const char *end = v.p + v.len;
	struct osh_str elem;
	struct osh_str last = { 0 };
	const char *semi;

	while (next_element(&p, end, &elem)) {
		if (elem.len)
			last = elem;
	}
	if (!last.len)
		return;
	/* Parameters (";q=...") do not change which coding it is. */
	semi = memchr(last.p, ';', last.len);
	if (semi)
		last = trim_value(last.p, semi);
	f->te_seen = true;
	f->te_chunked = VALUE_IS(last.p, last.len, "chunked");
}

static void framing_connection(struct framing *f, struct osh_str v)
{
	const char *p = v.p;
	const char *end = v.p + v.len;
	struct osh_str elem;

	/* Nearly always one token: no list to split. */
	if (VALUE_IS(v.p, v.len, "keep-alive"))
		return;
	while (next_element(&p, end, &elem)) {
		if (VALUE_IS(elem.p, elem.len, "close"))
			f->close = true;
	}
}

/* Handle the framing fields; false only on a malformed Content-Length. */
static inline __attribute__((always_inline)) bool framing_field(struct framing *f, struct osh_str name,
								   struct osh_str v)
{
	switch (name.len) {
	case 10:
		if (NAME_IS(name.p, name.len, "connection"))
			framing_connection(f, v);
		break;
	case 14:
		if (NAME_IS(name.p, name.len, "content-length"))
			return framing_content_length(f, v);
		break;
	case 17:
		if (NAME_IS(name.p, name.len, "transfer-encoding"))
			framing_transfer_encoding(f, v);
		break;
	}
	return true;
}

static inline void keep_first(struct osh_str *slot, struct osh_str v)
{
	if (!slot->p)
		*slot = v;
}

static void request_field(struct osh_http_request *r, struct osh_str name, struct osh_str v)
{
	switch (name.len) {
	case 4:
		if (NAME_IS(name.p, name.len, "host"))
			keep_first(&r->host, v);
		break;
	case 6:
		if (NAME_IS(name.p, name.len, "expect") && VALUE_IS(v.p, v.len, "100-continue"))
			r->expect_continue = true;
		break;
	case 7:
		if (NAME_IS(name.p, name.len, "baggage")) {
			keep_first(&r->baggage, v);
			r->baggage_count++;
		} else if (NAME_IS(name.p, name.len, "upgrade")) {
			r->upgrade = true;
		}
		break;
	case 10:
		if (NAME_IS(name.p, name.len, "user-agent")) {
			keep_first(&r->user_agent, v);
		} else if (NAME_IS(name.p, name.len, "tracestate")) {
			keep_first(&r->tracestate, v);
			r->tracestate_count++;
		}
		break;
	case 11:
		if (NAME_IS(name.p, name.len, "traceparent")) {
			keep_first(&r->traceparent, v);
			r->traceparent_count++;
		}
		break;
	case 12:
		if (NAME_IS(name.p, name.len, "content-type"))
			keep_first(&r->content_type, v);
		else if (NAME_IS(name.p, name.len, "x-request-id"))
			keep_first(&r->x_request_id, v);
		break;
	}
}

/* Parse the header fields starting at @p up to and including the empty line.
 * @field is called for each one (framing fields too). Returns the byte after
 * the empty line, or NULL with the code in *ret_code; *ret_blank is the
 * offset of the empty line. Always inlined so that @field is a direct call. */
static inline __attribute__((always_inline)) const char *
parse_fields(const char *buf, const char *p, const char *end, size_t len, struct framing *f,
	     void *ctx, void (*field)(void *ctx, struct osh_str name, struct osh_str v),
	     size_t *ret_blank, int *ret_code)
{
	for (;;) {
		const char *eol;
		const char *next = next_line(buf, p, end, &eol);
		struct osh_str name;
		struct osh_str v;

		if (!next) {
			*ret_code = out_of_bytes(len);
			return NULL;
		}
		if (eol == p) {
			*ret_blank = (size_t)(p - buf);
			return next;
		}
		/* A line starting with whitespace is obs-fold (or junk between the
		 * start line and the fields): RFC 9112, 5.2 lets us reject it, and
		 * anything else invites smuggling. */
		if (!split_field(p, eol, &name, &v) || !framing_field(f, name, v)) {
			*ret_code = OSH_HTTP_INVALID;
			return NULL;
		}
		field(ctx, name, v);
		p = next;
	}
}

static void request_field_cb(void *ctx, struct osh_str name, struct osh_str v)
{
	request_field(ctx, name, v);
}

/* "HTTP/1." DIGIT at @p, with exactly @n bytes available for it. */
static bool parse_version(const char *p, size_t n, int *ret_minor)
{
	if (n < 8 || memcmp(p, "HTTP/1.", 7) != 0 || !is_digit((unsigned char)p[7]))
		return false;
	*ret_minor = p[7] - '0';
	return true;
}

int osh_http_parse_request(struct osh_http_request *ret, const char *buf, size_t len)
{
	struct osh_http_request *r = ret;
	struct framing f = { 0 };
	const char *end = buf + head_limit(len);
	const char *p = buf;
	const char *eol;
	const char *next;
	const char *q;
	int code;

	/* An empty read may come with a NULL buffer: keep it away from memchr. */
	if (len == 0)
		return OSH_HTTP_PARTIAL;
	/* Filled in place (a copy of this struct cost ~70 instructions a
	 * request); the caller ignores it unless the head parsed. */
	memset(r, 0, sizeof(*r));
	next = next_line(buf, p, end, &eol);
	if (!next)
		return out_of_bytes(len);

	/* method SP request-target SP HTTP-version */
	q = token_end(p);	/* *eol is CR or LF: no token character */
	if (q == p || q == eol || *q != ' ')
		return OSH_HTTP_INVALID;
	r->method = (struct osh_str){ .p = p, .len = (size_t)(q - p) };
	p = ++q;
	q = target_end(q);	/* stops at SP, or at the CR/LF at *eol */
	if (q == p || q == eol || *q != ' ')
		return OSH_HTTP_INVALID;
	r->target = (struct osh_str){ .p = p, .len = (size_t)(q - p) };
	q++;
	if (eol - q != 8 || !parse_version(q, 8, &r->minor_version))
		return OSH_HTTP_INVALID;
	r->line_len = (size_t)(next - buf);

	p = parse_fields(buf, next, end, len, &f, r, request_field_cb, &r->blank_line_off, &code);
	if (!p)
		return code;
	r->head_len = (size_t)(p - buf);

	r->connection_close = f.close;
	if (f.te_seen) {
		/* A request body ending in another coding has no knowable end. */
		if (!f.te_chunked)
			return OSH_HTTP_INVALID;
		r->body = OSH_BODY_CHUNKED;
	} else if (f.cl_seen) {
		r->body = OSH_BODY_LENGTH;
		r->content_length = f.cl;
	} else {
		r->body = OSH_BODY_NONE;
	}
	return (int)r->head_len;
}

struct response_ctx {
	struct osh_http_response *r;
	bool x_request_id;	/* request_id came from x-request-id */
};

static void response_field_cb(void *opaque, struct osh_str name, struct osh_str v)
{
	struct response_ctx *ctx = opaque;
	struct osh_http_response *r = ctx->r;

	switch (name.len) {
	case 10:
		if (NAME_IS(name.p, name.len, "request-id"))
			keep_first(&r->request_id, v);
		break;
	case 11:
		if (NAME_IS(name.p, name.len, "retry-after"))
			keep_first(&r->retry_after, v);
		break;
	case 12:
		if (NAME_IS(name.p, name.len, "content-type")) {
			keep_first(&r->content_type, v);
		} else if (NAME_IS(name.p, name.len, "x-request-id") && !ctx->x_request_id) {
			/* x-request-id wins over a request-id seen earlier. */
			r->request_id = v;
			ctx->x_request_id = true;
		}
		break;
	case 16:
		if (NAME_IS(name.p, name.len, "content-encoding"))
			keep_first(&r->content_encoding, v);
		break;
	}
}

/* The name of a response field line at @p: up to its colon, no byte
 * below '!', DEL or above (which also catches a line without a colon, and
 * obs-fold). Looser than the request side's tchar rule on purpose: the
 * program reading the response decides what it accepts, and this only
 * has to find framing and a few fields. 1: *ret_colon is the colon; 0: the
 * line goes on past @end; -1: not a field line. */
static inline int response_name(const char *p, const char *end, const char **ret_colon)
{
	const char *q = p;

#ifdef __SSE2__
	const __m128i colon = _mm_set1_epi8(':');
	const __m128i bang = _mm_set1_epi8('!');
	const __m128i del = _mm_set1_epi8(0x7f);

	while (end - q >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)q);
		unsigned cm = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, colon));
		/* Signed compare: bytes >= 0x80 are negative, below '!' too. */
		unsigned bm = (unsigned)_mm_movemask_epi8(
			_mm_or_si128(_mm_cmplt_epi8(v, bang), _mm_cmpeq_epi8(v, del)));

		if (cm | bm) {
			unsigned at = cm ? (unsigned)__builtin_ctz(cm) : 16;

			if (bm & ((1u << at) - 1) || at == 16)
				return -1;
			q += at;
			if (q == p)
				return -1;
			*ret_colon = q;
			return 1;
		}
		q += 16;
	}
#endif
	for (; q < end; q++) {
		unsigned char c = (unsigned char)*q;

		if (c == ':') {
			if (q == p)
				return -1;
			*ret_colon = q;
			return 1;
		}
		if (c < '!' || c >= 0x7f)
			return -1;
	}
	return 0;
}

/* The field lines of a response head from @p: framing and the fields
 * osh_http_response reports. Lines whose name has another length are only
 * stepped over. Returns the byte after the empty line, or NULL with the
 * code in *ret_code. */
static const char *response_fields(const char *buf, const char *p, const char *end, size_t len,
				   struct framing *f, struct response_ctx *ctx, int *ret_code)
{
	for (;;) {
		const char *colon, *eol, *next;
		struct osh_str name, v;
		int r;

		if (p < end && (*p == '\n' || *p == '\r')) {
			next = next_line(buf, p, end, &eol);
			if (!next)
				break;
			if (eol != p) {
				*ret_code = OSH_HTTP_INVALID;
				return NULL;
			}
			return next;
		}
		r = response_name(p, end, &colon);
		if (r < 0) {
			*ret_code = OSH_HTTP_INVALID;
			return NULL;
		}
		if (r == 0)
			break;
		next = next_line(buf, colon + 1, end, &eol);
		if (!next)
			break;
		name = (struct osh_str){ .p = p, .len = (size_t)(colon - p) };
		switch (name.len) {
		case 10: case 11: case 12: case 14: case 16: case 17:
			v = trim_value(colon + 1, eol);
			if (!framing_field(f, name, v)) {
				*ret_code = OSH_HTTP_INVALID;
				return NULL;
			}
			response_field_cb(ctx, name, v);
			break;
		default:
			break;
		}
		p = next;
	}
	*ret_code = out_of_bytes(len);
	return NULL;
}

/* The start of a response head at @buf (@len bytes, looked at up to
 * @end): *@r cleared in place (as for requests), then its version and
 * status from the status line. The byte after that line, or NULL with
 * *@ret_code set (PARTIAL: no whole line yet; INVALID: not a status line). */
static inline __attribute__((always_inline)) const char *
response_start(struct osh_http_response *r, const char *buf, size_t len,
	       const char *end, int *ret_code)
{
	const char *eol;
	const char *next;
	size_t n;

	*ret_code = OSH_HTTP_PARTIAL;
	/* An empty write may come with a NULL buffer. */
	if (len == 0)
		return NULL;
	memset(r, 0, sizeof(*r));
	next = next_line(buf, buf, end, &eol);
	if (!next) {
		*ret_code = out_of_bytes(len);
		return NULL;
	}
	/* HTTP-version SP 3DIGIT [SP reason]: the reason may be empty, or
	 * missing along with its SP (seen in the wild, RFC 9112 4 tolerates). */
	n = (size_t)(eol - buf);
	*ret_code = OSH_HTTP_INVALID;
	if (!parse_version(buf, n, &r->minor_version) || n < 12 || buf[8] != ' ')
		return NULL;
	if (buf[9] < '1' || buf[9] > '9' || !is_digit((unsigned char)buf[10]) ||
	    !is_digit((unsigned char)buf[11]))
		return NULL;
	if (n > 12 && buf[12] != ' ')
		return NULL;
	r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	return next;
}

/* A response's framing from its fields (@f), its head ending at @head_end. */
static int response_framing(struct osh_http_response *r, const struct framing *f,
			    const char *buf, const char *head_end)
{
	r->head_len = (size_t)(head_end - buf);
	r->connection_close = f->close;
	if (f->te_seen) {
		/* Transfer-Encoding overrides Content-Length; a last coding other
		 * than chunked is delimited by close (RFC 9112, 6.3). */
		r->body = f->te_chunked ? OSH_BODY_CHUNKED : OSH_BODY_UNTIL_CLOSE;
	} else if (f->cl_seen) {
		r->body = OSH_BODY_LENGTH;
		r->content_length = f->cl;
	} else {
		r->body = OSH_BODY_UNTIL_CLOSE;
	}
	return (int)r->head_len;
}

int osh_http_parse_response(struct osh_http_response *ret, const char *buf, size_t len)
{
	struct osh_http_response *r = ret;
	struct response_ctx ctx = { .r = r };
	struct framing f = { 0 };
	const char *end = buf + head_limit(len);
	const char *next;
	const char *p;
	int code;

	next = response_start(r, buf, len, end, &code);
	if (!next)
		return code;
	p = response_fields(buf, next, end, len, &f, &ctx, &code);
	if (!p)
		return code;
	return response_framing(r, &f, buf, p);
}

/* One field line from @p (starting with c or t, in either case) of a head
 * the program wrote: framing if it is a framing field.
 * NULL with *ret_code set when the line is not complete in [@p, @end) or
 * its framing is invalid; else the line's LF. value_is() rather than
 * name_is(): names are not validated here, and it keeps control bytes from
 * passing for letters. */
static inline const char *framing_line(struct framing *f, const char *lo, const char *p,
				       const char *end, size_t len, int *ret_code)
{
	const char *eol;
	const char *next = next_line(lo, p, end, &eol);
	size_t n;
	bool ok = true;

	if (!next) {
		*ret_code = out_of_bytes(len);
		return NULL;
	}
	n = (size_t)(eol - p);
	if (((unsigned char)*p | 0x20) == 'c') {
		if (n > 14 && p[14] == ':' && value_is(p, 14, "content-length", 14))
			ok = framing_content_length(f, trim_value(p + 15, eol));
		else if (n > 10 && p[10] == ':' && value_is(p, 10, "connection", 10))
			framing_connection(f, trim_value(p + 11, eol));
	} else if (n > 17 && p[17] == ':' && value_is(p, 17, "transfer-encoding", 17)) {
		framing_transfer_encoding(f, trim_value(p + 18, eol));
	}
	if (!ok) {
		*ret_code = OSH_HTTP_INVALID;
		return NULL;
	}
	return next - 1;
}

/* The byte after @lf (an LF in [lo, end)) starts a line that matters to
 * framing: a possible framing field (c, t in either case) or the empty
 * line (CR or LF). */
static inline bool line_matters(const char *lf, const char *end)
{
	unsigned char c;

	if (lf + 1 >= end)
		return true;	/* not known yet: the scalar path decides */
	c = (unsigned char)lf[1];
	return (c | 0x20) == 'c' || (c | 0x20) == 't' || c == '\r' || c == '\n';
}

int osh_http_scan_response_head(struct osh_http_response *ret, const char *buf, size_t len)
{
	struct osh_http_response *r = ret;
	struct framing f = { 0 };
	const char *end = buf + head_limit(len);
	const char *p;
	int code;

	p = response_start(r, buf, len, end, &code);
	if (!p)
		return code;
	p--;	/* the status line's LF: every line starts after an LF */

	/* Only the lines after an LF followed by c, t, CR or LF can matter:
	 * each 16-byte block gives those LFs at once (the block and the same
	 * block one byte on), and every other line is passed over unread. */
	while (p < end) {
#ifdef __SSE2__
		if (end - p >= 17) {
			const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
			const __m128i w = _mm_loadu_si128((const __m128i *)(const void *)(p + 1));
			const __m128i wl = _mm_or_si128(w, _mm_set1_epi8(0x20));
			const __m128i next =
				_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(wl, _mm_set1_epi8('c')),
							  _mm_cmpeq_epi8(wl, _mm_set1_epi8('t'))),
					     _mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8('\r')),
							  _mm_cmpeq_epi8(w, _mm_set1_epi8('\n'))));

			unsigned m = (unsigned)_mm_movemask_epi8(
				_mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\n')), next));
			if (!m) {
				p += 16;
				continue;
			}
			p += __builtin_ctz(m);
		} else
#endif
		{
			/* The last bytes (and every byte without SSE2): one LF at
			 * a time. */
			const char *lf = memchr(p, '\n', (size_t)(end - p));

			if (!lf)
				break;
			p = lf;
			if (!line_matters(p, end)) {
				p++;
				continue;
			}
		}
		/* @p is an LF whose next line matters. */
		if (p + 1 >= end)
			break;
		if (p[1] == '\n')
			return response_framing(r, &f, buf, p + 2);
		if (p[1] == '\r') {
			if (p + 2 >= end)
				break;
			if (p[2] == '\n')
				return response_framing(r, &f, buf, p + 3);
			p++;	/* a stray CR starting a line: not a field */
			continue;
		}
		p = framing_line(&f, buf, p + 1, end, len, &code);
		if (!p)
			return code;
	}
	return out_of_bytes(len);
}

enum osh_http_body_kind osh_http_response_body(const struct osh_http_response *resp,
					       const char *method, size_t method_len)
{
	bool connect = method && method_len == 7 && memcmp(method, "CONNECT", 7) == 0;
	bool head = method && method_len == 4 && memcmp(method, "HEAD", 4) == 0;
	int status = resp->status;

	/* After 101 the bytes belong to the new protocol, whatever the method. */
	if (status == 101)
		return OSH_BODY_TUNNEL;
	if (connect && status >= 200 && status < 300)
		return OSH_BODY_TUNNEL;
	if (head || status < 200 || status == 204 || status == 304)
		return OSH_BODY_NONE;
	return resp->body;
}

/* Chunked decoder states (RFC 9112, 7.1). */
enum chunk_state {
	CH_SIZE_FIRST = 0,	/* first hex digit of a chunk-size */
	CH_SIZE,		/* more hex digits, or what ends them */
	CH_EXT,			/* chunk extensions, up to LF */
	CH_SIZE_LF,		/* LF after the size line's CR */
	CH_DATA,		/* chunk payload */
	CH_DATA_CR,		/* CRLF after the payload */
	CH_DATA_LF,
	CH_TRAILER_START,	/* start of a trailer field or of the final empty line */
	CH_TRAILER,		/* inside a trailer field line, up to LF */
	CH_FINAL_LF,		/* LF after the final empty line's CR */
	CH_ERROR,
};

void osh_http_body_start(struct osh_http_body *b, enum osh_http_body_kind kind,
			 uint64_t content_length)
{
	*b = (struct osh_http_body){ .kind = (uint8_t)kind, .state = CH_SIZE_FIRST };
	switch (kind) {
	case OSH_BODY_NONE:
		b->done = true;
		break;
	case OSH_BODY_LENGTH:
		b->remaining = content_length;
		b->done = content_length == 0;
		break;
	default:
		break;
	}
}

/* At a chunk boundary (the CRLF after a chunk's data, or a first size
 * line: @state), the usual framing whole in [p, end): that CRLF and a size
 * line without extensions. Taken: *state is CH_DATA, *remaining the
 * chunk's size, and the return is past it; else NULL, nothing changed
 * (another state, the last chunk, extensions, a cut line: the general
 * walker's business). The caller keeps state and size in locals (inlined:
 * registers) and clears line_len. */
static inline __attribute__((always_inline)) const char *
take_chunk_head(uint8_t *state, uint64_t *remaining, const char *p, const char *end)
{
	uint64_t size = 0;
	const char *digits, *lim;

	if (*state == CH_DATA_CR) {
		if (end - p < 2 || load16(p) != CRLF16)
			return NULL;
		p += 2;
	} else if (*state != CH_SIZE_FIRST) {
		return NULL;
	}
	/* Up to 15 digits: no overflow check needed. */
	digits = p;
	lim = end - p > 15 ? p + 15 : end;
	for (int d; p < lim && (d = osh_hex_digit((unsigned char)*p)) >= 0; p++)
		size = size << 4 | (uint64_t)d;
	if (p == digits || !size || end - p < 2 || load16(p) != CRLF16)
		return NULL;
	*remaining = size;
	*state = CH_DATA;
	return p + 2;
}

/* The size line is over: a zero size starts the trailer section. */
static void chunk_size_done(struct osh_http_body *b)
{
	b->line_len = 0;
	b->state = b->remaining ? CH_DATA : CH_TRAILER_START;
}

/* Skip the rest of a line (chunk extension, trailer field) of at most @max
 * bytes in all, across calls. 1: *pp is past its LF; 0: the line goes on
 * beyond @end; -1: longer than @max. */
static int skip_line(struct osh_http_body *b, const char **pp, const char *end, size_t max)
{
	size_t room = max - b->line_len;
	size_t avail = (size_t)(end - *pp);
	const char *nl = memchr(*pp, '\n', avail < room + 1 ? avail : room + 1);

	if (!nl) {
		if (avail > room)
			return -1;
		b->line_len += (uint32_t)avail;
		*pp = end;
		return 0;
	}
	*pp = nl + 1;
	return 1;
}

static ssize_t feed_chunked(struct osh_http_body *b, const char *buf, size_t len)
{
	const char *p = buf;
	const char *end = buf + len;

	while (p < end) {
		unsigned char c;
		int d;

		/* A chunk's end and the next one's size line, whole: at once
		 * (a stream of small chunks is mostly these). */
		if (b->state == CH_DATA_CR || b->state == CH_SIZE_FIRST) {
			const char *q = take_chunk_head(&b->state, &b->remaining, p, end);

			if (q) {
				b->line_len = 0;
				p = q;
				continue;
			}
		}
		switch (b->state) {
		case CH_SIZE_FIRST:
			d = osh_hex_digit((unsigned char)*p++);
			if (d < 0)
				goto invalid;
			b->remaining = (uint64_t)d;
			b->line_len = 1;
			b->state = CH_SIZE;
			break;
		case CH_SIZE:
			c = (unsigned char)*p++;
			if (++b->line_len > CHUNK_LINE_MAX)
				goto invalid;
			d = osh_hex_digit((unsigned char)c);
			if (d >= 0) {
				if (b->remaining >> 60)
					goto invalid; /* would overflow 64 bits */
				b->remaining = b->remaining << 4 | (uint64_t)d;
			} else if (c == '\r') {
				b->state = CH_SIZE_LF;
			} else if (c == '\n') {
				chunk_size_done(b);
			} else if (c == ';' || is_ows(c)) {
				/* Extensions (and the BWS before them) carry nothing
				 * we need. */
				b->state = CH_EXT;
			} else {
				goto invalid;
			}
			break;
		case CH_EXT: {
			int r = skip_line(b, &p, end, CHUNK_LINE_MAX);

			if (r < 0)
				goto invalid;
			if (r > 0)
				chunk_size_done(b);
			break;
		}
		case CH_SIZE_LF:
			if (*p++ != '\n')
				goto invalid;
			chunk_size_done(b);
			break;
		case CH_DATA: {
			size_t avail = (size_t)(end - p);
			size_t n = b->remaining < avail ? (size_t)b->remaining : avail;

			p += n;
			b->payload += n;
			b->remaining -= n;
			if (!b->remaining)
				b->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			c = (unsigned char)*p++;
			if (c == '\r')
				b->state = CH_DATA_LF;
			else if (c == '\n')
				b->state = CH_SIZE_FIRST;
			else
				goto invalid;
			break;
		case CH_DATA_LF:
			if (*p++ != '\n')
				goto invalid;
			b->state = CH_SIZE_FIRST;
			break;
		case CH_TRAILER_START:
			c = (unsigned char)*p;
			if (c == '\n') {
				p++;
				goto done;
			}
			if (c == '\r') {
				p++;
				b->state = CH_FINAL_LF;
			} else {
				b->line_len = 0;
				b->state = CH_TRAILER;
			}
			break;
		case CH_TRAILER: {
			int r = skip_line(b, &p, end, TRAILER_LINE_MAX);

			if (r < 0)
				goto invalid;
			if (r > 0)
				b->state = CH_TRAILER_START;
			break;
		}
		case CH_FINAL_LF:
			if (*p++ != '\n')
				goto invalid;
			goto done;
		default:
			goto invalid;
		}
	}
	return p - buf;

done:
	b->done = true;
	return p - buf;
invalid:
	b->state = CH_ERROR;
	return OSH_HTTP_INVALID;
}

ssize_t osh_http_body_feed(struct osh_http_body *b, const char *buf, size_t len)
{
	if (b->done)
		return 0;
	/* The count must fit the return type; the caller feeds the rest next. */
	if (len > SSIZE_MAX)
		len = SSIZE_MAX;

	switch (b->kind) {
	case OSH_BODY_LENGTH: {
		size_t n = b->remaining < len ? (size_t)b->remaining : len;

		b->remaining -= n;
		b->payload += n;
		if (!b->remaining)
			b->done = true;
		return (ssize_t)n;
	}
	case OSH_BODY_CHUNKED:
		return feed_chunked(b, buf, len);
	case OSH_BODY_UNTIL_CLOSE:
	case OSH_BODY_TUNNEL:
		b->payload += len;
		return (ssize_t)len;
	case OSH_BODY_NONE:
		b->done = true;
		return 0;
	default:
		return OSH_HTTP_INVALID;
	}
}

size_t osh_http_body_next_chunk(struct osh_http_body *b, const char *buf, size_t len)
{
	const char *p;

	if (b->kind != OSH_BODY_CHUNKED || b->done)
		return 0;
	p = take_chunk_head(&b->state, &b->remaining, buf, buf + len);
	if (!p)
		return 0;
	b->line_len = 0;
	return (size_t)(p - buf);
}

size_t osh_http_body_copy_payload(struct osh_http_body *b, const char *buf, size_t len,
				  char *dst, size_t cap, size_t *ret_copied)
{
	const char *p = buf, *end = buf + len;
	size_t w = 0;

	*ret_copied = 0;
	if (b->done || !cap)
		return 0;
	if (b->kind == OSH_BODY_LENGTH || b->kind == OSH_BODY_UNTIL_CLOSE ||
	    b->kind == OSH_BODY_TUNNEL) {
		size_t k = len < cap ? len : cap;

		if (b->kind == OSH_BODY_LENGTH && b->remaining < k)
			k = (size_t)b->remaining;
		if (!k || !osh_http_body_skip(b, k))
			return 0;
		memcpy(dst, buf, k);
		*ret_copied = k;
		return k;
	}
	if (b->kind != OSH_BODY_CHUNKED)
		return 0;
	/* The walker's state in locals: the copies would otherwise make the
	 * compiler reload it for every chunk. */
	uint8_t state = b->state;
	uint64_t remaining = b->remaining;

	while (p < end && w < cap) {
		if (state == CH_DATA) {
			size_t avail = (size_t)(end - p);
			size_t k = remaining < avail ? (size_t)remaining : avail;

			if (k > cap - w)
				k = cap - w;
			memcpy(dst + w, p, k);
			w += k;
			p += k;
			remaining -= k;
			if (!remaining)
				state = CH_DATA_CR;
			continue;
		}
		/* The CRLF after a chunk and the next size line, whole:
		 * anything else is the walker's. */
		const char *q = take_chunk_head(&state, &remaining, p, end);

		if (!q)
			break;
		b->line_len = 0;
		p = q;
	}
	b->state = state;
	b->remaining = remaining;
	b->payload += w;
	*ret_copied = w;
	return (size_t)(p - buf);
}

uint64_t osh_http_body_payload_ahead(const struct osh_http_body *b)
{
	if (b->done)
		return 0;
	switch (b->kind) {
	case OSH_BODY_LENGTH:
		return b->remaining;
	case OSH_BODY_CHUNKED:
		return b->state == CH_DATA ? b->remaining : 0;
	case OSH_BODY_UNTIL_CLOSE:
	case OSH_BODY_TUNNEL:
		return UINT64_MAX;
	default:
		return 0;
	}
}

bool osh_http_body_skip(struct osh_http_body *b, uint64_t n)
{
	if (!n)
		return true;
	if (b->done)
		return false;

	switch (b->kind) {
	case OSH_BODY_LENGTH:
		if (n > b->remaining)
			return false;
		b->remaining -= n;
		b->payload += n;
		if (!b->remaining)
			b->done = true;
		return true;
	case OSH_BODY_CHUNKED:
		/* Only chunk data can be counted blind: in CH_DATA, remaining
		 * is never 0 (chunk_size_done), and its end hands over to the
		 * CRLF that feed_chunked would expect next. */
		if (b->state != CH_DATA || n > b->remaining)
			return false;
		b->remaining -= n;
		b->payload += n;
		if (!b->remaining)
			b->state = CH_DATA_CR;
		return true;
	case OSH_BODY_UNTIL_CLOSE:
	case OSH_BODY_TUNNEL:
		b->payload += n;
		return true;
	default:
		return false;
	}
}

size_t osh_http_join_field(const char *head, size_t head_len, const char *lowercase_name,
			   char *out, size_t outsz)
{
	const char *end = head + head_len;
	const char *p;
	const char *eol;
	size_t name_len;
	size_t n = 0;

	if (!outsz)
		return 0;
	out[0] = '\0';
	if (!head || !head_len || !lowercase_name)
		return 0;
	name_len = strlen(lowercase_name);

	/* The start line carries no field; the empty line ends the fields. A
	 * line that is no field (the head was not one the parsers accept) is
	 * skipped rather than trusted. */
	p = next_line(head, head, end, &eol);
	while (p && p < end) {
		const char *next = next_line(head, p, end, &eol);
		struct osh_str name;
		struct osh_str v;

		if (!next || eol == p)
			break;
		if (split_field(p, eol, &name, &v) && v.len &&
		    ieq(name.p, name.len, lowercase_name, name_len)) {
			size_t sep = n ? 1 : 0;

			if (sep + v.len > outsz - 1 - n)
				break;
			if (sep)
				out[n++] = ',';
			memcpy(out + n, v.p, v.len);
			n += v.len;
		}
		p = next;
	}
	out[n] = '\0';
	return n;
}
