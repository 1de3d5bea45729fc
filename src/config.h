/* Configuration: environment variables, read once at load.
 *
 * OpenTelemetry's variables (reference: OTel SDK environment variables), the
 * LLM DevOps standard's (ENVIRONMENT, OTLP_ENDPOINT_HTTP, LOG_FORMAT, ...) and
 * OTELSHIM_* for what neither covers. Parsing follows the OTel rules: empty
 * means unset, an invalid value is reported once and replaced by the default.
 *
 * osh_config_load() runs in the constructor (cheap: getenv and copies); the
 * result is read-only afterwards and shared by every thread and the OTLP
 * module. Strings are owned by the config (heap copies: the host may change
 * its environment later).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a timeout of 0 ("no limit") becomes: INT32_MAX ms, about 24 days. */
#define OSH_CONFIG_NO_LIMIT_MS ((uint32_t)INT32_MAX)

enum osh_exporter_kind {
	OSH_EXPORTER_OTLP = 0,
	OSH_EXPORTER_CONSOLE,
	OSH_EXPORTER_NONE,
};

enum osh_sampler_kind {
	OSH_SAMPLER_ALWAYS_ON = 0,
	OSH_SAMPLER_ALWAYS_OFF,
	OSH_SAMPLER_TRACEIDRATIO,
	OSH_SAMPLER_PARENTBASED_ALWAYS_ON,
	OSH_SAMPLER_PARENTBASED_ALWAYS_OFF,
	OSH_SAMPLER_PARENTBASED_TRACEIDRATIO,
};

/* One resource attribute taken from the environment (key and value owned). */
struct osh_kv {
	char *key;
	char *value;
};

struct osh_config {
	bool disabled;			/* OTEL_SDK_DISABLED=true: pure pass-through */
	enum osh_exporter_kind exporter; /* OTEL_TRACES_EXPORTER */
	bool log_json;			/* LOG_FORMAT=json */
	int log_level;			/* enum osh_log_level; OTEL_LOG_LEVEL, silent if unset */

	enum osh_sampler_kind sampler;	/* OTEL_TRACES_SAMPLER */
	double sampler_ratio;		/* OTEL_TRACES_SAMPLER_ARG, [0, 1] */

	bool propagate_tracecontext;	/* OTEL_PROPAGATORS */
	bool propagate_baggage;

	uint32_t bsp_max_queue;		/* OTEL_BSP_MAX_QUEUE_SIZE */
	uint32_t bsp_max_batch;		/* OTEL_BSP_MAX_EXPORT_BATCH_SIZE (<= queue) */
	uint32_t bsp_delay_ms;		/* OTEL_BSP_SCHEDULE_DELAY */
	uint32_t bsp_export_timeout_ms; /* OTEL_BSP_EXPORT_TIMEOUT (0 = no limit -> large) */

	char *traces_url;		/* resolved OTLP/HTTP traces URL (precedence rules) */
	char *otlp_headers;		/* OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, raw */
	bool otlp_gzip;			/* OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION=gzip */
	uint32_t otlp_timeout_ms;	/* OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT */
	char *otlp_certificate;		/* OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE */
	char *otlp_client_key;
	char *otlp_client_certificate;
	enum osh_exporter_kind fallback; /* OTEL_FALLBACK_EXPORTER (console or none) */
	char *otlp_transport;		/* OTELSHIM_OTLP_TRANSPORT: curl or builtin (else by URL) */
	char *otlp_module;		/* OTELSHIM_OTLP_MODULE: the OTLP module's path */
	/* The proxy variables libcurl would read (an empty one is unset):
	 * captured at load like everything else, because a program may
	 * rewrite its environment before the first export (nginx keeps only
	 * TZ), and the exporter thread must not read an environment the
	 * program may be writing at that moment. */
	char *http_proxy;		/* http_proxy (libcurl ignores HTTP_PROXY) */
	char *https_proxy;		/* https_proxy, else HTTPS_PROXY */
	char *all_proxy;		/* all_proxy, else ALL_PROXY */
	char *no_proxy;			/* no_proxy, else NO_PROXY */

