/* httpd.c: `polytask serve`: the registry's active models behind an HTTP/1.1
 * API on libmicrohttpd (a thread pool polling with epoll), JSON through
 * jansson. docs/api.md lists the endpoints; this file follows it.
 *
 * Models are held in a table of reference-counted entries, one per (name,
 * version) in use. A request takes a reference under the table's mutex,
 * scores without any lock, and drops it; activating another version loads
 * and checks it first, then swaps the table's pointer, so in-flight requests
 * finish on the old model, which is freed when its last reference goes.
 * A scoring request asks the registry which version to use (the A/B variant
 * of its user, or the active one, remembered for a second), so an activation
 * from another process (`polytask models activate`) takes effect within a
 * second; one made through this server's API at once. An A/B variant that
 * is not the active version stays loaded while users are sent to it
 * (VARIANT_KEEP), and request counts per version outlive the entries. */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include "polytask.h"
#include "serve/body.h"
#include "serve/learner.h"
#include "util/util.h"

#define MAX_MODELS 64
#define NBUCKETS 12
static const double BUCKETS[NBUCKETS] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

enum { EP_PREDICT, EP_RECOMMEND, EP_EVENTS, EP_MODELS, EP_ADMIN, EP_HEALTH, EP_METRICS, EP_KEYS, EP_OTHER, NEP };
static const char *const EP_NAMES[NEP] = {"predict", "recommend", "events", "models", "admin", "health", "metrics", "keys", "other"};

#define TABN (MAX_MODELS * 4)
#ifndef NCOUNT
#define NCOUNT TABN              /* (model, version) request counts kept */
#endif

struct loaded {                  /* one model version in memory */
    char name[128];
    int version, refs, current;  /* current: the version the table serves */
    double picked;               /* when the registry last chose it for a user (A/B) */
    pt_model *m;                 /* multi-task model, or */
    pt_recommender *r;           /* recommender */
};

/* An A/B variant that is not the active version stays loaded while users
 * keep being sent to it: without this it would be loaded from disk for
 * every one of its requests (the last reference drops after each). */
#define VARIANT_KEEP 30.0

struct count {                   /* scoring requests per (model, version) */
    char name[128];
    int version;
    int64_t n;
};

struct stat_row {                /* per endpoint and status class */
    int64_t count[6];            /* by status / 100 */
    int64_t hist[NBUCKETS + 1];  /* latency buckets, all statuses */
    double sum;
};

/* A valid key's scope is reused for this long, so a request costs no
 * registry call; a revoked key stops working within it. */
#define KEY_TTL 1.0
#define NKEYS 32

struct key_seen {                /* a key the registry accepted lately */
    char key[96];                /* zero-padded; longer keys are not remembered */
    int scope;
    double at;
};

struct server {
    pt_serve_opts o;
    /* Two handles on the registry: a handle runs its calls one at a time,
     * and a write (events, activate, rollback) holds it through its fsync
     * (synchronous=FULL); on a handle of their own, the reads each request
     * makes (key check, resolve, list) go on meanwhile (WAL readers do not
     * wait for the writer). */
    pt_registry *reg, *wreg;
    pthread_mutex_t mu;          /* the model table and the counters */
    struct loaded *tab[TABN];
    int ntab;
    struct count cnt[NCOUNT];    /* outlive the versions they count */
    int ncnt;
    struct stat_row st[NEP];
    int64_t rows_scored, events_accepted;
    /* what the registry said lately (under mu): the active version per name
     * for requests without a user, and the only active model's name */
    struct { char name[128]; int version; double at; } act[MAX_MODELS];
    int nact;
    char only[128];
    double only_at;
    struct key_seen keys[NKEYS];
    struct learner *learner;     /* NULL with no_learn */
    /* The committer: /v1/events rows are appended by one thread, each batch
     * of waiting requests in one transaction (one fsync), while their
     * connections are suspended, so a request thread does not sit in fsync
     * with other connections' predictions queued behind it. */
    pthread_t committer;
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    struct req *qhead, *qtail;
    int draining, committer_on;
};

#define COMMIT_MAX 256           /* requests per transaction */

/* Registry answers are reused for this long: a request costs no database
 * query, and an activation made by another process shows within a second
 * (one made through this server's API shows at once). */
#define RESOLVE_TTL 1.0

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

struct req {                     /* one request's body */
    char *buf;
    size_t len, cap;
    int too_big;
    struct timespec t0;
    /* /v1/events, while its rows wait for the committer (the connection is
     * suspended): what to append, then what came of it */
    int ev_state;                /* EV_NONE, EV_QUEUED, EV_DONE */
    char ev_name[128];
    char *ev_rows;
    size_t ev_len, ev_n;
    int ev_rc, ev_kind;
    int64_t ev_first, ev_last;
    struct MHD_Connection *conn;
    struct req *next;
};

enum { EV_NONE, EV_QUEUED, EV_DONE };

pt_serve_opts pt_serve_opts_default(void)
{
    pt_serve_opts o = {.listen = "127.0.0.1:8080", .threads = 4, .max_body = 8u << 20, .max_rows = 10000,
                       .max_depth = 16, .timeout_s = 30, .learn_batch = 512, .publish_events = 10000,
                       .publish_seconds = 60};
    return o;
}

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* ---- the model table ---- */

static void free_loaded(struct loaded *l)
{
    pt_model_free(l->m);
    pt_rec_free(l->r);
    pt_free(l);
}

/* Under s->mu: moves the entries nobody holds, that are not current and no
 * longer chosen for users, from the table to dead[] (freed by the caller
 * after unlocking: freeing a model is not quick). */
static void retire_locked(struct server *s, double t, struct loaded **dead, int *nd)
{
    for (int i = 0; i < s->ntab;) {
        struct loaded *l = s->tab[i];
        if (!l->refs && !l->current && t - l->picked > VARIANT_KEEP) dead[(*nd)++] = l, s->tab[i] = s->tab[--s->ntab];
        else i++;
    }
}

static void unref(struct server *s, struct loaded *l)
{
    if (!l) return;
    struct loaded *dead[TABN + 1];
    int nd = 0;
    pthread_mutex_lock(&s->mu);
    l->refs--;
    retire_locked(s, now_s(), dead, &nd);
    pthread_mutex_unlock(&s->mu);
    for (int k = 0; k < nd; k++) free_loaded(dead[k]);
}

/* Under s->mu: one more scoring request for (name, version). */
static void count_locked(struct server *s, const char *name, int version)
{
    int k = 0;
    while (k < s->ncnt && (s->cnt[k].version != version || strcmp(s->cnt[k].name, name))) k++;
    if (k == s->ncnt && k == NCOUNT) {
        /* full (the online learner publishes version after version): the
         * count of the oldest version not in memory makes room */
        int old = -1;
        for (int j = 0; j < NCOUNT; j++) {
            int held = 0;
            for (int i = 0; i < s->ntab && !held; i++)
                held = s->tab[i]->version == s->cnt[j].version && !strcmp(s->tab[i]->name, s->cnt[j].name);
            if (!held && (old < 0 || s->cnt[j].version < s->cnt[old].version)) old = j;
        }
        if (old < 0) return; /* every counted version is loaded: this one goes uncounted */
        s->cnt[old] = s->cnt[--s->ncnt];
        k = s->ncnt;
    }
    if (k == s->ncnt) {
        snprintf(s->cnt[k].name, sizeof s->cnt[k].name, "%s", name);
        s->cnt[k].version = version, s->cnt[k].n = 0;
        s->ncnt++;
    }
    s->cnt[k].n++;
}

