/* schema.c: CSV rows → columnar int32/float32 data sets, and the learned
 * encoding (vocabularies, numeric statistics) that goes into the model file.
 *
 * Training data is read once: categorical values get provisional ids in
 * first-seen order, numerics are kept raw; schema_finalize then counts the
 * ids of the train rows and applies min-count, imputation, standardisation and
 * bucketing from the train rows only (no statistic sees valid or test rows)
 * and rewrites the ids in place. Valid/test/predict files are encoded
 * directly with the frozen schema. schema_finalize also fits each feature's
 * drift reference (drift.c) on the final-encoded train rows. */
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv.h"
#include "data/drift.h"
#include "data/schema.h"
#include "util/util.h"

#define MAX_REPORTED_BAD 5

/* ---- schema ---- */

int schema_create(struct schema **out, const struct pt_config *cfg)
{
    *out = NULL;
    struct schema *s = pt_calloc(1, sizeof *s);
    if (!s) return pt_error(PT_ENOMEM, "out of memory");
    s->cfg = cfg;
    s->nfeat = cfg->nfeats;
    s->ntasks = cfg->ntasks;
    s->f = pt_calloc((size_t)cfg->nfeats + 1, sizeof *s->f);
    if (!s->f) {
        pt_free(s);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    for (int i = 0; i < cfg->nfeats; i++) {
        struct feat_state *f = &s->f[i];
        f->cfg = &cfg->feats[i];
        vocab_init(&f->vocab);
        vocab_init(&f->fit);
        f->std = 1;
        if (f->cfg->kind == FEAT_MULTI) {
            f->slot = s->nmulti++;
        } else if (f->cfg->kind == FEAT_CATEGORICAL ||
                   (f->cfg->kind == FEAT_NUMERIC && f->cfg->transform == NUM_BUCKETIZE)) {
            f->is_cat = 1;
            f->slot = s->ncat++;
        } else {
            f->slot = s->nnum++;
        }
        if (f->cfg->hash_buckets > 0) f->rows = (int32_t)f->cfg->hash_buckets;
    }
    *out = s;
    return PT_OK;
}

void schema_free(struct schema *s)
{
    if (!s) return;
    for (int i = 0; i < s->nfeat; i++) {
        vocab_free(&s->f[i].vocab);
        vocab_free(&s->f[i].fit);
        pt_free(s->f[i].remap);
        pt_free(s->f[i].bounds);
        drift_ref_free(s->f[i].drift);
    }
    pt_free(s->f);
    pt_free(s);
}

/* ---- data sets ---- */

int dataset_create(struct dataset **out, const struct schema *s)
{
    struct dataset *d = pt_calloc(1, sizeof *d);
    *out = NULL;
    if (!d) return pt_error(PT_ENOMEM, "out of memory");
    d->ncat = s->ncat;
    d->nmulti = s->nmulti;
    d->nnum = s->nnum;
    d->ntasks = s->ntasks;
    vocab_init(&d->groups);
    d->cat = pt_calloc((size_t)d->ncat + 1, sizeof *d->cat);
    d->moff = pt_calloc((size_t)d->nmulti + 1, sizeof *d->moff);
    d->mids = pt_calloc((size_t)d->nmulti + 1, sizeof *d->mids);
    d->mlen = pt_calloc((size_t)d->nmulti + 1, sizeof *d->mlen);
    d->mcap = pt_calloc((size_t)d->nmulti + 1, sizeof *d->mcap);
    d->num = pt_calloc((size_t)d->nnum + 1, sizeof *d->num);
    if (!d->cat || !d->moff || !d->mids || !d->mlen || !d->mcap || !d->num) {
        dataset_free(d);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    *out = d;
    return PT_OK;
}

void dataset_clear(struct dataset *d)
{
    if (d->keys)
        for (int64_t i = 0; i < d->n; i++) {
            pt_free(d->keys[i]);
            d->keys[i] = NULL;
        }
    d->n = 0;
    for (int j = 0; d->mlen && j < d->nmulti; j++) d->mlen[j] = 0;
}

void dataset_drop_cells(struct dataset *d)
{
    for (int j = 0; d->cat && j < d->ncat; j++) pt_free(d->cat[j]), d->cat[j] = NULL;
    for (int j = 0; d->num && j < d->nnum; j++) pt_free(d->num[j]), d->num[j] = NULL;
    pt_free(d->y);
    d->y = NULL;
}

void dataset_free(struct dataset *d)
{
    if (!d) return;
    dataset_clear(d);
    for (int j = 0; d->cat && j < d->ncat; j++) pt_free(d->cat[j]);
    for (int j = 0; d->num && j < d->nnum; j++) pt_free(d->num[j]);
    for (int j = 0; d->moff && j < d->nmulti; j++) pt_free(d->moff[j]);
    for (int j = 0; d->mids && j < d->nmulti; j++) pt_free(d->mids[j]);
    pt_free(d->cat);
    pt_free(d->num);
    pt_free(d->moff);
    pt_free(d->mids);
    pt_free(d->mlen);
    pt_free(d->mcap);
    pt_free(d->y);
    pt_free(d->group);
    pt_free(d->keys);
    vocab_free(&d->groups);
    pt_free(d);
}

/* Moves *p's first used elements into a new block of cap. */
static int grow(void **p, int64_t cap, int64_t used, size_t elem)
{
    void *np = pt_malloc((size_t)cap * elem);
    if (!np) return pt_error(PT_ENOMEM, "out of memory");
    if (used) memcpy(np, *p, (size_t)used * elem);
    pt_free(*p);
    *p = np;
    return PT_OK;
}

static int dataset_reserve(struct dataset *d, int64_t need, int with_group, int with_keys)
{
    if (need <= d->cap && (!with_group || d->group) && (!with_keys || d->keys)) return PT_OK;
    int64_t cap = d->cap, n = d->n;
    while (cap < need) cap = cap ? cap * 2 : 4096;
    for (int j = 0; j < d->ncat; j++)
        if (grow((void **)&d->cat[j], cap, n, sizeof(int32_t))) return PT_ENOMEM;
    for (int j = 0; j < d->nnum; j++)
        if (grow((void **)&d->num[j], cap, n, sizeof(float))) return PT_ENOMEM;
    for (int j = 0; j < d->nmulti; j++) {
        if (grow((void **)&d->moff[j], cap + 1, d->cap ? n + 1 : 0, sizeof(int32_t))) return PT_ENOMEM;
        if (d->cap == 0) d->moff[j][0] = 0;
    }
    if (d->ntasks && grow((void **)&d->y, cap * d->ntasks, n * d->ntasks, sizeof(float))) return PT_ENOMEM;
    if (with_group && grow((void **)&d->group, cap, d->group ? n : 0, sizeof(int32_t))) return PT_ENOMEM;
    if (with_keys) {
        if (grow((void **)&d->keys, cap, d->keys ? n : 0, sizeof(char *))) return PT_ENOMEM;
        for (int64_t i = n; i < cap; i++) d->keys[i] = NULL;
    }
    d->cap = cap;
    return PT_OK;
}

/* ---- reader ---- */

struct data_reader {
    struct csv_reader *csv;
    char *path;
    struct read_opts o;
    size_t ncols;
    int *fcol, *tcol, *kcol, gcol;
    int nkeys;
    char *key_header;
    struct rng split;
    /* one row's encoding, committed only when the whole row is good */
    int32_t *rcat;
    uint64_t *rhash;       /* per feature: hash of its value in the row encoded next */
    float *rnum, *ry;
    int32_t *rmcount, *rmids;
    size_t rmcap;
    int32_t rgroup;
    char *rkey;
    size_t rkeycap;
    int done;
    /* data_reader_read reads one record ahead: the record after the one it
     * encodes is hashed and its table slots prefetched first, so those
     * cache misses overlap the encoding (a shuffled id's slot is a miss in
     * a big vocabulary). The record waiting is a copy (the CSV reader's
     * fields last until its next call): its fields, line and hashes. */
    int ahead;
    long aline;
    char *abuf;
    size_t abufcap;
    char **afields;
    size_t *alens;
    uint64_t *nhash;       /* the hashes of the record just read */
    /* a rows reader (data_reader_open_rows): no file; rows arrive as strings
     * in feature order, and the schema is only read, never written */
    int rows;
    char **rfields;        /* [nfeat] the row's strings, "" for NULL */
    size_t *rlens;
    size_t pathcap, whatlen; /* path: "WHAT R" for messages */
};

static const char *const MISSING[] = {"", "?", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"};

static int is_missing(const char *s)
{
    if (*s >= '0' && *s <= '9') return 0; /* most cells: a number, missing is never one */
    for (size_t i = 0; i < PT_ARRAY_LEN(MISSING); i++)
        if (!strcmp(s, MISSING[i])) return 1;
    return 0;
}

static int find_col(char **names, size_t n, const char *want)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], want)) return (int)i;
    return -1;
}

