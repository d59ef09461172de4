/* model.c: scoring users with any retrieval model, and popularity. */
#include <math.h>
#include <string.h>

#include "nn/nn.h"
#include "rec/catalog.h"
#include "rec/rec.h"
#include "rec/twotower.h"
#include "util/util.h"

int rec_pop_train(const struct rec_hist *h, int32_t N, int64_t t_end, int64_t half_life, float *pop)
{
    memset(pop, 0, (size_t)N * sizeof *pop);
    for (int64_t p = 0; p < h->off[h->U]; p++) {
        double w = h->weight[p];
        if (half_life > 0) w *= exp2(-(double)(t_end - h->time[p]) / (double)half_life);
        pop[h->item[p]] += (float)w;
    }
    return PT_OK;
}

/* Weight of history item p of a user whose latest item is at t_last. */
static float recency(const struct rec_model *m, const struct rec_hist *h, int64_t p, int64_t t_last)
{
    if (m->half_life <= 0) return 1.0f;
    return (float)exp2(-(double)(t_last - h->time[p]) / (double)m->half_life);
}

/* Popularity scaled into [0, eps]: breaks ties among items a model scores
 * alike (an empty neighbourhood, a new user) by popularity. */
static void add_pop(const struct rec_model *m, float *s, float eps)
{
    float mx = 0;
    for (int32_t j = 0; j < m->N; j++) mx = m->pop[j] > mx ? m->pop[j] : mx;
    if (mx <= 0) return;
    float k = eps / mx;
    for (int32_t j = 0; j < m->N; j++) s[j] += k * m->pop[j];
}

static void score_i2i(const struct rec_model *m, const struct rec_hist *h, int32_t u, float *s)
{
    memset(s, 0, (size_t)m->N * sizeof *s);
    int64_t a = u >= 0 && u < h->U ? h->off[u] : 0, e = u >= 0 && u < h->U ? h->off[u + 1] : 0;
    int64_t t_last = e > a ? h->time[e - 1] : 0;
    float total = 0;
    for (int64_t p = a; p < e; p++) {
        float w = recency(m, h, p, t_last);
        int32_t i = h->item[p];
        if (i < 0 || i >= m->N) continue;
        for (int64_t q = m->nb_off[i]; q < m->nb_off[i + 1]; q++) s[m->nb_item[q]] += w * m->nb_sim[q];
        total += w;
    }
    /* popularity breaks ties among items the history does not reach */
    float mx = 0;
    for (int32_t j = 0; j < m->N; j++) mx = s[j] > mx ? s[j] : mx;
    add_pop(m, s, mx > 0 ? mx * 1e-4f : 1.0f);
    (void)total;
}

/* A user with fewer than cold_min_history items: (1 - blend) × the model's
 * scores scaled to [0, 1] + blend × popularity scaled to [0, 1], where
 * popularity counts tenfold in the categories of the user's items. */
static void cold_blend(const struct rec_model *m, const struct rec_hist *h, int32_t u, float *s)
{
    int64_t a = u >= 0 && u < h->U ? h->off[u] : 0, e = u >= 0 && u < h->U ? h->off[u + 1] : 0;
    if (e - a >= m->cold_min_history || m->cold_blend <= 0) return;
    float lo = INFINITY, hi = -INFINITY, pmax = 0, b = m->cold_blend;
    for (int32_t j = 0; j < m->N; j++) {
        lo = s[j] < lo ? s[j] : lo, hi = s[j] > hi ? s[j] : hi;
        pmax = m->pop[j] > pmax ? m->pop[j] : pmax;
    }
    float span = hi > lo ? hi - lo : 1;
    for (int32_t j = 0; j < m->N; j++) {
        float p = pmax > 0 ? m->pop[j] / pmax : 0;
        if (m->item_cat && e > a) {
            int in = 0;
            for (int64_t q = a; q < e && !in; q++) in = m->item_cat[h->item[q]] >= 0 && m->item_cat[h->item[q]] == m->item_cat[j];
            p *= in ? 1.0f : 0.1f;
        }
        s[j] = (1 - b) * (s[j] - lo) / span + b * p;
    }
}

