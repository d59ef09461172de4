/* test_extsort.c: the external sorter against a reference stable sort
 * (qsort on (key, order added)), in memory and with many spilled runs;
 * awkward fields (NUL, newlines, empty, none, many); records larger than
 * the budget; misuse; spill-file write and read failures naming the file,
 * and a damaged spill file read without crashing;
 * allocation failures at every point (no leak: LSan checks at exit); and no
 * spill file visible in the folder while sorting or left after free. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "data/extsort.h"
#include "tmpdir.h"
#include "util/util.h"

#define KIB 1024

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    return tmpdir_make(tmpdir, sizeof tmpdir, "extsort");
}

static int teardown(void **state)
{
    (void)state;
    tmpdir_remove(tmpdir);
    return 0;
}

static int count_files(void)
{
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* ---- reference records ---- */

struct rec {
    int64_t key;
    long line;
    size_t seq; /* order added */
    size_t nf;
    char **f;
    size_t *lens;
};

struct recs {
    struct rec *r;
    size_t n, cap;
};

/* Appends a record; fields are copied. */
static void recs_add(struct recs *rs, int64_t key, long line, size_t nf, const char *const *f,
                     const size_t *lens)
{
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? 2 * rs->cap : 64;
        rs->r = realloc(rs->r, rs->cap * sizeof *rs->r);
        assert_non_null(rs->r);
    }
    struct rec *r = &rs->r[rs->n];
    r->key = key;
    r->line = line;
    r->seq = rs->n++;
    r->nf = nf;
    r->f = calloc(nf + 1, sizeof *r->f);
    r->lens = calloc(nf + 1, sizeof *r->lens);
    assert_non_null(r->f);
    assert_non_null(r->lens);
    for (size_t i = 0; i < nf; i++) {
        r->f[i] = malloc(lens[i] + 1);
        assert_non_null(r->f[i]);
        if (lens[i]) memcpy(r->f[i], f[i], lens[i]);
        r->lens[i] = lens[i];
    }
}

static void recs_free(struct recs *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        for (size_t j = 0; j < rs->r[i].nf; j++) free(rs->r[i].f[j]);
        free(rs->r[i].f);
        free(rs->r[i].lens);
    }
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

/* Random records: keys from a few values (many ties) and the extremes;
 * 0-6 fields of 0-11 bytes drawn from a set with NUL, CR and LF. */
static void recs_random(struct recs *rs, uint64_t seed, size_t n, uint64_t nkeys, size_t maxlen)
{
    static const char alphabet[] = {'a', 'b', 'z', ',', '"', '\n', '\r', '\0', (char)0xff};
    struct rng g;
    rng_seed(&g, seed);
    char *buf[6];
    size_t lens[6];
    for (int i = 0; i < 6; i++) {
        buf[i] = malloc(maxlen + 1);
        assert_non_null(buf[i]);
    }
    for (size_t i = 0; i < n; i++) {
        int64_t key = (int64_t)rng_below(&g, nkeys) - (int64_t)(nkeys / 3);
        switch (rng_below(&g, 40)) {
        case 0: key = INT64_MIN; break;
        case 1: key = INT64_MAX; break;
        case 2: key = (int64_t)rng_next(&g); break;
        case 3: key = 1700000000000 + (int64_t)rng_below(&g, 1000); break;
        default: break;
        }
        size_t nf = (size_t)rng_below(&g, 7);
        for (size_t j = 0; j < nf; j++) {
            lens[j] = (size_t)rng_below(&g, maxlen + 1);
            for (size_t b = 0; b < lens[j]; b++) buf[j][b] = alphabet[rng_below(&g, sizeof alphabet)];
        }
        recs_add(rs, key, (long)(i + 2), nf, (const char *const *)buf, lens);
    }
    for (int i = 0; i < 6; i++) free(buf[i]);
}

