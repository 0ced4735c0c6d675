/*
 * trace_mix: known numbers of four syscalls, in two processes, for -e trace=SET.
 *
 *   trace_mix GETPPID OPENAT READ WRITE
 *
 * The main process forks one child; each of the two then makes exactly
 * GETPPID getppid, OPENAT openat (of /dev/zero, each closed), READ one-byte
 * reads (from the first of those descriptors: OPENAT must be 1 or more) and
 * WRITE empty writes to descriptor 1 (which write nothing), all through
 * syscall(2); the child _exits, the main process waits for it.  So each
 * count in the run is twice the argument.  Linked statically: no loader
 * calls.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long count_arg(const char *text)
{
    char *end;
    long value = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || value < 0) {
        fprintf(stderr, "trace_mix: not a count: %s\n", text);
        exit(2);
    }
    return value;
}

static void pattern(long getppids, long opens, long reads, long writes)
{
    char byte;
    long first = -1;

    for (long i = 0; i < getppids; i++)
        syscall(SYS_getppid);
    for (long i = 0; i < opens; i++) {
        long fd = syscall(SYS_openat, AT_FDCWD, "/dev/zero", O_RDONLY);
        if (fd < 0)
            _exit(3);
        if (first < 0)
            first = fd;
        else
            syscall(SYS_close, fd);
    }
    for (long i = 0; i < reads; i++)
        if (syscall(SYS_read, first, &byte, 1) != 1)
            _exit(4);
    for (long i = 0; i < writes; i++)
        syscall(SYS_write, 1, &byte, 0);
    syscall(SYS_close, first);
}

int main(int argc, char **argv)
{
    long n[4];
    int status;
    pid_t child;

    if (argc != 5) {
        fprintf(stderr, "usage: trace_mix GETPPID OPENAT READ WRITE\n");
        return 2;
    }
    for (int i = 0; i < 4; i++)
        n[i] = count_arg(argv[i + 1]);
    if (n[1] < 1) {
        fprintf(stderr, "trace_mix: OPENAT must be 1 or more\n");
        return 2;
    }
    child = fork();
    if (child < 0)
        return 5;
    pattern(n[0], n[1], n[2], n[3]);
    if (child == 0)
        _exit(0);
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
        return 6;
    return 0;
}
