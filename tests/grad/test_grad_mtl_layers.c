/* test_grad_mtl_layers.c: finite-difference gradient checks for the
 * multi-task layers in nn/: the gated mixture (MMoE / PLE) and ESMM's
 * pCTCVR loss, plus "backward adds", NULL gradient entries, strides, the
 * mixture's forward against a plain double-precision oracle, and the CTCVR
 * clamp region.
 *
 * Dims: B batch rows, K experts, H expert width, lde expert row stride,
 * LD label/logit row stride.
 * Mixture: L = sum(out * R), R random (gradcheck.h); out is linear in each
 * of es and g, so eps 1e-2. CTCVR: L = scale * loss sum, curved, eps 1e-3,
 * with logits kept well inside the clamp [1e-7, 1 - 1e-7] so that x +- eps
 * stays on one side of it; rows inside the clamp region are checked
 * separately for an exactly zero gradient. */
#include "grad/gradcheck.h"
#include "nn/nn.h"

/* --------------------------------------------------------------- mixture */

enum { MX_K = 3 };

struct mix_ctx {
    int B, K, H, lde;
    float *es[MX_K], *g, *out, *R;
};

static double mix_loss(void *p)
{
    struct mix_ctx *c = p;
    const float *in[MX_K] = {c->es[0], c->es[1], c->es[2]};
    nn_mixture_forward(c->out, in, c->lde, c->g, c->B, c->K, c->H);
    return gc_dot(c->out, c->B, c->H, c->H, c->R);
}

static void test_mixture(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 11);
    struct mix_ctx c = {.B = 4, .K = MX_K, .H = 5, .lde = 7};
    const size_t ne = (size_t)c.B * c.lde, ng = (size_t)c.B * c.K, no = (size_t)c.B * c.H;
    float *de[MX_K], *de2[MX_K];
    for (int k = 0; k < MX_K; k++) {
        c.es[k] = gc_alloc(ne);
        /* Padding columns hold a finite sentinel: the FD check below runs
         * over them too and wants exactly zero both ways. */
        gc_fill(c.es[k], ne, 9.0f);
        for (int b = 0; b < c.B; b++)
            gc_fill_normal(c.es[k] + (size_t)b * c.lde, (size_t)c.H, &r, 1.0f);
        de[k] = gc_alloc(ne), de2[k] = gc_alloc(ne);
    }
    c.g = gc_alloc(ng), c.out = gc_alloc(no), c.R = gc_alloc(no);
    /* Gate weights as a softmax would give them (the layer does not care). */
    float *logits = gc_alloc(ng);
    gc_fill_normal(logits, ng, &r, 1.0f);
    nn_softmax_forward(c.g, logits, c.B, c.K);
    gc_fill_normal(c.R, no, &r, 1.0f);

    /* Values: out[b,h] = sum_k g[b,k] e_k[b,h]. */
    mix_loss(&c);
    for (int b = 0; b < c.B; b++)
        for (int h = 0; h < c.H; h++) {
            double s = 0.0;
            for (int k = 0; k < c.K; k++)
                s += (double)c.g[b * c.K + k] * c.es[k][(size_t)b * c.lde + h];
            assert_true(fabs(s - c.out[b * c.H + h]) < 1e-6 * (1.0 + fabs(s)));
        }

    /* Forward never reads the padding: NaN there leaves out finite. */
    float *nanpad = gc_alloc(ne);
    memcpy(nanpad, c.es[1], ne * sizeof(float));
    for (int b = 0; b < c.B; b++)
        for (int h = c.H; h < c.lde; h++) nanpad[(size_t)b * c.lde + h] = NAN;
    const float *in[MX_K] = {c.es[0], nanpad, c.es[2]};
    float *out2 = gc_alloc(no);
    nn_mixture_forward(out2, in, c.lde, c.g, c.B, c.K, c.H);
    for (size_t i = 0; i < no; i++) assert_true(out2[i] == c.out[i]);

    /* Backward with a NULL entry: expert 1 gets nothing; then a second call
     * fills expert 1 alone with dg NULL (dg must not change). */
    float *dg = gc_alloc(ng), *dg2 = gc_alloc(ng);
    float *part[MX_K] = {de[0], NULL, de[2]};
    const float *ces[MX_K] = {c.es[0], c.es[1], c.es[2]};
    nn_mixture_backward(part, dg, c.R, ces, c.lde, c.g, c.B, c.K, c.H);
    for (size_t i = 0; i < ne; i++) assert_true(de[1][i] == 0.0f);
    float *dg_copy = gc_alloc(ng);
    memcpy(dg_copy, dg, ng * sizeof(float));
    float *mid[MX_K] = {NULL, de[1], NULL};
    nn_mixture_backward(mid, NULL, c.R, ces, c.lde, c.g, c.B, c.K, c.H);
    for (size_t i = 0; i < ng; i++) assert_true(dg[i] == dg_copy[i]);

    static const char *names[MX_K] = {"mixture de0", "mixture de1", "mixture de2"};
    for (int k = 0; k < MX_K; k++) {
        gc_check(names[k], mix_loss, &c, c.es[k], de[k], ne, 1e-2f, 1e-3, 1e-2);
        for (int b = 0; b < c.B; b++) /* padding: exactly zero */
            for (int h = c.H; h < c.lde; h++) assert_true(de[k][(size_t)b * c.lde + h] == 0.0f);
    }
    gc_check("mixture dg", mix_loss, &c, c.g, dg, ng, 1e-2f, 1e-3, 1e-2);

    /* Backward adds: two calls double every gradient. */
    nn_mixture_backward(de2, dg2, c.R, ces, c.lde, c.g, c.B, c.K, c.H);
    nn_mixture_backward(de2, dg2, c.R, ces, c.lde, c.g, c.B, c.K, c.H);
    for (int k = 0; k < MX_K; k++) gc_check_doubled(names[k], de2[k], de[k], ne);
    gc_check_doubled("mixture dg", dg2, dg, ng);

    for (int k = 0; k < MX_K; k++) pt_free(c.es[k]), pt_free(de[k]), pt_free(de2[k]);
    pt_free(c.g), pt_free(c.out), pt_free(c.R), pt_free(logits), pt_free(nanpad), pt_free(out2);
    pt_free(dg), pt_free(dg2), pt_free(dg_copy);
}

