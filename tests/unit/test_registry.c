/* test_registry.c: the model registry (src/store/registry.c) over a real
 * SQLite file in a temp folder. Model files are tiny: recommenders trained in
 * milliseconds from a 30-user CSV (popularity and item2item give different
 * bytes) and one logistic-regression multi-task model. Covers: WAL mode and
 * the schema version (a newer one is refused), import (metrics, SHA-256,
 * absolute path, first version active; corrupted, foreign and missing files
 * refused and nothing recorded), activate (a file changed since import
 * refused), rollback through the activation history, splits (determinism
 * across handles, proportions over 10k users, bad splits), keys (create,
 * check, wrong, malformed, revoke, list without secrets), events and offsets
 * (one transaction per append, order, isolation by model, reopening), the
 * audit log (one row per admin action, none for a refused one), handles shared
 * by threads and one per thread, and failed allocations. */
#define _XOPEN_SOURCE 700
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include "tmpdir.h"

#include "polytask.h"
#include "util/util.h"

static char dir[128];
static char rec_a[256], rec_b[256], rec_c[256], mtl[256];

static void path_in(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    assert_int_equal(fclose(b), 0);
}

static void flip_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, at, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(ch ^ 0x20, f);
    assert_int_equal(fclose(f), 0);
}

/* A recommender of kind trained on 30 users x 3 purchases, saved at out. */
static void make_rec(const char *kind, const char *out)
{
    char csv[256], yaml[256], text[512];
    path_in(csv, sizeof csv, "in.csv");
    path_in(yaml, sizeof yaml, "rec.yaml");
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fprintf(f, "user_id,item_id,timestamp\n");
    for (int u = 0; u < 30; u++)
        for (int k = 0; k < 3; k++) fprintf(f, "U%d,I%d,%d\n", u, (u % 3) * 4 + (u + k) % 4, 100 * u + k);
    assert_int_equal(fclose(f), 0);
    snprintf(text, sizeof text,
             "recommend:\n  interactions:\n    path: in.csv\n    columns: {user: user_id, item: item_id, time: timestamp}\n"
             "  model: %s\n  dim: 4\n  epochs: 1\n  neighbours: 3\n  eval: {k: 3}\n",
             kind);
    write_file(yaml, text);
    pt_config *cfg = NULL;
    pt_recommender *r = NULL;
    if (pt_config_load(yaml, &cfg)) fail_msg("config: %s", pt_errmsg());
    if (pt_rec_train(cfg, NULL, &r)) fail_msg("rec train: %s", pt_errmsg());
    assert_int_equal(pt_rec_save(r, out), PT_OK);
    pt_rec_free(r);
    pt_config_free(cfg);
}

/* A logistic regression on 8 rows, one epoch, saved at out. */
static void make_mtl(const char *out)
{
    char csv[256], yaml[256], text[512];
    path_in(csv, sizeof csv, "mtl.csv");
    path_in(yaml, sizeof yaml, "mtl.yaml");
    write_file(csv, "c,n,y\nx,1.0,1\ny,2.0,0\nz,3.0,1\nx,0.5,0\ny,1.5,1\nz,2.5,0\nx,4.0,1\ny,0.0,0\n");
    snprintf(text, sizeof text,
             "data: {train: mtl.csv, valid: mtl.csv}\n"
             "features: {categorical: [{name: c, dim: 3}], numeric: [n]}\n"
             "tasks:\n  - {name: click, label: y}\n"
             "model: {kind: lr}\n"
             "train: {epochs: 1, batch: 4}\n");
    write_file(yaml, text);
    pt_config *cfg = NULL;
    pt_model *m = NULL;
    if (pt_config_load(yaml, &cfg)) fail_msg("config: %s", pt_errmsg());
    if (pt_train(cfg, NULL, &m)) fail_msg("train: %s", pt_errmsg());
    assert_int_equal(pt_model_save(m, out), PT_OK);
    pt_model_free(m);
    pt_config_free(cfg);
}

static int setup(void **state)
{
    (void)state;
    if (tmpdir_make(dir, sizeof dir, "registry")) return -1;
    path_in(rec_a, sizeof rec_a, "a.ptr");
    path_in(rec_b, sizeof rec_b, "b.ptr");
    path_in(rec_c, sizeof rec_c, "c.ptr");
    path_in(mtl, sizeof mtl, "m.ptm");
    make_rec("popularity", rec_a);
    make_rec("item2item", rec_b);
    make_rec("bpr", rec_c);
    make_mtl(mtl);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tmpdir_remove(dir);
    return 0;
}

