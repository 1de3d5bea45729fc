/* Configuration parsing: every variable through a fake environment. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "diag.h"

/* ---- a fake environment ---- */

#define MAX_VARS 48
static const char *fake_names[MAX_VARS];
static const char *fake_values[MAX_VARS];
static size_t fake_n;
static size_t fake_lookups;

static const char *fake_get(const char *name)
{
	fake_lookups++;
	/* The last setting of a name wins, as with setenv. */
	for (size_t i = fake_n; i-- > 0;) {
		if (strcmp(fake_names[i], name) == 0)
			return fake_values[i];
	}
	return NULL;
}

static void env_clear(void)
{
	fake_n = 0;
	fake_lookups = 0;
}

static void env_set(const char *name, const char *value)
{
	cr_assert(fake_n < MAX_VARS);
	fake_names[fake_n] = name;
	fake_values[fake_n] = value;
	fake_n++;
}

static struct osh_config cfg;

/* Load @cfg from "NAME", "value" pairs (NULL-terminated). */
static void load_pairs(const char *const *pairs)
{
	env_clear();
	for (size_t i = 0; pairs[i]; i += 2)
		env_set(pairs[i], pairs[i + 1]);
	osh_config_load_from(&cfg, fake_get);
}

#define LOAD(...)                                                                                  \
	do {                                                                                       \
		const char *const p_[] = {__VA_ARGS__, NULL};                                      \
		load_pairs(p_);                                                                    \
	} while (0)
#define LOAD_NONE()                                                                                \
	do {                                                                                       \
		env_clear();                                                                       \
		osh_config_load_from(&cfg, fake_get);                                              \
	} while (0)

static void fini(void)
{
	osh_config_finish(&cfg);
}

/* ---- capturing the shim's diagnostics (one write(2) each) ---- */

static int cap_pipe[2] = {-1, -1};
static int saved_stderr = -1;

static void capture_start(void)
{
	cr_assert_eq(pipe(cap_pipe), 0);
	saved_stderr = dup(2);
	cr_assert_geq(saved_stderr, 0);
	cr_assert_geq(dup2(cap_pipe[1], 2), 0);
	close(cap_pipe[1]);
}

