/* Trace/span id generation, UUIDs, hex encoding and the fork reseed. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ids.h"

#define DRAWS 100000

static int cmp16(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

static int cmp8(const void *a, const void *b)
{
	return memcmp(a, b, 8);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

static const uint8_t zero[16];

Test(ids, trace_ids_nonzero_and_distinct)
{
	uint8_t(*ids)[16] = calloc(DRAWS, 16);

	cr_assert(ids);
	for (size_t i = 0; i < DRAWS; i++) {
		osh_ids_trace_id(ids[i]);
		cr_assert(memcmp(ids[i], zero, 16) != 0);
	}
	qsort(ids, DRAWS, 16, cmp16);
	for (size_t i = 1; i < DRAWS; i++)
		cr_assert(memcmp(ids[i - 1], ids[i], 16) != 0, "duplicate trace id");
	free(ids);
}

Test(ids, span_ids_nonzero_and_distinct)
{
	uint8_t(*ids)[8] = calloc(DRAWS, 8);

	cr_assert(ids);
	for (size_t i = 0; i < DRAWS; i++) {
		osh_ids_span_id(ids[i]);
		cr_assert(memcmp(ids[i], zero, 8) != 0);
	}
	qsort(ids, DRAWS, 8, cmp8);
	for (size_t i = 1; i < DRAWS; i++)
		cr_assert(memcmp(ids[i - 1], ids[i], 8) != 0, "duplicate span id");
	free(ids);
}

Test(ids, random64_uses_every_bit)
{
	uint64_t ones = 0, zeros = 0;

	for (int i = 0; i < 1000; i++) {
		uint64_t v = osh_ids_random64();

		ones |= v;
		zeros |= ~v;
	}
	cr_assert_eq(ones, UINT64_MAX, "some bit never set");
	cr_assert_eq(zeros, UINT64_MAX, "some bit always set");
}

Test(ids, trace_id_bytes_all_vary)
{
	/* Every byte position takes many values: no fixed or zero-padded part
	 * (the random flag promises the right-most 7 bytes are random). */
	uint8_t seen[16][256] = {{0}};
	uint8_t id[16];

	for (int i = 0; i < 4096; i++) {
		osh_ids_trace_id(id);
		for (int b = 0; b < 16; b++)
			seen[b][id[b]] = 1;
	}
	for (int b = 0; b < 16; b++) {
		int distinct = 0;

		for (int v = 0; v < 256; v++)
			distinct += seen[b][v];
		cr_assert_gt(distinct, 200, "byte %d took only %d values", b, distinct);
	}
}

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

Test(ids, uuid4_format)
{
	bool variants[4] = {false};

	for (int n = 0; n < 1000; n++) {
		char u[37];

		memset(u, '#', sizeof(u));
		osh_ids_uuid4(u);
		cr_assert_eq(u[36], '\0');
		cr_assert_eq(strlen(u), 36);
		for (int i = 0; i < 36; i++) {
			if (i == 8 || i == 13 || i == 18 || i == 23)
				cr_assert_eq(u[i], '-', "%s", u);
			else
				cr_assert(is_lower_hex(u[i]), "%s", u);
		}
		cr_assert_eq(u[14], '4', "version nibble: %s", u);
		cr_assert(strchr("89ab", u[19]) != NULL, "variant: %s", u);
		variants[strchr("89ab", u[19]) - "89ab"] = true;
	}
	/* The variant sets two bits only: the other two stay random. */
	cr_assert(variants[0] && variants[1] && variants[2] && variants[3]);
}

Test(ids, uuid4_distinct)
{
	enum { N = 10000 };
	char(*u)[37] = calloc(N, 37);

	cr_assert(u);
	for (int i = 0; i < N; i++)
		osh_ids_uuid4(u[i]);
	qsort(u, N, 37, cmp_str);
	for (int i = 1; i < N; i++)
		cr_assert_str_neq(u[i - 1], u[i]);
	free(u);
}

Test(ids, hex_encode_every_byte)
{
	uint8_t in[256];
	char out[513], want[3];

	for (int i = 0; i < 256; i++)
		in[i] = (uint8_t)i;
	out[512] = '#';
	osh_hex_encode(in, 256, out);
	cr_assert_eq(out[512], '#', "wrote past 2n characters");
	for (int i = 0; i < 256; i++) {
		snprintf(want, sizeof(want), "%02x", i);
		cr_assert(memcmp(out + 2 * i, want, 2) == 0, "byte %02x -> %.2s", i, out + 2 * i);
	}
}

