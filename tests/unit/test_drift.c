/* test_drift.c: input drift (src/data/drift.c, src/eval/drift_report.c).
 *
 * Schemas are fitted on small generated CSVs as the training loop does
 * (READ_FIT, schema_finalize), live rows are encoded with the frozen schema
 * and counted with drift_count directly (pt_model_predict_json's call of it
 * is tested with the server). Checked: the reference and a PSI worked out by
 * hand for a categorical, a raw numeric and a multi-valued feature; the
 * training rows themselves give PSI ~0; a shifted numeric gives > 0.25;
 * unknown and rare categories land in the right bin (id 0 with a bin of its
 * own, or "other"; ties by smaller id); the reference survives
 * pt_model_save/pt_model_load (same PSI on the same rows); a model file
 * without "drift" loads and reports no features; broken references are
 * PT_EFORMAT naming the feature; two threads counting at once give exact
 * totals; drift_sort_floats orders bit for bit as a stable sort on < and >. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
#include <pthread.h>
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
#include "data/config.h"
#include "data/drift.h"
#include "data/schema.h"
#include "models/model.h"
#include "store/modelfile.h"

static char tmpdir[256];

#define CHECK_RC(expr, want)                                                                         \
    do {                                                                                             \
        int rc_ = (expr);                                                                            \
        if (rc_ != (want)) fail_msg("%s = %d (want %d): %s", #expr, rc_, (want), pt_errmsg());     \
    } while (0)

static int setup(void **state)
{
    (void)state;
    return tmpdir_make(tmpdir, sizeof tmpdir, "drift");
}

static int teardown(void **state)
{
    (void)state;
    tmpdir_remove(tmpdir);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static const char *in_dir(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

static void spit(const char *name, const char *text)
{
    char p[512];
    FILE *f = fopen(in_dir(p, sizeof p, name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

struct fitted {
    struct pt_config *cfg;
    struct schema *s;
    struct dataset *ds[3];
};

static void fitted_free(struct fitted *F)
{
    for (int k = 0; k < 3; k++) dataset_free(F->ds[k]);
    schema_free(F->s);
    pt_config_free(F->cfg);
    memset(F, 0, sizeof *F);
}

/* The training loop's fit path on tmpdir/train (features: a YAML block). */
static void fit(struct fitted *F, const char *train, const char *features)
{
    char y[2048], cp[512], tp[512];
    memset(F, 0, sizeof *F);
    snprintf(y, sizeof y, "data: {train: \"%s\"}\nfeatures:\n%stasks: [{name: t, label: y}]\n",
             in_dir(tp, sizeof tp, train), features);
    CHECK_RC(config_parse(y, strlen(y), in_dir(cp, sizeof cp, "c.yaml"), &F->cfg), PT_OK);
    CHECK_RC(schema_create(&F->s, F->cfg), PT_OK);
    for (int k = 0; k < 3; k++) CHECK_RC(dataset_create(&F->ds[k], F->s), PT_OK);
    struct read_opts ro = {.flags = READ_FIT | READ_LABELS};
    CHECK_RC(data_load(F->s, F->cfg->train, &ro, F->ds), PT_OK);
    CHECK_RC(schema_finalize(F->s, F->ds, 3), PT_OK);
}

/* tmpdir/name encoded with the frozen schema s. */
static struct dataset *encode(struct schema *s, const char *name)
{
    char p[512];
    struct dataset *d = NULL;
    CHECK_RC(dataset_create(&d, s), PT_OK);
    struct read_opts ro = {.flags = 0};
    struct dataset *dst[3] = {d, NULL, NULL};
    CHECK_RC(data_load(s, in_dir(p, sizeof p, name), &ro, dst), PT_OK);
    return d;
}

static const struct feat_state *feat(const struct schema *s, const char *name)
{
    for (int i = 0; i < s->nfeat; i++)
        if (!strcmp(s->f[i].cfg->name, name)) return &s->f[i];
    fail_msg("no feature '%s'", name);
    return NULL;
}

static void expect_i64(const int64_t *got, const int64_t *want, int n, const char *what)
{
    for (int k = 0; k < n; k++)
        if (got[k] != want[k]) fail_msg("%s[%d] = %lld, want %lld", what, k, (long long)got[k], (long long)want[k]);
}

