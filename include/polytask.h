/* polytask.h: the one public header of libpolytask.
 *
 * polytask trains and serves multi-task models for e-commerce data. This
 * header is the whole API: anything not declared here is internal. The
 * command-line tool uses nothing else.
 *
 * Conventions
 *   - Every call that can fail returns int: PT_OK (0) or a negative PT_E* code.
 *     The message of the last failure on the calling thread, with file and
 *     line where there is one, is pt_errmsg().
 *   - Results come back through out-parameters marked [out].
 *   - Objects come in create/free pairs; every free accepts NULL.
 *   - Strings returned as char * are owned by the caller: free them with
 *     pt_string_free().
 */
#ifndef POLYTASK_H
#define POLYTASK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PT_VERSION_MAJOR 0
#define PT_VERSION_MINOR 1
#define PT_VERSION_PATCH 0
#define PT_VERSION_HEX ((PT_VERSION_MAJOR << 16) | (PT_VERSION_MINOR << 8) | PT_VERSION_PATCH)

#if defined(__GNUC__)
#define PT_API __attribute__((visibility("default")))
#else
#define PT_API
#endif

/* "MAJOR.MINOR.PATCH" of the linked library. */
PT_API const char *pt_version(void);

/* ---- errors ------------------------------------------------------------ */

/* X(name, code, message): values are only ever appended. */
#define PT_ERRNO_MAP(X)                                                   \
    X(OK, 0, "success")                                                   \
    X(ENOMEM, -1, "out of memory")                                        \
    X(EIO, -2, "input/output error")                                      \
    X(EPARSE, -3, "malformed input")                                      \
    X(ECONFIG, -4, "invalid configuration")                               \
    X(EFORMAT, -5, "malformed model file")                                \
    X(EVERSION, -6, "unsupported model file version")                     \
    X(ECHECKSUM, -7, "model file checksum mismatch")                      \
    X(ESCHEMA, -8, "data does not match the model's schema")              \
    X(EINVAL, -9, "invalid argument")                                     \
    X(ENUMERIC, -10, "non-finite number")                                 \
    X(ETOOMANYBAD, -11, "too many bad rows")                              \
    X(EAUTH, -12, "not authorised")                                       \
    X(ENOTFOUND, -13, "not found")                                        \
    X(EDB, -14, "database error")

enum pt_errno {
#define PT_ERRNO_ENUM(name, code, msg) PT_##name = code,
    PT_ERRNO_MAP(PT_ERRNO_ENUM)
#undef PT_ERRNO_ENUM
};

/* Static text for a PT_E* code. */
PT_API const char *pt_strerror(int code);

/* Message of the last failed call on this thread ("" if none). Valid until
 * the next failing call on the same thread. */
PT_API const char *pt_errmsg(void);

/* ---- logging ----------------------------------------------------------- */

enum pt_log_level { PT_LOG_DEBUG = 0, PT_LOG_INFO = 1, PT_LOG_WARN = 2, PT_LOG_ERROR = 3 };
typedef void (*pt_log_fn)(int level, const char *msg, void *user);

/* Sets where the library's log lines go (default: nowhere). Not thread-safe:
 * call before any other work. */
PT_API void pt_set_log_callback(pt_log_fn fn, void *user);

/* ---- strings ----------------------------------------------------------- */

PT_API void pt_string_free(char *s);

/* ---- configuration ----------------------------------------------------- */

typedef struct pt_config pt_config;

/* Reads and checks a YAML config (docs/config.md). Relative paths in it are
 * taken relative to the config file's folder.
 * [out] *out: free with pt_config_free(). */
PT_API int pt_config_load(const char *path, pt_config **out);
PT_API void pt_config_free(pt_config *cfg);

/* ---- models ------------------------------------------------------------ */

/* ---- building samples from an event log (the config's samples: section) ---- */

typedef struct pt_build_opts {
    int assume_sorted;          /* fail on the first event older than the one before,
                                   instead of sorting the log (bounded memory) */
    int64_t max_bad_rows;       /* <0: the config's samples.max_bad_rows */
    size_t sort_memory;         /* bytes of events held in memory while sorting (0: 256 MiB) */
    int force;                  /* rebuild even when DIR holds a build of the same inputs */
} pt_build_opts;

PT_API pt_build_opts pt_build_opts_default(void);

