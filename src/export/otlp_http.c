/* OTLP/HTTP transport over libcurl (see otlp_http.h).
 *
 * The exporter thread lives inside someone else's multithreaded process:
 * CURLOPT_NOSIGNAL is always on (no SIGALRM around name lookups), sockets are
 * opened here so the shim can mark them as its own (its close() hook then
 * refuses to let the host close them) and get SOCK_CLOEXEC (the host may
 * fork and exec), and every wait happens in curl_multi_poll(), which
 * curl_multi_wakeup() from another thread interrupts.
 *
 * Deadlines are CLOCK_MONOTONIC nanoseconds in one atomic that interrupt()
 * may pull in at any time; the transfer loop and the backoff wait re-read it
 * after every wake-up.
 */
#include "buildconf.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "config.h"
#include "diag.h"
#include "export/module.h"
#include "export/otlp_encode.h"
#include "export/otlp_http.h"

#define USER_AGENT "otelshim/" OSH_VERSION " OTel-OTLP-Exporter-C/" OSH_VERSION

/* Backoff steps stop doubling here; the deadline bounds the total anyway. */
#define MAX_BACKOFF_MS (60u * 1000u)
/* Longest single curl_multi_poll() sleep. interrupt() wakes the poll (a
 * wakeup sent while not polling makes the next poll return at once), so this
 * only bounds the damage should a wakeup ever be lost. */
#define MAX_POLL_MS 10000

#define NS_PER_MS 1000000ull

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
};

/* What one HTTP attempt came to. */
enum attempt {
	ATTEMPT_OK,
	ATTEMPT_DROP,		/* permanent: do not retry */
	ATTEMPT_RETRY,		/* the collector answered (or hung up): retry */
	ATTEMPT_UNREACHED,	/* could not resolve or connect */
	ATTEMPT_ABORTED,	/* the deadline passed mid-transfer */
};

struct osh_otlp_http {
	CURLM *multi;
	CURL *easy;
	struct curl_slist *headers;
	struct osh_otlp_host host;
	char url[512];		/* traces_url without userinfo, for messages */
	uint32_t retry_initial_ms;

