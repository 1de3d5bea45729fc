/* A libcurl easy-API client for tests/integration/test_libcurl.py.
 *
 * usage: curl_easy BASE_URL SCENARIO [ARG]
 *   basic    one handle, the program's own header list and user agent:
 *            GET BASE/items/1, POST BASE/submit, GET BASE/items/2 (one
 *            connection, reused), then the list removed: GET BASE/plain
 *   own-tp   the list carries "traceparent: ARG": GET BASE/own
 *   dup      curl_easy_duphandle() of a handle with a list, both used;
 *            then curl_easy_reset() and a transfer without options
 *   file     a file:// transfer (ARG: a path) with a header list
 *   refused  GET ARG (a URL nobody listens on)
 *
 * Prints one line per transfer ("GET /items/1 -> 200, 12 bytes") and "ok"
 * at the end. Exits 3 when the program's header list was changed by
 * anyone (its nodes, their strings, their order), which a shim must
 * never do.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define MAX_LINES 8

struct list_copy {
	int n;
	const struct curl_slist *node[MAX_LINES];
	const char *data[MAX_LINES];
	char text[MAX_LINES][256];
};

static void remember(const struct curl_slist *l, struct list_copy *c)
{
	memset(c, 0, sizeof(*c));
	for (; l && c->n < MAX_LINES; l = l->next, c->n++) {
		c->node[c->n] = l;
		c->data[c->n] = l->data;
		snprintf(c->text[c->n], sizeof(c->text[0]), "%s", l->data);
	}
}

static void check_unchanged(const struct curl_slist *l, const struct list_copy *c)
{
	int i = 0;

	for (; l; l = l->next, i++) {
		if (i >= c->n || l != c->node[i] || l->data != c->data[i] ||
		    strcmp(l->data, c->text[i]) != 0) {
			fprintf(stderr, "curl_easy: the program's header list changed at %d\n", i);
			exit(3);
		}
	}
	if (i != c->n) {
		fprintf(stderr, "curl_easy: the program's header list lost entries\n");
		exit(3);
	}
}

static size_t count_body(char *p, size_t size, size_t n, void *user)
{
	(void)p;
	*(size_t *)user += size * n;
	return size * n;
}

/* One transfer on @h; prints its outcome; returns the CURLcode. */
static CURLcode run(CURL *h, const char *label)
{
	size_t bytes = 0;
	long code = 0;
	CURLcode rc;

	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &bytes);
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_OK)
		printf("%s -> %ld, %zu bytes\n", label, code, bytes);
	else
		printf("%s -> error %d\n", label, (int)rc);
	return rc;
}

static void url(CURL *h, const char *base, const char *path)
{
	char u[1024];

	snprintf(u, sizeof(u), "%s%s", base, path);
	curl_easy_setopt(h, CURLOPT_URL, u);
}

static int basic(const char *base)
{
	CURL *h = curl_easy_init();
	struct curl_slist *l = NULL;
	struct list_copy before;

	l = curl_slist_append(l, "X-First: one");
	l = curl_slist_append(l, "X-Second: two");
	l = curl_slist_append(l, "Accept: application/json");
	remember(l, &before);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "curl-easy-test/1.0");

	url(h, base, "/items/1");
	run(h, "GET /items/1");
	check_unchanged(l, &before);

	url(h, base, "/submit");
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, "a=1&b=2");
	run(h, "POST /submit");
	check_unchanged(l, &before);

	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	url(h, base, "/items/2");
	run(h, "GET /items/2");
	check_unchanged(l, &before);

	/* The program takes its list away: the shim must not bring it back. */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(l);
	url(h, base, "/plain");
	run(h, "GET /plain");

	curl_easy_cleanup(h);
	return 0;
}

static int own_traceparent(const char *base, const char *tp)
{
	CURL *h = curl_easy_init();
	struct curl_slist *l = NULL;
	struct list_copy before;
	char line[256];

	snprintf(line, sizeof(line), "traceparent: %s", tp);
	l = curl_slist_append(l, line);
	l = curl_slist_append(l, "X-Own: 1");
	remember(l, &before);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	url(h, base, "/own");
	run(h, "GET /own");
	check_unchanged(l, &before);
	curl_easy_cleanup(h);
	curl_slist_free_all(l);
	return 0;
}

static int dup_and_reset(const char *base)
{
	CURL *h = curl_easy_init();
	CURL *d;
	struct curl_slist *l = NULL;
	struct list_copy before;

	l = curl_slist_append(l, "X-Dup: yes");
	remember(l, &before);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	url(h, base, "/dup/a");
	d = curl_easy_duphandle(h);
	run(h, "GET /dup/a");
	run(d, "GET /dup/a (copy)");
	url(d, base, "/dup/b");
	run(d, "GET /dup/b (copy)");
	check_unchanged(l, &before);
	curl_easy_cleanup(d);

	curl_easy_reset(h);
	url(h, base, "/reset");
	run(h, "GET /reset");
	curl_easy_cleanup(h);
	curl_slist_free_all(l);
	return 0;
}

static int file(const char *path)
{
	CURL *h = curl_easy_init();
	struct curl_slist *l = curl_slist_append(NULL, "X-File: 1");
	char u[1024];

	snprintf(u, sizeof(u), "file://%s", path);
	curl_easy_setopt(h, CURLOPT_URL, u);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
	run(h, "FILE");
	curl_easy_cleanup(h);
	curl_slist_free_all(l);
	return 0;
}

static int refused(const char *u)
{
	CURL *h = curl_easy_init();

	curl_easy_setopt(h, CURLOPT_URL, u);
	run(h, "GET refused");
	curl_easy_cleanup(h);
	return 0;
}

int main(int argc, char **argv)
{
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: curl_easy BASE_URL basic|own-tp|dup|file|refused [ARG]\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (strcmp(argv[2], "basic") == 0)
		rc = basic(argv[1]);
	else if (strcmp(argv[2], "own-tp") == 0 && argc > 3)
		rc = own_traceparent(argv[1], argv[3]);
	else if (strcmp(argv[2], "dup") == 0)
		rc = dup_and_reset(argv[1]);
	else if (strcmp(argv[2], "file") == 0 && argc > 3)
		rc = file(argv[3]);
	else if (strcmp(argv[2], "refused") == 0 && argc > 3)
		rc = refused(argv[3]);
	else
		rc = 2;
	curl_global_cleanup();
	if (rc == 0)
		printf("ok\n");
	return rc;
}
