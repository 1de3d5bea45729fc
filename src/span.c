/* Span records (see span.h). */
#include "buildconf.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "prefetch.h"
#include "span.h"

/* Records are recycled through a lock-free pool instead of malloc/free: a
 * record is taken on an app thread and given back on the exporter thread,
 * the pattern general-purpose allocators handle worst.
 *
 * The pool is a stack: the record given out next is the one given back
 * last, whose lines the exporter thread has just had in its cache. A queue
 * would hand records out in the order they came back, cycling through every
 * record ever mapped (hundreds of 3.3 KiB records for a busy server, more
 * than a core's L2), so that each one came in cold; the stack keeps the
 * working set to the records actually in flight.
 *
 * The records live in one region reserved at first use (POOL_SIZE records
 * of address space, nothing committed) and committed in steps that double
 * (8, 8, 16, ... 512), each populated in one call: on the VMs this runs on
 * a page touched for the first time costs ~9 µs of fault handling one by
 * one and ~0.4 µs populated (docs/BENCHMARKS.md). A process that records
 * one span commits 8 records, one that records thousands ~3.3 MiB once.
 * Past that, or when the reservation fails, records come from malloc and
 * go back to free().
 *
 * The stack is a Treiber stack over record indexes: its top word holds the
 * top index + 1 (0: empty) and a tag that every push and pop changes, so
 * that a pop which read a top, was overtaken by a pop and a push of the
 * same record, and then tries its exchange, fails instead of installing a
 * stale next. The links live beside the records, not in them, so that the
 * user of a record never writes a word another thread may be reading. */
#define POOL_SIZE 1024
#define STEP_FIRST 8
enum { POOL_NONE = 0, POOL_INIT, POOL_READY, POOL_FAILED };
static _Atomic int pool_state;
static char *region;				/* POOL_SIZE records, reserved */
static _Atomic uint64_t free_top;		/* tag << 32 | (index + 1) */
static _Atomic uint32_t free_next[POOL_SIZE];	/* index + 1 of the record below */
static _Atomic unsigned committed;		/* records committed */
static atomic_flag growing = ATOMIC_FLAG_INIT;

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23	/* Linux 5.14; older kernels say EINVAL */
#endif

static bool pool_ready(void)
{
	int st = atomic_load_explicit(&pool_state, memory_order_acquire);
	int expected = POOL_NONE;

	if (__builtin_expect(st == POOL_READY, 1))
		return true;
	if (st == POOL_NONE && atomic_compare_exchange_strong(&pool_state, &expected, POOL_INIT)) {
		void *m = mmap(NULL, (size_t)POOL_SIZE * sizeof(struct osh_span),
			       PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		region = m == MAP_FAILED ? NULL : m;
		st = region ? POOL_READY : POOL_FAILED;
		atomic_store_explicit(&pool_state, st, memory_order_release);
		return st == POOL_READY;
	}
	return false;
}

static inline struct osh_span *record_at(uint32_t i)
{
	return (struct osh_span *)(void *)(region + (size_t)i * sizeof(struct osh_span));
}

/* The acquire pairs with pool_ready()'s release: @region is read only
 * once it is known to be set. */
static inline bool in_pool(const struct osh_span *span)
{
	const char *p = (const char *)span;

	return atomic_load_explicit(&pool_state, memory_order_acquire) == POOL_READY &&
	       p >= region && p < region + (size_t)POOL_SIZE * sizeof(*span);
}

static inline uint64_t next_top(uint64_t top, uint32_t low)
{
	return (((top >> 32) + 1) << 32) | low;
}

static struct osh_span *stack_pop(void)
{
	uint64_t top = atomic_load_explicit(&free_top, memory_order_acquire);

	for (;;) {
		uint32_t i = (uint32_t)top;

		if (!i)
			return NULL;
		/* Read before the exchange: if another thread took the record
		 * meanwhile, the tag has moved and the exchange fails. */
		uint32_t below = atomic_load_explicit(&free_next[i - 1], memory_order_relaxed);

		if (atomic_compare_exchange_weak_explicit(&free_top, &top, next_top(top, below),
							  memory_order_acquire,
							  memory_order_acquire))
			return record_at(i - 1);
	}
}

/* Push the chain @first .. @last (indexes, linked through free_next). */
static void stack_push_chain(uint32_t first, uint32_t last)
{
	uint64_t top = atomic_load_explicit(&free_top, memory_order_relaxed);

	do
		atomic_store_explicit(&free_next[last], (uint32_t)top, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&free_top, &top, next_top(top, first + 1),
						      memory_order_release, memory_order_relaxed));
}

static inline uint32_t index_of(const struct osh_span *span)
{
	return (uint32_t)(((const char *)span - region) / sizeof(*span));
}