/* Builds the sample tables of cfg's samples: section into out_dir (NULL: the
 * section's cache folder): train.csv, valid.csv and test.csv as the split
 * asks, and build.json. When out_dir already holds a build of the same
 * section and unchanged input files, nothing is rebuilt. [out] *report: the
 * build report as JSON, free with pt_string_free(); report may be NULL. */
PT_API int pt_build_samples(const pt_config *cfg, const char *out_dir, const pt_build_opts *opts, char **report);

typedef struct pt_model pt_model;

typedef struct pt_progress {
    int epoch, epochs;          /* 1-based current epoch, total epochs */
    const char *task;           /* task being trained (single-task models), or NULL */
    int64_t done, total;        /* samples done in this epoch, samples per epoch */
    double samples_per_s;       /* throughput since the epoch began */
    double loss;                /* running mean training loss in this epoch */
    double eta_s;               /* estimated seconds left for the whole run */
    int end_of_epoch;           /* 1 on the call that closes an epoch */
    const char *valid_json;     /* at end_of_epoch: valid metrics as JSON, or NULL */
} pt_progress;

typedef void (*pt_progress_fn)(const pt_progress *p, void *user);

typedef struct pt_train_opts {
    int threads;                /* 0: the config's train.threads, else 1 */
    int64_t seed;               /* used when has_seed */
    int has_seed;
    int64_t max_bad_rows;       /* <0: the config's data.max_bad_rows */
    const char *checkpoint;     /* file written atomically after each epoch, or NULL */
    int resume;                 /* continue from checkpoint when it exists */
    pt_progress_fn progress;    /* called during training, or NULL */
    void *progress_user;
    const char *init_from;      /* model file: warm-start every tensor whose name and shape match */
    const char *freeze;         /* comma list of groups kept fixed: embeddings, experts, gates,
                                   towers, loss (NULL: none) */
    const char *teacher;        /* model file whose predictions are mixed into the labels
                                   (weight: the config's train.distill_weight), or NULL */
} pt_train_opts;

PT_API pt_train_opts pt_train_opts_default(void);

/* Trains the model the config describes on its train data, with early
 * stopping on its valid data, and evaluates on its test data when named.
 * [out] *out: free with pt_model_free(). */
PT_API int pt_train(const pt_config *cfg, const pt_train_opts *opts, pt_model **out);

/* Summary of the training run as JSON:
 * {"tasks": {"<task>": {"auc": ..., "logloss": ..., ...}}, "train_seconds": ...,
 *  "train_samples_per_second": ..., ...}; "tasks" holds test metrics when the
 * config names a test set, else valid metrics. [out] *json. */
PT_API int pt_model_train_report(const pt_model *m, char **json);

/* Writes the model to one file, atomically (temp file, fsync, rename). */
PT_API int pt_model_save(const pt_model *m, const char *path);

/* Loads a model file; refuses a truncated, corrupted or wrong-version file.
 * [out] *out: free with pt_model_free(). */
PT_API int pt_model_load(const char *path, pt_model **out);
PT_API void pt_model_free(pt_model *m);

typedef struct pt_eval_opts {
    const char *group_by;       /* column for GAUC, or NULL */
    const char *roc_out;        /* CSV file for ROC points, or NULL */
    double threshold;           /* for accuracy / precision / recall / F1 */
    int64_t max_bad_rows;       /* rows that may be skipped, counted */
    int threads;                /* 0: 1 */
    int top_k;                  /* eval with group_by: also rank each group's rows by score and
                                   report NDCG, recall, precision, hit rate and MAP at this K,
                                   and MRR, over groups with a positive (0: off) */
    const char *score_column;   /* eval only: score every task by this numeric feature of the
                                   model instead of its predictions (a baseline such as an
                                   item's popularity); only AUC and GAUC are reported. NULL: off */
} pt_eval_opts;

PT_API pt_eval_opts pt_eval_opts_default(void);

/* Scores a labelled file (the training file format) and reports metrics:
 * {"rows": N, "bad_rows": N, "tasks": {"<task>": {...}}}. [out] *json. */
PT_API int pt_model_eval(pt_model *m, const char *data_path, const pt_eval_opts *opts,
                         char **json);

/* Scores a file and writes a CSV with the config's key columns then one
 * p_<task> column per task; labels are not needed. Atomic write.
 * [out] *rows: rows written (may be NULL). */
PT_API int pt_model_predict_file(pt_model *m, const char *data_path, const char *out_path,
                                 const pt_eval_opts *opts, int64_t *rows);

