/* Strict percent-decoding, for configuration values (OTEL_RESOURCE_ATTRIBUTES,
 * OTEL_EXPORTER_OTLP_HEADERS) where a bad escape makes the entry invalid.
 * Inline: the OTLP module uses it too and links none of the core. (Baggage
 * values from the wire are decoded leniently instead: osh_percent_decode.) */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "ids.h"

/* Decode [s, s + len) into @out (at least @len + 1 bytes, NUL-terminated);
 * *ret_len gets the decoded length. False on a '%' not followed by two hex
 * digits. */
static inline bool osh_percent_decode_strict(const char *s, size_t len, char *out,
					     size_t *ret_len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int hi, lo;

		if (s[i] != '%') {
			out[o++] = s[i];
			continue;
		}
		if (len - i < 3)
			return false;
		hi = osh_hex_digit((unsigned char)s[i + 1]);
		lo = osh_hex_digit((unsigned char)s[i + 2]);
		if (hi < 0 || lo < 0)
			return false;
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[o] = '\0';
	*ret_len = o;
	return true;
}
