/* LLM body decoding: framing, compression, limits, event splitting, fed in
 * every kind of piece. Compressed inputs are made with zlib here (the test
 * links it; the shim loads it lazily). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "llm_body.h"

#define MAX_EVENTS 64

struct seen {
	int n;
	char name[MAX_EVENTS][64];
	char data[MAX_EVENTS][512];
	uint64_t at[MAX_EVENTS];
};

static void on_event(void *arg, const char *event, size_t event_len, const char *data,
		     size_t data_len, uint64_t now_ns)
{
	struct seen *s = arg;

	cr_assert_lt(s->n, MAX_EVENTS);
	snprintf(s->name[s->n], sizeof(s->name[0]), "%.*s", (int)event_len, event);
	snprintf(s->data[s->n], sizeof(s->data[0]), "%.*s", (int)data_len, data);
	s->at[s->n] = now_ns;
	s->n++;
}

/* Feed @n bytes in pieces of @piece (0: all at once); returns done. */
static bool feed(struct osh_llm_body *b, const char *p, size_t n, size_t piece, uint64_t t0)
{
	bool done = false;

	if (!piece)
		piece = n ? n : 1;
	for (size_t off = 0; off < n; off += piece)
		done = osh_llm_body_feed(b, p + off, n - off < piece ? n - off : piece,
					 t0 + off);
	return done;
}