/* Commit the next step: one record for the caller, the rest onto the
 * stack. NULL when the region is full, another thread is committing (the
 * caller then takes malloc this once), or the kernel refuses. */
static struct osh_span *pool_grow(void)
{
	unsigned have, n;
	uintptr_t lo, hi;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

	if (atomic_flag_test_and_set_explicit(&growing, memory_order_acquire))
		return NULL;
	have = atomic_load(&committed);
	n = have ? have : STEP_FIRST;
	if (have + n > POOL_SIZE) {
		atomic_flag_clear_explicit(&growing, memory_order_release);
		return NULL;
	}
	/* Populate the pages under the new records in one call; on a kernel
	 * without MADV_POPULATE_WRITE they fault in as they are touched. */
	lo = (uintptr_t)record_at(have) & ~(page - 1);
	hi = ((uintptr_t)record_at(have + n) + page - 1) & ~(page - 1);
	(void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
	atomic_store(&committed, have + n);
	if (n > 1) {
		for (unsigned i = have + 1; i + 1 < have + n; i++)
			atomic_store_explicit(&free_next[i], i + 2, memory_order_relaxed);
		stack_push_chain(have + 1, have + n - 1);
	}
	atomic_flag_clear_explicit(&growing, memory_order_release);
	return record_at(have);
}

void osh_span_pool_after_fork(void)
{
	/* The stack's top word is consistent at any instant: a push or pop
	 * cut short by the fork either happened or did not, and a record the
	 * vanished thread held stays unused in the child. So the child keeps
	 * the pool; only the growth flag may have been held. A region still
	 * being reserved is reserved afresh. */
	if (atomic_load(&pool_state) == POOL_INIT)
		atomic_store(&pool_state, POOL_NONE);
	atomic_flag_clear(&growing);
}

static uint32_t value_limit;			 /* 0 = arena only */
static uint32_t count_limit = OSH_SPAN_MAX_ATTRS;

void osh_span_set_limits(uint32_t value_length_limit, uint32_t count)
{
	value_limit = value_length_limit;
	count_limit = count < OSH_SPAN_MAX_ATTRS ? count : OSH_SPAN_MAX_ATTRS;
}

struct osh_span *osh_span_create(void)
{
	struct osh_span *s = NULL;

	if (pool_ready()) {
		s = stack_pop();
		if (!s)
			s = pool_grow();
	}
	if (!s)
		s = malloc(sizeof(*s));
	if (s)
		osh_span_init(s);
	return s;
}

/* Every line holding a byte of [p, p + len): records are not aligned to
 * lines, so the 64-byte strides may step over the last line, whose last
 * byte is asked for too. With a constant @len this unrolls into plain
 * prefetches. */
OSH_PREFETCHW_TARGET static inline __attribute__((always_inline)) void
warm(const void *p, size_t len)
{
	for (size_t off = 0; off < len; off += 64)
		__builtin_prefetch((const char *)p + off, 1, 3);
	__builtin_prefetch((const char *)p + len - 1, 1, 3);
}

/* A record's lines in use: its header and first @n_attrs attributes, the
 * arena's first @arena bytes (strings) and its top (a server span's
 * deferred facts). */
OSH_PREFETCHW_TARGET static inline __attribute__((always_inline)) void
warm_record(const struct osh_span *s, size_t n_attrs, size_t arena)
{
	warm(s, offsetof(struct osh_span, attrs) + n_attrs * sizeof(struct osh_attr));
	warm(s->arena, arena);
	warm(s->arena + OSH_SPAN_ARENA - 256, 256);
}

/* An app thread writes the header, the first attributes (the request and
 * response facts) and a client span's first strings or a server span's
 * facts; the rest is written by the exporter thread, if at all. */
OSH_PREFETCHW_TARGET void osh_span_warm_next(void)
{
	const struct osh_span *s;
	uint32_t top;

	if (atomic_load_explicit(&pool_state, memory_order_acquire) != POOL_READY)
		return;
	/* The top may be taken by another thread first: only a hint. */
	top = (uint32_t)atomic_load_explicit(&free_top, memory_order_relaxed);
	if (top) {
		s = record_at(top - 1);
		warm_record(s, 8, 128);
	}
}

/* The exporter thread reads all of that and adds the derived attributes
 * and their strings. */
OSH_PREFETCHW_TARGET void osh_span_warm(const struct osh_span *span)
{
	warm_record(span, 16, 256);
}

void osh_span_destroy(struct osh_span *span)
{
	osh_span_destroy_many(&span, 1);
}

void osh_span_destroy_many(struct osh_span **spans, size_t n)
{
	uint32_t first = 0, last = 0;
	bool any = false;

	/* The pool's records go back as one chain: one exchange on the
	 * stack's top, not one per record. */
	for (size_t k = 0; k < n; k++) {
		struct osh_span *span = spans[k];

		if (!span)
			continue;
		if (!in_pool(span)) {
			free(span);
			continue;
		}
		uint32_t i = index_of(span);

		if (any)
			atomic_store_explicit(&free_next[i], first + 1, memory_order_relaxed);
		else
			last = i;
		first = i;
		any = true;
	}
	if (any)
		stack_push_chain(first, last);
}

void osh_span_init(struct osh_span *span)
{
	/* Only the header: attributes past n_attrs and arena bytes past
	 * arena_used are never read, and not touching them keeps a recycled
	 * record's cold cache lines out of the request path. */
	memset(span, 0, offsetof(struct osh_span, attrs));
}

/* Length of the valid UTF-8 sequence at @s (1-4), or 0 when the byte at @s
 * does not start one (stray continuation, overlong form, surrogate, beyond
 * U+10FFFF, cut short). */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2, cp = c & 0x1F;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3, cp = c & 0x0F;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return n;
}

