/* W3C Trace Context Level 2 and W3C Baggage (see propagation.h; the rules
 * and their sources are summarised in the project's propagation reference).
 *
 * Everything here except osh_env_ctx_load() works on caller-owned buffers
 * and never allocates: traceparent parsing runs on app threads for every
 * request that carries one.
 */
#include "buildconf.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "propagation.h"

struct osh_env_ctx osh_env_ctx;

#define TS_MAX_MEMBERS	    32
#define TS_MAX_KEY	    256
#define TS_MAX_VALUE	    256
#define TS_LONG_MEMBER	    128
#define BAGGAGE_MAX_MEMBERS 64
#define BAGGAGE_MAX_BYTES   8192

/* Lowercase hex digit -> 0x10 | value, anything else (uppercase included,
 * which traceparent forbids) -> 0. AND-ing the entries of a whole field
 * keeps bit 0x10 only if every character was valid: one test per field
 * instead of a branch per character. */
static const uint8_t hexval[256] = {
	['0'] = 0x10, ['1'] = 0x11, ['2'] = 0x12, ['3'] = 0x13, ['4'] = 0x14, ['5'] = 0x15,
	['6'] = 0x16, ['7'] = 0x17, ['8'] = 0x18, ['9'] = 0x19, ['a'] = 0x1a, ['b'] = 0x1b,
	['c'] = 0x1c, ['d'] = 0x1d, ['e'] = 0x1e, ['f'] = 0x1f,
};

static inline bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static void trim_ows(const char **s, size_t *len)
{
	while (*len > 0 && is_ows((*s)[0])) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && is_ows((*s)[*len - 1]))
		(*len)--;
}

/* 2n lowercase hex characters into n bytes; false if any is not one. */
static bool hex_decode(const char *s, size_t n, uint8_t *out)
{
	unsigned int ok = 0x10;

	for (size_t i = 0; i < n; i++) {
		uint8_t hi = hexval[(uint8_t)s[2 * i]];
		uint8_t lo = hexval[(uint8_t)s[2 * i + 1]];

		ok &= hi & lo;
		out[i] = (uint8_t)((hi << 4) | (lo & 0x0f));
	}
	return ok & 0x10;
}

static bool all_zero(const uint8_t *b, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= b[i];
	return acc == 0;
}

/* Layout: "vv-" + 32 hex + "-" + 16 hex + "-" + "ff" = 55 characters. */
#define TP_TRACE 3
#define TP_SPAN	 36
#define TP_FLAGS 53

bool osh_traceparent_parse(const char *s, size_t len, struct osh_trace_ctx *ret)
{
	uint8_t version, flags, trace_id[16], span_id[8];

	trim_ows(&s, &len);
	/* Every version needs at least the 55 characters of version 00. */
	if (len < OSH_TRACEPARENT_LEN)
		return false;
	if (s[2] != '-' || s[TP_SPAN - 1] != '-' || s[TP_FLAGS - 1] != '-')
		return false;
	if (!hex_decode(s, 1, &version) || version == 0xff)
		return false;
	/* Version 00 allows no trailing data; a future version may append
	 * fields, but only after a '-' that ends the flags. */
	if (version == 0 ? len != OSH_TRACEPARENT_LEN
			 : len > OSH_TRACEPARENT_LEN && s[OSH_TRACEPARENT_LEN] != '-')
		return false;
	if (!hex_decode(s + TP_TRACE, 16, trace_id) || !hex_decode(s + TP_SPAN, 8, span_id) ||
	    !hex_decode(s + TP_FLAGS, 1, &flags))
		return false;
	if (all_zero(trace_id, 16) || all_zero(span_id, 8))
		return false;

	memcpy(ret->trace_id, trace_id, 16);
	memcpy(ret->span_id, span_id, 8);
	/* Bits 2-7 are undefined: never keep (and so never re-emit) them. */
	ret->flags = flags & (OSH_FLAG_SAMPLED | OSH_FLAG_RANDOM);
	ret->valid = true;
	ret->remote = true;
	return true;
}

