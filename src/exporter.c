/* The export pipeline (see exporter.h and docs/ARCHITECTURE.md, "Export").
 *
 * App threads only push span pointers onto a lock-free bounded queue and,
 * when a full batch is waiting, wake the exporter with a futex. The
 * exporter thread (started on the first span, all signals blocked, holding
 * the re-entrancy guard for life) owns everything else: the resource, the
 * OTLP module and its transport state, batching, retries, formatting.
 */
#include "buildconf.h"

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "conn.h"
#include "diag.h"
#include "export/console.h"
#include "export/module.h"
#include "exporter.h"
#include "http_server.h"
#include "guard.h"
#include "init.h"
#include "loader.h"
#include "queue.h"
#include "real.h"
#include "resource.h"
#include "span.h"

enum { Q_NONE = 0, Q_INIT, Q_READY, Q_FAILED };
enum { T_NONE = 0, T_RUNNING, T_FAILED };

static struct osh_queue queue;
static _Atomic int queue_state;
static _Atomic int thread_state;

/* Futex words: the exporter sleeps on wake_word; a flusher sleeps on
 * flush_done until it reaches its flush_req ticket. */
static _Atomic uint32_t wake_word;
static _Atomic uint32_t flush_req;
static _Atomic uint32_t flush_done;
static _Atomic bool shutdown_started;
static _Atomic bool shutting_down;
static _Atomic uint64_t shutdown_deadline;
/* app_st.submitted when the last flush was requested (completed or timed out):
 * a later flush with nothing new to send returns at once, so a program that
 * tries exec in every PATH directory waits for a slow collector once. */
static _Atomic uint64_t flushed_upto;
static _Atomic bool drops_reported;
/* The process that started the thread: a vfork child shares our memory,
 * and a fork child whose handler was not armed has a stale thread_state;
 * neither may wait for a thread that is not theirs. */
static _Atomic pid_t exporter_pid;
/* The launcher describes the command it runs, not itself. */
static const struct osh_process_info *process_override;

/* Counters, on cache lines of their own by who writes them: every span an
 * app thread submits bumps submitted, and a line the exporter thread also
 * wrote (exported) would travel between cores with each of them. */
static struct {
	_Alignas(64) _Atomic uint64_t submitted;
	_Atomic uint64_t dropped;
} app_st;
static struct {
	_Alignas(64) _Atomic uint64_t exported;
	_Atomic uint64_t failed;
} exp_st;
static void (*test_capture)(struct osh_span *span);

/* Spans encoded per wake on the eager path (see eager()). */
#define EAGER_CHUNK 64
/* The shortest nap between two drains while spans keep coming (see
 * exporter_main): however fast they come, the thread wakes itself at most
 * ~5,000 times a second. */
#define NAP_MIN_NS 200000u
/* A nap lasts about the time this many chunks took to arrive: each of the
 * thread's wakes costs the CPU it lands on a switch there and back and the
 * lines it pushes out (under nginx, with wrk on the exporter's vCPU: 650
 * switches a second and 0.48 us of the thread's CPU a span at one chunk,
 * 230 and 0.34 us at four, no further gain at eight; docs/BENCHMARKS.md),
 * while the records in flight grow with the nap (four chunks' worth at
 * any steady rate: ~256 records, ~0.8 MB). */
#define NAP_CHUNKS 4
/* A nap that ends with nothing queued is doubled up to this before the
 * thread stops napping: a flow that only paused (a slow peer, a collection
 * in the program) keeps sparing its threads the wakes. */
#define NAP_MAX_NS 1000000000u
/* A drain that took nothing while the queue counted spans: a producer was
 * preempted between claiming its cell and filling it, and every span
 * behind that cell waits for it. The thread waits this long before looking
 * again, doubled up to STALL_MAX_NS while the cell stays empty, instead of
 * spinning on a CPU the preempted producer may need to finish. */
#define STALL_MIN_NS 50000u
#define STALL_MAX_NS 20000000u
/* A flush (exec, exit) finding the oldest span so held up waits for its
 * producer this long at most before it reports done without the spans
 * behind it: a thread that never comes back (killed mid-push) must not
 * hold up an exit for its whole budget. */
#define FLUSH_HOLD_NS 50000000u
static uint64_t flush_hold_ns = FLUSH_HOLD_NS;
/* Queued spans that wake the exporter (set by its thread; until then a
 * batch, as configured). */
static _Atomic uint64_t wake_every;

/* The largest power of two not above @v (0 for 0): submitters wake the
 * thread at multiples of it, a mask test where a division cost ~40 cycles
 * a span. Below a wake_every that is no power of two, a wake may find the
 * queue short of it: the thread then sleeps again. */
