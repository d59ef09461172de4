/* drift.h: each feature's training distribution, binned, and live counts of
 * the rows scored since the model was loaded, for the population stability
 * index (pt_model_drift, src/eval/drift_report.c; docs/operations.md).
 *
 * Bins are over the encoded values the model consumes (what schema_finalize
 * wrote), so a vocabulary's min-count and a bucketiser's bounds are already
 * applied:
 *   cat slot (categorical, bucketised numeric; id 0 = unknown) and multi slot
 *     (every id of every list): the DRIFT_TOP most frequent training ids
 *     (ties: smaller id first), one bin each, then one "other" bin;
 *   num slot (standardised or raw numeric): the training deciles as up to 9
 *     strictly ascending edges; x goes to the first bin whose edge > x
 *     (upper bound), so edges e0 < e1 give bins (-inf, e0), [e0, e1),
 *     [e1, +inf); NaN lands in the last bin.
 * K = nkeys + 1 bins. */
#ifndef PT_DRIFT_H
#define PT_DRIFT_H

#include <jansson.h>
#include <stdint.h>

struct schema;
struct feat_state;
struct dataset;

#define DRIFT_TOP 9       /* ids with a bin of their own per cat / multi feature */
#define DRIFT_QUANTILES 10 /* num features: deciles */
#define DRIFT_MAX_BINS 64 /* accepted from a model file (room for finer bins later) */

struct drift_ref {
    int nkeys;            /* ids or edges */
    int nbins;            /* nkeys + 1 */
    int32_t *ids;         /* [nkeys] cat and multi slots, else NULL; bin nkeys: every other id */
    float *edges;         /* [nkeys] num slots, strictly ascending, else NULL */
    float *p;             /* [nbins] training fraction per bin */
    int64_t *live;        /* [nbins] live counts: relaxed atomic adds and loads only */
};

/* Fits every feature's reference on the final-encoded training set (replacing
 * any it had); a feature whose training set holds no value (a multi-valued
 * column always empty) gets none. Call once the encoding is final. */
int drift_fit(struct schema *s, const struct dataset *train);

/* Adds rows [from, from + n) of d (within d->n), encoded with s, to the
 * live counts of every feature with a reference and to the live row total
 * (which counts rows even when no feature has a reference). Safe on any
 * number of threads at once on one schema (the counters are the only state
 * it writes: atomics, relaxed, one add per bin and call); allocates nothing
 * and cannot fail. */
void drift_count(const struct schema *s, const struct dataset *d, int64_t from, int64_t n);

/* Rows counted by drift_count since s was created or loaded. */
int64_t drift_rows(const struct schema *s);

/* PSI of r's live counts against its training fractions (both floored, see
 * drift.c); NaN while nothing has been counted. Reads the counters with
 * relaxed loads: a snapshot while other threads count may mix rows, which
 * a monitoring figure tolerates. */
double drift_psi(const struct drift_ref *r);

void drift_ref_free(struct drift_ref *r);

/* Sorts v[0..n) (no NaN) ascending, in the order of a stable sort on < and
 * >: -0 and +0 keep their input order. Also for schema.c's bucket bounds.
 * Errors: PT_ENOMEM. */
int drift_sort_floats(float *v, int64_t n);

/* The reference as {"ids": [...], "p": [...]} or {"edges": [...], "p": [...]};
 * NULL when out of memory. [out] a new reference: json_decref it. */
json_t *drift_to_json(const struct drift_ref *r);

/* Reads o (a feature's "drift" member) into f->drift, checking it against
 * f's slot: "ids" for cat and multi slots (each in [0, f->rows)), "edges"
 * for num slots (finite, strictly ascending), at most DRIFT_MAX_BINS - 1 of
 * them, and "p" one longer, finite and >= 0. PT_EFORMAT "NAME: schema
 * feature 'F': drift reference: ..." otherwise, leaving f->drift NULL. */
int drift_from_json(struct feat_state *f, const json_t *o, const char *name);

#endif
