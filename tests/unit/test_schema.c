/* test_schema.c: the encoder (schema.c): CSV rows → columnar data sets.
 *
 * Each test writes small CSV files and a YAML config into a fresh mkdtemp
 * folder, fits a schema on the train file (READ_FIT | READ_LABELS, then
 * schema_finalize) and checks the encoded arrays exactly: vocabularies and
 * min_count, hashing buckets, numeric imputation / standardisation /
 * bucketing from train rows only, multi-valued columns, labels, bad rows and
 * their messages, numbers read as strtod reads them, the seeded fraction
 * split, the JSON round trip, gzip input, and allocation failures over the
 * whole fit path. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "data/config.h"
#include "data/schema.h"
#include "util/util.h"

#define PATH_CAP 512

/* ---- temp folder per test ---- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    char *dir = malloc(PATH_CAP);
    if (!dir) return -1;
    const char *t = getenv("TMPDIR");
    snprintf(dir, PATH_CAP, "%s/pt_schema_XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int teardown(void **state)
{
    char *dir = *state;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
    return 0;
}

/* dir/name into buf (PATH_CAP bytes) */
static const char *in_dir(char *buf, const char *dir, const char *name)
{
    snprintf(buf, PATH_CAP, "%s/%s", dir, name);
    return buf;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char p[PATH_CAP];
    FILE *f = fopen(in_dir(p, dir, name), "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Fails the test with the library's message unless rc == want. */
#define CHECK_RC(expr, want)                                                                         \
    do {                                                                                             \
        int rc_ = (expr);                                                                            \
        if (rc_ != (want)) fail_msg("%s = %d (want %d): %s", #expr, rc_, (want), pt_errmsg());     \
    } while (0)

#define ASSERT_MSG_HAS(needle)                                                                       \
    do {                                                                                             \
        if (!strstr(pt_errmsg(), (needle)))                                                          \
            fail_msg("message \"%s\" lacks \"%s\"", pt_errmsg(), (needle));                          \
    } while (0)

/* Parses yaml as if it were dir/config.yaml (relative data paths resolve in dir). */
static int parse_cfg(const char *dir, const char *yaml, struct pt_config **out)
{
    char p[PATH_CAP];
    return config_parse(yaml, strlen(yaml), in_dir(p, dir, "config.yaml"), out);
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

/* The fit path of the training loop: parse, read train (with the config's
 * split), finalise. Returns the first error; F holds whatever was made. */
static int fit_rc(struct fitted *F, const char *dir, const char *yaml, int64_t max_bad)
{
    memset(F, 0, sizeof *F);
    int rc = parse_cfg(dir, yaml, &F->cfg);
    if (rc) return rc;
    if ((rc = schema_create(&F->s, F->cfg))) return rc;
    for (int k = 0; k < 3; k++)
        if ((rc = dataset_create(&F->ds[k], F->s))) return rc;
    struct read_opts ro = {.flags = READ_FIT | READ_LABELS, .max_bad_rows = max_bad,
                           .valid_fraction = F->cfg->valid_fraction, .test_fraction = F->cfg->test_fraction,
                           .split_seed = F->cfg->split_seed};
    if ((rc = data_load(F->s, F->cfg->train, &ro, F->ds))) return rc;
    return schema_finalize(F->s, F->ds, 3);
}

static void fit(struct fitted *F, const char *dir, const char *yaml)
{
    CHECK_RC(fit_rc(F, dir, yaml, 0), PT_OK);
}

/* Encodes dir/name with the frozen schema. */
static int encode_rc(struct schema *s, const char *dir, const char *name, int flags, int64_t max_bad,
                     struct dataset **out)
{
    char p[PATH_CAP];
    int rc = dataset_create(out, s);
    if (rc) return rc;
    struct read_opts ro = {.flags = flags, .max_bad_rows = max_bad};
    struct dataset *dst[3] = {*out, NULL, NULL};
    return data_load(s, in_dir(p, dir, name), &ro, dst);
}

static struct dataset *encode(struct schema *s, const char *dir, const char *name)
{
    struct dataset *d = NULL;
    CHECK_RC(encode_rc(s, dir, name, READ_LABELS, 0, &d), PT_OK);
    return d;
}

static struct feat_state *feat(struct schema *s, const char *name)
{
    for (int i = 0; i < s->nfeat; i++)
        if (!strcmp(s->f[i].cfg->name, name)) return &s->f[i];
    fail_msg("no feature '%s'", name);
    return NULL;
}

static void expect_i32(const int32_t *got, const int32_t *want, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("%s[%lld] = %d, want %d", what, (long long)i, got[i], want[i]);
}

static void expect_f32(const float *got, const double *want, int64_t n, double tol, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        if (isnan(want[i])) {
            if (!isnan(got[i])) fail_msg("%s[%lld] = %g, want NaN", what, (long long)i, got[i]);
        } else if (!(fabs(got[i] - want[i]) <= tol)) {
            fail_msg("%s[%lld] = %.9g, want %.9g", what, (long long)i, got[i], want[i]);
        }
    }
}

static int32_t *cat_col(struct dataset *d, struct schema *s, const char *name)
{
    struct feat_state *f = feat(s, name);
    assert_true(f->is_cat);
    return d->cat[f->slot];
}

static float *num_col(struct dataset *d, struct schema *s, const char *name)
{
    struct feat_state *f = feat(s, name);
    assert_false(f->is_cat);
    assert_true(f->cfg->kind == FEAT_NUMERIC);
    return d->num[f->slot];
}

/* ---- vocabularies ---- */

static void test_vocab(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv",
               "color,shape,y\n"
               "red,circle,1\n"
               "blue,square,0\n"
               "red,circle,1\n"
               "green,tri,0\n"
               "blue,circle,1\n");
    write_text(dir, "new.csv",
               "y,shape,color\n" /* columns in another order */
               "1,circle,green\n"
               "0,square,purple\n"
               "1,hexagon,blue\n"
               "0,circle,RED\n");
    struct fitted F;
    fit(&F, dir,
        "data: {train: train.csv}\n"
        "features:\n"
        "  categorical: [color, {name: shape, min_count: 2}]\n"
        "tasks: [{name: t, label: y}]\n");
    struct dataset *tr = F.ds[0];
    assert_int_equal(tr->n, 5);
    assert_int_equal(F.ds[1]->n, 0);
    assert_int_equal(F.ds[2]->n, 0);
    /* first-seen order from 1; 0 is the unknown bucket */
    expect_i32(cat_col(tr, F.s, "color"), (int32_t[]){1, 2, 1, 3, 2}, 5, "color");
    /* circle seen 3 times; square and tri once: below min_count 2 → 0 */
    expect_i32(cat_col(tr, F.s, "shape"), (int32_t[]){1, 0, 1, 0, 1}, 5, "shape");
    assert_int_equal(feat(F.s, "color")->rows, 4);
    assert_int_equal(feat(F.s, "shape")->rows, 2);
    assert_int_equal(feat(F.s, "color")->vocab.n, 3);
    assert_string_equal(vocab_str(&feat(F.s, "color")->vocab, 0), "red");
    assert_string_equal(vocab_str(&feat(F.s, "color")->vocab, 2), "green");
    expect_f32(tr->y, (double[]){1, 0, 1, 0, 1}, 5, 0, "y");

    struct dataset *d = encode(F.s, dir, "new.csv");
    assert_int_equal(d->n, 4);
    /* unseen and case-different values → 0 */
    expect_i32(cat_col(d, F.s, "color"), (int32_t[]){3, 0, 2, 0}, 4, "new color");
    expect_i32(cat_col(d, F.s, "shape"), (int32_t[]){1, 0, 0, 1}, 4, "new shape");
    dataset_free(d);
    fitted_free(&F);
}

/* ---- hashing ---- */

static void test_hashing(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv", "u,y\nalice,1\nbob,0\ncarol,1\nalice,0\ndave,1\n");
    write_text(dir, "new.csv", "u,y\ndave,1\nzed,0\nalice,1\n");
    struct fitted F;
    fit(&F, dir,
        "data: {train: train.csv}\n"
        "features: {categorical: [{name: u, hash_buckets: 7}]}\n"
        "tasks: [{name: t, label: y}]\n");
    struct feat_state *f = feat(F.s, "u");
    assert_int_equal(f->rows, 7);
    int32_t *ids = cat_col(F.ds[0], F.s, "u");
    const char *vals[] = {"alice", "bob", "carol", "alice", "dave"};
    for (int i = 0; i < 5; i++) {
        assert_in_range(ids[i], 0, 6);
        /* the documented hash: changing it silently breaks saved models */
        assert_int_equal(ids[i], (int32_t)(pt_hash64(vals[i], strlen(vals[i]), 0x5eed) % 7));
    }
    assert_int_equal(ids[0], ids[3]);
    /* pinned values, so a change of pt_hash64 itself is caught too */
    expect_i32(ids, (int32_t[]){0, 0, 0, 0, 4}, 5, "u");
    struct dataset *d = encode(F.s, dir, "new.csv");
    int32_t *nid = cat_col(d, F.s, "u");
    assert_int_equal(nid[0], ids[4]);
    assert_int_equal(nid[2], ids[0]);
    assert_in_range(nid[1], 0, 6);
    dataset_free(d);
    fitted_free(&F);
}

/* ---- numerics ---- */

static void test_numeric_standardize_impute(void **state)
{
    const char *dir = *state;
    /* x: 1 2 ? 3 6 → train mean 3, population variance (4+1+0+9)/4 = 3.5 */
    write_text(dir, "train.csv",
               "x,r,c,y\n"
               "1,1,1,1\n"
               "2,2,2,0\n"
               ",,,1\n"
               "3,3,3,0\n"
               "6,6,6,1\n");
    write_text(dir, "valid.csv",
               "x,r,c,y\n"
               "100,100,100,1\n"
               "NA,NA,?,0\n"
               "3,3,3,1\n");
    struct fitted F;
    fit(&F, dir,
        "data: {train: train.csv}\n"
        "features:\n"
        "  numeric:\n"
        "    - {name: x, impute: mean}\n"
        "    - {name: r, impute: mean, transform: none}\n"
        "    - {name: c, impute: -1.5}\n"
        "tasks: [{name: t, label: y}]\n");
    const double sd = sqrt(3.5);
    struct feat_state *fx = feat(F.s, "x"), *fc = feat(F.s, "c");
    assert_true(fabs(fx->mean - 3.0) < 1e-12);
    assert_true(fabs(fx->std - sd) < 1e-12);
    assert_true(fabs(fc->mean - 3.0) < 1e-12); /* the constant does not enter the statistics */
    assert_true(fabs(fc->std - sd) < 1e-12);
    assert_true(fc->impute_value == -1.5f);
    assert_int_equal(fx->imputed, 1);
    struct dataset *tr = F.ds[0];
    expect_f32(num_col(tr, F.s, "x"), (double[]){-2 / sd, -1 / sd, 0, 0, 3 / sd}, 5, 1e-6, "x");
    expect_f32(num_col(tr, F.s, "r"), (double[]){1, 2, 3, 3, 6}, 5, 0, "r");
    expect_f32(num_col(tr, F.s, "c"), (double[]){-2 / sd, -1 / sd, -4.5 / sd, 0, 3 / sd}, 5, 1e-6, "c");

    /* valid rows: the TRAIN mean fills the gap, and valid values change no statistic */
    struct dataset *d = encode(F.s, dir, "valid.csv");
    assert_int_equal(d->n, 3);
    expect_f32(num_col(d, F.s, "x"), (double[]){97 / sd, 0, 0}, 3, 1e-5, "valid x");
    expect_f32(num_col(d, F.s, "r"), (double[]){100, 3, 3}, 3, 0, "valid r");
    expect_f32(num_col(d, F.s, "c"), (double[]){97 / sd, -4.5 / sd, 0}, 3, 1e-5, "valid c");
    assert_true(fabs(fx->mean - 3.0) < 1e-12);
    dataset_free(d);
    fitted_free(&F);
}

static void test_numeric_constant_std(void **state)
{
    const char *dir = *state;
    /* a constant column: std 0 is taken as 1, so values stay finite */
    write_text(dir, "train.csv", "x,y\n4,1\n4,0\n4,1\n");
    struct fitted F;
    fit(&F, dir, "data: {train: train.csv}\nfeatures: {numeric: [x]}\ntasks: [{name: t, label: y}]\n");
    assert_true(feat(F.s, "x")->std == 1.0);
    expect_f32(num_col(F.ds[0], F.s, "x"), (double[]){0, 0, 0}, 3, 0, "x");
    fitted_free(&F);
}

static void test_bucketize(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv", "b,y\n1,0\n2,0\n3,0\n4,0\n5,0\n6,0\n7,0\n8,0\n9,0\n10,0\n");
    write_text(dir, "new.csv", "b,y\n0,0\n3,0\n5.5,0\n8,0\n100,0\n,0\n2.999,1\n");
    struct fitted F;
    fit(&F, dir,
        "data: {train: train.csv}\n"
        "features: {numeric: [{name: b, transform: bucketize, buckets: 4, impute: mean}]}\n"
        "tasks: [{name: t, label: y}]\n");
    struct feat_state *f = feat(F.s, "b");
    /* quantiles at positions 10*k/4 of the sorted values: 3, 6, 8 */
    assert_int_equal(f->nbounds, 3);
    assert_true(f->bounds[0] == 3.0f && f->bounds[1] == 6.0f && f->bounds[2] == 8.0f);
    assert_int_equal(f->rows, 4);
    expect_i32(cat_col(F.ds[0], F.s, "b"), (int32_t[]){0, 0, 1, 1, 1, 2, 2, 3, 3, 3}, 10, "b");
    /* an empty cell takes the train mean 5.5 → bucket 1 */
    struct dataset *d = encode(F.s, dir, "new.csv");
    expect_i32(cat_col(d, F.s, "b"), (int32_t[]){0, 1, 1, 3, 3, 1, 0}, 7, "new b");
    dataset_free(d);
    fitted_free(&F);

    /* repeated values: bounds are deduplicated and stay ascending */
    write_text(dir, "dup.csv", "b,y\n1,0\n1,0\n1,0\n1,0\n1,0\n2,0\n");
    fit(&F, dir,
        "data: {train: dup.csv}\n"
        "features: {numeric: [{name: b, transform: bucketize, buckets: 3}]}\n"
        "tasks: [{name: t, label: y}]\n");
    f = feat(F.s, "b");
    assert_int_equal(f->nbounds, 1);
    assert_true(f->bounds[0] == 1.0f);
    assert_int_equal(f->rows, 2);
    expect_i32(cat_col(F.ds[0], F.s, "b"), (int32_t[]){1, 1, 1, 1, 1, 1}, 6, "dup b");
    fitted_free(&F);
}

/* ---- multi-valued ---- */

static void test_multi(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv",
               "m,k,y\n"
               "a|b,x::y,1\n"
               ",,0\n"
               "b||c,::x::::,1\n"
               "|a|,y,0\n"
               "c,z,1\n"
               "a|a,,0\n");
    write_text(dir, "new.csv", "m,k,y\na|zz|c,q::y,1\n|,,0\n");
    struct fitted F;
    fit(&F, dir,
        "data: {train: train.csv}\n"
        "features:\n"
        "  multi: [m, {name: k, sep: '::', pool: sum, min_count: 2}]\n"
        "tasks: [{name: t, label: y}]\n");
    struct feat_state *fm = feat(F.s, "m"), *fk = feat(F.s, "k");
    assert_int_equal(fm->cfg->kind, FEAT_MULTI);
    assert_string_equal(fm->cfg->sep, "|");
    assert_int_equal(fm->cfg->pool_mean, 1);
    assert_int_equal(fk->cfg->pool_mean, 0);
    struct dataset *tr = F.ds[0];
    assert_int_equal(tr->n, 6);
    /* empty cell → no ids; empty pieces between separators are dropped */
    expect_i32(tr->moff[fm->slot], (int32_t[]){0, 2, 2, 4, 5, 6, 8}, 7, "m offsets");
    expect_i32(tr->mids[fm->slot], (int32_t[]){1, 2, 2, 3, 1, 3, 1, 1}, 8, "m ids");
    assert_int_equal(tr->mlen[fm->slot], 8);
    assert_int_equal(fm->rows, 4);
    /* k: x twice, y twice, z once (min_count 2 → 0) */
    expect_i32(tr->moff[fk->slot], (int32_t[]){0, 2, 2, 3, 4, 5, 5}, 7, "k offsets");
    expect_i32(tr->mids[fk->slot], (int32_t[]){1, 2, 1, 2, 0}, 5, "k ids");
    assert_int_equal(fk->rows, 3);

    struct dataset *d = encode(F.s, dir, "new.csv");
    expect_i32(d->moff[fm->slot], (int32_t[]){0, 3, 3}, 3, "new m offsets");
    expect_i32(d->mids[fm->slot], (int32_t[]){1, 0, 3}, 3, "new m ids");
    expect_i32(d->moff[fk->slot], (int32_t[]){0, 2, 2}, 3, "new k offsets");
    expect_i32(d->mids[fk->slot], (int32_t[]){0, 2}, 2, "new k ids");
    dataset_free(d);
    fitted_free(&F);
}

/* ---- labels ---- */

static void test_labels(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv",
               "c,buy,click,price\n"
               "a,yes,1,1.5\n"
               "a,no,0,-2e3\n"
               "b,,,\n"
               "b,Yes,true,0\n"
               "a,maybe,0.0,7\n");
    struct fitted F;
    fit(&F, dir,
        "data: {train: train.csv}\n"
        "features: {categorical: [c]}\n"
        "tasks:\n"
        "  - {name: buy, label: buy, positive: [yes, sure]}\n"
        "  - {name: click, label: click}\n"
        "  - {name: price, label: price, type: regression}\n");
    struct dataset *tr = F.ds[0];
    assert_int_equal(tr->ntasks, 3);
    expect_f32(tr->y, (double[]){1, 1, 1.5, 0, 0, -2000, NAN, NAN, NAN, 0, 1, 0, 0, 0, 7}, 15, 0, "y");
    fitted_free(&F);

    /* no positive list: only 0/1 (and true/false) are labels */
    write_text(dir, "bad.csv", "c,click\na,1\na,0\nb,yes\n");
    const char *cfg = "data: {train: bad.csv}\nfeatures: {categorical: [c]}\ntasks: [{name: click, label: click}]\n";
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_EPARSE);
    char want[PATH_CAP];
    snprintf(want, sizeof want, "%s/bad.csv:4: label 'yes' of task 'click'", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);

    /* a regression label that is not a number */
    write_text(dir, "badr.csv", "c,p\na,1\nb,abc\n");
    CHECK_RC(fit_rc(&F, dir,
                    "data: {train: badr.csv}\nfeatures: {categorical: [c]}\n"
                    "tasks: [{name: p, label: p, type: regression}]\n", 0),
             PT_EPARSE);
    snprintf(want, sizeof want, "%s/badr.csv:3: label 'abc' of task 'p'", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);
}

