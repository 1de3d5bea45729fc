/* Provider and pricing tables: built in from data/ (JSON), or loaded from the
 * files OTELSHIM_LLM_PROVIDERS / OTELSHIM_LLM_PRICING name. See
 * llm_providers.h. */
#define _GNU_SOURCE

#include <ctype.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "diag.h"
#include "lazylib.h"
#include "llm_providers.h"
#include "propagation.h"	/* osh_percent_decode */
#include "span.h"

struct path_rule {
	const char *prefix;	/* the path starts with it ("" for any) */
	size_t prefix_len;
	const char *tail;	/* the whole path (exact) or how it ends */
	size_t tail_len;
	bool exact;
	uint8_t flavour;
	uint8_t operation;
	bool stream;
};

struct price_entry {
	const char *provider;	/* "*": any */
	const char *model;
	size_t model_len;
	bool prefix;		/* model is a prefix ("name*" in the file) */
	struct osh_llm_price price;
};

#include "llm_tables.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct route_table {
	const struct path_rule *paths;
	size_t n_paths;
	const struct osh_llm_provider *providers;
	size_t n_providers;
	const char *defaults[OSH_LLM_FLAVOURS];
	/* Pre-filter: the last bytes any rule's path can end with, and the
	 * shortest such path. */
	uint64_t last_byte[4];
	size_t min_len;
	/* Second stage: the rules' last four bytes (every tail has four or
	 * more), so that a REST path ending in "s" is turned away without a
	 * walk of the rules. */
	uint32_t last4[32];
	size_t n_last4;		/* 0 when the table has too many to list: no stage */
};

struct price_table {
	const struct price_entry *e;
	size_t n;
};

static struct route_table builtin_routes;
static struct price_table builtin_price_table = { builtin_prices, N(builtin_prices) };
static _Atomic(struct route_table *) routes;
static _Atomic(struct price_table *) prices;

static void index_paths(struct route_table *t)
{
	memset(t->last_byte, 0, sizeof(t->last_byte));
	t->min_len = SIZE_MAX;
	for (size_t i = 0; i < t->n_paths; i++) {
		const struct path_rule *r = &t->paths[i];
		unsigned char last = (unsigned char)r->tail[r->tail_len - 1];
		size_t len = r->prefix_len + r->tail_len;

		t->last_byte[last >> 6] |= 1ull << (last & 63);
		if (len < t->min_len)
			t->min_len = len;
	}
	t->n_last4 = 0;
	for (size_t i = 0; i < t->n_paths; i++) {
		const struct path_rule *r = &t->paths[i];
		uint32_t w;
		size_t k;

		if (r->tail_len < 4 || t->n_last4 == sizeof(t->last4) / sizeof(t->last4[0])) {
			t->n_last4 = 0;	/* cannot list them all: skip the stage */
			return;
		}
		memcpy(&w, r->tail + r->tail_len - 4, 4);
		for (k = 0; k < t->n_last4 && t->last4[k] != w; k++)
			;
		if (k == t->n_last4)
			t->last4[t->n_last4++] = w;
	}
}

/* ---- override files ---------------------------------------------------------- */

static const char *const flavour_names[OSH_LLM_FLAVOURS] = {
	[OSH_LLM_OPENAI] = "openai", [OSH_LLM_ANTHROPIC] = "anthropic",
	[OSH_LLM_GEMINI] = "gemini", [OSH_LLM_OLLAMA] = "ollama", [OSH_LLM_BEDROCK] = "bedrock",
};

static const char *const operation_names[] = {
	[OSH_LLM_OP_CHAT] = "chat", [OSH_LLM_OP_TEXT_COMPLETION] = "text_completion",
	[OSH_LLM_OP_EMBEDDINGS] = "embeddings", [OSH_LLM_OP_GENERATE_CONTENT] = "generate_content",
};

const char *osh_llm_operation_name(enum osh_llm_operation op)
{
	return (unsigned)op < N(operation_names) && operation_names[op] ? operation_names[op]
									   : "chat";
}

static int lookup(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s && i < n; i++)
		if (names[i] && strcmp(names[i], s) == 0)
			return (int)i;
	return -1;
}

