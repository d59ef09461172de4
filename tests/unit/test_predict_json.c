/* test_predict_json.c: pt_model_predict_json (src/eval/predict_json.c).
 *
 * Tiny models of every kind (mmoe, two-level ple, shared_bottom, esmm, lr,
 * mlp) are trained on a generated CSV with a categorical, a plain and a
 * bucketised numeric and a multi-valued feature. Their JSON predictions must
 * equal pt_model_predict_file's on the same rows written as CSV, to the
 * printed precision (both print %.7g of the same float): hand-written edge
 * rows (missing columns, null, unknown categories, booleans, reals, labels
 * and keys present, quoting) and generated ones. Also: a missing column is
 * an empty cell; unknown columns, nested values, rows that are not objects,
 * text that is not an array or not JSON, too many rows and unreadable
 * numbers are PT_EINVAL naming the row and column; [] gives "[]"; two
 * threads scoring one model at once get the results of one thread. */
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

#define NKINDS 6
static const char *const kinds[NKINDS] = {"mmoe", "ple", "shared_bottom", "esmm", "lr", "mlp"};
static pt_model *models[NKINDS];
static pt_model *strict; /* numeric 'n' with impute: none */
static char tmpdir[256], train_csv[512];

/* ---- data ------------------------------------------------------------------ */

static uint64_t lcg = 12345;
static unsigned rnd(unsigned n)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(lcg >> 33) % n;
}

static const char *const cats[] = {"a", "b", "c", "d", "e"};
static const char *const tags[] = {"x", "y", "z", "w"};

/* One generated row's feature cells: c, n, b, tags. */
struct row {
    char c[8], n[32], b[32], t[32];
};

static void gen_row(struct row *r)
{
    snprintf(r->c, sizeof r->c, "%s", cats[rnd(5)]);
    snprintf(r->n, sizeof r->n, "%.3f", (double)rnd(2000) / 100.0 - 5.0);
    snprintf(r->b, sizeof r->b, "%u", rnd(100));
    snprintf(r->t, sizeof r->t, "%s|%s", tags[rnd(4)], tags[rnd(4)]);
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static pt_model *train(const char *kind, const char *n_opts)
{
    char y[2048], cp[600];
    snprintf(y, sizeof y,
             "data: {train: \"%s\", keys: [id], max_bad_rows: 50}\n"
             "features:\n"
             "  categorical: [{name: c, dim: 3}]\n"
             "  numeric: [{name: n, %s}, {name: b, transform: bucketize, buckets: 4, impute: mean, dim: 2}]\n"
             "  multi: [{name: tags, dim: 3}]\n"
             "tasks:\n  - {name: click, label: y1}\n  - {name: buy, label: y2}\n"
             "model: {kind: %s, experts: 2, shared_experts: 1, levels: %d, expert_dims: [6, 4], tower_dims: [3],"
             " hidden: [5]}\n"
             "train: {epochs: 2, batch: 16, optimizer: {lr: 0.05}}\n",
             train_csv, n_opts, kind, strcmp(kind, "ple") ? 1 : 2);
    snprintf(cp, sizeof cp, "%s/c.yaml", tmpdir);
    struct pt_config *c = NULL;
    if (config_parse(y, strlen(y), cp, &c)) fail_msg("config_parse: %s", pt_errmsg());
    pt_train_opts o = pt_train_opts_default();
    pt_model *m = NULL;
    int rc = pt_train(c, &o, &m);
    pt_config_free(c);
    if (rc) fail_msg("pt_train %s: %s", kind, pt_errmsg());
    return m;
}

static int setup(void **state)
{
    (void)state;
    if (tmpdir_make(tmpdir, sizeof tmpdir, "pjson")) return -1;
    snprintf(train_csv, sizeof train_csv, "%s/train.csv", tmpdir);
    size_t cap = 64 * 400, len = 0;
    char *csv = malloc(cap);
    if (!csv) return -1;
    len += (size_t)snprintf(csv + len, cap - len, "id,c,n,b,tags,y1,y2\n");
    for (int i = 0; i < 300; i++) {
        struct row r;
        gen_row(&r);
        int y1 = (r.c[0] == 'a' || r.c[0] == 'b') ^ (rnd(5) == 0);
        int y2 = y1 && strchr(r.t, 'x') != NULL;
        /* a few missing numbers, for the imputed mean */
        len += (size_t)snprintf(csv + len, cap - len, "r%d,%s,%s,%s,%s,%d,%d\n", i, r.c, i % 17 ? r.n : "",
                                i % 13 ? r.b : "", r.t, y1, y2);
    }
    spit(train_csv, csv);
    free(csv);
    for (int k = 0; k < NKINDS; k++) models[k] = train(kinds[k], "impute: mean");
    strict = train("lr", "impute: none");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int k = 0; k < NKINDS; k++) pt_model_free(models[k]);
    pt_model_free(strict);
    tmpdir_remove(tmpdir);
    return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static char *predict(pt_model *m, const char *rows, int64_t max_rows)
{
    char *out = NULL;
    int rc = pt_model_predict_json(m, rows, strlen(rows), max_rows, &out);
    if (rc) fail_msg("pt_model_predict_json: %d %s\nrows: %s", rc, pt_errmsg(), rows);
    assert_non_null(out);
    return out;
}

/* The call fails with PT_EINVAL, sets *json to NULL and its message holds want. */
static void expect_einval(pt_model *m, const char *rows, int64_t max_rows, const char *want)
{
    char *out = (char *)"sentinel";
    int rc = pt_model_predict_json(m, rows, strlen(rows), max_rows, &out);
    if (rc != PT_EINVAL || out != NULL || !strstr(pt_errmsg(), want))
        fail_msg("rows %s: rc %d, message '%s', want PT_EINVAL with '%s'", rows, rc, pt_errmsg(), want);
}

/* Scores of a predict_file output (id,p_<task>...), row-major [rows * ncol]. */
static double *read_predict_csv(const char *path, int *rows, int *ncol, char names[][32])
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char line[4096];
    assert_non_null(fgets(line, sizeof line, f));
    *ncol = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, ",\n", &save); tok; tok = strtok_r(NULL, ",\n", &save))
        if (!strncmp(tok, "p_", 2)) snprintf(names[(*ncol)++], 32, "%s", tok + 2);
    size_t cap = 1024, n = 0;
    double *v = malloc(cap * sizeof *v);
    assert_non_null(v);
    *rows = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strchr(line, ','); /* after the key */
        assert_non_null(p);
        for (int t = 0; t < *ncol; t++) {
            if (n == cap) {
                cap *= 2;
                v = realloc(v, cap * sizeof *v);
                assert_non_null(v);
            }
            v[n++] = strtod(p + 1, &p);
        }
        (*rows)++;
    }
    fclose(f);
    return v;
}

