/* test_grad_layers.c: finite-difference gradient checks for every layer and
 * loss in nn/, plus "backward adds" checks, nn_unique_rows and the
 * initialisers' statistics.
 *
 * Dims: B batch rows, I input width, O output width, D embedding width,
 * V table rows, C classes, N element count.
 * Each layer's loss is L = sum(output * R), R random (gradcheck.h); the
 * analytic gradient comes from one backward call with dy = R into zeroed
 * buffers. Linear and lookup layers are linear in each parameter, so their
 * differences are exact up to rounding and use eps 1e-2; the curved ones
 * (softmax, bce, mse) use eps 1e-3. */
#include "grad/gradcheck.h"
#include "nn/nn.h"

/* ---------------------------------------------------------------- linear */

struct lin_ctx {
    int B, I, O, ldy;
    float *x, *W, *b, *y, *R;
};

static double lin_loss(void *p)
{
    struct lin_ctx *c = p;
    nn_linear_forward(c->y, c->ldy, c->x, c->W, c->b, c->B, c->I, c->O);
    return gc_dot(c->y, c->B, c->O, c->ldy, c->R);
}

static void test_linear(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 1);
    struct lin_ctx c = {.B = 4, .I = 5, .O = 3, .ldy = 5};
    c.x = gc_alloc((size_t)c.B * c.I);
    c.W = gc_alloc((size_t)c.O * c.I);
    c.b = gc_alloc((size_t)c.O);
    c.y = gc_alloc((size_t)c.B * c.ldy);
    c.R = gc_alloc((size_t)c.B * c.O);
    gc_fill_normal(c.x, (size_t)c.B * c.I, &r, 1.0f);
    gc_fill_normal(c.W, (size_t)c.O * c.I, &r, 1.0f);
    gc_fill_normal(c.b, (size_t)c.O, &r, 1.0f);
    gc_fill_normal(c.R, (size_t)c.B * c.O, &r, 1.0f);

    /* Padding columns of y hold a sentinel the forward must not touch. */
    gc_fill(c.y, (size_t)c.B * c.ldy, 123.0f);
    lin_loss(&c);
    for (int b = 0; b < c.B; b++) {
        for (int o = c.O; o < c.ldy; o++) assert_true(c.y[b * c.ldy + o] == 123.0f);
        for (int o = 0; o < c.O; o++) {
            double s = c.b[o];
            for (int i = 0; i < c.I; i++) s += (double)c.x[b * c.I + i] * c.W[o * c.I + i];
            assert_true(fabs(s - c.y[b * c.ldy + o]) < 1e-5 * (1.0 + fabs(s)));
        }
    }

    /* dy at stride ldy; NaN padding proves the backward never reads it. */
    float *dy = gc_alloc((size_t)c.B * c.ldy);
    gc_fill(dy, (size_t)c.B * c.ldy, NAN);
    for (int b = 0; b < c.B; b++)
        for (int o = 0; o < c.O; o++) dy[b * c.ldy + o] = c.R[b * c.O + o];
    float *dx = gc_alloc((size_t)c.B * c.I), *dW = gc_alloc((size_t)c.O * c.I);
    float *db = gc_alloc((size_t)c.O);
    nn_linear_backward(dx, dW, db, dy, c.ldy, c.x, c.W, c.B, c.I, c.O);
    gc_check("linear dx", lin_loss, &c, c.x, dx, (size_t)c.B * c.I, 1e-2f, 1e-3, 1e-2);
    gc_check("linear dW", lin_loss, &c, c.W, dW, (size_t)c.O * c.I, 1e-2f, 1e-3, 1e-2);
    gc_check("linear db", lin_loss, &c, c.b, db, (size_t)c.O, 1e-2f, 1e-3, 1e-2);

    /* Backward adds: a second call doubles every gradient. */
    float *dx2 = gc_alloc((size_t)c.B * c.I), *dW2 = gc_alloc((size_t)c.O * c.I);
    float *db2 = gc_alloc((size_t)c.O);
    nn_linear_backward(dx2, dW2, db2, dy, c.ldy, c.x, c.W, c.B, c.I, c.O);
    nn_linear_backward(dx2, dW2, db2, dy, c.ldy, c.x, c.W, c.B, c.I, c.O);
    gc_check_doubled("linear dx", dx2, dx, (size_t)c.B * c.I);
    gc_check_doubled("linear dW", dW2, dW, (size_t)c.O * c.I);
    gc_check_doubled("linear db", db2, db, (size_t)c.O);

    /* dx NULL: parameter gradients still accumulate. */
    nn_linear_backward(NULL, dW2, db2, dy, c.ldy, c.x, c.W, c.B, c.I, c.O);
    for (int i = 0; i < c.O * c.I; i++) assert_true(fabsf(dW2[i] - 3.0f * dW[i]) < 1e-4f);

    pt_free(dx2), pt_free(dW2), pt_free(db2), pt_free(dx), pt_free(dW), pt_free(db);
    pt_free(dy), pt_free(c.x), pt_free(c.W), pt_free(c.b), pt_free(c.y), pt_free(c.R);
}

