/* The shim's diagnostics: one door to stderr (see diag.h). */
#include "buildconf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "diag.h"
#include "real.h"

static enum osh_log_level diag_level = OSH_LOG_NONE;
static bool diag_json;
static _Atomic uint32_t once_bits;

void osh_diag_set(enum osh_log_level level, bool json)
{
	diag_level = level;
	diag_json = json;
}

bool osh_diag_enabled(enum osh_log_level level)
{
	return level != OSH_LOG_NONE && level <= diag_level;
}

static const char *level_name(enum osh_log_level level)
{
	switch (level) {
	case OSH_LOG_ERROR:
		return "error";
	case OSH_LOG_WARN:
		return "warn";
	case OSH_LOG_INFO:
		return "info";
	case OSH_LOG_DEBUG:
		return "debug";
	default:
		return "none";
	}
}

/* JSON-escape @s into @out (bounded); returns bytes written. */
static size_t json_escape(char *out, size_t outsz, const char *s)
{
	size_t o = 0;

	for (; *s && o + 7 < outsz; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, outsz - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	return o;
}

static void emit(enum osh_log_level level, const char *fmt, va_list ap)
{
	char msg[1024];
	char line[2300];
	int saved = errno;
	size_t n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (diag_json) {
		char esc[2200];
		size_t e = json_escape(esc, sizeof(esc), msg);
		esc[e] = '\0';
		n = (size_t)snprintf(line, sizeof(line),
				     "{\"logger\":\"otelshim\",\"level\":\"%s\",\"pid\":%d,\"msg\":\"%s\"}\n",
				     level_name(level), (int)getpid(), esc);
	} else {
		n = (size_t)snprintf(line, sizeof(line), "otelshim: %s: %s\n", level_name(level), msg);
	}
	if (n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* One write, through the real symbol; a short or failed write to
	 * stderr is not worth retrying. */
	(void)!osh_real_get()->write(2, line, n);
	errno = saved;
}

void osh_diag(enum osh_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!osh_diag_enabled(level))
		return;
	va_start(ap, fmt);
	emit(level, fmt, ap);
	va_end(ap);
}

void osh_diag_once(enum osh_diag_once what, enum osh_log_level level, const char *fmt, ...)
{
	va_list ap;
	uint32_t bit = 1u << what;

	if (!osh_diag_enabled(level))
		return;
	if (atomic_fetch_or(&once_bits, bit) & bit)
		return;
	va_start(ap, fmt);
	emit(level, fmt, ap);
	va_end(ap);
}
