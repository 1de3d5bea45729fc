/* Tests for src/redact.c: which values are credentials, URL and query
 * redaction byte for byte, truncation against a canary, and inputs placed
 * against an unmapped page so a read past @len faults. */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "redact.h"

/* Credentials used below; lengths checked in test "fixtures". The _SHORT
 * ones have 20+ key chars after "sk-" but fewer than 20 after their own
 * "sk-proj-" / "sk-ant-" prefix, which is what counts. */
#define OPENAI	   "sk-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4"
#define SK20	   "sk-abcdefghij0123456789"
#define SK19	   "sk-abcdefghij012345678"
#define PROJ	   "sk-proj-Ab3_De6-Gh9Jk2Mn5Pq8St1Vw4Yz7"
#define PROJ_SHORT "sk-proj-Ab3_De6-Gh9Jk2Mn5P"
#define ANT	   "sk-ant-api03-Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0"
#define ANT_SHORT  "sk-ant-Zx9_Yw8-Vu7Ts6Rq5Po"
#define AWS	   "AKIAIOSFODNN7EXAMPLE"
#define STS	   "ASIAIOSFODNN7EXAMPLE"
#define GOOG	   "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
#define GHP	   "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"
#define GHPAT	   "github_pat_11ABCDEFG0123456789_ab"
#define SLACK	   "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
#define JWT                                                                                        \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."                        \
	"dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
#define JWTNONE "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."

/* Copy @s to the end of a page followed by a PROT_NONE page: reading a
 * byte past the input crashes the test. Not freed; each test is its own
 * process. */
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

static bool secret(const char *s)
{
	return osh_redact_is_secret(fenced(s, strlen(s)), strlen(s));
}

Test(redact, fixtures)
{
	/* The pattern tests rely on these exact lengths. */
	cr_assert_eq(strlen(OPENAI), 3 + 48);
	cr_assert_eq(strlen(SK20), 3 + 20);
	cr_assert_eq(strlen(SK19), 3 + 19);
	cr_assert_eq(strlen(PROJ_SHORT), 8 + 18);
	cr_assert_eq(strlen(ANT_SHORT), 7 + 19);
	cr_assert_eq(strlen(AWS), 4 + 16);
	cr_assert_eq(strlen(GOOG), 4 + 35);
	cr_assert_eq(strlen(GHP), 4 + 36);
	cr_assert_eq(strlen(GHPAT), 11 + 22);
}

static const char *const secrets[] = {
	OPENAI,
	SK20,
	PROJ,
	"sk-proj-abcdefghij0123456789",
	ANT,
	"sk-ant-abcdefghij0123456789",
	"sk-abcdefghij0123456789.json", /* the key is the value's head */
	AWS,
	STS,
	AWS "-suffix",
	AWS "/x",
	GOOG,
	GOOG "&",
	GHP,
	"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",
	"ghu_wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx",
	"ghs_wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx",
	"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",
	"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LONGER",
	GHPAT,
	"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
	SLACK,
	"xoxp-1234567890",
	"xoxa-2-abcdefghij",
	"xoxr-abcdefghij",
	"xoxs-abcdefghij",
	JWT,
	JWTNONE,
	"Bearer abcdefgh",
	"Bearer " OPENAI,
	"bearer abcdefgh",
	"BEARER abcdefgh",
	"Bearer  abcdefgh",
	"Bearer%20abcdefgh",
	"Bearer+abcdefgh",
	"Bearer abc.def/ghi+jkl==",
	"Bearer " JWT,
};

Test(redact, is_secret_matches)
{
	for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
		cr_expect(secret(secrets[i]), "not flagged: \"%s\"", secrets[i]);
}

