/* Hooks on libcurl: each transfer of an http(s) URL becomes one CLIENT span
 * at this level (src/curl_trace.c), with traceparent added through
 * CURLOPT_HTTPHEADER.
 *
 * The real functions are the program's own libcurl (osh_curl_api_get):
 * the shim never links or loads libcurl for this. While libcurl drives a
 * traced transfer (curl_easy_perform, and the multi driving calls when a
 * traced transfer is attached to some multi handle) osh_in_traced_library
 * is set on the thread, so the connect() hook does not track the sockets
 * libcurl opens and the TLS hooks leave its sessions alone: one span per
 * transfer, never one per layer. The flag is saved and restored (calls
 * nest: a callback may drive another transfer) and never left set.
 *
 * libcurl calls some of its own exported functions through its PLT, which
 * leads here too: curl_easy_perform() adds the handle to an internal
 * multi handle, drives it, reads its messages and removes it; DoH and
 * HTTP/2 server push make internal handles with curl_easy_setopt() and
 * curl_easy_duphandle(); curl_easy_cleanup() removes a handle from its
 * multi. src/ tells those calls apart by the handle's record; `depth`
 * below says a call comes from inside libcurl, where handles the program
 * never saw must not get records (libcurl frees them without
 * curl_easy_cleanup).
 *
 * The exporter thread (osh_in_shim held) and OTEL_SDK_DISABLED get plain
 * pass-through. Every hook returns what the real call returned, with its
 * errno.
 */
#include "buildconf.h"

#define _GNU_SOURCE
#include <stdarg.h>

/* We define curl_easy_setopt and friends: no type-checking macros, and
 * curl_multi_socket as the function old binaries call (newer headers turn
 * it into a macro). */
#define CURL_DISABLE_TYPECHECK
#define CURL_ALLOW_OLD_MULTI_SOCKET
#include <curl/curl.h>

#include "curl_trace.h"
#include "hook.h"

/* Calls into the real libcurl in progress on this thread that can come
 * back here (perform, the multi driving calls, cleanup). */
static __thread int depth __attribute__((tls_model("initial-exec")));

static inline bool tracing(void)
{
	osh_init_ensure();
	return osh_enabled && !osh_in_shim;
}

/* Around a real call that drives transfers: returns the flag's old value. */
static inline bool drive_enter(bool traced)
{
	bool saved = osh_in_traced_library;

	if (traced)
		osh_in_traced_library = true;
	depth++;
	return saved;
}

static inline void drive_leave(bool saved)
{
	depth--;
	osh_in_traced_library = saved;
}

OSH_EXPORT CURLcode curl_easy_setopt(CURL *easy, CURLoption opt, ...)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	const void *ptr;
	long num;
	va_list ap;
	int rc, err;

	if (!a)
		return CURLE_FAILED_INIT;
	va_start(ap, opt);
	if (__builtin_expect(opt == CURLOPT_WRITEFUNCTION || opt == CURLOPT_WRITEDATA, 0) &&
	    tracing() && osh_curl_write_wrapped(easy)) {
		/* Ours stays installed for this transfer; it calls the new
		 * one. */
		if (opt == CURLOPT_WRITEFUNCTION)
			ptr = (const void *)(uintptr_t)va_arg(ap, curl_write_callback);
		else
			ptr = va_arg(ap, void *);
		va_end(ap);
		if (osh_guard_enter()) {
			osh_curl_setopt(easy, opt, ptr, 0, depth == 0);
			osh_guard_leave();
		}
		return CURLE_OK;
	}
	rc = osh_curl_setopt_pass(a, easy, opt, ap, &ptr, &num);
	va_end(ap);
	err = errno;
	if (rc == CURLE_OK && osh_curl_setopt_wanted(opt) && tracing() && osh_guard_enter()) {
		osh_curl_setopt(easy, opt, ptr, num, depth == 0);
		osh_guard_leave();
	}
	errno = err;
	return (CURLcode)rc;
}

OSH_EXPORT CURLcode curl_easy_perform(CURL *easy)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	struct osh_curl_xfer *x = NULL;
	bool saved;
	int rc, err;

	if (!a)
		return CURLE_FAILED_INIT;
	if (tracing() && osh_guard_enter()) {
		x = osh_curl_start(easy, NULL);
		osh_guard_leave();
	}
	saved = drive_enter(x != NULL);
	rc = a->easy_perform(easy);
	err = errno;
	drive_leave(saved);
	if (x && osh_guard_enter()) {
		osh_curl_end(x, rc, true);
		osh_guard_leave();
	}
	errno = err;
	return (CURLcode)rc;
}