static int64_t count_of_locked(const struct server *s, const char *name, int version)
{
    for (int k = 0; k < s->ncnt; k++)
        if (s->cnt[k].version == version && !strcmp(s->cnt[k].name, name)) return s->cnt[k].n;
    return 0;
}

/* Under s->mu: l becomes what name's requests without a user get; the
 * version it replaces is no longer kept for users either (if the split
 * still sends users there, their next request loads it again). */
static void make_current_locked(struct server *s, struct loaded *l)
{
    for (int i = 0; i < s->ntab; i++) {
        struct loaded *e = s->tab[i];
        if (strcmp(e->name, l->name)) continue;
        if (e != l && e->current) e->picked = 0;
        e->current = e == l;
    }
}

/* Loads name's version from path (off the table's lock). */
static int load(const char *name, int version, const char *path, struct loaded **out)
{
    struct loaded *l = pt_calloc(1, sizeof *l);
    if (!l) return PT_ENOMEM;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->version = version;
    int rc = pt_model_load(path, &l->m);
    if (rc) rc = pt_rec_load(path, &l->r);
    if (rc) {
        pt_free(l);
        return rc;
    }
    l->picked = -VARIANT_KEEP;
    *out = l;
    return PT_OK;
}

/* The entry serving (name, version), loading it when it is not in memory
 * yet; with current, it becomes the one the name's unqualified requests get,
 * without, it was chosen for a user and is kept VARIANT_KEEP seconds.
 * [out] *out with a reference taken. */
static int acquire(struct server *s, const char *name, int version, int current, struct loaded **out)
{
    *out = NULL;
    struct loaded *dead[TABN + 1], *hit = NULL;
    int nd = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->ntab; i++)
        if (!strcmp(s->tab[i]->name, name) && s->tab[i]->version == version) hit = s->tab[i];
    if (hit) {
        hit->refs++;
        if (current && !hit->current) {
            make_current_locked(s, hit);
            retire_locked(s, now_s(), dead, &nd);
        }
        if (!current) hit->picked = now_s();
        pthread_mutex_unlock(&s->mu);
        for (int k = 0; k < nd; k++) free_loaded(dead[k]);
        *out = hit;
        return PT_OK;
    }
    pthread_mutex_unlock(&s->mu);
    char *path = NULL;
    int v = version, rc = PT_OK;
    /* the path of this version: among the served ones (a short list), else
     * among all (an activation of an old version) */
    for (int pass = 0; pass < 2 && !path; pass++) {
        char *js = NULL;
        if ((rc = pass ? pt_registry_list(s->reg, name, &js) : pt_registry_served(s->reg, name, &js))) return rc;
        json_t *j = json_loads(js, 0, NULL), *vs = json_object_get(json_array_get(json_object_get(j, "models"), 0), "versions");
        pt_string_free(js);
        for (size_t k = 0; k < json_array_size(vs); k++) {
            json_t *e = json_array_get(vs, k);
            if (json_integer_value(json_object_get(e, "version")) == v) path = pt_strdup(json_string_value(json_object_get(e, "path")));
        }
        json_decref(j);
    }
    if (!path) return PT_ENOTFOUND;
    struct loaded *l = NULL;
    rc = load(name, v, path, &l);
    pt_free(path);
    if (rc) return rc;
    pthread_mutex_lock(&s->mu);
    /* another request may have loaded it meanwhile: keep one */
    for (int i = 0; i < s->ntab; i++)
        if (!strcmp(s->tab[i]->name, name) && s->tab[i]->version == v) hit = s->tab[i];
    if (hit) {
        dead[nd++] = l;
        l = hit;
    } else if (s->ntab < TABN) {
        s->tab[s->ntab++] = l;
    } else {
        pthread_mutex_unlock(&s->mu);
        free_loaded(l);
        return PT_ENOMEM;
    }
    l->refs++;
    if (current) make_current_locked(s, l);
    else l->picked = now_s();
    /* retired versions nobody holds go now */
    retire_locked(s, now_s(), dead, &nd);
    pthread_mutex_unlock(&s->mu);
    for (int k = 0; k < nd; k++) free_loaded(dead[k]);
    *out = l;
    return PT_OK;
}

/* The model a request gets: by the registry's active version or A/B split for user. */
static int model_for(struct server *s, const char *name, const char *user, struct loaded **out)
{
    int version = 0, rc = PT_OK;
    double t = now_s();
    if (!user) {
        pthread_mutex_lock(&s->mu);
        for (int k = 0; k < s->nact && !version; k++)
            if (!strcmp(s->act[k].name, name) && t - s->act[k].at < RESOLVE_TTL) version = s->act[k].version;
        pthread_mutex_unlock(&s->mu);
    }
    if (!version) {
        char *path = NULL;
        rc = pt_registry_resolve(s->reg, name, user, &path, &version);
        pt_string_free(path);
        if (rc) return rc;
        if (!user) {
            pthread_mutex_lock(&s->mu);
            int k = 0;
            while (k < s->nact && strcmp(s->act[k].name, name)) k++;
            if (k < MAX_MODELS) {
                if (k == s->nact) s->nact++;
                snprintf(s->act[k].name, sizeof s->act[k].name, "%s", name);
                s->act[k].version = version, s->act[k].at = t;
            }
            pthread_mutex_unlock(&s->mu);
        }
    }
    return acquire(s, name, version, !user, out);
}

/* Forgets what the registry said, after this server changed it. */
static void forget(struct server *s)
{
    pthread_mutex_lock(&s->mu);
    s->nact = 0;
    s->only_at = 0;
    pthread_mutex_unlock(&s->mu);
}

/* ---- what the online learner borrows (learner.h) ---- */

/* The versions name is served with: its A/B split's, or the active one. */
static int hook_served(void *srv, const char *name, pt_model **models, int *versions, void **refs, int max)
{
    struct server *s = srv;
    char *js = NULL;
    if (pt_registry_served(s->reg, name, &js)) return 0;
    json_t *j = json_loads(js, 0, NULL), *m = json_array_get(json_object_get(j, "models"), 0);
    pt_string_free(js);
    json_t *split = json_object_get(m, "split");
    int active = (int)json_integer_value(json_object_get(m, "active")), want[16], nw = 0, k = 0;
    for (size_t i = 0; i < json_array_size(split) && nw < 16; i++)
        want[nw++] = (int)json_integer_value(json_object_get(json_array_get(split, i), "version"));
    if (!nw && active > 0) want[nw++] = active;
    json_decref(j);
    for (int i = 0; i < nw && k < max; i++) {
        struct loaded *l = NULL;
        if (acquire(s, name, want[i], want[i] == active, &l)) continue;
        if (!l->m) {
            unref(s, l);
            continue;
        }
        models[k] = l->m, versions[k] = l->version, refs[k++] = l;
    }
    return k;
}

