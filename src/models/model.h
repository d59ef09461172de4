/* model.h: the internal model object behind pt_model.
 *
 * Kinds (config model.kind):
 *   lr, mlp          single-task: one independent network per task, each with
 *                    its own embedding tables (the single-task baseline);
 *                    lr = width-1 embeddings + numerics → one linear unit,
 *                    mlp = embeddings + numerics → ReLU layers → 1 logit.
 *   shared_bottom    shared embeddings → bottom MLP → one tower per task.
 *   esmm             shared_bottom with two tasks (CTR, CVR) trained on CTR
 *                    and CTCVR = pCTR × pCVR over all exposures.
 *   mmoe, ple        shared embeddings → CGC levels of MLP experts mixed by
 *                    one softmax gate per task → one tower per task. MMoE is
 *                    one level of shared experts only; PLE adds task-specific
 *                    experts and, with two levels, a shared gate between them.
 * Every MLP here applies ReLU (then dropout) after each layer, except a
 * tower's final 1-unit layer, as the PyTorch reference does.
 *
 * All parameters live in one arena `w`; gradients `g` and optimiser moments
 * `m`, `v` mirror it, so update, checkpoint and save are loops over it.
 * Dims: B batch rows, D input width, H expert width, K experts in a gate,
 * T tasks. */
#ifndef PT_MODEL_H
#define PT_MODEL_H

#include <stdint.h>

#include "data/config.h"
#include "data/schema.h"
#include "train/optim.h"
#include "util/util.h"

/* Parameter groups, for --freeze. */
enum pgroup { PG_EMBEDDINGS = 0, PG_EXPERTS = 1, PG_GATES = 2, PG_TOWERS = 3, PG_LOSS = 4, PG_COUNT };
extern const char *const pgroup_names[PG_COUNT];
enum pinit { INIT_HE = 0, INIT_XAVIER = 1, INIT_ZERO = 2, INIT_NORMAL = 3 };

struct param {
    char *name;
    size_t off;          /* into the arena */
    int64_t rows, cols;  /* 2-D shape; a vector has rows 1 */
    int sparse;          /* embedding table: row-sparse updates */
    int group;           /* enum pgroup */
    int frozen;          /* not updated by the optimiser */
    int owner;           /* task index for single-task models' params, else -1 */
    int init;            /* enum pinit */
};

/* A stack of linear layers; activations sized for bmax rows. */
struct mlp {
    int nl;
    int *dims;           /* [nl + 1] */
    int *W, *b;          /* param indices per layer */
    int relu_last;       /* ReLU after the last layer too */
    int ext0;            /* layer 0 is computed by the level, fused with its
                            siblings': h/dh/mask[0] are views into the
                            level's buffers at row stride ld0 */
    int ld0;
    float **h, **dh, **mask;
};

/* Embedding lookup + numeric columns → x [B, din]. */
struct embed {
    int *emb;            /* param per cat slot */
    int *memb;           /* param per multi slot */
    int *edim;           /* widths: cat slots, then multi slots */
    int din;
    float *x, *dx;
};

/* Softmax gate over K experts from an input of width D. */
struct gate {
    int W, b, K, D;
    int *experts;        /* indices into the level's expert list */
    unsigned char *first; /* [K] the first gate in backward to mix that expert */
    float *p, *dp, *dz;  /* [bmax, K] */
    double *psum;        /* [K] running sum of p (inspect --gates) */
};

/* One CGC level: T*nt task-specific experts (task t owns [t*nt, (t+1)*nt))
 * then ns shared ones; a gate per task over its own and the shared experts;
 * a shared gate over all experts when another level follows. */
struct cgc {
    int nt, ns, H, has_sgate;
    struct mlp *ex;      /* [T*nt + ns] */
    struct gate *tg;     /* [T] */
    struct gate sg;
    float **out, **dout; /* [T] task outputs [bmax, H] */
    float *sout, *dsout; /* shared output */
    /* level 0: every expert reads the same input, so their first layers run
     * as one product: weights [ne*H1, D] (contiguous in the arena), outputs
     * [bmax, ne*H1] */
    int fused, W0, b0, H1;
    float *h0, *dh0, *mask0;
};

struct batch {
    int B;
    int ncat, nmulti, nnum;  /* slots the arrays below were made for */
    int32_t **cat;       /* [ncat][B] */
    int32_t **moff;      /* [nmulti][B + 1] */
    int32_t **mids;      /* [nmulti][...] */
    int64_t *mcap;
    float **num;         /* [nnum][B] */
    float *y;            /* [B, T] */
    float *soft;         /* [B, T] teacher predictions when distilling, else NULL */
};

