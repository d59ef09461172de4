/* test_twotower.c: the two-tower model (src/rec/twotower.c) learns a
 * synthetic set where the next item is predictable from the history (items
 * in 10 clusters, each user buys only within one), its user vectors follow
 * the documented edge cases, and the tt.* tensors survive a model file round
 * trip (with and without catalogue attributes) while a doctored file is
 * refused. With a catalogue whose categories are the clusters, items that
 * never occur in training (new ids) are still recommended to the users of
 * their cluster, which ids alone cannot do; without one, or with a
 * catalogue that names no category, the model is exactly the id-only one.
 *
 * Dims: N items, U users, L items per user, D width. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rec/catalog.h"
#include "rec/twotower.h"
#include "store/modelfile.h"
#include "tmpdir.h"
#include "util/util.h"

enum { NCLUSTER = 10, PER = 20, N = NCLUSTER * PER, U = 400, L = 12, D = 16 };

struct data {
    int64_t off[U + 1], time[U * L];
    int32_t item[U * L], held[U];
    float weight[U * L];
    struct rec_hist h; /* the first L-1 items of every user */
};

/* User u draws L distinct items of cluster u % NCLUSTER in random order; the
 * last one is held out. */
static void make_data(struct data *d)
{
    struct rng r;
    rng_seed(&r, 7);
    int64_t at = 0;
    for (int u = 0; u < U; u++) {
        int32_t pool[PER];
        for (int k = 0; k < PER; k++) pool[k] = (u % NCLUSTER) * PER + k;
        rng_shuffle_i32(&r, pool, PER);
        d->off[u] = at;
        for (int k = 0; k < L - 1; k++, at++) d->item[at] = pool[k], d->time[at] = k, d->weight[at] = 1;
        d->held[u] = pool[L - 1];
    }
    d->off[U] = at;
    d->h = (struct rec_hist){.U = U, .off = d->off, .item = d->item, .time = d->time, .weight = d->weight};
}

static struct rec_cfg cfg_small(void)
{
    struct rec_cfg c;
    memset(&c, 0, sizeof c);
    c.dim = D, c.epochs = 15, c.batch = 128, c.negatives = 16, c.lr = 0.01, c.l2 = 0, c.seed = 3, c.history = 5;
    return c;
}

/* HR@10 of the held-out items, seen items excluded. */
static double hit_rate(const struct data *d, const struct rec_tt *tt, const float *iv)
{
    int32_t uids[U];
    for (int u = 0; u < U; u++) uids[u] = u;
    float *uv = pt_malloc((size_t)U * D * sizeof *uv);
    assert_non_null(uv);
    assert_int_equal(rec_tt_user_vectors(tt, &d->h, uids, U, uv), PT_OK);
    int hits = 0;
    for (int u = 0; u < U; u++) {
        float s[N];
        for (int j = 0; j < N; j++) {
            s[j] = 0;
            for (int k = 0; k < D; k++) s[j] += uv[u * D + k] * iv[j * D + k];
        }
        for (int64_t p = d->off[u]; p < d->off[u + 1]; p++) s[d->item[p]] = -INFINITY;
        int above = 0;
        for (int j = 0; j < N; j++) above += s[j] > s[d->held[u]];
        hits += above < 10;
    }
    pt_free(uv);
    return (double)hits / U;
}

static void test_learns_clusters(void **state)
{
    (void)state;
    static struct data d;
    make_data(&d);
    struct rec_cfg c = cfg_small();
    struct rec_tt *tt = NULL;
    float *iv = NULL;
    assert_int_equal(rec_tt_train(&c, &d.h, N, NULL, &tt, &iv), PT_OK);
    assert_non_null(tt);
    assert_non_null(iv);
    double hr = hit_rate(&d, tt, iv);
    print_message("two_tower HR@10 %.3f (chance %.3f)\n", hr, 10.0 / (N - (L - 1)));
    assert_true(hr > 0.6); /* chance is 0.053; perfect cluster ranking gives 1 */

    /* the returned item vectors are the item tower's */
    float *iv2 = pt_malloc((size_t)N * D * sizeof *iv2);
    assert_non_null(iv2);
    assert_int_equal(rec_tt_item_vectors(tt, iv2), PT_OK);
    assert_memory_equal(iv, iv2, (size_t)N * D * sizeof *iv);
    pt_free(iv2);

    /* out-of-range and empty users get zero vectors; a known user does not */
    int64_t off1[3] = {0, 0, 2};
    int32_t item1[2] = {0, 1};
    struct rec_hist h1 = {.U = 2, .off = off1, .item = item1};
    int32_t uids[4] = {-1, 2, 0, 1};
    float uv[4 * D];
    assert_int_equal(rec_tt_user_vectors(tt, &h1, uids, 4, uv), PT_OK);
    double norm = 0;
    for (int k = 0; k < 3 * D; k++) assert_true(uv[k] == 0.0f);
    for (int k = 3 * D; k < 4 * D; k++) norm += fabs(uv[k]);
    assert_true(norm > 0);

    /* pooling: only the last `history` items count */
    int64_t off2[3] = {0, 5, 12};
    int32_t item2[12] = {9, 9, 9, 1, 2, 77, 150, 42, 3, 1, 2, 9}; /* user 1's last 5 = 42 3 1 2 9 */
    int32_t item3[12] = {0};
    memcpy(item3, item2, sizeof item2);
    item3[5] = 199, item3[6] = 100; /* differs only before the last 5 */
    struct rec_hist h2 = {.U = 2, .off = off2, .item = item2}, h3 = {.U = 2, .off = off2, .item = item3};
    int32_t one = 1;
    float a[D], b[D];
    assert_int_equal(rec_tt_user_vectors(tt, &h2, &one, 1, a), PT_OK);
    assert_int_equal(rec_tt_user_vectors(tt, &h3, &one, 1, b), PT_OK);
    assert_memory_equal(a, b, sizeof a);

    rec_tt_free(tt);
    pt_free(iv);
    rec_tt_free(NULL);
}

