/* test_build.c: the sample builder (pt_build_samples, src/data/build.c).
 *
 * The subject is leakage. A seeded generator writes an adversarial event log
 * (30 users, 40 items, ~3000 view/cart/purchase events over ten days, many
 * sharing one second): a third of the views are carted and bought 1..5 s
 * later, some are bought in the very second of the view (after it in the
 * file), some bought just before being viewed in the same second, some
 * carted exactly at the window's end, and some users come back exactly one
 * window later; views one window before the log's end have complete labels.
 * Any feature that looked at the exposure's own second or later (counts,
 * item purchase counts, time since purchase, sequences, category share,
 * label rates) would therefore move with the label. The tests recompute
 * every cell of every sample by brute force from the events strictly before
 * the sample's time, and the labels from the events after the exposure in
 * the file; build prefixes of the log and find the same features; and cover
 * the unsorted-input path, negatives, the time split, bad rows and the build
 * cache.
 *
 * Then the rest of the section, each by brute force too: event attributes
 * (the exposure's own fields; a negative's from its item's latest earlier
 * event), joined items:/users: tables (CSV with a header, TSV without, quoted
 * fields, missing ids, duplicate ids), granularity by local day (with a
 * timezone) and by session (a session column, or session_gap), history
 * eviction (finite windows and sequences over the last `history` events),
 * and each allocation of a small build failing in turn (in a child process,
 * so that a crash is a failure here; under ASan every n/4-th, with a leak
 * check after each).
 *
 * Not covered here: I/O failures (a full disk, an unwritable folder). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "polytask.h"
#include "tmpdir.h"

/* Fault injection, from src/util/util.h (whose rng_next would clash with
 * the generator's below): the k-th allocation from now fails. */
void pt_alloc_fail_at(long k);
long pt_alloc_count(void);

#define NONE INT64_MIN

/* ---- the event log ---- */

enum { VIEW, CART, PURCHASE, NTYPES };
static const char *const type_names[NTYPES] = {"view", "cart", "purchase"};

#define T0 1700000000LL /* 2023-11-14T22:13:20Z */
#define SPAN (10 * 86400)
#define NUSERS 30
#define NITEMS 40    /* and item NITEMS, only at the log's end */
#define NCATS 6
#define NANCHORS 500 /* seconds that events crowd into */
#define TARGET 3000
#define VALID_FROM 1700438400LL /* 2023-11-20, test_split's dates */
#define TEST_FROM 1700654400LL  /* 2023-11-22T12:00:00Z */
#define SEQ 5        /* samples.features.sequence */
#define PRIOR 20.0   /* samples.features.prior */

struct event {
    int64_t t;
    int u, i, type;
    int seq;          /* order generated: ties keep it */
    int sess;         /* session id (the granularity log's sess column) */
};

static struct event *ev; /* the log in file order (time, then generation order) */
static int nev;

static int cat_of(int i) { return i % NCATS; }

static uint64_t rng_state;

