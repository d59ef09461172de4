/* build.c: event log → sample tables; see build.h for the idea.
 *
 * Dims: U users, I items, K event types, W user-count windows, L labels.
 *
 * Time order: events are handled in groups of one timestamp. For a group,
 * (1) samples whose longest label window has passed are written out, (2)
 * each event in file order labels the waiting samples of its (user, item)
 * pair and, when it is an exposure, makes a sample from the state, (3) only
 * then the group's events enter the state. So features see strictly earlier
 * events, and a label event may share the exposure's second when it comes
 * after it in the log.
 *
 * Samples are written to train.csv's temp file in time order; the split is
 * then two byte offsets in it: the tail is copied to valid.csv and test.csv
 * and train's temp file is cut at the first offset. */
#define _GNU_SOURCE /* stpcpy, fseeko, ftello, st_mtim, sync_file_range */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/build.h"
#include "data/csv.h"
#include "data/extsort.h"
#include "data/fmt.h"
#include "data/timeparse.h"
#include "data/vocab.h"
#include "util/util.h"

#define NONE INT64_MIN
#define BAD_KEEP 5           /* bad-row messages kept for the report */
#define POP_RING (1 << 20)   /* recent event items the popularity sampler draws from */

/* ---- a u64 → value map, open addressing (pairs (user, item), (user, category)) ---- */

struct pent {
    uint64_t key;            /* UINT64_MAX: empty */
    uint32_t val;            /* (user, item): newest waiting sample's index mod 2^32
                                (UINT32_MAX none); (user, category): events */
    int32_t bucket;          /* (user, item): day or session of the last sample, -1 none */
};
/* A (user, item) entry exists once the user has had an event on the item,
 * which is what negative sampling asks. */

struct pmap {
    struct pent *e;
    size_t cap, n;           /* cap a power of two */
    /* when set, entries it calls dead are dropped when the table fills,
     * which keeps it from growing with the length of the log */
    int (*live)(void *ctx, const struct pent *e);
    void *ctx;
};

/* splitmix64's finaliser: both halves of a (user, item) key reach every slot bit */
static size_t pmap_slot(uint64_t key, size_t cap)
{
    key ^= key >> 30;
    key *= 0xBF58476D1CE4E5B9ull;
    key ^= key >> 27;
    key *= 0x94D049BB133111EBull;
    key ^= key >> 31;
    return (size_t)key & (cap - 1);
}

static int pmap_grow(struct pmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024, n = m->n;
    if (m->live) {
        n = 0;
        for (size_t i = 0; i < m->cap; i++) n += m->e[i].key != UINT64_MAX && m->live(m->ctx, &m->e[i]);
        /* rebuilt at its size without the dead when they were most of it;
         * otherwise doubled, so the sweeps stay rare */
        if (m->cap && n * 4 <= m->cap) cap = m->cap;
    }
    struct pent *e = pt_malloc(cap * sizeof *e);
    if (!e) return pt_error(PT_ENOMEM, "out of memory");
    for (size_t i = 0; i < cap; i++) e[i].key = UINT64_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->e[i].key == UINT64_MAX || (m->live && !m->live(m->ctx, &m->e[i]))) continue;
        size_t s = pmap_slot(m->e[i].key, cap);
        while (e[s].key != UINT64_MAX) s = (s + 1) & (cap - 1);
        e[s] = m->e[i];
    }
    pt_free(m->e);
    m->e = e;
    m->cap = cap;
    m->n = n;
    return PT_OK;
}

static struct pent *pmap_find(const struct pmap *m, uint64_t key)
{
    if (!m->cap) return NULL;
    for (size_t s = pmap_slot(key, m->cap);; s = (s + 1) & (m->cap - 1)) {
        if (m->e[s].key == key) return &m->e[s];
        if (m->e[s].key == UINT64_MAX) return NULL;
    }
}

/* The entry for key, added (val UINT32_MAX, bucket -1) when absent; NULL when out of memory. */
static struct pent *pmap_get(struct pmap *m, uint64_t key)
{
    if ((m->n + 1) * 4 > m->cap * 3 && pmap_grow(m)) return NULL;
    size_t s = pmap_slot(key, m->cap);
    while (m->e[s].key != key) {
        if (m->e[s].key == UINT64_MAX) {
            m->e[s] = (struct pent){key, UINT32_MAX, -1};
            m->n++;
            break;
        }
        s = (s + 1) & (m->cap - 1);
    }
    return &m->e[s];
}

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

/* ---- state ---- */

/* Ids are written into every row and ten times over in sequences; a copy
 * of a short id beside its dense index saves the two cache misses of
 * looking it up in the vocabulary's arena. */
struct name16 {
    char s[15];
    uint8_t n;               /* length, or 255: long or needs CSV quoting, use the vocabulary */
};

static void name_set(struct name16 *nm, const char *s, size_t n)
{
    int plain = n < 15 && !memchr(s, ',', n) && !memchr(s, '"', n) && !memchr(s, '\n', n) && !memchr(s, '\r', n);
    memset(nm, 0, sizeof *nm);
    if (plain) memcpy(nm->s, s, n);
    nm->n = plain ? (uint8_t)n : 255;
}

struct hist {                /* one past event of a user */
    int32_t dt;              /* seconds since the log's first event */
    int32_t item, cat, type;
};

#define RING_MIN 64                  /* bytes: the smallest ring, 4 events */
#define RING_MAX 4096                /* the biggest from a slab: a page */
#define RING_CLASSES 7               /* 64 B .. 4 KiB */
#define RING_SLAB ((size_t)4 << 20)  /* a slab: huge-page aligned (pt_malloc) */
struct rings {
    void *free[RING_CLASSES];        /* freed rings of each size, linked through their first bytes */
    char *next[RING_CLASSES];        /* the next unused ring of each size in its slab */
    size_t left[RING_CLASSES];       /* bytes after it */
    char **slabs;
    size_t nslabs, slabcap;
};

struct user {
    struct hist *h;          /* ring of the last events, hcap a power of two */
    int32_t hcap, hn;
    int64_t htot;            /* events ever pushed; ring slot of event a is a & (hcap-1) */
    int64_t nev;             /* events, all time */
    int64_t last_t, last_buy_t, first_s, last_s; /* last event, purchase; first and last sample */
    uint64_t sess_key;
    int32_t sess, join;      /* session number; row in the users table (-1 none, -2 not looked up) */
    struct name16 name;
    int64_t tail[];          /* [F] oldest history event in each finite window; then user_cnt's counts */
};

struct item {
    int64_t first_s, last_s; /* first and last sample */
    int32_t cat, join;       /* last-known category (-1); items table row */
    char *attrs;             /* last-known attribute fields, pre-formatted ",a,b" */
    int32_t cnt[];           /* [K] events by type */
};

struct pend {                /* a sample waiting for its labels */
    int64_t t;
    uint64_t off;            /* file offset of its row */
    uint64_t lab;            /* label bits set so far */
    uint64_t patched;        /* those already written into the row */
    uint32_t plen, len;      /* its row; with the negatives' rows after it */
    uint32_t prev;           /* older waiting sample of the pair (index mod 2^32) */
    uint32_t nneg;           /* negatives' rows */
    int32_t u, i;
    int64_t prev_t;          /* the older sample's time, or a later one: the label walk
                              * stops here, without the cache miss of loading it */
};

struct minute {              /* samples of one minute, for the split */
    int64_t m, rows;
    uint64_t off;            /* file offset of its first row */
};

struct ev {                  /* an event of the current timestamp group */
    int32_t u, i, cat, type;
    uint64_t sess;
    uint32_t attr_off, attr_len; /* in gtext */
};

struct join_table {          /* items: or users: rows by id */
    struct vocab ids;
    char **rows;             /* pre-formatted ",a,b" per id */
    int n;
};

struct build {
    const struct samples_cfg *sc;
    const pt_build_opts *o;
    int K, W, L, nfin;       /* types, windows, labels, finite windows */
    int64_t max_window;
    /* columns of the events file */
    int c_user, c_item, c_time, c_type, c_cat, c_sess, *c_attr, ncols;
    int every_type;          /* the type of every line without a type column */
    uint64_t label_types;    /* bit k: type k labels some task */
    struct vocab users_v, items_v, cats_v;
    struct name16 *cnames;
    struct name16 *inames;   /* items' names apart from their blocks: a sequence prints
                              * ten of them, and these lines are four times denser */
    size_t incap;
    struct name16 *tnames;   /* [K] event types, for the sequences */
    size_t cncap;
    char *users, *items;         /* blocks of struct user, struct item and their arrays */
    size_t ustride, istride;
    int32_t ucap, icap;
    size_t item_maxlen, cat_maxlen, type_maxlen; /* longest id strings, for row_bound */
    int64_t *gcnt;               /* [K] */
    struct pmap pairs, ucats;
    struct rings rings;
    struct join_table jitems, jusers;
    /* the current group */
    int64_t gt;
    struct ev *g;
    int gn, gcap;
    char *gtext;
    size_t gtlen, gtcap;
    int32_t items_applied;       /* items with an event in the state (negatives draw from them);
                                  * ids follow first appearance, so these are ids below it */
    /* waiting samples */
    struct pend *p;              /* a ring: sample k at p[k & (pcap - 1)], pcap a power of two */
    int64_t phead, ptail;        /* absolute indexes */
    size_t pcap;
    /* negatives */
    struct rng rng;
    int32_t *pop;
    int64_t npop;
    /* output */
    int fd;
    char *obuf;
    size_t olen;
    uint64_t oflushed;           /* file offset of obuf[0] */
    uint64_t end;                /* file offset past the last row */
    uint64_t wb_off, wb_dropped; /* out_writeback: sent to the disk up to; dropped from memory up to */
    char *map;                   /* patch_old's window of the file */
    uint64_t map_off;
    size_t map_len;
    int64_t t0;                  /* the first event's time */
    struct minute *mins;         /* the minutes that have samples, in time order */
    size_t nmins, mincap;
    uint64_t cut_off[2];         /* offsets of valid_from / test_from, when given */
    int64_t cut_n[2];
    int cut_seen[2];
    char *row;                   /* one formatted row */
    size_t rowcap;
    /* the time fields of second tf_t, formatted once for all its rows */
    int64_t tf_t;
    char tf_ts[24], tf_hw[16];
    size_t tf_tslen, tf_hwlen;
    /* counts */
    int64_t lines, events, bad, missing, exposures, dups, negs, neg_short;
    int64_t written, dropped, marked, last_t;
    int64_t *pos;                /* [L] positives written */
    char *bad_msg[BAD_KEEP];
    int nbad_msg;
    int sorted;                  /* the input was in time order */
    int runs;                    /* sort runs spilled */
    int keep_open;               /* online: the end of the input is not the end of the log */
};

/* ---- small helpers ---- */

static struct pend *pend_at(const struct build *b, int64_t k) { return &b->p[(size_t)k & (b->pcap - 1)]; }

/* A user's or item's whole state is one block of b->ustride (istride)
 * bytes, a multiple of a cache line: what an event reads and writes of it
 * is a few neighbouring lines, not one in each of five arrays. */
static struct user *user_at(const struct build *b, int32_t u) { return (struct user *)(b->users + (size_t)u * b->ustride); }
static struct item *item_at(const struct build *b, int32_t i) { return (struct item *)(b->items + (size_t)i * b->istride); }

/* The user's event counts by type: [K] all time, then [F*K] in the finite windows. */
static int32_t *user_cnt(const struct build *b, struct user *x) { return (int32_t *)&x->tail[b->nfin]; }

/* Block sizes: a whole number of cache lines (big arrays come line aligned). */
static void block_sizes(struct build *b)
{
    size_t K = (size_t)b->K, F = (size_t)b->nfin;
    b->ustride = (sizeof(struct user) + F * sizeof(int64_t) + (1 + F) * K * sizeof(int32_t) + 63) & ~(size_t)63;
    b->istride = (sizeof(struct item) + K * sizeof(int32_t) + 63) & ~(size_t)63;
}

/* Appends s as one CSV field (quoted when it holds a delimiter, quote or line break). */
static char *put_field(char *p, const char *s, size_t n)
{
    if (!memchr(s, ',', n) && !memchr(s, '"', n) && !memchr(s, '\n', n) && !memchr(s, '\r', n)) {
        memcpy(p, s, n);
        return p + n;
    }
    *p++ = '"';
    for (size_t k = 0; k < n; k++) {
        if (s[k] == '"') *p++ = '"';
        *p++ = s[k];
    }
    *p++ = '"';
    return p;
}

static size_t field_room(size_t n) { return 2 * n + 3; }

static int find_col(const char *const *names, int n, const char *want)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], want)) return i;
    return -1;
}

/* ---- joined tables ---- */

