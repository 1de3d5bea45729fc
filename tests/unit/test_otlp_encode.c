/* OTLP encoding: every field the encoder writes, read back with protobuf-c's
 * generated unpack (an independent decoder of the same schema). */
#include "buildconf.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
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

/* Span events (tool calls of an LLM response): time, name, string
 * attributes, and the count of those dropped past the limit. */
Test(otlp_encode, events)
{
	struct osh_span s;
	struct osh_span *list[] = { &s };
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	Opentelemetry__Proto__Trace__V1__Span *p;
	char long_id[300];
	struct osh_event *ev;

	memset(long_id, 'x', sizeof(long_id));
	base_span(&s);
	osh_span_set_str(&s, "http.request.method", "POST", 4);
	ev = osh_span_add_event(&s, "gen_ai.tool.call", 16, 1700000000500000000ull);
	cr_assert_not_null(ev);
	osh_event_add_str(&s, ev, "gen_ai.tool.name", 16, "get_weather", 11);
	osh_event_add_str(&s, ev, "gen_ai.tool.call.id", 19, "call_1", 6);
	osh_event_add_str(&s, ev, "third", 5, "dropped", 7);	/* past the limit */
	ev = osh_span_add_event(&s, "gen_ai.tool.call", 16, 1700000000600000000ull);
	osh_event_add_str(&s, ev, "gen_ai.tool.call.id", 19, long_id, sizeof(long_id));
	for (int i = 0; i < OSH_SPAN_MAX_EVENTS; i++)
		osh_span_add_event(&s, "more", 4, 1700000000700000000ull);

	req = encode_and_unpack(list, 1);
	p = only_span(req);
	cr_assert_eq(p->n_events, OSH_SPAN_MAX_EVENTS);
	cr_assert_eq(p->dropped_events_count, 2);
	cr_assert_str_eq(p->events[0]->name, "gen_ai.tool.call");
	cr_assert_eq(p->events[0]->time_unix_nano, 1700000000500000000ull);
	cr_assert_eq(p->events[0]->n_attributes, 2);
	cr_assert_str_eq(p->events[0]->attributes[0]->key, "gen_ai.tool.name");
	cr_assert_str_eq(p->events[0]->attributes[0]->value->string_value, "get_weather");
	cr_assert_str_eq(p->events[0]->attributes[1]->key, "gen_ai.tool.call.id");
	cr_assert_str_eq(p->events[0]->attributes[1]->value->string_value, "call_1");
	cr_assert_eq(strlen(p->events[1]->attributes[0]->value->string_value), sizeof(long_id));
	cr_assert_str_eq(p->events[7]->name, "more");
	/* The span's own attributes are untouched by its events. */
	cr_assert_eq(p->n_attributes, 1);
	cr_assert_str_eq(p->attributes[0]->key, "http.request.method");
	free_request(req);
}

/* string[] attributes (gen_ai.response.finish_reasons): an ArrayValue of
 * string AnyValues, empty elements and long ones included, between other
 * attributes. */
Test(otlp_encode, string_arrays)
{
	struct osh_span s;
	struct osh_span *list[] = { &s };
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	Opentelemetry__Proto__Trace__V1__Span *p;
	Opentelemetry__Proto__Common__V1__AnyValue *v;
	char big[300];
	const char *elems[] = { "stop", "", "tool_calls", big };
	size_t lens[] = { 4, 0, 10, sizeof(big) };

	memset(big, 'y', sizeof(big));
	base_span(&s);
	osh_span_set_str(&s, "a", "1", 1);
	osh_span_set_strs(&s, "gen_ai.response.finish_reasons", elems, lens, 4);
	osh_span_set_strs(&s, "none", elems, lens, 0);
	osh_span_set_int(&s, "b", 2);
	req = encode_and_unpack(list, 1);
	p = only_span(req);
	cr_assert_eq(p->n_attributes, 4);
	v = attr(p, 1, "gen_ai.response.finish_reasons");
	cr_assert_eq(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE);
	cr_assert_eq(v->array_value->n_values, 4);
	cr_assert_str_eq(v->array_value->values[0]->string_value, "stop");
	cr_assert_str_eq(v->array_value->values[1]->string_value, "");
	cr_assert_str_eq(v->array_value->values[2]->string_value, "tool_calls");
	cr_assert_eq(strlen(v->array_value->values[3]->string_value), sizeof(big));
	v = attr(p, 2, "none");
	cr_assert_eq(v->value_case, OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE);
	cr_assert_eq(v->array_value->n_values, 0);
	cr_assert_eq(attr(p, 3, "b")->int_value, 2);
	free_request(req);
}

