/* The console exporter's formatting (see console.h). */
#include "buildconf.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "export/console.h"
#include "ids.h"
#include "resource.h"
#include "span.h"

/* A bounded appender: writes stop quietly at the end of the buffer; two
 * bytes are always kept for the final newline and NUL. */
struct out {
	char *p;
	size_t len;
	size_t cap;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len + 2 >= o->cap)
		return;
	if (n > o->cap - 2 - o->len)
		n = o->cap - 2 - o->len;
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A JSON string body (without quotes): escapes quotes, backslashes and
 * control characters; bytes >= 0x80 pass as they are (UTF-8). */
static void put_json_str(struct out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			put(o, e, 2);
		} else if (c < 0x20 || c == 0x7f) {
			putf(o, "\\u%04x", c);
		} else {
			put(o, (const char *)&c, 1);
		}
	}
}

/* Text form: values with spaces, quotes or controls are double-quoted. */
static void put_text_value(struct out *o, const char *s, size_t n)
{
	bool quote = n == 0;

	for (size_t i = 0; i < n && !quote; i++)
		if (s[i] == ' ' || s[i] == '"' || s[i] == '=' || (unsigned char)s[i] < 0x20)
			quote = true;
	if (!quote) {
		put(o, s, n);
		return;
	}
	put(o, "\"", 1);
	put_json_str(o, s, n);
	put(o, "\"", 1);
}

static const char *kind_name(uint8_t kind)
{
	switch (kind) {
	case OSH_SPAN_SERVER:
		return "server";
	case OSH_SPAN_CLIENT:
		return "client";
	default:
		return "internal";
	}
}

static const char *status_name(uint8_t code)
{
	return code == OSH_STATUS_ERROR ? "ERROR" : code == OSH_STATUS_OK ? "OK" : "UNSET";
}

