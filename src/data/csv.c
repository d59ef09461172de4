/* csv.c: streaming CSV/TSV reader (interface and format rules in csv.h).
 *
 * Input comes through one window [p, e) of bytes not yet parsed:
 *   - plain memory: the window is the caller's whole buffer, nothing copied;
 *   - files (gzread, which also passes plain files through) and gzip memory
 *     (inflate): a fixed CSV_IN_CAP buffer refilled in large blocks, the
 *     unparsed tail moved to the front first. The parser only ever holds back
 *     a few bytes (a possible CR before LF, a possibly split delimiter, the
 *     byte after a quote), so the window never needs to grow.
 * Field bytes are copied, unquoted, into one record buffer, each field
 * followed by a NUL; that buffer grows up to CSV_REC_MAX.
 *
 * Deliberately not done: guessing the delimiter, trimming spaces, treating a
 * quote inside an unquoted field as special (it is kept as data, as most
 * writers that forget to quote produce it), lone CR as a line end (kept as
 * data: only CRLF and LF end a line). */
#include "data/csv.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <zlib.h>

#include "util/util.h"

enum {
    CSV_IN_CAP = 256 * 1024,        /* input window for files and gzip */
    CSV_REC_MAX = 16 * 1024 * 1024, /* record text incl. one NUL per field */
    CSV_DELIM_MAX = 64,
    CSV_FIELDS_MIN = 64,
    CSV_REC_MIN = 4096,
};

enum csv_src { CSV_SRC_MEM, CSV_SRC_GZMEM, CSV_SRC_FILE };

struct csv_reader {
    char *name;
    char delim[CSV_DELIM_MAX + 1];
    size_t dlen;
    char quote;
    unsigned char stop[256]; /* bytes that may end an unquoted field */

    enum csv_src src;
    gzFile gz;              /* CSV_SRC_FILE */
    z_stream zs;            /* CSV_SRC_GZMEM */
    int zs_live, zs_done;
    const unsigned char *zbase; /* compressed input, zlen bytes */
    size_t zlen;

    char *in;             /* CSV_IN_CAP bytes, NULL for plain memory */
    const char *p, *e;    /* unparsed bytes */
    int eof;              /* nothing beyond e */

    char *rec;            /* fields, each NUL-terminated */
    size_t rec_len, rec_cap, fstart;
    char **fields;
    size_t *lens;
    size_t nf, fcap;
    int in_quote; /* for the message when a record gets too long */

    long line;     /* physical line of *p */
    long rec_line; /* line on which the last record began */
    int started;   /* BOM checked */
    int skip_line; /* after a parse error: drop the rest of the line */
    int err;       /* sticky error (I/O, memory): every later call fails */
};

/* zlib's allocator hooks, so tests can fail inflate's allocations too. */
static voidpf csv_zalloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    if (size && items > SIZE_MAX / size) return Z_NULL;
    return pt_malloc((size_t)items * size);
}

static void csv_zfree(voidpf opaque, voidpf ptr)
{
    (void)opaque;
    pt_free(ptr);
}

/* ---- input window ---- */