/* Many spans with events in one batch: the buffer grows as events need. */
Test(otlp_encode, events_in_a_large_batch)
{
	static struct osh_span spans[200];
	struct osh_span *list[200];
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;

	for (int i = 0; i < 200; i++) {
		base_span(&spans[i]);
		for (int e = 0; e < OSH_SPAN_MAX_EVENTS; e++) {
			struct osh_event *ev = osh_span_add_event(&spans[i], "ev", 2, 1);

			osh_event_add_str(&spans[i], ev, "k", 1, "value-value-value", 17);
		}
		list[i] = &spans[i];
	}
	req = encode_and_unpack(list, 200);
	cr_assert_eq(req->resource_spans[0]->scope_spans[0]->n_spans, 200);
	for (int i = 0; i < 200; i++) {
		Opentelemetry__Proto__Trace__V1__Span *p = req->resource_spans[0]->scope_spans[0]->spans[i];

		cr_assert_eq(p->n_events, OSH_SPAN_MAX_EVENTS);
		cr_assert_str_eq(p->events[7]->attributes[0]->value->string_value, "value-value-value");
	}
	free_request(req);
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

/* ---- Byte-for-byte against protobuf-c ----
 *
 * The encoder writes the wire format by hand. The reference below builds the
 * same request as protobuf-c structs and packs it with protobuf-c: the two
 * byte strings must be identical, for a table of edge cases and for
 * thousands of random spans. The rules the reference encodes (root spans
 * have no parent_span_id, Status only when the code is set, its message only
 * with ERROR, flags with HAS_IS_REMOTE) are those the tests above check on
 * decoded output; here what matters is how protobuf-c lays them out. */

/* protobuf-c's copy of one span: structs plus NUL-terminated strings. */
struct ref_span {
	Opentelemetry__Proto__Trace__V1__Span span;
	Opentelemetry__Proto__Trace__V1__Status status;
	Opentelemetry__Proto__Common__V1__KeyValue kvs[OSH_SPAN_MAX_ATTRS];
	Opentelemetry__Proto__Common__V1__KeyValue *kv_ptrs[OSH_SPAN_MAX_ATTRS];
	Opentelemetry__Proto__Common__V1__AnyValue anys[OSH_SPAN_MAX_ATTRS];
	/* Every string of a span is in its arena once, plus a NUL each. */
	char text[OSH_SPAN_ARENA + OSH_SPAN_MAX_ATTRS + 3];
	size_t text_used;
};

static char *ref_str(struct ref_span *r, const struct osh_span *s, struct osh_sref ref)
{
	char *d = r->text + r->text_used;

	cr_assert_leq(r->text_used + ref.len + 1u, sizeof(r->text));
	memcpy(d, osh_span_str(s, ref), ref.len);
	d[ref.len] = '\0';
	r->text_used += ref.len + 1u;
	return d;
}

static void ref_fill(struct ref_span *r, struct osh_span *s)
{
	static const Opentelemetry__Proto__Trace__V1__Span span_init =
		OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
	static const Opentelemetry__Proto__Trace__V1__Status status_init =
		OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
	static const Opentelemetry__Proto__Common__V1__KeyValue kv_init =
		OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
	static const Opentelemetry__Proto__Common__V1__AnyValue any_init =
		OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
	Opentelemetry__Proto__Trace__V1__Span *p = &r->span;

	r->text_used = 0;
	*p = span_init;
	p->trace_id.len = 16;
	p->trace_id.data = s->trace_id;
	p->span_id.len = 8;
	p->span_id.data = s->span_id;
	if (s->has_parent) {
		p->parent_span_id.len = 8;
		p->parent_span_id.data = s->parent_span_id;
	}
	p->trace_state = ref_str(r, s, s->trace_state);
	p->flags = s->trace_flags | 0x100u | (s->parent_remote ? 0x200u : 0);
	p->name = ref_str(r, s, s->name);
	p->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
	p->start_time_unix_nano = s->start_ns;
	p->end_time_unix_nano = s->end_ns;
	for (unsigned i = 0; i < s->n_attrs; i++) {
		const struct osh_attr *a = &s->attrs[i];
		Opentelemetry__Proto__Common__V1__AnyValue *v = &r->anys[i];

		r->kvs[i] = kv_init;
		*v = any_init;
		r->kvs[i].key = (char *)a->key;
		r->kvs[i].value = v;
		switch (a->type) {
		case OSH_ATTR_STRING:
			v->value_case =
				OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
			v->string_value = ref_str(r, s, a->v.s);
			break;
		case OSH_ATTR_INT:
			v->value_case =
				OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
			v->int_value = a->v.i;
			break;
		case OSH_ATTR_DOUBLE:
			v->value_case =
				OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
			v->double_value = a->v.d;
			break;
		case OSH_ATTR_BOOL:
			v->value_case =
				OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
			v->bool_value = a->v.b;
			break;
		default:
			break; /* value_case NOT_SET: an empty AnyValue */
		}
		r->kv_ptrs[i] = &r->kvs[i];
	}
	p->n_attributes = s->n_attrs;
	p->attributes = r->kv_ptrs;
	p->dropped_attributes_count = s->dropped_attrs;
	if (s->status_code != OSH_STATUS_UNSET) {
		r->status = status_init;
		r->status.code =
			(Opentelemetry__Proto__Trace__V1__Status__StatusCode)s->status_code;
		if (s->status_code == OSH_STATUS_ERROR)
			r->status.message = ref_str(r, s, s->status_message);
		p->status = &r->status;
	}
}

/* The whole request for @spans as protobuf-c packs it (malloc'd). */
static uint8_t *ref_pack(struct osh_span *const *spans, size_t n, size_t *ret_len)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest req =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	Opentelemetry__Proto__Trace__V1__ResourceSpans rs =
		OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
	Opentelemetry__Proto__Trace__V1__ScopeSpans ss =
		OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
	Opentelemetry__Proto__Resource__V1__Resource r =
		OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
	Opentelemetry__Proto__Common__V1__InstrumentationScope scope =
		OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
	Opentelemetry__Proto__Common__V1__KeyValue rkv[4], *rkv_ptrs[4];
	Opentelemetry__Proto__Common__V1__AnyValue rany[4];
	Opentelemetry__Proto__Trace__V1__ResourceSpans *rs_ptr = &rs;
	Opentelemetry__Proto__Trace__V1__ScopeSpans *ss_ptr = &ss;
	struct ref_span *refs = calloc(n ? n : 1, sizeof(*refs));
	Opentelemetry__Proto__Trace__V1__Span **span_ptrs = calloc(n ? n : 1, sizeof(*span_ptrs));
	uint8_t *buf;

	cr_assert(refs && span_ptrs);
	cr_assert_eq(resource.n, 4);
	for (size_t i = 0; i < resource.n; i++) {
		const struct osh_resource_attr *a = &resource.attrs[i];

		opentelemetry__proto__common__v1__key_value__init(&rkv[i]);
		opentelemetry__proto__common__v1__any_value__init(&rany[i]);
		rkv[i].key = a->key;
		rkv[i].value = &rany[i];
		if (a->is_int) {
			rany[i].value_case =
				OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
			rany[i].int_value = a->i;
		} else {
			rany[i].value_case =
				OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
			rany[i].string_value = a->str;
		}
		rkv_ptrs[i] = &rkv[i];
	}
	r.n_attributes = resource.n;
	r.attributes = rkv_ptrs;
	scope.name = (char *)"otelshim";
	scope.version = (char *)OSH_VERSION;
	for (size_t i = 0; i < n; i++) {
		ref_fill(&refs[i], spans[i]);
		span_ptrs[i] = &refs[i].span;
	}
	ss.scope = &scope;
	ss.n_spans = n;
	ss.spans = span_ptrs;
	ss.schema_url = (char *)"https://opentelemetry.io/schemas/1.44.0";
	rs.resource = &r;
	rs.n_scope_spans = 1;
	rs.scope_spans = &ss_ptr;
	if (n) {
		req.n_resource_spans = 1;
		req.resource_spans = &rs_ptr;
	}
	*ret_len = protobuf_c_message_get_packed_size(&req.base);
	buf = malloc(*ret_len ? *ret_len : 1);
	cr_assert_not_null(buf);
	cr_assert_eq(protobuf_c_message_pack(&req.base, buf), *ret_len);
	free(span_ptrs);
	free(refs);
	return buf;
}

