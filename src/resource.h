/* The resource every export carries (LLM DevOps standard §1-§2).
 *
 * Built once per exporter start (so a fork child gets its own process.pid and
 * service.instance.id) on the exporter thread: reads /proc/self, the host
 * name and /etc/machine-id, so it stays out of the constructor.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct osh_resource_attr {
	char *key;
	bool is_int;
	char *str;   /* when !is_int */
	int64_t i;   /* when is_int */
};

struct osh_resource {
	struct osh_resource_attr *attrs; /* unique keys, in a stable order */
	size_t n;
};

/* Process facts the resource needs; osh_resource_probe() fills them from the
 * running process, tests fill them by hand. */
struct osh_process_info {
	int64_t pid;
	char exe_path[4096];	/* /proc/self/exe target, "" if unknown */
	char exe_name[256];	/* basename of exe_path, else of argv[0] */
	char command[4096];	/* argv[0] (/proc/self/cmdline), never the arguments */
	char host_name[256];	/* gethostname() */
	char host_id[64];	/* /etc/machine-id, "" if unreadable */
};

void osh_resource_probe(struct osh_process_info *ret);

/* Build the resource from @cfg and @proc. Precedence: explicit variables
 * (OTEL_SERVICE_NAME, SERVICE_VERSION, ENVIRONMENT, ...) win over
 * OTEL_RESOURCE_ATTRIBUTES, which wins over derived defaults. 0 or -ENOMEM. */
int osh_resource_build(struct osh_resource *ret, const struct osh_config *cfg,
		       const struct osh_process_info *proc);
void osh_resource_finish(struct osh_resource *res);

/* NULL when absent. */
const struct osh_resource_attr *osh_resource_get(const struct osh_resource *res,
						 const char *key);

/* Derive a service name from an executable's file name: lowercase, strip a
 * leading "llm-" or "llm_" (or "llm."), '_' -> '-', prefix "llm."
 * ("llm-edge-agent" -> "llm.edge-agent", "python3" -> "llm.python3"). An
 * unknown (NULL or empty) name gives "llm.unknown-service". Writes a
 * NUL-terminated string, truncated to @outsz - 1; nothing when @outsz is 0. */
void osh_resource_derive_service_name(const char *exe_name, char *out, size_t outsz);

/* True when @name follows llm.{component}[.{sub}]: "llm." then one or two
 * dot-separated levels of [a-z0-9-] (no leading, trailing or doubled '-').
 * A component that is a known LLM DevOps component followed by '-'
 * ("llm.edge-agent-proxy", "llm.shield-scanner") is a subcomponent glued on
 * with a hyphen and does not conform (seed 002's anti-patterns). */
bool osh_resource_service_name_conforms(const char *name);
