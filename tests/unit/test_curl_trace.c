/* Tests for src/curl_trace.c: libcurl transfers as CLIENT spans.
 *
 * Most tests run the module against a fake libcurl (osh_curl_api_override):
 * its curl_easy_setopt records every call, so a test sees exactly which
 * header list was installed in the handle and when the program's own came
 * back, and its curl_easy_getinfo answers from a table the test fills. A
 * few use the real libcurl this program links: the module must find it
 * (dlsym(RTLD_NEXT)) and install and restore lists on a real handle. Run
 * under ASan, these also check that the module frees every list it built
 * and never touches the program's.
 *
 * Finished spans are captured with osh_exporter_set_capture().
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "config.h"
#include "context.h"
#include "curl_trace.h"
#include "exporter.h"
#include "ids.h"
#include "propagation.h"
#include "span.h"

#define MAX_CAPTURED 16
#include "test_support.h"

/* ---- span attributes ------------------------------------------------------------ */

static const char *attr_str(const struct osh_span *s, const char *key)
{
	static char buf[4][2048];
	static int which;
	const struct osh_attr *a = osh_span_find(s, key);
	char *o = buf[which++ % 4];

	if (!a)
		return NULL;
	cr_assert_eq(a->type, OSH_ATTR_STRING, "%s is not a string", key);
	memcpy(o, osh_span_str(s, a->v.s), a->v.s.len);
	o[a->v.s.len] = '\0';
	return o;
}

static int64_t attr_int(const struct osh_span *s, const char *key)
{
	const struct osh_attr *a = osh_span_find(s, key);

	cr_assert(a, "no attribute %s", key);
	cr_assert_eq(a->type, OSH_ATTR_INT, "%s is not an int", key);
	return a->v.i;
}

static double attr_double(const struct osh_span *s, const char *key)
{
	const struct osh_attr *a = osh_span_find(s, key);

	cr_assert(a, "no attribute %s", key);
	cr_assert_eq(a->type, OSH_ATTR_DOUBLE, "%s is not a double", key);
	return a->v.d;
}

static const char *span_name(const struct osh_span *s)
{
	static char buf[512];

	memcpy(buf, osh_span_str(s, s->name), s->name.len);
	buf[s->name.len] = '\0';
	return buf;
}

/* ---- a fake libcurl -------------------------------------------------------------- */

#define MAX_CALLS 64

static struct {
	void *easy;
	int opt;
	const void *ptr;
	long num;
	curl_off_t off;
	void (*fn)(void);
} calls[MAX_CALLS];
static int n_calls;
static int setopt_result;	/* what the fake setopt returns */

static int fake_setopt(void *easy, int opt, ...)
{
	va_list ap;

	cr_assert_lt(n_calls, MAX_CALLS);
	calls[n_calls].easy = easy;
	calls[n_calls].opt = opt;
	va_start(ap, opt);
	if (opt < CURLOPTTYPE_OBJECTPOINT)
		calls[n_calls].num = va_arg(ap, long);
	else if (opt < CURLOPTTYPE_FUNCTIONPOINT)
		calls[n_calls].ptr = va_arg(ap, void *);
	else if (opt < CURLOPTTYPE_OFF_T)
		calls[n_calls].fn = va_arg(ap, void (*)(void));
	else if (opt < CURLOPTTYPE_BLOB)
		calls[n_calls].off = va_arg(ap, curl_off_t);
	else
		calls[n_calls].ptr = va_arg(ap, void *);
	va_end(ap);
	n_calls++;
	return setopt_result;
}

/* What the fake curl_easy_getinfo reports. */
static struct {
	const char *url;
	const char *method;
	const char *ip;
	long port;
	long code;
	long version;
	long redirects;
	curl_off_t up;
	curl_off_t down;
	curl_off_t clen;
	curl_off_t t_dns, t_connect, t_tls, t_pre, t_first, t_total;
	bool fail;		/* every query fails (an old libcurl) */
} info;

static int fake_getinfo(void *easy, int what, ...)
{
	va_list ap;
	int rc = CURLE_OK;

	(void)easy;
	if (info.fail)
		return CURLE_UNKNOWN_OPTION;
	va_start(ap, what);
	switch (what) {
	case CURLINFO_EFFECTIVE_URL:
		*va_arg(ap, const char **) = info.url;
		break;
	case CURLINFO_EFFECTIVE_METHOD:
		*va_arg(ap, const char **) = info.method;
		break;
	case CURLINFO_PRIMARY_IP:
		*va_arg(ap, const char **) = info.ip;
		break;
	case CURLINFO_PRIMARY_PORT:
		*va_arg(ap, long *) = info.port;
		break;
	case CURLINFO_RESPONSE_CODE:
		*va_arg(ap, long *) = info.code;
		break;
	case CURLINFO_HTTP_VERSION:
		*va_arg(ap, long *) = info.version;
		break;
	case CURLINFO_REDIRECT_COUNT:
		*va_arg(ap, long *) = info.redirects;
		break;
	case CURLINFO_SIZE_UPLOAD_T:
		*va_arg(ap, curl_off_t *) = info.up;
		break;
	case CURLINFO_SIZE_DOWNLOAD_T:
		*va_arg(ap, curl_off_t *) = info.down;
		break;
	case CURLINFO_CONTENT_LENGTH_DOWNLOAD_T:
		*va_arg(ap, curl_off_t *) = info.clen;
		break;
	case CURLINFO_NAMELOOKUP_TIME_T:
		*va_arg(ap, curl_off_t *) = info.t_dns;
		break;
	case CURLINFO_CONNECT_TIME_T:
		*va_arg(ap, curl_off_t *) = info.t_connect;
		break;
	case CURLINFO_APPCONNECT_TIME_T:
		*va_arg(ap, curl_off_t *) = info.t_tls;
		break;
	case CURLINFO_PRETRANSFER_TIME_T:
		*va_arg(ap, curl_off_t *) = info.t_pre;
		break;
	case CURLINFO_STARTTRANSFER_TIME_T:
		*va_arg(ap, curl_off_t *) = info.t_first;
		break;
	case CURLINFO_TOTAL_TIME_T:
		*va_arg(ap, curl_off_t *) = info.t_total;
		break;
	default:
		rc = CURLE_UNKNOWN_OPTION;
		break;
	}
	va_end(ap);
	return rc;
}

static const char *fake_scheme = "https";

static int fake_url_get(void *url, int part, char **ret, unsigned int flags)
{
	(void)url;
	(void)flags;
	if (part != CURLUPART_SCHEME || !fake_scheme)
		return CURLUE_NO_SCHEME;
	*ret = strdup(fake_scheme);
	return CURLUE_OK;
}

static const struct osh_curl_api fake_api = {
	.easy_setopt = fake_setopt,
	.easy_getinfo = fake_getinfo,
	.url_get = fake_url_get,
	.free = free,
};

/* Handles are only keys to the module: any distinct addresses do. */
static char handles[8];
#define H0 ((void *)&handles[0])
#define H1 ((void *)&handles[1])
#define M0 ((void *)&handles[6])
#define M1 ((void *)&handles[7])

/* ---- set-up ---------------------------------------------------------------------- */

static void setup_fake(void)
{
	test_config(OSH_SAMPLER_ALWAYS_ON, NULL, NULL, NULL);
	osh_curl_api_override(&fake_api);
	n_calls = 0;
	setopt_result = CURLE_OK;
	memset(&info, 0, sizeof(info));
	info.url = "http://api.example.com:8080/v1/users/12345?key=s3cr3t&q=1";
	info.method = "GET";
	info.ip = "10.1.2.3";
	info.port = 8080;
	info.code = 200;
	info.version = CURL_HTTP_VERSION_1_1;
	info.down = 42;
	info.clen = 42;
	info.t_dns = 1000;
	info.t_connect = 2500;
	info.t_pre = 3000;
	info.t_first = 40000;
	info.t_total = 41000;
}

