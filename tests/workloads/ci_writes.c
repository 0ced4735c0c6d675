/*
 * ci_writes FLAGDIR N: N writes of 64 bytes to /dev/null and a 1 ms sleep.
 * The planted regressions of the CI tests (tests/test_record_check.py),
 * each switched on by a file in FLAGDIR while nothing else changes:
 *   FLAGDIR/writes  10% more writes (a count regression)
 *   FLAGDIR/sleep   a 30 ms sleep instead of 1 ms (a time-only regression)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int flag_set(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ci_writes FLAGDIR N\n");
        return 2;
    }
    long count = strtol(argv[2], NULL, 10);
    if (flag_set(argv[1], "writes"))
        count += count / 10;
    struct timespec nap = {0, flag_set(argv[1], "sleep") ? 30000000L : 1000000L};
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0) {
        perror("/dev/null");
        return 1;
    }
    char buffer[64];
    memset(buffer, 0, sizeof buffer);
    for (long i = 0; i < count; i++) {
        if (write(fd, buffer, sizeof buffer) != (ssize_t)sizeof buffer) {
            perror("write");
            return 1;
        }
    }
    close(fd);
    nanosleep(&nap, NULL);
    return 0;
}
