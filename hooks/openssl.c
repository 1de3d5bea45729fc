/* Hooks on OpenSSL (libssl.so.3, and 1.1): the plaintext of the program's
 * TLS sessions goes through the HTTP engines (src/tls.c), with traceparent
 * injected into outgoing HTTPS requests.
 *
 * The real functions are those of the libssl the calling code uses,
 * resolved per call site by src/tls.c (osh_tls_ossl_api): a process may
 * hold several copies (a vendored one under another soname, loaded
 * RTLD_LOCAL by a Python extension), and our unversioned SSL_write stands
 * in for all of them. The shim never loads libssl itself.
 *
 * Unlike the libc hooks, the real call is made in src/tls.c: an outgoing
 * request's write sits between the engine's prepare and commit, and the
 * library may ask for it to be retried with the same bytes. The guard is
 * held across it, so the ciphertext libssl writes and reads on the socket
 * is never seen by the socket hooks. Sessions the shim does not trace cost
 * one table lookup; the exporter thread (osh_in_shim held) and
 * OTEL_SDK_DISABLED go straight to libssl.
 */
#include "buildconf.h"

#define _GNU_SOURCE

#include "hook.h"
#include "tls.h"

/* libssl's prototypes (openssl/ssl.h is not needed to build the shim). */
int SSL_write(struct ssl_st *ssl, const void *buf, int num);
int SSL_write_ex(struct ssl_st *ssl, const void *buf, size_t num, size_t *written);
int SSL_read(struct ssl_st *ssl, void *buf, int num);
int SSL_read_ex(struct ssl_st *ssl, void *buf, size_t num, size_t *readbytes);
int SSL_peek(struct ssl_st *ssl, void *buf, int num);
int SSL_peek_ex(struct ssl_st *ssl, void *buf, size_t num, size_t *readbytes);
int SSL_shutdown(struct ssl_st *ssl);
void SSL_free(struct ssl_st *ssl);
int SSL_clear(struct ssl_st *ssl);
ssize_t SSL_sendfile(struct ssl_st *ssl, int fd, off_t offset, size_t size, int flags);

/* The libssl the calling code uses. A macro: the return address must be
 * the hook's own, whatever gets inlined. */
#define ossl() osh_tls_ossl_api(__builtin_return_address(0))

static inline bool tracing(void)
{
	return osh_enabled && osh_guard_enter();
}

OSH_EXPORT int SSL_write(struct ssl_st *ssl, const void *buf, int num)
{
	const struct osh_ossl_api *a = ossl();
	int ret;

	if (!a || !a->SSL_write)
		return -1;
	if (num <= 0 || !tracing())
		return a->SSL_write(ssl, buf, num);
	ret = osh_tls_ossl_write(a, ssl, buf, (size_t)num, false, NULL);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT int SSL_write_ex(struct ssl_st *ssl, const void *buf, size_t num, size_t *written)
{
	const struct osh_ossl_api *a = ossl();
	int ret;

	if (!a || !a->SSL_write_ex)
		return 0;
	if (!num || !tracing())
		return a->SSL_write_ex(ssl, buf, num, written);
	ret = osh_tls_ossl_write(a, ssl, buf, num, true, written);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT int SSL_read(struct ssl_st *ssl, void *buf, int num)
{
	const struct osh_ossl_api *a = ossl();
	int ret;

	if (!a || !a->SSL_read)
		return -1;
	if (num <= 0 || !tracing())
		return a->SSL_read(ssl, buf, num);
	ret = osh_tls_ossl_read(a, ssl, buf, (size_t)num, false, false, NULL);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT int SSL_read_ex(struct ssl_st *ssl, void *buf, size_t num, size_t *readbytes)
{
	const struct osh_ossl_api *a = ossl();
	int ret;

	if (!a || !a->SSL_read_ex)
		return 0;
	if (!num || !tracing())
		return a->SSL_read_ex(ssl, buf, num, readbytes);
	ret = osh_tls_ossl_read(a, ssl, buf, num, true, false, readbytes);
	osh_guard_leave();
	return ret;
}

/* Peeked bytes are read again: never shown to the engines. The guard is
 * held across the call all the same (the ciphertext below is not ours to
 * parse). */
OSH_EXPORT int SSL_peek(struct ssl_st *ssl, void *buf, int num)
{
	const struct osh_ossl_api *a = ossl();
	int ret;

	if (!a || !a->SSL_peek)
		return -1;
	if (num <= 0 || !tracing())
		return a->SSL_peek(ssl, buf, num);
	ret = osh_tls_ossl_read(a, ssl, buf, (size_t)num, false, true, NULL);
	osh_guard_leave();
	return ret;
}

OSH_EXPORT int SSL_peek_ex(struct ssl_st *ssl, void *buf, size_t num, size_t *readbytes)
{
	const struct osh_ossl_api *a = ossl();
	int ret;

	if (!a || !a->SSL_peek_ex)
		return 0;
	if (!num || !tracing())
		return a->SSL_peek_ex(ssl, buf, num, readbytes);
	ret = osh_tls_ossl_read(a, ssl, buf, num, true, true, readbytes);
	osh_guard_leave();
	return ret;
}

/* close_notify: like shutdown(SHUT_WR) on a socket. */
OSH_EXPORT int SSL_shutdown(struct ssl_st *ssl)
{
	const struct osh_ossl_api *a = ossl();
	int ret;

	if (!a || !a->SSL_shutdown)
		return -1;
	if (!tracing())
		return a->SSL_shutdown(ssl);
	ret = osh_tls_ossl_shutdown(a, ssl);
	osh_guard_leave();
	return ret;
}

/* Kernel TLS (nginx serving files): bytes the shim cannot see. */
OSH_EXPORT ssize_t SSL_sendfile(struct ssl_st *ssl, int fd, off_t offset, size_t size, int flags)
{
	const struct osh_ossl_api *a = ossl();
	ssize_t ret;

	if (!a || !a->SSL_sendfile)
		return -1;
	if (!tracing())
		return a->SSL_sendfile(ssl, fd, offset, size, flags);
	ret = osh_tls_ossl_sendfile(a, ssl, fd, offset, size, flags);
	osh_guard_leave();
	return ret;
}

/* End @ssl's record, whatever the guard says: a record left behind would
 * be found by the next session libssl allocates at that address. */
static void forget(struct ssl_st *ssl)
{
	bool entered;

	if (!ssl || !atomic_load_explicit(&osh_tls_table, memory_order_relaxed))
		return;
	entered = osh_guard_enter();
	osh_tls_close(ssl);
	if (entered)
		osh_guard_leave();
}

/* The record goes before the session: once libssl frees it, its address
 * may belong to another thread's new session. */
OSH_EXPORT void SSL_free(struct ssl_st *ssl)
{
	const struct osh_ossl_api *a = ossl();

	if (!a || !a->SSL_free)
		return;
	forget(ssl);
	a->SSL_free(ssl);
}

/* The session is made ready for a new connection. libssl calls it too:
 * from SSL_new (no record yet), and at the start of every handshake, which
 * may run inside the program's first SSL_write or SSL_read, that is inside
 * our hook, on the record in use: with the guard held, the session is not
 * starting over, and the record stays. */
OSH_EXPORT int SSL_clear(struct ssl_st *ssl)
{
	const struct osh_ossl_api *a = ossl();

	if (!a || !a->SSL_clear)
		return 0;
	if (ssl && atomic_load_explicit(&osh_tls_table, memory_order_relaxed) &&
	    osh_guard_enter()) {
		osh_tls_close(ssl);
		osh_guard_leave();
	}
	return a->SSL_clear(ssl);
}