/* Everything written to fd 2 since capture_start (caller frees). */
static char *capture_end(void)
{
	static char buf[65536];
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

/* Load with OTEL_LOG_LEVEL=warn plus @name=@value; return the diagnostics. */
static char *warnings_for(const char *name, const char *value)
{
	env_clear();
	env_set("OTEL_LOG_LEVEL", "warn");
	env_set(name, value);
	capture_start();
	osh_config_load_from(&cfg, fake_get);
	return capture_end();
}

/* Does @out quote NAME="value" as the user wrote it? */
static bool shows(const char *out, const char *name, const char *value)
{
	char want[256];

	snprintf(want, sizeof(want), "%s=\"%s\"", name, value);
	return strstr(out, want) != NULL;
}

TestSuite(config, .fini = fini);

/* ---- defaults ---- */

static void assert_defaults(void)
{
	cr_assert_not(cfg.disabled);
	cr_assert_eq(cfg.exporter, OSH_EXPORTER_OTLP);
	cr_assert_not(cfg.log_json);
	cr_assert_eq(cfg.log_level, OSH_LOG_NONE);
	cr_assert_eq(cfg.sampler, OSH_SAMPLER_PARENTBASED_ALWAYS_ON);
	cr_assert_eq(cfg.sampler_ratio, 1.0);
	cr_assert(cfg.propagate_tracecontext);
	cr_assert(cfg.propagate_baggage);
	cr_assert_eq(cfg.bsp_max_queue, 2048);
	cr_assert_eq(cfg.bsp_max_batch, 512);
	cr_assert_eq(cfg.bsp_delay_ms, 5000);
	cr_assert_eq(cfg.bsp_export_timeout_ms, 30000);
	cr_assert_str_eq(cfg.traces_url, "http://localhost:4318/v1/traces");
	cr_assert_null(cfg.otlp_headers);
	cr_assert_not(cfg.otlp_gzip);
	cr_assert_eq(cfg.otlp_timeout_ms, 10000);
	cr_assert_null(cfg.otlp_certificate);
	cr_assert_null(cfg.otlp_client_key);
	cr_assert_null(cfg.otlp_client_certificate);
	cr_assert_eq(cfg.fallback, OSH_EXPORTER_NONE);
	cr_assert_eq(cfg.exit_timeout_ms, 2000);
	cr_assert_eq(cfg.exporter_nice, 0);
	cr_assert_not(cfg.exporter_share_fds);
	cr_assert_eq(cfg.retry_initial_ms, 1000);
	cr_assert_eq(cfg.attr_value_limit, 0);
	cr_assert_eq(cfg.attr_count_limit, 128);
	cr_assert_null(cfg.service_name);
	cr_assert_null(cfg.service_version);
	cr_assert_null(cfg.environment);
	cr_assert_null(cfg.service_namespace);
	cr_assert_null(cfg.service_instance_id);
	cr_assert_null(cfg.hostname);
	cr_assert_null(cfg.k8s_namespace);
	cr_assert_null(cfg.cloud_provider);
	cr_assert_null(cfg.resource_attrs);
	cr_assert_eq(cfg.n_resource_attrs, 0);
	cr_assert_null(cfg.env_traceparent);
	cr_assert_null(cfg.env_tracestate);
	cr_assert_null(cfg.env_baggage);
}

Test(config, defaults_when_nothing_is_set)
{
	LOAD_NONE();
	assert_defaults();
	cr_assert_gt(fake_lookups, 40, "the loader reads its variables through the getter");
}

Test(config, empty_values_are_unset)
{
	static const char *const names[] = {
		"OTEL_SDK_DISABLED",
		"OTEL_TRACES_EXPORTER",
		"LOG_FORMAT",
		"OTEL_LOG_LEVEL",
		"OTEL_TRACES_SAMPLER",
		"OTEL_TRACES_SAMPLER_ARG",
		"OTEL_PROPAGATORS",
		"OTEL_BSP_MAX_QUEUE_SIZE",
		"OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
		"OTEL_BSP_SCHEDULE_DELAY",
		"OTEL_BSP_EXPORT_TIMEOUT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTLP_ENDPOINT_HTTP",
		"OTEL_EXPORTER_OTLP_HEADERS",
		"OTEL_EXPORTER_OTLP_COMPRESSION",
		"OTEL_EXPORTER_OTLP_TIMEOUT",
		"OTEL_EXPORTER_OTLP_CERTIFICATE",
		"OTEL_FALLBACK_EXPORTER",
		"OTELSHIM_EXIT_TIMEOUT_MS",
		"OTELSHIM_EXPORTER_NICE",
		"OTELSHIM_RETRY_INITIAL_MS",
		"OTEL_ATTRIBUTE_COUNT_LIMIT",
		"OTEL_SERVICE_NAME",
		"SERVICE_VERSION",
		"ENVIRONMENT",
		"HOSTNAME",
		"K8S_NAMESPACE",
		"CLOUD_PROVIDER",
		"OTEL_RESOURCE_ATTRIBUTES",
		"TRACEPARENT",
		"TRACESTATE",
		"BAGGAGE",
	};
	char *out;

	env_clear();
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		env_set(names[i], "");
	capture_start();
	osh_config_load_from(&cfg, fake_get);
	out = capture_end();
	assert_defaults();
	cr_assert_str_empty(out, "empty values are not invalid values: %s", out);
	free(out);
}

/* ---- booleans ---- */

Test(config, booleans)
{
	static const struct {
		const char *v;
		bool want;
		bool warns;
	} t[] = {
		{"true", true, false},	 {"TRUE", true, false},	  {"True", true, false},
		{" true ", true, false}, {"false", false, false}, {"FALSE", false, false},
		{"1", false, true},	 {"yes", false, true},	  {"on", false, true},
		{"truee", false, true},	 {"t", false, true},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *out = warnings_for("OTEL_SDK_DISABLED", t[i].v);

		cr_assert_eq(cfg.disabled, t[i].want, "OTEL_SDK_DISABLED=\"%s\"", t[i].v);
		if (t[i].warns)
			cr_assert(shows(out, "OTEL_SDK_DISABLED", t[i].v),
				  "warning shows \"%s\": %s", t[i].v, out);
		else
			cr_assert_str_empty(out, "no warning for \"%s\": %s", t[i].v, out);
		free(out);
		osh_config_finish(&cfg);
	}
}

/* ---- integers, durations, timeouts ---- */

Test(config, integers_valid_and_invalid)
{
	static const struct {
		const char *v;
		uint32_t want;
	} t[] = {
		{"100", 100},  {" 77 ", 77},	     {"2147483647", 2147483647u},
		{"1", 1},      {"0", 2048}, /* a queue needs room for one span */
		{"-1", 2048},  {"2147483648", 2048}, {"99999999999999999999", 2048},
		{"abc", 2048}, {"12abc", 2048},	     {"1.5", 2048},
		{"+5", 2048},  {"0x10", 2048},	     {"1 2", 2048},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *out = warnings_for("OTEL_BSP_MAX_QUEUE_SIZE", t[i].v);

		cr_assert_eq(cfg.bsp_max_queue, t[i].want, "\"%s\" -> %u", t[i].v,
			     cfg.bsp_max_queue);
		if (t[i].want == 2048)
			cr_assert(shows(out, "OTEL_BSP_MAX_QUEUE_SIZE", t[i].v),
				  "warning shows \"%s\": %s", t[i].v, out);
		else
			cr_assert_str_empty(out, "\"%s\": %s", t[i].v, out);
		free(out);
		osh_config_finish(&cfg);
	}
}

Test(config, bsp_values)
{
	LOAD("OTEL_BSP_MAX_QUEUE_SIZE", "4096", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1024",
	     "OTEL_BSP_SCHEDULE_DELAY", "10000", "OTEL_BSP_EXPORT_TIMEOUT", "1500");
	cr_assert_eq(cfg.bsp_max_queue, 4096);
	cr_assert_eq(cfg.bsp_max_batch, 1024);
	cr_assert_eq(cfg.bsp_delay_ms, 10000);
	cr_assert_eq(cfg.bsp_export_timeout_ms, 1500);
}

Test(config, batch_is_clamped_to_queue)
{
	char *out;

	/* Explicit batch larger than the queue: clamped and reported. */
	env_clear();
	env_set("OTEL_LOG_LEVEL", "warn");
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "100");
	env_set("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "300");
	capture_start();
	osh_config_load_from(&cfg, fake_get);
	out = capture_end();
	cr_assert_eq(cfg.bsp_max_queue, 100);
	cr_assert_eq(cfg.bsp_max_batch, 100);
	cr_assert_not_null(strstr(out, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), "%s", out);
	free(out);
	osh_config_finish(&cfg);

	/* The default batch (512) meets a small queue: clamped silently. */
	out = warnings_for("OTEL_BSP_MAX_QUEUE_SIZE", "10");
	cr_assert_eq(cfg.bsp_max_queue, 10);
	cr_assert_eq(cfg.bsp_max_batch, 10);
	cr_assert_str_empty(out, "%s", out);
	free(out);
	osh_config_finish(&cfg);

	LOAD("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0");
	cr_assert_eq(cfg.bsp_max_batch, 512);
}

Test(config, durations)
{
	LOAD("OTEL_BSP_SCHEDULE_DELAY", "0");
	cr_assert_eq(cfg.bsp_delay_ms, 0, "a zero delay is a valid duration");
	osh_config_finish(&cfg);

	LOAD("OTEL_BSP_SCHEDULE_DELAY", "-5");
	cr_assert_eq(cfg.bsp_delay_ms, 5000);
	osh_config_finish(&cfg);

	LOAD("OTEL_BSP_SCHEDULE_DELAY", "5s");
	cr_assert_eq(cfg.bsp_delay_ms, 5000);
	osh_config_finish(&cfg);

	LOAD("OTELSHIM_EXIT_TIMEOUT_MS", "0", "OTELSHIM_RETRY_INITIAL_MS", "250");
	cr_assert_eq(cfg.exit_timeout_ms, 0);
	cr_assert_eq(cfg.retry_initial_ms, 250);
	osh_config_finish(&cfg);

	LOAD("OTELSHIM_EXIT_TIMEOUT_MS", "-1", "OTELSHIM_RETRY_INITIAL_MS", "0");
	cr_assert_eq(cfg.exit_timeout_ms, 2000);
	cr_assert_eq(cfg.retry_initial_ms, 1000, "a zero first backoff step would spin");
	osh_config_finish(&cfg);

	LOAD("OTELSHIM_EXPORTER_NICE", "5");
	cr_assert_eq(cfg.exporter_nice, 5);
	osh_config_finish(&cfg);
	LOAD("OTELSHIM_EXPORTER_NICE", "40");
	cr_assert_eq(cfg.exporter_nice, 19, "nice values stop at 19");
	osh_config_finish(&cfg);
	LOAD("OTELSHIM_EXPORTER_NICE", "-3");
	cr_assert_eq(cfg.exporter_nice, 0, "not a nice value: the default (as inherited)");
	osh_config_finish(&cfg);
	LOAD("OTELSHIM_EXPORTER_SHARE_FDS", "true");
	cr_assert(cfg.exporter_share_fds);
}

/* Deferred observation of server connections is on unless turned off; a
 * value that is not a boolean keeps the default. */
Test(config, server_defer_defaults_on)
{
	LOAD_NONE();
	cr_assert(cfg.server_defer);
	osh_config_finish(&cfg);
	LOAD("OTELSHIM_SERVER_DEFER", "FALSE");
	cr_assert_not(cfg.server_defer);
	osh_config_finish(&cfg);
	LOAD("OTELSHIM_SERVER_DEFER", " true ");
	cr_assert(cfg.server_defer);
	osh_config_finish(&cfg);
	LOAD("OTELSHIM_SERVER_DEFER", "off");
	cr_assert(cfg.server_defer, "not a boolean: the default");
	osh_config_finish(&cfg);
}

Test(config, timeouts_zero_means_no_limit)
{
	LOAD("OTEL_EXPORTER_OTLP_TIMEOUT", "0", "OTEL_BSP_EXPORT_TIMEOUT", "0");
	cr_assert_eq(cfg.otlp_timeout_ms, OSH_CONFIG_NO_LIMIT_MS);
	cr_assert_eq(cfg.bsp_export_timeout_ms, OSH_CONFIG_NO_LIMIT_MS);
	cr_assert_geq(OSH_CONFIG_NO_LIMIT_MS, 2147483647u);
	osh_config_finish(&cfg);

	LOAD("OTEL_EXPORTER_OTLP_TIMEOUT", "-1", "OTEL_BSP_EXPORT_TIMEOUT", "ten");
	cr_assert_eq(cfg.otlp_timeout_ms, 10000);
	cr_assert_eq(cfg.bsp_export_timeout_ms, 30000);
	osh_config_finish(&cfg);

	/* The seeds say seconds; the spec says milliseconds, and wins. */
	LOAD("OTEL_EXPORTER_OTLP_TIMEOUT", "10");
	cr_assert_eq(cfg.otlp_timeout_ms, 10);
}

Test(config, otlp_timeout_per_signal_wins)
{
	LOAD("OTEL_EXPORTER_OTLP_TIMEOUT", "3000", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "4000");
	cr_assert_eq(cfg.otlp_timeout_ms, 4000);
	osh_config_finish(&cfg);

	LOAD("OTEL_EXPORTER_OTLP_TIMEOUT", "3000");
	cr_assert_eq(cfg.otlp_timeout_ms, 3000);
	osh_config_finish(&cfg);

	/* An invalid per-signal value is ignored, so the generic one applies. */
	LOAD("OTEL_EXPORTER_OTLP_TIMEOUT", "3000", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "x");
	cr_assert_eq(cfg.otlp_timeout_ms, 3000);
	osh_config_finish(&cfg);

	LOAD("OTEL_EXPORTER_OTLP_TIMEOUT", "3000", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "");
	cr_assert_eq(cfg.otlp_timeout_ms, 3000);
}

/* ---- attribute limits ---- */

Test(config, attribute_limits)
{
	LOAD("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256", "OTEL_ATTRIBUTE_COUNT_LIMIT", "64");
	cr_assert_eq(cfg.attr_value_limit, 256);
	cr_assert_eq(cfg.attr_count_limit, 64);
	osh_config_finish(&cfg);

	LOAD("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "256", "OTEL_ATTRIBUTE_COUNT_LIMIT", "64",
	     "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
	     "10");
	cr_assert_eq(cfg.attr_value_limit, 100);
	cr_assert_eq(cfg.attr_count_limit, 10);
	osh_config_finish(&cfg);

	LOAD("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "bad", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
	     "300", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "-3");
	cr_assert_eq(cfg.attr_value_limit, 300);
	cr_assert_eq(cfg.attr_count_limit, 128);
	osh_config_finish(&cfg);

	LOAD("OTEL_ATTRIBUTE_COUNT_LIMIT", "0");
	cr_assert_eq(cfg.attr_count_limit, 0);
}

/* ---- enums ---- */

Test(config, samplers)
{
	static const struct {
		const char *v;
		enum osh_sampler_kind want;
		bool warns;
	} t[] = {
		{"always_on", OSH_SAMPLER_ALWAYS_ON, false},
		{"ALWAYS_OFF", OSH_SAMPLER_ALWAYS_OFF, false},
		{"TraceIdRatio", OSH_SAMPLER_TRACEIDRATIO, false},
		{"parentbased_always_on", OSH_SAMPLER_PARENTBASED_ALWAYS_ON, false},
		{"parentbased_always_off", OSH_SAMPLER_PARENTBASED_ALWAYS_OFF, false},
		{" parentbased_traceidratio ", OSH_SAMPLER_PARENTBASED_TRACEIDRATIO, false},
		{"jaeger_remote", OSH_SAMPLER_PARENTBASED_ALWAYS_ON, true},
		{"parentbased_jaeger_remote", OSH_SAMPLER_PARENTBASED_ALWAYS_ON, true},
		{"xray", OSH_SAMPLER_PARENTBASED_ALWAYS_ON, true},
		{"always-on", OSH_SAMPLER_PARENTBASED_ALWAYS_ON, true},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *out = warnings_for("OTEL_TRACES_SAMPLER", t[i].v);

		cr_assert_eq(cfg.sampler, t[i].want, "\"%s\"", t[i].v);
		cr_assert_eq(cfg.sampler_ratio, 1.0);
		if (t[i].warns)
			cr_assert(shows(out, "OTEL_TRACES_SAMPLER", t[i].v), "\"%s\": %s", t[i].v,
				  out);
		else
			cr_assert_str_empty(out, "\"%s\": %s", t[i].v, out);
		free(out);
		osh_config_finish(&cfg);
	}
}

Test(config, sampler_ratio_parsing)
{
	static const struct {
		const char *v;
		bool ok;
		double want;
	} t[] = {
		{"0.5", true, 0.5},    {"1", true, 1.0},       {"1.0", true, 1.0},
		{"0", true, 0.0},      {"0.0", true, 0.0},     {".25", true, 0.25},
		{"0.1", true, 0.1},    {" 0.05 ", true, 0.05}, {"1e-1", true, 0.1},
		{"5E-1", true, 0.5},   {"0.001", true, 0.001}, {"1.", true, 1.0},
		{"+0.5", true, 0.5},   {"100e-2", true, 1.0},  {"1.5", false, 1.0},
		{"2", false, 1.0},     {"-0.1", false, 1.0},   {"abc", false, 1.0},
		{"nan", false, 1.0},   {"inf", false, 1.0},    {"0.5x", false, 1.0},
		{"1e", false, 1.0},    {".", false, 1.0},      {"0,5", false, 1.0},
		{"1e400", false, 1.0}, {"0x0.8", false, 1.0},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *out;

		env_clear();
		env_set("OTEL_LOG_LEVEL", "warn");
		env_set("OTEL_TRACES_SAMPLER", "parentbased_traceidratio");
		env_set("OTEL_TRACES_SAMPLER_ARG", t[i].v);
		capture_start();
		osh_config_load_from(&cfg, fake_get);
		out = capture_end();
		cr_assert_eq(cfg.sampler, OSH_SAMPLER_PARENTBASED_TRACEIDRATIO);
		cr_assert_eq(cfg.sampler_ratio, t[i].want, "\"%s\" -> %.17g", t[i].v,
			     cfg.sampler_ratio);
		if (t[i].ok)
			cr_assert_str_empty(out, "\"%s\": %s", t[i].v, out);
		else
			cr_assert(shows(out, "OTEL_TRACES_SAMPLER_ARG", t[i].v), "\"%s\": %s",
				  t[i].v, out);
		free(out);
		osh_config_finish(&cfg);
	}
}

Test(config, sampler_arg_only_for_ratio_samplers)
{
	LOAD("OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.3");
	cr_assert_eq(cfg.sampler, OSH_SAMPLER_TRACEIDRATIO);
	cr_assert_eq(cfg.sampler_ratio, 0.3);
	osh_config_finish(&cfg);

	LOAD("OTEL_TRACES_SAMPLER", "always_on", "OTEL_TRACES_SAMPLER_ARG", "0.3");
	cr_assert_eq(cfg.sampler, OSH_SAMPLER_ALWAYS_ON);
	cr_assert_eq(cfg.sampler_ratio, 1.0);
	osh_config_finish(&cfg);

	LOAD("OTEL_TRACES_SAMPLER", "parentbased_traceidratio");
	cr_assert_eq(cfg.sampler, OSH_SAMPLER_PARENTBASED_TRACEIDRATIO);
	cr_assert_eq(cfg.sampler_ratio, 1.0);
}

Test(config, sampler_arg_alone_means_parent_based_ratio)
{
	/* llm-devops-standard.md §3, §7: the seeds set only the argument. */
	LOAD("OTEL_TRACES_SAMPLER_ARG", "0.1");
	cr_assert_eq(cfg.sampler, OSH_SAMPLER_PARENTBASED_TRACEIDRATIO);
	cr_assert_eq(cfg.sampler_ratio, 0.1);
	osh_config_finish(&cfg);

	LOAD("OTEL_TRACES_SAMPLER_ARG", "lots");
	cr_assert_eq(cfg.sampler, OSH_SAMPLER_PARENTBASED_ALWAYS_ON);
	cr_assert_eq(cfg.sampler_ratio, 1.0);
	osh_config_finish(&cfg);

	/* An unknown sampler is ignored, i.e. as if unset. */
	LOAD("OTEL_TRACES_SAMPLER", "bogus", "OTEL_TRACES_SAMPLER_ARG", "0.2");
	cr_assert_eq(cfg.sampler, OSH_SAMPLER_PARENTBASED_TRACEIDRATIO);
	cr_assert_eq(cfg.sampler_ratio, 0.2);
}

Test(config, exporters)
{
	static const struct {
		const char *v;
		enum osh_exporter_kind want;
		bool warns;
	} t[] = {
		{"otlp", OSH_EXPORTER_OTLP, false},
		{"OTLP", OSH_EXPORTER_OTLP, false},
		{"console", OSH_EXPORTER_CONSOLE, false},
		{"logging", OSH_EXPORTER_CONSOLE, false},
		{"none", OSH_EXPORTER_NONE, false},
		{"None", OSH_EXPORTER_NONE, false},
		{"console,otlp", OSH_EXPORTER_OTLP, false},
		{"none, console", OSH_EXPORTER_CONSOLE, false},
		{" none ,", OSH_EXPORTER_NONE, false},
		{"zipkin", OSH_EXPORTER_OTLP, true},
		{"jaeger", OSH_EXPORTER_OTLP, true},
		{"otlp/stdout", OSH_EXPORTER_OTLP, true},
		{"zipkin,console", OSH_EXPORTER_CONSOLE, true},
		{"prometheus,none", OSH_EXPORTER_NONE, true},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *out = warnings_for("OTEL_TRACES_EXPORTER", t[i].v);

		cr_assert_eq(cfg.exporter, t[i].want, "\"%s\" -> %d", t[i].v, cfg.exporter);
		if (t[i].warns)
			cr_assert_str_not_empty(out, "\"%s\"", t[i].v);
		else
			cr_assert_str_empty(out, "\"%s\": %s", t[i].v, out);
		free(out);
		osh_config_finish(&cfg);
	}
}

Test(config, fallback_exporter)
{
	static const struct {
		const char *v;
		enum osh_exporter_kind want;
	} t[] = {
		{"console", OSH_EXPORTER_CONSOLE}, {"stdout", OSH_EXPORTER_CONSOLE},
		{"LOGGING", OSH_EXPORTER_CONSOLE}, {"none", OSH_EXPORTER_NONE},
		{"otlp", OSH_EXPORTER_NONE},	   {"file", OSH_EXPORTER_NONE},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		LOAD("OTEL_FALLBACK_EXPORTER", t[i].v);
		cr_assert_eq(cfg.fallback, t[i].want, "\"%s\"", t[i].v);
		osh_config_finish(&cfg);
	}
}

Test(config, propagators)
{
	static const struct {
		const char *v;
		bool tc, bg, warns;
	} t[] = {
		{"tracecontext,baggage", true, true, false},
		{"tracecontext", true, false, false},
		{"baggage", false, true, false},
		{"TraceContext , Baggage", true, true, false},
		{"tracecontext,tracecontext", true, false, false},
		{"none", false, false, false},
		{"NONE", false, false, false},
		{"b3,tracecontext", true, false, true},
		{"b3multi,jaeger,baggage", false, true, true},
		{"xray,none", false, false, true},
		/* Nothing we know: the setting is ignored, the default stays. */
		{"b3", true, true, true},
		{"ottrace", true, true, true},
		{"tracecontext,", true, false, false},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *out = warnings_for("OTEL_PROPAGATORS", t[i].v);

		cr_assert_eq(cfg.propagate_tracecontext, t[i].tc, "\"%s\"", t[i].v);
		cr_assert_eq(cfg.propagate_baggage, t[i].bg, "\"%s\"", t[i].v);
		if (!t[i].warns)
			cr_assert_str_empty(out, "\"%s\": %s", t[i].v, out);
		free(out);
		osh_config_finish(&cfg);
	}
}

Test(config, unknown_propagators_are_reported_once)
{
	char *out = warnings_for("OTEL_PROPAGATORS", "b3,jaeger,tracecontext");
	const char *first = strstr(out, "otelshim");

	cr_assert(cfg.propagate_tracecontext);
	cr_assert_not(cfg.propagate_baggage);
	cr_assert_not_null(first, "%s", out);
	cr_assert_not_null(strstr(out, "b3"), "%s", out);
	cr_assert_null(strstr(first + 1, "otelshim"), "one warning only: %s", out);
	free(out);
}

Test(config, compression)
{
	static const struct {
		const char *traces, *generic;
		bool want;
	} t[] = {
		{NULL, NULL, false},	  {NULL, "gzip", true},	  {NULL, "GZIP", true},
		{NULL, "none", false},	  {"gzip", "none", true}, {"none", "gzip", false},
		{"zstd", "gzip", true},	  {NULL, "zstd", false},  {"", "gzip", true},
		{"deflate", NULL, false},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		env_clear();
		if (t[i].traces)
			env_set("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", t[i].traces);
		if (t[i].generic)
			env_set("OTEL_EXPORTER_OTLP_COMPRESSION", t[i].generic);
		osh_config_load_from(&cfg, fake_get);
		cr_assert_eq(cfg.otlp_gzip, t[i].want, "traces=%s generic=%s",
			     t[i].traces ? t[i].traces : "(unset)",
			     t[i].generic ? t[i].generic : "(unset)");
		osh_config_finish(&cfg);
	}
}

/* ---- diagnostics settings ---- */

Test(config, log_level_and_format)
{
	static const struct {
		const char *v;
		int want;
	} t[] = {
		{"none", OSH_LOG_NONE},	   {"error", OSH_LOG_ERROR}, {"warn", OSH_LOG_WARN},
		{"WARNING", OSH_LOG_WARN}, {"info", OSH_LOG_INFO},   {"Debug", OSH_LOG_DEBUG},
		{"verbose", OSH_LOG_NONE}, {"3", OSH_LOG_NONE},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *out = warnings_for("OTEL_LOG_LEVEL", t[i].v);

		free(out);
		cr_assert_eq(cfg.log_level, t[i].want, "\"%s\"", t[i].v);
		/* The loader applies the level to diag itself. */
		cr_assert_eq(osh_diag_enabled(OSH_LOG_ERROR), t[i].want >= OSH_LOG_ERROR);
		cr_assert_eq(osh_diag_enabled(OSH_LOG_DEBUG), t[i].want >= OSH_LOG_DEBUG);
		osh_config_finish(&cfg);
	}

	LOAD("LOG_FORMAT", "json");
	cr_assert(cfg.log_json);
	osh_config_finish(&cfg);
	LOAD("LOG_FORMAT", "JSON");
	cr_assert(cfg.log_json);
	osh_config_finish(&cfg);
	LOAD("LOG_FORMAT", "text");
	cr_assert_not(cfg.log_json);
	osh_config_finish(&cfg);
	LOAD("LOG_FORMAT", "yaml");
	cr_assert_not(cfg.log_json);
}

Test(config, silent_by_default)
{
	char *out;

	/* Every kind of bad value, and no OTEL_LOG_LEVEL: not a byte. */
	env_clear();
	env_set("OTEL_SDK_DISABLED", "yes");
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "many");
	env_set("OTEL_TRACES_SAMPLER", "bogus");
	env_set("OTEL_PROPAGATORS", "b3");
	env_set("OTEL_RESOURCE_ATTRIBUTES", "broken");
	env_set("LOG_FORMAT", "yaml");
	capture_start();
	osh_config_load_from(&cfg, fake_get);
	out = capture_end();
	cr_assert_eq(cfg.log_level, OSH_LOG_NONE);
	cr_assert_not(osh_diag_enabled(OSH_LOG_ERROR));
	cr_assert_str_empty(out, "%s", out);
	free(out);
}

