/* LLM request/response JSON -> struct osh_llm_call -> span. See
 * llm_extract.h. Field names follow each provider's documented API
 * (reference/semconv-genai.md §4, §7, §8). */
#define _GNU_SOURCE

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "content_redact.h"
#include "http_util.h"
#include "lazylib.h"
#include "llm_extract.h"
#include "llm_providers.h"
#include "span.h"

/* ---- small JSON helpers (through the loaded library) -------------------------- */

static const struct osh_jansson *J;

static json_t *get(json_t *o, const char *key)
{
	return o && json_is_object(o) ? J->object_get(o, key) : NULL;
}

static json_t *get2(json_t *o, const char *a, const char *b)
{
	return get(get(o, a), b);
}

static const char *str(json_t *v)
{
	return v && json_is_string(v) ? J->string_value(v) : NULL;
}

static bool as_int(json_t *v, int64_t *ret)
{
	if (v && json_is_integer(v)) {
		*ret = (int64_t)J->integer_value(v);
		return true;
	}
	if (v && json_is_real(v)) {
		*ret = (int64_t)J->real_value(v);
		return true;
	}
	return false;
}

static bool as_num(json_t *v, double *ret)
{
	if (v && json_is_number(v)) {
		*ret = J->number_value(v);
		return true;
	}
	return false;
}

static size_t arr_size(json_t *v)
{
	return v && json_is_array(v) ? J->array_size(v) : 0;
}

static json_t *at(json_t *v, size_t i)
{
	return J->array_get(v, i);
}

