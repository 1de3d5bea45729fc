/* OTLP protobuf encoding (see otlp_encode.h).
 *
 * Spans are written straight from struct osh_span into protobuf wire format
 * by hand. protobuf-c's descriptor-driven packer cost ~19,000 instructions
 * per typical span (15 attributes: filling the generated structs, sizing each
 * sub-message once per nesting level, then packing); the writer below takes
 * ~1,400, before attribute records carried their key lengths (callgrind on
 * bench/encode_bench -n). protobuf-c is still used off the hot path: packing
 * the Resource and InstrumentationScope once per encoder, and decoding
 * responses.
 *
 * The bytes are exactly those protobuf-c packs for the same message, which
 * tests/unit/test_otlp_encode.c checks on tables and random spans:
 *  - fields in the order of the descriptor's field list, i.e. by number, so
 *    Span.flags (16) comes after status (15);
 *  - proto3 defaults left out of plain fields (empty bytes/strings, zero
 *    numbers and enums), but a oneof member is written whatever its value,
 *    so AnyValue carries "", 0, false and -0.0; a present sub-message is
 *    written even when empty (KeyValue.value of an unknown attribute type);
 *  - int64 and enums as varints (a negative int64 takes ten bytes), double,
 *    fixed32 and fixed64 little-endian, bool as one varint byte;
 *  - minimal varints for every length prefix, which is why each nested size
 *    is known before its prefix is written.
 * One difference on purpose: arena strings are written with their length.
 * protobuf-c sees C strings and would stop at an embedded NUL; the shim's
 * strings carry none in practice, and cutting one would lose data.
 *
 * Layout of one batch in enc->out:
 *
 *   [slack][request/ResourceSpans/ScopeSpans heads][span 1]...[span n][schema_url]
 *
 * The heads hold lengths that are only known once every span is written, so
 * the spans go after room for the longest possible heads, and the heads are
 * written last, right against the first span; the result starts wherever
 * they start. Within a span each KeyValue, AnyValue and Status is sized
 * before its length prefix, from a few lengths already at hand, so every
 * byte is written once; only the span's own length prefix is settled at the
 * end (see append_span()).
 */
#include "buildconf.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include "export/otlp_encode.h"
#include "resource.h"
#include "span.h"

#define SCOPE_NAME "otelshim"
#define SCHEMA_URL "https://opentelemetry.io/schemas/1.44.0"
#define SCHEMA_URL_LEN (sizeof(SCHEMA_URL) - 1)

/* Span.flags bits above the W3C trace flags (trace.proto SpanFlags). */
#define FLAG_HAS_IS_REMOTE 0x100u
#define FLAG_IS_REMOTE 0x200u

/* Field keys, (number << 3) | wire type; wire types: 0 varint, 1 fixed64,
 * 2 length-delimited, 5 fixed32. The envelope (request.resource_spans = 1,
 * ResourceSpans.resource = 1, .scope_spans = 2, ScopeSpans.scope = 1,
 * .spans = 2, .schema_url = 3) uses the first three. */
#define KEY_LEN1 0x0a
#define KEY_LEN2 0x12
#define KEY_LEN3 0x1a

/* Span (trace.proto). flags is field 16: its key needs two varint bytes. */
#define SPAN_TRACE_ID 0x0a		/* 1, bytes */
#define SPAN_SPAN_ID 0x12		/* 2, bytes */
#define SPAN_TRACE_STATE 0x1a		/* 3, string */
#define SPAN_PARENT_SPAN_ID 0x22	/* 4, bytes */
#define SPAN_NAME 0x2a			/* 5, string */
#define SPAN_KIND 0x30			/* 6, enum */
#define SPAN_START 0x39			/* 7, fixed64 */
#define SPAN_END 0x41			/* 8, fixed64 */
#define SPAN_ATTRIBUTES 0x4a		/* 9, KeyValue */
#define SPAN_DROPPED_ATTRS 0x50		/* 10, uint32 */
#define SPAN_EVENTS 0x5a		/* 11, Span.Event */
#define SPAN_DROPPED_EVENTS 0x60	/* 12, uint32 */
/* Span.Event */
#define EVENT_TIME 0x09			/* 1, fixed64 */
#define EVENT_NAME 0x12			/* 2, string */
#define EVENT_ATTRIBUTES 0x1a		/* 3, KeyValue */
#define SPAN_STATUS 0x7a		/* 15, Status */
#define SPAN_FLAGS_0 0x85		/* 16, fixed32: (16 << 3 | 5) as a varint */
#define SPAN_FLAGS_1 0x01

