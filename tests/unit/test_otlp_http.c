/* OTLP/HTTP transport: the pure helpers by table, then the whole transport
 * against a tiny HTTP/1.1 server thread on 127.0.0.1 that answers from a
 * script and records every request (head, body, arrival time, connection). */
#include "buildconf.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

#include "clock.h"
#include "config.h"
#include "diag.h"
#include "export/module.h"
#include "export/otlp_encode.h"
#include "export/otlp_http.h"
#include "resource.h"
#include "span.h"

extern const struct osh_otlp_module osh_otlp_module_v1;

/* ---- host callbacks: what the module tells the shim ---- */

#define MAX_LOGS 32
static char logs[MAX_LOGS][512];
static int log_levels[MAX_LOGS];
static int n_logs;

static void host_log(int level, const char *msg)
{
	if (n_logs < MAX_LOGS) {
		snprintf(logs[n_logs], sizeof(logs[0]), "%s", msg);
		log_levels[n_logs] = level;
	}
	n_logs++;
}

static int owned_now, owned_total, disowned_total;

static void host_own_fd(int fd, bool owned)
{
	cr_assert_geq(fd, 0);
	if (owned) {
		owned_now++;
		owned_total++;
	} else {
		owned_now--;
		disowned_total++;
	}
}

static const struct osh_otlp_host host = { host_log, host_own_fd };

static void setup(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* A proxy from the environment would swallow requests to 127.0.0.1. */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
}

/* ---- pure helpers ---- */

static char *joined(struct curl_slist *l)
{
	static char buf[1024];

	buf[0] = '\0';
	for (; l; l = l->next) {
		strcat(buf, l->data);
		strcat(buf, "|");
	}
	return buf;
}

Test(otlp_http, parse_headers)
{
	static const struct {
		const char *in;
		const char *out;
		size_t skipped;
	} cases[] = {
		{ "", "", 0 },
		{ "api-key=secret", "api-key: secret|", 0 },
		{ "a=1,b=2", "a: 1|b: 2|", 0 },
		{ " a = 1 ,\tb=2\t", "a: 1|b: 2|", 0 },
		{ "authorization=Bearer%20abc", "authorization: Bearer abc|", 0 },
		{ "x=a%2Cb%3Dc", "x: a,b=c|", 0 },
		{ "x=%20padded%20", "x:  padded |", 0 },
		{ "x=a=b", "x: a=b|", 0 },
		{ "x=", "x;|", 0 },
		{ "a=1,,b=2,", "a: 1|b: 2|", 0 },
		{ "x%2Dy=1", "x-y: 1|", 0 },
		{ "novalue", "", 1 },
		{ "=v", "", 1 },
		{ " =v", "", 1 },
		{ "bad key=v,ok=1", "ok: 1|", 1 },
		{ "k:=v", "", 1 },
		{ "k=%zz,ok=1", "ok: 1|", 1 },
		{ "k=%2", "", 1 },
		{ "k=%", "", 1 },
		{ "k=a%0D%0AInjected: 1", "", 1 },
		{ "k=a%00b", "", 1 },
		{ "k=tab%09ok", "k: tab\tok|", 0 },
		{ "Content-Type=text/plain,content-encoding=br,Host=x,expect=1", "", 4 },
		{ "a=1,bad,c=3,=4", "a: 1|c: 3|", 2 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct curl_slist *l = NULL;
		size_t skipped = 99;

		cr_assert_eq(osh_otlp_http_parse_headers(cases[i].in, &l, &skipped), 0, "case %zu",
			     i);
		cr_assert_str_eq(joined(l), cases[i].out, "case %zu (%s)", i, cases[i].in);
		cr_assert_eq(skipped, cases[i].skipped, "case %zu (%s)", i, cases[i].in);
		curl_slist_free_all(l);
	}
}

Test(otlp_http, parse_headers_null_and_append)
{
	struct curl_slist *l = curl_slist_append(NULL, "Fixed: 1");
	size_t skipped = 5;

	cr_assert_eq(osh_otlp_http_parse_headers(NULL, &l, &skipped), 0);
	cr_assert_eq(skipped, 0);
	cr_assert_eq(osh_otlp_http_parse_headers("a=b", &l, &skipped), 0);
	cr_assert_str_eq(joined(l), "Fixed: 1|a: b|");
	curl_slist_free_all(l);
}

Test(otlp_http, parse_retry_after)
{
	/* Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date. */
	const time_t now = 784111777;
	static const struct {
		const char *in;
		bool ok;
		uint64_t ms;
	} cases[] = {
		{ "0", true, 0 },
		{ "1", true, 1000 },
		{ " 120 ", true, 120000 },
		{ "Sun, 06 Nov 1994 08:49:47 GMT", true, 10000 },
		{ "Sunday, 06-Nov-94 08:50:37 GMT", true, 60000 },
		{ "Sun Nov  6 08:49:39 1994", true, 2000 },
		{ "Sun, 06 Nov 1994 08:00:00 GMT", true, 0 }, /* in the past */
		{ "99999999999999999999", true, (uint64_t)UINT32_MAX * 1000 },
		{ "", false, 0 },
		{ "   ", false, 0 },
		{ "-1", false, 0 },
		{ "1.5", false, 0 },
		{ "12:00", false, 0 },
		{ "soon", false, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 4242;
		bool ok = osh_otlp_http_parse_retry_after(cases[i].in, now, &ms);

		cr_assert_eq(ok, cases[i].ok, "case %zu (%s)", i, cases[i].in);
		cr_assert_eq(ms, cases[i].ok ? cases[i].ms : 4242, "case %zu (%s): %llu", i,
			     cases[i].in, (unsigned long long)ms);
	}
}

Test(otlp_http, redact_url)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "http://localhost:4318/v1/traces", "http://localhost:4318/v1/traces" },
		{ "https://user:pw@c.example:443/v1/traces", "https://c.example:443/v1/traces" },
		{ "http://user@host/", "http://host/" },
		{ "http://a@b:c@host/x@y", "http://host/x@y" },
		{ "http://host/p?q=a@b", "http://host/p?q=a@b" },
		{ "http://u:p@host", "http://host" },
	};
	char out[128], small[10];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		osh_otlp_http_redact_url(cases[i].in, out, sizeof(out));
		cr_assert_str_eq(out, cases[i].out, "case %zu", i);
	}
	osh_otlp_http_redact_url("http://u:p@host/long/path", small, sizeof(small));
	cr_assert_str_eq(small, "http://ho");
}

