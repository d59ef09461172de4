/* log.c: interactions for recommendation: a (user, item[, weight, time,
 * type]) table, or the samples: section's event log, read into dense ids. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>

#include "data/csv.h"
#include "data/timeparse.h"
#include "rec/rec.h"
#include "util/util.h"

/* Where the recommend section's reading options come from. */
struct src {
    const struct samples_table *t;
    const char *user, *item, *time, *weight, *type;
    int time_format;
    int32_t tz;
    const struct rec_cfg *r;
    const char *every_line;  /* samples log without a type column */
};

int rec_col_index(const struct rec_names *c, const char *want, const char *what, const char *file, int *out)
{
    *out = -1;
    if (!want) return PT_OK;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], want)) return *out = i, PT_OK;
    return pt_error_at(PT_EPARSE, file, 1, "no %s column '%s' in the header", what, want);
}

int rec_names_read(struct rec_names *c, struct csv_reader *rd, const struct samples_table *t, const char *file)
{
    memset(c, 0, sizeof *c);
    if (!t->header) {
        c->names = t->columns, c->n = t->ncolumns;
        return PT_OK;
    }
    size_t nf, *lens;
    char **f;
    int rc = csv_reader_next(rd, &nf, &f, &lens);
    if (rc <= 0) return rc < 0 ? rc : pt_error_at(PT_EPARSE, file, 1, "empty file: no header");
    c->owned = 1;
    if (!(c->names = pt_calloc(nf, sizeof *c->names))) return pt_error(PT_ENOMEM, "out of memory");
    for (size_t k = 0; k < nf; k++, c->n++)
        if (!(c->names[k] = pt_strdup(f[k]))) return pt_error(PT_ENOMEM, "out of memory");
    return PT_OK;
}

void rec_names_free(struct rec_names *c)
{
    if (c->owned) {
        for (int k = 0; k < c->n; k++) pt_free(c->names[k]);
        pt_free(c->names);
    }
    memset(c, 0, sizeof *c);
}

static int push(struct rec_log *log, int32_t u, int32_t i, int64_t t, float w)
{
    if (log->n == log->cap) {
        int64_t cap = log->cap ? log->cap * 2 : 4096;
        int32_t *nu = pt_realloc(log->user, (size_t)cap * sizeof *nu);
        if (nu) log->user = nu;
        int32_t *ni = nu ? pt_realloc(log->item, (size_t)cap * sizeof *ni) : NULL;
        if (ni) log->item = ni;
        int64_t *nt = ni ? pt_realloc(log->time, (size_t)cap * sizeof *nt) : NULL;
        if (nt) log->time = nt;
        float *nw = nt ? pt_realloc(log->weight, (size_t)cap * sizeof *nw) : NULL;
        if (!nw) return pt_error(PT_ENOMEM, "out of memory");
        log->weight = nw;
        log->cap = cap;
    }
    log->user[log->n] = u, log->item[log->n] = i, log->time[log->n] = t, log->weight[log->n] = w;
    log->n++;
    return PT_OK;
}

static int bad(int64_t *nbad, int64_t max, const char *file, long line, const char *what)
{
    if (++*nbad <= max) {
        if (*nbad <= 5) pt_log(PT_LOG_WARN, "%s:%ld: %s (skipped)", file, line, what);
        return PT_OK;
    }
    return pt_error(PT_ETOOMANYBAD, "%s:%ld: %s (more than %" PRId64 " bad rows; raise max_bad_rows to skip them)",
                    file, line, what, max);
}

