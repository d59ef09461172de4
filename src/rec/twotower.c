/* twotower.c: the two-tower retrieval model (twotower.h): item tower
 * v_j = Wv E[j] + bv, user tower u = W2 relu(W1 mean(E[recent items]) + b1)
 * + b2, trained with an in-batch sampled softmax over the batch's
 * positives plus `negatives` uniform items shared by the batch, each
 * column's logit corrected by the log of its expected count among the
 * candidates (logQ, Yi et al. 2019: B·freq_j/P + negatives/N), so that the
 * popular items the in-batch negatives over-sample are not pushed down.
 * A column holding the row's own positive item again is masked out.
 *
 * Parameters live in one arena [E | Wv bv W1 b1 W2 b2]; the gradient and
 * the Adam moments mirror it. E is stepped lazily (only the rows a batch
 * touched, optim_update_rows), the dense tail whole (optim_update_dense).
 *
 * Does not: use item attributes, weight interactions, decay old history,
 * or train the items' own input embedding through anything but both
 * towers (E is shared: the user tower pools the item tower's input).
 *
 * Dims: N items, D0 embedding width, D output width, B batch rows, C
 * candidate columns, H pooled history. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn.h"
#include "rec/twotower.h"
#include "train/optim.h"
#include "util/util.h"

enum { P_E, P_WV, P_BV, P_W1, P_B1, P_W2, P_B2, NPARAM };

static const char *const NAMES[NPARAM + 1] = {"tt.item_emb", "tt.item.weight", "tt.item.bias",
                                              "tt.user.fc0.weight", "tt.user.fc0.bias",
                                              "tt.user.fc1.weight", "tt.user.fc1.bias", "tt.history"};

struct rec_tt {
    int32_t N;
    int D0, D, history;
    size_t n, off[NPARAM + 1]; /* arena size; offset of each parameter */
    float *w, *g, *m, *v;      /* [n] each */
    int32_t hist_i32;          /* tt.history's storage */
    char names[NPARAM + 1][24];
    /* batch workspace, grown by ws_reserve */
    int wsB, wsC;
    float *x, *a1, *h1, *u, *ec, *vc, *S, *dS, *du, *dh1, *dx, *dvc, *dec;
};

static size_t pshape(const struct rec_tt *tt, int p, int64_t *shape)
{
    int64_t N = tt->N, D0 = tt->D0, D = tt->D;
    int64_t s[NPARAM][2] = {{N, D0}, {D, D0}, {D, 0}, {D, D0}, {D, 0}, {D, D}, {D, 0}};
    if (shape) shape[0] = s[p][0], shape[1] = s[p][1];
    return (size_t)s[p][0] * (size_t)(s[p][1] ? s[p][1] : 1);
}

static void ws_free(struct rec_tt *tt)
{
    float **b[] = {&tt->x, &tt->a1, &tt->h1, &tt->u, &tt->ec, &tt->vc, &tt->S, &tt->dS, &tt->du, &tt->dh1,
                   &tt->dx, &tt->dvc, &tt->dec};
    for (size_t i = 0; i < sizeof b / sizeof *b; i++) pt_free(*b[i]), *b[i] = NULL;
    tt->wsB = tt->wsC = 0;
}

static int ws_reserve(struct rec_tt *tt, int B, int C)
{
    if (B <= tt->wsB && C <= tt->wsC) return PT_OK;
    B = B > tt->wsB ? B : tt->wsB;
    C = C > tt->wsC ? C : tt->wsC;
    ws_free(tt);
    size_t b = (size_t)B, c = (size_t)C, D0 = (size_t)tt->D0, D = (size_t)tt->D;
    struct {
        float **p;
        size_t n;
    } a[] = {{&tt->x, b * D0},  {&tt->a1, b * D}, {&tt->h1, b * D},  {&tt->u, b * D},    {&tt->ec, c * D0},
             {&tt->vc, c * D},  {&tt->S, b * c},  {&tt->dS, b * c},  {&tt->du, b * D},   {&tt->dh1, b * D},
             {&tt->dx, b * D0}, {&tt->dvc, c * D}, {&tt->dec, c * D0}};
    for (size_t i = 0; i < sizeof a / sizeof *a; i++)
        if (!(*a[i].p = pt_malloc((a[i].n ? a[i].n : 1) * sizeof(float)))) {
            ws_free(tt);
            return pt_error(PT_ENOMEM, "out of memory");
        }
    tt->wsB = B, tt->wsC = C;
    return PT_OK;
}