static uint64_t pow2_floor(uint64_t v)
{
	return v ? 1ull << (63 - __builtin_clzll(v)) : 0;
}

/* Exporter-thread state (the module table survives fork: same mappings). */
static const struct osh_otlp_module *module;
static void *_Atomic module_exp;
static bool atexit_registered;

static void futex_wake(_Atomic uint32_t *word, int n)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static void futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t timeout_ns)
{
	struct timespec ts = { (time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u) };

	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, expected, &ts, NULL, 0);
}

static __attribute__((noinline)) bool make_queue(void)
{
	int st = atomic_load_explicit(&queue_state, memory_order_acquire);
	int expected = Q_NONE;

	if (st == Q_READY)
		return true;
	if (st == Q_NONE && atomic_compare_exchange_strong(&queue_state, &expected, Q_INIT)) {
		st = osh_queue_init(&queue, osh_cfg.bsp_max_queue) == 0 ? Q_READY : Q_FAILED;
		atomic_store_explicit(&queue_state, st, memory_order_release);
		return st == Q_READY;
	}
	/* Another thread is allocating the queue (a calloc and one pass over
	 * it). That thread can be preempted midway on a loaded machine, and a
	 * short spin then dropped spans here (seen in CI: 2 of 40 lost, and
	 * misreported as a full queue), so yield to it; still bounded. */
	for (int i = 0; i < 1000000 && atomic_load(&queue_state) == Q_INIT; i++) {
		if (i < 1000)
			__builtin_ia32_pause();
		else
			sched_yield();
	}
	return atomic_load_explicit(&queue_state, memory_order_acquire) == Q_READY;
}

/* The queue, made at the first span: after that, one load. */
static inline bool ensure_queue(void)
{
	if (__builtin_expect(atomic_load_explicit(&queue_state, memory_order_acquire) == Q_READY, 1))
		return true;
	return make_queue();
}

static void wake_exporter(void)
{
	atomic_fetch_add(&wake_word, 1);
	futex_wake(&wake_word, 1);
}

void osh_exporter_wake(void)
{
	if (atomic_load_explicit(&thread_state, memory_order_relaxed) == T_RUNNING)
		wake_exporter();
}

/* ---- exporter thread ----------------------------------------------------- */

static void host_log(int level, const char *msg)
{
	osh_diag((enum osh_log_level)level, "%s", msg);
}

/* Set on the exporter thread at its start, and once it has an fd table of
 * its own. */
static __thread bool exporter_thread __attribute__((tls_model("initial-exec")));
static __thread bool private_fds __attribute__((tls_model("initial-exec")));

static void host_own_fd(int fd, bool owned)
{
	/* Numbers in a table of our own say nothing about the host's. */
	if (private_fds)
		return;
	osh_conn_mark_exporter(fd, owned);
}

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
/* The same number on every architecture but alpha; headers older than the
 * kernel may lack the name. */
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* An fd that goes nowhere, for the numbers 0-2 of our table. */
static int placeholder_fd(void)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR | O_CLOEXEC);

	return fd >= 0 ? fd : eventfd(0, EFD_CLOEXEC);
}

/* The exporter thread leaves the host's fd table for one of its own, empty
 * (docs/ARCHITECTURE.md, "The exporter's own fd table"): its sockets then
 * take no number from the host (whose open() returns what it would without
 * us, whose close-everything loops and dup2() cannot touch them, and whose
 * fork children do not inherit them). Not when this thread writes to the
 * host's stderr (the console exporter, diagnostics): that fd 2 is in the
 * host's table. (Fetching a copy for each line with pidfd_getfd would
 * work, but systemd's @system-service filter leaves that call out, and its
 * default action kills the process.) Nor when OTELSHIM_EXPORTER_SHARE_FDS
 * asks. */
static bool host_private_fds(void)
{
	if (private_fds)
		return true;
	/* Any other thread would lose the program's fds. */
	if (!exporter_thread)
		return false;
	if (osh_cfg.exporter != OSH_EXPORTER_OTLP || osh_cfg.exporter_share_fds ||
	    osh_diag_enabled(OSH_LOG_ERROR))
		return false;
	/* Nothing is copied: every number from 0 up is closed in the new
	 * table as it is made. Refused before Linux 5.9, or by a policy. */
	if (syscall(SYS_close_range, 0U, ~0U, CLOSE_RANGE_UNSHARE) != 0)
		return false;
	private_fds = true;
	/* 0, 1 and 2 taken, so that nothing written to them on this thread
	 * (a library's warning) lands in a socket of ours. */
	for (int i = 0; i < 3; i++)
		if (placeholder_fd() < 0)
			break;
	return true;
}