static int join_load(struct join_table *j, const struct samples_join *jc, const char *what)
{
    struct csv_opts co = {.delim = jc->t.delim};
    struct csv_reader *r = NULL;
    size_t nf, *lens;
    char **f;
    int rc = csv_reader_open(&r, jc->t.path, &co), *cols = NULL, key = -1, ncols = 0, cap = 0;
    char **names = jc->t.columns, **hdr = NULL;
    vocab_init(&j->ids);
    if (rc) return rc;
    if (jc->t.header) {
        if ((rc = csv_reader_next(r, &nf, &f, &lens)) <= 0) {
            rc = rc < 0 ? rc : pt_error_at(PT_EPARSE, jc->t.path, 1, "empty file: no header");
            goto done;
        }
        if (!(hdr = pt_calloc(nf, sizeof *hdr))) goto oom;
        ncols = (int)nf; /* before the copies, so a failed one frees those made */
        for (size_t k = 0; k < nf; k++)
            if (!(hdr[k] = pt_strdup(f[k]))) goto oom;
        names = hdr;
    } else {
        ncols = jc->t.ncolumns;
    }
    if ((key = find_col((const char *const *)names, ncols, jc->key)) < 0) {
        rc = pt_error_at(PT_ECONFIG, jc->t.path, 1, "%s table has no column '%s' (its key)", what, jc->key);
        goto done;
    }
    if (!(cols = pt_malloc((size_t)jc->nfields * sizeof *cols))) goto oom;
    for (int k = 0; k < jc->nfields; k++)
        if ((cols[k] = find_col((const char *const *)names, ncols, jc->fields[k])) < 0) {
            rc = pt_error_at(PT_ECONFIG, jc->t.path, 1, "%s table has no column '%s'", what, jc->fields[k]);
            goto done;
        }
    while ((rc = csv_reader_next(r, &nf, &f, &lens)) == 1) {
        if ((int)nf != ncols) {
            rc = pt_error_at(PT_EPARSE, jc->t.path, csv_reader_line(r), "%zu fields, the header has %d", nf, ncols);
            goto done;
        }
        int32_t id;
        int32_t before = j->ids.n;
        if ((rc = vocab_add(&j->ids, f[key], lens[key], &id))) goto done;
        if (id < before) {
            rc = pt_error_at(PT_EPARSE, jc->t.path, csv_reader_line(r), "%s id '%s' is given twice", what, f[key]);
            goto done;
        }
        size_t room = 1;
        for (int k = 0; k < jc->nfields; k++) room += 1 + field_room(lens[cols[k]]);
        char *row = pt_malloc(room), *p = row;
        if (!row) goto oom;
        for (int k = 0; k < jc->nfields; k++) *p++ = ',', p = put_field(p, f[cols[k]], lens[cols[k]]);
        *p = 0;
        if (j->n == cap) {
            int nc = cap ? cap * 2 : 256;
            char **rows = pt_realloc(j->rows, (size_t)nc * sizeof *rows);
            if (!rows) {
                pt_free(row);
                goto oom;
            }
            j->rows = rows;
            cap = nc;
        }
        j->rows[j->n++] = row;
    }
    goto done;
oom:
    rc = pt_error(PT_ENOMEM, "out of memory");
done:
    if (hdr)
        for (int k = 0; k < ncols; k++) pt_free(hdr[k]);
    pt_free(hdr);
    pt_free(cols);
    csv_reader_close(r);
    return rc < 0 ? rc : PT_OK;
}

static void join_free(struct join_table *j)
{
    for (int k = 0; k < j->n; k++) pt_free(j->rows[k]);
    pt_free(j->rows);
    vocab_free(&j->ids);
}

/* ---- users and items ---- */

/* Doubles an array of *cap blocks of stride bytes (from 4096), the new ones
 * zeroed. PT_ENOMEM leaves it as it was. */
static int grow_blocks(char **p, int32_t *cap, size_t stride)
{
    int32_t nc = *cap ? *cap * 2 : 4096;
    char *q = pt_realloc(*p, (size_t)nc * stride);
    if (!q) return pt_error(PT_ENOMEM, "out of memory");
    memset(q + (size_t)*cap * stride, 0, (size_t)(nc - *cap) * stride);
    *p = q;
    *cap = nc;
    return PT_OK;
}

/* The room for a new id is made before the vocabulary takes it, so that
 * no id lacks its block or name even after an out-of-memory error (the
 * online builder goes on after one). */
static int user_add(struct build *b, const char *s, size_t n, uint64_t h, int32_t *u)
{
    if (b->users_v.n >= b->ucap) {
        int32_t old = b->ucap;
        if (grow_blocks(&b->users, &b->ucap, b->ustride)) return PT_ENOMEM;
        for (int32_t k = old; k < b->ucap; k++) {
            struct user *x = user_at(b, k);
            x->last_t = x->last_buy_t = x->first_s = x->last_s = NONE;
            x->join = -2;
        }
    }
    int32_t before = b->users_v.n;
    int rc = vocab_add_h(&b->users_v, s, n, h, u);
    if (rc || *u < before) return rc;
    name_set(&user_at(b, *u)->name, s, n);
    return PT_OK;
}

static int item_add(struct build *b, const char *s, size_t n, uint64_t h, int32_t *i)
{
    if (b->items_v.n >= b->icap) {
        int32_t old = b->icap;
        if (grow_blocks(&b->items, &b->icap, b->istride)) return PT_ENOMEM;
        for (int32_t k = old; k < b->icap; k++) {
            struct item *it = item_at(b, k);
            it->first_s = it->last_s = NONE;
            it->cat = -1;
            it->join = -2;
        }
    }
    if (pt_grow((void **)&b->inames, &b->incap, (size_t)b->items_v.n + 1, sizeof *b->inames)) return PT_ENOMEM;
    int32_t before = b->items_v.n;
    int rc = vocab_add_h(&b->items_v, s, n, h, i);
    if (rc || *i < before) return rc;
    name_set(&b->inames[*i], s, n);
    return PT_OK;
}

static const char *join_row(const struct join_table *j, const struct vocab *v, int32_t id, int32_t *slot)
{
    if (!j->n) return "";
    if (*slot == -2) {
        const char *s = vocab_str(v, id);
        *slot = vocab_find(&j->ids, s, strlen(s));
    }
    return *slot >= 0 ? j->rows[*slot] : NULL;
}

/* History rings of up to a page come from slabs, each at a multiple of its
 * size: the newest entries and the windows' oldest, which an event reads,
 * then share one page, and so one TLB entry (on this kind of virtual
 * machine a scattered access costs most in its page walk). malloc's rings
 * straddled pages; memalign was slower than both. Bigger rings (history
 * over 256) come from pt_malloc. */
static int ring_class(size_t bytes)
{
    int c = 0;
    while ((size_t)RING_MIN << c < bytes) c++;
    return c;
}

static struct hist *ring_alloc(struct rings *r, size_t bytes)
{
    if (bytes > RING_MAX) return pt_malloc(bytes);
    int c = ring_class(bytes);
    size_t size = (size_t)RING_MIN << c;
    if (r->free[c]) {
        void *p = r->free[c];
        memcpy(&r->free[c], p, sizeof(void *));
        return p;
    }
    if (r->left[c] < size) {
        if (pt_grow((void **)&r->slabs, &r->slabcap, r->nslabs + 1, sizeof *r->slabs)) return NULL;
        if (!(r->next[c] = pt_malloc(RING_SLAB))) return NULL;
        r->slabs[r->nslabs++] = r->next[c];
        r->left[c] = RING_SLAB;
    }
    void *p = r->next[c];
    r->next[c] += size;
    r->left[c] -= size;
    return p;
}

static void ring_free(struct rings *r, struct hist *h, size_t bytes)
{
    if (!h) return;
    if (bytes > RING_MAX) {
        pt_free(h);
        return;
    }
    int c = ring_class(bytes);
    memcpy(h, &r->free[c], sizeof(void *));
    r->free[c] = h;
}

static void rings_free(struct rings *r)
{
    for (size_t k = 0; k < r->nslabs; k++) pt_free(r->slabs[k]);
    pt_free(r->slabs);
    memset(r, 0, sizeof *r);
}

/* The user's history ring: push one event, evicting the oldest when full
 * (an evicted event leaves the finite windows that still count it). */
static int hist_push(struct build *b, struct user *x, const struct hist *e)
{
    int hist_max = b->sc->history;
    int32_t *wcnt = user_cnt(b, x) + b->K;
    if (x->hn == x->hcap && x->hcap < hist_max) {
        int32_t cap = x->hcap ? x->hcap * 2 : 4;
        while (cap < 4) cap *= 2;
        struct hist *h = ring_alloc(&b->rings, (size_t)cap * sizeof *h);
        if (!h) return pt_error(PT_ENOMEM, "out of memory");
        for (int64_t a = x->htot - x->hn; a < x->htot; a++) h[a & (cap - 1)] = x->h[a & (x->hcap - 1)];
        ring_free(&b->rings, x->h, (size_t)x->hcap * sizeof *h);
        x->h = h;
        x->hcap = cap;
    }
    if (x->hn == hist_max || x->hn == x->hcap) {
        int64_t old = x->htot - x->hn;
        const struct hist *oe = &x->h[old & (x->hcap - 1)];
        for (int w = 0; w < b->nfin; w++) {
            if (x->tail[w] <= old) {
                wcnt[w * b->K + oe->type]--;
                x->tail[w] = old + 1;
            }
        }
        x->hn--;
    }
    x->h[x->htot & (x->hcap - 1)] = *e;
    x->htot++;
    x->hn++;
    for (int w = 0; w < b->nfin; w++) wcnt[w * b->K + e->type]++;
    return PT_OK;
}

/* Moves the user's finite windows up to time t: events older than t - W leave. */
static void windows_advance(struct build *b, struct user *x, int64_t t)
{
    for (int w = 0, f = 0; w < b->W; w++) {
        int64_t len = b->sc->windows[w];
        if (!len) continue;
        int64_t *tail = &x->tail[f];
        int32_t *cnt = user_cnt(b, x) + (size_t)(1 + f) * b->K;
        while (*tail < x->htot) {
            const struct hist *e = &x->h[*tail & (x->hcap - 1)];
            if (b->t0 + e->dt >= t - len) break;
            cnt[e->type]--;
            (*tail)++;
        }
        f++;
    }
}

/* ---- the output file: written as samples are made, labels patched in place ---- */

/* 32 MiB of rows: about the last hours of a busy log, where most label events land */
#define OBUF (32u << 20)

/* Rows before the oldest waiting sample's are final. They are sent to the
 * disk in steps of WBSTEP (the build's fsync would write them anyway) and,
 * a step later, once written, dropped from the page cache. The kernel hands
 * the pages it takes back out again for the next rows: on a virtual machine
 * a page it has not used lately costs a host fault (about 2 s a GiB here,
 * more than formatting the rows). Errors of the writes surface at the fsync;
 * rows read back later (the split's copies) come from the disk. Not for the
 * online builder, whose scratch file never needs to reach the disk. */