/* The rows scored both ways agree exactly: csv is a file body (header id,c,n,
 * b,tags and optional other columns), rows the same rows as a JSON array. */
static void expect_same_as_file(pt_model *m, const char *csv, const char *rows)
{
    char in[600], outp[600], names[8][32];
    snprintf(in, sizeof in, "%s/rows.csv", tmpdir);
    snprintf(outp, sizeof outp, "%s/pred.csv", tmpdir);
    spit(in, csv);
    int64_t got = 0;
    if (pt_model_predict_file(m, in, outp, NULL, &got)) fail_msg("predict_file: %s", pt_errmsg());
    int nrows, ncol;
    double *want = read_predict_csv(outp, &nrows, &ncol, names);
    assert_int_equal(nrows, got);

    char *out = predict(m, rows, 0);
    json_error_t err;
    json_t *a = json_loads(out, 0, &err);
    if (!a) fail_msg("output is not JSON: %s: %s", err.text, out);
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), nrows);
    for (int i = 0; i < nrows; i++) {
        json_t *o = json_array_get(a, (size_t)i);
        assert_int_equal(json_object_size(o), ncol);
        for (int t = 0; t < ncol; t++) {
            json_t *x = json_object_get(o, names[t]);
            if (!json_is_number(x)) fail_msg("row %d: no number for '%s' in %s", i, names[t], out);
            if (json_number_value(x) != want[i * ncol + t])
                fail_msg("row %d task %s: json %.9g, file %.9g", i, names[t], json_number_value(x), want[i * ncol + t]);
        }
    }
    json_decref(a);
    pt_string_free(out);
    free(want);
}

/* ---- tests --------------------------------------------------------------- */

