/* loop.c: the training loop behind pt_train: read and encode the data,
 * build the model, run seeded epochs of shuffled mini-batches, evaluate on
 * the valid set after each epoch with early stopping per task, checkpoint
 * atomically, restore the best weights and evaluate on the test set.
 *
 * Reproducibility: the shuffle and dropout streams are re-seeded from
 * (seed, epoch) at the start of every epoch, so a run resumed from an epoch
 * checkpoint continues exactly as the uninterrupted run would have. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/evaluate.h"
#include "models/model.h"
#include "nn/nn.h"
#include "store/model_io.h"
#include "util/util.h"

pt_train_opts pt_train_opts_default(void)
{
    pt_train_opts o;
    memset(&o, 0, sizeof o);
    o.max_bad_rows = -1;
    return o;
}

struct run {
    const struct pt_config *cfg;
    pt_train_opts o;
    uint64_t seed;
    struct schema *schema;
    struct dataset *ds[3];      /* train, valid, test */
    float *soft;                /* teacher predictions on train rows [n, T], or NULL */
    struct model *m;
    struct optim opt;
    int units;                  /* early-stopping units: T independent networks, or 1 model */
    float *best;                /* best weights per tower, arena-shaped; NULL without a
                                 * validation set, where the last epoch is the best */
    int *active, *bad_epochs, *best_epoch;
    double *best_score;
    char *watch_task, *watch_metric;
    int epoch0;                 /* first epoch to run (resume) */
    double train_s, load_s;
    int64_t samples;
};

static int load_data(struct run *r)
{
    const struct pt_config *c = r->cfg;
    int64_t mbr = r->o.max_bad_rows >= 0 ? r->o.max_bad_rows : c->max_bad_rows;
    int rc = schema_create(&r->schema, c);
    for (int k = 0; k < 3 && !rc; k++) rc = dataset_create(&r->ds[k], r->schema);
    if (rc) return rc;
    struct read_opts ro = {.flags = READ_FIT | READ_LABELS, .max_bad_rows = mbr,
                           .valid_fraction = c->valid_fraction, .test_fraction = c->test_fraction,
                           .split_seed = c->split_seed};
    if ((rc = data_load(r->schema, c->train, &ro, r->ds))) return rc;
    if ((rc = schema_finalize(r->schema, r->ds, 3))) return rc;
    for (int i = 0; i < r->schema->nfeat; i++)
        if (r->schema->f[i].imputed)
            pt_log(PT_LOG_INFO, "%s: column '%s': %lld values imputed", c->train, r->schema->f[i].cfg->name,
                   (long long)r->schema->f[i].imputed);
    const char *files[3] = {NULL, c->valid, c->test};
    for (int k = 1; k < 3; k++) {
        if (!files[k]) continue;
        struct read_opts fo = {.flags = READ_LABELS, .max_bad_rows = mbr};
        struct dataset *dst[3] = {r->ds[k], NULL, NULL};
        if ((rc = data_load(r->schema, files[k], &fo, dst))) return rc;
    }
    if (r->ds[0]->bad_rows)
        pt_log(PT_LOG_WARN, "%s: skipped %lld bad rows", c->train, (long long)r->ds[0]->bad_rows);
    return PT_OK;
}

/* Early stopping watches "valid.<task|mean>.<metric>"; single-task towers
 * are independent models, so each watches its own task's value. */
static int parse_watch(struct run *r)
{
    const struct pt_config *c = r->cfg;
    const char *w = c->es_watch ? c->es_watch : NULL;
    if (!w) {
        r->watch_task = pt_strdup("mean");
        r->watch_metric = pt_strdup(c->tasks[0].type == TASK_BINARY ? "auc" : "rmse");
    } else {
        const char *d1 = strchr(w, '.'), *d2 = strrchr(w, '.');
        r->watch_task = pt_strndup(d1 + 1, (size_t)(d2 - d1 - 1));
        r->watch_metric = pt_strdup(d2 + 1);
    }
    return (r->watch_task && r->watch_metric) ? PT_OK : pt_error(PT_ENOMEM, "out of memory");
}