static void test_labels_optional(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv", "c,y\na,1\nb,0\n");
    write_text(dir, "nolabel.csv", "c\nb\nz\n");
    struct fitted F;
    fit(&F, dir, "data: {train: train.csv}\nfeatures: {categorical: [c]}\ntasks: [{name: t, label: y}]\n");
    /* predict: no label column needed, labels NaN */
    struct dataset *d = NULL;
    CHECK_RC(encode_rc(F.s, dir, "nolabel.csv", 0, 0, &d), PT_OK);
    expect_i32(cat_col(d, F.s, "c"), (int32_t[]){2, 0}, 2, "c");
    expect_f32(d->y, (double[]){NAN, NAN}, 2, 0, "y");
    dataset_free(d);
    /* eval: the label column is required */
    CHECK_RC(encode_rc(F.s, dir, "nolabel.csv", READ_LABELS, 0, &d), PT_ESCHEMA);
    char want[PATH_CAP];
    snprintf(want, sizeof want, "%s/nolabel.csv:1: label column 'y' of task 't'", dir);
    ASSERT_MSG_HAS(want);
    dataset_free(d);
    fitted_free(&F);
}

/* ---- bad rows ---- */

static void test_field_count(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv", "a,b,y\nx,y,1\nx,0\n");
    struct fitted F;
    CHECK_RC(fit_rc(&F, dir, "data: {train: train.csv}\nfeatures: {categorical: [a, b]}\ntasks: [{name: t, label: y}]\n", 0),
             PT_EPARSE);
    char want[PATH_CAP];
    snprintf(want, sizeof want, "%s/train.csv:3: expected 3 fields, found 2", dir);
    assert_string_equal(pt_errmsg(), want);
    fitted_free(&F);
}

