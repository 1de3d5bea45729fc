/* OTLP protobuf encoding with protobuf-c (see otlp_encode.h).
 *
 * Each span becomes a protobuf-c Span message built in one scratch block owned
 * by the encoder: the generated structs, the pointer arrays protobuf-c wants,
 * and NUL-terminated copies of the span arena strings (protobuf-c string
 * fields are C strings; arena strings are not terminated). The block only
 * grows, so a steady exporter encodes batch after batch without malloc.
 *
 * The envelope around the spans (ExportTraceServiceRequest > ResourceSpans >
 * ScopeSpans) is written here as three length-delimited headers, with the
 * Resource and InstrumentationScope packed once at creation. protobuf-c
 * recomputes a sub-message's size every time it writes the length prefix,
 * so packing the whole tree in one call sizes each attribute once per
 * nesting level (six times); packing span by span sizes it three times,
 * which is where most of the encoding time goes. The bytes are the same:
 * fields in number order, as protobuf-c writes them.
 */
#include "buildconf.h"

#include <errno.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include "export/otlp_encode.h"
#include "resource.h"
#include "span.h"

#define SCOPE_NAME "otelshim"
#define SCHEMA_URL "https://opentelemetry.io/schemas/1.44.0"

/* Span.flags bits above the W3C trace flags (trace.proto SpanFlags). */
#define FLAG_HAS_IS_REMOTE 0x100u
#define FLAG_IS_REMOTE 0x200u

/* Length-delimited field keys, (number << 3) | 2: the request's
 * resource_spans (1), ResourceSpans.resource (1) and .scope_spans (2),
 * ScopeSpans.scope (1), .spans (2) and .schema_url (3). */
#define KEY_FIELD1 0x0a
#define KEY_FIELD2 0x12
#define KEY_FIELD3 0x1a

static const Opentelemetry__Proto__Trace__V1__Span span_init =
	OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
static const Opentelemetry__Proto__Trace__V1__Status status_init =
	OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
static const Opentelemetry__Proto__Common__V1__KeyValue kv_init =
	OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
static const Opentelemetry__Proto__Common__V1__AnyValue any_init =
	OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;

struct osh_otlp_encoder {
	uint8_t *resource;	/* packed Resource */
	size_t resource_len;
	uint8_t *scope;		/* packed InstrumentationScope */
	size_t scope_len;

	void *scratch;		/* per-batch message tree, grown on demand */
	size_t scratch_cap;
	uint8_t *out;		/* packed request, grown on demand */
	size_t out_cap;
};

static size_t align_up(size_t v)
{
	const size_t a = alignof(max_align_t);

	return (v + a - 1) & ~(a - 1);
}

/* Offsets of the parts of one scratch block, each part aligned. */
struct layout {
	size_t spans, span_sizes, statuses, kvs, kv_ptrs, anys, chars, total;
};

static void layout_compute(struct layout *l, size_t n_spans, size_t n_status, size_t n_attrs,
			   size_t n_chars)
{
	size_t off = 0;

	l->spans = off;
	off = align_up(off + n_spans * sizeof(Opentelemetry__Proto__Trace__V1__Span));
	l->span_sizes = off;
	off = align_up(off + n_spans * sizeof(size_t));
	l->statuses = off;
	off = align_up(off + n_status * sizeof(Opentelemetry__Proto__Trace__V1__Status));
	l->kvs = off;
	off = align_up(off + n_attrs * sizeof(Opentelemetry__Proto__Common__V1__KeyValue));
	l->kv_ptrs = off;
	off = align_up(off + n_attrs * sizeof(Opentelemetry__Proto__Common__V1__KeyValue *));
	l->anys = off;
	off = align_up(off + n_attrs * sizeof(Opentelemetry__Proto__Common__V1__AnyValue));
	l->chars = off;
	off += n_chars;
	l->total = off ? off : 1;
}

/* Grow-only buffer; the old contents are not kept. */
static bool reserve(void **buf, size_t *cap, size_t need)
{
	void *p;
	size_t n;

	if (need <= *cap)
		return true;
	n = *cap ? *cap : 4096;
	while (n < need)
		n = n > SIZE_MAX / 2 ? need : n * 2;
	p = malloc(n);
	if (!p)
		return false;
	free(*buf);
	*buf = p;
	*cap = n;
	return true;
}

