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
 * Not covered here: joined items:/users: tables, attributes, day/session
 * granularity, history eviction, allocation and I/O failures. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "polytask.h"
#include "tmpdir.h"

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
    ev[nev] = (struct event){t, u, i, type, nev};
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
    snprintf(root, sizeof root, "/tmp/pt_build_XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

/* The folder holds files and the builds' output folders (flat). */
static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(root);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "%s/%s", root, e->d_name);
            tmpdir_remove(p); /* no-op on a file */
        }
        closedir(d);
    }
    tmpdir_remove(root);
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

/* Writes root/NAME.yaml: the base samples: section on the events file, plus extra lines. */
static void write_config(const char *name, const char *events, const char *extra)
{
    char path[512];
    path_of(path, sizeof path, "%s.yaml", name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "samples:\n"
            "  events: %s\n"
            "  columns: {user: user, item: item, time: ts, type: type, category: cat}\n"
            "  time_format: unix\n"
            "  event_types: [view, cart, purchase]\n"
            "  exposure: view\n"
            "  purchase: purchase\n"
            "  granularity: event\n"
            "  labels:\n"
            "    - {name: cart, event: cart, window: 1h}\n"
            "    - {name: purchase, event: purchase, window: 1d}\n"
            "  incomplete: mark\n"
            "  features: {windows: [1h, 1d, all], sequence: %d, history: 4096, prior: %g}\n"
            "%s",
            events, SEQ, PRIOR, extra ? extra : "");
    assert_int_equal(fclose(f), 0);
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

/* ---- sample tables (CSV without quoted fields) ---- */

struct table {
    char *text;          /* the file, split in place */
    char **cell;         /* (nrows + 1) x ncols: the header first */
    int ncols, nrows;
};

static void table_read(struct table *tb, const char *fmt, const char *name)
{
    char path[512], rel[256];
    snprintf(rel, sizeof rel, fmt, name);
    path_of(path, sizeof path, "%s", rel);
    memset(tb, 0, sizeof *tb);
    tb->text = slurp(path, NULL);
    int lines = 0;
    for (char *p = tb->text; *p; p++) lines += *p == '\n';
    assert_true(lines >= 1);
    tb->ncols = 1;
    for (char *p = tb->text; *p != '\n'; p++) tb->ncols += *p == ',';
    tb->cell = malloc((size_t)lines * (size_t)tb->ncols * sizeof *tb->cell);
    assert_non_null(tb->cell);
    char *p = tb->text;
    for (int r = 0; r < lines; r++) {
        int c = 0;
        tb->cell[(size_t)r * tb->ncols] = p;
        for (; *p != '\n'; p++)
            if (*p == ',') {
                *p = 0;
                if (++c >= tb->ncols) fail_msg("%s:%d: more than %d fields", path, r + 1, tb->ncols);
                tb->cell[(size_t)r * tb->ncols + c] = p + 1;
            }
        *p++ = 0;
        if (c != tb->ncols - 1) fail_msg("%s:%d: %d fields, the header has %d", path, r + 1, c + 1, tb->ncols);
    }
    tb->nrows = lines - 1;
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

/* Row r holds the features of user u and item i at time t: each one
 * recomputed from the events strictly before t, and only those. */
static void check_features(const struct table *tb, int r, int u, int i, int64_t t)
{
    static const int64_t win[3] = {3600, 86400, 0};
    static const char *const win_name[3] = {"1h", "1d", "all"};
    int64_t cnt[3][NTYPES] = {{0}}, ic[NTYPES] = {0}, g[NTYPES] = {0};
    int64_t last = NONE, last_buy = NONE, nu = 0, ncat = 0;
    int ring[SEQ], nring = 0;
    for (int k = 0; k < nev && ev[k].t < t; k++) {
        const struct event *e = &ev[k];
        g[e->type]++;
        if (e->i == i) ic[e->type]++;
        if (e->u != u) continue;
        for (int w = 0; w < 3; w++)
            if (!win[w] || e->t >= t - win[w]) cnt[w][e->type]++;
        last = e->t;
        if (e->type == PURCHASE) last_buy = e->t;
        nu++;
        ncat += cat_of(e->i) == cat_of(i);
        ring[nring++ % SEQ] = k;
    }
    char s[256], name[64];
    snprintf(s, sizeof s, "u%02d", u), expect_cell(tb, r, "user", s);
    snprintf(s, sizeof s, "i%03d", i), expect_cell(tb, r, "item", s);
    snprintf(s, sizeof s, "c%d", cat_of(i)), expect_cell(tb, r, "cat", s);
    expect_int(tb, r, "ts", t);
    time_t tt = (time_t)t;
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
    /* the last SEQ events, newest first */
    static const char *const seq_cols[4] = {"seq_items", "seq_cats", "seq_types", "seq_gaps"};
    for (int part = 0; part < 4; part++) {
        char *p = s;
        for (int m = 0; m < SEQ && m < nring; m++) {
            const struct event *e = &ev[ring[(nring - 1 - m) % SEQ]];
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
    struct event extra = {ev[nev - 1].t + 60, 0, 0, VIEW, 0};
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
        cmocka_unit_test_setup_teardown(test_leakage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_invariance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsorted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_negatives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