static void hook_release(void *srv, void *ref) { unref(srv, ref); }

static void hook_published(void *srv, const char *name, int version)
{
    struct server *s = srv;
    struct loaded *l = NULL;
    forget(s);
    if (!acquire(s, name, version, 1, &l)) unref(s, l);
}

/* The only active model's name, for requests that leave "model" out. */
static int only_model(struct server *s, char *name, size_t n)
{
    double t = now_s();
    pthread_mutex_lock(&s->mu);
    int fresh = s->only[0] && t - s->only_at < RESOLVE_TTL;
    if (fresh) snprintf(name, n, "%s", s->only);
    pthread_mutex_unlock(&s->mu);
    if (fresh) return PT_OK;
    char *js = NULL;
    int rc = pt_registry_served(s->reg, NULL, &js);
    if (rc) return rc;
    json_t *j = json_loads(js, 0, NULL), *ms = json_object_get(j, "models");
    pt_string_free(js);
    int found = 0;
    for (size_t k = 0; k < json_array_size(ms); k++) {
        json_t *m = json_array_get(ms, k);
        if (json_integer_value(json_object_get(m, "active")) > 0) {
            if (found++ == 0) snprintf(name, n, "%s", json_string_value(json_object_get(m, "name")));
        }
    }
    json_decref(j);
    if (found != 1) return PT_EINVAL;
    pthread_mutex_lock(&s->mu);
    snprintf(s->only, sizeof s->only, "%s", name);
    s->only_at = t;
    pthread_mutex_unlock(&s->mu);
    return PT_OK;
}

/* Constant time over the whole buffer: a cached key is not leaked through
 * how long a wrong one takes to compare. */
static int key_equal(const char *a, const char *b, size_t n)
{
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++) d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

/* The scope of an API key: remembered for KEY_TTL seconds after the
 * registry accepted it; invalid keys are asked every time. */
static int key_scope(struct server *s, const char *key, int *scope)
{
    char k[sizeof s->keys[0].key] = {0};
    size_t n = strlen(key);
    if (n >= sizeof k) return pt_registry_key_check(s->reg, key, scope);
    memcpy(k, key, n);
    double t = now_s();
    int hit = 0, slot = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < NKEYS; i++) {
        struct key_seen *e = &s->keys[i];
        if (e->at > 0 && t - e->at < KEY_TTL && key_equal(e->key, k, sizeof k)) *scope = e->scope, hit = 1;
        if (e->at < s->keys[slot].at) slot = i;
    }
    pthread_mutex_unlock(&s->mu);
    if (hit) return PT_OK;
    int rc = pt_registry_key_check(s->reg, key, scope);
    if (rc) return rc;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < NKEYS; i++) /* refresh its own slot if another thread filled one */
        if (key_equal(s->keys[i].key, k, sizeof k)) slot = i;
    memcpy(s->keys[slot].key, k, sizeof k);
    s->keys[slot].scope = *scope, s->keys[slot].at = t;
    pthread_mutex_unlock(&s->mu);
    return PT_OK;
}

/* ---- replies ---- */

