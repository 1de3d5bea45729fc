/* Hooks on the lifetime of sockets: connect() starts tracking an outgoing
 * TCP connection, close() ends it. */
#include "buildconf.h"

#define _GNU_SOURCE

#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hook.h"

OSH_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	const struct osh_real *r = osh_real_get();
	int ret, err, type;
	socklen_t tlen = sizeof(type);

	osh_init_ensure();
	ret = r->connect(fd, addr, len);
	err = errno;
	if (!osh_enabled || !addr || len < sizeof(sa_family_t) ||
	    (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
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
	if (!osh_guard_enter())
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

OSH_EXPORT int dup2(int oldfd, int newfd)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(newfd);
	int ret, err;

	if (__builtin_expect(!c, 1) || oldfd == newfd ||
	    atomic_load(&c->role) != OSH_ROLE_CLIENT || !osh_guard_enter())
		return r->dup2(oldfd, newfd);
	osh_conn_release(c, OSH_END_CLOSED);
	ret = r->dup2(oldfd, newfd);
	err = errno;
	osh_guard_leave();
	errno = err;
	return ret;
}

OSH_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(newfd);
	int ret, err;

	if (__builtin_expect(!c, 1) || oldfd == newfd ||
	    atomic_load(&c->role) != OSH_ROLE_CLIENT || !osh_guard_enter())
		return r->dup3(oldfd, newfd, flags);
	osh_conn_release(c, OSH_END_CLOSED);
	ret = r->dup3(oldfd, newfd, flags);
	err = errno;
	osh_guard_leave();
	errno = err;
	return ret;
}

OSH_EXPORT int fclose(FILE *f)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = f ? osh_conn_get(fileno_unlocked(f)) : NULL;

	if (__builtin_expect(c != NULL, 0) && atomic_load(&c->role) == OSH_ROLE_CLIENT &&
	    osh_guard_enter()) {
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

	/* CLOEXEC only marks fds: nothing is closed now. */
	if ((flags & CLOSE_RANGE_CLOEXEC) || first > last || !osh_guard_enter())
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

	if (lowfd < 0 || !osh_guard_enter()) {
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
