/* linear.c: fully connected layer y = x W^T + b, PyTorch's weight layout.
 *
 * Dims: B batch rows, I input width, O output width.
 * Both products go through nn_sgemm (so through the BLAS when one is linked);
 * the bias add, an optional ReLU and the bias gradient are loops because
 * they are O(B*O) next to the O(B*I*O) products, fused into one pass over
 * the output (nn_relu is the standalone layer); at train.precision bf16 the
 * bias and ReLU run inside oneDNN's product where that pass would do
 * nothing else (nn_gemm_bf16_layer).
 * The oracle for the products is nn_sgemm_naive (tests compare the two). */
#include "nn/nn.h"

/* y[B, ldy >= O]: columns O..ldy are left untouched, so the caller can write
 * several layers' outputs side by side in one wider buffer.
 * x[B,I], W[O,I], b[O] (NULL = no bias). */
void nn_linear_forward(float *y, int ldy, const float *x, const float *W, const float *b, int B,
                       int I, int O)
{
    nn_linear_forward_ld(y, ldy, x, I, W, b, B, I, O, 0, 0, 0);
}

enum { MAX_BLOCKS = 256 }; /* column blocks with bf16 copies: a level's experts (CONFIG_MAX_GATE) */

/* bias and ReLU in one pass over y: it is the size of the batch's
 * activations, so each pass is a trip through memory. The bf16 copies the
 * next products read (cp[nb] of column blocks of width block, NULL entries
 * skipped) are made from each row while it is in cache, and with stale the
 * float row is not written back. */
PT_VECTOR_CLONES static void epilogue(float *y, int ldy, const float *b, int B, int O, int relu, uint16_t **cp,
                                      int nb, int block, int stale)
{
    enum { CH = 256 };
    for (int r = 0; r < B; r++) {
        float *yr = y + (size_t)r * ldy;
        if (!nb) {
            if (!relu)
                for (int o = 0; o < O; o++) yr[o] += b[o];
            else if (!b)
                for (int o = 0; o < O; o++) yr[o] = yr[o] > 0.0f ? yr[o] : 0.0f;
            else
                for (int o = 0; o < O; o++) {
                    float v = yr[o] + b[o];
                    yr[o] = v > 0.0f ? v : 0.0f;
                }
            continue;
        }
        for (int k = 0; k < nb; k++)
            for (int c0 = 0; c0 < block; c0 += CH) {
                int n = block - c0 < CH ? block - c0 : CH, at = k * block + c0;
                float t[CH];
                for (int o = 0; o < n; o++) {
                    float v = yr[at + o] + (b ? b[at + o] : 0.0f);
                    t[o] = relu && !(v > 0.0f) ? 0.0f : v;
                }
                if (!stale)
                    for (int o = 0; o < n; o++) yr[at + o] = t[o];
                if (cp[k]) nn_bf16_pack(cp[k] + (size_t)r * block + c0, t, (size_t)n);
            }
    }
}

void nn_linear_forward_ld(float *y, int ldy, const float *x, int ldx, const float *W, const float *b,
                          int B, int I, int O, int relu, int copy_block, int stale_ok)
{
    uint16_t *cp[MAX_BLOCKS]; /* a block whose slot could not be had (NULL) is converted by its product */
    int nb = copy_block > 0 && O % copy_block == 0 && O / copy_block <= MAX_BLOCKS ? O / copy_block : 0;
    /* the float values need not be written where every block has a copy */
    int stale = stale_ok && nb > 0;
    for (int k = 0; k < nb; k++) {
        cp[k] = nn_gemm_bf16_slot(y + (size_t)k * copy_block, B, copy_block, ldy, stale_ok);
        if (!cp[k]) stale = 0;
    }
    /* At bf16, bias and ReLU inside the product when the epilogue would do
     * nothing else: the float output without copies, or each block's copy
     * alone (a pass over the activations fewer) */
    if (stale) {
        int k = 0;
        while (k < nb && !nn_gemm_bf16_layer(x, ldx, W + (size_t)k * copy_block * I, b + (size_t)k * copy_block, B,
                                             I, copy_block, relu, NULL, 0, cp[k]))
            k++;
        if (k == nb) return;
    } else if (!nb && !nn_gemm_bf16_layer(x, ldx, W, b, B, I, O, relu, y, ldy, NULL)) {
        return;
    }
    nn_sgemm('N', 'T', B, O, I, 1.0f, x, ldx, W, I, 0.0f, y, ldy);
    if (b || relu || nb) epilogue(y, ldy, b, B, O, relu, cp, nb, copy_block, stale);
}

