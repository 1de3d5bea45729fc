/* TLS sessions (see tls.h): the session table, the write and read paths
 * around the library's own calls, and the OpenSSL and GnuTLS adapters. */
#include "buildconf.h"

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "context.h"
#include "diag.h"
#include "guard.h"
#include "http_client.h"
#include "http_server.h"
#include "tls.h"

/* OpenSSL's constants (openssl/ssl.h); the shim builds without its headers. */
#define SSL_ERROR_SSL 1
#define SSL_ERROR_SYSCALL 5
#define SSL_ERROR_ZERO_RETURN 6
#define SSL_CTRL_MODE 33
#define SSL_MODE_ENABLE_PARTIAL_WRITE 0x1L
#define SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER 0x2L

/* GnuTLS's (gnutls/gnutls.h). */
#define GNUTLS_SERVER 1
#define GNUTLS_E_AGAIN (-28)
#define GNUTLS_E_REHANDSHAKE (-37)
#define GNUTLS_E_INTERRUPTED (-52)
#define GNUTLS_E_PREMATURE_TERMINATION (-110)

enum session_state {
	ST_NEW = 0,
	ST_STARTING,
	ST_STARTED,
};

/* A write the library asked the program to retry (tls.h, "Retries"). */
struct osh_tls_pending {
	struct osh_tx_plan plan;	/* prepared (or inactive), not committed */
	const void *prog_buf;		/* the program's buffer in that call */
	size_t done;			/* of which already written, not yet reported */
	size_t prog_len;		/* program bytes in the pending piece (after done) */
	size_t send_len;		/* bytes the library was given for it */
	bool own;			/* it was given s->wbuf: the rewritten bytes */
	bool copied;			/* else s->wbuf holds a copy of the program's */
};

/* The HTTP/2 connection preface (RFC 9113, 3.4). */
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* A record keeps a rewrite buffer this large for its next requests; a
 * larger one (a big request body written in one call) is given back once
 * its write is over. */
#define WBUF_KEEP (16 * 1024)

/* ---- which copy of the library ------------------------------------------- */

/* Call sites cached (open addressing, insert-only) and library copies
 * resolved, per family. The tables are allocated at the family's first
 * call: a process that never calls one pays nothing. */
#define SITE_SLOTS 512
#define SITE_PROBES 8
#define MAX_SITES 256
#define MAX_COPIES 8

struct site {
	const void *ret;
	const void *api;
};

struct sites {
	struct site *_Atomic slot[SITE_SLOTS];
	struct site site[MAX_SITES];
	int n_sites;
	struct {
		const void *probe;	/* the copy's probe function */
		void *api;
	} copy[MAX_COPIES];
	int n_copies;
};

struct family {
	const char *probe;		/* a function every copy defines */
	const char *const *sonames;	/* tried last */
	size_t n_sonames;
	size_t api_size;
	void (*fill)(void *api, void *handle);
	pthread_mutex_t lock;
	struct sites *_Atomic sites;
};

/* ---- the session table -------------------------------------------------- */

struct osh_tls_table *_Atomic osh_tls_table;

#define TABLE_MIN 64

/* Everything below is guarded by table_mutex. A mutex, not a spinlock: it
 * is taken once when a session starts and once when it ends, never per
 * I/O, and a spinlock that gives up would leave a freed session's record
 * behind for the next session at that address. */
static pthread_mutex_t table_mutex = PTHREAD_MUTEX_INITIALIZER;
static uint32_t n_live;
static uint32_t n_tomb;
static struct osh_tls_session *free_list;
/* Tables replaced by larger ones. A lock-free reader may still be walking
 * one, so they are never freed (together smaller than the current one). */
static struct osh_tls_table *retired[32];
static int n_retired;

static void table_lock(void)
{
	pthread_mutex_lock(&table_mutex);
}

static void table_unlock(void)
{
	pthread_mutex_unlock(&table_mutex);
}

static struct family ossl_family, gnutls_family;

/* fork() while another thread holds a mutex would leave it held forever
 * in the child: they are taken around fork (the libraries' first, as
 * resolve_site never takes the table's). */
static void fork_prepare(void)
{
	pthread_mutex_lock(&ossl_family.lock);
	pthread_mutex_lock(&gnutls_family.lock);
	table_lock();
}

static void fork_parent(void)
{
	table_unlock();
	pthread_mutex_unlock(&gnutls_family.lock);
	pthread_mutex_unlock(&ossl_family.lock);
}

static void fork_child(void)
{
	pthread_mutex_init(&table_mutex, NULL);
	pthread_mutex_init(&gnutls_family.lock, NULL);
	pthread_mutex_init(&ossl_family.lock, NULL);
}