static void assert_bytes_eq(const uint8_t *got, size_t got_len, const uint8_t *want,
			    size_t want_len, const char *what)
{
	size_t n = got_len < want_len ? got_len : want_len, i = 0;

	while (i < n && got[i] == want[i])
		i++;
	cr_assert(i == n && got_len == want_len,
		  "%s: %zu bytes vs protobuf-c %zu, first difference at offset %zu (%02x vs %02x)",
		  what, got_len, want_len, i, i < got_len ? got[i] : 0, i < want_len ? want[i] : 0);
}

/* Both entry points against protobuf-c, the encoder one through @enc when
 * given (to carry buffers over from earlier batches). */
static void check_against_protobuf_c(struct osh_otlp_encoder *enc, struct osh_span *const *spans,
				     size_t n, const char *what)
{
	size_t want_len, got_len;
	uint8_t *want = ref_pack(spans, n, &want_len);
	uint8_t *got;
	const uint8_t *out;
	struct osh_otlp_encoder *own = enc ? NULL : osh_otlp_encoder_create(&resource);

	cr_assert_eq(osh_otlp_encode(&resource, spans, n, &got, &got_len), 0, "%s", what);
	assert_bytes_eq(got, got_len, want, want_len, what);
	free(got);
	cr_assert_not_null(enc ? enc : own);
	cr_assert_eq(osh_otlp_encoder_encode(enc ? enc : own, spans, n, &out, &got_len), 0, "%s",
		     what);
	assert_bytes_eq(out, got_len, want, want_len, what);
	/* Again a few spans at a time (add ... add, finish), as the exporter
	 * thread builds a batch while spans arrive. */
	for (size_t i = 0, step = 1; i < n; i += step, step = step * 3 % 7 + 1) {
		size_t k = step < n - i ? step : n - i;

		cr_assert_eq(osh_otlp_encoder_add(enc ? enc : own, spans + i, k), 0, "%s", what);
	}
	cr_assert_eq(osh_otlp_encoder_pending(enc ? enc : own), n, "%s", what);
	cr_assert_eq(osh_otlp_encoder_finish(enc ? enc : own, &out, &got_len), 0, "%s", what);
	assert_bytes_eq(out, got_len, want, want_len, what);
	cr_assert_eq(osh_otlp_encoder_pending(enc ? enc : own), 0, "%s", what);
	osh_otlp_encoder_destroy(own);
	free(want);
}

