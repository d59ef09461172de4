/* fuzz_timeparse.c: libFuzzer target for the timestamp, offset and duration
 * parsers (src/data/timeparse.h).
 *
 * The whole input is the string. time_parse gets a heap copy of exactly len
 * bytes, with no NUL after it, so AddressSanitizer catches any read past len;
 * time_parse_offset and time_parse_duration get a copy of exactly len + 1
 * bytes ending in a NUL. Checks what the header promises:
 *   - every call returns PT_OK or PT_EPARSE, and a failure leaves *out as it was;
 *   - an unknown format value fails;
 *   - TIME_AUTO is ISO 8601 when s[4] is '-' and otherwise a unix number in
 *     seconds or milliseconds; unix results are >= 0 and the millisecond
 *     reading is the seconds reading / 1000;
 *   - a default offset moves an ISO result by exactly that offset (no zone in
 *     the text) or not at all (a zone in the text);
 *   - an ISO result within years 0000..9999, written by time_format_iso and
 *     parsed again, gives the same value (the written text is 20 bytes);
 *   - an offset is at most 14:59 either way, a whole number of minutes, and
 *     means the same as the zone of an ISO datetime; "+HH:MM" written from it
 *     parses back to it;
 *   - a duration is > 0 and written back as plain seconds parses to itself. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/timeparse.h"
#include "util/util.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static const int64_t SENTINEL = INT64_MIN + 12345;
/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: what time_format_iso holds */
static const int64_t ISO_LO = -62167219200, ISO_HI = 253402300799;

/* time_parse with the contract's checks; returns the rc, [out] *out */
static int parse(const char *s, size_t len, enum time_format fmt, int32_t off, int64_t *out)
{
    *out = SENTINEL;
    int rc = time_parse(s, len, fmt, off, out);
    CHECK(rc == PT_OK || rc == PT_EPARSE);
    if (rc != PT_OK) CHECK(*out == SENTINEL);
    return rc;
}

static void check_iso_roundtrip(int64_t t)
{
    if (t < ISO_LO || t > ISO_HI) return;
    char buf[32];
    memset(buf, 0x7f, sizeof buf);
    time_format_iso(t, buf);
    CHECK(strlen(buf) == 20 && buf[4] == '-' && buf[10] == 'T' && buf[19] == 'Z');
    /* parse a heap copy without the NUL, so the length is all there is */
    char *c = malloc(20);
    if (!c) return;
    memcpy(c, buf, 20);
    int64_t t2;
    CHECK(parse(c, 20, TIME_ISO8601, 0, &t2) == PT_OK);
    CHECK(t2 == t);
    /* a default offset does not apply: the text has a zone */
    CHECK(parse(c, 20, TIME_ISO8601, -5 * 3600, &t2) == PT_OK);
    CHECK(t2 == t);
    CHECK(parse(c, 20, TIME_AUTO, 3600, &t2) == PT_OK);
    CHECK(t2 == t);
    free(c);
}

