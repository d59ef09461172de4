/* config.c: YAML config → struct pt_config, through libfyaml.
 *
 * Strict: an unknown key, a value of the wrong type or out of range is an
 * error "FILE:LINE: what is wrong" (the line of the offending key or value),
 * so a typo never silently falls back to a default. Defaults live in
 * config_defaults() and docs/config.md; keep the two in step. */
#include <errno.h>
#include <libfyaml.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/config.h"
#include "data/timeparse.h"
#include "util/util.h"

struct cx {
    const char *path;
    struct pt_config *c;
    struct feat_cfg fdef[3]; /* defaults per feature kind */
};

/* Line of a node: a scalar's own; a mapping's or a list's is taken from its
 * first scalar, so errors about a whole section still point at it. */
static long node_line(struct fy_node *n)
{
    for (int depth = 0; n && depth < 64; depth++) {
        if (fy_node_is_scalar(n)) {
            struct fy_token *t = fy_node_get_scalar_token(n);
            const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
            return m ? m->line + 1 : 0;
        }
        void *it = NULL;
        if (fy_node_is_mapping(n)) {
            struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);
            n = p ? fy_node_pair_key(p) : NULL;
        } else if (fy_node_is_sequence(n)) {
            n = fy_node_sequence_iterate(n, &it);
        } else {
            return 0;
        }
    }
    return 0;
}

static int err_at(struct cx *x, struct fy_node *n, const char *fmt, const char *a, const char *b)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a ? a : "", b ? b : "");
    return pt_error_at(PT_ECONFIG, x->path, node_line(n), "%s", msg);
}

static const char *scalar(struct fy_node *n)
{
    return (n && fy_node_is_scalar(n)) ? fy_node_get_scalar0(n) : NULL;
}

static int get_str(struct cx *x, struct fy_node *v, const char *key, char **out)
{
    const char *s = scalar(v);
    if (!s) return err_at(x, v, "'%s' must be a string", key, NULL);
    char *d = pt_strdup(s);
    if (!d) return pt_error(PT_ENOMEM, "out of memory");
    pt_free(*out);
    *out = d;
    return PT_OK;
}

static int get_i64(struct cx *x, struct fy_node *v, const char *key, int64_t lo, int64_t hi,
                   int64_t *out)
{
    const char *s = scalar(v);
    char *end;
    if (!s) return err_at(x, v, "'%s' must be an integer", key, NULL);
    errno = 0;
    long long r = strtoll(s, &end, 10);
    if (errno || end == s || *end || r < lo || r > hi) {
        char range[96];
        snprintf(range, sizeof range, "%lld..%lld", (long long)lo, (long long)hi);
        return err_at(x, v, "'%s' must be an integer in %s", key, range);
    }
    *out = r;
    return PT_OK;
}

static int get_int(struct cx *x, struct fy_node *v, const char *key, int lo, int hi, int *out)
{
    int64_t r;
    int rc = get_i64(x, v, key, lo, hi, &r);
    if (rc == PT_OK) *out = (int)r;
    return rc;
}

static int get_f64(struct cx *x, struct fy_node *v, const char *key, double lo, double hi,
                   double *out)
{
    const char *s = scalar(v);
    char *end;
    if (!s) return err_at(x, v, "'%s' must be a number", key, NULL);
    errno = 0;
    double r = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(r) || r < lo || r > hi) {
        char range[96];
        snprintf(range, sizeof range, "%g..%g", lo, hi);
        return err_at(x, v, "'%s' must be a number in %s", key, range);
    }
    *out = r;
    return PT_OK;
}

static int get_bool(struct cx *x, struct fy_node *v, const char *key, int *out)
{
    const char *s = scalar(v);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))) *out = 1;
    else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))) *out = 0;
    else return err_at(x, v, "'%s' must be true or false", key, NULL);
    return PT_OK;
}

/* A list of strings, or one string taken as a one-element list. */
static int get_str_list(struct cx *x, struct fy_node *v, const char *key, char ***out, int *n)
{
    for (int i = 0; i < *n; i++) pt_free((*out)[i]);
    pt_free(*out);
    *out = NULL;
    *n = 0;
    if (scalar(v)) {
        *out = pt_calloc(1, sizeof(char *));
        if (!*out || !((*out)[0] = pt_strdup(scalar(v)))) return pt_error(PT_ENOMEM, "out of memory");
        *n = 1;
        return PT_OK;
    }
    if (!v || !fy_node_is_sequence(v)) return err_at(x, v, "'%s' must be a list of strings", key, NULL);
    int cnt = fy_node_sequence_item_count(v);
    *out = pt_calloc((size_t)cnt + 1, sizeof(char *));
    if (!*out) return pt_error(PT_ENOMEM, "out of memory");
    void *it = NULL;
    struct fy_node *e;
    while ((e = fy_node_sequence_iterate(v, &it)) != NULL) {
        const char *s = scalar(e);
        if (!s) return err_at(x, v, "'%s' must be a list of strings", key, NULL);
        if (!((*out)[*n] = pt_strdup(s))) return pt_error(PT_ENOMEM, "out of memory");
        (*n)++;
    }
    return PT_OK;
}

static int get_int_list(struct cx *x, struct fy_node *v, const char *key, int **out, int *n)
{
    pt_free(*out);
    *out = NULL;
    *n = 0;
    if (!v || !fy_node_is_sequence(v)) return err_at(x, v, "'%s' must be a list of integers", key, NULL);
    int cnt = fy_node_sequence_item_count(v);
    *out = pt_calloc((size_t)cnt + 1, sizeof(int));
    if (!*out) return pt_error(PT_ENOMEM, "out of memory");
    void *it = NULL;
    struct fy_node *e;
    while ((e = fy_node_sequence_iterate(v, &it)) != NULL) {
        int rc = get_int(x, e, key, 1, 1 << 20, &(*out)[*n]);
        if (rc) return rc;
        (*n)++;
    }
    return PT_OK;
}

static int need_map(struct cx *x, struct fy_node *n, const char *what)
{
    if (!n || !fy_node_is_mapping(n)) return err_at(x, n, "'%s' must be a mapping", what, NULL);
    return PT_OK;
}

static int unknown(struct cx *x, struct fy_node_pair *p, const char *section)
{
    struct fy_node *k = fy_node_pair_key(p);
    return err_at(x, k, !strncmp(section, "samples", 7) ? "unknown key '%s' in %s (see docs/samples.md)"
                                                        : "unknown key '%s' in %s (see docs/config.md)",
                  scalar(k) ? scalar(k) : "?", section);
}

/* Walks a mapping calling fn(x, key, value, ctx) for each pair. */
typedef int (*pair_fn)(struct cx *x, const char *key, struct fy_node *v, void *ctx);

static int walk(struct cx *x, struct fy_node *map, const char *section, pair_fn fn, void *ctx)
{
    int rc = need_map(x, map, section);
    if (rc) return rc;
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p);
        const char *ks = scalar(k);
        if (!ks) return err_at(x, k, "keys in %s must be strings", section, NULL);
        rc = fn(x, ks, fy_node_pair_value(p), ctx);
        if (rc == 1) return unknown(x, p, section);
        if (rc) return rc;
    }
    return PT_OK;
}

/* ---- data ---- */

static int format_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct pt_config *c = x->c;
    if (!strcmp(k, "delimiter")) {
        int rc = get_str(x, v, k, &c->delim);
        if (rc == PT_OK && !c->delim[0]) return err_at(x, v, "'delimiter' must not be empty", NULL, NULL);
        if (rc == PT_OK && strchr(c->delim, '"'))
            return err_at(x, v, "'delimiter' must not contain a quote", NULL, NULL);
        return rc;
    }
    if (!strcmp(k, "header")) return get_bool(x, v, k, &c->header);
    if (!strcmp(k, "columns")) return get_str_list(x, v, k, &c->columns, &c->ncolumns);
    return 1;
}

static int split_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct pt_config *c = x->c;
    if (!strcmp(k, "valid")) return get_f64(x, v, k, 0, 0.9, &c->valid_fraction);
    if (!strcmp(k, "test")) return get_f64(x, v, k, 0, 0.9, &c->test_fraction);
    if (!strcmp(k, "seed")) {
        int64_t s = 0;
        int rc = get_i64(x, v, k, 0, INT64_MAX, &s);
        c->split_seed = (uint64_t)s;
        return rc;
    }
    return 1;
}