	uint32_t exit_timeout_ms;	/* OTELSHIM_EXIT_TIMEOUT_MS: flush budget at exit (2000) */
	uint32_t exporter_nice;		/* OTELSHIM_EXPORTER_NICE: a nice value, 1-19, for the
					 * exporter thread when above the inherited one (0: as
					 * inherited) */
	bool exporter_share_fds;	/* OTELSHIM_EXPORTER_SHARE_FDS: the exporter thread keeps
					 * the program's fd table (off: a table of its own when
					 * it can; docs/ARCHITECTURE.md) */
	bool server_defer;		/* OTELSHIM_SERVER_DEFER: server connections' calls are
					 * logged on the program's threads and observed on the
					 * exporter thread (on) */
	bool process_spans;		/* OTELSHIM_PROCESS_SPANS: a span for the process's life
					 * (off; otelshim-run turns it on) */
	uint32_t retry_initial_ms;	/* OTELSHIM_RETRY_INITIAL_MS: first backoff step (1000) */

	/* LLM calls (docs/ARCHITECTURE.md, "LLM calls"). */
	bool llm_capture_content;	/* OTELSHIM_CAPTURE_CONTENT (or the GenAI instrumentations'
					 * OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT) */
	bool llm_omit_prompts;		/* OTEL_REDACT_PROMPTS=true: never record inputs */
	bool llm_omit_completions;	/* OTEL_REDACT_COMPLETIONS=true: never record outputs */
	uint32_t llm_body_limit;	/* OTELSHIM_LLM_BODY_LIMIT: bytes kept per body (4 MiB) */
	char *llm_providers_path;	/* OTELSHIM_LLM_PROVIDERS: provider table override */
	char *llm_pricing_path;		/* OTELSHIM_LLM_PRICING: pricing table override */

	uint32_t attr_value_limit;	/* OTEL_(SPAN_)ATTRIBUTE_VALUE_LENGTH_LIMIT, 0 = none */
	uint32_t attr_count_limit;	/* OTEL_(SPAN_)ATTRIBUTE_COUNT_LIMIT */

	/* Resource inputs (the resource itself is built on the exporter thread). */
	char *service_name;		/* OTEL_SERVICE_NAME */
	char *service_version;		/* OTEL_SERVICE_VERSION / SERVICE_VERSION */
	char *environment;		/* ENVIRONMENT */
	char *service_namespace;	/* SERVICE_NAMESPACE */
	char *service_instance_id;	/* SERVICE_INSTANCE_ID */
	char *hostname;			/* HOSTNAME */
	char *k8s_namespace, *k8s_pod_name, *k8s_pod_uid, *k8s_node_name;
	char *k8s_deployment_name, *k8s_cluster_name;
	char *cloud_provider, *cloud_region, *cloud_availability_zone, *cloud_account_id;
	struct osh_kv *resource_attrs;	/* OTEL_RESOURCE_ATTRIBUTES, decoded */
	size_t n_resource_attrs;

	/* Environment carrier (TRACEPARENT / TRACESTATE / BAGGAGE), raw values. */
	char *env_traceparent;
	char *env_tracestate;
	char *env_baggage;
};

extern struct osh_config osh_cfg;

/* Fill @cfg from the process environment. Always succeeds: bad values are
 * reported (through diag, once) and replaced by defaults. */
void osh_config_load(struct osh_config *cfg);

/* Same, reading variables through @get (tests pass a fake environment).
 * Zeroes @cfg first (call osh_config_finish before loading into it again).
 * Reads OTEL_LOG_LEVEL and LOG_FORMAT first and calls osh_diag_set() with
 * them, so that warnings about later variables obey them; the caller need not
 * set the diagnostics again. traces_url is NULL only if memory ran out. */
void osh_config_load_from(struct osh_config *cfg, const char *(*get)(const char *name));

/* Free what osh_config_load allocated (tests only). */
void osh_config_finish(struct osh_config *cfg);

/* Parse OTEL_RESOURCE_ATTRIBUTES-style "k=v,k2=v2" with percent-decoding.
 * Returns 0 and a heap array in *ret (caller frees with osh_kv_free), or
 * -EINVAL when any member is malformed (the whole value is then discarded, as
 * the OTel spec asks). An empty string yields 0 members. */
int osh_config_parse_kv_list(const char *text, struct osh_kv **ret, size_t *ret_n);
void osh_kv_free(struct osh_kv *kv, size_t n);
