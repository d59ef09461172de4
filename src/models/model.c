/* model.c: single-task (lr, mlp) and multi-task (shared_bottom, esmm, mmoe,
 * ple) networks over the encoded features, built from the layers in src/nn.
 * See model.h for the architectures.
 *
 * Forward reads top to bottom like the network: embeddings written straight
 * into the input buffer x (their concat) with the numeric columns after them;
 * then the bottom or the expert levels; then one tower per task. Backward
 * mirrors it and ends in the embedding tables' gradient rows; the optimiser
 * then touches only the rows the batch used, and every dense parameter. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "models/model.h"
#include "nn/nn.h"
#include "util/util.h"

#define EMB_INIT_STD 0.05f

const char *const pgroup_names[PG_COUNT] = {"embeddings", "experts", "gates", "towers", "loss"};

const char *model_kind_name(enum model_kind k)
{
    static const char *const names[] = {"lr", "mlp", "shared_bottom", "mmoe", "ple", "esmm"};
    return (unsigned)k < PT_ARRAY_LEN(names) ? names[k] : "?";
}

/* ---- building ---- */

static int add_param(struct model *m, const char *name, int64_t rows, int64_t cols, int sparse, int group,
                     int owner)
{
    if (m->nparams == m->pcap) {
        int nc = m->pcap ? m->pcap * 2 : 64;
        struct param *np = pt_realloc(m->p, (size_t)nc * sizeof *np);
        if (!np) return -1;
        m->p = np;
        m->pcap = nc;
    }
    struct param *p = &m->p[m->nparams];
    memset(p, 0, sizeof *p);
    if (!(p->name = pt_strdup(name))) return -1;
    p->off = m->total;
    p->rows = rows;
    p->cols = cols;
    p->sparse = sparse;
    p->group = group;
    p->owner = owner;
    p->init = sparse ? INIT_NORMAL : rows == 1 ? INIT_ZERO : group == PG_GATES ? INIT_XAVIER : INIT_HE;
    m->total += (size_t)(rows * cols);
    return m->nparams++;
}

static int build_embed(struct model *m, struct embed *e, const char *prefix, int width1, int owner)
{
    const struct schema *s = m->schema;
    char name[512];
    e->emb = pt_calloc((size_t)s->ncat + 1, sizeof(int));
    e->memb = pt_calloc((size_t)s->nmulti + 1, sizeof(int));
    e->edim = pt_calloc((size_t)(s->ncat + s->nmulti) + 1, sizeof(int));
    if (!e->emb || !e->memb || !e->edim) return -1;
    e->din = 0;
    for (int i = 0; i < s->nfeat; i++) {
        const struct feat_state *f = &s->f[i];
        if (!f->is_cat && f->cfg->kind != FEAT_MULTI) continue;
        int dim = width1 ? 1 : f->cfg->dim;
        snprintf(name, sizeof name, "%semb.%s", prefix, f->cfg->name);
        int pi = add_param(m, name, f->rows > 0 ? f->rows : 1, dim, 1, PG_EMBEDDINGS, owner);
        if (pi < 0) return -1;
        if (f->is_cat) {
            e->emb[f->slot] = pi;
            e->edim[f->slot] = dim;
        } else {
            e->memb[f->slot] = pi;
            e->edim[s->ncat + f->slot] = dim;
        }
        e->din += dim;
    }
    e->din += s->nnum;
    return 0;
}

/* dims[0] = in, then hidden..., then (if out > 0) out. */
static int build_mlp_ext(struct model *m, struct mlp *n, const char *prefix, int in, const int *hidden, int nh,
                         int out, int relu_last, int group, int owner, int W0, int b0)
{
    char name[512];
    n->nl = nh + (out > 0);
    n->relu_last = relu_last;
    n->dims = pt_calloc((size_t)n->nl + 1, sizeof(int));
    n->W = pt_calloc((size_t)n->nl + 1, sizeof(int));
    n->b = pt_calloc((size_t)n->nl + 1, sizeof(int));
    if (!n->dims || !n->W || !n->b) return -1;
    n->dims[0] = in;
    for (int l = 0; l < nh; l++) n->dims[l + 1] = hidden[l];
    if (out > 0) n->dims[n->nl] = out;
    n->ld0 = n->dims[1];
    if (W0 >= 0) {
        n->ext0 = 1;
        n->W[0] = W0;
        n->b[0] = b0;
    }
    for (int l = n->ext0; l < n->nl; l++) {
        snprintf(name, sizeof name, "%sfc%d.weight", prefix, l);
        if ((n->W[l] = add_param(m, name, n->dims[l + 1], n->dims[l], 0, group, owner)) < 0) return -1;
        snprintf(name, sizeof name, "%sfc%d.bias", prefix, l);
        if ((n->b[l] = add_param(m, name, 1, n->dims[l + 1], 0, group, owner)) < 0) return -1;
    }
    /* He for layers feeding a ReLU; Xavier for a linear output (the logit) */
    if (!relu_last) m->p[n->W[n->nl - 1]].init = INIT_XAVIER;
    return 0;
}

static int build_mlp(struct model *m, struct mlp *n, const char *prefix, int in, const int *hidden, int nh,
                     int out, int relu_last, int group, int owner)
{
    return build_mlp_ext(m, n, prefix, in, hidden, nh, out, relu_last, group, owner, -1, -1);
}

static int mlp_out(const struct mlp *n) { return n->dims[n->nl]; }

/* Row stride of layer l's output buffers. */
static int ldh(const struct mlp *n, int l) { return l == 0 ? n->ld0 : n->dims[l + 1]; }

static int build_gate(struct model *m, struct gate *g, const char *name, int D, int K)
{
    char buf[512];
    g->D = D;
    g->K = K;
    g->experts = pt_calloc((size_t)K, sizeof(int));
    g->first = pt_calloc((size_t)K, 1);
    g->psum = pt_calloc((size_t)K, sizeof(double));
    if (!g->experts || !g->first || !g->psum) return -1;
    snprintf(buf, sizeof buf, "%s.weight", name);
    if ((g->W = add_param(m, buf, K, D, 0, PG_GATES, -1)) < 0) return -1;
    snprintf(buf, sizeof buf, "%s.bias", name);
    if ((g->b = add_param(m, buf, 1, K, 0, PG_GATES, -1)) < 0) return -1;
    return 0;
}

