/* test_ref_layers.c: our layers (src/nn/nn.h) and optimisers
 * (src/train/optim.h) against the PyTorch fixtures that tests/ref/
 * gen_layers.py writes to tests/ref/fixtures/layers/: forward outputs,
 * input and parameter gradients, optimiser trajectories (weights and moments
 * after each of 3 steps) and the first 5 losses + final parameters of a tiny
 * embedding + MLP model trained with dense Adam.
 *
 * Tolerance: |ours - torch| <= 1e-5 + 1e-4 * |torch| (the fixtures hold the
 * float64 answer rounded to float32; ours is float32 throughout). Losses of
 * the tiny model: relative 1e-4.
 *
 * Also checks the header contracts the fixtures alone cannot: backward ADDS
 * into gradients (buffers start non-zero), row strides (ldy/ldo/lddy/ld) leave
 * the other columns alone, NULL input gradients are skipped, optimisers zero
 * the gradients they consume. Does not: test other backends or thread counts
 * (the gemm backend compiled in is the one under test). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nn/nn.h"
#include "ref/fixture.h"
#include "train/optim.h"

#define FIXTURE_DIR PT_SOURCE_DIR "/tests/ref/fixtures/layers/"
#include "ref/ref_test.h"

/* ---- layers ---- */

static void test_linear(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "linear");
    const struct fx_array *xa = arr(&fx, "x"), *Wa = arr(&fx, "W");
    const int B = xa->dims[0], I = xa->dims[1], O = Wa->dims[0];
    assert_int_equal(Wa->dims[1], I);
    const float *x = get(&fx, "x", (size_t)B * I), *W = get(&fx, "W", (size_t)O * I);
    const float *b = get(&fx, "b", O), *y_want = get(&fx, "y", (size_t)B * O);
    const float *dy = get(&fx, "dy", (size_t)B * O);
    const int ld = O + 2; /* write into a wider buffer at column 1 */

    float *ybuf = fill((size_t)B * ld, SENTINEL), *y = fill((size_t)B * O, 0);
    nn_linear_forward(ybuf + 1, ld, x, W, b, B, I, O);
    assert_padding(ybuf, B, ld, 1, O);
    unstride(y, ybuf, B, ld, 1, O);
    EXPECT_CLOSE("linear y", y, y_want, (size_t)B * O);

    /* Backward adds: gradients start at non-zero values; dy read at stride ld. */
    float *dybuf = fill((size_t)B * ld, SENTINEL);
    restride(dybuf, dy, B, ld, 1, O);
    float *dx = fill((size_t)B * I, 0.5f), *dW = fill((size_t)O * I, 0.25f), *db = fill(O, -0.5f);
    nn_linear_backward(dx, dW, db, dybuf + 1, ld, x, W, B, I, O);
    float *e_dx = plus(get(&fx, "dx", (size_t)B * I), (size_t)B * I, 0.5f);
    float *e_dW = plus(get(&fx, "dW", (size_t)O * I), (size_t)O * I, 0.25f);
    float *e_db = plus(get(&fx, "db", O), O, -0.5f);
    EXPECT_CLOSE("linear dx", dx, e_dx, (size_t)B * I);
    EXPECT_CLOSE("linear dW", dW, e_dW, (size_t)O * I);
    EXPECT_CLOSE("linear db", db, e_db, O);

    /* dx NULL: parameter gradients still accumulate (now twice the torch value). */
    nn_linear_backward(NULL, dW, db, dybuf + 1, ld, x, W, B, I, O);
    const float *tdW = get(&fx, "dW", (size_t)O * I), *tdb = get(&fx, "db", O);
    for (int i = 0; i < O * I; i++) e_dW[i] += tdW[i];
    for (int i = 0; i < O; i++) e_db[i] += tdb[i];
    EXPECT_CLOSE("linear dW (2nd pass, dx NULL)", dW, e_dW, (size_t)O * I);
    EXPECT_CLOSE("linear db (2nd pass, dx NULL)", db, e_db, O);

    free(ybuf), free(y), free(dybuf), free(dx), free(dW), free(db);
    free(e_dx), free(e_dW), free(e_db);
    fixture_free(&fx);
}

