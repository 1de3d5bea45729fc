/* Test library, preloaded AFTER libotelshim.so: the shim's "real" write
 * functions resolve to these, which accept at most OTELSHIM_TEST_MAX_WRITE
 * bytes per call on sockets, like a kernel with a nearly full send buffer.
 * That forces every split of the shim's spliced writes, including calls that
 * carry nothing but injected bytes. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static size_t cap(int fd)
{
	const char *v = getenv("OTELSHIM_TEST_MAX_WRITE");
	int type;
	socklen_t len = sizeof(type);

	if (!v || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
		return (size_t)-1;
	return (size_t)atol(v);
}

/* Copy @iov truncated to @max bytes into @out (at most 64 entries). */
static int clip(const struct iovec *iov, int cnt, size_t max, struct iovec *out)
{
	int n = 0;

	for (int i = 0; i < cnt && n < 64 && max > 0; i++) {
		out[n] = iov[i];
		if (out[n].iov_len > max)
			out[n].iov_len = max;
		max -= out[n].iov_len;
		n++;
	}
	return n;
}

__attribute__((visibility("default"))) ssize_t write(int fd, const void *buf, size_t len)
{
	ssize_t (*next)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");
	size_t c = cap(fd);

	return next(fd, buf, len < c ? len : c);
}

__attribute__((visibility("default"))) ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	ssize_t (*next)(int, const struct iovec *, int) = dlsym(RTLD_NEXT, "writev");
	struct iovec v[64];
	size_t c = cap(fd);

	if (c == (size_t)-1)
		return next(fd, iov, cnt);
	return next(fd, v, clip(iov, cnt, c, v));
}

__attribute__((visibility("default"))) ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	ssize_t (*next)(int, const void *, size_t, int) = dlsym(RTLD_NEXT, "send");
	size_t c = cap(fd);

	return next(fd, buf, len < c ? len : c, flags);
}

__attribute__((visibility("default"))) ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	ssize_t (*next)(int, const struct msghdr *, int) = dlsym(RTLD_NEXT, "sendmsg");
	struct iovec v[64];
	struct msghdr m = *msg;
	size_t c = cap(fd);

	if (c == (size_t)-1)
		return next(fd, msg, flags);
	m.msg_iov = v;
	m.msg_iovlen = (size_t)clip(msg->msg_iov, (int)msg->msg_iovlen, c, v);
	return next(fd, &m, flags);
}
