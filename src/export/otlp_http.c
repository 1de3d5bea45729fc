/* OTLP/HTTP transport: a built-in HTTP/1.1 client for http://, libcurl
 * (dlopen()ed on first use) for the rest (see otlp_http.h).
 *
 * Why two engines: linking libcurl made loading the OTLP module cost ~16 ms
 * of CPU (libcurl with OpenSSL pulls in 33 libraries), paid by every traced
 * process that exports a single span, though nearly every deployment posts
 * plain http:// to a collector on localhost. That needs a few hundred lines
 * of HTTP/1.1, not a TLS stack.
 *
 * The exporter thread lives inside someone else's multithreaded process:
 * sockets are opened here so the shim can mark them as its own (its close()
 * hook then refuses to let the host close them) and get SOCK_CLOEXEC (the
 * host may fork and exec); sends use MSG_NOSIGNAL, and libcurl runs with
 * CURLOPT_NOSIGNAL, so no SIGPIPE or SIGALRM ever reaches the host.
 *
 * Deadlines are CLOCK_MONOTONIC nanoseconds in one atomic that interrupt()
 * may pull in at any time. Every wait (connect, send, receive, backoff, and
 * libcurl's curl_multi_poll()) also watches an eventfd that interrupt()
 * writes, and re-reads the deadline when it wakes.
 */
#include "buildconf.h"

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "config.h"
#include "diag.h"
#include "export/module.h"
#include "export/otlp_encode.h"
#include "export/otlp_http.h"
#include "percent.h"

#define USER_AGENT "otelshim/" OSH_VERSION " OTel-OTLP-Exporter-C/" OSH_VERSION
#define CURL_SONAME "libcurl.so.4"

/* Backoff steps stop doubling here; the deadline bounds the total anyway. */
#define MAX_BACKOFF_MS (60u * 1000u)
/* Longest single poll. interrupt() wakes every wait through the eventfd, so
 * this only bounds the damage should a wakeup ever be lost. */
#define MAX_POLL_MS 10000
/* Without a wake fd (the exporter in an fd table of its own), the longest
 * a wait takes to notice a deadline interrupt() pulled in. */
#define PRIVATE_POLL_MS 100

#define NS_PER_MS 1000000ull

/* Built-in client: addresses kept for one host name, the receive buffer
 * (which must hold a whole response head), 1xx heads skipped at most. */
#define MAX_ADDRS 8
#define RBUF_SIZE 16384
#define MAX_INTERIM 8
/* Chunk extensions and trailers we skip before calling the body malformed. */
#define MAX_CHUNK_META (64u * 1024u)

/* Conditions reported once per transport (a bit each). */
enum report {
	REPORT_HEADERS,
	REPORT_REJECTED,
	REPORT_PARTIAL_MESSAGE,
	REPORT_STATUS,
	REPORT_TRANSPORT,
	REPORT_REQUEST_TOO_LARGE,
	REPORT_RESPONSE_TOO_LARGE,
	REPORT_GZIP,
	REPORT_CURL,
};

/* What one HTTP attempt came to. */
enum attempt {
	ATTEMPT_OK,
	ATTEMPT_DROP,		/* permanent: do not retry */
	ATTEMPT_RETRY,		/* the collector answered (or hung up): retry */
	ATTEMPT_UNREACHED,	/* could not resolve or connect */
	ATTEMPT_ABORTED,	/* the deadline passed mid-transfer */
};

/* What one exchange on the built-in client's connection came to. */
enum xfer {
	X_DONE,		/* a complete response: h->status, h->resp */
	X_NOTHING,	/* not one byte of response: the connection died */
	X_BROKEN,	/* the response was cut short */
	X_ABORTED,	/* the deadline passed */
	X_INVALID,	/* not HTTP/1.x as we can read it */
	X_TOO_BIG,	/* a body over OSH_OTLP_MAX_RESPONSE */
	X_NOMEM,
};

/* The libcurl functions we use, resolved with dlsym() once per process.
 * Called through these pointers, curl.h's type-checking macros do not apply:
 * every variadic argument below is spelled with its exact type. */
struct curl_api {
	CURLcode (*global_init)(long flags);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_cleanup)(CURLM *m);
	CURLMcode (*multi_add_handle)(CURLM *m, CURL *e);
	CURLMcode (*multi_remove_handle)(CURLM *m, CURL *e);
	CURLMcode (*multi_perform)(CURLM *m, int *running);
	CURLMcode (*multi_poll)(CURLM *m, struct curl_waitfd *extra, unsigned n, int ms, int *ret);
	CURLMsg *(*multi_info_read)(CURLM *m, int *queued);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *e);
	CURLcode (*easy_setopt)(CURL *e, CURLoption opt, ...);
	CURLcode (*easy_getinfo)(CURL *e, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode code);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
};

static const struct {
	const char *name;
	size_t offset;
} curl_symbols[] = {
	{ "curl_global_init", offsetof(struct curl_api, global_init) },
	{ "curl_multi_init", offsetof(struct curl_api, multi_init) },
	{ "curl_multi_cleanup", offsetof(struct curl_api, multi_cleanup) },
	{ "curl_multi_add_handle", offsetof(struct curl_api, multi_add_handle) },
	{ "curl_multi_remove_handle", offsetof(struct curl_api, multi_remove_handle) },
	{ "curl_multi_perform", offsetof(struct curl_api, multi_perform) },
	{ "curl_multi_poll", offsetof(struct curl_api, multi_poll) },
	{ "curl_multi_info_read", offsetof(struct curl_api, multi_info_read) },
	{ "curl_easy_init", offsetof(struct curl_api, easy_init) },
	{ "curl_easy_cleanup", offsetof(struct curl_api, easy_cleanup) },
	{ "curl_easy_setopt", offsetof(struct curl_api, easy_setopt) },
	{ "curl_easy_getinfo", offsetof(struct curl_api, easy_getinfo) },
	{ "curl_easy_strerror", offsetof(struct curl_api, easy_strerror) },
	{ "curl_slist_append", offsetof(struct curl_api, slist_append) },
	{ "curl_slist_free_all", offsetof(struct curl_api, slist_free_all) },
};

/* Process-wide libcurl state, touched only by the exporter thread (a fork
 * child inherits it with the mappings). A failed load is never retried: a
 * failed dlopen() allocates, and the library will not appear later. */
static enum { CURL_UNTRIED, CURL_READY, CURL_ABSENT } curl_state;
static struct curl_api curl;
static char curl_why[200];
static const char *curl_soname = CURL_SONAME;

/* The built-in client's connection and request template. */
struct builtin {
	char host[256];		/* for getaddrinfo(): brackets removed */
	char port[8];
	bool named;		/* host is a name (resolved on connect), not an IP */
	struct sockaddr_storage addr[MAX_ADDRS];
	socklen_t addr_len[MAX_ADDRS];
	unsigned n_addr;	/* 0: resolve before the next connect */

	char *head;		/* "POST ... HTTP/1.1\r\n" and every header but Content-Length */
	size_t head_len;

	int fd;			/* -1 when not connected */
	bool used;		/* fd has carried a complete exchange: it may be stale */
	char rbuf[RBUF_SIZE];
};

struct osh_otlp_http {
	bool builtin;
	const struct osh_config *cfg;
	struct osh_otlp_host host;
	char url[512];		/* traces_url without userinfo, for messages */
	char *extra_headers;	/* OTEL_EXPORTER_OTLP_HEADERS as "Key: value\r\n" lines */
	uint32_t retry_initial_ms;

	int wake;		/* eventfd: interrupt() writes, waits watch it; -1 in
				 * a table of the exporter's own (waits poll in slices) */
	bool wake_dead;		/* POLLNVAL on it: stop watching */

	bool gzip;
	bool zs_ready;
	z_stream zs;
	uint8_t *gz;
	size_t gz_cap;

	long status;		/* HTTP status of the current attempt */
	uint8_t *resp;		/* response body of the current attempt */
	size_t resp_len;
	size_t resp_cap;
	bool resp_too_big;
	char retry_after[64];	/* Retry-After of the current attempt, "" if none */

	_Atomic uint64_t deadline;	/* of the send in progress */
	_Atomic uint64_t cap;		/* interrupt(): bounds every later deadline */

	uint64_t rng;
	unsigned reported;		/* bits of enum report */
	struct osh_otlp_stats stats;

	/* libcurl, set up by the first send */
	CURLM *multi;
	CURL *easy;
	struct curl_slist *headers;

	struct builtin bi;
};

static void say(struct osh_otlp_http *h, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(struct osh_otlp_http *h, int level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!h->host.log)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	h->host.log(level, buf);
}

/* True the first time @what is seen on this transport. */
static bool first_time(struct osh_otlp_http *h, enum report what)
{
	unsigned bit = 1u << what;

	if (h->reported & bit)
		return false;
	h->reported |= bit;
	return true;
}

