/* Configuration from the environment (see config.h).
 *
 * Runs in the constructor of every preloaded process, so it only calls the
 * getter and copies the values that are set: no file I/O, no syscalls. Numbers
 * are parsed by hand (strtod/strtoul follow the locale and errno rules we do
 * not want to depend on this early).
 */
#include "buildconf.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "diag.h"
#include "percent.h"

struct osh_config osh_cfg;

typedef const char *(*getenv_fn)(const char *name);

#define DEFAULT_TRACES_URL "http://localhost:4318/v1/traces"

/* Not a heap copy: with nothing configured, loading the config must not be
 * the process's first malloc (that sets up the whole heap: brk, the tcache
 * key from getrandom, page faults), which is most of what an idle
 * preloaded process would pay. */
static char default_traces_url[] = DEFAULT_TRACES_URL;
#define TRACES_PATH	   "v1/traces"
#define U31_MAX		   2147483647u

/* Longest piece of a user's value quoted back in a warning. */
#define QUOTE_MAX 200

/* The process environment, filtered once: a preloaded shim runs this in
 * every process, and ~60 getenv() calls each scanning the whole environment
 * cost more than everything else at load. One pass keeps only the entries
 * whose names can matter; lookups then search that short list (usually
 * empty). Load time only (not thread-safe). */
extern char **environ;

static const char *env_subset[128];
static size_t env_subset_n;

#define STARTS(v, lit) (strncmp((v), (lit), sizeof(lit) - 1) == 0)

/* Whether an environment entry's name can matter to us: OTEL*, OTLP_*,
 * K8S_*, CLOUD_*, SERVICE_*, ENVIRONMENT, HOSTNAME, TRACEPARENT, TRACESTATE,
 * BAGGAGE, LOG_FORMAT and the proxy variables. Dispatch on the first
 * letter, so most entries cost one compare. */
static bool env_relevant(const char *v)
{
	switch (v[0]) {
	case 'O':
		return STARTS(v, "OTEL") || STARTS(v, "OTLP_");
	case 'K':
		return STARTS(v, "K8S_");
	case 'C':
		return STARTS(v, "CLOUD_");
	case 'S':
		return STARTS(v, "SERVICE_");
	case 'E':
		return STARTS(v, "ENVIRONMENT=");
	case 'H':
		return STARTS(v, "HOSTNAME=") || STARTS(v, "HTTPS_PROXY=");
	case 'h':
		return STARTS(v, "http_proxy=") || STARTS(v, "https_proxy=");
	case 'a':
		return STARTS(v, "all_proxy=");
	case 'A':
		return STARTS(v, "ALL_PROXY=");
	case 'n':
		return STARTS(v, "no_proxy=");
	case 'N':
		return STARTS(v, "NO_PROXY=");
	case 'T':
		return STARTS(v, "TRACEPARENT=") || STARTS(v, "TRACESTATE=");
	case 'B':
		return STARTS(v, "BAGGAGE=");
	case 'L':
		return STARTS(v, "LOG_FORMAT=");
	default:
		return false;
	}
}

static void env_snapshot(void)
{
	env_subset_n = 0;
	for (char **e = environ; e && *e && env_subset_n < 128; e++)
		if (env_relevant(*e))
			env_subset[env_subset_n++] = *e;
}

static const char *env_get(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < env_subset_n; i++)
		if (strncmp(env_subset[i], name, n) == 0 && env_subset[i][n] == '=')
			return env_subset[i] + n + 1;
	return NULL;
}

