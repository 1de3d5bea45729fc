/* Head sampling (see sampler.h): the OTel SDK's built-in samplers as
 * selected by OTEL_TRACES_SAMPLER. ParentBased uses the same rule for remote
 * and local parents (the SDK defaults: follow the parent's sampled flag). */
#include "buildconf.h"

#include "sampler.h"

bool osh_sampler_ratio(double ratio, const uint8_t trace_id[16])
{
	uint64_t v = 0, bound;

	if (!(ratio > 0.0)) /* also NaN */
		return false;
	if (ratio >= 1.0)
		return true;
	/* 0 < ratio < 1, so ratio <= 1 - 2^-53 and scaling by 2^64 is exact:
	 * the product is at most 2^64 - 2^11 and converts to uint64 without
	 * overflow (at 1.0 it would be 2^64, out of range: handled above). */
	bound = (uint64_t)(ratio * 0x1p64);
	for (int i = 8; i < 16; i++)
		v = (v << 8) | trace_id[i];
	return v < bound;
}

bool osh_sampler_decide(enum osh_sampler_kind kind, double ratio,
			const struct osh_trace_ctx *parent, const uint8_t trace_id[16])
{
	bool has_parent = parent && parent->valid;
	bool parent_sampled = has_parent && (parent->flags & OSH_FLAG_SAMPLED);

	switch (kind) {
	case OSH_SAMPLER_ALWAYS_ON:
		return true;
	case OSH_SAMPLER_ALWAYS_OFF:
		return false;
	case OSH_SAMPLER_TRACEIDRATIO:
		return osh_sampler_ratio(ratio, trace_id);
	case OSH_SAMPLER_PARENTBASED_ALWAYS_OFF:
		return parent_sampled;
	case OSH_SAMPLER_PARENTBASED_TRACEIDRATIO:
		return has_parent ? parent_sampled : osh_sampler_ratio(ratio, trace_id);
	case OSH_SAMPLER_PARENTBASED_ALWAYS_ON:
	default: /* the SDK's default sampler */
		return has_parent ? parent_sampled : true;
	}
}
