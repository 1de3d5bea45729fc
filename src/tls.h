/* Plaintext seen through TLS libraries (OpenSSL, GnuTLS): HTTPS exchanges
 * traced like plain ones.
 *
 * Each TLS session the program uses gets a record, found by the library's
 * session pointer (SSL *, gnutls_session_t) in a table of our own: the
 * library's ex_data/ptr slots belong to the application. A record embeds a
 * struct osh_conn (role CLIENT or SERVER, tls = true) on which the client
 * and server engines run unchanged, on plaintext. When the session's fd is
 * a connection the fd table tracks, its addresses are copied into the
 * record and the socket-level engine stops on that fd: ciphertext is never
 * parsed.
 *
 * The table: open addressing over record pointers. Lookups take no lock
 * (one hash, usually one probe); insertion and removal take a mutex, once
 * when a session starts and once when it ends. Records are type-stable: they are recycled
 * through a free list, never returned to malloc, because a thread's context
 * (context.h) may still name a record's anchor after the session is gone.
 * A lookup that misses while the table is being rebuilt in place goes on
 * to the locked path, which never misses.
 *
 * Library calls: the hooks resolve the library's functions into an api
 * table (struct osh_ossl_api, struct osh_gnutls_api) and hand each call to
 * osh_tls_ossl_* / osh_tls_gnutls_*, which make the real call themselves:
 * an outgoing request's write sits between the engine's prepare and
 * commit, and may be retried by the program (see "Retries" below). The
 * unit tests call the same functions with the real library linked in.
 *
 * Retries (writes of a CLIENT session): when the program's bytes need an
 * injected header, they are linearised with it into one buffer owned by
 * the record and the library is given that buffer. When the library asks
 * for a retry (OpenSSL SSL_ERROR_WANT_WRITE/READ..., GnuTLS
 * GNUTLS_E_AGAIN/E_INTERRUPTED), the plan stays pending: the program's
 * retry (the same buffer unless SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER is
 * set, or anything with GnuTLS, NULL/0 included) resends exactly that
 * buffer, and only then is the write committed. A longer OpenSSL retry
 * (bytes appended meanwhile, which libssl accepts) goes on with the new
 * bytes after it; a shorter one, or another buffer without the moving
 * mode, makes the session pass-through from then on. Partial writes
 * (SSL_MODE_ENABLE_PARTIAL_WRITE, GnuTLS's one record per call) are mapped
 * back to the program's own byte count by the engine's commit.
 *
 * What the program sees (return values, *written and *readbytes, the library's
 * error state, the bytes the peer receives apart from the injected lines)
 * is what it would see without the shim.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conn.h"

/* The libraries' opaque session types (SSL is struct ssl_st; a
 * gnutls_session_t points to struct gnutls_session_int). Declared here so
 * that the shim builds without either library's headers. */
struct ssl_st;
struct gnutls_session_int;

enum osh_tls_mode {
	OSH_TLS_TRACE = 0,	/* plaintext goes through the engines */
	OSH_TLS_PASS,		/* every call goes straight to the library */
};

struct osh_tls_pending;

struct osh_tls_session {
	_Atomic uintptr_t key;		/* the library's session pointer; 0: free */
	_Atomic uint8_t mode;		/* enum osh_tls_mode */
	_Atomic uint8_t state;		/* new, starting, started (first plaintext I/O) */
	uint8_t role;			/* OSH_ROLE_CLIENT or OSH_ROLE_SERVER */
	bool alpn_checked;		/* the negotiated protocol was looked at */
	bool sniffed;			/* the first plaintext was checked for h2 */
	_Atomic bool pending;		/* a write the program must retry (read by
					 * other threads: GnuTLS reads while
					 * another thread writes) */
	struct osh_tls_pending *pend;	/* its state (client sessions, from the start) */
	char *wbuf;			/* bytes handed to the library for it */
	size_t wcap;
	struct osh_tls_session *next_free;
	struct osh_conn conn;		/* role CLIENT or SERVER, tls = true */
};

struct osh_tls_table {
	uint32_t mask;			/* slots - 1 (a power of two) */
	struct osh_tls_session *_Atomic slot[];
};