	bool gzip;
	bool zs_ready;
	z_stream zs;
	uint8_t *gz;
	size_t gz_cap;

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

/* ---- pure helpers (exposed for tests) ---- */

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode [s, s+len) into @out (at least @len + 1 bytes). */
static bool percent_decode(const char *s, size_t len, char *out, size_t *ret_len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%') {
			int hi, lo;

			if (i + 2 >= len)
				return false;
			hi = hex_value(s[i + 1]);
			lo = hex_value(s[i + 2]);
			if (hi < 0 || lo < 0)
				return false;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	*ret_len = o;
	return true;
}

static void trim(const char **s, const char **end)
{
	while (*s < *end && is_ows(**s))
		(*s)++;
	while (*end > *s && is_ows((*end)[-1]))
		(*end)--;
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

/* One "k=v" member into "k: v" in @line (room for both plus 3 bytes). */
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
	if (!percent_decode(k, (size_t)(k_end - k), line, &klen) || klen == 0)
		return false;
	for (size_t i = 0; i < klen; i++)
		if (!is_tchar((unsigned char)line[i]))
			return false;
	if (reserved_header(line))
		return false;
	val = line + klen + 2;
	if (!percent_decode(v, (size_t)(v_end - v), val, &vlen))
		return false;
	for (size_t i = 0; i < vlen; i++) {
		unsigned char c = (unsigned char)val[i];

		/* No CR/LF/NUL smuggled in through %-escapes: one header, one line. */
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	if (vlen == 0) {
		/* "Name;" is libcurl's spelling of an empty header ("Name:" deletes). */
		line[klen] = ';';
		line[klen + 1] = '\0';
	} else {
		line[klen] = ':';
		line[klen + 1] = ' ';
	}
	return true;
}

int osh_otlp_http_parse_headers(const char *text, struct curl_slist **list, size_t *ret_skipped)
{
	size_t skipped = 0;
	const char *p = text ? text : "";

	while (*p) {
		const char *m = p, *m_end = p + strcspn(p, ",");
		const char *t = m, *t_end = m_end;
		struct curl_slist *next;
		char *line;

		p = *m_end ? m_end + 1 : m_end;
		trim(&t, &t_end);
		if (t == t_end)
			continue; /* empty member ("a=b,,c=d", trailing comma) */
		line = malloc((size_t)(m_end - m) + 4);
		if (!line)
			return -ENOMEM;
		if (!header_line(m, m_end, line)) {
			skipped++;
			free(line);
			continue;
		}
		next = curl_slist_append(*list, line);
		free(line);
		if (!next)
			return -ENOMEM;
		*list = next;
	}
	*ret_skipped = skipped;
	return 0;
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
	/* An HTTP-date has a weekday or month name: reject what curl_getdate()
	 * would read as a bare time or number ("-1", "12:00"). */
	if (!strpbrk(buf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
		return false;
	when = curl_getdate(buf, NULL);
	if (when == -1)
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

/* ---- libcurl callbacks ---- */

static curl_socket_t open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct osh_otlp_http *h = user;
	int fd;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
	if (fd < 0)
		return CURL_SOCKET_BAD;
	if (h->host.own_fd)
		h->host.own_fd(fd, true);
	return fd;
}

static int close_socket(void *user, curl_socket_t fd)
{
	struct osh_otlp_http *h = user;

	/* Disown first: once closed, the number may be reused by the host. */
	if (h->host.own_fd)
		h->host.own_fd(fd, false);
	return close(fd);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct osh_otlp_http *h = user;
	size_t len = size * nmemb;

	if (len > OSH_OTLP_MAX_RESPONSE - h->resp_len) {
		h->resp_too_big = true;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
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
			return 0;
		h->resp = p;
		h->resp_cap = cap;
	}
	memcpy(h->resp + h->resp_len, data, len);
	h->resp_len += len;
	return len;
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

/* ---- setup ---- */

static int setup_headers(struct osh_otlp_http *h, const struct osh_config *cfg)
{
	static const char *const fixed[] = {
		"Content-Type: application/x-protobuf",
		/* No "Expect: 100-continue" round trip for large bodies. */
		"Expect:",
	};
	struct curl_slist *next;
	size_t skipped = 0;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		next = curl_slist_append(h->headers, fixed[i]);
		if (!next)
			return -ENOMEM;
		h->headers = next;
	}
	if (cfg->otlp_gzip) {
		next = curl_slist_append(h->headers, "Content-Encoding: gzip");
		if (!next)
			return -ENOMEM;
		h->headers = next;
	}
	if (osh_otlp_http_parse_headers(cfg->otlp_headers, &h->headers, &skipped) < 0)
		return -ENOMEM;
	if (skipped && first_time(h, REPORT_HEADERS))
		say(h, OSH_LOG_WARN,
		    "OTEL_EXPORTER_OTLP_HEADERS: %zu malformed or reserved member(s), ignoring them",
		    skipped);
	return 0;
}

static bool set_str(CURL *e, CURLoption opt, const char *value)
{
	if (!value || !*value)
		return true;
	return curl_easy_setopt(e, opt, value) == CURLE_OK;
}

static int setup_easy(struct osh_otlp_http *h, const struct osh_config *cfg)
{
	CURL *e = h->easy;
	bool ok = true;

	ok &= curl_easy_setopt(e, CURLOPT_URL, cfg->traces_url) == CURLE_OK;
	/* Signals belong to the host: never let curl raise SIGALRM. */
	ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075500
	ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
#endif
	ok &= curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_USERAGENT, USER_AGENT) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEDATA, h) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HEADERDATA, h) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, h) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
			       (curl_off_t)OSH_OTLP_MAX_RESPONSE) == CURLE_OK;
	ok &= set_str(e, CURLOPT_CAINFO, cfg->otlp_certificate);
	ok &= set_str(e, CURLOPT_SSLCERT, cfg->otlp_client_certificate);
	ok &= set_str(e, CURLOPT_SSLKEY, cfg->otlp_client_key);
	return ok ? 0 : -EINVAL;
}

