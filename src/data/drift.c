/* drift.c: the training distribution of each feature, binned (drift_fit),
 * stored in the schema JSON, and live counts of scored rows (drift_count),
 * for the population stability index (drift.h says how values are binned).
 *
 * Counting is on the serving path: many request threads score one model at
 * once, so each call counts into a local array per feature and then adds
 * once per non-empty bin with a relaxed atomic add. Relaxed is enough: the
 * counters are independent tallies that only a monitoring read looks at, and
 * no other memory is published through them.
 *
 * Not done here: no time windows or decay; counts grow from the load of a
 * version until it is freed (a new version starts from zero). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/drift.h"
#include "data/schema.h"
#include "util/util.h"

/* ---- references ---- */

static int ref_create(struct drift_ref **out, int nkeys, int ids)
{
    struct drift_ref *r = pt_calloc(1, sizeof *r);
    *out = NULL;
    if (!r) return pt_error(PT_ENOMEM, "out of memory");
    r->nkeys = nkeys;
    r->nbins = nkeys + 1;
    if (ids) r->ids = pt_calloc((size_t)nkeys + 1, sizeof *r->ids);
    else r->edges = pt_calloc((size_t)nkeys + 1, sizeof *r->edges);
    r->p = pt_calloc((size_t)r->nbins, sizeof *r->p);
    r->live = pt_calloc((size_t)r->nbins, sizeof *r->live);
    if ((ids ? !r->ids : !r->edges) || !r->p || !r->live) {
        drift_ref_free(r);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    *out = r;
    return PT_OK;
}

void drift_ref_free(struct drift_ref *r)
{
    if (!r) return;
    pt_free(r->ids);
    pt_free(r->edges);
    pt_free(r->p);
    pt_free(r->live);
    pt_free(r);
}

/* ---- binning (the one definition, for fitting and for live rows) ---- */

static int bin_of_id(const struct drift_ref *r, int32_t id)
{
    for (int k = 0; k < r->nkeys; k++)
        if (r->ids[k] == id) return k;
    return r->nkeys;
}

/* Upper bound: the first edge > x; nkeys when none is (NaN included, since
 * every comparison with it is false). */
static int bin_of_value(const struct drift_ref *r, float x)
{
    int lo = 0, hi = r->nkeys;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (r->edges[mid] > x) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* ---- fitting ---- */

/* Keeps top[0..*nt) ordered by count descending; ids arrive ascending, so a
 * tie keeps the smaller id ahead (it came first and is never passed). */
static void top_insert(int32_t *top, int64_t *tc, int *nt, int32_t id, int64_t c)
{
    if (*nt == DRIFT_TOP && c <= tc[*nt - 1]) return;
    int k = *nt < DRIFT_TOP ? (*nt)++ : *nt - 1;
    while (k > 0 && tc[k - 1] < c) {
        top[k] = top[k - 1];
        tc[k] = tc[k - 1];
        k--;
    }
    top[k] = id;
    tc[k] = c;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Maps a float's bits to an unsigned key in the order of < and >, with -0
 * and +0 one key: they compare equal, so a stable sort keeps them as they
 * came, which the key has to as well. */
static uint32_t sort_key(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) == 0) u = 0;
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* LSD radix sort, 11 bits a pass: stable, so it orders exactly as a stable
 * comparison sort on < and > does (glibc's merge sort qsort, which this
 * replaced), at a few passes over the data instead of n log n calls. */
int drift_sort_floats(float *v, int64_t n)
{
    enum { BITS = 11, NB = 1 << BITS, PASSES = 3 };
    if (n < 2) return PT_OK;
    float *t = pt_malloc((size_t)n * sizeof *t);
    if (!t) return pt_error(PT_ENOMEM, "out of memory");
    int64_t (*cnt)[NB] = pt_calloc(PASSES, sizeof *cnt);
    if (!cnt) {
        pt_free(t);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        uint32_t k = sort_key(v[i]);
        for (int p = 0; p < PASSES; p++) cnt[p][(k >> (p * BITS)) & (NB - 1)]++;
    }
    float *src = v, *dst = t;
    for (int p = 0; p < PASSES; p++) {
        int shift = p * BITS;
        /* a digit every value shares (the sign and exponent, often) moves nothing */
        if (cnt[p][(sort_key(v[0]) >> shift) & (NB - 1)] == n) continue;
        int64_t pos = 0;
        for (int d = 0; d < NB; d++) {
            int64_t c = cnt[p][d];
            cnt[p][d] = pos;
            pos += c;
        }
        for (int64_t i = 0; i < n; i++) dst[cnt[p][(sort_key(src[i]) >> shift) & (NB - 1)]++] = src[i];
        float *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != v) memcpy(v, src, (size_t)n * sizeof *v);
    pt_free(cnt);
    pt_free(t);
    return PT_OK;
}

/* The top ids of ids[0..n) (each meant to lie in [0, rows)). Counts go in
 * an array over the id range when that is no longer than the data (it then
 * costs less than the embedding table the model keeps for those ids), else
 * through a sorted copy of the ids, so a feature hashed into far more
 * buckets than there are training values stays cheap. */
static int fit_ids(struct drift_ref **out, const int32_t *ids, int64_t n, int32_t rows)
{
    int32_t top[DRIFT_TOP];
    int64_t tc[DRIFT_TOP];
    int nt = 0, rc = PT_OK;
    int64_t *cnt = NULL;
    int32_t *v = NULL;
    *out = NULL;
    if (rows > 0 && (int64_t)rows <= n) {
        if (!(cnt = pt_calloc((size_t)rows, sizeof *cnt))) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
        for (int64_t i = 0; i < n; i++)
            if (ids[i] >= 0 && ids[i] < rows) cnt[ids[i]]++;
        for (int32_t id = 0; id < rows; id++)
            if (cnt[id]) top_insert(top, tc, &nt, id, cnt[id]);
    } else {
        if (!(v = pt_malloc((size_t)n * sizeof *v))) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
        memcpy(v, ids, (size_t)n * sizeof *v);
        qsort(v, (size_t)n, sizeof *v, cmp_i32);
        for (int64_t i = 0, j; i < n; i = j) {
            for (j = i + 1; j < n && v[j] == v[i];) j++;
            top_insert(top, tc, &nt, v[i], j - i);
        }
    }
    struct drift_ref *r;
    if ((rc = ref_create(&r, nt, 1))) goto done;
    int64_t rest = n;
    for (int k = 0; k < nt; k++) {
        r->ids[k] = top[k];
        r->p[k] = (float)((double)tc[k] / (double)n);
        rest -= tc[k];
    }
    r->p[nt] = (float)((double)rest / (double)n);
    *out = r;
done:
    pt_free(cnt);
    pt_free(v);
    return rc;
}

/* Decile edges of x[0..n), then the training fraction of each bin counted
 * with bin_of_value (ties pile onto one edge, so bins are rarely 10% each). */
static int fit_values(struct drift_ref **out, const float *x, int64_t n)
{
    float edges[DRIFT_QUANTILES];
    int ne = 0, rc = PT_OK;
    int64_t m = 0;
    *out = NULL;
    float *v = pt_malloc((size_t)n * sizeof *v);
    if (!v) return pt_error(PT_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i])) v[m++] = x[i];
    if (m == 0) goto done; /* no value to describe: no reference */
    if ((rc = drift_sort_floats(v, m))) goto done;
    for (int b = 1; b < DRIFT_QUANTILES; b++) {
        float q = v[(int64_t)((double)b * (double)m / DRIFT_QUANTILES)];
        if (ne == 0 || q > edges[ne - 1]) edges[ne++] = q;
    }
    struct drift_ref *r;
    if ((rc = ref_create(&r, ne, 0))) goto done;
    memcpy(r->edges, edges, (size_t)ne * sizeof *edges);
    int64_t c[DRIFT_QUANTILES] = {0};
    for (int64_t i = 0; i < n; i++) c[bin_of_value(r, x[i])]++;
    for (int k = 0; k < r->nbins; k++) r->p[k] = (float)((double)c[k] / (double)n);
    *out = r;
done:
    pt_free(v);
    return rc;
}

