/* model.c: single-task LR and MLP networks over the encoded features, built
 * from the layers in src/nn. See model.h for the architecture.
 *
 * The forward pass reads top to bottom like the network: embeddings written
 * straight into the input buffer x (their concat), numeric columns after
 * them, then the linear/ReLU/dropout stack. The backward pass mirrors it and
 * ends in the embedding tables' gradient rows; the optimiser then touches
 * only the rows the batch used. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/model.h"
#include "nn/nn.h"
#include "util/util.h"

#define EMB_INIT_STD 0.05f

static int add_param(struct model *m, int *cap, const char *name, int64_t rows, int64_t cols,
                     int sparse)
{
    if (m->nparams == *cap) {
        int nc = *cap ? *cap * 2 : 32;
        struct param *np = pt_realloc(m->p, (size_t)nc * sizeof *np);
        if (!np) return -1;
        m->p = np;
        *cap = nc;
    }
    struct param *p = &m->p[m->nparams];
    p->name = pt_strdup(name);
    if (!p->name) return -1;
    p->off = m->total;
    p->rows = rows;
    p->cols = cols;
    p->sparse = sparse;
    m->total += (size_t)(rows * cols);
    return m->nparams++;
}

static int build_tower(struct model *m, struct tower *t, int task, int *cap)
{
    const struct pt_config *c = m->cfg;
    const struct schema *s = m->schema;
    const char *tn = c->tasks[task].name;
    char name[512];
    t->task = task;
    t->p_first = m->nparams;
    t->emb = pt_calloc((size_t)s->ncat + 1, sizeof(int));
    t->memb = pt_calloc((size_t)s->nmulti + 1, sizeof(int));
    t->edim = pt_calloc((size_t)(s->ncat + s->nmulti) + 1, sizeof(int));
    if (!t->emb || !t->memb || !t->edim) return -1;
    int lr = c->model == MODEL_LR;
    t->din = 0;
    for (int i = 0; i < s->nfeat; i++) {
        const struct feat_state *f = &s->f[i];
        if (!f->is_cat && f->cfg->kind != FEAT_MULTI) continue;
        int dim = lr ? 1 : f->cfg->dim;
        snprintf(name, sizeof name, "%s.emb.%s", tn, f->cfg->name);
        int pi = add_param(m, cap, name, f->rows > 0 ? f->rows : 1, dim, 1);
        if (pi < 0) return -1;
        if (f->is_cat) {
            t->emb[f->slot] = pi;
            t->edim[f->slot] = dim;
        } else {
            t->memb[f->slot] = pi;
            t->edim[s->ncat + f->slot] = dim;
        }
        t->din += dim;
    }
    t->din += s->nnum;
    int nh = lr ? 0 : c->nhidden;
    t->nlayers = nh + 1;
    t->dims = pt_calloc((size_t)t->nlayers + 1, sizeof(int));
    t->W = pt_calloc((size_t)t->nlayers, sizeof(int));
    t->b = pt_calloc((size_t)t->nlayers, sizeof(int));
    if (!t->dims || !t->W || !t->b) return -1;
    t->dims[0] = t->din;
    for (int l = 0; l < nh; l++) t->dims[l + 1] = c->hidden[l];
    t->dims[t->nlayers] = 1;
    for (int l = 0; l < t->nlayers; l++) {
        snprintf(name, sizeof name, "%s.fc%d.weight", tn, l);
        if ((t->W[l] = add_param(m, cap, name, t->dims[l + 1], t->dims[l], 0)) < 0) return -1;
        snprintf(name, sizeof name, "%s.fc%d.bias", tn, l);
        if ((t->b[l] = add_param(m, cap, name, 1, t->dims[l + 1], 0)) < 0) return -1;
        if (t->nlayers > m->maxlayers) m->maxlayers = t->nlayers;
        if (t->dims[l + 1] > m->maxwidth) m->maxwidth = t->dims[l + 1];
    }
    if (t->din > m->maxwidth) m->maxwidth = t->din;
    t->p_end = m->nparams;
    return 0;
}

static void init_params(struct model *m, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    for (int ti = 0; ti < m->ntowers; ti++) {
        struct tower *t = &m->t[ti];
        for (int pi = t->p_first; pi < t->p_end; pi++) {
            struct param *p = &m->p[pi];
            float *w = m->w + p->off;
            if (p->sparse) nn_init_normal(w, (size_t)(p->rows * p->cols), EMB_INIT_STD, &r);
        }
        for (int l = 0; l < t->nlayers; l++) {
            struct param *W = &m->p[t->W[l]];
            /* He for layers feeding a ReLU, Xavier for the logit layer */
            if (l < t->nlayers - 1) nn_init_he(m->w + W->off, (int)W->rows, (int)W->cols, &r);
            else nn_init_xavier(m->w + W->off, (int)W->rows, (int)W->cols, &r);
            memset(m->w + m->p[t->b[l]].off, 0, (size_t)m->p[t->b[l]].cols * sizeof(float));
        }
    }
}

