/* The LLM tracker's own cost per call (issue 5's benchmark): what an LLM
 * call costs on top of its plain HTTP span. Two shapes, fed through
 * llm.c exactly as the client engine feeds it (request head and body,
 * response head, body in reads of 1-4 KiB, finish onto a span record):
 *
 *   json    an OpenAI chat request (~300 B) and a 4 KiB JSON response
 *   stream  the same request, answered by a 500-chunk SSE stream
 *           (chunked framing, ~200 B per event) with a usage chunk
 *   agent   an agent's request (a 40-message history, 5 tool schemas:
 *           ~36 KB) answered by the 4 KiB JSON response
 *
 * The response body goes in as the HTTP engine hands it over (the
 * tracker walks the engine's walker of the framing). Each round of calls
 * is followed by as many plain walks of the same body by the engine's
 * walker alone: what the engine spends on any response. Prints CPU ns per
 * call, per plain walk, and the call's cost on top of the plain walk (the
 * median of the rounds' differences: both sides see the same machine
 * state, which on a shared VM moves by half from minute to minute), and
 * the most heap the tracker held at once (mallinfo2), for bench/run.py. jansson and zlib are loaded
 * before timing (a process pays that once, at its first LLM call).
 *
 *   llm_bench [calls-per-round [json|stream|agent]]
 *
 * OSH_BENCH_READ=<bytes> sets the stream's read size (1024 by default;
 * ~205 is one event per read, as a client that keeps up reads a stream).
 * OSH_BENCH_VARY=1 alternates two requests that differ in max_tokens, so
 * that the request memo never answers (each request parsed).
 * With a shape named, only that one runs (for callgrind profiles).
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "http.h"
#include "lazylib.h"
#include "llm.h"
#include "span.h"

static char req_body[2][512];	/* the second: max_tokens 801 */
static size_t req_len[2];
/* OSH_BENCH_VARY: calls alternate between the two requests, so that no
 * call's request reads as the last one's (the request memo never
 * answers: what a parse costs). */
static bool vary;
static unsigned call_no;
static char *agent_body;
static size_t agent_len;
static bool agent;	/* one_call() sends agent_body */
static char *json_body;
static size_t json_len;
static char *stream_body;
static size_t stream_len;
static size_t peak_heap;
static size_t read_size = 1024;	/* a stream's reads (OSH_BENCH_READ overrides, for experiments) */
static bool sample_heap;	/* an untimed pass: mallinfo2 costs more than a read */