static json_t *load_json(const struct osh_jansson *j, const char *path, const char *what)
{
	json_error_t err;
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	json_t *root;

	if (!f) {
		osh_diag(OSH_LOG_WARN, "%s: cannot open %s; using the built-in table", what, path);
		return NULL;
	}
	for (;;) {
		if (len + 4096 > cap) {
			char *q = realloc(buf, cap = cap ? cap * 2 : 8192);
			if (!q || cap > (16u << 20)) {
				free(q ? q : buf);
				fclose(f);
				return NULL;
			}
			buf = q;
		}
		size_t n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	root = j->loadb(buf, len, 0, &err);
	free(buf);
	if (!root || !json_is_object(root)) {
		osh_diag(OSH_LOG_WARN, "%s: %s does not parse (line %d: %s); using the built-in table",
			 what, path, err.line, err.text);
		if (root)
			osh_json_decref(j, root);
		return NULL;
	}
	return root;
}

static const char *str_at(const struct osh_jansson *j, json_t *o, const char *key)
{
	json_t *v = j->object_get(o, key);

	return v && json_is_string(v) ? j->string_value(v) : NULL;
}

/* A loaded table owns copies of its strings (free_routes, free_prices). */
static char *keep_str(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* A loaded table and all its strings (tests reset; failed loads). */
static void free_routes(struct route_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_paths; i++) {
		free((char *)t->paths[i].prefix);
		free((char *)t->paths[i].tail);
	}
	for (size_t i = 0; i < t->n_providers; i++) {
		for (size_t k = 0; k < t->providers[i].n_hosts; k++)
			free((char *)t->providers[i].hosts[k]);
		free((char **)t->providers[i].hosts);
		free((char *)t->providers[i].name);
		free((char *)t->providers[i].system);
	}
	for (int f = 0; f < OSH_LLM_FLAVOURS; f++)
		free((char *)t->defaults[f]);
	free((struct path_rule *)t->paths);
	free((struct osh_llm_provider *)t->providers);
	free(t);
}

static void free_prices(struct price_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free((char *)t->e[i].provider);
		free((char *)t->e[i].model);
	}
	free((struct price_entry *)t->e);
	free(t);
}

static struct route_table *load_routes(const char *path)
{
	const struct osh_jansson *j = osh_jansson();
	struct route_table *t;
	struct path_rule *rules;
	struct osh_llm_provider *provs;
	json_t *root, *paths, *list, *defaults;
	size_t np, nv;

	if (!j) {
		osh_diag(OSH_LOG_WARN, "OTELSHIM_LLM_PROVIDERS: jansson unavailable; using the "
				       "built-in table");
		return NULL;
	}
	root = load_json(j, path, "OTELSHIM_LLM_PROVIDERS");
	if (!root)
		return NULL;
	paths = j->object_get(root, "paths");
	list = j->object_get(root, "providers");
	defaults = j->object_get(root, "defaults");
	if (!paths || !json_is_array(paths) || !list || !json_is_array(list)) {
		osh_diag(OSH_LOG_WARN, "OTELSHIM_LLM_PROVIDERS: %s needs \"paths\" and \"providers\" "
				       "arrays; using the built-in table", path);
		osh_json_decref(j, root);
		return NULL;
	}
	np = j->array_size(paths);
	nv = j->array_size(list);
	t = calloc(1, sizeof(*t));
	rules = calloc(np ? np : 1, sizeof(*rules));
	provs = calloc(nv ? nv : 1, sizeof(*provs));
	if (!t || !rules || !provs)
		goto fail;
	for (size_t i = 0; i < np; i++) {
		json_t *r = j->array_get(paths, i);
		const char *exact = str_at(j, r, "exact"), *suffix = str_at(j, r, "suffix");
		const char *prefix = str_at(j, r, "prefix");
		int fl = lookup(flavour_names, N(flavour_names), str_at(j, r, "flavour"));
		int op = lookup(operation_names, N(operation_names), str_at(j, r, "operation"));
		const char *tail = exact ? exact : suffix;
		json_t *st = j->object_get(r, "stream");

		if (!tail || !tail[0] || fl <= 0 || op <= 0) {
			osh_diag(OSH_LOG_WARN, "OTELSHIM_LLM_PROVIDERS: path rule %zu is incomplete "
					       "(exact or suffix, flavour, operation); skipped", i);
			continue;
		}
		rules[t->n_paths++] = (struct path_rule){
			.prefix = keep_str(prefix ? prefix : ""),
			.prefix_len = prefix ? strlen(prefix) : 0,
			.tail = keep_str(tail),
			.tail_len = strlen(tail),
			.exact = exact != NULL,
			.flavour = (uint8_t)fl,
			.operation = (uint8_t)op,
			.stream = st && json_is_true(st),
		};
	}
	for (size_t i = 0; i < nv; i++) {
		json_t *p = j->array_get(list, i), *hosts = j->object_get(p, "hosts");
		const char *name = str_at(j, p, "name");
		size_t nh = hosts && json_is_array(hosts) ? j->array_size(hosts) : 0;
		char **hv = calloc(nh ? nh : 1, sizeof(*hv));

		if (!name || !hv) {
			free(hv);
			continue;
		}
		for (size_t k = 0; k < nh; k++) {
			json_t *h = j->array_get(hosts, k);
			char *c = json_is_string(h) ? keep_str(j->string_value(h)) : NULL;

			for (char *q = c; q && *q; q++)
				*q = (char)tolower((unsigned char)*q);
			if (c)
				hv[provs[t->n_providers].n_hosts++] = c;
		}
		provs[t->n_providers].name = keep_str(name);
		provs[t->n_providers].system = keep_str(str_at(j, p, "system") ? str_at(j, p, "system")
									       : name);
		provs[t->n_providers].hosts = (const char *const *)hv;
		t->n_providers++;
	}
	for (int f = 1; f < OSH_LLM_FLAVOURS; f++) {
		const char *d = defaults ? str_at(j, defaults, flavour_names[f]) : NULL;

		t->defaults[f] = keep_str(d ? d : builtin_defaults[f]);
	}
	t->paths = rules;
	t->providers = provs;
	osh_json_decref(j, root);
	if (!t->n_paths) {
		osh_diag(OSH_LOG_WARN, "OTELSHIM_LLM_PROVIDERS: %s has no usable path rule; using the "
				       "built-in table", path);
		free_routes(t);
		return NULL;
	}
	index_paths(t);
	return t;
fail:
	free(t);
	free(rules);
	free(provs);
	osh_json_decref(j, root);
	return NULL;
}

