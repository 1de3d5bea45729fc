/* Hooks on the lifetime of sockets: connect() starts tracking an outgoing
 * TCP connection, accept()/accept4() an incoming one, shutdown() ends a
 * response delimited by the close, dup()/dup2()/dup3() make the state
 * follow the fd, close() and the other ways an fd goes away end it. */
#include "buildconf.h"

#define _GNU_SOURCE

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hook.h"
#include "http_server.h"

OSH_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	const struct osh_real *r = osh_real_get();
	int ret, err, type;
	socklen_t tlen = sizeof(type);

	osh_init_ensure();
	ret = r->connect(fd, addr, len);
	err = errno;
	if (!osh_enabled || !addr || len < sizeof(sa_family_t) ||
	    (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) || osh_in_traced_library)
		return ret;
	/* Connected, or connecting in the background (non-blocking), or
	 * interrupted while the kernel goes on connecting. */
	if (ret != 0 && err != EINPROGRESS && err != EINTR)
		return ret;
	if (!osh_guard_enter())
		return ret;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM) {
		osh_init_arm_fork();
		osh_conn_track_client(fd, addr, len);
	}
	osh_guard_leave();
	errno = err;
	return ret;
}

/* accept() and accept4(): the real call, then track what it returned when
 * the listener is one whose connections are traced. A listener already
 * known to be untraced (AF_UNIX, datagram) costs one load and a branch. */
static int traced_accept(const struct osh_real *r, int fd, struct sockaddr *addr,
			 socklen_t *len, int flags, bool four)
{
	struct osh_conn *l;
	struct sockaddr_storage own;
	socklen_t own_len = sizeof(own);
	socklen_t room = 0;
	const struct sockaddr *peer = NULL;
	socklen_t peer_len = 0;
	int ret, err;

	osh_init_ensure();
	l = osh_conn_get(fd);
	if (!osh_enabled ||
	    (l && atomic_load_explicit(&l->role, memory_order_relaxed) == OSH_ROLE_LISTENER &&
	     !l->listener.traced) ||
	    !osh_guard_enter())
		return four ? r->accept4(fd, addr, len, flags) : r->accept(fd, addr, len);
	/* The peer's address comes from the call itself: the program's
	 * buffer when it gave one (and it was large enough), else ours. */
	if (addr && len)
		room = *len;
	if (addr) {
		ret = four ? r->accept4(fd, addr, len, flags) : r->accept(fd, addr, len);
	} else {
		ret = four ? r->accept4(fd, (struct sockaddr *)&own, &own_len, flags)
			   : r->accept(fd, (struct sockaddr *)&own, &own_len);
	}
	err = errno;
	if (ret >= 0) {
		if (!addr) {
			peer = (struct sockaddr *)&own;
			peer_len = own_len;
		} else if (len && *len <= room) {
			peer = addr;
			peer_len = *len;
		}
		osh_conn_track_server(ret, fd, peer, peer_len);
		if (osh_conn_get(ret))
			osh_init_arm_fork();
	}
	osh_guard_leave();
	errno = err;
	return ret;
}

OSH_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return traced_accept(osh_real_get(), fd, addr, len, 0, false);
}

OSH_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return traced_accept(osh_real_get(), fd, addr, len, flags, true);
}

OSH_EXPORT int shutdown(int fd, int how)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	int ret, err;
	uint8_t role;

	if (__builtin_expect(!c, 1) || how == SHUT_RD || !osh_guard_enter())
		return r->shutdown(fd, how);
	ret = r->shutdown(fd, how);
	err = errno;
	role = atomic_load(&c->role);
	if (ret == 0 && (role == OSH_ROLE_SERVER || role == OSH_ROLE_ALIAS))
		osh_server_shutdown(c);
	osh_guard_leave();
	errno = err;
	return ret;
}

OSH_EXPORT int dup(int fd)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	int ret, err;

	if (__builtin_expect(!c, 1) || osh_conn_in_vfork_child() || !osh_guard_enter())
		return r->dup(fd);
	ret = r->dup(fd);
	err = errno;
	if (ret >= 0)
		osh_conn_dup(fd, ret);
	osh_guard_leave();
	errno = err;
	return ret;
}

OSH_EXPORT int close(int fd)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	int ret, err;

	if (__builtin_expect(!c, 1))
		return r->close(fd);
	if (atomic_load(&c->role) == OSH_ROLE_EXPORTER) {
		/* The exporter closes its own sockets; anyone else closing one
		 * (a daemon's close-everything loop) is told it worked, but
		 * the fd stays ours, so its number is never reused under the
		 * exporter's feet. */
		if (osh_in_shim)
			return r->close(fd);
		return 0;
	}
	/* A vfork child closes its own copies; the table is its parent's. */
	if (osh_conn_in_vfork_child() || !osh_guard_enter())
		return r->close(fd);
	osh_conn_release(c, OSH_END_CLOSED);
	ret = r->close(fd);
	err = errno;
	osh_guard_leave();
	errno = err;
	return ret;
}

