/* test_online_build.c: samples from raw events pushed one batch at a time
 * (pt_builder_*, build.c's online part), against `polytask build`.
 *
 * A seeded generator writes a log of views, carts and purchases (20 users,
 * 30 items, three days, many events sharing a second); a model is trained on
 * its built samples (negatives by popularity, cart and purchase windows,
 * user windows, sequences). Checked:
 * - pushing the whole log as JSON, in batches of random sizes, hands out
 *   exactly the rows of the batch build, cell for cell and in order, except
 *   the tail whose windows never closed (the batch drops those);
 * - with the log read first (replay) and more events pushed, the rows of
 *   the pushed exposures equal those a batch build of the longer log makes,
 *   so the online features see the history training saw;
 * - take's skip leaves out rows but counts them;
 * - a late event is taken at the newest time and counted; a bad one is
 *   skipped and counted; pt_model_check_events_json names the event and
 *   what is wrong; a model without a samples: section is refused. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tmpdir.h"

#include "polytask.h"

static char tmpdir[256], model_path[512];

#define T0 1700000000LL
#define NUSERS 20
#define NITEMS 300

struct ev {
    int64_t t;
    int u, i, type;
};
static struct ev *evs;
static int nev, ncap;
static const char *const tnames[3] = {"view", "cart", "purchase"};

static uint64_t lcg = 7;
static unsigned rnd(unsigned n)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(lcg >> 33) % n;
}

static void add(int64_t t, int u, int i, int type)
{
    if (nev == ncap) {
        ncap = ncap ? 2 * ncap : 1024;
        evs = realloc(evs, (size_t)ncap * sizeof *evs);
        assert_non_null(evs);
    }
    evs[nev++] = (struct ev){t, u, i, type};
}

static int by_time(const void *a, const void *b)
{
    const struct ev *x = a, *y = b;
    return (x->t > y->t) - (x->t < y->t);
}

static void write_log(const char *path, const struct ev *e, int n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "user,item,type,ts,cat\n");
    for (int k = 0; k < n; k++)
        fprintf(f, "u%d,i%d,%s,%lld,c%d\n", e[k].u, e[k].i, tnames[e[k].type], (long long)e[k].t, e[k].i % 5);
    assert_int_equal(fclose(f), 0);
}

/* Events [from, to) as a JSON array; numbers for some times, strings for others. */
static char *events_json(const struct ev *e, int from, int to)
{
    json_t *a = json_array();
    for (int k = from; k < to; k++) {
        char u[16], i[16], c[16];
        snprintf(u, sizeof u, "u%d", e[k].u), snprintf(i, sizeof i, "i%d", e[k].i), snprintf(c, sizeof c, "c%d", e[k].i % 5);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "user", u, "item", i, "type", tnames[e[k].type], "cat", c);
        if (k % 2) {
            json_object_set_new(o, "ts", json_integer(e[k].t));
        } else {
            char ts[24];
            snprintf(ts, sizeof ts, "%lld", (long long)e[k].t);
            json_object_set_new(o, "ts", json_string(ts));
        }
        json_array_append_new(a, o);
    }
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

static const char *config_fmt =
    "samples:\n"
    "  events: %s\n"
    "  columns: {user: user, item: item, type: type, time: ts, category: cat}\n"
    "  time_format: unix\n"
    "  event_types: [view, cart, purchase]\n"
    "  exposure: view\n"
    "  purchase: purchase\n"
    "  labels:\n"
    "    - {name: cart, event: cart, window: 1h}\n"
    "    - {name: bought, event: purchase, window: 6h}\n"
    "  negatives: {per_exposure: 2, sampler: popularity, label: click, seed: 3}\n"
    "  features: {windows: [1h, all], sequence: 4}\n"
    "  cache: %s\n"
    "features:\n"
    "  categorical: [{name: user, dim: 3}, {name: item, dim: 3}, {name: hour, dim: 2}]\n"
    "  multi: [{name: seq_items, dim: 3}]\n"
    "  numeric: [{name: since_last, impute: mean}, {name: u_view_1h}, {name: u_cart_all}, {name: i_view},\n"
    "            {name: i_bought_rate}, {name: u_cat_share}]\n"
    "tasks:\n"
    "  - {name: click, label: click}\n"
    "  - {name: cart, label: cart}\n"
    "  - {name: bought, label: bought}\n"
    "model: {kind: mmoe, experts: 2, expert_dims: [4], tower_dims: [2], dropout: 0}\n"
    "train: {epochs: 1, batch: 64}\n";

