/* The resource: probing, precedence of its sources, service names. */
#include "buildconf.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "diag.h"
#include "resource.h"

/* ---- fixtures: a hand-filled config and process ---- */

static struct osh_config cfg;
static struct osh_process_info proc;
static struct osh_resource res;
static struct osh_kv attrs[16];

static void setup(void)
{
	memset(&cfg, 0, sizeof(cfg));
	memset(&res, 0, sizeof(res));
	memset(&proc, 0, sizeof(proc));
	proc.pid = 4242;
	strcpy(proc.exe_path, "/opt/llm/bin/llm-edge-agent");
	strcpy(proc.exe_name, "llm-edge-agent");
	strcpy(proc.command, "/opt/llm/bin/llm-edge-agent --port 8080");
	strcpy(proc.host_name, "probed-host");
	strcpy(proc.host_id, "0123456789abcdef0123456789abcdef");
}

static void teardown(void)
{
	osh_resource_finish(&res);
}

TestSuite(resource, .init = setup, .fini = teardown);

/* OTEL_RESOURCE_ATTRIBUTES, already decoded: "k", "v", ..., NULL. */
static void set_attrs(const char *const *kv)
{
	size_t n = 0;

	for (; kv[2 * n]; n++) {
		cr_assert(n < sizeof(attrs) / sizeof(attrs[0]));
		attrs[n].key = (char *)kv[2 * n];
		attrs[n].value = (char *)kv[2 * n + 1];
	}
	cfg.resource_attrs = n ? attrs : NULL;
	cfg.n_resource_attrs = n;
}

#define ATTRS(...)                                                                                 \
	do {                                                                                       \
		const char *const a_[] = {__VA_ARGS__, NULL};                                      \
		set_attrs(a_);                                                                     \
	} while (0)

static void build(void)
{
	osh_resource_finish(&res);
	cr_assert_eq(osh_resource_build(&res, &cfg, &proc), 0);
	/* Keys are unique whatever the inputs. */
	for (size_t i = 0; i < res.n; i++) {
		for (size_t j = i + 1; j < res.n; j++)
			cr_assert_str_neq(res.attrs[i].key, res.attrs[j].key, "duplicate key %s",
					  res.attrs[i].key);
	}
}

/* The string value of @key, NULL when absent. */
static const char *str(const char *key)
{
	const struct osh_resource_attr *a = osh_resource_get(&res, key);

	if (!a)
		return NULL;
	cr_assert_not(a->is_int, "%s is a string", key);
	return a->str;
}

#define ASSERT_STR(key, want) cr_assert_str_eq(str(key), want, "%s", key)

static bool uuid4_like(const char *s)
{
	if (strlen(s) != 36 || s[14] != '4' || !strchr("89ab", s[19]))
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!strchr("0123456789abcdef", s[i])) {
			return false;
		}
	}
	return true;
}

/* ---- defaults ---- */

Test(resource, defaults_from_the_process)
{
	const struct osh_resource_attr *pid;

	build();
	ASSERT_STR("service.name", "llm.edge-agent");
	ASSERT_STR("service.version", "unknown");
	ASSERT_STR("deployment.environment", "development");
	ASSERT_STR("deployment.environment.name", "development");
	ASSERT_STR("service.namespace", "llm-devops");
	cr_assert(uuid4_like(str("service.instance.id")), "%s", str("service.instance.id"));
	ASSERT_STR("host.name", "probed-host");
	ASSERT_STR("host.id", "0123456789abcdef0123456789abcdef");
	pid = osh_resource_get(&res, "process.pid");
	cr_assert_not_null(pid);
	cr_assert(pid->is_int);
	cr_assert_eq(pid->i, 4242);
	ASSERT_STR("process.executable.name", "llm-edge-agent");
	ASSERT_STR("process.executable.path", "/opt/llm/bin/llm-edge-agent");
	ASSERT_STR("process.command", "/opt/llm/bin/llm-edge-agent --port 8080");
	ASSERT_STR("telemetry.sdk.name", "otelshim");
	ASSERT_STR("telemetry.sdk.language", "c");
	ASSERT_STR("telemetry.sdk.version", OSH_VERSION);
	ASSERT_STR("telemetry.distro.name", "otelshim");
	ASSERT_STR("telemetry.distro.version", OSH_VERSION);
	/* Nothing invented for what is not known. */
	cr_assert_null(osh_resource_get(&res, "k8s.pod.name"));
	cr_assert_null(osh_resource_get(&res, "k8s.namespace.name"));
	cr_assert_null(osh_resource_get(&res, "cloud.provider"));
	cr_assert_null(osh_resource_get(&res, "nope"));
	cr_assert_eq(res.n, 17);
	/* service.name comes first: stable order. */
	cr_assert_str_eq(res.attrs[0].key, "service.name");
}

