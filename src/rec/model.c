/* model.c: scoring users with any retrieval model, and popularity. */
#include <math.h>
#include <string.h>

#include "nn/nn.h"
#include "rec/rec.h"
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
    /* short histories lean on popularity (cold_start.blend), longer ones only break ties with it */
    if (e - a < m->cold_min_history && m->cold_blend > 0) {
        float mx = 0;
        for (int32_t j = 0; j < m->N; j++) mx = s[j] > mx ? s[j] : mx;
        float b = m->cold_blend;
        for (int32_t j = 0; j < m->N; j++) s[j] = mx > 0 ? (1 - b) * s[j] / mx : 0;
        add_pop(m, s, b > 0 ? b : 1e-3f);
    } else {
        float mx = 0;
        for (int32_t j = 0; j < m->N; j++) mx = s[j] > mx ? s[j] : mx;
        add_pop(m, s, mx > 0 ? mx * 1e-4f : 1.0f);
    }
    (void)total;
}

int rec_model_score(const struct rec_model *m, const struct rec_hist *h, const int32_t *uids, int B,
                    float *scores)
{
    size_t N = (size_t)m->N;
    switch (m->kind) {
    case REC_ITEM2ITEM:
        for (int b = 0; b < B; b++) score_i2i(m, h, uids[b], scores + (size_t)b * N);
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
        }
        return PT_OK;
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
    memset(m, 0, sizeof *m);
}
