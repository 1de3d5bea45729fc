/* Trace/span ids (see ids.h). Each thread owns a xoshiro256** state in
 * initial-exec TLS, so drawing an id is a handful of arithmetic operations:
 * no lock, no syscall, no __tls_get_addr.
 *
 * Seeding: one 64-bit seed per process (getrandom once), mixed with a
 * per-thread counter through splitmix64, so that every thread starts from a
 * different, well-scrambled state. A global generation number tells a thread
 * that its state is stale: it starts at 1 (a zeroed TLS block has generation
 * 0, so a new thread seeds on first use) and osh_ids_after_fork() bumps it,
 * which makes the fork child draw a fresh process seed instead of replaying
 * the parent's stream.
 */
#include "buildconf.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "ids.h"

struct rng {
	uint64_t s[4];
	unsigned long gen; /* generation this state was seeded for; 0 = never */
};

static __thread struct rng tls_rng __attribute__((tls_model("initial-exec")));

/* unsigned long: lock-free wherever we build, which is what makes
 * osh_ids_after_fork() async-signal-safe. */
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2, "generation counter must be lock-free");
static _Atomic unsigned long generation = 1;
static _Atomic unsigned long seed_gen; /* generation proc_seed belongs to */
static _Atomic uint64_t proc_seed;
static _Atomic uint64_t thread_count;

#define GOLDEN_GAMMA 0x9e3779b97f4a7c15ULL

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t splitmix64(uint64_t *x)
{
	*x += GOLDEN_GAMMA;
	return mix64(*x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

/* Used only when getrandom() fails (old kernel, seccomp, entropy pool not
 * ready with GRND_NONBLOCK). Not cryptographic, but differs between
 * processes (pid, ASLR'd addresses) and between runs (clocks). */
static uint64_t fallback_seed(void)
{
	struct timespec ts = {0};
	uint64_t x = atomic_load_explicit(&proc_seed, memory_order_relaxed);

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	x ^= mix64((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec + GOLDEN_GAMMA);
	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	x = mix64(x ^ ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec));
	x = mix64(x ^ (uint64_t)getpid());
	x = mix64(x ^ (uint64_t)(uintptr_t)&ts);
	x = mix64(x ^ (uint64_t)(uintptr_t)&tls_rng);
	x = mix64(x ^ (uint64_t)(uintptr_t)&fallback_seed);
	return x;
}

/* The seed of generation @g, drawn by the first thread that needs it. Two
 * threads racing here may both call getrandom and one value wins; either is
 * fresh, and the per-thread counter keeps their states apart anyway. */
static uint64_t process_seed(unsigned long g)
{
	uint64_t seed;

	if (atomic_load_explicit(&seed_gen, memory_order_acquire) == g)
		return atomic_load_explicit(&proc_seed, memory_order_relaxed);
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed))
		seed = fallback_seed();
	atomic_store_explicit(&proc_seed, seed, memory_order_relaxed);
	atomic_store_explicit(&seed_gen, g, memory_order_release);
	return seed;
}

static void reseed(struct rng *r, unsigned long g)
{
	uint64_t ctr = atomic_fetch_add_explicit(&thread_count, 1, memory_order_relaxed);
	uint64_t x = process_seed(g) ^ splitmix64(&ctr);

	/* Four consecutive splitmix64 outputs come from four distinct inputs of
	 * a bijection, so at most one is zero: the state is never all-zero,
	 * which is the one state xoshiro cannot leave. */
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
	r->gen = g;
}

static inline struct rng *rng_get(void)
{
	struct rng *r = &tls_rng;
	unsigned long g = atomic_load_explicit(&generation, memory_order_acquire);

	if (__builtin_expect(r->gen != g, 0))
		reseed(r, g);
	return r;
}

static inline void put_be64(uint8_t *out, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(out, &v, 8);
}

void osh_ids_trace_id(uint8_t out[16])
{
	struct rng *r = rng_get();
	uint64_t hi, lo;

	do {
		hi = xoshiro_next(r);
		lo = xoshiro_next(r);
	} while ((hi | lo) == 0);
	put_be64(out, hi);
	put_be64(out + 8, lo);
}

void osh_ids_span_id(uint8_t out[8])
{
	struct rng *r = rng_get();
	uint64_t v;

	do {
		v = xoshiro_next(r);
	} while (v == 0);
	put_be64(out, v);
}

uint64_t osh_ids_random64(void)
{
	return xoshiro_next(rng_get());
}

void osh_ids_uuid4(char out[37])
{
	struct rng *r = rng_get();
	uint8_t b[16];
	char hex[32];
	size_t o = 0;

	put_be64(b, xoshiro_next(r));
	put_be64(b + 8, xoshiro_next(r));
	/* RFC 4122 §4.4: version 4 in the high nibble of byte 6, variant 10xx
	 * in the high bits of byte 8. */
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	osh_hex_encode(b, sizeof(b), hex);
	for (size_t i = 0; i < sizeof(hex); i++) {
		if (i == 8 || i == 12 || i == 16 || i == 20)
			out[o++] = '-';
		out[o++] = hex[i];
	}
	out[36] = '\0';
}

void osh_ids_after_fork(void)
{
	/* A single lock-free atomic: async-signal-safe. Every thread (in the
	 * child: only the forking one) reseeds on its next draw. */
	atomic_fetch_add_explicit(&generation, 1, memory_order_release);
}

/* clang-format off */
#define HEX_ROW(h) \
	h"0" h"1" h"2" h"3" h"4" h"5" h"6" h"7" h"8" h"9" h"a" h"b" h"c" h"d" h"e" h"f"

/* Two characters per byte value: one load per byte instead of two. */
static const char hex_pairs[] =
	HEX_ROW("0") HEX_ROW("1") HEX_ROW("2") HEX_ROW("3")
	HEX_ROW("4") HEX_ROW("5") HEX_ROW("6") HEX_ROW("7")
	HEX_ROW("8") HEX_ROW("9") HEX_ROW("a") HEX_ROW("b")
	HEX_ROW("c") HEX_ROW("d") HEX_ROW("e") HEX_ROW("f");
/* clang-format on */

_Static_assert(sizeof(hex_pairs) == 513, "hex pair table");

#ifdef __SSE2__
/* Sixteen nibbles (one per byte of @x, values 0-15) as lowercase hex digits. */
static inline __m128i hex_digits(__m128i x)
{
	__m128i letter = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(9)),
				       _mm_set1_epi8('a' - '0' - 10));

	return _mm_add_epi8(_mm_add_epi8(x, _mm_set1_epi8('0')), letter);
}
#endif

void osh_hex_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0;

#ifdef __SSE2__
	/* Ids are 16 and 8 bytes, encoded for every traced request: split each
	 * byte into its high and low nibble, interleave them, and turn 16
	 * nibbles into digits at a time. */
	const __m128i low4 = _mm_set1_epi8(0x0f);

	for (; i + 8 <= n; i += 8) {
		__m128i v = _mm_loadl_epi64((const __m128i *)(const void *)(in + i));
		__m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
		__m128i lo = _mm_and_si128(v, low4);

		_mm_storeu_si128((__m128i *)(void *)(out + 2 * i),
				 hex_digits(_mm_unpacklo_epi8(hi, lo)));
	}
#endif
	/* The rest: two-byte copies from the pair table. Each input byte is
	 * read into a local before the store: through char pointers the
	 * compiler must assume a store to @out can change @in, and would
	 * reload. */
	for (; i < n; i++) {
		unsigned b = in[i];

		memcpy(out + 2 * i, hex_pairs + 2 * b, 2);
	}
}