static void test_numeric_errors(void **state)
{
    const char *dir = *state;
    const char *cfg = "data: {train: train.csv}\nfeatures: {numeric: [n, x]}\ntasks: [{name: t, label: y}]\n";
    char want[PATH_CAP];
    struct fitted F;

    write_text(dir, "train.csv", "n,x,y\n1,2,1\n1,abc,0\n");
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_EPARSE);
    snprintf(want, sizeof want, "%s/train.csv:3: column 'x': 'abc' is not a number", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);

    write_text(dir, "train.csv", "n,x,y\n1,2,1\n1,,0\n");
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_EPARSE);
    snprintf(want, sizeof want, "%s/train.csv:3: column 'x': an empty value is not a number", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);

    write_text(dir, "train.csv", "n,x,y\n1,2,1\n2,3,0\ninf,2,0\n");
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_ENUMERIC);
    snprintf(want, sizeof want, "%s/train.csv:4: column 'n': 'inf' is not a finite number", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);

    write_text(dir, "train.csv", "n,x,y\n1,2,1\n2,-1e39,0\n");
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_ENUMERIC);
    snprintf(want, sizeof want, "%s/train.csv:3: column 'x'", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);

    /* NaN text is a missing value: an error without impute */
    write_text(dir, "train.csv", "n,x,y\n1,2,1\nNaN,3,0\n");
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_EPARSE);
    snprintf(want, sizeof want, "%s/train.csv:3: column 'n': 'NaN' is not a number", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);

    /* padded numbers are fine */
    write_text(dir, "train.csv", "n,x,y\n 1 ,2,1\n3,  4,0\n");
    CHECK_RC(fit_rc(&F, dir,
                    "data: {train: train.csv}\nfeatures: {numeric: [{name: n, transform: none}, {name: x, transform: none}]}\n"
                    "tasks: [{name: t, label: y}]\n", 0),
             PT_OK);
    expect_f32(num_col(F.ds[0], F.s, "n"), (double[]){1, 3}, 2, 0, "n");
    expect_f32(num_col(F.ds[0], F.s, "x"), (double[]){2, 4}, 2, 0, "x");
    fitted_free(&F);
}

