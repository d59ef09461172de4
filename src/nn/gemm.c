/* gemm.c: the one file that knows which BLAS is linked.
 *
 * Dims: M rows of C, N columns of C, K the contracted width. Row-major.
 * nn_sgemm dispatches to oneDNN (PT_HAVE_DNNL), OpenBLAS (PT_HAVE_CBLAS) or,
 * with neither, to cache-friendly plain loops; nn_sgemm_naive is the oracle
 * every backend is tested against (double accumulation, no reordering).
 * Degenerate shapes (M, N or K == 0) never reach the BLAS: some reject a
 * zero leading dimension, and K == 0 only scales C by beta.
 * beta == 0 overwrites C without reading it (BLAS semantics), so a caller
 * may pass uninitialised or NaN-filled output buffers.
 *
 * bf16 products (opt-in, train.precision: bf16): nn_sgemm_bf16, or nn_sgemm
 * on a thread whose precision is NN_PREC_BF16, rounds op(A) and op(B) to
 * bfloat16 (nearest, ties to even) and accumulates and writes float32.
 * With oneDNN the rounded copies are bf16 arrays fed to a matmul primitive
 * (the AVX-512 BF16 brgemm kernels where the CPU has them), cached per shape
 * on the calling thread; a product with a dimension under 16 (gates, 1-unit
 * outputs: up to 6x slower as a bf16 matmul) and every product without
 * oneDNN instead runs the float32 product on bf16 values held as float, so
 * every path computes the same thing up to float32 summation order. The
 * copies and primitives are per thread (no locks; threads never share them)
 * and reused, so a training step allocates nothing once each shape has been
 * seen; nn_gemm_release frees the calling thread's.
 *
 * Kept copies: a training step reads most operands twice (a weight in its
 * forward and in dx, an activation in its forward and in dW, dy in dx and
 * dW), stored the same way both times, so each converted operand is kept
 * by its stored matrix (pointer, rows, columns, stride, kind) while the
 * thread's precision is bf16, until it is next set, which the training loop
 * does around each step. A product's output range drops the copies it
 * overlaps; any other change to an operand's memory within the scope is the
 * caller's to avoid (nn.h). Direct nn_sgemm_bf16 calls at float32 keep
 * nothing: their callers promise nothing. A layer pass that writes an
 * operand (bias and ReLU, the ReLU backward) can make its copy itself
 * (nn_gemm_bf16_slot), row by row while the values are in cache, and even
 * leave the float values unwritten when only products read them. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "nn/nn.h"

#if defined(PT_HAVE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
#include <immintrin.h>
#endif
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

/* The float32 product on whichever backend is compiled in. */
static void sgemm_f32(char transa, char transb, int M, int N, int K, float alpha, const float *A,
                      int lda, const float *B, int ldb, float beta, float *C, int ldc)
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

/* ---- bf16 products ---- */

static _Thread_local enum nn_precision tls_precision = NN_PREC_F32;
static _Thread_local int tls_keep = 1;
static void copies_forget(void);

enum nn_precision nn_gemm_set_precision(enum nn_precision p)
{
    enum nn_precision prev = tls_precision;
    tls_precision = p == NN_PREC_BF16 ? NN_PREC_BF16 : NN_PREC_F32;
    copies_forget();
    return prev;
}

void nn_gemm_keep_copies(int on)
{
    tls_keep = on != 0;
    copies_forget();
}

enum nn_precision nn_gemm_precision(void) { return tls_precision; }

/* The top 16 bits of float u rounded to nearest, ties to even; a NaN stays
 * a (quiet) NaN instead of rounding up into infinity. */
static inline uint32_t bf16_bits(uint32_t u)
{
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t q = (u >> 16) | 0x40u;
    return (u & 0x7fffffffu) > 0x7f800000u ? q : r;
}

/* Fixed-size chunks so the baseline -O2 vectoriser (which will not add a
 * scalar epilogue) takes the inner loops; the tails are scalar. */