/* Mean gate weight of each expert, per task gate (MMoE, PLE), over the rows
 * of a file: {"rows": N, "gates": [{"gate": "<name>", "experts": ["<name>",
 * ...], "mean": [...]}, ...]}. PT_EINVAL for a model without gates.
 * [out] *json. */
PT_API int pt_model_gate_stats(pt_model *m, const char *data_path, const pt_eval_opts *opts,
                               char **json);

/* Metadata, schema, parameter counts and metrics as JSON. [out] *json. */
PT_API int pt_model_info(const pt_model *m, char **json);

/* ---- recommendation (docs/recommend.md) ---- */

typedef struct pt_recommender pt_recommender;

typedef struct pt_rec_train_opts {
    int threads;                /* 0: the config's recommend.threads, else 1 */
    int eval;                   /* 1: hold out by recommend.eval's protocol and report metrics
                                   beside the popularity baseline */
    int refit;                  /* 1: after eval, train the kept model on every interaction */
} pt_rec_train_opts;

PT_API pt_rec_train_opts pt_rec_train_opts_default(void);

/* Trains the retrieval model of cfg's recommend: section. [out] *out: free
 * with pt_rec_free(). */
PT_API int pt_rec_train(const pt_config *cfg, const pt_rec_train_opts *opts, pt_recommender **out);

/* The training report as JSON: {"model", "interactions", "users", "items",
 * "eval": {"protocol", "k", "users", "model": {"hr", "recall", "ndcg", "mrr",
 * "coverage", "pop_rank"}, "popularity": {...}}, "train_seconds"}. [out] *json. */
PT_API int pt_rec_report(const pt_recommender *r, char **json);

PT_API int pt_rec_save(const pt_recommender *r, const char *path);
PT_API int pt_rec_load(const char *path, pt_recommender **out);
PT_API void pt_rec_free(pt_recommender *r);

typedef struct pt_rec_query {
    int k;                      /* results per user (default 20) */
    int include_seen;           /* 1: items the user already has may come back */
    const char *const *categories; /* with a catalogue: only these categories (NULL: all) */
    int ncategories;
    int exclude_categories;     /* 1: every category but these */
    const char *const *allow;   /* item ids that may be returned (in stock), or NULL */
    int nallow;
    const char *const *history; /* for a user the model does not know: the items of their first
                                   events (session), which stand in for a history; NULL: none */
    int nhistory;
} pt_rec_query;

PT_API pt_rec_query pt_rec_query_default(void);

/* Top-k items for one user id (an unknown id gets the cold-start answer):
 * {"user": "...", "known": true, "items": [{"item": "...", "score": s}, ...]}.
 * [out] *json. */
PT_API int pt_rec_recommend(const pt_recommender *r, const char *user, const pt_rec_query *q, char **json);

/* Top-k for each user id in users_path (one id per line; NULL: every known
 * user), written atomically to out_csv as user,rank,item,score rows.
 * [out] *users: users written (may be NULL). */
PT_API int pt_rec_recommend_file(const pt_recommender *r, const char *users_path, const pt_rec_query *q,
                                 const char *out_csv, int64_t *users);

enum pt_rank_objective {
    PT_RANK_CTR = 0,            /* p(ctr task) */
    PT_RANK_CTR_CVR = 1,        /* p(ctr task) x p(cvr task) */
    PT_RANK_REVENUE = 2         /* p(ctr task) x p(cvr task) x price (catalogue) */
};

typedef struct pt_rec_rank_opts {
    const char *rank_model;     /* a multi-task model file trained on the config's samples: rows */
    int candidates;             /* retrieved per user before ranking (default 100) */
    enum pt_rank_objective objective;
    const char *ctr_task;       /* task names in the rank model (NULL: its first task) */
    const char *cvr_task;       /* (NULL: its last task) */
    int per_category;           /* diversity: at most this many items of a category in the top k (0: off) */
} pt_rec_rank_opts;

PT_API pt_rec_rank_opts pt_rec_rank_opts_default(void);

/* The ranking stage: for each user of users_path (NULL: every known user),
 * retrieve o->candidates items with r and q's filters, compute each
 * candidate's features as of one second after the last event of cfg's
 * samples: event log (the same features `polytask build` gives training
 * rows), score them with the rank model, order by the objective, apply the
 * diversity rule and write the top q->k to out_csv (atomically) as
 * user,rank,item,score,p_ctr,p_cvr,price,retrieval_rank.
 * [out] *users: users written (may be NULL). */