/* Long strings from pieces, to sit on varint boundaries. */
#define S16 "0123456789abcdef"
#define S64 S16 S16 S16 S16
#define S128 S64 S64
#define S120 S64 S16 S16 S16 "01234567"
#define S127 S64 S16 S16 S16 "0123456789abcde"
#define S512 S128 S128 S128 S128
#define UTF8 "h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87"

enum { A_END, A_STR, A_INT, A_DBL, A_BOOL, A_BAD };

struct attr_spec {
	int t;
	const char *key;
	const char *s;
	int64_t i;
	double d;
};

struct span_case {
	const char *what;
	bool zero_ids, parent, remote;
	uint8_t trace_flags, kind, code;
	uint64_t start, end;
	const char *name, *trace_state, *msg;
	uint32_t dropped;
	unsigned fill;		/* extra string attributes after attrs[] */
	const char *fill_key;	/* their key ("f" when NULL) */
	const char *fill_val;	/* their value ("v" when NULL) */
	struct attr_spec attrs[12];
};

#define STR(k, v) { A_STR, k, v, 0, 0 }
#define INT(k, v) { A_INT, k, NULL, v, 0 }
#define DBL(k, v) { A_DBL, k, NULL, 0, v }
#define BOOL(k, v) { A_BOOL, k, NULL, v, 0 }

