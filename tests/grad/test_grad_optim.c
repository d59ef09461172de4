/* test_grad_optim.c: optimisers against hand-computed values, the lazy
 * row-sparse path against the dense one, L2, gradient zeroing.
 *
 * Dims: N elements of a dense slice, V table rows, D row width.
 * Hand values were computed in double from the formulas in optim.h; float
 * results are compared within the rounding float betas and steps allow. */
#include "grad/gradcheck.h"
#include "train/optim.h"

#define NEAR(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

static void test_sgd(void **state)
{
    (void)state;
    struct optim o;
    optim_init(&o, OPTIM_SGD, 0.1f);
    float w[2] = {1.0f, -2.0f}, g[2] = {0.5f, 0.25f};
    optim_begin_step(&o);
    optim_update_dense(&o, w, g, NULL, NULL, 2);
    NEAR(w[0], 0.95, 1e-7), NEAR(w[1], -2.025, 1e-7);
    assert_true(g[0] == 0.0f && g[1] == 0.0f);
    g[0] = 1.0f, g[1] = 1.0f;
    optim_begin_step(&o);
    optim_update_dense(&o, w, g, NULL, NULL, 2);
    NEAR(w[0], 0.85, 1e-7), NEAR(w[1], -2.125, 1e-7);
    assert_true(g[0] == 0.0f && g[1] == 0.0f);
}

static void test_adam_defaults_and_steps(void **state)
{
    (void)state;
    struct optim o;
    optim_init(&o, OPTIM_ADAM, 1e-3f);
    assert_true(o.lr == 1e-3f && o.beta1 == 0.9f && o.beta2 == 0.999f && o.eps == 1e-8f);
    assert_true(o.l2 == 0.0f && o.step == 0);
    o.lr = 0.1f;
    /* Three steps with gradients 0.5, -0.2, 0.1 (two elements: the second
     * mirrors the first, so the update must be sign-symmetric). */
    static const float gs[3] = {0.5f, -0.2f, 0.1f};
    static const double want_w[3] = {0.900000002, 0.8654394181165108, 0.8275002408356956};
    static const double want_m[3] = {0.05, 0.025, 0.0325};
    static const double want_v[3] = {0.00025, 0.00028975, 0.00029946025};
    float w[2] = {1.0f, -1.0f}, g[2], m[2] = {0}, v[2] = {0};
    for (int t = 0; t < 3; t++) {
        g[0] = gs[t], g[1] = -gs[t];
        optim_begin_step(&o);
        assert_true(o.step == t + 1);
        optim_update_dense(&o, w, g, m, v, 2);
        NEAR(w[0], want_w[t], 2e-7), NEAR(w[1], -want_w[t], 2e-7);
        /* 1 - 0.999f is 0.00099998713 in float, so v sits ~1.3e-5 relative
         * off the decimal hand value (PyTorch's float tensors round the same
         * way); m's 1 - 0.9f is 2.4e-7 relative off. */
        NEAR(m[0], want_m[t], 1e-7), NEAR(m[1], -want_m[t], 1e-7);
        NEAR(v[0], want_v[t], 1e-8), NEAR(v[1], want_v[t], 1e-8);
        assert_true(g[0] == 0.0f && g[1] == 0.0f);
    }
}

static void test_adagrad(void **state)
{
    (void)state;
    struct optim o;
    optim_init(&o, OPTIM_ADAGRAD, 0.1f);
    assert_true(o.eps == 1e-10f);
    static const float gs[3] = {0.5f, 0.5f, -1.0f};
    static const double want_w[3] = {0.9, 0.8292893219113453, 0.9109389799974512};
    static const double want_v[3] = {0.25, 0.5, 1.5};
    float w = 1.0f, g, v = 0.0f;
    for (int t = 0; t < 3; t++) {
        g = gs[t];
        optim_begin_step(&o);
        optim_update_dense(&o, &w, &g, NULL, &v, 1);
        NEAR(w, want_w[t], 2e-7);
        NEAR(v, want_v[t], 1e-7);
        assert_true(g == 0.0f);
    }
}

/* L2 adds l2 * w to the gradient before anything else, for every kind:
 * an update with (g, l2) equals one with (g + l2 w, 0). */
