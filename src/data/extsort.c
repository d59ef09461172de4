/* extsort.c: stable external sort by a 64-bit key (interface in extsort.h).
 *
 * Records are copied into one arena, each as
 *     int64_t key                       8 bytes, native order
 *     varint body length                bytes that follow it
 *     varint line (zigzag), varint nfields, varint lens[nfields]
 *     field bytes, each followed by a NUL
 * (varint: 7 bits a byte, low first; a record of 5 short fields takes about
 * 15 bytes beyond its text), with an index entry {key, arena offset} per
 * record. The index is sorted by an LSD radix sort on the key: stable, so
 * equal keys stay in arena order, which is the order added; byte positions
 * where all keys agree are skipped, and an index already in order costs one
 * pass. When the arena plus index would pass the budget, the records are
 * appended in sorted order, as they are, to one spill file: each spill is one
 * run, a byte range of that file.
 *
 * extsort_finish sorts what is left in memory, which stays there as the last
 * run. extsort_next merges the runs with a binary heap on (key, run number):
 * runs are numbered in the order they were filled, so ties go to the earlier
 * run, which keeps the sort stable without storing a sequence number. File
 * runs are read with pread into one buffer each (a record larger than the
 * buffer grows it). Fields are handed out in place, so the previous record
 * stays valid until the next call advances its run. Records read back are
 * checked against their run's bounds: a damaged file is an error, not a
 * crash. With no spill the in-memory run is the only one and no file is ever
 * created.
 *
 * Deliberately not done: multi-pass merging (one file descriptor serves all
 * runs, and with a 256 MiB budget 256 runs take about 64 GiB of records),
 * compressing the spill file, threads. */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64
#include "data/extsort.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "util/util.h"

enum {
    ES_BUDGET_MIN = 64 * 1024,
    ES_HEAD_MAX = 8 + 10, /* key and the longest body-length varint */
    ES_IDX_COST = 32,     /* index entry + radix scratch entry per record */
    ES_WBUF = 1 << 20,    /* spill write buffer */
    ES_RBUF_MIN = 64 * 1024,
    ES_RBUF_MAX = 1 << 20, /* read buffer per run: budget / runs, within these */
    ES_ARENA_MIN = 64 * 1024,
    ES_IDX_MIN = 1024,
    ES_FIELDS_MIN = 16,
    ES_AHEAD = 16, /* records prefetched ahead when walking the arena in key order */
};

/* ---- record encoding ---- */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7) n++;
    return n;
}

static unsigned char *varint_put(unsigned char *p, uint64_t v)
{
    for (; v >= 0x80; v >>= 7) *p++ = (unsigned char)(v | 0x80);
    *p++ = (unsigned char)v;
    return p;
}

/* Reads a varint from [*p, e); 0 if it is cut off or too long. */
static int varint_get(const unsigned char **p, const unsigned char *e, uint64_t *v)
{
    uint64_t r = 0;
    for (int sh = 0; sh < 64 && *p < e; sh += 7) {
        unsigned char b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80)) {
            *v = r;
            return 1;
        }
    }
    return 0;
}

static uint64_t zigzag(int64_t v) { return v < 0 ? (~(uint64_t)v << 1) | 1 : (uint64_t)v << 1; }

static int64_t unzigzag(uint64_t v) { return v & 1 ? -(int64_t)(v >> 1) - 1 : (int64_t)(v >> 1); }

/* key with the sign bit flipped, so unsigned order is signed order */
struct es_idx {
    uint64_t key;
    uint64_t off;
};

struct es_run {
    uint64_t start, end; /* byte range in the spill file */
};

/* one input of the merge */
struct es_src {
    unsigned char *rec; /* current record (in buf or the arena); NULL when done */
    int64_t key;
    size_t size;        /* file run: bytes of rec */
    int mem;            /* 1: the in-memory run */
    size_t pos;         /* in-memory run: next index entry */
    uint64_t off, end;  /* file run: bytes not yet read */
    unsigned char *buf; /* file run: buf[p, e) read, not yet consumed */
    size_t cap, p, e;
};

