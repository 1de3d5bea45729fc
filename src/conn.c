/* The per-fd connection table (see conn.h). */
#include "buildconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conn.h"
#include "diag.h"
#include "http_server.h"

/* 32 KiB the hooks read at every call but for a low fd touch one page of.
 * In a section of its own, which the linker places after .bss: every other
 * zero-initialised variable then shares the few pages a process touches at
 * load instead of spilling past this array onto pages of their own (each
 * a page fault at start, ~9 us on the VMs this runs on). */
__attribute__((section(".lbss"))) struct osh_conn *_Atomic osh_conn_chunks[OSH_CONN_TOP];

/* This process's pid, known once something is tracked and refreshed in
 * fork children; a vfork child runs on the parent's memory with another
 * pid and no fork handler. */
static pid_t owner_pid;

static void conn_after_fork(void)
{
	__atomic_store_n(&owner_pid, getpid(), __ATOMIC_RELAXED);
}

/* At the first tracked connection (pthread_atfork allocates: not at load). */
static void arm(void)
{
	static bool armed;

	if (__builtin_expect(__atomic_load_n(&armed, __ATOMIC_ACQUIRE), 1))
		return;
	if (!__atomic_exchange_n(&armed, true, __ATOMIC_ACQ_REL)) {
		__atomic_store_n(&owner_pid, getpid(), __ATOMIC_RELAXED);
		pthread_atfork(NULL, NULL, conn_after_fork);
	}
}

bool osh_conn_in_vfork_child(void)
{
	pid_t p = __atomic_load_n(&owner_pid, __ATOMIC_RELAXED);

	return p && getpid() != p;
}

struct osh_conn *osh_conn_slot(int fd)
{
	unsigned top = (unsigned)fd >> OSH_CONN_CHUNK_BITS;
	struct osh_conn *chunk;
	struct osh_conn *expected = NULL;

	if (fd < 0 || (unsigned)fd >= OSH_CONN_MAX_FD)
		return NULL;
	chunk = atomic_load_explicit(&osh_conn_chunks[top], memory_order_acquire);
	if (!chunk) {
		/* Anonymous memory is zeroed and only the pages of slots
		 * actually used are ever touched. */
		chunk = mmap(NULL, sizeof(struct osh_conn) * OSH_CONN_CHUNK,
			     PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			     -1, 0);
		if (chunk == MAP_FAILED)
			return NULL;
		if (!atomic_compare_exchange_strong(&osh_conn_chunks[top], &expected, chunk)) {
			munmap(chunk, sizeof(struct osh_conn) * OSH_CONN_CHUNK);
			chunk = expected;
		}
	}
	return &chunk[(unsigned)fd & (OSH_CONN_CHUNK - 1)];
}

bool osh_conn_lock(struct osh_conn *c)
{
	/* Critical sections are a few microseconds of parsing: spin briefly,
	 * then yield in case the holder was preempted, then give up rather
	 * than ever block the host. */
	for (unsigned i = 0; i < 4096; i++) {
		if (!atomic_load_explicit(&c->locked, memory_order_relaxed) &&
		    !atomic_exchange_explicit(&c->locked, true, memory_order_acquire))
			return true;
		if (i < 256)
			__builtin_ia32_pause();
		else
			sched_yield();
	}
	osh_diag_once(OSH_ONCE_CONN_LOCK, OSH_LOG_WARN,
		      "connection state busy for too long; that connection is no longer traced");
	return false;
}

void osh_conn_unlock(struct osh_conn *c)
{
	atomic_store_explicit(&c->locked, false, memory_order_release);
}

/* The exporter's fds (libcurl keeps one or two connections). */
#define MAX_EXPORTER_FDS 16
static _Atomic int exporter_fds[MAX_EXPORTER_FDS] = { [0 ... MAX_EXPORTER_FDS - 1] = -1 };

int osh_conn_exporter_fds(int *out, int max)
{
	int n = 0;

	for (int i = 0; i < MAX_EXPORTER_FDS && n < max; i++) {
		int fd = atomic_load(&exporter_fds[i]);
		int j = n;
		if (fd < 0)
			continue;
		while (j > 0 && out[j - 1] > fd) {
			out[j] = out[j - 1];
			j--;
		}
		out[j] = fd;
		n++;
	}
	return n;
}

void osh_conn_release_range(unsigned first, unsigned last)
{
	if (last >= OSH_CONN_MAX_FD)
		last = OSH_CONN_MAX_FD - 1;
	for (unsigned top = first >> OSH_CONN_CHUNK_BITS; top <= last >> OSH_CONN_CHUNK_BITS &&
							  first <= last;
	     top++) {
		struct osh_conn *chunk = atomic_load(&osh_conn_chunks[top]);
		unsigned lo = top << OSH_CONN_CHUNK_BITS, hi = lo + OSH_CONN_CHUNK - 1;

		if (!chunk)
			continue;
		for (unsigned fd = lo < first ? first : lo; fd <= hi && fd <= last; fd++) {
			struct osh_conn *c = &chunk[fd & (OSH_CONN_CHUNK - 1)];
			if (osh_conn_is_ours(c))
				osh_conn_release(c, OSH_END_CLOSED);
		}
	}
}

