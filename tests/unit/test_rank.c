/* test_rank.c: hand-computed cases for src/eval/rank.c (NDCG with graded
 * relevance, precision/recall/hit/AP/RR, k > n, k = 0, nothing relevant) and
 * rank_order's tie rule, with an insertion-sort oracle on random tied scores.
 * Agreement with scikit-learn's ndcg_score is tests/ref/test_ref_rank.c. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "eval/rank.h"

static void assert_close(double got, double want)
{
    if (!(fabs(got - want) <= 1e-15)) fail_msg("got %.17g, want %.17g", got, want);
}

static void test_binary(void **state)
{
    (void)state;
    const float rel[] = {0, 1, 0, 1}; /* hits at ranks 2 and 4; 3 relevant in all */
    assert_close(rank_precision_at(rel, 4, 2), 0.5);
    assert_close(rank_recall_at(rel, 4, 2, 3), 1.0 / 3.0);
    assert_close(rank_hit_at(rel, 4, 1), 0.0);
    assert_close(rank_hit_at(rel, 4, 2), 1.0);
    assert_close(rank_ap_at(rel, 4, 2, 3), (1.0 / 2.0) / 2.0);
    assert_close(rank_ap_at(rel, 4, 4, 3), (1.0 / 2.0 + 2.0 / 4.0) / 3.0);
    assert_close(rank_rr(rel, 4), 0.5);
    /* DCG 1/log2(3) + 1/log2(5); ideal from this list: 1 + 1/log2(3) */
    assert_close(rank_ndcg_at(rel, 4, 4), (1 / log2(3.0) + 1 / log2(5.0)) / (1 + 1 / log2(3.0)));
    assert_close(rank_ndcg_at(rel, 4, 1), 0.0);
    const float perfect[] = {1, 1, 0, 0};
    assert_close(rank_ndcg_at(perfect, 4, 3), 1.0);
    assert_close(rank_ap_at(perfect, 4, 3, 2), 1.0);
}

static void test_graded_ndcg(void **state)
{
    (void)state;
    const float rel[] = {1, 3, 0, 2};
    /* linear gain: DCG@3 = 1 + 3/log2(3); ideal 3, 2, 1 -> 3 + 2/log2(3) + 1/2 */
    assert_close(rank_ndcg_at(rel, 4, 3), (1 + 3 / log2(3.0)) / (3 + 2 / log2(3.0) + 0.5));
    assert_close(rank_ndcg_at(rel, 4, 1), 1.0 / 3.0);
    /* equal grades are each used once in the ideal ordering */
    const float dup[] = {0, 2, 2, 1};
    assert_close(rank_ndcg_at(dup, 4, 2), (2 / log2(3.0)) / (2 + 2 / log2(3.0)));
    /* grades do not matter to the count-based metrics */
    assert_close(rank_precision_at(rel, 4, 4), 0.75);
    assert_close(rank_rr(rel, 4), 1.0);
}

static void test_k_past_end(void **state)
{
    (void)state;
    const float rel[] = {1, 0};
    assert_close(rank_precision_at(rel, 2, 5), 1.0 / 5.0); /* missing slots are misses */
    assert_close(rank_recall_at(rel, 2, 5, 1), 1.0);
    assert_close(rank_hit_at(rel, 2, 5), 1.0);
    assert_close(rank_ap_at(rel, 2, 5, 1), 1.0); /* / min(k, nrel) = 1 */
    assert_close(rank_ap_at(rel, 2, 5, 4), 1.0 / 4.0);
    assert_close(rank_ndcg_at(rel, 2, 5), 1.0);
    const float late[] = {0, 1};
    assert_close(rank_ndcg_at(late, 2, 100), (1 / log2(3.0)) / 1.0);
}

static void test_zero_cases(void **state)
{
    (void)state;
    const float none[] = {0, 0, 0};
    assert_true(rank_ndcg_at(none, 3, 3) == 0.0); /* as sklearn for all-zero y_true */
    assert_true(rank_precision_at(none, 3, 3) == 0.0);
    assert_true(rank_recall_at(none, 3, 3, 0) == 0.0);
    assert_true(rank_recall_at(none, 3, 3, 2) == 0.0);
    assert_true(rank_hit_at(none, 3, 3) == 0.0);
    assert_true(rank_ap_at(none, 3, 3, 0) == 0.0);
    assert_true(rank_rr(none, 3) == 0.0);

    const float rel[] = {1, 1};
    assert_true(rank_ndcg_at(rel, 2, 0) == 0.0); /* k = 0 */
    assert_true(rank_precision_at(rel, 2, 0) == 0.0);
    assert_true(rank_recall_at(rel, 2, 0, 2) == 0.0);
    assert_true(rank_hit_at(rel, 2, 0) == 0.0);
    assert_true(rank_ap_at(rel, 2, 0, 2) == 0.0);
    assert_true(rank_ndcg_at(rel, 2, -3) == 0.0);
    assert_true(rank_recall_at(rel, 2, 2, 0) == 0.0); /* nrel <= 0 */
    assert_true(rank_ap_at(rel, 2, 2, 0) == 0.0);

    /* empty list, NULL allowed */
    assert_true(rank_ndcg_at(NULL, 0, 5) == 0.0);
    assert_true(rank_precision_at(NULL, 0, 5) == 0.0);
    assert_true(rank_recall_at(NULL, 0, 5, 1) == 0.0);
    assert_true(rank_hit_at(NULL, 0, 5) == 0.0);
    assert_true(rank_ap_at(NULL, 0, 5, 1) == 0.0);
    assert_true(rank_rr(NULL, 0) == 0.0);
    rank_order(NULL, 0, NULL);
}

static void test_order_ties(void **state)
{
    (void)state;
    const float s[] = {0.5f, 0.9f, 0.5f, NAN, -0.0f, 0.0f, 0.9f, -1.0f};
    const int32_t want[] = {1, 6, 0, 2, 4, 5, 7, 3};
    int32_t order[8];
    rank_order(s, 8, order);
    for (int i = 0; i < 8; i++) assert_int_equal(order[i], want[i]);
    const float one[] = {3.0f};
    rank_order(one, 1, order);
    assert_int_equal(order[0], 0);
}

/* Insertion sort by the same rule (score desc, index asc; no NaN here). */
static void order_oracle(const float *s, int n, int32_t *order)
{
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && s[order[j - 1]] < s[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
}

static void test_order_random(void **state)
{
    (void)state;
    enum { N = 300 };
    float s[N];
    int32_t got[N], want[N];
    uint32_t x = 12345u;
    for (int round = 0; round < 50; round++) {
        int n = 1 + round * 6;
        for (int i = 0; i < n; i++) {
            x = x * 1664525u + 1013904223u;
            s[i] = (float)((x >> 16) % 17) - 8.0f; /* 17 distinct values: many ties */
        }
        rank_order(s, n, got);
        order_oracle(s, n, want);
        for (int i = 0; i < n; i++)
            if (got[i] != want[i]) fail_msg("n=%d: order[%d] = %d, oracle %d", n, i, (int)got[i], (int)want[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary),      cmocka_unit_test(test_graded_ndcg),
        cmocka_unit_test(test_k_past_end),  cmocka_unit_test(test_zero_cases),
        cmocka_unit_test(test_order_ties),  cmocka_unit_test(test_order_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
