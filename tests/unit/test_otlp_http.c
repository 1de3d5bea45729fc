/* OTLP/HTTP transport: the pure helpers by table (the response head parser
 * and the chunked decoder also byte at a time), then the whole transport
 * against a tiny HTTP/1.1 server thread on 127.0.0.1 that answers from a
 * script and records every request (head, body, arrival time, connection).
 *
 * Every transport test runs twice, in suites otlp_http_builtin and
 * otlp_http_curl (OTELSHIM_OTLP_TRANSPORT forces the engine; the server
 * speaks plain HTTP, so libcurl is exercised over http:// too). Suite
 * otlp_http_auto covers the choice itself. Criterion runs every test in its
 * own process, and this program does not link libcurl: whether libcurl is
 * mapped after a test is the test's own doing. */
#include "buildconf.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include "clock.h"
#include "config.h"
#include "diag.h"
#include "export/module.h"
#include "export/otlp_encode.h"
#include "export/otlp_http.h"
#include "resource.h"
#include "span.h"

extern const struct osh_otlp_module osh_otlp_module_v1;

/* ---- host callbacks: what the module tells the shim ---- */

#define MAX_LOGS 32
static char logs[MAX_LOGS][512];
static int log_levels[MAX_LOGS];
static int n_logs;

static void host_log(int level, const char *msg)
{
	if (n_logs < MAX_LOGS) {
		snprintf(logs[n_logs], sizeof(logs[0]), "%s", msg);
		log_levels[n_logs] = level;
	}
	n_logs++;
}

/* Every owned fd, and the sockets among them (the rest is the wake fd). */
static int owned_now, owned_total, disowned_total;
static int socks_now, socks_total;

static void host_own_fd(int fd, bool owned)
{
	struct stat st;
	bool sock;

	cr_assert_geq(fd, 0);
	/* Disowning comes before close(), so the fd is still there to look at. */
	cr_assert_eq(fstat(fd, &st), 0, "own_fd(%d, %d) on a closed fd", fd, owned);
	sock = S_ISSOCK(st.st_mode);
	if (owned) {
		owned_now++;
		owned_total++;
		socks_now += sock;
		socks_total += sock;
	} else {
		owned_now--;
		disowned_total++;
		socks_now -= sock;
	}
}

static const struct osh_otlp_host host = { .log = host_log, .own_fd = host_own_fd };

static const char *transport = "auto";

static void setup(void)
{
	/* A proxy from the environment would swallow requests to 127.0.0.1. */
	static const char *const vars[] = {
		"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
		"ALL_PROXY", "no_proxy", "NO_PROXY", "OTELSHIM_OTLP_TRANSPORT",
	};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static void setup_builtin(void)
{
	setup();
	transport = "builtin";
	setenv("OTELSHIM_OTLP_TRANSPORT", transport, 1);
}

static void setup_curl(void)
{
	setup();
	transport = "curl";
	setenv("OTELSHIM_OTLP_TRANSPORT", transport, 1);
}

/* One body, two tests: once per engine. */
#define TRANSPORT_TEST(name)                                                          \
	static void name##_body(void);                                                \
	Test(otlp_http_builtin, name, .init = setup_builtin, .timeout = 30)           \
	{                                                                             \
		name##_body();                                                        \
	}                                                                             \
	Test(otlp_http_curl, name, .init = setup_curl, .timeout = 30)                 \
	{                                                                             \
		name##_body();                                                        \
	}                                                                             \
	static void name##_body(void)

/* A transport that really uses the engine this test is about. */
static struct osh_otlp_http *make(const struct osh_config *cfg)
{
	struct osh_otlp_http *h = osh_otlp_http_create(cfg, &host);

	cr_assert_not_null(h);
	if (strcmp(transport, "auto") != 0)
		cr_assert_eq(osh_otlp_http_is_builtin(h), strcmp(transport, "builtin") == 0,
			     "engine for %s", transport);
	return h;
}

static bool libcurl_mapped(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[1024];
	bool found = false;

	cr_assert_not_null(f);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, "libcurl") != NULL;
	fclose(f);
	return found;
}

/* ---- pure helpers ---- */

/* "\r\n" as "|", for readable tables. */
static char *bars(const char *block)
{
	static char buf[1024];
	size_t o = 0;

	for (const char *c = block; *c && o + 1 < sizeof(buf); c++) {
		if (c[0] == '\r' && c[1] == '\n') {
			buf[o++] = '|';
			c++;
		} else {
			buf[o++] = *c;
		}
	}
	buf[o] = '\0';
	return buf;
}

Test(otlp_http, parse_headers)
{
	static const struct {
		const char *in;
		const char *out;
		size_t skipped;
	} cases[] = {
		{ "", "", 0 },
		{ "api-key=secret", "api-key: secret|", 0 },
		{ "a=1,b=2", "a: 1|b: 2|", 0 },
		{ " a = 1 ,\tb=2\t", "a: 1|b: 2|", 0 },
		{ "authorization=Bearer%20abc", "authorization: Bearer abc|", 0 },
		{ "x=a%2Cb%3Dc", "x: a,b=c|", 0 },
		{ "x=%20padded%20", "x:  padded |", 0 },
		{ "x=a=b", "x: a=b|", 0 },
		{ "x=", "x:|", 0 },
		{ "a=1,,b=2,", "a: 1|b: 2|", 0 },
		{ "x%2Dy=1", "x-y: 1|", 0 },
		{ "novalue", "", 1 },
		{ "=v", "", 1 },
		{ " =v", "", 1 },
		{ "bad key=v,ok=1", "ok: 1|", 1 },
		{ "k:=v", "", 1 },
		{ "k=%zz,ok=1", "ok: 1|", 1 },
		{ "k=%2", "", 1 },
		{ "k=%", "", 1 },
		{ "k=a%0D%0AInjected: 1", "", 1 },
		{ "k=a%00b", "", 1 },
		{ "k=tab%09ok", "k: tab\tok|", 0 },
		{ "Content-Type=text/plain,content-encoding=br,Host=x,expect=1", "", 4 },
		{ "transfer-encoding=chunked,Content-Length=1", "", 2 },
		{ "a=1,bad,c=3,=4", "a: 1|c: 3|", 2 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *block = NULL;
		size_t skipped = 99;

		cr_assert_eq(osh_otlp_http_parse_headers(cases[i].in, &block, &skipped), 0,
			     "case %zu", i);
		cr_assert_not_null(block);
		cr_assert_str_eq(bars(block), cases[i].out, "case %zu (%s)", i, cases[i].in);
		cr_assert_eq(skipped, cases[i].skipped, "case %zu (%s)", i, cases[i].in);
		free(block);
	}
}

Test(otlp_http, parse_headers_null)
{
	char *block = NULL;
	size_t skipped = 5;

	cr_assert_eq(osh_otlp_http_parse_headers(NULL, &block, &skipped), 0);
	cr_assert_eq(skipped, 0);
	cr_assert_str_eq(block, "");
	free(block);
}

Test(otlp_http, parse_retry_after)
{
	/* Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date. */
	const time_t now = 784111777;
	static const struct {
		const char *in;
		bool ok;
		uint64_t ms;
	} cases[] = {
		{ "0", true, 0 },
		{ "1", true, 1000 },
		{ " 120 ", true, 120000 },
		{ "Sun, 06 Nov 1994 08:49:47 GMT", true, 10000 },
		{ "Sunday, 06-Nov-94 08:50:37 GMT", true, 60000 },
		{ "Sun Nov  6 08:49:39 1994", true, 2000 },
		{ "Sun, 06 Nov 1994 08:00:00 GMT", true, 0 }, /* in the past */
		{ "Sun, 06 Nov 1994 08:49:37 GMT", true, 0 }, /* now */
		{ "Tue, 08 Nov 1994 08:49:37 GMT", true, 2 * 86400 * 1000ull },
		{ "sun, 06 nov 1994 08:49:47 gmt", true, 10000 },
		{ "Sun, 06 Nov 1994 8:49:47 GMT", true, 10000 },
		{ "Sun, 06 Nov 1994 08:49:47 UTC", true, 10000 },
		{ "Thu, 01 Jan 2037 00:00:00 GMT", true, (2114380800ull - 784111777ull) * 1000 },
		{ "Thu, 01-Jan-37 00:00:00 GMT", true, (2114380800ull - 784111777ull) * 1000 },
		{ "99999999999999999999", true, (uint64_t)UINT32_MAX * 1000 },
		{ "", false, 0 },
		{ "   ", false, 0 },
		{ "-1", false, 0 },
		{ "1.5", false, 0 },
		{ "12:00", false, 0 },
		{ "soon", false, 0 },
		{ "Sun, 06 Foo 1994 08:49:47 GMT", false, 0 },
		{ "Sun, 32 Nov 1994 08:49:47 GMT", false, 0 },
		{ "Sun, 00 Nov 1994 08:49:47 GMT", false, 0 },
		{ "Sun, 06 Nov 1994 24:49:47 GMT", false, 0 },
		{ "Sun, 06 Nov 1994 08:60:47 GMT", false, 0 },
		{ "Sun, 06 Nov 1994 08:49 GMT", false, 0 },
		{ "Sun, 06 Nov 1994 08:49:47:01 GMT", false, 0 },
		{ "Sun, 06 Nov 1994 GMT", false, 0 },
		{ "Sun, 06 Nov 08:49:47 GMT", false, 0 },
		{ "Sun, Nov 1994 08:49:47 GMT", false, 0 },
		{ "Sun, 06 Nov 1994 08:49:47 PST", false, 0 },
		{ "Sun, 06 Nov 1994 08:49:47 GMT 1", false, 0 },
		{ "Sun, 06 Nov Nov 1994 08:49:47 GMT", false, 0 },
		{ "Sun, 06 Nov 1994 08:49:47 08:49:47 GMT", false, 0 },
		{ "Sun, 06 Nov 19945 08:49:47 GMT", false, 0 },
		{ "Sun, 06 Nov 1994 08:49:47 GMT;", false, 0 },
		{ "Sun, 06 Nov 0094 08:49:47 GMT", false, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 4242;
		bool ok = osh_otlp_http_parse_retry_after(cases[i].in, now, &ms);

		cr_assert_eq(ok, cases[i].ok, "case %zu (%s)", i, cases[i].in);
		cr_assert_eq(ms, cases[i].ok ? cases[i].ms : 4242, "case %zu (%s): %llu", i,
			     cases[i].in, (unsigned long long)ms);
	}
}

Test(otlp_http, redact_url)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "http://localhost:4318/v1/traces", "http://localhost:4318/v1/traces" },
		{ "https://user:pw@c.example:443/v1/traces", "https://c.example:443/v1/traces" },
		{ "http://user@host/", "http://host/" },
		{ "http://a@b:c@host/x@y", "http://host/x@y" },
		{ "http://host/p?q=a@b", "http://host/p?q=a@b" },
		{ "http://u:p@host", "http://host" },
	};
	char out[128], small[10];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		osh_otlp_http_redact_url(cases[i].in, out, sizeof(out));
		cr_assert_str_eq(out, cases[i].out, "case %zu", i);
	}
	osh_otlp_http_redact_url("http://u:p@host/long/path", small, sizeof(small));
	cr_assert_str_eq(small, "http://ho");
}

