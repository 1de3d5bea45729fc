/* libcurl transfers as CLIENT spans (see curl_trace.h).
 *
 * The trace context of a transfer is decided as the client engine decides
 * it for a request without a traceparent of its own (http_client.c,
 * decide()), and its span carries the engine's attribute set and name,
 * filled from curl_easy_getinfo() instead of parsed bytes. Timings are
 * attributes (http.client.timing.*, seconds from the transfer's start as
 * libcurl measures them): span records have no events.
 */
#include "buildconf.h"

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "clock.h"
#include "config.h"
#include "context.h"
#include "curl_trace.h"
#include "diag.h"
#include "exporter.h"
#include "guard.h"
#include "http_client.h"
#include "http_util.h"
#include "ids.h"
#include "llm.h"
#include "procspan.h"
#include "propagation.h"
#include "redact.h"
#include "route.h"
#include "span.h"

/* Values longer than these are cut before they reach a span (as in the
 * client engine). */
#define URL_MAX 1024
#define UA_MAX 256

/* ---- the program's libcurl ------------------------------------------------ */

static const struct osh_curl_api *_Atomic api_ptr;
static struct osh_curl_api api_resolved;
static bool api_absent;
static pthread_mutex_t api_lock = PTHREAD_MUTEX_INITIALIZER;

static const struct {
	const char *name;
	size_t off;
	bool optional;
} api_symbols[] = {
	{ "curl_easy_setopt", offsetof(struct osh_curl_api, easy_setopt), false },
	{ "curl_easy_getinfo", offsetof(struct osh_curl_api, easy_getinfo), false },
	{ "curl_easy_perform", offsetof(struct osh_curl_api, easy_perform), false },
	{ "curl_easy_cleanup", offsetof(struct osh_curl_api, easy_cleanup), false },
	{ "curl_easy_reset", offsetof(struct osh_curl_api, easy_reset), false },
	{ "curl_easy_duphandle", offsetof(struct osh_curl_api, easy_duphandle), false },
	{ "curl_multi_add_handle", offsetof(struct osh_curl_api, multi_add_handle), false },
	{ "curl_multi_remove_handle", offsetof(struct osh_curl_api, multi_remove_handle), false },
	{ "curl_multi_info_read", offsetof(struct osh_curl_api, multi_info_read), false },
	{ "curl_multi_perform", offsetof(struct osh_curl_api, multi_perform), false },
	{ "curl_multi_socket_action", offsetof(struct osh_curl_api, multi_socket_action), false },
	{ "curl_multi_socket", offsetof(struct osh_curl_api, multi_socket), true },
	{ "curl_multi_socket_all", offsetof(struct osh_curl_api, multi_socket_all), true },
	{ "curl_url_get", offsetof(struct osh_curl_api, url_get), true },
	{ "curl_free", offsetof(struct osh_curl_api, free), true },
};

/* Debian's flavours of libcurl, for a program that loaded one RTLD_LOCAL
 * from an object dladdr() cannot name. */
static const char *const curl_sonames[] = {
	"libcurl.so.4", "libcurl-gnutls.so.4", "libcurl-nss.so.4",
	"libcurl.so.3", "libcurl-gnutls.so.3",
};

/* True when @f lies in this object (libotelshim.so, or a test program):
 * a lookup that found our own hook found nothing. */
static bool is_ours(const void *f)
{
	Dl_info self, other;

	if (!dladdr((const void *)osh_curl_api_get, &self) || !dladdr(f, &other))
		return false;
	return self.dli_fbase == other.dli_fbase;
}

/* Fill @a from the object that defines @setopt: every entry point from one
 * library, whichever lookup found it first. */
static bool fill_from(struct osh_curl_api *a, const void *setopt)
{
	Dl_info info;
	void *h;

	if (!setopt || is_ours(setopt) || !dladdr(setopt, &info) || !info.dli_fname)
		return false;
	/* The handle pins the library: a program that dlclose()s it cannot
	 * pull the code our pointers lead to from under a hook. */
	h = dlopen(info.dli_fname, RTLD_NOLOAD | RTLD_LAZY);
	if (!h)
		return false;
	memset(a, 0, sizeof(*a));
	for (size_t i = 0; i < sizeof(api_symbols) / sizeof(api_symbols[0]); i++) {
		void *f = dlsym(h, api_symbols[i].name);

		if (!f && !api_symbols[i].optional) {
			osh_diag(OSH_LOG_DEBUG, "%s has no %s", info.dli_fname,
				 api_symbols[i].name);
			return false;
		}
		memcpy((char *)a + api_symbols[i].off, &f, sizeof(f));
	}
	osh_diag(OSH_LOG_DEBUG, "libcurl calls go to %s", info.dli_fname);
	return true;
}

/* fill_from with the curl_easy_setopt that a lookup through the loaded
 * object @name finds (its own dependencies); false when no object of
 * that name is loaded. */
static bool fill_through(struct osh_curl_api *a, const char *name)
{
	void *h = dlopen(name, RTLD_NOLOAD | RTLD_LAZY);
	bool ok;

	if (!h)
		return false;
	ok = fill_from(a, dlsym(h, "curl_easy_setopt"));
	dlclose(h);
	return ok;
}

/* Whether @url (http or https) may name an LLM API (llm.h). */
static bool url_may_be_llm(const char *url)
{
	struct osh_str u = { url, strlen(url) }, auth, path;

	if (!osh_str_has_prefix_ci(u, "http://") && !osh_str_has_prefix_ci(u, "https://"))
		return false;
	osh_http_split_absolute(u, &auth, &path);
	return osh_llm_target_maybe(path);
}

