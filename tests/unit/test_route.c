/* Tests for src/route.c: which segments are ids, templates byte for byte,
 * truncation against a canary, and inputs placed against an unmapped page
 * so a read past @len faults. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "route.h"

/* Copy @s to the end of a page followed by a PROT_NONE page. Not freed;
 * each test is its own process. */
static const char *fenced(const char *s, size_t len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t pages = (len + pg - 1) / pg + 1;
	char *m = mmap(NULL, (pages + 1) * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	cr_assert(m != MAP_FAILED);
	cr_assert(mprotect(m + pages * pg, pg, PROT_NONE) == 0);
	memcpy(m + pages * pg - len, s, len);
	return m + pages * pg - len;
}

static bool is_id(const char *s)
{
	return osh_route_segment_is_id(fenced(s, strlen(s)), strlen(s));
}

static const char *const ids[] = {
	"0",
	"9",
	"12345",
	"2024",
	"00000000000000000000000000000000000000000",
	"550e8400-e29b-41d4-a716-446655440000",
	"550E8400-E29B-41D4-A716-446655440000",
	"550e8400-E29B-41d4-A716-446655440000",
	"9f86d081884c7d659a2feaa0c55ad015",
	"9F86D081884C7D65", /* 16 hex, upper */
	"deadbeefdeadbee1", /* 16 hex, one digit */
	"thread_abc123XYZdef456GHI",
	"chatcmpl-AbC123dEf456GhI789",
	"msg_01XFDUDYJgAACzvnptvVoYEL",
	"AbC123dEf456GhI7", /* 16 */
	"aGVsbG8gd29ybGQ9PQ==",
	"file-AbCdEf0123456789",
	"a.B.c.1.e.f.g.h.i.j",
	"x~Y~z~1~a~b~c~d~e~f",
};

Test(route, segment_ids)
{
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		cr_expect(is_id(ids[i]), "\"%s\"", ids[i]);
}

static const char *const names[] = {
	"",
	"v1",
	"v1beta",
	"chat",
	"completions",
	"users",
	"me",
	"gpt-4o-2024-08-06",
	"gemini-1.5-pro:generateContent",
	"chat-completions-v1-beta-2024",
	"claude-3-5-sonnet-20241022",
	"text-embedding-3-large",
	"ListAllModelsNow",	   /* mixed case, no digit */
	"deadbeefdeadbeef",	   /* hex without a digit */
	"9f86d081884c7d6",	   /* hex, 15 */
	"AbC123dEf456GhI",	   /* token, 15 */
	"abc123def456ghi789jkl",   /* no upper case */
	"ABC123DEF456GHI789JKL",   /* no lower case */
	"AbC123dEf456GhI7!",	   /* '!' is not a token char */
	"My%20File2024ABCdefghij", /* '%' is not a token char */
	"550e8400-e29b-41d4-a716-44665544000g",
	"550e8400e29b-41d4-a716-4466554400000",
	"550e8400-e29b-41d4-a716-4466554400001", /* 37 */
	"12a",
	"-1",
	"1.5",
	"index.html",
	"v2.3.4",
	"README.md",
};

Test(route, segment_names)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_expect(!is_id(names[i]), "\"%s\"", names[i]);
}

struct xcase {
	const char *in;
	const char *out;
};