/* A batch larger than the BLAS's blocking, so its packed paths are checked
 * against the naive oracle through the layer's own calls. */
static void test_linear_large_vs_naive(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 2);
    int B = 67, I = 130, O = 45, ldy = 50;
    float *x = gc_alloc((size_t)B * I), *W = gc_alloc((size_t)O * I), *b = gc_alloc(O);
    float *y = gc_alloc((size_t)B * ldy), *dy = gc_alloc((size_t)B * ldy);
    float *dx = gc_alloc((size_t)B * I), *dW = gc_alloc((size_t)O * I);
    float *rx = gc_alloc((size_t)B * I), *rW = gc_alloc((size_t)O * I), *ry = gc_alloc((size_t)B * O);
    gc_fill_normal(x, (size_t)B * I, &r, 1.0f);
    gc_fill_normal(W, (size_t)O * I, &r, 0.1f);
    gc_fill_normal(b, O, &r, 1.0f);
    gc_fill_normal(dy, (size_t)B * ldy, &r, 1.0f);
    nn_linear_forward(y, ldy, x, W, b, B, I, O);
    nn_sgemm_naive('N', 'T', B, O, I, 1.0f, x, I, W, I, 0.0f, ry, O);
    for (int i = 0; i < B; i++)
        for (int o = 0; o < O; o++)
            assert_true(fabsf(y[i * ldy + o] - ry[i * O + o] - b[o]) < 1e-4f);
    nn_linear_backward(dx, dW, NULL, dy, ldy, x, W, B, I, O);
    nn_sgemm_naive('N', 'N', B, I, O, 1.0f, dy, ldy, W, I, 0.0f, rx, I);
    nn_sgemm_naive('T', 'N', O, I, B, 1.0f, dy, ldy, x, I, 0.0f, rW, I);
    for (int i = 0; i < B * I; i++) assert_true(fabsf(dx[i] - rx[i]) < 1e-4f * (1 + fabsf(rx[i])));
    for (int i = 0; i < O * I; i++) assert_true(fabsf(dW[i] - rW[i]) < 1e-4f * (1 + fabsf(rW[i])));
    pt_free(x), pt_free(W), pt_free(b), pt_free(y), pt_free(dy), pt_free(dx), pt_free(dW);
    pt_free(rx), pt_free(rW), pt_free(ry);
}

/* nn_linear_backward_wt (dW through the transposed product) adds what
 * nn_linear_backward does, on a shape wider out than in with ragged tiles;
 * nn_linear_backward_ld with dxcols < I writes those columns only. */