static int build_levels(struct model *m, int din)
{
    const struct pt_config *c = m->cfg;
    int T = m->ntasks;
    char name[512];
    int mmoe = c->model == MODEL_MMOE;
    m->nlevels = mmoe ? 1 : c->levels;
    m->lv = pt_calloc((size_t)m->nlevels, sizeof *m->lv);
    if (!m->lv) return -1;
    int in = din;
    for (int l = 0; l < m->nlevels; l++) {
        struct cgc *L = &m->lv[l];
        L->nt = mmoe ? 0 : c->experts;
        L->ns = mmoe ? c->experts : c->shared_experts;
        L->H = c->expert_dims[c->nexpert_dims - 1];
        L->has_sgate = l < m->nlevels - 1;
        int ne = T * L->nt + L->ns;
        L->ex = pt_calloc((size_t)ne, sizeof *L->ex);
        L->tg = pt_calloc((size_t)T, sizeof *L->tg);
        L->out = pt_calloc((size_t)T, sizeof *L->out);
        L->dout = pt_calloc((size_t)T, sizeof *L->dout);
        if (!L->ex || !L->tg || !L->out || !L->dout) return -1;
        char (*prefix)[256] = pt_calloc((size_t)ne, sizeof *prefix);
        if (!prefix) return -1;
        for (int k = 0; k < ne; k++) {
            if (k < T * L->nt)
                snprintf(prefix[k], sizeof prefix[k], "level%d.%s.expert%d.", l, c->tasks[k / L->nt].name, k % L->nt);
            else if (mmoe)
                snprintf(prefix[k], sizeof prefix[k], "expert%d.", k);
            else
                snprintf(prefix[k], sizeof prefix[k], "level%d.shared.expert%d.", l, k - T * L->nt);
        }
        /* level 0: all experts read x, so their first layers are allocated
         * side by side (weights, then biases) and run as one product */
        L->fused = l == 0 && ne > 1;
        L->H1 = c->expert_dims[0];
        int rc = 0;
        for (int k = 0; L->fused && k < ne && !rc; k++) {
            snprintf(name, sizeof name, "%sfc0.weight", prefix[k]);
            int pi = add_param(m, name, L->H1, in, 0, PG_EXPERTS, -1);
            if (k == 0) L->W0 = pi;
            rc = pi < 0;
        }
        for (int k = 0; L->fused && k < ne && !rc; k++) {
            snprintf(name, sizeof name, "%sfc0.bias", prefix[k]);
            int pi = add_param(m, name, 1, L->H1, 0, PG_EXPERTS, -1);
            if (k == 0) L->b0 = pi;
            rc = pi < 0;
        }
        for (int k = 0; k < ne && !rc; k++)
            rc = build_mlp_ext(m, &L->ex[k], prefix[k], in, c->expert_dims, c->nexpert_dims, 0, 1, PG_EXPERTS, -1,
                               L->fused ? L->W0 + k : -1, L->fused ? L->b0 + k : -1);
        pt_free(prefix);
        if (rc) return -1;
        for (int t = 0; t < T; t++) {
            if (mmoe) snprintf(name, sizeof name, "gate.%s", c->tasks[t].name);
            else snprintf(name, sizeof name, "level%d.gate.%s", l, c->tasks[t].name);
            if (build_gate(m, &L->tg[t], name, in, L->nt + L->ns)) return -1;
            for (int k = 0; k < L->nt; k++) L->tg[t].experts[k] = t * L->nt + k;
            for (int k = 0; k < L->ns; k++) L->tg[t].experts[L->nt + k] = T * L->nt + k;
        }
        if (L->has_sgate) {
            snprintf(name, sizeof name, "level%d.gate.shared", l);
            if (build_gate(m, &L->sg, name, in, ne)) return -1;
            for (int k = 0; k < ne; k++) L->sg.experts[k] = k;
        }
        /* which gate writes each expert's output gradient (the first to mix
         * it, in backward's order: task gates, then the shared one); the
         * rest add */
        unsigned char *seen = pt_calloc((size_t)ne, 1);
        if (!seen) return -1;
        for (int i = 0; i < T + L->has_sgate; i++) {
            struct gate *g = i < T ? &L->tg[i] : &L->sg;
            for (int k = 0; k < g->K; k++) {
                g->first[k] = !seen[g->experts[k]];
                seen[g->experts[k]] = 1;
            }
        }
        pt_free(seen);
        in = L->H;
    }
    return 0;
}

static void init_params(struct model *m, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    for (int pi = 0; pi < m->nparams; pi++) {
        struct param *p = &m->p[pi];
        float *w = m->w + p->off;
        switch (p->init) {
        case INIT_NORMAL: nn_init_normal(w, (size_t)(p->rows * p->cols), EMB_INIT_STD, &r); break;
        case INIT_ZERO: memset(w, 0, (size_t)(p->rows * p->cols) * sizeof(float)); break;
        case INIT_XAVIER: nn_init_xavier(w, (int)p->rows, (int)p->cols, &r); break;
        default: nn_init_he(w, (int)p->rows, (int)p->cols, &r); break;
        }
    }
}

