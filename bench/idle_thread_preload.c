/* A preload that starts one thread which sleeps forever, and does nothing
 * else: what any in-process exporter thread costs its host just by
 * existing (glibc and the kernel take their multi-threaded paths). The
 * side-by-side server bench (bench/run.py server_pair) sets it against
 * nginx alone. */
#include <pthread.h>
#include <unistd.h>

static void *sleep_forever(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

__attribute__((constructor)) static void start_idle_thread(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, sleep_forever, NULL) == 0)
		pthread_detach(t);
}
