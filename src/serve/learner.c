/* learner.c: the online learner behind `polytask serve` (learner.h).
 *
 * Durability comes from the registry, not from this thread: events are
 * committed before /v1/events answers, and what the learner has learned
 * becomes real only in pt_registry_publish's one transaction (new version,
 * activated, offset advanced), after the model file was written atomically.
 * A kill at any moment therefore leaves either the old version with the old
 * offset or the new version with the new one; on restart the learner loads
 * the active version, reads the offset and learns the events after it again.
 * An orphan file from a kill between the write and the commit is never
 * referenced (the next attempt writes another name).
 *
 * One thread for every model: events are few next to requests (a
 * micro-batch of a few hundred rows trains in milliseconds), and one thread
 * keeps the learner from competing with the request threads for cores. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "serve/learner.h"
#include "util/util.h"

#define MAX_LEARN 64     /* models learned at once */
#ifndef MAX_RINGS
#define MAX_RINGS 256    /* (model, version) pairs with a running AUC */
#endif
#define MAX_SERVED 8     /* versions scored per event (active + A/B variants) */
#define AUC_WINDOW 10000 /* events the running AUC covers */
#define IDLE_S 0.2       /* wait when there is nothing to learn */
#define LEARNER_NICE 10

struct ring {            /* the last AUC_WINDOW events one version scored */
    char name[128];
    int version, nout;
    char **outs;         /* [nout] output names */
    float **p, **y;      /* [nout][AUC_WINDOW] */
    int *binary;         /* [nout] every label seen was 0 or 1 */
    int64_t n;           /* events added so far; slot n % AUC_WINDOW */
    double used;         /* when it last scored events */
};

struct lstate {          /* one model being learned */
    char name[128];
    pt_model *m;         /* the copy being trained */
    int base;            /* the version it is (last loaded or published) */
    int skip_version;    /* an active version that did not load as a multi-task model */
    double skip_until;   /* retried after this (a recommender fails again; a file that
                            could not be read for a moment loads) */
    int64_t offset;      /* last labelled row learned */
    /* raw events, for a model trained from built samples: the builder turns
     * them into labelled rows as their windows pass */
    pt_builder *bld;
    int bld_off;         /* the model cannot build samples (or it failed): no raw learning for base */
    int64_t raw_fed;     /* last raw event pushed into bld */
    int64_t raw_learned; /* samples built from raw events that the copy has learned */
    int64_t since;       /* events and samples learned since base */
    double first_at;     /* when the first of those was learned */
    double retry_at;     /* after a failed publish, not before this */
    /* reported (under mu) */
    int64_t consumed, published, skipped, pending, built, waiting, late;
    double pending_at;
    int live;            /* still active in the registry */
};

struct learner {
    pt_serve_opts o;
    char dir[4096];
    struct learner_hooks h;
    pt_registry *reg;
    pthread_t th;
    pthread_mutex_t mu;  /* stop, the states' reported counters, the rings */
    pthread_cond_t cv;
    int stop, started;
    struct lstate st[MAX_LEARN];
    int nst;
    struct ring rings[MAX_RINGS];
    int nrings;
};

/* ---- running AUC ---- */

static void ring_free(struct ring *r)
{
    for (int j = 0; j < r->nout; j++) {
        pt_free(r->outs ? r->outs[j] : NULL);
        pt_free(r->p ? r->p[j] : NULL);
        pt_free(r->y ? r->y[j] : NULL);
    }
    pt_free(r->outs), pt_free(r->p), pt_free(r->y), pt_free(r->binary);
    memset(r, 0, sizeof *r);
}

/* Under mu: the ring of (name, version), made for m's outputs when new
 * (NULL when the table is full or memory is short). */
