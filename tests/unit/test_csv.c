/* test_csv.c: the CSV/TSV reader.
 *
 * Parser cases live as data in tests/data/csv: NAME.csv is the input,
 * NAME.expected one line per record, "LINE: [field] [field]" (\n \r \t \\ \]
 * escaped), or "ERROR LINE: message" for a PT_EPARSE; a first line
 * "#delim X" (\t, \s for tab, space) sets the delimiter. Every case is read
 * three ways: from the file, from memory, and gzip-compressed in memory.
 * The rest covers what data files cannot: input-buffer boundaries (against
 * the unbuffered memory reader as the oracle), gzip files and corrupt gzip,
 * records near the 16 MiB limit, bad options, and allocation failures. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "data/csv.h"
#include "util/util.h"

#define CASE_DIR PT_TEST_DATA "/csv"
/* csv.c's input window; boundary tests straddle it */
#define IN_CAP (256 * 1024)

/* ---- growable string ---- */
struct buf {
    char *s;
    size_t n, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        assert_non_null(b->s);
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct buf b = {0};
    char chunk[4096];
    size_t got;
    buf_add(&b, "", 0);
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) buf_add(&b, chunk, got);
    fclose(f);
    *len = b.n;
    return b.s;
}

/* gzip (with header) of src; free() the result */
static unsigned char *gzip_mem(const void *src, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (Bytef *)src;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static void escape_field(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '\n': buf_str(b, "\\n"); break;
        case '\r': buf_str(b, "\\r"); break;
        case '\t': buf_str(b, "\\t"); break;
        case '\\': buf_str(b, "\\\\"); break;
        case ']': buf_str(b, "\\]"); break;
        default: buf_add(b, s + i, 1);
        }
    }
}

/* Reads every record into the text form of the .expected files. Error
 * messages lose their "NAME:" prefix so cases do not depend on paths. */
static char *dump(struct csv_reader *r)
{
    struct buf b = {0};
    buf_add(&b, "", 0);
    size_t nf, *lens;
    char **f;
    char tmp[64];
    for (int guard = 0; guard < 1000000; guard++) {
        int rc = csv_reader_next(r, &nf, &f, &lens);
        if (rc == 0) break;
        if (rc < 0) {
            const char *msg = pt_errmsg();
            size_t nl = strlen(csv_reader_name(r));
            assert_memory_equal(msg, csv_reader_name(r), nl);
            assert_int_equal(msg[nl], ':');
            snprintf(tmp, sizeof tmp, rc == PT_EPARSE ? "ERROR " : "ERROR(%d) ", rc);
            buf_str(&b, tmp);
            buf_str(&b, msg + nl + 1);
            buf_str(&b, "\n");
            if (rc != PT_EPARSE) break; /* I/O and memory errors are final */
            continue;
        }
        assert_int_equal(rc, 1);
        assert_true(nf >= 1);
        snprintf(tmp, sizeof tmp, "%ld:", csv_reader_line(r));
        buf_str(&b, tmp);
        for (size_t i = 0; i < nf; i++) {
            assert_int_equal(f[i][lens[i]], 0);
            buf_str(&b, " [");
            escape_field(&b, f[i], lens[i]);
            buf_str(&b, "]");
        }
        buf_str(&b, "\n");
    }
    return b.s;
}

static char *dump_mem(const void *data, size_t len, const char *delim)
{
    struct csv_opts o = {delim, 0};
    struct csv_reader *r;
    assert_int_equal(csv_reader_open_mem(&r, data, len, "mem", &o), PT_OK);
    char *s = dump(r);
    csv_reader_close(r);
    return s;
}

