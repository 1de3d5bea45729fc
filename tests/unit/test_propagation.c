/* W3C trace-context / baggage parsing, formatting, truncation and the
 * environment carrier. Rows "R<n>" refer to the test table in the project's
 * propagation reference (§5). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "propagation.h"

#define T	  "4bf92f3577b34da6a3ce929d0e0e4736"
#define P	  "00f067aa0ba902b7"
#define TP(flags) "00-" T "-" P "-" flags

static const uint8_t T_BYTES[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
				    0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
static const uint8_t P_BYTES[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};

static bool parse(const char *s, struct osh_trace_ctx *ctx)
{
	return osh_traceparent_parse(s, strlen(s), ctx);
}

/* Parse must fail and leave the output untouched. */
static void expect_invalid_tp(const char *s)
{
	struct osh_trace_ctx ctx, before;

	memset(&ctx, 0xa5, sizeof(ctx));
	memcpy(&before, &ctx, sizeof(ctx));
	cr_assert_not(parse(s, &ctx), "accepted invalid traceparent \"%s\"", s);
	cr_assert(memcmp(&ctx, &before, sizeof(ctx)) == 0, "output written on failure: \"%s\"", s);
}

static void expect_tp(const char *s, uint8_t flags)
{
	struct osh_trace_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	cr_assert(parse(s, &ctx), "rejected valid traceparent \"%s\"", s);
	cr_assert(ctx.valid);
	cr_assert(ctx.remote);
	cr_assert_eq(ctx.flags, flags, "\"%s\": flags %02x, want %02x", s, ctx.flags, flags);
	cr_assert_arr_eq(ctx.trace_id, T_BYTES, 16);
	cr_assert_arr_eq(ctx.span_id, P_BYTES, 8);
}

/* ---- traceparent: the reference table ---- */

Test(traceparent, r1_sampled)
{
	expect_tp(TP("01"), OSH_FLAG_SAMPLED);
}

Test(traceparent, r2_sampled_and_random_are_bits)
{
	struct osh_trace_ctx ctx;

	cr_assert(parse(TP("03"), &ctx));
	cr_assert(ctx.flags & OSH_FLAG_SAMPLED);
	cr_assert(ctx.flags & OSH_FLAG_RANDOM);
	expect_tp(TP("02"), OSH_FLAG_RANDOM);
	expect_tp(TP("00"), 0);
}

