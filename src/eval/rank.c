/* rank.c: top-K ranking metrics over one ranked relevance list (NDCG@K,
 * precision@K, recall@K, hit@K, AP@K, reciprocal rank) and rank_order, which
 * sorts item indices by score with a fixed tie rule.
 *
 * Deliberately not here: averaging over users, catalogue coverage and
 * popularity bias (they need the whole recommendation set), and averaging
 * over tied scores as sklearn.metrics.ndcg_score does: the caller ranks once,
 * ties broken by item index. NDCG uses sklearn's linear gain (see rank.h).
 *
 * n  list length, k  cut-off. */
#include <math.h>

#include "eval/rank.h"

/* Length of the top-k prefix actually present. */
static int top_len(int n, int k)
{
    if (n <= 0 || k <= 0) return 0;
    return k < n ? k : n;
}

static int count_hits(const float *rel, int m)
{
    int hits = 0;
    for (int i = 0; i < m; i++) hits += rel[i] > 0.0f;
    return hits;
}

static double discount(int i)
{
    return 1.0 / log2((double)i + 2.0);
}

double rank_ndcg_at(const float *rel, int n, int k)
{
    int m = top_len(n, k);
    if (m == 0) return 0.0;
    double dcg = 0.0;
    for (int i = 0; i < m; i++) dcg += (double)rel[i] * discount(i);
    /* Ideal DCG: the m largest rel values in descending order, by repeated
     * selection (O(n m), no scratch buffer; k is small). Each pass picks the
     * next item in (value desc, index asc) order after the previous pick, so
     * equal values are each used once. */
    double idcg = 0.0;
    int prev = -1;
    for (int i = 0; i < m; i++) {
        int best = -1;
        for (int j = 0; j < n; j++) {
            if (prev >= 0) { /* j must come after prev in (value desc, index asc) order */
                if (rel[j] > rel[prev] || (rel[j] == rel[prev] && j <= prev)) continue;
            }
            if (best < 0 || rel[j] > rel[best]) best = j;
        }
        if (best < 0) break;
        idcg += (double)rel[best] * discount(i);
        prev = best;
    }
    if (!(idcg > 0.0)) return 0.0;
    return dcg / idcg;
}

double rank_precision_at(const float *rel, int n, int k)
{
    if (k <= 0) return 0.0;
    return (double)count_hits(rel, top_len(n, k)) / (double)k;
}

double rank_recall_at(const float *rel, int n, int k, int nrel)
{
    if (nrel <= 0) return 0.0;
    return (double)count_hits(rel, top_len(n, k)) / (double)nrel;
}

double rank_hit_at(const float *rel, int n, int k)
{
    return count_hits(rel, top_len(n, k)) > 0 ? 1.0 : 0.0;
}

double rank_ap_at(const float *rel, int n, int k, int nrel)
{
    int m = top_len(n, k);
    if (m == 0 || nrel <= 0) return 0.0;
    double sum = 0.0;
    int hits = 0;
    for (int i = 0; i < m; i++) {
        if (rel[i] > 0.0f) {
            hits++;
            sum += (double)hits / (double)(i + 1);
        }
    }
    return sum / (double)(k < nrel ? k : nrel);
}

double rank_rr(const float *rel, int n)
{
    for (int i = 0; i < n; i++)
        if (rel[i] > 0.0f) return 1.0 / (double)(i + 1);
    return 0.0;
}

/* True when item a ranks before item b: higher score, NaN last, then lower
 * index. A strict total order, so any correct sort gives the same result. */
static int ranks_before(const float *score, int32_t a, int32_t b)
{
    float sa = score[a], sb = score[b];
    int na = isnan(sa), nb = isnan(sb);
    if (na != nb) return nb;
    if (!na && sa != sb) return sa > sb;
    return a < b;
}

/* Max-heap by "ranks later", so the heap root is the item that goes last. */
static void sift_down(const float *score, int32_t *h, int root, int len)
{
    for (;;) {
        int c = 2 * root + 1;
        if (c >= len) return;
        if (c + 1 < len && ranks_before(score, h[c], h[c + 1])) c++;
        if (!ranks_before(score, h[root], h[c])) return;
        int32_t t = h[root];
        h[root] = h[c];
        h[c] = t;
        root = c;
    }
}

void rank_order(const float *score, int n, int32_t *order)
{
    if (n <= 0) return;
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(score, order, i, n);
    for (int end = n - 1; end > 0; end--) {
        int32_t t = order[0];
        order[0] = order[end];
        order[end] = t;
        sift_down(score, order, 0, end);
    }
}
