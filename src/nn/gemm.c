/* gemm.c: the one file that knows which BLAS is linked.
 *
 * Dims: M rows of C, N columns of C, K the contracted width. Row-major.
 * nn_sgemm dispatches to oneDNN (PT_HAVE_DNNL), OpenBLAS (PT_HAVE_CBLAS) or,
 * with neither, to cache-friendly plain loops; nn_sgemm_naive is the oracle
 * every backend is tested against (double accumulation, no reordering).
 * Degenerate shapes (M, N or K == 0) never reach the BLAS: some reject a
 * zero leading dimension, and K == 0 only scales C by beta.
 * beta == 0 overwrites C without reading it (BLAS semantics), so a caller
 * may pass uninitialised or NaN-filled output buffers. */
#include <stddef.h>

#include "nn/nn.h"

#if defined(PT_HAVE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#elif defined(PT_HAVE_CBLAS)
#include <cblas.h>
#endif

static int is_t(char t) { return t == 'T' || t == 't'; }

/* op(A)[i,k] and op(B)[k,j] read through the stored layout. */
static float at_a(const float *A, int lda, int ta, int i, int k)
{
    return ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}

static float at_b(const float *B, int ldb, int tb, int k, int j)
{
    return tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
}

/* C = beta * C for the M x N block, overwriting when beta == 0 so NaN or
 * garbage in C does not survive. */
static void scale_c(int M, int N, float beta, float *C, int ldc)
{
    if (beta == 1.0f) return;
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < N; j++) c[j] = 0.0f;
        else
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

void nn_sgemm_naive(char transa, char transb, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    int ta = is_t(transa), tb = is_t(transb);
    if (M <= 0 || N <= 0) return;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += (double)at_a(A, lda, ta, i, k) * (double)at_b(B, ldb, tb, k, j);
            float *c = C + (size_t)i * ldc + j;
            double prev = beta == 0.0f ? 0.0 : (double)beta * (double)*c;
            *c = (float)((double)alpha * s + prev);
        }
    }
}

#if !defined(PT_HAVE_DNNL) && !defined(PT_HAVE_CBLAS)
/* Fallback when no BLAS is linked: one output row per iteration (rows are
 * independent, so OpenMP splits them without races). For op(B) = B the inner
 * loop is an axpy over a contiguous row of B, which vectorises; for
 * op(B) = B^T each C element is a contiguous dot product over a row of B. */
static void sgemm_loops(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                        const float *B, int ldb, float *C, int ldc)
{
#ifdef PT_HAVE_OPENMP
#pragma omp parallel for schedule(static) if ((double)M * N * K > 65536.0)
#endif
    for (int i = 0; i < M; i++) {
        float *restrict c = C + (size_t)i * ldc;
        if (!tb) {
            for (int k = 0; k < K; k++) {
                float a = alpha * at_a(A, lda, ta, i, k);
                const float *restrict b = B + (size_t)k * ldb;
                for (int j = 0; j < N; j++) c[j] += a * b[j];
            }
        } else {
            for (int j = 0; j < N; j++) {
                const float *b = B + (size_t)j * ldb;
                float s = 0.0f;
                if (!ta) {
                    const float *a = A + (size_t)i * lda;
                    for (int k = 0; k < K; k++) s += a[k] * b[k];
                } else {
                    for (int k = 0; k < K; k++) s += A[(size_t)k * lda + i] * b[k];
                }
                c[j] += alpha * s;
            }
        }
    }
}
#endif

void nn_sgemm(char transa, char transb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    int ta = is_t(transa), tb = is_t(transb);
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
#if defined(PT_HAVE_DNNL)
    dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                                  beta, C, ldc);
    /* oneDNN only fails on arguments we already guarantee (positive dims,
     * strides >= widths); if it ever refuses, the oracle still gives the
     * right answer rather than leaving C stale. */
    if (st != dnnl_success)
        nn_sgemm_naive(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#elif defined(PT_HAVE_CBLAS)
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    scale_c(M, N, beta, C, ldc);
    sgemm_loops(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc);
#endif
}

const char *nn_gemm_backend(void)
{
#if defined(PT_HAVE_DNNL)
    return "dnnl";
#elif defined(PT_HAVE_CBLAS)
    return "openblas";
#else
    return "naive";
#endif
}