static void test_linear_wt_and_dxcols(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 3);
    int B = 70, I = 37, O = 100, ld = 41, cols = 33;
    float *x = gc_alloc((size_t)B * ld), *W = gc_alloc((size_t)O * I), *dy = gc_alloc((size_t)B * O);
    float *dW = gc_alloc((size_t)O * I), *rW = gc_alloc((size_t)O * I), *wt = gc_alloc((size_t)I * O);
    float *dx = gc_alloc((size_t)B * ld), *rx = gc_alloc((size_t)B * I);
    gc_fill_normal(x, (size_t)B * ld, &r, 1.0f);
    gc_fill_normal(W, (size_t)O * I, &r, 0.1f);
    gc_fill_normal(dy, (size_t)B * O, &r, 1.0f);
    gc_fill_normal(dW, (size_t)O * I, &r, 1.0f);
    memcpy(rW, dW, (size_t)O * I * sizeof *dW);
    nn_linear_backward_wt(dW, wt, dy, O, x, ld, B, I, O);
    nn_linear_backward_ld(NULL, 0, 0, 0.0f, rW, NULL, dy, O, x, ld, W, B, I, O);
    for (int i = 0; i < O * I; i++) assert_true(fabsf(dW[i] - rW[i]) < 1e-4f * (1 + fabsf(rW[i])));

    gc_fill(dx, (size_t)B * ld, 7.0f);
    nn_linear_backward_ld(dx, ld, cols, 0.0f, NULL, NULL, dy, O, x, ld, W, B, I, O);
    nn_sgemm_naive('N', 'N', B, I, O, 1.0f, dy, O, W, I, 0.0f, rx, I);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < ld; i++) {
            float v = dx[(size_t)b * ld + i];
            if (i < cols)
                assert_true(fabsf(v - rx[(size_t)b * I + i]) < 1e-4f * (1 + fabsf(v)));
            else
                assert_true(v == 7.0f);
        }
    pt_free(x), pt_free(W), pt_free(dy), pt_free(dW), pt_free(rW), pt_free(wt), pt_free(dx), pt_free(rx);
}

/* ------------------------------------------------------------- embedding */

struct emb_ctx {
    int B, D, ldo, mean, bag;
    const int32_t *ids, *off;
    float *table, *out, *R;
};

static double emb_loss(void *p)
{
    struct emb_ctx *c = p;
    if (c->bag)
        nn_embedding_bag_forward(c->out, c->ldo, c->table, c->off, c->ids, c->B, c->D, c->mean);
    else
        nn_embedding_forward(c->out, c->ldo, c->table, c->ids, c->B, c->D);
    return gc_dot(c->out, c->B, c->D, c->ldo, c->R);
}

/* Runs the check for one configuration; V table rows. */
static void emb_case(struct emb_ctx *c, int V, const char *what)
{
    struct rng r;
    rng_seed(&r, 3);
    size_t nt = (size_t)V * c->D;
    c->table = gc_alloc(nt);
    c->out = gc_alloc((size_t)c->B * c->ldo);
    c->R = gc_alloc((size_t)c->B * c->D);
    gc_fill_normal(c->table, nt, &r, 1.0f);
    gc_fill_normal(c->R, (size_t)c->B * c->D, &r, 1.0f);
    float *dout = gc_alloc((size_t)c->B * c->ldo);
    gc_fill(dout, (size_t)c->B * c->ldo, NAN);
    for (int b = 0; b < c->B; b++)
        for (int d = 0; d < c->D; d++) dout[b * c->ldo + d] = c->R[b * c->D + d];
    float *dt = gc_alloc(nt), *dt2 = gc_alloc(nt);
    for (int k = 0; k < 2; k++) {
        float *g = k ? dt2 : dt;
        for (int rep = 0; rep <= k; rep++) {
            if (c->bag)
                nn_embedding_bag_backward(g, dout, c->ldo, c->off, c->ids, c->B, c->D, c->mean);
            else
                nn_embedding_backward(g, dout, c->ldo, c->ids, c->B, c->D);
        }
    }
    gc_check(what, emb_loss, c, c->table, dt, nt, 1e-2f, 1e-3, 1e-2);
    gc_check_doubled(what, dt2, dt, nt);
    pt_free(dt), pt_free(dt2), pt_free(dout), pt_free(c->table), pt_free(c->out), pt_free(c->R);
}

