/* The request and response handling that the TLS test clients share
 * (tls_client.c with OpenSSL, gnutls_client.c with GnuTLS): the same
 * request bytes for the same arguments, and the same output, whichever
 * library carries them. Header-only; include after _GNU_SOURCE (memmem).
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The request for PATH on HOST:PORT: a GET when @body is 0, else a POST
 * with @body bytes of a fixed pattern; "User-Agent: @agent" and
 * "Connection: close". Written to @sent_file when not NULL (what the
 * server must receive). NULL when the file cannot be written. */
static inline char *build_request(const char *agent, const char *host, const char *port,
				  const char *path, size_t body, const char *sent_file,
				  size_t *ret_len)
{
	char head[512], *req;
	size_t len;
	int h;

	h = snprintf(head, sizeof(head),
		     "%s %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: %s\r\n"
		     "Connection: close\r\n",
		     body ? "POST" : "GET", path, host, port, agent);
	if (body)
		h += snprintf(head + h, sizeof(head) - (size_t)h,
			      "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n",
			      body);
	h += snprintf(head + h, sizeof(head) - (size_t)h, "\r\n");
	len = (size_t)h + body;
	req = malloc(len);
	memcpy(req, head, (size_t)h);
	for (size_t i = 0; i < body; i++)
		req[(size_t)h + i] = (char)((i * 31) % 251);
	if (sent_file) {
		FILE *f = fopen(sent_file, "wb");

		if (!f || fwrite(req, 1, len, f) != len || fclose(f) != 0) {
			free(req);
			return NULL;
		}
	}
	*ret_len = len;
	return req;
}

/* "status <code>" and the response's body on stdout. False when @resp is
 * not an HTTP/1.x response. */
static inline bool print_response(const char *resp, size_t rlen)
{
	const char *p;

	if (rlen < 12 || memcmp(resp, "HTTP/1.", 7) != 0)
		return false;
	printf("status %.3s\n", resp + 9);
	p = memmem(resp, rlen, "\r\n\r\n", 4);
	if (p)
		fwrite(p + 4, 1, rlen - (size_t)(p + 4 - resp), stdout);
	return true;
}
