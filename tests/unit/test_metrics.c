/* test_metrics.c: hand-computed cases for src/eval/metrics.c, a brute-force
 * O(n^2) AUC oracle on random tied data, and allocation-failure handling.
 * Agreement with scikit-learn on larger data is tests/ref/test_ref_metrics.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "eval/metrics.h"
#include "util/util.h"

#define N_OF(a) PT_ARRAY_LEN(a)

static void assert_close(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol)) fail_msg("got %.17g, want %.17g", got, want);
}

static void test_auc_basic(void **state)
{
    (void)state;
    const float y[] = {0, 0, 1, 1};
    const float up[] = {0.1f, 0.2f, 0.8f, 0.9f}, down[] = {0.9f, 0.8f, 0.2f, 0.1f};
    const float tied[] = {0.3f, 0.3f, 0.3f, 0.3f};
    assert_true(metric_auc(y, up, 4) == 1.0);
    assert_true(metric_auc(y, down, 4) == 0.0);
    assert_true(metric_auc(y, tied, 4) == 0.5);

    /* pos 0.5 vs neg 0.5 (tie, 1/2) and neg 0.2 (1); pos 0.9 beats both: 3.5/4 */
    const float y2[] = {0, 1, 0, 1}, p2[] = {0.5f, 0.5f, 0.2f, 0.9f};
    assert_true(metric_auc(y2, p2, 4) == 0.875);

    /* labels > 0.5 are positive, so 0.7 counts and 0.5 does not */
    const float y3[] = {0.5f, 0.7f}, p3[] = {0.1f, 0.2f};
    assert_true(metric_auc(y3, p3, 2) == 1.0);
}

static void test_auc_signs_and_zero(void **state)
{
    (void)state;
    /* negative, tiny and huge scores exercise every byte of the radix key */
    const float y[] = {0, 0, 0, 1, 1, 1};
    const float p[] = {-1e30f, -2.5f, -1e-30f, 1e-30f, 3.0f, 1e30f};
    assert_true(metric_auc(y, p, 6) == 1.0);
    const float p_rev[] = {1e30f, 3.0f, 1e-30f, -1e-30f, -2.5f, -1e30f};
    assert_true(metric_auc(y, p_rev, 6) == 0.0);
    /* -0.0 == +0.0 is a tie */
    const float y2[] = {0, 1}, p2[] = {0.0f, -0.0f};
    assert_true(metric_auc(y2, p2, 2) == 0.5);
}

static void test_auc_undefined(void **state)
{
    (void)state;
    const float ones[] = {1, 1, 1}, zeros[] = {0, 0, 0}, p[] = {0.1f, 0.5f, 0.9f};
    assert_true(isnan(metric_auc(ones, p, 3)));
    assert_true(isnan(metric_auc(zeros, p, 3)));
    assert_true(isnan(metric_auc(ones, p, 0)));
    const float y[] = {0, 1, 1}, pnan[] = {0.1f, NAN, 0.9f};
    assert_true(isnan(metric_auc(y, pnan, 3)));
}

/* Mann-Whitney by definition: every (positive, negative) pair. */
static double auc_brute(const float *y, const float *p, size_t n)
{
    double s = 0.0, pairs = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!(y[i] > 0.5f)) continue;
        for (size_t j = 0; j < n; j++) {
            if (y[j] > 0.5f) continue;
            s += p[i] > p[j] ? 1.0 : p[i] == p[j] ? 0.5 : 0.0;
            pairs += 1.0;
        }
    }
    return s / pairs;
}

static void test_auc_matches_brute_force(void **state)
{
    (void)state;
    enum { N = 700 };
    static float y[N], p[N];
    struct rng r;
    rng_seed(&r, 7);
    for (int round = 0; round < 20; round++) {
        /* few distinct scores (heavy ties) in early rounds, more later */
        uint64_t levels = round < 10 ? 3 + (uint64_t)round : 1000;
        for (int i = 0; i < N; i++) {
            y[i] = (float)(rng_uniform(&r) < 0.3f);
            p[i] = (float)rng_below(&r, levels) / (float)levels - 0.5f;
        }
        double want = auc_brute(y, p, N);
        assert_close(metric_auc(y, p, N), want, 1e-12);
    }
}