static double cpu_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void make_bodies(void)
{
	size_t cap = 1 << 20, w = 0;

	for (int i = 0; i < 2; i++)
		req_len[i] = (size_t)snprintf(
			req_body[i], sizeof(req_body[i]),
			"{\"model\":\"gpt-4o-mini\",\"max_tokens\":%d,\"temperature\":0.3,"
			"\"stream\":false,\"stream_options\":{\"include_usage\":true},"
			"\"messages\":[{\"role\":\"system\",\"content\":\"You are a "
			"helpful assistant.\"},{\"role\":\"user\",\"content\":\"Write a "
			"short story about a lighthouse keeper and a storm.\"}]}",
			800 + i);
	/* 4 KiB JSON response: the story in one message, usage at the end. */
	json_body = malloc(cap);
	w += (size_t)sprintf(json_body + w,
			     "{\"id\":\"chatcmpl-AbC123\",\"object\":\"chat.completion\",\"created\":"
			     "1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":"
			     "0,\"message\":{\"role\":\"assistant\",\"content\":\"");
	while (w < 4096 - 220)
		w += (size_t)sprintf(json_body + w, "The keeper climbed the stairs again. ");
	w += (size_t)sprintf(json_body + w,
			     "\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":41,"
			     "\"completion_tokens\":812,\"total_tokens\":853,"
			     "\"prompt_tokens_details\":{\"cached_tokens\":0}},"
			     "\"system_fingerprint\":\"fp_0ba0d124f1\"}");
	json_len = w;

	/* An agent's request: the conversation so far and its tools. */
	agent_body = malloc(cap);
	w = (size_t)sprintf(agent_body, "{\"model\":\"gpt-4o-mini\",\"max_tokens\":800,"
			    "\"temperature\":0.2,\"messages\":[{\"role\":\"system\",\"content\":"
			    "\"You are a careful operations agent.\"}");
	for (int i = 0; i < 40; i++) {
		w += (size_t)sprintf(agent_body + w, ",{\"role\":\"%s\",\"content\":\"",
				     i % 2 ? "assistant" : "user");
		for (int k = 0; k < 12; k++)
			w += (size_t)sprintf(agent_body + w, "step %d of the runbook, check %d. ", i, k);
		w += (size_t)sprintf(agent_body + w, "\"}");
	}
	w += (size_t)sprintf(agent_body + w, "],\"tools\":[");
	for (int t = 0; t < 5; t++)
		w += (size_t)sprintf(agent_body + w, "%s{\"type\":\"function\",\"function\":{\"name\":"
				     "\"tool_%d\",\"description\":\"Looks up item %d.\",\"parameters\":"
				     "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"},"
				     "\"limit\":{\"type\":\"integer\"}},\"required\":[\"id\"]}}}",
				     t ? "," : "", t, t);
	w += (size_t)sprintf(agent_body + w, "]}");
	agent_len = w;

	/* 500 content chunks, each in its own HTTP chunk, then usage and
	 * [DONE]. */
	stream_body = malloc(cap);
	w = 0;
	for (int i = 0; i < 502; i++) {
		char ev[400];
		int n;

		if (i < 500)
			n = snprintf(ev, sizeof(ev),
				     "data: {\"id\":\"chatcmpl-AbC123\",\"object\":"
				     "\"chat.completion.chunk\",\"created\":1700000000,\"model\":"
				     "\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":"
				     "{\"content\":\" word%d\"},\"finish_reason\":%s}]}\n\n",
				     i, i == 499 ? "\"stop\"" : "null");
		else if (i == 500)
			n = snprintf(ev, sizeof(ev),
				     "data: {\"id\":\"chatcmpl-AbC123\",\"choices\":[],\"usage\":"
				     "{\"prompt_tokens\":41,\"completion_tokens\":500}}\n\n");
		else
			n = snprintf(ev, sizeof(ev), "data: [DONE]\n\n");
		w += (size_t)sprintf(stream_body + w, "%x\r\n", n);
		memcpy(stream_body + w, ev, (size_t)n);
		w += (size_t)n;
		memcpy(stream_body + w, "\r\n", 2);
		w += 2;
	}
	memcpy(stream_body + w, "0\r\n\r\n", 5);
	stream_len = w + 5;
}

static void note_heap(void)
{
	struct mallinfo2 m = mallinfo2();

	if (m.uordblks > peak_heap)
		peak_heap = m.uordblks;
}

/* One call; @stream picks the shape. The response body goes in as the
 * HTTP engine hands it over: the engine's walker of the body's framing is
 * walked by the tracker as it decodes (osh_llm_response_walk). */
static void one_call(bool stream, struct osh_span *rec)
{
	static const char path[] = "/v1/chat/completions";
	struct osh_llm *l = osh_llm_start((struct osh_str){ "api.openai.com", 14 },
					  (struct osh_str){ path, sizeof(path) - 1 });
	struct osh_http_request req = { 0 };
	struct osh_http_response resp = { 0 };
	struct osh_http_body walker;
	const char *body = stream ? stream_body : json_body;
	size_t len = stream ? stream_len : json_len;
	enum osh_http_body_kind kind = stream ? OSH_BODY_CHUNKED : OSH_BODY_LENGTH;

	req.body = OSH_BODY_LENGTH;
	unsigned which = vary ? call_no++ & 1 : 0;

	req.content_length = agent ? agent_len : req_len[which];
	osh_llm_request_head(l, &req, 200);
	osh_llm_request_body(l, 200, agent ? agent_body : req_body[which],
			     agent ? agent_len : req_len[which]);
	resp.status = 200;
	resp.content_type = stream ? (struct osh_str){ "text/event-stream", 17 }
				   : (struct osh_str){ "application/json", 16 };
	resp.content_length = len;
	osh_http_body_start(&walker, kind, len);
	osh_llm_response_head(l, &resp, kind, 1);
	/* Reads as a client makes them: 1 KiB (stream) or 4 KiB (JSON). */
	for (size_t off = 0, step = stream ? read_size : 4096; off < len; off += step) {
		size_t k = len - off < step ? len - off : step;

		if (osh_llm_response_walk(l, &walker, body + off, k, 2 + off) == OSH_LLM_NOT_WALKED)
			(void)osh_http_body_feed(&walker, body + off, k);
		if (sample_heap)
			note_heap();
	}
	osh_llm_finish(l, rec);
}

