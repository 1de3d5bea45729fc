/* Hooks on GnuTLS (libgnutls.so.30): the plaintext of the program's TLS
 * sessions goes through the HTTP engines (src/tls.c), as with OpenSSL.
 *
 * gnutls_init() is hooked for the session's role (GnuTLS has no getter for
 * it); gnutls_record_send() and gnutls_record_recv() carry the plaintext,
 * gnutls_bye() is the close_notify, gnutls_deinit() the end. While corked
 * (gnutls_record_cork), gnutls_record_send() only buffers: the bytes are
 * seen then, and gnutls_record_uncork() sends them through libgnutls's own
 * call to gnutls_record_send(), which must not see them again: it runs
 * with the guard held. Records sent with gnutls_record_send2/_range or
 * received with gnutls_record_recv_seq/_packet are not seen.
 *
 * The real functions: those of the libgnutls the calling code uses, as in
 * hooks/openssl.c.
 */
#include "buildconf.h"

#define _GNU_SOURCE

#include "hook.h"
#include "tls.h"

/* libgnutls's prototypes (gnutls/gnutls.h is not needed to build the
 * shim; gnutls_close_request_t is an int-sized enum). */
int gnutls_init(struct gnutls_session_int **session, unsigned int flags);
void gnutls_deinit(struct gnutls_session_int *session);
ssize_t gnutls_record_send(struct gnutls_session_int *session, const void *data, size_t size);
ssize_t gnutls_record_recv(struct gnutls_session_int *session, void *data, size_t size);
int gnutls_bye(struct gnutls_session_int *session, int how);
int gnutls_record_uncork(struct gnutls_session_int *session, unsigned int flags);

/* The libgnutls the calling code uses (a macro: the hook's own return
 * address). */
#define gtls() osh_tls_gnutls_api(__builtin_return_address(0))

/* GNUTLS_E_INTERNAL_ERROR: what a hook returns when libgnutls cannot be
 * found (nothing to call). */
#define E_INTERNAL (-59)

static inline bool tracing(void)
{
	return osh_enabled && osh_guard_enter();
}

OSH_EXPORT int gnutls_init(struct gnutls_session_int **session, unsigned int flags)
{
	const struct osh_gnutls_api *a = gtls();
	int ret;

	if (!a || !a->gnutls_init)
		return E_INTERNAL;
	osh_init_ensure();
	if (!tracing())
		return a->gnutls_init(session, flags);
	ret = osh_tls_gnutls_init(a, session, flags);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT ssize_t gnutls_record_send(struct gnutls_session_int *session, const void *data,
				      size_t size)
{
	const struct osh_gnutls_api *a = gtls();
	ssize_t ret;

	if (!a || !a->gnutls_record_send)
		return E_INTERNAL;
	if (!tracing())
		return a->gnutls_record_send(session, data, size);
	ret = osh_tls_gnutls_send(a, session, data, size);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT ssize_t gnutls_record_recv(struct gnutls_session_int *session, void *data, size_t size)
{
	const struct osh_gnutls_api *a = gtls();
	ssize_t ret;

	if (!a || !a->gnutls_record_recv)
		return E_INTERNAL;
	if (!tracing())
		return a->gnutls_record_recv(session, data, size);
	ret = osh_tls_gnutls_recv(a, session, data, size);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT int gnutls_bye(struct gnutls_session_int *session, int how)
{
	const struct osh_gnutls_api *a = gtls();
	int ret;

	if (!a || !a->gnutls_bye)
		return E_INTERNAL;
	if (!tracing())
		return a->gnutls_bye(session, how);
	ret = osh_tls_gnutls_bye(a, session, how);
	osh_guard_leave();
	return ret;
}

/* The corked bytes were seen when the program "sent" them. */
OSH_EXPORT int gnutls_record_uncork(struct gnutls_session_int *session, unsigned int flags)
{
	const struct osh_gnutls_api *a = gtls();
	bool entered;
	int ret, err;

	if (!a || !a->gnutls_record_uncork)
		return E_INTERNAL;
	entered = osh_guard_enter();
	ret = a->gnutls_record_uncork(session, flags);
	err = errno;
	if (entered)
		osh_guard_leave();
	errno = err;
	return ret;
}

/* The record goes first, whatever the guard says (see hooks/openssl.c,
 * forget()). */
OSH_EXPORT void gnutls_deinit(struct gnutls_session_int *session)
{
	const struct osh_gnutls_api *a = gtls();

	if (!a || !a->gnutls_deinit)
		return;
	if (session && atomic_load_explicit(&osh_tls_table, memory_order_relaxed)) {
		bool entered = osh_guard_enter();

		osh_tls_close(session);
		if (entered)
			osh_guard_leave();
	}
	a->gnutls_deinit(session);
}
