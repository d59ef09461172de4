/* test_ref_mtl_layers.c: the multi-task layers (nn_mixture_*, nn_ctcvr_*)
 * against the PyTorch fixtures that tests/ref/gen_mtl_layers.py writes to
 * tests/ref/fixtures/layers/: forward outputs and input gradients, and the
 * first 5 losses + final parameters of a tiny MMoE (3 experts, 2 tasks with
 * softmax gates, towers, BCE-with-logits mean per task) composed here from
 * our layers and trained with dense Adam.
 *
 * Dims: B batch rows, I input width, E experts, HE expert width, T tasks,
 * HT tower width, K experts of the mixture fixture, H its width.
 * Tolerance as test_ref_layers.c: |ours - torch| <= 1e-5 + 1e-4 * |torch|
 * (the fixtures hold the float64 answer rounded to float32; ours is float32
 * throughout). Losses of the tiny MMoE: relative 1e-4.
 * Also checks what the fixtures alone cannot: backward ADDS (gradient
 * buffers start non-zero), strided reads and writes leave the other columns
 * alone, experts read from one wide buffer (lde > H). */
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

static void zero(float *p, size_t n) { memset(p, 0, n * sizeof *p); }

/* ---- mixture ---- */

enum { MX_MAXK = 8 };

static void test_mixture(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "mixture");
    const struct fx_array *ga = arr(&fx, "g"), *ea = arr(&fx, "e0");
    const int B = ga->dims[0], K = ga->dims[1], H = ea->dims[1];
    assert_true(K <= MX_MAXK);
    const size_t nh = (size_t)B * H, ng = (size_t)B * K;
    /* Experts side by side in one wide buffer, expert k at column 1 + k*H,
     * as an MMoE's expert layers would write them (lde = K*H + 2). */
    const int lde = K * H + 2;
    float *wide = fill((size_t)B * lde, SENTINEL), *dwide = fill((size_t)B * lde, SENTINEL);
    const float *es[MX_MAXK];
    float *des[MX_MAXK], *e_de[MX_MAXK];
    for (int k = 0; k < K; k++) {
        char name[16];
        snprintf(name, sizeof name, "e%d", k);
        restride(wide, get(&fx, name, nh), B, lde, 1 + k * H, H);
        es[k] = wide + 1 + (size_t)k * H;
        des[k] = dwide + 1 + (size_t)k * H;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) des[k][(size_t)b * lde + h] = 0.5f;
        snprintf(name, sizeof name, "de%d", k);
        e_de[k] = plus(get(&fx, name, nh), nh, 0.5f);
    }
    const float *g = get(&fx, "g", ng);

    float *out = fill(nh, SENTINEL);
    nn_mixture_forward(out, es, lde, g, B, K, H);
    EXPECT_CLOSE("mixture out", out, get(&fx, "out", nh), nh);

    float *dg = fill(ng, -0.25f), *d = fill(nh, 0);
    nn_mixture_backward(des, dg, get(&fx, "dout", nh), es, lde, g, B, K, H);
    assert_padding(dwide, B, lde, 1, K * H);
    for (int k = 0; k < K; k++) {
        char what[32];
        snprintf(what, sizeof what, "mixture de%d", k);
        unstride(d, dwide, B, lde, 1 + k * H, H);
        EXPECT_CLOSE(what, d, e_de[k], nh);
    }
    float *e_dg = plus(get(&fx, "dg", ng), ng, -0.25f);
    EXPECT_CLOSE("mixture dg", dg, e_dg, ng);

    for (int k = 0; k < K; k++) free(e_de[k]);
    free(wide), free(dwide), free(out), free(dg), free(d), free(e_dg);
    fixture_free(&fx);
}

/* ---- ctcvr: logits and labels in column 1 of [B, 3] ---- */

enum { LOSS_LD = 3, LOSS_COL = 1 };