static const char *const ordinary[] = {
	"",
	"a",
	"blue",
	"hello world",
	"skeleton",
	"skeleton-key-for-everything-in-here",
	"sk",
	"sk-",
	SK19,
	"sk-abcdefghij 0123456789xyz", /* run broken by a space */
	"sk-proj-",
	PROJ_SHORT,
	"sk-ant-",
	ANT_SHORT,
	"sky-abcdefghij0123456789",
	"ask-abcdefghij0123456789",
	"SK-abcdefghij0123456789",
	"AKIA",
	"AKIAIOSFODNN7EXAMPL",	 /* 15 */
	"AKIAIOSFODNN7EXAMPLEX", /* 17 */
	"AKIAIOSFODNN7EXAMPLEx", /* no boundary */
	"AKIAIOSFODNN7EXAMPLE9", /* 17 */
	"AKIAiosfodnn7example",	 /* lower case */
	"ABIAIOSFODNN7EXAMPLE",
	"xAKIAIOSFODNN7EXAMPLE",
	"AIza",
	"AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBW",   /* 34 */
	"AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWYZ", /* 36 */
	"Alphabet",
	"ghp_",
	"ghp_short",
	"ghp_wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINU", /* 35 */
	"ghx_wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx",
	"ghp-wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx",
	"github_pat_11ABCDEFG0123456789_a", /* 21 */
	"github",
	"gpt-4o-2024-08-06",
	"xoxb-",
	"xoxb-123",
	"xoxc-1234567890123",
	"xoxb_1234567890123",
	"xylophone-orchestra",
	"eyJ",
	"eyJhbGciOiJub25lIn0",
	"eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0", /* two parts */
	"eyJhbGciOiJub25lIn0..sig",	       /* empty payload */
	"eyJh.eyJzdWIiOiIxIn0.sig",	       /* header too short */
	"eyes.only.here",
	"Bearer",
	"Bearer ",
	"Bearer abcdefg",
	"Bearerabcdefghij",
	"Bear abcdefghij",
	"Bearer %%",
	"bearing-capacity",
	"Basic-auth-docs",
	"12345678901234567890",
	"550e8400-e29b-41d4-a716-446655440000",
	"9f86d081884c7d659a2feaa0c55ad015",
	"chatcmpl-AbC123dEf456GhI789",
	"application/json",
	"Mozilla/5.0 (X11; Linux x86_64)",
	"%73k-abcdefghij0123456789", /* only the raw form is matched */
};

Test(redact, is_secret_ordinary)
{
	for (size_t i = 0; i < sizeof(ordinary) / sizeof(ordinary[0]); i++)
		cr_expect(!secret(ordinary[i]), "flagged: \"%s\"", ordinary[i]);
}

Test(redact, is_secret_respects_len)
{
	/* A secret cut short by @len is judged on the bytes given. */
	cr_expect(!osh_redact_is_secret(OPENAI, 10));
	cr_expect(!osh_redact_is_secret(AWS, 19));
	cr_expect(osh_redact_is_secret(AWS "Z", 20));
	cr_expect(!osh_redact_is_secret(JWT, 60));
	cr_expect(!osh_redact_is_secret("Bearer abcdefgh", 14));
	cr_expect(!osh_redact_is_secret(NULL, 0));
}

struct xcase {
	const char *in;
	const char *out;
};