/* Inflates into out[0, room); *got is 0 only at the end of the data. */
static int gzmem_read(struct csv_reader *r, char *out, size_t room, size_t *got)
{
    z_stream *zs = &r->zs;
    zs->next_out = (Bytef *)out;
    zs->avail_out = (uInt)(room < UINT_MAX ? room : UINT_MAX);
    uInt want = zs->avail_out;
    while (!r->zs_done && zs->avail_out > 0) {
        size_t pos = (size_t)(zs->next_in - r->zbase);
        if (zs->avail_in == 0 && pos < r->zlen) {
            size_t left = r->zlen - pos;
            zs->avail_in = (uInt)(left < (1u << 30) ? left : (1u << 30));
        }
        int zrc = inflate(zs, Z_NO_FLUSH);
        if (zrc == Z_STREAM_END) {
            /* gzip allows several members back to back (cat a.gz b.gz);
             * anything else after the stream is ignored, as gzread does. */
            pos = (size_t)(zs->next_in - r->zbase);
            if (r->zlen - pos >= 2 && r->zbase[pos] == 0x1f && r->zbase[pos + 1] == 0x8b) {
                if (inflateReset(zs) != Z_OK)
                    return pt_error_at(PT_EIO, r->name, 0, "cannot restart gzip decoder");
                continue;
            }
            r->zs_done = 1;
            break;
        }
        if (zrc == Z_MEM_ERROR)
            return pt_error_at(PT_ENOMEM, r->name, 0, "out of memory decompressing gzip data");
        if (zrc == Z_BUF_ERROR && zs->avail_in == 0)
            return pt_error_at(PT_EIO, r->name, 0, "gzip data ends early (truncated file?)");
        if (zrc != Z_OK)
            return pt_error_at(PT_EIO, r->name, 0, "gzip data is corrupt: %s",
                               zs->msg ? zs->msg : "inflate failed");
    }
    *got = want - zs->avail_out;
    return PT_OK;
}

static int file_read(struct csv_reader *r, char *out, size_t room, size_t *got)
{
    int n = gzread(r->gz, out, (unsigned)(room < INT_MAX ? room : INT_MAX));
    if (n < 0) {
        int zerr;
        const char *msg = gzerror(r->gz, &zerr);
        if (zerr == Z_ERRNO) msg = strerror(errno);
        return pt_error_at(PT_EIO, r->name, 0, "read failed: %s", msg);
    }
    *got = (size_t)n;
    return PT_OK;
}

/* Moves the unparsed bytes to the front of the buffer and reads more after
 * them; sets eof when nothing more comes. */
static int refill(struct csv_reader *r)
{
    if (r->eof) return PT_OK;
    size_t keep = (size_t)(r->e - r->p), got = 0;
    memmove(r->in, r->p, keep);
    int rc = r->src == CSV_SRC_FILE ? file_read(r, r->in + keep, CSV_IN_CAP - keep, &got)
                                    : gzmem_read(r, r->in + keep, CSV_IN_CAP - keep, &got);
    r->p = r->in;
    r->e = r->in + keep + got;
    if (rc < 0) return rc;
    if (got == 0) r->eof = 1;
    return PT_OK;
}

/* Makes at least n bytes visible unless the input ends first (n is small:
 * at most the delimiter length). Returns the bytes visible or an error. */
static ptrdiff_t ensure(struct csv_reader *r, size_t n)
{
    while ((size_t)(r->e - r->p) < n && !r->eof) {
        int rc = refill(r);
        if (rc < 0) return rc;
    }
    return r->e - r->p;
}

/* ---- record buffer ---- */

static int parse_error(struct csv_reader *r, long line, const char *what)
{
    return pt_error_at(PT_EPARSE, r->name, line, "%s", what);
}

/* Room for need bytes in the record buffer (need <= CSV_REC_MAX). */
static int rec_reserve(struct csv_reader *r, size_t need)
{
    if (need <= r->rec_cap) return PT_OK;
    size_t cap = r->rec_cap ? r->rec_cap : CSV_REC_MIN;
    while (cap < need) cap *= 2;
    if (cap > CSV_REC_MAX) cap = CSV_REC_MAX;
    char *nr = pt_realloc(r->rec, cap);
    if (!nr) return pt_error_at(PT_ENOMEM, r->name, r->rec_line, "out of memory for a record");
    r->rec = nr;
    r->rec_cap = cap;
    return PT_OK;
}

/* Room for one more field. */
static int fields_reserve(struct csv_reader *r)
{
    if (r->nf < r->fcap) return PT_OK;
    size_t cap = r->fcap ? r->fcap * 2 : CSV_FIELDS_MIN;
    /* fcap only moves once both arrays have the new size */
    char **nfld = pt_realloc(r->fields, cap * sizeof *nfld);
    if (!nfld) return pt_error_at(PT_ENOMEM, r->name, r->rec_line, "out of memory for fields");
    r->fields = nfld;
    size_t *nl = pt_realloc(r->lens, cap * sizeof *nl);
    if (!nl) return pt_error_at(PT_ENOMEM, r->name, r->rec_line, "out of memory for fields");
    r->lens = nl;
    r->fcap = cap;
    return PT_OK;
}