/* Status: message = 2 (string), code = 3 (enum). */
#define STATUS_MESSAGE 0x12
#define STATUS_CODE 0x18

/* KeyValue: key = 1 (string), value = 2 (AnyValue). */
#define KV_KEY 0x0a
#define KV_VALUE 0x12

/* AnyValue oneof members. */
#define ANY_STRING 0x0a		/* 1, string */
#define ANY_BOOL 0x10		/* 2, bool */
#define ANY_INT 0x18		/* 3, int64 */
#define ANY_DOUBLE 0x21		/* 4, double */
#define ANY_ARRAY 0x2a		/* 5, ArrayValue */
#define ARRAY_VALUES 0x0a	/* ArrayValue.values = 1 */

/* Longest varint (a 64-bit value). */
#define VARINT_MAX 10

struct osh_otlp_encoder {
	uint8_t *resource;	/* packed Resource */
	size_t resource_len;
	uint8_t *scope;		/* packed InstrumentationScope */
	size_t scope_len;

	uint8_t *out;		/* the batch being written, grown on demand */
	size_t out_cap;
	size_t off;		/* end of the spans added so far */
	size_t pending;		/* spans added since the last finish */
};

/* Bytes in the varint for @v: one per started group of seven bits. Most
 * lengths and numbers in a span fit in one byte, hence the first test. */
static inline size_t varint_len(uint64_t v)
{
	unsigned bits;

	if (v < 0x80)
		return 1;
	bits = 64u - (unsigned)__builtin_clzll(v);
	return (bits * 9u + 64u) / 64u;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static inline uint8_t *put_fixed32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
	return p + 4;
}

static inline uint8_t *put_fixed64(uint8_t *p, uint64_t v)
{
	put_fixed32(p, (uint32_t)v);
	put_fixed32(p + 4, (uint32_t)(v >> 32));
	return p + 8;
}

/* A length-delimited field: one-byte key, length, @len bytes. */
static inline size_t field_len(size_t len)
{
	return 1 + varint_len(len) + len;
}

static inline uint8_t *put_header(uint8_t *p, uint8_t key, size_t len)
{
	*p++ = key;
	return put_varint(p, len);
}

/* memcpy() for the short strings spans are made of (keys, methods, hosts),
 * inline: a libc call costs as much as the copy itself at these sizes. Each
 * case moves the first and the last bytes with two possibly overlapping
 * loads and stores, so nothing outside [@src, @src + @n) is read. */
static inline void copy_bytes(uint8_t *dst, const void *src, size_t n)
{
	const uint8_t *s = src;

	if (n > 32) {
		memcpy(dst, s, n);
	} else if (n >= 16) {
		uint64_t a[2], b[2];

		memcpy(a, s, 16);
		memcpy(b, s + n - 16, 16);
		memcpy(dst, a, 16);
		memcpy(dst + n - 16, b, 16);
	} else if (n >= 8) {
		uint64_t a, b;

		memcpy(&a, s, 8);
		memcpy(&b, s + n - 8, 8);
		memcpy(dst, &a, 8);
		memcpy(dst + n - 8, &b, 8);
	} else if (n >= 4) {
		uint32_t a, b;

		memcpy(&a, s, 4);
		memcpy(&b, s + n - 4, 4);
		memcpy(dst, &a, 4);
		memcpy(dst + n - 4, &b, 4);
	} else if (n > 0) {
		/* 1 to 3 bytes: first, middle and last cover them all. */
		uint8_t a = s[0], m = s[n / 2], z = s[n - 1];

		dst[0] = a;
		dst[n / 2] = m;
		dst[n - 1] = z;
	}
}

