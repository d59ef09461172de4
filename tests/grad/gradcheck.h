/* gradcheck.h: shared helpers for the finite-difference gradient tests.
 *
 * The scalar checked is L = sum(output * R) with R random, evaluated in
 * double, so the upstream gradient dL/doutput = R is a random matrix rather
 * than all ones (which would hide transposed or mis-strided gradients).
 * Central differences use the perturbation actually stored in float, not the
 * nominal eps, so rounding of x +- eps does not bias the quotient. */
#ifndef PT_TEST_GRADCHECK_H
#define PT_TEST_GRADCHECK_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/util.h"

typedef double (*gc_loss_fn)(void *ctx);

/* Zeroed float buffer from pt_malloc; freed with pt_free. */
static inline float *gc_alloc(size_t n)
{
    float *p = pt_malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    memset(p, 0, (n ? n : 1) * sizeof(float));
    return p;
}

static inline void gc_fill_normal(float *a, size_t n, struct rng *r, float scale)
{
    for (size_t i = 0; i < n; i++) a[i] = scale * rng_normal(r);
}

static inline void gc_fill(float *a, size_t n, float v)
{
    for (size_t i = 0; i < n; i++) a[i] = v;
}

/* sum over rows x cols of out[r*ld + c] * R[r*cols + c], in double. */
static inline double gc_dot(const float *out, int rows, int cols, int ld, const float *R)
{
    double s = 0.0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            s += (double)out[(size_t)r * ld + c] * (double)R[(size_t)r * cols + c];
    return s;
}

/* Compares grad[0..n) with central differences of f over param[0..n).
 * Passes when |num - ana| <= atol + rtol * max(|num|, |ana|) everywhere. */
static inline void gc_check(const char *what, gc_loss_fn f, void *ctx, float *param,
                            const float *grad, size_t n, float eps, double atol, double rtol)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float save = param[i];
        float hi = save + eps, lo = save - eps;
        param[i] = hi;
        double fp = f(ctx);
        param[i] = lo;
        double fm = f(ctx);
        param[i] = save;
        double num = (fp - fm) / ((double)hi - (double)lo);
        double ana = grad[i];
        double tol = atol + rtol * fmax(fabs(num), fabs(ana));
        if (!(fabs(num - ana) <= tol)) {
            if (bad < 5)
                print_error("%s[%zu]: analytic %.7g, numeric %.7g (tol %.3g)\n", what, i, ana, num,
                            tol);
            bad++;
        }
    }
    if (bad) fail_msg("%s: %d of %zu gradient entries off", what, bad, n);
}

/* a[i] == 2 * b[i] up to float rounding: backward called twice must add. */
static inline void gc_check_doubled(const char *what, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double want = 2.0 * (double)b[i];
        if (!(fabs((double)a[i] - want) <= 1e-5 * fabs(want) + 1e-7))
            fail_msg("%s[%zu]: after two backward calls %.7g, want 2 * %.7g", what, i, a[i], b[i]);
    }
}

#endif
