/* Tests for src/export/console.c: the console exporter's text and JSON lines.
 *
 * JSON output is checked by Debian's /usr/bin/python3 (json module, strict
 * UTF-8 decoding) running a small script per case, so "parses" means a real
 * JSON parser accepted it and the values round-trip. Truncation is checked at
 * every buffer size with canary bytes past the end. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "export/console.h"
#include "resource.h"
#include "span.h"

#define PYTHON "/usr/bin/python3"

/* ---- helpers ---------------------------------------------------------- */

/* Run @script with @input on stdin; returns the exit status (0 = all asserts
 * held). The script gets `d`, the parsed object, already loaded. */
static int py_check(const char *input, size_t len, const char *script)
{
	static const char prelude[] = "import json,sys,math\n"
				      "raw=sys.stdin.buffer.read()\n"
				      "d=json.loads(raw.decode('utf-8'))\n";
	char *prog = malloc(sizeof(prelude) + strlen(script) + 1);
	int fds[2];
	pid_t pid;
	int st;

	cr_assert_not_null(prog);
	strcpy(prog, prelude);
	strcat(prog, script);
	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(fds[0], 0);
		close(fds[0]);
		close(fds[1]);
		execl(PYTHON, "python3", "-c", prog, (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	cr_assert_eq(write(fds[1], input, len), (ssize_t)len);
	close(fds[1]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	free(prog);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static struct osh_resource_attr svc_attr = {.key = "service.name", .str = "llm.demo"};
static struct osh_resource res = {.attrs = &svc_attr, .n = 1};

/* A span with every attribute type and a parent. */
static struct osh_span *make_span(void)
{
	struct osh_span *s = osh_span_create();

	cr_assert_not_null(s);
	for (int i = 0; i < 16; i++)
		s->trace_id[i] = (uint8_t)(0x10 + i);
	for (int i = 0; i < 8; i++) {
		s->span_id[i] = (uint8_t)(0xa0 + i);
		s->parent_span_id[i] = (uint8_t)(0xb0 + i);
	}
	s->has_parent = true;
	s->trace_flags = 0x01;
	s->kind = OSH_SPAN_CLIENT;
	s->start_ns = 1700000000000000000ull;
	s->end_ns = s->start_ns + 1500000; /* 1.5 ms */
	osh_span_set_name(s, "GET /users/{id}", 15);
	osh_span_set_status(s, OSH_STATUS_ERROR, NULL);
	osh_span_set_cstr(s, "http.request.method", "GET");
	osh_span_set_int(s, "http.response.status_code", 404);
	osh_span_set_int(s, "neg", -9007199254740993ll);
	osh_span_set_double(s, "ratio", 0.25);
	osh_span_set_bool(s, "ok", false);
	osh_span_set_bool(s, "yes", true);
	osh_span_set_cstr(s, "user_agent.original", "curl/8.0 (x86_64)");
	return s;
}

static size_t format(const struct osh_span *s, const struct osh_resource *r, bool json, char *buf,
		     size_t sz)
{
	size_t n = osh_console_format(s, r, json, buf, sz);

	cr_assert_lt(n, sz);
	cr_assert_eq(buf[n], '\0');
	cr_assert_eq(strlen(buf), n);
	cr_assert_eq(buf[n - 1], '\n');
	return n;
}

/* ---- JSON ---------------------------------------------------------------- */

Test(console, json_parses_with_every_field)
{
	struct osh_span *s = make_span();
	char buf[4096];
	size_t n = format(s, &res, true, buf, sizeof(buf));

	/* One line: the only newline is the last byte. */
	cr_assert_eq(strchr(buf, '\n'), buf + n - 1);
	cr_assert_eq(py_check(buf, n,
			      "assert d['name']=='GET /users/{id}'\n"
			      "assert d['kind']=='client'\n"
			      "assert d['trace_id']=='101112131415161718191a1b1c1d1e1f'\n"
			      "assert d['span_id']=='a0a1a2a3a4a5a6a7'\n"
			      "assert d['parent_span_id']=='b0b1b2b3b4b5b6b7'\n"
			      "assert d['trace_flags']=='01'\n"
			      "assert d['start_time_unix_nano']==1700000000000000000\n"
			      "assert d['end_time_unix_nano']==1700000000001500000\n"
			      "assert abs(d['duration_ms']-1.5)<1e-9\n"
			      "assert d['status']=='ERROR'\n"
			      "assert d['service.name']=='llm.demo'\n"
			      "a=d['attributes']\n"
			      "assert a=={'http.request.method':'GET',"
			      "'http.response.status_code':404,'neg':-9007199254740993,"
			      "'ratio':0.25,'ok':False,'yes':True,"
			      "'user_agent.original':'curl/8.0 (x86_64)'}, a\n"),
		     0, "%s", buf);
	osh_span_destroy(s);
}

Test(console, json_without_parent_resource_or_attributes)
{
	struct osh_span *s = osh_span_create();
	struct osh_resource_attr int_svc = {.key = "service.name", .is_int = true, .i = 3};
	struct osh_resource int_res = {.attrs = &int_svc, .n = 1};
	struct osh_resource empty = {0};
	const struct osh_resource *rs[] = {NULL, &empty, &int_res};
	char buf[1024];

	s->kind = OSH_SPAN_SERVER;
	s->trace_id[15] = 1;
	s->span_id[7] = 2;
	for (size_t i = 0; i < 3; i++) {
		size_t n = format(s, rs[i], true, buf, sizeof(buf));
		cr_assert_eq(py_check(buf, n,
				      "assert 'parent_span_id' not in d\n"
				      "assert 'service.name' not in d\n"
				      "assert d['attributes']=={}\n"
				      "assert d['name']==''\n"
				      "assert d['kind']=='server'\n"
				      "assert d['status']=='UNSET'\n"
				      "assert d['trace_flags']=='00'\n"
				      "assert d['duration_ms']==0\n"),
			     0, "%s", buf);
	}
	osh_span_destroy(s);
}

Test(console, json_kind_and_status_names)
{
	static const struct {
		uint8_t kind, status;
		const char *script;
	} cases[] = {
		{OSH_SPAN_INTERNAL, OSH_STATUS_OK,
		 "assert d['kind']=='internal' and d['status']=='OK'\n"},
		{OSH_SPAN_SERVER, OSH_STATUS_UNSET,
		 "assert d['kind']=='server' and d['status']=='UNSET'\n"},
		{OSH_SPAN_CLIENT, OSH_STATUS_ERROR,
		 "assert d['kind']=='client' and d['status']=='ERROR'\n"},
		{0, OSH_STATUS_UNSET, "assert d['kind']=='internal'\n"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_span *s = osh_span_create();
		char buf[1024];
		size_t n;

		s->kind = cases[i].kind;
		s->status_code = cases[i].status;
		n = format(s, NULL, true, buf, sizeof(buf));
		cr_assert_eq(py_check(buf, n, cases[i].script), 0, "case %zu: %s", i, buf);
		osh_span_destroy(s);
	}
}

/* Quotes, backslashes, every control character, DEL and UTF-8 in the name,
 * an attribute value and the service name all round-trip through a parser. */
Test(console, json_escaping_round_trips)
{
	struct osh_span *s = osh_span_create();
	struct osh_resource_attr a = {.key = "service.name", .str = "svc \"q\" \\ \t"};
	struct osh_resource r = {.attrs = &a, .n = 1};
	char val[64];
	char buf[4096];
	size_t n, vlen = 0;

	for (int c = 1; c < 0x20; c++)
		val[vlen++] = (char)c;
	memcpy(val + vlen, "\"\\/\x7f\xc3\xa9\xe2\x82\xac", 9);
	vlen += 9;
	osh_span_set_name(s, "a\"b\\c\nd\re\tf\x01", 12);
	osh_span_set_str(s, "v", val, vlen);
	osh_span_set_str(s, "nul", "a\0b", 3);
	n = format(s, &r, true, buf, sizeof(buf));
	cr_assert_eq(strchr(buf, '\n'), buf + n - 1, "raw newline inside the line: %s", buf);
	cr_assert_eq(
		py_check(buf, n,
			 "assert d['name']=='a\"b\\\\c\\nd\\re\\tf\\x01', repr(d['name'])\n"
			 "v=''.join(chr(c) for c in range(1,32))+'\"\\\\/\\x7f\\u00e9\\u20ac'\n"
			 "assert d['attributes']['v']==v, repr(d['attributes']['v'])\n"
			 "assert d['attributes']['nul']=='a\\x00b'\n"
			 "assert d['service.name']=='svc \"q\" \\\\ \\t'\n"),
		0, "%s", buf);
	osh_span_destroy(s);
}

/* Doubles that JSON numbers cannot express must not make the line invalid
 * (printf gives "nan"/"inf", which no JSON parser accepts). */
Test(console, json_non_finite_doubles_stay_valid)
{
	struct osh_span *s = osh_span_create();
	char buf[1024];
	size_t n;

	osh_span_set_double(s, "nan", NAN);
	osh_span_set_double(s, "pinf", INFINITY);
	osh_span_set_double(s, "ninf", -INFINITY);
	osh_span_set_double(s, "big", 1e308);
	osh_span_set_double(s, "tiny", -5e-324);
	n = format(s, NULL, true, buf, sizeof(buf));
	cr_assert_eq(py_check(buf, n,
			      "a=d['attributes']\n"
			      "assert set(a)=={'nan','pinf','ninf','big','tiny'}\n"
			      "assert a['big']==1e308 and a['tiny']==-5e-324\n"
			      "assert a['nan']=='NaN' and a['pinf']=='Infinity'\n"
			      "assert a['ninf']=='-Infinity'\n"),
		     0, "%s", buf);
	osh_span_destroy(s);
}

/* ---- text ------------------------------------------------------------------ */

Test(console, text_exact_line)
{
	struct osh_span *s = make_span();
	char buf[4096];
	static const char want[] =
		"otelshim: span \"GET /users/{id}\" kind=client status=ERROR duration=1.500ms "
		"service=llm.demo trace_id=101112131415161718191a1b1c1d1e1f "
		"span_id=a0a1a2a3a4a5a6a7 parent_id=b0b1b2b3b4b5b6b7 "
		"http.request.method=GET http.response.status_code=404 neg=-9007199254740993 "
		"ratio=0.25 ok=false yes=true user_agent.original=\"curl/8.0 (x86_64)\"\n";

	format(s, &res, false, buf, sizeof(buf));
	cr_assert_str_eq(buf, want);
	osh_span_destroy(s);
}

/* Span events: a JSON array of {name, time_unix_nano, attributes}; in
 * text, one event=NAME,key=value... item each. */
Test(console, events_in_json_and_text)
{
	struct osh_span *s = make_span();
	struct osh_event *ev;
	char buf[4096];
	size_t n;

	ev = osh_span_add_event(s, "gen_ai.tool.call", 16, 1700000000000500000ull);
	osh_event_add_str(s, ev, "gen_ai.tool.name", 16, "get weather", 11);
	osh_event_add_str(s, ev, "gen_ai.tool.call.id", 19, "call_1", 6);
	osh_span_add_event(s, "empty", 5, 1700000000000600000ull);

	n = format(s, &res, true, buf, sizeof(buf));
	cr_assert_eq(py_check(buf, n,
			      "e=d['events']\n"
			      "assert e==[{'name':'gen_ai.tool.call','time_unix_nano':1700000000000500000,"
			      "'attributes':{'gen_ai.tool.name':'get weather',"
			      "'gen_ai.tool.call.id':'call_1'}},"
			      "{'name':'empty','time_unix_nano':1700000000000600000,'attributes':{}}], e\n"),
		     0, "%s", buf);
	format(s, &res, false, buf, sizeof(buf));
	cr_assert(strstr(buf, " event=gen_ai.tool.call,gen_ai.tool.name=\"get weather\","
			      "gen_ai.tool.call.id=call_1 event=empty\n") != NULL,
		  "%s", buf);
	osh_span_destroy(s);
}

Test(console, string_arrays_in_json_and_text)
{
	struct osh_span *s = make_span();
	const char *v[] = { "stop", "a\"b" };
	size_t lens[] = { 4, 3 };
	char buf[4096];
	size_t n;

	osh_span_set_strs(s, "gen_ai.response.finish_reasons", v, lens, 2);
	n = format(s, &res, true, buf, sizeof(buf));
	cr_assert_eq(py_check(buf, n,
			      "a=d['attributes']['gen_ai.response.finish_reasons']\n"
			      "assert a==['stop','a\"b'], a\n"),
		     0, "%s", buf);
	format(s, &res, false, buf, sizeof(buf));
	cr_assert(strstr(buf, " gen_ai.response.finish_reasons=[\"stop\",\"a\\\"b\"]") != NULL,
		  "%s", buf);
	osh_span_destroy(s);
}

Test(console, text_quotes_only_when_needed)
{
	static const struct {
		const char *in;
		size_t len;
		const char *want;
	} cases[] = {
		{"plain", 5, " k=plain\n"},
		{"", 0, " k=\"\"\n"},
		{"a b", 3, " k=\"a b\"\n"},
		{"a=b", 3, " k=\"a=b\"\n"},
		{"say \"hi\"", 8, " k=\"say \\\"hi\\\"\"\n"},
		{"x\"y", 3, " k=\"x\\\"y\"\n"},
		{"line\nbreak", 10, " k=\"line\\u000abreak\"\n"},
		{"tab\there", 8, " k=\"tab\\u0009here\"\n"},
		{"back\\slash", 10, " k=back\\slash\n"},
		{"caf\xc3\xa9", 5, " k=caf\xc3\xa9\n"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_span *s = osh_span_create();
		char buf[1024];
		size_t n, wl = strlen(cases[i].want);

		osh_span_set_name(s, "n", 1);
		osh_span_set_str(s, "k", cases[i].in, cases[i].len);
		n = format(s, NULL, false, buf, sizeof(buf));
		cr_assert_geq(n, wl);
		cr_assert_str_eq(buf + n - wl, cases[i].want, "case %zu: %s", i, buf);
		/* A raw newline would split the record over two lines. */
		cr_assert_eq(strchr(buf, '\n'), buf + n - 1);
		osh_span_destroy(s);
	}
}

Test(console, text_no_parent_no_service)
{
	struct osh_span *s = osh_span_create();
	char buf[1024];

	osh_span_set_name(s, "x", 1);
	format(s, NULL, false, buf, sizeof(buf));
	cr_assert_null(strstr(buf, "parent_id="));
	cr_assert_null(strstr(buf, "service="));
	cr_assert_not_null(strstr(buf, " kind=internal status=UNSET duration=0.000ms "));
	osh_span_destroy(s);
}

/* ---- truncation ------------------------------------------------------------- */

#define CANARY 0x5a
#define SLACK  64

static void check_every_size(const struct osh_span *s, bool json)
{
	static char full[8192];
	size_t full_len = format(s, &res, json, full, sizeof(full));
	char *buf = malloc(full_len + 8 + SLACK);

	cr_assert_not_null(buf);
	for (size_t sz = 0; sz <= full_len + 8; sz++) {
		size_t n;

		memset(buf, CANARY, sz + SLACK);
		n = osh_console_format(s, &res, json, buf, sz);
		for (size_t i = sz; i < sz + SLACK; i++)
			cr_assert_eq((unsigned char)buf[i], CANARY, "size %zu: wrote at %zu", sz,
				     i);
		if (sz == 0) {
			cr_assert_eq(n, 0);
			continue;
		}
		/* NUL-terminated whatever the size. */
		cr_assert_lt(n, sz, "size %zu: returned %zu", sz, n);
		cr_assert_eq(buf[n], '\0', "size %zu", sz);
		if (sz == 1)
			continue;
		cr_assert_eq(buf[n - 1], '\n', "size %zu", sz);
		if (sz > full_len) {
			cr_assert_eq(n, full_len);
			cr_assert_str_eq(buf, full);
		} else {
			/* A truncated line is a prefix of the full one. */
			cr_assert_eq(n, sz - 1, "size %zu: len %zu", sz, n);
			cr_assert_eq(memcmp(buf, full, n - 1), 0, "size %zu", sz);
		}
	}
	free(buf);
}

Test(console, truncation_at_every_size_text)
{
	struct osh_span *s = make_span();

	osh_span_set_str(s, "esc", "q\"\x01 z", 5);
	check_every_size(s, false);
	osh_span_destroy(s);
}

Test(console, truncation_at_every_size_json)
{
	struct osh_span *s = make_span();

	osh_span_set_str(s, "esc", "q\"\x01 z\\", 6);
	check_every_size(s, true);
	osh_span_destroy(s);
}

/* A record filled to the brim (every attribute, a full arena) in a buffer
 * sized like the exporter's: still one bounded line. */
Test(console, huge_span_bounded)
{
	static char keys[OSH_SPAN_MAX_ATTRS][8];
	struct osh_span *s = osh_span_create();
	char val[50];
	char buf[512 + SLACK];

	memset(val, '\x01', sizeof(val)); /* worst case: 6 bytes of output per byte */
	for (int i = 0; i < OSH_SPAN_MAX_ATTRS; i++) {
		snprintf(keys[i], sizeof(keys[i]), "k%d", i);
		osh_span_add_str(s, keys[i], strlen(keys[i]), val, sizeof(val));
	}
	for (int json = 0; json < 2; json++) {
		size_t n;

		memset(buf, CANARY, sizeof(buf));
		n = osh_console_format(s, &res, json, buf, 512);
		cr_assert_eq(n, 511);
		cr_assert_eq(buf[511], '\0');
		cr_assert_eq(buf[510], '\n');
		for (size_t i = 512; i < sizeof(buf); i++)
			cr_assert_eq((unsigned char)buf[i], CANARY);
	}
	osh_span_destroy(s);
}