int model_create(struct model **out, const struct pt_config *cfg, struct schema *schema, uint64_t seed)
{
    *out = NULL;
    struct model *m = pt_calloc(1, sizeof *m);
    if (!m) return pt_error(PT_ENOMEM, "out of memory");
    m->cfg = cfg;
    m->schema = schema;
    m->ntasks = cfg->ntasks;
    m->ntowers = cfg->ntasks;
    m->t = pt_calloc((size_t)m->ntowers, sizeof *m->t);
    int cap = 0;
    if (!m->t) goto nomem;
    for (int t = 0; t < m->ntowers; t++)
        if (build_tower(m, &m->t[t], t, &cap)) goto nomem;
    m->w = pt_malloc(m->total * sizeof(float));
    if (!m->w) goto nomem;
    init_params(m, seed);
    rng_seed(&m->drop_rng, seed ^ 0xD50Full);
    *out = m;
    return PT_OK;
nomem:
    m->schema = NULL; /* the caller still owns it */
    model_destroy(m);
    return pt_error(PT_ENOMEM, "out of memory");
}

static void free_batch(struct batch *b, const struct schema *s)
{
    if (b->cat)
        for (int j = 0; j < s->ncat; j++) pt_free(b->cat[j]);
    if (b->moff)
        for (int j = 0; j < s->nmulti; j++) {
            pt_free(b->moff[j]);
            pt_free(b->mids[j]);
        }
    if (b->num)
        for (int j = 0; j < s->nnum; j++) pt_free(b->num[j]);
    pt_free(b->cat);
    pt_free(b->moff);
    pt_free(b->mids);
    pt_free(b->mcap);
    pt_free(b->num);
    pt_free(b->y);
    memset(b, 0, sizeof *b);
}

static void free_acts(struct model *m)
{
    for (int l = 0; l < m->maxlayers; l++) {
        if (m->h) pt_free(m->h[l]);
        if (m->dh) pt_free(m->dh[l]);
        if (m->mask) pt_free(m->mask[l]);
    }
    pt_free(m->h);
    pt_free(m->dh);
    pt_free(m->mask);
    pt_free(m->x);
    pt_free(m->dx);
    pt_free(m->ycol);
    m->ycol = NULL;
    m->h = m->dh = m->mask = NULL;
    m->x = m->dx = NULL;
    if (m->schema) free_batch(&m->bt, m->schema);
    m->bmax = 0;
}

void model_destroy(struct model *m)
{
    if (!m) return;
    free_acts(m);
    for (int i = 0; i < m->nparams; i++) pt_free(m->p[i].name);
    pt_free(m->p);
    for (int t = 0; m->t && t < m->ntowers; t++) {
        pt_free(m->t[t].emb);
        pt_free(m->t[t].memb);
        pt_free(m->t[t].edim);
        pt_free(m->t[t].dims);
        pt_free(m->t[t].W);
        pt_free(m->t[t].b);
    }
    pt_free(m->t);
    pt_free(m->w);
    pt_free(m->g);
    pt_free(m->m);
    pt_free(m->v);
    pt_free(m->uniq);
    pt_free(m->scratch);
    pt_free(m->train_report);
    pt_free(m->metrics_json);
    schema_free(m->schema);
    if (m->owns_cfg) pt_config_free((pt_config *)m->cfg);
    pt_free(m);
}

int model_alloc_train(struct model *m)
{
    if (m->g) return PT_OK;
    m->g = pt_calloc(m->total, sizeof(float));
    m->m = pt_calloc(m->total, sizeof(float));
    m->v = pt_calloc(m->total, sizeof(float));
    if (!m->g || !m->m || !m->v) return pt_error(PT_ENOMEM, "out of memory");
    return PT_OK;
}