static inline uint8_t *put_bytes(uint8_t *p, uint8_t key, const void *s, size_t len)
{
	p = put_header(p, key, len);
	copy_bytes(p, s, len);
	return p + len;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Make room for @need more bytes after @used, keeping what is written. */
static bool grow(struct osh_otlp_encoder *enc, size_t used, size_t need)
{
	size_t cap = enc->out_cap ? enc->out_cap : 4096;
	uint8_t *p;

	if (need > SIZE_MAX - used)
		return false;
	need += used;
	if (need <= enc->out_cap)
		return true;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(enc->out, cap);
	if (!p)
		return false;
	/* Have the kernel populate the new part in one call rather than take
	 * a fault per page as spans are written into it (~9 us each on the
	 * VMs this runs on, ~0.4 us populated). Best effort: older kernels
	 * refuse the advice, and then nothing changes. */
	if (cap >= 16384) {
		uintptr_t from = ((uintptr_t)p + enc->out_cap + 4095) & ~(uintptr_t)4095;
		uintptr_t to = ((uintptr_t)p + cap) & ~(uintptr_t)4095;

		if (to > from)
			(void)madvise((void *)from, to - from, MADV_POPULATE_WRITE);
	}
	enc->out = p;
	enc->out_cap = cap;
	return true;
}

static inline bool ensure(struct osh_otlp_encoder *enc, size_t used, size_t need)
{
	return need <= enc->out_cap - used || grow(enc, used, need);
}

static uint8_t *pack_message(const ProtobufCMessage *m, size_t *ret_len)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *p = malloc(len ? len : 1);

	if (!p)
		return NULL;
	*ret_len = protobuf_c_message_pack(m, p);
	return p;
}

/* Pack the resource once; the temporary tree is freed right away. */
static int pack_resource(struct osh_otlp_encoder *enc, const struct osh_resource *res)
{
	Opentelemetry__Proto__Resource__V1__Resource r =
		OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
	static const Opentelemetry__Proto__Common__V1__KeyValue kv_init =
		OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
	static const Opentelemetry__Proto__Common__V1__AnyValue any_init =
		OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	size_t n = res ? res->n : 0;
	Opentelemetry__Proto__Common__V1__KeyValue *kvs = NULL, **kv_ptrs = NULL;
	Opentelemetry__Proto__Common__V1__AnyValue *anys = NULL;
	int ret = -ENOMEM;

	if (n) {
		kvs = calloc(n, sizeof(*kvs));
		kv_ptrs = calloc(n, sizeof(*kv_ptrs));
		anys = calloc(n, sizeof(*anys));
		if (!kvs || !kv_ptrs || !anys)
			goto out;
	}
	/* Resource strings are already C strings: no copies needed. */
	for (size_t i = 0; i < n; i++) {
		const struct osh_resource_attr *a = &res->attrs[i];

		kvs[i] = kv_init;
		anys[i] = any_init;
		kvs[i].key = a->key;
		kvs[i].value = &anys[i];
		if (a->is_int) {
			anys[i].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
			anys[i].int_value = a->i;
		} else {
			anys[i].value_case =
				OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
			anys[i].string_value = a->str ? a->str : (char *)"";
		}
		kv_ptrs[i] = &kvs[i];
	}
	r.n_attributes = n;
	r.attributes = kv_ptrs;
	enc->resource = pack_message(&r.base, &enc->resource_len);
	if (enc->resource)
		ret = 0;
out:
	free(anys);
	free(kv_ptrs);
	free(kvs);
	return ret;
}

