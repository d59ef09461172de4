/* predict_json.c: pt_model_predict_json and pt_model_score_json, in-memory
 * scoring of rows given as JSON (the HTTP server's /v1/predict, and the
 * online learner's running AUC), and rows_json_encode, which online.c trains
 * from as well.
 *
 * One encoder. Each row's values are turned into the text a CSV cell would
 * hold and handed to data_reader_add_row (schema.c), the encoder behind file
 * rows too, so vocabulary lookups, missing-value spellings, imputation,
 * standardisation, buckets and multi-valued separators cannot disagree
 * between pt_model_predict_file and this. (A CSV built in memory would reuse
 * it as well, but would quote and re-split every value and need a header per
 * call; strings in feature order skip both.)
 *
 * The text is parsed with cJSON, not jansson as elsewhere: for a 100-row
 * request it parses about six times faster (no hash table per row object),
 * and parsing was over half of a /v1/predict call. A column named twice in
 * a row is refused here (jansson's JSON_REJECT_DUPLICATES did it before).
 * JSON values become text so:
 *   string   as it is;
 *   number   the shortest %.Ng, N <= 17, that reads back as the same double
 *            (3 → "3", 0.1 → "0.1", 2.0 → "2"): a numeric column gets the
 *            same value as from the CSV, and a number sent for a categorical
 *            column matches the spelling a CSV writer would most likely have
 *            used; integers past 2^53 are not exact (JSON numbers are
 *            doubles), so a categorical code is only exact when sent as a
 *            string;
 *   boolean  "1"/"0" in a numeric column (its only numeric meaning),
 *            "true"/"false" in a categorical or multi-valued one (JSON's own
 *            spelling; a client whose training data spelt them "True" or "1"
 *            sends those strings);
 *   null     an empty cell, like a column that is absent: the training-time
 *            default (imputed numeric, unknown category).
 * Columns the model does not read but the training data named (labels, keys,
 * data.format.columns) are accepted and ignored, so one body can carry labels
 * for /v1/events as well; with labels asked for, each task's label cell is
 * read as a file's (positive values, only_when masks). Rows are numbered
 * from 0 in messages ("row 0" is the array's first element).
 *
 * Threads. model_predict_dataset runs forward() on activation buffers held
 * in the model (sized by model_reserve), so two calls on one model would
 * write over each other's. Each call here scores through its thread's view
 * instead: a copy of struct model that shares the weights, schema and config
 * (which scoring only reads) and owns copies of the layer structs that hold
 * buffer pointers plus its own buffers (for at most CHUNK rows at a time).
 * The thread keeps the view for its next call on the same model. Calls may
 * therefore run on any number of threads on one model at once; they must not
 * overlap a call that changes the model (pt_model_learn_json,
 * pt_model_gate_stats, freeing it). The view's buffers are model_reserve's
 * and are freed by model_free_acts, so the two cannot drift apart.
 *
 * Not done here: no per-row error tolerance (max_bad_rows); the first bad row
 * fails the call, since a server answers for the whole request. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/drift.h"
#include "data/schema.h"
#include "eval/evaluate.h"
#include "data/vocab.h"
#include "models/model.h"
#include "util/util.h"

/* Rows per forward pass: a few hundred keep the products efficient while the
 * view's buffers stay small (the census MMoE: about 3 MB at 256 rows). */
#define CHUNK 256

/* ---- scoring view ---- */

static void *dup_array(const void *src, size_t n, size_t elem)
{
    void *p = pt_malloc((n ? n : 1) * elem);
    if (p && n) memcpy(p, src, n * elem);
    return p;
}

static void mlp_detach(struct mlp *n) { n->h = n->dh = n->mask = NULL; }

static void gate_detach(struct gate *g)
{
    g->p = g->dp = g->dz = NULL;
    g->psum = NULL; /* written only with gate_stats, which a view never sets */
}

/* A scoring view. Closing it reads nothing of the model it came from, which
 * may be freed by then (a thread's cached view outlives the model it last
 * scored with). */
struct view {
    struct model m;
    uint64_t uid;                /* the model's (model.h): never reused */
    int bmax, open;
};

/* Frees the view's buffers (model_free_acts) and its own copies of the
 * layer structs. Safe on a partly built view: everything not yet its own is
 * NULL. */
