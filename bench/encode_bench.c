/* OTLP encoder throughput on one core: spans shaped like the shim's HTTP
 * client spans (15 attributes, ~400 bytes of strings) encoded in batches of
 * 512 with the module's reusable encoder, for about two seconds.
 *
 *   encode_bench [SECONDS]      prints spans/s and bytes/span
 *   encode_bench -n BATCHES     encodes exactly BATCHES batches (for callgrind)
 *
 * Instructions per span, counting the encoder only (span setup excluded):
 *   valgrind --tool=callgrind --toggle-collect=osh_otlp_encoder_encode \
 *	encode_bench -n 20
 * then divide the "Collected" Ir by the spans= count printed.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "export/otlp_encode.h"
#include "ids.h"
#include "resource.h"
#include "span.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(struct osh_span *s, int i)
{
	char url[128];

	osh_span_init(s);
	osh_ids_trace_id(s->trace_id);
	osh_ids_span_id(s->span_id);
	osh_ids_span_id(s->parent_span_id);
	s->has_parent = true;
	s->parent_remote = true;
	s->trace_flags = 1;
	s->kind = OSH_SPAN_CLIENT;
	s->start_ns = 1700000000000000000ull + (uint64_t)i * 1000;
	s->end_ns = s->start_ns + 250000;
	osh_span_set_name(s, "POST /v1/chat/completions", 25);
	snprintf(url, sizeof(url), "https://api.example.com/v1/chat/completions?request=%d", i);
	osh_span_set_cstr(s, "http.request.method", "POST");
	osh_span_set_cstr(s, "url.full", url);
	osh_span_set_cstr(s, "url.scheme", "https");
	osh_span_set_cstr(s, "url.path", "/v1/chat/completions");
	osh_span_set_cstr(s, "server.address", "api.example.com");
	osh_span_set_int(s, "server.port", 443);
	osh_span_set_cstr(s, "network.peer.address", "203.0.113.10");
	osh_span_set_int(s, "network.peer.port", 443);
	osh_span_set_cstr(s, "network.protocol.version", "1.1");
	osh_span_set_int(s, "http.response.status_code", 200);
	osh_span_set_cstr(s, "user_agent.original", "OpenAI/Python 1.40.0");
	osh_span_set_int(s, "http.request.body.size", 812);
	osh_span_set_int(s, "http.response.body.size", 2311);
	osh_span_set_cstr(s, "http.request.header.x-request-id", "req_8f2c1d0e4b6a");
	osh_span_set_bool(s, "llm.cache.hit", false);
}

int main(int argc, char **argv)
{
	/* A fixed batch count makes instruction counts repeatable. */
	bool fixed = argc > 2 && strcmp(argv[1], "-n") == 0;
	long batches = fixed ? atol(argv[2]) : 0;
	double seconds = !fixed && argc > 1 ? atof(argv[1]) : 2.0;
	enum { BATCH = 512 };
	struct osh_span **spans = calloc(BATCH, sizeof(*spans));
	struct osh_resource_attr ra[] = {
		{ .key = "service.name", .str = "llm.edge-agent" },
		{ .key = "service.version", .str = "1.4.2" },
		{ .key = "deployment.environment", .str = "production" },
		{ .key = "host.name", .str = "bench-host" },
		{ .key = "process.pid", .is_int = true, .i = 4242 },
	};
	struct osh_resource res = { ra, sizeof(ra) / sizeof(ra[0]) };
	struct osh_otlp_encoder *enc = osh_otlp_encoder_create(&res);
	unsigned long total = 0, bytes = 0;
	double t0, t;

	for (int i = 0; i < BATCH; i++) {
		spans[i] = osh_span_create();
		fill(spans[i], i);
	}
	t0 = now();
	if (fixed) {
		for (long k = 0; k < batches; k++) {
			const uint8_t *buf;
			size_t len;

			if (osh_otlp_encoder_encode(enc, spans, BATCH, &buf, &len) < 0)
				return 1;
			total += BATCH;
			bytes += len;
		}
		t = now();
		printf("spans=%lu bytes_per_span=%.1f ns_per_span=%.1f\n", total,
		       total ? (double)bytes / (double)total : 0.0,
		       total ? (t - t0) * 1e9 / (double)total : 0.0);
		osh_otlp_encoder_destroy(enc);
		return 0;
	}
	do {
		const uint8_t *buf;
		size_t len;
		for (int k = 0; k < 20; k++) {
			if (osh_otlp_encoder_encode(enc, spans, BATCH, &buf, &len) < 0)
				return 1;
			total += BATCH;
			bytes += len;
		}
		t = now();
	} while (t - t0 < seconds);
	printf("spans_per_s=%.0f bytes_per_span=%.1f ns_per_span=%.1f\n", (double)total / (t - t0),
	       (double)bytes / (double)total, (t - t0) * 1e9 / (double)total);
	osh_otlp_encoder_destroy(enc);
	return 0;
}
