/* registry.c: the model registry, one SQLite database (docs/operations.md).
 *
 * What it keeps: models and their versions (file path, SHA-256, metrics,
 * parent, who imported it and when), the active version of each model with
 * the history of activations (so rollback can go back repeatedly), A/B
 * splits, accepted events for online learning with the learner's offset, API
 * keys (hashed) and an audit log. Every admin action writes its audit row in
 * the same transaction as the change, so the log never disagrees with the
 * state.
 *
 * Durability: WAL journal with synchronous=FULL, so a transaction that has
 * committed (events_append returned PT_OK) survives kill -9 and power loss.
 * Several processes may open the database at once (the server's threads, a
 * background learner, the CLI): writers take the lock up front (BEGIN
 * IMMEDIATE) and wait up to BUSY_TIMEOUT_MS for one another.
 *
 * Threads: a handle holds one SQLite connection and a mutex; every pt_registry_*
 * call takes the mutex for its whole duration, so a handle may be shared by
 * threads (their calls run one after another), and a thread that wants to run
 * in parallel with others opens its own handle.
 *
 * What it deliberately does not do: load models for serving (resolve returns
 * a path; the caller loads and caches it), copy model files (the registry
 * records where they are; keep them read-only), or delete anything (versions,
 * events and audit rows are kept; prune events by hand if they grow).
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>

#include "rec/recommender.h"
#include "store/modelfile.h"
#include "util/util.h"

#define SCHEMA_VERSION 2
#define BUSY_TIMEOUT_MS 10000
#define NAME_MAX_LEN 64
#define KEY_PREFIX "pt_"
#define KEY_BYTES 32
#define KEY_HASH_BYTES 32
#define SPLIT_MAX 256

struct pt_registry {
    sqlite3 *db;
    char *path;
    pthread_mutex_t mu;
};

/* Version 2: raw events (user, item, type, time) beside labelled rows, and
 * how many samples built from them the learner has learned. */
#define RAW_SQL                                                                                      \
    "CREATE TABLE raw_events(id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL REFERENCES models(name),\n" \
    "  row TEXT NOT NULL, created_unix INTEGER NOT NULL);\n"                                          \
    "CREATE INDEX raw_events_model ON raw_events(model, id);\n"                                       \
    "CREATE TABLE raw_offsets(model TEXT PRIMARY KEY REFERENCES models(name), samples INTEGER NOT NULL);\n"

static const char SCHEMA_SQL[] =
    "CREATE TABLE models(name TEXT PRIMARY KEY, created_unix INTEGER NOT NULL);\n"
    "CREATE TABLE versions(model TEXT NOT NULL REFERENCES models(name), version INTEGER NOT NULL,\n"
    "  path TEXT NOT NULL, sha256 TEXT NOT NULL, kind TEXT NOT NULL, metrics TEXT NOT NULL,\n"
    "  parent INTEGER, created_by TEXT NOT NULL, created_unix INTEGER NOT NULL,\n"
    "  PRIMARY KEY(model, version));\n"
    "CREATE TABLE active(model TEXT PRIMARY KEY REFERENCES models(name), version INTEGER NOT NULL,\n"
    "  previous INTEGER, FOREIGN KEY(model, version) REFERENCES versions(model, version));\n"
    /* one row per activation still in effect; rollback removes the newest */
    "CREATE TABLE active_history(id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL,\n"
    "  version INTEGER NOT NULL, unix INTEGER NOT NULL,\n"
    "  FOREIGN KEY(model, version) REFERENCES versions(model, version));\n"
    "CREATE INDEX active_history_model ON active_history(model, id);\n"
    "CREATE TABLE splits(model TEXT NOT NULL, version INTEGER NOT NULL, weight REAL NOT NULL,\n"
    "  PRIMARY KEY(model, version), FOREIGN KEY(model, version) REFERENCES versions(model, version));\n"
    /* AUTOINCREMENT: ids are never reused, even after old events are pruned,
       so a learner's offset always means the same thing */
    "CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL REFERENCES models(name),\n"
    "  row TEXT NOT NULL, created_unix INTEGER NOT NULL);\n"
    "CREATE INDEX events_model ON events(model, id);\n"
    "CREATE TABLE offsets(model TEXT PRIMARY KEY REFERENCES models(name), offset INTEGER NOT NULL);\n"
    RAW_SQL
    "CREATE TABLE api_keys(id INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE, hash TEXT NOT NULL UNIQUE,\n"
    "  scope INTEGER NOT NULL, created_unix INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);\n"
    "CREATE TABLE audit(id INTEGER PRIMARY KEY AUTOINCREMENT, unix INTEGER NOT NULL, actor TEXT NOT NULL,\n"
    "  action TEXT NOT NULL, detail TEXT NOT NULL);\n";

/* ---- libsodium, once per process ---- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_status = -1;

static void sodium_setup(void) { sodium_status = sodium_init() < 0 ? -1 : 0; }

static int need_sodium(void)
{
    pthread_once(&sodium_once, sodium_setup);
    return sodium_status ? pt_error(PT_EIO, "libsodium failed to initialise (no entropy source?)") : PT_OK;
}

/* ---- SQLite helpers ---- */

static int db_err(pt_registry *r)
{
    return pt_error_at(PT_EDB, r->path, 0, "database error: %s", sqlite3_errmsg(r->db));
}

/* Prepares sql and binds the variadic arguments by the letters of types:
 * s text (NULL binds NULL), i int, I int64_t, d double. */
static int q_vprep(pt_registry *r, sqlite3_stmt **st, const char *sql, const char *types, va_list ap)
{
    *st = NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, st, NULL) != SQLITE_OK) return db_err(r);
    int rc = SQLITE_OK;
    for (int k = 0; types[k] && rc == SQLITE_OK; k++) {
        if (types[k] == 's') {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(*st, k + 1, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(*st, k + 1);
        } else if (types[k] == 'i') {
            rc = sqlite3_bind_int64(*st, k + 1, va_arg(ap, int));
        } else if (types[k] == 'I') {
            rc = sqlite3_bind_int64(*st, k + 1, va_arg(ap, int64_t));
        } else {
            rc = sqlite3_bind_double(*st, k + 1, va_arg(ap, double));
        }
    }
    if (rc != SQLITE_OK) {
        int e = db_err(r);
        sqlite3_finalize(*st);
        *st = NULL;
        return e;
    }
    return PT_OK;
}

static int q_prep(pt_registry *r, sqlite3_stmt **st, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = q_vprep(r, st, sql, types, ap);
    va_end(ap);
    return rc;
}

/* Runs a statement that returns no rows. */
static int q_exec(pt_registry *r, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    va_start(ap, types);
    int rc = q_vprep(r, &st, sql, types, ap);
    va_end(ap);
    if (rc) return rc;
    int s = sqlite3_step(st);
    rc = s == SQLITE_DONE || s == SQLITE_ROW ? PT_OK : db_err(r);
    sqlite3_finalize(st);
    return rc;
}