static void view_close(struct view *vw)
{
    struct model *v = &vw->m;
    model_free_acts(v);
    for (int l = 0; v->lv && l < v->nlevels; l++) {
        struct cgc *L = &v->lv[l];
        pt_free(L->ex), pt_free(L->tg), pt_free(L->out), pt_free(L->dout);
    }
    pt_free(v->E), pt_free(v->nets), pt_free(v->towers), pt_free(v->lv);
    memset(vw, 0, sizeof *vw);
}

/* vw: a view of m with buffers for bmax rows (see the file comment). The
 * struct copy only reads m. Close with view_close, also after a failure. */
static int view_open(struct view *vw, const struct model *m, int bmax)
{
    int T = m->ntasks;
    struct model *v = &vw->m;
    vw->uid = m->uid, vw->bmax = bmax, vw->open = 1;
    *v = *m;
    /* nothing below points into m's mutable state once these are reset */
    v->E = NULL, v->nets = NULL, v->towers = NULL, v->lv = NULL;
    v->logits = v->dlogits = v->ycol = NULL;
    memset(&v->bt, 0, sizeof v->bt);
    v->bmax = 0;
    v->gate_stats = 0, v->gate_rows = 0;
    v->g = v->m = v->v = NULL;
    v->cs = NULL, v->crow = v->cinv = NULL, v->ckeys = NULL, v->cg = NULL;
    v->train_report = v->metrics_json = NULL;
    v->owns_cfg = 0;
    mlp_detach(&v->bottom);
    if (m->E) {
        if (!(v->E = dup_array(m->E, (size_t)m->nembeds, sizeof *m->E))) goto nomem;
        for (int e = 0; e < m->nembeds; e++) v->E[e].x = v->E[e].dx = NULL;
    }
    if (m->nets) {
        if (!(v->nets = dup_array(m->nets, (size_t)T, sizeof *m->nets))) goto nomem;
        for (int t = 0; t < T; t++) mlp_detach(&v->nets[t]);
    }
    if (m->towers) {
        if (!(v->towers = dup_array(m->towers, (size_t)T, sizeof *m->towers))) goto nomem;
        for (int t = 0; t < T; t++) mlp_detach(&v->towers[t]);
    }
    if (m->lv) {
        if (!(v->lv = pt_calloc((size_t)m->nlevels + 1, sizeof *v->lv))) goto nomem;
        for (int l = 0; l < m->nlevels; l++) {
            const struct cgc *M = &m->lv[l];
            struct cgc *L = &v->lv[l];
            int ne = T * M->nt + M->ns;
            *L = *M;
            L->ex = NULL, L->tg = NULL, L->out = L->dout = NULL;
            L->sout = L->dsout = L->h0 = L->dh0 = L->mask0 = NULL;
            gate_detach(&L->sg);
            if (!(L->ex = dup_array(M->ex, (size_t)ne, sizeof *M->ex))) goto nomem;
            for (int k = 0; k < ne; k++) mlp_detach(&L->ex[k]);
            if (!(L->tg = dup_array(M->tg, (size_t)T, sizeof *M->tg))) goto nomem;
            for (int t = 0; t < T; t++) gate_detach(&L->tg[t]);
            L->out = pt_calloc((size_t)T + 1, sizeof *L->out);
            L->dout = pt_calloc((size_t)T + 1, sizeof *L->dout);
            if (!L->out || !L->dout) goto nomem;
        }
    }
    int rc = model_reserve(v, bmax);
    /* see rows_json_encode: the batch's ids buffer must not be NULL either */
    for (int j = 0; !rc && j < v->bt.nmulti; j++) {
        if (!v->bt.mids[j]) {
            if (!(v->bt.mids[j] = pt_malloc(sizeof *v->bt.mids[j]))) goto nomem;
            v->bt.mcap[j] = 1;
        }
    }
    return rc;
nomem:
    return pt_error(PT_ENOMEM, "out of memory");
}

