/* test_modelfile.c: the model file round-trips, refuses every damaged or
 * hostile input with a one-line "FILE: what is wrong" message, writes
 * atomically, and fails cleanly (no leak, no stray file) when any allocation
 * fails. Content checks past the checksum are driven by a table of
 * hand-built safetensors headers framed with a correct CRC. */
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

#include <cmocka.h>

#include "tmpdir.h"
#include <zlib.h>

#include "store/modelfile.h"
#include "util/util.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    return tmpdir_make(tmpdir, sizeof tmpdir, "modelfile");
}

static int teardown(void **state)
{
    (void)state;
    tmpdir_remove(tmpdir);
    return 0;
}

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

static int count_files(void)
{
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static const void *find_bytes(const void *hay, size_t n, const char *needle, size_t m)
{
    const uint8_t *h = hay;
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp(h + i, needle, m) == 0) return h + i;
    return NULL;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void fix_crc(uint8_t *b, size_t n) { put32(b + n - 8, (uint32_t)crc32(0, b, (uInt)(n - 8))); }

/* The failure message is one line and starts with "NAME: ". */
static void assert_msg(const char *name, const char *needle)
{
    const char *m = pt_errmsg();
    size_t nl = strlen(name);
    if (strncmp(m, name, nl) != 0 || strncmp(m + nl, ": ", 2) != 0 || strchr(m, '\n') ||
        (needle && !strstr(m, needle)))
        fail_msg("message '%s' should start with '%s: ' and contain '%s'", m, name, needle ? needle : "");
}

/* ---- a small model used by most tests ---- */

static float w1[12], b1[4], t4[12], sc[1];
static const char *meta_text = "{\"name\": \"ctr \\u00e9 é\",  \"schema\":{\"cols\":[1, 2 ,3]}, \"lr\": 0.5e-3}";

static size_t fill_tensors(struct mf_tensor *t)
{
    for (int i = 0; i < 12; i++) w1[i] = (float)i * 0.25f - 1.0f, t4[i] = (float)(i * i) + 0.5f;
    for (int i = 0; i < 4; i++) b1[i] = -(float)i / 3.0f;
    sc[0] = 3.14159f;
    memset(t, 0, 5 * sizeof *t);
    t[0] = (struct mf_tensor){.name = "layer1.weight", .data = w1, .ndim = 2, .shape = {3, 4}};
    t[1] = (struct mf_tensor){.name = "layer1.bias", .data = b1, .ndim = 1, .shape = {4}};
    t[2] = (struct mf_tensor){.name = "empty", .data = NULL, .ndim = 2, .shape = {0, 5}};
    t[3] = (struct mf_tensor){.name = "scalar", .data = sc, .ndim = 0};
    t[4] = (struct mf_tensor){.name = "t4", .data = t4, .ndim = 4, .shape = {2, 3, 1, 2}};
    return 5;
}

static void write_small(const char *path)
{
    float x[2] = {1.5f, -2.0f};
    struct mf_tensor t = {.name = "w", .data = x, .ndim = 1, .shape = {2}};
    assert_int_equal(modelfile_write(path, "{\"a\":1}", &t, 1), PT_OK);
}

static void test_roundtrip(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "model.ptm");
    struct mf_tensor t[5];
    size_t nt = fill_tensors(t);
    assert_int_equal(modelfile_write(path, meta_text, t, nt), PT_OK);
    assert_int_equal(count_files(), 1);

    for (int pass = 0; pass < 2; pass++) {
        struct mf_file *f = NULL;
        if (pass == 0) {
            assert_int_equal(modelfile_read(path, &f), PT_OK);
        } else {
            size_t n;
            uint8_t *b = slurp(path, &n);
            assert_int_equal(modelfile_read_mem(b, n, "mem", &f), PT_OK);
            free(b);
        }
        assert_non_null(f);
        assert_string_equal(f->meta_json, meta_text);
        assert_int_equal(f->ntensors, nt);
        for (size_t i = 0; i < nt; i++) {
            const struct mf_tensor *r = modelfile_find(f, t[i].name);
            assert_non_null(r);
            assert_ptr_equal(r, &f->tensors[i]); /* file order = write order */
            assert_int_equal(r->ndim, t[i].ndim);
            size_t count = 1;
            for (int d = 0; d < r->ndim; d++) {
                assert_int_equal(r->shape[d], t[i].shape[d]);
                count *= (size_t)r->shape[d];
            }
            assert_non_null(r->data);
            assert_int_equal((uintptr_t)r->data % _Alignof(float), 0);
            if (count) assert_memory_equal(r->data, t[i].data, count * sizeof(float));
        }
        assert_null(modelfile_find(f, "nope"));
        assert_null(modelfile_find(f, "__metadata__"));
        modelfile_free(f);
    }
    modelfile_free(NULL);

    /* The safetensors section has the layout the format specifies. */
    size_t n;
    uint8_t *b = slurp(path, &n);
    uint64_t meta_len = 0, st_len = 0, hn = 0;
    for (int i = 7; i >= 0; i--) meta_len = meta_len << 8 | b[16 + i], st_len = st_len << 8 | b[24 + i];
    assert_int_equal(meta_len, strlen(meta_text));
    assert_int_equal(32 + meta_len + st_len + 8, n);
    const uint8_t *st = b + 32 + meta_len;
    for (int i = 7; i >= 0; i--) hn = hn << 8 | st[i];
    assert_int_equal(hn % 8, 0);
    assert_int_equal(st[8], '{');
    assert_true(find_bytes(st + 8, hn, "\"__metadata__\":{\"format\":\"pt\"}", 30) != NULL);
    assert_true(find_bytes(st + 8, hn, "\"dtype\":\"F32\"", 13) != NULL);
    assert_memory_equal(b + n - 4, "PTEN", 4);
    free(b);
}

