/* dropout.c: inverted dropout, so inference needs no rescaling.
 *
 * Dims: N element count (flattened).
 * The mask stores the scale itself (0 or 1/(1-p)), so the backward is one
 * multiply and never needs p. Randomness comes from the caller's rng, so a
 * seeded run (and a gradient test) reproduces the same mask. */
#include "nn/nn.h"

/* y[N] = x[N] * mask[N], mask[i] = 0 with probability p else 1/(1-p).
 * p <= 0 copies x (mask all 1) and draws nothing from r; p >= 1 drops all. */
void nn_dropout_forward(float *y, float *mask, const float *x, size_t N, float p, struct rng *r)
{
    if (p <= 0.0f) {
        for (size_t i = 0; i < N; i++) {
            mask[i] = 1.0f;
            y[i] = x[i];
        }
        return;
    }
    if (p >= 1.0f) {
        for (size_t i = 0; i < N; i++) mask[i] = y[i] = 0.0f;
        return;
    }
    float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < N; i++) {
        mask[i] = rng_uniform(r) < p ? 0.0f : keep;
        y[i] = x[i] * mask[i];
    }
}

/* dx[N] += dy[N] * mask[N]. */
void nn_dropout_backward(float *dx, const float *dy, const float *mask, size_t N)
{
    for (size_t i = 0; i < N; i++) dx[i] += dy[i] * mask[i];
}