static void test_embedding(void **state)
{
    (void)state;
    /* Id 1 three times in one batch: its gradient is the sum of three rows;
     * rows 0, 2, 4 are never looked up and must get exactly zero. */
    static const int32_t ids[] = {1, 3, 1, 5, 1};
    struct emb_ctx c = {.B = 5, .D = 4, .ldo = 6, .ids = ids};
    emb_case(&c, 6, "embedding dtable");

    /* Forward writes only D columns of each ldo-wide row. */
    float table[2 * 3] = {1, 2, 3, 4, 5, 6}, out[2 * 4];
    gc_fill(out, 8, -7.0f);
    static const int32_t two[] = {1, 0};
    nn_embedding_forward(out, 4, table, two, 2, 3);
    static const float want[8] = {4, 5, 6, -7, 1, 2, 3, -7};
    for (int i = 0; i < 8; i++) assert_true(out[i] == want[i]);
}

static void test_embedding_bag(void **state)
{
    (void)state;
    /* Bag 1 is empty; bag 2 repeats id 2; bag 3 has one id. */
    static const int32_t off[] = {0, 2, 2, 5, 6};
    static const int32_t ids[] = {2, 0, 2, 4, 2, 5};
    for (int mean = 0; mean <= 1; mean++) {
        struct emb_ctx c = {.B = 4, .D = 3, .ldo = 5, .bag = 1, .mean = mean, .off = off, .ids = ids};
        emb_case(&c, 7, mean ? "embedding bag mean" : "embedding bag sum");
    }
    /* Values: the empty bag is a zero row, mean divides by the bag size. */
    float table[3 * 2] = {1, 2, 10, 20, 100, 200}, out[3 * 2];
    static const int32_t o2[] = {0, 3, 3, 4};
    static const int32_t i2[] = {0, 1, 1, 2};
    gc_fill(out, 6, NAN);
    nn_embedding_bag_forward(out, 2, table, o2, i2, 3, 2, 1);
    static const float want_mean[6] = {7, 14, 0, 0, 100, 200};
    for (int i = 0; i < 6; i++) assert_true(fabsf(out[i] - want_mean[i]) < 1e-5f);
    nn_embedding_bag_forward(out, 2, table, o2, i2, 3, 2, 0);
    static const float want_sum[6] = {21, 42, 0, 0, 100, 200};
    for (int i = 0; i < 6; i++) assert_true(out[i] == want_sum[i]);
}

/* --------------------------------------------------------------- unique */

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* nn_unique_rows_inv: sorted distinct rows, and every id's position among them. */
static void check_unique(const int32_t *ids, int n, const int32_t *want, int nwant)
{
    int32_t rows[64], inv[64];
    uint64_t keys[128];
    assert_true(n <= 64);
    int got = nn_unique_rows_inv(rows, inv, ids, n, keys);
    assert_int_equal(got, nwant);
    for (int i = 0; i < nwant; i++) assert_int_equal(rows[i], want[i]);
    for (int i = 0; i < n; i++) assert_int_equal(rows[inv[i]], ids[i]);
}

static void test_unique_rows(void **state)
{
    (void)state;
    static const int32_t ids[] = {5, 3, 5, 0, 3, 9, 0}, want[] = {0, 3, 5, 9};
    check_unique(ids, 7, want, 4);
    check_unique(ids, 0, want, 0);
    static const int32_t one[] = {42}, same[] = {7, 7, 7}, seven[] = {7};
    check_unique(one, 1, one, 1);
    check_unique(same, 3, seven, 1);

    /* Random ids over several magnitudes (so every radix pass runs), a few
     * negatives, against qsort + dedupe. */
    struct rng r;
    rng_seed(&r, 4);
    enum { NR = 3001 };
    int32_t *in = pt_malloc(NR * sizeof(int32_t)), *out = pt_malloc(NR * sizeof(int32_t));
    int32_t *inv = pt_malloc(NR * sizeof(int32_t)), *ref = pt_malloc(NR * sizeof(int32_t));
    uint64_t *keys = pt_malloc(2 * NR * sizeof(uint64_t));
    assert_true(in && out && inv && ref && keys);
    for (int trial = 0; trial < 3; trial++) {
        for (int i = 0; i < NR; i++) {
            uint64_t k = rng_below(&r, 4);
            in[i] = k == 0   ? (int32_t)rng_below(&r, 50)
                    : k == 1 ? (int32_t)rng_below(&r, 1u << 20)
                    : k == 2 ? (int32_t)rng_below(&r, INT32_MAX)
                             : -(int32_t)rng_below(&r, 1000) - (trial == 0 ? 1 : 0);
        }
        if (trial == 2)
            for (int i = 0; i < NR; i++) in[i] = (int32_t)rng_below(&r, 300); /* small vocab */
        memcpy(ref, in, NR * sizeof(int32_t));
        qsort(ref, NR, sizeof(int32_t), cmp_i32);
        int m = 0;
        for (int i = 0; i < NR; i++)
            if (i == 0 || ref[i] != ref[i - 1]) ref[m++] = ref[i];
        int got = nn_unique_rows_inv(out, inv, in, NR, keys);
        assert_int_equal(got, m);
        for (int i = 0; i < m; i++) assert_int_equal(out[i], ref[i]);
        for (int i = 0; i < NR; i++) assert_int_equal(out[inv[i]], in[i]);
    }
    pt_free(in), pt_free(out), pt_free(inv), pt_free(ref), pt_free(keys);
}