/* Numbers read bit for bit as (float)strtod reads them, whichever path the
 * reader takes: random plain decimals of 1 to 20 digits (signs, a point
 * anywhere, padding spaces), some with exponents, and edge cases. */
static void test_numeric_like_strtod(void **state)
{
    const char *dir = *state;
    enum { N = 4000 };
    static const char *const edge[] = {"0", "-0", "-0.0", "+7", "1.", ".5", "-.5", "000000000000000123.25",
                                       "999999999999999", "9999999999999999", "0.1", "0.3", "123456789012345.6",
                                       "1.00000005960464477539", "16777217", "2.9999999e38", "1e-45", " 2.5 "};
    size_t cap = N * 48 + 64, len = 0;
    char *csv = malloc(cap), (*val)[48] = malloc(N * sizeof *val);
    assert_non_null(csv);
    assert_non_null(val);
    len += (size_t)snprintf(csv, cap, "x,y\n");
    uint64_t r = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < N; i++) {
        char *v = val[i];
        if (i < (int)(sizeof edge / sizeof *edge)) {
            snprintf(v, 48, "%s", edge[i]);
        } else {
            int k = 0;
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            if (r % 7 == 0) v[k++] = ' ';
            if (r % 3 == 1) v[k++] = '-';
            else if (r % 11 == 2) v[k++] = '+';
            int nd = 1 + (int)((r >> 8) % 20), point = (int)((r >> 16) % (uint64_t)(nd + 2));
            for (int d = 0; d < nd; d++) {
                if (d == point) v[k++] = '.';
                r ^= r << 13, r ^= r >> 7, r ^= r << 17;
                v[k++] = (char)('0' + r % 10);
            }
            if ((r >> 20) % 9 == 0) k += snprintf(v + k, 48 - (size_t)k, "e%d", (int)((r >> 24) % 31) - 15);
            if ((r >> 30) % 5 == 0) v[k++] = ' ';
            v[k] = 0;
        }
        len += (size_t)snprintf(csv + len, cap - len, "%s,1\n", v);
    }
    write_text(dir, "train.csv", csv);
    struct fitted F;
    fit(&F, dir, "data: {train: train.csv}\nfeatures: {numeric: [{name: x, transform: none}]}\ntasks: [{name: t, label: y}]\n");
    assert_int_equal(F.ds[0]->n, N);
    const float *got = num_col(F.ds[0], F.s, "x");
    for (int i = 0; i < N; i++) {
        float want = (float)strtod(val[i], NULL);
        if (memcmp(&got[i], &want, sizeof want))
            fail_msg("'%s' read as %.9g, strtod %.9g", val[i], (double)got[i], (double)want);
    }
    fitted_free(&F);
    free(csv);
    free(val);
}

static void test_max_bad_rows(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv",
               "c,x,y\n"
               "red,1,1\n"
               "red,2\n"            /* line 3: field count */
               "blue,3,0\n"
               "purple,zz,1\n"      /* line 5: not a number (purple must not reach the vocabulary) */
               "\"green,4,1\n"      /* line 6: unterminated quote, to the end of the file */
               );
    const char *cfg = "data: {train: train.csv}\nfeatures: {categorical: [c], numeric: [{name: x, transform: none}]}\n"
                      "tasks: [{name: t, label: y}]\n";
    char want[PATH_CAP];
    struct fitted F;

    CHECK_RC(fit_rc(&F, dir, cfg, 3), PT_OK);
    assert_int_equal(F.ds[0]->n, 2);
    assert_int_equal(F.ds[0]->bad_rows, 3);
    expect_i32(cat_col(F.ds[0], F.s, "c"), (int32_t[]){1, 2}, 2, "c");
    expect_f32(num_col(F.ds[0], F.s, "x"), (double[]){1, 3}, 2, 0, "x");
    assert_int_equal(feat(F.s, "c")->vocab.n, 2);
    assert_int_equal(feat(F.s, "c")->rows, 3);
    write_text(dir, "new.csv", "c,x,y\npurple,1,1\n");
    struct dataset *d = encode(F.s, dir, "new.csv");
    expect_i32(cat_col(d, F.s, "c"), (int32_t[]){0}, 1, "purple");
    dataset_free(d);
    fitted_free(&F);

    /* one over the limit: PT_ETOOMANYBAD naming the row that broke it */
    CHECK_RC(fit_rc(&F, dir, cfg, 2), PT_ETOOMANYBAD);
    snprintf(want, sizeof want, "%s/train.csv:6:", dir);
    ASSERT_MSG_HAS(want);
    ASSERT_MSG_HAS("2 bad rows");
    fitted_free(&F);

    CHECK_RC(fit_rc(&F, dir, cfg, 1), PT_ETOOMANYBAD);
    snprintf(want, sizeof want, "%s/train.csv:5: column 'x'", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);

    /* no limit given: the first bad row is the error */
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_EPARSE);
    snprintf(want, sizeof want, "%s/train.csv:3: expected 3 fields, found 2", dir);
    assert_string_equal(pt_errmsg(), want);
    fitted_free(&F);

    /* frozen files count their bad rows too */
    fit(&F, dir, "data: {train: new.csv}\nfeatures: {categorical: [c], numeric: [{name: x, transform: none}]}\n"
                 "tasks: [{name: t, label: y}]\n");
    d = NULL;
    CHECK_RC(encode_rc(F.s, dir, "train.csv", READ_LABELS, 5, &d), PT_OK);
    assert_int_equal(d->n, 2);
    assert_int_equal(d->bad_rows, 3);
    dataset_free(d);
    d = NULL;
    CHECK_RC(encode_rc(F.s, dir, "train.csv", READ_LABELS, 2, &d), PT_ETOOMANYBAD);
    dataset_free(d);
    fitted_free(&F);
}