/* ---- the test server ---- */

enum action {
	RESPOND,	/* status + headers + body, keep the connection */
	HANG,		/* read the request, never answer */
	CLOSE,		/* read the request, close without a response */
	RESPOND_EOF,	/* no Content-Length: the body ends when the connection closes */
};

struct reply {
	enum action act;
	int status;
	const char *headers;	/* extra header lines, each ending in \r\n */
	const uint8_t *body;
	size_t body_len;
};

#define MAX_REQS 16

struct req {
	uint64_t t_ns;
	char *head;
	uint8_t *body;
	size_t body_len;
	unsigned conn;
};

struct server {
	int lfd;
	int port;
	char url[128];
	pthread_t thread;
	atomic_bool stop;
	const struct reply *script;	/* the last entry repeats */
	size_t n_script;
	pthread_mutex_t lock;
	struct req reqs[MAX_REQS];
	size_t n_reqs;
	unsigned n_conns;
};

/* Read more into *buf; false on EOF, error or stop. */
static bool read_some(struct server *s, int fd, char **buf, size_t *len, size_t *cap)
{
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t r;

		if (atomic_load(&s->stop))
			return false;
		if (poll(&p, 1, 50) <= 0)
			continue;
		if (*cap - *len < 65536) {
			*cap = *cap * 2 + 65536;
			*buf = realloc(*buf, *cap);
		}
		r = recv(fd, *buf + *len, *cap - *len - 1, 0);
		if (r <= 0)
			return false;
		*len += (size_t)r;
		(*buf)[*len] = '\0';
		return true;
	}
}

static size_t content_length(const char *head)
{
	const char *p = head;

	while ((p = strchr(p, '\n'))) {
		p++;
		if (strncasecmp(p, "content-length:", 15) == 0)
			return strtoul(p + 15, NULL, 10);
	}
	return 0;
}

