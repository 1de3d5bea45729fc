/* Span records (see span.h). */
#include "buildconf.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "prefetch.h"
#include "queue.h"
#include "span.h"

/* Records are recycled through a lock-free pool instead of malloc/free: a
 * record is taken on an app thread and given back on the exporter thread,
 * the pattern general-purpose allocators handle worst.
 *
 * The pool's records live in slabs: anonymous mappings the kernel populates
 * in one call. On the VMs this runs on, a page touched for the first time
 * costs ~9 µs of fault handling one by one and ~0.4 µs populated with its
 * mapping (docs/BENCHMARKS.md); a busy process keeps a few hundred records
 * in flight, so that is milliseconds at start. Slabs double (8, 8, 16, ...
 * 512 records: POOL_SIZE in all, so a slab record always finds room in the
 * pool): a process that records one span maps 8 records, one that records
 * thousands ~2.4 MiB once. Past that, or when mmap fails, records come from
 * malloc and go back to free(). */
#define POOL_SIZE 1024
#define SLAB_FIRST 8
/* Slab mappings remembered (their ranges tell slab records from malloc'd
 * ones): one doubling series, and another after a fork. */
#define SLAB_RANGES 24
enum { POOL_NONE = 0, POOL_INIT, POOL_READY, POOL_FAILED };
static struct osh_queue pool;
static _Atomic int pool_state;

static struct {
	_Atomic(char *) start;
	_Atomic size_t len;
} slab[SLAB_RANGES];
static _Atomic unsigned slab_count;	/* ranges in use */
static _Atomic unsigned slab_records;	/* records mapped in this series */
static atomic_flag slab_busy = ATOMIC_FLAG_INIT;

static bool pool_ready(void)
{
	int st = atomic_load_explicit(&pool_state, memory_order_acquire);
	int expected = POOL_NONE;

	if (__builtin_expect(st == POOL_READY, 1))
		return true;
	if (st == POOL_NONE && atomic_compare_exchange_strong(&pool_state, &expected, POOL_INIT)) {
		st = osh_queue_init(&pool, POOL_SIZE) == 0 ? POOL_READY : POOL_FAILED;
		atomic_store_explicit(&pool_state, st, memory_order_release);
		return st == POOL_READY;
	}
	return false;
}

static bool in_slab(const struct osh_span *span)
{
	unsigned n = atomic_load_explicit(&slab_count, memory_order_acquire);

	for (unsigned i = 0; i < n; i++) {
		const char *b = atomic_load_explicit(&slab[i].start, memory_order_relaxed);
		size_t len = atomic_load_explicit(&slab[i].len, memory_order_relaxed);

		if ((const char *)span >= b && (const char *)span < b + len)
			return true;
	}
	return false;
}

/* Map the next slab: one record for the caller, the rest into the pool.
 * NULL when the series is complete, another thread is mapping one (the
 * caller then takes malloc this once), or mmap fails. */
static struct osh_span *slab_grow(void)
{
	unsigned have, n, idx;
	size_t len;
	char *m;

	if (atomic_flag_test_and_set_explicit(&slab_busy, memory_order_acquire))
		return NULL;
	have = atomic_load(&slab_records);
	n = have ? have : SLAB_FIRST;
	idx = atomic_load(&slab_count);
	if (have + n > POOL_SIZE || idx >= SLAB_RANGES) {
		atomic_flag_clear_explicit(&slab_busy, memory_order_release);
		return NULL;
	}
	len = (size_t)n * sizeof(struct osh_span);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		 -1, 0);
	if (m == MAP_FAILED) {
		atomic_flag_clear_explicit(&slab_busy, memory_order_release);
		return NULL;
	}
	atomic_store_explicit(&slab[idx].start, m, memory_order_relaxed);
	atomic_store_explicit(&slab[idx].len, len, memory_order_relaxed);
	atomic_store_explicit(&slab_count, idx + 1, memory_order_release);
	atomic_store(&slab_records, have + n);
	for (unsigned i = 1; i < n; i++)
		(void)osh_queue_push(&pool, (struct osh_span *)m + i);
	atomic_flag_clear_explicit(&slab_busy, memory_order_release);
	return (struct osh_span *)m;
}

void osh_span_pool_after_fork(void)
{
	/* Another thread may have been inside a push or pop: start afresh
	 * (the records it held stay in the child's copy of the heap). The
	 * child maps a new series of slabs; the old ranges stay known, so
	 * inherited records that come back are still told from malloc'd
	 * ones. */
	if (atomic_load(&pool_state) == POOL_READY)
		osh_queue_reset(&pool);
	else if (atomic_load(&pool_state) == POOL_INIT)
		atomic_store(&pool_state, POOL_NONE);
	atomic_store(&slab_records, 0);
	atomic_flag_clear(&slab_busy);
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
		s = osh_queue_pop(&pool);
		if (!s)
			s = slab_grow();
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

	if (atomic_load_explicit(&pool_state, memory_order_relaxed) != POOL_READY)
		return;
	/* The peek reads a cell the exporter thread wrote; the cells after
	 * it, for the spans after this one, are asked for now. */
	osh_queue_warm_head(&pool);
	s = osh_queue_peek(&pool);
	if (s)
		warm_record(s, 8, 128);
}

/* The exporter thread reads all of that and adds the derived attributes
 * and their strings. */
OSH_PREFETCHW_TARGET void osh_span_warm(const struct osh_span *span)
{
	warm_record(span, 16, 256);
}

void osh_span_destroy(struct osh_span *span)
{
	if (!span)
		return;
	if (in_slab(span)) {
		/* Room is certain within one series; after a fork the child's
		 * new series and inherited records could overflow it, and the
		 * few records that do are left unused. */
		(void)osh_queue_push(&pool, span);
		return;
	}
	free(span);
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