void data_reader_close(struct data_reader *r)
{
    if (!r) return;
    csv_reader_close(r->csv);
    pt_free(r->path);
    pt_free(r->fcol);
    pt_free(r->tcol);
    pt_free(r->kcol);
    pt_free(r->key_header);
    pt_free(r->rcat);
    pt_free(r->rhash);
    pt_free(r->abuf);
    pt_free(r->afields);
    pt_free(r->alens);
    pt_free(r->nhash);
    pt_free(r->rnum);
    pt_free(r->ry);
    pt_free(r->rmcount);
    pt_free(r->rmids);
    pt_free(r->rkey);
    pt_free(r->rfields);
    pt_free(r->rlens);
    pt_free(r);
}

const char *data_reader_key_header(const struct data_reader *r) { return r->key_header; }

/* Appends s to *buf as one CSV field (quoted when it needs to be), after a
 * comma when comma is set. */
static int append_csv_field(char **buf, size_t *cap, size_t *len, int comma, const char *s)
{
    size_t n = strlen(s);
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    size_t need = *len + 2 * n + 5;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (nc < need) nc *= 2;
        char *nb = pt_realloc(*buf, nc);
        if (!nb) return pt_error(PT_ENOMEM, "out of memory");
        *buf = nb;
        *cap = nc;
    }
    char *p = *buf + *len;
    if (comma) *p++ = ',';
    if (quote) *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') *p++ = '"';
        *p++ = s[i];
    }
    if (quote) *p++ = '"';
    *p = 0;
    *len = (size_t)(p - *buf);
    return PT_OK;
}