int drift_fit(struct schema *s, const struct dataset *train)
{
    int rc = PT_OK;
    for (int i = 0; i < s->nfeat; i++) {
        struct feat_state *f = &s->f[i];
        struct drift_ref *r = NULL;
        drift_ref_free(f->drift);
        f->drift = NULL;
        if (train->n == 0) continue;
        if (f->cfg->kind == FEAT_MULTI) {
            const int32_t *off = train->moff[f->slot];
            int64_t nv = (int64_t)off[train->n] - off[0];
            if (nv > 0) rc = fit_ids(&r, train->mids[f->slot] + off[0], nv, f->rows);
        } else if (f->is_cat) {
            rc = fit_ids(&r, train->cat[f->slot], train->n, f->rows);
        } else {
            rc = fit_values(&r, train->num[f->slot], train->n);
        }
        if (rc) goto fail;
        f->drift = r;
    }
    s->drift_rows = 0;
    return PT_OK;
fail:
    for (int i = 0; i < s->nfeat; i++) {
        drift_ref_free(s->f[i].drift);
        s->f[i].drift = NULL;
    }
    return rc;
}

/* ---- live counts ---- */

static void add_counts(struct drift_ref *r, const int64_t *c)
{
    for (int k = 0; k < r->nbins; k++)
        if (c[k]) __atomic_fetch_add(&r->live[k], c[k], __ATOMIC_RELAXED);
}