/* Drop whatever state the slot holds (lock held): the role the state was
 * made for says how. The anchor's generation moves on, which retires every
 * thread context and alias that pointed here. */
static void reset_state(struct osh_conn *c)
{
	switch (c->held) {
	case OSH_ROLE_CLIENT:
		osh_client_reset(&c->client);
		break;
	case OSH_ROLE_SERVER:
		osh_server_reset(&c->server);
		break;
	default:
		break;
	}
	/* The union is the last member. */
	memset(&c->client, 0, sizeof(*c) - offsetof(struct osh_conn, client));
	c->held = OSH_ROLE_NONE;
	c->n_fds = 0;
	osh_context_anchor_reset(&c->anchor);
}

/* The slot is about to describe a new socket on its fd number: whatever
 * it held goes, including a zombie's state (its aliases then find a new
 * generation and stop). */
static void evict(struct osh_conn *c)
{
	uint8_t r = atomic_load(&c->role);

	if (r == OSH_ROLE_NONE || r == OSH_ROLE_EXPORTER)
		return;
	if (r != OSH_ROLE_ZOMBIE)
		osh_conn_release(c, OSH_END_DESYNC);
	if (atomic_load(&c->role) != OSH_ROLE_ZOMBIE)
		return;
	/* Logged calls first: the zombie's state is about to go. */
	osh_server_replay();
	if (!osh_conn_lock(c)) {
		atomic_store_explicit(&c->role, OSH_ROLE_NONE, memory_order_release);
		return;
	}
	if (atomic_load(&c->role) == OSH_ROLE_ZOMBIE) {
		atomic_store_explicit(&c->role, OSH_ROLE_NONE, memory_order_release);
		osh_server_abandon(c, OSH_END_CLOSED, 0);
		reset_state(c);
	}
	osh_conn_unlock(c);
}

bool osh_peer_from(const struct sockaddr *addr, socklen_t len, struct osh_peer *ret)
{
	struct osh_peer p = { 0 };

	if (!addr || len < sizeof(sa_family_t))
		return false;
	if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		p.family = AF_INET;
		p.port = ntohs(in->sin_port);
		memcpy(p.addr, &in->sin_addr, 4);
	} else if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		p.family = AF_INET6;
		p.port = ntohs(in6->sin6_port);
		memcpy(p.addr, &in6->sin6_addr, 16);
	} else {
		return false;
	}
	*ret = p;
	return true;
}

/* Take slot @c for a new connection with @peer (and the local end @local,
 * when known) in @role: its fields are filled before the role is
 * published. */
static void claim(struct osh_conn *c, const struct osh_peer *peer, const struct osh_peer *local,
		  uint8_t role)
{
	arm();
	/* A slot still marked from an fd closed behind our back (fclose,
	 * dup2, close_range): drop what it held. */
	evict(c);
	if (!osh_conn_lock(c))
		return;
	reset_state(c);
	c->peer = *peer;
	if (local)
		c->local = *local;
	c->peer_text_len = (uint8_t)osh_peer_format(peer, c->peer_text, sizeof(c->peer_text));
	c->n_fds = 1;
	c->held = role;
	atomic_store_explicit(&c->role, role, memory_order_release);
	osh_conn_unlock(c);
}

void osh_conn_track_client(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct osh_conn *c = osh_conn_slot(fd);
	struct osh_peer peer;

	if (c && osh_peer_from(addr, len, &peer))
		claim(c, &peer, NULL, OSH_ROLE_CLIENT);
}

/* Decide once per listener fd whether what it accepts is traced, and keep
 * its local address. Returns the listener's slot (role LISTENER) or NULL. */
static struct osh_conn *classify_listener(int listen_fd)
{
	struct osh_conn *l = osh_conn_slot(listen_fd);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct osh_peer local = { 0 };
	int type = 0;
	socklen_t tl = sizeof(type);
	bool traced;