/* ------------------------------------------------------------ elementwise */

struct ew_ctx {
    size_t N;
    float *x, *y, *mask, *R, p;
    uint64_t seed;
    int kind; /* 0 relu, 1 dropout */
};

static double ew_loss(void *p)
{
    struct ew_ctx *c = p;
    if (c->kind == 0) {
        nn_relu_forward(c->y, c->x, c->N);
    } else {
        struct rng r;
        rng_seed(&r, c->seed); /* same seed, same mask: the mask is fixed */
        nn_dropout_forward(c->y, c->mask, c->x, c->N, c->p, &r);
    }
    return gc_dot(c->y, 1, (int)c->N, (int)c->N, c->R);
}

static void test_relu(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 5);
    enum { N = 40 };
    struct ew_ctx c = {.N = N, .kind = 0};
    c.x = gc_alloc(N), c.y = gc_alloc(N), c.R = gc_alloc(N);
    /* |x| >= 0.1 keeps x +- eps on one side of the kink at 0. */
    for (int i = 0; i < N; i++) {
        float u = rng_uniform(&r);
        c.x[i] = (i % 2 ? -1.0f : 1.0f) * (0.1f + u);
    }
    gc_fill_normal(c.R, N, &r, 1.0f);
    float *dx = gc_alloc(N), *dx2 = gc_alloc(N);
    ew_loss(&c);
    nn_relu_backward(dx, c.R, c.y, N);
    nn_relu_backward(dx2, c.R, c.y, N);
    nn_relu_backward(dx2, c.R, c.y, N);
    for (int i = 0; i < N; i++) assert_true(c.y[i] == (c.x[i] > 0 ? c.x[i] : 0.0f));
    gc_check("relu dx", ew_loss, &c, c.x, dx, N, 1e-2f, 1e-3, 1e-2);
    gc_check_doubled("relu dx", dx2, dx, N);
    pt_free(c.x), pt_free(c.y), pt_free(c.R), pt_free(dx), pt_free(dx2);
}

static void test_dropout(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 6);
    enum { N = 200 };
    struct ew_ctx c = {.N = N, .kind = 1, .p = 0.3f, .seed = 77};
    c.x = gc_alloc(N), c.y = gc_alloc(N), c.R = gc_alloc(N), c.mask = gc_alloc(N);
    gc_fill_normal(c.x, N, &r, 1.0f);
    gc_fill_normal(c.R, N, &r, 1.0f);
    ew_loss(&c);
    int dropped = 0;
    for (int i = 0; i < N; i++) {
        float keep = 1.0f / 0.7f;
        assert_true(c.mask[i] == 0.0f || c.mask[i] == keep);
        dropped += c.mask[i] == 0.0f;
        assert_true(c.y[i] == c.x[i] * c.mask[i]);
    }
    assert_true(dropped > 30 && dropped < 100); /* ~60 of 200 */
    float *dx = gc_alloc(N), *dx2 = gc_alloc(N);
    nn_dropout_backward(dx, c.R, c.mask, N);
    nn_dropout_backward(dx2, c.R, c.mask, N);
    nn_dropout_backward(dx2, c.R, c.mask, N);
    gc_check("dropout dx", ew_loss, &c, c.x, dx, N, 1e-2f, 1e-3, 1e-2);
    gc_check_doubled("dropout dx", dx2, dx, N);

    /* p == 0 copies and sets the mask to 1. */
    nn_dropout_forward(c.y, c.mask, c.x, N, 0.0f, &r);
    for (int i = 0; i < N; i++) assert_true(c.y[i] == c.x[i] && c.mask[i] == 1.0f);
    pt_free(c.x), pt_free(c.y), pt_free(c.R), pt_free(c.mask), pt_free(dx), pt_free(dx2);
}