/* The value of @name, or NULL when unset or empty (empty is unset). */
static const char *get_set(getenv_fn get, const char *name)
{
	const char *v = get(name);

	return v && *v ? v : NULL;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Trim ASCII white space around [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
	while (*n && is_space(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && is_space((*s)[*n - 1]))
		(*n)--;
}

/* The next member of a comma-separated list, trimmed (possibly empty). *pp
 * walks the list and is NULL after its last member; false once it is. */
static bool next_member(const char **pp, const char **ret_s, size_t *ret_n)
{
	const char *p = *pp, *comma;

	if (!p)
		return false;
	comma = strchr(p, ',');
	*ret_s = p;
	*ret_n = comma ? (size_t)(comma - p) : strlen(p);
	trim(ret_s, ret_n);
	*pp = comma ? comma + 1 : NULL;
	return true;
}

static bool token_is(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static char *dup_env(getenv_fn get, const char *name)
{
	const char *v = get_set(get, name);

	return v ? strdup(v) : NULL;
}

/* Per-signal variable first, then the generic one. */
static char *dup_env2(getenv_fn get, const char *traces_name, const char *generic_name)
{
	char *v = dup_env(get, traces_name);

	return v ? v : dup_env(get, generic_name);
}

/* Decimal integer in 0 .. 2^31-1, surrounding white space allowed. */
static bool parse_u31(const char *s, uint32_t *ret)
{
	size_t n = strlen(s);
	uint32_t v = 0;

	trim(&s, &n);
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(s[i] - '0');
		if (v > U31_MAX)
			return false;
	}
	*ret = v;
	return true;
}

/* Decimal number ("1", "0.25", ".5", "1e-2") in [0, 1]. */
static bool parse_ratio(const char *s, double *ret)
{
	size_t n = strlen(s), i = 0;
	uint64_t mant = 0;
	int digits = 0, scale = 0, exp = 0;
	double v;

	trim(&s, &n);
	if (i < n && s[i] == '+')
		i++;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
		/* Digits past uint64 precision only shift the scale. */
		if (mant < UINT64_C(100000000000000000))
			mant = mant * 10 + (uint64_t)(s[i] - '0');
		else
			scale--;
	}
	if (i < n && s[i] == '.') {
		for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
			if (mant < UINT64_C(100000000000000000)) {
				mant = mant * 10 + (uint64_t)(s[i] - '0');
				scale++;
			}
		}
	}
	if (digits == 0)
		return false;
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		bool neg = false;
		int ed = 0;

		i++;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			neg = s[i++] == '-';
		for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, ed++) {
			if (exp < 10000)
				exp = exp * 10 + (s[i] - '0');
		}
		if (ed == 0)
			return false;
		if (neg)
			exp = -exp;
	}
	if (i != n)
		return false;
	scale -= exp;
	v = (double)mant;
	if (mant != 0) {
		double p = 1.0;

		/* Anything this far out of [0, 1] is rejected below anyway. */
		if (scale < -30)
			return false;
		if (scale > 400)
			scale = 400;
		/* Powers of ten up to 1e22 are exact: one rounding only. */
		for (int k = scale < 0 ? -scale : scale; k > 0; k--)
			p *= 10.0;
		v = scale < 0 ? v * p : v / p;
	}
	if (!(v >= 0.0 && v <= 1.0))
		return false;
	*ret = v;
	return true;
}

/* Boolean: "true" or "false" (any case). Unset or empty is @dflt; anything
 * else is reported and read as @dflt. */
static bool env_bool_or(getenv_fn get, const char *name, bool dflt)
{
	const char *v = get_set(get, name);
	const char *s = v;
	size_t n;

	if (!v)
		return dflt;
	n = strlen(s);
	trim(&s, &n);
	if (token_is(s, n, "true"))
		return true;
	if (token_is(s, n, "false"))
		return false;
	osh_diag(OSH_LOG_WARN, "%s=\"%.*s\" is not a boolean (true or false), using %s", name,
		 QUOTE_MAX, v, dflt ? "true" : "false");
	return dflt;
}

static bool env_bool(getenv_fn get, const char *name)
{
	return env_bool_or(get, name, false);
}

/* Integer variable of at least @min. Returns true and writes *ret only for a
 * valid value; an invalid one is reported and ignored (the caller keeps its
 * default or tries the next variable). */
static bool env_uint(getenv_fn get, const char *name, uint32_t min, uint32_t *ret)
{
	const char *v = get_set(get, name);
	uint32_t x = 0;	/* set by parse_u31() on success; -Os cannot tell */

	if (!v)
		return false;
	if (!parse_u31(v, &x) || x < min) {
		osh_diag(OSH_LOG_WARN, "%s=\"%.*s\" is not an integer in %u..%u, ignoring", name,
			 QUOTE_MAX, v, min, U31_MAX);
		return false;
	}
	*ret = x;
	return true;
}

