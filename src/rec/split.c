/* split.c: per-user histories and the evaluation split. The protocol is the
 * one of bench/peers/torch_bpr.py: a (user, item) pair counts once, at its
 * first time; leave-last-out holds out each user's latest item. */
#include <stdlib.h>
#include <string.h>

#include "rec/rec.h"
#include "util/util.h"

/* Row order by (time, file row): a stable counting of rows by time. */
static int time_order(const struct rec_log *log, int64_t **out)
{
    int64_t n = log->n, *ord = pt_malloc((size_t)n * sizeof *ord);
    if (!ord) return pt_error(PT_ENOMEM, "out of memory");
    for (int64_t k = 0; k < n; k++) ord[k] = k;
    int sorted = 1;
    for (int64_t k = 1; k < n && sorted; k++) sorted = log->time[k - 1] <= log->time[k];
    if (!sorted) {
        /* merge sort by time; stable, so file order breaks ties */
        int64_t *tmp = pt_malloc((size_t)n * sizeof *tmp);
        if (!tmp) {
            pt_free(ord);
            return pt_error(PT_ENOMEM, "out of memory");
        }
        for (int64_t w = 1; w < n; w *= 2) {
            for (int64_t lo = 0; lo < n; lo += 2 * w) {
                int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
                int64_t a = lo, b = mid, o = lo;
                while (a < mid && b < hi) tmp[o++] = log->time[ord[b]] < log->time[ord[a]] ? ord[b++] : ord[a++];
                while (a < mid) tmp[o++] = ord[a++];
                while (b < hi) tmp[o++] = ord[b++];
            }
            int64_t *t = ord;
            ord = tmp, tmp = t;
        }
        pt_free(tmp);
    }
    *out = ord;
    return PT_OK;
}

/* keep[k] = 1 when row ord[k] is the first of its (user, item) pair. */
static int first_pairs(const struct rec_log *log, const int64_t *ord, uint8_t *keep)
{
    size_t cap = 16;
    while (cap < (size_t)log->n * 2) cap *= 2;
    uint64_t *set = pt_malloc(cap * sizeof *set);
    if (!set) return pt_error(PT_ENOMEM, "out of memory");
    memset(set, 0xff, cap * sizeof *set);
    for (int64_t k = 0; k < log->n; k++) {
        int64_t r = ord[k];
        uint64_t key = (uint64_t)(uint32_t)log->user[r] << 32 | (uint32_t)log->item[r];
        size_t h = (size_t)pt_hash64(&key, sizeof key, 0) & (cap - 1);
        while (set[h] != UINT64_MAX && set[h] != key) h = (h + 1) & (cap - 1);
        keep[k] = set[h] == UINT64_MAX;
        set[h] = key;
    }
    pt_free(set);
    return PT_OK;
}