static const struct xcase urls[] = {
	/* userinfo, always both parts (semconv) */
	{"https://user:pass@www.example.com/", "https://REDACTED:REDACTED@www.example.com/"},
	{"https://user@www.example.com/x", "https://REDACTED:REDACTED@www.example.com/x"},
	{"http://u:p@ss@host:8080/a", "http://REDACTED:REDACTED@host:8080/a"},
	{"http://@host/", "http://REDACTED:REDACTED@host/"},
	{"http://u:p@[::1]:8080/", "http://REDACTED:REDACTED@[::1]:8080/"},
	{"ftp://anonymous:guest@ftp.example.org", "ftp://REDACTED:REDACTED@ftp.example.org"},
	{"https://u:p@h?x=1", "https://REDACTED:REDACTED@h?x=1"},
	{"https://u:p@h#f", "https://REDACTED:REDACTED@h#f"},
	{"user:pass@example.com/path", "REDACTED:REDACTED@example.com/path"},
	{"user@example.com", "REDACTED:REDACTED@example.com"},
	{"//u:p@h/x", "//REDACTED:REDACTED@h/x"},
	{"svn+ssh://u@h/r", "svn+ssh://REDACTED:REDACTED@h/r"},
	/* '@' outside the authority is data */
	{"http://host/a@b/c", "http://host/a@b/c"},
	{"/users/me@example.com", "/users/me@example.com"},
	{"http://host?x=a@b", "http://host?x=a@b"},
	{"http://host#a@b", "http://host#a@b"},
	{"http://[::1]:8080/a", "http://[::1]:8080/a"},
	/* nothing to hide: byte-identical */
	{"", ""},
	{"/", "/"},
	{"*", "*"},
	{"example.com:443", "example.com:443"},
	{"https://api.openai.com/v1/chat/completions",
	 "https://api.openai.com/v1/chat/completions"},
	{"/caf%C3%A9/a%2Fb?q=hello%20world&x=%E2%9C%93&y=a+b",
	 "/caf%C3%A9/a%2Fb?q=hello%20world&x=%E2%9C%93&y=a+b"},
	{"/a//b/?&&x&=&y=#", "/a//b/?&&x&=&y=#"},
	{"/search?q=skeleton+key&page=2&sort=desc", "/search?q=skeleton+key&page=2&sort=desc"},
	{"/v1/models/gpt-4o-2024-08-06?api-version=2024-06-01",
	 "/v1/models/gpt-4o-2024-08-06?api-version=2024-06-01"},
	{"/files/550e8400-e29b-41d4-a716-446655440000?x=12345678901234567890",
	 "/files/550e8400-e29b-41d4-a716-446655440000?x=12345678901234567890"},
	/* semconv keys, case-sensitive */
	{"https://www.example.com/path?color=blue&sig=abc123",
	 "https://www.example.com/path?color=blue&sig=REDACTED"},
	{"/o?X-Amz-Signature=a1&X-Amz-Credential=AK%2F2024&X-Amz-Security-Token=t&X-Amz-Date=1",
	 "/o?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&X-Amz-Security-Token=REDACTED"
	 "&X-Amz-Date=1"},
	{"/o?X-Goog-Signature=ff&AWSAccessKeyId=A&Signature=s&Expires=1",
	 "/o?X-Goog-Signature=REDACTED&AWSAccessKeyId=REDACTED&Signature=REDACTED&Expires=1"},
	{"/o?SIG=abc&x-amz-credential=abc&X-AMZ-SIGNATURE=abc&awsaccesskeyid=a",
	 "/o?SIG=abc&x-amz-credential=abc&X-AMZ-SIGNATURE=abc&awsaccesskeyid=a"},
	/* credential names, case-insensitive */
	{"/a?key=1&api_key=2&apikey=3&api-key=4&access_token=5&refresh_token=6&id_token=7",
	 "/a?key=REDACTED&api_key=REDACTED&apikey=REDACTED&api-key=REDACTED"
	 "&access_token=REDACTED&refresh_token=REDACTED&id_token=REDACTED"},
	{"/a?token=1&auth=2&password=3&passwd=4&pwd=5&secret=6&client_secret=7",
	 "/a?token=REDACTED&auth=REDACTED&password=REDACTED&passwd=REDACTED&pwd=REDACTED"
	 "&secret=REDACTED&client_secret=REDACTED"},
	{"/a?private_token=1&session=2&sessionid=3&jwt=4&signature=5&x-api-key=6",
	 "/a?private_token=REDACTED&session=REDACTED&sessionid=REDACTED&jwt=REDACTED"
	 "&signature=REDACTED&x-api-key=REDACTED"},
	{"/a?KEY=1&Api_Key=2&API-KEY=3&Password=4&X-Api-Key=5&SessionId=6",
	 "/a?KEY=REDACTED&Api_Key=REDACTED&API-KEY=REDACTED&Password=REDACTED"
	 "&X-Api-Key=REDACTED&SessionId=REDACTED"},
	/* near misses keep their values */
	{"/a?keys=1&monkey=2&tokens=3&api_key_id=4&key_=5&authority=6&sigma=7",
	 "/a?keys=1&monkey=2&tokens=3&api_key_id=4&key_=5&authority=6&sigma=7"},
	/* keys compared raw: an encoded key is not decoded */
	{"/a?api%5Fkey=abc&api_key=abc%3D%3D", "/a?api%5Fkey=abc&api_key=REDACTED"},
	/* empty values and bare params stay as they are */
	{"/a?token=&password&key=x&&", "/a?token=&password&key=REDACTED&&"},
	{"/a?=secret&token", "/a?=secret&token"},
	/* '=' inside a value; '?' inside the query */
	{"/a?token==abc=&x==y", "/a?token=REDACTED&x==y"},
	{"/a?next=/b?c=d&token=x", "/a?next=/b?c=d&token=REDACTED"},
	/* values and bare params that are credentials, whatever the key */
	{"/a?q=" OPENAI "&n=1", "/a?q=REDACTED&n=1"},
	{"/a?h=Bearer%20abcdefghijk&x=Bearer%20abc", "/a?h=REDACTED&x=Bearer%20abc"},
	{"/a?ref=" GHP "&u=" AWS, "/a?ref=REDACTED&u=REDACTED"},
	{"/x?" JWT, "/x?REDACTED"},
	{"/x?a=1&" SLACK "&b=2", "/x?a=1&REDACTED&b=2"},
	{"http://h?token=1", "http://h?token=REDACTED"},
	/* path segments that are credentials */
	{"/v1/keys/" PROJ "/usage", "/v1/keys/REDACTED/usage"},
	{"/" AWS "/", "/REDACTED/"},
	{"https://hooks.example.com/" SLACK, "https://hooks.example.com/REDACTED"},
	{"/t/" JWT "?x=1", "/t/REDACTED?x=1"},
	{"/t/" GOOG "/" GHPAT "//", "/t/REDACTED/REDACTED//"},
	{"/sk-/skeleton/" SK19, "/sk-/skeleton/" SK19},
	/* fragment: kept, except credential values (OAuth implicit flow) */
	{"https://app.example.com/cb#access_token=abc&token_type=bearer&expires_in=3600",
	 "https://app.example.com/cb#access_token=REDACTED&token_type=bearer&expires_in=3600"},
	{"https://app.example.com/cb?state=xyz#id_token=" JWT "&state=1",
	 "https://app.example.com/cb?state=xyz#id_token=REDACTED&state=1"},
	{"/doc#section-2", "/doc#section-2"},
	{"/app#/users/42?tab=x&sig=1", "/app#/users/42?tab=x&sig=REDACTED"},
	{"/a?b=1#c?d=2", "/a?b=1#c?d=2"},
	{"/a#" JWT, "/a#REDACTED"},
	/* everything at once */
	{"https://admin:hunter2@api.example.com:8443/v1/" OPENAI "/x?model=gpt-4o&api_key="
	 "abc&q=%E2%9C%93#token=t",
	 "https://REDACTED:REDACTED@api.example.com:8443/v1/REDACTED/x?model=gpt-4o&api_key="
	 "REDACTED&q=%E2%9C%93#token=REDACTED"},
};

