/* test_warm_start.c: pt_train with opts.init_from (src/train/loop.c
 * warm_start). Embedding tables of vocabulary features are copied row by
 * value through the two vocabularies (ids differ between data sets: first-seen
 * order), the unknown row too, and values the source never saw keep their
 * fresh initial values; dense tensors of the same name and shape are copied;
 * tensors of another shape are left at init; a source sharing no tensor name
 * is PT_ESCHEMA naming the file; a missing or corrupted source is a clean
 * negative code. Training runs after the warm start use lr 1e-9 so the
 * weights are, in effect, what the warm start left. The configs have no
 * valid or test data, which also covers final_report's empty "tasks" object
 * (it leaked once; LeakSanitizer watches it here). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tmpdir.h"

#include "polytask.h"
#include "data/config.h"
#include "data/schema.h"
#include "data/vocab.h"
#include "models/model.h"

static char tmpdir[256];
static char path_a[512], path_b[512], model_a[512], model_lr[512];

/* ---- files --------------------------------------------------------------- */

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    uint8_t *b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Data A: c first seen x, y, z. Data B: c first seen z, w, x (w new, y absent). */
static const char data_a[] = "c,n,y\n"
                             "x,1.0,1\n"
                             "y,2.0,0\n"
                             "z,3.0,1\n"
                             "x,0.5,0\n"
                             "y,1.5,1\n"
                             "z,2.5,0\n"
                             "x,4.0,1\n"
                             "y,0.0,0\n";
static const char data_b[] = "c,n,y\n"
                             "z,1.0,1\n"
                             "w,2.0,0\n"
                             "x,3.0,1\n"
                             "z,0.5,0\n"
                             "w,1.5,1\n"
                             "x,2.5,0\n"
                             "z,4.0,1\n"
                             "w,0.0,0\n";

/* ---- config and training ------------------------------------------------- */

static pt_config *make_cfg(const char *train, const char *kind, const char *task, int expert_dim, const char *lr)
{
    char y[2048];
    snprintf(y, sizeof y,
             "data: {train: \"%s\"}\n"
             "features: {categorical: [{name: c, dim: 3}], numeric: [n]}\n"
             "tasks:\n  - {name: %s, label: y}\n"
             "model: {kind: %s, experts: 2, expert_dims: [%d], tower_dims: [3], hidden: []}\n"
             "train: {epochs: 1, batch: 4, optimizer: {lr: %s}}\n",
             train, task, kind, expert_dim, lr);
    char cp[512];
    tmp_path(cp, sizeof cp, "c.yaml");
    struct pt_config *c = NULL;
    int rc = config_parse(y, strlen(y), cp, &c);
    if (rc) fail_msg("config_parse: %s", pt_errmsg());
    return c;
}

static int train(pt_config *cfg, const char *init_from, pt_model **out)
{
    pt_train_opts o = pt_train_opts_default();
    o.init_from = init_from;
    int rc = pt_train(cfg, &o, out);
    pt_config_free(cfg);
    return rc;
}

static const struct param *param_named(const struct model *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->p[i].name, name)) return &m->p[i];
    fail_msg("no parameter '%s'", name);
    return NULL;
}

static const struct feat_state *feat_named(const struct model *m, const char *name)
{
    for (int i = 0; i < m->schema->nfeat; i++)
        if (!strcmp(m->schema->f[i].cfg->name, name)) return &m->schema->f[i];
    fail_msg("no feature '%s'", name);
    return NULL;
}

/* Row of value v in m's table emb.c (id k → row k + 1; NULL → unknown row 0). */
static const float *emb_row(const struct model *m, const char *v)
{
    const struct param *p = param_named(m, "emb.c");
    int64_t row = 0;
    if (v) {
        int32_t k = vocab_find(&feat_named(m, "c")->vocab, v, strlen(v));
        if (k < 0) fail_msg("value '%s' not in the vocabulary", v);
        row = k + 1;
    }
    assert_true(row < p->rows);
    return m->w + p->off + (size_t)row * (size_t)p->cols;
}

static double max_diff(const float *a, const float *b, int64_t n)
{
    double d = 0;
    for (int64_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - (double)b[i]));
    return d;
}

