/* Process spans: identity and sampling, the TRACEPARENT handed to children,
 * the record, OTELSHIM_PROCESS_SPANS, and this process's own span (start,
 * environment, end once, never in a fork child, the on_exit fallback). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "exporter.h"
#include "ids.h"
#include "init.h"
#include "procspan.h"
#include "propagation.h"
#include "span.h"

#define TRACE_HEX  "4bf92f3577b34da6a3ce929d0e0e4736"
#define PARENT_HEX "00f067aa0ba902b7"
#define TP_SAMPLED "00-" TRACE_HEX "-" PARENT_HEX "-01"

static const uint8_t zero16[16];

/* ---- helpers ---- */

static struct osh_trace_ctx parse_tp(const char *tp)
{
	struct osh_trace_ctx c = {0};

	cr_assert(osh_traceparent_parse(tp, strlen(tp), &c), "bad test traceparent %s", tp);
	return c;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	osh_hex_encode(b, n, out);
	out[2 * n] = '\0';
}

static const struct osh_attr *attr(const struct osh_span *s, const char *key)
{
	return osh_span_find(s, key);
}

static void assert_str_attr(const struct osh_span *s, const char *key, const char *want)
{
	const struct osh_attr *a = attr(s, key);

	cr_assert(a, "missing %s", key);
	cr_assert_eq(a->type, OSH_ATTR_STRING);
	cr_assert_eq(a->v.s.len, strlen(want), "%s: length %u, want \"%s\"", key, a->v.s.len, want);
	cr_assert(memcmp(osh_span_str(s, a->v.s), want, a->v.s.len) == 0, "%s differs", key);
}

static void assert_int_attr(const struct osh_span *s, const char *key, int64_t want)
{
	const struct osh_attr *a = attr(s, key);

	cr_assert(a, "missing %s", key);
	cr_assert_eq(a->type, OSH_ATTR_INT);
	cr_assert_eq(a->v.i, want, "%s = %lld, want %lld", key, (long long)a->v.i, (long long)want);
}

static void assert_name(const struct osh_span *s, const char *want)
{
	cr_assert_eq(s->name.len, strlen(want), "name length %u, want \"%s\"", s->name.len, want);
	cr_assert(memcmp(osh_span_str(s, s->name), want, s->name.len) == 0);
}

static void assert_status_msg(const struct osh_span *s, const char *want)
{
	cr_assert_eq(s->status_message.len, strlen(want));
	cr_assert(memcmp(osh_span_str(s, s->status_message), want, s->status_message.len) == 0,
		  "status message %.*s, want %s", s->status_message.len,
		  osh_span_str(s, s->status_message), want);
}

/* A process span with facts filled in, begun under @parent (or none). */
static struct osh_procspan sample_ps(const char *parent_tp)
{
	struct osh_procspan ps = {0};
	struct osh_trace_ctx p;

	if (parent_tp)
		p = parse_tp(parent_tp);
	osh_procspan_begin(&ps, parent_tp ? &p : NULL, OSH_SAMPLER_PARENTBASED_ALWAYS_ON, 1.0);
	ps.start_ns = 1000;
	ps.pid = 42;
	ps.parent_pid = 7;
	strcpy(ps.command, "/usr/bin/curl");
	return ps;
}

static struct osh_span *filled(const struct osh_procspan *ps, enum osh_proc_end how, int code)
{
	struct osh_span *rec = osh_span_create();

	cr_assert(rec);
	osh_procspan_fill(rec, ps, NULL, 0, how, code, 5000);
	return rec;
}

/* ---- identity and sampling ---- */

Test(begin, root_gets_a_new_trace)
{
	struct osh_procspan ps = {0};

	osh_procspan_begin(&ps, NULL, OSH_SAMPLER_PARENTBASED_ALWAYS_ON, 1.0);
	cr_assert(ps.ctx.valid);
	cr_assert_not(ps.ctx.remote);
	cr_assert_not(ps.parent.valid);
	cr_assert(memcmp(ps.ctx.trace_id, zero16, 16) != 0);
	cr_assert(memcmp(ps.ctx.span_id, zero16, 8) != 0);
	cr_assert(osh_procspan_sampled(&ps));
}

