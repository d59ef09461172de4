/* metrics.c: binary-classification and regression metrics over float arrays,
 * accumulated in double and checked against scikit-learn by
 * tests/ref/test_ref_metrics.c.
 *
 * The ranking metrics (AUC, GAUC, ROC curve) sort once with an LSD radix sort
 * on the float bits mapped to an order-preserving unsigned key: it runs every
 * epoch on 10^4..10^5 rows, where a radix sort beats qsort's comparator calls,
 * and it needs no tie-breaking rule because ties are aggregated per distinct
 * score. AUC is computed from integer counts (twice the Mann-Whitney U), so it
 * is exact up to the final division.
 *
 * Deliberately not here: weighted samples, multi-class metrics, ranking
 * metrics such as NDCG (their own file). A NaN score makes AUC/GAUC NaN and
 * the ROC curve an error, because no order is defined for it; NaN labels count
 * as negative (callers drop missing labels first). */
#include <math.h>
#include <string.h>

#include "eval/metrics.h"
#include "util/util.h"

/* Logloss clipping, as sklearn.metrics.log_loss(eps=1e-7). */
#define LOGLOSS_EPS 1e-7

/* One row to sort: key = (group key << 32) | score key; pos = label is
 * positive. */
struct item {
    uint64_t key;
    uint32_t pos;
};

/* Maps a float to a uint32 whose unsigned order is the float order. -0.0 is
 * folded into +0.0 first, since they compare equal and must form one tie. */
static uint32_t score_key(float p)
{
    uint32_t b;
    if (p == 0.0f) p = 0.0f;
    memcpy(&b, &p, sizeof b);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

static float score_from_key(uint32_t k)
{
    uint32_t b = (k & 0x80000000u) ? (k ^ 0x80000000u) : ~k;
    float p;
    memcpy(&p, &b, sizeof p);
    return p;
}

/* Flipping the sign bit makes int32 group ids sort in signed order. */
static uint64_t group_key(int32_t g) { return (uint64_t)((uint32_t)g ^ 0x80000000u); }

/* Sorts a[0..n) ascending by key using tmp[0..n) as scratch; returns whichever
 * of a/tmp holds the result. Byte positions where every key agrees are
 * skipped, so AUC keys (upper 32 bits zero) cost at most 4 passes. */
static struct item *radix_sort(struct item *a, struct item *tmp, size_t n)
{
    static const int NB = 8;
    size_t count[8][256];
    memset(count, 0, sizeof count);
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < NB; b++) count[b][(a[i].key >> (8 * b)) & 0xff]++;
    for (int b = 0; b < NB; b++) {
        size_t *c = count[b];
        if (n == 0 || c[(a[0].key >> (8 * b)) & 0xff] == n) continue;
        size_t sum = 0;
        for (int v = 0; v < 256; v++) {
            size_t t = c[v];
            c[v] = sum;
            sum += t;
        }
        for (size_t i = 0; i < n; i++) tmp[c[(a[i].key >> (8 * b)) & 0xff]++] = a[i];
        struct item *s = a;
        a = tmp;
        tmp = s;
    }
    return a;
}

/* Allocates 2n items (rows + radix scratch). NULL with a message on failure. */
static struct item *items_alloc(size_t n)
{
    if (n > SIZE_MAX / (2 * sizeof(struct item))) {
        pt_error(PT_ENOMEM, "metrics: %zu rows is too many to sort", n);
        return NULL;
    }
    struct item *it = pt_malloc(2 * n * sizeof *it);
    if (!it) pt_error(PT_ENOMEM, "metrics: out of memory sorting %zu rows", n);
    return it;
}

static int has_nan(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(p[i])) return 1;
    return 0;
}

/* AUC of a[0..n) sorted ascending by score, ties = equal low 32 key bits.
 * Each positive earns 2 per negative strictly below it and 1 per tied
 * negative, so `twice` is 2U in exact integers. NaN if one class. */
static double auc_sorted(const struct item *a, size_t n)
{
    uint64_t npos = 0, nneg = 0, twice = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t s = (uint32_t)a[i].key;
        uint64_t pos = 0;
        size_t j = i;
        for (; j < n && (uint32_t)a[j].key == s; j++) pos += a[j].pos;
        uint64_t neg = (uint64_t)(j - i) - pos;
        twice += pos * (2 * nneg + neg);
        npos += pos;
        nneg += neg;
        i = j;
    }
    if (npos == 0 || nneg == 0) return NAN;
    return (double)twice / (2.0 * (double)npos * (double)nneg);
}

double metric_auc(const float *y, const float *p, size_t n)
{
    if (n == 0 || has_nan(p, n)) return NAN;
    struct item *buf = items_alloc(n);
    if (!buf) return NAN;
    for (size_t i = 0; i < n; i++) {
        buf[i].key = score_key(p[i]);
        buf[i].pos = y[i] > 0.5f;
    }
    double auc = auc_sorted(radix_sort(buf, buf + n, n), n);
    pt_free(buf);
    return auc;
}

double metric_gauc(const float *y, const float *p, const int32_t *group, size_t n,
                   size_t *groups_used)
{
    if (groups_used) *groups_used = 0;
    if (n == 0 || has_nan(p, n)) return NAN;
    struct item *buf = items_alloc(n);
    if (!buf) return NAN;
    for (size_t i = 0; i < n; i++) {
        buf[i].key = group_key(group[i]) << 32 | score_key(p[i]);
        buf[i].pos = y[i] > 0.5f;
    }
    const struct item *a = radix_sort(buf, buf + n, n);
    double sum = 0.0, weight = 0.0;
    size_t used = 0;
    for (size_t i = 0; i < n;) {
        uint64_t g = a[i].key >> 32;
        size_t j = i;
        while (j < n && a[j].key >> 32 == g) j++;
        double auc = auc_sorted(a + i, j - i);
        if (!isnan(auc)) { /* NaN here only means a one-class group */
            sum += (double)(j - i) * auc;
            weight += (double)(j - i);
            used++;
        }
        i = j;
    }
    pt_free(buf);
    if (groups_used) *groups_used = used;
    return used ? sum / weight : NAN;
}

