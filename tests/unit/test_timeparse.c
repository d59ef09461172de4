/* test_timeparse.c: timestamp, offset and duration parsing (timeparse.c).
 *
 * Known values and every error class as data tables; each case is also parsed
 * from an exact-size heap copy (no NUL after it, so ASan catches any read
 * past len) and every prefix of it likewise; fields cut short inside a longer
 * buffer; a brute-force comparison against timegm() over random datetimes
 * 1970..2100 in every accepted layout; time_format_iso against gmtime_r. */
#define _DEFAULT_SOURCE /* timegm, gmtime_r */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "data/timeparse.h"
#include "util/util.h"

#define SENTINEL INT64_C(0x5eed5eed5eed)

struct tcase {
    const char *s;
    enum time_format fmt;
    int32_t off;  /* default_offset */
    int64_t want; /* SENTINEL: PT_EPARSE expected */
};

static const struct tcase cases[] = {
    /* formats seen in real data: REES46, UCI retail, Taobao */
    {"2019-10-01 00:00:00 UTC", TIME_ISO8601, 0, 1569888000},
    {"2019-10-01 00:00:00 UTC", TIME_AUTO, 3600, 1569888000},
    {"2011-03-10 16:16:00", TIME_ISO8601, 0, 1299773760},
    {"2011-03-10 16:16:00", TIME_AUTO, 3600, 1299770160},
    {"1511544070", TIME_UNIX, 0, 1511544070},
    {"1511544070", TIME_AUTO, 3600, 1511544070},
    /* zones */
    {"2017-11-25T08:00:00+08:00", TIME_ISO8601, 0, 1511568000},
    {"2017-11-25T08:00:00+0800", TIME_ISO8601, 0, 1511568000},
    {"2017-11-25T08:00:00+08", TIME_ISO8601, -3600, 1511568000},
    {"2017-11-25 08:00:00 +08:00", TIME_ISO8601, 0, 1511568000},
    {"2017-11-24T19:00:00-05:00", TIME_ISO8601, 0, 1511568000},
    {"2017-11-25T05:30:00+05:30", TIME_ISO8601, 0, 1511568000},
    {"2017-11-25T00:00:00Z", TIME_ISO8601, 7200, 1511568000},
    {"2017-11-25T00:00:00UTC", TIME_ISO8601, 7200, 1511568000},
    {"2017-11-25T14:00:00+14:00", TIME_ISO8601, 0, 1511568000},
    {"2017-11-25T00:00:00-00:00", TIME_ISO8601, 0, 1511568000},
    /* shapes */
    {"2017-11-25", TIME_ISO8601, 0, 1511568000},
    {"2017-11-25", TIME_ISO8601, 28800, 1511539200},
    {"2017-11-25 00:00", TIME_ISO8601, 0, 1511568000},
    {"2017-11-25T00:00Z", TIME_ISO8601, 0, 1511568000},
    {"2017-11-25T00:00:00.999", TIME_ISO8601, 0, 1511568000},
    {"2017-11-25T00:00:00.123456789Z", TIME_ISO8601, 0, 1511568000},
    {"2017-11-24 23:59:60Z", TIME_ISO8601, 0, 1511568000}, /* leap second */
    /* calendar edges */
    {"1970-01-01", TIME_ISO8601, 0, 0},
    {"1969-12-31T23:59:59Z", TIME_ISO8601, 0, -1},
    {"0000-01-01", TIME_ISO8601, 0, INT64_C(-62167219200)},
    {"9999-12-31T23:59:59Z", TIME_ISO8601, 0, INT64_C(253402300799)},
    {"2000-02-29", TIME_ISO8601, 0, 951782400},
    {"2016-02-29", TIME_ISO8601, 0, 1456704000},
    {"2100-03-01", TIME_ISO8601, 0, 4107542400},
    /* unix numbers */
    {"1511544070.999", TIME_UNIX, 0, 1511544070},
    {"1511544070123", TIME_AUTO, 0, 1511544070},
    {"1511544070999", TIME_UNIX_MS, 0, 1511544070},
    {"1511544070999.9", TIME_AUTO, 0, 1511544070},
    {"99999999999", TIME_AUTO, 0, INT64_C(99999999999)}, /* 11 digits: seconds */
    {"100000000000", TIME_AUTO, 0, 100000000},           /* 12 digits: ms */
    {"0", TIME_UNIX, 0, 0},
    {"999", TIME_UNIX_MS, 0, 0},
    {"000000001", TIME_UNIX, 0, 1},
    {"999999999999999999", TIME_UNIX, 0, INT64_C(999999999999999999)},
    /* errors: empty, spaces, signs, garbage */
    {"", TIME_AUTO, 0, SENTINEL},
    {"", TIME_ISO8601, 0, SENTINEL},
    {"", TIME_UNIX, 0, SENTINEL},
    {" 1511544070", TIME_UNIX, 0, SENTINEL},
    {"1511544070 ", TIME_UNIX, 0, SENTINEL},
    {"-1", TIME_UNIX, 0, SENTINEL},
    {"+1", TIME_AUTO, 0, SENTINEL},
    {"1e9", TIME_AUTO, 0, SENTINEL},
    {"0x10", TIME_UNIX, 0, SENTINEL},
    {"1511544070.", TIME_UNIX, 0, SENTINEL},
    {".5", TIME_UNIX, 0, SENTINEL},
    {"1511544070.1x", TIME_AUTO, 0, SENTINEL},
    {"1511544070.1.2", TIME_UNIX, 0, SENTINEL},
    {"1234567890123456789", TIME_UNIX, 0, SENTINEL}, /* 19 digits */
    {"1234567890123456789", TIME_AUTO, 0, SENTINEL},
    {"2019-10-01", TIME_UNIX, 0, SENTINEL},
    {"1511544070", TIME_ISO8601, 0, SENTINEL},
    {"abc", TIME_AUTO, 0, SENTINEL},
    {"12:00", TIME_AUTO, 0, SENTINEL},
    {"1511544070", (enum time_format)7, 0, SENTINEL},
    /* errors: date fields */
    {"2019-13-01", TIME_ISO8601, 0, SENTINEL},
    {"2019-00-01", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-32", TIME_ISO8601, 0, SENTINEL},
    {"2019-04-31", TIME_ISO8601, 0, SENTINEL},
    {"2019-02-29", TIME_ISO8601, 0, SENTINEL},
    {"1900-02-29", TIME_ISO8601, 0, SENTINEL},
    {"2100-02-29", TIME_AUTO, 0, SENTINEL},
    {"2019-1-01", TIME_ISO8601, 0, SENTINEL},
    {"19-10-01", TIME_ISO8601, 0, SENTINEL},
    {"2019/10/01", TIME_ISO8601, 0, SENTINEL},
    {"+019-10-01", TIME_ISO8601, 0, SENTINEL},
    {"2019-1a-01", TIME_ISO8601, 0, SENTINEL},
    {" 2019-10-01", TIME_ISO8601, 0, SENTINEL},
    /* errors: time fields */
    {"2019-10-01 24:00:00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 23:60:00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 23:59:61", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 0:00:00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01T", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:0", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01  00:00:00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01x00:00:00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00-00-00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00.5", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00.", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00.5.5", TIME_ISO8601, 0, SENTINEL},
    /* errors: trailing garbage and zones */
    {"2019-10-01x", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 UTC", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00x", TIME_AUTO, 0, SENTINEL},
    {"2019-10-01 00:00:00 ", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00  UTC", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00 UTCx", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00 utc", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00 UT", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00Zx", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00+15:00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00+08:60", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00+8", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00+08:0", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00+08:000", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00+08-00", TIME_ISO8601, 0, SENTINEL},
    {"2019-10-01 00:00:00*08:00", TIME_ISO8601, 0, SENTINEL},
};

/* time_parse on a heap copy of exactly len bytes: ASan flags any over-read */
static int parse_exact(const char *s, size_t len, enum time_format fmt, int32_t off, int64_t *out)
{
    char *b = malloc(len ? len : 1);
    assert_non_null(b);
    memcpy(b, s, len);
    int rc = time_parse(b, len, fmt, off, out);
    free(b);
    return rc;
}

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        const struct tcase *c = &cases[i];
        int64_t t = SENTINEL;
        int rc = parse_exact(c->s, strlen(c->s), c->fmt, c->off, &t);
        if (rc != (c->want == SENTINEL ? PT_EPARSE : PT_OK) || t != c->want)
            fail_msg("\"%s\" fmt %d: rc %d t %lld, want %lld", c->s, (int)c->fmt, rc, (long long)t,
                     (long long)c->want);
    }
}

