/* Tests for src/span.c: the fixed-size span record, its setters and limits.
 *
 * Setters never fail: strings that do not fit the arena are cut at a UTF-8
 * character boundary, the value length limit counts characters (not bytes),
 * and attributes beyond the count limit are dropped and counted. Criterion
 * runs each test in its own process, so the module's limits start at their
 * defaults in every test. */
#include <criterion/criterion.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "span.h"

/* ---- helpers ---------------------------------------------------------- */

static bool sref_is(const struct osh_span *s, struct osh_sref ref, const char *lit)
{
	return ref.len == strlen(lit) && memcmp(osh_span_str(s, ref), lit, ref.len) == 0;
}

#define assert_sref(s, ref, lit)                                                                   \
	cr_assert(sref_is((s), (ref), (lit)), "got '%.*s' (len %u), want '%s'", (int)(ref).len,    \
		  osh_span_str((s), (ref)), (unsigned)(ref).len, (lit))

/* True when @s[0..len) is well-formed UTF-8 (no sequence cut at the end). */
static bool utf8_complete(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = (unsigned char)s[i];
		size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;

		if (i + n > len)
			return false;
		for (size_t k = 1; k < n; k++)
			if (((unsigned char)s[i + k] & 0xC0) != 0x80)
				return false;
		i += n;
	}
	return true;
}

/* Fill the arena with ASCII until exactly @room bytes are left. */
static void leave_room(struct osh_span *s, size_t room)
{
	static char fill[OSH_SPAN_ARENA];
	size_t n = OSH_SPAN_ARENA - s->arena_used - room;

	memset(fill, 'x', sizeof(fill));
	osh_span_set_name(s, fill, n);
	cr_assert_eq(s->arena_used, OSH_SPAN_ARENA - room);
}

/* ---- creation and reset ------------------------------------------------ */

Test(span, create_zeroes_header)
{
	struct osh_span *s = osh_span_create();

	cr_assert_not_null(s);
	cr_assert_eq(s->n_attrs, 0);
	cr_assert_eq(s->arena_used, 0);
	cr_assert_eq(s->dropped_attrs, 0);
	cr_assert_eq(s->has_parent, false);
	cr_assert_eq(s->status_code, OSH_STATUS_UNSET);
	cr_assert_eq(s->name.len, 0);
	cr_assert_eq(s->trace_state.len, 0);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(s->trace_id[i], 0);
	osh_span_destroy(s);
}

Test(span, destroy_accepts_null)
{
	osh_span_destroy(NULL);
}

Test(span, init_resets_everything)
{
	struct osh_span *s = osh_span_create();

	memset(s->trace_id, 0xab, 16);
	s->has_parent = true;
	osh_span_set_name(s, "n", 1);
	osh_span_set_int(s, "k", 1);
	osh_span_set_status(s, OSH_STATUS_ERROR, "boom");
	osh_span_init(s);
	cr_assert_eq(s->n_attrs, 0);
	cr_assert_eq(s->arena_used, 0);
	cr_assert_eq(s->status_code, OSH_STATUS_UNSET);
	cr_assert_eq(s->status_message.len, 0);
	cr_assert_eq(s->has_parent, false);
	cr_assert_eq(s->trace_id[0], 0);
	cr_assert_null(osh_span_find(s, "k"));
	osh_span_destroy(s);
}

/* ---- setters ------------------------------------------------------------ */

