/* A libcurl multi-API client for tests/integration/test_libcurl.py.
 *
 * usage: curl_multi BASE_URL MODE N
 *   perform  N concurrent GETs of BASE/m/<i> on one multi handle, each
 *            easy handle with its own header list ("X-Index: <i>",
 *            "X-Multi: yes"), driven by curl_multi_perform() and
 *            curl_multi_poll(); each completion is read with
 *            curl_multi_info_read(), then the handle is removed and
 *            cleaned up
 *   socket   the same driven by curl_multi_socket_action() from a poll()
 *            loop (socket and timer callbacks)
 *   abort    one GET of BASE/slow, removed from the multi handle once
 *            its request was sent, before any response (N unused)
 *
 * Prints "GET /m/<i> -> <status>, <bytes> bytes" per completion (in
 * completion order) and "ok". Exits 3 when a program's header list was
 * changed, 4 when the transfers do not finish within 30 s.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define MAX_XFERS 16

struct xfer {
	CURL *easy;
	struct curl_slist *list;
	const struct curl_slist *node[2];
	const char *data[2];
	char text[2][64];
	size_t bytes;
	int index;
};

static struct xfer xfers[MAX_XFERS];

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t count_body(char *p, size_t size, size_t n, void *user)
{
	(void)p;
	((struct xfer *)user)->bytes += size * n;
	return size * n;
}

static void check_unchanged(const struct xfer *x)
{
	const struct curl_slist *l = x->list;

	for (int i = 0; i < 2; i++, l = l->next) {
		if (!l || l != x->node[i] || l->data != x->data[i] ||
		    strcmp(l->data, x->text[i]) != 0) {
			fprintf(stderr, "curl_multi: header list %d changed\n", x->index);
			exit(3);
		}
	}
	if (l) {
		fprintf(stderr, "curl_multi: header list %d grew\n", x->index);
		exit(3);
	}
}

static void setup(struct xfer *x, int i, const char *base, const char *path)
{
	char u[1024], line[64];
	const struct curl_slist *l;

	x->index = i;
	x->easy = curl_easy_init();
	snprintf(line, sizeof(line), "X-Index: %d", i);
	x->list = curl_slist_append(NULL, line);
	x->list = curl_slist_append(x->list, "X-Multi: yes");
	l = x->list;
	for (int k = 0; k < 2; k++, l = l->next) {
		x->node[k] = l;
		x->data[k] = l->data;
		snprintf(x->text[k], sizeof(x->text[k]), "%s", l->data);
	}
	snprintf(u, sizeof(u), "%s%s", base, path);
	curl_easy_setopt(x->easy, CURLOPT_URL, u);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->list);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, count_body);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
}

/* Read every finished transfer: print, remove, clean up. */
static int reap(CURLM *m)
{
	CURLMsg *msg;
	int left, done = 0;

	while ((msg = curl_multi_info_read(m, &left))) {
		struct xfer *x = NULL;
		long code = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
		if (msg->data.result == CURLE_OK)
			printf("GET /m/%d -> %ld, %zu bytes\n", x->index, code, x->bytes);
		else
			printf("GET /m/%d -> error %d\n", x->index, (int)msg->data.result);
		curl_multi_remove_handle(m, x->easy);
		check_unchanged(x);
		curl_easy_cleanup(x->easy);
		curl_slist_free_all(x->list);
		x->easy = NULL;
		done++;
	}
	return done;
}

static int run_perform(CURLM *m, int n)
{
	double deadline = now() + 30;
	int running = 1, done = 0;

	while (done < n) {
		if (now() > deadline)
			return 4;
		curl_multi_perform(m, &running);
		done += reap(m);
		if (done < n)
			curl_multi_poll(m, NULL, 0, 200, NULL);
	}
	return 0;
}

/* ---- curl_multi_socket_action() from a poll() loop ---- */

static struct pollfd pfds[MAX_XFERS * 2];
static int n_pfds;
static long timeout_ms = -1;

