/* metrics.h: quality measures for binary and regression tasks. Callers drop
 * rows with missing labels before calling. All in double precision; results
 * agree with scikit-learn (tests/ref fixtures). */
#ifndef PT_METRICS_H
#define PT_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Exact ROC AUC with ties between scores counted half (the Mann-Whitney
 * statistic, = sklearn.metrics.roc_auc_score). NaN if only one class is
 * present. Labels: > 0.5 positive. O(n log n); allocates (returns NaN on
 * allocation failure). */
double metric_auc(const float *y, const float *p, size_t n);

/* Group AUC: AUC per group (group ids int32), averaged with weights = the
 * group's sample count, skipping groups with only one class. NaN if no group
 * qualifies. *groups_used (may be NULL) receives the number of groups used. */
double metric_gauc(const float *y, const float *p, const int32_t *group, size_t n,
                   size_t *groups_used);

/* Mean binary cross-entropy with p clipped to [1e-7, 1-1e-7]
 * (= sklearn.metrics.log_loss with eps=1e-7). */
double metric_logloss(const float *y, const float *p, size_t n);

struct metric_cls {
    double accuracy, precision, recall, f1; /* precision/recall/f1 0 when undefined, like sklearn's zero_division=0 */
    int64_t tp, fp, tn, fn;
};
/* Predicted positive when p >= threshold. */
struct metric_cls metric_at_threshold(const float *y, const float *p, size_t n, double threshold);

/* mean(p) / mean(y); NaN when mean(y) is 0. */
double metric_calibration(const float *y, const float *p, size_t n);

double metric_rmse(const float *y, const float *p, size_t n);
double metric_mae(const float *y, const float *p, size_t n);

/* ROC curve points as sklearn.metrics.roc_curve(drop_intermediate=False):
 * one point per distinct threshold, starting at (0, 0) with threshold +inf.
 * [out] *fpr, *tpr, *thr: arrays of *npts, free each with pt_free. */
int metric_roc_curve(const float *y, const float *p, size_t n, double **fpr, double **tpr,
                     double **thr, size_t *npts);

#endif