Test(span, setters_store_every_type)
{
	struct osh_span *s = osh_span_create();
	const struct osh_attr *a;

	osh_span_set_name(s, "GET /a", 6);
	osh_span_set_trace_state(s, "k=v", 3);
	osh_span_set_str(s, "s", "hello world", 5);
	osh_span_set_cstr(s, "c", "abc");
	osh_span_set_int(s, "i", -42);
	osh_span_set_int(s, "imax", INT64_MAX);
	osh_span_set_double(s, "d", 1.5);
	osh_span_set_bool(s, "bt", true);
	osh_span_set_bool(s, "bf", false);
	osh_span_set_str(s, "empty", "", 0);

	assert_sref(s, s->name, "GET /a");
	assert_sref(s, s->trace_state, "k=v");
	cr_assert_eq(s->n_attrs, 8);

	a = osh_span_find(s, "s");
	cr_assert_not_null(a);
	cr_assert_eq(a->type, OSH_ATTR_STRING);
	assert_sref(s, a->v.s, "hello");
	a = osh_span_find(s, "c");
	cr_assert_eq(a->type, OSH_ATTR_STRING);
	assert_sref(s, a->v.s, "abc");
	a = osh_span_find(s, "i");
	cr_assert_eq(a->type, OSH_ATTR_INT);
	cr_assert_eq(a->v.i, -42);
	cr_assert_eq(osh_span_find(s, "imax")->v.i, INT64_MAX);
	a = osh_span_find(s, "d");
	cr_assert_eq(a->type, OSH_ATTR_DOUBLE);
	cr_assert_float_eq(a->v.d, 1.5, 0);
	a = osh_span_find(s, "bt");
	cr_assert_eq(a->type, OSH_ATTR_BOOL);
	cr_assert_eq(a->v.b, true);
	cr_assert_eq(osh_span_find(s, "bf")->v.b, false);
	a = osh_span_find(s, "empty");
	cr_assert_eq(a->type, OSH_ATTR_STRING);
	cr_assert_eq(a->v.s.len, 0);
	cr_assert_null(osh_span_find(s, "absent"));
	/* Attributes keep their insertion order. */
	cr_assert_str_eq(s->attrs[0].key, "s");
	cr_assert_str_eq(s->attrs[7].key, "empty");
	cr_assert_eq(s->arena_used, 6 + 3 + 5 + 3);
	osh_span_destroy(s);
}

Test(span, keys_are_not_copied)
{
	struct osh_span *s = osh_span_create();
	static const char key[] = "http.request.method";

	osh_span_set_cstr(s, key, "GET");
	cr_assert_eq(s->attrs[0].key, key);
	cr_assert_eq(s->arena_used, 3);
	osh_span_destroy(s);
}

Test(span, status_with_and_without_message)
{
	struct osh_span *s = osh_span_create();

	osh_span_set_status(s, OSH_STATUS_OK, NULL);
	cr_assert_eq(s->status_code, OSH_STATUS_OK);
	cr_assert_eq(s->status_message.len, 0);
	cr_assert_eq(s->arena_used, 0);
	osh_span_set_status(s, OSH_STATUS_ERROR, "timed out");
	cr_assert_eq(s->status_code, OSH_STATUS_ERROR);
	assert_sref(s, s->status_message, "timed out");
	osh_span_destroy(s);
}

Test(span, doubles_keep_special_values)
{
	struct osh_span *s = osh_span_create();

	osh_span_set_double(s, "nan", NAN);
	osh_span_set_double(s, "inf", -INFINITY);
	cr_assert(isnan(osh_span_find(s, "nan")->v.d));
	cr_assert(isinf(osh_span_find(s, "inf")->v.d));
	osh_span_destroy(s);
}

/* ---- the arena ------------------------------------------------------------ */

Test(span, arena_fills_exactly_then_empties_values)
{
	struct osh_span *s = osh_span_create();
	const struct osh_attr *a;

	leave_room(s, 4);
	osh_span_set_cstr(s, "fits", "abcd");
	cr_assert_eq(s->arena_used, OSH_SPAN_ARENA);
	assert_sref(s, osh_span_find(s, "fits")->v.s, "abcd");
	/* Arena full: the attribute still exists, with an empty value. */
	osh_span_set_cstr(s, "late", "xyz");
	a = osh_span_find(s, "late");
	cr_assert_not_null(a);
	cr_assert_eq(a->v.s.len, 0);
	cr_assert_eq(s->arena_used, OSH_SPAN_ARENA);
	osh_span_set_status(s, OSH_STATUS_ERROR, "msg");
	cr_assert_eq(s->status_message.len, 0);
	osh_span_destroy(s);
}

Test(span, arena_plain_ascii_truncated_to_room)
{
	struct osh_span *s = osh_span_create();

	leave_room(s, 3);
	osh_span_set_cstr(s, "v", "abcdef");
	assert_sref(s, osh_span_find(s, "v")->v.s, "abc");
	cr_assert_eq(s->arena_used, OSH_SPAN_ARENA);
	osh_span_destroy(s);
}

