/* test_bf16.c: bf16 products (src/nn/gemm.c nn_sgemm_bf16, nn_bf16_round,
 * the per-thread precision) and the train.precision key.
 *
 * nn_sgemm_bf16 is checked against the oracle nn_sgemm_naive on bf16-rounded
 * copies of the inputs (what it promises to compute: only float32 summation
 * order differs, so the tolerance is float32's) and on the float32 inputs
 * (bf16 tolerance: each input off by up to 2^-9 relative), for every
 * transpose pair, beta 0, 1 and 0.5, alpha 1 and 0.75, odd shapes and row
 * strides wider than the rows; then the per-thread routing of nn_sgemm, NaN
 * in C under beta 0, kept copies of converted operands (against fresh
 * conversions, one product at a time and whole models trained), more shapes
 * than the primitive cache holds, a failed
 * scratch allocation (the plain-loop answer), a producer's own copy with its
 * float values left stale (restored before a plain-loop fallback), threads each with their own
 * scratch, the config key and its error, and a small MMoE trained both ways.
 * Runs on every backend (oneDNN, OpenBLAS, plain loops). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "tmpdir.h"

#include "polytask.h"
#include "data/config.h"
#include "nn/nn.h"
#include "util/util.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static float round1(float f)
{
    nn_bf16_round(&f, &f, 1);
    return f;
}

/* ---- rounding ---- */

static void test_round(void **state)
{
    (void)state;
    assert_int_equal(bits(round1(1.0f)), 0x3f800000u);
    assert_int_equal(bits(round1(-2.5f)), bits(-2.5f));
    /* ties to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 */
    assert_int_equal(bits(round1(from_bits(0x3f808000u))), 0x3f800000u);
    assert_int_equal(bits(round1(from_bits(0x3f818000u))), 0x3f820000u);
    /* above and below the half */
    assert_int_equal(bits(round1(from_bits(0x3f808001u))), 0x3f810000u);
    assert_int_equal(bits(round1(from_bits(0x3f807fffu))), 0x3f800000u);
    /* the largest float rounds to infinity; infinities and zeros stay */
    assert_int_equal(bits(round1(from_bits(0x7f7fffffu))), 0x7f800000u);
    assert_int_equal(bits(round1(INFINITY)), 0x7f800000u);
    assert_int_equal(bits(round1(-0.0f)), 0x80000000u);
    /* a NaN whose payload is only in the low bits stays NaN */
    assert_true(isnan(round1(from_bits(0x7f800001u))));
    assert_true(isnan(round1(NAN)));
    /* subnormals round like the rest */
    assert_int_equal(bits(round1(from_bits(0x00018000u))), 0x00020000u);
    /* the vector chunks and the scalar tail agree with one-at-a-time */
    float src[37], dst[37];
    for (int i = 0; i < 37; i++) src[i] = (float)(i - 18) * 0.0123457f + 1e-3f * (float)(i * i);
    nn_bf16_round(dst, src, 37);
    for (int i = 0; i < 37; i++) {
        assert_int_equal(bits(dst[i]), bits(round1(src[i])));
        assert_int_equal(bits(dst[i]) & 0xffffu, 0);
        assert_true(fabsf(dst[i] - src[i]) <= fabsf(src[i]) * (1.0f / 256.0f));
    }
}

/* ---- products against the oracle ---- */

static unsigned lcg = 12345u;

