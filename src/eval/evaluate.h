/* evaluate.h: per-task metrics of a model's predictions on a data set, as
 * JSON (the "tasks" object of every report). */
#ifndef PT_EVALUATE_H
#define PT_EVALUATE_H

#include <jansson.h>

#include "models/model.h"

/* {"<task>": {"rows", "positives", "auc", "gauc", "logloss", "calibration",
 * "accuracy", "precision", "recall", "f1"} or {"rows", "rmse", "mae"}} for
 * predictions p[n, T]; rows with a missing label are skipped per task. GAUC
 * when d->group is set. ranking_only: p are scores, not probabilities, so
 * only rows, positives, AUC and GAUC. top_k > 0 with d->group: top-K ranking
 * metrics per group ("k", "ndcg_at_k", ..., "mrr", "topk_groups"). ROC points to roc_out (CSV) when not NULL.
 * [out] *out: a new reference. */
int eval_tasks(const struct model *m, const struct dataset *d, const float *p, double threshold,
               const char *roc_out, int ranking_only, int top_k, json_t **out);

/* Top-K ranking metrics of scores p against labels y (> 0.5 relevant)
 * within each group g, averaged over the groups with a relevant row, into o:
 * "k", "ndcg_at_k", "recall_at_k", "precision_at_k", "hit_at_k", "map_at_k",
 * "mrr", "topk_groups". Rows of a group are ranked by score, ties in file order. */
int eval_topk(const float *y, const float *p, const int32_t *g, size_t n, int k, json_t *o);

/* Value of metric for task (or "mean" over tasks) in a tasks object; NaN if
 * absent. "loss" means logloss for binary tasks and rmse for regression. */
double eval_metric(const json_t *tasks, const struct pt_config *c, const char *task, const char *metric);

/* 1 when a larger value of metric is better. */
int eval_higher_is_better(const char *metric);

/* The rows of a JSON array of {"<column>": value} objects (see
 * predict_json.c) encoded with m's fitted schema into a new data set, with
 * each task's label when labels is set (NaN where absent). More than
 * max_rows rows (0: no limit), an unknown column or a bad value is PT_EINVAL
 * "row R: ...". [out] *out: free with dataset_free. */
int rows_json_encode(const struct model *m, const char *rows_json, size_t len, int64_t max_rows, int labels,
                     struct dataset **out);

#endif
