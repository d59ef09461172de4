/* modelfile.c: writes and reads the polytask model file (layout in
 * modelfile.h): a fixed 32-byte header, JSON metadata, a safetensors blob
 * holding every tensor as F32 (or I32), a CRC-32 and an end marker.
 *
 * Writing goes through atomic_file_* (temp file, fsync, rename), so a failed
 * write leaves whatever was at the path untouched. Reading takes the whole
 * file into memory and checks it in the order the header promises: size,
 * magic, version, lengths, end marker, checksum, then the JSON and every
 * tensor's dtype, shape and offsets. Every length in the file is treated as
 * hostile: all size arithmetic is checked before use.
 *
 * Deliberately not done: other dtypes than F32 and I32, mmap'd zero-copy tensors,
 * big-endian hosts (refused at compile time). Jansson is pointed at
 * pt_malloc/pt_free so that allocation fault tests reach it too. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <zlib.h>

#include "store/modelfile.h"
#include "util/util.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "modelfile stores raw floats: little-endian hosts only");
_Static_assert(sizeof(float) == 4, "F32 tensors need 4-byte floats");

#define MF_HEADER_LEN 32u
#define MF_TRAILER_LEN 8u
#define MF_MIN_LEN (MF_HEADER_LEN + MF_TRAILER_LEN)
/* safetensors refuses headers above 100 MB; so do we. */
#define MF_ST_HEADER_MAX (100u * 1000u * 1000u)
/* Largest tensor or data section in bytes: offsets are JSON integers. */
#define MF_MAX_BYTES ((uint64_t)INT64_MAX < (uint64_t)SIZE_MAX ? (uint64_t)INT64_MAX : (uint64_t)SIZE_MAX)

static const uint8_t mf_magic[8] = {'P', 'T', 'M', 'O', 'D', 'E', 'L', 0};
static const uint8_t mf_end[4] = {'P', 'T', 'E', 'N'};

/* ---- small helpers ---- */

/* Jansson allocates through pt_malloc too, so fault tests reach it. Jansson
 * reports a failed allocation inside its parser as a syntax error, so the
 * hook notes failures and json_parse() turns them into PT_ENOMEM, even when
 * Jansson went on and returned a value. */
static _Thread_local bool json_alloc_failed;
static void *json_malloc_hook(size_t n)
{
    void *p = pt_malloc(n);
    if (!p) json_alloc_failed = true;
    return p;
}
static pthread_once_t json_once = PTHREAD_ONCE_INIT;
static void json_alloc_init(void) { json_set_alloc_funcs(json_malloc_hook, pt_free); }
static void json_init(void) { (void)pthread_once(&json_once, json_alloc_init); }

/* Parses text[0..n) as JSON with flags. On failure returns NULL with *rc set:
 * PT_ENOMEM, or code with the message "FILE: WHAT is not valid JSON: ...". */
static json_t *json_parse(const char *text, size_t n, size_t flags, const char *file, const char *what,
                          int code, int *rc)
{
    json_error_t jerr;
    json_alloc_failed = false;
    json_t *v = json_loadb(text, n, flags, &jerr);
    if (v && !json_alloc_failed) return v;
    json_decref(v);
    if (json_alloc_failed || json_error_code(&jerr) == json_error_out_of_memory)
        *rc = pt_error(PT_ENOMEM, "out of memory");
    else
        *rc = pt_error_at(code, file, 0, "%s is not valid JSON: %s", what, jerr.text);
    return NULL;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Element count of shape[0..ndim), or -1 if any dim is negative or the byte
 * size (count * 4) would exceed MF_MAX_BYTES. A zero dim makes the count 0
 * whatever the others are. */
static int shape_count(const int64_t *shape, int ndim, uint64_t *count)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] == 0) n = 0;
    }
    for (int i = 0; i < ndim && n != 0; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (n > MF_MAX_BYTES / 4 / d) return -1;
        n *= d;
    }
    *count = n;
    return 0;
}

/* Printable, bounded copy of a name for one-line error messages. */
static const char *safe_name(const char *s, char buf[72])
{
    size_t i = 0;
    for (; s[i] && i < 64; i++) buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (s[i]) memcpy(buf + i, "...", 4);
    else buf[i] = 0;
    return buf;
}

