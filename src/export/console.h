/* The console exporter: one line per span on stderr, readable text or a
 * JSON object (LOG_FORMAT=json). Exporter thread only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct osh_resource;
struct osh_span;

/* Format @span into @buf (NUL-terminated, ends with '\n', truncated to
 * @bufsz). Returns the length. */
size_t osh_console_format(const struct osh_span *span, const struct osh_resource *res, bool json,
			  char *buf, size_t bufsz);