	if (!l)
		return NULL;
	if (atomic_load(&l->role) == OSH_ROLE_LISTENER)
		return l;
	/* AF_UNIX and other families stay untraced (their accepts still go
	 * through this slot, which remembers the verdict). */
	traced = getsockopt(listen_fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
		 type == SOCK_STREAM && getsockname(listen_fd, (struct sockaddr *)&ss, &sl) == 0 &&
		 osh_peer_from((struct sockaddr *)&ss, sl, &local);
	evict(l);
	if (!osh_conn_lock(l))
		return NULL;
	reset_state(l);
	l->local = local;
	l->listener.traced = traced;
	l->held = OSH_ROLE_LISTENER;
	atomic_store_explicit(&l->role, OSH_ROLE_LISTENER, memory_order_release);
	osh_conn_unlock(l);
	return l;
}

void osh_conn_track_server(int fd, int listen_fd, const struct sockaddr *addr, socklen_t len)
{
	struct osh_conn *l = classify_listener(listen_fd);
	struct osh_conn *c;
	struct osh_peer peer, local;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	/* A listener's fields are written before its role is published and
	 * never change after: no lock on the per-accept path. */
	if (!l || atomic_load_explicit(&l->role, memory_order_acquire) != OSH_ROLE_LISTENER ||
	    !l->listener.traced)
		return;
	local = l->local;
	if (!addr) {
		/* The program's buffer was too small for the address. */
		if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
			return;
		addr = (struct sockaddr *)&ss;
		len = sl;
	}
	c = osh_conn_slot(fd);
	if (c && osh_peer_from(addr, len, &peer))
		claim(c, &peer, &local, OSH_ROLE_SERVER);
}

/* The owner slot an alias refers to, and the generation it expects. */
static struct osh_conn *alias_owner(const struct osh_conn *a, uint32_t *ret_gen)
{
	uint64_t ref = atomic_load_explicit(&a->alias, memory_order_acquire);
	int fd = (int)(ref >> 32);
	struct osh_conn *chunk;

	if ((unsigned)fd >= OSH_CONN_MAX_FD)
		return NULL;
	chunk = atomic_load_explicit(&osh_conn_chunks[(unsigned)fd >> OSH_CONN_CHUNK_BITS],
				     memory_order_acquire);
	if (!chunk)
		return NULL;
	*ret_gen = (uint32_t)ref;
	return &chunk[(unsigned)fd & (OSH_CONN_CHUNK - 1)];
}

struct osh_conn *osh_conn_lock_server(struct osh_conn *c)
{
	struct osh_conn *o = c;
	uint32_t gen = 0;
	uint8_t r = atomic_load_explicit(&c->role, memory_order_acquire);