static size_t compress_as(const char *in, size_t n, unsigned char *out, size_t cap, int bits)
{
	z_stream z;

	memset(&z, 0, sizeof(z));
	cr_assert_eq(deflateInit2(&z, 6, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	cr_assert_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
	deflateEnd(&z);
	return cap - z.avail_out;
}

/* @n bytes of @z as a chunked body, chunk sizes taken in turn from @sizes,
 * into @wire; returns its length. */
static size_t chunked_wire(const unsigned char *z, size_t n, const size_t *sizes, size_t nsizes,
			   char *wire)
{
	size_t w = 0;

	for (size_t off = 0, i = 0; off < n; i++) {
		size_t size = sizes[i % nsizes];
		size_t k = n - off < size ? n - off : size;

		w += (size_t)sprintf(wire + w, "%zx\r\n", k);
		memcpy(wire + w, z + off, k);
		w += k;
		memcpy(wire + w, "\r\n", 2);
		w += 2;
		off += k;
	}
	memcpy(wire + w, "0\r\n\r\n", 5);
	return w + 5;
}

static const char json[] = "{\"id\":\"chatcmpl-1\",\"choices\":[{\"message\":{\"content\":"
			   "\"Hello, world\"}}],\"usage\":{\"prompt_tokens\":3}}";

static void expect_kept(struct osh_llm_body *b, const char *want)
{
	size_t n;
	const char *p = osh_llm_body_data(b, &n);

	cr_assert_not_null(p);
	cr_assert_eq(n, strlen(want), "kept %zu bytes, want %zu", n, strlen(want));
	cr_assert_eq(memcmp(p, want, n), 0);
	cr_assert_eq(p[n], '\0');
}

Test(llm_body, length_framing_any_split)
{
	size_t pieces[] = { 0, 1, 2, 7, 64 };

	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		struct osh_llm_body b;
		char wire[sizeof(json) + 16];

		memcpy(wire, json, sizeof(json) - 1);
		memcpy(wire + sizeof(json) - 1, "HTTP/1.1 200", 12);	/* the next message */
		osh_llm_body_init(&b, OSH_LLM_FRAMING_LENGTH, sizeof(json) - 1, NULL, 0,
				  OSH_LLM_STREAM_NONE, 1 << 20, NULL);
		cr_assert(feed(&b, wire, sizeof(json) - 1 + 12, pieces[i], 100));
		expect_kept(&b, json);
		cr_assert_eq(b.first_ns, 100);
		cr_assert_not(b.truncated || b.malformed || b.unparsed);
		osh_llm_body_free(&b);
	}
}

Test(llm_body, chunked_with_extensions_and_trailers)
{
	const char wire[] = "5;ext=1\r\n{\"a\":\r\n3\r\n12}\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
	size_t pieces[] = { 0, 1, 3 };

	for (size_t i = 0; i < 3; i++) {
		struct osh_llm_body b;

		osh_llm_body_init(&b, OSH_LLM_FRAMING_CHUNKED, 0, "identity", 8,
				  OSH_LLM_STREAM_NONE, 1 << 20, NULL);
		cr_assert(feed(&b, wire, sizeof(wire) - 1, pieces[i], 1));
		expect_kept(&b, "{\"a\":12}");
		cr_assert_eq(b.wire_bytes, 8);
		osh_llm_body_free(&b);
	}
}

Test(llm_body, close_delimited_never_done)
{
	struct osh_llm_body b;

	osh_llm_body_init(&b, OSH_LLM_FRAMING_CLOSE, 0, NULL, 0, OSH_LLM_STREAM_NONE, 1 << 20,
			  NULL);
	cr_assert_not(feed(&b, json, sizeof(json) - 1, 5, 1));
	expect_kept(&b, json);
	osh_llm_body_free(&b);
}

Test(llm_body, malformed_chunked_is_flagged)
{
	struct osh_llm_body b;

	osh_llm_body_init(&b, OSH_LLM_FRAMING_CHUNKED, 0, NULL, 0, OSH_LLM_STREAM_NONE, 1 << 20,
			  NULL);
	cr_assert_not(feed(&b, "zz\r\nabc", 7, 1, 1));
	cr_assert(b.malformed);
	osh_llm_body_free(&b);
}

static void compressed_case(int bits, const char *coding, size_t piece, bool chunked)
{
	unsigned char z[1024];
	char wire[4096];
	size_t zn = compress_as(json, sizeof(json) - 1, z, sizeof(z), bits), wn = 0;
	struct osh_llm_body b;

	if (chunked) {
		/* Chunks of 5: chunk boundaries fall inside the compressed data. */
		wn = chunked_wire(z, zn, (const size_t[]){ 5 }, 1, wire);
	} else {
		memcpy(wire, z, zn);
		wn = zn;
	}
	osh_llm_body_init(&b, chunked ? OSH_LLM_FRAMING_CHUNKED : OSH_LLM_FRAMING_LENGTH, zn,
			  coding, strlen(coding), OSH_LLM_STREAM_NONE, 1 << 20, NULL);
	cr_assert(feed(&b, wire, wn, piece, 1), "%s piece %zu not done", coding, piece);
	cr_assert_not(b.malformed, "%s piece %zu malformed", coding, piece);
	expect_kept(&b, json);
	cr_assert_eq(b.wire_bytes, zn);
	cr_assert_eq(b.decoded, sizeof(json) - 1);
	osh_llm_body_free(&b);
}

Test(llm_body, gzip_and_deflate_in_every_piece_size)
{
	size_t pieces[] = { 0, 1, 2, 3, 17 };

	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		for (int ch = 0; ch < 2; ch++) {
			compressed_case(15 + 16, "gzip", pieces[i], ch);
			compressed_case(15 + 16, " x-gzip ", pieces[i], ch);
			compressed_case(15, "deflate", pieces[i], ch);	/* zlib-wrapped */
			compressed_case(-15, "DEFLATE", pieces[i], ch);	/* raw, as some send it */
		}
	}
}

Test(llm_body, unsupported_codings_are_counted_only)
{
	const char *codings[] = { "br", "zstd", "gzip, br", "compress" };

	for (size_t i = 0; i < 4; i++) {
		struct osh_llm_body b;
		size_t n;

		osh_llm_body_init(&b, OSH_LLM_FRAMING_LENGTH, 10, codings[i], strlen(codings[i]),
				  OSH_LLM_STREAM_NONE, 1 << 20, NULL);
		cr_assert(feed(&b, "0123456789", 10, 3, 1));
		cr_assert(b.unparsed, "%s", codings[i]);
		cr_assert_null(osh_llm_body_data(&b, &n));
		cr_assert_eq(n, 0);
		cr_assert_eq(b.wire_bytes, 10);
		osh_llm_body_free(&b);
	}
}