enum { CHUNK = 16 };

PT_VECTOR_CLONES void nn_bf16_round(float *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        uint32_t u[CHUNK];
        memcpy(u, src + i, sizeof u);
        for (int j = 0; j < CHUNK; j++) u[j] = bf16_bits(u[j]) << 16;
        memcpy(dst + i, u, sizeof u);
    }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, sizeof u);
        u = bf16_bits(u) << 16;
        memcpy(dst + i, &u, sizeof u);
    }
}

#if defined(PT_HAVE_DNNL)
/* dst[n] = bf16 bits of src[n] (the same rounding as nn_bf16_round). */
PT_VECTOR_CLONES static void to_bf16_loop(uint16_t *restrict dst, const float *restrict src, size_t n)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        uint32_t u[CHUNK];
        memcpy(u, src + i, sizeof u);
        for (int j = 0; j < CHUNK; j++) dst[i + j] = (uint16_t)bf16_bits(u[j]);
    }
    for (; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, sizeof u);
        dst[i] = (uint16_t)bf16_bits(u);
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10
/* The AVX512_BF16 instruction for it, 32 values at a time: the same
 * rounding, except that subnormal inputs (below 2^-126) become zero. About
 * 1.5-3x the loop's speed, which matters because every product converts
 * both of its inputs. */
__attribute__((target("avx512f,avx512bf16"))) static void to_bf16_avx512(uint16_t *restrict dst,
                                                                        const float *restrict src, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    to_bf16_loop(dst + i, src + i, n - i);
}

static void to_bf16(uint16_t *dst, const float *src, size_t n)
{
    if (__builtin_cpu_supports("avx512bf16"))
        to_bf16_avx512(dst, src, n);
    else
        to_bf16_loop(dst, src, n);
}
#else
static void to_bf16(uint16_t *dst, const float *src, size_t n) { to_bf16_loop(dst, src, n); }
#endif

/* A cached matmul: the shape it was made for and its memory objects (their
 * data handles are set on every call). */
struct bf16_prim {
    int used;
    int ta, tb, M, N, K, ldc;
    float alpha, beta;
    int post; /* a layer's epilogue inside: POST_BIAS, POST_RELU (bias then ReLU), or 0 */
    int cbf;  /* C in bf16 bits, else float32 */
    dnnl_primitive_t p;
    dnnl_memory_t a, b, c, bias;
};
enum { POST_BIAS = 1, POST_RELU = 2 };

enum { PRIM_CACHE = 32 }; /* a model's distinct GEMM shapes, with room */
enum { TMP_MIN_K = 512 }; /* beta != 0 from this K on: product to scratch, then added */
#endif
enum { SMALL_DIM = 16 }; /* products with a smaller M, N or K run in float32 */

/* A converted operand: the stored matrix at of, rows x cols at stride ld,
 * elem bytes a value (2: bf16 bits, 4: bf16 values as float), packed in
 * buf; current while gen is the state's. */
struct bf16_copy {
    const float *of;
    int rows, cols, ld;
    size_t elem;
    unsigned gen;
    int only; /* of holds stale values: the copy is the only record (nn_gemm_bf16_slot) */
    void *buf;
    size_t cap;
};

enum { COPIES = 64 }; /* a step's operands, with room (large-vocab MMoE: about 30) */

/* The calling thread's scratch: a and b the rounded copies of op(A) and
 * op(B) as stored (rows of the stored matrix packed to their used width;
 * bf16 bits for a oneDNN matmul, bf16 values as float otherwise) when no
 * kept copy is free, c the product before it is added into C; the kept
 * copies; with oneDNN its engine, stream and primitives. Capacities in
 * bytes. */
struct bf16_state {
    void *a, *b, *c;
    size_t acap, bcap, ccap;
    struct bf16_copy cp[COPIES];
    unsigned gen; /* copies of another generation are free */
#if defined(PT_HAVE_DNNL)
    dnnl_engine_t eng;
    dnnl_stream_t st;
    struct bf16_prim prim[PRIM_CACHE];
    int next; /* round-robin victim when the cache is full */
#endif
};

