/* config.h: the parsed YAML config (docs/config.md is the user's manual).
 * pt_config is the public opaque handle; its fields are internal. */
#ifndef PT_CONFIG_H
#define PT_CONFIG_H

#include <stdint.h>

#include "polytask.h"
#include "train/optim.h"

enum feat_kind { FEAT_CATEGORICAL = 0, FEAT_NUMERIC = 1, FEAT_MULTI = 2 };
enum num_impute { IMPUTE_NONE = 0, IMPUTE_MEAN = 1, IMPUTE_CONST = 2 };
enum num_transform { NUM_STANDARDIZE = 0, NUM_BUCKETIZE = 1, NUM_RAW = 2 };
enum task_type { TASK_BINARY = 0, TASK_REGRESSION = 1 };
enum model_kind { MODEL_LR = 0, MODEL_MLP = 1, MODEL_SHARED_BOTTOM = 2, MODEL_MMOE = 3, MODEL_PLE = 4, MODEL_ESMM = 5 };

#define CONFIG_MAX_TASKS 64
#define CONFIG_MAX_EXPERTS 64
#define CONFIG_MAX_GATE 256       /* experts one gate may mix */

struct feat_cfg {
    char *name;              /* column name */
    enum feat_kind kind;
    int dim;                 /* embedding width (categorical, multi, bucketised) */
    int min_count;           /* vocabulary: ids seen fewer times go to the unknown bucket */
    int64_t hash_buckets;    /* > 0: hash into this many buckets instead of a vocabulary */
    enum num_impute impute;
    float impute_value;
    enum num_transform transform;
    int buckets;             /* quantile buckets for NUM_BUCKETIZE */
    char *sep;               /* multi-valued separator */
    int pool_mean;           /* multi-valued pooling: 1 mean, 0 sum */
};

struct task_cfg {
    char *name;
    char *label;             /* label column */
    enum task_type type;
    char **positive;         /* binary: values mapped to 1 (NULL: "1"/"0") */
    int npositive;
    float weight;
    char *only_when;         /* label counts only where this task's label is 1 */
    int only_when_task;      /* its index, or -1 */
};

/* The samples: section: how `polytask build` turns an event log into sample
 * tables (docs/samples.md). Times and windows in seconds. */
enum samples_gran { GRAN_EVENT = 0, GRAN_SESSION = 1, GRAN_DAY = 2 };

struct samples_table {       /* a file of rows keyed by one column */
    char *path, *delim;
    int header;
    char **columns;          /* names when header is false */
    int ncolumns;
};

struct samples_join {        /* items: or users: joined by id */
    struct samples_table t;
    char *key;               /* the id column */
    char **fields;           /* columns copied into each sample */
    int nfields;
};

struct samples_label {
    char *name, *event;      /* label column; the event type that makes it 1 */
    int64_t window;          /* seconds after the exposure */
    int type;                /* index of event in types */
};

struct samples_cfg {
    struct samples_table events;
    char *col_user, *col_item, *col_time, *col_type, *col_category, *col_session;
    char *every_line;        /* the type of every line when there is no type column */
    int time_format;         /* enum time_format */
    int32_t tz;              /* seconds east of UTC */
    char **types;            /* the known event types */
    int ntypes;
    char *exposure, *purchase;
    int exposure_type, purchase_type; /* indexes in types; purchase -1 when none */
    char **attrs;            /* event columns copied from the exposure line */
    int nattrs;
    enum samples_gran gran;
    int64_t session_gap;
    struct samples_label *labels;
    int nlabels;
    int mark_incomplete;     /* 1: empty label cell; 0: drop the sample */
    int neg_k, neg_popularity;
    char *neg_label;
    uint64_t neg_seed;
    int64_t *windows;        /* user count windows; 0 = all time */
    int nwindows;
    int seq_len, history;
    double prior;
    struct samples_join items, users;
    double valid_fraction, test_fraction;
    int64_t valid_from, test_from; /* INT64_MIN: not given */
    char *cache;             /* build folder train uses; resolved */
    int64_t max_bad_rows;
    char *text;              /* the section as one line of YAML, for the build cache key */
};

/* The recommend: section: what `polytask recommend train` learns from and
 * how (docs/recommend.md). */