int model_create(struct model **out, const struct pt_config *cfg, struct schema *schema, uint64_t seed)
{
    *out = NULL;
    struct model *m = pt_calloc(1, sizeof *m);
    if (!m) return pt_error(PT_ENOMEM, "out of memory");
    static _Atomic uint64_t next_uid = 1;
    m->uid = next_uid++;
    m->cfg = cfg;
    m->schema = schema;
    m->kind = cfg->model;
    m->ntasks = cfg->ntasks;
    m->nout = cfg->model == MODEL_ESMM ? 3 : cfg->ntasks;
    m->logvar = -1;
    int T = m->ntasks;
    char prefix[512];
    m->independent = cfg->model == MODEL_LR || cfg->model == MODEL_MLP;
    m->nembeds = m->independent ? T : 1;
    m->E = pt_calloc((size_t)m->nembeds, sizeof *m->E);
    if (!m->E) goto nomem;
    if (m->independent) {
        int lr = cfg->model == MODEL_LR;
        m->nets = pt_calloc((size_t)T, sizeof *m->nets);
        if (!m->nets) goto nomem;
        for (int t = 0; t < T; t++) {
            snprintf(prefix, sizeof prefix, "%s.", cfg->tasks[t].name);
            if (build_embed(m, &m->E[t], prefix, lr, t)) goto nomem;
            if (build_mlp(m, &m->nets[t], prefix, m->E[t].din, cfg->hidden, lr ? 0 : cfg->nhidden, 1, 0,
                          PG_TOWERS, t))
                goto nomem;
        }
    } else {
        if (build_embed(m, &m->E[0], "", 0, -1)) goto nomem;
        int H;
        if (cfg->model == MODEL_SHARED_BOTTOM || cfg->model == MODEL_ESMM) {
            if (build_mlp(m, &m->bottom, "bottom.", m->E[0].din, cfg->expert_dims, cfg->nexpert_dims, 0, 1,
                          PG_EXPERTS, -1))
                goto nomem;
            H = mlp_out(&m->bottom);
        } else {
            if (build_levels(m, m->E[0].din)) goto nomem;
            H = m->lv[m->nlevels - 1].H;
        }
        m->towers = pt_calloc((size_t)T, sizeof *m->towers);
        if (!m->towers) goto nomem;
        for (int t = 0; t < T; t++) {
            snprintf(prefix, sizeof prefix, "tower.%s.", cfg->tasks[t].name);
            if (build_mlp(m, &m->towers[t], prefix, H, cfg->tower_dims, cfg->ntower_dims, 1, 0, PG_TOWERS, -1))
                goto nomem;
        }
        if (cfg->uncertainty && (m->logvar = add_param(m, "loss.log_var", 1, T, 0, PG_LOSS, -1)) < 0) goto nomem;
    }
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

/* ---- buffers ---- */

static void free_mlp_acts(struct mlp *n)
{
    for (int l = n->ext0; l < n->nl; l++) { /* layer 0 of a fused expert is a view */
        if (n->h) pt_free(n->h[l]);
        if (n->dh) pt_free(n->dh[l]);
        if (n->mask) pt_free(n->mask[l]);
    }
    pt_free(n->h);
    pt_free(n->dh);
    pt_free(n->mask);
    n->h = n->dh = n->mask = NULL;
}

static void free_mlp(struct mlp *n)
{
    free_mlp_acts(n);
    pt_free(n->dims);
    pt_free(n->W);
    pt_free(n->b);
}

static void free_gate_acts(struct gate *g)
{
    pt_free(g->p);
    pt_free(g->dp);
    pt_free(g->dz);
    g->p = g->dp = g->dz = NULL;
}

/* Reads only the batch (its slot counts), not the schema. */
static void free_batch(struct batch *b)
{
    for (int j = 0; b->cat && j < b->ncat; j++) pt_free(b->cat[j]);
    for (int j = 0; b->moff && j < b->nmulti; j++) pt_free(b->moff[j]);
    for (int j = 0; b->mids && j < b->nmulti; j++) pt_free(b->mids[j]);
    for (int j = 0; b->num && j < b->nnum; j++) pt_free(b->num[j]);
    pt_free(b->cat);
    pt_free(b->moff);
    pt_free(b->mids);
    pt_free(b->mcap);
    pt_free(b->num);
    pt_free(b->y);
    pt_free(b->soft);
    memset(b, 0, sizeof *b);
}

void model_free_acts(struct model *m)
{
    int T = m->ntasks;
    for (int e = 0; m->E && e < m->nembeds; e++) {
        pt_free(m->E[e].x);
        pt_free(m->E[e].dx);
        m->E[e].x = m->E[e].dx = NULL;
    }
    for (int t = 0; m->nets && t < T; t++) free_mlp_acts(&m->nets[t]);
    for (int t = 0; m->towers && t < T; t++) free_mlp_acts(&m->towers[t]);
    free_mlp_acts(&m->bottom);
    for (int l = 0; m->lv && l < m->nlevels; l++) {
        struct cgc *L = &m->lv[l];
        for (int k = 0; L->ex && k < T * L->nt + L->ns; k++) free_mlp_acts(&L->ex[k]);
        for (int t = 0; L->tg && t < T; t++) free_gate_acts(&L->tg[t]);
        free_gate_acts(&L->sg);
        for (int t = 0; L->out && t < T; t++) {
            pt_free(L->out[t]);
            pt_free(L->dout[t]);
            L->out[t] = L->dout[t] = NULL;
        }
        pt_free(L->sout);
        pt_free(L->dsout);
        pt_free(L->h0);
        pt_free(L->dh0);
        pt_free(L->mask0);
        L->sout = L->dsout = L->h0 = L->dh0 = L->mask0 = NULL;
    }
    pt_free(m->logits);
    pt_free(m->dlogits);
    pt_free(m->ycol);
    m->logits = m->dlogits = m->ycol = NULL;
    free_batch(&m->bt);
    m->bmax = 0;
}

void model_destroy(struct model *m)
{
    if (!m) return;
    int T = m->ntasks;
    model_free_acts(m);
    model_pack(m, NULL);
    for (int i = 0; i < m->nparams; i++) pt_free(m->p[i].name);
    pt_free(m->p);
    for (int e = 0; m->E && e < m->nembeds; e++) {
        pt_free(m->E[e].emb);
        pt_free(m->E[e].memb);
        pt_free(m->E[e].edim);
    }
    pt_free(m->E);
    for (int t = 0; m->nets && t < T; t++) free_mlp(&m->nets[t]);
    for (int t = 0; m->towers && t < T; t++) free_mlp(&m->towers[t]);
    pt_free(m->nets);
    pt_free(m->towers);
    free_mlp(&m->bottom);
    for (int l = 0; m->lv && l < m->nlevels; l++) {
        struct cgc *L = &m->lv[l];
        for (int k = 0; L->ex && k < T * L->nt + L->ns; k++) free_mlp(&L->ex[k]);
        for (int t = 0; L->tg && t < T; t++) {
            pt_free(L->tg[t].experts);
            pt_free(L->tg[t].first);
            pt_free(L->tg[t].psum);
        }
        pt_free(L->sg.experts);
        pt_free(L->sg.first);
        pt_free(L->sg.psum);
        pt_free(L->ex);
        pt_free(L->tg);
        pt_free(L->out);
        pt_free(L->dout);
    }
    pt_free(m->lv);
    pt_free(m->w);
    pt_free(m->g);
    pt_free(m->m);
    pt_free(m->v);
    pt_free(m->cs), pt_free(m->crow), pt_free(m->cinv), pt_free(m->ckeys), pt_free(m->cg), pt_free(m->wt);
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

static float *fbuf(size_t n) { return pt_malloc((n ? n : 1) * sizeof(float)); }

static int reserve_mlp(struct mlp *n, size_t B)
{
    n->h = pt_calloc((size_t)n->nl, sizeof(float *));
    n->dh = pt_calloc((size_t)n->nl, sizeof(float *));
    n->mask = pt_calloc((size_t)n->nl, sizeof(float *));
    if (!n->h || !n->dh || !n->mask) return -1;
    for (int l = n->ext0; l < n->nl; l++) {
        size_t sz = B * (size_t)n->dims[l + 1];
        if (!(n->h[l] = fbuf(sz)) || !(n->dh[l] = fbuf(sz)) || !(n->mask[l] = fbuf(sz))) return -1;
    }
    return 0;
}

static int reserve_gate(struct gate *g, size_t B)
{
    g->p = fbuf(B * (size_t)g->K);
    g->dp = fbuf(B * (size_t)g->K);
    g->dz = fbuf(B * (size_t)g->K);
    return (g->p && g->dp && g->dz) ? 0 : -1;
}

int model_reserve(struct model *m, int bmax)
{
    if (bmax <= m->bmax) return PT_OK;
    const struct schema *s = m->schema;
    int T = m->ntasks;
    model_free_acts(m);
    size_t B = (size_t)bmax;
    for (int e = 0; e < m->nembeds; e++) {
        m->E[e].x = fbuf(B * (size_t)m->E[e].din);
        m->E[e].dx = fbuf(B * (size_t)m->E[e].din);
        if (!m->E[e].x || !m->E[e].dx) goto nomem;
    }
    for (int t = 0; m->nets && t < T; t++)
        if (reserve_mlp(&m->nets[t], B)) goto nomem;
    for (int t = 0; m->towers && t < T; t++)
        if (reserve_mlp(&m->towers[t], B)) goto nomem;
    if (m->bottom.nl && reserve_mlp(&m->bottom, B)) goto nomem;
    for (int l = 0; l < m->nlevels; l++) {
        struct cgc *L = &m->lv[l];
        int ne = T * L->nt + L->ns;
        for (int k = 0; k < ne; k++)
            if (reserve_mlp(&L->ex[k], B)) goto nomem;
        if (L->fused) {
            size_t w = (size_t)ne * (size_t)L->H1;
            if (!(L->h0 = fbuf(B * w)) || !(L->dh0 = fbuf(B * w)) || !(L->mask0 = fbuf(B * w))) goto nomem;
            for (int k = 0; k < ne; k++) {
                struct mlp *e = &L->ex[k];
                e->h[0] = L->h0 + (size_t)k * L->H1;
                e->dh[0] = L->dh0 + (size_t)k * L->H1;
                e->mask[0] = L->mask0 + (size_t)k * L->H1;
                e->ld0 = (int)w;
            }
        }
        for (int t = 0; t < T; t++) {
            if (reserve_gate(&L->tg[t], B)) goto nomem;
            if (!(L->out[t] = fbuf(B * (size_t)L->H)) || !(L->dout[t] = fbuf(B * (size_t)L->H))) goto nomem;
        }
        if (L->has_sgate) {
            if (reserve_gate(&L->sg, B)) goto nomem;
            if (!(L->sout = fbuf(B * (size_t)L->H)) || !(L->dsout = fbuf(B * (size_t)L->H))) goto nomem;
        }
    }
    m->logits = fbuf(B * (size_t)T);
    m->dlogits = fbuf(B * (size_t)T);
    m->ycol = fbuf(B * (size_t)T);
    struct batch *b = &m->bt;
    b->cat = pt_calloc((size_t)s->ncat + 1, sizeof *b->cat);
    b->moff = pt_calloc((size_t)s->nmulti + 1, sizeof *b->moff);
    b->mids = pt_calloc((size_t)s->nmulti + 1, sizeof *b->mids);
    b->mcap = pt_calloc((size_t)s->nmulti + 1, sizeof *b->mcap);
    b->num = pt_calloc((size_t)s->nnum + 1, sizeof *b->num);
    b->ncat = s->ncat, b->nmulti = s->nmulti, b->nnum = s->nnum;
    b->y = fbuf(B * (size_t)T);
    b->soft = fbuf(B * (size_t)T);
    if (!m->logits || !m->dlogits || !m->ycol || !b->cat || !b->moff || !b->mids || !b->mcap ||
        !b->num || !b->y || !b->soft)
        goto nomem;
    for (int j = 0; j < s->ncat; j++)
        if (!(b->cat[j] = pt_malloc(B * sizeof(int32_t)))) goto nomem;
    for (int j = 0; j < s->nmulti; j++)
        if (!(b->moff[j] = pt_malloc((B + 1) * sizeof(int32_t)))) goto nomem;
    for (int j = 0; j < s->nnum; j++)
        if (!(b->num[j] = fbuf(B))) goto nomem;
    m->bmax = bmax;
    return PT_OK;
nomem:
    model_free_acts(m);
    return pt_error(PT_ENOMEM, "out of memory");
}

/* The packed rows start at the first 64-byte boundary of the allocation. */
static uint32_t *pk_base(uint32_t *pk) { return (uint32_t *)(((uintptr_t)pk + 63) & ~(uintptr_t)63); }

int model_pack(struct model *m, const struct dataset *d)
{
    pt_free(m->pk);
    m->pk = NULL, m->pk_of = NULL;
    if (!d) return 0;
    /* rows padded to whole cache lines, so a row is one line when it fits */
    int w = d->ncat + d->nnum + d->ntasks;
    w = (w + 15) & ~15;
    uint32_t *pk = pt_malloc((size_t)d->n * (size_t)w * sizeof *pk + 64);
    if (!pk) {
        pt_error_clear();
        return 0;
    }
    uint32_t *base = pk_base(pk);
    for (int64_t i = 0; i < d->n; i++) {
        uint32_t *r = base + (size_t)i * w;
        int k = 0;
        for (int j = 0; j < d->ncat; j++) r[k++] = (uint32_t)d->cat[j][i];
        for (int j = 0; j < d->nnum; j++) memcpy(&r[k++], &d->num[j][i], sizeof *r);
        for (int t = 0; t < d->ntasks; t++) memcpy(&r[k++], &d->y[i * d->ntasks + t], sizeof *r);
    }
    m->pk = pk, m->pk_of = d, m->pk_w = w;
    return 1;
}

/* The batch's single-valued cells and labels from the packed rows. */
static void gather_packed(struct model *m, const int64_t *idx, int B)
{
    const struct schema *s = m->schema;
    struct batch *b = &m->bt;
    const uint32_t *base = pk_base(m->pk);
    size_t w = (size_t)m->pk_w, T = (size_t)m->ntasks;
    for (int i = 0; i < B; i++) {
        if (i + 16 < B) PT_PREFETCH(base + (size_t)idx[i + 16] * w, 0);
        const uint32_t *r = base + (size_t)idx[i] * w;
        int k = 0;
        for (int j = 0; j < s->ncat; j++) b->cat[j][i] = (int32_t)r[k++];
        for (int j = 0; j < s->nnum; j++) memcpy(&b->num[j][i], &r[k++], sizeof *r);
        memcpy(b->y + (size_t)i * T, r + k, T * sizeof *r);
    }
}

/* The same from d's columns. idx is a shuffled order, so every column read
 * is a cache miss on a big data set: prefetch a few rows ahead. */
static void gather_columns(struct model *m, const struct dataset *d, const int64_t *idx, int B)
{
    const struct schema *s = m->schema;
    struct batch *b = &m->bt;
    int T = m->ntasks;
    for (int j = 0; j < s->ncat; j++) {
        const int32_t *src = d->cat[j];
        int32_t *dst = b->cat[j];
        for (int i = 0; i < B; i++) {
            if (i + 16 < B) PT_PREFETCH(src + idx[i + 16], 0);
            dst[i] = src[idx[i]];
        }
    }
    for (int j = 0; j < s->nnum; j++) {
        const float *src = d->num[j];
        float *dst = b->num[j];
        for (int i = 0; i < B; i++) {
            if (i + 16 < B) PT_PREFETCH(src + idx[i + 16], 0);
            dst[i] = src[idx[i]];
        }
    }
    for (int i = 0; i < B; i++) memcpy(b->y + (size_t)i * T, d->y + idx[i] * T, (size_t)T * sizeof(float));
}

int model_gather(struct model *m, const struct dataset *d, const float *soft, const int64_t *idx, int B)
{
    const struct schema *s = m->schema;
    struct batch *b = &m->bt;
    int T = m->ntasks;
    b->B = B;
    if (m->pk && d == m->pk_of) gather_packed(m, idx, B);
    else gather_columns(m, d, idx, B);
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
            if (e > a) memcpy(b->mids[j] + pos, d->mids[j] + a, (size_t)(e - a) * sizeof(int32_t));
            pos += e - a;
            b->moff[j][i + 1] = pos;
        }
    }
    if (soft)
        for (int i = 0; i < B; i++) memcpy(b->soft + (size_t)i * T, soft + idx[i] * T, (size_t)T * sizeof(float));
    return PT_OK;
}