/* Steps st once: 1 a row, 0 done, or a negative PT_EDB. */
static int q_step(pt_registry *r, sqlite3_stmt *st)
{
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) return 1;
    if (s == SQLITE_DONE) return 0;
    return db_err(r);
}

/* Writers take the write lock at BEGIN: a deferred transaction that later
 * needs to write can fail with SQLITE_BUSY at once, without the busy wait. */
static int tx_begin(pt_registry *r) { return q_exec(r, "BEGIN IMMEDIATE", ""); }
static int tx_commit(pt_registry *r) { return q_exec(r, "COMMIT", ""); }
static void tx_abort(pt_registry *r)
{
    if (!sqlite3_get_autocommit(r->db)) sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- small checks and JSON helpers ---- */

/* Model names end up in URLs and file listings: keep them plain. */
static int check_name(const char *what, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > NAME_MAX_LEN)
        return pt_error(PT_EINVAL, "%s must be 1..%d characters", what, NAME_MAX_LEN);
    for (size_t k = 0; k < n; k++) {
        char c = s[k];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return pt_error(PT_EINVAL, "%s '%s': use only letters, digits, '_', '-' and '.'", what, s);
    }
    return PT_OK;
}

static const char *actor_or_default(const char *actor) { return actor && *actor ? actor : "unknown"; }

static int64_t now_unix(void) { return (int64_t)time(NULL); }

/* JSON text of v as a pt_malloc'd string (consumes v). */
static int json_take(json_t *v, char **out)
{
    *out = NULL;
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s) return pt_error(PT_ENOMEM, "out of memory");
    *out = pt_strdup(s);
    free(s);
    return *out ? PT_OK : pt_error(PT_ENOMEM, "out of memory");
}

/* Writes an audit row (consumes detail); call inside the action's transaction. */
static int audit_add(pt_registry *r, const char *actor, const char *action, json_t *detail)
{
    char *d = detail ? json_dumps(detail, JSON_COMPACT) : NULL;
    json_decref(detail);
    if (!d) return pt_error(PT_ENOMEM, "out of memory");
    int rc = q_exec(r, "INSERT INTO audit(unix, actor, action, detail) VALUES(?, ?, ?, ?)", "Isss", now_unix(),
                    actor_or_default(actor), action, d);
    free(d);
    return rc;
}

static int model_exists(pt_registry *r, const char *name)
{
    sqlite3_stmt *st;
    int rc = q_prep(r, &st, "SELECT 1 FROM models WHERE name = ?", "s", name);
    if (rc) return rc;
    rc = q_step(r, st);
    sqlite3_finalize(st);
    if (rc == 0) return pt_error(PT_ENOTFOUND, "%s: no model '%s' in the registry", r->path, name);
    return rc < 0 ? rc : PT_OK;
}

/* ---- files: SHA-256 and loading ---- */

static int file_sha256(const char *path, char hex[2 * crypto_hash_sha256_BYTES + 1])
{
    FILE *f = fopen(path, "rb");
    if (!f) return pt_error_at(PT_EIO, path, 0, "cannot open: %s", strerror(errno));
    crypto_hash_sha256_state s;
    crypto_hash_sha256_init(&s);
    unsigned char buf[1 << 16], h[crypto_hash_sha256_BYTES];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) crypto_hash_sha256_update(&s, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return pt_error_at(PT_EIO, path, 0, "read error");
    crypto_hash_sha256_final(&s, h);
    sodium_bin2hex(hex, 2 * crypto_hash_sha256_BYTES + 1, h, sizeof h);
    return PT_OK;
}

/* Loads path as a multi-task model or a recommender (by the "format" of its
 * metadata) and returns its kind and metrics JSON text (pt_malloc'd): the
 * model's stored "metrics", or the recommender report's "eval". Refuses, with
 * the loader's message, a file that does not load. */
static int load_check(const char *path, const char **kind, char **metrics)
{
    struct mf_file *f = NULL;
    pt_recommender *rec = NULL;
    pt_model *m = NULL;
    json_t *meta = NULL, *info = NULL;
    char *text = NULL;
    *metrics = NULL;
    int rc = modelfile_read(path, &f);
    if (rc) goto done;
    meta = json_loads(f->meta_json, 0, NULL);
    const char *fmt = json_string_value(json_object_get(meta, "format"));
    if (fmt && !strcmp(fmt, "polytask-recommender")) {
        *kind = "recommender";
        if ((rc = rec_load_file(f, path, &rec)) || (rc = pt_rec_report(rec, &text))) goto done;
    } else {
        /* a model file of another format gets pt_model_load's message */
        *kind = "model";
        modelfile_free(f), f = NULL;
        if ((rc = pt_model_load(path, &m)) || (rc = pt_model_info(m, &text))) goto done;
    }
    info = json_loads(text, 0, NULL);
    json_t *part = json_object_get(info, (*kind)[0] == 'r' ? "eval" : "metrics");
    rc = json_take(part ? json_incref(part) : json_object(), metrics);
done:
    json_decref(meta);
    json_decref(info);
    pt_string_free(text);
    pt_rec_free(rec);
    pt_model_free(m);
    modelfile_free(f);
    return rc;
}

/* Checks that version's file still has the SHA-256 recorded at import. */
static int check_version_file(pt_registry *r, const char *name, int version)
{
    sqlite3_stmt *st;
    char *path = NULL;
    char sha[2 * crypto_hash_sha256_BYTES + 1], now[sizeof sha];
    int rc = q_prep(r, &st, "SELECT path, sha256 FROM versions WHERE model = ? AND version = ?", "si", name, version);
    if (rc) return rc;
    if ((rc = q_step(r, st)) <= 0) {
        if (rc == 0) rc = pt_error(PT_ENOTFOUND, "%s: model '%s' has no version %d", r->path, name, version);
        goto done;
    }
    path = pt_strdup((const char *)sqlite3_column_text(st, 0));
    snprintf(sha, sizeof sha, "%s", (const char *)sqlite3_column_text(st, 1));
    if (!path) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
    if ((rc = file_sha256(path, now))) goto done;
    if (strcmp(now, sha))
        rc = pt_error_at(PT_ECHECKSUM, path, 0,
                         "model file changed since import (version %d of '%s': sha256 %.12s..., now %.12s...); "
                         "import it again as a new version",
                         version, name, sha, now);
done:
    sqlite3_finalize(st);
    pt_free(path);
    return rc;
}

/* ---- open / close ---- */

/* Refuses a database written by a newer polytask. [out] *version. */
static int schema_version(pt_registry *r, int *version)
{
    sqlite3_stmt *st;
    int rc = q_prep(r, &st, "PRAGMA user_version", "");
    if (rc) return rc;
    rc = q_step(r, st);
    int v = *version = rc == 1 ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc < 0) return rc;
    if (v > SCHEMA_VERSION)
        return pt_error_at(PT_EVERSION, r->path, 0,
                           "registry schema version %d is newer than this polytask supports (%d); upgrade polytask", v,
                           SCHEMA_VERSION);
    return PT_OK;
}