static void test_gauc(void **state)
{
    (void)state;
    /* group 7: AUC 1 over 2 rows; group -3: AUC 0.5 over 3 rows; group
     * INT32_MAX is all positive and INT32_MIN all negative, so skipped.
     * (2 * 1 + 3 * 0.5) / 5 = 0.7 */
    const int32_t g[] = {7, -3, INT32_MAX, -3, 7, INT32_MIN, -3, INT32_MAX};
    const float y[] = {0, 1, 1, 0, 1, 0, 0, 1};
    const float p[] = {0.1f, 0.2f, 0.5f, 0.8f, 0.9f, 0.4f, 0.1f, 0.3f};
    size_t used = 99;
    assert_close(metric_gauc(y, p, g, N_OF(y), &used), 0.7, 1e-15);
    assert_int_equal(used, 2);
    assert_close(metric_gauc(y, p, g, N_OF(y), NULL), 0.7, 1e-15);

    /* only one-class groups: NaN, none used */
    const int32_t g2[] = {1, 1, 2, 2};
    const float y2[] = {1, 1, 0, 0}, p2[] = {0.1f, 0.2f, 0.3f, 0.4f};
    used = 99;
    assert_true(isnan(metric_gauc(y2, p2, g2, 4, &used)));
    assert_int_equal(used, 0);
}

static void test_logloss(void **state)
{
    (void)state;
    /* confident and right: clipped, so each row costs -log(1 - 1e-7) */
    const float y[] = {1, 0}, p[] = {1.0f, 0.0f};
    assert_close(metric_logloss(y, p, 2), -log(1.0 - 1e-7), 1e-20);
    /* confident and wrong: -log(1e-7) instead of infinity */
    const float pw[] = {0.0f, 1.0f};
    assert_close(metric_logloss(y, pw, 2), -log(1e-7), 1e-9); /* 1 - (1 - 1e-7) rounds */
    const float y3[] = {1, 0, 1}, p3[] = {0.5f, 0.25f, 0.75f};
    assert_close(metric_logloss(y3, p3, 3), -(log(0.5) + log(0.75) + log(0.75)) / 3, 1e-15);
    assert_true(isnan(metric_logloss(y, p, 0)));
}

static void test_at_threshold(void **state)
{
    (void)state;
    const float y[] = {1, 0, 1, 0, 1}, p[] = {0.9f, 0.6f, 0.4f, 0.2f, 0.5f};
    /* p >= 0.5: rows 0, 1, 4 predicted positive; 0.5 itself counts */
    struct metric_cls m = metric_at_threshold(y, p, 5, 0.5);
    assert_int_equal(m.tp, 2);
    assert_int_equal(m.fp, 1);
    assert_int_equal(m.tn, 1);
    assert_int_equal(m.fn, 1);
    assert_close(m.accuracy, 0.6, 1e-15);
    assert_close(m.precision, 2.0 / 3, 1e-15);
    assert_close(m.recall, 2.0 / 3, 1e-15);
    assert_close(m.f1, 2.0 / 3, 1e-15);

    /* nothing predicted positive: precision/recall/F1 are 0, not NaN */
    m = metric_at_threshold(y, p, 5, 2.0);
    assert_int_equal(m.tp + m.fp, 0);
    assert_true(m.precision == 0.0 && m.recall == 0.0 && m.f1 == 0.0);
    assert_close(m.accuracy, 0.4, 1e-15);

    /* no positive labels and none predicted: still 0 */
    const float y0[] = {0, 0};
    m = metric_at_threshold(y0, p, 2, 2.0);
    assert_true(m.precision == 0.0 && m.recall == 0.0 && m.f1 == 0.0 && m.accuracy == 1.0);
}

static void test_regression_metrics(void **state)
{
    (void)state;
    const float y[] = {1, 2, 3}, p[] = {2, 2, 5};
    assert_close(metric_rmse(y, p, 3), sqrt(5.0 / 3), 1e-15);
    assert_close(metric_mae(y, p, 3), 1.0, 1e-15);
    assert_close(metric_calibration(y, p, 3), 1.5, 1e-15);
    const float y0[] = {0, 0}, p0[] = {0.5f, 0.5f};
    assert_true(isnan(metric_calibration(y0, p0, 2)));
    assert_true(isnan(metric_rmse(y, p, 0)));
    assert_true(isnan(metric_mae(y, p, 0)));
}