void drift_count(const struct schema *s, const struct dataset *d, int64_t from, int64_t n)
{
    if (n <= 0) return;
    for (int i = 0; i < s->nfeat; i++) {
        const struct feat_state *f = &s->f[i];
        struct drift_ref *r = f->drift;
        int64_t c[DRIFT_MAX_BINS] = {0};
        if (!r) continue;
        if (f->cfg->kind == FEAT_MULTI) {
            const int32_t *off = d->moff[f->slot], *ids = d->mids[f->slot];
            for (int64_t j = off[from]; j < off[from + n]; j++) c[bin_of_id(r, ids[j])]++;
        } else if (f->is_cat) {
            const int32_t *ids = d->cat[f->slot] + from;
            for (int64_t j = 0; j < n; j++) c[bin_of_id(r, ids[j])]++;
        } else {
            const float *x = d->num[f->slot] + from;
            for (int64_t j = 0; j < n; j++) c[bin_of_value(r, x[j])]++;
        }
        add_counts(r, c);
    }
    /* the row total is the one counter kept on the schema itself; the schema
     * is shared read-only otherwise, hence the cast (it is never const
     * storage: schemas are heap objects) */
    __atomic_fetch_add((int64_t *)&s->drift_rows, n, __ATOMIC_RELAXED);
}

int64_t drift_rows(const struct schema *s) { return __atomic_load_n(&s->drift_rows, __ATOMIC_RELAXED); }

/* PSI = sum_k (a_k - e_k) ln(a_k / e_k), a_k the live and e_k the training
 * fraction of bin k. Both are floored at 1e-4 first, the usual epsilon for
 * empty bins: without it a bin empty on either side makes the index
 * infinite (or 0 * ln 0), and one stray value would read as total drift. */
double drift_psi(const struct drift_ref *r)
{
    int64_t c[DRIFT_MAX_BINS], total = 0;
    for (int k = 0; k < r->nbins; k++) {
        c[k] = __atomic_load_n(&r->live[k], __ATOMIC_RELAXED);
        total += c[k];
    }
    if (total == 0) return NAN;
    double psi = 0;
    for (int k = 0; k < r->nbins; k++) {
        double a = fmax((double)c[k] / (double)total, 1e-4), e = fmax((double)r->p[k], 1e-4);
        psi += (a - e) * log(a / e);
    }
    return psi;
}

/* ---- JSON ---- */

json_t *drift_to_json(const struct drift_ref *r)
{
    json_t *o = json_object(), *keys = json_array(), *p = json_array();
    if (!o || !keys || !p) goto fail;
    for (int k = 0; k < r->nkeys; k++)
        if (json_array_append_new(keys, r->ids ? json_integer(r->ids[k]) : json_real(r->edges[k]))) goto fail;
    for (int k = 0; k < r->nbins; k++)
        if (json_array_append_new(p, json_real(r->p[k]))) goto fail;
    if (json_object_set_new(o, r->ids ? "ids" : "edges", keys)) {
        keys = NULL; /* set_new took it, even on failure */
        goto fail;
    }
    keys = NULL;
    if (json_object_set_new(o, "p", p)) {
        p = NULL;
        goto fail;
    }
    return o;
fail:
    json_decref(o);
    json_decref(keys);
    json_decref(p);
    return NULL;
}

int drift_from_json(struct feat_state *f, const json_t *o, const char *name)
{
    const char *fname = f->cfg->name, *what = NULL;
    int ids = f->cfg->kind == FEAT_MULTI || f->is_cat, rc;
    struct drift_ref *r = NULL;
    drift_ref_free(f->drift);
    f->drift = NULL;
    json_t *keys = json_object_get(o, ids ? "ids" : "edges"), *p = json_object_get(o, "p");
    if (!json_is_object(o)) { what = "not an object"; goto bad; }
    if (!json_is_array(keys)) {
        what = ids ? "no \"ids\" array (a categorical or multi-valued feature has one)"
                   : "no \"edges\" array (a numeric feature has one)";
        goto bad;
    }
    size_t nk = json_array_size(keys);
    if (nk >= DRIFT_MAX_BINS) { what = "more bins than this version reads (at most 64)"; goto bad; }
    if (!json_is_array(p) || json_array_size(p) != nk + 1) { what = "\"p\" must hold one fraction per key plus one"; goto bad; }
    if ((rc = ref_create(&r, (int)nk, ids))) return rc;
    for (size_t k = 0; k < nk; k++) {
        json_t *v = json_array_get(keys, k);
        if (ids) {
            json_int_t id = json_integer_value(v);
            if (!json_is_integer(v) || id < 0 || id >= f->rows) { what = "an id outside the feature's rows"; goto bad; }
            r->ids[k] = (int32_t)id;
        } else {
            double e = json_number_value(v);
            if (!json_is_number(v) || !isfinite(e) || !isfinite((float)e)) { what = "an edge that is not a finite number"; goto bad; }
            r->edges[k] = (float)e;
            if (k > 0 && !(r->edges[k] > r->edges[k - 1])) { what = "edges are not strictly ascending"; goto bad; }
        }
    }
    for (size_t k = 0; k <= nk; k++) {
        json_t *v = json_array_get(p, k);
        double x = json_number_value(v);
        if (!json_is_number(v) || !isfinite(x) || x < 0 || x > 1) { what = "a fraction in \"p\" that is not a number in [0, 1]"; goto bad; }
        r->p[k] = (float)x;
    }
    f->drift = r;
    return PT_OK;
bad:
    drift_ref_free(r);
    return pt_error_at(PT_EFORMAT, name, 0, "schema feature '%s': drift reference: %s", fname, what);
}