static void test_embedding(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "embedding");
    const struct fx_array *ta = arr(&fx, "table");
    const int V = ta->dims[0], D = ta->dims[1], B = (int)arr(&fx, "ids")->n;
    const float *table = get(&fx, "table", (size_t)V * D);
    int32_t *ids = get_ids(&fx, "ids", B);
    const int ld = D + 3;

    float *obuf = fill((size_t)B * ld, SENTINEL), *out = fill((size_t)B * D, 0);
    nn_embedding_forward(obuf + 2, ld, table, ids, B, D);
    assert_padding(obuf, B, ld, 2, D);
    unstride(out, obuf, B, ld, 2, D);
    EXPECT_CLOSE("embedding out", out, get(&fx, "out", (size_t)B * D), (size_t)B * D);

    float *dobuf = fill((size_t)B * ld, SENTINEL);
    restride(dobuf, get(&fx, "dout", (size_t)B * D), B, ld, 2, D);
    float *dtable = fill((size_t)V * D, 0.125f);
    nn_embedding_backward(dtable, dobuf + 2, ld, ids, B, D);
    float *e = plus(get(&fx, "dtable", (size_t)V * D), (size_t)V * D, 0.125f);
    EXPECT_CLOSE("embedding dtable", dtable, e, (size_t)V * D);

    /* nn_unique_rows_inv: sorted unique ids (the rows a sparse update
     * touches); the backward into the compact gradient they index, scattered
     * back, is the table's gradient. */
    int32_t *rows = malloc((size_t)B * sizeof *rows), *inv = malloc((size_t)B * sizeof *inv);
    uint64_t *keys = malloc(2 * (size_t)B * sizeof *keys);
    assert_true(rows && inv && keys);
    int nu = nn_unique_rows_inv(rows, inv, ids, B, keys);
    float *dc = fill((size_t)nu * D, 0.0f), *dfull = fill((size_t)V * D, 0.125f);
    nn_embedding_backward(dc, dobuf + 2, ld, inv, B, D);
    for (int r = 0; r < nu; r++)
        for (int d = 0; d < D; d++) dfull[(size_t)rows[r] * D + (size_t)d] += dc[(size_t)r * D + (size_t)d];
    EXPECT_CLOSE("embedding compact dtable", dfull, e, (size_t)V * D);
    int k = 0;
    for (int v = 0; v < V; v++) {
        int seen = 0;
        for (int i = 0; i < B; i++) seen |= ids[i] == v;
        if (!seen) continue;
        assert_true(k < nu);
        assert_int_equal(rows[k], v);
        k++;
    }
    assert_int_equal(nu, k);

    free(obuf), free(out), free(dobuf), free(dtable), free(e), free(ids), free(rows), free(inv), free(keys);
    free(dc), free(dfull);
    fixture_free(&fx);
}

static void test_embedding_bag(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "embedding_bag");
    const struct fx_array *ta = arr(&fx, "table");
    const int V = ta->dims[0], D = ta->dims[1];
    const int n = (int)arr(&fx, "ids")->n, B = (int)arr(&fx, "off")->n - 1;
    const float *table = get(&fx, "table", (size_t)V * D);
    const float *dout = get(&fx, "dout", (size_t)B * D);
    int32_t *ids = get_ids(&fx, "ids", n), *off = get_ids(&fx, "off", B + 1);
    const int ld = D + 1;

    for (int mean = 0; mean <= 1; mean++) {
        char name[32], what[96];
        float *obuf = fill((size_t)B * ld, SENTINEL), *out = fill((size_t)B * D, 0);
        nn_embedding_bag_forward(obuf, ld, table, off, ids, B, D, mean);
        assert_padding(obuf, B, ld, 0, D);
        unstride(out, obuf, B, ld, 0, D);
        snprintf(name, sizeof name, "out_%s", mean ? "mean" : "sum");
        snprintf(what, sizeof what, "embedding_bag %s", name);
        EXPECT_CLOSE(what, out, get(&fx, name, (size_t)B * D), (size_t)B * D);

        float *dobuf = fill((size_t)B * ld, SENTINEL);
        restride(dobuf, dout, B, ld, 0, D);
        float *dtable = fill((size_t)V * D, -0.25f);
        nn_embedding_bag_backward(dtable, dobuf, ld, off, ids, B, D, mean);
        snprintf(name, sizeof name, "dtable_%s", mean ? "mean" : "sum");
        snprintf(what, sizeof what, "embedding_bag %s", name);
        float *e = plus(get(&fx, name, (size_t)V * D), (size_t)V * D, -0.25f);
        EXPECT_CLOSE(what, dtable, e, (size_t)V * D);
        free(obuf), free(out), free(dobuf), free(dtable), free(e);
    }
    free(ids), free(off);
    fixture_free(&fx);
}