int rec_model_score(const struct rec_model *m, const struct rec_hist *h, const int32_t *uids, int B,
                    float *scores)
{
    size_t N = (size_t)m->N;
    switch (m->kind) {
    case REC_ITEM2ITEM:
        for (int b = 0; b < B; b++) {
            score_i2i(m, h, uids[b], scores + (size_t)b * N);
            cold_blend(m, h, uids[b], scores + (size_t)b * N);
        }
        return PT_OK;
    case REC_BPR:
    case REC_WARP:
    case REC_SOFTMAX: {
        int D = m->D;
        float *ub = pt_malloc((size_t)B * (size_t)D * sizeof *ub);
        if (!ub) return pt_error(PT_ENOMEM, "out of memory");
        for (int b = 0; b < B; b++) {
            if (uids[b] >= 0 && uids[b] < m->U) memcpy(ub + (size_t)b * D, m->uf + (size_t)uids[b] * D, (size_t)D * sizeof *ub);
            else memset(ub + (size_t)b * D, 0, (size_t)D * sizeof *ub);
        }
        nn_sgemm('N', 'T', B, m->N, D, 1.0f, ub, D, m->vf, D, 0.0f, scores, m->N);
        pt_free(ub);
        for (int b = 0; b < B; b++) {
            float *s = scores + (size_t)b * N;
            if (m->vb)
                for (size_t j = 0; j < N; j++) s[j] += m->vb[j];
            if (uids[b] < 0 || uids[b] >= m->U) memcpy(s, m->pop, N * sizeof *s);
            else cold_blend(m, h, uids[b], s);
        }
        return PT_OK;
    }
    case REC_TWO_TOWER: {
        int D = m->D;
        float *ub = pt_malloc((size_t)B * (size_t)D * sizeof *ub);
        if (!ub) return pt_error(PT_ENOMEM, "out of memory");
        int rc = rec_tt_user_vectors(m->tt, h, uids, B, ub);
        if (!rc) nn_sgemm('N', 'T', B, m->N, D, 1.0f, ub, D, m->vf, D, 0.0f, scores, m->N);
        pt_free(ub);
        for (int b = 0; !rc && b < B; b++) {
            float *s = scores + (size_t)b * N;
            int32_t u = uids[b];
            /* no history, no user vector: popularity */
            if (u < 0 || u >= h->U || h->off[u + 1] == h->off[u]) memcpy(s, m->pop, N * sizeof *s);
            else cold_blend(m, h, u, s);
        }
        return rc;
    }
    case REC_POPULARITY:
    default:
        for (int b = 0; b < B; b++) memcpy(scores + (size_t)b * N, m->pop, N * sizeof *scores);
        return PT_OK;
    }
}

void rec_model_free(struct rec_model *m)
{
    if (!m) return;
    pt_free(m->pop), pt_free(m->uf), pt_free(m->vf), pt_free(m->vb);
    pt_free(m->nb_off), pt_free(m->nb_item), pt_free(m->nb_sim);
    pt_free(m->item_cat), pt_free(m->item_price);
    rec_tt_free(m->tt);
    memset(m, 0, sizeof *m);
}