Test(begin, child_keeps_the_parents_trace_and_random_flag)
{
	struct osh_trace_ctx p = parse_tp("00-" TRACE_HEX "-" PARENT_HEX "-03");
	struct osh_procspan ps = {0};

	osh_procspan_begin(&ps, &p, OSH_SAMPLER_PARENTBASED_ALWAYS_ON, 1.0);
	cr_assert(memcmp(ps.ctx.trace_id, p.trace_id, 16) == 0);
	cr_assert(memcmp(ps.ctx.span_id, p.span_id, 8) != 0);
	cr_assert(ps.parent.valid);
	cr_assert(ps.parent.remote);
	cr_assert(memcmp(ps.parent.span_id, p.span_id, 8) == 0);
	cr_assert_eq(ps.ctx.flags, OSH_FLAG_SAMPLED | OSH_FLAG_RANDOM);
}

Test(begin, an_invalid_parent_is_no_parent)
{
	struct osh_trace_ctx p = parse_tp(TP_SAMPLED);
	struct osh_procspan ps = {0};

	p.valid = false;
	osh_procspan_begin(&ps, &p, OSH_SAMPLER_PARENTBASED_ALWAYS_ON, 1.0);
	cr_assert_not(ps.parent.valid);
	cr_assert(memcmp(ps.ctx.trace_id, p.trace_id, 16) != 0);
}