static void copy_str(char *dst, size_t cap, const char *s)
{
	size_t n;

	if (!s)
		return;
	n = osh_utf8_cut(s, strlen(s), cap - 1);
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* The closing quote of the JSON string whose body starts at @s (a quote
 * not escaped), or NULL when the bytes end first. */
static const char *string_end(const char *s, const char *end)
{
	for (;;) {
		const char *e = memchr(s, '"', (size_t)(end - s));
		const char *k;
		size_t bs = 0;

		if (!e)
			return NULL;
		for (k = e; k > s && k[-1] == '\\'; k--)
			bs++;
		if (bs % 2 == 0)
			return e;
		s = e + 1;
	}
}

/* A field name with its length (the lists below are searched for every
 * key a slimmed body holds). */
struct field_name {
	const char *s;
	size_t n;
};
#define FIELD(lit) { lit, sizeof(lit) - 1 }
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The top-level request fields read without content capture (see
 * request_from, every flavour's). Any other is left out before the parse:
 * the conversation and tool schemas (an agent's request is mostly these),
 * and what only the provider reads (a response_format's JSON schema,
 * metadata, the end user's id), which would cost jansson ~200
 * instructions a byte and keep the request memo from answering. */
static const struct field_name request_read_fields[] = {
	FIELD("model"), FIELD("max_completion_tokens"), FIELD("max_tokens"),
	FIELD("max_output_tokens"), FIELD("temperature"), FIELD("top_p"), FIELD("top_k"),
	FIELD("frequency_penalty"), FIELD("presence_penalty"), FIELD("seed"), FIELD("n"),
	FIELD("stop"), FIELD("stop_sequences"), FIELD("stream"), FIELD("stream_options"),
	FIELD("dimensions"), FIELD("encoding_format"), FIELD("inferenceConfig"),
	FIELD("generationConfig"), FIELD("options"),
};

static inline bool json_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* The end of the JSON value at @p: past its closing bracket or string, or
 * at the ',' / '}' / ']' after a number or literal. NULL when cut. */
static const char *value_end(const char *p, const char *end)
{
	int depth = 0;

	while (p < end) {
		char ch = *p;

		if (ch == '"') {
			p = string_end(p + 1, end);
			if (!p)
				return NULL;
			p++;
			if (!depth)
				return p;
			continue;
		}
		if (ch == '{' || ch == '[') {
			depth++;
		} else if (ch == '}' || ch == ']') {
			if (!depth)
				return p;	/* the enclosing object's end */
			if (!--depth)
				return p + 1;
		} else if (ch == ',' && !depth) {
			return p;
		}
		p++;
	}
	return depth ? NULL : p;
}

/* Top-level fields of an OpenAI stream chunk never read, then those read
 * until known (the response id and model): gone before the parse, which
 * costs jansson some 200 instructions a byte. */
static const struct field_name chunk_unread_fields[] = {
	FIELD("object"), FIELD("created"), FIELD("system_fingerprint"), FIELD("service_tier"),
	FIELD("obfuscation"), FIELD("id"), FIELD("model"),
};
#define CHUNK_UNREAD_ALWAYS 5	/* the first five */

/* Fields at any depth of a chunk never read (refusal text, token
 * log-probabilities), then those that only tell whether there is output,
 * once output came. */
static const struct field_name chunk_unread_anywhere[] = {
	FIELD("refusal"), FIELD("logprobs"), FIELD("content"), FIELD("arguments"),
};
#define UNREAD_ANYWHERE_ALWAYS 2	/* the first two */

static bool in_list(const struct field_name *list, size_t count, const char *k, size_t n)
{
	for (size_t i = 0; i < count; i++)
		if (list[i].n == n && memcmp(list[i].s, k, n) == 0)
			return true;
	return false;
}

enum slim_mode {
	SLIM_STRINGS,	/* long strings emptied */
	SLIM_REQUEST,	/* and the top-level fields not in request_read_fields
			 * removed */
	SLIM_CHUNK,	/* an OpenAI stream chunk: and the never-read top-level
			 * fields of chunk_unread_fields removed, every "arguments"
			 * text emptied, every "content" text cut to one character
			 * (whether there is text is what counts) */
	SLIM_LATER_CHUNK, /* and the response id and model removed too */
	SLIM_OUTPUT_SEEN, /* and, output having come already, content and
			   * arguments removed at any depth */
};

/* Whether slim() leaves out the pair whose key is @k (@n bytes, unquoted)
 * and whose value is [v, ve), at nesting @depth (1: top level). */
static bool drop_pair(enum slim_mode mode, int depth, const char *k, size_t n, const char *v,
		      const char *ve)
{
	if (depth == 1 && mode == SLIM_REQUEST)
		return !in_list(request_read_fields, ARRAY_LEN(request_read_fields), k, n);
	if (depth == 1 && mode >= SLIM_CHUNK &&
	    in_list(chunk_unread_fields,
		    mode == SLIM_CHUNK ? CHUNK_UNREAD_ALWAYS : ARRAY_LEN(chunk_unread_fields), k,
		    n))
		return true;
	if (mode < SLIM_CHUNK)
		return false;
	/* Every chunk: nulls (read as absent) and what is never read, at
	 * any depth; after the first output also empty objects and arrays
	 * (an empty delta, a usage chunk's choices), but an "error" of any
	 * shape is one. */
	if (mode == SLIM_OUTPUT_SEEN && ve - v == 2 &&
	    (memcmp(v, "{}", 2) == 0 || memcmp(v, "[]", 2) == 0))
		return !(n == 5 && memcmp(k, "error", 5) == 0);
	return (ve - v == 4 && memcmp(v, "null", 4) == 0) ||
	       in_list(chunk_unread_anywhere,
		       mode == SLIM_OUTPUT_SEEN ? ARRAY_LEN(chunk_unread_anywhere)
						: UNREAD_ANYWHERE_ALWAYS,
		       k, n);
}

/* Copy JSON @in to @out with every string longer than @max (message text,
 * tool arguments, embeddings in base64) made empty: what is extracted is
 * never in those, and the parser then reads a fraction of the body. @mode
 * takes away more (enum slim_mode). The rest is kept byte for byte, so the
 * result is JSON when @in is. Returns the bytes written (at most @n). */
static size_t slim(const char *in, size_t n, char *out, size_t max, enum slim_mode mode)
{
	const char *p = in, *end = in + n;
	size_t w = 0;
	int depth = 0;

	while (p < end) {
		const char *q = memchr(p, '"', (size_t)(end - p));
		const char *e, *c;
		size_t len;

		if (!q)
			q = end;
		memcpy(out + w, p, (size_t)(q - p));
		w += (size_t)(q - p);
		/* Nesting only matters to tell top-level fields. */
		if (mode != SLIM_STRINGS)
			for (const char *s = p; s < q; s++)
				depth += (*s == '{' || *s == '[') - (*s == '}' || *s == ']');
		if (q == end)
			return w;
		e = string_end(q + 1, end);
		if (!e) {
			/* Cut short: keep what there is (the parser says no). */
			memcpy(out + w, q, (size_t)(end - q));
			return w + (size_t)(end - q);
		}
		len = (size_t)(e - q - 1);
		c = e + 1;
		while (mode != SLIM_STRINGS && c < end && json_ws(*c))
			c++;
		if (mode != SLIM_STRINGS && c < end && *c == ':') {
			const char *v = c + 1, *ve;

			while (v < end && json_ws(*v))
				v++;
			ve = value_end(v, end);
			if (ve && drop_pair(mode, depth, q + 1, len, v, ve)) {
				/* The pair and its comma: the one after it, or
				 * (the last pair) the one before it. */
				while (ve < end && json_ws(*ve))
					ve++;
				if (ve < end && *ve == ',') {
					ve++;
				} else {
					while (w && json_ws(out[w - 1]))
						w--;
					if (w && out[w - 1] == ',')
						w--;
				}
				p = ve;
				continue;
			}
			if (ve && mode >= SLIM_CHUNK && *v == '"' && ve - v > 3 &&
			    ((len == 7 && memcmp(q + 1, "content", 7) == 0) ||
			     (len == 9 && memcmp(q + 1, "arguments", 9) == 0))) {
				memcpy(out + w, q, (size_t)(v - q));
				w += (size_t)(v - q);
				/* Content keeps one ASCII character: "" would
				 * read as no output. */
				memcpy(out + w, len == 7 ? "\"x\"" : "\"\"", len == 7 ? 3 : 2);
				w += len == 7 ? 3 : 2;
				p = ve;
				continue;
			}
		}
		out[w++] = '"';
		if (len <= max) {
			memcpy(out + w, q + 1, len);
			w += len;
		}
		out[w++] = '"';
		p = e + 1;
	}
	return w;
}

/* Strings longer than this are emptied before parsing (when no content is
 * captured): ids, models, reasons and keys are all shorter. */
#define SHRINK_MAX 200

size_t osh_llm_slim_request(const char *in, size_t n, char *out, size_t max)
{
	return slim(in, n, out, max, SLIM_REQUEST);
}

size_t osh_llm_slim_chunk(const char *in, size_t n, char *out, bool id_known, bool output_seen)
{
	return slim(in, n, out, SHRINK_MAX,
		    !id_known ? SLIM_CHUNK : output_seen ? SLIM_OUTPUT_SEEN : SLIM_LATER_CHUNK);
}


/* A stream chunk or a short request (most of what is parsed) slims into
 * the stack; a body, into the heap. */
#define SLIM_ON_STACK 512

/* The bytes jansson is given for @json. Unless content is captured, @json
 * is slimmed (slim()) into @stack (SLIM_ON_STACK bytes) or the heap: a
 * request (@mode SLIM_REQUEST) and a stream chunk (SLIM_CHUNK and after)
 * always, another body (SLIM_STRINGS) when over 1 KiB; else (or without
 * memory) @json itself. *ret_len: their length. NULL when there is nothing
 * to parse. unslim() releases them. */
static const char *to_parse(const struct osh_llm_call *c, const char *json, size_t n,
			    enum slim_mode mode, char *stack, size_t *ret_len)
{
	char *small;

	if (!J || !json || !n)
		return NULL;
	*ret_len = n;
	if (c->capture || (mode == SLIM_STRINGS && n < 1024))
		return json;
	small = n <= SLIM_ON_STACK ? stack : malloc(n);
	if (!small)
		return json;
	*ret_len = slim(json, n, small, SHRINK_MAX, mode);
	return small;
}

static void unslim(const char *p, const char *json, const char *stack)
{
	if (p != json && p != stack)
		free((char *)p);
}

/* @json parsed, slimmed as to_parse() says (NULL when it is not JSON, or
 * jansson is missing). */
static json_t *parse(const struct osh_llm_call *c, const char *json, size_t n,
		     enum slim_mode mode)
{
	char stack[SLIM_ON_STACK];
	json_error_t err;
	const char *p;
	json_t *r;
	size_t len;

	J = osh_jansson();
	p = to_parse(c, json, n, mode, stack, &len);
	r = p ? J->loadb(p, len, JSON_DECODE_ANY, &err) : NULL;
	unslim(p, json, stack);
	return r;
}

/* What a streamed event mentions, found in one pass over its quotes (a
 * parse costs ten times more, and most events only add text). */
enum {
	MK_FINISH = 1,		/* "finish_reason" / "finishReason" not null */
	MK_USAGE = 2,		/* "usage" / "usageMetadata" not null */
	MK_TOOL = 4,		/* tool_calls, functionCall, function_call */
	MK_ERROR = 8,		/* "error" */
	MK_DONE = 16,		/* Ollama "done": true */
	MK_RESPONSE_END = 32,	/* Responses API: completed / incomplete / failed */
	MK_BLOCK_DELTA = 64,	/* Anthropic content_block_delta / ping */
};

static bool lit_at(const char *p, const char *end, const char *lit, size_t n)
{
	return (size_t)(end - p) >= n && memcmp(p, lit, n) == 0;
}

/* The value after the key whose closing quote is at @q: not null? */
static bool value_set(const char *q, const char *end)
{
	q++;
	while (q < end && (*q == ' ' || *q == ':' || *q == '\t'))
		q++;
	return q < end && !lit_at(q, end, "null", 4);
}

/* The marks of the string starting after the quote at @q. */
static unsigned mark_at(const char *q, const char *end)
{
	switch (*q) {
	case 'f':
		if (lit_at(q, end, "finish_reason\"", 14))
			return value_set(q + 13, end) ? MK_FINISH : 0;
		if (lit_at(q, end, "finishReason\"", 13))
			return MK_FINISH;
		if (lit_at(q, end, "functionCall\"", 13) || lit_at(q, end, "function_call", 13))
			return MK_TOOL;
		return 0;
	case 'u':
		if (lit_at(q, end, "usage\"", 6))
			return value_set(q + 5, end) ? MK_USAGE : 0;
		return lit_at(q, end, "usageMetadata\"", 14) ? MK_USAGE : 0;
	case 't':
		return lit_at(q, end, "tool_calls\"", 11) ? MK_TOOL : 0;
	case 'e':
		return lit_at(q, end, "error\"", 6) ? MK_ERROR : 0;
	case 'd':
		if (lit_at(q, end, "done\"", 5) && value_set(q + 4, end)) {
			const char *v = q + 5;

			while (v < end && (*v == ' ' || *v == ':' || *v == '\t'))
				v++;
			return lit_at(v, end, "false", 5) ? 0 : MK_DONE;
		}
		return 0;
	case 'r':
		return lit_at(q, end, "response.completed\"", 19) ||
			       lit_at(q, end, "response.incomplete\"", 20) ||
			       lit_at(q, end, "response.failed\"", 16)
			       ? MK_RESPONSE_END
			       : 0;
	case 'c':
		return lit_at(q, end, "content_block_delta\"", 20) ? MK_BLOCK_DELTA : 0;
	case 'p':
		return lit_at(q, end, "ping\"", 5) ? MK_BLOCK_DELTA : 0;
	default:
		return 0;
	}
}

/* The two first letters of every mark: most strings of an event ("id",
 * "choices", "content", the text itself) are turned away here. */
static inline bool maybe_mark(const char *q, const char *end)
{
	/* The shortest marks: done" and ping". */
	if (end - q < 5)
		return false;
	switch (q[0]) {
	case 'f':
		return q[1] == 'i' || q[1] == 'u';
	case 'u':
		return q[1] == 's';
	case 't':
	case 'd':
		return q[1] == 'o';
	case 'e':
	case 'r':
		return q[1] == 'r' || q[1] == 'e';
	case 'c':
		return end - q >= 8 && q[1] == 'o' && q[2] == 'n' && q[7] == '_';
	case 'p':
		return q[1] == 'i';
	default:
		return false;
	}
}

/* The first letters of the marks each flavour needs (five, repeated to
 * fill): a quote is looked at only when one of these follows it. */
static const char openai_letters[5] = { 'f', 'u', 't', 'e', 'r' };
static const char gemini_letters[5] = { 'f', 'u', 'e', 'e', 'e' };
static const char ollama_letters[5] = { 'd', 't', 'e', 'e', 'e' };
static const char anthropic_letters[5] = { 'c', 'p', 'e', 'e', 'e' };

/* The marks of an event: quotes found 16 bytes at a time together with the
 * byte after each, and only a quote followed by one of @letters goes on to
 * be read (keys and values alike: a value that spells a key is an extra
 * parse, never a missed one). Most quotes of an event ("id", "choices",
 * "content", the text) are turned away without a branch: per event that is
 * a fifth of looking at every quote. */
static unsigned scan_marks(const char *d, size_t n, const char letters[5])
{
	const char *end = d + n;
	size_t i = 0;
	unsigned m = 0;

#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"');
	const __m128i l0 = _mm_set1_epi8(letters[0]), l1 = _mm_set1_epi8(letters[1]);
	const __m128i l2 = _mm_set1_epi8(letters[2]), l3 = _mm_set1_epi8(letters[3]);
	const __m128i l4 = _mm_set1_epi8(letters[4]);

	/* Bytes i..i+15 and the ones after them, i+1..i+16. */
	for (; i + 17 <= n; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(d + i));
		__m128i w = _mm_loadu_si128((const __m128i *)(const void *)(d + i + 1));
		__m128i hit = _mm_or_si128(
			_mm_or_si128(_mm_cmpeq_epi8(w, l0), _mm_cmpeq_epi8(w, l1)),
			_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(w, l2), _mm_cmpeq_epi8(w, l3)),
				     _mm_cmpeq_epi8(w, l4)));
		unsigned bits = (unsigned)_mm_movemask_epi8(
			_mm_and_si128(_mm_cmpeq_epi8(v, quote), hit));

		while (bits) {
			const char *q = d + i + __builtin_ctz(bits) + 1;

			bits &= bits - 1;
			if (maybe_mark(q, end))
				m |= mark_at(q, end);
		}
	}
#endif
	for (; i < n; i++)
		if (d[i] == '"' && i + 1 < n && memchr(letters, d[i + 1], 5) &&
		    maybe_mark(d + i + 1, end))
			m |= mark_at(d + i + 1, end);
	return m;
}

/* After the first output, most events of a stream only add text: those are
 * not parsed (unless content is captured). The few that carry ids, finish
 * reasons, usage, tool calls or errors are. */
static bool event_matters(const struct osh_llm_call *c, const char *event, size_t event_len,
			  const char *d, size_t n)
{
	switch (c->flavour) {
	case OSH_LLM_OPENAI:
		return scan_marks(d, n, openai_letters) &
		       (MK_FINISH | MK_USAGE | MK_TOOL | MK_ERROR | MK_RESPONSE_END);
	case OSH_LLM_ANTHROPIC:
	case OSH_LLM_BEDROCK: {
		unsigned m;

		if (event_len)
			return !(event_len == 19 && memcmp(event, "content_block_delta", 19) == 0) &&
			       !(event_len == 4 && memcmp(event, "ping", 4) == 0);
		m = scan_marks(d, n, anthropic_letters);
		return !(m & MK_BLOCK_DELTA) || (m & MK_ERROR);
	}
	case OSH_LLM_GEMINI:
		return scan_marks(d, n, gemini_letters) & (MK_FINISH | MK_USAGE | MK_TOOL | MK_ERROR);
	case OSH_LLM_OLLAMA:
		return scan_marks(d, n, ollama_letters) & (MK_DONE | MK_TOOL | MK_ERROR);
	default:
		return true;
	}
}

static void drop(json_t *root)
{
	if (root)
		osh_json_decref(J, root);
}

/* ---- content capture ------------------------------------------------------------ */

/* Append one message's text for @role (NUL-separated pairs). */
static void text_add(struct osh_llm_text *t, const char *role, const char *s, size_t n)
{
	size_t rl = strlen(role);
	size_t need = rl + 1 + n + 1;
	char *q;

	if (t->len + need > OSH_LLM_CONTENT_MAX) {
		t->cut = true;
		if (t->len + rl + 2 >= OSH_LLM_CONTENT_MAX)
			return;
		n = OSH_LLM_CONTENT_MAX - t->len - rl - 2;
		need = rl + 1 + n + 1;
	}
	q = realloc(t->buf, t->len + need);
	if (!q)
		return;
	t->buf = q;
	memcpy(t->buf + t->len, role, rl + 1);
	memcpy(t->buf + t->len + rl + 1, s, n);
	t->buf[t->len + rl + 1 + n] = '\0';
	t->len += need;
}

/* Extend the last message's text (stream deltas), or start one. */
static void text_append(struct osh_llm_text *t, const char *role, const char *s, size_t n)
{
	char *q;

	if (!t->len) {
		text_add(t, role, s, n);
		return;
	}
	if (t->len + n > OSH_LLM_CONTENT_MAX) {
		t->cut = true;
		n = OSH_LLM_CONTENT_MAX > t->len ? OSH_LLM_CONTENT_MAX - t->len : 0;
	}
	if (!n)
		return;
	q = realloc(t->buf, t->len + n);
	if (!q)
		return;
	t->buf = q;
	/* Overwrite the terminating NUL, then end again. */
	memcpy(t->buf + t->len - 1, s, n);
	t->len += n;
	t->buf[t->len - 1] = '\0';
}

/* The text of a message's "content": a string, or an array of parts of
 * which the text ones count (OpenAI, Anthropic, Bedrock). */
static void content_text(struct osh_llm_text *t, const char *role, json_t *content)
{
	const char *s = str(content);

	if (s) {
		text_add(t, role, s, strlen(s));
		return;
	}
	for (size_t i = 0; i < arr_size(content); i++) {
		json_t *part = at(content, i);
		const char *txt = str(get(part, "text"));

		if (txt)
			text_add(t, role, txt, strlen(txt));
	}
}

/* ---- request ---------------------------------------------------------------------- */

static void stops_from(struct osh_llm_call *c, json_t *v)
{
	const char *one = str(v);

	if (one) {
		copy_str(c->stop[0], sizeof(c->stop[0]), one);
		c->n_stop = 1;
		return;
	}
	for (size_t i = 0; i < arr_size(v) && c->n_stop < OSH_LLM_MAX_STOP; i++) {
		const char *s = str(at(v, i));

		if (s)
			copy_str(c->stop[c->n_stop++], sizeof(c->stop[0]), s);
	}
}

static void sampling_from(struct osh_llm_call *c, json_t *o, const char *temp, const char *top_p,
			  const char *top_k)
{
	c->has_temperature |= as_num(get(o, temp), &c->temperature);
	c->has_top_p |= as_num(get(o, top_p), &c->top_p);
	if (top_k)
		c->has_top_k |= as_num(get(o, top_k), &c->top_k);
}

static void messages_text(struct osh_llm_call *c, json_t *msgs)
{
	for (size_t i = 0; i < arr_size(msgs); i++) {
		json_t *m = at(msgs, i);
		const char *role = str(get(m, "role"));

		content_text(&c->input, role ? role : "user", get(m, "content"));
	}
}

/* The request's fields from its parsed root @r (dropped here). */
static void request_from(struct osh_llm_call *c, json_t *r)
{
	json_t *v;

	if (!r || !json_is_object(r)) {
		drop(r);
		return;
	}
	copy_str(c->request_model, sizeof(c->request_model), str(get(r, "model")));
	switch (c->flavour) {
	case OSH_LLM_OPENAI:
		if (!as_int(get(r, "max_completion_tokens"), &c->max_tokens) &&
		    !as_int(get(r, "max_tokens"), &c->max_tokens))
			as_int(get(r, "max_output_tokens"), &c->max_tokens);	/* Responses */
		sampling_from(c, r, "temperature", "top_p", NULL);
		c->has_frequency_penalty = as_num(get(r, "frequency_penalty"), &c->frequency_penalty);
		c->has_presence_penalty = as_num(get(r, "presence_penalty"), &c->presence_penalty);
		c->has_seed = as_int(get(r, "seed"), &c->seed);
		as_int(get(r, "n"), &c->choice_count);
		stops_from(c, get(r, "stop"));
		c->stream = json_is_true(get(r, "stream"));
		c->include_usage = json_is_true(get2(r, "stream_options", "include_usage"));
		as_int(get(r, "dimensions"), &c->dimensions);
		copy_str(c->encoding_format, sizeof(c->encoding_format),
			 str(get(r, "encoding_format")));
		if (c->capture) {
			messages_text(c, get(r, "messages"));
			v = get(r, "input");	/* Responses API / embeddings */
			if (str(v) && c->operation != OSH_LLM_OP_EMBEDDINGS)
				text_add(&c->input, "user", str(v), strlen(str(v)));
			else if (json_is_array(v) && c->operation != OSH_LLM_OP_EMBEDDINGS)
				messages_text(c, v);
			if (str(get(r, "prompt")))
				text_add(&c->input, "user", str(get(r, "prompt")),
					 strlen(str(get(r, "prompt"))));
		}
		break;
	case OSH_LLM_ANTHROPIC:
	case OSH_LLM_BEDROCK:
		/* Bedrock's invoke takes the model's own format (Anthropic's
		 * for Claude); converse has inferenceConfig. */
		as_int(get(r, "max_tokens"), &c->max_tokens);
		sampling_from(c, r, "temperature", "top_p", "top_k");
		stops_from(c, get(r, "stop_sequences"));
		c->stream = json_is_true(get(r, "stream"));
		v = get(r, "inferenceConfig");
		if (v) {
			as_int(get(v, "maxTokens"), &c->max_tokens);
			sampling_from(c, v, "temperature", "topP", NULL);
			stops_from(c, get(v, "stopSequences"));
		}
		if (c->capture) {
			v = get(r, "system");
			if (str(v))
				text_add(&c->input, "system", str(v), strlen(str(v)));
			else
				content_text(&c->input, "system", v);
			messages_text(c, get(r, "messages"));
		}
		break;
	case OSH_LLM_GEMINI:
		v = get(r, "generationConfig");
		as_int(get(v, "maxOutputTokens"), &c->max_tokens);
		sampling_from(c, v, "temperature", "topP", "topK");
		stops_from(c, get(v, "stopSequences"));
		as_int(get(v, "candidateCount"), &c->choice_count);
		if (c->capture) {
			json_t *contents = get(r, "contents");

			for (size_t i = 0; i < arr_size(contents); i++) {
				json_t *m = at(contents, i);
				const char *role = str(get(m, "role"));

				content_text(&c->input, role ? role : "user", get(m, "parts"));
			}
		}
		break;
	case OSH_LLM_OLLAMA:
		v = get(r, "options");
		as_int(get(v, "num_predict"), &c->max_tokens);
		sampling_from(c, v, "temperature", "top_p", "top_k");
		c->has_seed = as_int(get(v, "seed"), &c->seed);
		stops_from(c, get(v, "stop"));
		/* Ollama streams unless told not to. */
		v = get(r, "stream");
		c->stream = c->operation != OSH_LLM_OP_EMBEDDINGS && (!v || json_is_true(v));
		if (c->capture) {
			messages_text(c, get(r, "messages"));
			if (str(get(r, "prompt")))
				text_add(&c->input, "user", str(get(r, "prompt")),
					 strlen(str(get(r, "prompt"))));
		}
		break;
	default:
		break;
	}
	drop(r);
}

/* The last request parsed without content capture, and what it did to
 * the request fields of its call (struct osh_llm_call from request_model
 * up to response_id, one block): an application sends the same model and
 * parameters call after call, and with its conversation and tools left
 * out (slim()) its requests read the same, so their parse (jansson, ~250
 * instructions a byte) is done once. The key is the slimmed bytes, the
 * call's flavour and operation and its request fields before the parse
 * (the route may have set some): the same three give the same fields
 * after. One for the process; a thread that finds it busy parses. */
#define REQUEST_BLOCK_AT offsetof(struct osh_llm_call, request_model)
#define REQUEST_BLOCK (offsetof(struct osh_llm_call, response_id) - REQUEST_BLOCK_AT)
#define REQUEST_MEMO_KEY 512

static struct {
	atomic_flag busy;
	bool valid;
	uint8_t flavour, operation;
	size_t key_len;
	char key[REQUEST_MEMO_KEY];
	unsigned char before[REQUEST_BLOCK], after[REQUEST_BLOCK];
} memo = { .busy = ATOMIC_FLAG_INIT };
static _Atomic uint64_t memo_hits;

static unsigned char *request_block(struct osh_llm_call *c)
{
	return (unsigned char *)c + REQUEST_BLOCK_AT;
}

static bool memo_recall(struct osh_llm_call *c, const char *key, size_t len)
{
	bool hit;

	if (len > REQUEST_MEMO_KEY ||
	    atomic_flag_test_and_set_explicit(&memo.busy, memory_order_acquire))
		return false;
	hit = memo.valid && memo.flavour == c->flavour && memo.operation == c->operation &&
	      memo.key_len == len && memcmp(memo.key, key, len) == 0 &&
	      memcmp(memo.before, request_block(c), REQUEST_BLOCK) == 0;
	if (hit)
		memcpy(request_block(c), memo.after, REQUEST_BLOCK);
	atomic_flag_clear_explicit(&memo.busy, memory_order_release);
	if (hit)
		atomic_fetch_add_explicit(&memo_hits, 1, memory_order_relaxed);
	return hit;
}

static void memo_store(const struct osh_llm_call *c, const unsigned char *before, const char *key,
		       size_t len)
{
	if (len > REQUEST_MEMO_KEY ||
	    atomic_flag_test_and_set_explicit(&memo.busy, memory_order_acquire))
		return;
	memo.flavour = c->flavour;
	memo.operation = c->operation;
	memo.key_len = len;
	memcpy(memo.key, key, len);
	memcpy(memo.before, before, REQUEST_BLOCK);
	memcpy(memo.after, (const unsigned char *)c + REQUEST_BLOCK_AT, REQUEST_BLOCK);
	memo.valid = true;
	atomic_flag_clear_explicit(&memo.busy, memory_order_release);
}

uint64_t osh_llm_request_memo_hits(void)
{
	return atomic_load_explicit(&memo_hits, memory_order_relaxed);
}

void osh_llm_extract_request(struct osh_llm_call *c, const char *json, size_t n)
{
	unsigned char before[REQUEST_BLOCK];
	char stack[SLIM_ON_STACK];
	json_error_t err;
	const char *p;
	size_t len;
	bool slimmed;

	J = osh_jansson();
	p = to_parse(c, json, n, SLIM_REQUEST, stack, &len);
	if (!p)
		return;
	/* Only a slimmed request (content not captured) is remembered. */
	slimmed = p != json;
	if (!slimmed || !memo_recall(c, p, len)) {
		memcpy(before, request_block(c), REQUEST_BLOCK);
		request_from(c, J->loadb(p, len, JSON_DECODE_ANY, &err));
		if (slimmed)
			memo_store(c, before, p, len);
	}
	unslim(p, json, stack);
}

/* ---- response -------------------------------------------------------------------- */

static void add_finish(struct osh_llm_call *c, size_t index, const char *reason)
{
	if (!reason || index >= OSH_LLM_MAX_FINISH)
		return;
	copy_str(c->finish[index], sizeof(c->finish[0]), reason);
	if (c->n_finish < index + 1)
		c->n_finish = (uint8_t)(index + 1);
}

static void add_tool(struct osh_llm_call *c, const char *id, const char *name)
{
	if (!name && !id)
		return;
	if (c->n_tools >= OSH_LLM_MAX_TOOLS) {
		c->dropped_tools++;
		return;
	}
	copy_str(c->tools[c->n_tools].name, sizeof(c->tools[0].name), name ? name : "");
	copy_str(c->tools[c->n_tools].id, sizeof(c->tools[0].id), id ? id : "");
	c->n_tools++;
}

static void set_error(struct osh_llm_call *c, const char *type)
{
	if (type && type[0] && !c->error_type[0])
		copy_str(c->error_type, sizeof(c->error_type), type);
}

/* The error a body reports, if any (each provider's shape). */
static void error_from(struct osh_llm_call *c, json_t *r)
{
	json_t *e = get(r, "error");
	const char *code;

	if (!e || json_is_null(e))
		return;
	if (str(e)) {
		/* Ollama: {"error": "free text"}: no code to report. */
		set_error(c, "error");
		return;
	}
	code = str(get(e, "code"));
	if (!code)
		code = str(get(e, "type"));
	if (!code)
		code = str(get(e, "status"));	/* Gemini: RESOURCE_EXHAUSTED, ... */
	set_error(c, code ? code : "error");
}

static void openai_usage(struct osh_llm_call *c, json_t *u)
{
	if (!u || !json_is_object(u))
		return;
	if (!as_int(get(u, "prompt_tokens"), &c->input_tokens))
		as_int(get(u, "input_tokens"), &c->input_tokens);	/* Responses */
	if (!as_int(get(u, "completion_tokens"), &c->output_tokens))
		as_int(get(u, "output_tokens"), &c->output_tokens);
	if (!as_int(get2(u, "prompt_tokens_details", "cached_tokens"), &c->cache_read_tokens))
		as_int(get2(u, "input_tokens_details", "cached_tokens"), &c->cache_read_tokens);
	if (!as_int(get2(u, "prompt_tokens_details", "cache_write_tokens"),
		    &c->cache_write_tokens))
		as_int(get2(u, "input_tokens_details", "cache_write_tokens"),
		       &c->cache_write_tokens);
	if (!as_int(get2(u, "completion_tokens_details", "reasoning_tokens"),
		    &c->reasoning_tokens))
		as_int(get2(u, "output_tokens_details", "reasoning_tokens"), &c->reasoning_tokens);
}

static void anthropic_usage(struct osh_llm_call *c, json_t *u)
{
	if (!u || !json_is_object(u))
		return;
	as_int(get(u, "input_tokens"), &c->anthropic_input);
	as_int(get(u, "cache_read_input_tokens"), &c->anthropic_cache_read);
	as_int(get(u, "cache_creation_input_tokens"), &c->anthropic_cache_write);
	as_int(get(u, "output_tokens"), &c->output_tokens);
	as_int(get2(u, "output_tokens_details", "thinking_tokens"), &c->reasoning_tokens);
}

static void openai_response(struct osh_llm_call *c, json_t *r)
{
	json_t *choices = get(r, "choices"), *out;

	copy_str(c->response_id, sizeof(c->response_id), str(get(r, "id")));
	copy_str(c->response_model, sizeof(c->response_model), str(get(r, "model")));
	copy_str(c->system_fingerprint, sizeof(c->system_fingerprint),
		 str(get(r, "system_fingerprint")));
	for (size_t i = 0; i < arr_size(choices); i++) {
		json_t *ch = at(choices, i), *msg = get(ch, "message"), *calls;
		int64_t idx = (int64_t)i;

		as_int(get(ch, "index"), &idx);
		add_finish(c, (size_t)idx, str(get(ch, "finish_reason")));
		calls = get(msg, "tool_calls");
		for (size_t k = 0; k < arr_size(calls); k++)
			add_tool(c, str(get(at(calls, k), "id")),
				 str(get2(at(calls, k), "function", "name")));
		if (c->capture) {
			const char *txt = str(get(msg, "content"));

			if (!txt)
				txt = str(get(ch, "text"));	/* text completions */
			if (txt)
				text_add(&c->output, "assistant", txt, strlen(txt));
		}
	}
	openai_usage(c, get(r, "usage"));
	/* Responses API: output items; no finish reason, a status. */
	out = get(r, "output");
	for (size_t i = 0; i < arr_size(out); i++) {
		json_t *item = at(out, i);
		const char *type = str(get(item, "type"));

		if (type && strcmp(type, "function_call") == 0)
			add_tool(c, str(get(item, "call_id")), str(get(item, "name")));
		else if (c->capture && type && strcmp(type, "message") == 0)
			content_text(&c->output, "assistant", get(item, "content"));
	}
	if (!c->n_finish && str(get(r, "status")) && str(get(r, "object")) &&
	    strcmp(str(get(r, "object")), "response") == 0)
		add_finish(c, 0, str(get(r, "status")));
}

static void anthropic_content(struct osh_llm_call *c, json_t *content)
{
	for (size_t i = 0; i < arr_size(content); i++) {
		json_t *b = at(content, i);
		const char *type = str(get(b, "type"));

		if (type && strcmp(type, "tool_use") == 0)
			add_tool(c, str(get(b, "id")), str(get(b, "name")));
		else if (c->capture && type && strcmp(type, "text") == 0 && str(get(b, "text")))
			text_add(&c->output, "assistant", str(get(b, "text")),
				 strlen(str(get(b, "text"))));
	}
}

static void anthropic_response(struct osh_llm_call *c, json_t *r)
{
	copy_str(c->response_id, sizeof(c->response_id), str(get(r, "id")));
	copy_str(c->response_model, sizeof(c->response_model), str(get(r, "model")));
	add_finish(c, 0, str(get(r, "stop_reason")));
	anthropic_content(c, get(r, "content"));
	anthropic_usage(c, get(r, "usage"));
}

static bool gemini_response(struct osh_llm_call *c, json_t *r)
{
	json_t *cands = get(r, "candidates"), *u = get(r, "usageMetadata");
	bool content = false;

	copy_str(c->response_id, sizeof(c->response_id), str(get(r, "responseId")));
	copy_str(c->response_model, sizeof(c->response_model), str(get(r, "modelVersion")));
	for (size_t i = 0; i < arr_size(cands); i++) {
		json_t *cand = at(cands, i), *parts = get2(cand, "content", "parts");
		int64_t idx = (int64_t)i;

		as_int(get(cand, "index"), &idx);
		add_finish(c, (size_t)idx, str(get(cand, "finishReason")));
		for (size_t k = 0; k < arr_size(parts); k++) {
			json_t *p = at(parts, k), *fc = get(p, "functionCall");
			const char *txt = str(get(p, "text"));

			if (fc) {
				add_tool(c, str(get(fc, "id")), str(get(fc, "name")));
				content = true;
			}
			if (txt && txt[0]) {
				content = true;
				if (c->capture)
					text_append(&c->output, "model", txt, strlen(txt));
			}
		}
	}
	if (u) {
		as_int(get(u, "promptTokenCount"), &c->input_tokens);
		as_int(get(u, "candidatesTokenCount"), &c->output_tokens);
		as_int(get(u, "cachedContentTokenCount"), &c->cache_read_tokens);
		as_int(get(u, "thoughtsTokenCount"), &c->reasoning_tokens);
	}
	return content;
}

static bool ollama_record(struct osh_llm_call *c, json_t *r)
{
	const char *txt = str(get2(r, "message", "content"));
	json_t *calls = get2(r, "message", "tool_calls");
	bool content = false;

	if (!txt)
		txt = str(get(r, "response"));	/* /api/generate */
	copy_str(c->response_model, sizeof(c->response_model), str(get(r, "model")));
	for (size_t k = 0; k < arr_size(calls); k++) {
		add_tool(c, NULL, str(get2(at(calls, k), "function", "name")));
		content = true;
	}
	if (txt && txt[0]) {
		content = true;
		if (c->capture)
			text_append(&c->output, "assistant", txt, strlen(txt));
	}
	if (json_is_true(get(r, "done")) || !get(r, "done")) {
		add_finish(c, 0, str(get(r, "done_reason")));
		as_int(get(r, "prompt_eval_count"), &c->input_tokens);
		as_int(get(r, "eval_count"), &c->output_tokens);
	}
	return content;
}

static void bedrock_response(struct osh_llm_call *c, json_t *r)
{
	json_t *content = get2(get(r, "output"), "message", "content"), *u = get(r, "usage");

	if (!content) {
		anthropic_response(c, r);	/* invoke with a Claude model */
		return;
	}
	add_finish(c, 0, str(get(r, "stopReason")));
	for (size_t i = 0; i < arr_size(content); i++) {
		json_t *b = at(content, i), *tu = get(b, "toolUse");

		if (tu)
			add_tool(c, str(get(tu, "toolUseId")), str(get(tu, "name")));
		else if (c->capture && str(get(b, "text")))
			text_add(&c->output, "assistant", str(get(b, "text")),
				 strlen(str(get(b, "text"))));
	}
	as_int(get(u, "inputTokens"), &c->input_tokens);
	as_int(get(u, "outputTokens"), &c->output_tokens);
	as_int(get(u, "cacheReadInputTokens"), &c->cache_read_tokens);
	as_int(get(u, "cacheWriteInputTokens"), &c->cache_write_tokens);
}

void osh_llm_extract_response(struct osh_llm_call *c, int status, const char *json, size_t n)
{
	json_t *r = parse(c, json, n, SLIM_STRINGS);

	if (!r) {
		if (status >= 400)
			set_error(c, NULL);
		return;
	}
	if (json_is_object(r)) {
		error_from(c, r);
		if (status < 400 || !c->error_type[0]) {
			switch (c->flavour) {
			case OSH_LLM_OPENAI:
				openai_response(c, r);
				break;
			case OSH_LLM_ANTHROPIC:
				anthropic_response(c, r);
				break;
			case OSH_LLM_GEMINI:
				gemini_response(c, r);
				break;
			case OSH_LLM_OLLAMA:
				ollama_record(c, r);
				break;
			case OSH_LLM_BEDROCK:
				bedrock_response(c, r);
				break;
			default:
				break;
			}
		}
	} else if (json_is_array(r) && c->flavour == OSH_LLM_GEMINI) {
		/* streamGenerateContent without alt=sse: one array of chunks. */
		for (size_t i = 0; i < arr_size(r); i++)
			gemini_response(c, at(r, i));
	}
	drop(r);
}

/* ---- streams ------------------------------------------------------------------------ */

static bool openai_chunk(struct osh_llm_call *c, json_t *r)
{
	json_t *choices = get(r, "choices");
	const char *type = str(get(r, "type"));
	bool content = false;

	if (type && strncmp(type, "response.", 9) == 0) {
		/* Responses API stream: deltas, then the whole response. */
		if (strcmp(type, "response.output_text.delta") == 0) {
			const char *d = str(get(r, "delta"));

			if (c->capture && d)
				text_append(&c->output, "assistant", d, strlen(d));
			return d && d[0];
		}
		if (strcmp(type, "response.output_item.added") == 0 &&
		    str(get2(r, "item", "type")) &&
		    strcmp(str(get2(r, "item", "type")), "function_call") == 0)
			return true;
		if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0 ||
		    strcmp(type, "response.failed") == 0) {
			bool cap = c->capture;

			c->capture = false;	/* the deltas already gave the text */
			openai_response(c, get(r, "response"));
			c->capture = cap;
		}
		return false;
	}
	if (!c->response_id[0])
		copy_str(c->response_id, sizeof(c->response_id), str(get(r, "id")));
	if (!c->response_model[0])
		copy_str(c->response_model, sizeof(c->response_model), str(get(r, "model")));
	for (size_t i = 0; i < arr_size(choices); i++) {
		json_t *ch = at(choices, i), *delta = get(ch, "delta"), *calls;
		const char *txt = str(get(delta, "content"));
		int64_t idx = (int64_t)i;

		as_int(get(ch, "index"), &idx);
		if (!txt)
			txt = str(get(ch, "text"));	/* text completions */
		if (txt && txt[0]) {
			content = true;
			if (c->capture && idx == 0)
				text_append(&c->output, "assistant", txt, strlen(txt));
		}
		calls = get(delta, "tool_calls");
		for (size_t k = 0; k < arr_size(calls); k++) {
			json_t *tc = at(calls, k);
			const char *name = str(get2(tc, "function", "name"));

			/* The first delta of a call names it; later ones only
			 * carry argument pieces. */
			if (name || str(get(tc, "id")))
				add_tool(c, str(get(tc, "id")), name);
			content = true;
		}
		add_finish(c, (size_t)idx, str(get(ch, "finish_reason")));
	}
	openai_usage(c, get(r, "usage"));
	/* Groq's streams put it under x_groq, in the last chunk. */
	openai_usage(c, get2(r, "x_groq", "usage"));
	return content;
}

