/* rank.c: the ranking stage. Candidates from the retrieval model are scored
 * by a multi-task model on exactly the features its training rows had: each
 * candidate becomes a synthetic exposure one second after the event log's
 * last event, appended to a copy of the log, and the sample builder computes
 * its features from the earlier events (so nothing leaks and nothing is
 * computed twice in two ways). Then the candidates are ordered by the
 * objective (pCTR, pCTR x pCVR, x price) with at most per_category items of a
 * category in the top k. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include "data/build.h"
#include "data/csv.h"
#include "data/timeparse.h"
#include "rec/recommender.h"
#include "util/util.h"

pt_rec_rank_opts pt_rec_rank_opts_default(void)
{
    pt_rec_rank_opts o = {.candidates = 100, .objective = PT_RANK_CTR_CVR};
    return o;
}

struct cand {
    int32_t item, rrank;     /* item id; 1-based retrieval rank */
    float pc, pv, score;
    int have;                /* the rank model scored it */
};

struct stage {
    const pt_recommender *r;
    const struct samples_cfg *sc;
    struct vocab names;      /* the users asked, by id string */
    int32_t *uid;            /* [nu] recommender user id or -1 */
    int32_t nu, C;
    struct cand *cand;       /* [nu * C] */
    int32_t *ncand;
    char **item_cat;         /* [N] category string from the log, or NULL */
    int64_t t_rank;
    char dir[512];
};

/* Writes s to f as one CSV field, quoted when it holds the delimiter, a quote or a line end. */
static int put_field(FILE *f, const char *s, size_t n, const char *delim)
{
    int q = strstr(s, delim) || memchr(s, '"', n) || memchr(s, '\n', n) || memchr(s, '\r', n);
    if (!q) return fwrite(s, 1, n, f) == n ? 0 : -1;
    if (fputc('"', f) == EOF) return -1;
    for (size_t i = 0; i < n; i++)
        if ((s[i] == '"' && fputc('"', f) == EOF) || fputc(s[i], f) == EOF) return -1;
    return fputc('"', f) == EOF ? -1 : 0;
}

static int col_named(char **names, int n, const char *want)
{
    for (int i = 0; want && i < n; i++)
        if (!strcmp(names[i], want)) return i;
    return -1;
}

/* One pass over the log: the category of each item (its last one) and the last time. */
static int scan_log(struct stage *st, char ***cols_out, int *ncols_out)
{
    const struct samples_cfg *sc = st->sc;
    struct csv_opts o = {.delim = sc->events.delim};
    struct csv_reader *rd = NULL;
    int rc = csv_reader_open(&rd, sc->events.path, &o), ncols = 0;
    if (rc) return rc;
    char **cols = NULL, **f;
    size_t nf, *lens;
    if (sc->events.header) {
        if ((rc = csv_reader_next(rd, &nf, &f, &lens)) <= 0) {
            rc = rc < 0 ? rc : pt_error_at(PT_EPARSE, sc->events.path, 1, "empty file: no header");
            goto out;
        }
        ncols = (int)nf;
    } else {
        ncols = sc->events.ncolumns;
    }
    if (!(cols = pt_calloc((size_t)ncols + 1, sizeof *cols))) goto oom;
    for (int k = 0; k < ncols; k++)
        if (!(cols[k] = pt_strdup(sc->events.header ? f[k] : sc->events.columns[k]))) goto oom;
    int ci = col_named(cols, ncols, sc->col_item), ct = col_named(cols, ncols, sc->col_time),
        cc = col_named(cols, ncols, sc->col_category);
    if (ci < 0 || ct < 0) {
        rc = pt_error_at(PT_EPARSE, sc->events.path, 1, "no item or time column");
        goto out;
    }
    int64_t tmax = INT64_MIN;
    while ((rc = csv_reader_next(rd, &nf, &f, &lens)) != 0) {
        if (rc < 0) {
            if (rc != PT_EPARSE) goto out;
            continue; /* the builder counts bad lines itself */
        }
        if ((int)nf != ncols) continue;
        int64_t t;
        if (time_parse(f[ct], lens[ct], (enum time_format)sc->time_format, sc->tz, &t) == PT_OK && t > tmax) tmax = t;
        if (cc < 0) continue;
        int32_t j = vocab_find(&st->r->items, f[ci], lens[ci]);
        if (j < 0 || !lens[cc] || (st->item_cat[j] && !strcmp(st->item_cat[j], f[cc]))) continue;
        pt_free(st->item_cat[j]);
        if (!(st->item_cat[j] = pt_strndup(f[cc], lens[cc]))) goto oom;
    }
    if (tmax == INT64_MIN) {
        rc = pt_error_at(PT_EPARSE, sc->events.path, 0, "no event with a readable time");
        goto out;
    }
    st->t_rank = tmax + 1;
    *cols_out = cols, *ncols_out = ncols;
    cols = NULL;
    rc = PT_OK;
    goto out;
oom:
    rc = pt_error(PT_ENOMEM, "out of memory");
out:
    for (int k = 0; cols && k < ncols; k++) pt_free(cols[k]);
    pt_free(cols);
    csv_reader_close(rd);
    return rc;
}

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    char buf[1 << 16];
    size_t n;
    int rc = PT_OK;
    if (!a || !b) rc = pt_error_at(PT_EIO, a ? to : from, 0, "cannot open: %s", strerror(errno));
    while (!rc && (n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n) rc = pt_error_at(PT_EIO, to, 0, "write error");
    if (a && ferror(a)) rc = pt_error_at(PT_EIO, from, 0, "read error");
    if (a) fclose(a);
    if (b && fclose(b) && !rc) rc = pt_error_at(PT_EIO, to, 0, "write error");
    return rc;
}