Test(llm_body, corrupt_gzip_is_flagged_not_fatal)
{
	struct osh_llm_body b;
	const char junk[] = "\x1f\x8b\x08\x00garbage-not-deflate-data-at-all";

	osh_llm_body_init(&b, OSH_LLM_FRAMING_LENGTH, sizeof(junk) - 1, "gzip", 4,
			  OSH_LLM_STREAM_NONE, 1 << 20, NULL);
	cr_assert(feed(&b, junk, sizeof(junk) - 1, 4, 1));
	cr_assert(b.malformed);
	osh_llm_body_free(&b);
}

Test(llm_body, limit_keeps_the_first_bytes_and_counts_all)
{
	struct osh_llm_body b;
	size_t n;
	const char *p;

	osh_llm_body_init(&b, OSH_LLM_FRAMING_LENGTH, sizeof(json) - 1, NULL, 0,
			  OSH_LLM_STREAM_NONE, 10, NULL);
	cr_assert(feed(&b, json, sizeof(json) - 1, 3, 1));
	cr_assert(b.truncated);
	p = osh_llm_body_data(&b, &n);
	cr_assert_eq(n, 10);
	cr_assert_eq(memcmp(p, json, 10), 0);
	cr_assert_eq(b.decoded, sizeof(json) - 1);
	cr_assert_leq(b.cap, 11, "held %zu bytes for a 10-byte limit", b.cap);
	osh_llm_body_free(&b);
}

static const char sse[] =
	": keep-alive comment\r\n"
	"event: message_start\r\ndata: {\"a\":1}\r\n\r\n"
	"data: line one\ndata: line two\n\n"
	"event: ping\rdata: {}\r\r"
	"id: 7\nretry: 100\ndata:nospace\n\n"
	"data: [DONE]\n\n"
	"data: tail without blank line";

static void check_sse(const struct seen *s)
{
	cr_assert_eq(s->n, 6, "%d events", s->n);
	cr_assert_str_eq(s->name[0], "message_start");
	cr_assert_str_eq(s->data[0], "{\"a\":1}");
	cr_assert_str_eq(s->name[1], "");
	cr_assert_str_eq(s->data[1], "line one\nline two");
	cr_assert_str_eq(s->name[2], "ping");
	cr_assert_str_eq(s->data[2], "{}");
	cr_assert_str_eq(s->data[3], "nospace");
	cr_assert_str_eq(s->data[4], "[DONE]");
	cr_assert_str_eq(s->data[5], "tail without blank line");
}

Test(llm_body, sse_events_any_split_and_line_end)
{
	size_t pieces[] = { 0, 1, 2, 5, 13 };

	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		struct seen s = { 0 };
		struct osh_llm_event_sink sink = { on_event, &s };
		struct osh_llm_body b;

		osh_llm_body_init(&b, OSH_LLM_FRAMING_CLOSE, 0, NULL, 0, OSH_LLM_STREAM_SSE,
				  1 << 20, &sink);
		feed(&b, sse, sizeof(sse) - 1, pieces[i], 1000);
		osh_llm_body_end(&b);
		check_sse(&s);
		/* Events carry the time of the piece that completed them. */
		cr_assert_geq(s.at[1], 1000);
		cr_assert_eq(b.len, 0, "a stream keeps no body");
		osh_llm_body_free(&b);
	}
}

Test(llm_body, sse_through_gzip_and_chunks)
{
	unsigned char z[2048];
	size_t zn = compress_as(sse, sizeof(sse) - 1, z, sizeof(z), 15 + 16);
	char wire[4096];
	size_t wn;
	struct seen s = { 0 };
	struct osh_llm_event_sink sink = { on_event, &s };
	struct osh_llm_body b;

	wn = chunked_wire(z, zn, (const size_t[]){ 9 }, 1, wire);
	osh_llm_body_init(&b, OSH_LLM_FRAMING_CHUNKED, 0, "gzip", 4, OSH_LLM_STREAM_SSE, 1 << 20,
			  &sink);
	cr_assert(feed(&b, wire, wn, 1, 1));
	check_sse(&s);	/* the body's end delivers the tail event */
	osh_llm_body_free(&b);
}