static void send_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		len -= (size_t)w;
	}
}

static void respond(int fd, const struct reply *r)
{
	char head[512];
	int n;

	if (r->act == RESPOND_EOF)
		n = snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nConnection: close\r\n\r\n",
			     r->status);
	else
		n = snprintf(head, sizeof(head),
			     "HTTP/1.1 %d X\r\nContent-Type: application/x-protobuf\r\n"
			     "Content-Length: %zu\r\n%s\r\n",
			     r->status, r->body_len, r->headers ? r->headers : "");

	send_all(fd, head, (size_t)n);
	if (r->body_len)
		send_all(fd, r->body, r->body_len);
}

static void serve_conn(struct server *s, int fd, unsigned conn)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;

	for (;;) {
		char *end;
		size_t head_len, body_len;
		const struct reply *r;
		struct req *q;
		size_t idx;

		while (!buf || !(end = strstr(buf, "\r\n\r\n")))
			if (!read_some(s, fd, &buf, &len, &cap))
				goto out;
		head_len = (size_t)(end - buf) + 4;
		body_len = content_length(buf);
		while (len < head_len + body_len)
			if (!read_some(s, fd, &buf, &len, &cap))
				goto out;

		pthread_mutex_lock(&s->lock);
		idx = s->n_reqs;
		if (idx < MAX_REQS) {
			q = &s->reqs[idx];
			q->t_ns = osh_clock_monotonic_ns();
			q->head = strndup(buf, head_len);
			q->body = malloc(body_len + 1);
			memcpy(q->body, buf + head_len, body_len);
			q->body_len = body_len;
			q->conn = conn;
		}
		s->n_reqs++;
		pthread_mutex_unlock(&s->lock);
		r = &s->script[idx < s->n_script ? idx : s->n_script - 1];

		memmove(buf, buf + head_len + body_len, len - head_len - body_len);
		len -= head_len + body_len;
		buf[len] = '\0';

		if (r->act == CLOSE)
			goto out;
		if (r->act == HANG) {
			/* Until the client gives up and closes. */
			while (read_some(s, fd, &buf, &len, &cap))
				;
			goto out;
		}
		respond(fd, r);
		if (r->act == RESPOND_EOF)
			goto out;
	}
out:
	free(buf);
}

static void *server_main(void *arg)
{
	struct server *s = arg;

	while (!atomic_load(&s->stop)) {
		struct pollfd p = { s->lfd, POLLIN, 0 };
		unsigned conn;
		int fd;

		if (poll(&p, 1, 50) <= 0)
			continue;
		fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&s->lock);
		conn = ++s->n_conns;
		pthread_mutex_unlock(&s->lock);
		serve_conn(s, fd, conn);
		close(fd);
	}
	return NULL;
}

