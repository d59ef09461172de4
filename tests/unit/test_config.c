/* test_config.c: the YAML config parser.
 *
 * Parser cases live as data in tests/data/config: NAME.yaml is the input,
 * NAME.expected holds "OK" or the exact pt_errmsg() line config_parse gives
 * when told the file is "case.yaml". The rest checks what a message cannot:
 * the parsed fields of a full config, relative paths resolved against the
 * config's folder, the shipped configs loading through pt_config_load, a
 * missing file, and allocation failures. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data/config.h"
#include "util/util.h"

#define CASE_DIR PT_TEST_DATA "/config"

/* The whole file, NUL-terminated; free() it. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    size_t n = 0, cap = 4096;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t got;
    while ((got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            s = realloc(s, cap);
            assert_non_null(s);
        }
    }
    fclose(f);
    s[n] = 0;
    *len = n;
    return s;
}

static struct pt_config *parse_file(const char *name, const char *as_path)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", CASE_DIR, name);
    size_t len;
    char *text = read_file(path, &len);
    struct pt_config *c = NULL;
    int rc = config_parse(text, len, as_path, &c);
    free(text);
    if (rc != PT_OK) fail_msg("%s: %s", name, pt_errmsg());
    assert_non_null(c);
    return c;
}

/* ---- data cases ---- */

/* Returns 1 when the case gives what NAME.expected says. */
static int run_case(const char *stem)
{
    char path[1024];
    size_t len, exp_len;
    snprintf(path, sizeof path, "%s/%s.yaml", CASE_DIR, stem);
    char *text = read_file(path, &len);
    snprintf(path, sizeof path, "%s/%s.expected", CASE_DIR, stem);
    char *want = read_file(path, &exp_len);
    while (exp_len > 0 && (want[exp_len - 1] == '\n' || want[exp_len - 1] == '\r')) want[--exp_len] = 0;

    struct pt_config *c = NULL;
    int rc = config_parse(text, len, "case.yaml", &c);
    const char *got = rc == PT_OK ? "OK" : pt_errmsg();
    int ok = strcmp(got, want) == 0 && (rc == PT_OK ? c != NULL : rc == PT_ECONFIG && c == NULL);
    if (!ok) print_error("case %s:\n  want: %s\n  got:  %s (rc %d)\n", stem, want, got, rc);
    pt_config_free(c);
    free(text);
    free(want);
    return ok;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_data_cases(void **state)
{
    (void)state;
    DIR *d = opendir(CASE_DIR);
    assert_non_null(d);
    char *stems[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".yaml") != 0) continue;
        assert_true(n < 256);
        stems[n] = strndup(e->d_name, l - 5);
        assert_non_null(stems[n]);
        n++;
    }
    closedir(d);
    qsort(stems, (size_t)n, sizeof *stems, cmp_str);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        failed += !run_case(stems[i]);
        free(stems[i]);
    }
    assert_true(n >= 20);
    assert_int_equal(failed, 0);
}

/* ---- the parsed fields of the full config ---- */

static const struct feat_cfg *feat(const struct pt_config *c, const char *name)
{
    for (int i = 0; i < c->nfeats; i++)
        if (!strcmp(c->feats[i].name, name)) return &c->feats[i];
    fail_msg("no feature %s", name);
    return NULL;
}

