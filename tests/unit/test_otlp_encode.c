/* OTLP encoding: every field the encoder writes, read back with protobuf-c's
 * generated unpack (an independent decoder of the same schema). */
#include "buildconf.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include "export/module.h"
#include "export/otlp_encode.h"
#include "resource.h"
#include "span.h"

/* Not declared in module.h: the shim finds it with dlsym(). */
extern const struct osh_otlp_module osh_otlp_module_v1;

static const uint8_t trace_id[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
				      0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
static const uint8_t span_id[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };
static const uint8_t parent_id[8] = { 0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8 };

static struct osh_resource_attr res_attrs[] = {
	{ .key = "service.name", .str = "llm.edge-agent" },
	{ .key = "process.pid", .is_int = true, .i = 4242 },
	{ .key = "deployment.environment.name", .str = "" },
	{ .key = "host.name", .str = "box-1" },
};
static const struct osh_resource resource = { res_attrs, 4 };

static void base_span(struct osh_span *s)
{
	osh_span_init(s);
	memcpy(s->trace_id, trace_id, 16);
	memcpy(s->span_id, span_id, 8);
	s->trace_flags = 1;
	s->kind = OSH_SPAN_CLIENT;
	s->start_ns = 1700000000123456789ull;
	s->end_ns = 1700000000987654321ull;
	osh_span_set_name(s, "POST", 4);
}

static Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *
encode_and_unpack(struct osh_span *const *spans, size_t n)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;

	cr_assert_eq(osh_otlp_encode(&resource, spans, n, &buf, &len), 0);
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf);
	cr_assert_not_null(req, "encoder output does not decode");
	free(buf);
	return req;
}

static void free_request(Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req)
{
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
		req, NULL);
}

static Opentelemetry__Proto__Trace__V1__Span *
only_span(Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req)
{
	cr_assert_eq(req->n_resource_spans, 1);
	cr_assert_eq(req->resource_spans[0]->n_scope_spans, 1);
	cr_assert_eq(req->resource_spans[0]->scope_spans[0]->n_spans, 1);
	return req->resource_spans[0]->scope_spans[0]->spans[0];
}

static Opentelemetry__Proto__Common__V1__AnyValue *attr(Opentelemetry__Proto__Trace__V1__Span *s,
							 size_t i, const char *key)
{
	cr_assert_lt(i, s->n_attributes);
	cr_assert_str_eq(s->attributes[i]->key, key);
	cr_assert_not_null(s->attributes[i]->value);
	return s->attributes[i]->value;
}

Test(otlp_encode, root_span_fields)
{
	struct osh_span s;
	struct osh_span *list[] = { &s };
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	Opentelemetry__Proto__Trace__V1__Span *p;

	base_span(&s);
	req = encode_and_unpack(list, 1);
	p = only_span(req);
	cr_assert_eq(p->trace_id.len, 16);
	cr_assert_arr_eq(p->trace_id.data, trace_id, 16);
	cr_assert_eq(p->span_id.len, 8);
	cr_assert_arr_eq(p->span_id.data, span_id, 8);
	cr_assert_eq(p->parent_span_id.len, 0, "a root span has no parent_span_id");
	cr_assert_str_eq(p->trace_state, "");
	cr_assert_eq(p->flags, 0x101);
	cr_assert_str_eq(p->name, "POST");
	cr_assert_eq(p->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT);
	cr_assert_eq(p->start_time_unix_nano, 1700000000123456789ull);
	cr_assert_eq(p->end_time_unix_nano, 1700000000987654321ull);
	cr_assert_eq(p->n_attributes, 0);
	cr_assert_eq(p->dropped_attributes_count, 0);
	cr_assert_null(p->status, "UNSET status is left out");
	free_request(req);
}