static int path_value(struct cx *x, struct fy_node *v, const char *k, char **out)
{
    char *rel = NULL;
    int rc = get_str(x, v, k, &rel);
    if (rc) return rc;
    pt_free(*out);
    *out = pt_path_join(x->c->dir, rel);
    pt_free(rel);
    return *out ? PT_OK : pt_error(PT_ENOMEM, "out of memory");
}

static int data_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct pt_config *c = x->c;
    if (!strcmp(k, "train")) return path_value(x, v, k, &c->train);
    if (!strcmp(k, "valid")) return path_value(x, v, k, &c->valid);
    if (!strcmp(k, "test")) return path_value(x, v, k, &c->test);
    if (!strcmp(k, "format")) return walk(x, v, "data.format", format_pair, NULL);
    if (!strcmp(k, "split")) return walk(x, v, "data.split", split_pair, NULL);
    if (!strcmp(k, "keys")) return get_str_list(x, v, k, &c->keys, &c->nkeys);
    if (!strcmp(k, "max_bad_rows")) return get_i64(x, v, k, 0, INT64_MAX, &c->max_bad_rows);
    return 1;
}

/* ---- features ---- */

static int feat_opt_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct feat_cfg *f = ctx;
    const char *s = scalar(v);
    if (!strcmp(k, "name")) return get_str(x, v, k, &f->name);
    if (!strcmp(k, "dim")) return get_int(x, v, k, 1, 4096, &f->dim);
    if (!strcmp(k, "min_count")) return get_int(x, v, k, 1, 1 << 30, &f->min_count);
    if (!strcmp(k, "hash_buckets")) return get_i64(x, v, k, 1, INT32_MAX - 1, &f->hash_buckets);
    if (!strcmp(k, "buckets")) return get_int(x, v, k, 2, 1 << 16, &f->buckets);
    if (!strcmp(k, "sep")) {
        int rc = get_str(x, v, k, &f->sep);
        if (rc == PT_OK && !f->sep[0]) return err_at(x, v, "'sep' must not be empty", NULL, NULL);
        return rc;
    }
    if (!strcmp(k, "pool")) {
        if (s && !strcmp(s, "mean")) f->pool_mean = 1;
        else if (s && !strcmp(s, "sum")) f->pool_mean = 0;
        else return err_at(x, v, "'pool' must be mean or sum", NULL, NULL);
        return PT_OK;
    }
    if (!strcmp(k, "transform")) {
        if (s && !strcmp(s, "standardize")) f->transform = NUM_STANDARDIZE;
        else if (s && !strcmp(s, "bucketize")) f->transform = NUM_BUCKETIZE;
        else if (s && !strcmp(s, "none")) f->transform = NUM_RAW;
        else return err_at(x, v, "'transform' must be standardize, bucketize or none", NULL, NULL);
        return PT_OK;
    }
    if (!strcmp(k, "impute")) {
        double d;
        if (s && !strcmp(s, "mean")) f->impute = IMPUTE_MEAN;
        else if (s && !strcmp(s, "none")) f->impute = IMPUTE_NONE;
        else if (get_f64(x, v, k, -1e30, 1e30, &d) == PT_OK) {
            f->impute = IMPUTE_CONST;
            f->impute_value = (float)d;
        } else
            return err_at(x, v, "'impute' must be mean, none or a number", NULL, NULL);
        return PT_OK;
    }
    return 1;
}

static int defaults_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    if (!strcmp(k, "categorical")) return walk(x, v, "features.defaults.categorical", feat_opt_pair, &x->fdef[FEAT_CATEGORICAL]);
    if (!strcmp(k, "numeric")) return walk(x, v, "features.defaults.numeric", feat_opt_pair, &x->fdef[FEAT_NUMERIC]);
    if (!strcmp(k, "multi")) return walk(x, v, "features.defaults.multi", feat_opt_pair, &x->fdef[FEAT_MULTI]);
    return 1;
}

static int add_features(struct cx *x, struct fy_node *list, enum feat_kind kind, const char *key)
{
    struct pt_config *c = x->c;
    if (!list || !fy_node_is_sequence(list)) return err_at(x, list, "'features.%s' must be a list", key, NULL);
    int cnt = fy_node_sequence_item_count(list);
    struct feat_cfg *nf = pt_realloc(c->feats, (size_t)(c->nfeats + cnt + 1) * sizeof *nf);
    if (!nf) return pt_error(PT_ENOMEM, "out of memory");
    c->feats = nf;
    void *it = NULL;
    struct fy_node *e;
    while ((e = fy_node_sequence_iterate(list, &it)) != NULL) {
        struct feat_cfg *f = &c->feats[c->nfeats];
        *f = x->fdef[kind];
        f->kind = kind;
        f->name = NULL;
        f->sep = NULL;
        c->nfeats++;
        int rc;
        if (scalar(e)) rc = get_str(x, e, "name", &f->name);
        else rc = walk(x, e, "a feature", feat_opt_pair, f);
        if (rc) return rc;
        if (!f->name) return err_at(x, e, "a feature in 'features.%s' has no name", key, NULL);
        if (kind == FEAT_MULTI && !f->sep && !(f->sep = pt_strdup(x->fdef[FEAT_MULTI].sep ? x->fdef[FEAT_MULTI].sep : "|")))
            return pt_error(PT_ENOMEM, "out of memory");
        for (int i = 0; i < c->nfeats - 1; i++)
            if (!strcmp(c->feats[i].name, f->name))
                return err_at(x, e, "feature '%s' is listed twice", f->name, NULL);
    }
    return PT_OK;
}

static int features_pass(struct cx *x, struct fy_node *map, int defaults_only)
{
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &it)) != NULL) {
        const char *k = scalar(fy_node_pair_key(p));
        struct fy_node *v = fy_node_pair_value(p);
        int rc = PT_OK;
        if (!k) return err_at(x, fy_node_pair_key(p), "keys in features must be strings", NULL, NULL);
        if (!strcmp(k, "defaults")) {
            if (defaults_only) rc = walk(x, v, "features.defaults", defaults_pair, NULL);
        } else if (!strcmp(k, "numeric") || !strcmp(k, "categorical") || !strcmp(k, "multi")) {
            if (!defaults_only)
                rc = add_features(x, v, !strcmp(k, "numeric") ? FEAT_NUMERIC : !strcmp(k, "categorical") ? FEAT_CATEGORICAL : FEAT_MULTI, k);
        } else
            return unknown(x, p, "features");
        if (rc) return rc;
    }
    return PT_OK;
}

/* ---- tasks ---- */

static int task_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct task_cfg *t = ctx;
    if (!strcmp(k, "name")) return get_str(x, v, k, &t->name);
    if (!strcmp(k, "label")) return get_str(x, v, k, &t->label);
    if (!strcmp(k, "positive")) return get_str_list(x, v, k, &t->positive, &t->npositive);
    if (!strcmp(k, "only_when")) return get_str(x, v, k, &t->only_when);
    if (!strcmp(k, "weight")) {
        double w = 0;
        int rc = get_f64(x, v, k, 0, 1e6, &w);
        t->weight = (float)w;
        return rc;
    }
    if (!strcmp(k, "type")) {
        const char *s = scalar(v);
        if (s && !strcmp(s, "binary")) t->type = TASK_BINARY;
        else if (s && !strcmp(s, "regression")) t->type = TASK_REGRESSION;
        else return err_at(x, v, "'type' must be binary or regression", NULL, NULL);
        return PT_OK;
    }
    return 1;
}