/* Every prefix of every case, from an exact-size buffer: must not read past
 * the prefix, and a failure leaves *out alone. */
static void test_prefixes(void **state)
{
    (void)state;
    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        size_t n = strlen(cases[i].s);
        for (size_t k = 0; k <= n; k++) {
            for (int fmt = TIME_AUTO; fmt <= TIME_ISO8601; fmt++) {
                int64_t t = SENTINEL;
                int rc = parse_exact(cases[i].s, k, (enum time_format)fmt, 0, &t);
                assert_true(rc == PT_OK || rc == PT_EPARSE);
                if (rc != PT_OK) assert_true(t == SENTINEL);
            }
        }
    }
}

/* A field cut short inside a longer buffer is parsed as what len covers. */
static void test_len_cut(void **state)
{
    (void)state;
    const char *s = "2019-10-01 00:00:00 UTC,1511544070123,next";
    int64_t t;
    assert_int_equal(time_parse(s, 23, TIME_AUTO, 0, &t), PT_OK);
    assert_true(t == 1569888000);
    assert_int_equal(time_parse(s, 19, TIME_AUTO, 3600, &t), PT_OK); /* zone cut: default */
    assert_true(t == 1569888000 - 3600);
    assert_int_equal(time_parse(s, 16, TIME_ISO8601, 0, &t), PT_OK); /* "HH:MM" */
    assert_true(t == 1569888000);
    assert_int_equal(time_parse(s, 10, TIME_ISO8601, 0, &t), PT_OK); /* date only */
    assert_true(t == 1569888000);
    assert_int_equal(time_parse(s, 22, TIME_ISO8601, 0, &t), PT_EPARSE); /* "UT" */
    assert_int_equal(time_parse(s, 18, TIME_ISO8601, 0, &t), PT_EPARSE); /* ":0" */
    assert_int_equal(time_parse(s, 24, TIME_ISO8601, 0, &t), PT_EPARSE); /* the comma */
    assert_int_equal(time_parse(s + 24, 10, TIME_AUTO, 0, &t), PT_OK);  /* 10 digits: s */
    assert_true(t == 1511544070);
    assert_int_equal(time_parse(s + 24, 13, TIME_AUTO, 0, &t), PT_OK);
    assert_true(t == 1511544070);
    assert_int_equal(time_parse(NULL, 0, TIME_AUTO, 0, &t), PT_EPARSE);
}

