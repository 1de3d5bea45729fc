/* jansson and zlib, loaded when first needed (an LLM call's body), never
 * at preload: the shim's NEEDED list stays libc-only, and a process that
 * never calls an LLM API never maps either library.
 *
 * Each accessor returns the library's function table, or NULL when the
 * library cannot be loaded (reported once at OTEL_LOG_LEVEL=debug); callers
 * then record what they can without it. The first call dlopen()s
 * (RTLD_LOCAL) and resolves every function; later calls are one atomic
 * load. Thread-safe. Not async-signal-safe (dlopen).
 *
 * The headers are used for types and macros only (json_t, json_typeof,
 * z_stream, Z_* constants): nothing here links either library.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <zlib.h>

struct osh_jansson {
	json_t *(*loadb)(const char *buf, size_t len, size_t flags, json_error_t *err);
	void (*delete_)(json_t *json);	/* what json_decref calls at zero */
	json_t *(*object_get)(const json_t *obj, const char *key);
	void *(*object_iter)(json_t *obj);
	void *(*object_iter_next)(json_t *obj, void *iter);
	const char *(*object_iter_key)(void *iter);
	json_t *(*object_iter_value)(void *iter);
	size_t (*array_size)(const json_t *arr);
	json_t *(*array_get)(const json_t *arr, size_t index);
	const char *(*string_value)(const json_t *s);
	size_t (*string_length)(const json_t *s);
	json_int_t (*integer_value)(const json_t *i);
	double (*real_value)(const json_t *r);
	double (*number_value)(const json_t *n);
	char *(*dumps)(const json_t *json, size_t flags);
	json_t *(*object)(void);
	json_t *(*array)(void);
	json_t *(*string)(const char *value);
	json_t *(*stringn)(const char *value, size_t len);
	json_t *(*integer)(json_int_t value);
	int (*object_set_new)(json_t *obj, const char *key, json_t *value);
	int (*array_append_new)(json_t *arr, json_t *value);
};

struct osh_zlib {
	int (*inflateInit2_)(z_streamp strm, int window_bits, const char *version, int stream_size);
	int (*inflate)(z_streamp strm, int flush);
	int (*inflateEnd)(z_streamp strm);
	int (*inflateReset)(z_streamp strm);
	const char *(*zlibVersion)(void);
};

const struct osh_jansson *osh_jansson(void);
const struct osh_zlib *osh_zlib(void);

/* json_decref() through the loaded library (the header's inline version
 * would call json_delete by name, which the shim does not link). */
static inline void osh_json_decref(const struct osh_jansson *j, json_t *json)
{
	if (json && json->refcount != (size_t)-1 &&
	    __atomic_sub_fetch(&json->refcount, 1, __ATOMIC_RELEASE) == 0)
		j->delete_(json);
}

/* inflateInit2() through the loaded library: @window_bits as zlib's
 * (15 + 32: zlib or gzip header, detected; -15: raw deflate). */
static inline int osh_inflate_init(const struct osh_zlib *z, z_streamp strm, int window_bits)
{
	return z->inflateInit2_(strm, window_bits, z->zlibVersion(), (int)sizeof(z_stream));
}