static int bind_loopback(int *ret_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	cr_assert_geq(fd, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	*ret_port = ntohs(a.sin_port);
	return fd;
}

static void server_start(struct server *s, const struct reply *script, size_t n)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	s->script = script;
	s->n_script = n;
	s->lfd = bind_loopback(&s->port);
	cr_assert_eq(listen(s->lfd, 8), 0);
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d/v1/traces", s->port);
	cr_assert_eq(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(struct server *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thread, NULL);
	close(s->lfd);
	for (size_t i = 0; i < MAX_REQS && i < s->n_reqs; i++) {
		free(s->reqs[i].head);
		free(s->reqs[i].body);
	}
}

static size_t server_count(struct server *s)
{
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n_reqs;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* The value of header @name in request @i, or NULL. */
static char *req_header(struct server *s, size_t i, const char *name)
{
	static char val[256];
	size_t nl = strlen(name);
	const char *p = s->reqs[i].head;

	while ((p = strchr(p, '\n'))) {
		p++;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1, *e;

			while (*v == ' ')
				v++;
			e = strstr(v, "\r\n");
			snprintf(val, sizeof(val), "%.*s", (int)(e - v), v);
			return val;
		}
	}
	return NULL;
}

/* ---- transport tests ---- */

static uint8_t payload[] = "\x0a\x03" "abc" "not really protobuf, the transport does not care";

static struct osh_config config_for(const char *url)
{
	struct osh_config cfg = { 0 };

	cfg.traces_url = (char *)url;
	cfg.retry_initial_ms = 20;
	cfg.otlp_timeout_ms = 10000;
	return cfg;
}

static uint64_t in_ms(uint64_t ms)
{
	return osh_clock_monotonic_ns() + ms * 1000000ull;
}

static const struct reply ok_200 = { RESPOND, 200, NULL, NULL, 0 };

Test(otlp_http, ok_200, .init = setup, .timeout = 30)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_not_null(h);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 1);
	cr_assert(strncmp(s.reqs[0].head, "POST /v1/traces HTTP/1.1\r\n", 26) == 0);
	cr_assert_str_eq(req_header(&s, 0, "Content-Type"), "application/x-protobuf");
	cr_assert_str_eq(req_header(&s, 0, "User-Agent"),
			 "otelshim/" OSH_VERSION " OTel-OTLP-Exporter-C/" OSH_VERSION);
	cr_assert_null(req_header(&s, 0, "Content-Encoding"));
	cr_assert_null(req_header(&s, 0, "Expect"));
	cr_assert_eq(s.reqs[0].body_len, sizeof(payload));
	cr_assert_arr_eq(s.reqs[0].body, payload, sizeof(payload));

	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 1);
	cr_assert_eq(st.retries, 0);
	cr_assert_eq(st.rejected_spans, 0);
	cr_assert_eq(st.bytes_sent, sizeof(payload));
	cr_assert_eq(n_logs, 0, "nothing to report: %s", logs[0]);

	/* The socket was the module's own while it lived. */
	cr_assert_geq(owned_total, 1);
	osh_otlp_http_destroy(h);
	cr_assert_eq(owned_now, 0, "every owned fd is disowned before it is closed");
	cr_assert_eq(disowned_total, owned_total);
	server_stop(&s);
}

Test(otlp_http, keep_alive, .init = setup, .timeout = 30)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
			     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 3);
	cr_assert_eq(s.reqs[2].conn, s.reqs[0].conn, "one connection for every batch");
	cr_assert_eq(owned_total, 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, retry_503_then_200, .init = setup, .timeout = 30)
{
	static const struct reply script[] = { { RESPOND, 503, NULL, NULL, 0 },
					       { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, script, 2);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2);
	cr_assert_arr_eq(s.reqs[1].body, payload, sizeof(payload));
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 2);
	cr_assert_eq(st.retries, 1);
	cr_assert_eq(st.bytes_sent, 2 * sizeof(payload));
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, retryable_statuses, .init = setup, .timeout = 30)
{
	static const int codes[] = { 429, 502, 504 };

	for (size_t i = 0; i < 3; i++) {
		struct reply script[] = { { RESPOND, codes[i], NULL, NULL, 0 },
					  { RESPOND, 200, NULL, NULL, 0 } };
		struct server s;
		struct osh_config cfg;
		struct osh_otlp_http *h;

		server_start(&s, script, 2);
		cfg = config_for(s.url);
		h = osh_otlp_http_create(&cfg, &host);
		cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
			     OSH_EXPORT_OK, "status %d", codes[i]);
		cr_assert_eq(server_count(&s), 2, "status %d", codes[i]);
		osh_otlp_http_destroy(h);
		server_stop(&s);
	}
}

