/* Hooks on the ways a process ends or replaces its image: exit(), _exit()
 * and _Exit(), main's return (through __libc_start_main) and the exec
 * family. Each ends this process's span (src/procspan.c) and, where the
 * exit handlers will not run, flushes what is queued before calling the
 * real function (docs/ARCHITECTURE.md, "Process spans").
 *
 * The real functions are resolved here rather than in src/real.c: nothing
 * in src/ calls them and none is on a hot path. Resolution is lazy, on the
 * first call of each (a constructor resolving them all would cost every
 * preloaded process, whether it ever execs or not).
 */
#include "buildconf.h"

#define _GNU_SOURCE
#include <alloca.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "exporter.h"
#include "hook.h"
#include "procspan.h"

extern char **environ;

typedef void (*exit_fn)(int status) __attribute__((noreturn));
typedef int (*execve_fn)(const char *path, char *const argv[], char *const envp[]);
typedef int (*execv_fn)(const char *path, char *const argv[]);
typedef int (*fexecve_fn)(int fd, char *const argv[], char *const envp[]);
typedef int (*execveat_fn)(int dirfd, const char *path, char *const argv[], char *const envp[],
			   int flags);
typedef int (*main_fn)(int argc, char **argv, char **envp);
typedef int (*start_main_fn)(main_fn main, int argc, char **argv, void (*init)(void),
			     void (*fini)(void), void (*rtld_fini)(void), void *stack_end);

/* dlsym(RTLD_NEXT, @name), cached in @slot; NULL when it cannot be found or
 * is ourselves. Racing threads store the same value. */
static void *next(void *_Atomic *slot, const char *name, void *self)
{
	void *p = atomic_load_explicit(slot, memory_order_acquire);

	if (p)
		return p;
	p = dlsym(RTLD_NEXT, name);
	if (p == self)
		p = NULL;
	if (p)
		atomic_store_explicit(slot, p, memory_order_release);
	return p;
}

#define REAL(type, name)                                                                           \
	({                                                                                         \
		static void *_Atomic slot_;                                                        \
		(type) next(&slot_, #name, (void *)(name));                                        \
	})

/* ---- ending the process span ------------------------------------------------ */

/* The image is about to be replaced without exit handlers: end the span
 * (the new image's own span becomes its child through TRACEPARENT, which
 * the constructor set) and flush. True when the exporter must resume
 * should the exec fail. */
static bool before_exec(void)
{
	bool flushed;

	if (!osh_enabled || !osh_guard_enter())
		return false;
	osh_procspan_end(OSH_PROC_EXEC, 0);
	flushed = osh_exporter_flush_sync();
	osh_guard_leave();
	return flushed;
}

/* The exec failed and the program goes on, without a process span: its
 * later spans still name the ended span as their parent. */
static int exec_failed(bool flushed, int ret)
{
	int err = errno;

	if (flushed)
		osh_exporter_resume();
	errno = err;
	return ret;
}

static void exit_status(int status, bool flush)
{
	if (!osh_enabled || !osh_guard_enter())
		return;
	osh_procspan_end(OSH_PROC_EXITED, status & 0xff);
	if (flush)
		osh_exporter_flush_sync();
	osh_guard_leave();
}

/* The real exit function; without one (it cannot happen with glibc) the
 * process still ends with @status. */
static void __attribute__((noreturn)) leave(exit_fn real, int status)
{
	if (real)
		real(status);
	syscall(SYS_exit_group, status);
	__builtin_unreachable();
}

/* exit(): ending the span here, before the exit handlers run, lets the
 * exporter's exit flush send it; that flush is registered when the exporter
 * starts, so it runs before the handlers of libraries the host set up
 * earlier (OpenSSL's cleanup, which an https export may share). */
OSH_EXPORT void exit(int status)
{
	exit_status(status, false);
	leave(REAL(exit_fn, exit), status);
}

/* _exit() skips the exit handlers: flush here, bounded by
 * OTELSHIM_EXIT_TIMEOUT_MS, and only in a process that runs its own
 * exporter (fork and vfork children return at once). It may be called from
 * a signal handler: the flush only waits on a futex with a deadline, and
 * ending the span allocates only if the exporter thread must be started
 * (a handler that interrupted one of our hooks finds the guard held and
 * goes straight through). */
OSH_EXPORT void _exit(int status)
{
	exit_status(status, true);
	leave(REAL(exit_fn, _exit), status);
}

OSH_EXPORT void _Exit(int status)
{
	exit_status(status, true);
	leave(REAL(exit_fn, _Exit), status);
}

/* ---- main's return value ---------------------------------------------------
 * After main returns, glibc passes its value to exit() from inside libc,
 * where the exit hook cannot see it. So the program's main is wrapped: our
 * __libc_start_main, called by the executable's _start, hands the real one
 * a main that records the status on the way out. It does so only when
 * there is a process span; otherwise the program's main goes through as
 * is. */

static main_fn host_main;

/* Not declared by any header. */
int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void), void (*fini)(void),
		      void (*rtld_fini)(void), void *stack_end);

/* Some glibc configurations pass main a fourth argument (the auxiliary
 * vector, MAIN_AUXVEC_ARG): whatever main declares and whether or not glibc
 * passed it, handing the fourth argument register along unchanged keeps the
 * call what it was. */
