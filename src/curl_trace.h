/* libcurl transfers as CLIENT spans.
 *
 * A program that uses libcurl is traced one level above its sockets: each
 * transfer of an http:// or https:// URL becomes one CLIENT span filled
 * from curl_easy_getinfo(), and its request gets traceparent (tracestate,
 * baggage) through CURLOPT_HTTPHEADER, which works for HTTP/1, HTTP/2 and
 * HTTP/3 alike. While libcurl drives such a transfer the hooks set
 * osh_in_traced_library (guard.h): the sockets and TLS sessions underneath
 * are never traced again at their own level.
 *
 * Per easy handle the module keeps a record (struct osh_curl_xfer) in a
 * table keyed by the CURL pointer: what the program set with
 * curl_easy_setopt() that the module needs later (its header list, its
 * user agent, the URL's scheme), and the transfer in flight. Records are
 * created by the program's own setopt calls and freed by
 * curl_easy_cleanup(). A handle is used by one thread at a time (libcurl's
 * rule), so a record is read and written without a lock once found; the
 * table itself takes a mutex for lookups (never held across a call into
 * libcurl).
 *
 * Injection: at transfer start the module installs its own list with the
 * real curl_easy_setopt(CURLOPT_HTTPHEADER): one block holding list nodes
 * that point at the program's own header strings, in the program's order,
 * followed by nodes for the lines it adds. libcurl only reads header lists
 * (it never frees or changes them), and the program's strings must stay
 * valid for the transfer anyway, so nothing is copied. When the transfer
 * ends (perform returns, its CURLMSG_DONE is read, the handle is removed
 * from its multi or cleaned up), the program's own list pointer is set
 * back and the block freed. The program's list is never modified or freed.
 *
 * Which transfers: http:// and https:// URLs (CURLOPT_URL, or
 * CURLOPT_CURLU, scheme-less URLs as libcurl guesses them), except
 * CURLOPT_CONNECT_ONLY handles, whose bytes the program sends itself
 * (curl_easy_send) and the socket level sees. Other protocols are left to
 * the levels below: osh_in_traced_library is set only around
 * curl_easy_perform() of a traced transfer, and around the multi driving
 * calls while any traced transfer is attached to any multi handle (a
 * process-wide count: the sockets of other transfers driven meanwhile are
 * hidden too, which loses nothing but a CONNECT_ONLY handle's bytes, and
 * sockets an application callback connects inside those calls). Handles
 * used through a libcurl the program reached with dlsym() bypass the
 * hooks and are traced below, at the socket and TLS levels.
 *
 * The span: the client engine's attributes and name, from
 * curl_easy_getinfo() when the transfer ends (the effective URL and
 * method, status, peer address, protocol version "1.0"/"1.1"/"2"/"3", body
 * sizes, redirects as http.request.resend_count). Timings are attributes
 * in seconds from the transfer's start as libcurl measures them (span
 * records carry no events): http.client.timing.dns_done, .connect_done,
 * .tls_done, .request_start (CURLINFO_PRETRANSFER), .first_byte and
 * .total, each only when libcurl reports it non-zero. error.type: a
 * CURLcode's symbolic name, else the status for >= 400 (also under
 * CURLOPT_FAILONERROR), else "no_response" / "response_incomplete" for a
 * transfer removed or cleaned up before its CURLMSG_DONE was read. The
 * span runs from curl_easy_perform() or curl_multi_add_handle() to its
 * end as the program sees it (perform returning, the message read).
 *
 * Functions here run on app threads from hooks/libcurl.c, inside the shim
 * guard; none of them is async-signal-safe (they lock and allocate).
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

struct curl_slist;
struct osh_llm;
struct osh_span;

/* The program's libcurl entry points: prototypes as in curl/curl.h, with
 * handles as void * and enums as int so that this header stands alone. */
struct osh_curl_api {
	int (*easy_setopt)(void *easy, int option, ...);
	int (*easy_getinfo)(void *easy, int info, ...);
	int (*easy_perform)(void *easy);
	void (*easy_cleanup)(void *easy);
	void (*easy_reset)(void *easy);
	void *(*easy_duphandle)(void *easy);
	int (*multi_add_handle)(void *multi, void *easy);
	int (*multi_remove_handle)(void *multi, void *easy);
	void *(*multi_info_read)(void *multi, int *msgs_in_queue);
	int (*multi_perform)(void *multi, int *running);
	int (*multi_socket_action)(void *multi, int sockfd, int ev_bitmask, int *running);
	int (*multi_socket)(void *multi, int sockfd, int *running);
	int (*multi_socket_all)(void *multi, int *running);
	/* Optional (NULL when absent): a CURLOPT_CURLU handle's scheme. */
	int (*url_get)(void *url, int part, char **ret, unsigned int flags);
	void (*free)(void *p);
};