/* Every amount of room against strings of 2-, 3- and 4-byte characters (and a
 * mix): the stored prefix is the longest one made of whole characters. */
Test(span, arena_truncation_at_utf8_boundaries)
{
	static const char *const values[] = {
		"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",	  /* é x4 */
		"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac",	  /* € x3 */
		"\xf0\x9f\x98\x80\xf0\x9f\x98\x80",	  /* 😀 x2 */
		"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", /* a é € 😀 z */
	};

	for (size_t v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
		const char *val = values[v];
		size_t len = strlen(val);

		for (size_t room = 0; room <= len + 1; room++) {
			struct osh_span *s = osh_span_create();
			const struct osh_attr *a;
			size_t want = 0;

			/* Expected: whole characters while they fit. */
			for (size_t i = 0; i < len;) {
				unsigned char c = (unsigned char)val[i];
				size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
				if (i + n > room)
					break;
				i += n;
				want = i;
			}
			leave_room(s, room);
			osh_span_set_cstr(s, "v", val);
			a = osh_span_find(s, "v");
			cr_assert_eq(a->v.s.len, want, "value %zu room %zu: len %u, want %zu", v,
				     room, a->v.s.len, want);
			cr_assert_eq(memcmp(osh_span_str(s, a->v.s), val, want), 0);
			cr_assert(utf8_complete(osh_span_str(s, a->v.s), a->v.s.len));
			cr_assert_leq(s->arena_used, OSH_SPAN_ARENA);
			osh_span_destroy(s);
		}
	}
}

Test(span, name_and_trace_state_truncate_at_utf8_boundaries)
{
	struct osh_span *s = osh_span_create();

	leave_room(s, 5);
	/* Name: "€€" needs 6 bytes; only one € fits. */
	osh_span_set_name(s, "\xe2\x82\xac\xe2\x82\xac", 6);
	assert_sref(s, s->name, "\xe2\x82\xac");
	osh_span_set_trace_state(s, "ab", 2);
	assert_sref(s, s->trace_state, "ab");
	cr_assert_eq(s->arena_used, OSH_SPAN_ARENA);
	osh_span_destroy(s);
}

Test(span, reserve)
{
	struct osh_span *s = osh_span_create();
	struct osh_sref ref = {0xffff, 0xffff};
	struct osh_sref untouched = ref;
	char *p;

	osh_span_set_name(s, "abc", 3);
	p = osh_span_reserve(s, 10, &ref);
	cr_assert_not_null(p);
	cr_assert_eq(ref.off, 3);
	cr_assert_eq(ref.len, 10);
	cr_assert_eq(p, s->arena + 3);
	cr_assert_eq(s->arena_used, 13);
	memcpy(p, "0123456789", 10);
	assert_sref(s, ref, "0123456789");

	/* Too big: NULL, nothing used, ref untouched. */
	ref = untouched;
	cr_assert_null(osh_span_reserve(s, OSH_SPAN_ARENA - 13 + 1, &ref));
	cr_assert_eq(s->arena_used, 13);
	cr_assert_eq(ref.off, untouched.off);
	/* Exactly the rest: fits. */
	cr_assert_not_null(osh_span_reserve(s, OSH_SPAN_ARENA - 13, &ref));
	cr_assert_eq(s->arena_used, OSH_SPAN_ARENA);
	cr_assert_not_null(osh_span_reserve(s, 0, &ref));
	cr_assert_null(osh_span_reserve(s, 1, &ref));
	osh_span_destroy(s);
}

static int completions;

static void derive(struct osh_span *s)
{
	char facts[8];

	completions++;
	memcpy(facts, s->arena + OSH_SPAN_ARENA - s->arena_top, sizeof(facts));
	osh_span_release_top(s);
	osh_span_set_str(s, "facts", facts, sizeof(facts));
}