static int schema_setup(pt_registry *r)
{
    int v = 0, rc = tx_begin(r);
    if (rc) return rc;
    /* read again inside the write lock: two processes opening a new file at
       once must not both create the tables */
    if ((rc = schema_version(r, &v))) goto fail;
    if (v < SCHEMA_VERSION) { /* new, or written by an older polytask: add what it lacks */
        char sql[64];
        if (sqlite3_exec(r->db, v == 0 ? SCHEMA_SQL : RAW_SQL, NULL, NULL, NULL) != SQLITE_OK) { rc = db_err(r); goto fail; }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
        if ((rc = q_exec(r, sql, ""))) goto fail;
    }
    return tx_commit(r);
fail:
    tx_abort(r);
    return rc;
}

/* Opens the database and sets the connection's pragmas; see the file head. */
int pt_registry_open(const char *path, pt_registry **out)
{
    *out = NULL;
    if (!path || !*path) return pt_error(PT_EINVAL, "registry: no database path");
    int rc = need_sodium();
    if (rc) return rc;
    pt_registry *r = pt_calloc(1, sizeof *r);
    if (!r || !(r->path = pt_strdup(path))) {
        pt_free(r);
        return pt_error(PT_ENOMEM, "out of memory");
    }
    if (pthread_mutex_init(&r->mu, NULL)) {
        pt_free(r->path);
        pt_free(r);
        return pt_error(PT_ENOMEM, "registry: cannot create a mutex");
    }
    sqlite3_stmt *st = NULL;
    /* FULLMUTEX: SQLite's own checks stay on even though our mutex already
       serialises the handle; it costs little next to an fsync */
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        rc = r->db ? db_err(r) : pt_error(PT_ENOMEM, "out of memory");
        goto fail;
    }
    if (sqlite3_busy_timeout(r->db, BUSY_TIMEOUT_MS) != SQLITE_OK) { rc = db_err(r); goto fail; }
    /* before anything writes: a newer database is left exactly as it was */
    int v;
    if ((rc = schema_version(r, &v))) goto fail;
    /* WAL: readers never block the writer; the answer is the mode in effect
       ("memory" for an in-memory database, which cannot be WAL) */
    if ((rc = q_prep(r, &st, "PRAGMA journal_mode=WAL", ""))) goto fail;
    if ((rc = q_step(r, st)) < 0) goto fail;
    const char *mode = rc == 1 ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (!mode || (strcmp(mode, "wal") && strcmp(mode, "memory"))) {
        rc = pt_error_at(PT_EDB, path, 0, "database error: cannot switch to WAL mode (journal mode is '%s')",
                         mode ? mode : "?");
        goto fail;
    }
    sqlite3_finalize(st), st = NULL;
    /* FULL: in WAL mode NORMAL may lose the last commits on power loss; events
       must not be lost once append has returned */
    if ((rc = q_exec(r, "PRAGMA synchronous=FULL", "")) || (rc = q_exec(r, "PRAGMA foreign_keys=ON", "")) ||
        (rc = schema_setup(r)))
        goto fail;
    *out = r;
    return PT_OK;
fail:
    sqlite3_finalize(st);
    pt_registry_close(r);
    return rc;
}

/* Closes the connection; accepts NULL. */
void pt_registry_close(pt_registry *r)
{
    if (!r) return;
    sqlite3_close(r->db);
    pthread_mutex_destroy(&r->mu);
    pt_free(r->path);
    pt_free(r);
}

/* Every public call runs under the handle's mutex (see the file head). */
#define LOCKED(r, call)                                                   \
    do {                                                                  \
        if (!(r)) return pt_error(PT_EINVAL, "registry: NULL handle");    \
        pthread_mutex_lock(&(r)->mu);                                     \
        int locked_rc_ = (call);                                          \
        pthread_mutex_unlock(&(r)->mu);                                   \
        return locked_rc_;                                                \
    } while (0)

/* ---- activation history ---- */

/* Points the active row at the newest history entry. */
static int active_sync(pt_registry *r, const char *name, int *version)
{
    sqlite3_stmt *st;
    int rc = q_prep(r, &st, "SELECT version FROM active_history WHERE model = ? ORDER BY id DESC LIMIT 2", "s", name);
    if (rc) return rc;
    int v[2] = {0, 0}, n = 0;
    while (n < 2 && (rc = q_step(r, st)) == 1) v[n++] = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc < 0) return rc;
    if (n == 0) return pt_error(PT_ENOTFOUND, "%s: model '%s' has no active version", r->path, name);
    if (version) *version = v[0];
    if (n == 2)
        return q_exec(r, "INSERT OR REPLACE INTO active(model, version, previous) VALUES(?, ?, ?)", "sii", name, v[0],
                      v[1]);
    return q_exec(r, "INSERT OR REPLACE INTO active(model, version, previous) VALUES(?, ?, NULL)", "si", name, v[0]);
}

static int active_get(pt_registry *r, const char *name, int *version)
{
    sqlite3_stmt *st;
    int rc = q_prep(r, &st, "SELECT version FROM active WHERE model = ?", "s", name);
    if (rc) return rc;
    rc = q_step(r, st);
    *version = rc == 1 ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc == 0) return pt_error(PT_ENOTFOUND, "%s: model '%s' has no active version", r->path, name);
    return rc < 0 ? rc : PT_OK;
}

/* ---- import / activate / rollback ---- */

/* With publish (the online learner), parent must be the active version, and
 * the new version is activated and the learner's offset set in the same
 * transaction. */