static int rec_append(struct csv_reader *r, const char *s, size_t n)
{
    if (n > CSV_REC_MAX - r->rec_len)
        return parse_error(r, r->rec_line,
                           r->in_quote ? "record longer than 16 MiB starting here (unbalanced quote?)"
                                       : "record longer than 16 MiB starting here");
    int rc = rec_reserve(r, r->rec_len + n);
    if (rc < 0) return rc;
    if (n) memcpy(r->rec + r->rec_len, s, n);
    r->rec_len += n;
    return PT_OK;
}

/* Closes the field that began at fstart. */
static int field_end(struct csv_reader *r)
{
    int rc = rec_append(r, "", 1);
    if (rc < 0) return rc;
    if ((rc = fields_reserve(r)) < 0) return rc;
    r->lens[r->nf++] = r->rec_len - 1 - r->fstart;
    r->fstart = r->rec_len;
    return PT_OK;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* parse_plain_line with a one-byte delimiter: the line is copied whole and
 * split in place, eight bytes a step (a call per field cost more than the
 * field's bytes on short lines of ids). rec has n + 8 bytes. */
static int split_line(struct csv_reader *r, const char *p, size_t n, const char *nl)
{
    const uint64_t lo7 = 0x7F7F7F7F7F7F7F7Full, dd = 0x0101010101010101ull * (unsigned char)r->delim[0];
    char *w = r->rec;
    memcpy(w, p, n);
    w[n] = r->delim[0]; /* ends the last field; the rest of the word is never a field */
    memset(w + n + 1, 0, 7);
    size_t s = 0;
    for (size_t k = 0; s <= n; k += 8) {
        uint64_t x;
        memcpy(&x, w + k, 8);
        x ^= dd;
        /* 0x80 in exactly the bytes equal to the delimiter (no carry between bytes) */
        uint64_t m = ~(((x & lo7) + lo7) | x | lo7);
        for (; m && s <= n; m &= m - 1) {
            size_t at = k + (size_t)(__builtin_ctzll(m) >> 3);
            int rc;
            if (r->nf == r->fcap && (rc = fields_reserve(r)) < 0) return rc;
            w[at] = 0;
            r->lens[r->nf++] = at - s;
            s = at + 1;
        }
    }
    r->rec_len = n + 1;
    r->p = nl + 1;
    r->line++;
    return 1;
}
#endif

/* The common case, done in bulk: a whole line is in the window and holds no
 * quote. Copies it once and splits it in place. Returns 1 when it read the
 * record, 0 to leave it to the byte-by-byte path (which also reports a
 * record that is too long), or an error. */
static int parse_plain_line(struct csv_reader *r)
{
    const char *p = r->p;
    const char *nl = memchr(p, '\n', (size_t)(r->e - p));
    if (!nl || memchr(p, r->quote, (size_t)(nl - p))) return 0;
    size_t n = (size_t)(nl - p);
    if (n && nl[-1] == '\r') n--;
    if (n + 8 > CSV_REC_MAX) return 0; /* rec_reserve caps at CSV_REC_MAX; split_line reads 8 past n */
    int rc = rec_reserve(r, n + 8);
    if (rc < 0) return rc;
    const char d0 = r->delim[0];
    const size_t dlen = r->dlen;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (dlen == 1) return split_line(r, p, n, nl);
#endif
    /* memchr, not a byte loop: fields are short but lines are long */
    const char *s = p, *q = p, *end = p + n;
    char *w = r->rec;
    for (;;) {
        q = memchr(q, d0, (size_t)(end - q));
        if (q && dlen > 1 &&
            ((size_t)(end - q) < dlen || q[1] != r->delim[1] || memcmp(q + 2, r->delim + 2, dlen - 2) != 0)) {
            q++;
            continue;
        }
        size_t len = (size_t)((q ? q : end) - s);
        if (r->nf == r->fcap && (rc = fields_reserve(r)) < 0) return rc;
        memcpy(w, s, len);
        w[len] = 0;
        w += len + 1;
        r->lens[r->nf++] = len;
        if (!q) break;
        s = q = q + dlen;
    }
    r->rec_len = (size_t)(w - r->rec);
    r->p = nl + 1;
    r->line++;
    return 1;
}

/* ---- parser: each returns <0 error, 0 field ended by a delimiter, 1 record
 * ended (line end or end of input) ---- */

static int parse_unquoted(struct csv_reader *r)
{
    const unsigned char *stop = r->stop;
    const size_t dlen = r->dlen;
    int rc;
    for (;;) {
        const char *p = r->p, *e = r->e, *q = p;
        for (;;) {
            while (q < e && !stop[(unsigned char)*q]) q++;
            if (q == e) break;
            if (*q == '\n') {
                size_t n = (size_t)(q - p);
                if (n && q[-1] == '\r') n--;
                if ((rc = rec_append(r, p, n)) < 0 || (rc = field_end(r)) < 0) return rc;
                r->p = q + 1;
                r->line++;
                return 1;
            }
            /* *q is the delimiter's first byte */
            if (dlen == 1 || ((size_t)(e - q) >= dlen && memcmp(q, r->delim, dlen) == 0)) {
                if ((rc = rec_append(r, p, (size_t)(q - p))) < 0 || (rc = field_end(r)) < 0) return rc;
                r->p = q + dlen;
                return 0;
            }
            if ((size_t)(e - q) >= dlen || r->eof) {
                q++;
                continue;
            }
            break; /* maybe a delimiter split by the buffer end: read on */
        }
        if (q == e && r->eof) {
            if ((rc = rec_append(r, p, (size_t)(q - p))) < 0 || (rc = field_end(r)) < 0) return rc;
            r->p = e;
            return 1;
        }
        /* hold back a CR: the LF that would make it a line end may come next */
        if (q == e && q > p && q[-1] == '\r') q--;
        if ((rc = rec_append(r, p, (size_t)(q - p))) < 0) return rc;
        r->p = q;
        if ((rc = refill(r)) < 0) return rc;
    }
}

static long count_lf(const char *p, const char *e)
{
    long n = 0;
    while ((p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

static int parse_quoted(struct csv_reader *r)
{
    const long start_line = r->line;
    const char quote = r->quote;
    ptrdiff_t avail;
    int rc;
    r->p++;
    r->in_quote = 1;
    for (;;) {
        const char *p = r->p, *e = r->e;
        const char *q = memchr(p, quote, (size_t)(e - p));
        const char *end = q ? q : e;
        if ((rc = rec_append(r, p, (size_t)(end - p))) < 0) return rc;
        r->line += count_lf(p, end);
        if (!q) {
            r->p = e;
            if (r->eof) return parse_error(r, start_line, "unterminated quoted field starting here");
            if ((rc = refill(r)) < 0) return rc;
            continue;
        }
        r->p = q + 1;
        if ((avail = ensure(r, 1)) < 0) return (int)avail;
        if (avail == 0 || *r->p != quote) break;
        if ((rc = rec_append(r, &quote, 1)) < 0) return rc; /* "" is one quote */
        r->p++;
    }
    r->in_quote = 0;

    /* after the closing quote: a delimiter, a line end or the end of input */
    if ((avail = ensure(r, 1)) < 0) return (int)avail;
    if (avail == 0) return (rc = field_end(r)) < 0 ? rc : 1;
    char c = *r->p;
    if (c == '\n') {
        if ((rc = field_end(r)) < 0) return rc;
        r->p++;
        r->line++;
        return 1;
    }
    if (c == '\r') {
        if ((avail = ensure(r, 2)) < 0) return (int)avail;
        if (avail >= 2 && r->p[1] == '\n') {
            if ((rc = field_end(r)) < 0) return rc;
            r->p += 2;
            r->line++;
            return 1;
        }
    } else if (c == r->delim[0]) {
        if ((avail = ensure(r, r->dlen)) < 0) return (int)avail;
        if ((size_t)avail >= r->dlen && memcmp(r->p, r->delim, r->dlen) == 0) {
            if ((rc = field_end(r)) < 0) return rc;
            r->p += r->dlen;
            return 0;
        }
    }
    return parse_error(r, r->line, "unexpected character after closing quote");
}

/* Drops bytes up to and including the next LF (or to the end). */
static int skip_line(struct csv_reader *r)
{
    for (;;) {
        const char *q = memchr(r->p, '\n', (size_t)(r->e - r->p));
        if (q) {
            r->p = q + 1;
            r->line++;
            return PT_OK;
        }
        r->p = r->e;
        if (r->eof) return PT_OK;
        int rc = refill(r);
        if (rc < 0) return rc;
    }
}

/* ---- public ---- */

static int reader_new(struct csv_reader **out, const char *name, const struct csv_opts *opts)
{
    const char *delim = opts && opts->delim ? opts->delim : ",";
    char quote = opts && opts->quote ? opts->quote : '"';
    size_t dlen = strlen(delim);
    *out = NULL;
    if (dlen == 0 || dlen > CSV_DELIM_MAX)
        return pt_error_at(PT_EINVAL, name, 0, "delimiter must be 1 to %d bytes", CSV_DELIM_MAX);
    if (strpbrk(delim, "\r\n") || memchr(delim, quote, dlen))
        return pt_error_at(PT_EINVAL, name, 0, "delimiter may not contain CR, LF or the quote");
    if (quote == '\r' || quote == '\n')
        return pt_error_at(PT_EINVAL, name, 0, "quote may not be CR or LF");

    struct csv_reader *r = pt_calloc(1, sizeof *r);
    if (!r) return pt_error_at(PT_ENOMEM, name, 0, "out of memory opening reader");
    r->name = pt_strdup(name);
    if (!r->name) {
        pt_free(r);
        return pt_error_at(PT_ENOMEM, name, 0, "out of memory opening reader");
    }
    memcpy(r->delim, delim, dlen + 1);
    r->dlen = dlen;
    r->quote = quote;
    r->stop['\n'] = 1;
    r->stop[(unsigned char)delim[0]] = 1;
    r->line = 1;
    r->rec_line = 0;
    *out = r;
    return PT_OK;
}

int csv_reader_open(struct csv_reader **out, const char *path, const struct csv_opts *opts)
{
    struct csv_reader *r = NULL;
    int rc = reader_new(&r, path, opts);
    if (rc < 0) goto fail;
    r->src = CSV_SRC_FILE;
    r->in = pt_malloc(CSV_IN_CAP);
    if (!r->in) {
        rc = pt_error_at(PT_ENOMEM, path, 0, "out of memory for the input buffer");
        goto fail;
    }
    r->p = r->e = r->in;
    errno = 0;
    r->gz = gzopen(path, "rb");
    if (!r->gz) {
        rc = pt_error_at(PT_EIO, path, 0, "cannot open: %s", errno ? strerror(errno) : "out of memory");
        goto fail;
    }
    /* zlib reads 8 KiB at a time by default; larger reads are cheaper */
    if (gzbuffer(r->gz, 128 * 1024) != 0) {
        rc = pt_error_at(PT_EIO, path, 0, "cannot set the read buffer size");
        goto fail;
    }
    *out = r;
    return PT_OK;
fail:
    csv_reader_close(r);
    *out = NULL;
    return rc;
}

int csv_reader_open_mem(struct csv_reader **out, const void *buf, size_t len, const char *name,
                        const struct csv_opts *opts)
{
    struct csv_reader *r = NULL;
    const unsigned char *b = buf ? buf : (const void *)"";
    if (!name) name = "<memory>";
    int rc = reader_new(&r, name, opts);
    if (rc < 0) goto fail;
    if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
        r->src = CSV_SRC_GZMEM;
        r->in = pt_malloc(CSV_IN_CAP);
        if (!r->in) {
            rc = pt_error_at(PT_ENOMEM, name, 0, "out of memory for the input buffer");
            goto fail;
        }
        r->p = r->e = r->in;
        r->zbase = b;
        r->zlen = len;
        r->zs.zalloc = csv_zalloc;
        r->zs.zfree = csv_zfree;
        r->zs.next_in = (Bytef *)b; /* zlib's API is not const; it only reads */
        r->zs.avail_in = 0;
        int zrc = inflateInit2(&r->zs, 15 + 32); /* 32: expect a gzip or zlib header */
        if (zrc != Z_OK) {
            rc = zrc == Z_MEM_ERROR ? pt_error_at(PT_ENOMEM, name, 0, "out of memory for gzip decoder")
                                    : pt_error_at(PT_EIO, name, 0, "cannot start gzip decoder");
            goto fail;
        }
        r->zs_live = 1;
    } else {
        r->src = CSV_SRC_MEM;
        r->p = (const char *)b;
        r->e = (const char *)b + len;
        r->eof = 1;
    }
    *out = r;
    return PT_OK;
fail:
    csv_reader_close(r);
    *out = NULL;
    return rc;
}

void csv_reader_close(struct csv_reader *r)
{
    if (!r) return;
    if (r->gz) gzclose(r->gz); /* read-only: nothing to lose on a failed close */
    if (r->zs_live) inflateEnd(&r->zs);
    pt_free(r->in);
    pt_free(r->rec);
    pt_free(r->fields);
    pt_free(r->lens);
    pt_free(r->name);
    pt_free(r);
}

int csv_reader_next(struct csv_reader *r, size_t *nfields, char ***fields, size_t **lens)
{
    ptrdiff_t avail;
    int rc;
    if (r->err) return pt_error_at(r->err, r->name, r->line, "reader stopped after an earlier error");
    if (!r->started) {
        if ((avail = ensure(r, 3)) < 0) {
            rc = (int)avail;
            goto fail;
        }
        if (avail >= 3 && memcmp(r->p, "\xEF\xBB\xBF", 3) == 0) r->p += 3;
        r->started = 1;
    }
    if (r->skip_line) {
        if ((rc = skip_line(r)) < 0) goto fail;
        r->skip_line = 0;
    }
    if ((avail = ensure(r, 1)) < 0) {
        rc = (int)avail;
        goto fail;
    }
    if (avail == 0) return 0;

    r->rec_line = r->line;
    r->rec_len = r->fstart = r->nf = 0;
    r->in_quote = 0;
    rc = parse_plain_line(r);
    if (rc < 0) goto fail;
    while (rc == 0) {
        if ((avail = ensure(r, 1)) < 0) {
            rc = (int)avail;
            goto fail;
        }
        if (avail == 0) {
            rc = field_end(r); /* input ends right after a delimiter */
            if (rc < 0) goto fail;
            break;
        }
        rc = *r->p == r->quote ? parse_quoted(r) : parse_unquoted(r);
        if (rc < 0) goto fail;
    }

    size_t off = 0;
    for (size_t i = 0; i < r->nf; i++) {
        r->fields[i] = r->rec + off;
        off += r->lens[i] + 1;
    }
    *nfields = r->nf;
    *fields = r->fields;
    *lens = r->lens;
    return 1;
fail:
    if (rc == PT_EPARSE)
        r->skip_line = 1;
    else
        r->err = rc;
    return rc;
}

long csv_reader_line(const struct csv_reader *r) { return r->rec_line; }

const char *csv_reader_name(const struct csv_reader *r) { return r->name; }