Test(otlp_encode, parent_and_flags)
{
	static const struct {
		uint8_t trace_flags;
		bool has_parent, remote;
		uint32_t flags;
	} cases[] = {
		{ 0x00, false, false, 0x100 },
		{ 0x01, false, false, 0x101 },
		{ 0x01, true, false, 0x101 },
		{ 0x01, true, true, 0x301 },
		{ 0x00, true, true, 0x300 },
		{ 0xff, true, true, 0x3ff },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_span s;
		struct osh_span *list[] = { &s };
		Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
		Opentelemetry__Proto__Trace__V1__Span *p;

		base_span(&s);
		s.trace_flags = cases[i].trace_flags;
		s.has_parent = cases[i].has_parent;
		s.parent_remote = cases[i].remote;
		memcpy(s.parent_span_id, parent_id, 8);
		req = encode_and_unpack(list, 1);
		p = only_span(req);
		cr_assert_eq(p->flags, cases[i].flags, "case %zu: flags %#x", i, p->flags);
		if (cases[i].has_parent) {
			cr_assert_eq(p->parent_span_id.len, 8, "case %zu", i);
			cr_assert_arr_eq(p->parent_span_id.data, parent_id, 8);
		} else {
			cr_assert_eq(p->parent_span_id.len, 0, "case %zu", i);
		}
		free_request(req);
	}
}

Test(otlp_encode, kinds)
{
	static const enum osh_span_kind kinds[] = { OSH_SPAN_INTERNAL, OSH_SPAN_SERVER,
						    OSH_SPAN_CLIENT };

	for (size_t i = 0; i < 3; i++) {
		struct osh_span s;
		struct osh_span *list[] = { &s };
		Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;

		base_span(&s);
		s.kind = (uint8_t)kinds[i];
		req = encode_and_unpack(list, 1);
		cr_assert_eq((int)only_span(req)->kind, (int)kinds[i]);
		free_request(req);
	}
}

