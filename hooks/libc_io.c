/* Hooks on socket I/O. On client connections the write family may get
 * header lines spliced in (src/http_client.c plans them); on server
 * connections nothing is ever changed: the bytes that went through the real
 * call are shown to src/http_server.c afterwards. The read family is
 * observed only. sendfile() and splice() move bytes the shim never sees:
 * they are counted where the framing allows it.
 *
 * Every hook starts with the fast path: osh_conn_get() is NULL for any fd
 * the shim does not track (files, pipes, non-HTTP sockets), and the real
 * function is called straight away.
 */
#include "buildconf.h"

#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "hook.h"
#include "http_server.h"

static inline bool is_server(const struct osh_conn *c)
{
	uint8_t r = atomic_load_explicit(&c->role, memory_order_relaxed);

	return r == OSH_ROLE_SERVER || r == OSH_ROLE_ALIAS;
}

static inline bool is_client(const struct osh_conn *c)
{
	return atomic_load_explicit(&c->role, memory_order_relaxed) == OSH_ROLE_CLIENT;
}

/* ---- writes ------------------------------------------------------------- */

enum send_kind {
	SEND_WRITE,
	SEND_WRITEV,
	SEND_SEND,
	SEND_SENDTO,
	SEND_SENDMSG,
};

struct send_call {
	enum send_kind kind;
	int fd;
	int flags;
	const struct iovec *iov;
	int iovcnt;
	const struct sockaddr *to;	/* sendto */
	socklen_t tolen;
	const struct msghdr *msg;	/* sendmsg */
};

static ssize_t real_send_unchanged(const struct osh_real *r, const struct send_call *s)
{
	switch (s->kind) {
	case SEND_WRITE:
		return r->write(s->fd, s->iov[0].iov_base, s->iov[0].iov_len);
	case SEND_WRITEV:
		return r->writev(s->fd, s->iov, s->iovcnt);
	case SEND_SEND:
		return r->send(s->fd, s->iov[0].iov_base, s->iov[0].iov_len, s->flags);
	case SEND_SENDTO:
		return r->sendto(s->fd, s->iov[0].iov_base, s->iov[0].iov_len, s->flags, s->to,
				 s->tolen);
	case SEND_SENDMSG:
	default:
		return r->sendmsg(s->fd, s->msg, s->flags);
	}
}

/* The same call with the plan's iovec: write/writev become writev, the send
 * family becomes sendmsg with the caller's flags, address and control data. */
static ssize_t real_send_planned(const struct osh_real *r, const struct send_call *s,
				 struct osh_tx_plan *plan)
{
	struct msghdr m;

	if (s->kind == SEND_WRITE || s->kind == SEND_WRITEV)
		return r->writev(s->fd, plan->iov, plan->iovcnt);
	if (s->kind == SEND_SENDMSG) {
		m = *s->msg;
	} else {
		memset(&m, 0, sizeof(m));
		if (s->kind == SEND_SENDTO) {
			m.msg_name = (void *)s->to;
			m.msg_namelen = s->tolen;
		}
	}
	m.msg_iov = plan->iov;
	m.msg_iovlen = (size_t)plan->iovcnt;
	return r->sendmsg(s->fd, &m, s->flags);
}

/* A request on a client connection: trace headers may be injected. Out of
 * line: its plan (~1.6 KB) would otherwise sit in every traced send's
 * frame, pushing a server's response path that much deeper into stack
 * lines nothing else touches. */
static __attribute__((noinline)) ssize_t traced_client_send(const struct osh_real *r,
							    struct osh_conn *c,
							    const struct send_call *s)
{
	struct osh_tx_plan plan;
	ssize_t ret;
	int err;

	/* When the kernel takes only injected bytes, none of the program's
	 * went out: reporting 0 would look like an error to many programs, so
	 * send again (the rest of the header line first). A blocking socket
	 * then makes progress or blocks, as the program's own call would have;
	 * a non-blocking one answers EAGAIN, which is the truth. Bounded: a
	 * header line is at most a few hundred bytes. */
	for (int tries = 0;; tries++) {
		ssize_t real;

		osh_client_tx_prepare(c, s->fd, s->iov, s->iovcnt, &plan);
		real = plan.changed ? real_send_planned(r, s, &plan) : real_send_unchanged(r, s);
		err = errno;
		ret = osh_client_tx_commit(c, &plan, s->iov, s->iovcnt, real, err);
		if (ret != 0 || real <= 0 || tries == 64)
			break;
	}
	errno = err;
	return ret;
}