static void test_bad_input(void **state)
{
    (void)state;
    static struct data d;
    make_data(&d);
    struct rec_cfg c = cfg_small();
    struct rec_tt *tt = (struct rec_tt *)&c;
    float *iv = (float *)&c;
    /* an item id past N is refused, outputs NULL */
    assert_int_equal(rec_tt_train(&c, &d.h, N - 1, NULL, &tt, &iv), PT_EINVAL);
    assert_null(tt);
    assert_null(iv);
    /* a catalogue of another size, or an attribute id out of range */
    static int32_t cat[N];
    static int8_t band[N];
    struct rec_catalog cg;
    memset(&cg, 0, sizeof cg);
    cg.N = N - 1, cg.cat = cat, cg.band = band, cg.cats.n = 2;
    assert_int_equal(rec_tt_train(&c, &d.h, N, &cg, &tt, &iv), PT_EINVAL);
    cg.N = N, cat[5] = 2;
    assert_int_equal(rec_tt_train(&c, &d.h, N, &cg, &tt, &iv), PT_EINVAL);
    assert_non_null(strstr(pt_errmsg(), "category id 2"));
    cat[5] = 0, band[7] = CATALOG_PRICE_BANDS;
    assert_int_equal(rec_tt_train(&c, &d.h, N, &cg, &tt, &iv), PT_EINVAL);
    assert_non_null(strstr(pt_errmsg(), "price band"));
    assert_null(tt);
    c.history = 0;
    assert_int_equal(rec_tt_train(&c, &d.h, N, NULL, &tt, &iv), PT_EINVAL);
}

/* Users as make_data, but only the first WARM items of each cluster ever
 * occur in training (each user's history: HW of them); the held-out item
 * is one of the cluster's other, never seen, items: a new id. cat[j] is j's
 * cluster; band[j] is noise (j % 5, or -1 for every third item). */
enum { WARM = 10, HW = 8 };

static void make_cold_data(struct data *d, int32_t *cat, int8_t *band)
{
    struct rng r;
    rng_seed(&r, 9);
    int64_t at = 0;
    for (int u = 0; u < U; u++) {
        int32_t pool[WARM], base = (u % NCLUSTER) * PER;
        for (int k = 0; k < WARM; k++) pool[k] = base + k;
        rng_shuffle_i32(&r, pool, WARM);
        d->off[u] = at;
        for (int k = 0; k < HW; k++, at++) d->item[at] = pool[k], d->time[at] = k, d->weight[at] = 1;
        d->held[u] = base + WARM + (int32_t)rng_below(&r, PER - WARM);
    }
    d->off[U] = at;
    d->h = (struct rec_hist){.U = U, .off = d->off, .item = d->item, .time = d->time, .weight = d->weight};
    for (int32_t j = 0; j < N; j++) cat[j] = j / PER, band[j] = (int8_t)(j % 3 ? j % 5 : -1);
}

/* The category model ranks the new items of the user's cluster (HR@10
 * ~0.74; at best ~0.8, the 2 unseen warm items of the cluster come first),
 * the id-only one cannot (~0). In-batch negatives only: uniform negatives
 * would also teach the never-consumed ids to sink (their own E rows then
 * cancel the category: HR@10 ~0.16 with 16 negatives). */