static const struct osh_otlp_host otlp_host = {
	.log = host_log,
	.own_fd = host_own_fd,
	.private_fds = host_private_fds,
};

static void atexit_flush(void)
{
	osh_exporter_shutdown();
}

/* Write all of @buf to stderr through the real write(2); a broken stderr
 * is not worth more than a few attempts. */
static void write_stderr(const char *buf, size_t len)
{
	for (int tries = 0; len > 0 && tries < 64; tries++) {
		ssize_t n = osh_real_get()->write(2, buf, len);
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return;
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		}
	}
}

#define CONSOLE_BUF (64 * 1024)
#define CONSOLE_SPAN_MAX 8192

static void console_export(struct osh_span **spans, size_t n, const struct osh_resource *res)
{
	/* On the heap at first use: a static buffer this size would sit in
	 * .bss between variables every process touches at load, and each
	 * extra page touched there is a page fault for every program. */
	static char *buf;
	size_t used = 0;

	if (!buf)
		buf = malloc(CONSOLE_BUF);
	if (!buf) {
		osh_diag_once(OSH_ONCE_ALLOC, OSH_LOG_WARN, "out of memory for console output");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (CONSOLE_BUF - used < CONSOLE_SPAN_MAX) {
			write_stderr(buf, used);
			used = 0;
		}
		used += osh_console_format(spans[i], res, osh_cfg.log_json, buf + used,
					   CONSOLE_BUF - used);
	}
	write_stderr(buf, used);
}

struct sink {
	enum osh_exporter_kind kind;
	struct osh_resource res;
	bool unreachable;	/* shutting down and the collector is not there */
};

static uint64_t ms_to_ns(uint64_t ms)
{
	return ms * 1000000ull;
}

static void export_batch(struct sink *sk, struct osh_span **spans, size_t n)
{
	bool final = atomic_load(&shutting_down);
	void *exp = atomic_load(&module_exp);
	int r = OSH_EXPORT_DROPPED;

	switch (sk->kind) {
	case OSH_EXPORTER_CONSOLE:
		console_export(spans, n, &sk->res);
		r = OSH_EXPORT_OK;
		break;
	case OSH_EXPORTER_OTLP: {
		uint64_t limit = osh_cfg.otlp_timeout_ms < osh_cfg.bsp_export_timeout_ms
					 ? osh_cfg.otlp_timeout_ms
					 : osh_cfg.bsp_export_timeout_ms;
		uint64_t deadline = osh_clock_monotonic_ns() + ms_to_ns(limit);

		/* An exec flush that failed to reach the collector must not
		 * mute a program that goes on after its exec failed. */
		if (!final)
			sk->unreachable = false;
		if (!exp || sk->unreachable)
			break;
		if (final) {
			uint64_t sd = atomic_load(&shutdown_deadline);
			if (sd && sd < deadline)
				deadline = sd;
		}
		r = module->export_spans(exp, spans, n, deadline, final);
		if (r == OSH_EXPORT_UNREACHABLE && final)
			sk->unreachable = true; /* no collector: don't hold up exit */
		if (r != OSH_EXPORT_OK && osh_cfg.fallback == OSH_EXPORTER_CONSOLE)
			console_export(spans, n, &sk->res);
		break;
	}
	case OSH_EXPORTER_NONE:
	default:
		break;
	}
	if (r == OSH_EXPORT_OK)
		atomic_fetch_add(&exp_st.exported, n);
	else
		atomic_fetch_add(&exp_st.failed, n);
	osh_span_destroy_many(spans, n);
}

/* The OTLP path builds each batch while spans arrive: records are encoded
 * a chunk at a time and go straight back to the pool, and only the encoded
 * bytes wait for a full batch or the schedule. A busy process then keeps
 * a few chunks of records in flight (the naps: NAP_CHUNKS) instead of a
 * whole queue's worth: on these VMs the
 * memory behind ~500 records in flight (fresh pages, cold lines) cost more
 * than encoding them (docs/BENCHMARKS.md). Not with the console fallback,
 * which needs the records of a batch that failed. */
static bool eager(const struct sink *sk)
{
	return sk->kind == OSH_EXPORTER_OTLP && osh_cfg.fallback != OSH_EXPORTER_CONSOLE &&
	       atomic_load(&module_exp) && module->add_spans;
}

/* Records warmed ahead of the one being completed (see pop_batch). */
#define WARM_AHEAD 4