static double price_at(const struct osh_jansson *j, json_t *o, const char *key)
{
	json_t *v = j->object_get(o, key);

	return v && json_is_number(v) ? j->number_value(v) : -1.0;
}

static struct price_table *load_prices(const char *path)
{
	const struct osh_jansson *j = osh_jansson();
	struct price_table *t;
	struct price_entry *e;
	json_t *root, *list;
	size_t n;

	if (!j)
		return NULL;
	root = load_json(j, path, "OTELSHIM_LLM_PRICING");
	if (!root)
		return NULL;
	list = j->object_get(root, "prices");
	n = list && json_is_array(list) ? j->array_size(list) : 0;
	t = calloc(1, sizeof(*t));
	e = calloc(n ? n : 1, sizeof(*e));
	if (!t || !e) {
		free(t);
		free(e);
		osh_json_decref(j, root);
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *o = j->array_get(list, i);
		const char *prov = str_at(j, o, "provider"), *model = str_at(j, o, "model");
		double in = price_at(j, o, "input"), out = price_at(j, o, "output");
		size_t ml;

		if (!prov || !model || in < 0 || out < 0) {
			osh_diag(OSH_LOG_WARN, "OTELSHIM_LLM_PRICING: entry %zu needs provider, model, "
					       "input and output; skipped", i);
			continue;
		}
		ml = strlen(model);
		e[t->n] = (struct price_entry){
			.provider = keep_str(prov),
			.prefix = ml && model[ml - 1] == '*',
			.price = { in, out, price_at(j, o, "input_cached"),
				   price_at(j, o, "cache_write") },
		};
		e[t->n].model_len = e[t->n].prefix ? ml - 1 : ml;
		e[t->n].model = strndup(model, e[t->n].model_len);
		t->n++;
	}
	t->e = e;
	osh_json_decref(j, root);
	return t;
}

/* The tables in use: loaded at first need and kept for the process's life.
 * Two threads may both load; one result is kept, the other freed. */
static const struct route_table *route_table(void)
{
	struct route_table *t = atomic_load_explicit(&routes, memory_order_acquire);
	struct route_table *want = NULL, *expected = NULL;

	if (__builtin_expect(t != NULL, 1))
		return t;
	if (osh_cfg.llm_providers_path)
		want = load_routes(osh_cfg.llm_providers_path);
	if (!want) {
		builtin_routes.paths = builtin_paths;
		builtin_routes.n_paths = N(builtin_paths);
		builtin_routes.providers = builtin_providers;
		builtin_routes.n_providers = N(builtin_providers);
		memcpy(builtin_routes.defaults, builtin_defaults, sizeof(builtin_defaults));
		index_paths(&builtin_routes);
		want = &builtin_routes;
	}
	if (!atomic_compare_exchange_strong(&routes, &expected, want)) {
		if (want != &builtin_routes)
			free_routes(want);
		return expected;
	}
	return want;
}

