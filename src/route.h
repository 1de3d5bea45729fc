/* Low-cardinality path templates for span names (LLM DevOps standard §4):
 * the URL path without query, with id-like segments replaced by "{id}".
 * Pure, any thread, no allocation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* True when a path segment is an identifier: all digits; a UUID; hex of 16+
 * chars containing a digit; or a token of 16+ chars of [A-Za-z0-9_-+=.~] with
 * at least one digit and both letter cases (base64-like / prefixed ids such as
 * "chatcmpl-AbC123...", "msg_01XFDUDY..."). */
bool osh_route_segment_is_id(const char *seg, size_t len);

/* Write the template of @path (origin-form target; a query or fragment is
 * cut off; an absolute-form target is reduced to its path) into @out,
 * NUL-terminated, truncated to @outsz - 1. Returns the length. "" -> "/";
 * authority-form ("host:443") and "*" -> "/". Segments that are ids or that
 * osh_redact_is_secret() flags become "{id}"; empty segments are kept. */
size_t osh_route_template(const char *path, size_t len, char *out, size_t outsz);