static void gen(void)
{
    for (int64_t t = T0; t < T0 + 3 * 86400; t += 1 + rnd(400)) {
        int u = (int)rnd(NUSERS), i = (int)rnd(NITEMS);
        int n = 1 + (int)rnd(3); /* several views in one second */
        for (int k = 0; k < n; k++) add(t, u, (i + k) % NITEMS, 0);
        if (rnd(5) == 0) add(t + rnd(5000), u, i, 1);
        if (rnd(9) == 0) add(t + rnd(30000), u, i, 2);
    }
    qsort(evs, (size_t)nev, sizeof *evs, by_time);
    /* the log ends with views: their samples are the log's, never handed out after a replay */
    int64_t end = evs[nev - 1].t + 1;
    add(end, 0, 0, 0);
    add(end, 1, 2, 0);
}

static char *train_config(const char *dir, const char *log, const char *name)
{
    char y[4096], cache[600], cp[600];
    snprintf(cache, sizeof cache, "%s/%s.samples", dir, name);
    snprintf(y, sizeof y, config_fmt, log, cache);
    snprintf(cp, sizeof cp, "%s/%s.yaml", dir, name);
    FILE *f = fopen(cp, "wb");
    assert_non_null(f);
    fputs(y, f);
    assert_int_equal(fclose(f), 0);
    return strdup(cp);
}

static int setup(void **state)
{
    (void)state;
    if (tmpdir_make(tmpdir, sizeof tmpdir, "onlinebuild")) return -1;
    gen();
    char log[600];
    snprintf(log, sizeof log, "%s/events.csv", tmpdir);
    write_log(log, evs, nev);
    char *cp = train_config(tmpdir, log, "shop");
    pt_config *c = NULL;
    if (pt_config_load(cp, &c)) fail_msg("config: %s", pt_errmsg());
    free(cp);
    pt_train_opts o = pt_train_opts_default();
    pt_model *m = NULL;
    int rc = pt_train(c, &o, &m);
    pt_config_free(c);
    if (rc) fail_msg("pt_train: %s", pt_errmsg());
    snprintf(model_path, sizeof model_path, "%s/m.ptm", tmpdir);
    if (pt_model_save(m, model_path)) fail_msg("save: %s", pt_errmsg());
    pt_model_free(m);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(evs);
    tmpdir_remove(tmpdir);
    return 0;
}

/* ---- the batch build's rows ---- */

struct table {
    char **names;
    int ncol;
    char ***cells; /* [row][col] */
    int n;
};

static void split_line(char *line, char ***out, int *n)
{
    int cap = 64, k = 0;
    char **c = malloc((size_t)cap * sizeof *c);
    for (char *p = line;; p++) {
        char *q = strchr(p, ',');
        if (k == cap) c = realloc(c, (size_t)(cap *= 2) * sizeof *c);
        c[k++] = p;
        if (!q) break;
        *q = 0;
        p = q;
    }
    *out = c, *n = k;
}

static void read_table(const char *path, struct table *t)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    memset(t, 0, sizeof *t);
    int rcap = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n') line[len - 1] = 0;
        assert_null(strchr(line, '"')); /* the generated ids never need quoting */
        char **c;
        int n;
        split_line(strdup(line), &c, &n);
        if (!t->names) {
            t->names = c, t->ncol = n;
            continue;
        }
        assert_int_equal(n, t->ncol);
        if (t->n == rcap) t->cells = realloc(t->cells, (size_t)(rcap = rcap ? 2 * rcap : 256) * sizeof *t->cells);
        t->cells[t->n++] = c;
    }
    free(line);
    fclose(f);
}

