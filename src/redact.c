/* Redaction of credentials in URLs, query strings and single values (see
 * redact.h). Everything here runs on app threads for each sampled request:
 * one forward pass over the input, output through a bounded writer, no
 * allocation and no calls outside this file.
 *
 * osh_redact_is_secret() is anchored at the start of the value: it answers
 * "is this value a credential", not "does a credential occur somewhere in
 * it". That keeps ordinary values to a look at their first 1-4 bytes, and a
 * URL component (segment, query value) is where a credential would stand on
 * its own anyway. Patterns match the raw bytes; a percent-encoded key is not
 * decoded first. */
#define _GNU_SOURCE /* memrchr */
#include "buildconf.h"

#include <stdint.h>
#include <string.h>

#include "redact.h"

#define REDACTED     "REDACTED"
#define REDACTED_LEN (sizeof(REDACTED) - 1)

enum {
	C_DIGIT = 1 << 0,  /* 0-9 */
	C_UPPER = 1 << 1,  /* A-Z */
	C_B64URL = 1 << 2, /* A-Za-z0-9 _ - */
	C_BEARER = 1 << 3, /* RFC 6750 b64token: A-Za-z0-9 - . _ ~ + / =, and % */
	C_ALNUM = 1 << 4,  /* A-Za-z0-9 */
	C_SLACK = 1 << 5,  /* A-Za-z0-9 - */
	C_GHPAT = 1 << 6,  /* A-Za-z0-9 _ */
	C_QF = 1 << 7,	   /* ? # : end of a path */
	C_SL = 1 << 8,	   /* / : with C_QF, end of an authority */
};

#define C_LETTER (C_B64URL | C_BEARER | C_ALNUM | C_SLACK | C_GHPAT)

static const uint16_t cls[256] = {
	['0' ... '9'] = C_DIGIT | C_B64URL | C_BEARER | C_ALNUM | C_SLACK | C_GHPAT,
	['A' ... 'Z'] = C_UPPER | C_LETTER,
	['a' ... 'z'] = C_LETTER,
	['_'] = C_B64URL | C_BEARER | C_GHPAT,
	['-'] = C_B64URL | C_BEARER | C_SLACK,
	['.'] = C_BEARER,
	['~'] = C_BEARER,
	['+'] = C_BEARER,
	['/'] = C_BEARER | C_SL,
	['='] = C_BEARER,
	['%'] = C_BEARER,
	['?'] = C_QF,
	['#'] = C_QF,
};

/* Length of the run of bytes of class @c starting at @s. */
static size_t run(const char *s, size_t len, uint16_t c)
{
	size_t i = 0;

	while (i < len && (cls[(unsigned char)s[i]] & c))
		i++;
	return i;
}

static bool has_prefix(const char *s, size_t len, const char *p, size_t plen)
{
	return len >= plen && memcmp(s, p, plen) == 0;
}

static unsigned char lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool eq_nocase(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return false;
	return true;
}

/* "Bearer" (scheme names are case-insensitive, RFC 9110 §11.1), then one or
 * more separators, then a token of 8+ chars. Separators: a space, or '+' and
 * "%20" as a space reads inside a query string. */
static bool is_bearer(const char *s, size_t len)
{
	size_t i = 6;

	if (len < 6 || !eq_nocase(s, "bearer", 6))
		return false;
	for (;;) {
		if (i < len && (s[i] == ' ' || s[i] == '+'))
			i++;
		else if (len - i >= 3 && s[i] == '%' && s[i + 1] == '2' && s[i + 2] == '0')
			i += 3;
		else
			break;
	}
	if (i == 6)
		return false;
	return run(s + i, len - i, C_BEARER) >= 8;
}

/* OpenAI "sk-", "sk-proj-", Anthropic "sk-ant-": 20+ key chars after the
 * prefix. "sk-" alone, or a short suffix, is an ordinary word. */
