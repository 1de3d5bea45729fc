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

/* The value of a hex digit of either case, or -1. */
static inline int osh_hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}
