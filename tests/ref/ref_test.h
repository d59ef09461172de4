/* ref_test.h: helpers shared by the PyTorch reference tests
 * (test_ref_layers.c, test_ref_mtl_layers.c, test_ref_models.c): tolerances,
 * the strided-write SENTINEL, fixture loading and lookups that fail the
 * test on a missing array, and the plain-malloc buffers / stride copies the
 * layer tests build. Header-only, static functions (marked unused, since no
 * test uses all of them).
 *
 * Include after <cmocka.h> and "ref/fixture.h" (the parser); the including
 * file defines FIXTURE_DIR (the fixture folder, with a trailing '/') first.
 * Plain malloc throughout: test scaffolding, not library memory. */
#ifndef PT_TEST_REF_TEST_H
#define PT_TEST_REF_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/fixture.h"

#ifndef FIXTURE_DIR
#error "define FIXTURE_DIR (the fixture folder) before including ref/ref_test.h"
#endif

#ifndef ATOL /* overridable (-DATOL=0 -DRTOL=1e-6) to see how close the match is */
#define ATOL 1e-5
#endif
#ifndef RTOL
#define RTOL 1e-4
#endif
#define SENTINEL 7.25f /* fills columns a strided write must not touch */

#define EXPECT_CLOSE(what, got, want, n) \
    assert_int_equal(fixture_compare((what), (got), (want), (n), ATOL, RTOL), 0)

#define REF_UNUSED __attribute__((unused))

/* Loads FIXTURE_DIR<name>.txt, whose header must name <name>. */
REF_UNUSED static void load(struct fixture *fx, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s%s.txt", FIXTURE_DIR, name);
    assert_int_equal(fixture_load(fx, path, name), 0);
}

REF_UNUSED static const float *get(const struct fixture *fx, const char *name, size_t n)
{
    const float *v = fixture_get(fx, name, n);
    assert_non_null(v);
    return v;
}

REF_UNUSED static const struct fx_array *arr(const struct fixture *fx, const char *name)
{
    const struct fx_array *a = fixture_find(fx, name);
    assert_non_null(a);
    return a;
}

REF_UNUSED static int scalar_int(const struct fixture *fx, const char *name)
{
    float v = fixture_scalar(fx, name);
    assert_false(isnan(v));
    return (int)v;
}

REF_UNUSED static int32_t *get_ids(const struct fixture *fx, const char *name, size_t n)
{
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    assert_non_null(ids);
    assert_int_equal(fixture_get_i32(fx, name, ids, n), 0);
    return ids;
}

REF_UNUSED static float *fill(size_t n, float value)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = value;
    return p;
}

REF_UNUSED static float *fdup(const float *v, size_t n)
{
    float *p = fill(n, 0.0f);
    memcpy(p, v, n * sizeof *p);
    return p;
}

/* want + offset, elementwise (expected value of a gradient that started at offset) */
REF_UNUSED static float *plus(const float *want, size_t n, float offset)
{
    float *p = fill(n, 0.0f);
    for (size_t i = 0; i < n; i++) p[i] = want[i] + offset;
    return p;
}

/* Copies column block [c0, c0+w) of a [rows, ld] matrix into out[rows, w]. */
REF_UNUSED static void unstride(float *out, const float *m, int rows, int ld, int c0, int w)
{
    for (int r = 0; r < rows; r++)
        memcpy(out + (size_t)r * w, m + (size_t)r * ld + c0, (size_t)w * sizeof *out);
}

/* Scatters x[rows, w] into column block [c0, c0+w) of m[rows, ld]. */
REF_UNUSED static void restride(float *m, const float *x, int rows, int ld, int c0, int w)
{
    for (int r = 0; r < rows; r++)
        memcpy(m + (size_t)r * ld + c0, x + (size_t)r * w, (size_t)w * sizeof *x);
}

/* Every column of m[rows, ld] outside [c0, c0+w) still holds SENTINEL. */
REF_UNUSED static void assert_padding(const float *m, int rows, int ld, int c0, int w)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < ld; c++)
            if (c < c0 || c >= c0 + w) assert_true(m[(size_t)r * ld + c] == SENTINEL);
}

#endif