static _Thread_local struct bf16_state *tls_bf16;

static void copies_forget(void)
{
    if (tls_bf16) tls_bf16->gen++;
}

/* A stored matrix whose float values a producer left stale (its copy the
 * only record, nn_gemm_bf16_slot with only) gets them back from the copy:
 * the bf16 values, which is what a float product would round to anyway.
 * The producer gave that memory to the copy, hence the cast. */
static void restore_copy(struct bf16_copy *c)
{
    if (!c->only || c->elem != sizeof(uint16_t)) return;
    float *dst = (float *)(uintptr_t)c->of;
    const uint16_t *b = c->buf;
    for (int r = 0; r < c->rows; r++)
        for (int k = 0; k < c->cols; k++) {
            uint32_t u = (uint32_t)b[(size_t)r * c->cols + k] << 16;
            memcpy(&dst[(size_t)r * c->ld + k], &u, sizeof u);
        }
    c->only = 0;
}

/* 1 when e is a current copy of memory in the range of C[M, N] at stride ldc. */
static int copy_overlaps(const struct bf16_state *s, const struct bf16_copy *e, const float *C, int M, int N, int ldc)
{
    if (e->gen != s->gen || !e->of) return 0;
    const float *end = C + (size_t)(M - 1) * ldc + N;
    const float *lo = e->of, *hi = e->of + (size_t)(e->rows - 1) * e->ld + e->cols;
    return lo < end && C < hi;
}

/* A product wrote C[M, N] at stride ldc: copies of memory in that range
 * are stale. One whose float values were stale gets them back first, for
 * the rest of its matrix that C did not cover. */
static void copies_drop(struct bf16_state *s, const float *C, int M, int N, int ldc)
{
    for (int i = 0; i < COPIES; i++) {
        struct bf16_copy *e = &s->cp[i];
        if (!copy_overlaps(s, e, C, M, N, ldc)) continue;
        restore_copy(e);
        e->gen = s->gen - 1;
    }
}

#if defined(PT_HAVE_DNNL)
static void prim_clear(struct bf16_prim *e)
{
    if (e->p) dnnl_primitive_destroy(e->p);
    if (e->a) dnnl_memory_destroy(e->a);
    if (e->b) dnnl_memory_destroy(e->b);
    if (e->c) dnnl_memory_destroy(e->c);
    if (e->bias) dnnl_memory_destroy(e->bias);
    memset(e, 0, sizeof *e);
}
#endif

void nn_gemm_release(void)
{
    struct bf16_state *s = tls_bf16;
    if (!s) return;
#if defined(PT_HAVE_DNNL)
    for (int i = 0; i < PRIM_CACHE; i++) prim_clear(&s->prim[i]);
    if (s->st) dnnl_stream_destroy(s->st);
    if (s->eng) dnnl_engine_destroy(s->eng);
#endif
    for (int i = 0; i < COPIES; i++) pt_free(s->cp[i].buf);
    pt_free(s->a);
    pt_free(s->b);
    pt_free(s->c);
    pt_free(s);
    tls_bf16 = NULL;
}

static struct bf16_state *state_get(void)
{
    if (tls_bf16) return tls_bf16;
    struct bf16_state *s = pt_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->gen = 1; /* the zeroed copies are of generation 0: free */
#if defined(PT_HAVE_DNNL)
    if (dnnl_engine_create(&s->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&s->st, s->eng, dnnl_stream_default_flags) != dnnl_success) {
        if (s->eng) dnnl_engine_destroy(s->eng);
        pt_free(s);
        return NULL;
    }
#endif
    tls_bf16 = s;
    return s;
}

