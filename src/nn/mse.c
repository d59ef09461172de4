/* mse.c: squared error for regression heads (e.g. dwell time, price).
 *
 * Dims: B batch rows, ld row stride. Same conventions as bce.c: NaN label =
 * missing row, the loss is a double SUM and the caller normalises through
 * scale. */
#include <math.h>

#include "nn/nn.h"

/* Returns sum over non-NaN y of (pred - y)^2; *count (if count) = rows used. */
double nn_mse_forward(const float *pred, const float *y, int B, int ld, int *count)
{
    double sum = 0.0;
    int n = 0;
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)b * ld;
        if (isnan(y[i])) continue;
        double d = (double)pred[i] - (double)y[i];
        sum += d * d;
        n++;
    }
    if (count) *count = n;
    return sum;
}

/* dpred[b*ld] += scale * 2 * (pred - y) for rows with non-NaN y. */
void nn_mse_backward(float *dpred, const float *pred, const float *y, int B, int ld, float scale)
{
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)b * ld;
        if (isnan(y[i])) continue;
        dpred[i] += 2.0f * scale * (pred[i] - y[i]);
    }
}