static void test_l2(void **state)
{
    (void)state;
    struct optim o;
    optim_init(&o, OPTIM_SGD, 0.5f);
    o.l2 = 0.1f;
    float w = 2.0f, g = 0.0f;
    optim_begin_step(&o);
    optim_update_dense(&o, &w, &g, NULL, NULL, 1);
    NEAR(w, 1.9, 1e-7);

    for (int kind = OPTIM_SGD; kind <= OPTIM_ADAGRAD; kind++) {
        struct optim a, b;
        optim_init(&a, (enum optim_kind)kind, 0.05f);
        optim_init(&b, (enum optim_kind)kind, 0.05f);
        a.l2 = 0.25f;
        float wa[3] = {1.0f, -3.0f, 0.5f}, wb[3], ga[3] = {0.1f, 0.2f, -0.3f}, gb[3];
        float ma[3] = {0}, va[3] = {0}, mb[3] = {0}, vb[3] = {0};
        memcpy(wb, wa, sizeof wa);
        for (int t = 0; t < 2; t++) {
            for (int i = 0; i < 3; i++) {
                ga[i] = 0.1f * (float)(i + 1) - 0.05f * (float)t;
                gb[i] = ga[i] + a.l2 * wb[i];
            }
            optim_begin_step(&a), optim_begin_step(&b);
            optim_update_dense(&a, wa, ga, ma, va, 3);
            optim_update_dense(&b, wb, gb, mb, vb, 3);
            for (int i = 0; i < 3; i++) {
                NEAR(wa[i], wb[i], 1e-6);
                assert_true(ga[i] == 0.0f);
            }
        }
        assert_true(wa[1] > -3.0f + 0.05f * 0.5f); /* decay pulled w = -3 toward 0 */
    }
}

/* A long dense slice (odd length: crosses kernel blocks, threads and the
 * vector tail) against a scalar double implementation of the formulas. */
static void test_dense_long(void **state)
{
    (void)state;
    enum { N = 100003 };
    struct rng r;
    rng_seed(&r, 11);
    for (int kind = OPTIM_SGD; kind <= OPTIM_ADAGRAD; kind++) {
        float *w = gc_alloc(N), *g = gc_alloc(N), *m = gc_alloc(N), *v = gc_alloc(N);
        double *rw = pt_malloc(N * sizeof(double)), *rm = pt_malloc(N * sizeof(double));
        double *rv = pt_malloc(N * sizeof(double));
        assert_true(rw && rm && rv);
        gc_fill_normal(w, N, &r, 1.0f);
        for (int i = 0; i < N; i++) rw[i] = w[i], rm[i] = 0, rv[i] = 0;
        struct optim o;
        optim_init(&o, (enum optim_kind)kind, 0.01f);
        o.l2 = 1e-3f;
        for (int t = 1; t <= 4; t++) {
            gc_fill_normal(g, N, &r, 1.0f);
            g[t] = 0.0f; /* an exact zero gradient: v = 0 must not divide by zero */
            optim_begin_step(&o);
            for (int i = 0; i < N; i++) {
                double gi = (double)g[i] + (double)o.l2 * rw[i];
                if (kind == OPTIM_SGD) {
                    rw[i] -= o.lr * gi;
                } else if (kind == OPTIM_ADAM) {
                    rm[i] = o.beta1 * rm[i] + (1.0 - o.beta1) * gi;
                    rv[i] = o.beta2 * rv[i] + (1.0 - o.beta2) * gi * gi;
                    double mh = rm[i] / (1.0 - pow(o.beta1, t)), vh = rv[i] / (1.0 - pow(o.beta2, t));
                    rw[i] -= o.lr * mh / (sqrt(vh) + o.eps);
                } else {
                    rv[i] += gi * gi;
                    rw[i] -= o.lr * gi / (sqrt(rv[i]) + o.eps);
                }
            }
            optim_update_dense(&o, w, g, m, v, N);
        }
        int bad = 0;
        for (int i = 0; i < N; i++) {
            bad += !(fabs(w[i] - rw[i]) <= 1e-5 * (1.0 + fabs(rw[i])));
            bad += g[i] != 0.0f;
        }
        if (bad) fail_msg("kind %d: %d of %d elements off", kind, bad, N);
        pt_free(w), pt_free(g), pt_free(m), pt_free(v), pt_free(rw), pt_free(rm), pt_free(rv);
    }
}

/* Row-sparse vs dense, over three steps touching rows {1,4}, {4}, {1, 2}.
 * Untouched rows keep w, g, m and v bit for bit; a touched row equals a dense
 * update of that row alone at the same global step (lazy moments). */