static bool find_library(struct osh_curl_api *a, const void *caller)
{
	Dl_info info;

	/* The usual case: libcurl is in the global scope, after us. */
	if (fill_from(a, dlsym(RTLD_NEXT, "curl_easy_setopt")))
		return true;
	/* Loaded RTLD_LOCAL (a Python extension module): the object that
	 * called the hook has it among its dependencies, and a lookup through
	 * that object's handle searches exactly those. Picking a soname
	 * instead could find another copy (the exporter's own, say) and hand
	 * it a handle of a different libcurl. */
	if (caller && !is_ours(caller) && dladdr(caller, &info) && info.dli_fname &&
	    info.dli_fname[0] && fill_through(a, info.dli_fname))
		return true;
	for (size_t i = 0; i < sizeof(curl_sonames) / sizeof(curl_sonames[0]); i++)
		if (fill_through(a, curl_sonames[i]))
			return true;
	return false;
}

const struct osh_curl_api *osh_curl_api_get(const void *caller)
{
	const struct osh_curl_api *a = atomic_load_explicit(&api_ptr, memory_order_acquire);

	if (__builtin_expect(a != NULL, 1))
		return a;
	pthread_mutex_lock(&api_lock);
	a = atomic_load_explicit(&api_ptr, memory_order_relaxed);
	if (!a && !api_absent) {
		if (find_library(&api_resolved, caller)) {
			a = &api_resolved;
			atomic_store_explicit(&api_ptr, a, memory_order_release);
		} else {
			api_absent = true;
			osh_diag(OSH_LOG_WARN, "cannot find the program's libcurl; "
					       "its calls fail, ignoring");
		}
	}
	pthread_mutex_unlock(&api_lock);
	return a;
}

void osh_curl_api_override(const struct osh_curl_api *api)
{
	pthread_mutex_lock(&api_lock);
	api_absent = false;
	atomic_store_explicit(&api_ptr, api, memory_order_release);
	pthread_mutex_unlock(&api_lock);
}

/* The table for calls made after a transfer started (it was resolved
 * then). */
static const struct osh_curl_api *api_now(void)
{
	return atomic_load_explicit(&api_ptr, memory_order_acquire);
}

/* ---- the handle table ---------------------------------------------------------- */

/* Open addressing with linear probing over pointers to heap records (a
 * record never moves, so a pointer to it stays valid while its handle
 * lives); deletion shifts the run back instead of leaving tombstones. */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct osh_curl_xfer **slots;
static size_t n_slots;		/* a power of two, or 0 */
static size_t n_used;
static bool fork_armed;

/* Traced transfers attached to a multi handle, process-wide. */
static _Atomic long multi_active;

static void table_prepare(void)
{
	pthread_mutex_lock(&table_lock);
}

static void table_release(void)
{
	pthread_mutex_unlock(&table_lock);
}

static size_t slot_of(const void *key, size_t mask)
{
	uint64_t h = (uint64_t)(uintptr_t)key;

	h ^= h >> 29;
	h *= 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 32) & mask;
}

/* Lock held. */
static struct osh_curl_xfer **probe(const void *key)
{
	size_t mask = n_slots - 1;

	if (!n_slots)
		return NULL;
	for (size_t i = slot_of(key, mask);; i = (i + 1) & mask) {
		if (!slots[i] || slots[i]->easy == key)
			return &slots[i];
	}
}

/* Lock held. */
static bool grow(void)
{
	size_t nn = n_slots ? n_slots * 2 : 64;
	struct osh_curl_xfer **ns = calloc(nn, sizeof(*ns));

	if (!ns)
		return false;
	for (size_t i = 0; i < n_slots; i++) {
		if (slots[i]) {
			size_t j = slot_of(slots[i]->easy, nn - 1);

			while (ns[j])
				j = (j + 1) & (nn - 1);
			ns[j] = slots[i];
		}
	}
	free(slots);
	slots = ns;
	n_slots = nn;
	return true;
}

struct osh_curl_xfer *osh_curl_find(const void *easy)
{
	struct osh_curl_xfer **s, *x;

	pthread_mutex_lock(&table_lock);
	s = probe(easy);
	x = s ? *s : NULL;
	pthread_mutex_unlock(&table_lock);
	return x;
}

static struct osh_curl_xfer *create(void *easy)
{
	struct osh_curl_xfer *x = calloc(1, sizeof(*x));
	struct osh_curl_xfer **s;

	if (!x)
		goto fail;
	x->easy = easy;
	x->post_size = -1;
	pthread_mutex_lock(&table_lock);
	if (!fork_armed) {
		/* A child forked while another thread held the lock would
		 * wait for it forever. */
		fork_armed = pthread_atfork(table_prepare, table_release, table_release) == 0;
	}
	if ((n_used + 1) * 2 > n_slots && !grow()) {
		pthread_mutex_unlock(&table_lock);
		free(x);
		goto fail;
	}
	s = probe(easy);
	if (*s) {
		/* Created meanwhile (cannot happen: one thread per handle). */
		free(x);
		x = *s;
	} else {
		*s = x;
		n_used++;
	}
	pthread_mutex_unlock(&table_lock);
	return x;
fail:
	osh_diag_once(OSH_ONCE_ALLOC, OSH_LOG_WARN,
		      "out of memory for a libcurl handle's record; its transfers are not traced");
	return NULL;
}

/* What a record owns besides its list and span. */
static void free_owned(struct osh_curl_xfer *x)
{
	free(x->user_agent);
	free(x->url);
	free(x->post_copy);
	osh_llm_free(x->llm);
	x->user_agent = x->url = x->post_copy = NULL;
	x->llm = NULL;
}

/* Take @x out of the table and free it (its list and span must be gone). */
static void destroy(struct osh_curl_xfer *x)
{
	struct osh_curl_xfer **s;

	pthread_mutex_lock(&table_lock);
	s = probe(x->easy);
	if (s && *s == x) {
		size_t mask = n_slots - 1;
		size_t i = (size_t)(s - slots);

		slots[i] = NULL;
		n_used--;
		/* Move back every later member of the run that may no longer
		 * be reachable from its home slot. */
		for (size_t j = (i + 1) & mask; slots[j]; j = (j + 1) & mask) {
			size_t home = slot_of(slots[j]->easy, mask);

			if (((j - home) & mask) >= ((j - i) & mask)) {
				slots[i] = slots[j];
				slots[j] = NULL;
				i = j;
			}
		}
	}
	pthread_mutex_unlock(&table_lock);
	free_owned(x);
	free(x);
}