/* The program's libcurl, resolved at the first call of any hook: by
 * dlsym(RTLD_NEXT) when libcurl is in the global scope; else (a library
 * loaded RTLD_LOCAL, such as a Python extension's) from the object that
 * made the call (@caller: the hook's return address), whose dependencies
 * include its libcurl; else by dlopen("libcurl.so.4" and the other Debian
 * flavours, RTLD_NOLOAD). Every entry point comes from that one object.
 * NULL when it cannot be found (then every later call returns NULL too,
 * without looking again). Any thread; the first call takes a mutex and
 * calls dlopen/dlsym, later ones are one atomic load. */
const struct osh_curl_api *osh_curl_api_get(const void *caller);

/* Tests only: use @api instead of the resolved libcurl (NULL: resolve
 * again on the next call). */
void osh_curl_api_override(const struct osh_curl_api *api);

/* What a URL's scheme means for tracing. */
enum osh_curl_url_kind {
	OSH_CURL_URL_NONE = 0,	/* no URL set (or not known) */
	OSH_CURL_URL_HTTP,	/* http:// */
	OSH_CURL_URL_HTTPS,	/* https:// */
	OSH_CURL_URL_OTHER,	/* any other protocol: left to the levels below */
	OSH_CURL_URL_GUESS,	/* no scheme: libcurl uses CURLOPT_DEFAULT_PROTOCOL,
				 * else guesses from the host (http here) */
};

/* Classify a URL the way libcurl reads its scheme (7.88, urlapi.c): a
 * scheme is [A-Za-z][A-Za-z0-9+.-]* followed by ":/"; without one,
 * hosts starting "ftp.", "dict.", "ldap.", "imap.", "smtp." or "pop3." are
 * those protocols and anything else is GUESS. Pure. */
enum osh_curl_url_kind osh_curl_url_kind(const char *url);

/* One easy handle's record. */
struct osh_curl_xfer {
	void *easy;			/* the key */
	void *multi;			/* the multi handle it was added to (active) */
	struct curl_slist *app_list;	/* the program's CURLOPT_HTTPHEADER */
	struct curl_slist *our_list;	/* ours, installed while active (one block) */
	void *curlu;			/* the program's CURLOPT_CURLU */
	char *user_agent;		/* copy of CURLOPT_USERAGENT, NULL if none */
	struct osh_span *rec;		/* the span in flight, NULL when not recorded */
	uint64_t start_ns;
	uint8_t url_kind;		/* enum osh_curl_url_kind of CURLOPT_URL */
	uint8_t default_kind;		/* ... of CURLOPT_DEFAULT_PROTOCOL ("scheme") */
	bool connect_only;		/* CURLOPT_CONNECT_ONLY: never traced here */
	/* For LLM calls (llm.h): the URL, the request body and the program's
	 * write callback, which a traced LLM transfer runs through ours. */
	char *url;			/* copy of CURLOPT_URL, NULL if none */
	const char *post;		/* CURLOPT_POSTFIELDS (the program's) */
	char *post_copy;		/* CURLOPT_COPYPOSTFIELDS (ours, bounded) */
	int64_t post_size;		/* CURLOPT_POSTFIELDSIZE(_LARGE), -1 unset */
	void *app_write;		/* CURLOPT_WRITEFUNCTION, NULL: libcurl's fwrite */
	void *app_write_data;		/* CURLOPT_WRITEDATA, NULL: stdout */
	struct osh_llm *llm;		/* the LLM call in flight, NULL for others */
	bool write_wrapped;		/* our write callback is installed */
	bool llm_head_seen;		/* the response head went to the tracker */
	bool active;			/* a traced transfer is in flight */
	bool in_multi;			/* ... started by curl_multi_add_handle */
	bool closing;			/* inside curl_easy_cleanup */
};

/* The record of @easy, or NULL. */
struct osh_curl_xfer *osh_curl_find(const void *easy);

/* A curl_easy_setopt() call on @easy that succeeded. @opt and its argument
 * (@ptr for pointer options, @num for long ones). Records the options this
 * module needs (HTTPHEADER, USERAGENT, URL, CURLU, DEFAULT_PROTOCOL,
 * CONNECT_ONLY); any other option returns at once without a lookup.
 * @may_create: false for calls made inside libcurl (its own internal
 * handles, which it frees without curl_easy_cleanup): then only an
 * existing record is updated. */
void osh_curl_setopt(void *easy, int opt, const void *ptr, long num, bool may_create);

/* Make the call curl_easy_setopt(@easy, @opt, ...) through @a with the
 * argument in @ap fetched as the type @opt's number gives it (curl.h,
 * CURLOPTTYPE_*: long below 10000, an object pointer from 10000, a
 * function pointer from 20000, curl_off_t from 30000, a blob pointer from
 * 40000) and passed on unchanged. Returns what the real call returned;
 * *@ret_ptr or *@ret_num gets the argument (for osh_curl_setopt). */
