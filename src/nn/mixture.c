/* mixture.c: gated mixture of expert outputs (MMoE / PLE task towers' input).
 *
 * Dims: B batch rows, K experts, H expert output width; lde the row stride
 * of each expert's output (experts may live side by side in one wide
 * buffer, so lde >= H).
 * out[b,:] = sum_k g[b,k] * e_k[b,:]. The forward runs every batch on
 * [2048 x 128] blocks for 4-6 experts per task, so it is written as a
 * b, k, h loop nest whose inner loop is a contiguous axpy over one row
 * (vectorised by the compiler); the first expert assigns, so out needs no
 * clearing. No threads here: the caller's batch loop or the GEMMs around
 * it own the cores. Does not compute the gate (softmax.c does).
 * Models run all the gates of a level in one pass over the rows
 * (nn_mixture_forward_gates, nn_mixture_backward_gates); the single-gate
 * nn_mixture_forward and nn_mixture_backward (which adds into its experts'
 * gradients) are the layer the PyTorch fixtures and finite differences
 * check, and the reference the one-pass versions are tested against. */
#include "nn/nn.h"

/* out[B,H] = sum_k g[b,k] * es[k][b*lde + h]; g [B,K]; es[k] [B, lde >= H].
 * out must not alias an expert. K == 0 gives zeros. */
PT_VECTOR_CLONES void nn_mixture_forward(float *out, const float *const *es, int lde, const float *g, int B,
                                         int K, int H)
{
    for (int b = 0; b < B; b++) {
        float *restrict o = out + (size_t)b * H;
        const float *gb = g + (size_t)b * K;
        if (K <= 0) {
            for (int h = 0; h < H; h++) o[h] = 0.0f;
            continue;
        }
        const float *restrict e0 = es[0] + (size_t)b * lde;
        const float g0 = gb[0];
        for (int h = 0; h < H; h++) o[h] = g0 * e0[h];
        for (int k = 1; k < K; k++) {
            const float *restrict e = es[k] + (size_t)b * lde;
            const float gk = gb[k];
            for (int h = 0; h < H; h++) o[h] += gk * e[h];
        }
    }
}

/* out[b,:] of every gate of a level (nn.h): row by row, so that the
 * experts' rows are read from memory once for all the gates mixing them. */
PT_VECTOR_CLONES void nn_mixture_forward_gates(const float *const *es, int lde, int H, const struct nn_mix_gate *gates,
                                               int G, int B)
{
    for (int b = 0; b < B; b++) {
        size_t row = (size_t)b * lde;
        for (int i = 0; i < G; i++) {
            const struct nn_mix_gate *q = &gates[i];
            float *restrict o = q->out + (size_t)b * H;
            const float *gb = q->g + (size_t)b * q->K;
            if (q->K <= 0) {
                for (int h = 0; h < H; h++) o[h] = 0.0f;
                continue;
            }
            const float *restrict e0 = es[q->experts[0]] + row;
            const float g0 = gb[0];
            for (int h = 0; h < H; h++) o[h] = g0 * e0[h];
            for (int k = 1; k < q->K; k++) {
                const float *restrict e = es[q->experts[k]] + row;
                const float gk = gb[k];
                for (int h = 0; h < H; h++) o[h] += gk * e[h];
            }
        }
    }
}

/* <d, e> over n as 16 running float sums (lane j takes elements j, j+16,
 * ...), then the tail and the lanes added in double in a fixed order: the
 * same result at any vector width (given the same FMA contraction), and one
 * vector multiply-add per 16 elements. Each lane sums n/16 products (8 for
 * a 128-wide expert), so float keeps the gate gradient to about 1e-6; the
 * double version cost two conversions and a multiply and an add per 8. */
