/* Head samplers: every kind against every parent shape, and the
 * TraceIdRatioBased threshold arithmetic. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "sampler.h"

/* Trace ids whose lower 64 bits are 0 (sampled at any ratio > 2^-64) and
 * all-ones (sampled only at ratio >= 1). Upper bytes are deliberately the
 * opposite, to show they are ignored. */
static const uint8_t TID_LO[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				   0,	 0,    0,    0,	   0,	 0,    0,    0};
static const uint8_t TID_HI[16] = {0,	 0,    0,    0,	   0,	 0,    0,    1,
				   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static void tid_from_u64(uint8_t tid[16], uint64_t upper, uint64_t lower)
{
	for (int i = 0; i < 8; i++) {
		tid[7 - i] = (uint8_t)(upper >> (8 * i));
		tid[15 - i] = (uint8_t)(lower >> (8 * i));
	}
}

enum parent_shape { ABSENT, INVALID, SAMPLED, UNSAMPLED, N_SHAPES };

static const struct osh_trace_ctx *make_parent(enum parent_shape shape, struct osh_trace_ctx *buf)
{
	memset(buf, 0, sizeof(*buf));
	buf->trace_id[0] = 1;
	buf->span_id[0] = 1;
	buf->remote = true;
	switch (shape) {
	case ABSENT:
		return NULL;
	case INVALID: /* sampled flag set, but not a usable parent */
		buf->flags = OSH_FLAG_SAMPLED;
		buf->valid = false;
		break;
	case SAMPLED:
		buf->flags = OSH_FLAG_SAMPLED | OSH_FLAG_RANDOM;
		buf->valid = true;
		break;
	case UNSAMPLED: /* the random bit alone does not mean sampled */
		buf->flags = OSH_FLAG_RANDOM;
		buf->valid = true;
		break;
	default:
		break;
	}
	return buf;
}

Test(sampler, every_kind_every_parent)
{
	/* expect[kind][shape] = {decision for TID_LO, decision for TID_HI} at
	 * ratio 0.5: TID_LO is under the threshold, TID_HI above it. */
	static const bool expect[6][N_SHAPES][2] = {
		[OSH_SAMPLER_ALWAYS_ON] = {{1, 1}, {1, 1}, {1, 1}, {1, 1}},
		[OSH_SAMPLER_ALWAYS_OFF] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}},
		[OSH_SAMPLER_TRACEIDRATIO] = {{1, 0}, {1, 0}, {1, 0}, {1, 0}},
		[OSH_SAMPLER_PARENTBASED_ALWAYS_ON] = {{1, 1}, {1, 1}, {1, 1}, {0, 0}},
		[OSH_SAMPLER_PARENTBASED_ALWAYS_OFF] = {{0, 0}, {0, 0}, {1, 1}, {0, 0}},
		[OSH_SAMPLER_PARENTBASED_TRACEIDRATIO] = {{1, 0}, {1, 0}, {1, 1}, {0, 0}},
	};
	static const char *const shape_name[] = {"absent", "invalid", "sampled", "unsampled"};

	for (int kind = 0; kind < 6; kind++) {
		for (int shape = 0; shape < N_SHAPES; shape++) {
			struct osh_trace_ctx buf;
			const struct osh_trace_ctx *parent = make_parent(shape, &buf);
			bool lo = osh_sampler_decide(kind, 0.5, parent, TID_LO);
			bool hi = osh_sampler_decide(kind, 0.5, parent, TID_HI);

			cr_assert_eq(lo, expect[kind][shape][0], "kind %d parent %s, low id", kind,
				     shape_name[shape]);
			cr_assert_eq(hi, expect[kind][shape][1], "kind %d parent %s, high id", kind,
				     shape_name[shape]);
		}
	}
}

Test(sampler, parent_based_same_for_local_parent)
{
	struct osh_trace_ctx p;

	make_parent(SAMPLED, &p);
	p.remote = false;
	cr_assert(osh_sampler_decide(OSH_SAMPLER_PARENTBASED_ALWAYS_OFF, 0, &p, TID_HI));
	make_parent(UNSAMPLED, &p);
	p.remote = false;
	cr_assert_not(osh_sampler_decide(OSH_SAMPLER_PARENTBASED_ALWAYS_ON, 1, &p, TID_LO));
}

