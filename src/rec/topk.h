/* topk.h: exact top-K of user·item scores, by blocked matrix products and a
 * thresholded candidate buffer per user; the users × items matrix is never
 * materialised.
 *
 * Dims: U users asked, N items, D factor width, K results per user. */
#ifndef PT_TOPK_H
#define PT_TOPK_H

#include <stdint.h>

/* Which items a user may get. All members optional (NULL: no restriction). */
struct topk_filter {
    /* per asked user u: items excl[excl_off[u] .. excl_off[u+1]) are left out
     * (e.g. already bought); each user's list sorted ascending */
    const int64_t *excl_off;
    const int32_t *excl;
    const uint8_t *allow;     /* [N]: item j may be returned only when allow[j] */
};

/* Largest score tile: TOPK_USER_BLOCK users × TOPK_ITEM_BLOCK items, one
 * nn_sgemm call each (bench/recommend/topk times the GEMM part alone with
 * them; its README has the measurements behind the sizes). */
enum { TOPK_USER_BLOCK = 1024, TOPK_ITEM_BLOCK = 1024 };

/* For each user u in 0..U: the K items j with the highest
 * score(u, j) = users[u,:] · items[j,:] + (bias ? bias[j] : 0) that the filter
 * lets through, best first, into out_item[u*K .. u*K+K) and out_score (same
 * layout; may be NULL). Ties go to the lower item index. When fewer than K
 * items pass, the rest of the row is item -1, score -INFINITY.
 * users [U,D], items [N,D] row-major. Threads: pt_get_threads().
 * Items whose score is NaN are never returned.
 * Scratch per thread: one tile and 2 min(K, N) candidates per user of a
 * block (about 4 MiB + 16 KiB × min(K, N)), never U × N.
 * Returns PT_OK, PT_ENOMEM or PT_EINVAL (negative size, NULL array, an
 * exclusion range or list out of order). */
int topk_dot(const float *users, int U, const float *items, int N, int D, const float *bias, int K,
             const struct topk_filter *filter, int32_t *out_item, float *out_score);

/* Tests and benchmarks: which scan kernel topk_dot uses from now on, process
 * wide (not thread-safe; set it before calling). TOPK_SCAN_AUTO picks the
 * best this CPU runs; a kernel the CPU lacks falls back to the best it has.
 * Returns the kernel now in effect. All give the same results. */
enum { TOPK_SCAN_AUTO = -1, TOPK_SCAN_C = 0, TOPK_SCAN_AVX2 = 1, TOPK_SCAN_AVX512 = 2 };
int topk_scan_kernel(int which);

/* The plain-loop oracle: same contract, one user at a time, full sort. */
int topk_dot_naive(const float *users, int U, const float *items, int N, int D, const float *bias,
                   int K, const struct topk_filter *filter, int32_t *out_item, float *out_score);

#endif
