/* test_online.c: online learning's library calls: pt_model_score_json,
 * pt_model_learn_json (src/train/online.c), pt_auc, and the registry's
 * publish and pending-event count.
 *
 * A small MMoE is trained on a generated CSV whose second task counts only
 * where the first is 1 (only_when). Checked: labels read from JSON as a
 * file's (positive values, booleans, missing, the only_when mask) with
 * predictions equal to pt_model_predict_json's; learning from JSON rows
 * leaves exactly the weights that training the same rows read from the CSV
 * with the same batches and optimiser (gathered from packed rows, as the
 * training loop does) leaves (bit for bit); repeated learning
 * lowers the loss; bad rows and arguments fail without changing a weight;
 * publish is all or nothing (with the raw samples learned) and refuses a
 * stale parent; a group commit stores the good batches together and refuses
 * the bad, raw events beside rows with ids of their own; pt_auc skips NaN
 * labels and equals scikit-learn's roc_auc_score on a hand case. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
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
#include "data/schema.h"
#include "models/model.h"
#include "train/optim.h"

static char tmpdir[256], train_csv[512], model_path[512];
static char *rows_json; /* the CSV's first NROWS rows as JSON */
#define NROWS 64

static uint64_t lcg = 99;
static unsigned rnd(unsigned n)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(lcg >> 33) % n;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    (void)state;
    if (tmpdir_make(tmpdir, sizeof tmpdir, "online")) return -1;
    snprintf(train_csv, sizeof train_csv, "%s/train.csv", tmpdir);
    snprintf(model_path, sizeof model_path, "%s/m.ptm", tmpdir);
    static const char *const cats[] = {"a", "b", "c", "d"};
    size_t cap = 64 * 400, len = 0, jcap = 64 * 400, jlen = 0;
    char *csv = malloc(cap), *js = malloc(jcap);
    if (!csv || !js) return -1;
    len += (size_t)snprintf(csv + len, cap - len, "id,c,n,y1,y2\n");
    jlen += (size_t)snprintf(js + jlen, jcap - jlen, "[");
    for (int i = 0; i < 300; i++) {
        const char *c = cats[rnd(4)];
        double n = (double)rnd(1000) / 100.0 - 5.0;
        int y1 = (c[0] == 'a') ^ (n > 2) ^ (rnd(6) == 0), y2 = y1 && rnd(2);
        len += (size_t)snprintf(csv + len, cap - len, "r%d,%s,%.2f,%s,%d\n", i, c, n, y1 ? "yes" : "no", y2);
        if (i < NROWS)
            jlen += (size_t)snprintf(js + jlen, jcap - jlen, "%s{\"id\": \"r%d\", \"c\": \"%s\", \"n\": %.2f, \"y1\": \"%s\", \"y2\": %d}",
                                     i ? "," : "", i, c, n, y1 ? "yes" : "no", y2);
    }
    snprintf(js + jlen, jcap - jlen, "]");
    spit(train_csv, csv);
    free(csv);
    rows_json = js;
    char y[2048], cp[600];
    snprintf(y, sizeof y,
             "data: {train: \"%s\", keys: [id]}\n"
             "features:\n  categorical: [{name: c, dim: 3}]\n  numeric: [{name: n, impute: mean}]\n"
             "tasks:\n  - {name: click, label: y1, positive: [\"yes\"]}\n"
             "  - {name: buy, label: y2, only_when: click}\n"
             "model: {kind: mmoe, experts: 2, expert_dims: [6], tower_dims: [3], dropout: 0}\n"
             "train: {epochs: 2, batch: 16, optimizer: {lr: 0.01}}\n",
             train_csv);
    snprintf(cp, sizeof cp, "%s/c.yaml", tmpdir);
    struct pt_config *c = NULL;
    if (config_parse(y, strlen(y), cp, &c)) fail_msg("config_parse: %s", pt_errmsg());
    pt_train_opts o = pt_train_opts_default();
    pt_model *m = NULL;
    int rc = pt_train(c, &o, &m);
    pt_config_free(c);
    if (rc) fail_msg("pt_train: %s", pt_errmsg());
    if (pt_model_save(m, model_path)) fail_msg("save: %s", pt_errmsg());
    pt_model_free(m);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(rows_json);
    tmpdir_remove(tmpdir);
    return 0;
}

