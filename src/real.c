/* Resolution of the real libc entry points (see real.h). */
#include "buildconf.h"

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "real.h"

/* Fallbacks when dlsym cannot give us libc's symbol (static oddities, or a
 * lookup that lands on our own hook): the raw system call. */
static int sys_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	return (int)syscall(SYS_connect, fd, addr, len);
}
static int sys_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}
static ssize_t sys_write(int fd, const void *buf, size_t len)
{
	return syscall(SYS_write, fd, buf, len);
}
static ssize_t sys_writev(int fd, const struct iovec *iov, int iovcnt)
{
	return syscall(SYS_writev, fd, iov, iovcnt);
}
static ssize_t sys_send(int fd, const void *buf, size_t len, int flags)
{
	return syscall(SYS_sendto, fd, buf, len, flags, NULL, 0);
}
static ssize_t sys_sendto(int fd, const void *buf, size_t len, int flags,
			  const struct sockaddr *addr, socklen_t addrlen)
{
	return syscall(SYS_sendto, fd, buf, len, flags, addr, addrlen);
}
static ssize_t sys_sendmsg(int fd, const struct msghdr *msg, int flags)
{
	return syscall(SYS_sendmsg, fd, msg, flags);
}
static ssize_t sys_read(int fd, void *buf, size_t len)
{
	return syscall(SYS_read, fd, buf, len);
}
static ssize_t sys_readv(int fd, const struct iovec *iov, int iovcnt)
{
	return syscall(SYS_readv, fd, iov, iovcnt);
}
static ssize_t sys_recv(int fd, void *buf, size_t len, int flags)
{
	return syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
}
static ssize_t sys_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
			    socklen_t *addrlen)
{
	return syscall(SYS_recvfrom, fd, buf, len, flags, addr, addrlen);
}
static ssize_t sys_recvmsg(int fd, struct msghdr *msg, int flags)
{
	return syscall(SYS_recvmsg, fd, msg, flags);
}
/* The fortified variants only add a buffer-size check before the call. */
static ssize_t sys_read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	if (len > buflen)
		__builtin_trap();
	return sys_read(fd, buf, len);
}
static ssize_t sys_recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	if (len > buflen)
		__builtin_trap();
	return sys_recv(fd, buf, len, flags);
}
static ssize_t sys_recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
				struct sockaddr *addr, socklen_t *addrlen)
{
	if (len > buflen)
		__builtin_trap();
	return sys_recvfrom(fd, buf, len, flags, addr, addrlen);
}

static int sys_dup2(int oldfd, int newfd)
{
	return (int)syscall(SYS_dup2, oldfd, newfd);
}
static int sys_dup3(int oldfd, int newfd, int flags)
{
	return (int)syscall(SYS_dup3, oldfd, newfd, flags);
}
static int sys_close_range(unsigned first, unsigned last, int flags)
{
	return (int)syscall(436 /* SYS_close_range */, first, last, flags);
}
static void sys_closefrom(int lowfd)
{
	(void)syscall(436 /* SYS_close_range */, (unsigned)lowfd, ~0u, 0);
}
/* No raw fallback for fclose (it needs libc's FILE internals); libc always
 * has it, so this only guards against an impossible lookup failure. */
static int sys_fclose(FILE *f)
{
	(void)f;
	errno = ENOSYS;
	return EOF;
}

static int sys_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	return (int)syscall(SYS_accept, fd, addr, len);
}
static int sys_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
	return (int)syscall(SYS_accept4, fd, addr, len, flags);
}
static int sys_shutdown(int fd, int how)
{
	return (int)syscall(SYS_shutdown, fd, how);
}
static int sys_dup(int fd)
{
	return (int)syscall(SYS_dup, fd);
}
static ssize_t sys_sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	return syscall(SYS_sendfile, out_fd, in_fd, offset, count);
}
static ssize_t sys_splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
			  unsigned int flags)
{
	return syscall(SYS_splice, fd_in, off_in, fd_out, off_out, len, flags);
}

/* dlsym(RTLD_NEXT) finds the next definition after libotelshim.so in the
 * lookup order: libc's. A failed lookup allocates (dlerror state), which is
 * why it runs once per symbol and never again. errno is the caller's. */
static void *next_symbol(const char *name, void *self, void *fallback)
{
	int saved = errno;
	void *p = dlsym(RTLD_NEXT, name);

	errno = saved;
	if (!p || p == self)
		return fallback;
	return p;
}

/* Our own hooks, to reject a lookup that resolves to ourselves. (The object
 * is linked -Bsymbolic-functions, so taking their address costs no symbol
 * lookup at load.) */