Test(sampler, ratio_edges)
{
	uint8_t tid[16];

	/* ratio >= 1: always, including the all-ones lower half (a naive
	 * (uint64_t)(1.0 * 2^64) is out of range and typically yields 0). */
	cr_assert(osh_sampler_ratio(1.0, TID_HI));
	cr_assert(osh_sampler_ratio(1.5, TID_HI));
	cr_assert(osh_sampler_ratio(INFINITY, TID_HI));
	/* ratio <= 0 (or NaN): never, even for the smallest id. */
	cr_assert_not(osh_sampler_ratio(0.0, TID_LO));
	cr_assert_not(osh_sampler_ratio(-0.0, TID_LO));
	cr_assert_not(osh_sampler_ratio(-1.0, TID_LO));
	cr_assert_not(osh_sampler_ratio(-INFINITY, TID_LO));
	cr_assert_not(osh_sampler_ratio(NAN, TID_LO));
	/* Largest ratio below 1: threshold 2^64 - 2^11, exact. */
	cr_assert_not(osh_sampler_ratio((1.0 - 0x1p-53), TID_HI));
	tid_from_u64(tid, 0, UINT64_MAX - 2048);
	cr_assert(osh_sampler_ratio((1.0 - 0x1p-53), tid));
	tid_from_u64(tid, 0, UINT64_MAX - 2047);
	cr_assert_not(osh_sampler_ratio((1.0 - 0x1p-53), tid));
	/* Smallest ratios: 2^-64 admits exactly the id 0; below, nothing. */
	cr_assert(osh_sampler_ratio(0x1p-64, TID_LO));
	tid_from_u64(tid, 0, 1);
	cr_assert_not(osh_sampler_ratio(0x1p-64, tid));
	cr_assert_not(osh_sampler_ratio(0x1p-70, TID_LO));
}

Test(sampler, ratio_threshold_is_exact)
{
	static const struct {
		double ratio;
		uint64_t last_in; /* largest sampled value; +1 is not sampled */
	} cases[] = {
		{0.5, 0x7fffffffffffffffULL},
		{0.25, 0x3fffffffffffffffULL},
		{0.75, 0xbfffffffffffffffULL},
		{0.125, 0x1fffffffffffffffULL},
	};
	uint8_t tid[16];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tid_from_u64(tid, 0, cases[i].last_in);
		cr_assert(osh_sampler_ratio(cases[i].ratio, tid), "ratio %g", cases[i].ratio);
		tid_from_u64(tid, 0, cases[i].last_in + 1);
		cr_assert_not(osh_sampler_ratio(cases[i].ratio, tid), "ratio %g", cases[i].ratio);
	}
}

Test(sampler, ratio_uses_big_endian_lower_half_only)
{
	uint8_t a[16], b[16];

	/* Same bytes 8..15, different 0..7: same decision. */
	tid_from_u64(a, 0, 0x7fffffffffffffffULL);
	tid_from_u64(b, UINT64_MAX, 0x7fffffffffffffffULL);
	cr_assert(osh_sampler_ratio(0.5, a));
	cr_assert(osh_sampler_ratio(0.5, b));
	/* Byte 8 is the most significant: 0x80 there is above 0.5, while the
	 * same byte at position 15 (little-endian reading) would be below. */
	memset(a, 0, sizeof(a));
	a[8] = 0x80;
	cr_assert_not(osh_sampler_ratio(0.5, a));
	memset(a, 0, sizeof(a));
	a[15] = 0x80;
	cr_assert(osh_sampler_ratio(0.5, a));
}

/* The test's own generator, so the id set is fixed (not osh_ids). */
static uint64_t test_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

Test(sampler, ratio_deterministic_and_proportional)
{
	uint64_t seed = 42;
	int sampled = 0;

	for (int i = 0; i < 10000; i++) {
		uint8_t tid[16];
		bool d;

		tid_from_u64(tid, test_splitmix(&seed), test_splitmix(&seed));
		d = osh_sampler_ratio(0.25, tid);
		/* Same trace id, same decision, through either entry point. */
		cr_assert_eq(osh_sampler_ratio(0.25, tid), d);
		cr_assert_eq(osh_sampler_decide(OSH_SAMPLER_TRACEIDRATIO, 0.25, NULL, tid), d);
		cr_assert_eq(
			osh_sampler_decide(OSH_SAMPLER_PARENTBASED_TRACEIDRATIO, 0.25, NULL, tid),
			d);
		sampled += d;
	}
	cr_assert(sampled >= 2000 && sampled <= 3000, "0.25 sampled %d of 10000", sampled);
}

Test(sampler, ratio_monotonic_in_ratio)
{
	/* An id sampled at ratio r is sampled at every larger ratio: traces
	 * kept by a low-rate service are kept by a higher-rate one. */
	uint64_t seed = 7;

	for (int i = 0; i < 1000; i++) {
		uint8_t tid[16];
		bool prev = false;

		tid_from_u64(tid, test_splitmix(&seed), test_splitmix(&seed));
		for (int step = 0; step <= 20; step++) {
			bool d = osh_sampler_ratio(step / 20.0, tid);

			cr_assert(d || !prev, "decision went from sampled to not at %d/20", step);
			prev = d;
		}
		cr_assert(prev, "ratio 1 samples everything");
	}
}