Test(otlp_encode, trace_state)
{
	struct osh_span s;
	struct osh_span *list[] = { &s };
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;

	base_span(&s);
	osh_span_set_trace_state(&s, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", 39);
	req = encode_and_unpack(list, 1);
	cr_assert_str_eq(only_span(req)->trace_state, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
	free_request(req);
}

Test(otlp_encode, attribute_types)
{
	struct osh_span s;
	struct osh_span *list[] = { &s };
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	Opentelemetry__Proto__Trace__V1__Span *p;
	Opentelemetry__Proto__Common__V1__AnyValue *v;

	base_span(&s);
	/* Adjacent arena strings: each value must end where its length says. */
	osh_span_set_cstr(&s, "http.request.method", "POST");
	osh_span_set_cstr(&s, "url.full", "http://api.example.com/v1/chat");
	osh_span_set_str(&s, "empty", "", 0);
	osh_span_set_cstr(&s, "utf8", "h\xc3\xa9llo \xe2\x82\xac");
	osh_span_set_int(&s, "http.response.status_code", 200);
	osh_span_set_int(&s, "negative", INT64_MIN);
	osh_span_set_double(&s, "gen_ai.request.temperature", 0.25);
	osh_span_set_bool(&s, "yes", true);
	osh_span_set_bool(&s, "no", false);
	req = encode_and_unpack(list, 1);
	p = only_span(req);
	cr_assert_eq(p->n_attributes, 9);

	v = attr(p, 0, "http.request.method");
	cr_assert_eq(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE);
	cr_assert_str_eq(v->string_value, "POST");
	v = attr(p, 1, "url.full");
	cr_assert_str_eq(v->string_value, "http://api.example.com/v1/chat");
	v = attr(p, 2, "empty");
	cr_assert_eq(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE,
		     "an empty string is still a string value");
	cr_assert_str_eq(v->string_value, "");
	v = attr(p, 3, "utf8");
	cr_assert_str_eq(v->string_value, "h\xc3\xa9llo \xe2\x82\xac");
	v = attr(p, 4, "http.response.status_code");
	cr_assert_eq(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE);
	cr_assert_eq(v->int_value, 200);
	v = attr(p, 5, "negative");
	cr_assert_eq(v->int_value, INT64_MIN);
	v = attr(p, 6, "gen_ai.request.temperature");
	cr_assert_eq(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE);
	cr_assert_eq(v->double_value, 0.25);
	v = attr(p, 7, "yes");
	cr_assert_eq(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE);
	cr_assert(v->bool_value);
	v = attr(p, 8, "no");
	cr_assert_eq(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE,
		     "false is still a bool value");
	cr_assert_not(v->bool_value);
	free_request(req);
}

Test(otlp_encode, truncated_and_dropped_attributes)
{
	struct osh_span s;
	struct osh_span *list[] = { &s };
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	Opentelemetry__Proto__Trace__V1__Span *p;

	osh_span_set_limits(5, 2);
	base_span(&s);
	osh_span_set_cstr(&s, "a", "abcdefgh");
	osh_span_set_int(&s, "b", 7);
	osh_span_set_int(&s, "c", 8);
	osh_span_set_cstr(&s, "d", "x");
	req = encode_and_unpack(list, 1);
	p = only_span(req);
	cr_assert_eq(p->n_attributes, 2);
	cr_assert_str_eq(attr(p, 0, "a")->string_value, "abcde");
	cr_assert_eq(attr(p, 1, "b")->int_value, 7);
	cr_assert_eq(p->dropped_attributes_count, 2);
	free_request(req);
}

Test(otlp_encode, full_arena)
{
	struct osh_span s;
	struct osh_span *list[] = { &s };
	char big[OSH_SPAN_ARENA + 10];
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	Opentelemetry__Proto__Trace__V1__Span *p;

	memset(big, 'x', sizeof(big));
	base_span(&s);
	osh_span_set_str(&s, "big", big, sizeof(big));
	osh_span_set_str(&s, "none", "left", 4);
	req = encode_and_unpack(list, 1);
	p = only_span(req);
	cr_assert_eq(strlen(attr(p, 0, "big")->string_value), OSH_SPAN_ARENA - 4);
	cr_assert_str_eq(attr(p, 1, "none")->string_value, "");
	free_request(req);
}

Test(otlp_encode, status)
{
	static const struct {
		enum osh_status_code code;
		const char *msg;
		bool present;
		const char *want_msg;
	} cases[] = {
		{ OSH_STATUS_UNSET, NULL, false, "" },
		{ OSH_STATUS_OK, NULL, true, "" },
		/* A message only means something with ERROR. */
		{ OSH_STATUS_OK, "fine", true, "" },
		{ OSH_STATUS_ERROR, NULL, true, "" },
		{ OSH_STATUS_ERROR, "", true, "" },
		{ OSH_STATUS_ERROR, "upstream timed out", true, "upstream timed out" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_span s;
		struct osh_span *list[] = { &s };
		Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
		Opentelemetry__Proto__Trace__V1__Span *p;

		base_span(&s);
		osh_span_set_status(&s, cases[i].code, cases[i].msg);
		req = encode_and_unpack(list, 1);
		p = only_span(req);
		if (!cases[i].present) {
			cr_assert_null(p->status, "case %zu", i);
		} else {
			cr_assert_not_null(p->status, "case %zu", i);
			cr_assert_eq((int)p->status->code, (int)cases[i].code, "case %zu", i);
			cr_assert_str_eq(p->status->message, cases[i].want_msg, "case %zu", i);
		}
		free_request(req);
	}
}

Test(otlp_encode, resource_and_scope)
{
	struct osh_span s;
	struct osh_span *list[] = { &s };
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	Opentelemetry__Proto__Resource__V1__Resource *r;
	Opentelemetry__Proto__Trace__V1__ScopeSpans *ss;

	base_span(&s);
	req = encode_and_unpack(list, 1);
	only_span(req);
	r = req->resource_spans[0]->resource;
	cr_assert_not_null(r);
	cr_assert_eq(r->n_attributes, 4);
	cr_assert_str_eq(r->attributes[0]->key, "service.name");
	cr_assert_str_eq(r->attributes[0]->value->string_value, "llm.edge-agent");
	cr_assert_str_eq(r->attributes[1]->key, "process.pid");
	cr_assert_eq(r->attributes[1]->value->value_case,
		     OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE);
	cr_assert_eq(r->attributes[1]->value->int_value, 4242);
	cr_assert_str_eq(r->attributes[2]->key, "deployment.environment.name");
	cr_assert_eq(r->attributes[2]->value->value_case,
		     OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE);
	cr_assert_str_eq(r->attributes[2]->value->string_value, "");
	cr_assert_str_eq(r->attributes[3]->value->string_value, "box-1");

	ss = req->resource_spans[0]->scope_spans[0];
	cr_assert_not_null(ss->scope);
	cr_assert_str_eq(ss->scope->name, "otelshim");
	cr_assert_str_eq(ss->scope->version, OSH_VERSION);
	cr_assert_str_eq(ss->schema_url, "https://opentelemetry.io/schemas/1.44.0");
	free_request(req);
}

Test(otlp_encode, empty_resource)
{
	static const struct osh_resource none = { NULL, 0 };
	struct osh_span s;
	struct osh_span *list[] = { &s };
	uint8_t *buf;
	size_t len;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;

	base_span(&s);
	cr_assert_eq(osh_otlp_encode(&none, list, 1, &buf, &len), 0);
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf);
	cr_assert_not_null(req);
	cr_assert_eq(req->resource_spans[0]->resource->n_attributes, 0);
	cr_assert_str_eq(only_span(req)->name, "POST");
	free_request(req);
	free(buf);
}

Test(otlp_encode, empty_batch)
{
	uint8_t *buf = NULL;
	size_t len = 99;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;

	cr_assert_eq(osh_otlp_encode(&resource, NULL, 0, &buf, &len), 0);
	cr_assert_not_null(buf);
	cr_assert_eq(len, 0, "no empty ResourceSpans/ScopeSpans envelopes");
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf);
	cr_assert_not_null(req);
	cr_assert_eq(req->n_resource_spans, 0);
	free_request(req);
	free(buf);
}

static void numbered_span(struct osh_span *s, unsigned i)
{
	char name[32];
	int n = snprintf(name, sizeof(name), "span-%u", i);

	osh_span_init(s);
	memcpy(s->trace_id, trace_id, 16);
	s->span_id[7] = (uint8_t)i;
	s->span_id[6] = (uint8_t)(i >> 8);
	s->start_ns = 1000 + i;
	s->end_ns = 2000 + i;
	osh_span_set_name(s, name, (size_t)n);
	for (unsigned j = 0; j < i % 5; j++)
		osh_span_set_cstr(s, "k", name);
	if (i % 3 == 0)
		osh_span_set_status(s, OSH_STATUS_ERROR, name);
}

Test(otlp_encode, many_spans_in_order)
{
	enum { N = 300 };
	static struct osh_span spans[N];
	struct osh_span *list[N];
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	Opentelemetry__Proto__Trace__V1__ScopeSpans *ss;

	for (unsigned i = 0; i < N; i++) {
		numbered_span(&spans[i], i);
		list[i] = &spans[i];
	}
	req = encode_and_unpack(list, N);
	ss = req->resource_spans[0]->scope_spans[0];
	cr_assert_eq(ss->n_spans, N);
	for (unsigned i = 0; i < N; i++) {
		Opentelemetry__Proto__Trace__V1__Span *p = ss->spans[i];
		char name[32];

		snprintf(name, sizeof(name), "span-%u", i);
		cr_assert_str_eq(p->name, name);
		cr_assert_eq(p->span_id.data[7], (uint8_t)i);
		cr_assert_eq(p->start_time_unix_nano, 1000 + i);
		cr_assert_eq(p->n_attributes, i % 5);
		for (size_t j = 0; j < p->n_attributes; j++)
			cr_assert_str_eq(p->attributes[j]->value->string_value, name);
		if (i % 3 == 0)
			cr_assert_str_eq(p->status->message, name);
		else
			cr_assert_null(p->status);
	}
	free_request(req);
}

/* The hand-written envelope must be byte-identical to what protobuf-c packs
 * for the same message (canonical field order, same length prefixes). */
Test(otlp_encode, canonical_bytes)
{
	enum { N = 40 };
	static struct osh_span spans[N];
	struct osh_span *list[N];
	uint8_t *buf, *again;
	size_t len, len2;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;

	for (unsigned i = 0; i < N; i++) {
		numbered_span(&spans[i], i);
		spans[i].has_parent = i & 1;
		osh_span_set_double(&spans[i], "d", i * 0.5);
		osh_span_set_bool(&spans[i], "b", i & 2);
		list[i] = &spans[i];
	}
	cr_assert_eq(osh_otlp_encode(&resource, list, N, &buf, &len), 0);
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf);
	cr_assert_not_null(req);
	len2 = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(
		req);
	cr_assert_eq(len2, len);
	again = malloc(len2);
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(req, again);
	cr_assert_arr_eq(again, buf, len);
	free(again);
	free(buf);
	free_request(req);
}