/* Chunked reading (max_rows, as predict streams a file) gives the rows and
 * bad-row count of one whole read, at most max_rows a call, although the
 * reader holds one record ahead across calls. */
static void test_chunked_read(void **state)
{
    const char *dir = *state;
    write_text(dir, "rows.csv",
               "c,x,y\n"
               "red,1,1\n"
               "blue,2,0\n"
               "green,3,1\n"
               "red,4\n"            /* line 5: field count */
               "blue,5,0\n"
               "\n"
               "pink,6,1\n"
               "red,zz,0\n"         /* line 9: not a number */
               "green,7,0\n");
    struct fitted F;
    CHECK_RC(fit_rc(&F, dir, "data: {train: rows.csv}\nfeatures: {categorical: [c], numeric: [{name: x, transform: none}]}\n"
                             "tasks: [{name: t, label: y}]\n", 5),
             PT_OK);
    struct dataset *whole = NULL, *d = NULL;
    CHECK_RC(encode_rc(F.s, dir, "rows.csv", READ_LABELS, 5, &whole), PT_OK);
    assert_int_equal(whole->n, 6);
    assert_int_equal(whole->bad_rows, 2);
    for (int64_t chunk = 1; chunk <= 3; chunk++) {
        char p[PATH_CAP];
        struct data_reader *r = NULL;
        struct read_opts ro = {.flags = READ_LABELS, .max_bad_rows = 5, .max_rows = chunk};
        CHECK_RC(dataset_create(&d, F.s), PT_OK);
        CHECK_RC(data_reader_open(&r, F.s, in_dir(p, dir, "rows.csv"), &ro), PT_OK);
        struct dataset *dst[3] = {d, NULL, NULL};
        int eof = 0, calls = 0;
        while (!eof) {
            int64_t before = d->n;
            CHECK_RC(data_reader_read(r, F.s, dst, &eof), PT_OK);
            assert_true(d->n - before <= chunk);
            assert_true(eof || d->n - before == chunk);
            assert_true(++calls <= 8);
        }
        data_reader_close(r);
        assert_int_equal(d->n, whole->n);
        assert_int_equal(d->bad_rows, whole->bad_rows);
        expect_i32(cat_col(d, F.s, "c"), cat_col(whole, F.s, "c"), whole->n, "c");
        assert_memory_equal(num_col(d, F.s, "x"), num_col(whole, F.s, "x"), (size_t)whole->n * sizeof(float));
        assert_memory_equal(d->y, whole->y, (size_t)whole->n * sizeof(float));
        dataset_free(d);
        d = NULL;
    }
    dataset_free(whole);
    fitted_free(&F);
}

/* The model file keeps vocabularies as JSON, so a fitted value that is not
 * UTF-8 is a bad row (naming file, line and column), never a vocabulary
 * entry; frozen encoding maps it to unknown like any unseen value. */
static void test_not_utf8(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv",
               "c,m,y\n"
               "red,a|b,1\n"
               "r\xe9" "d,a,0\n"      /* line 3: Latin-1 in a categorical column */
               "blue,b|\xc3,1\n"      /* line 4: a truncated sequence in a multi-valued one */
               "gr\xc3\xbcn,a,0\n"    /* line 5: UTF-8 */
               );
    const char *cfg = "data: {train: train.csv}\nfeatures: {categorical: [c], multi: [{name: m, sep: '|'}]}\n"
                      "tasks: [{name: t, label: y}]\n";
    char want[PATH_CAP];
    struct fitted F;
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_EPARSE);
    snprintf(want, sizeof want, "%s/train.csv:3: column 'c': the value is not UTF-8 text", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);

    CHECK_RC(fit_rc(&F, dir, cfg, 2), PT_OK);
    assert_int_equal(F.ds[0]->n, 2);
    assert_int_equal(F.ds[0]->bad_rows, 2);
    assert_int_equal(feat(F.s, "c")->vocab.n, 2);
    assert_int_equal(feat(F.s, "m")->vocab.n, 2);
    char *j = schema_to_json(F.s);
    assert_non_null(j);
    pt_free(j);
    fitted_free(&F);
}

static void test_missing_column(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv", "a,y\n1,1\n");
    struct fitted F;
    CHECK_RC(fit_rc(&F, dir, "data: {train: train.csv}\nfeatures: {categorical: [a, colour]}\ntasks: [{name: t, label: y}]\n", 0),
             PT_ESCHEMA);
    char want[PATH_CAP];
    snprintf(want, sizeof want, "%s/train.csv:1: feature column 'colour' is not in the header row", dir);
    assert_string_equal(pt_errmsg(), want);
    fitted_free(&F);

    /* header: false takes the names from data.format.columns */
    write_text(dir, "nohdr.csv", "1,1\n2,0\n");
    CHECK_RC(fit_rc(&F, dir,
                    "data: {train: nohdr.csv, format: {header: false, columns: [a, y]}}\n"
                    "features: {categorical: [a, b]}\ntasks: [{name: t, label: y}]\n", 0),
             PT_ESCHEMA);
    snprintf(want, sizeof want, "%s/nohdr.csv:1: feature column 'b' is not in data.format.columns", dir);
    assert_string_equal(pt_errmsg(), want);
    fitted_free(&F);

    CHECK_RC(fit_rc(&F, dir,
                    "data: {train: nohdr.csv, format: {header: false, columns: [a, y]}}\n"
                    "features: {categorical: [a]}\ntasks: [{name: t, label: y}]\n", 0),
             PT_OK);
    expect_i32(cat_col(F.ds[0], F.s, "a"), (int32_t[]){1, 2}, 2, "a");
    fitted_free(&F);
}