static inline float *P(const struct rec_tt *tt, int p) { return tt->w + tt->off[p]; }
static inline float *G(const struct rec_tt *tt, int p) { return tt->g + tt->off[p]; }

/* The arena for the given widths, weights uninitialised (zeroed). */
static int tt_alloc(int32_t N, int D0, int D, int history, struct rec_tt **out)
{
    *out = NULL;
    if (N < 1 || D0 < 1 || D < 1 || D0 > 65536 || D > 65536 || history < 1)
        return pt_error(PT_EINVAL, "two_tower: bad sizes (items %d, widths %d and %d, history %d)", (int)N, D0, D,
                        history);
    struct rec_tt *tt = pt_calloc(1, sizeof *tt);
    if (!tt) return pt_error(PT_ENOMEM, "out of memory");
    tt->N = N, tt->D0 = D0, tt->D = D, tt->history = history, tt->hist_i32 = history;
    for (int p = 0; p < NPARAM; p++) tt->off[p + 1] = tt->off[p] + pshape(tt, p, NULL);
    tt->n = tt->off[NPARAM];
    for (int p = 0; p <= NPARAM; p++) snprintf(tt->names[p], sizeof tt->names[p], "%s", NAMES[p]);
    tt->w = pt_calloc(tt->n, sizeof(float));
    tt->g = pt_calloc(tt->n, sizeof(float));
    tt->m = pt_calloc(tt->n, sizeof(float));
    tt->v = pt_calloc(tt->n, sizeof(float));
    if (!tt->w || !tt->g || !tt->m || !tt->v) {
        rec_tt_free(tt);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    *out = tt;
    return PT_OK;
}

int rec_tt_create(int32_t N, int D0, int D, int history, uint64_t seed, struct rec_tt **out)
{
    int rc = tt_alloc(N, D0, D, history, out);
    if (rc) return rc;
    struct rec_tt *tt = *out;
    struct rng r;
    rng_seed(&r, seed);
    nn_init_normal(P(tt, P_E), pshape(tt, P_E, NULL), 0.1f, &r);
    nn_init_xavier(P(tt, P_WV), D, D0, &r);
    nn_init_he(P(tt, P_W1), D, D0, &r);
    nn_init_xavier(P(tt, P_W2), D, D, &r);
    return PT_OK;
}

void rec_tt_free(struct rec_tt *tt)
{
    if (!tt) return;
    ws_free(tt);
    pt_free(tt->w), pt_free(tt->g), pt_free(tt->m), pt_free(tt->v);
    pt_free(tt);
}

void rec_tt_dims(const struct rec_tt *tt, int *D0, int *D, int *history)
{
    if (D0) *D0 = tt->D0;
    if (D) *D = tt->D;
    if (history) *history = tt->history;
}

void rec_tt_zero_grad(struct rec_tt *tt) { memset(tt->g, 0, tt->n * sizeof *tt->g); }

static void fill_tensors(const struct rec_tt *tt, float *base, struct mf_tensor *t)
{
    for (int p = 0; p < NPARAM; p++) {
        memset(&t[p], 0, sizeof t[p]);
        t[p].name = (char *)tt->names[p];
        t[p].data = base + tt->off[p];
        t[p].dtype = MF_F32;
        pshape(tt, p, t[p].shape);
        t[p].ndim = t[p].shape[1] ? 2 : 1;
    }
}

int rec_tt_tensors(const struct rec_tt *tt, struct mf_tensor *t, int max)
{
    if (max < REC_TT_NTENSORS) return pt_error(PT_EINVAL, "rec_tt_tensors: room for %d tensors, need %d", max, REC_TT_NTENSORS);
    fill_tensors(tt, tt->w, t);
    struct mf_tensor *h = &t[NPARAM];
    memset(h, 0, sizeof *h);
    h->name = (char *)tt->names[NPARAM];
    h->data = (float *)(void *)&((struct rec_tt *)tt)->hist_i32;
    h->dtype = MF_I32;
    h->ndim = 1;
    h->shape[0] = 1;
    return REC_TT_NTENSORS;
}

int rec_tt_grad_tensors(const struct rec_tt *tt, struct mf_tensor *t, int max)
{
    if (max < NPARAM) return pt_error(PT_EINVAL, "rec_tt_grad_tensors: room for %d tensors, need %d", max, NPARAM);
    fill_tensors(tt, tt->g, t);
    return NPARAM;
}

static const char *shape_str(char *buf, size_t cap, const struct mf_tensor *t)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
    return buf;
}