/* Up to @max queued records, their deferred attributes derived (this thread
 * does that work so that the request path does not). The records were
 * written last on the threads that made them, on other cores: the lines of
 * a few records ahead are asked for while one is completed, so that their
 * misses overlap instead of coming one after another. */
static size_t pop_batch(struct osh_span **spans, size_t max)
{
	size_t n = 0;
	struct osh_span *s;

	while (n < max && (s = osh_queue_pop(&queue)))
		spans[n++] = s;
	for (size_t i = 0; i < n && i < WARM_AHEAD; i++)
		osh_span_warm(spans[i]);
	for (size_t i = 0; i < n; i++) {
		if (i + WARM_AHEAD < n)
			osh_span_warm(spans[i + WARM_AHEAD]);
		osh_span_complete(spans[i]);
	}
	return n;
}

/* Send the batch under way (eager path). */
static void send_pending(struct sink *sk)
{
	bool final = atomic_load(&shutting_down);
	void *exp = atomic_load(&module_exp);
	size_t n = module->pending(exp);
	uint64_t limit = osh_cfg.otlp_timeout_ms < osh_cfg.bsp_export_timeout_ms
				 ? osh_cfg.otlp_timeout_ms
				 : osh_cfg.bsp_export_timeout_ms;
	uint64_t deadline = osh_clock_monotonic_ns() + ms_to_ns(limit);
	int r = OSH_EXPORT_DROPPED;

	if (!n)
		return;
	if (!final)
		sk->unreachable = false;
	if (final) {
		uint64_t sd = atomic_load(&shutdown_deadline);
		if (sd && sd < deadline)
			deadline = sd;
	}
	if (!sk->unreachable) {
		r = module->send_pending(exp, deadline, final);
		if (r == OSH_EXPORT_UNREACHABLE && final)
			sk->unreachable = true; /* no collector: don't hold up exit */
	} else {
		/* Still the batch must go: finish() it unsent. */
		(void)module->send_pending(exp, osh_clock_monotonic_ns(), true);
	}
	if (r == OSH_EXPORT_OK)
		atomic_fetch_add(&exp_st.exported, n);
	else
		atomic_fetch_add(&exp_st.failed, n);
}

/* Between two chunks of a drain, while spans are left but the queue is
 * under a quarter full, the thread gives its CPU to whichever host thread
 * is waiting for it (sched_yield: its fair share is kept, only the turn is
 * given up). A drain of a nap's spans takes ~90 us; without this, a host
 * thread woken meanwhile on this CPU (another nginx worker, the program's
 * event loop, wrk in the server bench) waits for all of it. Behind (a
 * quarter full or more) it no longer steps aside, so on a host whose CPUs
 * are all busy it cannot fall behind far enough to drop spans for having
 * been polite (docs/BENCHMARKS.md, "Results, fifteenth session"). */
static void step_aside(void)
{
	uint64_t queued = osh_queue_size(&queue);

	if (queued && queued * 4 < (uint64_t)osh_cfg.bsp_max_queue)
		sched_yield();
}

/* Encode what is queued into the batch under way, sending each batch that
 * fills; @all: also send the last, partial one (schedule, flush, exit). */
static size_t drain_eager(struct sink *sk, struct osh_span **spans, size_t batch, bool all)
{
	void *exp = atomic_load(&module_exp);
	size_t total = 0;

	for (;;) {
		size_t room = batch - module->pending(exp), n, took;

		/* A chunk at a time, stepping aside between chunks while
		 * keeping up (see step_aside). */
		if (!all && room > EAGER_CHUNK)
			room = EAGER_CHUNK;
		n = pop_batch(spans, room);
		if (!n)
			break;
		total += n;
		took = module->add_spans(exp, spans, n);
		if (took < n)
			atomic_fetch_add(&exp_st.failed, n - took);
		osh_span_destroy_many(spans, n);
		if (module->pending(exp) >= batch)
			send_pending(sk);
		/* The queue ran dry before the room did: what arrives now
		 * waits for the next wake. Popping again at once would chase
		 * the producers along the queue, each pop pulling to this core
		 * the cell line an app thread is about to write. */
		if (n < room && !all)
			break;
		if (!all)
			step_aside();
	}
	if (all)
		send_pending(sk);
	return total;
}

/* Export what is queued; the number of spans taken. */
static size_t drain(struct sink *sk, struct osh_span **spans, size_t batch, bool all)
{
	size_t n, total = 0;

	if (eager(sk))
		return drain_eager(sk, spans, batch, all);
	do {
		n = pop_batch(spans, batch);
		total += n;
		if (n)
			export_batch(sk, spans, n);
	} while (n == batch);
	return total;
}