/* Copies the params of early-stopping unit u (task u's own network for
 * single-task kinds, the whole model otherwise). */
static void copy_unit(const struct model *m, int u, float *dst, const float *src)
{
    for (int i = 0; i < m->nparams; i++) {
        const struct param *p = &m->p[i];
        if (m->independent && p->owner != u) continue;
        memcpy(dst + p->off, src + p->off, (size_t)(p->rows * p->cols) * sizeof(float));
    }
}

static json_t *state_json(const struct run *r, int epoch)
{
    int T = r->units;
    json_t *s = json_object(), *a = json_array(), *be = json_array(), *bs = json_array(), *bb = json_array();
    json_object_set_new(s, "epoch", json_integer(epoch));
    json_object_set_new(s, "step", json_integer(r->opt.step));
    json_object_set_new(s, "seed", json_integer((json_int_t)r->seed));
    json_object_set_new(s, "train_seconds", json_real(r->train_s));
    json_object_set_new(s, "samples", json_integer(r->samples));
    for (int t = 0; t < T; t++) {
        json_array_append_new(a, json_integer(r->active[t]));
        json_array_append_new(be, json_integer(r->bad_epochs[t]));
        json_array_append_new(bs, isfinite(r->best_score[t]) ? json_real(r->best_score[t]) : json_null());
        json_array_append_new(bb, json_integer(r->best_epoch[t]));
    }
    json_object_set_new(s, "active", a);
    json_object_set_new(s, "bad_epochs", be);
    json_object_set_new(s, "best_score", bs);
    json_object_set_new(s, "best_epoch", bb);
    return s;
}

static int save_checkpoint(struct run *r, int epoch)
{
    if (!r->o.checkpoint) return PT_OK;
    json_t *st = state_json(r, epoch);
    if (!st) return pt_error(PT_ENOMEM, "out of memory");
    struct checkpoint ck = {.best = r->best, .state = st};
    int rc = model_write(r->m, r->o.checkpoint, &ck);
    json_decref(st);
    return rc;
}

/* Continues from the checkpoint file when it exists and was made by the same
 * config; otherwise the run starts afresh. */
static int try_resume(struct run *r)
{
    if (!r->o.resume || !r->o.checkpoint || access(r->o.checkpoint, F_OK) != 0) return PT_OK;
    struct model *cm = NULL;
    struct mf_file *f = NULL;
    int rc = model_read(r->o.checkpoint, &cm, &f);
    if (rc) return rc;
    json_t *meta = json_loads(f->meta_json, 0, NULL);
    json_t *st = json_object_get(meta, "checkpoint");
    const char *yaml = json_string_value(json_object_get(meta, "config_yaml"));
    int T = r->units;
    if (!st || !yaml || strcmp(yaml, r->cfg->yaml) ||
        json_integer_value(json_object_get(st, "seed")) != (json_int_t)r->seed) {
        rc = pt_error_at(PT_EINVAL, r->o.checkpoint, 0,
                         "checkpoint was made with another config or seed; remove it or drop --resume");
        goto done;
    }
    if (cm->total != r->m->total) {
        rc = pt_error_at(PT_ESCHEMA, r->o.checkpoint, 0, "checkpoint does not match the model built from the data");
        goto done;
    }
    if ((rc = model_copy_tensors(r->m, f, "", r->m->w, r->o.checkpoint)) ||
        (rc = model_copy_tensors(r->m, f, "opt.m.", r->m->m, r->o.checkpoint)) ||
        (rc = model_copy_tensors(r->m, f, "opt.v.", r->m->v, r->o.checkpoint)) ||
        (r->best && (rc = model_copy_tensors(r->m, f, "best.", r->best, r->o.checkpoint))))
        goto done;
    r->epoch0 = (int)json_integer_value(json_object_get(st, "epoch"));
    r->opt.step = json_integer_value(json_object_get(st, "step"));
    r->train_s = json_number_value(json_object_get(st, "train_seconds"));
    r->samples = json_integer_value(json_object_get(st, "samples"));
    for (int t = 0; t < T; t++) {
        json_t *bs = json_array_get(json_object_get(st, "best_score"), (size_t)t);
        r->active[t] = (int)json_integer_value(json_array_get(json_object_get(st, "active"), (size_t)t));
        r->bad_epochs[t] = (int)json_integer_value(json_array_get(json_object_get(st, "bad_epochs"), (size_t)t));
        r->best_epoch[t] = (int)json_integer_value(json_array_get(json_object_get(st, "best_epoch"), (size_t)t));
        r->best_score[t] = json_is_number(bs) ? json_number_value(bs) : NAN;
    }
    pt_log(PT_LOG_INFO, "resumed from %s after epoch %d", r->o.checkpoint, r->epoch0);
done:
    json_decref(meta);
    modelfile_free(f);
    model_destroy(cm);
    return rc;
}

