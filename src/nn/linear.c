/* linear.c: fully connected layer y = x W^T + b, PyTorch's weight layout.
 *
 * Dims: B batch rows, I input width, O output width.
 * Both products go through nn_sgemm (so through the BLAS when one is linked);
 * the bias add, an optional ReLU and the bias gradient are loops because
 * they are O(B*O) next to the O(B*I*O) products, fused into one pass over
 * the output (nn_relu is the standalone layer).
 * The oracle for the products is nn_sgemm_naive (tests compare the two). */
#include "nn/nn.h"

/* y[B, ldy >= O]: columns O..ldy are left untouched, so the caller can write
 * several layers' outputs side by side in one wider buffer.
 * x[B,I], W[O,I], b[O] (NULL = no bias). */
void nn_linear_forward(float *y, int ldy, const float *x, const float *W, const float *b, int B,
                       int I, int O)
{
    nn_linear_forward_ld(y, ldy, x, I, W, b, B, I, O, 0, 0, NULL);
}

enum { MAX_BLOCKS = 256 }; /* column blocks with bf16 copies: a level's experts (CONFIG_MAX_GATE) */

/* bias and ReLU in one pass over y: it is the size of the batch's
 * activations, so each pass is a trip through memory. The bf16 copies the
 * next products read (cp[nb] of column blocks of width block, NULL entries
 * skipped) are made from each row while it is in cache, pos[r*O + o] =
 * (y > 0) when asked, and with stale the float row is not written back. */
PT_VECTOR_CLONES static void epilogue(float *y, int ldy, const float *b, int B, int O, int relu, uint16_t **cp,
                                      int nb, int block, uint8_t *pos, int stale)
{
    enum { CH = 256 };
    for (int r = 0; r < B; r++) {
        float *yr = y + (size_t)r * ldy;
        if (!nb && !pos) {
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
        int w = nb ? block : O;
        for (int k = 0; k < (nb ? nb : 1); k++)
            for (int c0 = 0; c0 < w; c0 += CH) {
                int n = w - c0 < CH ? w - c0 : CH, at = k * w + c0;
                float t[CH];
                for (int o = 0; o < n; o++) {
                    float v = yr[at + o] + (b ? b[at + o] : 0.0f);
                    t[o] = relu && !(v > 0.0f) ? 0.0f : v;
                }
                if (!stale)
                    for (int o = 0; o < n; o++) yr[at + o] = t[o];
                if (pos)
                    for (int o = 0; o < n; o++) pos[(size_t)r * O + at + o] = t[o] > 0.0f;
                if (nb && cp[k]) nn_bf16_pack(cp[k] + (size_t)r * block + c0, t, (size_t)n);
            }
    }
}

void nn_linear_forward_ld(float *y, int ldy, const float *x, int ldx, const float *W, const float *b,
                          int B, int I, int O, int relu, int copy_block, uint8_t *pos)
{
    nn_sgemm('N', 'T', B, O, I, 1.0f, x, ldx, W, I, 0.0f, y, ldy);
    uint16_t *cp[MAX_BLOCKS]; /* a block whose slot could not be had (NULL) is converted by its product */
    int nb = copy_block > 0 && O % copy_block == 0 && O / copy_block <= MAX_BLOCKS ? O / copy_block : 0;
    /* with pos the caller reads y only through those bytes and the products:
     * the float values need not be written where every block has a copy */
    int stale = pos && nb > 0;
    for (int k = 0; k < nb; k++) {
        cp[k] = nn_gemm_bf16_slot(y + (size_t)k * copy_block, B, copy_block, ldy, pos != NULL);
        if (!cp[k]) stale = 0;
    }
    if (b || relu || nb || pos) epilogue(y, ldy, b, B, O, relu, cp, nb, copy_block, pos, stale);
}

/* dy[B, lddy >= O], x[B,I], W[O,I].
 * dx[B,I] += dy W      (NULL: input gradient not needed, e.g. first layer)
 * dW[O,I] += dy^T x    (NULL: frozen weights)
 * db[O]   += sum_b dy  (NULL: no bias) */
void nn_linear_backward(float *dx, float *dW, float *db, const float *dy, int lddy, const float *x,
                        const float *W, int B, int I, int O)
{
    nn_linear_backward_ld(dx, I, 1.0f, dW, db, dy, lddy, x, I, W, B, I, O);
}

void nn_linear_backward_ld(float *dx, int lddx, float dx_beta, float *dW, float *db, const float *dy, int lddy,
                           const float *x, int ldx, const float *W, int B, int I, int O)
{
    if (dx) nn_sgemm('N', 'N', B, I, O, 1.0f, dy, lddy, W, I, dx_beta, dx, lddx);
    if (dW) nn_sgemm('T', 'N', O, I, B, 1.0f, dy, lddy, x, ldx, 1.0f, dW, I);
    if (!db) return;
    /* Row-outer so dy is read in storage order; db stays in cache. */
    for (int r = 0; r < B; r++) {
        const float *g = dy + (size_t)r * lddy;
        for (int o = 0; o < O; o++) db[o] += g[o];
    }
}
