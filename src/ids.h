/* Trace and span ids from a fast per-thread PRNG (xoshiro256**), seeded from
 * getrandom() once per process (and again in a fork child) mixed with a
 * per-thread counter. Any thread; lock-free; no syscall after the seed. */
#pragma once

#include <stddef.h>
#include <stdint.h>

void osh_ids_trace_id(uint8_t out[16]); /* never all-zero */
void osh_ids_span_id(uint8_t out[8]);	/* never all-zero */
uint64_t osh_ids_random64(void);
/* Random UUID v4, lowercase, 36 chars + NUL. */
void osh_ids_uuid4(char out[37]);
/* Fork child: forget the seed so the child never repeats the parent's ids.
 * Async-signal-safe. */
void osh_ids_after_fork(void);

/* Lowercase hex of @n bytes into @out (2n chars, no NUL). */
void osh_hex_encode(const uint8_t *in, size_t n, char *out);

/* A hex digit's value plus one, either case; 0 for any other byte. One
 * load per digit (a long stream has a chunk-size line per chunk). Static
 * in the header: each file that reads it keeps its own 256 bytes, the
 * protocol module (linked apart) included. */
static const uint8_t osh_hex_values[256] = {
	['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5,
	['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
	['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
	['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/* The value of a hex digit of either case, or -1. */
static inline int osh_hex_digit(unsigned char c)
{
	return (int)osh_hex_values[c] - 1;
}