static void test_ctcvr(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "ctcvr");
    const int B = (int)arr(&fx, "z_ctr")->n;
    const float scale = fixture_scalar(&fx, "scale");
    const size_t nb = (size_t)B * LOSS_LD;
    float *z1 = fill(nb, SENTINEL), *z2 = fill(nb, SENTINEL), *y = fill(nb, SENTINEL);
    restride(z1, get(&fx, "z_ctr", B), B, LOSS_LD, LOSS_COL, 1);
    restride(z2, get(&fx, "z_cvr", B), B, LOSS_LD, LOSS_COL, 1);
    restride(y, get(&fx, "y", B), B, LOSS_LD, LOSS_COL, 1);
    float *pbuf = fill(nb, SENTINEL), *p = fill(B, 0);
    int32_t want_count = -1;
    assert_int_equal(fixture_get_i32(&fx, "count", &want_count, 1), 0);

    int count = -1;
    double loss = nn_ctcvr_forward(pbuf + LOSS_COL, z1 + LOSS_COL, z2 + LOSS_COL, y + LOSS_COL, B,
                                   LOSS_LD, &count);
    assert_int_equal(count, want_count);
    float lossf = (float)loss;
    EXPECT_CLOSE("ctcvr loss (sum)", &lossf, get(&fx, "loss", 1), 1);
    assert_padding(pbuf, B, LOSS_LD, LOSS_COL, 1);
    unstride(p, pbuf, B, LOSS_LD, LOSS_COL, 1);
    /* p can be ~1e-40 (row 15): absolute tolerance covers the denormals. */
    EXPECT_CLOSE("ctcvr p (all rows)", p, get(&fx, "p", B), B);

    count = -1;
    double loss2 = nn_ctcvr_forward(NULL, z1 + LOSS_COL, z2 + LOSS_COL, y + LOSS_COL, B, LOSS_LD,
                                    &count);
    assert_true(loss2 == loss);
    assert_int_equal(count, want_count);

    /* Backward adds (start at 0.5 / -0.5); the clamp rows' gradient is exactly 0. */
    float *d1 = fill(nb, SENTINEL), *d2 = fill(nb, SENTINEL), *d = fill(B, 0);
    for (int b = 0; b < B; b++) {
        d1[(size_t)b * LOSS_LD + LOSS_COL] = 0.5f;
        d2[(size_t)b * LOSS_LD + LOSS_COL] = -0.5f;
    }
    nn_ctcvr_backward(d1 + LOSS_COL, d2 + LOSS_COL, z1 + LOSS_COL, z2 + LOSS_COL, y + LOSS_COL, B,
                      LOSS_LD, scale);
    assert_padding(d1, B, LOSS_LD, LOSS_COL, 1);
    assert_padding(d2, B, LOSS_LD, LOSS_COL, 1);
    const float *t1 = get(&fx, "dz_ctr", B), *t2 = get(&fx, "dz_cvr", B);
    float *e1 = plus(t1, B, 0.5f), *e2 = plus(t2, B, -0.5f);
    unstride(d, d1, B, LOSS_LD, LOSS_COL, 1);
    EXPECT_CLOSE("ctcvr dz_ctr", d, e1, B);
    for (int b = 0; b < B; b++)
        if (t1[b] == 0.0f) assert_true(d[b] == 0.5f);
    unstride(d, d2, B, LOSS_LD, LOSS_COL, 1);
    EXPECT_CLOSE("ctcvr dz_cvr", d, e2, B);
    for (int b = 0; b < B; b++)
        if (t2[b] == 0.0f) assert_true(d[b] == -0.5f);

    free(z1), free(z2), free(y), free(pbuf), free(p), free(d1), free(d2), free(d), free(e1), free(e2);
    fixture_free(&fx);
}

/* ---- tiny MMoE ----
 * x[B,I] -> expert k: relu(Linear(I,HE)), written side by side into
 * ea[B, E*HE]; task t: g = softmax(Linear(I,E)(x)), mix = mixture(ea, g),
 * a = relu(Linear(HE,HT)(mix)), logit[:,t] = Linear(HT,1)(a);
 * loss = sum_t bce mean over labelled rows. Each task's backward runs right
 * after its forward; expert gradients accumulate in dea over the tasks. */

enum { MM_E = 3, MM_T = 2, MM_NP = 2 * MM_E + 6 * MM_T };