static void test_empty_model(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "empty.ptm");
    assert_int_equal(modelfile_write(path, "{}", NULL, 0), PT_OK);
    struct mf_file *f = NULL;
    assert_int_equal(modelfile_read(path, &f), PT_OK);
    assert_int_equal(f->ntensors, 0);
    assert_string_equal(f->meta_json, "{}");
    modelfile_free(f);
}

static void test_truncated(void **state)
{
    (void)state;
    char path[512], cut[512];
    tmp_path(path, sizeof path, "small.ptm");
    tmp_path(cut, sizeof cut, "cut.ptm");
    write_small(path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    for (size_t len = 0; len < n; len++) {
        struct mf_file *f = (struct mf_file *)1;
        int rc = modelfile_read_mem(b, len, "small", &f);
        assert_int_equal(rc, PT_EFORMAT);
        assert_null(f);
        assert_msg("small", "truncated");
    }
    size_t lens[] = {0, 7, 39, 40, n / 2, n - 1};
    for (size_t i = 0; i < PT_ARRAY_LEN(lens); i++) {
        spit(cut, b, lens[i]);
        struct mf_file *f = NULL;
        assert_int_equal(modelfile_read(cut, &f), PT_EFORMAT);
        assert_null(f);
        assert_msg(cut, "truncated");
    }
    free(b);
}

static void test_byte_flips(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "flip.ptm");
    write_small(path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    static const uint8_t masks[] = {0x01, 0x80, 0xff, 0x20};
    int checksum_hits = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t m = 0; m < PT_ARRAY_LEN(masks); m++) {
            b[i] ^= masks[m];
            struct mf_file *f = NULL;
            int rc = modelfile_read_mem(b, n, "flip", &f);
            if (rc == PT_OK) fail_msg("flip of byte %zu with 0x%02x was accepted", i, masks[m]);
            assert_true(rc < 0);
            assert_null(f);
            assert_msg("flip", NULL);
            if (i >= 32 && i < n - 8) {
                assert_int_equal(rc, PT_ECHECKSUM);
                assert_msg("flip", "checksum mismatch: file is corrupted");
                checksum_hits++;
            }
            b[i] ^= masks[m];
        }
    }
    assert_true(checksum_hits > 0);
    struct mf_file *f = NULL;
    assert_int_equal(modelfile_read_mem(b, n, "flip", &f), PT_OK);
    modelfile_free(f);
    free(b);
}