static const struct span_case span_cases[] = {
	{ .what = "all defaults: no name, kind 0, zero times, zero ids", .zero_ids = true },
	{ .what = "ids only", .trace_flags = 1 },
	{ .what = "typical client span", .trace_flags = 1, .kind = 3, .name = "POST",
	  .start = 1700000000123456789ull, .end = 1700000000987654321ull,
	  .attrs = { STR("http.request.method", "POST"), STR("url.full", "http://h/v1/chat"),
		     INT("http.response.status_code", 200), BOOL("llm.cache.hit", false) } },
	{ .what = "empty name", .kind = 2, .name = "", .start = 1, .end = 2 },
	{ .what = "huge timestamps", .name = "x", .start = UINT64_MAX, .end = UINT64_MAX - 1 },
	{ .what = "start only", .start = 5 },
	{ .what = "end only", .end = 5 },
	{ .what = "kind unspecified", .kind = 0, .name = "n" },
	{ .what = "kind internal", .kind = 1, .name = "n" },
	{ .what = "kind producer", .kind = 4, .name = "n" },
	{ .what = "kind consumer", .kind = 5, .name = "n" },
	{ .what = "kind beyond the enum (two-byte varint)", .kind = 200, .name = "n" },
	{ .what = "local parent", .parent = true, .trace_flags = 1 },
	{ .what = "remote parent", .parent = true, .remote = true, .trace_flags = 1 },
	{ .what = "remote without parent id", .remote = true },
	{ .what = "all trace flags", .parent = true, .remote = true, .trace_flags = 0xff },
	{ .what = "trace_state", .trace_state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE" },
	{ .what = "trace_state 127 bytes", .trace_state = S127 },
	{ .what = "trace_state 128 bytes", .trace_state = S128 },
	{ .what = "name 127 bytes", .name = S127 },
	{ .what = "name 128 bytes", .name = S128 },
	{ .what = "name 512 bytes", .name = S512 },
	{ .what = "UTF-8 name and values", .name = UTF8,
	  .attrs = { STR("utf8", UTF8), STR(UTF8, "key in UTF-8") } },
	{ .what = "status unset with a message", .code = OSH_STATUS_UNSET, .msg = "ignored" },
	{ .what = "status ok", .code = OSH_STATUS_OK },
	{ .what = "status ok with a message", .code = OSH_STATUS_OK, .msg = "fine" },
	{ .what = "status error", .code = OSH_STATUS_ERROR },
	{ .what = "status error, empty message", .code = OSH_STATUS_ERROR, .msg = "" },
	{ .what = "status error with message", .code = OSH_STATUS_ERROR,
	  .msg = "upstream timed out" },
	{ .what = "status error, 128-byte message", .code = OSH_STATUS_ERROR, .msg = S128 },
	{ .what = "status error, 512-byte message", .code = OSH_STATUS_ERROR, .msg = S512 },
	{ .what = "status code beyond the enum", .code = 9, .msg = "x" },
	{ .what = "dropped 1", .dropped = 1 },
	{ .what = "dropped 127", .dropped = 127 },
	{ .what = "dropped 128", .dropped = 128 },
	{ .what = "dropped max", .dropped = UINT32_MAX },
	{ .what = "one attribute", .attrs = { STR("k", "v") } },
	{ .what = "ints",
	  .attrs = { INT("zero", 0), INT("one", 1), INT("minus one", -1), INT("127", 127),
		     INT("128", 128), INT("16383", 16383), INT("16384", 16384),
		     INT("max", INT64_MAX), INT("min", INT64_MIN),
		     INT("-2^31", -2147483648ll), INT("2^32", 4294967296ll) } },
	{ .what = "doubles",
	  .attrs = { DBL("zero", 0.0), DBL("minus zero", -0.0), DBL("nan", NAN),
		     DBL("-nan", -NAN), DBL("inf", INFINITY), DBL("-inf", -INFINITY),
		     DBL("tiny", 4.9406564584124654e-324), DBL("max", 1.7976931348623157e308),
		     DBL("quarter", 0.25), DBL("neg", -123.456) } },
	{ .what = "bools", .attrs = { BOOL("t", true), BOOL("f", false), BOOL("t2", true) } },
	{ .what = "empty strings", .attrs = { STR("e", ""), STR("", "empty key"), STR("", "") } },
	{ .what = "empty keys, every type",
	  .attrs = { INT("", 0), INT("", -1), DBL("", -0.0), BOOL("", false), BOOL("", true) } },
	/* A one-byte-key KeyValue reaches 128 bytes with a 121-byte string, or
	 * a 122-byte key with a one-byte int. */
	{ .what = "KeyValue of 127 and 128 bytes",
	  .attrs = { STR("k", S120), STR("k", S120 "x"), INT(S120 "x", 1), INT(S120 "xy", 1),
		     BOOL(S120 "xy", true), DBL(S120, 1.0) } },
	{ .what = "value 127/128 bytes", .attrs = { STR("a", S127), STR("b", S128) } },
	{ .what = "key 127/128 bytes", .attrs = { INT(S127, 1), INT(S128, 2), BOOL(S128, 1) } },
	{ .what = "long key and long value", .attrs = { STR(S512, S512) } },
	{ .what = "unknown attribute types (empty AnyValue)",
	  .attrs = { { A_BAD, "bad", NULL, 0, 0 }, { A_BAD, "", NULL, 99, 0 }, STR("ok", "v") } },
	{ .what = "32 attributes", .fill = 32 },
	{ .what = "32 attributes and drops", .fill = 32, .dropped = 7 },
	{ .what = "span over 16 KiB (three-byte length)", .fill = 32, .fill_key = S512 S64,
	  .name = S128, .code = OSH_STATUS_ERROR, .msg = S128 },
	{ .what = "everything", .parent = true, .remote = true, .trace_flags = 3, .kind = 2,
	  .start = 1, .end = UINT64_MAX, .name = UTF8, .trace_state = "a=b",
	  .code = OSH_STATUS_ERROR, .msg = "boom", .dropped = 3, .fill = 4,
	  .attrs = { STR("s", "v"), INT("i", -5), DBL("d", -0.0), BOOL("b", false) } },
};

static void build_case(struct osh_span *s, const struct span_case *c)
{
	osh_span_init(s);
	if (!c->zero_ids) {
		memcpy(s->trace_id, trace_id, 16);
		memcpy(s->span_id, span_id, 8);
	}
	memcpy(s->parent_span_id, parent_id, 8);
	s->has_parent = c->parent;
	s->parent_remote = c->remote;
	s->trace_flags = c->trace_flags;
	s->kind = c->kind;
	s->start_ns = c->start;
	s->end_ns = c->end;
	if (c->name)
		osh_span_set_name(s, c->name, strlen(c->name));
	if (c->trace_state)
		osh_span_set_trace_state(s, c->trace_state, strlen(c->trace_state));
	osh_span_set_status(s, (enum osh_status_code)c->code, c->msg);
	for (const struct attr_spec *a = c->attrs; a->t != A_END; a++) {
		switch (a->t) {
		case A_STR:
			osh_span_set_cstr(s, a->key, a->s);
			break;
		case A_INT:
			osh_span_set_int(s, a->key, a->i);
			break;
		case A_DBL:
			osh_span_set_double(s, a->key, a->d);
			break;
		case A_BOOL:
			osh_span_set_bool(s, a->key, a->i != 0);
			break;
		case A_BAD:
			osh_span_set_int(s, a->key, 0);
			s->attrs[s->n_attrs - 1].type = (uint8_t)a->i;
			break;
		}
	}
	for (unsigned i = 0; i < c->fill; i++)
		osh_span_set_cstr(s, c->fill_key ? c->fill_key : "f",
				  c->fill_val ? c->fill_val : "v");
	s->dropped_attrs += c->dropped;
}

Test(otlp_encode, same_bytes_as_protobuf_c_table)
{
	enum { N = sizeof(span_cases) / sizeof(span_cases[0]) };
	static struct osh_span spans[N];
	struct osh_span *list[N];
	struct osh_otlp_encoder *enc = osh_otlp_encoder_create(&resource);

	cr_assert_not_null(enc);
	for (size_t i = 0; i < N; i++) {
		build_case(&spans[i], &span_cases[i]);
		list[i] = &spans[i];
		/* Alone, through a fresh and through a reused encoder. */
		check_against_protobuf_c(NULL, &list[i], 1, span_cases[i].what);
		check_against_protobuf_c(enc, &list[i], 1, span_cases[i].what);
	}
	/* And all in one request. */
	check_against_protobuf_c(enc, list, N, "whole table");
	check_against_protobuf_c(NULL, list, N, "whole table");
	osh_otlp_encoder_destroy(enc);
}

Test(otlp_encode, table_cases_are_what_they_say)
{
	struct osh_span s;

	/* Guard the table against silently losing its edge cases to limits. */
	for (size_t i = 0; i < sizeof(span_cases) / sizeof(span_cases[0]); i++) {
		const struct span_case *c = &span_cases[i];
		unsigned n = c->fill;

		for (const struct attr_spec *a = c->attrs; a->t != A_END; a++)
			n++;
		build_case(&s, c);
		cr_assert_eq(s.n_attrs, n, "%s", c->what);
		cr_assert_eq(s.dropped_attrs, c->dropped, "%s", c->what);
		cr_assert_eq(s.name.len, c->name ? strlen(c->name) : 0, "%s", c->what);
		cr_assert_eq(s.status_message.len, c->msg ? strlen(c->msg) : 0, "%s", c->what);
	}
}

static bool contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (memcmp(hay + i, needle, m) == 0)
			return true;
	return false;
}