static void teardown(void)
{
	/* The fake libcurl's record of pointers would keep a list the module
	 * failed to free reachable: LeakSanitizer must see it lost. */
	memset(calls, 0, sizeof(calls));
	osh_curl_reset_all();
	drop_captured();
	osh_exporter_set_capture(NULL);
	osh_curl_api_override(NULL);
	osh_context_clear();
	osh_env_ctx_finish(&osh_env_ctx);
#if defined(__SANITIZE_ADDRESS__)
	/* Criterion passes a test whose process LeakSanitizer flags at exit,
	 * and ignores assertions in a fini: look now, and crash the test on
	 * a leak (the report is above). */
	if (__lsan_do_recoverable_leak_check())
		abort();
#endif
}

TestSuite(curl, .init = setup_fake, .fini = teardown);

/* A program list (built with libcurl, as a program builds it). */
static struct curl_slist *program_list(const char *const *lines, int n)
{
	struct curl_slist *l = NULL;

	for (int i = 0; i < n; i++) {
		struct curl_slist *t = curl_slist_append(l, lines[i]);

		cr_assert(t);
		l = t;
	}
	return l;
}

/* The strings of @l joined by '|', a traceparent value (random ids)
 * shown as "TP". */
static const char *joined(const struct curl_slist *l)
{
	static char buf[4096];
	size_t n = 0;

	buf[0] = '\0';
	for (; l; l = l->next) {
		bool tp = strncmp(l->data, "traceparent: 00-", 16) == 0 && strlen(l->data) == 68;

		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", n ? "|" : "",
				      tp ? "traceparent: TP" : l->data);
	}
	return buf;
}

/* Nodes and string pointers of @l, to check the list was never touched. */
struct snapshot {
	int n;
	const struct curl_slist *node[16];
	const char *data[16];
	char text[16][128];
};

static void snap(const struct curl_slist *l, struct snapshot *s)
{
	memset(s, 0, sizeof(*s));
	for (; l; l = l->next, s->n++) {
		cr_assert_lt(s->n, 16);
		s->node[s->n] = l;
		s->data[s->n] = l->data;
		snprintf(s->text[s->n], sizeof(s->text[0]), "%s", l->data);
	}
}

static void assert_same(const struct curl_slist *l, const struct snapshot *s)
{
	int i = 0;

	for (; l; l = l->next, i++) {
		cr_assert_lt(i, s->n, "the program's list grew");
		cr_assert_eq(l, s->node[i], "node %d replaced", i);
		cr_assert_eq(l->data, s->data[i], "string %d replaced", i);
		cr_assert_str_eq(l->data, s->text[i], "string %d changed", i);
	}
	cr_assert_eq(i, s->n, "the program's list shrank");
}

/* The last CURLOPT_HTTPHEADER the module set on @easy, or (void *)-1. */
static const struct curl_slist *installed(void *easy)
{
	for (int i = n_calls - 1; i >= 0; i--)
		if (calls[i].easy == easy && calls[i].opt == CURLOPT_HTTPHEADER)
			return calls[i].ptr;
	return (const void *)-1;
}

static int header_sets(void *easy)
{
	int n = 0;

	for (int i = 0; i < n_calls; i++)
		n += calls[i].easy == easy && calls[i].opt == CURLOPT_HTTPHEADER;
	return n;
}

/* ---- URL schemes ------------------------------------------------------------------- */

