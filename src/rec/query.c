/* query.c: top-K answers of a trained recommender, for one user or a batch
 * written as CSV. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "data/csv.h"
#include "rec/recommender.h"
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

static int write_user(FILE *f, const struct ask *a, const char *user, int n)
{
    for (int k = 0; k < n; k++)
        if (fprintf(f, "%s,%d,%s,%.6g\n", user, k + 1, vocab_str(&a->r->items, a->top[k]), (double)a->os[k]) < 0)
            return pt_error(PT_EIO, "write error");
    return PT_OK;
}

int pt_rec_recommend_file(const pt_recommender *r, const char *users_path, const pt_rec_query *q, const char *out_csv,
                          int64_t *users)
{
    pt_rec_query dq = pt_rec_query_default();
    if (!q) q = &dq;
    if (users) *users = 0;
    struct ask a;
    struct atomic_file af = {0};
    struct csv_reader *rd = NULL;
    int rc = ask_init(&a, r, q);
    if (!rc) rc = atomic_file_open(&af, out_csv);
    if (!rc && users_path) rc = csv_reader_open(&rd, users_path, NULL);
    if (rc) goto out;
    if (fputs("user,rank,item,score\n", af.f) < 0) {
        rc = pt_error_at(PT_EIO, out_csv, 0, "write error");
        goto out;
    }
    int64_t done = 0;
    if (!users_path) {
        for (int32_t u = 0; u < r->users.n && !rc; u++) {
            int n = ask_user(&a, u, q->include_seen);
            rc = n < 0 ? n : write_user(af.f, &a, vocab_str(&r->users, u), n);
            done++;
        }
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
            int32_t u = vocab_find(&r->users, f[0], lens[0]);
            int n = ask_user(&a, u, q->include_seen);
            rc = n < 0 ? n : write_user(af.f, &a, f[0], n);
            done++;
        }
    }
    if (!rc) rc = atomic_file_commit(&af);
    if (!rc && users) *users = done;
out:
    if (rc) atomic_file_abort(&af);
    csv_reader_close(rd);
    ask_free(&a);
    return rc;
}
