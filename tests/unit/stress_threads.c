/* Concurrency stress without criterion (whose sandbox does not run under
 * ThreadSanitizer): run in every build, and it is what a
 * `-Db_sanitize=thread` build checks.
 *
 * 1. Four producers and one consumer on the span queue: every pointer comes
 *    out exactly once.
 * 2. Four threads taking and returning span records through the pool.
 * 3. One connection with a writer thread sending requests through the
 *    engine (prepare / "kernel" / commit) and a reader thread feeding the
 *    responses at the same time: every request yields exactly one span.
 * 4. Deferred observation: three server threads, each with a connection,
 *    log requests and responses while another thread replays the log as
 *    the exporter thread does; one of them makes an outgoing request
 *    halfway, which ends deferral for all: every exchange yields exactly
 *    one span, whoever parsed it.
 * Exit status 0 on success; prints what failed otherwise. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "exporter.h"
#include "http_client.h"
#include "http_server.h"
#include "propagation.h"
#include "queue.h"
#include "span.h"

#define PRODUCERS 4
#define PER_PRODUCER 20000
#define REQUESTS 3000

static struct osh_queue q;
static _Atomic int producers_left = PRODUCERS;

static void *producer(void *arg)
{
	uintptr_t base = (uintptr_t)arg * PER_PRODUCER;

	for (uintptr_t i = 0; i < PER_PRODUCER; i++) {
		while (!osh_queue_push(&q, (struct osh_span *)(base + i + 1)))
			sched_yield();
	}
	atomic_fetch_sub(&producers_left, 1);
	return NULL;
}

static int queue_stress(void)
{
	static unsigned char seen[PRODUCERS * PER_PRODUCER + 1];
	pthread_t t[PRODUCERS];
	size_t got = 0;

	if (osh_queue_init(&q, 64) < 0)
		return 1;
	for (uintptr_t i = 0; i < PRODUCERS; i++)
		pthread_create(&t[i], NULL, producer, (void *)i);
	while (got < PRODUCERS * PER_PRODUCER) {
		struct osh_span *s = osh_queue_pop(&q);
		if (!s) {
			sched_yield();
			continue;
		}
		if ((uintptr_t)s > PRODUCERS * PER_PRODUCER || seen[(uintptr_t)s]++) {
			fprintf(stderr, "queue: bad or repeated pointer %p\n", (void *)s);
			return 1;
		}
		got++;
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(t[i], NULL);
	osh_queue_finish(&q);
	return 0;
}

static void *pool_worker(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20000; i++) {
		struct osh_span *s = osh_span_create();
		if (!s)
			return (void *)1;
		osh_span_set_cstr(s, "k", "value");
		if (s->n_attrs != 1)
			return (void *)1;
		osh_span_destroy(s);
	}
	return NULL;
}

static int pool_stress(void)
{
	pthread_t t[4];
	void *r;
	int bad = 0;

	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, pool_worker, NULL);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], &r);
		bad |= r != NULL;
	}
	if (bad)
		fprintf(stderr, "pool: a record came back dirty\n");
	return bad;
}

static _Atomic int spans_done;

static void capture(struct osh_span *s)
{
	atomic_fetch_add(&spans_done, 1);
	osh_span_destroy(s);
}

struct pipe_state {
	struct osh_conn *c;
	int fd;
	_Atomic int requests_sent;
};

static void *writer(void *arg)
{
	struct pipe_state *st = arg;
	static const char req[] = "GET /stress HTTP/1.1\r\nHost: x\r\n\r\n";
	struct iovec iov = { (void *)req, sizeof(req) - 1 };
	struct osh_tx_plan plan;

	for (int i = 0; i < REQUESTS; i++) {
		/* Keep at most two in flight: the reader must keep up. */
		while (atomic_load(&st->requests_sent) - atomic_load(&spans_done) >= 2)
			sched_yield();
		osh_client_tx_prepare(st->c, st->fd, &iov, 1, &plan);
		ssize_t real = (ssize_t)(plan.changed ? plan.real_total : iov.iov_len);
		if (osh_client_tx_commit(st->c, &plan, &iov, 1, real, 0) != (ssize_t)iov.iov_len)
			return (void *)1;
		atomic_fetch_add(&st->requests_sent, 1);
	}
	return NULL;
}

