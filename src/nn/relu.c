/* relu.c: y = max(x, 0) elementwise.
 *
 * Dims: N element count (any shape, flattened).
 * The backward reads the output y rather than the input: y > 0 exactly when
 * x > 0, and keeping y is what the caller already has, so x may be
 * overwritten in place (y == x is allowed in the forward). */
#include "nn/nn.h"

/* y[N] = max(x[N], 0); y may alias x. */
void nn_relu_forward(float *y, const float *x, size_t N)
{
    for (size_t i = 0; i < N; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* dx[N] += dy[N] where y[N] > 0. The gradient at 0 is taken as 0. */
void nn_relu_backward(float *dx, const float *dy, const float *y, size_t N)
{
    for (size_t i = 0; i < N; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}