static bool anthropic_event(struct osh_llm_call *c, json_t *r)
{
	const char *type = str(get(r, "type"));
	json_t *v;

	if (!type)
		return false;
	if (strcmp(type, "message_start") == 0) {
		v = get(r, "message");
		copy_str(c->response_id, sizeof(c->response_id), str(get(v, "id")));
		copy_str(c->response_model, sizeof(c->response_model), str(get(v, "model")));
		anthropic_usage(c, get(v, "usage"));
		return false;
	}
	if (strcmp(type, "content_block_start") == 0) {
		v = get(r, "content_block");
		if (str(get(v, "type")) && strcmp(str(get(v, "type")), "tool_use") == 0) {
			add_tool(c, str(get(v, "id")), str(get(v, "name")));
			return true;
		}
		return false;
	}
	if (strcmp(type, "content_block_delta") == 0) {
		const char *txt;

		v = get(r, "delta");
		txt = str(get(v, "text"));
		if (c->capture && txt)
			text_append(&c->output, "assistant", txt, strlen(txt));
		if (!txt)
			txt = str(get(v, "partial_json"));
		if (!txt)
			txt = str(get(v, "thinking"));
		return txt && txt[0];
	}
	if (strcmp(type, "message_delta") == 0) {
		add_finish(c, 0, str(get2(r, "delta", "stop_reason")));
		anthropic_usage(c, get(r, "usage"));	/* cumulative: the last wins */
		return false;
	}
	if (strcmp(type, "error") == 0)
		error_from(c, r);
	return false;
}