static int add_tasks(struct cx *x, struct fy_node *list)
{
    struct pt_config *c = x->c;
    if (!list || !fy_node_is_sequence(list)) return err_at(x, list, "'tasks' must be a list", NULL, NULL);
    int cnt = fy_node_sequence_item_count(list);
    if (cnt < 1) return err_at(x, list, "'tasks' must name at least one task", NULL, NULL);
    c->tasks = pt_calloc((size_t)cnt, sizeof *c->tasks);
    if (!c->tasks) return pt_error(PT_ENOMEM, "out of memory");
    void *it = NULL;
    struct fy_node *e;
    while ((e = fy_node_sequence_iterate(list, &it)) != NULL) {
        struct task_cfg *t = &c->tasks[c->ntasks++];
        t->weight = 1.0f;
        int rc = walk(x, e, "a task", task_pair, t);
        if (rc) return rc;
        if (!t->label) return err_at(x, e, "a task has no 'label' column", NULL, NULL);
        if (!t->name && !(t->name = pt_strdup(t->label))) return pt_error(PT_ENOMEM, "out of memory");
        for (int i = 0; i < c->ntasks - 1; i++)
            if (!strcmp(c->tasks[i].name, t->name)) return err_at(x, e, "task '%s' is listed twice", t->name, NULL);
    }
    return PT_OK;
}

/* ---- model and train ---- */

static int model_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct pt_config *c = x->c;
    if (!strcmp(k, "kind")) {
        const char *s = scalar(v);
        if (s && !strcmp(s, "lr")) c->model = MODEL_LR;
        else if (s && !strcmp(s, "mlp")) c->model = MODEL_MLP;
        else if (s && !strcmp(s, "shared_bottom")) c->model = MODEL_SHARED_BOTTOM;
        else if (s && !strcmp(s, "mmoe")) c->model = MODEL_MMOE;
        else if (s && !strcmp(s, "ple")) c->model = MODEL_PLE;
        else if (s && !strcmp(s, "esmm")) c->model = MODEL_ESMM;
        else return err_at(x, v, "model kind '%s' is not known (lr, mlp, shared_bottom, mmoe, ple, esmm)", s ? s : "?", NULL);
        return PT_OK;
    }
    if (!strcmp(k, "hidden")) return get_int_list(x, v, k, &c->hidden, &c->nhidden);
    if (!strcmp(k, "expert_dims")) return get_int_list(x, v, k, &c->expert_dims, &c->nexpert_dims);
    if (!strcmp(k, "tower_dims")) return get_int_list(x, v, k, &c->tower_dims, &c->ntower_dims);
    if (!strcmp(k, "experts")) return get_int(x, v, k, 1, CONFIG_MAX_EXPERTS, &c->experts);
    if (!strcmp(k, "shared_experts")) return get_int(x, v, k, 0, CONFIG_MAX_EXPERTS, &c->shared_experts);
    if (!strcmp(k, "levels")) return get_int(x, v, k, 1, 2, &c->levels);
    if (!strcmp(k, "dropout")) {
        double d = 0;
        int rc = get_f64(x, v, k, 0, 0.95, &d);
        c->dropout = (float)d;
        return rc;
    }
    return 1;
}

static int optimizer_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct pt_config *c = x->c;
    double d = 0;
    int rc;
    if (!strcmp(k, "kind")) {
        const char *s = scalar(v);
        if (s && !strcmp(s, "adam")) c->optimizer = OPTIM_ADAM;
        else if (s && !strcmp(s, "adagrad")) c->optimizer = OPTIM_ADAGRAD;
        else if (s && !strcmp(s, "sgd")) c->optimizer = OPTIM_SGD;
        else return err_at(x, v, "optimizer '%s' is not known (adam, adagrad, sgd)", s ? s : "?", NULL);
        return PT_OK;
    }
    if (!strcmp(k, "lr")) {
        rc = get_f64(x, v, k, 1e-9, 100, &d);
        c->lr = (float)d;
        return rc;
    }
    if (!strcmp(k, "l2")) {
        rc = get_f64(x, v, k, 0, 100, &d);
        c->l2 = (float)d;
        return rc;
    }
    return 1;
}

static int es_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct pt_config *c = x->c;
    if (!strcmp(k, "watch")) return get_str(x, v, k, &c->es_watch);
    if (!strcmp(k, "patience")) return get_int(x, v, k, 1, 1000, &c->es_patience);
    return 1;
}

static int train_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct pt_config *c = x->c;
    if (!strcmp(k, "epochs")) return get_int(x, v, k, 1, 100000, &c->epochs);
    if (!strcmp(k, "batch")) return get_int(x, v, k, 1, 1 << 20, &c->batch);
    if (!strcmp(k, "threads")) return get_int(x, v, k, 1, 1024, &c->threads);
    if (!strcmp(k, "seed")) {
        int64_t s = 0;
        int rc = get_i64(x, v, k, 0, INT64_MAX, &s);
        c->seed = (uint64_t)s;
        return rc;
    }
    if (!strcmp(k, "optimizer")) return walk(x, v, "train.optimizer", optimizer_pair, NULL);
    if (!strcmp(k, "early_stopping")) return walk(x, v, "train.early_stopping", es_pair, NULL);
    if (!strcmp(k, "loss_weighting")) {
        const char *s = scalar(v);
        if (s && !strcmp(s, "static")) c->uncertainty = 0;
        else if (s && !strcmp(s, "uncertainty")) c->uncertainty = 1;
        else return err_at(x, v, "'loss_weighting' must be static or uncertainty", NULL, NULL);
        return PT_OK;
    }
    if (!strcmp(k, "precision")) {
        const char *s = scalar(v);
        if (s && !strcmp(s, "f32")) c->bf16 = 0;
        else if (s && !strcmp(s, "bf16")) c->bf16 = 1;
        else return err_at(x, v, "'precision' must be f32 or bf16, not '%s'", s ? s : "?", NULL);
        return PT_OK;
    }
    if (!strcmp(k, "distill_weight")) {
        double d = 0;
        int rc = get_f64(x, v, k, 0, 1, &d);
        c->distill = (float)d;
        return rc;
    }
    return 1;
}

/* ---- samples ---- */

static int get_duration(struct cx *x, struct fy_node *v, const char *key, int64_t *out)
{
    const char *s = scalar(v);
    if (!s || time_parse_duration(s, out))
        return err_at(x, v, "'%s' must be a duration such as 45s, 30m, 1h, 3d or 2w", key, NULL);
    return PT_OK;
}

static int table_format_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct samples_table *t = ctx;
    if (!strcmp(k, "delimiter")) {
        int rc = get_str(x, v, k, &t->delim);
        if (rc == PT_OK && (!t->delim[0] || strchr(t->delim, '"')))
            return err_at(x, v, "'delimiter' must be non-empty and hold no quote", NULL, NULL);
        return rc;
    }
    if (!strcmp(k, "header")) return get_bool(x, v, k, &t->header);
    if (!strcmp(k, "columns")) return get_str_list(x, v, k, &t->columns, &t->ncolumns);
    return 1;
}

static int join_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct samples_join *j = ctx;
    if (!strcmp(k, "path")) return path_value(x, v, k, &j->t.path);
    if (!strcmp(k, "format")) return walk(x, v, "samples join format", table_format_pair, &j->t);
    if (!strcmp(k, "key")) return get_str(x, v, k, &j->key);
    if (!strcmp(k, "columns")) return get_str_list(x, v, k, &j->fields, &j->nfields);
    return 1;
}

static int columns_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct samples_cfg *sc = ctx;
    char **dst = !strcmp(k, "user") ? &sc->col_user : !strcmp(k, "item") ? &sc->col_item
               : !strcmp(k, "time") ? &sc->col_time : !strcmp(k, "type") ? &sc->col_type
               : !strcmp(k, "category") ? &sc->col_category : !strcmp(k, "session") ? &sc->col_session : NULL;
    return dst ? get_str(x, v, k, dst) : 1;
}

static int label_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct samples_label *l = ctx;
    if (!strcmp(k, "name")) return get_str(x, v, k, &l->name);
    if (!strcmp(k, "event")) return get_str(x, v, k, &l->event);
    if (!strcmp(k, "window")) return get_duration(x, v, k, &l->window);
    return 1;
}

static int add_labels(struct cx *x, struct samples_cfg *sc, struct fy_node *list)
{
    if (!list || !fy_node_is_sequence(list)) return err_at(x, list, "'samples.labels' must be a list of mappings", NULL, NULL);
    int n = fy_node_sequence_item_count(list);
    if (n < 1 || n > CONFIG_MAX_TASKS) return err_at(x, list, "'samples.labels' needs 1 to 64 labels", NULL, NULL);
    sc->labels = pt_calloc((size_t)n, sizeof *sc->labels);
    if (!sc->labels) return pt_error(PT_ENOMEM, "out of memory");
    void *it = NULL;
    struct fy_node *e;
    while ((e = fy_node_sequence_iterate(list, &it)) != NULL) {
        struct samples_label *l = &sc->labels[sc->nlabels++];
        int rc = walk(x, e, "samples.labels", label_pair, l);
        if (rc) return rc;
        if (!l->name || !l->event || !l->window)
            return err_at(x, e, "each label needs 'name', 'event' and 'window'", NULL, NULL);
    }
    return PT_OK;
}