/* Edge rows, each as a CSV line and as the JSON object that must mean the same. */
static const char *const edge[][2] = {
    {"0,a,1.5,20,x|y", "{\"c\": \"a\", \"n\": 1.5, \"b\": 20, \"tags\": \"x|y\"}"},
    {"1,,,,", "{}"},
    {"2,,,,", "{\"c\": null, \"n\": null, \"b\": null, \"tags\": null}"},
    {"3,unseen,-3.25,,", "{\"c\": \"unseen\", \"n\": -3.25, \"tags\": \"\"}"},
    {"4,b,1,0,", "{\"c\": \"b\", \"n\": true, \"b\": false}"},
    {"5,,NA,?,", "{\"n\": \"NA\", \"b\": \"?\"}"},
    {"6,c,0.1,1000,y||z", "{\"c\": \"c\", \"n\": 0.1, \"b\": 1e3, \"tags\": \"y||z\", \"y1\": 1, \"y2\": \"0\", \"id\": \"k\"}"},
    {"7,\"has,comma\"\"q\",12345678901234567,99.99999999999999,w", "{\"c\": \"has,comma\\\"q\", \"n\": 12345678901234567, \"b\": 99.99999999999999, \"tags\": \"w\"}"},
    {"8,d,abc,,true", "{\"c\": \"d\", \"n\": \"abc\", \"tags\": true}"},
    {"9,e, 2.5 ,7,z|x|z", "{\"tags\": \"z|x|z\", \"b\": \"7\", \"n\": \" 2.5 \", \"c\": \"e\"}"},
    {"10,,1.2345678,33.3333333,", "{\"n\": 1.2345678, \"b\": 33.3333333}"},
};

static void test_edge_rows_match_file(void **state)
{
    (void)state;
    char csv[8192] = "id,c,n,b,tags\n", rows[8192] = "[";
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) {
        strcat(csv, edge[i][0]);
        strcat(csv, "\n");
        strcat(rows, i ? "," : "");
        strcat(rows, edge[i][1]);
    }
    strcat(rows, "]");
    for (int k = 0; k < NKINDS; k++) expect_same_as_file(models[k], csv, rows);
}

static void test_generated_rows_match_file(void **state)
{
    (void)state;
    size_t cap = 1 << 16;
    char *csv = malloc(cap), *rows = malloc(cap);
    assert_non_null(csv);
    assert_non_null(rows);
    size_t cl = (size_t)snprintf(csv, cap, "id,c,n,b,tags\n"), rl = (size_t)snprintf(rows, cap, "[");
    /* 300 rows: more than one forward chunk (256) */
    for (int i = 0; i < 300; i++) {
        struct row r;
        gen_row(&r);
        cl += (size_t)snprintf(csv + cl, cap - cl, "%d,%s,%s,%s,%s\n", i, r.c, r.n, r.b, r.t);
        rl += (size_t)snprintf(rows + rl, cap - rl, "%s{\"c\":\"%s\",\"n\":%s,\"b\":%s,\"tags\":\"%s\"}", i ? "," : "",
                               r.c, r.n, r.b, r.t);
    }
    snprintf(rows + rl, cap - rl, "]");
    for (int k = 0; k < NKINDS; k++) expect_same_as_file(models[k], csv, rows);
    free(csv);
    free(rows);
}

static void test_missing_is_empty(void **state)
{
    (void)state;
    char *a = predict(models[0], "[{\"c\": \"a\"}]", 0);
    char *b = predict(models[0], "[{\"c\": \"a\", \"n\": null, \"b\": \"\", \"tags\": null}]", 0);
    char *c = predict(models[0], "[{\"c\": \"a\", \"n\": \"\", \"b\": null, \"tags\": \"\"}]", 0);
    assert_string_equal(a, b);
    assert_string_equal(a, c);
    /* the shape: one object per row, keys the task names */
    assert_non_null(strstr(a, "[{\"click\":"));
    assert_non_null(strstr(a, ",\"buy\":"));
    pt_string_free(a), pt_string_free(b), pt_string_free(c);
    char *e = predict(models[3], "[{}]", 0); /* esmm: a third column */
    assert_non_null(strstr(e, ",\"ctcvr\":"));
    pt_string_free(e);
}

static void test_empty_array(void **state)
{
    (void)state;
    char *out = predict(models[0], " [ ] ", 0);
    assert_string_equal(out, "[]");
    pt_string_free(out);
    out = predict(models[0], "[]", 1);
    assert_string_equal(out, "[]");
    pt_string_free(out);
}

