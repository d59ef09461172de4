/* recommender.c: the pt_recommender handle: training with the evaluation
 * protocol, the report, and answering queries. */
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "rec/catalog.h"
#include "rec/rec.h"
#include "rec/twotower.h"
#include "rec/recommender.h"
#include "util/util.h"

static const char *const KIND_NAMES[] = {"popularity", "item2item", "bpr", "warp", "softmax", "two_tower"};

const char *rec_kind_name(enum rec_kind k) { return (unsigned)k < 6 ? KIND_NAMES[k] : "?"; }

pt_rec_train_opts pt_rec_train_opts_default(void)
{
    pt_rec_train_opts o = {.threads = 0, .eval = 1, .refit = 1};
    return o;
}

pt_rec_query pt_rec_query_default(void)
{
    pt_rec_query q = {.k = 20};
    return q;
}

static int64_t hist_t_end(const struct rec_hist *h)
{
    int64_t t = INT64_MIN;
    for (int64_t p = 0; p < h->off[h->U]; p++) t = h->time[p] > t ? h->time[p] : t;
    return t == INT64_MIN ? 0 : t;
}

/* Trains cfg's model on histories h into m. */
static int train_model(const struct rec_cfg *cfg, enum rec_kind kind, const struct rec_hist *h, int32_t N,
                       const struct rec_catalog *cat, struct rec_model *m)
{
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->N = N;
    m->U = h->U;
    m->t_end = hist_t_end(h);
    m->half_life = cfg->half_life;
    m->cold_min_history = cfg->cold_min_history;
    m->cold_blend = (float)cfg->cold_blend;
    m->pop = pt_malloc((size_t)(N ? N : 1) * sizeof *m->pop);
    if (!m->pop) return pt_error(PT_ENOMEM, "out of memory");
    int rc = rec_pop_train(h, N, m->t_end, cfg->pop_half_life, m->pop);
    if (rc) goto fail;
    switch (kind) {
    case REC_ITEM2ITEM: rc = rec_i2i_train(cfg, h, N, m); break;
    case REC_BPR:
    case REC_WARP:
    case REC_SOFTMAX: rc = rec_mf_train(cfg, h, N, m); break;
    case REC_TWO_TOWER:
        m->D = cfg->dim;
        rc = rec_tt_train(cfg, h, N, cat, &m->tt, &m->vf);
        break;
    case REC_POPULARITY: break;
    default: rc = pt_error(PT_EINVAL, "model '%s' is not available", rec_kind_name(kind));
    }
    if (!rc && cat) {
        if (!(m->item_cat = pt_malloc((size_t)(N ? N : 1) * sizeof *m->item_cat))) rc = pt_error(PT_ENOMEM, "out of memory");
        else memcpy(m->item_cat, cat->cat, (size_t)N * sizeof *m->item_cat);
        int priced = 0;
        for (int32_t j = 0; j < N && !priced; j++) priced = !isnan(cat->price[j]);
        if (!rc && priced) {
            if (!(m->item_price = pt_malloc((size_t)N * sizeof *m->item_price))) rc = pt_error(PT_ENOMEM, "out of memory");
            else memcpy(m->item_price, cat->price, (size_t)N * sizeof *m->item_price);
        }
        if (!rc && kind != REC_POPULARITY) rc = rec_cold_items(cat, cfg->content_weight, h, m);
    }
    if (!rc) return PT_OK;
fail:
    rec_model_free(m);
    return rc;
}

static json_t *metrics_json(const struct rec_metrics *x)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "hr", x->hr, "recall", x->recall, "ndcg", x->ndcg, "mrr", x->mrr,
                     "coverage", x->coverage, "pop_rank", x->pop_rank);
}