void osh_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
			    char out[OSH_TRACEPARENT_LEN])
{
	uint8_t f = flags & (OSH_FLAG_SAMPLED | OSH_FLAG_RANDOM);

	out[0] = '0';
	out[1] = '0';
	out[2] = '-';
	osh_hex_encode(trace_id, 16, out + TP_TRACE);
	out[TP_SPAN - 1] = '-';
	osh_hex_encode(span_id, 8, out + TP_SPAN);
	out[TP_FLAGS - 1] = '-';
	osh_hex_encode(&f, 1, out + TP_FLAGS);
}

/* Iterates the ','-separated members of s[0..len), each trimmed of OWS
 * (possibly empty). *pos starts at 0; returns false after the last one. */
static bool next_member(const char *s, size_t len, size_t *pos, const char **ret_m, size_t *ret_n)
{
	const char *m, *comma;
	size_t n;

	if (*pos > len)
		return false;
	/* (NULL, 0) is a valid empty input: neither offset nor memchr() it. */
	m = len ? s + *pos : s;
	n = len - *pos;
	comma = n ? memchr(m, ',', n) : NULL;
	if (comma)
		n = (size_t)(comma - m);
	*pos += n + 1;
	trim_ows(&m, &n);
	*ret_m = m;
	*ret_n = n;
	return true;
}

static inline bool is_lcalpha(uint8_t c)
{
	return c >= 'a' && c <= 'z';
}

static inline bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static inline bool is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool ts_keychar(uint8_t c)
{
	return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/' ||
	       c == '@';
}

/* chr = %x20 / nblk-chr: printable ASCII except ',' and '='. The value's
 * last character cannot be a space because members arrive OWS-trimmed. */
static bool ts_valchar(uint8_t c)
{
	return c >= 0x20 && c <= 0x7e && c != ',' && c != '=';
}

/* One non-empty, trimmed member: key "=" value (Level 2 key grammar). */
static bool ts_member_valid(const char *m, size_t n)
{
	const char *eq = memchr(m, '=', n);
	size_t klen, vlen;

	if (!eq)
		return false;
	klen = (size_t)(eq - m);
	vlen = n - klen - 1;
	if (klen == 0 || klen > TS_MAX_KEY || vlen == 0 || vlen > TS_MAX_VALUE)
		return false;
	if (!is_lcalpha((uint8_t)m[0]) && !is_digit((uint8_t)m[0]))
		return false;
	for (size_t i = 1; i < klen; i++)
		if (!ts_keychar((uint8_t)m[i]))
			return false;
	for (size_t i = 0; i < vlen; i++)
		if (!ts_valchar((uint8_t)eq[1 + i]))
			return false;
	return true;
}

bool osh_tracestate_valid(const char *s, size_t len)
{
	size_t pos = 0, n, count = 0;
	const char *m;

	while (next_member(s, len, &pos, &m, &n)) {
		if (n == 0)
			continue;
		if (++count > TS_MAX_MEMBERS || !ts_member_valid(m, n))
			return false;
	}
	return true;
}

struct slice {
	const char *p;
	size_t n;
};

static size_t joined_len(const struct slice *m, size_t count)
{
	size_t total = count ? count - 1 : 0;

	for (size_t i = 0; i < count; i++)
		total += m[i].n;
	return total;
}

size_t osh_tracestate_truncate(const char *s, size_t len, char *out, size_t max)
{
	struct slice m[TS_MAX_MEMBERS];
	size_t pos = 0, count = 0, w = 0;
	const char *p;
	size_t n;

	if (!osh_tracestate_valid(s, len))
		return 0;
	while (next_member(s, len, &pos, &p, &n)) {
		if (n > 0)
			m[count++] = (struct slice){p, n};
	}

	/* The spec's only truncation strategy: drop members longer than 128
	 * chars first, then members from the right end. We drop long members
	 * one at a time, rightmost first, and stop as soon as the rest fits so
	 * that no more is lost than needed. */
	while (count > 0 && joined_len(m, count) > max) {
		size_t victim = count - 1;

		for (size_t i = count; i-- > 0;) {
			if (m[i].n > TS_LONG_MEMBER) {
				victim = i;
				break;
			}
		}
		memmove(&m[victim], &m[victim + 1], (count - victim - 1) * sizeof(m[0]));
		count--;
	}

	for (size_t i = 0; i < count; i++) {
		if (i > 0)
			out[w++] = ',';
		memcpy(out + w, m[i].p, m[i].n);
		w += m[i].n;
	}
	return w;
}

