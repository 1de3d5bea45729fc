/* What waking a thread whose vCPU is idle costs the thread that wakes it.
 *
 * In the server bench nginx's worker answers wrk, which waits in epoll on
 * the other vCPU; whenever wrk ran out of work, that vCPU halted, and the
 * worker's send has to wake it with an interrupt to the other vCPU. In a
 * guest that interrupt leaves the guest, and the sender pays for it in its
 * system time. This program prices one such wake-up from the waker's own
 * CPU clock: a write to an eventfd that a thread pinned to the other vCPU
 * waits on ("remote"), against the same write to an eventfd nobody waits on
 * ("none": the system call without a wake-up; its counter just grows). Each write is followed by
 * a spin of 50 us, so that the waiter is asleep and its vCPU idle again at
 * the next one.
 *
 *   wake_cost ITERATIONS WAKER_CPU OTHER_CPU
 *
 * prints "remote_us=... none_us=..." (the waker's CPU a round, the spin's
 * own cost taken out).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int waiter_fd;
static int waiter_cpu;

static double clock_s(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) != 0) {
		perror("sched_setaffinity");
		exit(1);
	}
}

static void *waiter(void *arg)
{
	uint64_t v;

	(void)arg;
	pin(waiter_cpu);
	while (read(waiter_fd, &v, sizeof(v)) == sizeof(v))
		;
	return NULL;
}

static void spin_50us(void)
{
	double until = clock_s(CLOCK_MONOTONIC) + 50e-6;

	while (clock_s(CLOCK_MONOTONIC) < until)
		;
}

/* The waker's CPU seconds for @n rounds of a write to @fd then the spin
 * (@fd < 0: the spin alone). */
static double rounds(int n, int fd)
{
	const uint64_t one = 1;
	double t0 = clock_s(CLOCK_THREAD_CPUTIME_ID);

	for (int i = 0; i < n; i++) {
		if (fd >= 0 && write(fd, &one, sizeof(one)) != sizeof(one))
			exit(1);
		spin_50us();
	}
	return clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
}

/* Per write, the spin taken out, with a waiter on @cpu. */
static double with_waiter(int n, int cpu, double spin)
{
	pthread_t t;
	double s;

	waiter_cpu = cpu;
	waiter_fd = eventfd(0, 0);
	if (waiter_fd < 0 || pthread_create(&t, NULL, waiter, NULL) != 0)
		exit(1);
	usleep(100000);	/* the waiter is pinned and asleep */
	s = rounds(n, waiter_fd);
	pthread_cancel(t);
	pthread_join(t, NULL);
	close(waiter_fd);
	return (s - spin) / n;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 20000;
	int me = argc > 2 ? atoi(argv[2]) : 1;
	int other = argc > 3 ? atoi(argv[3]) : 0;
	int lone = eventfd(0, 0);
	double spin, remote, none;

	if (n <= 0 || lone < 0)
		return 2;
	pin(me);
	spin = rounds(n, -1);
	remote = with_waiter(n, other, spin);
	none = (rounds(n, lone) - spin) / n;
	printf("remote_us=%.3f none_us=%.3f\n", remote * 1e6, none * 1e6);
	return 0;
}
