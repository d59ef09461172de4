/* timeparse.c: timestamps to unix seconds (formats and contracts in
 * timeparse.h).
 *
 * Hand-written scanners over [s, s+len) instead of sscanf/strptime/timegm:
 * this runs once per event line (tens of millions of times), fields are not
 * NUL-terminated, and results must not depend on the process locale or TZ.
 * Every fixed-width read is preceded by a length check, so nothing past len
 * is touched. Dates become day numbers with Howard Hinnant's
 * days_from_civil / civil_from_days (proleptic Gregorian, exact for any
 * year), see https://howardhinnant.github.io/date_algorithms.html. */
#include "data/timeparse.h"

#include <string.h>

#include "util/util.h"

/* 10^18 - 1 < INT64_MAX, so digit loops need no overflow check */
enum { TP_MAX_DIGITS = 18 };

static int is_digit(char c) { return (unsigned)((unsigned char)c - '0') <= 9; }

/* Value of the n digits at s (the caller has checked they exist), or -1 if
 * any is not a digit. */
static int fixed_digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* Leading digits of [s, s+n): their count (0 if none, -1 if more than
 * TP_MAX_DIGITS) and [out] *v their value. */
static int lead_digits(const char *s, size_t n, int64_t *v)
{
    int64_t x = 0;
    size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* a unix time's first eight digits at once (every event line has one) */
    if (n >= 8) {
        uint64_t w, d;
        memcpy(&w, s, 8);
        d = w - 0x3030303030303030ull;
        /* each byte '0'..'9': high nibble 3, and adding 6 carries into no high nibble */
        if ((w & 0xF0F0F0F0F0F0F0F0ull) == 0x3030303030303030ull && !((d + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull)) {
            d = d * 10 + (d >> 8);                                      /* pairs */
            d = ((d & 0x000000FF000000FFull) * (100 + (1000000ull << 32)) + /* quads, then all eight */
                 ((d >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32))) >> 32;
            x = (int64_t)d;
            i = 8;
        }
    }
#endif
    for (; i < n && i < TP_MAX_DIGITS && is_digit(s[i]); i++) x = x * 10 + (s[i] - '0');
    *v = x;
    return i < n && is_digit(s[i]) ? -1 : (int)i;
}

/* Days since 1970-01-01 of y-m-d (m 1..12, d valid). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2; /* years start in March, so Feb 29 is the year's last day */
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                   /* [0, 399] */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const unsigned char dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) return 29;
    return dm[m - 1];
}

/* All of [s, s+n) as a zone: "Z", "UTC", "+HH", "+HHMM", "+HH:MM", '-' too. */
static int parse_zone(const char *s, size_t n, int32_t *out)
{
    if ((n == 1 && s[0] == 'Z') || (n == 3 && memcmp(s, "UTC", 3) == 0)) {
        *out = 0;
        return PT_OK;
    }
    if ((n != 3 && n != 5 && n != 6) || (s[0] != '+' && s[0] != '-')) return PT_EPARSE;
    int h = fixed_digits(s + 1, 2), m = 0;
    if (n == 5) m = fixed_digits(s + 3, 2);
    if (n == 6) m = s[3] == ':' ? fixed_digits(s + 4, 2) : -1;
    if (h < 0 || h > 14 || m < 0 || m > 59) return PT_EPARSE;
    int32_t off = h * 3600 + m * 60;
    *out = s[0] == '-' ? -off : off;
    return PT_OK;
}