/* ---- writing ---- */

struct mf_writer {
    FILE *f;
    const char *path;
    uint32_t crc;
};

static int put(struct mf_writer *w, const void *p, size_t n)
{
    if (n == 0) return PT_OK;
    w->crc = (uint32_t)crc32_z(w->crc, p, n);
    if (fwrite(p, 1, n, w->f) != n)
        return pt_error_at(PT_EIO, w->path, 0, "write failed: %s", strerror(errno));
    return PT_OK;
}

/* Builds the safetensors JSON header (without padding). [out] *hdr: free
 * with pt_free; [out] *data_len: bytes of tensor data. */
static int st_header(const char *path, const struct mf_tensor *t, size_t nt, char **hdr,
                     uint64_t *data_len)
{
    int rc = PT_OK;
    json_alloc_failed = false;
    json_t *root = json_object(), *md = json_object();
    uint64_t off = 0;
    char nb[72];
    *hdr = NULL;
    if (!root || !md || json_object_set_new(md, "format", json_string("pt")) != 0 ||
        json_object_set(root, "__metadata__", md) != 0) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nt; i++) {
        uint64_t count;
        if (!t[i].name || !t[i].name[0] || !pt_utf8_valid(t[i].name, strlen(t[i].name)) ||
            strcmp(t[i].name, "__metadata__") == 0) {
            rc = pt_error_at(PT_EINVAL, path, 0, "tensor %zu: name must be non-empty UTF-8 and not __metadata__", i);
            goto out;
        }
        const char *name = safe_name(t[i].name, nb);
        if (t[i].ndim < 0 || t[i].ndim > MODELFILE_MAX_DIMS) {
            rc = pt_error_at(PT_EINVAL, path, 0, "tensor '%s': %d dims, at most %d supported", name,
                             t[i].ndim, MODELFILE_MAX_DIMS);
            goto out;
        }
        if (shape_count(t[i].shape, t[i].ndim, &count) != 0) {
            rc = pt_error_at(PT_EINVAL, path, 0, "tensor '%s': negative dimension or shape too large", name);
            goto out;
        }
        if (count > 0 && !t[i].data) {
            rc = pt_error_at(PT_EINVAL, path, 0, "tensor '%s': no data", name);
            goto out;
        }
        if (json_object_get(root, t[i].name)) {
            rc = pt_error_at(PT_EINVAL, path, 0, "duplicate tensor name '%s'", name);
            goto out;
        }
        uint64_t bytes = count * 4;
        if (bytes > MF_MAX_BYTES - off) {
            rc = pt_error_at(PT_EINVAL, path, 0, "tensors too large for one file");
            goto out;
        }
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        bool ok = e && shape && offs;
        for (int d = 0; ok && d < t[i].ndim; d++)
            ok = json_array_append_new(shape, json_integer((json_int_t)t[i].shape[d])) == 0;
        ok = ok && json_array_append_new(offs, json_integer((json_int_t)off)) == 0 &&
             json_array_append_new(offs, json_integer((json_int_t)(off + bytes))) == 0 &&
             json_object_set_new(e, "dtype", json_string(t[i].dtype == MF_I32 ? "I32" : "F32")) == 0 &&
             json_object_set(e, "shape", shape) == 0 && json_object_set(e, "data_offsets", offs) == 0 &&
             json_object_set(root, t[i].name, e) == 0;
        json_decref(e);
        json_decref(shape);
        json_decref(offs);
        if (!ok) {
            rc = pt_error(PT_ENOMEM, "out of memory");
            goto out;
        }
        off += bytes;
    }
    /* Jansson 2.14's json_dumps can swallow a failed allocation and return
     * text with a key missing, so any failed allocation since the start of
     * this function counts. */
    *hdr = json_dumps(root, JSON_COMPACT);
    if (!*hdr || json_alloc_failed) {
        pt_free(*hdr);
        *hdr = NULL;
        rc = pt_error(PT_ENOMEM, "out of memory");
    }
    *data_len = off;