/* Timeout in ms: as env_uint, and 0 means no limit. */
static bool env_timeout(getenv_fn get, const char *name, uint32_t *ret)
{
	uint32_t x;

	if (!env_uint(get, name, 0, &x))
		return false;
	*ret = x ? x : OSH_CONFIG_NO_LIMIT_MS;
	return true;
}

struct name_val {
	const char *name;
	int val;
};

static bool lookup(const struct name_val *t, size_t n_t, const char *s, size_t n, int *ret)
{
	for (size_t i = 0; i < n_t; i++) {
		if (token_is(s, n, t[i].name)) {
			*ret = t[i].val;
			return true;
		}
	}
	return false;
}

/* Enum variable, case-insensitive. Unknown values are reported (with the
 * raw value) and ignored. */
static bool env_enum(getenv_fn get, const char *name, const struct name_val *t, size_t n_t,
		     int *ret)
{
	const char *v = get_set(get, name);
	const char *s = v;
	size_t n;

	if (!v)
		return false;
	n = strlen(s);
	trim(&s, &n);
	if (lookup(t, n_t, s, n, ret))
		return true;
	osh_diag(OSH_LOG_WARN, "%s=\"%.*s\" is not a supported value, ignoring", name, QUOTE_MAX,
		 v);
	return false;
}

#define N(t) (sizeof(t) / sizeof((t)[0]))

static const struct name_val log_levels[] = {
	{"none", OSH_LOG_NONE},	   {"error", OSH_LOG_ERROR}, {"warn", OSH_LOG_WARN},
	{"warning", OSH_LOG_WARN}, {"info", OSH_LOG_INFO},   {"debug", OSH_LOG_DEBUG},
};

static const struct name_val log_formats[] = {
	{"text", 0},
	{"json", 1},
};

static const struct name_val samplers[] = {
	{"always_on", OSH_SAMPLER_ALWAYS_ON},
	{"always_off", OSH_SAMPLER_ALWAYS_OFF},
	{"traceidratio", OSH_SAMPLER_TRACEIDRATIO},
	{"parentbased_always_on", OSH_SAMPLER_PARENTBASED_ALWAYS_ON},
	{"parentbased_always_off", OSH_SAMPLER_PARENTBASED_ALWAYS_OFF},
	{"parentbased_traceidratio", OSH_SAMPLER_PARENTBASED_TRACEIDRATIO},
};

static const struct name_val fallbacks[] = {
	{"console", OSH_EXPORTER_CONSOLE},
	{"stdout", OSH_EXPORTER_CONSOLE},
	{"logging", OSH_EXPORTER_CONSOLE},
	{"none", OSH_EXPORTER_NONE},
};

static const struct name_val compressions[] = {
	{"none", 0},
	{"gzip", 1},
};

/* LOG_FORMAT and OTEL_LOG_LEVEL come first so that every later warning is
 * emitted (or not) as the user asked; their own complaints wait until the
 * diagnostics are set up. */
static void load_diag(struct osh_config *cfg, getenv_fn get)
{
	const char *fmt = get_set(get, "LOG_FORMAT");
	const char *lv = get_set(get, "OTEL_LOG_LEVEL");
	bool fmt_bad = false, lv_bad = false;
	const char *s;
	size_t n;
	int v;

	if (fmt) {
		s = fmt;
		n = strlen(s);
		trim(&s, &n);
		if (lookup(log_formats, N(log_formats), s, n, &v))
			cfg->log_json = v;
		else
			fmt_bad = true;
	}
	cfg->log_level = OSH_LOG_NONE;
	if (lv) {
		s = lv;
		n = strlen(s);
		trim(&s, &n);
		if (lookup(log_levels, N(log_levels), s, n, &v))
			cfg->log_level = v;
		else
			lv_bad = true;
	}
	/* A level we do not know still shows the user wanted some output:
	 * tell them why there is none, then stay silent (the default). */
	osh_diag_set(lv_bad ? OSH_LOG_WARN : cfg->log_level, cfg->log_json);
	if (lv_bad)
		osh_diag(
			OSH_LOG_WARN,
			"OTEL_LOG_LEVEL=\"%.*s\" is not none, error, warn, info or debug, ignoring",
			QUOTE_MAX, lv);
	if (fmt_bad)
		osh_diag(OSH_LOG_WARN, "LOG_FORMAT=\"%.*s\" is not text or json, ignoring",
			 QUOTE_MAX, fmt);
	osh_diag_set(cfg->log_level, cfg->log_json);
}