static void expect_near(double got, double want, double tol, const char *what)
{
    if (!(fabs(got - want) <= tol)) fail_msg("%s = %.10f, want %.10f (tolerance %g)", what, got, want, tol);
}

/* ---- a PSI by hand -------------------------------------------------------- */

/* 10 train rows: c = a a a a a b b b c c (ids a 1, b 2, c 3 by first sight),
 * x = 1..10 (raw), tags with p six times, q three, r twice (11 ids). */
static const char HAND_TRAIN[] =
    "c,x,tags,y\n"
    "a,1,p|q,0\n" "a,2,p,1\n" "a,3,p|q|r,0\n" "a,4,,1\n" "a,5,p,0\n"
    "b,6,q,1\n" "b,7,p,0\n" "b,8,r,1\n" "c,9,,0\n" "c,10,p,1\n";
static const char HAND_LIVE[] =
    "c,x,tags,y\n"
    "a,1,p|zz,\n" "a,1,q,\n" "b,5,,\n" "zzz,20,r|r,\n";
static const char HAND_FEATS[] =
    "  categorical: [c]\n  numeric: [{name: x, transform: none}]\n  multi: [tags]\n";

static void test_hand_psi(void **state)
{
    (void)state;
    spit("hand.csv", HAND_TRAIN);
    spit("hand_live.csv", HAND_LIVE);
    struct fitted F;
    fit(&F, "hand.csv", HAND_FEATS);
    const struct drift_ref *c = feat(F.s, "c")->drift, *x = feat(F.s, "x")->drift, *t = feat(F.s, "tags")->drift;
    assert_non_null(c);
    assert_non_null(x);
    assert_non_null(t);

    /* references: top ids by count, "other" empty in training */
    assert_int_equal(c->nkeys, 3);
    assert_int_equal(c->ids[0], 1);
    assert_int_equal(c->ids[1], 2);
    assert_int_equal(c->ids[2], 3);
    expect_near(c->p[0], 0.5, 1e-7, "c p0");
    expect_near(c->p[1], 0.3, 1e-7, "c p1");
    expect_near(c->p[2], 0.2, 1e-7, "c p2");
    expect_near(c->p[3], 0.0, 0, "c p3");
    /* deciles of 1..10: v[1..9] = 2..10, 10 bins of 10% */
    assert_int_equal(x->nkeys, 9);
    for (int k = 0; k < 9; k++) expect_near(x->edges[k], k + 2, 0, "x edge");
    for (int k = 0; k < 10; k++) expect_near(x->p[k], 0.1, 1e-7, "x p");
    /* every id of every list: p 6/11, q 3/11, r 2/11 */
    assert_int_equal(t->nkeys, 3);
    expect_near(t->p[0], 6.0 / 11, 1e-7, "tags p0");
    expect_near(t->p[1], 3.0 / 11, 1e-7, "tags p1");
    expect_near(t->p[2], 2.0 / 11, 1e-7, "tags p2");

    assert_true(isnan(drift_psi(c))); /* nothing counted yet */
    struct dataset *d = encode(F.s, "hand_live.csv");
    drift_count(F.s, d, 0, d->n);
    assert_int_equal(drift_rows(F.s), 4);
    /* c: a a b zzz (unknown, id 0: "other") */
    expect_i64(c->live, (int64_t[]){2, 1, 0, 1}, 4, "c live");
    /* x: 1 1 5 20: 1 < 2 → bin 0; 5 → bin 4 (first edge > 5 is 6, edges[4]); 20 → bin 9 */
    expect_i64(x->live, (int64_t[]){2, 0, 0, 0, 1, 0, 0, 0, 0, 1}, 10, "x live");
    /* tags: p zz | q | (none) | r r: zz is unknown (id 0), "other" */
    expect_i64(t->live, (int64_t[]){1, 1, 2, 1}, 4, "tags live");

    /* PSI = sum (a - e) ln(a / e), a and e floored at 1e-4.
     * c: a = (.5, .25, 0 → 1e-4, .25), e = (.5, .3, .2, 0 → 1e-4):
     *    0 + (.25-.3) ln(.25/.3) + (1e-4-.2) ln(1e-4/.2) + (.25-1e-4) ln(.25/1e-4)
     *    = 0 + 0.0091160778 + 1.5194204017 + 1.9552290981 = 3.4837655776 */
    expect_near(drift_psi(c), 3.4837655776, 1e-6, "psi c");
    /* x: a = (.5, 0 x3, .25, 0 x4, .25), e = .1 each:
     *    (.5-.1) ln 5 + 2 (.25-.1) ln 2.5 + 7 (1e-4-.1) ln(1e-4/.1)
     *    = 0.6437751650 + 2 x 0.1374436098 + 7 x 0.6900847524 = 5.7492556511 */
    expect_near(drift_psi(x), 5.7492556511, 1e-6, "psi x");
    /* tags: a = (1, 1, 2, 1)/5, e = (6, 3, 2, 0)/11:
     *    (.2-6/11) ln(.2/(6/11)) + (.2-3/11) ln(.2/(3/11)) + (.4-2/11) ln(.4/(2/11)) + (.2-1e-4) ln(.2/1e-4)
     *    = 0.3465952740 + 0.0225567221 + 0.1720270604 + 1.5194204017 = 2.0605994581 */
    expect_near(drift_psi(t), 2.0605994581, 1e-6, "psi tags");

    dataset_free(d);
    fitted_free(&F);
}

