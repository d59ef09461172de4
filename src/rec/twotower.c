/* twotower.c: the two-tower retrieval model (twotower.h): item input
 * x_j = E[j] + Ec[cat_j] + Eb[band_j] (a missing attribute, or a model
 * without that table, adds nothing), item tower v_j = Wv x_j + bv, user
 * tower u = W2 relu(W1 mean(x over recent items) + b1) + b2, trained with
 * an in-batch sampled softmax over the batch's positives plus `negatives`
 * uniform items shared by the batch, each column's logit corrected by the
 * log of its expected count among the candidates (logQ, Yi et al. 2019:
 * B·freq_j/P + negatives/N), so that the popular items the in-batch
 * negatives over-sample are not pushed down. A column holding the row's
 * own positive item again is masked out.
 *
 * Parameters live in one arena [E | Ec | Eb | Wv bv W1 b1 W2 b2] (Ec, Eb
 * empty without a catalogue, so the arena, the draws and every result are
 * those of the id-only model); the gradient and the Adam moments mirror it.
 * E, Ec and Eb are stepped lazily (only the rows a batch touched,
 * optim_update_rows), the dense tail whole (optim_update_dense).
 *
 * Does not: use brands or titles, weight interactions, decay old history,
 * or train the items' own input embedding through anything but both
 * towers (x is shared: the user tower pools the item tower's input).
 *
 * Dims: N items, D0 embedding width, D output width, B batch rows, C
 * candidate columns, H pooled history, NC categories, NB price bands. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn.h"
#include "rec/catalog.h"
#include "rec/twotower.h"
#include "train/optim.h"
#include "util/util.h"

/* Parameter order is tensor order: the id-only model's seven first. */
enum { P_E, P_WV, P_BV, P_W1, P_B1, P_W2, P_B2, P_EC, P_EB, NPARAM };
enum { T_HIST = NPARAM, T_ICAT, T_IBAND, NNAME }; /* the I32 tensors */

static const char *const NAMES[NNAME] = {"tt.item_emb", "tt.item.weight", "tt.item.bias", "tt.user.fc0.weight",
                                         "tt.user.fc0.bias", "tt.user.fc1.weight", "tt.user.fc1.bias", "tt.cat_emb",
                                         "tt.band_emb", "tt.history", "tt.item_cat", "tt.item_band"};

/* Arena order: the lazily stepped tables, then the dense tail from Wv. */
static const int LAYOUT[NPARAM] = {P_E, P_EC, P_EB, P_WV, P_BV, P_W1, P_B1, P_W2, P_B2};

struct rec_tt {
    int32_t N, NC, NB;         /* NC, NB: 0 when the table is absent */
    int D0, D, history;
    size_t n, off[NPARAM];     /* arena size; offset of each parameter */
    float *w, *g, *m, *v;      /* [n] each */
    int32_t *icat, *iband;     /* [N] attribute ids or -1; NULL when absent */
    int32_t hist_i32;          /* tt.history's storage */
    char names[NNAME][24];
    /* batch workspace, grown by ws_reserve */
    int wsB, wsC;
    float *x, *a1, *h1, *u, *ec, *vc, *S, *dS, *du, *dh1, *dx, *dvc, *dec;
};

static size_t pshape(const struct rec_tt *tt, int p, int64_t *shape)
{
    int64_t N = tt->N, D0 = tt->D0, D = tt->D;
    int64_t s[NPARAM][2] = {{N, D0}, {D, D0}, {D, 0}, {D, D0}, {D, 0}, {D, D}, {D, 0}, {tt->NC, D0}, {tt->NB, D0}};
    if (shape) shape[0] = s[p][0], shape[1] = s[p][1];
    return (size_t)s[p][0] * (size_t)(s[p][1] ? s[p][1] : 1);
}