static void test_tiny_mmoe(void **state)
{
    (void)state;
    struct fixture fx;
    load(&fx, "tiny_mmoe");
    const struct fx_array *ew = arr(&fx, "e0_W"), *tw = arr(&fx, "t0_W"), *xa = arr(&fx, "x_0");
    const int HE = ew->dims[0], I = ew->dims[1], HT = tw->dims[0], B = xa->dims[0];
    const int E = MM_E, T = MM_T, STEPS = (int)arr(&fx, "losses")->n;
    assert_int_equal(tw->dims[1], HE);
    assert_int_equal(arr(&fx, "g0_W")->dims[0], E);
    assert_int_equal(arr(&fx, "y_0")->dims[1], T);

    /* Parameters in fixture order: e{k}_W, e{k}_b, then per task g, t, o (W, b). */
    char pname[MM_NP][16];
    size_t psize[MM_NP];
    int np = 0;
    for (int k = 0; k < E; k++) {
        snprintf(pname[np], 16, "e%d_W", k), psize[np++] = (size_t)HE * I;
        snprintf(pname[np], 16, "e%d_b", k), psize[np++] = (size_t)HE;
    }
    for (int t = 0; t < T; t++) {
        snprintf(pname[np], 16, "g%d_W", t), psize[np++] = (size_t)E * I;
        snprintf(pname[np], 16, "g%d_b", t), psize[np++] = (size_t)E;
        snprintf(pname[np], 16, "t%d_W", t), psize[np++] = (size_t)HT * HE;
        snprintf(pname[np], 16, "t%d_b", t), psize[np++] = (size_t)HT;
        snprintf(pname[np], 16, "o%d_W", t), psize[np++] = (size_t)HT;
        snprintf(pname[np], 16, "o%d_b", t), psize[np++] = 1;
    }
    assert_int_equal(np, MM_NP);
    float *P[MM_NP], *G[MM_NP], *M[MM_NP], *Vm[MM_NP];
    for (int i = 0; i < MM_NP; i++) {
        P[i] = fdup(get(&fx, pname[i], psize[i]), psize[i]);
        G[i] = fill(psize[i], 0), M[i] = fill(psize[i], 0), Vm[i] = fill(psize[i], 0);
    }
#define EXP_W(k) P[2 * (k)]
#define EXP_B(k) P[2 * (k) + 1]
#define TASK(t, j) (2 * E + 6 * (t) + (j)) /* j: 0 gW 1 gb 2 tW 3 tb 4 oW 5 ob */

    const int LDE = E * HE;
    float *ea = fill((size_t)B * LDE, 0), *dea = fill((size_t)B * LDE, 0);
    float *dep = fill((size_t)B * LDE, 0), *gl = fill((size_t)B * E, 0);
    float *g = fill((size_t)B * E, 0), *dg = fill((size_t)B * E, 0), *dgl = fill((size_t)B * E, 0);
    float *mix = fill((size_t)B * HE, 0), *dmix = fill((size_t)B * HE, 0);
    float *a = fill((size_t)B * HT, 0), *da = fill((size_t)B * HT, 0);
    float *dh = fill((size_t)B * HT, 0), *logits = fill((size_t)B * T, 0);
    float *dlogits = fill((size_t)B * T, 0), *losses = fill(STEPS, 0);
    const float *es[MM_E];
    float *des[MM_E];
    for (int k = 0; k < E; k++) es[k] = ea + (size_t)k * HE, des[k] = dea + (size_t)k * HE;

    struct optim o;
    optim_init(&o, OPTIM_ADAM, fixture_scalar(&fx, "lr"));
    for (int step = 0; step < STEPS; step++) {
        char an[16];
        snprintf(an, sizeof an, "x_%d", step);
        const float *x = get(&fx, an, (size_t)B * I);
        snprintf(an, sizeof an, "y_%d", step);
        const float *y = get(&fx, an, (size_t)B * T);

        /* experts, straight into the wide buffer; ReLU in place */
        for (int k = 0; k < E; k++)
            nn_linear_forward(ea + (size_t)k * HE, LDE, x, EXP_W(k), EXP_B(k), B, I, HE);
        nn_relu_forward(ea, ea, (size_t)B * LDE);
        zero(dea, (size_t)B * LDE);

        double loss = 0.0;
        for (int t = 0; t < T; t++) {
            float *gW = P[TASK(t, 0)], *gb = P[TASK(t, 1)], *tW = P[TASK(t, 2)];
            float *tb = P[TASK(t, 3)], *oW = P[TASK(t, 4)], *ob = P[TASK(t, 5)];
            /* forward */
            nn_linear_forward(gl, E, x, gW, gb, B, I, E);
            nn_softmax_forward(g, gl, B, E);
            nn_mixture_forward(mix, es, LDE, g, B, E, HE);
            nn_linear_forward(a, HT, mix, tW, tb, B, HE, HT);
            nn_relu_forward(a, a, (size_t)B * HT);
            nn_linear_forward(logits + t, T, a, oW, ob, B, HT, 1);
            int count = 0;
            double sum = nn_bce_forward(NULL, logits + t, y + t, B, T, &count);
            assert_true(count > 0);
            loss += sum / count;

            /* backward */
            zero(dlogits, (size_t)B * T), zero(da, (size_t)B * HT), zero(dh, (size_t)B * HT);
            zero(dmix, (size_t)B * HE), zero(dg, (size_t)B * E), zero(dgl, (size_t)B * E);
            nn_bce_backward(dlogits + t, logits + t, y + t, B, T, 1.0f / (float)count);
            nn_linear_backward(da, G[TASK(t, 4)], G[TASK(t, 5)], dlogits + t, T, a, oW, B, HT, 1);
            nn_relu_backward(dh, da, a, (size_t)B * HT);
            nn_linear_backward(dmix, G[TASK(t, 2)], G[TASK(t, 3)], dh, HT, mix, tW, B, HE, HT);
            nn_mixture_backward(des, dg, dmix, es, LDE, g, B, E, HE);
            nn_softmax_backward(dgl, dg, g, B, E);
            nn_linear_backward(NULL, G[TASK(t, 0)], G[TASK(t, 1)], dgl, E, x, gW, B, I, E);
        }
        losses[step] = (float)loss;

        /* experts' backward over the gradient both tasks added */
        zero(dep, (size_t)B * LDE);
        nn_relu_backward(dep, dea, ea, (size_t)B * LDE);
        for (int k = 0; k < E; k++)
            nn_linear_backward(NULL, G[2 * k], G[2 * k + 1], dep + (size_t)k * HE, LDE, x,
                               EXP_W(k), B, I, HE);

        /* dense Adam for every parameter (= torch.optim.Adam) */
        optim_begin_step(&o);
        for (int i = 0; i < MM_NP; i++) optim_update_dense(&o, P[i], G[i], M[i], Vm[i], psize[i]);
    }
#undef EXP_W
#undef EXP_B
#undef TASK

    for (int k = 0; k < STEPS; k++) fprintf(stderr, "tiny mmoe loss[%d] = %.7f\n", k, (double)losses[k]);
    assert_int_equal(fixture_compare("tiny mmoe losses", losses, get(&fx, "losses", STEPS), STEPS,
                                     0.0, 1e-4),
                     0);
    for (int i = 0; i < MM_NP; i++) {
        char an[32], what[96];
        snprintf(an, sizeof an, "%.15s_final", pname[i]);
        snprintf(what, sizeof what, "tiny mmoe %s", an);
        EXPECT_CLOSE(what, P[i], get(&fx, an, psize[i]), psize[i]);
    }

    for (int i = 0; i < MM_NP; i++) free(P[i]), free(G[i]), free(M[i]), free(Vm[i]);
    free(ea), free(dea), free(dep), free(gl), free(g), free(dg), free(dgl), free(mix), free(dmix);
    free(a), free(da), free(dh), free(logits), free(dlogits), free(losses);
    fixture_free(&fx);
}

int main(void)
{
    fprintf(stderr, "gemm backend: %s\n", nn_gemm_backend());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixture),
        cmocka_unit_test(test_ctcvr),
        cmocka_unit_test(test_tiny_mmoe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