static double tensor_diff(const struct model *a, const struct model *b, const char *name)
{
    const struct param *pa = param_named(a, name), *pb = param_named(b, name);
    assert_int_equal(pa->rows, pb->rows);
    assert_int_equal(pa->cols, pb->cols);
    return max_diff(a->w + pa->off, b->w + pb->off, pa->rows * pa->cols);
}

/* Log lines at WARN and above, collected for checks. */
static char warn_log[8192];
static void log_cb(int level, const char *msg, void *user)
{
    (void)user;
    if (level < PT_LOG_WARN) return;
    size_t n = strlen(warn_log);
    snprintf(warn_log + n, sizeof warn_log - n, "%s\n", msg);
}

/* ---- fixture: the two data files, model A (mmoe) and an lr model -------- */

static int setup(void **state)
{
    (void)state;
    if (tmpdir_make(tmpdir, sizeof tmpdir, "warm")) return -1;
    tmp_path(path_a, sizeof path_a, "a.csv");
    tmp_path(path_b, sizeof path_b, "b.csv");
    tmp_path(model_a, sizeof model_a, "a.ptm");
    tmp_path(model_lr, sizeof model_lr, "lr.ptm");
    spit(path_a, data_a, sizeof data_a - 1);
    spit(path_b, data_b, sizeof data_b - 1);
    pt_set_log_callback(log_cb, NULL);

    pt_model *a = NULL, *l = NULL;
    if (train(make_cfg(path_a, "mmoe", "t", 4, "0.001"), NULL, &a)) return -1;
    int rc = pt_model_save(a, model_a);
    pt_model_free(a);
    if (rc) return -1;
    /* lr model, another task name: no tensor name in common with mmoe's */
    if (train(make_cfg(path_a, "lr", "other", 4, "0.001"), NULL, &l)) return -1;
    rc = pt_model_save(l, model_lr);
    pt_model_free(l);
    return rc ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    tmpdir_remove(tmpdir);
    return 0;
}

/* ---- 1. by-value copy of the table, dense copy --------------------------- */

static void test_rows_by_value(void **state)
{
    (void)state;
    pt_model *ha = NULL, *hb = NULL;
    assert_int_equal(pt_model_load(model_a, &ha), PT_OK);
    if (train(make_cfg(path_b, "mmoe", "t", 4, "1e-9"), model_a, &hb)) fail_msg("pt_train B: %s", pt_errmsg());
    const struct model *a = (const struct model *)ha, *b = (const struct model *)hb;
    const struct param *ea = param_named(a, "emb.c"), *eb = param_named(b, "emb.c");
    int64_t D = eb->cols;
    assert_int_equal(D, 3);
    assert_int_equal(ea->cols, 3);
    assert_int_equal(ea->rows, 4); /* unknown, x, y, z */
    assert_int_equal(eb->rows, 4); /* unknown, z, w, x */

    /* the vocabularies really do order the values differently */
    const struct feat_state *fa = feat_named(a, "c"), *fb = feat_named(b, "c");
    assert_true(vocab_find(&fa->vocab, "x", 1) != vocab_find(&fb->vocab, "x", 1));
    assert_true(vocab_find(&fa->vocab, "z", 1) != vocab_find(&fb->vocab, "z", 1));
    assert_int_equal(vocab_find(&fa->vocab, "w", 1), -1);
    assert_int_equal(vocab_find(&fb->vocab, "y", 1), -1);

    assert_true(max_diff(emb_row(b, "x"), emb_row(a, "x"), D) <= 1e-6);
    assert_true(max_diff(emb_row(b, "z"), emb_row(a, "z"), D) <= 1e-6);
    assert_true(max_diff(emb_row(b, NULL), emb_row(a, NULL), D) <= 1e-6);
    /* w: fresh, unlike every row of A */
    for (int64_t r = 0; r < ea->rows; r++)
        assert_true(max_diff(emb_row(b, "w"), a->w + ea->off + (size_t)(r * D), D) > 1e-5);
    /* not an id-for-id copy: B's row of x is not A's row at the same index */
    int64_t bx = vocab_find(&fb->vocab, "x", 1) + 1;
    assert_true(max_diff(emb_row(b, "x"), a->w + ea->off + (size_t)(bx * D), D) > 1e-5);

    /* dense tensors of the same name and shape */
    assert_true(tensor_diff(a, b, "expert0.fc0.weight") <= 1e-6);
    assert_true(tensor_diff(a, b, "expert1.fc0.bias") <= 1e-6);
    assert_true(tensor_diff(a, b, "gate.t.weight") <= 1e-6);
    assert_true(tensor_diff(a, b, "tower.t.fc0.weight") <= 1e-6);
    pt_model_free(ha);
    pt_model_free(hb);
}