static void test_full_config_fields(void **state)
{
    (void)state;
    struct pt_config *c = parse_file("full_valid.yaml", "case.yaml");
    /* data */
    assert_string_equal(c->path, "case.yaml");
    assert_string_equal(c->dir, ".");
    assert_non_null(strstr(c->yaml, "early_stopping"));
    assert_string_equal(c->train, "train.csv");
    assert_string_equal(c->valid, "/abs/valid.tsv.gz");
    assert_null(c->test);
    assert_string_equal(c->delim, ", ");
    assert_int_equal(c->header, 0);
    assert_int_equal(c->ncolumns, 9);
    assert_string_equal(c->columns[0], "id");
    assert_string_equal(c->columns[8], "bought");
    assert_int_equal(c->nkeys, 2);
    assert_string_equal(c->keys[0], "id");
    assert_string_equal(c->keys[1], "user");
    assert_int_equal(c->max_bad_rows, 10);
    assert_true(c->valid_fraction == 0.0);
    assert_true(c->test_fraction == 0.2);
    assert_int_equal(c->split_seed, 42);

    /* features: file order within each kind, kinds in the order given */
    assert_int_equal(c->nfeats, 6);
    assert_string_equal(c->feats[0].name, "age");
    assert_string_equal(c->feats[1].name, "price");
    assert_string_equal(c->feats[2].name, "city");
    assert_string_equal(c->feats[3].name, "user");
    assert_string_equal(c->feats[4].name, "tags");
    assert_string_equal(c->feats[5].name, "tags2");

    const struct feat_cfg *f = feat(c, "age"); /* numeric defaults */
    assert_int_equal(f->kind, FEAT_NUMERIC);
    assert_int_equal(f->transform, NUM_BUCKETIZE);
    assert_int_equal(f->buckets, 4);
    assert_int_equal(f->impute, IMPUTE_CONST);
    assert_true(f->impute_value == 0.5f);
    assert_null(f->sep);
    f = feat(c, "price"); /* overrides */
    assert_int_equal(f->kind, FEAT_NUMERIC);
    assert_int_equal(f->transform, NUM_RAW);
    assert_int_equal(f->impute, IMPUTE_MEAN);
    assert_int_equal(f->buckets, 4);
    f = feat(c, "city"); /* categorical defaults */
    assert_int_equal(f->kind, FEAT_CATEGORICAL);
    assert_int_equal(f->dim, 8);
    assert_int_equal(f->min_count, 2);
    assert_int_equal(f->hash_buckets, 0);
    f = feat(c, "user");
    assert_int_equal(f->kind, FEAT_CATEGORICAL);
    assert_int_equal(f->dim, 32);
    assert_int_equal(f->min_count, 2);
    assert_int_equal(f->hash_buckets, 1000);
    f = feat(c, "tags"); /* multi defaults */
    assert_int_equal(f->kind, FEAT_MULTI);
    assert_string_equal(f->sep, ";");
    assert_int_equal(f->pool_mean, 0);
    assert_int_equal(f->dim, 4);
    f = feat(c, "tags2");
    assert_int_equal(f->kind, FEAT_MULTI);
    assert_string_equal(f->sep, "|");
    assert_int_equal(f->pool_mean, 1);
    assert_int_equal(f->dim, 4);

    /* tasks */
    assert_int_equal(c->ntasks, 2);
    assert_string_equal(c->tasks[0].name, "click");
    assert_string_equal(c->tasks[0].label, "clicked");
    assert_int_equal(c->tasks[0].type, TASK_BINARY);
    assert_int_equal(c->tasks[0].npositive, 2);
    assert_string_equal(c->tasks[0].positive[0], "yes");
    assert_string_equal(c->tasks[0].positive[1], "1");
    assert_true(c->tasks[0].weight == 0.5f);
    assert_string_equal(c->tasks[1].name, "buy");
    assert_string_equal(c->tasks[1].label, "bought");
    assert_int_equal(c->tasks[1].type, TASK_REGRESSION);
    assert_int_equal(c->tasks[1].npositive, 0);
    assert_null(c->tasks[1].positive);
    assert_true(c->tasks[1].weight == 2.0f);
    assert_int_equal(config_task_index(c, "buy"), 1);
    assert_int_equal(config_task_index(c, "bought"), -1);

    /* model and train */
    assert_int_equal(c->model, MODEL_MLP);
    assert_int_equal(c->nhidden, 2);
    assert_int_equal(c->hidden[0], 64);
    assert_int_equal(c->hidden[1], 32);
    assert_true(c->dropout == 0.25f);
    assert_int_equal(c->epochs, 3);
    assert_int_equal(c->batch, 128);
    assert_int_equal(c->threads, 2);
    assert_int_equal(c->seed, 7);
    assert_int_equal(c->optimizer, OPTIM_ADAGRAD);
    assert_true(c->lr == 0.05f);
    assert_true(c->l2 == 0.0001f);
    assert_string_equal(c->es_watch, "valid.click.auc");
    assert_int_equal(c->es_patience, 3);
    pt_config_free(c);
}

/* The defaults a minimal config gets (docs/config.md). */
static void test_defaults(void **state)
{
    (void)state;
    struct pt_config *c = parse_file("minimal.yaml", "case.yaml");
    assert_int_equal(c->header, 1);
    assert_null(c->delim);
    assert_int_equal(c->ncolumns, 0);
    assert_null(c->valid);
    assert_null(c->test);
    assert_int_equal(c->ntasks, 1);
    assert_string_equal(c->tasks[0].name, "y"); /* the label names the task */
    assert_int_equal(c->tasks[0].type, TASK_BINARY);
    assert_true(c->tasks[0].weight == 1.0f);
    assert_int_equal(c->model, MODEL_MLP);
    assert_int_equal(c->nhidden, 3);
    assert_int_equal(c->hidden[0], 256);
    assert_int_equal(c->epochs, 5);
    assert_int_equal(c->batch, 2048);
    assert_int_equal(c->optimizer, OPTIM_ADAM);
    assert_null(c->es_watch);
    assert_int_equal(c->nfeats, 1);
    assert_int_equal(c->feats[0].dim, 16);
    assert_int_equal(c->feats[0].transform, NUM_STANDARDIZE);
    assert_int_equal(c->feats[0].impute, IMPUTE_NONE);
    pt_config_free(c);
}

/* ---- paths ---- */