bool osh_llm_extract_event(struct osh_llm_call *c, const char *event, size_t event_len,
			   const char *data, size_t data_len)
{
	enum slim_mode mode;
	json_t *r;
	bool content = false;

	if (data_len == 6 && memcmp(data, "[DONE]", 6) == 0)
		return false;
	if (c->got_output && !c->capture && !event_matters(c, event, event_len, data, data_len))
		return true;	/* more output: only the first one's time counts */
	/* OpenAI chunks lose what is never read; once the response id and
	 * model are known, those too; once output came, what only tells
	 * whether there is output. */
	if (c->flavour != OSH_LLM_OPENAI)
		mode = SLIM_STRINGS;
	else if (!c->response_id[0] || !c->response_model[0])
		mode = SLIM_CHUNK;
	else
		mode = c->got_output ? SLIM_OUTPUT_SEEN : SLIM_LATER_CHUNK;
	r = parse(c, data, data_len, mode);
	if (!r)
		return false;
	if (json_is_object(r)) {
		switch (c->flavour) {
		case OSH_LLM_OPENAI:
			error_from(c, r);
			content = openai_chunk(c, r);
			break;
		case OSH_LLM_ANTHROPIC:
		case OSH_LLM_BEDROCK:
			content = anthropic_event(c, r);
			break;
		case OSH_LLM_GEMINI:
			error_from(c, r);
			content = gemini_response(c, r);
			break;
		case OSH_LLM_OLLAMA:
			error_from(c, r);
			content = ollama_record(c, r);
			break;
		default:
			break;
		}
	}
	drop(r);
	if (content)
		c->got_output = true;
	return content;
}