static void own(struct osh_otlp_http *h, int fd, bool owned)
{
	if (h->host.own_fd)
		h->host.own_fd(fd, owned);
}

static void close_fd(struct osh_otlp_http *h, int fd)
{
	/* Disown first: once closed, the number may be reused by the host. */
	own(h, fd, false);
	(void)close(fd);
}

/* ---- a growable string ---- */

struct dbuf {
	char *p;
	size_t len, cap;
};

static bool dbuf_add(struct dbuf *b, const void *s, size_t n)
{
	if (n > SIZE_MAX / 4 - b->len)
		return false;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return false;
		b->p = p;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return true;
}

static bool dbuf_str(struct dbuf *b, const char *s)
{
	return dbuf_add(b, s, strlen(s));
}

static bool dbuf_base64(struct dbuf *b, const uint8_t *s, size_t n)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		char q[4];

		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		q[0] = abc[v >> 18 & 63];
		q[1] = abc[v >> 12 & 63];
		q[2] = i + 1 < n ? abc[v >> 6 & 63] : '=';
		q[3] = i + 2 < n ? abc[v & 63] : '=';
		if (!dbuf_add(b, q, 4))
			return false;
	}
	return true;
}

/* ---- pure helpers (exposed for tests) ---- */

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
	if (is_alpha((char)c) || is_digit((char)c))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void trim(const char **s, const char **end)
{
	while (*s < *end && is_ows(**s))
		(*s)++;
	while (*end > *s && is_ows((*end)[-1]))
		(*end)--;
}

/* [s, end) equals the lowercase token @lit, ignoring case. */
static bool token_is(const char *s, const char *end, const char *lit)
{
	size_t n = strlen(lit);

	return (size_t)(end - s) == n && strncasecmp(s, lit, n) == 0;
}

static bool reserved_header(const char *key)
{
	static const char *const names[] = {
		"content-type", "content-encoding", "content-length",
		"transfer-encoding", "host", "expect",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(key, names[i]) == 0)
			return true;
	return false;
}

/* One "k=v" member into "k: v" (or "k:" when v is empty) in @line (room for
 * both plus 3 bytes). */
static bool header_line(const char *m, const char *m_end, char *line)
{
	const char *eq = memchr(m, '=', (size_t)(m_end - m));
	const char *k, *k_end, *v, *v_end;
	size_t klen, vlen;
	char *val;

	if (!eq)
		return false;
	k = m;
	k_end = eq;
	v = eq + 1;
	v_end = m_end;
	trim(&k, &k_end);
	trim(&v, &v_end);
	if (!osh_percent_decode_strict(k, (size_t)(k_end - k), line, &klen) || klen == 0)
		return false;
	for (size_t i = 0; i < klen; i++)
		if (!is_tchar((unsigned char)line[i]))
			return false;
	if (reserved_header(line))
		return false;
	val = line + klen + 2;
	if (!osh_percent_decode_strict(v, (size_t)(v_end - v), val, &vlen))
		return false;
	for (size_t i = 0; i < vlen; i++) {
		unsigned char c = (unsigned char)val[i];

		/* No CR/LF/NUL smuggled in through %-escapes: one header, one line. */
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	line[klen] = ':';
	if (vlen == 0)
		line[klen + 1] = '\0';
	else
		line[klen + 1] = ' ';
	return true;
}

int osh_otlp_http_parse_headers(const char *text, char **ret_block, size_t *ret_skipped)
{
	struct dbuf b = { 0 };
	size_t skipped = 0;
	const char *p = text ? text : "";

	if (!dbuf_add(&b, "", 0))
		return -ENOMEM;
	while (*p) {
		const char *m = p, *m_end = p + strcspn(p, ",");
		const char *t = m, *t_end = m_end;
		char *line;
		bool ok;

		p = *m_end ? m_end + 1 : m_end;
		trim(&t, &t_end);
		if (t == t_end)
			continue; /* empty member ("a=b,,c=d", trailing comma) */
		line = malloc((size_t)(m_end - m) + 4);
		if (!line)
			goto nomem;
		if (!header_line(m, m_end, line)) {
			skipped++;
			free(line);
			continue;
		}
		ok = dbuf_str(&b, line) && dbuf_add(&b, "\r\n", 2);
		free(line);
		if (!ok)
			goto nomem;
	}
	*ret_block = b.p;
	*ret_skipped = skipped;
	return 0;
nomem:
	free(b.p);
	return -ENOMEM;
}

/* Does the header block hold a field named @name (lowercase)? */
static bool block_has(const char *block, const char *name)
{
	size_t n = strlen(name);

	for (const char *l = block; l && *l; l = strstr(l, "\r\n"), l = l ? l + 2 : NULL)
		if (strncasecmp(l, name, n) == 0 && l[n] == ':')
			return true;
	return false;
}

static int month_of(const char *s, const char *end)
{
	static const char names[] = "janfebmaraprmayjunjulaugsepoctnovdec";

	if (end - s != 3)
		return -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(s, names + 3 * i, 3) == 0)
			return i;
	return -1;
}

