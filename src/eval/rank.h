/* rank.h: top-K ranking metrics for one user (or query) over a list that is
 * already ranked, plus rank_order to rank items by score. The caller averages
 * over users (HR@K, Recall@K, NDCG@K, MAP@K, MRR). All results in double;
 * NDCG agrees with sklearn.metrics.ndcg_score and the others with the plain
 * Python definitions in tests/ref/gen_rank.py (tests/ref/test_ref_rank.c).
 *
 * Common contract: rel[0..n) is the relevance of the listed items in ranked
 * order (rel[0] is the top item); 0 = not relevant, > 0 relevant, graded
 * values allowed (only NDCG uses the grade). The top k is rel[0..min(k, n)).
 * k <= 0, n <= 0 or a list with nothing relevant gives 0. rel may be NULL
 * only when n <= 0. Ties in scores are the caller's problem: it passes one
 * order (rank_order gives a deterministic one). No allocation. */
#ifndef PT_RANK_H
#define PT_RANK_H

#include <stdint.h>

/* NDCG@k as sklearn.metrics.ndcg_score([rel_by_item], [score], k=k) with
 * tie-free scores: gain = rel (linear, not 2^rel - 1), discount
 * 1 / log2(i + 2) for position i (0-based); DCG over the top k of rel as
 * given; the ideal DCG over the top k of the same rel values sorted
 * descending. So relevant items missing from the list do not lower it: put
 * them in the list (rel > 0, past the cut) when they should. 0 when the ideal
 * DCG is 0 (no relevant item), as sklearn gives for an all-zero y_true. */
double rank_ndcg_at(const float *rel, int n, int k);

/* Number of rel > 0 in the top k, divided by k (not by min(k, n): missing
 * slots count as misses). */
double rank_precision_at(const float *rel, int n, int k);

/* Number of rel > 0 in the top k, divided by nrel, the user's total number of
 * relevant items (in or out of the list; the caller keeps nrel >= the count
 * in the list). 0 when nrel <= 0. */
double rank_recall_at(const float *rel, int n, int k, int nrel);

/* Hit rate: 1 if any rel > 0 in the top k, else 0. */
double rank_hit_at(const float *rel, int n, int k);

/* Average precision at k: sum of precision@(i+1) over the positions i < k
 * holding a relevant item, divided by min(k, nrel). 0 when nrel <= 0. */
double rank_ap_at(const float *rel, int n, int k, int nrel);

/* Reciprocal rank: 1 / (i + 1) for the first position i with rel > 0 over the
 * whole list; 0 if none. */
double rank_rr(const float *rel, int n);

/* Ranks n items by score: [out] order[0..n) receives item indices, highest
 * score first, equal scores by index ascending (-0.0 equals +0.0); NaN scores
 * rank last, by index. O(n log n) heapsort in place, no allocation.
 * score: [n], order: [n] caller-owned. */
void rank_order(const float *score, int n, int32_t *order);

#endif