static char *dump_file(const char *path, const char *delim)
{
    struct csv_opts o = {delim, 0};
    struct csv_reader *r;
    assert_int_equal(csv_reader_open(&r, path, &o), PT_OK);
    assert_string_equal(csv_reader_name(r), path);
    char *s = dump(r);
    csv_reader_close(r);
    return s;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *temp_path(const char *suffix)
{
    static int seq;
    char *p = malloc(256);
    assert_non_null(p);
    snprintf(p, 256, "/tmp/test_csv_%ld_%d%s", (long)getpid(), seq++, suffix);
    return p;
}

/* ---- data cases ---- */

static void run_case(const char *stem)
{
    char path[1024], exp_path[1024], delim[16] = ",";
    snprintf(path, sizeof path, "%s/%s.csv", CASE_DIR, stem);
    snprintf(exp_path, sizeof exp_path, "%s/%s.expected", CASE_DIR, stem);
    size_t in_len, exp_len;
    char *in = read_file(path, &in_len);
    char *exp = read_file(exp_path, &exp_len);
    char *want = exp;
    if (strncmp(exp, "#delim ", 7) == 0) {
        char *eol = strchr(exp, '\n');
        assert_non_null(eol);
        size_t k = 0;
        for (char *s = exp + 7; s < eol && k + 1 < sizeof delim; s++) {
            if (*s == '\\' && s + 1 < eol) {
                s++;
                delim[k++] = *s == 't' ? '\t' : *s == 's' ? ' ' : *s;
            } else {
                delim[k++] = *s;
            }
        }
        delim[k] = 0;
        want = eol + 1;
    }

    char *got = dump_file(path, delim);
    if (strcmp(got, want) != 0) print_error("case %s (file):\n--- got\n%s--- want\n%s", stem, got, want);
    assert_string_equal(got, want);
    free(got);

    got = dump_mem(in, in_len, delim);
    if (strcmp(got, want) != 0) print_error("case %s (memory):\n--- got\n%s--- want\n%s", stem, got, want);
    assert_string_equal(got, want);
    free(got);

    size_t gz_len;
    unsigned char *gz = gzip_mem(in, in_len, &gz_len);
    got = dump_mem(gz, gz_len, delim);
    if (strcmp(got, want) != 0) print_error("case %s (gzip):\n--- got\n%s--- want\n%s", stem, got, want);
    assert_string_equal(got, want);
    free(got);
    free(gz);
    free(in);
    free(exp);
}

static void test_data_cases(void **state)
{
    (void)state;
    DIR *d = opendir(CASE_DIR);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".csv") != 0) continue;
        char stem[256];
        assert_true(len - 4 < sizeof stem);
        memcpy(stem, e->d_name, len - 4);
        stem[len - 4] = 0;
        run_case(stem);
        n++;
    }
    closedir(d);
    assert_true(n >= 15);
}

/* ---- buffer boundaries ---- */

/* Every byte of a pattern full of two-byte delimiters, CRLFs, doubled quotes
 * and quoted newlines is placed on the input window's edge in turn; the
 * buffered readers (gzip memory, file) must agree with plain memory, which
 * sees the whole input at once. */
static void test_buffer_boundaries(void **state)
{
    (void)state;
    static const char pattern[] =
        "a, \"b, \"\"c\"\"\r\nd\", e\r\n"
        "f,g, h, \r\n"
        "\"q\"\r\n"
        "\r\n"
        "x, , y, \"\"\r\n"
        "\"p\"\"\", \"r\n\"\n";
    const size_t plen = sizeof pattern - 1;
    const char *delims[] = {", ", ","};
    int files = 0;
    for (size_t di = 0; di < PT_ARRAY_LEN(delims); di++) {
        for (size_t pad = IN_CAP - plen - 8; pad < IN_CAP + 4; pad++) {
            struct buf b = {0};
            /* a first line of pad bytes, then the pattern three times */
            char *line = malloc(pad);
            assert_non_null(line);
            memset(line, 'z', pad);
            line[pad - 1] = '\n';
            buf_add(&b, line, pad);
            free(line);
            for (int k = 0; k < 3; k++) buf_add(&b, pattern, plen);

            char *want = dump_mem(b.s, b.n, delims[di]);
            size_t gz_len;
            unsigned char *gz = gzip_mem(b.s, b.n, &gz_len);
            char *got = dump_mem(gz, gz_len, delims[di]);
            if (strcmp(got, want) != 0) print_error("pad %zu delim '%s'\n", pad, delims[di]);
            assert_string_equal(got, want);
            free(got);
            free(gz);
            if (pad % 7 == 0) { /* the gzread path too, on a sample */
                char *path = temp_path(".csv");
                write_file(path, b.s, b.n);
                got = dump_file(path, delims[di]);
                assert_string_equal(got, want);
                free(got);
                unlink(path);
                free(path);
                files++;
            }
            free(want);
            free(b.s);
        }
    }
    assert_true(files > 0);
}