static void free_table(struct table *t)
{
    free(t->names[0]), free(t->names);
    for (int r = 0; r < t->n; r++) free(t->cells[r][0]), free(t->cells[r]);
    free(t->cells);
}

/* Online row o (a JSON object of the model's columns) equals batch row r. */
static void same_row(const struct table *t, int r, json_t *o, int *compared)
{
    int seen = 0;
    for (int c = 0; c < t->ncol; c++) {
        json_t *v = json_object_get(o, t->names[c]);
        if (!v) {
            /* left out: a column the model does not read, or an empty cell */
            continue;
        }
        seen++;
        if (strcmp(json_string_value(v), t->cells[r][c]))
            fail_msg("row %d column %s: online '%s', build '%s'", r, t->names[c], json_string_value(v), t->cells[r][c]);
    }
    assert_int_equal(seen, (int)json_object_size(o));
    *compared += seen;
}

static pt_model *load(void)
{
    pt_model *m = NULL;
    if (pt_model_load(model_path, &m)) fail_msg("load: %s", pt_errmsg());
    return m;
}

static json_t *take_all(pt_builder *b, int64_t skip)
{
    char *js = NULL;
    int64_t n = -1;
    assert_int_equal(pt_builder_take_json(b, skip, &js, &n), PT_OK);
    json_t *a = json_loads(js, 0, NULL);
    assert_non_null(a);
    assert_int_equal((int64_t)json_array_size(a), n);
    pt_string_free(js);
    return a;
}

static void test_push_equals_build(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/shop.samples/train.csv", tmpdir);
    struct table t;
    read_table(path, &t);
    pt_model *m = load();
    pt_builder *b = NULL;
    assert_int_equal(pt_builder_open(m, tmpdir, 0, &b), PT_OK);
    json_t *rows = json_array();
    for (int k = 0; k < nev;) {
        int n = 1 + (int)rnd(60);
        if (k + n > nev) n = nev - k;
        char *js = events_json(evs, k, k + n);
        int64_t used = 0;
        assert_int_equal(pt_builder_push_json(b, js, strlen(js), &used), PT_OK);
        assert_int_equal(used, n);
        free(js);
        json_t *got = take_all(b, 0);
        json_array_extend(rows, got);
        json_decref(got);
        k += n;
    }
    pt_builder_stats s;
    pt_builder_counts(b, &s);
    assert_int_equal(s.events, nev);
    assert_int_equal(s.late, 0);
    assert_int_equal(s.bad, 0);
    assert_int_equal(s.rows, (int64_t)json_array_size(rows));
    int n = (int)json_array_size(rows), compared = 0;
    /* all but the samples of the log's last hours (cart 1h, purchase 6h) */
    assert_true(n <= t.n);
    assert_true(n > t.n * 9 / 10);
    assert_true(s.waiting > 0);
    for (int r = 0; r < n; r++) same_row(&t, r, json_array_get(rows, r), &compared);
    assert_true(compared > n * 10);
    json_decref(rows);
    pt_builder_close(b);
    pt_model_free(m);
    free_table(&t);
}

/* The log read first, then events after it: the rows of the pushed
 * exposures are those a build of the whole longer log makes. */