static int negatives_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct samples_cfg *sc = ctx;
    if (!strcmp(k, "per_exposure")) return get_int(x, v, k, 0, 1000, &sc->neg_k);
    if (!strcmp(k, "label")) return get_str(x, v, k, &sc->neg_label);
    if (!strcmp(k, "seed")) {
        int64_t s = 0;
        int rc = get_i64(x, v, k, 0, INT64_MAX, &s);
        sc->neg_seed = (uint64_t)s;
        return rc;
    }
    if (!strcmp(k, "sampler")) {
        const char *s = scalar(v);
        if (s && !strcmp(s, "uniform")) sc->neg_popularity = 0;
        else if (s && !strcmp(s, "popularity")) sc->neg_popularity = 1;
        else return err_at(x, v, "'sampler' must be uniform or popularity", NULL, NULL);
        return PT_OK;
    }
    return 1;
}

static int sfeatures_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct samples_cfg *sc = ctx;
    if (!strcmp(k, "sequence")) return get_int(x, v, k, 0, 1000, &sc->seq_len);
    if (!strcmp(k, "history")) return get_int(x, v, k, 1, 1 << 20, &sc->history);
    if (!strcmp(k, "prior")) return get_f64(x, v, k, 0, 1e9, &sc->prior);
    if (!strcmp(k, "windows")) {
        if (!v || !fy_node_is_sequence(v)) return err_at(x, v, "'windows' must be a list such as [1h, 1d, 7d, all]", NULL, NULL);
        int n = fy_node_sequence_item_count(v);
        pt_free(sc->windows);
        sc->nwindows = 0;
        if (!(sc->windows = pt_calloc((size_t)n + 1, sizeof *sc->windows))) return pt_error(PT_ENOMEM, "out of memory");
        void *it = NULL;
        struct fy_node *e;
        while ((e = fy_node_sequence_iterate(v, &it)) != NULL) {
            const char *s = scalar(e);
            int64_t w = 0;
            if (!s || (strcmp(s, "all") && time_parse_duration(s, &w)))
                return err_at(x, e, "'windows' entries must be durations (1h, 7d) or all", NULL, NULL);
            sc->windows[sc->nwindows++] = w;
        }
        return PT_OK;
    }
    return 1;
}

static int cutoff(struct cx *x, struct fy_node *v, const char *k, int64_t *out)
{
    const char *s = scalar(v);
    if (!s || time_parse(s, strlen(s), TIME_ISO8601, x->c->samples->tz, out))
        return err_at(x, v, "'%s' must be a date or time such as 2017-12-02 or 2017-12-02T12:00:00Z", k, NULL);
    return PT_OK;
}

static int ssplit_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct samples_cfg *sc = ctx;
    if (!strcmp(k, "valid")) return get_f64(x, v, k, 0, 0.9, &sc->valid_fraction);
    if (!strcmp(k, "test")) return get_f64(x, v, k, 0, 0.9, &sc->test_fraction);
    if (!strcmp(k, "valid_from")) return cutoff(x, v, k, &sc->valid_from);
    if (!strcmp(k, "test_from")) return cutoff(x, v, k, &sc->test_from);
    return 1;
}

static int samples_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct samples_cfg *sc = ctx;
    const char *s = scalar(v);
    if (!strcmp(k, "events")) return path_value(x, v, k, &sc->events.path);
    if (!strcmp(k, "format")) return walk(x, v, "samples.format", table_format_pair, &sc->events);
    if (!strcmp(k, "columns")) return walk(x, v, "samples.columns", columns_pair, sc);
    if (!strcmp(k, "every_line")) return get_str(x, v, k, &sc->every_line);
    if (!strcmp(k, "time_format")) {
        static const char *const names[] = {"auto", "unix", "unix_ms", "iso8601"};
        for (int i = 0; i < 4; i++)
            if (s && !strcmp(s, names[i])) return sc->time_format = i, PT_OK;
        return err_at(x, v, "'time_format' must be auto, unix, unix_ms or iso8601", NULL, NULL);
    }
    if (!strcmp(k, "timezone")) {
        if (!s || time_parse_offset(s, &sc->tz)) return err_at(x, v, "'timezone' must be UTC or an offset such as +08:00", NULL, NULL);
        return PT_OK;
    }
    if (!strcmp(k, "event_types")) return get_str_list(x, v, k, &sc->types, &sc->ntypes);
    if (!strcmp(k, "exposure")) return get_str(x, v, k, &sc->exposure);
    if (!strcmp(k, "purchase")) return get_str(x, v, k, &sc->purchase);
    if (!strcmp(k, "attributes")) return get_str_list(x, v, k, &sc->attrs, &sc->nattrs);
    if (!strcmp(k, "granularity")) {
        if (s && !strcmp(s, "event")) sc->gran = GRAN_EVENT;
        else if (s && !strcmp(s, "session")) sc->gran = GRAN_SESSION;
        else if (s && !strcmp(s, "day")) sc->gran = GRAN_DAY;
        else return err_at(x, v, "'granularity' must be event, session or day", NULL, NULL);
        return PT_OK;
    }
    if (!strcmp(k, "session_gap")) return get_duration(x, v, k, &sc->session_gap);
    if (!strcmp(k, "labels")) return add_labels(x, sc, v);
    if (!strcmp(k, "incomplete")) {
        if (s && !strcmp(s, "drop")) sc->mark_incomplete = 0;
        else if (s && !strcmp(s, "mark")) sc->mark_incomplete = 1;
        else return err_at(x, v, "'incomplete' must be drop or mark", NULL, NULL);
        return PT_OK;
    }
    if (!strcmp(k, "negatives")) return walk(x, v, "samples.negatives", negatives_pair, sc);
    if (!strcmp(k, "features")) return walk(x, v, "samples.features", sfeatures_pair, sc);
    if (!strcmp(k, "items")) return walk(x, v, "samples.items", join_pair, &sc->items);
    if (!strcmp(k, "users")) return walk(x, v, "samples.users", join_pair, &sc->users);
    if (!strcmp(k, "split")) return walk(x, v, "samples.split", ssplit_pair, sc);
    if (!strcmp(k, "cache")) return path_value(x, v, k, &sc->cache);
    if (!strcmp(k, "max_bad_rows")) return get_i64(x, v, k, 0, INT64_MAX, &sc->max_bad_rows);
    return 1;
}

static int type_index(const struct samples_cfg *sc, const char *name)
{
    for (int i = 0; i < sc->ntypes; i++)
        if (!strcmp(sc->types[i], name)) return i;
    return -1;
}

/* The node of key under the samples section, for error lines; the section itself when absent. */
static struct fy_node *at_key(struct fy_node *v, const char *path)
{
    struct fy_node *n = fy_node_by_path(v, path, (size_t)-1, FYNWF_DONT_FOLLOW);
    return n ? n : v;
}