Test(traceparent, r3_to_r7_r9_r10_invalid)
{
	static const char *const bad[] = {
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-" P "-01",	  /* R3 */
		"00-00000000000000000000000000000000-" P "-01",	  /* R4 */
		"00-" T "-0000000000000000-01",			  /* R5 */
		"ff-" T "-" P "-01",				  /* R6 */
		"00-" T "-" P "-01-what-the-future-will-be-like", /* R7 */
		"cc-" T "-" P "-01.what-the-future-will-be-like", /* R9 */
		"00-" T "-" P "-1",				  /* R10 */
		"00-" T "-" P "-001",				  /* R10 */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_invalid_tp(bad[i]);
}

Test(traceparent, r8_future_version_by_prefix)
{
	struct osh_trace_ctx ctx;
	static const uint8_t span[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	char out[OSH_TRACEPARENT_LEN + 1] = {0};

	expect_tp("cc-" T "-" P "-01-what-the-future-will-be-like", OSH_FLAG_SAMPLED);
	/* Re-emitted as version 00 with our own parent id. */
	cr_assert(parse("cc-" T "-" P "-01-what-the-future-will-be-like", &ctx));
	osh_traceparent_format(ctx.trace_id, span, ctx.flags, out);
	cr_assert_str_eq(out, "00-" T "-0102030405060708-01");
	/* Exactly 55 characters and a bare trailing '-' are fine too. */
	expect_tp("cc-" T "-" P "-01", OSH_FLAG_SAMPLED);
	expect_tp("01-" T "-" P "-03-", OSH_FLAG_SAMPLED | OSH_FLAG_RANDOM);
	expect_tp("fe-" T "-" P "-09-xyz", OSH_FLAG_SAMPLED);
}

Test(traceparent, r11_surrounding_ows_trimmed)
{
	expect_tp("\t " TP("01") " \t", OSH_FLAG_SAMPLED);
	expect_tp(" " TP("01"), OSH_FLAG_SAMPLED);
	expect_tp(TP("01") "\t", OSH_FLAG_SAMPLED);
	expect_tp(" \t cc-" T "-" P "-01-x \t", OSH_FLAG_SAMPLED);
	/* Only SP and HTAB are OWS. */
	expect_invalid_tp("\n" TP("01"));
	expect_invalid_tp(TP("01") "\r\n");
	expect_invalid_tp(TP("01") "\v");
	/* OWS inside the value is not trimmed. */
	expect_invalid_tp("00- " T "-" P "-01");
	expect_invalid_tp("00-" T "-" P "- 01");
}

Test(traceparent, r12_two_headers_combined_is_invalid)
{
	/* Two traceparent headers reach the parser, if the caller folds them
	 * (RFC 9110 §5.3), as one comma-joined value: it must not validate. */
	expect_invalid_tp(TP("01") ",00-" T "-" P "-01");
	expect_invalid_tp(TP("01") ", 00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-" P "-01");
	expect_invalid_tp("cc-" T "-" P "-01,cc-" T "-" P "-01");
}

Test(traceparent, r13_unknown_flag_bits_dropped)
{
	struct osh_trace_ctx ctx;
	char out[OSH_TRACEPARENT_LEN + 1] = {0};

	expect_tp(TP("09"), OSH_FLAG_SAMPLED);
	expect_tp(TP("ff"), OSH_FLAG_SAMPLED | OSH_FLAG_RANDOM);
	expect_tp(TP("fc"), 0);
	cr_assert(parse(TP("09"), &ctx));
	osh_traceparent_format(ctx.trace_id, ctx.span_id, ctx.flags, out);
	cr_assert_str_eq(out, TP("01"));
}

/* ---- traceparent: every invalid field ---- */

Test(traceparent, invalid_fields)
{
	static const char *const bad[] = {
		"",
		" \t ",
		"00",
		/* uppercase hex in each field */
		"0A-" T "-" P "-01",
		"CC-" T "-" P "-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473A-" P "-01",
		"00-" T "-00F067AA0BA902B7-01",
		"00-" T "-" P "-0A",
		/* non-hex */
		"0g-" T "-" P "-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473g-" P "-01",
		"00-" T "-00f067aa0ba902bz-01",
		"00-" T "-" P "-0x",
		"00-" T "-" P "-+1",
		"00-+bf92f3577b34da6a3ce929d0e0e4736-" P "-01",
		/* wrong lengths */
		"0-" T "-" P "-01",
		"000-" T "-" P "-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473-" P "-01",
		"00-4bf92f3577b34da6a3ce929d0e0e47366-" P "-01",
		"00-" T "-00f067aa0ba902b-01",
		"00-" T "-00f067aa0ba902b77-01",
		"00-" T "-" P "-",
		"00-" T "-" P,
		/* separators */
		"00_" T "-" P "-01",
		"00-" T "_" P "-01",
		"00-" T "-" P "_01",
		"00--" T P "-01",
		/* all-zero ids, version ff (also with otherwise-future layout) */
		"00-00000000000000000000000000000000-0000000000000000-01",
		"cc-00000000000000000000000000000000-" P "-01",
		"cc-" T "-0000000000000000-01",
		"ff-" T "-" P "-01-future",
		/* trailing data after a version 00 value */
		TP("01") "-",
		TP("01") "x",
		TP("01") " x",
		TP("01") ",",
		/* future version shorter than 55 */
		"cc-" T "-" P "-0",
		"cc-" T "-" P,
		"cc-" T,
		/* future version: flags followed by anything but '-' */
		"cc-" T "-" P "-01x",
		"cc-" T "-" P "-01 -x",
		"cc-" T "-" P "-011",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_invalid_tp(bad[i]);
}

Test(traceparent, embedded_nul_is_invalid)
{
	char buf[] = TP("01");
	struct osh_trace_ctx ctx;

	buf[10] = '\0';
	cr_assert_not(osh_traceparent_parse(buf, sizeof(buf) - 1, &ctx));
}

Test(traceparent, every_single_byte_substitution)
{
	/* Replace each position with each byte value: only a lowercase hex digit
	 * in a hex position (or '-' in a dash position) may keep it valid. */
	static const char good[] = TP("01");
	char buf[sizeof(good)];
	struct osh_trace_ctx ctx;

	for (size_t i = 0; i < OSH_TRACEPARENT_LEN; i++) {
		bool dash = i == 2 || i == 35 || i == 52;

		for (int c = 0; c < 256; c++) {
			bool ok;

			memcpy(buf, good, sizeof(good));
			buf[i] = (char)c;
			if (dash)
				ok = c == '-';
			else
				ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
			cr_assert_eq(osh_traceparent_parse(buf, OSH_TRACEPARENT_LEN, &ctx), ok,
				     "position %zu byte 0x%02x", i, c);
		}
	}
}

Test(traceparent, every_proper_prefix_is_invalid)
{
	static const char good[] = "cc-" T "-" P "-01-x";
	struct osh_trace_ctx ctx;

	for (size_t n = 0; n < OSH_TRACEPARENT_LEN; n++)
		cr_assert_not(osh_traceparent_parse(good, n, &ctx), "prefix of %zu accepted", n);
	cr_assert(osh_traceparent_parse(good, OSH_TRACEPARENT_LEN, &ctx));
}

/* Map @s so that it ends exactly at an inaccessible page: an over-read
 * faults instead of going unnoticed. */
static char *at_guard_page(const char *s, size_t len, void **ret_map, size_t *ret_maplen)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t maplen = 2 * pg + (len / pg) * pg;
	char *map = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert(map != MAP_FAILED);
	cr_assert(mprotect(map + maplen - pg, pg, PROT_NONE) == 0);
	*ret_map = map;
	*ret_maplen = maplen;
	return memcpy(map + maplen - pg - len, s, len);
}

Test(traceparent, no_read_past_the_end)
{
	static const char *const cases[] = {
		TP("01"), "cc-" T "-" P "-01", TP("01") " ", "00-" T "-" P "-0", "0",
	};
	struct osh_trace_ctx ctx;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		void *map;
		size_t maplen, len = strlen(cases[i]);
		char *s = at_guard_page(cases[i], len, &map, &maplen);

		(void)osh_traceparent_parse(s, len, &ctx);
		(void)osh_tracestate_valid(s, len);
		(void)osh_baggage_valid(s, len);
		munmap(map, maplen);
	}
}

/* ---- traceparent format ---- */

Test(traceparent_format, exact_output)
{
	char out[OSH_TRACEPARENT_LEN + 1];

	memset(out, '#', sizeof(out));
	osh_traceparent_format(T_BYTES, P_BYTES, OSH_FLAG_SAMPLED, out);
	cr_assert_eq(out[OSH_TRACEPARENT_LEN], '#', "wrote past 55 characters");
	out[OSH_TRACEPARENT_LEN] = '\0';
	cr_assert_str_eq(out, TP("01"));
}

Test(traceparent_format, flags_masked_to_defined_bits)
{
	static const struct {
		uint8_t in;
		const char *hex;
	} cases[] = {
		{0x00, "00"}, {0x01, "01"}, {0x02, "02"}, {0x03, "03"},
		{0xff, "03"}, {0xfc, "00"}, {0x09, "01"}, {0x82, "02"},
	};
	char out[OSH_TRACEPARENT_LEN + 1] = {0};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		osh_traceparent_format(T_BYTES, P_BYTES, cases[i].in, out);
		cr_assert_eq(memcmp(out + 53, cases[i].hex, 2), 0, "flags %02x -> %.2s",
			     cases[i].in, out + 53);
	}
}