int osh_curl_setopt_pass(const struct osh_curl_api *a, void *easy, int opt, va_list ap,
			 const void **ret_ptr, long *ret_num);

/* True while a traced LLM transfer of @easy runs its body through our
 * write callback: the program's CURLOPT_WRITEFUNCTION / WRITEDATA are
 * then recorded, not passed to libcurl (ours stays, calling theirs). */
bool osh_curl_write_wrapped(const void *easy);

/* True when setopt option @opt is one osh_curl_setopt records (the hook's
 * fast path). */
bool osh_curl_setopt_wanted(int opt);

/* A transfer of @easy is about to start: by curl_easy_perform() (@multi
 * NULL) or by curl_multi_add_handle(@multi). When it is an http(s)
 * transfer this level traces, decide its trace context (as the client
 * engine does), start its span, install the header list, and return the
 * record (the caller then sets osh_in_traced_library around perform);
 * else NULL and nothing changed. A record still active from an earlier
 * transfer that was never ended (its multi handle cleaned up) is ended
 * first. A record active for a transfer of the same kind (curl_easy_perform's
 * own curl_multi_add_handle, a handle added twice to one multi) is left
 * alone: NULL. */
struct osh_curl_xfer *osh_curl_start(void *easy, void *multi);

/* The transfer of @x is over with libcurl's @result (a CURLcode); when
 * @have_result is false (removed or cleaned up before its CURLMSG_DONE was
 * read) the outcome is judged from what getinfo reports. Ends and submits
 * the span, restores the program's header list and frees ours. */
void osh_curl_end(struct osh_curl_xfer *x, int result, bool have_result);

/* curl_multi_add_handle() failed after osh_curl_start(): undo it (program's
 * list back, span dropped unexported). */
void osh_curl_start_failed(struct osh_curl_xfer *x);

/* curl_multi_info_read(@multi) returned @msg (a CURLMsg, may be NULL): a
 * CURLMSG_DONE for a handle traced in that multi ends its span. */
void osh_curl_info_read(void *multi, const void *msg);

/* @easy was removed from @multi (the real call returned). */
void osh_curl_removed(void *multi, void *easy);

/* curl_easy_cleanup(@easy) is about to run: end a transfer in flight and
 * mark the record closing (libcurl's own calls made meanwhile are its
 * own). Returns the record for osh_curl_cleanup_done, or NULL. */
struct osh_curl_xfer *osh_curl_cleanup_begin(void *easy);
/* After the real cleanup: free our list and the record. */
void osh_curl_cleanup_done(struct osh_curl_xfer *x);

/* After curl_easy_reset(@easy): every option is back to its default. */
void osh_curl_reset(void *easy);

/* After curl_easy_duphandle(@src) returned @dup (not NULL): the copy gets
 * the program's own options, never our list (which is freed with @src's
 * transfer). @may_create as for osh_curl_setopt. */
void osh_curl_duphandle(void *src, void *dup, bool may_create);

/* True while some traced transfer is attached to a multi handle: the
 * multi driving hooks then set osh_in_traced_library. One atomic load. */
bool osh_curl_multi_busy(void);

/* ---- pieces, exposed for tests ------------------------------------------ */

/* What the program's own header list says about the headers this module
 * adds or reports. Names compare case-insensitively; an entry "Name:"
 * (libcurl: remove the header) or "Name;" (send it empty) counts too. */
struct osh_curl_app_headers {
	int traceparent_count;
	int tracestate_count;
	int baggage_count;
	int request_id_count;
	struct osh_str traceparent;	/* value of the last one, trimmed */
	struct osh_str tracestate;
	bool user_agent_set;		/* a User-Agent entry (its value may be empty) */
	struct osh_str user_agent;
};

void osh_curl_scan_headers(const struct curl_slist *list, struct osh_curl_app_headers *ret);

/* A header line to add: "@name: @value". */
struct osh_curl_line {
	const char *name;	/* NUL-terminated */
	const char *value;
	size_t value_len;
};

/* Build the list to install: nodes pointing at @app's strings in order,
 * then one node per @lines[i] ("name: value"). One allocation (nodes, then
 * the added lines' bytes), to be released with free(); *ret is NULL when
 * both are empty. Returns 0 or -ENOMEM. */
int osh_curl_build_list(const struct curl_slist *app, const struct osh_curl_line *lines,
			size_t n_lines, struct curl_slist **ret);

/* error.type for a CURLcode: its symbolic name ("CURLE_COULDNT_CONNECT")
 * for the common ones, else "CURLE_<n>" written into @buf. */
#define OSH_CURL_ERROR_NAME_MAX 24
const char *osh_curl_error_name(int code, char buf[OSH_CURL_ERROR_NAME_MAX]);

/* Tests only: forget every record (their lists and copies are freed,
 * spans dropped). */
void osh_curl_reset_all(void);