/* Whether parameter p exists (the attribute tables only with their ids). */
static int has_param(const struct rec_tt *tt, int p)
{
    return p == P_EC ? tt->NC > 0 : p == P_EB ? tt->NB > 0 : 1;
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

/* The arena for the given widths and attribute table sizes (0: none),
 * weights uninitialised (zeroed), attribute ids -1. */
static int tt_alloc(int32_t N, int D0, int D, int history, int32_t NC, int32_t NB, struct rec_tt **out)
{
    *out = NULL;
    if (N < 1 || D0 < 1 || D < 1 || D0 > 65536 || D > 65536 || history < 1 || NC < 0 || NB < 0)
        return pt_error(PT_EINVAL, "two_tower: bad sizes (items %d, widths %d and %d, history %d, %d categories, %d "
                        "price bands)", (int)N, D0, D, history, (int)NC, (int)NB);
    struct rec_tt *tt = pt_calloc(1, sizeof *tt);
    if (!tt) return pt_error(PT_ENOMEM, "out of memory");
    tt->N = N, tt->NC = NC, tt->NB = NB, tt->D0 = D0, tt->D = D, tt->history = history, tt->hist_i32 = history;
    for (int k = 0; k < NPARAM; k++) tt->off[LAYOUT[k]] = tt->n, tt->n += pshape(tt, LAYOUT[k], NULL);
    for (int p = 0; p < NNAME; p++) snprintf(tt->names[p], sizeof tt->names[p], "%s", NAMES[p]);
    tt->w = pt_calloc(tt->n, sizeof(float));
    tt->g = pt_calloc(tt->n, sizeof(float));
    tt->m = pt_calloc(tt->n, sizeof(float));
    tt->v = pt_calloc(tt->n, sizeof(float));
    int bad = !tt->w || !tt->g || !tt->m || !tt->v;
    if (NC && !bad) bad = !(tt->icat = pt_malloc((size_t)N * sizeof *tt->icat));
    if (NB && !bad) bad = !(tt->iband = pt_malloc((size_t)N * sizeof *tt->iband));
    if (bad) {
        rec_tt_free(tt);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    for (int32_t j = 0; j < N; j++) {
        if (tt->icat) tt->icat[j] = -1;
        if (tt->iband) tt->iband[j] = -1;
    }
    *out = tt;
    return PT_OK;
}

/* The attribute tables catalogue c (NULL: none) calls for over items
 * [0, N): *NC = its category count when some item has a category, *NB =
 * CATALOG_PRICE_BANDS when some item has a band, else 0. Refuses a
 * catalogue of another size or an attribute id out of range. */
static int catalog_attrs(const struct rec_catalog *c, int32_t N, int32_t *NC, int32_t *NB)
{
    *NC = *NB = 0;
    if (!c) return PT_OK;
    if (c->N != N)
        return pt_error(PT_EINVAL, "two_tower: the catalogue covers %d items, the interactions %d", (int)c->N, (int)N);
    for (int32_t j = 0; j < N; j++) {
        int32_t k = c->cat ? c->cat[j] : -1, b = c->band ? c->band[j] : -1;
        if (k < -1 || k >= c->cats.n)
            return pt_error(PT_EINVAL, "two_tower: item %d has category id %d, outside -1..%d", (int)j, (int)k,
                            (int)c->cats.n - 1);
        if (b < -1 || b >= CATALOG_PRICE_BANDS)
            return pt_error(PT_EINVAL, "two_tower: item %d has price band %d, outside -1..%d", (int)j, (int)b,
                            CATALOG_PRICE_BANDS - 1);
        if (k >= 0) *NC = c->cats.n;
        if (b >= 0) *NB = CATALOG_PRICE_BANDS;
    }
    return PT_OK;
}

int rec_tt_create(int32_t N, int D0, int D, int history, const struct rec_catalog *cat, uint64_t seed,
                  struct rec_tt **out)
{
    int32_t NC, NB;
    *out = NULL;
    int rc = catalog_attrs(cat, N, &NC, &NB);
    if (rc) return rc;
    if ((rc = tt_alloc(N, D0, D, history, NC, NB, out))) return rc;
    struct rec_tt *tt = *out;
    for (int32_t j = 0; j < N; j++) {
        if (tt->icat) tt->icat[j] = cat->cat[j];
        if (tt->iband) tt->iband[j] = cat->band[j];
    }
    struct rng r;
    rng_seed(&r, seed);
    nn_init_normal(P(tt, P_E), pshape(tt, P_E, NULL), 0.1f, &r);
    nn_init_xavier(P(tt, P_WV), D, D0, &r);
    nn_init_he(P(tt, P_W1), D, D0, &r);
    nn_init_xavier(P(tt, P_W2), D, D, &r);
    if (NC) nn_init_normal(P(tt, P_EC), pshape(tt, P_EC, NULL), 0.1f, &r); /* after the id-only draws */
    if (NB) nn_init_normal(P(tt, P_EB), pshape(tt, P_EB, NULL), 0.1f, &r);
    return PT_OK;
}

void rec_tt_free(struct rec_tt *tt)
{
    if (!tt) return;
    ws_free(tt);
    pt_free(tt->w), pt_free(tt->g), pt_free(tt->m), pt_free(tt->v), pt_free(tt->icat), pt_free(tt->iband);
    pt_free(tt);
}

void rec_tt_dims(const struct rec_tt *tt, int *D0, int *D, int *history)
{
    if (D0) *D0 = tt->D0;
    if (D) *D = tt->D;
    if (history) *history = tt->history;
}

void rec_tt_attrs(const struct rec_tt *tt, int32_t *ncat, int32_t *nband)
{
    if (ncat) *ncat = tt->NC;
    if (nband) *nband = tt->NB;
}

void rec_tt_zero_grad(struct rec_tt *tt) { memset(tt->g, 0, tt->n * sizeof *tt->g); }

/* t[0..k): the parameters present, over base (w or g); returns k. */
static int fill_tensors(const struct rec_tt *tt, float *base, struct mf_tensor *t)
{
    int k = 0;
    for (int p = 0; p < NPARAM; p++) {
        if (!has_param(tt, p)) continue;
        memset(&t[k], 0, sizeof t[k]);
        t[k].name = (char *)tt->names[p];
        t[k].data = base + tt->off[p];
        t[k].dtype = MF_F32;
        pshape(tt, p, t[k].shape);
        t[k].ndim = t[k].shape[1] ? 2 : 1;
        k++;
    }
    return k;
}

static int nparams(const struct rec_tt *tt) { return 7 + (tt->NC > 0) + (tt->NB > 0); }

int rec_tt_tensors(const struct rec_tt *tt, struct mf_tensor *t, int max)
{
    int n = nparams(tt) + 1 + (tt->NC > 0) + (tt->NB > 0);
    if (max < n) return pt_error(PT_EINVAL, "rec_tt_tensors: room for %d tensors, need %d", max, n);
    int k = fill_tensors(tt, tt->w, t);
    const int32_t *data[3] = {&tt->hist_i32, tt->icat, tt->iband};
    for (int i = 0; i < 3; i++) {
        if (!data[i]) continue;
        memset(&t[k], 0, sizeof t[k]);
        t[k].name = (char *)tt->names[T_HIST + i];
        t[k].data = (float *)(void *)(int32_t *)data[i];
        t[k].dtype = MF_I32;
        t[k].ndim = 1;
        t[k++].shape[0] = i ? tt->N : 1;
    }
    return k;
}

int rec_tt_grad_tensors(const struct rec_tt *tt, struct mf_tensor *t, int max)
{
    int n = nparams(tt);
    if (max < n) return pt_error(PT_EINVAL, "rec_tt_grad_tensors: room for %d tensors, need %d", max, n);
    return fill_tensors(tt, tt->g, t);
}

static const char *shape_str(char *buf, size_t cap, const struct mf_tensor *t)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
    return buf;
}

/* Copies the I32 attribute ids ti ([N], each in -1..n-1) into dst. */
static int load_ids(const struct mf_tensor *ti, const char *path, int32_t N, int32_t n, int32_t *dst)
{
    if (ti->ndim != 1 || ti->shape[0] != N)
        return pt_error(PT_EFORMAT, "%s: tensor '%s' has shape %s, expected [%d]", path, ti->name,
                        shape_str((char[64]){0}, 64, ti), (int)N);
    const int32_t *v = mf_i32(ti);
    for (int32_t j = 0; j < N; j++) {
        if (v[j] < -1 || v[j] >= n)
            return pt_error(PT_EFORMAT, "%s: tensor '%s' gives item %d the id %d, outside -1..%d", path, ti->name,
                            (int)j, (int)v[j], (int)n - 1);
        dst[j] = v[j];
    }
    return PT_OK;
}

int rec_tt_from_file(const struct mf_file *f, const char *path, int32_t N, struct rec_tt **out)
{
    *out = NULL;
    const struct mf_tensor *t[NNAME];
    for (int p = 0; p < NNAME; p++) {
        int opt = p == P_EC || p == P_EB || p == T_ICAT || p == T_IBAND, i32 = p >= T_HIST;
        t[p] = modelfile_find(f, NAMES[p]);
        if (!t[p] && opt) continue;
        if (!t[p]) return pt_error(PT_EFORMAT, "%s: no tensor '%s': not a two_tower model file", path, NAMES[p]);
        if (t[p]->dtype != (i32 ? MF_I32 : MF_F32))
            return pt_error(PT_EFORMAT, "%s: tensor '%s' is %s, expected %s", path, NAMES[p],
                            t[p]->dtype == MF_I32 ? "I32" : "F32", i32 ? "I32" : "F32");
    }
    for (int a = 0; a < 2; a++) { /* an attribute table and its ids come together */
        int pe = a ? P_EB : P_EC, pi = a ? T_IBAND : T_ICAT;
        if (!t[pe] != !t[pi])
            return pt_error(PT_EFORMAT, "%s: tensor '%s' without '%s'", path, NAMES[t[pe] ? pe : pi],
                            NAMES[t[pe] ? pi : pe]);
        if (t[pe] && (t[pe]->ndim < 1 || t[pe]->shape[0] < 1 || t[pe]->shape[0] > INT32_MAX))
            return pt_error(PT_EFORMAT, "%s: tensor '%s' has shape %s, expected [count, dim]", path, NAMES[pe],
                            shape_str((char[64]){0}, 64, t[pe]));
    }
    const struct mf_tensor *e = t[P_E], *wv = t[P_WV], *hs = t[T_HIST];
    if (e->ndim != 2 || e->shape[0] != N)
        return pt_error(PT_EFORMAT, "%s: tensor 'tt.item_emb' has shape %s, expected [%d, dim]: the model was trained "
                        "on a different item set; retrain it", path, shape_str((char[64]){0}, 64, e), (int)N);
    if (wv->ndim != 2 || e->shape[1] < 1 || e->shape[1] > 65536 || wv->shape[0] < 1 || wv->shape[0] > 65536)
        return pt_error(PT_EFORMAT, "%s: tensor 'tt.item.weight' has shape %s, expected [D, %lld]", path,
                        shape_str((char[64]){0}, 64, wv), (long long)e->shape[1]);
    if (hs->ndim != 1 || hs->shape[0] != 1 || mf_i32(hs)[0] < 1 || mf_i32(hs)[0] > (1 << 20))
        return pt_error(PT_EFORMAT, "%s: tensor 'tt.history' must hold one count in 1..%d", path, 1 << 20);
    int32_t NC = t[P_EC] ? (int32_t)t[P_EC]->shape[0] : 0, NB = t[P_EB] ? (int32_t)t[P_EB]->shape[0] : 0;
    struct rec_tt *tt;
    int rc = tt_alloc(N, (int)e->shape[1], (int)wv->shape[0], mf_i32(hs)[0], NC, NB, &tt);
    if (rc) return rc;
    for (int p = 0; p < NPARAM; p++) {
        if (!has_param(tt, p)) continue;
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
    if ((NC && (rc = load_ids(t[T_ICAT], path, N, NC, tt->icat))) ||
        (NB && (rc = load_ids(t[T_IBAND], path, N, NB, tt->iband)))) {
        rec_tt_free(tt);
        return rc;
    }
    *out = tt;
    return PT_OK;
}

/* Adds the attribute rows (Ec[cat], Eb[band]; a missing one nothing) of
 * items ids[...] to out[R, ldo]: with off, row r adds the MEAN over
 * ids[off[r] .. off[r+1]) (over all of them: an item without the attribute
 * counts, adding zeros; an empty row nothing), without, row r adds item
 * ids[r]'s. */
static void attr_forward(const struct rec_tt *tt, float *out, int ldo, const int32_t *off, const int32_t *ids, int R)
{
    int D0 = tt->D0;
    for (int a = 0; a < 2; a++) {
        const int32_t *id = a ? tt->iband : tt->icat;
        if (!id) continue;
        const float *T = P(tt, a ? P_EB : P_EC);
        for (int r = 0; r < R; r++) {
            int32_t k0 = off ? off[r] : r, k1 = off ? off[r + 1] : r + 1;
            float s = k1 > k0 ? 1.0f / (float)(k1 - k0) : 0.0f, *o = out + (size_t)r * ldo;
            for (int32_t k = k0; k < k1; k++) {
                int32_t c = id[ids[k]];
                if (c < 0) continue;
                const float *tr = T + (size_t)c * D0;
                for (int d = 0; d < D0; d++) o[d] += s * tr[d];
            }
        }
    }
}

/* The backward of attr_forward: the attribute tables' gradients += the
 * share of dout[R, ldd] each row's items got. */
static void attr_backward(struct rec_tt *tt, const float *dout, int ldd, const int32_t *off, const int32_t *ids, int R)
{
    int D0 = tt->D0;
    for (int a = 0; a < 2; a++) {
        const int32_t *id = a ? tt->iband : tt->icat;
        if (!id) continue;
        float *dT = G(tt, a ? P_EB : P_EC);
        for (int r = 0; r < R; r++) {
            int32_t k0 = off ? off[r] : r, k1 = off ? off[r + 1] : r + 1;
            float s = k1 > k0 ? 1.0f / (float)(k1 - k0) : 0.0f;
            const float *dr = dout + (size_t)r * ldd;
            for (int32_t k = k0; k < k1; k++) {
                int32_t c = id[ids[k]];
                if (c < 0) continue;
                float *g = dT + (size_t)c * D0;
                for (int d = 0; d < D0; d++) g[d] += s * dr[d];
            }
        }
    }
}

int rec_tt_item_vectors(const struct rec_tt *tt, float *out)
{
    if (!tt->icat && !tt->iband) {
        nn_linear_forward(out, tt->D, P(tt, P_E), P(tt, P_WV), P(tt, P_BV), tt->N, tt->D0, tt->D);
        return PT_OK;
    }
    enum { CH = 256 };
    int32_t ids[CH];
    float *x = pt_malloc((size_t)CH * tt->D0 * sizeof *x);
    if (!x) return pt_error(PT_ENOMEM, "out of memory");
    for (int32_t j0 = 0; j0 < tt->N; j0 += CH) {
        int nb = tt->N - j0 < CH ? (int)(tt->N - j0) : CH;
        for (int r = 0; r < nb; r++) ids[r] = j0 + r;
        nn_embedding_forward(x, tt->D0, P(tt, P_E), ids, nb, tt->D0);
        attr_forward(tt, x, tt->D0, NULL, ids, nb);
        nn_linear_forward(out + (size_t)j0 * tt->D, tt->D, x, P(tt, P_WV), P(tt, P_BV), nb, tt->D0, tt->D);
    }
    pt_free(x);
    return PT_OK;
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
    const float *E = P(tt, P_E), *Ec = P(tt, P_EC), *Eb = P(tt, P_EB);
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
                    if (tt->icat && tt->icat[i] >= 0)
                        for (int d = 0; d < D0; d++) xr[d] += Ec[(size_t)tt->icat[i] * D0 + d];
                    if (tt->iband && tt->iband[i] >= 0)
                        for (int d = 0; d < D0; d++) xr[d] += Eb[(size_t)tt->iband[i] * D0 + d];
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
    attr_forward(tt, tt->x, D0, bt->hoff, bt->hist, B);
    user_tower(tt, tt->x, tt->a1, tt->h1, tt->u, B);
    nn_embedding_forward(tt->ec, D0, P(tt, P_E), bt->cand, C, D0);
    attr_forward(tt, tt->ec, D0, NULL, bt->cand, C);
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
    attr_backward(tt, tt->dec, D0, NULL, bt->cand, C);
    memset(tt->dh1, 0, (size_t)B * D * sizeof *tt->dh1);
    nn_linear_backward(tt->dh1, G(tt, P_W2), G(tt, P_B2), tt->du, D, tt->h1, P(tt, P_W2), B, D, D);
    float *da1 = tt->du; /* du is spent: reuse it for the pre-ReLU gradient */
    memset(da1, 0, (size_t)B * D * sizeof *da1);
    nn_relu_backward(da1, tt->dh1, tt->h1, (size_t)B * D);
    memset(tt->dx, 0, (size_t)B * D0 * sizeof *tt->dx);
    nn_linear_backward(tt->dx, G(tt, P_W1), G(tt, P_B1), da1, D, tt->x, P(tt, P_W1), B, D0, D);
    nn_embedding_bag_backward(G(tt, P_E), tt->dx, D0, bt->hoff, bt->hist, B, D0, 1);
    attr_backward(tt, tt->dx, D0, bt->hoff, bt->hist, B);
    return PT_OK;
}

int rec_tt_train(const struct rec_cfg *cfg, const struct rec_hist *h, int32_t N, const struct rec_catalog *cat,
                 struct rec_tt **out, float **item_vectors)
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
    int rc = rec_tt_create(N, D, D, H, cat, cfg->seed, &tt);
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
    /* the attribute rows a batch touched: [NC] and [NB] slots and lists */
    int32_t NC = tt->NC, NB = tt->NB;
    size_t na = (size_t)NC + (size_t)NB + 1;
    int32_t *cslot = pt_malloc(na * sizeof *cslot), *crows = pt_malloc(na * sizeof *crows);
    rc = PT_ENOMEM;
    if (!ex || !hoff || !hist || !cand || !slot || !rows || !cnt || !logq || !iv || !cslot || !crows) goto out;
    for (int32_t k = 0; k < NC + NB; k++) cslot[k] = -1;
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
            int ncr = 0, nbr = 0; /* crows: categories [0, ncr), then bands (slots cslot[NC + band]) */
            for (int k = 0; k < nrows && tt->icat; k++) {
                int32_t a = tt->icat[rows[k]];
                if (a >= 0 && cslot[a] < 0) cslot[a] = ncr, crows[ncr++] = a;
            }
            for (int k = 0; k < nrows && tt->iband; k++) {
                int32_t a = tt->iband[rows[k]];
                if (a >= 0 && cslot[NC + a] < 0) cslot[NC + a] = nbr, crows[ncr + nbr++] = a;
            }
            optim_begin_step(&o);
            optim_update_rows(&o, P(tt, P_E), G(tt, P_E), tt->m, tt->v, rows, nrows, tt->D0, 0);
            if (ncr)
                optim_update_rows(&o, P(tt, P_EC), G(tt, P_EC), tt->m + tt->off[P_EC], tt->v + tt->off[P_EC], crows,
                                  ncr, tt->D0, 0);
            if (nbr)
                optim_update_rows(&o, P(tt, P_EB), G(tt, P_EB), tt->m + tt->off[P_EB], tt->v + tt->off[P_EB],
                                  crows + ncr, nbr, tt->D0, 0);
            optim_update_dense(&o, P(tt, P_WV), G(tt, P_WV), tt->m + tt->off[P_WV], tt->v + tt->off[P_WV], ndense);
            for (int k = 0; k < nrows; k++) slot[rows[k]] = -1;
            for (int k = 0; k < ncr; k++) cslot[crows[k]] = -1;
            for (int k = 0; k < nbr; k++) cslot[NC + crows[ncr + k]] = -1;
        }
        pt_log(PT_LOG_INFO, "two_tower epoch %d/%d: loss %.5f", ep + 1, cfg->epochs, P_ ? sum / (double)P_ : 0);
    }
    rc = rec_tt_item_vectors(tt, iv);
out:
    if (rc == PT_ENOMEM) rc = pt_error(PT_ENOMEM, "out of memory");
    pt_free(ex), pt_free(hoff), pt_free(hist), pt_free(cand), pt_free(slot), pt_free(rows), pt_free(cnt), pt_free(logq);
    pt_free(cslot), pt_free(crows);
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