static pt_model *load(void)
{
    pt_model *m = NULL;
    if (pt_model_load(model_path, &m)) fail_msg("load: %s", pt_errmsg());
    return m;
}

static void test_score_labels(void **state)
{
    (void)state;
    pt_model *m = load();
    assert_int_equal(pt_model_outputs(m), 2);
    assert_string_equal(pt_model_output_name(m, 0), "click");
    assert_string_equal(pt_model_output_name(m, 1), "buy");
    assert_null(pt_model_output_name(m, 2));
    const char *rows = "[{\"c\": \"a\", \"n\": 1, \"y1\": \"yes\", \"y2\": 1},"
                       " {\"c\": \"b\", \"n\": 0.5, \"y1\": \"no\", \"y2\": 1},"
                       " {\"c\": \"zz\"},"
                       " {\"c\": \"d\", \"y1\": \"yes\", \"y2\": false},"
                       " {\"c\": \"c\", \"y1\": null, \"y2\": \"0\"}]";
    int64_t n = 0;
    float *p = NULL, *y = NULL;
    if (pt_model_score_json(m, rows, strlen(rows), 0, &n, &p, &y)) fail_msg("score_json: %s", pt_errmsg());
    assert_int_equal(n, 5);
    /* click: "yes" is the positive value, anything else 0; buy only where click is 1 */
    const float want[5][2] = {{1, 1}, {0, NAN}, {NAN, NAN}, {1, 0}, {NAN, NAN}};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 2; j++) {
            float w = want[i][j], g = y[i * 2 + j];
            if (isnan(w) ? !isnan(g) : g != w) fail_msg("row %d task %d: label %g, want %g", i, j, g, w);
        }
    /* the predictions are pt_model_predict_json's */
    char *pj = NULL;
    assert_int_equal(pt_model_predict_json(m, rows, strlen(rows), 0, &pj), PT_OK);
    json_t *a = json_loads(pj, 0, NULL);
    assert_non_null(a);
    for (int i = 0; i < 5; i++) {
        char tx[32];
        snprintf(tx, sizeof tx, "%.7g", p[i * 2]);
        assert_float_equal(json_number_value(json_object_get(json_array_get(a, (size_t)i), "click")), strtod(tx, NULL), 0);
    }
    json_decref(a);
    pt_string_free(pj);
    pt_floats_free(p);
    pt_floats_free(y);
    /* a label that is neither 0/1 nor a listed value */
    const char *bad = "[{\"c\": \"a\", \"y2\": \"maybe\"}]";
    assert_int_equal(pt_model_score_json(m, bad, strlen(bad), 0, &n, &p, &y), PT_EINVAL);
    assert_non_null(strstr(pt_errmsg(), "row 0"));
    assert_non_null(strstr(pt_errmsg(), "maybe"));
    assert_null(p);
    pt_model_free(m);
}

/* Learning from the JSON rows == training the same rows read from the CSV,
 * in file order, with the same batches and optimiser. */