/* ---------------------------------------------------------------- concat */

struct cat_ctx {
    int B, n;
    const int *widths;
    float *xs[3], *out, *R;
    int W;
};

static double cat_loss(void *p)
{
    struct cat_ctx *c = p;
    const float *in[3] = {c->xs[0], c->xs[1], c->xs[2]};
    nn_concat_forward(c->out, in, c->widths, c->n, c->B);
    return gc_dot(c->out, c->B, c->W, c->W, c->R);
}

static void test_concat(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 7);
    static const int widths[3] = {2, 3, 1};
    struct cat_ctx c = {.B = 3, .n = 3, .widths = widths, .W = 6};
    float *dx[3], *dx2[3];
    for (int i = 0; i < 3; i++) {
        c.xs[i] = gc_alloc((size_t)c.B * widths[i]);
        gc_fill_normal(c.xs[i], (size_t)c.B * widths[i], &r, 1.0f);
        dx[i] = gc_alloc((size_t)c.B * widths[i]);
        dx2[i] = gc_alloc((size_t)c.B * widths[i]);
    }
    c.out = gc_alloc((size_t)c.B * c.W);
    c.R = gc_alloc((size_t)c.B * c.W);
    gc_fill_normal(c.R, (size_t)c.B * c.W, &r, 1.0f);
    cat_loss(&c);
    assert_true(c.out[0 * 6 + 2] == c.xs[1][0] && c.out[2 * 6 + 5] == c.xs[2][2]);
    /* A NULL entry is skipped; the others still get their block. */
    float *part[3] = {dx[0], NULL, dx[2]};
    nn_concat_backward(part, c.R, widths, 3, c.B);
    float *mid[3] = {NULL, dx[1], NULL};
    nn_concat_backward(mid, c.R, widths, 3, c.B);
    nn_concat_backward(dx2, c.R, widths, 3, c.B);
    nn_concat_backward(dx2, c.R, widths, 3, c.B);
    static const char *names[3] = {"concat dx0", "concat dx1", "concat dx2"};
    for (int i = 0; i < 3; i++) {
        gc_check(names[i], cat_loss, &c, c.xs[i], dx[i], (size_t)c.B * widths[i], 1e-2f, 1e-3, 1e-2);
        gc_check_doubled(names[i], dx2[i], dx[i], (size_t)c.B * widths[i]);
    }
    for (int i = 0; i < 3; i++) pt_free(c.xs[i]), pt_free(dx[i]), pt_free(dx2[i]);
    pt_free(c.out), pt_free(c.R);
}

/* --------------------------------------------------------------- softmax */

struct sm_ctx {
    int B, C;
    float *x, *y, *R;
};

static double sm_loss(void *p)
{
    struct sm_ctx *c = p;
    nn_softmax_forward(c->y, c->x, c->B, c->C);
    return gc_dot(c->y, c->B, c->C, c->C, c->R);
}