static void test_relu(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "relu");
    const size_t N = arr(&fx, "x")->n;
    float *y = fill(N, SENTINEL), *dx = fill(N, 0.5f);
    nn_relu_forward(y, get(&fx, "x", N), N);
    EXPECT_CLOSE("relu y", y, get(&fx, "y", N), N);
    nn_relu_backward(dx, get(&fx, "dy", N), y, N);
    float *e = plus(get(&fx, "dx", N), N, 0.5f);
    EXPECT_CLOSE("relu dx", dx, e, N);
    free(y), free(dx), free(e);
    fixture_free(&fx);
}

static void test_dropout(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "dropout");
    const size_t N = arr(&fx, "x")->n;
    const float p = fixture_scalar(&fx, "p");
    const float *x = get(&fx, "x", N), *mask = get(&fx, "mask", N);

    /* Backward with torch's mask. */
    float *dx = fill(N, 0.5f);
    nn_dropout_backward(dx, get(&fx, "dy", N), mask, N);
    float *e = plus(get(&fx, "dx", N), N, 0.5f);
    EXPECT_CLOSE("dropout dx", dx, e, N);

    /* The fixture's y = x * mask is the inverted-dropout forward for that mask;
     * ours draws its own mask, so check that mask's values and y = x * mask. */
    float *y = fill(N, SENTINEL), *m = fill(N, SENTINEL), *ym = fill(N, 0);
    struct rng r;
    rng_seed(&r, 42);
    nn_dropout_forward(y, m, x, N, p, &r);
    const float keep_scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < N; i++) {
        assert_true(m[i] == 0.0f || fabsf(m[i] - keep_scale) <= 1e-6f * keep_scale);
        ym[i] = x[i] * m[i];
    }
    EXPECT_CLOSE("dropout y = x * own mask", y, ym, N);
    for (size_t i = 0; i < N; i++) ym[i] = x[i] * mask[i];
    EXPECT_CLOSE("dropout y = x * torch mask", ym, get(&fx, "y", N), N);

    /* p == 0 copies x and fills mask with 1. */
    nn_dropout_forward(y, m, x, N, 0.0f, &r);
    for (size_t i = 0; i < N; i++) {
        assert_true(y[i] == x[i]);
        assert_true(m[i] == 1.0f);
    }

    /* Keep rate over many units is 1 - p (binomial sd ~0.0014 at n = 1e5). */
    const size_t NL = 100000;
    float *xl = fill(NL, 1.0f), *yl = fill(NL, 0), *ml = fill(NL, 0);
    nn_dropout_forward(yl, ml, xl, NL, p, &r);
    size_t kept = 0;
    for (size_t i = 0; i < NL; i++) kept += ml[i] != 0.0f;
    double rate = (double)kept / (double)NL;
    if (fabs(rate - (1.0 - p)) > 0.01) fprintf(stderr, "dropout keep rate %g, p %g\n", rate, (double)p);
    assert_true(fabs(rate - (1.0 - p)) <= 0.01);

    free(dx), free(e), free(y), free(m), free(ym), free(xl), free(yl), free(ml);
    fixture_free(&fx);
}

