/* Redaction of free text the shim may record: prompts and completions
 * (OTELSHIM_CAPTURE_CONTENT). Secrets and personal data are replaced by
 * "[REDACTED:<kind>]":
 *
 *   api_key      sk-..., sk-proj-..., sk-ant-... (20+ key characters)
 *   aws_key      AKIA / ASIA followed by 16 upper-case letters or digits
 *   jwt          three base64url segments, the first starting "eyJ"
 *   bearer       the token after "Bearer " (kept: the word itself; not
 *                after a dash, "standard-bearer"); the token
 *                must look like one (8+ characters, at least one digit or
 *                one of ._~+/=-), so "bearer arrangements" stays prose
 *   email        local@domain.tld
 *   credit_card  13 to 19 digits, single spaces or dashes allowed between
 *                them, passing the Luhn check
 *
 * Every match must start and end at a word boundary: "task-list" holds no
 * key, a 20-digit order number no card. Pure functions: no allocation, any
 * thread, async-signal-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Copy @in (@len bytes) to @out with every match replaced. At most
 * @outsz - 1 bytes are written, always NUL-terminated when @outsz > 0; a
 * replacement that does not fit is cut, never the secret left in its place
 * (the output then ends early). Returns the bytes written. */
size_t osh_content_redact(const char *in, size_t len, char *out, size_t outsz);

/* The Luhn check over the digits of @s (@len bytes; other bytes skipped).
 * False for fewer than two digits. */
bool osh_luhn_valid(const char *s, size_t len);
