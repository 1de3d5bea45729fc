/* otelshim-launch: the root span of a command run by otelshim-run.
 *
 *   otelshim-launch [--preload LIST] -- CMD [ARGS...]
 *
 * Runs CMD as a child with LD_PRELOAD=LIST, TRACEPARENT naming this root
 * span and OTELSHIM_PROCESS_SPANS=true (unless the user set it), waits for
 * it, and records the span "exec {CMD}" (kind INTERNAL, process attributes,
 * the exit code) as a child of an existing TRACEPARENT, if any. The
 * command's stdin, stdout and stderr are ours; we print nothing of our own
 * except when the command cannot be started, and leave with the command's
 * status: its exit code, or the signal that killed it raised on ourselves.
 * SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to us are passed on to it.
 *
 * It links the shim's core and is never preloaded itself (otelshim-run
 * keeps libotelshim.so out of its LD_PRELOAD): its own export is not traced.
 * It sits next to libotelshim.so, in the build tree and installed, so the
 * OTLP module is found beside it.
 */
#include "buildconf.h"

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "exporter.h"
#include "init.h"
#include "procspan.h"
#include "propagation.h"
#include "resource.h"
#include "span.h"

extern char **environ;

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
static volatile pid_t child;

/* Pass a signal someone sent us on to the command. One the terminal sent
 * to the whole foreground group (SI_KERNEL) reached the command already. */
static void forward(int sig, siginfo_t *si, void *uctx)
{
	int err = errno;

	(void)uctx;
	if (si->si_code != SI_KERNEL && child > 0)
		kill(child, sig);
	errno = err;
}

static void usage(void)
{
	static const char msg[] = "usage: otelshim-launch [--preload LIST] -- CMD [ARGS...]\n";

	(void)!write(2, msg, sizeof(msg) - 1);
	exit(2);
}