/* A fresh database file per test. */
static pt_registry *fresh(const char *name)
{
    char p[256];
    path_in(p, sizeof p, name);
    unlink(p);
    pt_registry *r = NULL;
    if (pt_registry_open(p, &r)) fail_msg("open: %s", pt_errmsg());
    return r;
}

static json_t *parse(char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    if (!j) fail_msg("not JSON: %s", text);
    pt_string_free(text);
    return j;
}

static json_t *list_model(pt_registry *r, const char *name)
{
    char *s = NULL;
    if (pt_registry_list(r, name, &s)) fail_msg("list: %s", pt_errmsg());
    json_t *j = parse(s);
    json_t *m = json_incref(json_array_get(json_object_get(j, "models"), 0));
    json_decref(j);
    assert_non_null(m);
    return m;
}

static int active_of(pt_registry *r, const char *name)
{
    json_t *m = list_model(r, name);
    int v = (int)json_integer_value(json_object_get(m, "active"));
    json_decref(m);
    return v;
}

static void expect_msg(int rc, int want, const char *needle)
{
    if (rc != want) fail_msg("rc %d (%s), want %d", rc, pt_errmsg(), want);
    if (needle && !strstr(pt_errmsg(), needle)) fail_msg("message '%s' lacks '%s'", pt_errmsg(), needle);
}