/* The log's copy with one exposure line per candidate at t_rank. */
static int write_log(struct stage *st, char **cols, int ncols, const char *path)
{
    const struct samples_cfg *sc = st->sc;
    int rc = copy_file(sc->events.path, path);
    if (rc) return rc;
    FILE *probe = fopen(path, "rb");
    unsigned char mg[2] = {0, 0};
    int gz = probe && fread(mg, 1, 2, probe) == 2 && mg[0] == 0x1f && mg[1] == 0x8b, nl = 1;
    if (probe && !gz && fseek(probe, -1, SEEK_END) == 0) nl = fgetc(probe) == '\n';
    if (probe) fclose(probe);
    /* plain text goes through a FILE; gzip gets a second member (gzip allows several) */
    char *buf = NULL;
    size_t blen = 0;
    FILE *mem = open_memstream(&buf, &blen);
    if (!mem) return pt_error(PT_ENOMEM, "out of memory");
    if (!gz && !nl) fputc('\n', mem);
    const char *delim = sc->events.delim ? sc->events.delim : ",";
    char tbuf[40];
    if (sc->time_format == TIME_ISO8601) time_format_iso(st->t_rank, tbuf);
    else if (sc->time_format == TIME_UNIX_MS) snprintf(tbuf, sizeof tbuf, "%" PRId64 "000", st->t_rank);
    else snprintf(tbuf, sizeof tbuf, "%" PRId64, st->t_rank);
    const char *type = sc->exposure ? sc->exposure : (sc->every_line ? sc->every_line : "");
    for (int32_t u = 0; u < st->nu; u++) {
        const char *uname = vocab_str(&st->names, u);
        for (int32_t k = 0; k < st->ncand[u]; k++) {
            int32_t j = st->cand[(size_t)u * st->C + k].item;
            const char *iname = vocab_str(&st->r->items, j);
            for (int c = 0; c < ncols; c++) {
                const char *v = "";
                if (sc->col_user && !strcmp(cols[c], sc->col_user)) v = uname;
                else if (sc->col_item && !strcmp(cols[c], sc->col_item)) v = iname;
                else if (sc->col_time && !strcmp(cols[c], sc->col_time)) v = tbuf;
                else if (sc->col_type && !strcmp(cols[c], sc->col_type)) v = type;
                else if (sc->col_category && !strcmp(cols[c], sc->col_category)) v = st->item_cat[j] ? st->item_cat[j] : "";
                else if (sc->col_session && !strcmp(cols[c], sc->col_session)) v = "polytask-rank";
                if (c) fputs(delim, mem);
                put_field(mem, v, strlen(v), delim);
            }
            fputc('\n', mem);
        }
    }
    if (fclose(mem)) {
        free(buf);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    if (gz) {
        gzFile g = gzopen(path, "ab");
        if (!g || gzwrite(g, buf, (unsigned)blen) != (int)blen) rc = pt_error_at(PT_EIO, path, 0, "write error");
        if (g && gzclose(g) != Z_OK && !rc) rc = pt_error_at(PT_EIO, path, 0, "write error");
    } else {
        FILE *f = fopen(path, "ab");
        if (!f || fwrite(buf, 1, blen, f) != blen) rc = pt_error_at(PT_EIO, path, 0, "write error");
        if (f && fclose(f) && !rc) rc = pt_error_at(PT_EIO, path, 0, "write error");
    }
    free(buf);
    return rc;
}

/* Keeps the built rows at t_rank (the candidates) in cand.csv; [out] the (user, item) of each, in order. */
static int pick_rows(struct stage *st, const char *built, const char *out, int32_t **ru, int32_t **ri, int64_t *n)
{
    struct csv_reader *rd = NULL;
    FILE *f = NULL;
    int rc = csv_reader_open(&rd, built, NULL);
    if (rc) return rc;
    char **fl;
    size_t nf, *lens;
    int64_t cap = 1024;
    *n = 0;
    *ru = pt_malloc((size_t)cap * sizeof **ru), *ri = pt_malloc((size_t)cap * sizeof **ri);
    if (!*ru || !*ri) goto oom;
    if ((rc = csv_reader_next(rd, &nf, &fl, &lens)) <= 0) {
        rc = rc < 0 ? rc : pt_error_at(PT_EPARSE, built, 1, "no header");
        goto out;
    }
    int cts = -1, cu = -1, ci = -1;
    for (size_t k = 0; k < nf; k++) {
        if (!strcmp(fl[k], "ts")) cts = (int)k;
        if (!strcmp(fl[k], st->sc->col_user)) cu = (int)k;
        if (!strcmp(fl[k], st->sc->col_item)) ci = (int)k;
    }
    if (cts < 0 || cu < 0 || ci < 0) {
        rc = pt_error_at(PT_EPARSE, built, 1, "built rows lack ts, user or item");
        goto out;
    }
    size_t ncols = nf;
    if (!(f = fopen(out, "w"))) {
        rc = pt_error_at(PT_EIO, out, 0, "cannot open: %s", strerror(errno));
        goto out;
    }
    for (size_t k = 0; k < nf; k++) fprintf(f, "%s%s", k ? "," : "", fl[k]);
    fputc('\n', f);
    char want[32];
    int wl = snprintf(want, sizeof want, "%" PRId64, st->t_rank);
    while ((rc = csv_reader_next(rd, &nf, &fl, &lens)) == 1) {
        if (nf != ncols || lens[cts] != (size_t)wl || memcmp(fl[cts], want, (size_t)wl)) continue;
        int32_t u = vocab_find(&st->names, fl[cu], lens[cu]), j = vocab_find(&st->r->items, fl[ci], lens[ci]);
        if (u < 0 || j < 0) continue;
        if (*n == cap) {
            cap *= 2;
            int32_t *a = pt_realloc(*ru, (size_t)cap * sizeof *a);
            if (a) *ru = a;
            int32_t *b = a ? pt_realloc(*ri, (size_t)cap * sizeof *b) : NULL;
            if (!b) goto oom;
            *ri = b;
        }
        (*ru)[*n] = u, (*ri)[*n] = j, (*n)++;
        for (size_t k = 0; k < nf; k++) {
            if (k) fputc(',', f);
            put_field(f, fl[k], lens[k], ",");
        }
        fputc('\n', f);
    }
    if (rc < 0) goto out;
    rc = ferror(f) ? pt_error_at(PT_EIO, out, 0, "write error") : PT_OK;
    goto out;
oom:
    rc = pt_error(PT_ENOMEM, "out of memory");
out:
    if (f && fclose(f) && !rc) rc = pt_error_at(PT_EIO, out, 0, "write error");
    csv_reader_close(rd);
    return rc;
}

static int by_score(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->have != y->have) return y->have - x->have;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->rrank - y->rrank;
}