static int by_key_seq(const void *a, const void *b)
{
    const struct rec *x = *(const struct rec *const *)a, *y = *(const struct rec *const *)b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* pointers to rs's records in stable key order; free() the result */
static struct rec **reference_order(const struct recs *rs)
{
    struct rec **o = malloc((rs->n + 1) * sizeof *o);
    assert_non_null(o);
    for (size_t i = 0; i < rs->n; i++) o[i] = &rs->r[i];
    qsort(o, rs->n, sizeof *o, by_key_seq);
    return o;
}

static int add_rec(struct extsort *s, const struct rec *r)
{
    return extsort_add(s, r->key, r->line, r->f, r->lens, r->nf);
}

/* Reads s to the end and checks it against the reference order. */
static void check_output(struct extsort *s, const struct recs *rs)
{
    struct rec **o = reference_order(rs);
    size_t nf, *lens;
    char **f;
    long line;
    int64_t key;
    for (size_t i = 0; i < rs->n; i++) {
        assert_int_equal(extsort_next(s, &nf, &f, &lens, &line, &key), 1);
        const struct rec *r = o[i];
        assert_int_equal(key, r->key);
        assert_int_equal(line, r->line);
        assert_int_equal(nf, r->nf);
        assert_non_null(f);
        for (size_t j = 0; j < nf; j++) {
            assert_int_equal(lens[j], r->lens[j]);
            if (lens[j]) assert_memory_equal(f[j], r->f[j], lens[j]);
            assert_int_equal(f[j][lens[j]], 0);
        }
    }
    assert_int_equal(extsort_next(s, &nf, &f, &lens, &line, &key), 0);
    assert_int_equal(extsort_next(s, &nf, &f, &lens, NULL, NULL), 0);
    free(o);
}

/* Sorts rs with the given budget and checks everything; returns the runs. */
static int sort_and_check(const struct recs *rs, size_t budget)
{
    struct extsort *s;
    assert_int_equal(extsort_create(&s, tmpdir, budget), PT_OK);
    for (size_t i = 0; i < rs->n; i++) assert_int_equal(add_rec(s, &rs->r[i]), PT_OK);
    assert_int_equal(extsort_count(s), (int64_t)rs->n);
    assert_int_equal(extsort_finish(s), PT_OK);
    assert_int_equal(count_files(), 0); /* the spill file was unlinked at once */
    check_output(s, rs);
    int runs = extsort_runs(s);
    extsort_free(s);
    assert_int_equal(count_files(), 0);
    return runs;
}

/* ---- tests ---- */

static void test_random_many_runs(void **state)
{
    (void)state;
    struct recs rs = {0};
    recs_random(&rs, 1, 30000, 50, 11);
    int runs = sort_and_check(&rs, 64 * KIB);
    assert_true(runs >= 20);
    /* fewer distinct keys still: long ties across every run */
    recs_free(&rs);
    recs_random(&rs, 2, 20000, 3, 4);
    assert_true(sort_and_check(&rs, 64 * KIB) >= 5);
    recs_free(&rs);
}

static void test_random_in_memory(void **state)
{
    (void)state;
    struct recs rs = {0};
    recs_random(&rs, 3, 5000, 100, 11);
    assert_int_equal(sort_and_check(&rs, 8 * KIB * KIB), 0);
    recs_free(&rs);
    /* already sorted input (the radix sort's shortcut), with ties */
    for (size_t i = 0; i < 3000; i++) {
        const char *f[1] = {"x"};
        size_t l[1] = {1};
        recs_add(&rs, (int64_t)(i / 7) - 100, (long)i, 1, f, l);
    }
    assert_int_equal(sort_and_check(&rs, 1024 * KIB), 0);
    assert_true(sort_and_check(&rs, 64 * KIB) > 0);
    recs_free(&rs);
}

/* NUL, CR/LF, empty fields, no fields, more fields than the sorter's initial
 * field arrays; in memory and spilled between filler records. */
static void test_special_fields(void **state)
{
    (void)state;
    for (int spill = 0; spill < 2; spill++) {
        struct recs rs = {0};
        const char *f3[3] = {"a\0b", "x\ny\r\n", ""};
        size_t l3[3] = {3, 5, 0};
        const char *f1[1] = {""};
        size_t l1[1] = {0};
        const char *many[100];
        size_t lmany[100];
        for (int i = 0; i < 100; i++) {
            many[i] = i % 3 ? "" : "\0";
            lmany[i] = i % 3 ? 0 : 1;
        }
        char filler[200];
        memset(filler, 'f', sizeof filler);
        const char *ff[1] = {filler};
        size_t lf[1] = {sizeof filler};
        for (int round = 0; round < 3; round++) {
            recs_add(&rs, 5 - round, 10 * round + 1, 3, f3, l3);
            recs_add(&rs, 5 - round, 10 * round + 2, 0, NULL, NULL);
            recs_add(&rs, 4 - round, 10 * round + 3, 1, f1, l1);
            recs_add(&rs, 5 - round, 10 * round + 4, 100, many, lmany);
            for (int i = 0; spill && i < 400; i++) recs_add(&rs, i % 9, 1000 + i, 1, ff, lf);
        }
        int runs = sort_and_check(&rs, 64 * KIB);
        if (spill)
            assert_true(runs >= 2);
        else
            assert_int_equal(runs, 0);
        recs_free(&rs);
    }
}

static void test_empty(void **state)
{
    (void)state;
    struct extsort *s;
    size_t nf, *lens;
    char **f;
    long line;
    int64_t key;
    assert_int_equal(extsort_create(&s, tmpdir, 64 * KIB), PT_OK);
    assert_int_equal(extsort_finish(s), PT_OK);
    assert_int_equal(extsort_next(s, &nf, &f, &lens, &line, &key), 0);
    assert_int_equal(extsort_next(s, &nf, &f, &lens, &line, &key), 0);
    assert_int_equal(extsort_count(s), 0);
    assert_int_equal(extsort_runs(s), 0);
    extsort_free(s);
    assert_int_equal(count_files(), 0);
}

static void test_single(void **state)
{
    (void)state;
    struct recs rs = {0};
    const char *f[2] = {"2024-01-01T00:00:00", "click"};
    size_t l[2] = {19, 5};
    recs_add(&rs, -42, 7, 2, f, l);
    assert_int_equal(sort_and_check(&rs, 64 * KIB), 0);
    recs_free(&rs);
}

/* Records larger than the budget and than a run's read buffer: alone in a
 * run, between others, and last (kept in memory). */
static void test_huge_records(void **state)
{
    (void)state;
    struct recs rs = {0};
    recs_random(&rs, 4, 300, 20, 8);
    size_t big = 300 * KIB;
    char *b = malloc(big);
    assert_non_null(b);
    for (size_t i = 0; i < big; i++) b[i] = (char)(i * 7 + 3);
    const char *f[2] = {b, "tail"};
    size_t l[2] = {big, 4};
    recs_add(&rs, 3, 100000, 2, f, l);
    struct recs more = {0};
    recs_random(&more, 5, 300, 20, 8);
    for (size_t i = 0; i < more.n; i++) {
        struct rec *r = &more.r[i];
        recs_add(&rs, r->key, r->line, r->nf, (const char *const *)r->f, r->lens);
    }
    recs_free(&more);
    l[0] = big - 1;
    recs_add(&rs, 2, 100001, 2, f, l);
    recs_add(&rs, 3, 100002, 2, f, l); /* two huge in a row */
    l[0] = 100 * KIB;
    recs_add(&rs, 1, 100003, 1, f, l); /* last: stays in memory */
    assert_true(sort_and_check(&rs, 64 * KIB) >= 4);
    recs_free(&rs);
    free(b);
}

static void test_free_early(void **state)
{
    (void)state;
    extsort_free(NULL);
    struct recs rs = {0};
    recs_random(&rs, 6, 5000, 10, 11);
    struct extsort *s;
    /* without finish, after spilling */
    assert_int_equal(extsort_create(&s, tmpdir, 64 * KIB), PT_OK);
    for (size_t i = 0; i < rs.n; i++) assert_int_equal(add_rec(s, &rs.r[i]), PT_OK);
    assert_true(extsort_runs(s) > 0);
    extsort_free(s);
    assert_int_equal(count_files(), 0);
    /* mid-read */
    assert_int_equal(extsort_create(&s, tmpdir, 64 * KIB), PT_OK);
    for (size_t i = 0; i < rs.n; i++) assert_int_equal(add_rec(s, &rs.r[i]), PT_OK);
    assert_int_equal(extsort_finish(s), PT_OK);
    size_t nf, *lens;
    char **f;
    for (int i = 0; i < 100; i++) assert_int_equal(extsort_next(s, &nf, &f, &lens, NULL, NULL), 1);
    extsort_free(s);
    assert_int_equal(count_files(), 0);
    recs_free(&rs);
}

static void test_misuse(void **state)
{
    (void)state;
    struct extsort *s = (struct extsort *)&s;
    assert_int_equal(extsort_create(&s, tmpdir, 64 * KIB - 1), PT_EINVAL);
    assert_null(s);
    assert_non_null(strstr(pt_errmsg(), "budget"));
    assert_int_equal(extsort_create(&s, NULL, 64 * KIB), PT_EINVAL);
    assert_int_equal(extsort_create(&s, "", 64 * KIB), PT_EINVAL);
    assert_int_equal(extsort_create(&s, tmpdir, 64 * KIB), PT_OK);
    size_t nf, *lens, l1 = 1;
    char **f, *one = "x";
    assert_int_equal(extsort_add(s, 1, 1, NULL, &l1, 1), PT_EINVAL);
    assert_int_equal(extsort_add(s, 1, 1, &one, &l1, 1), PT_OK);
    assert_int_equal(extsort_next(s, &nf, &f, &lens, NULL, NULL), PT_EINVAL);
    assert_int_equal(extsort_finish(s), PT_OK);
    assert_int_equal(extsort_finish(s), PT_EINVAL);
    assert_int_equal(extsort_add(s, 1, 1, &one, &l1, 1), PT_EINVAL);
    assert_int_equal(extsort_next(s, &nf, &f, &lens, NULL, NULL), 1);
    assert_int_equal(nf, 1);
    assert_string_equal(f[0], "x");
    assert_int_equal(extsort_next(s, &nf, &f, &lens, NULL, NULL), 0);
    extsort_free(s);
}

/* Adds filler records until an add fails; returns that code. */
static int add_until_error(struct extsort *s, int max)
{
    char b[100];
    memset(b, 'q', sizeof b);
    char *f[1] = {b};
    size_t l[1] = {sizeof b};
    for (int i = 0; i < max; i++) {
        int rc = extsort_add(s, max - i, i + 1, f, l, 1);
        if (rc != PT_OK) return rc;
    }
    return PT_OK;
}

static void test_missing_folder(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/missing", tmpdir);
    struct extsort *s;
    assert_int_equal(extsort_create(&s, dir, 64 * KIB), PT_OK);
    assert_int_equal(add_until_error(s, 10000), PT_EIO);
    assert_non_null(strstr(pt_errmsg(), dir));
    extsort_free(s);
    /* fits in memory: no folder needed */
    assert_int_equal(extsort_create(&s, dir, 64 * KIB), PT_OK);
    assert_int_equal(add_until_error(s, 10), PT_OK);
    assert_int_equal(extsort_finish(s), PT_OK);
    extsort_free(s);
}

/* A full disk, imitated with a file size limit: PT_EIO naming the spill
 * file, and the sorter stays failed. */
static void test_write_failure(void **state)
{
    (void)state;
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    struct extsort *s;
    assert_int_equal(extsort_create(&s, tmpdir, 64 * KIB), PT_OK);
    lim = old;
    lim.rlim_cur = 200 * KIB;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = add_until_error(s, 100000);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, PT_EIO);
    assert_non_null(strstr(pt_errmsg(), tmpdir));
    assert_non_null(strstr(pt_errmsg(), "polytask-sort"));
    assert_non_null(strstr(pt_errmsg(), "write failed"));
    assert_int_equal(add_until_error(s, 1), PT_EIO);
    assert_int_equal(extsort_finish(s), PT_EIO);
    extsort_free(s);
    assert_int_equal(count_files(), 0);
}

