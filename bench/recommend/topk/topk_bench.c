/* topk_bench.c: exact top-K retrieval (topk_dot, src/rec/topk.c) of a
 * catalogue of N items with D-dim random factors, users/s on 1 and 2
 * threads, and where the time goes.
 *
 *   topk_bench [--users U] [--timed T] [--items N] [--dim D] [--k K] [--seed S]
 *              [--threads 1|2]
 *              (defaults 100000, 10000, 1000000, 64, 100, 1, 2; run.sh builds it)
 *
 * U users' factors are generated; the first T of them are timed (a run over
 * all 100,000 takes minutes on 2 cores; users are independent, so users/s
 * over T is the rate for U). Factors are N(0, 1/D), item bias N(0, 0.1).
 * Per thread count it times
 *   topk     topk_dot on T users (best of REPS)
 *   gemm     the same nn_sgemm calls alone: TOPK_USER_BLOCK users × TOPK_ITEM_BLOCK
 *            items per call, user blocks over threads, scores discarded
 * and prints users/s, the GEMM GFLOP/s (2·T·N·D flops / time), and the share
 * of topk time that is not GEMM (bias, scan, candidate buffers; no filters here).
 * The reference peak is nn_sgemm on a 2048^3 square product at 1 and 2
 * threads, as bench/gemm_peak measures it. Before timing, a few users are
 * checked against topk_dot_naive (scores within 1e-4).
 * Does not: time filters (exclusion lists, allow masks): they cost only for
 * items that beat a user's current K-th best. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "nn/nn.h"
#include "rec/topk.h"
#include "util/util.h"

enum { REPS = 3 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "topk_bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static float *normal(struct rng *r, size_t n, float sd)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = sd * rng_normal(r);
    return p;
}

/* topk_dot's user block (its static user_block, copied): at most
 * TOPK_USER_BLOCK rows, blocks a multiple of the threads, rows a multiple
 * of 16, at least 64. */
static int user_block(int U, int nt)
{
    int nblk = (U + TOPK_USER_BLOCK - 1) / TOPK_USER_BLOCK;
    nblk = (nblk + nt - 1) / nt * nt;
    int ub = (U + nblk - 1) / nblk;
    ub = (ub + 15) / 16 * 16;
    if (ub < 64) ub = 64;
    if (ub > TOPK_USER_BLOCK) ub = TOPK_USER_BLOCK;
    return ub < U ? ub : U;
}

/* The GEMMs of topk_dot alone, over the same tiles, user blocks shared
 * among threads as topk_dot shares them. */
static void gemm_only(const float *users, int U, const float *items, int N, int D, int nt)
{
    int ub = user_block(U, nt), nb = TOPK_ITEM_BLOCK < N ? TOPK_ITEM_BLOCK : N;
    int nblk = (U + ub - 1) / ub;
    float *tiles = xmalloc((size_t)nt * ub * nb * sizeof *tiles);
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (int b = 0; b < nblk; b++) {
        float *tile = tiles;
#ifdef _OPENMP
        tile += (size_t)omp_get_thread_num() * ub * nb;
#endif
        int u0 = b * ub, ubc = U - u0 < ub ? U - u0 : ub;
        for (int j0 = 0; j0 < N; j0 += nb) {
            int nbc = N - j0 < nb ? N - j0 : nb;
            nn_sgemm('N', 'T', ubc, nbc, D, 1.0f, users + (size_t)u0 * D, D,
                     items + (size_t)j0 * D, D, 0.0f, tile, nbc);
        }
    }
    free(tiles);
}

static double square_peak(int nt)
{
    const int n = 2048;
    struct rng r;
    rng_seed(&r, 7);
    float *A = normal(&r, (size_t)n * n, 1), *B = normal(&r, (size_t)n * n, 1);
    float *C = xmalloc((size_t)n * n * sizeof *C);
    pt_set_threads(nt);
    nn_sgemm('N', 'N', n, n, n, 1.0f, A, n, B, n, 0.0f, C, n); /* warm-up */
    double best = 1e30;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = now_s();
        for (int i = 0; i < 4; i++) nn_sgemm('N', 'N', n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        double dt = (now_s() - t0) / 4;
        if (dt < best) best = dt;
    }
    free(A), free(B), free(C);
    return 2.0 * n * n * (double)n / best * 1e-9;
}