static void test_learn_matches_file_training(void **state)
{
    (void)state;
    pt_model *a = load(), *b = load();
    double loss = NAN;
    assert_int_equal(pt_model_learn_json(a, rows_json, strlen(rows_json), 0, 0, &loss), PT_OK);
    assert_true(isfinite(loss) && loss > 0);

    struct model *mb = (struct model *)b;
    struct read_opts ro = {.flags = READ_LABELS, .max_rows = NROWS};
    struct dataset *d = NULL;
    assert_int_equal(dataset_create(&d, mb->schema), PT_OK);
    struct dataset *dst[3] = {d, NULL, NULL};
    assert_int_equal(data_load(mb->schema, train_csv, &ro, dst), PT_OK);
    assert_int_equal(d->n, NROWS);
    assert_int_equal(model_alloc_train(mb), PT_OK);
    assert_int_equal(model_reserve(mb, mb->cfg->batch), PT_OK);
    struct optim o;
    optim_init(&o, mb->cfg->optimizer, mb->cfg->lr);
    o.l2 = mb->cfg->l2;
    struct train_ctx ctx = {.opt = &o};
    double l[4];
    int64_t idx[64];
    model_pack(mb, d); /* as the training loop gathers, so packed rows == columns too */
    for (int64_t s = 0; s < NROWS; s += mb->cfg->batch) {
        int bs = NROWS - s < mb->cfg->batch ? (int)(NROWS - s) : mb->cfg->batch;
        for (int i = 0; i < bs; i++) idx[i] = s + i;
        assert_int_equal(model_gather(mb, d, NULL, idx, bs), PT_OK);
        assert_int_equal(model_train_step(mb, &ctx, l), PT_OK);
    }
    assert_ptr_equal(mb->pk_of, d);
    model_pack(mb, NULL);
    dataset_free(d);
    const struct model *ma = (const struct model *)a;
    assert_int_equal(ma->total, mb->total);
    size_t diff = 0;
    for (size_t i = 0; i < ma->total; i++) diff += memcmp(&ma->w[i], &mb->w[i], sizeof(float)) != 0;
    if (diff) fail_msg("%zu of %zu weights differ", diff, ma->total);
    /* and the weights did move */
    pt_model *c = load();
    size_t moved = 0;
    for (size_t i = 0; i < ma->total; i++) moved += ma->w[i] != ((struct model *)c)->w[i];
    assert_true(moved > ma->total / 4);
    pt_model_free(a);
    pt_model_free(b);
    pt_model_free(c);
}

static void test_learn_lowers_loss(void **state)
{
    (void)state;
    pt_model *m = load();
    double first = NAN, last = NAN;
    for (int k = 0; k < 40; k++) {
        double loss;
        assert_int_equal(pt_model_learn_json(m, rows_json, strlen(rows_json), 0, 0, &loss), PT_OK);
        if (k == 0) first = loss;
        last = loss;
    }
    if (!(last < 0.8 * first)) fail_msg("loss %g after 40 passes, %g after 1", last, first);
    /* the metrics the file will carry say what online learning did */
    char *info = NULL;
    assert_int_equal(pt_model_info(m, &info), PT_OK);
    assert_non_null(strstr(info, "\"online\""));
    pt_string_free(info);
    pt_model_free(m);
}

static void test_learn_errors(void **state)
{
    (void)state;
    pt_model *m = load(), *ref = load();
    const struct model *mm = (const struct model *)m, *mr = (const struct model *)ref;
    const char *unknown = "[{\"c\": \"a\", \"y1\": 1}, {\"colour\": \"red\"}]";
    assert_int_equal(pt_model_learn_json(m, unknown, strlen(unknown), 0, 0, NULL), PT_EINVAL);
    if (!strstr(pt_errmsg(), "colour")) fail_msg("message: %s", pt_errmsg());
    assert_int_equal(pt_model_learn_json(m, rows_json, strlen(rows_json), 10, 0, NULL), PT_EINVAL);
    assert_int_equal(pt_model_learn_json(m, rows_json, strlen(rows_json), 0, -1, NULL), PT_EINVAL);
    assert_int_equal(pt_model_learn_json(m, "{", 1, 0, 0, NULL), PT_EINVAL);
    assert_int_equal(memcmp(mm->w, mr->w, mm->total * sizeof(float)), 0);
    /* no rows: nothing to do */
    assert_int_equal(pt_model_learn_json(m, "[]", 2, 0, 0, NULL), PT_OK);
    assert_int_equal(memcmp(mm->w, mr->w, mm->total * sizeof(float)), 0);
    pt_model_free(m);
    pt_model_free(ref);
}