static long audit_count(pt_registry *r)
{
    char *s = NULL;
    assert_int_equal(pt_registry_audit(r, 0, &s), PT_OK);
    json_t *j = parse(s);
    long n = (long)json_array_size(j);
    json_decref(j);
    return n;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_open_and_schema(void **state)
{
    (void)state;
    char p[256];
    path_in(p, sizeof p, "schema.db");
    unlink(p);
    pt_registry *r = NULL;
    assert_int_equal(pt_registry_open(p, &r), PT_OK);
    pt_registry_close(r);
    /* a second open of the same file finds its tables */
    assert_int_equal(pt_registry_open(p, &r), PT_OK);
    pt_registry_close(r);
    pt_registry_close(NULL);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
    /* a database of version 1 (no raw events) gains their tables on open */
    assert_int_equal(sqlite3_exec(db, "DROP TABLE raw_events; DROP TABLE raw_offsets; PRAGMA user_version = 1", NULL, NULL,
                                  NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(pt_registry_open(p, &r), PT_OK);
    int64_t pend = -1;
    assert_int_equal(pt_registry_events_pending(r, "any", PT_EVENTS_RAW, 0, &pend), PT_OK);
    assert_int_equal(pend, 0);
    pt_registry_close(r);
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
    /* a database written by a later polytask */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    expect_msg(pt_registry_open(p, &r), PT_EVERSION, "schema version 99 is newer");
    assert_null(r);
    /* not a database at all */
    path_in(p, sizeof p, "junk.db");
    write_file(p, "this is not an SQLite database, it is much longer than a header would be ......"
                  "..............................................................................");
    expect_msg(pt_registry_open(p, &r), PT_EDB, "database error");
    assert_null(r);
    expect_msg(pt_registry_open("", &r), PT_EINVAL, NULL);
}

static void test_import_activate_rollback(void **state)
{
    (void)state;
    pt_registry *r = fresh("life.db");
    int v = -1;
    assert_int_equal(pt_registry_import(r, "shop", rec_a, 0, "alice", &v), PT_OK);
    assert_int_equal(v, 1);
    assert_int_equal(active_of(r, "shop"), 1); /* the first version becomes active */
    assert_int_equal(pt_registry_import(r, "shop", rec_b, 1, "bob", &v), PT_OK);
    assert_int_equal(v, 2);
    assert_int_equal(active_of(r, "shop"), 1); /* later ones do not */
    assert_int_equal(pt_registry_import(r, "shop", rec_c, 2, NULL, &v), PT_OK);
    assert_int_equal(v, 3);
    expect_msg(pt_registry_import(r, "shop", rec_c, 7, NULL, &v), PT_ENOTFOUND, "no version 7");
    assert_int_equal(v, 0);
    /* a multi-task model in a second model; its metrics come from the file */
    assert_int_equal(pt_registry_import(r, "ranker", mtl, 0, "ci", &v), PT_OK);
    assert_int_equal(v, 1);
    json_t *m = list_model(r, "ranker");
    json_t *ver = json_array_get(json_object_get(m, "versions"), 0);
    assert_string_equal(json_string_value(json_object_get(ver, "kind")), "model");
    assert_true(json_is_object(json_object_get(ver, "metrics")));
    assert_non_null(json_object_get(json_object_get(ver, "metrics"), "click"));
    json_decref(m);

    m = list_model(r, "shop");
    assert_string_equal(json_string_value(json_object_get(m, "name")), "shop");
    json_t *vs = json_object_get(m, "versions");
    assert_int_equal(json_array_size(vs), 3);
    ver = json_array_get(vs, 1);
    assert_int_equal(json_integer_value(json_object_get(ver, "version")), 2);
    assert_int_equal(json_integer_value(json_object_get(ver, "parent")), 1);
    assert_true(json_is_null(json_object_get(json_array_get(vs, 0), "parent")));
    assert_string_equal(json_string_value(json_object_get(ver, "created_by")), "bob");
    assert_string_equal(json_string_value(json_object_get(json_array_get(vs, 2), "created_by")), "unknown");
    assert_string_equal(json_string_value(json_object_get(ver, "kind")), "recommender");
    assert_int_equal(strlen(json_string_value(json_object_get(ver, "sha256"))), 64);
    assert_int_equal(json_string_value(json_object_get(ver, "path"))[0], '/');
    assert_true(json_is_object(json_object_get(ver, "metrics")));
    assert_non_null(json_object_get(json_object_get(ver, "metrics"), "model")); /* the report's eval part */
    assert_true(json_integer_value(json_object_get(ver, "created_unix")) > 1600000000);
    json_decref(m);
    /* every model when name is NULL */
    char *s = NULL;
    assert_int_equal(pt_registry_list(r, NULL, &s), PT_OK);
    json_t *all = parse(s);
    assert_int_equal(json_array_size(json_object_get(all, "models")), 2);
    json_decref(all);
    expect_msg(pt_registry_list(r, "nope", &s), PT_ENOTFOUND, "no model 'nope'");
    assert_null(s);

    /* activation history: 1 -> 2 -> 3, then back to 2 and 1, and no further */
    assert_int_equal(pt_registry_activate(r, "shop", 2, "alice"), PT_OK);
    assert_int_equal(pt_registry_activate(r, "shop", 3, "alice"), PT_OK);
    assert_int_equal(pt_registry_activate(r, "shop", 3, "alice"), PT_OK); /* no-op: history unchanged */
    assert_int_equal(active_of(r, "shop"), 3);
    m = list_model(r, "shop");
    assert_int_equal(json_integer_value(json_object_get(m, "previous")), 2);
    json_decref(m);
    assert_int_equal(pt_registry_rollback(r, "shop", "alice", &v), PT_OK);
    assert_int_equal(v, 2);
    assert_int_equal(pt_registry_rollback(r, "shop", "alice", &v), PT_OK);
    assert_int_equal(v, 1);
    assert_int_equal(active_of(r, "shop"), 1);
    expect_msg(pt_registry_rollback(r, "shop", "alice", &v), PT_ENOTFOUND, "no earlier active version");
    /* a new activation after rollbacks goes on top of what is active */
    assert_int_equal(pt_registry_activate(r, "shop", 3, "alice"), PT_OK);
    assert_int_equal(pt_registry_rollback(r, "shop", NULL, &v), PT_OK);
    assert_int_equal(v, 1);
    expect_msg(pt_registry_activate(r, "shop", 9, "alice"), PT_ENOTFOUND, "no version 9");
    expect_msg(pt_registry_activate(r, "other", 1, "alice"), PT_ENOTFOUND, "no model 'other'");
    expect_msg(pt_registry_rollback(r, "other", "alice", NULL), PT_ENOTFOUND, "no model 'other'");
    expect_msg(pt_registry_import(r, "bad name", rec_a, 0, NULL, NULL), PT_EINVAL, "model name");
    expect_msg(pt_registry_import(r, "", rec_a, 0, NULL, NULL), PT_EINVAL, "model name");

    char *path = NULL;
    assert_int_equal(pt_registry_resolve(r, "shop", NULL, &path, &v), PT_OK);
    assert_int_equal(v, 1);
    char *want = realpath(rec_a, NULL);
    assert_string_equal(path, want);
    free(want);
    pt_string_free(path);
    expect_msg(pt_registry_resolve(r, "nope", "u", &path, &v), PT_ENOTFOUND, NULL);
    assert_null(path);
    pt_registry_close(r);
}

static void test_import_refused(void **state)
{
    (void)state;
    pt_registry *r = fresh("refused.db");
    char bad[256], txt[256];
    path_in(bad, sizeof bad, "corrupt.ptr");
    copy_file(rec_a, bad);
    flip_byte(bad, 100);
    int v = -1;
    int rc = pt_registry_import(r, "shop", bad, 0, "alice", &v);
    assert_true(rc < 0);
    assert_int_equal(v, 0);
    if (!strstr(pt_errmsg(), "corrupt.ptr")) fail_msg("message '%s' lacks the file", pt_errmsg());
    path_in(txt, sizeof txt, "notes.txt");
    write_file(txt, "hello\n");
    assert_true(pt_registry_import(r, "shop", txt, 0, "alice", &v) < 0);
    path_in(txt, sizeof txt, "missing.ptr");
    expect_msg(pt_registry_import(r, "shop", txt, 0, "alice", &v), PT_EIO, "missing.ptr");
    /* nothing was recorded, not even the model or an audit row */
    char *s = NULL;
    expect_msg(pt_registry_list(r, "shop", &s), PT_ENOTFOUND, NULL);
    assert_int_equal(audit_count(r), 0);
    pt_registry_close(r);
}

static void test_changed_file(void **state)
{
    (void)state;
    pt_registry *r = fresh("changed.db");
    char moving[256];
    path_in(moving, sizeof moving, "moving.ptr");
    copy_file(rec_b, moving);
    assert_int_equal(pt_registry_import(r, "shop", rec_a, 0, "a", NULL), PT_OK);
    assert_int_equal(pt_registry_import(r, "shop", moving, 0, "a", NULL), PT_OK);
    long audits = audit_count(r);
    copy_file(rec_c, moving); /* a valid model file, but not the imported one */
    expect_msg(pt_registry_activate(r, "shop", 2, "a"), PT_ECHECKSUM, "model file changed since import");
    int vs[] = {1, 2};
    double ws[] = {1, 1};
    expect_msg(pt_registry_split(r, "shop", vs, ws, 2, "a"), PT_ECHECKSUM, "changed since import");
    assert_int_equal(active_of(r, "shop"), 1);
    assert_int_equal(audit_count(r), audits); /* refused actions leave no audit row */
    /* restored bytes are accepted again; a rollback onto a changed file is refused */
    copy_file(rec_b, moving);
    assert_int_equal(pt_registry_activate(r, "shop", 2, "a"), PT_OK);
    assert_int_equal(pt_registry_activate(r, "shop", 1, "a"), PT_OK);
    copy_file(rec_c, moving);
    expect_msg(pt_registry_rollback(r, "shop", "a", NULL), PT_ECHECKSUM, "changed since import");
    assert_int_equal(active_of(r, "shop"), 1);
    unlink(moving);
    expect_msg(pt_registry_activate(r, "shop", 2, "a"), PT_EIO, "moving.ptr");
    pt_registry_close(r);
}

static void test_split(void **state)
{
    (void)state;
    pt_registry *r = fresh("split.db");
    assert_int_equal(pt_registry_import(r, "shop", rec_a, 0, "a", NULL), PT_OK);
    assert_int_equal(pt_registry_import(r, "shop", rec_b, 1, "a", NULL), PT_OK);
    assert_int_equal(pt_registry_import(r, "shop", rec_c, 1, "a", NULL), PT_OK);
    int vs[] = {1, 2, 3};
    double ws[] = {70, 30, 0};
    assert_int_equal(pt_registry_split(r, "shop", vs, ws, 3, "a"), PT_OK);
    json_t *m = list_model(r, "shop");
    json_t *sp = json_object_get(m, "split");
    assert_int_equal(json_array_size(sp), 3);
    assert_true(json_number_value(json_object_get(json_array_get(sp, 0), "weight")) == 70.0);
    json_decref(m);

    char p[256];
    path_in(p, sizeof p, "split.db");
    pt_registry *r2 = NULL;
    assert_int_equal(pt_registry_open(p, &r2), PT_OK);
    int count[4] = {0};
    for (int u = 0; u < 10000; u++) {
        char user[32], *path = NULL, *path2 = NULL;
        int v = 0, v2 = 0;
        snprintf(user, sizeof user, "user-%d", u);
        assert_int_equal(pt_registry_resolve(r, "shop", user, &path, &v), PT_OK);
        assert_true(v >= 1 && v <= 3);
        count[v]++;
        if (u % 10 == 0) { /* another handle (another process would do the same) agrees */
            assert_int_equal(pt_registry_resolve(r2, "shop", user, &path2, &v2), PT_OK);
            assert_int_equal(v, v2);
            assert_string_equal(path, path2);
            pt_string_free(path2);
        }
        pt_string_free(path);
    }
    pt_registry_close(r2);
    /* 70/30 within 2 points (sd of the share is 0.46 points); weight 0 never served */
    if (count[1] < 6800 || count[1] > 7200) fail_msg("version 1 served %d of 10000, want ~7000", count[1]);
    assert_int_equal(count[3], 0);
    assert_int_equal(count[1] + count[2], 10000);
    int v = 0;
    char *path = NULL;
    assert_int_equal(pt_registry_resolve(r, "shop", NULL, &path, &v), PT_OK); /* no user: active */
    assert_int_equal(v, 1);
    pt_string_free(path);

    /* bad splits change nothing */
    double zero[] = {0, 0}, neg[] = {1, -1}, nan_w[] = {1, 0.0 / 0.0};
    int dup[] = {1, 1}, unknown[] = {1, 9};
    expect_msg(pt_registry_split(r, "shop", vs, zero, 2, "a"), PT_EINVAL, "sum");
    expect_msg(pt_registry_split(r, "shop", vs, neg, 2, "a"), PT_EINVAL, ">= 0");
    expect_msg(pt_registry_split(r, "shop", vs, nan_w, 2, "a"), PT_EINVAL, "finite");
    expect_msg(pt_registry_split(r, "shop", dup, ws, 2, "a"), PT_EINVAL, "twice");
    expect_msg(pt_registry_split(r, "shop", unknown, ws, 2, "a"), PT_ENOTFOUND, "no version 9");
    expect_msg(pt_registry_split(r, "nope", vs, ws, 2, "a"), PT_ENOTFOUND, "no model");
    expect_msg(pt_registry_split(r, "shop", vs, ws, -1, "a"), PT_EINVAL, NULL);
    m = list_model(r, "shop");
    assert_int_equal(json_array_size(json_object_get(m, "split")), 3);
    json_decref(m);

    /* a 100% split serves one version to everyone; n = 0 clears */
    int only[] = {2};
    double one[] = {1};
    assert_int_equal(pt_registry_split(r, "shop", only, one, 1, "a"), PT_OK);
    assert_int_equal(pt_registry_resolve(r, "shop", "anyone", &path, &v), PT_OK);
    assert_int_equal(v, 2);
    pt_string_free(path);
    assert_int_equal(pt_registry_split(r, "shop", NULL, NULL, 0, "a"), PT_OK);
    assert_int_equal(pt_registry_resolve(r, "shop", "anyone", &path, &v), PT_OK);
    assert_int_equal(v, 1);
    pt_string_free(path);
    pt_registry_close(r);
}

static int is_hex(const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (!strchr("0123456789abcdef", s[k]) || !s[k]) return 0;
    return 1;
}

static void test_keys(void **state)
{
    (void)state;
    pt_registry *r = fresh("keys.db");
    char *kr = NULL, *ka = NULL, *s = NULL;
    assert_int_equal(pt_registry_key_create(r, "reader", PT_SCOPE_READ, "ops", &kr), PT_OK);
    assert_int_equal(pt_registry_key_create(r, "admin-1", PT_SCOPE_ADMIN, "ops", &ka), PT_OK);
    assert_int_equal(strlen(kr), 3 + 64);
    assert_memory_equal(kr, "pt_", 3);
    assert_true(is_hex(kr + 3, 64));
    assert_string_not_equal(kr, ka);
    int scope = 0;
    assert_int_equal(pt_registry_key_check(r, kr, &scope), PT_OK);
    assert_int_equal(scope, PT_SCOPE_READ);
    assert_int_equal(pt_registry_key_check(r, ka, &scope), PT_OK);
    assert_int_equal(scope, PT_SCOPE_ADMIN);
    /* a wrong key of the right shape, a malformed one, none */
    char wrong[80];
    snprintf(wrong, sizeof wrong, "%s", kr);
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    expect_msg(pt_registry_key_check(r, wrong, &scope), PT_EAUTH, "unknown API key");
    assert_int_equal(scope, 0);
    assert_null(strstr(pt_errmsg(), wrong + 3)); /* the key is never in the message */
    expect_msg(pt_registry_key_check(r, "pt_short", &scope), PT_EAUTH, "malformed");
    assert_null(strstr(pt_errmsg(), "short"));
    expect_msg(pt_registry_key_check(r, NULL, &scope), PT_EAUTH, NULL);
    expect_msg(pt_registry_key_check(r, "", &scope), PT_EAUTH, NULL);
    /* bad arguments */
    expect_msg(pt_registry_key_create(r, "reader", PT_SCOPE_READ, "ops", &s), PT_EINVAL, "exists");
    assert_null(s);
    expect_msg(pt_registry_key_create(r, "x", 7, "ops", &s), PT_EINVAL, "scope");
    expect_msg(pt_registry_key_create(r, "", PT_SCOPE_READ, "ops", &s), PT_EINVAL, "label");
    /* the list has labels and scopes, never keys or hashes */
    assert_int_equal(pt_registry_key_list(r, &s), PT_OK);
    assert_null(strstr(s, kr + 3));
    assert_null(strstr(s, "hash"));
    json_t *l = parse(s);
    assert_int_equal(json_array_size(l), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "label")), "reader");
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "scope")), "read");
    assert_string_equal(json_string_value(json_object_get(json_array_get(l, 1), "scope")), "admin");
    assert_true(json_is_false(json_object_get(json_array_get(l, 0), "revoked")));
    json_decref(l);
    /* the database holds hashes only */
    char p[256];
    path_in(p, sizeof p, "keys.db");
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT hash FROM api_keys", -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *h = (const char *)sqlite3_column_text(st, 0);
        assert_int_equal(strlen(h), 64);
        assert_null(strstr(kr, h));
        assert_null(strstr(h, kr + 3));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* revoke */
    assert_int_equal(pt_registry_key_revoke(r, "reader", "ops"), PT_OK);
    expect_msg(pt_registry_key_check(r, kr, &scope), PT_EAUTH, "revoked");
    assert_int_equal(pt_registry_key_check(r, ka, &scope), PT_OK);
    long audits = audit_count(r);
    assert_int_equal(pt_registry_key_revoke(r, "reader", "ops"), PT_OK); /* again: fine, not audited */
    assert_int_equal(audit_count(r), audits);
    expect_msg(pt_registry_key_revoke(r, "nobody", "ops"), PT_ENOTFOUND, "nobody");
    assert_int_equal(pt_registry_key_list(r, &s), PT_OK);
    l = parse(s);
    assert_true(json_is_true(json_object_get(json_array_get(l, 0), "revoked")));
    assert_true(json_is_integer(json_object_get(json_array_get(l, 0), "revoked_unix")));
    json_decref(l);
    pt_string_free(kr);
    pt_string_free(ka);
    pt_registry_close(r);
}

