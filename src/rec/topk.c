/* topk.c: exact top-K retrieval by inner product (topk.h).
 *
 * Users are cut into blocks of UB rows and the catalogue into blocks of NB
 * items; each (user block, item block) score tile comes from one nn_sgemm
 * call and is scanned right after, so nothing of size U × N exists. Each
 * user keeps a candidate buffer and a threshold, the score of its K-th best
 * so far; the scan (the hot loop, vectorised) compares scores plus bias
 * against the threshold and stops only at items that beat it. Once a user
 * has K candidates few scores do (about K ln(N/K) of N for random data), so
 * the scan is one compare pass over the tile and the GEMM is what costs.
 *
 * Why a buffer and not a K-heap: a user's candidates are touched about once
 * per tile, long after the tile streaming has pushed them out of L1/L2, and a
 * heap replacement walks log2(K) dependent cache lines (measured: as long
 * as the scan itself). Appending is one store; when the buffer fills (2K),
 * a branch-free quickselect keeps the K best and raises the threshold.
 *
 * Threads: work items are (user block, item split) pairs taken from a shared
 * counter by one worker per thread, each with its own tile and buffers. The
 * catalogue is only split (candidates merged at the end) when there are
 * fewer user blocks than threads, i.e. small batches; otherwise each user
 * block is one work item and writes its rows of the output directly. Inside
 * the parallel loop nn_sgemm runs on the calling thread (oneDNN opens no
 * nested team inside an active OpenMP region); with one worker it may use
 * all threads itself.
 *
 * Order: higher score first, then lower item index, everywhere (selection,
 * merge, oracle), so results do not depend on blocking, kernel or threads.
 * Within a work item items arrive in increasing index, so an item whose
 * score equals the threshold loses to the K kept ones: `score > thr` is the
 * exact test. NaN scores are never returned (treated as filtered out).
 *
 * Deliberately not here: approximate search (no pruning that can miss an
 * item), other similarity measures, and sharding the catalogue across calls.
 *
 * Dims: U users, N items, D factor width, K results per user; UB, NB block
 * sizes (TOPK_USER_BLOCK, TOPK_ITEM_BLOCK in topk.h); CAP buffer entries. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "rec/topk.h"
#include "util/util.h"

/* Scores tested per step of the plain-C scan: one OR of compares over CHUNK
 * floats, then per-item work only when it hits. */
enum { CHUNK = 64 };

struct cand {
    float s;
    int32_t j;
};

/* a ranks below b: lower score, or the same score and a higher index */
static inline int worse(struct cand a, struct cand b)
{
    return a.s < b.s || (a.s == b.s && a.j > b.j);
}

/* Scores as unsigned keys in the same order (-0.0 folded into +0.0, which
 * compares equal to it as a float), for the radix selection below. */