static int pack_scope(struct osh_otlp_encoder *enc)
{
	Opentelemetry__Proto__Common__V1__InstrumentationScope scope =
		OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;

	scope.name = (char *)SCOPE_NAME;
	scope.version = (char *)OSH_VERSION;
	enc->scope = pack_message(&scope.base, &enc->scope_len);
	return enc->scope ? 0 : -ENOMEM;
}

struct osh_otlp_encoder *osh_otlp_encoder_create(const struct osh_resource *res)
{
	struct osh_otlp_encoder *enc = calloc(1, sizeof(*enc));

	if (!enc)
		return NULL;
	if (pack_resource(enc, res) < 0 || pack_scope(enc) < 0) {
		osh_otlp_encoder_destroy(enc);
		return NULL;
	}
	return enc;
}

void osh_otlp_encoder_destroy(struct osh_otlp_encoder *enc)
{
	if (!enc)
		return;
	free(enc->resource);
	free(enc->scope);
	free(enc->out);
	free(enc);
}

/* AnyValue body of a non-string attribute: exactly one oneof member, even at
 * its default value. */
static inline size_t scalar_len(const struct osh_attr *a)
{
	if (a->type == OSH_ATTR_INT)
		return 1 + varint_len((uint64_t)a->v.i);
	if (a->type == OSH_ATTR_BOOL)
		return 1 + 1;
	if (a->type == OSH_ATTR_DOUBLE)
		return 1 + 8;
	/* Not produced by the setters: an empty AnyValue, still valid OTLP. */
	return 0;
}

static inline uint8_t *put_scalar(uint8_t *p, const struct osh_attr *a)
{
	uint64_t bits;

	if (a->type == OSH_ATTR_INT) {
		*p++ = ANY_INT;
		return put_varint(p, (uint64_t)a->v.i);
	}
	if (a->type == OSH_ATTR_BOOL) {
		*p++ = ANY_BOOL;
		*p++ = a->v.b ? 1 : 0;
		return p;
	}
	if (a->type == OSH_ATTR_DOUBLE) {
		/* IEEE-754 bits as they are: -0.0 and NaN payloads survive. */
		memcpy(&bits, &a->v.d, sizeof(bits));
		*p++ = ANY_DOUBLE;
		return put_fixed64(p, bits);
	}
	return p;
}

/* Status is written whenever the code is set (UNSET is its default and the
 * message means nothing without ERROR), as the protobuf-c encoder did. */
static inline size_t status_message_len(const struct osh_span *s)
{
	return s->status_code == OSH_STATUS_ERROR ? s->status_message.len : 0;
}

/* Encoded size of a KeyValue's body (key and AnyValue) and of its AnyValue. */
/* Body of an ArrayValue of strings: each element an AnyValue. */
static size_t strs_body_len(const struct osh_span *s, const struct osh_attr *a)
{
	const char *region = osh_span_str(s, a->v.s), *e;
	size_t at = 0, n, body = 0;

	while (osh_span_strs_next(region, a->v.s.len, &at, &e, &n))
		body += field_len(field_len(n));
	return body;
}

static inline size_t kv_body_len_of(const struct osh_span *s, const struct osh_attr *a,
				    size_t *ret_any)
{
	size_t any = a->type == OSH_ATTR_STRING	      ? field_len(a->v.s.len)
		     : a->type == OSH_ATTR_STRING_ARRAY ? field_len(strs_body_len(s, a))
							: scalar_len(a);

	*ret_any = any;
	return field_len(any) + (a->key_len ? field_len(a->key_len) : 0);
}

static inline size_t kv_body_len(const struct osh_attr *a, size_t *ret_any)
{
	size_t any = a->type == OSH_ATTR_STRING ? field_len(a->v.s.len) : scalar_len(a);

	*ret_any = any;
	return field_len(any) + (a->key_len ? field_len(a->key_len) : 0);
}