/* ---- gzip ---- */

static void test_gzip_file(void **state)
{
    (void)state;
    char *path = temp_path(".csv.gz");
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    const char text[] = "\xef\xbb\xbfk,v\n\"a\nb\",1\n";
    assert_int_equal(gzwrite(gz, text, sizeof text - 1), (int)(sizeof text - 1));
    assert_int_equal(gzclose(gz), Z_OK);
    char *got = dump_file(path, NULL);
    assert_string_equal(got, "1: [k] [v]\n2: [a\\nb] [1]\n");
    free(got);
    unlink(path);
    free(path);
}

/* Two gzip members back to back (cat a.gz b.gz) read as one stream. */
static void test_gzip_members(void **state)
{
    (void)state;
    size_t l1, l2;
    unsigned char *g1 = gzip_mem("a,b\nc,", 6, &l1);
    unsigned char *g2 = gzip_mem("d\ne\n", 4, &l2);
    unsigned char *both = malloc(l1 + l2);
    assert_non_null(both);
    memcpy(both, g1, l1);
    memcpy(both + l1, g2, l2);
    char *got = dump_mem(both, l1 + l2, NULL);
    assert_string_equal(got, "1: [a] [b]\n2: [c] [d]\n3: [e]\n");
    free(got);
    free(both);
    free(g1);
    free(g2);
}

static void test_gzip_corrupt(void **state)
{
    (void)state;
    char text[4000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = i % 50 == 49 ? '\n' : (char)('a' + i % 7);
    size_t len;
    unsigned char *gz = gzip_mem(text, sizeof text, &len);

    /* truncated: the records before the cut may come, then PT_EIO for good */
    struct csv_reader *r;
    assert_int_equal(csv_reader_open_mem(&r, gz, len / 2, "cut.gz", NULL), PT_OK);
    size_t nf, *lens;
    char **f;
    int rc;
    while ((rc = csv_reader_next(r, &nf, &f, &lens)) == 1) {}
    assert_int_equal(rc, PT_EIO);
    assert_non_null(strstr(pt_errmsg(), "cut.gz"));
    assert_non_null(strstr(pt_errmsg(), "gzip"));
    assert_int_equal(csv_reader_next(r, &nf, &f, &lens), PT_EIO);
    csv_reader_close(r);

    /* damaged deflate data */
    for (size_t i = 12; i < len - 8; i++) gz[i] ^= 0x5a;
    assert_int_equal(csv_reader_open_mem(&r, gz, len, "bad.gz", NULL), PT_OK);
    while ((rc = csv_reader_next(r, &nf, &f, &lens)) == 1) {}
    assert_int_equal(rc, PT_EIO);
    csv_reader_close(r);

    /* same through a file */
    char *path = temp_path(".gz");
    write_file(path, gz, len / 2);
    assert_int_equal(csv_reader_open(&r, path, NULL), PT_OK);
    while ((rc = csv_reader_next(r, &nf, &f, &lens)) == 1) {}
    assert_int_equal(rc, PT_EIO);
    assert_non_null(strstr(pt_errmsg(), path));
    csv_reader_close(r);
    unlink(path);
    free(path);
    free(gz);
}

/* ---- sizes ---- */

static void test_long_field(void **state)
{
    (void)state;
    /* 1 MiB quoted field with a doubled quote in the middle: fine */
    size_t n = 1 << 20;
    struct buf b = {0};
    buf_str(&b, "x,\"");
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'q', n);
    buf_add(&b, big, n / 2);
    buf_str(&b, "\"\"");
    buf_add(&b, big, n / 2);
    buf_str(&b, "\",y\nlast\n");
    struct csv_reader *r;
    size_t nf, *lens;
    char **f;
    assert_int_equal(csv_reader_open_mem(&r, b.s, b.n, "big", NULL), PT_OK);
    assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 1);
    assert_int_equal(nf, 3);
    assert_int_equal(lens[1], n + 1);
    assert_int_equal(f[1][n / 2], '"');
    assert_string_equal(f[2], "y");
    assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 1);
    assert_string_equal(f[0], "last");
    assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 0);
    csv_reader_close(r);
    free(b.s);
    free(big);
}

