/* Prefetching for writing. A function that asks for lines it (or another
 * thread on this core) will write carries OSH_PREFETCHW_TARGET: where
 * prefetchw exists (x86-64 since Broadwell and every AMD64) its
 * __builtin_prefetch(p, 1, 3) then asks for the lines in the state a write
 * needs; elsewhere it stays a read prefetch. */
#pragma once

#if defined(__x86_64__)
#define OSH_PREFETCHW_TARGET __attribute__((target("prfchw")))
#else
#define OSH_PREFETCHW_TARGET
#endif