Test(begin, sampling_table)
{
	static const struct {
		enum osh_sampler_kind sampler;
		const char *parent; /* NULL: root */
		bool sampled;
	} cases[] = {
		{OSH_SAMPLER_PARENTBASED_ALWAYS_ON, NULL, true},
		{OSH_SAMPLER_PARENTBASED_ALWAYS_ON, "00-" TRACE_HEX "-" PARENT_HEX "-01", true},
		{OSH_SAMPLER_PARENTBASED_ALWAYS_ON, "00-" TRACE_HEX "-" PARENT_HEX "-00", false},
		{OSH_SAMPLER_PARENTBASED_ALWAYS_OFF, NULL, false},
		{OSH_SAMPLER_PARENTBASED_ALWAYS_OFF, "00-" TRACE_HEX "-" PARENT_HEX "-01", true},
		{OSH_SAMPLER_ALWAYS_ON, "00-" TRACE_HEX "-" PARENT_HEX "-00", true},
		{OSH_SAMPLER_ALWAYS_OFF, "00-" TRACE_HEX "-" PARENT_HEX "-01", false},
		{OSH_SAMPLER_ALWAYS_OFF, NULL, false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_procspan ps = {0};
		struct osh_trace_ctx p;

		if (cases[i].parent)
			p = parse_tp(cases[i].parent);
		osh_procspan_begin(&ps, cases[i].parent ? &p : NULL, cases[i].sampler, 1.0);
		cr_assert_eq(osh_procspan_sampled(&ps), cases[i].sampled, "case %zu", i);
		cr_assert_eq(ps.ctx.flags & OSH_FLAG_SAMPLED, cases[i].sampled ? 1 : 0);
	}
}

Test(begin, span_ids_differ)
{
	struct osh_procspan a = sample_ps(TP_SAMPLED), b = sample_ps(TP_SAMPLED);

	cr_assert(memcmp(a.ctx.span_id, b.ctx.span_id, 8) != 0);
}

Test(begin, traceparent_names_the_span)
{
	struct osh_procspan ps = sample_ps(TP_SAMPLED);
	char tp[OSH_TRACEPARENT_LEN + 1], want[OSH_TRACEPARENT_LEN + 1], span[17];
	struct osh_trace_ctx back;

	memset(tp, 'x', sizeof(tp));
	osh_procspan_traceparent(&ps, tp);
	cr_assert_eq(strlen(tp), OSH_TRACEPARENT_LEN);
	hex(ps.ctx.span_id, 8, span);
	snprintf(want, sizeof(want), "00-%s-%s-01", TRACE_HEX, span);
	cr_assert_str_eq(tp, want);
	back = parse_tp(tp);
	cr_assert(memcmp(back.span_id, ps.ctx.span_id, 8) == 0);

	ps.ctx.flags = 0;
	osh_procspan_traceparent(&ps, tp);
	cr_assert_eq(tp[OSH_TRACEPARENT_LEN - 1], '0');
	cr_assert_eq(tp[OSH_TRACEPARENT_LEN - 2], '0');
}

/* ---- the record ---- */

Test(fill, identity_kind_times_and_parent)
{
	struct osh_procspan ps = sample_ps(TP_SAMPLED);
	struct osh_span *s = filled(&ps, OSH_PROC_EXITED, 0);

	cr_assert_eq(s->kind, OSH_SPAN_INTERNAL);
	cr_assert(memcmp(s->trace_id, ps.ctx.trace_id, 16) == 0);
	cr_assert(memcmp(s->span_id, ps.ctx.span_id, 8) == 0);
	cr_assert_eq(s->trace_flags, ps.ctx.flags);
	cr_assert(s->has_parent);
	cr_assert(s->parent_remote);
	cr_assert(memcmp(s->parent_span_id, ps.parent.span_id, 8) == 0);
	cr_assert_eq(s->start_ns, 1000);
	cr_assert_eq(s->end_ns, 5000);
	cr_assert_eq(s->trace_state.len, 0);
	osh_span_destroy(s);
}

Test(fill, root_has_no_parent)
{
	struct osh_procspan ps = sample_ps(NULL);
	struct osh_span *s = filled(&ps, OSH_PROC_EXITED, 0);

	cr_assert_not(s->has_parent);
	cr_assert(memcmp(s->parent_span_id, zero16, 8) == 0);
	osh_span_destroy(s);
}

Test(fill, end_before_start_is_clamped)
{
	struct osh_procspan ps = sample_ps(NULL);
	struct osh_span *s = osh_span_create();

	ps.start_ns = 9000;
	osh_procspan_fill(s, &ps, NULL, 0, OSH_PROC_EXITED, 0, 5000);
	cr_assert_eq(s->end_ns, 9000);
	osh_span_destroy(s);
}

Test(fill, process_attributes)
{
	struct osh_procspan ps = sample_ps(TP_SAMPLED);
	struct osh_span *s = filled(&ps, OSH_PROC_EXITED, 0);

	assert_name(s, "exec curl");
	assert_int_attr(s, "process.pid", 42);
	assert_int_attr(s, "process.parent_pid", 7);
	assert_str_attr(s, "process.executable.name", "curl");
	assert_str_attr(s, "process.command", "/usr/bin/curl");
	osh_span_destroy(s);

	/* The probed executable name wins over argv[0]'s. */
	strcpy(ps.exe_name, "dash");
	strcpy(ps.command, "sh");
	s = filled(&ps, OSH_PROC_EXITED, 0);
	assert_name(s, "exec sh");
	assert_str_attr(s, "process.executable.name", "dash");
	assert_str_attr(s, "process.command", "sh");
	osh_span_destroy(s);
}

Test(fill, unknown_pids_are_left_out)
{
	struct osh_procspan ps = sample_ps(NULL);
	struct osh_span *s;

	ps.pid = 0;
	ps.parent_pid = 0;
	s = filled(&ps, OSH_PROC_EXITED, 0);
	cr_assert_null(attr(s, "process.pid"));
	cr_assert_null(attr(s, "process.parent_pid"));
	osh_span_destroy(s);
}

Test(fill, names_from_argv0)
{
	static const struct {
		const char *command;
		const char *name;
		const char *exe; /* NULL: no attribute */
	} cases[] = {
		{"/usr/bin/curl", "exec curl", "curl"},
		{"curl", "exec curl", "curl"},
		{"./run.sh", "exec run.sh", "run.sh"},
		{"-bash", "exec -bash", "-bash"},
		{"dir/", "exec", NULL},
		{"", "exec", NULL},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_procspan ps = sample_ps(NULL);
		struct osh_span *s;

		strcpy(ps.command, cases[i].command);
		s = filled(&ps, OSH_PROC_EXITED, 0);
		assert_name(s, cases[i].name);
		if (cases[i].exe)
			assert_str_attr(s, "process.executable.name", cases[i].exe);
		else
			cr_assert_null(attr(s, "process.executable.name"), "case %zu", i);
		if (cases[i].command[0])
			assert_str_attr(s, "process.command", cases[i].command);
		else
			cr_assert_null(attr(s, "process.command"));
		osh_span_destroy(s);
	}
}

Test(fill, a_long_argv0_is_cut)
{
	struct osh_procspan ps = sample_ps(NULL);
	char want[5 + 255 + 1];
	struct osh_span *s;

	memset(ps.command, 'a', sizeof(ps.command) - 1);
	ps.command[sizeof(ps.command) - 1] = '\0';
	s = filled(&ps, OSH_PROC_EXITED, 0);
	strcpy(want, "exec ");
	memset(want + 5, 'a', 255);
	want[260] = '\0';
	assert_name(s, want);
	cr_assert_eq(attr(s, "process.command")->v.s.len, 255);
	osh_span_destroy(s);
}

Test(fill, outcomes)
{
	static const struct {
		enum osh_proc_end how;
		int code;
		bool has_exit_code;
		uint8_t status;
		const char *msg;
	} cases[] = {
		{OSH_PROC_EXITED, 0, true, OSH_STATUS_UNSET, ""},
		{OSH_PROC_EXITED, 3, true, OSH_STATUS_ERROR, "exit code 3"},
		{OSH_PROC_EXITED, 255, true, OSH_STATUS_ERROR, "exit code 255"},
		{OSH_PROC_SIGNALED, SIGTERM, false, OSH_STATUS_ERROR, "terminated by SIGTERM"},
		{OSH_PROC_SIGNALED, SIGKILL, false, OSH_STATUS_ERROR, "terminated by SIGKILL"},
		{OSH_PROC_SIGNALED, 200, false, OSH_STATUS_ERROR, "terminated by signal 200"},
		{OSH_PROC_EXEC, 0, false, OSH_STATUS_UNSET, ""},
		{OSH_PROC_UNKNOWN, 0, false, OSH_STATUS_UNSET, ""},
		{OSH_PROC_START_FAILED, ENOENT, false, OSH_STATUS_ERROR,
		 "cannot start: No such file or directory"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_procspan ps = sample_ps(TP_SAMPLED);
		struct osh_span *s = filled(&ps, cases[i].how, cases[i].code);

		if (cases[i].has_exit_code)
			assert_int_attr(s, "process.exit.code", cases[i].code);
		else
			cr_assert_null(attr(s, "process.exit.code"), "case %zu", i);
		cr_assert_eq(s->status_code, cases[i].status, "case %zu", i);
		assert_status_msg(s, cases[i].msg);
		osh_span_destroy(s);
	}
}

Test(fill, tracestate_is_carried)
{
	struct osh_procspan ps = sample_ps(TP_SAMPLED);
	struct osh_span *s = osh_span_create();

	osh_procspan_fill(s, &ps, "a=1,b=2", 7, OSH_PROC_EXITED, 0, 5000);
	cr_assert_eq(s->trace_state.len, 7);
	cr_assert(memcmp(osh_span_str(s, s->trace_state), "a=1,b=2", 7) == 0);
	osh_span_destroy(s);
}

/* ---- OTELSHIM_PROCESS_SPANS ---- */

static const char *fake_value;

static const char *fake_get(const char *name)
{
	return strcmp(name, "OTELSHIM_PROCESS_SPANS") == 0 ? fake_value : NULL;
}

Test(config, process_spans_variable)
{
	static const struct {
		const char *value;
		bool on;
	} cases[] = {
		{NULL, false},	  {"", false},	    {"true", true}, {"TRUE", true},
		{" true ", true}, {"false", false}, {"yes", false}, {"1", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct osh_config cfg;

		fake_value = cases[i].value;
		osh_config_load_from(&cfg, fake_get);
		cr_assert_eq(cfg.process_spans, cases[i].on, "case %zu (%s)", i,
			     cases[i].value ? cases[i].value : "unset");
		osh_config_finish(&cfg);
	}
}

/* ---- this process's span ---- */

#define MAX_CAPTURED 8
static struct osh_span *captured[MAX_CAPTURED];
static size_t n_captured;

static void capture(struct osh_span *s)
{
	cr_assert(n_captured < MAX_CAPTURED);
	captured[n_captured++] = s;
}

/* A preloaded process's state: shim enabled, process spans on, the given
 * environment carrier (NULL: none), spans captured instead of exported. */
static void setup_own(const char *env_tp, const char *env_ts)
{
	osh_procspan_reset();
	osh_enabled = true;
	osh_cfg.process_spans = true;
	osh_cfg.sampler = OSH_SAMPLER_PARENTBASED_ALWAYS_ON;
	osh_cfg.sampler_ratio = 1.0;
	osh_cfg.exporter = OSH_EXPORTER_OTLP;
	osh_cfg.propagate_tracecontext = true;
	osh_env_ctx_finish(&osh_env_ctx);
	osh_env_ctx_load(&osh_env_ctx, env_tp, env_ts, NULL);
	if (env_tp)
		setenv("TRACEPARENT", env_tp, 1);
	else
		unsetenv("TRACEPARENT");
	if (env_ts)
		setenv("TRACESTATE", env_ts, 1);
	else
		unsetenv("TRACESTATE");
	n_captured = 0;
	osh_exporter_set_capture(capture);
}

Test(own, off_by_default_changes_nothing)
{
	setup_own(TP_SAMPLED, NULL);
	osh_cfg.process_spans = false;
	osh_procspan_start();
	cr_assert_null(osh_procspan_parent());
	cr_assert_str_eq(getenv("TRACEPARENT"), TP_SAMPLED);
	cr_assert_not(osh_procspan_end(OSH_PROC_EXITED, 0));
	cr_assert_eq(n_captured, 0);
}

Test(own, nothing_when_the_shim_is_disabled)
{
	setup_own(TP_SAMPLED, NULL);
	osh_enabled = false;
	osh_procspan_start();
	cr_assert_null(osh_procspan_parent());
	cr_assert_str_eq(getenv("TRACEPARENT"), TP_SAMPLED);
}

Test(own, child_of_the_environment_and_handed_to_children)
{
	const struct osh_trace_ctx *ctx;
	char tp[OSH_TRACEPARENT_LEN + 1], span[17];
	pid_t me = getpid();
	struct osh_span *s;

	setup_own(TP_SAMPLED, "k=v");
	osh_procspan_start();
	ctx = osh_procspan_parent();
	cr_assert(ctx);
	cr_assert(ctx->valid);
	cr_assert_not(ctx->remote);
	cr_assert(memcmp(ctx->trace_id, osh_env_ctx.parent.trace_id, 16) == 0);
	cr_assert(memcmp(ctx->span_id, osh_env_ctx.parent.span_id, 8) != 0);

	/* The environment now names this span; TRACESTATE stays. */
	hex(ctx->span_id, 8, span);
	snprintf(tp, sizeof(tp), "00-%s-%s-01", TRACE_HEX, span);
	cr_assert_str_eq(getenv("TRACEPARENT"), tp);
	cr_assert_str_eq(getenv("TRACESTATE"), "k=v");

	cr_assert(osh_procspan_end(OSH_PROC_EXITED, 4));
	cr_assert_eq(n_captured, 1);
	s = captured[0];
	cr_assert(memcmp(s->span_id, ctx->span_id, 8) == 0);
	cr_assert(s->has_parent);
	cr_assert(memcmp(s->parent_span_id, osh_env_ctx.parent.span_id, 8) == 0);
	assert_int_attr(s, "process.exit.code", 4);
	assert_int_attr(s, "process.pid", me);
	assert_int_attr(s, "process.parent_pid", getppid());
	assert_str_attr(s, "process.command", program_invocation_name);
	assert_str_attr(s, "process.executable.name", "test_procspan");
	cr_assert_eq(s->status_code, OSH_STATUS_ERROR);
	cr_assert_eq(s->trace_state.len, 3);
	cr_assert(s->start_ns > 0 && s->end_ns >= s->start_ns);

	/* Ended once; its context stays the parent of what comes after. */
	cr_assert_not(osh_procspan_end(OSH_PROC_EXITED, 0));
	cr_assert_eq(n_captured, 1);
	cr_assert_eq(osh_procspan_parent(), ctx);
	osh_span_destroy(s);
}

Test(own, root_without_an_environment_carrier)
{
	struct osh_trace_ctx env;

	setup_own(NULL, NULL);
	osh_procspan_start();
	cr_assert(osh_procspan_parent());
	env = parse_tp(getenv("TRACEPARENT"));
	cr_assert(memcmp(env.span_id, osh_procspan_parent()->span_id, 8) == 0);
	cr_assert(osh_procspan_end(OSH_PROC_EXEC, 0));
	cr_assert_eq(n_captured, 1);
	cr_assert_not(captured[0]->has_parent);
	cr_assert_null(attr(captured[0], "process.exit.code"));
	osh_span_destroy(captured[0]);
}

Test(own, propagation_off_leaves_the_environment_alone)
{
	setup_own(TP_SAMPLED, NULL);
	osh_cfg.propagate_tracecontext = false;
	osh_procspan_start();
	cr_assert(osh_procspan_parent());
	cr_assert_str_eq(getenv("TRACEPARENT"), TP_SAMPLED);
}

Test(own, unsampled_records_nothing_but_hands_the_decision_down)
{
	setup_own("00-" TRACE_HEX "-" PARENT_HEX "-00", NULL);
	osh_procspan_start();
	cr_assert(osh_procspan_parent());
	cr_assert_eq(osh_procspan_parent()->flags & OSH_FLAG_SAMPLED, 0);
	cr_assert_str_eq(getenv("TRACEPARENT") + OSH_TRACEPARENT_LEN - 3, "-00");
	cr_assert(osh_procspan_end(OSH_PROC_EXITED, 0));
	cr_assert_eq(n_captured, 0);
}

Test(own, exporter_none_records_nothing)
{
	setup_own(TP_SAMPLED, NULL);
	osh_cfg.exporter = OSH_EXPORTER_NONE;
	osh_procspan_start();
	cr_assert(osh_procspan_parent());
	cr_assert(osh_procspan_end(OSH_PROC_EXITED, 0));
	cr_assert_eq(n_captured, 0);
}

Test(own, end_without_start)
{
	setup_own(TP_SAMPLED, NULL);
	cr_assert_not(osh_procspan_end(OSH_PROC_EXITED, 0));
	cr_assert_eq(n_captured, 0);
}

Test(own, a_fork_child_keeps_the_context_but_never_ends_it)
{
	const struct osh_trace_ctx *ctx;
	int status;
	pid_t pid;

	setup_own(TP_SAMPLED, NULL);
	osh_procspan_start();
	ctx = osh_procspan_parent();
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		/* Bit 0: the context is still there; bit 1: end refused;
		 * bit 2: nothing submitted. */
		int r = (osh_procspan_parent() == ctx) |
			(!osh_procspan_end(OSH_PROC_EXITED, 9) << 1) | ((n_captured == 0) << 2);
		_exit(r);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 7, "child reported %d", WEXITSTATUS(status));
	/* The parent still owns it. */
	cr_assert(osh_procspan_end(OSH_PROC_EXITED, 0));
	cr_assert_eq(n_captured, 1);
	osh_span_destroy(captured[0]);
}

static int report_fd = -1;

static void report_exit_code(struct osh_span *s)
{
	const struct osh_attr *a = osh_span_find(s, "process.exit.code");
	char c = a ? (char)a->v.i : (char)-1;

	(void)!write(report_fd, &c, 1);
	osh_span_destroy(s);
}

Test(own, exit_handlers_end_it_with_the_status)
{
	int fds[2], status;
	char c = 0;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		/* exit() from inside libc, unseen by the exit hook: only the
		 * on_exit fallback can tell the status. */
		setup_own(TP_SAMPLED, NULL);
		report_fd = fds[1];
		osh_exporter_set_capture(report_exit_code);
		osh_procspan_start();
		exit(5);
	}
	close(fds[1]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 5);
	cr_assert_eq(read(fds[0], &c, 1), 1, "no span at exit");
	cr_assert_eq(c, 5);
	close(fds[0]);
}