Test(span, reserve_top_defer_and_complete)
{
	struct osh_span *s = osh_span_create();
	char *top;

	osh_span_set_name(s, "abc", 3);
	top = osh_span_reserve_top(s, 8);
	cr_assert_eq(top, s->arena + OSH_SPAN_ARENA - 8);
	memcpy(top, "01234567", 8);
	/* The bottom may grow only up to the reserved bytes. */
	cr_assert_null(osh_span_reserve_top(s, OSH_SPAN_ARENA - 3 - 8 + 1));
	{
		struct osh_sref ref;

		cr_assert_null(osh_span_reserve(s, OSH_SPAN_ARENA - 3 - 8 + 1, &ref));
	}
	osh_span_set_str(s, "long", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 48);
	cr_assert_leq(s->arena_used, OSH_SPAN_ARENA - 8);
	cr_assert_eq(memcmp(top, "01234567", 8), 0, "a value overwrote the reserved bytes");

	completions = 0;
	osh_span_complete(s);	/* nothing deferred: nothing runs */
	cr_assert_eq(completions, 0);
	osh_span_defer(s, derive);
	osh_span_complete(s);
	osh_span_complete(s);	/* runs once */
	cr_assert_eq(completions, 1);
	cr_assert_eq(s->arena_top, 0);
	cr_assert_null(s->deferred);
	cr_assert_eq(s->n_attrs, 2);
	cr_assert_str_eq(s->attrs[1].key, "facts");
	cr_assert(sref_is(s, s->attrs[1].v.s, "01234567"));
	osh_span_destroy(s);

	/* A recycled record carries neither. */
	s = osh_span_create();
	cr_assert_eq(s->arena_top, 0);
	cr_assert_null(s->deferred);
	osh_span_destroy(s);
}

/* ---- the value length limit ---------------------------------------------- */