/* Schema feature of this name, or NULL. */
static const struct feat_state *feature_named(const struct schema *s, const char *name)
{
    for (int i = 0; i < s->nfeat; i++)
        if (!strcmp(s->f[i].cfg->name, name)) return &s->f[i];
    return NULL;
}

/* Copies an embedding table row by row through the two vocabularies: the
 * value a row stands for decides where it comes from, since ids are given in
 * first-seen order and differ between data sets. Rows of values the source
 * never saw keep their initial values. Returns the rows copied. */
static int64_t copy_table_by_value(float *dst, const struct feat_state *fd, const float *src,
                                   const struct feat_state *fs, int64_t D)
{
    int64_t n = 0;
    memcpy(dst, src, (size_t)D * sizeof(float)); /* the unknown bucket */
    for (int32_t k = 0; k < fd->vocab.n; k++) {
        const char *v = vocab_str(&fd->vocab, k);
        int32_t j = vocab_find(&fs->vocab, v, strlen(v));
        if (j < 0) continue;
        memcpy(dst + (size_t)(k + 1) * (size_t)D, src + (size_t)(j + 1) * (size_t)D, (size_t)D * sizeof(float));
        n++;
    }
    return n;
}

/* --init-from: every tensor of the file whose name and shape match one of
 * the model's is copied over its initial value (transfer learning: the
 * shared embeddings and experts of a trained model, and the towers of the
 * tasks it already had). Embedding tables of vocabulary features are matched
 * by value instead, so a model trained on last month's data warm-starts one
 * on this month's. */
static int warm_start(struct run *r)
{
    struct model *src = NULL;
    struct mf_file *f = NULL;
    int rc = model_read(r->o.init_from, &src, &f);
    if (rc) return rc;
    int copied = 0;
    for (int i = 0; i < r->m->nparams; i++) {
        const struct param *p = &r->m->p[i];
        const struct mf_tensor *t = modelfile_find(f, p->name);
        if (!t || t->dtype != MF_F32) continue;
        int64_t rows = t->ndim == 1 ? 1 : t->shape[0], cols = t->ndim == 1 ? t->shape[0] : t->shape[1];
        const char *fe = p->sparse ? strstr(p->name, "emb.") : NULL;
        const struct feat_state *fd = fe ? feature_named(r->m->schema, fe + 4) : NULL;
        const struct feat_state *fs = fe ? feature_named(src->schema, fe + 4) : NULL;
        int by_value = fd && fs && t->ndim == 2 && cols == p->cols && fd->cfg->kind != FEAT_NUMERIC &&
                       fs->cfg->kind != FEAT_NUMERIC && fd->cfg->hash_buckets <= 0 && fs->cfg->hash_buckets <= 0;
        if (by_value) {
            int64_t n = copy_table_by_value(r->m->w + p->off, fd, t->data, fs, cols);
            pt_log(PT_LOG_DEBUG, "%s: %lld of %d values found", p->name, (long long)n, fd->vocab.n);
        } else if (t->ndim > 2 || rows != p->rows || cols != p->cols) {
            pt_log(PT_LOG_WARN, "%s: tensor '%s' has another shape; left at its initial value", r->o.init_from,
                   p->name);
            continue;
        } else {
            memcpy(r->m->w + p->off, t->data, (size_t)(rows * cols) * sizeof(float));
        }
        copied++;
    }
    modelfile_free(f);
    model_destroy(src);
    if (!copied)
        return pt_error_at(PT_ESCHEMA, r->o.init_from, 0, "no tensor matches this model by name and shape");
    pt_log(PT_LOG_INFO, "warm start: %d of %d tensors from %s", copied, r->m->nparams, r->o.init_from);
    return PT_OK;
}

