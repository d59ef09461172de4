/* test_topk.c: topk_dot (blocked GEMM + threshold scan, src/rec/topk.c)
 * against its plain-loop oracle topk_dot_naive.
 *
 * Most cases use factors and biases on a grid of 1/4 so every score is an
 * exact float whatever the summation order: then items and scores must match
 * bit for bit, and the grid makes many exact ties, which exercises the tie
 * rule (higher score, then lower index). One case uses continuous factors
 * and compares within 1e-4, allowing swaps only between near-equal scores.
 * Shapes straddle the block sizes (TOPK_USER_BLOCK, TOPK_ITEM_BLOCK); K = 1,
 * K > N, D = 0 and D = 1, N = 0, U = 0; bias, exclusion lists, allow masks,
 * NaN and -INFINITY scores; sorted and one-ulp-apart scores; each scan
 * kernel; 1 vs 2 threads; the k-th allocation failing; bad arguments. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rec/topk.h"
#include "util/util.h"

struct problem {
    int U, N, D, K;
    float *users, *items, *bias;
    int64_t *excl_off;
    int32_t *excl;
    uint8_t *allow;
    struct topk_filter filter;
    int use_filter;
};

/* multiples of 1/4 in [-2, 2]: products and sums stay exact in float */
static float grid(struct rng *r) { return (float)((int)rng_below(r, 17) - 8) / 4.0f; }

static float *fill(struct rng *r, size_t n, int exact)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = exact ? grid(r) : rng_normal(r);
    return p;
}

/* excl_frac: share of items each user has excluded (sorted, distinct);
 * allow_frac: share of items allowed (1: no mask). */
static void make(struct problem *p, uint64_t seed, int U, int N, int D, int K, int exact,
                 int with_bias, double excl_frac, double allow_frac)
{
    struct rng r;
    rng_seed(&r, seed);
    memset(p, 0, sizeof *p);
    p->U = U, p->N = N, p->D = D, p->K = K;
    p->users = fill(&r, (size_t)U * D, exact);
    p->items = fill(&r, (size_t)N * D, exact);
    if (with_bias) p->bias = fill(&r, (size_t)N, exact);
    if (excl_frac > 0) {
        p->excl_off = malloc(((size_t)U + 1) * sizeof *p->excl_off);
        p->excl = malloc(((size_t)U * N + 1) * sizeof *p->excl);
        assert_non_null(p->excl_off);
        assert_non_null(p->excl);
        int64_t n = 0;
        for (int u = 0; u < U; u++) {
            p->excl_off[u] = n;
            /* user u excludes a random share, and user 0 nearly everything */
            double f = u == 0 ? 0.999 : excl_frac * rng_uniform(&r) * 2;
            for (int j = 0; j < N; j++)
                if (rng_uniform(&r) < f) p->excl[n++] = j;
        }
        p->excl_off[U] = n;
        p->filter.excl_off = p->excl_off;
        p->filter.excl = p->excl;
        p->use_filter = 1;
    }
    if (allow_frac < 1) {
        p->allow = malloc(N ? (size_t)N : 1);
        assert_non_null(p->allow);
        for (int j = 0; j < N; j++) p->allow[j] = rng_uniform(&r) < allow_frac;
        p->filter.allow = p->allow;
        p->use_filter = 1;
    }
}

static void drop(struct problem *p)
{
    free(p->users), free(p->items), free(p->bias);
    free(p->excl_off), free(p->excl), free(p->allow);
}

struct result {
    int32_t *item;
    float *score;
};

static struct result run(const struct problem *p, int naive)
{
    size_t n = (size_t)p->U * p->K;
    struct result r = {malloc((n ? n : 1) * sizeof(int32_t)), malloc((n ? n : 1) * sizeof(float))};
    assert_non_null(r.item);
    assert_non_null(r.score);
    const struct topk_filter *f = p->use_filter ? &p->filter : NULL;
    int rc = (naive ? topk_dot_naive : topk_dot)(p->users, p->U, p->items, p->N, p->D, p->bias,
                                                  p->K, f, r.item, r.score);
    assert_int_equal(rc, PT_OK);
    return r;
}

static void result_free(struct result *r) { free(r->item), free(r->score); }

static void assert_same(const struct problem *p, struct result a, struct result b)
{
    for (size_t i = 0; i < (size_t)p->U * p->K; i++) {
        if (a.item[i] != b.item[i] || !(a.score[i] == b.score[i]))
            fail_msg("U %d N %d D %d K %d: user %zu rank %zu: item %d score %.9g, want item %d "
                     "score %.9g",
                     p->U, p->N, p->D, p->K, i / (size_t)p->K, i % (size_t)p->K, (int)a.item[i],
                     (double)a.score[i], (int)b.item[i], (double)b.score[i]);
    }
}