static bool is_sk(const char *s, size_t len)
{
	size_t p;

	if (!has_prefix(s, len, "sk-", 3))
		return false;
	if (has_prefix(s, len, "sk-proj-", 8))
		p = 8;
	else if (has_prefix(s, len, "sk-ant-", 7))
		p = 7;
	else
		p = 3;
	return run(s + p, len - p, C_B64URL) >= 20;
}

/* AWS access key ids: AKIA (long-term) or ASIA (STS), then exactly 16 of
 * [A-Z0-9] ending at a token boundary; Google API keys: AIza + exactly 35
 * of [A-Za-z0-9_-], likewise. A longer run is some other identifier. */
static bool is_aws_or_google(const char *s, size_t len)
{
	size_t n;

	if (has_prefix(s, len, "AKIA", 4) || has_prefix(s, len, "ASIA", 4)) {
		n = run(s + 4, len - 4, C_DIGIT | C_UPPER);
		return n == 16 && (4 + n == len || !(cls[(unsigned char)s[4 + n]] & C_ALNUM));
	}
	if (has_prefix(s, len, "AIza", 4)) {
		n = run(s + 4, len - 4, C_B64URL);
		return n == 35;
	}
	return false;
}

/* JWS compact serialisation: header "eyJ..." (base64url of '{"'), '.',
 * a non-empty payload, '.', a signature. The signature may be empty: an
 * unsecured token (alg "none") still carries the claims, so it is treated
 * as a credential too. JWE (five parts) starts the same way and matches on
 * its first three. */
static bool is_jwt(const char *s, size_t len)
{
	size_t i, n;

	if (!has_prefix(s, len, "eyJ", 3))
		return false;
	i = 3 + run(s + 3, len - 3, C_B64URL);
	/* Well under the shortest real header: {"alg":"none"} encodes to 19. */
	if (i < 8 || i >= len || s[i] != '.')
		return false;
	i++;
	n = run(s + i, len - i, C_B64URL);
	if (n == 0)
		return false;
	i += n;
	return i < len && s[i] == '.';
}

/* GitHub: ghp_/gho_/ghu_/ghs_/ghr_ + 36 alphanumerics (GitHub may make them
 * longer, so 36 is a minimum), fine-grained github_pat_ + 22 or more. */
static bool is_github(const char *s, size_t len)
{
	if (len >= 4 && s[0] == 'g' && s[1] == 'h' && s[3] == '_') {
		switch (s[2]) {
		case 'p':
		case 'o':
		case 'u':
		case 's':
		case 'r':
			return run(s + 4, len - 4, C_ALNUM) >= 36;
		default:
			return false;
		}
	}
	if (has_prefix(s, len, "github_pat_", 11))
		return run(s + 11, len - 11, C_GHPAT) >= 22;
	return false;
}

/* Slack: xoxb-/xoxp-/xoxa-/xoxr-/xoxs- then numbered parts and a secret;
 * 10+ chars after the prefix keeps "xoxb-" on its own out. */
static bool is_slack(const char *s, size_t len)
{
	if (len < 5 || memcmp(s, "xox", 3) != 0 || s[4] != '-')
		return false;
	switch (s[3]) {
	case 'a':
	case 'b':
	case 'p':
	case 'r':
	case 's':
		return run(s + 5, len - 5, C_SLACK) >= 10;
	default:
		return false;
	}
}

bool osh_redact_is_secret(const char *s, size_t len)
{
	if (len < 8)
		return false;
	/* The first byte picks the only pattern(s) that can apply. */
	switch (s[0]) {
	case 'A':
		return is_aws_or_google(s, len);
	case 'B':
	case 'b':
		return is_bearer(s, len);
	case 'e':
		return is_jwt(s, len);
	case 'g':
		return is_github(s, len);
	case 's':
		return is_sk(s, len);
	case 'x':
		return is_slack(s, len);
	default:
		return false;
	}
}

