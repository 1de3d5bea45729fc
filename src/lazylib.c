/* Lazy loading of jansson and zlib (see lazylib.h). */
#include "buildconf.h"

#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "diag.h"
#include "lazylib.h"

struct sym {
	const char *name;
	size_t off;
};

/* dlopen @soname and fill the function-pointer table @tab from @syms; false
 * (table untouched past what was filled, library closed) when anything is
 * missing. */
static bool load(const char *soname, const struct sym *syms, size_t n, void *tab)
{
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		osh_diag(OSH_LOG_DEBUG, "cannot load %s: %s", soname, dlerror());
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		void *f = dlsym(h, syms[i].name);

		if (!f) {
			osh_diag(OSH_LOG_DEBUG, "%s has no %s", soname, syms[i].name);
			dlclose(h);
			return false;
		}
		*(void **)((char *)tab + syms[i].off) = f;
	}
	return true;	/* the handle stays open for the life of the process */
}

#define J(field, name) { name, offsetof(struct osh_jansson, field) }
static const struct sym jansson_syms[] = {
	J(loadb, "json_loadb"),
	J(delete_, "json_delete"),
	J(object_get, "json_object_get"),
	J(object_iter, "json_object_iter"),
	J(object_iter_next, "json_object_iter_next"),
	J(object_iter_key, "json_object_iter_key"),
	J(object_iter_value, "json_object_iter_value"),
	J(array_size, "json_array_size"),
	J(array_get, "json_array_get"),
	J(string_value, "json_string_value"),
	J(string_length, "json_string_length"),
	J(integer_value, "json_integer_value"),
	J(real_value, "json_real_value"),
	J(number_value, "json_number_value"),
	J(dumps, "json_dumps"),
	J(object, "json_object"),
	J(array, "json_array"),
	J(string, "json_string"),
	J(stringn, "json_stringn"),
	J(integer, "json_integer"),
	J(object_set_new, "json_object_set_new"),
	J(array_append_new, "json_array_append_new"),
};
#undef J

#define Z(field, name) { name, offsetof(struct osh_zlib, field) }
static const struct sym zlib_syms[] = {
	Z(inflateInit2_, "inflateInit2_"),
	Z(inflate, "inflate"),
	Z(inflateEnd, "inflateEnd"),
	Z(inflateReset, "inflateReset"),
	Z(zlibVersion, "zlibVersion"),
};
#undef Z

static struct osh_jansson jansson_tab;
static struct osh_zlib zlib_tab;
static const struct osh_jansson *_Atomic jansson_ready;
static const struct osh_zlib *_Atomic zlib_ready;

static void load_jansson(void)
{
	if (load("libjansson.so.4", jansson_syms, sizeof(jansson_syms) / sizeof(jansson_syms[0]),
		 &jansson_tab))
		atomic_store_explicit(&jansson_ready, &jansson_tab, memory_order_release);
}

static void load_zlib(void)
{
	if (load("libz.so.1", zlib_syms, sizeof(zlib_syms) / sizeof(zlib_syms[0]), &zlib_tab))
		atomic_store_explicit(&zlib_ready, &zlib_tab, memory_order_release);
}

/* pthread_once here is fine: these run at an LLM call, never at load. */
const struct osh_jansson *osh_jansson(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const struct osh_jansson *t = atomic_load_explicit(&jansson_ready, memory_order_acquire);

	if (t)
		return t;
	pthread_once(&once, load_jansson);
	return atomic_load_explicit(&jansson_ready, memory_order_acquire);
}

const struct osh_zlib *osh_zlib(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const struct osh_zlib *t = atomic_load_explicit(&zlib_ready, memory_order_acquire);

	if (t)
		return t;
	pthread_once(&once, load_zlib);
	return atomic_load_explicit(&zlib_ready, memory_order_acquire);
}