#define WBSTEP (64u << 20)
static void out_writeback(struct build *b)
{
    uint64_t fin = b->phead < b->ptail ? pend_at(b, b->phead)->off : b->oflushed;
    if (fin > b->oflushed) fin = b->oflushed;
    fin &= ~(uint64_t)4095;
    if (b->keep_open || fin < b->wb_off + WBSTEP) return;
    (void)sync_file_range(b->fd, (off_t)b->wb_off, (off_t)(fin - b->wb_off), SYNC_FILE_RANGE_WRITE);
    if (b->wb_off > b->wb_dropped) {
        off_t at = (off_t)b->wb_dropped, n = (off_t)(b->wb_off - b->wb_dropped);
        (void)sync_file_range(b->fd, at, n, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
        (void)posix_fadvise(b->fd, at, n, POSIX_FADV_DONTNEED);
    }
    b->wb_dropped = b->wb_off;
    b->wb_off = fin;
}

static int out_flush(struct build *b)
{
    for (size_t done = 0; done < b->olen;) {
        ssize_t n = pwrite(b->fd, b->obuf + done, b->olen - done, (off_t)(b->oflushed + done));
        if (n <= 0) return pt_error(PT_EIO, "writing samples: %s", strerror(errno));
        done += (size_t)n;
    }
    b->oflushed += b->olen;
    b->olen = 0;
    out_writeback(b);
    return PT_OK;
}

static int out_put(struct build *b, const char *s, size_t n)
{
    if (b->olen + n > OBUF && out_flush(b)) return PT_EIO;
    if (n > OBUF) {
        for (size_t done = 0; done < n;) {
            ssize_t k = pwrite(b->fd, s + done, n - done, (off_t)(b->oflushed + done));
            if (k <= 0) return pt_error(PT_EIO, "writing samples: %s", strerror(errno));
            done += (size_t)k;
        }
        b->oflushed += n;
        return PT_OK;
    }
    memcpy(b->obuf + b->olen, s, n);
    b->olen += n;
    return PT_OK;
}

static uint64_t out_at(const struct build *b) { return b->oflushed + b->olen; }

/* Overwrites one byte already written at file offset off. */
static int out_patch(struct build *b, uint64_t off, char c)
{
    if (off >= b->oflushed) {
        b->obuf[off - b->oflushed] = c;
        return PT_OK;
    }
    return pwrite(b->fd, &c, 1, (off_t)off) == 1 ? PT_OK : pt_error(PT_EIO, "writing samples: %s", strerror(errno));
}

/* [out] *row: where a row of at most need bytes is formatted. In place at
 * the end of the output buffer (flushed first when it lacks the room), so
 * the row is not copied again; in b->row for a row longer than the buffer.
 * Then out_row takes it. */
static int out_room(struct build *b, size_t need, char **row)
{
    if (need > OBUF) {
        int rc = pt_grow((void **)&b->row, &b->rowcap, need, 1);
        *row = b->row;
        return rc;
    }
    if (b->olen + need > OBUF && out_flush(b)) return PT_EIO;
    *row = b->obuf + b->olen;
    return PT_OK;
}

static int out_row(struct build *b, const char *row, size_t n)
{
    if (row != b->obuf + b->olen) return out_put(b, row, n);
    b->olen += n;
    return PT_OK;
}

/* Writes id's name: as a CSV field (quoted when it must be) or raw (in a sequence). */
static char *put_name(char *p, const struct name16 *nm, const struct vocab *v, int32_t id, int field)
{
    if (nm->n != 255) {
        memcpy(p, nm->s, 16);
        return p + nm->n;
    }
    const char *s = vocab_str(v, id);
    if (field) return put_field(p, s, strlen(s));
    /* inside a '|'-separated sequence field, which is never quoted */
    for (; *s; s++) *p++ = strchr(",\"\r\n|", *s) ? '_' : *s;
    return p;
}

static size_t name_len(const struct name16 *nm, const struct vocab *v, int32_t id)
{
    return nm->n != 255 ? nm->n : strlen(vocab_str(v, id));
}

/* The row's time, and ",hour,weekday" in the local zone. */
static void time_fields(struct build *b, int64_t t)
{
    int64_t local = t + b->sc->tz, day = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    int64_t sod = local - day * 86400;
    b->tf_tslen = (size_t)(fmt_i64(b->tf_ts, t) - b->tf_ts);
    char *p = b->tf_hw;
    *p++ = ',', p = fmt_i64(p, sod / 3600);
    *p++ = ',', p = fmt_i64(p, ((day % 7) + 7 + 3) % 7); /* 0 Monday: 1970-01-01 was a Thursday */
    b->tf_hwlen = (size_t)(p - b->tf_hw);
    b->tf_t = t;
}

/* The features of user u and item i at time t, written at row; returns
 * their end. cat: the item's category (-1 none); attrs: the
 * pre-formatted event attributes. Labels are not written. */
static char *features(struct build *b, char *row, int32_t u, int32_t i, int32_t cat, const char *attrs, size_t alen)
{
    const struct samples_cfg *sc = b->sc;
    struct user *x = user_at(b, u);
    struct item *it = item_at(b, i);
    int64_t t = b->gt;
    const int K = b->K;
    if (t != b->tf_t) time_fields(b, t);
    /* whole buffers: the row has room past its fields, and the next field overwrites the rest */
    memcpy(row, b->tf_ts, sizeof b->tf_ts);
    char *p = row + b->tf_tslen;
    *p++ = ',', p = put_name(p, &x->name, &b->users_v, u, 1);
    *p++ = ',', p = put_name(p, &b->inames[i], &b->items_v, i, 1);
    if (b->c_cat >= 0) {
        *p++ = ',';
        if (cat >= 0) p = put_name(p, &b->cnames[cat], &b->cats_v, cat, 1);
    }
    memcpy(p, attrs, alen), p += alen;
    if (b->jitems.n) {
        const char *r = join_row(&b->jitems, &b->items_v, i, &it->join);
        if (r) p = stpcpy(p, r);
        else for (int k = 0; k < sc->items.nfields; k++) *p++ = ',';
    }
    if (b->jusers.n) {
        const char *r = join_row(&b->jusers, &b->users_v, u, &x->join);
        if (r) p = stpcpy(p, r);
        else for (int k = 0; k < sc->users.nfields; k++) *p++ = ',';
    }
    memcpy(p, b->tf_hw, sizeof b->tf_hw);
    p += b->tf_hwlen;
    *p++ = ',';
    if (x->last_t != NONE) p = fmt_i64(p, t - x->last_t);
    if (sc->purchase_type >= 0) {
        *p++ = ',';
        if (x->last_buy_t != NONE) p = fmt_i64(p, t - x->last_buy_t);
    }
    windows_advance(b, x, t);
    const int32_t *ucnt = user_cnt(b, x);
    for (int w = 0, f = 0; w < b->W; w++) {
        const int32_t *cnt = sc->windows[w] ? &ucnt[(size_t)(1 + f++) * K] : ucnt;
        for (int k = 0; k < K; k++) *p++ = ',', p = fmt_i64(p, cnt[k]);
    }
    if (b->c_cat >= 0) {
        *p++ = ',';
        const struct pent *e = cat >= 0 && x->nev ? pmap_find(&b->ucats, pair_key(u, cat)) : NULL;
        p = fmt_f(p, e ? (double)e->val / (double)x->nev : 0.0);
    }
    const int32_t *ic = it->cnt;
    for (int k = 0; k < K; k++) *p++ = ',', p = fmt_i64(p, ic[k]);
    int ex = sc->exposure_type;
    for (int l = 0; l < b->L; l++) {
        int lt = sc->labels[l].type;
        double g = b->gcnt[ex] ? (double)b->gcnt[lt] / (double)b->gcnt[ex] : 0.0;
        double den = (double)ic[ex] + sc->prior;
        *p++ = ',', p = fmt_f(p, den > 0 ? ((double)ic[lt] + sc->prior * g) / den : g);
    }
    if (sc->seq_len) { /* items, categories, types, gaps: newest first, '|' between */
        int n = x->hn < sc->seq_len ? x->hn : sc->seq_len;
        const struct hist *h = x->h;
        const int64_t top = x->htot - 1, mask = x->hcap - 1;
        *p++ = ',';
        for (int k = 0; k < n; k++) {
            if (k) *p++ = '|';
            int32_t hi = h[(top - k) & mask].item;
            p = put_name(p, &b->inames[hi], &b->items_v, hi, 0);
        }
        if (b->c_cat >= 0) {
            *p++ = ',';
            for (int k = 0; k < n; k++) {
                const struct hist *e = &h[(top - k) & mask];
                if (k) *p++ = '|';
                if (e->cat >= 0) p = put_name(p, &b->cnames[e->cat], &b->cats_v, e->cat, 0);
            }
        }
        *p++ = ',';
        for (int k = 0; k < n; k++) {
            const struct name16 *tn = &b->tnames[h[(top - k) & mask].type];
            if (k) *p++ = '|';
            if (tn->n != 255) memcpy(p, tn->s, 16), p += tn->n;
            else p = stpcpy(p, sc->types[h[(top - k) & mask].type]);
        }
        *p++ = ',';
        for (int k = 0; k < n; k++) {
            if (k) *p++ = '|';
            p = fmt_i64(p, t - (b->t0 + h[(top - k) & mask].dt));
        }
    }
    return p;
}

/* An upper bound on one row's length, so out_room's room never overflows: ids and
 * categories are written quoted at worst, numbers take at most 32 bytes. */
static size_t row_bound(struct build *b, int32_t u, int32_t i, size_t alen)
{
    const struct samples_cfg *sc = b->sc;
    size_t n = 256 + alen + (size_t)(b->W * b->K + b->K + b->L + 8) * 33;
    struct user *x = user_at(b, u);
    struct item *it = item_at(b, i);
    n += field_room(name_len(&x->name, &b->users_v, u)) + field_room(name_len(&b->inames[i], &b->items_v, i)) + 32;
    n += field_room(b->cat_maxlen);
    const char *r = b->jitems.n ? join_row(&b->jitems, &b->items_v, i, &it->join) : NULL;
    n += (r ? strlen(r) : 0) + (size_t)sc->items.nfields;
    r = b->jusers.n ? join_row(&b->jusers, &b->users_v, u, &x->join) : NULL;
    n += (r ? strlen(r) : 0) + (size_t)sc->users.nfields;
    /* sequences: raw ids and categories unquoted, type names, gaps */
    n += (size_t)sc->seq_len * (b->item_maxlen + b->cat_maxlen + b->type_maxlen + 24 + 4 + 32);
    return n;
}

/* ---- samples ---- */

/* The ring doubles when full; its entries never move otherwise. */
static int pend_push(struct build *b, struct pend **out)
{
    if ((size_t)(b->ptail - b->phead) == b->pcap) {
        size_t cap = b->pcap ? 2 * b->pcap : 1024;
        struct pend *p = pt_malloc(cap * sizeof *p);
        if (!p) return pt_error(PT_ENOMEM, "out of memory");
        for (int64_t k = b->phead; k < b->ptail; k++) p[(size_t)k & (cap - 1)] = *pend_at(b, k);
        pt_free(b->p);
        b->p = p;
        b->pcap = cap;
    }
    *out = pend_at(b, b->ptail++);
    return PT_OK;
}

/* The waiting sample a pair entry points at, or NULL when it has left. */
static struct pend *pend_of(struct build *b, uint32_t v, int32_t u, int32_t i)
{
    if (v == UINT32_MAX || b->phead == b->ptail) return NULL;
    int64_t k = b->phead + (int64_t)(uint32_t)(v - (uint32_t)b->phead);
    if (k >= b->ptail) return NULL;
    struct pend *q = pend_at(b, k);
    return q->u == u && q->i == i ? q : NULL;
}

/* A (user, item) entry is needed while it may have waiting samples, and
 * always when negatives must avoid every item the user has touched, or
 * when granularity is by session (whose end is the user's to tell). Judged
 * from the entry alone, so the sweep that drops the others stays a
 * sequential pass: with granularity by event, bucket holds the time of the
 * pair's last sample (seconds since the first event); by day, its day. */
static int pair_live(void *ctx, const struct pent *e)
{
    const struct build *b = ctx;
    const struct samples_cfg *sc = b->sc;
    if (sc->neg_k || sc->gran == GRAN_SESSION) return 1;
    if (sc->gran == GRAN_DAY) return (int64_t)e->bucket * 86400 + 86400 + b->max_window >= b->gt + sc->tz;
    return (int64_t)e->bucket + b->max_window >= b->gt - b->t0;
}

/* Split bookkeeping, called in time order for `rows` rows at time t that
 * start at file offset off. */
static int split_note(struct build *b, int64_t t, int64_t rows, uint64_t off)
{
    const struct samples_cfg *sc = b->sc;
    int64_t from[2] = {sc->valid_from, sc->test_from};
    for (int k = 0; k < 2; k++)
        if (from[k] != NONE && !b->cut_seen[k] && t >= from[k]) {
            b->cut_seen[k] = 1;
            b->cut_off[k] = off;
            b->cut_n[k] = b->written;
        }
    int64_t m = t >= 0 ? t / 60 : -((-t + 59) / 60);
    if (!b->nmins || b->mins[b->nmins - 1].m != m) {
        if (pt_grow((void **)&b->mins, &b->mincap, b->nmins + 1, sizeof *b->mins)) return PT_ENOMEM;
        b->mins[b->nmins++] = (struct minute){m, 0, off};
    }
    b->mins[b->nmins - 1].rows += rows;
    b->written += rows;
    return PT_OK;
}

static void sample_seen(struct build *b, const struct pend *q)
{
    for (int l = 0; l < b->L; l++) b->pos[l] += q->lab >> l & 1;
}

/* Writes '1' at file offset at, in a row long written. Through a shared
 * mapping of the file, which moves forward in 64 MiB windows: a pwrite per
 * label would cost a system call each, and these offsets only grow. */
#define MAPWIN (64u << 20)
static int patch_old(struct build *b, uint64_t at)
{
    if (at >= b->oflushed) {
        b->obuf[at - b->oflushed] = '1';
        return PT_OK;
    }
    if (!b->map || at < b->map_off || at >= b->map_off + b->map_len) {
        if (b->map) munmap(b->map, b->map_len);
        b->map_off = at & ~(uint64_t)((2u << 20) - 1);
        b->map_len = b->oflushed - b->map_off < MAPWIN ? (size_t)(b->oflushed - b->map_off) : MAPWIN;
        b->map = mmap(NULL, b->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, (off_t)b->map_off);
        if (b->map == MAP_FAILED) {
            b->map = NULL;
            return out_patch(b, at, '1');
        }
    }
    b->map[at - b->map_off] = '1';
    return PT_OK;
}

static void unmap_old(struct build *b)
{
    if (b->map) munmap(b->map, b->map_len);
    b->map = NULL;
}

/* The oldest waiting sample's windows have all passed: its row gets the
 * labels the buffer no longer held, and is final. */
static int pend_finish(struct build *b)
{
    struct pend *q = pend_at(b, b->phead);
    int rc = PT_OK;
    for (uint64_t late = q->lab & ~q->patched; late && !rc; late &= late - 1)
        rc = patch_old(b, q->off + q->plen - 2 * (uint64_t)(b->L - __builtin_ctzll(late)));
    if (!rc) rc = split_note(b, q->t, 1 + q->nneg, q->off);
    sample_seen(b, q);
    b->phead++;
    return rc;
}

/* At the end of the log the waiting samples' rows are rewritten in place:
 * labels set, and a window that reaches past the last event makes the
 * label incomplete, so the sample is dropped or the label left empty. The
 * rewrite never gets ahead of the reading, since rows only shrink. */
static int finish_tail(struct build *b, uint64_t *end)
{
    const struct samples_cfg *sc = b->sc;
    unmap_old(b);
    int rc = out_flush(b);
    if (rc || b->phead == b->ptail) {
        *end = out_at(b);
        return rc;
    }
    uint64_t rd = pend_at(b, b->phead)->off, wr = rd, rbase = rd, wbase = wr;
    size_t rlen = 0, wlen = 0, cap = OBUF;
    char *rbuf = pt_malloc(cap), *wbuf = pt_malloc(cap);
    if (!rbuf || !wbuf) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    for (; b->phead < b->ptail && !rc; b->phead++) {
        struct pend *q = pend_at(b, b->phead);
        if (q->off + q->len > rbase + rlen) { /* refill from q->off */
            if (q->len > cap) {
                char *r2 = pt_realloc(rbuf, q->len), *w2 = r2 ? pt_realloc(wbuf, q->len + cap) : NULL;
                if (r2) rbuf = r2;
                if (!w2) {
                    rc = pt_error(PT_ENOMEM, "out of memory");
                    break;
                }
                wbuf = w2;
                cap = q->len;
            }
            rbase = q->off;
            uint64_t left = out_at(b) - rbase;
            rlen = left < cap ? (size_t)left : cap;
            if (pread(b->fd, rbuf, rlen, (off_t)rbase) != (ssize_t)rlen) {
                rc = pt_error(PT_EIO, "reading samples back: %s", strerror(errno));
                break;
            }
        }
        const char *row = rbuf + (q->off - rbase);
        int drop = 0;
        char lab[CONFIG_MAX_TASKS * 2 + 2], *p = lab;
        int marked = 0;
        for (int l = 0; l < b->L; l++) {
            int on = (int)(q->lab >> l & 1), incomplete = !on && q->t + sc->labels[l].window > b->last_t;
            *p++ = ',';
            if (incomplete && !sc->mark_incomplete) drop = 1;
            else if (incomplete) marked = 1;
            else *p++ = on ? '1' : '0';
        }
        b->marked += marked && !drop;
        *p++ = '\n';
        if (drop) {
            b->dropped += 1 + q->nneg;
            continue;
        }
        size_t keep = q->plen - 2 * (size_t)b->L - 1, ll = (size_t)(p - lab), n = keep + ll + (q->len - q->plen);
        if (wlen + n > cap) {
            if (pwrite(b->fd, wbuf, wlen, (off_t)wbase) != (ssize_t)wlen) {
                rc = pt_error(PT_EIO, "writing samples: %s", strerror(errno));
                break;
            }
            wbase += wlen;
            wlen = 0;
        }
        if ((rc = split_note(b, q->t, 1 + q->nneg, wr))) break;
        memcpy(wbuf + wlen, row, keep);
        memcpy(wbuf + wlen + keep, lab, ll);
        memcpy(wbuf + wlen + keep + ll, row + q->plen, q->len - q->plen);
        wlen += n;
        wr += n;
        sample_seen(b, q);
    }
    if (!rc && wlen && pwrite(b->fd, wbuf, wlen, (off_t)wbase) != (ssize_t)wlen)
        rc = pt_error(PT_EIO, "writing samples: %s", strerror(errno));
    *end = wr;
done:
    pt_free(rbuf);
    pt_free(wbuf);
    return rc;
}

/* k items for negatives: not i, not one the user has had an event on, known
 * before the group. Their rows follow the exposure's, labelled 0. */
static int negatives(struct build *b, const struct ev *e, struct pend *q)
{
    const struct samples_cfg *sc = b->sc;
    int32_t n = b->items_applied;
    for (int k = 0; k < sc->neg_k; k++) {
        int32_t j = -1;
        for (int tries = 0; n > 1 && tries < 20 && j < 0; tries++) {
            int64_t np = b->npop < POP_RING ? b->npop : POP_RING;
            int32_t c = sc->neg_popularity && np ? b->pop[rng_below(&b->rng, (uint64_t)np)]
                                                 : (int32_t)rng_below(&b->rng, (uint64_t)n);
            if (c != e->i && c < n && !pmap_find(&b->pairs, pair_key(e->u, c))) j = c;
        }
        if (j < 0) {
            b->neg_short++;
            continue;
        }
        static const char commas[] = ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,";
        const char *attrs = item_at(b, j)->attrs;
        /* drawn items have had an event, so they have attributes when any are
         * configured; empty fields otherwise (never past commas[]) */
        size_t alen = attrs ? strlen(attrs) : (size_t)sc->nattrs < sizeof commas - 1 ? (size_t)sc->nattrs : sizeof commas - 1;
        if (!attrs) attrs = commas;
        char *row;
        int rc = out_room(b, row_bound(b, e->u, j, alen) + 2 * (size_t)b->L + 8, &row);
        if (rc) return rc;
        char *p = features(b, row, e->u, j, item_at(b, j)->cat, attrs, alen);
        for (int l = 0; l <= b->L; l++) *p++ = ',', *p++ = '0'; /* the click column, then the labels */
        *p++ = '\n';
        if (out_row(b, row, (size_t)(p - row))) return PT_EIO;
        q->len += (uint32_t)(p - row);
        q->nneg++;
        b->negs++;
    }
    return PT_OK;
}

/* An exposure: a sample unless one was made for the pair in this day or session. */
static int expose(struct build *b, const struct ev *e)
{
    const struct samples_cfg *sc = b->sc;
    struct user *x = user_at(b, e->u);
    struct pent *pe = pmap_get(&b->pairs, pair_key(e->u, e->i));
    if (!pe) return pt_error(PT_ENOMEM, "out of memory");
    b->exposures++;
    /* by event, bucket holds the time of the pair's newest sample */
    int64_t prev_t = sc->gran == GRAN_EVENT && pe->bucket >= 0 ? b->t0 + pe->bucket : b->gt;
    if (sc->gran != GRAN_EVENT) {
        int32_t bucket;
        if (sc->gran == GRAN_DAY) {
            int64_t local = b->gt + sc->tz;
            bucket = (int32_t)(local >= 0 ? local / 86400 : -((-local + 86399) / 86400));
        } else {
            int fresh = b->c_sess >= 0 ? e->sess != x->sess_key || x->last_t == NONE
                                       : x->last_t == NONE || b->gt - x->last_t > sc->session_gap;
            bucket = x->sess + fresh;
        }
        if (pe->bucket == bucket) {
            b->dups++;
            return PT_OK;
        }
        pe->bucket = bucket;
    } else {
        pe->bucket = (int32_t)(b->gt - b->t0);
    }
    uint32_t prev = pe->val;
    pe->val = (uint32_t)b->ptail;
    struct pend *q = NULL;
    int rc = pend_push(b, &q);
    if (rc) return rc;
    q->off = out_at(b); /* before out_room, whose flush reads the oldest offset; a flush keeps it */
    const char *attrs = b->gtext + e->attr_off;
    char *row;
    if ((rc = out_room(b, row_bound(b, e->u, e->i, e->attr_len) + 2 * (size_t)b->L + 8, &row))) return rc;
    char *p = features(b, row, e->u, e->i, e->cat, attrs, e->attr_len);
    if (sc->neg_k) *p++ = ',', *p++ = '1';
    for (int l = 0; l < b->L; l++) *p++ = ',', *p++ = '0';
    *p++ = '\n';
    /* first and last exposure, for the cold-start counts of the split */
    if (x->first_s == NONE) x->first_s = b->gt;
    x->last_s = b->gt;
    struct item *it = item_at(b, e->i);
    if (it->first_s == NONE) it->first_s = b->gt;
    it->last_s = b->gt;
    q->t = b->gt;
    q->u = e->u;
    q->i = e->i;
    q->lab = q->patched = 0;
    q->nneg = 0;
    q->plen = q->len = (uint32_t)(p - row);
    q->prev = prev;
    q->prev_t = prev_t;
    if ((rc = out_row(b, row, q->plen))) return rc;
    return sc->neg_k ? negatives(b, e, q) : PT_OK;
}

/* A later event of the pair sets the labels of its waiting samples, and
 * of their rows still in the output buffer (most label events come within
 * hours); the others are written when the sample is finished. */
static int label(struct build *b, const struct ev *e)
{
    const struct samples_cfg *sc = b->sc;
    uint64_t mask = 0;
    int64_t reach = 0; /* the longest window of the labels this event sets */
    for (int l = 0; l < b->L; l++)
        if (sc->labels[l].type == e->type) {
            mask |= 1ull << l;
            if (sc->labels[l].window > reach) reach = sc->labels[l].window;
        }
    if (!mask) return PT_OK;
    const struct pent *pe = pmap_find(&b->pairs, pair_key(e->u, e->i));
    for (struct pend *q = pe ? pend_of(b, pe->val, e->u, e->i) : NULL; q;
         q = b->gt - q->prev_t <= reach ? pend_of(b, q->prev, e->u, e->i) : NULL) {
        int64_t d = b->gt - q->t;
        if (d > reach) break;
        for (int l = 0; l < b->L; l++) {
            if (!(mask >> l & 1) || d > sc->labels[l].window || q->lab >> l & 1) continue;
            q->lab |= 1ull << l;
            uint64_t at = q->off + q->plen - 2 * (uint64_t)(b->L - l);
            if (at >= b->oflushed) b->obuf[at - b->oflushed] = '1', q->patched |= 1ull << l;

        }
    }
    return PT_OK;
}

/* The group's events enter the state. */
static int apply(struct build *b, const struct ev *e)
{
    const struct samples_cfg *sc = b->sc;
    struct user *x = user_at(b, e->u);
    struct hist h = {(int32_t)(b->gt - b->t0), e->i, e->cat, e->type};
    int rc = hist_push(b, x, &h);
    if (rc) return rc;
    if (b->c_sess >= 0 ? e->sess != x->sess_key || x->last_t == NONE
                       : x->last_t == NONE || b->gt - x->last_t > sc->session_gap)
        x->sess++;
    x->sess_key = e->sess;
    x->last_t = b->gt;
    if (e->type == sc->purchase_type) x->last_buy_t = b->gt;
    x->nev++;
    user_cnt(b, x)[e->type]++;
    struct item *it = item_at(b, e->i);
    it->cnt[e->type]++;
    b->gcnt[e->type]++;
    if (e->cat >= 0) {
        it->cat = e->cat;
        struct pent *c = pmap_get(&b->ucats, pair_key(e->u, e->cat));
        if (!c) return pt_error(PT_ENOMEM, "out of memory");
        c->val = c->val == UINT32_MAX ? 1 : c->val + 1;
    }
    if (sc->nattrs) {
        const char *a = b->gtext + e->attr_off;
        if (!it->attrs || strncmp(it->attrs, a, e->attr_len) || it->attrs[e->attr_len]) {
            pt_free(it->attrs);
            if (!(it->attrs = pt_strndup(a, e->attr_len))) return pt_error(PT_ENOMEM, "out of memory");
        }
    }
    if (sc->neg_k && !pmap_get(&b->pairs, pair_key(e->u, e->i))) return pt_error(PT_ENOMEM, "out of memory");
    if (e->i >= b->items_applied) b->items_applied = e->i + 1;
    if (sc->neg_popularity) b->pop[b->npop++ & (POP_RING - 1)] = e->i;
    return PT_OK;
}

/* Finishes the waiting samples whose longest window has passed at the
 * current second: no event from it on can label them. */
static int finish_passed(struct build *b)
{
    int rc = PT_OK;
    while (!rc && b->phead < b->ptail && b->gt - pend_at(b, b->phead)->t > b->max_window) rc = pend_finish(b);
    return rc;
}

static int group_flush(struct build *b)
{
    int rc = finish_passed(b);
    if (rc) return rc;
    for (int k = 0; k < b->gn; k++) {
        if ((rc = label(b, &b->g[k]))) return rc;
        if (b->g[k].type == b->sc->exposure_type && (rc = expose(b, &b->g[k]))) return rc;
    }
    for (int k = 0; k < b->gn; k++)
        if ((rc = apply(b, &b->g[k]))) return rc;
    b->gn = 0;
    b->gtlen = 0;
    return PT_OK;
}

/* ---- reading events ---- */

static int bad_row(struct build *b, const char *file, long line, const char *fmt, const char *a)
{
    b->bad++;
    char msg[600];
    snprintf(msg, sizeof msg, "%s:%ld: ", file, line);
    size_t n = strlen(msg);
    snprintf(msg + n, sizeof msg - n, fmt, a);
    if (b->nbad_msg < BAD_KEEP) b->bad_msg[b->nbad_msg++] = pt_strdup(msg);
    int64_t max = b->o->max_bad_rows >= 0 ? b->o->max_bad_rows : b->sc->max_bad_rows;
    if (b->bad > max)
        return pt_error(PT_ETOOMANYBAD, "%s (more than %" PRId64 " bad rows; raise --max-bad-rows to skip them)", msg, max);
    return PT_OK;
}

/* Parses one record's time. 1 ok, 0 bad (counted). */
static int row_time(struct build *b, char **f, size_t *lens, size_t nf, const char *file, long line, int64_t *t, int *rc)
{
    *rc = PT_OK;
    if ((int)nf != b->ncols) {
        char what[64];
        snprintf(what, sizeof what, "%zu fields where the header has %d", nf, b->ncols);
        *rc = bad_row(b, file, line, "%s", what);
        return 0;
    }
    if (time_parse(f[b->c_time], lens[b->c_time], (enum time_format)b->sc->time_format, b->sc->tz, t)) {
        *rc = bad_row(b, file, line, "bad timestamp '%.100s'", f[b->c_time]);
        return 0;
    }
    return 1;
}

static int is_missing(const char *s, size_t n) { return n == 0 || (n == 2 && s[0] == 'N' && s[1] == 'A'); }

/* Events are read well ahead of the one being handled, in stages STEP
 * events apart: (1) read, its vocabulary slots fetched; (2) ids looked up,
 * user, item and pair state fetched; (3) the user's recent history and
 * window tails and the pair's newest waiting sample fetched; (4) the names
 * of the items in that history fetched; (5) handled. Each stage's loads
 * depend on the one before, and the build is bound by these cache misses:
 * this way they overlap instead of following one another. */
#define STEP 12
#define LOOK (4 * STEP + 1)

struct slot {
    int64_t t;
    int type;
    char *buf;               /* user, item, category (NUL-terminated), then the attribute fields */
    size_t cap;
    uint32_t ilen, ulen, clen, alen;
    uint64_t uh, ih, ch, sess;
    int32_t u, i, cat;
};

struct look {
    struct slot s[LOOK];
    int64_t read, mapped, hist, names, done;
};

static void look_free(struct look *lk)
{
    for (int k = 0; k < LOOK; k++) pt_free(lk->s[k].buf);
}

/* Stage 1: a good record at time t is copied into the next slot. 0 when
 * the record is skipped (a bad type is counted as a bad row, missing ids as
 * missing), 1 when kept. */
static int look_read(struct build *b, struct look *lk, char **f, size_t *lens, int64_t t, const char *file, long line,
                     int *rc)
{
    const struct samples_cfg *sc = b->sc;
    int type = b->every_type;
    *rc = PT_OK;
    if (b->c_type >= 0) {
        for (type = 0; type < b->K; type++)
            if (!strcmp(f[b->c_type], sc->types[type])) break;
        if (type == b->K) {
            *rc = bad_row(b, file, line, "unknown event type '%.100s' (not in samples.event_types)", f[b->c_type]);
            return 0;
        }
    }
    if (is_missing(f[b->c_user], lens[b->c_user]) || is_missing(f[b->c_item], lens[b->c_item])) {
        b->missing++;
        return 0;
    }
    struct slot *e = &lk->s[lk->read % LOOK];
    size_t cl = b->c_cat >= 0 && !is_missing(f[b->c_cat], lens[b->c_cat]) ? lens[b->c_cat] : 0;
    size_t room = lens[b->c_user] + lens[b->c_item] + cl + 4;
    for (int k = 0; k < sc->nattrs; k++) room += 1 + field_room(lens[b->c_attr[k]]);
    if (pt_grow((void **)&e->buf, &e->cap, room, 1)) {
        *rc = PT_ENOMEM;
        return 0;
    }
    char *p = e->buf;
    e->ulen = (uint32_t)lens[b->c_user], e->ilen = (uint32_t)lens[b->c_item], e->clen = (uint32_t)cl;
    memcpy(p, f[b->c_user], e->ulen + 1), p += e->ulen + 1;
    memcpy(p, f[b->c_item], e->ilen + 1), p += e->ilen + 1;
    memcpy(p, b->c_cat >= 0 ? f[b->c_cat] : "", cl), p[cl] = 0, p += cl + 1;
    char *a0 = p;
    for (int k = 0; k < sc->nattrs; k++) *p++ = ',', p = put_field(p, f[b->c_attr[k]], lens[b->c_attr[k]]);
    *p = 0;
    e->alen = (uint32_t)(p - a0);
    e->t = t;
    e->type = type;
    e->sess = b->c_sess >= 0 ? pt_hash64(f[b->c_sess], lens[b->c_sess], 7) : 0;
    e->uh = vocab_hash(e->buf, e->ulen);
    e->ih = vocab_hash(e->buf + e->ulen + 1, e->ilen);
    e->ch = cl ? vocab_hash(e->buf + e->ulen + e->ilen + 2, cl) : 0;
    vocab_prefetch(&b->users_v, e->uh);
    vocab_prefetch(&b->items_v, e->ih);
    lk->read++;
    return 1;
}

/* Stage 2: ids, and the state they index starts loading. */
static int look_map(struct build *b, struct slot *e)
{
    const char *us = e->buf, *is = us + e->ulen + 1, *cs = is + e->ilen + 1;
    int rc;
    if ((rc = user_add(b, us, e->ulen, e->uh, &e->u)) || (rc = item_add(b, is, e->ilen, e->ih, &e->i))) return rc;
    if (e->ilen > b->item_maxlen) b->item_maxlen = e->ilen;
    if (e->clen > b->cat_maxlen) b->cat_maxlen = e->clen;
    e->cat = -1;
    if (e->clen) {
        int32_t before = b->cats_v.n; /* room first, as in user_add */
        if (pt_grow((void **)&b->cnames, &b->cncap, (size_t)before + 1, sizeof *b->cnames)) return PT_ENOMEM;
        if ((rc = vocab_add_h(&b->cats_v, cs, e->clen, e->ch, &e->cat))) return rc;
        if (e->cat >= before) name_set(&b->cnames[e->cat], cs, e->clen);
        if (b->ucats.cap) PT_PREFETCH(&b->ucats.e[pmap_slot(pair_key(e->u, e->cat), b->ucats.cap)], 1);
    }
    const char *x = (const char *)user_at(b, e->u);
    for (size_t at = 0; at < b->ustride; at += 64) PT_PREFETCH(x + at, 1);
    for (size_t at = 0; at < b->istride; at += 64) PT_PREFETCH((const char *)item_at(b, e->i) + at, 1);
    PT_PREFETCH(&b->inames[e->i], 0);
    if (b->pairs.cap) PT_PREFETCH(&b->pairs.e[pmap_slot(pair_key(e->u, e->i), b->pairs.cap)], 1);
    return PT_OK;
}

/* Stage 3: the user's newest events and window tails, and the pair's newest waiting sample. */
static void look_hist(struct build *b, const struct slot *e)
{
    const struct user *x = user_at(b, e->u);
    if (x->hcap) {
        int n = b->sc->seq_len > 1 ? b->sc->seq_len : 1;
        for (int k = 0; k < n && k < x->hn; k += 4) PT_PREFETCH(&x->h[(x->htot - 1 - k) & (x->hcap - 1)], 0);
        for (int w = 0; w < b->nfin; w++) PT_PREFETCH(&x->h[x->tail[w] & (x->hcap - 1)], 0);
    }
    if (b->label_types >> e->type & 1) {
        const struct pent *pe = pmap_find(&b->pairs, pair_key(e->u, e->i));
        if (pe && pe->val != UINT32_MAX && b->phead < b->ptail) {
            int64_t k = b->phead + (int64_t)(uint32_t)(pe->val - (uint32_t)b->phead);
            if (k < b->ptail) { /* an entry may straddle two lines */
                const struct pend *q = pend_at(b, k);
                PT_PREFETCH(q, 1);
                PT_PREFETCH((const char *)(q + 1) - 1, 1);
            }
        }
    }
}

/* Stage 4: the names a sample's sequence will print. */
static void look_names(struct build *b, const struct slot *e)
{
    const struct user *x = user_at(b, e->u);
    if (!x->hcap || e->type != b->sc->exposure_type) return;
    for (int k = 0; k < b->sc->seq_len && k < x->hn; k++)
        PT_PREFETCH(&b->inames[x->h[(x->htot - 1 - k) & (x->hcap - 1)].item], 0);
}

/* Stage 5: the event joins the group of its second (the group before it is
 * handled first when the second changes). */
static int look_handle(struct build *b, const struct slot *e)
{
    if (b->gn && e->t != b->gt) {
        int rc = group_flush(b);
        if (rc) return rc;
    }
    if (!b->events) b->t0 = e->t;
    if (e->t - b->t0 > INT32_MAX) /* histories keep times as 32-bit offsets from the first event */
        return pt_error_at(PT_EPARSE, b->sc->events.path, 0,
                           "the events span more than 68 years (%" PRId64 " s); check the time column and time_format",
                           e->t - b->t0);
    b->gt = e->t;
    b->last_t = e->t;
    if (b->gn == b->gcap) {
        size_t cap = (size_t)b->gcap;
        if (pt_grow((void **)&b->g, &cap, cap + 1, sizeof *b->g)) return PT_ENOMEM;
        b->gcap = (int)cap;
    }
    if (pt_grow((void **)&b->gtext, &b->gtcap, b->gtlen + e->alen + 1, 1)) return PT_ENOMEM;
    struct ev *g = &b->g[b->gn];
    g->u = e->u, g->i = e->i, g->cat = e->cat, g->type = e->type, g->sess = e->sess;
    g->attr_off = (uint32_t)b->gtlen;
    g->attr_len = e->alen;
    memcpy(b->gtext + b->gtlen, e->buf + e->ulen + e->ilen + e->clen + 3, e->alen + 1);
    b->gtlen += e->alen + 1;
    b->gn++;
    b->events++;
    return PT_OK;
}

/* Moves the pipeline on after a read; drain: no more reads will come. */
static int look_step(struct build *b, struct look *lk, int drain)
{
    int rc;
    while (lk->mapped < lk->read && (drain || lk->read - lk->mapped > STEP))
        if ((rc = look_map(b, &lk->s[lk->mapped++ % LOOK]))) return rc;
    while (lk->hist < lk->mapped && (drain || lk->read - lk->hist > 2 * STEP)) look_hist(b, &lk->s[lk->hist++ % LOOK]);
    while (lk->names < lk->hist && (drain || lk->read - lk->names > 3 * STEP)) look_names(b, &lk->s[lk->names++ % LOOK]);
    while (lk->done < lk->names && (drain || lk->read - lk->done > 4 * STEP))
        if ((rc = look_handle(b, &lk->s[lk->done++ % LOOK]))) return rc;
    return PT_OK;
}

/* ---- the run ---- */

static int resolve_columns(struct build *b, char **names, int n, const char *file)
{
    const struct samples_cfg *sc = b->sc;
    b->ncols = n;
    struct { const char *name; int *at; } want[] = {
        {sc->col_user, &b->c_user}, {sc->col_item, &b->c_item}, {sc->col_time, &b->c_time},
        {sc->col_type, &b->c_type}, {sc->col_category, &b->c_cat}, {sc->col_session, &b->c_sess}};
    for (size_t k = 0; k < sizeof want / sizeof *want; k++) {
        *want[k].at = -1;
        if (want[k].name && (*want[k].at = find_col((const char *const *)names, n, want[k].name)) < 0)
            return pt_error_at(PT_ECONFIG, file, 1, "the events have no column '%s' (columns: see samples.format)", want[k].name);
    }
    for (int k = 0; k < sc->nattrs; k++)
        if ((b->c_attr[k] = find_col((const char *const *)names, n, sc->attrs[k])) < 0)
            return pt_error_at(PT_ECONFIG, file, 1, "the events have no column '%s' (samples.attributes)", sc->attrs[k]);
    return PT_OK;
}

static void state_free(struct build *b)
{
    for (int32_t u = 0; u < b->users_v.n; u++) {
        struct user *x = user_at(b, u);
        if ((size_t)x->hcap * sizeof *x->h > RING_MAX) pt_free(x->h);
    }
    rings_free(&b->rings);
    for (int32_t i = 0; i < b->items_v.n; i++) pt_free(item_at(b, i)->attrs);
    vocab_free(&b->users_v);
    vocab_free(&b->items_v);
    vocab_free(&b->cats_v);
    pt_free(b->users), pt_free(b->items), pt_free(b->pairs.e), pt_free(b->ucats.e);
    pt_free(b->cnames), pt_free(b->inames);
    b->cnames = b->inames = NULL;
    b->cncap = b->incap = 0;
    pt_free(b->g), pt_free(b->gtext), pt_free(b->p), pt_free(b->mins);
    for (int k = 0; k < b->nbad_msg; k++) pt_free(b->bad_msg[k]);
    b->users = b->items = NULL;
    b->pairs = (struct pmap){0}, b->ucats = (struct pmap){0};
    b->g = NULL, b->gtext = NULL, b->p = NULL, b->mins = NULL;
    b->nbad_msg = 0;
}

static void state_reset(struct build *b)
{
    state_free(b);
    vocab_init(&b->users_v);
    vocab_init(&b->items_v);
    vocab_init(&b->cats_v);
    b->ucap = b->icap = 0;
    b->gn = b->gcap = 0;
    b->gtlen = b->gtcap = 0;
    b->phead = b->ptail = 0;
    b->pcap = 0;
    b->nmins = b->mincap = 0;
    b->cut_seen[0] = b->cut_seen[1] = 0;
    b->olen = 0;
    b->wb_off = b->wb_dropped = 0;
    b->items_applied = 0;
    b->npop = 0;
    b->lines = b->events = b->bad = b->missing = b->exposures = b->dups = b->negs = b->neg_short = 0;
    b->written = b->dropped = b->marked = 0;
    b->last_t = NONE;
    b->tf_t = NONE;
    memset(b->gcnt, 0, (size_t)b->K * sizeof *b->gcnt);
    memset(b->pos, 0, (size_t)b->L * sizeof *b->pos);
    rng_seed(&b->rng, b->sc->neg_seed);
    b->pairs.live = pair_live;
    b->pairs.ctx = b;
}

enum { UNSORTED = 1 };

static void progress(struct build *b, double t0, double *last)
{
    double now = pt_now();
    if (now - *last < 5.0) return;
    *last = now;
    pt_log(PT_LOG_INFO, "build: %" PRId64 " events, %" PRId64 " samples written, %.0f events/s", b->events, b->written,
           (double)b->events / (now - t0));
}

/* Streams the events from the CSV reader (xs NULL) or the sorted runs.
 * Returns UNSORTED when an event is older than the one before and the
 * input is not to be sorted here. */
static int stream(struct build *b, struct csv_reader *r, struct extsort *xs, const char *file)
{
    size_t nf, *lens;
    char **f;
    long line = 0;
    int64_t key, prev = NONE;
    int rc;
    double t0 = pt_now(), last = t0;
    struct look lk;
    memset(&lk, 0, sizeof lk);
    for (;;) {
        if (xs) rc = extsort_next(xs, &nf, &f, &lens, &line, &key);
        else rc = csv_reader_next(r, &nf, &f, &lens), line = csv_reader_line(r);
        if (rc == 0) break;
        if (rc < 0) {
            if (rc != PT_EPARSE || (rc = bad_row(b, file, line, "%s", pt_errmsg()))) goto done;
            continue;
        }
        b->lines++;
        if ((b->lines & 0xFFFF) == 0) progress(b, t0, &last);
        int64_t t;
        if (!row_time(b, f, lens, nf, file, line, &t, &rc)) {
            if (rc) goto done;
            continue;
        }
        if (t < prev) {
            char a[24], c[24];
            time_format_iso(t, a);
            time_format_iso(prev, c);
            if (!b->o->assume_sorted && !xs) {
                pt_log(PT_LOG_INFO, "%s:%ld: the events are not in time order (%s after %s); sorting them", file, line, a, c);
                rc = UNSORTED;
            } else {
                rc = pt_error_at(PT_EPARSE, file, line,
                                 "time %s is before the previous event's %s: the events are not sorted by time (drop --assume-sorted to sort them)",
                                 a, c);
            }
            goto done;
        }
        prev = t;
        if ((look_read(b, &lk, f, lens, t, file, line, &rc) && (rc = look_step(b, &lk, 0))) || rc) goto done;
    }
    if ((rc = look_step(b, &lk, 1)) || b->keep_open) goto done;
    if (b->gn && (rc = group_flush(b))) goto done;
    rc = finish_tail(b, &b->end);
done:
    look_free(&lk);
    return rc;
}

/* Reads the whole log into a bounded-memory sort and streams it back in time order. */
static int sort_and_stream(struct build *b, const char *file, const struct csv_opts *co, const char *dir)
{
    struct csv_reader *r = NULL;
    struct extsort *xs = NULL;
    size_t nf, *lens;
    char **f;
    int rc = csv_reader_open(&r, file, co);
    if (!rc) rc = extsort_create(&xs, dir, b->o->sort_memory ? b->o->sort_memory : (size_t)256 << 20);
    if (rc) goto done;
    if (b->sc->events.header && (rc = csv_reader_next(r, &nf, &f, &lens)) <= 0) {
        rc = rc < 0 ? rc : pt_error_at(PT_EPARSE, file, 1, "empty file: no header");
        goto done;
    }
    while ((rc = csv_reader_next(r, &nf, &f, &lens)) != 0) {
        long line = csv_reader_line(r);
        if (rc < 0) {
            if (rc != PT_EPARSE || (rc = bad_row(b, file, line, "%s", pt_errmsg()))) goto done;
            continue;
        }
        int64_t t;
        if (!row_time(b, f, lens, nf, file, line, &t, &rc)) {
            if (rc) goto done;
            continue;
        }
        if ((rc = extsort_add(xs, t, line, f, lens, nf))) goto done;
    }
    if ((rc = extsort_finish(xs))) goto done;
    b->runs = extsort_runs(xs);
    rc = stream(b, NULL, xs, file);
done:
    extsort_free(xs);
    csv_reader_close(r);
    return rc;
}

/* Header names of the output, in row order. */
static json_t *column_names(const struct build *b)
{
    const struct samples_cfg *sc = b->sc;
    json_t *a = json_array();
    char name[320];
    json_array_append_new(a, json_string("ts"));
    json_array_append_new(a, json_string(sc->col_user));
    json_array_append_new(a, json_string(sc->col_item));
    if (b->c_cat >= 0) json_array_append_new(a, json_string(sc->col_category));
    for (int k = 0; k < sc->nattrs; k++) json_array_append_new(a, json_string(sc->attrs[k]));
    if (b->jitems.n)
        for (int k = 0; k < sc->items.nfields; k++) json_array_append_new(a, json_string(sc->items.fields[k]));
    if (b->jusers.n)
        for (int k = 0; k < sc->users.nfields; k++) json_array_append_new(a, json_string(sc->users.fields[k]));
    json_array_append_new(a, json_string("hour"));
    json_array_append_new(a, json_string("weekday"));
    json_array_append_new(a, json_string("since_last"));
    if (sc->purchase_type >= 0) json_array_append_new(a, json_string("since_purchase"));
    for (int w = 0; w < b->W; w++) {
        char wn[32];
        int64_t s = sc->windows[w];
        if (!s) snprintf(wn, sizeof wn, "all");
        else if (s % 86400 == 0) snprintf(wn, sizeof wn, "%" PRId64 "d", s / 86400);
        else if (s % 3600 == 0) snprintf(wn, sizeof wn, "%" PRId64 "h", s / 3600);
        else if (s % 60 == 0) snprintf(wn, sizeof wn, "%" PRId64 "m", s / 60);
        else snprintf(wn, sizeof wn, "%" PRId64 "s", s);
        for (int k = 0; k < b->K; k++) {
            snprintf(name, sizeof name, "u_%.200s_%s", sc->types[k], wn);
            json_array_append_new(a, json_string(name));
        }
    }
    if (b->c_cat >= 0) json_array_append_new(a, json_string("u_cat_share"));
    for (int k = 0; k < b->K; k++) {
        snprintf(name, sizeof name, "i_%.200s", sc->types[k]);
        json_array_append_new(a, json_string(name));
    }
    for (int l = 0; l < b->L; l++) {
        snprintf(name, sizeof name, "i_%.200s_rate", sc->labels[l].name);
        json_array_append_new(a, json_string(name));
    }
    if (sc->seq_len) {
        json_array_append_new(a, json_string("seq_items"));
        if (b->c_cat >= 0) json_array_append_new(a, json_string("seq_cats"));
        json_array_append_new(a, json_string("seq_types"));
        json_array_append_new(a, json_string("seq_gaps"));
    }
    if (sc->neg_k) json_array_append_new(a, json_string(sc->neg_label));
    for (int l = 0; l < b->L; l++) json_array_append_new(a, json_string(sc->labels[l].name));
    return a;
}

static int write_header(FILE *f, json_t *cols)
{
    size_t k;
    json_t *v;
    json_array_foreach(cols, k, v) {
        const char *s = json_string_value(v);
        if ((k && fputc(',', f) == EOF) || fputs(s, f) == EOF) return pt_error(PT_EIO, "writing samples: %s", strerror(errno));
    }
    return fputc('\n', f) == EOF ? pt_error(PT_EIO, "writing samples: %s", strerror(errno)) : PT_OK;
}

/* Copies bytes [from, to) of the samples file into path, after the header. */
static int copy_part(int src, uint64_t from, uint64_t to, const char *path, json_t *cols)
{
    struct atomic_file af;
    int rc = atomic_file_open(&af, path);
    if (rc) return rc;
    if ((rc = write_header(af.f, cols))) goto fail;
    if (fflush(af.f)) goto io;
    /* copied inside the kernel; plain reads and writes where it cannot */
    int dst = fileno(af.f);
    loff_t in = (loff_t)from;
    while ((uint64_t)in < to) {
        ssize_t n = copy_file_range(src, &in, dst, NULL, (size_t)(to - (uint64_t)in), 0);
        if (n > 0) continue;
        if (n == 0 || (errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL)) goto io;
        static char buf[1 << 20];
        size_t k = to - (uint64_t)in < sizeof buf ? (size_t)(to - (uint64_t)in) : sizeof buf;
        if (pread(src, buf, k, in) != (ssize_t)k || write(dst, buf, k) != (ssize_t)k) goto io;
        in += (loff_t)k;
    }
    return atomic_file_commit(&af);
io:
    rc = pt_error(PT_EIO, "copying samples to %s: %s", path, strerror(errno));
fail:
    atomic_file_abort(&af);
    return rc;
}

/* The inputs' identity for the cache: the section's text and each file's size and time. */
static char *cache_key(const struct samples_cfg *sc, const pt_build_opts *o)
{
    const char *files[3] = {sc->events.path, sc->items.t.path, sc->users.t.path};
    size_t n = strlen(sc->text) + 256;
    char *k = pt_malloc(n), *p = k;
    if (!k) return NULL;
    p += snprintf(p, n, "%s bad<=%lld %s", pt_version(), (long long)o->max_bad_rows, sc->text);
    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (files[i] && !stat(files[i], &st))
            p += snprintf(p, n - (size_t)(p - k), " %lld:%lld.%09ld", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                          (long)st.st_mtim.tv_nsec);
    }
    return k;
}