/* --teacher: the teacher scores the same training rows (read with its own
 * schema, routed by the same split), and its probability for each task of
 * the same name becomes that task's soft label. */
static int load_teacher(struct run *r)
{
    const struct pt_config *c = r->cfg;
    struct model *t = NULL;
    struct dataset *tds[3] = {NULL, NULL, NULL};
    float *tp = NULL;
    int T = c->ntasks;
    int rc = model_read(r->o.teacher, &t, NULL);
    if (rc) return rc;
    for (int k = 0; k < 3 && !rc; k++) rc = dataset_create(&tds[k], t->schema);
    if (rc) goto done;
    struct read_opts ro = {.flags = 0, .max_bad_rows = r->o.max_bad_rows >= 0 ? r->o.max_bad_rows : c->max_bad_rows,
                           .valid_fraction = c->valid_fraction, .test_fraction = c->test_fraction,
                           .split_seed = c->split_seed};
    if ((rc = data_load(t->schema, c->train, &ro, tds))) goto done;
    if (tds[0]->n != r->ds[0]->n) {
        rc = pt_error_at(PT_ESCHEMA, r->o.teacher, 0, "the teacher reads %lld training rows, the student %lld",
                         (long long)tds[0]->n, (long long)r->ds[0]->n);
        goto done;
    }
    size_t n = (size_t)tds[0]->n;
    tp = pt_malloc(n * (size_t)t->nout * sizeof *tp);
    r->soft = pt_malloc(n * (size_t)T * sizeof *r->soft);
    if (!tp || !r->soft) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = model_predict_dataset(t, tds[0], tp))) goto done;
    int matched = 0;
    for (int j = 0; j < T; j++) {
        int col = -1;
        for (int k = 0; k < t->nout; k++)
            if (!strcmp(model_output_name(t, k), c->tasks[j].name)) col = k;
        matched += col >= 0;
        for (size_t i = 0; i < n; i++) r->soft[i * (size_t)T + (size_t)j] = col >= 0 ? tp[i * (size_t)t->nout + (size_t)col] : NAN;
    }
    if (!matched) rc = pt_error_at(PT_ESCHEMA, r->o.teacher, 0, "the teacher has none of the student's tasks");
    else pt_log(PT_LOG_INFO, "distilling %d task(s) from %s with weight %g", matched, r->o.teacher, (double)c->distill);
done:
    pt_free(tp);
    for (int k = 0; k < 3; k++) dataset_free(tds[k]);
    model_destroy(t);
    if (rc) {
        pt_free(r->soft);
        r->soft = NULL;
    }
    return rc;
}

static void progress(struct run *r, int epoch, int64_t done, int64_t total, double t0, double loss,
                     int end, const char *valid_json)
{
    if (!r->o.progress) return;
    double el = pt_now() - t0;
    double sps = el > 0 ? (double)done / el : 0;
    int64_t left = (int64_t)(r->cfg->epochs - epoch) * total + (total - done);
    pt_progress p = {.epoch = epoch, .epochs = r->cfg->epochs, .done = done, .total = total,
                     .samples_per_s = sps, .loss = loss, .eta_s = sps > 0 ? (double)left / sps : 0,
                     .end_of_epoch = end, .valid_json = valid_json};
    r->o.progress(&p, r->o.progress_user);
}