/* The blocked forward at a production-like shape (odd sizes, experts side by
 * side in one wide buffer) against a double-precision oracle; K == 1 copies
 * scaled, K == 0 gives zeros. */
static void test_mixture_large_vs_oracle(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 12);
    enum { B = 37, K = 5, H = 129 };
    const int lde = K * H + 3; /* expert k at column k*H of one [B, lde] buffer */
    float *wide = gc_alloc((size_t)B * lde), *g = gc_alloc((size_t)B * K);
    float *out = gc_alloc((size_t)B * H);
    gc_fill_normal(wide, (size_t)B * lde, &r, 1.0f);
    gc_fill_normal(g, (size_t)B * K, &r, 1.0f);
    const float *es[K];
    for (int k = 0; k < K; k++) es[k] = wide + (size_t)k * H;
    nn_mixture_forward(out, es, lde, g, B, K, H);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            double s = 0.0, a = 0.0;
            for (int k = 0; k < K; k++) {
                double t = (double)g[b * K + k] * es[k][(size_t)b * lde + h];
                s += t, a += fabs(t);
            }
            assert_true(fabs(s - out[b * H + h]) <= 1e-6 * (1.0 + a));
        }
    nn_mixture_forward(out, es, lde, g, B, 1, H);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) assert_true(out[b * H + h] == g[b] * es[0][(size_t)b * lde + h]);
    gc_fill(out, (size_t)B * H, NAN);
    nn_mixture_forward(out, es, lde, g, B, 0, H);
    for (int i = 0; i < B * H; i++) assert_true(out[i] == 0.0f);
    pt_free(wide), pt_free(g), pt_free(out);
}

/* A PLE-like level at a production-like shape: three gates over
 * overlapping experts (two task gates, each over its own expert and the two
 * shared ones, then a shared gate over all five), experts side by side in
 * one wide buffer, one expert without a gradient wanted (NULL). The
 * one-pass versions equal the single-gate layer run gate after gate (the
 * backward on zeroed buffers), bit for bit; the written buffers start as
 * NaN, so a row they failed to write would show. */