static int read_table(struct src *s, const char *file, int64_t max_bad, struct rec_log *log)
{
    struct csv_opts o = {.delim = s->t->delim};
    struct csv_reader *rd = NULL;
    struct rec_names cols = {0};
    int rc = csv_reader_open(&rd, file, &o);
    if (rc) return rc;
    size_t nf, *lens;
    char **f;
    if ((rc = rec_names_read(&cols, rd, s->t, file))) goto out;
    int nnames = cols.n, cu, ci, ct, cw, cy;
    if ((rc = rec_col_index(&cols, s->user, "user", file, &cu)) || (rc = rec_col_index(&cols, s->item, "item", file, &ci)) ||
        (rc = rec_col_index(&cols, s->time, "time", file, &ct)) || (rc = rec_col_index(&cols, s->weight, "weight", file, &cw)) ||
        (rc = rec_col_index(&cols, s->type, "type", file, &cy)))
        goto out;
    log->has_time = ct >= 0;
    const struct rec_cfg *r = s->r;
    double every_w = 1;
    if (s->every_line && r->nwtypes) {
        every_w = 0;
        for (int k = 0; k < r->nwtypes; k++)
            if (!strcmp(r->wtypes[k], s->every_line)) every_w = r->wvalues[k];
    }
    while ((rc = csv_reader_next(rd, &nf, &f, &lens)) != 0) {
        long line = csv_reader_line(rd);
        if (rc < 0) {
            if (rc != PT_EPARSE || (rc = bad(&log->bad, max_bad, file, line, pt_errmsg()))) goto out;
            continue;
        }
        if ((int)nf != nnames) {
            if (nf == 1 && lens[0] == 0) continue; /* blank line */
            char what[80];
            snprintf(what, sizeof what, "%zu fields where the header has %d", nf, nnames);
            if ((rc = bad(&log->bad, max_bad, file, line, what))) goto out;
            continue;
        }
        if (!lens[cu] || !lens[ci] || !strcmp(f[cu], "NA") || !strcmp(f[ci], "NA")) {
            log->skipped++;
            continue;
        }
        double w = every_w;
        if (cy >= 0 && r->nwtypes) {
            w = 0;
            for (int k = 0; k < r->nwtypes; k++)
                if (!strcmp(r->wtypes[k], f[cy])) w = r->wvalues[k];
        }
        if (cw >= 0) {
            char *end;
            errno = 0;
            double v = strtod(f[cw], &end);
            if (errno || end == f[cw] || *end || !isfinite(v)) {
                char what[160];
                snprintf(what, sizeof what, "weight '%.60s' is not a number", f[cw]);
                if ((rc = bad(&log->bad, max_bad, file, line, what))) goto out;
                continue;
            }
            w *= v;
        }
        if (!(w > 0)) {
            log->skipped++;
            continue;
        }
        int64_t t = 0;
        if (ct >= 0 && time_parse(f[ct], lens[ct], (enum time_format)s->time_format, s->tz, &t)) {
            char what[160];
            snprintf(what, sizeof what, "time '%.60s' is not a time", f[ct]);
            if ((rc = bad(&log->bad, max_bad, file, line, what))) goto out;
            continue;
        }
        int32_t u, i;
        if ((rc = vocab_add(&log->users, f[cu], lens[cu], &u)) || (rc = vocab_add(&log->items, f[ci], lens[ci], &i)) ||
            (rc = push(log, u, i, t, (float)w)))
            goto out;
    }
out:
    rec_names_free(&cols);
    csv_reader_close(rd);
    return rc;
}

/* The text of a JSON scalar for an id or a time: strings as they are,
 * integers in decimal, reals with %.17g; NULL for anything else. */
static const char *scalar_text(json_t *v, char *buf, size_t n, size_t *len)
{
    if (json_is_string(v)) return *len = json_string_length(v), json_string_value(v);
    if (json_is_integer(v)) snprintf(buf, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v)) snprintf(buf, n, "%.17g", json_real_value(v));
    else if (json_is_true(v) || json_is_false(v)) snprintf(buf, n, "%d", json_is_true(v));
    else return NULL;
    *len = strlen(buf);
    return buf;
}