static void test_publish(void **state)
{
    (void)state;
    char db[600], v2[600];
    snprintf(db, sizeof db, "%s/reg.db", tmpdir);
    snprintf(v2, sizeof v2, "%s/v2.ptm", tmpdir);
    pt_model *m = load();
    assert_int_equal(pt_model_learn_json(m, rows_json, strlen(rows_json), 0, 0, NULL), PT_OK);
    assert_int_equal(pt_model_save(m, v2), PT_OK);
    pt_model_free(m);
    pt_registry *r = NULL;
    int v = 0;
    int64_t first, last, n, off;
    assert_int_equal(pt_registry_open(db, &r), PT_OK);
    assert_int_equal(pt_registry_import(r, "m", model_path, 0, "test", &v), PT_OK);
    assert_int_equal(v, 1);
    const char *ev = "[{\"c\": \"a\", \"y1\": \"yes\"}, {\"c\": \"b\", \"y1\": \"no\"}, {\"c\": \"c\"}]";
    assert_int_equal(pt_registry_events_append(r, "m", ev, strlen(ev), &first, &last), PT_OK);
    assert_int_equal(pt_registry_events_pending(r, "m", PT_EVENTS_ROWS, 0, &n), PT_OK);
    assert_int_equal(n, 3);
    int64_t raw = -1;
    assert_int_equal(pt_registry_raw_samples_get(r, "m", &raw), PT_OK);
    assert_int_equal(raw, 0);
    assert_int_equal(pt_registry_publish(r, "m", v2, 1, first + 1, 17, "learner", &v), PT_OK);
    assert_int_equal(v, 2);
    assert_int_equal(pt_registry_raw_samples_get(r, "m", &raw), PT_OK);
    assert_int_equal(raw, 17);
    char *path = NULL;
    int active = 0;
    assert_int_equal(pt_registry_resolve(r, "m", NULL, &path, &active), PT_OK);
    assert_int_equal(active, 2);
    pt_string_free(path);
    assert_int_equal(pt_registry_offset_get(r, "m", &off), PT_OK);
    assert_int_equal(off, first + 1);
    assert_int_equal(pt_registry_events_pending(r, "m", PT_EVENTS_ROWS, off, &n), PT_OK);
    assert_int_equal(n, 1);
    /* parent 1 is no longer active: refused, nothing changes */
    assert_int_equal(pt_registry_publish(r, "m", v2, 1, last, -1, "learner", &v), PT_EINVAL);
    assert_non_null(strstr(pt_errmsg(), "serves version 2"));
    assert_int_equal(v, 0);
    assert_int_equal(pt_registry_offset_get(r, "m", &off), PT_OK);
    assert_int_equal(off, first + 1);
    assert_int_equal(pt_registry_raw_samples_get(r, "m", &raw), PT_OK);
    assert_int_equal(raw, 17);
    char *js = NULL;
    assert_int_equal(pt_registry_list(r, "m", &js), PT_OK);
    json_t *j = json_loads(js, 0, NULL);
    json_t *mo = json_array_get(json_object_get(j, "models"), 0);
    assert_int_equal(json_array_size(json_object_get(mo, "versions")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(mo, "versions"), 1), "parent")), 1);
    json_decref(j);
    pt_string_free(js);
    /* served: the active version only, until a split names others */
    assert_int_equal(pt_registry_served(r, "m", &js), PT_OK);
    j = json_loads(js, 0, NULL);
    mo = json_array_get(json_object_get(j, "models"), 0);
    assert_int_equal(json_array_size(json_object_get(mo, "versions")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(mo, "versions"), 0), "version")), 2);
    assert_int_equal(json_integer_value(json_object_get(mo, "active")), 2);
    json_decref(j);
    pt_string_free(js);
    const int sv[2] = {1, 2};
    const double sw[2] = {1, 1};
    assert_int_equal(pt_registry_split(r, "m", sv, sw, 2, "test"), PT_OK);
    assert_int_equal(pt_registry_served(r, NULL, &js), PT_OK);
    j = json_loads(js, 0, NULL);
    mo = json_array_get(json_object_get(j, "models"), 0);
    assert_int_equal(json_array_size(json_object_get(mo, "versions")), 2);
    assert_int_equal(json_array_size(json_object_get(mo, "split")), 2);
    json_decref(j);
    pt_string_free(js);
    assert_int_equal(pt_registry_split(r, "m", NULL, NULL, 0, "test"), PT_OK);
    assert_int_equal(pt_registry_audit(r, 1, &js), PT_OK);
    assert_non_null(strstr(js, "\"split\""));
    pt_string_free(js);
    assert_int_equal(pt_registry_audit(r, 3, &js), PT_OK);
    assert_non_null(strstr(js, "\"publish\""));
    pt_string_free(js);
    /* bad arguments */
    assert_int_equal(pt_registry_publish(r, "m", v2, 0, 1, -1, "learner", NULL), PT_EINVAL);
    assert_int_equal(pt_registry_publish(r, "m", v2, 2, -1, -1, "learner", NULL), PT_EINVAL);
    pt_registry_close(r);
}