static int has_valid(const struct samples_cfg *sc) { return sc->valid_fraction > 0 || sc->valid_from != NONE; }
static int has_test(const struct samples_cfg *sc) { return sc->test_fraction > 0 || sc->test_from != NONE; }

/* 1 when dir holds a build made from the same key, with all its files. */
static int cached(const struct samples_cfg *sc, const char *dir, const char *key, char **report)
{
    char *path = pt_path_join(dir, "build.json");
    json_t *j = path ? json_load_file(path, 0, NULL) : NULL;
    pt_free(path);
    const char *k = json_string_value(json_object_get(j, "key"));
    int hit = k && !strcmp(k, key);
    const char *files[3] = {"train.csv", has_valid(sc) ? "valid.csv" : NULL, has_test(sc) ? "test.csv" : NULL};
    for (int f = 0; f < 3 && hit; f++) {
        if (!files[f]) continue;
        char *fp = pt_path_join(dir, files[f]);
        hit = fp && access(fp, F_OK) == 0;
        pt_free(fp);
    }
    if (hit && report) {
        char *s = json_dumps(j, JSON_COMPACT);
        *report = s ? pt_strdup(s) : NULL;
        free(s);
    }
    json_decref(j);
    return hit;
}

static int mkdirs(const char *dir)
{
    char *d = pt_strdup(dir);
    if (!d) return pt_error(PT_ENOMEM, "out of memory");
    for (char *p = d + 1;; p++) {
        if (*p && *p != '/') continue;
        char c = *p;
        *p = 0;
        if (mkdir(d, 0777) && errno != EEXIST) {
            int e = errno;
            pt_free(d);
            return pt_error(PT_EIO, "cannot create folder %s: %s", dir, strerror(e));
        }
        if (!c) break;
        *p = c;
    }
    pt_free(d);
    return PT_OK;
}

