/* The per-fd connection table (see conn.h). */
#include "buildconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "conn.h"
#include "diag.h"

struct osh_conn *_Atomic osh_conn_chunks[OSH_CONN_TOP];

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
			if (atomic_load(&c->role) == OSH_ROLE_CLIENT)
				osh_conn_release(c, OSH_END_CLOSED);
		}
	}
}

void osh_conn_track_client(int fd, const struct sockaddr *addr, socklen_t len)
{
	struct osh_conn *c = osh_conn_slot(fd);
	struct osh_peer peer = { 0 };

	if (!c)
		return;
	if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
		peer.family = AF_INET;
		peer.port = ntohs(in->sin_port);
		memcpy(peer.addr, &in->sin_addr, 4);
	} else if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
		peer.family = AF_INET6;
		peer.port = ntohs(in6->sin6_port);
		memcpy(peer.addr, &in6->sin6_addr, 16);
	} else {
		return;
	}
	/* A slot still marked from an fd closed behind our back (fclose,
	 * dup2, close_range): drop what it held. */
	if (atomic_load(&c->role) != OSH_ROLE_NONE)
		osh_conn_release(c, OSH_END_DESYNC);
	if (!osh_conn_lock(c))
		return;
	osh_client_reset(&c->client);
	c->peer = peer;
	c->peer_text_len = (uint8_t)osh_peer_format(&peer, c->peer_text, sizeof(c->peer_text));
	atomic_store_explicit(&c->role, OSH_ROLE_CLIENT, memory_order_release);
	osh_conn_unlock(c);
}

void osh_conn_mark_exporter(int fd, bool owned)
{
	struct osh_conn *c = osh_conn_slot(fd);

	if (!c)
		return;
	if (owned && atomic_load(&c->role) == OSH_ROLE_CLIENT)
		osh_conn_release(c, OSH_END_DESYNC);
	for (int i = 0; i < MAX_EXPORTER_FDS; i++) {
		int expected = owned ? -1 : fd;
		if (atomic_compare_exchange_strong(&exporter_fds[i], &expected, owned ? fd : -1))
			break;
	}
	atomic_store_explicit(&c->role, owned ? OSH_ROLE_EXPORTER : OSH_ROLE_NONE,
			      memory_order_release);
}

void osh_conn_release(struct osh_conn *c, int why)
{
	if (atomic_load(&c->role) != OSH_ROLE_CLIENT)
		return;
	if (!osh_conn_lock(c)) {
		/* Cannot take the state safely: at least stop tracking. */
		atomic_store_explicit(&c->role, OSH_ROLE_NONE, memory_order_release);
		return;
	}
	atomic_store_explicit(&c->role, OSH_ROLE_NONE, memory_order_release);
	osh_client_abandon(&c->client, (enum osh_end_reason)why, 0);
	osh_client_reset(&c->client);
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