/* ---- forward ---- */

static int multi_pool_mean(const struct schema *s, int slot)
{
    for (int i = 0; i < s->nfeat; i++)
        if (s->f[i].cfg->kind == FEAT_MULTI && s->f[i].slot == slot) return s->f[i].cfg->pool_mean;
    return 1;
}

static void embed_forward(struct model *m, struct embed *e, int B)
{
    const struct schema *s = m->schema;
    const struct batch *b = &m->bt;
    int D = e->din, col = 0;
    for (int j = 0; j < s->ncat; j++) {
        nn_embedding_forward(e->x + col, D, m->w + m->p[e->emb[j]].off, b->cat[j], B, e->edim[j]);
        col += e->edim[j];
    }
    for (int j = 0; j < s->nmulti; j++) {
        int dim = e->edim[s->ncat + j];
        nn_embedding_bag_forward(e->x + col, D, m->w + m->p[e->memb[j]].off, b->moff[j], b->mids[j], B, dim,
                                 multi_pool_mean(s, j));
        col += dim;
    }
    for (int j = 0; j < s->nnum; j++) {
        const float *src = b->num[j];
        for (int i = 0; i < B; i++) e->x[(size_t)i * D + col] = src[i];
        col++;
    }
}

/* Returns the output [B, dims[nl]]. */
/* Returns the output [B, dims[nl]] (row stride ldh(n, nl - 1)). Layer 0 of
 * a fused expert has already run (level_fused_forward). */
static const float *mlp_forward(struct model *m, struct mlp *n, const float *in, int B, int train)
{
    float drop = train ? m->cfg->dropout : 0.0f;
    int ldin = n->dims[0];
    for (int l = 0; l < n->nl; l++) {
        int I = n->dims[l], O = n->dims[l + 1];
        float *y = n->h[l];
        if (!(l == 0 && n->ext0)) {
            int relu = l < n->nl - 1 || n->relu_last;
            /* the next layer's products read y: their bf16 copies come from
             * the epilogue, unless dropout changes y after it */
            int copy = l < n->nl - 1 && !(relu && drop > 0) && nn_gemm_bf16_dims(B, n->dims[l + 2], O) ? O : 0;
            nn_linear_forward_ld(y, O, in, ldin, m->w + m->p[n->W[l]].off, m->w + m->p[n->b[l]].off, B, I, O, relu,
                                 copy, 0);
            if (relu && drop > 0) nn_dropout_forward(y, n->mask[l], y, (size_t)B * O, drop, &m->drop_rng);
        }
        in = y;
        ldin = ldh(n, l);
    }
    return n->h[n->nl - 1];
}