static const struct xcase queries[] = {
	{"", ""},
	{"color=blue&sig=abc", "color=blue&sig=REDACTED"},
	{"a=1&&b&=&c=", "a=1&&b&=&c="},
	{"q=hello%20world&api_key=xyz", "q=hello%20world&api_key=REDACTED"},
	{"Token=abc&TOKEN=&token", "Token=REDACTED&TOKEN=&token"},
	{"v=" AWS, "v=REDACTED"},
	{"v=" AWS "X", "v=" AWS "X"},
	{JWT, "REDACTED"},
	{"&", "&"},
	{"?a=1", "?a=1"},
	{"x-amz-signature=1&X-Amz-Signature=1", "x-amz-signature=1&X-Amz-Signature=REDACTED"},
};

typedef size_t (*redact_fn)(const char *in, size_t len, char *out, size_t outsz);

static void check_full(redact_fn fn, const struct xcase *c)
{
	size_t len = strlen(c->in);
	const char *in = fenced(c->in, len);
	char out[1024];

	memset(out, 'Z', sizeof(out));
	size_t n = fn(in, len, out, sizeof(out));

	cr_expect_str_eq(out, c->out, "input \"%s\"", c->in);
	cr_expect_eq(n, strlen(c->out), "length for \"%s\"", c->in);
}