int data_reader_open(struct data_reader **out, const struct schema *s, const char *path,
                     const struct read_opts *o)
{
    const struct pt_config *c = s->cfg;
    *out = NULL;
    struct data_reader *r = pt_calloc(1, sizeof *r);
    if (!r) return pt_error(PT_ENOMEM, "out of memory");
    r->o = *o;
    r->gcol = -1;
    rng_seed(&r->split, o->split_seed);
    int rc = PT_ENOMEM;
    char **names = NULL;
    size_t nnames = 0, *lens;
    char **hdr = NULL;
    if (!(r->path = pt_strdup(path))) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto fail;
    }
    struct csv_opts co = {.delim = c->delim, .quote = '"'};
    rc = csv_reader_open(&r->csv, path, &co);
    if (rc) goto fail;
    if (c->header) {
        rc = csv_reader_next(r->csv, &nnames, &names, &lens);
        if (rc < 0) goto fail;
        if (rc == 0) {
            rc = pt_error_at(PT_EPARSE, path, 1, "the file is empty (a header row was expected)");
            goto fail;
        }
        /* names points into the reader's record buffer: copy it. */
        hdr = pt_calloc(nnames + 1, sizeof *hdr);
        if (!hdr) { rc = pt_error(PT_ENOMEM, "out of memory"); goto fail; }
        for (size_t i = 0; i < nnames; i++)
            if (!(hdr[i] = pt_strdup(names[i]))) { rc = pt_error(PT_ENOMEM, "out of memory"); goto fail; }
        names = hdr;
    } else {
        names = c->columns;
        nnames = (size_t)c->ncolumns;
    }
    r->ncols = nnames;
    r->fcol = pt_calloc((size_t)s->nfeat + 1, sizeof(int));
    r->tcol = pt_calloc((size_t)s->ntasks + 1, sizeof(int));
    r->kcol = pt_calloc((size_t)c->nkeys + 1, sizeof(int));
    r->rcat = pt_calloc((size_t)s->ncat + 1, sizeof(int32_t));
    r->rhash = pt_calloc((size_t)s->nfeat + 1, sizeof(uint64_t));
    r->nhash = pt_calloc((size_t)s->nfeat + 1, sizeof(uint64_t));
    r->afields = pt_calloc(nnames + 1, sizeof(char *));
    r->alens = pt_calloc(nnames + 1, sizeof(size_t));
    r->rnum = pt_calloc((size_t)s->nnum + 1, sizeof(float));
    r->ry = pt_calloc((size_t)s->ntasks + 1, sizeof(float));
    r->rmcount = pt_calloc((size_t)s->nmulti + 1, sizeof(int32_t));
    if (!r->fcol || !r->tcol || !r->kcol || !r->rcat || !r->rhash || !r->nhash || !r->afields || !r->alens ||
        !r->rnum || !r->ry || !r->rmcount) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto fail;
    }
    const char *hint = c->header ? "the header row" : "data.format.columns";
    for (int i = 0; i < s->nfeat; i++) {
        r->fcol[i] = find_col(names, nnames, s->f[i].cfg->name);
        if (r->fcol[i] < 0) {
            rc = pt_error_at(PT_ESCHEMA, path, 1, "feature column '%s' is not in %s", s->f[i].cfg->name, hint);
            goto fail;
        }
    }
    for (int t = 0; t < s->ntasks; t++) {
        r->tcol[t] = find_col(names, nnames, c->tasks[t].label);
        if (r->tcol[t] < 0 && (o->flags & READ_LABELS)) {
            rc = pt_error_at(PT_ESCHEMA, path, 1, "label column '%s' of task '%s' is not in %s",
                             c->tasks[t].label, c->tasks[t].name, hint);
            goto fail;
        }
    }
    if (o->group_by) {
        r->gcol = find_col(names, nnames, o->group_by);
        if (r->gcol < 0) {
            rc = pt_error_at(PT_ESCHEMA, path, 1, "group column '%s' is not in %s", o->group_by, hint);
            goto fail;
        }
    }
    if (o->flags & READ_KEYS) {
        size_t cap = 0, len = 0;
        r->nkeys = c->nkeys;
        for (int k = 0; k < c->nkeys; k++) {
            r->kcol[k] = find_col(names, nnames, c->keys[k]);
            if (r->kcol[k] < 0) {
                rc = pt_error_at(PT_ESCHEMA, path, 1, "key column '%s' is not in %s", c->keys[k], hint);
                goto fail;
            }
            if ((rc = append_csv_field(&r->key_header, &cap, &len, k > 0, c->keys[k]))) goto fail;
        }
        if (!r->key_header && !(r->key_header = pt_strdup(""))) {
            rc = pt_error(PT_ENOMEM, "out of memory");
            goto fail;
        }
    }
    if (hdr) {
        for (size_t i = 0; i < nnames; i++) pt_free(hdr[i]);
        pt_free(hdr);
    }
    *out = r;
    return PT_OK;
fail:
    if (hdr) {
        for (size_t i = 0; i < nnames; i++) pt_free(hdr[i]);
        pt_free(hdr);
    }
    data_reader_close(r);
    return rc;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Clinger's fast path for the common plain decimal ([+-]digits[.digits],
 * at most 15 digits, then a space or the end): the digits as an integer
 * and 10^k are exact doubles, so one division rounds once, as strtod does,
 * to the same double. Returns 0 for anything else, left to strtod. */
static int parse_decimal(const char *s, double *v, const char **end)
{
    int neg = *s == '-';
    if (*s == '-' || *s == '+') s++;
    uint64_t m = 0;
    int nd = 0, nf = -1;
    for (;; s++) {
        if (*s >= '0' && *s <= '9') {
            m = m * 10 + (uint64_t)(*s - '0');
            nd++;
            if (nf >= 0) nf++;
        } else if (*s == '.' && nf < 0) {
            nf = 0;
        } else {
            break;
        }
    }
    if (nd == 0 || nd > 15 || (*s && *s != ' ') || FLT_EVAL_METHOD != 0) return 0;
    double x = nf > 0 ? (double)m / POW10[nf] : (double)m;
    *v = neg ? -x : x;
    *end = s;
    return 1;
}

static int parse_float(const char *s, float *out)
{
    const char *end;
    double v;
    while (*s == ' ') s++;
    if (!parse_decimal(s, &v, &end)) {
        char *e;
        errno = 0;
        v = strtod(s, &e);
        end = e;
    }
    while (*end == ' ') end++;
    if (end == s || *end) return -1;
    if (!isfinite(v) || fabs(v) > 3.0e38) return -2;
    *out = (float)v;
    return 0;
}

static int32_t hash_id(const struct feat_cfg *f, const char *s, size_t len)
{
    return (int32_t)(pt_hash64(s, len, 0x5eed) % (uint64_t)f->hash_buckets);
}

/* Encodes one categorical value: provisional id when fitting, final otherwise.
 * Fitted values must be UTF-8: the model file keeps vocabularies as JSON. */
static int cat_id_h(struct data_reader *r, long line, struct feat_state *f, int fit, const char *s, size_t len,
                    uint64_t h, int32_t *id)
{
    if (f->cfg->hash_buckets > 0) {
        *id = hash_id(f->cfg, s, len);
        return PT_OK;
    }
    if (fit) {
        /* a value already in the vocabulary was checked when it went in */
        int32_t k = vocab_find_h(&f->fit, s, len, h);
        if (k >= 0) {
            *id = k;
            return PT_OK;
        }
        if (!pt_utf8_valid(s, len))
            return pt_error_at(PT_EPARSE, r->path, line, "column '%s': the value is not UTF-8 text (convert the file to UTF-8)",
                               f->cfg->name);
        return vocab_add_h(&f->fit, s, len, h, id);
    }
    int32_t k = vocab_find_h(&f->vocab, s, len, h);
    *id = k < 0 ? 0 : k + 1;
    return PT_OK;
}

