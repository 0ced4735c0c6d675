/*
 * touch_pages PAGES: map PAGES fresh anonymous pages (no huge pages) and write
 * one byte to each, so the process takes PAGES page faults plus its start-up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long pages = argc > 1 ? atol(argv[1]) : 10000;
    long page = sysconf(_SC_PAGESIZE);
    size_t size = (size_t)pages * (size_t)page;
    char *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (memory == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    madvise(memory, size, MADV_NOHUGEPAGE);
    for (long i = 0; i < pages; i++)
        memory[i * page] = 1;
    return 0;
}