static void test_concat(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "concat");
    enum { NX = 3 };
    int widths[NX];
    int32_t w32[NX];
    assert_int_equal(fixture_get_i32(&fx, "widths", w32, NX), 0);
    const int B = arr(&fx, "x0")->dims[0];
    int W = 0;
    for (int i = 0; i < NX; i++) widths[i] = w32[i], W += w32[i];
    const float *xs[NX];
    float *dxs[NX], *e[NX];
    for (int i = 0; i < NX; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        xs[i] = get(&fx, name, (size_t)B * widths[i]);
        dxs[i] = fill((size_t)B * widths[i], 0.5f);
        snprintf(name, sizeof name, "dx%d", i);
        e[i] = plus(get(&fx, name, (size_t)B * widths[i]), (size_t)B * widths[i], 0.5f);
    }
    float *out = fill((size_t)B * W, SENTINEL);
    nn_concat_forward(out, xs, widths, NX, B);
    EXPECT_CLOSE("concat out", out, get(&fx, "out", (size_t)B * W), (size_t)B * W);

    const float *dout = get(&fx, "dout", (size_t)B * W);
    nn_concat_backward(dxs, dout, widths, NX, B);
    for (int i = 0; i < NX; i++) EXPECT_CLOSE("concat dx", dxs[i], e[i], (size_t)B * widths[i]);

    /* A NULL entry is skipped; the others accumulate again. */
    float *dxs2[NX] = {dxs[0], NULL, dxs[2]};
    nn_concat_backward(dxs2, dout, widths, NX, B);
    for (int i = 0; i < NX; i += 2) {
        char name[16];
        snprintf(name, sizeof name, "dx%d", i);
        const float *t = get(&fx, name, (size_t)B * widths[i]);
        for (int j = 0; j < B * widths[i]; j++) e[i][j] += t[j];
        EXPECT_CLOSE("concat dx (2nd pass)", dxs[i], e[i], (size_t)B * widths[i]);
    }
    for (int i = 0; i < NX; i++) free(dxs[i]), free(e[i]);
    free(out);
    fixture_free(&fx);
}

static void test_softmax(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "softmax");
    const struct fx_array *xa = arr(&fx, "x");
    const int B = xa->dims[0], C = xa->dims[1];
    const size_t N = (size_t)B * C;
    float *y = fill(N, SENTINEL), *dx = fill(N, 0.5f);
    nn_softmax_forward(y, get(&fx, "x", N), B, C);
    EXPECT_CLOSE("softmax y", y, get(&fx, "y", N), N);
    nn_softmax_backward(dx, get(&fx, "dy", N), y, B, C);
    float *e = plus(get(&fx, "dx", N), N, 0.5f);
    EXPECT_CLOSE("softmax dx", dx, e, N);
    free(y), free(dx), free(e);
    fixture_free(&fx);
}

/* Loss fixtures (bce, mse): logits/preds and labels in column 1 of [B, 3]. */
enum { LOSS_LD = 3, LOSS_COL = 1 };

static void test_bce(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "bce");
    const int B = (int)arr(&fx, "logit")->n;
    const float scale = fixture_scalar(&fx, "scale");
    float *lg = fill((size_t)B * LOSS_LD, SENTINEL), *y = fill((size_t)B * LOSS_LD, SENTINEL);
    restride(lg, get(&fx, "logit", B), B, LOSS_LD, LOSS_COL, 1);
    restride(y, get(&fx, "y", B), B, LOSS_LD, LOSS_COL, 1);
    float *pbuf = fill((size_t)B * LOSS_LD, SENTINEL), *p = fill(B, 0);

    int count = -1;
    double loss = nn_bce_forward(pbuf + LOSS_COL, lg + LOSS_COL, y + LOSS_COL, B, LOSS_LD, &count);
    assert_int_equal(count, (int)fixture_scalar(&fx, "count"));
    float lossf = (float)loss;
    EXPECT_CLOSE("bce loss (sum)", &lossf, get(&fx, "loss", 1), 1);
    assert_padding(pbuf, B, LOSS_LD, LOSS_COL, 1);
    unstride(p, pbuf, B, LOSS_LD, LOSS_COL, 1);
    EXPECT_CLOSE("bce p (all rows)", p, get(&fx, "p", B), B);

    /* p NULL is allowed and gives the same loss. */
    count = -1;
    double loss2 = nn_bce_forward(NULL, lg + LOSS_COL, y + LOSS_COL, B, LOSS_LD, &count);
    assert_true(loss2 == loss);
    assert_int_equal(count, (int)fixture_scalar(&fx, "count"));

    float *dl = fill((size_t)B * LOSS_LD, SENTINEL), *d = fill(B, 0);
    for (int b = 0; b < B; b++) dl[(size_t)b * LOSS_LD + LOSS_COL] = 0.5f;
    nn_bce_backward(dl + LOSS_COL, lg + LOSS_COL, y + LOSS_COL, B, LOSS_LD, scale);
    assert_padding(dl, B, LOSS_LD, LOSS_COL, 1);
    unstride(d, dl, B, LOSS_LD, LOSS_COL, 1);
    float *e = plus(get(&fx, "dlogit", B), B, 0.5f);
    EXPECT_CLOSE("bce dlogit", d, e, B);
    free(lg), free(y), free(pbuf), free(p), free(dl), free(d), free(e);
    fixture_free(&fx);
}