/* Known bytes, independent of protobuf-c: field order with flags (16) last,
 * a bool member at its one-byte form, and the short length prefix of a span
 * under 128 bytes (the body is written after room for a two-byte one). */
Test(otlp_encode, small_span_exact_bytes)
{
	static const uint8_t want[] = {
		0x12, 0x2b,		/* ScopeSpans.spans, 43 bytes */
		0x0a, 0x10, 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92,
		0x9d, 0x0e, 0x0e, 0x47, 0x36,	/* trace_id */
		0x12, 0x08, 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7, /* span_id */
		0x4a, 0x07, 0x0a, 0x01, 'k', 0x12, 0x02, 0x10, 0x01, /* attributes: k=true */
		0x85, 0x01, 0x01, 0x01, 0x00, 0x00, /* flags 0x101, fixed32 */
		0x1a, 0x27, 'h', 't', 't', 'p', 's', /* ScopeSpans.schema_url follows */
	};
	struct osh_span s;
	struct osh_span *list[] = { &s };
	uint8_t *buf;
	size_t len;

	osh_span_init(&s);
	memcpy(s.trace_id, trace_id, 16);
	memcpy(s.span_id, span_id, 8);
	s.trace_flags = 1;
	osh_span_set_bool(&s, "k", true);
	cr_assert_eq(osh_otlp_encode(&resource, list, 1, &buf, &len), 0);
	cr_assert(contains(buf, len, want, sizeof(want)));
	free(buf);
}

