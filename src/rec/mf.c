/* mf.c: matrix factorisation from implicit feedback, score(u, j) = U[u]·V[j]:
 *   bpr      -log σ(s_p - s_n), one or more uniform negatives (Rendle 2009)
 *   warp     hinge max(0, 1 - s_p + s_n) on the first violating negative of
 *            up to `negatives` draws, weighted by log of the estimated rank
 *            (Weston 2011)
 *   softmax  cross-entropy of the positive against `negatives` uniform
 *            sampled items (sampled softmax; uniform sampling needs no logQ
 *            correction)
 * Each is the mean over a batch of training pairs plus
 * l2 · (|U[u]|² + |V[p]|² + Σ|V[n]|²) / batch, stepped by Adam with lazy row
 * updates: the settings of bench/peers/torch_bpr.py (dim 64, lr 0.005, l2
 * 1e-4, batch 1024, 30 epochs, 1 negative, init N(0, 0.1²)). */
#include <math.h>
#include <string.h>

#include "rec/rec.h"
#include "train/optim.h"
#include "util/util.h"

struct rows {            /* the distinct rows a batch touches, with compact gradients */
    int32_t *row, *slot; /* row[k]; slot[r] = k, or -1 */
    float *g;            /* [n, D] */
    int n;
};

static int rows_init(struct rows *r, int32_t total, int cap, int D)
{
    r->row = pt_malloc((size_t)cap * sizeof *r->row);
    r->slot = pt_malloc((size_t)(total ? total : 1) * sizeof *r->slot);
    r->g = pt_calloc((size_t)cap * (size_t)D, sizeof *r->g);
    r->n = 0;
    if (!r->row || !r->slot || !r->g) return PT_ENOMEM;
    for (int32_t i = 0; i < total; i++) r->slot[i] = -1;
    return PT_OK;
}

static void rows_free(struct rows *r) { pt_free(r->row), pt_free(r->slot), pt_free(r->g); }

static inline float *rows_grad(struct rows *r, int32_t row, int D)
{
    int32_t k = r->slot[row];
    if (k < 0) {
        k = r->slot[row] = r->n++;
        r->row[k] = row;
    }
    return r->g + (size_t)k * D;
}

/* base: the table interleaved by row, [w | m | v] of D each */
static void rows_step(struct rows *r, const struct optim *o, float *base, int D)
{
    optim_update_rows_interleaved(o, base, 3 * (int64_t)D, r->g, r->row, r->n, D);
    for (int k = 0; k < r->n; k++) r->slot[r->row[k]] = -1;
    r->n = 0;
}

/* 16 partial sums, so that the loop vectorises without reassociation flags */
static inline float dot(const float *restrict a, const float *restrict b, int D)
{
    float acc[16] = {0};
    int d = 0;
    for (; d + 16 <= D; d += 16)
        for (int k = 0; k < 16; k++) acc[k] += a[d + k] * b[d + k];
    float s = 0;
    for (; d < D; d++) s += a[d] * b[d];
    for (int k = 0; k < 16; k++) s += acc[k];
    return s;
}

static inline void axpy(float *restrict y, float a, const float *restrict x, int D)
{
    for (int d = 0; d < D; d++) y[d] += a * x[d];
}

