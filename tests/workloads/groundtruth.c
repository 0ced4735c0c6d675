/*
 * groundtruth: makes exactly known numbers of syscalls, for the collectors' tests.
 *
 *   groundtruth GETPPID ENOENT CHILD THREAD PAGES [EXIT]
 *
 *   GETPPID  raw getppid calls in main
 *   ENOENT   chdir("/nonexistent/stprof") calls, each failing with ENOENT
 *            (chdir: a syscall the C startup never makes)
 *   CHILD    getppid calls in a forked child, which then _exit(0)s
 *   THREAD   getppid calls in a second thread of the main process
 *   PAGES    fresh anonymous pages touched (one byte written per page)
 *   EXIT     exit status (default 0), or SIGTERM/SIGKILL/SIGINT/SIGSEGV to die by it
 *
 *   groundtruth --loop [MS]   forever: one getppid, then sleep MS ms (default 10)
 *   groundtruth --signals N   N times: raise(SIGUSR1), whose handler makes one getppid call
 *   groundtruth --thread-exec N ARGS...
 *            a second thread makes N getppid calls, then execs groundtruth ARGS...
 *            while main waits in pthread_join (the exec changes the thread's tid)
 *
 * Linked statically, so no loader adds syscalls of its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long count_arg(const char *text)
{
    char *end;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || value < 0) {
        fprintf(stderr, "groundtruth: not a count: %s\n", text);
        exit(2);
    }
    return value;
}

static void getppids(long n)
{
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid);
}

static void *thread_main(void *arg)
{
    getppids(*(long *)arg);
    return NULL;
}

static void touch_pages(long pages)
{
    if (pages == 0)
        return;
    long size = sysconf(_SC_PAGESIZE);
    volatile char *area = mmap(NULL, (size_t)(pages * size), PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) {
        perror("groundtruth: mmap");
        exit(2);
    }
    for (long i = 0; i < pages; i++)
        area[i * size] = 1;
}

static int signal_named(const char *name)
{
    static const struct { const char *name; int number; } names[] = {
        {"SIGTERM", SIGTERM}, {"SIGKILL", SIGKILL}, {"SIGINT", SIGINT}, {"SIGSEGV", SIGSEGV},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0)
            return names[i].number;
    return 0;
}

static int loop_forever(long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    for (;;) {
        syscall(SYS_getppid);
        nanosleep(&pause, NULL);
    }
}

struct exec_plan {
    long getppids;
    char **argv;
};

static void *exec_thread(void *arg)
{
    struct exec_plan *plan = arg;
    getppids(plan->getppids);
    execv("/proc/self/exe", plan->argv);
    perror("groundtruth: execv");
    _exit(2);
}

static int thread_exec(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    struct exec_plan plan = {count_arg(argv[2]), argv + 2};
    plan.argv[0] = argv[0]; /* groundtruth ARGS... */
    pthread_t thread;
    if (pthread_create(&thread, NULL, exec_thread, &plan) != 0)
        return 2;
    pthread_join(thread, NULL); /* never returns: the exec replaces us */
    return 2;
}

static void on_usr1(int sig)
{
    (void)sig;
    syscall(SYS_getppid);
}

static int signals(long n)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_usr1;
    if (sigaction(SIGUSR1, &action, NULL) != 0)
        return 2;
    for (long i = 0; i < n; i++)
        raise(SIGUSR1);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--signals") == 0)
        return signals(count_arg(argv[2]));
    if (argc >= 2 && strcmp(argv[1], "--loop") == 0)
        return loop_forever(argc >= 3 ? count_arg(argv[2]) : 10);
    if (argc >= 2 && strcmp(argv[1], "--thread-exec") == 0)
        return thread_exec(argc, argv);
    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: groundtruth GETPPID ENOENT CHILD THREAD PAGES [EXIT]\n");
        return 2;
    }
    long n_getppid = count_arg(argv[1]), n_enoent = count_arg(argv[2]);
    long n_child = count_arg(argv[3]), n_thread = count_arg(argv[4]);
    long n_pages = count_arg(argv[5]);

    getppids(n_getppid);
    for (long i = 0; i < n_enoent; i++)
        if (syscall(SYS_chdir, "/nonexistent/stprof") != -1 || errno != ENOENT)
            return 2;

    if (n_child > 0) {
        pid_t pid = fork();
        if (pid < 0)
            return 2;
        if (pid == 0) {
            getppids(n_child);
            _exit(0);
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            return 2;
    }
    if (n_thread > 0) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, thread_main, &n_thread) != 0)
            return 2;
        pthread_join(thread, NULL);
    }
    touch_pages(n_pages);

    if (argc == 7) {
        int sig = signal_named(argv[6]);
        if (sig) {
            signal(sig, SIG_DFL);
            raise(sig);
            return 2;
        }
        return (int)count_arg(argv[6]);
    }
    return 0;
}