static size_t varint_len(size_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

static uint8_t *put_varint(uint8_t *p, size_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Size of a length-delimited field with a one-byte key and @len bytes. */
static size_t field_len(size_t len)
{
	return 1 + varint_len(len) + len;
}

static uint8_t *put_header(uint8_t *p, uint8_t key, size_t len)
{
	*p++ = key;
	return put_varint(p, len);
}

/* Copy @len bytes to *@cursor as a C string and advance the cursor. */
static char *put_str(char **cursor, const char *s, size_t len)
{
	char *d = *cursor;

	memcpy(d, s, len);
	d[len] = '\0';
	*cursor = d + len + 1;
	return d;
}

static char *put_sref(char **cursor, const struct osh_span *span, struct osh_sref ref)
{
	return put_str(cursor, osh_span_str(span, ref), ref.len);
}

static bool has_status_message(const struct osh_span *s)
{
	return s->status_code == OSH_STATUS_ERROR && s->status_message.len > 0;
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
	size_t n = res ? res->n : 0;
	Opentelemetry__Proto__Common__V1__KeyValue *kvs, **kv_ptrs;
	Opentelemetry__Proto__Common__V1__AnyValue *anys;
	struct layout l;
	void *mem;

	/* Resource strings are already C strings: no copies needed. */
	layout_compute(&l, 0, 0, n, 0);
	mem = malloc(l.total);
	if (!mem)
		return -ENOMEM;
	kvs = (void *)((char *)mem + l.kvs);
	kv_ptrs = (void *)((char *)mem + l.kv_ptrs);
	anys = (void *)((char *)mem + l.anys);
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
	r.attributes = n ? kv_ptrs : NULL;
	enc->resource = pack_message(&r.base, &enc->resource_len);
	free(mem);
	return enc->resource ? 0 : -ENOMEM;
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
	free(enc->scratch);
	free(enc->out);
	free(enc);
}

static void fill_attr(Opentelemetry__Proto__Common__V1__KeyValue *kv,
		      Opentelemetry__Proto__Common__V1__AnyValue *any, const struct osh_span *s,
		      const struct osh_attr *a, char **cursor)
{
	*kv = kv_init;
	*any = any_init;
	/* Keys are string literals in the shim: terminated and static, never copied. */
	kv->key = (char *)a->key;
	kv->value = any;
	switch (a->type) {
	case OSH_ATTR_STRING:
		any->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
		any->string_value = put_sref(cursor, s, a->v.s);
		break;
	case OSH_ATTR_INT:
		any->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
		any->int_value = a->v.i;
		break;
	case OSH_ATTR_DOUBLE:
		any->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
		any->double_value = a->v.d;
		break;
	case OSH_ATTR_BOOL:
		any->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
		any->bool_value = a->v.b;
		break;
	default:
		/* Not produced by the setters; an empty AnyValue is still valid OTLP. */
		break;
	}
}

static void fill_span(Opentelemetry__Proto__Trace__V1__Span *ps,
		      Opentelemetry__Proto__Trace__V1__Status *st,
		      Opentelemetry__Proto__Common__V1__KeyValue *kvs,
		      Opentelemetry__Proto__Common__V1__KeyValue **kv_ptrs,
		      Opentelemetry__Proto__Common__V1__AnyValue *anys, struct osh_span *s,
		      char **cursor)
{
	*ps = span_init;
	ps->trace_id.len = sizeof(s->trace_id);
	ps->trace_id.data = s->trace_id;
	ps->span_id.len = sizeof(s->span_id);
	ps->span_id.data = s->span_id;
	if (s->has_parent) {
		ps->parent_span_id.len = sizeof(s->parent_span_id);
		ps->parent_span_id.data = s->parent_span_id;
	}
	if (s->trace_state.len)
		ps->trace_state = put_sref(cursor, s, s->trace_state);
	ps->flags = s->trace_flags | FLAG_HAS_IS_REMOTE | (s->parent_remote ? FLAG_IS_REMOTE : 0);
	ps->name = put_sref(cursor, s, s->name);
	ps->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
	ps->start_time_unix_nano = s->start_ns;
	ps->end_time_unix_nano = s->end_ns;
	ps->dropped_attributes_count = s->dropped_attrs;
	for (unsigned i = 0; i < s->n_attrs; i++) {
		fill_attr(&kvs[i], &anys[i], s, &s->attrs[i], cursor);
		kv_ptrs[i] = &kvs[i];
	}
	ps->n_attributes = s->n_attrs;
	ps->attributes = s->n_attrs ? kv_ptrs : NULL;
	if (st) {
		*st = status_init;
		st->code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)s->status_code;
		if (has_status_message(s))
			st->message = put_sref(cursor, s, s->status_message);
		ps->status = st;
	}
}

int osh_otlp_encoder_encode(struct osh_otlp_encoder *enc, struct osh_span *const *spans,
			    size_t n, const uint8_t **ret_buf, size_t *ret_len)
{
	size_t n_status = 0, n_attrs = 0, n_chars = 0, attr_i = 0, status_i = 0;
	size_t ss_len, rs_len, total;
	struct layout l;
	char *base, *cursor;
	Opentelemetry__Proto__Trace__V1__Span *ps;
	Opentelemetry__Proto__Trace__V1__Status *sts;
	Opentelemetry__Proto__Common__V1__KeyValue *kvs, **kv_ptrs;
	Opentelemetry__Proto__Common__V1__AnyValue *anys;
	size_t *sizes;
	uint8_t *p;

	/* otlp.md §1: no empty envelopes; an empty request is still valid. */
	if (n == 0) {
		if (!reserve((void **)&enc->out, &enc->out_cap, 1))
			return -ENOMEM;
		*ret_buf = enc->out;
		*ret_len = 0;
		return 0;
	}

	/* First pass: exact sizes, so the whole tree fits in one block. */
	for (size_t i = 0; i < n; i++) {
		const struct osh_span *s = spans[i];

		n_attrs += s->n_attrs;
		n_chars += s->name.len + 1u;
		if (s->trace_state.len)
			n_chars += s->trace_state.len + 1u;
		if (s->status_code != OSH_STATUS_UNSET) {
			n_status++;
			if (has_status_message(s))
				n_chars += s->status_message.len + 1u;
		}
		for (unsigned j = 0; j < s->n_attrs; j++)
			if (s->attrs[j].type == OSH_ATTR_STRING)
				n_chars += s->attrs[j].v.s.len + 1u;
	}
	layout_compute(&l, n, n_status, n_attrs, n_chars);
	if (!reserve(&enc->scratch, &enc->scratch_cap, l.total))
		return -ENOMEM;
	base = enc->scratch;
	ps = (void *)(base + l.spans);
	sizes = (void *)(base + l.span_sizes);
	sts = (void *)(base + l.statuses);
	kvs = (void *)(base + l.kvs);
	kv_ptrs = (void *)(base + l.kv_ptrs);
	anys = (void *)(base + l.anys);
	cursor = base + l.chars;

	ss_len = field_len(enc->scope_len) + field_len(sizeof(SCHEMA_URL) - 1);
	for (size_t i = 0; i < n; i++) {
		struct osh_span *s = spans[i];
		Opentelemetry__Proto__Trace__V1__Status *st = NULL;

		/* UNSET is the proto3 default: leave Status out entirely. */
		if (s->status_code != OSH_STATUS_UNSET)
			st = &sts[status_i++];
		fill_span(&ps[i], st, &kvs[attr_i], &kv_ptrs[attr_i], &anys[attr_i], s, &cursor);
		attr_i += s->n_attrs;
		sizes[i] = opentelemetry__proto__trace__v1__span__get_packed_size(&ps[i]);
		ss_len += field_len(sizes[i]);
	}
	rs_len = field_len(enc->resource_len) + field_len(ss_len);
	total = field_len(rs_len);
	if (!reserve((void **)&enc->out, &enc->out_cap, total))
		return -ENOMEM;

	p = put_header(enc->out, KEY_FIELD1, rs_len);
	p = put_header(p, KEY_FIELD1, enc->resource_len);
	memcpy(p, enc->resource, enc->resource_len);
	p += enc->resource_len;
	p = put_header(p, KEY_FIELD2, ss_len);
	p = put_header(p, KEY_FIELD1, enc->scope_len);
	memcpy(p, enc->scope, enc->scope_len);
	p += enc->scope_len;
	for (size_t i = 0; i < n; i++) {
		p = put_header(p, KEY_FIELD2, sizes[i]);
		p += opentelemetry__proto__trace__v1__span__pack(&ps[i], p);
	}
	p = put_header(p, KEY_FIELD3, sizeof(SCHEMA_URL) - 1);
	memcpy(p, SCHEMA_URL, sizeof(SCHEMA_URL) - 1);
	p += sizeof(SCHEMA_URL) - 1;

	*ret_buf = enc->out;
	*ret_len = (size_t)(p - enc->out);
	return 0;
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
		/* Hand the encoder's output buffer over instead of copying it. */
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