static const struct xcase templates[] = {
	/* from the task */
	{"/v1/chat/completions", "/v1/chat/completions"},
	{"/users/12345/orders/9", "/users/{id}/orders/{id}"},
	{"/v1/threads/thread_abc123XYZdef456GHI/messages", "/v1/threads/{id}/messages"},
	{"/files/550e8400-e29b-41d4-a716-446655440000", "/files/{id}"},
	{"/blob/9f86d081884c7d659a2feaa0c55ad015", "/blob/{id}"},
	{"/chat-completions-v1-beta-2024", "/chat-completions-v1-beta-2024"},
	{"/v1/models/gpt-4o-2024-08-06", "/v1/models/gpt-4o-2024-08-06"},
	{"/v1beta/models/gemini-1.5-pro:generateContent",
	 "/v1beta/models/gemini-1.5-pro:generateContent"},
	/* empty and slashes kept as they are */
	{"", "/"},
	{"/", "/"},
	{"//", "//"},
	{"/a//b/", "/a//b/"},
	{"/a/", "/a/"},
	{"/1/", "/{id}/"},
	{"//1//2//", "//{id}//{id}//"},
	/* query and fragment cut */
	{"/users/12345?x=1&token=abc", "/users/{id}"},
	{"/a#frag/1", "/a"},
	{"/a?b#c", "/a"},
	{"?x=1", "/"},
	{"#x", "/"},
	{"/?x=1", "/"},
	/* absolute-form reduced to the path */
	{"http://host:8080/users/1?x", "/users/{id}"},
	{"https://api.openai.com/v1/chat/completions", "/v1/chat/completions"},
	{"http://u:p@host/a/42", "/a/{id}"},
	{"http://host", "/"},
	{"https://host?x=1", "/"},
	{"http://host#f", "/"},
	{"http://[::1]:8080/x/7", "/x/{id}"},
	/* authority-form (CONNECT), asterisk-form (OPTIONS), scheme-less */
	{"host:443", "/"},
	{"api.openai.com:443", "/"},
	{"*", "/"},
	{"example.com/v1/x/3", "/v1/x/{id}"},
	/* more ids */
	{"/v1/chat/completions/chatcmpl-AbC123dEf456GhI789", "/v1/chat/completions/{id}"},
	{"/v1/messages/msg_01XFDUDYJgAACzvnptvVoYEL", "/v1/messages/{id}"},
	{"/2024/05/report", "/{id}/{id}/report"},
	{"/files/550E8400-E29B-41D4-A716-446655440000/content", "/files/{id}/content"},
	{"/files/My%20File2024ABCdefghij", "/files/My%20File2024ABCdefghij"},
	{"/caf%C3%A9/menu", "/caf%C3%A9/menu"},
	{"/api/v2/users/me", "/api/v2/users/me"},
	{"/v1/Models/ListAllModelsNow", "/v1/Models/ListAllModelsNow"},
	{"/repos/o/r/commits/deadbeefdeadbeef", "/repos/o/r/commits/deadbeefdeadbeef"},
	/* credentials are never put in a span name, ids or not */
	{"/v1/keys/sk-abcdefghij0123456789/usage", "/v1/keys/{id}/usage"},
	{"/t/Bearer%20abcdefghijk", "/t/{id}"},
	{"/k/AKIAIOSFODNN7EXAMPLE", "/k/{id}"},
	{"/j/eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "/j/{id}"},
	{"/skeleton/sk-/sk-short", "/skeleton/sk-/sk-short"},
};

static void check_full(const struct xcase *c)
{
	size_t len = strlen(c->in);
	const char *in = fenced(c->in, len);
	char out[512];

	memset(out, 'Z', sizeof(out));
	size_t n = osh_route_template(in, len, out, sizeof(out));

	cr_expect_str_eq(out, c->out, "input \"%s\"", c->in);
	cr_expect_eq(n, strlen(c->out), "length for \"%s\"", c->in);
}

Test(route, template_table)
{
	for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++)
		check_full(&templates[i]);
}

/* Every output size from 0 to past the full length: the full template's
 * prefix, NUL-terminated, canary right after @outsz untouched. */
Test(route, template_truncation)
{
	char buf[512];

	for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
		const struct xcase *c = &templates[i];
		size_t len = strlen(c->in), full = strlen(c->out);
		const char *in = fenced(c->in, len);

		for (size_t outsz = 0; outsz <= full + 2; outsz++) {
			size_t want = outsz ? (outsz - 1 < full ? outsz - 1 : full) : 0;

			memset(buf, 'Z', sizeof(buf));
			size_t n = osh_route_template(in, len, buf, outsz);

			cr_expect_eq(n, want, "outsz %zu for \"%s\"", outsz, c->in);
			cr_expect_eq(buf[outsz], 'Z', "canary at %zu for \"%s\"", outsz, c->in);
			if (outsz == 0)
				continue;
			cr_expect_eq(buf[want], '\0', "NUL for \"%s\"", c->in);
			cr_expect(memcmp(buf, c->out, want) == 0, "prefix %zu for \"%s\"", want,
				  c->in);
		}
	}
}

Test(route, len_bounds_input)
{
	char out[64];

	/* Bytes past @len are not part of the path, even without a NUL. */
	cr_expect_eq(osh_route_template("/users/12345", 7, out, sizeof(out)), 7);
	cr_expect_str_eq(out, "/users/");
	cr_expect_eq(osh_route_template("/users/12345", 9, out, sizeof(out)), 11);
	cr_expect_str_eq(out, "/users/{id}");
	cr_expect(!osh_route_segment_is_id("12345x", 0));
	cr_expect(osh_route_segment_is_id("12345x", 5));
}

Test(route, null_and_zero)
{
	char c = 'Z';

	cr_expect_eq(osh_route_template("/a", 2, &c, 0), 0);
	cr_expect_eq(c, 'Z');
	cr_expect_eq(osh_route_template(NULL, 0, &c, 1), 0);
	cr_expect_eq(c, '\0');
	cr_expect_eq(osh_route_template(NULL, 0, NULL, 0), 0);
	cr_expect(!osh_route_segment_is_id(NULL, 0));
}