static void test_empty_files(void **state)
{
    const char *dir = *state;
    const char *cfg = "data: {train: train.csv}\nfeatures: {categorical: [a]}\ntasks: [{name: t, label: y}]\n";
    char want[PATH_CAP];
    struct fitted F;
    write_text(dir, "train.csv", "");
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_EPARSE);
    snprintf(want, sizeof want, "%s/train.csv:1: the file is empty", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);

    write_text(dir, "train.csv", "a,y\n\n");
    CHECK_RC(fit_rc(&F, dir, cfg, 0), PT_EPARSE);
    snprintf(want, sizeof want, "%s/train.csv: no data rows", dir);
    assert_string_equal(pt_errmsg(), want);
    fitted_free(&F);

    CHECK_RC(fit_rc(&F, dir, "data: {train: nothere.csv}\nfeatures: {categorical: [a]}\ntasks: [{name: t, label: y}]\n", 0),
             PT_EIO);
    snprintf(want, sizeof want, "%s/nothere.csv", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);
}

static void test_delimiter(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.tsv", "a\tb\ty\nx,1\t2\t1\n\"q\tq\"\t3\t0\n");
    struct fitted F;
    fit(&F, dir, "data: {train: train.tsv, format: {delimiter: \"\\t\"}}\n"
                 "features: {categorical: [a], numeric: [{name: b, transform: none}]}\ntasks: [{name: t, label: y}]\n");
    assert_int_equal(F.ds[0]->n, 2);
    assert_string_equal(vocab_str(&feat(F.s, "a")->vocab, 0), "x,1");
    assert_string_equal(vocab_str(&feat(F.s, "a")->vocab, 1), "q\tq");
    fitted_free(&F);

    /* a comma file read as TSV: one field per row, and a hint in the message */
    write_text(dir, "comma.csv", "1,2,1\n");
    CHECK_RC(fit_rc(&F, dir,
                    "data: {train: comma.csv, format: {delimiter: \"\\t\", header: false, columns: [a, b, y]}}\n"
                    "features: {categorical: [a, b]}\ntasks: [{name: t, label: y}]\n", 0),
             PT_EPARSE);
    char want[PATH_CAP];
    snprintf(want, sizeof want, "%s/comma.csv:1: expected 3 fields, found 1 (is data.format.delimiter right?)", dir);
    assert_string_equal(pt_errmsg(), want);
    fitted_free(&F);
}

/* ---- fraction split ---- */

static char *split_csv(int n)
{
    size_t cap = (size_t)n * 32 + 32, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    len += (size_t)snprintf(s + len, cap - len, "u,x,z,w,y\n");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "u%d,%d,%d,%s,%d\n", i, i, i, i % 3 ? "b" : "a", i % 2);
    return s;
}

static void test_split(void **state)
{
    const char *dir = *state;
    enum { N = 200 };
    char *text = split_csv(N);
    write_text(dir, "train.csv", text);
    free(text);
    const char *cfg =
        "data: {train: train.csv, split: {valid: 0.25, test: 0.125, seed: 7}}\n"
        "features:\n"
        "  categorical: [u, {name: w, min_count: 1}]\n"
        "  numeric: [{name: x, transform: none}, {name: z, transform: standardize}]\n"
        "tasks: [{name: t, label: y}]\n";
    struct fitted F, G;
    fit(&F, dir, cfg);

    /* the routing: one uniform draw per good row from the split seed */
    struct rng g;
    rng_seed(&g, 7);
    int64_t cnt[3] = {0, 0, 0};
    double sum = 0;
    for (int i = 0; i < N; i++) {
        double u = rng_uniform(&g);
        int k = u < 0.25 ? 1 : u < 0.375 ? 2 : 0;
        float *x = num_col(F.ds[k], F.s, "x");
        int32_t *uid = cat_col(F.ds[k], F.s, "u");
        assert_true(cnt[k] < F.ds[k]->n);
        if (x[cnt[k]] != (float)i) fail_msg("row %d: expected in set %d at %lld, found x=%g", i, k, (long long)cnt[k], x[cnt[k]]);
        /* vocabulary from train rows only: valid/test values are unknown */
        assert_int_equal(uid[cnt[k]], k == 0 ? (int32_t)cnt[0] + 1 : 0);
        assert_true(F.ds[k]->y[cnt[k]] == (float)(i % 2));
        if (k == 0) sum += i;
        cnt[k]++;
    }
    for (int k = 0; k < 3; k++) assert_int_equal(F.ds[k]->n, cnt[k]);
    assert_true(cnt[0] > 100 && cnt[1] > 25 && cnt[2] > 10);
    assert_int_equal(feat(F.s, "u")->rows, cnt[0] + 1);
    /* statistics from train rows only */
    double mean = sum / (double)cnt[0];
    assert_true(fabs(feat(F.s, "z")->mean - mean) < 1e-9);
    assert_true(fabs(feat(F.s, "x")->mean - mean) < 1e-9);

    /* the same seed routes the same way */
    fit(&G, dir, cfg);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(G.ds[k]->n, F.ds[k]->n);
        assert_memory_equal(num_col(G.ds[k], G.s, "x"), num_col(F.ds[k], F.s, "x"), (size_t)F.ds[k]->n * sizeof(float));
        assert_memory_equal(num_col(G.ds[k], G.s, "z"), num_col(F.ds[k], F.s, "z"), (size_t)F.ds[k]->n * sizeof(float));
    }
    fitted_free(&G);

    /* another seed, another routing */
    fit(&G, dir,
        "data: {train: train.csv, split: {valid: 0.25, test: 0.125, seed: 8}}\n"
        "features:\n"
        "  categorical: [u, {name: w, min_count: 1}]\n"
        "  numeric: [{name: x, transform: none}, {name: z, transform: standardize}]\n"
        "tasks: [{name: t, label: y}]\n");
    int differs = G.ds[0]->n != F.ds[0]->n;
    for (int64_t i = 0; !differs && i < F.ds[0]->n; i++)
        differs = num_col(G.ds[0], G.s, "x")[i] != num_col(F.ds[0], F.s, "x")[i];
    assert_true(differs);
    fitted_free(&G);
    fitted_free(&F);
}

static void test_split_min_count_train_only(void **state)
{
    const char *dir = *state;
    /* Rows whose value is "v" go wherever the split sends them; min_count 2
     * must count train occurrences only. Find the routing first. */
    enum { N = 40 };
    struct rng g;
    rng_seed(&g, 3);
    int route[N];
    for (int i = 0; i < N; i++) {
        double u = rng_uniform(&g);
        route[i] = u < 0.5 ? 1 : 0;
    }
    /* "v" once in train and on every valid row; "w" on two train rows */
    int vtrain = 0, wtrain = 0;
    char text[4096];
    size_t len = (size_t)snprintf(text, sizeof text, "c,y\n");
    for (int i = 0; i < N; i++) {
        const char *c = "o";
        if (route[i] == 1) c = "v";
        else if (!vtrain) c = "v", vtrain = 1;
        else if (wtrain < 2) c = "w", wtrain++;
        len += (size_t)snprintf(text + len, sizeof text - len, "%s,%d\n", c, i % 2);
    }
    assert_int_equal(wtrain, 2);
    write_text(dir, "train.csv", text);
    struct fitted F;
    fit(&F, dir,
        "data: {train: train.csv, split: {valid: 0.5, seed: 3}}\n"
        "features: {categorical: [{name: c, min_count: 2}]}\n"
        "tasks: [{name: t, label: y}]\n");
    struct feat_state *f = feat(F.s, "c");
    assert_true(F.ds[1]->n > 5);
    assert_int_equal(vocab_find(&f->vocab, "v", 1), -1);
    assert_true(vocab_find(&f->vocab, "w", 1) >= 0);
    assert_true(vocab_find(&f->vocab, "o", 1) >= 0);
    for (int64_t i = 0; i < F.ds[1]->n; i++) assert_int_equal(cat_col(F.ds[1], F.s, "c")[i], 0);
    fitted_free(&F);
}