int model_reserve(struct model *m, int bmax)
{
    if (bmax <= m->bmax) return PT_OK;
    const struct schema *s = m->schema;
    free_acts(m);
    size_t B = (size_t)bmax, W = (size_t)m->maxwidth;
    m->h = pt_calloc((size_t)m->maxlayers, sizeof(float *));
    m->dh = pt_calloc((size_t)m->maxlayers, sizeof(float *));
    m->mask = pt_calloc((size_t)m->maxlayers, sizeof(float *));
    m->x = pt_malloc(B * W * sizeof(float));
    m->dx = pt_malloc(B * W * sizeof(float));
    m->ycol = pt_malloc(B * sizeof(float));
    struct batch *b = &m->bt;
    b->cat = pt_calloc((size_t)s->ncat + 1, sizeof *b->cat);
    b->moff = pt_calloc((size_t)s->nmulti + 1, sizeof *b->moff);
    b->mids = pt_calloc((size_t)s->nmulti + 1, sizeof *b->mids);
    b->mcap = pt_calloc((size_t)s->nmulti + 1, sizeof *b->mcap);
    b->num = pt_calloc((size_t)s->nnum + 1, sizeof *b->num);
    b->y = pt_malloc(B * (size_t)m->ntasks * sizeof(float));
    if (!m->h || !m->dh || !m->mask || !m->x || !m->dx || !m->ycol || !b->cat || !b->moff || !b->mids || !b->mcap || !b->num || !b->y)
        goto nomem;
    for (int l = 0; l < m->maxlayers; l++) {
        m->h[l] = pt_malloc(B * W * sizeof(float));
        m->dh[l] = pt_malloc(B * W * sizeof(float));
        m->mask[l] = pt_malloc(B * W * sizeof(float));
        if (!m->h[l] || !m->dh[l] || !m->mask[l]) goto nomem;
    }
    for (int j = 0; j < s->ncat; j++)
        if (!(b->cat[j] = pt_malloc(B * sizeof(int32_t)))) goto nomem;
    for (int j = 0; j < s->nmulti; j++)
        if (!(b->moff[j] = pt_malloc((B + 1) * sizeof(int32_t)))) goto nomem;
    for (int j = 0; j < s->nnum; j++)
        if (!(b->num[j] = pt_malloc(B * sizeof(float)))) goto nomem;
    m->bmax = bmax;
    return PT_OK;
nomem:
    free_acts(m);
    return pt_error(PT_ENOMEM, "out of memory");
}

int model_gather(struct model *m, const struct dataset *d, const int64_t *idx, int B)
{
    const struct schema *s = m->schema;
    struct batch *b = &m->bt;
    b->B = B;
    for (int j = 0; j < s->ncat; j++) {
        const int32_t *src = d->cat[j];
        int32_t *dst = b->cat[j];
        for (int i = 0; i < B; i++) dst[i] = src[idx[i]];
    }
    for (int j = 0; j < s->nnum; j++) {
        const float *src = d->num[j];
        float *dst = b->num[j];
        for (int i = 0; i < B; i++) dst[i] = src[idx[i]];
    }
    for (int j = 0; j < s->nmulti; j++) {
        int64_t total = 0;
        for (int i = 0; i < B; i++) total += d->moff[j][idx[i] + 1] - d->moff[j][idx[i]];
        if (total > b->mcap[j]) {
            int32_t *nb = pt_realloc(b->mids[j], (size_t)(total ? total : 1) * sizeof(int32_t));
            if (!nb) return pt_error(PT_ENOMEM, "out of memory");
            b->mids[j] = nb;
            b->mcap[j] = total;
        }
        int32_t pos = 0;
        b->moff[j][0] = 0;
        for (int i = 0; i < B; i++) {
            int32_t a = d->moff[j][idx[i]], e = d->moff[j][idx[i] + 1];
            memcpy(b->mids[j] + pos, d->mids[j] + a, (size_t)(e - a) * sizeof(int32_t));
            pos += e - a;
            b->moff[j][i + 1] = pos;
        }
    }
    int T = m->ntasks;
    for (int i = 0; i < B; i++) memcpy(b->y + (size_t)i * T, d->y + idx[i] * T, (size_t)T * sizeof(float));
    return PT_OK;
}