Test(llm_body, ndjson_lines)
{
	const char in[] = "{\"a\":1}\n\n{\"b\":2}\r\n  \n{\"c\":3}";
	struct seen s = { 0 };
	struct osh_llm_event_sink sink = { on_event, &s };
	struct osh_llm_body b;

	osh_llm_body_init(&b, OSH_LLM_FRAMING_LENGTH, sizeof(in) - 1, NULL, 0,
			  OSH_LLM_STREAM_NDJSON, 1 << 20, &sink);
	cr_assert(feed(&b, in, sizeof(in) - 1, 1, 1));
	cr_assert_eq(s.n, 3);
	cr_assert_str_eq(s.data[0], "{\"a\":1}");
	cr_assert_str_eq(s.data[1], "{\"b\":2}");
	cr_assert_str_eq(s.data[2], "{\"c\":3}");
	osh_llm_body_free(&b);
}

Test(llm_body, oversized_event_dropped_memory_bounded)
{
	size_t big = OSH_LLM_EVENT_MAX + 100;
	char *line = malloc(big);
	struct seen s = { 0 };
	struct osh_llm_event_sink sink = { on_event, &s };
	struct osh_llm_body b;

	memset(line, 'x', big);
	memcpy(line, "data: ", 6);
	osh_llm_body_init(&b, OSH_LLM_FRAMING_CLOSE, 0, NULL, 0, OSH_LLM_STREAM_SSE, 1 << 20,
			  &sink);
	for (int round = 0; round < 3; round++) {
		feed(&b, line, big, 4096, 1);
		feed(&b, "\n\ndata: small\n\n", 15, 0, 2);
	}
	cr_assert(b.malformed);
	cr_assert_eq(s.n, 3, "the small events still come: %d", s.n);
	cr_assert_str_eq(s.data[2], "small");
	cr_assert_leq(b.line_len, OSH_LLM_EVENT_MAX);
	osh_llm_body_free(&b);
	free(line);
}

/* A sink that asks for skimming after the first event, as the tracker does
 * once output came. */
static void on_event_then_skim(void *arg, const char *event, size_t event_len, const char *data,
			       size_t data_len, uint64_t now_ns)
{
	struct { struct seen s; struct osh_llm_body *b; } *ctx = arg;

	on_event(&ctx->s, event, event_len, data, data_len, now_ns);
	osh_llm_body_skim(ctx->b);
}

/* A skimming case run with both searches: AVX2 (where the CPU has it)
 * and the baseline. */
static void with_both_searches(void (*test_case)(void))
{
	for (int avx2 = 0; avx2 < 2; avx2++) {
		osh_llm_body_search_avx2(avx2);
		test_case();
	}
	osh_llm_body_search_avx2(true);
}

/* Skimmed: after the first event only a trigger's event (a finish reason
 * that is not null, a tool call) and the last ones (what fits 2 KiB) are
 * delivered, whatever the piece size, until close or chunked (the chunks'
 * payload gathered by one walker call for many); the kept bytes stay
 * bounded. */