Test(otlp_encode, encoder_reuse_matches_one_shot)
{
	enum { N = 50 };
	static struct osh_span spans[N];
	struct osh_span *list[N];
	struct osh_otlp_encoder *enc = osh_otlp_encoder_create(&resource);
	const uint8_t *out;
	size_t len;

	cr_assert_not_null(enc);
	for (unsigned i = 0; i < N; i++) {
		numbered_span(&spans[i], i);
		list[i] = &spans[i];
	}
	/* Growing, shrinking and empty batches through the same scratch memory. */
	static const size_t sizes[] = { 1, N, 3, 0, N, 2 };
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		uint8_t *ref;
		size_t ref_len;

		cr_assert_eq(osh_otlp_encoder_encode(enc, list, sizes[k], &out, &len), 0);
		cr_assert_eq(osh_otlp_encode(&resource, list, sizes[k], &ref, &ref_len), 0);
		cr_assert_eq(len, ref_len, "batch %zu", k);
		cr_assert_arr_eq(out, ref, len);
		free(ref);
	}
	osh_otlp_encoder_destroy(enc);
	osh_otlp_encoder_destroy(NULL);
}

/* The resource is copied at creation: the caller may free its own. */
Test(otlp_encode, encoder_copies_resource)
{
	struct osh_resource_attr *a = calloc(1, sizeof(*a));
	struct osh_resource r = { a, 1 };
	struct osh_otlp_encoder *enc;
	struct osh_span s;
	struct osh_span *list[] = { &s };
	const uint8_t *out;
	size_t len;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;

	a->key = strdup("service.name");
	a->str = strdup("llm.copy");
	enc = osh_otlp_encoder_create(&r);
	cr_assert_not_null(enc);
	memset(a->key, 'z', strlen(a->key));
	memset(a->str, 'z', strlen(a->str));
	free(a->key);
	free(a->str);
	free(a);

	base_span(&s);
	cr_assert_eq(osh_otlp_encoder_encode(enc, list, 1, &out, &len), 0);
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, out);
	cr_assert_not_null(req);
	cr_assert_str_eq(req->resource_spans[0]->resource->attributes[0]->key, "service.name");
	cr_assert_str_eq(req->resource_spans[0]->resource->attributes[0]->value->string_value,
			 "llm.copy");
	free_request(req);
	osh_otlp_encoder_destroy(enc);
}

