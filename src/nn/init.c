/* init.c: weight initialisation from the caller's rng (seeded runs repeat).
 *
 * Dims: O output width, I input width (W is [O,I]), N element count.
 * Biases are not handled here: they start at zero, which the caller's
 * zeroed arena already gives. */
#include <math.h>

#include "nn/nn.h"

/* W[O,I] ~ N(0, 2/I): He/Kaiming normal, fan-in mode, keeps activation
 * variance steady through ReLU layers. */
void nn_init_he(float *W, int O, int I, struct rng *r)
{
    if (I <= 0) return;
    nn_init_normal(W, (size_t)O * (size_t)I, sqrtf(2.0f / (float)I), r);
}

/* W[O,I] ~ U(-a, a), a = sqrt(6/(I+O)): Xavier/Glorot, for layers feeding a
 * sigmoid or a softmax gate. */
void nn_init_xavier(float *W, int O, int I, struct rng *r)
{
    if (I + O <= 0) return;
    float a = sqrtf(6.0f / (float)(I + O));
    size_t N = (size_t)O * (size_t)I;
    for (size_t i = 0; i < N; i++) W[i] = a * (2.0f * rng_uniform(r) - 1.0f);
}

/* W[N] ~ N(0, std^2). Box-Muller keeping both outputs of each pair, from
 * one 64-bit draw: embedding tables of millions of rows are initialised this
 * way, so it is worth not wasting half the work. */
void nn_init_normal(float *W, size_t N, float std, struct rng *r)
{
    size_t i = 0;
    while (i < N) {
        uint64_t x = rng_next(r);
        /* u1 in (0, 1] so the log is finite */
        float u1 = ((float)(x >> 40) + 1.0f) * (1.0f / 16777216.0f);
        float u2 = (float)((x >> 16) & 0xffffff) * (1.0f / 16777216.0f);
        float rad = std * sqrtf(-2.0f * logf(u1)), th = 6.2831853f * u2;
        W[i++] = rad * cosf(th);
        if (i < N) W[i++] = rad * sinf(th);
    }
}
