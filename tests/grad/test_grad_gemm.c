/* test_grad_gemm.c: nn_sgemm (whatever backend is compiled in) and the
 * nn_sgemm_naive oracle against a double-precision reference written here,
 * for all four transpose combinations, odd sizes and padded strides.
 *
 * Dims: C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C.
 * Tolerance is relative to sum_k |a_ik b_kj| (the scale float rounding
 * errors grow with), not to |C|, which cancellation can make tiny. */
#include "grad/gradcheck.h"
#include "nn/nn.h"

typedef void (*gemm_fn)(char, char, int, int, int, float, const float *, int, const float *, int,
                        float, float *, int);

static void check_case(gemm_fn f, const char *name, char ta, char tb, int M, int N, int K,
                       float alpha, float beta, struct rng *r)
{
    int at = ta == 'T', bt = tb == 'T';
    /* Stored shapes, each row padded by a few columns. */
    int arows = at ? K : M, acols = at ? M : K, lda = acols + 3;
    int brows = bt ? N : K, bcols = bt ? K : N, ldb = bcols + 2;
    int ldc = N + 5;
    float *A = gc_alloc((size_t)arows * lda), *B = gc_alloc((size_t)brows * ldb);
    float *C = gc_alloc((size_t)M * ldc), *C0 = gc_alloc((size_t)M * ldc);
    gc_fill(A, (size_t)arows * lda, NAN); /* padding must never be read */
    gc_fill(B, (size_t)brows * ldb, NAN);
    for (int i = 0; i < arows; i++) gc_fill_normal(A + (size_t)i * lda, acols, r, 1.0f);
    for (int i = 0; i < brows; i++) gc_fill_normal(B + (size_t)i * ldb, bcols, r, 1.0f);
    gc_fill(C0, (size_t)M * ldc, 99.0f);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            C0[(size_t)i * ldc + j] = beta == 0.0f ? NAN : rng_normal(r); /* beta 0: not read */
    memcpy(C, C0, (size_t)M * ldc * sizeof(float));
    f(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < ldc; j++) {
            float got = C[(size_t)i * ldc + j];
            if (j >= N) {
                if (got != 99.0f) fail_msg("%s %c%c: padding C[%d,%d] written", name, ta, tb, i, j);
                continue;
            }
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double a = at ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = bt ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
                mag += fabs(a * b);
            }
            double c0 = beta == 0.0f ? 0.0 : C0[(size_t)i * ldc + j];
            double want = alpha * s + beta * c0;
            double tol = 1e-4 * (fabs(alpha) * mag + fabs(beta * c0)) + 1e-6;
            if (!(fabs(got - want) <= tol))
                fail_msg("%s %c%c M=%d N=%d K=%d alpha=%g beta=%g: C[%d,%d] = %.7g, want %.7g", name,
                         ta, tb, M, N, K, alpha, beta, i, j, got, want);
        }
    }
    pt_free(A), pt_free(B), pt_free(C), pt_free(C0);
}

static void test_sgemm_vs_reference(void **state)
{
    (void)state;
    static const int sizes[][3] = {{1, 1, 1},   {3, 5, 7},    {17, 1, 33},  {1, 19, 4},
                                   {33, 65, 17}, {64, 48, 129}, {100, 37, 211}, {7, 130, 3}};
    static const float ab[][2] = {{1.0f, 0.0f}, {0.7f, 1.0f}, {-1.3f, 0.5f}};
    static const char tr[2] = {'N', 'T'};
    struct rng r;
    rng_seed(&r, 21);
    print_message("gemm backend: %s\n", nn_gemm_backend());
    for (size_t s = 0; s < PT_ARRAY_LEN(sizes); s++)
        for (int t = 0; t < 4; t++)
            for (size_t k = 0; k < PT_ARRAY_LEN(ab); k++) {
                int M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
                check_case(nn_sgemm, "nn_sgemm", tr[t >> 1], tr[t & 1], M, N, K, ab[k][0], ab[k][1],
                           &r);
                check_case(nn_sgemm_naive, "nn_sgemm_naive", tr[t >> 1], tr[t & 1], M, N, K,
                           ab[k][0], ab[k][1], &r);
            }
}

/* The fast path and the oracle agree directly (same inputs). */
static void test_sgemm_vs_naive(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 22);
    int M = 45, N = 77, K = 301;
    float *A = gc_alloc((size_t)K * K), *B = gc_alloc((size_t)K * K);
    float *C1 = gc_alloc((size_t)M * N), *C2 = gc_alloc((size_t)M * N);
    gc_fill_normal(A, (size_t)K * K, &r, 1.0f);
    gc_fill_normal(B, (size_t)K * K, &r, 1.0f);
    for (int t = 0; t < 4; t++) {
        char ta = t >> 1 ? 'T' : 'N', tb = t & 1 ? 'T' : 'N';
        int lda = ta == 'T' ? M : K, ldb = tb == 'T' ? K : N;
        gc_fill(C1, (size_t)M * N, 0.25f), gc_fill(C2, (size_t)M * N, 0.25f);
        nn_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 1.0f, C1, N);
        nn_sgemm_naive(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, 1.0f, C2, N);
        for (int i = 0; i < M * N; i++)
            if (!(fabsf(C1[i] - C2[i]) <= 1e-4f * (1.0f + fabsf(C2[i]))))
                fail_msg("%c%c: [%d] %.7g vs naive %.7g", ta, tb, i, C1[i], C2[i]);
    }
    pt_free(A), pt_free(B), pt_free(C1), pt_free(C2);
}

/* Empty shapes never reach the BLAS and never read A or B (NULL here):
 * M or N == 0 leaves C alone; K == 0 scales C by beta (0 overwrites NaN). */
static void test_sgemm_empty(void **state)
{
    (void)state;
    gemm_fn fs[2] = {nn_sgemm, nn_sgemm_naive};
    for (int f = 0; f < 2; f++) {
        float C[6] = {1, 2, 3, 4, 5, 6};
        fs[f]('N', 'N', 0, 3, 4, 1.0f, NULL, 4, NULL, 3, 0.0f, C, 3);
        fs[f]('T', 'N', 2, 0, 4, 1.0f, NULL, 2, NULL, 1, 0.0f, C, 3);
        for (int i = 0; i < 6; i++) assert_true(C[i] == (float)(i + 1));
        fs[f]('N', 'T', 2, 3, 0, 1.0f, NULL, 1, NULL, 1, 0.5f, C, 3);
        for (int i = 0; i < 6; i++) assert_true(C[i] == 0.5f * (float)(i + 1));
        gc_fill(C, 6, NAN);
        fs[f]('N', 'N', 2, 3, 0, 1.0f, NULL, 1, NULL, 3, 0.0f, C, 3);
        for (int i = 0; i < 6; i++) assert_true(C[i] == 0.0f);
    }
    const char *b = nn_gemm_backend();
    assert_true(!strcmp(b, "dnnl") || !strcmp(b, "openblas") || !strcmp(b, "naive"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgemm_vs_reference),
        cmocka_unit_test(test_sgemm_vs_naive),
        cmocka_unit_test(test_sgemm_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