#if defined(PT_HAVE_DNNL)
/* The matmul for this shape: C[M,N] (row stride ldc) = alpha * op(A) op(B)
 * (+ beta C through a sum post-op), A and B bf16 packed as stored:
 * op(A) = A is [M,K] row-major, op(A) = A^T is A stored [K,M]; the same for
 * B. post: plus a bias[N], then ReLU with POST_RELU; cbf: C written as bf16
 * bits. NULL if oneDNN refuses. */
static struct bf16_prim *prim_get(struct bf16_state *s, int ta, int tb, int M, int N, int K,
                                  float alpha, float beta, int ldc, int post, int cbf)
{
    for (int i = 0; i < PRIM_CACHE; i++) {
        struct bf16_prim *e = &s->prim[i];
        if (e->used && e->ta == ta && e->tb == tb && e->M == M && e->N == N && e->K == K &&
            e->ldc == ldc && e->alpha == alpha && e->beta == beta && e->post == post && e->cbf == cbf)
            return e;
    }
    struct bf16_prim *e = NULL;
    for (int i = 0; i < PRIM_CACHE && !e; i++)
        if (!s->prim[i].used) e = &s->prim[i];
    if (!e) {
        e = &s->prim[s->next];
        s->next = (s->next + 1) % PRIM_CACHE;
        prim_clear(e);
    }
    dnnl_memory_desc_t amd, bmd, cmd, biasmd;
    dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N}, biasd = {1, N};
    dnnl_dims_t as = {ta ? 1 : K, ta ? M : 1}, bs = {tb ? 1 : N, tb ? K : 1}, cs = {ldc, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok = dnnl_memory_desc_init_by_strides(&amd, 2, ad, dnnl_bf16, as) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&bmd, 2, bd, dnnl_bf16, bs) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&cmd, 2, cd, cbf ? dnnl_bf16 : dnnl_f32, cs) == dnnl_success &&
             dnnl_memory_desc_init_by_tag(&biasmd, 2, biasd, dnnl_f32, dnnl_ab) == dnnl_success &&
             dnnl_matmul_desc_init(&md, &amd, &bmd, post ? &biasmd : NULL, &cmd) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && alpha != 1.0f) ok = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success;
    if (ok && (beta != 0.0f || post == POST_RELU)) {
        ok = dnnl_post_ops_create(&po) == dnnl_success;
        if (ok && beta != 0.0f) ok = dnnl_post_ops_append_sum(po, beta) == dnnl_success;
        if (ok && post == POST_RELU)
            ok = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f) == dnnl_success;
        ok = ok && dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    }
    ok = ok && dnnl_primitive_desc_create(&pd, &md, attr, s->eng, NULL) == dnnl_success &&
         dnnl_primitive_create(&e->p, pd) == dnnl_success &&
         dnnl_memory_create(&e->a, &amd, s->eng, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->b, &bmd, s->eng, DNNL_MEMORY_NONE) == dnnl_success &&
         dnnl_memory_create(&e->c, &cmd, s->eng, DNNL_MEMORY_NONE) == dnnl_success &&
         (!post || dnnl_memory_create(&e->bias, &biasmd, s->eng, DNNL_MEMORY_NONE) == dnnl_success);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (!ok) {
        prim_clear(e);
        return NULL;
    }
    e->used = 1;
    e->ta = ta, e->tb = tb, e->M = M, e->N = N, e->K = K, e->ldc = ldc;
    e->alpha = alpha, e->beta = beta;
    e->post = post, e->cbf = cbf;
    return e;
}

/* Runs e (no bias) on a, b into c; 1 when done. Execution only fails on
 * what creation already checked, and oneDNN checks its arguments before it
 * computes, so nothing is written then. */
static int matmul_run(struct bf16_state *s, struct bf16_prim *e, const void *a, const void *b, void *c)
{
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    return dnnl_memory_set_data_handle(e->a, (void *)a) == dnnl_success &&
           dnnl_memory_set_data_handle(e->b, (void *)b) == dnnl_success &&
           dnnl_memory_set_data_handle(e->c, c) == dnnl_success &&
           dnnl_primitive_execute(e->p, s->st, 3, args) == dnnl_success && dnnl_stream_wait(s->st) == dnnl_success;
}