/* Input row block of tower t: embeddings then numerics, [B, din]. */
static void tower_input(struct model *m, const struct tower *t, int B)
{
    const struct schema *s = m->schema;
    const struct batch *b = &m->bt;
    int D = t->din, col = 0;
    for (int j = 0; j < s->ncat; j++) {
        const struct param *p = &m->p[t->emb[j]];
        nn_embedding_forward(m->x + col, D, m->w + p->off, b->cat[j], B, t->edim[j]);
        col += t->edim[j];
    }
    for (int j = 0; j < s->nmulti; j++) {
        const struct param *p = &m->p[t->memb[j]];
        int dim = t->edim[s->ncat + j];
        int mean = 1;
        for (int i = 0; i < s->nfeat; i++)
            if (s->f[i].cfg->kind == FEAT_MULTI && s->f[i].slot == j) mean = s->f[i].cfg->pool_mean;
        nn_embedding_bag_forward(m->x + col, D, m->w + p->off, b->moff[j], b->mids[j], B, dim, mean);
        col += dim;
    }
    for (int j = 0; j < s->nnum; j++) {
        const float *src = b->num[j];
        for (int i = 0; i < B; i++) m->x[(size_t)i * D + col] = src[i];
        col++;
    }
}

/* Forward through the tower's layers; returns the logit column [B, 1]. */
static float *tower_forward(struct model *m, const struct tower *t, int B, int train)
{
    const float *in = m->x;
    float drop = train ? m->cfg->dropout : 0.0f;
    for (int l = 0; l < t->nlayers; l++) {
        int I = t->dims[l], O = t->dims[l + 1];
        float *y = m->h[l];
        nn_linear_forward(y, O, in, m->w + m->p[t->W[l]].off, m->w + m->p[t->b[l]].off, B, I, O);
        if (l < t->nlayers - 1) {
            nn_relu_forward(y, y, (size_t)B * O);
            if (drop > 0) nn_dropout_forward(y, m->mask[l], y, (size_t)B * O, drop, &m->drop_rng);
        }
        in = y;
    }
    return m->h[t->nlayers - 1];
}

static int ensure_uniq(struct model *m, size_t n)
{
    if (n <= m->uniq_cap) return PT_OK;
    pt_free(m->uniq);
    pt_free(m->scratch);
    m->uniq = pt_malloc(n * sizeof(int32_t));
    m->scratch = pt_malloc(n * sizeof(int32_t));
    m->uniq_cap = (m->uniq && m->scratch) ? n : 0;
    return m->uniq_cap ? PT_OK : pt_error(PT_ENOMEM, "out of memory");
}