static void check_roc(const float *y, const float *p, size_t n, const double *wf,
                      const double *wt, const double *wh, size_t m)
{
    double *fpr, *tpr, *thr;
    size_t npts;
    assert_int_equal(metric_roc_curve(y, p, n, &fpr, &tpr, &thr, &npts), PT_OK);
    assert_int_equal(npts, m);
    for (size_t i = 0; i < m; i++) {
        if (isnan(wf[i])) {
            assert_true(isnan(fpr[i]));
        } else {
            assert_true(fpr[i] == wf[i]);
        }
        assert_true(tpr[i] == wt[i]);
        assert_true(thr[i] == wh[i]);
    }
    pt_free(fpr);
    pt_free(tpr);
    pt_free(thr);
}

static void test_roc_curve(void **state)
{
    (void)state;
    /* the roc_curve example from the scikit-learn documentation */
    const float y[] = {0, 0, 1, 1}, p[] = {0.1f, 0.4f, 0.35f, 0.8f};
    const double f[] = {0, 0, 0.5, 0.5, 1}, t[] = {0, 0.5, 0.5, 1, 1};
    const double h[] = {INFINITY, 0.8f, 0.4f, 0.35f, 0.1f};
    check_roc(y, p, 4, f, t, h, 5);

    /* a tie at 0.5 is one point */
    const float y2[] = {0, 1, 1, 0}, p2[] = {0.5f, 0.5f, 0.2f, 0.1f};
    const double f2[] = {0, 0.5, 0.5, 1}, t2[] = {0, 0.5, 1, 1}, h2[] = {INFINITY, 0.5, 0.2f, 0.1f};
    check_roc(y2, p2, 4, f2, t2, h2, 4);

    /* no negatives: fpr is NaN like sklearn's */
    const float y3[] = {1, 1}, p3[] = {0.3f, 0.6f};
    const double f3[] = {NAN, NAN, NAN}, t3[] = {0, 0.5, 1}, h3[] = {INFINITY, 0.6f, 0.3f};
    check_roc(y3, p3, 2, f3, t3, h3, 3);

    double *fpr = (double *)1, *tpr = (double *)1, *thr = (double *)1;
    size_t npts = 9;
    assert_int_equal(metric_roc_curve(y, p, 0, &fpr, &tpr, &thr, &npts), PT_EINVAL);
    assert_true(fpr == NULL && tpr == NULL && thr == NULL && npts == 0);
    const float pnan[] = {0.1f, NAN, 0.2f, 0.3f};
    assert_int_equal(metric_roc_curve(y, pnan, 4, &fpr, &tpr, &thr, &npts), PT_ENUMERIC);
    assert_non_null(strstr(pt_errmsg(), "row 1"));
}

static void test_alloc_failure(void **state)
{
    (void)state;
    const float y[] = {0, 1, 0, 1}, p[] = {0.1f, 0.2f, 0.3f, 0.4f};
    const int32_t g[] = {1, 1, 2, 2};

    pt_alloc_fail_at(1);
    assert_true(isnan(metric_auc(y, p, 4)));
    pt_alloc_fail_at(1);
    size_t used = 99;
    assert_true(isnan(metric_gauc(y, p, g, 4, &used)));
    assert_int_equal(used, 0);
    pt_alloc_fail_at(0);

    /* fail each allocation of the ROC curve in turn; ASan reports leaks */
    int failures = 0;
    for (long k = 1;; k++) {
        double *fpr, *tpr, *thr;
        size_t npts;
        pt_alloc_fail_at(k);
        int rc = metric_roc_curve(y, p, 4, &fpr, &tpr, &thr, &npts);
        pt_alloc_fail_at(0);
        if (rc == PT_OK) {
            assert_int_equal(npts, 5);
            pt_free(fpr);
            pt_free(tpr);
            pt_free(thr);
            break;
        }
        assert_int_equal(rc, PT_ENOMEM);
        assert_true(fpr == NULL && tpr == NULL && thr == NULL && npts == 0);
        assert_non_null(strstr(pt_errmsg(), "memory"));
        failures++;
        assert_true(k < 100);
    }
    assert_true(failures >= 2); /* the sort buffer and the output arrays */

    /* nothing leaks into the next call */
    assert_true(metric_auc(y, p, 4) == 0.75);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auc_basic),
        cmocka_unit_test(test_auc_signs_and_zero),
        cmocka_unit_test(test_auc_undefined),
        cmocka_unit_test(test_auc_matches_brute_force),
        cmocka_unit_test(test_gauc),
        cmocka_unit_test(test_logloss),
        cmocka_unit_test(test_at_threshold),
        cmocka_unit_test(test_regression_metrics),
        cmocka_unit_test(test_roc_curve),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