static void test_attrs_cold_items(void **state)
{
    (void)state;
    static struct data d;
    static int32_t cat[N];
    static int8_t band[N];
    make_cold_data(&d, cat, band);
    struct rec_catalog cg;
    memset(&cg, 0, sizeof cg);
    cg.N = N, cg.cat = cat, cg.band = band, cg.cats.n = NCLUSTER;
    struct rec_cfg c = cfg_small();
    c.negatives = 0;
    struct rec_tt *ta = NULL, *ti = NULL;
    float *iva = NULL, *ivi = NULL;
    assert_int_equal(rec_tt_train(&c, &d.h, N, &cg, &ta, &iva), PT_OK);
    assert_int_equal(rec_tt_train(&c, &d.h, N, NULL, &ti, &ivi), PT_OK);
    int32_t nc, nb;
    rec_tt_attrs(ta, &nc, &nb);
    assert_int_equal(nc, NCLUSTER);
    assert_int_equal(nb, CATALOG_PRICE_BANDS);
    rec_tt_attrs(ti, &nc, &nb);
    assert_int_equal(nc, 0);
    assert_int_equal(nb, 0);
    double hra = hit_rate(&d, ta, iva), hri = hit_rate(&d, ti, ivi);
    print_message("two_tower HR@10 of new items: %.3f with categories, %.3f ids only (chance %.3f)\n", hra, hri,
                  10.0 / (N - HW));
    assert_true(hra > 0.5);
    assert_true(hra > hri + 0.3);
    rec_tt_free(ta), rec_tt_free(ti), pt_free(iva), pt_free(ivi);

    /* a catalogue that names no category and no band: the id-only model */
    for (int32_t j = 0; j < N; j++) cat[j] = -1, band[j] = -1;
    c.epochs = 2;
    assert_int_equal(rec_tt_train(&c, &d.h, N, &cg, &ta, &iva), PT_OK);
    assert_int_equal(rec_tt_train(&c, &d.h, N, NULL, &ti, &ivi), PT_OK);
    rec_tt_attrs(ta, &nc, &nb);
    assert_int_equal(nc + nb, 0);
    assert_memory_equal(iva, ivi, (size_t)N * D * sizeof *iva);
    struct mf_tensor t[REC_TT_NTENSORS];
    assert_int_equal(rec_tt_tensors(ta, t, REC_TT_NTENSORS), 8);
    rec_tt_free(ta), rec_tt_free(ti), pt_free(iva), pt_free(ivi);
}

/* Save and load, ids only (attr 0: the 8 tensors models always had) or with
 * a catalogue (attr 1: tt.cat_emb, tt.band_emb, tt.item_cat, tt.item_band
 * too); doctored files are refused. */