static void arm_fork(void)
{
	static bool armed;

	if (!__atomic_load_n(&armed, __ATOMIC_ACQUIRE) &&
	    !__atomic_exchange_n(&armed, true, __ATOMIC_ACQ_REL))
		pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static struct osh_tls_table *table_get(void)
{
	return atomic_load_explicit(&osh_tls_table, memory_order_relaxed);
}

/* Lock held: the record of @k, or NULL. Never misses one that exists. */
static struct osh_tls_session *find_locked(uintptr_t k)
{
	struct osh_tls_table *t = table_get();

	if (!t)
		return NULL;
	for (uint32_t i = osh_tls_hash(k) & t->mask, n = 0; n <= t->mask;
	     i = (i + 1) & t->mask, n++) {
		struct osh_tls_session *s = atomic_load_explicit(&t->slot[i], memory_order_relaxed);

		if (!s)
			return NULL;
		if (s != OSH_TLS_TOMB && atomic_load_explicit(&s->key, memory_order_relaxed) == k)
			return s;
	}
	return NULL;
}

/* Put @s in the first free slot of its chain in @t (which has room). */
static void place(struct osh_tls_table *t, struct osh_tls_session *s)
{
	uint32_t i = osh_tls_hash(atomic_load_explicit(&s->key, memory_order_relaxed)) & t->mask;

	while (atomic_load_explicit(&t->slot[i], memory_order_relaxed))
		i = (i + 1) & t->mask;
	atomic_store_explicit(&t->slot[i], s, memory_order_release);
}

/* Lock held: a table of @slots entries holding the live records. The same
 * size rebuilds in place (only removed entries go): readers racing it may
 * miss, and then take the locked path. */
static bool resize(uint32_t slots)
{
	struct osh_tls_table *old = table_get();
	struct osh_tls_table *t;

	if (old && slots == old->mask + 1) {
		struct osh_tls_session **live = malloc((n_live ? n_live : 1) * sizeof(*live));
		uint32_t n = 0;

		if (!live)
			return false;
		for (uint32_t i = 0; i <= old->mask; i++) {
			struct osh_tls_session *s =
				atomic_load_explicit(&old->slot[i], memory_order_relaxed);

			if (s && s != OSH_TLS_TOMB && n < n_live)
				live[n++] = s;
			atomic_store_explicit(&old->slot[i], NULL, memory_order_relaxed);
		}
		for (uint32_t i = 0; i < n; i++)
			place(old, live[i]);
		free(live);
		n_tomb = 0;
		return true;
	}
	t = calloc(1, sizeof(*t) + (size_t)slots * sizeof(t->slot[0]));
	if (!t)
		return false;
	t->mask = slots - 1;
	if (old) {
		for (uint32_t i = 0; i <= old->mask; i++) {
			struct osh_tls_session *s =
				atomic_load_explicit(&old->slot[i], memory_order_relaxed);

			if (s && s != OSH_TLS_TOMB)
				place(t, s);
		}
	}
	n_tomb = 0;
	atomic_store_explicit(&osh_tls_table, t, memory_order_release);
	if (old && n_retired < (int)(sizeof(retired) / sizeof(retired[0])))
		retired[n_retired++] = old;
	return true;
}

/* Lock held; @s's key is not in the table yet. At most half the slots are
 * live and three quarters used, so chains stay short and a free slot is
 * always found. */
static bool insert_locked(struct osh_tls_session *s)
{
	struct osh_tls_table *t = table_get();
	uint32_t cap = t ? t->mask + 1 : 0;
	uint32_t i, tomb = UINT32_MAX;

	if (!t || (n_live + 1) * 2 > cap) {
		if (cap > UINT32_MAX / 4 || !resize(cap ? cap * 2 : TABLE_MIN))
			return false;
	} else if ((uint64_t)(n_live + n_tomb + 1) * 4 > (uint64_t)cap * 3) {
		if (!resize(cap))
			return false;
	}
	t = table_get();
	i = osh_tls_hash(atomic_load_explicit(&s->key, memory_order_relaxed)) & t->mask;
	for (;;) {
		struct osh_tls_session *cur =
			atomic_load_explicit(&t->slot[i], memory_order_relaxed);

		if (!cur)
			break;
		if (cur == OSH_TLS_TOMB && tomb == UINT32_MAX)
			tomb = i;
		i = (i + 1) & t->mask;
	}
	if (tomb != UINT32_MAX) {
		i = tomb;
		n_tomb--;
	}
	atomic_store_explicit(&t->slot[i], s, memory_order_release);
	n_live++;
	return true;
}

/* Lock held: take @s out of the table. */
static void remove_locked(struct osh_tls_session *s)
{
	struct osh_tls_table *t = table_get();
	uint32_t i, n;

	if (!t)
		return;
	i = osh_tls_hash(atomic_load_explicit(&s->key, memory_order_relaxed)) & t->mask;
	for (n = 0; n <= t->mask; n++, i = (i + 1) & t->mask) {
		struct osh_tls_session *cur =
			atomic_load_explicit(&t->slot[i], memory_order_relaxed);

		if (!cur)
			return;
		if (cur == s)
			break;
	}
	if (n > t->mask)
		return;
	atomic_store_explicit(&t->slot[i], OSH_TLS_TOMB, memory_order_release);
	n_tomb++;
	n_live--;
	/* A removed entry right before an empty slot is on no other key's
	 * chain (chains are unbroken runs up to their key): it can be empty
	 * again, and so can the removed entries just before it. */
	if (!atomic_load_explicit(&t->slot[(i + 1) & t->mask], memory_order_relaxed)) {
		while (atomic_load_explicit(&t->slot[i], memory_order_relaxed) == OSH_TLS_TOMB) {
			atomic_store_explicit(&t->slot[i], NULL, memory_order_release);
			n_tomb--;
			i = (i - 1) & t->mask;
		}
	}
}

struct osh_tls_session *osh_tls_lookup(const void *key)
{
	struct osh_tls_session *s = osh_tls_find(key);

	if (s || !key || !atomic_load_explicit(&osh_tls_table, memory_order_acquire))
		return s;
	table_lock();
	s = find_locked((uintptr_t)key);
	table_unlock();
	return s;
}

size_t osh_tls_count(void)
{
	size_t n;

	table_lock();
	n = n_live;
	table_unlock();
	return n;
}

struct osh_tls_session *osh_tls_open(const void *key, enum osh_conn_role role)
{
	uintptr_t k = (uintptr_t)key;
	struct osh_tls_session *s;

	if (!k)
		return NULL;
	arm_fork();
	table_lock();
	s = find_locked(k);
	if (!s) {
		s = free_list;
		if (s)
			free_list = s->next_free;
		else
			s = calloc(1, sizeof(*s));
		if (s) {
			s->next_free = NULL;
			s->role = (uint8_t)role;
			atomic_store_explicit(&s->key, k, memory_order_relaxed);
			if (!insert_locked(s)) {
				atomic_store_explicit(&s->key, 0, memory_order_relaxed);
				s->next_free = free_list;
				free_list = s;
				s = NULL;
			}
		}
	}
	table_unlock();
	if (!s)
		osh_diag_once(OSH_ONCE_ALLOC, OSH_LOG_WARN,
			      "out of memory for TLS session state; a session is not traced");
	return s;
}

/* ---- session life ----------------------------------------------------------- */

/* Fill @c's addresses for a session on @fd. When the fd table tracks @fd,
 * its addresses are copied (no syscall) and its tracing stops: from now on
 * the socket carries only ciphertext, which must never be parsed. */
static void tie(struct osh_conn *c, int fd, bool server)
{
	struct osh_conn *f = fd >= 0 ? osh_conn_get(fd) : NULL;
	struct sockaddr_storage ss;
	socklen_t sl;
	bool have_peer = false, have_local = false;

	if (f) {
		uint8_t r = atomic_load(&f->role);

		if ((r == OSH_ROLE_CLIENT || r == OSH_ROLE_SERVER) && osh_conn_lock(f)) {
			r = atomic_load(&f->role);
			if (r == OSH_ROLE_CLIENT || r == OSH_ROLE_SERVER) {
				c->peer = f->peer;
				have_peer = c->peer.family != 0;
				if (r == OSH_ROLE_SERVER) {
					c->local = f->local;
					have_local = c->local.family != 0;
				}
			}
			osh_conn_unlock(f);
		}
		osh_conn_release(f, OSH_END_DESYNC);
	}
	if (fd >= 0 && !have_peer) {
		sl = sizeof(ss);
		if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
			have_peer = osh_peer_from((const struct sockaddr *)&ss, sl, &c->peer);
	}
	if (fd >= 0 && server && !have_local) {
		sl = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
			osh_peer_from((const struct sockaddr *)&ss, sl, &c->local);
	}
	if (have_peer)
		c->peer_text_len =
			(uint8_t)osh_peer_format(&c->peer, c->peer_text, sizeof(c->peer_text));
}

void osh_tls_start(struct osh_tls_session *s, int fd)
{
	struct osh_conn *c = &s->conn;
	uint8_t expected = ST_NEW;
	int err = errno;

	if (!atomic_compare_exchange_strong(&s->state, &expected, ST_STARTING))
		return;
	if (osh_in_traced_library) {
		/* A traced library (libcurl) drives this transfer and makes
		 * its span: one per transfer, never one per layer. */
		atomic_store_explicit(&s->mode, OSH_TLS_PASS, memory_order_relaxed);
		goto out;
	}
	if (s->role == OSH_ROLE_CLIENT && !s->pend) {
		/* Allocated before any write: a retry must never depend on
		 * memory found later. */
		s->pend = malloc(sizeof(*s->pend));
		if (!s->pend) {
			osh_diag_once(OSH_ONCE_ALLOC, OSH_LOG_WARN,
				      "out of memory for TLS session state; "
				      "a session is not traced");
			atomic_store_explicit(&s->mode, OSH_TLS_PASS, memory_order_relaxed);
			goto out;
		}
	}
	c->tls = true;
	tie(c, fd, s->role == OSH_ROLE_SERVER);
	c->n_fds = 1;
	c->held = s->role;
	atomic_store_explicit(&c->role, s->role, memory_order_release);
out:
	atomic_store_explicit(&s->state, ST_STARTED, memory_order_release);
	errno = err;
}

void osh_tls_pass(struct osh_tls_session *s)
{
	uint8_t r = atomic_load(&s->conn.role);

	atomic_store_explicit(&s->mode, OSH_TLS_PASS, memory_order_relaxed);
	if (r == OSH_ROLE_CLIENT || r == OSH_ROLE_SERVER)
		osh_conn_release(&s->conn, OSH_END_DESYNC);
}

/* Everything in @c but its anchor (whose generation must go on: contexts
 * entered under the old one may still name it) back to zero. */
static void conn_clear(struct osh_conn *c)
{
	size_t a = offsetof(struct osh_conn, anchor);
	size_t b = a + sizeof(c->anchor);

	memset(c, 0, a);
	memset((char *)c + b, 0, sizeof(*c) - b);
	osh_context_anchor_reset(&c->anchor);
}

/* After a write: a rewrite buffer grown for one large call (a request
 * head and its body in one write) is not kept for the session's life. */
static void trim_wbuf(struct osh_tls_session *s)
{
	if (!s->pending && s->wcap > WBUF_KEEP) {
		free(s->wbuf);
		s->wbuf = NULL;
		s->wcap = 0;
	}
}

/* End what @s has in flight (as closed by the program) and make it a fresh
 * record. */
static void end_session(struct osh_tls_session *s)
{
	struct osh_conn *c = &s->conn;
	uint8_t r = atomic_load(&c->role);

	if (r == OSH_ROLE_CLIENT || r == OSH_ROLE_SERVER)
		osh_conn_release(c, OSH_END_CLOSED);
	/* Released without its lock (stuck): the state is still there. */
	if (c->held == OSH_ROLE_CLIENT)
		osh_client_reset(&c->client);
	else if (c->held == OSH_ROLE_SERVER)
		osh_server_reset(&c->server);
	conn_clear(c);
	s->pending = false;
	s->alpn_checked = false;
	s->sniffed = false;
	trim_wbuf(s);
	atomic_store_explicit(&s->mode, OSH_TLS_TRACE, memory_order_relaxed);
	atomic_store_explicit(&s->state, ST_NEW, memory_order_relaxed);
}

void osh_tls_close(const void *key)
{
	uintptr_t k = (uintptr_t)key;
	struct osh_tls_session *s;
	int err = errno;

	if (!k || !atomic_load_explicit(&osh_tls_table, memory_order_acquire))
		return;
	table_lock();
	s = find_locked(k);
	if (s)
		remove_locked(s);
	table_unlock();
	if (!s) {
		errno = err;
		return;
	}
	end_session(s);
	atomic_store_explicit(&s->key, 0, memory_order_relaxed);
	table_lock();
	s->next_free = free_list;
	free_list = s;
	table_unlock();
	errno = err;
}

void osh_tls_shutdown(struct osh_tls_session *s)
{
	if (atomic_load(&s->conn.role) == OSH_ROLE_SERVER)
		osh_server_shutdown(&s->conn);
}

/* After a call: once the engines let the connection go (a response read
 * to the end of the stream, a tunnel, a protocol that is not HTTP/1.x),
 * every later call on the session takes the fast path. */
static void settle_mode(struct osh_tls_session *s)
{
	if (atomic_load_explicit(&s->state, memory_order_acquire) == ST_STARTED &&
	    atomic_load(&s->conn.role) == OSH_ROLE_NONE && !s->pending)
		atomic_store_explicit(&s->mode, OSH_TLS_PASS, memory_order_relaxed);
}

/* The start of an HTTP/2 connection, at least as far as @len goes. Four
 * bytes ("PRI ") already tell it from every HTTP/1.x method. */
static bool is_h2_preface(const void *buf, size_t len)
{
	size_t n = len < sizeof(h2_preface) - 1 ? len : sizeof(h2_preface) - 1;

	return memcmp(buf, h2_preface, n) == 0;
}

/* The first plaintext the client side sends (@len >= 4 bytes: written on
 * a client session, read on a server one): HTTP/2 with prior knowledge
 * (or ALPN seen late) lets the session go. True when it did. */
static bool sniff_h2(struct osh_tls_session *s, const void *buf, size_t len)
{
	s->sniffed = true;
	if (!is_h2_preface(buf, len))
		return false;
	osh_tls_pass(s);
	return true;
}

/* Started, and traced (not passed through). */
static bool traced(const struct osh_tls_session *s)
{
	return atomic_load_explicit(&s->state, memory_order_acquire) == ST_STARTED &&
	       !osh_tls_bypass(s);
}

/* ---- the write and read paths ---------------------------------------------- */

enum io_status {
	IO_DONE,	/* n bytes went through */
	IO_AGAIN,	/* retry with the same arguments (WANT_*, E_AGAIN) */
	IO_EOF,		/* the peer closed the session */
	IO_FAILED,	/* the session broke */
};

/* One library call: how to make it, and what it returned. */
struct io {
	void (*call)(struct io *io, const void *buf, size_t len);
	bool (*moving_ok)(struct io *io);
	bool (*partial_ok)(struct io *io);
	const void *api;
	void *session;
	bool ex;		/* OpenSSL's _ex variant */
	bool null_retry;	/* GnuTLS: a retry may pass NULL/0 */
	size_t max_len;		/* the most one call can pass (SSL_write takes int) */
	size_t *count;		/* _ex: the program's *written / *readbytes */
	/* The result. */
	long ret;		/* the library's return value */
	size_t n;		/* bytes, when DONE */
	size_t raw_count;	/* _ex writes: what the library stored for the count */
	enum io_status status;
	int err;		/* errno right after the call */
};

/* An errno that names a failure for the engines (never a retry). */
static int fail_errno(const struct io *io)
{
	if (io->status == IO_EOF)
		return EPIPE;
	if (io->err && io->err != EAGAIN && io->err != EWOULDBLOCK && io->err != EINTR)
		return io->err;
	return EIO;
}

static bool wbuf_reserve(struct osh_tls_session *s, size_t n)
{
	char *p;
	size_t cap = 4096;

	if (n <= s->wcap)
		return true;
	while (cap < n && cap < SIZE_MAX / 2)
		cap *= 2;
	if (cap < n)
		cap = n;
	/* The old contents are not needed: no realloc copy. */
	p = malloc(cap);
	if (!p)
		return false;
	free(s->wbuf);
	s->wbuf = p;
	s->wcap = cap;
	return true;
}

/* The plan's iovec (program bytes and injected lines) in s->wbuf. */
static bool linearise(struct osh_tls_session *s, const struct osh_tx_plan *plan, size_t max_len)
{
	size_t off = 0;

	if (plan->real_total > max_len || !wbuf_reserve(s, plan->real_total))
		return false;
	for (int i = 0; i < plan->iovcnt; i++) {
		memcpy(s->wbuf + off, plan->iov[i].iov_base, plan->iov[i].iov_len);
		off += plan->iov[i].iov_len;
	}
	return true;
}

/* The program's bytes of @plan as an iovec over @bytes: the rewritten
 * buffer (@rewritten: injected pieces skipped) or a plain copy. */
static int program_iov(const struct osh_tx_plan *plan, const char *bytes, bool rewritten,
		       struct iovec *iov)
{
	size_t prev = 0, off = 0;
	int n = 0;

	if (!rewritten) {
		iov[0].iov_base = (void *)bytes;
		iov[0].iov_len = plan->total;
		return 1;
	}
	for (int k = 0; k < plan->n_ins; k++) {
		size_t seg = plan->ins[k].at - prev;

		if (seg) {
			iov[n].iov_base = (void *)(bytes + off);
			iov[n].iov_len = seg;
			n++;
		}
		off += seg + plan->ins[k].len;
		prev = plan->ins[k].at;
	}
	if (plan->total > prev) {
		iov[n].iov_base = (void *)(bytes + off);
		iov[n].iov_len = plan->total - prev;
		n++;
	}
	return n;
}

/* Commit @plan with the last call's result (@bytes: the program's bytes
 * that call sent, or the rewritten buffer). When it went through, io->n
 * becomes the count of the program's own bytes in it (0 when only
 * injected bytes went out). */
static void settle(struct osh_tls_session *s, struct io *io, struct osh_tx_plan *plan,
		   const char *bytes, bool rewritten)
{
	struct iovec iov[OSH_TX_MAX_INS + 1];
	int n = program_iov(plan, bytes, rewritten, iov);
	bool done = io->status == IO_DONE;
	ssize_t mapped = osh_client_tx_commit(&s->conn, plan, iov, n, done ? (ssize_t)io->n : -1,
					      done ? 0 : fail_errno(io));

	if (done)
		io->n = mapped > 0 ? (size_t)mapped : 0;
}

/* The library wants this write retried: keep the plan and the bytes. The
 * pending piece is @plen program bytes at @buf + @done. */
static void park(struct osh_tls_session *s, const struct io *io, const struct osh_tx_plan *plan,
		 const char *buf, size_t done, size_t plen)
{
	struct osh_tls_pending *p = s->pend;

	memcpy(&p->plan, plan, sizeof(*plan));
	p->prog_buf = buf;
	p->done = done;
	p->prog_len = plen;
	p->own = plan->active && plan->changed;
	p->send_len = p->own ? plan->real_total : plen;
	p->copied = false;
	/* A GnuTLS retry may pass no data at all: the commit then needs our
	 * own copy of what was sent. (An OpenSSL retry passes the same bytes
	 * again, by its contract.) */
	if (!p->own && io->null_retry && wbuf_reserve(s, plen)) {
		memcpy(s->wbuf, buf + done, plen);
		p->copied = true;
	}
	s->pending = true;
}

/* Is this call the retry the library expects? OpenSSL: the same buffer
 * (or any, with SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) and at least the
 * same length: a longer one (more data appended meanwhile, which OpenSSL
 * accepts) goes on after the pending piece. GnuTLS resends the record it
 * buffered whatever the call passes. */
static bool retry_matches(struct osh_tls_session *s, struct io *io, const void *buf, size_t len)
{
	const struct osh_tls_pending *p = s->pend;

	if (io->null_retry)
		return p->own || p->copied || buf;
	if (!buf || len < p->done + p->prog_len)
		return false;
	return buf == p->prog_buf || io->moving_ok(io);
}

/* Forget a pending write (the program broke the retry contract): what the
 * dry run created and never went out is dropped. */
static void drop_pending(struct osh_tls_session *s)
{
	struct osh_tls_pending *p = s->pend;
	struct iovec iov = { (void *)p->prog_buf, p->prog_len };

	s->pending = false;
	/* -1: no program byte counts as sent, so none is read. */
	osh_client_tx_commit(&s->conn, &p->plan, &iov, 1, -1, EAGAIN);
}

static void client_write(struct osh_tls_session *s, struct io *io, const void *buf, size_t len)
{
	struct osh_conn *c = &s->conn;
	struct osh_tls_pending *p = s->pend;
	struct osh_tx_plan plan;
	size_t done = 0;

	if (s->pending) {
		const char *piece = buf ? (const char *)buf + p->done : NULL;

		if (!retry_matches(s, io, buf, len)) {
			drop_pending(s);
			osh_tls_pass(s);
			io->call(io, buf, len);
			return;
		}
		/* The same bytes again: new ids would change bytes the library
		 * has already committed to records. */
		if (p->own)
			io->call(io, s->wbuf, p->send_len);
		else if (io->null_retry)
			io->call(io, buf, len);
		else
			io->call(io, piece, p->prog_len);
		if (io->status == IO_AGAIN)
			return;
		s->pending = false;
		if (p->plan.active)
			settle(s, io, &p->plan, p->own || p->copied ? s->wbuf : piece, p->own);
		if (io->status != IO_DONE)
			return;
		done = p->done + io->n;
		if (io->null_retry || !buf) {
			io->n = done;
			return;
		}
	} else if (!s->sniffed && len >= 4 && sniff_h2(s, buf, len)) {
		io->call(io, buf, len);
		return;
	}
	/* Until the program's bytes are all written, or some are and the
	 * library reports partial writes. Bounded, as in the socket path:
	 * when a partial write took only injected bytes, the program's go
	 * next, in the same call. */
	for (int tries = 0; done < len && tries < 64; tries++) {
		const char *piece = (const char *)buf + done;
		size_t plen = len - done;
		struct iovec prog = { (void *)piece, plen };

		if (done && io->partial_ok(io))
			break;
		osh_client_tx_prepare(c, -1, &prog, 1, &plan);
		if (plan.changed && !linearise(s, &plan, io->max_len)) {
			/* No room for the rewritten bytes: the program's go
			 * out unchanged and the session is left alone. */
			osh_client_tx_commit(c, &plan, &prog, 1, -1, EAGAIN);
			osh_tls_pass(s);
			plan.active = false;
			plan.changed = false;
		}
		io->call(io, plan.changed ? s->wbuf : piece, plan.changed ? plan.real_total : plen);
		if (io->status == IO_AGAIN) {
			/* Kept even untraced when some bytes are written and not
			 * yet reported: the retry must not send them again. */
			if (plan.active || done)
				park(s, io, &plan, buf, done, plen);
			return;
		}
		if (plan.active)
			settle(s, io, &plan, plan.changed ? s->wbuf : piece, plan.changed);
		if (io->status != IO_DONE)
			return;
		done += io->n;
	}
	io->n = done;
}

/* Responses are never changed: the library gets the program's bytes, and
 * the engine sees what went through. */
static void server_write(struct osh_tls_session *s, struct io *io, const void *buf, size_t len)
{
	struct osh_conn *c = &s->conn;
	const char *seen = buf;
	struct iovec v;

	io->call(io, buf, len);
	if (s->pending) {
		/* A GnuTLS retry sends the record it buffered, whatever this
		 * call passed: those are the bytes copied then. */
		if (io->status == IO_AGAIN)
			return;
		s->pending = false;
		seen = s->wbuf;
	} else if (io->status == IO_AGAIN) {
		if (io->null_retry && len && wbuf_reserve(s, len)) {
			memcpy(s->wbuf, buf, len);
			s->pending = true;
		}
		return;
	}
	switch (io->status) {
	case IO_DONE:
		if (!io->n)
			break;
		if (!seen) {
			osh_server_tx_opaque(c, io->n);
			break;
		}
		v.iov_base = (void *)seen;
		v.iov_len = io->n;
		osh_server_tx(c, &v, 1, (ssize_t)io->n, 0);
		break;
	case IO_EOF:
	case IO_FAILED:
		osh_server_tx(c, NULL, 0, -1, fail_errno(io));
		break;
	case IO_AGAIN:
		break;
	}
}

/* After a read: what came through goes to the engine. */
static void observe_read(struct osh_tls_session *s, struct io *io, const void *buf)
{
	struct osh_conn *c = &s->conn;
	uint8_t role = atomic_load(&c->role);
	struct iovec v;
	void (*rx)(struct osh_conn *, const struct iovec *, int, ssize_t, int);

	if (role == OSH_ROLE_CLIENT)
		rx = osh_client_rx;
	else if (role == OSH_ROLE_SERVER)
		rx = osh_server_rx;
	else
		return;
	switch (io->status) {
	case IO_DONE:
		if (!io->n)
			return;
		if (role == OSH_ROLE_SERVER && !s->sniffed && io->n >= 4 &&
		    sniff_h2(s, buf, io->n))
			return;
		v.iov_base = (void *)buf;
		v.iov_len = io->n;
		rx(c, &v, 1, (ssize_t)io->n, 0);
		break;
	case IO_EOF:
		rx(c, NULL, 0, 0, 0);
		break;
	case IO_FAILED:
		rx(c, NULL, 0, -1, fail_errno(io));
		break;
	case IO_AGAIN:
		break;
	}
}

/* A write on traced session @s, through the engine of its role; errno is
 * the library's afterwards. */
static void write_traced(struct osh_tls_session *s, struct io *io, const void *buf, size_t len)
{
	if (s->role == OSH_ROLE_CLIENT)
		client_write(s, io, buf, len);
	else
		server_write(s, io, buf, len);
	trim_wbuf(s);
	settle_mode(s);
	errno = io->err;
}

/* The program's close_notify went out on session @key: a response
 * delimited by the close is complete. errno is kept. */
static void close_notify_sent(const void *key)
{
	int err = errno;
	struct osh_tls_session *s = osh_tls_lookup(key);

	if (s && traced(s)) {
		osh_tls_shutdown(s);
		settle_mode(s);
	}
	errno = err;
}

static uint32_t site_hash(const void *ret)
{
	return (uint32_t)(((uint64_t)(uintptr_t)ret * 0x9E3779B97F4A7C15ull) >> 40);
}

static const void *site_find(struct family *f, const void *ret)
{
	struct sites *t = atomic_load_explicit(&f->sites, memory_order_acquire);

	if (__builtin_expect(!t, 0))
		return NULL;
	for (uint32_t i = site_hash(ret), n = 0; n < SITE_PROBES; i++, n++) {
		struct site *e = atomic_load_explicit(&t->slot[i & (SITE_SLOTS - 1)],
						      memory_order_acquire);

		if (!e)
			return NULL;
		if (e->ret == ret)
			return e->api;
	}
	return NULL;
}

/* Is @p inside the shim (its code, or the program a unit test links it
 * into)? */
static bool is_ours(const void *p)
{
	Dl_info self, other;

	return dladdr((const void *)is_ours, &self) && dladdr(p, &other) &&
	       self.dli_fbase == other.dli_fbase;
}

/* @sym as a lookup through the loaded object @name finds it (the object
 * and its own dependencies); NULL when none is, or no object of that name
 * is loaded. */
static void *sym_through(const char *name, const char *sym)
{
	void *h = dlopen(name, RTLD_NOLOAD | RTLD_LAZY);
	void *fn;

	if (!h)
		return NULL;
	fn = dlsym(h, sym);
	dlclose(h);
	return fn;
}

/* The probe function of the copy the code at @caller uses. */
static void *find_probe(const struct family *f, const void *caller)
{
	Dl_info info;
	void *fn = NULL;

	/* Through the caller's object: its own dependencies, exactly (a
	 * module loaded RTLD_LOCAL, a vendored copy under another soname,
	 * or libssl calling itself). The main program cannot be opened by
	 * name; the next definition after the shim is its copy. */
	if (caller && !is_ours(caller) && dladdr(caller, &info) && info.dli_fname &&
	    info.dli_fname[0]) {
		fn = sym_through(info.dli_fname, f->probe);
		if (fn && is_ours(fn))
			fn = NULL;
	}
	if (!fn)
		fn = dlsym(RTLD_NEXT, f->probe);
	for (size_t i = 0; !fn && i < f->n_sonames; i++)
		fn = sym_through(f->sonames[i], f->probe);
	return fn && !is_ours(fn) ? fn : NULL;
}

/* Lock held: the api of the copy whose probe function is @fn, or NULL. */
static void *known_copy(const struct sites *t, const void *fn)
{
	for (int i = 0; i < t->n_copies; i++)
		if (t->copy[i].probe == fn)
			return t->copy[i].api;
	return NULL;
}

/* A new api table for the copy whose probe function is @fn (its library
 * handle kept open: the library cannot be unloaded from under a hook). */
static void *new_copy(const struct family *f, const void *fn)
{
	Dl_info info;
	void *h, *api;

	if (!dladdr(fn, &info) || !info.dli_fname)
		return NULL;
	h = dlopen(info.dli_fname, RTLD_NOLOAD | RTLD_LAZY);
	if (!h)
		return NULL;
	api = calloc(1, f->api_size);
	if (!api) {
		dlclose(h);
		return NULL;
	}
	f->fill(api, h);
	osh_diag(OSH_LOG_DEBUG, "%s calls go to %s", f->probe, info.dli_fname);
	return api;
}

/* Lock held: remember that calls from @ret go to @api, when there is room
 * (call sites are few; a site left out is resolved again at each call,
 * slow but right). */
static void cache_site(struct sites *t, const void *ret, const void *api)
{
	if (t->n_sites >= MAX_SITES)
		return;
	for (uint32_t i = site_hash(ret), n = 0; n < SITE_PROBES; i++, n++) {
		struct site *_Atomic *slot = &t->slot[i & (SITE_SLOTS - 1)];

		if (!atomic_load_explicit(slot, memory_order_relaxed)) {
			struct site *e = &t->site[t->n_sites++];

			e->ret = ret;
			e->api = api;
			atomic_store_explicit(slot, e, memory_order_release);
			return;
		}
	}
}

/* The loader's lookups (dladdr, dlopen, dlsym) run without our lock held:
 * a library constructor making TLS calls while another thread resolves
 * would otherwise deadlock on the loader's lock and ours. */
static const void *resolve_site(struct family *f, const void *ret)
{
	struct sites *t = atomic_load_explicit(&f->sites, memory_order_acquire);
	void *fn, *api = NULL, *mine = NULL;
	int err = errno;

	arm_fork();
	if (!t) {
		struct sites *fresh = calloc(1, sizeof(*fresh));

		if (!fresh)
			goto out;
		pthread_mutex_lock(&f->lock);
		t = atomic_load_explicit(&f->sites, memory_order_relaxed);
		if (!t) {
			t = fresh;
			fresh = NULL;
			atomic_store_explicit(&f->sites, t, memory_order_release);
		}
		pthread_mutex_unlock(&f->lock);
		free(fresh);
	}
	fn = find_probe(f, ret);
	if (!fn)
		goto out;
	pthread_mutex_lock(&f->lock);
	api = known_copy(t, fn);
	pthread_mutex_unlock(&f->lock);
	if (!api)
		mine = new_copy(f, fn);
	pthread_mutex_lock(&f->lock);
	if (!api)
		api = known_copy(t, fn);
	if (!api && mine && t->n_copies < MAX_COPIES) {
		t->copy[t->n_copies].probe = fn;
		t->copy[t->n_copies].api = mine;
		t->n_copies++;
		api = mine;
		mine = NULL;
	}
	if (api && !site_find(f, ret))
		cache_site(t, ret, api);
	pthread_mutex_unlock(&f->lock);
	/* Another thread's table won the race (or there was no room): ours
	 * goes, its library reference kept (harmless). */
	free(mine);
out:
	if (!api)
		osh_diag(OSH_LOG_DEBUG, "cannot find the program's %s; its calls fail",
			 f->probe);
	errno = err;
	return api;
}

/* The api table of the copy of @f the code at @caller uses: a cached site
 * takes a hash and two loads. Inline: every hooked call goes through it. */
static inline const void *family_api(struct family *f, const void *caller)
{
	const void *api = site_find(f, caller);

	if (__builtin_expect(!api, 0))
		api = resolve_site(f, caller);
	return api;
}

/* ---- OpenSSL ------------------------------------------------------------- */

static void ossl_fill(void *p, void *h)
{
	struct osh_ossl_api *a = p;

#define R(name) a->name = (__typeof__(a->name))dlsym(h, #name)
	R(SSL_write);
	R(SSL_write_ex);
	R(SSL_read);
	R(SSL_read_ex);
	R(SSL_peek);
	R(SSL_peek_ex);
	R(SSL_shutdown);
	R(SSL_free);
	R(SSL_clear);
	R(SSL_get_error);
	R(SSL_get_fd);
	R(SSL_is_server);
	R(SSL_ctrl);
	R(SSL_get0_alpn_selected);
	R(SSL_is_init_finished);
	R(SSL_sendfile);
#undef R
}

static const char *const ossl_sonames[] = { "libssl.so.3", "libssl.so.1.1" };

static struct family ossl_family = {
	.probe = "SSL_write",
	.sonames = ossl_sonames,
	.n_sonames = sizeof(ossl_sonames) / sizeof(ossl_sonames[0]),
	.api_size = sizeof(struct osh_ossl_api),
	.fill = ossl_fill,
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

const struct osh_ossl_api *osh_tls_ossl_api(const void *caller)
{
	return family_api(&ossl_family, caller);
}

/* Errors that say the connection itself broke. */
static bool conn_broken(int err)
{
	return err == ECONNRESET || err == EPIPE || err == ETIMEDOUT || err == ECONNABORTED;
}

static enum io_status ossl_status(const struct osh_ossl_api *api, struct ssl_st *ssl, int ret,
				  int err, bool reading)
{
	switch (api->SSL_get_error(ssl, ret)) {
	case SSL_ERROR_ZERO_RETURN:
		return IO_EOF;
	case SSL_ERROR_SYSCALL:
	case SSL_ERROR_SSL:
		/* A read that fails without the connection breaking is the
		 * peer going away without close_notify (OpenSSL 3 reports
		 * that as SSL_ERROR_SSL, 1.1 as SSL_ERROR_SYSCALL with errno
		 * 0): the end of the stream, which completes a response
		 * delimited by the close and cuts any other short. */
		if (reading && !conn_broken(err))
			return IO_EOF;
		return IO_FAILED;
	default:
		/* SSL_ERROR_WANT_READ, _WANT_WRITE, _WANT_X509_LOOKUP,
		 * _WANT_ASYNC...: the same call again later. */
		return IO_AGAIN;
	}
}

/* Right after an OpenSSL call that returned @ret (@ok: it moved data):
 * the result in @io, errno as the call left it. */
static void ossl_result(struct io *io, int ret, bool ok, bool reading)
{
	io->err = errno;
	io->ret = ret;
	io->status = ok ? IO_DONE : ossl_status(io->api, io->session, ret, io->err, reading);
	errno = io->err;
}

static void ossl_write_call(struct io *io, const void *buf, size_t len)
{
	const struct osh_ossl_api *api = io->api;
	struct ssl_st *ssl = io->session;
	int ret;

	if (io->ex) {
		/* The count the library leaves on failure is the program's to
		 * see: start from its own value, hand back whatever results. */
		size_t w = io->count ? *io->count : 0;

		ret = api->SSL_write_ex(ssl, buf, len, &w);
		io->raw_count = w;
		io->n = w;
		ossl_result(io, ret, ret == 1, false);
	} else {
		ret = api->SSL_write(ssl, buf, (int)len);
		io->n = ret > 0 ? (size_t)ret : 0;
		ossl_result(io, ret, ret > 0, false);
	}
}

/* The session's SSL_MODE_* bits (none when SSL_ctrl is missing). */
static long ossl_mode(const struct io *io)
{
	const struct osh_ossl_api *api = io->api;

	return api->SSL_ctrl ? api->SSL_ctrl(io->session, SSL_CTRL_MODE, 0, NULL) : 0;
}

static bool ossl_partial_ok(struct io *io)
{
	return ossl_mode(io) & SSL_MODE_ENABLE_PARTIAL_WRITE;
}

static bool ossl_moving_ok(struct io *io)
{
	return ossl_mode(io) & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
}

static void ossl_read_call(struct io *io, void *buf, size_t len)
{
	const struct osh_ossl_api *api = io->api;
	struct ssl_st *ssl = io->session;
	int ret;

	if (io->ex) {
		ret = api->SSL_read_ex(ssl, buf, len, io->count);
		io->n = ret == 1 ? *io->count : 0;
		ossl_result(io, ret, ret == 1, true);
	} else {
		ret = api->SSL_read(ssl, buf, (int)len);
		io->n = ret > 0 ? (size_t)ret : 0;
		ossl_result(io, ret, ret > 0, true);
	}
}

/* Before the first traced call with the handshake done: a session that
 * negotiated HTTP/2 is left alone (detection only). */
static void ossl_alpn(const struct osh_ossl_api *api, struct osh_tls_session *s,
		      struct ssl_st *ssl)
{
	const unsigned char *p = NULL;
	unsigned int n = 0;

	if (s->alpn_checked)
		return;
	if (!api->SSL_get0_alpn_selected || !api->SSL_is_init_finished) {
		s->alpn_checked = true;
		return;
	}
	if (!api->SSL_is_init_finished(ssl))
		return;
	s->alpn_checked = true;
	api->SSL_get0_alpn_selected(ssl, &p, &n);
	if (p && n == 2 && memcmp(p, "h2", 2) == 0)
		osh_tls_pass(s);
}

/* The traced record of @ssl (created and started at its first plaintext
 * I/O), or NULL when this call goes straight to the library. */
static struct osh_tls_session *ossl_session(const struct osh_ossl_api *api, struct ssl_st *ssl,
					    struct osh_tls_session *s)
{
	if (!s) {
		bool server = api->SSL_is_server && api->SSL_is_server(ssl);

		s = osh_tls_open(ssl, server ? OSH_ROLE_SERVER : OSH_ROLE_CLIENT);
		if (!s)
			return NULL;
	}
	if (atomic_load_explicit(&s->state, memory_order_acquire) == ST_NEW)
		osh_tls_start(s, api->SSL_get_fd ? api->SSL_get_fd(ssl) : -1);
	/* Another thread is starting it: this call goes through untraced. */
	if (atomic_load_explicit(&s->state, memory_order_acquire) != ST_STARTED)
		return NULL;
	if (!osh_tls_bypass(s))
		ossl_alpn(api, s, ssl);
	return osh_tls_bypass(s) ? NULL : s;
}

int osh_tls_ossl_write(const struct osh_ossl_api *api, struct ssl_st *ssl, const void *buf,
		       size_t num, bool ex, size_t *written)
{
	struct osh_tls_session *s = osh_tls_find(ssl);
	struct io io = { .call = ossl_write_call, .moving_ok = ossl_moving_ok,
			 .partial_ok = ossl_partial_ok, .api = api,
			 .session = ssl, .ex = ex, .count = written,
			 .max_len = ex ? SIZE_MAX : INT_MAX };

	if ((s && osh_tls_bypass(s)) || !api->SSL_get_error || !num || (!ex && num > INT_MAX) ||
	    !(s = ossl_session(api, ssl, s)))
		return ex ? api->SSL_write_ex(ssl, buf, num, written)
			  : api->SSL_write(ssl, buf, (int)num);
	write_traced(s, &io, buf, num);
	if (io.status == IO_DONE) {
		if (!ex)
			return (int)io.n;
		if (written)
			*written = io.n;
		return 1;
	}
	if (ex && written)
		*written = io.raw_count;
	return (int)io.ret;
}

int osh_tls_ossl_read(const struct osh_ossl_api *api, struct ssl_st *ssl, void *buf, size_t num,
		      bool ex, bool peek, size_t *readbytes)
{
	struct osh_tls_session *s = osh_tls_find(ssl);
	struct io io = { .api = api, .session = ssl, .ex = ex, .count = readbytes };

	/* Peeked bytes are read again later: the engines see them then. */
	if (peek)
		return ex ? api->SSL_peek_ex(ssl, buf, num, readbytes)
			  : api->SSL_peek(ssl, buf, (int)num);
	if ((s && osh_tls_bypass(s)) || !api->SSL_get_error || !num || (!ex && num > INT_MAX) ||
	    (ex && !readbytes) || !(s = ossl_session(api, ssl, s)))
		return ex ? api->SSL_read_ex(ssl, buf, num, readbytes)
			  : api->SSL_read(ssl, buf, (int)num);
	ossl_read_call(&io, buf, num);
	/* The handshake may have completed inside this very read. */
	if (io.status == IO_DONE)
		ossl_alpn(api, s, ssl);
	if (!osh_tls_bypass(s))
		observe_read(s, &io, buf);
	settle_mode(s);
	errno = io.err;
	return (int)io.ret;
}

int osh_tls_ossl_shutdown(const struct osh_ossl_api *api, struct ssl_st *ssl)
{
	int ret = api->SSL_shutdown(ssl);

	/* 0 or 1: close_notify went out. */
	if (ret >= 0)
		close_notify_sent(ssl);
	return ret;
}

ssize_t osh_tls_ossl_sendfile(const struct osh_ossl_api *api, struct ssl_st *ssl, int fd,
			      off_t offset, size_t size, int flags)
{
	ssize_t ret = api->SSL_sendfile(ssl, fd, offset, size, flags);
	int err = errno;
	struct osh_tls_session *s;

	if (ret > 0 && (s = osh_tls_find(ssl)) != NULL && traced(s)) {
		uint8_t role = atomic_load(&s->conn.role);

		if (role == OSH_ROLE_SERVER)
			osh_server_tx_opaque(&s->conn, (size_t)ret);
		else if (role == OSH_ROLE_CLIENT)
			osh_client_tx_opaque(&s->conn, (size_t)ret);
		settle_mode(s);
	}
	errno = err;
	return ret;
}

/* ---- GnuTLS -------------------------------------------------------------- */

static void gnutls_fill(void *p, void *h)
{
	struct osh_gnutls_api *a = p;

#define R(name) a->name = (__typeof__(a->name))dlsym(h, #name)
	R(gnutls_init);
	R(gnutls_deinit);
	R(gnutls_record_send);
	R(gnutls_record_recv);
	R(gnutls_bye);
	R(gnutls_transport_get_int);
	R(gnutls_alpn_get_selected_protocol);
	R(gnutls_error_is_fatal);
	R(gnutls_record_uncork);
#undef R
}

static const char *const gnutls_sonames[] = { "libgnutls.so.30" };

static struct family gnutls_family = {
	.probe = "gnutls_record_send",
	.sonames = gnutls_sonames,
	.n_sonames = 1,
	.api_size = sizeof(struct osh_gnutls_api),
	.fill = gnutls_fill,
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

const struct osh_gnutls_api *osh_tls_gnutls_api(const void *caller)
{
	return family_api(&gnutls_family, caller);
}

static void gnutls_send_call(struct io *io, const void *buf, size_t len)
{
	const struct osh_gnutls_api *api = io->api;
	ssize_t ret = api->gnutls_record_send(io->session, buf, len);

	io->err = errno;
	io->ret = ret;
	io->n = ret > 0 ? (size_t)ret : 0;
	if (ret >= 0)
		io->status = IO_DONE;
	else if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED)
		io->status = IO_AGAIN;
	else
		io->status = IO_FAILED;
	errno = io->err;
}

/* GnuTLS resends the record it buffered whatever a retry passes, and
 * sends at most one record per call. */
static bool gnutls_yes(struct io *io)
{
	(void)io;
	return true;
}

static enum io_status gnutls_recv_status(const struct osh_gnutls_api *api, ssize_t ret)
{
	if (ret > 0)
		return IO_DONE;
	if (ret == 0 || ret == GNUTLS_E_PREMATURE_TERMINATION)
		return IO_EOF;
	if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED || ret == GNUTLS_E_REHANDSHAKE)
		return IO_AGAIN;
	/* Warning alerts and the like: no data, the session goes on. */
	if (api->gnutls_error_is_fatal && !api->gnutls_error_is_fatal((int)ret))
		return IO_AGAIN;
	return IO_FAILED;
}

/* The session's socket, when its transport is one: gnutls_transport_get_int
 * returns whatever pointer the program set, cast to int. */
static int gnutls_fd(const struct osh_gnutls_api *api, struct gnutls_session_int *session)
{
	int fd = api->gnutls_transport_get_int ? api->gnutls_transport_get_int(session) : -1;
	int type = 0;
	socklen_t tl = sizeof(type);

	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM)
		return -1;
	return fd;
}