static bool is_weekday(const char *s, const char *end)
{
	static const char *const names[] = {
		"mon", "tue", "wed", "thu", "fri", "sat", "sun",
		"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (token_is(s, end, names[i]))
			return true;
	return false;
}

/* "hh:mm:ss" at @s (one or two hour digits). */
static const char *parse_clock(const char *s, int *hh, int *mm, int *ss)
{
	int v[3] = { 0, 0, 0 };

	for (int f = 0; f < 3; f++) {
		int digits = 0;

		if (f > 0 && *s++ != ':')
			return NULL;
		while (is_digit(*s) && digits < 2) {
			v[f] = v[f] * 10 + (*s++ - '0');
			digits++;
		}
		if (digits == 0 || (f > 0 && digits != 2) || is_digit(*s))
			return NULL;
	}
	*hh = v[0];
	*mm = v[1];
	*ss = v[2];
	return s;
}

/* An HTTP-date in any of RFC 9110's three forms, read as a sequence of
 * words (weekday, month, zone), numbers (day, then year) and one clock:
 *   Sun, 06 Nov 1994 08:49:37 GMT / Sunday, 06-Nov-94 08:49:37 GMT /
 *   Sun Nov  6 08:49:37 1994. */
static bool parse_http_date(const char *s, time_t *ret)
{
	int day = -1, mon = -1, year = -1, hh = -1, mi = -1, ss = -1;
	struct tm tm = { 0 };
	time_t t;

	while (*s) {
		const char *e = s;

		if (*s == ' ' || *s == '\t' || *s == ',' || *s == '-') {
			s++;
			continue;
		}
		if (is_alpha(*s)) {
			int m;

			while (is_alpha(*e))
				e++;
			m = month_of(s, e);
			if (m >= 0 && mon < 0)
				mon = m;
			else if (!is_weekday(s, e) && !token_is(s, e, "gmt") &&
				 !token_is(s, e, "utc"))
				return false;
		} else if (is_digit(*s)) {
			int v = 0, digits = 0;

			while (is_digit(*e))
				e++;
			if (*e == ':') {
				if (hh >= 0)
					return false;
				e = parse_clock(s, &hh, &mi, &ss);
				if (!e)
					return false;
			} else {
				for (const char *c = s; c < e && digits < 5; c++, digits++)
					v = v * 10 + (*c - '0');
				if (day < 0 && digits <= 2)
					day = v;
				else if (year < 0 && digits == 4)
					year = v;
				else if (year < 0 && digits == 2) /* RFC 850's two digits */
					year = v < 70 ? 2000 + v : 1900 + v;
				else
					return false;
			}
		} else {
			return false;
		}
		s = e;
	}
	if (day < 1 || day > 31 || mon < 0 || year < 1900 || hh < 0 || hh > 23 || mi > 59 ||
	    ss > 60)
		return false;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = day;
	tm.tm_hour = hh;
	tm.tm_min = mi;
	tm.tm_sec = ss;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return false;
	*ret = t;
	return true;
}

bool osh_otlp_http_parse_retry_after(const char *value, time_t now, uint64_t *ret_ms)
{
	const char *s = value, *end = value + strlen(value);
	uint64_t secs = 0;
	time_t when;
	char buf[64];
	size_t len;

	trim(&s, &end);
	len = (size_t)(end - s);
	if (len == 0 || len >= sizeof(buf))
		return false;
	if (strspn(s, "0123456789") >= len) {
		for (const char *c = s; c < end; c++) {
			secs = secs * 10 + (uint64_t)(*c - '0');
			if (secs > UINT32_MAX) {
				/* Far beyond any deadline: saturate. */
				secs = UINT32_MAX;
				break;
			}
		}
		*ret_ms = secs * 1000;
		return true;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (!parse_http_date(buf, &when))
		return false;
	*ret_ms = when > now ? (uint64_t)(when - now) * 1000 : 0;
	return true;
}

void osh_otlp_http_redact_url(const char *url, char *out, size_t outsz)
{
	const char *sep = strstr(url, "://");
	const char *auth = sep ? sep + 3 : url;
	size_t auth_len = strcspn(auth, "/?#");
	const char *at = NULL;

	if (outsz == 0)
		return;
	/* The last '@' before the path ends the userinfo (RFC 3986 §3.2). */
	for (const char *c = auth; c < auth + auth_len; c++)
		if (*c == '@')
			at = c;
	if (at)
		snprintf(out, outsz, "%.*s%s", (int)(auth - url), url, at + 1);
	else
		snprintf(out, outsz, "%s", url);
}

size_t osh_otlp_http_head_end(const char *buf, size_t len, size_t from)
{
	/* The end ("\n\n" or "\n\r\n") may have started up to 2 bytes before @from. */
	for (size_t i = from >= 2 ? from - 2 : 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* The last element of a comma-separated list value. */
static void last_element(const char **v, const char **v_end)
{
	const char *c = *v_end;

	while (c > *v && c[-1] != ',')
		c--;
	*v = c;
	trim(v, v_end);
}

int osh_otlp_http_parse_head(const char *buf, size_t len, struct osh_otlp_http_head *ret)
{
	struct osh_otlp_http_head hd = { 0 };
	const char *p = buf, *end = buf + len, *eol, *line_end;
	bool http10, keep_alive = false, have_length = false, te = false, chunked = false;

	/* "HTTP/1.x NNN[ reason]" */
	eol = memchr(p, '\n', len);
	if (!eol)
		return -EINVAL;
	line_end = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
	if (line_end - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
	    p[8] != ' ' || !is_digit(p[9]) || !is_digit(p[10]) || !is_digit(p[11]) ||
	    (line_end - p > 12 && p[12] != ' '))
		return -EINVAL;
	hd.status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
	if (hd.status < 100)
		return -EINVAL;
	http10 = p[7] == '0';

	for (p = eol + 1;; p = eol + 1) {
		const char *colon, *v, *v_end;

		eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			return -EINVAL;
		line_end = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
		if (line_end == p)
			break; /* the empty line */
		/* Obsolete line folding may be rejected (RFC 9112 §5.2). */
		if (is_ows(*p))
			return -EINVAL;
		colon = memchr(p, ':', (size_t)(line_end - p));
		if (!colon || colon == p)
			return -EINVAL;
		for (const char *c = p; c < colon; c++)
			if (!is_tchar((unsigned char)*c))
				return -EINVAL;
		v = colon + 1;
		v_end = line_end;
		trim(&v, &v_end);
		if (token_is(p, colon, "content-length")) {
			uint64_t n = 0;

			if (v == v_end || v_end - v > 18)
				return -EINVAL;
			for (const char *c = v; c < v_end; c++) {
				if (!is_digit(*c))
					return -EINVAL;
				n = n * 10 + (uint64_t)(*c - '0');
			}
			if (have_length && n != hd.length)
				return -EINVAL;
			have_length = true;
			hd.length = n;
		} else if (token_is(p, colon, "transfer-encoding")) {
			/* Only the final coding decides the framing (RFC 9112 §6.3). */
			te = true;
			last_element(&v, &v_end);
			chunked = token_is(v, v_end, "chunked");
		} else if (token_is(p, colon, "connection")) {
			for (const char *t = v; t < v_end;) {
				const char *t_end = memchr(t, ',', (size_t)(v_end - t));
				const char *a = t, *b;

				b = t_end ? t_end : v_end;
				t = t_end ? t_end + 1 : v_end;
				trim(&a, &b);
				if (token_is(a, b, "close"))
					hd.close = true;
				else if (token_is(a, b, "keep-alive"))
					keep_alive = true;
			}
		} else if (token_is(p, colon, "retry-after")) {
			size_t n = (size_t)(v_end - v);

			if (n < sizeof(hd.retry_after)) {
				memcpy(hd.retry_after, v, n);
				hd.retry_after[n] = '\0';
			}
		}
	}
	if (http10 && !keep_alive)
		hd.close = true;
	if (hd.status < 200 || hd.status == 204 || hd.status == 304) {
		hd.body = OSH_OTLP_BODY_NONE;
	} else if (te) {
		/* A Content-Length next to Transfer-Encoding is a smuggling
		 * pattern: framing by the coding, and never reuse the connection. */
		hd.body = chunked ? OSH_OTLP_BODY_CHUNKED : OSH_OTLP_BODY_CLOSE;
		if (have_length || !chunked)
			hd.close = true;
	} else if (have_length) {
		hd.body = OSH_OTLP_BODY_LENGTH;
	} else {
		hd.body = OSH_OTLP_BODY_CLOSE;
		hd.close = true;
	}
	if (hd.body != OSH_OTLP_BODY_LENGTH)
		hd.length = 0;
	*ret = hd;
	return 0;
}

enum chunk_state {
	CK_SIZE,	/* hex digits of the chunk size */
	CK_EXT,		/* chunk extensions, to the end of the size line */
	CK_SIZE_LF,
	CK_DATA,
	CK_DATA_CR,	/* the CRLF after a chunk's data */
	CK_DATA_LF,
	CK_TRAILER,	/* start of a trailer line (or of the final empty line) */
	CK_TRAILER_LINE,
	CK_END_LF,
	CK_DONE,
};

static void chunk_size_done(struct osh_otlp_http_chunked *d)
{
	d->digits = 0;
	d->state = d->left ? CK_DATA : CK_TRAILER;
}

ssize_t osh_otlp_http_dechunk(struct osh_otlp_http_chunked *d, uint8_t *buf, size_t *len)
{
	size_t in = 0, out = 0, n = *len;

	while (in < n && d->state != CK_DONE) {
		uint8_t c = buf[in];

		switch ((enum chunk_state)d->state) {
		case CK_SIZE: {
			int v = osh_hex_digit((unsigned char)c);

			if (v >= 0) {
				if (d->digits >= 15) /* over 2^60 bytes: nonsense */
					return -1;
				d->left = d->left << 4 | (uint64_t)v;
				d->digits++;
			} else if (d->digits == 0) {
				return -1;
			} else if (c == ';' || is_ows((char)c)) {
				d->state = CK_EXT;
			} else if (c == '\r') {
				d->state = CK_SIZE_LF;
			} else if (c == '\n') {
				chunk_size_done(d);
			} else {
				return -1;
			}
			in++;
			break;
		}
		case CK_EXT:
			if (c == '\n')
				chunk_size_done(d);
			else if ((c < 0x20 && c != '\r' && c != '\t') || c == 0x7f ||
				 ++d->meta > MAX_CHUNK_META)
				return -1;
			in++;
			break;
		case CK_SIZE_LF:
			if (c != '\n')
				return -1;
			chunk_size_done(d);
			in++;
			break;
		case CK_DATA: {
			size_t take = n - in;

			if (take > d->left)
				take = (size_t)d->left;
			memmove(buf + out, buf + in, take);
			out += take;
			in += take;
			d->left -= take;
			if (d->left == 0)
				d->state = CK_DATA_CR;
			break;
		}
		case CK_DATA_CR:
		case CK_DATA_LF:
			if (c == '\r' && d->state == CK_DATA_CR)
				d->state = CK_DATA_LF;
			else if (c == '\n')
				d->state = CK_SIZE;
			else
				return -1;
			in++;
			break;
		case CK_TRAILER:
			if (c == '\r')
				d->state = CK_END_LF;
			else if (c == '\n')
				d->state = CK_DONE;
			else
				d->state = CK_TRAILER_LINE;
			if (d->state != CK_TRAILER_LINE)
				in++;
			break;
		case CK_TRAILER_LINE:
			if (++d->meta > MAX_CHUNK_META)
				return -1;
			if (c == '\n')
				d->state = CK_TRAILER;
			in++;
			break;
		case CK_END_LF:
			if (c != '\n')
				return -1;
			d->state = CK_DONE;
			in++;
			break;
		case CK_DONE:
			break;
		}
	}
	*len = out;
	return d->state == CK_DONE ? (ssize_t)(n - in) : -2;
}

/* ---- deadlines and waiting ---- */

static void atomic_min(_Atomic uint64_t *v, uint64_t x)
{
	uint64_t cur = atomic_load(v);

	while (x < cur && !atomic_compare_exchange_weak(v, &cur, x))
		;
}

void osh_otlp_http_interrupt(struct osh_otlp_http *h, uint64_t deadline_ns)
{
	if (!h)
		return;
	atomic_min(&h->cap, deadline_ns);
	atomic_min(&h->deadline, deadline_ns);
	/* glibc's eventfd_write() is a plain write(2) inside libc, which the
	 * shim's write() hook never sees, whatever thread this is. None in a
	 * table of the exporter's own: its waits see the deadline within a
	 * slice. */
	if (h->wake >= 0)
		(void)eventfd_write(h->wake, 1);
}

static void begin_send(struct osh_otlp_http *h, uint64_t deadline_ns)
{
	uint64_t cap = atomic_load(&h->cap);

	atomic_store(&h->deadline, deadline_ns < cap ? deadline_ns : cap);
	/* An interrupt() between the load and the store set the cap first: re-read
	 * it so the store above cannot undo it. */
	atomic_min(&h->deadline, atomic_load(&h->cap));
}

static uint64_t deadline(struct osh_otlp_http *h)
{
	return atomic_load(&h->deadline);
}

/* Milliseconds for a poll from now to @until (rounded up, so the wake-up
 * lands at or after it), bounded by MAX_POLL_MS. */
static int poll_ms(uint64_t now, uint64_t until)
{
	uint64_t ms;

	if (until <= now)
		return 0;
	ms = (until - now + NS_PER_MS - 1) / NS_PER_MS;
	return ms > MAX_POLL_MS ? MAX_POLL_MS : (int)ms;
}

static void drain_wake(struct osh_otlp_http *h)
{
	eventfd_t v;

	(void)eventfd_read(h->wake, &v);
}

/* Poll @fd (negative: none) for @events and the wake fd until one is ready
 * or @until. Returns @fd's revents (0 on a timeout or a wake-up), or -errno. */
static int poll_once(struct osh_otlp_http *h, int fd, short events, uint64_t until)
{
	struct pollfd p[2] = { { fd, events, 0 }, { h->wake_dead ? -1 : h->wake, POLLIN, 0 } };
	int ms = poll_ms(osh_clock_monotonic_ns(), until);
	int n;

	if (h->wake < 0 && ms > PRIVATE_POLL_MS)
		ms = PRIVATE_POLL_MS;
	n = poll(p, 2, ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (p[1].revents & POLLNVAL)
		h->wake_dead = true;
	else if (p[1].revents)
		drain_wake(h);
	return p[0].revents;
}

/* Sleep until @until unless the deadline comes first (then false). */
static bool wait_until(struct osh_otlp_http *h, uint64_t until)
{
	for (;;) {
		uint64_t now = osh_clock_monotonic_ns();
		uint64_t dl = deadline(h);

		if (until >= dl || now >= dl)
			return false;
		if (now >= until)
			return true;
		if (poll_once(h, -1, 0, until) < 0)
			return false;
	}
}

/* Wait until @fd reports one of @events (or an error). Its revents, or
 * -ECANCELED once the deadline passes, or -errno from poll(). */
static int wait_fd(struct osh_otlp_http *h, int fd, short events)
{
	for (;;) {
		int r;

		if (osh_clock_monotonic_ns() >= deadline(h))
			return -ECANCELED;
		r = poll_once(h, fd, events, deadline(h));
		if (r != 0)
			return r;
	}
}

static uint64_t next_random(struct osh_otlp_http *h)
{
	/* xorshift64*: plenty for jitter. */
	h->rng ^= h->rng >> 12;
	h->rng ^= h->rng << 25;
	h->rng ^= h->rng >> 27;
	return h->rng * 0x2545f4914f6cdd1dull;
}

/* @ms +-20%. */
static uint64_t jitter(struct osh_otlp_http *h, uint64_t ms)
{
	return ms * (800 + next_random(h) % 401) / 1000;
}

/* ---- the response body, for both engines ---- */

/* 0, -E2BIG past OSH_OTLP_MAX_RESPONSE, -ENOMEM. */
static int resp_append(struct osh_otlp_http *h, const void *data, size_t len)
{
	if (len > OSH_OTLP_MAX_RESPONSE - h->resp_len) {
		h->resp_too_big = true;
		return -E2BIG;
	}
	if (h->resp_len + len > h->resp_cap) {
		size_t cap = h->resp_cap ? h->resp_cap : 4096;
		uint8_t *p;

		while (cap < h->resp_len + len)
			cap *= 2;
		if (cap > OSH_OTLP_MAX_RESPONSE)
			cap = OSH_OTLP_MAX_RESPONSE;
		p = realloc(h->resp, cap);
		if (!p)
			return -ENOMEM;
		h->resp = p;
		h->resp_cap = cap;
	}
	if (len)
		memcpy(h->resp + h->resp_len, data, len);
	h->resp_len += len;
	return 0;
}

/* ---- the built-in client ---- */

static bool host_chars_ok(const char *s, const char *end, bool bracketed)
{
	for (const char *c = s; c < end; c++) {
		bool ok = bracketed ? osh_hex_digit((unsigned char)*c) >= 0 || *c == ':' || *c == '.'
				    : is_alpha(*c) || is_digit(*c) || strchr("-._", *c);

		if (!ok)
			return false;
	}
	return true;
}

/* "Authorization: Basic ..." from a URL's userinfo, as libcurl sends it. */
static int add_basic_auth(struct dbuf *b, const char *ui, const char *ui_end)
{
	const char *colon = memchr(ui, ':', (size_t)(ui_end - ui));
	const char *u_end = colon ? colon : ui_end;
	char *cred = malloc((size_t)(ui_end - ui) + 2);
	size_t ulen, plen = 0;
	int r = -EINVAL;

	if (!cred)
		return -ENOMEM;
	if (!osh_percent_decode_strict(ui, (size_t)(u_end - ui), cred, &ulen))
		goto out;
	cred[ulen] = ':';
	if (colon && !osh_percent_decode_strict(colon + 1, (size_t)(ui_end - colon - 1), cred + ulen + 1,
				     &plen))
		goto out;
	r = -ENOMEM;
	if (dbuf_str(b, "Authorization: Basic ") &&
	    dbuf_base64(b, (const uint8_t *)cred, ulen + 1 + plen) && dbuf_add(b, "\r\n", 2))
		r = 0;
out:
	/* The password was in it. */
	explicit_bzero(cred, (size_t)(ui_end - ui) + 2);
	free(cred);
	return r;
}

/* Take cfg->traces_url apart for the built-in client and prebuild the
 * request head. -EINVAL when the URL is not one it can use (libcurl then
 * gets it), -ENOMEM. */
static int builtin_setup(struct osh_otlp_http *h, const char *url)
{
	const char *auth, *auth_end, *at = NULL, *hp, *host, *host_end, *after, *target, *t_end;
	struct builtin *bi = &h->bi;
	struct dbuf b = { 0 };
	unsigned long port = 80;
	bool bracketed;
	int r = -ENOMEM;

	if (strncasecmp(url, "http://", 7) != 0)
		return -EINVAL;
	auth = url + 7;
	auth_end = auth + strcspn(auth, "/?#");
	for (const char *c = auth; c < auth_end; c++)
		if (*c == '@')
			at = c;
	hp = at ? at + 1 : auth;
	bracketed = hp < auth_end && *hp == '[';
	if (bracketed) {
		host = hp + 1;
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (!host_end)
			return -EINVAL;
		after = host_end + 1;
	} else {
		host = hp;
		host_end = memchr(hp, ':', (size_t)(auth_end - hp));
		if (!host_end)
			host_end = auth_end;
		after = host_end;
	}
	if (host_end == host || (size_t)(host_end - host) >= sizeof(bi->host) ||
	    !host_chars_ok(host, host_end, bracketed))
		return -EINVAL;
	if (after < auth_end) {
		const char *ps = after + 1;

		if (*after != ':' || auth_end - ps > 5)
			return -EINVAL;
		if (ps < auth_end) {
			port = 0;
			for (const char *c = ps; c < auth_end; c++) {
				if (!is_digit(*c))
					return -EINVAL;
				port = port * 10 + (unsigned long)(*c - '0');
			}
			if (port == 0 || port > 65535)
				return -EINVAL;
		}
	}
	target = auth_end;
	t_end = target + strcspn(target, "#");
	/* The request line carries the target as is: nothing that would need
	 * encoding (libcurl is there for such URLs). */
	for (const char *c = target; c < t_end; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
			return -EINVAL;

	memcpy(bi->host, host, (size_t)(host_end - host));
	bi->host[host_end - host] = '\0';
	snprintf(bi->port, sizeof(bi->port), "%lu", port);
	bi->named = false;
	bi->n_addr = 1;
	if (!bracketed) {
		struct sockaddr_in *a4 = (struct sockaddr_in *)&bi->addr[0];

		if (inet_pton(AF_INET, bi->host, &a4->sin_addr) == 1) {
			a4->sin_family = AF_INET;
			a4->sin_port = htons((uint16_t)port);
			bi->addr_len[0] = sizeof(*a4);
		} else {
			bi->named = true;
			bi->n_addr = 0;
		}
	} else {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&bi->addr[0];

		if (inet_pton(AF_INET6, bi->host, &a6->sin6_addr) != 1)
			return -EINVAL;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		bi->addr_len[0] = sizeof(*a6);
	}

	if (!dbuf_str(&b, "POST ") ||
	    ((target == t_end || *target == '?') && !dbuf_str(&b, "/")) ||
	    !dbuf_add(&b, target, (size_t)(t_end - target)) ||
	    !dbuf_str(&b, " HTTP/1.1\r\nHost: ") || !dbuf_add(&b, hp, (size_t)(auth_end - hp)) ||
	    !dbuf_add(&b, "\r\n", 2))
		goto fail;
	/* A User-Agent or Authorization from OTEL_EXPORTER_OTLP_HEADERS wins,
	 * as it does with libcurl. */
	if (!block_has(h->extra_headers, "user-agent") &&
	    !dbuf_str(&b, "User-Agent: " USER_AGENT "\r\n"))
		goto fail;
	if (at && at > auth && !block_has(h->extra_headers, "authorization")) {
		r = add_basic_auth(&b, auth, at);
		if (r < 0)
			goto fail;
		r = -ENOMEM;
	}
	if (!dbuf_str(&b, "Content-Type: application/x-protobuf\r\n") ||
	    (h->gzip && !dbuf_str(&b, "Content-Encoding: gzip\r\n")) ||
	    !dbuf_str(&b, h->extra_headers))
		goto fail;
	bi->head = b.p;
	bi->head_len = b.len;
	return 0;
fail:
	if (b.p)
		explicit_bzero(b.p, b.cap);
	free(b.p);
	return r;
}

static int resolve(struct osh_otlp_http *h)
{
	struct addrinfo hints = { 0 }, *res = NULL;
	struct builtin *bi = &h->bi;
	unsigned n = 0;

	/* Runs on the exporter thread, which holds the shim's re-entrancy
	 * guard for life: the resolver's own sockets are never traced. */
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(bi->host, bi->port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	for (struct addrinfo *ai = res; ai && n < MAX_ADDRS; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(bi->addr[0]))
			continue;
		memcpy(&bi->addr[n], ai->ai_addr, ai->ai_addrlen);
		bi->addr_len[n] = ai->ai_addrlen;
		n++;
	}
	freeaddrinfo(res);
	bi->n_addr = n;
	return n ? 0 : -EHOSTUNREACH;
}

static void drop_conn(struct osh_otlp_http *h)
{
	if (h->bi.fd >= 0)
		close_fd(h, h->bi.fd);
	h->bi.fd = -1;
	h->bi.used = false;
}

/* Connect to the first address that answers. 0, -ECANCELED at the deadline,
 * another -errno when no address would take the connection. */
static int open_conn(struct osh_otlp_http *h)
{
	struct builtin *bi = &h->bi;
	int err = -ECONNREFUSED;

	if (bi->n_addr == 0 && resolve(h) < 0)
		return -EHOSTUNREACH;
	for (unsigned i = 0; i < bi->n_addr; i++) {
		const struct sockaddr *sa = (const struct sockaddr *)&bi->addr[i];
		int one = 1, soerr = 0, r;
		socklen_t len = sizeof(soerr);
		int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
				IPPROTO_TCP);

		if (fd < 0) {
			err = -errno;
			continue;
		}
		own(h, fd, true);
		/* The head and body go out in one sendmsg(); don't let Nagle
		 * hold back the tail of a large one. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		r = connect(fd, sa, bi->addr_len[i]);
		/* EINTR: the connection goes on in the background (connect(2)). */
		if (r < 0 && (errno == EINPROGRESS || errno == EINTR)) {
			r = wait_fd(h, fd, POLLOUT);
			if (r >= 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
				r = -errno;
			else if (r >= 0)
				r = -soerr;
		} else if (r < 0) {
			r = -errno;
		}
		if (r == 0) {
			bi->fd = fd;
			bi->used = false;
			return 0;
		}
		close_fd(h, fd);
		if (r == -ECANCELED)
			return r;
		err = r;
	}
	/* Next time, ask the resolver again: the name may point elsewhere now. */
	if (bi->named)
		bi->n_addr = 0;
	return err;
}

/* An idle keep-alive connection that is readable has been closed (or sent
 * junk): either way it cannot carry the next request. */
static bool conn_gone(struct osh_otlp_http *h)
{
	struct pollfd p = { h->bi.fd, POLLIN | POLLRDHUP, 0 };

	return poll(&p, 1, 0) != 0;
}

/* Send the request. 0 when all of it went out; 1 when the server answered
 * (or hung up) first and will not read the rest; -ECANCELED at the deadline;
 * another -errno when the connection failed. *ret_sent counts bytes sent. */
static int send_request(struct osh_otlp_http *h, struct iovec *iov, int iovcnt, size_t *ret_sent)
{
	int fd = h->bi.fd;

	while (iovcnt > 0) {
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)iovcnt };
		ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
		size_t left;

		if (n < 0) {
			int r;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			r = wait_fd(h, fd, POLLOUT | POLLIN);
			if (r < 0)
				return r;
			if ((r & POLLIN) && !(r & POLLOUT))
				return 1;
			continue;
		}
		*ret_sent += (size_t)n;
		left = (size_t)n;
		while (iovcnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

/* Feed received body bytes through the framing of @hd. Sets *done when the
 * body is complete and *extra when bytes followed it. */
static enum xfer take_body(struct osh_otlp_http *h, const struct osh_otlp_http_head *hd,
			   struct osh_otlp_http_chunked *ck, uint64_t *left, uint8_t *data,
			   size_t n, bool *done, bool *extra)
{
	size_t take = n;
	ssize_t rest = -2;
	int r;

	switch (hd->body) {
	case OSH_OTLP_BODY_NONE:
		take = 0;
		rest = (ssize_t)n;
		break;
	case OSH_OTLP_BODY_LENGTH:
		if (take > *left)
			take = (size_t)*left;
		*left -= take;
		if (*left == 0)
			rest = (ssize_t)(n - take);
		break;
	case OSH_OTLP_BODY_CHUNKED:
		rest = osh_otlp_http_dechunk(ck, data, &take);
		if (rest == -1)
			return X_INVALID;
		break;
	case OSH_OTLP_BODY_CLOSE:
		break;
	}
	r = resp_append(h, data, take);
	if (r == -E2BIG)
		return X_TOO_BIG;
	if (r < 0)
		return X_NOMEM;
	if (rest >= 0) {
		*done = true;
		*extra = rest > 0;
	}
	return X_DONE;
}

/* Read one response: its head into h->status and h->retry_after, its body
 * into h->resp. *ret_keep: the connection may carry the next request. */
static enum xfer read_response(struct osh_otlp_http *h, bool *ret_keep)
{
	struct builtin *bi = &h->bi;
	struct osh_otlp_http_head hd = { 0 };
	struct osh_otlp_http_chunked ck = { 0 };
	size_t have = 0, total = 0;
	uint64_t left = 0;
	unsigned interim = 0;
	bool in_head = true, done = false, extra = false;

	for (;;) {
		uint8_t *at = (uint8_t *)bi->rbuf + (in_head ? have : 0);
		size_t room = in_head ? sizeof(bi->rbuf) - have : sizeof(bi->rbuf);
		enum xfer x = X_DONE;
		ssize_t n;

		if (room == 0)
			return X_INVALID; /* a head over RBUF_SIZE */
		n = recv(bi->fd, at, room, 0);
		if (n < 0) {
			int r;

			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return total ? X_BROKEN : X_NOTHING;
			r = wait_fd(h, bi->fd, POLLIN);
			if (r == -ECANCELED)
				return X_ABORTED;
			if (r < 0)
				return total ? X_BROKEN : X_NOTHING;
			continue;
		}
		if (n == 0) {
			if (!in_head && hd.body == OSH_OTLP_BODY_CLOSE) {
				*ret_keep = false;
				return X_DONE;
			}
			return total ? X_BROKEN : X_NOTHING;
		}
		total += (size_t)n;
		if (!in_head) {
			x = take_body(h, &hd, &ck, &left, at, (size_t)n, &done, &extra);
		} else {
			size_t old = have, end;

			have += (size_t)n;
			while (in_head && (end = osh_otlp_http_head_end(bi->rbuf, have, old)) > 0) {
				if (osh_otlp_http_parse_head(bi->rbuf, end, &hd) < 0)
					return X_INVALID;
				memmove(bi->rbuf, bi->rbuf + end, have - end);
				have -= end;
				old = 0;
				if (hd.status >= 200) {
					in_head = false;
				} else if (hd.status == 101 || ++interim > MAX_INTERIM) {
					return X_INVALID; /* no protocol switch was asked for */
				}
			}
			if (in_head)
				continue;
			h->status = hd.status;
			snprintf(h->retry_after, sizeof(h->retry_after), "%s", hd.retry_after);
			if (hd.body == OSH_OTLP_BODY_LENGTH && hd.length > OSH_OTLP_MAX_RESPONSE) {
				h->resp_too_big = true;
				return X_TOO_BIG;
			}
			left = hd.length;
			if (hd.body == OSH_OTLP_BODY_NONE ||
			    (hd.body == OSH_OTLP_BODY_LENGTH && left == 0)) {
				done = true;
				extra = have > 0;
			} else {
				x = take_body(h, &hd, &ck, &left, (uint8_t *)bi->rbuf, have, &done,
					      &extra);
			}
		}
		if (x != X_DONE)
			return x;
		if (done) {
			*ret_keep = !hd.close && !extra;
			return X_DONE;
		}
	}
}

/* One request and its response on the current connection. */
static enum xfer exchange(struct osh_otlp_http *h, const uint8_t *body, size_t len)
{
	struct builtin *bi = &h->bi;
	char cl[64];
	int n = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n\r\n", len);
	struct iovec iov[3] = {
		{ bi->head, bi->head_len },
		{ cl, (size_t)n },
		{ (void *)body, len },
	};
	size_t head = bi->head_len + (size_t)n, sent = 0;
	bool keep = false;
	enum xfer x;
	int r;

	r = send_request(h, iov, 3, &sent);
	if (sent > head)
		h->stats.bytes_sent += sent - head;
	/* A server that hung up mid-request may have said why first (a 413,
	 * say); anything else that failed the send has no answer to read. */
	if (r == -ECANCELED)
		x = X_ABORTED;
	else if (r < 0 && r != -EPIPE && r != -ECONNRESET)
		x = X_NOTHING;
	else
		x = read_response(h, &keep);
	if (x == X_DONE && keep && r == 0) {
		bi->used = true;
		return x;
	}
	/* Anything left half sent or half read would desynchronise the next
	 * exchange: only a clean one keeps the connection. */
	drop_conn(h);
	return x;
}

static enum attempt on_status(struct osh_otlp_http *h);

static enum attempt builtin_attempt(struct osh_otlp_http *h, const uint8_t *body, size_t len)
{
	enum xfer x = X_NOTHING;

	/* At most two rounds: a request on a kept-alive connection that the
	 * server had already closed fails before any response byte; that says
	 * nothing about the collector, so it goes once more, at once, on a
	 * fresh connection (as libcurl does). */
	for (int round = 0; round < 2; round++) {
		bool reused;

		if (h->bi.fd >= 0 && conn_gone(h))
			drop_conn(h);
		reused = h->bi.fd >= 0 && h->bi.used;
		if (h->bi.fd < 0) {
			int r = open_conn(h);

			if (r == -ECANCELED)
				return ATTEMPT_ABORTED;
			if (r < 0)
				return ATTEMPT_UNREACHED;
		}
		x = exchange(h, body, len);
		if (!(x == X_NOTHING && reused))
			break;
	}
	switch (x) {
	case X_DONE:
		return on_status(h);
	case X_NOTHING:
	case X_BROKEN:
		return ATTEMPT_RETRY;
	case X_ABORTED:
		return ATTEMPT_ABORTED;
	case X_TOO_BIG:
		if (first_time(h, REPORT_RESPONSE_TOO_LARGE))
			say(h, OSH_LOG_WARN, "collector at %s sent a response over 4 MiB, dropping spans",
			    h->url);
		return ATTEMPT_DROP;
	case X_INVALID:
	case X_NOMEM:
		break;
	}
	if (first_time(h, REPORT_TRANSPORT))
		say(h, OSH_LOG_WARN, "OTLP export to %s failed: %s, dropping spans", h->url,
		    x == X_NOMEM ? "out of memory" : "malformed HTTP response");
	return ATTEMPT_DROP;
}

/* ---- libcurl ---- */

void osh_otlp_http_set_curl_library(const char *soname)
{
	curl_soname = soname ? soname : CURL_SONAME;
}

/* Load libcurl and resolve what we use: once per process. */
static bool load_curl(void)
{
	void *lib;
	const char *err;

	if (curl_state != CURL_UNTRIED)
		return curl_state == CURL_READY;
	curl_state = CURL_ABSENT;
	lib = dlopen(curl_soname, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		err = dlerror();
		snprintf(curl_why, sizeof(curl_why), "%s", err ? err : "dlopen failed");
		return false;
	}
	for (size_t i = 0; i < sizeof(curl_symbols) / sizeof(curl_symbols[0]); i++) {
		void *f = dlsym(lib, curl_symbols[i].name);

		if (!f) {
			snprintf(curl_why, sizeof(curl_why), "%s has no %s", curl_soname,
				 curl_symbols[i].name);
			return false; /* the handle stays: other users may share it */
		}
		/* POSIX: a function's address fits a void *, and back. */
		memcpy((char *)&curl + curl_symbols[i].offset, &f, sizeof(f));
	}
	/* Not thread-safe before libcurl 7.84; only the exporter thread gets here. */
	if (curl.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(curl_why, sizeof(curl_why), "curl_global_init() failed");
		return false;
	}
	curl_state = CURL_READY;
	return true;
}

static curl_socket_t open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct osh_otlp_http *h = user;
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
	if (fd < 0)
		return CURL_SOCKET_BAD;
	own(h, fd, true);
	return fd;
}

static int close_socket(void *user, curl_socket_t fd)
{
	struct osh_otlp_http *h = user;

	own(h, fd, false);
	return close(fd);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct osh_otlp_http *h = user;
	size_t len = size * nmemb;

	/* A short count aborts the transfer: CURLE_WRITE_ERROR. */
	return resp_append(h, data, len) == 0 ? len : 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
	static const char name[] = "retry-after:";
	struct osh_otlp_http *h = user;
	size_t len = size * nmemb;
	const char *v, *end;

	/* A new status line (after a 100 Continue, say) starts a new header set. */
	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		h->retry_after[0] = '\0';
		return len;
	}
	if (len < sizeof(name) - 1 || strncasecmp(data, name, sizeof(name) - 1) != 0)
		return len;
	v = data + sizeof(name) - 1;
	end = data + len;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n'))
		end--;
	trim(&v, &end);
	if ((size_t)(end - v) < sizeof(h->retry_after)) {
		memcpy(h->retry_after, v, (size_t)(end - v));
		h->retry_after[end - v] = '\0';
	}
	return len;
}

static bool curl_header(struct osh_otlp_http *h, const char *line)
{
	struct curl_slist *next = curl.slist_append(h->headers, line);

	if (!next)
		return false;
	h->headers = next;
	return true;
}

static int curl_headers(struct osh_otlp_http *h)
{
	const char *l = h->extra_headers;

	if (!curl_header(h, "Content-Type: application/x-protobuf") ||
	    /* No "Expect: 100-continue" round trip for large bodies. */
	    !curl_header(h, "Expect:") ||
	    (h->gzip && !curl_header(h, "Content-Encoding: gzip")))
		return -ENOMEM;
	while (l && *l) {
		const char *eol = strstr(l, "\r\n");
		size_t n = eol ? (size_t)(eol - l) : strlen(l);
		char *line = malloc(n + 1);
		bool ok;

		if (!line)
			return -ENOMEM;
		memcpy(line, l, n);
		line[n] = '\0';
		/* "Name;" is libcurl's spelling of an empty header ("Name:" deletes). */
		if (n && line[n - 1] == ':')
			line[n - 1] = ';';
		ok = curl_header(h, line);
		free(line);
		if (!ok)
			return -ENOMEM;
		l += eol ? n + 2 : n;
	}
	return 0;
}

/* The proxy for the collector's URL, from the variables the configuration
 * captured at load (the same as libcurl reads, which ignores HTTP_PROXY in
 * upper case, see its "httpoxy" notes; an empty one is not kept), before
 * no_proxy: NULL for none. */
static const char *proxy_for(const struct osh_config *cfg, bool https)
{
	const char *p = https ? cfg->https_proxy : cfg->http_proxy;

	return p ? p : cfg->all_proxy;
}

static bool set_str(CURL *e, CURLoption opt, const char *value)
{
	if (!value || !*value)
		return true;
	return curl.easy_setopt(e, opt, value) == CURLE_OK;
}

static int curl_options(struct osh_otlp_http *h)
{
	const struct osh_config *cfg = h->cfg;
	CURL *e = h->easy;
	bool ok = true;

	ok &= curl.easy_setopt(e, CURLOPT_URL, cfg->traces_url) == CURLE_OK;
	/* Signals belong to the host: never let curl raise SIGALRM. */
	ok &= curl.easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
	ok &= curl.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
#endif
	ok &= curl.easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_HTTPHEADER, h->headers) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_WRITEDATA, (void *)h) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_HEADERDATA, (void *)h) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_OPENSOCKETDATA, (void *)h) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_CLOSESOCKETDATA, (void *)h) == CURLE_OK;
	ok &= curl.easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
			       (curl_off_t)OSH_OTLP_MAX_RESPONSE) == CURLE_OK;
	ok &= set_str(e, CURLOPT_CAINFO, cfg->otlp_certificate);
	ok &= set_str(e, CURLOPT_SSLCERT, cfg->otlp_client_certificate);
	ok &= set_str(e, CURLOPT_SSLKEY, cfg->otlp_client_key);
	/* The proxy as the environment said at load, given explicitly: libcurl
	 * would otherwise read the variables on this thread at each transfer,
	 * from an environment the program may have rewritten since, or be
	 * writing. An empty proxy is none, an empty no_proxy excludes no host. */
	{
		const char *proxy = proxy_for(cfg, cfg->traces_url &&
							  strncasecmp(cfg->traces_url, "https:", 6) == 0);

		/* A libcurl built without proxy support refuses both:
		 * fatal only when a proxy is asked for. */
		if (curl.easy_setopt(e, CURLOPT_PROXY, proxy ? proxy : "") != CURLE_OK && proxy)
			ok = false;
		if (curl.easy_setopt(e, CURLOPT_NOPROXY, cfg->no_proxy ? cfg->no_proxy : "") !=
			    CURLE_OK &&
		    proxy && cfg->no_proxy)
			ok = false;
	}
	return ok ? 0 : -EINVAL;
}