enum rec_kind { REC_POPULARITY = 0, REC_ITEM2ITEM = 1, REC_BPR = 2, REC_WARP = 3, REC_SOFTMAX = 4,
                 REC_TWO_TOWER = 5 };
enum rec_protocol { REC_LEAVE_LAST = 0, REC_TIME_SPLIT = 1 };
struct rec_cfg {
    struct samples_table in; /* interactions (path NULL: the samples: section's event log) */
    char **paths;            /* in.path and the files after it, read in turn */
    int jsonl;               /* format.type: jsonl: one JSON object per line, columns are its keys */
    int npaths;
    char *col_user, *col_item, *col_time, *col_weight, *col_type;
    int time_format;         /* enum time_format */
    int32_t tz;
    char **wtypes;           /* event_weights: with a type column only these types count */
    double *wvalues;
    int nwtypes;
    struct samples_table items; /* catalogue (path NULL: none) */
    char **item_paths;       /* items.path and the files after it */
    int nitem_paths;
    double content_weight;   /* new items' content similarity relative to an item's best co-occurrence */
    char *item_id, *item_category, *item_brand, *item_price, *item_title;
    enum rec_kind model;
    int dim, epochs, batch, negatives;
    double lr, l2;
    uint64_t seed;
    int threads;
    int64_t half_life;       /* item2item: recency weight of a user's history; seconds */
    int64_t pop_half_life;   /* popularity decay; seconds, 0: plain counts */
    int neighbours;          /* item2item: neighbours kept per item */
    double alpha;            /* item2item: sim = c_ij / (n_i^alpha n_j^(1-alpha)) */
    int64_t pair_window;     /* item2item: co-occurrence only within this time; 0: whole history */
    int history;             /* two-tower: recent items pooled */
    int cold_min_history;    /* users with fewer items get the popularity blend */
    double cold_blend;       /* weight of popularity for them */
    enum rec_protocol protocol;
    int64_t test_from;       /* time split: INT64_MIN = last 10 % of the time range */
    int k;
    int exclude_seen;
    int64_t max_bad_rows;
};

struct pt_config {
    char *path, *dir;        /* the file and its folder */
    char *yaml;              /* the file's text, kept in model metadata */
    /* data */
    char *train, *valid, *test; /* resolved paths (valid/test may be NULL) */
    char *delim;
    int header;
    char **columns;          /* names when header is false */
    int ncolumns;
    double valid_fraction, test_fraction; /* seeded split of train when no file */
    uint64_t split_seed;
    char **keys;             /* key columns copied by predict */
    int nkeys;
    int64_t max_bad_rows;
    /* features and tasks */
    struct feat_cfg *feats;
    int nfeats;
    struct task_cfg *tasks;
    int ntasks;
    /* model */
    enum model_kind model;
    int *hidden;             /* lr/mlp hidden widths */
    int nhidden;
    float dropout;
    int experts;             /* mmoe: experts; ple: task-specific experts per task */
    int shared_experts;      /* ple: shared experts per level */
    int levels;              /* ple: CGC levels (1 or 2) */
    int *expert_dims;        /* expert / bottom MLP widths */
    int nexpert_dims;
    int *tower_dims;         /* tower MLP widths before the 1-unit output */
    int ntower_dims;
    /* train */
    int epochs, batch;
    enum optim_kind optimizer;
    float lr, l2;
    uint64_t seed;
    int threads;
    int uncertainty;         /* learned uncertainty loss weights */
    float distill;           /* weight of teacher predictions with --teacher */
    int bf16;                /* train.precision: bf16: training GEMMs take bf16 inputs */
    char *es_watch;          /* "valid.<task|mean>.<metric>" or NULL */
    int es_patience;
    struct samples_cfg *samples; /* NULL without a samples: section */
    int built;               /* train/valid/test are what build writes into samples.cache */
    struct rec_cfg *rec;     /* NULL without a recommend: section */
};

/* Parses YAML text (path used for messages and relative paths). */
int config_parse(const char *text, size_t len, const char *path, struct pt_config **out);

/* Index of the task with this name, or -1. */
int config_task_index(const struct pt_config *c, const char *name);

#endif
