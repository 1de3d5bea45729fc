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

struct osh_real osh_real;
bool osh_real_ready;

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
 * why this runs once and never on a hot path. */
static void *next_symbol(const char *name, void *self, void *fallback)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p || p == self)
		return fallback;
	return p;
}

/* Our own hooks, to reject a lookup that resolves to ourselves. */
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

static void resolve(void)
{
	struct osh_real r;
	int saved = errno;

#define RESOLVE(field, name, fb) \
	r.field = next_symbol(#name, (void *)(name), (void *)(fb))
	RESOLVE(connect, connect, sys_connect);
	RESOLVE(close, close, sys_close);
	RESOLVE(write, write, sys_write);
	RESOLVE(writev, writev, sys_writev);
	RESOLVE(send, send, sys_send);
	RESOLVE(sendto, sendto, sys_sendto);
	RESOLVE(sendmsg, sendmsg, sys_sendmsg);
	RESOLVE(read, read, sys_read);
	RESOLVE(readv, readv, sys_readv);
	RESOLVE(recv, recv, sys_recv);
	RESOLVE(recvfrom, recvfrom, sys_recvfrom);
	RESOLVE(recvmsg, recvmsg, sys_recvmsg);
	RESOLVE(read_chk, __read_chk, sys_read_chk);
	RESOLVE(recv_chk, __recv_chk, sys_recv_chk);
	RESOLVE(recvfrom_chk, __recvfrom_chk, sys_recvfrom_chk);
	RESOLVE(dup2, dup2, sys_dup2);
	RESOLVE(dup3, dup3, sys_dup3);
	RESOLVE(close_range, close_range, sys_close_range);
	RESOLVE(closefrom, closefrom, sys_closefrom);
	RESOLVE(fclose, fclose, sys_fclose);
	RESOLVE(accept, accept, sys_accept);
	RESOLVE(accept4, accept4, sys_accept4);
	RESOLVE(shutdown, shutdown, sys_shutdown);
	RESOLVE(dup, dup, sys_dup);
	RESOLVE(sendfile, sendfile, sys_sendfile);
	RESOLVE(sendfile64, sendfile64, sys_sendfile);
	RESOLVE(splice, splice, sys_splice);
#undef RESOLVE
	osh_real = r;
	errno = saved;
}

void osh_real_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	if (__atomic_load_n(&osh_real_ready, __ATOMIC_ACQUIRE))
		return;
	pthread_once(&once, resolve);
	__atomic_store_n(&osh_real_ready, true, __ATOMIC_RELEASE);
}