/* Group commit: good batches commit together, a bad one gets its own code. */
static void test_append_many(void **state)
{
    (void)state;
    char db[600];
    snprintf(db, sizeof db, "%s/many.db", tmpdir);
    pt_registry *r = NULL;
    assert_int_equal(pt_registry_open(db, &r), PT_OK);
    assert_int_equal(pt_registry_import(r, "m", model_path, 0, "test", NULL), PT_OK);
    const char *names[4] = {"m", "m", "nope", "m"};
    const char *rows[4] = {"[{\"c\": \"a\"}, {\"c\": \"b\"}]", "[1]", "[{\"c\": \"a\"}]", "[{\"c\": \"d\"}]"};
    size_t lens[4];
    for (int k = 0; k < 4; k++) lens[k] = strlen(rows[k]);
    int64_t first[4], last[4];
    int rcs[4];
    assert_int_equal(pt_registry_events_append_many(r, 4, names, rows, lens, NULL, first, last, rcs), PT_OK);
    assert_int_equal(rcs[0], PT_OK);
    assert_int_equal(rcs[1], PT_EINVAL);     /* not an array of objects */
    assert_int_not_equal(rcs[2], PT_OK);     /* no such model */
    assert_int_equal(rcs[3], PT_OK);
    assert_int_equal(last[0] - first[0], 1);
    assert_int_equal(first[3], last[0] + 1); /* one transaction, in order */
    int64_t n = 0;
    assert_int_equal(pt_registry_events_pending(r, "m", PT_EVENTS_ROWS, 0, &n), PT_OK);
    assert_int_equal(n, 3);
    char *js = NULL;
    int64_t lid = 0;
    assert_int_equal(pt_registry_events_fetch(r, "m", PT_EVENTS_ROWS, 0, 10, &js, &lid), PT_OK);
    assert_non_null(strstr(js, "\"d\""));
    assert_int_equal(lid, last[3]);
    pt_string_free(js);
    /* raw events: their own ids, fetched and counted apart from the rows */
    const char *raw[2] = {"[{\"user\": \"u1\"}, {\"user\": \"u2\"}]", "[{\"c\": \"e\"}]"};
    const char *mm[2] = {"m", "m"};
    size_t rl[2] = {strlen(raw[0]), strlen(raw[1])};
    int kinds[2] = {PT_EVENTS_RAW, PT_EVENTS_ROWS};
    assert_int_equal(pt_registry_events_append_many(r, 2, mm, raw, rl, kinds, first, last, rcs), PT_OK);
    assert_int_equal(rcs[0], PT_OK);
    assert_int_equal(first[0], 1);
    assert_int_equal(last[0], 2);
    assert_int_equal(pt_registry_events_pending(r, "m", PT_EVENTS_RAW, 0, &n), PT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(pt_registry_events_pending(r, "m", PT_EVENTS_ROWS, 0, &n), PT_OK);
    assert_int_equal(n, 4);
    assert_int_equal(pt_registry_events_fetch(r, "m", PT_EVENTS_RAW, 1, 10, &js, &lid), PT_OK);
    assert_string_equal(js, "[{\"id\":2,\"row\":{\"user\":\"u2\"}}]");
    pt_string_free(js);
    assert_int_equal(pt_registry_events_append_many(r, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL), PT_OK);
    assert_int_equal(pt_registry_events_append_many(r, 2, names, rows, lens, NULL, NULL, last, rcs), PT_EINVAL);
    pt_registry_close(r);
}

static void test_auc(void **state)
{
    (void)state;
    /* sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75 */
    const float p[5] = {0.1f, 0.4f, 0.35f, 0.8f, 0.9f}, y[5] = {0, 0, 1, 1, NAN};
    assert_float_equal(pt_auc(p, y, 5), 0.75, 1e-12);
    const float y1[3] = {1, 1, NAN};
    assert_true(isnan(pt_auc(p, y1, 3)));
    assert_true(isnan(pt_auc(p, y, 0)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_score_labels),
        cmocka_unit_test(test_learn_matches_file_training),
        cmocka_unit_test(test_learn_lowers_loss),
        cmocka_unit_test(test_learn_errors),
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_append_many),
        cmocka_unit_test(test_auc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