/* RFC 7230 tchar. */
static bool is_tchar(uint8_t c)
{
	if (is_alpha(c) || is_digit(c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* baggage-octet: printable ASCII except SP, '"', ',', ';', '\'. */
static bool is_baggage_octet(uint8_t c)
{
	return c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) ||
	       (c >= 0x3c && c <= 0x5b) || (c >= 0x5d && c <= 0x7e);
}

static size_t skip_ows(const char *m, size_t n, size_t i)
{
	while (i < n && is_ows(m[i]))
		i++;
	return i;
}

static size_t skip_tchars(const char *m, size_t n, size_t i)
{
	while (i < n && is_tchar((uint8_t)m[i]))
		i++;
	return i;
}

static size_t skip_octets(const char *m, size_t n, size_t i)
{
	while (i < n && is_baggage_octet((uint8_t)m[i]))
		i++;
	return i;
}

/* One trimmed member: key OWS "=" OWS value *( OWS ";" OWS property ), with
 * property = key OWS "=" OWS value / key. The value runs to the first
 * character that is not a baggage-octet, so "k=a=b" has value "a=b". */
static bool bg_member_parse(const char *m, size_t n, struct slice *ret_key, struct slice *ret_value)
{
	size_t i, k_end, v_start, v_end;

	k_end = skip_tchars(m, n, 0);
	if (k_end == 0)
		return false;
	i = skip_ows(m, n, k_end);
	if (i >= n || m[i] != '=')
		return false;
	v_start = skip_ows(m, n, i + 1);
	v_end = skip_octets(m, n, v_start);
	i = skip_ows(m, n, v_end);
	while (i < n) {
		size_t p_start;

		if (m[i] != ';')
			return false;
		p_start = skip_ows(m, n, i + 1);
		i = skip_tchars(m, n, p_start);
		if (i == p_start)
			return false;
		i = skip_ows(m, n, i);
		if (i < n && m[i] == '=') {
			i = skip_octets(m, n, skip_ows(m, n, i + 1));
			i = skip_ows(m, n, i);
		}
	}
	*ret_key = (struct slice){m, k_end};
	*ret_value = (struct slice){m + v_start, v_end - v_start};
	return true;
}

bool osh_baggage_valid(const char *s, size_t len)
{
	size_t pos = 0, n, count = 0;
	struct slice key, value;
	const char *m;

	if (len > BAGGAGE_MAX_BYTES)
		return false;
	while (next_member(s, len, &pos, &m, &n)) {
		if (++count > BAGGAGE_MAX_MEMBERS || !bg_member_parse(m, n, &key, &value))
			return false;
	}
	return true;
}

size_t osh_baggage_sanitize(const char *s, size_t len, char *out, size_t outsz)
{
	size_t pos = 0, n, count = 0, w = 0, cap;
	struct slice key, value;
	const char *m;

	if (outsz == 0)
		return 0;
	cap = outsz - 1 < BAGGAGE_MAX_BYTES ? outsz - 1 : BAGGAGE_MAX_BYTES;
	while (count < BAGGAGE_MAX_MEMBERS && next_member(s, len, &pos, &m, &n)) {
		size_t need = n + (w > 0);

		if (n == 0 || !bg_member_parse(m, n, &key, &value))
			continue;
		/* Whole members only; a later, shorter member may still fit. */
		if (w + need > cap)
			continue;
		if (w > 0)
			out[w++] = ',';
		memcpy(out + w, m, n);
		w += n;
		count++;
	}
	out[w] = '\0';
	return w;
}

int osh_baggage_get(const char *s, size_t len, const char *key, char *out, size_t outsz)
{
	size_t pos = 0, n, klen = strlen(key);
	struct slice k, v;
	const char *m;

	while (next_member(s, len, &pos, &m, &n)) {
		if (n == 0 || !bg_member_parse(m, n, &k, &v))
			continue;
		if (k.n == klen && memcmp(k.p, key, klen) == 0)
			return (int)osh_percent_decode(v.p, v.n, out,
						       outsz < INT_MAX ? outsz : INT_MAX);
	}
	return -1;
}

/* Byte stream over a percent-encoded string: "%XX" is one byte, a '%' that
 * does not start a valid escape is itself. */
struct pct_reader {
	const char *s;
	size_t len;
	size_t pos;
};

/* The next decoded byte (or -1 at the end) and where the one after starts;
 * does not advance, so the UTF-8 check can leave a byte for the next round. */
static int pct_peek(const struct pct_reader *r, size_t *ret_next)
{
	size_t p = r->pos;

	if (p >= r->len)
		return -1;
	if (r->s[p] == '%' && p + 2 < r->len) {
		int hi = osh_hex_digit((unsigned char)r->s[p + 1]);
		int lo = osh_hex_digit((unsigned char)r->s[p + 2]);

		if (hi >= 0 && lo >= 0) {
			*ret_next = p + 3;
			return (hi << 4) | lo;
		}
	}
	*ret_next = p + 1;
	return (uint8_t)r->s[p];
}

static size_t put_replacement(uint8_t buf[4])
{
	buf[0] = 0xef;
	buf[1] = 0xbf;
	buf[2] = 0xbd;
	return 3;
}

/* Decode one code point into @buf: a well-formed UTF-8 sequence (RFC 3629
 * table 3-7 ranges, so no overlongs, surrogates or values above U+10FFFF)
 * is copied; otherwise the maximal ill-formed prefix becomes one U+FFFD and
 * the byte that broke it is left for the next call (Unicode's recommended
 * "substitution of maximal subparts"). Returns the byte count in @buf. */
static size_t utf8_next(struct pct_reader *r, uint8_t buf[4])
{
	size_t next, need;
	int c = pct_peek(r, &next), lo = 0x80, hi = 0xbf;

	r->pos = next;
	if (c < 0x80) {
		buf[0] = (uint8_t)c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return put_replacement(buf);
	}
	buf[0] = (uint8_t)c;
	for (size_t i = 1; i <= need; i++) {
		int d = pct_peek(r, &next);

		if (d < lo || d > hi)
			return put_replacement(buf);
		buf[i] = (uint8_t)d;
		r->pos = next;
		lo = 0x80;
		hi = 0xbf;
	}
	return need + 1;
}

size_t osh_percent_decode(const char *s, size_t len, char *out, size_t outsz)
{
	struct pct_reader r = {s, len, 0};
	size_t w = 0;

	if (outsz == 0)
		return 0;
	while (r.pos < r.len) {
		uint8_t buf[4];
		size_t n = utf8_next(&r, buf);

		/* Truncate on a code point boundary, never inside a sequence. */
		if (w + n > outsz - 1)
			break;
		memcpy(out + w, buf, n);
		w += n;
	}
	out[w] = '\0';
	return w;
}

void osh_env_ctx_load(struct osh_env_ctx *ret, const char *traceparent, const char *tracestate,
		      const char *baggage)
{
	memset(ret, 0, sizeof(*ret));

	/* A tracestate without a valid traceparent MUST be discarded. */
	if (traceparent && osh_traceparent_parse(traceparent, strlen(traceparent), &ret->parent) &&
	    tracestate)
		ret->tracestate_len =
			osh_tracestate_truncate(tracestate, strlen(tracestate), ret->tracestate,
						sizeof(ret->tracestate) - 1);
	ret->tracestate[ret->tracestate_len] = '\0';

	/* Baggage is independent of the trace context. */
	if (baggage && baggage[0]) {
		size_t len = strlen(baggage);
		char *buf = malloc(len + 1);

		if (!buf)
			return;
		ret->baggage_len = osh_baggage_sanitize(baggage, len, buf, len + 1);
		if (ret->baggage_len == 0)
			free(buf);
		else
			ret->baggage = buf;
	}
}

void osh_env_ctx_finish(struct osh_env_ctx *ctx)
{
	free(ctx->baggage);
	ctx->baggage = NULL;
	ctx->baggage_len = 0;
	ctx->tracestate[0] = '\0';
	ctx->tracestate_len = 0;
	ctx->parent.valid = false;
}
