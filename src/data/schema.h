/* schema.h: what the encoder learned from the training data (vocabularies,
 * numeric statistics, quantile bounds) and the columnar data set it fills.
 *
 * Slots: every feature maps to one input slot of the model:
 *   categorical and bucketised numeric → a "cat" slot (int32 id per row,
 *   0 = unknown) with an embedding table of `rows` rows;
 *   multi-valued → a "multi" slot (CSR offsets + int32 ids);
 *   standardised / raw numeric → a "num" slot (float per row).
 * Labels are float32 [n, T] row-major, NaN where missing. */
#ifndef PT_SCHEMA_H
#define PT_SCHEMA_H

#include <jansson.h>
#include <stdint.h>

#include "data/config.h"
#include "data/vocab.h"

struct drift_ref;

struct feat_state {
    const struct feat_cfg *cfg;
    int slot;               /* index among cat / multi / num slots */
    int is_cat;             /* embedding slot (cat or bucketised numeric) */
    int32_t rows;           /* embedding table rows (cat and multi) */
    struct vocab vocab;     /* final vocabulary: id k+1 = vocab entry k */
    /* fitting only */
    struct vocab fit;       /* provisional ids in first-seen order */
    int32_t *remap;         /* provisional → final id, after finalise */
    /* numeric */
    double mean, std;
    float impute_value;
    float *bounds;          /* bucket boundaries, nbounds ascending */
    int nbounds;
    int64_t imputed;        /* values imputed while reading (reported) */
    struct drift_ref *drift; /* training distribution and live counts (data/drift.h), or NULL */
};

struct schema {
    const struct pt_config *cfg;
    int nfeat;
    struct feat_state *f;
    int ncat, nmulti, nnum, ntasks;
    int fitted;             /* finalised (vocabularies frozen) */
    int64_t drift_rows;     /* rows drift_count saw (atomic; drift.h) */
};

struct dataset {
    int64_t n, cap;
    int ncat, nmulti, nnum, ntasks;
    int32_t **cat;          /* [ncat][n] */
    int32_t **moff;         /* [nmulti][n + 1] */
    int32_t **mids;         /* [nmulti][mlen] */
    int64_t *mlen, *mcap;
    float **num;            /* [nnum][n] */
    float *y;               /* [n * ntasks] */
    int32_t *group;         /* [n] when a group column is read */
    struct vocab groups;
    char **keys;            /* [n] "k1,k2" CSV-ready key text when keys are read */
    int64_t bad_rows;
};

int schema_create(struct schema **out, const struct pt_config *cfg);
void schema_free(struct schema *s);

int dataset_create(struct dataset **out, const struct schema *s);
void dataset_free(struct dataset *d);
/* Empties d for reuse (keeps its buffers). */
void dataset_clear(struct dataset *d);
/* Frees d's single-valued cells and labels (cat, num, y), keeping n and the
 * rest, for a training set whose rows were copied elsewhere (model_pack):
 * d may then only be freed. */
void dataset_drop_cells(struct dataset *d);

enum {
    READ_FIT = 1,         /* training file: grow provisional vocabularies, keep raw numerics */
    READ_LABELS = 2,      /* labels required */
    READ_KEYS = 4,        /* keep key columns (predict) */
};

struct read_opts {
    int flags;
    int64_t max_bad_rows;
    const char *group_by;     /* column read into d->group, or NULL */
    double valid_fraction, test_fraction; /* READ_FIT: rows routed to dst[1] / dst[2] */
    uint64_t split_seed;
    int64_t max_rows;         /* stop after this many rows (0: all); for chunked predict */
};

struct data_reader;

/* Opens a data file in the config's format and resolves the columns the
 * schema needs; a missing column is PT_ESCHEMA "FILE:1: ...". */
int data_reader_open(struct data_reader **out, const struct schema *s, const char *path,
                     const struct read_opts *o);
/* Appends rows to dst[0] (and dst[1], dst[2] for a fraction split), at most
 * o->max_rows a call when that is set. Returns PT_OK; *eof = 1 when the file
 * is done. */
int data_reader_read(struct data_reader *r, struct schema *s, struct dataset **dst, int *eof);
void data_reader_close(struct data_reader *r);
/* Header of the key columns ("k1,k2") for predict output. */
const char *data_reader_key_header(const struct data_reader *r);

/* In-memory rows (serving) through the same encoder as a file's records,
 * so a value means the same wherever it comes from: a reader with no file
 * whose rows are given one at a time as strings. It only reads s (it keeps
 * no imputed count), so rows readers on one fitted schema may run on several
 * threads at once. Messages read "WHAT R: column 'C': ..." (what is
 * copied). With labels, rows carry the tasks' label cells too (parsed as a
 * file's: positive values, only_when masks), else labels are NaN.
 * [out] *out: free with data_reader_close(). */
int data_reader_open_rows(struct data_reader **out, const struct schema *s, const char *what, int labels);
/* Encodes one row with the fitted schema and appends it to d (no keys or
 * group): fields[i] (lens[i] bytes, NUL-terminated) is the text of feature
 * s->f[i] as a CSV cell would hold it, then, for a reader with labels,
 * fields[nfeat + t] the label cell of task t; NULL is an empty cell (the
 * training-time default; a missing label). A bad value is PT_EPARSE or PT_ENUMERIC with the
 * message set, and d is unchanged. */
int data_reader_add_row(struct data_reader *r, struct schema *s, struct dataset *d, const char *const *fields,
                        const size_t *lens, long row);

/* Whole file into dst (one call of open/read/close). */
int data_load(struct schema *s, const char *path, const struct read_opts *o, struct dataset **dst);

/* After reading the training file(s) in READ_FIT mode: fixes vocabularies
 * (min-count), numeric statistics and bucket bounds from dst[0] only, and
 * rewrites every data set in ds[0..nds) from provisional to final encoding. */
int schema_finalize(struct schema *s, struct dataset **ds, int nds);

/* Learned state as JSON (vocabularies, statistics), a new reference in
 * *out; and back. The text forms wrap these (NULL: the error is set). */
int schema_json(const struct schema *s, json_t **out);
int schema_load_json(struct schema *s, const json_t *root, const char *name);
char *schema_to_json(const struct schema *s);
int schema_from_json(struct schema *s, const char *json, const char *name);

#endif
