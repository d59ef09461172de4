/* i2i.c: item-to-item co-occurrence ("bought this, also bought").
 *
 * c_ij sums, over users who have both i and j, a weight 1 (or, with
 * pair_window, only pairs at most that far apart in time); the similarity
 * normalises by both items' user counts,
 *   sim(i, j) = c_ij / (n_i^alpha · n_j^(1 - alpha)),
 * so that a bestseller j, which co-occurs with everything, is not everyone's
 * neighbour (alpha 0.5 is cosine). Each item keeps its `neighbours` best.
 * Row i is computed from i's users alone, with one [N] accumulator, so memory
 * is O(N + kept neighbours) and rows are independent (threads). */
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "rec/rec.h"
#include "util/util.h"

struct cand {
    float s;
    int32_t j;
};

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

int rec_i2i_train(const struct rec_cfg *cfg, const struct rec_hist *h, int32_t N, struct rec_model *m)
{
    int32_t U = h->U;
    int64_t P = h->off[U];
    int M = cfg->neighbours < N ? cfg->neighbours : (N > 0 ? N - 1 : 0);
    double alpha = cfg->alpha;
    int64_t win = cfg->pair_window;
    /* item → (user, position) lists */
    int64_t *ioff = pt_calloc((size_t)N + 1, sizeof *ioff);
    int64_t *ipos = pt_malloc((size_t)(P ? P : 1) * sizeof *ipos);
    int32_t *iuser = pt_malloc((size_t)(P ? P : 1) * sizeof *iuser);
    float *pw = pt_malloc((size_t)(N ? N : 1) * sizeof *pw);
    m->nb_off = pt_calloc((size_t)N + 1, sizeof *m->nb_off);
    m->nb_item = pt_malloc((size_t)N * (size_t)(M ? M : 1) * sizeof *m->nb_item);
    m->nb_sim = pt_malloc((size_t)N * (size_t)(M ? M : 1) * sizeof *m->nb_sim);
    int32_t *cnt = pt_calloc((size_t)(N ? N : 1), sizeof *cnt);
    int rc = PT_OK;
    if (!ioff || !ipos || !iuser || !pw || !m->nb_off || !m->nb_item || !m->nb_sim || !cnt) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto out;
    }
    for (int64_t p = 0; p < P; p++) ioff[h->item[p] + 1]++;
    for (int32_t i = 0; i < N; i++) ioff[i + 1] += ioff[i];
    {
        int64_t *fill = pt_malloc((size_t)(N ? N : 1) * sizeof *fill);
        if (!fill) {
            rc = pt_error(PT_ENOMEM, "out of memory");
            goto out;
        }
        memcpy(fill, ioff, (size_t)N * sizeof *fill);
        for (int32_t u = 0; u < U; u++)
            for (int64_t p = h->off[u]; p < h->off[u + 1]; p++) {
                int64_t q = fill[h->item[p]]++;
                ipos[q] = p, iuser[q] = u;
            }
        pt_free(fill);
    }
    for (int32_t i = 0; i < N; i++) {
        cnt[i] = (int32_t)(ioff[i + 1] - ioff[i]);
        pw[i] = cnt[i] ? (float)pow((double)cnt[i], 1 - alpha) : 1;
    }
    int fail = 0;
#ifdef PT_HAVE_OPENMP
#pragma omp parallel
#endif
    {
        float *acc = pt_calloc((size_t)(N ? N : 1), sizeof *acc);
        int32_t *touched = pt_malloc((size_t)(N ? N : 1) * sizeof *touched);
        struct cand *cd = pt_malloc((size_t)(N ? N : 1) * sizeof *cd);
        if (!acc || !touched || !cd) {
#ifdef PT_HAVE_OPENMP
#pragma omp atomic write
#endif
            fail = 1;
        }
#ifdef PT_HAVE_OPENMP
#pragma omp for schedule(dynamic, 16)
#endif
        for (int32_t i = 0; i < N; i++) {
            if (!acc || !touched || !cd) continue;
            int nt = 0;
            for (int64_t q = ioff[i]; q < ioff[i + 1]; q++) {
                int32_t u = iuser[q];
                int64_t t = h->time[ipos[q]];
                for (int64_t p = h->off[u]; p < h->off[u + 1]; p++) {
                    int32_t j = h->item[p];
                    if (j == i) continue;
                    if (win > 0 && llabs(h->time[p] - t) > win) continue;
                    if (acc[j] == 0) touched[nt++] = j;
                    acc[j] += 1;
                }
            }
            float ni = cnt[i] ? (float)pow((double)cnt[i], alpha) : 1;
            for (int k = 0; k < nt; k++) {
                int32_t j = touched[k];
                cd[k].s = acc[j] / (ni * pw[j]);
                cd[k].j = j;
                acc[j] = 0;
            }
            int keep = nt < M ? nt : M;
            qsort(cd, (size_t)nt, sizeof *cd, cand_cmp);
            int64_t base = (int64_t)i * M;
            for (int k = 0; k < keep; k++) m->nb_item[base + k] = cd[k].j, m->nb_sim[base + k] = cd[k].s;
            m->nb_off[i + 1] = keep; /* count for now; packed below */
        }
        pt_free(acc), pt_free(touched), pt_free(cd);
    }
    if (fail) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto out;
    }
    /* pack rows of M slots into CSR */
    int64_t w = 0;
    for (int32_t i = 0; i < N; i++) {
        int64_t n = m->nb_off[i + 1], base = (int64_t)i * M;
        memmove(m->nb_item + w, m->nb_item + base, (size_t)n * sizeof *m->nb_item);
        memmove(m->nb_sim + w, m->nb_sim + base, (size_t)n * sizeof *m->nb_sim);
        m->nb_off[i] = w;
        w += n;
        m->nb_off[i + 1] = w;
    }
    m->N = N;
out:
    pt_free(ioff), pt_free(ipos), pt_free(iuser), pt_free(pw), pt_free(cnt);
    return rc;
}
