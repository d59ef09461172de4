/* alloc.c: the one place heap memory comes from, so tests can make the k-th
 * allocation fail (SQLite's faultsim idea) and check for clean errors. */
#define _DEFAULT_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util/util.h"

static _Thread_local long fail_at;
static _Thread_local long count;

void pt_alloc_fail_at(long k)
{
    fail_at = k;
    count = 0;
}

long pt_alloc_count(void) { return count; }

static int should_fail(void)
{
    count++;
    return fail_at > 0 && count == fail_at;
}

/* Blocks of this size or more are 2 MiB aligned, rounded up to whole 2 MiB
 * and advised for transparent huge pages before anything touches them. Page
 * faults are a large share of loading a big file and building a large model
 * (on a virtual machine a 4 KiB fault costs about 10 us: 3 ms a MiB), and the
 * random row accesses of embedding and hash tables miss the TLB less. The
 * alignment matters: only whole aligned 2 MiB ranges get huge pages, and an
 * unaligned 8 MiB block would fault a quarter of itself in 4 KiB pages. */
#define HUGE ((size_t)2 << 20)
#define HUGE_FROM (2 * HUGE)

static void *huge_alloc(size_t n)
{
    size_t r = (n + HUGE - 1) & ~(HUGE - 1);
    if (r < n) return NULL;
    void *p;
    if (posix_memalign(&p, HUGE, r)) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, r, MADV_HUGEPAGE); /* advisory: failure changes nothing */
#endif
    return p;
}

void *pt_malloc(size_t n)
{
    if (should_fail()) return NULL;
    return n >= HUGE_FROM ? huge_alloc(n) : malloc(n ? n : 1);
}

void *pt_calloc(size_t c, size_t s)
{
    if (should_fail()) return NULL;
    if (c && s > SIZE_MAX / c) return NULL;
    size_t n = c * s;
    if (n < HUGE_FROM) return calloc(c ? c : 1, s ? s : 1);
    /* dropping the block's pages zeroes it lazily: a fresh mapping costs
     * nothing, and pages the block never touches are never faulted in */
    void *p = huge_alloc(n);
    if (p && madvise(p, (n + HUGE - 1) & ~(HUGE - 1), MADV_DONTNEED)) memset(p, 0, n);
    return p;
}

void *pt_realloc(void *p, size_t n)
{
    if (should_fail()) return NULL;
    if (n < HUGE_FROM || !p) return n < HUGE_FROM ? realloc(p, n ? n : 1) : huge_alloc(n);
    /* a new aligned block and a copy: realloc would keep neither the
     * alignment nor (copying into fresh pages) the advice */
    size_t old = malloc_usable_size(p);
    if (old >= n && ((uintptr_t)p & (HUGE - 1)) == 0) return p;
    void *q = huge_alloc(n);
    if (!q) return NULL;
    memcpy(q, p, old < n ? old : n);
    free(p);
    return q;
}

void pt_free(void *p) { free(p); }

char *pt_strndup(const char *s, size_t n)
{
    char *d = pt_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *pt_strdup(const char *s) { return pt_strndup(s, strlen(s)); }

void pt_string_free(char *s) { pt_free(s); }

int pt_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return PT_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = pt_realloc(*p, c * elem);
    if (!q) return pt_error(PT_ENOMEM, "out of memory");
    *p = q;
    *cap = c;
    return PT_OK;
}