/* protobuf-c stops a string at its first NUL (its strings are C strings);
 * the encoder writes the span's bytes as stored, which is what the proto
 * means and loses nothing. The only intended difference from protobuf-c. */
Test(otlp_encode, embedded_nul_kept)
{
	static const uint8_t want[] = { 0x0a, 0x03, 'a', 0x00, 'b' };
	struct osh_span s;
	struct osh_span *list[] = { &s };
	uint8_t *buf;
	size_t len;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	Opentelemetry__Proto__Trace__V1__Span *p;

	base_span(&s);
	osh_span_set_str(&s, "nul", "a\0b", 3);
	cr_assert_eq(osh_otlp_encode(&resource, list, 1, &buf, &len), 0);
	cr_assert(contains(buf, len, want, sizeof(want)));
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, len, buf);
	cr_assert_not_null(req);
	p = only_span(req);
	cr_assert_eq(memcmp(attr(p, 0, "nul")->string_value, "a\0b", 4), 0);
	free_request(req);
	free(buf);
}

/* ---- Random spans ---- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* splitmix64: fixed seed, same sequence on every run. */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static unsigned rnd_below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

/* Lengths on and around every boundary the encoding has. */
static size_t rnd_len(void)
{
	static const size_t edges[] = { 0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64,
					119, 120, 121, 122, 126, 127, 128, 129, 255, 300 };

	return rnd_below(3) ? edges[rnd_below(sizeof(edges) / sizeof(edges[0]))]
			    : rnd_below(160);
}

/* Printable ASCII, multi-byte UTF-8 and control bytes; no NUL (see
 * embedded_nul_kept). */