static void test_softmax(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 8);
    struct sm_ctx c = {.B = 3, .C = 5};
    size_t n = (size_t)c.B * c.C;
    c.x = gc_alloc(n), c.y = gc_alloc(n), c.R = gc_alloc(n);
    gc_fill_normal(c.x, n, &r, 1.0f);
    gc_fill_normal(c.R, n, &r, 1.0f);
    sm_loss(&c);
    for (int b = 0; b < c.B; b++) {
        double s = 0;
        for (int k = 0; k < c.C; k++) s += c.y[b * c.C + k];
        assert_true(fabs(s - 1.0) < 1e-6);
    }
    float *dx = gc_alloc(n), *dx2 = gc_alloc(n);
    nn_softmax_backward(dx, c.R, c.y, c.B, c.C);
    nn_softmax_backward(dx2, c.R, c.y, c.B, c.C);
    nn_softmax_backward(dx2, c.R, c.y, c.B, c.C);
    gc_check("softmax dx", sm_loss, &c, c.x, dx, n, 1e-3f, 1e-3, 1e-2);
    gc_check_doubled("softmax dx", dx2, dx, n);

    /* Huge logits neither overflow nor lose the ordering. */
    float big[3] = {1000.0f, 999.0f, -1000.0f}, yb[3];
    nn_softmax_forward(yb, big, 1, 3);
    assert_true(fabsf(yb[0] - 0.7310586f) < 1e-6f && fabsf(yb[1] - 0.2689414f) < 1e-6f);
    assert_true(yb[2] >= 0.0f && yb[2] < 1e-30f);
    pt_free(c.x), pt_free(c.y), pt_free(c.R), pt_free(dx), pt_free(dx2);
}

/* ----------------------------------------------------------- bce and mse */

struct loss_ctx {
    int B, ld, mse, count;
    float scale;
    float *z, *y, *p; /* column 1 of [B, ld] matrices: pointers already offset */
};

static double loss_loss(void *p)
{
    struct loss_ctx *c = p;
    double s = c->mse ? nn_mse_forward(c->z, c->y, c->B, c->ld, &c->count)
                      : nn_bce_forward(c->p, c->z, c->y, c->B, c->ld, &c->count);
    return c->scale * s;
}

/* Logits/preds and labels as columns 1 of [B, 2] matrices; rows 2 and 5
 * unlabelled (NaN). The check runs over the whole matrix, so column 0 and
 * the unlabelled rows must come out with exactly zero gradient. */
static void loss_case(int mse)
{
    enum { B = 7, LD = 2 };
    static const float zs[B] = {0.3f, -1.2f, 0.8f, 30.0f, -45.0f, 2.0f, 12.0f};
    static const float ys[B] = {1.0f, 0.0f, NAN, 0.0f, 1.0f, NAN, 1.0f};
    float Z[B * LD], Y[B * LD], P[B * LD], DZ[B * LD], DZ2[B * LD];
    for (int b = 0; b < B; b++) {
        Z[b * LD] = 5.0f, Y[b * LD] = NAN, P[b * LD] = -1.0f;
        Z[b * LD + 1] = mse ? zs[b] * 0.1f : zs[b];
        Y[b * LD + 1] = mse && !isnan(ys[b]) ? ys[b] * 0.5f + 0.1f * b : ys[b];
        P[b * LD + 1] = -1.0f;
    }
    memset(DZ, 0, sizeof DZ);
    memset(DZ2, 0, sizeof DZ2);
    struct loss_ctx c = {.B = B, .ld = LD, .mse = mse, .scale = 0.37f, .z = Z + 1, .y = Y + 1,
                         .p = P + 1};
    double L = loss_loss(&c);
    assert_int_equal(c.count, 5);
    assert_true(isfinite(L));
    if (mse) {
        nn_mse_backward(DZ + 1, c.z, c.y, B, LD, c.scale);
        nn_mse_backward(DZ2 + 1, c.z, c.y, B, LD, c.scale);
        nn_mse_backward(DZ2 + 1, c.z, c.y, B, LD, c.scale);
    } else {
        nn_bce_backward(DZ + 1, c.z, c.y, B, LD, c.scale);
        nn_bce_backward(DZ2 + 1, c.z, c.y, B, LD, c.scale);
        nn_bce_backward(DZ2 + 1, c.z, c.y, B, LD, c.scale);
        /* p is written for every row of column 1 and nowhere else. */
        for (int b = 0; b < B; b++) {
            assert_true(P[b * LD] == -1.0f);
            double want = 1.0 / (1.0 + exp(-(double)zs[b]));
            assert_true(fabs(P[b * LD + 1] - want) < 1e-6);
        }
    }
    const char *what = mse ? "mse dpred" : "bce dlogit";
    gc_check(what, loss_loss, &c, Z, DZ, B * LD, 1e-3f, 1e-4, 1e-2);
    gc_check_doubled(what, DZ2, DZ, B * LD);
    for (int b = 0; b < B; b++) {
        assert_true(DZ[b * LD] == 0.0f);
        if (isnan(ys[b])) assert_true(DZ[b * LD + 1] == 0.0f);
    }
}