/* The first layers of all of a level's experts as one product on x. */
static void level_fused_forward(struct model *m, struct cgc *L, const float *x, int D, int B, int train)
{
    int O = L->ex[0].ld0;
    const struct mlp *e = &L->ex[0];
    /* each expert's second layer reads its column block */
    int copy = e->nl > 1 && !(train && m->cfg->dropout > 0) && nn_gemm_bf16_dims(B, e->dims[2], L->H1) ? L->H1 : 0;
    /* then only those products and the ReLU backward read h0, the latter
     * its signs from the same copies: h0's float values can stay unwritten */
    nn_linear_forward_ld(L->h0, O, x, D, m->w + m->p[L->W0].off, m->w + m->p[L->b0].off, B, D, O, 1, copy,
                         copy && train);
    if (train && m->cfg->dropout > 0)
        nn_dropout_forward(L->h0, L->mask0, L->h0, (size_t)B * O, m->cfg->dropout, &m->drop_rng);
}

static int expert_ld(const struct cgc *L, int k) { return ldh(&L->ex[k], L->ex[k].nl - 1); }

static void gate_forward(struct model *m, struct gate *g, const float *in, int B)
{
    nn_linear_forward(g->p, g->K, in, m->w + m->p[g->W].off, m->w + m->p[g->b].off, B, g->D, g->K);
    nn_softmax_forward(g->p, g->p, B, g->K);
    if (m->gate_stats)
        for (int i = 0; i < B; i++)
            for (int k = 0; k < g->K; k++) g->psum[k] += g->p[(size_t)i * g->K + k];
}

/* Every gate's mixture of the level: L->out[t], and L->sout when it has a
 * shared gate. */
static void level_mix_forward(struct model *m, struct cgc *L, int B)
{
    int T = m->ntasks, ne = T * L->nt + L->ns, G = T + (L->has_sgate ? 1 : 0);
    const float *es[CONFIG_MAX_GATE]; /* a level's experts: at most one gate's worth (config.c) */
    struct nn_mix_gate gates[CONFIG_MAX_TASKS + 1];
    for (int k = 0; k < ne; k++) es[k] = L->ex[k].h[L->ex[k].nl - 1];
    for (int i = 0; i < G; i++) {
        struct gate *g = i < T ? &L->tg[i] : &L->sg;
        gates[i] = (struct nn_mix_gate){.g = g->p, .experts = g->experts, .K = g->K, .out = i < T ? L->out[i] : L->sout};
    }
    nn_mixture_forward_gates(es, expert_ld(L, 0), L->H, gates, G, B);
}

/* Shared part: fills m->logits [B, T]. */
static void forward(struct model *m, int B, int train)
{
    int T = m->ntasks;
    if (m->independent) {
        for (int t = 0; t < T; t++) {
            embed_forward(m, &m->E[t], B);
            const float *z = mlp_forward(m, &m->nets[t], m->E[t].x, B, train);
            for (int i = 0; i < B; i++) m->logits[(size_t)i * T + t] = z[i];
        }
        return;
    }
    embed_forward(m, &m->E[0], B);
    const float *x = m->E[0].x;
    const float *hs[CONFIG_MAX_TASKS];
    if (m->nlevels == 0) {
        const float *h = mlp_forward(m, &m->bottom, x, B, train);
        for (int t = 0; t < T; t++) hs[t] = h;
    } else {
        const float *sin = x;
        for (int t = 0; t < T; t++) hs[t] = x;
        for (int l = 0; l < m->nlevels; l++) {
            struct cgc *L = &m->lv[l];
            if (L->fused) level_fused_forward(m, L, x, m->E[0].din, B, train);
            for (int k = 0; k < T * L->nt + L->ns; k++)
                mlp_forward(m, &L->ex[k], k < T * L->nt ? hs[k / L->nt] : sin, B, train);
            for (int t = 0; t < T; t++) gate_forward(m, &L->tg[t], hs[t], B);
            if (L->has_sgate) gate_forward(m, &L->sg, sin, B);
            level_mix_forward(m, L, B);
            for (int t = 0; t < T; t++) hs[t] = L->out[t];
            if (L->has_sgate) sin = L->sout;
        }
    }
    for (int t = 0; t < T; t++) {
        const float *z = mlp_forward(m, &m->towers[t], hs[t], B, train);
        for (int i = 0; i < B; i++) m->logits[(size_t)i * T + t] = z[i];
    }
    if (m->gate_stats) m->gate_rows += B;
}

/* ---- backward ---- */

/* Backward through ReLU then dropout applied in place, dy and h [B, O]: h
 * holds the output after both, so this is nn_dropout_backward then
 * nn_relu_backward fused in place (h > 0 iff the unit was active and kept).
 * The layer's bias gradient db[O] += sum_b dy comes in the same pass. */
PT_VECTOR_CLONES static void act_backward(float *dy, const uint16_t *dybf, const float *h, const uint16_t *const *hb,
                                          int hblock, const float *mask, int B, int O, int drop, float *db, int I)
{
    /* The layer's products (dx and dW, of dims B, I and O) are all that
     * reads dy next. When they read bf16, its copy is made from each row
     * while in cache and the float row is not written back (a trip through
     * memory fewer; gemm.c restores it should a product need it); and the
     * bias gradient sums the same rounded values the products read, so it
     * does not depend on where the rounding happened. dybf (non-NULL, no
     * dropout): dy's values are already that copy, written by the products
     * that made dy (nn_gemm_bf16_into_copy), and are masked in place. hb
     * (non-NULL, no dropout): h's bf16 copies, column blocks of width
     * hblock, whose signs are read instead of h. */
    int round = nn_gemm_bf16_dims(B, I, O);
    uint16_t *bf = dybf ? (uint16_t *)(uintptr_t)dybf : round ? nn_gemm_bf16_slot(dy, B, O, O, 1) : NULL;
    /* in chunks through a buffer in L1, every load unconditional: a select
     * on loads the C semantics of ?: would skip compiles to masked loads,
     * which are slow (microcoded on AMD) */
    enum { CH = 256 };
    for (int r = 0; r < B; r++) {
        float *g = dy + (size_t)r * O;
        const float *a = h + (size_t)r * O, *k = drop ? mask + (size_t)r * O : NULL;
        for (int o0 = 0; o0 < O;) {
            int n = O - o0 < CH ? O - o0 : CH;
            const int16_t *p = NULL;
            if (hb) {
                int c = o0 % hblock;
                n = hblock - c < n ? hblock - c : n;
                p = (const int16_t *)hb[o0 / hblock] + (size_t)r * hblock + c;
            }
            float t[CH];
            if (dybf) {
                const uint16_t *src = dybf + (size_t)r * O + o0;
                for (int o = 0; o < n; o++) {
                    uint32_t u = (uint32_t)src[o] << 16;
                    memcpy(&t[o], &u, sizeof u);
                }
            } else {
                for (int o = 0; o < n; o++) t[o] = g[o0 + o];
            }
            if (k)
                for (int o = 0; o < n; o++) t[o] *= k[o0 + o];
            if (p) /* a ReLU's bf16 output is positive iff its bits are */
                for (int o = 0; o < n; o++) t[o] = p[o] > 0 ? t[o] : 0.0f;
            else
                for (int o = 0; o < n; o++) t[o] = a[o0 + o] > 0 ? t[o] : 0.0f;
            if (round || bf) { /* the products' own conversion (nn_bf16_pack), into their copy if kept */
                uint16_t tmp[CH], *q = bf ? bf + (size_t)r * O + o0 : tmp;
                nn_bf16_pack(q, t, (size_t)n);
                for (int o = 0; o < n && !dybf; o++) {
                    uint32_t u = (uint32_t)q[o] << 16;
                    memcpy(&t[o], &u, sizeof u);
                }
            }
            for (int o = 0; o < n; o++) db[o0 + o] += t[o];
            if (!bf)
                for (int o = 0; o < n; o++) g[o0 + o] = t[o];
            o0 += n;
        }
    }
}