/* Wait on the exporter's word for the next step of a stall's backoff
 * (*stall_ns, doubled up to STALL_MAX_NS), at most @cap ns. A producer's
 * wake or a flush request ends it early. */
static void stall_wait(uint64_t *stall_ns, uint64_t cap)
{
	uint32_t w = atomic_load(&wake_word);

	*stall_ns = *stall_ns ? *stall_ns * 2 : STALL_MIN_NS;
	if (*stall_ns > STALL_MAX_NS)
		*stall_ns = STALL_MAX_NS;
	futex_wait(&wake_word, w, cap < *stall_ns ? cap : *stall_ns);
}

static void *exporter_main(void *arg)
{
	struct sink sk = { .kind = osh_cfg.exporter };
	struct osh_process_info *proc;
	size_t batch = osh_cfg.bsp_max_batch ? osh_cfg.bsp_max_batch : 512;
	struct osh_span **spans;
	uint32_t flushed = 0;
	uint64_t next;

	(void)arg;
	/* Everything this thread does is the shim's own business. */
	osh_guard_hold_forever();
	exporter_thread = true;
	/* SCHED_BATCH: an ordinary thread's share of the CPU, but its
	 * wake-ups never preempt the thread running there. Woken by a
	 * producer on the same CPU, it waits for the next scheduling point
	 * instead of cutting into the request being served (pinned with
	 * nginx: exporter 0.53 -> 0.43 and 0.48 -> 0.37 µs a span, fewer
	 * switches, docs/BENCHMARKS.md). Refused (seccomp): as it is. */
	{
		struct sched_param sp = { .sched_priority = 0 };

		(void)sched_setscheduler(0, SCHED_BATCH, &sp);
	}
	/* A lower priority when asked for (OTELSHIM_EXPORTER_NICE): the thread
	 * then preempts the host's threads less and, under full load, falls
	 * behind and drops (counted) instead. Never a higher one than
	 * inherited. Per thread on Linux: the tid. Before the name, so that
	 * whoever finds the thread by its name sees its priority. */
	if (osh_cfg.exporter_nice) {
		id_t me = (id_t)syscall(SYS_gettid);
		int cur;

		errno = 0;
		cur = getpriority(PRIO_PROCESS, me);
		if (!errno && (int)osh_cfg.exporter_nice > cur)
			(void)setpriority(PRIO_PROCESS, me, (int)osh_cfg.exporter_nice);
	}
	pthread_setname_np(pthread_self(), "otelshim-exp");

	spans = calloc(batch, sizeof(*spans));
	proc = calloc(1, sizeof(*proc));
	if (proc) {
		if (process_override)
			*proc = *process_override;
		else
			osh_resource_probe(proc);
		if (osh_resource_build(&sk.res, &osh_cfg, proc) < 0)
			memset(&sk.res, 0, sizeof(sk.res));
		free(proc);
	}
	if (sk.kind == OSH_EXPORTER_OTLP) {
		if (!module)
			module = osh_loader_otlp();
		if (module)
			atomic_store(&module_exp, module->create(&osh_cfg, &sk.res, &otlp_host));
		if (!atomic_load(&module_exp))
			osh_diag_once(OSH_ONCE_EXPORT_FAILED, OSH_LOG_ERROR,
				      "OTLP exporter unavailable; spans are dropped");
	}
	if (!spans) {
		osh_diag(OSH_LOG_ERROR, "out of memory in the exporter; spans are dropped");
		sk.kind = OSH_EXPORTER_NONE;
		spans = (struct osh_span *[1]){ NULL };
		batch = 1;
	}

	/* How many queued spans wake this thread: a chunk on the eager path,
	 * else a whole batch. */
	size_t wake_at = eager(&sk) && batch > EAGER_CHUNK ? EAGER_CHUNK : batch;
	/* While spans keep coming on the eager path, the thread naps between
	 * drains for about the time NAP_CHUNKS chunks take to arrive and
	 * wakes itself, and producers wake it only at this larger stride
	 * (half the queue): a futex wake of a thread asleep on another core
	 * cost the producer ~5 us here (an inter-processor interrupt through
	 * the hypervisor), against ~0.9 us for a plain system call, once
	 * every chunk (docs/BENCHMARKS.md). Woken during a nap, the thread
	 * drains if a chunk is queued: between two such wakes at most a
	 * stride and a chunk pile up, three quarters of the queue at most, so
	 * napping is for queues of four chunks or more. A nap that ends with
	 * nothing queued is doubled; past NAP_MAX_NS the flow has stopped,
	 * and producers wake the thread at every chunk again. A wake a
	 * producer skips, reading the old stride, only delays spans until the
	 * schedule, as a chunk's remainder always waits. */
	uint64_t valve = pow2_floor(osh_cfg.bsp_max_queue / 2);
	bool can_nap = eager(&sk) && valve >= 2 * (uint64_t)wake_at;
	/* Naps of NAP_CHUNKS chunks, fewer for a queue so small that the
	 * valve would end every such nap: a wake the program pays for. */
	uint64_t nap_chunks = valve / wake_at / 2 < NAP_CHUNKS ? valve / wake_at / 2 : NAP_CHUNKS;
	bool napping = false;
	uint64_t nap_until = 0, nap_ns = 0, last_drain = 0, stall_ns = 0;
	/* A flush's hold: until when, and below which queue position (the
	 * spans claimed when the flush began; later ones are not its to wait
	 * for). */
	uint64_t flush_hold_until = 0, flush_hold_below = 0;

	atomic_store(&wake_every, wake_at);
	next = osh_clock_monotonic_ns() + ms_to_ns(osh_cfg.bsp_delay_ms);
	/* From now on this thread observes server connections' calls, which
	 * the program's threads only log (http_server.c). */
	if (sk.kind != OSH_EXPORTER_NONE && osh_cfg.server_defer)
		(void)osh_server_defer_start();
	for (;;) {
		uint32_t req;

		/* Before looking at the queue: the calls logged so far become
		 * spans on it. */
		osh_server_replay();
		req = atomic_load(&flush_req);
		bool flush = req != flushed;
		uint64_t now = osh_clock_monotonic_ns();
		bool due;
		size_t n;

		if (!flush && now < next) {
			uint64_t queued = osh_queue_size(&queue);

			bool in_nap = napping && now < nap_until;

			if (napping && !in_nap && !queued) {
				if (nap_ns < NAP_MAX_NS) {
					nap_ns *= 2;
					nap_until = now + nap_ns;
					/* The next rate is measured from here:
					 * an idle spell counted in it would
					 * make the next nap far too long. */
					last_drain = now;
				} else {
					napping = false;
					atomic_store(&wake_every, wake_at);
				}
				continue;
			}
			/* Short of a chunk: sleep to the nap's end, or to the
			 * schedule when not napping. */
			if (queued < wake_at && (in_nap || !napping)) {
				uint64_t until = in_nap && nap_until < next ? nap_until : next;
				uint32_t w = atomic_load(&wake_word);
				/* Re-check after sampling the word: a producer
				 * that bumped it meanwhile makes the wait return
				 * at once. */
				if (atomic_load(&flush_req) == flushed &&
				    osh_queue_size(&queue) < wake_at)
					futex_wait(&wake_word, w, until - now);
				continue;
			}
		}
		due = flush || now >= next;
		n = drain(&sk, spans, batch, due);
		/* Nothing taken while spans are counted: the oldest one's
		 * producer is between the two steps of its push. */
		if (!n && !due && osh_queue_size(&queue)) {
			now = osh_clock_monotonic_ns();
			/* A flush asked for from here on bumps the word: the
			 * wait returns at once. */
			if (now < next && atomic_load(&flush_req) == flushed)
				stall_wait(&stall_ns, next - now);
			continue;
		}
		/* A flush waits for such a producer too, within its hold and
		 * the exit's budget. */
		if (flush) {
			now = osh_clock_monotonic_ns();
			if (!flush_hold_until) {
				uint64_t sd = atomic_load(&shutdown_deadline);

				flush_hold_until = now + flush_hold_ns;
				if (sd && sd < flush_hold_until)
					flush_hold_until = sd;
				flush_hold_below = osh_queue_claimed(&queue);
			}
			/* Spans the flush began with still queued: wait
			 * for a producer still between its two steps, or,
			 * when it filled its cell between the drain and
			 * this look, drain again at once. */
			if (now < flush_hold_until &&
			    osh_queue_holds_below(&queue, flush_hold_below)) {
				if (osh_queue_head_unfilled(&queue, flush_hold_below))
					stall_wait(&stall_ns, flush_hold_until - now);
				continue;
			}
		}
		stall_ns = 0;
		if (n && can_nap) {
			uint64_t t = osh_clock_monotonic_ns();
			/* The last cycle's rate: n spans in t - last_drain. A
			 * flow's first nap is the shortest: the time since the
			 * last drain may be an idle spell, and a nap that long
			 * would leave up to half the queue's records in flight. */
			uint64_t nap = napping ? (t - last_drain) * wake_at * nap_chunks / n : 0;

			/* At most twice the last: one long cycle (a stall, a
			 * slow POST) must not leave a stride of records in
			 * flight. */
			if (napping && nap > 2 * nap_ns)
				nap = 2 * nap_ns;
			last_drain = t;
			nap_ns = nap > NAP_MIN_NS ? nap : NAP_MIN_NS;
			nap_until = t + nap_ns;
			if (!napping) {
				napping = true;
				atomic_store(&wake_every, valve);
			}
		}
		if (due || !eager(&sk))
			next = osh_clock_monotonic_ns() + ms_to_ns(osh_cfg.bsp_delay_ms);
		if (flush) {
			flush_hold_until = 0;
			flushed = req;
			atomic_store(&flush_done, req);
			futex_wake(&flush_done, INT_MAX);
		}
	}
	return NULL;
}