/* The training rows counted as live rows: the same fractions, PSI ~0. */
static void test_identical_is_zero(void **state)
{
    (void)state;
    spit("hand.csv", HAND_TRAIN);
    struct fitted F;
    fit(&F, "hand.csv", HAND_FEATS);
    drift_count(F.s, F.ds[0], 0, F.ds[0]->n);
    for (int i = 0; i < F.s->nfeat; i++) {
        double psi = drift_psi(F.s->f[i].drift);
        if (!(fabs(psi) < 1e-9)) fail_msg("feature '%s': psi %g on the training rows", F.s->f[i].cfg->name, psi);
    }
    fitted_free(&F);
}

/* x standardised, uniform on 0..99 in training; live rows 30 higher (the
 * lower three deciles empty): major drift. The same rows unshifted: none. */
static void test_shifted_numeric(void **state)
{
    (void)state;
    size_t cap = 32 * 1000 + 64;
    char *tr = malloc(cap), *sh = malloc(cap);
    assert_non_null(tr);
    assert_non_null(sh);
    size_t lt = (size_t)snprintf(tr, cap, "x,y\n"), ls = (size_t)snprintf(sh, cap, "x,y\n");
    for (int i = 0; i < 1000; i++) {
        lt += (size_t)snprintf(tr + lt, cap - lt, "%d,%d\n", i % 100, i % 2);
        ls += (size_t)snprintf(sh + ls, cap - ls, "%d,\n", i % 100 + 30);
    }
    spit("num.csv", tr);
    spit("num_shifted.csv", sh);
    free(tr);
    free(sh);
    struct fitted F;
    fit(&F, "num.csv", "  numeric: [x]\n");
    const struct drift_ref *r = feat(F.s, "x")->drift;
    assert_non_null(r);
    assert_int_equal(r->nbins, 10);
    struct dataset *d = encode(F.s, "num_shifted.csv");
    drift_count(F.s, d, 0, d->n);
    double psi = drift_psi(r);
    if (!(psi > 0.25)) fail_msg("shifted numeric: psi %g, want > 0.25", psi);
    /* the live 30..129 fall in bins 3..9 (30 is edge[2], a bin's lower
     * end): the lowest three stay empty */
    assert_int_equal(r->live[0] + r->live[1] + r->live[2], 0);
    dataset_free(d);
    fitted_free(&F);
}

/* u: k0..k9 seen 12..3 times and 20 singletons, with min_count 2 (the
 * singletons are id 0); w: v0..v10 round-robin over the 95 rows (v0..v6 nine
 * times, v7..v10 eight). */