/* ---- text ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static int buf_need(struct buf *b, size_t more)
{
    if (b->len + more + 1 <= b->cap) return PT_OK;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->len + more + 1) nc *= 2;
    char *np = pt_realloc(b->p, nc);
    if (!np) return pt_error(PT_ENOMEM, "out of memory");
    b->p = np;
    b->cap = nc;
    return PT_OK;
}

static int buf_add(struct buf *b, const char *s, size_t n)
{
    if (buf_need(b, n)) return PT_ENOMEM;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return PT_OK;
}

/* s as a JSON string literal (quotes, backslashes and control bytes escaped;
 * other bytes as they are). */
static int buf_add_json_string(struct buf *b, const char *s)
{
    if (buf_need(b, 6 * strlen(s) + 2)) return PT_ENOMEM;
    char *p = b->p + b->len;
    *p++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') *p++ = '\\', *p++ = (char)c;
        else if (c < 0x20) p += sprintf(p, "\\u%04x", c);
        else *p++ = (char)c;
    }
    *p++ = '"';
    *p = 0;
    b->len = (size_t)(p - b->p);
    return PT_OK;
}

/* The shortest %.Ng that reads back as x (see the file comment). */
static size_t real_text(char *out, size_t n, double x)
{
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(out, n, "%.*g", prec, x);
        if (strtod(out, NULL) == x) break;
    }
    return (size_t)len;
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    return "null";
}

/* cJSON allocates through pt_malloc too (STYLE: fault tests reach it); a
 * failed allocation is noted, as cJSON reports it like a syntax error.
 *
 * While a thread parses rows, cJSON's allocations come from that thread's
 * arena: a bump pointer instead of a malloc and a free for each of a 100-row
 * body's ~12,000 nodes and strings, and the tree is dropped at once. The
 * arena is kept for the thread's next call (up to ARENA_MAX bytes; what does
 * not fit is allocated one by one and freed after the call). */
#define ARENA_MAX ((size_t)8 << 20)

struct arena {
    char *base;
    size_t cap, used;
    void **extra;                /* allocations past cap, linked through their first word */
};

static _Thread_local int cjson_nomem;
static _Thread_local struct arena *cjson_arena; /* set only while this thread parses */

static void *cjson_malloc(size_t n)
{
    struct arena *a = cjson_arena;
    if (a) {
        size_t k = (n + 15) & ~(size_t)15;
        if (a->cap - a->used >= k) {
            void *p = a->base + a->used;
            a->used += k;
            return p;
        }
        void **c = pt_malloc(2 * sizeof(void *) + n); /* a link, then 16-byte aligned data */
        if (!c) {
            cjson_nomem = 1;
            return NULL;
        }
        c[0] = (void *)a->extra;
        a->extra = c;
        return c + 2;
    }
    void *p = pt_malloc(n);
    if (!p) cjson_nomem = 1;
    return p;
}

static void cjson_free(void *p)
{
    if (!cjson_arena) pt_free(p); /* arena memory goes with the arena */
}

static pthread_once_t cjson_once = PTHREAD_ONCE_INIT;
static pthread_key_t arena_key;
static int arena_key_ok;

static void arena_free(void *p)
{
    struct arena *a = p;
    pt_free(a->base);
    pt_free(a);
}

static void cjson_hooks(void)
{
    cJSON_Hooks h = {.malloc_fn = cjson_malloc, .free_fn = cjson_free};
    cJSON_InitHooks(&h);
    arena_key_ok = pthread_key_create(&arena_key, arena_free) == 0;
}

/* This thread's arena, emptied, with room for a body of len bytes (about
 * 16 bytes of tree per byte of text), or NULL: cJSON then allocates as usual. */
static struct arena *arena_get(size_t len)
{
    if (!arena_key_ok) return NULL;
    struct arena *a = pthread_getspecific(arena_key);
    if (!a) {
        if (!(a = pt_calloc(1, sizeof *a))) return NULL;
        if (pthread_setspecific(arena_key, a)) {
            pt_free(a);
            return NULL;
        }
    }
    size_t want = 16 * len + 4096;
    if (want > ARENA_MAX) want = ARENA_MAX;
    if (a->cap < want) {
        char *b = pt_malloc(want);
        if (b) pt_free(a->base), a->base = b, a->cap = want;
    }
    a->used = 0, a->extra = NULL;
    return a;
}