struct model {
    uint64_t uid;                   /* unique among the models of this process, never reused
                                       (a thread's cached scoring view is keyed on it) */
    const struct pt_config *cfg;   /* owned when owns_cfg */
    int owns_cfg;
    struct schema *schema;
    enum model_kind kind;
    int ntasks;
    int nout;                       /* output columns: T, or 3 for esmm (ctr, cvr, ctcvr) */
    int nparams, pcap;
    struct param *p;
    size_t total;                   /* floats in the arena */
    float *w, *g, *m, *v;           /* g, m, v NULL until training */
    int independent;                /* single-task kinds: one network per task */
    int nembeds;
    struct embed *E;                /* [T] when independent, else [1] */
    struct mlp *nets;               /* independent: [T] whole networks */
    struct mlp bottom;              /* shared_bottom, esmm */
    int nlevels;
    struct cgc *lv;                 /* mmoe, ple */
    struct mlp *towers;             /* [T] multi-task heads */
    int logvar;                     /* uncertainty weighting param, or -1 */
    float *logits, *dlogits, *ycol; /* [bmax, T] */
    int bmax;
    /* The batch's embedding gradients, compact: per table touched, its
     * distinct rows (crow), each id's row among them (cinv) and one gradient
     * row per distinct row (cg), sliced by cs in table order. A full-size
     * mirror would cost a cache miss per id to add into and another per row
     * to read back, on tables of millions of rows. */
    struct cslice { int nr, param; size_t id, g; } *cs;
    int ncs;
    int32_t *crow, *cinv;
    uint64_t *ckeys;
    float *cg;
    size_t cs_cap, cid_cap, cinv_cap, ck_cap, cg_cap, cid_used, cg_used;
    float *wt;                      /* a weight gradient transposed (nn_linear_backward_wt) */
    size_t wt_cap;
    struct batch bt;
    /* pk_of's single-valued cells and labels row by row, pk_w 32-bit
     * words a row (model_pack), for the shuffled gathers of training */
    uint32_t *pk;
    const struct dataset *pk_of;
    int pk_w;
    struct rng drop_rng;
    int gate_stats;                 /* accumulate gate means in predict */
    int64_t gate_rows;
    struct optim online;            /* pt_model_learn_json's optimiser (its step count) */
    int online_ready;
    int64_t online_rows, online_n;  /* rows it learned since the load; (row, task) losses summed */
    double online_loss;
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
/* Frees what model_reserve allocated (activations, the batch), reading
 * nothing else: also right for a scoring view (predict_json.c) whose model
 * is gone. */
void model_free_acts(struct model *m);

/* Keeps a row-major copy of d's categorical ids, numeric values and labels
 * (d NULL: frees it), which model_gather reads instead of d's columns: a
 * shuffled batch then costs a cache miss a row instead of one a column.
 * d must not change while packed. Out of memory leaves no copy (gathers
 * read the columns). Returns 1 when d's rows were packed. */
int model_pack(struct model *m, const struct dataset *d);
/* Copies rows idx[0..B) of d into the model's batch buffers (and teacher
 * predictions soft[n, T] when not NULL). */
int model_gather(struct model *m, const struct dataset *d, const float *soft, const int64_t *idx,
                 int B);

struct train_ctx {
    struct optim *opt;
    const int *active;   /* single-task: which tasks still train (NULL: all) */
    float distill;       /* weight of the teacher's soft labels (0: none) */
};

/* Forward, loss and backward on the gathered batch: adds every parameter's
 * gradient into m->g (embedding tables: the rows the batch used) without
 * updating anything; loss[t] as below. For gradient checks. */
int model_grad(struct model *m, const struct train_ctx *ctx, double *loss);

/* One training step on the gathered batch: forward, loss, backward and
 * optimiser update. loss[t] receives the batch's mean loss per task (NaN if
 * no label). */
int model_train_step(struct model *m, const struct train_ctx *ctx, double *loss);

/* Scores the gathered batch: p[B, nout] probabilities (binary) or values. */
void model_predict_batch(struct model *m, float *p);

/* Scores rows [0, d->n) of a data set into p[n, nout]. */
int model_predict_dataset(struct model *m, const struct dataset *d, float *p);

/* Name of output column j (a task name, or "ctcvr"). */
const char *model_output_name(const struct model *m, int j);

/* Labels of output column j for row i of d (ESMM: CVR only on clicked rows,
 * CTCVR = click AND conversion); NaN = missing. */
float model_output_label(const struct model *m, const struct dataset *d, int64_t i, int j);

const char *model_kind_name(enum model_kind k);

/* Marks params of the named groups ("embeddings,experts,...") frozen. */
int model_freeze(struct model *m, const char *groups);

#endif