Test(otlp_http, empty_reply_is_retried, .init = setup, .timeout = 30)
{
	static const struct reply script[] = { { CLOSE, 0, NULL, NULL, 0 },
					       { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 2);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2);
	cr_assert_neq(s.reqs[1].conn, s.reqs[0].conn);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, retry_after_seconds, .init = setup, .timeout = 30)
{
	static const struct reply script[] = { { RESPOND, 429, "Retry-After: 1\r\n", NULL, 0 },
					       { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 2);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2);
	/* The backoff alone would be ~20 ms. */
	cr_assert_geq(s.reqs[1].t_ns - s.reqs[0].t_ns, 900000000ull, "%llu ns apart",
		      (unsigned long long)(s.reqs[1].t_ns - s.reqs[0].t_ns));
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, retry_after_past_deadline_gives_up_now, .init = setup, .timeout = 30)
{
	static const struct reply script[] = { { RESPOND, 503, "Retry-After: 30\r\n", NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	uint64_t t0;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(5000), false),
		     OSH_EXPORT_GAVE_UP);
	cr_assert_lt(osh_clock_monotonic_ns() - t0, 4000000000ull, "did not wait for the deadline");
	cr_assert_eq(server_count(&s), 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, retryable_until_deadline, .init = setup, .timeout = 30)
{
	static const struct reply script[] = { { RESPOND, 503, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	/* Waits of 20, 40, 80, 160, 320 ms (+-20%) fit in 1 s; 640 more does not,
	 * so the transport gives up at once instead of sleeping to the deadline. */
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(1000), false),
		     OSH_EXPORT_GAVE_UP);
	osh_otlp_http_stats(h, &st);
	cr_assert_geq(st.requests, 3);
	cr_assert_leq(st.requests, 8);
	cr_assert_eq(st.retries, st.requests - 1);
	cr_assert_eq(server_count(&s), st.requests);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, final_makes_one_attempt, .init = setup, .timeout = 30)
{
	static const struct reply script[] = { { RESPOND, 503, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), true),
		     OSH_EXPORT_GAVE_UP);
	cr_assert_eq(server_count(&s), 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, status_400_dropped_and_reported_once, .init = setup, .timeout = 30)
{
	static const struct reply script[] = { { RESPOND, 400, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	char url[160];

	server_start(&s, script, 1);
	snprintf(url, sizeof(url), "http://user:hunter2@127.0.0.1:%d/v1/traces", s.port);
	cfg = config_for(url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(server_count(&s), 1, "no retry after 400");
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(server_count(&s), 2);
	cr_assert_eq(n_logs, 1, "reported once");
	cr_assert_eq(log_levels[0], OSH_LOG_WARN);
	cr_assert(strstr(logs[0], "400"), "%s", logs[0]);
	cr_assert(strstr(logs[0], s.url), "%s", logs[0]);
	cr_assert_null(strstr(logs[0], "hunter2"), "%s", logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, other_statuses_dropped, .init = setup, .timeout = 30)
{
	static const int codes[] = { 401, 403, 404, 413, 500, 501, 302 };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		struct reply script[] = { { RESPOND, codes[i], "Location: /elsewhere\r\n", NULL,
					    0 } };
		struct server s;
		struct osh_config cfg;
		struct osh_otlp_http *h;

		server_start(&s, script, 1);
		cfg = config_for(s.url);
		h = osh_otlp_http_create(&cfg, &host);
		cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
			     OSH_EXPORT_DROPPED, "status %d", codes[i]);
		cr_assert_eq(server_count(&s), 1, "status %d", codes[i]);
		osh_otlp_http_destroy(h);
		server_stop(&s);
	}
}

static uint8_t *partial_body(int64_t rejected, const char *msg, size_t *ret_len)
{
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse resp =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess ps =
		OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
	uint8_t *buf;

	ps.rejected_spans = rejected;
	ps.error_message = (char *)msg;
	resp.partial_success = &ps;
	*ret_len = protobuf_c_message_get_packed_size(&resp.base);
	buf = malloc(*ret_len);
	protobuf_c_message_pack(&resp.base, buf);
	return buf;
}

Test(otlp_http, partial_success_counted, .init = setup, .timeout = 30)
{
	struct reply script[] = { { RESPOND, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *body = partial_body(2, "2 spans without a name\n\x1b[31m", &script[0].body_len);

	script[0].body = body;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 2, "partial success is not retried");
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.rejected_spans, 4);
	cr_assert_eq(n_logs, 1, "reported once");
	cr_assert(strstr(logs[0], "2 spans without a name??[31m"), "control characters masked: %s",
		  logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(body);
}

Test(otlp_http, non_protobuf_2xx_body_is_accepted, .init = setup, .timeout = 30)
{
	static const uint8_t junk[] = "{\"partialSuccess\":{}}";
	static const struct reply script[] = { { RESPOND, 202, NULL, junk, sizeof(junk) - 1 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, oversized_response_dropped, .init = setup, .timeout = 30)
{
	struct reply script[] = { { RESPOND, 200, NULL, NULL, OSH_OTLP_MAX_RESPONSE + 1 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	uint8_t *big = calloc(1, OSH_OTLP_MAX_RESPONSE + 1);

	script[0].body = big;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(server_count(&s), 1);
	cr_assert_eq(n_logs, 1);
	cr_assert(strstr(logs[0], "4 MiB"), "%s", logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(big);
}

/* Without a Content-Length, only the body callback can enforce the cap. */
Test(otlp_http, oversized_streamed_response_dropped, .init = setup, .timeout = 30)
{
	struct reply script[] = { { RESPOND_EOF, 200, NULL, NULL, OSH_OTLP_MAX_RESPONSE + 1 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	uint8_t *big = calloc(1, OSH_OTLP_MAX_RESPONSE + 1);

	script[0].body = big;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	cr_assert_eq(server_count(&s), 1);
	cr_assert_eq(n_logs, 1);
	cr_assert(strstr(logs[0], "4 MiB"), "%s", logs[0]);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(big);
}

Test(otlp_http, streamed_response_under_cap, .init = setup, .timeout = 30)
{
	struct reply script[] = { { RESPOND_EOF, 200, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *body = partial_body(1, "one", &script[0].body_len);

	script[0].body = body;
	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.rejected_spans, 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(body);
}

Test(otlp_http, oversized_request_refused, .init = setup, .timeout = 30)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *big = calloc(1, OSH_OTLP_MAX_REQUEST + 1);

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, big, OSH_OTLP_MAX_REQUEST + 1, in_ms(10000), false),
		     OSH_EXPORT_DROPPED);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 0);
	cr_assert_eq(server_count(&s), 0);
	cr_assert_eq(n_logs, 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
	free(big);
}

Test(otlp_http, gzip_body, .init = setup, .timeout = 30)
{
	enum { N = 20 };
	static const struct osh_resource_attr ra[] = { { .key = "service.name", .str = "llm.gz" } };
	static const struct osh_resource res = { (struct osh_resource_attr *)ra, 1 };
	static struct osh_span spans[N];
	struct osh_span *list[N];
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	uint8_t *body, *out;
	size_t len;
	z_stream zs = { 0 };

	for (int i = 0; i < N; i++) {
		osh_span_init(&spans[i]);
		spans[i].span_id[0] = (uint8_t)(i + 1);
		osh_span_set_name(&spans[i], "GET", 3);
		osh_span_set_cstr(&spans[i], "url.full", "http://example.com/some/long/path");
		list[i] = &spans[i];
	}
	cr_assert_eq(osh_otlp_encode(&res, list, N, &body, &len), 0);

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	cfg.otlp_gzip = true;
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, body, len, in_ms(10000), false), OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 1);
	cr_assert_str_eq(req_header(&s, 0, "Content-Encoding"), "gzip");
	cr_assert_lt(s.reqs[0].body_len, len, "compressed");
	cr_assert_eq(s.reqs[0].body[0], 0x1f, "gzip magic");
	cr_assert_eq(s.reqs[0].body[1], 0x8b, "gzip magic");

	out = malloc(len + 16);
	cr_assert_eq(inflateInit2(&zs, 15 + 16), Z_OK);
	zs.next_in = s.reqs[0].body;
	zs.avail_in = (uInt)s.reqs[0].body_len;
	zs.next_out = out;
	zs.avail_out = (uInt)(len + 16);
	cr_assert_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
	cr_assert_eq(zs.total_out, len);
	cr_assert_arr_eq(out, body, len);
	inflateEnd(&zs);

	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.bytes_sent, s.reqs[0].body_len, "bytes after compression");

	/* The deflate stream is reset between requests. */
	cr_assert_eq(osh_otlp_http_send(h, body, len, in_ms(10000), false), OSH_EXPORT_OK);
	cr_assert_eq(s.reqs[1].body_len, s.reqs[0].body_len);
	cr_assert_arr_eq(s.reqs[1].body, s.reqs[0].body, s.reqs[0].body_len);
	free(out);
	free(body);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, custom_headers, .init = setup, .timeout = 30)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	cfg.otlp_headers = " Authorization = Bearer%20a%2Cb ,broken,x-tenant=t1,"
			   "User-Agent=mine%2F1,content-type=text/plain";
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_not_null(h);
	cr_assert_eq(n_logs, 1, "malformed members reported once at creation");
	cr_assert(strstr(logs[0], "2 malformed"), "%s", logs[0]);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), false),
		     OSH_EXPORT_OK);
	cr_assert_str_eq(req_header(&s, 0, "Authorization"), "Bearer a,b");
	cr_assert_str_eq(req_header(&s, 0, "x-tenant"), "t1");
	cr_assert_str_eq(req_header(&s, 0, "Content-Type"), "application/x-protobuf");
	cr_assert_null(req_header(&s, 0, "broken"));
	/* An explicit User-Agent header replaces the default one. */
	cr_assert_str_eq(req_header(&s, 0, "User-Agent"), "mine/1");
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

static int closed_port(void)
{
	int port, fd = bind_loopback(&port);

	close(fd);
	return port;
}

Test(otlp_http, refused_final_is_unreachable, .init = setup, .timeout = 30)
{
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	char url[128];
	uint64_t t0;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", closed_port());
	cfg = config_for(url);
	h = osh_otlp_http_create(&cfg, &host);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(10000), true),
		     OSH_EXPORT_UNREACHABLE);
	cr_assert_lt(osh_clock_monotonic_ns() - t0, 5000000000ull);
	osh_otlp_http_stats(h, &st);
	cr_assert_eq(st.requests, 1);
	cr_assert_eq(st.bytes_sent, 0);
	cr_assert_eq(n_logs, 0, "the shim decides how to report a missing collector");
	cr_assert_eq(owned_now, 0, "the refused socket was disowned and closed");
	osh_otlp_http_destroy(h);
}

Test(otlp_http, refused_until_deadline_is_unreachable, .init = setup, .timeout = 30)
{
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct osh_otlp_stats st;
	char url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/traces", closed_port());
	cfg = config_for(url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(300), false),
		     OSH_EXPORT_UNREACHABLE);
	osh_otlp_http_stats(h, &st);
	cr_assert_geq(st.requests, 2, "connection failures are retried");
	osh_otlp_http_destroy(h);
}

Test(otlp_http, deadline_already_passed, .init = setup, .timeout = 30)
{
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload),
					osh_clock_monotonic_ns() - 1, false),
		     OSH_EXPORT_GAVE_UP);
	cr_assert_eq(server_count(&s), 0);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