int rec_tt_from_file(const struct mf_file *f, const char *path, int32_t N, struct rec_tt **out)
{
    *out = NULL;
    const struct mf_tensor *t[REC_TT_NTENSORS];
    for (int p = 0; p < REC_TT_NTENSORS; p++) {
        t[p] = modelfile_find(f, NAMES[p]);
        if (!t[p]) return pt_error(PT_EFORMAT, "%s: no tensor '%s': not a two_tower model file", path, NAMES[p]);
        if (t[p]->dtype != (p == NPARAM ? MF_I32 : MF_F32))
            return pt_error(PT_EFORMAT, "%s: tensor '%s' is %s, expected %s", path, NAMES[p],
                            t[p]->dtype == MF_I32 ? "I32" : "F32", p == NPARAM ? "I32" : "F32");
    }
    const struct mf_tensor *e = t[P_E], *wv = t[P_WV], *hs = t[NPARAM];
    if (e->ndim != 2 || e->shape[0] != N)
        return pt_error(PT_EFORMAT, "%s: tensor 'tt.item_emb' has shape %s, expected [%d, dim]: the model was trained "
                        "on a different item set; retrain it", path, shape_str((char[64]){0}, 64, e), (int)N);
    if (wv->ndim != 2 || e->shape[1] < 1 || e->shape[1] > 65536 || wv->shape[0] < 1 || wv->shape[0] > 65536)
        return pt_error(PT_EFORMAT, "%s: tensor 'tt.item.weight' has shape %s, expected [D, %lld]", path,
                        shape_str((char[64]){0}, 64, wv), (long long)e->shape[1]);
    if (hs->ndim != 1 || hs->shape[0] != 1 || mf_i32(hs)[0] < 1 || mf_i32(hs)[0] > (1 << 20))
        return pt_error(PT_EFORMAT, "%s: tensor 'tt.history' must hold one count in 1..%d", path, 1 << 20);
    struct rec_tt *tt;
    int rc = tt_alloc(N, (int)e->shape[1], (int)wv->shape[0], mf_i32(hs)[0], &tt);
    if (rc) return rc;
    for (int p = 0; p < NPARAM; p++) {
        int64_t s[2];
        size_t n = pshape(tt, p, s);
        int nd = s[1] ? 2 : 1;
        if (t[p]->ndim != nd || t[p]->shape[0] != s[0] || (nd == 2 && t[p]->shape[1] != s[1])) {
            char want[64], got[64];
            if (nd == 2) snprintf(want, sizeof want, "[%lld, %lld]", (long long)s[0], (long long)s[1]);
            else snprintf(want, sizeof want, "[%lld]", (long long)s[0]);
            rc = pt_error(PT_EFORMAT, "%s: tensor '%s' has shape %s, expected %s (from tt.item_emb and tt.item.weight)",
                          path, NAMES[p], shape_str(got, sizeof got, t[p]), want);
            rec_tt_free(tt);
            return rc;
        }
        memcpy(P(tt, p), t[p]->data, n * sizeof(float));
    }
    *out = tt;
    return PT_OK;
}

