/* softmax.c: row-wise softmax, e.g. for MMoE/PLE gate weights.
 *
 * Dims: B batch rows, C classes (columns).
 * The row maximum is subtracted before exp so large logits do not overflow;
 * the normalising sum is accumulated in double because C can be a few
 * hundred (attention over a behaviour sequence). No fused cross-entropy:
 * the models here use softmax for mixing, not classification. */
#include <math.h>

#include "nn/nn.h"

/* y[B,C] = exp(x - max) / sum exp(x - max), per row; y may alias x. */
void nn_softmax_forward(float *y, const float *x, int B, int C)
{
    for (int b = 0; b < B; b++) {
        const float *xr = x + (size_t)b * C;
        float *yr = y + (size_t)b * C;
        if (C <= 0) continue;
        float mx = xr[0];
        for (int c = 1; c < C; c++)
            if (xr[c] > mx) mx = xr[c];
        double s = 0.0;
        for (int c = 0; c < C; c++) {
            yr[c] = expf(xr[c] - mx);
            s += yr[c];
        }
        float inv = (float)(1.0 / s);
        for (int c = 0; c < C; c++) yr[c] *= inv;
    }
}

/* dx[B,C] += y * (dy - sum_c dy*y), the Jacobian-vector product of softmax
 * written in terms of its output. */
void nn_softmax_backward(float *dx, const float *dy, const float *y, int B, int C)
{
    for (int b = 0; b < B; b++) {
        const float *g = dy + (size_t)b * C, *yr = y + (size_t)b * C;
        float *d = dx + (size_t)b * C;
        double dot = 0.0;
        for (int c = 0; c < C; c++) dot += (double)g[c] * yr[c];
        float fd = (float)dot;
        for (int c = 0; c < C; c++) d[c] += yr[c] * (g[c] - fd);
    }
}