void osh_curl_reset_all(void)
{
	pthread_mutex_lock(&table_lock);
	for (size_t i = 0; i < n_slots; i++) {
		struct osh_curl_xfer *x = slots[i];

		if (!x)
			continue;
		free(x->our_list);
		osh_span_destroy(x->rec);
		free_owned(x);
		free(x);
	}
	free(slots);
	slots = NULL;
	n_slots = n_used = 0;
	atomic_store(&multi_active, 0);
	pthread_mutex_unlock(&table_lock);
}

bool osh_curl_multi_busy(void)
{
	return atomic_load_explicit(&multi_active, memory_order_relaxed) > 0;
}

/* ---- options ---------------------------------------------------------------- */

static bool lower_eq(const char *s, size_t n, const char *lit)
{
	return osh_str_has_prefix_ci((struct osh_str){ s, n }, lit) && strlen(lit) == n;
}

static enum osh_curl_url_kind scheme_kind(const char *s, size_t n)
{
	if (lower_eq(s, n, "http"))
		return OSH_CURL_URL_HTTP;
	if (lower_eq(s, n, "https"))
		return OSH_CURL_URL_HTTPS;
	return n ? OSH_CURL_URL_OTHER : OSH_CURL_URL_NONE;
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

enum osh_curl_url_kind osh_curl_url_kind(const char *url)
{
	static const char *const guessed[] = { "ftp.", "dict.", "ldap.", "imap.", "smtp.",
					       "pop3." };
	size_t i = 0;

