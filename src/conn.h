/* Per-fd connection state, in a table indexed by fd.
 *
 * The table is two-level: a static array of OSH_CONN_TOP chunk pointers, each
 * chunk an mmap of OSH_CONN_CHUNK connection slots, created on the first
 * tracked fd in its range. A slot never moves or goes away, so a pointer to
 * it stays valid memory forever (type-stable): a thread that raced a close()
 * sees a reset slot, never freed memory.
 *
 * The fast path of every hook is osh_conn_get(): two loads and a compare
 * for an untracked fd, no lock, no syscall, async-signal-safe.
 *
 * Mutable state inside a slot is guarded by its lock, a spinlock held only
 * while the shim updates state, never across a real I/O call.
 */
#pragma once

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http_client.h"

#define OSH_CONN_CHUNK_BITS 10
#define OSH_CONN_CHUNK (1u << OSH_CONN_CHUNK_BITS)
#define OSH_CONN_TOP 4096
#define OSH_CONN_MAX_FD (OSH_CONN_TOP * OSH_CONN_CHUNK)

enum osh_conn_role {
	OSH_ROLE_NONE = 0,	/* untracked: hooks take the fast path */
	OSH_ROLE_CLIENT,	/* outgoing HTTP/1.x candidate */
	OSH_ROLE_EXPORTER,	/* the exporter's own socket (close() protection) */
};

/* The remote end of a connection as connect() saw it. */
struct osh_peer {
	sa_family_t family;	/* AF_INET or AF_INET6 */
	uint16_t port;		/* host order */
	uint8_t addr[16];	/* 4 bytes for AF_INET */
};

struct osh_conn {
	_Atomic uint8_t role;
	_Atomic bool locked;
	struct osh_peer peer;
	uint8_t peer_text_len;
	char peer_text[47];	/* the peer address as text, formatted once */
	struct osh_client client;
};

extern struct osh_conn *_Atomic osh_conn_chunks[OSH_CONN_TOP];

/* The slot of a tracked fd, or NULL (the hooks' fast path). */
static inline struct osh_conn *osh_conn_get(int fd)
{
	struct osh_conn *chunk;
	struct osh_conn *c;

	if (__builtin_expect((unsigned)fd >= OSH_CONN_MAX_FD, 0))
		return NULL;
	chunk = atomic_load_explicit(&osh_conn_chunks[(unsigned)fd >> OSH_CONN_CHUNK_BITS],
				     memory_order_acquire);
	if (__builtin_expect(!chunk, 1))
		return NULL;
	c = &chunk[(unsigned)fd & (OSH_CONN_CHUNK - 1)];
	if (__builtin_expect(!atomic_load_explicit(&c->role, memory_order_acquire), 1))
		return NULL;
	return c;
}

/* The slot for @fd whatever its role, creating its chunk if needed (one mmap
 * per OSH_CONN_CHUNK fds). NULL when @fd is out of range or memory is short. */
struct osh_conn *osh_conn_slot(int fd);

/* Bounded spin: false when the lock could not be taken (the caller then
 * leaves the connection alone, and it degrades to pass-through). */
bool osh_conn_lock(struct osh_conn *c);
void osh_conn_unlock(struct osh_conn *c);

/* Start tracking @fd as an outgoing connection to @addr (after a
 * successful or in-progress connect()). Any stale state in the slot is
 * dropped first. App thread; no syscall beyond a new chunk's mmap. */
void osh_conn_track_client(int fd, const struct sockaddr *addr, socklen_t len);

/* Mark/unmark @fd as the exporter's own socket. */
void osh_conn_mark_exporter(int fd, bool owned);

/* Stop tracking @c (close(), or a desync): end its in-flight spans with
 * @why (see osh_client_abandon) and reset the slot. Takes the lock. */
void osh_conn_release(struct osh_conn *c, int why);

/* Stop tracking every client fd in [@first, @last] (close_range,
 * closefrom): visits only the chunks that exist. */
void osh_conn_release_range(unsigned first, unsigned last);

/* The exporter's own fds, ascending, into @out (at most @max); returns how
 * many. close_range()/closefrom() leave these open. */
int osh_conn_exporter_fds(int *out, int max);

/* Format the peer address as text (inet_ntop); returns length. */
size_t osh_peer_format(const struct osh_peer *p, char *out, size_t outsz);
