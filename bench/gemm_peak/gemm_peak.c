/* gemm_peak.c: single-thread GFLOP/s of nn_sgemm (whichever backend it was
 * compiled with) on the GEMM shapes of the census MMoE training loop, plus a
 * 2048^3 square product for the backend's peak.
 *
 * Shapes (B = 2048 and 256; x[B,519] input, W1[256,519], W2[128,256]), as
 * nn_linear_forward/backward issue them:
 *     fwd   y  = x . W^T        ('N','T', B, O, I)   beta 0
 *     dW    dW = dy^T . x       ('T','N', O, I, B)   beta 1
 *     dx    dx = dy . W         ('N','N', B, I, O)   beta 1
 * Each shape: calibrate a repeat count so one sample takes >= 0.5 s, take 5
 * samples, report the median (and min/max, so noise from other processes on
 * the machine is visible). FLOPs = 2 M N K per call.
 *
 * The large-vocab MMoE's shapes (bench/large_vocab: x[2048,161], the four
 * experts' first layers fused W1[1024,161], W2[128,256]) follow, and with
 * "bf16" as second argument every product runs at train.precision bf16
 * (nn_gemm_set_precision: inputs rounded to bf16, including that
 * conversion's cost).
 *
 *   gemm_peak [backend-label [bf16]] (run.sh builds and runs it; threads are
 *                                     whatever OMP_NUM_THREADS says)
 * Does not: check results (tests/grad/test_grad_gemm.c does that). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/nn.h"

enum { SAMPLES = 5 };
#define MIN_SAMPLE_S 0.5

struct shape {
    const char *name;
    char ta, tb;
    int M, N, K;
    float beta;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_fill(size_t n)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "gemm_peak: out of memory (%zu floats)\n", n);
        exit(1);
    }
    unsigned s = 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
    return p;
}

/* Stored sizes of op(A) [M,K], op(B) [K,N], C [M,N] and their row strides. */
static void run_calls(const struct shape *s, const float *A, const float *B, float *C, long reps)
{
    int lda = s->ta == 'N' ? s->K : s->M;
    int ldb = s->tb == 'N' ? s->N : s->K;
    for (long r = 0; r < reps; r++)
        nn_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, s->beta, C, s->N);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *label = argc > 1 ? argv[1] : nn_gemm_backend();
    if (argc > 2 && !strcmp(argv[2], "bf16")) nn_gemm_set_precision(NN_PREC_BF16);
    const char *ct = getenv("OPENBLAS_CORETYPE"), *omp = getenv("OMP_NUM_THREADS");
    printf("# nn_sgemm backend %s (%s); OMP_NUM_THREADS=%s; OPENBLAS_CORETYPE=%s (left as found)\n",
           nn_gemm_backend(), label, omp ? omp : "(unset)", ct ? ct : "(unset)");
    static const struct shape shapes[] = {
        {"B2048 fwd  x[2048,519].W1[256,519]^T", 'N', 'T', 2048, 256, 519, 0.0f},
        {"B2048 dW1  dy[2048,256]^T.x[2048,519]", 'T', 'N', 256, 519, 2048, 1.0f},
        {"B2048 dx1  dy[2048,256].W1[256,519]", 'N', 'N', 2048, 519, 256, 1.0f},
        {"B2048 fwd  h[2048,256].W2[128,256]^T", 'N', 'T', 2048, 128, 256, 0.0f},
        {"B2048 dW2  dy[2048,128]^T.h[2048,256]", 'T', 'N', 128, 256, 2048, 1.0f},
        {"B2048 dx2  dy[2048,128].W2[128,256]", 'N', 'N', 2048, 256, 128, 1.0f},
        {"B256  fwd  x[256,519].W1[256,519]^T", 'N', 'T', 256, 256, 519, 0.0f},
        {"B256  dW1  dy[256,256]^T.x[256,519]", 'T', 'N', 256, 519, 256, 1.0f},
        {"B256  dx1  dy[256,256].W1[256,519]", 'N', 'N', 256, 519, 256, 1.0f},
        {"B256  fwd  h[256,256].W2[128,256]^T", 'N', 'T', 256, 128, 256, 0.0f},
        {"B256  dW2  dy[256,128]^T.h[256,256]", 'T', 'N', 128, 256, 256, 1.0f},
        {"B256  dx2  dy[256,128].W2[128,256]", 'N', 'N', 256, 256, 128, 1.0f},
        {"LV fwd1  x[2048,161].W1[1024,161]^T", 'N', 'T', 2048, 1024, 161, 0.0f},
        {"LV dW1   dy[2048,1024]^T.x[2048,161]", 'T', 'N', 1024, 161, 2048, 1.0f},
        {"LV dx1   dy[2048,1024].W1[1024,161]", 'N', 'N', 2048, 161, 1024, 1.0f},
        {"LV fwd2  h[2048,256].W2[128,256]^T", 'N', 'T', 2048, 128, 256, 0.0f},
        {"square 2048^3 (peak)", 'N', 'N', 2048, 2048, 2048, 0.0f},
    };
    printf("%-10s  %-40s  %9s  %9s  %9s  %6s\n", "backend", "shape (M,N,K)", "GFLOP/s", "min",
           "max", "cpu/wall");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const struct shape *s = &shapes[i];
        float *A = alloc_fill((size_t)s->M * s->K), *B = alloc_fill((size_t)s->K * s->N);
        float *C = alloc_fill((size_t)s->M * s->N);
        double flop = 2.0 * s->M * s->N * s->K;
        /* calibrate: double the repeat count until one sample takes >= 0.5 s */
        run_calls(s, A, B, C, 1); /* warm-up (packing buffers, page faults) */
        long reps = 1;
        for (;;) {
            double t0 = now_s();
            run_calls(s, A, B, C, reps);
            double dt = now_s() - t0;
            if (dt >= MIN_SAMPLE_S) break;
            long want = dt > 0 ? (long)(reps * (MIN_SAMPLE_S * 1.2 / dt)) + 1 : reps * 2;
            reps = want > 2 * reps ? want : 2 * reps;
        }
        double g[SAMPLES], cpu = 0, wall = 0;
        for (int k = 0; k < SAMPLES; k++) {
            double c0 = cpu_s(), t0 = now_s();
            run_calls(s, A, B, C, reps);
            double dt = now_s() - t0;
            cpu += cpu_s() - c0, wall += dt;
            g[k] = flop * (double)reps / dt * 1e-9;
        }
        qsort(g, SAMPLES, sizeof g[0], cmp_d);
        char dims[64];
        snprintf(dims, sizeof dims, "%s", s->name);
        printf("%-10s  %-40s  %9.1f  %9.1f  %9.1f  %6.2f\n", label, dims, g[SAMPLES / 2], g[0],
               g[SAMPLES - 1], cpu / wall);
        fflush(stdout);
        free(A), free(B), free(C);
    }
    return 0;
}