	if (!url || !*url)
		return OSH_CURL_URL_NONE;
	if (is_alpha(url[0])) {
		while (is_alpha(url[i]) || (url[i] >= '0' && url[i] <= '9') || url[i] == '+' ||
		       url[i] == '-' || url[i] == '.')
			i++;
		if (url[i] == ':' && url[i + 1] == '/')
			return scheme_kind(url, i);
	}
	/* No scheme: libcurl guesses from the host name. */
	for (size_t k = 0; k < sizeof(guessed) / sizeof(guessed[0]); k++) {
		if (osh_str_has_prefix_ci((struct osh_str){ url, strlen(url) }, guessed[k]))
			return OSH_CURL_URL_OTHER;
	}
	return OSH_CURL_URL_GUESS;
}

int osh_curl_setopt_pass(const struct osh_curl_api *a, void *easy, int opt, va_list ap,
			 const void **ret_ptr, long *ret_num)
{
	typedef void (*any_fn)(void);

	*ret_ptr = NULL;
	*ret_num = 0;
	if (opt < CURLOPTTYPE_OBJECTPOINT) {
		*ret_num = va_arg(ap, long);
		return a->easy_setopt(easy, opt, *ret_num);
	}
	if (opt < CURLOPTTYPE_FUNCTIONPOINT) {
		*ret_ptr = va_arg(ap, void *);
		return a->easy_setopt(easy, opt, *ret_ptr);
	}
	if (opt < CURLOPTTYPE_OFF_T) {
		any_fn fn = va_arg(ap, any_fn);

		/* Kept as data (the write callback we may stand in for). */
		*ret_ptr = (const void *)(uintptr_t)fn;
		return a->easy_setopt(easy, opt, fn);
	}
	if (opt < CURLOPTTYPE_BLOB) {
		curl_off_t off = va_arg(ap, curl_off_t);

		*ret_num = (long)off;
		return a->easy_setopt(easy, opt, off);
	}
	/* Blobs, and any later type: a pointer. */
	*ret_ptr = va_arg(ap, void *);
	return a->easy_setopt(easy, opt, *ret_ptr);
}

bool osh_curl_setopt_wanted(int opt)
{
	switch (opt) {
	case CURLOPT_HTTPHEADER:
	case CURLOPT_USERAGENT:
	case CURLOPT_URL:
	case CURLOPT_CURLU:
	case CURLOPT_DEFAULT_PROTOCOL:
	case CURLOPT_CONNECT_ONLY:
	case CURLOPT_POSTFIELDS:
	case CURLOPT_COPYPOSTFIELDS:
	case CURLOPT_POSTFIELDSIZE:
	case CURLOPT_POSTFIELDSIZE_LARGE:
	case CURLOPT_WRITEFUNCTION:
	case CURLOPT_WRITEDATA:
		return true;
	default:
		return false;
	}
}

void osh_curl_setopt(void *easy, int opt, const void *ptr, long num, bool may_create)
{
	struct osh_curl_xfer *x;

	if (!osh_curl_setopt_wanted(opt))
		return;
	x = osh_curl_find(easy);
	if (!x) {
		/* Setting an option back to its default needs no record. */
		bool dflt = opt == CURLOPT_CONNECT_ONLY ? num == 0 : ptr == NULL;

		if (!may_create || dflt || !(x = create(easy)))
			return;
	}
	switch (opt) {
	case CURLOPT_HTTPHEADER:
		/* Also while our list is installed (a program changing it
		 * mid-transfer): the end of the transfer sets this one. */
		x->app_list = (struct curl_slist *)ptr;
		break;
	case CURLOPT_USERAGENT:
		free(x->user_agent);
		x->user_agent = ptr ? strndup(ptr, UA_MAX + 4) : NULL;
		break;
	case CURLOPT_URL:
		x->url_kind = (uint8_t)osh_curl_url_kind(ptr);
		free(x->url);
		x->url = ptr ? strndup(ptr, URL_MAX) : NULL;
		break;
	case CURLOPT_POSTFIELDS:
		x->post = ptr;
		free(x->post_copy);
		x->post_copy = NULL;
		break;
	case CURLOPT_COPYPOSTFIELDS: {
		/* libcurl keeps its own copy and the program may free its
		 * buffer: so do we (up to the LLM body limit), unless the URL
		 * set already cannot be an LLM API's. */
		size_t n = ptr ? (x->post_size >= 0 ? (size_t)x->post_size : strlen(ptr)) : 0;

		if (ptr && x->url && !url_may_be_llm(x->url))
			ptr = NULL;

		if (n > osh_cfg.llm_body_limit)
			n = osh_cfg.llm_body_limit;
		free(x->post_copy);
		x->post_copy = ptr ? malloc(n ? n : 1) : NULL;
		if (x->post_copy)
			memcpy(x->post_copy, ptr, n);
		x->post = x->post_copy;
		if (x->post_copy && x->post_size < 0)
			x->post_size = (int64_t)n;
		break;
	}
	case CURLOPT_POSTFIELDSIZE:
	case CURLOPT_POSTFIELDSIZE_LARGE:
		x->post_size = num;
		break;
	case CURLOPT_WRITEFUNCTION:
		/* Also while ours is installed: the end puts this one back. */
		x->app_write = (void *)ptr;
		break;
	case CURLOPT_WRITEDATA:
		x->app_write_data = (void *)ptr;
		break;
	case CURLOPT_CURLU:
		x->curlu = (void *)ptr;
		break;
	case CURLOPT_DEFAULT_PROTOCOL:
		x->default_kind = ptr ? (uint8_t)scheme_kind(ptr, strlen(ptr)) : OSH_CURL_URL_NONE;
		break;
	case CURLOPT_CONNECT_ONLY:
		x->connect_only = num != 0;
		break;
	default:
		break;
	}
}

/* The scheme the next transfer of @x uses, as far as tracing cares. */
static enum osh_curl_url_kind transfer_kind(const struct osh_curl_api *a,
					    const struct osh_curl_xfer *x)
{
	enum osh_curl_url_kind k = (enum osh_curl_url_kind)x->url_kind;

	if (x->curlu) {
		/* CURLOPT_CURLU overrides CURLOPT_URL. */
		char *s = NULL;

		if (!a->url_get || a->url_get(x->curlu, CURLUPART_SCHEME, &s, 0) != CURLUE_OK || !s)
			return OSH_CURL_URL_NONE;
		k = scheme_kind(s, strlen(s));
		if (a->free)
			a->free(s);
		return k;
	}
	if (k == OSH_CURL_URL_GUESS)
		k = x->default_kind ? (enum osh_curl_url_kind)x->default_kind : OSH_CURL_URL_HTTP;
	return k;
}

/* ---- the program's header list ----------------------------------------------- */

static struct osh_str trim(const char *p, size_t n)
{
	while (n && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
		n--;
	return (struct osh_str){ p, n };
}

void osh_curl_scan_headers(const struct curl_slist *list, struct osh_curl_app_headers *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (const struct curl_slist *l = list; l; l = l->next) {
		const char *s = l->data;
		size_t n = 0;
		struct osh_str name, value;

		if (!s)
			continue;
		while (s[n] && s[n] != ':' && s[n] != ';')
			n++;
		if (!s[n])
			continue; /* not a header line: libcurl sends it as is */
		name = trim(s, n);
		value = trim(s + n + 1, strlen(s + n + 1));
		if (s[n] == ';')
			value.len = 0; /* "Name;": the header, empty */
		if (lower_eq(name.p, name.len, "traceparent")) {
			ret->traceparent_count++;
			ret->traceparent = value;
		} else if (lower_eq(name.p, name.len, "tracestate")) {
			ret->tracestate_count++;
			ret->tracestate = value;
		} else if (lower_eq(name.p, name.len, "baggage")) {
			ret->baggage_count++;
		} else if (lower_eq(name.p, name.len, "x-request-id")) {
			ret->request_id_count++;
		} else if (lower_eq(name.p, name.len, "user-agent")) {
			ret->user_agent_set = true;
			ret->user_agent = value;
		}
	}
}

int osh_curl_build_list(const struct curl_slist *app, const struct osh_curl_line *lines,
			size_t n_lines, struct curl_slist **ret)
{
	size_t n_app = 0, bytes = 0, n;
	struct curl_slist *nodes;
	char *p;

	for (const struct curl_slist *l = app; l; l = l->next)
		n_app++;
	for (size_t i = 0; i < n_lines; i++)
		bytes += strlen(lines[i].name) + 2 + lines[i].value_len + 1;
	n = n_app + n_lines;
	if (!n) {
		*ret = NULL;
		return 0;
	}
	nodes = malloc(n * sizeof(*nodes) + bytes);
	if (!nodes)
		return -ENOMEM;
	p = (char *)(nodes + n);
	n = 0;
	for (const struct curl_slist *l = app; l; l = l->next, n++)
		nodes[n].data = l->data;
	for (size_t i = 0; i < n_lines; i++, n++) {
		size_t nl = strlen(lines[i].name);

		nodes[n].data = p;
		memcpy(p, lines[i].name, nl);
		p += nl;
		*p++ = ':';
		*p++ = ' ';
		memcpy(p, lines[i].value, lines[i].value_len);
		p += lines[i].value_len;
		*p++ = '\0';
	}
	for (size_t i = 0; i + 1 < n; i++)
		nodes[i].next = &nodes[i + 1];
	nodes[n - 1].next = NULL;
	*ret = nodes;
	return 0;
}

/* ---- transfer start ------------------------------------------------------------ */

/* The lines to add for a transfer under @parent (NULL: a root), @tctx
 * (the thread's context when it is the parent), given what the program's
 * list has: the same choice as the client engine's decide() and
 * ctx_lines(). Returns how many went into @out (at most 4). */
static size_t choose_lines(struct osh_curl_line *out, const char *tp_value,
			   const struct osh_trace_ctx *parent, const struct osh_context *tctx,
			   const struct osh_curl_app_headers *h)
{
	size_t n = 0;
	bool ts_ok = osh_cfg.propagate_tracecontext && !h->tracestate_count;
	bool bg_ok = osh_cfg.propagate_baggage && !h->baggage_count;

	if (osh_cfg.propagate_tracecontext)
		out[n++] = (struct osh_curl_line){ "traceparent", tp_value, OSH_TRACEPARENT_LEN };
	if (tctx) {
		if (ts_ok && tctx->tracestate_len)
			out[n++] = (struct osh_curl_line){ "tracestate", tctx->tracestate,
							   tctx->tracestate_len };
		if (bg_ok && tctx->baggage_len)
			out[n++] = (struct osh_curl_line){ "baggage", tctx->baggage,
							   tctx->baggage_len };
		else if (bg_ok && osh_env_ctx.baggage_len)
			out[n++] = (struct osh_curl_line){ "baggage", osh_env_ctx.baggage,
							   osh_env_ctx.baggage_len };
		if (!h->request_id_count && tctx->request_id_len)
			out[n++] = (struct osh_curl_line){ "x-request-id", tctx->request_id,
							   tctx->request_id_len };
		return n;
	}
	if (ts_ok && osh_env_ctx.tracestate_len && parent &&
	    (parent == &osh_env_ctx.parent || parent == osh_procspan_parent()))
		out[n++] = (struct osh_curl_line){ "tracestate", osh_env_ctx.tracestate,
						   osh_env_ctx.tracestate_len };
	if (bg_ok && osh_env_ctx.baggage_len)
		out[n++] = (struct osh_curl_line){ "baggage", osh_env_ctx.baggage,
						   osh_env_ctx.baggage_len };
	return n;
}

/* Set the program's user agent on @rec: a User-Agent entry in its list
 * wins over CURLOPT_USERAGENT (libcurl sends the entry instead); an empty
 * entry means none is sent. */
static void set_user_agent(struct osh_span *rec, const struct osh_curl_xfer *x,
			   const struct osh_curl_app_headers *h)
{
	const char *ua = NULL;
	size_t len = 0;

	if (h->user_agent_set) {
		ua = h->user_agent.p;
		len = h->user_agent.len;
	} else if (x->user_agent) {
		ua = x->user_agent;
		len = strlen(ua);
	}
	if (len)
		osh_span_set_str(rec, "user_agent.original", ua, osh_utf8_cut(ua, len, UA_MAX));
}

static void count_multi(struct osh_curl_xfer *x, bool on)
{
	if (x->in_multi == on)
		return;
	x->in_multi = on;
	atomic_fetch_add_explicit(&multi_active, on ? 1 : -1, memory_order_relaxed);
}

/* ---- LLM calls ------------------------------------------------------------------ */

/* libcurl hands us the body after its framing and (with
 * CURLOPT_ACCEPT_ENCODING) its decoding; the response head is read from
 * getinfo at the first piece. Then the program's own callback, or
 * libcurl's default (fwrite to WRITEDATA, stdout when unset), gets exactly
 * what it would have, and its return value goes back to libcurl. */
static size_t llm_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct osh_curl_xfer *x = userdata;
	size_t (*app)(char *, size_t, size_t, void *) =
		(size_t (*)(char *, size_t, size_t, void *))(uintptr_t)x->app_write;
	int err = errno;

