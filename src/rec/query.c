/* query.c: top-K answers of a trained recommender, for one user or a batch
 * written as CSV. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "data/csv.h"
#include "rec/recommender.h"
#include "rec/topk.h"
#include "rec/twotower.h"
#include "util/util.h"

int ask_init(struct ask *a, const pt_recommender *r, const pt_rec_query *q)
{
    memset(a, 0, sizeof *a);
    a->r = r;
    a->K = q->k > 0 ? q->k : 20;
    int32_t N = r->m.N;
    if (q->ncategories && !r->m.item_cat)
        return pt_error(PT_EINVAL, "category filters need a catalogue (recommend.items) in the model");
    a->scores = pt_malloc((size_t)(N ? N : 1) * sizeof *a->scores);
    a->hs = pt_malloc((size_t)a->K * sizeof *a->hs);
    a->os = pt_malloc((size_t)a->K * sizeof *a->os);
    a->hi = pt_malloc((size_t)a->K * sizeof *a->hi);
    a->top = pt_malloc((size_t)a->K * sizeof *a->top);
    a->deny = pt_calloc((size_t)(N ? N : 1), 1);
    a->base = pt_calloc((size_t)(N ? N : 1), 1);
    if (!a->scores || !a->hs || !a->os || !a->hi || !a->top || !a->deny || !a->base) return pt_error(PT_ENOMEM, "out of memory");
    if (q->nhistory) {
        if (!(a->hist = pt_malloc((size_t)q->nhistory * sizeof *a->hist))) return pt_error(PT_ENOMEM, "out of memory");
        for (int k = 0; k < q->nhistory; k++) {
            int32_t j = vocab_find(&r->items, q->history[k], strlen(q->history[k]));
            if (j >= 0) a->hist[a->nhist++] = j;
        }
    }
    if (q->ncategories) {
        /* include: deny every item outside the categories; exclude: deny the items inside */
        uint8_t *in = pt_calloc((size_t)r->cats.n + 1, 1);
        if (!in) return pt_error(PT_ENOMEM, "out of memory");
        for (int k = 0; k < q->ncategories; k++) {
            int32_t c = vocab_find(&r->cats, q->categories[k], strlen(q->categories[k]));
            if (c < 0) {
                pt_free(in);
                return pt_error(PT_EINVAL, "unknown category '%s'", q->categories[k]);
            }
            in[c] = 1;
        }
        for (int32_t j = 0; j < N; j++) {
            int inside = r->m.item_cat[j] >= 0 && in[r->m.item_cat[j]];
            a->base[j] |= q->exclude_categories ? inside : !inside;
        }
        pt_free(in);
    }
    if (q->allow) {
        uint8_t keep = 0;
        /* 2 marks the allowed items, then everything else is denied */
        for (int k = 0; k < q->nallow; k++) {
            int32_t j = vocab_find(&r->items, q->allow[k], strlen(q->allow[k]));
            if (j >= 0 && !a->base[j]) a->base[j] = 2;
        }
        for (int32_t j = 0; j < N; j++) a->base[j] = a->base[j] == 2 ? keep : 1;
    }
    return PT_OK;
}

void ask_free(struct ask *a)
{
    pt_free(a->hist);
    pt_free(a->scores), pt_free(a->hs), pt_free(a->os), pt_free(a->hi), pt_free(a->top), pt_free(a->deny), pt_free(a->base);
}

int ask_user(struct ask *a, int32_t u, int include_seen)
{
    const pt_recommender *r = a->r;
    int32_t N = r->m.N;
    int rc = u < 0 && a->nhist ? rec_score_history(&r->m, a->hist, a->nhist, a->scores)
                               : rec_model_score(&r->m, &r->hist, &u, 1, a->scores);
    if (rc) return rc;
    memcpy(a->deny, a->base, (size_t)N);
    if (u >= 0 && !include_seen)
        for (int64_t p = r->hist.off[u]; p < r->hist.off[u + 1]; p++) a->deny[r->hist.item[p]] = 1;
    if (u < 0 && !include_seen)
        for (int k = 0; k < a->nhist; k++) a->deny[a->hist[k]] = 1;
    return rec_select_row(a->scores, N, a->deny, a->K, a->hs, a->hi, a->top, a->os);
}