static inline uint32_t key_of(float s)
{
    uint32_t u;
    s += 0.0f;
    memcpy(&u, &s, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static inline float score_of(uint32_t k)
{
    uint32_t u = k & 0x80000000u ? k & 0x7fffffffu : ~k;
    float s;
    memcpy(&s, &u, sizeof s);
    return s;
}

/* The k-th largest of a[0..n) (1 <= k <= n); a and b are scratch of n.
 * Quickselect with branch-free three-way partitions (each key is written to
 * both ends, the counts decide which copy stays): the comparisons of a
 * branching partition mispredict about half the time on random scores. */
static uint32_t kth_largest(uint32_t *a, uint32_t *b, int n, int k)
{
    while (n > 16) {
        uint32_t x = a[0], y = a[n / 2], z = a[n - 1], t;
        if (x > y) t = x, x = y, y = t;
        uint32_t piv = z < x ? x : z > y ? y : z; /* median of three */
        int gt = 0, lt = 0;
        for (int i = 0; i < n; i++) {
            uint32_t v = a[i];
            b[gt] = v;
            b[n - 1 - lt] = v;
            gt += v > piv;
            lt += v < piv;
        }
        if (k <= gt) {
            n = gt;
        } else if (k <= n - lt) {
            return piv;
        } else {
            k -= n - lt;
            b += n - lt;
            n = lt;
        }
        uint32_t *s = a;
        a = b, b = s;
    }
    for (int i = 1; i < n; i++) /* insertion sort, descending */
        for (int j = i; j > 0 && a[j - 1] < a[j]; j--) {
            uint32_t t = a[j];
            a[j] = a[j - 1], a[j - 1] = t;
        }
    return a[k - 1];
}

/* Keeps the K best of c[0..n) (K < n), in their order, and returns the
 * K-th best score. c must be in increasing item order (appends within a
 * work item are), so among scores equal to the K-th the first ones are the
 * lower indices that win the tie. tmp: 2n keys. */
static float compact(struct cand *c, int n, int K, uint32_t *tmp)
{
    for (int i = 0; i < n; i++) tmp[i] = key_of(c[i].s);
    uint32_t t = kth_largest(tmp, tmp + n, n, K);
    int gt = 0;
    for (int i = 0; i < n; i++) gt += key_of(c[i].s) > t;
    int kept = 0, eq = 0; /* keep all above t and the first K - gt equal to it */
    for (int i = 0; i < n; i++) {
        uint32_t key = key_of(c[i].s);
        int keep = key > t || (key == t && eq < K - gt);
        eq += key == t;
        c[kept] = c[i];
        kept += keep;
    }
    return score_of(t);
}

/* Min-heap on `worse` (root = worst), for the final sort only. */
static void sift_down(struct cand *h, int n, int i)
{
    struct cand x = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && worse(h[c + 1], h[c])) c++;
        if (!worse(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

/* The K best of c[0..n), best first, into K output slots padded with
 * -1 / -INFINITY. Sorts c (n is at most a few K, once per user). */
static void emit(struct cand *c, int n, int K, int32_t *item, float *score)
{
    /* heap sort: the worst goes to the end each time, so c ends best first */
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(c, n, i);
    for (int m = n; m > 1; m--) {
        struct cand t = c[0];
        c[0] = c[m - 1];
        c[m - 1] = t;
        sift_down(c, m - 1, 0);
    }
    for (int i = 0; i < K; i++) {
        item[i] = i < n ? c[i].j : -1;
        if (score) score[i] = i < n ? c[i].s : -INFINITY;
    }
}

/* One user's view of the filter while its items are visited in increasing
 * order: the exclusion list is walked by a cursor, never searched. */
struct row_filter {
    const int32_t *excl;
    int64_t cur, end;
    const uint8_t *allow;
};

static inline int row_passes(struct row_filter *f, int32_t j)
{
    if (f->allow && !f->allow[j]) return 0;
    while (f->cur < f->end && f->excl[f->cur] < j) f->cur++;
    return !(f->cur < f->end && f->excl[f->cur] == j);
}

/* First index in excl[lo, hi) that is >= j. */
static int64_t lower_bound(const int32_t *excl, int64_t lo, int64_t hi, int32_t j)
{
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (excl[mid] < j)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* One user within a work item: candidates c[0..n) (n < cap); once `full`
 * (K candidates seen), thr is the K-th best score among them, or a lower
 * one, and only scores above it are kept. */
struct row {
    struct cand *c;
    int n, full;
    float thr;
    struct row_filter f;
};

/* The slow path for one score: filter, append, and when the buffer is full
 * keep the K best and raise the threshold. */
static void consider(struct row *r, int K, int cap, uint32_t *tmp, float v, int32_t j)
{
    if (v != v || !row_passes(&r->f, j)) return; /* NaN or filtered out */
    r->c[r->n++] = (struct cand){v, j};
    if (r->n == cap) {
        r->thr = compact(r->c, cap, K, tmp);
        r->n = K;
    } else if (r->n == K && !r->full) {
        r->full = 1;
        r->thr = r->c[0].s;
        for (int i = 1; i < K; i++) r->thr = r->c[i].s < r->thr ? r->c[i].s : r->thr;
    }
}

/* The hot loop: next_above(s, b, i, n, thr) is the first k in [i, n) with
 * s[k] (+ b[k] when b) > thr, or n. Chunks are tested with compares, not a
 * max, so a NaN fails the test exactly as it does per item. The plain-C
 * version is the reference and the fallback; on x86-64 the AVX2 and AVX-512
 * versions are compiled with target attributes (the build itself targets
 * baseline x86-64, where the loop would be SSE at best) and picked once per
 * call. All three return the same k: each element is one IEEE add and
 * compare at any width. */
typedef int (*next_fn)(const float *s, const float *b, int i, int n, float thr);

static int next_above_c(const float *restrict s, const float *restrict b, int i, int n, float thr)
{
    for (; i + CHUNK <= n; i += CHUNK) {
        int hit = 0;
        if (b)
            for (int c = i; c < i + CHUNK; c++) hit |= s[c] + b[c] > thr;
        else
            for (int c = i; c < i + CHUNK; c++) hit |= s[c] > thr;
        if (hit) break;
    }
    for (; i < n; i++)
        if ((b ? s[i] + b[i] : s[i]) > thr) return i;
    return n;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TOPK_X86 1
#include <immintrin.h>

__attribute__((target("avx2"))) static inline __m256 load8(const float *s, const float *b, int i)
{
    __m256 v = _mm256_loadu_ps(s + i);
    return b ? _mm256_add_ps(v, _mm256_loadu_ps(b + i)) : v;
}

__attribute__((target("avx2"))) static int next_above_avx2(const float *s, const float *b, int i,
                                                           int n, float thr)
{
    const __m256 t = _mm256_set1_ps(thr);
    for (; i + 32 <= n; i += 32) {
        __m256 c0 = _mm256_cmp_ps(load8(s, b, i), t, _CMP_GT_OQ);
        __m256 c1 = _mm256_cmp_ps(load8(s, b, i + 8), t, _CMP_GT_OQ);
        __m256 c2 = _mm256_cmp_ps(load8(s, b, i + 16), t, _CMP_GT_OQ);
        __m256 c3 = _mm256_cmp_ps(load8(s, b, i + 24), t, _CMP_GT_OQ);
        __m256 any = _mm256_or_ps(_mm256_or_ps(c0, c1), _mm256_or_ps(c2, c3));
        if (_mm256_testz_ps(any, any)) continue;
        uint32_t m0 = (uint32_t)_mm256_movemask_ps(c0), m1 = (uint32_t)_mm256_movemask_ps(c1);
        uint32_t m2 = (uint32_t)_mm256_movemask_ps(c2), m3 = (uint32_t)_mm256_movemask_ps(c3);
        uint32_t m = m0 | m1 << 8 | m2 << 16 | m3 << 24;
        return i + __builtin_ctz(m);
    }
    return next_above_c(s, b, i, n, thr);
}

__attribute__((target("avx512f"))) static inline __mmask16 above16(const float *s, const float *b,
                                                                   int i, __m512 t)
{
    __m512 v = _mm512_loadu_ps(s + i);
    if (b) v = _mm512_add_ps(v, _mm512_loadu_ps(b + i));
    return _mm512_cmp_ps_mask(v, t, _CMP_GT_OQ);
}

__attribute__((target("avx512f"))) static int next_above_avx512(const float *s, const float *b,
                                                               int i, int n, float thr)
{
    const __m512 t = _mm512_set1_ps(thr);
    for (; i + 64 <= n; i += 64) {
        __mmask16 k0 = above16(s, b, i, t), k1 = above16(s, b, i + 16, t);
        __mmask16 k2 = above16(s, b, i + 32, t), k3 = above16(s, b, i + 48, t);
        if (!(k0 | k1 | k2 | k3)) continue;
        uint64_t m = (uint64_t)k0 | (uint64_t)k1 << 16 | (uint64_t)k2 << 32 | (uint64_t)k3 << 48;
        return i + __builtin_ctzll(m);
    }
    for (; i + 16 <= n; i += 16) {
        __mmask16 k = above16(s, b, i, t);
        if (k) return i + __builtin_ctz(k);
    }
    return next_above_c(s, b, i, n, thr);
}
#endif

/* TOPK_SCAN_* of the kernels this CPU runs, best last. */
static int scan_best(void)
{
#ifdef TOPK_X86
    if (__builtin_cpu_supports("avx512f")) return TOPK_SCAN_AVX512;
    if (__builtin_cpu_supports("avx2")) return TOPK_SCAN_AVX2;
#endif
    return TOPK_SCAN_C;
}

static int scan_forced = TOPK_SCAN_AUTO;

int topk_scan_kernel(int which)
{
    int best = scan_best();
    scan_forced = which == TOPK_SCAN_AUTO || which > best ? TOPK_SCAN_AUTO : which;
    return scan_forced == TOPK_SCAN_AUTO ? best : scan_forced;
}

static next_fn scan_pick(void)
{
    int k = scan_forced == TOPK_SCAN_AUTO ? scan_best() : scan_forced;
#ifdef TOPK_X86
    if (k == TOPK_SCAN_AVX512) return next_above_avx512;
    if (k == TOPK_SCAN_AVX2) return next_above_avx2;
#endif
    (void)k;
    return next_above_c;
}

/* Offers scores s[0..n) (+ b[0..n) when b) of items j0.. to one user. */
static void scan_row(next_fn next, struct row *r, int K, int cap, uint32_t *tmp, const float *s,
                     const float *b, int n, int32_t j0)
{
    int i = 0;
    /* until K candidates: every passing item (so -INFINITY scores count too,
     * as in the oracle) */
    for (; i < n && !r->full; i++) consider(r, K, cap, tmp, b ? s[i] + b[i] : s[i], j0 + i);
    while ((i = next(s, b, i, n, r->thr)) < n) {
        consider(r, K, cap, tmp, b ? s[i] + b[i] : s[i], j0 + i);
        i++;
    }
}

/* Argument checks shared by the fast path and the oracle; exclusion lists
 * must be sorted because the scan walks them with a cursor. */
static int check_args(const float *users, int U, const float *items, int N, int D, int K,
                      const struct topk_filter *filter, const int32_t *out_item)
{
    if (U < 0 || N < 0 || D < 0 || K < 0)
        return pt_error(PT_EINVAL, "topk: negative size (U %d, N %d, D %d, K %d)", U, N, D, K);
    if ((U > 0 && D > 0 && !users) || (N > 0 && D > 0 && !items) || (U > 0 && K > 0 && !out_item))
        return pt_error(PT_EINVAL, "topk: NULL users, items or out_item");
    if (!filter || !filter->excl_off) return PT_OK;
    for (int u = 0; u < U; u++) {
        int64_t a = filter->excl_off[u], e = filter->excl_off[u + 1];
        if (a < 0 || e < a)
            return pt_error(PT_EINVAL, "topk: excl_off[%d..%d] = %lld, %lld is not a range", u,
                            u + 1, (long long)a, (long long)e);
        if (e > a && !filter->excl) return pt_error(PT_EINVAL, "topk: excl_off without excl");
        for (int64_t p = a + 1; p < e; p++)
            if (filter->excl[p] < filter->excl[p - 1])
                return pt_error(PT_EINVAL,
                                "topk: exclusion list of user %d not sorted ascending at %lld", u,
                                (long long)p);
    }
    return PT_OK;
}

static struct row_filter make_filter(const struct topk_filter *filter, int u, int32_t from)
{
    struct row_filter f = {NULL, 0, 0, filter ? filter->allow : NULL};
    if (filter && filter->excl_off) {
        f.excl = filter->excl;
        f.end = filter->excl_off[u + 1];
        f.cur = lower_bound(f.excl, filter->excl_off[u], f.end, from);
    }
    return f;
}

/* ---- the plain-loop oracle ---- */

static int cmp_cand(const void *pa, const void *pb)
{
    struct cand a = *(const struct cand *)pa, b = *(const struct cand *)pb;
    return worse(b, a) ? -1 : worse(a, b) ? 1 : 0;
}

int topk_dot_naive(const float *users, int U, const float *items, int N, int D, const float *bias,
                   int K, const struct topk_filter *filter, int32_t *out_item, float *out_score)
{
    int rc = check_args(users, U, items, N, D, K, filter, out_item);
    if (rc != PT_OK || U == 0 || K == 0) return rc;
    struct cand *all = pt_malloc((size_t)(N > 0 ? N : 1) * sizeof *all);
    uint8_t *excluded = pt_calloc((size_t)(N > 0 ? N : 1), 1);
    if (!all || !excluded) {
        pt_free(all);
        pt_free(excluded);
        return pt_error(PT_ENOMEM, "topk: out of memory");
    }
    const int64_t *off = filter ? filter->excl_off : NULL;
    const uint8_t *allow = filter ? filter->allow : NULL;
    for (int u = 0; u < U; u++) {
        if (off)
            for (int64_t p = off[u]; p < off[u + 1]; p++)
                if (filter->excl[p] >= 0 && filter->excl[p] < N) excluded[filter->excl[p]] = 1;
        const float *x = users + (size_t)u * D;
        int n = 0;
        for (int j = 0; j < N; j++) {
            if ((allow && !allow[j]) || excluded[j]) continue;
            double dot = 0.0;
            for (int d = 0; d < D; d++) dot += (double)x[d] * (double)items[(size_t)j * D + d];
            float v = (float)dot;
            if (bias) v += bias[j];
            if (v != v) continue;
            all[n++] = (struct cand){v, j};
        }
        qsort(all, (size_t)n, sizeof *all, cmp_cand);
        for (int i = 0; i < K; i++) {
            out_item[(size_t)u * K + i] = i < n ? all[i].j : -1;
            if (out_score) out_score[(size_t)u * K + i] = i < n ? all[i].s : -INFINITY;
        }
        if (off)
            for (int64_t p = off[u]; p < off[u + 1]; p++)
                if (filter->excl[p] >= 0 && filter->excl[p] < N) excluded[filter->excl[p]] = 0;
    }
    pt_free(all);
    pt_free(excluded);
    return PT_OK;
}

/* ---- the blocked path ---- */

struct plan {
    const float *users, *items, *bias;
    int U, N, D, K;
    const struct topk_filter *filter;
    int32_t *out_item;
    float *out_score;
    int ks;                  /* candidates kept per user: min(K, N) */
    int ub, nb, cap, splits; /* user block, item block, buffer entries, item splits */
    next_fn next;            /* scan kernel */
    struct cand *part;       /* splits > 1: [U, splits, ks] each split's best */
    int *part_n;             /* [U, splits] how many of them */
    atomic_int next_item;    /* next work item */
};

/* One worker's scratch: the score tile and one candidate buffer per user. */
struct worker {
    float *tile;       /* [ub, nb] */
    struct cand *cand; /* [ub, cap] */
    struct row *rows;  /* [ub] */
    uint32_t *keys;    /* [2 cap] compact's scratch */
};

static void run_item(struct plan *p, struct worker *w, int wi)
{
    int ub = p->ub, K = p->K, ks = p->ks, D = p->D, cap = p->cap;
    int u0 = (wi / p->splits) * ub, s = wi % p->splits;
    int ubc = p->U - u0 < ub ? p->U - u0 : ub;
    int lo = (int)((int64_t)p->N * s / p->splits), hi = (int)((int64_t)p->N * (s + 1) / p->splits);
    for (int r = 0; r < ubc; r++)
        w->rows[r] = (struct row){w->cand + (size_t)r * cap, 0, 0, -INFINITY,
                                  make_filter(p->filter, u0 + r, lo)};
    for (int j0 = lo; j0 < hi; j0 += p->nb) {
        int nbc = hi - j0 < p->nb ? hi - j0 : p->nb;
        nn_sgemm('N', 'T', ubc, nbc, D, 1.0f, p->users + (size_t)u0 * D, D,
                 p->items + (size_t)j0 * D, D, 0.0f, w->tile, nbc);
        const float *b = p->bias ? p->bias + j0 : NULL;
        for (int r = 0; r < ubc; r++)
            scan_row(p->next, &w->rows[r], ks, cap, w->keys, w->tile + (size_t)r * nbc, b, nbc, j0);
    }
    for (int r = 0; r < ubc; r++) {
        size_t u = (size_t)u0 + r;
        struct row *rw = &w->rows[r];
        if (p->splits == 1) {
            emit(rw->c, rw->n, K, p->out_item + u * K, p->out_score ? p->out_score + u * K : NULL);
        } else {
            if (rw->n > ks) compact(rw->c, rw->n, ks, w->keys);
            int n = rw->n > ks ? ks : rw->n;
            memcpy(p->part + (u * p->splits + s) * ks, rw->c, (size_t)n * sizeof *rw->c);
            p->part_n[u * p->splits + s] = n;
        }
    }
}

/* Users per block: at most TOPK_USER_BLOCK, the blocks a multiple of the
 * threads so they share the work evenly (3 blocks on 2 threads would leave
 * one idle a third of the time), a multiple of 16 rows for the GEMM, and at
 * least 64 rows: each block streams the whole catalogue from memory, and
 * below that the GEMM waits on it. */
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

int topk_dot(const float *users, int U, const float *items, int N, int D, const float *bias, int K,
             const struct topk_filter *filter, int32_t *out_item, float *out_score)
{
    int rc = check_args(users, U, items, N, D, K, filter, out_item);
    if (rc != PT_OK || U == 0 || K == 0) return rc;
    if (N == 0) {
        for (size_t i = 0; i < (size_t)U * K; i++) {
            out_item[i] = -1;
            if (out_score) out_score[i] = -INFINITY;
        }
        return PT_OK;
    }
    struct plan p = {.users = users, .items = items, .bias = bias, .U = U, .N = N, .D = D, .K = K,
                     .filter = filter, .out_item = out_item, .out_score = out_score,
                     .ks = K < N ? K : N, .nb = N < TOPK_ITEM_BLOCK ? N : TOPK_ITEM_BLOCK,
                     .splits = 1, .next = scan_pick()};
    /* 2 ks: a selection every ks appends or more; ks + 64 at least so a
     * small K does not select on every other append */
    p.cap = p.ks + (p.ks > 64 ? p.ks : 64);
    int nt = pt_get_threads();
    if (nt < 1) nt = 1;
    p.ub = user_block(U, nt);
    int ublocks = (U + p.ub - 1) / p.ub, iblocks = (N + p.nb - 1) / p.nb;
    /* Fewer user blocks than threads (small batches): split the catalogue
     * so every thread has work, at least one item block per split. */
    if (ublocks < nt) {
        p.splits = (nt + ublocks - 1) / ublocks;
        if (p.splits > iblocks) p.splits = iblocks;
    }
    int nwork = ublocks * p.splits;
    if (nt > nwork) nt = nwork;
    atomic_init(&p.next_item, 0);

    struct worker *w = pt_calloc((size_t)nt, sizeof *w);
    struct cand *merge = NULL;
    if (!w) return pt_error(PT_ENOMEM, "topk: out of memory");
    for (int t = 0; t < nt && rc == PT_OK; t++) {
        w[t].tile = pt_malloc((size_t)p.ub * p.nb * sizeof *w[t].tile);
        w[t].cand = pt_malloc((size_t)p.ub * p.cap * sizeof *w[t].cand);
        w[t].rows = pt_malloc((size_t)p.ub * sizeof *w[t].rows);
        w[t].keys = pt_malloc((size_t)2 * p.cap * sizeof *w[t].keys);
        if (!w[t].tile || !w[t].cand || !w[t].rows || !w[t].keys) rc = PT_ENOMEM;
    }
    if (rc == PT_OK && p.splits > 1) {
        p.part = pt_malloc((size_t)U * p.splits * p.ks * sizeof *p.part);
        p.part_n = pt_malloc((size_t)U * p.splits * sizeof *p.part_n);
        merge = pt_malloc((size_t)p.splits * p.ks * sizeof *merge);
        if (!p.part || !p.part_n || !merge) rc = PT_ENOMEM;
    }
    if (rc != PT_OK) {
        rc = pt_error(PT_ENOMEM, "topk: out of memory");
        goto done;
    }

    /* One worker per thread pulling work items from p.next_item: dynamic
     * scheduling without asking OpenMP for thread ids, and the same code
     * runs serially without OpenMP. */
#ifdef PT_HAVE_OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(nt)
#endif
    for (int t = 0; t < nt; t++)
        for (int wi; (wi = atomic_fetch_add(&p.next_item, 1)) < nwork;) run_item(&p, &w[t], wi);

    for (size_t u = 0; p.splits > 1 && u < (size_t)U; u++) {
        int n = 0;
        for (int s = 0; s < p.splits; s++) {
            int m = p.part_n[u * p.splits + s];
            memcpy(merge + n, p.part + (u * p.splits + s) * p.ks, (size_t)m * sizeof *merge);
            n += m;
        }
        emit(merge, n, K, out_item + u * K, out_score ? out_score + u * K : NULL);
    }

done:
    for (int t = 0; t < nt; t++) {
        pt_free(w[t].tile);
        pt_free(w[t].cand);
        pt_free(w[t].rows);
        pt_free(w[t].keys);
    }
    pt_free(w);
    pt_free(p.part);
    pt_free(p.part_n);
    pt_free(merge);
    return rc;
}