Test(otlp_http, head_end_whole_and_byte_at_a_time)
{
	static const struct {
		const char *in;
		size_t end;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\n\r\nbody", 19 },
		{ "HTTP/1.1 200 OK\r\nA: b\r\n\r\n", 25 },
		{ "HTTP/1.1 200 OK\nA: b\n\nxx", 22 },
		{ "HTTP/1.1 200 OK\r\nA: b\n\r\n", 24 },
		{ "HTTP/1.1 200 OK\r\nA: b\r\n", 0 },
		{ "HTTP/1.1 200 OK\r\nA: b\r\n\r", 0 },
		{ "HTTP/1.1 200 OK\r\r\n", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *in = cases[i].in;
		size_t len = strlen(in), found = 0;

		cr_assert_eq(osh_otlp_http_head_end(in, len, 0), cases[i].end, "case %zu", i);
		/* Growing by one byte, rescanning only from the previous length. */
		for (size_t k = 1; k <= len && !found; k++)
			found = osh_otlp_http_head_end(in, k, k - 1);
		cr_assert_eq(found, cases[i].end, "case %zu byte at a time", i);
	}
}

Test(otlp_http, parse_head)
{
	static const struct {
		const char *in;
		int status;
		enum osh_otlp_http_body body;
		uint64_t length;
		bool close;
		const char *retry_after;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, OSH_OTLP_BODY_LENGTH, 5,
		  false, "" },
		{ "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n", 200, OSH_OTLP_BODY_LENGTH, 2, false,
		  "" },
		{ "HTTP/1.1 200 OK\nContent-Length:7\n\n", 200, OSH_OTLP_BODY_LENGTH, 7, false,
		  "" },
		{ "HTTP/1.1 204 No Content\r\n\r\n", 204, OSH_OTLP_BODY_NONE, 0, false, "" },
		{ "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 304,
		  OSH_OTLP_BODY_NONE, 0, false, "" },
		{ "HTTP/1.1 100 Continue\r\n\r\n", 100, OSH_OTLP_BODY_NONE, 0, false, "" },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200,
		  OSH_OTLP_BODY_CHUNKED, 0, false, "" },
		{ "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, CHUNKED\r\n\r\n", 200,
		  OSH_OTLP_BODY_CHUNKED, 0, false, "" },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 200,
		  OSH_OTLP_BODY_CLOSE, 0, true, "" },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", 200,
		  OSH_OTLP_BODY_CHUNKED, 0, true, "" },
		{ "HTTP/1.1 200 OK\r\n\r\n", 200, OSH_OTLP_BODY_CLOSE, 0, true, "" },
		{ "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, OSH_OTLP_BODY_LENGTH, 0,
		  true, "" },
		{ "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", 200,
		  OSH_OTLP_BODY_LENGTH, 0, false, "" },
		{ "HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 0\r\n\r\n", 200,
		  OSH_OTLP_BODY_LENGTH, 0, true, "" },
		{ "HTTP/1.1 200 OK\r\nConnection: closed\r\nContent-Length: 0\r\n\r\n", 200,
		  OSH_OTLP_BODY_LENGTH, 0, false, "" },
		{ "HTTP/1.1 429 Slow down\r\nRetry-After:  7 \r\nContent-Length: 0\r\n\r\n", 429,
		  OSH_OTLP_BODY_LENGTH, 0, false, "7" },
		{ "HTTP/1.1 503 X\r\nretry-after: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
		  "Content-Length: 0\r\n\r\n",
		  503, OSH_OTLP_BODY_LENGTH, 0, false, "Sun, 06 Nov 1994 08:49:37 GMT" },
		{ "HTTP/1.1 503 X\r\nRetry-After: "
		  "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
		  "Content-Length: 0\r\n\r\n",
		  503, OSH_OTLP_BODY_LENGTH, 0, false, "" },
		{ "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nContent-Length: 3\r\n\r\n", 200,
		  OSH_OTLP_BODY_LENGTH, 3, false, "" },
		{ "HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 1\r\n\r\n", 200,
		  OSH_OTLP_BODY_LENGTH, 1, false, "" },
	};
	static const char *const bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.2 200 OK\r\n\r\n",
		"http/1.1 200 OK\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: v\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
		"HTTP/1.1 200 OK\r\nName : v\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n",
		"HTTP/1.1 200 OK\r\nA: b\r\n",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_otlp_http_head hd;
		const char *in = cases[i].in;

		memset(&hd, 0x5a, sizeof(hd));
		cr_assert_eq(osh_otlp_http_parse_head(in, strlen(in), &hd), 0, "case %zu", i);
		cr_assert_eq(hd.status, cases[i].status, "case %zu", i);
		cr_assert_eq(hd.body, cases[i].body, "case %zu", i);
		cr_assert_eq(hd.length, cases[i].length, "case %zu", i);
		cr_assert_eq(hd.close, cases[i].close, "case %zu", i);
		cr_assert_str_eq(hd.retry_after, cases[i].retry_after, "case %zu", i);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct osh_otlp_http_head hd;

		memset(&hd, 0x5a, sizeof(hd));
		cr_assert_eq(osh_otlp_http_parse_head(bad[i], strlen(bad[i]), &hd), -EINVAL,
			     "bad %zu: %s", i, bad[i]);
		cr_assert_eq(hd.status, 0x5a5a5a5a, "bad %zu: *ret untouched", i);
	}
}

/* Run the decoder over @in fed in pieces of @step bytes (0: all at once).
 * Returns its last result; @out gets the decoded bytes, *ret_rest the bytes
 * after the end (for a result >= 0). */
static ssize_t dechunk_in_steps(const char *in, size_t step, char *out, size_t *ret_out_len,
				size_t *ret_rest)
{
	struct osh_otlp_http_chunked d = { 0 };
	size_t len = strlen(in), o = 0;
	uint8_t *buf = malloc(len + 1);
	ssize_t r = -2;

	cr_assert_not_null(buf);
	for (size_t at = 0; at < len || (len == 0 && at == 0);) {
		size_t n = step && len - at > step ? step : len - at;

		memcpy(buf, in + at, n);
		r = osh_otlp_http_dechunk(&d, buf, &n);
		if (r == -1)
			break;
		memcpy(out + o, buf, n);
		o += n;
		at += step && len - at > step ? step : len - at;
		if (r >= 0) {
			*ret_rest = (size_t)r + (len - at);
			break;
		}
		if (len == 0)
			break;
	}
	out[o] = '\0';
	*ret_out_len = o;
	free(buf);
	return r;
}