/* The columns of e->x whose gradient is used: the embeddings', unless all
 * of them are frozen. The numeric features come after them and need none. */
static int grad_cols(const struct model *m, const struct embed *e)
{
    const struct schema *s = m->schema;
    for (int j = 0; j < s->ncat; j++)
        if (!m->p[e->emb[j]].frozen) return e->din - s->nnum;
    for (int j = 0; j < s->nmulti; j++)
        if (!m->p[e->memb[j]].frozen) return e->din - s->nnum;
    return 0;
}

/* dW += dy^T x for a layer of O outputs from I inputs: as (x^T dy)^T
 * where that product is the faster (nn_linear_backward_wt). */
static void weight_grad(struct model *m, float *dW, const float *dy, int lddy, const float *x, int ldx, int B, int I,
                        int O)
{
    if (O >= 2 * I) {
        if (!pt_grow((void **)&m->wt, &m->wt_cap, (size_t)I * O, sizeof(float))) {
            nn_linear_backward_wt(dW, m->wt, dy, lddy, x, ldx, B, I, O);
            return;
        }
        pt_error_clear(); /* out of memory for the scratch: the direct product needs none */
    }
    nn_linear_backward_ld(NULL, 0, 0, 0.0f, dW, NULL, dy, lddy, x, ldx, NULL, B, I, O);
}

/* n->dh[nl-1] holds dL/d(output); din[:, 0:dcols] = din_beta * din +
 * dL/d(input) (din NULL: skip). A hidden layer's input gradient is written:
 * it has no other source. So is a fused expert's layer-1 input gradient, its
 * own column block of the level's dh0, where it stops (level_fused_backward
 * finishes). last_done: the last layer's ReLU backward and bias gradient
 * were made with dL/d(output) (level_mix_backward). */
static void mlp_backward(struct model *m, struct mlp *n, const float *in, float *din, int dcols, float din_beta,
                         int last_done, int B)
{
    int drop = m->cfg->dropout > 0;
    for (int l = n->nl - 1; l >= n->ext0; l--) {
        int I = n->dims[l], O = n->dims[l + 1];
        float *dy = n->dh[l];
        const struct param *W = &m->p[n->W[l]], *b = &m->p[n->b[l]];
        float *db = m->g + b->off;
        if (l == n->nl - 1 && last_done) {
            db = NULL;
        } else if (l < n->nl - 1 || n->relu_last) {
            act_backward(dy, NULL, n->h[l], NULL, 0, n->mask[l], B, O, drop, db, I);
            db = NULL;
        }
        const float *x = l ? n->h[l - 1] : in;
        float *dx = l ? n->dh[l - 1] : din;
        int ldx = l ? ldh(n, l - 1) : I;
        /* a fused expert's input gradient, its block of the level's dh0,
         * goes straight into dh0's bf16 copy when backward took one */
        if (l == n->ext0 && l > 0 && !db &&
            !nn_gemm_bf16_into_copy('N', 'N', B, I, O, dy, O, m->w + W->off, I, dx, ldx)) {
            weight_grad(m, m->g + W->off, dy, O, x, ldx, B, I, O);
            continue;
        }
        nn_linear_backward_ld(dx, ldx, l ? I : dcols, l ? 0.0f : din_beta, NULL, db, dy, O, x, ldx, m->w + W->off,
                              B, I, O);
        weight_grad(m, m->g + W->off, dy, O, x, ldx, B, I, O);
    }
}

static void level_fused_backward(struct model *m, struct cgc *L, const float *x, float *dx, int dcols,
                                 float dx_beta, int D, int B)
{
    int O = L->ex[0].ld0;
    const struct param *W = &m->p[L->W0], *b = &m->p[L->b0];
    int drop = m->cfg->dropout > 0, signs = !drop;
    /* the forward leaves h0's float values unwritten where it made every
     * block's bf16 copy (level_fused_forward): the ReLU's signs are read
     * from those */
    const uint16_t *hb[CONFIG_MAX_GATE];
    for (int k = 0; k < O / L->H1 && signs; k++)
        signs = (hb[k] = nn_gemm_bf16_find(L->h0 + (size_t)k * L->H1, B, L->H1, O)) != NULL;
    /* the experts' products wrote dh0 as its bf16 copy (backward), unless
     * one could not (its float product then restored the copy's values and
     * dropped it) */
    const uint16_t *dbf = nn_gemm_bf16_find(L->dh0, B, O, O);
    act_backward(L->dh0, dbf, L->h0, signs ? hb : NULL, L->H1, L->mask0, B, O, drop, m->g + b->off, D);
    nn_linear_backward_ld(dx, D, dcols, dx_beta, NULL, NULL, L->dh0, O, x, D, m->w + W->off, B, D, O);
    weight_grad(m, m->g + W->off, L->dh0, O, x, D, B, D, O);
}

/* An expert whose last ReLU backward comes with the mixture's pass: but
 * for a layer the fused product made (its ReLU backward is the whole
 * level's) and under dropout (the mask is act_backward's). */
static int relu_folded(const struct model *m, const struct mlp *e)
{
    return m->cfg->dropout <= 0 && e->relu_last && e->nl - 1 >= e->ext0;
}

/* Every gate's mixture of the level at once: the experts' output gradients
 * (written) and each gate's gradient before its softmax, g->dz; and the
 * experts' last ReLU backward and bias gradients where relu_folded. */
static void level_mix_backward(struct model *m, struct cgc *L, int B)
{
    int T = m->ntasks, ne = T * L->nt + L->ns, G = T + (L->has_sgate ? 1 : 0);
    const float *es[CONFIG_MAX_GATE]; /* a level's experts: at most one gate's worth (config.c) */
    float *des[CONFIG_MAX_GATE];
    struct nn_mix_gate gates[CONFIG_MAX_TASKS + 1];
    for (int k = 0; k < ne; k++) {
        struct mlp *e = &L->ex[k];
        es[k] = e->h[e->nl - 1];
        des[k] = e->dh[e->nl - 1];
    }
    for (int i = 0; i < G; i++) {
        struct gate *g = i < T ? &L->tg[i] : &L->sg;
        gates[i] = (struct nn_mix_gate){.g = g->p, .experts = g->experts, .K = g->K,
                                        .dout = i < T ? L->dout[i] : L->dsout, .dg = g->dp, .first = g->first};
    }
    struct nn_mix_relu relu[CONFIG_MAX_GATE];
    for (int k = 0; k < ne; k++) {
        struct mlp *e = &L->ex[k];
        int l = e->nl - 1;
        relu[k] = (struct nn_mix_relu){0};
        if (!relu_folded(m, e)) continue;
        relu[k].db = m->g + m->p[e->b[l]].off;
        if (nn_gemm_bf16_dims(B, e->dims[l], e->dims[l + 1]))
            relu[k].bf = nn_gemm_bf16_slot(e->dh[l], B, e->dims[l + 1], e->dims[l + 1], 1);
    }
    nn_mixture_backward_gates(des, es, expert_ld(L, 0), L->H, gates, G, B, relu, ne);
    for (int i = 0; i < G; i++) {
        struct gate *g = i < T ? &L->tg[i] : &L->sg;
        memset(g->dz, 0, (size_t)B * g->K * sizeof(float));
        nn_softmax_backward(g->dz, g->dp, g->p, B, g->K);
    }
}

/* The gate's parameter gradients from g->dz, and its input's added into
 * din[:, 0:dcols]. */