struct extsort {
    char *tmpdir;
    size_t budget;
    int err;      /* sticky: every later call fails */
    int finished;
    int64_t count;

    unsigned char *arena;
    size_t arena_len, arena_cap;
    struct es_idx *idx, *tmp; /* tmp: radix scratch, freed by finish */
    size_t nidx, idx_cap, tmp_cap;

    char *path;    /* spill file (unlinked unless linked) */
    FILE *f;
    int fd;
    int linked;
    uint64_t file_len;
    unsigned char *wbuf;
    size_t wlen;
    struct es_run *runs;
    int nruns, runs_cap;

    struct es_src *src;
    int *heap; /* source numbers, min-heap on (key, number) */
    int nsrc, nheap;
    int last; /* source of the record handed out last, -1 for none */

    char **fields; /* what extsort_next hands out; fcap >= any nfields added */
    size_t *lens;
    size_t fcap;
};

static int stopped(const struct extsort *s)
{
    return pt_error(s->err, "external sort stopped after an earlier error");
}

static const char *spill_name(const struct extsort *s) { return s->path ? s->path : s->tmpdir; }

static int io_error(struct extsort *s, const char *what, int e)
{
    return pt_error_at(PT_EIO, spill_name(s), 0, "spill file: %s: %s", what, strerror(e));
}

static int damaged(struct extsort *s)
{
    return pt_error_at(PT_EIO, spill_name(s), 0,
                       "spill file is damaged (changed or truncated while in use?)");
}