static void test_events_and_offsets(void **state)
{
    (void)state;
    pt_registry *r = fresh("events.db");
    assert_int_equal(pt_registry_import(r, "shop", rec_a, 0, "a", NULL), PT_OK);
    assert_int_equal(pt_registry_import(r, "ranker", mtl, 0, "a", NULL), PT_OK);
    const char *b1 = "[{\"user\": \"u1\", \"item\": \"i1\", \"y\": 1}, {\"user\": \"u2\", \"x\": 0.5}]";
    const char *b2 = "[{\"user\": \"u3\"}]";
    int64_t first = -1, last = -1;
    assert_int_equal(pt_registry_events_append(r, "shop", b1, strlen(b1), &first, &last), PT_OK);
    assert_int_equal(first, 1);
    assert_int_equal(last, 2);
    assert_int_equal(pt_registry_events_append(r, "ranker", b2, strlen(b2), &first, &last), PT_OK);
    assert_int_equal(first, 3);
    assert_int_equal(pt_registry_events_append(r, "shop", b2, strlen(b2), &first, &last), PT_OK);
    assert_int_equal(first, 4);
    assert_int_equal(last, 4);
    /* refused batches store nothing, not even their valid rows */
    const char *bad[][2] = {{"[{\"a\": 1}, 3]", "row 2: not an object"}, {"{\"a\": 1}", "array"},
                            {"[]", "non-empty"}, {"[{\"a\": 1}", "not JSON"}, {"", "not JSON"},
                            {"[{\"a\": 1, \"a\": 2}]", "not JSON"}};
    for (size_t k = 0; k < PT_ARRAY_LEN(bad); k++)
        expect_msg(pt_registry_events_append(r, "shop", bad[k][0], strlen(bad[k][0]), &first, &last), PT_EINVAL,
                   bad[k][1]);
    expect_msg(pt_registry_events_append(r, "nope", b2, strlen(b2), &first, &last), PT_ENOTFOUND, "nope");
    /* len bounds the text: the first row only of a longer buffer is not an array */
    expect_msg(pt_registry_events_append(r, "shop", b1, 5, &first, &last), PT_EINVAL, NULL);

    char *s = NULL;
    int64_t lid = -1;
    assert_int_equal(pt_registry_events_fetch(r, "shop", PT_EVENTS_ROWS, 0, 100, &s, &lid), PT_OK);
    assert_int_equal(lid, 4);
    json_t *ev = parse(s);
    assert_int_equal(json_array_size(ev), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 0), "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 2), "id")), 4);
    json_t *row = json_object_get(json_array_get(ev, 0), "row");
    assert_string_equal(json_string_value(json_object_get(row, "item")), "i1");
    assert_int_equal(json_integer_value(json_object_get(row, "y")), 1);
    assert_true(json_real_value(json_object_get(json_object_get(json_array_get(ev, 1), "row"), "x")) == 0.5);
    json_decref(ev);
    assert_int_equal(pt_registry_events_fetch(r, "shop", PT_EVENTS_ROWS, 1, 1, &s, &lid), PT_OK);
    assert_int_equal(lid, 2);
    ev = parse(s);
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
    assert_int_equal(pt_registry_events_fetch(r, "shop", PT_EVENTS_ROWS, 4, 10, &s, &lid), PT_OK);
    assert_int_equal(lid, 4);
    assert_string_equal(s, "[]");
    pt_string_free(s);
    expect_msg(pt_registry_events_fetch(r, "shop", PT_EVENTS_ROWS, 0, 0, &s, &lid), PT_EINVAL, "max");
    expect_msg(pt_registry_events_fetch(r, "nope", PT_EVENTS_ROWS, 0, 10, &s, &lid), PT_ENOTFOUND, NULL);

    int64_t off = -1;
    assert_int_equal(pt_registry_offset_get(r, "shop", &off), PT_OK);
    assert_int_equal(off, 0);
    assert_int_equal(pt_registry_offset_set(r, "shop", 2), PT_OK);
    assert_int_equal(pt_registry_offset_set(r, "shop", 4), PT_OK);
    expect_msg(pt_registry_offset_set(r, "shop", -1), PT_EINVAL, NULL);
    expect_msg(pt_registry_offset_set(r, "nope", 1), PT_ENOTFOUND, NULL);
    expect_msg(pt_registry_offset_get(r, "nope", &off), PT_ENOTFOUND, NULL);
    pt_registry_close(r);
    /* all of it is on disk */
    char p[256];
    path_in(p, sizeof p, "events.db");
    assert_int_equal(pt_registry_open(p, &r), PT_OK);
    assert_int_equal(pt_registry_offset_get(r, "shop", &off), PT_OK);
    assert_int_equal(off, 4);
    assert_int_equal(pt_registry_offset_get(r, "ranker", &off), PT_OK);
    assert_int_equal(off, 0);
    assert_int_equal(pt_registry_events_fetch(r, "ranker", PT_EVENTS_ROWS, 0, 10, &s, &lid), PT_OK);
    assert_int_equal(lid, 3);
    pt_string_free(s);
    pt_registry_close(r);
}