static int parse_iso(const char *s, size_t n, int32_t off, int64_t *out)
{
    if (n < 10 || s[4] != '-' || s[7] != '-') return PT_EPARSE;
    int y = fixed_digits(s, 4), mo = fixed_digits(s + 5, 2), d = fixed_digits(s + 8, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return PT_EPARSE;
    int h = 0, mi = 0, sec = 0;
    if (n > 10) {
        if (n < 16 || (s[10] != 'T' && s[10] != ' ') || s[13] != ':') return PT_EPARSE;
        h = fixed_digits(s + 11, 2);
        mi = fixed_digits(s + 14, 2);
        if (h < 0 || h > 23 || mi < 0 || mi > 59) return PT_EPARSE;
        size_t i = 16;
        if (i < n && s[i] == ':') {
            if (n < 19 || (sec = fixed_digits(s + 17, 2)) < 0 || sec > 60) return PT_EPARSE;
            i = 19;
            if (i < n && s[i] == '.') {
                size_t f = ++i;
                while (i < n && is_digit(s[i])) i++;
                if (i == f) return PT_EPARSE;
            }
        }
        if (i < n) {
            if (s[i] == ' ') i++; /* REES46: "2019-10-01 00:00:00 UTC" */
            if (parse_zone(s + i, n - i, &off) != PT_OK) return PT_EPARSE;
        }
    }
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return PT_OK;
}

/* All of [s, s+n) as digits with an optional ".digits" (truncated); [out]
 * *ndig the integer part's length. */
static int parse_number(const char *s, size_t n, int64_t *v, int *ndig)
{
    int k = lead_digits(s, n, v);
    if (k <= 0) return PT_EPARSE;
    size_t i = (size_t)k;
    if (i < n) {
        if (s[i] != '.' || i + 1 == n) return PT_EPARSE;
        for (i++; i < n; i++)
            if (!is_digit(s[i])) return PT_EPARSE;
    }
    *ndig = k;
    return PT_OK;
}

int time_parse(const char *s, size_t len, enum time_format fmt, int32_t default_offset, int64_t *out)
{
    int64_t v;
    int ndig;
    if (len == 0) return PT_EPARSE;
    if (fmt == TIME_ISO8601 || (fmt == TIME_AUTO && len > 4 && s[4] == '-'))
        return parse_iso(s, len, default_offset, out);
    if (fmt != TIME_UNIX && fmt != TIME_UNIX_MS && fmt != TIME_AUTO) return PT_EPARSE;
    if (parse_number(s, len, &v, &ndig) != PT_OK) return PT_EPARSE;
    /* 11 digits of seconds reach year 5138; 13-digit values are milliseconds */
    int ms = fmt == TIME_UNIX_MS || (fmt == TIME_AUTO && ndig > 11);
    *out = ms ? v / 1000 : v; /* v >= 0: truncation is the floor */
    return PT_OK;
}

int time_parse_offset(const char *s, int32_t *out)
{
    return s ? parse_zone(s, strlen(s), out) : PT_EPARSE;
}

int time_parse_duration(const char *s, int64_t *out)
{
    if (!s) return PT_EPARSE;
    size_t n = strlen(s);
    static const char units[] = "smhdw";
    static const int64_t unit_s[] = {1, 60, 3600, 86400, 7 * 86400};
    const char *u = n > 0 ? strchr(units, s[n - 1]) : NULL; /* s[n-1] != 0 */
    int64_t v, unit = u ? unit_s[u - units] : 1;
    n -= u != NULL;
    if (n == 0 || lead_digits(s, n, &v) != (int)n || v == 0 || v > INT64_MAX / unit) return PT_EPARSE;
    *out = v * unit;
    return PT_OK;
}

static char *put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

void time_format_iso(int64_t t, char *buf)
{
    const int64_t lo = -62167219200, hi = 253402300799; /* 0000-01-01, 9999-12-31T23:59:59 */
    t = t < lo ? lo : t > hi ? hi : t;
    int64_t z = (t >= 0 ? t : t - 86399) / 86400; /* floor: days since 1970 */
    int sod = (int)(t - z * 86400);
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1), m = (int)(mp < 10 ? mp + 3 : mp - 9);
    int y = (int)(yoe + era * 400 + (m <= 2));
    char *p = put2(put2(buf, y / 100), y % 100);
    *p++ = '-';
    p = put2(p, m);
    *p++ = '-';
    p = put2(p, d);
    *p++ = 'T';
    p = put2(p, sod / 3600);
    *p++ = ':';
    p = put2(p, sod / 60 % 60);
    *p++ = ':';
    p = put2(p, sod % 60);
    memcpy(p, "Z", 2);
}