/* Sends text (pt_malloc'd; MHD frees it with pt_free once sent). */
static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type, char *text)
{
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(strlen(text), text, pt_free);
    if (!r) {
        pt_free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(j);
    return t ? send_text(c, status, "application/json", t) : MHD_NO;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_json(c, status, json_pack("{s:s}", "error", msg));
}

static unsigned status_of(int rc)
{
    switch (rc) {
    case PT_EAUTH: return MHD_HTTP_UNAUTHORIZED;
    case PT_ENOTFOUND: return MHD_HTTP_NOT_FOUND;
    case PT_ENOMEM: case PT_EIO: case PT_EDB: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    default: return MHD_HTTP_BAD_REQUEST;
    }
}

static enum MHD_Result send_rc(struct MHD_Connection *c, int rc)
{
    const char *m = pt_errmsg();
    return send_error(c, status_of(rc), "%s", m && *m ? m : pt_strerror(rc));
}

/* ---- handlers ---- */

static json_t *parse_body(struct MHD_Connection *c, struct server *s, const struct req *q, enum MHD_Result *res)
{
    int d = serve_body_depth(q->buf ? q->buf : "", q->len);
    if (d < 0 || d > s->o.max_depth) {
        *res = d < 0 ? send_error(c, MHD_HTTP_BAD_REQUEST, "body is not valid JSON (unbalanced brackets or strings)")
                     : send_error(c, MHD_HTTP_BAD_REQUEST, "JSON nested %d deep, at most %d", d, s->o.max_depth);
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(q->buf ? q->buf : "", q->len, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(j)) {
        *res = j ? send_error(c, MHD_HTTP_BAD_REQUEST, "body must be a JSON object")
                 : send_error(c, MHD_HTTP_BAD_REQUEST, "body is not valid JSON: %s (line %d, column %d)", e.text, e.line,
                              e.column);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A small JSON value (model name, user id) from its span: a string, or NULL. */
static json_t *small_value(const char *s, size_t n)
{
    if (!n || n > 4096) return NULL;
    json_error_t e;
    json_t *v = json_loadb(s, n, JSON_DECODE_ANY, &e);
    if (json_is_string(v)) return v;
    json_decref(v);
    return NULL;
}

/* A {"model", "user", "rows"} body split into its members without parsing
 * the rows: they go to the library as they are, which parses and checks
 * them once. name: the model, or the only active one when it is left out
 * and model_required is 0; *user (may be NULL) a new reference; rows at
 * body + *roff, *rlen bytes. With raw not NULL (/v1/events) the body may
 * carry "events" (raw events) instead of "rows": *raw says which. Returns
 * 0, or 1 with the error reply sent. */
static int rows_body(struct MHD_Connection *c, struct server *s, const struct req *q, int model_required, char *name,
                     size_t nlen, json_t **user, size_t *roff, size_t *rlen, int *raw, enum MHD_Result *res)
{
    static const char *const names[4] = {"model", "user", "rows", "events"};
    const char *body = q->buf ? q->buf : "";
    size_t off[4], vl[4], where = 0;
    *user = NULL;
    int d = serve_body_depth(body, q->len);
    if (d < 0) {
        *res = send_error(c, MHD_HTTP_BAD_REQUEST, "body is not valid JSON (unbalanced brackets or strings)");
        return 1;
    }
    if (d > s->o.max_depth) {
        *res = send_error(c, MHD_HTTP_BAD_REQUEST, "JSON nested %d deep, at most %d", d, s->o.max_depth);
        return 1;
    }
    if (serve_body_members(body, q->len, names, raw ? 4 : 3, off, vl, &where)) {
        *res = send_error(c, MHD_HTTP_BAD_REQUEST,
                          "body is not valid JSON: a {\"name\": value, ...} object was expected (byte %zu)", where + 1);
        return 1;
    }
    if (raw) {
        if (vl[2] && vl[3]) {
            *res = send_error(c, MHD_HTTP_BAD_REQUEST, "give 'rows' (labelled rows) or 'events' (raw events), not both");
            return 1;
        }
        if ((*raw = vl[3] > 0)) off[2] = off[3], vl[2] = vl[3];
    }
    if (!vl[2] || body[off[2]] != '[') {
        *res = send_error(c, MHD_HTTP_BAD_REQUEST, raw && *raw ? "'events' must be an array of objects"
                                                   : raw ? "'rows' (or 'events') must be an array of objects"
                                                         : "'rows' must be an array of objects");
        return 1;
    }
    json_t *mn = vl[0] ? small_value(body + off[0], vl[0]) : NULL, *us = vl[1] ? small_value(body + off[1], vl[1]) : NULL;
    if ((vl[0] && !mn) || (vl[1] && !us) || (model_required && !mn)) {
        json_decref(mn), json_decref(us);
        *res = send_error(c, MHD_HTTP_BAD_REQUEST, model_required ? "'model' must be a string" : "'model' and 'user' must be strings");
        return 1;
    }
    if (mn) snprintf(name, nlen, "%s", json_string_value(mn));
    json_decref(mn);
    if (!vl[0] && only_model(s, name, nlen)) {
        json_decref(us);
        *res = send_error(c, MHD_HTTP_BAD_REQUEST, "'model' is required when more than one model is active");
        return 1;
    }
    *user = us, *roff = off[2], *rlen = vl[2];
    return 0;
}

static enum MHD_Result do_predict(struct MHD_Connection *c, struct server *s, const struct req *q)
{
    const char *body = q->buf ? q->buf : "";
    char name[128];
    json_t *us;
    size_t roff, rlen;
    enum MHD_Result res;
    if (rows_body(c, s, q, 0, name, sizeof name, &us, &roff, &rlen, NULL, &res)) return res;
    struct loaded *l = NULL;
    int rc = model_for(s, name, us ? json_string_value(us) : NULL, &l);
    json_decref(us);
    if (rc) return rc == PT_ENOTFOUND ? send_error(c, MHD_HTTP_NOT_FOUND, "no model '%s'", name) : send_rc(c, rc);
    if (!l->m) {
        unref(s, l);
        return send_error(c, MHD_HTTP_BAD_REQUEST, "model '%s' is a recommender: use /v1/recommend", name);
    }
    char *pred = NULL;
    rc = pt_model_predict_json(l->m, body + roff, rlen, s->o.max_rows, &pred);
    if (rc) {
        unref(s, l);
        return send_rc(c, rc);
    }
    /* {"model", "version", "predictions": <the array as scored>} without re-parsing it */
    size_t n = strlen(pred) + strlen(name) + 96;
    int64_t nrows = 0;
    for (const char *p = pred; *p; p++) nrows += *p == '{';
    char *out = pt_malloc(n);
    if (out) snprintf(out, n, "{\"model\":\"%s\",\"version\":%d,\"predictions\":%s}", name, l->version, pred);
    pt_string_free(pred);
    pthread_mutex_lock(&s->mu);
    s->rows_scored += nrows;
    count_locked(s, l->name, l->version);
    pthread_mutex_unlock(&s->mu);
    unref(s, l);
    return out ? send_text(c, MHD_HTTP_OK, "application/json", out) : MHD_NO;
}

static enum MHD_Result do_recommend(struct MHD_Connection *c, struct server *s, const struct req *q)
{
    enum MHD_Result res;
    json_t *b = parse_body(c, s, q, &res);
    if (!b) return res;
    json_t *mn = json_object_get(b, "model"), *us = json_object_get(b, "user"), *k = json_object_get(b, "k");
    json_t *hist = json_object_get(b, "history"), *cat = json_object_get(b, "category"), *allow = json_object_get(b, "allow");
    if (!json_is_string(mn) || !json_is_string(us) || (k && !json_is_integer(k))) {
        json_decref(b);
        return send_error(c, MHD_HTTP_BAD_REQUEST, "'model' and 'user' must be strings, 'k' an integer");
    }
    const char *hv[256], *cv[64], *av[4096];
    pt_rec_query qq = pt_rec_query_default();
    if (k) qq.k = (int)(json_integer_value(k) < 1 ? 1 : json_integer_value(k) > 1000 ? 1000 : json_integer_value(k));
    for (size_t i = 0; json_is_array(hist) && i < json_array_size(hist) && i < 256; i++)
        if (json_is_string(json_array_get(hist, i))) hv[qq.nhistory++] = json_string_value(json_array_get(hist, i));
    qq.history = hv;
    for (size_t i = 0; json_is_array(cat) && i < json_array_size(cat) && i < 64; i++)
        if (json_is_string(json_array_get(cat, i))) cv[qq.ncategories++] = json_string_value(json_array_get(cat, i));
    qq.categories = qq.ncategories ? cv : NULL;
    qq.exclude_categories = json_is_true(json_object_get(b, "exclude_categories"));
    for (size_t i = 0; json_is_array(allow) && i < json_array_size(allow) && i < 4096; i++)
        if (json_is_string(json_array_get(allow, i))) av[qq.nallow++] = json_string_value(json_array_get(allow, i));
    qq.allow = json_is_array(allow) ? av : NULL;
    struct loaded *l = NULL;
    int rc = model_for(s, json_string_value(mn), json_string_value(us), &l);
    if (rc) {
        json_decref(b);
        return rc == PT_ENOTFOUND ? send_error(c, MHD_HTTP_NOT_FOUND, "no model '%s'", json_string_value(mn)) : send_rc(c, rc);
    }
    if (!l->r) {
        unref(s, l);
        json_decref(b);
        return send_error(c, MHD_HTTP_BAD_REQUEST, "model '%s' is not a recommender", json_string_value(mn));
    }
    char *ans = NULL;
    rc = pt_rec_recommend(l->r, json_string_value(us), &qq, &ans);
    int version = l->version;
    if (!rc) {
        pthread_mutex_lock(&s->mu);
        count_locked(s, l->name, l->version);
        pthread_mutex_unlock(&s->mu);
    }
    unref(s, l);
    json_decref(b);
    if (rc) return send_rc(c, rc);
    json_t *j = json_loads(ans, 0, NULL);
    pt_string_free(ans);
    if (!j) return MHD_NO;
    json_object_set_new(j, "version", json_integer(version));
    return send_json(c, MHD_HTTP_OK, j);
}

static enum MHD_Result events_reply(struct MHD_Connection *c, struct server *s, struct req *q);

static enum MHD_Result do_events(struct MHD_Connection *c, struct server *s, struct req *q)
{
    enum MHD_Result res;
    char name[128];
    json_t *us;
    size_t roff, rlen;
    int raw = 0;
    if (rows_body(c, s, q, 1, name, sizeof name, &us, &roff, &rlen, &raw, &res)) return res;
    json_decref(us);
    /* checked against the active version before it is stored: an event the
     * learner could not read would be accepted and then never learned */
    struct loaded *l = NULL;
    int rc = model_for(s, name, NULL, &l);
    if (rc) return rc == PT_ENOTFOUND ? send_error(c, MHD_HTTP_NOT_FOUND, "no model '%s'", name) : send_rc(c, rc);
    if (!l->m) {
        unref(s, l);
        return send_error(c, MHD_HTTP_BAD_REQUEST, "model '%s' is a recommender: events are for multi-task models", name);
    }
    int64_t nrows = 0;
    rc = raw ? pt_model_check_events_json(l->m, q->buf + roff, rlen, s->o.max_rows, &nrows)
             : pt_model_check_json(l->m, q->buf + roff, rlen, s->o.max_rows, &nrows);
    unref(s, l);
    if (rc) return send_rc(c, rc);
    char *rj = pt_malloc(rlen + 1);
    if (!rj) return MHD_NO;
    memcpy(rj, q->buf + roff, rlen);
    rj[rlen] = 0;
    /* stored durably (one transaction, synchronous=FULL) before the reply:
     * by the committer, or here once the server is stopping */
    snprintf(q->ev_name, sizeof q->ev_name, "%s", name);
    q->ev_rows = rj, q->ev_len = rlen, q->ev_n = (size_t)nrows, q->ev_kind = raw ? PT_EVENTS_RAW : PT_EVENTS_ROWS;
    pthread_mutex_lock(&s->qmu);
    int queued = s->committer_on && !s->draining;
    if (queued) {
        q->ev_state = EV_QUEUED, q->conn = c, q->next = NULL;
        MHD_suspend_connection(c);
        if (s->qtail) s->qtail->next = q;
        else s->qhead = q;
        s->qtail = q;
        pthread_cond_signal(&s->qcv);
    }
    pthread_mutex_unlock(&s->qmu);
    if (queued) return MHD_YES; /* answered by events_reply once resumed */
    const char *nm = q->ev_name, *rw = q->ev_rows;
    int one_rc = PT_OK;
    rc = pt_registry_events_append_many(s->wreg, 1, &nm, &rw, &q->ev_len, &q->ev_kind, &q->ev_first, &q->ev_last, &one_rc);
    q->ev_rc = rc ? rc : one_rc;
    q->ev_state = EV_DONE;
    return events_reply(c, s, q);
}

/* The answer to a /v1/events request whose rows the committer handled. */
static enum MHD_Result events_reply(struct MHD_Connection *c, struct server *s, struct req *q)
{
    pt_free(q->ev_rows);
    q->ev_rows = NULL;
    if (q->ev_rc) return send_error(c, status_of(q->ev_rc), "events not stored: %s", pt_strerror(q->ev_rc));
    pthread_mutex_lock(&s->mu);
    s->events_accepted += (int64_t)q->ev_n;
    pthread_mutex_unlock(&s->mu);
    return send_json(c, MHD_HTTP_ACCEPTED, json_pack("{s:I, s:I, s:I}", "accepted", (json_int_t)q->ev_n, "first_id",
                                                     (json_int_t)q->ev_first, "last_id", (json_int_t)q->ev_last));
}

static void *committer(void *arg)
{
    struct server *s = arg;
    const char *names[COMMIT_MAX], *rows[COMMIT_MAX];
    size_t lens[COMMIT_MAX];
    int64_t first[COMMIT_MAX], last[COMMIT_MAX];
    int rcs[COMMIT_MAX], kinds[COMMIT_MAX];
    struct req *batch[COMMIT_MAX];
    for (;;) {
        pthread_mutex_lock(&s->qmu);
        while (!s->qhead && !s->draining) pthread_cond_wait(&s->qcv, &s->qmu);
        int n = 0;
        while (s->qhead && n < COMMIT_MAX) {
            batch[n++] = s->qhead;
            s->qhead = s->qhead->next;
        }
        if (!s->qhead) s->qtail = NULL;
        int stop = !n && s->draining;
        pthread_mutex_unlock(&s->qmu);
        if (stop) break;
        for (int k = 0; k < n; k++)
            names[k] = batch[k]->ev_name, rows[k] = batch[k]->ev_rows, lens[k] = batch[k]->ev_len, kinds[k] = batch[k]->ev_kind;
        int rc = pt_registry_events_append_many(s->wreg, n, names, rows, lens, kinds, first, last, rcs);
        for (int k = 0; k < n; k++) {
            struct req *q = batch[k];
            q->ev_rc = rc ? rc : rcs[k], q->ev_first = first[k], q->ev_last = last[k];
            q->ev_state = EV_DONE;
            MHD_resume_connection(q->conn); /* q is MHD's again: not touched after this */
        }
    }
    return NULL;
}

static enum MHD_Result do_models(struct MHD_Connection *c, struct server *s, const char *name)
{
    char *js = NULL;
    int rc = pt_registry_list(s->reg, name, &js);
    if (rc) return send_rc(c, rc);
    json_t *j = json_loads(js, 0, NULL);
    pt_string_free(js);
    if (!j) return MHD_NO;
    json_t *ms = json_object_get(j, "models");
    if (name && !json_array_size(ms)) {
        json_decref(j);
        return send_error(c, MHD_HTTP_NOT_FOUND, "no model '%s'", name);
    }
    /* what this process holds: per version, served or not, and its request count */
    pthread_mutex_lock(&s->mu);
    for (size_t k = 0; k < json_array_size(ms); k++) {
        json_t *m = json_array_get(ms, k), *held = json_array();
        const char *mname = json_string_value(json_object_get(m, "name"));
        for (int i = 0; i < s->ntab; i++)
            if (mname && !strcmp(s->tab[i]->name, mname))
                json_array_append_new(held, json_pack("{s:i, s:b, s:I}", "version", s->tab[i]->version, "current",
                                                      s->tab[i]->current, "requests",
                                                      (json_int_t)count_of_locked(s, mname, s->tab[i]->version)));
        json_object_set_new(m, "loaded", held);
        /* and per registered version, loaded now or not, what this process scored with it */
        json_t *vs = json_object_get(m, "versions");
        for (size_t i = 0; mname && i < json_array_size(vs); i++) {
            json_t *v = json_array_get(vs, i);
            json_object_set_new(v, "requests", json_integer(count_of_locked(s, mname, (int)json_integer_value(json_object_get(v, "version")))));
        }
    }
    pthread_mutex_unlock(&s->mu);
    /* the running AUC of each version the learner scored events with */
    for (size_t k = 0; s->learner && k < json_array_size(ms); k++) {
        json_t *m = json_array_get(ms, k), *vs = json_object_get(m, "versions");
        const char *mname = json_string_value(json_object_get(m, "name"));
        for (size_t i = 0; mname && i < json_array_size(vs); i++) {
            json_t *v = json_array_get(vs, i);
            json_t *a = learner_version_json(s->learner, mname, (int)json_integer_value(json_object_get(v, "version")));
            if (a) json_object_update(v, a), json_decref(a);
        }
    }
    json_t *reply = name ? json_incref(json_array_get(ms, 0)) : json_incref(j);
    json_decref(j);
    return send_json(c, MHD_HTTP_OK, reply);
}

/* POST /v1/models/NAME/split {"split": [{"version": V, "weight": W}, ...]}
 * ([] clears it): the registry records it (checked and audited); requests
 * with a user follow it at once. */
static enum MHD_Result do_split(struct MHD_Connection *c, struct server *s, const char *name, const struct req *q,
                                const char *actor)
{
    enum MHD_Result res;
    json_t *b = parse_body(c, s, q, &res);
    if (!b) return res;
    json_t *sp = json_object_get(b, "split");
    int vs[64];
    double ws[64];
    size_t n = json_array_size(sp);
    int ok = json_is_array(sp) && n <= 64;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *e = json_array_get(sp, i), *v = json_object_get(e, "version"), *w = json_object_get(e, "weight");
        ok = json_is_integer(v) && json_is_number(w);
        if (ok) vs[i] = (int)json_integer_value(v), ws[i] = json_number_value(w);
    }
    json_decref(b);
    if (!ok)
        return send_error(c, MHD_HTTP_BAD_REQUEST,
                          "'split' must be an array of at most 64 {\"version\": integer, \"weight\": number}");
    int rc = pt_registry_split(s->wreg, name, vs, ws, (int)n, actor);
    if (rc) return send_rc(c, rc);
    forget(s);
    char *js = NULL;
    if ((rc = pt_registry_served(s->reg, name, &js))) return send_rc(c, rc);
    json_t *j = json_loads(js, 0, NULL);
    pt_string_free(js);
    json_t *m = json_array_get(json_object_get(j, "models"), 0);
    json_t *reply = json_pack("{s:s, s:O}", "model", name, "split", json_object_get(m, "split"));
    json_decref(j);
    return reply ? send_json(c, MHD_HTTP_OK, reply) : MHD_NO;
}

/* GET /v1/keys: labels, scopes, times (never keys); POST /v1/keys {"label",
 * "scope": "read"|"admin"}: a new key, shown once (201); DELETE
 * /v1/keys/LABEL: revoked, refused by this server at once (by others
 * within their one-second cache). */
static enum MHD_Result do_keys(struct MHD_Connection *c, struct server *s, const char *url, const char *method,
                               const struct req *q, const char *actor)
{
    const char *label = url[8] == '/' ? url + 9 : NULL;
    char *js = NULL;
    int rc;
    if (!label && !strcmp(method, "GET")) {
        if ((rc = pt_registry_key_list(s->reg, &js))) return send_rc(c, rc);
        json_t *j = json_loads(js, 0, NULL);
        pt_string_free(js);
        return j ? send_json(c, MHD_HTTP_OK, json_pack("{s:o}", "keys", j)) : MHD_NO;
    }
    if (!label && !strcmp(method, "POST")) {
        enum MHD_Result res;
        json_t *b = parse_body(c, s, q, &res);
        if (!b) return res;
        json_t *l = json_object_get(b, "label"), *sc = json_object_get(b, "scope");
        const char *scs = json_string_value(sc);
        int scope = scs && !strcmp(scs, "admin") ? PT_SCOPE_ADMIN : scs && !strcmp(scs, "read") ? PT_SCOPE_READ : 0;
        if (!json_is_string(l) || !scope) {
            json_decref(b);
            return send_error(c, MHD_HTTP_BAD_REQUEST, "'label' must be a string and 'scope' \"read\" or \"admin\"");
        }
        char *key = NULL;
        rc = pt_registry_key_create(s->wreg, json_string_value(l), scope, actor, &key);
        json_t *reply = rc ? NULL : json_pack("{s:s, s:s, s:s}", "label", json_string_value(l), "scope", scs, "key", key);
        pt_string_free(key);
        json_decref(b);
        if (rc) return send_rc(c, rc);
        return reply ? send_json(c, MHD_HTTP_CREATED, reply) : MHD_NO;
    }
    if (label && *label && !strchr(label, '/') && !strcmp(method, "DELETE")) {
        if ((rc = pt_registry_key_revoke(s->wreg, label, actor))) return send_rc(c, rc);
        pthread_mutex_lock(&s->mu);
        memset(s->keys, 0, sizeof s->keys); /* no cached key outlives a revocation here */
        pthread_mutex_unlock(&s->mu);
        return send_json(c, MHD_HTTP_OK, json_pack("{s:s, s:b}", "label", label, "revoked", 1));
    }
    return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET or POST /v1/keys, DELETE /v1/keys/LABEL");
}

static enum MHD_Result do_admin(struct MHD_Connection *c, struct server *s, const char *name, const char *verb,
                                const struct req *q, const char *actor)
{
    int version = 0, rc;
    if (!strcmp(verb, "activate")) {
        enum MHD_Result res;
        json_t *b = parse_body(c, s, q, &res);
        if (!b) return res;
        json_t *v = json_object_get(b, "version");
        if (!json_is_integer(v)) {
            json_decref(b);
            return send_error(c, MHD_HTTP_BAD_REQUEST, "'version' must be an integer");
        }
        version = (int)json_integer_value(v);
        json_decref(b);
        rc = pt_registry_activate(s->wreg, name, version, actor);
    } else if (!strcmp(verb, "rollback")) {
        rc = pt_registry_rollback(s->wreg, name, actor, &version);
    } else if (!strcmp(verb, "split")) {
        return do_split(c, s, name, q, actor);
    } else {
        return send_error(c, MHD_HTTP_NOT_FOUND, "no endpoint /v1/models/%s/%s", name, verb);
    }
    if (rc) return send_rc(c, rc);
    forget(s);
    /* load and check it now, off the scoring path, and make it current */
    struct loaded *l = NULL;
    if ((rc = acquire(s, name, version, 1, &l))) return send_rc(c, rc);
    unref(s, l);
    return send_json(c, MHD_HTTP_OK, json_pack("{s:s, s:i}", "model", name, "version", version));
}

static char *metrics_text(struct server *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    pthread_mutex_lock(&s->mu);
    fputs("# HELP polytask_requests_total HTTP requests by endpoint and status class.\n"
          "# TYPE polytask_requests_total counter\n", f);
    for (int e = 0; e < NEP; e++)
        for (int k = 1; k < 6; k++)
            if (s->st[e].count[k])
                fprintf(f, "polytask_requests_total{endpoint=\"%s\",status=\"%dxx\"} %" PRId64 "\n", EP_NAMES[e], k, s->st[e].count[k]);
    fputs("# HELP polytask_request_seconds Request latency by endpoint.\n# TYPE polytask_request_seconds histogram\n", f);
    for (int e = 0; e < NEP; e++) {
        int64_t cum = 0, total = 0;
        for (int k = 0; k < 6; k++) total += s->st[e].count[k];
        if (!total) continue;
        for (int b = 0; b < NBUCKETS; b++) {
            cum += s->st[e].hist[b];
            fprintf(f, "polytask_request_seconds_bucket{endpoint=\"%s\",le=\"%g\"} %" PRId64 "\n", EP_NAMES[e], BUCKETS[b], cum);
        }
        fprintf(f, "polytask_request_seconds_bucket{endpoint=\"%s\",le=\"+Inf\"} %" PRId64 "\n", EP_NAMES[e], total);
        fprintf(f, "polytask_request_seconds_sum{endpoint=\"%s\"} %.6f\n", EP_NAMES[e], s->st[e].sum);
        fprintf(f, "polytask_request_seconds_count{endpoint=\"%s\"} %" PRId64 "\n", EP_NAMES[e], total);
    }
    fputs("# HELP polytask_model_loaded Model versions in memory (current=1: the one served).\n"
          "# TYPE polytask_model_loaded gauge\n", f);
    for (int i = 0; i < s->ntab; i++)
        fprintf(f, "polytask_model_loaded{model=\"%s\",version=\"%d\",current=\"%d\"} 1\n", s->tab[i]->name, s->tab[i]->version,
                s->tab[i]->current);
    fputs("# HELP polytask_model_requests_total Scoring requests per model version (A/B variants).\n"
          "# TYPE polytask_model_requests_total counter\n", f);
    for (int k = 0; k < s->ncnt; k++)
        fprintf(f, "polytask_model_requests_total{model=\"%s\",version=\"%d\"} %" PRId64 "\n", s->cnt[k].name,
                s->cnt[k].version, s->cnt[k].n);
    fprintf(f, "# HELP polytask_rows_scored_total Rows scored by /v1/predict.\n# TYPE polytask_rows_scored_total counter\n"
               "polytask_rows_scored_total %" PRId64 "\n", s->rows_scored);
    fprintf(f, "# HELP polytask_events_accepted_total Events stored by /v1/events.\n"
               "# TYPE polytask_events_accepted_total counter\npolytask_events_accepted_total %" PRId64 "\n",
            s->events_accepted);
    /* drift of each version in memory: its references held, the lock
     * released while PSI is computed */
    struct loaded *held[TABN];
    int nh = 0;
    for (int i = 0; i < s->ntab; i++)
        if (s->tab[i]->m) s->tab[i]->refs++, held[nh++] = s->tab[i];
    pthread_mutex_unlock(&s->mu);
    fputs("# HELP polytask_feature_psi Population stability index of the inputs scored since the version was loaded, "
          "against its training data.\n# TYPE polytask_feature_psi gauge\n", f);
    for (int i = 0; i < nh; i++) {
        char *dj = NULL;
        if (!pt_model_drift(held[i]->m, &dj)) {
            json_t *d = json_loads(dj, 0, NULL), *fs = json_object_get(d, "features");
            for (size_t k = 0; k < json_array_size(fs); k++) {
                json_t *e = json_array_get(fs, k), *psi = json_object_get(e, "psi");
                if (json_is_number(psi))
                    fprintf(f, "polytask_feature_psi{model=\"%s\",version=\"%d\",feature=\"%s\"} %.6f\n", held[i]->name,
                            held[i]->version, json_string_value(json_object_get(e, "name")), json_number_value(psi));
            }
            json_decref(d);
        }
        pt_string_free(dj);
    }
    for (int i = 0; i < nh; i++) unref(s, held[i]);
    if (s->learner) learner_metrics(s->learner, f);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    /* open_memstream's buffer is libc's; the reply is freed with pt_free */
    char *out = pt_strdup(buf);
    free(buf);
    return out;
}

/* ---- dispatch ---- */

static int endpoint_of(const char *url)
{
    if (!strcmp(url, "/v1/predict")) return EP_PREDICT;
    if (!strcmp(url, "/v1/recommend")) return EP_RECOMMEND;
    if (!strcmp(url, "/v1/events")) return EP_EVENTS;
    if (!strncmp(url, "/v1/models", 10)) return strchr(url + 11, '/') && url[10] == '/' ? EP_ADMIN : EP_MODELS;
    if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz")) return EP_HEALTH;
    if (!strcmp(url, "/metrics")) return EP_METRICS;
    if (!strcmp(url, "/v1/keys") || !strncmp(url, "/v1/keys/", 9)) return EP_KEYS;
    return EP_OTHER;
}

/* Scope the endpoint needs: 0 none, PT_SCOPE_READ or PT_SCOPE_ADMIN. */
static int scope_of(int ep)
{
    switch (ep) {
    case EP_PREDICT: case EP_RECOMMEND: case EP_MODELS: return PT_SCOPE_READ;
    case EP_EVENTS: case EP_ADMIN: case EP_KEYS: return PT_SCOPE_ADMIN;
    default: return 0;
    }
}

static enum MHD_Result route(struct server *s, struct MHD_Connection *c, const char *url, const char *method,
                             struct req *q)
{
    int ep = endpoint_of(url), need = scope_of(ep), post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    char actor[64] = "insecure-no-auth";
    if (need && !s->o.insecure_no_auth) {
        const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        int scope = 0;
        if (!h || strncmp(h, "Bearer ", 7))
            return send_error(c, MHD_HTTP_UNAUTHORIZED, "an API key is required: Authorization: Bearer <key>");
        if (key_scope(s, h + 7, &scope)) return send_error(c, MHD_HTTP_UNAUTHORIZED, "the API key is not valid");
        if (scope < need) return send_error(c, MHD_HTTP_FORBIDDEN, "this key has read scope; the endpoint needs admin scope");
        snprintf(actor, sizeof actor, "api-key:%.8s", h + 7);
    }
    switch (ep) {
    case EP_PREDICT: return post ? do_predict(c, s, q) : send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST");
    case EP_RECOMMEND: return post ? do_recommend(c, s, q) : send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST");
    case EP_EVENTS: return post ? do_events(c, s, q) : send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST");
    case EP_MODELS:
        if (!get) return send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET");
        return do_models(c, s, url[10] == '/' && url[11] ? url + 11 : NULL);
    case EP_ADMIN: {
        char name[128];
        const char *a = url + 11, *slash = strchr(a, '/');
        snprintf(name, sizeof name, "%.*s", (int)(slash - a < 127 ? slash - a : 127), a);
        return post ? do_admin(c, s, name, slash + 1, q, actor) : send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST");
    }
    case EP_HEALTH:
        if (!strcmp(url, "/healthz")) return send_json(c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"));
        {
            /* ready: every active model is loaded and current */
            char *js = NULL;
            int ready = 1;
            if (pt_registry_served(s->reg, NULL, &js)) return send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "registry unreadable");
            json_t *j = json_loads(js, 0, NULL), *ms = json_object_get(j, "models");
            pt_string_free(js);
            for (size_t k = 0; k < json_array_size(ms); k++) {
                json_t *m = json_array_get(ms, k);
                const char *mn = json_string_value(json_object_get(m, "name"));
                int act = (int)json_integer_value(json_object_get(m, "active")), have = 0;
                pthread_mutex_lock(&s->mu);
                for (int i = 0; i < s->ntab; i++) have |= mn && !strcmp(s->tab[i]->name, mn) && s->tab[i]->version == act;
                pthread_mutex_unlock(&s->mu);
                ready &= !act || have;
            }
            json_decref(j);
            return ready ? send_json(c, MHD_HTTP_OK, json_pack("{s:s}", "status", "ready"))
                         : send_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "models are loading");
        }
    case EP_KEYS: return do_keys(c, s, url, method, q, actor);
    case EP_METRICS: {
        char *t = metrics_text(s);
        return t ? send_text(c, MHD_HTTP_OK, "text/plain; version=0.0.4", t) : MHD_NO;
    }
    default: return send_error(c, MHD_HTTP_NOT_FOUND, "no endpoint %s %s", method, url);
    }
}

static void account(struct server *s, int ep, unsigned status, double secs)
{
    pthread_mutex_lock(&s->mu);
    struct stat_row *r = &s->st[ep];
    r->count[status / 100 < 6 ? status / 100 : 5]++;
    int b = 0;
    while (b < NBUCKETS && secs > BUCKETS[b]) b++;
    r->hist[b]++;
    r->sum += secs;
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **ctx)
{
    (void)version;
    struct server *s = cls;
    struct req *q = *ctx;
    if (!q) { /* first call: headers only */
        /* Requests are the parallelism: one scoring thread each. The OpenMP
         * setting is per thread and these threads are MHD's, so each sets it
         * once; otherwise every worker would start its own team of nproc
         * threads (OMP_NUM_THREADS is read before main, so setenv is too
         * late), spinning against the other workers for the same cores. */
        static _Thread_local int one_thread;
        if (!one_thread) pt_set_threads(1), one_thread = 1;
        if (!(q = pt_calloc(1, sizeof *q))) return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &q->t0);
        *ctx = q;
        return MHD_YES;
    }
    if (*size) { /* a piece of the body */
        if (!q->too_big && q->len + *size > s->o.max_body) q->too_big = 1;
        if (!q->too_big) {
            if (q->len + *size + 1 > q->cap) {
                size_t cap = q->cap ? q->cap * 2 : 4096;
                while (cap < q->len + *size + 1) cap *= 2;
                char *nb = pt_realloc(q->buf, cap);
                if (!nb) return MHD_NO;
                q->buf = nb, q->cap = cap;
            }
            memcpy(q->buf + q->len, data, *size);
            q->len += *size;
        }
        *size = 0;
        return MHD_YES;
    }
    enum MHD_Result res;
    int ep = endpoint_of(url);
    unsigned status = 0;
    if (q->ev_state == EV_DONE) {
        res = events_reply(c, s, q); /* resumed after the committer */
    } else if (q->too_big) {
        res = send_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "body larger than %zu bytes", s->o.max_body);
        status = 413;
    } else {
        res = route(s, c, url, method, q);
        if (q->ev_state == EV_QUEUED) return res; /* suspended: no reply yet */
    }
    /* the status the reply carried, for the counters */
    if (!status) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        status = ci ? ci->http_status : 500;
    }
    account(s, ep, status, since(&q->t0));
    return res;
}

