/* The resource every export carries (see resource.h). Exporter thread: this
 * file may read /proc and /etc, the constructor never calls it. */
#include "buildconf.h"

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "diag.h"
#include "ids.h"
#include "real.h"
#include "resource.h"

/* Keys this file sets itself (see build()); OTEL_RESOURCE_ATTRIBUTES members
 * come on top. */
#define OWN_KEYS 32

/* Read up to @size bytes of a small file. Returns the byte count, or -1.
 * read/close go through the real table (STYLE §4); the exporter thread also
 * holds the guard, so the hooks would let them through anyway. */
static ssize_t read_small_file(const char *path, char *buf, size_t size)
{
	const struct osh_real *real = osh_real_get();
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while (got < size) {
		ssize_t r = real->read(fd, buf + got, size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	real->close(fd);
	return (ssize_t)got;
}

static void probe_exe(struct osh_process_info *p)
{
	static const char deleted[] = " (deleted)";
	ssize_t n = readlink("/proc/self/exe", p->exe_path, sizeof(p->exe_path) - 1);
	const char *base;

	if (n > 0) {
		size_t len = (size_t)n, dl = sizeof(deleted) - 1;

		/* The kernel marks a binary replaced on disk since exec (a
		 * package upgrade): the path is still the one that ran. */
		if (len > dl && memcmp(p->exe_path + len - dl, deleted, dl) == 0)
			len -= dl;
		p->exe_path[len] = '\0';
	} else {
		p->exe_path[0] = '\0';
	}

	base = p->exe_path[0] ? strrchr(p->exe_path, '/') : NULL;
	if (base && base[1])
		base++;
	else
		base = program_invocation_short_name;
	if (base)
		snprintf(p->exe_name, sizeof(p->exe_name), "%s", base);
}

/* argv[0] only: semconv's process.command is the command name, and the
 * arguments of the full command line often carry credentials
 * (curl -H "Authorization: Bearer ..."), which must not leave the host. */
static void probe_cmdline(struct osh_process_info *p)
{
	ssize_t n = read_small_file("/proc/self/cmdline", p->command, sizeof(p->command) - 1);

	if (n <= 0) {
		p->command[0] = '\0';
		return;
	}
	p->command[n] = '\0'; /* argv[0] ends at its own NUL */
}

static void probe_machine_id(struct osh_process_info *p)
{
	char buf[sizeof(p->host_id)];
	ssize_t n = read_small_file("/etc/machine-id", buf, sizeof(buf) - 1);
	size_t start = 0, end;

	p->host_id[0] = '\0';
	if (n <= 0)
		return;
	buf[n] = '\0';
	end = strcspn(buf, "\n");
	while (start < end && (buf[start] == ' ' || buf[start] == '\t'))
		start++;
	while (end > start && (buf[end - 1] == ' ' || buf[end - 1] == '\t' || buf[end - 1] == '\r'))
		end--;
	memcpy(p->host_id, buf + start, end - start);
	p->host_id[end - start] = '\0';
}

void osh_resource_probe(struct osh_process_info *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->pid = getpid();
	probe_exe(ret);
	probe_cmdline(ret);
	if (gethostname(ret->host_name, sizeof(ret->host_name) - 1) < 0)
		ret->host_name[0] = '\0';
	ret->host_name[sizeof(ret->host_name) - 1] = '\0';
	probe_machine_id(ret);
}

/* ---- building ---- */

struct builder {
	struct osh_resource_attr *a;
	size_t n, cap;
	bool oom;
};

static struct osh_resource_attr *find(struct builder *b, const char *key)
{
	for (size_t i = 0; i < b->n; i++) {
		if (strcmp(b->a[i].key, key) == 0)
			return &b->a[i];
	}
	return NULL;
}

/* Append @key unless present (callers add in precedence order, so the
 * first value wins). */
static struct osh_resource_attr *add(struct builder *b, const char *key)
{
	struct osh_resource_attr *a;

	if (b->oom || find(b, key))
		return NULL;
	if (b->n == b->cap) {
		b->oom = true;
		return NULL;
	}
	a = &b->a[b->n];
	a->key = strdup(key);
	if (!a->key) {
		b->oom = true;
		return NULL;
	}
	b->n++;
	return a;
}

/* NULL or "" means "not known here": nothing is added. */
static void add_str(struct builder *b, const char *key, const char *value)
{
	struct osh_resource_attr *a;

	if (!value || !*value)
		return;
	a = add(b, key);
	if (!a)
		return;
	a->str = strdup(value);
	if (!a->str)
		b->oom = true;
}

static void add_int(struct builder *b, const char *key, int64_t value)
{
	struct osh_resource_attr *a = add(b, key);

	if (a) {
		a->is_int = true;
		a->i = value;
	}
}

/* A member of OTEL_RESOURCE_ATTRIBUTES, NULL when absent or empty. */
static const char *from_attrs(const struct osh_config *cfg, const char *key)
{
	for (size_t i = 0; i < cfg->n_resource_attrs; i++) {
		if (strcmp(cfg->resource_attrs[i].key, key) == 0)
			return *cfg->resource_attrs[i].value ? cfg->resource_attrs[i].value : NULL;
	}
	return NULL;
}

static const char *first(const char *a, const char *b)
{
	return a && *a ? a : b;
}

int osh_resource_build(struct osh_resource *ret, const struct osh_config *cfg,
		       const struct osh_process_info *proc)
{
	struct builder b = {0};
	char derived[256];
	char uuid[37];
	const char *name, *env, *instance;

	b.cap = OWN_KEYS + cfg->n_resource_attrs;
	b.a = calloc(b.cap, sizeof(*b.a));
	if (!b.a)
		return -ENOMEM;

	/* OTEL_SERVICE_NAME wins over everything (llm-devops-standard.md §1). */
	name = first(cfg->service_name, from_attrs(cfg, "service.name"));
	if (!name) {
		osh_resource_derive_service_name(proc->exe_name, derived, sizeof(derived));
		name = derived;
	}
	if (!osh_resource_service_name_conforms(name))
		osh_diag_once(
			OSH_ONCE_SERVICE_NAME, OSH_LOG_DEBUG,
			"service.name \"%s\" does not follow llm.{component}[.{subcomponent}], "
			"keeping it",
			name);
	add_str(&b, "service.name", name);
	add_str(&b, "service.version",
		first(cfg->service_version, first(from_attrs(cfg, "service.version"), "unknown")));

	/* Both the seeds' name and the current semconv name, same value. */
	env = first(cfg->environment,
		    first(from_attrs(cfg, "deployment.environment.name"),
			  first(from_attrs(cfg, "deployment.environment"), "development")));
	add_str(&b, "deployment.environment", env);
	add_str(&b, "deployment.environment.name", env);

	add_str(&b, "service.namespace",
		first(cfg->service_namespace,
		      first(from_attrs(cfg, "service.namespace"), "llm-devops")));
	instance = first(cfg->service_instance_id, from_attrs(cfg, "service.instance.id"));
	if (!instance) {
		osh_ids_uuid4(uuid);
		instance = uuid;
	}
	add_str(&b, "service.instance.id", instance);

	add_str(&b, "host.name",
		first(cfg->hostname, first(from_attrs(cfg, "host.name"), proc->host_name)));
	add_str(&b, "host.id", first(from_attrs(cfg, "host.id"), proc->host_id));

	/* The standard's variables; when unset, a member of the same name in
	 * OTEL_RESOURCE_ATTRIBUTES is merged below. */
	add_str(&b, "k8s.namespace.name", cfg->k8s_namespace);
	add_str(&b, "k8s.pod.name", cfg->k8s_pod_name);
	add_str(&b, "k8s.pod.uid", cfg->k8s_pod_uid);
	add_str(&b, "k8s.node.name", cfg->k8s_node_name);
	add_str(&b, "k8s.deployment.name", cfg->k8s_deployment_name);
	add_str(&b, "k8s.cluster.name", cfg->k8s_cluster_name);
	add_str(&b, "cloud.provider", cfg->cloud_provider);
	add_str(&b, "cloud.region", cfg->cloud_region);
	add_str(&b, "cloud.availability_zone", cfg->cloud_availability_zone);
	add_str(&b, "cloud.account.id", cfg->cloud_account_id);

	/* Facts about this very process win over OTEL_RESOURCE_ATTRIBUTES,
	 * which children inherit: a process.pid there is someone else's. */
	if (proc->pid > 0)
		add_int(&b, "process.pid", proc->pid);
	add_str(&b, "process.executable.name", proc->exe_name);
	add_str(&b, "process.executable.path", proc->exe_path);
	add_str(&b, "process.command", proc->command);

	/* telemetry.sdk.language has no value for C; custom values are
	 * allowed (env.md §2). */
	add_str(&b, "telemetry.sdk.name", "otelshim");
	add_str(&b, "telemetry.sdk.language", "c");
	add_str(&b, "telemetry.sdk.version", OSH_VERSION);
	add_str(&b, "telemetry.distro.name", "otelshim");
	add_str(&b, "telemetry.distro.version", OSH_VERSION);

	/* Everything else the user listed; keys already set are skipped
	 * (empty values included: the user wrote them). */
	for (size_t i = 0; i < cfg->n_resource_attrs; i++) {
		const struct osh_kv *kv = &cfg->resource_attrs[i];
		struct osh_resource_attr *a = add(&b, kv->key);

		if (a) {
			a->str = strdup(kv->value);
			if (!a->str)
				b.oom = true;
		}
	}

	if (b.oom) {
		struct osh_resource tmp = {.attrs = b.a, .n = b.n};

		osh_resource_finish(&tmp);
		return -ENOMEM;
	}
	ret->attrs = b.a;
	ret->n = b.n;
	return 0;
}

void osh_resource_finish(struct osh_resource *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->n; i++) {
		free(res->attrs[i].key);
		free(res->attrs[i].str);
	}
	free(res->attrs);
	res->attrs = NULL;
	res->n = 0;
}

const struct osh_resource_attr *osh_resource_get(const struct osh_resource *res, const char *key)
{
	for (size_t i = 0; i < res->n; i++) {
		if (strcmp(res->attrs[i].key, key) == 0)
			return &res->attrs[i];
	}
	return NULL;
}

/* ---- service names ---- */

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

void osh_resource_derive_service_name(const char *exe_name, char *out, size_t outsz)
{
	static const char prefix[] = "llm.";
	const char *s = exe_name && *exe_name ? exe_name : "unknown_service";
	size_t o = 0;

	if (outsz == 0)
		return;
	/* "llm-x", "llm_x" and "llm.x" all name component x; a bare "llm"
	 * prefix with nothing after it is left alone. */
	if (strlen(s) > 4 && strncasecmp(s, "llm", 3) == 0 &&
	    (s[3] == '-' || s[3] == '_' || s[3] == '.'))
		s += 4;
	for (const char *p = prefix; *p && o + 1 < outsz; p++)
		out[o++] = *p;
	for (; *s && o + 1 < outsz; s++)
		out[o++] = *s == '_' ? '-' : lower(*s);
	out[o] = '\0';
}

/* Components of the LLM DevOps family (seed 002, "Repository Service
 * Names"). Seed 002 lists "llm.edge-agent-proxy" as wrong although
 * components may contain hyphens: "proxy" is a subcomponent of edge-agent
 * and must follow a dot. As a rule: a component that starts with a known
 * component's name followed by '-' is such a glued subcomponent. */
static const char *const known_components[] = {
	"edge-agent",  "shield",   "sentinel",	    "connector-hub",
	"observatory", "cost-ops", "policy-engine",
};

/* One level: [a-z0-9-]+, no leading, trailing or doubled hyphen. */
static bool level_ok(const char *s, size_t n)
{
	if (n == 0 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
		if (c == '-' && s[i + 1] == '-')
			return false;
	}
	return true;
}

bool osh_resource_service_name_conforms(const char *name)
{
	const char *comp, *dot;
	size_t cn;

	if (!name || strncmp(name, "llm.", 4) != 0)
		return false;
	comp = name + 4;
	dot = strchr(comp, '.');
	cn = dot ? (size_t)(dot - comp) : strlen(comp);
	if (!level_ok(comp, cn))
		return false;
	/* llm.{component}[.{subcomponent}]: at most one more level. */
	if (dot && (strchr(dot + 1, '.') || !level_ok(dot + 1, strlen(dot + 1))))
		return false;
	for (size_t i = 0; i < sizeof(known_components) / sizeof(known_components[0]); i++) {
		size_t kn = strlen(known_components[i]);

		if (cn > kn && comp[kn] == '-' && memcmp(comp, known_components[i], kn) == 0)
			return false;
	}
	return true;
}