static uint8_t *put_kv(uint8_t *p, uint8_t key, const struct osh_span *s,
		       const struct osh_attr *a)
{
	size_t any, kv = kv_body_len_of(s, a, &any);

	p = put_header(p, key, kv);
	if (a->key_len)
		p = put_bytes(p, KV_KEY, a->key, a->key_len);
	p = put_header(p, KV_VALUE, any);
	if (a->type == OSH_ATTR_STRING)
		return put_bytes(p, ANY_STRING, osh_span_str(s, a->v.s), a->v.s.len);
	if (a->type == OSH_ATTR_STRING_ARRAY) {
		const char *region = osh_span_str(s, a->v.s), *e;
		size_t at = 0, n;

		p = put_header(p, ANY_ARRAY, strs_body_len(s, a));
		while (osh_span_strs_next(region, a->v.s.len, &at, &e, &n)) {
			p = put_header(p, ARRAY_VALUES, field_len(n));
			p = put_bytes(p, ANY_STRING, e, n);
		}
		return p;
	}
	return put_scalar(p, a);
}

/* Worst case of everything in a Span but the attributes and the three
 * strings (trace_state, name, status message): keys, ids, varints at their
 * longest, fixed-width numbers (the last term: dropped_events_count; the
 * events themselves make their own room). */
#define SPAN_FIXED_MAX                                                                       \
	((2 + 16) + (2 + 8) + (1 + 3) + (2 + 8) + (1 + 3) + (1 + 2) + (1 + 8) + (1 + 8) +     \
	 (1 + 5) + (1 + 5 + 1 + 3 + 1 + 2) + (2 + 4) + (1 + 3))
/* Largest Span.attributes field written without a room check: a KeyValue
 * under 128 bytes behind its key and one-byte length. */
#define ATTR_FAST_MAX (1 + 1 + 0x7f)

/* Where the Span body starts after its key: a guess at the length of the
 * length, right for the usual span of 128 bytes to 16 KiB. */
#define SPAN_LEN_GUESS 2

/* Room for @need bytes at @p; *@end is the end of the buffer. Returns @p,
 * moved along with the buffer if it had to grow, or NULL. */
static uint8_t *room(struct osh_otlp_encoder *enc, uint8_t *p, uint8_t **end, size_t need)
{
	size_t used = (size_t)(p - enc->out);

	if (!grow(enc, used, need))
		return NULL;
	*end = enc->out + enc->out_cap;
	return enc->out + used;
}

/* Span.events for @s at @p, making room for each (and still @reserve bytes
 * after it); the cursor after them, or NULL when memory is short. Rare:
 * only spans that carry events (an LLM response's tool calls) come here. */
static uint8_t *put_events(struct osh_otlp_encoder *enc, const struct osh_span *s, uint8_t *p,
			   uint8_t **end, size_t reserve)
{
	unsigned n = s->n_events < OSH_SPAN_MAX_EVENTS ? s->n_events : OSH_SPAN_MAX_EVENTS;

	for (unsigned e = 0; e < n; e++) {
		const struct osh_event *ev = &s->events[e];
		unsigned na = ev->n_attrs < OSH_EVENT_MAX_ATTRS ? ev->n_attrs : OSH_EVENT_MAX_ATTRS;
		size_t body = 1 + 8 + field_len(ev->name.len), any;

		for (unsigned i = 0; i < na; i++)
			body += field_len(kv_body_len(&ev->attrs[i], &any));
		if ((size_t)(*end - p) < field_len(body) + reserve) {
			p = room(enc, p, end, field_len(body) + reserve);
			if (!p)
				return NULL;
		}
		p = put_header(p, SPAN_EVENTS, body);
		*p++ = EVENT_TIME;
		p = put_fixed64(p, ev->time_ns);
		p = put_bytes(p, EVENT_NAME, osh_span_str(s, ev->name), ev->name.len);
		for (unsigned i = 0; i < na; i++)
			p = put_kv(p, EVENT_ATTRIBUTES, s, &ev->attrs[i]);
	}
	return p;
}