Test(config, warnings_obey_the_level_and_show_the_raw_value)
{
	char *out;

	/* error level: warnings are not shown... */
	env_clear();
	env_set("OTEL_LOG_LEVEL", "error");
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "many");
	capture_start();
	osh_config_load_from(&cfg, fake_get);
	out = capture_end();
	cr_assert_str_empty(out, "%s", out);
	free(out);
	osh_config_finish(&cfg);

	/* ...at warn they are, with the variable and the value as given. */
	out = warnings_for("OTEL_BSP_MAX_QUEUE_SIZE", "many");
	cr_assert_not_null(strstr(out, "otelshim: warn: "), "%s", out);
	cr_assert_not_null(strstr(out, "OTEL_BSP_MAX_QUEUE_SIZE=\"many\""), "%s", out);
	free(out);
	osh_config_finish(&cfg);

	/* LOG_FORMAT=json applies to warnings issued during the load. */
	env_clear();
	env_set("OTEL_LOG_LEVEL", "warn");
	env_set("LOG_FORMAT", "json");
	env_set("OTEL_TRACES_SAMPLER", "bogus");
	capture_start();
	osh_config_load_from(&cfg, fake_get);
	out = capture_end();
	cr_assert_eq(out[0], '{', "%s", out);
	cr_assert_not_null(strstr(out, "\"level\":\"warn\""), "%s", out);
	cr_assert_not_null(strstr(out, "bogus"), "%s", out);
	free(out);
}