Test(resource, unknown_process_facts_are_left_out)
{
	memset(&proc, 0, sizeof(proc));
	build();
	ASSERT_STR("service.name", "llm.unknown-service");
	cr_assert_null(osh_resource_get(&res, "process.pid"));
	cr_assert_null(osh_resource_get(&res, "process.executable.name"));
	cr_assert_null(osh_resource_get(&res, "process.executable.path"));
	cr_assert_null(osh_resource_get(&res, "process.command"));
	cr_assert_null(osh_resource_get(&res, "host.name"));
	cr_assert_null(osh_resource_get(&res, "host.id"));
	ASSERT_STR("telemetry.sdk.name", "otelshim");
}

Test(resource, instance_id_is_random_per_build)
{
	char first[64];

	build();
	snprintf(first, sizeof(first), "%s", str("service.instance.id"));
	build();
	cr_assert(uuid4_like(str("service.instance.id")));
	cr_assert_str_neq(first, str("service.instance.id"));
}

/* ---- precedence ---- */

Test(resource, service_name_precedence)
{
	ATTRS("service.name", "llm.from-attrs");
	build();
	ASSERT_STR("service.name", "llm.from-attrs");

	cfg.service_name = "llm.from-env";
	build();
	ASSERT_STR("service.name", "llm.from-env");

	/* Used as given, even outside the pattern. */
	cfg.service_name = "My Service";
	build();
	ASSERT_STR("service.name", "My Service");

	/* An empty member is no name at all. */
	cfg.service_name = NULL;
	ATTRS("service.name", "");
	build();
	ASSERT_STR("service.name", "llm.edge-agent");
}

Test(resource, version_namespace_instance_precedence)
{
	ATTRS("service.version", "2.0.0", "service.namespace", "attr-ns", "service.instance.id",
	      "attr-inst");
	build();
	ASSERT_STR("service.version", "2.0.0");
	ASSERT_STR("service.namespace", "attr-ns");
	ASSERT_STR("service.instance.id", "attr-inst");

	cfg.service_version = "3.0.0";
	cfg.service_namespace = "env-ns";
	cfg.service_instance_id = "env-inst";
	build();
	ASSERT_STR("service.version", "3.0.0");
	ASSERT_STR("service.namespace", "env-ns");
	ASSERT_STR("service.instance.id", "env-inst");

	ATTRS("service.version", "");
	cfg.service_version = NULL;
	build();
	ASSERT_STR("service.version", "unknown");
}