void rec_tt_item_vectors(const struct rec_tt *tt, float *out)
{
    nn_linear_forward(out, tt->D, P(tt, P_E), P(tt, P_WV), P(tt, P_BV), tt->N, tt->D0, tt->D);
}

/* u[B, D] from pooled x[B, D0]; a1, h1: [B, D] scratch kept for backward. */
static void user_tower(const struct rec_tt *tt, const float *x, float *a1, float *h1, float *u, int B)
{
    int D0 = tt->D0, D = tt->D;
    nn_linear_forward(a1, D, x, P(tt, P_W1), P(tt, P_B1), B, D0, D);
    nn_relu_forward(h1, a1, (size_t)B * D);
    nn_linear_forward(u, D, h1, P(tt, P_W2), P(tt, P_B2), B, D, D);
}

int rec_tt_user_vectors(const struct rec_tt *tt, const struct rec_hist *h, const int32_t *uids, int B, float *out)
{
    enum { CH = 256 };
    int D0 = tt->D0, D = tt->D;
    float *x = pt_malloc((size_t)CH * D0 * sizeof *x), *a1 = pt_malloc((size_t)CH * D * sizeof *a1);
    float *h1 = pt_malloc((size_t)CH * D * sizeof *h1);
    uint8_t *empty = pt_malloc(CH);
    int rc = PT_OK;
    if (!x || !a1 || !h1 || !empty) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto out;
    }
    const float *E = P(tt, P_E);
    for (int b0 = 0; b0 < B; b0 += CH) {
        int nb = B - b0 < CH ? B - b0 : CH;
        for (int r = 0; r < nb; r++) {
            int32_t u = uids[b0 + r];
            float *xr = x + (size_t)r * D0;
            memset(xr, 0, (size_t)D0 * sizeof *xr);
            int n = 0;
            if (u >= 0 && u < h->U) {
                int64_t a = h->off[u], e = h->off[u + 1];
                for (int64_t p = e - 1; p >= a && n < tt->history; p--) {
                    int32_t i = h->item[p];
                    if (i < 0 || i >= tt->N) continue;
                    const float *ei = E + (size_t)i * D0;
                    for (int d = 0; d < D0; d++) xr[d] += ei[d];
                    n++;
                }
            }
            for (int d = 0; d < D0 && n; d++) xr[d] /= (float)n;
            empty[r] = n == 0;
        }
        float *ub = out + (size_t)b0 * D;
        user_tower(tt, x, a1, h1, ub, nb);
        for (int r = 0; r < nb; r++)
            if (empty[r]) memset(ub + (size_t)r * D, 0, (size_t)D * sizeof *ub);
    }
out:
    pt_free(x), pt_free(a1), pt_free(h1), pt_free(empty);
    return rc;
}