static void test_rows_lazy(void **state)
{
    (void)state;
    enum { V = 6, D = 5, NT = V * D };
    static const int32_t touch[3][2] = {{1, 4}, {4, -1}, {1, 2}};
    static const int ntouch[3] = {2, 1, 2};
    struct rng r;
    rng_seed(&r, 12);
    for (int kind = OPTIM_SGD; kind <= OPTIM_ADAGRAD; kind++) {
        float w[NT], g[NT], m[NT] = {0}, v[NT] = {0};
        float rw[NT], rg[NT], rm[NT] = {0}, rv[NT] = {0};
        gc_fill_normal(w, NT, &r, 1.0f);
        memcpy(rw, w, sizeof w);
        struct optim o;
        optim_init(&o, (enum optim_kind)kind, 0.05f);
        o.l2 = 0.01f;
        for (int t = 0; t < 3; t++) {
            gc_fill_normal(g, NT, &r, 1.0f); /* untouched rows carry gradient too */
            memcpy(rg, g, sizeof g);
            float bw[NT], bg[NT], bm[NT], bv[NT];
            memcpy(bw, w, sizeof w), memcpy(bg, g, sizeof g), memcpy(bm, m, sizeof m);
            memcpy(bv, v, sizeof v);
            optim_begin_step(&o);
            optim_update_rows(&o, w, g, m, v, touch[t], ntouch[t], D, 0);
            for (int k = 0; k < ntouch[t]; k++) {
                size_t off = (size_t)touch[t][k] * D;
                optim_update_dense(&o, rw + off, rg + off, rm + off, rv + off, D);
            }
            for (int row = 0; row < V; row++) {
                int touched = 0;
                for (int k = 0; k < ntouch[t]; k++) touched |= touch[t][k] == row;
                size_t off = (size_t)row * D, sz = D * sizeof(float);
                if (touched) {
                    assert_memory_equal(w + off, rw + off, sz);
                    assert_memory_equal(m + off, rm + off, sz);
                    assert_memory_equal(v + off, rv + off, sz);
                    for (int d = 0; d < D; d++) assert_true(g[off + d] == 0.0f);
                } else {
                    assert_memory_equal(w + off, bw + off, sz);
                    assert_memory_equal(g + off, bg + off, sz);
                    assert_memory_equal(m + off, bm + off, sz);
                    assert_memory_equal(v + off, bv + off, sz);
                }
            }
            /* The dense reference copies only touched rows' state onward. */
            memcpy(rw, w, sizeof w), memcpy(rm, m, sizeof m), memcpy(rv, v, sizeof v);
        }
    }
}

/* Row updates with many rows (enough to take the threaded path) equal the
 * dense update of each row. */
static void test_rows_many(void **state)
{
    (void)state;
    enum { V = 4000, D = 32 };
    size_t nt = (size_t)V * D;
    struct rng r;
    rng_seed(&r, 13);
    float *w = gc_alloc(nt), *g = gc_alloc(nt), *m = gc_alloc(nt), *v = gc_alloc(nt);
    float *rw = gc_alloc(nt), *rg = gc_alloc(nt), *rm = gc_alloc(nt), *rv = gc_alloc(nt);
    int32_t *rows = pt_malloc(V * sizeof(int32_t));
    assert_non_null(rows);
    int nrows = 0;
    for (int i = 0; i < V; i += 2) rows[nrows++] = i;
    gc_fill_normal(w, nt, &r, 1.0f), gc_fill_normal(g, nt, &r, 1.0f);
    memcpy(rw, w, nt * sizeof(float)), memcpy(rg, g, nt * sizeof(float));
    struct optim o;
    optim_init(&o, OPTIM_ADAM, 0.01f);
    optim_begin_step(&o), optim_begin_step(&o);
    optim_update_rows(&o, w, g, m, v, rows, nrows, D, 0);
    for (int k = 0; k < nrows; k++) {
        size_t off = (size_t)rows[k] * D;
        optim_update_dense(&o, rw + off, rg + off, rm + off, rv + off, D);
    }
    assert_memory_equal(w, rw, nt * sizeof(float));
    assert_memory_equal(g, rg, nt * sizeof(float));
    assert_memory_equal(m, rm, nt * sizeof(float));
    assert_memory_equal(v, rv, nt * sizeof(float));
    pt_free(w), pt_free(g), pt_free(m), pt_free(v), pt_free(rw), pt_free(rg), pt_free(rm);
    pt_free(rv), pt_free(rows);
}

