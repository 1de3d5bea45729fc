/* Server-side HTTP/1.x exchange tracking: the requests a program reads from
 * an accepted connection and the responses it writes become SERVER spans
 * (docs/ARCHITECTURE.md, "Server connections").
 *
 * Nothing is ever changed in either direction: the hooks make the real call
 * and then show the engine what went through it.
 *   osh_server_rx()      after a read: requests (heads, bodies, pipelining);
 *                        a request head decides the trace context (extracted
 *                        from its traceparent), starts the span and makes it
 *                        the reading thread's context (context.h);
 *   osh_server_tx()      after a write: responses (interim 1xx skipped,
 *                        framing followed); the exchange ends when the body
 *                        is complete;
 *   osh_server_tx_opaque()  bytes sent without the shim seeing them
 *                        (sendfile, splice): counted as response body;
 *   osh_server_shutdown()   shutdown(SHUT_WR): the end of a response
 *                        delimited by the connection closing.
 *
 * Each takes the slot of the fd the program used (the connection itself or
 * a dup of it) and resolves it to the slot holding the state
 * (osh_conn_lock_server). Stream positions count the program's bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "http.h"
#include "http_client.h"

struct osh_conn;
struct osh_span;

/* Requests read and not yet answered on one connection (pipelining). */
#define OSH_SERVER_RING 4

struct osh_srv_exchange {
	uint64_t seq;
	uint64_t start_ns;	/* first byte of the request read */
	uint64_t req_body;	/* request body size (declared or decoded) */
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t flags;		/* W3C flags of the SERVER span */
	uint8_t minor;		/* HTTP/1.<minor> of the request */
	bool head_parsed;	/* the request head was complete and valid */
	bool is_head;		/* HEAD: the response has no body */
	bool is_connect;	/* CONNECT: a 2xx response starts a tunnel */
	bool req_body_known;	/* req_body is meaningful */
	struct osh_span *rec;	/* NULL when not recorded (unsampled) */
};

/* Where the local end of an accepted connection is (server.port when the
 * request has no Host), copied from its listener. */
struct osh_server {
	/* Requests (reads). */
	uint8_t rq_state;
	bool rq_sniffed;
	bool peer_eof;		/* the client closed its side */
	uint32_t rq_scanned;
	uint64_t rq_seq;	/* exchange whose request is being read */
	struct osh_buf rq_acc;	/* a request head split across reads */
	struct osh_http_body rq_body;
	/* Responses (writes). */
	uint8_t rs_state;
	bool rs_sniffed;
	bool rs_orphan;		/* the response being written has no request */
	uint32_t rs_scanned;
	int rs_status;
	struct osh_buf rs_acc;	/* a response head split across writes */
	struct osh_http_body rs_body;
	uint64_t ring_head;	/* oldest exchange without a complete response */
	uint64_t ring_tail;	/* next sequence number */
	struct osh_srv_exchange ring[OSH_SERVER_RING];
};

/* Reset to a fresh connection's state: frees buffers and in-flight span
 * records without exporting them. Lock held (or the slot unpublished). */
void osh_server_reset(struct osh_server *sv);

/* After a real read on @c: @ret > 0 bytes spread over @iov, 0 for end of
 * stream, -1 with @err. */
void osh_server_rx(struct osh_conn *c, const struct iovec *iov, int iovcnt, ssize_t ret, int err);

/* After a real write on @c: @ret bytes of @iov went out (the program's own
 * bytes, unchanged), or -1 with @err. */
void osh_server_tx(struct osh_conn *c, const struct iovec *iov, int iovcnt, ssize_t ret, int err);

/* @n bytes went out that the shim could not see (sendfile, splice). Counted
 * as body of the response being written when its framing allows it
 * (Content-Length, or until close); otherwise the response ends now and the
 * connection is no longer traced. */
void osh_server_tx_opaque(struct osh_conn *c, size_t n);

/* Request bytes were consumed without the shim seeing them (MSG_TRUNC,
 * splice out of the socket): requests are no longer parsed; those already
 * read still end with their responses. */
void osh_server_rx_lost(struct osh_conn *c);

/* Deferred observation (docs/ARCHITECTURE.md, "Server connections"): from
 * now on, calls on server connections are logged and replayed later by the
 * exporter thread. Called once, by the exporter thread at its start; false
 * when it cannot be (no memory). */
bool osh_server_defer_start(void);

/* Replay what is logged, on the calling thread: the exporter thread before
 * each drain, and anyone about to change or end a connection's state. */
void osh_server_replay(void);

/* A thread is about to read its context (an outgoing request): the process
 * stops deferring, and what is logged is replayed first. */
void osh_server_before_context(void);

/* The program shut down its sending side: a response delimited by the
 * close is complete; anything else in flight ends unanswered. */
void osh_server_shutdown(struct osh_conn *c);

/* The connection stops being traced; end every exchange in flight for
 * @why (@err: errno when known). Caller holds the lock of the slot that
 * holds the state. */
void osh_server_abandon(struct osh_conn *c, enum osh_end_reason why, int err);