/* Every returned item passes the filter, appears once, and rows are in
 * (score desc, index asc) order with -1 only at the end. */
static void assert_valid(const struct problem *p, struct result a)
{
    for (int u = 0; u < p->U; u++) {
        const int32_t *it = a.item + (size_t)u * p->K;
        const float *sc = a.score + (size_t)u * p->K;
        for (int i = 0; i < p->K; i++) {
            if (it[i] < 0) {
                assert_int_equal(it[i], -1);
                assert_true(isinf(sc[i]) && sc[i] < 0);
                if (i + 1 < p->K) assert_int_equal(it[i + 1], -1);
                continue;
            }
            assert_true(it[i] < p->N);
            if (p->allow) assert_true(p->allow[it[i]]);
            if (p->excl_off)
                for (int64_t e = p->excl_off[u]; e < p->excl_off[u + 1]; e++)
                    assert_true(p->excl[e] != it[i]);
            if (i > 0 && it[i - 1] >= 0)
                assert_true(sc[i - 1] > sc[i] || (sc[i - 1] == sc[i] && it[i - 1] < it[i]));
        }
    }
}

static void check_exact(uint64_t seed, int U, int N, int D, int K, int with_bias, double excl,
                        double allow)
{
    struct problem p;
    make(&p, seed, U, N, D, K, 1, with_bias, excl, allow);
    struct result got = run(&p, 0), want = run(&p, 1);
    assert_valid(&p, want);
    assert_same(&p, got, want);
    result_free(&got), result_free(&want);
    drop(&p);
}

static void test_shapes(void **state)
{
    (void)state;
    /* seed, U, N, D, K, bias, exclusion share, allowed share */
    check_exact(1, 1, 1, 1, 1, 0, 0, 1);
    check_exact(2, 3, 10, 1, 1, 0, 0, 1);         /* D = 1 */
    check_exact(3, 5, 7, 3, 20, 0, 0, 1);         /* K > N */
    check_exact(4, 300, 5000, 64, 10, 0, 0, 1);   /* not block multiples */
    check_exact(5, TOPK_USER_BLOCK + 1, TOPK_ITEM_BLOCK + 1, 8, 100, 0, 0, 1);
    check_exact(6, 2 * TOPK_USER_BLOCK, 2 * TOPK_ITEM_BLOCK, 16, 1, 0, 0, 1); /* multiples */
    check_exact(7, 40, 3000, 64, 1000, 0, 0, 1);  /* large K */
    check_exact(8, 10, 500, 0, 30, 1, 0, 1);      /* D = 0: bias only */
    check_exact(9, 4, 9000, 2, 50, 0, 0, 1);      /* D = 2: huge tie groups across blocks */
    check_exact(10, 2, 0, 8, 5, 1, 0, 1);         /* N = 0 */
    check_exact(11, 0, 100, 8, 5, 1, 0, 1);       /* U = 0 */
    check_exact(12, 3, 100, 8, 0, 1, 0, 1);       /* K = 0 */
    check_exact(13, 2, 10, 4, 100000, 1, 0, 1);   /* K far above N: scratch follows N */
}

static void test_bias_filters(void **state)
{
    (void)state;
    check_exact(20, 300, 5000, 64, 10, 1, 0, 1);
    check_exact(21, 300, 5000, 32, 25, 1, 0.05, 1);     /* exclusions */
    check_exact(22, 300, 5000, 32, 25, 1, 0, 0.3);      /* allow mask */
    check_exact(23, 270, 9000, 16, 100, 1, 0.2, 0.5);   /* both, heavy */
    check_exact(24, 7, 20000, 16, 40, 1, 0.01, 0.9);    /* small batch: catalogue split */
    check_exact(25, 1, 12000, 64, 7, 0, 0.3, 0.6);
    check_exact(26, 20, 300, 4, 300, 1, 0.3, 0.5);      /* most rows end in -1 padding */
}

/* Every scan kernel this CPU runs (plain C, AVX2, AVX-512) gives the
 * oracle's answer, with and without bias and filters, on rows whose length
 * is not a multiple of any vector width. */
static void test_kernels(void **state)
{
    (void)state;
    for (int k = TOPK_SCAN_C; k <= TOPK_SCAN_AVX512; k++) {
        int got = topk_scan_kernel(k);
        assert_true(got <= k);
        check_exact(80 + k, 300, 5000 + 37, 16, 25, 1, 0.05, 0.7);
        check_exact(90 + k, 100, 3000 + 13, 64, 10, 0, 0, 1);
        check_exact(100 + k, 5, 2000 + 5, 8, 3, 1, 0, 1);
    }
    assert_true(topk_scan_kernel(TOPK_SCAN_AUTO) >= TOPK_SCAN_C);
}