static uint8_t *pack_response(bool partial, int64_t rejected, const char *msg, size_t *ret_len)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse resp =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess ps =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
	uint8_t *buf;

	if (partial) {
		ps.rejected_spans = rejected;
		ps.error_message = (char *)msg;
		resp.partial_success = &ps;
	}
	*ret_len =
		opentelemetry__proto__collector__trace__v1__export_trace_service_response__get_packed_size(
			&resp);
	buf = malloc(*ret_len + 1);
	opentelemetry__proto__collector__trace__v1__export_trace_service_response__pack(&resp, buf);
	return buf;
}

Test(otlp_encode, decode_response_partial_success)
{
	size_t len;
	uint8_t *buf = pack_response(true, 3, "3 spans had no name", &len);
	int64_t rejected = -1;
	char msg[64];

	cr_assert_eq(osh_otlp_decode_response(buf, len, &rejected, msg, sizeof(msg)), 0);
	cr_assert_eq(rejected, 3);
	cr_assert_str_eq(msg, "3 spans had no name");

	/* Truncated message, and no message buffer at all. */
	cr_assert_eq(osh_otlp_decode_response(buf, len, &rejected, msg, 5), 0);
	cr_assert_str_eq(msg, "3 sp");
	rejected = -1;
	cr_assert_eq(osh_otlp_decode_response(buf, len, &rejected, NULL, 0), 0);
	cr_assert_eq(rejected, 3);
	free(buf);

	/* Warning only: nothing rejected, a message. */
	buf = pack_response(true, 0, "slow down", &len);
	cr_assert_eq(osh_otlp_decode_response(buf, len, &rejected, msg, sizeof(msg)), 0);
	cr_assert_eq(rejected, 0);
	cr_assert_str_eq(msg, "slow down");
	free(buf);
}