/* ---- other ways an fd goes away ------------------------------------------
 * Each of these closes descriptors without our close() hook seeing it. A
 * tracked slot left behind would describe whatever the number is reused for
 * next, so they release the slot first. */

/* dup2() and dup3(): whatever @newfd was is closed first; then it refers
 * to @oldfd's socket, and its state follows (osh_conn_dup). */
OSH_EXPORT int dup2(int oldfd, int newfd)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *cn = osh_conn_get(newfd);
	struct osh_conn *co = osh_conn_get(oldfd);
	int ret, err;

	if (__builtin_expect(!cn && !co, 1) || oldfd == newfd || osh_conn_in_vfork_child() ||
	    !osh_guard_enter())
		return r->dup2(oldfd, newfd);
	if (cn && osh_conn_is_ours(cn))
		osh_conn_release(cn, OSH_END_CLOSED);
	ret = r->dup2(oldfd, newfd);
	err = errno;
	if (ret >= 0 && co)
		osh_conn_dup(oldfd, ret);
	osh_guard_leave();
	errno = err;
	return ret;
}

OSH_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *cn = osh_conn_get(newfd);
	struct osh_conn *co = osh_conn_get(oldfd);
	int ret, err;

	if (__builtin_expect(!cn && !co, 1) || oldfd == newfd || osh_conn_in_vfork_child() ||
	    !osh_guard_enter())
		return r->dup3(oldfd, newfd, flags);
	if (cn && osh_conn_is_ours(cn))
		osh_conn_release(cn, OSH_END_CLOSED);
	ret = r->dup3(oldfd, newfd, flags);
	err = errno;
	if (ret >= 0 && co)
		osh_conn_dup(oldfd, ret);
	osh_guard_leave();
	errno = err;
	return ret;
}

OSH_EXPORT int fclose(FILE *f)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = f ? osh_conn_get(fileno_unlocked(f)) : NULL;

	if (__builtin_expect(c != NULL, 0) && osh_conn_is_ours(c) && osh_guard_enter()) {
		osh_conn_release(c, OSH_END_CLOSED);
		osh_guard_leave();
	}
	return r->fclose(f);
}

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* Close [first, last] except the exporter's fds (the host believes them
 * closed, as with close()). 0 or -1 with errno, like close_range(2). */
static int close_range_sparing(const struct osh_real *r, unsigned first, unsigned last, int flags)
{
	int keep[16];
	int n = osh_conn_exporter_fds(keep, 16);
	unsigned lo = first;

	for (int i = 0; i < n && lo <= last; i++) {
		unsigned k = (unsigned)keep[i];
		if (k < lo || k > last)
			continue;
		if (k > lo && r->close_range(lo, k - 1, flags) < 0)
			return -1;
		lo = k + 1;
		if (k == ~0u)
			return 0;
	}
	if (lo > last)
		return 0;
	return r->close_range(lo, last, flags);
}

OSH_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	const struct osh_real *r = osh_real_get();
	int ret, err;

	/* CLOEXEC only marks fds: nothing is closed now. A vfork child
	 * (Python's subprocess) closes its own copies of the fds, the
	 * exporter's included, and must leave its parent's table alone. */
	if ((flags & CLOSE_RANGE_CLOEXEC) || first > last || osh_conn_in_vfork_child() ||
	    !osh_guard_enter())
		return r->close_range(first, last, flags);
	osh_conn_release_range(first, last);
	ret = close_range_sparing(r, first, last, flags);
	err = errno;
	osh_guard_leave();
	errno = err;
	return ret;
}

OSH_EXPORT void closefrom(int lowfd)
{
	const struct osh_real *r = osh_real_get();
	int keep[16], n;
	unsigned lo;

	if (lowfd < 0 || osh_conn_in_vfork_child() || !osh_guard_enter()) {
		r->closefrom(lowfd);
		return;
	}
	osh_conn_release_range((unsigned)lowfd, ~0u);
	n = osh_conn_exporter_fds(keep, 16);
	lo = (unsigned)lowfd;
	/* Below the highest exporter fd, close around them; above it, let
	 * libc's closefrom do the rest (it copes with kernels without
	 * close_range). */
	for (int i = 0; i < n; i++) {
		unsigned k = (unsigned)keep[i];
		if (k < lo)
			continue;
		if (k > lo && close_range_sparing(r, lo, k - 1, 0) < 0) {
			for (unsigned fd = lo; fd < k; fd++)
				r->close((int)fd);
		}
		lo = k + 1;
	}
	r->closefrom((int)lo);
	osh_guard_leave();
}
