/* Free-text redaction: every pattern with inputs that must be redacted and
 * look-alikes that must not. */
#include <criterion/criterion.h>
#include <string.h>

#include "content_redact.h"

static const char *red(const char *in)
{
	static char out[1024];

	osh_content_redact(in, strlen(in), out, sizeof(out));
	return out;
}

struct row {
	const char *in;
	const char *want;
};

static void check(const struct row *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		cr_expect_str_eq(red(t[i].in), t[i].want, "input: %s", t[i].in);
}

Test(content_redact, api_keys)
{
	static const struct row t[] = {
		{ "key sk-abcdefghijklmnopqrstuvwx ok", "key [REDACTED:api_key] ok" },
		{ "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx_12-34", "[REDACTED:api_key]" },
		{ "use sk-ant-api03-abcdefghijklmnopqrstuv.", "use [REDACTED:api_key]." },
		{ "(sk-0123456789abcdefghij)", "([REDACTED:api_key])" },
		/* look-alikes */
		{ "pip install scikit-learn sk-learn", "pip install scikit-learn sk-learn" },
		{ "a task-list and risk-free-and-very-long-words", "a task-list and risk-free-and-very-long-words" },
		{ "sk-short", "sk-short" },
		{ "disk-abcdefghijklmnopqrstuvwxyz", "disk-abcdefghijklmnopqrstuvwxyz" },
	};
	check(t, sizeof(t) / sizeof(t[0]));
}

Test(content_redact, aws_keys)
{
	static const struct row t[] = {
		{ "id AKIAIOSFODNN7EXAMPLE here", "id [REDACTED:aws_key] here" },
		{ "ASIAY34FZKBOKMUTVV7A,", "[REDACTED:aws_key]," },
		/* look-alikes */
		{ "AKIAIOSFODNN7EXAMPLEX", "AKIAIOSFODNN7EXAMPLEX" },	/* 17 after AKIA */
		{ "AKIAshort", "AKIAshort" },
		{ "AKIAiosfodnn7example", "AKIAiosfodnn7example" },	/* lower case */
		{ "XAKIAIOSFODNN7EXAMPLE", "XAKIAIOSFODNN7EXAMPLE" },
	};
	check(t, sizeof(t) / sizeof(t[0]));
}

Test(content_redact, jwts)
{
	static const struct row t[] = {
		{ "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl end",
		  "token [REDACTED:jwt] end" },
		/* look-alikes */
		{ "eyJhbGciOiJIUzI1NiJ9 alone", "eyJhbGciOiJIUzI1NiJ9 alone" },
		{ "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0" },
		{ "see eyJ.a.b", "see eyJ.a.b" },
		{ "file.name.ext", "file.name.ext" },
	};
	check(t, sizeof(t) / sizeof(t[0]));
}

Test(content_redact, bearer_tokens)
{
	static const struct row t[] = {
		{ "Authorization: Bearer abc123def456ghi", "Authorization: Bearer [REDACTED:bearer]" },
		{ "bearer\tx.y_z-0123", "bearer\t[REDACTED:bearer]" },
		{ "BEARER tok/en+with=", "BEARER [REDACTED:bearer]" },
		/* look-alikes */
		{ "the bearer arrangements changed", "the bearer arrangements changed" },
		{ "Bearer short1", "Bearer short1" },
		{ "standard-bearer 12345678901", "standard-bearer 12345678901" },
		{ "Bearers abc123def456", "Bearers abc123def456" },
	};
	check(t, sizeof(t) / sizeof(t[0]));
}

Test(content_redact, emails)
{
	static const struct row t[] = {
		{ "mail jane.doe+x@example.co.uk now", "mail [REDACTED:email] now" },
		{ "Write to ops@corp.example.", "Write to [REDACTED:email]." },
		{ "<a_b%c@sub-domain.example.org>", "<[REDACTED:email]>" },
		/* look-alikes */
		{ "user@localhost", "user@localhost" },
		{ "ping @mention and a@b.c", "ping @mention and a@b.c" },
		{ "git@github.com:org/repo", "[REDACTED:email]:org/repo" },
		{ "x@1.2", "x@1.2" },
		{ "a@b..com", "a@b..com" },
		{ ".dot@example.com", ".dot@example.com" },
	};
	check(t, sizeof(t) / sizeof(t[0]));
}

Test(content_redact, credit_cards)
{
	static const struct row t[] = {
		{ "card 4111 1111 1111 1111 exp", "card [REDACTED:credit_card] exp" },
		{ "4111-1111-1111-1111", "[REDACTED:credit_card]" },
		{ "amex 378282246310005.", "amex [REDACTED:credit_card]." },
		{ "5555555555554444", "[REDACTED:credit_card]" },
		/* look-alikes */
		{ "card 4111 1111 1111 1112", "card 4111 1111 1111 1112" },	/* Luhn fails */
		{ "order 12345678901234567890", "order 12345678901234567890" },	/* 20 digits */
		{ "call 555-0100 or 123456789012", "call 555-0100 or 123456789012" },
		{ "id 4111111111111111x", "id 4111111111111111x" },
		{ "4111  1111 1111 1111", "4111  1111 1111 1111" },	/* double space */
		{ "x4111111111111111", "x4111111111111111" },
		{ "v1.4111111111111111", "v1.[REDACTED:credit_card]" },	/* its own word */
	};
	check(t, sizeof(t) / sizeof(t[0]));
}

Test(content_redact, luhn)
{
	cr_assert(osh_luhn_valid("79927398713", 11));
	cr_assert_not(osh_luhn_valid("79927398710", 11));
	cr_assert(osh_luhn_valid("4111 1111 1111 1111", 19));
	cr_assert_not(osh_luhn_valid("0", 1));
	cr_assert_not(osh_luhn_valid("", 0));
}

Test(content_redact, several_in_one_text_and_plain_text_unchanged)
{
	cr_assert_str_eq(red("sk-abcdefghijklmnopqrstuvwx and bob@example.com"),
			 "[REDACTED:api_key] and [REDACTED:email]");
	cr_assert_str_eq(red("Nothing secret here: 42 apples, 3.14, café."),
			 "Nothing secret here: 42 apples, 3.14, café.");
}

/* A small output never holds a secret's bytes: the marker is cut instead. */
Test(content_redact, bounded_output)
{
	char out[16];
	size_t n = osh_content_redact("x sk-abcdefghijklmnopqrstuvwx", 29, out, sizeof(out));

	cr_assert_eq(n, 15);
	cr_assert_str_eq(out, "x [REDACTED:api");
	cr_assert_eq(osh_content_redact("abc", 3, out, 1), 0);
	cr_assert_str_eq(out, "");
	cr_assert_eq(osh_content_redact("abc", 3, out, 0), 0);
}
