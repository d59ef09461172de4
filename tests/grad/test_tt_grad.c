/* test_tt_grad.c: finite-difference check of the two-tower batch loss
 * (rec_tt_batch_loss, src/rec/twotower.c): the in-batch sampled softmax
 * with the logQ correction and masked duplicate positives, through the
 * item tower (E, Wv, bv) and the user tower (mean of E over the history,
 * W1, b1, ReLU, W2, b2).
 *
 * Tiny case: N = 7 items, D0 = 4, D = 3, B = 4 rows with histories {1, 2},
 * {3}, {} (an empty bag) and {2, 2, 5}; positives 4, 0, 4, 6 (item 4 twice:
 * each row's copy of the other is masked), extra negatives 1 and 4 (4 again:
 * masked for rows 0 and 2), logq random. Run twice: ids only (7 parameter
 * tensors), and with a catalogue giving items categories {0, 2, -1, 1, 2,
 * 0, 1} of 3 and price bands {3, -1, 0, 3, 15, -1, 7} of 16, so the item
 * input is E[j] + Ec[cat] + Eb[band] (a -1 adds nothing) in both towers and
 * tt.cat_emb, tt.band_emb are checked too (bands no item has: gradient 0).
 * Every parameter is drawn N(0, 0.5²)
 * and every ReLU pre-activation is checked to sit >= 0.05 from the kink, so
 * central differences at eps 1e-3 never straddle it (a weight moved by eps
 * moves a pre-activation by <= eps |x|, far less). The loss is the mean of
 * the rows' -log softmax in float; pass: |num - ana| <= 1e-3 + 1e-2 max.
 * Then a second call without zeroing doubles every gradient (backward
 * adds). A batch whose candidates are all one item has loss and gradients
 * exactly 0 (every column but the row's own is masked). */
#include "grad/gradcheck.h"
#include "rec/twotower.h"

enum { N = 7, D0 = 4, D = 3, B = 4, C = 6, NP = 7, NC = 3 };

static const int32_t HOFF[B + 1] = {0, 2, 3, 3, 6};
static const int32_t HIST[6] = {1, 2, 3, 2, 2, 5};
static const int32_t CAND[C] = {4, 0, 4, 6, 1, 4};
static int32_t CAT[N] = {0, 2, -1, 1, 2, 0, 1};
static int8_t BAND[N] = {3, -1, 0, 3, 15, -1, 7};

/* The test catalogue: categories and bands only. */
static struct rec_catalog test_catalog(void)
{
    struct rec_catalog c;
    memset(&c, 0, sizeof c);
    c.N = N, c.cat = CAT, c.band = BAND, c.cats.n = NC;
    return c;
}

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

/* min over rows and units of |W1 x + b1|, x the mean history input
 * (E[i] + Ec[cat i] + Eb[band i] with attributes) */
static double min_preact(struct mf_tensor *w, int attr)
{
    const float *E = w[0].data, *W1 = w[3].data, *b1 = w[4].data;
    const float *Ec = attr ? w[7].data : NULL, *Eb = attr ? w[8].data : NULL;
    double mn = INFINITY;
    for (int b = 0; b < B; b++) {
        double x[D0] = {0};
        int n = HOFF[b + 1] - HOFF[b];
        for (int k = HOFF[b]; k < HOFF[b + 1]; k++)
            for (int d = 0; d < D0; d++) {
                int32_t i = HIST[k];
                x[d] += E[i * D0 + d] / n;
                if (attr && CAT[i] >= 0) x[d] += Ec[CAT[i] * D0 + d] / n;
                if (attr && BAND[i] >= 0) x[d] += Eb[BAND[i] * D0 + d] / n;
            }
        for (int o = 0; o < D; o++) {
            double a = b1[o];
            for (int d = 0; d < D0; d++) a += W1[o * D0 + d] * x[d];
            mn = fmin(mn, fabs(a));
        }
    }
    return mn;
}

static void check_grad(int attr)
{
    struct ctx c;
    struct rec_catalog cat = test_catalog();
    float logq[C];
    struct rng r;
    rng_seed(&r, 11);
    gc_fill_normal(logq, C, &r, 1.0f);
    c.bt = (struct rec_tt_batch){.B = B, .C = C, .hoff = HOFF, .hist = HIST, .cand = CAND, .logq = logq};
    assert_int_equal(rec_tt_create(N, D0, D, 3, attr ? &cat : NULL, 5, &c.tt), PT_OK);
    int NG = attr ? NP + 2 : NP;
    struct mf_tensor w[REC_TT_NTENSORS], g[REC_TT_NGRAD];
    assert_int_equal(rec_tt_tensors(c.tt, w, REC_TT_NTENSORS), attr ? NG + 3 : NG + 1);
    assert_int_equal(rec_tt_grad_tensors(c.tt, g, REC_TT_NGRAD), NG);
    if (attr) {
        assert_string_equal(w[7].name, "tt.cat_emb");
        assert_int_equal(w[7].shape[0], NC);
        assert_string_equal(w[8].name, "tt.band_emb");
        assert_int_equal(w[8].shape[0], CATALOG_PRICE_BANDS);
    }
    size_t n[REC_TT_NGRAD];
    for (int p = 0; p < NG; p++) n[p] = (size_t)w[p].shape[0] * (size_t)(w[p].ndim == 2 ? w[p].shape[1] : 1);
    for (int tries = 0;; tries++) { /* draw until no pre-activation is near the ReLU kink */
        assert_true(tries < 100);
        for (int p = 0; p < NG; p++) gc_fill_normal(w[p].data, n[p], &r, 0.5f);
        if (min_preact(w, attr) >= 0.05) break;
    }

    rec_tt_zero_grad(c.tt);
    double l0 = tt_loss(&c);
    assert_true(isfinite(l0) && l0 > 0);
    float *ana[REC_TT_NGRAD];
    for (int p = 0; p < NG; p++) {
        ana[p] = gc_alloc(n[p]);
        memcpy(ana[p], g[p].data, n[p] * sizeof(float));
    }
    for (int p = 0; p < NG; p++) gc_check(w[p].name, tt_loss, &c, w[p].data, ana[p], n[p], 1e-3f, 1e-3, 1e-2);

    /* backward adds: two calls from zero give twice one call */
    rec_tt_zero_grad(c.tt);
    tt_loss(&c);
    tt_loss(&c);
    for (int p = 0; p < NG; p++) gc_check_doubled(w[p].name, g[p].data, ana[p], n[p]);

    for (int p = 0; p < NG; p++) pt_free(ana[p]);
    rec_tt_free(c.tt);
}

static void test_tt_batch_loss_grad(void **state)
{
    (void)state;
    check_grad(0);
}

static void test_tt_batch_loss_grad_attr(void **state)
{
    (void)state;
    check_grad(1);
}

/* Only columns equal to the row's positive are masked: a batch whose
 * candidates are all item 4 has a loss of exactly 0 (one unmasked column
 * per row, its own). */
static void test_tt_all_duplicates(void **state)
{
    (void)state;
    struct rec_tt *tt;
    assert_int_equal(rec_tt_create(N, D0, D, 3, NULL, 5, &tt), PT_OK);
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
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tt_batch_loss_grad),
                                       cmocka_unit_test(test_tt_batch_loss_grad_attr),
                                       cmocka_unit_test(test_tt_all_duplicates)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
