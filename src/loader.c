/* Lazy loading of the OTLP module (see loader.h). */
#include "buildconf.h"

#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "diag.h"
#include "export/module.h"
#include "loader.h"
#include "span.h"

static const struct osh_otlp_module *try_load(const char *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	const struct osh_otlp_module *m;

	if (!h) {
		osh_diag(OSH_LOG_DEBUG, "cannot load %s: %s", path, dlerror());
		return NULL;
	}
	m = dlsym(h, "osh_otlp_module_v1");
	if (!m || m->abi != OSH_OTLP_ABI || m->span_size != sizeof(struct osh_span)) {
		osh_diag(OSH_LOG_WARN, "%s is not the OTLP module of this otelshim build", path);
		dlclose(h);
		return NULL;
	}
	return m;
}

const struct osh_otlp_module *osh_loader_otlp(void)
{
	const char *env = osh_cfg.otlp_module; /* never empty: unset */
	const struct osh_otlp_module *m = NULL;
	char path[PATH_MAX];
	Dl_info info;

	if (env && (m = try_load(env)))
		return m;
	/* Next to ourselves: the build tree and the install both keep the
	 * two objects in one directory. */
	if (dladdr((void *)osh_loader_otlp, &info) && info.dli_fname) {
		const char *slash = strrchr(info.dli_fname, '/');
		if (slash) {
			int n = snprintf(path, sizeof(path), "%.*s/%s",
					 (int)(slash - info.dli_fname), info.dli_fname,
					 OSH_OTLP_MODULE);
			if (n > 0 && (size_t)n < sizeof(path) && (m = try_load(path)))
				return m;
		}
	}
	snprintf(path, sizeof(path), "%s/%s", OSH_INSTALL_LIBDIR, OSH_OTLP_MODULE);
	if ((m = try_load(path)))
		return m;
	osh_diag_once(OSH_ONCE_MODULE_MISSING, OSH_LOG_ERROR,
		      "cannot find %s next to libotelshim.so; spans are dropped "
		      "(set OTELSHIM_OTLP_MODULE, or OTEL_TRACES_EXPORTER=console)",
		      OSH_OTLP_MODULE);
	return NULL;
}