static void start_thread(void)
{
	int expected = T_NONE;
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t tid;
	int err;

	if (!atomic_compare_exchange_strong(&thread_state, &expected, T_RUNNING))
		return;
	__atomic_store_n(&osh_exporter_started, true, __ATOMIC_RELEASE);
	/* Exit handlers run in reverse order of registration. Registering the
	 * exit flush now, at the first span, long after the host initialised
	 * its own libraries (OpenSSL registers OPENSSL_cleanup with atexit),
	 * makes our flush run while those libraries still work: the exporter
	 * may share the host's libcurl and OpenSSL. Our destructor comes too
	 * late for that. Inherited by fork children, so once per image. */
	if (!atexit_registered) {
		atexit_registered = true;
		atexit(atexit_flush);
	}
	atomic_store(&exporter_pid, getpid());
	/* Signals meant for the host must never land on our thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* The ordinary policy, whatever the calling thread's: a host thread
	 * running real-time must not hand that to the telemetry thread. */
	{
		struct sched_param sp = { .sched_priority = 0 };

		pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
		pthread_attr_setschedpolicy(&attr, SCHED_OTHER);
		pthread_attr_setschedparam(&attr, &sp);
	}
	err = pthread_create(&tid, &attr, exporter_main, NULL);
	if (err == EPERM || err == EINVAL) {
		/* Refused (a seccomp or container policy): as inherited. */
		pthread_attr_setinheritsched(&attr, PTHREAD_INHERIT_SCHED);
		err = pthread_create(&tid, &attr, exporter_main, NULL);
	}
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		atomic_store(&thread_state, T_FAILED);
		osh_diag(OSH_LOG_ERROR, "cannot start the exporter thread (%s); spans are dropped",
			 strerror(err));
	}
}