static size_t rnd_text(char *buf, size_t len)
{
	static const char *const pieces[] = { "a", "Z", "/", " ", "\t", "\x7f", "\x01",
					      "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };
	size_t n = 0;

	while (n < len) {
		const char *p = pieces[rnd_below(sizeof(pieces) / sizeof(pieces[0]))];
		size_t l = strlen(p);

		if (n + l > len)
			p = "x", l = 1;
		memcpy(buf + n, p, l);
		n += l;
	}
	return n;
}

static const char *const rnd_keys[] = {
	"", "k", "http.request.method", "url.full", "server.port", "gen_ai.usage.input_tokens",
	S16 S16, S64, S120, S120 "x", S120 "xy", S127, S128, S512,
	"cl\xc3\xa9 \xe2\x82\xac",
};

static uint64_t rnd_u64(void)
{
	static const uint64_t edges[] = { 0, 1, 127, 128, 16383, 16384, UINT32_MAX, INT64_MAX,
					  (uint64_t)INT64_MIN, UINT64_MAX, UINT64_MAX - 1 };

	return rnd_below(2) ? edges[rnd_below(sizeof(edges) / sizeof(edges[0]))]
			    : rnd() >> rnd_below(64);
}

static double rnd_double(void)
{
	static const double edges[] = { 0.0, -0.0, NAN, -NAN, INFINITY, -INFINITY, 1.0, -1.5,
					4.9406564584124654e-324, 1.7976931348623157e308 };
	uint64_t bits;
	double d;

	if (rnd_below(2))
		return edges[rnd_below(sizeof(edges) / sizeof(edges[0]))];
	/* Any bit pattern, NaN payloads and denormals included. */
	bits = rnd();
	memcpy(&d, &bits, sizeof(d));
	return d;
}

static void random_span(struct osh_span *s)
{
	char buf[400];
	size_t n;

	osh_span_init(s);
	for (int i = 0; i < 16; i++)
		s->trace_id[i] = (uint8_t)rnd();
	for (int i = 0; i < 8; i++) {
		s->span_id[i] = (uint8_t)rnd();
		s->parent_span_id[i] = (uint8_t)rnd();
	}
	s->has_parent = rnd_below(2);
	s->parent_remote = rnd_below(2);
	s->trace_flags = rnd_below(4) ? (uint8_t)rnd_below(2) : (uint8_t)rnd();
	s->kind = (uint8_t)(rnd_below(8) ? rnd_below(6) : rnd());
	s->start_ns = rnd_u64();
	s->end_ns = rnd_u64();
	if (rnd_below(8)) {
		n = rnd_text(buf, rnd_len());
		osh_span_set_name(s, buf, n);
	}
	if (rnd_below(4) == 0) {
		n = rnd_text(buf, rnd_len());
		osh_span_set_trace_state(s, buf, n);
	}
	if (rnd_below(2)) {
		n = rnd_text(buf, rnd_len());
		buf[n] = '\0';
		osh_span_set_status(s, (enum osh_status_code)(rnd_below(8) ? rnd_below(3) : 7),
				    rnd_below(4) ? buf : NULL);
	}
	for (unsigned i = 0, count = rnd_below(4) ? rnd_below(18) : rnd_below(40); i < count; i++) {
		const char *key = rnd_keys[rnd_below(sizeof(rnd_keys) / sizeof(rnd_keys[0]))];

		switch (rnd_below(5)) {
		case 0:
		case 1:
			n = rnd_text(buf, rnd_len());
			osh_span_set_str(s, key, buf, n);
			break;
		case 2:
			osh_span_set_int(s, key, (int64_t)rnd_u64());
			break;
		case 3:
			osh_span_set_double(s, key, rnd_double());
			break;
		default:
			osh_span_set_bool(s, key, rnd_below(2));
			break;
		}
	}
	if (rnd_below(4) == 0)
		s->dropped_attrs += (uint32_t)rnd_u64();
}

Test(otlp_encode, same_bytes_as_protobuf_c_random)
{
	enum { N = 3000 };
	struct osh_span *spans = calloc(N, sizeof(*spans));
	struct osh_span **list = calloc(N, sizeof(*list));
	struct osh_otlp_encoder *enc = osh_otlp_encoder_create(&resource);
	char what[64];
	size_t i = 0;

	cr_assert(spans && list && enc);
	rng_state = 20240611;
	for (size_t k = 0; k < N; k++) {
		random_span(&spans[k]);
		list[k] = &spans[k];
	}
	/* The whole set as one request of several MiB (four-byte envelope
	 * lengths), then in batches of changing sizes through one encoder,
	 * its buffer growing while spans are already in it. */
	check_against_protobuf_c(NULL, list, N, "all random spans");
	for (unsigned b = 0; i < N; b++) {
		size_t n = rnd_below(3) ? 1 + rnd_below(40) : 1 + rnd_below(600);

		if (n > N - i)
			n = N - i;
		snprintf(what, sizeof(what), "random batch %u (spans %zu..%zu)", b, i, i + n - 1);
		check_against_protobuf_c(enc, list + i, n, what);
		i += n;
	}
	osh_otlp_encoder_destroy(enc);
	free(list);
	free(spans);
}

/* A fresh encoder's first batch starts from an empty buffer: each size
 * class of span must make its own room. */
Test(otlp_encode, fresh_encoder_each_span)
{
	enum { N = 400 };
	static struct osh_span spans[N];
	char what[32];

	rng_state = 77;
	for (size_t k = 0; k < N; k++) {
		struct osh_span *one = &spans[k];

		random_span(one);
		snprintf(what, sizeof(what), "fresh encoder, span %zu", k);
		check_against_protobuf_c(NULL, &one, 1, what);
	}
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