static void test_record_limit(void **state)
{
    (void)state;
    /* a 17 MiB unquoted line and a 17 MiB quoted one, each followed by a
     * good line: the error names the line, and reading goes on after it */
    size_t n = 17u << 20;
    struct buf b = {0};
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'w', n);
    buf_str(&b, "ok,1\n");
    buf_add(&b, big, n);
    buf_str(&b, "\nafter,2\n\"");
    buf_add(&b, big, n);
    buf_str(&b, "\"\nafter,3\n");
    free(big);

    for (int gz = 0; gz < 2; gz++) {
        size_t len = b.n;
        unsigned char *data = (unsigned char *)b.s;
        if (gz) data = gzip_mem(b.s, b.n, &len);
        struct csv_reader *r;
        size_t nf, *lens;
        char **f;
        assert_int_equal(csv_reader_open_mem(&r, data, len, "huge", NULL), PT_OK);
        assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 1);
        assert_int_equal(csv_reader_next(r, &nf, &f, &lens), PT_EPARSE);
        assert_string_equal(pt_errmsg(), "huge:2: record longer than 16 MiB starting here");
        assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 1);
        assert_string_equal(f[0], "after");
        assert_int_equal(csv_reader_line(r), 3);
        assert_int_equal(csv_reader_next(r, &nf, &f, &lens), PT_EPARSE);
        assert_string_equal(pt_errmsg(), "huge:4: record longer than 16 MiB starting here (unbalanced quote?)");
        assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 1);
        assert_string_equal(f[1], "3");
        assert_int_equal(csv_reader_line(r), 5);
        assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 0);
        csv_reader_close(r);
        if (gz) free(data);
    }
    free(b.s);
}

/* Lines just under the limit, two fields each, from memory (where a whole
 * line is in view and takes the bulk path, which reads 8 bytes past it). */
static void test_record_near_limit(void **state)
{
    (void)state;
    const size_t max = 16u << 20;
    const size_t lens_want[] = {max - 9, max - 8, max - 7, max - 2};
    for (size_t k = 0; k < PT_ARRAY_LEN(lens_want); k++) {
        size_t n = lens_want[k];
        char *line = malloc(n + 1);
        assert_non_null(line);
        memset(line, 'x', n);
        line[n - 2] = ',';
        line[n] = '\n';
        struct csv_reader *r;
        size_t nf, *lens;
        char **f;
        assert_int_equal(csv_reader_open_mem(&r, line, n + 1, "near", NULL), PT_OK);
        assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 1);
        assert_int_equal(nf, 2);
        assert_int_equal(lens[0], n - 2);
        assert_int_equal(lens[1], 1);
        assert_string_equal(f[1], "x");
        assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 0);
        csv_reader_close(r);
        free(line);
    }
}

/* Many fields in one record: the field arrays grow. */
static void test_many_fields(void **state)
{
    (void)state;
    struct buf b = {0};
    for (int i = 0; i < 5000; i++) buf_str(&b, i % 3 == 0 ? "\"v\"\t" : "v\t");
    buf_str(&b, "end");
    struct csv_opts o = {"\t", 0};
    struct csv_reader *r;
    size_t nf, *lens;
    char **f;
    assert_int_equal(csv_reader_open_mem(&r, b.s, b.n, "wide", &o), PT_OK);
    assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 1);
    assert_int_equal(nf, 5001);
    assert_string_equal(f[4999], "v");
    assert_string_equal(f[5000], "end");
    assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 0);
    csv_reader_close(r);
    free(b.s);
}

/* ---- options and opening ---- */

static void test_custom_quote(void **state)
{
    (void)state;
    struct csv_opts o = {"|", '\''};
    struct csv_reader *r;
    const char text[] = "'a|b'|\"c\"|'it''s'\n";
    assert_int_equal(csv_reader_open_mem(&r, text, sizeof text - 1, "q", &o), PT_OK);
    char *got = dump(r);
    assert_string_equal(got, "1: [a|b] [\"c\"] [it's]\n");
    free(got);
    csv_reader_close(r);
}