/* c[0:n] = beta * c + t (c += t when beta is 1). */
PT_VECTOR_CLONES static void add_row(float *restrict c, const float *restrict t, float beta, int n)
{
    int j = 0;
    if (beta == 1.0f) {
        for (; j + CHUNK <= n; j += CHUNK)
            for (int k = 0; k < CHUNK; k++) c[j + k] += t[j + k];
        for (; j < n; j++) c[j] += t[j];
    } else {
        for (; j + CHUNK <= n; j += CHUNK)
            for (int k = 0; k < CHUNK; k++) c[j + k] = beta * c[j + k] + t[j + k];
        for (; j < n; j++) c[j] = beta * c[j] + t[j];
    }
}

/* dst[r, 0:c] = bf16(src[r*ld + 0:c]) for r < rows: the stored matrix with
 * its rows packed. */
static void pack_bf16(uint16_t *dst, const float *src, int rows, int cols, int ld)
{
    if (ld == cols) {
        to_bf16(dst, src, (size_t)rows * cols);
        return;
    }
    for (int r = 0; r < rows; r++) to_bf16(dst + (size_t)r * cols, src + (size_t)r * ld, (size_t)cols);
}
#endif

/* The same with the bf16 values held as float. */
static void pack_round(float *dst, const float *src, int rows, int cols, int ld)
{
    if (ld == cols) {
        nn_bf16_round(dst, src, (size_t)rows * cols);
        return;
    }
    for (int r = 0; r < rows; r++) nn_bf16_round(dst + (size_t)r * cols, src + (size_t)r * ld, (size_t)cols);
}

/* The oracle's loop on values rounded as they are read: the answer when
 * scratch cannot be had (out of memory) or oneDNN refuses a shape. */
static void sgemm_bf16_naive(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                             int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++) {
                float a = at_a(A, lda, ta, i, k), b = at_b(B, ldb, tb, k, j);
                nn_bf16_round(&a, &a, 1);
                nn_bf16_round(&b, &b, 1);
                s += (double)a * (double)b;
            }
            float *c = C + (size_t)i * ldc + j;
            double prev = beta == 0.0f ? 0.0 : (double)beta * (double)*c;
            *c = (float)((double)alpha * s + prev);
        }
    }
}

/* The kept copy of the stored matrix src (rows x cols at stride ld) as
 * elem-byte values: *fresh = 0 when it is current, else 1 and a free slot
 * (one already big enough if there is one) now keyed to src, whose buffer
 * the caller fills. NULL when copies are not kept or the slot cannot grow. */
/* The current copy of that stored matrix, or NULL. */
static struct bf16_copy *copy_find(struct bf16_state *s, const float *src, int rows, int cols, int ld, size_t elem)
{
    for (int i = 0; i < COPIES; i++) {
        struct bf16_copy *c = &s->cp[i];
        if (c->gen == s->gen && c->of == src && c->rows == rows && c->cols == cols && c->ld == ld && c->elem == elem)
            return c;
    }
    return NULL;
}

static struct bf16_copy *copy_slot(struct bf16_state *s, const float *src, int rows, int cols, int ld, size_t elem,
                                   int *fresh)
{
    if (!tls_keep || tls_precision != NN_PREC_BF16) return NULL;
    struct bf16_copy *have = copy_find(s, src, rows, cols, ld, elem);
    if (have) {
        *fresh = 0;
        return have;
    }
    size_t need = (size_t)rows * cols * elem;
    struct bf16_copy *e = NULL;
    for (int i = 0; i < COPIES; i++) {
        struct bf16_copy *c = &s->cp[i];
        if (c->gen == s->gen) continue;
        if (!e || (e->cap < need && c->cap >= need)) e = c;
        if (e->cap >= need) break;
    }
    if (!e) return NULL;
    if (pt_grow(&e->buf, &e->cap, need, 1)) {
        pt_error_clear();
        return NULL;
    }
    e->of = src, e->rows = rows, e->cols = cols, e->ld = ld, e->elem = elem;
    e->gen = s->gen;
    e->only = 0;
    *fresh = 1;
    return e;
}