static void test_bce(void **state)
{
    (void)state;
    loss_case(0);
    /* Values at large |z|: no inf or NaN, and the right limits. */
    float z[4] = {100.0f, -100.0f, 100.0f, -100.0f}, y[4] = {0, 1, 1, 0}, p[4];
    int n = 0;
    double L = nn_bce_forward(p, z, y, 4, 1, &n);
    assert_int_equal(n, 4);
    assert_true(fabs(L - 200.0) < 1e-9);
    assert_true(p[0] == 1.0f && p[1] >= 0.0f && p[1] < 1e-30f);
    /* Hand values: z = 0 gives log 2 for either label. */
    float z0 = 0.0f, y0 = 1.0f;
    assert_true(fabs(nn_bce_forward(NULL, &z0, &y0, 1, 1, NULL) - log(2.0)) < 1e-12);
    float g[4] = {0};
    nn_bce_backward(g, z, y, 4, 1, 1.0f);
    assert_true(g[0] == 1.0f && g[1] == -1.0f && fabsf(g[2]) < 1e-30f && fabsf(g[3]) < 1e-30f);
}

static void test_mse(void **state)
{
    (void)state;
    loss_case(1);
    float pr[3] = {1.0f, 2.0f, 3.0f}, y[3] = {0.5f, NAN, 5.0f};
    int n = 0;
    assert_true(fabs(nn_mse_forward(pr, y, 3, 1, &n) - 4.25) < 1e-9);
    assert_int_equal(n, 2);
    float g[3] = {0};
    nn_mse_backward(g, pr, y, 3, 1, 0.5f);
    assert_true(g[0] == 0.5f && g[1] == 0.0f && g[2] == -2.0f);
}

/* ------------------------------------------------------------------ init */

static void moments(const float *a, size_t n, double *mean, double *var)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) s += a[i], s2 += (double)a[i] * a[i];
    *mean = s / n;
    *var = s2 / n - *mean * *mean;
}

static void test_init(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 9);
    int O = 200, I = 250;
    size_t n = (size_t)O * I;
    float *W = gc_alloc(n);
    double mean, var;
    nn_init_he(W, O, I, &r);
    moments(W, n, &mean, &var);
    assert_true(fabs(mean) < 0.003 && fabs(var / (2.0 / I) - 1.0) < 0.03);
    nn_init_xavier(W, O, I, &r);
    float a = sqrtf(6.0f / (I + O));
    for (size_t i = 0; i < n; i++) assert_true(W[i] >= -a && W[i] <= a);
    moments(W, n, &mean, &var);
    assert_true(fabs(mean) < 0.003 && fabs(var / (a * a / 3.0) - 1.0) < 0.03);
    nn_init_normal(W, n, 0.01f, &r);
    moments(W, n, &mean, &var);
    assert_true(fabs(mean) < 1e-4 && fabs(sqrt(var) / 0.01 - 1.0) < 0.02);
    pt_free(W);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),    cmocka_unit_test(test_linear_large_vs_naive),
        cmocka_unit_test(test_linear_wt_and_dxcols),
        cmocka_unit_test(test_embedding), cmocka_unit_test(test_embedding_bag),
        cmocka_unit_test(test_unique_rows), cmocka_unit_test(test_relu),
        cmocka_unit_test(test_dropout),   cmocka_unit_test(test_concat),
        cmocka_unit_test(test_softmax),   cmocka_unit_test(test_bce),
        cmocka_unit_test(test_mse),       cmocka_unit_test(test_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