static void test_audit(void **state)
{
    (void)state;
    pt_registry *r = fresh("audit.db");
    char *k = NULL, *s = NULL;
    assert_int_equal(pt_registry_import(r, "shop", rec_a, 0, "alice", NULL), PT_OK);
    assert_int_equal(pt_registry_import(r, "shop", rec_b, 1, "alice", NULL), PT_OK);
    assert_int_equal(pt_registry_activate(r, "shop", 2, "bob"), PT_OK);
    assert_int_equal(pt_registry_rollback(r, "shop", "carol", NULL), PT_OK);
    int vs[] = {1, 2};
    double ws[] = {1, 3};
    assert_int_equal(pt_registry_split(r, "shop", vs, ws, 2, "dan"), PT_OK);
    assert_int_equal(pt_registry_key_create(r, "k", PT_SCOPE_READ, "erin", &k), PT_OK);
    assert_int_equal(pt_registry_key_revoke(r, "k", NULL), PT_OK);
    /* reads and events are not admin actions */
    const char *b = "[{\"a\": 1}]";
    assert_int_equal(pt_registry_events_append(r, "shop", b, strlen(b), NULL, NULL), PT_OK);
    assert_int_equal(pt_registry_audit(r, 0, &s), PT_OK);
    json_t *a = parse(s);
    static const char *const actions[] = {"key_revoke", "key_create", "split", "rollback", "activate", "import", "import"};
    static const char *const actors[] = {"unknown", "erin", "dan", "carol", "bob", "alice", "alice"};
    assert_int_equal(json_array_size(a), 7);
    for (size_t i = 0; i < 7; i++) {
        json_t *e = json_array_get(a, i);
        assert_string_equal(json_string_value(json_object_get(e, "action")), actions[i]);
        assert_string_equal(json_string_value(json_object_get(e, "actor")), actors[i]);
        assert_true(json_is_object(json_object_get(e, "detail")));
        assert_true(json_integer_value(json_object_get(e, "unix")) > 1600000000);
    }
    json_t *d = json_object_get(json_array_get(a, 3), "detail");
    assert_int_equal(json_integer_value(json_object_get(d, "version")), 1);
    assert_int_equal(json_integer_value(json_object_get(d, "from")), 2);
    d = json_object_get(json_array_get(a, 2), "detail");
    assert_int_equal(json_array_size(json_object_get(d, "split")), 2);
    d = json_object_get(json_array_get(a, 1), "detail");
    assert_string_equal(json_string_value(json_object_get(d, "label")), "k");
    assert_string_equal(json_string_value(json_object_get(d, "scope")), "read");
    json_decref(a);
    /* the key never reaches the audit log */
    assert_int_equal(pt_registry_audit(r, 0, &s), PT_OK);
    assert_null(strstr(s, k + 3));
    pt_string_free(s);
    assert_int_equal(pt_registry_audit(r, 2, &s), PT_OK);
    a = parse(s);
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 1), "action")), "key_create");
    json_decref(a);
    pt_string_free(k);
    pt_registry_close(r);
}