static void test_unknown_bins(void **state)
{
    (void)state;
    char *csv = malloc(64 * 100);
    assert_non_null(csv);
    size_t len = (size_t)sprintf(csv, "u,w,y\n");
    int r = 0;
    for (int k = 0; k < 10; k++)
        for (int j = 0; j < 12 - k; j++, r++) len += (size_t)sprintf(csv + len, "k%d,v%d,0\n", k, r % 11);
    for (int j = 0; j < 20; j++, r++) len += (size_t)sprintf(csv + len, "s%d,v%d,1\n", j, r % 11);
    assert_int_equal(r, 95);
    spit("cats.csv", csv);
    free(csv);
    spit("cats_live.csv", "u,w,y\nnever,never,\nk9,v10,\nk0,v8,\n");
    struct fitted F;
    fit(&F, "cats.csv", "  categorical: [{name: u, min_count: 2}, w]\n");
    const struct drift_ref *u = feat(F.s, "u")->drift, *w = feat(F.s, "w")->drift;

    /* u: the unknown id 0 (20 rows) is the most frequent value, so it has
     * a bin of its own; then k0..k7 (ids 1..8); k8, k9 go to "other" */
    assert_int_equal(u->nkeys, DRIFT_TOP);
    assert_int_equal(u->ids[0], 0);
    for (int k = 1; k < DRIFT_TOP; k++) assert_int_equal(u->ids[k], k);
    expect_near(u->p[0], 20.0 / 95, 1e-7, "u p0");
    expect_near(u->p[DRIFT_TOP], 7.0 / 95, 1e-7, "u other");
    /* w: ids 1..7 nine times, 8..11 eight times: the tie keeps 8 and 9 */
    assert_int_equal(w->nkeys, DRIFT_TOP);
    for (int k = 0; k < DRIFT_TOP; k++) assert_int_equal(w->ids[k], k + 1);
    expect_near(w->p[DRIFT_TOP], 16.0 / 95, 1e-7, "w other");

    struct dataset *d = encode(F.s, "cats_live.csv");
    drift_count(F.s, d, 0, d->n);
    /* u: never → id 0 → bin 0; k9 (id 10) → other; k0 (id 1) → bin 1 */
    expect_i64(u->live, (int64_t[]){1, 1, 0, 0, 0, 0, 0, 0, 0, 1}, 10, "u live");
    /* w: never → id 0, never seen in training → other; v10 (id 11) → other;
     * v8 (id 9) → bin 8 */
    expect_i64(w->live, (int64_t[]){0, 0, 0, 0, 0, 0, 0, 0, 1, 2}, 10, "w live");
    dataset_free(d);
    fitted_free(&F);
}

/* ---- with a model: the report, save/load, old model files ------------------- */

static uint64_t lcg = 777;
static unsigned rnd(unsigned n)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(lcg >> 33) % n;
}

static const char *const cats[] = {"a", "b", "c", "d", "e"};
static const char *const tags[] = {"x", "y", "z", "w"};

/* n generated rows (c, n, b, tags, y); shift moves the numerics and skews c. */
static void write_rows(const char *name, int n, int shift)
{
    size_t cap = 64 * (size_t)n + 64, len = 0;
    char *csv = malloc(cap);
    assert_non_null(csv);
    len += (size_t)snprintf(csv, cap, "c,n,b,tags,y\n");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(csv + len, cap - len, "%s,%.2f,%u,%s|%s,%u\n", cats[shift ? rnd(2) : rnd(5)],
                                (double)rnd(2000) / 100.0 - 5.0 + shift, rnd(100) + (unsigned)shift * 10,
                                tags[rnd(4)], tags[rnd(4)], rnd(2));
    spit(name, csv);
    free(csv);
}

static pt_model *train_model(void)
{
    char y[2048], cp[512], tp[512];
    write_rows("model_train.csv", 300, 0);
    snprintf(y, sizeof y,
             "data: {train: \"%s\"}\n"
             "features:\n"
             "  categorical: [{name: c, dim: 3}]\n"
             "  numeric: [{name: n}, {name: b, transform: bucketize, buckets: 4, dim: 2}]\n"
             "  multi: [{name: tags, dim: 3}]\n"
             "tasks: [{name: click, label: y}]\n"
             "model: {kind: lr}\n"
             "train: {epochs: 1, batch: 64}\n",
             in_dir(tp, sizeof tp, "model_train.csv"));
    struct pt_config *c = NULL;
    CHECK_RC(config_parse(y, strlen(y), in_dir(cp, sizeof cp, "m.yaml"), &c), PT_OK);
    pt_train_opts o = pt_train_opts_default();
    pt_model *m = NULL;
    int rc = pt_train(c, &o, &m);
    pt_config_free(c);
    if (rc) fail_msg("pt_train: %s", pt_errmsg());
    return m;
}