static ssize_t traced_send(const struct osh_real *r, struct osh_conn *c, const struct send_call *s)
{
	ssize_t ret;
	int err;

	if (is_server(c)) {
		/* A response: sent as the program wrote it, then observed. */
		ret = real_send_unchanged(r, s);
		err = errno;
		osh_server_tx(c, s->iov, s->iovcnt, ret, err);
		errno = err;
		return ret;
	}
	if (!is_client(c))
		return real_send_unchanged(r, s);
	return traced_client_send(r, c, s);
}

OSH_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct iovec iov = { (void *)buf, len };
	struct send_call s = { .kind = SEND_WRITE, .fd = fd, .iov = &iov, .iovcnt = 1 };
	ssize_t ret;

	if (__builtin_expect(!c, 1) || !osh_guard_enter())
		return r->write(fd, buf, len);
	ret = traced_send(r, c, &s);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct send_call s = { .kind = SEND_WRITEV, .fd = fd, .iov = iov, .iovcnt = iovcnt };
	ssize_t ret;

	if (__builtin_expect(!c, 1) || iovcnt <= 0 || !osh_guard_enter())
		return r->writev(fd, iov, iovcnt);
	ret = traced_send(r, c, &s);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct iovec iov = { (void *)buf, len };
	struct send_call s = { .kind = SEND_SEND, .fd = fd, .flags = flags, .iov = &iov,
			       .iovcnt = 1 };
	ssize_t ret;

	if (__builtin_expect(!c, 1) || (flags & MSG_OOB) || !osh_guard_enter())
		return r->send(fd, buf, len, flags);
	ret = traced_send(r, c, &s);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
			  const struct sockaddr *addr, socklen_t addrlen)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct iovec iov = { (void *)buf, len };
	struct send_call s = { .kind = SEND_SENDTO, .fd = fd, .flags = flags, .iov = &iov,
			       .iovcnt = 1, .to = addr, .tolen = addrlen };
	ssize_t ret;

	if (__builtin_expect(!c, 1) || (flags & MSG_OOB) || !osh_guard_enter())
		return r->sendto(fd, buf, len, flags, addr, addrlen);
	ret = traced_send(r, c, &s);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct send_call s = { .kind = SEND_SENDMSG, .fd = fd, .flags = flags, .msg = msg };
	ssize_t ret;

	if (__builtin_expect(!c, 1) || !msg || msg->msg_iovlen == 0 || msg->msg_iovlen > 1024 ||
	    (flags & MSG_OOB) || !osh_guard_enter())
		return r->sendmsg(fd, msg, flags);
	s.iov = msg->msg_iov;
	s.iovcnt = (int)msg->msg_iovlen;
	ret = traced_send(r, c, &s);
	osh_guard_leave();
	return ret;
}

/* ---- reads -------------------------------------------------------------- */

/* After a real read: hand what it returned to the response parser.
 * MSG_PEEK data will be read again; MSG_TRUNC on a stream discards bytes we
 * never get to see, so the connection's framing is lost. */
static void observe(struct osh_conn *c, const struct iovec *iov, int iovcnt, ssize_t ret, int err,
		    int flags)
{
	if (flags & MSG_PEEK)
		return;
	if (is_server(c)) {
		if (flags & MSG_TRUNC)
			osh_server_rx_lost(c);
		else
			osh_server_rx(c, iov, iovcnt, ret, err);
		return;
	}
	if (!is_client(c))
		return;
	if (flags & MSG_TRUNC) {
		osh_conn_release(c, OSH_END_DESYNC);
		return;
	}
	osh_client_rx(c, iov, iovcnt, ret, err);
}

#define READ_HOOK_BODY(real_call, iovp, iovc, flags)            \
	do {                                                      \
		ssize_t ret_;                                     \
		int err_;                                         \
		if (__builtin_expect(!c, 1) || !osh_guard_enter()) \
			return real_call;                         \
		ret_ = real_call;                                 \
		err_ = errno;                                     \
		observe(c, iovp, iovc, ret_, err_, flags);        \
		errno = err_;                                     \
		osh_guard_leave();                                \
		return ret_;                                      \
	} while (0)

OSH_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct iovec iov = { buf, len };

	READ_HOOK_BODY(r->read(fd, buf, len), &iov, 1, 0);
}