/* True when no byte of @s has its top bit set. Whole words, the last one
 * overlapping the one before: the values stored here are mostly 3-40
 * bytes, and a byte loop over the tail cost more than the words. */
static inline bool all_ascii(const char *s, size_t len)
{
	const uint64_t high = 0x8080808080808080ull;
	uint64_t acc = 0, w;

	if (len >= 8) {
		size_t i = 0;

		for (; i + 8 < len; i += 8) {
			memcpy(&w, s + i, 8);
			acc |= w;
		}
		memcpy(&w, s + len - 8, 8);
		return !((acc | w) & high);
	}
	if (len >= 4) {
		uint32_t a, b;

		memcpy(&a, s, 4);
		memcpy(&b, s + len - 4, 4);
		return !((a | b) & 0x80808080u);
	}
	for (size_t i = 0; i < len; i++)
		acc |= (unsigned char)s[i];
	return !(acc & 0x80);
}

/* The careful copy: invalid UTF-8 sequences become U+FFFD, and the value
 * is cut at a character boundary to the value length limit (in characters)
 * when @limited and always to the arena's room. */
static struct osh_sref store_slow(struct osh_span *span, const char *s, size_t len, bool limited)
{
	struct osh_sref ref = { span->arena_used, 0 };
	size_t room = (size_t)(OSH_SPAN_ARENA - span->arena_top - span->arena_used);
	char *dst = span->arena + span->arena_used;
	size_t out = 0, chars = 0, max_chars = limited && value_limit ? value_limit : SIZE_MAX;

	if (room > UINT16_MAX)
		room = UINT16_MAX;
	if (all_ascii(s, len)) {
		out = len < room ? len : room;
		if (out > max_chars)
			out = max_chars;
		memcpy(dst, s, out);
	} else {
		for (size_t i = 0; i < len && chars < max_chars;) {
			size_t n = utf8_seq((const unsigned char *)s + i, len - i);
			const char *piece = n ? s + i : "\xEF\xBF\xBD";
			size_t plen = n ? n : 3;

			if (out + plen > room)
				break;
			memcpy(dst + out, piece, plen);
			out += plen;
			chars++;
			i += n ? n : 1;
		}
	}
	span->arena_used = (uint16_t)(span->arena_used + out);
	ref.len = (uint16_t)out;
	return ref;
}

/* Copy @s into the arena. OTLP strings must be valid UTF-8 (a collector may
 * reject a whole batch otherwise), and header and URL bytes are whatever the
 * program sent. The common case (ASCII that fits, under any limit) is one
 * check and one copy. */
static inline struct osh_sref store(struct osh_span *span, const char *s, size_t len, bool limited)
{
	size_t used = span->arena_used;

	if (__builtin_expect(len <= (size_t)(OSH_SPAN_ARENA - span->arena_top) - used &&
				     (!limited || !value_limit || len <= value_limit) &&
				     all_ascii(s, len),
			     1)) {
		memcpy(span->arena + used, s, len);
		span->arena_used = (uint16_t)(used + len);
		return (struct osh_sref){ (uint16_t)used, (uint16_t)len };
	}
	return store_slow(span, s, len, limited);
}

char *osh_span_reserve(struct osh_span *span, size_t len, struct osh_sref *ret)
{
	if (len > (size_t)(OSH_SPAN_ARENA - span->arena_top - span->arena_used))
		return NULL;
	ret->off = span->arena_used;
	ret->len = (uint16_t)len;
	span->arena_used = (uint16_t)(span->arena_used + len);
	return span->arena + ret->off;
}