struct interrupter {
	struct osh_otlp_http *h;
	struct server *s;
	size_t after_requests;	/* wait until the server has seen this many */
};

static void *interrupt_main(void *arg)
{
	struct interrupter *it = arg;

	/* Bounded: the test's own timeout is the backstop. */
	for (int i = 0; i < 2000 && server_count(it->s) < it->after_requests; i++)
		usleep(5000);
	usleep(50000);
	osh_otlp_http_interrupt(it->h, osh_clock_monotonic_ns());
	return NULL;
}

Test(otlp_http, interrupt_aborts_hanging_request, .init = setup, .timeout = 30)
{
	static const struct reply script[] = { { HANG, 0, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct interrupter it;
	pthread_t t;
	uint64_t t0, spent;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	h = osh_otlp_http_create(&cfg, &host);
	it = (struct interrupter){ h, &s, 1 };
	cr_assert_eq(pthread_create(&t, NULL, interrupt_main, &it), 0);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(25000), false),
		     OSH_EXPORT_GAVE_UP);
	spent = osh_clock_monotonic_ns() - t0;
	pthread_join(t, NULL);
	/* Without a wakeup the poll would sleep 10 s or until the deadline. */
	cr_assert_lt(spent, 8000000000ull, "returned after %llu ms",
		     (unsigned long long)(spent / 1000000));
	cr_assert_eq(server_count(&s), 1);

	/* The cap outlives the interrupted send: shutdown stays short. */
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(20000), false),
		     OSH_EXPORT_GAVE_UP);
	cr_assert_eq(server_count(&s), 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, interrupt_cuts_backoff_wait, .init = setup, .timeout = 30)
{
	static const struct reply script[] = { { RESPOND, 503, NULL, NULL, 0 } };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_http *h;
	struct interrupter it;
	pthread_t t;
	uint64_t t0, spent;

	server_start(&s, script, 1);
	cfg = config_for(s.url);
	cfg.retry_initial_ms = 15000;
	h = osh_otlp_http_create(&cfg, &host);
	it = (struct interrupter){ h, &s, 1 };
	cr_assert_eq(pthread_create(&t, NULL, interrupt_main, &it), 0);
	t0 = osh_clock_monotonic_ns();
	cr_assert_eq(osh_otlp_http_send(h, payload, sizeof(payload), in_ms(25000), false),
		     OSH_EXPORT_GAVE_UP);
	spent = osh_clock_monotonic_ns() - t0;
	pthread_join(t, NULL);
	cr_assert_lt(spent, 8000000000ull, "returned after %llu ms",
		     (unsigned long long)(spent / 1000000));
	cr_assert_eq(server_count(&s), 1);
	osh_otlp_http_destroy(h);
	server_stop(&s);
}

