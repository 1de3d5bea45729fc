/* Redaction of secrets before anything leaves the process.
 *
 * URLs: userinfo becomes REDACTED:REDACTED; values of sensitive query
 * parameters become REDACTED (the semconv list, case-sensitive, plus common
 * credential names such as api_key, key, token, access_token, password,
 * secret, client_secret, case-insensitive); any query value or path segment
 * that looks like a secret (see osh_redact_is_secret) becomes REDACTED too.
 * Pure functions, any thread, no allocation.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* True when @s looks like a credential: OpenAI keys (sk-..., sk-proj-...),
 * Anthropic keys (sk-ant-...), AWS access key ids (AKIA/ASIA + 16 upper/digits),
 * JWTs (three base64url parts, first starting "eyJ"), Google API keys
 * (AIza + 35 chars), GitHub tokens (ghp_/gho_/ghu_/ghs_/ghr_/github_pat_), Slack
 * tokens (xox[abprs]-), "Bearer <token of 8+ chars>". The value must start
 * with the credential (no search inside it); raw bytes, no percent-decoding.
 * Runs in well under 500 ns for ordinary values. */
bool osh_redact_is_secret(const char *s, size_t len);

/* Copy @url (absolute or origin-form) into @out with secrets redacted. The
 * fragment gets the query's treatment (OAuth "#access_token=..."); anything
 * else is copied byte for byte. Returns the length written (truncated to
 * @outsz - 1, NUL-terminated when @outsz > 0). */
size_t osh_redact_url(const char *url, size_t len, char *out, size_t outsz);

/* Same for a query string alone (without '?'), for url.query. */
size_t osh_redact_query(const char *query, size_t len, char *out, size_t outsz);

/* Length of the path at the start of @s: up to its first '?' or '#'. */
size_t osh_url_path_len(const char *s, size_t len);