static struct osh_tls_session *gnutls_session(const struct osh_gnutls_api *api,
					      struct gnutls_session_int *session,
					      struct osh_tls_session *s, enum osh_conn_role guess)
{
	if (!s) {
		/* Created before our gnutls_init hook could see it: HTTP
		 * clients write first, servers read first. */
		s = osh_tls_open(session, guess);
		if (!s)
			return NULL;
	}
	if (atomic_load_explicit(&s->state, memory_order_acquire) == ST_NEW) {
		int err = errno;

		osh_tls_start(s, gnutls_fd(api, session));
		errno = err;
	}
	if (atomic_load_explicit(&s->state, memory_order_acquire) != ST_STARTED)
		return NULL;
	/* Records flow only after the handshake: the protocol is known. */
	if (!s->alpn_checked && !osh_tls_bypass(s)) {
		struct osh_gnutls_datum d = { 0 };

		s->alpn_checked = true;
		if (api->gnutls_alpn_get_selected_protocol &&
		    api->gnutls_alpn_get_selected_protocol(session, &d) == 0 && d.data &&
		    d.size == 2 && memcmp(d.data, "h2", 2) == 0)
			osh_tls_pass(s);
	}
	return osh_tls_bypass(s) ? NULL : s;
}

int osh_tls_gnutls_init(const struct osh_gnutls_api *api, struct gnutls_session_int **session,
			unsigned int flags)
{
	int ret = api->gnutls_init(session, flags);
	int err = errno;

	if (ret == 0 && session && *session) {
		/* A new session at an address some forgotten one had. */
		osh_tls_close(*session);
		osh_tls_open(*session, (flags & GNUTLS_SERVER) ? OSH_ROLE_SERVER : OSH_ROLE_CLIENT);
	}
	errno = err;
	return ret;
}