/* Append the ScopeSpans.spans field for @s at enc->out + *off and advance
 * *off. 0 or -ENOMEM.
 *
 * Every KeyValue and AnyValue is sized before it is written. The Span's own
 * length is only known at the end, so the body is written SPAN_LEN_GUESS
 * bytes after its key and moved when the length turns out longer or shorter
 * (a span under 128 bytes, or over 16 KiB). Room is made first for the
 * span with every attribute under 128 bytes; a larger attribute checks for
 * itself and keeps that reserve for the ones after it. */
static int append_span(struct osh_otlp_encoder *enc, size_t *off, const struct osh_span *s)
{
	/* The setters never exceed the array; a corrupt count must not read past it. */
	const unsigned n_attrs = s->n_attrs < OSH_SPAN_MAX_ATTRS ? s->n_attrs : OSH_SPAN_MAX_ATTRS;
	const size_t trace_state_len = s->trace_state.len, name_len = s->name.len;
	const size_t msg_len = status_message_len(s);
	const size_t tail_max = SPAN_FIXED_MAX + msg_len;
	const size_t body_off = *off + 1 + SPAN_LEN_GUESS;
	uint32_t flags = s->trace_flags | FLAG_HAS_IS_REMOTE;
	size_t body_len, head_len;
	uint8_t *p, *end;

	if (!ensure(enc, *off,
		    1 + SPAN_LEN_GUESS + tail_max + trace_state_len + name_len +
			    n_attrs * ATTR_FAST_MAX))
		return -ENOMEM;
	p = enc->out + body_off;
	end = enc->out + enc->out_cap;

	p = put_bytes(p, SPAN_TRACE_ID, s->trace_id, sizeof(s->trace_id));
	p = put_bytes(p, SPAN_SPAN_ID, s->span_id, sizeof(s->span_id));
	if (trace_state_len)
		p = put_bytes(p, SPAN_TRACE_STATE, osh_span_str(s, s->trace_state),
			      trace_state_len);
	if (s->has_parent)
		p = put_bytes(p, SPAN_PARENT_SPAN_ID, s->parent_span_id, sizeof(s->parent_span_id));
	if (name_len)
		p = put_bytes(p, SPAN_NAME, osh_span_str(s, s->name), name_len);
	if (s->kind) {
		*p++ = SPAN_KIND;
		p = put_varint(p, s->kind);
	}
	if (s->start_ns) {
		*p++ = SPAN_START;
		p = put_fixed64(p, s->start_ns);
	}
	if (s->end_ns) {
		*p++ = SPAN_END;
		p = put_fixed64(p, s->end_ns);
	}

	for (unsigned i = 0; i < n_attrs; i++) {
		/* Locals: stores through the uint8_t cursor may alias anything,
		 * and would otherwise make the compiler reload each field. */
		const struct osh_attr *a = &s->attrs[i];
		size_t any, need;
		const char *key = a->key;
		const size_t key_len = a->key_len;
		const bool is_str = a->type == OSH_ATTR_STRING;
		const struct osh_sref val = a->v.s;

		if (__builtin_expect(a->type == OSH_ATTR_STRING_ARRAY, 0)) {
			size_t body = kv_body_len_of(s, a, &any);

			need = field_len(body) + (n_attrs - i - 1) * ATTR_FAST_MAX + tail_max;
			if ((size_t)(end - p) < need) {
				p = room(enc, p, &end, need);
				if (!p)
					return -ENOMEM;
			}
			p = put_kv(p, SPAN_ATTRIBUTES, s, a);
			continue;
		}
		/* KeyValue size if the key and value lengths take one byte
		 * each: true when the total stays under 128, as each length
		 * inside is then smaller still. */
		size_t kv = 1 + 1 + key_len + 1 + 1 +
			    (is_str ? 1 + 1 + (size_t)val.len : scalar_len(a));

		if (kv < 0x80 && key_len) {
			/* At most ATTR_FAST_MAX bytes, reserved above. */
			p[0] = SPAN_ATTRIBUTES;
			p[1] = (uint8_t)kv;
			p[2] = KV_KEY;
			p[3] = (uint8_t)key_len;
			copy_bytes(p + 4, key, key_len);
			p += 4 + key_len;
			p[0] = KV_VALUE;
			if (is_str) {
				p[1] = (uint8_t)(1 + 1 + val.len);
				p[2] = ANY_STRING;
				p[3] = (uint8_t)val.len;
				copy_bytes(p + 4, osh_span_str(s, val), val.len);
				p += 4 + val.len;
			} else {
				p[1] = (uint8_t)(kv - (1 + 1 + key_len + 1 + 1));
				p = put_scalar(p + 2, a);
			}
			continue;
		}
		any = is_str ? field_len(val.len) : scalar_len(a);
		kv = field_len(any) + (key_len ? field_len(key_len) : 0);
		/* This attribute, and still the reserve for the ones after it. */
		need = field_len(kv) + (n_attrs - i - 1) * ATTR_FAST_MAX + tail_max;
		if ((size_t)(end - p) < need) {
			p = room(enc, p, &end, need);
			if (!p)
				return -ENOMEM;
		}
		p = put_header(p, SPAN_ATTRIBUTES, kv);
		if (key_len)
			p = put_bytes(p, KV_KEY, key, key_len);
		p = put_header(p, KV_VALUE, any);
		if (is_str)
			p = put_bytes(p, ANY_STRING, osh_span_str(s, val), val.len);
		else
			p = put_scalar(p, a);
	}

	if (s->dropped_attrs) {
		*p++ = SPAN_DROPPED_ATTRS;
		p = put_varint(p, s->dropped_attrs);
	}
	if (__builtin_expect(s->n_events != 0, 0)) {
		p = put_events(enc, s, p, &end, tail_max);
		if (!p)
			return -ENOMEM;
	}
	if (s->dropped_events) {
		*p++ = SPAN_DROPPED_EVENTS;
		p = put_varint(p, s->dropped_events);
	}
	if (s->status_code != OSH_STATUS_UNSET) {
		size_t code = 1 + varint_len(s->status_code);

		p = put_header(p, SPAN_STATUS, (msg_len ? field_len(msg_len) : 0) + code);
		if (msg_len)
			p = put_bytes(p, STATUS_MESSAGE, osh_span_str(s, s->status_message),
				      msg_len);
		*p++ = STATUS_CODE;
		p = put_varint(p, s->status_code);
	}
	if (s->parent_remote)
		flags |= FLAG_IS_REMOTE;
	*p++ = SPAN_FLAGS_0;
	*p++ = SPAN_FLAGS_1;
	p = put_fixed32(p, flags);

	body_len = (size_t)(p - enc->out) - body_off;
	head_len = field_len(body_len) - body_len;
	if (head_len != 1 + SPAN_LEN_GUESS) {
		if (head_len > 1 + SPAN_LEN_GUESS && !ensure(enc, (size_t)(p - enc->out), head_len))
			return -ENOMEM;
		memmove(enc->out + *off + head_len, enc->out + body_off, body_len);
	}
	(void)put_header(enc->out + *off, KEY_LEN2, body_len);
	*off += head_len + body_len;
	return 0;
}