int pt_rec_recommend(const pt_recommender *r, const char *user, const pt_rec_query *q, char **json)
{
    *json = NULL;
    pt_rec_query dq = pt_rec_query_default();
    if (!q) q = &dq;
    struct ask a;
    int rc = ask_init(&a, r, q);
    int32_t u = vocab_find(&r->users, user, strlen(user));
    int n = rc ? rc : ask_user(&a, u, q->include_seen);
    json_t *o = NULL, *items = NULL;
    if (n < 0) {
        rc = n;
        goto out;
    }
    items = json_array();
    o = json_pack("{s:s, s:b}", "user", user, "known", u >= 0);
    if (!o || !items) goto oom;
    for (int k = 0; k < n; k++)
        if (json_array_append_new(items, r->titles && r->titles[a.top[k]]
                                             ? json_pack("{s:s, s:f, s:s}", "item", vocab_str(&r->items, a.top[k]), "score",
                                                         (double)a.os[k], "title", r->titles[a.top[k]])
                                             : json_pack("{s:s, s:f}", "item", vocab_str(&r->items, a.top[k]), "score", (double)a.os[k])))
            goto oom;
    if (json_object_set(o, "items", items) || !(*json = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6)))) goto oom;
    goto out;
oom:
    rc = pt_error(PT_ENOMEM, "out of memory");
out:
    json_decref(o), json_decref(items);
    ask_free(&a);
    return rc;
}


/* Batch answers for factor models: the users of a block whose scores are a
 * plain dot product (known, with a history at least cold_start.min_history
 * long) go through topk_dot, blocked matrix products without a users × items
 * matrix; the rest (unknown users, short histories, two-tower users without
 * items) through ask_user. Either way the same scores and the same tie rule. */
struct batch {
    struct ask *a;
    int include_seen;
    int32_t cap, n;          /* users per block */
    int32_t *uid;            /* [cap] recommender ids, -1 unknown */
    char **name;             /* [cap] as asked */
    int32_t *fast;           /* [cap] index among the block's dot-product users, or -1 */
    float *uvec;             /* [cap, D] */
    int64_t *xoff;           /* [cap+1] */
    int32_t *xitem;          /* the block's users' items, each list sorted */
    int64_t xcap;
    int32_t *oitem;          /* [cap, K] */
    float *oscore;
    uint8_t *allow;          /* [N]: !base */
};

static int factor_model(const struct rec_model *m)
{
    return m->kind == REC_BPR || m->kind == REC_WARP || m->kind == REC_SOFTMAX || m->kind == REC_TWO_TOWER;
}