/* Cut offsets [valid, test) and the times they stand for. */
static void split_points(struct build *b, uint64_t off[2], int64_t when[2], int64_t rows[3])
{
    const struct samples_cfg *sc = b->sc;
    int64_t from[2] = {sc->valid_from, sc->test_from};
    double frac[2] = {1.0 - sc->valid_fraction - sc->test_fraction, 1.0 - sc->test_fraction};
    int64_t at[2];
    for (int k = 0; k < 2; k++) {
        off[k] = b->end, when[k] = NONE, at[k] = b->written;
        if (from[k] != NONE) {
            if (b->cut_seen[k]) off[k] = b->cut_off[k], at[k] = b->cut_n[k];
            when[k] = from[k];
        } else if (sc->valid_from == NONE && sc->test_from == NONE && frac[k] < 1.0) {
            /* the first whole minute where the running count reaches the fraction */
            /* 1 - 0.2 - 0.2 is 0.6000000000000001: round off the last bits first */
            int64_t want = (int64_t)ceil(frac[k] * (double)b->written - 1e-9), run = 0;
            for (size_t m = 0; m < b->nmins; m++) {
                if (run >= want) {
                    off[k] = b->mins[m].off, when[k] = b->mins[m].m * 60, at[k] = run;
                    break;
                }
                run += b->mins[m].rows;
            }
        }
    }
    if (from[0] == NONE && sc->valid_fraction == 0) off[0] = off[1], at[0] = at[1], when[0] = when[1];
    if (off[0] > off[1]) off[0] = off[1], at[0] = at[1];
    rows[0] = at[0], rows[1] = at[1] - at[0], rows[2] = b->written - at[1];
}