/* Every output size from 0 to past the full length: the result is the
 * full output's prefix, NUL-terminated, and the canary byte right after
 * @outsz is never touched. */
static void check_truncation(redact_fn fn, const struct xcase *c)
{
	size_t len = strlen(c->in), full = strlen(c->out);
	const char *in = fenced(c->in, len);
	char buf[1024];

	for (size_t outsz = 0; outsz <= full + 2; outsz++) {
		size_t want = outsz ? (outsz - 1 < full ? outsz - 1 : full) : 0;

		memset(buf, 'Z', sizeof(buf));
		size_t n = fn(in, len, buf, outsz);

		cr_expect_eq(n, want, "outsz %zu for \"%s\"", outsz, c->in);
		cr_expect_eq(buf[outsz], 'Z', "canary at %zu for \"%s\"", outsz, c->in);
		if (outsz == 0)
			continue;
		cr_expect_eq(buf[want], '\0', "NUL at %zu for \"%s\"", want, c->in);
		cr_expect(memcmp(buf, c->out, want) == 0, "prefix %zu for \"%s\"", want, c->in);
	}
}

Test(redact, url_table)
{
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++)
		check_full(osh_redact_url, &urls[i]);
}

Test(redact, url_truncation)
{
	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++)
		check_truncation(osh_redact_url, &urls[i]);
}

Test(redact, query_table)
{
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
		check_full(osh_redact_query, &queries[i]);
}

Test(redact, query_truncation)
{
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
		check_truncation(osh_redact_query, &queries[i]);
}

Test(redact, truncation_never_shows_a_secret_prefix)
{
	/* Cutting the output inside a redacted value shows part of
	 * "REDACTED", never part of the secret. */
	const char *url = "/a?token=supersecretvalue";
	char out[16];

	osh_redact_url(url, strlen(url), out, sizeof(out));
	cr_expect_str_eq(out, "/a?token=REDACT");
}

Test(redact, zero_outsz_and_null)
{
	char c = 'Z';

	cr_expect_eq(osh_redact_url("http://u:p@h/", 13, &c, 0), 0);
	cr_expect_eq(osh_redact_query("a=b", 3, &c, 0), 0);
	cr_expect_eq(c, 'Z');
	cr_expect_eq(osh_redact_url(NULL, 0, NULL, 0), 0);
	cr_expect_eq(osh_redact_url(NULL, 5, &c, 1), 0);
	cr_expect_eq(c, '\0');
	c = 'Z';
	cr_expect_eq(osh_redact_query(NULL, 0, &c, 1), 0);
	cr_expect_eq(c, '\0');
}

Test(redact, len_bounds_input)
{
	/* Bytes past @len are not part of the URL, even without a NUL. */
	const char *url = "/a?x=1&token=abc";
	char out[64];

	cr_expect_eq(osh_redact_url(url, 6, out, sizeof(out)), 6);
	cr_expect_str_eq(out, "/a?x=1");
	cr_expect_eq(osh_redact_query("token=abc", 5, out, sizeof(out)), 5);
	cr_expect_str_eq(out, "token");
}

Test(redact, embedded_nul_is_data)
{
	/* A NUL inside the given length is copied like any byte. */
	const char url[] = "/a\0b?x=1";
	char out[64];

	cr_expect_eq(osh_redact_url(url, sizeof(url) - 1, out, sizeof(out)), sizeof(url) - 1);
	cr_expect(memcmp(out, url, sizeof(url)) == 0);
}