static void test_replay_then_push(void **state)
{
    (void)state;
    int64_t end = evs[nev - 1].t;
    struct ev more[64];
    int nm = 0;
    for (int k = 0; k < 40; k++) {
        int64_t t = end + 60 + 120 * k;
        more[nm++] = (struct ev){t, k % NUSERS, (3 * k) % NITEMS, 0};
        if (k % 3 == 0) more[nm++] = (struct ev){t + 600, k % NUSERS, (3 * k) % NITEMS, 1};
    }
    qsort(more, (size_t)nm, sizeof *more, by_time);
    /* one view far later: every window above closes */
    int64_t last = more[nm - 1].t + 86400;
    more[nm++] = (struct ev){last, 1, 1, 0};
    int nall = nev + nm;
    struct ev *all = malloc((size_t)nall * sizeof *all);
    memcpy(all, evs, (size_t)nev * sizeof *evs);
    memcpy(all + nev, more, (size_t)nm * sizeof *more);
    char log[600], dir[600];
    snprintf(log, sizeof log, "%s/longer.csv", tmpdir);
    write_log(log, all, nall);
    snprintf(dir, sizeof dir, "%s/longer", tmpdir);
    char *cp = train_config(tmpdir, log, "longer");
    pt_config *c = NULL;
    assert_int_equal(pt_config_load(cp, &c), PT_OK);
    free(cp);
    assert_int_equal(pt_build_samples(c, dir, NULL, NULL), PT_OK);
    pt_config_free(c);
    char path[700];
    snprintf(path, sizeof path, "%s/train.csv", dir);
    struct table t;
    read_table(path, &t);

    pt_model *m = load();
    pt_builder *b = NULL;
    assert_int_equal(pt_builder_open(m, tmpdir, 1, &b), PT_OK);
    json_t *first = take_all(b, 0);
    assert_int_equal(json_array_size(first), 0); /* the log's own samples are not handed out */
    json_decref(first);
    char *js = events_json(more, 0, nm);
    assert_int_equal(pt_builder_push_json(b, js, strlen(js), NULL), PT_OK);
    free(js);
    json_t *rows = take_all(b, 0);
    int views = 0, exposures = 0, n = (int)json_array_size(rows);
    for (int k = 0; k < nm - 1; k++) views += more[k].type == 0;
    /* they are the build's rows from the first pushed time on (the last
       view's were dropped there: its windows are open) */
    int r0 = 0, ts = -1;
    for (int k = 0; k < t.ncol; k++)
        if (!strcmp(t.names[k], "ts")) ts = k;
    assert_true(ts >= 0);
    while (r0 < t.n && strtoll(t.cells[r0][ts], NULL, 10) < more[0].t) r0++;
    assert_int_equal(t.n - r0, n);
    int compared = 0;
    int64_t hist_views = 0;
    for (int r = 0; r < n; r++) {
        json_t *o = json_array_get(rows, r);
        same_row(&t, r0 + r, o, &compared);
        if (!strcmp(json_string_value(json_object_get(o, "click")), "1")) {
            exposures++;
            /* history: the item's views in the log count */
            hist_views += strtoll(json_string_value(json_object_get(o, "i_view")), NULL, 10);
        }
    }
    assert_int_equal(exposures, views);
    assert_true(n > 2 * views); /* most draw their two negatives */
    assert_true(hist_views > views);
    json_decref(rows);
    pt_builder_close(b);

    /* skip: the same rows again, the first ten left out but counted */
    assert_int_equal(pt_builder_open(m, tmpdir, 1, &b), PT_OK);
    js = events_json(more, 0, nm);
    assert_int_equal(pt_builder_push_json(b, js, strlen(js), NULL), PT_OK);
    free(js);
    rows = take_all(b, 10);
    assert_int_equal((int)json_array_size(rows), n - 10);
    same_row(&t, r0 + 10, json_array_get(rows, 0), &compared);
    pt_builder_stats s;
    pt_builder_counts(b, &s);
    assert_int_equal(s.rows, n);
    json_decref(rows);
    pt_builder_close(b);
    pt_model_free(m);
    free_table(&t);
    free(all);
}

static void expect_msg(int rc, int want, const char *part)
{
    assert_int_equal(rc, want);
    if (part && !strstr(pt_errmsg(), part)) fail_msg("message '%s' lacks '%s'", pt_errmsg(), part);
}

