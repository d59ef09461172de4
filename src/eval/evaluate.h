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
 * only rows, positives, AUC and GAUC. ROC points to roc_out (CSV) when not NULL.
 * [out] *out: a new reference. */
int eval_tasks(const struct model *m, const struct dataset *d, const float *p, double threshold,
               const char *roc_out, int ranking_only, json_t **out);

/* Value of metric for task (or "mean" over tasks) in a tasks object; NaN if
 * absent. "loss" means logloss for binary tasks and rmse for regression. */
double eval_metric(const json_t *tasks, const struct pt_config *c, const char *task, const char *metric);

/* 1 when a larger value of metric is better. */
int eval_higher_is_better(const char *metric);

#endif