/* The stored matrix src (rows x cols at stride ld) converted to elem-byte
 * values: a kept copy when the thread has one or can make one, else
 * converted into *scratch (grown to fit). NULL when out of memory. */
static const void *operand(struct bf16_state *s, const float *src, int rows, int cols, int ld, size_t elem,
                           void **scratch, size_t *scap)
{
    int fresh = 1;
    struct bf16_copy *e = copy_slot(s, src, rows, cols, ld, elem, &fresh);
    if (e && !fresh) return e->buf;
    void *dst;
    if (e) {
        dst = e->buf;
    } else {
        if (pt_grow(scratch, scap, (size_t)rows * cols * elem, 1)) return NULL;
        dst = *scratch;
    }
#if defined(PT_HAVE_DNNL)
    if (elem == sizeof(uint16_t)) pack_bf16(dst, src, rows, cols, ld);
    else
#endif
        pack_round(dst, src, rows, cols, ld);
    return dst;
}

uint16_t *nn_gemm_bf16_slot(float *src, int rows, int cols, int ld, int only)
{
#if defined(PT_HAVE_DNNL)
    if (!tls_keep || tls_precision != NN_PREC_BF16 || rows <= 0 || cols <= 0) return NULL;
    struct bf16_state *s = state_get();
    if (!s) {
        pt_error_clear();
        return NULL;
    }
    int fresh;
    struct bf16_copy *e = copy_slot(s, src, rows, cols, ld, sizeof(uint16_t), &fresh);
    if (e) e->only = only;
    return e ? e->buf : NULL;
#else
    (void)src, (void)rows, (void)cols, (void)ld, (void)only;
    return NULL;
#endif
}

const uint16_t *nn_gemm_bf16_find(const float *src, int rows, int cols, int ld)
{
    struct bf16_state *s = tls_bf16;
    if (!s || !tls_keep || tls_precision != NN_PREC_BF16) return NULL;
    const struct bf16_copy *c = copy_find(s, src, rows, cols, ld, sizeof(uint16_t));
    return c ? c->buf : NULL;
}

int nn_gemm_bf16_layer(const float *x, int ldx, const float *W, const float *b, int B, int I, int O, int relu,
                       float *y, int ldy, uint16_t *ybf)
{
#if defined(PT_HAVE_DNNL)
    if (!b || !nn_gemm_bf16_dims(B, O, I)) return -1;
    struct bf16_state *s = state_get();
    const void *pa = s ? operand(s, x, B, I, ldx, sizeof(uint16_t), &s->a, &s->acap) : NULL;
    const void *pb = pa ? operand(s, W, O, I, I, sizeof(uint16_t), &s->b, &s->bcap) : NULL;
    struct bf16_prim *e = pb ? prim_get(s, 0, 1, B, O, I, 1.0f, 0.0f, ybf ? O : ldy, relu ? POST_RELU : POST_BIAS,
                                        ybf != NULL)
                             : NULL;
    if (!e) {
        pt_error_clear();
        return -1;
    }
    void *dst = ybf ? (void *)ybf : (void *)y;
    if (!ybf) copies_drop(s, y, B, O, ldy);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_BIAS, e->bias}, {DNNL_ARG_DST, e->c}};
    int ok = dnnl_memory_set_data_handle(e->a, (void *)pa) == dnnl_success &&
             dnnl_memory_set_data_handle(e->b, (void *)pb) == dnnl_success &&
             dnnl_memory_set_data_handle(e->bias, (void *)b) == dnnl_success &&
             dnnl_memory_set_data_handle(e->c, dst) == dnnl_success &&
             dnnl_primitive_execute(e->p, s->st, 4, args) == dnnl_success &&
             dnnl_stream_wait(s->st) == dnnl_success;
    if (!ok) return -1; /* oneDNN checks its arguments before it computes: nothing written */
    return 0;