static int cat_id(struct data_reader *r, long line, struct feat_state *f, int fit, const char *s, size_t len,
                  int32_t *id)
{
    return cat_id_h(r, line, f, fit, s, len, vocab_hash(s, len), id);
}

static int push_mid(struct data_reader *r, size_t *n, int32_t id)
{
    if (*n == r->rmcap) {
        size_t nc = r->rmcap ? r->rmcap * 2 : 64;
        int32_t *nb = pt_realloc(r->rmids, nc * sizeof *nb);
        if (!nb) return pt_error(PT_ENOMEM, "out of memory");
        r->rmids = nb;
        r->rmcap = nc;
    }
    r->rmids[(*n)++] = id;
    return PT_OK;
}

/* Hashes a record's categorical values into h[feature] and prefetches their
 * table slots, so the misses of all its lookups overlap. */
static void hash_row(const struct data_reader *r, const struct schema *s, char **fields, const size_t *lens,
                     uint64_t *h)
{
    int fit = (r->o.flags & READ_FIT) != 0;
    for (int i = 0; i < s->nfeat; i++) {
        const struct feat_state *f = &s->f[i];
        if (f->cfg->kind != FEAT_CATEGORICAL || f->cfg->hash_buckets > 0) continue;
        h[i] = vocab_hash(fields[r->fcol[i]], lens[r->fcol[i]]);
        vocab_prefetch(fit ? &f->fit : &f->vocab, h[i]);
    }
}

/* Encodes one record, whose hashes hash_row put in r->rhash, into the
 * reader's row buffers. Returns PT_OK, PT_ENOMEM, or PT_EPARSE/PT_ENUMERIC
 * with "FILE:LINE: ..." set (a bad row). */
static int encode_row(struct data_reader *r, struct schema *s, char **fields, size_t *lens,
                      long line, size_t *nmids)
{
    const struct pt_config *c = s->cfg;
    int fit = (r->o.flags & READ_FIT) != 0;
    int rc;
    *nmids = 0;
    for (int i = 0; i < s->nfeat; i++) {
        struct feat_state *f = &s->f[i];
        const struct feat_cfg *fc = f->cfg;
        const char *v = fields[r->fcol[i]];
        size_t vl = lens[r->fcol[i]];
        if (fc->kind == FEAT_CATEGORICAL) {
            if ((rc = cat_id_h(r, line, f, fit, v, vl, r->rhash[i], &r->rcat[f->slot]))) return rc;
        } else if (fc->kind == FEAT_MULTI) {
            size_t sl = strlen(fc->sep);
            int32_t cnt = 0;
            const char *p = v, *end = v + vl;
            while (vl && p <= end) {
                const char *q = strstr(p, fc->sep);
                if (!q) q = end;
                if (q > p) {
                    int32_t id;
                    if ((rc = cat_id(r, line, f, fit, p, (size_t)(q - p), &id))) return rc;
                    if ((rc = push_mid(r, nmids, id))) return rc;
                    cnt++;
                }
                p = q + sl;
            }
            r->rmcount[f->slot] = cnt;
        } else {
            float x = NAN;
            int bad = is_missing(v) ? 1 : parse_float(v, &x);
            if (bad) {
                if (fc->impute == IMPUTE_NONE) {
                    if (bad == -2)
                        return pt_error_at(PT_ENUMERIC, r->path, line,
                                           "column '%s': '%s' is not a finite number (set impute: in the config to replace it)",
                                           fc->name, v);
                    return pt_error_at(PT_EPARSE, r->path, line,
                                       "column '%s': %s%s%s is not a number (set impute: in the config to replace it)",
                                       fc->name, *v ? "'" : "an empty value", *v ? v : "", *v ? "'" : "");
                }
                /* a rows reader may share s with other threads: it keeps
                 * no count (the count is a training-time report) */
                if (!r->rows) f->imputed++;
                x = fit ? NAN : f->impute_value;
            }
            if (!fit) {
                if (fc->transform == NUM_STANDARDIZE) x = (float)((x - f->mean) / f->std);
                if (fc->transform == NUM_BUCKETIZE) {
                    int lo = 0, hi = f->nbounds;
                    while (lo < hi) {
                        int mid = (lo + hi) / 2;
                        if (f->bounds[mid] <= x) lo = mid + 1; else hi = mid;
                    }
                    r->rcat[f->slot] = lo;
                }
            }
            if (f->is_cat && fit) memcpy(&r->rcat[f->slot], &x, sizeof x); /* raw bits until finalise */
            else if (!f->is_cat) r->rnum[f->slot] = x;
        }
    }
    for (int t = 0; t < s->ntasks; t++) {
        const struct task_cfg *tc = &c->tasks[t];
        float y = NAN;
        if (r->tcol[t] >= 0) {
            const char *v = fields[r->tcol[t]];
            if (!*v) {
                y = NAN;
            } else if (tc->type == TASK_REGRESSION) {
                if (parse_float(v, &y))
                    return pt_error_at(PT_EPARSE, r->path, line, "label '%s' of task '%s' is not a finite number",
                                       v, tc->name);
            } else if (tc->npositive) {
                y = 0;
                for (int k = 0; k < tc->npositive; k++)
                    if (!strcmp(v, tc->positive[k])) y = 1;
            } else if (!strcmp(v, "1") || !strcmp(v, "1.0") || !strcmp(v, "true")) {
                y = 1;
            } else if (!strcmp(v, "0") || !strcmp(v, "0.0") || !strcmp(v, "false")) {
                y = 0;
            } else {
                return pt_error_at(PT_EPARSE, r->path, line,
                                   "label '%s' of task '%s' is not 0 or 1 (list the positive values under 'positive:' in the task)",
                                   v, tc->name);
            }
        }
        r->ry[t] = y;
    }
    /* a task counted only where another task's label is 1 (CVR on clicks) */
    for (int t = 0; t < s->ntasks; t++) {
        int w = c->tasks[t].only_when_task;
        if (w >= 0 && !(r->ry[w] > 0.5f)) r->ry[t] = NAN;
    }
    return PT_OK;
}