Test(config, bad_log_settings_are_reported)
{
	char *out;

	/* An unknown level says so (the user wanted output), then stays silent. */
	env_clear();
	env_set("OTEL_LOG_LEVEL", "verbose");
	env_set("OTEL_BSP_MAX_QUEUE_SIZE", "many");
	capture_start();
	osh_config_load_from(&cfg, fake_get);
	out = capture_end();
	cr_assert_not_null(strstr(out, "OTEL_LOG_LEVEL=\"verbose\""), "%s", out);
	cr_assert_null(strstr(out, "many"), "%s", out);
	cr_assert_eq(cfg.log_level, OSH_LOG_NONE);
	free(out);
	osh_config_finish(&cfg);

	out = warnings_for("LOG_FORMAT", "yaml");
	cr_assert_not_null(strstr(out, "LOG_FORMAT=\"yaml\""), "%s", out);
	free(out);
}

Test(config, config_file_is_reported)
{
	char *out = warnings_for("OTEL_CONFIG_FILE", "/etc/otel.yaml");

	cr_assert_not_null(strstr(out, "OTEL_CONFIG_FILE"), "%s", out);
	cr_assert_eq(cfg.exporter, OSH_EXPORTER_OTLP);
	free(out);
}

/* ---- endpoints (llm-devops-standard.md §3, otlp.md §1.1) ---- */