PT_API int pt_rec_rank_file(const pt_recommender *r, const pt_config *cfg, const char *users_path,
                            const pt_rec_query *q, const pt_rec_rank_opts *o, const char *out_csv,
                            int64_t *users);

/* ---- serving: in-memory scoring (docs/api.md) ---- */

/* Scores rows given as JSON text: an array of objects keyed by the training
 * data's column names, values strings, numbers, booleans or null. A missing
 * column, or null, is an empty cell and takes the training-time default
 * (imputed numeric, unknown category). An unknown column, a value of another
 * type (object, array), more than max_rows rows (0: no limit) or text that is
 * not such an array is PT_EINVAL with a message "row R: column 'C': what is
 * wrong" (or what is wrong with the text). [out] *json: the predictions, an
 * array of {"<task>": p, ...} in row order; free with pt_string_free. */
PT_API int pt_model_predict_json(pt_model *m, const char *rows_json, size_t len, int64_t max_rows, char **json);

/* Labelled rows (pt_model_predict_json's rows, plus each task's label
 * column; a label cell reads as in the training file, empty or null = no
 * label) scored by m. [out] *n rows, *p and *y [n * pt_model_outputs(m)]
 * row-major: prediction and label per output column (label NaN where the
 * row has none); free both with pt_floats_free. */
PT_API int pt_model_score_json(pt_model *m, const char *rows_json, size_t len, int64_t max_rows, int64_t *n,
                               float **p, float **y);
PT_API void pt_floats_free(float *p);
/* Reads labelled rows as pt_model_score_json does, without scoring them: the
 * same errors for the same rows. [out] *n rows (may be NULL). */
PT_API int pt_model_check_json(pt_model *m, const char *rows_json, size_t len, int64_t max_rows, int64_t *n);

/* Output columns of m: its tasks in config order (ESMM: ctr, cvr, ctcvr). */
PT_API int pt_model_outputs(const pt_model *m);
/* Name of output column j, or NULL when out of range. */
PT_API const char *pt_model_output_name(const pt_model *m, int j);

/* Online learning: trains m in place on labelled rows, in their order, one
 * optimiser step per chunk of at most the config's train.batch rows, with
 * the config's optimiser and learning rate (lr > 0 overrides it). The
 * optimiser state lives in m from the first call (fresh after a load). Not
 * to be called while other threads score with m. [out] *loss: mean training
 * loss over the rows' labelled tasks (may be NULL). */
PT_API int pt_model_learn_json(pt_model *m, const char *rows_json, size_t len, int64_t max_rows, double lr,
                               double *loss);

/* ---- online samples from raw events (docs/samples.md, "Online") ---- */

/* A model trained from built samples (its config has a samples: section)
 * can learn from raw events: objects keyed by the event log's columns
 * (user, item, type, time, ... as samples.columns names them). */
typedef struct pt_builder pt_builder;

/* Checks raw events, a JSON array, as pt_builder_push_json reads them:
 * PT_EINVAL "event R: what is wrong" for an unknown column, a missing user,
 * item or time, an unknown type, a bad timestamp, more than max_rows (0: no
 * limit); PT_EINVAL too when m's config has no samples: section. [out] *n
 * events (may be NULL). */
PT_API int pt_model_check_events_json(pt_model *m, const char *events_json, size_t len, int64_t max_rows, int64_t *n);
/* The sample builder of m's samples: section, kept open: features from
 * earlier events only, labels once each window has passed, as `polytask
 * build` makes them. replay: read the config's event log first, so features
 * see the history training saw (its own samples are not handed out). dir:
 * where rows wait for their labels (a scratch file). [out] *out. */
PT_API int pt_builder_open(pt_model *m, const char *dir, int replay, pt_builder **out);
/* Pushes raw events in the order they were accepted. One older than the
 * newest before it is taken at that newest time (counted late); one that
 * cannot be built from is skipped and counted. [out] *used (may be NULL). */
PT_API int pt_builder_push_json(pt_builder *b, const char *events_json, size_t len, int64_t *used);
/* The samples whose windows have passed since the last call, as labelled
 * rows for pt_model_learn_json (a JSON array; the model's columns only), the
 * first skip of them left out. [out] *json (pt_string_free), *n rows. */