#ifdef __linux__
/* The sorter's unlinked spill file, found through /proc/self/fd. */
static int spill_fd(void)
{
    int fd = -1;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char p[300], target[PATH_MAX];
        snprintf(p, sizeof p, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(p, target, sizeof target - 1);
        if (n <= 0) continue;
        target[n] = 0;
        if (strstr(target, tmpdir) && strstr(target, "polytask-sort")) fd = atoi(e->d_name);
    }
    closedir(d);
    assert_true(fd >= 0);
    return fd;
}

/* Runs several times larger than their read buffers (so reading goes on
 * after finish). */
static struct extsort *sorter_with_runs(struct recs *rs, uint64_t seed)
{
    recs_random(rs, seed, 40000, 1000, 11);
    struct extsort *s;
    assert_int_equal(extsort_create(&s, tmpdir, 256 * KIB), PT_OK);
    for (size_t i = 0; i < rs->n; i++) assert_int_equal(add_rec(s, &rs->r[i]), PT_OK);
    assert_true(extsort_runs(s) >= 3);
    return s;
}
#endif

/* The spill file truncated under the sorter: a short read is PT_EIO naming
 * the file. */
static void test_short_read(void **state)
{
    (void)state;
#ifdef __linux__
    struct recs rs = {0};
    struct extsort *s = sorter_with_runs(&rs, 7);
    assert_int_equal(extsort_finish(s), PT_OK);
    assert_int_equal(ftruncate(spill_fd(), 1000), 0);
    size_t nf, *lens;
    char **f;
    int rc;
    size_t got = 0;
    while ((rc = extsort_next(s, &nf, &f, &lens, NULL, NULL)) == 1) got++;
    assert_int_equal(rc, PT_EIO);
    assert_true(got < rs.n);
    assert_non_null(strstr(pt_errmsg(), tmpdir));
    assert_non_null(strstr(pt_errmsg(), "polytask-sort"));
    assert_non_null(strstr(pt_errmsg(), "ends at byte"));
    assert_int_equal(extsort_next(s, &nf, &f, &lens, NULL, NULL), PT_EIO);
    extsort_free(s);
    recs_free(&rs);
#else
    skip();
#endif
}