/* ---- threads: two share a handle, two have their own ---- */

struct worker {
    pt_registry *r;
    int own;
    int fails;
    int64_t first[50], last[50];
};

static void *append_loop(void *arg)
{
    struct worker *w = arg;
    pt_registry *r = w->r;
    if (w->own) {
        char p[256];
        path_in(p, sizeof p, "threads.db");
        if (pt_registry_open(p, &r)) { w->fails++; return NULL; }
    }
    const char *b = "[{\"t\": 1}, {\"t\": 2}]";
    for (int k = 0; k < 50; k++)
        if (pt_registry_events_append(r, "shop", b, strlen(b), &w->first[k], &w->last[k])) w->fails++;
    if (w->own) pt_registry_close(r);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pt_registry *r = fresh("threads.db");
    assert_int_equal(pt_registry_import(r, "shop", rec_a, 0, "a", NULL), PT_OK);
    struct worker w[4];
    pthread_t th[4];
    memset(w, 0, sizeof w);
    for (int t = 0; t < 4; t++) {
        w[t].r = r;
        w[t].own = t >= 2;
        assert_int_equal(pthread_create(&th[t], NULL, append_loop, &w[t]), 0);
    }
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    char seen[401] = {0};
    for (int t = 0; t < 4; t++) {
        assert_int_equal(w[t].fails, 0);
        for (int k = 0; k < 50; k++) {
            /* one batch, one transaction: consecutive ids */
            assert_int_equal(w[t].last[k], w[t].first[k] + 1);
            assert_true(w[t].first[k] >= 1 && w[t].last[k] <= 400);
            assert_int_equal(seen[w[t].first[k]]++, 0);
            assert_int_equal(seen[w[t].last[k]]++, 0);
        }
    }
    char *s = NULL;
    int64_t lid = 0;
    assert_int_equal(pt_registry_events_fetch(r, "shop", PT_EVENTS_ROWS, 0, 1000, &s, &lid), PT_OK);
    assert_int_equal(lid, 400);
    json_t *ev = parse(s);
    assert_int_equal(json_array_size(ev), 400);
    json_decref(ev);
    pt_registry_close(r);
}