/* One JSON object per line (gzip or plain): the columns are its keys. */
static int read_jsonl(struct src *s, const char *file, int64_t max_bad, struct rec_log *log)
{
    gzFile g = gzopen(file, "rb");
    if (!g) return pt_error_at(PT_EIO, file, 0, "cannot open: %s", strerror(errno ? errno : ENOENT));
    size_t cap = 1 << 16, len;
    char *line = pt_malloc(cap);
    int rc = line ? PT_OK : pt_error(PT_ENOMEM, "out of memory");
    const struct rec_cfg *r = s->r;
    long lineno = 0;
    log->has_time = s->time != NULL;
    while (!rc) {
        len = 0;
        line[0] = 0;
        /* a whole line, however long */
        while (gzgets(g, line + len, (int)(cap - len > INT32_MAX ? INT32_MAX : cap - len))) {
            len += strlen(line + len);
            if (len && line[len - 1] == '\n') break;
            if (cap - len < 2) {
                if (cap > ((size_t)1 << 26)) {
                    rc = pt_error_at(PT_EPARSE, file, lineno + 1, "line longer than 64 MiB");
                    break;
                }
                char *nl = pt_realloc(line, cap * 2);
                if (!nl) {
                    rc = pt_error(PT_ENOMEM, "out of memory");
                    break;
                }
                line = nl, cap *= 2;
            }
        }
        if (rc || !len) break;
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (!len) continue;
        json_error_t jerr;
        json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(o)) {
            json_decref(o);
            if ((rc = bad(&log->bad, max_bad, file, lineno, "not a JSON object"))) break;
            continue;
        }
        char ub[64], ib[64], tb[64], wb[64], yb[64];
        size_t ul = 0, il = 0, tl = 0, wl = 0, yl = 0;
        const char *u = scalar_text(json_object_get(o, s->user), ub, sizeof ub, &ul);
        const char *it = scalar_text(json_object_get(o, s->item), ib, sizeof ib, &il);
        const char *tm = s->time ? scalar_text(json_object_get(o, s->time), tb, sizeof tb, &tl) : NULL;
        const char *wt = s->weight ? scalar_text(json_object_get(o, s->weight), wb, sizeof wb, &wl) : NULL;
        const char *ty = s->type ? scalar_text(json_object_get(o, s->type), yb, sizeof yb, &yl) : NULL;
        double w = 1;
        int64_t t = 0;
        const char *what = NULL;
        if (!u || !it || !ul || !il) {
            log->skipped++;
        } else if (s->time && (!tm || time_parse(tm, tl, (enum time_format)s->time_format, s->tz, &t))) {
            what = "time missing or not a time";
        } else {
            if (ty && r->nwtypes) {
                w = 0;
                for (int k = 0; k < r->nwtypes; k++)
                    if (strlen(r->wtypes[k]) == yl && !memcmp(r->wtypes[k], ty, yl)) w = r->wvalues[k];
            }
            if (s->weight) {
                char *end;
                double v = wt ? strtod(wt, &end) : NAN;
                if (!wt || end == wt || *end || !isfinite(v)) what = "weight missing or not a number";
                else w *= v;
            }
            int32_t ui, ii;
            if (!what && w > 0) {
                if ((rc = vocab_add(&log->users, u, ul, &ui)) || (rc = vocab_add(&log->items, it, il, &ii)) ||
                    (rc = push(log, ui, ii, t, (float)w))) {
                    json_decref(o);
                    break;
                }
            } else if (!what) {
                log->skipped++;
            }
        }
        json_decref(o);
        if (what && (rc = bad(&log->bad, max_bad, file, lineno, what))) break;
    }
    if (!rc && !gzeof(g)) {
        int zerr;
        const char *msg = gzerror(g, &zerr);
        if (zerr != Z_OK) rc = pt_error_at(PT_EIO, file, 0, "read error: %s", msg);
    }
    pt_free(line);
    gzclose(g);
    return rc;
}

int rec_log_read(const struct pt_config *c, struct rec_log *log)
{
    memset(log, 0, sizeof *log);
    vocab_init(&log->users);
    vocab_init(&log->items);
    const struct rec_cfg *r = c->rec;
    struct src s = {.r = r};
    int64_t max_bad = r->max_bad_rows;
    if (r->in.path) {
        s.t = &r->in;
        s.user = r->col_user, s.item = r->col_item, s.time = r->col_time, s.weight = r->col_weight, s.type = r->col_type;
        s.time_format = r->time_format, s.tz = r->tz;
    } else {
        const struct samples_cfg *sc = c->samples;
        s.t = &sc->events;
        s.user = sc->col_user, s.item = sc->col_item, s.time = sc->col_time, s.type = sc->col_type;
        s.time_format = sc->time_format, s.tz = sc->tz;
        s.every_line = sc->col_type ? NULL : sc->every_line;
        if (sc->max_bad_rows > max_bad) max_bad = sc->max_bad_rows;
    }
    int rc = PT_OK;
    if (r->in.path)
        for (int k = 0; k < r->npaths && !rc; k++)
            rc = r->jsonl ? read_jsonl(&s, r->paths[k], max_bad, log) : read_table(&s, r->paths[k], max_bad, log);
    else
        rc = read_table(&s, s.t->path, max_bad, log);
    if (!rc && !log->n)
        rc = pt_error_at(PT_EPARSE, r->in.path ? r->in.path : s.t->path, 0, "no interactions (%" PRId64 " lines skipped)", log->skipped);
    if (rc) rec_log_free(log);
    return rc;
}

void rec_log_free(struct rec_log *log)
{
    pt_free(log->user), pt_free(log->item), pt_free(log->time), pt_free(log->weight);
    vocab_free(&log->users);
    vocab_free(&log->items);
    memset(log, 0, sizeof *log);
}