/* Drops what the last parse put in the arena. */
static void arena_reset(struct arena *a)
{
    while (a->extra) {
        void **c = a->extra;
        a->extra = (void **)c[0];
        pt_free(c);
    }
    a->used = 0;
}

/* Where a parse stopped, as line and column (1-based) of text. */
static void text_place(const char *text, const char *at, int *line, int *col)
{
    *line = 1, *col = 1;
    for (const char *p = text; p < at; p++) {
        if (*p == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
}

/* ---- the rows ---- */

/* Names a row may use: ids [0, nfeat) are the features (s->f order), later
 * ids the columns that are accepted (labels, keys, data.format.columns);
 * lab[t]: the id of task t's label column. */
static int column_names(struct vocab *names, const struct schema *s, int32_t *lab)
{
    const struct pt_config *c = s->cfg;
    int32_t id;
    int rc = PT_OK;
    for (int i = 0; i < s->nfeat && !rc; i++) {
        rc = vocab_add(names, s->f[i].cfg->name, strlen(s->f[i].cfg->name), &id);
        if (!rc && id != i) rc = pt_error(PT_ESCHEMA, "feature '%s' is listed twice", s->f[i].cfg->name);
    }
    for (int t = 0; t < c->ntasks && !rc; t++) rc = vocab_add(names, c->tasks[t].label, strlen(c->tasks[t].label), &lab[t]);
    for (int k = 0; k < c->nkeys && !rc; k++) rc = vocab_add(names, c->keys[k], strlen(c->keys[k]), &id);
    for (int k = 0; k < c->ncolumns && !rc; k++) rc = vocab_add(names, c->columns[k], strlen(c->columns[k]), &id);
    return rc;
}

struct rows_ctx {                /* scratch of one call */
    const struct schema *s;
    struct vocab names;
    int32_t *lab;                /* [T] label column ids */
    const char **txt;            /* [ncol] text per column of the row at hand */
    size_t *len;
    char *num;                   /* [ncol * 32] text of its numbers and booleans */
    unsigned char *seen;         /* [ncol] columns the row has named */
    int32_t *order;              /* [ncol] column of each key position in the row before: rows
                                    usually list their columns in one order, so a key is first
                                    compared with that column's name, not hashed */
    const char **fields;         /* [nfeat + T] what data_reader_add_row reads */
    size_t *flen;
};

/* Row r of the array into d through the file encoder (labels too when
 * labels is set). */
static int encode_json_row(struct rows_ctx *x, struct data_reader *rd, struct dataset *d, const cJSON *row, size_t r,
                           int labels)
{
    const struct schema *s = x->s;
    if (!cJSON_IsObject(row))
        return pt_error(PT_EINVAL, "row %zu: %s, not an object of column: value", r, type_name(row));
    memset(x->txt, 0, (size_t)x->names.n * sizeof *x->txt);
    memset(x->seen, 0, (size_t)x->names.n);
    const cJSON *v;
    int32_t k = 0;
    cJSON_ArrayForEach(v, row) {
        const char *key = v->string;
        int32_t id = k < x->names.n && x->order[k] >= 0 && !strcmp(vocab_str(&x->names, x->order[k]), key)
                         ? x->order[k]
                         : vocab_find(&x->names, key, strlen(key));
        if (id < 0) return pt_error(PT_EINVAL, "row %zu: unknown column '%.200s'", r, key);
        if (k < x->names.n) x->order[k] = id;
        k++;
        if (x->seen[id]++) return pt_error(PT_EINVAL, "row %zu: duplicate column '%.200s'", r, key);
        if (cJSON_IsObject(v) || cJSON_IsArray(v))
            return pt_error(PT_EINVAL, "row %zu: column '%.200s': %s; a value must be a string, number, boolean or null",
                            r, key, type_name(v));
        if (id >= s->nfeat && !labels) continue; /* a label or key column: not read */
        char *t = x->num + (size_t)id * 32;
        int numeric = id < s->nfeat && s->f[id].cfg->kind == FEAT_NUMERIC;
        if (cJSON_IsString(v)) {
            x->txt[id] = v->valuestring;
            x->len[id] = strlen(v->valuestring);
        } else if (cJSON_IsNumber(v)) {
            x->txt[id] = t;
            x->len[id] = real_text(t, 32, v->valuedouble);
        } else if (cJSON_IsBool(v)) {
            x->txt[id] = cJSON_IsTrue(v) ? (numeric ? "1" : "true") : (numeric ? "0" : "false");
            x->len[id] = strlen(x->txt[id]);
        } else { /* null: an empty cell */
            x->txt[id] = NULL;
        }
    }
    const char *const *f = x->txt;
    const size_t *fl = x->len;
    if (labels) { /* features, then each task's label cell */
        int nf = s->nfeat;
        memcpy(x->fields, x->txt, (size_t)nf * sizeof *x->fields);
        memcpy(x->flen, x->len, (size_t)nf * sizeof *x->flen);
        for (int t = 0; t < s->ntasks; t++) x->fields[nf + t] = x->txt[x->lab[t]], x->flen[nf + t] = x->len[x->lab[t]];
        f = x->fields, fl = x->flen;
    }
    int rc = data_reader_add_row(rd, (struct schema *)s, d, f, fl, (long)r);
    /* an unreadable value (a numeric column without impute:) is a bad
     * request like the rest; the message says which */
    return rc == PT_EPARSE || rc == PT_ENUMERIC ? PT_EINVAL : rc;
}

int rows_json_encode(const struct model *m, const char *rows_json, size_t len, int64_t max_rows, int labels,
                     struct dataset **out)
{
    *out = NULL;
    const struct schema *s = m->schema;
    (void)pthread_once(&cjson_once, cjson_hooks);
    const char *text = rows_json ? rows_json : "", *end = NULL;
    cjson_nomem = 0;
    struct arena *ar = arena_get(len);
    cjson_arena = ar;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    cjson_arena = NULL;
    struct rows_ctx x = {.s = s};
    struct data_reader *rd = NULL;
    struct dataset *d = NULL;
    int rc = PT_OK, line, col;
    vocab_init(&x.names);
    if (cjson_nomem) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    while (root && end && end < text + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (!root || (end && end < text + len)) {
        text_place(text, end && end >= text && end <= text + len ? end : text, &line, &col);
        rc = pt_error(PT_EINVAL, "the rows are not valid JSON: line %d column %d: %s", line, col,
                      root ? "text after the array" : "unexpected text");
        goto done;
    }
    if (!cJSON_IsArray(root)) {
        rc = pt_error(PT_EINVAL, "the rows must be a JSON array of objects, not %s", type_name(root));
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(root);
    if (max_rows > 0 && n > (size_t)max_rows) {
        rc = pt_error(PT_EINVAL, "%zu rows, at most %lld", n, (long long)max_rows);
        goto done;
    }
    if (!(x.lab = pt_calloc((size_t)s->ntasks + 1, sizeof *x.lab))) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = column_names(&x.names, s, x.lab))) goto done;
    if ((rc = dataset_create(&d, s)) || (rc = data_reader_open_rows(&rd, s, "row", labels))) goto done;
    size_t nc = (size_t)x.names.n + 1, nf = (size_t)s->nfeat + (size_t)s->ntasks + 1;
    x.txt = pt_malloc(nc * sizeof *x.txt);
    x.len = pt_malloc(nc * sizeof *x.len);
    x.num = pt_malloc(nc * 32);
    x.fields = pt_malloc(nf * sizeof *x.fields);
    x.flen = pt_malloc(nf * sizeof *x.flen);
    x.seen = pt_malloc(nc);
    x.order = pt_malloc(nc * sizeof *x.order);
    if (!x.txt || !x.len || !x.num || !x.fields || !x.flen || !x.seen || !x.order) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < nc; i++) x.order[i] = -1;
    size_t r = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, root) {
        if ((rc = encode_json_row(&x, rd, d, row, r++, labels))) goto done;
    }
    /* model_gather copies each row's multi-valued ids with memcpy from
     * d->mids[j] + offset, NULL while no row has had a value: a zero-length
     * copy, but NULL + 0 is undefined behaviour (UBSan stops there) */
    for (int j = 0; j < s->nmulti; j++) {
        if (!d->mids[j]) {
            if (!(d->mids[j] = pt_malloc(sizeof *d->mids[j]))) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
            d->mcap[j] = 1;
        }
    }
    *out = d;
    d = NULL;
done:
    pt_free(x.lab);
    pt_free(x.txt);
    pt_free(x.len);
    pt_free(x.num);
    pt_free(x.fields);
    pt_free(x.flen);
    pt_free(x.seen);
    pt_free(x.order);
    data_reader_close(rd);
    dataset_free(d);
    vocab_free(&x.names);
    if (ar) arena_reset(ar); /* the tree goes with it */
    else cJSON_Delete(root);
    return rc;
}