/* Scores sorted by item (every item beats the last: the candidate buffer
 * fills and is cut again and again), reverse-sorted (nothing after the
 * first K), all equal (ties only: the K lowest indices), and a shuffle of
 * adjacent floats 1 + r 2^-23 (a threshold one ulp too high loses items).
 * D = 0, so the score is the bias alone. */
static void test_sorted_scores(void **state)
{
    (void)state;
    const int Ks[] = {1, 10, 100, 1000};
    for (int order = 0; order < 4; order++) {
        for (size_t ki = 0; ki < PT_ARRAY_LEN(Ks); ki++) {
            struct problem p;
            make(&p, 110, 3, 5000, 0, Ks[ki], 1, 1, 0, 1);
            int32_t *perm = malloc((size_t)p.N * sizeof *perm);
            assert_non_null(perm);
            struct rng r;
            rng_seed(&r, 111);
            for (int j = 0; j < p.N; j++) perm[j] = j;
            rng_shuffle_i32(&r, perm, (size_t)p.N);
            for (int j = 0; j < p.N; j++)
                p.bias[j] = order == 0   ? 0.25f * (float)j
                            : order == 1 ? -0.25f * (float)j
                            : order == 2 ? 1.0f
                                         : 1.0f + ldexpf((float)perm[j], -23);
            struct result got = run(&p, 0), want = run(&p, 1);
            assert_same(&p, got, want);
            for (int i = 0; i < p.K; i++) {
                if (order == 3)
                    assert_int_equal(perm[got.item[i]], p.N - 1 - i);
                else
                    assert_int_equal(got.item[i], order == 0 ? p.N - 1 - i : i);
            }
            free(perm);
            result_free(&got), result_free(&want);
            drop(&p);
        }
    }
}

/* Continuous factors: the GEMM and the oracle round differently, so scores
 * agree within 1e-4 relative and an item may differ from the oracle's only
 * where the oracle has a near-equal score at that rank. */
static void test_continuous(void **state)
{
    (void)state;
    struct problem p;
    make(&p, 30, 300, 10000, 64, 50, 0, 1, 0.01, 0.8);
    struct result got = run(&p, 0), want = run(&p, 1);
    assert_valid(&p, got);
    int swaps = 0;
    for (size_t i = 0; i < (size_t)p.U * p.K; i++) {
        double tol = 1e-4 * fmax(1.0, fabs((double)want.score[i]));
        if (fabs((double)got.score[i] - (double)want.score[i]) > tol)
            fail_msg("rank %zu: score %.9g, want %.9g", i, (double)got.score[i],
                     (double)want.score[i]);
        if (got.item[i] != want.item[i]) swaps++;
    }
    assert_true(swaps <= 2); /* near-ties only; the seed has none or almost none */
    result_free(&got), result_free(&want);
    drop(&p);
}

/* Item rows duplicated: identical scores, so the lower index must come
 * first and a copy may only appear after its original. */
static void test_duplicates(void **state)
{
    (void)state;
    for (int exact = 0; exact <= 1; exact++) {
        struct problem p;
        make(&p, 40 + exact, 100, 6000, 64, 60, exact, 0, 0, 1);
        /* item j copies item j % 500 for j >= 500 (a few items, many copies) */
        for (int j = 500; j < p.N; j++)
            memcpy(p.items + (size_t)j * p.D, p.items + (size_t)(j % 500) * p.D,
                   (size_t)p.D * sizeof(float));
        struct result got = run(&p, 0), want = run(&p, 1);
        assert_valid(&p, got);
        for (int u = 0; u < p.U; u++) {
            const int32_t *it = got.item + (size_t)u * p.K;
            /* the original's copies are contiguous in rank after it */
            for (int i = 1; i < p.K; i++)
                if (it[i] % 500 == it[i - 1] % 500) assert_true(it[i] == it[i - 1] + 500);
            assert_true(it[0] < 500);
        }
        if (exact) assert_same(&p, got, want);
        result_free(&got), result_free(&want);
        drop(&p);
    }
}

/* NaN scores are skipped by both; -INFINITY scores are real scores that
 * rank last but before the -1 padding. */
static void test_nonfinite(void **state)
{
    (void)state;
    struct problem p;
    make(&p, 50, 5, 300, 8, 300, 1, 1, 0, 1);
    for (int j = 0; j < p.N; j += 7) p.bias[j] = -INFINITY;
    for (int j = 3; j < p.N; j += 11) p.items[(size_t)j * p.D] = NAN;
    struct result got = run(&p, 0), want = run(&p, 1);
    assert_same(&p, got, want);
    int nan_rows = 0, ninf = 0;
    for (int j = 3; j < p.N; j += 11) nan_rows++;
    for (int i = 0; i < p.K; i++) {
        if (got.item[i] >= 0) assert_true(got.item[i] % 11 != 3);
        ninf += got.item[i] >= 0 && isinf(got.score[i]);
    }
    assert_int_equal(got.item[p.K - nan_rows - 1] >= 0, 1);
    assert_int_equal(got.item[p.K - nan_rows], -1);
    assert_true(ninf > 0);
    result_free(&got), result_free(&want);
    drop(&p);
}