static uint64_t rng_next(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int below(int n) { return (int)(rng_next() % (uint64_t)n); }
static double unit(void) { return (double)(rng_next() >> 11) * 0x1p-53; }

static int gen_cap;

static void gen_add(int64_t t, int u, int i, int type)
{
    if (nev == gen_cap) {
        gen_cap = gen_cap ? gen_cap * 2 : 1024;
        ev = realloc(ev, (size_t)gen_cap * sizeof *ev);
        assert_non_null(ev);
    }
    ev[nev] = (struct event){t, u, i, type, nev, 0};
    nev++;
}

static int by_time(const void *a, const void *b)
{
    const struct event *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* The adversarial log: every future-looking feature would betray the label. */
static void gen_log(uint64_t seed)
{
    int64_t anchor[NANCHORS];
    rng_state = seed;
    nev = 0;
    for (int k = 0; k < NANCHORS; k++) anchor[k] = T0 + below(SPAN);
    while (nev < TARGET) {
        int64_t t = anchor[below(NANCHORS)] + (unit() < 0.6 ? 0 : below(3));
        int u = below(NUSERS), i = below(NITEMS);
        double r = unit();
        if (r < 0.6) {
            gen_add(t, u, i, VIEW);
            if (unit() < 0.5) { /* carted and bought 1..5 s later */
                int d1 = 1 + below(5), d2 = d1 + below(6 - d1);
                gen_add(t + d1, u, i, CART);
                gen_add(t + d2, u, i, PURCHASE);
            }
            if (unit() < 0.1) gen_add(t, u, i, PURCHASE); /* same second, after the view */
            if (unit() < 0.05) gen_add(t + 3600 + below(2), u, i, CART); /* the window's edge, or just past */
            if (unit() < 0.05) gen_add(t + 86400 + below(2), u, i, PURCHASE);
        } else if (r < 0.7) { /* bought, then viewed in the same second: no label, no feature */
            gen_add(t, u, i, PURCHASE);
            gen_add(t, u, i, VIEW);
        } else if (r < 0.8) { /* back exactly one window later: the windows' lower bound */
            gen_add(t, u, i, below(NTYPES));
            gen_add(t + 3600, u, below(NITEMS), VIEW);
            gen_add(t + 86400, u, below(NITEMS), VIEW);
        } else {
            gen_add(t, u, i, unit() < 0.5 ? CART : PURCHASE);
        }
    }
    /* the end: views of an item seen nowhere else exactly one window before
     * the last event (complete 0 labels), and a cart on the very last second */
    int64_t end = 0;
    for (int k = 0; k < nev; k++) end = ev[k].t > end ? ev[k].t : end;
    end += 60;
    gen_add(end - 86400, 0, NITEMS, VIEW);
    gen_add(end - 3600, 1, NITEMS, VIEW);
    gen_add(end - 3600, 3, NITEMS, VIEW);
    gen_add(end, 3, NITEMS, CART);
    gen_add(end, 2, NITEMS, VIEW);
    gen_add(VALID_FROM, 4, 4, VIEW); /* views on test_split's dates */
    gen_add(TEST_FROM, 5, 5, VIEW);
    qsort(ev, (size_t)nev, sizeof *ev, by_time);
}

/* ---- files in the test's folder ---- */

static char root[256];

static void path_of(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(out, cap, "%s/", root);
    va_start(ap, fmt);
    vsnprintf(out + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
}

static int setup(void **state)
{
    (void)state;
    return tmpdir_make(root, sizeof root, "build");
}

static int teardown(void **state)
{
    (void)state;
    tmpdir_remove(root); /* its files and the builds' output folders */
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    s[n] = 0;
    if (len) *len = (size_t)n;
    return s;
}

static void event_line(char *buf, size_t cap, const struct event *e)
{
    snprintf(buf, cap, "u%02d,i%03d,c%d,%s,%lld\n", e->u, e->i, cat_of(e->i), type_names[e->type], (long long)e->t);
}

struct insert {          /* a raw line written before data row `before` (0-based) */
    int before;
    const char *line;
};

/* Writes root/name: the header, then ev[order[k]] for k < n (ev[k] when
 * order is NULL), with the inserted lines. */
static void write_events(const char *name, const int *order, int n, const struct insert *ins, int nins)
{
    char path[512], line[128];
    path_of(path, sizeof path, "%s", name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("user,item,cat,type,ts\n", f);
    for (int k = 0; k <= n; k++) {
        for (int j = 0; j < nins; j++)
            if (ins[j].before == k) fputs(ins[j].line, f);
        if (k == n) break;
        event_line(line, sizeof line, &ev[order ? order[k] : k]);
        fputs(line, f);
    }
    assert_int_equal(fclose(f), 0);
}

/* What a config changes in the base samples: section. */
struct cfg_opts {
    const char *granularity; /* NULL: event */
    const char *columns;     /* more columns: entries, e.g. ", session: sess" */
    int sequence, history;   /* 0: SEQ and 4096 */
    const char *extra;       /* more lines of the section */
};

/* Writes root/NAME.yaml: the base samples: section on the events file, as o changes it. */
static void write_config_opts(const char *name, const char *events, const struct cfg_opts *o)
{
    char path[512];
    path_of(path, sizeof path, "%s.yaml", name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "samples:\n"
            "  events: %s\n"
            "  columns: {user: user, item: item, time: ts, type: type, category: cat%s}\n"
            "  time_format: unix\n"
            "  event_types: [view, cart, purchase]\n"
            "  exposure: view\n"
            "  purchase: purchase\n"
            "  granularity: %s\n"
            "  labels:\n"
            "    - {name: cart, event: cart, window: 1h}\n"
            "    - {name: purchase, event: purchase, window: 1d}\n"
            "  incomplete: mark\n"
            "  features: {windows: [1h, 1d, all], sequence: %d, history: %d, prior: %g}\n"
            "%s",
            events, o->columns ? o->columns : "", o->granularity ? o->granularity : "event",
            o->sequence ? o->sequence : SEQ, o->history ? o->history : 4096, PRIOR, o->extra ? o->extra : "");
    assert_int_equal(fclose(f), 0);
}

/* Writes root/NAME.yaml: the base samples: section on the events file, plus extra lines. */
static void write_config(const char *name, const char *events, const char *extra)
{
    const struct cfg_opts o = {.extra = extra};
    write_config_opts(name, events, &o);
}

/* Loads root/NAME.yaml and builds into root/out_NAME. [out] *report (free). */
static int build(const char *name, const pt_build_opts *o, char **report)
{
    char path[512], out[512];
    pt_config *cfg = NULL;
    path_of(path, sizeof path, "%s.yaml", name);
    path_of(out, sizeof out, "out_%s", name);
    int rc = pt_config_load(path, &cfg);
    if (rc) fail_msg("%s: %s", path, pt_errmsg());
    char *rep = NULL;
    rc = pt_build_samples(cfg, out, o, report ? &rep : NULL);
    pt_config_free(cfg);
    if (report) *report = rep;
    return rc;
}

static void build_ok(const char *name, const pt_build_opts *o, char **report)
{
    int rc = build(name, o, report);
    if (rc) fail_msg("build %s: %s (%s)", name, pt_strerror(rc), pt_errmsg());
}

/* An integer field of the (compact JSON) report; the keys asked are unique in it. */
static int64_t report_int(const char *report, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(report, k);
    if (!p) fail_msg("no %s in the report %s", key, report);
    return strtoll(p + strlen(k), NULL, 10);
}

/* ---- sample tables (CSV; quoted fields are unquoted in place) ---- */

struct table {
    char *text;          /* the file, split in place */
    char **cell;         /* (nrows + 1) x ncols: the header first */
    int ncols, nrows;
};

/* A field that must be quoted (a comma, quote or line break) is split or
 * rejected here, so a missing quote fails the reading. */
static void table_read(struct table *tb, const char *fmt, const char *name)
{
    char path[512], rel[256];
    snprintf(rel, sizeof rel, fmt, name);
    path_of(path, sizeof path, "%s", rel);
    memset(tb, 0, sizeof *tb);
    tb->text = slurp(path, NULL);
    size_t n = 0, cap = 1024;
    tb->cell = malloc(cap * sizeof *tb->cell);
    assert_non_null(tb->cell);
    int rows = 0, c = 0;
    tb->ncols = -1;
    for (char *p = tb->text; *p;) {
        char *start = p, *w = p, end;
        if (*p == '"') { /* "..." with "" for a quote */
            for (p++;; p++) {
                if (!*p) fail_msg("%s:%d: unterminated quoted field", path, rows + 1);
                if (*p == '"' && p[1] != '"') break;
                if (*p == '"') p++;
                *w++ = *p;
            }
            p++;
            if (*p != ',' && *p != '\n') fail_msg("%s:%d: text after a closing quote", path, rows + 1);
        } else {
            for (; *p && *p != ',' && *p != '\n'; p++)
                if (*p == '"' || *p == '\r') fail_msg("%s:%d: a quote or CR in an unquoted field", path, rows + 1);
            w = p;
        }
        if (!*p) fail_msg("%s:%d: no line break at the end", path, rows + 1);
        end = *p++;
        *w = 0;
        if (n == cap) {
            cap *= 2;
            tb->cell = realloc(tb->cell, cap * sizeof *tb->cell);
            assert_non_null(tb->cell);
        }
        tb->cell[n++] = start;
        c++;
        if (end == '\n') {
            if (tb->ncols < 0) tb->ncols = c;
            if (c != tb->ncols) fail_msg("%s:%d: %d fields, the header has %d", path, rows + 1, c, tb->ncols);
            rows++, c = 0;
        }
    }
    assert_true(rows >= 1);
    tb->nrows = rows - 1;
}

static void table_free(struct table *tb)
{
    free(tb->text);
    free(tb->cell);
}

static const char *cell(const struct table *tb, int r, int c) { return tb->cell[(size_t)(r + 1) * tb->ncols + c]; }

static int col_of(const struct table *tb, const char *name)
{
    for (int c = 0; c < tb->ncols; c++)
        if (!strcmp(tb->cell[c], name)) return c;
    return -1;
}

static int col(const struct table *tb, const char *name)
{
    int c = col_of(tb, name);
    if (c < 0) fail_msg("no column %s", name);
    return c;
}

static int is_label_col(const struct table *tb, int c)
{
    return !strcmp(tb->cell[c], "cart") || !strcmp(tb->cell[c], "purchase");
}

static const char *const base_columns[] = {
    "ts", "user", "item", "cat", "hour", "weekday", "since_last", "since_purchase",
    "u_view_1h", "u_cart_1h", "u_purchase_1h", "u_view_1d", "u_cart_1d", "u_purchase_1d",
    "u_view_all", "u_cart_all", "u_purchase_all", "u_cat_share", "i_view", "i_cart", "i_purchase",
    "i_cart_rate", "i_purchase_rate", "seq_items", "seq_cats", "seq_types", "seq_gaps"};
#define NBASE (int)(sizeof base_columns / sizeof *base_columns)

static void check_header(const struct table *tb, int negatives)
{
    assert_int_equal(tb->ncols, NBASE + 2 + negatives);
    for (int c = 0; c < NBASE; c++) assert_string_equal(tb->cell[c], base_columns[c]);
    if (negatives) assert_string_equal(tb->cell[NBASE], "click");
    assert_string_equal(tb->cell[NBASE + negatives], "cart");
    assert_string_equal(tb->cell[NBASE + negatives + 1], "purchase");
}

/* ---- the brute-force oracle ---- */

static void expect_cell(const struct table *tb, int r, const char *name, const char *want)
{
    const char *got = cell(tb, r, col(tb, name));
    if (strcmp(got, want))
        fail_msg("row %d (ts %s user %s item %s): %s is '%s', the events before ts give '%s'", r + 2, cell(tb, r, 0),
                 cell(tb, r, 1), cell(tb, r, 2), name, got, want);
}

static void expect_int(const struct table *tb, int r, const char *name, int64_t v)
{
    char s[32] = "";
    if (v != NONE) snprintf(s, sizeof s, "%lld", (long long)v);
    expect_cell(tb, r, name, s);
}

static void expect_real(const struct table *tb, int r, const char *name, double v)
{
    const char *got = cell(tb, r, col(tb, name));
    char *end;
    double x = strtod(got, &end);
    if (!*got || *end || fabs(x - v) > 6e-6 * fabs(v) + 1e-12)
        fail_msg("row %d (ts %s user %s item %s): %s is '%s', the events before ts give %.9g", r + 2, cell(tb, r, 0),
                 cell(tb, r, 1), cell(tb, r, 2), name, got, v);
}

/* What the oracle assumes of the config: samples.timezone (seconds east of
 * UTC), features.sequence and features.history. */
static int64_t oracle_tz = 0;
static int oracle_seq = SEQ;
static int oracle_history = 4096;

/* Row r holds the features of user u and item i at time t: each one
 * recomputed from the events strictly before t, and only those. The finite
 * windows count only the user's last oracle_history of them; all counts
 * every one. */
static void check_features(const struct table *tb, int r, int u, int i, int64_t t)
{
    static const int64_t win[3] = {3600, 86400, 0};
    static const char *const win_name[3] = {"1h", "1d", "all"};
    int64_t cnt[3][NTYPES] = {{0}}, ic[NTYPES] = {0}, g[NTYPES] = {0};
    int64_t last = NONE, last_buy = NONE, nu = 0, ncat = 0;
    enum { RING = 4096 };
    int ring[RING], nmine = 0; /* the user's last RING events */
    assert_true(oracle_history <= RING && oracle_seq <= RING);
    for (int k = 0; k < nev && ev[k].t < t; k++) {
        const struct event *e = &ev[k];
        g[e->type]++;
        if (e->i == i) ic[e->type]++;
        if (e->u != u) continue;
        cnt[2][e->type]++;
        last = e->t;
        if (e->type == PURCHASE) last_buy = e->t;
        nu++;
        ncat += cat_of(e->i) == cat_of(i);
        ring[nmine++ % RING] = k;
    }
    for (int m = nmine > oracle_history ? nmine - oracle_history : 0; m < nmine; m++)
        for (int w = 0; w < 2; w++)
            if (ev[ring[m % RING]].t >= t - win[w]) cnt[w][ev[ring[m % RING]].type]++;
    char s[256], name[64];
    snprintf(s, sizeof s, "u%02d", u), expect_cell(tb, r, "user", s);
    snprintf(s, sizeof s, "i%03d", i), expect_cell(tb, r, "item", s);
    snprintf(s, sizeof s, "c%d", cat_of(i)), expect_cell(tb, r, "cat", s);
    expect_int(tb, r, "ts", t);
    time_t tt = (time_t)(t + oracle_tz);
    struct tm tm;
    gmtime_r(&tt, &tm);
    expect_int(tb, r, "hour", tm.tm_hour);
    expect_int(tb, r, "weekday", (tm.tm_wday + 6) % 7); /* 0 Monday */
    expect_int(tb, r, "since_last", last == NONE ? NONE : t - last);
    expect_int(tb, r, "since_purchase", last_buy == NONE ? NONE : t - last_buy);
    for (int w = 0; w < 3; w++)
        for (int k = 0; k < NTYPES; k++) {
            snprintf(name, sizeof name, "u_%s_%s", type_names[k], win_name[w]);
            expect_int(tb, r, name, cnt[w][k]);
        }
    expect_real(tb, r, "u_cat_share", nu ? (double)ncat / (double)nu : 0.0);
    for (int k = 0; k < NTYPES; k++) {
        snprintf(name, sizeof name, "i_%s", type_names[k]);
        expect_int(tb, r, name, ic[k]);
    }
    for (int lt = CART; lt <= PURCHASE; lt++) {
        double gr = g[VIEW] ? (double)g[lt] / (double)g[VIEW] : 0.0;
        snprintf(name, sizeof name, "i_%s_rate", type_names[lt]);
        expect_real(tb, r, name, ((double)ic[lt] + PRIOR * gr) / ((double)ic[VIEW] + PRIOR));
    }
    /* the last oracle_seq events, newest first */
    static const char *const seq_cols[4] = {"seq_items", "seq_cats", "seq_types", "seq_gaps"};
    for (int part = 0; part < 4; part++) {
        char *p = s;
        for (int m = 0; m < oracle_seq && m < nmine; m++) {
            const struct event *e = &ev[ring[(nmine - 1 - m) % RING]];
            if (m) *p++ = '|';
            if (part == 0) p += sprintf(p, "i%03d", e->i);
            else if (part == 1) p += sprintf(p, "c%d", cat_of(e->i));
            else if (part == 2) p += sprintf(p, "%s", type_names[e->type]);
            else p += sprintf(p, "%lld", (long long)(t - e->t));
        }
        *p = 0;
        expect_cell(tb, r, seq_cols[part], s);
    }
}

static const struct {
    const char *name;
    int type;
    int64_t window;
} labels[2] = {{"cart", CART, 3600}, {"purchase", PURCHASE, 86400}};

/* The labels of row r, the sample of exposure ev[p]: 1 when an event of the
 * label's type on the same user and item comes after the exposure in the
 * file within the window; empty when 0 and the window reaches past the log.
 * Counts rows with a marked (empty) cell, and positives. */
static void check_labels(const struct table *tb, int r, int p, int64_t *marked, int64_t pos[2])
{
    const struct event *x = &ev[p];
    int any = 0;
    for (int l = 0; l < 2; l++) {
        int on = 0;
        for (int j = p + 1; j < nev && ev[j].t <= x->t + labels[l].window && !on; j++)
            on = ev[j].u == x->u && ev[j].i == x->i && ev[j].type == labels[l].type;
        int incomplete = !on && x->t + labels[l].window > ev[nev - 1].t;
        expect_cell(tb, r, labels[l].name, incomplete ? "" : on ? "1" : "0");
        any |= incomplete;
        pos[l] += on;
    }
    *marked += any;
}

static int count_views(int n)
{
    int v = 0;
    for (int k = 0; k < n; k++) v += ev[k].type == VIEW;
    return v;
}

/* ---- the tests ---- */

/* The generated log is as adversarial as the file head says, so that the
 * leakage test below could not pass by luck. */
static void test_log_is_adversarial(void **state)
{
    (void)state;
    int crowded = 0, same_second_buy = 0, buy_then_view = 0, soon = 0, views = 0, edge = 0, back = 0;
    for (int a = 0, b; a < nev; a = b) {
        for (b = a; b < nev && ev[b].t == ev[a].t; b++) {}
        crowded += b - a >= 4;
    }
    for (int p = 0; p < nev; p++) {
        const struct event *x = &ev[p];
        if (x->type != VIEW) continue;
        views++;
        int s = 0;
        for (int j = 0; j < nev; j++) {
            const struct event *y = &ev[j];
            if (y->u != x->u) continue;
            int same = y->i == x->i;
            if (same && y->type == PURCHASE && y->t == x->t) {
                if (j > p) same_second_buy++;
                else buy_then_view++;
            }
            if (same && y->type == PURCHASE && y->t > x->t && y->t <= x->t + 5) s = 1;
            if (same && y->type == CART && y->t - x->t == 3600 && j > p) edge++;
            if (x->t - y->t == 3600 || x->t - y->t == 86400) back++;
        }
        soon += s;
    }
    assert_true(nev >= TARGET && nev < TARGET + 20);
    assert_true(crowded >= 100);        /* seconds with 4 or more events */
    assert_true(same_second_buy >= 20); /* bought in the view's second, after it */
    assert_true(buy_then_view >= 20);   /* bought in the view's second, before it */
    assert_true(soon * 4 >= views);     /* a quarter of views bought within 5 s */
    assert_true(edge >= 5);             /* carted exactly 1 h after the view */
    assert_true(back >= 100);           /* earlier events exactly one window before a view */
}

/* Leakage by brute force: every cell of every sample equals its
 * recomputation from the events strictly before the sample's second, and
 * every label its recomputation from the later events. */
static void test_leakage(void **state)
{
    (void)state;
    char *rep = NULL;
    write_events("events.csv", NULL, nev, NULL, 0);
    write_config("base", "events.csv", NULL);
    build_ok("base", NULL, &rep);
    struct table tb;
    table_read(&tb, "out_%s/train.csv", "base");
    check_header(&tb, 0);
    assert_int_equal(tb.nrows, count_views(nev));
    int64_t marked = 0, pos[2] = {0, 0};
    for (int p = 0, r = 0; p < nev; p++) {
        if (ev[p].type != VIEW) continue;
        check_features(&tb, r, ev[p].u, ev[p].i, ev[p].t);
        check_labels(&tb, r, p, &marked, pos);
        r++;
    }
    assert_true(marked > 0);
    assert_true(pos[0] > 100 && pos[1] > 100);
    assert_int_equal(report_int(rep, "events"), nev);
    assert_int_equal(report_int(rep, "exposures"), tb.nrows);
    assert_int_equal(report_int(rep, "train"), tb.nrows);
    assert_int_equal(report_int(rep, "incomplete_marked"), marked);
    assert_int_equal(report_int(rep, "cart"), pos[0]);
    assert_int_equal(report_int(rep, "purchase"), pos[1]);
    assert_int_equal(report_int(rep, "bad_rows"), 0);
    assert_non_null(strstr(rep, "\"sorted_input\":true"));
    table_free(&tb);
    pt_string_free(rep);
}

/* Builds ev[0..n) as NAME and compares it with the full build: every row of
 * the prefix has the same features as the full build's row at the same
 * position. A label cell filled in the prefix is final when the prefix is cut
 * between seconds (time_cut); a 1 is final in any case. */
static void check_prefix(const char *name, int n, int time_cut, const struct table *full)
{
    char events[64];
    snprintf(events, sizeof events, "%s.csv", name);
    write_events(events, NULL, n, NULL, 0);
    write_config(name, events, NULL);
    build_ok(name, NULL, NULL);
    struct table tb;
    table_read(&tb, "out_%s/train.csv", name);
    assert_int_equal(tb.ncols, full->ncols);
    assert_int_equal(tb.nrows, count_views(n));
    assert_true(tb.nrows <= full->nrows);
    for (int r = 0; r < tb.nrows; r++)
        for (int c = 0; c < tb.ncols; c++) {
            const char *a = cell(&tb, r, c), *b = cell(full, r, c);
            int same = !strcmp(a, b);
            if (is_label_col(&tb, c)) same |= !*a || (!time_cut && !strcmp(a, "0"));
            if (!same)
                fail_msg("%s (first %d events): row %d column %s is '%s', '%s' with the whole log", name, n, r + 2,
                         tb.cell[c], a, b);
        }
    table_free(&tb);
}

/* Prefix invariance: the log cut at several seconds, and in the middle of
 * crowded seconds (between a view and the purchase of the same second),
 * gives the same features for every sample it keeps. So no feature depends
 * on a later event, or on a later line of the same second. */
static void test_prefix_invariance(void **state)
{
    (void)state;
    write_events("events.csv", NULL, nev, NULL, 0);
    write_config("full", "events.csv", NULL);
    build_ok("full", NULL, NULL);
    struct table full;
    table_read(&full, "out_%s/train.csv", "full");
    /* the most crowded second, and a view bought later in its own second */
    int big = 0, big_n = 0, sbuy = -1;
    for (int a = 0, b; a < nev; a = b) {
        for (b = a; b < nev && ev[b].t == ev[a].t; b++) {}
        if (b - a > big_n) big = a, big_n = b - a;
    }
    for (int p = nev / 2; p < nev && sbuy < 0; p++)
        for (int j = p + 1; j < nev && ev[j].t == ev[p].t && ev[p].type == VIEW && sbuy < 0; j++)
            if (ev[j].u == ev[p].u && ev[j].i == ev[p].i && ev[j].type == PURCHASE) sbuy = p;
    assert_true(big_n >= 6);
    assert_true(sbuy >= 0);
    int64_t cuts[] = {ev[nev / 3].t, ev[big].t, ev[sbuy].t, ev[nev - 1].t};
    char name[32];
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        int n = 0;
        while (n < nev && ev[n].t < cuts[k]) n++;
        snprintf(name, sizeof name, "cut%zu", k);
        check_prefix(name, n, 1, &full);
    }
    check_prefix("mid_crowded", big + big_n / 2, 0, &full);
    check_prefix("mid_bought", sbuy + 1, 0, &full);
    table_free(&full);
}

/* The unsorted path: a permutation of the log that keeps the file order of
 * each second's events (the later half's seconds shuffled, so that the
 * first pass has built state before it finds the disorder) builds
 * byte-identical files, sorted in memory or through spilled runs.
 * --assume-sorted refuses it, naming FILE:LINE of the first event out of
 * order. */
static void test_unsorted(void **state)
{
    (void)state;
    static const char extra[] = "  negatives: {per_exposure: 2, sampler: popularity, seed: 3}\n"
                                "  split: {valid: 0.2, test: 0.1}\n";
    int *start = malloc((size_t)nev * sizeof *start), *order = malloc((size_t)nev * sizeof *order), nb = 0;
    assert_non_null(start);
    assert_non_null(order);
    for (int a = 0, b; a < nev; a = b) {
        for (b = a; b < nev && ev[b].t == ev[a].t; b++) {}
        start[nb++] = a;
    }
    rng_state = 99;
    for (int k = nb - 1; k > nb / 2; k--) { /* Fisher-Yates over the later half's seconds */
        int j = nb / 2 + below(k - nb / 2 + 1), s = start[k];
        start[k] = start[j], start[j] = s;
    }
    int n = 0, first_bad = -1;
    for (int k = 0; k < nb; k++)
        for (int p = start[k]; p < nev && ev[p].t == ev[start[k]].t; p++) order[n++] = p;
    assert_int_equal(n, nev);
    for (int k = 1; k < n && first_bad < 0; k++)
        if (ev[order[k]].t < ev[order[k - 1]].t) first_bad = k;
    assert_true(first_bad > nev / 3);
    write_events("events.csv", NULL, nev, NULL, 0);
    write_events("shuffled.csv", order, nev, NULL, 0);
    write_config("sorted", "events.csv", extra);
    write_config("shuffled", "shuffled.csv", extra);

    char *rep = NULL;
    build_ok("sorted", NULL, &rep);
    assert_non_null(strstr(rep, "\"sorted_input\":true"));
    pt_string_free(rep);
    pt_build_opts o = pt_build_opts_default();
    for (int pass = 0; pass < 2; pass++) {
        o.force = 1;
        o.sort_memory = pass ? 64 << 10 : 0;
        build_ok("shuffled", &o, &rep);
        assert_non_null(strstr(rep, "\"sorted_input\":false"));
        if (pass) assert_true(report_int(rep, "sort_runs") > 1);
        else assert_int_equal(report_int(rep, "sort_runs"), 0);
        pt_string_free(rep);
        static const char *const files[] = {"train.csv", "valid.csv", "test.csv"};
        for (int f = 0; f < 3; f++) {
            char pa[512], pb[512];
            size_t la, lb;
            path_of(pa, sizeof pa, "out_sorted/%s", files[f]);
            path_of(pb, sizeof pb, "out_shuffled/%s", files[f]);
            char *a = slurp(pa, &la), *b = slurp(pb, &lb);
            assert_true(la > 1000);
            if (la != lb || memcmp(a, b, la)) fail_msg("%s differs after sorting (pass %d)", files[f], pass);
            free(a);
            free(b);
        }
    }
    o = pt_build_opts_default();
    o.force = 1;
    o.assume_sorted = 1;
    assert_int_equal(build("shuffled", &o, NULL), PT_EPARSE);
    char want[64];
    snprintf(want, sizeof want, "shuffled.csv:%d:", first_bad + 2); /* the header is line 1 */
    if (!strstr(pt_errmsg(), want)) fail_msg("'%s' does not name %s", pt_errmsg(), want);
    build_ok("sorted", &o, NULL); /* and a sorted log passes */
    free(start);
    free(order);
}

/* Checks a build with 3 negatives per exposure: exposures (click 1) as in
 * the leakage test; each negative row (click 0, labels 0) follows its
 * exposure's row with its time and user, names an item known before that
 * time that the user never had an event on before it, and carries that
 * item's features from strictly earlier events. */
static void check_negatives(const char *name, const char *sampler)
{
    char extra[128];
    snprintf(extra, sizeof extra, "  negatives: {per_exposure: 3, sampler: %s, seed: 7}\n", sampler);
    write_events("events.csv", NULL, nev, NULL, 0);
    write_config(name, "events.csv", extra);
    char *rep = NULL;
    build_ok(name, NULL, &rep);
    struct table tb;
    table_read(&tb, "out_%s/train.csv", name);
    check_header(&tb, 1);
    int c_click = col(&tb, "click"), c_item = col(&tb, "item"), c_cart = col(&tb, "cart"), c_buy = col(&tb, "purchase");
    int64_t marked = 0, pos[2] = {0, 0}, negs = 0;
    int r = 0, views = 0, *distinct = calloc(NITEMS + 1, sizeof *distinct);
    assert_non_null(distinct);
    for (int p = 0; p < nev; p++) {
        if (ev[p].type != VIEW) continue;
        const struct event *x = &ev[p];
        assert_true(r < tb.nrows);
        assert_string_equal(cell(&tb, r, c_click), "1");
        check_features(&tb, r, x->u, x->i, x->t);
        check_labels(&tb, r, p, &marked, pos);
        views++;
        for (r++; r < tb.nrows && !strcmp(cell(&tb, r, c_click), "0"); r++) {
            int j = atoi(cell(&tb, r, c_item) + 1), known = 0, had = 0;
            assert_true(j >= 0 && j <= NITEMS && j != x->i);
            for (int k = 0; k < nev && ev[k].t < x->t; k++) {
                known |= ev[k].i == j;
                had |= ev[k].i == j && ev[k].u == x->u;
            }
            if (!known || had)
                fail_msg("%s row %d: negative item i%03d %s before ts %lld", name, r + 2, j,
                         had ? "had an event of the user" : "had no event", (long long)x->t);
            assert_string_equal(cell(&tb, r, c_cart), "0");
            assert_string_equal(cell(&tb, r, c_buy), "0");
            check_features(&tb, r, x->u, j, x->t);
            distinct[j] = 1;
            negs++;
        }
    }
    assert_int_equal(r, tb.nrows);
    assert_int_equal(report_int(rep, "negatives"), negs);
    assert_int_equal(report_int(rep, "negatives") + report_int(rep, "negatives_short"), 3 * views);
    assert_true(negs > 2 * views); /* few users have touched most items */
    int nd = 0;
    for (int j = 0; j <= NITEMS; j++) nd += distinct[j];
    assert_true(nd >= NITEMS / 2);
    free(distinct);
    table_free(&tb);
    pt_string_free(rep);
}

/* Negatives, uniform and popularity samplers: never the exposed item nor one
 * the user has touched before, click 0, labels 0, leak-free features. */
static void test_negatives(void **state)
{
    (void)state;
    check_negatives("neg_uniform", "uniform");
    check_negatives("neg_popularity", "popularity");
}

/* Reads the three tables of build NAME; checks the rows are in time order,
 * train < valid < test in time, and train + valid + test is the unsplit
 * build's table. [out] n[3] rows. */
static void check_split(const char *name, const struct table *all, int n[3], int64_t first[3], int64_t last[3])
{
    static const char *const parts[3] = {"out_%s/train.csv", "out_%s/valid.csv", "out_%s/test.csv"};
    int r0 = 0;
    for (int s = 0; s < 3; s++) {
        struct table tb;
        table_read(&tb, parts[s], name);
        assert_int_equal(tb.ncols, all->ncols);
        n[s] = tb.nrows;
        first[s] = tb.nrows ? atoll(cell(&tb, 0, 0)) : NONE;
        last[s] = tb.nrows ? atoll(cell(&tb, tb.nrows - 1, 0)) : NONE;
        for (int r = 0; r < tb.nrows; r++) {
            assert_true(r0 + r < all->nrows);
            for (int c = 0; c < tb.ncols; c++)
                if (strcmp(cell(&tb, r, c), cell(all, r0 + r, c)))
                    fail_msg("%s: %s row %d differs from the unsplit build's row %d", name, parts[s], r + 2, r0 + r + 2);
            if (r) assert_true(atoll(cell(&tb, r - 1, 0)) <= atoll(cell(&tb, r, 0)));
        }
        r0 += tb.nrows;
        table_free(&tb);
    }
    assert_int_equal(r0, all->nrows);
    assert_true(n[0] && n[1] && n[2]);
    assert_true(last[0] < first[1] && last[1] < first[2]);
}

/* The time split: by fractions the cuts fall between whole minutes, at the
 * first minute boundary where train (then train + valid) reaches its share;
 * by dates they fall exactly at the dates. Rows keep their time order and
 * add up to the unsplit build. */
static void test_split(void **state)
{
    (void)state;
    write_events("events.csv", NULL, nev, NULL, 0);
    write_config("whole", "events.csv", NULL);
    write_config("by_fraction", "events.csv", "  split: {valid: 0.2, test: 0.2}\n");
    write_config("by_date", "events.csv", "  split: {valid_from: 2023-11-20, test_from: \"2023-11-22T12:00:00Z\"}\n");
    build_ok("whole", NULL, NULL);
    struct table all;
    table_read(&all, "out_%s/train.csv", "whole");
    int N = all.nrows, n[3];
    int64_t first[3], last[3];
    char *rep = NULL;

    build_ok("by_fraction", NULL, &rep);
    check_split("by_fraction", &all, n, first, last);
    assert_true(last[0] / 60 < first[1] / 60 && last[1] / 60 < first[2] / 60);
    /* the cuts: the smallest whole-minute prefixes holding 60% and 80% of the rows */
    int64_t want[2] = {(int64_t)ceil(0.6 * N), (int64_t)ceil(0.8 * N)}, cut[2] = {-1, -1};
    for (int r = 0; r <= N; r++) {
        int boundary = r == N || (r > 0 && atoll(cell(&all, r - 1, 0)) / 60 != atoll(cell(&all, r, 0)) / 60);
        for (int k = 0; k < 2; k++)
            if (boundary && cut[k] < 0 && r >= want[k]) cut[k] = r;
    }
    assert_int_equal(n[0], cut[0]);
    assert_int_equal(n[0] + n[1], cut[1]);
    assert_int_equal(report_int(rep, "train"), n[0]);
    assert_int_equal(report_int(rep, "valid"), n[1]);
    assert_int_equal(report_int(rep, "test"), n[2]);
    pt_string_free(rep);

    build_ok("by_date", NULL, &rep);
    check_split("by_date", &all, n, first, last);
    const int64_t vfrom = VALID_FROM, tfrom = TEST_FROM;
    int expect[3] = {0, 0, 0};
    for (int r = 0; r < N; r++) {
        int64_t t = atoll(cell(&all, r, 0));
        expect[t >= vfrom ? t >= tfrom ? 2 : 1 : 0]++;
    }
    assert_true(last[0] < vfrom && first[1] == vfrom && last[1] < tfrom && first[2] == tfrom);
    for (int s = 0; s < 3; s++) assert_int_equal(n[s], expect[s]);
    assert_non_null(strstr(rep, "\"valid_from\":\"2023-11-20T00:00:00Z\""));
    assert_non_null(strstr(rep, "\"test_from\":\"2023-11-22T12:00:00Z\""));
    pt_string_free(rep);
    table_free(&all);

    /* five samples in five minutes: ceil(0.6 * 5) = 3 rows train, 1 valid, 1 test */
    FILE *f;
    char path[512];
    path_of(path, sizeof path, "five.csv");
    assert_non_null(f = fopen(path, "w"));
    fputs("user,item,cat,type,ts\n", f);
    for (int k = 0; k < 5; k++) fprintf(f, "u00,i%03d,c0,view,%lld\n", k, T0 + 60LL * k);
    assert_int_equal(fclose(f), 0);
    write_config("five", "five.csv", "  split: {valid: 0.2, test: 0.2}\n");
    build_ok("five", NULL, &rep);
    assert_int_equal(report_int(rep, "train") + report_int(rep, "valid") + report_int(rep, "test"), 5);
    /* 1.0 - 0.2 - 0.2 is 0.6000000000000001 in doubles: ceil(0.6 * 5) must
     * still be 3 (docs/samples.md), not 4 */
    assert_int_equal(report_int(rep, "train"), 3);
    pt_string_free(rep);
}

/* Bad input: an unknown event type, a bad timestamp and a wrong field count
 * each fail the build with max_bad_rows 0, naming FILE:LINE; all three are
 * skipped and counted with max_bad_rows 3 (from the options or the config),
 * leaving the samples of the clean log; 2 is one too few. Also on the
 * unsorted path, where the line is the original one. */
static void test_bad_rows(void **state)
{
    (void)state;
    char unknown[128], late[128];
    snprintf(unknown, sizeof unknown, "u01,i001,c1,wishlist,%lld\n", (long long)ev[1000].t);
    snprintf(late, sizeof late, "u01,i001,c1,wishlist,%lld\n", (long long)ev[nev - 1].t);
    const struct insert bad[3] = {
        {200, "u02,i002,c2,view,17000x0000\n"},
        {1000, unknown},
        {2500, "u03,i003,c3,view\n"},
    };
    static const char *const what[3] = {"bad timestamp '17000x0000'", "unknown event type 'wishlist'",
                                        "4 fields where the header has 5"};
    write_events("events.csv", NULL, nev, NULL, 0);
    write_config("clean", "events.csv", NULL);
    build_ok("clean", NULL, NULL);
    pt_build_opts o = pt_build_opts_default();
    char name[32], file[48], want[128];
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "bad%d", k);
        snprintf(file, sizeof file, "%s.csv", name);
        write_events(file, NULL, nev, &bad[k], 1);
        write_config(name, file, NULL);
        o.max_bad_rows = 0;
        assert_int_equal(build(name, &o, NULL), PT_ETOOMANYBAD);
        snprintf(want, sizeof want, "%s:%d: ", file, bad[k].before + 2);
        if (!strstr(pt_errmsg(), want) || !strstr(pt_errmsg(), what[k]))
            fail_msg("'%s' should name %s and say %s", pt_errmsg(), want, what[k]);
    }
    write_events("bad3.csv", NULL, nev, bad, 3);
    write_config("bad3", "bad3.csv", NULL);
    write_config("bad3_cfg", "bad3.csv", "  max_bad_rows: 3\n");
    o.max_bad_rows = 2;
    assert_int_equal(build("bad3", &o, NULL), PT_ETOOMANYBAD);
    snprintf(want, sizeof want, "bad3.csv:%d: ", bad[2].before + 4); /* two inserted lines before it */
    if (!strstr(pt_errmsg(), want)) fail_msg("'%s' should name %s", pt_errmsg(), want);
    char *rep = NULL;
    o.max_bad_rows = 3;
    build_ok("bad3", &o, &rep);
    assert_int_equal(report_int(rep, "bad_rows"), 3);
    assert_int_equal(report_int(rep, "events"), nev);
    for (int k = 0; k < 3; k++) { /* the report keeps the first messages */
        snprintf(want, sizeof want, "bad3.csv:%d: %s", bad[k].before + 2 + k, what[k]);
        if (!strstr(rep, want)) fail_msg("the report's first_bad_rows lack '%s': %s", want, rep);
    }
    pt_string_free(rep);
    build_ok("bad3_cfg", NULL, &rep);
    assert_int_equal(report_int(rep, "bad_rows"), 3);
    pt_string_free(rep);
    char pa[512], pb[512];
    path_of(pa, sizeof pa, "out_clean/train.csv");
    path_of(pb, sizeof pb, "out_bad3/train.csv");
    char *a = slurp(pa, NULL), *b = slurp(pb, NULL);
    assert_string_equal(a, b);
    free(a);
    free(b);

    /* unsorted: the last second first, then an unknown type at data row 1500 */
    int *order = malloc((size_t)nev * sizeof *order), n = 0, tail = nev - 1;
    assert_non_null(order);
    while (tail > 0 && ev[tail - 1].t == ev[nev - 1].t) tail--;
    for (int p = tail; p < nev; p++) order[n++] = p;
    for (int p = 0; p < tail; p++) order[n++] = p;
    const struct insert ub = {1500, late};
    write_events("bad_unsorted.csv", order, nev, &ub, 1);
    write_config("bad_unsorted", "bad_unsorted.csv", NULL);
    o.max_bad_rows = 0;
    assert_int_equal(build("bad_unsorted", &o, NULL), PT_ETOOMANYBAD);
    if (!strstr(pt_errmsg(), "bad_unsorted.csv:1502: ")) fail_msg("'%s' should name line 1502", pt_errmsg());
    o.max_bad_rows = 1;
    build_ok("bad_unsorted", &o, &rep);
    assert_int_equal(report_int(rep, "bad_rows"), 1);
    assert_non_null(strstr(rep, "\"sorted_input\":false"));
    pt_string_free(rep);
    path_of(pb, sizeof pb, "out_bad_unsorted/train.csv");
    a = slurp(pa, NULL), b = slurp(pb, NULL);
    assert_string_equal(a, b);
    free(a);
    free(b);
    free(order);
}

static void file_id(const char *rel, struct stat *st)
{
    char p[512];
    path_of(p, sizeof p, "%s", rel);
    if (stat(p, st)) fail_msg("cannot stat %s", p);
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The cache: a second build of unchanged inputs returns the same report and
 * leaves the files alone (same inode, size and mtime: they are replaced by
 * rename when written); one more line in the events file rebuilds, and so
 * do force and an output file removed since. */
static void test_cache(void **state)
{
    (void)state;
    write_events("events.csv", NULL, nev, NULL, 0);
    write_config("cached", "events.csv", "  split: {valid: 0.2, test: 0.2}\n");
    char *r1 = NULL, *r2 = NULL;
    build_ok("cached", NULL, &r1);
    struct stat tr1, js1, va1, tr2, js2, va2;
    file_id("out_cached/train.csv", &tr1);
    file_id("out_cached/valid.csv", &va1);
    file_id("out_cached/build.json", &js1);
    build_ok("cached", NULL, &r2);
    assert_string_equal(r1, r2);
    file_id("out_cached/train.csv", &tr2);
    file_id("out_cached/valid.csv", &va2);
    file_id("out_cached/build.json", &js2);
    assert_true(same_file(&tr1, &tr2) && same_file(&va1, &va2) && same_file(&js1, &js2));
    pt_string_free(r2);

    /* one more view, a minute after the last event */
    char line[128];
    struct event extra = {ev[nev - 1].t + 60, 0, 0, VIEW, 0, 0};
    event_line(line, sizeof line, &extra);
    const struct insert more = {nev, line};
    write_events("events.csv", NULL, nev, &more, 1);
    build_ok("cached", NULL, &r2);
    assert_int_equal(report_int(r2, "events"), nev + 1);
    assert_int_equal(report_int(r2, "exposures"), report_int(r1, "exposures") + 1);
    file_id("out_cached/train.csv", &tr2);
    file_id("out_cached/build.json", &js2);
    assert_true(tr2.st_ino != tr1.st_ino && js2.st_ino != js1.st_ino);
    pt_string_free(r2);

    pt_build_opts o = pt_build_opts_default();
    o.force = 1;
    build_ok("cached", &o, NULL);
    file_id("out_cached/build.json", &js1);
    assert_true(js1.st_ino != js2.st_ino);
    pt_string_free(r1);

    /* an output file removed since: the build is not up to date */
    char p[512];
    path_of(p, sizeof p, "out_cached/valid.csv");
    assert_int_equal(unlink(p), 0);
    build_ok("cached", NULL, NULL);
    assert_int_equal(access(p, F_OK), 0);
}

/* ---- events with more columns: attributes, sessions ---- */

/* Writes s as one CSV field, quoted when it must be. */
static void put_csv(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* The attribute fields of an event (columns color and size), unique per
 * event: empty, "NA", or holding a comma or a quote on some. */
static void attrs_of(const struct event *e, char color[32], char size[48])
{
    int s = e->seq;
    if (s % 9 == 0) color[0] = 0;
    else if (s % 9 == 1) strcpy(color, "NA");
    else snprintf(color, 32, "k%d", s);
    if (s % 4 == 0) snprintf(size, 48, "L, tall %d", s);
    else if (s % 4 == 1) snprintf(size, 48, "say \"%d\"", s);
    else if (s % 4 == 2) snprintf(size, 48, "%d.5", s);
    else size[0] = 0;
}

enum { X_ATTRS = 1, X_SESS = 2 };

/* Writes root/name as write_events does (no inserted lines), with the
 * columns color and size (X_ATTRS) and sess (X_SESS) after the others. */
static void write_events_x(const char *name, const int *order, int n, int extra)
{
    char path[512], line[128], color[32], size[48];
    path_of(path, sizeof path, "%s", name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "user,item,cat,type,ts%s%s\n", extra & X_ATTRS ? ",color,size" : "", extra & X_SESS ? ",sess" : "");
    for (int k = 0; k < n; k++) {
        const struct event *e = &ev[order ? order[k] : k];
        event_line(line, sizeof line, e);
        fwrite(line, 1, strlen(line) - 1, f); /* without its line break */
        if (extra & X_ATTRS) {
            attrs_of(e, color, size);
            fputc(',', f), put_csv(f, color);
            fputc(',', f), put_csv(f, size);
        }
        if (extra & X_SESS) fprintf(f, ",s%d", e->sess);
        fputc('\n', f);
    }
    assert_int_equal(fclose(f), 0);
}

/* The base columns with the attributes (color, size) and the joined columns
 * (brand, price; country, tier) after the category, then click and the
 * labels: the header column_names() writes. */
static void check_header_joined(const struct table *tb)
{
    static const char *const added[] = {"color", "size", "brand", "price", "country", "tier"};
    int c = 0;
    assert_int_equal(tb->ncols, NBASE + 6 + 3);
    for (int k = 0; k < 4; k++) assert_string_equal(tb->cell[c++], base_columns[k]);
    for (int k = 0; k < 6; k++) assert_string_equal(tb->cell[c++], added[k]);
    for (int k = 4; k < NBASE; k++) assert_string_equal(tb->cell[c++], base_columns[k]);
    assert_string_equal(tb->cell[c++], "click");
    assert_string_equal(tb->cell[c++], "cart");
    assert_string_equal(tb->cell[c++], "purchase");
}

/* The items table's row of item i (brand, price); 0 when i is not in it. */
static int item_row(int i, char brand[32], char price[16])
{
    if (i % 7 == 3) return 0;
    if (i % 5 == 0) snprintf(brand, 32, "Acme, Inc. %d", i);
    else if (i % 5 == 1) snprintf(brand, 32, "Big \"%d\"", i);
    else snprintf(brand, 32, "b%d", i % 3);
    if (i % 6 == 2) price[0] = 0;
    else snprintf(price, 16, "%d.99", i);
    return 1;
}

/* The users table's row of user u (tier, country); 0 when u is not in it. */
static int user_row(int u, char tier[16], char country[32])
{
    if (u % 5 == 4) return 0;
    strcpy(tier, u % 2 ? "gold" : "silver");
    if (u % 4 == 0) strcpy(country, "Korea, Republic of");
    else snprintf(country, 32, "C%d", u % 3);
    return 1;
}

static void write_text(const char *name, const char *text)
{
    char path[512];
    path_of(path, sizeof path, "%s", name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* items.csv: a header, the key sku between the columns, one key quoted, an
 * id no event has; users.tsv: tab-separated, no header. */
static void write_tables(void)
{
    char path[512], brand[32], price[16], tier[16], country[32];
    path_of(path, sizeof path, "items.csv");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("price,sku,brand,stock\n", f);
    for (int i = NITEMS; i >= 0; i--) {
        if (!item_row(i, brand, price)) continue;
        put_csv(f, price);
        fprintf(f, i == 4 ? ",\"i%03d\"," : ",i%03d,", i);
        put_csv(f, brand);
        fprintf(f, ",%d\n", 100 + i);
    }
    fputs("1.00,i999,Nobody,0\n", f);
    assert_int_equal(fclose(f), 0);
    path_of(path, sizeof path, "users.tsv");
    assert_non_null(f = fopen(path, "w"));
    for (int u = 0; u < NUSERS; u++)
        if (user_row(u, tier, country)) fprintf(f, "u%02d\t%s\t%s\n", u, tier, country);
    assert_int_equal(fclose(f), 0);
}

/* attributes, negatives, and both tables (items from the file ITEMS) */
#define JOINED_EXTRA(items)                                                              \
    "  attributes: [color, size]\n"                                                      \
    "  negatives: {per_exposure: 2, sampler: popularity, seed: 5}\n"                     \
    "  items: {path: " items ", key: sku, columns: [brand, price]}\n"                    \
    "  users:\n"                                                                         \
    "    path: users.tsv\n"                                                              \
    "    format: {delimiter: \"\\t\", header: false, columns: [uid, tier, country]}\n"   \
    "    key: uid\n"                                                                     \
    "    columns: [country, tier]\n"

/* Attributes and joined tables, with negatives. The header has the
 * attributes, then the items table's columns, then the users table's, in
 * the config's order, right after the category. An exposure's row carries
 * its own line's color and size unchanged (empty, NA, quoted when they hold
 * a comma or quote); a negative row those of its item's latest event at a
 * strictly earlier second, not of one in the exposure's own second. Every
 * row, a negative one included, carries the table rows of its own item and
 * user (the items table: CSV with a header; the users table: TSV without
 * one), empty fields for an id the table lacks. All other cells are the
 * brute force's. */
static void test_attributes_joins(void **state)
{
    (void)state;
    write_events_x("events_attrs.csv", NULL, nev, X_ATTRS);
    write_tables();
    write_config("joined", "events_attrs.csv", JOINED_EXTRA("items.csv"));
    build_ok("joined", NULL, NULL);
    struct table tb;
    table_read(&tb, "out_%s/train.csv", "joined");
    check_header_joined(&tb);
    int c_click = col(&tb, "click"), c_item = col(&tb, "item"), c_color = col(&tb, "color"), c_size = col(&tb, "size");
    char color[32], size[48], brand[32], price[16], tier[16], country[32];
    int64_t marked = 0, pos[2] = {0, 0};
    int r = 0, negs = 0, shadowed = 0, empty = 0, quoted = 0, neg_in = 0, neg_out = 0, exp_out = 0, user_out = 0;
    int latest[NITEMS + 1], q = 0; /* each item's latest event at an earlier second than ev[p] */
    for (int i = 0; i <= NITEMS; i++) latest[i] = -1;
    for (int p = 0; p < nev; p++) {
        if (ev[p].type != VIEW) continue;
        const struct event *x = &ev[p];
        for (; ev[q].t < x->t; q++) latest[ev[q].i] = q;
        assert_true(r < tb.nrows);
        assert_string_equal(cell(&tb, r, c_click), "1");
        check_features(&tb, r, x->u, x->i, x->t);
        check_labels(&tb, r, p, &marked, pos);
        attrs_of(x, color, size);
        expect_cell(&tb, r, "color", color);
        expect_cell(&tb, r, "size", size);
        quoted += strpbrk(size, ",\"") != NULL;
        int first = r;
        for (r++; r < tb.nrows && !strcmp(cell(&tb, r, c_click), "0"); r++) {
            int j = atoi(cell(&tb, r, c_item) + 1);
            assert_true(j >= 0 && j <= NITEMS);
            if (latest[j] < 0) fail_msg("row %d: negative item i%03d has no event before %lld", r + 2, j, (long long)x->t);
            for (int k = q; k < nev && ev[k].t == x->t; k++) shadowed += ev[k].i == j; /* in the exposure's second */
            attrs_of(&ev[latest[j]], color, size);
            if (strcmp(cell(&tb, r, c_color), color) || strcmp(cell(&tb, r, c_size), size))
                fail_msg("row %d (negative i%03d at %lld): color '%s' size '%s', its latest earlier event (line %d) "
                         "has '%s' '%s'",
                         r + 2, j, (long long)x->t, cell(&tb, r, c_color), cell(&tb, r, c_size), latest[j] + 2, color,
                         size);
            empty += !*color; /* (the negatives' features: test_negatives) */
            negs++;
        }
        for (int s = first; s < r; s++) { /* the joined fields, by the row's own item and user */
            int i = atoi(cell(&tb, s, c_item) + 1), neg = s > first;
            if (!item_row(i, brand, price)) {
                brand[0] = price[0] = 0;
                neg_out += neg, exp_out += !neg;
            } else {
                neg_in += neg;
            }
            if (!user_row(x->u, tier, country)) tier[0] = country[0] = 0, user_out++;
            expect_cell(&tb, s, "brand", brand);
            expect_cell(&tb, s, "price", price);
            expect_cell(&tb, s, "country", country);
            expect_cell(&tb, s, "tier", tier);
        }
    }
    assert_int_equal(r, tb.nrows);
    assert_true(negs > 1000 && empty > 50 && quoted > 100);
    assert_true(shadowed > 0);
    assert_true(neg_in > 100 && neg_out > 10 && exp_out > 10 && user_out > 10);
    table_free(&tb);
    /* fields with a comma or a quote were written quoted */
    char path[512];
    path_of(path, sizeof path, "out_joined/train.csv");
    char *raw = slurp(path, NULL);
    assert_non_null(strstr(raw, ",\"L, tall "));
    assert_non_null(strstr(raw, ",\"say \"\""));
    assert_non_null(strstr(raw, ",\"Acme, Inc. "));
    assert_non_null(strstr(raw, ",\"Big \"\""));
    assert_non_null(strstr(raw, ",\"Korea, Republic of\","));
    free(raw);
}

/* Broken joined tables fail the build, naming FILE:LINE, and write no
 * train.csv: an items id given twice, a users id given twice in a table
 * without a header. */
static void test_join_errors(void **state)
{
    (void)state;
    static const char good_items[] = "price,sku,brand,stock\n1,i001,a,1\n", good_users[] = "u01\tgold\tX\n";
    static const struct {
        const char *file, *items, *users, *want;
    } bad[] = {
        {"items_dup.csv", "price,sku,brand,stock\n1,i001,a,1\n2,i007,b,1\n3,i002,c,1\n4,i007,d,1\n", good_users,
         "items_dup.csv:5: items id 'i007' is given twice"},
        {"items.csv", good_items, "u01\tgold\tX\nu03\tsilver\tY\nu01\tgold\tZ\n",
         "users.tsv:3: users id 'u01' is given twice"},
    };
    write_events_x("events_attrs.csv", NULL, nev, X_ATTRS);
    char name[32], extra[1024], p[512];
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        write_text(bad[k].file, bad[k].items);
        write_text("users.tsv", bad[k].users);
        snprintf(name, sizeof name, "bad_join%zu", k);
        snprintf(extra, sizeof extra, JOINED_EXTRA("%s"), bad[k].file);
        write_config(name, "events_attrs.csv", extra);
        int rc = build(name, NULL, NULL);
        if (rc != PT_EPARSE || !strstr(pt_errmsg(), bad[k].want))
            fail_msg("%s: rc %d '%s', want PT_EPARSE saying %s", bad[k].file, rc, pt_errmsg(), bad[k].want);
        path_of(p, sizeof p, "out_%s/train.csv", name);
        assert_int_not_equal(access(p, F_OK), 0);
    }
}

/* ---- granularity ---- */

/* Tests with a log of their own keep the main one here. */
static struct event *main_ev;
static int main_nev, main_cap;

static int setup_own_log(void **state)
{
    main_ev = ev, main_nev = nev, main_cap = gen_cap;
    ev = NULL, nev = gen_cap = 0;
    return setup(state);
}

static int teardown_own_log(void **state)
{
    free(ev);
    ev = main_ev, nev = main_nev, gen_cap = main_cap;
    oracle_tz = 0, oracle_seq = SEQ, oracle_history = 4096;
    return teardown(state);
}

#define TG 1699920000LL /* 2023-11-14T00:00:00Z; local midnight at +08:00 is 16:00 UTC */
#define GAP 600         /* session_gap: 10m */

/* The session log: users 0..5 and items 0..5 over three days, crowded
 * around local and UTC midnights and a few other seconds, views repeated
 * within minutes, carts and purchases up to half an hour later. Sessions
 * (the sess column) change only at a user's first event of a second: after
 * more than 20 minutes without events, and at random; their ids go round
 * four values, so a user comes back to an earlier id. Users 7 and 8 hold
 * the edge cases. */
static void gen_session_log(uint64_t seed)
{
    int64_t anchor[120];
    rng_state = seed;
    nev = 0;
    for (int k = 0; k < 120; k++) {
        int r = below(3);
        anchor[k] = TG + below(3) * 86400LL + (r == 0 ? 16 * 3600 + below(600) - 300 : r == 1 ? below(600) - 300 : below(86400));
    }
    while (nev < 1500) {
        int64_t t = anchor[below(120)] + (unit() < 0.5 ? 0 : below(5));
        int u = below(6), i = below(6);
        double r = unit();
        if (r < 0.6) {
            gen_add(t, u, i, VIEW);
            if (unit() < 0.4) gen_add(t + below(900), u, i, VIEW); /* again within minutes */
            if (unit() < 0.3) gen_add(t + 1 + below(1800), u, i, unit() < 0.5 ? CART : PURCHASE);
        } else {
            gen_add(t, u, i, r < 0.8 ? CART : PURCHASE);
        }
    }
    /* u07, session_gap: i001 again exactly GAP later (the same session), then
     * GAP + 1 later (a new one), twice in that second, then carted */
    int64_t g = TG + 86400 + 3 * 3600;
    gen_add(g, 7, 1, VIEW);
    gen_add(g + GAP, 7, 1, VIEW);
    gen_add(g + 2 * GAP + 1, 7, 1, VIEW);
    gen_add(g + 2 * GAP + 1, 7, 1, VIEW);
    gen_add(g + 2 * GAP + 100, 7, 1, CART);
    /* u08, session column (ids given here, 100 + n): i002 in session A, A,
     * then B (after a cart of i003 in B in the same second), back to A, A;
     * then carted */
    static const struct { int dt, i, type, sess; } s8[] = {
        {0, 2, VIEW, 100}, {5, 2, VIEW, 100}, {10, 3, CART, 101}, {10, 2, VIEW, 101},
        {15, 2, VIEW, 100}, {20, 2, VIEW, 100}, {25, 2, CART, 100}};
    for (size_t k = 0; k < sizeof s8 / sizeof *s8; k++) {
        gen_add(TG + 86400 + 5 * 3600 + s8[k].dt, 8, s8[k].i, s8[k].type);
        ev[nev - 1].sess = s8[k].sess;
    }
    qsort(ev, (size_t)nev, sizeof *ev, by_time);
    int64_t last[9];
    int n[9];
    for (int u = 0; u < 9; u++) last[u] = NONE, n[u] = 0;
    for (int k = 0; k < nev; k++) {
        struct event *e = &ev[k];
        if (e->u == 8) continue;
        if (last[e->u] != NONE && e->t != last[e->u] && (e->t - last[e->u] > 1200 || unit() < 0.15)) n[e->u]++;
        last[e->u] = e->t;
        e->sess = n[e->u] % 4;
    }
}

enum { GR_DAY, GR_SESSION_COL, GR_SESSION_GAP };

/* kept[p] = 1 for each view ev[p] that makes a sample: the first view of
 * its (user, item) pair in its local day (timezone tz) or session, as
 * docs/samples.md defines them. Returns how many. */
static int oracle_kept(int gran, int64_t tz, char *kept)
{
    int maxu = 0, maxi = 0, nk = 0;
    for (int k = 0; k < nev; k++) {
        maxu = ev[k].u > maxu ? ev[k].u : maxu;
        maxi = ev[k].i > maxi ? ev[k].i : maxi;
    }
    int64_t *sess = calloc((size_t)maxu + 1, sizeof *sess), *last_t = malloc(((size_t)maxu + 1) * sizeof *last_t);
    int *last_s = calloc((size_t)maxu + 1, sizeof *last_s);
    int64_t *bucket = malloc(((size_t)maxu + 1) * ((size_t)maxi + 1) * sizeof *bucket);
    assert_true(sess && last_t && last_s && bucket);
    for (int u = 0; u <= maxu; u++) last_t[u] = NONE;
    for (size_t k = 0; k < ((size_t)maxu + 1) * ((size_t)maxi + 1); k++) bucket[k] = NONE;
    for (int p = 0; p < nev; p++) {
        const struct event *e = &ev[p];
        /* the user's session: a new one at the first event, at a session id
         * other than the previous event's, or after more than GAP */
        if (last_t[e->u] == NONE || (gran == GR_SESSION_COL ? e->sess != last_s[e->u] : e->t - last_t[e->u] > GAP))
            sess[e->u]++;
        last_t[e->u] = e->t, last_s[e->u] = e->sess;
        kept[p] = 0;
        if (e->type != VIEW) continue;
        int64_t local = e->t + tz, b = gran == GR_DAY ? (local - ((local % 86400) + 86400) % 86400) / 86400 : sess[e->u];
        int64_t *pb = &bucket[(size_t)e->u * ((size_t)maxi + 1) + (size_t)e->i];
        if (*pb != b) kept[p] = 1, *pb = b, nk++;
    }
    free(sess), free(last_t), free(last_s), free(bucket);
    return nk;
}

/* Builds NAME with granularity by day (timezone tz, in seconds) or by
 * session and checks it against the oracle: the kept views' rows in order,
 * each with the brute force's features (from every earlier event, repeats
 * included) and labels (from every later event of the pair, after repeats
 * too); the report's exposures and duplicates_skipped. Returns the repeats
 * skipped; [out] *late: kept samples labelled by an event that came after a
 * skipped repeat of theirs. */
static int check_gran(const char *name, int gran, int64_t tz, int *late)
{
    char events[64], extra[128] = "";
    snprintf(events, sizeof events, "%s.csv", name);
    write_events_x(events, NULL, nev, X_SESS);
    if (tz) snprintf(extra, sizeof extra, "  timezone: \"%+03d:%02d\"\n", (int)(tz / 3600), (int)(tz % 3600 / 60));
    if (gran == GR_SESSION_GAP) snprintf(extra, sizeof extra, "  session_gap: %ds\n", GAP);
    const struct cfg_opts o = {.granularity = gran == GR_DAY ? "day" : "session",
                               .columns = gran == GR_SESSION_COL ? ", session: sess" : NULL,
                               .extra = extra};
    write_config_opts(name, events, &o);
    char *rep = NULL;
    build_ok(name, NULL, &rep);
    char *kept = malloc((size_t)nev);
    assert_non_null(kept);
    int nk = oracle_kept(gran, tz, kept), views = count_views(nev);
    struct table tb;
    table_read(&tb, "out_%s/train.csv", name);
    check_header(&tb, 0);
    if (tb.nrows != nk) fail_msg("%s: %d rows, the oracle keeps %d of %d views", name, tb.nrows, nk, views);
    int64_t marked = 0, pos[2] = {0, 0};
    oracle_tz = tz;
    *late = 0;
    for (int p = 0, r = 0; p < nev; p++) {
        if (!kept[p]) continue;
        check_features(&tb, r, ev[p].u, ev[p].i, ev[p].t);
        check_labels(&tb, r, p, &marked, pos);
        /* a label event of the pair within a day, after a skipped repeat */
        int repeat = 0;
        for (int j = p + 1; j < nev && ev[j].t <= ev[p].t + 86400; j++) {
            if (ev[j].u != ev[p].u || ev[j].i != ev[p].i) continue;
            if (ev[j].type == VIEW && kept[j]) break;
            if (ev[j].type == VIEW) repeat = 1;
            else if (repeat && ev[j].t - ev[p].t <= (ev[j].type == CART ? 3600 : 86400)) {
                (*late)++;
                break;
            }
        }
        r++;
    }
    oracle_tz = 0;
    assert_int_equal(report_int(rep, "exposures"), views);
    assert_int_equal(report_int(rep, "duplicates_skipped"), views - nk);
    assert_int_equal(report_int(rep, "cart"), pos[0]);
    assert_int_equal(report_int(rep, "purchase"), pos[1]);
    table_free(&tb);
    free(kept);
    pt_string_free(rep);
    return views - nk;
}

/* Of user u's views of item i, in order, which the oracle keeps ("1010"). */
static void kept_pattern(const char *kept, int u, int i, char *out)
{
    for (int p = 0; p < nev; p++)
        if (ev[p].u == u && ev[p].i == i && ev[p].type == VIEW) *out++ = kept[p] ? '1' : '0';
    *out = 0;
}

/* Granularity day, at +08:00, on the main log (ten days, 1200 pairs) with
 * u30's views of i000 a second before and at local midnight (16:00 UTC),
 * then a second before and at UTC midnight (the same local day), then a
 * purchase: one sample per (user, item) per local day; repeats are counted,
 * still move the features, and the kept sample takes labels from events
 * after them. The (user, item) table outgrows its first size and drops the
 * pairs whose day and windows have passed, and keeps the others. */
static void test_granularity_day(void **state)
{
    (void)state;
    for (int k = 0; k < main_nev; k++) gen_add(main_ev[k].t, main_ev[k].u, main_ev[k].i, main_ev[k].type);
    int64_t m = TG + 86400 + 16 * 3600;
    gen_add(m - 1, NUSERS, 0, VIEW);
    gen_add(m, NUSERS, 0, VIEW);
    gen_add(TG + 2 * 86400 - 1, NUSERS, 0, VIEW);
    gen_add(TG + 2 * 86400, NUSERS, 0, VIEW);
    gen_add(TG + 2 * 86400 + 30, NUSERS, 0, PURCHASE);
    qsort(ev, (size_t)nev, sizeof *ev, by_time);
    char *kept = malloc((size_t)nev), pat[16];
    assert_non_null(kept);
    oracle_kept(GR_DAY, 8 * 3600, kept);
    kept_pattern(kept, NUSERS, 0, pat);
    assert_string_equal(pat, "1100"); /* UTC midnight is 08:00 local */
    oracle_kept(GR_DAY, 0, kept);
    kept_pattern(kept, NUSERS, 0, pat);
    assert_string_equal(pat, "1001"); /* the same views by UTC days */
    free(kept);
    char pair[NUSERS + 1][NITEMS + 1] = {{0}};
    int pairs = 0;
    for (int p = 0; p < nev; p++)
        if (ev[p].type == VIEW && !pair[ev[p].u][ev[p].i]) pair[ev[p].u][ev[p].i] = 1, pairs++;
    assert_true(pairs > 768); /* the table's first size holds 768 */
    int late = 0;
    assert_true(check_gran("day8", GR_DAY, 8 * 3600, &late) > 50);
    assert_true(late > 10);
}

/* Granularity session: one sample per (user, item) per session. By the
 * sess column, a session starts where a user's id differs from their
 * previous event's (coming back to an earlier id is a new session); by
 * session_gap, after more than the gap (exactly the gap is the same
 * session). Repeats are counted, still move the features, and the kept
 * sample takes labels from events after them. */
static void test_granularity_session(void **state)
{
    (void)state;
    gen_session_log(78);
    char *kept = malloc((size_t)nev), pat[16];
    assert_non_null(kept);
    oracle_kept(GR_SESSION_COL, 0, kept);
    kept_pattern(kept, 8, 2, pat);
    assert_string_equal(pat, "10110"); /* A A B A A */
    oracle_kept(GR_SESSION_GAP, 0, kept);
    kept_pattern(kept, 7, 1, pat);
    assert_string_equal(pat, "1010"); /* +GAP, then +GAP+1 twice in one second */
    free(kept);
    int late = 0;
    assert_true(check_gran("sess_col", GR_SESSION_COL, 0, &late) > 150);
    assert_true(late > 10);
    assert_true(check_gran("sess_gap", GR_SESSION_GAP, 0, &late) > 150);
    assert_true(late > 10);

    /* two session changes in one second: A, then B and C at +100, then C */
    write_text("two.csv", "user,item,cat,type,ts,sess\n"
                          "u00,i000,c0,view,1700000000,A\n"
                          "u00,i000,c0,view,1700000100,B\n"
                          "u00,i000,c0,view,1700000100,C\n"
                          "u00,i000,c0,view,1700000200,C\n");
    const struct cfg_opts o = {.granularity = "session", .columns = ", session: sess"};
    write_config_opts("two", "two.csv", &o);
    char *rep = NULL;
    build_ok("two", NULL, &rep);
    assert_int_equal(report_int(rep, "duplicates_skipped"), 1);
    pt_string_free(rep);
    struct table tb;
    table_read(&tb, "out_%s/train.csv", "two");
    assert_int_equal(tb.nrows, 3);
    assert_string_equal(cell(&tb, 0, 0), "1700000000");
    assert_string_equal(cell(&tb, 1, 0), "1700000100");
    /* Events of one second are seen together (docs/samples.md): the session
     * id is compared with the user's last event at an earlier second, so the
     * C view at +100 repeats the B view's session and the one at +200 starts
     * a new session. */
    assert_string_equal(cell(&tb, 2, 0), "1700000200");
    table_free(&tb);
}

/* ---- history eviction ---- */

#define HIST 3     /* features.history */
#define HSEQ 2     /* features.sequence */

/* The history log: u00 has ten events within an hour, then views; u01..u05
 * have a hundred events each over two days, bursts of up to five in a few
 * minutes among them, so that the last HIST events are sometimes all within
 * an hour and sometimes reach back past it. */
static const int hist_types[10] = {VIEW, CART, VIEW, PURCHASE, VIEW, CART, VIEW, VIEW, PURCHASE, CART};

static void gen_hist_log(uint64_t seed)
{
    rng_state = seed;
    nev = 0;
    for (int k = 0; k < 10; k++) gen_add(T0 + 350 * k, 0, k % 4, hist_types[k]);
    gen_add(T0 + 3300, 0, 5, VIEW); /* all ten within the hour before it */
    gen_add(T0 + 3300, 0, 6, VIEW); /* and in the same second */
    gen_add(T0 + 4000, 0, 7, VIEW);
    gen_add(T0 + 9000, 0, 8, VIEW); /* none in the hour before it */
    while (nev < 600) {
        int64_t t = T0 + below(2 * 86400);
        int u = 1 + below(5), n = unit() < 0.3 ? 2 + below(4) : 1;
        for (int k = 0; k < n; k++) gen_add(t + (k ? below(300) : 0), u, below(NITEMS), below(NTYPES));
    }
    qsort(ev, (size_t)nev, sizeof *ev, by_time);
}

/* The row of user u's view of item i at time t. */
static int find_row(const struct table *tb, int u, int i, int64_t t)
{
    char us[16], is[16], ts[32];
    snprintf(us, sizeof us, "u%02d", u);
    snprintf(is, sizeof is, "i%03d", i);
    snprintf(ts, sizeof ts, "%lld", (long long)t);
    for (int r = 0; r < tb->nrows; r++)
        if (!strcmp(cell(tb, r, 0), ts) && !strcmp(cell(tb, r, 1), us) && !strcmp(cell(tb, r, 2), is)) return r;
    fail_msg("no row for %s %s at %s", us, is, ts);
    return -1;
}

/* Builds NAME with history HIST and sequence HSEQ and checks every row
 * against the brute force that counts only the user's last HIST events in
 * the finite windows. Returns the rows; [out] *capped: rows whose user had
 * more than HIST events in the day before (the cap counts), *reach: rows
 * whose last HIST events reach back more than an hour (the cap and the
 * window's time limit both count). */
static int check_history(const char *name, int *capped, int *reach)
{
    write_events("hist.csv", NULL, nev, NULL, 0);
    const struct cfg_opts o = {.sequence = HSEQ, .history = HIST};
    write_config_opts(name, "hist.csv", &o);
    build_ok(name, NULL, NULL);
    struct table tb;
    table_read(&tb, "out_%s/train.csv", name);
    assert_int_equal(tb.nrows, count_views(nev));
    int64_t marked = 0, pos[2] = {0, 0};
    oracle_history = HIST, oracle_seq = HSEQ;
    *capped = *reach = 0;
    for (int p = 0, r = 0; p < nev; p++) {
        if (ev[p].type != VIEW) continue;
        check_features(&tb, r, ev[p].u, ev[p].i, ev[p].t);
        check_labels(&tb, r, p, &marked, pos);
        int in_day = 0, kept = 0, oldest = -1;
        for (int k = p - 1; k >= 0; k--) {
            if (ev[k].u != ev[p].u || ev[k].t >= ev[p].t) continue;
            in_day += ev[k].t >= ev[p].t - 86400;
            if (kept < HIST) kept++, oldest = k;
        }
        *capped += in_day > HIST;
        *reach += kept == HIST && ev[oldest].t < ev[p].t - 3600;
        r++;
    }
    oracle_history = 4096, oracle_seq = SEQ;
    int rows = tb.nrows;
    table_free(&tb);
    return rows;
}

/* History eviction: with history 3 and sequence 2, a user's ten events
 * within an hour leave u_<type>_1h and _1d counting only the last three,
 * u_<type>_all counting all ten, and the sequences showing the last two;
 * an evicted event leaves the windows once, whether or not it had already
 * left them by time. Every row is the brute force's. */
static void test_history(void **state)
{
    (void)state;
    gen_hist_log(5);
    int capped = 0, reach = 0;
    assert_true(check_history("hist", &capped, &reach) > 0);
    assert_true(capped > 100 && reach > 20);
    struct table tb;
    table_read(&tb, "out_%s/train.csv", "hist");
    /* the two views at T0 + 3300: the last three are a view (i003), a
     * purchase (i000) and a cart (i001) */
    static const char *const want[][2] = {
        {"u_view_1h", "1"}, {"u_cart_1h", "1"}, {"u_purchase_1h", "1"},
        {"u_view_1d", "1"}, {"u_cart_1d", "1"}, {"u_purchase_1d", "1"},
        {"u_view_all", "5"}, {"u_cart_all", "3"}, {"u_purchase_all", "2"},
        {"seq_items", "i001|i000"}, {"seq_types", "cart|purchase"}, {"seq_gaps", "150|500"},
        {"since_last", "150"}, {"since_purchase", "500"}};
    for (int k = 0; k < 2; k++) {
        int r = find_row(&tb, 0, 5 + k, T0 + 3300);
        for (size_t w = 0; w < sizeof want / sizeof *want; w++) expect_cell(&tb, r, want[w][0], want[w][1]);
    }
    /* T0 + 4000: those two views pushed out the view and the purchase */
    int r = find_row(&tb, 0, 7, T0 + 4000);
    expect_cell(&tb, r, "u_view_1h", "2");
    expect_cell(&tb, r, "u_cart_1h", "1");
    expect_cell(&tb, r, "u_purchase_1h", "0");
    expect_cell(&tb, r, "u_view_all", "7");
    expect_cell(&tb, r, "seq_items", "i006|i005");
    /* T0 + 9000: the three kept events are more than an hour old */
    r = find_row(&tb, 0, 8, T0 + 9000);
    expect_cell(&tb, r, "u_view_1h", "0");
    expect_cell(&tb, r, "u_cart_1h", "0");
    expect_cell(&tb, r, "u_view_1d", "3");
    expect_cell(&tb, r, "u_view_all", "8");
    expect_cell(&tb, r, "seq_items", "i007|i006");
    table_free(&tb);
}

/* ---- allocation failures ---- */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif
#if UNDER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* Checks that dir holds only complete output files: each of train, valid
 * and test.csv equal to the clean build's, build.json a whole object.
 * Returns the problems, told on stderr. */
static int leftovers(const char *dir, char *const clean[3], long k)
{
    static const char *const parts[3] = {"train.csv", "valid.csv", "test.csv"};
    DIR *d = opendir(dir);
    if (!d) return 0; /* never created */
    struct dirent *e;
    char p[1024];
    int bad = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        int part = -1;
        for (int s = 0; s < 3; s++)
            if (!strcmp(e->d_name, parts[s])) part = s;
        if (part < 0 && strcmp(e->d_name, "build.json")) {
            bad += fprintf(stderr, "allocation %ld failed: %s left behind\n", k, p) > 0;
            continue;
        }
        char text[1 << 16] = ""; /* no slurp: this runs in the child too */
        FILE *f = fopen(p, "rb");
        size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f) fclose(f);
        text[n] = 0;
        if (part >= 0 ? strcmp(text, clean[part]) != 0 : n < 2 || strcmp(text + n - 2, "}\n") != 0)
            bad += fprintf(stderr, "allocation %ld failed: %s is not a complete file\n", k, p) > 0;
    }
    closedir(d);
    return bad;
}

/* A scout's exit statuses besides 0 (all its builds done) */
enum { CHILD_FAILED = 3, CHILD_LEAK = 4 };

/* The k after k: every step-th, and n last. */
static long next_k(long k, long n, long step) { return k >= n ? n + 1 : k + step > n ? n : k + step; }

/* Builds cfg into out with allocation k failing, for k = from, then every
 * step-th up to n, in a child process, so that a crash is seen here and the
 * next scout starts after it; each k is written to prog before its build and
 * the child's stderr goes to log. Each build must fail with PT_ENOMEM and no
 * report (or, for an allocation it can do without, succeed), leave only
 * complete files in out, and, under ASan, leak nothing. Returns the child's
 * wait status. */
static int alloc_scout(const pt_config *cfg, const char *out, const pt_build_opts *o, char *const clean[3], long from,
                       long n, long step, const char *prog, const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) { /* no cmocka here: it would go on running the other tests in the child */
        static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS};
        for (size_t s = 0; s < sizeof sigs / sizeof *sigs; s++) signal(sigs[s], SIG_DFL); /* cmocka's catch them */
        if (!freopen(log, "w", stderr)) _exit(CHILD_FAILED);
        setvbuf(stderr, NULL, _IONBF, 0); /* a file now, and _exit drops buffers */
        FILE *pf = fopen(prog, "w");
        if (!pf) _exit(CHILD_FAILED);
        for (long k = from; k <= n; k = next_k(k, n, step)) {
            char *rep = NULL, p[1024];
            rewind(pf);
            fprintf(pf, "%20ld\n", k);
            fflush(pf);
            pt_alloc_fail_at(k);
            int rc = pt_build_samples(cfg, out, o, &rep);
            long made = pt_alloc_count();
            pt_alloc_fail_at(0);
            int bad = 0;
            if (made < k) bad += fprintf(stderr, "allocation %ld: only %ld allocations were made\n", k, made) > 0;
            if (rc == PT_OK) { /* an allocation the build can do without, such as the cache check's */
                snprintf(p, sizeof p, "%s/train.csv", out);
                if (!rep || access(p, F_OK))
                    bad += fprintf(stderr, "allocation %ld failed: a success without its files\n", k) > 0;
            } else if (rc != PT_ENOMEM || rep) {
                bad += fprintf(stderr, "allocation %ld failed: rc %d (%s), report %s; want PT_ENOMEM and none\n", k,
                               rc, pt_errmsg(), rep ? rep : "none") > 0;
            }
            pt_string_free(rep);
            bad += leftovers(out, clean, k);
            if (bad) _exit(CHILD_FAILED);
#if UNDER_ASAN
            if (__lsan_do_recoverable_leak_check()) {
                fprintf(stderr, "allocation %ld failed: a leak (above)\n", k);
                _exit(CHILD_LEAK);
            }
#endif
            tmpdir_remove(out);
        }
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}


/* Allocation failures: a small build that uses every part (unsorted input
 * sorted after a first pass, attributes, both tables, negatives, day
 * granularity, a split into three files), with its k-th allocation failing
 * for each k: PT_ENOMEM and no report, never a crash, no temp file left in
 * the output folder, only complete files, and no leak (under ASan). Under
 * ASan, where each build maps 32 MiB for output and one costs about 30 ms,
 * only every n/4-th k is tried (all of them with PT_TEST_ALL_ALLOCS set). */
static void test_alloc_failures(void **state)
{
    (void)state;
    enum { N = 40 };
    int order[N];
    for (int k = 0; k < N; k++) order[k] = k;
    int last = N - 1; /* the last second goes before the one before it: found late */
    while (ev[last - 1].t == ev[N - 1].t) last--;
    int prev = last - 1;
    while (ev[prev - 1].t == ev[last - 1].t) prev--;
    int w = prev;
    for (int k = last; k < N; k++) order[w++] = k;
    for (int k = prev; k < last; k++) order[w++] = k;
    write_events_x("tiny.csv", order, N, X_ATTRS);
    /* short tables: the ids of the first events, one missing from each */
    char items[1024] = "price,sku,brand,stock\n", users[256] = "\n", line[128], id[16];
    for (int k = 1; k < 6; k++) {
        snprintf(id, sizeof id, ",i%03d,", ev[k].i);
        snprintf(line, sizeof line, "%d.5%s\"b, %d\",1\n", k, id, k);
        if (!strstr(items, id)) strcat(items, line);
        snprintf(id, sizeof id, "\nu%02d\t", ev[k].u);
        snprintf(line, sizeof line, "u%02d\tgold\tC%d\n", ev[k].u, k);
        if (!strstr(users, id)) strcat(users, line);
    }
    write_text("tiny_items.csv", items);
    write_text("tiny_users.tsv", users + 1);
    /* the split at the times of the middle view and of the third quarter's */
    int64_t vt[N];
    int nv = 0;
    for (int k = 0; k < N; k++)
        if (ev[k].type == VIEW) vt[nv++] = ev[k].t;
    char extra[1024], cut[2][32];
    for (int s = 0; s < 2; s++) {
        time_t tt = (time_t)vt[nv * (2 + s) / 4];
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(cut[s], sizeof cut[s], "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    snprintf(extra, sizeof extra,
             "  attributes: [color, size]\n"
             "  negatives: {per_exposure: 2, sampler: uniform, seed: 5}\n"
             "  items: {path: tiny_items.csv, key: sku, columns: [brand, price]}\n"
             "  users: {path: tiny_users.tsv, format: {delimiter: \"\\t\", header: false, columns: [uid, tier, country]},"
             " key: uid, columns: [country, tier]}\n"
             "  timezone: \"+08:00\"\n"
             "  split: {valid_from: \"%s\", test_from: \"%s\"}\n",
             cut[0], cut[1]);
    const struct cfg_opts co = {.granularity = "day", .extra = extra};
    write_config_opts("tiny", "tiny.csv", &co);
    char cfgpath[512], out[512], log[512];
    path_of(cfgpath, sizeof cfgpath, "tiny.yaml");
    path_of(out, sizeof out, "out_tiny");
    path_of(log, sizeof log, "alloc.log");
    pt_config *cfg = NULL;
    if (pt_config_load(cfgpath, &cfg)) fail_msg("%s: %s", cfgpath, pt_errmsg());
    pt_build_opts o = pt_build_opts_default();
    o.sort_memory = 64 << 10;
    char *rep = NULL, *clean[3], p[1024];
    pt_alloc_fail_at(0);
    int rc = pt_build_samples(cfg, out, &o, &rep);
    long n = pt_alloc_count();
    if (rc) fail_msg("the clean build: %s", pt_errmsg());
    assert_non_null(strstr(rep, "\"sorted_input\":false"));
    if (report_int(rep, "negatives") < 1 || report_int(rep, "valid") < 1 || report_int(rep, "test") < 1)
        fail_msg("the small build should have negatives, valid and test rows: %s", rep);
    pt_string_free(rep);
    static const char *const parts[3] = {"train.csv", "valid.csv", "test.csv"};
    for (int s = 0; s < 3; s++) {
        snprintf(p, sizeof p, "%s/%s", out, parts[s]);
        clean[s] = slurp(p, NULL);
        assert_true(strlen(clean[s]) < 60000); /* leftovers() reads 64 KiB */
    }
    tmpdir_remove(out);
    assert_true(n > 100);
    long step = UNDER_ASAN && !getenv("PT_TEST_ALL_ALLOCS") ? n / 4 : 1;
    char prog[512];
    path_of(prog, sizeof prog, "alloc.k");
    int st = alloc_scout(cfg, out, &o, clean, 1, n, step, prog, log);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        char *text = slurp(log, NULL), *at = slurp(prog, NULL);
        const char *what = !WIFEXITED(st) ? "the build crashed" : WEXITSTATUS(st) == CHILD_LEAK ? "a leak" : "a wrong result";
        fail_msg("allocation %s failed: %s (status %#x)\n[%s]", at, what, st, text);
    }
    for (int s = 0; s < 3; s++) free(clean[s]);
    pt_config_free(cfg);
}

static int group_setup(void **state)
{
    (void)state;
    gen_log(20231114);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(ev);
    ev = NULL;
    nev = gen_cap = 0;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_is_adversarial),
        /* first, while the process is small: it forks */
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leakage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_invariance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsorted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negatives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attributes_joins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_join_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_granularity_day, setup_own_log, teardown_own_log),
        cmocka_unit_test_setup_teardown(test_granularity_session, setup_own_log, teardown_own_log),
        cmocka_unit_test_setup_teardown(test_history, setup_own_log, teardown_own_log),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