/* ---- scoring ---- */

/* Each thread keeps the view it scored with last, so a server thread
 * answering request after request for one model allocates (and faults in)
 * its megabytes of activation buffers once, not per request; freed when the
 * thread ends or scores with another model. */
static pthread_key_t view_key;
static pthread_once_t view_once = PTHREAD_ONCE_INIT;
static int view_key_ok;

static void view_cache_free(void *p)
{
    struct view *vw = p;
    if (vw->open) view_close(vw);
    pt_free(vw);
}

static void view_key_make(void) { view_key_ok = pthread_key_create(&view_key, view_cache_free) == 0; }

/* This thread's view, fit for m and B rows (opened anew when it is not). */
static int view_get(struct model *m, int B, struct view **out)
{
    (void)pthread_once(&view_once, view_key_make);
    struct view *vw = view_key_ok ? pthread_getspecific(view_key) : NULL;
    if (!vw) {
        if (!(vw = pt_calloc(1, sizeof *vw))) return pt_error(PT_ENOMEM, "out of memory");
        if (view_key_ok && pthread_setspecific(view_key, vw)) {
            pt_free(vw);
            return pt_error(PT_ENOMEM, "out of memory");
        }
        if (!view_key_ok) { /* no key: one view per call */
            *out = vw;
            int rc = view_open(vw, m, B);
            if (rc) view_cache_free(vw), *out = NULL;
            return rc;
        }
    }
    if (vw->open && (vw->uid != m->uid || vw->bmax < B)) view_close(vw);
    if (!vw->open) {
        int rc = view_open(vw, m, B);
        if (rc) {
            view_close(vw);
            return rc;
        }
    }
    *out = vw;
    return PT_OK;
}