static void sse_skimmed_after_the_first_event_case(void)
{
	static const size_t pieces[] = { 1, 3, 64, 1000, 0 };
	char *wire = malloc(64 * 1024);
	char *chunked_body = malloc(128 * 1024);
	size_t w = 0, cw;

	for (int i = 0; i < 400; i++) {
		if (i == 120)
			w += (size_t)sprintf(wire + w, "data: {\"choices\":[{\"index\":1,\"delta\":{},"
					     "\"finish_reason\":\"stop\"}]}\n\n");
		else if (i == 250)
			w += (size_t)sprintf(wire + w, "data: {\"choices\":[{\"index\":0,\"delta\":"
					     "{\"tool_calls\":[{\"id\":\"call_1\"}]}}]}\r\n\r\n");
		else
			w += (size_t)sprintf(wire + w, "data: {\"choices\":[{\"index\":0,\"delta\":"
					     "{\"content\":\"w%d\"},\"finish_reason\":null}]}\n\n", i);
	}
	/* A last event longer than what the end keeps (a Responses API
	 * stream's response.completed repeats the whole output). */
	w += (size_t)sprintf(wire + w, "data: {\"type\":\"response.completed\",\"text\":\"");
	memset(wire + w, 'y', 3000);
	w += 3000;
	w += (size_t)sprintf(wire + w, "\"}\n\n");
	w += (size_t)sprintf(wire + w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n"
			     "data: [DONE]\n\n");
	/* Chunk sizes small and large: boundaries fall anywhere in the
	 * events. */
	cw = chunked_wire((const unsigned char *)wire, w,
			  (const size_t[]){ 7, 61, 193, 1, 400, 2500, 33 }, 7, chunked_body);
	for (size_t pi = 0; pi < 2 * (sizeof(pieces) / sizeof(pieces[0])); pi++) {
		struct { struct seen s; struct osh_llm_body *b; } ctx;
		struct osh_llm_body b;
		struct osh_llm_event_sink sink = { on_event_then_skim, &ctx };
		int finish = -1, tool = -1;
		bool chunked = pi >= sizeof(pieces) / sizeof(pieces[0]);

		memset(&ctx, 0, sizeof(ctx));
		ctx.b = &b;
		osh_llm_body_init(&b, chunked ? OSH_LLM_FRAMING_CHUNKED : OSH_LLM_FRAMING_CLOSE, 0,
				  NULL, 0, OSH_LLM_STREAM_SSE, 1 << 20, &sink);
		feed(&b, chunked ? chunked_body : wire, chunked ? cw : w,
		     pieces[pi % (sizeof(pieces) / sizeof(pieces[0]))], 0);
		cr_assert_leq(b.tail_len, 16384, "kept bytes bounded");
		cr_assert(!chunked || (b.done && !b.malformed), "chunked: the body ends cleanly");
		cr_assert_eq(b.decoded, w, "every payload byte counted");
		osh_llm_body_end(&b);
		for (int i = 0; i < ctx.s.n; i++) {
			if (strstr(ctx.s.data[i], "\"finish_reason\":\"stop\""))
				finish = i;
			if (strstr(ctx.s.data[i], "call_1"))
				tool = i;
		}
		cr_assert_str_eq(ctx.s.data[0], "{\"choices\":[{\"index\":0,\"delta\":{\"content\":"
				 "\"w0\"},\"finish_reason\":null}]}", "piece %zu", pieces[pi % (sizeof(pieces) / sizeof(pieces[0]))]);
		cr_assert_geq(finish, 1, "piece %zu: finish event not delivered", pieces[pi % (sizeof(pieces) / sizeof(pieces[0]))]);
		cr_assert_gt(tool, finish, "piece %zu: tool call event not delivered", pieces[pi % (sizeof(pieces) / sizeof(pieces[0]))]);
		cr_assert_str_eq(ctx.s.data[ctx.s.n - 1], "[DONE]", "piece %zu", pieces[pi % (sizeof(pieces) / sizeof(pieces[0]))]);
		cr_assert_str_eq(ctx.s.data[ctx.s.n - 2],
				 "{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}");
		cr_assert(strncmp(ctx.s.data[ctx.s.n - 3], "{\"type\":\"response.completed\"", 28) == 0,
			  "piece %zu: the long last event was not delivered", pieces[pi % (sizeof(pieces) / sizeof(pieces[0]))]);
		/* Skimmed: a few dozen of the 402 events at most. */
		cr_assert_lt(ctx.s.n, 45, "piece %zu: %d events delivered", pieces[pi % (sizeof(pieces) / sizeof(pieces[0]))], ctx.s.n);
		osh_llm_body_free(&b);
	}
	free(chunked_body);
	free(wire);
}

Test(llm_body, sse_skimmed_after_the_first_event)
{
	with_both_searches(sse_skimmed_after_the_first_event_case);
}

/* Skimmed tool calls: the delta that starts a call (an "id", a "name") is
 * delivered, the many that only add argument text are not, with LF or CRLF
 * line ends and in any piece size. */