static int parse_samples(struct cx *x, struct fy_node *v)
{
    struct samples_cfg *sc = pt_calloc(1, sizeof *sc);
    if (!sc) return pt_error(PT_ENOMEM, "out of memory");
    x->c->samples = sc;
    sc->events.header = sc->items.t.header = sc->users.t.header = 1;
    sc->session_gap = 30 * 60;
    sc->neg_seed = 1;
    sc->seq_len = 10;
    sc->history = 256;
    sc->prior = 20;
    sc->valid_from = sc->test_from = INT64_MIN;
    /* the zone is needed by split cut-offs, which may come before it */
    struct fy_node *tz = fy_node_by_path(v, "/timezone", (size_t)-1, FYNWF_DONT_FOLLOW);
    if (tz && scalar(tz) && time_parse_offset(scalar(tz), &sc->tz))
        return err_at(x, tz, "'timezone' must be UTC or an offset such as +08:00", NULL, NULL);
    int rc = walk(x, v, "samples", samples_pair, sc);
    if (rc) return rc;
    char *text = fy_emit_node_to_string(v, FYECF_MODE_FLOW_ONELINE); /* libfyaml's malloc */
    sc->text = text ? pt_strdup(text) : NULL;
    free(text);
    if (!sc->text) return pt_error(PT_ENOMEM, "out of memory");
    const char *miss = !sc->events.path ? "events" : !sc->col_user ? "columns.user" : !sc->col_item ? "columns.item"
                     : !sc->col_time ? "columns.time" : !sc->ntypes ? "event_types" : !sc->exposure ? "exposure"
                     : !sc->nlabels && !sc->neg_k ? "labels" : NULL;
    if (miss) return err_at(x, v, "'samples.%s' is missing (see docs/samples.md)", miss, NULL);
    if (!sc->events.header && !sc->events.ncolumns)
        return err_at(x, v, "'samples.format.header' is false but 'samples.format.columns' is not given", NULL, NULL);
    if (!sc->col_type == !sc->every_line)
        return err_at(x, at_key(v, sc->every_line ? "/every_line" : "/columns"), "give 'samples.columns.type' or 'samples.every_line' (one of the two)", NULL, NULL);
    if (sc->every_line && type_index(sc, sc->every_line) < 0)
        return err_at(x, at_key(v, "/every_line"), "'samples.every_line' (%s) is not one of 'event_types'", sc->every_line, NULL);
    if ((sc->exposure_type = type_index(sc, sc->exposure)) < 0)
        return err_at(x, at_key(v, "/exposure"), "'samples.exposure' (%s) is not one of 'event_types'", sc->exposure, NULL);
    sc->purchase_type = sc->purchase ? type_index(sc, sc->purchase) : -1;
    if (sc->purchase && sc->purchase_type < 0)
        return err_at(x, at_key(v, "/purchase"), "'samples.purchase' (%s) is not one of 'event_types'", sc->purchase, NULL);
    for (int i = 0; i < sc->nlabels; i++) {
        struct samples_label *l = &sc->labels[i];
        char path[32];
        snprintf(path, sizeof path, "/labels/%d", i);
        if ((l->type = type_index(sc, l->event)) < 0)
            return err_at(x, at_key(v, path), "label '%s': event '%s' is not one of 'event_types'", l->name, l->event);
        for (int j = 0; j < i; j++)
            if (!strcmp(sc->labels[j].name, l->name)) return err_at(x, at_key(v, path), "label '%s' is given twice", l->name, NULL);
    }
    if (sc->neg_k && !sc->neg_label && !(sc->neg_label = pt_strdup("click"))) return pt_error(PT_ENOMEM, "out of memory");
    if (!sc->nwindows) {
        static const int64_t def[] = {3600, 86400, 7 * 86400, 0};
        if (!(sc->windows = pt_malloc(sizeof def))) return pt_error(PT_ENOMEM, "out of memory");
        memcpy(sc->windows, def, sizeof def);
        sc->nwindows = 4;
    }
    if (sc->seq_len > sc->history) return err_at(x, v, "'samples.features.sequence' must not exceed 'history'", NULL, NULL);
    for (int j = 0; j < 2; j++) {
        struct samples_join *jn = j ? &sc->users : &sc->items;
        if ((jn->t.path || jn->key || jn->nfields) && (!jn->t.path || !jn->key || !jn->nfields))
            return err_at(x, v, "'samples.%s' needs 'path', 'key' and 'columns'", j ? "users" : "items", NULL);
        if (jn->t.path && !jn->t.header && !jn->t.ncolumns)
            return err_at(x, v, "'samples.%s.format.header' is false but no 'columns' are given", j ? "users" : "items", NULL);
    }
    if ((sc->valid_from != INT64_MIN || sc->test_from != INT64_MIN) && (sc->valid_fraction > 0 || sc->test_fraction > 0))
        return err_at(x, v, "'samples.split': give fractions (valid, test) or dates (valid_from, test_from), not both", NULL, NULL);
    if (sc->valid_from != INT64_MIN && sc->test_from != INT64_MIN && sc->test_from < sc->valid_from)
        return err_at(x, v, "'samples.split.test_from' is before 'valid_from'", NULL, NULL);
    if (sc->valid_fraction + sc->test_fraction >= 0.95)
        return err_at(x, v, "'samples.split' leaves too little for training", NULL, NULL);
    if (!sc->cache) {
        /* beside the config: <name>.samples/ */
        const char *base = strrchr(x->c->path, '/');
        base = base ? base + 1 : x->c->path;
        size_t n = strcspn(base, ".");
        char rel[512];
        snprintf(rel, sizeof rel, "%.*s.samples", (int)(n < 400 ? n : 400), base);
        if (!(sc->cache = pt_path_join(x->c->dir, rel))) return pt_error(PT_ENOMEM, "out of memory");
    }
    return PT_OK;
}

/* ---- recommend ---- */

static int rec_columns_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct rec_cfg *r = ctx;
    char **dst = !strcmp(k, "user") ? &r->col_user : !strcmp(k, "item") ? &r->col_item
               : !strcmp(k, "time") ? &r->col_time : !strcmp(k, "weight") ? &r->col_weight
               : !strcmp(k, "type") ? &r->col_type : NULL;
    return dst ? get_str(x, v, k, dst) : 1;
}

static int rec_weights(struct cx *x, struct rec_cfg *r, struct fy_node *v)
{
    if (!v || !fy_node_is_mapping(v))
        return err_at(x, v, "'event_weights' must map event types to weights, e.g. {view: 1, purchase: 4}", NULL, NULL);
    int n = fy_node_mapping_item_count(v);
    if (n < 1) return err_at(x, v, "'event_weights' is empty", NULL, NULL);
    r->wtypes = pt_calloc((size_t)n, sizeof *r->wtypes);
    r->wvalues = pt_calloc((size_t)n, sizeof *r->wvalues);
    if (!r->wtypes || !r->wvalues) return pt_error(PT_ENOMEM, "out of memory");
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(v, &it))) {
        const char *name = scalar(fy_node_pair_key(p));
        if (!name) return err_at(x, fy_node_pair_key(p), "'event_weights' keys must be event types", NULL, NULL);
        if (!(r->wtypes[r->nwtypes] = pt_strdup(name))) return pt_error(PT_ENOMEM, "out of memory");
        int rc = get_f64(x, fy_node_pair_value(p), name, 0, 1e6, &r->wvalues[r->nwtypes]);
        r->nwtypes++;
        if (rc) return rc;
    }
    return PT_OK;
}

static int rec_format_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct rec_cfg *r = ctx;
    if (!strcmp(k, "type")) {
        const char *s = scalar(v);
        if (s && !strcmp(s, "csv")) r->jsonl = 0;
        else if (s && !strcmp(s, "jsonl")) r->jsonl = 1;
        else return err_at(x, v, "'type' must be csv or jsonl", NULL, NULL);
        return PT_OK;
    }
    return table_format_pair(x, k, v, &r->in);
}

static int rec_in_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct rec_cfg *r = ctx;
    const char *s = scalar(v);
    if (!strcmp(k, "path")) {
        /* one file, or a list read one after another (each with its header) */
        int rc = get_str_list(x, v, k, &r->paths, &r->npaths);
        if (!rc && !r->npaths) return err_at(x, v, "'path' lists no file", NULL, NULL);
        for (int i = 0; !rc && i < r->npaths; i++) {
            char *abs = pt_path_join(x->c->dir, r->paths[i]);
            if (!abs) return pt_error(PT_ENOMEM, "out of memory");
            pt_free(r->paths[i]);
            r->paths[i] = abs;
        }
        if (!rc && !(r->in.path = pt_strdup(r->paths[0]))) return pt_error(PT_ENOMEM, "out of memory");
        return rc;
    }
    if (!strcmp(k, "format")) return walk(x, v, "recommend.interactions.format", rec_format_pair, r);
    if (!strcmp(k, "columns")) return walk(x, v, "recommend.interactions.columns", rec_columns_pair, r);
    if (!strcmp(k, "time_format")) {
        static const char *const names[] = {"auto", "unix", "unix_ms", "iso8601"};
        for (int i = 0; i < 4; i++)
            if (s && !strcmp(s, names[i])) return r->time_format = i, PT_OK;
        return err_at(x, v, "'time_format' must be auto, unix, unix_ms or iso8601", NULL, NULL);
    }
    if (!strcmp(k, "timezone")) {
        if (!s || time_parse_offset(s, &r->tz)) return err_at(x, v, "'timezone' must be UTC or an offset such as +08:00", NULL, NULL);
        return PT_OK;
    }
    if (!strcmp(k, "event_weights")) return rec_weights(x, r, v);
    if (!strcmp(k, "max_bad_rows")) return get_i64(x, v, k, 0, INT64_MAX, &r->max_bad_rows);
    return 1;
}

