/* The OTLP module's function table (see module.h): protobuf-c encoding
 * (otlp_encode.c) and the OTLP/HTTP transport (otlp_http.c: a built-in
 * HTTP/1.1 client, or libcurl loaded on demand) behind the one symbol the
 * shim looks up after dlopen(). */
#include "buildconf.h"

#include <stdbool.h>
#include <stdlib.h>

#include "diag.h"
#include "export/module.h"
#include "export/otlp_encode.h"
#include "export/otlp_http.h"
#include "span.h"

struct exporter {
	struct osh_otlp_encoder *enc;
	struct osh_otlp_http *http;
	struct osh_otlp_host host;
	bool reported_encode;
};

static void *create(const struct osh_config *cfg, const struct osh_resource *res,
		    const struct osh_otlp_host *host)
{
	struct exporter *exp;

	/* No libcurl here: the transport loads it on its first https:// send,
	 * so an exporter to http:// never pays for it (otlp_http.h). */
	exp = calloc(1, sizeof(*exp));
	if (!exp)
		return NULL;
	if (host)
		exp->host = *host;
	exp->enc = osh_otlp_encoder_create(res);
	exp->http = osh_otlp_http_create(cfg, host);
	if (!exp->enc || !exp->http) {
		osh_otlp_encoder_destroy(exp->enc);
		osh_otlp_http_destroy(exp->http);
		free(exp);
		return NULL;
	}
	return exp;
}

static int export_spans(void *opaque, struct osh_span *const *spans, size_t n,
			uint64_t deadline_ns, bool final)
{
	struct exporter *exp = opaque;
	const uint8_t *body;
	size_t len;

	if (osh_otlp_encoder_encode(exp->enc, spans, n, &body, &len) < 0) {
		if (!exp->reported_encode && exp->host.log)
			exp->host.log(OSH_LOG_WARN, "out of memory encoding OTLP, dropping spans");
		exp->reported_encode = true;
		return OSH_EXPORT_DROPPED;
	}
	return osh_otlp_http_send(exp->http, body, len, deadline_ns, final);
}

static size_t add_spans(void *opaque, struct osh_span *const *spans, size_t n)
{
	struct exporter *exp = opaque;
	size_t before = osh_otlp_encoder_pending(exp->enc);

	if (osh_otlp_encoder_add(exp->enc, spans, n) < 0) {
		if (!exp->reported_encode && exp->host.log)
			exp->host.log(OSH_LOG_WARN, "out of memory encoding OTLP, dropping spans");
		exp->reported_encode = true;
	}
	return osh_otlp_encoder_pending(exp->enc) - before;
}

static size_t pending(void *opaque)
{
	struct exporter *exp = opaque;

	return osh_otlp_encoder_pending(exp->enc);
}

static int send_pending(void *opaque, uint64_t deadline_ns, bool final)
{
	struct exporter *exp = opaque;
	const uint8_t *body;
	size_t len;

	if (!osh_otlp_encoder_pending(exp->enc))
		return OSH_EXPORT_OK;
	if (osh_otlp_encoder_finish(exp->enc, &body, &len) < 0)
		return OSH_EXPORT_DROPPED;
	return osh_otlp_http_send(exp->http, body, len, deadline_ns, final);
}

static void interrupt(void *opaque, uint64_t deadline_ns)
{
	struct exporter *exp = opaque;

	/* Any thread, possibly at exit before an exporter ever existed. */
	if (exp)
		osh_otlp_http_interrupt(exp->http, deadline_ns);
}

static void stats(void *opaque, struct osh_otlp_stats *ret)
{
	struct exporter *exp = opaque;

	osh_otlp_http_stats(exp->http, ret);
}

static void destroy(void *opaque)
{
	struct exporter *exp = opaque;

	if (!exp)
		return;
	osh_otlp_http_destroy(exp->http);
	osh_otlp_encoder_destroy(exp->enc);
	free(exp);
}

__attribute__((visibility("default"))) const struct osh_otlp_module osh_otlp_module_v1 = {
	.abi = OSH_OTLP_ABI,
	.span_size = sizeof(struct osh_span),
	.create = create,
	.export_spans = export_spans,
	.add_spans = add_spans,
	.pending = pending,
	.send_pending = send_pending,
	.interrupt = interrupt,
	.stats = stats,
	.destroy = destroy,
};
