/* fmt.h: fast decimal formatting of numbers for writing large CSV files,
 * where printf costs more than everything else per row. Output is plain
 * ASCII, locale-independent, written at a caller-sized pointer; no NUL. */
#ifndef PT_FMT_H
#define PT_FMT_H

#include <stdint.h>

/* fmt_i64 for any v: what it calls past one digit. */
char *fmt_i64_any(char *p, int64_t v);

/* Writes v in decimal at p; returns the end (no NUL written). At most 20 bytes. */
static inline char *fmt_i64(char *p, int64_t v)
{
    /* most counts in a sample row are one digit: those need no call */
    if ((uint64_t)v < 10) {
        *p = (char)('0' + v);
        return p + 1;
    }
    return fmt_i64_any(p, v);
}

/* Writes v with at most 6 significant digits: the same number as
 * printf("%.6g") gives (strtod of both is equal; ties rounded half to even as
 * glibc does), but positional for 1e-5 <= |v| < 1e15 and without trailing
 * zeros ("0.5", "12", "0.000123", "123457000" for 123456789). Outside that
 * range it writes what "%.6g" writes. Zero (either sign) writes "0";
 * non-finite v writes nothing (an empty CSV field). It may write past the
 * end it returns (fixed-size copies are cheaper), but never past p + 32; no
 * NUL. Returns the end. */
char *fmt_f(char *p, double v);

#endif