int rec_tt_batch_loss(struct rec_tt *tt, const struct rec_tt_batch *bt, float *loss)
{
    int B = bt->B, C = bt->C, D0 = tt->D0, D = tt->D;
    if (B < 1 || C < B) return pt_error(PT_EINVAL, "two_tower batch: %d rows, %d candidates", B, C);
    int rc = ws_reserve(tt, B, C);
    if (rc) return rc;
    /* forward: user tower over the pooled histories, item tower over the candidates */
    nn_embedding_bag_forward(tt->x, D0, P(tt, P_E), bt->hoff, bt->hist, B, D0, 1);
    user_tower(tt, tt->x, tt->a1, tt->h1, tt->u, B);
    nn_embedding_forward(tt->ec, D0, P(tt, P_E), bt->cand, C, D0);
    nn_linear_forward(tt->vc, D, tt->ec, P(tt, P_WV), P(tt, P_BV), C, D0, D);
    nn_sgemm('N', 'T', B, C, D, 1.0f, tt->u, D, tt->vc, D, 0.0f, tt->S, C);
    /* softmax cross-entropy of each row against its own column */
    double total = 0;
    float inv = 1.0f / (float)B;
    for (int b = 0; b < B; b++) {
        float *s = tt->S + (size_t)b * C, *ds = tt->dS + (size_t)b * C;
        float mx = -INFINITY;
        for (int c = 0; c < C; c++) {
            if (c != b && bt->cand[c] == bt->cand[b]) s[c] = -INFINITY;
            else s[c] -= bt->logq[c];
            mx = s[c] > mx ? s[c] : mx;
        }
        float z = 0; /* expf(-inf) is 0: masked columns drop out */
        for (int c = 0; c < C; c++) z += ds[c] = expf(s[c] - mx);
        float k = inv / z;
        for (int c = 0; c < C; c++) ds[c] *= k;
        ds[b] -= inv;
        total += (double)logf(z) + mx - s[b];
    }
    *loss = (float)(total / B);
    /* backward: du = dS vc, dvc = dS^T u, then each tower */
    nn_sgemm('N', 'N', B, D, C, 1.0f, tt->dS, C, tt->vc, D, 0.0f, tt->du, D);
    nn_sgemm('T', 'N', C, D, B, 1.0f, tt->dS, C, tt->u, D, 0.0f, tt->dvc, D);
    memset(tt->dec, 0, (size_t)C * D0 * sizeof *tt->dec);
    nn_linear_backward(tt->dec, G(tt, P_WV), G(tt, P_BV), tt->dvc, D, tt->ec, P(tt, P_WV), C, D0, D);
    nn_embedding_backward(G(tt, P_E), tt->dec, D0, bt->cand, C, D0);
    memset(tt->dh1, 0, (size_t)B * D * sizeof *tt->dh1);
    nn_linear_backward(tt->dh1, G(tt, P_W2), G(tt, P_B2), tt->du, D, tt->h1, P(tt, P_W2), B, D, D);
    float *da1 = tt->du; /* du is spent: reuse it for the pre-ReLU gradient */
    memset(da1, 0, (size_t)B * D * sizeof *da1);
    nn_relu_backward(da1, tt->dh1, tt->h1, (size_t)B * D);
    memset(tt->dx, 0, (size_t)B * D0 * sizeof *tt->dx);
    nn_linear_backward(tt->dx, G(tt, P_W1), G(tt, P_B1), da1, D, tt->x, P(tt, P_W1), B, D0, D);
    nn_embedding_bag_backward(G(tt, P_E), tt->dx, D0, bt->hoff, bt->hist, B, D0, 1);
    return PT_OK;
}