/* ---- onto the span --------------------------------------------------------------- */

void osh_llm_call_init(struct osh_llm_call *c, uint8_t flavour, uint8_t operation, bool capture)
{
	memset(c, 0, sizeof(*c));
	c->flavour = flavour;
	c->operation = operation;
	c->capture = capture;
	c->max_tokens = c->choice_count = c->dimensions = -1;
	c->input_tokens = c->output_tokens = c->cache_read_tokens = -1;
	c->cache_write_tokens = c->reasoning_tokens = -1;
	c->anthropic_input = c->anthropic_cache_read = c->anthropic_cache_write = -1;
}

void osh_llm_call_free(struct osh_llm_call *c)
{
	free(c->input.buf);
	free(c->output.buf);
	c->input.buf = c->output.buf = NULL;
	c->input.len = c->output.len = 0;
}

const char *osh_llm_call_model(const struct osh_llm_call *c, const char *path_model)
{
	if (c->response_model[0])
		return c->response_model;
	if (c->request_model[0])
		return c->request_model;
	return path_model ? path_model : "";
}

/* JSON string body (no quotes) of @s, escaped, into @o (room @cap); stops
 * before a character that would not fit. Returns bytes written. */
static size_t json_escape(const char *s, size_t n, char *o, size_t cap)
{
	size_t w = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[8];
		size_t k = 0;

		if (ch == '"' || ch == '\\') {
			esc[k++] = '\\';
			esc[k++] = (char)ch;
		} else if (ch < 0x20) {
			k = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", ch);
		} else {
			/* Whole UTF-8 sequences only. */
			size_t len = ch < 0x80 ? 1 : ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : 2;

			if (i + len > n || w + len > cap)
				break;
			memcpy(o + w, s + i, len);
			w += len;
			i += len - 1;
			continue;
		}
		if (w + k > cap)
			break;
		memcpy(o + w, esc, k);
		w += k;
	}
	return w;
}