Test(span, value_limit_counts_characters)
{
	static const struct {
		uint32_t limit;
		const char *in;
		const char *want;
	} cases[] = {
		{3, "hello", "hel"},
		{3, "h\xc3\xa9llo", "h\xc3\xa9l"}, /* é is one char */
		{2, "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", "\xe2\x82\xac\xe2\x82\xac"},
		{1, "\xf0\x9f\x98\x80z", "\xf0\x9f\x98\x80"},
		{5, "abc", "abc"},
		{3, "abc", "abc"},
		{1, "", ""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_span *s = osh_span_create();

		osh_span_set_limits(cases[i].limit, 128);
		osh_span_set_cstr(s, "v", cases[i].in);
		cr_assert(sref_is(s, osh_span_find(s, "v")->v.s, cases[i].want),
			  "case %zu: got '%.*s'", i, (int)osh_span_find(s, "v")->v.s.len,
			  osh_span_str(s, osh_span_find(s, "v")->v.s));
		osh_span_destroy(s);
	}
}

Test(span, value_limit_applies_to_attributes_and_status_only)
{
	struct osh_span *s = osh_span_create();

	osh_span_set_limits(2, 128);
	osh_span_set_name(s, "GET /long", 9);
	osh_span_set_trace_state(s, "a=b,c=d", 7);
	osh_span_set_status(s, OSH_STATUS_ERROR, "broken");
	osh_span_set_cstr(s, "v", "value");
	assert_sref(s, s->name, "GET /long");
	assert_sref(s, s->trace_state, "a=b,c=d");
	assert_sref(s, s->status_message, "br");
	assert_sref(s, osh_span_find(s, "v")->v.s, "va");
	osh_span_destroy(s);
}

Test(span, value_limit_zero_means_arena_only)
{
	struct osh_span *s = osh_span_create();
	char big[1000];

	memset(big, 'q', sizeof(big));
	osh_span_set_limits(0, 128);
	osh_span_set_str(s, "v", big, sizeof(big));
	cr_assert_eq(osh_span_find(s, "v")->v.s.len, sizeof(big));
	osh_span_destroy(s);
}

/* Limit and arena together: the limit keeps 3 characters (9 bytes), the
 * arena has room for 7 bytes: two whole characters remain. */
Test(span, value_limit_then_arena_cut)
{
	struct osh_span *s = osh_span_create();

	osh_span_set_limits(3, 128);
	leave_room(s, 7);
	osh_span_set_cstr(s, "v", "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac");
	assert_sref(s, osh_span_find(s, "v")->v.s, "\xe2\x82\xac\xe2\x82\xac");
	osh_span_destroy(s);
}

/* ---- the count limit -------------------------------------------------------- */

Test(span, count_limit_drops_and_counts)
{
	struct osh_span *s = osh_span_create();

	osh_span_set_limits(0, 3);
	osh_span_set_int(s, "a", 1);
	osh_span_set_cstr(s, "b", "x");
	osh_span_set_bool(s, "c", true);
	osh_span_set_double(s, "d", 2.0);
	osh_span_set_cstr(s, "e", "dropped");
	osh_span_set_int(s, "f", 3);
	osh_span_set_bool(s, "g", false);
	cr_assert_eq(s->n_attrs, 3);
	cr_assert_eq(s->dropped_attrs, 4);
	cr_assert_null(osh_span_find(s, "d"));
	cr_assert_null(osh_span_find(s, "e"));
	/* A dropped string takes no arena space. */
	cr_assert_eq(s->arena_used, 1);
	osh_span_destroy(s);
}

Test(span, count_limit_zero_drops_everything)
{
	struct osh_span *s = osh_span_create();

	osh_span_set_limits(0, 0);
	osh_span_set_cstr(s, "a", "x");
	osh_span_set_int(s, "b", 1);
	cr_assert_eq(s->n_attrs, 0);
	cr_assert_eq(s->dropped_attrs, 2);
	cr_assert_eq(s->arena_used, 0);
	osh_span_destroy(s);
}

/* Above the record's capacity the limit is clamped to it. */
Test(span, count_limit_clamped_to_record)
{
	static char names[OSH_SPAN_MAX_ATTRS + 5][8];
	const char *keys[OSH_SPAN_MAX_ATTRS + 5];
	struct osh_span *s = osh_span_create();

	osh_span_set_limits(0, 128);
	for (int i = 0; i < OSH_SPAN_MAX_ATTRS + 5; i++) {
		snprintf(names[i], sizeof(names[i]), "k%d", i);
		keys[i] = names[i];	/* static storage, as keys must be */
		osh_span_add_int(s, keys[i], strlen(keys[i]), i);
	}
	cr_assert_eq(s->n_attrs, OSH_SPAN_MAX_ATTRS);
	cr_assert_eq(s->dropped_attrs, 5);
	cr_assert_eq(osh_span_find(s, names[OSH_SPAN_MAX_ATTRS - 1])->v.i, OSH_SPAN_MAX_ATTRS - 1);
	cr_assert_null(osh_span_find(s, names[OSH_SPAN_MAX_ATTRS]));
	osh_span_destroy(s);
}

Test(span, default_limits)
{
	struct osh_span *s = osh_span_create();
	char big[700];

	/* Without osh_span_set_limits: no length limit, capacity count limit. */
	memset(big, 'q', sizeof(big));
	osh_span_set_str(s, "v", big, sizeof(big));
	cr_assert_eq(osh_span_find(s, "v")->v.s.len, sizeof(big));
	osh_span_destroy(s);
}

/* ---- shared arena bytes ------------------------------------------------------ */

Test(span, sref_shares_arena_bytes)
{
	struct osh_span *s = osh_span_create();
	const struct osh_attr *full, *path;
	uint16_t used;

	osh_span_set_cstr(s, "url.full", "http://x/a/b?q=1");
	full = osh_span_find(s, "url.full");
	used = s->arena_used;
	osh_span_set_sref(s, "url.path", (struct osh_sref){(uint16_t)(full->v.s.off + 8), 4});
	path = osh_span_find(s, "url.path");
	cr_assert_not_null(path);
	cr_assert_eq(path->type, OSH_ATTR_STRING);
	assert_sref(s, path->v.s, "/a/b");
	cr_assert_eq(s->arena_used, used, "a shared value must not copy bytes");
	osh_span_destroy(s);
}

Test(span, sref_obeys_count_limit)
{
	struct osh_span *s = osh_span_create();

	osh_span_set_limits(0, 1);
	osh_span_set_cstr(s, "a", "xyz");
	osh_span_set_sref(s, "b", (struct osh_sref){0, 1});
	cr_assert_eq(s->n_attrs, 1);
	cr_assert_eq(s->dropped_attrs, 1);
	cr_assert_null(osh_span_find(s, "b"));
	osh_span_destroy(s);
}

/* ---- the record pool ------------------------------------------------------------ */

/* Create records until @want comes back (bounded); the others are given
 * back. Returns @want, or NULL when it never came. */
static struct osh_span *take_until(struct osh_span *want)
{
	enum { N = 2100 };
	static struct osh_span *held[N];
	struct osh_span *got = NULL;
	int n = 0;

	while (n < N) {
		struct osh_span *s = osh_span_create();

		cr_assert_not_null(s);
		if (s == want) {
			got = s;
			break;
		}
		held[n++] = s;
	}
	while (n > 0)
		osh_span_destroy(held[--n]);
	return got;
}

/* A recycled record comes back as good as new. */
Test(span, pool_recycles_with_header_zeroed)
{
	struct osh_span *a = osh_span_create();
	struct osh_span *b;

	memset(a->trace_id, 0x11, 16);
	a->has_parent = true;
	a->end_ns = 99;
	osh_span_set_name(a, "old", 3);
	osh_span_set_int(a, "k", 1);
	osh_span_set_status(a, OSH_STATUS_ERROR, "x");
	osh_span_destroy(a);
	/* The pool is a stack: the record given back last comes out first,
	 * its lines still in the cache of the thread that gave it back. */
	b = osh_span_create();
	cr_assert_eq(b, a, "the pool did not hand out the record given back last");
	cr_assert_eq(b->n_attrs, 0);
	cr_assert_eq(b->arena_used, 0);
	cr_assert_eq(b->dropped_attrs, 0);
	cr_assert_eq(b->has_parent, false);
	cr_assert_eq(b->end_ns, 0);
	cr_assert_eq(b->name.len, 0);
	cr_assert_eq(b->status_code, OSH_STATUS_UNSET);
	cr_assert_eq(b->trace_id[0], 0);
	cr_assert_null(osh_span_find(b, "k"));
	osh_span_destroy(b);
}

/* More live records than the pool holds: every one distinct, and giving
 * them all back (some freed, pool full) is clean under valgrind. */
Test(span, pool_overflow_distinct_records)
{
	enum { N = 3000 };
	static struct osh_span *live[N];

	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			live[i] = osh_span_create();
			cr_assert_not_null(live[i]);
			live[i]->start_ns = (uint64_t)i;
		}
		for (int i = 0; i < N; i++)
			cr_assert_eq(live[i]->start_ns, (uint64_t)i, "record %d shared", i);
		for (int i = 0; i < N; i++)
			osh_span_destroy(live[i]);
	}
}

