/* jansson and zlib reached through the lazily loaded tables. The test
 * links zlib itself only to make compressed input. */
#include <criterion/criterion.h>
#include <string.h>
#include <zlib.h>

#include "lazylib.h"

Test(lazylib, jansson_parses_and_frees)
{
	const struct osh_jansson *j = osh_jansson();
	const char doc[] = "{\"model\":\"gpt-4o\",\"usage\":{\"prompt_tokens\":12},\"n\":[1,2,3]}";
	json_error_t err;
	json_t *root;

	cr_assert_not_null(j);
	cr_assert_eq(osh_jansson(), j, "the second call returns the same table");
	root = j->loadb(doc, sizeof(doc) - 1, 0, &err);
	cr_assert_not_null(root, "%s", err.text);
	cr_assert_str_eq(j->string_value(j->object_get(root, "model")), "gpt-4o");
	cr_assert_eq(j->integer_value(j->object_get(j->object_get(root, "usage"), "prompt_tokens")),
		     12);
	cr_assert_eq(j->array_size(j->object_get(root, "n")), 3);
	cr_assert_null(j->loadb("{", 1, 0, &err), "invalid JSON is refused");
	osh_json_decref(j, root);
}

/* Both gzip (header auto-detected) and raw deflate, as Content-Encoding
 * gzip and deflate arrive. */
static void roundtrip(int window_bits, int inflate_bits)
{
	const struct osh_zlib *z = osh_zlib();
	const char text[] = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
	unsigned char packed[256], out[256];
	z_stream c = { 0 }, d = { 0 };

	cr_assert_not_null(z);
	cr_assert_eq(deflateInit2(&c, 6, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	c.next_in = (unsigned char *)text;
	c.avail_in = sizeof(text) - 1;
	c.next_out = packed;
	c.avail_out = sizeof(packed);
	cr_assert_eq(deflate(&c, Z_FINISH), Z_STREAM_END);
	deflateEnd(&c);

	cr_assert_eq(osh_inflate_init(z, &d, inflate_bits), Z_OK);
	d.next_in = packed;
	d.avail_in = (unsigned)(sizeof(packed) - c.avail_out);
	d.next_out = out;
	d.avail_out = sizeof(out);
	cr_assert_eq(z->inflate(&d, Z_NO_FLUSH), Z_STREAM_END);
	cr_assert_eq(sizeof(out) - d.avail_out, sizeof(text) - 1);
	cr_assert_eq(memcmp(out, text, sizeof(text) - 1), 0);
	z->inflateEnd(&d);
}

Test(lazylib, zlib_inflates_gzip)
{
	roundtrip(15 + 16, 15 + 32);
}

Test(lazylib, zlib_inflates_raw_deflate)
{
	roundtrip(-15, -15);
}