static void test_mse(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "mse");
    const int B = (int)arr(&fx, "pred")->n;
    const float scale = fixture_scalar(&fx, "scale");
    float *pr = fill((size_t)B * LOSS_LD, SENTINEL), *y = fill((size_t)B * LOSS_LD, SENTINEL);
    restride(pr, get(&fx, "pred", B), B, LOSS_LD, LOSS_COL, 1);
    restride(y, get(&fx, "y", B), B, LOSS_LD, LOSS_COL, 1);

    int count = -1;
    float lossf = (float)nn_mse_forward(pr + LOSS_COL, y + LOSS_COL, B, LOSS_LD, &count);
    assert_int_equal(count, (int)fixture_scalar(&fx, "count"));
    EXPECT_CLOSE("mse loss (sum)", &lossf, get(&fx, "loss", 1), 1);

    float *dp = fill((size_t)B * LOSS_LD, SENTINEL), *d = fill(B, 0);
    for (int b = 0; b < B; b++) dp[(size_t)b * LOSS_LD + LOSS_COL] = 0.5f;
    nn_mse_backward(dp + LOSS_COL, pr + LOSS_COL, y + LOSS_COL, B, LOSS_LD, scale);
    assert_padding(dp, B, LOSS_LD, LOSS_COL, 1);
    unstride(d, dp, B, LOSS_LD, LOSS_COL, 1);
    float *e = plus(get(&fx, "dpred", B), B, 0.5f);
    EXPECT_CLOSE("mse dpred", d, e, B);
    free(pr), free(y), free(dp), free(d), free(e);
    fixture_free(&fx);
}

/* ---- optimisers ---- */

/* Dense optimiser fixture: 3 steps from w0 with g1..g3; weights (and, when
 * given, moments m/v) after each step. Checks optim_init's defaults against
 * torch's too. */
static void run_dense_optim(const char *name, enum optim_kind kind, int has_m, int has_v)
{
    struct fixture fx;
    load(&fx, name);
    const size_t N = arr(&fx, "w0")->n;
    struct optim o;
    const float lr = fixture_scalar(&fx, "lr");
    optim_init(&o, kind, lr);
    assert_true(o.kind == kind);
    assert_true(o.lr == lr);
    assert_true(o.l2 == 0.0f);
    assert_true(o.step == 0);
    if (kind == OPTIM_ADAM) {
        assert_true(o.beta1 == fixture_scalar(&fx, "beta1"));
        assert_true(o.beta2 == fixture_scalar(&fx, "beta2"));
    }
    if (kind != OPTIM_SGD) assert_true(o.eps == fixture_scalar(&fx, "eps"));
    o.l2 = fixture_scalar(&fx, "l2");

    float *w = fdup(get(&fx, "w0", N), N), *g = fill(N, 0), *m = fill(N, 0), *v = fill(N, 0);
    for (int k = 1; k <= 3; k++) {
        char an[16], what[96];
        optim_begin_step(&o);
        assert_true(o.step == k);
        snprintf(an, sizeof an, "g%d", k);
        memcpy(g, get(&fx, an, N), N * sizeof *g);
        optim_update_dense(&o, w, g, m, v, N);
        for (size_t i = 0; i < N; i++) assert_true(g[i] == 0.0f);
        snprintf(an, sizeof an, "w%d", k);
        snprintf(what, sizeof what, "%s w after step %d", name, k);
        EXPECT_CLOSE(what, w, get(&fx, an, N), N);
        if (has_m) {
            snprintf(an, sizeof an, "m%d", k);
            snprintf(what, sizeof what, "%s m after step %d", name, k);
            EXPECT_CLOSE(what, m, get(&fx, an, N), N);
        }
        if (has_v) {
            snprintf(an, sizeof an, "v%d", k);
            snprintf(what, sizeof what, "%s v after step %d", name, k);
            EXPECT_CLOSE(what, v, get(&fx, an, N), N);
        }
    }
    free(w), free(g), free(m), free(v);
    fixture_free(&fx);
}