struct osh_otlp_http *osh_otlp_http_create(const struct osh_config *cfg,
					   const struct osh_otlp_host *host)
{
	struct osh_otlp_http *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	if (host)
		h->host = *host;
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
	h->multi = curl_multi_init();
	h->easy = curl_easy_init();
	if (!h->multi || !h->easy)
		goto fail;
	if (setup_headers(h, cfg) < 0 || setup_easy(h, cfg) < 0)
		goto fail;
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
	/* The easy handle is never left in the multi between sends. */
	if (h->easy)
		curl_easy_cleanup(h->easy);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	curl_slist_free_all(h->headers);
	if (h->zs_ready)
		deflateEnd(&h->zs);
	free(h->gz);
	free(h->resp);
	free(h);
}

/* ---- deadlines ---- */

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
	curl_multi_wakeup(h->multi);
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

/* Milliseconds for curl_multi_poll() from now to @until (rounded up, so the
 * wake-up lands at or after it), bounded by MAX_POLL_MS. */
static int poll_ms(uint64_t now, uint64_t until)
{
	uint64_t ms;

	if (until <= now)
		return 0;
	ms = (until - now + NS_PER_MS - 1) / NS_PER_MS;
	return ms > MAX_POLL_MS ? MAX_POLL_MS : (int)ms;
}

/* Sleep until @until unless the deadline comes first (then false). Nothing
 * is in the multi handle, so only the timeout or a wakeup ends the poll. */
static bool wait_until(struct osh_otlp_http *h, uint64_t until)
{
	for (;;) {
		uint64_t now = osh_clock_monotonic_ns();
		uint64_t dl = deadline(h);

		if (until >= dl || now >= dl)
			return false;
		if (now >= until)
			return true;
		if (curl_multi_poll(h->multi, NULL, 0, poll_ms(now, until), NULL) != CURLM_OK)
			return false;
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

/* ---- one attempt ---- */

/* Run the transfer until it completes or the deadline passes. Returns the
 * curl result, or -1 when aborted at the deadline. */
static int transfer(struct osh_otlp_http *h)
{
	int running = 1, result = -1;
	CURLMsg *msg;
	int queued;

	if (curl_multi_add_handle(h->multi, h->easy) != CURLM_OK)
		return CURLE_OUT_OF_MEMORY;
	for (;;) {
		uint64_t now, dl;

		if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
			result = CURLE_OUT_OF_MEMORY;
			break;
		}
		if (!running)
			break;
		now = osh_clock_monotonic_ns();
		dl = deadline(h);
		if (now >= dl)
			break;
		if (curl_multi_poll(h->multi, NULL, 0, poll_ms(now, dl), NULL) != CURLM_OK) {
			result = CURLE_OUT_OF_MEMORY;
			break;
		}
	}
	while ((msg = curl_multi_info_read(h->multi, &queued)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == h->easy)
			result = (int)msg->data.result;
	/* Removing a handle mid-transfer closes its connection: nothing half
	 * sent is ever reused. */
	curl_multi_remove_handle(h->multi, h->easy);
	return result;
}

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

static enum attempt classify(struct osh_otlp_http *h, int result)
{
	long status = 0;

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
			    h->url, curl_easy_strerror((CURLcode)result));
		return ATTEMPT_DROP;
	}

	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
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
	curl_off_t sent = 0;
	int result;

	h->resp_len = 0;
	h->resp_too_big = false;
	h->retry_after[0] = '\0';
	curl_easy_setopt(h->easy, CURLOPT_POSTFIELDS, (const char *)body);
	curl_easy_setopt(h->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	result = transfer(h);
	h->stats.requests++;
	if (curl_easy_getinfo(h->easy, CURLINFO_SIZE_UPLOAD_T, &sent) == CURLE_OK && sent > 0)
		h->stats.bytes_sent += (uint64_t)sent;
	return classify(h, result);
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

void osh_otlp_http_stats(const struct osh_otlp_http *h, struct osh_otlp_stats *ret)
{
	*ret = h->stats;
}