/* Longest request/ResourceSpans/ScopeSpans heads: fixed but for two lengths. */
static size_t head_max(const struct osh_otlp_encoder *enc)
{
	return (1 + VARINT_MAX) + field_len(enc->resource_len) + (1 + VARINT_MAX) +
	       field_len(enc->scope_len);
}

int osh_otlp_encoder_add(struct osh_otlp_encoder *enc, struct osh_span *const *spans, size_t n)
{
	size_t slack = head_max(enc);

	if (!enc->pending) {
		if (!ensure(enc, 0, slack))
			return -ENOMEM;
		enc->off = slack;
	}
	for (size_t i = 0; i < n; i++) {
		size_t off = enc->off;

		/* A span that does not fit is left out whole. */
		if (append_span(enc, &off, spans[i]) < 0)
			return -ENOMEM;
		enc->off = off;
		enc->pending++;
	}
	return 0;
}

size_t osh_otlp_encoder_pending(const struct osh_otlp_encoder *enc)
{
	return enc->pending;
}

int osh_otlp_encoder_finish(struct osh_otlp_encoder *enc, const uint8_t **ret_buf,
			    size_t *ret_len)
{
	size_t slack = head_max(enc), ss_len, rs_len, head;
	uint8_t *p;

	/* otlp.md §1: no empty envelopes; an empty request is still valid. */
	if (!enc->pending) {
		if (!ensure(enc, 0, 1))
			return -ENOMEM;
		*ret_buf = enc->out;
		*ret_len = 0;
		return 0;
	}
	enc->pending = 0;
	if (!ensure(enc, enc->off, field_len(SCHEMA_URL_LEN)))
		return -ENOMEM;
	p = put_bytes(enc->out + enc->off, KEY_LEN3, SCHEMA_URL, SCHEMA_URL_LEN);

	ss_len = field_len(enc->scope_len) + (size_t)(p - enc->out) - slack;
	rs_len = field_len(enc->resource_len) + field_len(ss_len);
	head = field_len(rs_len) - rs_len + field_len(enc->resource_len) +
	       field_len(ss_len) - ss_len + field_len(enc->scope_len);
	*ret_buf = enc->out + slack - head;
	*ret_len = (size_t)(p - *ret_buf);

	p = enc->out + slack - head;
	p = put_header(p, KEY_LEN1, rs_len);
	p = put_bytes(p, KEY_LEN1, enc->resource, enc->resource_len);
	p = put_header(p, KEY_LEN2, ss_len);
	(void)put_bytes(p, KEY_LEN1, enc->scope, enc->scope_len);
	return 0;
}

