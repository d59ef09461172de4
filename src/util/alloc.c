/* alloc.c: the one place heap memory comes from, so tests can make the k-th
 * allocation fail (SQLite's faultsim idea) and check for clean errors. */
#define _DEFAULT_SOURCE
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

void *pt_malloc(size_t n)
{
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *pt_calloc(size_t c, size_t s)
{
    if (should_fail()) return NULL;
    return calloc(c ? c : 1, s ? s : 1);
}

void *pt_realloc(void *p, size_t n)
{
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
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

void pt_advise_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    /* Transparent huge pages for big arenas (embedding tables and their
     * optimiser state): far fewer page faults and TLB misses on the random
     * row accesses of sparse updates. Advisory: failure changes nothing. */
    const size_t huge = (size_t)2 << 20;
    if (!p || n < 4 * huge) return;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)(huge - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

int pt_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return PT_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = pt_realloc(*p, c * elem);
    if (!q) return pt_error(PT_ENOMEM, "out of memory");
    pt_advise_huge(q, c * elem);
    *p = q;
    *cap = c;
    return PT_OK;
}