/* Threads taking and giving back records: a record handed to two owners at
 * once would show as a stamp overwritten under its owner. */
#define POOL_THREADS 6
#define POOL_ITERS   20000

static _Atomic int pool_errors;

static void *pool_worker(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	struct osh_span *held[8];

	for (int i = 0; i < POOL_ITERS; i++) {
		int n = 1 + i % 8;

		for (int k = 0; k < n; k++) {
			held[k] = osh_span_create();
			if (!held[k]) {
				atomic_fetch_add(&pool_errors, 1);
				return NULL;
			}
			if (held[k]->n_attrs != 0 || held[k]->start_ns != 0)
				atomic_fetch_add(&pool_errors, 1);
			held[k]->start_ns = id << 32 | (uint64_t)(i * 8 + k);
		}
		for (int k = 0; k < n; k++) {
			if (held[k]->start_ns != (id << 32 | (uint64_t)(i * 8 + k)))
				atomic_fetch_add(&pool_errors, 1);
			if (id % 2)	/* the exporter's way: all at once */
				continue;
			osh_span_destroy(held[k]);
		}
		if (id % 2)
			osh_span_destroy_many(held, (size_t)n);
	}
	return NULL;
}

Test(span, pool_threads_never_share_a_record, .timeout = 60)
{
	pthread_t th[POOL_THREADS];

	for (uintptr_t i = 0; i < POOL_THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, pool_worker, (void *)(i + 1)), 0);
	for (int i = 0; i < POOL_THREADS; i++)
		cr_assert_eq(pthread_join(th[i], NULL), 0);
	cr_assert_eq(atomic_load(&pool_errors), 0);
}

