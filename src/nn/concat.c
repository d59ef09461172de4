/* concat.c: join n inputs side by side along columns.
 *
 * Dims: B batch rows, n inputs, widths[i] columns each, W = sum of widths.
 * Layers that can write straight into a wider buffer (linear's ldy,
 * embedding's ldo) avoid this copy; concat is for the rest. */
#include <string.h>

#include "nn/nn.h"

/* out[B, W] = [xs[0][B, w0] | xs[1][B, w1] | ...]. */
void nn_concat_forward(float *out, const float *const *xs, const int *widths, int n, int B)
{
    size_t W = 0;
    for (int i = 0; i < n; i++) W += (size_t)widths[i];
    size_t col = 0;
    for (int i = 0; i < n; i++) {
        size_t w = (size_t)widths[i];
        for (int b = 0; b < B; b++) memcpy(out + b * W + col, xs[i] + b * w, w * sizeof(float));
        col += w;
    }
}

/* dxs[i][B, wi] += dout[B, W] column block i; NULL dxs[i] are skipped
 * (inputs that need no gradient, such as raw dense features). */
void nn_concat_backward(float *const *dxs, const float *dout, const int *widths, int n, int B)
{
    size_t W = 0;
    for (int i = 0; i < n; i++) W += (size_t)widths[i];
    size_t col = 0;
    for (int i = 0; i < n; i++) {
        size_t w = (size_t)widths[i];
        if (dxs[i]) {
            for (int b = 0; b < B; b++) {
                float *dx = dxs[i] + b * w;
                const float *g = dout + b * W + col;
                for (size_t k = 0; k < w; k++) dx[k] += g[k];
            }
        }
        col += w;
    }
}