static void test_errors(void **state)
{
    (void)state;
    pt_model *m = models[0];
    expect_einval(m, "[{\"c\": \"a\"}, {\"c\": \"a\", \"nope\": 1}]", 0, "row 1: unknown column 'nope'");
    expect_einval(m, "[{\"c\": {\"x\": 1}}]", 0, "row 0: column 'c': an object");
    expect_einval(m, "[{}, {}, {\"n\": [1]}]", 0, "row 2: column 'n': an array");
    expect_einval(m, "[{\"y1\": [1]}]", 0, "row 0: column 'y1': an array");
    expect_einval(m, "[{}, 3]", 0, "row 1: a number, not an object");
    expect_einval(m, "{\"c\": \"a\"}", 0, "must be a JSON array of objects, not an object");
    expect_einval(m, "\"x\"", 0, "not a string");
    expect_einval(m, "[{\"c\": \"a\",]", 0, "not valid JSON: line 1");
    expect_einval(m, "", 0, "not valid JSON");
    expect_einval(m, "[{\"c\": \"a\", \"c\": \"b\"}]", 0, "duplicate");
    expect_einval(m, "[{}, {}, {}]", 2, "3 rows, at most 2");
    expect_einval(strict, "[{\"n\": 1}, {\"n\": \"abc\"}]", 0, "row 1: column 'n': 'abc' is not a number");
    expect_einval(strict, "[{\"c\": \"a\"}]", 0, "row 0: column 'n': an empty value is not a number");
    /* bad arguments */
    char *out = NULL;
    assert_int_equal(pt_model_predict_json(NULL, "[]", 2, 0, &out), PT_EINVAL);
    assert_int_equal(pt_model_predict_json(m, "[]", 2, 0, NULL), PT_EINVAL);
    assert_int_equal(pt_model_predict_json(m, NULL, 2, 0, &out), PT_EINVAL);
    /* len bounds the text: what follows is not read */
    assert_int_equal(pt_model_predict_json(m, "[]garbage", 2, 0, &out), PT_OK);
    assert_string_equal(out, "[]");
    pt_string_free(out);
}

/* ---- threads ------------------------------------------------------------- */

struct job {
    pt_model *m;
    const char *rows;
    const char *want;
    int bad;
};

static void *score_loop(void *arg)
{
    struct job *j = arg;
    for (int i = 0; i < 30; i++) {
        char *out = NULL;
        if (pt_model_predict_json(j->m, j->rows, strlen(j->rows), 0, &out) || strcmp(out, j->want)) j->bad++;
        pt_string_free(out);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    /* different row counts per thread, so the buffers differ in size */
    char *rows[2];
    size_t cap = 1 << 15;
    for (int t = 0; t < 2; t++) {
        rows[t] = malloc(cap);
        assert_non_null(rows[t]);
        size_t l = (size_t)snprintf(rows[t], cap, "[");
        for (int i = 0; i < (t ? 7 : 90); i++) {
            struct row r;
            gen_row(&r);
            l += (size_t)snprintf(rows[t] + l, cap - l, "%s{\"c\":\"%s\",\"n\":%s,\"b\":%s,\"tags\":\"%s\"}",
                                  i ? "," : "", r.c, r.n, r.b, r.t);
        }
        snprintf(rows[t] + l, cap - l, "]");
    }
    for (int k = 0; k < NKINDS; k++) {
        struct job jobs[2];
        char *want[2];
        for (int t = 0; t < 2; t++) {
            want[t] = predict(models[k], rows[t], 0);
            jobs[t] = (struct job){models[k], rows[t], want[t], 0};
        }
        pthread_t th[2];
        for (int t = 0; t < 2; t++) assert_int_equal(pthread_create(&th[t], NULL, score_loop, &jobs[t]), 0);
        for (int t = 0; t < 2; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
        for (int t = 0; t < 2; t++) {
            if (jobs[t].bad) fail_msg("%s: thread %d got %d differing results", kinds[k], t, jobs[t].bad);
            pt_string_free(want[t]);
        }
    }
    free(rows[0]);
    free(rows[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_rows_match_file),
        cmocka_unit_test(test_generated_rows_match_file),
        cmocka_unit_test(test_missing_is_empty),
        cmocka_unit_test(test_empty_array),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