static int rec_items_columns_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct rec_cfg *r = ctx;
    char **dst = !strcmp(k, "id") ? &r->item_id : !strcmp(k, "category") ? &r->item_category
               : !strcmp(k, "brand") ? &r->item_brand : !strcmp(k, "price") ? &r->item_price
               : !strcmp(k, "title") ? &r->item_title : NULL;
    return dst ? get_str(x, v, k, dst) : 1;
}

static int rec_items_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct rec_cfg *r = ctx;
    if (!strcmp(k, "path")) {
        int rc = get_str_list(x, v, k, &r->item_paths, &r->nitem_paths);
        if (!rc && !r->nitem_paths) return err_at(x, v, "'path' lists no file", NULL, NULL);
        for (int i = 0; !rc && i < r->nitem_paths; i++) {
            char *abs = pt_path_join(x->c->dir, r->item_paths[i]);
            if (!abs) return pt_error(PT_ENOMEM, "out of memory");
            pt_free(r->item_paths[i]);
            r->item_paths[i] = abs;
        }
        if (!rc && !(r->items.path = pt_strdup(r->item_paths[0]))) return pt_error(PT_ENOMEM, "out of memory");
        return rc;
    }
    if (!strcmp(k, "format")) return walk(x, v, "recommend.items.format", table_format_pair, &r->items);
    if (!strcmp(k, "columns")) return walk(x, v, "recommend.items.columns", rec_items_columns_pair, r);
    return 1;
}

static int rec_eval_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct rec_cfg *r = ctx;
    const char *s = scalar(v);
    if (!strcmp(k, "protocol")) {
        if (s && !strcmp(s, "leave_last_out")) r->protocol = REC_LEAVE_LAST;
        else if (s && !strcmp(s, "time_split")) r->protocol = REC_TIME_SPLIT;
        else return err_at(x, v, "'protocol' must be leave_last_out or time_split", NULL, NULL);
        return PT_OK;
    }
    if (!strcmp(k, "test_from")) {
        if (!s || time_parse(s, strlen(s), TIME_ISO8601, r->tz, &r->test_from))
            return err_at(x, v, "'%s' must be a date or time such as 2010-11-01 or 2010-11-01T12:00:00Z", k, NULL);
        return PT_OK;
    }
    if (!strcmp(k, "k")) return get_int(x, v, k, 1, 10000, &r->k);
    return 1;
}

static int rec_cold_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct rec_cfg *r = ctx;
    if (!strcmp(k, "min_history")) return get_int(x, v, k, 0, 1 << 20, &r->cold_min_history);
    if (!strcmp(k, "blend")) return get_f64(x, v, k, 0, 1, &r->cold_blend);
    return 1;
}

static int rec_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    struct rec_cfg *r = ctx;
    const char *s = scalar(v);
    if (!strcmp(k, "interactions")) {
        if (s && !strcmp(s, "samples")) return PT_OK; /* the samples: section's event log */
        return walk(x, v, "recommend.interactions", rec_in_pair, r);
    }
    if (!strcmp(k, "items")) return walk(x, v, "recommend.items", rec_items_pair, r);
    if (!strcmp(k, "model")) {
        static const char *const names[] = {"popularity", "item2item", "bpr", "warp", "softmax", "two_tower"};
        for (int i = 0; i < 6; i++)
            if (s && !strcmp(s, names[i])) return r->model = (enum rec_kind)i, PT_OK;
        return err_at(x, v, "'model' must be popularity, item2item, bpr, warp, softmax or two_tower", NULL, NULL);
    }
    if (!strcmp(k, "dim")) return get_int(x, v, k, 1, 4096, &r->dim);
    if (!strcmp(k, "epochs")) return get_int(x, v, k, 0, 100000, &r->epochs);
    if (!strcmp(k, "batch")) return get_int(x, v, k, 1, 1 << 20, &r->batch);
    if (!strcmp(k, "negatives")) return get_int(x, v, k, 0, 4096, &r->negatives);
    if (!strcmp(k, "lr")) return get_f64(x, v, k, 1e-9, 100, &r->lr);
    if (!strcmp(k, "l2")) return get_f64(x, v, k, 0, 100, &r->l2);
    if (!strcmp(k, "seed")) {
        int64_t sd;
        int rc = get_i64(x, v, k, 0, INT64_MAX, &sd);
        if (!rc) r->seed = (uint64_t)sd;
        return rc;
    }
    if (!strcmp(k, "threads")) return get_int(x, v, k, 0, 1024, &r->threads);
    if (!strcmp(k, "half_life")) return get_duration(x, v, k, &r->half_life);
    if (!strcmp(k, "popularity_half_life")) return get_duration(x, v, k, &r->pop_half_life);
    if (!strcmp(k, "neighbours")) return get_int(x, v, k, 1, 1 << 20, &r->neighbours);
    if (!strcmp(k, "alpha")) return get_f64(x, v, k, 0, 1, &r->alpha);
    if (!strcmp(k, "pair_window")) return get_duration(x, v, k, &r->pair_window);
    if (!strcmp(k, "history")) return get_int(x, v, k, 1, 1024, &r->history);
    if (!strcmp(k, "content_weight")) return get_f64(x, v, k, 0, 10, &r->content_weight);
    if (!strcmp(k, "cold_start")) return walk(x, v, "recommend.cold_start", rec_cold_pair, r);
    if (!strcmp(k, "eval")) return walk(x, v, "recommend.eval", rec_eval_pair, r);
    if (!strcmp(k, "exclude_seen")) return get_bool(x, v, k, &r->exclude_seen);
    return 1;
}

static int parse_rec(struct cx *x, struct fy_node *v)
{
    struct rec_cfg *r = pt_calloc(1, sizeof *r);
    if (!r) return pt_error(PT_ENOMEM, "out of memory");
    x->c->rec = r;
    r->in.header = 1;
    r->items.header = 1;
    r->model = REC_ITEM2ITEM;
    r->dim = 64;
    r->epochs = 30;
    r->batch = 1024;
    r->negatives = 1;
    r->lr = 0.005;
    r->l2 = 1e-4;
    r->seed = 1;
    r->neighbours = 200;
    r->half_life = 86400;
    r->content_weight = 0.5;
    r->alpha = 0.5;
    r->history = 3;
    r->cold_min_history = 0;
    r->cold_blend = 0.5;
    r->protocol = REC_LEAVE_LAST;
    r->test_from = INT64_MIN;
    r->k = 10;
    r->exclude_seen = 1;
    int rc = walk(x, v, "recommend", rec_pair, r);
    if (rc) return rc;
    if (r->in.path) {
        if (!r->col_user) r->col_user = pt_strdup("user_id");
        if (!r->col_item) r->col_item = pt_strdup("item_id");
        if (!r->col_user || !r->col_item) return pt_error(PT_ENOMEM, "out of memory");
        if (!r->in.header && !r->in.ncolumns)
            return err_at(x, v, "'recommend.interactions.format.header' is false but no 'columns' are given", NULL, NULL);
    }
    if (r->nwtypes && !r->col_type && r->in.path)
        return err_at(x, v, "'event_weights' needs a 'columns.type' column", NULL, NULL);
    if (r->negatives < 1 && (r->model == REC_BPR || r->model == REC_WARP || r->model == REC_SOFTMAX))
        return err_at(x, v, "'negatives' must be at least 1 for bpr, warp and softmax", NULL, NULL);
    if (r->items.path && !r->item_id)
        return err_at(x, v, "'recommend.items.columns.id' is missing", NULL, NULL);
    return PT_OK;
}