Test(config, endpoint_precedence_and_paths)
{
	static const struct {
		const char *traces, *generic, *seed_http, *want;
	} t[] = {
		{NULL, NULL, NULL, "http://localhost:4318/v1/traces"},
		/* generic: base + "/v1/traces", exactly one '/' between */
		{NULL, "http://collector:4318", NULL, "http://collector:4318/v1/traces"},
		{NULL, "http://collector:4318/", NULL, "http://collector:4318/v1/traces"},
		{NULL, "http://c:4318/mycollector/", NULL, "http://c:4318/mycollector/v1/traces"},
		{NULL, "http://c:4318/mycollector", NULL, "http://c:4318/mycollector/v1/traces"},
		{NULL, "http://c:4318//", NULL, "http://c:4318/v1/traces"},
		{NULL, "https://otel.example.com", NULL, "https://otel.example.com/v1/traces"},
		{NULL, " http://c:4318 ", NULL, "http://c:4318/v1/traces"},
		{NULL, "http://c:4318/p?x=1", NULL, "http://c:4318/p/v1/traces?x=1"},
		{NULL, "http://[::1]:4318", NULL, "http://[::1]:4318/v1/traces"},
		{"http://[::1]:4318", NULL, NULL, "http://[::1]:4318/"},
		/* no scheme: http is the default */
		{NULL, "collector:4318", NULL, "http://collector:4318/v1/traces"},
		/* per-signal: as is, only an empty path becomes "/" */
		{"http://collector:4318", NULL, NULL, "http://collector:4318/"},
		{"http://collector:4318/", NULL, NULL, "http://collector:4318/"},
		{"https://x.example.com/v1/traces", NULL, NULL, "https://x.example.com/v1/traces"},
		{"http://c:4318/custom/path", NULL, NULL, "http://c:4318/custom/path"},
		{"http://c:4318/v1/traces/", NULL, NULL, "http://c:4318/v1/traces/"},
		{"http://c:4318?a=b", NULL, NULL, "http://c:4318/?a=b"},
		{"collector:4318", NULL, NULL, "http://collector:4318/"},
		/* precedence */
		{"http://t:1/x", "http://g:2", "http://s:3", "http://t:1/x"},
		{NULL, "http://g:2", "http://s:3", "http://g:2/v1/traces"},
		{NULL, NULL, "http://s:3", "http://s:3/v1/traces"},
		{NULL, NULL, "http://s:3/base/", "http://s:3/base/v1/traces"},
		{"", "", "http://s:3", "http://s:3/v1/traces"},
		{"", "http://g:2", NULL, "http://g:2/v1/traces"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		env_clear();
		if (t[i].traces)
			env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", t[i].traces);
		if (t[i].generic)
			env_set("OTEL_EXPORTER_OTLP_ENDPOINT", t[i].generic);
		if (t[i].seed_http)
			env_set("OTLP_ENDPOINT_HTTP", t[i].seed_http);
		osh_config_load_from(&cfg, fake_get);
		cr_assert_str_eq(cfg.traces_url, t[i].want, "case %zu", i);
		osh_config_finish(&cfg);
	}
}

Test(config, grpc_endpoint_is_not_the_http_one)
{
	/* OTLP_ENDPOINT is the seeds' gRPC endpoint (4317): not for OTLP/HTTP. */
	LOAD("OTLP_ENDPOINT", "http://collector:4317");
	cr_assert_str_eq(cfg.traces_url, "http://localhost:4318/v1/traces");
}

Test(config, otlp_strings_per_signal_win)
{
	LOAD("OTEL_EXPORTER_OTLP_HEADERS", "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2",
	     "OTEL_EXPORTER_OTLP_CERTIFICATE", "/g/ca.pem", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
	     "/t/ca.pem", "OTEL_EXPORTER_OTLP_CLIENT_KEY", "/g/key.pem",
	     "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/t/key.pem",
	     "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/g/cert.pem",
	     "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "/t/cert.pem");
	cr_assert_str_eq(cfg.otlp_headers, "b=2");
	cr_assert_str_eq(cfg.otlp_certificate, "/t/ca.pem");
	cr_assert_str_eq(cfg.otlp_client_key, "/t/key.pem");
	cr_assert_str_eq(cfg.otlp_client_certificate, "/t/cert.pem");
	osh_config_finish(&cfg);

	LOAD("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc,x-tenant=t1",
	     "OTEL_EXPORTER_OTLP_CERTIFICATE", "/g/ca.pem", "OTEL_EXPORTER_OTLP_CLIENT_KEY",
	     "/g/key.pem", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/g/cert.pem",
	     "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "");
	cr_assert_str_eq(cfg.otlp_headers, "authorization=Bearer%20abc,x-tenant=t1",
			 "headers stay raw");
	cr_assert_str_eq(cfg.otlp_certificate, "/g/ca.pem");
	cr_assert_str_eq(cfg.otlp_client_key, "/g/key.pem");
	cr_assert_str_eq(cfg.otlp_client_certificate, "/g/cert.pem");
}

/* The transport's settings and the proxy variables are captured at load
 * with the rest: lower case first, as libcurl reads them, empty as unset,
 * HTTP_PROXY never. */
Test(config, transport_and_proxies_are_captured)
{
	LOAD("OTELSHIM_OTLP_TRANSPORT", "curl", "OTELSHIM_OTLP_MODULE", "/m.so", "http_proxy",
	     "http://p:1", "HTTP_PROXY", "http://upper:1", "HTTPS_PROXY", "http://s:2",
	     "all_proxy", "", "ALL_PROXY", "socks5://a:3", "NO_PROXY", "example.com");
	cr_assert_str_eq(cfg.otlp_transport, "curl");
	cr_assert_str_eq(cfg.otlp_module, "/m.so");
	cr_assert_str_eq(cfg.http_proxy, "http://p:1");
	cr_assert_str_eq(cfg.https_proxy, "http://s:2");
	cr_assert_str_eq(cfg.all_proxy, "socks5://a:3");
	cr_assert_str_eq(cfg.no_proxy, "example.com");
	osh_config_finish(&cfg);
	cr_assert_null(cfg.http_proxy);

	LOAD("HTTP_PROXY", "http://upper:1", "https_proxy", "http://lower:2", "HTTPS_PROXY",
	     "http://upper:2", "no_proxy", "a", "NO_PROXY", "b");
	cr_assert_null(cfg.http_proxy, "libcurl ignores HTTP_PROXY");
	cr_assert_str_eq(cfg.https_proxy, "http://lower:2");
	cr_assert_str_eq(cfg.no_proxy, "a");
	cr_assert_null(cfg.all_proxy);
	cr_assert_null(cfg.otlp_transport);
	cr_assert_null(cfg.otlp_module);
}

/* ---- resource inputs and carriers ---- */

Test(config, resource_inputs)
{
	LOAD("OTEL_SERVICE_NAME", "llm.edge-agent", "OTEL_SERVICE_VERSION", "1.2.3",
	     "SERVICE_VERSION", "0.0.1", "ENVIRONMENT", "production", "SERVICE_NAMESPACE", "ns",
	     "SERVICE_INSTANCE_ID", "inst-1", "HOSTNAME", "box", "K8S_NAMESPACE", "llm-prod",
	     "K8S_POD_NAME", "pod-1", "K8S_POD_UID", "uid-1", "K8S_NODE_NAME", "node-1",
	     "K8S_DEPLOYMENT_NAME", "dep", "K8S_CLUSTER_NAME", "cl", "CLOUD_PROVIDER", "aws",
	     "CLOUD_REGION", "us-east-1", "CLOUD_AVAILABILITY_ZONE", "us-east-1a",
	     "CLOUD_ACCOUNT_ID", "123");
	cr_assert_str_eq(cfg.service_name, "llm.edge-agent");
	cr_assert_str_eq(cfg.service_version, "1.2.3", "OTEL_SERVICE_VERSION first");
	cr_assert_str_eq(cfg.environment, "production");
	cr_assert_str_eq(cfg.service_namespace, "ns");
	cr_assert_str_eq(cfg.service_instance_id, "inst-1");
	cr_assert_str_eq(cfg.hostname, "box");
	cr_assert_str_eq(cfg.k8s_namespace, "llm-prod");
	cr_assert_str_eq(cfg.k8s_pod_name, "pod-1");
	cr_assert_str_eq(cfg.k8s_pod_uid, "uid-1");
	cr_assert_str_eq(cfg.k8s_node_name, "node-1");
	cr_assert_str_eq(cfg.k8s_deployment_name, "dep");
	cr_assert_str_eq(cfg.k8s_cluster_name, "cl");
	cr_assert_str_eq(cfg.cloud_provider, "aws");
	cr_assert_str_eq(cfg.cloud_region, "us-east-1");
	cr_assert_str_eq(cfg.cloud_availability_zone, "us-east-1a");
	cr_assert_str_eq(cfg.cloud_account_id, "123");
	osh_config_finish(&cfg);

	LOAD("SERVICE_VERSION", "0.0.1");
	cr_assert_str_eq(cfg.service_version, "0.0.1");
	osh_config_finish(&cfg);

	LOAD("SERVICE_VERSION", "0.0.1", "OTEL_SERVICE_VERSION", "");
	cr_assert_str_eq(cfg.service_version, "0.0.1");
}

Test(config, disabled_flag)
{
	LOAD("OTEL_SDK_DISABLED", "true");
	cr_assert(cfg.disabled);
	/* Propagators stay configured: the spec keeps them out of "disabled". */
	cr_assert(cfg.propagate_tracecontext);
}

Test(config, env_carriers_are_copied_raw)
{
	static char tp[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

	LOAD("TRACEPARENT", tp, "TRACESTATE", "congo=t61rcWkgMzE", "BAGGAGE",
	     " user_id=u1 , tenant_id=t%201 ");
	cr_assert_str_eq(cfg.env_traceparent, tp);
	cr_assert_str_eq(cfg.env_tracestate, "congo=t61rcWkgMzE");
	cr_assert_str_eq(cfg.env_baggage, " user_id=u1 , tenant_id=t%201 ");
	/* Copies: the host may change its environment later. */
	cr_assert_neq(cfg.env_traceparent, tp);
	tp[0] = 'f';
	cr_assert_eq(cfg.env_traceparent[0], '0');
}

Test(config, resource_attributes_through_load)
{
	LOAD("OTEL_RESOURCE_ATTRIBUTES", "service.name=svc,team=a%2Cb");
	cr_assert_eq(cfg.n_resource_attrs, 2);
	cr_assert_str_eq(cfg.resource_attrs[0].key, "service.name");
	cr_assert_str_eq(cfg.resource_attrs[0].value, "svc");
	cr_assert_str_eq(cfg.resource_attrs[1].key, "team");
	cr_assert_str_eq(cfg.resource_attrs[1].value, "a,b");
}

Test(config, malformed_resource_attributes_are_discarded_whole)
{
	char *out = warnings_for("OTEL_RESOURCE_ATTRIBUTES", "good=1,bad,also=2");

	cr_assert_null(cfg.resource_attrs);
	cr_assert_eq(cfg.n_resource_attrs, 0);
	cr_assert_not_null(strstr(out, "good=1,bad,also=2"), "%s", out);
	free(out);
}

Test(config, load_reads_the_real_environment)
{
	setenv("OTEL_SERVICE_NAME", "llm.from-env", 1);
	setenv("OTEL_BSP_MAX_QUEUE_SIZE", "77", 1);
	setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://real:4318", 1);
	setenv("https_proxy", "http://real-proxy:3128", 1);
	setenv("ALL_PROXY", "http://all:3128", 1);
	setenv("NO_PROXY", "real.example", 1);
	setenv("http_proxy", "http://plain:3128", 1);
	osh_config_load(&cfg);
	/* The load-time filter keeps the proxy variables too. */
	cr_assert_str_eq(cfg.https_proxy, "http://real-proxy:3128");
	cr_assert_str_eq(cfg.all_proxy, "http://all:3128");
	cr_assert_str_eq(cfg.no_proxy, "real.example");
	cr_assert_str_eq(cfg.http_proxy, "http://plain:3128");
	cr_assert_str_eq(cfg.service_name, "llm.from-env");
	cr_assert_eq(cfg.bsp_max_queue, 77);
	cr_assert_str_eq(cfg.traces_url, "http://real:4318/v1/traces");
	/* The global exists for the constructor. */
	osh_config_load(&osh_cfg);
	cr_assert_eq(osh_cfg.bsp_max_queue, 77);
	osh_config_finish(&osh_cfg);
}

Test(config, finish_frees_and_clears)
{
	LOAD("OTEL_SERVICE_NAME", "x", "OTEL_RESOURCE_ATTRIBUTES", "a=b", "TRACEPARENT", "t",
	     "OTEL_EXPORTER_OTLP_HEADERS", "h=1");
	osh_config_finish(&cfg);
	cr_assert_null(cfg.service_name);
	cr_assert_null(cfg.traces_url);
	cr_assert_null(cfg.otlp_headers);
	cr_assert_null(cfg.env_traceparent);
	cr_assert_null(cfg.resource_attrs);
	cr_assert_eq(cfg.n_resource_attrs, 0);
	/* Twice is harmless (the suite's fini runs it again). */
	osh_config_finish(&cfg);
}

/* ---- osh_config_parse_kv_list ---- */

struct kv_want {
	const char *key, *value;
};

static void assert_kv(const char *text, const struct kv_want *want, size_t n_want)
{
	struct osh_kv *kv = (void *)1;
	size_t n = 99;
	int r = osh_config_parse_kv_list(text, &kv, &n);

	cr_assert_eq(r, 0, "\"%s\" -> %d", text, r);
	cr_assert_eq(n, n_want, "\"%s\": %zu members", text, n);
	for (size_t i = 0; i < n_want; i++) {
		cr_assert_str_eq(kv[i].key, want[i].key, "\"%s\" member %zu", text, i);
		cr_assert_str_eq(kv[i].value, want[i].value, "\"%s\" member %zu", text, i);
	}
	if (n == 0)
		cr_assert_null(kv);
	osh_kv_free(kv, n);
}

#define KV(text, ...)                                                                              \
	do {                                                                                       \
		const struct kv_want w_[] = {__VA_ARGS__};                                         \
		assert_kv(text, w_, sizeof(w_) / sizeof(w_[0]));                                   \
	} while (0)

Test(kv_list, valid_lists)
{
	KV("a=b", {"a", "b"});
	KV("key1=value1,key2=value2", {"key1", "value1"}, {"key2", "value2"});
	KV(" a = b , c = d ", {"a", "b"}, {"c", "d"});
	KV("service.name=llm.edge-agent,deployment.environment=prod",
	   {"service.name", "llm.edge-agent"}, {"deployment.environment", "prod"});
	/* Percent-encoded ',' and '=' stay inside keys and values. */
	KV("list=a%2Cb%2cc", {"list", "a,b,c"});
	KV("eq=x%3Dy", {"eq", "x=y"});
	KV("we%3Frd%2Ckey=v", {"we?rd,key", "v"});
	KV("k%3Dk=v%2Cv,n=1", {"k=k", "v,v"}, {"n", "1"});
	/* Spaces around are trimmed before decoding; encoded ones stay. */
	KV("msg=%20hello%20world%20", {"msg", " hello world "});
	KV("pct=100%25", {"pct", "100%"});
	KV("utf=caf%C3%A9", {"utf", "caf\xc3\xa9"});
	KV("raw=caf\xc3\xa9", {"raw", "caf\xc3\xa9"});
	/* Split on the first '=' only. */
	KV("a=b=c", {"a", "b=c"});
	/* Empty values are values. */
	KV("a=,b=2", {"a", ""}, {"b", "2"});
	/* Empty members carry nothing. */
	KV("a=1,,b=2,", {"a", "1"}, {"b", "2"});
	/* A repeated key: the later value, the first position. */
	KV("a=1,b=2,a=3", {"a", "3"}, {"b", "2"});
}

Test(kv_list, empty_lists)
{
	struct osh_kv *kv = (void *)1;
	size_t n = 99;

	cr_assert_eq(osh_config_parse_kv_list("", &kv, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(kv);
	cr_assert_eq(osh_config_parse_kv_list(" , ,", &kv, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(kv);
	osh_kv_free(NULL, 0);
}

Test(kv_list, malformed_lists_fail_whole)
{
	static const char *const bad[] = {
		"a",	 /* no '=' */
		"a=1,b", /* one bad member spoils the list */
		"=v",	 /* empty key */
		" =v",
		"a=1,=2",
		"a=%", /* truncated escapes */
		"a=%4",
		"a=%zz",
		"a=%g1",
		"%=v",
		"a=%00", /* encoded NUL */
		"a=%C3", /* not UTF-8 once decoded */
		"a=%C3%28",
		"a=%ED%A0%80", /* surrogate */
		"a=%C0%AF",    /* overlong */
		"a=%F5%80%80%80",
		"a=\xff",
		"k%FF=v",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct osh_kv *kv = (void *)1;
		size_t n = 99;
		int r = osh_config_parse_kv_list(bad[i], &kv, &n);

		cr_assert_eq(r, -EINVAL, "\"%s\" -> %d", bad[i], r);
		cr_assert_eq(kv, (void *)1, "\"%s\": output untouched", bad[i]);
		cr_assert_eq(n, 99);
	}
}