/* A compact gradient (row k for rows[k], as training passes it) gives the
 * same update as the full-size gradient with those rows, for every kind. */
static void test_rows_compact(void **state)
{
    (void)state;
    enum { V = 3000, D = 16 };
    size_t nt = (size_t)V * D;
    for (int kind = 0; kind < 3; kind++) {
        struct rng r;
        rng_seed(&r, 21 + (uint64_t)kind);
        float *w = gc_alloc(nt), *g = gc_alloc(nt), *m = gc_alloc(nt), *v = gc_alloc(nt);
        float *cw = gc_alloc(nt), *cg = gc_alloc(nt), *cm = gc_alloc(nt), *cv = gc_alloc(nt);
        int32_t *rows = pt_malloc(V * sizeof(int32_t));
        assert_non_null(rows);
        int nrows = 0;
        for (int i = 1; i < V; i += 3) rows[nrows++] = i;
        gc_fill_normal(w, nt, &r, 1.0f);
        memcpy(cw, w, nt * sizeof(float));
        struct optim o;
        optim_init(&o, (enum optim_kind)kind, 0.01f);
        o.l2 = 0.001f;
        for (int step = 0; step < 3; step++) {
            for (int k = 0; k < nrows; k++)
                for (int d = 0; d < D; d++) {
                    float x = rng_normal(&r);
                    g[(size_t)rows[k] * D + (size_t)d] = x;
                    cg[(size_t)k * D + (size_t)d] = x;
                }
            optim_begin_step(&o);
            optim_update_rows(&o, w, g, m, v, rows, nrows, D, 0);
            optim_update_rows(&o, cw, cg, cm, cv, rows, nrows, D, 1);
            assert_memory_equal(w, cw, nt * sizeof(float));
            assert_memory_equal(m, cm, nt * sizeof(float));
            assert_memory_equal(v, cv, nt * sizeof(float));
            for (int k = 0; k < nrows * D; k++) assert_true(cg[k] == 0.0f); /* zeroed after use */
        }
        pt_free(w), pt_free(g), pt_free(m), pt_free(v), pt_free(cw), pt_free(cg), pt_free(cm), pt_free(cv);
        pt_free(rows);
    }
}


/* Row-interleaved tables ([w | m | v] per row) step exactly like separate arrays. */
static void test_rows_interleaved(void **state)
{
    (void)state;
    enum { V = 7, D = 5, LD = 3 * D + 2 };
    static const int32_t rows[3] = {5, 0, 3};
    struct rng r;
    rng_seed(&r, 21);
    for (int kind = OPTIM_SGD; kind <= OPTIM_ADAGRAD; kind++) {
        float w[V * D], m[V * D] = {0}, v[V * D] = {0}, base[V * LD] = {0}, g[3 * D], gi[3 * D];
        gc_fill_normal(w, V * D, &r, 1.0f);
        for (int i = 0; i < V; i++) memcpy(base + i * LD, w + i * D, D * sizeof(float));
        struct optim o;
        optim_init(&o, (enum optim_kind)kind, 0.05f);
        o.l2 = 0.01f;
        for (int t = 0; t < 4; t++) {
            gc_fill_normal(g, 3 * D, &r, 1.0f);
            memcpy(gi, g, sizeof g);
            optim_begin_step(&o);
            optim_update_rows(&o, w, g, m, v, rows, 3, D, 1);
            optim_update_rows_interleaved(&o, base, LD, gi, rows, 3, D);
            for (int k = 0; k < 3 * D; k++) assert_true(gi[k] == 0.0f);
        }
        for (int i = 0; i < V; i++) {
            assert_memory_equal(base + i * LD, w + i * D, D * sizeof(float));
            if (kind != OPTIM_SGD) assert_memory_equal(base + i * LD + 2 * D, v + i * D, D * sizeof(float));
            if (kind == OPTIM_ADAM) assert_memory_equal(base + i * LD + D, m + i * D, D * sizeof(float));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),        cmocka_unit_test(test_adam_defaults_and_steps),
        cmocka_unit_test(test_adagrad),    cmocka_unit_test(test_l2),
        cmocka_unit_test(test_dense_long), cmocka_unit_test(test_rows_lazy),
        cmocka_unit_test(test_rows_many),  cmocka_unit_test(test_rows_compact),
        cmocka_unit_test(test_rows_interleaved),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