/* Garbage written over the spill file: every record read stays inside its
 * run (ASan would see otherwise), and the end is 0 or PT_EIO. */
static void test_damaged_spill(void **state)
{
    (void)state;
#ifdef __linux__
    struct rng g;
    rng_seed(&g, 11);
    int eio = 0;
    for (int round = 0; round < 20; round++) {
        struct recs rs = {0};
        struct extsort *s = sorter_with_runs(&rs, 100 + (uint64_t)round);
        int fd = spill_fd();
        off_t len = lseek(fd, 0, SEEK_END);
        assert_true(len > 0);
        for (int i = 0; i < 1 + round; i++) {
            unsigned char junk[8];
            for (int j = 0; j < 8; j++) junk[j] = (unsigned char)(round & 1 ? 0xff : rng_next(&g));
            off_t at = (off_t)rng_below(&g, (uint64_t)len - 8);
            assert_int_equal(pwrite(fd, junk, sizeof junk, at), (ssize_t)sizeof junk);
        }
        int rc = extsort_finish(s);
        if (rc == PT_OK) {
            size_t nf, *lens;
            char **f;
            while ((rc = extsort_next(s, &nf, &f, &lens, NULL, NULL)) == 1)
                for (size_t j = 0; j < nf; j++) assert_int_equal(f[j][lens[j]], 0);
        }
        if (rc != 0) {
            assert_int_equal(rc, PT_EIO);
            assert_non_null(strstr(pt_errmsg(), "damaged"));
            eio++;
        }
        extsort_free(s);
        recs_free(&rs);
    }
    assert_true(eio > 10);
#else
    skip();
#endif
}

