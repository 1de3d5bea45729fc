/* A finished-or-in-progress span as one fixed-size record.
 *
 * Everything a span carries lives inside the record: ids, times, up to
 * OSH_SPAN_MAX_ATTRS attributes and an arena holding every string (name,
 * tracestate, string attribute values). Attribute keys are static strings
 * (string literals in the shim), never copied. A record is created on an app
 * thread when a sampled exchange starts, filled as the exchange progresses,
 * pushed onto the queue when it ends, and freed by the exporter thread.
 *
 * Setters never fail: a value that does not fit is truncated (at a UTF-8
 * character boundary) and an attribute beyond the count limit is dropped and
 * counted in dropped_attrs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OSH_SPAN_MAX_ATTRS 48
#define OSH_SPAN_ARENA 1600
/* Span events (an LLM response's tool calls): few per span, each with a
 * couple of string attributes. */
#define OSH_SPAN_MAX_EVENTS 8
#define OSH_EVENT_MAX_ATTRS 2

enum osh_span_kind {
	OSH_SPAN_INTERNAL = 1,
	OSH_SPAN_SERVER = 2,
	OSH_SPAN_CLIENT = 3,
};

enum osh_status_code {
	OSH_STATUS_UNSET = 0,
	OSH_STATUS_OK = 1,
	OSH_STATUS_ERROR = 2,
};

enum osh_attr_type {
	OSH_ATTR_STRING = 1,
	OSH_ATTR_INT,
	OSH_ATTR_DOUBLE,
	OSH_ATTR_BOOL,
	OSH_ATTR_STRING_ARRAY,	/* v.s: elements, each a 2-byte length (LE) then its bytes */
};

/* A string inside the span's arena. */
struct osh_sref {
	uint16_t off;
	uint16_t len;
};

struct osh_attr {
	const char *key; /* static storage */
	uint8_t type;	 /* enum osh_attr_type */
	uint16_t key_len; /* strlen(key), capped at 65535 */
	union {
		struct osh_sref s;
		int64_t i;
		double d;
		bool b;
	} v;
};

struct osh_event {
	uint64_t time_ns;	/* CLOCK_REALTIME, ns since the epoch */
	struct osh_sref name;
	uint8_t n_attrs;
	struct osh_attr attrs[OSH_EVENT_MAX_ATTRS];
};

struct osh_span {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8];
	uint8_t trace_flags;   /* W3C flags as propagated (bit 0 sampled) */
	bool has_parent;
	bool parent_remote;    /* parent came from a carrier (header or env) */
	uint8_t kind;	       /* enum osh_span_kind */
	uint8_t status_code;   /* enum osh_status_code */
	uint8_t n_attrs;
	uint16_t arena_used;
	uint32_t dropped_attrs;
	uint8_t n_events;      /* in the header (zeroed with it); the events */
	uint16_t dropped_events; /* themselves sit after the arena, untouched */
	uint16_t arena_top;    /* bytes held at the arena's end for `deferred` */
	/* Work left for the exporter thread (osh_span_complete): attributes
	 * derived from facts the request path kept at the arena's top. */
	void (*deferred)(struct osh_span *span);
	uint64_t start_ns;     /* CLOCK_REALTIME, ns since the epoch */
	uint64_t end_ns;
	struct osh_sref name;
	struct osh_sref trace_state;
	struct osh_sref status_message;
	struct osh_attr attrs[OSH_SPAN_MAX_ATTRS];
	char arena[OSH_SPAN_ARENA];
	struct osh_event events[OSH_SPAN_MAX_EVENTS];	/* n_events used */
};

/* Limits applied by the setters, from OTEL_(SPAN_)ATTRIBUTE_* (0 = no length
 * limit beyond the arena). Set once at init. */
void osh_span_set_limits(uint32_t value_length_limit, uint32_t count_limit);

/* A record, header zeroed: from the pool of recycled records, else the
 * heap. NULL when memory is short. Any thread. */
struct osh_span *osh_span_create(void);
void osh_span_destroy(struct osh_span *span); /* accepts NULL */
/* osh_span_destroy() on each of @spans (NULLs skipped), the pool's records
 * given back in one step. */
void osh_span_destroy_many(struct osh_span **spans, size_t n);

/* Start moving into this core's cache, for writing, the record the next
 * osh_span_create() will likely take. Records come back from the exporter
 * thread, which read them last on another core: without this, the request
 * path waits for those lines one store at a time. A hint, called when a
 * span was just handed over, so the lines travel while the program waits
 * in its next system calls. */
void osh_span_warm_next(void);
/* Start moving @span's lines in use into this core's cache, for writing:
 * the exporter thread asks for a few records ahead of the one it works on
 * (they were written last on the threads that made them). A hint. */
void osh_span_warm(const struct osh_span *span);

/* Fork child: make the record pool usable again (async-signal-safe). */
void osh_span_pool_after_fork(void);

/* A new event named @name at @time_ns, its strings in the span's arena;
 * NULL (counted in dropped_events) when the span has OSH_SPAN_MAX_EVENTS. */
struct osh_event *osh_span_add_event(struct osh_span *span, const char *name, size_t name_len,
				     uint64_t time_ns);