extern struct osh_tls_table *_Atomic osh_tls_table;

/* Removed entries (not the end of a probe chain). */
#define OSH_TLS_TOMB ((struct osh_tls_session *)1)

static inline uint32_t osh_tls_hash(uintptr_t key)
{
	return (uint32_t)(((uint64_t)key >> 4) * 0x9E3779B97F4A7C15ull >> 32);
}

/* The record of session @key, or NULL (none, or a rebuild in progress:
 * then osh_tls_lookup). No lock, no syscall; any thread. */
static inline struct osh_tls_session *osh_tls_find(const void *key)
{
	struct osh_tls_table *t = atomic_load_explicit(&osh_tls_table, memory_order_acquire);
	uintptr_t k = (uintptr_t)key;

	if (__builtin_expect(!t, 1) || !k)
		return NULL;
	for (uint32_t i = osh_tls_hash(k) & t->mask, n = 0; n <= t->mask;
	     i = (i + 1) & t->mask, n++) {
		struct osh_tls_session *s = atomic_load_explicit(&t->slot[i], memory_order_acquire);

		if (!s)
			return NULL;
		if (s != OSH_TLS_TOMB && atomic_load_explicit(&s->key, memory_order_relaxed) == k)
			return s;
	}
	return NULL;
}

/* True when calls on @s go straight to the library (the fast path). */
static inline bool osh_tls_bypass(const struct osh_tls_session *s)
{
	return atomic_load_explicit(&s->mode, memory_order_relaxed) == OSH_TLS_PASS &&
	       !s->pending;
}

/* The record of @key, taking the table lock when the lock-free lookup
 * misses (it then never misses a record that exists). */
struct osh_tls_session *osh_tls_lookup(const void *key);

/* The record of @key, created when there is none: role @role (CLIENT or
 * SERVER), not yet started. NULL without memory. Takes the table lock;
 * allocates (calloc) once per session. App thread. */
struct osh_tls_session *osh_tls_open(const void *key, enum osh_conn_role role);

/* First plaintext I/O on @s: decide whether it is traced (not when
 * osh_in_traced_library is set: a traced library owns the transfer) and
 * tie it to @fd (-1: none, e.g. memory BIOs): the fd table's addresses
 * when it tracks @fd (whose socket-level tracing then stops), else
 * getpeername/getsockname once. App thread. */
void osh_tls_start(struct osh_tls_session *s, int fd);

/* The session stops being traced (h2, a broken retry contract): in-flight
 * exchanges end without blame, later calls pass straight through. */
void osh_tls_pass(struct osh_tls_session *s);

/* The session is gone (SSL_free, SSL_clear, gnutls_deinit): end in-flight
 * exchanges as closed by the program and recycle the record. Call before
 * the library frees the session, so that its address cannot be reused by
 * another session meanwhile. */
void osh_tls_close(const void *key);

/* The program shut its sending side (close_notify sent): a response
 * delimited by the close is complete. */
void osh_tls_shutdown(struct osh_tls_session *s);

/* Records in the table (tests). */
size_t osh_tls_count(void);

/* ---- OpenSSL ------------------------------------------------------------- */

/* The library's functions, resolved by the hooks (NULL when absent). */
struct osh_ossl_api {
	int (*SSL_write)(struct ssl_st *ssl, const void *buf, int num);
	int (*SSL_write_ex)(struct ssl_st *ssl, const void *buf, size_t num, size_t *written);
	int (*SSL_read)(struct ssl_st *ssl, void *buf, int num);
	int (*SSL_read_ex)(struct ssl_st *ssl, void *buf, size_t num, size_t *readbytes);
	int (*SSL_peek)(struct ssl_st *ssl, void *buf, int num);
	int (*SSL_peek_ex)(struct ssl_st *ssl, void *buf, size_t num, size_t *readbytes);
	int (*SSL_shutdown)(struct ssl_st *ssl);
	void (*SSL_free)(struct ssl_st *ssl);
	int (*SSL_clear)(struct ssl_st *ssl);
	int (*SSL_get_error)(const struct ssl_st *ssl, int ret);
	int (*SSL_get_fd)(const struct ssl_st *ssl);
	int (*SSL_is_server)(const struct ssl_st *ssl);
	long (*SSL_ctrl)(struct ssl_st *ssl, int cmd, long larg, void *parg);
	void (*SSL_get0_alpn_selected)(const struct ssl_st *ssl, const unsigned char **data,
				       unsigned int *len);
	int (*SSL_is_init_finished)(const struct ssl_st *ssl);
	ssize_t (*SSL_sendfile)(struct ssl_st *ssl, int fd, off_t offset, size_t size, int flags);
};

