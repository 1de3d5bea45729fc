/* Path templates for span names (see route.h). One pass over the target,
 * one class-table lookup per byte, output through a bounded copy; runs on
 * app threads for each sampled request.
 *
 * Targets other than origin-form ("/p") and absolute-form ("http://h/p"),
 * that is authority-form ("host:443", CONNECT) and asterisk-form ("*",
 * OPTIONS), have no path: they give "/". A scheme-less "host/p" as curl
 * accepts it gives "/p". */
#include "buildconf.h"

#include <stdint.h>
#include <string.h>

#include "redact.h"
#include "route.h"

#define ID     "{id}"
#define ID_LEN (sizeof(ID) - 1)

enum {
	C_DIGIT = 1 << 0,
	C_UPPER = 1 << 1,
	C_LOWER = 1 << 2,
	C_HEX = 1 << 3,	   /* 0-9 a-f A-F */
	C_TOK = 1 << 4,	   /* A-Za-z0-9 _ - + = . ~ : base64 and prefixed ids */
	C_SCHEME = 1 << 5, /* A-Za-z0-9 + - . */
	C_END = 1 << 6,	   /* ? # : the path ends */
	C_SLASH = 1 << 7,
};

static const uint8_t cls[256] = {
	['0' ... '9'] = C_DIGIT | C_HEX | C_TOK | C_SCHEME,
	['a' ... 'f'] = C_LOWER | C_HEX | C_TOK | C_SCHEME,
	['g' ... 'z'] = C_LOWER | C_TOK | C_SCHEME,
	['A' ... 'F'] = C_UPPER | C_HEX | C_TOK | C_SCHEME,
	['G' ... 'Z'] = C_UPPER | C_TOK | C_SCHEME,
	['_'] = C_TOK,
	['-'] = C_TOK | C_SCHEME,
	['+'] = C_TOK | C_SCHEME,
	['.'] = C_TOK | C_SCHEME,
	['='] = C_TOK,
	['~'] = C_TOK,
	['?'] = C_END,
	['#'] = C_END,
	['/'] = C_SLASH,
};

static bool is_uuid(const char *s, size_t len)
{
	if (len != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!(cls[(unsigned char)s[i]] & C_HEX)) {
			return false;
		}
	}
	return true;
}

bool osh_route_segment_is_id(const char *seg, size_t len)
{
	uint8_t all = 0xff, any = 0;

	if (len == 0)
		return false;
	/* Which classes every byte is in, and which occur at all. */
	for (size_t i = 0; i < len; i++) {
		uint8_t c = cls[(unsigned char)seg[i]];

		all &= c;
		any |= c;
	}
	if (all & C_DIGIT)
		return true;
	if (len == 36 && is_uuid(seg, len))
		return true;
	if (len < 16)
		return false;
	if ((all & C_HEX) && (any & C_DIGIT))
		return true;
	/* A lowercase-only slug with digits ("gpt-4o-2024-08-06") is a name;
	 * random ids mix both cases. */
	return (all & C_TOK) && (any & C_DIGIT) && (any & C_UPPER) && (any & C_LOWER);
}

/* Offset of the path in an absolute-form "scheme://authority/p" target, or
 * of the first '/' of a scheme-less "host/p"; @len when there is no path
 * (authority-form, asterisk-form). */
static size_t path_start(const char *s, size_t len)
{
	size_t i = 0;

	if (len == 0 || s[0] == '/')
		return 0;
	if (cls[(unsigned char)s[0]] & (C_UPPER | C_LOWER)) {
		while (i < len && (cls[(unsigned char)s[i]] & C_SCHEME))
			i++;
		if (len - i >= 3 && s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/')
			i += 3;
		else
			i = 0;
	}
	/* Skip the authority. */
	while (i < len && !(cls[(unsigned char)s[i]] & (C_SLASH | C_END)))
		i++;
	if (i < len && s[i] == '/')
		return i;
	return len;
}

static size_t copy(char *out, size_t cap, size_t at, const char *s, size_t n)
{
	if (at >= cap)
		return at;
	if (n > cap - at)
		n = cap - at;
	memcpy(out + at, s, n);
	return at + n;
}

size_t osh_route_template(const char *path, size_t len, char *out, size_t outsz)
{
	size_t cap, o = 0, i, end;

	if (outsz == 0)
		return 0;
	cap = outsz - 1;
	i = path ? path_start(path, len) : len;
	end = i + osh_url_path_len(path + i, len - i);
	if (i == end) {
		o = copy(out, cap, o, "/", 1);
		out[o] = '\0';
		return o;
	}

	/* Segments between slashes; empty ones (leading, "//", trailing) are
	 * copied as they are. */
	while (i < end && o < cap) {
		size_t s = i;
		const char *sl = memchr(path + i, '/', end - i);

		i = sl ? (size_t)(sl - path) : end;
		if (i > s && (osh_route_segment_is_id(path + s, i - s) ||
			      osh_redact_is_secret(path + s, i - s)))
			o = copy(out, cap, o, ID, ID_LEN);
		else
			o = copy(out, cap, o, path + s, i - s);
		if (i < end) {
			o = copy(out, cap, o, "/", 1);
			i++;
		}
	}
	out[o] = '\0';
	return o;
}