ssize_t osh_tls_gnutls_send(const struct osh_gnutls_api *api, struct gnutls_session_int *session,
			    const void *data, size_t size)
{
	struct osh_tls_session *s = osh_tls_find(session);
	struct io io = { .call = gnutls_send_call, .moving_ok = gnutls_yes,
			 .partial_ok = gnutls_yes, .api = api,
			 .session = session, .null_retry = true, .max_len = SSIZE_MAX };

	if ((s && osh_tls_bypass(s)) || (!size && !(s && s->pending)) || size > SSIZE_MAX ||
	    !(s = gnutls_session(api, session, s, OSH_ROLE_CLIENT)))
		return api->gnutls_record_send(session, data, size);
	write_traced(s, &io, data, size);
	return io.status == IO_DONE ? (ssize_t)io.n : (ssize_t)io.ret;
}

ssize_t osh_tls_gnutls_recv(const struct osh_gnutls_api *api, struct gnutls_session_int *session,
			    void *data, size_t size)
{
	struct osh_tls_session *s = osh_tls_find(session);
	struct io io = { .api = api, .session = session };

	if ((s && osh_tls_bypass(s)) || !size || !data ||
	    !(s = gnutls_session(api, session, s, OSH_ROLE_SERVER)))
		return api->gnutls_record_recv(session, data, size);
	io.ret = api->gnutls_record_recv(session, data, size);
	io.err = errno;
	io.status = gnutls_recv_status(api, io.ret);
	io.n = io.status == IO_DONE ? (size_t)io.ret : 0;
	observe_read(s, &io, data);
	settle_mode(s);
	errno = io.err;
	return io.ret;
}

int osh_tls_gnutls_bye(const struct osh_gnutls_api *api, struct gnutls_session_int *session,
		       int how)
{
	int ret = api->gnutls_bye(session, how);

	if (ret == 0)
		close_notify_sent(session);
	return ret;
}