static int do_import(pt_registry *r, const char *name, const char *model_path, int parent, const char *actor,
                     int *version, int publish, int64_t offset, int64_t raw_samples)
{
    char sha[2 * crypto_hash_sha256_BYTES + 1];
    char *abs = NULL, *metrics = NULL;
    const char *kind = NULL;
    sqlite3_stmt *st = NULL;
    json_t *detail = NULL;
    int rc, v = 0, first = 0;
    if ((rc = check_name("model name", name))) return rc;
    if (!model_path || !*model_path) return pt_error(PT_EINVAL, "import: no model file");
    if (parent < 0) return pt_error(PT_EINVAL, "import: parent version must be >= 0");
    /* the slow part (hashing, loading) runs before the write lock is taken */
    if (!(abs = realpath(model_path, NULL))) return pt_error_at(PT_EIO, model_path, 0, "cannot open: %s", strerror(errno));
    if ((rc = file_sha256(abs, sha)) || (rc = load_check(abs, &kind, &metrics))) goto done;
    if ((rc = tx_begin(r))) goto done;
    if ((rc = q_exec(r, "INSERT OR IGNORE INTO models(name, created_unix) VALUES(?, ?)", "sI", name, now_unix())))
        goto fail;
    if ((rc = q_prep(r, &st, "SELECT COALESCE(MAX(version), 0), COUNT(*) FROM versions WHERE model = ?", "s", name)))
        goto fail;
    if ((rc = q_step(r, st)) < 0) goto fail;
    v = sqlite3_column_int(st, 0) + 1;
    first = sqlite3_column_int(st, 1) == 0;
    sqlite3_finalize(st), st = NULL;
    if (parent > 0 && parent >= v) {
        rc = pt_error(PT_ENOTFOUND, "%s: parent: model '%s' has no version %d", r->path, name, parent);
        goto fail;
    }
    if (publish) {
        int cur = 0;
        if ((rc = active_get(r, name, &cur))) goto fail;
        if (cur != parent) {
            rc = pt_error(PT_EINVAL, "%s: publish: model '%s' now serves version %d, not %d", r->path, name, cur, parent);
            goto fail;
        }
    }
    if ((rc = q_prep(r, &st,
                     "INSERT INTO versions(model, version, path, sha256, kind, metrics, parent, created_by, created_unix)"
                     " VALUES(?, ?, ?, ?, ?, ?, NULLIF(?, 0), ?, ?)",
                     "sissssisI", name, v, abs, sha, kind, metrics, parent, actor_or_default(actor), now_unix())))
        goto fail;
    if ((rc = q_step(r, st)) < 0) goto fail;
    sqlite3_finalize(st), st = NULL;
    if (first || publish) {
        if ((rc = q_exec(r, "INSERT INTO active_history(model, version, unix) VALUES(?, ?, ?)", "siI", name, v,
                         now_unix())) ||
            (rc = active_sync(r, name, NULL)))
            goto fail;
    }
    if (publish &&
        ((rc = q_exec(r, "INSERT OR REPLACE INTO offsets(model, offset) VALUES(?, ?)", "sI", name, offset)) ||
         (raw_samples >= 0 &&
          (rc = q_exec(r, "INSERT OR REPLACE INTO raw_offsets(model, samples) VALUES(?, ?)", "sI", name, raw_samples)))))
        goto fail;
    detail = json_pack("{s:s, s:i, s:s, s:s, s:s, s:i, s:b}", "model", name, "version", v, "path", abs, "sha256", sha,
                       "kind", kind, "parent", parent, "activated", first || publish);
    if (detail && publish) json_object_set_new(detail, "offset", json_integer(offset));
    if (detail && publish && raw_samples >= 0) json_object_set_new(detail, "raw_samples", json_integer(raw_samples));
    if ((rc = audit_add(r, actor, publish ? "publish" : "import", detail)) || (rc = tx_commit(r))) goto fail;
    if (version) *version = v;
    goto done;
fail:
    sqlite3_finalize(st);
    tx_abort(r);
done:
    free(abs); /* from realpath */
    pt_free(metrics);
    return rc;
}

int pt_registry_import(pt_registry *r, const char *name, const char *model_path, int parent, const char *actor,
                       int *version)
{
    if (version) *version = 0;
    LOCKED(r, do_import(r, name, model_path, parent, actor, version, 0, 0, -1));
}

int pt_registry_publish(pt_registry *r, const char *name, const char *model_path, int parent, int64_t offset,
                        int64_t raw_samples, const char *actor, int *version)
{
    if (version) *version = 0;
    if (parent <= 0 || offset < 0) return pt_error(PT_EINVAL, "publish: parent must be > 0 and offset >= 0");
    LOCKED(r, do_import(r, name, model_path, parent, actor, version, 1, offset, raw_samples));
}

static int do_activate(pt_registry *r, const char *name, int version, const char *actor)
{
    int rc, cur = 0;
    if ((rc = check_name("model name", name)) || (rc = model_exists(r, name))) return rc;
    /* hashed before the write lock is taken; versions are never removed and
       their recorded hash never changes, so the check still holds inside */
    if ((rc = check_version_file(r, name, version))) return rc;
    if ((rc = tx_begin(r))) return rc;
    if ((rc = active_get(r, name, &cur))) goto fail;
    /* activating the active version changes nothing: no history entry, so a
       rollback still goes to the one before */
    if (cur != version &&
        ((rc = q_exec(r, "INSERT INTO active_history(model, version, unix) VALUES(?, ?, ?)", "siI", name, version,
                      now_unix())) ||
         (rc = active_sync(r, name, NULL))))
        goto fail;
    if ((rc = audit_add(r, actor, "activate", json_pack("{s:s, s:i, s:i}", "model", name, "version", version, "previous", cur))) ||
        (rc = tx_commit(r)))
        goto fail;
    return PT_OK;
fail:
    tx_abort(r);
    return rc;
}

/* Activates version after checking its file's SHA-256 (see polytask.h). */
int pt_registry_activate(pt_registry *r, const char *name, int version, const char *actor)
{
    LOCKED(r, do_activate(r, name, version, actor));
}

static int do_rollback(pt_registry *r, const char *name, const char *actor, int *version)
{
    sqlite3_stmt *st = NULL;
    int rc, cur = 0, prev = 0, n = 0;
    int64_t top = 0;
    if ((rc = check_name("model name", name))) return rc;
    if ((rc = tx_begin(r))) return rc;
    if ((rc = model_exists(r, name))) goto fail;
    if ((rc = q_prep(r, &st, "SELECT id, version FROM active_history WHERE model = ? ORDER BY id DESC LIMIT 2", "s",
                     name)))
        goto fail;
    while (n < 2 && (rc = q_step(r, st)) == 1) {
        if (n == 0) top = sqlite3_column_int64(st, 0), cur = sqlite3_column_int(st, 1);
        else prev = sqlite3_column_int(st, 1);
        n++;
    }
    sqlite3_finalize(st), st = NULL;
    if (rc < 0) goto fail;
    if (n < 2) {
        rc = pt_error(PT_ENOTFOUND, "%s: model '%s' has no earlier active version to roll back to", r->path, name);
        goto fail;
    }
    /* the file must still be the one imported: serving a changed file is
       worse than a refused rollback (import it again and activate that) */
    if ((rc = check_version_file(r, name, prev))) goto fail;
    if ((rc = q_exec(r, "DELETE FROM active_history WHERE id = ?", "I", top)) || (rc = active_sync(r, name, NULL)))
        goto fail;
    if ((rc = audit_add(r, actor, "rollback", json_pack("{s:s, s:i, s:i}", "model", name, "version", prev, "from", cur))) ||
        (rc = tx_commit(r)))
        goto fail;
    if (version) *version = prev;
    return PT_OK;
fail:
    sqlite3_finalize(st);
    tx_abort(r);
    return rc;
}

int pt_registry_rollback(pt_registry *r, const char *name, const char *actor, int *version)
{
    if (version) *version = 0;
    LOCKED(r, do_rollback(r, name, actor, version));
}

/* ---- splits ---- */