/* What the engine does with the same response when it is no LLM call: its
 * walker reads the framing, in the same reads. The LLM call's cost on top
 * of the plain HTTP span is one_call() minus this. */
static size_t plain_call(bool stream)
{
	struct osh_http_body walker;
	const char *body = stream ? stream_body : json_body;
	size_t len = stream ? stream_len : json_len, used = 0;

	osh_http_body_start(&walker, stream ? OSH_BODY_CHUNKED : OSH_BODY_LENGTH, len);
	for (size_t off = 0, step = stream ? read_size : 4096; off < len; off += step) {
		size_t k = len - off < step ? len - off : step;
		ssize_t n = osh_http_body_feed(&walker, body + off, k);

		used += n > 0 ? (size_t)n : 0;
	}
	return used;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp);
	return v[n / 2];
}

/* Rounds of @calls LLM calls, each round followed by as many plain walks
 * of the same body (the same machine state for both). Returns the median
 * CPU ns per LLM call; *ret_plain the median per plain walk; *ret_on_top
 * the median of the rounds' differences. */
static double measure(bool stream, int calls, int rounds, double *ret_plain, double *ret_on_top)
{
	double per[32], plain[32], diff[32];
	volatile size_t sink = 0;

	for (int r = 0; r < rounds; r++) {
		double t0 = cpu_ns(), t1;

		for (int i = 0; i < calls; i++) {
			struct osh_span *rec = osh_span_create();

			one_call(stream, rec);
			osh_span_destroy(rec);
		}
		t1 = cpu_ns();
		for (int i = 0; i < calls; i++)
			sink += plain_call(stream);
		per[r] = (t1 - t0) / calls;
		plain[r] = (cpu_ns() - t1) / calls;
		diff[r] = per[r] - plain[r];
	}
	(void)sink;
	if (ret_plain)
		*ret_plain = median(plain, rounds);
	if (ret_on_top)
		*ret_on_top = median(diff, rounds);
	return median(per, rounds);
}

int main(int argc, char **argv)
{
	int calls = argc > 1 ? atoi(argv[1]) : 2000;
	struct mallinfo2 before;
	double json_ns = 0, stream_ns = 0, agent_ns = 0;
	double json_plain = 0, json_top = 0, stream_plain = 0, stream_top = 0, agent_top = 0;
	size_t base;

	vary = getenv("OSH_BENCH_VARY") && strcmp(getenv("OSH_BENCH_VARY"), "1") == 0;
	if (getenv("OSH_BENCH_READ"))
		read_size = (size_t)atoi(getenv("OSH_BENCH_READ"));
	osh_cfg.llm_body_limit = 4u << 20;
	osh_span_set_limits(0, 128);
	make_bodies();
	if (!osh_jansson() || !osh_zlib()) {
		fprintf(stderr, "llm_bench: jansson or zlib not loadable\n");
		return 1;
	}
	{
		struct osh_span *rec = osh_span_create();

		one_call(false, rec);	/* warm: tables, first allocations */
		osh_span_destroy(rec);
	}
	before = mallinfo2();
	base = before.uordblks;
	peak_heap = base;
	if (argc <= 2 || strcmp(argv[2], "json") == 0)
		json_ns = measure(false, calls, 7, &json_plain, &json_top);
	agent = true;
	if (argc <= 2 || strcmp(argv[2], "agent") == 0)
		agent_ns = measure(false, calls / 4 ? calls / 4 : 1, 7, NULL, &agent_top);
	agent = false;
	if (argc <= 2 || strcmp(argv[2], "stream") == 0)
		stream_ns = measure(true, calls / 10 ? calls / 10 : 1, 7, &stream_plain,
				    &stream_top);
	sample_heap = true;
	measure(false, 1, 1, NULL, NULL);
	measure(true, 1, 1, NULL, NULL);
	printf("json_ns_per_call=%.0f json_plain_ns=%.0f json_on_top_ns=%.0f "
	       "stream_ns_per_call=%.0f stream_plain_ns=%.0f stream_on_top_ns=%.0f "
	       "agent_ns_per_call=%.0f agent_on_top_ns=%.0f json_bytes=%zu "
	       "stream_bytes=%zu agent_request_bytes=%zu stream_events=500 peak_heap_bytes=%zu\n",
	       json_ns, json_plain, json_top, stream_ns, stream_plain, stream_top, agent_ns,
	       agent_top, json_len, stream_len, agent_len, peak_heap - base);
	return 0;
}
