/* bce.c: sigmoid + binary cross-entropy on logits (CTR, CVR heads).
 *
 * Dims: B batch rows, ld row stride of the logit/label matrices.
 * Works on logits, never on probabilities: loss = max(z,0) - z*y +
 * log1p(exp(-|z|)) is exact for any |z| where log(sigmoid) would round to
 * log(0) = -inf past |z| ~ 17 in float. A NaN label means "not observed for
 * this task" (ESMM's CVR on non-clicks, a task missing from a row): the row
 * adds neither loss nor gradient. The loss is returned as a double SUM so the
 * caller chooses the normalisation (per task count, weights). */
#include <math.h>

#include "nn/nn.h"

/* Stable both ways: exp of a non-positive argument only. */
static double sigmoid_d(double z)
{
    if (z >= 0.0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* logit[b*ld], y[b*ld] for b < B; p[b*ld] (if p) = sigmoid(logit), written
 * for every row, labelled or not, since predictions are wanted regardless.
 * Returns sum of losses over rows with non-NaN y; *count (if count) = their
 * number. */
double nn_bce_forward(float *p, const float *logit, const float *y, int B, int ld, int *count)
{
    double sum = 0.0;
    int n = 0;
    for (int b = 0; b < B; b++) {
        double z = logit[(size_t)b * ld];
        if (p) p[(size_t)b * ld] = (float)sigmoid_d(z);
        float t = y[(size_t)b * ld];
        if (isnan(t)) continue;
        sum += fmax(z, 0.0) - z * t + log1p(exp(-fabs(z)));
        n++;
    }
    if (count) *count = n;
    return sum;
}

/* dlogit[b*ld] += scale * (sigmoid(logit) - y) for rows with non-NaN y;
 * dlogit has the same layout as logit. */
void nn_bce_backward(float *dlogit, const float *logit, const float *y, int B, int ld, float scale)
{
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)b * ld;
        if (isnan(y[i])) continue;
        dlogit[i] += (float)((double)scale * (sigmoid_d(logit[i]) - (double)y[i]));
    }
}