/* Scores d's n rows through this thread's view of m into p[n, nout]. */
static int score_rows(struct model *m, const struct dataset *d, float *p)
{
    int64_t n = d->n;
    int B = n < CHUNK ? (int)n : CHUNK, rc;
    struct view *vw = NULL;
    int64_t *idx = pt_malloc((size_t)B * sizeof *idx);
    if (!idx) return pt_error(PT_ENOMEM, "out of memory");
    if ((rc = view_get(m, B, &vw))) goto done;
    for (int64_t s0 = 0; s0 < n; s0 += B) {
        int b = n - s0 < B ? (int)(n - s0) : B;
        for (int i = 0; i < b; i++) idx[i] = s0 + i;
        if ((rc = model_gather(&vw->m, d, NULL, idx, b))) goto done;
        model_predict_batch(&vw->m, p + (size_t)s0 * (size_t)m->nout);
    }
done:
    if (vw && !view_key_ok) view_cache_free(vw);
    pt_free(idx);
    return rc;
}

int pt_model_predict_json(pt_model *pm, const char *rows_json, size_t len, int64_t max_rows, char **json)
{
    struct model *m = (struct model *)pm;
    if (json) *json = NULL;
    if (!m || !json || (!rows_json && len))
        return pt_error(PT_EINVAL, "pt_model_predict_json: model, text and output are required");
    int T = m->nout, rc;
    struct dataset *d = NULL;
    float *p = NULL;
    char **keys = NULL;
    struct buf out = {0};
    if ((rc = rows_json_encode(m, rows_json, len, max_rows, 0, &d))) return rc;
    size_t n = (size_t)d->n;
    if (n == 0) {
        dataset_free(d);
        if (!(*json = pt_strdup("[]"))) return pt_error(PT_ENOMEM, "out of memory");
        return PT_OK;
    }
    /* "{"name": and ,"name": once per output column */
    keys = pt_calloc((size_t)T + 1, sizeof *keys);
    p = pt_malloc(n * (size_t)T * sizeof *p);
    if (!keys || !p) {
        rc = pt_error(PT_ENOMEM, "out of memory");
        goto done;
    }
    for (int t = 0; t < T; t++) {
        struct buf k = {0};
        if (buf_add(&k, t ? "," : "{", 1) || buf_add_json_string(&k, model_output_name(m, t)) || buf_add(&k, ":", 1)) {
            pt_free(k.p);
            rc = PT_ENOMEM;
            goto done;
        }
        keys[t] = k.p;
    }
    if ((rc = score_rows(m, d, p))) goto done;
    drift_count(m->schema, d, 0, d->n); /* live inputs, for pt_model_drift */
    /* one allocation for the usual text: keys and numbers are short */
    if ((rc = buf_need(&out, 2 + n * (size_t)(T * 24 + 4))) || (rc = buf_add(&out, "[", 1))) goto done;
    for (size_t i = 0; i < n; i++) {
        if (i && (rc = buf_add(&out, ",", 1))) goto done;
        for (int t = 0; t < T; t++) {
            char tx[32];
            float x = p[i * (size_t)T + (size_t)t];
            /* JSON has no NaN or infinity: a diverged output is null */
            int tl = isfinite(x) ? snprintf(tx, sizeof tx, "%.7g", x) : snprintf(tx, sizeof tx, "null");
            if ((rc = buf_add(&out, keys[t], strlen(keys[t]))) || (rc = buf_add(&out, tx, (size_t)tl))) goto done;
        }
        if ((rc = buf_add(&out, "}", 1))) goto done;
    }
    if ((rc = buf_add(&out, "]", 1))) goto done;
    *json = out.p;
    out.p = NULL;
done:
    for (int t = 0; keys && t < T; t++) pt_free(keys[t]);
    pt_free(keys);
    pt_free(out.p);
    pt_free(p);
    dataset_free(d);
    return rc;
}

