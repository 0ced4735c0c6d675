/* Three bursts of syscalls one second apart (stprof run -i tests).
 * Each burst: BURST_CALLS getppid() calls and BURST_CALLS failed close(-1)
 * calls.  argv[1] "loop": repeat bursts forever (for -p PID tests), and say
 * "ready" on stdout once started. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BURST_CALLS 2000

static void burst(void)
{
    for (int i = 0; i < BURST_CALLS; i++) {
        getppid();
        close(-1);
    }
}

static void pause_s(long s)
{
    struct timespec t = {.tv_sec = s, .tv_nsec = 0};
    nanosleep(&t, NULL);
}

int main(int argc, char **argv)
{
    int forever = argc > 1 && strcmp(argv[1], "loop") == 0;

    if (forever) {
        printf("ready\n");
        fflush(stdout);
        for (;;) {
            burst();
            pause_s(0);
            struct timespec t = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
            nanosleep(&t, NULL);
        }
    }
    for (int b = 0; b < 3; b++) {
        if (b)
            pause_s(1);
        burst();
    }
    return 0;
}
