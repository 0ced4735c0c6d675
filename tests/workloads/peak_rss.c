/*
 * peak_rss FILE COMMAND [ARGS...]: run COMMAND, write its peak resident set
 * (wait4's ru_maxrss, in KiB) to FILE, and exit with its status.
 *
 * The kernel carries a forked child's pre-exec peak into its ru_maxrss, so a
 * test that forks stprof from a large pytest would measure pytest; this small
 * static program forks it instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct rusage usage;
    int status;
    pid_t pid;
    FILE *out;

    if (argc < 3) {
        fprintf(stderr, "usage: peak_rss FILE COMMAND [ARGS...]\n");
        return 2;
    }
    pid = fork();
    if (pid < 0)
        return 125;
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        _exit(127);
    }
    if (wait4(pid, &status, 0, &usage) < 0)
        return 125;
    out = fopen(argv[1], "w");
    if (!out)
        return 125;
    fprintf(out, "%ld\n", usage.ru_maxrss);
    fclose(out);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