extern int connect(int, const struct sockaddr *, socklen_t);
extern ssize_t __read_chk(int, void *, size_t, size_t);
extern ssize_t __recv_chk(int, void *, size_t, size_t, int);
extern ssize_t __recvfrom_chk(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
extern int close_range(unsigned, unsigned, int);
extern void closefrom(int);
/* Not from <sys/sendfile.h>, which maps one name onto the other under
 * _FILE_OFFSET_BITS=64: both symbols are hooked. */
extern ssize_t sendfile(int, int, off_t *, size_t);
extern ssize_t sendfile64(int, int, off64_t *, size_t);

/* The first call of @field: find the real function, put it in place of
 * this trampoline (two threads racing here store the same value), call it.
 * PARAMS is the parameter list, ARGS the names passed on. */
#define LAZY(ret_t, field, sym, fallback, PARAMS, ARGS)                                       \
	static ret_t lazy_##field PARAMS                                                    \
	{                                                                                     \
		ret_t(*fn) PARAMS = next_symbol(#sym, (void *)(sym), (void *)(fallback));   \
		atomic_store_explicit(&osh_real.field, fn, memory_order_relaxed);           \
		return fn ARGS;                                                             \
	}

LAZY(int, connect, connect, sys_connect, (int fd, const struct sockaddr *addr, socklen_t len),
     (fd, addr, len))
LAZY(int, close, close, sys_close, (int fd), (fd))
LAZY(ssize_t, write, write, sys_write, (int fd, const void *buf, size_t len), (fd, buf, len))
LAZY(ssize_t, writev, writev, sys_writev, (int fd, const struct iovec *iov, int iovcnt),
     (fd, iov, iovcnt))
LAZY(ssize_t, send, send, sys_send, (int fd, const void *buf, size_t len, int flags),
     (fd, buf, len, flags))
LAZY(ssize_t, sendto, sendto, sys_sendto,
     (int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
      socklen_t addrlen),
     (fd, buf, len, flags, addr, addrlen))
LAZY(ssize_t, sendmsg, sendmsg, sys_sendmsg, (int fd, const struct msghdr *msg, int flags),
     (fd, msg, flags))
LAZY(ssize_t, read, read, sys_read, (int fd, void *buf, size_t len), (fd, buf, len))
LAZY(ssize_t, readv, readv, sys_readv, (int fd, const struct iovec *iov, int iovcnt),
     (fd, iov, iovcnt))
LAZY(ssize_t, recv, recv, sys_recv, (int fd, void *buf, size_t len, int flags),
     (fd, buf, len, flags))
LAZY(ssize_t, recvfrom, recvfrom, sys_recvfrom,
     (int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *addrlen),
     (fd, buf, len, flags, addr, addrlen))
LAZY(ssize_t, recvmsg, recvmsg, sys_recvmsg, (int fd, struct msghdr *msg, int flags),
     (fd, msg, flags))
LAZY(ssize_t, read_chk, __read_chk, sys_read_chk,
     (int fd, void *buf, size_t len, size_t buflen), (fd, buf, len, buflen))
LAZY(ssize_t, recv_chk, __recv_chk, sys_recv_chk,
     (int fd, void *buf, size_t len, size_t buflen, int flags), (fd, buf, len, buflen, flags))
LAZY(ssize_t, recvfrom_chk, __recvfrom_chk, sys_recvfrom_chk,
     (int fd, void *buf, size_t len, size_t buflen, int flags, struct sockaddr *addr,
      socklen_t *addrlen),
     (fd, buf, len, buflen, flags, addr, addrlen))
LAZY(int, dup2, dup2, sys_dup2, (int oldfd, int newfd), (oldfd, newfd))
LAZY(int, dup3, dup3, sys_dup3, (int oldfd, int newfd, int flags), (oldfd, newfd, flags))
LAZY(int, close_range, close_range, sys_close_range, (unsigned first, unsigned last, int flags),
     (first, last, flags))
LAZY(void, closefrom, closefrom, sys_closefrom, (int lowfd), (lowfd))
LAZY(int, fclose, fclose, sys_fclose, (FILE *f), (f))
LAZY(int, accept, accept, sys_accept, (int fd, struct sockaddr *addr, socklen_t *len),
     (fd, addr, len))
LAZY(int, accept4, accept4, sys_accept4,
     (int fd, struct sockaddr *addr, socklen_t *len, int flags), (fd, addr, len, flags))
LAZY(int, shutdown, shutdown, sys_shutdown, (int fd, int how), (fd, how))
LAZY(int, dup, dup, sys_dup, (int fd), (fd))
LAZY(ssize_t, sendfile, sendfile, sys_sendfile,
     (int out_fd, int in_fd, off_t *offset, size_t count), (out_fd, in_fd, offset, count))
LAZY(ssize_t, sendfile64, sendfile64, sys_sendfile,
     (int out_fd, int in_fd, off_t *offset, size_t count), (out_fd, in_fd, offset, count))
LAZY(ssize_t, splice, splice, sys_splice,
     (int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len, unsigned int flags),
     (fd_in, off_in, fd_out, off_out, len, flags))
#undef LAZY

struct osh_real osh_real = {
	.connect = lazy_connect,
	.close = lazy_close,
	.write = lazy_write,
	.writev = lazy_writev,
	.send = lazy_send,
	.sendto = lazy_sendto,
	.sendmsg = lazy_sendmsg,
	.read = lazy_read,
	.readv = lazy_readv,
	.recv = lazy_recv,
	.recvfrom = lazy_recvfrom,
	.recvmsg = lazy_recvmsg,
	.read_chk = lazy_read_chk,
	.recv_chk = lazy_recv_chk,
	.recvfrom_chk = lazy_recvfrom_chk,
	.dup2 = lazy_dup2,
	.dup3 = lazy_dup3,
	.close_range = lazy_close_range,
	.closefrom = lazy_closefrom,
	.fclose = lazy_fclose,
	.accept = lazy_accept,
	.accept4 = lazy_accept4,
	.shutdown = lazy_shutdown,
	.dup = lazy_dup,
	.sendfile = lazy_sendfile,
	.sendfile64 = lazy_sendfile64,
	.splice = lazy_splice,
};