	if (x->llm && osh_guard_enter()) {
		const struct osh_curl_api *a = api_now();

		if (!x->llm_head_seen && a) {
			struct osh_http_response resp = { 0 };
			long code = 0;
			char *ct = NULL;

			a->easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
			if (a->easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct) != CURLE_OK)
				ct = NULL;
			resp.status = (int)code;
			resp.content_type = (struct osh_str){ ct, ct ? strlen(ct) : 0 };
			osh_llm_response_head(x->llm, &resp, OSH_BODY_UNTIL_CLOSE, x->start_ns);
			x->llm_head_seen = true;
		}
		osh_llm_response_body(x->llm, ptr, size * nmemb, osh_clock_realtime_ns());
		osh_guard_leave();
	}
	errno = err;
	if (app)
		return app(ptr, size, nmemb, x->app_write_data);
	return fwrite(ptr, size, nmemb, x->app_write_data ? x->app_write_data : stdout);
}

/* A transfer starting with span @rec: when its URL is an LLM API, a
 * tracker fed the request body now, and our write callback in place. */
static void llm_begin(const struct osh_curl_api *a, struct osh_curl_xfer *x, struct osh_span *rec)
{
	struct osh_str url, auth, path;

	/* LLM APIs take a POST with a JSON body: POSTFIELDS (bodies from a
	 * read callback or MIME parts are not read). */
	if (!rec || !x->url || !x->post ||
	    (x->url_kind != OSH_CURL_URL_HTTP && x->url_kind != OSH_CURL_URL_HTTPS))
		return;
	if (!url_may_be_llm(x->url))
		return;
	url = (struct osh_str){ x->url, strlen(x->url) };
	osh_http_split_absolute(url, &auth, &path);
	x->llm = osh_llm_start(auth, path);
	if (!x->llm)
		return;
	if (x->post) {
		struct osh_http_request req = { 0 };
		size_t n = x->post_size >= 0 ? (size_t)x->post_size : strlen(x->post);

		req.body = OSH_BODY_LENGTH;
		req.content_length = n;
		osh_llm_request_head(x->llm, &req, 0);
		osh_llm_request_body(x->llm, 0, x->post, n);
	}
	x->llm_head_seen = false;
	if (a->easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, llm_write) == CURLE_OK &&
	    a->easy_setopt(x->easy, CURLOPT_WRITEDATA, x) == CURLE_OK) {
		x->write_wrapped = true;
	} else {
		/* Not ours to half-install: the program's callback back. */
		a->easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, x->app_write);
		a->easy_setopt(x->easy, CURLOPT_WRITEDATA, x->app_write_data);
	}
}

/* The program's write callback back in place. */
static void llm_unwrap(const struct osh_curl_api *a, struct osh_curl_xfer *x)
{
	if (!x->write_wrapped)
		return;
	x->write_wrapped = false;
	if (a) {
		a->easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, x->app_write);
		a->easy_setopt(x->easy, CURLOPT_WRITEDATA, x->app_write_data);
	}
}

bool osh_curl_write_wrapped(const void *easy)
{
	const struct osh_curl_xfer *x = osh_curl_find(easy);

	return x && x->write_wrapped;
}