#else
    (void)x, (void)ldx, (void)W, (void)b, (void)B, (void)I, (void)O, (void)relu, (void)y, (void)ldy, (void)ybf;
    return -1;
#endif
}

int nn_gemm_bf16_into_copy(char transa, char transb, int M, int N, int K, const float *A, int lda, const float *B,
                           int ldb, float *C, int ldc)
{
#if defined(PT_HAVE_DNNL)
    struct bf16_state *s = tls_bf16;
    if (!s || !tls_keep || M <= 0 || N <= 0 || !nn_gemm_bf16_dims(M, N, K)) return -1;
    /* the stale matrix whose copy holds C's place: C's rows lie at its
     * stride, within its rows and columns */
    struct bf16_copy *c = NULL;
    for (int i = 0; i < COPIES && !c; i++) {
        struct bf16_copy *q = &s->cp[i];
        if (q->gen != s->gen || !q->only || q->elem != sizeof(uint16_t) || q->ld != ldc || C < q->of) continue;
        size_t off = (size_t)(C - q->of), r = off / (size_t)ldc, k = off % (size_t)ldc;
        if (r + (size_t)M <= (size_t)q->rows && k + (size_t)N <= (size_t)q->cols) c = q;
    }
    if (!c) return -1;
    /* any other copy of C's memory no longer holds its values */
    for (int i = 0; i < COPIES; i++)
        if (&s->cp[i] != c && copy_overlaps(s, &s->cp[i], C, M, N, ldc)) s->cp[i].gen = s->gen - 1;
    size_t off = (size_t)(C - c->of);
    uint16_t *dst = (uint16_t *)c->buf + off / (size_t)ldc * (size_t)c->cols + off % (size_t)ldc;
    int ta = is_t(transa), tb = is_t(transb);
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    const void *pa = operand(s, A, ar, ac, lda, sizeof(uint16_t), &s->a, &s->acap);
    const void *pb = pa ? operand(s, B, br, bc, ldb, sizeof(uint16_t), &s->b, &s->bcap) : NULL;
    struct bf16_prim *e = pb ? prim_get(s, ta, tb, M, N, K, 1.0f, 0.0f, c->cols, 0, 1) : NULL;
    if (!e) {
        pt_error_clear();
        return -1;
    }
    return matmul_run(s, e, pa, pb, dst) ? 0 : -1; /* a failure wrote nothing */
#else
    (void)transa, (void)transb, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)C, (void)ldc;
    return -1;
#endif
}

#if defined(PT_HAVE_DNNL)
/* Before a product falls back to reading float operands: the stale ones
 * get their values back (restore_copy), so it computes the same. */
static void restore(struct bf16_state *s, const float *src, int rows, int cols, int ld)
{
    for (int i = 0; i < COPIES; i++) {
        struct bf16_copy *c = &s->cp[i];
        if (c->gen == s->gen && c->of == src && c->rows == rows && c->cols == cols && c->ld == ld) restore_copy(c);
    }
}
#endif

/* Before a product reads float operands: the stale ones get their values
 * back (restore). */