out:
    json_decref(md);
    json_decref(root);
    return rc;
}

int modelfile_write(const char *path, const char *meta_json, const struct mf_tensor *tensors,
                    size_t ntensors)
{
    int rc = PT_OK;
    char *hdr = NULL;
    json_t *meta = NULL;
    struct atomic_file af;
    memset(&af, 0, sizeof af);
    json_init();
    if (!path || !meta_json || (ntensors > 0 && !tensors))
        return pt_error(PT_EINVAL, "modelfile_write: NULL argument");

    meta = json_parse(meta_json, strlen(meta_json), 0, path, "metadata", PT_EINVAL, &rc);
    if (!meta) goto out;
    if (!json_is_object(meta)) {
        rc = pt_error_at(PT_EINVAL, path, 0, "metadata is not a JSON object");
        goto out;
    }

    uint64_t data_len = 0;
    rc = st_header(path, tensors, ntensors, &hdr, &data_len);
    if (rc != PT_OK) goto out;
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;
    uint64_t meta_len = strlen(meta_json);
    if (data_len > MF_MAX_BYTES - 8 - padded || meta_len > MF_MAX_BYTES - MF_MIN_LEN - 8 - padded - data_len) {
        rc = pt_error_at(PT_EINVAL, path, 0, "model too large for one file");
        goto out;
    }
    uint64_t st_len = 8 + padded + data_len;

    rc = atomic_file_open(&af, path);
    if (rc != PT_OK) goto out;
    struct mf_writer w = {af.f, path, 0};
    uint8_t head[MF_HEADER_LEN], u64[8], trailer[MF_TRAILER_LEN];
    static const char spaces[] = "        "; /* padded - hlen < 8 */
    memcpy(head, mf_magic, 8);
    wr32(head + 8, MODELFILE_VERSION);
    wr32(head + 12, 0);
    wr64(head + 16, meta_len);
    wr64(head + 24, st_len);
    wr64(u64, padded);
    if ((rc = put(&w, head, sizeof head)) != PT_OK || (rc = put(&w, meta_json, meta_len)) != PT_OK ||
        (rc = put(&w, u64, 8)) != PT_OK || (rc = put(&w, hdr, hlen)) != PT_OK ||
        (rc = put(&w, spaces, padded - hlen)) != PT_OK)
        goto out;
    for (size_t i = 0; i < ntensors; i++) {
        uint64_t count = 0;
        (void)shape_count(tensors[i].shape, tensors[i].ndim, &count); /* checked in st_header */
        if ((rc = put(&w, tensors[i].data, count * 4)) != PT_OK) goto out;
    }
    wr32(trailer, w.crc);
    memcpy(trailer + 4, mf_end, 4);
    if (fwrite(trailer, 1, sizeof trailer, af.f) != sizeof trailer) {
        rc = pt_error_at(PT_EIO, path, 0, "write failed: %s", strerror(errno));
        goto out;
    }
    rc = atomic_file_commit(&af); /* cleans up af on success and failure */
out:
    if (rc != PT_OK) atomic_file_abort(&af);
    pt_free(hdr);
    json_decref(meta);
    return rc;
}

/* ---- reading ---- */

struct st_entry {
    const char *name;
    json_t *v;
    uint64_t begin, end;
    int ndim, dtype;
    int64_t shape[MODELFILE_MAX_DIMS];
};