static int on_socket(CURL *e, curl_socket_t s, int what, void *user, void *sockp)
{
	(void)e;
	(void)user;
	(void)sockp;
	for (int i = 0; i < n_pfds; i++) {
		if (pfds[i].fd != s)
			continue;
		if (what == CURL_POLL_REMOVE) {
			pfds[i] = pfds[--n_pfds];
			return 0;
		}
		pfds[i].events = (short)((what & CURL_POLL_IN ? POLLIN : 0) |
					 (what & CURL_POLL_OUT ? POLLOUT : 0));
		return 0;
	}
	if (what != CURL_POLL_REMOVE && n_pfds < (int)(sizeof(pfds) / sizeof(pfds[0]))) {
		pfds[n_pfds].fd = s;
		pfds[n_pfds].events = (short)((what & CURL_POLL_IN ? POLLIN : 0) |
					      (what & CURL_POLL_OUT ? POLLOUT : 0));
		n_pfds++;
	}
	return 0;
}

static int on_timer(CURLM *m, long ms, void *user)
{
	(void)m;
	(void)user;
	timeout_ms = ms;
	return 0;
}

static int run_socket(CURLM *m, int n)
{
	double deadline = now() + 30;
	int running, done = 0;

	curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
	/* Adding the handles armed the timer; kick it off. */
	curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
	while (done < n) {
		struct pollfd ready[MAX_XFERS * 2];
		int k = n_pfds, r;

		if (now() > deadline)
			return 4;
		memcpy(ready, pfds, sizeof(ready));
		r = poll(ready, (nfds_t)k,
			 timeout_ms < 0 || timeout_ms > 200 ? 200 : (int)timeout_ms);
		if (r <= 0) {
			curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
		} else {
			for (int i = 0; i < k; i++) {
				int ev = 0;

				if (ready[i].revents & (POLLIN | POLLHUP | POLLERR))
					ev |= CURL_CSELECT_IN;
				if (ready[i].revents & POLLOUT)
					ev |= CURL_CSELECT_OUT;
				if (ev)
					curl_multi_socket_action(m, ready[i].fd, ev, &running);
			}
		}
		done += reap(m);
	}
	return 0;
}

static int run_abort(CURLM *m, const char *base)
{
	struct xfer *x = &xfers[0];
	double deadline = now() + 30;
	int running;
	curl_off_t sent = 0;

	setup(x, 0, base, "/slow");
	curl_multi_add_handle(m, x->easy);
	while (sent <= 0) {
		if (now() > deadline)
			return 4;
		curl_multi_perform(m, &running);
		curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent);
		if (sent <= 0)
			curl_multi_poll(m, NULL, 0, 50, NULL);
	}
	curl_multi_remove_handle(m, x->easy);
	check_unchanged(x);
	printf("GET /slow aborted\n");
	curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->list);
	return 0;
}

int main(int argc, char **argv)
{
	CURLM *m;
	int n, rc;

	if (argc < 4 || (n = atoi(argv[3])) < 1 || n > MAX_XFERS) {
		fprintf(stderr, "usage: curl_multi BASE_URL perform|socket|abort N (1-%d)\n",
			MAX_XFERS);
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	m = curl_multi_init();
	if (strcmp(argv[2], "abort") == 0) {
		rc = run_abort(m, argv[1]);
	} else {
		for (int i = 0; i < n; i++) {
			char path[32];

			snprintf(path, sizeof(path), "/m/%d", i);
			setup(&xfers[i], i, argv[1], path);
			curl_multi_add_handle(m, xfers[i].easy);
		}
		if (strcmp(argv[2], "socket") == 0)
			rc = run_socket(m, n);
		else
			rc = run_perform(m, n);
	}
	curl_multi_cleanup(m);
	curl_global_cleanup();
	if (rc == 0)
		printf("ok\n");
	return rc;
}
