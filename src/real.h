/* The real libc entry points behind our hooks, resolved once.
 *
 * Code in src/ never calls a hooked function by name: it calls
 * osh_real.write(...) so that the shim neither traces nor deadlocks on itself.
 * osh_real_init() runs from our constructor, or from whichever hook runs first
 * (another library's constructor may call connect() before ours runs). A
 * symbol that dlsym(RTLD_NEXT) cannot find, or that resolves to our own hook,
 * falls back to a raw syscall wrapper.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

struct osh_real {
	int (*connect)(int fd, const struct sockaddr *addr, socklen_t len);
	int (*close)(int fd);
	ssize_t (*write)(int fd, const void *buf, size_t len);
	ssize_t (*writev)(int fd, const struct iovec *iov, int iovcnt);
	ssize_t (*send)(int fd, const void *buf, size_t len, int flags);
	ssize_t (*sendto)(int fd, const void *buf, size_t len, int flags,
			  const struct sockaddr *addr, socklen_t addrlen);
	ssize_t (*sendmsg)(int fd, const struct msghdr *msg, int flags);
	ssize_t (*read)(int fd, void *buf, size_t len);
	ssize_t (*readv)(int fd, const struct iovec *iov, int iovcnt);
	ssize_t (*recv)(int fd, void *buf, size_t len, int flags);
	ssize_t (*recvfrom)(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
			    socklen_t *addrlen);
	ssize_t (*recvmsg)(int fd, struct msghdr *msg, int flags);
	ssize_t (*read_chk)(int fd, void *buf, size_t len, size_t buflen);
	ssize_t (*recv_chk)(int fd, void *buf, size_t len, size_t buflen, int flags);
	ssize_t (*recvfrom_chk)(int fd, void *buf, size_t len, size_t buflen, int flags,
				struct sockaddr *addr, socklen_t *addrlen);
	int (*dup2)(int oldfd, int newfd);
	int (*dup3)(int oldfd, int newfd, int flags);
	int (*close_range)(unsigned first, unsigned last, int flags);
	void (*closefrom)(int lowfd);
	int (*fclose)(FILE *f);
	int (*accept)(int fd, struct sockaddr *addr, socklen_t *len);
	int (*accept4)(int fd, struct sockaddr *addr, socklen_t *len, int flags);
	int (*shutdown)(int fd, int how);
	int (*dup)(int fd);
	ssize_t (*sendfile)(int out_fd, int in_fd, off_t *offset, size_t count);
	ssize_t (*sendfile64)(int out_fd, int in_fd, off_t *offset, size_t count);
	ssize_t (*splice)(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len,
			  unsigned int flags);
};

/* Filled by osh_real_init(); every member is non-NULL afterwards. */
extern struct osh_real osh_real;

/* Idempotent and thread-safe; cheap after the first call (one load). */
void osh_real_init(void);

static inline const struct osh_real *osh_real_get(void)
{
	extern bool osh_real_ready;
	if (__builtin_expect(!__atomic_load_n(&osh_real_ready, __ATOMIC_ACQUIRE), 0))
		osh_real_init();
	return &osh_real;
}