static uint64_t rnd(struct rng *r, uint64_t lo, uint64_t hi) { return lo + rng_below(r, hi - lo + 1); }

static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

/* Random datetimes 1970..2100 in every layout, against timegm(). */
static void test_vs_timegm(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 42);
    for (int it = 0; it < 300000; it++) {
        struct tm tm = {0};
        int y = (int)rnd(&r, 1970, 2100), mo = (int)rnd(&r, 1, 12);
        int leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        int d = (int)rnd(&r, 1, (uint64_t)(mdays[mo - 1] + (mo == 2 && leap)));
        int shape = (int)rnd(&r, 0, 2); /* date, HH:MM, HH:MM:SS */
        tm.tm_year = y - 1900, tm.tm_mon = mo - 1, tm.tm_mday = d;
        if (shape >= 1) tm.tm_hour = (int)rnd(&r, 0, 23), tm.tm_min = (int)rnd(&r, 0, 59);
        if (shape == 2) tm.tm_sec = (int)rnd(&r, 0, 59);
        char s[64];
        int n = snprintf(s, sizeof s, "%04d-%02d-%02d", y, mo, d);
        int32_t off = (int32_t)rnd(&r, 0, 28 * 4) * 900 - 14 * 3600, def = (int32_t)rnd(&r, 0, 86400) - 43200;
        if (shape >= 1) {
            n += snprintf(s + n, sizeof s - (size_t)n, "%c%02d:%02d", rnd(&r, 0, 1) ? 'T' : ' ', tm.tm_hour,
                          tm.tm_min);
            if (shape == 2) n += snprintf(s + n, sizeof s - (size_t)n, ":%02d", tm.tm_sec);
            if (shape == 2 && rnd(&r, 0, 1))
                n += snprintf(s + n, sizeof s - (size_t)n, ".%0*d", (int)rnd(&r, 1, 9), (int)rnd(&r, 0, 9));
            const char *sp = rnd(&r, 0, 1) ? " " : "";
            int a = off < 0 ? -off : off;
            char sign = off < 0 ? '-' : '+';
            switch (rnd(&r, 0, 5)) {
            case 0: off = def; break; /* no zone */
            case 1: off = 0, n += snprintf(s + n, sizeof s - (size_t)n, "%sZ", sp); break;
            case 2: off = 0, n += snprintf(s + n, sizeof s - (size_t)n, "%sUTC", sp); break;
            case 3: n += snprintf(s + n, sizeof s - (size_t)n, "%s%c%02d:%02d", sp, sign, a / 3600, a / 60 % 60); break;
            case 4: n += snprintf(s + n, sizeof s - (size_t)n, "%s%c%02d%02d", sp, sign, a / 3600, a / 60 % 60); break;
            default:
                off = off / 3600 * 3600;
                n += snprintf(s + n, sizeof s - (size_t)n, "%s%c%02d", sp, sign, a / 3600);
            }
        } else {
            off = def;
        }
        int64_t want = (int64_t)timegm(&tm) - off, t = SENTINEL;
        int rc = parse_exact(s, (size_t)n, rnd(&r, 0, 1) ? TIME_AUTO : TIME_ISO8601, def, &t);
        if (rc != PT_OK || t != want) fail_msg("\"%s\": rc %d t %lld, want %lld", s, rc, (long long)t, (long long)want);
    }
}