static void save_load(int attr)
{
    static struct data d;
    static int32_t cat[N];
    static int8_t band[N];
    make_data(&d);
    for (int32_t j = 0; j < N; j++) cat[j] = j % 7 ? j / PER : -1, band[j] = (int8_t)(j % 4 ? j % 16 : -1);
    struct rec_catalog cg;
    memset(&cg, 0, sizeof cg);
    cg.N = N, cg.cat = cat, cg.band = band, cg.cats.n = NCLUSTER;
    struct rec_cfg c = cfg_small();
    c.epochs = 2;
    struct rec_tt *tt = NULL, *back = NULL;
    float *iv = NULL;
    assert_int_equal(rec_tt_train(&c, &d.h, N, attr ? &cg : NULL, &tt, &iv), PT_OK);

    char dir[256], path[512], bad[512];
    assert_int_equal(tmpdir_make(dir, sizeof dir, "twotower"), 0);
    snprintf(path, sizeof path, "%s/tt.ptm", dir);
    snprintf(bad, sizeof bad, "%s/bad.ptm", dir);
    struct mf_tensor t[REC_TT_NTENSORS];
    assert_int_equal(rec_tt_tensors(tt, t, 3), PT_EINVAL);
    int n = rec_tt_tensors(tt, t, REC_TT_NTENSORS);
    assert_int_equal(n, attr ? REC_TT_NTENSORS : 8);
    assert_int_equal(rec_tt_tensors(tt, t, n - 1), PT_EINVAL);
    assert_int_equal(rec_tt_tensors(tt, t, n), n);
    for (int k = 0; k < n; k++) assert_true(!strncmp(t[k].name, "tt.", 3));
    assert_string_equal(t[attr ? 9 : 7].name, "tt.history");
    assert_int_equal(modelfile_write(path, "{\"model\": \"two_tower\"}", t, (size_t)n), PT_OK);

    struct mf_file *f = NULL;
    assert_int_equal(modelfile_read(path, &f), PT_OK);
    assert_int_equal(rec_tt_from_file(f, path, N, &back), PT_OK);
    int d0, dd, hist;
    int32_t nc, nb;
    rec_tt_dims(back, &d0, &dd, &hist);
    rec_tt_attrs(back, &nc, &nb);
    assert_int_equal(d0, D);
    assert_int_equal(dd, D);
    assert_int_equal(hist, c.history);
    assert_int_equal(nc, attr ? NCLUSTER : 0);
    assert_int_equal(nb, attr ? CATALOG_PRICE_BANDS : 0);
    int32_t uids[U];
    for (int u = 0; u < U; u++) uids[u] = u;
    float *a = pt_malloc((size_t)U * D * sizeof *a), *b = pt_malloc((size_t)U * D * sizeof *b);
    float *iv2 = pt_malloc((size_t)N * D * sizeof *iv2);
    assert_true(a && b && iv2);
    assert_int_equal(rec_tt_user_vectors(tt, &d.h, uids, U, a), PT_OK);
    assert_int_equal(rec_tt_user_vectors(back, &d.h, uids, U, b), PT_OK);
    assert_memory_equal(a, b, (size_t)U * D * sizeof *a);
    assert_int_equal(rec_tt_item_vectors(back, iv2), PT_OK);
    assert_memory_equal(iv, iv2, (size_t)N * D * sizeof *iv);
    struct mf_tensor t2[REC_TT_NTENSORS];
    assert_int_equal(rec_tt_tensors(back, t2, REC_TT_NTENSORS), n);
    for (int k = 0; k < n; k++) { /* every tensor, the attribute ids included, comes back */
        assert_string_equal(t2[k].name, t[k].name);
        size_t cnt = (size_t)t[k].shape[0] * (size_t)(t[k].ndim == 2 ? t[k].shape[1] : 1);
        assert_memory_equal(t2[k].data, t[k].data, cnt * 4);
    }
    rec_tt_free(back);
    back = (struct rec_tt *)a;

    /* a different item count is refused, with the tensor named */
    assert_int_equal(rec_tt_from_file(f, path, N + 1, &back), PT_EFORMAT);
    assert_null(back);
    assert_non_null(strstr(pt_errmsg(), "tt.item_emb"));
    modelfile_free(f);

    /* a doctored shape: tt.user.fc1.bias one shorter */
    t[6].shape[0] = D - 1;
    assert_int_equal(modelfile_write(bad, "{}", t, (size_t)n), PT_OK);
    assert_int_equal(modelfile_read(bad, &f), PT_OK);
    assert_int_equal(rec_tt_from_file(f, bad, N, &back), PT_EFORMAT);
    assert_null(back);
    assert_non_null(strstr(pt_errmsg(), "tt.user.fc1.bias"));
    modelfile_free(f);
    t[6].shape[0] = D;

    /* a missing tensor: tt.history, or with attributes tt.item_band (its
     * table without its ids) */
    assert_int_equal(modelfile_write(bad, "{}", t, (size_t)n - 1), PT_OK);
    assert_int_equal(modelfile_read(bad, &f), PT_OK);
    assert_int_equal(rec_tt_from_file(f, bad, N, &back), PT_EFORMAT);
    assert_non_null(strstr(pt_errmsg(), attr ? "tt.item_band" : "tt.history"));
    modelfile_free(f);

    if (attr) {
        /* a category id past tt.cat_emb */
        int32_t *ic = (int32_t *)(void *)t[10].data, keep = ic[3];
        assert_string_equal(t[10].name, "tt.item_cat");
        ic[3] = NCLUSTER;
        assert_int_equal(modelfile_write(bad, "{}", t, (size_t)n), PT_OK);
        ic[3] = keep;
        assert_int_equal(modelfile_read(bad, &f), PT_OK);
        assert_int_equal(rec_tt_from_file(f, bad, N, &back), PT_EFORMAT);
        assert_null(back);
        assert_non_null(strstr(pt_errmsg(), "tt.item_cat"));
        modelfile_free(f);
        /* the tables without their ids: an id-only file plus the two tables */
        struct mf_tensor u[REC_TT_NTENSORS];
        memcpy(u, t, 10 * sizeof *u);
        assert_int_equal(modelfile_write(bad, "{}", u, 10), PT_OK);
        assert_int_equal(modelfile_read(bad, &f), PT_OK);
        assert_int_equal(rec_tt_from_file(f, bad, N, &back), PT_EFORMAT);
        assert_non_null(strstr(pt_errmsg(), "tt.cat_emb' without 'tt.item_cat"));
        modelfile_free(f);
    }

    tmpdir_remove(dir);
    pt_free(a), pt_free(b), pt_free(iv2), pt_free(iv);
    rec_tt_free(tt);
}

static void test_save_load(void **state)
{
    (void)state;
    save_load(0);
}

static void test_save_load_attrs(void **state)
{
    (void)state;
    save_load(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_learns_clusters), cmocka_unit_test(test_bad_input),
                                       cmocka_unit_test(test_attrs_cold_items), cmocka_unit_test(test_save_load),
                                       cmocka_unit_test(test_save_load_attrs)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