static void test_mixture_gates_vs_layer(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 13);
    enum { B = 33, E = 5, H = 67, G = 3 };
    const int lde = E * H + 2;
    static const int ex0[3] = {0, 3, 4}, ex1[3] = {1, 3, 4}, ex2[5] = {0, 1, 2, 3, 4};
    static const int *const exs[G] = {ex0, ex1, ex2};
    static const int K[G] = {3, 3, 5};
    size_t nw = (size_t)B * lde;
    float *wide = gc_alloc(nw), *dwide = gc_alloc(nw), *dwant = gc_alloc(nw);
    gc_fill_normal(wide, nw, &r, 1.0f);
    gc_fill(dwide, nw, NAN);
    gc_fill(dwant, nw, 0.0f);
    const float *es[E];
    float *des[E], *dref[E];
    for (int e = 0; e < E; e++) {
        es[e] = wide + (size_t)e * H;
        des[e] = e == 2 ? NULL : dwide + (size_t)e * H;
        dref[e] = e == 2 ? NULL : dwant + (size_t)e * H;
    }
    float *g[G], *dout[G], *dg[G], *dgref[G], *out[G], *outref[G];
    unsigned char first[G][E];
    int seen[E] = {0};
    struct nn_mix_gate gates[G];
    for (int i = 0; i < G; i++) {
        size_t ng = (size_t)B * K[i];
        float *logits = gc_alloc(ng);
        gc_fill_normal(logits, ng, &r, 1.0f);
        g[i] = gc_alloc(ng);
        nn_softmax_forward(g[i], logits, B, K[i]);
        pt_free(logits);
        dout[i] = gc_alloc((size_t)B * H);
        gc_fill_normal(dout[i], (size_t)B * H, &r, 1.0f);
        dg[i] = gc_alloc(ng), dgref[i] = gc_alloc(ng);
        gc_fill(dg[i], ng, NAN);
        gc_fill(dgref[i], ng, 0.0f);
        for (int k = 0; k < K[i]; k++) first[i][k] = !seen[exs[i][k]], seen[exs[i][k]] = 1;
        out[i] = gc_alloc((size_t)B * H), outref[i] = gc_alloc((size_t)B * H);
        gc_fill(out[i], (size_t)B * H, NAN);
        gates[i] = (struct nn_mix_gate){.g = g[i], .experts = exs[i], .K = K[i], .out = out[i], .dout = dout[i],
                                        .dg = dg[i], .first = first[i]};
        const float *ges[E];
        float *gdes[E];
        for (int k = 0; k < K[i]; k++) ges[k] = es[exs[i][k]], gdes[k] = dref[exs[i][k]];
        nn_mixture_forward(outref[i], ges, lde, g[i], B, K[i], H);
        nn_mixture_backward(gdes, dgref[i], dout[i], ges, lde, g[i], B, K[i], H);
    }
    nn_mixture_forward_gates(es, lde, H, gates, G, B);
    for (int i = 0; i < G; i++) assert_memory_equal(out[i], outref[i], (size_t)B * H * sizeof(float));
    nn_mixture_backward_gates(des, es, lde, H, gates, G, B, NULL, E);
    for (int e = 0; e < E; e++)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                size_t at = (size_t)b * lde + (size_t)e * H + (size_t)h;
                if (e == 2) assert_true(isnan(dwide[at])); /* NULL: untouched */
                else assert_memory_equal(&dwide[at], &dwant[at], sizeof(float));
            }
    for (int i = 0; i < G; i++) assert_memory_equal(dg[i], dgref[i], (size_t)B * K[i] * sizeof(float));

    /* With the experts' ReLU backward folded in: expert 0 packs bf16 (its
     * float row is not written at all: E * H is small), expert 1 writes the masked row,
     * expert 3 is left out (db NULL); each against the reference gradient
     * taken through the ReLU by hand. */
    float db[E][H], dbref[E][H];
    uint16_t *bf = malloc((size_t)B * H * sizeof *bf), *bfref = malloc((size_t)B * H * sizeof *bf);
    assert_true(bf && bfref);
    memset(db, 0, sizeof db), memset(dbref, 0, sizeof dbref);
    struct nn_mix_relu relu[E] = {{db[0], bf}, {db[1], NULL}, {db[2], NULL}, {NULL, NULL}, {db[4], NULL}};
    gc_fill(dwide, nw, NAN);
    nn_mixture_backward_gates(des, es, lde, H, gates, G, B, relu, E);
    for (int e = 0; e < E; e++)
        for (int b = 0; b < B; b++) {
            float t[H];
            for (int h = 0; h < H; h++) {
                size_t at = (size_t)b * lde + (size_t)e * H + (size_t)h;
                t[h] = relu[e].db && !(wide[at] > 0.0f) ? 0.0f : dwant[at];
                if (relu[e].db && des[e]) dbref[e][h] += t[h];
                if (e == 2 || e == 0) assert_true(isnan(dwide[at]));
                else assert_memory_equal(&dwide[at], &t[h], sizeof(float));
            }
            if (e == 0) nn_bf16_pack(bfref + (size_t)b * H, t, H);
        }
    assert_memory_equal(bf, bfref, (size_t)B * H * sizeof *bf);
    for (int e = 0; e < E; e++) assert_memory_equal(db[e], dbref[e], sizeof db[e]);
    for (int h = 0; h < H; h++) assert_true(db[2][h] == 0.0f && db[3][h] == 0.0f);
    free(bf), free(bfref);

    for (int i = 0; i < G; i++)
        pt_free(g[i]), pt_free(dout[i]), pt_free(dg[i]), pt_free(dgref[i]), pt_free(out[i]), pt_free(outref[i]);
    pt_free(wide), pt_free(dwide), pt_free(dwant);
}