int extsort_create(struct extsort **out, const char *tmpdir, size_t mem_budget)
{
    *out = NULL;
    if (!tmpdir || !tmpdir[0]) return pt_error(PT_EINVAL, "external sort: no folder for spill files");
    if (mem_budget < ES_BUDGET_MIN)
        return pt_error(PT_EINVAL, "external sort: memory budget of %zu bytes is below the minimum of %d",
                        mem_budget, ES_BUDGET_MIN);
    struct extsort *s = pt_calloc(1, sizeof *s);
    if (!s) return pt_error(PT_ENOMEM, "out of memory");
    s->fd = -1;
    s->last = -1;
    s->budget = mem_budget;
    s->tmpdir = pt_strdup(tmpdir);
    s->fields = pt_malloc(ES_FIELDS_MIN * sizeof *s->fields);
    s->lens = pt_malloc(ES_FIELDS_MIN * sizeof *s->lens);
    if (!s->tmpdir || !s->fields || !s->lens) {
        extsort_free(s);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    s->fcap = ES_FIELDS_MIN;
    *out = s;
    return PT_OK;
}

/* ---- sorting the in-memory index ---- */

/* Stable LSD radix sort of idx[0, nidx) on key, 8 bits a pass. */
static int sort_mem(struct extsort *s)
{
    size_t n = s->nidx;
    struct es_idx *a = s->idx;
    size_t i = 1;
    while (i < n && a[i - 1].key <= a[i].key) i++;
    if (i >= n) return PT_OK; /* already in order (logs mostly are) */
    if (s->tmp_cap < n) {
        pt_free(s->tmp);
        s->tmp_cap = 0;
        s->tmp = pt_malloc(s->idx_cap * sizeof *s->tmp);
        if (!s->tmp) return pt_error(PT_ENOMEM, "out of memory sorting %zu records", n);
        s->tmp_cap = s->idx_cap;
    }
    size_t cnt[8][256];
    memset(cnt, 0, sizeof cnt);
    for (i = 0; i < n; i++) {
        uint64_t k = a[i].key;
        for (int b = 0; b < 8; b++) cnt[b][(k >> (8 * b)) & 255]++;
    }
    struct es_idx *from = a, *to = s->tmp;
    for (int b = 0; b < 8; b++) {
        int sh = 8 * b;
        if (cnt[b][(from[0].key >> sh) & 255] == n) continue; /* all keys share this byte */
        size_t sum = 0;
        for (int d = 0; d < 256; d++) {
            size_t c = cnt[b][d];
            cnt[b][d] = sum;
            sum += c;
        }
        for (i = 0; i < n; i++) to[cnt[b][(from[i].key >> sh) & 255]++] = from[i];
        struct es_idx *t = from;
        from = to;
        to = t;
    }
    if (from != s->idx) { /* result is in tmp: swap the arrays */
        s->tmp = s->idx;
        s->idx = from;
        size_t c = s->tmp_cap;
        s->tmp_cap = s->idx_cap;
        s->idx_cap = c;
    }
    return PT_OK;
}

/* ---- spilling ---- */

static int open_spill(struct extsort *s)
{
    s->path = pt_path_join(s->tmpdir, "polytask-sort.XXXXXX");
    if (!s->path) return pt_error(PT_ENOMEM, "out of memory");
    int fd = mkstemp(s->path);
    if (fd < 0) {
        int e = errno;
        pt_free(s->path);
        s->path = NULL;
        return pt_error_at(PT_EIO, s->tmpdir, 0, "cannot create a spill file for sorting in this folder: %s",
                           strerror(e));
    }
    s->linked = unlink(s->path) != 0; /* gone from the folder now; the data lives until close */
    FILE *f = fdopen(fd, "w+b");
    /* unbuffered: wbuf does the buffering */
    if (!f || setvbuf(f, NULL, _IONBF, 0) != 0) {
        int rc = io_error(s, "cannot open", errno);
        if (f)
            (void)fclose(f);
        else
            close(fd);
        if (s->linked) (void)unlink(s->path);
        pt_free(s->path);
        s->path = NULL;
        s->linked = 0;
        return rc;
    }
    s->f = f;
    s->fd = fd;
    return PT_OK;
}

static int write_block(struct extsort *s, const void *p, size_t n)
{
    if (n == 0) return PT_OK;
    if (fwrite(p, 1, n, s->f) != n) return io_error(s, "write failed (folder full?)", errno);
    s->file_len += n;
    return PT_OK;
}

static int put(struct extsort *s, const unsigned char *p, size_t n)
{
    if (s->wlen + n > ES_WBUF) {
        int rc = write_block(s, s->wbuf, s->wlen);
        s->wlen = 0;
        if (rc < 0) return rc;
    }
    if (n >= ES_WBUF) return write_block(s, p, n);
    memcpy(s->wbuf + s->wlen, p, n);
    s->wlen += n;
    return PT_OK;
}

/* Sorts the in-memory records and appends them to the spill file as one run. */
static int spill(struct extsort *s)
{
    if (s->nruns == s->runs_cap) {
        int cap = s->runs_cap ? 2 * s->runs_cap : 16;
        struct es_run *r = pt_realloc(s->runs, (size_t)cap * sizeof *r);
        if (!r) return pt_error(PT_ENOMEM, "out of memory");
        s->runs = r;
        s->runs_cap = cap;
    }
    if (!s->wbuf && !(s->wbuf = pt_malloc(ES_WBUF))) return pt_error(PT_ENOMEM, "out of memory");
    int rc = sort_mem(s);
    if (rc < 0) return rc;
    if (!s->f && (rc = open_spill(s)) < 0) return rc;
    uint64_t start = s->file_len;
    for (size_t i = 0; i < s->nidx && rc == PT_OK; i++) {
        if (i + ES_AHEAD < s->nidx) PT_PREFETCH(s->arena + s->idx[i + ES_AHEAD].off, 0);
        const unsigned char *rec = s->arena + s->idx[i].off, *q = rec + 8;
        uint64_t body = 0;
        (void)varint_get(&q, q + 10, &body); /* written by extsort_add */
        rc = put(s, rec, (size_t)(q - rec) + (size_t)body);
    }
    if (rc == PT_OK) rc = write_block(s, s->wbuf, s->wlen);
    s->wlen = 0;
    if (rc == PT_OK && fflush(s->f) != 0) rc = io_error(s, "write failed (folder full?)", errno);
    if (rc < 0) {
        s->err = rc; /* the file is in an unknown state */
        return rc;
    }
    s->runs[s->nruns++] = (struct es_run){start, s->file_len};
    s->arena_len = 0;
    s->nidx = 0;
    if (s->arena_cap > s->budget) { /* grown for one huge record: give it back */
        pt_free(s->arena);
        s->arena = NULL;
        s->arena_cap = 0;
    }
    return PT_OK;
}

/* ---- adding ---- */

int extsort_add(struct extsort *s, int64_t key, long line, char *const *fields, const size_t *lens,
                size_t nfields)
{
    if (s->err) return stopped(s);
    if (s->finished) return pt_error(PT_EINVAL, "extsort_add: called after extsort_finish");
    if (nfields && (!fields || !lens)) return pt_error(PT_EINVAL, "extsort_add: no fields given");
    uint64_t zline = zigzag((int64_t)line), body = varint_len(zline) + varint_len(nfields);
    for (size_t i = 0; i < nfields; i++) body += varint_len(lens[i]) + (uint64_t)lens[i] + 1;
    if (body > SIZE_MAX / 2) return pt_error(PT_EINVAL, "extsort_add: record too large");
    size_t size = 8 + varint_len(body) + (size_t)body;

    int rc;
    if (s->nidx > 0 && s->arena_len + size + (s->nidx + 1) * ES_IDX_COST > s->budget &&
        (rc = spill(s)) < 0)
        return rc;

    /* room first, so that a failure leaves the sorter as it was */
    if (nfields > s->fcap) {
        size_t cap = s->fcap;
        while (cap < nfields) cap *= 2;
        char **f = pt_realloc(s->fields, cap * sizeof *f);
        if (!f) return pt_error(PT_ENOMEM, "out of memory");
        s->fields = f;
        size_t *l = pt_realloc(s->lens, cap * sizeof *l);
        if (!l) return pt_error(PT_ENOMEM, "out of memory");
        s->lens = l;
        s->fcap = cap;
    }
    if (s->arena_len + size > s->arena_cap) {
        size_t cap = s->arena_cap ? 2 * s->arena_cap : ES_ARENA_MIN;
        if (cap > s->budget) cap = s->budget;
        if (cap < s->arena_len + size) cap = s->arena_len + size;
        unsigned char *a = pt_realloc(s->arena, cap);
        if (!a) return pt_error(PT_ENOMEM, "out of memory holding records to sort");
        s->arena = a;
        s->arena_cap = cap;
    }
    if (s->nidx == s->idx_cap) {
        size_t cap = s->idx_cap ? 2 * s->idx_cap : ES_IDX_MIN;
        if (cap > s->budget / ES_IDX_COST + 1) cap = s->budget / ES_IDX_COST + 1;
        if (cap <= s->nidx) cap = s->nidx + 1;
        struct es_idx *x = pt_realloc(s->idx, cap * sizeof *x);
        if (!x) return pt_error(PT_ENOMEM, "out of memory holding records to sort");
        s->idx = x;
        s->idx_cap = cap;
    }

    unsigned char *rec = s->arena + s->arena_len, *d = rec + 8;
    memcpy(rec, &key, 8);
    d = varint_put(d, body);
    d = varint_put(d, zline);
    d = varint_put(d, nfields);
    for (size_t i = 0; i < nfields; i++) d = varint_put(d, lens[i]);
    for (size_t i = 0; i < nfields; i++) {
        size_t l = lens[i];
        if (l) memcpy(d, fields[i], l);
        d[l] = 0;
        d += l + 1;
    }
    s->idx[s->nidx].key = (uint64_t)key ^ ((uint64_t)1 << 63);
    s->idx[s->nidx].off = s->arena_len;
    s->nidx++;
    s->arena_len += size;
    s->count++;
    return PT_OK;
}

/* ---- merging ---- */

/* Makes buf[p, p + need) valid (need <= bytes left in the run), reading as
 * much of the run as the buffer holds. */
static int src_fill(struct extsort *s, struct es_src *r, size_t need)
{
    size_t keep = r->e - r->p;
    memmove(r->buf, r->buf + r->p, keep);
    r->p = 0;
    r->e = keep;
    if (need > r->cap) {
        size_t cap = (need + ES_RBUF_MIN - 1) / ES_RBUF_MIN * ES_RBUF_MIN;
        unsigned char *b = pt_realloc(r->buf, cap);
        if (!b) return pt_error(PT_ENOMEM, "out of memory reading back a record of %zu bytes", need);
        r->buf = b;
        r->cap = cap;
    }
    uint64_t want = r->cap - r->e;
    if (want > r->end - r->off) want = r->end - r->off;
    while (want > 0) {
        ssize_t got = pread(s->fd, r->buf + r->e, (size_t)want, (off_t)r->off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return io_error(s, "read failed", errno);
        if (got == 0) /* short read: the file is shorter than what was written */
            return pt_error_at(PT_EIO, spill_name(s), 0,
                               "spill file ends at byte %llu of %llu (truncated while in use?)",
                               (unsigned long long)r->off, (unsigned long long)s->file_len);
        r->e += (size_t)got;
        r->off += (uint64_t)got;
        want -= (uint64_t)got;
    }
    return r->e >= need ? PT_OK : damaged(s);
}

/* Moves r to its next record. Returns 1, 0 at the end of the run, or an error. */
static int src_next(struct extsort *s, struct es_src *r)
{
    if (r->mem) {
        r->rec = NULL;
        if (r->pos >= s->nidx) return 0;
        if (r->pos + ES_AHEAD < s->nidx) PT_PREFETCH(s->arena + s->idx[r->pos + ES_AHEAD].off, 0);
        r->rec = s->arena + s->idx[r->pos++].off;
        memcpy(&r->key, r->rec, sizeof r->key);
        return 1;
    }
    if (r->rec) r->p += r->size;
    r->rec = NULL;
    uint64_t left = (r->e - r->p) + (r->end - r->off);
    if (left == 0) return 0;
    size_t head = left < ES_HEAD_MAX ? (size_t)left : ES_HEAD_MAX;
    int rc;
    if (r->e - r->p < head && (rc = src_fill(s, r, head)) < 0) return rc;
    const unsigned char *rec = r->buf + r->p, *q = rec + 8;
    uint64_t body;
    if (head < 9 || !varint_get(&q, rec + head, &body) || body > left - (uint64_t)(q - rec))
        return damaged(s);
    size_t size = (size_t)(q - rec) + (size_t)body;
    if (r->e - r->p < size && (rc = src_fill(s, r, size)) < 0) return rc;
    r->rec = r->buf + r->p;
    r->size = size;
    memcpy(&r->key, r->rec, 8);
    return 1;
}

static int src_less(const struct extsort *s, int a, int b)
{
    int64_t ka = s->src[a].key, kb = s->src[b].key;
    return ka < kb || (ka == kb && a < b);
}

static void heap_down(struct extsort *s, int i)
{
    int *h = s->heap, n = s->nheap;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && src_less(s, h[c + 1], h[c])) c++;
        if (!src_less(s, h[c], h[i])) break;
        int t = h[c];
        h[c] = h[i];
        h[i] = t;
        i = c;
    }
}