int rec_cold_items(const struct rec_catalog *cat, double content_weight, const struct rec_hist *h, struct rec_model *m)
{
    int32_t N = m->N;
    uint8_t *cold = pt_malloc((size_t)(N ? N : 1));
    int64_t *coff = NULL;
    int32_t *citem = NULL;
    float *csim = NULL;
    if (!cold) return pt_error(PT_ENOMEM, "out of memory");
    memset(cold, 1, (size_t)N);
    for (int64_t p = 0; p < h->off[h->U]; p++) cold[h->item[p]] = 0;
    int rc = rec_catalog_neighbours(cat, cold, 20, &coff, &citem, &csim);
    if (rc) goto out;
    if (m->kind == REC_ITEM2ITEM && m->nb_off) {
        /* extra links: cold j -> warm i (forward) and warm i -> cold j (reverse) */
        int64_t *cnt = pt_calloc((size_t)N + 1, sizeof *cnt), *fill = pt_malloc(((size_t)N + 1) * sizeof *fill);
        if (!cnt || !fill) {
            pt_free(cnt), pt_free(fill);
            goto oom;
        }
        for (int32_t j = 0; j < N; j++)
            for (int64_t q = coff[j]; q < coff[j + 1]; q++) cnt[j]++, cnt[citem[q]]++;
        int64_t total = m->nb_off[N];
        for (int32_t i = 0; i < N; i++) total += cnt[i];
        int64_t *off = pt_malloc(((size_t)N + 1) * sizeof *off);
        int32_t *it = pt_malloc((size_t)(total ? total : 1) * sizeof *it);
        float *sm = pt_malloc((size_t)(total ? total : 1) * sizeof *sm);
        if (!off || !it || !sm) {
            pt_free(cnt), pt_free(fill), pt_free(off), pt_free(it), pt_free(sm);
            goto oom;
        }
        /* each row: its co-occurrence neighbours, then room for its extras */
        int64_t w = 0;
        for (int32_t i = 0; i < N; i++) {
            int64_t n = m->nb_off[i + 1] - m->nb_off[i];
            memcpy(it + w, m->nb_item + m->nb_off[i], (size_t)n * sizeof *it);
            memcpy(sm + w, m->nb_sim + m->nb_off[i], (size_t)n * sizeof *sm);
            off[i] = w;
            fill[i] = w + n;
            w += n + cnt[i];
        }
        off[N] = w;
        pt_free(cnt);
        /* a link is as strong as content_weight × similarity × the warm item's best co-occurrence */
        for (int32_t j = 0; j < N; j++)
            for (int64_t q = coff[j]; q < coff[j + 1]; q++) {
                int32_t i = citem[q];
                float best = m->nb_off[i + 1] > m->nb_off[i] ? m->nb_sim[m->nb_off[i]] : 0;
                float v = (float)content_weight * csim[q] * best;
                it[fill[i]] = j, sm[fill[i]++] = v;
                it[fill[j]] = i, sm[fill[j]++] = v;
            }
        pt_free(fill);
        pt_free(m->nb_off), pt_free(m->nb_item), pt_free(m->nb_sim);
        m->nb_off = off, m->nb_item = it, m->nb_sim = sm;
    } else if (m->vf) {
        int D = m->D;
        for (int32_t j = 0; j < N; j++) {
            if (coff[j + 1] == coff[j]) continue;
            float *v = m->vf + (size_t)j * D, tot = 0, bias = 0;
            memset(v, 0, (size_t)D * sizeof *v);
            for (int64_t q = coff[j]; q < coff[j + 1]; q++) {
                const float *src = m->vf + (size_t)citem[q] * D;
                for (int d = 0; d < D; d++) v[d] += csim[q] * src[d];
                if (m->vb) bias += csim[q] * m->vb[citem[q]];
                tot += csim[q];
            }
            if (tot > 0) {
                for (int d = 0; d < D; d++) v[d] /= tot;
                if (m->vb) m->vb[j] = bias / tot;
            }
        }
    }
    goto out;
oom:
    rc = pt_error(PT_ENOMEM, "out of memory");
out:
    pt_free(cold), pt_free(coff), pt_free(citem), pt_free(csim);
    return rc;
}

int rec_score_history(const struct rec_model *m, const int32_t *items, int n, float *scores)
{
    int64_t off[2] = {0, n};
    int32_t *it = pt_malloc((size_t)(n ? n : 1) * sizeof *it);
    int64_t *tm = pt_malloc((size_t)(n ? n : 1) * sizeof *tm);
    float *w = pt_malloc((size_t)(n ? n : 1) * sizeof *w);
    int rc = PT_OK;
    if (!it || !tm || !w) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto out;
    }
    int k = 0;
    for (int q = 0; q < n; q++)
        if (items[q] >= 0 && items[q] < m->N) it[k] = items[q], tm[k] = m->t_end, w[k] = 1, k++;
    off[1] = k;
    struct rec_hist h = {.U = 1, .off = off, .item = it, .time = tm, .weight = w};
    size_t N = (size_t)m->N;
    if (m->kind == REC_ITEM2ITEM) {
        score_i2i(m, &h, 0, scores);
    } else if (m->kind == REC_TWO_TOWER && k) {
        int32_t zero = 0;
        rc = rec_model_score(m, &h, &zero, 1, scores); /* blends on its own */
        goto out;
    } else if (m->vf && k) {
        /* fold-in: the mean of the history's item factors stands for the user */
        int D = m->D;
        float *u = pt_calloc((size_t)D, sizeof *u);
        if (!u) {
            rc = pt_error(PT_ENOMEM, "out of memory");
            goto out;
        }
        for (int q = 0; q < k; q++)
            for (int d = 0; d < D; d++) u[d] += m->vf[(size_t)it[q] * D + d] / (float)k;
        nn_sgemm('N', 'T', 1, m->N, D, 1.0f, u, D, m->vf, D, 0.0f, scores, m->N);
        pt_free(u);
        if (m->vb)
            for (size_t j = 0; j < N; j++) scores[j] += m->vb[j];
    } else {
        memcpy(scores, m->pop, N * sizeof *scores);
    }
    cold_blend(m, &h, 0, scores);
out:
    pt_free(it), pt_free(tm), pt_free(w);
    return rc;
}
