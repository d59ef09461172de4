/* fmt.c: numbers to decimal text (contracts in fmt.h).
 *
 * fmt_f finds the 6 significant digits with one multiplication by a power
 * of ten, so the scaled value d in [1e5, 1e6) is within 3e-10 of the exact
 * product (at most two roundings) and its rounding to an integer is right
 * unless it lies within 1e-9 of a half. Those few near-ties (exact ones such
 * as 12345.25 among them) ask snprintf("%.5e"), which glibc rounds from the
 * exact binary value, half to even, just as "%.6g" does. The digits are
 * then laid out positionally; outside 1e-5 <= |v| < 1e15 snprintf("%.6g")
 * writes the field. */
#include "data/fmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char dig2[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                           "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                           "8081828384858687888990919293949596979899";

static const uint64_t pow10u[] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
                                   100000000ull, 1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull,
                                   10000000000000ull, 100000000000000ull, 1000000000000000ull, 10000000000000000ull,
                                   100000000000000000ull, 1000000000000000000ull, 10000000000000000000ull};

char *fmt_i64_any(char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        *p++ = '-';
        u = 0 - u; /* in unsigned arithmetic, so INT64_MIN is fine */
    }
    /* the length first, so the digits go straight to their place (no
     * variable-length copy, which is a call): from the bit length, as
     * floor(bits * log10 2) digits (1233 / 4096 ~ log10 2) plus one more
     * when u reaches the next power of ten; no loop over the ten digits of
     * a timestamp. u | 1 makes 0 one digit and changes no other answer
     * (every power of ten from 10 is even). */
    int t = (64 - __builtin_clzll(u | 1)) * 1233 >> 12;
    int n = t + ((u | 1) >= pow10u[t]);
    char *e = p + n, *q = e;
    for (; u >= 10000; u /= 10000) { /* four digits a division: half the dependent steps */
        uint32_t r = (uint32_t)(u % 10000);
        memcpy(q -= 2, dig2 + 2 * (r % 100), 2);
        memcpy(q -= 2, dig2 + 2 * (r / 100), 2);
    }
    if (u >= 100) {
        memcpy(q -= 2, dig2 + 2 * (u % 100), 2);
        u /= 100;
    }
    if (u >= 10) memcpy(q - 2, dig2 + 2 * u, 2);
    else q[-1] = (char)('0' + u);
    return e;
}

/* 10^k for k in [-11, 22]: exact for k >= 0, correctly rounded below */
static const double p10[] = {1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0,
                             1e1,   1e2,   1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11, 1e12,
                             1e13,  1e14,  1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
#define P10(k) p10[(k) + 11]

char *fmt_f(char *p, double v)
{
    if (!isfinite(v)) return p;
    if (v == 0) {
        *p++ = '0';
        return p;
    }
    double a = fabs(v);
    char t[40];
    if (a < 1e-5 || a >= 1e15) {
        int n = snprintf(t, sizeof t, "%.6g", v);
        memcpy(p, t, (size_t)n);
        return p + n;
    }
    if (v < 0) *p++ = '-';

    /* E = floor(log10 a): floor(be * log10 2) from the binary exponent be is
     * E or E - 1, and one comparison settles which. Then d = a * 10^(5-E) is
     * in [1e5, 1e6). Multiplying by an inexact 10^-k costs a second rounding
     * (error still below 2^-52 * d < 3e-10), where dividing would cost a
     * slow, unpredictable branch. The loops only catch a comparison with an
     * inexact power of ten that went the wrong way. */
    uint64_t bits;
    memcpy(&bits, &a, sizeof bits);
    int be = (int)(bits >> 52) - 1023;
    int E = ((be + 4096) * 1233 >> 12) - 1233; /* 1233 / 4096 ~ log10 2; no negative shift */
    E += a >= P10(E + 1);
    double d = a * P10(5 - E);
    while (d < 1e5) d = a * P10(5 - --E);
    while (d >= 1e6) d = a * P10(5 - ++E);
    int32_t n = (int32_t)d;
    double f = d - n; /* exact */
    if (f > 0.5 - 1e-9 && f < 0.5 + 1e-9) {
        snprintf(t, sizeof t, "%.5e", a); /* "d.ddddde[+-]XX" */
        n = t[0] - '0';
        for (int i = 2; i < 7; i++) n = n * 10 + (t[i] - '0');
        E = 0;
        for (int i = 9; t[i]; i++) E = E * 10 + (t[i] - '0');
        if (t[8] == '-') E = -E;
    } else {
        n += f > 0.5;
    }
    if (n == 1000000) { /* 999999.5 rounded up a decade */
        n = 100000;
        E++;
    }

    /* three independent pairs: shorter dependency chain than n /= 10. The
     * copies below are of fixed size (no call), from a zero-padded dg, and
     * may write past the returned end: the contract allows 32 bytes. */
    char dg[16];
    memset(dg, '0', sizeof dg);
    memcpy(dg, dig2 + 2 * (n / 10000), 2);
    memcpy(dg + 2, dig2 + 2 * (n / 100 % 100), 2);
    memcpy(dg + 4, dig2 + 2 * (n % 100), 2);
    int nd = 6; /* significant digits once trailing zeros go */
    while (dg[nd - 1] == '0') nd--;
    if (E >= 5) { /* integer: all six digits, then zeros (E <= 15: at most 16 digits) */
        memcpy(p, dg, 16);
        return p + E + 1;
    }
    if (E >= 0) { /* E+1 digits, then a fraction if any digits remain */
        memcpy(p, dg, 8);
        p += E + 1;
        if (nd <= E + 1) return p;
        *p++ = '.';
        memcpy(p, dg + E + 1, 8);
        return p + (nd - E - 1);
    }
    memcpy(p, "0.00000", 8); /* "0." and -E-1 zeros, E >= -5 */
    p += 1 - E;
    memcpy(p, dg, 8);
    return p + nd;
}