static json_t *report_json(struct build *b, double secs, const int64_t rows[3], const int64_t when[2], json_t *cols)
{
    const struct samples_cfg *sc = b->sc;
    json_t *r = json_object(), *s = json_object(), *pos = json_object(), *bad = json_array(), *cold = json_object();
    json_object_set_new(r, "events", json_integer(b->events));
    json_object_set_new(r, "lines", json_integer(b->lines));
    json_object_set_new(r, "bad_rows", json_integer(b->bad));
    json_object_set_new(r, "missing_ids", json_integer(b->missing));
    json_object_set_new(r, "sorted_input", json_boolean(b->sorted));
    json_object_set_new(r, "sort_runs", json_integer(b->runs));
    json_object_set_new(r, "seconds", json_real(secs));
    json_object_set_new(r, "events_per_second", json_real(secs > 0 ? (double)b->events / secs : 0));
    json_object_set_new(r, "users", json_integer(b->users_v.n));
    json_object_set_new(r, "items", json_integer(b->items_v.n));
    json_object_set_new(r, "exposures", json_integer(b->exposures));
    json_object_set_new(r, "duplicates_skipped", json_integer(b->dups));
    json_object_set_new(s, "train", json_integer(rows[0]));
    json_object_set_new(s, "valid", json_integer(rows[1]));
    json_object_set_new(s, "test", json_integer(rows[2]));
    json_object_set_new(r, "samples", s);
    json_object_set_new(r, "negatives", json_integer(b->negs));
    json_object_set_new(r, "negatives_short", json_integer(b->neg_short));
    json_object_set_new(r, "incomplete_dropped", json_integer(b->dropped));
    json_object_set_new(r, "incomplete_marked", json_integer(b->marked));
    for (int l = 0; l < b->L; l++) json_object_set_new(pos, sc->labels[l].name, json_integer(b->pos[l]));
    json_object_set_new(r, "positives", pos);
    /* users and items of valid/test samples never seen in a train sample */
    int64_t cut = when[0] != NONE ? when[0] : when[1];
    int64_t cu = 0, eu = 0, ci = 0, ei = 0;
    if (cut != NONE) {
        for (int32_t u = 0; u < b->users_v.n; u++) {
            const struct user *x = user_at(b, u);
            if (x->last_s != NONE && x->last_s >= cut) eu++, cu += x->first_s >= cut;
        }
        for (int32_t i = 0; i < b->items_v.n; i++) {
            const struct item *it = item_at(b, i);
            if (it->last_s != NONE && it->last_s >= cut) ei++, ci += it->first_s >= cut;
        }
    }
    json_object_set_new(cold, "users", json_integer(cu));
    json_object_set_new(cold, "eval_users", json_integer(eu));
    json_object_set_new(cold, "items", json_integer(ci));
    json_object_set_new(cold, "eval_items", json_integer(ei));
    json_object_set_new(r, "cold", cold);
    for (int k = 0; k < 2; k++) {
        char iso[32] = "";
        if (when[k] != NONE) time_format_iso(when[k], iso);
        json_object_set_new(r, k ? "test_from" : "valid_from", when[k] != NONE ? json_string(iso) : json_null());
    }
    char first[32] = "", lastt[32] = "";
    if (b->nmins) time_format_iso(b->mins[0].m * 60, first);
    if (b->last_t != NONE) time_format_iso(b->last_t, lastt);
    json_object_set_new(r, "first_sample_minute", json_string(first));
    json_object_set_new(r, "last_event", json_string(lastt));
    for (int k = 0; k < b->nbad_msg; k++)
        if (b->bad_msg[k]) json_array_append_new(bad, json_string(b->bad_msg[k]));
    json_object_set_new(r, "first_bad_rows", bad);
    json_object_set(r, "columns", cols);
    return r;
}

