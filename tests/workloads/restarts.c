/*
 * restarts: syscalls interrupted by signals, which the kernel restarts (or
 * turns into EINTR), with the program's own tally of the calls it made.
 *
 *   restarts fork N dfl|handler|restart
 *       N fork()s, each child _exit(0)s at once, with SIGCHLD left at SIG_DFL
 *       or caught by a handler without / with SA_RESTART; then every child is
 *       reaped.  A SIGCHLD pending when a fork starts makes clone fail with
 *       ERESTARTNOINTR, and the kernel restarts it: the program made N calls.
 *   restarts read restart|handler
 *       one read() of an empty pipe, interrupted after 30 ms by a SIGALRM
 *       whose handler has SA_RESTART (the kernel restarts the read:
 *       ERESTARTSYS) or not (the read fails with EINTR and is called again);
 *       a child writes the pipe after 300 ms.
 *   restarts sleep stop
 *       one nanosleep(300 ms), during which a child stops the process
 *       (SIGSTOP) and continues it (SIGCONT): no handler runs, so the kernel
 *       resumes the sleep through restart_syscall (ERESTART_RESTARTBLOCK).
 *   restarts sleep handler
 *       nanosleep(300 ms) interrupted after 30 ms by a SIGALRM caught with
 *       SA_RESTART: nanosleep is never restarted for a handler, it fails with
 *       EINTR and is called again for the time left.
 *
 * Prints one line per syscall it counted: "NAME CALLS EINTR", the calls it
 * made and how many of them failed with EINTR.  Linked statically.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t caught;

static void on_signal(int sig)
{
    (void)sig;
    caught++;
}

static void catch(int sig, int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) {
        perror("sigaction");
        exit(1);
    }
}

static void alarm_in_ms(long ms)
{
    struct itimerval it;
    memset(&it, 0, sizeof(it));
    it.it_value.tv_sec = ms / 1000;
    it.it_value.tv_usec = (ms % 1000) * 1000;
    if (setitimer(ITIMER_REAL, &it, NULL) != 0) {
        perror("setitimer");
        exit(1);
    }
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* waitpid until no child is left; counts its calls */
static void reap_all(long *calls, long *eintr)
{
    for (;;) {
        (*calls)++;
        pid_t got = waitpid(-1, NULL, 0);
        if (got > 0)
            continue;
        if (errno == EINTR) {
            (*eintr)++;
            continue;
        }
        return;     /* ECHILD */
    }
}

static int forks(long n, const char *mode)
{
    long wait_calls = 0, wait_eintr = 0;
    if (strcmp(mode, "handler") == 0)
        catch(SIGCHLD, 0);
    else if (strcmp(mode, "restart") == 0)
        catch(SIGCHLD, SA_RESTART);
    else if (strcmp(mode, "dfl") != 0)
        return 2;
    for (long i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0) {
            perror("fork");
            return 1;
        }
    }
    reap_all(&wait_calls, &wait_eintr);
    printf("clone %ld 0\nwait4 %ld %ld\n", n, wait_calls, wait_eintr);
    return 0;
}

static int reads(const char *mode)
{
    int fds[2];
    char byte;
    long calls = 0, eintr = 0, wait_calls = 0, wait_eintr = 0;
    if (pipe(fds) != 0)
        return 1;
    pid_t writer = fork();
    if (writer == 0) {
        sleep_ms(300);
        if (write(fds[1], "x", 1) != 1)
            _exit(1);
        _exit(0);
    }
    catch(SIGALRM, strcmp(mode, "restart") == 0 ? SA_RESTART : 0);
    alarm_in_ms(30);
    for (;;) {
        calls++;
        ssize_t got = read(fds[0], &byte, 1);
        if (got == 1)
            break;
        if (got < 0 && errno == EINTR) {
            eintr++;
            continue;
        }
        perror("read");
        return 1;
    }
    signal(SIGALRM, SIG_IGN);
    reap_all(&wait_calls, &wait_eintr);
    printf("read %ld %ld\nwait4 %ld %ld\n", calls, eintr, wait_calls, wait_eintr);
    return caught == 1 ? 0 : 3;
}

static int sleeps(const char *mode)
{
    long calls = 0, eintr = 0, wait_calls = 0, wait_eintr = 0;
    struct timespec ts = {0, 300 * 1000000L};
    if (strcmp(mode, "stop") == 0) {
        pid_t parent = getpid();
        pid_t child = fork();
        if (child == 0) {
            sleep_ms(30);
            kill(parent, SIGSTOP);
            sleep_ms(30);
            kill(parent, SIGCONT);
            _exit(0);
        }
    } else if (strcmp(mode, "handler") == 0) {
        catch(SIGALRM, SA_RESTART);
        alarm_in_ms(30);
    } else {
        return 2;
    }
    for (;;) {
        calls++;
        if (nanosleep(&ts, &ts) == 0)
            break;
        if (errno != EINTR) {
            perror("nanosleep");
            return 1;
        }
        eintr++;
    }
    reap_all(&wait_calls, &wait_eintr);
    printf("nanosleep %ld %ld\nwait4 %ld %ld\n", calls, eintr, wait_calls, wait_eintr);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOFBF, 4096);  /* one write at the end */
    if (argc == 4 && strcmp(argv[1], "fork") == 0)
        return forks(strtol(argv[2], NULL, 10), argv[3]);
    if (argc == 3 && strcmp(argv[1], "read") == 0)
        return reads(argv[2]);
    if (argc == 3 && strcmp(argv[1], "sleep") == 0)
        return sleeps(argv[2]);
    fprintf(stderr, "usage: restarts fork N dfl|handler|restart | read restart|handler"
                    " | sleep stop|handler\n");
    return 2;
}