static void test_header_fields(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "hdr.ptm");
    write_small(path);
    size_t n;
    uint8_t *b = slurp(path, &n);
    struct mf_file *f = NULL;

    /* wrong version, even with a correct checksum */
    put32(b + 8, 2);
    fix_crc(b, n);
    assert_int_equal(modelfile_read_mem(b, n, "v2", &f), PT_EVERSION);
    assert_msg("v2", "format version 2, this build reads 1");
    put32(b + 8, 1);

    /* bad magic */
    b[0] = 'X';
    fix_crc(b, n);
    assert_int_equal(modelfile_read_mem(b, n, "mag", &f), PT_EFORMAT);
    assert_msg("mag", "not a polytask model file");
    b[0] = 'P';
    fix_crc(b, n);

    /* unknown flags, correct checksum */
    put32(b + 12, 4);
    fix_crc(b, n);
    assert_int_equal(modelfile_read_mem(b, n, "fl", &f), PT_EFORMAT);
    assert_msg("fl", "unknown flags");
    put32(b + 12, 0);
    fix_crc(b, n);

    /* lengths that overflow when added */
    uint8_t save[16];
    memcpy(save, b + 16, 16);
    put64(b + 16, UINT64_MAX);
    put64(b + 24, 2);
    assert_int_equal(modelfile_read_mem(b, n, "len", &f), PT_EFORMAT);
    assert_msg("len", "truncated");
    put64(b + 16, 3);
    put64(b + 24, UINT64_MAX - 1);
    assert_int_equal(modelfile_read_mem(b, n, "len", &f), PT_EFORMAT);
    assert_msg("len", "truncated");
    memcpy(b + 16, save, 16);

    /* trailing garbage, in memory and on disk */
    uint8_t *g = malloc(n + 5);
    assert_non_null(g);
    memcpy(g, b, n);
    memcpy(g + n, "junk\n", 5);
    for (size_t extra = 1; extra <= 5; extra++) {
        assert_int_equal(modelfile_read_mem(g, n + extra, "tr", &f), PT_EFORMAT);
        assert_msg("tr", "trailing bytes");
    }
    spit(path, g, n + 5);
    assert_int_equal(modelfile_read(path, &f), PT_EFORMAT);
    assert_msg(path, "5 trailing bytes");
    assert_null(f);
    free(g);

    /* missing end marker */
    memcpy(b + n - 4, "PTEX", 4);
    assert_int_equal(modelfile_read_mem(b, n, "end", &f), PT_EFORMAT);
    assert_msg("end", "end marker");
    free(b);

    /* not a file */
    assert_int_equal(modelfile_read(tmpdir, &f), PT_EIO);
    assert_msg(tmpdir, NULL);
    tmp_path(path, sizeof path, "does-not-exist.ptm");
    assert_int_equal(modelfile_read(path, &f), PT_EIO);
    assert_msg(path, "cannot open");
}

/* ---- content checks as data: a safetensors header + data length, framed
 * with correct lengths and CRC, and the message it must produce ---- */

struct content_case {
    const char *meta, *st_json; /* st_json NULL: raw st bytes from st_raw */
    const char *st_raw;
    size_t st_raw_len;
    size_t data_len;
    int rc;
    const char *msg;
};

static uint8_t *frame(const char *meta, const uint8_t *st, size_t st_len, size_t *out_len)
{
    size_t ml = strlen(meta), n = 32 + ml + st_len + 8;
    uint8_t *b = calloc(1, n);
    assert_non_null(b);
    memcpy(b, "PTMODEL", 8);
    put32(b + 8, 1);
    put64(b + 16, ml);
    put64(b + 24, st_len);
    memcpy(b + 32, meta, ml);
    if (st_len) memcpy(b + 32 + ml, st, st_len);
    memcpy(b + n - 4, "PTEN", 4);
    fix_crc(b, n);
    *out_len = n;
    return b;
}

static uint8_t *make_st(const char *json, size_t data_len, size_t *st_len)
{
    size_t jl = strlen(json);
    *st_len = 8 + jl + data_len;
    uint8_t *st = calloc(1, *st_len);
    assert_non_null(st);
    put64(st, jl);
    memcpy(st + 8, json, jl);
    return st;
}