PT_VECTOR_CLONES int rec_mf_train(const struct rec_cfg *cfg, const struct rec_hist *h, int32_t N, struct rec_model *m)
{
    int32_t U = h->U;
    int D = cfg->dim, B = cfg->batch, K = cfg->negatives;
    int64_t P = h->off[U];
    m->U = U, m->N = N, m->D = D;
    size_t nu = (size_t)U * D, ni = (size_t)N * D;
    m->uf = pt_malloc((nu ? nu : 1) * sizeof(float));
    m->vf = pt_malloc((ni ? ni : 1) * sizeof(float));
    /* while training, each row holds its factors and both Adam moments side
     * by side: a batch touches a few thousand scattered rows, and one
     * contiguous stretch per row is what the memory system serves fastest */
    const int64_t LD = 3 * (int64_t)D;
    float *U3 = pt_calloc(3 * (nu ? nu : 1), sizeof(float)), *V3 = pt_calloc(3 * (ni ? ni : 1), sizeof(float));
    /* the training pairs themselves are shuffled, so a batch reads them in order */
    struct pair {
        int32_t u, i;
    } *pairs = pt_malloc((size_t)(P ? P : 1) * sizeof *pairs);
    int32_t *neg = pt_malloc((size_t)K * sizeof *neg);
    float *sn = pt_malloc((size_t)K * sizeof *sn), *gu = pt_malloc((size_t)D * sizeof *gu);
    struct rows ru = {0}, ri = {0};
    int rc = PT_ENOMEM;
    if (!m->uf || !m->vf || !U3 || !V3 || !pairs || !neg || !sn || !gu ||
        rows_init(&ru, U, B, D) || rows_init(&ri, N, B * (1 + K), D))
        goto out;
    struct rng g;
    rng_seed(&g, cfg->seed);
    for (size_t k = 0; k < nu; k++) U3[k / D * LD + k % D] = 0.1f * rng_normal(&g);
    for (size_t k = 0; k < ni; k++) V3[k / D * LD + k % D] = 0.1f * rng_normal(&g);
    for (int32_t u = 0; u < U; u++)
        for (int64_t p = h->off[u]; p < h->off[u + 1]; p++) pairs[p].u = u, pairs[p].i = h->item[p];
    struct optim o;
    optim_init(&o, OPTIM_ADAM, (float)cfg->lr);
    float l2 = (float)cfg->l2;
    for (int ep = 0; ep < cfg->epochs; ep++) {
        for (int64_t p = P - 1; p > 0; p--) { /* Fisher-Yates */
            int64_t q = (int64_t)rng_below(&g, (uint64_t)p + 1);
            struct pair t = pairs[p];
            pairs[p] = pairs[q], pairs[q] = t;
        }
        double loss = 0;
        for (int64_t s0 = 0; s0 < P; s0 += B) {
            int b = P - s0 < B ? (int)(P - s0) : B;
            float inv = 1.0f / (float)b, c2 = 2 * l2 * inv;
            optim_begin_step(&o);
            for (int r = 0; r < b; r++) {
                int32_t u = pairs[s0 + r].u, it = pairs[s0 + r].i;
                const float *uv = U3 + (size_t)u * LD, *pv = V3 + (size_t)it * LD;
                float sp = dot(uv, pv, D);
                for (int k = 0; k < K; k++) neg[k] = (int32_t)rng_below(&g, (uint64_t)N);
                memset(gu, 0, (size_t)D * sizeof *gu);
                float *gp = rows_grad(&ri, it, D);
                if (cfg->model == REC_SOFTMAX) {
                    float mx = sp, z;
                    for (int k = 0; k < K; k++) {
                        sn[k] = dot(uv, V3 + (size_t)neg[k] * LD, D);
                        mx = sn[k] > mx ? sn[k] : mx;
                    }
                    z = expf(sp - mx);
                    for (int k = 0; k < K; k++) z += expf(sn[k] - mx);
                    float pp = expf(sp - mx) / z;
                    loss += -logf(pp > 1e-30f ? pp : 1e-30f);
                    float dp = (pp - 1) * inv;
                    axpy(gu, dp, pv, D);
                    axpy(gp, dp, uv, D);
                    for (int k = 0; k < K; k++) {
                        float dn = expf(sn[k] - mx) / z * inv;
                        const float *nv = V3 + (size_t)neg[k] * LD;
                        axpy(gu, dn, nv, D);
                        float *gn = rows_grad(&ri, neg[k], D);
                        axpy(gn, dn, uv, D);
                        axpy(gn, c2, nv, D);
                    }
                } else if (cfg->model == REC_WARP) {
                    int k = 0;
                    float s = 0;
                    for (; k < K; k++) {
                        s = dot(uv, V3 + (size_t)neg[k] * LD, D);
                        if (s > sp - 1) break;
                    }
                    if (k < K) {
                        /* estimated rank of the positive among N items, from the draws it took */
                        int64_t rank = (N - 1) / (k + 1);
                        float L = 0;
                        for (int64_t q = 1; q <= rank; q++) L += 1.0f / (float)q;
                        loss += L * (1 - sp + s);
                        float d = L * inv;
                        const float *nv = V3 + (size_t)neg[k] * LD;
                        axpy(gu, d, nv, D);
                        axpy(gu, -d, pv, D);
                        axpy(gp, -d, uv, D);
                        float *gn = rows_grad(&ri, neg[k], D);
                        axpy(gn, d, uv, D);
                        axpy(gn, c2, nv, D);
                    }
                } else { /* bpr */
                    for (int k = 0; k < K; k++) {
                        const float *nv = V3 + (size_t)neg[k] * LD;
                        float x = sp - dot(uv, nv, D);
                        /* one exp for both: e = exp(-|x|) gives 1 - σ(x) and -log σ(x) stably */
                        float e = expf(-fabsf(x));
                        float sg = x > 0 ? e / (1.0f + e) : 1.0f / (1.0f + e); /* 1 - σ(x) */
                        loss += (x > 0 ? 0.0f : -x) + logf(1.0f + e);
                        float d = -sg * inv / (float)K;
                        /* d/du = d (p - n); d/dp = d u; d/dn = -d u */
                        axpy(gu, d, pv, D);
                        axpy(gu, -d, nv, D);
                        axpy(gp, d, uv, D);
                        float *gn = rows_grad(&ri, neg[k], D);
                        axpy(gn, -d, uv, D);
                        axpy(gn, c2, nv, D);
                    }
                }
                axpy(gp, c2, pv, D);
                float *gU = rows_grad(&ru, u, D);
                axpy(gU, 1.0f, gu, D);
                axpy(gU, c2, uv, D);
            }
            rows_step(&ru, &o, U3, D);
            rows_step(&ri, &o, V3, D);
        }
        pt_log(PT_LOG_INFO, "epoch %d/%d: loss %.5f", ep + 1, cfg->epochs, P ? loss / (double)P : 0);
    }
    for (size_t k = 0; k < nu; k++) m->uf[k] = U3[k / D * LD + k % D];
    for (size_t k = 0; k < ni; k++) m->vf[k] = V3[k / D * LD + k % D];
    rc = PT_OK;
out:
    if (rc) rc = pt_error(PT_ENOMEM, "out of memory");
    pt_free(U3), pt_free(V3), pt_free(pairs), pt_free(neg), pt_free(sn), pt_free(gu);
    rows_free(&ru), rows_free(&ri);
    return rc;
}