static const struct price_table *price_table(void)
{
	struct price_table *t = atomic_load_explicit(&prices, memory_order_acquire);
	struct price_table *want = NULL, *expected = NULL;

	if (t)
		return t;
	if (osh_cfg.llm_pricing_path)
		want = load_prices(osh_cfg.llm_pricing_path);
	if (!want)
		want = &builtin_price_table;
	if (!atomic_compare_exchange_strong(&prices, &expected, want)) {
		if (want != &builtin_price_table)
			free_prices(want);
		return expected;
	}
	return want;
}

void osh_llm_tables_reset(void)
{
	struct route_table *r = atomic_exchange(&routes, NULL);
	struct price_table *p = atomic_exchange(&prices, NULL);

	if (r != &builtin_routes)
		free_routes(r);
	if (p != &builtin_price_table)
		free_prices(p);
}

/* ---- matching ------------------------------------------------------------------ */

static bool host_glob(const char *pat, const char *h, size_t n)
{
	const char *star = strchr(pat, '*');
	size_t pl, sl;

	if (!star)
		return strlen(pat) == n && strncasecmp(pat, h, n) == 0;
	pl = (size_t)(star - pat);
	sl = strlen(star + 1);
	return n >= pl + sl && strncasecmp(pat, h, pl) == 0 &&
	       strncasecmp(star + 1, h + n - sl, sl) == 0;
}

static const struct osh_llm_provider *provider_named(const struct route_table *t,
						     const char *name)
{
	for (size_t i = 0; i < t->n_providers; i++)
		if (strcmp(t->providers[i].name, name) == 0)
			return &t->providers[i];
	return NULL;
}

static const struct osh_llm_provider *provider_for(const struct route_table *t, uint8_t flavour,
						   const char *host, size_t host_len)
{
	static const struct osh_llm_provider fallback[OSH_LLM_FLAVOURS] = {
		[OSH_LLM_OPENAI] = { "openai", "openai", NULL, 0 },
		[OSH_LLM_ANTHROPIC] = { "anthropic", "anthropic", NULL, 0 },
		[OSH_LLM_GEMINI] = { "gcp.gemini", "gemini", NULL, 0 },
		[OSH_LLM_OLLAMA] = { "ollama", "ollama", NULL, 0 },
		[OSH_LLM_BEDROCK] = { "aws.bedrock", "aws.bedrock", NULL, 0 },
	};
	const struct osh_llm_provider *p;

	for (size_t i = 0; host_len && i < t->n_providers; i++)
		for (size_t k = 0; k < t->providers[i].n_hosts; k++)
			if (host_glob(t->providers[i].hosts[k], host, host_len))
				return &t->providers[i];
	p = t->defaults[flavour] ? provider_named(t, t->defaults[flavour]) : NULL;
	return p ? p : &fallback[flavour];
}

/* The model a Gemini or Bedrock path names: after the last "/models/" up
 * to ':' (Gemini), or the segment after "/model/" (Bedrock, percent-
 * decoded: its ids carry ':' as %3A). */
static void model_from_path(struct osh_llm_route *r, const char *path, size_t n)
{
	const char *s = NULL, *end = path + n;

	if (r->flavour == OSH_LLM_GEMINI) {
		const char *m = memmem(path, n, "/models/", 8);

		if (m) {
			s = m + 8;
			end = memchr(s, ':', (size_t)(path + n - s));
		}
	} else if (r->flavour == OSH_LLM_BEDROCK && n > 7) {
		s = path + 7;
		end = memchr(s, '/', n - 7);
	}
	if (!s || !end)
		return;
	r->path_model_len = (uint8_t)osh_percent_decode(s, (size_t)(end - s), r->path_model,
							sizeof(r->path_model));
}