int pt_model_score_json(pt_model *pm, const char *rows_json, size_t len, int64_t max_rows, int64_t *n, float **p,
                        float **y)
{
    struct model *m = (struct model *)pm;
    if (n) *n = 0;
    if (p) *p = NULL;
    if (y) *y = NULL;
    if (!m || !n || !p || !y || (!rows_json && len))
        return pt_error(PT_EINVAL, "pt_model_score_json: model, text and outputs are required");
    struct dataset *d = NULL;
    int rc = rows_json_encode(m, rows_json, len, max_rows, 1, &d);
    if (rc) return rc;
    size_t T = (size_t)m->nout, nr = (size_t)d->n;
    float *pp = pt_malloc((nr ? nr : 1) * T * sizeof *pp), *yy = pt_malloc((nr ? nr : 1) * T * sizeof *yy);
    if (!pp || !yy) rc = pt_error(PT_ENOMEM, "out of memory");
    else if (nr) rc = score_rows(m, d, pp);
    for (size_t i = 0; !rc && i < nr; i++)
        for (size_t j = 0; j < T; j++) yy[i * T + j] = model_output_label(m, d, (int64_t)i, (int)j);
    dataset_free(d);
    if (rc) {
        pt_free(pp);
        pt_free(yy);
        return rc;
    }
    *n = (int64_t)nr, *p = pp, *y = yy;
    return PT_OK;
}

int pt_model_check_json(pt_model *pm, const char *rows_json, size_t len, int64_t max_rows, int64_t *n)
{
    struct model *m = (struct model *)pm;
    if (n) *n = 0;
    if (!m || (!rows_json && len)) return pt_error(PT_EINVAL, "pt_model_check_json: model and text are required");
    struct dataset *d = NULL;
    int rc = rows_json_encode(m, rows_json, len, max_rows, 1, &d);
    if (!rc && n) *n = d->n;
    dataset_free(d);
    return rc;
}

void pt_floats_free(float *p) { pt_free(p); }

int pt_model_outputs(const pt_model *pm) { return pm ? ((const struct model *)pm)->nout : 0; }

const char *pt_model_output_name(const pt_model *pm, int j)
{
    const struct model *m = (const struct model *)pm;
    return m && j >= 0 && j < m->nout ? model_output_name(m, j) : NULL;
}