static int cmp_entry(const void *a, const void *b)
{
    const struct st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Non-negative JSON integer, or -1. */
static int64_t json_uint(const json_t *v)
{
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    return x < 0 ? -1 : (int64_t)x;
}

/* Checks one tensor entry of the safetensors header against the data
 * section of data_len bytes; fills e. */
static int check_entry(const char *file, struct st_entry *e, uint64_t data_len)
{
    char nb[72];
    const char *name = safe_name(e->name, nb);
    json_t *v = e->v;
    if (!json_is_object(v))
        return pt_error_at(PT_EFORMAT, file, 0, "tensor '%s': entry is not a JSON object", name);
    json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!dtype || !shape || !offs || json_object_size(v) != 3)
        return pt_error_at(PT_EFORMAT, file, 0,
                           "tensor '%s': entry needs exactly dtype, shape and data_offsets", name);
    if (!json_is_string(dtype))
        return pt_error_at(PT_EFORMAT, file, 0, "tensor '%s': dtype is not a string", name);
    e->dtype = MF_F32;
    if (!strcmp(json_string_value(dtype), "I32")) {
        e->dtype = MF_I32;
    } else if (strcmp(json_string_value(dtype), "F32") != 0) {
        char db[72];
        return pt_error_at(PT_EFORMAT, file, 0, "tensor '%s': unsupported dtype '%s' (this build reads F32 and I32)",
                           name, safe_name(json_string_value(dtype), db));
    }
    if (!json_is_array(shape))
        return pt_error_at(PT_EFORMAT, file, 0, "tensor '%s': shape is not an array", name);
    if (json_array_size(shape) > MODELFILE_MAX_DIMS)
        return pt_error_at(PT_EFORMAT, file, 0, "tensor '%s': shape has %zu dims, at most %d supported", name,
                           json_array_size(shape), MODELFILE_MAX_DIMS);
    e->ndim = (int)json_array_size(shape);
    for (int d = 0; d < e->ndim; d++) {
        e->shape[d] = json_uint(json_array_get(shape, (size_t)d));
        if (e->shape[d] < 0)
            return pt_error_at(PT_EFORMAT, file, 0, "tensor '%s': dimension %d is not a non-negative integer",
                               name, d);
    }
    uint64_t count;
    if (shape_count(e->shape, e->ndim, &count) != 0)
        return pt_error_at(PT_EFORMAT, file, 0, "tensor '%s': element count overflows", name);
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return pt_error_at(PT_EFORMAT, file, 0, "tensor '%s': data_offsets is not a pair [begin, end]", name);
    int64_t b = json_uint(json_array_get(offs, 0)), en = json_uint(json_array_get(offs, 1));
    if (b < 0 || en < 0)
        return pt_error_at(PT_EFORMAT, file, 0, "tensor '%s': data_offsets are not non-negative integers",
                           name);
    if (b > en || (uint64_t)en > data_len)
        return pt_error_at(PT_EFORMAT, file, 0,
                           "tensor '%s': data_offsets [%lld, %lld] out of range (data section is %llu bytes)",
                           name, (long long)b, (long long)en, (unsigned long long)data_len);
    if ((uint64_t)(en - b) != count * 4)
        return pt_error_at(PT_EFORMAT, file, 0,
                           "tensor '%s': data_offsets span %lld bytes, shape needs %llu", name,
                           (long long)(en - b), (unsigned long long)(count * 4));
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    return PT_OK;
}

