/* Span records (see span.h). */
#include "buildconf.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"
#include "span.h"

/* Records are recycled through a lock-free pool instead of malloc/free: a
 * record is taken on an app thread and given back on the exporter thread,
 * the pattern general-purpose allocators handle worst. */
#define POOL_SIZE 1024
enum { POOL_NONE = 0, POOL_INIT, POOL_READY, POOL_FAILED };
static struct osh_queue pool;
static _Atomic int pool_state;

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

void osh_span_pool_after_fork(void)
{
	/* Another thread may have been inside a push or pop: start afresh
	 * (the records it held stay in the child's copy of the heap). */
	if (atomic_load(&pool_state) == POOL_READY)
		osh_queue_reset(&pool);
	else if (atomic_load(&pool_state) == POOL_INIT)
		atomic_store(&pool_state, POOL_NONE);
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
	struct osh_span *s = pool_ready() ? osh_queue_pop(&pool) : NULL;

	if (!s)
		s = malloc(sizeof(*s));

	if (s)
		osh_span_init(s);
	return s;
}

void osh_span_destroy(struct osh_span *span)
{
	if (span && (!pool_ready() || !osh_queue_push(&pool, span)))
		free(span);
}

void osh_span_init(struct osh_span *span)
{
	/* The arena is left as is: only arena_used bytes are ever read. */
	memset(span, 0, offsetof(struct osh_span, arena));
}

/* Largest prefix of @s no longer than @max bytes that does not cut a UTF-8
 * sequence in two. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	return max;
}

/* Number of bytes holding the first @chars characters of @s. */
static size_t utf8_prefix_chars(const char *s, size_t len, size_t chars)
{
	size_t i = 0;

	while (i < len && chars > 0) {
		i++;
		while (i < len && ((unsigned char)s[i] & 0xC0) == 0x80)
			i++;
		chars--;
	}
	return i;
}

static struct osh_sref store(struct osh_span *span, const char *s, size_t len, bool limited)
{
	struct osh_sref ref = { span->arena_used, 0 };
	size_t room = (size_t)(OSH_SPAN_ARENA - span->arena_used);

	if (limited && value_limit)
		len = utf8_prefix_chars(s, len, value_limit);
	len = utf8_cut(s, len, room);
	if (len > (size_t)UINT16_MAX)
		len = utf8_cut(s, len, UINT16_MAX);
	memcpy(span->arena + span->arena_used, s, len);
	span->arena_used = (uint16_t)(span->arena_used + len);
	ref.len = (uint16_t)len;
	return ref;
}

char *osh_span_reserve(struct osh_span *span, size_t len, struct osh_sref *ret)
{
	if (len > (size_t)(OSH_SPAN_ARENA - span->arena_used))
		return NULL;
	ret->off = span->arena_used;
	ret->len = (uint16_t)len;
	span->arena_used = (uint16_t)(span->arena_used + len);
	return span->arena + ret->off;
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

static struct osh_attr *new_attr(struct osh_span *span, const char *key, uint8_t type)
{
	struct osh_attr *a;

	if (span->n_attrs >= count_limit) {
		span->dropped_attrs++;
		return NULL;
	}
	a = &span->attrs[span->n_attrs++];
	a->key = key;
	a->type = type;
	return a;
}

void osh_span_set_str(struct osh_span *span, const char *key, const char *s, size_t len)
{
	struct osh_attr *a = new_attr(span, key, OSH_ATTR_STRING);

	if (a)
		a->v.s = store(span, s, len, true);
}

void osh_span_set_sref(struct osh_span *span, const char *key, struct osh_sref ref)
{
	struct osh_attr *a = new_attr(span, key, OSH_ATTR_STRING);

	if (a)
		a->v.s = ref;
}

void osh_span_set_cstr(struct osh_span *span, const char *key, const char *s)
{
	osh_span_set_str(span, key, s, strlen(s));
}

void osh_span_set_int(struct osh_span *span, const char *key, int64_t v)
{
	struct osh_attr *a = new_attr(span, key, OSH_ATTR_INT);

	if (a)
		a->v.i = v;
}

void osh_span_set_double(struct osh_span *span, const char *key, double v)
{
	struct osh_attr *a = new_attr(span, key, OSH_ATTR_DOUBLE);

	if (a)
		a->v.d = v;
}

void osh_span_set_bool(struct osh_span *span, const char *key, bool v)
{
	struct osh_attr *a = new_attr(span, key, OSH_ATTR_BOOL);

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
