/* test_fmt.c: fast number formatting (fmt.c) against printf.
 *
 * fmt_i64 must match "%lld" exactly. fmt_f must give the same number as
 * "%.6g" (strtod of both equal), positionally (no exponent, no trailing
 * zeros) for 1e-5 <= |v| < 1e15, over a few million random values: every
 * decade from 1e-7 to 1e17, integers, exact binary fractions (which make
 * exact decimal ties), values a hair either side of a 6-digit tie, and random
 * bit patterns. Each call writes into a canary-filled buffer to catch writes
 * past the returned end. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data/fmt.h"
#include "util/util.h"

#define CANARY 0x7f

static void check_i64(int64_t v)
{
    char buf[48], want[32];
    memset(buf, CANARY, sizeof buf);
    size_t n = (size_t)(fmt_i64(buf, v) - buf);
    assert_true(n <= 20);
    assert_true(buf[n] == CANARY);
    buf[n] = 0;
    snprintf(want, sizeof want, "%" PRId64, v);
    if (strcmp(buf, want) != 0) fail_msg("fmt_i64: \"%s\", printf \"%s\"", buf, want);
}

static void test_i64(void **state)
{
    (void)state;
    const int64_t edge[] = {0, 1, -1, 9, 10, -10, 99, 100, 101, INT64_MAX, INT64_MIN, INT64_MIN + 1, INT32_MAX,
                            INT32_MIN, INT64_C(1000000000000000000), INT64_C(-999999999999999999)};
    for (size_t i = 0; i < PT_ARRAY_LEN(edge); i++) check_i64(edge[i]);
    for (int64_t p = 1;; p *= 10) { /* every power of ten and its neighbours */
        check_i64(p), check_i64(p - 1), check_i64(p + 1);
        check_i64(-p), check_i64(1 - p), check_i64(-p - 1);
        if (p > INT64_MAX / 10) break;
    }
    for (int k = 1; k < 63; k++) { /* the length comes from the bit length: every step of it */
        int64_t p = INT64_C(1) << k;
        check_i64(p), check_i64(p - 1), check_i64(-p), check_i64(1 - p);
    }
    struct rng r;
    rng_seed(&r, 1);
    for (int it = 0; it < 1000000; it++) check_i64((int64_t)(rng_next(&r) >> rng_below(&r, 64)));
}

/* fmt_f(v) as a string; fails on any broken contract */
static const char *check_f(double v)
{
    static char buf[64];
    char want[64];
    memset(buf, CANARY, sizeof buf);
    size_t n = (size_t)(fmt_f(buf, v) - buf);
    /* bytes past the end it returns are scratch, but none past 32 */
    int past = 0;
    for (size_t k = 32; k < sizeof buf; k++) past |= buf[k] != CANARY;
    if (n > 32 || past) fail_msg("fmt_f(%.17g): %zu bytes or a write past 32", v, n);
    buf[n] = 0;
    if (!isfinite(v)) {
        assert_int_equal(n, 0);
        return buf;
    }
    snprintf(want, sizeof want, "%.6g", v);
    char *end;
    double got = strtod(buf, &end);
    if (n == 0 || *end || got != strtod(want, NULL))
        fail_msg("fmt_f(%.17g) = \"%s\", printf \"%s\"", v, buf, want);
    double a = fabs(v);
    if (a >= 1e-5 && a < 1e15) {
        const char *dot = strchr(buf, '.');
        if (strpbrk(buf, "eE") || (dot && (buf[n - 1] == '0' || buf[n - 1] == '.')))
            fail_msg("fmt_f(%.17g) = \"%s\": exponent or trailing zeros", v, buf);
    }
    return buf;
}

static void test_f_known(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *want;
    } kc[] = {
        {0.5, "0.5"},        {12.0, "12"},            {0.000123, "0.000123"}, {123456789.0, "123457000"},
        {0.9999995, "1"},    {999999.5, "1000000"},   {0.1 + 0.2, "0.3"},      {1234565.0, "1234560"},
        {1234575.0, "1234580"}, {12345.25, "12345.2"}, {12345.75, "12345.8"},  {-1.5, "-1.5"},
        {1e-5, "0.00001"},   {-1.23456e-5, "-0.0000123456"}, {1e14, "100000000000000"},
        {999999999999999.0, "1000000000000000"}, {0.0, "0"}, {-0.0, "0"},     {1e20, "1e+20"},
        {1e-6, "1e-06"},     {NAN, ""},               {INFINITY, ""},          {-INFINITY, ""},
        {3.14159265, "3.14159"}, {-2718281.828, "-2718280"}, {100000.0, "100000"}, {99999.95, "99999.9"},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(kc); i++) {
        const char *got = check_f(kc[i].v);
        if (strcmp(got, kc[i].want) != 0) fail_msg("fmt_f(%.17g) = \"%s\", want \"%s\"", kc[i].v, got, kc[i].want);
    }
    const double edge[] = {DBL_MAX, -DBL_MAX, DBL_MIN, DBL_TRUE_MIN, -DBL_TRUE_MIN, 1e15, -1e15,
                           nextafter(1e15, 0), nextafter(1e-5, 0), nextafter(1e-5, 1), 9.9999949999999e-6,
                           9.999995e-6, 0.1, 0.7, 1.0 / 3, 2.0 / 3, 1e-300, 1e300};
    for (size_t i = 0; i < PT_ARRAY_LEN(edge); i++) check_f(edge[i]);
}

static double uniform(struct rng *r) { return (double)(rng_next(r) >> 11) * 0x1p-53; }

static void test_f_random(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 2);
    char s[64];
    for (int it = 0; it < 3000000; it++) {
        double sign = rng_next(&r) & 1 ? -1.0 : 1.0, v;
        switch (it % 6) {
        case 0:
        case 1: /* every decade 1e-7 .. 1e17 */
            v = (1 + 9 * uniform(&r)) * pow(10, (double)rng_below(&r, 25) - 7);
            break;
        case 2: /* integers of 1..17 digits */
            v = (double)(rng_next(&r) % (uint64_t)pow(10, (double)(1 + rng_below(&r, 17))));
            break;
        case 3: /* exact binary fractions k / 2^j: exact decimal ties at 6 digits */
            v = ldexp((double)rng_below(&r, UINT64_C(1) << (1 + rng_below(&r, 40))), -(int)rng_below(&r, 12));
            break;
        case 4: { /* the decimal half-way point d.ddddd5 * 10^e and its neighbours */
            snprintf(s, sizeof s, "%d.%05d5e%d", (int)rng_below(&r, 9) + 1, (int)rng_below(&r, 100000),
                     (int)rng_below(&r, 22) - 6);
            v = strtod(s, NULL);
            uint64_t step = rng_below(&r, 3);
            v = step == 0 ? v : step == 1 ? nextafter(v, 0) : nextafter(v, INFINITY);
            break;
        }
        default: { /* any bit pattern */
            uint64_t bits = rng_next(&r);
            memcpy(&v, &bits, sizeof v);
        }
        }
        check_f(sign * v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_i64),
        cmocka_unit_test(test_f_known),
        cmocka_unit_test(test_f_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