int extsort_finish(struct extsort *s)
{
    if (s->err) return stopped(s);
    if (s->finished) return pt_error(PT_EINVAL, "extsort_finish: called twice");
    s->finished = 1;
    int rc = sort_mem(s);
    pt_free(s->tmp);
    s->tmp = NULL;
    s->tmp_cap = 0;
    pt_free(s->wbuf);
    s->wbuf = NULL;
    int n = s->nruns + 1; /* the in-memory run is last: it holds the latest records */
    if (rc == PT_OK) {
        s->src = pt_calloc((size_t)n, sizeof *s->src);
        s->heap = pt_malloc((size_t)n * sizeof *s->heap);
        if (!s->src || !s->heap) rc = pt_error(PT_ENOMEM, "out of memory");
    }
    if (rc == PT_OK) {
        s->nsrc = n;
        size_t bufsize = s->nruns ? s->budget / (size_t)s->nruns : 0;
        if (bufsize < ES_RBUF_MIN) bufsize = ES_RBUF_MIN;
        if (bufsize > ES_RBUF_MAX) bufsize = ES_RBUF_MAX;
        for (int i = 0; i < s->nruns && rc == PT_OK; i++) {
            struct es_src *r = &s->src[i];
            r->off = s->runs[i].start;
            r->end = s->runs[i].end;
            r->buf = pt_malloc(bufsize);
            if (!r->buf) rc = pt_error(PT_ENOMEM, "out of memory");
            r->cap = bufsize;
        }
        s->src[n - 1].mem = 1;
    }
    for (int i = 0; i < n && rc == PT_OK; i++) {
        rc = src_next(s, &s->src[i]);
        if (rc == 1) s->heap[s->nheap++] = i;
        if (rc > 0) rc = PT_OK;
    }
    if (rc < 0) {
        s->err = rc;
        return rc;
    }
    for (int i = s->nheap / 2 - 1; i >= 0; i--) heap_down(s, i);
    return PT_OK;
}