/* dW[O,I] += (x^T dy)^T, the product written to wt[I,O] first: its output's
 * wide side in the product's N. With O several times I (the fused first
 * layers: 1024 x 161) the backends ran it 15-20 % faster than dy^T x, whose
 * N = I leaves a ragged column block; the transposed add costs a pass over
 * O*I floats, next to a product of O*I*B. */
PT_VECTOR_CLONES static void add_transposed(float *restrict dW, const float *restrict wt, int I, int O)
{
    /* by 16 x 16 tiles through a buffer in L1, so that both the reads and
     * the adds run along rows (half the time of the plain double loop) */
    enum { T = 16 };
    for (int o0 = 0; o0 < O; o0 += T) {
        int no = O - o0 < T ? O - o0 : T;
        for (int i0 = 0; i0 < I; i0 += T) {
            int ni = I - i0 < T ? I - i0 : T;
            if (no < T || ni < T) {
                for (int o = 0; o < no; o++)
                    for (int i = 0; i < ni; i++) dW[(size_t)(o0 + o) * I + i0 + i] += wt[(size_t)(i0 + i) * O + o0 + o];
                continue;
            }
            float t[T][T];
            for (int i = 0; i < T; i++)
                for (int o = 0; o < T; o++) t[o][i] = wt[(size_t)(i0 + i) * O + o0 + o];
            for (int o = 0; o < T; o++)
                for (int i = 0; i < T; i++) dW[(size_t)(o0 + o) * I + i0 + i] += t[o][i];
        }
    }
}

void nn_linear_backward_wt(float *dW, float *wt, const float *dy, int lddy, const float *x, int ldx, int B, int I,
                           int O)
{
    nn_sgemm('T', 'N', I, O, B, 1.0f, x, ldx, dy, lddy, 0.0f, wt, O);
    add_transposed(dW, wt, I, O);
}

/* dy[B, lddy >= O], x[B,I], W[O,I].
 * dx[B,I] += dy W      (NULL: input gradient not needed, e.g. first layer)
 * dW[O,I] += dy^T x    (NULL: frozen weights)
 * db[O]   += sum_b dy  (NULL: no bias) */
void nn_linear_backward(float *dx, float *dW, float *db, const float *dy, int lddy, const float *x,
                        const float *W, int B, int I, int O)
{
    nn_linear_backward_ld(dx, I, I, 1.0f, dW, db, dy, lddy, x, I, W, B, I, O);
}

void nn_linear_backward_ld(float *dx, int lddx, int dxcols, float dx_beta, float *dW, float *db, const float *dy,
                           int lddy, const float *x, int ldx, const float *W, int B, int I, int O)
{
    if (dx && dxcols > 0) nn_sgemm('N', 'N', B, dxcols, O, 1.0f, dy, lddy, W, I, dx_beta, dx, lddx);
    if (dW) nn_sgemm('T', 'N', O, I, B, 1.0f, dy, lddy, x, ldx, 1.0f, dW, I);
    if (!db) return;
    /* Row-outer so dy is read in storage order; db stays in cache. */
    for (int r = 0; r < B; r++) {
        const float *g = dy + (size_t)r * lddy;
        for (int o = 0; o < O; o++) db[o] += g[o];
    }
}
