/* Finding and loading the OTLP module (libotelshim-otlp.so) on first use.
 * Exporter thread only. */
#pragma once

struct osh_otlp_module;

/* The module's function table, or NULL (reported once) when it cannot be
 * found or does not match this shim. Looked for, in order: the file named
 * by OTELSHIM_OTLP_MODULE, the directory holding libotelshim.so (dladdr),
 * and the install directory. */
const struct osh_otlp_module *osh_loader_otlp(void);