double metric_logloss(const float *y, const float *p, size_t n)
{
    if (n == 0) return NAN;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double q = p[i];
        if (q < LOGLOSS_EPS) q = LOGLOSS_EPS;
        if (q > 1.0 - LOGLOSS_EPS) q = 1.0 - LOGLOSS_EPS;
        double t = y[i]; /* used as given, so soft labels give the cross-entropy */
        sum -= t * log(q) + (1.0 - t) * log(1.0 - q);
    }
    return sum / (double)n;
}

struct metric_cls metric_at_threshold(const float *y, const float *p, size_t n, double threshold)
{
    struct metric_cls m = {0};
    for (size_t i = 0; i < n; i++) {
        int pred = (double)p[i] >= threshold, pos = y[i] > 0.5f;
        if (pred && pos) m.tp++;
        else if (pred) m.fp++;
        else if (pos) m.fn++;
        else m.tn++;
    }
    m.accuracy = n ? (double)(m.tp + m.tn) / (double)n : NAN;
    m.precision = m.tp + m.fp ? (double)m.tp / (double)(m.tp + m.fp) : 0.0;
    m.recall = m.tp + m.fn ? (double)m.tp / (double)(m.tp + m.fn) : 0.0;
    /* 2tp/(2tp+fp+fn) is the harmonic mean of precision and recall without
     * their rounding, and 0 exactly when sklearn's zero_division=0 gives 0. */
    int64_t d = 2 * m.tp + m.fp + m.fn;
    m.f1 = d ? 2.0 * (double)m.tp / (double)d : 0.0;
    return m;
}

double metric_calibration(const float *y, const float *p, size_t n)
{
    double sy = 0.0, sp = 0.0;
    for (size_t i = 0; i < n; i++) {
        sy += y[i];
        sp += p[i];
    }
    return sy != 0.0 ? sp / sy : NAN;
}

double metric_rmse(const float *y, const float *p, size_t n)
{
    if (n == 0) return NAN;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)p[i] - (double)y[i];
        s += d * d;
    }
    return sqrt(s / (double)n);
}

double metric_mae(const float *y, const float *p, size_t n)
{
    if (n == 0) return NAN;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs((double)p[i] - (double)y[i]);
    return s / (double)n;
}

int metric_roc_curve(const float *y, const float *p, size_t n, double **fpr, double **tpr,
                     double **thr, size_t *npts)
{
    *fpr = *tpr = *thr = NULL;
    *npts = 0;
    if (n == 0) return pt_error(PT_EINVAL, "metric_roc_curve: no rows");
    for (size_t i = 0; i < n; i++)
        if (isnan(p[i]))
            return pt_error(PT_ENUMERIC, "metric_roc_curve: score of row %zu is NaN", i);
    struct item *buf = items_alloc(n);
    if (!buf) return PT_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        buf[i].key = score_key(p[i]);
        buf[i].pos = y[i] > 0.5f;
    }
    const struct item *a = radix_sort(buf, buf + n, n);
    size_t m = 1; /* the (0, 0, +inf) point, then one per distinct score */
    uint64_t npos = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || a[i].key != a[i - 1].key) m++;
        npos += a[i].pos;
    }
    uint64_t nneg = n - npos;
    int rc = PT_OK;
    double *f = pt_malloc(m * sizeof *f), *t = pt_malloc(m * sizeof *t),
           *h = pt_malloc(m * sizeof *h);
    if (!f || !t || !h) {
        rc = pt_error(PT_ENOMEM, "metric_roc_curve: out of memory for %zu points", m);
        goto done;
    }
    /* Walk scores from high to low, emitting the cumulative counts after each
     * tie group; sklearn's fpr/tpr are NaN when a class is absent. */
    f[0] = nneg ? 0.0 : NAN;
    t[0] = npos ? 0.0 : NAN;
    h[0] = INFINITY;
    uint64_t tp = 0, fp = 0;
    size_t k = 1;
    for (size_t i = n; i > 0;) {
        uint64_t key = a[i - 1].key;
        for (; i > 0 && a[i - 1].key == key; i--) {
            tp += a[i - 1].pos;
            fp += !a[i - 1].pos;
        }
        f[k] = nneg ? (double)fp / (double)nneg : NAN;
        t[k] = npos ? (double)tp / (double)npos : NAN;
        h[k] = score_from_key((uint32_t)key);
        k++;
    }
    *fpr = f;
    *tpr = t;
    *thr = h;
    *npts = m;
    f = t = h = NULL;
done:
    pt_free(f);
    pt_free(t);
    pt_free(h);
    pt_free(buf);
    return rc;
}

double pt_auc(const float *p, const float *y, int64_t n)
{
    if (!p || !y || n <= 0) return NAN;
    /* the pairs with a label, compacted (metric_auc wants no NaN) */
    float *yy = pt_malloc((size_t)n * sizeof *yy), *pp = pt_malloc((size_t)n * sizeof *pp);
    size_t k = 0;
    double auc = NAN;
    if (yy && pp) {
        for (int64_t i = 0; i < n; i++)
            if (!isnan(y[i])) yy[k] = y[i], pp[k++] = p[i];
        auc = metric_auc(yy, pp, k);
    }
    pt_free(yy);
    pt_free(pp);
    return auc;
}
