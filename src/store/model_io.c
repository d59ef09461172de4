/* model_io.c: model ↔ model file. Metadata carries everything needed to
 * rebuild the model without the training data: the config text, the learned
 * schema (vocabularies, statistics), metrics and the engine version. */
#include <string.h>
#include <time.h>

#include "nn/nn.h"
#include "store/model_io.h"
#include "util/util.h"

/* NULL with the error set and its code in *rc: out of memory, or a
 * vocabulary entry JSON cannot hold. */
static json_t *meta_json(const struct model *m, const struct checkpoint *ck, int *rc)
{
    const struct pt_config *c = m->cfg;
    json_t *meta = json_object();
    *rc = PT_ENOMEM;
    if (!meta) {
        pt_error(PT_ENOMEM, "out of memory");
        return NULL;
    }
    json_object_set_new(meta, "format", json_string("polytask-model"));
    json_object_set_new(meta, "engine_version", json_string(pt_version()));
    json_object_set_new(meta, "created_unix", json_integer((json_int_t)time(NULL)));
    json_object_set_new(meta, "config_path", json_string(c->path));
    json_object_set_new(meta, "config_yaml", json_string(c->yaml));
    json_t *schema;
    if ((*rc = schema_json(m->schema, &schema))) {
        json_decref(meta);
        return NULL;
    }
    json_object_set_new(meta, "schema", schema);
    json_t *model = json_object(), *tasks = json_array();
    json_object_set_new(model, "kind", json_string(model_kind_name(c->model)));
    json_object_set_new(model, "params", json_integer((json_int_t)m->total));
    for (int t = 0; t < c->ntasks; t++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(c->tasks[t].name));
        json_object_set_new(o, "type", json_string(c->tasks[t].type == TASK_BINARY ? "binary" : "regression"));
        json_array_append_new(tasks, o);
    }
    json_object_set_new(model, "tasks", tasks);
    json_object_set_new(meta, "model", model);
    if (m->metrics_json) json_object_set_new(meta, "metrics", json_loads(m->metrics_json, 0, NULL));
    if (m->train_report) json_object_set_new(meta, "train", json_loads(m->train_report, 0, NULL));
    if (ck && ck->state) json_object_set(meta, "checkpoint", ck->state);
    return meta;
}

int model_write(const struct model *m, const char *path, const struct checkpoint *ck)
{
    int copies = ck ? 4 : 1, rc;
    size_t n = (size_t)m->nparams * (size_t)copies;
    struct mf_tensor *t = pt_calloc(n + 1, sizeof *t);
    json_t *meta = meta_json(m, ck, &rc);
    char *mj = meta ? json_dumps(meta, JSON_COMPACT) : NULL;
    if (!meta) goto done;
    if (!t || !mj) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    static const char *const prefix[4] = {"", "opt.m.", "opt.v.", "best."};
    const float *src[4] = {m->w, m->m, m->v, ck ? ck->best : NULL};
    size_t k = 0;
    for (int c = 0; c < copies; c++) {
        if (!src[c]) continue;
        for (int i = 0; i < m->nparams; i++, k++) {
            const struct param *p = &m->p[i];
            size_t len = strlen(prefix[c]) + strlen(p->name) + 1;
            if (!(t[k].name = pt_malloc(len))) {
                rc = pt_error(PT_ENOMEM, "out of memory");
                goto done;
            }
            snprintf(t[k].name, len, "%s%s", prefix[c], p->name);
            t[k].data = (float *)(src[c] + p->off);
            /* biases and other vectors are 1-D; weight matrices stay 2-D even
             * with one row (a logit layer), as PyTorch stores them */
            int vec = p->init == INIT_ZERO;
            t[k].ndim = vec ? 1 : 2;
            t[k].shape[0] = vec ? p->cols : p->rows;
            t[k].shape[1] = p->cols;
        }
    }
    rc = modelfile_write(path, mj, t, k);
done:
    if (t)
        for (size_t i = 0; i < n; i++) pt_free(t[i].name);
    pt_free(t);
    free(mj);
    json_decref(meta);
    return rc;
}

int model_copy_tensors(const struct model *m, const struct mf_file *f, const char *prefix, float *dst,
                       const char *path)
{
    char name[1024];
    for (int i = 0; i < m->nparams; i++) {
        const struct param *p = &m->p[i];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        const struct mf_tensor *t = modelfile_find(f, name);
        if (!t) return pt_error_at(PT_ESCHEMA, path, 0, "tensor '%s' is missing", name);
        if (t->dtype != MF_F32) return pt_error_at(PT_ESCHEMA, path, 0, "tensor '%s' is not F32", name);
        int64_t cnt = 1;
        for (int d = 0; d < t->ndim; d++) cnt *= t->shape[d];
        if (cnt != p->rows * p->cols)
            return pt_error_at(PT_ESCHEMA, path, 0, "tensor '%s' has %lld values, the model needs %lld", name,
                               (long long)cnt, (long long)(p->rows * p->cols));
        memcpy(dst + p->off, t->data, (size_t)cnt * sizeof(float));
    }
    return PT_OK;
}

