/* Redaction of secrets and personal data in free text (see content_redact.h).
 *
 * One pass: at each position where a word can start, the matchers that can
 * begin with that byte are tried; a match is replaced by its marker and the
 * scan goes on after it, anything else is copied. Every matcher reads
 * forward only, within [in, in + len).
 */
#include "buildconf.h"

#include <string.h>

#include "content_redact.h"

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
	return is_upper(c) || (c >= 'a' && c <= 'z');
}

static inline bool is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

/* API key and base64url alphabet. */
static inline bool is_key_char(unsigned char c)
{
	return is_alnum(c) || c == '_' || c == '-';
}

/* RFC 6750 token68. */
static inline bool is_token68(unsigned char c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' ||
	       c == '=' || c == '-';
}

static inline bool is_email_local(unsigned char c)
{
	return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

static size_t run(const char *p, size_t n, bool (*pred)(unsigned char))
{
	size_t i = 0;

	while (i < n && pred((unsigned char)p[i]))
		i++;
	return i;
}

static bool prefix(const char *p, size_t n, const char *lit, size_t lit_len)
{
	return n >= lit_len && memcmp(p, lit, lit_len) == 0;
}

/* sk-..., sk-proj-..., sk-ant-...: "sk-" and 20 or more key characters. */
static size_t match_api_key(const char *p, size_t n)
{
	size_t k;

	if (!prefix(p, n, "sk-", 3))
		return 0;
	k = run(p + 3, n - 3, is_key_char);
	return k >= 20 ? 3 + k : 0;
}

/* AKIA/ASIA and exactly 16 upper-case letters or digits. */
static size_t match_aws_key(const char *p, size_t n)
{
	size_t i;

	if (!prefix(p, n, "AKIA", 4) && !prefix(p, n, "ASIA", 4))
		return 0;
	for (i = 4; i < n && i < 20; i++)
		if (!is_upper((unsigned char)p[i]) && !is_digit((unsigned char)p[i]))
			return 0;
	if (i != 20 || (i < n && is_alnum((unsigned char)p[i])))
		return 0;
	return 20;
}

/* header.payload.signature, base64url, the header a JSON object ("eyJ"). */
static size_t match_jwt(const char *p, size_t n)
{
	size_t a, b, c;

	if (!prefix(p, n, "eyJ", 3))
		return 0;
	a = run(p, n, is_key_char);
	if (a < 10 || a >= n || p[a] != '.')
		return 0;
	b = run(p + a + 1, n - a - 1, is_key_char);
	if (b < 4 || a + 1 + b >= n || p[a + 1 + b] != '.')
		return 0;
	c = run(p + a + 2 + b, n - a - 2 - b, is_key_char);
	if (c < 4)
		return 0;
	return a + 2 + b + c;
}

/* "Bearer <token>": *ret_keep is where the token starts (the word and the
 * blanks stay). The token must look like one: 8+ characters with a digit
 * or a punctuation character of token68 in them. */
static size_t match_bearer(const char *p, size_t n, size_t *ret_keep)
{
	static const char word[] = "bearer";
	size_t i, t;
	bool mark = false;

	if (n < 7)
		return 0;
	for (i = 0; i < 6; i++)
		if ((p[i] | 0x20) != word[i])
			return 0;
	if (p[6] != ' ' && p[6] != '\t')
		return 0;
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	t = run(p + i, n - i, is_token68);
	if (t < 8)
		return 0;
	for (size_t k = i; k < i + t; k++)
		if (!is_alpha((unsigned char)p[k]))
			mark = true;
	if (!mark)
		return 0;
	*ret_keep = i;
	return i + t;
}

/* local@label.label...tld, the TLD alphabetic and 2+ long; a dot or dash
 * ending the domain (end of a sentence) is not part of it. */
static size_t match_email(const char *p, size_t n)
{
	size_t local = run(p, n, is_email_local), d0, d, last_dot = 0;
	bool dot = false;

	if (!local || p[0] == '.' || local >= n || p[local] != '@')
		return 0;
	d0 = local + 1;
	d = d0;
	while (d < n && (is_alnum((unsigned char)p[d]) || p[d] == '-' || p[d] == '.'))
		d++;
	while (d > d0 && (p[d - 1] == '.' || p[d - 1] == '-'))
		d--;
	for (size_t k = d0; k < d; k++) {
		if (p[k] != '.')
			continue;
		if (k == d0 || p[k - 1] == '.')
			return 0;	/* empty label */
		dot = true;
		last_dot = k;
	}
	if (!dot || d - last_dot - 1 < 2)
		return 0;
	for (size_t k = last_dot + 1; k < d; k++)
		if (!is_alpha((unsigned char)p[k]))
			return 0;
	return d;
}

bool osh_luhn_valid(const char *s, size_t len)
{
	unsigned sum = 0, digits = 0;

	for (size_t i = len; i-- > 0;) {
		unsigned d;

		if (!is_digit((unsigned char)s[i]))
			continue;
		d = (unsigned)(s[i] - '0');
		if (digits % 2 == 1) {
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
		digits++;
	}
	return digits >= 2 && sum % 10 == 0;
}

/* 13-19 digits, single spaces or dashes allowed between two digits, Luhn
 * valid, not followed by more of a word. A longer run of digits is no card
 * (and none of its parts either): *ret_skip says how far to copy on. */
static size_t match_card(const char *p, size_t n, size_t *ret_skip)
{
	size_t i = 0, digits = 0;

	while (i < n) {
		if (is_digit((unsigned char)p[i])) {
			digits++;
			i++;
		} else if ((p[i] == ' ' || p[i] == '-') && i + 1 < n &&
			   is_digit((unsigned char)p[i + 1]) && i > 0 &&
			   is_digit((unsigned char)p[i - 1])) {
			i++;
		} else {
			break;
		}
	}
	*ret_skip = i;
	if (digits < 13 || digits > 19 || (i < n && is_alnum((unsigned char)p[i])))
		return 0;
	return osh_luhn_valid(p, i) ? i : 0;
}

struct out {
	char *p;
	size_t len, cap;	/* cap: bytes usable, NUL excluded */
	bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->full)
		return;
	if (n > o->cap - o->len) {
		n = o->cap - o->len;
		o->full = true;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void put_marker(struct out *o, const char *kind)
{
	put(o, "[REDACTED:", 10);
	put(o, kind, strlen(kind));
	put(o, "]", 1);
}

size_t osh_content_redact(const char *in, size_t len, char *out, size_t outsz)
{
	struct out o = { out, 0, outsz ? outsz - 1 : 0, false };
	size_t i = 0;

	if (!outsz)
		return 0;
	while (i < len && !o.full) {
		const char *p = in + i;
		size_t n = len - i, m = 0, keep = 0, skip = 0;
		unsigned char c = (unsigned char)*p;
		unsigned char prev = i ? (unsigned char)in[i - 1] : ' ';
		const char *kind = NULL;

		if (!is_alnum(prev) && prev != '_') {
			if (c == 's' && (m = match_api_key(p, n)))
				kind = "api_key";
			else if (c == 'A' && (m = match_aws_key(p, n)))
				kind = "aws_key";
			else if (c == 'e' && (m = match_jwt(p, n)))
				kind = "jwt";
			else if ((c | 0x20) == 'b' && prev != '-' && (m = match_bearer(p, n, &keep)))
				kind = "bearer";
			else if (is_digit(c) && (m = match_card(p, n, &skip)))
				kind = "credit_card";
		}
		if (!kind && !is_email_local(prev) && is_email_local(c) && (m = match_email(p, n))) {
			kind = "email";
			keep = 0;
		}
		if (kind) {
			put(&o, p, keep);
			put_marker(&o, kind);
			i += m;
		} else if (skip) {
			put(&o, p, skip);	/* a digit run that is no card */
			i += skip;
		} else {
			put(&o, p, 1);
			i++;
		}
	}
	out[o.len] = '\0';
	return o.len;
}