static void test_relative_paths(void **state)
{
    (void)state;
    static const char text[] = "data:\n"
                               "  train: x.csv\n"
                               "  valid: /abs/v.csv\n"
                               "  test: ../t.csv.gz\n"
                               "features: {numeric: [a]}\n"
                               "tasks: [{label: y}]\n";
    struct pt_config *c = NULL;
    assert_int_equal(config_parse(text, sizeof text - 1, "dir/sub/c.yaml", &c), PT_OK);
    assert_string_equal(c->dir, "dir/sub");
    assert_string_equal(c->train, "dir/sub/x.csv");
    assert_string_equal(c->valid, "/abs/v.csv");
    assert_string_equal(c->test, "dir/sub/../t.csv.gz");
    pt_config_free(c);

    assert_int_equal(config_parse(text, sizeof text - 1, "/etc/pt/c.yaml", &c), PT_OK);
    assert_string_equal(c->train, "/etc/pt/x.csv");
    assert_string_equal(c->valid, "/abs/v.csv");
    pt_config_free(c);

    assert_int_equal(config_parse(text, sizeof text - 1, "c.yaml", &c), PT_OK);
    assert_string_equal(c->train, "x.csv");
    pt_config_free(c);

    /* messages name the path as given */
    static const char bad[] = "data: {train: x.csv}\nbogus: 1\n";
    assert_int_equal(config_parse(bad, sizeof bad - 1, "dir/sub/c.yaml", &c), PT_ECONFIG);
    assert_null(c);
    assert_string_equal(pt_errmsg(), "dir/sub/c.yaml:2: unknown key 'bogus' in the config (see docs/config.md)");
}

/* ---- the shipped configs ---- */

static void test_load_shipped(void **state)
{
    (void)state;
    pt_config *pc = NULL;
    int rc = pt_config_load(PT_SOURCE_DIR "/data/census/census.yaml", &pc);
    if (rc != PT_OK) fail_msg("%s", pt_errmsg());
    struct pt_config *c = pc;
    assert_string_equal(c->train, PT_SOURCE_DIR "/data/census/census-income-6k.csv.gz");
    assert_string_equal(c->delim, ", ");
    assert_int_equal(c->header, 0);
    assert_int_equal(c->ncolumns, 42);
    assert_int_equal(c->ntasks, 2);
    assert_string_equal(c->tasks[0].positive[0], "50000+.");
    assert_string_equal(c->tasks[1].positive[0], "Never married");
    assert_int_equal(c->nfeats, 39);
    assert_true(c->valid_fraction == 0.1);
    assert_true(c->test_fraction == 0.1);
    assert_int_equal(c->split_seed, 2018);
    assert_string_equal(c->es_watch, "valid.mean.auc");
    pt_config_free(pc);

    pc = NULL;
    rc = pt_config_load(PT_SOURCE_DIR "/bench/census/single.yaml", &pc);
    if (rc != PT_OK) fail_msg("%s", pt_errmsg());
    c = pc;
    assert_string_equal(c->train, PT_SOURCE_DIR "/bench/census/../../../shared/bench/data/census/train.csv.gz");
    assert_non_null(c->test);
    assert_null(c->valid);
    assert_int_equal(c->header, 1);
    assert_int_equal(c->ntasks, 2);
    assert_int_equal(c->epochs, 5);
    assert_int_equal(c->batch, 2048);
    pt_config_free(pc);
}

static void test_load_missing(void **state)
{
    (void)state;
    pt_config *c = (pt_config *)1;
    const char *path = "/nonexistent/polytask/no-such.yaml";
    assert_int_equal(pt_config_load(path, &c), PT_EIO);
    assert_null(c);
    const char *msg = pt_errmsg();
    assert_int_equal(strncmp(msg, path, strlen(path)), 0);
    assert_non_null(strstr(msg, "cannot open config"));
    pt_config_free(NULL); /* a no-op */
}

/* ---- allocation failures ---- */

static void test_alloc_failures(void **state)
{
    (void)state;
    char path[1024];
    size_t len;
    snprintf(path, sizeof path, "%s/full_valid.yaml", CASE_DIR);
    char *text = read_file(path, &len);
    long k;
    for (k = 1; k < 100000; k++) {
        struct pt_config *c = NULL;
        pt_alloc_fail_at(k);
        int rc = config_parse(text, len, "dir/c.yaml", &c);
        long made = pt_alloc_count();
        pt_alloc_fail_at(0);
        if (made < k) { /* nothing failed: a full, clean parse */
            if (rc != PT_OK) fail_msg("k=%ld: %s", k, pt_errmsg());
            assert_non_null(c);
            assert_string_equal(c->train, "dir/train.csv");
            pt_config_free(c);
            break;
        }
        if (rc != PT_ENOMEM) fail_msg("k=%ld: rc %d: %s", k, rc, pt_errmsg());
        assert_null(c);
    }
    assert_true(k > 20); /* the full config makes many allocations */
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_cases),     cmocka_unit_test(test_full_config_fields),
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_load_shipped),   cmocka_unit_test(test_load_missing),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