static void sse_skim_delivers_tool_call_starts_only_case(void)
{
	static const size_t pieces[] = { 1, 5, 64, 700, 0 };
	char *wire = malloc(64 * 1024);
	size_t w = 0;

	w += (size_t)sprintf(wire + w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":"
			     "{\"content\":\"Let me look.\"}}]}\n\n");
	for (int call = 0; call < 2; call++) {
		const char *eol = call ? "\r\n\r\n" : "\n\n";

		w += (size_t)sprintf(wire + w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":"
				     "{\"tool_calls\":[{\"index\":%d,\"id\":\"call_%d\",\"type\":"
				     "\"function\",\"function\":{\"name\":\"f%d\",\"arguments\":\"\"}}]}}]}%s",
				     call, call, call, eol);
		for (int k = 0; k < 150; k++)
			w += (size_t)sprintf(wire + w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,"
					     "\"delta\":{\"tool_calls\":[{\"index\":%d,\"function\":"
					     "{\"arguments\":\"a%d \"}}]}}]}%s", call, k, eol);
	}
	for (int k = 0; k < 100; k++)
		w += (size_t)sprintf(wire + w, "data: {\"id\":\"c\",\"choices\":[{\"index\":0,"
				     "\"delta\":{\"content\":\"t%d\"},\"finish_reason\":null}]}\n\n", k);
	w += (size_t)sprintf(wire + w, "data: [DONE]\n\n");
	for (size_t pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]); pi++) {
		struct { struct seen s; struct osh_llm_body *b; } ctx;
		struct osh_llm_body b;
		struct osh_llm_event_sink sink = { on_event_then_skim, &ctx };
		int starts = 0, pieces_seen = 0;

		memset(&ctx, 0, sizeof(ctx));
		ctx.b = &b;
		osh_llm_body_init(&b, OSH_LLM_FRAMING_CLOSE, 0, NULL, 0, OSH_LLM_STREAM_SSE, 1 << 20,
				  &sink);
		feed(&b, wire, w, pieces[pi], 0);
		osh_llm_body_end(&b);
		for (int i = 0; i < ctx.s.n; i++) {
			if (strstr(ctx.s.data[i], "\"name\":\"f"))
				starts++;
			else if (strstr(ctx.s.data[i], "arguments"))
				pieces_seen++;
		}
		cr_assert_eq(starts, 2, "piece %zu: %d call starts delivered", pieces[pi], starts);
		/* The first event and the last 2 KiB aside, argument pieces are skimmed. */
		cr_assert_lt(pieces_seen, 10, "piece %zu: %d argument pieces delivered", pieces[pi],
			     pieces_seen);
		cr_assert_lt(ctx.s.n, 40, "piece %zu: %d events", pieces[pi], ctx.s.n);
		osh_llm_body_free(&b);
	}
	free(wire);
}

Test(llm_body, sse_skim_delivers_tool_call_starts_only)
{
	with_both_searches(sse_skim_delivers_tool_call_starts_only_case);
}

/* The engine's walker walked by the tracker (osh_llm_body_walk): the
 * framing is read once, and the caller learns from the return where the
 * body ends, as its own walker would have told it. A skimmed chunked
 * stream and a gzip'd chunked JSON body, each followed on the connection
 * by the next response's bytes, in pieces of every kind: the same bytes
 * used, the same payload counted and the walker done where a walker fed
 * alone stops; everything decoded; the next response untouched. */