/* Parses the safetensors blob st[0..st_len) into f->tensors. */
static int read_safetensors(const char *file, const uint8_t *st, uint64_t st_len, struct mf_file *f)
{
    int rc = PT_OK;
    json_t *root = NULL;
    struct st_entry *ents = NULL;
    char nb[72], nb2[72];

    if (st_len < 8) {
        rc = pt_error_at(PT_EFORMAT, file, 0, "safetensors section is %llu bytes, too short for its header",
                         (unsigned long long)st_len);
        goto out;
    }
    uint64_t n = rd64(st);
    if (n < 2 || n > st_len - 8 || n > MF_ST_HEADER_MAX) {
        rc = pt_error_at(PT_EFORMAT, file, 0,
                         "safetensors header size %llu out of range (2 to %llu)", (unsigned long long)n,
                         (unsigned long long)(st_len - 8 < MF_ST_HEADER_MAX ? st_len - 8 : MF_ST_HEADER_MAX));
        goto out;
    }
    if (st[8] != '{') {
        rc = pt_error_at(PT_EFORMAT, file, 0, "safetensors header does not start with '{'");
        goto out;
    }
    root = json_parse((const char *)st + 8, (size_t)n, JSON_REJECT_DUPLICATES, file, "safetensors header",
                      PT_EFORMAT, &rc);
    if (!root) goto out;
    if (!json_is_object(root)) {
        rc = pt_error_at(PT_EFORMAT, file, 0, "safetensors header is not a JSON object");
        goto out;
    }
    const uint8_t *data = st + 8 + n;
    uint64_t data_len = st_len - 8 - n;

    json_t *md = json_object_get(root, "__metadata__");
    if (md) {
        const char *k;
        json_t *v;
        bool ok = json_is_object(md);
        if (ok) json_object_foreach(md, k, v) ok = ok && json_is_string(v);
        if (!ok) {
            rc = pt_error_at(PT_EFORMAT, file, 0, "safetensors __metadata__ is not an object of strings");
            goto out;
        }
    }
    size_t nt = json_object_size(root) - (md ? 1 : 0), i = 0;
    ents = pt_calloc(nt, sizeof *ents);
    f->tensors = pt_calloc(nt, sizeof *f->tensors);
    if (!ents || !f->tensors) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) continue;
        if (!key[0]) {
            rc = pt_error_at(PT_EFORMAT, file, 0, "tensor with an empty name");
            goto out;
        }
        ents[i].name = key;
        ents[i].v = val;
        if ((rc = check_entry(file, &ents[i], data_len)) != PT_OK) goto out;
        i++;
    }
    qsort(ents, nt, sizeof *ents, cmp_entry);
    uint64_t expect = 0;
    for (i = 0; i < nt; i++) {
        if (ents[i].begin < expect) {
            rc = pt_error_at(PT_EFORMAT, file, 0, "tensors '%s' and '%s' overlap in the data section",
                             safe_name(ents[i - 1].name, nb), safe_name(ents[i].name, nb2));
            goto out;
        }
        if (ents[i].begin > expect) {
            rc = pt_error_at(PT_EFORMAT, file, 0, "gap in the data section before tensor '%s'",
                             safe_name(ents[i].name, nb));
            goto out;
        }
        expect = ents[i].end;
    }
    if (expect != data_len) {
        rc = pt_error_at(PT_EFORMAT, file, 0, "%llu bytes at the end of the data section belong to no tensor",
                         (unsigned long long)(data_len - expect));
        goto out;
    }
    for (i = 0; i < nt; i++) {
        struct mf_tensor *t = &f->tensors[i];
        size_t bytes = (size_t)(ents[i].end - ents[i].begin);
        t->name = pt_strdup(ents[i].name);
        t->data = pt_malloc(bytes);
        f->ntensors++;
        if (!t->name || !t->data) {
            rc = pt_error(PT_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(t->data, data + ents[i].begin, bytes);
        t->ndim = ents[i].ndim;
        t->dtype = ents[i].dtype;
        memcpy(t->shape, ents[i].shape, sizeof t->shape);
    }
out:
    pt_free(ents);
    json_decref(root);
    return rc;
}

int modelfile_read_mem(const void *buf, size_t len, const char *name, struct mf_file **out)
{
    int rc = PT_OK;
    struct mf_file *f = NULL;
    json_t *meta = NULL;
    const uint8_t *p = buf;
    const char *file = name ? name : "<memory>";
    json_init();
    if (!out) return pt_error(PT_EINVAL, "modelfile_read_mem: NULL out");
    *out = NULL;
    if (!buf && len > 0) return pt_error(PT_EINVAL, "modelfile_read_mem: NULL buffer");

    if (len < MF_MIN_LEN)
        return pt_error_at(PT_EFORMAT, file, 0, "truncated: %zu bytes, a model file has at least %u", len,
                           MF_MIN_LEN);
    if (memcmp(p, mf_magic, sizeof mf_magic) != 0)
        return pt_error_at(PT_EFORMAT, file, 0, "not a polytask model file (bad magic)");
    uint32_t version = rd32(p + 8);
    if (version != MODELFILE_VERSION)
        return pt_error_at(PT_EVERSION, file, 0, "format version %u, this build reads %u", version,
                           MODELFILE_VERSION);
    uint64_t meta_len = rd64(p + 16), st_len = rd64(p + 24), avail = len - MF_MIN_LEN;
    if (meta_len > avail || st_len > avail - meta_len)
        return pt_error_at(PT_EFORMAT, file, 0,
                           "truncated: header declares %llu bytes of metadata and %llu of weights, "
                           "file has room for %llu",
                           (unsigned long long)meta_len, (unsigned long long)st_len, (unsigned long long)avail);
    if (meta_len + st_len < avail)
        return pt_error_at(PT_EFORMAT, file, 0, "%llu trailing bytes after the model",
                           (unsigned long long)(avail - meta_len - st_len));
    if (memcmp(p + len - 4, mf_end, 4) != 0)
        return pt_error_at(PT_EFORMAT, file, 0, "end marker missing: file is truncated or corrupted");
    if ((uint32_t)crc32_z(0, p, len - MF_TRAILER_LEN) != rd32(p + len - MF_TRAILER_LEN))
        return pt_error_at(PT_ECHECKSUM, file, 0, "checksum mismatch: file is corrupted");
    uint32_t flags = rd32(p + 12);
    if (flags != 0)
        return pt_error_at(PT_EFORMAT, file, 0, "unknown flags 0x%x, this build reads 0", flags);

    const char *mj = (const char *)p + MF_HEADER_LEN;
    meta = json_parse(mj, (size_t)meta_len, 0, file, "metadata", PT_EFORMAT, &rc);
    if (!meta) goto out;
    if (!json_is_object(meta)) {
        rc = pt_error_at(PT_EFORMAT, file, 0, "metadata is not a JSON object");
        goto out;
    }
    if (memchr(mj, 0, (size_t)meta_len)) { /* valid JSON has no NUL; belt and braces */
        rc = pt_error_at(PT_EFORMAT, file, 0, "metadata contains a NUL byte");
        goto out;
    }
    f = pt_calloc(1, sizeof *f);
    if (!f || !(f->meta_json = pt_strndup(mj, (size_t)meta_len))) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto out;
    }
    rc = read_safetensors(file, p + MF_HEADER_LEN + meta_len, st_len, f);
    if (rc != PT_OK) goto out;
    *out = f;
    f = NULL;
out:
    json_decref(meta);
    modelfile_free(f);
    return rc;
}