/* Output through a bounded writer: bytes past outsz - 1 are dropped, and
 * the buffer is NUL-terminated whenever outsz > 0. Callers stop producing
 * once it is full, which also bounds the work on a huge input. */
struct wr {
	char *out;
	size_t cap; /* usable bytes: outsz - 1 */
	size_t len;
};

static void wr_init(struct wr *w, char *out, size_t outsz)
{
	w->out = out;
	w->cap = outsz ? outsz - 1 : 0;
	w->len = 0;
}

static bool wr_full(const struct wr *w)
{
	return w->len >= w->cap;
}

static void put(struct wr *w, const char *s, size_t n)
{
	size_t room = w->cap - w->len;

	if (n == 0 || room == 0)
		return;
	if (n > room)
		n = room;
	memcpy(w->out + w->len, s, n);
	w->len += n;
}

static size_t wr_finish(struct wr *w, size_t outsz)
{
	if (outsz)
		w->out[w->len] = '\0';
	return w->len;
}

struct key {
	const char *name;
	uint8_t len;
	bool nocase;
};

/* clang-format off */
#define K(s, nc) { s, sizeof(s) - 1, nc }
/* clang-format on */

/* The first seven are semconv's list (http-spans.md, url.query; the
 * unreleased main adds AWSAccessKeyId and Signature), matched
 * case-sensitively as the spec says. Our credential names are matched
 * without case: "API_KEY" and "Api-Key" are as secret as "api_key". */
static const struct key sensitive_keys[] = {
	K("X-Amz-Signature", false),
	K("X-Amz-Credential", false),
	K("X-Amz-Security-Token", false),
	K("sig", false),
	K("X-Goog-Signature", false),
	K("AWSAccessKeyId", false),
	K("Signature", false),
	K("key", true),
	K("api_key", true),
	K("apikey", true),
	K("api-key", true),
	K("access_token", true),
	K("refresh_token", true),
	K("id_token", true),
	K("token", true),
	K("auth", true),
	K("password", true),
	K("passwd", true),
	K("pwd", true),
	K("secret", true),
	K("client_secret", true),
	K("private_token", true),
	K("session", true),
	K("sessionid", true),
	K("jwt", true),
	K("signature", true),
	K("x-api-key", true),
};

static bool key_is_sensitive(const char *k, size_t len)
{
	for (size_t i = 0; i < sizeof(sensitive_keys) / sizeof(sensitive_keys[0]); i++) {
		const struct key *e = &sensitive_keys[i];

		if (e->len != len)
			continue;
		if (e->nocase ? eq_nocase(k, e->name, len) : memcmp(k, e->name, len) == 0)
			return true;
	}
	return false;
}

/* One '&'-separated item of a query (or fragment): "key=value", "key=" or a
 * bare "word". Only the value is ever replaced; a bare item is replaced
 * whole when it is itself a credential. */
static void query_item(struct wr *w, const char *s, size_t len)
{
	const char *eq = memchr(s, '=', len);
	size_t klen, vlen;

	if (!eq) {
		if (osh_redact_is_secret(s, len))
			put(w, REDACTED, REDACTED_LEN);
		else
			put(w, s, len);
		return;
	}
	klen = (size_t)(eq - s);
	vlen = len - klen - 1;
	put(w, s, klen + 1);
	if (vlen > 0 && (key_is_sensitive(s, klen) || osh_redact_is_secret(eq + 1, vlen)))
		put(w, REDACTED, REDACTED_LEN);
	else
		put(w, eq + 1, vlen);
}

static void query(struct wr *w, const char *s, size_t len)
{
	size_t i = 0;

	while (!wr_full(w)) {
		const char *amp = memchr(s + i, '&', len - i);
		size_t end = amp ? (size_t)(amp - s) : len;

		query_item(w, s + i, end - i);
		if (!amp)
			break;
		put(w, "&", 1);
		i = end + 1;
	}
}