static int check(const float *users, const float *items, int N, int D, const float *bias, int K)
{
    enum { CU = 3 };
    int32_t *gi = xmalloc(CU * (size_t)K * sizeof *gi), *wi = xmalloc(CU * (size_t)K * sizeof *wi);
    float *gs = xmalloc(CU * (size_t)K * sizeof *gs), *ws = xmalloc(CU * (size_t)K * sizeof *ws);
    int bad = 0, swaps = 0;
    if (topk_dot(users, CU, items, N, D, bias, K, NULL, gi, gs) != PT_OK ||
        topk_dot_naive(users, CU, items, N, D, bias, K, NULL, wi, ws) != PT_OK)
        bad = 1;
    for (int i = 0; !bad && i < CU * K; i++) {
        if (fabsf(gs[i] - ws[i]) > 1e-4f * fmaxf(1.0f, fabsf(ws[i]))) bad = 1;
        swaps += gi[i] != wi[i];
    }
    printf("# check vs topk_dot_naive on %d users: %s (%d near-tie swaps)\n", CU,
           bad ? "FAILED" : "ok", swaps);
    free(gi), free(wi), free(gs), free(ws);
    return bad;
}

int main(int argc, char **argv)
{
    int U = 100000, T = 10000, N = 1000000, D = 64, K = 100, maxt = 2;
    unsigned long seed = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--users")) U = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--timed")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--items")) N = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dim")) D = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--k")) K = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) maxt = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) seed = strtoul(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "topk_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (T > U) T = U;
    struct rng r;
    rng_seed(&r, seed);
    double t0 = now_s();
    float *users = normal(&r, (size_t)U * D, 1.0f / sqrtf((float)D));
    float *items = normal(&r, (size_t)N * D, 1.0f / sqrtf((float)D));
    float *bias = normal(&r, (size_t)N, 0.1f);
    int32_t *out_item = xmalloc((size_t)T * K * sizeof *out_item);
    float *out_score = xmalloc((size_t)T * K * sizeof *out_score);
    printf("# %d users (%d timed) x %d items x %d dims, top-%d, bias; tile %d users x %d items; "
           "nn_sgemm backend %s; data generated in %.1f s\n",
           U, T, N, D, K, TOPK_USER_BLOCK, TOPK_ITEM_BLOCK, nn_gemm_backend(), now_s() - t0);
    if (check(users, items, N, D, bias, K)) return 1;

    double peak[3] = {0, square_peak(1), square_peak(2)};
    double flop = 2.0 * T * (double)N * D;
    printf("%-7s %9s %8s %8s %9s %9s %9s %8s %8s %8s\n", "threads", "users/s", "topk_s", "gemm_s",
           "topk_GF/s", "gemm_GF/s", "peak_GF/s", "of_peak", "select%", "cpu/wall");
    for (int nt = 1; nt <= maxt && nt <= 2; nt++) {
        pt_set_threads(nt);
        double best = 1e30, gbest = 1e30, cpu = 0, wall = 0;
        for (int rep = 0; rep < REPS; rep++) {
            double c0 = cpu_s(), w0 = now_s();
            if (topk_dot(users, T, items, N, D, bias, K, NULL, out_item, out_score) != PT_OK) {
                fprintf(stderr, "topk_bench: topk_dot failed\n");
                return 1;
            }
            double dt = now_s() - w0;
            cpu += cpu_s() - c0, wall += dt;
            if (dt < best) best = dt;
            w0 = now_s();
            gemm_only(users, T, items, N, D, nt);
            dt = now_s() - w0;
            if (dt < gbest) gbest = dt;
        }
        double gf = flop / gbest * 1e-9;
        printf("%-7d %9.0f %8.2f %8.2f %9.1f %9.1f %9.1f %7.0f%% %7.0f%% %8.2f\n", nt, T / best,
               best, gbest, flop / best * 1e-9, gf, peak[nt], 100 * flop / best * 1e-9 / peak[nt],
               100 * (best - gbest) / best, cpu / wall / nt);
        fflush(stdout);
    }
    free(users), free(items), free(bias), free(out_item), free(out_score);
    return 0;
}