static int do_split(pt_registry *r, const char *name, const int *versions, const double *weights, int n,
                    const char *actor)
{
    int rc;
    if ((rc = check_name("model name", name))) return rc;
    if (n < 0 || n > SPLIT_MAX || (n > 0 && (!versions || !weights)))
        return pt_error(PT_EINVAL, "split: want 0..%d versions with their weights", SPLIT_MAX);
    double total = 0;
    for (int k = 0; k < n; k++) {
        if (!isfinite(weights[k]) || weights[k] < 0)
            return pt_error(PT_EINVAL, "split: weight of version %d must be a finite number >= 0", versions[k]);
        for (int j = 0; j < k; j++)
            if (versions[j] == versions[k]) return pt_error(PT_EINVAL, "split: version %d given twice", versions[k]);
        total += weights[k];
    }
    if (n > 0 && !(total > 0)) return pt_error(PT_EINVAL, "split: the weights must sum to more than 0");
    if ((rc = model_exists(r, name))) return rc;
    /* every variant's file is checked as activate would */
    for (int k = 0; k < n; k++)
        if ((rc = check_version_file(r, name, versions[k]))) return rc;
    json_t *list = json_array();
    if (!list) return pt_error(PT_ENOMEM, "out of memory");
    if ((rc = tx_begin(r))) goto fail;
    if ((rc = q_exec(r, "DELETE FROM splits WHERE model = ?", "s", name))) goto fail;
    for (int k = 0; k < n; k++) {
        /* the foreign key refuses a version removed meanwhile */
        if ((rc = q_exec(r, "INSERT INTO splits(model, version, weight) VALUES(?, ?, ?)", "sid", name, versions[k],
                         weights[k])))
            goto fail;
        json_array_append_new(list, json_pack("{s:i, s:f}", "version", versions[k], "weight", weights[k]));
    }
    rc = audit_add(r, actor, "split", json_pack("{s:s, s:o}", "model", name, "split", list));
    list = NULL;
    if (rc || (rc = tx_commit(r))) goto fail;
    return PT_OK;
fail:
    json_decref(list);
    tx_abort(r);
    return rc;
}

int pt_registry_split(pt_registry *r, const char *name, const int *versions, const double *weights, int n,
                      const char *actor)
{
    LOCKED(r, do_split(r, name, versions, weights, n, actor));
}

/* A number in [0, 1) fixed by (name, user): the first 8 bytes of
 * BLAKE2b("name/user"), so every process and restart agrees. */