static inline double dot_lanes(const float *restrict d, const float *restrict e, int n)
{
    float acc[16] = {0};
    int h = 0;
    for (; h + 16 <= n; h += 16)
        for (int j = 0; j < 16; j++) acc[j] += d[h + j] * e[h + j];
    double s = 0.0;
    for (; h < n; h++) s += (double)d[h] * (double)e[h];
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

/* des[k][B, lde] += g[b,k] * dout[b,:] (first H columns of each row; NULL
 * entries skipped, e.g. an expert shared with no gradient wanted);
 * dg[B,K] += <dout[b,:], e_k[b,:]> (skipped if dg is NULL). dout [B,H]. */
PT_VECTOR_CLONES void nn_mixture_backward(float *const *des, float *dg, const float *dout, const float *const *es,
                         int lde, const float *g, int B, int K, int H)
{
    for (int b = 0; b < B; b++) {
        const float *restrict d = dout + (size_t)b * H;
        for (int k = 0; k < K; k++) {
            size_t row = (size_t)b * lde;
            if (des[k]) {
                float *restrict de = des[k] + row;
                const float gk = g[(size_t)b * K + k];
                for (int h = 0; h < H; h++) de[h] += gk * d[h];
            }
            if (dg) dg[(size_t)b * K + k] += (float)dot_lanes(d, es[k] + row, H);
        }
    }
}

/* des[e][b, 0:H] = sum over the gates that mix expert e of g[b,k] dout[b,:],
 * and each gate's dg; see nn.h. Row by row, so that an expert's gradient
 * row and output row stay in cache from one gate to the next: the gates
 * were separate passes over [B, H] blocks, each reading and writing every
 * expert's gradient after a pass that zeroed them. */
PT_VECTOR_CLONES void nn_mixture_backward_gates(float *const *des, const float *const *es, int lde, int H,
                                                const struct nn_mix_gate *gates, int G, int B,
                                                const struct nn_mix_relu *relu, int E)
{
    /* An expert packed as bf16 needs its float gradient row only until the
     * packing, so that row is made here in L1 instead of in des[e], which
     * nothing reads (on the large-vocab MMoE a step saved 4 MB of writes,
     * each a read for ownership too). */
    enum { ROWBUF = 4096 };
    float rowbuf[ROWBUF];
    int staged = relu && (size_t)E * (size_t)H <= ROWBUF;
    for (int b = 0; b < B; b++) {
        size_t row = (size_t)b * lde;
        for (int i = 0; i < G; i++) {
            const struct nn_mix_gate *q = &gates[i];
            const float *restrict d = q->dout + (size_t)b * H;
            const float *gb = q->g + (size_t)b * q->K;
            float *dgb = q->dg + (size_t)b * q->K;
            for (int k = 0; k < q->K; k++) {
                int e = q->experts[k];
                if (des[e]) {
                    float *restrict de = staged && relu[e].db && relu[e].bf ? rowbuf + (size_t)e * H : des[e] + row;
                    const float gk = gb[k];
                    if (q->first[k])
                        for (int h = 0; h < H; h++) de[h] = gk * d[h];
                    else
                        for (int h = 0; h < H; h++) de[h] += gk * d[h];
                }
                dgb[k] = (float)dot_lanes(d, es[e] + row, H);
            }
        }
        /* the experts' ReLU backward on rows still in cache (it was a pass
         * over every expert's gradient and output of its own) */
        for (int e = 0; relu && e < E; e++) {
            if (!des[e] || !relu[e].db) continue;
            float *restrict db = relu[e].db;
            const float *restrict x = es[e] + row;
            if (relu[e].bf) {
                const float *restrict de = staged ? rowbuf + (size_t)e * H : des[e] + row;
                enum { CH = 256 };
                for (int h0 = 0; h0 < H; h0 += CH) {
                    int n = H - h0 < CH ? H - h0 : CH;
                    float t[CH];
                    for (int h = 0; h < n; h++) {
                        float v = de[h0 + h];
                        t[h] = x[h0 + h] > 0.0f ? v : 0.0f;
                        db[h0 + h] += t[h];
                    }
                    nn_bf16_pack(relu[e].bf + (size_t)b * H + h0, t, (size_t)n);
                }
            } else {
                float *restrict de = des[e] + row;
                for (int h = 0; h < H; h++) {
                    float v = de[h];
                    v = x[h] > 0.0f ? v : 0.0f;
                    db[h] += v;
                    de[h] = v;
                }
            }
        }
    }
}