static void test_format_iso(void **state)
{
    (void)state;
    struct rng r;
    rng_seed(&r, 7);
    char buf[21], want[80];
    for (int it = 0; it < 200000; it++) {
        /* 1900..9999 so that gmtime_r's tm_year stays in range */
        int64_t t = (int64_t)rnd(&r, 0, INT64_C(253402300799) + INT64_C(2208988800)) - INT64_C(2208988800);
        if (it < 1000) t = (int64_t)rnd(&r, 0, 4000) - 2000; /* around the epoch */
        time_t tt = (time_t)t;
        struct tm tm;
        assert_non_null(gmtime_r(&tt, &tm));
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        time_format_iso(t, buf);
        assert_string_equal(buf, want);
        int64_t back;
        assert_int_equal(time_parse(buf, 20, TIME_AUTO, 3600, &back), PT_OK);
        assert_true(back == t);
    }
    time_format_iso(INT64_MIN, buf);
    assert_string_equal(buf, "0000-01-01T00:00:00Z");
    time_format_iso(INT64_MAX, buf);
    assert_string_equal(buf, "9999-12-31T23:59:59Z");
    time_format_iso(-1, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59Z");
    time_format_iso(951782400, buf);
    assert_string_equal(buf, "2000-02-29T00:00:00Z");
}

static void test_offsets(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int32_t want; /* INT32_MIN: PT_EPARSE */
    } oc[] = {
        {"+08:00", 28800}, {"-0530", -19800}, {"+08", 28800}, {"UTC", 0}, {"Z", 0}, {"+14:00", 50400},
        {"-14", -50400}, {"-00:00", 0}, {"+05:45", 20700}, {"", INT32_MIN}, {"+15", INT32_MIN},
        {"08:00", INT32_MIN}, {"+8", INT32_MIN}, {"+08:0", INT32_MIN}, {"+08:60", INT32_MIN},
        {"UTC+1", INT32_MIN}, {"z", INT32_MIN}, {"utc", INT32_MIN}, {"+08:00 ", INT32_MIN},
        {" +08:00", INT32_MIN}, {"+0800x", INT32_MIN}, {"GMT", INT32_MIN},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(oc); i++) {
        int32_t v = 12345;
        int rc = time_parse_offset(oc[i].s, &v);
        if (oc[i].want == INT32_MIN) {
            if (rc != PT_EPARSE || v != 12345) fail_msg("\"%s\": accepted", oc[i].s);
        } else if (rc != PT_OK || v != oc[i].want) {
            fail_msg("\"%s\": rc %d v %d, want %d", oc[i].s, rc, v, oc[i].want);
        }
    }
    int32_t v;
    assert_int_equal(time_parse_offset(NULL, &v), PT_EPARSE);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t want; /* 0: PT_EPARSE */
    } dc[] = {
        {"45s", 45}, {"30m", 1800}, {"1h", 3600}, {"3d", 259200}, {"2w", 1209600}, {"90", 90},
        {"007m", 420}, {"15250284452471w", INT64_C(15250284452471) * 604800}, /* largest whole weeks */
        {"", 0}, {"0", 0}, {"0s", 0}, {"s", 0}, {"-5", 0}, {"+5", 0}, {"1.5h", 0}, {"5x", 0}, {"5 h", 0},
        {" 5", 0}, {"5 ", 0}, {"h5", 0}, {"1y", 0}, {"5ms", 0}, {"5hh", 0}, {"1000000000000000000", 0},
        {"15250284452472w", 0}, {"9223372036854775807", 0},
    };
    for (size_t i = 0; i < PT_ARRAY_LEN(dc); i++) {
        int64_t v = SENTINEL;
        int rc = time_parse_duration(dc[i].s, &v);
        if (dc[i].want == 0) {
            if (rc != PT_EPARSE || v != SENTINEL) fail_msg("\"%s\": accepted", dc[i].s);
        } else if (rc != PT_OK || v != dc[i].want) {
            fail_msg("\"%s\": rc %d v %lld, want %lld", dc[i].s, rc, (long long)v, (long long)dc[i].want);
        }
    }
    int64_t v;
    assert_int_equal(time_parse_duration(NULL, &v), PT_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),     cmocka_unit_test(test_prefixes),   cmocka_unit_test(test_len_cut),
        cmocka_unit_test(test_vs_timegm), cmocka_unit_test(test_format_iso), cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