static float uni(void)
{
    lcg = lcg * 1664525u + 1013904223u;
    return (float)((lcg >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* Stored sizes of op(A) [M,K] with row stride lda, and so on. */
struct prob {
    char ta, tb;
    int M, N, K, lda, ldb, ldc;
    float alpha, beta;
    float *A, *B, *C0;  /* inputs; C0: C before the call */
    float *Ar, *Br;     /* A and B rounded to bf16 */
    float *Aa, *Ba;     /* |Ar|, |Br| for the error bound */
};

static size_t a_elems(const struct prob *p) { return (size_t)(p->ta == 'N' ? p->M : p->K) * p->lda; }
static size_t b_elems(const struct prob *p) { return (size_t)(p->tb == 'N' ? p->K : p->N) * p->ldb; }

static float *vec(size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = uni();
    return v;
}

static void prob_make(struct prob *p, char ta, char tb, int M, int N, int K, int pad, float alpha,
                      float beta)
{
    memset(p, 0, sizeof *p);
    p->ta = ta, p->tb = tb, p->M = M, p->N = N, p->K = K, p->alpha = alpha, p->beta = beta;
    p->lda = (ta == 'N' ? K : M) + pad;
    p->ldb = (tb == 'N' ? N : K) + pad;
    p->ldc = N + pad;
    size_t na = a_elems(p), nb = b_elems(p);
    p->A = vec(na), p->B = vec(nb), p->C0 = vec((size_t)M * p->ldc);
    p->Ar = vec(na), p->Br = vec(nb), p->Aa = vec(na), p->Ba = vec(nb);
    nn_bf16_round(p->Ar, p->A, na);
    nn_bf16_round(p->Br, p->B, nb);
    for (size_t i = 0; i < na; i++) p->Aa[i] = fabsf(p->Ar[i]);
    for (size_t i = 0; i < nb; i++) p->Ba[i] = fabsf(p->Br[i]);
}

static void prob_free(struct prob *p)
{
    free(p->A), free(p->B), free(p->C0), free(p->Ar), free(p->Br), free(p->Aa), free(p->Ba);
}

/* C = the call's output on a copy of C0. */
static float *run_bf16(const struct prob *p)
{
    size_t nc = (size_t)p->M * p->ldc;
    float *C = malloc(nc * sizeof *C);
    assert_non_null(C);
    memcpy(C, p->C0, nc * sizeof *C);
    nn_sgemm_bf16(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, C,
                  p->ldc);
    return C;
}

/* Checks C against the oracle on the rounded inputs (float32 tolerance) and
 * on the float32 inputs (bf16 tolerance); a product with a dimension under
 * 16 runs unrounded: against the float32 inputs at float32 tolerance.
 * Columns past N must be untouched. */
static void check(const struct prob *p, const float *C, const char *what)
{
    size_t nc = (size_t)p->M * p->ldc;
    float *R = malloc(nc * sizeof *R), *F = malloc(nc * sizeof *F), *S = malloc(nc * sizeof *S);
    assert_true(R && F && S);
    memcpy(R, p->C0, nc * sizeof *R);
    memcpy(F, p->C0, nc * sizeof *F);
    nn_sgemm_naive(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->Ar, p->lda, p->Br, p->ldb, p->beta, R, p->ldc);
    nn_sgemm_naive(p->ta, p->tb, p->M, p->N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta, F, p->ldc);
    /* S = |alpha| |A| |B| + |beta C0|: the scale of each element's error */
    nn_sgemm_naive(p->ta, p->tb, p->M, p->N, p->K, fabsf(p->alpha), p->Aa, p->lda, p->Ba, p->ldb, 0.0f, S, p->ldc);
    for (int i = 0; i < p->M; i++) {
        for (int j = 0; j < p->ldc; j++) {
            size_t x = (size_t)i * p->ldc + j;
            if (j >= p->N) {
                if (bits(C[x]) != bits(p->C0[x])) fail_msg("%s: C[%d,%d] past N was written", what, i, j);
                continue;
            }
            double scale = S[x] + fabs((double)p->beta * p->C0[x]) + 1e-30;
            double tight = (p->K + 2) * 1.2e-7 * scale, loose = 4.2e-3 * scale + tight;
            if (p->M < 16 || p->N < 16 || p->K < 16) {
                if (fabs((double)C[x] - F[x]) > tight)
                    fail_msg("%s: C[%d,%d] = %.9g, float32 oracle %.9g (tol %.3g, unrounded)", what, i, j, C[x],
                             F[x], tight);
                continue;
            }
            if (fabs((double)C[x] - R[x]) > tight)
                fail_msg("%s: C[%d,%d] = %.9g, rounded-input oracle %.9g (tol %.3g)", what, i, j, C[x], R[x], tight);
            if (fabs((double)C[x] - F[x]) > loose)
                fail_msg("%s: C[%d,%d] = %.9g, float32 oracle %.9g (tol %.3g)", what, i, j, C[x], F[x], loose);
        }
    }
    free(R), free(F), free(S);
}

static void test_against_oracle(void **state)
{
    (void)state;
    /* shapes with a dimension under 16 take float32 sgemm and, with oneDNN,
     * the others the bf16 matmul, with beta != 0 through a sum post-op
     * (K < 512) or a scratch product added after it: all kinds here */
    static const int shapes[][3] = {{1, 1, 1},    {3, 5, 7},      {17, 33, 9},   {64, 1, 65},
                                    {1, 40, 129}, {130, 7, 300},  {2, 256, 17},  {16, 16, 16},
                                    {33, 161, 64}, {37, 50, 129}, {129, 31, 18},
                                    {20, 24, 520}, {17, 40, 1030}};
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    static const char ts[] = {'N', 'T'};
    int n = 0;
    for (size_t s = 0; s < PT_ARRAY_LEN(shapes); s++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++)
                for (size_t be = 0; be < PT_ARRAY_LEN(betas); be++)
                    for (int pad = 0; pad <= 3; pad += 3) {
                        float alpha = (s + be + pad) % 2 ? 0.75f : 1.0f;
                        struct prob p;
                        prob_make(&p, ts[a], ts[b], shapes[s][0], shapes[s][1], shapes[s][2], pad, alpha,
                                  betas[be]);
                        char what[128];
                        snprintf(what, sizeof what, "%c%c M%d N%d K%d alpha %g beta %g pad %d", p.ta, p.tb,
                                 p.M, p.N, p.K, p.alpha, p.beta, pad);
                        float *C = run_bf16(&p);
                        check(&p, C, what);
                        free(C);
                        prob_free(&p);
                        n++;
                    }
    assert_int_equal(n, (int)PT_ARRAY_LEN(shapes) * 4 * 3 * 2);
    nn_gemm_release();
}

/* K == 0 and alpha == 0 only scale C; M or N == 0 touch nothing. */
static void test_degenerate(void **state)
{
    (void)state;
    float A[4] = {1, 2, 3, 4}, B[4] = {1, 1, 1, 1}, C[4] = {NAN, NAN, 2, 2};
    nn_sgemm_bf16('N', 'N', 2, 2, 0, 1.0f, A, 1, B, 2, 0.0f, C, 2);
    for (int i = 0; i < 4; i++) assert_true(C[i] == 0.0f);
    C[0] = 3;
    nn_sgemm_bf16('N', 'N', 2, 2, 2, 0.0f, A, 2, B, 2, 0.5f, C, 2);
    assert_true(C[0] == 1.5f && C[1] == 0.0f);
    nn_sgemm_bf16('N', 'N', 0, 2, 2, 1.0f, A, 2, B, 2, 0.0f, NULL, 2);
    nn_gemm_release();
}

/* nn_sgemm follows the thread's precision; beta 0 ignores NaN in C. */
static void test_precision_switch(void **state)
{
    (void)state;
    struct prob p;
    prob_make(&p, 'N', 'T', 37, 29, 61, 1, 1.0f, 0.0f);
    size_t nc = (size_t)p.M * p.ldc;
    for (int i = 0; i < p.M; i++)
        for (int j = 0; j < p.N; j++) p.C0[(size_t)i * p.ldc + j] = NAN;
    float *want = run_bf16(&p), *C = malloc(nc * sizeof *C), *F = malloc(nc * sizeof *F);
    assert_true(C && F);

    assert_int_equal(nn_gemm_precision(), NN_PREC_F32);
    assert_int_equal(nn_gemm_set_precision(NN_PREC_BF16), NN_PREC_F32);
    assert_int_equal(nn_gemm_precision(), NN_PREC_BF16);
    memcpy(C, p.C0, nc * sizeof *C);
    nn_sgemm(p.ta, p.tb, p.M, p.N, p.K, 1.0f, p.A, p.lda, p.B, p.ldb, 0.0f, C, p.ldc);
    assert_memory_equal(C, want, nc * sizeof *C);
    check(&p, C, "nn_sgemm at bf16");

    /* back to float32: nn_sgemm is the float32 product again */
    assert_int_equal(nn_gemm_set_precision(NN_PREC_F32), NN_PREC_BF16);
    memcpy(C, p.C0, nc * sizeof *C);
    nn_sgemm(p.ta, p.tb, p.M, p.N, p.K, 1.0f, p.A, p.lda, p.B, p.ldb, 0.0f, C, p.ldc);
    memcpy(F, p.C0, nc * sizeof *F);
    nn_sgemm_naive(p.ta, p.tb, p.M, p.N, p.K, 1.0f, p.A, p.lda, p.B, p.ldb, 0.0f, F, p.ldc);
    for (int i = 0; i < p.M; i++)
        for (int j = 0; j < p.N; j++) {
            size_t x = (size_t)i * p.ldc + j;
            assert_false(isnan(C[x]));
            assert_true(fabsf(C[x] - F[x]) <= 1e-4f);
        }
    free(want), free(C), free(F);
    prob_free(&p);
    nn_gemm_release();
}

/* out = the bf16 product with every operand converted anew */
static void fresh(char ta, char tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc)
{
    nn_gemm_keep_copies(0);
    nn_sgemm_bf16(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
    nn_gemm_keep_copies(1);
}

/* Kept copies (a layer's backward: dx = dy W, then dW = dy^T x) give what
 * fresh conversions give; a product that writes over a kept operand, and
 * a new precision scope after the caller changed one, make it converted
 * anew. Both the bf16 matmul and the small (float32) path. */
static void test_kept_copies(void **state)
{
    (void)state;
    static const int dims[][3] = {{64, 24, 40}, {64, 3, 40}}; /* B, I, O: bf16 matmul; small path */
    for (size_t d = 0; d < PT_ARRAY_LEN(dims); d++) {
        int B = dims[d][0], I = dims[d][1], O = dims[d][2];
        size_t nw = (size_t)O * I * sizeof(float);
        float *dy = vec((size_t)B * O), *W = vec((size_t)O * I), *x = vec((size_t)B * I);
        float *dx = vec((size_t)B * I), *dW = vec((size_t)O * I), *dW0 = malloc(nw), *want = malloc(nw);
        assert_true(dW0 && want);
        memcpy(dW0, dW, nw);

        enum nn_precision prev = nn_gemm_set_precision(NN_PREC_BF16);
        memcpy(want, dW0, nw);
        fresh('T', 'N', O, I, B, dy, O, x, I, 1.0f, want, I);
        nn_sgemm('N', 'N', B, I, O, 1.0f, dy, O, W, I, 1.0f, dx, I);
        nn_sgemm('T', 'N', O, I, B, 1.0f, dy, O, x, I, 1.0f, dW, I);
        assert_memory_equal(dW, want, nw);

        /* the same pointer read at another stored width: its own copy */
        memcpy(dW, dW0, nw);
        memcpy(want, dW0, nw);
        fresh('T', 'N', O - 1, I, B, dy, O, x, I, 1.0f, want, I);
        nn_sgemm('T', 'N', O - 1, I, B, 1.0f, dy, O, x, I, 1.0f, dW, I);
        assert_memory_equal(dW, want, nw);

        /* a product writes into dy's rows 1..B-1 (C = x W^T, columns 0..O-1):
         * the next read of dy converts the new values */
        nn_sgemm('N', 'T', B - 1, O, I, 1.0f, x, I, W, I, 0.0f, dy + O, O);
        memcpy(dW, dW0, nw);
        memcpy(want, dW0, nw);
        fresh('T', 'N', O, I, B, dy, O, x, I, 1.0f, want, I);
        nn_sgemm('T', 'N', O, I, B, 1.0f, dy, O, x, I, 1.0f, dW, I);
        assert_memory_equal(dW, want, nw);

        /* a new scope: the caller may have changed an operand (x here) */
        nn_gemm_set_precision(NN_PREC_BF16);
        for (int i = 0; i < B * I; i++) x[i] = -0.5f * x[i] + 0.125f;
        nn_gemm_set_precision(NN_PREC_BF16);
        memcpy(want, dW0, nw);
        fresh('T', 'N', O, I, B, dy, O, x, I, 0.0f, want, I);
        nn_sgemm('T', 'N', O, I, B, 1.0f, dy, O, x, I, 0.0f, dW, I);
        assert_memory_equal(dW, want, nw);

        /* at float32 a direct nn_sgemm_bf16 keeps nothing: an operand
         * changed in place between two calls is converted anew */
        nn_gemm_set_precision(NN_PREC_F32);
        nn_sgemm_bf16('T', 'N', O, I, B, 1.0f, dy, O, x, I, 0.0f, dW, I);
        for (int i = 0; i < B * O; i++) dy[i] = 0.75f * dy[i] - 0.25f;
        memcpy(want, dW0, nw);
        fresh('T', 'N', O, I, B, dy, O, x, I, 0.0f, want, I);
        nn_sgemm_bf16('T', 'N', O, I, B, 1.0f, dy, O, x, I, 0.0f, dW, I);
        assert_memory_equal(dW, want, nw);

        nn_gemm_set_precision(prev);
        free(dy), free(W), free(x), free(dx), free(dW), free(dW0), free(want);
    }
    nn_gemm_release();
}

/* A producer's copy (nn_gemm_bf16_slot) is what the products read. With
 * only set the float values are stale: a product reads the copy, and one
 * that falls back to the plain loop (every kept copy of the step in use and
 * its scratch failing) restores the values from the copy first. */
static void test_slot_only(void **state)
{
    (void)state;
    enum { B = 32, O = 24, I = 20, S = 16, FILL = 61 };
    size_t ny = (size_t)B * O, nw = (size_t)O * I;
    float *dy = vec(ny), *keep = malloc(ny * sizeof *keep), *x = vec((size_t)B * I), *x2 = vec((size_t)B * I);
    float *dW = vec(nw), *want = vec(nw), *want2 = vec(nw), *pool = vec((size_t)FILL * S * S), *sq = vec(S * S);
    float *out = vec(S * S);
    assert_non_null(keep);
    memcpy(keep, dy, ny * sizeof *keep);
    enum nn_precision prev = nn_gemm_set_precision(NN_PREC_BF16);
    fresh('T', 'N', O, I, B, keep, O, x, I, 0.0f, want, I);
    fresh('T', 'N', O, I, B, keep, O, x2, I, 0.0f, want2, I);
    nn_gemm_release(); /* no scratch left from fresh(): the last product must allocate its own */
    nn_gemm_set_precision(NN_PREC_BF16); /* a new scope */
    uint16_t *cp = nn_gemm_bf16_slot(dy, B, O, O, 1);
    if (strcmp(nn_gemm_backend(), "dnnl") != 0) {
        assert_null(cp); /* no bf16 arrays without oneDNN: the caller writes floats */
    } else {
        assert_non_null(cp);
        nn_bf16_pack(cp, dy, ny);
        for (size_t i = 0; i < ny; i++) dy[i] = NAN;
        nn_sgemm('T', 'N', O, I, B, 1.0f, dy, O, x, I, 0.0f, dW, I);
        assert_memory_equal(dW, want, nw * sizeof(float));
        /* dy's and x's copies, then FILL + 1 more: all 64 in use */
        for (int i = 0; i < FILL; i++)
            nn_sgemm('N', 'N', S, S, S, 1.0f, pool + (size_t)i * S * S, S, sq, S, 0.0f, out, S);
        pt_alloc_fail_at(1); /* x2's scratch */
        nn_sgemm('T', 'N', O, I, B, 1.0f, dy, O, x2, I, 0.0f, dW, I);
        pt_alloc_fail_at(0);
        for (size_t i = 0; i < ny; i++) assert_true(bits(dy[i]) == bits(round1(keep[i])));
        for (size_t i = 0; i < nw; i++) assert_true(fabsf(dW[i] - want2[i]) <= 1e-5f * (1.0f + fabsf(want2[i])));
    }
    nn_gemm_set_precision(prev);
    free(dy), free(keep), free(x), free(x2), free(dW), free(want), free(want2), free(pool), free(sq), free(out);
    nn_gemm_release();
}

/* Products written only into the bf16 copy of a stale matrix C [B x 2H]
 * (nn_gemm_bf16_into_copy), one per column block, give the float product
 * rounded to bf16 and leave C's floats alone; without such a copy nothing
 * is written; a float product over one block then gives the other block's
 * values back to C from the copy before dropping it. */
static void test_into_copy(void **state)
{
    (void)state;
    enum { B = 32, H = 24, W = 2 * H, K = 20 };
    float *a0 = vec(B * K), *a1 = vec(B * K), *w0 = vec(K * H), *w1 = vec(K * H), *C = vec(B * W);
    float *want = vec(B * W), *was = malloc(B * W * sizeof *was);
    assert_non_null(was);
    memcpy(was, C, B * W * sizeof *was);
    enum nn_precision prev = nn_gemm_set_precision(NN_PREC_BF16);
    fresh('N', 'N', B, H, K, a0, K, w0, H, 0.0f, want, W);
    fresh('N', 'N', B, H, K, a1, K, w1, H, 0.0f, want + H, W);
    for (int i = 0; i < B * W; i++) want[i] = round1(want[i]);
    nn_gemm_set_precision(NN_PREC_BF16); /* a new scope: no copies */
    assert_int_equal(nn_gemm_bf16_into_copy('N', 'N', B, H, K, a0, K, w0, H, C, W), -1);
    assert_memory_equal(C, was, B * W * sizeof *C);
    uint16_t *cp = nn_gemm_bf16_slot(C, B, W, W, 1);
    if (strcmp(nn_gemm_backend(), "dnnl") != 0) {
        assert_null(cp);
    } else {
        assert_non_null(cp);
        assert_int_equal(nn_gemm_bf16_into_copy('N', 'N', B, H, K, a0, K, w0, H, C, W), 0);
        assert_int_equal(nn_gemm_bf16_into_copy('N', 'N', B, H, K, a1, K, w1, H, C + H, W), 0);
        assert_memory_equal(C, was, B * W * sizeof *C);
        for (int i = 0; i < B * W; i++)
            if (bits(from_bits((uint32_t)cp[i] << 16)) != bits(want[i]))
                fail_msg("copy[%d] = %g, want %g", i, from_bits((uint32_t)cp[i] << 16), want[i]);
        assert_ptr_equal(nn_gemm_bf16_find(C, B, W, W), cp);
        nn_sgemm('N', 'N', B, H, K, 1.0f, a1, K, w1, H, 0.0f, C + H, W);
        assert_null(nn_gemm_bf16_find(C, B, W, W));
        for (int r = 0; r < B; r++)
            for (int c = 0; c < W; c++) {
                float got = C[r * W + c], w = want[r * W + c];
                if (c < H) assert_true(bits(got) == bits(w));
                else assert_true(fabsf(got - w) <= 1e-2f * (1.0f + fabsf(w))); /* float, not rounded */
            }
    }
    nn_gemm_set_precision(prev);
    free(a0), free(a1), free(w0), free(w1), free(C), free(want), free(was);
    nn_gemm_release();
}

/* More shapes than the primitive cache holds (32), twice over: entries are
 * replaced and the answers stay right. */
static void test_cache_churn(void **state)
{
    (void)state;
    for (int round = 0; round < 2; round++)
        for (int s = 1; s <= 40; s++) {
            struct prob p;
            prob_make(&p, s % 2 ? 'N' : 'T', s % 3 ? 'T' : 'N', s, 41 - s, 2 * s + 1, 0, 1.0f, 1.0f);
            float *C = run_bf16(&p);
            check(&p, C, "cache churn");
            free(C);
            prob_free(&p);
        }
    nn_gemm_release();
    nn_gemm_release(); /* a second release is a no-op */
}

/* The k-th allocation of the scratch failing: the answer comes from the
 * plain loop and is still right; later calls work again. */
static void test_alloc_failure(void **state)
{
    (void)state;
    struct prob p;
    prob_make(&p, 'T', 'N', 19, 23, 31, 2, 1.0f, 1.0f);
    for (long k = 1; k <= 4; k++) {
        nn_gemm_release();
        pt_alloc_fail_at(k);
        float *C = run_bf16(&p);
        pt_alloc_fail_at(0);
        check(&p, C, "allocation failure");
        free(C);
    }
    float *C = run_bf16(&p);
    check(&p, C, "after the failures");
    free(C);
    prob_free(&p);
    nn_gemm_release();
}

/* Threads each make and free their own scratch and primitives. */
enum { NT = 4 };
struct thr {
    struct prob p;
    float *C;
};

static void *thr_main(void *arg)
{
    struct thr *t = arg;
    for (int r = 0; r < 3; r++) {
        free(t->C);
        t->C = run_bf16(&t->p);
    }
    nn_gemm_release();
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct thr t[NT];
    pthread_t id[NT];
    for (int k = 0; k < NT; k++) {
        prob_make(&t[k].p, k % 2 ? 'T' : 'N', 'N', 40 + k, 24, 70, 0, 1.0f, 0.0f);
        t[k].C = NULL;
    }
    for (int k = 0; k < NT; k++) assert_int_equal(pthread_create(&id[k], NULL, thr_main, &t[k]), 0);
    for (int k = 0; k < NT; k++) assert_int_equal(pthread_join(id[k], NULL), 0);
    for (int k = 0; k < NT; k++) {
        check(&t[k].p, t[k].C, "threads");
        free(t[k].C);
        prob_free(&t[k].p);
    }
}

/* ---- train.precision ---- */

static const char cfg_head[] = "data: {train: x.csv}\n"
                               "features: {numeric: [a]}\n"
                               "tasks: [{label: y}]\n";

static int parse_with(const char *train, struct pt_config **c)
{
    char text[512];
    snprintf(text, sizeof text, "%s%s", cfg_head, train);
    return config_parse(text, strlen(text), "case.yaml", c);
}

static void test_config_key(void **state)
{
    (void)state;
    struct pt_config *c = NULL;
    assert_int_equal(parse_with("", &c), PT_OK);
    assert_int_equal(c->bf16, 0);
    pt_config_free(c);
    assert_int_equal(parse_with("train: {precision: bf16}\n", &c), PT_OK);
    assert_int_equal(c->bf16, 1);
    pt_config_free(c);
    assert_int_equal(parse_with("train: {precision: f32}\n", &c), PT_OK);
    assert_int_equal(c->bf16, 0);
    pt_config_free(c);
    c = NULL;
    assert_int_equal(parse_with("train:\n  precision: fp16\n", &c), PT_ECONFIG);
    assert_null(c);
    assert_string_equal(pt_errmsg(), "case.yaml:5: 'precision' must be f32 or bf16, not 'fp16'");
    assert_int_equal(parse_with("train: {precision: [bf16]}\n", &c), PT_ECONFIG);
    assert_null(c);
}

/* ---- training both ways ---- */

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    return tmpdir_make(tmpdir, sizeof tmpdir, "bf16");
}

static int teardown(void **state)
{
    (void)state;
    tmpdir_remove(tmpdir);
    rmdir(tmpdir);
    return 0;
}

/* Rows whose labels follow the features through a logistic model (so both
 * tasks are learnable); seeded. */
static void write_csv(const char *path, int n, unsigned seed)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "u,c,a,b,click,conv\n");
    lcg = seed;
    for (int i = 0; i < n; i++) {
        int u = (int)((uni() + 1.0f) * 20.0f), c = (int)((uni() + 1.0f) * 3.0f);
        float a = uni(), b = uni();
        float z = 2.0f * a - 1.5f * b + (u % 3 == 0 ? 1.0f : -0.5f) + 0.5f * (float)(c - 2);
        int click = (uni() + 1.0f) * 0.5f < 1.0f / (1.0f + expf(-z));
        int conv = click && (uni() + 1.0f) * 0.5f < 1.0f / (1.0f + expf(-(a + 0.5f)));
        fprintf(f, "u%d,c%d,%.4f,%.4f,%d,%d\n", u, c, a, b, click, conv);
    }
    assert_int_equal(fclose(f), 0);
}

/* Writes the config text to tmpdir/name, trains it (operand copies kept
 * or not) and returns the training report (a new reference). */
static json_t *train_report(const char *name, const char *text, int keep)
{
    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s/%s", tmpdir, name);
    FILE *f = fopen(cpath, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    pt_config *cfg = NULL;
    assert_int_equal(pt_config_load(cpath, &cfg), PT_OK);
    pt_model *m = NULL;
    nn_gemm_keep_copies(keep);
    int rc = pt_train(cfg, NULL, &m);
    nn_gemm_keep_copies(1);
    if (rc) fail_msg("pt_train (%s): %s", name, pt_errmsg());
    char *json = NULL;
    assert_int_equal(pt_model_train_report(m, &json), PT_OK);
    json_t *r = json_loads(json, 0, NULL);
    assert_non_null(r);
    pt_string_free(json);
    pt_model_free(m);
    pt_config_free(cfg);
    return r;
}

/* Trains the small MMoE at the given precision; *auc the test AUC of
 * click; returns the report's precision string (malloc'd). */
static char *train_mmoe(const char *precision, double *auc)
{
    char name[64], text[1536];
    snprintf(name, sizeof name, "mmoe_%s.yaml", precision);
    snprintf(text, sizeof text,
             "data: {train: train.csv, test: test.csv}\n"
             "features: {categorical: [u, c], numeric: [a, b]}\n"
             "tasks:\n  - {name: click, label: click}\n  - {name: conv, label: conv}\n"
             "model: {kind: mmoe, experts: 3, expert_dims: [24, 12], tower_dims: [8]}\n"
             "train: {epochs: 4, batch: 64, seed: 3, precision: %s, optimizer: {kind: adam, lr: 0.01}}\n",
             precision);
    json_t *r = train_report(name, text, 1);
    const char *pr = json_string_value(json_object_get(r, "precision"));
    assert_non_null(pr);
    char *got = strdup(pr);
    json_t *auc_v = json_object_get(json_object_get(json_object_get(r, "tasks"), "click"), "auc");
    assert_true(json_is_number(auc_v));
    *auc = json_number_value(auc_v);
    json_decref(r);
    return got;
}

static void test_train_bf16(void **state)
{
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s/train.csv", tmpdir);
    write_csv(p, 3000, 7u);
    snprintf(p, sizeof p, "%s/test.csv", tmpdir);
    write_csv(p, 1000, 8u);
    double a32 = 0, a16 = 0;
    char *p32 = train_mmoe("f32", &a32), *p16 = train_mmoe("bf16", &a16);
    assert_string_equal(p32, "f32");
    assert_string_equal(p16, "bf16");
    free(p32), free(p16);
    /* the rows are learnable, and bf16 products learn them about as well */
    if (!(a32 > 0.7 && a16 > 0.7 && fabs(a32 - a16) < 0.02))
        fail_msg("test AUC click: f32 %.4f, bf16 %.4f", a32, a16);
    assert_int_equal(nn_gemm_precision(), NN_PREC_F32); /* pt_train left the thread as it was */
}

/* Trains kind (with extra model keys, dropout as given) for two epochs at
 * bf16, copies kept or not; returns the test metrics as JSON text
 * (malloc'd). */
static char *train_kind(const char *kind, const char *extra, const char *dropout, int keep)
{
    char name[64], text[1536];
    snprintf(name, sizeof name, "keep_%s.yaml", kind);
    snprintf(text, sizeof text,
             "data: {train: train.csv, test: test.csv}\n"
             "features: {categorical: [u, c], numeric: [a, b]}\n"
             "tasks:\n  - {name: click, label: click}\n  - {name: conv, label: conv}\n"
             "model: {kind: %s, tower_dims: [16], dropout: %s%s}\n"
             "train: {epochs: 2, batch: 64, seed: 5, precision: bf16}\n",
             kind, dropout, extra);
    json_t *r = train_report(name, text, keep);
    char *tasks = json_dumps(json_object_get(r, "tasks"), JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    assert_non_null(tasks);
    json_decref(r);
    return tasks;
}

/* Every kind trained with kept copies learns exactly what it learns with
 * every operand converted anew: a copy used after its memory changed would
 * change the weights, and with them the test metrics. With dropout and
 * without (where a fused level's experts write dh0 only as its bf16 copy,
 * the ReLU reads signs from copies, and products carry bias and ReLU). */
static void test_train_kept_copies(void **state)
{
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s/train.csv", tmpdir);
    write_csv(p, 1000, 11u);
    snprintf(p, sizeof p, "%s/test.csv", tmpdir);
    write_csv(p, 300, 12u);
    static const char *const kinds[][2] = {
        {"mmoe", ", experts: 3, expert_dims: [32, 16]"},
        {"mmoe", ", experts: 2, expert_dims: [32]"},
        {"ple", ", levels: 2, experts: 2, shared_experts: 1, expert_dims: [32, 16]"},
        {"shared_bottom", ", expert_dims: [32, 16]"},
        {"esmm", ", expert_dims: [32, 16]"},
    };
    static const char *const dropouts[] = {"0.2", "0"};
    for (size_t k = 0; k < PT_ARRAY_LEN(kinds); k++)
        for (size_t d = 0; d < PT_ARRAY_LEN(dropouts); d++) {
            char *a = train_kind(kinds[k][0], kinds[k][1], dropouts[d], 1);
            char *b = train_kind(kinds[k][0], kinds[k][1], dropouts[d], 0);
            if (strcmp(a, b))
                fail_msg("%s%s, dropout %s: kept copies %s, fresh %s", kinds[k][0], kinds[k][1], dropouts[d], a, b);
            free(a), free(b);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round),          cmocka_unit_test(test_against_oracle),
        cmocka_unit_test(test_degenerate),     cmocka_unit_test(test_precision_switch),
        cmocka_unit_test(test_kept_copies),         cmocka_unit_test(test_cache_churn),
        cmocka_unit_test(test_alloc_failure),   cmocka_unit_test(test_slot_only),
        cmocka_unit_test(test_into_copy),
        cmocka_unit_test(test_threads),        cmocka_unit_test(test_config_key),
        cmocka_unit_test(test_train_bf16),     cmocka_unit_test(test_train_kept_copies),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
