/* test_eval_topk.c: eval_topk groups rows, ranks each group by score (ties
 * in file order) and averages the top-K metrics over groups with a positive;
 * the values are worked out by hand below. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "eval/evaluate.h"

static double get(json_t *o, const char *k) { return json_number_value(json_object_get(o, k)); }

static void test_topk_by_hand(void **state)
{
    (void)state;
    /* group 7: scores 0.9, 0.1, 0.5 with labels 0, 1, 1 -> ranked rel [0, 1, 1];
     * group 3: no positive (skipped); group 5: one row, relevant; rows interleaved */
    const int32_t g[] = {7, 3, 7, 5, 3, 7};
    const float p[] = {0.9f, 0.2f, 0.1f, 0.3f, 0.8f, 0.5f};
    const float y[] = {0, 0, 1, 1, 0, 1};
    json_t *o = json_object();
    assert_int_equal(eval_topk(y, p, g, 6, 2, o), 0);
    double ndcg7 = (1.0 / log2(3.0)) / (1.0 + 1.0 / log2(3.0));
    assert_true(fabs(get(o, "ndcg_at_k") - (ndcg7 + 1.0) / 2) < 1e-12);
    assert_true(fabs(get(o, "recall_at_k") - (0.5 + 1.0) / 2) < 1e-12);
    assert_true(fabs(get(o, "precision_at_k") - (0.5 + 0.5) / 2) < 1e-12); /* k = 2 > 1 row: a miss */
    assert_true(fabs(get(o, "hit_at_k") - 1.0) < 1e-12);
    assert_true(fabs(get(o, "map_at_k") - (0.25 + 1.0) / 2) < 1e-12);
    assert_true(fabs(get(o, "mrr") - (0.5 + 1.0) / 2) < 1e-12);
    assert_int_equal(json_integer_value(json_object_get(o, "topk_groups")), 2);
    json_decref(o);

    /* equal scores keep file order: the positive second of two ties ranks 2nd */
    const int32_t g2[] = {1, 1};
    const float p2[] = {0.5f, 0.5f}, y2[] = {0, 1};
    o = json_object();
    assert_int_equal(eval_topk(y2, p2, g2, 2, 1, o), 0);
    assert_true(get(o, "hit_at_k") == 0.0 && fabs(get(o, "mrr") - 0.5) < 1e-12);
    json_decref(o);

    /* no group with a positive: null metrics, 0 groups */
    o = json_object();
    assert_int_equal(eval_topk(y2, p2, g2, 1, 1, o), 0);
    assert_true(json_is_null(json_object_get(o, "ndcg_at_k")));
    assert_int_equal(json_integer_value(json_object_get(o, "topk_groups")), 0);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_topk_by_hand)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