/* Is @entry ("NAME=value") the variable @name? */
static bool is_var(const char *entry, const char *name)
{
	size_t n = strlen(name);

	return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static char *make_var(const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	char *s = malloc(nl + vl + 2);

	if (!s)
		return NULL;
	memcpy(s, name, nl);
	s[nl] = '=';
	memcpy(s + nl + 1, value, vl + 1);
	return s;
}

/* The command's environment: ours, with TRACEPARENT naming @root (unless
 * propagation is off), LD_PRELOAD = @preload (when given) and
 * OTELSHIM_PROCESS_SPANS=true unless the user chose a value. */
static char **child_env(const struct osh_procspan *root, const char *preload)
{
	const char *ps = getenv("OTELSHIM_PROCESS_SPANS");
	bool set_tp = osh_enabled && osh_cfg.propagate_tracecontext;
	bool set_ps = !ps || !*ps;
	char tp[OSH_TRACEPARENT_LEN + 1];
	size_t n = 0, k = 0;
	char **env;

	while (environ && environ[n])
		n++;
	env = calloc(n + 4, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if ((set_tp && is_var(environ[i], "TRACEPARENT")) ||
		    (preload && is_var(environ[i], "LD_PRELOAD")) ||
		    (set_ps && is_var(environ[i], "OTELSHIM_PROCESS_SPANS")))
			continue;
		env[k++] = environ[i];
	}
	if (set_tp) {
		osh_procspan_traceparent(root, tp);
		env[k++] = make_var("TRACEPARENT", tp);
	}
	if (set_ps)
		env[k++] = make_var("OTELSHIM_PROCESS_SPANS", "true");
	if (preload)
		env[k++] = make_var("LD_PRELOAD", preload);
	for (size_t i = 0; i < k; i++) {
		if (!env[i])
			return NULL;
	}
	env[k] = NULL;
	return env;
}

/* The OTLP module lives beside us. The loader finds it with dladdr(), which
 * names the main program by its argv[0]: resolve our real path instead. */
static void point_at_module(void)
{
	char path[PATH_MAX];
	ssize_t n;
	char *slash;

	if (getenv("OTELSHIM_OTLP_MODULE"))
		return;
	n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	if (n <= 0)
		return;
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (!slash || (size_t)(slash - path) + 1 + sizeof(OSH_OTLP_MODULE) > sizeof(path))
		return;
	memcpy(slash + 1, OSH_OTLP_MODULE, sizeof(OSH_OTLP_MODULE));
	if (access(path, R_OK) == 0)
		setenv("OTELSHIM_OTLP_MODULE", path, 1);
}

/* What the resource says: the command, not us. @pid 0: it never ran. */
static struct osh_process_info proc_info;

static void describe_child(struct osh_procspan *root, pid_t pid)
{
	char link[64];
	ssize_t n = 0;
	const char *base;

	osh_resource_probe(&proc_info);
	proc_info.pid = pid;
	if (pid > 0) {
		snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
		/* posix_spawn returns once the child has exec'ed: this is its
		 * image unless it already exited. */
		n = readlink(link, proc_info.exe_path, sizeof(proc_info.exe_path) - 1);
	}
	proc_info.exe_path[n > 0 ? n : 0] = '\0';
	base = strrchr(proc_info.exe_path, '/');
	base = base ? base + 1 : root->command;
	if (strrchr(base, '/'))
		base = strrchr(base, '/') + 1;
	snprintf(proc_info.exe_name, sizeof(proc_info.exe_name), "%.255s", base);
	snprintf(proc_info.command, sizeof(proc_info.command), "%s", root->command);
	snprintf(root->exe_name, sizeof(root->exe_name), "%s", proc_info.exe_name);
	root->pid = pid;
	osh_exporter_set_process(&proc_info);
}

static void record(struct osh_procspan *root, enum osh_proc_end how, int code)
{
	struct osh_span *rec;

	if (!osh_procspan_sampled(root) || osh_cfg.exporter == OSH_EXPORTER_NONE)
		return;
	rec = osh_span_create();
	if (!rec)
		return;
	osh_procspan_fill(rec, root, osh_env_ctx.tracestate, osh_env_ctx.tracestate_len, how, code,
			  osh_clock_realtime_ns());
	osh_exporter_submit(rec);
	osh_exporter_shutdown();
}

/* Leave as the command did: its exit code, or its signal raised on
 * ourselves (without a core file of our own). */
static void leave(int status)
{
	int sig;
	sigset_t set;
	struct rlimit no_core = {0, 0};

	if (WIFEXITED(status))
		exit(WEXITSTATUS(status));
	sig = WTERMSIG(status);
	setrlimit(RLIMIT_CORE, &no_core);
	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
	/* A signal whose default is not to terminate cannot have killed it. */
	exit(128 + sig);
}

int main(int argc, char **argv)
{
	const char *preload = NULL;
	struct osh_procspan root = {0};
	posix_spawnattr_t attr;
	struct sigaction sa = {0};
	sigset_t fwd, old;
	char **env, **cmd;
	pid_t pid;
	int i, err, status;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--preload") == 0 && i + 1 < argc) {
			preload = argv[++i];
		} else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else {
			usage();
		}
	}
	if (i >= argc)
		usage();
	cmd = argv + i;

	osh_init_ensure();
	osh_procspan_begin(&root, &osh_env_ctx.parent, osh_cfg.sampler, osh_cfg.sampler_ratio);
	root.parent_pid = getpid();
	snprintf(root.command, sizeof(root.command), "%s", cmd[0]);

	env = child_env(&root, preload);
	if (!env) {
		fprintf(stderr, "otelshim-run: out of memory\n");
		return 127;
	}
	if (!osh_enabled) {
		/* OTEL_SDK_DISABLED: nothing to record, no reason to stay. */
		execvpe(cmd[0], cmd, env);
		fprintf(stderr, "otelshim-run: %s: %s\n", cmd[0], strerror(errno));
		return errno == ENOENT ? 127 : 126;
	}
	point_at_module();

	/* Handlers in place before the child exists, and the child's pid known
	 * before they can run: block them across the spawn. The child gets our
	 * original mask; exec resets the handlers. */
	sigemptyset(&fwd);
	for (size_t k = 0; k < sizeof(forwarded) / sizeof(forwarded[0]); k++)
		sigaddset(&fwd, forwarded[k]);
	sigprocmask(SIG_BLOCK, &fwd, &old);
	sa.sa_sigaction = forward;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigfillset(&sa.sa_mask);
	for (size_t k = 0; k < sizeof(forwarded) / sizeof(forwarded[0]); k++)
		sigaction(forwarded[k], &sa, NULL);

	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &old);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	root.start_ns = osh_clock_realtime_ns();
	err = posix_spawnp(&pid, cmd[0], NULL, &attr, cmd, env);
	posix_spawnattr_destroy(&attr);
	if (err) {
		sigprocmask(SIG_SETMASK, &old, NULL);
		/* The shell's words and codes: 127 not found, 126 not runnable. */
		fprintf(stderr, "otelshim-run: %s: %s\n", cmd[0], strerror(err));
		describe_child(&root, 0);
		record(&root, OSH_PROC_START_FAILED, err);
		return err == ENOENT ? 127 : 126;
	}
	child = pid;
	sigprocmask(SIG_SETMASK, &old, NULL);
	describe_child(&root, pid);

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			status = 127 << 8; /* cannot happen: our own child */
			break;
		}
	}
	child = 0;
	if (WIFEXITED(status))
		record(&root, OSH_PROC_EXITED, WEXITSTATUS(status));
	else
		record(&root, OSH_PROC_SIGNALED, WTERMSIG(status));
	leave(status);
	return 127;
}
