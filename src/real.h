/* The real libc entry points behind our hooks, each resolved at its first
 * call.
 *
 * Code in src/ never calls a hooked function by name: it calls
 * osh_real_get()->write(...) so that the shim neither traces nor deadlocks
 * on itself. Every member starts out pointing at a small trampoline that
 * looks the symbol up with dlsym(RTLD_NEXT), stores what it found in place
 * of itself and makes the call: a process pays one lookup (~900
 * instructions) per function it actually uses, not one per hooked function
 * at load (/bin/true calls none of them). A symbol dlsym cannot find, or
 * one that resolves to our own hook, falls back to a raw syscall wrapper.
 *
 * Members are _Atomic: a call reads one with a plain load (x86), while a
 * trampoline in another thread may be replacing it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

struct osh_real {
	int (*_Atomic connect)(int fd, const struct sockaddr *addr, socklen_t len);
	int (*_Atomic close)(int fd);
	ssize_t (*_Atomic write)(int fd, const void *buf, size_t len);
	ssize_t (*_Atomic writev)(int fd, const struct iovec *iov, int iovcnt);
	ssize_t (*_Atomic send)(int fd, const void *buf, size_t len, int flags);
	ssize_t (*_Atomic sendto)(int fd, const void *buf, size_t len, int flags,
			  const struct sockaddr *addr, socklen_t addrlen);
	ssize_t (*_Atomic sendmsg)(int fd, const struct msghdr *msg, int flags);
	ssize_t (*_Atomic read)(int fd, void *buf, size_t len);
	ssize_t (*_Atomic readv)(int fd, const struct iovec *iov, int iovcnt);
	ssize_t (*_Atomic recv)(int fd, void *buf, size_t len, int flags);
	ssize_t (*_Atomic recvfrom)(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
			    socklen_t *addrlen);
	ssize_t (*_Atomic recvmsg)(int fd, struct msghdr *msg, int flags);
	ssize_t (*_Atomic read_chk)(int fd, void *buf, size_t len, size_t buflen);
	ssize_t (*_Atomic recv_chk)(int fd, void *buf, size_t len, size_t buflen, int flags);
	ssize_t (*_Atomic recvfrom_chk)(int fd, void *buf, size_t len, size_t buflen, int flags,
				struct sockaddr *addr, socklen_t *addrlen);
	int (*_Atomic dup2)(int oldfd, int newfd);
	int (*_Atomic dup3)(int oldfd, int newfd, int flags);
	int (*_Atomic close_range)(unsigned first, unsigned last, int flags);
	void (*_Atomic closefrom)(int lowfd);
	int (*_Atomic fclose)(FILE *f);
	int (*_Atomic accept)(int fd, struct sockaddr *addr, socklen_t *len);
	int (*_Atomic accept4)(int fd, struct sockaddr *addr, socklen_t *len, int flags);
	int (*_Atomic shutdown)(int fd, int how);
	int (*_Atomic dup)(int fd);
	ssize_t (*_Atomic sendfile)(int out_fd, int in_fd, off_t *offset, size_t count);
	ssize_t (*_Atomic sendfile64)(int out_fd, int in_fd, off_t *offset, size_t count);
	ssize_t (*_Atomic splice)(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
			  unsigned int flags);
};

/* Never NULL members: a trampoline until the first call, then libc's. */
extern struct osh_real osh_real;

static inline const struct osh_real *osh_real_get(void)
{
	return &osh_real;
}