int model_read(const char *path, struct model **out, struct mf_file **file)
{
    struct mf_file *f = NULL;
    struct pt_config *cfg = NULL;
    struct schema *s = NULL;
    struct model *m = NULL;
    json_t *meta = NULL;
    json_error_t jerr;
    *out = NULL;
    if (file) *file = NULL;
    int rc = modelfile_read(path, &f);
    if (rc) return rc;
    meta = json_loads(f->meta_json, 0, &jerr);
    const char *fmt = json_string_value(json_object_get(meta, "format"));
    const char *yaml = json_string_value(json_object_get(meta, "config_yaml"));
    const char *cpath = json_string_value(json_object_get(meta, "config_path"));
    json_t *schema = json_object_get(meta, "schema");
    if (!meta || !fmt || strcmp(fmt, "polytask-model") || !yaml || !cpath || !json_is_object(schema)) {
        rc = pt_error_at(PT_EFORMAT, path, 0, "metadata lacks the config or schema of a polytask model");
        goto fail;
    }
    if ((rc = config_parse(yaml, strlen(yaml), cpath, &cfg))) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", pt_errmsg());
        rc = pt_error_at(PT_EFORMAT, path, 0, "stored config does not load: %s", msg);
        goto fail;
    }
    if ((rc = schema_create(&s, cfg))) goto fail;
    if ((rc = schema_load_json(s, schema, path))) goto fail;
    if ((rc = model_create(&m, cfg, s, 0))) goto fail;
    m->owns_cfg = 1;
    cfg = NULL;
    s = NULL;
    if ((rc = model_copy_tensors(m, f, "", m->w, path))) goto fail;
    json_t *metrics = json_object_get(meta, "metrics"), *train = json_object_get(meta, "train");
    if (metrics && !(m->metrics_json = json_dumps(metrics, JSON_COMPACT))) { rc = pt_error(PT_ENOMEM, "out of memory"); goto fail; }
    if (train && !(m->train_report = json_dumps(train, JSON_COMPACT))) { rc = pt_error(PT_ENOMEM, "out of memory"); goto fail; }
    json_decref(meta);
    if (file) *file = f;
    else modelfile_free(f);
    *out = m;
    return PT_OK;
fail:
    json_decref(meta);
    model_destroy(m);
    schema_free(s);
    pt_config_free(cfg);
    modelfile_free(f);
    return rc;
}

int pt_model_save(const pt_model *pm, const char *path)
{
    return model_write((const struct model *)pm, path, NULL);
}

int pt_model_load(const char *path, pt_model **out)
{
    return model_read(path, (struct model **)out, NULL);
}

void pt_model_free(pt_model *pm) { model_destroy((struct model *)pm); }

int pt_model_train_report(const pt_model *pm, char **json)
{
    const struct model *m = (const struct model *)pm;
    *json = pt_strdup(m->train_report ? m->train_report : "{}");
    return *json ? PT_OK : pt_error(PT_ENOMEM, "out of memory");
}

int pt_model_info(const pt_model *pm, char **json)
{
    const struct model *m = (const struct model *)pm;
    int rc;
    json_t *meta = meta_json(m, NULL, &rc), *params = meta ? json_array() : NULL;
    *json = NULL;
    if (!meta) return rc;
    if (!params) {
        json_decref(meta);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    json_object_del(meta, "config_yaml");
    /* vocabularies can be huge: keep their sizes only */
    json_t *feats = json_object_get(json_object_get(meta, "schema"), "features");
    size_t i;
    json_t *f;
    json_array_foreach(feats, i, f) {
        json_t *v = json_object_get(f, "vocab");
        if (v) {
            json_object_set_new(f, "vocab_size", json_integer((json_int_t)json_array_size(v)));
            json_object_del(f, "vocab");
        }
    }
    for (int k = 0; k < m->nparams; k++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(m->p[k].name));
        json_t *shape = json_array();
        if (m->p[k].init != INIT_ZERO) json_array_append_new(shape, json_integer(m->p[k].rows));
        json_array_append_new(shape, json_integer(m->p[k].cols));
        json_object_set_new(o, "shape", shape);
        json_array_append_new(params, o);
    }
    json_object_set_new(meta, "tensors", params);
    json_object_set_new(meta, "gemm", json_string(nn_gemm_backend()));
    char *s = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    if (!s) return pt_error(PT_ENOMEM, "out of memory");
    *json = pt_strdup(s);
    free(s);
    return *json ? PT_OK : pt_error(PT_ENOMEM, "out of memory");
}