/* The functions of the libssl that the code at @caller (a hook's return
 * address) uses, or NULL when none can be found. A process may hold
 * several copies (a Python wheel's vendored libssl beside the system's,
 * under another soname), and each session must only ever be handed to its
 * own: the copy is the one a lookup through the caller's object finds
 * (its own dependencies), else the next definition after the shim, else a
 * loaded libssl.so.3/.1.1. Cached per call site: after the first call
 * from a site, a hash and two loads. Any thread. */
const struct osh_ossl_api *osh_tls_ossl_api(const void *caller);

/* SSL_write (@ex false: returns its int) or SSL_write_ex (@ex true: returns
 * 1/0 and sets *@written): the real call through @api, with the engines
 * around it when the session is traced. */
int osh_tls_ossl_write(const struct osh_ossl_api *api, struct ssl_st *ssl, const void *buf,
		       size_t num, bool ex, size_t *written);

/* SSL_read/SSL_read_ex, or with @peek SSL_peek/SSL_peek_ex (whose bytes
 * are read again later: never shown to the engines). */
int osh_tls_ossl_read(const struct osh_ossl_api *api, struct ssl_st *ssl, void *buf, size_t num,
		      bool ex, bool peek, size_t *readbytes);

/* SSL_shutdown. */
int osh_tls_ossl_shutdown(const struct osh_ossl_api *api, struct ssl_st *ssl);

/* SSL_sendfile (kernel TLS): the bytes it sends are never seen; they are
 * counted as body where the framing allows it, as with sendfile(). */
ssize_t osh_tls_ossl_sendfile(const struct osh_ossl_api *api, struct ssl_st *ssl, int fd,
			      off_t offset, size_t size, int flags);

/* ---- GnuTLS -------------------------------------------------------------- */

/* gnutls_datum_t */
struct osh_gnutls_datum {
	unsigned char *data;
	unsigned int size;
};

struct osh_gnutls_api {
	int (*gnutls_init)(struct gnutls_session_int **session, unsigned int flags);
	void (*gnutls_deinit)(struct gnutls_session_int *session);
	ssize_t (*gnutls_record_send)(struct gnutls_session_int *session, const void *data,
				      size_t size);
	ssize_t (*gnutls_record_recv)(struct gnutls_session_int *session, void *data, size_t size);
	int (*gnutls_bye)(struct gnutls_session_int *session, int how);
	int (*gnutls_transport_get_int)(struct gnutls_session_int *session);
	int (*gnutls_alpn_get_selected_protocol)(struct gnutls_session_int *session,
						 struct osh_gnutls_datum *protocol);
	int (*gnutls_error_is_fatal)(int error);
	int (*gnutls_record_uncork)(struct gnutls_session_int *session, unsigned int flags);
};

/* As osh_tls_ossl_api, for libgnutls (libgnutls.so.30). */
const struct osh_gnutls_api *osh_tls_gnutls_api(const void *caller);

/* gnutls_init: the real call, then a record with the role its flags
 * give. */
int osh_tls_gnutls_init(const struct osh_gnutls_api *api, struct gnutls_session_int **session,
			unsigned int flags);
ssize_t osh_tls_gnutls_send(const struct osh_gnutls_api *api, struct gnutls_session_int *session,
			    const void *data, size_t size);
ssize_t osh_tls_gnutls_recv(const struct osh_gnutls_api *api, struct gnutls_session_int *session,
			    void *data, size_t size);
int osh_tls_gnutls_bye(const struct osh_gnutls_api *api, struct gnutls_session_int *session,
		       int how);