/* Fills h from the rows ord[k] with take[k] set. */
static int hist_fill(const struct rec_log *log, const int64_t *ord, const uint8_t *take, struct rec_hist *h)
{
    int32_t U = log->users.n;
    memset(h, 0, sizeof *h);
    h->U = U;
    int64_t m = 0;
    for (int64_t k = 0; k < log->n; k++) m += take[k];
    h->off = pt_calloc((size_t)U + 1, sizeof *h->off);
    h->item = pt_malloc((size_t)(m ? m : 1) * sizeof *h->item);
    h->time = pt_malloc((size_t)(m ? m : 1) * sizeof *h->time);
    h->weight = pt_malloc((size_t)(m ? m : 1) * sizeof *h->weight);
    if (!h->off || !h->item || !h->time || !h->weight) {
        rec_hist_free(h);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    for (int64_t k = 0; k < log->n; k++)
        if (take[k]) h->off[log->user[ord[k]] + 1]++;
    for (int32_t u = 0; u < U; u++) h->off[u + 1] += h->off[u];
    int64_t *pos = pt_malloc((size_t)(U ? U : 1) * sizeof *pos);
    if (!pos) {
        rec_hist_free(h);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    memcpy(pos, h->off, (size_t)U * sizeof *pos);
    for (int64_t k = 0; k < log->n; k++) {
        if (!take[k]) continue;
        int64_t r = ord[k], p = pos[log->user[r]]++;
        h->item[p] = log->item[r], h->time[p] = log->time[r], h->weight[p] = log->weight[r];
    }
    pt_free(pos);
    return PT_OK;
}

int rec_hist_build(const struct rec_log *log, struct rec_hist *out)
{
    int64_t *ord = NULL;
    uint8_t *keep = pt_malloc((size_t)(log->n ? log->n : 1));
    int rc = keep ? time_order(log, &ord) : pt_error(PT_ENOMEM, "out of memory");
    if (!rc) rc = first_pairs(log, ord, keep);
    if (!rc) rc = hist_fill(log, ord, keep, out);
    pt_free(ord);
    pt_free(keep);
    return rc;
}

void rec_hist_free(struct rec_hist *h)
{
    pt_free(h->off), pt_free(h->item), pt_free(h->time), pt_free(h->weight);
    memset(h, 0, sizeof *h);
}

int rec_split_make(const struct rec_log *log, enum rec_protocol proto, int64_t test_from, struct rec_split *out)
{
    memset(out, 0, sizeof *out);
    struct rec_hist all = {0};
    int rc = rec_hist_build(log, &all);
    if (rc) return rc;
    int32_t U = all.U;
    int64_t m = all.off[U];
    uint8_t *held = pt_calloc((size_t)(m ? m : 1), 1);
    if (!held) goto oom;
    if (proto == REC_LEAVE_LAST) {
        /* as bench/peers/torch_bpr.py: users with one item are left out altogether (2: dropped) */
        for (int32_t u = 0; u < U; u++)
            if (all.off[u + 1] - all.off[u] >= 2) held[all.off[u + 1] - 1] = 1;
            else if (all.off[u + 1] > all.off[u]) held[all.off[u]] = 2;
    } else {
        if (test_from == INT64_MIN) {
            int64_t lo = INT64_MAX, hi = INT64_MIN;
            for (int64_t k = 0; k < log->n; k++) {
                if (log->time[k] < lo) lo = log->time[k];
                if (log->time[k] > hi) hi = log->time[k];
            }
            test_from = hi - (hi - lo) / 10;
        }
        for (int32_t u = 0; u < U; u++) {
            int has_train = 0;
            for (int64_t p = all.off[u]; p < all.off[u + 1]; p++) has_train |= all.time[p] < test_from;
            for (int64_t p = all.off[u]; p < all.off[u + 1]; p++)
                if (all.time[p] >= test_from) held[p] = has_train ? 1 : 2;
        }
    }
    /* training histories: what is not held out (cold users' later items are dropped: they are unknown at test_from) */
    struct rec_hist *t = &out->train;
    t->U = U;
    int64_t nt = 0, nh = 0;
    for (int64_t p = 0; p < m; p++) nt += !held[p], nh += held[p] == 1;
    for (int32_t u = 0; u < U; u++) {
        int any = 0;
        for (int64_t p = all.off[u]; p < all.off[u + 1]; p++)
            any |= held[p] == 1, out->cold_users += proto == REC_TIME_SPLIT && held[p] == 2 && p == all.off[u];
        out->ntest += any;
    }
    t->off = pt_calloc((size_t)U + 1, sizeof *t->off);
    t->item = pt_malloc((size_t)(nt ? nt : 1) * sizeof *t->item);
    t->time = pt_malloc((size_t)(nt ? nt : 1) * sizeof *t->time);
    t->weight = pt_malloc((size_t)(nt ? nt : 1) * sizeof *t->weight);
    out->test_user = pt_malloc((size_t)(out->ntest ? out->ntest : 1) * sizeof *out->test_user);
    out->test_off = pt_calloc((size_t)out->ntest + 1, sizeof *out->test_off);
    out->test_item = pt_malloc((size_t)(nh ? nh : 1) * sizeof *out->test_item);
    out->test_time = pt_malloc((size_t)(out->ntest ? out->ntest : 1) * sizeof *out->test_time);
    if (!t->off || !t->item || !t->time || !t->weight || !out->test_user || !out->test_off || !out->test_item || !out->test_time)
        goto oom;
    int64_t q = 0, hq = 0;
    int32_t tu = 0;
    for (int32_t u = 0; u < U; u++) {
        int64_t first_held = -1;
        for (int64_t p = all.off[u]; p < all.off[u + 1]; p++) {
            if (!held[p]) {
                t->item[q] = all.item[p], t->time[q] = all.time[p], t->weight[q] = all.weight[p];
                q++;
            } else if (held[p] == 1) {
                if (first_held < 0) first_held = p;
                out->test_item[hq++] = all.item[p];
            }
        }
        t->off[u + 1] = q;
        if (first_held >= 0) {
            out->test_user[tu] = u;
            out->test_time[tu] = all.time[first_held];
            out->test_off[++tu] = hq;
        }
    }
    pt_free(held);
    rec_hist_free(&all);
    return PT_OK;
oom:
    pt_free(held);
    rec_hist_free(&all);
    rec_split_free(out);
    return pt_error(PT_ENOMEM, "out of memory");
}

void rec_split_free(struct rec_split *s)
{
    rec_hist_free(&s->train);
    pt_free(s->test_user), pt_free(s->test_off), pt_free(s->test_item), pt_free(s->test_time);
    memset(s, 0, sizeof *s);
}
