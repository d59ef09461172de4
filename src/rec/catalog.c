/* catalog.c: item attributes for filters and cold start, and content
 * similarity between items. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv.h"
#include "rec/catalog.h"
#include "rec/rec.h"
#include "util/util.h"

#define TITLE_MAX_TOKENS 96

/* ---- title tokens ---- */

static uint32_t bucket(uint64_t h) { return (uint32_t)(h & (CATALOG_TOKEN_BUCKETS - 1)); }

/* Length of the UTF-8 sequence starting with byte b (1 for a stray byte). */
static int u8len(unsigned char b) { return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

int rec_catalog_tokens(const char *s, size_t len, int32_t *out, int max)
{
    /* words: runs of ASCII letters/digits and any non-ASCII characters, ASCII lower-cased */
    char word[256];
    size_t prev_h = 0;
    int n = 0, have_prev = 0;
    size_t i = 0;
    while (i < len && n < max) {
        while (i < len && (unsigned char)s[i] < 0x80 && !((s[i] >= '0' && s[i] <= '9') || ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z')))
            i++;
        size_t w = 0;
        while (i < len) {
            unsigned char b = (unsigned char)s[i];
            if (b < 0x80 && !((b >= '0' && b <= '9') || ((b | 0x20) >= 'a' && (b | 0x20) <= 'z'))) break;
            int l = b < 0x80 ? 1 : u8len(b);
            if (i + (size_t)l > len) l = (int)(len - i);
            if (w + (size_t)l < sizeof word - 2) {
                if (b < 0x80) word[w++] = (char)((b >= 'A' && b <= 'Z') ? b | 0x20 : b);
                else memcpy(word + w, s + i, (size_t)l), w += (size_t)l;
            }
            i += (size_t)l;
        }
        if (!w) continue;
        uint64_t h = pt_hash64(word, w, 0x17);
        out[n++] = (int32_t)bucket(h);
        if (have_prev && n < max) out[n++] = (int32_t)bucket(h ^ (prev_h * 0x9E3779B97F4A7C15ull) ^ 0xB16);
        prev_h = h, have_prev = 1;
        /* character trigrams over code points of "#word#": spelling variants meet */
        char pad[260];
        pad[0] = '#';
        memcpy(pad + 1, word, w);
        pad[w + 1] = '#';
        size_t pl = w + 2, cp[260];
        int ncp = 0;
        for (size_t q = 0; q < pl; q += (size_t)u8len((unsigned char)pad[q])) cp[ncp++] = q;
        cp[ncp] = pl;
        for (int c = 0; c + 3 <= ncp && n < max && ncp > 3; c++)
            out[n++] = (int32_t)bucket(pt_hash64(pad + cp[c], cp[c + 3] - cp[c], 0x3));
    }
    return n;
}

/* ---- reading ---- */

static int grow(struct rec_catalog *c, int32_t n)
{
    if (n <= c->N) return PT_OK;
    int32_t cap = c->N ? c->N : 1024;
    while (cap < n) cap *= 2;
    int32_t *cat = pt_realloc(c->cat, (size_t)cap * sizeof *cat);
    if (cat) c->cat = cat;
    int32_t *br = cat ? pt_realloc(c->brand, (size_t)cap * sizeof *br) : NULL;
    if (br) c->brand = br;
    float *pr = br ? pt_realloc(c->price, (size_t)cap * sizeof *pr) : NULL;
    if (pr) c->price = pr;
    int64_t *to = pr ? pt_realloc(c->tok_off, ((size_t)cap + 1) * sizeof *to) : NULL;
    if (to) c->tok_off = to;
    char **ti = to ? pt_realloc(c->title, (size_t)cap * sizeof *ti) : NULL;
    if (ti) c->title = ti;
    if (!ti) return pt_error(PT_ENOMEM, "out of memory");
    for (int32_t j = c->N; j < cap; j++)
        c->cat[j] = -1, c->brand[j] = -1, c->price[j] = NAN, c->tok_off[j + 1] = -1, c->title[j] = NULL;
    c->N = cap;
    return PT_OK;
}

struct toks {              /* title tokens per item, appended as rows come */
    int32_t *tok;
    int64_t n, cap;
    int64_t *start;        /* [cap items] start in tok, -1: none */
    int32_t *len;
};

static int read_one(const struct rec_cfg *cfg, const char *file, struct vocab *items, struct rec_catalog *c,
                    uint8_t **seen, int32_t *seen_cap, int32_t **tstart, int32_t **tlen, struct toks *tk, int64_t *nbad)
{
    struct csv_opts o = {.delim = cfg->items.delim};
    struct csv_reader *rd = NULL;
    int rc = csv_reader_open(&rd, file, &o);
    if (rc) return rc;
    char **f;
    size_t nf, *lens;
    struct rec_names cols = {0};
    if ((rc = rec_names_read(&cols, rd, &cfg->items, file))) goto out;
    int nnames = cols.n, ci, cc, cb, cp, ct;
    if ((rc = rec_col_index(&cols, cfg->item_id, "item id", file, &ci)) ||
        (rc = rec_col_index(&cols, cfg->item_category, "category", file, &cc)) ||
        (rc = rec_col_index(&cols, cfg->item_brand, "brand", file, &cb)) ||
        (rc = rec_col_index(&cols, cfg->item_price, "price", file, &cp)) ||
        (rc = rec_col_index(&cols, cfg->item_title, "title", file, &ct)))
        goto out;
    int32_t buf[TITLE_MAX_TOKENS];
    while ((rc = csv_reader_next(rd, &nf, &f, &lens)) != 0) {
        long line = csv_reader_line(rd);
        if (rc < 0 || (int)nf != nnames) {
            if (rc < 0 && rc != PT_EPARSE) goto out;
            if (rc > 0 && nf == 1 && !lens[0]) continue;
            if (++*nbad > cfg->max_bad_rows) {
                rc = pt_error(PT_ETOOMANYBAD, "%s:%ld: %s (more than %" PRId64 " bad rows; raise max_bad_rows to skip them)", file,
                              line, rc < 0 ? pt_errmsg() : "wrong number of fields", cfg->max_bad_rows);
                goto out;
            }
            rc = PT_OK;
            continue;
        }
        c->rows++;
        if (!lens[ci]) continue;
        int32_t before = items->n, j;
        if ((rc = vocab_add(items, f[ci], lens[ci], &j))) goto out;
        c->added += items->n > before;
        if (j >= *seen_cap) {
            int32_t cap = *seen_cap ? *seen_cap : 1024;
            while (cap <= j) cap *= 2;
            uint8_t *ns = pt_realloc(*seen, (size_t)cap);
            int32_t *st = ns ? pt_realloc(*tstart, (size_t)cap * sizeof *st) : NULL;
            if (ns) *seen = ns;
            if (st) *tstart = st;
            int32_t *tl = st ? pt_realloc(*tlen, (size_t)cap * sizeof *tl) : NULL;
            if (!tl) goto oom;
            *tlen = tl;
            memset(*seen + *seen_cap, 0, (size_t)(cap - *seen_cap));
            *seen_cap = cap;
        }
        if ((*seen)[j]) continue; /* first row wins */
        (*seen)[j] = 1;
        if ((rc = grow(c, items->n))) goto out;
        if (cc >= 0 && lens[cc] && (rc = vocab_add(&c->cats, f[cc], lens[cc], &c->cat[j]))) goto out;
        if (cb >= 0 && lens[cb] && (rc = vocab_add(&c->brands, f[cb], lens[cb], &c->brand[j]))) goto out;
        if (cp >= 0 && lens[cp]) {
            char *end;
            errno = 0;
            double v = strtod(f[cp], &end);
            if (!errno && end != f[cp] && !*end && isfinite(v) && v > 0) c->price[j] = (float)v;
        }
        if (ct >= 0 && lens[ct] && !(c->title[j] = pt_strndup(f[ct], lens[ct]))) goto oom;
        int n = ct >= 0 ? rec_catalog_tokens(f[ct], lens[ct], buf, TITLE_MAX_TOKENS) : 0;
        if (tk->n + n > tk->cap) {
            int64_t cap = tk->cap ? tk->cap * 2 : 65536;
            while (cap < tk->n + n) cap *= 2;
            int32_t *nt = pt_realloc(tk->tok, (size_t)cap * sizeof *nt);
            if (!nt) goto oom;
            tk->tok = nt, tk->cap = cap;
        }
        if (n) memcpy(tk->tok + tk->n, buf, (size_t)n * sizeof *buf);
        (*tstart)[j] = (int32_t)tk->n; /* < 2^31 tokens: tables of a few million items */
        (*tlen)[j] = n;
        tk->n += n;
    }
    goto out;
oom:
    rc = pt_error(PT_ENOMEM, "out of memory");
out:
    rec_names_free(&cols);
    csv_reader_close(rd);
    return rc;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int rec_catalog_read(const struct rec_cfg *cfg, struct vocab *items, struct rec_catalog *out)
{
    memset(out, 0, sizeof *out);
    vocab_init(&out->cats);
    vocab_init(&out->brands);
    uint8_t *seen = NULL;
    int32_t seen_cap = 0, *tstart = NULL, *tlen = NULL;
    struct toks tk = {0};
    int64_t nbad = 0;
    int rc = grow(out, items->n > 0 ? items->n : 1);
    for (int k = 0; !rc && k < cfg->nitem_paths; k++)
        rc = read_one(cfg, cfg->item_paths[k], items, out, &seen, &seen_cap, &tstart, &tlen, &tk, &nbad);
    if (!rc) rc = grow(out, items->n);
    int32_t N = items->n;
    if (!rc) {
        /* pack tokens into CSR over the final N */
        int64_t total = 0;
        for (int32_t j = 0; j < N; j++) total += j < seen_cap && seen[j] ? tlen[j] : 0;
        out->tok = pt_malloc((size_t)(total ? total : 1) * sizeof *out->tok);
        out->band = pt_malloc((size_t)(N ? N : 1));
        float *pr = pt_malloc((size_t)(N ? N : 1) * sizeof *pr);
        if (!out->tok || !out->band || !pr) {
            pt_free(pr);
            rc = pt_error(PT_ENOMEM, "out of memory");
        } else {
            int64_t w = 0;
            out->tok_off[0] = 0;
            for (int32_t j = 0; j < N; j++) {
                if (j < seen_cap && seen[j] && tlen[j]) {
                    memcpy(out->tok + w, tk.tok + tstart[j], (size_t)tlen[j] * sizeof *out->tok);
                    w += tlen[j];
                }
                out->tok_off[j + 1] = w;
            }
            /* price bands: quantiles of the known prices */
            int32_t np = 0;
            for (int32_t j = 0; j < N; j++)
                if (!isnan(out->price[j])) pr[np++] = out->price[j];
            qsort(pr, (size_t)np, sizeof *pr, cmp_float);
            for (int32_t j = 0; j < N; j++) {
                out->band[j] = -1;
                if (isnan(out->price[j]) || !np) continue;
                int lo = 0, hi = np; /* items priced below */
                while (lo < hi) {
                    int mid = (lo + hi) / 2;
                    if (pr[mid] < out->price[j]) lo = mid + 1;
                    else hi = mid;
                }
                out->band[j] = (int8_t)((int64_t)lo * CATALOG_PRICE_BANDS / np);
            }
            pt_free(pr);
        }
    }
    out->N = N;
    pt_free(seen), pt_free(tstart), pt_free(tlen), pt_free(tk.tok);
    if (rc) rec_catalog_free(out);
    return rc;
}

void rec_catalog_free(struct rec_catalog *c)
{
    for (int32_t j = 0; c->title && j < c->N; j++) pt_free(c->title[j]);
    pt_free(c->title);
    pt_free(c->cat), pt_free(c->brand), pt_free(c->price), pt_free(c->band), pt_free(c->tok_off), pt_free(c->tok);
    vocab_free(&c->cats);
    vocab_free(&c->brands);
    memset(c, 0, sizeof *c);
}

/* ---- content similarity ---- */

/* An item's content terms: title tokens, then category, brand and band as
 * terms of their own (hashed into the same space with a tag). */
static int terms(const struct rec_catalog *c, int32_t j, uint32_t *t)
{
    int n = 0;
    for (int64_t q = c->tok_off[j]; q < c->tok_off[j + 1]; q++) t[n++] = (uint32_t)c->tok[q];
    if (c->cat[j] >= 0) t[n++] = bucket(pt_hash64(&c->cat[j], sizeof c->cat[j], 0xCA7));
    if (c->brand[j] >= 0) t[n++] = bucket(pt_hash64(&c->brand[j], sizeof c->brand[j], 0xB2A));
    if (c->band[j] >= 0) t[n++] = bucket(pt_hash64(&c->band[j], sizeof c->band[j], 0xBA9));
    return n;
}

struct sc {
    float s;
    int32_t i;
};

static int sc_cmp(const void *a, const void *b)
{
    const struct sc *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

int rec_catalog_neighbours(const struct rec_catalog *c, const uint8_t *cold, int M, int64_t **off_out, int32_t **item_out,
                           float **sim_out)
{
    int32_t N = c->N;
    const int B = CATALOG_TOKEN_BUCKETS;
    uint32_t t[TITLE_MAX_TOKENS + 3];
    int32_t *df = pt_calloc((size_t)B, sizeof *df);
    int64_t *poff = pt_calloc((size_t)B + 1, sizeof *poff), *off = pt_calloc((size_t)N + 1, sizeof *off);
    float *norm = pt_calloc((size_t)(N ? N : 1), sizeof *norm), *acc = pt_calloc((size_t)(N ? N : 1), sizeof *acc);
    int32_t *post = NULL, *touched = pt_malloc((size_t)(N ? N : 1) * sizeof *touched), *item = NULL;
    float *idf = pt_malloc((size_t)B * sizeof *idf), *sim = NULL;
    struct sc *cand = pt_malloc((size_t)(N ? N : 1) * sizeof *cand);
    int rc = PT_ENOMEM;
    int64_t ncold = 0;
    if (!df || !poff || !off || !norm || !acc || !touched || !idf || !cand) goto out;
    /* document frequency over every item; postings over warm items (a term once per item) */
    for (int32_t j = 0; j < N; j++) {
        int n = terms(c, j, t);
        for (int k = 0; k < n; k++) {
            int dup = 0;
            for (int q = 0; q < k && !dup; q++) dup = t[q] == t[k];
            if (dup) continue;
            df[t[k]]++;
            if (!cold[j]) poff[t[k] + 1]++;
        }
        ncold += cold[j] != 0;
    }
    for (int b = 0; b < B; b++) {
        idf[b] = df[b] ? logf((float)(N + 1) / (float)df[b]) : 0;
        poff[b + 1] += poff[b];
    }
    post = pt_malloc((size_t)(poff[B] ? poff[B] : 1) * sizeof *post);
    size_t cap = (size_t)ncold * (size_t)M > 0 ? (size_t)ncold * (size_t)M : 1;
    item = pt_malloc(cap * sizeof *item);
    sim = pt_malloc(cap * sizeof *sim);
    if (!post || !item || !sim) goto out;
    {
        int64_t *fill = pt_malloc((size_t)B * sizeof *fill);
        if (!fill) goto out;
        memcpy(fill, poff, (size_t)B * sizeof *fill);
        for (int32_t j = 0; j < N; j++) {
            int n = terms(c, j, t);
            float s2 = 0;
            for (int k = 0; k < n; k++) {
                int dup = 0;
                for (int q = 0; q < k && !dup; q++) dup = t[q] == t[k];
                if (dup) continue;
                s2 += idf[t[k]] * idf[t[k]];
                if (!cold[j]) post[fill[t[k]]++] = j;
            }
            norm[j] = s2 > 0 ? sqrtf(s2) : 1;
        }
        pt_free(fill);
    }
    /* cosine of binary TF-IDF vectors, one cold item at a time */
    int64_t w = 0;
    for (int32_t j = 0; j < N; j++) {
        off[j] = w;
        if (!cold[j]) continue;
        int n = terms(c, j, t), nt = 0;
        for (int k = 0; k < n; k++) {
            int dup = 0;
            for (int q = 0; q < k && !dup; q++) dup = t[q] == t[k];
            if (dup) continue;
            float wt = idf[t[k]] * idf[t[k]];
            for (int64_t p = poff[t[k]]; p < poff[t[k] + 1]; p++) {
                int32_t i = post[p];
                if (acc[i] == 0) touched[nt++] = i;
                acc[i] += wt;
            }
        }
        for (int k = 0; k < nt; k++) {
            int32_t i = touched[k];
            cand[k].s = acc[i] / (norm[i] * norm[j]);
            cand[k].i = i;
            acc[i] = 0;
        }
        qsort(cand, (size_t)nt, sizeof *cand, sc_cmp);
        for (int k = 0; k < nt && k < M; k++) item[w] = cand[k].i, sim[w] = cand[k].s, w++;
    }
    off[N] = w;
    *off_out = off, *item_out = item, *sim_out = sim;
    off = NULL, item = NULL, sim = NULL;
    rc = PT_OK;
out:
    if (rc) rc = pt_error(PT_ENOMEM, "out of memory");
    pt_free(df), pt_free(poff), pt_free(off), pt_free(norm), pt_free(acc), pt_free(post), pt_free(touched);
    pt_free(item), pt_free(idf), pt_free(sim), pt_free(cand);
    return rc;
}