/* ---- JSON round trip and gzip ---- */

static const char *const RT_CFG =
    "data: {train: train.csv, keys: [id]}\n"
    "features:\n"
    "  categorical: [c, {name: h, hash_buckets: 5}]\n"
    "  numeric: [{name: x, impute: mean}, {name: b, transform: bucketize, buckets: 3, impute: 0.5}]\n"
    "  multi: [{name: m, sep: ';', min_count: 2}]\n"
    "tasks: [{name: t, label: y}, {name: r, label: r, type: regression}]\n";

static void write_rt_files(const char *dir)
{
    write_text(dir, "train.csv",
               "id,c,h,x,b,m,y,r\n"
               "1,a,p,1,10,s;t,1,0.5\n"
               "2,b,q,,20,t,0,1.5\n"
               "3,\"a,b\",p,4,,s;;u,1,\n"
               "4,\xc3\xa9t\xc3\xa9,r,2.5,40,t;s,,2\n"
               "5,a,s,3,50,,0,-1\n"
               "6,\"q\"\"uote\",t,-1,60,u,1,3\n");
    write_text(dir, "new.csv",
               "id,c,h,x,b,m,y,r\n"
               "7,\xc3\xa9t\xc3\xa9,p,7,5,s;u;zz,1,0\n"
               "8,zz,zz,,,t,0,\n"
               "9,\"a,b\",q,2,35,,1,1\n"
               "10,\"q\"\"uote\",s,0,1000,t;t,0,2\n");
}

static void expect_same_data(const struct dataset *a, const struct dataset *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->ncat, b->ncat);
    assert_int_equal(a->nnum, b->nnum);
    assert_int_equal(a->nmulti, b->nmulti);
    for (int j = 0; j < a->ncat; j++) assert_memory_equal(a->cat[j], b->cat[j], (size_t)a->n * sizeof(int32_t));
    for (int j = 0; j < a->nnum; j++) assert_memory_equal(a->num[j], b->num[j], (size_t)a->n * sizeof(float));
    for (int j = 0; j < a->nmulti; j++) {
        assert_int_equal(a->mlen[j], b->mlen[j]);
        assert_memory_equal(a->moff[j], b->moff[j], (size_t)(a->n + 1) * sizeof(int32_t));
        if (a->mlen[j]) assert_memory_equal(a->mids[j], b->mids[j], (size_t)a->mlen[j] * sizeof(int32_t));
    }
    assert_memory_equal(a->y, b->y, (size_t)a->n * (size_t)a->ntasks * sizeof(float));
    assert_int_equal(a->bad_rows, b->bad_rows);
    if (a->keys || b->keys) {
        assert_non_null(a->keys);
        assert_non_null(b->keys);
        for (int64_t i = 0; i < a->n; i++) assert_string_equal(a->keys[i], b->keys[i]);
    }
}

static void test_json_round_trip(void **state)
{
    const char *dir = *state;
    write_rt_files(dir);
    struct fitted F;
    fit(&F, dir, RT_CFG);
    struct dataset *d1 = encode(F.s, dir, "new.csv");
    /* spot checks of the frozen encoding */
    expect_i32(cat_col(d1, F.s, "c"), (int32_t[]){4, 0, 3, 5}, 4, "c");
    expect_i32(cat_col(d1, F.s, "b"), (int32_t[]){0, 0, 1, 2}, 4, "b");
    char *j1 = schema_to_json(F.s);
    assert_non_null(j1);

    struct schema *s2 = NULL;
    CHECK_RC(schema_create(&s2, F.cfg), PT_OK);
    CHECK_RC(schema_from_json(s2, j1, "mem.json"), PT_OK);
    assert_true(s2->fitted);
    struct dataset *d2 = encode(s2, dir, "new.csv");
    expect_same_data(d1, d2);
    char *j2 = schema_to_json(s2);
    assert_non_null(j2);
    assert_string_equal(j1, j2);

    /* a schema from another config is refused */
    struct pt_config *other = NULL;
    struct schema *s3 = NULL;
    CHECK_RC(parse_cfg(dir, "data: {train: train.csv}\nfeatures: {categorical: [c, h, x, b, zz]}\ntasks: [{name: t, label: y}]\n", &other), PT_OK);
    CHECK_RC(schema_create(&s3, other), PT_OK);
    CHECK_RC(schema_from_json(s3, j1, "mem.json"), PT_ESCHEMA);
    ASSERT_MSG_HAS("mem.json");
    schema_free(s3);
    s3 = NULL;
    CHECK_RC(schema_create(&s3, F.cfg), PT_OK);
    CHECK_RC(schema_from_json(s3, "{\"features\": [", "mem.json"), PT_EFORMAT);
    schema_free(s3);
    pt_config_free(other);

    pt_free(j1);
    pt_free(j2);
    dataset_free(d1);
    dataset_free(d2);
    schema_free(s2);
    fitted_free(&F);
}

