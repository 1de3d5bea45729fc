/* Client-side HTTP/1.x exchange tracking: the bytes a program writes to and
 * reads from an outgoing connection become CLIENT spans, and the program's
 * requests get a traceparent header (docs/ARCHITECTURE.md, "Writes and
 * injection").
 *
 * Write path, per hooked send call:
 *   osh_client_tx_prepare()  parse the bytes the program hands us (on a
 *                            copy of the parser state), create exchanges
 *                            for requests that start, decide their trace
 *                            context when their head completes, and plan
 *                            where injected header lines go;
 *   the hook makes the real call, with the plan's iovec when it changed;
 *   osh_client_tx_commit()   map the real result back to the program's own
 *                            byte count, and advance the parser over exactly
 *                            the program bytes that went out.
 * Read path: osh_client_rx() after the real call with what it returned.
 *
 * All functions take the connection's lock themselves (never held across
 * the real call). Stream positions are counted in the program's bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "http.h"

struct osh_conn;
struct osh_span;

/* Requests in flight on one connection (pipelining depth). */
#define OSH_CLIENT_RING 4
/* Most injections planned in one send call. */
#define OSH_TX_MAX_INS 4
/* iovec entries a plan can hold (program's + split points + injected). */
#define OSH_TX_MAX_IOV 80

/* Why a connection's in-flight exchanges end without a full response. */
enum osh_end_reason {
	OSH_END_CLOSED = 1,	/* the program closed the socket */
	OSH_END_EOF,		/* the peer closed it */
	OSH_END_ERROR,		/* a read/write error (errno kept separately) */
	OSH_END_DESYNC,		/* the shim lost track of the stream */
};

/* A growable byte buffer for heads split across calls (capped). */
struct osh_buf {
	char *p;
	uint32_t len;
	uint32_t cap;
};

struct osh_exchange {
	uint64_t seq;
	uint64_t start_ns;
	uint64_t head_pos;	/* stream offset of the request's first byte */
	uint64_t ins_pos;	/* stream offset where the injected lines go */
	uint16_t ins_len;	/* injected bytes in all */
	uint16_t ins_sent;	/* of which already on the wire */
	uint16_t extra_len;
	uint8_t tp_len;		/* "traceparent: ...\r\n" length, 0 without it */
	uint8_t flags;		/* W3C flags we propagate */
	bool head_parsed;	/* the request head was complete (ids decided) */
	bool inject;		/* lines still to insert at ins_pos */
	bool is_head;		/* HEAD request: response has no body */
	bool is_connect;	/* CONNECT: a 2xx turns the connection into a tunnel */
	bool got_response;	/* a final response head was read */
	bool req_chunked_done;	/* chunked request body complete: */
	uint64_t req_chunked_size; /* its decoded size */
	int tx_errno;		/* write error seen while sending it, 0 if none */
	uint8_t trace_id[16];
	uint8_t span_id[8];
	const char *extra;	/* tracestate/baggage lines (static storage or extra_heap) */
	struct osh_span *rec;	/* NULL when not recorded (unsampled) */
	struct osh_llm *llm;	/* an LLM call's tracker (llm.h), NULL for others */
	/* Lines built for this request from the thread's context (its
	 * tracestate, baggage, x-request-id); freed when the ring slot is
	 * reused or the connection reset. NULL in the common case. */
	char *extra_heap;
	char tp_line[72];
};

/* Write-side parser position: a small value copied for dry runs. */
struct osh_tx_parse {
	uint8_t state;
	bool sniffed;		/* the connection's first bytes looked like HTTP */
	uint64_t pos;		/* program bytes consumed so far */
	uint32_t acc_len;	/* split head bytes held in the tx buffer */
	uint32_t acc_scanned;
	uint64_t head_pos;	/* where the current head began */
	struct osh_http_body body;
};

struct osh_client {
	bool tx_busy;		/* a send is between prepare and commit */
	bool tx_abandoned;	/* another thread wrote meanwhile: stop parsing */
	bool rx_sniffed;
	uint8_t rx_state;
	uint32_t rx_scanned;
	struct osh_tx_parse tx;
	struct osh_buf tx_acc;
	struct osh_buf rx_acc;
	struct osh_http_body rx_body;
	int rx_status;
	int rx_minor;
	uint64_t ring_head;	/* oldest exchange awaiting its response */
	uint64_t ring_tail;	/* next sequence number */
	struct osh_exchange ring[OSH_CLIENT_RING];
};

/* What the hook sends and how to map the result back. */
struct osh_tx_plan {
	bool active;		/* false: call the real function unchanged */
	bool changed;		/* true: send plan.iov instead of the program's */
	int iovcnt;
	size_t total;		/* program bytes in this call */
	size_t real_total;	/* bytes in plan.iov */
	uint64_t start_pos;	/* stream offset of this call's first byte */
	struct osh_tx_parse saved;	/* parser before this call */
	struct osh_tx_parse after;	/* parser after all of it (dry run) */
	uint64_t tail_before;	/* ring_tail before this call */
	int n_ins;
	struct {
		uint64_t seq;
		size_t at;	/* offset in this call's program bytes */
		uint16_t from;	/* first injected byte sent by this call */
		uint16_t len;	/* injected bytes sent by this call */
	} ins[OSH_TX_MAX_INS];
	struct iovec iov[OSH_TX_MAX_IOV];
};

/* Build the injected tracestate/baggage lines of the environment context.
 * Once, at load, after config and the environment carrier. */
void osh_client_init(void);

/* Reset to the state of a fresh connection (slot reuse). Frees buffers and
 * in-flight span records without exporting them. */
void osh_client_reset(struct osh_client *cl);

/* See the file comment. @fd: the connection's fd (kept for diagnostics). */
void osh_client_tx_prepare(struct osh_conn *c, int fd, const struct iovec *iov, int iovcnt,
			   struct osh_tx_plan *plan);

/* @iov/@iovcnt: the program's own buffers, as given to prepare.
 * @real_ret and @err: what the real call returned and its errno. Returns
 * the count the program must see (-1 when the real call failed); never
 * changes the meaning of an error. */
ssize_t osh_client_tx_commit(struct osh_conn *c, struct osh_tx_plan *plan, const struct iovec *iov,
			     int iovcnt, ssize_t real_ret, int err);

/* @n program bytes went out without passing through the shim (sendfile,
 * splice). Inside a request body of known length they are counted as body;
 * anywhere else the write side stops interpreting the stream (no injection
 * can land in bytes it did not see). */
void osh_client_tx_opaque(struct osh_conn *c, size_t n);

/* Feed what a real read returned: @ret > 0 bytes spread over @iov (the
 * program's buffers), 0 for end of stream, -1 with @err. */
void osh_client_rx(struct osh_conn *c, const struct iovec *iov, int iovcnt, ssize_t ret, int err);

/* The parent of a request that carries no traceparent of its own: the
 * SERVER span this thread is serving (context.h), else this process's span
 * (OTELSHIM_PROCESS_SPANS), else the environment carrier; NULL for a root.
 * Shared with the libcurl level (curl_trace.c), which must decide exactly
 * as this engine does. App thread; no allocation, no syscall. */
struct osh_trace_ctx;
const struct osh_trace_ctx *osh_client_current_parent(void);

/* End every in-flight exchange of @cl for @why (@err: errno when known).
 * Lock held by the caller. */
void osh_client_abandon(struct osh_client *cl, enum osh_end_reason why, int err);