/* OTEL_TRACES_EXPORTER may be a list: otlp if present, else console, else
 * none. Members we do not have are reported and skipped. */
static void load_exporter(struct osh_config *cfg, getenv_fn get)
{
	const char *v = get_set(get, "OTEL_TRACES_EXPORTER");
	bool otlp = false, console = false, none = false;
	size_t n;

	cfg->exporter = OSH_EXPORTER_OTLP;
	if (!v)
		return;
	for (const char *p = v, *s; next_member(&p, &s, &n);) {
		if (token_is(s, n, "otlp"))
			otlp = true;
		else if (token_is(s, n, "console") || token_is(s, n, "logging"))
			console = true;
		else if (token_is(s, n, "none"))
			none = true;
		else if (n)
			osh_diag(OSH_LOG_WARN,
				 "OTEL_TRACES_EXPORTER: \"%.*s\" is not supported (otlp, console, "
				 "none), ignoring it",
				 (int)(n < QUOTE_MAX ? n : QUOTE_MAX), s);
	}
	if (otlp)
		cfg->exporter = OSH_EXPORTER_OTLP;
	else if (console)
		cfg->exporter = OSH_EXPORTER_CONSOLE;
	else if (none)
		cfg->exporter = OSH_EXPORTER_NONE;
}

/* The standard reads OTEL_TRACES_SAMPLER_ARG on its own as "parent-based,
 * this ratio" (llm-devops-standard.md §3, §7), which the OTel spec leaves
 * meaningless (the argument is only read with a sampler), so honouring it
 * changes nothing for OTel-style configurations. */
static void load_sampler(struct osh_config *cfg, getenv_fn get)
{
	const char *arg = get_set(get, "OTEL_TRACES_SAMPLER_ARG");
	bool chosen;
	int v;

	cfg->sampler = OSH_SAMPLER_PARENTBASED_ALWAYS_ON;
	cfg->sampler_ratio = 1.0;
	chosen = env_enum(get, "OTEL_TRACES_SAMPLER", samplers, N(samplers), &v);
	if (chosen)
		cfg->sampler = v;
	if (chosen && cfg->sampler != OSH_SAMPLER_TRACEIDRATIO &&
	    cfg->sampler != OSH_SAMPLER_PARENTBASED_TRACEIDRATIO)
		return;
	if (!arg)
		return;
	if (!parse_ratio(arg, &cfg->sampler_ratio)) {
		cfg->sampler_ratio = 1.0;
		osh_diag(OSH_LOG_WARN,
			 "OTEL_TRACES_SAMPLER_ARG=\"%.*s\" is not a ratio in [0, 1], ignoring",
			 QUOTE_MAX, arg);
		return;
	}
	if (!chosen)
		cfg->sampler = OSH_SAMPLER_PARENTBASED_TRACEIDRATIO;
}

/* OTEL_PROPAGATORS: the ones we have are tracecontext and baggage. Others are
 * reported once and skipped; "none" turns both off unless one of ours is
 * listed too; a list naming nothing we know keeps the default. */
static void load_propagators(struct osh_config *cfg, getenv_fn get)
{
	const char *v = get_set(get, "OTEL_PROPAGATORS");
	bool tc = false, bg = false, none = false;
	size_t n;

	cfg->propagate_tracecontext = true;
	cfg->propagate_baggage = true;
	if (!v)
		return;
	for (const char *p = v, *s; next_member(&p, &s, &n);) {
		if (token_is(s, n, "tracecontext"))
			tc = true;
		else if (token_is(s, n, "baggage"))
			bg = true;
		else if (token_is(s, n, "none"))
			none = true;
		else if (n)
			osh_diag_once(OSH_ONCE_PROPAGATOR, OSH_LOG_WARN,
				      "OTEL_PROPAGATORS: \"%.*s\" is not supported (tracecontext, "
				      "baggage, none), ignoring it",
				      (int)(n < QUOTE_MAX ? n : QUOTE_MAX), s);
	}
	if (tc || bg || none) {
		cfg->propagate_tracecontext = tc;
		cfg->propagate_baggage = bg;
	}
}