static int tower_step(struct model *m, const struct tower *t, struct optim *o, double *loss)
{
    const struct schema *s = m->schema;
    const struct task_cfg *tc = &m->cfg->tasks[t->task];
    const struct batch *b = &m->bt;
    int B = b->B, T = m->ntasks, D = t->din;
    tower_input(m, t, B);
    float *logit = tower_forward(m, t, B, 1);
    const float *y = b->y + t->task;
    /* labels are [B, T]; the loss reads logit and label at one stride */
    float *yc = m->ycol;
    for (int i = 0; i < B; i++) yc[i] = y[(size_t)i * T];
    int count = 0;
    double sum;
    if (tc->type == TASK_BINARY) sum = nn_bce_forward(NULL, logit, yc, B, 1, &count);
    else sum = nn_mse_forward(logit, yc, B, 1, &count);
    *loss = count ? sum / count : NAN;
    if (!count) return PT_OK;
    float *dlogit = m->dh[t->nlayers - 1];
    memset(dlogit, 0, (size_t)B * sizeof(float));
    float scale = tc->weight / (float)count;
    if (tc->type == TASK_BINARY) nn_bce_backward(dlogit, logit, yc, B, 1, scale);
    else nn_mse_backward(dlogit, logit, yc, B, 1, scale);

    for (int l = t->nlayers - 1; l >= 0; l--) {
        int I = t->dims[l], O = t->dims[l + 1];
        const struct param *W = &m->p[t->W[l]], *bb = &m->p[t->b[l]];
        const float *in = l ? m->h[l - 1] : m->x;
        float *din = l ? m->dh[l - 1] : m->dx;
        memset(din, 0, (size_t)B * I * sizeof(float));
        nn_linear_backward(din, m->g + W->off, m->g + bb->off, m->dh[l], O, in, m->w + W->off, B, I, O);
        if (l > 0) {
            /* ReLU then dropout were applied in place, so h holds the output
             * after both: this is nn_dropout_backward followed by
             * nn_relu_backward, fused in place (h > 0 iff kept and active). */
            const float *h = m->h[l - 1], *mask = m->mask[l - 1];
            size_t n = (size_t)B * I;
            if (m->cfg->dropout > 0)
                for (size_t k = 0; k < n; k++) din[k] = h[k] > 0 ? din[k] * mask[k] : 0.0f;
            else
                for (size_t k = 0; k < n; k++) din[k] = h[k] > 0 ? din[k] : 0.0f;
        }
    }
    /* embeddings: gradient rows from the input gradient, then sparse update */
    int col = 0;
    for (int j = 0; j < s->ncat + s->nmulti; j++) {
        int dim = t->edim[j];
        const struct param *p = &m->p[j < s->ncat ? t->emb[j] : t->memb[j - s->ncat]];
        const int32_t *ids;
        int n;
        if (j < s->ncat) {
            ids = b->cat[j];
            n = B;
            nn_embedding_backward(m->g + p->off, m->dx + col, D, ids, B, dim);
        } else {
            int k = j - s->ncat, mean = 1;
            for (int i = 0; i < s->nfeat; i++)
                if (s->f[i].cfg->kind == FEAT_MULTI && s->f[i].slot == k) mean = s->f[i].cfg->pool_mean;
            ids = b->mids[k];
            n = b->moff[k][B];
            nn_embedding_bag_backward(m->g + p->off, m->dx + col, D, b->moff[k], ids, B, dim, mean);
        }
        if (n > 0) {
            if (ensure_uniq(m, (size_t)n)) return PT_ENOMEM;
            int nr = nn_unique_rows(m->uniq, ids, n, m->scratch);
            optim_update_rows(o, m->w + p->off, m->g + p->off, m->m + p->off, m->v + p->off, m->uniq, nr, dim);
        }
        col += dim;
    }
    /* dense layers: one contiguous block after the tower's tables */
    const struct param *first = &m->p[t->W[0]];
    const struct param *last = &m->p[t->b[t->nlayers - 1]];
    size_t off = first->off, n = last->off + (size_t)(last->rows * last->cols) - off;
    optim_update_dense(o, m->w + off, m->g + off, m->m + off, m->v + off, n);
    return PT_OK;
}

int model_train_step(struct model *m, struct optim *o, const int *active, double *loss)
{
    optim_begin_step(o);
    for (int ti = 0; ti < m->ntowers; ti++) {
        const struct tower *t = &m->t[ti];
        loss[t->task] = NAN;
        if (active && !active[t->task]) continue;
        int rc = tower_step(m, t, o, &loss[t->task]);
        if (rc) return rc;
    }
    return PT_OK;
}

void model_predict_batch(struct model *m, float *p)
{
    int B = m->bt.B, T = m->ntasks;
    for (int ti = 0; ti < m->ntowers; ti++) {
        const struct tower *t = &m->t[ti];
        tower_input(m, t, B);
        const float *logit = tower_forward(m, t, B, 0);
        int binary = m->cfg->tasks[t->task].type == TASK_BINARY;
        for (int i = 0; i < B; i++) {
            float z = logit[i];
            p[(size_t)i * T + t->task] = binary ? 1.0f / (1.0f + expf(-z)) : z;
        }
    }
}

int model_predict_dataset(struct model *m, const struct dataset *d, float *p)
{
    int bs = 4096;
    int rc = model_reserve(m, bs);
    if (rc) return rc;
    int64_t *idx = pt_malloc((size_t)bs * sizeof *idx);
    if (!idx) return pt_error(PT_ENOMEM, "out of memory");
    for (int64_t s = 0; s < d->n; s += bs) {
        int B = (int)(d->n - s < bs ? d->n - s : bs);
        for (int i = 0; i < B; i++) idx[i] = s + i;
        if ((rc = model_gather(m, d, idx, B))) break;
        model_predict_batch(m, p + s * m->ntasks);
    }
    pt_free(idx);
    return rc;
}