/* The state of an empty log, with the joined tables loaded. Freed by
 * build_fini, also after a failure. */
static int build_init(struct build *b, const struct samples_cfg *sc, const pt_build_opts *o)
{
    memset(b, 0, sizeof *b);
    b->sc = sc;
    b->o = o;
    b->K = sc->ntypes, b->W = sc->nwindows, b->L = sc->nlabels;
    for (int w = 0; w < b->W; w++) b->nfin += sc->windows[w] != 0;
    block_sizes(b);
    for (int k = 0; k < b->K; k++) {
        if (strlen(sc->types[k]) > b->type_maxlen) b->type_maxlen = strlen(sc->types[k]);
        if (sc->every_line && !strcmp(sc->types[k], sc->every_line)) b->every_type = k;
    }
    for (int l = 0; l < b->L; l++) {
        if (sc->labels[l].window > b->max_window) b->max_window = sc->labels[l].window;
        b->label_types |= 1ull << sc->labels[l].type;
    }
    b->fd = -1;
    b->c_attr = pt_calloc((size_t)sc->nattrs + 1, sizeof *b->c_attr);
    b->gcnt = pt_calloc((size_t)b->K, sizeof *b->gcnt);
    b->pos = pt_calloc((size_t)b->L + 1, sizeof *b->pos);
    b->pop = sc->neg_popularity ? pt_malloc(POP_RING * sizeof *b->pop) : NULL;
    b->obuf = pt_malloc(OBUF);
    b->tnames = pt_calloc((size_t)b->K + 1, sizeof *b->tnames);
    if (!b->c_attr || !b->gcnt || !b->pos || (sc->neg_popularity && !b->pop) || !b->obuf || !b->tnames)
        return pt_error(PT_ENOMEM, "out of memory");
    for (int k = 0; k < b->K; k++) name_set(&b->tnames[k], sc->types[k], strlen(sc->types[k]));
    state_reset(b);
    int rc = PT_OK;
    if ((sc->items.t.path && (rc = join_load(&b->jitems, &sc->items, "items"))) ||
        (sc->users.t.path && (rc = join_load(&b->jusers, &sc->users, "users"))))
        return rc;
    return PT_OK;
}

static void build_fini(struct build *b)
{
    unmap_old(b);
    state_free(b);
    join_free(&b->jitems);
    join_free(&b->jusers);
    pt_free(b->c_attr), pt_free(b->gcnt), pt_free(b->pos), pt_free(b->pop);
    pt_free(b->row);
    pt_free(b->obuf);
    pt_free(b->tnames);
}

/* Opens the event log and finds its columns: the header's names, or
 * format.columns. [out] *r (closed by the caller, also on failure). */
static int events_open(struct build *b, struct csv_reader **r)
{
    const struct samples_cfg *sc = b->sc;
    const char *file = sc->events.path;
    struct csv_opts co = {.delim = sc->events.delim};
    size_t nf, *lens;
    char **f;
    int rc = csv_reader_open(r, file, &co);
    if (rc) return rc;
    if (!sc->events.header) return resolve_columns(b, sc->events.columns, sc->events.ncolumns, file);
    if ((rc = csv_reader_next(*r, &nf, &f, &lens)) <= 0)
        return rc < 0 ? rc : pt_error_at(PT_EPARSE, file, 1, "empty file: no header");
    return resolve_columns(b, f, (int)nf, file);
}

int build_samples(const struct samples_cfg *sc, const char *dir, const pt_build_opts *opts, char **report)
{
    pt_build_opts dflt = pt_build_opts_default();
    struct build b;
    if (report) *report = NULL;
    char *key = cache_key(sc, opts ? opts : &dflt), *paths[3] = {NULL, NULL, NULL};
    json_t *cols = NULL, *rep = NULL;
    struct csv_reader *r = NULL;
    struct atomic_file af = {0};
    int rc = PT_OK, opened = 0, made_dir = 0;
    if (!key) return pt_error(PT_ENOMEM, "out of memory");
    if (!(opts ? opts : &dflt)->force && cached(sc, dir, key, report)) {
        pt_log(PT_LOG_INFO, "samples in %s are up to date with their inputs; not rebuilt", dir);
        pt_free(key);
        return PT_OK;
    }
    double t0 = pt_now();
    if ((rc = build_init(&b, sc, opts ? opts : &dflt))) goto done;
    made_dir = access(dir, F_OK) != 0;
    if ((rc = mkdirs(dir))) goto done;
    struct csv_opts co = {.delim = sc->events.delim};
    const char *file = sc->events.path;
    if ((rc = events_open(&b, &r))) goto done;
    cols = column_names(&b);
    /* an output column named twice would make train read the wrong one */
    for (size_t i = 0; i < json_array_size(cols); i++)
        for (size_t j = 0; j < i; j++)
            if (!strcmp(json_string_value(json_array_get(cols, i)), json_string_value(json_array_get(cols, j)))) {
                rc = pt_error(PT_ECONFIG, "%s: samples would have two columns named '%s'; rename a label, attribute or joined column",
                              sc->events.path, json_string_value(json_array_get(cols, i)));
                goto done;
            }
    if (!(paths[0] = pt_path_join(dir, "train.csv")) || !(paths[1] = pt_path_join(dir, "valid.csv")) ||
        !(paths[2] = pt_path_join(dir, "test.csv"))) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = atomic_file_open(&af, paths[0]))) goto done;
    opened = 1;
    if ((rc = write_header(af.f, cols))) goto done;
    if (fflush(af.f)) {
        rc = pt_error(PT_EIO, "writing %s: %s", af.tmp, strerror(errno));
        goto done;
    }
    uint64_t header_len = (uint64_t)ftello(af.f);
    b.fd = fileno(af.f);
    b.oflushed = header_len;
    b.sorted = 1;
    rc = stream(&b, r, NULL, file);
    csv_reader_close(r);
    r = NULL;
    if (rc == UNSORTED) {
        /* start again from the sorted log, with a fresh state and output */
        b.sorted = 0;
        unmap_old(&b);
        state_reset(&b);
        b.oflushed = header_len;
        if (ftruncate(b.fd, (off_t)header_len)) {
            rc = pt_error(PT_EIO, "rewinding %s: %s", af.tmp, strerror(errno));
            goto done;
        }
        rc = sort_and_stream(&b, file, &co, dir);
    }
    if (!rc && !b.events)
        rc = pt_error_at(PT_EPARSE, file, 0, "no events to build samples from (%" PRId64 " lines, %" PRId64 " bad, %" PRId64 " without a user or item id)",
                         b.lines, b.bad, b.missing);
    if (rc) goto done;
    for (int k = 0; k < b.nbad_msg; k++) pt_log(PT_LOG_WARN, "skipped bad row: %s", b.bad_msg[k]);
    if (b.bad > b.nbad_msg) pt_log(PT_LOG_WARN, "skipped %" PRId64 " bad rows in all", b.bad);
    uint64_t off[2];
    int64_t when[2], rows[3];
    split_points(&b, off, when, rows);
    /* the tail goes to valid and test, then train's file is cut before it */
    if (has_valid(sc) && (rc = copy_part(b.fd, off[0], off[1], paths[1], cols))) goto done;
    if (has_test(sc) && (rc = copy_part(b.fd, off[1], b.end, paths[2], cols))) goto done;
    if (ftruncate(b.fd, (off_t)off[0])) {
        rc = pt_error(PT_EIO, "cutting %s: %s", af.tmp, strerror(errno));
        goto done;
    }
    opened = 0;
    if ((rc = atomic_file_commit(&af))) goto done;
    /* a part this split does not ask for must not linger from an earlier build */
    if (!has_valid(sc)) unlink(paths[1]);
    if (!has_test(sc)) unlink(paths[2]);
    rep = report_json(&b, pt_now() - t0, rows, when, cols);
    json_object_set_new(rep, "key", json_string(key));
    json_object_set_new(rep, "dir", json_string(dir));
    char *jpath = pt_path_join(dir, "build.json"), *txt = json_dumps(rep, JSON_INDENT(1));
    struct atomic_file jf;
    if (!jpath || !txt) rc = pt_error(PT_ENOMEM, "out of memory");
    else if (!(rc = atomic_file_open(&jf, jpath))) {
        if (fputs(txt, jf.f) == EOF || fputc('\n', jf.f) == EOF) {
            atomic_file_abort(&jf);
            rc = pt_error(PT_EIO, "writing %s", jpath);
        } else {
            rc = atomic_file_commit(&jf);
        }
    }
    pt_free(jpath);
    free(txt);
    if (!rc && report) {
        char *s = json_dumps(rep, JSON_COMPACT);
        if (!s || !(*report = pt_strdup(s))) rc = pt_error(PT_ENOMEM, "out of memory");
        free(s);
    }
done:
    if (opened) atomic_file_abort(&af);
    if (rc && made_dir) rmdir(dir); /* a failed build leaves no folder it made (rmdir: only if empty) */
    csv_reader_close(r);
    for (int k = 0; k < 3; k++) pt_free(paths[k]);
    pt_free(key);
    json_decref(cols);
    json_decref(rep);
    build_fini(&b);
    return rc;
}

pt_build_opts pt_build_opts_default(void)
{
    pt_build_opts o = {.assume_sorted = 0, .max_bad_rows = -1, .sort_memory = 0, .force = 0};
    return o;
}

int pt_build_samples(const pt_config *cfg, const char *out_dir, const pt_build_opts *opts, char **report)
{
    pt_error_clear();
    if (report) *report = NULL;
    if (!cfg || !cfg->samples) return pt_error_at(PT_ECONFIG, cfg ? cfg->path : "config", 0, "the config has no 'samples' section (see docs/samples.md)");
    char *rep = NULL;
    int rc = build_samples(cfg->samples, out_dir ? out_dir : cfg->samples->cache, opts, report ? &rep : NULL);
    if (report) *report = rep;
    return rc;
}

/* ---- online: events pushed a batch at a time (the server's learner) ---- */

/* The builder above kept open. Events come as JSON batches in the order
 * they were accepted; a sample is handed out as a labelled row once its
 * longest window has passed, as in a build, and never for the end of the
 * input (there is none: the log goes on). An event older than the newest
 * one before it is taken at that newest time and counted as late: the
 * state only moves forward, so a late event still counts and labels, a
 * little later than it happened. When asked, the config's own event log is
 * read first, so that the first online samples' features see the history
 * the training samples saw; that log's samples are not handed out (the
 * model was trained on them). */
struct online_build {
    struct build b;
    pt_build_opts o;
    struct look lk;
    const char **cols;       /* columns an event may name: the configured ones, then the log's */
    int ncols;
    const char **f;          /* one event's cells */
    size_t *lens;
    char *cells;             /* [ncols * 32] text of its numbers and booleans */
    int64_t prev;            /* newest event time pushed */
    int64_t first, lines;    /* the first time pushed (before any was handled); events read */
    uint64_t start, taken;   /* output offsets: first row of a pushed event; next row to hand out */
    int64_t events, late, bad, rows;
    json_t *outcols;         /* the samples' column names */
    unsigned char *keep;     /* [outcols] the model reads it */
};

#define CELL 32
#define LATEST 4102444800LL  /* 2100-01-01: a later time is a typo or another unit */

static int event_columns(const struct samples_cfg *sc, const char ***out, int *n)
{
    const char *want[6] = {sc->col_user, sc->col_item, sc->col_time, sc->col_type, sc->col_category, sc->col_session};
    const char **c = pt_calloc(6 + (size_t)sc->nattrs + (size_t)sc->events.ncolumns, sizeof *c);
    int k = 0;
    if (!c) return pt_error(PT_ENOMEM, "out of memory");
    for (int i = 0; i < 6; i++)
        if (want[i] && find_col(c, k, want[i]) < 0) c[k++] = want[i];
    for (int i = 0; i < sc->nattrs; i++)
        if (find_col(c, k, sc->attrs[i]) < 0) c[k++] = sc->attrs[i];
    for (int i = 0; i < sc->events.ncolumns; i++)
        if (find_col(c, k, sc->events.columns[i]) < 0) c[k++] = sc->events.columns[i];
    *out = c, *n = k;
    return PT_OK;
}