static void test_optim_sgd(void **state)
{
    (void)state;
    run_dense_optim("optim_sgd", OPTIM_SGD, 0, 0);
    run_dense_optim("optim_sgd_l2", OPTIM_SGD, 0, 0);
}

static void test_optim_adam(void **state)
{
    (void)state;
    run_dense_optim("optim_adam", OPTIM_ADAM, 1, 1);
    run_dense_optim("optim_adam_l2", OPTIM_ADAM, 1, 1);
}

static void test_optim_adagrad(void **state)
{
    (void)state;
    run_dense_optim("optim_adagrad", OPTIM_ADAGRAD, 0, 1);
    run_dense_optim("optim_adagrad_l2", OPTIM_ADAGRAD, 0, 1);
}

/* Lazy row-sparse Adam (optim_update_rows) against torch.optim.SparseAdam. */
static void test_optim_sparse_adam(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "optim_sparse_adam");
    const struct fx_array *wa = arr(&fx, "w0");
    const int V = wa->dims[0], D = wa->dims[1];
    const size_t N = (size_t)V * D;
    struct optim o;
    optim_init(&o, OPTIM_ADAM, fixture_scalar(&fx, "lr"));
    assert_true(o.beta1 == fixture_scalar(&fx, "beta1"));
    assert_true(o.beta2 == fixture_scalar(&fx, "beta2"));
    assert_true(o.eps == fixture_scalar(&fx, "eps"));

    float *w = fdup(get(&fx, "w0", N), N), *g = fill(N, 0), *m = fill(N, 0), *v = fill(N, 0);
    for (int k = 1; k <= 3; k++) {
        char an[16], what[96];
        snprintf(an, sizeof an, "rows%d", k);
        const int nrows = (int)arr(&fx, an)->n;
        int32_t *rows = get_ids(&fx, an, nrows);
        optim_begin_step(&o);
        snprintf(an, sizeof an, "g%d", k);
        memcpy(g, get(&fx, an, N), N * sizeof *g);
        optim_update_rows(&o, w, g, m, v, rows, nrows, D, 0);
        for (size_t i = 0; i < N; i++) assert_true(g[i] == 0.0f); /* only touched rows were non-zero */
        static const char *const names[3] = {"w", "m", "v"};
        float *ours[3] = {w, m, v};
        for (int j = 0; j < 3; j++) {
            snprintf(an, sizeof an, "%s%d", names[j], k);
            snprintf(what, sizeof what, "sparse adam %s after step %d", names[j], k);
            EXPECT_CLOSE(what, ours[j], get(&fx, an, N), N);
        }
        free(rows);
    }
    free(w), free(g), free(m), free(v);
    fixture_free(&fx);
}

/* ---- tiny model: [embA | embB | num] -> Linear(11,8) -> ReLU -> Linear(8,1) -> BCE mean ---- */

enum { TM_PARAMS = 6 };

