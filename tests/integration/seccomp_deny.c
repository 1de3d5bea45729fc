/* seccomp_deny NAME[,NAME...] -- PROGRAM [ARG...]
 *
 * Runs PROGRAM under a seccomp filter that fails the named system calls
 * with EPERM, as a container policy does for calls it does not know
 * (Docker's before close_range was added to it). The filter is inherited
 * by every thread, the shim's exporter included. Names known: close_range
 * (add others to `known` as tests need them). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#define NATIVE_ARCH 0 /* unknown here: every call is taken as native */
#endif

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static const struct {
	const char *name;
	int nr;
} known[] = {
	{ "close_range", SYS_close_range },
};

#define MAX_DENIED 8

int main(int argc, char **argv)
{
	struct sock_filter prog[4 + 2 * MAX_DENIED + 1];
	struct sock_fprog fprog;
	char names[256], *save = NULL;
	int n = 0, denied = 0;

	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		fprintf(stderr, "usage: seccomp_deny NAME[,NAME...] -- PROGRAM [ARG...]\n");
		return 2;
	}
	snprintf(names, sizeof(names), "%s", argv[1]);
	/* Another architecture's calls (x32, i386 on x86_64) pass untouched:
	 * the programs under test are native. */
	if (NATIVE_ARCH) {
		prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
							 offsetof(struct seccomp_data, arch));
		prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1,
							 0);
		prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	}
	prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						 offsetof(struct seccomp_data, nr));
	for (char *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
		int nr = -1;

		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			if (strcmp(known[i].name, name) == 0)
				nr = known[i].nr;
		if (nr < 0 || denied == MAX_DENIED) {
			fprintf(stderr, "seccomp_deny: cannot deny %s\n", name);
			return 2;
		}
		prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1);
		prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
		denied++;
	}
	prog[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	fprog.len = (unsigned short)n;
	fprog.filter = prog;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0) {
		perror("seccomp_deny");
		return 2;
	}
	execvp(argv[3], argv + 3);
	perror("seccomp_deny: exec");
	return 127;
}