static int run_epochs(struct run *r)
{
    const struct pt_config *c = r->cfg;
    struct model *m = r->m;
    struct dataset *tr = r->ds[0], *va = r->ds[1];
    int T = c->ntasks, U = r->units, B = c->batch, rc = PT_OK;
    int64_t n = tr->n;
    int64_t *perm = pt_malloc((size_t)n * sizeof *perm);
    int32_t *perm32 = pt_malloc((size_t)n * sizeof *perm32);
    double *loss = pt_malloc((size_t)T * sizeof *loss), *lsum = pt_malloc((size_t)T * sizeof *lsum);
    float *pv = va->n ? pt_malloc((size_t)va->n * (size_t)m->nout * sizeof *pv) : NULL;
    int64_t *lcnt = pt_malloc((size_t)T * sizeof *lcnt);
    if (!perm || !perm32 || !loss || !lsum || !lcnt || (va->n && !pv)) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    struct train_ctx ctx = {.opt = &r->opt, .active = m->independent ? r->active : NULL,
                            .distill = r->soft ? c->distill : 0.0f};
    int higher = eval_higher_is_better(r->watch_metric);
    for (int epoch = r->epoch0; epoch < c->epochs; epoch++) {
        int any = 0;
        for (int u = 0; u < U; u++) any |= r->active[u];
        if (!any) break;
        struct rng sh;
        rng_seed(&sh, r->seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1);
        rng_seed(&m->drop_rng, r->seed ^ (0xD50Full + (uint64_t)epoch));
        for (int64_t i = 0; i < n; i++) perm32[i] = (int32_t)i;
        rng_shuffle_i32(&sh, perm32, (size_t)n);
        for (int64_t i = 0; i < n; i++) perm[i] = perm32[i];
        memset(lsum, 0, (size_t)T * sizeof *lsum);
        memset(lcnt, 0, (size_t)T * sizeof *lcnt);
        double t0 = pt_now(), last = t0;
        for (int64_t s = 0; s < n; s += B) {
            int bs = (int)(n - s < B ? n - s : B);
            if ((rc = model_gather(m, tr, r->soft, perm + s, bs))) goto done;
            /* train.precision: bf16 products in the step's GEMMs only (the
             * validation pass below and scoring stay float32) */
            enum nn_precision prev = nn_gemm_set_precision(c->bf16 ? NN_PREC_BF16 : NN_PREC_F32);
            rc = model_train_step(m, &ctx, loss);
            nn_gemm_set_precision(prev);
            if (rc) goto done;
            for (int t = 0; t < T; t++)
                if (isfinite(loss[t])) lsum[t] += loss[t] * bs, lcnt[t] += bs;
            double now = pt_now();
            if (now - last > 0.5) {
                double ml = 0;
                int k = 0;
                for (int t = 0; t < T; t++)
                    if (lcnt[t]) ml += lsum[t] / (double)lcnt[t], k++;
                progress(r, epoch + 1, s + bs, n, t0, k ? ml / k : NAN, 0, NULL);
                last = now;
            }
        }
        r->train_s += pt_now() - t0;
        r->samples += n;
        double ml = 0;
        int k = 0;
        for (int t = 0; t < T; t++)
            if (lcnt[t]) ml += lsum[t] / (double)lcnt[t], k++;
        char *vj = NULL;
        if (va->n) {
            json_t *tasks = NULL;
            if ((rc = model_predict_dataset(m, va, pv)) || (rc = eval_tasks(m, va, pv, 0.5, NULL, 0, 0, &tasks))) goto done;
            for (int u = 0; u < U; u++) {
                if (!r->active[u]) continue;
                /* an independent network watches its own task */
                const char *wt = m->independent ? c->tasks[u].name : r->watch_task;
                double v = eval_metric(tasks, c, wt, r->watch_metric);
                int better = isnan(r->best_score[u]) || (higher ? v > r->best_score[u] : v < r->best_score[u]);
                if (better && !isnan(v)) {
                    r->best_score[u] = v;
                    r->best_epoch[u] = epoch + 1;
                    r->bad_epochs[u] = 0;
                    copy_unit(m, u, r->best, m->w);
                } else if (++r->bad_epochs[u] >= c->es_patience) {
                    r->active[u] = 0;
                    pt_log(PT_LOG_INFO, "%s%s: early stop after epoch %d (best epoch %d)",
                           m->independent ? "task " : "", m->independent ? c->tasks[u].name : "model", epoch + 1,
                           r->best_epoch[u]);
                }
            }
            vj = json_dumps(tasks, JSON_COMPACT);
            json_decref(tasks);
        } else {
            for (int u = 0; u < U; u++) r->best_epoch[u] = epoch + 1;
        }
        progress(r, epoch + 1, n, n, t0, k ? ml / k : NAN, 1, vj);
        free(vj);
        if ((rc = save_checkpoint(r, epoch + 1))) goto done;
    }
done:
    pt_free(perm);
    pt_free(perm32);
    pt_free(loss);
    pt_free(lsum);
    pt_free(lcnt);
    pt_free(pv);
    return rc;
}