	if (r == OSH_ROLE_ALIAS) {
		o = alias_owner(c, &gen);
		if (!o)
			return NULL;
	} else if (r != OSH_ROLE_SERVER) {
		return NULL;
	}
	if (!osh_conn_lock(o))
		return NULL;
	r = atomic_load(&o->role);
	if (o == c) {
		if (r == OSH_ROLE_SERVER)
			return o;
	} else if ((r == OSH_ROLE_SERVER || r == OSH_ROLE_ZOMBIE) &&
		   atomic_load(&o->anchor.gen) == gen) {
		return o;
	}
	osh_conn_unlock(o);
	return NULL;
}

void osh_conn_dup(int oldfd, int newfd)
{
	struct osh_conn *c = osh_conn_get(oldfd);
	struct osh_conn *n = osh_conn_slot(newfd);
	struct osh_conn *o;
	uint8_t r;
	uint64_t ref;
	bool traced;
	struct osh_peer local;

	if (!c || !n || c == n)
		return;
	r = atomic_load(&c->role);
	switch (r) {
	case OSH_ROLE_CLIENT:
		/* Bytes written through the copy would never pass the
		 * injector, whose stream offsets would then be wrong: stop. */
		osh_conn_release(c, OSH_END_DESYNC);
		return;
	case OSH_ROLE_LISTENER:
		if (!osh_conn_lock(c))
			return;
		traced = c->listener.traced;
		local = c->local;
		r = atomic_load(&c->role);
		osh_conn_unlock(c);
		if (r != OSH_ROLE_LISTENER)
			return;
		evict(n);
		if (!osh_conn_lock(n))
			return;
		reset_state(n);
		n->local = local;
		n->listener.traced = traced;
		n->held = OSH_ROLE_LISTENER;
		atomic_store_explicit(&n->role, OSH_ROLE_LISTENER, memory_order_release);
		osh_conn_unlock(n);
		return;
	case OSH_ROLE_SERVER:
	case OSH_ROLE_ALIAS:
		break;
	default:
		return;
	}
	o = osh_conn_lock_server(c);
	if (!o)
		return;
	if (o == n) {
		/* dup2 of a copy back onto the original number, whose slot
		 * became a zombie when the number was closed: it is the
		 * owner's number again. */
		if (atomic_load(&o->role) == OSH_ROLE_ZOMBIE) {
			o->n_fds++;
			atomic_store_explicit(&o->role, OSH_ROLE_SERVER, memory_order_release);
		}
		osh_conn_unlock(o);
		return;
	}
	/* The new alias names the owner's fd: @oldfd, or the one @c names. */
	if (o == c)
		ref = (uint64_t)(uint32_t)oldfd << 32;
	else
		ref = atomic_load(&c->alias) & ~(uint64_t)UINT32_MAX;
	ref |= atomic_load(&o->anchor.gen);
	o->n_fds++;
	osh_conn_unlock(o);
	evict(n);
	if (!osh_conn_lock(n)) {
		/* Give the share back. */
		if ((o = osh_conn_lock_server(c)) != NULL) {
			o->n_fds--;
			osh_conn_unlock(o);
		}
		return;
	}
	reset_state(n);
	atomic_store_explicit(&n->alias, ref, memory_order_release);
	n->held = OSH_ROLE_ALIAS;
	atomic_store_explicit(&n->role, OSH_ROLE_ALIAS, memory_order_release);
	osh_conn_unlock(n);
}

void osh_conn_mark_exporter(int fd, bool owned)
{
	struct osh_conn *c = osh_conn_slot(fd);

	if (!c)
		return;
	if (owned)
		evict(c);
	for (int i = 0; i < MAX_EXPORTER_FDS; i++) {
		int expected = owned ? -1 : fd;
		if (atomic_compare_exchange_strong(&exporter_fds[i], &expected, owned ? fd : -1))
			break;
	}
	atomic_store_explicit(&c->role, owned ? OSH_ROLE_EXPORTER : OSH_ROLE_NONE,
			      memory_order_release);
}

/* An alias goes away: give its share of the owner back; the last share of
 * a zombie ends the state. */
static void release_alias(struct osh_conn *a, int why)
{
	struct osh_conn *o;

	if (!osh_conn_lock(a)) {
		atomic_store_explicit(&a->role, OSH_ROLE_NONE, memory_order_release);
		return;
	}
	if (atomic_load(&a->role) != OSH_ROLE_ALIAS) {
		osh_conn_unlock(a);
		return;
	}
	o = osh_conn_lock_server(a);
	atomic_store_explicit(&a->role, OSH_ROLE_NONE, memory_order_release);
	reset_state(a);
	if (o) {
		if (o->n_fds)
			o->n_fds--;
		if (o->n_fds == 0 && atomic_load(&o->role) == OSH_ROLE_ZOMBIE) {
			atomic_store_explicit(&o->role, OSH_ROLE_NONE, memory_order_release);
			osh_server_abandon(o, (enum osh_end_reason)why, 0);
			reset_state(o);
		}
		osh_conn_unlock(o);
	}
	osh_conn_unlock(a);
}

void osh_conn_release(struct osh_conn *c, int why)
{
	uint8_t r = atomic_load(&c->role);

	/* Logged calls (http_server.c, deferred observation) first: the
	 * server state they belong to is about to go. */
	if (r == OSH_ROLE_SERVER || r == OSH_ROLE_ALIAS) {
		osh_server_replay();
		r = atomic_load(&c->role);
	}

	if (r == OSH_ROLE_ALIAS) {
		release_alias(c, why);
		return;
	}
	if (r != OSH_ROLE_CLIENT && r != OSH_ROLE_SERVER && r != OSH_ROLE_LISTENER)
		return;
	if (!osh_conn_lock(c)) {
		/* Cannot take the state safely: at least stop tracking (the
		 * state is reset by whoever tracks the slot next). */
		atomic_store_explicit(&c->role, OSH_ROLE_NONE, memory_order_release);
		return;
	}
	r = atomic_load(&c->role);
	switch (r) {
	case OSH_ROLE_CLIENT:
		atomic_store_explicit(&c->role, OSH_ROLE_NONE, memory_order_release);
		osh_client_abandon(&c->client, (enum osh_end_reason)why, 0);
		reset_state(c);
		break;
	case OSH_ROLE_SERVER:
		if (c->n_fds > 1) {
			/* Dups of it are still open: the state stays here
			 * for them, the fd number is no longer ours. */
			c->n_fds--;
			atomic_store_explicit(&c->role, OSH_ROLE_ZOMBIE, memory_order_release);
			break;
		}
		atomic_store_explicit(&c->role, OSH_ROLE_NONE, memory_order_release);
		osh_server_abandon(c, (enum osh_end_reason)why, 0);
		reset_state(c);
		break;
	case OSH_ROLE_LISTENER:
		atomic_store_explicit(&c->role, OSH_ROLE_NONE, memory_order_release);
		reset_state(c);
		break;
	default:
		break;
	}
	osh_conn_unlock(c);
}

size_t osh_peer_format(const struct osh_peer *p, char *out, size_t outsz)
{
	if (!inet_ntop(p->family, p->addr, out, (socklen_t)outsz)) {
		if (outsz)
			out[0] = '\0';
		return 0;
	}
	return strlen(out);
}
