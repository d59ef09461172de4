/* ctcvr.c: ESMM's entire-space loss, pCTCVR = sigmoid(z_ctr) * sigmoid(z_cvr)
 * against y = click AND conversion.
 *
 * Dims: B batch rows, ld row stride of the logit/label/p matrices.
 * Unlike bce.c this cannot work on one logit: the loss is on a product of
 * probabilities. It reproduces the PyTorch reference exactly:
 *     pc = torch.clamp(p, 1e-7, 1 - 1e-7)
 *     loss = nn.BCELoss(reduction='sum')(pc, y)
 * i.e. -(y * max(log pc, -100) + (1 - y) * max(log(1 - pc), -100)), and
 * autograd through clamp gives zero gradient where p lies outside
 * [1e-7, 1 - 1e-7]; inside, dL/dp = (p - y) / max(p (1 - p), 1e-12) as in
 * torch's BCELoss backward. Maths in double; sigmoids computed with exp of
 * non-positive arguments only, and 1 - sigmoid(z) as sigmoid(-z), so large
 * |z| neither overflows nor cancels. A NaN label skips the row (no loss, no
 * gradient); p is written for every row. Does not: weight rows, or mean the
 * loss (the caller scales by 1/count). */
#include <math.h>

#include "nn/nn.h"

#define CTCVR_P_MIN 1e-7
#define CTCVR_P_MAX (1.0 - 1e-7)
#define CTCVR_LOG_MIN (-100.0) /* torch's BCELoss clamps each log term */
#define CTCVR_BCE_EPS 1e-12    /* torch's BCELoss backward denominator floor */

static double sigmoid_d(double z)
{
    if (z >= 0.0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

/* z_ctr, z_cvr, y, p at b*ld for b < B. p (if p) = sigmoid(z_ctr) *
 * sigmoid(z_cvr), unclipped, for every row (the prediction; only the loss
 * clips). Returns the sum of clipped-BCE losses over rows with non-NaN y;
 * *count (if count) their number. */
double nn_ctcvr_forward(float *p, const float *z_ctr, const float *z_cvr, const float *y, int B,
                        int ld, int *count)
{
    double sum = 0.0;
    int n = 0;
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)b * ld;
        double pr = sigmoid_d(z_ctr[i]) * sigmoid_d(z_cvr[i]);
        if (p) p[i] = (float)pr;
        double t = y[i];
        if (isnan(t)) continue;
        double pc = fmin(fmax(pr, CTCVR_P_MIN), CTCVR_P_MAX);
        double l1 = fmax(log(pc), CTCVR_LOG_MIN), l0 = fmax(log1p(-pc), CTCVR_LOG_MIN);
        sum -= t * l1 + (1.0 - t) * l0;
        n++;
    }
    if (count) *count = n;
    return sum;
}

/* dz_ctr[b*ld] += scale * dL/dz_ctr, dz_cvr[b*ld] += scale * dL/dz_cvr for
 * rows with non-NaN y, where dp/dz_ctr = p * sigmoid(-z_ctr) (likewise
 * cvr). Rows with p outside [1e-7, 1 - 1e-7] add exactly 0 (the clamp's
 * gradient; the boundary itself passes the gradient, as torch's clamp
 * does). Either gradient pointer may be NULL. */
void nn_ctcvr_backward(float *dz_ctr, float *dz_cvr, const float *z_ctr, const float *z_cvr,
                       const float *y, int B, int ld, float scale)
{
    for (int b = 0; b < B; b++) {
        size_t i = (size_t)b * ld;
        double t = y[i];
        if (isnan(t)) continue;
        double z1 = z_ctr[i], z2 = z_cvr[i];
        double s1 = sigmoid_d(z1), s2 = sigmoid_d(z2), pr = s1 * s2;
        if (!(pr >= CTCVR_P_MIN && pr <= CTCVR_P_MAX)) continue;
        double dp = (double)scale * (pr - t) / fmax(pr * (1.0 - pr), CTCVR_BCE_EPS);
        if (dz_ctr) dz_ctr[i] += (float)(dp * pr * sigmoid_d(-z1));
        if (dz_cvr) dz_cvr[i] += (float)(dp * pr * sigmoid_d(-z2));
    }
}