/* ---- app-thread side ------------------------------------------------------ */

void osh_exporter_submit(struct osh_span *span)
{
	uint64_t n, every;

	n = atomic_fetch_add_explicit(&app_st.submitted, 1, memory_order_relaxed) + 1;
	if (__builtin_expect(test_capture != NULL, 0)) {
		osh_span_complete(span);
		test_capture(span);
		return;
	}
	if (atomic_load(&thread_state) == T_FAILED || !ensure_queue() ||
	    !osh_queue_push(&queue, span)) {
		atomic_fetch_add_explicit(&app_st.dropped, 1, memory_order_relaxed);
		osh_diag_once(OSH_ONCE_QUEUE_FULL, OSH_LOG_WARN,
			      "span queue full (OTEL_BSP_MAX_QUEUE_SIZE=%u); dropping spans",
			      osh_cfg.bsp_max_queue);
		osh_span_destroy(span);
		return;
	}
	if (__builtin_expect(atomic_load_explicit(&thread_state, memory_order_relaxed) == T_NONE, 0))
		start_thread();
	/* Every `every` submissions, not queue sizes: the size would read the
	 * consumer's head, a line the exporter thread writes at each pop. */
	every = pow2_floor(atomic_load_explicit(&wake_every, memory_order_relaxed));
	if (!every)
		every = pow2_floor(osh_cfg.bsp_max_batch);
	if (every && (n & (every - 1)) == 0)
		wake_exporter();
	/* For the next span on this thread: its queue cell and its record,
	 * both last written by the exporter thread (docs/BENCHMARKS.md). */
	osh_queue_warm_tail(&queue);
	osh_span_warm_next();
}

/* True when this process started the exporter thread and it runs. */
static bool own_thread(void)
{
	return atomic_load(&thread_state) == T_RUNNING && atomic_load(&exporter_pid) == getpid();
}