static int final_report(struct run *r)
{
    const struct pt_config *c = r->cfg;
    struct model *m = r->m;
    json_t *report = json_object(), *eval = NULL, *valid = NULL;
    int rc = PT_OK, T = c->ntasks;
    for (int k = 1; k < 3; k++) {
        struct dataset *d = r->ds[k];
        if (!d->n) continue;
        float *p = pt_malloc((size_t)d->n * (size_t)m->nout * sizeof *p);
        json_t *tasks = NULL;
        if (!p) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
        rc = model_predict_dataset(m, d, p);
        if (!rc) rc = eval_tasks(m, d, p, 0.5, NULL, 0, 0, &tasks);
        pt_free(p);
        if (rc) goto done;
        if (k == 1) valid = tasks;
        else eval = tasks;
    }
    json_t *tasks = eval ? eval : valid, *none = json_object();
    if (!tasks) tasks = none; /* no valid or test set: an empty tasks object */
    json_object_set(report, "tasks", tasks);
    json_object_set_new(report, "evaluated_on", json_string(eval ? "test" : valid ? "valid" : "none"));
    json_decref(none);
    if (valid) json_object_set(report, "valid", valid);
    json_object_set_new(report, "model", json_string(model_kind_name(c->model)));
    json_object_set_new(report, "params", json_integer((json_int_t)m->total));
    json_object_set_new(report, "train_rows", json_integer(r->ds[0]->n));
    json_object_set_new(report, "valid_rows", json_integer(r->ds[1]->n));
    json_object_set_new(report, "test_rows", json_integer(r->ds[2]->n));
    json_object_set_new(report, "bad_rows", json_integer(r->ds[0]->bad_rows + r->ds[1]->bad_rows + r->ds[2]->bad_rows));
    json_object_set_new(report, "load_seconds", json_real(r->load_s));
    json_object_set_new(report, "train_seconds", json_real(r->train_s));
    json_object_set_new(report, "train_samples_per_second", json_real(r->train_s > 0 ? (double)r->samples / r->train_s : 0));
    json_object_set_new(report, "threads", json_integer(pt_get_threads()));
    json_object_set_new(report, "gemm", json_string(nn_gemm_backend()));
    json_object_set_new(report, "precision", json_string(c->bf16 ? "bf16" : "f32"));
    if (m->independent) {
        json_t *be = json_object();
        for (int t = 0; t < T; t++) json_object_set_new(be, c->tasks[t].name, json_integer(r->best_epoch[t]));
        json_object_set_new(report, "best_epoch", be);
    } else {
        json_object_set_new(report, "best_epoch", json_integer(r->best_epoch[0]));
    }
    if (m->logvar >= 0) {
        json_t *lw = json_object();
        for (int t = 0; t < T; t++)
            json_object_set_new(lw, c->tasks[t].name, json_real(exp(-m->w[m->p[m->logvar].off + (size_t)t])));
        json_object_set_new(report, "uncertainty_weights", lw);
    }
    char *s1 = json_dumps(report, JSON_COMPACT), *s2 = json_dumps(tasks, JSON_COMPACT);
    m->train_report = s1 ? pt_strdup(s1) : NULL;
    m->metrics_json = s2 ? pt_strdup(s2) : NULL;
    free(s1);
    free(s2);
    if (!m->train_report || !m->metrics_json) rc = pt_error(PT_ENOMEM, "out of memory");
done:
    json_decref(report);
    json_decref(eval);
    json_decref(valid);
    return rc;
}