static int top_pair(struct cx *x, const char *k, struct fy_node *v, void *ctx)
{
    if (!strcmp(k, "data")) return walk(x, v, "data", data_pair, NULL);
    if (!strcmp(k, "features")) {
        int rc = need_map(x, v, "features");
        if (!rc) rc = features_pass(x, v, 1);
        if (!rc) rc = features_pass(x, v, 0);
        return rc;
    }
    if (!strcmp(k, "tasks")) return add_tasks(x, v);
    if (!strcmp(k, "model")) return walk(x, v, "model", model_pair, NULL);
    if (!strcmp(k, "train")) return walk(x, v, "train", train_pair, NULL);
    if (!strcmp(k, "samples")) return parse_samples(x, v);
    if (!strcmp(k, "recommend")) return parse_rec(x, v);
    return 1;
}

static void config_defaults(struct cx *x)
{
    struct pt_config *c = x->c;
    c->header = 1;
    c->valid_fraction = 0;
    c->test_fraction = 0;
    c->split_seed = 1;
    c->model = MODEL_MLP;
    c->epochs = 5;
    c->batch = 2048;
    c->optimizer = OPTIM_ADAM;
    c->lr = 1e-3f;
    c->seed = 1;
    c->threads = 0;
    c->es_patience = 2;
    c->experts = 4;
    c->shared_experts = 2;
    c->levels = 1;
    c->distill = 0.5f;
    for (int k = 0; k < 3; k++) {
        struct feat_cfg *f = &x->fdef[k];
        memset(f, 0, sizeof *f);
        f->dim = 16;
        f->min_count = 1;
        f->impute = IMPUTE_NONE;
        f->transform = NUM_STANDARDIZE;
        f->buckets = 10;
        f->pool_mean = 1;
    }
}

/* Checks across sections, after everything is read. */
static int config_check(struct cx *x, struct fy_node *root)
{
    struct pt_config *c = x->c;
    struct samples_cfg *sc = c->samples;
    if (c->rec && !c->rec->in.path && !sc)
        return pt_error_at(PT_ECONFIG, x->path, 0, "'recommend.interactions' needs a path (or 'samples' with a samples: section)");
    /* a recommend-only config is for `recommend train` */
    if (c->rec && !c->ntasks && !c->nfeats && !c->train) return PT_OK;
    /* a samples-only config is for `build`; pt_train asks for tasks and features */
    if (sc && !c->ntasks && !c->nfeats && !c->train) return PT_OK;
    if (sc && !c->train) {
        /* train reads what build writes into the cache folder */
        c->built = 1;
        int v = sc->valid_fraction > 0 || sc->valid_from != INT64_MIN, t = sc->test_fraction > 0 || sc->test_from != INT64_MIN;
        if (!(c->train = pt_path_join(sc->cache, "train.csv")) || (v && !(c->valid = pt_path_join(sc->cache, "valid.csv"))) ||
            (t && !(c->test = pt_path_join(sc->cache, "test.csv"))))
            return pt_error(PT_ENOMEM, "out of memory");
    }
    if (!c->train) return pt_error_at(PT_ECONFIG, x->path, 0, "'data.train' is missing");
    if (!c->ntasks) return pt_error_at(PT_ECONFIG, x->path, 0, "'tasks' is missing");
    if (!c->nfeats) return pt_error_at(PT_ECONFIG, x->path, 0, "'features' lists no feature");
    if (!c->header && !c->ncolumns)
        return pt_error_at(PT_ECONFIG, x->path, 0, "'data.format.header' is false but 'data.format.columns' is not given");
    if (c->valid && c->valid_fraction > 0)
        return pt_error_at(PT_ECONFIG, x->path, 0, "give either 'data.valid' or 'data.split.valid', not both");
    if (c->test && c->test_fraction > 0)
        return pt_error_at(PT_ECONFIG, x->path, 0, "give either 'data.test' or 'data.split.test', not both");
    if (c->valid_fraction + c->test_fraction >= 0.95)
        return pt_error_at(PT_ECONFIG, x->path, 0, "'data.split' leaves too little for training");
    for (int t = 0; t < c->ntasks; t++)
        for (int f = 0; f < c->nfeats; f++)
            if (!strcmp(c->tasks[t].label, c->feats[f].name))
                return pt_error_at(PT_ECONFIG, x->path, 0, "column '%s' is both a label and a feature (that leaks the label)", c->feats[f].name);
    if (c->ntasks > CONFIG_MAX_TASKS)
        return pt_error_at(PT_ECONFIG, x->path, 0, "at most %d tasks", CONFIG_MAX_TASKS);
    for (int t = 0; t < c->ntasks; t++) {
        struct task_cfg *tc = &c->tasks[t];
        tc->only_when_task = -1;
        if (!tc->only_when) continue;
        tc->only_when_task = config_task_index(c, tc->only_when);
        if (tc->only_when_task < 0 || tc->only_when_task == t || c->tasks[tc->only_when_task].type != TASK_BINARY)
            return pt_error_at(PT_ECONFIG, x->path, 0, "task '%s': only_when must name another binary task, not '%s'",
                               tc->name, tc->only_when);
    }
    if (c->model == MODEL_ESMM) {
        if (c->ntasks != 2 || c->tasks[0].type != TASK_BINARY || c->tasks[1].type != TASK_BINARY)
            return pt_error_at(PT_ECONFIG, x->path, 0, "esmm needs exactly two binary tasks: CTR first, then CVR");
    }
    if (c->model == MODEL_PLE && c->experts + c->shared_experts < 1)
        return pt_error_at(PT_ECONFIG, x->path, 0, "ple needs at least one expert");
    /* a level's shared gate mixes every expert of the level */
    if (c->model == MODEL_PLE && c->ntasks * c->experts + c->shared_experts > CONFIG_MAX_GATE)
        return pt_error_at(PT_ECONFIG, x->path, 0, "ple with %d tasks has %d experts per level, at most %d",
                           c->ntasks, c->ntasks * c->experts + c->shared_experts, CONFIG_MAX_GATE);
    if (!c->nexpert_dims) {
        c->expert_dims = pt_malloc(2 * sizeof(int));
        if (!c->expert_dims) return pt_error(PT_ENOMEM, "out of memory");
        c->expert_dims[0] = 256, c->expert_dims[1] = 128;
        c->nexpert_dims = 2;
    }
    if (!c->ntower_dims && !c->tower_dims) {
        c->tower_dims = pt_malloc(sizeof(int));
        if (!c->tower_dims) return pt_error(PT_ENOMEM, "out of memory");
        c->tower_dims[0] = 64;
        c->ntower_dims = 1;
    }
    if (c->model == MODEL_MLP && !c->hidden) {
        c->hidden = pt_malloc(3 * sizeof(int));
        if (!c->hidden) return pt_error(PT_ENOMEM, "out of memory");
        c->hidden[0] = 256, c->hidden[1] = 128, c->hidden[2] = 64;
        c->nhidden = 3;
    }
    if (c->es_watch) {
        /* valid.<task|mean>.<metric> */
        char *s = c->es_watch;
        char *d1 = strchr(s, '.'), *d2 = d1 ? strrchr(d1 + 1, '.') : NULL;
        int ok = d1 && d2 && !strncmp(s, "valid.", 6);
        if (ok) {
            char task[256];
            size_t n = (size_t)(d2 - d1 - 1);
            ok = n < sizeof task;
            if (ok) {
                memcpy(task, d1 + 1, n);
                task[n] = 0;
                ok = !strcmp(task, "mean") || config_task_index(c, task) >= 0;
            }
            const char *m = d2 + 1;
            ok = ok && (!strcmp(m, "auc") || !strcmp(m, "logloss") ||
                        !strcmp(m, "rmse") || !strcmp(m, "mae") || !strcmp(m, "loss"));
        }
        if (!ok)
            return pt_error_at(PT_ECONFIG, x->path, 0,
                               "'train.early_stopping.watch' must be valid.<task or mean>.<auc|logloss|rmse|mae|loss>, not '%s'",
                               s);
    }
    (void)root;
    return PT_OK;
}

int config_task_index(const struct pt_config *c, const char *name)
{
    for (int i = 0; i < c->ntasks; i++)
        if (!strcmp(c->tasks[i].name, name)) return i;
    return -1;
}