/* Records given back in one step come out again before any other, every
 * one of them; NULLs are skipped, and a record past the pool's capacity
 * (from malloc) goes back to free() (ASan would catch it otherwise). */
Test(span, pool_destroy_many_gives_all_back)
{
	enum { N = 1100 };
	static struct osh_span *live[N];
	struct osh_span *back[5];
	struct osh_span *mine[3];

	for (int i = 0; i < N; i++)
		cr_assert_not_null(live[i] = osh_span_create());
	mine[0] = live[10], mine[1] = live[20], mine[2] = live[30];
	back[0] = mine[0];
	back[1] = NULL;
	back[2] = mine[1];
	back[3] = live[N - 1];	/* past the pool's capacity: from malloc */
	back[4] = mine[2];
	live[10] = live[20] = live[30] = live[N - 1] = NULL;
	osh_span_destroy_many(back, 5);
	for (int k = 0; k < 3; k++) {
		struct osh_span *s = osh_span_create();
		int hit = s == mine[0] ? 0 : s == mine[1] ? 1 : s == mine[2] ? 2 : -1;

		cr_assert_geq(hit, 0, "take %d was not one of the records just given back", k);
		mine[hit] = NULL;	/* each comes out once */
		live[10 + 10 * k] = s;
	}
	osh_span_destroy_many(live, N);
}

/* The stack's top is consistent at any instant, so a fork child keeps the
 * pool: a record given back before the fork comes out after it, and one
 * held across it goes back as a pool record (ASan would catch it going to
 * free()). */
Test(span, pool_after_fork_keeps_records)
{
	struct osh_span *a = osh_span_create();
	struct osh_span *kept = osh_span_create();
	struct osh_span *b;

	osh_span_destroy(a);
	osh_span_pool_after_fork();
	b = osh_span_create();
	cr_assert_eq(b, a, "the record given back before the fork was lost");
	cr_assert_eq(b->n_attrs, 0);
	osh_span_destroy(b);
	osh_span_destroy(kept);
	cr_assert_eq(take_until(kept), kept, "the record held across the fork did not come back");
}

/* OTLP strings must be valid UTF-8: bytes from the wire are cleaned up. */
Test(span, invalid_utf8_becomes_replacement_characters)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
		{ "plain", 5, "plain" },
		{ "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14, "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80" },
		{ "a\xFF" "b", 3, "a\xEF\xBF\xBD" "b" },
		{ "\x80", 1, "\xEF\xBF\xBD" },
		{ "\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD" },			/* overlong '/' */
		{ "\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },	/* surrogate */
		{ "x\xE2\x82", 3, "x\xEF\xBF\xBD\xEF\xBF\xBD" },		/* cut short */
		{ "\xF4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" }, /* > U+10FFFF */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_span *s = osh_span_create();
		const struct osh_attr *a;

		osh_span_set_limits(0, 128);
		osh_span_set_str(s, "k", cases[i].in, cases[i].len);
		a = osh_span_find(s, "k");
		cr_assert_not_null(a);
		cr_assert_eq(a->v.s.len, strlen(cases[i].out), "case %zu", i);
		cr_assert(memcmp(osh_span_str(s, a->v.s), cases[i].out, a->v.s.len) == 0, "case %zu", i);
		osh_span_destroy(s);
	}
}

Test(span, replacement_characters_count_toward_the_length_limit)
{
	struct osh_span *s = osh_span_create();
	const struct osh_attr *a;

	osh_span_set_limits(3, 128);
	osh_span_set_str(s, "k", "\xFF\xFFxyz", 5);
	a = osh_span_find(s, "k");
	cr_assert_eq(a->v.s.len, 7); /* two U+FFFD and 'x' */
	cr_assert(memcmp(osh_span_str(s, a->v.s), "\xEF\xBF\xBD\xEF\xBF\xBDx", 7) == 0);
	osh_span_set_limits(0, 128);
	osh_span_destroy(s);
}
