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
 *
 * Roles: an outgoing connection (CLIENT) holds the client engine's state;
 * an accepted one (SERVER) the server engine's; a LISTENER caches its local
 * address for the connections it accepts. Duplicated fds (dup, dup2, dup3)
 * follow the socket: a dup of a server connection is an ALIAS whose state
 * is the original slot's; when the original fd is closed while aliases
 * remain, its slot becomes a ZOMBIE, still holding the state for them but
 * no longer describing its fd number. A dup of a client connection ends
 * its tracing (docs/ARCHITECTURE.md, "Duplicated descriptors").
 */
#pragma once

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "context.h"
#include "http_client.h"
#include "http_server.h"

#define OSH_CONN_CHUNK_BITS 10
#define OSH_CONN_CHUNK (1u << OSH_CONN_CHUNK_BITS)
#define OSH_CONN_TOP 4096
#define OSH_CONN_MAX_FD (OSH_CONN_TOP * OSH_CONN_CHUNK)

enum osh_conn_role {
	OSH_ROLE_NONE = 0,	/* untracked: hooks take the fast path */
	OSH_ROLE_CLIENT,	/* outgoing HTTP/1.x candidate */
	OSH_ROLE_EXPORTER,	/* the exporter's own socket (close() protection) */
	OSH_ROLE_SERVER,	/* accepted HTTP/1.x candidate (observed only) */
	OSH_ROLE_LISTENER,	/* listening socket, its local address cached */
	OSH_ROLE_ALIAS,		/* dup of a server connection: state in the owner */
	OSH_ROLE_ZOMBIE,	/* fd closed, state kept for its aliases */
};

/* The remote end of a connection as connect() saw it. */
struct osh_peer {
	sa_family_t family;	/* AF_INET or AF_INET6 */
	uint16_t port;		/* host order */
	uint8_t addr[16];	/* 4 bytes for AF_INET */
};

struct osh_listener {
	bool traced;		/* AF_INET/AF_INET6 stream: track what it accepts */
};

struct osh_conn {
	_Atomic uint8_t role;
	_Atomic bool locked;
	uint8_t held;		/* which member of the union holds state (a role) */
	uint16_t n_fds;		/* SERVER/ZOMBIE: fds sharing the state (1 + aliases) */
	bool tls;		/* plaintext seen through a TLS library: https */
	struct osh_context_anchor anchor;	/* never reset: generations go on */
	struct osh_peer peer;	/* CLIENT: remote end; SERVER: the client */
	struct osh_peer local;	/* SERVER, LISTENER: local end (getsockname, once
				 * per listener, copied to what it accepts) */
	uint8_t peer_text_len;
	char peer_text[47];	/* the peer address as text, formatted once */
	union {
		struct osh_client client;	/* CLIENT */
		struct osh_server server;	/* SERVER, ZOMBIE */
		struct osh_listener listener;	/* LISTENER */
		/* ALIAS: the owner's fd (high 32 bits) and the generation of
		 * its anchor when the alias was made (low 32 bits). */
		_Atomic uint64_t alias;
	};
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

/* @fd was accepted on @listen_fd from @peer (@peer_len bytes; NULL when
 * the caller's buffer could not hold it: then getpeername). The first
 * accept on a listener classifies it (getsockopt SO_TYPE, getsockname: two
 * syscalls, once per listener fd) and caches its local address; @fd is
 * tracked as a server connection when the listener is an AF_INET/AF_INET6
 * stream socket. App thread. */
void osh_conn_track_server(int fd, int listen_fd, const struct sockaddr *peer, socklen_t peer_len);

/* @newfd now refers to the same socket as @oldfd (dup, dup2, dup3): a
 * server connection gets an alias, a listener a copy, a client connection
 * stops being traced. Stale state on @newfd is dropped first. */
void osh_conn_dup(int oldfd, int newfd);

/* The slot holding the server state for @c (itself, or the owner of an
 * alias), locked, when that state is still the one @c refers to; NULL
 * otherwise (nothing locked). */
struct osh_conn *osh_conn_lock_server(struct osh_conn *c);

/* True when @c's role means its fd number is one the shim tracks (not a
 * zombie, which describes a closed number, nor the exporter's). */
static inline bool osh_conn_is_ours(const struct osh_conn *c)
{
	uint8_t r = atomic_load_explicit(&c->role, memory_order_acquire);

	return r == OSH_ROLE_CLIENT || r == OSH_ROLE_SERVER || r == OSH_ROLE_LISTENER ||
	       r == OSH_ROLE_ALIAS;
}

/* Mark/unmark @fd as the exporter's own socket. */
void osh_conn_mark_exporter(int fd, bool owned);

/* @c's fd number stops referring to what the slot tracks (close(), or the
 * engine giving up): end its in-flight spans with @why (see
 * osh_client_abandon) and reset the slot. A server connection with live
 * aliases becomes a zombie instead; an alias releases its share of the
 * owner; a zombie or the exporter's socket is left alone. Takes the lock. */
void osh_conn_release(struct osh_conn *c, int why);

/* Stop tracking every fd in [@first, @last] (close_range, closefrom):
 * visits only the chunks that exist. */
void osh_conn_release_range(unsigned first, unsigned last);

/* The exporter's own fds, ascending, into @out (at most @max); returns how
 * many. close_range()/closefrom() leave these open. */
int osh_conn_exporter_fds(int *out, int max);

/* True in the child of a vfork() (or clone(CLONE_VM)) before it execs: it
 * shares the parent's memory but has its own fds, so the close family must
 * not touch the table (Python's subprocess closes every fd with close_range
 * there). One getpid() syscall; only slow paths call it. */
bool osh_conn_in_vfork_child(void);

/* @addr (@len bytes) as a struct osh_peer when it is an AF_INET or AF_INET6
 * address; false otherwise (*ret untouched). */
bool osh_peer_from(const struct sockaddr *addr, socklen_t len, struct osh_peer *ret);

/* Format the peer address as text (inet_ntop); returns length. */
size_t osh_peer_format(const struct osh_peer *p, char *out, size_t outsz);