Test(otlp_http, dechunk)
{
	static const struct {
		const char *in;
		int result;	/* 0 complete, -2 incomplete, -1 invalid */
		const char *out;
		size_t rest;
	} cases[] = {
		{ "5\r\nhello\r\n0\r\n\r\n", 0, "hello", 0 },
		{ "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nXY", 0, "hello world", 2 },
		{ "A;ext=1\r\n0123456789\r\n0\r\n\r\n", 0, "0123456789", 0 },
		{ "a\r\n0123456789\r\n0;last\r\n\r\n", 0, "0123456789", 0 },
		{ "5 ; a=b\r\nhello\r\n0\r\n\r\n", 0, "hello", 0 },
		{ "0\r\nTrailer: x\r\nMore: y\r\n\r\n", 0, "", 0 },
		{ "0\r\n\r\nHTTP/1.1 200 OK\r\n", 0, "", 17 },
		{ "5\nhello\n0\n\n", 0, "hello", 0 },
		{ "00005\r\nhello\r\n0\r\n\r\n", 0, "hello", 0 },
		{ "3\r\n\r\n\r\r\n0\r\n\r\n", 0, "\r\n\r", 0 },
		{ "", -2, "", 0 },
		{ "5\r\nhel", -2, "hel", 0 },
		{ "5\r\nhello", -2, "hello", 0 },
		{ "5\r\nhello\r\n", -2, "hello", 0 },
		{ "5\r\nhello\r\n0\r\n", -2, "hello", 0 },
		{ "5\r\nhello\r\n0\r\nTrailer: x\r\n", -2, "hello", 0 },
		{ "\r\n", -1, "", 0 },
		{ "x\r\n", -1, "", 0 },
		{ ";ext\r\n", -1, "", 0 },
		{ "5\r\nhelloX\r\n", -1, "hello", 0 },
		{ "5\r\nhello\rX", -1, "hello", 0 },
		{ "5\rX", -1, "", 0 },
		{ "5\x01\r\n", -1, "", 0 },
		{ "5;\x01\r\n", -1, "", 0 },
		{ "1000000000000000\r\n", -1, "", 0 },
		{ "0\r\n\rX", -1, "", 0 },
		{ "-5\r\n", -1, "", 0 },
	};
	static const size_t steps[] = { 0, 1, 2, 3, 7 };
	char out[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
			size_t out_len = 0, rest = 99;
			ssize_t r = dechunk_in_steps(cases[i].in, steps[s], out, &out_len, &rest);

			cr_assert_eq(r >= 0 ? 0 : r, cases[i].result, "case %zu step %zu: %zd", i,
				     steps[s], r);
			if (r == -1)
				continue;
			cr_assert_eq(out_len, strlen(cases[i].out), "case %zu step %zu", i,
				     steps[s]);
			cr_assert_arr_eq(out, cases[i].out, out_len, "case %zu step %zu", i,
					 steps[s]);
			if (r >= 0)
				cr_assert_eq(rest, cases[i].rest, "case %zu step %zu", i, steps[s]);
		}
	}
}

Test(otlp_http, dechunk_caps_extensions_and_trailers)
{
	enum { BIG = 70 * 1024 };
	static const char *const heads[] = { "1;", "0\r\nX-Pad: " };

	for (size_t i = 0; i < 2; i++) {
		struct osh_otlp_http_chunked d = { 0 };
		size_t hl = strlen(heads[i]), n = hl + BIG;
		uint8_t *buf = malloc(n);

		cr_assert_not_null(buf);
		memcpy(buf, heads[i], hl);
		memset(buf + hl, 'a', BIG);
		cr_assert_eq(osh_otlp_http_dechunk(&d, buf, &n), -1, "case %zu", i);
		free(buf);
	}
}

/* ---- the test server ---- */

enum action {
	RESPOND,	/* status + headers + body, keep the connection */
	HANG,		/* read the request, never answer */
	CLOSE,		/* read the request, close without a response */
	RESPOND_EOF,	/* no Content-Length: the body ends when the connection closes */
	RESPOND_CLOSE,	/* with "Connection: close", then close */
	RESPOND_DROP,	/* a keep-alive response, then close anyway (an idle timeout) */
	RESPOND_CHUNKED, /* the body in chunks of 1, 2, 3... bytes, with extensions and a trailer */
	TRICKLE,	/* a chunked response, one byte per send() */
	TRICKLE_FOREVER, /* a head announcing 1 MB, then a byte every 20 ms */
	RESPOND_JUNK,	/* a response followed by bytes nobody asked for */
	EARLY_413,	/* answer 413 after the head, never read the body, keep the connection */
	ANNOUNCE_HUGE,	/* a head announcing 5 MB of body, then silence */
};

struct reply {
	enum action act;
	int status;
	const char *headers;	/* extra header lines, each ending in \r\n */
	const uint8_t *body;
	size_t body_len;
};

#define MAX_REQS 16

struct req {
	uint64_t t_ns;
	char *head;
	uint8_t *body;
	size_t body_len;
	unsigned conn;
};

struct server {
	int lfd;
	int port;
	char url[128];
	pthread_t thread;
	atomic_bool stop;
	const struct reply *script;	/* the last entry repeats */
	size_t n_script;
	pthread_mutex_t lock;
	struct req reqs[MAX_REQS];
	size_t n_reqs;
	unsigned n_conns;
	unsigned n_closed;	/* connections the server has closed */
	size_t after_close;	/* bytes received after a "Connection: close" response */
	bool no_read;		/* accept, then never read (a stuck collector) */
	unsigned stall_first_ms; /* wait this long before reading the first connection */
};

/* Read more into *buf; false on EOF, error or stop. */
static bool read_some(struct server *s, int fd, char **buf, size_t *len, size_t *cap)
{
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t r;

		if (atomic_load(&s->stop))
			return false;
		if (poll(&p, 1, 50) <= 0)
			continue;
		if (*cap - *len < 65536) {
			*cap = *cap * 2 + 65536;
			*buf = realloc(*buf, *cap);
		}
		r = recv(fd, *buf + *len, *cap - *len - 1, 0);
		if (r <= 0)
			return false;
		*len += (size_t)r;
		(*buf)[*len] = '\0';
		return true;
	}
}

static size_t content_length(const char *head)
{
	const char *p = head;

	while ((p = strchr(p, '\n'))) {
		p++;
		if (strncasecmp(p, "content-length:", 15) == 0)
			return strtoul(p + 15, NULL, 10);
	}
	return 0;
}

static void send_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		len -= (size_t)w;
	}
}

/* The response for @r, malloc()ed. */
static char *response(const struct reply *r, size_t *ret_len)
{
	bool chunked = r->act == RESPOND_CHUNKED || r->act == TRICKLE;
	size_t cap = 1024 + r->body_len * (chunked ? 16 : 1), n = 0;
	char *out = malloc(cap);
	bool close_it = r->act == RESPOND_CLOSE || r->act == RESPOND_EOF;
	const char *conn = close_it ? "Connection: close\r\n" : "";

	cr_assert_not_null(out);
	n += (size_t)snprintf(out, cap,
			      "HTTP/1.1 %d X\r\nContent-Type: application/x-protobuf\r\n%s%s",
			      r->status, conn, r->headers ? r->headers : "");
	if (chunked) {
		n += (size_t)snprintf(out + n, cap - n, "Transfer-Encoding: chunked\r\n\r\n");
		for (size_t at = 0, step = 1; at < r->body_len; at += step, step++) {
			if (step > r->body_len - at)
				step = r->body_len - at;
			n += (size_t)snprintf(out + n, cap - n, "%zx;piece=%zu\r\n", step, at);
			memcpy(out + n, r->body + at, step);
			n += step;
			n += (size_t)snprintf(out + n, cap - n, "\r\n");
		}
		n += (size_t)snprintf(out + n, cap - n, "0\r\nX-Trailer: yes\r\n\r\n");
	} else {
		if (r->act != RESPOND_EOF)
			n += (size_t)snprintf(out + n, cap - n, "Content-Length: %zu\r\n",
					      r->body_len);
		n += (size_t)snprintf(out + n, cap - n, "\r\n");
		if (r->body_len)
			memcpy(out + n, r->body, r->body_len);
		n += r->body_len;
	}
	if (r->act == RESPOND_JUNK) /* in the same send() as the response */
		n += (size_t)snprintf(out + n, cap - n,
				      "HTTP/1.1 200 Fake\r\nContent-Length: 0\r\n\r\n");
	*ret_len = n;
	return out;
}

static void respond(struct server *s, int fd, const struct reply *r)
{
	size_t len;
	char *out;

	if (r->act == EARLY_413 || r->act == ANNOUNCE_HUGE) {
		static const char e413[] = "HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n";
		static const char huge[] = "HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n";

		if (r->act == EARLY_413)
			send_all(fd, e413, sizeof(e413) - 1);
		else
			send_all(fd, huge, sizeof(huge) - 1);
		while (!atomic_load(&s->stop))
			usleep(10000);
		return;
	}
	if (r->act == TRICKLE_FOREVER) {
		static const char head[] = "HTTP/1.1 200 X\r\nContent-Length: 1000000\r\n\r\n";

		send_all(fd, head, sizeof(head) - 1);
		/* Until the client gives up and closes (the send then fails). */
		while (!atomic_load(&s->stop) && send(fd, "x", 1, MSG_NOSIGNAL) == 1)
			usleep(20000);
		return;
	}
	out = response(r, &len);
	if (r->act == TRICKLE) {
		int one = 1;

		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		for (size_t i = 0; i < len; i++) {
			send_all(fd, out + i, 1);
			usleep(300);
		}
	} else {
		send_all(fd, out, len);
	}
	if (r->act == RESPOND_CLOSE) {
		/* Linger: a client that ignored "close" would send here. */
		struct pollfd p = { fd, POLLIN, 0 };
		char tmp[256];
		ssize_t n;

		if (poll(&p, 1, 200) == 1 && (n = recv(fd, tmp, sizeof(tmp), 0)) > 0) {
			pthread_mutex_lock(&s->lock);
			s->after_close += (size_t)n;
			pthread_mutex_unlock(&s->lock);
		}
	}
	free(out);
}