static struct schema *schema_of(pt_model *m) { return ((struct model *)m)->schema; }

static char *drift_json(pt_model *m)
{
    char *js = NULL;
    CHECK_RC(pt_model_drift(m, &js), PT_OK);
    assert_non_null(js);
    return js;
}

/* Counts tmpdir/name as live rows of m, in chunks of 7 as a server's
 * requests would. */
static void count_file(pt_model *m, const char *name)
{
    struct dataset *d = encode(schema_of(m), name);
    for (int64_t i = 0; i < d->n; i += 7) drift_count(schema_of(m), d, i, d->n - i < 7 ? d->n - i : 7);
    dataset_free(d);
}

static void test_model_round_trip(void **state)
{
    (void)state;
    pt_model *m = train_model(), *m2 = NULL;
    char path[512];
    in_dir(path, sizeof path, "m.ptm");

    /* before any row: every feature listed, psi null */
    char *js = drift_json(m);
    json_t *j = json_loads(js, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "rows")), 0);
    json_t *fs = json_object_get(j, "features");
    assert_int_equal(json_array_size(fs), 4);
    static const char *const names[4] = {"c", "n", "b", "tags"};
    for (size_t k = 0; k < 4; k++) {
        json_t *o = json_array_get(fs, k);
        assert_string_equal(json_string_value(json_object_get(o, "name")), names[k]);
        assert_true(json_is_null(json_object_get(o, "psi")));
    }
    json_decref(j);
    pt_string_free(js);

    write_rows("model_live.csv", 50, 3);
    count_file(m, "model_live.csv");
    char *before = drift_json(m);
    CHECK_RC(pt_model_save(m, path), PT_OK);
    CHECK_RC(pt_model_load(path, &m2), PT_OK);
    char *fresh = drift_json(m2); /* counts start at the load */
    assert_non_null(strstr(fresh, "\"rows\":0"));
    count_file(m2, "model_live.csv");
    char *after = drift_json(m2);
    assert_string_equal(before, after);
    j = json_loads(after, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "rows")), 50);
    fs = json_object_get(j, "features");
    for (size_t k = 0; k < json_array_size(fs); k++)
        assert_true(json_is_real(json_object_get(json_array_get(fs, k), "psi")));
    json_decref(j);

    /* the stored reference is the fitted one, exactly */
    char *s1 = schema_to_json(schema_of(m)), *s2 = schema_to_json(schema_of(m2));
    assert_non_null(strstr(s1, "\"drift\""));
    assert_string_equal(s1, s2);

    pt_free(s1);
    pt_free(s2);
    pt_string_free(before);
    pt_string_free(fresh);
    pt_string_free(after);
    pt_model_free(m);
    pt_model_free(m2);
}

/* A copy of the model file at src with edit applied to its schema's
 * feature objects, written to dst. */
static void rewrite_model(const char *src, const char *dst, void (*edit)(json_t *feature))
{
    struct mf_file *f = NULL;
    CHECK_RC(modelfile_read(src, &f), PT_OK);
    json_t *meta = json_loads(f->meta_json, 0, NULL);
    assert_non_null(meta);
    json_t *feats = json_object_get(json_object_get(meta, "schema"), "features");
    assert_true(json_is_array(feats));
    for (size_t k = 0; k < json_array_size(feats); k++) edit(json_array_get(feats, k));
    char *mj = json_dumps(meta, JSON_COMPACT);
    assert_non_null(mj);
    CHECK_RC(modelfile_write(dst, mj, f->tensors, f->ntensors), PT_OK);
    free(mj);
    json_decref(meta);
    modelfile_free(f);
}

static void drop_drift(json_t *feature) { json_object_del(feature, "drift"); }

static void reverse_edges(json_t *feature)
{
    json_t *e = json_object_get(json_object_get(feature, "drift"), "edges");
    if (e && json_array_size(e) > 1) json_array_set_new(e, 0, json_real(1e6)); /* above edge 1 */
}