struct osh_curl_xfer *osh_curl_start(void *easy, void *multi)
{
	const struct osh_curl_api *a = api_now();
	struct osh_curl_xfer *x = osh_curl_find(easy);
	struct osh_curl_app_headers h;
	struct osh_http_trace t;
	uint8_t span_id[8];
	char tp[OSH_TRACEPARENT_LEN];
	struct osh_curl_line lines[4];
	size_t n_lines = 0;
	enum osh_curl_url_kind kind;
	struct osh_span *rec = NULL;
	bool sampled;

	if (!x || !a)
		return NULL;
	if (x->active) {
		/* curl_easy_perform() adds the handle to its own multi handle
		 * (through the add hook), a handle is added twice, or perform
		 * is called from inside its own transfer: all part of the
		 * transfer in flight (or refused by libcurl). */
		if (!x->in_multi || x->multi == multi)
			return NULL;
		/* Never ended: its multi handle was cleaned up with the
		 * handle still in it. That transfer is over. */
		osh_curl_end(x, 0, false);
	}
	kind = transfer_kind(a, x);
	if ((kind != OSH_CURL_URL_HTTP && kind != OSH_CURL_URL_HTTPS) || x->connect_only)
		return NULL;

	osh_curl_scan_headers(x->app_list, &h);
	sampled = osh_http_client_trace(&t, (unsigned)h.traceparent_count, h.traceparent);
	osh_ids_span_id(span_id);

	if (sampled && osh_cfg.exporter != OSH_EXPORTER_NONE)
		rec = osh_span_create();
	if (rec) {
		osh_http_client_span_init(rec, &t, span_id, (unsigned)h.tracestate_count,
					  h.tracestate);
		/* Now: the program's list may be gone by the time the
		 * transfer is found to be over (cleanup). */
		set_user_agent(rec, x, &h);
	}

	/* Injection: never when the program propagates by itself. */
	if (!h.traceparent_count) {
		osh_traceparent_format(t.trace_id, span_id, t.flags, tp);
		n_lines = choose_lines(lines, tp, t.parent, t.tctx, &h);
	}
	x->our_list = NULL;
	if (n_lines) {
		struct curl_slist *ours;

		if (osh_curl_build_list(x->app_list, lines, n_lines, &ours) < 0) {
			osh_diag_once(OSH_ONCE_ALLOC, OSH_LOG_WARN,
				      "out of memory for a libcurl header list; "
				      "a transfer goes without traceparent");
		} else if (a->easy_setopt(easy, CURLOPT_HTTPHEADER, ours) != CURLE_OK) {
			free(ours);
		} else {
			x->our_list = ours;
		}
	}
	x->rec = rec;
	x->multi = multi;
	x->active = true;
	x->start_ns = osh_clock_realtime_ns();
	if (rec)
		rec->start_ns = x->start_ns;
	llm_begin(a, x, rec);
	if (multi)
		count_multi(x, true);
	return x;
}

/* Put the program's own list back and free ours. */
static void restore_list(const struct osh_curl_api *a, struct osh_curl_xfer *x)
{
	if (!x->our_list)
		return;
	if (a)
		a->easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->app_list);
	free(x->our_list);
	x->our_list = NULL;
}

void osh_curl_start_failed(struct osh_curl_xfer *x)
{
	llm_unwrap(api_now(), x);
	osh_llm_free(x->llm);
	x->llm = NULL;
	restore_list(api_now(), x);
	osh_span_destroy(x->rec);
	x->rec = NULL;
	x->active = false;
	x->multi = NULL;
	count_multi(x, false);
}

/* ---- transfer end -------------------------------------------------------------- */

static const struct {
	int code;
	const char *name;
} curl_errors[] = {
#define E(c) { c, #c }
	E(CURLE_UNSUPPORTED_PROTOCOL), E(CURLE_FAILED_INIT), E(CURLE_URL_MALFORMAT),
	E(CURLE_COULDNT_RESOLVE_PROXY), E(CURLE_COULDNT_RESOLVE_HOST), E(CURLE_COULDNT_CONNECT),
	E(CURLE_WEIRD_SERVER_REPLY), E(CURLE_REMOTE_ACCESS_DENIED), E(CURLE_HTTP2),
	E(CURLE_PARTIAL_FILE), E(CURLE_HTTP_RETURNED_ERROR), E(CURLE_WRITE_ERROR),
	E(CURLE_UPLOAD_FAILED), E(CURLE_READ_ERROR), E(CURLE_OUT_OF_MEMORY),
	E(CURLE_OPERATION_TIMEDOUT), E(CURLE_RANGE_ERROR), E(CURLE_SSL_CONNECT_ERROR),
	E(CURLE_BAD_DOWNLOAD_RESUME), E(CURLE_ABORTED_BY_CALLBACK), E(CURLE_BAD_FUNCTION_ARGUMENT),
	E(CURLE_INTERFACE_FAILED), E(CURLE_TOO_MANY_REDIRECTS), E(CURLE_UNKNOWN_OPTION),
	E(CURLE_GOT_NOTHING), E(CURLE_SEND_ERROR), E(CURLE_RECV_ERROR), E(CURLE_SSL_CERTPROBLEM),
	E(CURLE_SSL_CIPHER), E(CURLE_PEER_FAILED_VERIFICATION), E(CURLE_BAD_CONTENT_ENCODING),
	E(CURLE_FILESIZE_EXCEEDED), E(CURLE_SEND_FAIL_REWIND), E(CURLE_LOGIN_DENIED),
	E(CURLE_SSL_CACERT_BADFILE), E(CURLE_AGAIN), E(CURLE_SSL_PINNEDPUBKEYNOTMATCH),
	E(CURLE_HTTP2_STREAM), E(CURLE_RECURSIVE_API_CALL), E(CURLE_AUTH_ERROR), E(CURLE_HTTP3),
	E(CURLE_QUIC_CONNECT_ERROR), E(CURLE_PROXY), E(CURLE_SSL_CLIENTCERT),
	E(CURLE_UNRECOVERABLE_POLL),
#undef E
};

