/* eval.c: ranking metrics of a retrieval model on a held-out split. Every
 * item the user has not trained on is ranked (the protocol of
 * bench/peers/torch_bpr.py): a held-out item's rank is the number of such
 * items, other than itself, that score strictly higher. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rec/rec.h"
#include "util/util.h"

/* Min-heap of (score, item) for the best K; ordering: higher score, then lower item. */
static int better(float sa, int32_t ia, float sb, int32_t ib) { return sa > sb || (sa == sb && ia < ib); }

static void sift_down(float *hs, int32_t *hi, int n, int p)
{
    for (;;) {
        int l = 2 * p + 1, r = l + 1, w = p;
        if (l < n && better(hs[w], hi[w], hs[l], hi[l])) w = l;
        if (r < n && better(hs[w], hi[w], hs[r], hi[r])) w = r;
        if (w == p) return;
        float ts = hs[p];
        int32_t ti = hi[p];
        hs[p] = hs[w], hi[p] = hi[w], hs[w] = ts, hi[w] = ti;
        p = w;
    }
}

int rec_select_row(const float *scores, int32_t N, const uint8_t *deny, int K, float *hs, int32_t *hi, int32_t *out,
                   float *out_score)
{
    int n = 0;
    for (int32_t j = 0; j < N; j++) {
        if (deny && deny[j]) continue;
        float s = scores[j];
        if (n < K) {
            hs[n] = s, hi[n] = j, n++;
            for (int p = n - 1; p > 0;) { /* sift up: the root holds the worst */
                int q = (p - 1) / 2;
                if (!better(hs[q], hi[q], hs[p], hi[p])) break;
                float ts = hs[p];
                int32_t ti = hi[p];
                hs[p] = hs[q], hi[p] = hi[q], hs[q] = ts, hi[q] = ti;
                p = q;
            }
        } else if (better(s, j, hs[0], hi[0])) {
            hs[0] = s, hi[0] = j;
            sift_down(hs, hi, n, 0);
        }
    }
    for (int m = n; m > 0; m--) { /* pop the worst to the back */
        out[m - 1] = hi[0];
        if (out_score) out_score[m - 1] = hs[0];
        hs[0] = hs[m - 1], hi[0] = hi[m - 1];
        sift_down(hs, hi, m - 1, 0);
    }
    return n;
}

int rec_evaluate(const struct rec_model *m, const struct rec_split *s, int K, struct rec_metrics *out)
{
    memset(out, 0, sizeof *out);
    int32_t N = m->N;
    const struct rec_hist *h = &s->train;
    /* users per scoring block: a few MiB of scores */
    int B = (int)(((int64_t)1 << 22) / (N ? N : 1));
    if (B < 1) B = 1;
    if (B > 256) B = 256;
    float *scores = pt_malloc((size_t)B * (size_t)N * sizeof *scores);
    uint8_t *seen = pt_calloc((size_t)(N ? N : 1), 1);
    int32_t *rank = pt_malloc((size_t)(N ? N : 1) * sizeof *rank);
    int32_t *top = pt_malloc((size_t)K * sizeof *top), *hi = pt_malloc((size_t)K * sizeof *hi);
    float *hs = pt_malloc((size_t)K * sizeof *hs);
    uint8_t *hit = pt_calloc((size_t)(N ? N : 1), 1);
    int rc = PT_OK;
    if (!scores || !seen || !rank || !top || !hi || !hs || !hit) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto out;
    }
    /* popularity rank of each item in training (1 = most bought); ties share the better rank */
    {
        int64_t *cnt = pt_calloc((size_t)(N ? N : 1), sizeof *cnt);
        int32_t *ord = pt_malloc((size_t)(N ? N : 1) * sizeof *ord);
        if (!cnt || !ord) {
            pt_free(cnt), pt_free(ord);
            rc = pt_error(PT_ENOMEM, "out of memory");
            goto out;
        }
        for (int64_t p = 0; p < h->off[h->U]; p++) cnt[h->item[p]]++;
        /* counting sort by count, descending */
        int64_t mx = 0;
        for (int32_t j = 0; j < N; j++) mx = cnt[j] > mx ? cnt[j] : mx;
        int64_t *bucket = pt_calloc((size_t)mx + 2, sizeof *bucket);
        if (!bucket) {
            pt_free(cnt), pt_free(ord);
            rc = pt_error(PT_ENOMEM, "out of memory");
            goto out;
        }
        for (int32_t j = 0; j < N; j++) bucket[mx - cnt[j] + 1]++;
        for (int64_t c = 0; c <= mx; c++) bucket[c + 1] += bucket[c];
        /* items with count c rank 1 + (items with a higher count) */
        for (int32_t j = 0; j < N; j++) rank[j] = (int32_t)(bucket[mx - cnt[j]] + 1);
        pt_free(bucket), pt_free(cnt), pt_free(ord);
    }
    int32_t *uids = pt_malloc((size_t)B * sizeof *uids);
    if (!uids) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto out;
    }
    double hr = 0, rec = 0, ndcg = 0, mrr = 0, prank = 0;
    int64_t nrec = 0, covered = 0;
    for (int32_t t0 = 0; t0 < s->ntest; t0 += B) {
        int b = s->ntest - t0 < B ? s->ntest - t0 : B;
        for (int r = 0; r < b; r++) uids[r] = s->test_user[t0 + r];
        if ((rc = rec_model_score(m, h, uids, b, scores))) break;
        for (int r = 0; r < b; r++) {
            int32_t u = uids[r];
            const float *sc = scores + (size_t)r * (size_t)N;
            for (int64_t p = h->off[u]; p < h->off[u + 1]; p++) seen[h->item[p]] = 1;
            int64_t a = s->test_off[t0 + r], e = s->test_off[t0 + r + 1];
            int nt = (int)(e - a), hits = 0;
            double dcg = 0, idcg = 0;
            int64_t best = INT64_MAX;
            for (int64_t q = a; q < e; q++) {
                int32_t it = s->test_item[q];
                float st = sc[it];
                int64_t rk = 0;
                for (int32_t j = 0; j < N; j++) rk += sc[j] > st && !seen[j];
                if (rk < best) best = rk;
                if (rk < K) hits++, dcg += 1.0 / log2((double)rk + 2);
            }
            for (int q = 0; q < nt && q < K; q++) idcg += 1.0 / log2((double)q + 2);
            hr += hits > 0;
            rec += (double)hits / nt;
            ndcg += dcg / idcg;
            mrr += 1.0 / ((double)best + 1);
            int n = rec_select_row(sc, N, seen, K, hs, hi, top, NULL);
            for (int64_t p = h->off[u]; p < h->off[u + 1]; p++) seen[h->item[p]] = 0;
            for (int q = 0; q < n; q++) {
                covered += !hit[top[q]];
                hit[top[q]] = 1;
                prank += rank[top[q]];
            }
            nrec += n;
        }
    }
    pt_free(uids);
    if (rc == PT_OK && s->ntest) {
        double n = s->ntest;
        out->users = s->ntest;
        out->hr = hr / n, out->recall = rec / n, out->ndcg = ndcg / n, out->mrr = mrr / n;
        out->coverage = N ? (double)covered / N : 0;
        out->pop_rank = nrec ? prank / (double)nrec : 0;
    }
out:
    pt_free(scores), pt_free(seen), pt_free(rank), pt_free(top), pt_free(hi), pt_free(hs), pt_free(hit);
    return rc;
}
