/* online.c: pt_model_learn_json, the online learner's training step: labelled
 * rows given as JSON (the events /v1/events stored) train a model in place.
 *
 * The rows are encoded by the encoder of /v1/predict (rows_json_encode), so
 * an event means to the learner exactly what the same row means to scoring,
 * and trained in their order (no shuffle: events arrive in time order and an
 * online learner follows them) in chunks of the config's batch size, each
 * one step of the config's optimiser. Adam's moments and step count stay in
 * the model between calls; a model loaded from a file starts them afresh,
 * as a warm start does. Dropout keeps the model's own stream. The metrics
 * the file carried described the model before it learned, so they are
 * replaced by what online learning measured: {"online": {"rows", "loss"}}. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/build.h"
#include "eval/evaluate.h"
#include "models/model.h"
#include "util/util.h"

int pt_model_learn_json(pt_model *pm, const char *rows_json, size_t len, int64_t max_rows, double lr, double *loss)
{
    struct model *m = (struct model *)pm;
    if (loss) *loss = NAN;
    if (!m || (!rows_json && len)) return pt_error(PT_EINVAL, "pt_model_learn_json: model and text are required");
    if (!(lr >= 0) || !isfinite(lr)) return pt_error(PT_EINVAL, "pt_model_learn_json: learning rate %g", lr);
    const struct pt_config *c = m->cfg;
    struct dataset *d = NULL;
    int T = m->ntasks, B = c->batch > 0 ? c->batch : 256, rc;
    if ((rc = rows_json_encode(m, rows_json, len, max_rows, 1, &d))) return rc;
    int64_t n = d->n, *idx = NULL;
    double *l = pt_malloc(((size_t)T + 1) * sizeof *l), lsum = 0;
    int64_t lcnt = 0;
    if (n < B) B = n ? (int)n : 1;
    idx = pt_malloc((size_t)B * sizeof *idx);
    if (!l || !idx) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = model_alloc_train(m)) || (rc = model_reserve(m, B))) goto done;
    if (!m->online_ready) {
        optim_init(&m->online, c->optimizer, c->lr);
        m->online.l2 = c->l2;
        m->online_ready = 1;
    }
    m->online.lr = lr > 0 ? (float)lr : c->lr;
    struct train_ctx ctx = {.opt = &m->online};
    for (int64_t s = 0; s < n; s += B) {
        int b = n - s < B ? (int)(n - s) : B;
        for (int i = 0; i < b; i++) idx[i] = s + i;
        if ((rc = model_gather(m, d, NULL, idx, b)) || (rc = model_train_step(m, &ctx, l))) goto done;
        for (int t = 0; t < T; t++)
            if (isfinite(l[t])) lsum += l[t] * b, lcnt += b;
    }
    if (loss) *loss = lcnt ? lsum / (double)lcnt : NAN;
    m->online_rows += n;
    m->online_loss += lsum, m->online_n += lcnt;
    char txt[128];
    snprintf(txt, sizeof txt, "{\"online\":{\"rows\":%lld,\"loss\":%.6g}}", (long long)m->online_rows,
             m->online_n ? m->online_loss / (double)m->online_n : 0.0);
    char *mj = pt_strdup(txt);
    if (!mj) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    pt_free(m->metrics_json);
    m->metrics_json = mj;
done:
    pt_free(l);
    pt_free(idx);
    dataset_free(d);
    return rc;
}

/* ---- raw events: the sample builder kept open (build.c's online part) ---- */

static int need_samples(const struct model *m)
{
    if (!m || !m->cfg) return pt_error(PT_EINVAL, "raw events: no model");
    if (!m->cfg->samples)
        return pt_error(PT_EINVAL, "raw events: model was not trained from built samples (its config has no "
                                   "samples: section); send labelled rows");
    return PT_OK;
}

int pt_model_check_events_json(pt_model *pm, const char *events_json, size_t len, int64_t max_rows, int64_t *n)
{
    struct model *m = (struct model *)pm;
    if (n) *n = 0;
    int rc = need_samples(m);
    return rc ? rc : online_build_check(m->cfg->samples, events_json, len, max_rows, n);
}

int pt_builder_open(pt_model *pm, const char *dir, int replay, pt_builder **out)
{
    struct model *m = (struct model *)pm;
    *out = NULL;
    int rc = need_samples(m);
    if (rc) return rc;
    /* the rows carry what the model reads: its features and labels */
    const struct schema *s = m->schema;
    const char **keep = pt_calloc((size_t)s->nfeat + (size_t)m->cfg->ntasks + 1, sizeof *keep);
    if (!keep) return pt_error(PT_ENOMEM, "out of memory");
    int nk = 0;
    for (int i = 0; i < s->nfeat; i++) keep[nk++] = s->f[i].cfg->name;
    for (int t = 0; t < m->cfg->ntasks; t++) keep[nk++] = m->cfg->tasks[t].label;
    rc = online_build_open(m->cfg->samples, dir && *dir ? dir : ".", replay, keep, nk, (struct online_build **)out);
    pt_free(keep);
    return rc;
}

int pt_builder_push_json(pt_builder *b, const char *events_json, size_t len, int64_t *used)
{
    if (used) *used = 0;
    if (!b) return pt_error(PT_EINVAL, "pt_builder_push_json: no builder");
    return online_build_push((struct online_build *)b, events_json, len, used);
}

int pt_builder_take_json(pt_builder *b, int64_t skip, char **json, int64_t *n)
{
    *json = NULL, *n = 0;
    if (!b) return pt_error(PT_EINVAL, "pt_builder_take_json: no builder");
    return online_build_take((struct online_build *)b, skip, json, n);
}

void pt_builder_counts(const pt_builder *b, pt_builder_stats *s)
{
    memset(s, 0, sizeof *s);
    if (b) online_build_stats((const struct online_build *)b, &s->events, &s->late, &s->bad, &s->rows, &s->waiting);
}

void pt_builder_close(pt_builder *b) { online_build_close((struct online_build *)b); }