int rec_tt_train(const struct rec_cfg *cfg, const struct rec_hist *h, int32_t N, struct rec_tt **out,
                 float **item_vectors)
{
    *out = NULL;
    *item_vectors = NULL;
    int32_t U = h->U;
    int D = cfg->dim, B = cfg->batch, K = cfg->negatives, H = cfg->history;
    if (B < 1 || K < 0 || H < 1 || cfg->epochs < 0)
        return pt_error(PT_EINVAL, "two_tower: batch %d, negatives %d, history %d: need batch >= 1, negatives >= 0, "
                        "history >= 1", B, K, H);
    for (int64_t p = 0; p < h->off[U]; p++)
        if (h->item[p] < 0 || h->item[p] >= N)
            return pt_error(PT_EINVAL, "two_tower: item id %d out of range (%d items)", (int)h->item[p], (int)N);
    struct rec_tt *tt;
    int rc = rec_tt_create(N, D, D, H, cfg->seed, &tt);
    if (rc) return rc;
    /* examples: (u, p) for every position p past the user's first item */
    int64_t P_ = 0;
    for (int32_t u = 0; u < U; u++) P_ += h->off[u + 1] - h->off[u] > 1 ? h->off[u + 1] - h->off[u] - 1 : 0;
    struct ex {
        int32_t u;
        int64_t p;
    } *ex = pt_malloc((size_t)(P_ ? P_ : 1) * sizeof *ex);
    int C = B + K;
    int32_t *hoff = pt_malloc((size_t)(B + 1) * sizeof *hoff), *hist = pt_malloc((size_t)B * H * sizeof *hist);
    int32_t *cand = pt_malloc((size_t)C * sizeof *cand), *slot = pt_malloc((size_t)N * sizeof *slot);
    int32_t *rows = pt_malloc((size_t)(B * H + C) * sizeof *rows);
    float *cnt = pt_calloc((size_t)N, sizeof *cnt), *logq = pt_malloc((size_t)C * sizeof *logq);
    float *iv = pt_malloc((size_t)N * D * sizeof *iv);
    rc = PT_ENOMEM;
    if (!ex || !hoff || !hist || !cand || !slot || !rows || !cnt || !logq || !iv) goto out;
    rc = ws_reserve(tt, B, C);
    if (rc) goto out;
    int64_t q = 0;
    for (int32_t u = 0; u < U; u++)
        for (int64_t p = h->off[u] + 1; p < h->off[u + 1]; p++) ex[q].u = u, ex[q++].p = p, cnt[h->item[p]] += 1;
    for (int32_t j = 0; j < N; j++) slot[j] = -1;
    struct rng g;
    rng_seed(&g, cfg->seed ^ 0x9e3779b97f4a7c15ull);
    struct optim o;
    optim_init(&o, OPTIM_ADAM, (float)cfg->lr);
    o.l2 = (float)cfg->l2;
    size_t ndense = tt->n - tt->off[P_WV];
    for (int ep = 0; ep < cfg->epochs; ep++) {
        for (int64_t p = P_ - 1; p > 0; p--) { /* Fisher-Yates */
            int64_t r = (int64_t)rng_below(&g, (uint64_t)p + 1);
            struct ex t = ex[p];
            ex[p] = ex[r], ex[r] = t;
        }
        double sum = 0;
        for (int64_t s0 = 0; s0 < P_; s0 += B) {
            int b = P_ - s0 < B ? (int)(P_ - s0) : B, c = b + K, nrows = 0;
            int32_t at = 0;
            for (int r = 0; r < b; r++) {
                int64_t p = ex[s0 + r].p, a = h->off[ex[s0 + r].u];
                hoff[r] = at;
                for (int64_t t = p - H > a ? p - H : a; t < p; t++) hist[at++] = h->item[t];
                cand[r] = h->item[p];
            }
            hoff[b] = at;
            for (int k = 0; k < K; k++) cand[b + k] = (int32_t)rng_below(&g, (uint64_t)N);
            float share = (float)b / (float)P_, unif = (float)K / (float)N;
            for (int k = 0; k < c; k++) logq[k] = logf(share * cnt[cand[k]] + unif);
            struct rec_tt_batch bt = {.B = b, .C = c, .hoff = hoff, .hist = hist, .cand = cand, .logq = logq};
            float l;
            rc = rec_tt_batch_loss(tt, &bt, &l);
            if (rc) goto out;
            sum += (double)l * b;
            for (int k = 0; k < hoff[b] + c; k++) {
                int32_t j = k < hoff[b] ? hist[k] : cand[k - hoff[b]];
                if (slot[j] < 0) slot[j] = nrows, rows[nrows++] = j;
            }
            optim_begin_step(&o);
            optim_update_rows(&o, P(tt, P_E), G(tt, P_E), tt->m, tt->v, rows, nrows, tt->D0, 0);
            optim_update_dense(&o, P(tt, P_WV), G(tt, P_WV), tt->m + tt->off[P_WV], tt->v + tt->off[P_WV], ndense);
            for (int k = 0; k < nrows; k++) slot[rows[k]] = -1;
        }
        pt_log(PT_LOG_INFO, "two_tower epoch %d/%d: loss %.5f", ep + 1, cfg->epochs, P_ ? sum / (double)P_ : 0);
    }
    rec_tt_item_vectors(tt, iv);
    rc = PT_OK;
out:
    if (rc == PT_ENOMEM) rc = pt_error(PT_ENOMEM, "out of memory");
    pt_free(ex), pt_free(hoff), pt_free(hist), pt_free(cand), pt_free(slot), pt_free(rows), pt_free(cnt), pt_free(logq);
    if (rc) {
        pt_free(iv);
        rec_tt_free(tt);
        return rc;
    }
    ws_free(tt);
    *out = tt;
    *item_vectors = iv;
    return PT_OK;
}