const char *osh_curl_error_name(int code, char buf[OSH_CURL_ERROR_NAME_MAX])
{
	struct osh_sb b = { buf, 0, OSH_CURL_ERROR_NAME_MAX - 1 };

	for (size_t i = 0; i < sizeof(curl_errors) / sizeof(curl_errors[0]); i++) {
		if (curl_errors[i].code == code)
			return curl_errors[i].name;
	}
	osh_sb_lit(&b, "CURLE_");
	osh_sb_uint(&b, (unsigned)code);
	buf[b.len] = '\0';
	return buf;
}

/* url.full (redacted), url.path, url.scheme, server.address/port and the
 * span name, from libcurl's effective URL: the client engine's rules for
 * an absolute-form target. */
static void set_url_attrs(struct osh_span *rec, const char *url, const char *method)
{
	struct osh_str u = { url, strlen(url) };
	struct osh_str auth, rest = { "/", 1 }, host = { 0 };
	bool https = osh_str_has_prefix_ci(u, "https://");
	bool absolute = https || osh_str_has_prefix_ci(u, "http://");
	int port = 0;
	char red[URL_MAX + 300];
	size_t n, path_at = 0;
	bool have_path = false;
	char name[300];
	struct osh_sb nb = { name, 0, sizeof(name) };
	char tmpl[256];
	size_t tl;

	if (absolute) {
		osh_http_split_absolute(u, &auth, &rest);
		if (!osh_http_split_authority(auth, &host, &port))
			host.len = 0;
		if (!port)
			port = https ? 443 : 80;
	}
	n = osh_redact_url(url, u.len < URL_MAX ? u.len : URL_MAX, red, sizeof(red));
	have_path = osh_url_path_at(red, n, &path_at);
	osh_http_set_url_full(rec, red, n, have_path, path_at);
	if (absolute) {
		osh_span_set_cstr(rec, "url.scheme", https ? "https" : "http");
		if (host.len)
			osh_span_set_str(rec, "server.address", host.p, host.len);
		osh_span_set_int(rec, "server.port", port);
	}

	/* Name: "{METHOD} {templated path}"; "HTTP" for unknown methods. */
	osh_sb_lit(&nb, method ? method : "HTTP");
	tl = osh_route_template(rest.len ? rest.p : "/", rest.len ? rest.len : 1, tmpl,
				sizeof(tmpl));
	osh_sb_lit(&nb, " ");
	osh_sb_put(&nb, tmpl, tl);
	osh_span_set_name(rec, name, nb.len);
}

static const char *protocol_version(long v)
{
	switch (v) {
	case CURL_HTTP_VERSION_1_0:
		return "1.0";
	case CURL_HTTP_VERSION_1_1:
		return "1.1";
	case CURL_HTTP_VERSION_2_0:
		return "2";
	case CURL_HTTP_VERSION_3:
		return "3";
	default:
		return NULL;
	}
}

/* Fill @rec from what libcurl reports about @easy's last transfer. */
static void fill_span(const struct osh_curl_api *a, void *easy, struct osh_span *rec, int result,
		      bool have_result, bool error_named)
{
	static const struct {
		CURLINFO info;
		const char *key;
	} timings[] = {
		{ CURLINFO_NAMELOOKUP_TIME_T, "http.client.timing.dns_done" },
		{ CURLINFO_CONNECT_TIME_T, "http.client.timing.connect_done" },
		{ CURLINFO_APPCONNECT_TIME_T, "http.client.timing.tls_done" },
		{ CURLINFO_PRETRANSFER_TIME_T, "http.client.timing.request_start" },
		{ CURLINFO_STARTTRANSFER_TIME_T, "http.client.timing.first_byte" },
		{ CURLINFO_TOTAL_TIME_T, "http.client.timing.total" },
	};
	char *url = NULL, *method = NULL, *ip = NULL;
	long code = 0, version = 0, peer_port = 0, redirects = 0;
	curl_off_t up = 0, down = 0, clen = -1;
	const char *known = NULL, *etype = NULL;
	char ebuf[OSH_CURL_ERROR_NAME_MAX];
	char cbuf[12];

	if (a->easy_getinfo(easy, CURLINFO_EFFECTIVE_METHOD, &method) != CURLE_OK)
		method = NULL;
	if (method && *method)
		known = osh_http_set_method(rec, (struct osh_str){ method, strlen(method) });
	if (a->easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url && *url)
		set_url_attrs(rec, url, method && *method ? known : NULL);
	else
		osh_span_set_name(rec, known ? known : "HTTP", strlen(known ? known : "HTTP"));
	if (a->easy_getinfo(easy, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip && *ip)
		osh_span_set_cstr(rec, "network.peer.address", ip);
	if (a->easy_getinfo(easy, CURLINFO_PRIMARY_PORT, &peer_port) == CURLE_OK && peer_port > 0)
		osh_span_set_int(rec, "network.peer.port", peer_port);
	if (a->easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
		code = 0;
	if (a->easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &up) != CURLE_OK)
		up = 0;
	/* A body was sent, or the method carries one (an empty POST says
	 * Content-Length: 0, which the client engine reports too). */
	if (up > 0 || (code > 0 && known &&
		       (!strcmp(known, "POST") || !strcmp(known, "PUT") ||
			!strcmp(known, "PATCH"))))
		osh_span_set_int(rec, "http.request.body.size", (int64_t)up);
	if (code > 0) {
		const char *v;

		osh_span_set_int(rec, "http.response.status_code", code);
		if (a->easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version) == CURLE_OK &&
		    (v = protocol_version(version)))
			osh_span_set_cstr(rec, "network.protocol.version", v);
		if (a->easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &down) != CURLE_OK)
			down = 0;
		osh_span_set_int(rec, "http.response.body.size", (int64_t)down);
		if (a->easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen) != CURLE_OK)
			clen = -1;
	}
	if (a->easy_getinfo(easy, CURLINFO_REDIRECT_COUNT, &redirects) == CURLE_OK && redirects > 0)
		osh_span_set_int(rec, "http.request.resend_count", redirects);
	for (size_t i = 0; i < sizeof(timings) / sizeof(timings[0]); i++) {
		curl_off_t us = 0;

		if (a->easy_getinfo(easy, timings[i].info, &us) == CURLE_OK && us > 0)
			osh_span_add_double(rec, timings[i].key, strlen(timings[i].key),
					    (double)us / 1e6);
	}

	/* The outcome. A status >= 400 is named by its code, also when
	 * CURLOPT_FAILONERROR turned it into CURLE_HTTP_RETURNED_ERROR. */
	if (have_result && result != CURLE_OK &&
	    !(result == CURLE_HTTP_RETURNED_ERROR && code >= 400)) {
		etype = osh_curl_error_name(result, ebuf);
	} else if (!have_result) {
		/* Removed or cleaned up before its end was read: done as far
		 * as anyone can tell, unless nothing or too little came. */
		if (code <= 0)
			etype = "no_response";
		else if (clen >= 0 && down < clen)
			etype = "response_incomplete";
	}
	if (!etype && code >= 400) {
		struct osh_sb b = { cbuf, 0, sizeof(cbuf) - 1 };

		osh_sb_uint(&b, (unsigned)code);
		cbuf[b.len] = '\0';
		etype = cbuf;
	}
	if (etype && !error_named) {
		osh_span_set_cstr(rec, "error.type", etype);
		osh_span_set_status(rec, OSH_STATUS_ERROR, NULL);
	}
}