PT_API int pt_builder_take_json(pt_builder *b, int64_t skip, char **json, int64_t *n);
typedef struct pt_builder_stats {
    int64_t events;  /* pushed and used */
    int64_t late;    /* taken at a later time than theirs */
    int64_t bad;     /* skipped */
    int64_t rows;    /* samples handed out or skipped by take */
    int64_t waiting; /* samples whose windows are still open */
} pt_builder_stats;
PT_API void pt_builder_counts(const pt_builder *b, pt_builder_stats *s);
PT_API void pt_builder_close(pt_builder *b);

/* ROC AUC of scores p against 0/1 labels y over n pairs (pairs with a NaN
 * label left out); NaN when only one class is present. */
PT_API double pt_auc(const float *p, const float *y, int64_t n);

/* Input drift: the population stability index, per feature, of the rows
 * pt_model_predict_json scored since m was loaded, against the training
 * data's distribution stored in the model file (docs/operations.md):
 * {"rows": N, "features": [{"name": "...", "psi": x}, ...]} (psi null until
 * rows were scored; features of model files written without the reference
 * distribution are left out). [out] *json: free with pt_string_free. */
PT_API int pt_model_drift(const pt_model *m, char **json);

/* ---- model registry (docs/operations.md): one SQLite database ---- */

typedef struct pt_registry pt_registry;

enum pt_scope { PT_SCOPE_READ = 1, PT_SCOPE_ADMIN = 2 };

/* Opens (creating when missing) the registry database at path, in WAL mode,
 * with its tables: models, versions, active version per model, A/B splits,
 * accepted events, API keys (hashed) and the audit log. [out] *out: close
 * with pt_registry_close. */
PT_API int pt_registry_open(const char *path, pt_registry **out);
PT_API void pt_registry_close(pt_registry *r);

/* Checks a model file (checksum, schema: it must load) and records it as the
 * next version of model `name` (created when new), with its path, SHA-256,
 * stored metrics, parent version (0: none) and actor; audited. The first
 * version of a model becomes active. [out] *version (may be NULL). */
PT_API int pt_registry_import(pt_registry *r, const char *name, const char *model_path, int parent,
                              const char *actor, int *version);
/* Makes version the active one (after checking its file again); audited. */
PT_API int pt_registry_activate(pt_registry *r, const char *name, int version, const char *actor);
/* Activates the version that was active before the current one; audited.
 * [out] *version: the now active version (may be NULL). */
PT_API int pt_registry_rollback(pt_registry *r, const char *name, const char *actor, int *version);
/* Serves versions[0..n) with weights (summing to > 0) by a stable hash of a
 * user id; n = 0 clears the split. Audited. */
PT_API int pt_registry_split(pt_registry *r, const char *name, const int *versions, const double *weights, int n,
                             const char *actor);
/* Models, versions, the active one and the split as JSON:
 * {"models": [{"name", "active", "split": [{"version", "weight"}], "versions":
 * [{"version", "path", "sha256", "metrics", "parent", "created_by", "created_unix"}]}]}
 * (name NULL: every model). [out] *json. */
PT_API int pt_registry_list(pt_registry *r, const char *name, char **json);
/* As pt_registry_list, with only the versions being served in "versions"
 * (the active one and the A/B split's): what a server polls, cheap however
 * many versions the online learner has published. [out] *json. */
PT_API int pt_registry_served(pt_registry *r, const char *name, char **json);
/* The file path of the version to serve: the active one, or by the split
 * for user (may be NULL). [out] *path (pt_string_free), *version. */
PT_API int pt_registry_resolve(pt_registry *r, const char *name, const char *user, char **path, int *version);

/* A new random API key with scope PT_SCOPE_READ or PT_SCOPE_ADMIN, stored
 * hashed (libsodium); the key itself is returned once. Audited.
 * [out] *key: pt_string_free. */
PT_API int pt_registry_key_create(pt_registry *r, const char *label, int scope, const char *actor, char **key);
PT_API int pt_registry_key_revoke(pt_registry *r, const char *label, const char *actor);
/* [out] *scope of a valid key; PT_EAUTH (message without the key) otherwise. */
PT_API int pt_registry_key_check(pt_registry *r, const char *key, int *scope);
/* Labels, scopes and creation times (never the keys) as JSON. [out] *json. */
PT_API int pt_registry_key_list(pt_registry *r, char **json);

/* Two kinds of events, each with its own ids and learner position:
 * labelled rows (the training data's columns) and raw events (the event
 * log's columns, turned into samples by pt_builder). */