static struct ring *ring_of(struct learner *l, const char *name, int version, const pt_model *m)
{
    for (int i = 0; i < l->nrings; i++)
        if (l->rings[i].version == version && !strcmp(l->rings[i].name, name)) return &l->rings[i];
    if (l->nrings == MAX_RINGS) {
        /* full (a version published every few seconds fills it in hours):
         * the ring that scored nothing for longest makes room */
        int old = 0;
        for (int i = 1; i < l->nrings; i++)
            if (l->rings[i].used < l->rings[old].used) old = i;
        ring_free(&l->rings[old]);
        l->rings[old] = l->rings[--l->nrings];
        memset(&l->rings[l->nrings], 0, sizeof l->rings[l->nrings]);
    }
    struct ring *r = &l->rings[l->nrings];
    int T = pt_model_outputs(m);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->version = version, r->nout = T;
    r->outs = pt_calloc((size_t)T, sizeof *r->outs);
    r->p = pt_calloc((size_t)T, sizeof *r->p);
    r->y = pt_calloc((size_t)T, sizeof *r->y);
    r->binary = pt_calloc((size_t)T, sizeof *r->binary);
    int ok = r->outs && r->p && r->y && r->binary;
    for (int j = 0; ok && j < T; j++) {
        r->outs[j] = pt_strdup(pt_model_output_name(m, j));
        r->p[j] = pt_malloc(AUC_WINDOW * sizeof(float));
        r->y[j] = pt_malloc(AUC_WINDOW * sizeof(float));
        r->binary[j] = 1;
        ok = r->outs[j] && r->p[j] && r->y[j];
    }
    if (!ok) {
        ring_free(r);
        return NULL;
    }
    l->nrings++;
    return r;
}

static void ring_add(struct ring *r, const float *p, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++, r->n++) {
        int64_t k = r->n % AUC_WINDOW;
        for (int j = 0; j < r->nout; j++) {
            float yv = y[i * r->nout + j];
            r->p[j][k] = p[i * r->nout + j];
            r->y[j][k] = yv;
            if (!isnan(yv) && yv != 0 && yv != 1) r->binary[j] = 0;
        }
    }
}

/* AUC of output j over the window; NaN for a regression output. */
static double ring_auc(const struct ring *r, int j)
{
    if (!r->binary[j]) return NAN;
    return pt_auc(r->p[j], r->y[j], r->n < AUC_WINDOW ? r->n : AUC_WINDOW);
}

/* Scores the rows with every version served for name, before they train
 * anything: each version's AUC is measured on events it has not seen. */
static void score_served(struct learner *l, const char *name, const char *rows, size_t len)
{
    pt_model *ms[MAX_SERVED];
    int vs[MAX_SERVED];
    void *refs[MAX_SERVED];
    int k = l->h.served(l->h.srv, name, ms, vs, refs, MAX_SERVED);
    for (int i = 0; i < k; i++) {
        int64_t n = 0;
        float *p = NULL, *y = NULL;
        if (!pt_model_score_json(ms[i], rows, len, 0, &n, &p, &y)) {
            pthread_mutex_lock(&l->mu);
            struct ring *r = ring_of(l, name, vs[i], ms[i]);
            if (r && r->nout == pt_model_outputs(ms[i])) ring_add(r, p, y, n), r->used = pt_now();
            pthread_mutex_unlock(&l->mu);
        }
        pt_floats_free(p);
        pt_floats_free(y);
        l->h.release(l->h.srv, refs[i]);
    }
}

/* ---- learning ---- */

static int ensure_dir(const char *d)
{
    if (mkdir(d, 0755) && errno != EEXIST) return pt_error(PT_EIO, "learner: cannot create %s: %s", d, strerror(errno));
    return PT_OK;
}

/* The rows of fetched events ([{"id", "row"}, ...]) as a new array. */
static json_t *rows_of(json_t *ev)
{
    json_t *rows = json_array();
    for (size_t i = 0; rows && i < json_array_size(ev); i++) json_array_append(rows, json_object_get(json_array_get(ev, i), "row"));
    return rows;
}

/* Trains st's copy on labelled rows (after the served versions scored
 * them); a row the model cannot read (stored for another schema) is
 * skipped, counted and logged, so one bad row cannot stop learning. what(i)
 * names row i in the log. */