/* Task names of the rank model's first and last tasks, or the ones asked, checked. */
static int task_names(pt_model *m, const pt_rec_rank_opts *o, char *ctr, char *cvr, size_t n)
{
    char *info = NULL;
    int rc = pt_model_info(m, &info);
    if (rc) return rc;
    json_t *j = json_loads(info, 0, NULL), *tasks = json_object_get(json_object_get(j, "model"), "tasks");
    pt_string_free(info);
    size_t nt = json_array_size(tasks);
    rc = nt ? PT_OK : pt_error(PT_ESCHEMA, "the rank model has no tasks");
    const char *first = nt ? json_string_value(json_object_get(json_array_get(tasks, 0), "name")) : NULL;
    const char *last = nt ? json_string_value(json_object_get(json_array_get(tasks, nt - 1), "name")) : NULL;
    snprintf(ctr, n, "%s", o->ctr_task ? o->ctr_task : first ? first : "");
    snprintf(cvr, n, "%s", o->cvr_task ? o->cvr_task : last ? last : "");
    int okc = 0, okv = 0;
    for (size_t k = 0; k < nt; k++) {
        const char *t = json_string_value(json_object_get(json_array_get(tasks, k), "name"));
        okc |= t && !strcmp(t, ctr), okv |= t && !strcmp(t, cvr);
    }
    if (!rc && !okc) rc = pt_error(PT_EINVAL, "the rank model has no task '%s'", ctr);
    if (!rc && !okv) rc = pt_error(PT_EINVAL, "the rank model has no task '%s'", cvr);
    json_decref(j);
    return rc;
}