#define T(x) "{\"t\":" x "}"
static const struct content_case cases[] = {
    {"{}", "{}", NULL, 0, 0, PT_OK, NULL},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"), NULL, 0, 8, PT_OK, NULL},
    {"{}", "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]}}   ",
     NULL, 0, 8, PT_OK, NULL},
    {"[1,2]", "{}", NULL, 0, 0, PT_EFORMAT, "metadata is not a JSON object"},
    {"{\"a\":", "{}", NULL, 0, 0, PT_EFORMAT, "metadata is not valid JSON"},
    {"{} x", "{}", NULL, 0, 0, PT_EFORMAT, "metadata is not valid JSON"},
    {"{}", NULL, "", 0, 0, PT_EFORMAT, "too short"},
    {"{}", NULL, "\x07\0\0\0", 4, 0, PT_EFORMAT, "too short"},
    {"{}", NULL, "\x40\0\0\0\0\0\0\0{}", 10, 0, PT_EFORMAT, "header size 64 out of range"},
    {"{}", NULL, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, 0, PT_EFORMAT, "out of range"},
    {"{}", NULL, "\0\0\0\0\0\0\0\0", 8, 0, PT_EFORMAT, "header size 0 out of range"},
    {"{}", "[]      ", NULL, 0, 0, PT_EFORMAT, "does not start with '{'"},
    {"{}", "{\"a\":1", NULL, 0, 0, PT_EFORMAT, "not valid JSON"},
    {"{}", NULL, "\x08\0\0\0\0\0\0\0{\"a\"\0:1}", 16, 0, PT_EFORMAT, "not valid JSON"},
    {"{}", "{\"__metadata__\":[1]}", NULL, 0, 0, PT_EFORMAT, "__metadata__"},
    {"{}", "{\"__metadata__\":{\"k\":1}}", NULL, 0, 0, PT_EFORMAT, "__metadata__"},
    {"{}", T("[]"), NULL, 0, 0, PT_EFORMAT, "tensor 't': entry is not a JSON object"},
    {"{}", T("{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}"), NULL, 0, 4, PT_EFORMAT,
     "tensor 't': unsupported dtype 'F16'"},
    {"{}", T("{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}"), NULL, 0, 8, PT_EFORMAT, "dtype"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2]}"), NULL, 0, 8, PT_EFORMAT, "needs exactly"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}"), NULL, 0, 8, PT_EFORMAT,
     "needs exactly"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}"), NULL, 0, 8, PT_EFORMAT,
     "shape is not an array"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}"), NULL, 0, 8, PT_EFORMAT,
     "dimension 0 is not a non-negative integer"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}"), NULL, 0, 8, PT_EFORMAT,
     "dimension 0"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}"), NULL, 0, 8, PT_EFORMAT,
     "shape has 5 dims, at most 4"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}"), NULL, 0, 8,
     PT_EFORMAT, "element count overflows"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[9223372036854775807,0,2],\"data_offsets\":[0,0]}"), NULL, 0, 0,
     PT_OK, NULL},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}"), NULL, 0, 0,
     PT_EFORMAT, "element count overflows"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}"), NULL, 0, 8, PT_EFORMAT,
     "data_offsets span 8 bytes, shape needs 12"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"), NULL, 0, 4, PT_EFORMAT,
     "out of range (data section is 4 bytes)"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}"), NULL, 0, 8, PT_EFORMAT, "out of range"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}"), NULL, 0, 8, PT_EFORMAT,
     "non-negative"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}"), NULL, 0, 8, PT_EFORMAT, "pair"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9223372036854775807,9223372036854775807]}"),
     NULL, 0, 8, PT_EFORMAT, "out of range"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}"), NULL, 0, 8, PT_EFORMAT,
     "gap in the data section before tensor 't'"},
    {"{}", T("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"), NULL, 0, 8, PT_EFORMAT,
     "4 bytes at the end of the data section belong to no tensor"},
    {"{}", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     NULL, 0, 12, PT_EFORMAT, "tensors 'a' and 'b' overlap"},
    {"{}", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
     NULL, 0, 8, PT_EFORMAT, "overlap"},
    {"{}", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     NULL, 0, 8, PT_EFORMAT, "duplicate"},
    {"{}", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 0, 4, PT_EFORMAT,
     "empty name"},
    {"{}", "{\"a\\nb\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,4]}}", NULL, 0, 4, PT_EFORMAT,
     "tensor 'a?b'"},
};
#undef T

static void test_content_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < PT_ARRAY_LEN(cases); i++) {
        const struct content_case *c = &cases[i];
        size_t st_len, n;
        uint8_t *st;
        if (c->st_json) {
            st = make_st(c->st_json, c->data_len, &st_len);
        } else {
            st_len = c->st_raw_len;
            st = malloc(st_len + 1);
            assert_non_null(st);
            memcpy(st, c->st_raw, st_len);
        }
        uint8_t *b = frame(c->meta, st, st_len, &n);
        struct mf_file *f = NULL;
        int rc = modelfile_read_mem(b, n, "case", &f);
        if (rc != c->rc) fail_msg("case %zu: rc %d, want %d (%s)", i, rc, c->rc, pt_errmsg());
        if (rc == PT_OK) {
            assert_non_null(f);
            assert_string_equal(f->meta_json, c->meta);
            modelfile_free(f);
        } else {
            assert_null(f);
            assert_msg("case", c->msg);
        }
        free(b);
        free(st);
    }
}