Test(otlp_http, create_fails_without_url, .init = setup, .timeout = 30)
{
	struct osh_config cfg = config_for(NULL);

	cr_assert_null(osh_otlp_http_create(&cfg, &host));
	cr_assert_eq(n_logs, 1);
	osh_otlp_http_destroy(NULL);
}

/* ---- the module table, end to end ---- */

Test(otlp_http, module_exports_spans, .init = setup, .timeout = 30)
{
	static const struct osh_resource_attr ra[] = {
		{ .key = "service.name", .str = "llm.module" },
		{ .key = "process.pid", .is_int = true, .i = 77 },
	};
	static const struct osh_resource res = { (struct osh_resource_attr *)ra, 2 };
	const struct osh_otlp_module *m = &osh_otlp_module_v1;
	struct osh_span a, b;
	struct osh_span *list[] = { &a, &b };
	struct server s;
	struct osh_config cfg;
	struct osh_otlp_stats st;
	Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req;
	void *exp;

	osh_span_init(&a);
	osh_span_init(&b);
	a.span_id[0] = 1;
	b.span_id[0] = 2;
	osh_span_set_name(&a, "first", 5);
	osh_span_set_name(&b, "second", 6);

	server_start(&s, &ok_200, 1);
	cfg = config_for(s.url);
	exp = m->create(&cfg, &res, &host);
	cr_assert_not_null(exp);
	cr_assert_eq(m->export_spans(exp, list, 2, in_ms(10000), false), OSH_EXPORT_OK);
	cr_assert_eq(server_count(&s), 1);
	req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
		NULL, s.reqs[0].body_len, s.reqs[0].body);
	cr_assert_not_null(req);
	cr_assert_str_eq(req->resource_spans[0]->resource->attributes[0]->value->string_value,
			 "llm.module");
	cr_assert_eq(req->resource_spans[0]->resource->attributes[1]->value->int_value, 77);
	cr_assert_eq(req->resource_spans[0]->scope_spans[0]->n_spans, 2);
	cr_assert_str_eq(req->resource_spans[0]->scope_spans[0]->spans[0]->name, "first");
	cr_assert_str_eq(req->resource_spans[0]->scope_spans[0]->spans[1]->name, "second");
	opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
		req, NULL);

	m->stats(exp, &st);
	cr_assert_eq(st.requests, 1);
	cr_assert_eq(st.bytes_sent, s.reqs[0].body_len);

	/* interrupt() through the table caps the next export too. */
	m->interrupt(exp, osh_clock_monotonic_ns());
	cr_assert_eq(m->export_spans(exp, list, 2, in_ms(10000), true), OSH_EXPORT_GAVE_UP);
	cr_assert_eq(server_count(&s), 1);
	m->destroy(exp);
	m->destroy(NULL);
	server_stop(&s);
}