Test(ids, hex_encode_empty_and_small)
{
	static const uint8_t in[] = {0xde, 0xad, 0x00, 0xbe, 0xef};
	char out[11] = "##########";

	osh_hex_encode(in, 0, out);
	cr_assert_str_eq(out, "##########");
	osh_hex_encode(in, 5, out);
	cr_assert_str_eq(out, "dead00beef");
}

/* ---- threads ---- */

#define THREADS	   4
#define PER_THREAD 20000

static void *draw_span_ids(void *arg)
{
	uint64_t *out = arg;

	for (int i = 0; i < PER_THREAD; i++) {
		uint8_t id[8];

		osh_ids_span_id(id);
		memcpy(&out[i], id, 8);
	}
	return NULL;
}

Test(ids, threads_draw_distinct_streams)
{
	uint64_t *all = calloc(THREADS * PER_THREAD, sizeof(uint64_t));
	pthread_t th[THREADS];

	cr_assert(all);
	for (int t = 0; t < THREADS; t++)
		cr_assert_eq(pthread_create(&th[t], NULL, draw_span_ids, all + t * PER_THREAD), 0);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	qsort(all, THREADS * PER_THREAD, sizeof(uint64_t), cmp_u64);
	for (int i = 1; i < THREADS * PER_THREAD; i++)
		cr_assert_neq(all[i - 1], all[i], "two threads produced the same id");
	free(all);
}

/* ---- fork ---- */

#define FORK_DRAWS 8

/* Fork a child that (optionally) calls osh_ids_after_fork(), then draws
 * FORK_DRAWS values and sends them back through a pipe. */
static void child_draws(bool after_fork, uint64_t out[FORK_DRAWS])
{
	int fds[2], status;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		uint64_t v[FORK_DRAWS];

		close(fds[0]);
		if (after_fork)
			osh_ids_after_fork();
		for (int i = 0; i < FORK_DRAWS; i++)
			v[i] = osh_ids_random64();
		_exit(write(fds[1], v, sizeof(v)) == (ssize_t)sizeof(v) ? 0 : 1);
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], out, FORK_DRAWS * sizeof(uint64_t)),
		     (ssize_t)(FORK_DRAWS * sizeof(uint64_t)));
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

Test(ids, fork_child_reseeds_after_fork)
{
	uint64_t copy[FORK_DRAWS], fresh[FORK_DRAWS], parent[FORK_DRAWS];

	(void)osh_ids_random64(); /* the parent's state exists before fork */
	child_draws(false, copy);
	child_draws(true, fresh);
	for (int i = 0; i < FORK_DRAWS; i++)
		parent[i] = osh_ids_random64();

	/* Control: without the hook the child replays the parent's stream,
	 * which is exactly what osh_ids_after_fork() exists to prevent. */
	cr_assert_arr_eq(copy, parent, sizeof(parent));
	for (int i = 0; i < FORK_DRAWS; i++)
		for (int j = 0; j < FORK_DRAWS; j++)
			cr_assert_neq(fresh[i], parent[j], "child repeated a parent value");
}

Test(ids, two_fork_children_differ)
{
	uint64_t a[FORK_DRAWS], b[FORK_DRAWS];

	(void)osh_ids_random64();
	child_draws(true, a);
	child_draws(true, b);
	for (int i = 0; i < FORK_DRAWS; i++)
		for (int j = 0; j < FORK_DRAWS; j++)
			cr_assert_neq(a[i], b[j], "two children drew the same value");
}

Test(ids, after_fork_in_process_continues_fresh)
{
	enum { N = 5000 };
	uint64_t *v = calloc(2 * N, sizeof(uint64_t));

	cr_assert(v);
	for (int i = 0; i < N; i++)
		v[i] = osh_ids_random64();
	osh_ids_after_fork();
	for (int i = N; i < 2 * N; i++)
		v[i] = osh_ids_random64();
	qsort(v, 2 * N, sizeof(uint64_t), cmp_u64);
	for (int i = 1; i < 2 * N; i++)
		cr_assert_neq(v[i - 1], v[i]);
	free(v);
}