static void test_tiny_model(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "tiny_model");
    const struct fx_array *ea = arr(&fx, "embA"), *eb = arr(&fx, "embB"), *w1a = arr(&fx, "W1");
    const int D = ea->dims[1], VA = ea->dims[0], VB = eb->dims[0];
    const int H = w1a->dims[0], I = w1a->dims[1], NUM = I - 2 * D;
    const int B = (int)arr(&fx, "y_0")->n;
    const int STEPS = (int)arr(&fx, "losses")->n;
    assert_int_equal(eb->dims[1], D);
    assert_int_equal(NUM, 3);

    static const char *const pname[TM_PARAMS] = {"embA", "embB", "W1", "b1", "W2", "b2"};
    const size_t psize[TM_PARAMS] = {(size_t)VA * D, (size_t)VB * D, (size_t)H * I, (size_t)H,
                                     (size_t)H, 1};
    float *P[TM_PARAMS], *G[TM_PARAMS], *M[TM_PARAMS], *Vm[TM_PARAMS];
    for (int i = 0; i < TM_PARAMS; i++) {
        P[i] = fdup(get(&fx, pname[i], psize[i]), psize[i]);
        G[i] = fill(psize[i], 0), M[i] = fill(psize[i], 0), Vm[i] = fill(psize[i], 0);
    }
    float *embA = P[0], *embB = P[1], *W1 = P[2], *b1 = P[3], *W2 = P[4], *b2 = P[5];

    float *x = fill((size_t)B * I, 0), *h = fill((size_t)B * H, 0), *a = fill((size_t)B * H, 0);
    float *logit = fill(B, 0), *dx = fill((size_t)B * I, 0), *dh = fill((size_t)B * H, 0);
    float *da = fill((size_t)B * H, 0), *dlogit = fill(B, 0), *losses = fill(STEPS, 0);

    struct optim o;
    optim_init(&o, OPTIM_ADAM, fixture_scalar(&fx, "lr"));
    for (int k = 0; k < STEPS; k++) {
        char an[16];
        snprintf(an, sizeof an, "ida_%d", k);
        int32_t *ida = get_ids(&fx, an, B);
        snprintf(an, sizeof an, "idb_%d", k);
        int32_t *idb = get_ids(&fx, an, B);
        snprintf(an, sizeof an, "num_%d", k);
        const float *num = get(&fx, an, (size_t)B * NUM);
        snprintf(an, sizeof an, "y_%d", k);
        const float *y = get(&fx, an, B);

        /* forward: the embeddings write straight into the concat buffer */
        nn_embedding_forward(x, I, embA, ida, B, D);
        nn_embedding_forward(x + D, I, embB, idb, B, D);
        restride(x, num, B, I, 2 * D, NUM);
        nn_linear_forward(h, H, x, W1, b1, B, I, H);
        nn_relu_forward(a, h, (size_t)B * H);
        nn_linear_forward(logit, 1, a, W2, b2, B, H, 1);
        int count = 0;
        double sum = nn_bce_forward(NULL, logit, y, B, 1, &count);
        assert_int_equal(count, B);
        losses[k] = (float)(sum / count);

        /* backward */
        memset(dlogit, 0, (size_t)B * sizeof *dlogit);
        memset(da, 0, (size_t)B * H * sizeof *da);
        memset(dh, 0, (size_t)B * H * sizeof *dh);
        memset(dx, 0, (size_t)B * I * sizeof *dx);
        nn_bce_backward(dlogit, logit, y, B, 1, 1.0f / (float)count);
        nn_linear_backward(da, G[4], G[5], dlogit, 1, a, W2, B, H, 1);
        nn_relu_backward(dh, da, a, (size_t)B * H);
        nn_linear_backward(dx, G[2], G[3], dh, H, x, W1, B, I, H);
        nn_embedding_backward(G[0], dx, I, ida, B, D);
        nn_embedding_backward(G[1], dx + D, I, idb, B, D);

        /* dense Adam for every parameter, tables included (= torch.optim.Adam) */
        optim_begin_step(&o);
        for (int i = 0; i < TM_PARAMS; i++) optim_update_dense(&o, P[i], G[i], M[i], Vm[i], psize[i]);
        free(ida), free(idb);
    }

    for (int k = 0; k < STEPS; k++) fprintf(stderr, "tiny model loss[%d] = %.7f\n", k, (double)losses[k]);
    assert_int_equal(fixture_compare("tiny model losses", losses, get(&fx, "losses", STEPS), STEPS,
                                     0.0, 1e-4),
                     0);
    for (int i = 0; i < TM_PARAMS; i++) {
        char an[32], what[96];
        snprintf(an, sizeof an, "%s_final", pname[i]);
        snprintf(what, sizeof what, "tiny model %s", an);
        EXPECT_CLOSE(what, P[i], get(&fx, an, psize[i]), psize[i]);
    }

    for (int i = 0; i < TM_PARAMS; i++) free(P[i]), free(G[i]), free(M[i]), free(Vm[i]);
    free(x), free(h), free(a), free(logit), free(dx), free(dh), free(da), free(dlogit), free(losses);
    fixture_free(&fx);
}

int main(void)
{
    fprintf(stderr, "gemm backend: %s\n", nn_gemm_backend());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),         cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_embedding_bag),  cmocka_unit_test(test_relu),
        cmocka_unit_test(test_dropout),        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_softmax),        cmocka_unit_test(test_bce),
        cmocka_unit_test(test_mse),            cmocka_unit_test(test_optim_sgd),
        cmocka_unit_test(test_optim_adam),     cmocka_unit_test(test_optim_adagrad),
        cmocka_unit_test(test_optim_sparse_adam), cmocka_unit_test(test_tiny_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