/* Path segments: each one replaced whole when it is a credential. */
static void path(struct wr *w, const char *s, size_t len)
{
	size_t i = 0;

	while (!wr_full(w)) {
		const char *sl = memchr(s + i, '/', len - i);
		size_t end = sl ? (size_t)(sl - s) : len;

		if (osh_redact_is_secret(s + i, end - i))
			put(w, REDACTED, REDACTED_LEN);
		else
			put(w, s + i, end - i);
		if (!sl)
			break;
		put(w, "/", 1);
		i = end + 1;
	}
}

/* Index of the first byte of class @c in @s, or @len. */
static size_t until(const char *s, size_t len, uint16_t c)
{
	size_t i = 0;

	while (i < len && !(cls[(unsigned char)s[i]] & c))
		i++;
	return i;
}

/* Length of "scheme://" at the start of @s, or 0. RFC 3986 §3.1. */
static size_t scheme_len(const char *s, size_t len)
{
	size_t i = 1;

	if (len == 0 || !((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z'))
		return 0;
	while (i < len &&
	       ((cls[(unsigned char)s[i]] & C_ALNUM) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (len - i >= 3 && s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/')
		return i + 3;
	return 0;
}

/* Copy the authority at the start of @s (up to '/', '?' or '#'), its
 * userinfo replaced; returns the bytes consumed. The host cannot hold '@'
 * and a sloppy password can, so the last '@' is the one that ends the
 * userinfo. An empty userinfo ("http://@host") is replaced too: the output
 * then never depends on what stood there. */
static size_t authority(struct wr *w, const char *s, size_t len)
{
	size_t alen = until(s, len, C_SL | C_QF);
	const char *at = alen ? memrchr(s, '@', alen) : NULL;
	size_t j = at ? (size_t)(at - s) + 1 : 0;

	if (j > 0)
		put(w, REDACTED ":" REDACTED "@", 2 * REDACTED_LEN + 2);
	put(w, s + j, alen - j);
	return alen;
}

size_t osh_url_path_len(const char *s, size_t len)
{
	/* Two memchr() calls (vectorised in libc) cost less than a table
	 * lookup per byte on anything but the shortest paths. */
	const char *q = len ? memchr(s, '?', len) : NULL;
	size_t lim = q ? (size_t)(q - s) : len;
	const char *h = lim ? memchr(s, '#', lim) : NULL;

	return h ? (size_t)(h - s) : lim;
}

size_t osh_redact_url(const char *url, size_t len, char *out, size_t outsz)
{
	const char *hash;
	struct wr w;
	size_t i, n;

	wr_init(&w, out, outsz);
	if (!url || len == 0)
		return wr_finish(&w, outsz);

	/* An authority follows "scheme://" or "//", or starts a scheme-less
	 * URL as curl accepts them ("user:pw@host/x"); an origin-form target
	 * ("/x") has none. */
	i = scheme_len(url, len);
	if (i == 0 && len >= 2 && url[0] == '/' && url[1] == '/')
		i = 2;
	put(&w, url, i);
	if (i > 0 || url[0] != '/')
		i += authority(&w, url + i, len - i);

	n = osh_url_path_len(url + i, len - i);
	path(&w, url + i, n);
	i += n;

	if (i < len && url[i] == '?') {
		put(&w, "?", 1);
		i++;
		hash = memchr(url + i, '#', len - i);
		n = hash ? (size_t)(hash - (url + i)) : len - i;
		query(&w, url + i, n);
		i += n;
	}

	/* The fragment is kept, but OAuth's implicit flow puts tokens there
	 * ("#access_token=..."), so it gets the query treatment; a fragment
	 * without credentials comes out unchanged. */
	if (i < len) {
		put(&w, "#", 1);
		i++;
		query(&w, url + i, len - i);
	}
	return wr_finish(&w, outsz);
}

size_t osh_redact_query(const char *q, size_t len, char *out, size_t outsz)
{
	struct wr w;

	wr_init(&w, out, outsz);
	if (q && len > 0)
		query(&w, q, len);
	return wr_finish(&w, outsz);
}