enum pt_events_kind { PT_EVENTS_ROWS = 0, PT_EVENTS_RAW = 1 };

/* Appends accepted events (a JSON array of labelled rows) for model name in
 * one transaction, durable (synchronous=FULL) when this returns PT_OK.
 * [out] *first, *last: their ids. */
PT_API int pt_registry_events_append(pt_registry *r, const char *name, const char *rows_json, size_t len,
                                     int64_t *first, int64_t *last);
/* Group commit: appends n batches (names[k], rows_json[k] of lens[k] bytes,
 * as pt_registry_events_append; of kinds[k], a pt_events_kind, all
 * PT_EVENTS_ROWS when kinds is NULL) in one transaction, so one fsync makes them
 * all durable. A batch that fails its own checks (not a non-empty array of
 * objects, unknown model) gets its code in rcs[k] and is left out; the rest
 * commit together. Returns PT_OK, or the transaction's failure, which every
 * batch then carries in rcs. [out] first[k], last[k]: ids per batch. */
PT_API int pt_registry_events_append_many(pt_registry *r, int n, const char *const *names,
                                          const char *const *rows_json, const size_t *lens, const int *kinds,
                                          int64_t *first, int64_t *last, int *rcs);
/* Up to max events of name and kind with id > after as a JSON array of
 * {"id": N, "row": {...}}. [out] *json, *last_id (after when none). */
PT_API int pt_registry_events_fetch(pt_registry *r, const char *name, int kind, int64_t after, int max, char **json,
                                    int64_t *last_id);
/* Events of name and kind with id > after. [out] *n. */
PT_API int pt_registry_events_pending(pt_registry *r, const char *name, int kind, int64_t after, int64_t *n);
/* The online learner's publish, in one transaction: records model_path as
 * the next version of name (checked as by import) with parent as its
 * parent, activates it and sets the learner's offset (last labelled row
 * learned) and, when raw_samples >= 0, how many samples built from raw
 * events it has learned, all or nothing.
 * PT_EINVAL, changing nothing, when parent is no longer the active version
 * (an operator activated another meanwhile). [out] *version (may be NULL). */
PT_API int pt_registry_publish(pt_registry *r, const char *name, const char *model_path, int parent, int64_t offset,
                               int64_t raw_samples, const char *actor, int *version);
/* Samples built from name's raw events that published versions have learned. [out] *n. */
PT_API int pt_registry_raw_samples_get(pt_registry *r, const char *name, int64_t *n);
/* The online learner's position (last consumed event id) for name: get and set (set is transactional). */
PT_API int pt_registry_offset_get(pt_registry *r, const char *name, int64_t *offset);
PT_API int pt_registry_offset_set(pt_registry *r, const char *name, int64_t offset);
/* The audit log, newest first, as JSON (limit rows). [out] *json. */
PT_API int pt_registry_audit(pt_registry *r, int limit, char **json);

/* ---- the HTTP server (docs/api.md) ---- */

typedef struct pt_serve_opts {
    const char *registry;       /* registry database (pt_registry_open) */
    const char *listen;         /* "HOST:PORT" (default "127.0.0.1:8080") */
    int threads;                /* request threads (default 4) */
    int insecure_no_auth;       /* 1: no API keys checked (local use only) */
    size_t max_body;            /* bytes (default 8 MiB) */
    int64_t max_rows;           /* rows per request (default 10,000) */
    int max_depth;              /* JSON nesting (default 16) */
    int timeout_s;              /* idle connection timeout (default 30) */
    /* the online learner (docs/operations.md) */
    int no_learn;               /* 1: events are stored, nothing learns from them */
    int learn_batch;            /* events per micro-batch (default 512) */
    int64_t publish_events;     /* publish a new version after this many events (default 10,000) */
    double publish_seconds;     /* or this long after the first unpublished one (default 60) */
    double learn_lr;            /* learning rate (0: the model config's train.lr) */
    const char *model_dir;      /* where published model files go (NULL: FILE.db's folder/online) */
} pt_serve_opts;

PT_API pt_serve_opts pt_serve_opts_default(void);

/* Serves the registry's active models until SIGTERM or SIGINT, then stops
 * accepting, lets in-flight requests finish and returns PT_OK. ready, when
 * not NULL, is called once the socket listens (with the port). */
PT_API int pt_serve(const pt_serve_opts *o, void (*ready)(int port, void *user), void *user);

#ifdef __cplusplus
}
#endif
#endif
