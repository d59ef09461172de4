/* evaluate.c: turns predictions into the per-task metrics report, and the
 * public eval / predict entry points that read a file with a trained model. */
#include <math.h>
#include <string.h>

#include "data/schema.h"
#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "eval/rank.h"
#include "util/util.h"

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

int eval_higher_is_better(const char *metric)
{
    return !strcmp(metric, "auc") || !strcmp(metric, "gauc") || !strcmp(metric, "accuracy") ||
           !strcmp(metric, "f1");
}

static int write_roc(FILE *f, const char *task, const float *y, const float *p, size_t n)
{
    double *fpr, *tpr, *thr;
    size_t np;
    int rc = metric_roc_curve(y, p, n, &fpr, &tpr, &thr, &np);
    if (rc) return rc;
    for (size_t i = 0; i < np; i++) fprintf(f, "%s,%.9g,%.9g,%.9g\n", task, thr[i], fpr[i], tpr[i]);
    pt_free(fpr);
    pt_free(tpr);
    pt_free(thr);
    return PT_OK;
}

/* One row of a top-K ranking: its group, score, label and position in the file. */
struct ranked {
    int32_t g, i;
    float p, y;
};

/* Group, then score high to low, then file order: the order rank_order gives
 * within a group. NaN scores last. */
static int ranked_cmp(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->g != y->g) return x->g < y->g ? -1 : 1;
    int xn = isnan(x->p), yn = isnan(y->p);
    if (xn != yn) return xn - yn;
    if (!xn && x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Top-K metrics averaged over the groups (users) that have a positive. */
int eval_topk(const float *y, const float *p, const int32_t *g, size_t n, int k, json_t *o)
{
    struct ranked *r = pt_malloc((n ? n : 1) * sizeof *r);
    float *rel = pt_malloc((n ? n : 1) * sizeof *rel);
    if (!r || !rel) {
        pt_free(r), pt_free(rel);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) r[i] = (struct ranked){g[i], (int32_t)i, p[i], y[i]};
    qsort(r, n, sizeof *r, ranked_cmp);
    double sum[6] = {0};
    size_t used = 0;
    for (size_t i = 0, j; i < n; i = j) {
        int nrel = 0;
        for (j = i; j < n && r[j].g == r[i].g; j++) nrel += (rel[j - i] = r[j].y > 0.5f ? 1.0f : 0.0f) > 0;
        if (!nrel) continue;
        int len = (int)(j - i);
        sum[0] += rank_ndcg_at(rel, len, k);
        sum[1] += rank_recall_at(rel, len, k, nrel);
        sum[2] += rank_precision_at(rel, len, k);
        sum[3] += rank_hit_at(rel, len, k);
        sum[4] += rank_ap_at(rel, len, k, nrel);
        sum[5] += rank_rr(rel, len);
        used++;
    }
    static const char *const names[6] = {"ndcg_at_k", "recall_at_k", "precision_at_k", "hit_at_k", "map_at_k", "mrr"};
    json_object_set_new(o, "k", json_integer(k));
    for (int m = 0; m < 6; m++) json_object_set_new(o, names[m], num(used ? sum[m] / (double)used : NAN));
    json_object_set_new(o, "topk_groups", json_integer((json_int_t)used));
    pt_free(r), pt_free(rel);
    return PT_OK;
}

int eval_tasks(const struct model *m, const struct dataset *d, const float *p, double threshold,
               const char *roc_out, int ranking_only, int top_k, json_t **out)
{
    const struct pt_config *c = m->cfg;
    int T = m->nout, rc = PT_OK;
    size_t n = (size_t)d->n;
    float *yy = pt_malloc((n ? n : 1) * sizeof *yy), *pp = pt_malloc((n ? n : 1) * sizeof *pp);
    int32_t *gg = d->group ? pt_malloc((n ? n : 1) * sizeof *gg) : NULL;
    json_t *tasks = json_object();
    struct atomic_file af = {0};
    *out = NULL;
    if (!yy || !pp || (d->group && !gg) || !tasks) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    if (roc_out) {
        if ((rc = atomic_file_open(&af, roc_out))) goto done;
        fprintf(af.f, "task,threshold,fpr,tpr\n");
    }
    for (int t = 0; t < T; t++) {
        /* output columns past the tasks (ESMM's CTCVR) are binary */
        const char *name = model_output_name(m, t);
        int regression = t < c->ntasks && c->tasks[t].type == TASK_REGRESSION;
        size_t k = 0;
        double pos = 0;
        for (size_t i = 0; i < n; i++) {
            float y = model_output_label(m, d, (int64_t)i, t);
            if (isnan(y)) continue;
            yy[k] = y;
            pp[k] = p[i * (size_t)T + (size_t)t];
            if (gg) gg[k] = d->group[i];
            pos += y > 0.5f;
            k++;
        }
        json_t *o = json_object();
        if (!o) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
        json_object_set_new(tasks, name, o);
        json_object_set_new(o, "rows", json_integer((json_int_t)k));
        if (regression) {
            json_object_set_new(o, "rmse", num(k ? metric_rmse(yy, pp, k) : NAN));
            json_object_set_new(o, "mae", num(k ? metric_mae(yy, pp, k) : NAN));
            continue;
        }
        json_object_set_new(o, "positives", json_integer((json_int_t)pos));
        json_object_set_new(o, "auc", num(metric_auc(yy, pp, k)));
        if (gg) {
            size_t used = 0;
            json_object_set_new(o, "gauc", num(metric_gauc(yy, pp, gg, k, &used)));
            json_object_set_new(o, "gauc_groups", json_integer((json_int_t)used));
            if (top_k > 0 && (rc = eval_topk(yy, pp, gg, k, top_k, o))) goto done;
        }
        if (ranking_only) continue;
        json_object_set_new(o, "logloss", num(k ? metric_logloss(yy, pp, k) : NAN));
        json_object_set_new(o, "calibration", num(metric_calibration(yy, pp, k)));
        struct metric_cls cl = metric_at_threshold(yy, pp, k, threshold);
        json_object_set_new(o, "accuracy", num(k ? cl.accuracy : NAN));
        json_object_set_new(o, "precision", num(cl.precision));
        json_object_set_new(o, "recall", num(cl.recall));
        json_object_set_new(o, "f1", num(cl.f1));
        if (af.f && k && (rc = write_roc(af.f, name, yy, pp, k))) goto done;
    }
    if (af.f && (rc = atomic_file_commit(&af))) goto done;
    *out = tasks;
    tasks = NULL;
done:
    atomic_file_abort(&af);
    json_decref(tasks);
    pt_free(yy);
    pt_free(pp);
    pt_free(gg);
    return rc;
}

double eval_metric(const json_t *tasks, const struct pt_config *c, const char *task, const char *metric)
{
    double sum = 0;
    int cnt = 0;
    for (int t = 0; t < c->ntasks; t++) {
        if (strcmp(task, "mean") && strcmp(task, c->tasks[t].name)) continue;
        /* a metric the task does not have (AUC of a regression task) falls
         * back to its loss, so every task is watched by something */
        int bin = c->tasks[t].type == TASK_BINARY;
        const char *mm = metric;
        if (!strcmp(metric, "loss") || (bin && (!strcmp(metric, "rmse") || !strcmp(metric, "mae"))) ||
            (!bin && (!strcmp(metric, "auc") || !strcmp(metric, "logloss"))))
            mm = bin ? "logloss" : "rmse";
        json_t *v = json_object_get(json_object_get(tasks, c->tasks[t].name), mm);
        if (!json_is_number(v)) return NAN;
        /* mixing directions in a mean: count a lower-is-better value negated */
        if (eval_higher_is_better(metric) != eval_higher_is_better(mm)) {
            sum -= json_number_value(v);
            cnt++;
            continue;
        }
        sum += json_number_value(v);
        cnt++;
    }
    return cnt ? sum / cnt : NAN;
}

pt_eval_opts pt_eval_opts_default(void)
{
    pt_eval_opts o = {.group_by = NULL, .roc_out = NULL, .threshold = 0.5, .max_bad_rows = 0, .threads = 0};
    return o;
}

int pt_model_eval(pt_model *pm, const char *path, const pt_eval_opts *opts, char **json)
{
    struct model *m = (struct model *)pm;
    pt_eval_opts o = opts ? *opts : pt_eval_opts_default();
    struct dataset *d = NULL;
    float *p = NULL;
    json_t *tasks = NULL, *root = NULL;
    *json = NULL;
    if (o.threads > 0) pt_set_threads(o.threads);
    int rc = dataset_create(&d, m->schema);
    if (rc) return rc;
    struct read_opts ro = {.flags = READ_LABELS, .max_bad_rows = o.max_bad_rows, .group_by = o.group_by};
    struct dataset *dst[3] = {d, NULL, NULL};
    if ((rc = data_load(m->schema, path, &ro, dst))) goto done;
    p = pt_malloc((size_t)d->n * (size_t)m->nout * sizeof *p);
    if (!p) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
    if (o.score_column) {
        /* a baseline: one numeric feature scores every output. Its transform
         * is monotone, so AUC and GAUC are those of the raw column. */
        const struct feat_state *f = NULL;
        for (int k = 0; k < m->schema->nfeat; k++)
            if (!strcmp(m->schema->f[k].cfg->name, o.score_column)) f = &m->schema->f[k];
        if (!f || f->cfg->kind != FEAT_NUMERIC || f->cfg->transform == NUM_BUCKETIZE) {
            rc = pt_error(PT_EINVAL, "--score %s: not a numeric feature of the model (standardized or raw)", o.score_column);
            goto done;
        }
        for (int64_t i = 0; i < d->n; i++)
            for (int t = 0; t < m->nout; t++) p[i * m->nout + t] = d->num[f->slot][i];
    } else if ((rc = model_predict_dataset(m, d, p))) {
        goto done;
    }
    if (o.top_k > 0 && !o.group_by) {
        rc = pt_error(PT_EINVAL, "top-K metrics need a group column (--group-by, e.g. the user id)");
        goto done;
    }
    if ((rc = eval_tasks(m, d, p, o.threshold, o.roc_out, o.score_column != NULL, o.top_k, &tasks))) goto done;
    root = json_object();
    if (!root) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
    json_object_set_new(root, "rows", json_integer(d->n));
    json_object_set_new(root, "bad_rows", json_integer(d->bad_rows));
    json_object_set(root, "tasks", tasks);
    *json = json_dumps(root, JSON_COMPACT);
    if (!*json) rc = pt_error(PT_ENOMEM, "out of memory");
done:
    json_decref(tasks);
    json_decref(root);
    pt_free(p);
    dataset_free(d);
    return rc;
}

int pt_model_predict_file(pt_model *pm, const char *path, const char *out_path, const pt_eval_opts *opts,
                          int64_t *rows)
{
    struct model *m = (struct model *)pm;
    pt_eval_opts o = opts ? *opts : pt_eval_opts_default();
    struct dataset *d = NULL;
    struct data_reader *r = NULL;
    struct atomic_file af = {0};
    float *p = NULL;
    int64_t total = 0;
    int T = m->nout, eof = 0, chunk = 8192;
    if (rows) *rows = 0;
    if (o.threads > 0) pt_set_threads(o.threads);
    int rc = dataset_create(&d, m->schema);
    if (rc) return rc;
    struct read_opts ro = {.flags = READ_KEYS, .max_bad_rows = o.max_bad_rows, .max_rows = chunk};
    if ((rc = data_reader_open(&r, m->schema, path, &ro))) goto done;
    p = pt_malloc((size_t)chunk * (size_t)T * sizeof *p);
    if (!p) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
    if ((rc = atomic_file_open(&af, out_path))) goto done;
    const char *kh = data_reader_key_header(r);
    fputs(kh, af.f);
    for (int t = 0; t < T; t++) fprintf(af.f, "%sp_%s", (t || *kh) ? "," : "", model_output_name(m, t));
    fputc('\n', af.f);
    struct dataset *dst[3] = {d, NULL, NULL};
    while (!eof) {
        dataset_clear(d);
        if ((rc = data_reader_read(r, m->schema, dst, &eof))) goto done;
        if (d->n == 0) continue;
        if ((rc = model_predict_dataset(m, d, p))) goto done;
        for (int64_t i = 0; i < d->n; i++) {
            fputs(d->keys[i], af.f);
            for (int t = 0; t < T; t++) fprintf(af.f, "%s%.7g", (t || *kh) ? "," : "", p[i * T + t]);
            fputc('\n', af.f);
        }
        total += d->n;
    }
    rc = atomic_file_commit(&af);
    if (rc == PT_OK && rows) *rows = total;
done:
    atomic_file_abort(&af);
    data_reader_close(r);
    dataset_free(d);
    pt_free(p);
    return rc;
}

/* Name of expert k of level l, as its parameters are named. */
static void expert_name(const struct model *m, int l, int k, char *buf, size_t n)
{
    const struct cgc *L = &m->lv[l];
    if (m->kind == MODEL_MMOE) snprintf(buf, n, "expert%d", k);
    else if (k < m->ntasks * L->nt)
        snprintf(buf, n, "level%d.%s.expert%d", l, m->cfg->tasks[k / L->nt].name, k % L->nt);
    else snprintf(buf, n, "level%d.shared.expert%d", l, k - m->ntasks * L->nt);
}

int pt_model_gate_stats(pt_model *pm, const char *path, const pt_eval_opts *opts, char **json)
{
    struct model *m = (struct model *)pm;
    pt_eval_opts o = opts ? *opts : pt_eval_opts_default();
    struct dataset *d = NULL;
    float *p = NULL;
    json_t *root = NULL;
    *json = NULL;
    if (!m->nlevels) return pt_error(PT_EINVAL, "model kind %s has no gates (mmoe and ple have)", model_kind_name(m->kind));
    if (o.threads > 0) pt_set_threads(o.threads);
    int rc = dataset_create(&d, m->schema);
    if (rc) return rc;
    struct read_opts ro = {.flags = 0, .max_bad_rows = o.max_bad_rows};
    struct dataset *dst[3] = {d, NULL, NULL};
    if ((rc = data_load(m->schema, path, &ro, dst))) goto done;
    p = pt_malloc((size_t)d->n * (size_t)m->nout * sizeof *p);
    if (!p) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
    for (int l = 0; l < m->nlevels; l++) {
        for (int t = 0; t < m->ntasks; t++) memset(m->lv[l].tg[t].psum, 0, (size_t)m->lv[l].tg[t].K * sizeof(double));
        if (m->lv[l].has_sgate) memset(m->lv[l].sg.psum, 0, (size_t)m->lv[l].sg.K * sizeof(double));
    }
    m->gate_stats = 1;
    m->gate_rows = 0;
    rc = model_predict_dataset(m, d, p);
    m->gate_stats = 0;
    if (rc) goto done;
    root = json_object();
    json_t *gates = json_array();
    json_object_set_new(root, "rows", json_integer(d->n));
    json_object_set_new(root, "gates", gates);
    char name[512];
    for (int l = 0; l < m->nlevels; l++) {
        struct cgc *L = &m->lv[l];
        for (int t = 0; t <= m->ntasks; t++) {
            struct gate *g = t < m->ntasks ? &L->tg[t] : &L->sg;
            if (t == m->ntasks && !L->has_sgate) break;
            json_t *o1 = json_object(), *ex = json_array(), *mean = json_array();
            if (m->nlevels > 1) snprintf(name, sizeof name, "level%d.%s", l, t < m->ntasks ? m->cfg->tasks[t].name : "shared");
            else snprintf(name, sizeof name, "%s", t < m->ntasks ? m->cfg->tasks[t].name : "shared");
            json_object_set_new(o1, "gate", json_string(name));
            for (int k = 0; k < g->K; k++) {
                expert_name(m, l, g->experts[k], name, sizeof name);
                json_array_append_new(ex, json_string(name));
                json_array_append_new(mean, json_real(m->gate_rows ? g->psum[k] / (double)m->gate_rows : 0.0));
            }
            json_object_set_new(o1, "experts", ex);
            json_object_set_new(o1, "mean", mean);
            json_array_append_new(gates, o1);
        }
    }
    char *s = json_dumps(root, JSON_COMPACT);
    if (!s || !(*json = pt_strdup(s))) rc = pt_error(PT_ENOMEM, "out of memory");
    free(s);
done:
    json_decref(root);
    pt_free(p);
    dataset_free(d);
    return rc;
}