Test(otlp_encode, decode_response_full_success)
{
	size_t len;
	uint8_t *buf = pack_response(false, 0, NULL, &len);
	int64_t rejected = -1;
	char msg[16] = "junk";

	cr_assert_eq(osh_otlp_decode_response(buf, len, &rejected, msg, sizeof(msg)), 0);
	cr_assert_eq(rejected, 0);
	cr_assert_str_eq(msg, "");
	free(buf);

	/* Collectors may answer 200 with an empty body. */
	rejected = -1;
	cr_assert_eq(osh_otlp_decode_response((const uint8_t *)"", 0, &rejected, msg, sizeof(msg)),
		     0);
	cr_assert_eq(rejected, 0);
}

Test(otlp_encode, decode_response_garbage)
{
	static const struct {
		const char *data;
		size_t len;
	} cases[] = {
		{ "\x0a\x05\x08", 3 },		/* length beyond the end */
		{ "\xff\xff\xff", 3 },		/* truncated varint key */
		{ "<html>502</html>", 16 },	/* proxy error page */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t rejected = 77;

		cr_assert_eq(osh_otlp_decode_response((const uint8_t *)cases[i].data, cases[i].len,
						      &rejected, NULL, 0),
			     -EINVAL, "case %zu", i);
		cr_assert_eq(rejected, 77, "case %zu: out-param written on failure", i);
	}
}

Test(otlp_encode, module_table)
{
	cr_assert_eq(osh_otlp_module_v1.abi, OSH_OTLP_ABI);
	cr_assert_eq(osh_otlp_module_v1.span_size, sizeof(struct osh_span));
	cr_assert_not_null(osh_otlp_module_v1.create);
	cr_assert_not_null(osh_otlp_module_v1.export_spans);
	cr_assert_not_null(osh_otlp_module_v1.interrupt);
	cr_assert_not_null(osh_otlp_module_v1.stats);
	cr_assert_not_null(osh_otlp_module_v1.destroy);
	/* Harmless on what create() failed to make. */
	osh_otlp_module_v1.interrupt(NULL, 0);
	osh_otlp_module_v1.destroy(NULL);
}