static void walk_uses_the_callers_walker_case(void)
{
	static const size_t pieces[] = { 1, 2, 7, 64, 1000, 0 };
	static const char next[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	char *events = malloc(64 * 1024), *wire = malloc(160 * 1024);
	unsigned char z[4096];
	size_t s = 0, zn;

	for (int i = 0; i < 300; i++)
		s += (size_t)sprintf(events + s, "data: {\"choices\":[{\"index\":0,\"delta\":"
				     "{\"content\":\"w%d\"},\"finish_reason\":%s}]}\n\n", i,
				     i == 299 ? "\"stop\"" : "null");
	s += (size_t)sprintf(events + s, "data: [DONE]\n\n");
	zn = compress_as(json, sizeof(json) - 1, z, sizeof(z), 15 + 16);
	for (int shape = 0; shape < 2; shape++) {
		bool stream = shape == 0;
		size_t body = stream ? chunked_wire((const unsigned char *)events, s,
						    (const size_t[]){ 5, 200, 1, 3000 }, 4, wire)
				     : chunked_wire(z, zn, (const size_t[]){ 3, 17 }, 2, wire);
		size_t total = body + sizeof(next) - 1;

		memcpy(wire + body, next, sizeof(next) - 1);
		for (size_t pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]); pi++) {
			size_t piece = pieces[pi] ? pieces[pi] : total, used = 0, alone_used = 0;
			struct { struct seen s; struct osh_llm_body *b; } ctx;
			struct osh_llm_event_sink sink = { on_event_then_skim, &ctx };
			struct osh_http_body w, alone;
			struct osh_llm_body b;

			memset(&ctx, 0, sizeof(ctx));
			ctx.b = &b;
			osh_http_body_start(&w, OSH_BODY_CHUNKED, 0);
			osh_http_body_start(&alone, OSH_BODY_CHUNKED, 0);
			osh_llm_body_init(&b, OSH_LLM_FRAMING_CHUNKED, 0, stream ? NULL : "gzip",
					  stream ? 0 : 4,
					  stream ? OSH_LLM_STREAM_SSE : OSH_LLM_STREAM_NONE, 1 << 20,
					  &sink);
			/* As the engine reads: a piece, then the rest of it
			 * after the body goes to the next response. */
			for (size_t off = 0; off < total && !w.done; off += piece) {
				size_t k = total - off < piece ? total - off : piece;
				ssize_t n = osh_llm_body_walk(&b, &w, wire + off, k, off);

				cr_assert_geq(n, 0, "piece %zu at %zu", piece, off);
				used += (size_t)n;
				cr_assert(w.done || (size_t)n == k, "piece %zu: stopped early",
					  piece);
			}
			for (size_t off = 0; off < total && !alone.done; off += piece) {
				size_t k = total - off < piece ? total - off : piece;
				ssize_t n = osh_http_body_feed(&alone, wire + off, k);

				cr_assert_geq(n, 0);
				alone_used += (size_t)n;
			}
			cr_assert(w.done && alone.done, "piece %zu", piece);
			cr_assert_eq(used, body, "piece %zu: %zu bytes used, the body has %zu", piece,
				     used, body);
			cr_assert_eq(used, alone_used);
			cr_assert_eq(w.payload, alone.payload, "piece %zu", piece);
			cr_assert_eq(w.payload, stream ? s : zn);
			cr_assert(b.done && !b.malformed, "piece %zu", piece);
			if (stream) {
				cr_assert_eq(b.decoded, s, "piece %zu", piece);
				cr_assert_str_eq(ctx.s.data[ctx.s.n - 1], "[DONE]", "piece %zu", piece);
				cr_assert(strstr(ctx.s.data[ctx.s.n - 2], "\"stop\""), "piece %zu", piece);
				cr_assert_lt(ctx.s.n, 20, "piece %zu: skimmed", piece);
			} else {
				expect_kept(&b, json);
			}
			osh_llm_body_free(&b);
		}
	}
	/* Broken framing: -1, and nothing more is read. */
	{
		struct osh_http_body w;
		struct osh_llm_body b;

		osh_http_body_start(&w, OSH_BODY_CHUNKED, 0);
		osh_llm_body_init(&b, OSH_LLM_FRAMING_CHUNKED, 0, NULL, 0, OSH_LLM_STREAM_NONE, 1024,
				  NULL);
		cr_assert_eq(osh_llm_body_walk(&b, &w, "zz\r\nabc", 7, 1), -1);
		cr_assert(b.malformed);
		cr_assert_eq(osh_llm_body_walk(&b, &w, "3\r\nabc\r\n0\r\n\r\n", 13, 2), -1);
		osh_llm_body_free(&b);
	}
	free(wire);
	free(events);
}

Test(llm_body, walk_uses_the_callers_walker)
{
	with_both_searches(walk_uses_the_callers_walker_case);
}
