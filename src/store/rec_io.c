/* rec_io.c: recommender ↔ model file (store/modelfile.h). Metadata holds the
 * kind, the settings scoring needs, the training report and the user and item
 * ids; tensors hold popularity, factors, neighbour lists and every user's
 * items (for item2item scoring and leaving out what a user already has).
 * History times are stored as seconds before t_end (F32). Loading checks
 * every count and index against the ids, so a doctored file is refused with
 * a message instead of read out of bounds. */
#include <math.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "rec/recommender.h"
#include "rec/twotower.h"
#include "store/modelfile.h"
#include "util/util.h"

#define REC_FORMAT "polytask-recommender"

static json_t *ids_json(const struct vocab *v)
{
    json_t *a = json_array();
    for (int32_t i = 0; a && i < v->n; i++)
        if (json_array_append_new(a, json_string(vocab_str(v, i)))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

int pt_rec_save(const pt_recommender *r, const char *path)
{
    const struct rec_model *m = &r->m;
    const struct rec_hist *h = &r->hist;
    int32_t U = h->U, N = m->N;
    int64_t P = h->off[U], NB = m->nb_off ? m->nb_off[N] : 0;
    struct mf_tensor t[14 + REC_TT_NTENSORS];
    size_t nt = 0;
    int32_t *hc = pt_malloc((size_t)(U ? U : 1) * sizeof *hc), *nc = pt_malloc((size_t)(N ? N : 1) * sizeof *nc);
    float *age = pt_malloc((size_t)(P ? P : 1) * sizeof *age);
    json_t *meta = json_pack("{s:s, s:s, s:s, s:I, s:i, s:I, s:I, s:i, s:f}", "format", REC_FORMAT, "engine_version",
                             pt_version(), "model", rec_kind_name(m->kind), "created_unix", (json_int_t)time(NULL), "dim",
                             m->D, "t_end", (json_int_t)m->t_end, "half_life", (json_int_t)m->half_life,
                             "cold_min_history", m->cold_min_history, "cold_blend", (double)m->cold_blend);
    char *mj = NULL;
    int rc = PT_ENOMEM;
    if (!hc || !nc || !age || !meta) goto out;
    json_t *rep = r->report ? json_loads(r->report, 0, NULL) : json_object();
    if (!rep || json_object_set_new(meta, "report", rep) || json_object_set_new(meta, "users", ids_json(&r->users)) ||
        json_object_set_new(meta, "items", ids_json(&r->items)) || json_object_set_new(meta, "categories", ids_json(&r->cats)))
        goto out;
    if (r->titles) {
        json_t *ta = json_array();
        if (!ta || json_object_set_new(meta, "titles", ta)) goto out;
        for (int32_t j = 0; j < N; j++)
            if (json_array_append_new(ta, r->titles[j] ? json_string(r->titles[j]) : json_null())) goto out;
    }
    if (!(mj = json_dumps(meta, JSON_COMPACT))) goto out;
    for (int32_t u = 0; u < U; u++) hc[u] = (int32_t)(h->off[u + 1] - h->off[u]);
    for (int64_t p = 0; p < P; p++) age[p] = (float)(m->t_end - h->time[p]);
    t[nt++] = (struct mf_tensor){.name = "pop", .data = m->pop, .ndim = 1, .shape = {N}};
    t[nt++] = (struct mf_tensor){.name = "hist_count", .data = (float *)(void *)hc, .dtype = MF_I32, .ndim = 1, .shape = {U}};
    t[nt++] = (struct mf_tensor){.name = "hist_item", .data = (float *)(void *)h->item, .dtype = MF_I32, .ndim = 1, .shape = {P}};
    t[nt++] = (struct mf_tensor){.name = "hist_age", .data = age, .ndim = 1, .shape = {P}};
    t[nt++] = (struct mf_tensor){.name = "hist_weight", .data = h->weight, .ndim = 1, .shape = {P}};
    if (m->tt) {
        int n = rec_tt_tensors(m->tt, t + nt, REC_TT_NTENSORS);
        if (n < 0) {
            rc = n;
            goto out;
        }
        nt += (size_t)n;
    }
    if (m->uf) t[nt++] = (struct mf_tensor){.name = "user_factors", .data = m->uf, .ndim = 2, .shape = {m->U, m->D}};
    if (m->vf) t[nt++] = (struct mf_tensor){.name = "item_factors", .data = m->vf, .ndim = 2, .shape = {N, m->D}};
    if (m->vb) t[nt++] = (struct mf_tensor){.name = "item_bias", .data = m->vb, .ndim = 1, .shape = {N}};
    if (m->item_cat)
        t[nt++] = (struct mf_tensor){.name = "item_category", .data = (float *)(void *)m->item_cat, .dtype = MF_I32, .ndim = 1, .shape = {N}};
    if (m->item_price) t[nt++] = (struct mf_tensor){.name = "item_price", .data = m->item_price, .ndim = 1, .shape = {N}};
    if (m->nb_off) {
        for (int32_t i = 0; i < N; i++) nc[i] = (int32_t)(m->nb_off[i + 1] - m->nb_off[i]);
        t[nt++] = (struct mf_tensor){.name = "nb_count", .data = (float *)(void *)nc, .dtype = MF_I32, .ndim = 1, .shape = {N}};
        t[nt++] = (struct mf_tensor){.name = "nb_item", .data = (float *)(void *)m->nb_item, .dtype = MF_I32, .ndim = 1, .shape = {NB}};
        t[nt++] = (struct mf_tensor){.name = "nb_sim", .data = m->nb_sim, .ndim = 1, .shape = {NB}};
    }
    rc = modelfile_write(path, mj, t, nt);
out:
    if (rc == PT_ENOMEM) pt_error(PT_ENOMEM, "out of memory");
    json_decref(meta);
    pt_free(mj), pt_free(hc), pt_free(nc), pt_free(age);
    return rc;
}

/* Tensor name of dtype with n values (n < 0: any), or NULL with an error set. */
static const struct mf_tensor *need(const struct mf_file *f, const char *path, const char *name, int dtype, int64_t n,
                                    int *rc)
{
    const struct mf_tensor *t = modelfile_find(f, name);
    int64_t cnt = 1;
    if (t)
        for (int d = 0; d < t->ndim; d++) cnt *= t->shape[d];
    if (!t) *rc = pt_error_at(PT_ESCHEMA, path, 0, "tensor '%s' is missing", name);
    else if (t->dtype != dtype) *rc = pt_error_at(PT_ESCHEMA, path, 0, "tensor '%s' has the wrong dtype", name);
    else if (n >= 0 && cnt != n)
        *rc = pt_error_at(PT_ESCHEMA, path, 0, "tensor '%s' has %lld values, %lld expected", name, (long long)cnt, (long long)n);
    else return t;
    return NULL;
}

static int ids_load(const char *path, json_t *a, const char *what, struct vocab *v)
{
    if (!json_is_array(a)) return pt_error_at(PT_ESCHEMA, path, 0, "metadata '%s' is not a list of ids", what);
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *s = json_array_get(a, i);
        if (!json_is_string(s)) return pt_error_at(PT_ESCHEMA, path, 0, "metadata '%s' holds a non-string id", what);
        int32_t id;
        int rc = vocab_add(v, json_string_value(s), json_string_length(s), &id);
        if (rc) return rc;
        if (id != (int32_t)i) return pt_error_at(PT_ESCHEMA, path, 0, "metadata '%s': id '%s' is given twice", what, json_string_value(s));
    }
    return PT_OK;
}

static int64_t *offsets(const int32_t *count, int32_t n, int64_t total, int *ok)
{
    int64_t *off = pt_malloc(((size_t)n + 1) * sizeof *off);
    if (!off) return NULL;
    off[0] = 0;
    *ok = 1;
    for (int32_t i = 0; i < n; i++) {
        if (count[i] < 0) *ok = 0;
        off[i + 1] = off[i] + (count[i] > 0 ? count[i] : 0);
    }
    if (off[n] != total) *ok = 0;
    return off;
}

int pt_rec_load(const char *path, pt_recommender **out)
{
    *out = NULL;
    struct mf_file *f = NULL;
    int rc = modelfile_read(path, &f);
    if (!rc) rc = rec_load_file(f, path, out);
    modelfile_free(f);
    return rc;
}

int rec_load_file(const struct mf_file *f, const char *path, pt_recommender **out)
{
    *out = NULL;
    json_t *meta = NULL;
    int rc;
    struct pt_recommender *r = pt_calloc(1, sizeof *r);
    if (!r) return pt_error(PT_ENOMEM, "out of memory");
    vocab_init(&r->users), vocab_init(&r->items), vocab_init(&r->cats);
    struct rec_model *m = &r->m;
    struct rec_hist *h = &r->hist;
    meta = json_loads(f->meta_json, 0, NULL);
    const char *fmt = json_string_value(json_object_get(meta, "format"));
    if (!fmt || strcmp(fmt, REC_FORMAT)) {
        rc = pt_error_at(PT_ESCHEMA, path, 0, "not a recommender model (format '%s'); train one with polytask recommend train",
                         fmt ? fmt : "?");
        goto fail;
    }
    const char *kind = json_string_value(json_object_get(meta, "model"));
    m->kind = (enum rec_kind)-1;
    for (int k = 0; kind && k < 6; k++)
        if (!strcmp(kind, rec_kind_name((enum rec_kind)k))) m->kind = (enum rec_kind)k;
    if ((int)m->kind < 0) {
        rc = pt_error_at(PT_ESCHEMA, path, 0, "unknown recommender model '%s'", kind ? kind : "?");
        goto fail;
    }
    if ((rc = ids_load(path, json_object_get(meta, "users"), "users", &r->users)) ||
        (rc = ids_load(path, json_object_get(meta, "items"), "items", &r->items)) ||
        (rc = ids_load(path, json_object_get(meta, "categories"), "categories", &r->cats)))
        goto fail;
    int32_t U = r->users.n, N = r->items.n;
    m->N = N;
    m->U = U;
    m->t_end = json_integer_value(json_object_get(meta, "t_end"));
    if (m->t_end < -(int64_t)1e15 || m->t_end > (int64_t)1e15) {
        rc = pt_error_at(PT_ESCHEMA, path, 0, "t_end %lld is out of range", (long long)m->t_end);
        goto fail;
    }
    m->half_life = json_integer_value(json_object_get(meta, "half_life"));
    m->cold_min_history = (int)json_integer_value(json_object_get(meta, "cold_min_history"));
    m->cold_blend = (float)json_number_value(json_object_get(meta, "cold_blend"));
    json_int_t dim = json_integer_value(json_object_get(meta, "dim"));
    m->D = dim >= 0 && dim <= 4096 ? (int32_t)dim : -1;
    json_t *ta = json_object_get(meta, "titles");
    if (ta) {
        if (!json_is_array(ta) || json_array_size(ta) != (size_t)N) {
            rc = pt_error_at(PT_ESCHEMA, path, 0, "metadata 'titles' is not a list of %d titles", N);
            goto fail;
        }
        if (!(r->titles = pt_calloc((size_t)(N ? N : 1), sizeof *r->titles))) goto oom;
        for (int32_t j = 0; j < N; j++) {
            json_t *t = json_array_get(ta, (size_t)j);
            if (json_is_string(t) && !(r->titles[j] = pt_strdup(json_string_value(t)))) goto oom;
        }
    }
    json_t *rep = json_object_get(meta, "report");
    if (rep && !(r->report = json_dumps(rep, JSON_COMPACT | JSON_REAL_PRECISION(6)))) goto oom;
    const struct mf_tensor *tp = need(f, path, "pop", MF_F32, N, &rc), *thc, *thi, *tha, *thw;
    if (!tp || !(thc = need(f, path, "hist_count", MF_I32, U, &rc)) || !(thi = need(f, path, "hist_item", MF_I32, -1, &rc)) ||
        !(tha = need(f, path, "hist_age", MF_F32, thi->shape[0], &rc)) ||
        !(thw = need(f, path, "hist_weight", MF_F32, thi->shape[0], &rc)))
        goto fail;
    int64_t P = thi->shape[0];
    int ok;
    h->U = U;
    if (!(h->off = offsets(mf_i32(thc), U, P, &ok))) goto oom;
    if (!ok) {
        rc = pt_error_at(PT_ESCHEMA, path, 0, "hist_count does not add up to hist_item");
        goto fail;
    }
    h->item = pt_malloc((size_t)(P ? P : 1) * sizeof *h->item);
    h->time = pt_malloc((size_t)(P ? P : 1) * sizeof *h->time);
    h->weight = pt_malloc((size_t)(P ? P : 1) * sizeof *h->weight);
    m->pop = pt_malloc((size_t)(N ? N : 1) * sizeof *m->pop);
    if (!h->item || !h->time || !h->weight || !m->pop) goto oom;
    memcpy(m->pop, tp->data, (size_t)N * sizeof *m->pop);
    for (int64_t p = 0; p < P; p++) {
        int32_t it = mf_i32(thi)[p];
        if (it < 0 || it >= N || !(fabsf(tha->data[p]) < 1e15f)) {
            rc = pt_error_at(PT_ESCHEMA, path, 0, "hist_item %lld is out of range", (long long)p);
            goto fail;
        }
        h->item[p] = it;
        h->time[p] = m->t_end - (int64_t)tha->data[p];
        h->weight[p] = thw->data[p];
    }
    const struct mf_tensor *tcat = modelfile_find(f, "item_category");
    if (tcat) {
        if (!(tcat = need(f, path, "item_category", MF_I32, N, &rc))) goto fail;
        if (!(m->item_cat = pt_malloc((size_t)(N ? N : 1) * sizeof *m->item_cat))) goto oom;
        for (int32_t j = 0; j < N; j++) {
            int32_t cc = mf_i32(tcat)[j];
            if (cc < -1 || cc >= r->cats.n) {
                rc = pt_error_at(PT_ESCHEMA, path, 0, "item_category %d is out of range", j);
                goto fail;
            }
            m->item_cat[j] = cc;
        }
    }
    const struct mf_tensor *tpr = modelfile_find(f, "item_price");
    if (tpr) {
        if (!(tpr = need(f, path, "item_price", MF_F32, N, &rc))) goto fail;
        if (!(m->item_price = pt_malloc((size_t)(N ? N : 1) * sizeof *m->item_price))) goto oom;
        memcpy(m->item_price, tpr->data, (size_t)N * sizeof *m->item_price);
    }
    if (m->kind == REC_BPR || m->kind == REC_WARP || m->kind == REC_SOFTMAX) {
        const struct mf_tensor *tu = modelfile_find(f, "user_factors"), *tv;
        if (m->D < 1 || !tu || tu->ndim != 2 || tu->shape[1] != m->D || tu->shape[0] > U) {
            rc = pt_error_at(PT_ESCHEMA, path, 0, "user_factors missing or not [users, %d]", m->D);
            goto fail;
        }
        m->U = (int32_t)tu->shape[0];
        if (!(tv = need(f, path, "item_factors", MF_F32, (int64_t)N * m->D, &rc)) || tu->dtype != MF_F32) {
            if (!rc) rc = pt_error_at(PT_ESCHEMA, path, 0, "user_factors is not F32");
            goto fail;
        }
        size_t nu = (size_t)m->U * (size_t)m->D, ni = (size_t)N * (size_t)m->D;
        m->uf = pt_malloc((nu ? nu : 1) * sizeof(float));
        m->vf = pt_malloc((ni ? ni : 1) * sizeof(float));
        if (!m->uf || !m->vf) goto oom;
        memcpy(m->uf, tu->data, nu * sizeof(float));
        memcpy(m->vf, tv->data, ni * sizeof(float));
        const struct mf_tensor *tb = modelfile_find(f, "item_bias");
        if (tb) {
            if (!(tb = need(f, path, "item_bias", MF_F32, N, &rc))) goto fail;
            if (!(m->vb = pt_malloc((size_t)(N ? N : 1) * sizeof(float)))) goto oom;
            memcpy(m->vb, tb->data, (size_t)N * sizeof(float));
        }
    }
    if (m->kind == REC_TWO_TOWER) {
        const struct mf_tensor *tv;
        if ((rc = rec_tt_from_file(f, path, N, &m->tt))) goto fail;
        int D;
        rec_tt_dims(m->tt, NULL, &D, NULL);
        if (D != m->D) {
            rc = pt_error_at(PT_ESCHEMA, path, 0, "two-tower width %d is not the model's dim %d", D, m->D);
            goto fail;
        }
        if (!(tv = need(f, path, "item_factors", MF_F32, (int64_t)N * m->D, &rc))) goto fail;
        if (!(m->vf = pt_malloc((size_t)N * (size_t)m->D * sizeof(float) + 1))) goto oom;
        memcpy(m->vf, tv->data, (size_t)N * (size_t)m->D * sizeof(float));
    }
    if (m->kind == REC_ITEM2ITEM) {
        const struct mf_tensor *tc, *ti, *ts;
        if (!(tc = need(f, path, "nb_count", MF_I32, N, &rc)) || !(ti = need(f, path, "nb_item", MF_I32, -1, &rc)) ||
            !(ts = need(f, path, "nb_sim", MF_F32, ti->shape[0], &rc)))
            goto fail;
        int64_t NB = ti->shape[0];
        if (!(m->nb_off = offsets(mf_i32(tc), N, NB, &ok))) goto oom;
        if (!ok) {
            rc = pt_error_at(PT_ESCHEMA, path, 0, "nb_count does not add up to nb_item");
            goto fail;
        }
        m->nb_item = pt_malloc((size_t)(NB ? NB : 1) * sizeof *m->nb_item);
        m->nb_sim = pt_malloc((size_t)(NB ? NB : 1) * sizeof *m->nb_sim);
        if (!m->nb_item || !m->nb_sim) goto oom;
        for (int64_t q = 0; q < NB; q++) {
            int32_t j = mf_i32(ti)[q];
            if (j < 0 || j >= N || !isfinite(ts->data[q])) {
                rc = pt_error_at(PT_ESCHEMA, path, 0, "nb_item %lld is out of range", (long long)q);
                goto fail;
            }
            m->nb_item[q] = j, m->nb_sim[q] = ts->data[q];
        }
    }
    json_decref(meta);
    *out = r;
    return PT_OK;
oom:
    rc = pt_error(PT_ENOMEM, "out of memory");
fail:
    json_decref(meta);
    pt_rec_free(r);
    return rc;
}