static void serve_conn(struct server *s, int fd, unsigned conn)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	while (s->no_read && !atomic_load(&s->stop))
		usleep(10000);
	if (conn == 1 && s->stall_first_ms)
		usleep(s->stall_first_ms * 1000u);
	for (;;) {
		char *end;
		size_t head_len, body_len;
		const struct reply *r;
		struct req *q;
		size_t idx;

		while (!buf || !(end = strstr(buf, "\r\n\r\n")))
			if (!read_some(s, fd, &buf, &len, &cap))
				goto out;
		head_len = (size_t)(end - buf) + 4;
		body_len = content_length(buf);
		pthread_mutex_lock(&s->lock);
		idx = s->n_reqs;
		pthread_mutex_unlock(&s->lock);
		if (s->script[idx < s->n_script ? idx : s->n_script - 1].act == EARLY_413)
			body_len = 0; /* recorded without it, and never read */
		while (len < head_len + body_len)
			if (!read_some(s, fd, &buf, &len, &cap))
				goto out;

		pthread_mutex_lock(&s->lock);
		idx = s->n_reqs;
		if (idx < MAX_REQS) {
			q = &s->reqs[idx];
			q->t_ns = osh_clock_monotonic_ns();
			q->head = strndup(buf, head_len);
			q->body = malloc(body_len + 1);
			memcpy(q->body, buf + head_len, body_len);
			q->body_len = body_len;
			q->conn = conn;
		}
		s->n_reqs++;
		pthread_mutex_unlock(&s->lock);
		r = &s->script[idx < s->n_script ? idx : s->n_script - 1];

		memmove(buf, buf + head_len + body_len, len - head_len - body_len);
		len -= head_len + body_len;
		buf[len] = '\0';

		if (r->act == CLOSE)
			goto out;
		if (r->act == HANG) {
			/* Until the client gives up and closes. */
			while (read_some(s, fd, &buf, &len, &cap))
				;
			goto out;
		}
		respond(s, fd, r);
		if (r->act == RESPOND_EOF || r->act == RESPOND_CLOSE || r->act == RESPOND_DROP ||
		    r->act == TRICKLE_FOREVER || r->act == EARLY_413 || r->act == ANNOUNCE_HUGE)
			goto out;
	}
out:
	free(buf);
}

static void *server_main(void *arg)
{
	struct server *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = { s->lfd, POLLIN, 0 };
		unsigned conn;
		int fd;

		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&s->lock);
		conn = ++s->n_conns;
		pthread_mutex_unlock(&s->lock);
		serve_conn(s, fd, conn);
		close(fd);
		pthread_mutex_lock(&s->lock);
		s->n_closed++;
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static int bind_loopback(int *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

static void server_start(struct server *s, const struct reply *script, size_t n)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->script = script;
	s->n_script = n;
	s->lfd = bind_loopback(&s->port);
	cr_assert_eq(listen(s->lfd, 8), 0);
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/v1/traces", s->port);
	cr_assert_eq(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(struct server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	for (size_t i = 0; i < MAX_REQS && i < s->n_reqs; i++) {
		free(s->reqs[i].head);
		free(s->reqs[i].body);
	}
}

static size_t server_count(struct server *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n_reqs;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* Wait (bounded) until the server has closed @n connections. */
static void server_wait_closed(struct server *s, unsigned n)
{
	for (int i = 0; i < 2000; i++) {
		unsigned closed;

		pthread_mutex_lock(&s->lock);
		closed = s->n_closed;
		pthread_mutex_unlock(&s->lock);
		if (closed >= n)
			return;
		usleep(5000);
	}
	cr_assert_fail("the server never closed connection %u", n);
}

/* The value of header @name in request @i, or NULL. */
static char *req_header(struct server *s, size_t i, const char *name)
{
	static char val[256];
	size_t nl = strlen(name);
	const char *p = s->reqs[i].head;

	while ((p = strchr(p, '\n'))) {
		p++;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1, *e;

			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			snprintf(val, sizeof(val), "%.*s", (int)(e - v), v);
			return val;
		}
	}
	return NULL;
}

/* ---- transport tests ---- */

static uint8_t payload[] = "\x0a\x03" "abc" "not really protobuf, the transport does not care";

static const char *env_get(const char *name)
{
	return getenv(name);
}

/* What the configuration captures at load for the transport and the proxy,
 * by the configuration's own loader from the test's environment as it is
 * now. The loaded copies stay reachable until the test's process ends (a
 * transport borrows their strings). */
static void capture_env(struct osh_config *cfg)
{
	static struct osh_config loaded[64];
	static size_t n_loaded;
	struct osh_config *l;

	cr_assert_lt(n_loaded, sizeof(loaded) / sizeof(loaded[0]));
	l = &loaded[n_loaded++];
	osh_config_load_from(l, env_get);
	cfg->otlp_transport = l->otlp_transport;
	cfg->http_proxy = l->http_proxy;
	cfg->https_proxy = l->https_proxy;
	cfg->all_proxy = l->all_proxy;
	cfg->no_proxy = l->no_proxy;
}

static struct osh_config config_for(const char *url)
{
	struct osh_config cfg = { 0 };

	cfg.traces_url = (char *)url;
	cfg.retry_initial_ms = 20;
	cfg.otlp_timeout_ms = 10000;
	capture_env(&cfg);
	return cfg;
}

static uint64_t in_ms(uint64_t ms)
{
	return osh_clock_monotonic_ns() + ms * 1000000ull;
}

static const struct reply ok_200 = { RESPOND, 200, NULL, NULL, 0 };

TRANSPORT_TEST(ok_200)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_not_null(h);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 1);
	cr_assert(strncmp(s.reqs[0].head, "POST /v1/traces HTTP/1.1\r\n", 26) == 0);
	cr_assert_str_eq(req_header(&s, 0, "Content-Type"), "application/x-protobuf");
	cr_assert_str_eq(req_header(&s, 0, "User-Agent"),
			 "otelshim/" OSH_VERSION " OTel-OTLP-Exporter-C/" OSH_VERSION);
	cr_assert_null(req_header(&s, 0, "Content-Encoding"));
	cr_assert_null(req_header(&s, 0, "Expect"));
	cr_assert_eq(s.reqs[0].body_len, sizeof(payload));
	cr_assert_arr_eq(s.reqs[0].body, payload, sizeof(payload));

	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 1);
	cr_assert_eq(st.retries, 0);
	cr_assert_eq(st.rejected_spans, 0);
	cr_assert_eq(st.bytes_sent, sizeof(payload));
	cr_assert_eq(n_logs, 0, "nothing to report: %s", logs[0]);

	/* The socket and the wake fd were the module's own while they lived. */
	cr_assert_eq(socks_total, 1);
	cr_assert_eq(owned_total - socks_total, 1, "the wake fd");
	cr_assert_eq(owned_now, 2);
	osh_otlp_http_destroy(h);
	cr_assert_eq(owned_now, 0, "every owned fd is disowned before it is closed");
	cr_assert_eq(disowned_total, owned_total);
	server_stop(&s);
}

TRANSPORT_TEST(keep_alive)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
			     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 3);
	cr_assert_eq(s.reqs[2].conn, s.reqs[0].conn, "one connection for every batch");
	cr_assert_eq(socks_total, 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(retry_503_then_200)
{
	static const struct reply script[] = { { RESPOND, 503, NULL, NULL, 0 },
					       { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, script, 2);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2);
	cr_assert_arr_eq(s.reqs[1].body, payload, sizeof(payload));
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 2);
	cr_assert_eq(st.retries, 1);
	cr_assert_eq(st.bytes_sent, 2 * sizeof(payload));
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(retryable_statuses)
{
	static const int codes[] = { 429, 502, 504 };

	for (size_t i = 0; i < 3; i++) {
		struct reply script[] = { { RESPOND, codes[i], NULL, NULL, 0 },
					  { RESPOND, 200, NULL, NULL, 0 } };
		struct server s;
		struct osh_config cfg;
		struct osh_otlp_http *h;

		server_start(&s, script, 2);
		cfg = config_for(s.url);
		h = make(&cfg);
		cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
			     OSH_EXPORT_OK, "status %d", codes[i]);
		cr_assert_eq(server_count(&s), 2, "status %d", codes[i]);
		osh_otlp_http_destroy(h);
		server_stop(&s);
	}
}