/* Each failing allocation of ours gives a clean error and leaks nothing
 * (LeakSanitizer watches the ASan build). Calls that parse JSON (list, audit)
 * are left out: Jansson 2.14 frees a wrong pointer when an allocation fails
 * inside json_loads (it allocates through pt_malloc once a model file has been
 * read, src/store/modelfile.c). */
static void test_alloc_failures(void **state)
{
    (void)state;
    pt_registry *r = fresh("alloc.db");
    assert_int_equal(pt_registry_import(r, "shop", rec_a, 0, "a", NULL), PT_OK);
    const char *b = "[{\"a\": 1}, {\"b\": 2}]";
    assert_int_equal(pt_registry_events_append(r, "shop", b, strlen(b), NULL, NULL), PT_OK);
    for (long k = 1; k < 40; k++) {
        char *s = NULL, *key = NULL, label[32];
        int64_t lid = 0;
        snprintf(label, sizeof label, "k%ld", k);
        pt_alloc_fail_at(k);
        int rc2 = pt_registry_events_fetch(r, "shop", PT_EVENTS_ROWS, 0, 10, &s, &lid);
        pt_string_free(s), s = NULL;
        pt_alloc_fail_at(k);
        int rc3 = pt_registry_key_create(r, label, PT_SCOPE_READ, "a", &key);
        pt_string_free(key);
        pt_alloc_fail_at(k);
        pt_registry *r2 = NULL;
        char p[256];
        path_in(p, sizeof p, "alloc.db");
        int rc4 = pt_registry_open(p, &r2);
        pt_registry_close(r2);
        pt_alloc_fail_at(0);
        assert_true(rc2 == PT_OK || rc2 == PT_ENOMEM);
        assert_true(rc3 == PT_OK || rc3 == PT_ENOMEM);
        assert_true(rc4 == PT_OK || rc4 == PT_ENOMEM);
    }
    pt_registry_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_and_schema),    cmocka_unit_test(test_import_activate_rollback),
        cmocka_unit_test(test_import_refused),     cmocka_unit_test(test_changed_file),
        cmocka_unit_test(test_split),              cmocka_unit_test(test_keys),
        cmocka_unit_test(test_events_and_offsets), cmocka_unit_test(test_audit),
        cmocka_unit_test(test_threads),            cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
