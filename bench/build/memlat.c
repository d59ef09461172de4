/* memlat.c: what a scattered memory access costs on this machine, the
 * bound under the sample builder (each event reads and writes a dozen lines
 * spread over about 1 GiB of state: users, items, histories, pair tables).
 *
 *   cc -O2 -o /tmp/memlat bench/build/memlat.c && /tmp/memlat [MIB]
 *
 * Over MIB (default 512) of 2 MiB-advised memory, and over 4 MiB for
 * comparison, it times 10M steps of a loop with ~30 multiply-adds of work
 * each: alone; with one random line loaded (its value feeds the next
 * address, as a hash probe's does: the full latency); and with one random
 * line prefetched 16 steps before it is read (as the builder's look-ahead
 * does: what is left after the overlap). Nanoseconds a step. On a shared
 * virtual machine these move by 2x between minutes, and so does the build.
 *
 * Then the same 131,072 lines (8 MiB) two ways: packed in 8 MiB, and one
 * in each 4 KiB page of MIB. Equal lines, equal caches: what differs is
 * the pages, so the difference is the TLB's (page walks). Where the host
 * backs the guest's huge pages with 4 KiB ones, it is large, and a state
 * laid out so that an event touches fewer pages is faster. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { STEPS = 10000000, AHEAD = 16, WORK = 30 };

static double run(const char *p, const size_t *at, int mode)
{
    uint64_t s = 0;
    double t0 = now();
    for (size_t i = 0; i < STEPS; i++) {
        if (mode == 2) __builtin_prefetch(p + at[i + AHEAD], 0, 1);
        if (mode) s += (uint64_t)p[at[i] + (mode == 1 ? (s & 1) : 0)];
        for (int k = 0; k < WORK; k++) s = s * 31 + (uint64_t)k;
    }
    double t = now() - t0;
    if (s == 42) puts(""); /* keeps s alive */
    return t / STEPS * 1e9;
}

int main(int argc, char **argv)
{
    size_t sizes[2] = {4, argc > 1 ? (size_t)atol(argv[1]) : 512};
    size_t *at = malloc((STEPS + AHEAD) * sizeof *at);
    if (!at) return 1;
    for (int z = 0; z < 2; z++) {
        size_t n = sizes[z] << 20;
        char *p;
        if (n < ((size_t)4 << 20) || posix_memalign((void **)&p, (size_t)2 << 20, n)) return 1;
        madvise(p, n, MADV_HUGEPAGE);
        memset(p, 1, n);
        uint64_t x = 88172645463325252ull;
        for (size_t i = 0; i < STEPS + AHEAD; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            at[i] = (size_t)(x % (n / 64)) * 64;
        }
        printf("%5zu MiB: work alone %6.1f ns a step, + a dependent random load %6.1f, + a random line prefetched %d steps ahead %6.1f\n",
               sizes[z], run(p, at, 0), run(p, at, 1), AHEAD, run(p, at, 2));
        if (z == 0) {
            free(p);
            continue;
        }
        const size_t lines = 131072;
        for (int v = 0; v < 2; v++) {
            uint64_t y = 88172645463325252ull;
            for (size_t i = 0; i < STEPS + AHEAD; i++) {
                y ^= y << 13, y ^= y >> 7, y ^= y << 17;
                at[i] = (size_t)(y % lines) * (v ? (n / lines) : 64);
            }
            printf("  8 MiB of lines, %-25s + a dependent load %6.1f, + prefetched %6.1f\n",
                   v ? "one a page of the above:" : "packed:", run(p, at, 1), run(p, at, 2));
        }
        free(p);
    }
    free(at);
    return 0;
}