/* Event r of a batch into cells by column (f, lens; numbers written into
 * cells), and its time. PT_EINVAL, "event R: what is wrong", when no
 * sample could be built from it. */
static int event_cells(const struct samples_cfg *sc, const char *const *cols, int ncols, json_t *ev, size_t r,
                       const char **f, size_t *lens, char *cells, int64_t *t)
{
    if (!json_is_object(ev)) return pt_error(PT_EINVAL, "event %zu: not an object of column: value", r);
    for (int k = 0; k < ncols; k++) f[k] = "", lens[k] = 0;
    const char *key;
    json_t *v;
    json_object_foreach(ev, key, v) {
        int k = find_col(cols, ncols, key);
        if (k < 0)
            return pt_error(PT_EINVAL, "event %zu: unknown column '%.200s' (not in samples.columns or samples.format)", r,
                            key);
        char *cell = cells + (size_t)k * CELL;
        int w = -1;
        if (json_is_string(v)) f[k] = json_string_value(v), lens[k] = json_string_length(v);
        else if (json_is_integer(v)) w = snprintf(cell, CELL, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v)) w = snprintf(cell, CELL, "%.17g", json_real_value(v));
        else if (json_is_boolean(v)) w = snprintf(cell, CELL, "%s", json_is_true(v) ? "true" : "false");
        else if (!json_is_null(v))
            return pt_error(PT_EINVAL, "event %zu: column '%.200s': an object or array; a value must be a string, number, "
                            "boolean or null", r, key);
        if (w >= 0) f[k] = cell, lens[k] = (size_t)w;
    }
    const char *need[3] = {sc->col_user, sc->col_item, sc->col_time};
    for (int i = 0; i < 3; i++) {
        int k = find_col(cols, ncols, need[i]);
        if (is_missing(f[k], lens[k])) return pt_error(PT_EINVAL, "event %zu: no '%s'", r, need[i]);
    }
    if (sc->col_type) {
        int k = find_col(cols, ncols, sc->col_type), type = 0;
        while (type < sc->ntypes && strcmp(f[k], sc->types[type])) type++;
        if (type == sc->ntypes)
            return pt_error(PT_EINVAL, "event %zu: column '%s': unknown event type '%.100s' (not in samples.event_types)",
                            r, sc->col_type, f[k]);
    }
    int k = find_col(cols, ncols, sc->col_time);
    if (time_parse(f[k], lens[k], (enum time_format)sc->time_format, sc->tz, t))
        return pt_error(PT_EINVAL, "event %zu: column '%s': bad timestamp '%.100s'", r, sc->col_time, f[k]);
    if (*t < 0 || *t >= LATEST)
        return pt_error(PT_EINVAL, "event %zu: column '%s': time '%.100s' is not between 1970 and 2100", r, sc->col_time,
                        f[k]);
    return PT_OK;
}

static json_t *events_load(const char *json, size_t len)
{
    json_error_t e;
    json_t *a = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &e);
    if (!a) {
        pt_error(PT_EINVAL, "events: not JSON: %s (line %d, column %d)", e.text, e.line, e.column);
        return NULL;
    }
    if (!json_is_array(a)) {
        json_decref(a);
        pt_error(PT_EINVAL, "events: want a JSON array of event objects");
        return NULL;
    }
    return a;
}

int online_build_check(const struct samples_cfg *sc, const char *json, size_t len, int64_t max, int64_t *n)
{
    const char **cols = NULL, **f = NULL;
    size_t *lens = NULL;
    char *cells = NULL;
    int ncols = 0, rc;
    json_t *a = events_load(json, len);
    if (n) *n = 0;
    if (!a) return PT_EINVAL;
    if (max > 0 && (int64_t)json_array_size(a) > max) {
        rc = pt_error(PT_EINVAL, "events: %zu events, more than the limit of %" PRId64, json_array_size(a), max);
        goto done;
    }
    if ((rc = event_columns(sc, &cols, &ncols))) goto done;
    f = pt_calloc((size_t)ncols, sizeof *f), lens = pt_calloc((size_t)ncols, sizeof *lens);
    cells = pt_malloc((size_t)ncols * CELL);
    if (!f || !lens || !cells) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    int64_t t;
    for (size_t r = 0; r < json_array_size(a) && !rc; r++)
        rc = event_cells(sc, cols, ncols, json_array_get(a, r), r, f, lens, cells, &t);
    if (!rc && n) *n = (int64_t)json_array_size(a);
done:
    json_decref(a);
    pt_free(cols), pt_free(f), pt_free(lens), pt_free(cells);
    return rc;
}

/* The output goes to a file nobody else sees: unnamed where the file
 * system can, else unlinked at once. */
static int scratch_file(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return fd;
    char *path = pt_path_join(dir, "polytask-online-XXXXXX");
    if (!path) return -1;
    fd = mkstemp(path);
    if (fd >= 0) unlink(path);
    pt_free(path);
    return fd;
}

void online_build_close(struct online_build *ob)
{
    if (!ob) return;
    look_free(&ob->lk);
    if (ob->b.fd >= 0) close(ob->b.fd);
    build_fini(&ob->b);
    json_decref(ob->outcols);
    pt_free(ob->cols), pt_free(ob->f), pt_free(ob->lens), pt_free(ob->cells), pt_free(ob->keep);
    pt_free(ob);
}

int online_build_open(const struct samples_cfg *sc, const char *dir, int replay, const char *const *keep, int nkeep,
                      struct online_build **out)
{
    *out = NULL;
    struct online_build *ob = pt_calloc(1, sizeof *ob);
    if (!ob) return pt_error(PT_ENOMEM, "out of memory");
    ob->o = pt_build_opts_default();
    struct build *b = &ob->b;
    struct csv_reader *r = NULL;
    int rc = build_init(b, sc, &ob->o);
    if (rc) goto fail;
    if ((b->fd = scratch_file(dir)) < 0) {
        rc = pt_error(PT_EIO, "online samples: cannot create a scratch file in %s: %s", dir, strerror(errno));
        goto fail;
    }
    b->keep_open = 1;
    b->sorted = 1;
    if (replay) {
        const char *file = sc->events.path;
        if ((rc = events_open(b, &r))) goto fail;
        rc = stream(b, r, NULL, file);
        csv_reader_close(r);
        r = NULL;
        if (rc == UNSORTED) {
            unmap_old(b);
            state_reset(b);
            b->oflushed = 0;
            if (ftruncate(b->fd, 0)) {
                rc = pt_error(PT_EIO, "online samples: rewinding the scratch file: %s", strerror(errno));
                goto fail;
            }
            struct csv_opts co = {.delim = sc->events.delim};
            rc = sort_and_stream(b, file, &co, dir);
        }
        /* the log's last second is over: its exposures are the log's samples, not pushed ones */
        if (!rc && b->gn) rc = group_flush(b);
        if (rc) goto fail;
        pt_log(PT_LOG_INFO, "online samples: read %" PRId64 " events of %s first (%" PRId64 " bad)", b->events, file,
               b->bad);
    }
    /* pushed events are checked one by one; a bad one is skipped, never fatal */
    ob->o.max_bad_rows = INT64_MAX;
    if ((rc = event_columns(sc, &ob->cols, &ob->ncols)) ||
        (rc = resolve_columns(b, (char **)ob->cols, ob->ncols, "events")))
        goto fail;
    ob->f = pt_calloc((size_t)ob->ncols, sizeof *ob->f);
    ob->lens = pt_calloc((size_t)ob->ncols, sizeof *ob->lens);
    ob->cells = pt_malloc((size_t)ob->ncols * CELL);
    ob->outcols = column_names(b);
    ob->keep = ob->outcols ? pt_calloc(json_array_size(ob->outcols) + 1, 1) : NULL;
    if (!ob->f || !ob->lens || !ob->cells || !ob->keep) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t k = 0; k < json_array_size(ob->outcols); k++)
        ob->keep[k] = find_col(keep, nkeep, json_string_value(json_array_get(ob->outcols, k))) >= 0;
    ob->prev = b->last_t;
    ob->start = ob->taken = out_at(b);
    *out = ob;
    return PT_OK;
fail:
    csv_reader_close(r);
    online_build_close(ob);
    return rc;
}

int online_build_push(struct online_build *ob, const char *json, size_t len, int64_t *used)
{
    struct build *b = &ob->b;
    json_t *a = events_load(json, len);
    int rc = PT_OK;
    int64_t n = 0;
    if (used) *used = 0;
    if (!a) return PT_EINVAL;
    for (size_t r = 0; r < json_array_size(a) && !rc; r++) {
        int64_t t;
        if (event_cells(b->sc, ob->cols, ob->ncols, json_array_get(a, r), r, ob->f, ob->lens, ob->cells, &t)) {
            if (!ob->bad++) pt_log(PT_LOG_WARN, "online samples: %s (skipped; later ones are counted)", pt_errmsg());
            continue;
        }
        if (t < ob->prev) t = ob->prev, ob->late++;
        int64_t t0 = b->events ? b->t0 : ob->first;
        if (t - t0 > INT32_MAX) { /* histories keep 32-bit offsets from the first event: 68 years */
            if (!ob->bad++) pt_log(PT_LOG_WARN, "online samples: event %zu: more than 68 years after the first (skipped)", r);
            continue;
        }
        if (!b->events && !ob->lines) ob->first = t;
        ob->lines++;
        ob->prev = t;
        b->lines++;
        if (look_read(b, &ob->lk, (char **)ob->f, ob->lens, t, "events", (long)r, &rc)) rc = look_step(b, &ob->lk, 0), n++;
    }
    /* every event reaches its group; the newest group stays open for more of
     * its second, but the samples it shows to be done need not wait for it */
    if (!rc) rc = look_step(b, &ob->lk, 1);
    if (!rc) rc = finish_passed(b);
    json_decref(a);
    ob->events += n;
    if (used) *used = n;
    return rc;
}

/* Reads output bytes [from, to): the flushed ones from the file, the rest from the buffer. */
static int out_read(struct build *b, uint64_t from, uint64_t to, char *dst)
{
    uint64_t mid = to < b->oflushed ? to : b->oflushed;
    for (uint64_t at = from; at < mid;) {
        ssize_t n = pread(b->fd, dst + (at - from), (size_t)(mid - at), (off_t)at);
        if (n <= 0) return pt_error(PT_EIO, "online samples: reading the scratch file: %s", n ? strerror(errno) : "short");
        at += (uint64_t)n;
    }
    uint64_t lo = from > b->oflushed ? from : b->oflushed;
    if (to > lo) memcpy(dst + (lo - from), b->obuf + (lo - b->oflushed), (size_t)(to - lo));
    return PT_OK;
}

int online_build_take(struct online_build *ob, int64_t skip, char **json, int64_t *n)
{
    struct build *b = &ob->b;
    *json = NULL, *n = 0;
    uint64_t fin = b->phead < b->ptail ? pend_at(b, b->phead)->off : out_at(b);
    json_t *arr = json_array();
    char *buf = NULL, *txt = NULL;
    struct csv_reader *r = NULL;
    int rc = arr ? PT_OK : pt_error(PT_ENOMEM, "out of memory");
    if (!rc && fin > ob->taken) {
        size_t len = (size_t)(fin - ob->taken);
        if (!(buf = pt_malloc(len + 1))) rc = pt_error(PT_ENOMEM, "out of memory");
        if (!rc) rc = out_read(b, ob->taken, fin, buf);
        struct csv_opts co = {.delim = ","};
        if (!rc) rc = csv_reader_open_mem(&r, buf, len, "online samples", &co);
        size_t nf, *lens, nc = json_array_size(ob->outcols);
        char **f;
        int k;
        while (!rc && (k = csv_reader_next(r, &nf, &f, &lens)) != 0) {
            if (k < 0 || nf != nc) {
                rc = k < 0 ? k : pt_error(PT_EFORMAT, "online samples: a row of %zu fields, not %zu", nf, nc);
                break;
            }
            ob->rows++;
            if (skip > 0) {
                skip--;
                continue;
            }
            json_t *o = json_object();
            for (size_t c = 0; o && c < nc; c++)
                if (ob->keep[c] && lens[c] &&
                    json_object_set_new(o, json_string_value(json_array_get(ob->outcols, c)), json_stringn(f[c], lens[c])))
                    json_decref(o), o = NULL;
            if (!o || json_array_append_new(arr, o)) rc = pt_error(PT_ENOMEM, "out of memory");
        }
        if (!rc) {
            ob->taken = fin;
            /* rows handed out are never read or patched again: give their disk back */
            uint64_t done = (fin < b->oflushed ? fin : b->oflushed) & ~(uint64_t)4095;
            if (done) (void)fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)done);
        }
    }
    if (!rc) {
        char *s = json_dumps(arr, JSON_COMPACT);
        if (!s || !(txt = pt_strdup(s))) rc = pt_error(PT_ENOMEM, "out of memory");
        free(s);
    }
    if (!rc) *json = txt, *n = (int64_t)json_array_size(arr);
    csv_reader_close(r);
    pt_free(buf);
    json_decref(arr);
    return rc;
}

void online_build_stats(const struct online_build *ob, int64_t *events, int64_t *late, int64_t *bad, int64_t *rows,
                        int64_t *waiting)
{
    const struct build *b = &ob->b;
    if (events) *events = ob->events;
    if (late) *late = ob->late;
    if (bad) *bad = ob->bad;
    if (rows) *rows = ob->rows;
    if (waiting) *waiting = b->ptail - b->phead;
}