static int learn_rows(struct learner *l, struct lstate *st, json_t *rows, const char *what, json_t *ids)
{
    char *txt = json_dumps(rows, JSON_COMPACT);
    if (!txt) return pt_error(PT_ENOMEM, "learner: out of memory");
    int rc = PT_OK;
    int64_t skipped = 0;
    score_served(l, st->name, txt, strlen(txt));
    double loss;
    if (pt_model_learn_json(st->m, txt, strlen(txt), 0, l->o.learn_lr, &loss)) {
        /* one at a time, leaving out the ones that fail */
        for (size_t i = 0; i < json_array_size(rows); i++) {
            json_t *one = json_pack("[O]", json_array_get(rows, i));
            char *t1 = one ? json_dumps(one, JSON_COMPACT) : NULL;
            json_decref(one);
            if (!t1) {
                rc = pt_error(PT_ENOMEM, "learner: out of memory");
                break;
            }
            if (pt_model_learn_json(st->m, t1, strlen(t1), 0, l->o.learn_lr, &loss)) {
                if (!skipped)
                    pt_log(PT_LOG_WARN, "learner: %s: %s %" JSON_INTEGER_FORMAT " skipped: %s", st->name, what,
                           ids ? json_integer_value(json_object_get(json_array_get(ids, i), "id")) : (json_int_t)i,
                           pt_errmsg());
                skipped++;
            }
            pt_free(t1);
        }
    }
    free(txt);
    pthread_mutex_lock(&l->mu);
    st->skipped += skipped;
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* Labelled rows as fetched from the registry. [out] *n rows consumed. */
static int learn_events(struct learner *l, struct lstate *st, const char *fetched, int64_t *n)
{
    json_t *ev = json_loads(fetched, 0, NULL), *rows = ev ? rows_of(ev) : NULL;
    *n = 0;
    int rc = rows ? learn_rows(l, st, rows, "event", ev) : pt_error(PT_ENOMEM, "learner: cannot read the fetched events");
    if (!rc) *n = (int64_t)json_array_size(rows);
    json_decref(ev), json_decref(rows);
    return rc;
}

/* Raw events: the next batch after raw_fed goes into the builder, and the
 * samples whose windows have passed are learned. The builder is made when
 * the copy is (re)loaded, reading the model's training log first and then
 * every stored raw event, so the state is the same after a restart; the
 * samples the registry says were learned already are skipped. [out] *n
 * events pushed plus samples learned, *learned the samples. */
static int learn_raw(struct learner *l, struct lstate *st, int64_t *n, int64_t *learned)
{
    *n = *learned = 0;
    if (st->bld_off) return PT_OK;
    int rc;
    if (!st->bld) {
        if (pt_model_check_events_json(st->m, "[]", 2, 0, NULL)) { /* not trained from built samples */
            st->bld_off = 1;
            return PT_OK;
        }
        double t0 = pt_now();
        if ((rc = ensure_dir(l->dir))) return rc;
        if ((rc = pt_builder_open(st->m, l->dir, 1, &st->bld))) {
            pt_log(PT_LOG_WARN, "learner: %s: the training log cannot be read first (%s); raw events build samples "
                                "from their own history only", st->name, pt_errmsg());
            rc = pt_builder_open(st->m, l->dir, 0, &st->bld);
        }
        if (rc) {
            pt_log(PT_LOG_ERROR, "learner: %s: raw events will not be learned: %s", st->name, pt_errmsg());
            st->bld_off = 1;
            return PT_OK;
        }
        st->raw_fed = 0;
        pt_log(PT_LOG_INFO, "learner: %s: sample builder ready in %.1f s", st->name, pt_now() - t0);
    }
    char *js = NULL;
    int64_t last = st->raw_fed, used = 0;
    if ((rc = pt_registry_events_fetch(l->reg, st->name, PT_EVENTS_RAW, st->raw_fed, l->o.learn_batch, &js, &last)))
        return rc;
    if (last > st->raw_fed) {
        json_t *ev = json_loads(js, 0, NULL), *rows = ev ? rows_of(ev) : NULL;
        char *txt = rows ? json_dumps(rows, JSON_COMPACT) : NULL;
        rc = txt ? pt_builder_push_json(st->bld, txt, strlen(txt), &used) : pt_error(PT_ENOMEM, "learner: out of memory");
        free(txt);
        json_decref(ev), json_decref(rows);
        if (!rc) st->raw_fed = last;
    }
    pt_string_free(js);
    pt_builder_stats bs;
    pt_builder_counts(st->bld, &bs);
    char *sj = NULL;
    int64_t got = 0, skip = st->raw_learned > bs.rows ? st->raw_learned - bs.rows : 0;
    if (!rc) rc = pt_builder_take_json(st->bld, skip, &sj, &got);
    if (!rc && got) {
        json_t *rows = json_loads(sj, 0, NULL);
        rc = rows ? learn_rows(l, st, rows, "sample", NULL) : pt_error(PT_ENOMEM, "learner: out of memory");
        json_decref(rows);
        if (!rc) st->raw_learned += got;
    }
    pt_string_free(sj);
    if (rc) { /* the builder's state is in doubt: made again from the stored events */
        pt_builder_close(st->bld);
        st->bld = NULL;
        return rc;
    }
    pt_builder_counts(st->bld, &bs);
    pthread_mutex_lock(&l->mu);
    st->consumed += used;
    st->built = (st->built > 0 ? st->built : 0) + got;
    st->waiting = bs.waiting;
    st->late = bs.late;
    pthread_mutex_unlock(&l->mu);
    *n = used + got;
    *learned = got;
    return PT_OK;
}

/* Forgets the copy and its builder: both are made again from the registry. */
static void drop_copy(struct lstate *st)
{
    pt_model_free(st->m);
    st->m = NULL;
    pt_builder_close(st->bld);
    st->bld = NULL;
}

/* Writes st's copy and publishes it; a version activated meanwhile by an
 * operator wins: the copy is dropped and reloaded from it. */
static void publish(struct learner *l, struct lstate *st)
{
    char path[4096 + 256];
    if (st->bld) /* and the samples built from raw events learned */
        snprintf(path, sizeof path, "%s/%s-v%d-e%" PRId64 "-s%" PRId64 ".ptm", l->dir, st->name, st->base, st->offset,
                 st->raw_learned);
    else
        snprintf(path, sizeof path, "%s/%s-v%d-e%" PRId64 ".ptm", l->dir, st->name, st->base, st->offset);
    int v = 0, rc = ensure_dir(l->dir);
    if (!rc) rc = pt_model_save(st->m, path);
    if (!rc)
        rc = pt_registry_publish(l->reg, st->name, path, st->base, st->offset, st->bld ? st->raw_learned : -1,
                                 "online-learner", &v);
    if (rc == PT_EINVAL) { /* another version is active now: follow it */
        pt_log(PT_LOG_INFO, "learner: %s: %s; learning again from the active version", st->name, pt_errmsg());
        unlink(path);
        drop_copy(st);
        return;
    }
    if (rc) { /* the copy is kept; another try in a while */
        pt_log(PT_LOG_ERROR, "learner: %s: publish failed: %s", st->name, pt_errmsg());
        unlink(path);
        st->retry_at = pt_now() + 5;
        return;
    }
    pt_log(PT_LOG_INFO, "learner: %s: published version %d (%" PRId64 " events and samples, offset %" PRId64
                        ", raw samples %" PRId64 ")", st->name, v, st->since, st->offset, st->raw_learned);
    st->base = v, st->since = 0;
    pthread_mutex_lock(&l->mu);
    st->published++;
    pthread_mutex_unlock(&l->mu);
    l->h.published(l->h.srv, st->name, v);
}

/* One round for one model: (re)load the copy when the active version is not
 * the one it came from, learn the next micro-batch, publish when due.
 * Returns the events learned. */
static int64_t step(struct learner *l, struct lstate *st, int active, const char *path)
{
    if (!st->m || st->base != active) {
        if (active == st->skip_version && pt_now() < st->skip_until) return 0;
        drop_copy(st);
        if (pt_model_load(path, &st->m)) { /* a recommender: nothing to learn */
            st->skip_version = active, st->skip_until = pt_now() + 30;
            return 0;
        }
        int64_t off = 0, raw = 0;
        if (pt_registry_offset_get(l->reg, st->name, &off) || pt_registry_raw_samples_get(l->reg, st->name, &raw)) {
            drop_copy(st);
            return 0;
        }
        st->base = active, st->offset = off, st->raw_learned = raw, st->since = 0, st->bld_off = 0;
    }
    char *js = NULL;
    int64_t last = st->offset, n = 0;
    double t = pt_now();
    if (pt_registry_events_fetch(l->reg, st->name, PT_EVENTS_ROWS, st->offset, l->o.learn_batch, &js, &last)) return 0;
    if (last > st->offset) {
        if (learn_events(l, st, js, &n)) {
            pt_log(PT_LOG_ERROR, "learner: %s: %s", st->name, pt_errmsg());
            pt_string_free(js);
            return 0;
        }
        if (!st->since) st->first_at = t;
        st->offset = last, st->since += n;
        pthread_mutex_lock(&l->mu);
        st->consumed += n;
        pthread_mutex_unlock(&l->mu);
    }
    pt_string_free(js);
    int64_t nr = 0, nl = 0;
    if (learn_raw(l, st, &nr, &nl)) pt_log(PT_LOG_ERROR, "learner: %s: raw events: %s", st->name, pt_errmsg());
    if (nl && !st->since) st->first_at = t;
    st->since += nl, n += nr;
    if (st->since && pt_now() >= st->retry_at &&
        (st->since >= l->o.publish_events || pt_now() - st->first_at >= l->o.publish_seconds))
        publish(l, st);
    if (pt_now() - st->pending_at >= 1.0) { /* the lag, once a second */
        int64_t p = 0, pr = 0;
        if (!pt_registry_events_pending(l->reg, st->name, PT_EVENTS_ROWS, st->offset, &p) &&
            (!st->bld || !pt_registry_events_pending(l->reg, st->name, PT_EVENTS_RAW, st->raw_fed, &pr))) {
            p += pr;
            pthread_mutex_lock(&l->mu);
            st->pending = p, st->pending_at = pt_now();
            pthread_mutex_unlock(&l->mu);
        }
    }
    return n;
}

static struct lstate *state_of(struct learner *l, const char *name)
{
    for (int i = 0; i < l->nst; i++)
        if (!strcmp(l->st[i].name, name)) return &l->st[i];
    if (l->nst == MAX_LEARN) return NULL;
    struct lstate *st = &l->st[l->nst];
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", name);
    st->pending = -1; /* not measured yet: not reported */
    st->built = st->waiting = st->late = -1; /* no raw events: not reported */
    pthread_mutex_lock(&l->mu);
    l->nst++;
    pthread_mutex_unlock(&l->mu);
    return st;
}

/* One pass over the registry's models. Returns the events learned. */
static int64_t round_all(struct learner *l)
{
    char *js = NULL;
    if (pt_registry_served(l->reg, NULL, &js)) return 0;
    json_t *j = json_loads(js, 0, NULL), *ms = json_object_get(j, "models");
    pt_string_free(js);
    int64_t n = 0;
    for (size_t k = 0; k < json_array_size(ms); k++) {
        json_t *m = json_array_get(ms, k), *vs = json_object_get(m, "versions");
        const char *name = json_string_value(json_object_get(m, "name"));
        int active = (int)json_integer_value(json_object_get(m, "active"));
        const char *path = NULL;
        for (size_t i = 0; i < json_array_size(vs); i++)
            if (json_integer_value(json_object_get(json_array_get(vs, i), "version")) == active)
                path = json_string_value(json_object_get(json_array_get(vs, i), "path"));
        struct lstate *st = name && active > 0 && path ? state_of(l, name) : NULL;
        if (st) n += step(l, st, active, path);
    }
    json_decref(j);
    return n;
}

static void *run(void *arg)
{
    struct learner *l = arg;
    pt_set_threads(1); /* beside the request threads, not across every core */
    /* Requests come first: when the cores are busy the learner gets about a
     * tenth of the time a request thread gets (Linux nice is per thread);
     * lag grows under a burst and is made up after it. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), LEARNER_NICE))
        pt_log(PT_LOG_DEBUG, "learner: cannot lower its priority: %s", strerror(errno));
    for (;;) {
        int64_t n = round_all(l);
        pthread_mutex_lock(&l->mu);
        if (!n && !l->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long ns = ts.tv_nsec + (long)(IDLE_S * 1e9);
            ts.tv_sec += ns / 1000000000L, ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        }
        int stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop) break;
    }
    /* a clean stop keeps what was learned since the last publish */
    for (int i = 0; i < l->nst; i++)
        if (l->st[i].m && l->st[i].since) publish(l, &l->st[i]);
    return NULL;
}

int learner_start(struct learner **out, const pt_serve_opts *o, const struct learner_hooks *h)
{
    *out = NULL;
    struct learner *l = pt_calloc(1, sizeof *l);
    if (!l) return pt_error(PT_ENOMEM, "out of memory");
    l->o = *o;
    l->h = *h;
    if (l->o.learn_batch < 1) l->o.learn_batch = 512;
    if (l->o.publish_events < 1) l->o.publish_events = 10000;
    if (!(l->o.publish_seconds > 0)) l->o.publish_seconds = 60;
    if (o->model_dir) {
        snprintf(l->dir, sizeof l->dir, "%s", o->model_dir);
    } else { /* beside the registry */
        const char *slash = strrchr(o->registry, '/');
        if (slash) snprintf(l->dir, sizeof l->dir, "%.*s/online", (int)(slash - o->registry), o->registry);
        else snprintf(l->dir, sizeof l->dir, "online");
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    int rc = pt_registry_open(o->registry, &l->reg);
    if (!rc && pthread_create(&l->th, NULL, run, l)) rc = pt_error(PT_ENOMEM, "learner: cannot start a thread");
    if (rc) {
        learner_stop(l);
        return rc;
    }
    l->started = 1;
    *out = l;
    return PT_OK;
}

void learner_stop(struct learner *l)
{
    if (!l) return;
    if (l->started) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->th, NULL);
    }
    for (int i = 0; i < l->nst; i++) drop_copy(&l->st[i]);
    for (int i = 0; i < l->nrings; i++) ring_free(&l->rings[i]);
    pt_registry_close(l->reg);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    pt_free(l);
}

