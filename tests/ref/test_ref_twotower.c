/* test_ref_twotower.c: the two-tower model (src/rec/twotower.c) against the
 * PyTorch fixtures tests/ref/gen_twotower.py writes to
 * tests/ref/fixtures/twotower/: batch.txt (item ids only) and batch_attr.txt
 * (item categories and price bands from a catalogue; format and model
 * described there). For each, a model of the fixture's N, D0, D and H (and
 * its catalogue: item_cat of NC categories, item_band) gets every parameter by name from
 * init.<name> (a shape that differs fails the test, so the fixture also pins
 * the tensor names and [out, in] layouts). Then:
 *   - rec_tt_batch_loss on the fixture's batch (an empty history, a repeated
 *     history item, a positive twice in the batch, extra negatives equal to
 *     positives, random logq) must give the loss and the gradient of every
 *     parameter within ATOL + RTOL |torch| (ref_test.h: 1e-5, 1e-4);
 *   - rec_tt_user_vectors over a 4-user history (0, 2, 4, 7 items) must pool
 *     each user's last H items as torch does (zeros for the empty user), and
 *     rec_tt_item_vectors must give the item tower for every item.
 * Dims: N items, D0, D widths, B rows, C candidates, U users. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rec/catalog.h"
#include "rec/twotower.h"
#include "ref/fixture.h"

#define FIXTURE_DIR PT_SOURCE_DIR "/tests/ref/fixtures/twotower/"
#include "ref/ref_test.h"

enum { NP = 7 };

static size_t numel(const struct mf_tensor *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

static void check_fixture(const char *fixture, int attr)
{
    struct fixture fx;
    load(&fx, fixture);
    int N = scalar_int(&fx, "N"), D0 = scalar_int(&fx, "D0"), D = scalar_int(&fx, "D");
    int B = scalar_int(&fx, "B"), C = scalar_int(&fx, "C"), H = scalar_int(&fx, "H");
    struct rec_catalog cat;
    memset(&cat, 0, sizeof cat);
    int32_t *icat = NULL, *iband = NULL;
    int8_t *band8 = malloc((size_t)N);
    assert_non_null(band8);
    if (attr) {
        assert_int_equal(scalar_int(&fx, "NB"), CATALOG_PRICE_BANDS);
        icat = get_ids(&fx, "item_cat", (size_t)N);
        iband = get_ids(&fx, "item_band", (size_t)N);
        for (int j = 0; j < N; j++) band8[j] = (int8_t)iband[j];
        cat.N = N, cat.cat = icat, cat.band = band8, cat.cats.n = scalar_int(&fx, "NC");
    }
    struct rec_tt *tt;
    assert_int_equal(rec_tt_create(N, D0, D, H, attr ? &cat : NULL, 1, &tt), PT_OK);
    int NG = attr ? NP + 2 : NP;
    struct mf_tensor w[REC_TT_NTENSORS], g[REC_TT_NGRAD];
    assert_int_equal(rec_tt_tensors(tt, w, REC_TT_NTENSORS), attr ? NG + 3 : NG + 1);
    assert_int_equal(rec_tt_grad_tensors(tt, g, REC_TT_NGRAD), NG);
    char name[96];
    for (int p = 0; p < NG; p++) {
        snprintf(name, sizeof name, "init.%s", w[p].name);
        const struct fx_array *a = arr(&fx, name);
        assert_int_equal(a->ndim, w[p].ndim);
        for (int d = 0; d < a->ndim; d++) assert_int_equal(a->dims[d], w[p].shape[d]);
        memcpy(w[p].data, a->v, numel(&w[p]) * sizeof(float));
    }

    int32_t *hoff = get_ids(&fx, "hoff", (size_t)B + 1);
    int32_t *hist = get_ids(&fx, "hist", (size_t)hoff[B]);
    int32_t *cand = get_ids(&fx, "cand", (size_t)C);
    struct rec_tt_batch bt = {.B = B, .C = C, .hoff = hoff, .hist = hist, .cand = cand,
                              .logq = get(&fx, "logq", (size_t)C)};
    rec_tt_zero_grad(tt);
    float loss = NAN;
    assert_int_equal(rec_tt_batch_loss(tt, &bt, &loss), PT_OK);
    EXPECT_CLOSE("loss", &loss, get(&fx, "loss", 1), 1);
    for (int p = 0; p < NG; p++) {
        snprintf(name, sizeof name, "grad.%s", g[p].name);
        EXPECT_CLOSE(name, g[p].data, get(&fx, name, numel(&g[p])), numel(&g[p]));
    }

    /* inference: users' last H items, item tower for all */
    const struct fx_array *uo = arr(&fx, "uoff");
    int U = (int)uo->n - 1;
    int32_t *uoff32 = get_ids(&fx, "uoff", (size_t)U + 1);
    int64_t *uoff = malloc((size_t)(U + 1) * sizeof *uoff);
    assert_non_null(uoff);
    for (int u = 0; u <= U; u++) uoff[u] = uoff32[u];
    int32_t *uitem = get_ids(&fx, "uitem", (size_t)uoff[U]);
    struct rec_hist h = {.U = U, .off = uoff, .item = uitem};
    int32_t *uids = malloc((size_t)U * sizeof *uids);
    float *uv = fill((size_t)U * D, SENTINEL), *iv = fill((size_t)N * D, SENTINEL);
    assert_non_null(uids);
    for (int u = 0; u < U; u++) uids[u] = u;
    assert_int_equal(rec_tt_user_vectors(tt, &h, uids, U, uv), PT_OK);
    EXPECT_CLOSE("user_vec", uv, get(&fx, "user_vec", (size_t)U * D), (size_t)U * D);
    assert_int_equal(rec_tt_item_vectors(tt, iv), PT_OK);
    EXPECT_CLOSE("item_vec", iv, get(&fx, "item_vec", (size_t)N * D), (size_t)N * D);

    free(hoff), free(hist), free(cand), free(uoff32), free(uoff), free(uitem), free(uids), free(uv), free(iv);
    free(icat), free(iband), free(band8);
    rec_tt_free(tt);
    fixture_free(&fx);
}

static void test_batch(void **state)
{
    (void)state;
    check_fixture("batch", 0);
}

static void test_batch_attr(void **state)
{
    (void)state;
    check_fixture("batch_attr", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_batch), cmocka_unit_test(test_batch_attr)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