/* Offset of the first byte that is not well-formed UTF-8 (overlong forms,
 * surrogates and code points past U+10FFFF included) or is a C0 control
 * other than tab, LF and CR (YAML allows none), or len if none. Checked
 * before libfyaml 0.7.12 sees the text: it loops forever on malformed UTF-8
 * in a directive line ("%k \x80") and crashes on some NUL bytes. */
static size_t text_bad(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char b = s[i];
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (b < 0x20 && b != '\t' && b != '\n' && b != '\r') return i;
        if (b < 0x80) n = 0;
        else if (b >= 0xc2 && b <= 0xdf) n = 1;
        else if (b >= 0xe0 && b <= 0xef) {
            n = 2;
            if (b == 0xe0) lo = 0xa0;
            if (b == 0xed) hi = 0x9f;
        } else if (b >= 0xf0 && b <= 0xf4) {
            n = 3;
            if (b == 0xf0) lo = 0x90;
            if (b == 0xf4) hi = 0x8f;
        } else
            return i;
        if (n && (len - i <= n || s[i + 1] < lo || s[i + 1] > hi)) return i;
        for (size_t k = 2; k <= n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf) return i;
        i += n + 1;
    }
    return len;
}

/* Only blanks and comments: libfyaml builds no document for it. */
static int blank_yaml(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '#')
            while (i < n && s[i] != '\n') i++;
        else if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    }
    return 1;
}

/* No document: a syntax error (collected in diag, its line already
 * 1-based) or a stream with no document at all. */
static int yaml_error(const char *path, struct fy_diag *diag, const char *text, size_t len)
{
    void *it = NULL;
    struct fy_diag_error *e = diag ? fy_diag_errors_iterate(diag, &it) : NULL;
    if (e) return pt_error_at(PT_ECONFIG, path, e->line, "YAML: %s", e->msg ? e->msg : "syntax error");
    if (blank_yaml(text, len)) return pt_error_at(PT_ECONFIG, path, 0, "the config is empty");
    return pt_error_at(PT_ECONFIG, path, 0, "not valid YAML");
}

int config_parse(const char *text, size_t len, const char *path, struct pt_config **out)
{
    *out = NULL;
    struct cx x = {.path = path};
    struct pt_config *c = pt_calloc(1, sizeof *c);
    struct fy_document *doc = NULL;
    struct fy_diag *diag = NULL;
    int rc = PT_ENOMEM;
    if (!c) return pt_error(PT_ENOMEM, "out of memory");
    x.c = c;
    config_defaults(&x);
    if (!(c->path = pt_strdup(path)) || !(c->dir = pt_path_dir(path)) || !(c->yaml = pt_strndup(text, len)))
        goto fail;

    size_t bad = text_bad((const unsigned char *)text, len);
    if (bad < len) {
        long line = 1;
        for (size_t i = 0; i < bad; i++) line += text[i] == '\n';
        unsigned char b = (unsigned char)text[bad];
        if (b < 0x20)
            rc = pt_error_at(PT_ECONFIG, path, line, "control character 0x%02x (byte %zu) is not allowed", b, bad + 1);
        else
            rc = pt_error_at(PT_ECONFIG, path, line, "not valid UTF-8 (byte %zu)", bad + 1);
        goto fail;
    }

    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = NULL;
    diag = fy_diag_create(&dcfg);
    if (!diag) goto fail;
    /* keep errors for yaml_error() instead of printing them */
    fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG, .diag = diag};
    doc = fy_document_build_from_string(&pcfg, c->yaml, len);
    if (!doc) {
        rc = yaml_error(path, diag, c->yaml, len);
        goto fail;
    }
    struct fy_node *root = fy_document_root(doc);
    if (!root) {
        rc = pt_error_at(PT_ECONFIG, path, 0, "the config is empty");
        goto fail;
    }
    rc = walk(&x, root, "the config", top_pair, NULL);
    if (rc) goto fail;
    rc = config_check(&x, root);
fail:
    if (rc == PT_ENOMEM) pt_error(PT_ENOMEM, "out of memory");
    /* the per-kind defaults may hold a name or sep of their own (features.defaults.*) */
    for (int k = 0; k < 3; k++) {
        pt_free(x.fdef[k].sep);
        pt_free(x.fdef[k].name);
    }
    if (doc) fy_document_destroy(doc);
    if (diag) fy_diag_destroy(diag);
    if (rc) {
        pt_config_free(c);
        return rc;
    }
    *out = c;
    return PT_OK;
}

int pt_config_load(const char *path, pt_config **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return pt_error_at(PT_EIO, path, 0, "cannot open config: %s", strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = PT_OK;
    for (;;) {
        if (n + 4096 > cap) {
            if (cap > (1u << 24)) {
                rc = pt_error_at(PT_ECONFIG, path, 0, "config larger than 16 MiB");
                break;
            }
            cap = cap ? cap * 2 : 8192;
            char *nb = pt_realloc(buf, cap);
            if (!nb) {
                rc = pt_error(PT_ENOMEM, "out of memory");
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) rc = pt_error_at(PT_EIO, path, 0, "read error");
            break;
        }
    }
    fclose(f);
    if (rc == PT_OK) rc = config_parse(buf, n, path, out);
    pt_free(buf);
    return rc;
}

static void free_strs(char **s, int n)
{
    if (!s) return;
    for (int i = 0; i < n; i++) pt_free(s[i]);
    pt_free(s);
}

static void table_free(struct samples_table *t)
{
    pt_free(t->path);
    pt_free(t->delim);
    free_strs(t->columns, t->ncolumns);
}

static void samples_free(struct samples_cfg *sc)
{
    if (!sc) return;
    table_free(&sc->events);
    pt_free(sc->col_user), pt_free(sc->col_item), pt_free(sc->col_time);
    pt_free(sc->col_type), pt_free(sc->col_category), pt_free(sc->col_session);
    pt_free(sc->every_line);
    free_strs(sc->types, sc->ntypes);
    pt_free(sc->exposure), pt_free(sc->purchase);
    free_strs(sc->attrs, sc->nattrs);
    for (int i = 0; i < sc->nlabels; i++) pt_free(sc->labels[i].name), pt_free(sc->labels[i].event);
    pt_free(sc->labels);
    pt_free(sc->neg_label);
    pt_free(sc->windows);
    for (int j = 0; j < 2; j++) {
        struct samples_join *jn = j ? &sc->users : &sc->items;
        table_free(&jn->t);
        pt_free(jn->key);
        free_strs(jn->fields, jn->nfields);
    }
    pt_free(sc->cache);
    pt_free(sc->text);
    pt_free(sc);
}

static void rec_free(struct rec_cfg *r)
{
    if (!r) return;
    table_free(&r->in);
    free_strs(r->paths, r->npaths);
    free_strs(r->item_paths, r->nitem_paths);
    pt_free(r->col_user), pt_free(r->col_item), pt_free(r->col_time), pt_free(r->col_weight), pt_free(r->col_type);
    free_strs(r->wtypes, r->nwtypes);
    pt_free(r->wvalues);
    table_free(&r->items);
    pt_free(r->item_id), pt_free(r->item_category), pt_free(r->item_brand), pt_free(r->item_price), pt_free(r->item_title);
    pt_free(r);
}

void pt_config_free(pt_config *c)
{
    if (!c) return;
    pt_free(c->path);
    pt_free(c->dir);
    pt_free(c->yaml);
    pt_free(c->train);
    pt_free(c->valid);
    pt_free(c->test);
    pt_free(c->delim);
    free_strs(c->columns, c->ncolumns);
    free_strs(c->keys, c->nkeys);
    for (int i = 0; i < c->nfeats; i++) {
        pt_free(c->feats[i].name);
        pt_free(c->feats[i].sep);
    }
    pt_free(c->feats);
    for (int i = 0; i < c->ntasks; i++) {
        pt_free(c->tasks[i].name);
        pt_free(c->tasks[i].label);
        free_strs(c->tasks[i].positive, c->tasks[i].npositive);
        pt_free(c->tasks[i].only_when);
    }
    pt_free(c->tasks);
    pt_free(c->hidden);
    pt_free(c->expert_dims);
    pt_free(c->tower_dims);
    pt_free(c->es_watch);
    samples_free(c->samples);
    rec_free(c->rec);
    pt_free(c);
}