/* One per-model family of /metrics: the int64 field at off of each state
 * (a negative value is not measured yet and left out). */
static void family(FILE *f, const struct learner *l, const char *name, const char *type, const char *help, size_t off)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (int i = 0; i < l->nst; i++) {
        int64_t v;
        memcpy(&v, (const char *)&l->st[i] + off, sizeof v);
        if (v >= 0) fprintf(f, "%s{model=\"%s\"} %" PRId64 "\n", name, l->st[i].name, v);
    }
}

void learner_metrics(struct learner *l, FILE *f)
{
    pthread_mutex_lock(&l->mu);
    family(f, l, "polytask_learner_events_consumed_total", "counter", "Events the online learner trained on.",
           offsetof(struct lstate, consumed));
    family(f, l, "polytask_learner_lag_events", "gauge", "Stored events the online learner has not consumed yet.",
           offsetof(struct lstate, pending));
    family(f, l, "polytask_learner_versions_published_total", "counter", "Versions the online learner published.",
           offsetof(struct lstate, published));
    family(f, l, "polytask_learner_events_skipped_total", "counter", "Events the model could not read (left out).",
           offsetof(struct lstate, skipped));
    family(f, l, "polytask_learner_samples_built_total", "counter",
           "Samples built from raw events (labelled once their windows passed) and learned.", offsetof(struct lstate, built));
    family(f, l, "polytask_learner_samples_waiting", "gauge", "Samples built from raw events whose label windows are still open.",
           offsetof(struct lstate, waiting));
    family(f, l, "polytask_learner_events_late_total", "counter",
           "Raw events older than one pushed before them (taken at that newer time).", offsetof(struct lstate, late));
    fputs("# HELP polytask_running_auc AUC per task over the last 10000 labelled events, scored by each served "
          "version before learning from them.\n# TYPE polytask_running_auc gauge\n", f);
    for (int i = 0; i < l->nrings; i++) {
        const struct ring *r = &l->rings[i];
        for (int j = 0; j < r->nout; j++) {
            double a = ring_auc(r, j);
            if (!isnan(a))
                fprintf(f, "polytask_running_auc{model=\"%s\",version=\"%d\",task=\"%s\"} %.6f\n", r->name, r->version,
                        r->outs[j], a);
        }
    }
    pthread_mutex_unlock(&l->mu);
}

json_t *learner_version_json(struct learner *l, const char *name, int version)
{
    json_t *o = NULL;
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->nrings && !o; i++) {
        const struct ring *r = &l->rings[i];
        if (r->version != version || strcmp(r->name, name)) continue;
        json_t *a = json_object();
        for (int j = 0; j < r->nout; j++) {
            double v = ring_auc(r, j);
            json_object_set_new(a, r->outs[j], isnan(v) ? json_null() : json_real(v));
        }
        o = json_pack("{s:o, s:I}", "running_auc", a, "events", (json_int_t)(r->n < AUC_WINDOW ? r->n : AUC_WINDOW));
    }
    pthread_mutex_unlock(&l->mu);
    return o;
}
