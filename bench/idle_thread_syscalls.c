/* Does a second, idle thread in a process make its system calls slower?
 * (The exporter thread makes every preloaded process that exports
 * multi-threaded: the kernel then takes file references per call instead
 * of borrowing them.) A loop of send, recv, fstat and pread, single-
 * threaded (mode 0), with an idle thread (1), and with an idle thread that
 * unshared its file table (2). Run pinned, interleaved:
 *
 *   for r in 1 2 3; do for m in 0 1 2; do taskset -c 0 idle_thread_syscalls $m; done; done
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int mode;

static void *idle(void *arg)
{
	if (mode == 2) {
		unshare(CLONE_FILES);
		syscall(SYS_close_range, 0, ~0U, 0);
	}
	for (;;)
		pause();
	return arg;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int sv[2], f, n = 300000;
	char buf[64];
	struct stat st;
	pthread_t t;
	double t0;

	mode = argc > 1 ? atoi(argv[1]) : 0;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || (f = open(argv[0], O_RDONLY)) < 0)
		return 1;
	if (mode) {
		pthread_create(&t, NULL, idle, NULL);
		usleep(10000);
	}
	t0 = now();
	for (int i = 0; i < n; i++) {
		if (send(sv[0], "x", 1, 0) != 1 || recv(sv[1], buf, sizeof(buf), 0) != 1 ||
		    fstat(f, &st) || pread(f, buf, 16, 0) != 16)
			return 1;
	}
	printf("mode=%d ns_per_iteration=%.1f\n", mode, (now() - t0) / n * 1e9);
	return 0;
}