char *osh_span_reserve_top(struct osh_span *span, size_t len)
{
	size_t free_bytes = (size_t)(OSH_SPAN_ARENA - span->arena_top - span->arena_used);

	if (len > free_bytes)
		return NULL;
	span->arena_top = (uint16_t)(span->arena_top + len);
	return span->arena + OSH_SPAN_ARENA - span->arena_top;
}

void osh_span_release_top(struct osh_span *span)
{
	span->arena_top = 0;
}

void osh_span_set_name(struct osh_span *span, const char *s, size_t len)
{
	span->name = store(span, s, len, false);
}

void osh_span_set_trace_state(struct osh_span *span, const char *s, size_t len)
{
	span->trace_state = store(span, s, len, false);
}

void osh_span_set_status(struct osh_span *span, enum osh_status_code code, const char *msg)
{
	span->status_code = (uint8_t)code;
	if (msg)
		span->status_message = store(span, msg, strlen(msg), true);
}

static inline struct osh_attr *new_attr(struct osh_span *span, const char *key, size_t key_len,
				       uint8_t type)
{
	struct osh_attr *a;

	if (span->n_attrs >= count_limit) {
		span->dropped_attrs++;
		return NULL;
	}
	a = &span->attrs[span->n_attrs++];
	a->key = key;
	a->key_len = (uint16_t)(key_len < UINT16_MAX ? key_len : UINT16_MAX);
	a->type = type;
	return a;
}

void osh_span_add_str(struct osh_span *span, const char *key, size_t key_len, const char *s,
		      size_t len)
{
	struct osh_attr *a = new_attr(span, key, key_len, OSH_ATTR_STRING);

	if (a)
		a->v.s = store(span, s, len, true);
}

void osh_span_add_sref(struct osh_span *span, const char *key, size_t key_len,
		       struct osh_sref ref)
{
	struct osh_attr *a = new_attr(span, key, key_len, OSH_ATTR_STRING);

	if (a)
		a->v.s = ref;
}

void osh_span_add_strs(struct osh_span *span, const char *key, size_t key_len,
		       const char *const *v, const size_t *lens, size_t n)
{
	struct osh_attr *a = new_attr(span, key, key_len, OSH_ATTR_STRING_ARRAY);
	uint16_t start = span->arena_used;

	if (!a)
		return;
	for (size_t i = 0; i < n; i++) {
		struct osh_sref hdr, ref;
		char *h = osh_span_reserve(span, 2, &hdr);

		if (!h)
			break;
		ref = store(span, v[i], lens[i], true);
		h[0] = (char)(ref.len & 0xff);
		h[1] = (char)(ref.len >> 8);
	}
	a->v.s = (struct osh_sref){ start, (uint16_t)(span->arena_used - start) };
}

struct osh_event *osh_span_add_event(struct osh_span *span, const char *name, size_t name_len,
				     uint64_t time_ns)
{
	struct osh_event *ev;

	if (span->n_events >= OSH_SPAN_MAX_EVENTS) {
		if (span->dropped_events < UINT16_MAX)
			span->dropped_events++;
		return NULL;
	}
	ev = &span->events[span->n_events++];
	ev->time_ns = time_ns;
	ev->name = store(span, name, name_len, false);
	ev->n_attrs = 0;
	return ev;
}

void osh_event_add_str(struct osh_span *span, struct osh_event *ev, const char *key,
		       size_t key_len, const char *s, size_t len)
{
	struct osh_attr *a;

	if (!ev || ev->n_attrs >= OSH_EVENT_MAX_ATTRS)
		return;
	a = &ev->attrs[ev->n_attrs++];
	a->key = key;
	a->key_len = (uint16_t)(key_len < UINT16_MAX ? key_len : UINT16_MAX);
	a->type = OSH_ATTR_STRING;
	a->v.s = store(span, s, len, true);
}

void osh_span_add_int(struct osh_span *span, const char *key, size_t key_len, int64_t v)
{
	struct osh_attr *a = new_attr(span, key, key_len, OSH_ATTR_INT);

	if (a)
		a->v.i = v;
}

void osh_span_add_double(struct osh_span *span, const char *key, size_t key_len, double v)
{
	struct osh_attr *a = new_attr(span, key, key_len, OSH_ATTR_DOUBLE);

	if (a)
		a->v.d = v;
}

void osh_span_add_bool(struct osh_span *span, const char *key, size_t key_len, bool v)
{
	struct osh_attr *a = new_attr(span, key, key_len, OSH_ATTR_BOOL);

	if (a)
		a->v.b = v;
}

const struct osh_attr *osh_span_find(const struct osh_span *span, const char *key)
{
	for (unsigned i = 0; i < span->n_attrs; i++)
		if (strcmp(span->attrs[i].key, key) == 0)
			return &span->attrs[i];
	return NULL;
}