static void on_done(void *cls, struct MHD_Connection *c, void **ctx, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    struct req *q = *ctx;
    if (q) pt_free(q->buf), pt_free(q->ev_rows), pt_free(q);
    *ctx = NULL;
}

int pt_serve(const pt_serve_opts *opts, void (*ready)(int port, void *user), void *user)
{
    struct server *s = pt_calloc(1, sizeof *s);
    if (!s) return PT_ENOMEM;
    s->o = opts ? *opts : pt_serve_opts_default();
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcv, NULL);
    int rc = pt_registry_open(s->o.registry, &s->reg);
    if (!rc) rc = pt_registry_open(s->o.registry, &s->wreg);
    if (rc) goto out;
    /* the address: HOST:PORT, loopback unless told otherwise */
    char host[256] = "127.0.0.1";
    int port = 8080;
    const char *colon = strrchr(s->o.listen ? s->o.listen : "", ':');
    if (colon) {
        snprintf(host, sizeof host, "%.*s", (int)(colon - s->o.listen), s->o.listen);
        port = atoi(colon + 1);
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        rc = PT_EINVAL;
        fprintf(stderr, "polytask: --listen '%s' is not IPV4:PORT\n", s->o.listen);
        goto out;
    }
    /* load every active model before taking requests */
    char *js = NULL;
    if ((rc = pt_registry_served(s->reg, NULL, &js))) goto out;
    json_t *j = json_loads(js, 0, NULL), *ms = json_object_get(j, "models");
    pt_string_free(js);
    for (size_t k = 0; k < json_array_size(ms) && !rc; k++) {
        json_t *m = json_array_get(ms, k);
        int act = (int)json_integer_value(json_object_get(m, "active"));
        struct loaded *l = NULL;
        if (act > 0 && !(rc = acquire(s, json_string_value(json_object_get(m, "name")), act, 1, &l))) unref(s, l);
    }
    json_decref(j);
    if (rc) goto out;
    if (!s->o.no_learn) {
        struct learner_hooks h = {.srv = s, .served = hook_served, .release = hook_release, .published = hook_published};
        if ((rc = learner_start(&s->learner, &s->o, &h))) goto out;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* MHD's threads inherit the mask: the signals come to sigwait */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(s->o.threads > 0 ? s->o.threads : 1), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)s->o.timeout_s, MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_NOTIFY_COMPLETED, on_done, s,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "polytask: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
        rc = PT_EIO;
        goto out;
    }
    if (pthread_create(&s->committer, NULL, committer, s) == 0) s->committer_on = 1;
    else pt_log(PT_LOG_WARN, "serve: no committer thread: events are stored by the request threads");
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (ready) ready(di ? di->port : port, user);
    int sig = 0;
    sigwait(&set, &sig);
    /* stop accepting; the committer stores what waits and resumes those
     * connections (MHD must not stop with one suspended; later events are
     * stored by their request threads); MHD_stop_daemon lets the requests in
     * flight finish */
    MHD_quiesce_daemon(d);
    pthread_mutex_lock(&s->qmu);
    s->draining = 1;
    pthread_cond_signal(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
    if (s->committer_on) pthread_join(s->committer, NULL);
    MHD_stop_daemon(d);
out:
    learner_stop(s->learner); /* before the table it borrows from */
    for (int i = 0; i < s->ntab; i++) free_loaded(s->tab[i]);
    pt_registry_close(s->reg);
    pt_registry_close(s->wreg);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->qmu);
    pthread_cond_destroy(&s->qcv);
    pt_free(s);
    return rc;
}