int pt_rec_train(const pt_config *cfg, const pt_rec_train_opts *opts, pt_recommender **out)
{
    *out = NULL;
    pt_rec_train_opts o = opts ? *opts : pt_rec_train_opts_default();
    const struct rec_cfg *rc_ = cfg->rec;
    if (!rc_) return pt_error_at(PT_ECONFIG, cfg->path, 0, "no 'recommend' section");
    pt_set_threads(o.threads > 0 ? o.threads : rc_->threads > 0 ? rc_->threads : 1);
    struct pt_recommender *r = pt_calloc(1, sizeof *r);
    if (!r) return pt_error(PT_ENOMEM, "out of memory");
    struct rec_log log;
    struct rec_split sp = {0};
    json_t *rep = NULL;
    int rc = rec_log_read(cfg, &log);
    if (rc) {
        pt_free(r);
        return rc;
    }
    struct rec_catalog cat = {0}, *catp = NULL;
    vocab_init(&cat.cats), vocab_init(&cat.brands);
    if (rc_->items.path) {
        if ((rc = rec_catalog_read(rc_, &log.items, &cat))) {
            pt_free(r);
            rec_log_free(&log);
            return rc;
        }
        catp = &cat;
        pt_log(PT_LOG_INFO, "catalogue: %lld rows, %lld items without interactions, %d categories", (long long)cat.rows,
               (long long)cat.added, cat.cats.n);
    }
    int32_t N = log.items.n;
    rep = json_pack("{s:s, s:I, s:I, s:I, s:I}", "model", rec_kind_name(rc_->model), "interactions", (json_int_t)log.n,
                    "skipped", (json_int_t)log.skipped, "users", (json_int_t)log.users.n, "items", (json_int_t)N);
    if (!rep) goto oom;
    if (catp && json_object_set_new(rep, "catalogue", json_pack("{s:I, s:I, s:i}", "rows", (json_int_t)cat.rows, "new_items",
                                                                 (json_int_t)cat.added, "categories", cat.cats.n)))
        goto oom;
    if (o.eval) {
        if ((rc = rec_split_make(&log, rc_->protocol, rc_->test_from, &sp))) goto fail;
        pt_log(PT_LOG_INFO, "%s: %lld training interactions, %d test users", rec_kind_name(rc_->model),
               (long long)sp.train.off[sp.train.U], sp.ntest);
        struct rec_model me, mp;
        double t0 = pt_now();
        if ((rc = train_model(rc_, rc_->model, &sp.train, N, catp, &me))) goto fail;
        double train_s = pt_now() - t0;
        struct rec_metrics xm, xp;
        t0 = pt_now();
        rc = rec_evaluate(&me, &sp, rc_->k, &xm);
        double eval_s = pt_now() - t0;
        if (!rc) rc = train_model(rc_, REC_POPULARITY, &sp.train, N, catp, &mp);
        if (!rc) {
            rc = rec_evaluate(&mp, &sp, rc_->k, &xp);
            rec_model_free(&mp);
        }
        if (rc) {
            rec_model_free(&me);
            goto fail;
        }
        json_t *ev = json_pack("{s:s, s:i, s:I, s:I, s:I, s:o, s:o, s:f, s:f}", "protocol",
                               rc_->protocol == REC_LEAVE_LAST ? "leave_last_out" : "time_split", "k", rc_->k,
                               "users", (json_int_t)xm.users, "cold_users", (json_int_t)sp.cold_users,
                               "train_interactions", (json_int_t)sp.train.off[sp.train.U], "model", metrics_json(&xm),
                               "popularity", metrics_json(&xp), "train_seconds", train_s, "eval_seconds", eval_s);
        if (!ev || json_object_set_new(rep, "eval", ev)) {
            rec_model_free(&me);
            goto oom;
        }
        if (o.refit) {
            rec_model_free(&me);
        } else {
            r->m = me;
            r->hist = sp.train;
            memset(&sp.train, 0, sizeof sp.train);
        }
    }
    if (!o.eval || o.refit) {
        if ((rc = rec_hist_build(&log, &r->hist))) goto fail;
        double t0 = pt_now();
        if ((rc = train_model(rc_, rc_->model, &r->hist, N, catp, &r->m))) goto fail;
        if (json_object_set_new(rep, "train_seconds", json_real(pt_now() - t0))) goto oom;
    }
    if (catp) {
        int any = 0;
        for (int32_t j = 0; j < N && !any; j++) any = cat.title[j] != NULL;
        if (any) r->titles = cat.title, cat.title = NULL;
    }
    r->users = log.users, r->items = log.items, r->cats = cat.cats;
    vocab_init(&log.users), vocab_init(&log.items), vocab_init(&cat.cats);
    rec_catalog_free(&cat);
    r->k_default = 20;
    if (!(r->report = json_dumps(rep, JSON_COMPACT | JSON_REAL_PRECISION(6)))) goto oom;
    json_decref(rep);
    rec_split_free(&sp);
    rec_log_free(&log);
    *out = r;
    return PT_OK;
oom:
    rc = pt_error(PT_ENOMEM, "out of memory");
fail:
    json_decref(rep);
    rec_catalog_free(&cat);
    rec_split_free(&sp);
    rec_log_free(&log);
    pt_rec_free(r);
    return rc;
}

int pt_rec_report(const pt_recommender *r, char **json)
{
    *json = pt_strdup(r->report ? r->report : "{}");
    return *json ? PT_OK : pt_error(PT_ENOMEM, "out of memory");
}

void pt_rec_free(pt_recommender *r)
{
    if (!r) return;
    for (int32_t j = 0; r->titles && j < r->m.N; j++) pt_free(r->titles[j]);
    pt_free(r->titles);
    rec_model_free(&r->m);
    rec_hist_free(&r->hist);
    vocab_free(&r->users);
    vocab_free(&r->items);
    vocab_free(&r->cats);
    pt_free(r->report);
    pt_free(r);
}