static double user_point(const char *name, const char *user)
{
    crypto_generichash_state s;
    unsigned char h[16];
    crypto_generichash_init(&s, NULL, 0, sizeof h);
    crypto_generichash_update(&s, (const unsigned char *)name, strlen(name));
    crypto_generichash_update(&s, (const unsigned char *)"/", 1);
    crypto_generichash_update(&s, (const unsigned char *)user, strlen(user));
    crypto_generichash_final(&s, h, sizeof h);
    uint64_t x = 0;
    for (int k = 0; k < 8; k++) x = x << 8 | h[k];
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

static int do_resolve(pt_registry *r, const char *name, const char *user, char **path, int *version)
{
    sqlite3_stmt *st = NULL;
    int rc, v = 0;
    if ((rc = check_name("model name", name))) return rc;
    /* one read transaction: the split and the active version seen together */
    if ((rc = q_exec(r, "BEGIN", ""))) return rc;
    if ((rc = model_exists(r, name))) goto done;
    if (user) {
        if ((rc = q_prep(r, &st, "SELECT version, weight FROM splits WHERE model = ? ORDER BY version", "s", name)))
            goto done;
        int vs[SPLIT_MAX], n = 0;
        double ws[SPLIT_MAX], total = 0;
        while ((rc = q_step(r, st)) == 1) {
            if (n < (int)PT_ARRAY_LEN(vs)) {
                vs[n] = sqlite3_column_int(st, 0), ws[n] = sqlite3_column_double(st, 1);
                total += ws[n++];
            }
        }
        sqlite3_finalize(st), st = NULL;
        if (rc < 0) goto done;
        if (n > 0 && total > 0) {
            double x = user_point(name, user) * total, acc = 0;
            v = vs[n - 1]; /* rounding at the top end */
            for (int k = 0; k < n; k++) {
                acc += ws[k];
                if (x < acc && ws[k] > 0) { v = vs[k]; break; }
            }
        }
    }
    if (!v && (rc = active_get(r, name, &v))) goto done;
    if ((rc = q_prep(r, &st, "SELECT path FROM versions WHERE model = ? AND version = ?", "si", name, v))) goto done;
    if ((rc = q_step(r, st)) <= 0) {
        if (rc == 0) rc = pt_error(PT_ENOTFOUND, "%s: model '%s' has no version %d", r->path, name, v);
        goto done;
    }
    if (!(*path = pt_strdup((const char *)sqlite3_column_text(st, 0)))) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
    if (version) *version = v;
    rc = PT_OK;
done:
    sqlite3_finalize(st);
    tx_abort(r); /* ends the read transaction */
    return rc;
}

/* Which file to serve to user (see polytask.h); reads only. */
int pt_registry_resolve(pt_registry *r, const char *name, const char *user, char **path, int *version)
{
    *path = NULL;
    if (version) *version = 0;
    LOCKED(r, do_resolve(r, name, user, path, version));
}

/* ---- list ---- */

/* served: only the versions a server needs (the active one and the split's),
 * so the call stays cheap when the online learner has published thousands */
static int do_list(pt_registry *r, const char *name, int served, char **json)
{
    sqlite3_stmt *st = NULL, *sv = NULL, *ss = NULL;
    json_t *out = json_object(), *models = json_array();
    int rc;
    if (!out || !models || json_object_set(out, "models", models)) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
    if (name && ((rc = check_name("model name", name)))) goto done;
    if ((rc = q_exec(r, "BEGIN", ""))) goto done;
    if (name && (rc = model_exists(r, name))) goto done;
    if ((rc = q_prep(r, &st,
                     "SELECT m.name, a.version, a.previous FROM models m LEFT JOIN active a ON a.model = m.name"
                     " WHERE ?1 IS NULL OR m.name = ?1 ORDER BY m.name",
                     "s", name)) ||
        (rc = q_prep(r, &sv,
                     served ? "SELECT version, path, sha256, kind, metrics, parent, created_by, created_unix FROM versions"
                              " WHERE model = ?1 AND (version = (SELECT version FROM active WHERE model = ?1)"
                              " OR version IN (SELECT version FROM splits WHERE model = ?1)) ORDER BY version"
                            : "SELECT version, path, sha256, kind, metrics, parent, created_by, created_unix FROM versions"
                              " WHERE model = ? ORDER BY version",
                     "")) ||
        (rc = q_prep(r, &ss, "SELECT version, weight FROM splits WHERE model = ? ORDER BY version", "")))
        goto done;
    while ((rc = q_step(r, st)) == 1) {
        const char *mn = (const char *)sqlite3_column_text(st, 0);
        json_t *m = json_pack("{s:s, s:i, s:o, s:[], s:[]}", "name", mn, "active", sqlite3_column_int(st, 1),
                              "previous", sqlite3_column_type(st, 2) == SQLITE_NULL ? json_null()
                                                                                    : json_integer(sqlite3_column_int(st, 2)),
                              "split", "versions");
        if (!m || json_array_append_new(models, m)) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
        sqlite3_reset(ss), sqlite3_reset(sv);
        if (sqlite3_bind_text(ss, 1, mn, -1, SQLITE_TRANSIENT) || sqlite3_bind_text(sv, 1, mn, -1, SQLITE_TRANSIENT)) {
            rc = db_err(r);
            goto done;
        }
        while ((rc = q_step(r, ss)) == 1)
            json_array_append_new(json_object_get(m, "split"), json_pack("{s:i, s:f}", "version", sqlite3_column_int(ss, 0),
                                                                         "weight", sqlite3_column_double(ss, 1)));
        if (rc < 0) goto done;
        while ((rc = q_step(r, sv)) == 1) {
            json_t *metrics = json_loads((const char *)sqlite3_column_text(sv, 4), 0, NULL);
            json_t *v = json_pack("{s:i, s:s, s:s, s:s, s:o, s:o, s:s, s:I}", "version", sqlite3_column_int(sv, 0), "path",
                                  (const char *)sqlite3_column_text(sv, 1), "sha256",
                                  (const char *)sqlite3_column_text(sv, 2), "kind",
                                  (const char *)sqlite3_column_text(sv, 3), "metrics", metrics ? metrics : json_object(),
                                  "parent",
                                  sqlite3_column_type(sv, 5) == SQLITE_NULL ? json_null()
                                                                            : json_integer(sqlite3_column_int(sv, 5)),
                                  "created_by", (const char *)sqlite3_column_text(sv, 6), "created_unix",
                                  (json_int_t)sqlite3_column_int64(sv, 7));
            if (!v || json_array_append_new(json_object_get(m, "versions"), v)) { rc = pt_error(PT_ENOMEM, "out of memory"); goto done; }
        }
        if (rc < 0) goto done;
    }
    if (rc < 0) goto done;
    rc = json_take(json_incref(out), json);
done:
    sqlite3_finalize(st);
    sqlite3_finalize(sv);
    sqlite3_finalize(ss);
    tx_abort(r);
    json_decref(models);
    json_decref(out);
    return rc;
}

int pt_registry_list(pt_registry *r, const char *name, char **json)
{
    *json = NULL;
    LOCKED(r, do_list(r, name, 0, json));
}

int pt_registry_served(pt_registry *r, const char *name, char **json)
{
    *json = NULL;
    LOCKED(r, do_list(r, name, 1, json));
}

/* ---- API keys ----
 *
 * A key is "pt_" + 64 hex digits: 32 bytes from randombytes_buf. Only
 * BLAKE2b-256(key), keyed with a fixed domain string, is stored (hex). A slow
 * password hash (crypto_pwhash, ~100 ms) exists to make guessing low-entropy
 * passwords expensive; these keys have 256 random bits, so no guess can
 * succeed and a fast hash is enough, which keeps the per-request check to a
 * microsecond. The lookup is by hash (an index), then the stored and computed
 * hashes are compared again in constant time. */

static const unsigned char KEY_DOMAIN[] = "polytask api key v1 (registry.c)";

static void key_hash(const char *key, char hex[2 * KEY_HASH_BYTES + 1])
{
    unsigned char h[KEY_HASH_BYTES];
    crypto_generichash(h, sizeof h, (const unsigned char *)key, strlen(key), KEY_DOMAIN, sizeof KEY_DOMAIN - 1);
    sodium_bin2hex(hex, 2 * KEY_HASH_BYTES + 1, h, sizeof h);
}

static const char *scope_name(int scope) { return scope == PT_SCOPE_ADMIN ? "admin" : scope == PT_SCOPE_READ ? "read" : "?"; }

static int do_key_create(pt_registry *r, const char *label, int scope, const char *actor, char **key)
{
    unsigned char raw[KEY_BYTES];
    char text[sizeof KEY_PREFIX + 2 * KEY_BYTES], hash[2 * KEY_HASH_BYTES + 1];
    sqlite3_stmt *st = NULL;
    int rc;
    if ((rc = check_name("key label", label))) return rc;
    if (scope != PT_SCOPE_READ && scope != PT_SCOPE_ADMIN)
        return pt_error(PT_EINVAL, "key scope must be PT_SCOPE_READ or PT_SCOPE_ADMIN");
    randombytes_buf(raw, sizeof raw);
    memcpy(text, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    sodium_bin2hex(text + sizeof KEY_PREFIX - 1, 2 * KEY_BYTES + 1, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    key_hash(text, hash);
    if ((rc = tx_begin(r))) goto done;
    if ((rc = q_prep(r, &st, "SELECT 1 FROM api_keys WHERE label = ?", "s", label))) goto fail;
    if ((rc = q_step(r, st)) < 0) goto fail;
    if (rc == 1) {
        rc = pt_error(PT_EINVAL, "%s: a key labelled '%s' exists (labels are never reused, even revoked ones)", r->path,
                      label);
        goto fail;
    }
    if ((rc = q_exec(r, "INSERT INTO api_keys(label, hash, scope, created_unix) VALUES(?, ?, ?, ?)", "ssiI", label, hash,
                     scope, now_unix())) ||
        (rc = audit_add(r, actor, "key_create", json_pack("{s:s, s:s}", "label", label, "scope", scope_name(scope)))) ||
        (rc = tx_commit(r)))
        goto fail;
    if (!(*key = pt_strdup(text))) rc = pt_error(PT_ENOMEM, "out of memory");
    goto done;
fail:
    tx_abort(r);
done:
    sqlite3_finalize(st);
    sodium_memzero(text, sizeof text);
    return rc;
}

/* Creates a key; the text comes back once and is never stored. */
int pt_registry_key_create(pt_registry *r, const char *label, int scope, const char *actor, char **key)
{
    *key = NULL;
    LOCKED(r, do_key_create(r, label, scope, actor, key));
}

static int do_key_revoke(pt_registry *r, const char *label, const char *actor)
{
    int rc;
    if ((rc = check_name("key label", label))) return rc;
    if ((rc = tx_begin(r))) return rc;
    if ((rc = q_exec(r, "UPDATE api_keys SET revoked = ? WHERE label = ? AND revoked = 0", "Is", now_unix(), label)))
        goto fail;
    if (sqlite3_changes(r->db) == 0) {
        sqlite3_stmt *st;
        if ((rc = q_prep(r, &st, "SELECT 1 FROM api_keys WHERE label = ?", "s", label))) goto fail;
        rc = q_step(r, st);
        sqlite3_finalize(st);
        if (rc < 0) goto fail;
        /* revoking twice is fine: the key stays revoked, nothing to audit */
        if (rc == 1) { tx_abort(r); return PT_OK; }
        rc = pt_error(PT_ENOTFOUND, "%s: no API key labelled '%s'", r->path, label);
        goto fail;
    }
    if ((rc = audit_add(r, actor, "key_revoke", json_pack("{s:s}", "label", label))) || (rc = tx_commit(r))) goto fail;
    return PT_OK;
fail:
    tx_abort(r);
    return rc;
}

int pt_registry_key_revoke(pt_registry *r, const char *label, const char *actor)
{
    LOCKED(r, do_key_revoke(r, label, actor));
}

static int do_key_check(pt_registry *r, const char *key, int *scope)
{
    char hash[2 * KEY_HASH_BYTES + 1];
    sqlite3_stmt *st;
    size_t n = key ? strlen(key) : 0;
    /* never echo the key: messages end up in logs */
    if (n != sizeof KEY_PREFIX - 1 + 2 * KEY_BYTES || memcmp(key, KEY_PREFIX, sizeof KEY_PREFIX - 1))
        return pt_error(PT_EAUTH, "malformed API key (want pt_ and 64 hex digits)");
    key_hash(key, hash);
    int rc = q_prep(r, &st, "SELECT hash, scope, revoked FROM api_keys WHERE hash = ?", "s", hash);
    if (rc) return rc;
    rc = q_step(r, st);
    if (rc == 1) {
        const void *stored = sqlite3_column_text(st, 0);
        int ok = stored && sqlite3_column_bytes(st, 0) == 2 * KEY_HASH_BYTES &&
                 sodium_memcmp(stored, hash, 2 * KEY_HASH_BYTES) == 0;
        if (!ok) rc = pt_error(PT_EAUTH, "unknown API key");
        else if (sqlite3_column_int64(st, 2) != 0) rc = pt_error(PT_EAUTH, "API key revoked");
        else *scope = sqlite3_column_int(st, 1), rc = PT_OK;
    } else if (rc == 0) {
        rc = pt_error(PT_EAUTH, "unknown API key");
    }
    sqlite3_finalize(st);
    return rc;
}

int pt_registry_key_check(pt_registry *r, const char *key, int *scope)
{
    *scope = 0;
    LOCKED(r, do_key_check(r, key, scope));
}

static int do_key_list(pt_registry *r, char **json)
{
    sqlite3_stmt *st;
    json_t *list = json_array();
    if (!list) return pt_error(PT_ENOMEM, "out of memory");
    int rc = q_prep(r, &st, "SELECT label, scope, created_unix, revoked FROM api_keys ORDER BY id", "");
    if (rc) { json_decref(list); return rc; }
    while ((rc = q_step(r, st)) == 1) {
        int64_t rev = sqlite3_column_int64(st, 3);
        json_t *k = json_pack("{s:s, s:s, s:I, s:b, s:o}", "label", (const char *)sqlite3_column_text(st, 0), "scope",
                              scope_name(sqlite3_column_int(st, 1)), "created_unix",
                              (json_int_t)sqlite3_column_int64(st, 2), "revoked", rev != 0, "revoked_unix",
                              rev ? json_integer(rev) : json_null());
        if (!k || json_array_append_new(list, k)) { rc = pt_error(PT_ENOMEM, "out of memory"); break; }
    }
    sqlite3_finalize(st);
    if (rc < 0) { json_decref(list); return rc; }
    return json_take(list, json);
}

/* [{"label", "scope": "read"|"admin", "created_unix", "revoked", "revoked_unix"}] */
int pt_registry_key_list(pt_registry *r, char **json)
{
    *json = NULL;
    LOCKED(r, do_key_list(r, json));
}

/* ---- events and the learner's offset ---- */

/* The rows of one append, parsed and checked: a non-empty array of objects. */
static int events_parse(const char *name, const char *rows_json, size_t len, json_t **out)
{
    json_error_t jerr;
    int rc;
    *out = NULL;
    if ((rc = check_name("model name", name))) return rc;
    if (!rows_json) return pt_error(PT_EINVAL, "events: no rows");
    json_t *rows = json_loadb(rows_json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!rows) return pt_error(PT_EINVAL, "events: not JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    if (!json_is_array(rows) || json_array_size(rows) == 0) {
        json_decref(rows);
        return pt_error(PT_EINVAL, "events: want a non-empty JSON array of row objects");
    }
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) if (!json_is_object(row)) {
        json_decref(rows);
        return pt_error(PT_EINVAL, "events: row %zu: not an object", i + 1);
    }
    *out = rows;
    return PT_OK;
}

/* Inside a transaction: one event per row. */
static int events_insert(pt_registry *r, sqlite3_stmt *st, json_t *rows, int64_t t, int64_t *first, int64_t *last)
{
    size_t i;
    json_t *row;
    int rc;
    json_array_foreach(rows, i, row) {
        char *s = json_dumps(row, JSON_COMPACT);
        if (!s) return pt_error(PT_ENOMEM, "out of memory");
        sqlite3_reset(st);
        int b = sqlite3_bind_text(st, 2, s, -1, free);
        if (b != SQLITE_OK || sqlite3_bind_int64(st, 3, t) != SQLITE_OK) return db_err(r);
        if ((rc = q_step(r, st)) < 0) return rc;
        *last = sqlite3_last_insert_rowid(r->db);
        if (i == 0) *first = *last;
    }
    return PT_OK;
}

/* Appends n batches in one transaction (one fsync): a batch that fails its
 * checks gets its own code in rcs[k] and is left out; the others commit
 * together, or, when the transaction fails, all get its code. */
static const char *events_table(int kind) { return kind == PT_EVENTS_RAW ? "raw_events" : "events"; }

static int do_events_append(pt_registry *r, int n, const char *const *names, const char *const *rows_json,
                            const size_t *lens, const int *kinds, int64_t *first, int64_t *last, int *rcs)
{
    sqlite3_stmt *st = NULL;
    json_t **rows = pt_calloc((size_t)n + 1, sizeof *rows);
    int rc = PT_OK, good = 0;
    if (!rows) return pt_error(PT_ENOMEM, "out of memory");
    for (int k = 0; k < n; k++) {
        first[k] = last[k] = 0;
        if ((rcs[k] = events_parse(names[k], rows_json[k], lens[k], &rows[k])) == PT_OK) good++;
    }
    if (!good) goto done;
    if ((rc = tx_begin(r))) goto done;
    int64_t t = now_unix();
    for (int k = 0; k < n; k++) {
        if (!rows[k]) continue;
        if ((rcs[k] = model_exists(r, names[k]))) { /* this batch only */
            json_decref(rows[k]), rows[k] = NULL;
            continue;
        }
        char sql[96];
        snprintf(sql, sizeof sql, "INSERT INTO %s(model, row, created_unix) VALUES(?, ?, ?)",
                 events_table(kinds ? kinds[k] : PT_EVENTS_ROWS));
        if ((rc = q_prep(r, &st, sql, "s", names[k])) ||
            (rc = events_insert(r, st, rows[k], t, &first[k], &last[k])))
            goto fail;
        sqlite3_finalize(st), st = NULL;
    }
    if ((rc = tx_commit(r))) goto fail;
    goto done;
fail:
    sqlite3_finalize(st);
    tx_abort(r);
    for (int k = 0; k < n; k++)
        if (rows[k]) rcs[k] = rc, first[k] = last[k] = 0;
done:
    for (int k = 0; k < n; k++) json_decref(rows[k]);
    pt_free(rows);
    return rc;
}

static int append_one(pt_registry *r, const char *name, const char *rows_json, size_t len, int64_t *first,
                      int64_t *last)
{
    int64_t f = 0, l = 0;
    int rc1 = PT_OK;
    do_events_append(r, 1, &name, &rows_json, &len, NULL, &f, &l, &rc1);
    if (first) *first = f;
    if (last) *last = l;
    return rc1;
}

/* Validates the rows, then stores each as one event in one transaction. */
int pt_registry_events_append(pt_registry *r, const char *name, const char *rows_json, size_t len, int64_t *first,
                              int64_t *last)
{
    if (first) *first = 0;
    if (last) *last = 0;
    LOCKED(r, append_one(r, name, rows_json, len, first, last));
}

int pt_registry_events_append_many(pt_registry *r, int n, const char *const *names, const char *const *rows_json,
                                   const size_t *lens, const int *kinds, int64_t *first, int64_t *last, int *rcs)
{
    if (n < 0 || (n && (!names || !rows_json || !lens || !first || !last || !rcs)))
        return pt_error(PT_EINVAL, "events_append_many: bad arguments");
    if (!n) return PT_OK;
    LOCKED(r, do_events_append(r, n, names, rows_json, lens, kinds, first, last, rcs));
}

/* Growing text buffer for events_fetch (rows are stored as JSON text already,
 * so they are copied, not parsed and printed again). */
struct sbuf {
    char *p;
    size_t n, cap;
};

static int sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (pt_grow((void **)&b->p, &b->cap, b->n + n + 1, 1)) return PT_ENOMEM;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return PT_OK;
}

static int do_events_fetch(pt_registry *r, const char *name, int kind, int64_t after, int max, char **json,
                           int64_t *last_id)
{
    sqlite3_stmt *st = NULL;
    struct sbuf b = {0};
    int rc;
    if ((rc = check_name("model name", name))) return rc;
    if (max <= 0) return pt_error(PT_EINVAL, "events: max must be > 0");
    if ((rc = q_exec(r, "BEGIN", ""))) return rc;
    if ((rc = model_exists(r, name))) goto done;
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT id, row FROM %s WHERE model = ? AND id > ? ORDER BY id LIMIT ?", events_table(kind));
    if ((rc = q_prep(r, &st, sql, "sIi", name, after, max)) ||
        (rc = sbuf_add(&b, "[", 1)))
        goto done;
    int64_t last = after;
    int n = 0;
    while ((rc = q_step(r, st)) == 1) {
        char head[48];
        last = sqlite3_column_int64(st, 0);
        int k = snprintf(head, sizeof head, "%s{\"id\":%lld,\"row\":", n++ ? "," : "", (long long)last);
        if ((rc = sbuf_add(&b, head, (size_t)k)) ||
            (rc = sbuf_add(&b, (const char *)sqlite3_column_text(st, 1), (size_t)sqlite3_column_bytes(st, 1))) ||
            (rc = sbuf_add(&b, "}", 1)))
            goto done;
    }
    if (rc < 0 || (rc = sbuf_add(&b, "]", 1))) goto done;
    *json = b.p, b.p = NULL;
    if (last_id) *last_id = last;
    rc = PT_OK;
done:
    sqlite3_finalize(st);
    tx_abort(r);
    pt_free(b.p);
    return rc;
}

int pt_registry_events_fetch(pt_registry *r, const char *name, int kind, int64_t after, int max, char **json,
                             int64_t *last_id)
{
    *json = NULL;
    if (last_id) *last_id = after;
    LOCKED(r, do_events_fetch(r, name, kind, after, max, json, last_id));
}

/* One learner position of a model (sql selects it by model name); 0 when none is stored. */
static int position_get(pt_registry *r, const char *sql, const char *name, int64_t *out)
{
    sqlite3_stmt *st;
    int rc;
    if ((rc = check_name("model name", name)) || (rc = model_exists(r, name))) return rc;
    if ((rc = q_prep(r, &st, sql, "s", name))) return rc;
    rc = q_step(r, st);
    *out = rc == 1 ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc < 0 ? rc : PT_OK;
}

/* 0 for a model whose learner has not stored an offset yet. */
int pt_registry_offset_get(pt_registry *r, const char *name, int64_t *offset)
{
    *offset = 0;
    LOCKED(r, position_get(r, "SELECT offset FROM offsets WHERE model = ?", name, offset));
}

static int do_offset_set(pt_registry *r, const char *name, int64_t offset)
{
    int rc;
    if ((rc = check_name("model name", name))) return rc;
    if (offset < 0) return pt_error(PT_EINVAL, "offset must be >= 0");
    if ((rc = tx_begin(r))) return rc;
    if ((rc = model_exists(r, name)) ||
        (rc = q_exec(r, "INSERT OR REPLACE INTO offsets(model, offset) VALUES(?, ?)", "sI", name, offset)) ||
        (rc = tx_commit(r))) {
        tx_abort(r);
        return rc;
    }
    return PT_OK;
}

static int do_events_pending(pt_registry *r, const char *name, int kind, int64_t after, int64_t *n)
{
    sqlite3_stmt *st;
    char sql[80];
    int rc;
    if ((rc = check_name("model name", name))) return rc;
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s WHERE model = ? AND id > ?", events_table(kind));
    if ((rc = q_prep(r, &st, sql, "sI", name, after))) return rc;
    rc = q_step(r, st);
    *n = rc == 1 ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc < 0 ? rc : PT_OK;
}

int pt_registry_events_pending(pt_registry *r, const char *name, int kind, int64_t after, int64_t *n)
{
    if (!n) return pt_error(PT_EINVAL, "events_pending: no output");
    *n = 0;
    LOCKED(r, do_events_pending(r, name, kind, after, n));
}

int pt_registry_offset_set(pt_registry *r, const char *name, int64_t offset)
{
    LOCKED(r, do_offset_set(r, name, offset));
}

/* ---- audit ---- */

static int do_audit(pt_registry *r, int limit, char **json)
{
    sqlite3_stmt *st;
    json_t *list = json_array();
    if (!list) return pt_error(PT_ENOMEM, "out of memory");
    int rc = q_prep(r, &st, "SELECT id, unix, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?", "i",
                    limit > 0 ? limit : -1);
    if (rc) { json_decref(list); return rc; }
    while ((rc = q_step(r, st)) == 1) {
        json_t *d = json_loads((const char *)sqlite3_column_text(st, 4), 0, NULL);
        json_t *a = json_pack("{s:I, s:I, s:s, s:s, s:o}", "id", (json_int_t)sqlite3_column_int64(st, 0), "unix",
                              (json_int_t)sqlite3_column_int64(st, 1), "actor", (const char *)sqlite3_column_text(st, 2),
                              "action", (const char *)sqlite3_column_text(st, 3), "detail", d ? d : json_object());
        if (!a || json_array_append_new(list, a)) { rc = pt_error(PT_ENOMEM, "out of memory"); break; }
    }
    sqlite3_finalize(st);
    if (rc < 0) { json_decref(list); return rc; }
    return json_take(list, json);
}

/* [{"id", "unix", "actor", "action", "detail": {...}}], newest first; limit
 * <= 0: every row. */
int pt_registry_audit(pt_registry *r, int limit, char **json)
{
    *json = NULL;
    LOCKED(r, do_audit(r, limit, json));
}

/* 0 for a model that has learned nothing from raw events yet. */
int pt_registry_raw_samples_get(pt_registry *r, const char *name, int64_t *n)
{
    *n = 0;
    LOCKED(r, position_get(r, "SELECT samples FROM raw_offsets WHERE model = ?", name, n));
}