OSH_EXPORT void curl_easy_cleanup(CURL *easy)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	struct osh_curl_xfer *x = NULL;
	bool saved;
	int err;

	if (!a)
		return;
	if (easy && tracing() && osh_guard_enter()) {
		x = osh_curl_cleanup_begin(easy);
		osh_guard_leave();
	}
	saved = drive_enter(false);
	a->easy_cleanup(easy);
	err = errno;
	drive_leave(saved);
	if (x && osh_guard_enter()) {
		osh_curl_cleanup_done(x);
		osh_guard_leave();
	}
	errno = err;
}

OSH_EXPORT void curl_easy_reset(CURL *easy)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	int err;

	if (!a)
		return;
	a->easy_reset(easy);
	err = errno;
	if (easy && tracing() && osh_guard_enter()) {
		osh_curl_reset(easy);
		osh_guard_leave();
	}
	errno = err;
}

OSH_EXPORT CURL *curl_easy_duphandle(CURL *easy)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	CURL *dup;
	int err;

	if (!a)
		return NULL;
	dup = a->easy_duphandle(easy);
	err = errno;
	if (dup && tracing() && osh_guard_enter()) {
		osh_curl_duphandle(easy, dup, depth == 0);
		osh_guard_leave();
	}
	errno = err;
	return dup;
}

OSH_EXPORT CURLMcode curl_multi_add_handle(CURLM *multi, CURL *easy)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	struct osh_curl_xfer *x = NULL;
	int rc, err;

	if (!a)
		return CURLM_INTERNAL_ERROR;
	if (multi && easy && tracing() && osh_guard_enter()) {
		x = osh_curl_start(easy, multi);
		osh_guard_leave();
	}
	rc = a->multi_add_handle(multi, easy);
	err = errno;
	if (x && rc != CURLM_OK && osh_guard_enter()) {
		osh_curl_start_failed(x);
		osh_guard_leave();
	}
	errno = err;
	return (CURLMcode)rc;
}

OSH_EXPORT CURLMcode curl_multi_remove_handle(CURLM *multi, CURL *easy)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	int rc, err;

	if (!a)
		return CURLM_INTERNAL_ERROR;
	rc = a->multi_remove_handle(multi, easy);
	err = errno;
	if (rc == CURLM_OK && easy && tracing() && osh_guard_enter()) {
		osh_curl_removed(multi, easy);
		osh_guard_leave();
	}
	errno = err;
	return (CURLMcode)rc;
}

OSH_EXPORT CURLMsg *curl_multi_info_read(CURLM *multi, int *msgs_in_queue)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	CURLMsg *msg;
	int err;

	if (!a)
		return NULL;
	msg = a->multi_info_read(multi, msgs_in_queue);
	err = errno;
	if (msg && tracing() && osh_guard_enter()) {
		osh_curl_info_read(multi, msg);
		osh_guard_leave();
	}
	errno = err;
	return msg;
}

/* The multi driving calls: no record to look up (the flag is process-wide
 * while any traced transfer sits in a multi handle; see curl_trace.h). */
#define DRIVE(call)                                                            \
	do {                                                                   \
		bool saved = drive_enter(osh_enabled && osh_curl_multi_busy()); \
		rc = (call);                                                   \
		err = errno;                                                   \
		drive_leave(saved);                                            \
		errno = err;                                                   \
	} while (0)

OSH_EXPORT CURLMcode curl_multi_perform(CURLM *multi, int *running)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	int rc, err;

	if (!a)
		return CURLM_INTERNAL_ERROR;
	DRIVE(a->multi_perform(multi, running));
	return (CURLMcode)rc;
}

OSH_EXPORT CURLMcode curl_multi_socket_action(CURLM *multi, curl_socket_t s, int ev_bitmask,
					      int *running)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	int rc, err;

	if (!a)
		return CURLM_INTERNAL_ERROR;
	DRIVE(a->multi_socket_action(multi, s, ev_bitmask, running));
	return (CURLMcode)rc;
}

OSH_EXPORT CURLMcode curl_multi_socket(CURLM *multi, curl_socket_t s, int *running)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	int rc, err;

	if (!a || !a->multi_socket)
		return CURLM_INTERNAL_ERROR;
	DRIVE(a->multi_socket(multi, s, running));
	return (CURLMcode)rc;
}

OSH_EXPORT CURLMcode curl_multi_socket_all(CURLM *multi, int *running)
{
	const struct osh_curl_api *a = osh_curl_api_get(__builtin_return_address(0));
	int rc, err;

	if (!a || !a->multi_socket_all)
		return CURLM_INTERNAL_ERROR;
	DRIVE(a->multi_socket_all(multi, running));
	return (CURLMcode)rc;
}