static int commit_row(struct data_reader *r, struct schema *s, struct dataset *d, char **fields, size_t nmids)
{
    int rc = dataset_reserve(d, d->n + 1, r->gcol >= 0, (r->o.flags & READ_KEYS) != 0);
    if (rc) return rc;
    int64_t i = d->n;
    for (int j = 0; j < d->ncat; j++) d->cat[j][i] = r->rcat[j];
    for (int j = 0; j < d->nnum; j++) d->num[j][i] = r->rnum[j];
    for (int t = 0; t < d->ntasks; t++) d->y[i * d->ntasks + t] = r->ry[t];
    size_t k = 0;
    for (int fi = 0; fi < s->nfeat; fi++) {
        struct feat_state *f = &s->f[fi];
        if (f->cfg->kind != FEAT_MULTI) continue;
        int j = f->slot;
        int32_t cnt = r->rmcount[j];
        if (d->mlen[j] + cnt > INT32_MAX) return pt_error(PT_EINVAL, "multi-valued column '%s' holds over 2^31 ids", f->cfg->name);
        if (d->mlen[j] + cnt > d->mcap[j]) {
            int64_t nc = d->mcap[j] ? d->mcap[j] : 4096;
            while (nc < d->mlen[j] + cnt) nc *= 2;
            if (grow((void **)&d->mids[j], nc, d->mlen[j], sizeof(int32_t))) return PT_ENOMEM;
            d->mcap[j] = nc;
        }
        if (cnt) memcpy(d->mids[j] + d->mlen[j], r->rmids + k, (size_t)cnt * sizeof(int32_t));
        k += (size_t)cnt;
        d->mlen[j] += cnt;
        d->moff[j][i + 1] = (int32_t)d->mlen[j];
    }
    (void)nmids;
    if (r->gcol >= 0) {
        int32_t g;
        if ((rc = vocab_add(&d->groups, fields[r->gcol], strlen(fields[r->gcol]), &g))) return rc;
        d->group[i] = g;
    }
    if (r->o.flags & READ_KEYS) {
        size_t len = 0;
        for (int kk = 0; kk < r->nkeys; kk++) {
            if (append_csv_field(&r->rkey, &r->rkeycap, &len, kk > 0, fields[r->kcol[kk]])) return PT_ENOMEM;
        }
        if (!(d->keys[i] = pt_strdup(r->nkeys ? r->rkey : ""))) return pt_error(PT_ENOMEM, "out of memory");
    }
    d->n++;
    return PT_OK;
}

static int bad_row(struct data_reader *r, struct dataset *d0, int rc)
{
    if (rc == PT_ENOMEM || rc == PT_EIO) return rc;
    if (d0->bad_rows >= r->o.max_bad_rows) {
        if (r->o.max_bad_rows > 0) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", pt_errmsg());
            return pt_error(PT_ETOOMANYBAD, "%s (more than the %lld bad rows allowed by max_bad_rows)", msg,
                            (long long)r->o.max_bad_rows);
        }
        return rc;
    }
    d0->bad_rows++;
    if (d0->bad_rows <= MAX_REPORTED_BAD) pt_log(PT_LOG_WARN, "skipped bad row: %s", pt_errmsg());
    return PT_OK;
}

/* Encodes and commits the record waiting ahead, if any (*rows counts it). */
static int flush_ahead(struct data_reader *r, struct schema *s, struct dataset **dst, int64_t *rows)
{
    if (!r->ahead) return PT_OK;
    r->ahead = 0;
    size_t nmids;
    int rc = encode_row(r, s, r->afields, r->alens, r->aline, &nmids);
    if (rc) return bad_row(r, dst[0], rc);
    struct dataset *d = dst[0];
    if ((r->o.valid_fraction > 0 || r->o.test_fraction > 0) && dst[1] && dst[2]) {
        float u = rng_uniform(&r->split);
        if (u < r->o.valid_fraction) d = dst[1];
        else if (u < r->o.valid_fraction + r->o.test_fraction) d = dst[2];
    }
    if ((rc = commit_row(r, s, d, r->afields, nmids))) return rc;
    (*rows)++;
    return PT_OK;
}

/* Copies a record to wait ahead; its hashes (r->nhash) become r->rhash. */
static int keep_ahead(struct data_reader *r, char **fields, const size_t *lens, size_t nf, long line)
{
    size_t need = 0;
    for (size_t i = 0; i < nf; i++) need += lens[i] + 1;
    if (pt_grow((void **)&r->abuf, &r->abufcap, need, 1)) return PT_ENOMEM;
    char *p = r->abuf;
    for (size_t i = 0; i < nf; i++) {
        memcpy(p, fields[i], lens[i] + 1);
        r->afields[i] = p;
        r->alens[i] = lens[i];
        p += lens[i] + 1;
    }
    uint64_t *t = r->rhash;
    r->rhash = r->nhash, r->nhash = t;
    r->aline = line;
    r->ahead = 1;
    return PT_OK;
}