static void test_write_refusals(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "bad.ptm");
    float x[2] = {0};
    struct mf_tensor t[2] = {{.name = "a", .data = x, .ndim = 1, .shape = {2}},
                             {.name = "a", .data = x, .ndim = 1, .shape = {1}}};
    assert_int_equal(modelfile_write(path, "[1]", t, 1), PT_EINVAL);
    assert_msg(path, "not a JSON object");
    assert_int_equal(modelfile_write(path, "{", t, 1), PT_EINVAL);
    assert_msg(path, "not valid JSON");
    assert_int_equal(modelfile_write(path, "{}", t, 2), PT_EINVAL);
    assert_msg(path, "duplicate tensor name 'a'");
    t[1].name = "__metadata__";
    assert_int_equal(modelfile_write(path, "{}", t, 2), PT_EINVAL);
    t[1].name = "\xff";
    assert_int_equal(modelfile_write(path, "{}", t, 2), PT_EINVAL);
    t[1].name = "b";
    t[1].ndim = 5;
    assert_int_equal(modelfile_write(path, "{}", t, 2), PT_EINVAL);
    assert_msg(path, "at most 4");
    t[1].ndim = 1;
    t[1].shape[0] = -1;
    assert_int_equal(modelfile_write(path, "{}", t, 2), PT_EINVAL);
    t[1].shape[0] = 1;
    t[1].data = NULL;
    assert_int_equal(modelfile_write(path, "{}", t, 2), PT_EINVAL);
    assert_msg(path, "no data");
    assert_int_equal(modelfile_write(path, NULL, t, 1), PT_EINVAL);
    assert_int_equal(count_files(), 0);
}

static void test_write_missing_folder(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "no/such/folder/m.ptm");
    float x = 1;
    struct mf_tensor t = {.name = "x", .data = &x, .ndim = 1, .shape = {1}};
    assert_int_equal(modelfile_write(path, "{}", &t, 1), PT_EIO);
    assert_msg(path, "cannot create");
    assert_int_equal(count_files(), 0);
}

static void test_write_alloc_failures(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "atomic.ptm");
    write_small(path);
    size_t n0;
    uint8_t *orig = slurp(path, &n0);
    struct mf_tensor t[5];
    size_t nt = fill_tensors(t);
    long k;
    int rc = -1;
    for (k = 1; k < 10000; k++) {
        pt_alloc_fail_at(k);
        rc = modelfile_write(path, meta_text, t, nt);
        pt_alloc_fail_at(0);
        assert_int_equal(count_files(), 1); /* no temp file left behind */
        if (rc == PT_OK) break;
        assert_int_equal(rc, PT_ENOMEM);
        size_t n;
        uint8_t *now = slurp(path, &n);
        assert_int_equal(n, n0);
        assert_memory_equal(now, orig, n0);
        free(now);
    }
    assert_int_equal(rc, PT_OK);
    assert_true(k > 3); /* the loop really did fail some allocations */
    struct mf_file *f = NULL;
    if (modelfile_read(path, &f) != PT_OK) fail_msg("k=%ld: %s", k, pt_errmsg());
    assert_int_equal(f->ntensors, nt);
    modelfile_free(f);
    free(orig);
}

static void test_read_alloc_failures(void **state)
{
    (void)state;
    char path[512];
    tmp_path(path, sizeof path, "readfail.ptm");
    struct mf_tensor t[5];
    size_t nt = fill_tensors(t);
    assert_int_equal(modelfile_write(path, meta_text, t, nt), PT_OK);
    long k;
    int rc = -1;
    for (k = 1; k < 10000; k++) {
        struct mf_file *f = (struct mf_file *)1;
        pt_alloc_fail_at(k);
        rc = modelfile_read(path, &f);
        pt_alloc_fail_at(0);
        if (rc == PT_OK) {
            assert_int_equal(f->ntensors, nt);
            modelfile_free(f);
            break;
        }
        if (rc != PT_ENOMEM) fail_msg("k=%ld: rc %d (%s), want PT_ENOMEM", k, rc, pt_errmsg());
        assert_null(f);
    }
    assert_int_equal(rc, PT_OK);
    assert_true(k > (long)nt * 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_flips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_fields, setup, teardown),
        cmocka_unit_test(test_content_cases),
        cmocka_unit_test_setup_teardown(test_write_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_missing_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_alloc_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
