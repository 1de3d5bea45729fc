/* Shared by the hook files: the export attribute, and the includes every
 * hook needs. A hook is: guard, fast path for untracked fds, one call into
 * src/, the real call, errno restored. */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "conn.h"
#include "guard.h"
#include "http_client.h"
#include "init.h"
#include "real.h"

#define OSH_EXPORT __attribute__((visibility("default")))

/* glibc's _FORTIFY_SOURCE entry points: read(), recv() and recvfrom() on a
 * buffer of known size are compiled into these. Not declared by any header
 * unless fortification is on, so declare them here. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *addrlen);
