/* A synthetic preload for the side-by-side server bench (bench/run.py
 * server_floor): it wraps the four calls nginx makes per keep-alive request
 * (recv, writev, sendfile64, close) and, after each real call, does one
 * fixed amount of made-up work chosen by OSH_FLOOR at start-up. Set against
 * nginx alone it prices each kind of work on this machine, where the code
 * and data a hook touches right after a system call are cold:
 *
 *   forward      pass straight through (what interposing costs)
 *   log          what any tracer must do at least: copy up to 512 bytes of
 *                each read and of each head write into a per-fd buffer, read
 *                the clock once per call, with an idle second thread alive
 *   log-noclock  the same without the clock reads
 *   log-nothread the same without the second thread
 *   data64       touch 64 distinct data lines (4 KiB) after each call
 *   code64       call 64 small functions, each on its own code line
 *   branch64     run 64 never-taken conditional branches (11 code lines)
 *
 * It is not a tracer: it keeps nothing and sends nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum mode { FORWARD, LOG, LOG_NOCLOCK, LOG_NOTHREAD, DATA64, CODE64, BRANCH64 };

static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_sendfile64)(int, int, off_t *, size_t);
static int (*real_close)(int);
static enum mode mode;

/* ---- log: per-fd byte buffers ------------------------------------------ */

enum { SLOTS = 1024, LOG_BYTES = 1024, COPY_MAX = 512 };

struct slot {
	uint32_t used;
	uint32_t calls;
	uint64_t stamps[4];
	char bytes[LOG_BYTES];
};

static struct slot slots[SLOTS];

static uint64_t stamp(void)
{
	struct timespec ts;

	if (mode == LOG_NOCLOCK)
		return 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void log_call(int fd, const void *p, size_t n)
{
	struct slot *s;

	if ((unsigned)fd >= SLOTS)
		return;
	s = &slots[fd];
	if (n > COPY_MAX)
		n = COPY_MAX;
	if (s->used + n > LOG_BYTES)
		s->used = 0;	/* as if a consumer had taken it */
	if (p)
		memcpy(s->bytes + s->used, p, n);
	s->used += (uint32_t)n;
	s->stamps[s->calls++ & 3] = stamp();
}

/* ---- data64, code64, branch64 ----------------------------------------- */

static volatile char lines[64 * 64];
static volatile int sink;

static void touch_data(void)
{
	for (int i = 0; i < 64; i++)
		lines[i * 64]++;
}

/* 64 functions with distinct bodies (so identical-code folding keeps them
 * apart), each aligned to a line of its own. */
#define F(n)                                                                  \
	__attribute__((noinline, aligned(64))) static void f##n(void)         \
	{                                                                     \
		sink += n + 1;                                                \
	}
#define F8(a) F(a##0) F(a##1) F(a##2) F(a##3) F(a##4) F(a##5) F(a##6) F(a##7)
F8(1) F8(2) F8(3) F8(4) F8(5) F8(6) F8(7) F8(8)
#define C(n) f##n();
#define C8(a) C(a##0) C(a##1) C(a##2) C(a##3) C(a##4) C(a##5) C(a##6) C(a##7)

static void touch_code(void)
{
	C8(1) C8(2) C8(3) C8(4) C8(5) C8(6) C8(7) C8(8)
}

static volatile int zeros[16];

/* An asm statement in each arm keeps the compiler from turning the branch
 * into a conditional move. */
#define B(i) if (__builtin_expect(v[(i) & 15] > 5, 0)) __asm__ volatile("add $" #i ", %0" : "+r"(s));
#define B8(a) B(a##0) B(a##1) B(a##2) B(a##3) B(a##4) B(a##5) B(a##6) B(a##7)

__attribute__((noinline)) static int run_branches(void)
{
	int v[16];
	int s = 0;

	for (int i = 0; i < 16; i++)
		v[i] = zeros[i];
	B8(1) B8(2) B8(3) B8(4) B8(5) B8(6) B8(7) B8(8)
	return s;
}

/* ---- after each call ----------------------------------------------------- */

static void after(int fd, const void *p, size_t n)
{
	switch (mode) {
	case FORWARD:
		break;
	case LOG:
	case LOG_NOCLOCK:
	case LOG_NOTHREAD:
		log_call(fd, p, n);
		break;
	case DATA64:
		touch_data();
		break;
	case CODE64:
		touch_code();
		break;
	case BRANCH64:
		sink = run_branches();
		break;
	}
}

EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	ssize_t ret = real_recv(fd, buf, len, flags);
	int err = errno;

	if (ret > 0)
		after(fd, buf, (size_t)ret);
	errno = err;
	return ret;
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	ssize_t ret = real_writev(fd, iov, iovcnt);
	int err = errno;

	if (ret > 0 && iovcnt > 0)
		after(fd, iov[0].iov_base, iov[0].iov_len);
	errno = err;
	return ret;
}

EXPORT ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
{
	ssize_t ret = real_sendfile64(out_fd, in_fd, offset, count);
	int err = errno;

	if (ret > 0)
		after(out_fd, NULL, 0);
	errno = err;
	return ret;
}

EXPORT int close(int fd)
{
	if (mode != FORWARD && (unsigned)fd < SLOTS)
		slots[fd].used = 0;
	return real_close(fd);
}

static void *sleep_forever(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

__attribute__((constructor)) static void floor_init(void)
{
	static const char *const names[] = { "forward", "log", "log-noclock", "log-nothread",
					     "data64", "code64", "branch64" };
	const char *want = getenv("OSH_FLOOR");

	real_recv = (ssize_t (*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
	real_writev = (ssize_t (*)(int, const struct iovec *, int))dlsym(RTLD_NEXT, "writev");
	real_sendfile64 = (ssize_t (*)(int, int, off_t *, size_t))dlsym(RTLD_NEXT, "sendfile64");
	real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
	for (size_t i = 0; want && i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(want, names[i]) == 0)
			mode = (enum mode)i;
	if (mode == LOG || mode == LOG_NOCLOCK) {
		pthread_t t;

		if (pthread_create(&t, NULL, sleep_forever, NULL) == 0)
			pthread_detach(t);
	}
}