/* 1 and 2 threads give the same bits, with and without the catalogue split
 * (which only happens when there are fewer user blocks than threads). */
static void test_threads(void **state)
{
    (void)state;
    int before = pt_get_threads();
    const int shapes[][4] = {{3 * TOPK_USER_BLOCK + 5, 9000, 64, 100}, {3, 30000, 64, 100}};
    for (size_t s = 0; s < PT_ARRAY_LEN(shapes); s++) {
        struct problem p;
        make(&p, 60 + s, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], 0, 1, 0.01, 0.9);
        pt_set_threads(1);
        struct result one = run(&p, 0);
        pt_set_threads(2);
        struct result two = run(&p, 0);
        pt_set_threads(before);
        assert_same(&p, two, one);
        result_free(&one), result_free(&two);
        drop(&p);
    }
}

static void test_bad_args(void **state)
{
    (void)state;
    float x[4] = {1, 2, 3, 4};
    int32_t it[4];
    assert_int_equal(topk_dot(x, -1, x, 2, 2, NULL, 1, NULL, it, NULL), PT_EINVAL);
    assert_int_equal(topk_dot(x, 1, x, 2, 2, NULL, -1, NULL, it, NULL), PT_EINVAL);
    assert_int_equal(topk_dot(x, 1, NULL, 2, 2, NULL, 1, NULL, it, NULL), PT_EINVAL);
    assert_int_equal(topk_dot(x, 1, x, 2, 2, NULL, 1, NULL, NULL, NULL), PT_EINVAL);
    const int64_t off[] = {0, 2};
    const int32_t unsorted[] = {1, 0};
    struct topk_filter f = {off, unsorted, NULL};
    assert_int_equal(topk_dot(x, 1, x, 2, 2, NULL, 1, &f, it, NULL), PT_EINVAL);
    assert_int_equal(topk_dot_naive(x, 1, x, 2, 2, NULL, 1, &f, it, NULL), PT_EINVAL);
    const int64_t backwards[] = {2, 0};
    f.excl_off = backwards;
    assert_int_equal(topk_dot(x, 1, x, 2, 2, NULL, 1, &f, it, NULL), PT_EINVAL);
    /* out_score NULL is fine */
    const int32_t sorted[] = {0, 1};
    f.excl_off = off, f.excl = sorted;
    assert_int_equal(topk_dot(x, 1, x, 2, 2, NULL, 2, &f, it, NULL), PT_OK);
    assert_int_equal(it[0], -1);
    assert_int_equal(it[1], -1);
}

/* The k-th allocation failing gives PT_ENOMEM and no leak (ASan checks),
 * for the plain and the split layout and for the oracle. */
static void test_alloc_failures(void **state)
{
    (void)state;
    const int shapes[][4] = {{TOPK_USER_BLOCK + 3, 5000, 16, 20}, {3, 20000, 16, 20}};
    for (size_t s = 0; s < PT_ARRAY_LEN(shapes); s++) {
        struct problem p;
        make(&p, 70 + s, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], 1, 1, 0.01, 0.9);
        struct result want = run(&p, 1);
        for (int naive = 0; naive <= 1; naive++) {
            int failures = 0;
            for (long k = 1;; k++) {
                struct result got = {calloc((size_t)p.U * p.K, sizeof(int32_t)),
                                     calloc((size_t)p.U * p.K, sizeof(float))};
                pt_alloc_fail_at(k);
                int rc = (naive ? topk_dot_naive : topk_dot)(p.users, p.U, p.items, p.N, p.D,
                                                              p.bias, p.K, &p.filter, got.item,
                                                              got.score);
                long made = pt_alloc_count();
                pt_alloc_fail_at(0);
                if (rc == PT_OK) {
                    assert_true(made < k);
                    assert_same(&p, got, want);
                    result_free(&got);
                    break;
                }
                assert_int_equal(rc, PT_ENOMEM);
                failures++;
                result_free(&got);
            }
            assert_true(failures >= 1);
        }
        result_free(&want);
        drop(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),     cmocka_unit_test(test_bias_filters),
        cmocka_unit_test(test_continuous), cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_nonfinite),  cmocka_unit_test(test_threads),
        cmocka_unit_test(test_bad_args),   cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_kernels),    cmocka_unit_test(test_sorted_scores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