static void test_old_model_file(void **state)
{
    (void)state;
    pt_model *m = train_model(), *old = NULL;
    char path[512], oldp[512], badp[512];
    CHECK_RC(pt_model_save(m, in_dir(path, sizeof path, "new.ptm")), PT_OK);
    rewrite_model(path, in_dir(oldp, sizeof oldp, "old.ptm"), drop_drift);
    CHECK_RC(pt_model_load(oldp, &old), PT_OK);
    char *js = drift_json(old);
    assert_string_equal(js, "{\"rows\":0,\"features\":[]}");
    pt_string_free(js);
    write_rows("old_live.csv", 20, 0);
    count_file(old, "old_live.csv");
    js = drift_json(old);
    assert_string_equal(js, "{\"rows\":20,\"features\":[]}");
    pt_string_free(js);

    /* a broken reference refuses the file, naming it and the feature */
    pt_model *bad = (pt_model *)1;
    rewrite_model(path, in_dir(badp, sizeof badp, "bad.ptm"), reverse_edges);
    CHECK_RC(pt_model_load(badp, &bad), PT_EFORMAT);
    assert_null(bad);
    if (!strstr(pt_errmsg(), "bad.ptm") || !strstr(pt_errmsg(), "'n'") || !strstr(pt_errmsg(), "ascending"))
        fail_msg("message: %s", pt_errmsg());
    pt_model_free(old);
    pt_model_free(m);
}

/* Parser cases as data: one edit of the hand schema's JSON per case, the
 * message it must give. */
static void test_bad_references(void **state)
{
    (void)state;
    static const struct {
        const char *feature, *drift, *want;
    } cases[] = {
        {"x", "{\"edges\": [2, 1], \"p\": [0.5, 0.25, 0.25]}", "ascending"},
        {"x", "{\"edges\": [1, 2], \"p\": [0.5, 0.5]}", "one fraction per key"},
        {"x", "{\"edges\": [1, 2], \"p\": [0.5, -0.25, 0.75]}", "[0, 1]"},
        {"x", "{\"edges\": [1, 2], \"p\": [0.5, \"a\", 0.5]}", "[0, 1]"},
        {"x", "{\"edges\": [1, \"2\"], \"p\": [0.5, 0.25, 0.25]}", "finite"},
        {"x", "{\"ids\": [1], \"p\": [0.5, 0.5]}", "\"edges\""},
        {"c", "{\"edges\": [1], \"p\": [0.5, 0.5]}", "\"ids\""},
        {"c", "{\"ids\": [1, 4], \"p\": [0.5, 0.25, 0.25]}", "outside"},
        {"c", "{\"ids\": [-1], \"p\": [0.5, 0.5]}", "outside"},
        {"tags", "3", "not an object"},
    };
    spit("hand.csv", HAND_TRAIN);
    struct fitted F;
    fit(&F, "hand.csv", HAND_FEATS);
    char *good = schema_to_json(F.s);
    assert_non_null(good);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *root = json_loads(good, 0, NULL), *feats = json_object_get(root, "features");
        for (size_t k = 0; k < json_array_size(feats); k++) {
            json_t *o = json_array_get(feats, k);
            if (!strcmp(json_string_value(json_object_get(o, "name")), cases[i].feature))
                json_object_set_new(o, "drift", json_loads(cases[i].drift, JSON_DECODE_ANY, NULL));
        }
        char *text = json_dumps(root, JSON_COMPACT);
        struct schema *s = NULL;
        CHECK_RC(schema_create(&s, F.cfg), PT_OK);
        int rc = schema_from_json(s, text, "mem.json");
        char want_feat[64];
        snprintf(want_feat, sizeof want_feat, "'%s'", cases[i].feature);
        if (rc != PT_EFORMAT || !strstr(pt_errmsg(), "mem.json") || !strstr(pt_errmsg(), want_feat) ||
            !strstr(pt_errmsg(), cases[i].want))
            fail_msg("case %zu (%s: %s): rc %d, message '%s', want PT_EFORMAT with %s and '%s'", i, cases[i].feature,
                     cases[i].drift, rc, pt_errmsg(), want_feat, cases[i].want);
        schema_free(s);
        free(text);
        json_decref(root);
    }
    pt_free(good);
    fitted_free(&F);
}

/* ---- threads ---------------------------------------------------------------- */

#define PASSES 2000

struct job {
    const struct schema *s;
    const struct dataset *d;
};

static void *count_loop(void *arg)
{
    const struct job *j = arg;
    for (int p = 0; p < PASSES; p++)
        for (int64_t i = 0; i < j->d->n; i += 3) drift_count(j->s, j->d, i, j->d->n - i < 3 ? j->d->n - i : 3);
    return NULL;
}