Test(resource, environment_precedence)
{
	static const struct {
		const char *env, *attr_name, *attr_old, *want;
	} t[] = {
		{NULL, NULL, NULL, "development"},  {"production", NULL, NULL, "production"},
		{NULL, NULL, "staging", "staging"}, {NULL, "qa", NULL, "qa"},
		{NULL, "qa", "staging", "qa"},	    {"production", "qa", "staging", "production"},
		{NULL, "", "staging", "staging"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = 0;

		cfg.environment = (char *)t[i].env;
		if (t[i].attr_name) {
			attrs[n].key = "deployment.environment.name";
			attrs[n++].value = (char *)t[i].attr_name;
		}
		if (t[i].attr_old) {
			attrs[n].key = "deployment.environment";
			attrs[n++].value = (char *)t[i].attr_old;
		}
		cfg.resource_attrs = n ? attrs : NULL;
		cfg.n_resource_attrs = n;
		build();
		cr_assert_str_eq(str("deployment.environment"), t[i].want, "case %zu", i);
		cr_assert_str_eq(str("deployment.environment.name"), t[i].want, "case %zu", i);
	}
}

Test(resource, host_precedence)
{
	ATTRS("host.name", "attr-host", "host.id", "attr-id");
	build();
	ASSERT_STR("host.name", "attr-host");
	ASSERT_STR("host.id", "attr-id");

	cfg.hostname = "env-host";
	build();
	ASSERT_STR("host.name", "env-host");

	cfg.hostname = NULL;
	cfg.n_resource_attrs = 0;
	proc.host_id[0] = '\0';
	build();
	ASSERT_STR("host.name", "probed-host");
	cr_assert_null(osh_resource_get(&res, "host.id"));
}

Test(resource, k8s_and_cloud)
{
	static const struct {
		char **field;
		const char *key;
	} t[] = {
		{&cfg.k8s_namespace, "k8s.namespace.name"},
		{&cfg.k8s_pod_name, "k8s.pod.name"},
		{&cfg.k8s_pod_uid, "k8s.pod.uid"},
		{&cfg.k8s_node_name, "k8s.node.name"},
		{&cfg.k8s_deployment_name, "k8s.deployment.name"},
		{&cfg.k8s_cluster_name, "k8s.cluster.name"},
		{&cfg.cloud_provider, "cloud.provider"},
		{&cfg.cloud_region, "cloud.region"},
		{&cfg.cloud_availability_zone, "cloud.availability_zone"},
		{&cfg.cloud_account_id, "cloud.account.id"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		/* Variable alone. */
		cfg.n_resource_attrs = 0;
		*t[i].field = "from-env";
		build();
		ASSERT_STR(t[i].key, "from-env");

		/* Variable over the attribute. */
		attrs[0].key = (char *)t[i].key;
		attrs[0].value = "from-attrs";
		cfg.resource_attrs = attrs;
		cfg.n_resource_attrs = 1;
		build();
		ASSERT_STR(t[i].key, "from-env");

		/* Attribute alone. */
		*t[i].field = NULL;
		build();
		ASSERT_STR(t[i].key, "from-attrs");
	}
}

Test(resource, process_and_sdk_facts_win_over_attributes)
{
	/* A child inherits OTEL_RESOURCE_ATTRIBUTES: a pid there is not its own. */
	ATTRS("process.pid", "1", "process.executable.name", "other", "telemetry.sdk.name", "fake",
	      "telemetry.sdk.language", "rust", "process.command", "x");
	build();
	cr_assert_eq(osh_resource_get(&res, "process.pid")->i, 4242);
	ASSERT_STR("process.executable.name", "llm-edge-agent");
	ASSERT_STR("process.command", "/opt/llm/bin/llm-edge-agent --port 8080");
	ASSERT_STR("telemetry.sdk.name", "otelshim");
	ASSERT_STR("telemetry.sdk.language", "c");
}

Test(resource, other_attributes_are_merged)
{
	ATTRS("team", "search", "k8s.pod.name", "pod-a", "empty", "", "service.version", "1.0");
	cfg.service_name = "llm.shield";
	build();
	ASSERT_STR("team", "search");
	ASSERT_STR("k8s.pod.name", "pod-a");
	ASSERT_STR("empty", "");
	ASSERT_STR("service.version", "1.0");
	ASSERT_STR("service.name", "llm.shield");
	cr_assert_eq(res.n, 17 + 3);
	/* Merged members come after the resource's own keys, in their order. */
	cr_assert_str_eq(res.attrs[res.n - 3].key, "team");
	cr_assert_str_eq(res.attrs[res.n - 2].key, "k8s.pod.name");
	cr_assert_str_eq(res.attrs[res.n - 1].key, "empty");
}

Test(resource, attributes_from_a_real_config_load)
{
	static const char *const env[][2] = {
		{"OTEL_RESOURCE_ATTRIBUTES",
		 "service.name=llm.from-attrs,deployment.environment=staging,"
		 "k8s.namespace.name=ns%2C1,owner=a%3Db"},
		{"K8S_NAMESPACE", ""},
		{"SERVICE_VERSION", "9.9.9"},
	};
	struct osh_config loaded;

	for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++)
		setenv(env[i][0], env[i][1], 1);
	unsetenv("OTEL_SERVICE_NAME");
	unsetenv("ENVIRONMENT");
	osh_config_load(&loaded);
	cr_assert_eq(osh_resource_build(&res, &loaded, &proc), 0);
	ASSERT_STR("service.name", "llm.from-attrs");
	ASSERT_STR("deployment.environment", "staging");
	ASSERT_STR("deployment.environment.name", "staging");
	ASSERT_STR("k8s.namespace.name", "ns,1");
	ASSERT_STR("owner", "a=b");
	ASSERT_STR("service.version", "9.9.9");
	osh_resource_finish(&res);
	osh_config_finish(&loaded);
}

/* ---- the service-name report ---- */

static int cap_pipe[2];
static int saved_stderr;

static void capture_start(void)
{
	cr_assert_eq(pipe(cap_pipe), 0);
	saved_stderr = dup(2);
	dup2(cap_pipe[1], 2);
	close(cap_pipe[1]);
}

static char *capture_end(void)
{
	static char buf[8192];
	size_t n = 0;
	ssize_t r;

	dup2(saved_stderr, 2);
	close(saved_stderr);
	while (n < sizeof(buf) - 1 && (r = read(cap_pipe[0], buf + n, sizeof(buf) - 1 - n)) > 0)
		n += (size_t)r;
	close(cap_pipe[0]);
	buf[n] = '\0';
	return strdup(buf);
}

static size_t count(const char *hay, const char *needle)
{
	size_t c = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		c++;
	return c;
}

Test(resource, odd_service_name_is_kept_and_reported_once_at_debug)
{
	char *out;

	cfg.service_name = "EdgeAgent";
	osh_diag_set(OSH_LOG_INFO, false);
	capture_start();
	build();
	out = capture_end();
	cr_assert_str_empty(out, "debug only: %s", out);
	free(out);

	osh_diag_set(OSH_LOG_DEBUG, false);
	capture_start();
	build();
	build();
	out = capture_end();
	ASSERT_STR("service.name", "EdgeAgent");
	cr_assert_eq(count(out, "EdgeAgent"), 1, "%s", out);
	cr_assert_not_null(strstr(out, "otelshim: debug: "), "%s", out);
	free(out);
}

Test(resource, conforming_service_name_is_not_reported)
{
	char *out;

	cfg.service_name = "llm.edge-agent.proxy";
	osh_diag_set(OSH_LOG_DEBUG, false);
	capture_start();
	build();
	out = capture_end();
	cr_assert_str_empty(out, "%s", out);
	free(out);
}

/* ---- lifetime ---- */

Test(resource, finish_is_idempotent_and_takes_null)
{
	build();
	osh_resource_finish(&res);
	cr_assert_null(res.attrs);
	cr_assert_eq(res.n, 0);
	osh_resource_finish(&res);
	osh_resource_finish(NULL);
	cr_assert_null(osh_resource_get(&res, "service.name"));
}

/* ---- probing the running process ---- */

Test(probe, this_process)
{
	struct osh_process_info p;
	char link[4096], host[256];
	ssize_t n;
	FILE *f;

	memset(&p, 0x5a, sizeof(p));
	osh_resource_probe(&p);
	cr_assert_eq(p.pid, getpid());

	n = readlink("/proc/self/exe", link, sizeof(link) - 1);
	cr_assert_gt(n, 0);
	link[n] = '\0';
	cr_assert_str_eq(p.exe_path, link);
	cr_assert_str_eq(p.exe_name, strrchr(link, '/') + 1);

	/* argv[0] only, never the arguments (they may hold credentials);
	 * criterion's worker renames its argv, so compare with our own
	 * reading of /proc/self/cmdline. */
	f = fopen("/proc/self/cmdline", "r");
	cr_assert_not_null(f);
	{
		char args[4096] = { 0 };
		size_t len = fread(args, 1, sizeof(args) - 1, f);

		cr_assert_gt(len, 0);
		cr_assert_str_not_empty(p.command);
		cr_assert_str_eq(p.command, args); /* up to argv[0]'s NUL */
		cr_assert_null(strchr(p.command, ' '));
	}
	fclose(f);

	cr_assert_eq(gethostname(host, sizeof(host)), 0);
	cr_assert_str_eq(p.host_name, host);

	f = fopen("/etc/machine-id", "r");
	if (f) {
		char line[128] = "";

		if (fgets(line, sizeof(line), f))
			line[strcspn(line, " \t\r\n")] = '\0';
		fclose(f);
		cr_assert_str_eq(p.host_id, line);
	} else {
		cr_assert_str_empty(p.host_id);
	}
}

/* ---- service names ---- */

Test(service_name, derivation)
{
	static const struct {
		const char *exe, *want;
	} t[] = {
		{"llm-edge-agent", "llm.edge-agent"},
		{"LLM_Cost_Ops", "llm.cost-ops"},
		{"python3", "llm.python3"},
		{"llm_shield", "llm.shield"},
		{"LLM-Sentinel", "llm.sentinel"},
		{"llm.observatory", "llm.observatory"},
		{"edge_agent", "llm.edge-agent"},
		{"policy-engine", "llm.policy-engine"},
		{"python3.11", "llm.python3.11"},
		{"node", "llm.node"},
		{"Curl", "llm.curl"},
		{"llm", "llm.llm"},
		{"llm-", "llm.llm-"},
		{"llmx", "llm.llmx"},
		{"", "llm.unknown-service"},
		{NULL, "llm.unknown-service"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char out[64];

		osh_resource_derive_service_name(t[i].exe, out, sizeof(out));
		cr_assert_str_eq(out, t[i].want, "\"%s\"", t[i].exe ? t[i].exe : "(null)");
	}
}

Test(service_name, derivation_is_bounded)
{
	char out[8];
	char big[600];

	memset(out, 'x', sizeof(out));
	osh_resource_derive_service_name("python3", out, sizeof(out));
	cr_assert_str_eq(out, "llm.pyt");

	osh_resource_derive_service_name("python3", out, 1);
	cr_assert_str_eq(out, "");

	out[0] = 'x';
	osh_resource_derive_service_name("python3", out, 0);
	cr_assert_eq(out[0], 'x', "nothing written into a zero-sized buffer");

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	{
		char name[256];

		osh_resource_derive_service_name(big, name, sizeof(name));
		cr_assert_eq(strlen(name), sizeof(name) - 1);
	}
}

Test(service_name, conformance)
{
	static const char *const good[] = {
		"llm.edge-agent",
		"llm.edge-agent.proxy",
		"llm.edge-agent.cache",
		"llm.shield",
		"llm.shield.scanner",
		"llm.sentinel.alerting",
		"llm.connector-hub",
		"llm.connector-hub.registry",
		"llm.observatory.collector",
		"llm.cost-ops",
		"llm.cost-ops.api",
		"llm.policy-engine.wasm",
		"llm.python3",
		"llm.python3.11",
		"llm.x",
		"llm.my-tool",
		"llm.shieldx",
		"llm.unknown-service",
	};
	static const char *const bad[] = {
		/* the standard's own anti-patterns */
		"llm-edge-agent",
		"llm-devops.edge-agent",
		"llm.edge-agent-proxy",
		"edge-agent",
		/* a known component glued to its subcomponent */
		"llm.shield-scanner",
		"llm.cost-ops-api",
		"llm.policy-engine-cel",
		/* shape */
		"",
		"llm",
		"llm.",
		"llm..x",
		"llm.x.",
		"llm.x..y",
		"llm.a.b.c",
		"LLM.edge-agent",
		"llm.Edge-Agent",
		"llm.edge_agent",
		"llm.edge agent",
		"llm.-x",
		"llm.x-",
		"llm.a--b",
		"llm.x.-y",
		"llm.x.y-",
		"llm.caf\xc3\xa9",
		".llm.x",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert(osh_resource_service_name_conforms(good[i]), "\"%s\"", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(osh_resource_service_name_conforms(bad[i]), "\"%s\"", bad[i]);
	cr_assert_not(osh_resource_service_name_conforms(NULL));
}

Test(service_name, derived_names_of_the_family_conform)
{
	static const char *const exes[] = {
		"llm-edge-agent", "llm-shield",	  "llm_sentinel",  "llm-connector-hub",
		"observatory",	  "LLM_Cost_Ops", "policy-engine", "python3",
	};

	for (size_t i = 0; i < sizeof(exes) / sizeof(exes[0]); i++) {
		char out[64];

		osh_resource_derive_service_name(exes[i], out, sizeof(out));
		cr_assert(osh_resource_service_name_conforms(out), "%s -> %s", exes[i], out);
	}
}