TRANSPORT_TEST(empty_reply_is_retried)
{
	static const struct reply script[] = { { CLOSE, 0, NULL, NULL, 0 },
					       { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 2);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2);
	cr_assert_neq(s.reqs[1].conn, s.reqs[0].conn);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(retry_after_seconds)
{
	static const struct reply script[] = { { RESPOND, 429, "Retry-After: 1\r\n", NULL, 0 },
					       { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 2);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2);
	/* The backoff alone would be ~20 ms. */
	cr_assert_geq(s.reqs[1].t_ns - s.reqs[0].t_ns, 900000000ull, "%llu ns apart",
		      (unsigned long long)(s.reqs[1].t_ns - s.reqs[0].t_ns));
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(retry_after_past_deadline_gives_up_now)
{
	static const struct reply script[] = { { RESPOND, 503, "Retry-After: 30\r\n", NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	uint64_t t0;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(5000), false),
		     OSH_EXPORT_GAVE_UP);
	cr_assert_lt(osh_clock_monotonic_ns() - t0, 4000000000ull, "did not wait for the deadline");
	cr_assert_eq(server_count(&s), 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(retryable_until_deadline)
{
	static const struct reply script[] = { { RESPOND, 503, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	/* Waits of 20, 40, 80, 160, 320 ms (+-20%) fit in 1 s; 640 more does not,
	 * so the transport gives up at once instead of sleeping to the deadline. */
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(1000), false),
		     OSH_EXPORT_GAVE_UP);
	osh_otlp_http_stats(h, &st);
	cr_assert_geq(st.requests, 3);
	cr_assert_leq(st.requests, 8);
	cr_assert_eq(st.retries, st.requests - 1);
	cr_assert_eq(server_count(&s), st.requests);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(final_makes_one_attempt)
{
	static const struct reply script[] = { { RESPOND, 503, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), true),
		     OSH_EXPORT_GAVE_UP);
	cr_assert_eq(server_count(&s), 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(status_400_dropped_and_reported_once)
{
	static const struct reply script[] = { { RESPOND, 400, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	char url[160];

	server_start(&s, script, 1);
	snprintf(url, sizeof(url), "http://user:hunter2@127.0.0.1:%d/v1/traces", s.port);
	cfg = config_for(url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(server_count(&s), 1, "no retry after 400");
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(server_count(&s), 2);
	cr_assert_eq(n_logs, 1, "reported once");
	cr_assert_eq(log_levels[0], OSH_LOG_WARN);
	cr_assert(strstr(logs[0], "400"), "%s", logs[0]);
	cr_assert(strstr(logs[0], s.url), "%s", logs[0]);
	cr_assert_null(strstr(logs[0], "hunter2"), "%s", logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(other_statuses_dropped)
{
	static const int codes[] = { 401, 403, 404, 413, 500, 501, 302 };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct reply script[] = { { RESPOND, codes[i], "Location: /elsewhere\r\n", NULL,
					    0 } };
		struct server s;
		struct osh_config cfg;
		struct osh_otlp_http *h;

		server_start(&s, script, 1);
		cfg = config_for(s.url);
		h = make(&cfg);
		cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
			     OSH_EXPORT_DROPPED, "status %d", codes[i]);
		cr_assert_eq(server_count(&s), 1, "status %d", codes[i]);
		osh_otlp_http_destroy(h);
		server_stop(&s);
	}
}

static uint8_t *partial_body(int64_t rejected, const char *msg, size_t *ret_len)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse resp =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess ps =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
	uint8_t *buf;

	ps.rejected_spans = rejected;
	ps.error_message = (char *)msg;
	resp.partial_success = &ps;
	*ret_len = protobuf_c_message_get_packed_size(&resp.base);
	buf = malloc(*ret_len);
	protobuf_c_message_pack(&resp.base, buf);
	return buf;
}

TRANSPORT_TEST(partial_success_counted)
{
	struct reply script[] = { { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *body = partial_body(2, "2 spans without a name\n\x1b[31m", &script[0].body_len);

	script[0].body = body;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2, "partial success is not retried");
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.rejected_spans, 4);
	cr_assert_eq(n_logs, 1, "reported once");
	cr_assert(strstr(logs[0], "2 spans without a name??[31m"), "control characters masked: %s",
		  logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(body);
}

TRANSPORT_TEST(non_protobuf_2xx_body_is_accepted)
{
	static const uint8_t junk[] = "{\"partialSuccess\":{}}";
	static const struct reply script[] = { { RESPOND, 202, NULL, junk, sizeof(junk) - 1 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(oversized_response_dropped)
{
	struct reply script[] = { { RESPOND, 200, NULL, NULL, OSH_OTLP_MAX_RESPONSE + 1 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	uint8_t *big = calloc(1, OSH_OTLP_MAX_RESPONSE + 1);

	script[0].body = big;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(server_count(&s), 1);
	cr_assert_eq(n_logs, 1);
	cr_assert(strstr(logs[0], "4 MiB"), "%s", logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(big);
}

/* The announced length alone is enough to refuse: no waiting for the body. */
TRANSPORT_TEST(oversized_announced_response_dropped_at_once)
{
	static const struct reply script[] = { { ANNOUNCE_HUGE, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	/* The body never comes: waiting for it would end at the deadline. */
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(5000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(n_logs, 1);
	cr_assert(strstr(logs[0], "4 MiB"), "%s", logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

/* Without a Content-Length, only the body callback can enforce the cap. */
TRANSPORT_TEST(oversized_streamed_response_dropped)
{
	struct reply script[] = { { RESPOND_EOF, 200, NULL, NULL, OSH_OTLP_MAX_RESPONSE + 1 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	uint8_t *big = calloc(1, OSH_OTLP_MAX_RESPONSE + 1);

	script[0].body = big;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(server_count(&s), 1);
	cr_assert_eq(n_logs, 1);
	cr_assert(strstr(logs[0], "4 MiB"), "%s", logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(big);
}

TRANSPORT_TEST(streamed_response_under_cap)
{
	struct reply script[] = { { RESPOND_EOF, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *body = partial_body(1, "one", &script[0].body_len);

	script[0].body = body;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.rejected_spans, 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(body);
}

TRANSPORT_TEST(oversized_request_refused)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *big = calloc(1, OSH_OTLP_MAX_REQUEST + 1);

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, big, OSH_OTLP_MAX_REQUEST + 1, in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 0);
	cr_assert_eq(server_count(&s), 0);
	cr_assert_eq(n_logs, 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(big);
}

TRANSPORT_TEST(gzip_body)
{
	enum { N = 20 };
	static const struct osh_resource_attr ra[] = { { .key = "service.name", .str = "llm.gz" } };
	static const struct osh_resource res = { (struct osh_resource_attr *)ra, 1 };
	static struct osh_span spans[N];
	struct osh_span *list[N];
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *body, *out;
	size_t len;
	z_stream zs = { 0 };

	for (int i = 0; i < N; i++) {
		osh_span_init(&spans[i]);
		spans[i].span_id[0] = (uint8_t)(i + 1);
		osh_span_set_name(&spans[i], "GET", 3);
		osh_span_set_cstr(&spans[i], "url.full", "http://example.com/some/long/path");
		list[i] = &spans[i];
	}
	cr_assert_eq(osh_otlp_encode(&res, list, N, &body, &len), 0);

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	cfg.otlp_gzip = true;
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, body, len, in_ms(10000), false), OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 1);
	cr_assert_str_eq(req_header(&s, 0, "Content-Encoding"), "gzip");
	cr_assert_lt(s.reqs[0].body_len, len, "compressed");
	cr_assert_eq(s.reqs[0].body[0], 0x1f, "gzip magic");
	cr_assert_eq(s.reqs[0].body[1], 0x8b, "gzip magic");

	out = malloc(len + 16);
	cr_assert_eq(inflateInit2(&zs, 15 + 16), Z_OK);
	zs.next_in = s.reqs[0].body;
	zs.avail_in = (uInt)s.reqs[0].body_len;
	zs.next_out = out;
	zs.avail_out = (uInt)(len + 16);
	cr_assert_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
	cr_assert_eq(zs.total_out, len);
	cr_assert_arr_eq(out, body, len);
	inflateEnd(&zs);

	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.bytes_sent, s.reqs[0].body_len, "bytes after compression");

	/* The deflate stream is reset between requests. */
	cr_assert_eq(osh_otlp_http_send(h, body, len, in_ms(10000), false), OSH_EXPORT_OK);
	cr_assert_eq(s.reqs[1].body_len, s.reqs[0].body_len);
	cr_assert_arr_eq(s.reqs[1].body, s.reqs[0].body, s.reqs[0].body_len);
	free(out);
	free(body);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(custom_headers)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	cfg.otlp_headers = " Authorization = Bearer%20a%2Cb ,broken,x-tenant=t1,"
			   "User-Agent=mine%2F1,content-type=text/plain,x-empty=";
	h = make(&cfg);
	cr_assert_not_null(h);
	cr_assert_eq(n_logs, 1, "malformed members reported once at creation");
	cr_assert(strstr(logs[0], "2 malformed"), "%s", logs[0]);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_str_eq(req_header(&s, 0, "Authorization"), "Bearer a,b");
	cr_assert_str_eq(req_header(&s, 0, "x-tenant"), "t1");
	cr_assert_str_eq(req_header(&s, 0, "Content-Type"), "application/x-protobuf");
	cr_assert_null(req_header(&s, 0, "broken"));
	cr_assert_str_eq(req_header(&s, 0, "x-empty"), "", "an empty value is sent as such");
	/* An explicit User-Agent header replaces the default one. */
	cr_assert_str_eq(req_header(&s, 0, "User-Agent"), "mine/1");
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

static int closed_port(void)
{
	int port, fd = bind_loopback(&port);

	close(fd);
	return port;
}

TRANSPORT_TEST(refused_final_is_unreachable)
{
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	char url[128];
	uint64_t t0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", closed_port());
	cfg = config_for(url);
	h = make(&cfg);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), true),
		     OSH_EXPORT_UNREACHABLE);
	cr_assert_lt(osh_clock_monotonic_ns() - t0, 5000000000ull);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 1);
	cr_assert_eq(st.bytes_sent, 0);
	cr_assert_eq(n_logs, 0, "the shim decides how to report a missing collector");
	cr_assert_eq(socks_total, 1);
	cr_assert_eq(socks_now, 0, "the refused socket was disowned and closed");
	osh_otlp_http_destroy(h);
}

TRANSPORT_TEST(refused_until_deadline_is_unreachable)
{
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	char url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", closed_port());
	cfg = config_for(url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(300), false),
		     OSH_EXPORT_UNREACHABLE);
	osh_otlp_http_stats(h, &st);
	cr_assert_geq(st.requests, 2, "connection failures are retried");
	osh_otlp_http_destroy(h);
}

TRANSPORT_TEST(deadline_already_passed)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload),
					osh_clock_monotonic_ns() - 1, false),
		     OSH_EXPORT_GAVE_UP);
	cr_assert_eq(server_count(&s), 0);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

struct interrupter {
	struct osh_otlp_http *h;
	struct server *s;
	size_t after_requests;	/* wait until the server has seen this many */
};

static void *interrupt_main(void *arg)
{
	struct interrupter *it = arg;

	/* Bounded: the test's own timeout is the backstop. */
	for (int i = 0; i < 2000 && server_count(it->s) < it->after_requests; i++)
		usleep(5000);
	usleep(50000);
	osh_otlp_http_interrupt(it->h, osh_clock_monotonic_ns());
	return NULL;
}

TRANSPORT_TEST(interrupt_aborts_hanging_request)
{
	static const struct reply script[] = { { HANG, 0, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct interrupter it;
	pthread_t t;
	uint64_t t0, spent;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	it = (struct interrupter){ h, &s, 1 };
	cr_assert_eq(pthread_create(&t, NULL, interrupt_main, &it), 0);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(25000), false),
		     OSH_EXPORT_GAVE_UP);
	spent = osh_clock_monotonic_ns() - t0;
	pthread_join(t, NULL);
	/* Without a wakeup the poll would sleep 10 s or until the deadline. */
	cr_assert_lt(spent, 8000000000ull, "returned after %llu ms",
		     (unsigned long long)(spent / 1000000));
	cr_assert_eq(server_count(&s), 1);

	/* The cap outlives the interrupted send: shutdown stays short. */
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(20000), false),
		     OSH_EXPORT_GAVE_UP);
	cr_assert_eq(server_count(&s), 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(interrupt_cuts_backoff_wait)
{
	static const struct reply script[] = { { RESPOND, 503, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct interrupter it;
	pthread_t t;
	uint64_t t0, spent;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	cfg.retry_initial_ms = 15000;
	h = make(&cfg);
	it = (struct interrupter){ h, &s, 1 };
	cr_assert_eq(pthread_create(&t, NULL, interrupt_main, &it), 0);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(25000), false),
		     OSH_EXPORT_GAVE_UP);
	spent = osh_clock_monotonic_ns() - t0;
	pthread_join(t, NULL);
	cr_assert_lt(spent, 8000000000ull, "returned after %llu ms",
		     (unsigned long long)(spent / 1000000));
	cr_assert_eq(server_count(&s), 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(create_fails_without_url)
{
	struct osh_config cfg = config_for(NULL);

	cr_assert_null(osh_otlp_http_create(&cfg, &host));
	cr_assert_eq(n_logs, 1);
	osh_otlp_http_destroy(NULL);
}

/* ---- the module table, end to end ---- */

TRANSPORT_TEST(module_exports_spans)
{
	static const struct osh_resource_attr ra[] = {
		{ .key = "service.name", .str = "llm.module" },
		{ .key = "process.pid", .is_int = true, .i = 77 },
	};
	static const struct osh_resource res = { (struct osh_resource_attr *)ra, 2 };
	const struct osh_otlp_module *m = &osh_otlp_module_v1;
	struct osh_span a, b;
	struct osh_span *list[] = { &a, &b };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_stats st;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	void *exp;

	osh_span_init(&a);
	osh_span_init(&b);
	a.span_id[0] = 1;
	b.span_id[0] = 2;
	osh_span_set_name(&a, "first", 5);
	osh_span_set_name(&b, "second", 6);

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	exp = m->create(&cfg, &res, &host);
	cr_assert_not_null(exp);
	cr_assert_eq(m->export_spans(exp, list, 2, in_ms(10000), false), OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 1);
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, s.reqs[0].body_len, s.reqs[0].body);
	cr_assert_not_null(req);
	cr_assert_str_eq(req->resource_spans[0]->resource->attributes[0]->value->string_value,
			 "llm.module");
	cr_assert_eq(req->resource_spans[0]->resource->attributes[1]->value->int_value, 77);
	cr_assert_eq(req->resource_spans[0]->scope_spans[0]->n_spans, 2);
	cr_assert_str_eq(req->resource_spans[0]->scope_spans[0]->spans[0]->name, "first");
	cr_assert_str_eq(req->resource_spans[0]->scope_spans[0]->spans[1]->name, "second");
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
		req, NULL);

	m->stats(exp, &st);
	cr_assert_eq(st.requests, 1);
	cr_assert_eq(st.bytes_sent, s.reqs[0].body_len);

	/* interrupt() through the table caps the next export too. */
	m->interrupt(exp, osh_clock_monotonic_ns());
	cr_assert_eq(m->export_spans(exp, list, 2, in_ms(10000), true), OSH_EXPORT_GAVE_UP);
	cr_assert_eq(server_count(&s), 1);
	m->destroy(exp);
	m->destroy(NULL);
	server_stop(&s);
}

/* ---- connection handling ---- */

TRANSPORT_TEST(server_closed_keep_alive_between_exports)
{
	static const struct reply script[] = { { RESPOND_DROP, 200, NULL, NULL, 0 },
					       { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, script, 2);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	/* The server hangs up on the idle connection before the next export. */
	server_wait_closed(&s, 1);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2);
	cr_assert_neq(s.reqs[1].conn, s.reqs[0].conn);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 2);
	cr_assert_eq(st.retries, 0, "not a failure");
	cr_assert_eq(st.bytes_sent, 2 * sizeof(payload),
		     "the closed connection was noticed before sending on it");
	cr_assert_eq(socks_total, 2, "one reconnect");
	cr_assert_eq(socks_now, 1);
	cr_assert_eq(n_logs, 0);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

/* The race the check before reuse cannot see: the server takes the request
 * on the kept-alive connection, then closes it without a word. */
TRANSPORT_TEST(stale_keep_alive_retried_at_once)
{
	static const struct reply script[] = { { RESPOND, 200, NULL, NULL, 0 },
					       { CLOSE, 0, NULL, NULL, 0 },
					       { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, script, 3);
	cfg = config_for(s.url);
	/* A backoff this long would not fit the deadline: only an immediate
	 * retry can succeed. */
	cfg.retry_initial_ms = 60000;
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 3);
	cr_assert_eq(s.reqs[1].conn, s.reqs[0].conn, "the second request reused the connection");
	cr_assert_neq(s.reqs[2].conn, s.reqs[1].conn, "and was sent again on a fresh one");
	cr_assert_arr_eq(s.reqs[2].body, payload, sizeof(payload));
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 2);
	cr_assert_eq(st.retries, 0);
	cr_assert_eq(n_logs, 0);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

/* A fresh connection that dies without an answer is a failure, though. */
TRANSPORT_TEST(fresh_connection_closed_is_a_failure)
{
	static const struct reply script[] = { { CLOSE, 0, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), true),
		     OSH_EXPORT_GAVE_UP);
	cr_assert_eq(server_count(&s), 1, "no second round on a fresh connection");
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(connection_close_response)
{
	static const struct reply script[] = { { RESPOND_CLOSE, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	/* The server lingers after each response: a request sent on the old
	 * connection would reach it. */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
			     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 3);
	cr_assert_neq(s.reqs[1].conn, s.reqs[0].conn);
	cr_assert_neq(s.reqs[2].conn, s.reqs[1].conn);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 3);
	cr_assert_eq(st.retries, 0);
	cr_assert_eq(socks_total, 3, "a new connection per request, nothing wasted");
	cr_assert_eq(s.after_close, 0, "nothing sent after \"Connection: close\"");
	cr_assert_eq(n_logs, 0);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(chunked_response)
{
	struct reply script[] = { { RESPOND_CHUNKED, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *body = partial_body(3, "three spans rejected by the chunked collector",
				     &script[0].body_len);

	script[0].body = body;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.rejected_spans, 6, "the body was decoded");
	cr_assert_eq(s.reqs[1].conn, s.reqs[0].conn, "kept alive after a chunked body");
	cr_assert_eq(n_logs, 1);
	cr_assert(strstr(logs[0], "three spans rejected by the chunked collector"), "%s", logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(body);
}

TRANSPORT_TEST(trickled_response_is_read_whole)
{
	struct reply script[] = { { TRICKLE, 200, "Retry-After: 0\r\n", NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *body = partial_body(2, "two", &script[0].body_len);

	script[0].body = body;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(20000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(20000), false),
		     OSH_EXPORT_OK);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.rejected_spans, 4);
	cr_assert_eq(s.reqs[1].conn, s.reqs[0].conn);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(body);
}

/* Bytes keep coming, so no read ever waits long: only the deadline ends it. */
TRANSPORT_TEST(slow_trickle_stops_at_the_deadline)
{
	static const struct reply script[] = { { TRICKLE_FOREVER, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	uint64_t t0, spent;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(500), false),
		     OSH_EXPORT_GAVE_UP);
	spent = osh_clock_monotonic_ns() - t0;
	/* The whole body would take 20000 s. */
	cr_assert_lt(spent, 8000000000ull, "returned after %llu ms",
		     (unsigned long long)(spent / 1000000));
	cr_assert_eq(server_count(&s), 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

struct late_interrupt {
	struct osh_otlp_http *h;
	unsigned ms;
};

static void *late_interrupt_main(void *arg)
{
	struct late_interrupt *li = arg;

	usleep(li->ms * 1000u);
	osh_otlp_http_interrupt(li->h, osh_clock_monotonic_ns());
	return NULL;
}

/* A collector that accepts and never reads: a large request fills the
 * socket buffers and the sender waits to write; another thread interrupts
 * it 300 ms in. How long the send took, in ns. */
static uint64_t interrupted_blocked_send(const struct osh_otlp_host *with)
{
	enum { BIG = 32 << 20 };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct late_interrupt li;
	pthread_t t;
	uint64_t t0, spent;
	uint8_t *big = calloc(1, BIG);

	cr_assert_not_null(big);
	server_start(&s, &ok_200, 1);
	s.no_read = true;
	cfg = config_for(s.url);
	h = with ? osh_otlp_http_create(&cfg, with) : make(&cfg);
	cr_assert_not_null(h);
	li = (struct late_interrupt){ h, 300 };
	cr_assert_eq(pthread_create(&t, NULL, late_interrupt_main, &li), 0);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, big, BIG, in_ms(25000), false), OSH_EXPORT_GAVE_UP);
	spent = osh_clock_monotonic_ns() - t0;
	pthread_join(t, NULL);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(big);
	return spent;
}

TRANSPORT_TEST(interrupt_wakes_a_blocked_send)
{
	uint64_t spent = interrupted_blocked_send(NULL);

	cr_assert_lt(spent, 8000000000ull, "returned after %llu ms",
		     (unsigned long long)(spent / 1000000));
}

/* A listener whose accept queue is full drops further SYNs: connect() hangs
 * (and if this kernel completes it anyway, the request hangs instead). */
TRANSPORT_TEST(interrupt_wakes_a_blocked_connect)
{
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct late_interrupt li;
	pthread_t t;
	uint64_t t0, spent;
	int port, lfd = bind_loopback(&port), fillers[8];
	char url[128];

	cr_assert_eq(listen(lfd, 0), 0);
	for (int i = 0; i < 8; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

		fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fillers[i], (struct sockaddr *)&a, sizeof(a));
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", port);
	cfg = config_for(url);
	h = make(&cfg);
	li = (struct late_interrupt){ h, 300 };
	cr_assert_eq(pthread_create(&t, NULL, late_interrupt_main, &li), 0);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(25000), false),
		     OSH_EXPORT_GAVE_UP);
	spent = osh_clock_monotonic_ns() - t0;
	pthread_join(t, NULL);
	cr_assert_lt(spent, 8000000000ull, "returned after %llu ms",
		     (unsigned long long)(spent / 1000000));
	osh_otlp_http_destroy(h);
	for (int i = 0; i < 8; i++)
		close(fillers[i]);
	close(lfd);
}

TRANSPORT_TEST(userinfo_becomes_basic_auth)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	char url[160];

	server_start(&s, &ok_200, 1);
	/* "us@er" / "p:ss" percent-encoded; base64("us@er:p:ss"). */
	snprintf(url, sizeof(url), "http://us%%40er:p%%3Ass@127.0.0.1:%d/v1/traces", s.port);
	cfg = config_for(url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_str_eq(req_header(&s, 0, "Authorization"), "Basic dXNAZXI6cDpzcw==");
	snprintf(url, sizeof(url), "127.0.0.1:%d", s.port);
	cr_assert_str_eq(req_header(&s, 0, "Host"), url, "no userinfo in Host");
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

TRANSPORT_TEST(localhost_by_name)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	char url[128];

	server_start(&s, &ok_200, 1);
	/* localhost may resolve to ::1 first, where nobody listens: the next
	 * address is tried. */
	snprintf(url, sizeof(url), "http://localhost:%d/v1/traces?x=1#frag", s.port);
	cfg = config_for(url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert(strncmp(s.reqs[0].head, "POST /v1/traces?x=1 HTTP/1.1\r\n", 30) == 0, "%s",
		  s.reqs[0].head);
	snprintf(url, sizeof(url), "localhost:%d", s.port);
	cr_assert_str_eq(req_header(&s, 0, "Host"), url);
	cr_assert_eq(s.reqs[1].conn, s.reqs[0].conn);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http_curl, missing_libcurl_drops_and_reports_once, .init = setup_curl, .timeout = 30)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	osh_otlp_http_set_curl_library("libcurl-not-here.so.4");
	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(n_logs, 0, "nothing loaded yet");
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(n_logs, 1, "reported once");
	cr_assert_eq(log_levels[0], OSH_LOG_ERROR);
	cr_assert(strstr(logs[0], "libcurl-not-here.so.4"), "%s", logs[0]);
	cr_assert_eq(server_count(&s), 0);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 0);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

/* ---- which engine, and what it costs ---- */

Test(otlp_http_auto, plain_http_never_loads_libcurl, .init = setup, .timeout = 30)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	cr_assert_not(libcurl_mapped(), "this test program must not link libcurl");
	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert(osh_otlp_http_is_builtin(h));
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	cr_assert_not(libcurl_mapped(), "libcurl was loaded for a plain http:// export");
}

/* The check above can see libcurl when it is there. */
Test(otlp_http_auto, https_loads_libcurl, .init = setup, .timeout = 30)
{
	struct osh_config cfg;
	struct osh_otlp_http *h;
	char url[128];

	cr_assert_not(libcurl_mapped());
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/v1/traces", closed_port());
	cfg = config_for(url);
	h = make(&cfg);
	cr_assert_not(osh_otlp_http_is_builtin(h));
	cr_assert_not(libcurl_mapped(), "not before the first send");
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), true),
		     OSH_EXPORT_UNREACHABLE);
	cr_assert(libcurl_mapped());
	cr_assert_eq(n_logs, 0);
	osh_otlp_http_destroy(h);
}

Test(otlp_http_auto, engine_for_url, .init = setup)
{
	static const struct {
		const char *url;
		bool builtin;
	} cases[] = {
		{ "http://127.0.0.1:4318/v1/traces", true },
		{ "HTTP://localhost/v1/traces", true },
		{ "http://collector.example.com:80/", true },
		{ "http://[::1]:4318/v1/traces", true },
		{ "http://[::ffff:127.0.0.1]/", true },
		{ "http://host:/x", true },
		{ "http://u:p@host/", true },
		{ "http://host", true },
		{ "http://host?q=1", true },
		{ "http://host/a#b c", true },
		{ "https://host/", false },
		{ "ftp://host/", false },
		{ "http://[zz]/", false },
		{ "http://[::1/", false },
		{ "http://[::1]x/", false },
		{ "http://::1/", false },
		{ "http://host:99999/", false },
		{ "http://host:0/", false },
		{ "http://host:12a/", false },
		{ "http://:80/", false },
		{ "http://u@/", false },
		{ "http://ho%41st/", false },
		{ "http://host/a b", false },
		{ "http://host/\x80", false },
		{ "http://u:%zz@host/", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_config cfg = config_for(cases[i].url);
		struct osh_otlp_http *h = osh_otlp_http_create(&cfg, &host);

		cr_assert_not_null(h, "case %zu", i);
		cr_assert_eq(osh_otlp_http_is_builtin(h), cases[i].builtin, "case %zu (%s)", i,
			     cases[i].url);
		osh_otlp_http_destroy(h);
	}
	cr_assert_eq(n_logs, 0);
	cr_assert_eq(owned_now, 0);
}

Test(otlp_http_auto, proxy_from_the_environment_means_libcurl, .init = setup)
{
	static const struct {
		const char *var, *proxy, *no_proxy;
		const char *url;
		bool builtin;
	} cases[] = {
		{ "http_proxy", "http://proxy:3128", NULL, "http://127.0.0.1:4318/", false },
		{ "all_proxy", "http://proxy:3128", NULL, "http://127.0.0.1:4318/", false },
		{ "ALL_PROXY", "http://proxy:3128", NULL, "http://127.0.0.1:4318/", false },
		/* libcurl ignores HTTP_PROXY ("httpoxy"), and so do we. */
		{ "HTTP_PROXY", "http://proxy:3128", NULL, "http://127.0.0.1:4318/", true },
		{ "https_proxy", "http://proxy:3128", NULL, "http://127.0.0.1:4318/", true },
		{ "http_proxy", "", NULL, "http://127.0.0.1:4318/", true },
		{ "http_proxy", "http://proxy:3128", "127.0.0.1", "http://127.0.0.1:4318/", true },
		{ "http_proxy", "http://proxy:3128", "*", "http://c.example.com/", true },
		{ "http_proxy", "http://proxy:3128", "localhost, 127.0.0.1", "http://127.0.0.1/",
		  true },
		{ "http_proxy", "http://proxy:3128", "example.com", "http://c.example.com/", true },
		{ "http_proxy", "http://proxy:3128", ".example.com", "http://c.example.com/",
		  true },
		{ "http_proxy", "http://proxy:3128", "EXAMPLE.com", "http://c.example.com/", true },
		{ "http_proxy", "http://proxy:3128", "[::1]", "http://[::1]:4318/", true },
		{ "http_proxy", "http://proxy:3128", "ample.com", "http://c.example.com/", false },
		{ "http_proxy", "http://proxy:3128", "c.example.com.au", "http://c.example.com/",
		  false },
		{ "http_proxy", "http://proxy:3128", "127.0.0.0/8", "http://127.0.0.1/", false },
		{ "http_proxy", "http://proxy:3128", ",", "http://127.0.0.1/", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_config cfg = config_for(cases[i].url);
		struct osh_otlp_http *h;

		setup();
		setenv(cases[i].var, cases[i].proxy, 1);
		if (cases[i].no_proxy)
			setenv(i % 2 ? "no_proxy" : "NO_PROXY", cases[i].no_proxy, 1);
		capture_env(&cfg);
		h = osh_otlp_http_create(&cfg, &host);
		cr_assert_not_null(h, "case %zu", i);
		cr_assert_eq(osh_otlp_http_is_builtin(h), cases[i].builtin, "case %zu (%s=%s, %s)",
			     i, cases[i].var, cases[i].proxy,
			     cases[i].no_proxy ? cases[i].no_proxy : "-");
		osh_otlp_http_destroy(h);
	}
	/* Forcing the built-in client ignores the proxy. */
	setup();
	setenv("http_proxy", "http://proxy:3128", 1);
	setenv("OTELSHIM_OTLP_TRANSPORT", "builtin", 1);
	{
		struct osh_config cfg = config_for("http://127.0.0.1:4318/");
		struct osh_otlp_http *h = osh_otlp_http_create(&cfg, &host);

		cr_assert(osh_otlp_http_is_builtin(h));
		osh_otlp_http_destroy(h);
	}
	cr_assert_eq(n_logs, 0);
}

Test(otlp_http_auto, transport_override, .init = setup)
{
	static const struct {
		const char *env, *url;
		bool builtin;
		const char *log;	/* part of the one warning, or NULL */
	} cases[] = {
		{ "curl", "http://127.0.0.1:4318/", false, NULL },
		{ "builtin", "http://127.0.0.1:4318/", true, NULL },
		{ "", "http://127.0.0.1:4318/", true, NULL },
		{ "builtin", "https://127.0.0.1:4318/", false, "plain http:// only" },
		{ "builtin", "http://host/a b", false, "plain http:// only" },
		{ "Curl", "http://127.0.0.1:4318/", true, "neither curl nor builtin" },
		{ "nonsense", "https://127.0.0.1:4318/", false, "neither curl nor builtin" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_config cfg = config_for(cases[i].url);
		struct osh_otlp_http *h;

		n_logs = 0;
		setenv("OTELSHIM_OTLP_TRANSPORT", cases[i].env, 1);
		capture_env(&cfg);
		h = osh_otlp_http_create(&cfg, &host);
		cr_assert_not_null(h, "case %zu", i);
		cr_assert_eq(osh_otlp_http_is_builtin(h), cases[i].builtin, "case %zu", i);
		cr_assert_eq(n_logs, cases[i].log ? 1 : 0, "case %zu", i);
		if (cases[i].log)
			cr_assert(strstr(logs[0], cases[i].log), "case %zu: %s", i, logs[0]);
		osh_otlp_http_destroy(h);
	}
	cr_assert_not(libcurl_mapped(), "choosing libcurl does not load it");
}

/* Bytes after a complete response cannot be the answer to anything we
 * asked: the connection is out of step, and is not reused. (libcurl drops
 * such bytes and keeps the connection.) */
Test(otlp_http_builtin, bytes_after_the_response_end_the_connection, .init = setup_builtin,
     .timeout = 30)
{
	static const struct reply script[] = { { RESPOND_JUNK, 200, NULL, NULL, 0 },
					       { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 2);
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2, "the fake response did not answer the second request");
	cr_assert_neq(s.reqs[1].conn, s.reqs[0].conn);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

/* A collector that refuses a large body without reading it: the answer is
 * read while the request is still going out. */
TRANSPORT_TEST(early_response_while_sending)
{
	enum { BIG = 32 << 20 };
	static const struct reply script[] = { { EARLY_413, 413, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	uint8_t *big = calloc(1, BIG);

	cr_assert_not_null(big);
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = make(&cfg);
	/* Without reading early, the send would block until this deadline. */
	cr_assert_eq(osh_otlp_http_send(h, big, BIG, in_ms(5000), false), OSH_EXPORT_DROPPED);
	cr_assert_eq(server_count(&s), 1);
	cr_assert_eq(n_logs, 1);
	cr_assert(strstr(logs[0], "HTTP 413"), "%s", logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(big);
}

/* A request cut off by the deadline while going out leaves the connection
 * in mid-message: the next export must not write after it. */
TRANSPORT_TEST(send_cut_short_is_not_reused)
{
	enum { BIG = 32 << 20 };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	uint8_t *big = calloc(1, BIG);

	cr_assert_not_null(big);
	server_start(&s, &ok_200, 1);
	s.stall_first_ms = 1000;
	cfg = config_for(s.url);
	h = make(&cfg);
	cr_assert_eq(osh_otlp_http_send(h, big, BIG, in_ms(300), false), OSH_EXPORT_GAVE_UP);
	/* The server then reads what reached it of the first connection, up to
	 * its end, and serves the next one. */
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(15000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 1);
	cr_assert_arr_eq(s.reqs[0].body, payload, sizeof(payload));
	cr_assert_eq(s.reqs[0].conn, 2);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(big);
}

/* Which proxy field of the configuration names the test server. */
enum proxy_field { PROXY_NONE, PROXY_HTTP, PROXY_HTTPS };

static const struct reply answer_200[] = { { RESPOND, 200, NULL, NULL, 0 } };
static const struct reply answer_403[] = { { RESPOND, 403, NULL, NULL, 0 } };

/* One export to @url through libcurl, with a test server (@s, started
 * here, stopped by the caller) answering @script and named as the proxy
 * by @field of the configuration, not the environment. The export's
 * result. */
static int export_via(struct server *s, const struct reply *script, const char *url,
		      enum proxy_field field)
{
	struct osh_config cfg;
	struct osh_otlp_http *h;
	char proxy[64];
	int r;

	server_start(s, script, 1);
	snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", s->port);
	if (field == PROXY_NONE)
		setenv("https_proxy", proxy, 1); /* after load: must be ignored */
	cfg = config_for(url);
	cfg.no_proxy = NULL;
	cfg.http_proxy = field == PROXY_HTTP ? proxy : (char *)"http://127.0.0.1:9";
	cfg.https_proxy = field == PROXY_HTTPS ? proxy : NULL;
	h = make(&cfg);
	r = osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false);
	osh_otlp_http_destroy(h);
	return r;
}

static bool head_starts(const struct server *s, const char *line)
{
	return strncmp(s->reqs[0].head, line, strlen(line)) == 0;
}

/* libcurl is given the proxy the configuration captured, and nothing from
 * the environment as it is now: here the environment names no proxy and
 * excludes every host, the configuration names the test server as the
 * proxy. A plain http:// export then reaches it in absolute form. */
Test(otlp_http_curl, proxy_from_the_configuration_not_the_environment, .init = setup_curl,
     .timeout = 30)
{
	struct server s;

	setenv("no_proxy", "*", 1);
	cr_assert_eq(export_via(&s, answer_200, "http://collector.invalid:4318/v1/traces",
				PROXY_HTTP),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 1);
	cr_assert(head_starts(&s, "POST http://collector.invalid:4318/v1/traces HTTP/1.1\r\n"),
		  "%.60s", s.reqs[0].head);
	server_stop(&s);
}

/* An https:// collector goes through https_proxy (a CONNECT), not
 * http_proxy; and a proxy the environment names now but did not at load
 * is not used (the collector's port is closed: the export fails at once,
 * and no request reaches the server). */
Test(otlp_http_curl, https_goes_through_https_proxy, .init = setup_curl, .timeout = 30)
{
	struct server s;

	cr_assert_neq(export_via(&s, answer_403, "https://collector.invalid:4318/v1/traces",
				 PROXY_HTTPS),
		      OSH_EXPORT_OK);
	cr_assert_geq(server_count(&s), 1);
	cr_assert(head_starts(&s, "CONNECT collector.invalid:4318 HTTP/1.1\r\n"), "%.60s",
		  s.reqs[0].head);
	server_stop(&s);

	cr_assert_neq(export_via(&s, answer_403, "https://127.0.0.1:9/v1/traces", PROXY_NONE),
		      OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 0);
	server_stop(&s);
}

/* ---- the exporter in an fd table of its own ---- */

static int private_asked;

static bool host_private_yes(void)
{
	private_asked++;
	return true;
}

static const struct osh_otlp_host private_host = {
	.log = host_log,
	.own_fd = host_own_fd,
	.private_fds = host_private_yes,
};

/* Once the built-in client's thread has its own table, no other thread can
 * reach a wake fd: there is none, and a wait notices a deadline that
 * interrupt() pulled in within a slice (without slices: the longest poll,
 * 10 s). */
Test(otlp_http_builtin, private_table_has_no_wake_fd_and_waits_in_slices,
     .init = setup_builtin, .timeout = 30)
{
	uint64_t spent = interrupted_blocked_send(&private_host);

	cr_assert_eq(private_asked, 1);
	cr_assert_eq(owned_total - socks_total, 0, "no wake fd");
	cr_assert_lt(spent, 3000000000ull, "returned after %llu ms",
		     (unsigned long long)(spent / 1000000));
}

/* libcurl may resolve names on threads of its own: it is never asked to
 * leave the host's table. */
Test(otlp_http_curl, curl_stays_in_the_hosts_table, .init = setup_curl, .timeout = 30)
{
	struct osh_config cfg = config_for("http://127.0.0.1:9/v1/traces");
	struct osh_otlp_http *h;

	private_asked = 0;
	h = osh_otlp_http_create(&cfg, &private_host);
	cr_assert_not_null(h);
	cr_assert_eq(private_asked, 0);
	cr_assert_eq(owned_total - socks_total, 1, "the wake fd, marked in the host's table");
	osh_otlp_http_destroy(h);
}