/* ----------------------------------------------------------------- ctcvr */

struct cv_ctx {
    int B, ld, count;
    float scale;
    float *z1, *z2, *y, *p; /* column 1 of [B, ld] matrices: pointers already offset */
};

static double cv_loss(void *p)
{
    struct cv_ctx *c = p;
    return c->scale * nn_ctcvr_forward(c->p, c->z1, c->z2, c->y, c->B, c->ld, &c->count);
}

static double sig(double z) { return 1.0 / (1.0 + exp(-z)); }

/* Logits and labels in column 1 of [B, 2] matrices; rows 2 and 5
 * unlabelled (NaN); all p well inside the clamp. The check runs over the
 * whole matrices, so column 0 and the NaN rows must get exactly zero. */
static void test_ctcvr(void **state)
{
    (void)state;
    enum { B = 8, LD = 2 };
    static const float z1s[B] = {0.3f, -1.2f, 0.8f, 2.5f, -3.0f, 1.0f, 4.0f, -0.5f};
    static const float z2s[B] = {-0.7f, 1.5f, 0.2f, -2.0f, 3.5f, NAN, 3.0f, -4.0f};
    static const float ys[B] = {1.0f, 0.0f, NAN, 0.0f, 1.0f, NAN, 1.0f, 0.0f};
    float Z1[B * LD], Z2[B * LD], Y[B * LD], P[B * LD];
    float D1[B * LD], D2[B * LD], E1[B * LD], E2[B * LD];
    for (int b = 0; b < B; b++) {
        Z1[b * LD] = 5.0f, Z2[b * LD] = -5.0f, Y[b * LD] = NAN, P[b * LD] = -1.0f;
        Z1[b * LD + 1] = z1s[b];
        Z2[b * LD + 1] = b == 5 ? 0.25f : z2s[b];
        Y[b * LD + 1] = ys[b];
        P[b * LD + 1] = -1.0f;
    }
    memset(D1, 0, sizeof D1), memset(D2, 0, sizeof D2);
    memset(E1, 0, sizeof E1), memset(E2, 0, sizeof E2);
    struct cv_ctx c = {.B = B, .ld = LD, .scale = 0.37f, .z1 = Z1 + 1, .z2 = Z2 + 1, .y = Y + 1,
                       .p = P + 1};
    double L = cv_loss(&c);
    assert_int_equal(c.count, 6);
    assert_true(isfinite(L));

    /* p = s1 * s2 in column 1 for every row, column 0 untouched; hand loss. */
    double want = 0.0;
    for (int b = 0; b < B; b++) {
        double pr = sig(Z1[b * LD + 1]) * sig(Z2[b * LD + 1]);
        assert_true(P[b * LD] == -1.0f);
        assert_true(fabs(P[b * LD + 1] - pr) < 1e-6);
        if (!isnan(ys[b])) want -= ys[b] ? log(pr) : log(1.0 - pr);
    }
    assert_true(fabs(L - 0.37 * want) < 1e-6 * fabs(want));

    nn_ctcvr_backward(D1 + 1, D2 + 1, c.z1, c.z2, c.y, B, LD, c.scale);
    gc_check("ctcvr dz_ctr", cv_loss, &c, Z1, D1, B * LD, 1e-3f, 1e-4, 1e-2);
    gc_check("ctcvr dz_cvr", cv_loss, &c, Z2, D2, B * LD, 1e-3f, 1e-4, 1e-2);
    for (int b = 0; b < B; b++) {
        assert_true(D1[b * LD] == 0.0f && D2[b * LD] == 0.0f);
        if (isnan(ys[b])) assert_true(D1[b * LD + 1] == 0.0f && D2[b * LD + 1] == 0.0f);
    }

    /* Backward adds; a NULL gradient is skipped, the other still adds. */
    nn_ctcvr_backward(E1 + 1, E2 + 1, c.z1, c.z2, c.y, B, LD, c.scale);
    nn_ctcvr_backward(E1 + 1, NULL, c.z1, c.z2, c.y, B, LD, c.scale);
    nn_ctcvr_backward(NULL, E2 + 1, c.z1, c.z2, c.y, B, LD, c.scale);
    gc_check_doubled("ctcvr dz_ctr", E1, D1, B * LD);
    gc_check_doubled("ctcvr dz_cvr", E2, D2, B * LD);
}