static void test_gzip(void **state)
{
    const char *dir = *state;
    write_rt_files(dir);
    char p[PATH_CAP], q[PATH_CAP];
    /* new.csv.gz with the same bytes as new.csv */
    FILE *f = fopen(in_dir(p, dir, "new.csv"), "rb");
    assert_non_null(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    gzFile gz = gzopen(in_dir(q, dir, "new.csv.gz"), "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, buf, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);

    struct fitted F;
    fit(&F, dir, RT_CFG);
    struct dataset *a = encode(F.s, dir, "new.csv"), *b = encode(F.s, dir, "new.csv.gz");
    assert_int_equal(a->n, 4);
    expect_same_data(a, b);
    dataset_free(a);
    dataset_free(b);
    fitted_free(&F);

    /* a gzip train file fits the same schema */
    f = fopen(in_dir(p, dir, "train.csv"), "rb");
    assert_non_null(f);
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    gz = gzopen(in_dir(q, dir, "train.csv.gz"), "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, buf, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
    struct fitted G;
    fit(&F, dir, RT_CFG);
    char *cfg_gz = strdup(RT_CFG);
    assert_non_null(cfg_gz);
    char *at = strstr(cfg_gz, "train.csv");
    char *cfg2 = malloc(strlen(RT_CFG) + 8);
    assert_non_null(cfg2);
    sprintf(cfg2, "%.*strain.csv.gz%s", (int)(at - cfg_gz), cfg_gz, at + strlen("train.csv"));
    fit(&G, dir, cfg2);
    char *j1 = schema_to_json(F.s), *j2 = schema_to_json(G.s);
    assert_string_equal(j1, j2);
    expect_same_data(F.ds[0], G.ds[0]);
    pt_free(j1);
    pt_free(j2);
    free(cfg_gz);
    free(cfg2);
    fitted_free(&G);
    fitted_free(&F);
}

/* ---- key columns (predict output) ---- */

static void test_keys(void **state)
{
    const char *dir = *state;
    write_text(dir, "train.csv", "id,c,y\n1,a,1\n2,b,0\n");
    write_text(dir, "new.csv", "c,id,y\nb,7,1\n\"x,y\",\"say \"\"hi\"\"\",0\nz,,1\n");
    struct fitted F;
    fit(&F, dir, "data: {train: train.csv, keys: [id, c]}\nfeatures: {categorical: [c]}\ntasks: [{name: t, label: y}]\n");
    struct data_reader *r = NULL;
    struct dataset *d = NULL;
    char p[PATH_CAP];
    struct read_opts ro = {.flags = READ_KEYS};
    CHECK_RC(dataset_create(&d, F.s), PT_OK);
    CHECK_RC(data_reader_open(&r, F.s, in_dir(p, dir, "new.csv"), &ro), PT_OK);
    assert_string_equal(data_reader_key_header(r), "id,c");
    struct dataset *dst[3] = {d, NULL, NULL};
    int eof = 0;
    CHECK_RC(data_reader_read(r, F.s, dst, &eof), PT_OK);
    assert_int_equal(eof, 1);
    assert_int_equal(d->n, 3);
    assert_string_equal(d->keys[0], "7,b");
    assert_string_equal(d->keys[1], "\"say \"\"hi\"\"\",\"x,y\"");
    assert_string_equal(d->keys[2], ",z");
    expect_i32(cat_col(d, F.s, "c"), (int32_t[]){2, 0, 0}, 3, "c");
    data_reader_close(r);
    dataset_free(d);
    fitted_free(&F);

    /* one key column; a key column missing from the file */
    fit(&F, dir, "data: {train: train.csv, keys: [nope]}\nfeatures: {categorical: [c]}\ntasks: [{name: t, label: y}]\n");
    CHECK_RC(data_reader_open(&r, F.s, in_dir(p, dir, "new.csv"), &ro), PT_ESCHEMA);
    assert_null(r);
    char want[PATH_CAP];
    snprintf(want, sizeof want, "%s/new.csv:1: key column 'nope'", dir);
    ASSERT_MSG_HAS(want);
    fitted_free(&F);
}

/* ---- allocation failures over the whole fit path ---- */

/* Config, fit with a split, JSON out and back, then a frozen read with keys
 * and a group column. *out gets the final data set on success. */
static int whole_path(const char *dir, struct dataset **out)
{
    struct fitted F;
    struct schema *s2 = NULL;
    struct dataset *d = NULL;
    char *j = NULL;
    char p[PATH_CAP];
    *out = NULL;
    int rc = fit_rc(&F, dir,
                    "data: {train: train.csv, keys: [id, c], split: {valid: 0.3, test: 0.2, seed: 5}}\n"
                    "features:\n"
                    "  categorical: [c, {name: h, hash_buckets: 5}]\n"
                    "  numeric: [{name: x, impute: mean}, {name: b, transform: bucketize, buckets: 3, impute: 0.5}]\n"
                    "  multi: [{name: m, sep: ';', min_count: 1}]\n"
                    "tasks: [{name: t, label: y}, {name: r, label: r, type: regression}]\n",
                    0);
    if (rc) goto done;
    if (!(j = schema_to_json(F.s))) { rc = PT_ENOMEM; goto done; }
    if ((rc = schema_create(&s2, F.cfg))) goto done;
    if ((rc = schema_from_json(s2, j, "mem.json"))) goto done;
    if ((rc = dataset_create(&d, s2))) goto done;
    struct read_opts ro = {.flags = READ_LABELS | READ_KEYS, .group_by = "h", .max_bad_rows = 1};
    struct dataset *dst[3] = {d, NULL, NULL};
    if ((rc = data_load(s2, in_dir(p, dir, "new.csv"), &ro, dst))) goto done;
    *out = d;
    d = NULL;
done:
    dataset_free(d);
    schema_free(s2);
    pt_free(j);
    fitted_free(&F);
    return rc;
}

static void test_alloc_failures(void **state)
{
    const char *dir = *state;
    /* a bigger vocabulary and enough rows that buffers grow more than once */
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "id,c,h,x,b,m,y,r\n");
    for (int i = 0; i < 5000; i++)
        len += (size_t)snprintf(text + len, cap - len, "%d,c%d,h%d,%s,%d,s%d;t%d,%d,%d.5\n", i, i % 300, i % 7,
                                i % 11 ? "1.25" : "", i % 50, i % 90, i % 3, i % 2, i % 5);
    write_text(dir, "train.csv", text);
    free(text);
    write_text(dir, "new.csv",
               "id,c,h,x,b,m,y,r\n"
               "a,c1,h1,7,5,s1;t2;zz,1,0\n"
               "b,bad,row\n"
               "c,\"c,2\",h9,,,t1,0,\n");
    struct dataset *ref = NULL;
    CHECK_RC(whole_path(dir, &ref), PT_OK);
    assert_int_equal(ref->n, 2);
    assert_int_equal(ref->bad_rows, 1);
    assert_string_equal(ref->keys[1], "c,\"c,2\"");

    long k, fails = 0;
    for (k = 1;; k++) {
        struct dataset *d = NULL;
        pt_error_clear();
        pt_alloc_fail_at(k);
        int rc = whole_path(dir, &d);
        long used = pt_alloc_count();
        pt_alloc_fail_at(0);
        if (rc != PT_OK && rc != PT_ENOMEM)
            fail_msg("allocation %ld failing: rc %d (%s)", k, rc, pt_errmsg());
        if (rc == PT_OK) {
            assert_non_null(d);
            expect_same_data(ref, d);
            dataset_free(d);
        } else {
            assert_null(d);
            ASSERT_MSG_HAS("out of memory");
            fails++;
        }
        if (used < k) {
            assert_int_equal(rc, PT_OK);
            break;
        }
    }
    assert_true(k > 20);
    assert_true(fails > 20);
    dataset_free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vocab, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hashing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numeric_standardize_impute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numeric_constant_std, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bucketize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labels_optional, setup, teardown),
        cmocka_unit_test_setup_teardown(test_field_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numeric_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numeric_like_strtod, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_bad_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delimiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_min_count_train_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
