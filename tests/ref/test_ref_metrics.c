/* test_ref_metrics.c: compares src/eval/metrics.c with scikit-learn on the
 * fixtures written by tests/ref/gen_metrics.py (format described there).
 * AUC/GAUC must agree to 1e-12 relative (ours is exact up to one division,
 * sklearn's trapezoid sum rounds a little), the other metrics to 1e-9, counts
 * and ROC points exactly. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eval/metrics.h"
#include "util/util.h"

#define FIXTURE_DIR PT_SOURCE_DIR "/tests/ref/fixtures/metrics/"

struct rows {
    size_t n;
    float *y, *p;
    int32_t *g;
};

static void check_rel(const char *file, const char *what, double got, double want, double tol)
{
    double err = fabs(got - want), scale = fabs(want) > 1.0 ? fabs(want) : 1.0;
    if (isnan(want) && isnan(got)) return;
    if (!(err <= tol * scale)) fail_msg("%s: %s = %.17g, sklearn %.17g (diff %.3g)", file, what, got, want, err);
}

static void read_double(FILE *f, const char *file, double *v)
{
    if (fscanf(f, "%lf", v) != 1) fail_msg("%s: expected a number", file);
}

/* Reads rows "y p g" after "n N". Buffers via pt_malloc, freed by rows_free. */
static void read_rows(FILE *f, const char *file, struct rows *r)
{
    unsigned long n;
    if (fscanf(f, " n %lu", &n) != 1 || n == 0) fail_msg("%s: missing 'n <rows>'", file);
    r->n = n;
    r->y = pt_malloc(n * sizeof *r->y);
    r->p = pt_malloc(n * sizeof *r->p);
    r->g = pt_malloc(n * sizeof *r->g);
    assert_non_null(r->y);
    assert_non_null(r->p);
    assert_non_null(r->g);
    for (size_t i = 0; i < n; i++) {
        long g;
        /* %f parses with strtof: the fixture prints float32 round-trip text */
        if (fscanf(f, "%f %f %ld", &r->y[i], &r->p[i], &g) != 3)
            fail_msg("%s: bad row %zu", file, i + 1);
        r->g[i] = (int32_t)g;
    }
}

static void rows_free(struct rows *r)
{
    pt_free(r->y);
    pt_free(r->p);
    pt_free(r->g);
}

static void check_roc(FILE *f, const char *file, const struct rows *r)
{
    unsigned long m;
    if (fscanf(f, "%lu", &m) != 1) fail_msg("%s: bad 'roc' count", file);
    double *fpr, *tpr, *thr;
    size_t npts;
    assert_int_equal(metric_roc_curve(r->y, r->p, r->n, &fpr, &tpr, &thr, &npts), PT_OK);
    if (npts != m) fail_msg("%s: roc has %zu points, sklearn %lu", file, npts, m);
    for (size_t i = 0; i < m; i++) {
        double wf, wt;
        float wh;
        read_double(f, file, &wf);
        read_double(f, file, &wt);
        if (fscanf(f, "%f", &wh) != 1) fail_msg("%s: bad roc threshold", file);
        /* fp/neg and tp/pos are one correctly rounded division on both sides */
        if (fpr[i] != wf || tpr[i] != wt || thr[i] != (double)wh)
            fail_msg("%s: roc point %zu = (%.17g, %.17g, %.9g), sklearn (%.17g, %.17g, %.9g)", file,
                     i, fpr[i], tpr[i], thr[i], wf, wt, (double)wh);
    }
    pt_free(fpr);
    pt_free(tpr);
    pt_free(thr);
}