/* The messages of @t as the GenAI conventions' JSON ([{"role":..,"parts":
 * [{"type":"text","content":..}]}]), each text redacted, cut so that the
 * whole fits @cap bytes (valid JSON whatever the cut). Returns its length,
 * 0 when not even one message fits. */
static size_t messages_json(const struct osh_llm_text *t, const char *finish, char *out, size_t cap)
{
	size_t w = 0, at = 0;
	char *red = malloc(OSH_LLM_CONTENT_MAX + 1);

	if (!red || cap < 64) {
		free(red);
		return 0;
	}
	out[w++] = '[';
	while (at < t->len) {
		const char *role = t->buf + at;
		const char *text = role + strlen(role) + 1;
		size_t tl = strlen(text), rn;
		char head[96];
		int hn;
		/* What must still follow this message's text: closing quote,
		 * braces, an optional finish reason, and the array's end. */
		size_t tail = 4 + (finish ? 20 + strlen(finish) : 0) + 2;

		at = (size_t)(text - t->buf) + tl + 1;
		hn = snprintf(head, sizeof(head), "%s{\"role\":\"%.16s\",\"parts\":[{\"type\":\"text\","
						  "\"content\":\"", w > 1 ? "," : "", role);
		if (hn < 0 || w + (size_t)hn + tail >= cap)
			break;
		memcpy(out + w, head, (size_t)hn);
		w += (size_t)hn;
		rn = osh_content_redact(text, tl, red, OSH_LLM_CONTENT_MAX + 1);
		w += json_escape(red, rn, out + w, cap - w - tail);
		if (finish && at >= t->len)
			w += (size_t)snprintf(out + w, cap - w, "\"}],\"finish_reason\":\"%s\"}", finish);
		else
			w += (size_t)snprintf(out + w, cap - w, "\"}]}");
	}
	free(red);
	if (w == 1)
		return 0;
	out[w++] = ']';
	return w;
}