int data_reader_read(struct data_reader *r, struct schema *s, struct dataset **dst, int *eof)
{
    int64_t rows = 0;
    *eof = 0;
    /* each pass commits at most the record waiting ahead, so at most
     * max_rows a call; bad records are reported after it, in file order */
    while (r->o.max_rows <= 0 || rows < r->o.max_rows) {
        size_t nf = 0, *lens = NULL;
        char **fields = NULL;
        long line = 0;
        int rc, got = 0;
        while (!r->done && !got) {
            rc = csv_reader_next(r->csv, &nf, &fields, &lens);
            if (rc == 0) {
                r->done = 1;
                break;
            }
            line = csv_reader_line(r->csv);
            if (rc == PT_EIO) return rc;
            if (rc > 0 && nf == 1 && lens[0] == 0) continue; /* blank line */
            if (rc > 0 && nf == r->ncols) {
                got = 1;
                break;
            }
            /* a bad record: the one waiting goes first, and the CSV reader's
             * message would be lost to its encoding's */
            char msg[1024];
            int crc = rc;
            snprintf(msg, sizeof msg, "%s", rc < 0 ? pt_errmsg() : "");
            if ((rc = flush_ahead(r, s, dst, &rows))) return rc;
            if (crc < 0) rc = pt_error(crc, "%s", msg);
            else
                rc = pt_error_at(PT_EPARSE, r->path, line, "expected %zu fields, found %zu%s", r->ncols, nf,
                                 nf == 1 ? " (is data.format.delimiter right?)" : "");
            if ((rc = bad_row(r, dst[0], rc))) return rc;
        }
        if (got) hash_row(r, s, fields, lens, r->nhash);
        if ((rc = flush_ahead(r, s, dst, &rows))) return rc;
        if (!got) break;
        if ((rc = keep_ahead(r, fields, lens, nf, line))) return rc;
    }
    *eof = r->done && !r->ahead;
    return PT_OK;
}