static void test_two_threads(void **state)
{
    (void)state;
    spit("hand.csv", HAND_TRAIN);
    struct fitted F;
    fit(&F, "hand.csv", HAND_FEATS);
    /* one pass alone gives the per-bin counts of one pass */
    drift_count(F.s, F.ds[0], 0, F.ds[0]->n);
    int64_t once[8][DRIFT_MAX_BINS];
    for (int i = 0; i < F.s->nfeat; i++) {
        struct drift_ref *r = F.s->f[i].drift;
        memcpy(once[i], r->live, (size_t)r->nbins * sizeof *r->live);
        memset(r->live, 0, (size_t)r->nbins * sizeof *r->live);
    }
    F.s->drift_rows = 0;

    struct job j = {F.s, F.ds[0]};
    pthread_t th[2];
    for (int t = 0; t < 2; t++) assert_int_equal(pthread_create(&th[t], NULL, count_loop, &j), 0);
    for (int t = 0; t < 2; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
    assert_int_equal(drift_rows(F.s), 2 * PASSES * F.ds[0]->n);
    for (int i = 0; i < F.s->nfeat; i++) {
        const struct drift_ref *r = F.s->f[i].drift;
        for (int k = 0; k < r->nbins; k++)
            if (r->live[k] != 2 * PASSES * once[i][k])
                fail_msg("feature '%s' bin %d: %lld, want %lld", F.s->f[i].cfg->name, k, (long long)r->live[k],
                         (long long)(2 * PASSES * once[i][k]));
    }
    fitted_free(&F);
}

/* drift_sort_floats against a stable comparison sort (indices break ties)
 * on < and >, bit for bit: -0 and +0 mixed, infinities, subnormals, many
 * duplicates, and random floats of every exponent. */
static const float *sort_ref_v;

static int cmp_stable(const void *a, const void *b)
{
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    float x = sort_ref_v[i], y = sort_ref_v[j];
    if (x < y) return -1;
    if (x > y) return 1;
    return (i > j) - (i < j);
}

static void test_sort_floats(void **state)
{
    (void)state;
    enum { N = 20000 };
    float *v = malloc(N * sizeof *v), *got = malloc(N * sizeof *got), *want = malloc(N * sizeof *want);
    int64_t *idx = malloc(N * sizeof *idx);
    assert_non_null(v);
    assert_non_null(got);
    assert_non_null(want);
    assert_non_null(idx);
    const float special[] = {0.0f, -0.0f, 1.0f, -1.0f, INFINITY, -INFINITY, 1e-45f, -1e-45f, 1.17549435e-38f,
                             3.4028235e38f, -3.4028235e38f, 0.5f, 2.0f};
    uint64_t x = 88172645463325252ull;
    for (int round = 0; round < 4; round++) {
        int64_t n = round == 0 ? 0 : round == 1 ? 1 : N;
        for (int64_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint32_t u = (uint32_t)(x >> 32);
            float f;
            if (round == 2) {
                f = special[x % (sizeof special / sizeof *special)];
            } else {
                memcpy(&f, &u, sizeof f);
                if (isnan(f)) f = (u & 1) ? 0.0f : -0.0f;
                if (x % 5 == 0) f = (float)(int)(x % 7) - 3; /* duplicates */
            }
            v[i] = f;
        }
        memcpy(got, v, (size_t)n * sizeof *v);
        CHECK_RC(drift_sort_floats(got, n), PT_OK);
        for (int64_t i = 0; i < n; i++) idx[i] = i;
        sort_ref_v = v;
        qsort(idx, (size_t)n, sizeof *idx, cmp_stable);
        for (int64_t i = 0; i < n; i++) want[i] = v[idx[i]];
        assert_memory_equal(got, want, (size_t)n * sizeof *v);
    }
    free(v);
    free(got);
    free(want);
    free(idx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_psi),
        cmocka_unit_test(test_identical_is_zero),
        cmocka_unit_test(test_shifted_numeric),
        cmocka_unit_test(test_unknown_bins),
        cmocka_unit_test(test_model_round_trip),
        cmocka_unit_test(test_old_model_file),
        cmocka_unit_test(test_bad_references),
        cmocka_unit_test(test_two_threads),
        cmocka_unit_test(test_sort_floats),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