static void curl_teardown(struct osh_otlp_http *h)
{
	/* The easy handle is never left in the multi between sends. */
	if (h->easy)
		curl.easy_cleanup(h->easy);
	if (h->multi)
		curl.multi_cleanup(h->multi);
	if (h->headers)
		curl.slist_free_all(h->headers);
	h->easy = NULL;
	h->multi = NULL;
	h->headers = NULL;
}

/* libcurl, loaded and configured on the first send that needs it. */
static bool curl_ready(struct osh_otlp_http *h)
{
	if (h->easy)
		return true;
	if (!load_curl()) {
		if (first_time(h, REPORT_CURL))
			say(h, OSH_LOG_ERROR, "cannot load %s for OTLP export to %s (%s), dropping spans",
			    curl_soname, h->url, curl_why);
		return false;
	}
	h->multi = curl.multi_init();
	h->easy = curl.easy_init();
	if (!h->multi || !h->easy || curl_headers(h) < 0 || curl_options(h) < 0) {
		curl_teardown(h);
		if (first_time(h, REPORT_CURL))
			say(h, OSH_LOG_ERROR, "cannot set up libcurl for OTLP export to %s, dropping spans",
			    h->url);
		return false;
	}
	return true;
}

/* Run the transfer until it completes or the deadline passes. Returns the
 * curl result, or -1 when aborted at the deadline. */