/* ---- 2. mismatches --------------------------------------------------------- */

static void test_shape_mismatch_left_at_init(void **state)
{
    (void)state;
    pt_model *ha = NULL, *hc0 = NULL, *hc1 = NULL;
    assert_int_equal(pt_model_load(model_a, &ha), PT_OK);
    /* expert_dims [5] instead of [4]: same seed, without and with the warm start */
    if (train(make_cfg(path_b, "mmoe", "t", 5, "1e-9"), NULL, &hc0)) fail_msg("pt_train C0: %s", pt_errmsg());
    warn_log[0] = 0;
    if (train(make_cfg(path_b, "mmoe", "t", 5, "1e-9"), model_a, &hc1)) fail_msg("pt_train C1: %s", pt_errmsg());
    const struct model *a = (const struct model *)ha, *c0 = (const struct model *)hc0, *c1 = (const struct model *)hc1;

    /* experts (and the tower that reads them) have another shape: left at init */
    assert_int_equal(param_named(c1, "expert0.fc0.weight")->rows, 5);
    assert_true(tensor_diff(c0, c1, "expert0.fc0.weight") <= 1e-6);
    assert_true(tensor_diff(c0, c1, "expert1.fc0.bias") <= 1e-6);
    assert_true(tensor_diff(c0, c1, "tower.t.fc0.weight") <= 1e-6);
    assert_non_null(strstr(warn_log, "expert0.fc0.weight"));
    assert_non_null(strstr(warn_log, model_a));
    /* what still matches was copied */
    assert_true(tensor_diff(a, c1, "gate.t.weight") <= 1e-6);
    assert_true(tensor_diff(c0, c1, "gate.t.weight") > 1e-5);
    assert_true(max_diff(emb_row(c1, "x"), emb_row(a, "x"), 3) <= 1e-6);
    pt_model_free(ha);
    pt_model_free(hc0);
    pt_model_free(hc1);
}

static void test_no_common_tensor(void **state)
{
    (void)state;
    pt_model *m = (pt_model *)(uintptr_t)1;
    int rc = train(make_cfg(path_b, "mmoe", "t", 4, "1e-9"), model_lr, &m);
    assert_int_equal(rc, PT_ESCHEMA);
    assert_null(m);
    assert_non_null(strstr(pt_errmsg(), model_lr));
}

/* ---- 3. missing or damaged source ----------------------------------------- */

static void expect_fail(const char *src)
{
    pt_model *m = (pt_model *)(uintptr_t)1;
    int rc = train(make_cfg(path_b, "mmoe", "t", 4, "1e-9"), src, &m);
    assert_true(rc < 0);
    assert_null(m);
    assert_true(pt_errmsg()[0] != 0);
}

static void test_bad_source(void **state)
{
    (void)state;
    char p[512];
    tmp_path(p, sizeof p, "missing.ptm");
    expect_fail(p);

    size_t n;
    uint8_t *b = slurp(model_a, &n);
    /* one flipped byte in the tensor data */
    tmp_path(p, sizeof p, "flipped.ptm");
    b[n - n / 4] ^= 0x5a;
    spit(p, b, n);
    expect_fail(p);
    b[n - n / 4] ^= 0x5a;
    /* truncated */
    tmp_path(p, sizeof p, "short.ptm");
    spit(p, b, n / 2);
    expect_fail(p);
    /* empty */
    tmp_path(p, sizeof p, "empty.ptm");
    spit(p, b, 0);
    expect_fail(p);
    /* not a model file at all */
    expect_fail(path_a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_by_value),
        cmocka_unit_test(test_shape_mismatch_left_at_init),
        cmocka_unit_test(test_no_common_tensor),
        cmocka_unit_test(test_bad_source),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