Test(traceparent_format, round_trip)
{
	/* Ids covering every byte value, both cases of each flag bit. */
	for (int round = 0; round < 64; round++) {
		uint8_t tid[16], sid[8];
		char out[OSH_TRACEPARENT_LEN];
		struct osh_trace_ctx ctx;

		for (int i = 0; i < 16; i++)
			tid[i] = (uint8_t)(round * 16 + i * 17 + 1);
		for (int i = 0; i < 8; i++)
			sid[i] = (uint8_t)(round * 8 + i * 29 + 3);
		osh_traceparent_format(tid, sid, (uint8_t)round, out);
		cr_assert(osh_traceparent_parse(out, sizeof(out), &ctx), "%.55s", out);
		cr_assert_arr_eq(ctx.trace_id, tid, 16);
		cr_assert_arr_eq(ctx.span_id, sid, 8);
		cr_assert_eq(ctx.flags, round & 3);
	}
}

/* ---- tracestate ---- */

static bool ts_valid(const char *s)
{
	return osh_tracestate_valid(s, strlen(s));
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	cr_assert(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* "k0=v,k1=v,...": @n members. */
static char *members(size_t n, const char *sep)
{
	char *s = malloc(n * (16 + strlen(sep)) + 1);
	size_t w = 0;

	cr_assert(s);
	s[0] = '\0';
	for (size_t i = 0; i < n; i++)
		w += (size_t)sprintf(s + w, "%sk%zu=v", i ? sep : "", i);
	return s;
}

Test(tracestate, r15_ows_around_members)
{
	static const char s[] = "foo=1 \t , \t bar=2, \t baz=3";
	char out[64];
	size_t n;

	cr_assert(ts_valid(s));
	n = osh_tracestate_truncate(s, strlen(s), out, sizeof(out));
	cr_assert_eq(n, strlen("foo=1,bar=2,baz=3"));
	cr_assert_eq(memcmp(out, "foo=1,bar=2,baz=3", n), 0, "%.*s", (int)n, out);
}

Test(tracestate, r16_level2_keys)
{
	cr_assert(ts_valid("foo@=1,bar=2"));
	cr_assert(ts_valid("1abc=x"));
	cr_assert(ts_valid("tenant@system=x"));
	cr_assert(ts_valid("a_-*/@9=x"));
}

Test(tracestate, r17_member_limit)
{
	char *s32 = members(32, ",");
	char *s33 = members(33, ",");
	char *s32e = members(32, ",,, ");

	cr_assert(ts_valid(s32));
	cr_assert(ts_valid(s32e), "empty members do not count");
	cr_assert_not(ts_valid(s33));
	free(s32);
	free(s33);
	free(s32e);
}

Test(tracestate, r18_bad_keys)
{
	char *k256 = repeat('k', 256), *k257 = repeat('k', 257);
	char buf[600];

	cr_assert_not(ts_valid("foo =1"));
	cr_assert_not(ts_valid("f oo=1"));
	snprintf(buf, sizeof(buf), "%s=1", k256);
	cr_assert(ts_valid(buf));
	snprintf(buf, sizeof(buf), "%s=1", k257);
	cr_assert_not(ts_valid(buf));
	snprintf(buf, sizeof(buf), "a=1,%s=1", k257);
	cr_assert_not(ts_valid(buf), "one bad member invalidates the whole header");
	free(k256);
	free(k257);
}

Test(tracestate, key_grammar)
{
	static const char *const bad[] = {
		"Foo=1", "fOo=1",  "_foo=1", "@foo=1",	"-foo=1",	"*foo=1", "/foo=1",
		"=1",	 "fo.o=1", "fo+o=1", "fo\to=1", "fo\xc3\xa9=1", "foo",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(ts_valid(bad[i]), "accepted \"%s\"", bad[i]);
}

Test(tracestate, value_grammar)
{
	char *v256 = repeat('v', 256), *v257 = repeat('v', 257);
	char buf[600];
	static const char *const good[] = {
		"a= x", "a=x y", "a=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~", "a=x \t", "a=x\t",
	};
	static const char *const bad[] = {
		"a=", "a= ", "a= \t", "a=x=y", "a=x\ty", "a=\x7f", "a=\x1f", "a=\xc3\xa9", "a=x\ny",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert(ts_valid(good[i]), "rejected \"%s\"", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(ts_valid(bad[i]), "accepted \"%s\"", bad[i]);
	snprintf(buf, sizeof(buf), "a=%s", v256);
	cr_assert(ts_valid(buf));
	snprintf(buf, sizeof(buf), "a=%s", v257);
	cr_assert_not(ts_valid(buf));
	free(v256);
	free(v257);
}

Test(tracestate, empty_members_and_empty_header)
{
	cr_assert(ts_valid(""));
	cr_assert(ts_valid(" \t "));
	cr_assert(ts_valid(",,,"));
	cr_assert(ts_valid("a=1,,b=2"));
	cr_assert(ts_valid(" , a=1 , , "));
}

static size_t ts_trunc(const char *s, size_t max, char *out)
{
	size_t n = osh_tracestate_truncate(s, strlen(s), out, max);

	cr_assert_leq(n, max);
	out[n] = '\0';
	return n;
}

Test(tracestate, truncate_keeps_what_fits)
{
	char out[128];

	cr_assert_eq(ts_trunc("a=1,b=2", 7, out), 7);
	cr_assert_str_eq(out, "a=1,b=2");
	cr_assert_eq(ts_trunc(" a=1 ,, b=2 ", 100, out), 7, "normalised: empty members, OWS gone");
	cr_assert_str_eq(out, "a=1,b=2");
	cr_assert_eq(ts_trunc("", 100, out), 0);
	cr_assert_eq(ts_trunc("a=1", 0, out), 0);
	cr_assert_eq(ts_trunc("a=1,b=2", 2, out), 0);
}

Test(tracestate, truncate_invalid_input_gives_nothing)
{
	char out[128];

	cr_assert_eq(ts_trunc("A=1,b=2", 100, out), 0);
	cr_assert_eq(ts_trunc("a=1,b", 100, out), 0);
}

Test(tracestate, truncate_from_the_right)
{
	char out[128];

	cr_assert_eq(ts_trunc("a=1,b=2,c=3", 10, out), 7);
	cr_assert_str_eq(out, "a=1,b=2");
	cr_assert_eq(ts_trunc("a=1,b=2,c=3", 6, out), 3);
	cr_assert_str_eq(out, "a=1");
}

Test(tracestate, truncate_long_members_first)
{
	/* m129 is long (> 128 chars), m128 is not. */
	char *v126 = repeat('x', 126), *v127 = repeat('y', 127);
	char m128[200], m129[200], s[600], want[600], out[600];

	snprintf(m128, sizeof(m128), "p=%s", v126);
	snprintf(m129, sizeof(m129), "q=%s", v127);
	cr_assert_eq(strlen(m128), 128);
	cr_assert_eq(strlen(m129), 129);
	snprintf(s, sizeof(s), "a=1,%s,%s,b=2", m129, m128);

	/* Needs to lose > 128 chars: the long member goes, the 128-char one
	 * and the rightmost short one stay. */
	ts_trunc(s, strlen(s) - 1, out);
	snprintf(want, sizeof(want), "a=1,%s,b=2", m128);
	cr_assert_str_eq(out, want);

	/* Still too long without the long member: then from the right. */
	ts_trunc(s, 3 + 1 + 128, out);
	snprintf(want, sizeof(want), "a=1,%s", m128);
	cr_assert_str_eq(out, want);
	ts_trunc(s, 10, out);
	cr_assert_str_eq(out, "a=1");
	free(v126);
	free(v127);
}

Test(tracestate, truncate_only_as_many_long_members_as_needed)
{
	char *v200 = repeat('x', 200), *v150 = repeat('y', 150);
	char s[600], want[600], out[600];
	size_t max;

	snprintf(s, sizeof(s), "a=1,l=%s,m=%s,b=2", v200, v150);
	/* Dropping the rightmost long member (m, 152 chars) is enough. */
	max = strlen(s) - 152;
	ts_trunc(s, max, out);
	snprintf(want, sizeof(want), "a=1,l=%s,b=2", v200);
	cr_assert_str_eq(out, want);
	/* Both long members must go before any short one. */
	ts_trunc(s, 7, out);
	cr_assert_str_eq(out, "a=1,b=2");
	free(v200);
	free(v150);
}

/* ---- baggage ---- */

static bool bg_valid(const char *s)
{
	return osh_baggage_valid(s, strlen(s));
}

static int bg_get(const char *s, const char *key, char *out, size_t outsz)
{
	return osh_baggage_get(s, strlen(s), key, out, outsz);
}

Test(baggage, r19_percent_decoded_values)
{
	static const char s[] = "userId=Am%C3%A9lie,serverNode=DF%2028";
	char out[64];

	cr_assert(bg_valid(s));
	cr_assert_eq(bg_get(s, "userId", out, sizeof(out)), 7);
	cr_assert_str_eq(out, "Am\xc3\xa9lie");
	cr_assert_eq(bg_get(s, "serverNode", out, sizeof(out)), 5);
	cr_assert_str_eq(out, "DF 28");
}

Test(baggage, r20_properties_and_ows)
{
	static const char s[] = "key1=value1;property1;property2, key2 = value2";
	char out[64], clean[64];

	cr_assert(bg_valid(s));
	cr_assert_eq(bg_get(s, "key1", out, sizeof(out)), 6);
	cr_assert_str_eq(out, "value1", "properties are not part of the value");
	cr_assert_eq(bg_get(s, "key2", out, sizeof(out)), 6);
	cr_assert_str_eq(out, "value2");
	cr_assert_eq(bg_get(s, "property1", out, sizeof(out)), -1, "a property is no member");
	/* Two members; sanitising keeps both, properties intact. */
	osh_baggage_sanitize(s, strlen(s), clean, sizeof(clean));
	cr_assert_str_eq(clean, "key1=value1;property1;property2,key2 = value2");
}

Test(baggage, r21_split_at_first_equals)
{
	char out[16];

	cr_assert(bg_valid("k=a=b"));
	cr_assert_eq(bg_get("k=a=b", "k", out, sizeof(out)), 3);
	cr_assert_str_eq(out, "a=b");
	cr_assert_eq(bg_get("k==", "k", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "=");
}

Test(baggage, r22_invalid_utf8_replaced)
{
	char out[16];

	cr_assert_eq(bg_get("k=%FF", "k", out, sizeof(out)), 3);
	cr_assert_str_eq(out, "\xef\xbf\xbd");
}

Test(baggage, valid_grammar)
{
	static const char *const good[] = {
		"k=v",
		"k=",
		"k = v",
		"k\t=\tv",
		" k=v ",
		"k=v;p",
		"k=v;p=1;q",
		"k=v ; p = 1 ; q ",
		"k=v;p==",
		"a=1,b=2",
		"a=1 , b=2",
		"!#$%&'*+-.^_`|~=x",
		"k=%25",
		"a=1,a=2",
		"k=!#$%&'()*+-./0:<=>?@[]^_`{|}~",
	};
	static const char *const bad[] = {
		"",	" ",	  "=v",	     "k v=1",	   "k=v w",	  "k=\"v\"", "k=v\\",
		"k=v;", "k=v;;p", "k=v;=1",  "a=1,,b=2",   "a=1,",	  ",a=1",    "k",
		"k@=v", "k(=v",	  "k=v\x7f", "k=\xc3\xa9", "k=v;p=\"x\"", "k=v;p q",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert(bg_valid(good[i]), "rejected \"%s\"", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(bg_valid(bad[i]), "accepted \"%s\"", bad[i]);
}

/* @n members of about @each bytes ("kNNNN=xxx..."), comma-joined. */
static char *bg_members(size_t n, size_t each)
{
	char *s = malloc(n * (each + 1) + 1);
	size_t w = 0;

	cr_assert(s);
	for (size_t i = 0; i < n; i++) {
		int k = sprintf(s + w, "%sk%04zu=", i ? "," : "", i);

		w += (size_t)k;
		for (size_t j = (size_t)k - (i ? 1 : 0); j < each; j++)
			s[w++] = 'x';
	}
	s[w] = '\0';
	return s;
}

Test(baggage, member_limit)
{
	char *s64 = bg_members(64, 8), *s65 = bg_members(65, 8);
	char out[2048];
	size_t n;

	cr_assert(bg_valid(s64));
	cr_assert_not(bg_valid(s65));
	/* Sanitising keeps the first 64 whole members. */
	n = osh_baggage_sanitize(s65, strlen(s65), out, sizeof(out));
	cr_assert_eq(n, strlen(s64));
	cr_assert_str_eq(out, s64);
	free(s64);
	free(s65);
}

Test(baggage, byte_limit)
{
	/* 32 members of 256 bytes + 31 commas = 8223 > 8192; 31 of them fit. */
	char *s = bg_members(32, 256), *s31 = bg_members(31, 256);
	char *out = malloc(strlen(s) + 1);
	char *exact = bg_members(1, 8192), *over = bg_members(1, 8193);
	size_t n;

	cr_assert(out);
	cr_assert_eq(strlen(s), 32 * 256 + 31);
	cr_assert_not(bg_valid(s));
	n = osh_baggage_sanitize(s, strlen(s), out, strlen(s) + 1);
	cr_assert_eq(n, strlen(s31));
	cr_assert_str_eq(out, s31);
	cr_assert(bg_valid(exact));
	cr_assert_not(bg_valid(over));
	free(s);
	free(s31);
	free(out);
	free(exact);
	free(over);
}

Test(baggage, sanitize_drops_malformed_members)
{
	static const char s[] = " a=1 ,bad, b = 2 ;p,,=x, c=\"q\" ,d=%41";
	char out[sizeof(s)];
	size_t n = osh_baggage_sanitize(s, strlen(s), out, sizeof(out));

	cr_assert_str_eq(out, "a=1,b = 2 ;p,d=%41");
	cr_assert_eq(n, strlen(out));
	cr_assert(bg_valid(out));
	cr_assert_eq(osh_baggage_sanitize("bad", 3, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "");
}

Test(baggage, sanitize_small_output_keeps_whole_members)
{
	static const char s[] = "a=1,bbbb=2,c=3";
	char out[8];
	size_t n;

	memset(out, '#', sizeof(out));
	n = osh_baggage_sanitize(s, strlen(s), out, sizeof(out));
	/* "a=1,bbbb=2" does not fit in 7 chars; "a=1,c=3" does. */
	cr_assert_eq(n, 7);
	cr_assert_str_eq(out, "a=1,c=3");
	cr_assert_eq(osh_baggage_sanitize(s, strlen(s), out, 1), 0);
	cr_assert_eq(out[0], '\0');
	out[0] = '#';
	cr_assert_eq(osh_baggage_sanitize(s, strlen(s), out, 0), 0);
	cr_assert_eq(out[0], '#', "outsz 0 writes nothing");
}

Test(baggage, get_lookup_rules)
{
	static const char s[] = "a=1,A=2,a=3,bad member,b=x;p=y,c=";
	char out[16];

	cr_assert_eq(bg_get(s, "a", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "1", "first of duplicates");
	cr_assert_eq(bg_get(s, "A", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "2", "keys are case-sensitive");
	cr_assert_eq(bg_get(s, "b", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "x");
	cr_assert_eq(bg_get(s, "c", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "");
	cr_assert_eq(bg_get(s, "d", out, sizeof(out)), -1);
	cr_assert_eq(bg_get(s, "bad", out, sizeof(out)), -1);
	cr_assert_eq(bg_get(s, "", out, sizeof(out)), -1);
	cr_assert_eq(bg_get("", "a", out, sizeof(out)), -1);
}

Test(baggage, get_truncates_on_code_point_boundary)
{
	static const char s[] = "k=Am%C3%A9lie";
	char out[8];

	memset(out, '#', sizeof(out));
	cr_assert_eq(bg_get(s, "k", out, 4), 2, "the 2-byte e-acute does not fit");
	cr_assert_str_eq(out, "Am");
	cr_assert_eq(out[3], '#');
	cr_assert_eq(bg_get(s, "k", out, 5), 4);
	cr_assert_str_eq(out, "Am\xc3\xa9");
}

/* ---- percent decoding ---- */

static void expect_decode(const char *in, const char *want)
{
	char out[64];
	size_t n = osh_percent_decode(in, strlen(in), out, sizeof(out));

	cr_assert_eq(n, strlen(want), "\"%s\": length %zu, want %zu", in, n, strlen(want));
	cr_assert_str_eq(out, want, "\"%s\"", in);
}

#define FFFD "\xef\xbf\xbd"

Test(percent_decode, escapes)
{
	expect_decode("", "");
	expect_decode("abc", "abc");
	expect_decode("%41%42", "AB");
	expect_decode("%c3%a9", "\xc3\xa9");
	expect_decode("%C3%A9", "\xc3\xa9");
	expect_decode("%25", "%");
	expect_decode("%2520", "%20");
	expect_decode("a+b", "a+b");
}

Test(percent_decode, decoded_nul_is_a_byte)
{
	char out[8];

	/* The length, not the first NUL, tells where the value ends. */
	cr_assert_eq(osh_percent_decode("%00x", 4, out, sizeof(out)), 2);
	cr_assert_eq(memcmp(out, "\0x\0", 3), 0);
}

Test(percent_decode, malformed_escapes_stay_literal)
{
	expect_decode("%", "%");
	expect_decode("%4", "%4");
	expect_decode("a%", "a%");
	expect_decode("%G1", "%G1");
	expect_decode("%1G", "%1G");
	expect_decode("%%41", "%A");
}

Test(percent_decode, invalid_utf8_becomes_replacement)
{
	expect_decode("%FF", FFFD);
	expect_decode("%80", FFFD);
	expect_decode("%C3", FFFD);
	expect_decode("x%C3", "x" FFFD);
	expect_decode("%C3(", FFFD "(");
	expect_decode("%C3%28", FFFD "(");
	expect_decode("%E2%82", FFFD); /* truncated: one U+FFFD for the prefix */
	expect_decode("%E2%82x", FFFD "x");
	expect_decode("%E2%82%AC", "\xe2\x82\xac");
	expect_decode("%C0%AF", FFFD FFFD);		    /* overlong */
	expect_decode("%E0%80%AF", FFFD FFFD FFFD);	    /* overlong */
	expect_decode("%ED%A0%80", FFFD FFFD FFFD);	    /* surrogate */
	expect_decode("%ED%9F%BF", "\xed\x9f\xbf");	    /* U+D7FF */
	expect_decode("%F4%90%80%80", FFFD FFFD FFFD FFFD); /* > U+10FFFF */
	expect_decode("%F4%8F%BF%BF", "\xf4\x8f\xbf\xbf");
	expect_decode("%F0%9F%98%80", "\xf0\x9f\x98\x80");
	expect_decode("%F0%9F%98", FFFD);
	expect_decode("%F5%80", FFFD FFFD);
	expect_decode("%C3%A9%A9", "\xc3\xa9" FFFD);
	/* raw (unencoded) bytes follow the same rules */
	expect_decode("\xc3\xa9", "\xc3\xa9");
	expect_decode("%C3\xa9", "\xc3\xa9");
	expect_decode("\xff", FFFD);
}

Test(percent_decode, output_bounds)
{
	char out[4];

	memset(out, '#', sizeof(out));
	cr_assert_eq(osh_percent_decode("abcdef", 6, out, sizeof(out)), 3);
	cr_assert_str_eq(out, "abc");
	cr_assert_eq(osh_percent_decode("%FF", 3, out, 3), 0, "U+FFFD needs 3 bytes + NUL");
	cr_assert_str_eq(out, "");
	out[0] = '#';
	cr_assert_eq(osh_percent_decode("abc", 3, out, 0), 0);
	cr_assert_eq(out[0], '#');
}

Test(percent_decode, no_read_past_the_end)
{
	static const char *const cases[] = {"%", "%4", "%C3", "%E2%82", "a%F0%9F%98"};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		void *map;
		size_t maplen, len = strlen(cases[i]);
		char *s = at_guard_page(cases[i], len, &map, &maplen);
		char out[32];

		(void)osh_percent_decode(s, len, out, sizeof(out));
		(void)osh_baggage_get(s, len, "k", out, sizeof(out));
		munmap(map, maplen);
	}
}

Test(propagation, null_empty_input)
{
	struct osh_trace_ctx ctx;
	char out[8] = "#";

	cr_assert_not(osh_traceparent_parse(NULL, 0, &ctx));
	cr_assert(osh_tracestate_valid(NULL, 0));
	cr_assert_eq(osh_tracestate_truncate(NULL, 0, out, sizeof(out)), 0);
	cr_assert_not(osh_baggage_valid(NULL, 0));
	cr_assert_eq(osh_baggage_sanitize(NULL, 0, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "");
	cr_assert_eq(osh_baggage_get(NULL, 0, "k", out, sizeof(out)), -1);
	out[0] = '#';
	cr_assert_eq(osh_percent_decode(NULL, 0, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "");
}

/* ---- environment carrier ---- */

Test(env_ctx, all_three_valid)
{
	struct osh_env_ctx c;

	osh_env_ctx_load(&c, TP("01"), "foo=1 , bar=2", "k=v, l=w;p");
	cr_assert(c.parent.valid);
	cr_assert(c.parent.remote);
	cr_assert_eq(c.parent.flags, OSH_FLAG_SAMPLED);
	cr_assert_arr_eq(c.parent.trace_id, T_BYTES, 16);
	cr_assert_str_eq(c.tracestate, "foo=1,bar=2");
	cr_assert_eq(c.tracestate_len, 11);
	cr_assert_not_null(c.baggage);
	cr_assert_str_eq(c.baggage, "k=v,l=w;p");
	cr_assert_eq(c.baggage_len, 9);
	osh_env_ctx_finish(&c);
	cr_assert_null(c.baggage);
	osh_env_ctx_finish(&c); /* idempotent */
}

Test(env_ctx, r14_tracestate_dropped_without_valid_traceparent)
{
	struct osh_env_ctx c;

	osh_env_ctx_load(&c, NULL, "foo=1", "k=v");
	cr_assert_not(c.parent.valid);
	cr_assert_str_eq(c.tracestate, "");
	cr_assert_eq(c.tracestate_len, 0);
	cr_assert_str_eq(c.baggage, "k=v", "baggage is independent");
	osh_env_ctx_finish(&c);

	osh_env_ctx_load(&c, "00-4BF92F3577B34DA6A3CE929D0E0E4736-" P "-01", "foo=1", "k=v");
	cr_assert_not(c.parent.valid);
	cr_assert_str_eq(c.tracestate, "");
	cr_assert_str_eq(c.baggage, "k=v");
	osh_env_ctx_finish(&c);

	osh_env_ctx_load(&c, "", "foo=1", NULL);
	cr_assert_not(c.parent.valid);
	cr_assert_eq(c.tracestate_len, 0);
	cr_assert_null(c.baggage);
	osh_env_ctx_finish(&c);
}

Test(env_ctx, r17_bad_tracestate_keeps_traceparent)
{
	struct osh_env_ctx c;
	char *s33 = members(33, ",");

	osh_env_ctx_load(&c, TP("03"), s33, NULL);
	cr_assert(c.parent.valid);
	cr_assert_eq(c.parent.flags, OSH_FLAG_SAMPLED | OSH_FLAG_RANDOM);
	cr_assert_str_eq(c.tracestate, "");
	osh_env_ctx_finish(&c);

	osh_env_ctx_load(&c, TP("01"), "foo =1", NULL);
	cr_assert(c.parent.valid);
	cr_assert_eq(c.tracestate_len, 0);
	osh_env_ctx_finish(&c);
	free(s33);
}

Test(env_ctx, tracestate_truncated_to_512)
{
	/* 8 members of 100 chars: 807 chars; 5 members (504) fit in 512. */
	char *v = repeat('v', 98);
	char s[1024], want[1024];
	size_t w = 0;
	struct osh_env_ctx c;

	for (int i = 0; i < 8; i++)
		w += (size_t)sprintf(s + w, "%s%c=%s", i ? "," : "", 'a' + i, v);
	memcpy(want, s, 5 * 101 - 1);
	want[5 * 101 - 1] = '\0';
	osh_env_ctx_load(&c, TP("01"), s, NULL);
	cr_assert_eq(c.tracestate_len, 504);
	cr_assert_str_eq(c.tracestate, want);
	osh_env_ctx_finish(&c);
	free(v);
}

Test(env_ctx, baggage_sanitized_or_null)
{
	struct osh_env_ctx c;
	char *s70 = bg_members(70, 8), *s64 = bg_members(64, 8);

	osh_env_ctx_load(&c, NULL, NULL, "");
	cr_assert_null(c.baggage);
	cr_assert_eq(c.baggage_len, 0);
	osh_env_ctx_finish(&c);

	osh_env_ctx_load(&c, NULL, NULL, "bad, =x");
	cr_assert_null(c.baggage);
	osh_env_ctx_finish(&c);

	osh_env_ctx_load(&c, TP("01"), NULL, s70);
	cr_assert_str_eq(c.baggage, s64);
	cr_assert_eq(c.baggage_len, strlen(s64));
	cr_assert_str_eq(c.tracestate, "");
	osh_env_ctx_finish(&c);
	free(s70);
	free(s64);
}

Test(env_ctx, global_instance)
{
	osh_env_ctx_load(&osh_env_ctx, TP("01"), "a=1", "b=2");
	cr_assert(osh_env_ctx.parent.valid);
	cr_assert_str_eq(osh_env_ctx.tracestate, "a=1");
	cr_assert_str_eq(osh_env_ctx.baggage, "b=2");
	osh_env_ctx_finish(&osh_env_ctx);
}