static void unstale(struct bf16_state *s, int ta, int tb, int M, int N, int K, const float *A, int lda,
                    const float *B, int ldb)
{
#if defined(PT_HAVE_DNNL)
    if (s) {
        restore(s, A, ta ? K : M, ta ? M : K, lda);
        restore(s, B, tb ? N : K, tb ? K : N, ldb);
    }
#else
    (void)s, (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb;
#endif
}

/* The plain loop when a bf16 product cannot run as planned (out of memory,
 * oneDNN refused), after the stale operands get their values back. */
static void fallback(struct bf16_state *s, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc)
{
    unstale(s, ta, tb, M, N, K, A, lda, B, ldb);
    sgemm_bf16_naive(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int nn_gemm_bf16_dims(int M, int N, int K)
{
#if defined(PT_HAVE_DNNL)
    return tls_precision == NN_PREC_BF16 && M >= SMALL_DIM && N >= SMALL_DIM && K >= SMALL_DIM;
#else
    (void)M, (void)N, (void)K;
    return 0;
#endif
}

void nn_bf16_pack(uint16_t *dst, const float *src, size_t n)
{
#if defined(PT_HAVE_DNNL)
    to_bf16(dst, src, n);
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + i, sizeof u);
        dst[i] = (uint16_t)bf16_bits(u);
    }
#endif
}

/* nn_sgemm_bf16 on the calling thread's scratch and copies */
static void sgemm_bf16(char transa, char transb, int M, int N, int K, float alpha, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc)
{
    int ta = is_t(transa), tb = is_t(transb);
    if (M <= 0 || N <= 0) return;
    /* C's copies go (and a stale C gets its values back) before C is
     * read or written */
    if (K <= 0 || alpha == 0.0f) {
        if (tls_bf16) copies_drop(tls_bf16, C, M, N, ldc);
        scale_c(M, N, beta, C, ldc);
        return;
    }
    /* A product with a dimension under SMALL_DIM (a gate over 4 experts, a
     * 1-unit output layer) ran up to 6x slower as a bf16 matmul than as
     * sgemm, and rounding its inputs first (a pass over the wide one, such
     * as a gate's input) cost as much as the product: it runs in float32. */
    if (M < SMALL_DIM || N < SMALL_DIM || K < SMALL_DIM) {
        unstale(tls_bf16, ta, tb, M, N, K, A, lda, B, ldb);
        if (tls_bf16) copies_drop(tls_bf16, C, M, N, ldc);
        sgemm_f32(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* stored shapes: A is ar x ac, B is br x bc */
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
#if defined(PT_HAVE_DNNL)
    size_t elem = sizeof(uint16_t);
#else
    size_t elem = sizeof(float);
#endif
    struct bf16_state *s = state_get();
    const void *pa = s ? operand(s, A, ar, ac, lda, elem, &s->a, &s->acap) : NULL;
    const void *pb = pa ? operand(s, B, br, bc, ldb, elem, &s->b, &s->bcap) : NULL;
    if (s) copies_drop(s, C, M, N, ldc);
    if (!pb) {
        pt_error_clear();
        fallback(s, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#if defined(PT_HAVE_DNNL)
    /* beta != 0 and a long K: the product goes to the packed scratch c and
     * then C = beta C + c, which measured up to 10 % faster than oneDNN's
     * sum post-op on the dx and dW shapes with K >= 1024, while the sum
     * post-op was faster where K is short (the extra pass over C weighs
     * 1/K of the product). */
    int acc = beta != 0.0f && K >= TMP_MIN_K;
    if (acc && pt_grow(&s->c, &s->ccap, (size_t)M * N * sizeof(float), 1)) {
        pt_error_clear();
        fallback(s, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    float *D = acc ? s->c : C;
    struct bf16_prim *e = prim_get(s, ta, tb, M, N, K, alpha, acc ? 0.0f : beta, acc ? N : ldc, 0, 0);
    if (!e) {
        fallback(s, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int ok = matmul_run(s, e, pa, pb, D); /* C untouched when not */
    if (!ok) fallback(s, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else if (acc)
        for (int i = 0; i < M; i++) add_row(C + (size_t)i * ldc, D + (size_t)i * N, beta, N);
#else
    sgemm_f32(transa, transb, M, N, K, alpha, (const float *)pa, ac, (const float *)pb, bc, beta, C, ldc);
#endif
}

void nn_sgemm_bf16(char transa, char transb, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    sgemm_bf16(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void nn_sgemm(char transa, char transb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    if (tls_precision == NN_PREC_BF16) {
        sgemm_bf16(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    sgemm_f32(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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