/* Runs every record of one fixture; returns how many metrics were compared. */
static int check_fixture(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, FIXTURE_DIR "%s", name);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s (run tests/ref/gen_metrics.py)", path);
    int c;
    while ((c = fgetc(f)) == '#') /* skip the comment header lines */
        while ((c = fgetc(f)) != '\n' && c != EOF) {}
    ungetc(c, f);
    struct rows r;
    read_rows(f, name, &r);
    int checked = 0;
    char key[32];
    for (;;) {
        if (fscanf(f, "%31s", key) != 1) fail_msg("%s: missing 'end'", name);
        if (!strcmp(key, "end")) break;
        double want;
        if (!strcmp(key, "auc")) {
            read_double(f, name, &want);
            check_rel(name, "auc", metric_auc(r.y, r.p, r.n), want, 1e-12);
        } else if (!strcmp(key, "gauc")) {
            unsigned long want_used;
            size_t used;
            read_double(f, name, &want);
            if (fscanf(f, "%lu", &want_used) != 1) fail_msg("%s: bad gauc line", name);
            check_rel(name, "gauc", metric_gauc(r.y, r.p, r.g, r.n, &used), want, 1e-12);
            if (used != want_used) fail_msg("%s: gauc used %zu groups, sklearn %lu", name, used, want_used);
        } else if (!strcmp(key, "logloss")) {
            read_double(f, name, &want);
            check_rel(name, "logloss", metric_logloss(r.y, r.p, r.n), want, 1e-9);
        } else if (!strcmp(key, "cls")) {
            double thr, acc, prec, rec, f1;
            long long tp, fp, tn, fn;
            read_double(f, name, &thr);
            if (fscanf(f, "%lf %lf %lf %lf %lld %lld %lld %lld", &acc, &prec, &rec, &f1, &tp, &fp,
                       &tn, &fn) != 8)
                fail_msg("%s: bad cls line", name);
            struct metric_cls m = metric_at_threshold(r.y, r.p, r.n, thr);
            check_rel(name, "accuracy", m.accuracy, acc, 1e-9);
            check_rel(name, "precision", m.precision, prec, 1e-9);
            check_rel(name, "recall", m.recall, rec, 1e-9);
            check_rel(name, "f1", m.f1, f1, 1e-9);
            if (m.tp != tp || m.fp != fp || m.tn != tn || m.fn != fn)
                fail_msg("%s: counts at %g differ", name, thr);
        } else if (!strcmp(key, "calibration")) {
            read_double(f, name, &want);
            check_rel(name, "calibration", metric_calibration(r.y, r.p, r.n), want, 1e-9);
        } else if (!strcmp(key, "rmse")) {
            read_double(f, name, &want);
            check_rel(name, "rmse", metric_rmse(r.y, r.p, r.n), want, 1e-9);
        } else if (!strcmp(key, "mae")) {
            read_double(f, name, &want);
            check_rel(name, "mae", metric_mae(r.y, r.p, r.n), want, 1e-9);
        } else if (!strcmp(key, "roc")) {
            check_roc(f, name, &r);
        } else {
            fail_msg("%s: unknown record '%s'", name, key);
        }
        checked++;
    }
    rows_free(&r);
    fclose(f);
    return checked;
}

/* auc, gauc, logloss, 4 x cls, roc, calibration, rmse, mae */
#define CLASSIFICATION_RECORDS 11

static void test_ties_2dp(void **state)
{
    (void)state;
    assert_int_equal(check_fixture("ties_2dp.txt"), CLASSIFICATION_RECORDS);
}

static void test_ties_1dp(void **state)
{
    (void)state;
    assert_int_equal(check_fixture("ties_1dp.txt"), CLASSIFICATION_RECORDS);
}

static void test_imbalanced(void **state)
{
    (void)state;
    assert_int_equal(check_fixture("imbalanced.txt"), CLASSIFICATION_RECORDS);
}

static void test_regression(void **state)
{
    (void)state;
    assert_int_equal(check_fixture("regression.txt"), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ties_2dp),
        cmocka_unit_test(test_ties_1dp),
        cmocka_unit_test(test_imbalanced),
        cmocka_unit_test(test_regression),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
