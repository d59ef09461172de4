/* test_ref_rank.c: compares src/eval/rank.c with the fixture written by
 * tests/ref/gen_rank.py (format described there): rank_order must give the
 * exact expected order, NDCG@k must match sklearn.metrics.ndcg_score and the
 * other metrics the generator's plain Python definitions, to 1e-12. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "eval/rank.h"

#define FIXTURE_PATH PT_SOURCE_DIR "/tests/ref/fixtures/rank/lists.txt"
#define MAX_N 256

static void check_close(const char *cs, int k, const char *what, double got, double want)
{
    if (!(fabs(got - want) <= 1e-12))
        fail_msg("%s @%d: %s = %.17g, reference %.17g", cs, k, what, got, want);
}

static void expect_key(FILE *f, const char *cs, const char *want)
{
    char key[16];
    if (fscanf(f, "%15s", key) != 1 || strcmp(key, want))
        fail_msg("%s: expected '%s'", cs, want);
}

static void read_floats(FILE *f, const char *cs, const char *key, float *v, int n)
{
    expect_key(f, cs, key);
    for (int i = 0; i < n; i++)
        if (fscanf(f, "%f", &v[i]) != 1) fail_msg("%s: bad '%s' value %d", cs, key, i);
}

/* Checks one "case" record (after the keyword); returns metrics compared. */
static int check_case(FILE *f)
{
    char cs[64];
    int n, nrel, nk;
    if (fscanf(f, "%63s %d %d %d", cs, &n, &nrel, &nk) != 4) fail_msg("bad 'case' line");
    if (n < 1 || n > MAX_N) fail_msg("%s: n = %d out of range", cs, n);
    float y[MAX_N], s[MAX_N], rel[MAX_N];
    int32_t order[MAX_N];
    read_floats(f, cs, "y", y, n);
    read_floats(f, cs, "s", s, n);
    rank_order(s, n, order);
    expect_key(f, cs, "order");
    for (int i = 0; i < n; i++) {
        long want;
        if (fscanf(f, "%ld", &want) != 1) fail_msg("%s: bad order", cs);
        if (order[i] != want) fail_msg("%s: order[%d] = %d, numpy %ld", cs, i, (int)order[i], want);
        rel[i] = y[order[i]];
    }
    int checked = 1;
    for (int j = 0; j < nk; j++) {
        int k;
        double ndcg, prec, rec, hit, ap;
        expect_key(f, cs, "at");
        if (fscanf(f, "%d %lf %lf %lf %lf %lf", &k, &ndcg, &prec, &rec, &hit, &ap) != 6)
            fail_msg("%s: bad 'at' line", cs);
        check_close(cs, k, "ndcg (sklearn)", rank_ndcg_at(rel, n, k), ndcg);
        check_close(cs, k, "precision", rank_precision_at(rel, n, k), prec);
        check_close(cs, k, "recall", rank_recall_at(rel, n, k, nrel), rec);
        check_close(cs, k, "hit", rank_hit_at(rel, n, k), hit);
        check_close(cs, k, "ap", rank_ap_at(rel, n, k, nrel), ap);
        checked += 5;
    }
    double want_rr;
    expect_key(f, cs, "rr");
    if (fscanf(f, "%lf", &want_rr) != 1) fail_msg("%s: bad rr", cs);
    check_close(cs, 0, "rr", rank_rr(rel, n), want_rr);
    return checked + 1;
}

static void test_lists(void **state)
{
    (void)state;
    FILE *f = fopen(FIXTURE_PATH, "r");
    if (!f) fail_msg("cannot open %s (run tests/ref/gen_rank.py)", FIXTURE_PATH);
    int c;
    while ((c = fgetc(f)) == '#') /* skip the comment header lines */
        while ((c = fgetc(f)) != '\n' && c != EOF) {}
    ungetc(c, f);
    int cases = 0, checked = 0;
    char key[16];
    for (;;) {
        if (fscanf(f, "%15s", key) != 1) fail_msg("missing 'end'");
        if (!strcmp(key, "end")) break;
        if (strcmp(key, "case")) fail_msg("unknown record '%s'", key);
        checked += check_case(f);
        cases++;
    }
    fclose(f);
    print_message("rank: %d cases, %d comparisons\n", cases, checked);
    assert_int_equal(cases, 31); /* 16 binary, 10 graded, fractional, 4 edge cases */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