static void gate_linear_backward(struct model *m, struct gate *g, const float *in, float *din, int dcols, int B)
{
    const struct param *W = &m->p[g->W], *b = &m->p[g->b];
    nn_linear_backward_ld(din, g->D, dcols, 1.0f, m->g + W->off, m->g + b->off, g->dz, g->K, in, g->D,
                          m->w + W->off, B, g->D, g->K);
}

/* m->dlogits [B, T] → every parameter's gradient. Input gradients are
 * written by their first source and added by the others, so the buffers
 * need no zeroing where one source comes first. */
static void backward(struct model *m, const int *active, int B)
{
    int T = m->ntasks;
    if (m->independent) {
        for (int t = 0; t < T; t++) {
            if (active && !active[t]) continue;
            struct mlp *n = &m->nets[t];
            float *dz = n->dh[n->nl - 1];
            for (int i = 0; i < B; i++) dz[i] = m->dlogits[(size_t)i * T + t];
            mlp_backward(m, n, m->E[t].x, m->E[t].dx, grad_cols(m, &m->E[t]), 0.0f, 0, B);
        }
        return;
    }
    struct embed *E = &m->E[0];
    /* towers: inputs are the bottom's output (one buffer for all: the
     * first tower writes it) or the last level's outputs (one each) */
    const float *hin[CONFIG_MAX_TASKS];
    float *dhin[CONFIG_MAX_TASKS];
    if (m->nlevels == 0) {
        struct mlp *bt = &m->bottom;
        for (int t = 0; t < T; t++) hin[t] = bt->h[bt->nl - 1], dhin[t] = bt->dh[bt->nl - 1];
    } else {
        struct cgc *L = &m->lv[m->nlevels - 1];
        for (int t = 0; t < T; t++) hin[t] = L->out[t], dhin[t] = L->dout[t];
    }
    for (int t = 0; t < T; t++) {
        struct mlp *n = &m->towers[t];
        float *dz = n->dh[n->nl - 1];
        for (int i = 0; i < B; i++) dz[i] = m->dlogits[(size_t)i * T + t];
        mlp_backward(m, n, hin[t], dhin[t], n->dims[0], m->nlevels == 0 && t > 0 ? 1.0f : 0.0f, 0, B);
    }
    if (m->nlevels == 0) {
        mlp_backward(m, &m->bottom, E->x, E->dx, grad_cols(m, E), 0.0f, 0, B);
        return;
    }
    int ecols = grad_cols(m, E);
    /* level 0's fused product writes the embeddings' gradient first, after
     * the experts; without it the experts and gates add into zeros */
    if (!m->lv[0].fused) memset(E->dx, 0, (size_t)B * E->din * sizeof(float));
    for (int l = m->nlevels - 1; l >= 0; l--) {
        struct cgc *L = &m->lv[l];
        int ne = T * L->nt + L->ns;
        /* this level's inputs and where their gradients go */
        const float *tin[CONFIG_MAX_TASKS], *sin;
        float *dtin[CONFIG_MAX_TASKS], *dsin;
        int dcols = l == 0 ? ecols : m->lv[l - 1].H;
        if (l == 0) {
            for (int t = 0; t < T; t++) tin[t] = E->x, dtin[t] = E->dx;
            sin = E->x;
            dsin = E->dx;
        } else {
            struct cgc *P = &m->lv[l - 1];
            for (int t = 0; t < T; t++) {
                tin[t] = P->out[t];
                dtin[t] = P->dout[t];
                memset(dtin[t], 0, (size_t)B * P->H * sizeof(float));
            }
            sin = P->sout;
            dsin = P->dsout;
            memset(dsin, 0, (size_t)B * P->H * sizeof(float));
        }
        level_mix_backward(m, L, B);
        /* a fused level's dh0 is the experts' input gradients, and only its
         * ReLU backward and products read it: the experts write it as its
         * bf16 copy (mlp_backward), a trip of its floats through memory fewer */
        if (L->fused && m->cfg->dropout <= 0 && L->ex[0].nl > L->ex[0].ext0 &&
            nn_gemm_bf16_dims(B, E->din, L->ex[0].ld0))
            (void)nn_gemm_bf16_slot(L->dh0, B, L->ex[0].ld0, L->ex[0].ld0, 1);
        for (int k = 0; k < ne; k++) {
            int own = k < T * L->nt ? k / L->nt : -1;
            struct mlp *e = &L->ex[k];
            mlp_backward(m, e, own >= 0 ? tin[own] : sin, own >= 0 ? dtin[own] : dsin, dcols, 1.0f,
                         relu_folded(m, e), B);
        }
        if (L->fused) level_fused_backward(m, L, E->x, E->dx, ecols, 0.0f, E->din, B);
        for (int t = 0; t < T; t++) gate_linear_backward(m, &L->tg[t], tin[t], dtin[t], dcols, B);
        if (L->has_sgate) gate_linear_backward(m, &L->sg, sin, dsin, dcols, B);
    }
}

/* ---- losses ---- */

/* Mean loss per task into loss[t]; dlogits filled. Uncertainty weighting
 * (Kendall et al. 2018): total = sum_t w_t (exp(-s_t) L_t + s_t) with a
 * learned s_t per task. */
static void losses(struct model *m, const struct train_ctx *ctx, double *loss, int B)
{
    const struct pt_config *c = m->cfg;
    const struct batch *b = &m->bt;
    int T = m->ntasks;
    memset(m->dlogits, 0, (size_t)B * T * sizeof(float));
    float *lv = m->logvar >= 0 ? m->w + m->p[m->logvar].off : NULL;
    float *dlv = m->logvar >= 0 ? m->g + m->p[m->logvar].off : NULL;
    for (int t = 0; t < T; t++) {
        const struct task_cfg *tc = &c->tasks[t];
        loss[t] = NAN;
        if (ctx->active && !ctx->active[t]) continue;
        /* logits, their gradients and labels are all read at stride T */
        const float *z = m->logits + t, *y = b->y + t;
        float *dz = m->dlogits + t, *ys = m->ycol + t;
        int count = 0, esmm = m->kind == MODEL_ESMM && t == 1;
        double sum;
        if (esmm) {
            /* CTCVR = pCTR * pCVR against click AND conversion, on every exposure */
            for (int i = 0; i < B; i++) {
                float y0 = b->y[(size_t)i * T], y1 = b->y[(size_t)i * T + 1];
                ys[(size_t)i * T] = isnan(y0) || (y0 > 0.5f && isnan(y1)) ? NAN : (y0 > 0.5f && y1 > 0.5f) ? 1.0f : 0.0f;
            }
            sum = nn_ctcvr_forward(NULL, m->logits, z, ys, B, T, &count);
        } else if (tc->type == TASK_BINARY) {
            sum = nn_bce_forward(NULL, z, y, B, T, &count);
        } else {
            sum = nn_mse_forward(z, y, B, T, &count);
        }
        if (!count) continue;
        loss[t] = sum / count;
        float scale = tc->weight / (float)count;
        if (lv) {
            float e = expf(-lv[t]);
            dlv[t] += tc->weight * (1.0f - e * (float)loss[t]);
            scale *= e;
        }
        if (esmm) {
            nn_ctcvr_backward(m->dlogits, dz, m->logits, z, ys, B, T, scale);
        } else if (tc->type == TASK_REGRESSION) {
            nn_mse_backward(dz, z, y, B, T, scale);
        } else if (ctx->distill > 0) {
            /* (1 - a) * hard labels + a * the teacher's probabilities, on the
             * rows that have a hard label */
            float a = ctx->distill;
            for (int i = 0; i < B; i++)
                ys[(size_t)i * T] = isnan(y[(size_t)i * T]) ? NAN : b->soft[(size_t)i * T + t];
            nn_bce_backward(dz, z, y, B, T, scale * (1.0f - a));
            nn_bce_backward(dz, z, ys, B, T, scale * a);
        } else {
            nn_bce_backward(dz, z, y, B, T, scale);
        }
    }
}