static void *reader(void *arg)
{
	struct pipe_state *st = arg;
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	int answered = 0;

	while (answered < REQUESTS) {
		if (answered >= atomic_load(&st->requests_sent)) {
			sched_yield();
			continue;
		}
		/* Feed the response in two pieces to cross the head split. */
		struct iovec a = { (void *)resp, 10 }, b = { (void *)(resp + 10), sizeof(resp) - 11 };
		osh_client_rx(st->c, &a, 1, 10, 0);
		osh_client_rx(st->c, &b, 1, (ssize_t)b.iov_len, 0);
		answered++;
	}
	return NULL;
}

static int engine_stress(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(8080) };
	struct pipe_state st = { 0 };
	int sv[2];
	pthread_t w, r;
	void *wr;

	osh_cfg.exporter = OSH_EXPORTER_CONSOLE;
	osh_cfg.sampler = OSH_SAMPLER_ALWAYS_ON;
	osh_cfg.propagate_tracecontext = true;
	osh_span_set_limits(0, 128);
	osh_client_init();
	osh_exporter_set_capture(capture);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	osh_conn_track_client(sv[0], (struct sockaddr *)&sin, sizeof(sin));
	st.c = osh_conn_get(sv[0]);
	st.fd = sv[0];
	if (!st.c)
		return 1;
	pthread_create(&w, NULL, writer, &st);
	pthread_create(&r, NULL, reader, &st);
	pthread_join(w, &wr);
	pthread_join(r, NULL);
	if (wr) {
		fprintf(stderr, "engine: a commit reported the wrong count\n");
		return 1;
	}
	if (atomic_load(&spans_done) != REQUESTS) {
		fprintf(stderr, "engine: %d spans for %d requests\n", atomic_load(&spans_done),
			REQUESTS);
		return 1;
	}
	osh_conn_release(st.c, OSH_END_CLOSED);
	close(sv[0]);
	close(sv[1]);
	return 0;
}

#define SERVERS 3

struct server_state {
	struct osh_conn *c;
	int fd, peer;
	bool call_out;		/* make an outgoing request halfway */
};

static _Atomic int servers_left;

static void *serve(void *arg)
{
	struct server_state *st = arg;
	static const char req[] = "GET /items/7 HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	struct iovec rq = { (void *)req, sizeof(req) - 1 }, rs = { (void *)resp, sizeof(resp) - 1 };

	for (int i = 0; i < REQUESTS; i++) {
		if (st->call_out && i == REQUESTS / 2)
			(void)osh_client_current_parent();
		osh_server_rx(st->c, &rq, 1, (ssize_t)rq.iov_len, 0);
		osh_server_tx(st->c, &rs, 1, (ssize_t)rs.iov_len, 0);
	}
	atomic_fetch_sub(&servers_left, 1);
	return NULL;
}

static void *replayer(void *arg)
{
	(void)arg;
	while (atomic_load(&servers_left) > 0)
		osh_server_replay();
	osh_server_replay();
	return NULL;
}

static int deferred_stress(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in cli = { .sin_family = AF_INET, .sin_port = htons(40000) };
	struct server_state st[SERVERS];
	socklen_t sl = sizeof(sin);
	pthread_t th[SERVERS], rp;
	int before = atomic_load(&spans_done);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int got;

	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	cli.sin_addr = sin.sin_addr;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(lfd, 4) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl) != 0)
		return 1;
	for (int i = 0; i < SERVERS; i++) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
			return 1;
		osh_conn_track_server(sv[0], lfd, (struct sockaddr *)&cli, sizeof(cli));
		st[i] = (struct server_state){ osh_conn_get(sv[0]), sv[0], sv[1], i == 1 };
		if (!st[i].c)
			return 1;
	}
	if (!osh_server_defer_start())
		return 1;
	atomic_store(&servers_left, SERVERS);
	for (int i = 0; i < SERVERS; i++)
		pthread_create(&th[i], NULL, serve, &st[i]);
	pthread_create(&rp, NULL, replayer, NULL);
	for (int i = 0; i < SERVERS; i++)
		pthread_join(th[i], NULL);
	pthread_join(rp, NULL);
	osh_server_replay();
	got = atomic_load(&spans_done) - before;
	if (got != SERVERS * REQUESTS) {
		fprintf(stderr, "deferred: %d spans for %d exchanges\n", got, SERVERS * REQUESTS);
		return 1;
	}
	for (int i = 0; i < SERVERS; i++) {
		osh_conn_release(st[i].c, OSH_END_CLOSED);
		close(st[i].fd);
		close(st[i].peer);
	}
	close(lfd);
	return 0;
}

int main(void)
{
	int bad = queue_stress() | pool_stress() | engine_stress() | deferred_stress();

	printf("%s\n", bad ? "FAIL" : "ok");
	return bad;
}