static int main_wrap(int argc, char **argv, char **envp, void *auxv)
{
	int (*m)(int, char **, char **, void *) =
		(int (*)(int, char **, char **, void *))(void (*)(void))host_main;
	int r = m(argc, argv, envp, auxv);

	exit_status(r, false);
	return r;
}

OSH_EXPORT int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void),
				 void (*fini)(void), void (*rtld_fini)(void), void *stack_end)
{
	start_main_fn real = REAL(start_main_fn, __libc_start_main);

	if (!real) {
		/* Cannot happen with glibc; the least wrong thing left. */
		exit(main(argc, argv, argv + argc + 1));
	}
	if (!osh_procspan_parent())
		return real(main, argc, argv, init, fini, rtld_fini, stack_end);
	host_main = main;
	return real((main_fn)(void (*)(void))main_wrap, argc, argv, init, fini, rtld_fini,
		    stack_end);
}

/* ---- the exec family ---------------------------------------------------------
 * glibc's execl*, execv* and fexecve reach the kernel through its internal
 * __execve, which no hook sees: each entry point is hooked. The variadic
 * ones collect their arguments as glibc does and call the real vector
 * form with the same meaning. */

OSH_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	execve_fn real = REAL(execve_fn, execve);
	bool flushed = before_exec();

	if (!real)
		return exec_failed(flushed, (int)syscall(SYS_execve, path, argv, envp));
	return exec_failed(flushed, real(path, argv, envp));
}

OSH_EXPORT int execv(const char *path, char *const argv[])
{
	execv_fn real = REAL(execv_fn, execv);
	bool flushed = before_exec();

	if (!real)
		return exec_failed(flushed, (int)syscall(SYS_execve, path, argv, environ));
	return exec_failed(flushed, real(path, argv));
}

OSH_EXPORT int execvp(const char *file, char *const argv[])
{
	execv_fn real = REAL(execv_fn, execvp);
	bool flushed = before_exec();

	if (!real) {
		errno = ENOSYS;
		return exec_failed(flushed, -1);
	}
	return exec_failed(flushed, real(file, argv));
}

OSH_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	execve_fn real = REAL(execve_fn, execvpe);
	bool flushed = before_exec();

	if (!real) {
		errno = ENOSYS;
		return exec_failed(flushed, -1);
	}
	return exec_failed(flushed, real(file, argv, envp));
}

OSH_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	fexecve_fn real = REAL(fexecve_fn, fexecve);
	bool flushed = before_exec();

	if (!real)
		return exec_failed(flushed,
				   (int)syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH));
	return exec_failed(flushed, real(fd, argv, envp));
}

OSH_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
			int flags)
{
	execveat_fn real = REAL(execveat_fn, execveat);
	bool flushed = before_exec();

	if (!real)
		return exec_failed(flushed,
				   (int)syscall(SYS_execveat, dirfd, path, argv, envp, flags));
	return exec_failed(flushed, real(dirfd, path, argv, envp, flags));
}

/* Count the arguments after @arg up to the NULL that ends them, as glibc
 * does: -1 (E2BIG) past INT_MAX. */
static long count_args(va_list ap)
{
	long n = 1;

	while (va_arg(ap, const char *)) {
		if (n == INT_MAX) {
			errno = E2BIG;
			return -1;
		}
		n++;
	}
	return n;
}

/* argv on the caller's stack (glibc's execl uses a VLA; alloca is the same
 * without -Wvla's objection): @arg, the @n - 1 pointers that follow it in
 * @ap, and the NULL. The caller starts and ends @ap. */
#define COLLECT_ARGV(argv, n, arg, ap)                                                             \
	do {                                                                                       \
		(argv) = alloca(((size_t)(n) + 1) * sizeof(char *));                               \
		(argv)[0] = (char *)(arg);                                                         \
		for (long i_ = 1; i_ <= (n); i_++)                                                 \
			(argv)[i_] = va_arg(ap, char *);                                           \
	} while (0)

OSH_EXPORT int execl(const char *path, const char *arg, ...)
{
	va_list ap;
	char **argv;
	long n;

	va_start(ap, arg);
	n = count_args(ap);
	va_end(ap);
	if (n < 0)
		return -1;
	va_start(ap, arg);
	COLLECT_ARGV(argv, n, arg, ap);
	va_end(ap);
	return execv(path, argv);
}

OSH_EXPORT int execlp(const char *file, const char *arg, ...)
{
	va_list ap;
	char **argv;
	long n;

	va_start(ap, arg);
	n = count_args(ap);
	va_end(ap);
	if (n < 0)
		return -1;
	va_start(ap, arg);
	COLLECT_ARGV(argv, n, arg, ap);
	va_end(ap);
	return execvp(file, argv);
}

/* The environment pointer follows the NULL that ends the arguments. */
OSH_EXPORT int execle(const char *path, const char *arg, ...)
{
	va_list ap;
	char **argv, **envp;
	long n;

	va_start(ap, arg);
	n = count_args(ap);
	va_end(ap);
	if (n < 0)
		return -1;
	va_start(ap, arg);
	COLLECT_ARGV(argv, n, arg, ap);
	envp = va_arg(ap, char **);
	va_end(ap);
	return execve(path, argv, envp);
}

/* ---- load --------------------------------------------------------------------
 * The process span belongs to the preloaded object, not to the core: the
 * launcher links the same core and must not start one of its own. */
__attribute__((constructor)) static void process_load(void)
{
	osh_init_ensure();
	if (!osh_guard_enter())
		return;
	osh_procspan_start();
	osh_guard_leave();
}