/* Rows whose p falls outside [1e-7, 1 - 1e-7]: the loss is that of the
 * clipped p (torch.clamp then BCELoss), finite at any |z|, and the gradient
 * is exactly zero, as autograd gives through an active clamp, even for a
 * label that would otherwise pull hard. */
static void test_ctcvr_clamp(void **state)
{
    (void)state;
    enum { B = 6 };
    /* p ~ 2e-9, 1 - 4e-9, ~0 (exp underflow), 1 exactly in float, inside, inside */
    static const float z1[B] = {-20.0f, 20.0f, -200.0f, 100.0f, 0.0f, 3.0f};
    static const float z2[B] = {0.0f, 20.0f, -200.0f, 100.0f, 0.0f, -16.0f};
    static const float y[B] = {1.0f, 0.0f, 1.0f, 0.0f, 1.0f, 1.0f};
    float d1[B], d2[B], p[B];
    gc_fill(d1, B, 0.25f), gc_fill(d2, B, -0.5f);
    int n = 0;
    double L = nn_ctcvr_forward(p, z1, z2, y, B, 1, &n);
    assert_int_equal(n, B);
    double clip = -log(1e-7); /* each of the four clamped rows */
    double in4 = -log(0.25), in5 = -log(sig(3.0) * sig(-16.0));
    assert_true(fabs(L - (4 * clip + in4 + in5)) < 1e-6 * L);
    assert_true(p[3] == 1.0f && p[2] == 0.0f);
    nn_ctcvr_backward(d1, d2, z1, z2, y, B, 1, 1.0f);
    for (int b = 0; b < 4; b++) assert_true(d1[b] == 0.25f && d2[b] == -0.5f);
    /* Row 4: p = 1/4, y = 1: dL/dz = (p - 1)/(p(1-p)) * p * (1 - s) = -1/2. */
    assert_true(fabsf(d1[4] - (0.25f - 0.5f)) < 1e-6f && fabsf(d2[4] - (-0.5f - 0.5f)) < 1e-6f);
    /* Row 5 (p ~ 1.07e-7, just inside the clamp, y = 1): the full gradient,
     * dL/dz = -(1 - s)/(1 - p). */
    double p5 = sig(3.0) * sig(-16.0);
    assert_true(fabs(d1[5] - (0.25 - sig(-3.0) / (1.0 - p5))) < 1e-6);
    assert_true(fabs(d2[5] - (-0.5 - sig(16.0) / (1.0 - p5))) < 1e-6);

    /* Finite differences see the flat region too: a clamped row's loss does
     * not move under a small nudge of either logit. */
    struct cv_ctx c = {.B = 1, .ld = 1, .scale = 1.0f, .y = (float *)y};
    float a = z1[0], b = z2[0];
    c.z1 = &a, c.z2 = &b;
    double l0 = cv_loss(&c);
    a += 0.5f;
    assert_true(cv_loss(&c) == l0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixture),
        cmocka_unit_test(test_mixture_large_vs_oracle),
        cmocka_unit_test(test_mixture_gates_vs_layer),
        cmocka_unit_test(test_ctcvr),
        cmocka_unit_test(test_ctcvr_clamp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