static bool is_embedding(const struct osh_llm_call *c)
{
	return c->operation == OSH_LLM_OP_EMBEDDINGS;
}

bool osh_llm_call_apply(const struct osh_llm_call *c, struct osh_span *rec, const char *path_model,
			bool capture_in, bool capture_out)
{
	const char *model = c->request_model[0] ? c->request_model : path_model;
	int64_t in = c->input_tokens, cache_read = c->cache_read_tokens;
	int64_t cache_write = c->cache_write_tokens;

	if (is_embedding(c))
		osh_span_set_name(rec, "llm.embedding", 13);
	else
		osh_span_set_name(rec, "llm.completion", 14);
	if (model && model[0])
		osh_span_set_str(rec, "gen_ai.request.model", model, strlen(model));
	if (c->max_tokens >= 0)
		osh_span_set_int(rec, "gen_ai.request.max_tokens", c->max_tokens);
	if (c->has_temperature)
		osh_span_set_double(rec, "gen_ai.request.temperature", c->temperature);
	if (c->has_top_p)
		osh_span_set_double(rec, "gen_ai.request.top_p", c->top_p);
	if (c->has_top_k)
		osh_span_set_double(rec, "gen_ai.request.top_k", c->top_k);
	if (c->has_frequency_penalty)
		osh_span_set_double(rec, "gen_ai.request.frequency_penalty", c->frequency_penalty);
	if (c->has_presence_penalty)
		osh_span_set_double(rec, "gen_ai.request.presence_penalty", c->presence_penalty);
	if (c->has_seed)
		osh_span_set_int(rec, "gen_ai.request.seed", c->seed);
	if (c->choice_count >= 0 && c->choice_count != 1)
		osh_span_set_int(rec, "gen_ai.request.choice.count", c->choice_count);
	if (c->n_stop) {
		const char *v[OSH_LLM_MAX_STOP];
		size_t l[OSH_LLM_MAX_STOP];

		for (unsigned i = 0; i < c->n_stop; i++) {
			v[i] = c->stop[i];
			l[i] = strlen(c->stop[i]);
		}
		osh_span_set_strs(rec, "gen_ai.request.stop_sequences", v, l, c->n_stop);
	}
	if (c->stream)
		osh_span_set_bool(rec, "gen_ai.request.stream", true);
	if (is_embedding(c) && c->dimensions > 0)
		osh_span_set_int(rec, "gen_ai.embeddings.dimension.count", c->dimensions);
	if (c->encoding_format[0]) {
		const char *v[1] = { c->encoding_format };
		size_t l[1] = { strlen(c->encoding_format) };

		osh_span_set_strs(rec, "gen_ai.request.encoding_formats", v, l, 1);
	}
	if (c->response_id[0])
		osh_span_set_str(rec, "gen_ai.response.id", c->response_id, strlen(c->response_id));
	if (c->response_model[0])
		osh_span_set_str(rec, "gen_ai.response.model", c->response_model,
				 strlen(c->response_model));
	if (c->system_fingerprint[0])
		osh_span_set_str(rec, "openai.response.system_fingerprint", c->system_fingerprint,
				 strlen(c->system_fingerprint));
	if (c->n_finish) {
		const char *v[OSH_LLM_MAX_FINISH];
		size_t l[OSH_LLM_MAX_FINISH];

		for (unsigned i = 0; i < c->n_finish; i++) {
			/* A choice whose reason never came (a cut stream). */
			v[i] = c->finish[i][0] ? c->finish[i] : "error";
			l[i] = strlen(v[i]);
		}
		osh_span_set_strs(rec, "gen_ai.response.finish_reasons", v, l, c->n_finish);
	}

	/* Anthropic's input_tokens leave the cache out; the conventions count
	 * everything the model read (semconv-genai §4). */
	if (c->anthropic_input >= 0) {
		in = c->anthropic_input + (c->anthropic_cache_read > 0 ? c->anthropic_cache_read : 0) +
		     (c->anthropic_cache_write > 0 ? c->anthropic_cache_write : 0);
		cache_read = c->anthropic_cache_read;
		cache_write = c->anthropic_cache_write;
	}
	if (in >= 0)
		osh_span_set_int(rec, "gen_ai.usage.input_tokens", in);
	if (c->output_tokens >= 0 && !is_embedding(c))
		osh_span_set_int(rec, "gen_ai.usage.output_tokens", c->output_tokens);
	if (cache_read >= 0)
		osh_span_set_int(rec, "gen_ai.usage.cache_read.input_tokens", cache_read);
	if (cache_write >= 0)
		osh_span_set_int(rec, "gen_ai.usage.cache_creation.input_tokens", cache_write);
	if (c->reasoning_tokens >= 0)
		osh_span_set_int(rec, "gen_ai.usage.reasoning.output_tokens", c->reasoning_tokens);
	if (cache_read > 0)
		osh_span_set_bool(rec, "llm.cache.hit", true);

	for (unsigned i = 0; i < c->n_tools; i++) {
		struct osh_event *ev = osh_span_add_event(rec, "gen_ai.tool.call", 16, rec->end_ns);

		if (c->tools[i].name[0])
			osh_event_add_str(rec, ev, "gen_ai.tool.name", 16, c->tools[i].name,
					  strlen(c->tools[i].name));
		if (c->tools[i].id[0])
			osh_event_add_str(rec, ev, "gen_ai.tool.call.id", 19, c->tools[i].id,
					  strlen(c->tools[i].id));
	}
	if (c->dropped_tools && rec->dropped_events < UINT16_MAX - c->dropped_tools)
		rec->dropped_events = (uint16_t)(rec->dropped_events + c->dropped_tools);

	if ((capture_in && c->input.len) || (capture_out && c->output.len)) {
		/* What the record can still hold, shared by both directions
		 * and never more than the attribute length limit. */
		size_t room = (size_t)(OSH_SPAN_ARENA - rec->arena_top - rec->arena_used);
		size_t budget = room > 96 ? room - 96 : 0;
		size_t each = capture_in && capture_out && c->input.len && c->output.len ? budget / 2
											 : budget;
		char *buf;

		/* Cut by the shim, not by the setter: the value stays JSON. */
		if (osh_cfg.attr_value_limit && each > osh_cfg.attr_value_limit)
			each = osh_cfg.attr_value_limit;
		buf = each ? malloc(each + 1) : NULL;

		if (buf && capture_in && c->input.len) {
			size_t n = messages_json(&c->input, NULL, buf, each);

			if (n)
				osh_span_set_str(rec, "gen_ai.input.messages", buf, n);
		}
		if (buf && capture_out && c->output.len) {
			size_t n = messages_json(&c->output, c->n_finish ? c->finish[0] : NULL, buf,
						 each);

			if (n)
				osh_span_set_str(rec, "gen_ai.output.messages", buf, n);
		}
		free(buf);
	}

	if (c->error_type[0]) {
		osh_span_set_str(rec, "error.type", c->error_type, strlen(c->error_type));
		osh_span_set_status(rec, OSH_STATUS_ERROR, NULL);
		return true;
	}
	return false;
}
