/*
 * thread_storm: THREADS threads started together, each making CALLS raw
 * getppid calls, then joined.  The main thread makes no getppid call.
 *
 *   thread_storm THREADS CALLS
 *
 * Exactly THREADS * CALLS getppid calls; many threads on few CPUs give a
 * storm of context switches, wake-ups and interrupts inside syscalls (the
 * eBPF collector's budget bookkeeping must still add up).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static long calls;

static void *worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < calls; i++)
        syscall(SYS_getppid);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: thread_storm THREADS CALLS\n");
        return 2;
    }
    long threads = strtol(argv[1], NULL, 10);
    calls = strtol(argv[2], NULL, 10);
    if (threads < 1 || threads > 4096 || calls < 0) {
        fprintf(stderr, "thread_storm: bad arguments\n");
        return 2;
    }
    pthread_t *ids = calloc((size_t)threads, sizeof(*ids));
    if (ids == NULL)
        return 1;
    for (long i = 0; i < threads; i++)
        if (pthread_create(&ids[i], NULL, worker, NULL) != 0) {
            fprintf(stderr, "thread_storm: pthread_create failed\n");
            return 1;
        }
    for (long i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    free(ids);
    return 0;
}