bool osh_llm_path_maybe(const char *path, size_t path_len)
{
	const struct route_table *t;
	unsigned char last;

	if (path_len < 2)
		return false;
	t = route_table();
	last = (unsigned char)path[path_len - 1];
	if (!(t->last_byte[last >> 6] & (1ull << (last & 63))) || path_len < t->min_len)
		return false;
	if (t->n_last4) {
		uint32_t w;

		memcpy(&w, path + path_len - 4, 4);
		for (size_t k = 0; k < t->n_last4; k++)
			if (t->last4[k] == w)
				return true;
		return false;
	}
	return true;
}

bool osh_llm_match(const char *host, size_t host_len, const char *path, size_t path_len,
		   struct osh_llm_route *ret)
{
	const struct route_table *t;

	/* Most requests end here. */
	if (!osh_llm_path_maybe(path, path_len))
		return false;
	t = route_table();
	for (size_t i = 0; i < t->n_paths; i++) {
		const struct path_rule *r = &t->paths[i];

		if (r->exact) {
			if (path_len != r->tail_len || memcmp(path, r->tail, path_len) != 0)
				continue;
		} else if (path_len < r->prefix_len + r->tail_len ||
			   memcmp(path + path_len - r->tail_len, r->tail, r->tail_len) != 0 ||
			   memcmp(path, r->prefix, r->prefix_len) != 0) {
			continue;
		}
		memset(ret, 0, offsetof(struct osh_llm_route, path_model));
		ret->flavour = r->flavour;
		ret->operation = r->operation;
		ret->stream = r->stream;
		ret->provider = provider_for(t, r->flavour, host, host_len);
		ret->path_model_len = 0;
		ret->path_model[0] = '\0';
		model_from_path(ret, path, path_len);
		{
			size_t hl = host_len < OSH_LLM_ENDPOINT_MAX / 2 ? host_len : 0;
			size_t pl = path_len < OSH_LLM_ENDPOINT_MAX - 1 - hl ? path_len
									     : OSH_LLM_ENDPOINT_MAX - 1 - hl;

			memcpy(ret->endpoint, host, hl);
			memcpy(ret->endpoint + hl, path, pl);
			ret->endpoint_len = (uint16_t)(hl + pl);
			ret->endpoint[ret->endpoint_len] = '\0';
		}
		return true;
	}
	return false;
}

void osh_llm_route_apply(const struct osh_llm_route *route, struct osh_span *rec)
{
	const char *op = osh_llm_operation_name(route->operation);

	osh_span_set_cstr(rec, "gen_ai.operation.name", op);
	osh_span_set_cstr(rec, "gen_ai.provider.name", route->provider->name);
	osh_span_set_cstr(rec, "gen_ai.system", route->provider->system);
	osh_span_set_cstr(rec, "llm.provider.name", route->provider->name);
	osh_span_set_str(rec, "llm.provider.endpoint", route->endpoint, route->endpoint_len);
}

/* ---- prices -------------------------------------------------------------------- */

bool osh_llm_price(const char *provider, const char *model, struct osh_llm_price *ret)
{
	const struct price_table *t = price_table();
	const struct price_entry *best = NULL;
	size_t ml = model ? strlen(model) : 0;

	if (!provider || !ml)
		return false;
	for (size_t i = 0; i < t->n; i++) {
		const struct price_entry *e = &t->e[i];

		if (strcmp(e->provider, provider) != 0 && strcmp(e->provider, "*") != 0)
			continue;
		if (!e->prefix) {
			if (e->model_len == ml && memcmp(e->model, model, ml) == 0) {
				best = e;
				break;	/* exact wins over any prefix */
			}
			continue;
		}
		if (e->model_len <= ml && memcmp(e->model, model, e->model_len) == 0 &&
		    (!best || e->model_len > best->model_len))
			best = e;
	}
	if (!best)
		return false;
	*ret = best->price;
	return true;
}

void osh_llm_cost(const struct osh_llm_price *p, int64_t input, int64_t output,
		  int64_t cache_read, int64_t cache_write, double *ret_input_usd,
		  double *ret_output_usd)
{
	double cached = p->input_cached >= 0 ? p->input_cached : p->input;
	double write = p->cache_write >= 0 ? p->cache_write : p->input;
	int64_t plain;

	if (cache_read < 0)
		cache_read = 0;
	if (cache_write < 0)
		cache_write = 0;
	plain = input - cache_read - cache_write;
	if (plain < 0)
		plain = 0;
	*ret_input_usd = ((double)plain * p->input + (double)cache_read * cached +
			  (double)cache_write * write) / 1e6;
	*ret_output_usd = (double)(output > 0 ? output : 0) * p->output / 1e6;
}