static int i32_cmp(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int batch_flush(struct batch *b, FILE *f)
{
    const pt_recommender *r = b->a->r;
    const struct rec_model *m = &r->m;
    const struct rec_hist *h = &r->hist;
    int K = b->a->K, D = m->D, nf = 0, rc = PT_OK;
    int64_t nx = 0;
    for (int32_t i = 0; i < b->n; i++) {
        int32_t u = b->uid[i];
        int64_t len = u >= 0 && u < h->U ? h->off[u + 1] - h->off[u] : 0;
        int dot = factor_model(m) && u >= 0 && u < m->U && len >= m->cold_min_history && (m->kind != REC_TWO_TOWER || len > 0);
        b->fast[i] = dot ? nf++ : -1;
        if (dot && !b->include_seen) nx += len;
    }
    if (nf) {
        if (nx > b->xcap) {
            int32_t *nxi = pt_realloc(b->xitem, (size_t)nx * sizeof *nxi);
            if (!nxi) return pt_error(PT_ENOMEM, "out of memory");
            b->xitem = nxi, b->xcap = nx;
        }
        int32_t *uids = pt_malloc((size_t)nf * sizeof *uids);
        if (!uids) return pt_error(PT_ENOMEM, "out of memory");
        int64_t w = 0;
        b->xoff[0] = 0;
        for (int32_t i = 0; i < b->n; i++) {
            if (b->fast[i] < 0) continue;
            int32_t u = b->uid[i], k = b->fast[i];
            uids[k] = u;
            if (m->kind != REC_TWO_TOWER) memcpy(b->uvec + (size_t)k * D, m->uf + (size_t)u * D, (size_t)D * sizeof *b->uvec);
            if (!b->include_seen) {
                int64_t len = h->off[u + 1] - h->off[u];
                memcpy(b->xitem + w, h->item + h->off[u], (size_t)len * sizeof *b->xitem);
                qsort(b->xitem + w, (size_t)len, sizeof *b->xitem, i32_cmp);
                w += len;
            }
            b->xoff[k + 1] = w;
        }
        if (m->kind == REC_TWO_TOWER) rc = rec_tt_user_vectors(m->tt, h, uids, nf, b->uvec);
        pt_free(uids);
        struct topk_filter flt = {.excl_off = b->include_seen ? NULL : b->xoff, .excl = b->include_seen ? NULL : b->xitem,
                                  .allow = b->allow};
        if (!rc) rc = topk_dot(b->uvec, nf, m->vf, m->N, D, m->vb, K, &flt, b->oitem, b->oscore);
        if (rc) return rc;
    }
    for (int32_t i = 0; i < b->n && !rc; i++) {
        const int32_t *items;
        const float *sc;
        int n = 0;
        if (b->fast[i] >= 0) {
            items = b->oitem + (size_t)b->fast[i] * K, sc = b->oscore + (size_t)b->fast[i] * K;
            while (n < K && items[n] >= 0) n++;
        } else {
            n = ask_user(b->a, b->uid[i], b->include_seen);
            if (n < 0) return n;
            items = b->a->top, sc = b->a->os;
        }
        for (int k = 0; k < n && !rc; k++)
            if (fprintf(f, "%s,%d,%s,%.6g\n", b->name[i], k + 1, vocab_str(&r->items, items[k]), (double)sc[k]) < 0)
                rc = pt_error(PT_EIO, "write error");
    }
    for (int32_t i = 0; i < b->n; i++) pt_free(b->name[i]);
    b->n = 0;
    return rc;
}

static void batch_free(struct batch *b)
{
    for (int32_t i = 0; b->name && i < b->n; i++) pt_free(b->name[i]);
    pt_free(b->uid), pt_free(b->name), pt_free(b->fast), pt_free(b->uvec), pt_free(b->xoff), pt_free(b->xitem);
    pt_free(b->oitem), pt_free(b->oscore), pt_free(b->allow);
}

static int batch_add(struct batch *b, FILE *f, int32_t u, const char *name, size_t len)
{
    if (b->n == b->cap) {
        int rc = batch_flush(b, f);
        if (rc) return rc;
    }
    b->uid[b->n] = u;
    if (!(b->name[b->n] = pt_strndup(name, len))) return pt_error(PT_ENOMEM, "out of memory");
    b->n++;
    return PT_OK;
}

int pt_rec_recommend_file(const pt_recommender *r, const char *users_path, const pt_rec_query *q, const char *out_csv,
                          int64_t *users)
{
    pt_rec_query dq = pt_rec_query_default();
    if (!q) q = &dq;
    if (users) *users = 0;
    struct ask a;
    struct batch b = {.a = &a, .include_seen = q->include_seen};
    struct atomic_file af = {0};
    struct csv_reader *rd = NULL;
    int rc = ask_init(&a, r, q);
    int32_t N = r->m.N;
    /* one user at a time for the models scored by lookups; blocks of 256 for factor models */
    b.cap = factor_model(&r->m) ? 256 : 1;
    if (!rc) {
        int D = r->m.D > 0 ? r->m.D : 1;
        b.uid = pt_malloc((size_t)b.cap * sizeof *b.uid);
        b.name = pt_calloc((size_t)b.cap, sizeof *b.name);
        b.fast = pt_malloc((size_t)b.cap * sizeof *b.fast);
        b.uvec = pt_malloc((size_t)b.cap * (size_t)D * sizeof *b.uvec);
        b.xoff = pt_malloc(((size_t)b.cap + 1) * sizeof *b.xoff);
        b.oitem = pt_malloc((size_t)b.cap * (size_t)a.K * sizeof *b.oitem);
        b.oscore = pt_malloc((size_t)b.cap * (size_t)a.K * sizeof *b.oscore);
        b.allow = pt_malloc((size_t)(N ? N : 1));
        if (!b.uid || !b.name || !b.fast || !b.uvec || !b.xoff || !b.oitem || !b.oscore || !b.allow)
            rc = pt_error(PT_ENOMEM, "out of memory");
        for (int32_t j = 0; !rc && j < N; j++) b.allow[j] = !a.base[j];
    }
    if (!rc) rc = atomic_file_open(&af, out_csv);
    if (!rc && users_path) rc = csv_reader_open(&rd, users_path, NULL);
    if (rc) goto out;
    if (fputs("user,rank,item,score\n", af.f) < 0) {
        rc = pt_error_at(PT_EIO, out_csv, 0, "write error");
        goto out;
    }
    int64_t done = 0;
    if (!users_path) {
        for (int32_t u = 0; u < r->users.n && !rc; u++, done++)
            rc = batch_add(&b, af.f, u, vocab_str(&r->users, u), strlen(vocab_str(&r->users, u)));
    } else {
        size_t nf, *lens;
        char **f;
        int got;
        while (!rc && (got = csv_reader_next(rd, &nf, &f, &lens)) != 0) {
            if (got < 0) {
                rc = got;
                break;
            }
            if (!lens[0]) continue;
            rc = batch_add(&b, af.f, vocab_find(&r->users, f[0], lens[0]), f[0], lens[0]);
            done++;
        }
    }
    if (!rc) rc = batch_flush(&b, af.f);
    if (!rc) rc = atomic_file_commit(&af);
    if (!rc && users) *users = done;
out:
    if (rc) atomic_file_abort(&af);
    csv_reader_close(rd);
    batch_free(&b);
    ask_free(&a);
    return rc;
}