static int curl_transfer(struct osh_otlp_http *h)
{
	int running = 1, result = -1;
	CURLMsg *msg;
	int queued;

	if (curl.multi_add_handle(h->multi, h->easy) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	for (;;) {
		struct curl_waitfd w = { h->wake, CURL_WAIT_POLLIN, 0 };
		uint64_t now, dl;

		if (curl.multi_perform(h->multi, &running) != CURLM_OK) {
			result = CURLE_OUT_OF_MEMORY;
			break;
		}
		if (!running)
			break;
		now = osh_clock_monotonic_ns();
		dl = deadline(h);
		if (now >= dl)
			break;
		if (curl.multi_poll(h->multi, &w, h->wake_dead ? 0 : 1, poll_ms(now, dl), NULL) !=
		    CURLM_OK) {
			result = CURLE_OUT_OF_MEMORY;
			break;
		}
		if (w.revents)
			drain_wake(h);
	}
	while ((msg = curl.multi_info_read(h->multi, &queued)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->easy)
			result = (int)msg->data.result;
	/* Removing a handle mid-transfer closes its connection: nothing half
	 * sent is ever reused. */
	curl.multi_remove_handle(h->multi, h->easy);
	return result;
}

static enum attempt curl_classify(struct osh_otlp_http *h, int result)
{
	switch (result) {
	case -1:
		return ATTEMPT_ABORTED;
	case CURLE_OK:
		break;
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
		return ATTEMPT_UNREACHED;
	case CURLE_GOT_NOTHING:		/* empty reply */
	case CURLE_SEND_ERROR:		/* connection reset */
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return ATTEMPT_RETRY;
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		if (h->resp_too_big || result == CURLE_FILESIZE_EXCEEDED) {
			if (first_time(h, REPORT_RESPONSE_TOO_LARGE))
				say(h, OSH_LOG_WARN,
				    "collector at %s sent a response over 4 MiB, dropping spans",
				    h->url);
			return ATTEMPT_DROP;
		}
		/* fall through */
	default:
		if (first_time(h, REPORT_TRANSPORT))
			say(h, OSH_LOG_WARN, "OTLP export to %s failed: %s, dropping spans",
			    h->url, curl.easy_strerror((CURLcode)result));
		return ATTEMPT_DROP;
	}
	h->status = 0;
	curl.easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
	return on_status(h);
}

static enum attempt curl_attempt(struct osh_otlp_http *h, const uint8_t *body, size_t len)
{
	curl_off_t sent = 0;
	int result;

	curl.easy_setopt(h->easy, CURLOPT_POSTFIELDS, (const char *)body);
	curl.easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	result = curl_transfer(h);
	if (curl.easy_getinfo(h->easy, CURLINFO_SIZE_UPLOAD_T, &sent) == CURLE_OK && sent > 0)
		h->stats.bytes_sent += (uint64_t)sent;
	return curl_classify(h, result);
}

/* ---- one attempt, either engine ---- */

static enum attempt on_success(struct osh_otlp_http *h)
{
	int64_t rejected;
	char msg[256];

	if (osh_otlp_decode_response(h->resp, h->resp_len, &rejected, msg, sizeof(msg)) < 0)
		return ATTEMPT_OK; /* the status says accepted; the body is a bonus */
	/* The message is the collector's text, bound for the host's stderr. */
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	if (rejected > 0) {
		h->stats.rejected_spans += (uint64_t)rejected;
		if (first_time(h, REPORT_REJECTED))
			say(h, OSH_LOG_WARN, "collector at %s rejected %lld span(s): %s", h->url,
			    (long long)rejected, msg[0] ? msg : "(no message)");
	} else if (msg[0] && first_time(h, REPORT_PARTIAL_MESSAGE)) {
		say(h, OSH_LOG_INFO, "collector at %s: %s", h->url, msg);
	}
	return ATTEMPT_OK;
}

static enum attempt on_status(struct osh_otlp_http *h)
{
	long status = h->status;

	if (status >= 200 && status < 300)
		return on_success(h);
	if (status == 429 || status == 502 || status == 503 || status == 504)
		return ATTEMPT_RETRY;
	if (first_time(h, REPORT_STATUS))
		say(h, OSH_LOG_WARN, "OTLP export to %s failed: HTTP %ld, dropping spans", h->url,
		    status);
	return ATTEMPT_DROP;
}

static enum attempt attempt(struct osh_otlp_http *h, const uint8_t *body, size_t len)
{
	h->status = 0;
	h->resp_len = 0;
	h->resp_too_big = false;
	h->retry_after[0] = '\0';
	if (!h->builtin && !curl_ready(h))
		return ATTEMPT_DROP;
	h->stats.requests++;
	return h->builtin ? builtin_attempt(h, body, len) : curl_attempt(h, body, len);
}

static int compress_body(struct osh_otlp_http *h, const uint8_t *body, size_t len,
			 const uint8_t **ret_buf, size_t *ret_len)
{
	size_t bound;

	if (deflateReset(&h->zs) != Z_OK)
		return -EINVAL;
	bound = deflateBound(&h->zs, (uLong)len);
	if (bound > h->gz_cap) {
		uint8_t *p = malloc(bound);

		if (!p)
			return -ENOMEM;
		free(h->gz);
		h->gz = p;
		h->gz_cap = bound;
	}
	h->zs.next_in = (Bytef *)body;
	h->zs.avail_in = (uInt)len;
	h->zs.next_out = h->gz;
	h->zs.avail_out = (uInt)h->gz_cap;
	if (deflate(&h->zs, Z_FINISH) != Z_STREAM_END)
		return -EINVAL;
	*ret_buf = h->gz;
	*ret_len = h->gz_cap - h->zs.avail_out;
	return 0;
}

int osh_otlp_http_send(struct osh_otlp_http *h, const uint8_t *body, size_t len,
		       uint64_t deadline_ns, bool final)
{
	uint64_t backoff = h->retry_initial_ms;
	bool reached = false;

	if (len > OSH_OTLP_MAX_REQUEST) {
		if (first_time(h, REPORT_REQUEST_TOO_LARGE))
			say(h, OSH_LOG_WARN, "OTLP request of %zu bytes exceeds 64 MiB, dropping spans",
			    len);
		return OSH_EXPORT_DROPPED;
	}
	if (h->gzip && compress_body(h, body, len, &body, &len) < 0) {
		if (first_time(h, REPORT_GZIP))
			say(h, OSH_LOG_WARN, "cannot gzip an OTLP request, dropping spans");
		return OSH_EXPORT_DROPPED;
	}
	begin_send(h, deadline_ns);

	for (unsigned n = 0;; n++) {
		uint64_t wait_ms, ra_ms = 0;
		bool have_ra;

		/* Out of time before the first attempt says nothing about the
		 * collector: only failed connections make it unreachable. */
		if (osh_clock_monotonic_ns() >= deadline(h))
			return n == 0 || reached ? OSH_EXPORT_GAVE_UP : OSH_EXPORT_UNREACHABLE;
		if (n > 0)
			h->stats.retries++;
		switch (attempt(h, body, len)) {
		case ATTEMPT_OK:
			return OSH_EXPORT_OK;
		case ATTEMPT_DROP:
			return OSH_EXPORT_DROPPED;
		case ATTEMPT_ABORTED:
			return OSH_EXPORT_GAVE_UP;
		case ATTEMPT_RETRY:
			reached = true;
			break;
		case ATTEMPT_UNREACHED:
			break;
		}
		if (final)
			return reached ? OSH_EXPORT_GAVE_UP : OSH_EXPORT_UNREACHABLE;

		/* Retry-After is a floor on the wait, not a replacement for backoff:
		 * "Retry-After: 0" must not turn into a busy loop. */
		have_ra = h->retry_after[0] &&
			  osh_otlp_http_parse_retry_after(h->retry_after, time(NULL), &ra_ms);
		wait_ms = jitter(h, backoff);
		if (have_ra && ra_ms > wait_ms)
			wait_ms = ra_ms;
		backoff = backoff * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : backoff * 2;
		/* A wait that would end past the deadline gives up now. */
		if (!wait_until(h, osh_clock_monotonic_ns() + wait_ms * NS_PER_MS))
			return reached ? OSH_EXPORT_GAVE_UP : OSH_EXPORT_UNREACHABLE;
	}
}

/* ---- choosing the engine, setup ---- */

/* Is @host covered by a no_proxy list? Names match themselves and their
 * subdomains (a leading dot is optional), "*" matches everything. Anything
 * subtler (CIDR ranges) does not match here: the URL then goes to libcurl,
 * which knows the whole syntax. */
static bool no_proxy_covers(const char *list, const char *host)
{
	size_t hl = strlen(host);

	for (const char *p = list; *p;) {
		const char *e = p + strcspn(p, ", ");
		const char *s = p;
		size_t n;

		p = *e ? e + 1 : e;
		if (s < e && *s == '.')
			s++;
		if (s < e && *s == '[' && e[-1] == ']') {
			s++;
			e--;
		}
		n = (size_t)(e - s);
		if (n == 0)
			continue;
		if (n == 1 && *s == '*')
			return true;
		if (hl == n && strncasecmp(host, s, n) == 0)
			return true;
		if (hl > n && host[hl - n - 1] == '.' && strncasecmp(host + hl - n, s, n) == 0)
			return true;
	}
	return false;
}

/* Would libcurl send a request for http://@host/ through a proxy? The
 * built-in client only talks to the collector directly, so a proxy sends
 * the URL to libcurl. */
static bool proxy_applies(const struct osh_config *cfg, const char *host)
{
	if (!proxy_for(cfg, false))
		return false;
	return !(cfg->no_proxy && no_proxy_covers(cfg->no_proxy, host));
}

enum choice { CHOICE_AUTO, CHOICE_CURL, CHOICE_BUILTIN };

static enum choice transport_choice(struct osh_otlp_http *h)
{
	const char *v = h->cfg->otlp_transport; /* never empty: unset */

	if (!v)
		return CHOICE_AUTO;
	if (strcmp(v, "curl") == 0)
		return CHOICE_CURL;
	if (strcmp(v, "builtin") == 0)
		return CHOICE_BUILTIN;
	say(h, OSH_LOG_WARN, "OTELSHIM_OTLP_TRANSPORT=%.32s is neither curl nor builtin, ignoring it",
	    v);
	return CHOICE_AUTO;
}

/* 0 with h->builtin set or not, or -ENOMEM. */
static int pick_engine(struct osh_otlp_http *h, const char *url)
{
	enum choice c = transport_choice(h);
	int r;

	h->builtin = false;
	if (c == CHOICE_CURL)
		return 0;
	r = builtin_setup(h, url);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		if (c == CHOICE_BUILTIN)
			say(h, OSH_LOG_WARN,
			    "OTELSHIM_OTLP_TRANSPORT=builtin cannot send to %s (plain http:// only), "
			    "using libcurl",
			    h->url);
		return 0;
	}
	h->builtin = c == CHOICE_BUILTIN || !proxy_applies(h->cfg, h->bi.host);
	return 0;
}

struct osh_otlp_http *osh_otlp_http_create(const struct osh_config *cfg,
					   const struct osh_otlp_host *host)
{
	struct osh_otlp_http *h = calloc(1, sizeof(*h));
	size_t skipped = 0;

	if (!h)
		return NULL;
	if (host)
		h->host = *host;
	h->cfg = cfg;
	h->bi.fd = -1;
	h->wake = -1;
	osh_otlp_http_redact_url(cfg->traces_url ? cfg->traces_url : "", h->url, sizeof(h->url));
	h->retry_initial_ms = cfg->retry_initial_ms ? cfg->retry_initial_ms : 1;
	h->gzip = cfg->otlp_gzip;
	atomic_init(&h->deadline, UINT64_MAX);
	atomic_init(&h->cap, UINT64_MAX);
	/* Jitter only has to decorrelate exporters: time and address will do. */
	h->rng = osh_clock_realtime_ns() ^ ((uint64_t)(uintptr_t)h << 16) ^ (uint64_t)getpid();
	if (!h->rng)
		h->rng = 0x9e3779b97f4a7c15ull;

	if (!cfg->traces_url || !*cfg->traces_url)
		goto fail;
	if (h->gzip) {
		/* windowBits 15 + 16: a gzip wrapper, as Content-Encoding: gzip wants.
		 * Fastest level: this runs on someone else's CPU. */
		if (deflateInit2(&h->zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			goto fail;
		h->zs_ready = true;
	}
	if (osh_otlp_http_parse_headers(cfg->otlp_headers, &h->extra_headers, &skipped) < 0)
		goto fail;
	if (skipped && first_time(h, REPORT_HEADERS))
		say(h, OSH_LOG_WARN,
		    "OTEL_EXPORTER_OTLP_HEADERS: %zu malformed or reserved member(s), ignoring them",
		    skipped);
	if (pick_engine(h, cfg->traces_url) < 0)
		goto fail;
	/* The built-in client does all its I/O on this thread, so it can
	 * live in a table of its own; then no thread but this one can write
	 * a wake fd, so there is none, and waits poll in short slices
	 * instead (PRIVATE_POLL_MS). libcurl may resolve names on threads
	 * of its own, which would run the shim's hooks with numbers from
	 * this table: it stays in the host's. */
	if (!(h->builtin && h->host.private_fds && h->host.private_fds())) {
		h->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (h->wake < 0)
			goto fail;
		own(h, h->wake, true);
	}
	return h;
fail:
	say(h, OSH_LOG_ERROR, "cannot set up the OTLP/HTTP exporter for %s", h->url);
	osh_otlp_http_destroy(h);
	return NULL;
}

void osh_otlp_http_destroy(struct osh_otlp_http *h)
{
	if (!h)
		return;
	curl_teardown(h);
	drop_conn(h);
	if (h->bi.head)
		explicit_bzero(h->bi.head, h->bi.head_len); /* may hold credentials */
	free(h->bi.head);
	if (h->wake >= 0)
		close_fd(h, h->wake);
	if (h->zs_ready)
		deflateEnd(&h->zs);
	free(h->extra_headers);
	free(h->gz);
	free(h->resp);
	free(h);
}

void osh_otlp_http_stats(const struct osh_otlp_http *h, struct osh_otlp_stats *ret)
{
	*ret = h->stats;
}

bool osh_otlp_http_is_builtin(const struct osh_otlp_http *h)
{
	return h->builtin;
}