int data_reader_open_rows(struct data_reader **out, const struct schema *s, const char *what, int labels)
{
    *out = NULL;
    struct data_reader *r = pt_calloc(1, sizeof *r);
    if (!r) return pt_error(PT_ENOMEM, "out of memory");
    r->rows = 1;
    r->gcol = -1;
    r->ncols = (size_t)s->nfeat + (labels ? (size_t)s->ntasks : 0);
    /* messages read "what R: column 'C': ..." (encode_row's "FILE: ..." form
     * with line 0), so the buffer holds what plus a row number */
    r->pathcap = strlen(what) + 32;
    r->path = pt_malloc(r->pathcap);
    r->fcol = pt_calloc((size_t)s->nfeat + 1, sizeof(int));
    r->tcol = pt_calloc((size_t)s->ntasks + 1, sizeof(int));
    r->kcol = pt_calloc(1, sizeof(int));
    r->rcat = pt_calloc((size_t)s->ncat + 1, sizeof(int32_t));
    r->rhash = pt_calloc((size_t)s->nfeat + 1, sizeof(uint64_t));
    r->rnum = pt_calloc((size_t)s->nnum + 1, sizeof(float));
    r->ry = pt_calloc((size_t)s->ntasks + 1, sizeof(float));
    r->rmcount = pt_calloc((size_t)s->nmulti + 1, sizeof(int32_t));
    r->rfields = pt_calloc(r->ncols + 1, sizeof(char *));
    r->rlens = pt_calloc(r->ncols + 1, sizeof(size_t));
    if (!r->path || !r->fcol || !r->tcol || !r->kcol || !r->rcat || !r->rhash || !r->rnum || !r->ry ||
        !r->rmcount || !r->rfields || !r->rlens) {
        data_reader_close(r);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    r->whatlen = (size_t)snprintf(r->path, r->pathcap, "%s", what);
    for (int i = 0; i < s->nfeat; i++) r->fcol[i] = i;
    /* labels: fields [nfeat, nfeat + ntasks) when asked for, else not read (NaN) */
    for (int t = 0; t < s->ntasks; t++) r->tcol[t] = labels ? s->nfeat + t : -1;
    *out = r;
    return PT_OK;
}

int data_reader_add_row(struct data_reader *r, struct schema *s, struct dataset *d, const char *const *fields,
                        const size_t *lens, long row)
{
    if (!r->rows || !s->fitted) return pt_error(PT_EINVAL, "data_reader_add_row: not a rows reader on a fitted schema");
    /* encode_row takes a CSV record's char **: it only reads the strings */
    for (size_t i = 0; i < r->ncols; i++) {
        r->rfields[i] = fields[i] ? (char *)fields[i] : (char *)"";
        r->rlens[i] = fields[i] ? lens[i] : 0;
    }
    snprintf(r->path + r->whatlen, r->pathcap - r->whatlen, " %ld", row);
    size_t nmids;
    hash_row(r, s, r->rfields, r->rlens, r->rhash);
    int rc = encode_row(r, s, r->rfields, r->rlens, 0, &nmids);
    if (rc == PT_OK) rc = commit_row(r, s, d, r->rfields, nmids);
    return rc;
}

int data_load(struct schema *s, const char *path, const struct read_opts *o, struct dataset **dst)
{
    struct data_reader *r;
    int eof, rc = data_reader_open(&r, s, path, o);
    if (rc) return rc;
    rc = data_reader_read(r, s, dst, &eof);
    if (rc == PT_OK && dst[0]->n == 0)
        rc = pt_error_at(PT_EPARSE, path, 0, "no data rows");
    data_reader_close(r);
    return rc;
}

static int finalize_numeric(struct feat_state *f, struct dataset **ds, int nds)
{
    const struct feat_cfg *fc = f->cfg;
    struct dataset *tr = ds[0];
    double sum = 0, sq = 0;
    int64_t n = 0;
    /* raw values live in the num column, or as float bits in the cat column */
    for (int64_t i = 0; i < tr->n; i++) {
        float x;
        if (f->is_cat) memcpy(&x, &tr->cat[f->slot][i], sizeof x);
        else x = tr->num[f->slot][i];
        if (isnan(x)) continue;
        sum += x;
        n++;
    }
    double mean = n ? sum / (double)n : 0;
    for (int64_t i = 0; i < tr->n; i++) {
        float x;
        if (f->is_cat) memcpy(&x, &tr->cat[f->slot][i], sizeof x);
        else x = tr->num[f->slot][i];
        if (!isnan(x)) sq += (x - mean) * (x - mean);
    }
    double sd = n ? sqrt(sq / (double)n) : 1;
    f->mean = mean;
    f->std = sd > 0 ? sd : 1;
    f->impute_value = fc->impute == IMPUTE_CONST ? fc->impute_value : (float)mean;
    if (f->is_cat) {
        /* quantile bounds from sorted train values */
        float *v = pt_malloc((size_t)(tr->n ? tr->n : 1) * sizeof *v);
        if (!v) return pt_error(PT_ENOMEM, "out of memory");
        for (int64_t i = 0; i < tr->n; i++) {
            float x;
            memcpy(&x, &tr->cat[f->slot][i], sizeof x);
            v[i] = isnan(x) ? f->impute_value : x;
        }
        int rc = drift_sort_floats(v, tr->n);
        if (rc) {
            pt_free(v);
            return rc;
        }
        f->bounds = pt_malloc((size_t)fc->buckets * sizeof *f->bounds);
        if (!f->bounds) {
            pt_free(v);
            return pt_error(PT_ENOMEM, "out of memory");
        }
        f->nbounds = 0;
        for (int b = 1; b < fc->buckets && tr->n; b++) {
            float q = v[(int64_t)((double)b * (double)tr->n / fc->buckets)];
            if (f->nbounds == 0 || q > f->bounds[f->nbounds - 1]) f->bounds[f->nbounds++] = q;
        }
        pt_free(v);
        f->rows = f->nbounds + 1;
    }
    for (int k = 0; k < nds; k++) {
        struct dataset *d = ds[k];
        if (!d) continue;
        for (int64_t i = 0; i < d->n; i++) {
            float x;
            if (f->is_cat) memcpy(&x, &d->cat[f->slot][i], sizeof x);
            else x = d->num[f->slot][i];
            if (isnan(x)) x = f->impute_value;
            if (f->is_cat) {
                int lo = 0, hi = f->nbounds;
                while (lo < hi) {
                    int mid = (lo + hi) / 2;
                    if (f->bounds[mid] <= x) lo = mid + 1; else hi = mid;
                }
                d->cat[f->slot][i] = lo;
            } else {
                if (fc->transform == NUM_STANDARDIZE) x = (float)((x - f->mean) / f->std);
                d->num[f->slot][i] = x;
            }
        }
    }
    return PT_OK;
}

/* Min-count counts the provisional ids in ds[0] (the train rows kept), so
 * reading does not have to: values of bad rows and of rows split off to
 * valid or test got an id but are not counted. */
static int finalize_vocab(struct feat_state *f, struct dataset **ds, int nds)
{
    const struct dataset *tr = nds > 0 ? ds[0] : NULL;
    int32_t nfit = f->fit.n;
    int64_t *counts = pt_calloc((size_t)(nfit ? nfit : 1), sizeof *counts);
    f->remap = pt_malloc((size_t)(nfit ? nfit : 1) * sizeof *f->remap);
    if (!counts || !f->remap) {
        pt_free(counts);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    if (tr && f->cfg->kind == FEAT_CATEGORICAL)
        for (int64_t i = 0; i < tr->n; i++) counts[tr->cat[f->slot][i]]++;
    else if (tr)
        for (int64_t i = 0; i < tr->mlen[f->slot]; i++) counts[tr->mids[f->slot][i]]++;
    int32_t next = 1;
    for (int32_t p = 0; p < nfit; p++) f->remap[p] = counts[p] >= f->cfg->min_count ? next++ : 0;
    pt_free(counts);
    if (next - 1 == nfit && f->vocab.n == 0) {
        /* every value kept, in first-seen order: the fit vocabulary is the
         * final one, without hashing each value again */
        vocab_free(&f->vocab);
        f->vocab = f->fit;
        vocab_init(&f->fit);
    } else {
        for (int32_t p = 0; p < nfit; p++) {
            if (!f->remap[p]) continue;
            int32_t id;
            const char *str = vocab_str(&f->fit, p);
            int rc = vocab_add(&f->vocab, str, strlen(str), &id);
            if (rc) return rc;
        }
    }
    f->rows = next;
    for (int k = 0; k < nds; k++) {
        struct dataset *d = ds[k];
        if (!d) continue;
        if (f->cfg->kind == FEAT_CATEGORICAL)
            for (int64_t i = 0; i < d->n; i++) d->cat[f->slot][i] = f->remap[d->cat[f->slot][i]];
        else
            for (int64_t i = 0; i < d->mlen[f->slot]; i++) d->mids[f->slot][i] = f->remap[d->mids[f->slot][i]];
    }
    vocab_free(&f->fit);
    pt_free(f->remap);
    f->remap = NULL;
    return PT_OK;
}

int schema_finalize(struct schema *s, struct dataset **ds, int nds)
{
    for (int i = 0; i < s->nfeat; i++) {
        struct feat_state *f = &s->f[i];
        int rc = PT_OK;
        if (f->cfg->kind == FEAT_NUMERIC) rc = finalize_numeric(f, ds, nds);
        else if (f->cfg->hash_buckets <= 0) rc = finalize_vocab(f, ds, nds);
        if (rc) return rc;
    }
    /* the drift reference describes what the model consumes: the final ids
     * and transformed values of the train rows, so it comes last */
    if (nds > 0 && ds[0]) {
        int rc = drift_fit(s, ds[0]);
        if (rc) return rc;
    }
    s->fitted = 1;
    return PT_OK;
}

/* ---- JSON ---- */

/* A vocabulary entry that is not UTF-8 cannot be a JSON string: refused,
 * since a model whose vocabulary lost an entry would shift every later id. */
static int vocab_json(json_t *arr, const struct feat_state *f)
{
    for (int32_t k = 0; k < f->vocab.n; k++) {
        const char *str = vocab_str(&f->vocab, k);
        json_t *j = json_string(str);
        if (!j) {
            if (pt_utf8_valid(str, strlen(str))) return pt_error(PT_ENOMEM, "out of memory");
            return pt_error(PT_EINVAL, "column '%s': vocabulary entry %d is not UTF-8 text (a model file keeps vocabularies as JSON)",
                            f->cfg->name, (int)k + 1);
        }
        if (json_array_append_new(arr, j)) return pt_error(PT_ENOMEM, "out of memory");
    }
    return PT_OK;
}

int schema_json(const struct schema *s, json_t **out)
{
    json_t *root = json_object(), *feats = json_array();
    int rc = PT_ENOMEM;
    *out = NULL;
    if (!root || !feats || json_object_set_new(root, "features", feats)) {
        json_decref(root);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    for (int i = 0; i < s->nfeat; i++) {
        const struct feat_state *f = &s->f[i];
        json_t *o = json_object();
        if (!o || json_array_append_new(feats, o)) goto nomem;
        json_object_set_new(o, "name", json_string(f->cfg->name));
        json_object_set_new(o, "kind", json_string(f->cfg->kind == FEAT_NUMERIC ? "numeric"
                                                   : f->cfg->kind == FEAT_MULTI ? "multi" : "categorical"));
        json_object_set_new(o, "rows", json_integer(f->rows));
        if (f->cfg->kind == FEAT_NUMERIC) {
            json_object_set_new(o, "mean", json_real(f->mean));
            json_object_set_new(o, "std", json_real(f->std));
            json_object_set_new(o, "impute_value", json_real(f->impute_value));
            json_t *b = json_array();
            for (int k = 0; k < f->nbounds; k++) json_array_append_new(b, json_real(f->bounds[k]));
            json_object_set_new(o, "bounds", b);
        } else if (f->cfg->hash_buckets <= 0) {
            json_t *v = json_array();
            if (!v || json_object_set_new(o, "vocab", v)) goto nomem;
            if ((rc = vocab_json(v, f))) goto fail;
        }
        if (f->drift) {
            json_t *dj = drift_to_json(f->drift);
            if (!dj || json_object_set_new(o, "drift", dj)) goto nomem;
        }
    }
    *out = root;
    return PT_OK;
nomem:
    rc = pt_error(PT_ENOMEM, "out of memory");
fail:
    json_decref(root);
    return rc;
}

char *schema_to_json(const struct schema *s)
{
    json_t *root;
    if (schema_json(s, &root)) return NULL;
    char *out = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!out) pt_error(PT_ENOMEM, "out of memory");
    json_decref(root);
    return out;
}

int schema_from_json(struct schema *s, const char *json, const char *name)
{
    json_error_t jerr;
    json_t *root = json_loads(json, 0, &jerr);
    if (!root) return pt_error_at(PT_EFORMAT, name, 0, "schema is not valid JSON: %s", jerr.text);
    int rc = schema_load_json(s, root, name);
    json_decref(root);
    return rc;
}

int schema_load_json(struct schema *s, const json_t *root, const char *name)
{
    int rc = PT_OK;
    json_t *feats = json_object_get(root, "features");
    if (!json_is_array(feats) || (int)json_array_size(feats) != s->nfeat) {
        rc = pt_error_at(PT_ESCHEMA, name, 0, "schema lists %d features, the config %d",
                         json_is_array(feats) ? (int)json_array_size(feats) : -1, s->nfeat);
        goto done;
    }
    for (int i = 0; i < s->nfeat; i++) {
        struct feat_state *f = &s->f[i];
        json_t *o = json_array_get(feats, (size_t)i);
        const char *fname = json_string_value(json_object_get(o, "name"));
        json_t *rows = json_object_get(o, "rows");
        if (!fname || strcmp(fname, f->cfg->name) || !json_is_integer(rows) || json_integer_value(rows) < 0 ||
            json_integer_value(rows) > INT32_MAX) {
            rc = pt_error_at(PT_ESCHEMA, name, 0, "schema feature %d does not match the config ('%s')", i,
                             f->cfg->name);
            goto done;
        }
        f->rows = (int32_t)json_integer_value(rows);
        if (f->cfg->kind == FEAT_NUMERIC) {
            json_t *b = json_object_get(o, "bounds");
            f->mean = json_number_value(json_object_get(o, "mean"));
            f->std = json_number_value(json_object_get(o, "std"));
            f->impute_value = (float)json_number_value(json_object_get(o, "impute_value"));
            if (!json_is_array(b) || !(f->std > 0)) {
                rc = pt_error_at(PT_ESCHEMA, name, 0, "schema feature '%s' has bad statistics", fname);
                goto done;
            }
            f->nbounds = (int)json_array_size(b);
            f->bounds = pt_malloc((size_t)(f->nbounds + 1) * sizeof *f->bounds);
            if (!f->bounds) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
            for (int k = 0; k < f->nbounds; k++) f->bounds[k] = (float)json_number_value(json_array_get(b, (size_t)k));
            if (f->is_cat && f->rows != f->nbounds + 1) {
                rc = pt_error_at(PT_ESCHEMA, name, 0, "schema feature '%s' has inconsistent buckets", fname);
                goto done;
            }
        } else if (f->cfg->hash_buckets <= 0) {
            json_t *v = json_object_get(o, "vocab");
            if (!json_is_array(v) || (int64_t)json_array_size(v) + 1 != f->rows) {
                rc = pt_error_at(PT_ESCHEMA, name, 0, "schema feature '%s' has a bad vocabulary", fname);
                goto done;
            }
            for (size_t k = 0; k < json_array_size(v); k++) {
                const char *str = json_string_value(json_array_get(v, k));
                int32_t id;
                if (!str) { rc = pt_error_at(PT_ESCHEMA, name, 0, "schema feature '%s' has a bad vocabulary", fname); goto done; }
                if ((rc = vocab_add(&f->vocab, str, strlen(str), &id))) goto done;
            }
        } else if (f->rows != f->cfg->hash_buckets) {
            rc = pt_error_at(PT_ESCHEMA, name, 0, "schema feature '%s' has %d buckets, the config %lld", fname,
                             f->rows, (long long)f->cfg->hash_buckets);
            goto done;
        }
        /* absent in model files written before drift existed: no reference */
        json_t *dj = json_object_get(o, "drift");
        if (dj && (rc = drift_from_json(f, dj, name))) goto done;
    }
    s->fitted = 1;
done:
    return rc;
}
