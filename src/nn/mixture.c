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
 * it own the cores. Does not compute the gate (softmax.c does). */
#include "nn/nn.h"

/* out[B,H] = sum_k g[b,k] * es[k][b*lde + h]; g [B,K]; es[k] [B, lde >= H].
 * out must not alias an expert. K == 0 gives zeros. */
void nn_mixture_forward(float *out, const float *const *es, int lde, const float *g, int B, int K,
                        int H)
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

/* <d, e> over n accumulated in double as 8 running sums (lane j takes
 * elements j, j+8, ...), then the tail and the lanes in a fixed order: the
 * same result at any vector width, and the lanes vectorise where one
 * running sum is a chain of dependent adds. */
static inline double dot_f64(const float *restrict d, const float *restrict e, int n)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int h = 0;
    for (; h + 8 <= n; h += 8)
        for (int j = 0; j < 8; j++) acc[j] += (double)d[h + j] * (double)e[h + j];
    double s = 0.0;
    for (; h < n; h++) s += (double)d[h] * (double)e[h];
    for (int j = 0; j < 8; j++) s += acc[j];
    return s;
}

/* des[k][B, lde] += g[b,k] * dout[b,:] (first H columns of each row; NULL
 * entries skipped, e.g. an expert shared with no gradient wanted);
 * dg[B,K] += <dout[b,:], e_k[b,:]> (skipped if dg is NULL), the dot
 * accumulated in double. dout [B,H]. */
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
            if (dg) dg[(size_t)b * K + k] += (float)dot_f64(d, es[k] + row, H);
        }
    }
}