/* Splits a record into s->fields and s->lens, checking it stays inside its
 * body (records from the file may be damaged). */
static int decode(struct extsort *s, unsigned char *rec, size_t *nfields, long *line, int64_t *key)
{
    const unsigned char *q = rec + 8, *end;
    uint64_t body = 0, zline, nf;
    (void)varint_get(&q, q + 10, &body); /* checked by src_next */
    end = q + body;
    if (!varint_get(&q, end, &zline) || !varint_get(&q, end, &nf) || nf > s->fcap) return damaged(s);
    for (uint64_t i = 0; i < nf; i++) {
        uint64_t l;
        if (!varint_get(&q, end, &l)) return damaged(s);
        s->lens[i] = (size_t)l;
    }
    unsigned char *d = rec + (q - rec);
    for (uint64_t i = 0; i < nf; i++) {
        size_t l = s->lens[i];
        if ((size_t)(end - d) <= l || d[l] != 0) return damaged(s);
        s->fields[i] = (char *)d;
        d += l + 1;
    }
    if (d != end) return damaged(s);
    *nfields = (size_t)nf;
    if (line) *line = (long)unzigzag(zline);
    if (key) memcpy(key, rec, 8);
    return PT_OK;
}

int extsort_next(struct extsort *s, size_t *nfields, char ***fields, size_t **lens, long *line,
                 int64_t *key)
{
    if (s->err) return stopped(s);
    if (!s->finished) return pt_error(PT_EINVAL, "extsort_next: called before extsort_finish");
    if (s->last >= 0) { /* advance the run that gave the last record: it is at the top */
        int rc = src_next(s, &s->src[s->last]);
        s->last = -1;
        if (rc < 0) {
            s->err = rc;
            return rc;
        }
        if (rc == 0) s->heap[0] = s->heap[--s->nheap];
        heap_down(s, 0);
    }
    if (s->nheap == 0) return 0;
    int top = s->heap[0];
    s->last = top;
    int rc = decode(s, s->src[top].rec, nfields, line, key);
    if (rc < 0) {
        s->err = rc;
        return rc;
    }
    *fields = s->fields;
    *lens = s->lens;
    return 1;
}

int64_t extsort_count(const struct extsort *s) { return s->count; }

int extsort_runs(const struct extsort *s) { return s->nruns; }

void extsort_free(struct extsort *s)
{
    if (!s) return;
    /* only read from now on, and every write was flushed and checked: a
     * failing close loses nothing */
    if (s->f) (void)fclose(s->f);
    if (s->path && s->linked) (void)unlink(s->path);
    for (int i = 0; i < s->nsrc; i++) pt_free(s->src[i].buf);
    pt_free(s->src);
    pt_free(s->heap);
    pt_free(s->runs);
    pt_free(s->wbuf);
    pt_free(s->path);
    pt_free(s->arena);
    pt_free(s->idx);
    pt_free(s->tmp);
    pt_free(s->fields);
    pt_free(s->lens);
    pt_free(s->tmpdir);
    pt_free(s);
}