static void test_late_bad_and_checks(void **state)
{
    (void)state;
    pt_model *m = load();
    int64_t n = -1;
    const char *good = "[{\"user\": \"u1\", \"item\": \"i2\", \"type\": \"view\", \"ts\": 1700000000, \"cat\": null}]";
    assert_int_equal(pt_model_check_events_json(m, good, strlen(good), 0, &n), PT_OK);
    assert_int_equal(n, 1);
    struct { const char *js, *part; } bad[] = {
        {"[{\"user\": \"u1\", \"item\": \"i2\", \"type\": \"view\", \"ts\": 1, \"price\": 3}]", "event 0: unknown column 'price'"},
        {"[{\"user\": \"u1\", \"item\": \"i2\", \"type\": \"view\", \"ts\": 1}, {\"item\": \"i2\", \"type\": \"view\", \"ts\": 1}]",
         "event 1: no 'user'"},
        {"[{\"user\": \"u1\", \"item\": \"i2\", \"type\": \"click\", \"ts\": 1}]", "unknown event type 'click'"},
        {"[{\"user\": \"u1\", \"item\": \"i2\", \"type\": \"view\", \"ts\": \"yesterday\"}]", "bad timestamp 'yesterday'"},
        {"[{\"user\": \"u1\", \"item\": [1], \"type\": \"view\", \"ts\": 1}]", "column 'item'"},
        {"[3]", "event 0: not an object"},
        {"{\"user\": 1}", "want a JSON array"},
        {"[{\"user\": ", "not JSON"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
        expect_msg(pt_model_check_events_json(m, bad[k].js, strlen(bad[k].js), 0, &n), PT_EINVAL, bad[k].part);
    const char *two = "[{\"user\": \"u1\", \"item\": \"i2\", \"type\": \"view\", \"ts\": 1},"
                      " {\"user\": \"u1\", \"item\": \"i2\", \"type\": \"view\", \"ts\": 2}]";
    expect_msg(pt_model_check_events_json(m, two, strlen(two), 1, &n), PT_EINVAL, "limit");

    /* pushed: a late event is moved to the newest time, a bad one skipped */
    pt_builder *b = NULL;
    assert_int_equal(pt_builder_open(m, tmpdir, 0, &b), PT_OK);
    const char *mixed = "[{\"user\": \"u1\", \"item\": \"i2\", \"type\": \"view\", \"ts\": 1700000100},"
                        " {\"user\": \"u2\", \"item\": \"i2\", \"type\": \"view\", \"ts\": 1700000050},"
                        " {\"user\": \"u2\", \"item\": \"i2\", \"type\": \"nope\", \"ts\": 1700000200},"
                        " {\"user\": \"u1\", \"item\": \"i2\", \"type\": \"cart\", \"ts\": 1700000300},"
                        " {\"user\": \"u3\", \"item\": \"i3\", \"type\": \"view\", \"ts\": 1700100000}]";
    int64_t used = 0;
    assert_int_equal(pt_builder_push_json(b, mixed, strlen(mixed), &used), PT_OK);
    assert_int_equal(used, 4);
    pt_builder_stats s;
    pt_builder_counts(b, &s);
    assert_int_equal(s.late, 1);
    assert_int_equal(s.bad, 1);
    json_t *rows = take_all(b, 0);
    /* the two views at 1700000100 (one late) are done; u3's waits. Items known before
       them: none, so no negatives could be drawn */
    assert_int_equal(json_array_size(rows), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 0), "cart")), "1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(rows, 1), "cart")), "0");
    assert_null(json_object_get(json_array_get(rows, 0), "ts")); /* not a column the model reads */
    json_decref(rows);
    expect_msg(pt_builder_push_json(b, "{}", 2, NULL), PT_EINVAL, "array");
    pt_builder_close(b);
    pt_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_equals_build),
        cmocka_unit_test(test_replay_then_push),
        cmocka_unit_test(test_late_bad_and_checks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
