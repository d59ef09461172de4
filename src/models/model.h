/* model.h: the internal model object behind pt_model.
 *
 * Single-task models: one independent network ("tower") per task, each with
 * its own embedding tables, trained side by side on the same batches:
 *   lr:  embeddings of width 1 + numeric inputs → one linear unit
 *        (logistic regression on one-hot features);
 *   mlp: embeddings (dim per feature) + numeric inputs → [Linear → ReLU →
 *        dropout] per hidden width → Linear → 1 logit.
 * All parameters live in one arena `w`; gradients `g` and optimiser moments
 * `m`, `v` mirror it, so update, checkpoint and save are loops over it.
 *
 * Dims: B batch rows, D input width of a tower, T tasks. */
#ifndef PT_MODEL_H
#define PT_MODEL_H

#include <stdint.h>

#include "data/config.h"
#include "data/schema.h"
#include "util/util.h"
#include "train/optim.h"

struct param {
    char *name;
    size_t off;          /* into the arena */
    int64_t rows, cols;  /* 2-D shape; a vector has rows 1 */
    int sparse;          /* embedding table: row-sparse updates */
};

struct tower {
    int task;
    int *emb;            /* param index per cat slot */
    int *memb;           /* param index per multi slot */
    int *edim;           /* width of each cat slot's embedding, then each multi slot's */
    int din;             /* input width */
    int nlayers;         /* linear layers, the last gives the logit */
    int *dims;           /* [nlayers + 1] widths, dims[0] = din, dims[nlayers] = 1 */
    int *W, *b;          /* param indices per layer */
    int p_first, p_end;  /* this tower's params are [p_first, p_end) */
};

struct batch {
    int B;
    int32_t **cat;       /* [ncat][B] */
    int32_t **moff;      /* [nmulti][B + 1] */
    int32_t **mids;      /* [nmulti][...] */
    int64_t *mcap;
    float **num;         /* [nnum][B] */
    float *y;            /* [B, T] */
};

struct model {
    const struct pt_config *cfg;   /* owned when owns_cfg */
    int owns_cfg;
    struct schema *schema;
    int ntasks;
    int nparams;
    struct param *p;
    size_t total;                   /* floats in the arena */
    float *w, *g, *m, *v;           /* g, m, v NULL until training */
    int ntowers;
    struct tower *t;
    /* activations, sized for bmax rows; towers run one after another */
    int bmax;
    float *x, *dx, *ycol;
    float **h, **dh, **mask;        /* per layer output, [bmax, dims[l+1]] */
    int maxlayers, maxwidth;
    int32_t *uniq, *scratch;        /* nn_unique_rows buffers */
    size_t uniq_cap;
    struct batch bt;
    struct rng drop_rng;
    char *train_report;             /* JSON text of the last training run */
    char *metrics_json;             /* test/valid metrics stored in the file */
};

/* Builds the networks for a fitted schema and allocates the parameter arena
 * (weights initialised from seed). */
int model_create(struct model **out, const struct pt_config *cfg, struct schema *schema,
                 uint64_t seed);
void model_destroy(struct model *m);

/* Gradient and optimiser arrays (zeroed). */
int model_alloc_train(struct model *m);

/* Activation buffers for batches of up to bmax rows. */
int model_reserve(struct model *m, int bmax);

/* Copies rows idx[0..B) of d into the model's batch buffers. */
int model_gather(struct model *m, const struct dataset *d, const int64_t *idx, int B);

/* One training step on the gathered batch: forward, loss, backward and
 * optimiser update for every tower whose active[t] is set (NULL: all).
 * loss[t] receives the batch's mean loss per task (NaN if no label). */
int model_train_step(struct model *m, struct optim *o, const int *active, double *loss);

/* Scores the gathered batch: p[B, T] probabilities (binary) or values. */
void model_predict_batch(struct model *m, float *p);

/* Scores rows [0, d->n) of a data set into p[n, T]. */
int model_predict_dataset(struct model *m, const struct dataset *d, float *p);

/* Parameter count of the whole model. */
static inline size_t model_param_count(const struct model *m) { return m->total; }

#endif