static void remove_tree(const char *dir)
{
    static const char *const files[] = {"events", "cand.csv", "pred.csv", "out/train.csv", "out/valid.csv", "out/test.csv",
                                        "out/build.json"};
    char p[600];
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[k]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/out", dir);
    rmdir(p);
    rmdir(dir);
}

int pt_rec_rank_file(const pt_recommender *r, const pt_config *cfg, const char *users_path, const pt_rec_query *q,
                     const pt_rec_rank_opts *opts, const char *out_csv, int64_t *users)
{
    pt_rec_rank_opts o = opts ? *opts : pt_rec_rank_opts_default();
    pt_rec_query dq = pt_rec_query_default();
    if (!q) q = &dq;
    if (users) *users = 0;
    if (!cfg->samples) return pt_error_at(PT_ECONFIG, cfg->path, 0, "ranking needs the samples: section the rank model was trained on");
    if (!o.rank_model) return pt_error(PT_EINVAL, "no rank model given");
    if (o.objective == PT_RANK_REVENUE && !r->m.item_price)
        return pt_error(PT_EINVAL, "the revenue objective needs prices: a catalogue with a price column (recommend.items)");
    if (o.candidates < 1) o.candidates = 100;
    struct stage st = {.r = r, .sc = cfg->samples, .C = o.candidates};
    vocab_init(&st.names);
    pt_model *m = NULL;
    struct ask a = {0};
    struct atomic_file af = {0};
    char **cols = NULL, ctr[256], cvr[256];
    int ncols = 0, mkd = 0;
    int32_t *ru = NULL, *ri = NULL;
    int64_t nrows = 0;
    int32_t N = r->m.N;
    int rc = pt_model_load(o.rank_model, &m);
    if (!rc) rc = task_names(m, &o, ctr, cvr, sizeof ctr);
    if (rc) goto out;
    /* the users */
    if (users_path) {
        struct csv_reader *rd = NULL;
        if ((rc = csv_reader_open(&rd, users_path, NULL))) goto out;
        size_t nf, *lens;
        char **f;
        int got;
        int32_t id;
        while ((got = csv_reader_next(rd, &nf, &f, &lens)) != 0 && !rc)
            if (got < 0) rc = got;
            else if (lens[0]) rc = vocab_add(&st.names, f[0], lens[0], &id);
        csv_reader_close(rd);
    } else {
        int32_t id;
        for (int32_t u = 0; u < r->users.n && !rc; u++) rc = vocab_add(&st.names, vocab_str(&r->users, u), strlen(vocab_str(&r->users, u)), &id);
    }
    if (rc) goto out;
    st.nu = st.names.n;
    st.uid = pt_malloc((size_t)(st.nu ? st.nu : 1) * sizeof *st.uid);
    st.ncand = pt_calloc((size_t)(st.nu ? st.nu : 1), sizeof *st.ncand);
    st.cand = pt_calloc((size_t)(st.nu ? st.nu : 1) * (size_t)st.C, sizeof *st.cand);
    st.item_cat = pt_calloc((size_t)(N ? N : 1), sizeof *st.item_cat);
    if (!st.uid || !st.ncand || !st.cand || !st.item_cat) goto oom;
    /* retrieval */
    pt_rec_query rq = *q;
    rq.k = st.C;
    if ((rc = ask_init(&a, r, &rq))) goto out;
    for (int32_t u = 0; u < st.nu; u++) {
        const char *s = vocab_str(&st.names, u);
        st.uid[u] = vocab_find(&r->users, s, strlen(s));
        int n = ask_user(&a, st.uid[u], q->include_seen);
        if (n < 0) {
            rc = n;
            goto out;
        }
        st.ncand[u] = n;
        for (int k = 0; k < n; k++) st.cand[(size_t)u * st.C + k] = (struct cand){.item = a.top[k], .rrank = k + 1};
    }
    /* features through the builder */
    const char *tmp = getenv("TMPDIR");
    snprintf(st.dir, sizeof st.dir, "%s/polytask_rank_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(st.dir)) {
        rc = pt_error_at(PT_EIO, st.dir, 0, "cannot make a temporary folder: %s", strerror(errno));
        goto out;
    }
    mkd = 1;
    char evp[600], outd[600], built[640], candp[600], predp[600];
    snprintf(evp, sizeof evp, "%s/events", st.dir);
    snprintf(outd, sizeof outd, "%s/out", st.dir);
    snprintf(built, sizeof built, "%s/train.csv", outd);
    snprintf(candp, sizeof candp, "%s/cand.csv", st.dir);
    snprintf(predp, sizeof predp, "%s/pred.csv", st.dir);
    if ((rc = scan_log(&st, &cols, &ncols)) || (rc = write_log(&st, cols, ncols, evp))) goto out;
    struct samples_cfg sc2 = *cfg->samples;
    sc2.events.path = evp;
    sc2.gran = GRAN_EVENT;
    sc2.neg_k = 0;
    sc2.mark_incomplete = 1;
    sc2.valid_fraction = sc2.test_fraction = 0;
    sc2.valid_from = sc2.test_from = INT64_MIN;
    pt_build_opts bo = pt_build_opts_default();
    bo.force = 1;
    if ((rc = build_samples(&sc2, outd, &bo, NULL))) goto out;
    if ((rc = pick_rows(&st, built, candp, &ru, &ri, &nrows))) goto out;
    /* scores */
    pt_eval_opts eo = pt_eval_opts_default();
    int64_t scored = 0;
    if ((rc = pt_model_predict_file(m, candp, predp, &eo, &scored))) goto out;
    if (scored != nrows) {
        rc = pt_error(PT_EINVAL, "the rank model scored %" PRId64 " of %" PRId64 " candidate rows", scored, nrows);
        goto out;
    }
    {
        struct csv_reader *rd = NULL;
        if ((rc = csv_reader_open(&rd, predp, NULL))) goto out;
        size_t nf, *lens;
        char **f, pc[300], pv[300];
        snprintf(pc, sizeof pc, "p_%s", ctr);
        snprintf(pv, sizeof pv, "p_%s", cvr);
        int kc = -1, kv = -1;
        if (csv_reader_next(rd, &nf, &f, &lens) == 1)
            for (size_t k = 0; k < nf; k++) {
                if (!strcmp(f[k], pc)) kc = (int)k;
                if (!strcmp(f[k], pv)) kv = (int)k;
            }
        for (int64_t row = 0; kc >= 0 && kv >= 0 && row < nrows && csv_reader_next(rd, &nf, &f, &lens) == 1; row++) {
            int32_t u = ru[row];
            for (int32_t k = 0; k < st.ncand[u]; k++) {
                struct cand *c = &st.cand[(size_t)u * st.C + k];
                if (c->item != ri[row]) continue;
                c->pc = strtof(f[kc], NULL), c->pv = strtof(f[kv], NULL), c->have = 1;
                float price = r->m.item_price ? r->m.item_price[c->item] : NAN;
                c->score = o.objective == PT_RANK_CTR       ? c->pc
                         : o.objective == PT_RANK_CTR_CVR   ? c->pc * c->pv
                                                            : c->pc * c->pv * (isnan(price) ? 0.0f : price);
                break;
            }
        }
        csv_reader_close(rd);
        if (kc < 0 || kv < 0) {
            rc = pt_error_at(PT_EPARSE, predp, 1, "predictions lack %s or %s", pc, pv);
            goto out;
        }
    }
    /* order, diversity, write */
    if ((rc = atomic_file_open(&af, out_csv))) goto out;
    fputs("user,rank,item,score,p_ctr,p_cvr,price,retrieval_rank\n", af.f);
    int K = q->k > 0 ? q->k : 20;
    int32_t *per = pt_calloc((size_t)r->cats.n + 1, sizeof *per);
    uint8_t *taken = pt_malloc((size_t)st.C);
    if (!per || !taken) {
        pt_free(per), pt_free(taken);
        goto oom;
    }
    for (int32_t u = 0; u < st.nu; u++) {
        struct cand *c = &st.cand[(size_t)u * st.C];
        int n = st.ncand[u], out_n = 0;
        qsort(c, (size_t)n, sizeof *c, by_score);
        memset(taken, 0, (size_t)st.C);
        /* greedy: best first, skipping a category that already has per_category; then fill with what was skipped */
        for (int pass = 0; pass < 2 && out_n < K; pass++)
            for (int k = 0; k < n && out_n < K; k++) {
                if (taken[k] || !c[k].have) continue;
                int32_t cat = r->m.item_cat ? r->m.item_cat[c[k].item] : -1;
                if (pass == 0 && o.per_category > 0 && cat >= 0 && per[cat] >= o.per_category) continue;
                taken[k] = 1;
                if (cat >= 0) per[cat]++;
                float price = r->m.item_price ? r->m.item_price[c[k].item] : NAN;
                fprintf(af.f, "%s,%d,%s,%.6g,%.6g,%.6g,", vocab_str(&st.names, u), ++out_n, vocab_str(&r->items, c[k].item),
                        (double)c[k].score, (double)c[k].pc, (double)c[k].pv);
                if (!isnan(price)) fprintf(af.f, "%.6g", (double)price);
                fprintf(af.f, ",%d\n", c[k].rrank);
            }
        for (int k = 0; k < n; k++) {
            int32_t cat = r->m.item_cat ? r->m.item_cat[c[k].item] : -1;
            if (cat >= 0) per[cat] = 0;
        }
    }
    pt_free(per), pt_free(taken);
    rc = atomic_file_commit(&af);
    if (!rc && users) *users = st.nu;
    goto out;
oom:
    rc = pt_error(PT_ENOMEM, "out of memory");
out:
    if (rc) atomic_file_abort(&af);
    if (mkd) remove_tree(st.dir);
    ask_free(&a);
    pt_model_free(m);
    for (int k = 0; cols && k < ncols; k++) pt_free(cols[k]);
    pt_free(cols);
    for (int32_t j = 0; st.item_cat && j < N; j++) pt_free(st.item_cat[j]);
    pt_free(st.item_cat), pt_free(st.uid), pt_free(st.ncand), pt_free(st.cand), pt_free(ru), pt_free(ri);
    vocab_free(&st.names);
    return rc;
}