static void fuzz_time_parse(const char *s, size_t len)
{
    static const int32_t offs[] = {8 * 3600, -(5 * 3600 + 30 * 60), 14 * 3600 + 59 * 60};
    int64_t iso, unix_s, unix_ms, aut, v;
    int riso = parse(s, len, TIME_ISO8601, 0, &iso);
    int rs = parse(s, len, TIME_UNIX, 0, &unix_s);
    int rms = parse(s, len, TIME_UNIX_MS, 0, &unix_ms);
    int rauto = parse(s, len, TIME_AUTO, 0, &aut);
    CHECK(parse(s, len, (enum time_format)7, 0, &v) == PT_EPARSE);
    CHECK(parse(s, len, (enum time_format)-1, 0, &v) == PT_EPARSE);

    /* the unix readings: the same digits, seconds or milliseconds */
    CHECK(rs == rms);
    if (rs == PT_OK) {
        CHECK(unix_s >= 0 && unix_ms >= 0);
        CHECK(unix_ms == unix_s / 1000);
        /* unix numbers ignore the default offset */
        CHECK(parse(s, len, TIME_UNIX, offs[0], &v) == PT_OK && v == unix_s);
    }
    if (len > 4 && s[4] == '-') {
        CHECK(rauto == riso);
        if (rauto == PT_OK) CHECK(aut == iso);
        CHECK(rs == PT_EPARSE); /* a '-' is never part of a unix number */
    } else {
        CHECK(rauto == rs);
        if (rauto == PT_OK) CHECK(aut == unix_s || aut == unix_ms);
    }
    if (riso != PT_OK) {
        for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) CHECK(parse(s, len, TIME_ISO8601, offs[i], &v) == PT_EPARSE);
        return;
    }
    CHECK(len >= 10);
    /* a default offset applies to a text without a zone, and fully or not at all */
    int zoned = -1;
    for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
        CHECK(parse(s, len, TIME_ISO8601, offs[i], &v) == PT_OK);
        CHECK(v == iso || v == iso - offs[i]);
        int z = v == iso;
        CHECK(zoned < 0 || zoned == z);
        zoned = z;
    }
    check_iso_roundtrip(iso);
    check_iso_roundtrip(iso - offs[0]);
}

static void fuzz_offset(const char *s, size_t len)
{
    int32_t off = INT32_MIN, off2;
    int rc = time_parse_offset(s, &off);
    CHECK(rc == PT_OK || rc == PT_EPARSE);
    if (rc != PT_OK) {
        CHECK(off == INT32_MIN);
        return;
    }
    CHECK(off >= -(14 * 3600 + 59 * 60) && off <= 14 * 3600 + 59 * 60 && off % 60 == 0);
    int32_t a = off < 0 ? -off : off;
    char buf[16];
    snprintf(buf, sizeof buf, "%c%02d:%02d", off < 0 ? '-' : '+', (int)(a / 3600), (int)(a / 60 % 60));
    CHECK(time_parse_offset(buf, &off2) == PT_OK && off2 == off);
    /* the same text as the zone of a datetime, with and without a space */
    size_t n = strlen(s);
    char *iso = malloc(20 + n);
    if (!iso) return;
    memcpy(iso, "2000-03-01T00:00:00 ", 20);
    memcpy(iso + 20, s, n);
    int64_t t, base = 951868800; /* 2000-03-01T00:00:00Z */
    CHECK(parse(iso, 20 + n, TIME_ISO8601, 3600, &t) == PT_OK && t == base - off);
    memmove(iso + 19, iso + 20, n);
    CHECK(parse(iso, 19 + n, TIME_ISO8601, 3600, &t) == PT_OK && t == base - off);
    free(iso);
}

static void fuzz_duration(const char *s)
{
    int64_t d = SENTINEL, d2;
    int rc = time_parse_duration(s, &d);
    CHECK(rc == PT_OK || rc == PT_EPARSE);
    if (rc != PT_OK) {
        CHECK(d == SENTINEL);
        return;
    }
    CHECK(d > 0);
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, d);
    if (strlen(buf) <= 18) CHECK(time_parse_duration(buf, &d2) == PT_OK && d2 == d);
    if (d % 60 == 0) {
        snprintf(buf, sizeof buf, "%" PRId64 "m", d / 60);
        CHECK(time_parse_duration(buf, &d2) == PT_OK && d2 == d);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    /* exactly size bytes: ASan reports any read past the end */
    char *s = malloc(size ? size : 1);
    if (!s) return 0;
    if (size) memcpy(s, data, size);
    fuzz_time_parse(s, size);
    free(s);

    char *z = malloc(size + 1);
    if (!z) return 0;
    if (size) memcpy(z, data, size);
    z[size] = 0;
    fuzz_offset(z, size);
    fuzz_duration(z);
    free(z);
    CHECK(time_parse_offset(NULL, &(int32_t){0}) == PT_EPARSE);
    CHECK(time_parse_duration(NULL, &(int64_t){0}) == PT_EPARSE);
    return 0;
}