static void test_bad_options(void **state)
{
    (void)state;
    struct csv_reader *r = (void *)1;
    struct csv_opts o = {"", 0};
    assert_int_equal(csv_reader_open_mem(&r, "a", 1, "m", &o), PT_EINVAL);
    assert_null(r);
    o.delim = ",\n";
    assert_int_equal(csv_reader_open_mem(&r, "a", 1, "m", &o), PT_EINVAL);
    o.delim = "\"";
    assert_int_equal(csv_reader_open_mem(&r, "a", 1, "m", &o), PT_EINVAL);
    o.delim = ",";
    o.quote = '\n';
    assert_int_equal(csv_reader_open_mem(&r, "a", 1, "m", &o), PT_EINVAL);
}

static void test_open_missing(void **state)
{
    (void)state;
    struct csv_reader *r = (void *)1;
    assert_int_equal(csv_reader_open(&r, "/nonexistent/dir/x.csv", NULL), PT_EIO);
    assert_null(r);
    assert_non_null(strstr(pt_errmsg(), "/nonexistent/dir/x.csv"));
    csv_reader_close(NULL);
}

static void test_empty_mem(void **state)
{
    (void)state;
    struct csv_reader *r;
    size_t nf, *lens;
    char **f;
    assert_int_equal(csv_reader_open_mem(&r, NULL, 0, NULL, NULL), PT_OK);
    assert_string_equal(csv_reader_name(r), "<memory>");
    assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 0);
    assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 0);
    csv_reader_close(r);
    size_t len;
    unsigned char *gz = gzip_mem("", 0, &len);
    assert_int_equal(csv_reader_open_mem(&r, gz, len, "e.gz", NULL), PT_OK);
    assert_int_equal(csv_reader_next(r, &nf, &f, &lens), 0);
    csv_reader_close(r);
    free(gz);
}

/* ---- allocation failures ---- */

/* Fails the k-th allocation for k = 1, 2, ... until a run makes fewer than k:
 * each run must end in PT_ENOMEM or read everything, and leak nothing
 * (LSan checks at exit). */
static void alloc_loop(const void *data, size_t len, const char *path, size_t want_records)
{
    long k;
    for (k = 1;; k++) {
        struct csv_reader *r = NULL;
        size_t nf, *lens, records = 0;
        char **f;
        pt_alloc_fail_at(k);
        int rc = path ? csv_reader_open(&r, path, NULL) : csv_reader_open_mem(&r, data, len, "m", NULL);
        if (rc == PT_OK) {
            while ((rc = csv_reader_next(r, &nf, &f, &lens)) == 1) records++;
            csv_reader_close(r);
        } else {
            assert_null(r);
        }
        long made = pt_alloc_count();
        pt_alloc_fail_at(0);
        if (made < k) { /* nothing failed: a full, clean read */
            assert_int_equal(rc, 0);
            assert_int_equal(records, want_records);
            break;
        }
        assert_int_equal(rc, PT_ENOMEM);
    }
    assert_true(k > 3);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    /* wide, long records so that every buffer has to grow */
    struct buf b = {0};
    for (int row = 0; row < 40; row++) {
        for (int i = 0; i < 100; i++) buf_str(&b, i % 2 ? "\"a,\"\"b\"," : "plain,");
        if (row == 7) {
            buf_str(&b, "\"");
            for (int i = 0; i < 2000; i++) buf_str(&b, "long\n");
            buf_str(&b, "\",");
        }
        buf_str(&b, "x\n");
    }
    alloc_loop(b.s, b.n, NULL, 40);
    size_t gz_len;
    unsigned char *gz = gzip_mem(b.s, b.n, &gz_len);
    alloc_loop(gz, gz_len, NULL, 40);
    char *path = temp_path(".csv");
    write_file(path, b.s, b.n);
    alloc_loop(NULL, 0, path, 40);
    unlink(path);
    free(path);
    free(gz);
    free(b.s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_cases),     cmocka_unit_test(test_buffer_boundaries),
        cmocka_unit_test(test_gzip_file),      cmocka_unit_test(test_gzip_members),
        cmocka_unit_test(test_gzip_corrupt),   cmocka_unit_test(test_long_field),
        cmocka_unit_test(test_record_limit),   cmocka_unit_test(test_record_near_limit),
        cmocka_unit_test(test_many_fields),
        cmocka_unit_test(test_custom_quote),   cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_open_missing),   cmocka_unit_test(test_empty_mem),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
