/* OTLP protobuf encoding of a batch of spans (module side). Spans are
 * written by hand in protobuf wire format, byte-identical to protobuf-c's
 * output (the unit tests compare the two); protobuf-c pre-packs the resource
 * and scope and decodes responses. Exporter thread only; allocates with
 * malloc. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct osh_resource;
struct osh_span;

/* Encode an ExportTraceServiceRequest holding one ResourceSpans (@res), one
 * ScopeSpans (scope "otelshim", the project version, semconv schema URL) and
 * the @n spans. On success returns 0 and a malloc'd buffer in *ret_buf
 * (caller frees) with its size in *ret_len; -ENOMEM otherwise. An empty batch
 * encodes as an empty request (zero bytes, *ret_buf still freeable). */
int osh_otlp_encode(const struct osh_resource *res, struct osh_span *const *spans, size_t n,
		    uint8_t **ret_buf, size_t *ret_len);

/* Parse an ExportTraceServiceResponse body. Returns 0 and the rejected span
 * count (0 when partial_success is unset) or -EINVAL for an undecodable
 * body. @msg (may be NULL) gets the error_message, truncated. */
int osh_otlp_decode_response(const uint8_t *buf, size_t len, int64_t *ret_rejected, char *msg,
			     size_t msgsz);

/* A reusable encoder: the resource and scope are packed once at creation
 * and the output buffer is kept across batches, so a steady exporter does
 * not allocate. */
struct osh_otlp_encoder;

/* NULL when memory is short. @res is copied; the caller may free it. */
struct osh_otlp_encoder *osh_otlp_encoder_create(const struct osh_resource *res);
void osh_otlp_encoder_destroy(struct osh_otlp_encoder *enc); /* accepts NULL */

/* Same message as osh_otlp_encode(), but *ret_buf points into the encoder
 * and stays valid until the next call or destroy. 0 or -ENOMEM. */
int osh_otlp_encoder_encode(struct osh_otlp_encoder *enc, struct osh_span *const *spans,
			    size_t n, const uint8_t **ret_buf, size_t *ret_len);

/* The same request built a few spans at a time: add() encodes spans into
 * the batch under way (they may be freed right after), finish() completes
 * it, as encode() would have for all the spans added, and starts the next.
 * The exporter thread adds spans as they arrive, so records go back to the
 * pool at once instead of waiting for a full batch. add(): 0 or -ENOMEM
 * (spans added before the failing one stay in the batch). */
int osh_otlp_encoder_add(struct osh_otlp_encoder *enc, struct osh_span *const *spans, size_t n);
size_t osh_otlp_encoder_pending(const struct osh_otlp_encoder *enc);
int osh_otlp_encoder_finish(struct osh_otlp_encoder *enc, const uint8_t **ret_buf,
			    size_t *ret_len);