/* A string attribute on @ev (@key: static storage); dropped silently past
 * OSH_EVENT_MAX_ATTRS. */
void osh_event_add_str(struct osh_span *span, struct osh_event *ev, const char *key,
		       size_t key_len, const char *s, size_t len);

/* Deferred attributes. A request path that wants a record's derived
 * attributes (redacted URL, route, name, ...) computed off its thread keeps
 * the raw facts in @len bytes at the arena's end (NULL when they do not fit:
 * then it derives them itself) and names the function that derives them;
 * the exporter thread runs it once, before the record is encoded or shown,
 * through osh_span_complete(). The function copies its facts out and calls
 * osh_span_release_top() before adding anything. */
char *osh_span_reserve_top(struct osh_span *span, size_t len);
void osh_span_release_top(struct osh_span *span);
static inline void osh_span_defer(struct osh_span *span, void (*fn)(struct osh_span *span))
{
	span->deferred = fn;
}
static inline void osh_span_complete(struct osh_span *span)
{
	void (*fn)(struct osh_span *) = span->deferred;

	if (fn) {
		span->deferred = NULL;
		fn(span);
	}
}

/* Reset @span to an empty record (ids, attributes, arena). */
void osh_span_init(struct osh_span *span);

void osh_span_set_name(struct osh_span *span, const char *s, size_t len);
void osh_span_set_trace_state(struct osh_span *span, const char *s, size_t len);
void osh_span_set_status(struct osh_span *span, enum osh_status_code code, const char *msg);

/* The setters below take the key's length from __builtin_strlen(), which
 * the compiler folds for the string literals every caller passes: neither
 * the setter nor the encoder has to measure keys at run time. */
void osh_span_add_str(struct osh_span *span, const char *key, size_t key_len, const char *s,
		      size_t len);
void osh_span_add_sref(struct osh_span *span, const char *key, size_t key_len,
		       struct osh_sref ref);
void osh_span_add_int(struct osh_span *span, const char *key, size_t key_len, int64_t v);
void osh_span_add_double(struct osh_span *span, const char *key, size_t key_len, double v);
void osh_span_add_bool(struct osh_span *span, const char *key, size_t key_len, bool v);
/* A string[] attribute (gen_ai.response.finish_reasons): @n elements @v
 * with lengths @lens, each stored like a string value; those that no longer
 * fit the arena are left out. */
void osh_span_add_strs(struct osh_span *span, const char *key, size_t key_len,
		       const char *const *v, const size_t *lens, size_t n);

/* @key must have static storage duration. */
static inline void osh_span_set_str(struct osh_span *span, const char *key, const char *s,
				    size_t len)
{
	osh_span_add_str(span, key, __builtin_strlen(key), s, len);
}

static inline void osh_span_set_cstr(struct osh_span *span, const char *key, const char *s)
{
	osh_span_add_str(span, key, __builtin_strlen(key), s, __builtin_strlen(s));
}

static inline void osh_span_set_int(struct osh_span *span, const char *key, int64_t v)
{
	osh_span_add_int(span, key, __builtin_strlen(key), v);
}

static inline void osh_span_set_double(struct osh_span *span, const char *key, double v)
{
	osh_span_add_double(span, key, __builtin_strlen(key), v);
}

static inline void osh_span_set_bool(struct osh_span *span, const char *key, bool v)
{
	osh_span_add_bool(span, key, __builtin_strlen(key), v);
}

static inline void osh_span_set_strs(struct osh_span *span, const char *key,
				     const char *const *v, const size_t *lens, size_t n)
{
	osh_span_add_strs(span, key, __builtin_strlen(key), v, lens, n);
}

/* Walk a string[] value: *@at (start at 0) moves past the element returned
 * in *ret_p / *ret_len; false after the last one. */
static inline bool osh_span_strs_next(const char *region, size_t region_len, size_t *at,
				      const char **ret_p, size_t *ret_len)
{
	size_t n;

	if (*at + 2 > region_len)
		return false;
	n = (size_t)(unsigned char)region[*at] | (size_t)(unsigned char)region[*at + 1] << 8;
	if (*at + 2 + n > region_len)
		return false;
	*ret_p = region + *at + 2;
	*ret_len = n;
	*at += 2 + n;
	return true;
}

/* Arena string access: pointer to @ref.len bytes (not NUL-terminated). */
static inline const char *osh_span_str(const struct osh_span *span, struct osh_sref ref)
{
	return span->arena + ref.off;
}

/* A string attribute whose value is bytes already in the arena (a part of
 * another value: url.path inside url.full). */
static inline void osh_span_set_sref(struct osh_span *span, const char *key, struct osh_sref ref)
{
	osh_span_add_sref(span, key, __builtin_strlen(key), ref);
}

/* Find an attribute by key (tests, console); NULL if absent. */
const struct osh_attr *osh_span_find(const struct osh_span *span, const char *key);

/* Reserve @len bytes of arena for a string the caller writes in place
 * (url building). Returns NULL when the arena is full; *ret gets the ref. */
char *osh_span_reserve(struct osh_span *span, size_t len, struct osh_sref *ret);