/* ---- optimiser ---- */

/* The embedding tables' compact gradients from dx, one slice per table
 * that trains. */
static int embed_grad(struct model *m, struct embed *e, int B)
{
    const struct schema *s = m->schema;
    const struct batch *b = &m->bt;
    int D = e->din, col = 0;
    for (int j = 0; j < s->ncat + s->nmulti; j++, col += e->edim[j - 1]) {
        int dim = e->edim[j], k = j - s->ncat;
        const struct param *p = &m->p[j < s->ncat ? e->emb[j] : e->memb[k]];
        const int32_t *ids = j < s->ncat ? b->cat[j] : b->mids[k];
        int n = j < s->ncat ? B : b->moff[k][B];
        if (p->frozen) continue;
        size_t id0 = m->cid_used, g0 = m->cg_used;
        if (pt_grow((void **)&m->cs, &m->cs_cap, (size_t)m->ncs + 1, sizeof *m->cs) ||
            pt_grow((void **)&m->crow, &m->cid_cap, id0 + (size_t)n, sizeof *m->crow) ||
            pt_grow((void **)&m->cinv, &m->cinv_cap, id0 + (size_t)n, sizeof *m->cinv) ||
            pt_grow((void **)&m->ckeys, &m->ck_cap, 2 * (size_t)n, sizeof *m->ckeys) ||
            pt_grow((void **)&m->cg, &m->cg_cap, g0 + (size_t)n * (size_t)dim, sizeof *m->cg))
            return PT_ENOMEM;
        int nr = nn_unique_rows_inv(m->crow + id0, m->cinv + id0, ids, n, m->ckeys);
        float *g = m->cg + g0;
        memset(g, 0, (size_t)nr * (size_t)dim * sizeof *g);
        if (j < s->ncat)
            nn_embedding_backward(g, e->dx + col, D, m->cinv + id0, B, dim);
        else
            nn_embedding_bag_backward(g, e->dx + col, D, b->moff[k], m->cinv + id0, B, dim, multi_pool_mean(s, k));
        m->cs[m->ncs++] = (struct cslice){nr, (int)(p - m->p), id0, g0};
        m->cid_used += (size_t)n;
        m->cg_used += (size_t)nr * (size_t)dim;
    }
    return PT_OK;
}

static int embed_active(const struct model *m, const struct train_ctx *ctx, int e)
{
    return !ctx->active || !m->independent || ctx->active[e];
}

/* Forward, losses, backward: dense gradients into g, embedding ones into
 * the compact slices. */
static int grad(struct model *m, const struct train_ctx *ctx, double *loss)
{
    int B = m->bt.B, rc;
    forward(m, B, 1);
    losses(m, ctx, loss, B);
    backward(m, ctx->active, B);
    m->ncs = 0, m->cid_used = m->cg_used = 0;
    for (int e = 0; e < m->nembeds; e++)
        if (embed_active(m, ctx, e) && (rc = embed_grad(m, &m->E[e], B))) return rc;
    return PT_OK;
}

int model_grad(struct model *m, const struct train_ctx *ctx, double *loss)
{
    int rc = grad(m, ctx, loss);
    if (rc) return rc;
    for (int c = 0; c < m->ncs; c++) {
        const struct cslice *cs = &m->cs[c];
        const struct param *p = &m->p[cs->param];
        for (int k = 0; k < cs->nr; k++) {
            float *dst = m->g + p->off + (size_t)m->crow[cs->id + (size_t)k] * (size_t)p->cols;
            const float *src = m->cg + cs->g + (size_t)k * (size_t)p->cols;
            for (int d = 0; d < p->cols; d++) dst[d] += src[d];
        }
    }
    return PT_OK;
}

int model_train_step(struct model *m, const struct train_ctx *ctx, double *loss)
{
    struct optim *o = ctx->opt;
    optim_begin_step(o);
    int rc = grad(m, ctx, loss);
    if (rc) return rc;
    for (int c = 0; c < m->ncs; c++) {
        const struct cslice *cs = &m->cs[c];
        const struct param *p = &m->p[cs->param];
        optim_update_rows(o, m->w + p->off, m->cg + cs->g, m->m + p->off, m->v + p->off, m->crow + cs->id, cs->nr,
                          p->cols, 1);
    }
    for (int i = 0; i < m->nparams; i++) {
        const struct param *p = &m->p[i];
        if (p->sparse) continue;
        size_t n = (size_t)(p->rows * p->cols);
        if (p->frozen || (ctx->active && p->owner >= 0 && !ctx->active[p->owner])) {
            memset(m->g + p->off, 0, n * sizeof(float));
            continue;
        }
        optim_update_dense(o, m->w + p->off, m->g + p->off, m->m + p->off, m->v + p->off, n);
    }
    return PT_OK;
}

/* ---- prediction ---- */

void model_predict_batch(struct model *m, float *p)
{
    int B = m->bt.B, T = m->ntasks, O = m->nout;
    forward(m, B, 0);
    for (int i = 0; i < B; i++) {
        for (int t = 0; t < T; t++) {
            float z = m->logits[(size_t)i * T + t];
            p[(size_t)i * O + t] = m->cfg->tasks[t].type == TASK_BINARY ? 1.0f / (1.0f + expf(-z)) : z;
        }
        if (m->kind == MODEL_ESMM) p[(size_t)i * O + 2] = p[(size_t)i * O] * p[(size_t)i * O + 1];
    }
}

int model_predict_dataset(struct model *m, const struct dataset *d, float *p)
{
    /* the buffers training reserved when they are big enough: growing them
     * would allocate (and fault in) every activation buffer again */
    int bs = m->bmax >= 1024 ? m->bmax : 4096;
    int rc = model_reserve(m, bs);
    if (rc) return rc;
    int64_t *idx = pt_malloc((size_t)bs * sizeof *idx);
    if (!idx) return pt_error(PT_ENOMEM, "out of memory");
    for (int64_t s = 0; s < d->n; s += bs) {
        int B = (int)(d->n - s < bs ? d->n - s : bs);
        for (int i = 0; i < B; i++) idx[i] = s + i;
        if ((rc = model_gather(m, d, NULL, idx, B))) break;
        model_predict_batch(m, p + s * m->nout);
    }
    pt_free(idx);
    return rc;
}

const char *model_output_name(const struct model *m, int j)
{
    if (j < m->ntasks) return m->cfg->tasks[j].name;
    return "ctcvr";
}

float model_output_label(const struct model *m, const struct dataset *d, int64_t i, int j)
{
    int T = m->ntasks;
    const float *y = d->y + i * T;
    if (m->kind != MODEL_ESMM || j == 0) return y[j];
    float click = y[0];
    if (isnan(click)) return NAN;
    if (j == 1) return click > 0.5f ? y[1] : NAN; /* CVR on clicked rows */
    if (click < 0.5f) return 0.0f;                 /* CTCVR over all exposures */
    return isnan(y[1]) ? NAN : (y[1] > 0.5f ? 1.0f : 0.0f);
}

int model_freeze(struct model *m, const char *groups)
{
    const char *s = groups;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        int g = -1;
        for (int k = 0; k < PG_COUNT; k++)
            if (strlen(pgroup_names[k]) == n && !strncmp(s, pgroup_names[k], n)) g = k;
        if (g < 0)
            return pt_error(PT_EINVAL, "--freeze: unknown group '%.*s' (embeddings, experts, gates, towers, loss)",
                            (int)n, s);
        for (int i = 0; i < m->nparams; i++)
            if (m->p[i].group == g) m->p[i].frozen = 1;
        s += n;
        if (*s == ',') s++;
    }
    return PT_OK;
}