void osh_curl_end(struct osh_curl_xfer *x, int result, bool have_result)
{
	const struct osh_curl_api *a = api_now();
	struct osh_span *rec = x->rec;

	if (!x->active)
		return;
	x->rec = NULL;
	x->active = false;
	x->multi = NULL;
	count_multi(x, false);
	llm_unwrap(a, x);
	if (rec) {
		struct osh_llm *llm = x->llm;
		bool llm_error = false;
		struct osh_sref name;

		x->llm = NULL;
		rec->end_ns = osh_clock_realtime_ns();
		/* The LLM attributes first: a provider error names the failure
		 * better than the status code, and the span keeps the LLM
		 * name. */
		if (llm)
			llm_error = osh_llm_finish(llm, rec);
		name = rec->name;
		if (a)
			fill_span(a, x->easy, rec, result, have_result, llm_error);
		if (llm)
			rec->name = name;
		osh_exporter_submit(rec);
	}
	osh_llm_free(x->llm);
	x->llm = NULL;
	restore_list(a, x);
}

void osh_curl_info_read(void *multi, const void *msg)
{
	const CURLMsg *m = msg;
	struct osh_curl_xfer *x;

	if (!m || m->msg != CURLMSG_DONE)
		return;
	x = osh_curl_find(m->easy_handle);
	/* Only transfers this multi handle started: curl_easy_perform()
	 * reads the messages of its own internal multi handle through this
	 * hook too. */
	if (x && x->active && x->in_multi && x->multi == multi)
		osh_curl_end(x, m->data.result, true);
}

void osh_curl_removed(void *multi, void *easy)
{
	struct osh_curl_xfer *x = osh_curl_find(easy);

	if (x && x->active && x->in_multi && x->multi == multi && !x->closing)
		osh_curl_end(x, 0, false);
}

struct osh_curl_xfer *osh_curl_cleanup_begin(void *easy)
{
	struct osh_curl_xfer *x = osh_curl_find(easy);

	if (!x)
		return NULL;
	/* getinfo still works now; after the real cleanup the handle is gone. */
	osh_curl_end(x, 0, false);
	x->closing = true;
	return x;
}

void osh_curl_cleanup_done(struct osh_curl_xfer *x)
{
	if (!x)
		return;
	/* osh_curl_end() already set the program's list back, but the handle
	 * is gone now either way: nothing of ours can be left in libcurl. */
	free(x->our_list);
	x->our_list = NULL;
	destroy(x);
}

void osh_curl_reset(void *easy)
{
	struct osh_curl_xfer *x = osh_curl_find(easy);

	if (!x)
		return;
	/* Resetting a handle in use is the program's error; whatever was in
	 * flight is over. The reset dropped our list from libcurl already. */
	if (x->active) {
		osh_span_destroy(x->rec);
		x->rec = NULL;
		x->active = false;
		x->multi = NULL;
		count_multi(x, false);
	}
	free(x->our_list);
	destroy(x);
}

void osh_curl_duphandle(void *src, void *dup, bool may_create)
{
	const struct osh_curl_api *a = api_now();
	struct osh_curl_xfer *x = osh_curl_find(src);
	struct osh_curl_xfer *d;

	if (!x)
		return;
	/* The copy took libcurl's option values, including the list pointer:
	 * when ours was installed, it must not outlive our freeing it. */
	if (x->our_list && a)
		a->easy_setopt(dup, CURLOPT_HTTPHEADER, x->app_list);
	/* So did it take our write callback, when installed. */
	if (x->write_wrapped && a) {
		a->easy_setopt(dup, CURLOPT_WRITEFUNCTION, x->app_write);
		a->easy_setopt(dup, CURLOPT_WRITEDATA, x->app_write_data);
	}
	if (!may_create || !(d = create(dup)))
		return;
	d->app_list = x->app_list;
	d->curlu = x->curlu;
	d->user_agent = x->user_agent ? strdup(x->user_agent) : NULL;
	d->url_kind = x->url_kind;
	d->default_kind = x->default_kind;
	d->connect_only = x->connect_only;
	d->url = x->url ? strdup(x->url) : NULL;
	d->post = x->post;
	d->post_size = x->post_size;
	d->app_write = x->app_write;
	d->app_write_data = x->app_write_data;
	/* libcurl's copy of the data is the dup's own: so is ours. */
	if (x->post_copy && x->post_size >= 0) {
		d->post_copy = malloc(x->post_size ? (size_t)x->post_size : 1);
		if (d->post_copy)
			memcpy(d->post_copy, x->post_copy, (size_t)x->post_size);
		d->post = d->post_copy;
	}
}