int pt_train(const pt_config *cfg, const pt_train_opts *opts, pt_model **out)
{
    struct run r;
    memset(&r, 0, sizeof r);
    r.o = opts ? *opts : pt_train_opts_default();
    *out = NULL;
    /* the model keeps its own copy of the config, so the caller may free theirs */
    struct pt_config *own = NULL;
    int rc = config_parse(cfg->yaml, strlen(cfg->yaml), cfg->path, &own);
    if (rc) return rc;
    cfg = own;
    r.cfg = cfg;
    r.seed = r.o.has_seed ? (uint64_t)r.o.seed : cfg->seed;
    pt_set_threads(r.o.threads > 0 ? r.o.threads : cfg->threads > 0 ? cfg->threads : 1);
    int T = cfg->ntasks;
    if (!T || !cfg->nfeats) {
        rc = pt_error_at(PT_ECONFIG, cfg->path, 0, "'%s' is missing: train needs tasks and features (a samples-only config is for build)",
                         T ? "features" : "tasks");
        goto done;
    }
    double t_load = pt_now();
    /* samples built from an event log: (re)built here unless up to date */
    if (cfg->built && (rc = pt_build_samples(cfg, NULL, NULL, NULL))) goto done;
    rc = load_data(&r);
    r.load_s = pt_now() - t_load;
    if (rc) goto done;
    if ((rc = model_create(&r.m, cfg, r.schema, r.seed))) goto done;
    r.schema = NULL; /* the model owns it and the config now */
    r.m->owns_cfg = 1;
    own = NULL;
    r.units = r.m->independent ? T : 1;
    if (r.o.init_from && (rc = warm_start(&r))) goto done;
    if (r.o.freeze && (rc = model_freeze(r.m, r.o.freeze))) goto done;
    if (r.o.teacher && (rc = load_teacher(&r))) goto done;
    if ((rc = model_alloc_train(r.m)) || (rc = model_reserve(r.m, cfg->batch))) goto done;
    optim_init(&r.opt, cfg->optimizer, cfg->lr);
    r.opt.l2 = cfg->l2;
    if (r.ds[1]->n) r.best = pt_malloc(r.m->total * sizeof *r.best);
    r.active = pt_malloc((size_t)T * sizeof(int));
    r.bad_epochs = pt_calloc((size_t)T, sizeof(int));
    r.best_epoch = pt_calloc((size_t)T, sizeof(int));
    r.best_score = pt_malloc((size_t)T * sizeof(double));
    if ((r.ds[1]->n && !r.best) || !r.active || !r.bad_epochs || !r.best_epoch || !r.best_score) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    if (r.best) memcpy(r.best, r.m->w, r.m->total * sizeof(float));
    for (int t = 0; t < T; t++) r.active[t] = 1, r.best_score[t] = NAN;
    if ((rc = parse_watch(&r)) || (rc = try_resume(&r))) goto done;
    /* The epochs gather shuffled rows of the packed copy, and nothing else
     * reads the train rows' cells: they are freed before the first steps
     * fault in the optimizer state, which then reuses their pages (on this
     * VM a fresh page costs about 2 ms a MiB, a just-freed one almost
     * nothing; the large-vocab MMoE's peak RSS fell by 100 MB). */
    if (model_pack(r.m, r.ds[0])) dataset_drop_cells(r.ds[0]);
    rc = run_epochs(&r);
    model_pack(r.m, NULL);
    if (rc) goto done;
    if (r.best) memcpy(r.m->w, r.best, r.m->total * sizeof(float));
    if ((rc = final_report(&r))) goto done;
    /* training state is not needed by a finished model */
    pt_free(r.m->g), pt_free(r.m->m), pt_free(r.m->v);
    r.m->g = r.m->m = r.m->v = NULL;
    *out = (pt_model *)r.m;
    r.m = NULL;
done:
    nn_gemm_release(); /* bf16 scratch and primitives, if the steps made any */
    model_destroy(r.m);
    schema_free(r.schema);
    for (int k = 0; k < 3; k++) dataset_free(r.ds[k]);
    pt_free(r.best);
    pt_free(r.active);
    pt_free(r.bad_epochs);
    pt_free(r.best_epoch);
    pt_free(r.best_score);
    pt_free(r.watch_task);
    pt_free(r.watch_metric);
    pt_free(r.soft);
    pt_config_free(own);
    return rc;
}
