/* test_tt_grad.c: finite-difference check of the two-tower batch loss
 * (rec_tt_batch_loss, src/rec/twotower.c): the in-batch sampled softmax
 * with the logQ correction and masked duplicate positives, through the
 * item tower (E, Wv, bv) and the user tower (mean of E over the history,
 * W1, b1, ReLU, W2, b2).
 *
 * Tiny case: N = 7 items, D0 = 4, D = 3, B = 4 rows with histories {1, 2},
 * {3}, {} (an empty bag) and {2, 2, 5}; positives 4, 0, 4, 6 (item 4 twice:
 * each row's copy of the other is masked), extra negatives 1 and 4 (4 again:
 * masked for rows 0 and 2), logq random. Every parameter is drawn N(0, 0.5²)
 * and every ReLU pre-activation is checked to sit >= 0.05 from the kink, so
 * central differences at eps 1e-3 never straddle it (a weight moved by eps
 * moves a pre-activation by <= eps |x|, far less). The loss is the mean of
 * the rows' -log softmax in float; pass: |num - ana| <= 1e-3 + 1e-2 max.
 * Then a second call without zeroing doubles every gradient (backward
 * adds). A batch whose candidates are all one item has loss and gradients
 * exactly 0 (every column but the row's own is masked). */
#include "grad/gradcheck.h"
#include "rec/twotower.h"

enum { N = 7, D0 = 4, D = 3, B = 4, C = 6, NP = 7 };

static const int32_t HOFF[B + 1] = {0, 2, 3, 3, 6};
static const int32_t HIST[6] = {1, 2, 3, 2, 2, 5};
static const int32_t CAND[C] = {4, 0, 4, 6, 1, 4};

struct ctx {
    struct rec_tt *tt;
    struct rec_tt_batch bt;
};

static double tt_loss(void *p)
{
    struct ctx *c = p;
    float l = NAN;
    assert_int_equal(rec_tt_batch_loss(c->tt, &c->bt, &l), PT_OK);
    return l;
}

/* min over rows and units of |W1 x + b1|, x the mean history embedding */
static double min_preact(struct mf_tensor *w)
{
    const float *E = w[0].data, *W1 = w[3].data, *b1 = w[4].data;
    double mn = INFINITY;
    for (int b = 0; b < B; b++) {
        double x[D0] = {0};
        int n = HOFF[b + 1] - HOFF[b];
        for (int k = HOFF[b]; k < HOFF[b + 1]; k++)
            for (int d = 0; d < D0; d++) x[d] += E[HIST[k] * D0 + d] / n;
        for (int o = 0; o < D; o++) {
            double a = b1[o];
            for (int d = 0; d < D0; d++) a += W1[o * D0 + d] * x[d];
            mn = fmin(mn, fabs(a));
        }
    }
    return mn;
}

static void test_tt_batch_loss_grad(void **state)
{
    (void)state;
    struct ctx c;
    float logq[C];
    struct rng r;
    rng_seed(&r, 11);
    gc_fill_normal(logq, C, &r, 1.0f);
    c.bt = (struct rec_tt_batch){.B = B, .C = C, .hoff = HOFF, .hist = HIST, .cand = CAND, .logq = logq};
    assert_int_equal(rec_tt_create(N, D0, D, 3, 5, &c.tt), PT_OK);
    struct mf_tensor w[REC_TT_NTENSORS], g[NP];
    assert_int_equal(rec_tt_tensors(c.tt, w, REC_TT_NTENSORS), REC_TT_NTENSORS);
    assert_int_equal(rec_tt_grad_tensors(c.tt, g, NP), NP);
    size_t n[NP];
    for (int p = 0; p < NP; p++) n[p] = (size_t)w[p].shape[0] * (size_t)(w[p].ndim == 2 ? w[p].shape[1] : 1);
    for (int tries = 0;; tries++) { /* draw until no pre-activation is near the ReLU kink */
        assert_true(tries < 100);
        for (int p = 0; p < NP; p++) gc_fill_normal(w[p].data, n[p], &r, 0.5f);
        if (min_preact(w) >= 0.05) break;
    }

    rec_tt_zero_grad(c.tt);
    double l0 = tt_loss(&c);
    assert_true(isfinite(l0) && l0 > 0);
    float *ana[NP];
    for (int p = 0; p < NP; p++) {
        ana[p] = gc_alloc(n[p]);
        memcpy(ana[p], g[p].data, n[p] * sizeof(float));
    }
    for (int p = 0; p < NP; p++) gc_check(w[p].name, tt_loss, &c, w[p].data, ana[p], n[p], 1e-3f, 1e-3, 1e-2);

    /* backward adds: two calls from zero give twice one call */
    rec_tt_zero_grad(c.tt);
    tt_loss(&c);
    tt_loss(&c);
    for (int p = 0; p < NP; p++) gc_check_doubled(w[p].name, g[p].data, ana[p], n[p]);

    for (int p = 0; p < NP; p++) pt_free(ana[p]);
    rec_tt_free(c.tt);
}

/* Only columns equal to the row's positive are masked: a batch whose
 * candidates are all item 4 has a loss of exactly 0 (one unmasked column
 * per row, its own). */
static void test_tt_all_duplicates(void **state)
{
    (void)state;
    struct rec_tt *tt;
    assert_int_equal(rec_tt_create(N, D0, D, 3, 5, &tt), PT_OK);
    const int32_t cand[3] = {4, 4, 4}, hoff[3] = {0, 1, 2}, hist[2] = {1, 2};
    const float logq[3] = {0.3f, -1.0f, 2.0f};
    struct rec_tt_batch bt = {.B = 2, .C = 3, .hoff = hoff, .hist = hist, .cand = cand, .logq = logq};
    float l = NAN;
    assert_int_equal(rec_tt_batch_loss(tt, &bt, &l), PT_OK);
    assert_true(l == 0.0f);
    struct mf_tensor g[NP];
    rec_tt_grad_tensors(tt, g, NP);
    for (int p = 0; p < NP; p++) {
        size_t n = (size_t)g[p].shape[0] * (size_t)(g[p].ndim == 2 ? g[p].shape[1] : 1);
        for (size_t i = 0; i < n; i++) assert_true(g[p].data[i] == 0.0f);
    }
    bt.C = 1; /* fewer candidates than rows */
    assert_int_equal(rec_tt_batch_loss(tt, &bt, &l), PT_EINVAL);
    rec_tt_free(tt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tt_batch_loss_grad), cmocka_unit_test(test_tt_all_duplicates)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