/* Fails the k-th allocation for k = 1, 2, ... until a run makes fewer than k.
 * A failed add is retried (the sorter must stay usable) and the output must
 * then be complete; a failed create, finish or next ends the run with
 * PT_ENOMEM. Either way nothing leaks and no file is left. */
static void test_alloc_failures(void **state)
{
    (void)state;
    struct recs rs = {0};
    recs_random(&rs, 8, 3000, 30, 11);
    char *b = malloc(200 * KIB);
    assert_non_null(b);
    memset(b, 'h', 200 * KIB);
    const char *fb[1] = {b};
    size_t lb[1] = {200 * KIB};
    recs_add(&rs, 7, 99999, 1, fb, lb); /* grows a run's read buffer */
    const char *many[40];
    size_t lmany[40];
    for (int i = 0; i < 40; i++) {
        many[i] = "m";
        lmany[i] = 1;
    }
    recs_add(&rs, 8, 99998, 40, many, lmany); /* grows the field arrays */
    struct recs tail = {0};
    recs_random(&tail, 9, 200, 30, 11);
    for (size_t i = 0; i < tail.n; i++)
        recs_add(&rs, tail.r[i].key, tail.r[i].line, tail.r[i].nf, (const char *const *)tail.r[i].f,
                 tail.r[i].lens);
    recs_free(&tail);

    long k;
    int add_failures = 0, later_failures = 0;
    for (k = 1;; k++) {
        struct extsort *s = NULL;
        pt_alloc_fail_at(k);
        int rc = extsort_create(&s, tmpdir, 64 * KIB), stop = 0;
        if (rc != PT_OK) {
            assert_int_equal(rc, PT_ENOMEM);
            assert_null(s);
            stop = 1;
        }
        for (size_t i = 0; !stop && i < rs.n; i++) {
            rc = add_rec(s, &rs.r[i]);
            if (rc == PT_ENOMEM) {
                add_failures++;
                rc = add_rec(s, &rs.r[i]);
            }
            assert_int_equal(rc, PT_OK);
        }
        if (!stop && (rc = extsort_finish(s)) != PT_OK) stop = 1;
        if (!stop) {
            struct rec **o = reference_order(&rs);
            size_t nf, *lens, got = 0;
            char **f;
            long line;
            while ((rc = extsort_next(s, &nf, &f, &lens, &line, NULL)) == 1) {
                assert_int_equal(line, o[got]->line);
                got++;
            }
            free(o);
            if (rc == 0)
                assert_int_equal(got, rs.n);
            else
                stop = 1;
        }
        if (stop && s) {
            assert_int_equal(rc, PT_ENOMEM);
            later_failures++;
        }
        long made = pt_alloc_count();
        pt_alloc_fail_at(0);
        extsort_free(s);
        assert_int_equal(count_files(), 0);
        if (made < k) {
            assert_int_equal(rc, 0);
            break;
        }
    }
    assert_true(k > 10);
    assert_true(add_failures > 0);
    assert_true(later_failures > 0);
    free(b);
    recs_free(&rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_random_many_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_in_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_special_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_spill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