/* Ask the thread to send everything submitted so far and wait for it, or
 * for @deadline (CLOCK_MONOTONIC ns). */
static void flush_wait(uint64_t deadline)
{
	uint32_t req;

	atomic_store(&flushed_upto, atomic_load(&app_st.submitted));
	req = atomic_fetch_add(&flush_req, 1) + 1;
	wake_exporter();
	for (;;) {
		uint32_t done = atomic_load(&flush_done);
		uint64_t now = osh_clock_monotonic_ns();

		if ((int32_t)(done - req) >= 0 || now >= deadline)
			return;
		futex_wait(&flush_done, done, deadline - now);
	}
}

void osh_exporter_shutdown(void)
{
	uint64_t deadline;
	void *exp;

	if (!own_thread())
		return;
	/* Logged server calls become spans first: the counts below must see
	 * them. */
	osh_server_replay();
	if (!atomic_exchange(&shutdown_started, true)) {
		deadline = osh_clock_monotonic_ns() + ms_to_ns(osh_cfg.exit_timeout_ms);
		atomic_store(&shutdown_deadline, deadline);
		atomic_store(&shutting_down, true);
	} else {
		/* Called again (the exit handlers, then our destructor; a
		 * process span ended by a late exit handler): only spans
		 * submitted since, and within the budget the first call set. */
		if (atomic_load(&app_st.submitted) == atomic_load(&flushed_upto))
			return;
		deadline = atomic_load(&shutdown_deadline);
	}
	exp = atomic_load(&module_exp);
	if (exp && module)
		module->interrupt(exp, deadline);
	flush_wait(deadline);
	if (atomic_load(&app_st.dropped) && !atomic_exchange(&drops_reported, true))
		osh_diag(OSH_LOG_WARN, "%llu spans dropped because the queue was full",
			 (unsigned long long)atomic_load(&app_st.dropped));
}

bool osh_exporter_flush_sync(void)
{
	if (!own_thread())
		return false;
	osh_server_replay();
	if (atomic_load(&app_st.submitted) == atomic_load(&flushed_upto))
		return false;
	/* An exec or _exit from an exit handler: the exit flush owns the
	 * budget. */
	if (atomic_load(&shutdown_started)) {
		osh_exporter_shutdown();
		return false;
	}
	/* As at exit (one attempt per batch, an absent collector drops the
	 * rest at once), but without interrupt(): it would cap the module's
	 * deadlines for good, and the program may go on if its exec fails.
	 * A transfer already under way is simply not waited for past the
	 * deadline. */
	atomic_store(&shutdown_deadline,
		     osh_clock_monotonic_ns() + ms_to_ns(osh_cfg.exit_timeout_ms));
	atomic_store(&shutting_down, true);
	flush_wait(atomic_load(&shutdown_deadline));
	return true;
}

void osh_exporter_resume(void)
{
	atomic_store(&shutting_down, false);
	atomic_store(&shutdown_deadline, 0);
}

void osh_exporter_set_process(const struct osh_process_info *proc)
{
	process_override = proc;
}

void osh_exporter_after_fork_child(void)
{
	atomic_store(&thread_state, T_NONE);
	atomic_store(&module_exp, NULL); /* the parent's transfer state: never touched */
	atomic_store(&wake_every, 0);
	if (atomic_load(&queue_state) == Q_READY)
		osh_queue_reset(&queue);
	else if (atomic_load(&queue_state) == Q_INIT)
		atomic_store(&queue_state, Q_NONE);
	atomic_store(&flush_req, 0);
	atomic_store(&flush_done, 0);
	atomic_store(&wake_word, 0);
	atomic_store(&shutdown_started, false);
	atomic_store(&shutting_down, false);
	atomic_store(&shutdown_deadline, 0);
	atomic_store(&flushed_upto, atomic_load(&app_st.submitted)); /* the parent's, not ours */
}

void osh_exporter_stats(struct osh_exporter_stats *ret)
{
	ret->submitted = atomic_load(&app_st.submitted);
	ret->dropped_queue_full = atomic_load(&app_st.dropped);
	ret->exported = atomic_load(&exp_st.exported);
	ret->failed = atomic_load(&exp_st.failed);
}

void osh_exporter_set_capture(void (*capture)(struct osh_span *span))
{
	test_capture = capture;
}

void osh_exporter_set_flush_hold_for_tests(uint64_t ns)
{
	flush_hold_ns = ns ? ns : FLUSH_HOLD_NS;
}

struct osh_queue *osh_exporter_queue_for_tests(void)
{
	return ensure_queue() ? &queue : NULL;
}
