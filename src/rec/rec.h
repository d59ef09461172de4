/* rec.h: recommendation internals: interactions, the evaluation split, the
 * retrieval models and the recommender handle behind pt_recommender.
 *
 * Dims: U users, N items, D factor width, K results per user. */
#ifndef PT_REC_H
#define PT_REC_H

#include <stdint.h>

#include "data/config.h"
#include "data/vocab.h"

/* Interactions as read, in file order, ids dense (vocab insertion order). */
struct rec_log {
    int64_t n, cap;
    int32_t *user, *item;
    int64_t *time;           /* 0 everywhere when there is no time column */
    float *weight;           /* 1 when there is no weight column */
    struct vocab users, items;
    int has_time;
    int64_t skipped;         /* lines without a user or item, weight <= 0, or an unweighted type */
    int64_t bad;             /* malformed lines skipped (at most max_bad_rows) */
};

/* A table's column names: its header line, or the configured columns. */
struct csv_reader;
struct rec_names {
    char **names;
    int n, owned;
};
/* Reads the header from rd when t has one. Free with rec_names_free. */
int rec_names_read(struct rec_names *c, struct csv_reader *rd, const struct samples_table *t, const char *file);
void rec_names_free(struct rec_names *c);
/* [out] *out: the index of column want, -1 when want is NULL; an error
 * "FILE:1: no WHAT column 'WANT' in the header" when it is missing. */
int rec_col_index(const struct rec_names *c, const char *want, const char *what, const char *file, int *out);

/* Reads the interactions the recommend: section names (its own table, or
 * the samples: section's event log). Bad lines: "FILE:LINE: what is wrong",
 * skipped and counted up to max_bad_rows, then an error. */
int rec_log_read(const struct pt_config *c, struct rec_log *log);
void rec_log_free(struct rec_log *log);

/* Per-user item lists (CSR): items of user u are item[off[u] .. off[u+1]),
 * in time order (ties: file order), each (user, item) pair once, at its
 * first time. */
struct rec_hist {
    int32_t U;
    int64_t *off;            /* [U+1] */
    int32_t *item;
    int64_t *time;
    float *weight;
};
void rec_hist_free(struct rec_hist *h);

/* The evaluation split: training histories plus held-out items per test user. */
struct rec_split {
    struct rec_hist train;   /* what models learn from */
    int32_t ntest;           /* users with held-out items */
    int32_t *test_user;      /* [ntest] */
    int64_t *test_off;       /* [ntest+1] into test_item */
    int32_t *test_item;
    int64_t *test_time;      /* [ntest]: time of the user's first held-out item */
    int64_t cold_users;      /* time split: users with held-out items but no training item (not scored) */
};

/* Every (user, item) pair once at its first time; no held-out part. */
int rec_hist_build(const struct rec_log *log, struct rec_hist *out);
/* leave_last_out: each user with >= 2 distinct items holds out the latest
 * (ties: file order); users with one item are left out of training too, as
 * the peer's protocol does. time_split: items first met at or after test_from
 * (INT64_MIN: the last 10 % of the log's time range) are held out for users
 * who have a training item. */
int rec_split_make(const struct rec_log *log, enum rec_protocol proto, int64_t test_from, struct rec_split *out);
void rec_split_free(struct rec_split *s);

/* The trained model. Only the members its kind uses are set. */
struct rec_model {
    enum rec_kind kind;
    int32_t U, N, D;
    float *pop;              /* [N] (decayed) popularity: baseline, cold start */
    float *uf, *vf;          /* [U,D], [N,D] factors (bpr, warp, softmax) */
    float *vb;               /* [N] item bias (softmax, two_tower popularity correction), or NULL */
    int64_t *nb_off;         /* item2item: [N+1] into nb_item / nb_sim, best first */
    int32_t *nb_item;
    float *nb_sim;
    int64_t t_end;           /* latest interaction time seen */
    int64_t half_life;       /* item2item history recency, seconds (0: none) */
    int cold_min_history;
    float cold_blend;
    int32_t *item_cat;       /* [N] category id (catalogue), -1 unknown; NULL without a catalogue */
    float *item_price;       /* [N] price (catalogue), NAN unknown; NULL without prices */
    struct rec_tt *tt;       /* two_tower: the towers (vf holds the item tower's outputs) */
};
void rec_model_free(struct rec_model *m);

struct rec_catalog;
/* Cold start for items with no interaction in h: item2item links them both
 * ways to their content neighbours (weight content_weight relative to the
 * linked item's best co-occurrence); factor models give them the
 * similarity-weighted mean of their content neighbours' factors. */
int rec_cold_items(const struct rec_catalog *cat, double content_weight, const struct rec_hist *h, struct rec_model *m);

/* Training (each model its own file). hist: the training histories; t_end:
 * the time the model is trained for. */
int rec_pop_train(const struct rec_hist *h, int32_t N, int64_t t_end, int64_t half_life, float *pop);
int rec_i2i_train(const struct rec_cfg *cfg, const struct rec_hist *h, int32_t N, struct rec_model *m);
int rec_mf_train(const struct rec_cfg *cfg, const struct rec_hist *h, int32_t N, struct rec_model *m);

/* scores[b, 0:N] for the users uids[0..B) with histories h (may hold
 * users the model has no factors for: those get the popularity scores). */
int rec_model_score(const struct rec_model *m, const struct rec_hist *h, const int32_t *uids, int B,
                    float *scores);

/* The best K of scores[0..N) whose deny[j] is 0 (deny may be NULL), best
 * first (higher score, then lower index) into out (and out_score when not
 * NULL); hs, hi: scratch of K. Returns how many (< K when fewer pass). */
int rec_select_row(const float *scores, int32_t N, const uint8_t *deny, int K, float *hs, int32_t *hi, int32_t *out,
                   float *out_score);

/* scores[0:N] for someone the model has not seen, from the items of their
 * first events (item2item: their neighbours; factor models: the mean of
 * their factors as the user's; short histories blend in popularity within
 * their categories). */
int rec_score_history(const struct rec_model *m, const int32_t *items, int n, float *scores);

/* Ranking metrics of a model on a split (docs/recommend.md): hr, recall, ndcg,
 * mrr at K, coverage at K, mean popularity rank of what is recommended.
 * pop_rank: [N] popularity rank of each item in training (1 = most popular). */
struct rec_metrics {
    int64_t users;
    double hr, recall, ndcg, mrr, coverage, pop_rank;
};
int rec_evaluate(const struct rec_model *m, const struct rec_split *s, int K, struct rec_metrics *out);

#endif
