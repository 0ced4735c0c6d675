/* Counts the SIGINT, SIGTERM and SIGHUP it receives and prints the counts at exit.
 *
 * count_signals [SECONDS]: writes "ready PID\n" to stderr once its handlers
 * are in place (a signal it inherited ignored is kept ignored), and "got INT"
 * (TERM, HUP) for each signal it then receives; waits SECONDS (default 5) or
 * until a SIGUSR1 (in nanosleep, or with a second argument "spin" in a busy
 * loop that makes no syscall), then prints
 *   INT=<n> TERM=<n> HUP=<n> IGN=<signals inherited ignored, e.g. HUP,INT>
 * on stdout and exits 0.  A signal inherited ignored stays ignored (and so is
 * never counted), as it would for a program that honours nohup.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t counts[NSIG];
static volatile sig_atomic_t done;

static void count(int sig) {
    counts[sig]++;
    const char *line = sig == SIGINT ? "got INT\n" : sig == SIGTERM ? "got TERM\n" : "got HUP\n";
    ssize_t ignored = write(2, line, strlen(line));
    (void)ignored;
}
static void finish(int sig) { (void)sig; done = 1; }

static int inherited_ignored(int sig) {
    struct sigaction old;
    return sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN;
}

int main(int argc, char **argv) {
    const int watched[] = {SIGINT, SIGTERM, SIGHUP};
    const char *names[] = {"INT", "TERM", "HUP"};
    char ignored[32] = "";
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    int spin = argc > 2 && strcmp(argv[2], "spin") == 0;
    struct sigaction act;
    memset(&act, 0, sizeof act);
    sigemptyset(&act.sa_mask);
    for (int i = 0; i < 3; i++) {
        if (inherited_ignored(watched[i])) {
            if (ignored[0]) strcat(ignored, ",");
            strcat(ignored, names[i]);
            continue;
        }
        act.sa_handler = count;
        sigaction(watched[i], &act, NULL);
    }
    act.sa_handler = finish;
    sigaction(SIGUSR1, &act, NULL);
    fprintf(stderr, "ready %d\n", (int)getpid());
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += (time_t)seconds;
    end.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
    if (end.tv_nsec >= 1000000000L) { end.tv_sec++; end.tv_nsec -= 1000000000L; }
    if (spin) {
        /* no syscall: a signal finds it running, not blocked in the kernel */
        for (volatile unsigned long i = 0; !done && i < (unsigned long)(seconds * 1e9); i++) {
        }
    }
    while (!done && !spin) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
            break;
        struct timespec step = {0, 10 * 1000 * 1000};
        nanosleep(&step, NULL);
    }
    printf("INT=%d TERM=%d HUP=%d IGN=%s\n", (int)counts[SIGINT], (int)counts[SIGTERM],
           (int)counts[SIGHUP], ignored[0] ? ignored : "-");
    return 0;
}