int modelfile_read(const char *path, struct mf_file **out)
{
    int rc = PT_OK;
    uint8_t *buf = NULL;
    FILE *fp = NULL;
    struct stat st;
    if (!out) return pt_error(PT_EINVAL, "modelfile_read: NULL out");
    *out = NULL;
    if (!path) return pt_error(PT_EINVAL, "modelfile_read: NULL path");

    fp = fopen(path, "rb");
    if (!fp) return pt_error_at(PT_EIO, path, 0, "cannot open: %s", strerror(errno));
    if (fstat(fileno(fp), &st) != 0) {
        rc = pt_error_at(PT_EIO, path, 0, "cannot stat: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = pt_error_at(PT_EIO, path, 0, "not a regular file");
        goto out;
    }
    if ((uint64_t)st.st_size > MF_MAX_BYTES) {
        rc = pt_error_at(PT_EFORMAT, path, 0, "file too large");
        goto out;
    }
    size_t len = (size_t)st.st_size;
    buf = pt_malloc(len);
    if (!buf) {
        rc = pt_error(PT_ENOMEM, "out of memory reading %s", path);
        goto out;
    }
    if (fread(buf, 1, len, fp) != len) {
        rc = pt_error_at(PT_EIO, path, 0, "read failed: %s", ferror(fp) ? strerror(errno) : "file shrank");
        goto out;
    }
    int c = fclose(fp);
    fp = NULL;
    if (c != 0) {
        rc = pt_error_at(PT_EIO, path, 0, "close failed: %s", strerror(errno));
        goto out;
    }
    rc = modelfile_read_mem(buf, len, path, out);
out:
    if (fp) fclose(fp);
    pt_free(buf);
    return rc;
}

const struct mf_tensor *modelfile_find(const struct mf_file *f, const char *name)
{
    if (!f || !name) return NULL;
    for (size_t i = 0; i < f->ntensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

void modelfile_free(struct mf_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->ntensors; i++) {
        pt_free(f->tensors[i].name);
        pt_free(f->tensors[i].data);
    }
    pt_free(f->tensors);
    pt_free(f->meta_json);
    pt_free(f);
}