static void put_attr_value(struct out *o, const struct osh_span *s, const struct osh_attr *a,
			   bool json)
{
	switch (a->type) {
	case OSH_ATTR_STRING:
		if (json) {
			put(o, "\"", 1);
			put_json_str(o, osh_span_str(s, a->v.s), a->v.s.len);
			put(o, "\"", 1);
		} else {
			put_text_value(o, osh_span_str(s, a->v.s), a->v.s.len);
		}
		break;
	case OSH_ATTR_INT:
		putf(o, "%" PRId64, a->v.i);
		break;
	case OSH_ATTR_DOUBLE:
		/* printf writes "nan"/"inf", which are not JSON numbers: use the
		 * strings of the protobuf JSON mapping instead. */
		if (json && isnan(a->v.d))
			puts_(o, "\"NaN\"");
		else if (json && isinf(a->v.d))
			puts_(o, a->v.d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
		else
			putf(o, "%.17g", a->v.d);
		break;
	case OSH_ATTR_BOOL:
		puts_(o, a->v.b ? "true" : "false");
		break;
	case OSH_ATTR_STRING_ARRAY: {
		const char *region = osh_span_str(s, a->v.s), *e;
		size_t at = 0, n;
		bool first = true;

		/* JSON array in both formats: elements are quoted strings. */
		put(o, "[", 1);
		while (osh_span_strs_next(region, a->v.s.len, &at, &e, &n)) {
			if (!first)
				put(o, ",", 1);
			first = false;
			put(o, "\"", 1);
			put_json_str(o, e, n);
			put(o, "\"", 1);
		}
		put(o, "]", 1);
		break;
	}
	}
}

size_t osh_console_format(const struct osh_span *s, const struct osh_resource *res, bool json,
			  char *buf, size_t bufsz)
{
	struct out o = { buf, 0, bufsz };
	char tid[33], sid[17], pid[17];
	const struct osh_resource_attr *svc = res ? osh_resource_get(res, "service.name") : NULL;
	double ms = s->end_ns > s->start_ns ? (double)(s->end_ns - s->start_ns) / 1e6 : 0.0;

	if (bufsz < 2) {
		/* No room for a line, but the result is still a C string. */
		if (bufsz)
			buf[0] = '\0';
		return 0;
	}
	osh_hex_encode(s->trace_id, 16, tid);
	tid[32] = '\0';
	osh_hex_encode(s->span_id, 8, sid);
	sid[16] = '\0';
	osh_hex_encode(s->parent_span_id, 8, pid);
	pid[16] = '\0';

	if (json) {
		puts_(&o, "{\"name\":\"");
		put_json_str(&o, osh_span_str(s, s->name), s->name.len);
		putf(&o, "\",\"kind\":\"%s\",\"trace_id\":\"%s\",\"span_id\":\"%s\"", kind_name(s->kind),
		     tid, sid);
		if (s->has_parent)
			putf(&o, ",\"parent_span_id\":\"%s\"", pid);
		putf(&o, ",\"trace_flags\":\"%02x\"", s->trace_flags);
		putf(&o, ",\"start_time_unix_nano\":%" PRIu64 ",\"end_time_unix_nano\":%" PRIu64,
		     s->start_ns, s->end_ns);
		putf(&o, ",\"duration_ms\":%.3f,\"status\":\"%s\"", ms, status_name(s->status_code));
		puts_(&o, ",\"attributes\":{");
		for (unsigned i = 0; i < s->n_attrs; i++) {
			if (i)
				put(&o, ",", 1);
			put(&o, "\"", 1);
			puts_(&o, s->attrs[i].key);
			puts_(&o, "\":");
			put_attr_value(&o, s, &s->attrs[i], true);
		}
		put(&o, "}", 1);
		if (s->n_events) {
			puts_(&o, ",\"events\":[");
			for (unsigned e = 0; e < s->n_events && e < OSH_SPAN_MAX_EVENTS; e++) {
				const struct osh_event *ev = &s->events[e];

				puts_(&o, e ? ",{\"name\":\"" : "{\"name\":\"");
				put_json_str(&o, osh_span_str(s, ev->name), ev->name.len);
				putf(&o, "\",\"time_unix_nano\":%" PRIu64 ",\"attributes\":{", ev->time_ns);
				for (unsigned i = 0; i < ev->n_attrs && i < OSH_EVENT_MAX_ATTRS; i++) {
					puts_(&o, i ? ",\"" : "\"");
					puts_(&o, ev->attrs[i].key);
					puts_(&o, "\":");
					put_attr_value(&o, s, &ev->attrs[i], true);
				}
				puts_(&o, "}}");
			}
			put(&o, "]", 1);
		}
		if (svc && !svc->is_int) {
			puts_(&o, ",\"service.name\":\"");
			put_json_str(&o, svc->str, strlen(svc->str));
			put(&o, "\"", 1);
		}
		put(&o, "}", 1);
	} else {
		puts_(&o, "otelshim: span ");
		put_text_value(&o, osh_span_str(s, s->name), s->name.len);
		putf(&o, " kind=%s status=%s duration=%.3fms", kind_name(s->kind),
		     status_name(s->status_code), ms);
		if (svc && !svc->is_int) {
			puts_(&o, " service=");
			put_text_value(&o, svc->str, strlen(svc->str));
		}
		putf(&o, " trace_id=%s span_id=%s", tid, sid);
		if (s->has_parent)
			putf(&o, " parent_id=%s", pid);
		for (unsigned i = 0; i < s->n_attrs; i++) {
			put(&o, " ", 1);
			puts_(&o, s->attrs[i].key);
			put(&o, "=", 1);
			put_attr_value(&o, s, &s->attrs[i], false);
		}
		for (unsigned e = 0; e < s->n_events && e < OSH_SPAN_MAX_EVENTS; e++) {
			const struct osh_event *ev = &s->events[e];

			puts_(&o, " event=");
			put_text_value(&o, osh_span_str(s, ev->name), ev->name.len);
			for (unsigned i = 0; i < ev->n_attrs && i < OSH_EVENT_MAX_ATTRS; i++) {
				put(&o, ",", 1);
				puts_(&o, ev->attrs[i].key);
				put(&o, "=", 1);
				put_attr_value(&o, s, &ev->attrs[i], false);
			}
		}
	}
	o.p[o.len++] = '\n';
	o.p[o.len] = '\0';
	return o.len;
}