OSH_EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct iovec iov = { buf, len };

	READ_HOOK_BODY(r->read_chk(fd, buf, len, buflen), &iov, 1, 0);
}

OSH_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);

	READ_HOOK_BODY(r->readv(fd, iov, iovcnt), iov, iovcnt, 0);
}

OSH_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct iovec iov = { buf, len };

	READ_HOOK_BODY(r->recv(fd, buf, len, flags), &iov, 1, flags);
}

OSH_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct iovec iov = { buf, len };

	READ_HOOK_BODY(r->recv_chk(fd, buf, len, buflen, flags), &iov, 1, flags);
}

OSH_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
			    socklen_t *addrlen)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct iovec iov = { buf, len };

	READ_HOOK_BODY(r->recvfrom(fd, buf, len, flags, addr, addrlen), &iov, 1, flags);
}

OSH_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
				  struct sockaddr *addr, socklen_t *addrlen)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);
	struct iovec iov = { buf, len };

	READ_HOOK_BODY(r->recvfrom_chk(fd, buf, len, buflen, flags, addr, addrlen), &iov, 1,
		       flags);
}

OSH_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(fd);

	/* A bad msg is the program's EFAULT to get, not our crash. */
	if (!msg)
		return r->recvmsg(fd, msg, flags);
	READ_HOOK_BODY(r->recvmsg(fd, msg, flags), msg->msg_iov, (int)msg->msg_iovlen, flags);
}

/* ---- bytes the shim does not see ----------------------------------------- */

/* Declared here, not through <sys/sendfile.h>: with _FILE_OFFSET_BITS=64
 * that header renames sendfile to sendfile64, and both names must be
 * defined (programs built either way import one or the other). */
ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
ssize_t sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count);

/* Errors after which the connection is gone (not "this fd cannot be used
 * with sendfile", after which programs fall back to write()). */
static bool conn_broken(int err)
{
	return err == EPIPE || err == ECONNRESET || err == ETIMEDOUT;
}

/* After @ret bytes left through @c without passing the shim. */
static void sent_unseen(struct osh_conn *c, ssize_t ret, int err)
{
	if (is_server(c)) {
		if (ret > 0)
			osh_server_tx_opaque(c, (size_t)ret);
		else if (ret < 0 && conn_broken(err))
			osh_server_tx(c, NULL, 0, ret, err);
	} else if (is_client(c) && ret > 0) {
		osh_client_tx_opaque(c, (size_t)ret);
	}
}

OSH_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(out_fd);
	ssize_t ret;
	int err;

	if (__builtin_expect(!c, 1) || !osh_guard_enter())
		return r->sendfile(out_fd, in_fd, offset, count);
	ret = r->sendfile(out_fd, in_fd, offset, count);
	err = errno;
	sent_unseen(c, ret, err);
	errno = err;
	osh_guard_leave();
	return ret;
}

/* A separate symbol (nginx and other large-file builds call it) even where
 * it is the same function as sendfile(). */
OSH_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off64_t *offset, size_t count)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *c = osh_conn_get(out_fd);
	ssize_t ret;
	int err;

	if (__builtin_expect(!c, 1) || !osh_guard_enter())
		return r->sendfile64(out_fd, in_fd, offset, count);
	ret = r->sendfile64(out_fd, in_fd, offset, count);
	err = errno;
	sent_unseen(c, ret, err);
	errno = err;
	osh_guard_leave();
	return ret;
}

/* splice() into a socket is like sendfile(); out of one, the bytes read
 * are never seen, so that direction's parser has lost its place. */
OSH_EXPORT ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
			  unsigned int flags)
{
	const struct osh_real *r = osh_real_get();
	struct osh_conn *ci = osh_conn_get(fd_in);
	struct osh_conn *co = osh_conn_get(fd_out);
	ssize_t ret;
	int err;

	if (__builtin_expect(!ci && !co, 1) || !osh_guard_enter())
		return r->splice(fd_in, off_in, fd_out, off_out, len, flags);
	ret = r->splice(fd_in, off_in, fd_out, off_out, len, flags);
	err = errno;
	if (co)
		sent_unseen(co, ret, err);
	if (ci && ret > 0) {
		if (is_server(ci))
			osh_server_rx_lost(ci);
		else if (is_client(ci))
			osh_conn_release(ci, OSH_END_DESYNC);
	}
	errno = err;
	osh_guard_leave();
	return ret;
}