int osh_otlp_encoder_encode(struct osh_otlp_encoder *enc, struct osh_span *const *spans,
			    size_t n, const uint8_t **ret_buf, size_t *ret_len)
{
	enc->pending = 0;
	if (osh_otlp_encoder_add(enc, spans, n) < 0) {
		enc->pending = 0;
		return -ENOMEM;
	}
	return osh_otlp_encoder_finish(enc, ret_buf, ret_len);
}

int osh_otlp_encode(const struct osh_resource *res, struct osh_span *const *spans, size_t n,
		    uint8_t **ret_buf, size_t *ret_len)
{
	struct osh_otlp_encoder *enc = osh_otlp_encoder_create(res);
	const uint8_t *buf;
	size_t len;
	int r;

	if (!enc)
		return -ENOMEM;
	r = osh_otlp_encoder_encode(enc, spans, n, &buf, &len);
	if (r == 0) {
		/* Hand the encoder's output buffer over instead of copying the
		 * request; it starts after the unused head room. */
		memmove(enc->out, buf, len);
		*ret_buf = enc->out;
		*ret_len = len;
		enc->out = NULL;
	}
	osh_otlp_encoder_destroy(enc);
	return r;
}

int osh_otlp_decode_response(const uint8_t *buf, size_t len, int64_t *ret_rejected, char *msg,
			     size_t msgsz)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *resp;
	int64_t rejected = 0;
	const char *text = "";

	resp = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
		NULL, len, buf);
	if (!resp)
		return -EINVAL;
	if (resp->partial_success) {
		rejected = resp->partial_success->rejected_spans;
		if (resp->partial_success->error_message)
			text = resp->partial_success->error_message;
	}
	if (msg && msgsz) {
		size_t l = strnlen(text, msgsz - 1);

		memcpy(msg, text, l);
		msg[l] = '\0';
	}
	*ret_rejected = rejected;
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(
		resp, NULL);
	return 0;
}