static void load_bsp(struct osh_config *cfg, getenv_fn get)
{
	bool batch_set;

	cfg->bsp_max_queue = 2048;
	cfg->bsp_max_batch = 512;
	cfg->bsp_delay_ms = 5000;
	cfg->bsp_export_timeout_ms = 30000;
	env_uint(get, "OTEL_BSP_MAX_QUEUE_SIZE", 1, &cfg->bsp_max_queue);
	batch_set = env_uint(get, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1, &cfg->bsp_max_batch);
	env_uint(get, "OTEL_BSP_SCHEDULE_DELAY", 0, &cfg->bsp_delay_ms);
	env_timeout(get, "OTEL_BSP_EXPORT_TIMEOUT", &cfg->bsp_export_timeout_ms);
	if (cfg->bsp_max_batch > cfg->bsp_max_queue) {
		if (batch_set)
			osh_diag(OSH_LOG_WARN,
				 "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=%u is larger than the queue (%u), "
				 "using %u",
				 cfg->bsp_max_batch, cfg->bsp_max_queue, cfg->bsp_max_queue);
		cfg->bsp_max_batch = cfg->bsp_max_queue;
	}
}

/* Length of "scheme://" at the start of @url, 0 when there is none. */
static size_t scheme_len(const char *url, size_t n)
{
	size_t i = 0;

	if (n == 0 || !((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z')))
		return 0;
	while (i < n && ((url[i] >= 'a' && url[i] <= 'z') || (url[i] >= 'A' && url[i] <= 'Z') ||
			 (url[i] >= '0' && url[i] <= '9') || url[i] == '+' || url[i] == '-' ||
			 url[i] == '.'))
		i++;
	if (n - i >= 3 && memcmp(url + i, "://", 3) == 0)
		return i + 3;
	return 0;
}

/* Where the path of @url starts (its end if it has none): just after the
 * authority. */
static size_t path_start(const char *url, size_t n)
{
	size_t i = scheme_len(url, n);

	while (i < n && url[i] != '/' && url[i] != '?' && url[i] != '#')
		i++;
	return i;
}

/* End of the path: the query or fragment, or the end. */
static size_t path_end(const char *url, size_t n, size_t from)
{
	while (from < n && url[from] != '?' && url[from] != '#')
		from++;
	return from;
}

/* Assemble a URL from @url (trimmed, length @n): "http://" when it has no
 * scheme (the spec's default scheme), then url[0, cut), then @insert, then
 * url[resume, n). */
static char *url_splice(const char *url, size_t n, size_t cut, const char *insert, size_t resume)
{
	const char *scheme = scheme_len(url, n) ? "" : "http://";
	size_t ls = strlen(scheme), li = strlen(insert);
	char *out = malloc(ls + cut + li + (n - resume) + 1);

	if (!out)
		return NULL;
	memcpy(out, scheme, ls);
	memcpy(out + ls, url, cut);
	memcpy(out + ls + cut, insert, li);
	memcpy(out + ls + cut + li, url + resume, n - resume);
	out[ls + cut + li + n - resume] = '\0';
	return out;
}

/* A per-signal endpoint is used as is; only an empty path becomes "/"
 * (otlp.md §1.1). */
static char *url_as_is(const char *v)
{
	size_t n = strlen(v), ps;

	trim(&v, &n);
	ps = path_start(v, n);
	if (ps < n && v[ps] == '/')
		return url_splice(v, n, n, "", n);
	return url_splice(v, n, ps, "/", ps);
}

/* A base endpoint gets "/v1/traces" appended to its path, with exactly one
 * '/' in between; query and fragment (odd in a base URL) stay at the end. */
static char *url_with_traces(const char *v)
{
	size_t n = strlen(v), ps, pe, cut;

	trim(&v, &n);
	ps = path_start(v, n);
	pe = path_end(v, n, ps);
	cut = pe;
	while (cut > ps && v[cut - 1] == '/')
		cut--;
	return url_splice(v, n, cut, "/" TRACES_PATH, pe);
}

static void load_otlp(struct osh_config *cfg, getenv_fn get)
{
	const char *url;
	int gz, v;

	url = get_set(get, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
	if (url)
		cfg->traces_url = url_as_is(url);
	else if ((url = get_set(get, "OTEL_EXPORTER_OTLP_ENDPOINT")))
		cfg->traces_url = url_with_traces(url);
	else if ((url = get_set(get, "OTLP_ENDPOINT_HTTP")))
		cfg->traces_url = url_with_traces(url);
	else
		cfg->traces_url = default_traces_url;

	cfg->otlp_headers =
		dup_env2(get, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS");
	cfg->otlp_certificate = dup_env2(get, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
					 "OTEL_EXPORTER_OTLP_CERTIFICATE");
	cfg->otlp_client_key = dup_env2(get, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
					"OTEL_EXPORTER_OTLP_CLIENT_KEY");
	cfg->otlp_client_certificate = dup_env2(get, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
						"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE");

	/* An invalid per-signal value is ignored, i.e. as if unset: the
	 * generic variable then applies. */
	cfg->otlp_gzip = false;
	if (env_enum(get, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", compressions, N(compressions),
		     &gz) ||
	    env_enum(get, "OTEL_EXPORTER_OTLP_COMPRESSION", compressions, N(compressions), &gz))
		cfg->otlp_gzip = gz;

	cfg->otlp_timeout_ms = 10000;
	if (!env_timeout(get, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", &cfg->otlp_timeout_ms))
		env_timeout(get, "OTEL_EXPORTER_OTLP_TIMEOUT", &cfg->otlp_timeout_ms);

	cfg->fallback = OSH_EXPORTER_NONE;
	if (env_enum(get, "OTEL_FALLBACK_EXPORTER", fallbacks, N(fallbacks), &v))
		cfg->fallback = v;

	cfg->otlp_transport = dup_env(get, "OTELSHIM_OTLP_TRANSPORT");
	cfg->otlp_module = dup_env(get, "OTELSHIM_OTLP_MODULE");
	cfg->http_proxy = dup_env(get, "http_proxy");
	cfg->https_proxy = dup_env2(get, "https_proxy", "HTTPS_PROXY");
	cfg->all_proxy = dup_env2(get, "all_proxy", "ALL_PROXY");
	cfg->no_proxy = dup_env2(get, "no_proxy", "NO_PROXY");
}

static void load_limits(struct osh_config *cfg, getenv_fn get)
{
	cfg->exit_timeout_ms = 2000;
	env_uint(get, "OTELSHIM_EXIT_TIMEOUT_MS", 0, &cfg->exit_timeout_ms);
	env_uint(get, "OTELSHIM_EXPORTER_NICE", 0, &cfg->exporter_nice);
	cfg->exporter_share_fds = env_bool(get, "OTELSHIM_EXPORTER_SHARE_FDS");
	cfg->server_defer = env_bool_or(get, "OTELSHIM_SERVER_DEFER", true);
	if (cfg->exporter_nice > 19)
		cfg->exporter_nice = 19;
	/* Off by default: with it every preloaded process exports a span, and
	 * a busy shell script would flood the backend. otelshim-run sets it. */
	cfg->process_spans = env_bool(get, "OTELSHIM_PROCESS_SPANS");
	/* 0 would make the backoff a busy loop. */
	cfg->retry_initial_ms = 1000;
	env_uint(get, "OTELSHIM_RETRY_INITIAL_MS", 1, &cfg->retry_initial_ms);

	cfg->llm_capture_content = env_bool(get, "OTELSHIM_CAPTURE_CONTENT") ||
				   env_bool(get, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT");
	cfg->llm_omit_prompts = env_bool(get, "OTEL_REDACT_PROMPTS");
	cfg->llm_omit_completions = env_bool(get, "OTEL_REDACT_COMPLETIONS");
	cfg->llm_body_limit = 4u << 20;
	env_uint(get, "OTELSHIM_LLM_BODY_LIMIT", 0, &cfg->llm_body_limit);
	cfg->llm_providers_path = dup_env(get, "OTELSHIM_LLM_PROVIDERS");
	cfg->llm_pricing_path = dup_env(get, "OTELSHIM_LLM_PRICING");

	/* Span-specific limit, then the general one, then the default. */
	cfg->attr_value_limit = 0;
	if (!env_uint(get, "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", 0, &cfg->attr_value_limit))
		env_uint(get, "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", 0, &cfg->attr_value_limit);
	cfg->attr_count_limit = 128;
	if (!env_uint(get, "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", 0, &cfg->attr_count_limit))
		env_uint(get, "OTEL_ATTRIBUTE_COUNT_LIMIT", 0, &cfg->attr_count_limit);
}

static void load_resource(struct osh_config *cfg, getenv_fn get)
{
	const char *attrs = get_set(get, "OTEL_RESOURCE_ATTRIBUTES");

	cfg->service_name = dup_env(get, "OTEL_SERVICE_NAME");
	cfg->service_version = dup_env2(get, "OTEL_SERVICE_VERSION", "SERVICE_VERSION");
	cfg->environment = dup_env(get, "ENVIRONMENT");
	cfg->service_namespace = dup_env(get, "SERVICE_NAMESPACE");
	cfg->service_instance_id = dup_env(get, "SERVICE_INSTANCE_ID");
	cfg->hostname = dup_env(get, "HOSTNAME");
	cfg->k8s_namespace = dup_env(get, "K8S_NAMESPACE");
	cfg->k8s_pod_name = dup_env(get, "K8S_POD_NAME");
	cfg->k8s_pod_uid = dup_env(get, "K8S_POD_UID");
	cfg->k8s_node_name = dup_env(get, "K8S_NODE_NAME");
	cfg->k8s_deployment_name = dup_env(get, "K8S_DEPLOYMENT_NAME");
	cfg->k8s_cluster_name = dup_env(get, "K8S_CLUSTER_NAME");
	cfg->cloud_provider = dup_env(get, "CLOUD_PROVIDER");
	cfg->cloud_region = dup_env(get, "CLOUD_REGION");
	cfg->cloud_availability_zone = dup_env(get, "CLOUD_AVAILABILITY_ZONE");
	cfg->cloud_account_id = dup_env(get, "CLOUD_ACCOUNT_ID");

	if (attrs &&
	    osh_config_parse_kv_list(attrs, &cfg->resource_attrs, &cfg->n_resource_attrs) < 0) {
		/* The spec asks for an error, and for none of the members. */
		osh_diag(OSH_LOG_ERROR,
			 "OTEL_RESOURCE_ATTRIBUTES=\"%.*s\" is not a list of key=value with "
			 "percent-encoding, ignoring all of it",
			 QUOTE_MAX, attrs);
		cfg->resource_attrs = NULL;
		cfg->n_resource_attrs = 0;
	}

	cfg->env_traceparent = dup_env(get, "TRACEPARENT");
	cfg->env_tracestate = dup_env(get, "TRACESTATE");
	cfg->env_baggage = dup_env(get, "BAGGAGE");
}

void osh_config_load_from(struct osh_config *cfg, const char *(*get)(const char *name))
{
	memset(cfg, 0, sizeof(*cfg));
	load_diag(cfg, get);

	if (get_set(get, "OTEL_CONFIG_FILE"))
		osh_diag(
			OSH_LOG_WARN,
			"OTEL_CONFIG_FILE is not supported, reading environment variables instead");

	cfg->disabled = env_bool(get, "OTEL_SDK_DISABLED");
	load_exporter(cfg, get);
	load_sampler(cfg, get);
	load_propagators(cfg, get);
	load_bsp(cfg, get);
	load_otlp(cfg, get);
	load_limits(cfg, get);
	load_resource(cfg, get);
}

void osh_config_load(struct osh_config *cfg)
{
	env_snapshot();
	osh_config_load_from(cfg, env_get);
}

void osh_config_finish(struct osh_config *cfg)
{
	if (cfg->traces_url == default_traces_url)
		cfg->traces_url = NULL;
	char **strs[] = {
		&cfg->traces_url,
		&cfg->otlp_headers,
		&cfg->otlp_certificate,
		&cfg->otlp_client_key,
		&cfg->otlp_client_certificate,
		&cfg->otlp_transport,
		&cfg->otlp_module,
		&cfg->http_proxy,
		&cfg->https_proxy,
		&cfg->all_proxy,
		&cfg->no_proxy,
		&cfg->llm_providers_path,
		&cfg->llm_pricing_path,
		&cfg->service_name,
		&cfg->service_version,
		&cfg->environment,
		&cfg->service_namespace,
		&cfg->service_instance_id,
		&cfg->hostname,
		&cfg->k8s_namespace,
		&cfg->k8s_pod_name,
		&cfg->k8s_pod_uid,
		&cfg->k8s_node_name,
		&cfg->k8s_deployment_name,
		&cfg->k8s_cluster_name,
		&cfg->cloud_provider,
		&cfg->cloud_region,
		&cfg->cloud_availability_zone,
		&cfg->cloud_account_id,
		&cfg->env_traceparent,
		&cfg->env_tracestate,
		&cfg->env_baggage,
	};

	for (size_t i = 0; i < N(strs); i++) {
		free(*strs[i]);
		*strs[i] = NULL;
	}
	osh_kv_free(cfg->resource_attrs, cfg->n_resource_attrs);
	cfg->resource_attrs = NULL;
	cfg->n_resource_attrs = 0;
}

/* ---- OTEL_RESOURCE_ATTRIBUTES ---- */

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing past
 * U+10FFFF. The values end up in OTLP string fields, which must be UTF-8. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* Percent-decode [s, s + n) into a new string. -EINVAL for a bad escape,
 * an encoded NUL or a result that is not UTF-8. */
static int pct_decode(const char *s, size_t n, char **ret)
{
	char *out = malloc(n + 1);
	size_t o;

	if (!out)
		return -ENOMEM;
	if (!osh_percent_decode_strict(s, n, out, &o) || memchr(out, '\0', o) ||
	    !utf8_valid((const unsigned char *)out, o)) {
		free(out);
		return -EINVAL;
	}
	*ret = out;
	return 0;
}

int osh_config_parse_kv_list(const char *text, struct osh_kv **ret, size_t *ret_n)
{
	struct osh_kv *kv;
	size_t cap = 1, n = 0, len;
	int r = 0;

	for (const char *p = text; *p; p++)
		cap += *p == ',';
	kv = calloc(cap, sizeof(*kv));
	if (!kv)
		return -ENOMEM;

	for (const char *p = text, *m; next_member(&p, &m, &len);) {
		const char *eq, *k, *v;
		size_t kn, vn, i;
		char *key, *value;

		/* Empty members ("a=1,,b=2", a trailing comma) carry nothing. */
		if (len == 0)
			continue;
		eq = memchr(m, '=', len);
		if (!eq) {
			r = -EINVAL;
			goto fail;
		}
		k = m;
		kn = (size_t)(eq - m);
		v = eq + 1;
		vn = len - kn - 1;
		trim(&k, &kn);
		trim(&v, &vn);
		if (kn == 0) {
			r = -EINVAL;
			goto fail;
		}
		r = pct_decode(k, kn, &key);
		if (r < 0)
			goto fail;
		r = pct_decode(v, vn, &value);
		if (r < 0) {
			free(key);
			goto fail;
		}
		/* A repeated key: the later member wins, in the first one's place. */
		for (i = 0; i < n; i++) {
			if (strcmp(kv[i].key, key) == 0)
				break;
		}
		if (i < n) {
			free(key);
			free(kv[i].value);
			kv[i].value = value;
		} else {
			kv[n].key = key;
			kv[n].value = value;
			n++;
		}
	}
	if (n == 0) {
		free(kv);
		kv = NULL;
	}
	*ret = kv;
	*ret_n = n;
	return 0;
fail:
	osh_kv_free(kv, n);
	return r;
}

void osh_kv_free(struct osh_kv *kv, size_t n)
{
	if (!kv)
		return;
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}
