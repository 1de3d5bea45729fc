/* Hooks on the lifetime of sockets: connect() starts tracking an outgoing
 * TCP connection, close() ends it. */
#include "buildconf.h"

#include <netinet/in.h>
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
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0 && type == SOCK_STREAM)
		osh_conn_track_client(fd, addr, len);
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
		c->exporter_closed = true;
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