Test(curl, url_kinds)
{
	static const struct {
		const char *url;
		enum osh_curl_url_kind kind;
	} cases[] = {
		{ "http://example.com/", OSH_CURL_URL_HTTP },
		{ "HTTP://example.com/", OSH_CURL_URL_HTTP },
		{ "https://example.com/", OSH_CURL_URL_HTTPS },
		{ "HttpS://x", OSH_CURL_URL_HTTPS },
		{ "http:/x", OSH_CURL_URL_HTTP },
		{ "ftp://example.com/f", OSH_CURL_URL_OTHER },
		{ "file:///etc/hosts", OSH_CURL_URL_OTHER },
		{ "smtps://mail.example.com", OSH_CURL_URL_OTHER },
		{ "ws://example.com/", OSH_CURL_URL_OTHER },
		{ "httpx://example.com/", OSH_CURL_URL_OTHER },
		{ "svn+ssh://example.com/", OSH_CURL_URL_OTHER },
		/* No scheme: libcurl guesses. */
		{ "example.com/path", OSH_CURL_URL_GUESS },
		{ "localhost:8080/x", OSH_CURL_URL_GUESS },
		{ "127.0.0.1:80", OSH_CURL_URL_GUESS },
		{ "http.example.com", OSH_CURL_URL_GUESS },
		{ "ftp.example.com/pub", OSH_CURL_URL_OTHER },
		{ "FTP.example.com", OSH_CURL_URL_OTHER },
		{ "dict.example.com", OSH_CURL_URL_OTHER },
		{ "ldap.example.com", OSH_CURL_URL_OTHER },
		{ "imap.example.com", OSH_CURL_URL_OTHER },
		{ "smtp.example.com", OSH_CURL_URL_OTHER },
		{ "pop3.example.com", OSH_CURL_URL_OTHER },
		{ "ftpexample.com", OSH_CURL_URL_GUESS },
		{ "", OSH_CURL_URL_NONE },
		{ NULL, OSH_CURL_URL_NONE },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(osh_curl_url_kind(cases[i].url), cases[i].kind, "%s",
			     cases[i].url ? cases[i].url : "(null)");
}

/* ---- the program's header list --------------------------------------------------- */

Test(curl, scan_finds_headers_whatever_their_case)
{
	static const char *const lines[] = {
		"Accept: */*",
		"TraceParent:  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01  ",
		"TRACESTATE: a=1",
		"Baggage: k=v",
		"X-Request-Id: r1",
		"user-agent: prog/2",
		"not a header line",
	};
	struct curl_slist *l = program_list(lines, 7);
	struct osh_curl_app_headers h;

	osh_curl_scan_headers(l, &h);
	cr_assert_eq(h.traceparent_count, 1);
	cr_assert_eq(h.traceparent.len, 55);
	cr_assert(memcmp(h.traceparent.p, "00-4bf9", 7) == 0);
	cr_assert_eq(h.tracestate_count, 1);
	cr_assert_eq(h.tracestate.len, 3);
	cr_assert_eq(h.baggage_count, 1);
	cr_assert_eq(h.request_id_count, 1);
	cr_assert(h.user_agent_set);
	cr_assert_eq(h.user_agent.len, 6);
	cr_assert(memcmp(h.user_agent.p, "prog/2", 6) == 0);
	curl_slist_free_all(l);
}

Test(curl, scan_counts_removals_and_empty_headers)
{
	/* "Name:" asks libcurl to drop the header, "Name;" to send it empty:
	 * both are the program's say on that header. */
	static const char *const lines[] = { "traceparent:", "traceparent;", "User-Agent:",
					     "X-Traceparent: no", "traceparentx: no" };
	struct curl_slist *l = program_list(lines, 5);
	struct osh_curl_app_headers h;

	osh_curl_scan_headers(l, &h);
	cr_assert_eq(h.traceparent_count, 2);
	cr_assert_eq(h.traceparent.len, 0);
	cr_assert(h.user_agent_set);
	cr_assert_eq(h.user_agent.len, 0);
	curl_slist_free_all(l);

	osh_curl_scan_headers(NULL, &h);
	cr_assert_eq(h.traceparent_count, 0);
	cr_assert(!h.user_agent_set);
}

Test(curl, build_list_points_at_program_strings_then_adds_lines)
{
	static const char *const lines[] = { "X-First: 1", "X-Second: 2", "X-Third: 3" };
	struct curl_slist *app = program_list(lines, 3);
	struct osh_curl_line add[] = {
		{ "traceparent", "00-abc", 6 },
		{ "baggage", "k=v,extra-not-included", 3 },
	};
	struct curl_slist *ours = NULL;
	struct snapshot before;

	snap(app, &before);
	cr_assert_eq(osh_curl_build_list(app, add, 2, &ours), 0);
	cr_assert_str_eq(joined(ours), "X-First: 1|X-Second: 2|X-Third: 3|traceparent: 00-abc|"
				       "baggage: k=v");
	/* The program's strings themselves, not copies. */
	cr_assert_eq(ours->data, app->data);
	cr_assert_eq(ours->next->next->data, app->next->next->data);
	assert_same(app, &before);
	free(ours);
	assert_same(app, &before);
	curl_slist_free_all(app);
}

Test(curl, build_list_edge_cases)
{
	static const char *const lines[] = { "X-Only: 1" };
	struct curl_slist *app = program_list(lines, 1);
	struct osh_curl_line add = { "traceparent", "v", 1 };
	struct curl_slist *ours = (void *)1;

	cr_assert_eq(osh_curl_build_list(NULL, NULL, 0, &ours), 0);
	cr_assert_null(ours);
	cr_assert_eq(osh_curl_build_list(NULL, &add, 1, &ours), 0);
	cr_assert_str_eq(joined(ours), "traceparent: v");
	free(ours);
	cr_assert_eq(osh_curl_build_list(app, NULL, 0, &ours), 0);
	cr_assert_str_eq(joined(ours), "X-Only: 1");
	cr_assert_neq(ours, app);
	free(ours);
	curl_slist_free_all(app);
}

/* ---- setopt ------------------------------------------------------------------------ */

static int call_pass(void *easy, int opt, const void **ptr, long *num, ...)
{
	va_list ap;
	int rc;

	va_start(ap, num);
	rc = osh_curl_setopt_pass(&fake_api, easy, opt, ap, ptr, num);
	va_end(ap);
	return rc;
}

static void some_callback(void)
{
}

Test(curl, setopt_passes_each_argument_class_unchanged)
{
	const void *ptr;
	long num;
	char obj[4];
	struct curl_blob blob = { obj, 4, CURL_BLOB_COPY };

	setopt_result = CURLE_UNKNOWN_OPTION;
	/* long: the whole long, negative and beyond 32 bits too. */
	cr_assert_eq(call_pass(H0, CURLOPT_VERBOSE, &ptr, &num, LONG_MAX), CURLE_UNKNOWN_OPTION);
	cr_assert_eq(calls[0].num, LONG_MAX);
	cr_assert_eq(num, LONG_MAX);
	call_pass(H0, CURLOPT_TIMEOUT, &ptr, &num, -7L);
	cr_assert_eq(calls[1].num, -7L);
	/* The last long option number before the pointer range. */
	call_pass(H0, CURLOPTTYPE_OBJECTPOINT - 1, &ptr, &num, 5L);
	cr_assert_eq(calls[2].num, 5L);
	/* Object pointers (strings, lists, data). */
	call_pass(H0, CURLOPT_URL, &ptr, &num, "http://x/");
	cr_assert_str_eq(calls[3].ptr, "http://x/");
	cr_assert_str_eq(ptr, "http://x/");
	call_pass(H0, CURLOPT_WRITEDATA, &ptr, &num, (void *)obj);
	cr_assert_eq(calls[4].ptr, obj);
	/* Function pointers. */
	call_pass(H0, CURLOPT_WRITEFUNCTION, &ptr, &num, some_callback);
	cr_assert_eq(calls[5].fn, some_callback);
	/* Reported as data: the write callback an LLM transfer stands in for. */
	cr_assert_eq(ptr, (const void *)(uintptr_t)some_callback);
	/* curl_off_t, beyond 32 bits, reported in num (POSTFIELDSIZE_LARGE). */
	call_pass(H0, CURLOPT_MAXFILESIZE_LARGE, &ptr, &num, (curl_off_t)1 << 40);
	cr_assert_eq(calls[6].off, (curl_off_t)1 << 40);
	cr_assert_eq(num, 1L << 40);
	call_pass(H0, CURLOPT_INFILESIZE_LARGE, &ptr, &num, (curl_off_t)-1);
	cr_assert_eq(calls[7].off, -1);
	cr_assert_eq(num, -1);
	/* Blobs. */
	call_pass(H0, CURLOPT_SSLCERT_BLOB, &ptr, &num, &blob);
	cr_assert_eq(calls[8].ptr, &blob);
	cr_assert_eq(n_calls, 9);
	for (int i = 0; i < n_calls; i++)
		cr_assert_eq(calls[i].easy, H0);
}

Test(curl, setopt_records_only_what_it_needs)
{
	struct osh_curl_xfer *x;
	struct curl_slist *l = (void *)0x1234;

	/* Options the module does not need, and defaults, make no record. */
	cr_assert(!osh_curl_setopt_wanted(CURLOPT_VERBOSE));
	osh_curl_setopt(H0, CURLOPT_VERBOSE, NULL, 1, true);
	osh_curl_setopt(H0, CURLOPT_HTTPHEADER, NULL, 0, true);
	osh_curl_setopt(H0, CURLOPT_CONNECT_ONLY, NULL, 0, true);
	cr_assert_null(osh_curl_find(H0));
	/* Calls from inside libcurl (its own handles) never create one. */
	osh_curl_setopt(H0, CURLOPT_URL, "http://x/", 0, false);
	cr_assert_null(osh_curl_find(H0));

	osh_curl_setopt(H0, CURLOPT_URL, "https://x/", 0, true);
	x = osh_curl_find(H0);
	cr_assert(x);
	cr_assert_eq(x->url_kind, OSH_CURL_URL_HTTPS);
	/* ... but update one that exists. */
	osh_curl_setopt(H0, CURLOPT_HTTPHEADER, l, 0, false);
	cr_assert_eq(x->app_list, l);
	osh_curl_setopt(H0, CURLOPT_USERAGENT, "agent/1", 0, true);
	cr_assert_str_eq(x->user_agent, "agent/1");
	osh_curl_setopt(H0, CURLOPT_USERAGENT, NULL, 0, true);
	cr_assert_null(x->user_agent);
	osh_curl_setopt(H0, CURLOPT_DEFAULT_PROTOCOL, "https", 0, true);
	cr_assert_eq(x->default_kind, OSH_CURL_URL_HTTPS);
	osh_curl_setopt(H0, CURLOPT_CONNECT_ONLY, NULL, 2, true);
	cr_assert(x->connect_only);
	osh_curl_setopt(H0, CURLOPT_CURLU, H1, 0, true);
	cr_assert_eq(x->curlu, H1);
	cr_assert_eq(osh_curl_find(H0), x);
	cr_assert_null(osh_curl_find(H1));
}

Test(curl, handle_table_survives_growth_and_removals)
{
	enum { N = 3000 };
	static char keys[N];
	struct osh_curl_xfer *x;

	for (int i = 0; i < N; i++)
		osh_curl_setopt(&keys[i], CURLOPT_URL, "http://x/", 0, true);
	for (int i = 0; i < N; i++) {
		x = osh_curl_find(&keys[i]);
		cr_assert(x && x->easy == &keys[i], "key %d lost", i);
	}
	/* Remove two of every three, in a scrambled order (cleanup). */
	for (int k = 0; k < N; k++) {
		int i = (int)(((unsigned)k * 7919u) % N);

		if (i % 3 == 0)
			continue;
		x = osh_curl_cleanup_begin(&keys[i]);
		cr_assert(x, "key %d", i);
		osh_curl_cleanup_done(x);
	}
	for (int i = 0; i < N; i++) {
		x = osh_curl_find(&keys[i]);
		if (i % 3 == 0)
			cr_assert(x && x->easy == &keys[i], "key %d lost after removals", i);
		else
			cr_assert_null(x, "key %d still there", i);
	}
}

/* ---- transfers ---------------------------------------------------------------------- */

static struct osh_curl_xfer *start_with(void *easy, void *multi, const char *url,
					struct curl_slist *list)
{
	osh_curl_setopt(easy, CURLOPT_URL, url, 0, true);
	if (list)
		osh_curl_setopt(easy, CURLOPT_HTTPHEADER, list, 0, true);
	return osh_curl_start(easy, multi);
}

/* The traceparent value we added to the list installed in @easy. */
static struct osh_trace_ctx injected(void *easy)
{
	const struct curl_slist *l = installed(easy);
	struct osh_trace_ctx tp = { 0 };

	cr_assert_neq(l, (const void *)-1, "no list installed");
	for (; l; l = l->next)
		if (strncmp(l->data, "traceparent: ", 13) == 0)
			cr_assert(osh_traceparent_parse(l->data + 13, strlen(l->data + 13), &tp));
	cr_assert(tp.valid, "no traceparent line");
	return tp;
}

Test(curl, easy_transfer_installs_then_restores_and_spans)
{
	static const char *const lines[] = { "X-First: 1", "Content-Type: text/plain" };
	struct curl_slist *app = program_list(lines, 2);
	struct snapshot before;
	struct osh_curl_xfer *x;
	struct osh_trace_ctx tp;
	const struct osh_span *s;

	snap(app, &before);
	osh_curl_setopt(H0, CURLOPT_USERAGENT, "prog/1.0", 0, true);
	x = start_with(H0, NULL, "http://api.example.com:8080/v1/users/12345", app);
	cr_assert(x);
	cr_assert(x->active);
	cr_assert(!osh_curl_multi_busy());
	/* Our list: the program's lines in its order, then traceparent. */
	cr_assert_eq(installed(H0), x->our_list);
	cr_assert_str_eq(joined(x->our_list),
			 "X-First: 1|Content-Type: text/plain|traceparent: TP");
	tp = injected(H0);
	assert_same(app, &before);

	osh_curl_end(x, CURLE_OK, true);
	/* The program's own pointer is back; ours is freed (ASan). */
	cr_assert_eq(installed(H0), app);
	cr_assert_eq(header_sets(H0), 2);
	cr_assert_null(x->our_list);
	cr_assert(!x->active);
	assert_same(app, &before);

	cr_assert_eq(n_captured, 1);
	s = captured[0];
	cr_assert_eq(s->kind, OSH_SPAN_CLIENT);
	cr_assert(memcmp(s->trace_id, tp.trace_id, 16) == 0);
	cr_assert(memcmp(s->span_id, tp.span_id, 8) == 0);
	cr_assert_eq(s->trace_flags, 1);
	cr_assert(!s->has_parent);
	cr_assert_eq(s->status_code, OSH_STATUS_UNSET);
	cr_assert_str_eq(span_name(s), "GET /v1/users/{id}");
	cr_assert_str_eq(attr_str(s, "http.request.method"), "GET");
	cr_assert_str_eq(attr_str(s, "url.full"),
			 "http://api.example.com:8080/v1/users/12345?key=REDACTED&q=1");
	cr_assert_str_eq(attr_str(s, "url.path"), "/v1/users/12345");
	cr_assert_str_eq(attr_str(s, "url.scheme"), "http");
	cr_assert_str_eq(attr_str(s, "server.address"), "api.example.com");
	cr_assert_eq(attr_int(s, "server.port"), 8080);
	cr_assert_str_eq(attr_str(s, "network.peer.address"), "10.1.2.3");
	cr_assert_eq(attr_int(s, "network.peer.port"), 8080);
	cr_assert_str_eq(attr_str(s, "network.protocol.version"), "1.1");
	cr_assert_eq(attr_int(s, "http.response.status_code"), 200);
	cr_assert_eq(attr_int(s, "http.response.body.size"), 42);
	cr_assert_null(osh_span_find(s, "http.request.body.size"));
	cr_assert_null(osh_span_find(s, "http.request.resend_count"));
	cr_assert_str_eq(attr_str(s, "user_agent.original"), "prog/1.0");
	cr_assert_null(osh_span_find(s, "error.type"));
	cr_assert_float_eq(attr_double(s, "http.client.timing.dns_done"), 0.001, 1e-9);
	cr_assert_float_eq(attr_double(s, "http.client.timing.connect_done"), 0.0025, 1e-9);
	cr_assert_null(osh_span_find(s, "http.client.timing.tls_done"));
	cr_assert_float_eq(attr_double(s, "http.client.timing.request_start"), 0.003, 1e-9);
	cr_assert_float_eq(attr_double(s, "http.client.timing.first_byte"), 0.04, 1e-9);
	cr_assert_float_eq(attr_double(s, "http.client.timing.total"), 0.041, 1e-9);
	cr_assert_geq(s->end_ns, s->start_ns);
	cr_assert_gt(s->start_ns, 1600000000ull * 1000000000ull);
	curl_slist_free_all(app);
}

Test(curl, no_program_list_restores_null)
{
	struct osh_curl_xfer *x = start_with(H0, NULL, "http://x/", NULL);

	cr_assert(x);
	cr_assert_str_eq(joined(x->our_list), "traceparent: TP");
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_null(installed(H0));
}

Test(curl, several_transfers_on_one_handle)
{
	static const char *const lines[] = { "X-Keep: yes" };
	struct curl_slist *app = program_list(lines, 1);
	struct osh_trace_ctx first, second;
	struct osh_curl_xfer *x;

	x = start_with(H0, NULL, "http://x/1", app);
	first = injected(H0);
	osh_curl_end(x, CURLE_OK, true);
	x = osh_curl_start(H0, NULL);
	cr_assert(x);
	second = injected(H0);
	cr_assert_str_eq(joined(installed(H0)), "X-Keep: yes|traceparent: TP");
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_eq(installed(H0), app);
	cr_assert_eq(n_captured, 2);
	cr_assert(memcmp(first.span_id, second.span_id, 8) != 0);
	cr_assert(memcmp(first.trace_id, second.trace_id, 16) != 0);
	curl_slist_free_all(app);
}

Test(curl, program_traceparent_means_child_span_and_nothing_injected)
{
	static const char *const lines[] = {
		"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate: app=1",
	};
	struct curl_slist *app = program_list(lines, 2);
	struct osh_curl_xfer *x = start_with(H0, NULL, "http://x/", app);
	const struct osh_span *s;
	char ts[16];

	cr_assert(x, "still traced at this level");
	cr_assert_eq(header_sets(H0), 0, "the program's list is left in place");
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_eq(header_sets(H0), 0);
	cr_assert_eq(n_captured, 1);
	s = captured[0];
	cr_assert(s->has_parent);
	cr_assert(s->parent_remote);
	cr_assert(memcmp(s->parent_span_id, "\x00\xf0\x67\xaa\x0b\xa9\x02\xb7", 8) == 0);
	cr_assert(memcmp(s->trace_id, "\x4b\xf9\x2f\x35", 4) == 0);
	memcpy(ts, osh_span_str(s, s->trace_state), s->trace_state.len);
	ts[s->trace_state.len] = '\0';
	cr_assert_str_eq(ts, "app=1");
	curl_slist_free_all(app);
}

Test(curl, program_invalid_traceparent_root_span_nothing_injected)
{
	static const char *const lines[] = {
		"TRACEPARENT: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
	};
	struct curl_slist *app = program_list(lines, 1);
	struct osh_curl_xfer *x = start_with(H0, NULL, "http://x/", app);

	cr_assert(x);
	cr_assert_eq(header_sets(H0), 0);
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_eq(n_captured, 1);
	cr_assert(!captured[0]->has_parent);
	curl_slist_free_all(app);
}

Test(curl, only_http_transfers_are_traced_here)
{
	cr_assert_null(start_with(H0, NULL, "ftp://x/f", NULL));
	cr_assert_null(start_with(H0, NULL, "ftp.example.com/f", NULL));
	cr_assert_null(start_with(H0, NULL, "smtp://mail/", NULL));
	cr_assert_eq(n_calls, 0);
	/* A scheme-less URL follows CURLOPT_DEFAULT_PROTOCOL, else http. */
	osh_curl_setopt(H1, CURLOPT_DEFAULT_PROTOCOL, "ftp", 0, true);
	cr_assert_null(start_with(H1, NULL, "example.com/f", NULL));
	osh_curl_setopt(H1, CURLOPT_DEFAULT_PROTOCOL, "https", 0, true);
	cr_assert(osh_curl_start(H1, NULL));
	osh_curl_end(osh_curl_find(H1), CURLE_OK, true);
	cr_assert(start_with(H0, NULL, "localhost:8080/x", NULL));
	osh_curl_end(osh_curl_find(H0), CURLE_OK, true);
	cr_assert_eq(n_captured, 2);
}

Test(curl, connect_only_and_unknown_handles_are_left_alone)
{
	cr_assert_null(osh_curl_start(H1, NULL), "no record: nothing known about it");
	osh_curl_setopt(H0, CURLOPT_CONNECT_ONLY, NULL, 1, true);
	cr_assert_null(start_with(H0, NULL, "http://x/", NULL));
	osh_curl_setopt(H0, CURLOPT_CONNECT_ONLY, NULL, 0, true);
	cr_assert(osh_curl_start(H0, NULL));
}

Test(curl, curlu_overrides_url)
{
	struct osh_curl_xfer *x;

	osh_curl_setopt(H0, CURLOPT_URL, "ftp://x/", 0, true);
	osh_curl_setopt(H0, CURLOPT_CURLU, H1, 0, true);
	fake_scheme = "https";
	x = osh_curl_start(H0, NULL);
	cr_assert(x);
	osh_curl_end(x, CURLE_OK, true);
	fake_scheme = "ftp";
	cr_assert_null(osh_curl_start(H0, NULL));
	fake_scheme = NULL;
	cr_assert_null(osh_curl_start(H0, NULL));
	fake_scheme = "https";
}

Test(curl, unsampled_still_propagates_flag_00)
{
	struct osh_curl_xfer *x;
	struct osh_trace_ctx tp;

	osh_cfg.sampler = OSH_SAMPLER_ALWAYS_OFF;
	x = start_with(H0, NULL, "http://x/", NULL);
	cr_assert(x);
	cr_assert_null(x->rec);
	tp = injected(H0);
	cr_assert_eq(tp.flags & OSH_FLAG_SAMPLED, 0);
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_eq(n_captured, 0);
	cr_assert_null(installed(H0));
}

Test(curl, env_carrier_parent_tracestate_and_baggage)
{
	struct osh_curl_xfer *x;
	struct osh_trace_ctx tp;

	test_config(OSH_SAMPLER_PARENTBASED_ALWAYS_ON,
		    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=abc",
		    "user_id=u-1");
	x = start_with(H0, NULL, "http://x/", NULL);
	tp = injected(H0);
	cr_assert(memcmp(tp.trace_id, "\x4b\xf9\x2f\x35", 4) == 0);
	cr_assert_str_eq(joined(installed(H0)),
			 "traceparent: TP|tracestate: vendor=abc|baggage: user_id=u-1");
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_eq(n_captured, 1);
	cr_assert(captured[0]->has_parent);
	cr_assert(captured[0]->parent_remote);
	cr_assert_eq(captured[0]->trace_state.len, strlen("vendor=abc"));
}

Test(curl, program_tracestate_and_baggage_are_not_doubled)
{
	static const char *const lines[] = { "Baggage: mine=1", "tracestate: mine=2" };
	struct curl_slist *app = program_list(lines, 2);

	test_config(OSH_SAMPLER_PARENTBASED_ALWAYS_ON,
		    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=abc",
		    "user_id=u-1");
	start_with(H0, NULL, "http://x/", app);
	cr_assert_eq(strstr(joined(installed(H0)), "vendor"), NULL);
	cr_assert_eq(strstr(joined(installed(H0)), "user_id"), NULL);
	osh_curl_end(osh_curl_find(H0), CURLE_OK, true);
	curl_slist_free_all(app);
}

Test(curl, thread_context_is_the_parent)
{
	static struct osh_context_anchor anchor;
	struct osh_trace_ctx server = { .flags = OSH_FLAG_SAMPLED, .valid = true };
	struct osh_curl_xfer *x;
	const char *j;

	osh_ids_trace_id(server.trace_id);
	osh_ids_span_id(server.span_id);
	osh_context_enter(&anchor, 0, &server, (struct osh_str){ "t=1", 3 },
			  (struct osh_str){ "b=2", 3 }, (struct osh_str){ "req-7", 5 });
	x = start_with(H0, NULL, "http://x/", NULL);
	j = joined(installed(H0));
	cr_assert(strstr(j, "|tracestate: t=1|baggage: b=2|x-request-id: req-7"), "%s", j);
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_eq(n_captured, 1);
	cr_assert(captured[0]->has_parent);
	cr_assert(!captured[0]->parent_remote);
	cr_assert(memcmp(captured[0]->parent_span_id, server.span_id, 8) == 0);
	cr_assert(memcmp(captured[0]->trace_id, server.trace_id, 16) == 0);
}

Test(curl, install_refused_still_spans)
{
	struct osh_curl_xfer *x;

	setopt_result = CURLE_OUT_OF_MEMORY;
	x = start_with(H0, NULL, "http://x/", NULL);
	cr_assert(x);
	cr_assert_null(x->our_list);
	setopt_result = CURLE_OK;
	n_calls = 0;
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_eq(header_sets(H0), 0, "nothing of ours to take back");
	cr_assert_eq(n_captured, 1);
}

/* ---- outcomes ----------------------------------------------------------------------- */

static const struct osh_span *run_one(int result, bool have_result)
{
	struct osh_curl_xfer *x = start_with(H0, NULL, "http://x/", NULL);

	cr_assert(x);
	osh_curl_end(x, result, have_result);
	cr_assert_eq(n_captured, 1);
	return captured[0];
}

Test(curl, curl_error_is_error_type)
{
	const struct osh_span *s;

	info.code = 0;
	s = run_one(CURLE_COULDNT_CONNECT, true);
	cr_assert_str_eq(attr_str(s, "error.type"), "CURLE_COULDNT_CONNECT");
	cr_assert_eq(s->status_code, OSH_STATUS_ERROR);
	cr_assert_null(osh_span_find(s, "http.response.status_code"));
	cr_assert_null(osh_span_find(s, "network.protocol.version"));
}

Test(curl, error_names)
{
	char buf[OSH_CURL_ERROR_NAME_MAX];

	cr_assert_str_eq(osh_curl_error_name(CURLE_OPERATION_TIMEDOUT, buf),
			 "CURLE_OPERATION_TIMEDOUT");
	cr_assert_str_eq(osh_curl_error_name(CURLE_SSL_CONNECT_ERROR, buf),
			 "CURLE_SSL_CONNECT_ERROR");
	cr_assert_str_eq(osh_curl_error_name(CURLE_COULDNT_RESOLVE_HOST, buf),
			 "CURLE_COULDNT_RESOLVE_HOST");
	cr_assert_str_eq(osh_curl_error_name(CURLE_RECV_ERROR, buf), "CURLE_RECV_ERROR");
	cr_assert_str_eq(osh_curl_error_name(9999, buf), "CURLE_9999");
	cr_assert_str_eq(osh_curl_error_name(-1, buf), "CURLE_4294967295");
}

Test(curl, http_error_status)
{
	const struct osh_span *s;

	info.code = 503;
	s = run_one(CURLE_OK, true);
	cr_assert_str_eq(attr_str(s, "error.type"), "503");
	cr_assert_eq(s->status_code, OSH_STATUS_ERROR);
	cr_assert_eq(attr_int(s, "http.response.status_code"), 503);
}

Test(curl, failonerror_is_named_by_status)
{
	const struct osh_span *s;

	info.code = 404;
	s = run_one(CURLE_HTTP_RETURNED_ERROR, true);
	cr_assert_str_eq(attr_str(s, "error.type"), "404");
}

Test(curl, error_after_response_keeps_response_attrs)
{
	const struct osh_span *s;

	info.code = 200;
	s = run_one(CURLE_PARTIAL_FILE, true);
	cr_assert_str_eq(attr_str(s, "error.type"), "CURLE_PARTIAL_FILE");
	cr_assert_eq(attr_int(s, "http.response.status_code"), 200);
}

Test(curl, ended_without_result)
{
	const struct osh_span *s;

	info.code = 0;
	s = run_one(0, false);
	cr_assert_str_eq(attr_str(s, "error.type"), "no_response");
	osh_span_destroy(captured[0]);
	n_captured = 0;
	info.code = 200;
	info.clen = 100;
	info.down = 40;
	s = run_one(0, false);
	cr_assert_str_eq(attr_str(s, "error.type"), "response_incomplete");
	osh_span_destroy(captured[0]);
	n_captured = 0;
	info.clen = -1;
	s = run_one(0, false);
	cr_assert_null(osh_span_find(s, "error.type"));
	cr_assert_eq(s->status_code, OSH_STATUS_UNSET);
}

Test(curl, versions_and_other_attrs)
{
	static const struct {
		long v;
		const char *s;
	} cases[] = {
		{ CURL_HTTP_VERSION_1_0, "1.0" },
		{ CURL_HTTP_VERSION_1_1, "1.1" },
		{ CURL_HTTP_VERSION_2_0, "2" },
		{ CURL_HTTP_VERSION_3, "3" },
		{ 0, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct osh_span *s;

		info.version = cases[i].v;
		s = run_one(CURLE_OK, true);
		if (cases[i].s)
			cr_assert_str_eq(attr_str(s, "network.protocol.version"), cases[i].s);
		else
			cr_assert_null(osh_span_find(s, "network.protocol.version"));
		osh_span_destroy(captured[0]);
		n_captured = 0;
	}
}

Test(curl, post_https_redirects_tls_timing)
{
	const struct osh_span *s;

	info.url = "https://user:pw@[::1]/upload?token=abc";
	info.method = "POST";
	info.up = 1234;
	info.redirects = 2;
	info.t_tls = 7000;
	s = run_one(CURLE_OK, true);
	cr_assert_str_eq(span_name(s), "POST /upload");
	cr_assert_str_eq(attr_str(s, "url.full"),
			 "https://REDACTED:REDACTED@[::1]/upload?token=REDACTED");
	cr_assert_str_eq(attr_str(s, "url.scheme"), "https");
	cr_assert_str_eq(attr_str(s, "server.address"), "::1");
	cr_assert_eq(attr_int(s, "server.port"), 443);
	cr_assert_eq(attr_int(s, "http.request.body.size"), 1234);
	cr_assert_eq(attr_int(s, "http.request.resend_count"), 2);
	cr_assert_float_eq(attr_double(s, "http.client.timing.tls_done"), 0.007, 1e-9);
}

Test(curl, empty_post_body_is_size_zero)
{
	const struct osh_span *s;

	info.method = "POST";
	info.up = 0;
	s = run_one(CURLE_OK, true);
	cr_assert_eq(attr_int(s, "http.request.body.size"), 0);
}

Test(curl, odd_method_and_no_getinfo)
{
	const struct osh_span *s;

	info.method = "PURGE";
	s = run_one(CURLE_OK, true);
	cr_assert_str_eq(span_name(s), "HTTP /v1/users/{id}");
	cr_assert_str_eq(attr_str(s, "http.request.method"), "_OTHER");
	cr_assert_str_eq(attr_str(s, "http.request.method_original"), "PURGE");
	osh_span_destroy(captured[0]);
	n_captured = 0;
	/* An old libcurl that knows none of these: a bare span, no crash. */
	info.fail = true;
	s = run_one(CURLE_OK, true);
	cr_assert_str_eq(span_name(s), "HTTP");
	cr_assert_null(osh_span_find(s, "url.full"));
}

Test(curl, user_agent_from_list_wins)
{
	static const char *const lines[] = { "User-Agent: listed/2" };
	struct curl_slist *app = program_list(lines, 1);
	static const char *const removed[] = { "User-Agent:" };
	struct curl_slist *app2 = program_list(removed, 1);

	osh_curl_setopt(H0, CURLOPT_USERAGENT, "opt/1", 0, true);
	osh_curl_end(start_with(H0, NULL, "http://x/", app), CURLE_OK, true);
	cr_assert_str_eq(attr_str(captured[0], "user_agent.original"), "listed/2");
	osh_curl_end(start_with(H0, NULL, "http://x/", app2), CURLE_OK, true);
	cr_assert_null(osh_span_find(captured[1], "user_agent.original"));
	osh_curl_setopt(H0, CURLOPT_HTTPHEADER, NULL, 0, true);
	osh_curl_end(start_with(H0, NULL, "http://x/", NULL), CURLE_OK, true);
	cr_assert_str_eq(attr_str(captured[2], "user_agent.original"), "opt/1");
	curl_slist_free_all(app);
	curl_slist_free_all(app2);
}

/* ---- the multi interface ---------------------------------------------------------- */

static CURLMsg done_msg(void *easy, CURLcode result)
{
	CURLMsg m;

	memset(&m, 0, sizeof(m));
	m.msg = CURLMSG_DONE;
	m.easy_handle = easy;
	m.data.result = result;
	return m;
}

Test(curl, multi_done_message_ends_the_span)
{
	static const char *const lines[] = { "X-Multi: 1" };
	struct curl_slist *app = program_list(lines, 1);
	struct osh_curl_xfer *x = start_with(H0, M0, "http://x/", app);
	CURLMsg m = done_msg(H0, CURLE_OK);
	CURLMsg other = done_msg(H0, CURLE_OK);

	cr_assert(x);
	cr_assert(x->in_multi);
	cr_assert(osh_curl_multi_busy());
	cr_assert_str_eq(joined(installed(H0)), "X-Multi: 1|traceparent: TP");
	/* Adding it again (libcurl refuses) or another kind of message
	 * changes nothing. */
	cr_assert_null(osh_curl_start(H0, M0));
	other.msg = CURLMSG_NONE;
	osh_curl_info_read(M0, &other);
	osh_curl_info_read(M0, NULL);
	osh_curl_info_read(M1, &m);	/* not the multi it is in */
	cr_assert(x->active);
	cr_assert_eq(n_captured, 0);

	osh_curl_info_read(M0, &m);
	cr_assert(!x->active);
	cr_assert(!osh_curl_multi_busy());
	cr_assert_eq(installed(H0), app);
	cr_assert_eq(n_captured, 1);
	/* The removal after it has nothing left to do. */
	osh_curl_removed(M0, H0);
	cr_assert_eq(n_captured, 1);
	cr_assert_eq(header_sets(H0), 2);
	curl_slist_free_all(app);
}

Test(curl, multi_remove_before_done)
{
	struct osh_curl_xfer *x = start_with(H0, M0, "http://x/", NULL);

	info.code = 0;
	osh_curl_removed(M1, H0);
	cr_assert(x->active);
	osh_curl_removed(M0, H0);
	cr_assert(!x->active);
	cr_assert(!osh_curl_multi_busy());
	cr_assert_null(installed(H0));
	cr_assert_eq(n_captured, 1);
	cr_assert_str_eq(attr_str(captured[0], "error.type"), "no_response");
}

Test(curl, multi_add_failed_is_undone)
{
	static const char *const lines[] = { "X-A: 1" };
	struct curl_slist *app = program_list(lines, 1);
	struct osh_curl_xfer *x = start_with(H0, M0, "http://x/", app);

	osh_curl_start_failed(x);
	cr_assert(!x->active);
	cr_assert(!osh_curl_multi_busy());
	cr_assert_eq(installed(H0), app);
	cr_assert_eq(n_captured, 0, "no span for a transfer that never started");
	curl_slist_free_all(app);
}

Test(curl, perform_inside_libcurl_leaves_the_transfer_alone)
{
	/* curl_easy_perform adds the handle to its internal multi handle
	 * through the add hook, and reads its messages through the
	 * info_read hook: all part of the easy transfer. */
	struct osh_curl_xfer *x = start_with(H0, NULL, "http://x/", NULL);
	CURLMsg m = done_msg(H0, CURLE_OK);

	cr_assert_null(osh_curl_start(H0, M0));
	osh_curl_info_read(M0, &m);
	osh_curl_removed(M0, H0);
	cr_assert(x->active);
	cr_assert(!osh_curl_multi_busy());
	cr_assert_null(osh_curl_start(H0, NULL), "perform inside its own transfer");
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_eq(n_captured, 1);
}

Test(curl, stale_multi_transfer_is_ended_by_the_next_start)
{
	/* The multi handle was cleaned up with the handle still in it. */
	struct osh_curl_xfer *x = start_with(H0, M0, "http://x/", NULL);

	cr_assert(osh_curl_start(H0, NULL) == x);
	cr_assert(!osh_curl_multi_busy());
	cr_assert(!x->in_multi);
	cr_assert_eq(n_captured, 1);
	osh_curl_end(x, CURLE_OK, true);
	cr_assert_eq(n_captured, 2);
}

Test(curl, cleanup_in_flight)
{
	static const char *const lines[] = { "X-A: 1" };
	struct curl_slist *app = program_list(lines, 1);
	struct osh_curl_xfer *x = start_with(H0, M0, "http://x/", app);

	cr_assert(osh_curl_cleanup_begin(H0) == x);
	cr_assert(x->closing);
	cr_assert_eq(n_captured, 1);
	cr_assert(!osh_curl_multi_busy());
	/* libcurl's own removal from the multi handle, during cleanup. */
	osh_curl_removed(M0, H0);
	cr_assert_eq(n_captured, 1);
	osh_curl_cleanup_done(x);
	cr_assert_null(osh_curl_find(H0));
	cr_assert_null(osh_curl_cleanup_begin(H1));
	osh_curl_cleanup_done(NULL);
	curl_slist_free_all(app);
}

Test(curl, reset_forgets_the_handle)
{
	struct osh_curl_xfer *x = start_with(H0, NULL, "http://x/", NULL);

	cr_assert(x);
	osh_curl_reset(H0);
	cr_assert_null(osh_curl_find(H0));
	cr_assert_eq(n_captured, 0);
	osh_curl_reset(H1);
}

Test(curl, duphandle_copies_options_never_our_list)
{
	static const char *const lines[] = { "X-A: 1" };
	struct curl_slist *app = program_list(lines, 1);
	struct osh_curl_xfer *x, *d;

	osh_curl_setopt(H0, CURLOPT_USERAGENT, "ua/1", 0, true);
	x = start_with(H0, NULL, "https://x/", app);
	osh_curl_duphandle(H0, H1, true);
	/* The copy took our list from libcurl: it gets the program's back. */
	cr_assert_eq(installed(H1), app);
	d = osh_curl_find(H1);
	cr_assert(d);
	cr_assert_eq(d->app_list, app);
	cr_assert_str_eq(d->user_agent, "ua/1");
	cr_assert_neq(d->user_agent, x->user_agent);
	cr_assert_eq(d->url_kind, OSH_CURL_URL_HTTPS);
	cr_assert(!d->active);
	osh_curl_end(x, CURLE_OK, true);
	/* From inside libcurl (HTTP/2 push): no record. */
	osh_curl_duphandle(H0, M1, false);
	cr_assert_null(osh_curl_find(M1));
	curl_slist_free_all(app);
}

/* ---- the real libcurl --------------------------------------------------------------- */

TestSuite(real_curl, .init = setup_fake, .fini = teardown);

Test(real_curl, finds_the_linked_libcurl)
{
	const struct osh_curl_api *a;

	osh_curl_api_override(NULL);
	a = osh_curl_api_get(NULL);
	cr_assert(a);
	cr_assert_eq((void *)a->easy_perform, (void *)curl_easy_perform);
	cr_assert_eq((void *)a->easy_setopt, (void *)curl_easy_setopt);
	cr_assert_eq((void *)a->multi_info_read, (void *)curl_multi_info_read);
	cr_assert(a->url_get);
	cr_assert_eq(osh_curl_api_get(NULL), a);
}

Test(real_curl, install_and_restore_on_a_real_handle)
{
	static const char *const lines[] = { "X-First: 1", "X-Second: 2" };
	struct curl_slist *app = program_list(lines, 2);
	struct snapshot before;
	struct osh_curl_xfer *x;
	CURL *e;

	osh_curl_api_override(NULL);
	cr_assert(osh_curl_api_get(NULL));
	e = curl_easy_init();
	cr_assert(e);
	snap(app, &before);
	cr_assert_eq(curl_easy_setopt(e, CURLOPT_URL, "http://127.0.0.1:9/x"), CURLE_OK);
	cr_assert_eq(curl_easy_setopt(e, CURLOPT_HTTPHEADER, app), CURLE_OK);
	osh_curl_setopt(e, CURLOPT_URL, "http://127.0.0.1:9/x", 0, true);
	osh_curl_setopt(e, CURLOPT_HTTPHEADER, app, 0, true);
	x = osh_curl_start(e, NULL);
	cr_assert(x);
	cr_assert(x->our_list);
	cr_assert_str_eq(joined(x->our_list), "X-First: 1|X-Second: 2|traceparent: TP");
	osh_curl_end(x, CURLE_COULDNT_CONNECT, true);
	cr_assert_null(x->our_list);
	assert_same(app, &before);
	cr_assert_eq(n_captured, 1);
	cr_assert_str_eq(attr_str(captured[0], "error.type"), "CURLE_COULDNT_CONNECT");
	cr_assert_str_eq(attr_str(captured[0], "http.request.method"), "GET");
	x = osh_curl_cleanup_begin(e);
	curl_easy_cleanup(e);
	osh_curl_cleanup_done(x);
	curl_slist_free_all(app);
}

/* ---- LLM calls: the body through our write callback ------------------------------- */

static char app_seen[4096];
static size_t app_seen_len;
static void *app_seen_data;

static size_t app_write(char *p, size_t size, size_t nmemb, void *data)
{
	memcpy(app_seen + app_seen_len, p, size * nmemb);
	app_seen_len += size * nmemb;
	app_seen_data = data;
	return size * nmemb - 1;	/* whatever it says goes back to libcurl */
}

typedef size_t (*write_fn)(char *, size_t, size_t, void *);

/* The last setopt of @opt made by the module, or -1. */
static int last_call(int opt)
{
	for (int i = n_calls - 1; i >= 0; i--)
		if (calls[i].opt == opt)
			return i;
	return -1;
}

Test(curl, llm_body_read_through_our_write_callback)
{
	static const char req[] = "{\"model\":\"gpt-4o-mini\",\"max_tokens\":3,\"messages\":[]}";
	static const char resp[] = "{\"id\":\"chatcmpl-7\",\"model\":\"gpt-4o-mini\",\"choices\":"
				   "[{\"index\":0,\"finish_reason\":\"stop\"}],\"usage\":"
				   "{\"prompt_tokens\":5,\"completion_tokens\":3}}";
	int app_data, other_data, i;
	struct osh_curl_xfer *x;
	write_fn ours;
	void *ours_data;
	const struct osh_span *s;

	osh_curl_setopt(H0, CURLOPT_URL, "https://api.openai.com/v1/chat/completions", 0, true);
	osh_curl_setopt(H0, CURLOPT_POSTFIELDS, req, 0, true);
	osh_curl_setopt(H0, CURLOPT_WRITEFUNCTION, (const void *)(uintptr_t)app_write, 0, true);
	osh_curl_setopt(H0, CURLOPT_WRITEDATA, &app_data, 0, true);
	x = osh_curl_start(H0, NULL);
	cr_assert_not_null(x);
	cr_assert(osh_curl_write_wrapped(H0));
	i = last_call(CURLOPT_WRITEFUNCTION);
	cr_assert_geq(i, 0);
	ours = (write_fn)calls[i].fn;
	cr_assert_neq((uintptr_t)ours, (uintptr_t)app_write);
	ours_data = (void *)calls[last_call(CURLOPT_WRITEDATA)].ptr;

	/* libcurl calls ours; the program's gets the same bytes and its own
	 * data, and its answer goes back. */
	app_seen_len = 0;
	cr_assert_eq(ours((char *)resp, 1, 40, ours_data), 39);
	cr_assert_eq(app_seen_data, &app_data);
	/* The program changes its WRITEDATA mid-transfer (the hook records it
	 * instead of passing it): the next piece goes there. */
	osh_curl_setopt(H0, CURLOPT_WRITEDATA, &other_data, 0, true);
	cr_assert_eq(ours((char *)resp + 40, 1, sizeof(resp) - 1 - 40, ours_data),
		     sizeof(resp) - 1 - 40 - 1);
	cr_assert_eq(app_seen_data, &other_data);
	cr_assert_eq(app_seen_len, sizeof(resp) - 1);
	cr_assert_eq(memcmp(app_seen, resp, app_seen_len), 0);

	info.method = "POST";
	info.url = "https://api.openai.com/v1/chat/completions";
	osh_curl_end(x, CURLE_OK, true);
	/* The program's callback and its latest data are back. */
	cr_assert_eq((uintptr_t)calls[last_call(CURLOPT_WRITEFUNCTION)].fn, (uintptr_t)app_write);
	cr_assert_eq(calls[last_call(CURLOPT_WRITEDATA)].ptr, &other_data);
	cr_assert_not(osh_curl_write_wrapped(H0));
	cr_assert_eq(n_captured, 1);
	s = captured[0];
	cr_assert_str_eq(span_name(s), "llm.completion");
	cr_assert_str_eq(attr_str(s, "gen_ai.response.id"), "chatcmpl-7");
	cr_assert_eq(attr_int(s, "gen_ai.request.max_tokens"), 3);
	cr_assert_eq(attr_int(s, "gen_ai.usage.output_tokens"), 3);
	cr_assert_str_eq(attr_str(s, "url.scheme"), "https");
}

Test(curl, llm_default_write_is_fwrite_to_writedata)
{
	static const char req[] = "{\"model\":\"m\"}";
	FILE *f = tmpfile();
	struct osh_curl_xfer *x;
	write_fn ours;
	char back[8] = { 0 };

	osh_curl_setopt(H0, CURLOPT_URL, "http://127.0.0.1:1/v1/chat/completions", 0, true);
	osh_curl_setopt(H0, CURLOPT_COPYPOSTFIELDS, req, 0, true);
	osh_curl_setopt(H0, CURLOPT_WRITEDATA, f, 0, true);
	x = osh_curl_start(H0, NULL);
	ours = (write_fn)calls[last_call(CURLOPT_WRITEFUNCTION)].fn;
	cr_assert_eq(ours("{\"a\":", 1, 5, (void *)calls[last_call(CURLOPT_WRITEDATA)].ptr), 5);
	rewind(f);
	cr_assert_eq(fread(back, 1, 5, f), 5);
	cr_assert_str_eq(back, "{\"a\":");
	osh_curl_end(x, CURLE_OK, true);
	/* Back to libcurl's default: no function, the program's FILE. */
	cr_assert_null((void *)(uintptr_t)calls[last_call(CURLOPT_WRITEFUNCTION)].fn);
	cr_assert_eq(calls[last_call(CURLOPT_WRITEDATA)].ptr, f);
	fclose(f);
}

Test(curl, no_write_callback_for_other_transfers)
{
	osh_curl_setopt(H0, CURLOPT_URL, "http://api.example.com/v1/users", 0, true);
	/* A body copied by libcurl for a URL that is no LLM API's: not by us. */
	osh_curl_setopt(H0, CURLOPT_COPYPOSTFIELDS, "{\"big\":1}", 0, true);
	cr_assert_null(osh_curl_find(H0)->post_copy);
	osh_curl_setopt(H0, CURLOPT_POSTFIELDS, "{}", 0, true);
	cr_assert_not_null(osh_curl_start(H0, NULL));
	cr_assert_eq(last_call(CURLOPT_WRITEFUNCTION), -1);
	cr_assert_not(osh_curl_write_wrapped(H0));
	/* A GET to an LLM path is no LLM call either. */
	osh_curl_end(osh_curl_find(H0), CURLE_OK, true);
	osh_curl_setopt(H1, CURLOPT_URL, "http://api.openai.com/v1/chat/completions", 0, true);
	cr_assert_not_null(osh_curl_start(H1, NULL));
	cr_assert_eq(last_call(CURLOPT_WRITEFUNCTION), -1);
	osh_curl_end(osh_curl_find(H1), CURLE_OK, true);
}
