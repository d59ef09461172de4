/* test_ref_models.c: whole multi-task models (src/models/model.c) against
 * the PyTorch fixtures that tests/ref/gen_models.py writes to
 * tests/ref/fixtures/models/: shared_bottom, mmoe, ple with 1 and 2 CGC
 * levels, esmm.
 *
 * For each fixture: a config is written from the fixture's dims (two
 * categorical features c0, c1 with the fixture's vocabularies and emb_dim,
 * two raw numeric features n0, n1, binary tasks "a" and "b" with the
 * fixture's weights, expert_dims, tower_dims, experts, shared_experts,
 * levels, dropout 0) and built with config_parse + schema_create +
 * model_create. Every parameter is overwritten by name from init.<name>;
 * a parameter with no init.<name>, an init.<name> with no parameter, or a
 * shape that differs fails the test (so the fixture also pins the tensor
 * names and [out, in] layouts). Then each of the 5 batches is written into
 * m->bt and one model_train_step runs with Adam (lr 1e-2, default betas and
 * eps); the objective sum_t weight_t * loss_t before each update must match
 * the fixture's losses within relative 1e-4, and the parameters after the
 * 5 updates final.<name> within 1e-4 + 1e-3 * |torch|.
 *
 * Our embedding tables are updated lazily (only the rows a batch uses);
 * the reference uses dense Adam everywhere, which is the same here because
 * every batch uses every row of both tables.
 * Dims: B batch rows, T = 2 tasks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data/config.h"
#include "data/schema.h"
#include "models/model.h"
#include "ref/fixture.h"
#include "train/optim.h"

#define FIXTURE_DIR PT_SOURCE_DIR "/tests/ref/fixtures/models/"
#include "ref/ref_test.h"

#define LOSS_RTOL 1e-4
#define P_ATOL 1e-4
#define P_RTOL 1e-3

enum { T = 2 };

static const char *const KIND_NAMES[] = {"lr", "mlp", "shared_bottom", "mmoe", "ple", "esmm"};

/* "[v0, v1, ...]" of an integer array into buf. */
static const char *int_list(char *buf, size_t cap, const struct fx_array *a)
{
    size_t at = 0;
    at += (size_t)snprintf(buf + at, cap - at, "[");
    for (size_t i = 0; i < a->n; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%d", i ? ", " : "", (int)a->v[i]);
    snprintf(buf + at, cap - at, "]");
    return buf;
}

static void check_model(const char *name)
{
    struct fixture fx;
    load(&fx, name);

    int kind = scalar_int(&fx, "kind"), B = scalar_int(&fx, "B"), steps = scalar_int(&fx, "steps");
    assert_true(kind >= 2 && kind <= 5);
    const float *vocab = fixture_get(&fx, "vocab", 2), *tw = fixture_get(&fx, "task_weights", T);
    assert_non_null(vocab);
    assert_non_null(tw);
    char ed[128], td[128], yaml[2048];
    snprintf(yaml, sizeof yaml,
             "data:\n"
             "  train: unused.csv\n"
             "features:\n"
             "  defaults:\n"
             "    categorical: {dim: %d}\n"
             "    numeric: {transform: none}\n"
             "  categorical: [c0, c1]\n"
             "  numeric: [n0, n1]\n"
             "tasks:\n"
             "  - {name: a, label: ya, type: binary, weight: %.9g}\n"
             "  - {name: b, label: yb, type: binary, weight: %.9g}\n"
             "model:\n"
             "  kind: %s\n"
             "  experts: %d\n"
             "  shared_experts: %d\n"
             "  levels: %d\n"
             "  expert_dims: %s\n"
             "  tower_dims: %s\n"
             "  dropout: 0\n",
             scalar_int(&fx, "emb_dim"), (double)tw[0], (double)tw[1], KIND_NAMES[kind], scalar_int(&fx, "experts"),
             scalar_int(&fx, "shared_experts"), scalar_int(&fx, "levels"),
             int_list(ed, sizeof ed, arr(&fx, "expert_dims")), int_list(td, sizeof td, arr(&fx, "tower_dims")));
    struct pt_config *cfg = NULL;
    if (config_parse(yaml, strlen(yaml), "ref_models.yaml", &cfg)) fail_msg("%s: config: %s", name, pt_errmsg());
    struct schema *s = NULL;
    assert_int_equal(schema_create(&s, cfg), PT_OK);
    assert_int_equal(s->ncat, 2);
    assert_int_equal(s->nnum, 2);
    for (int i = 0; i < s->nfeat; i++)
        if (s->f[i].is_cat) s->f[i].rows = (int32_t)vocab[s->f[i].slot];
    s->fitted = 1;
    struct model *m = NULL;
    if (model_create(&m, cfg, s, 1)) {
        schema_free(s);
        fail_msg("%s: model_create: %s", name, pt_errmsg());
    }
    assert_int_equal(model_alloc_train(m), PT_OK);
    assert_int_equal(model_reserve(m, B), PT_OK);

    /* parameters by name, both ways */
    int missing = 0;
    char an[128];
    for (int i = 0; i < m->nparams; i++) {
        const struct param *p = &m->p[i];
        snprintf(an, sizeof an, "init.%s", p->name);
        const struct fx_array *a = NULL;
        for (int j = 0; j < fx.narr; j++)
            if (!strcmp(fx.arr[j].name, an)) a = &fx.arr[j];
        if (!a) {
            print_error("%s: parameter %s [%lld, %lld] is not in the fixture\n", name, p->name, (long long)p->rows,
                        (long long)p->cols);
            missing++;
            continue;
        }
        /* weights and tables [rows, cols]; biases [cols] (rows 1) */
        int shape_ok = a->ndim == 2 ? a->dims[0] == p->rows && a->dims[1] == p->cols
                                    : a->ndim == 1 && p->rows == 1 && a->dims[0] == p->cols;
        if (!shape_ok) {
            print_error("%s: %s is [%lld, %lld] here, %d-D [%d, %d] in the fixture\n", name, p->name,
                        (long long)p->rows, (long long)p->cols, a->ndim, a->dims[0], a->ndim > 1 ? a->dims[1] : 0);
            missing++;
            continue;
        }
        memcpy(m->w + p->off, a->v, a->n * sizeof(float));
    }
    for (int j = 0; j < fx.narr; j++) {
        if (strncmp(fx.arr[j].name, "init.", 5)) continue;
        int found = 0;
        for (int i = 0; i < m->nparams; i++) found |= !strcmp(m->p[i].name, fx.arr[j].name + 5);
        if (!found) {
            print_error("%s: fixture tensor %s has no parameter here\n", name, fx.arr[j].name + 5);
            missing++;
        }
    }
    if (missing) fail_msg("%s: %d parameter names or shapes differ from the reference", name, missing);

    struct optim o;
    optim_init(&o, OPTIM_ADAM, 1e-2f);
    assert_true(fabsf(fixture_scalar(&fx, "lr") - o.lr) == 0.0f);
    struct train_ctx ctx = {.opt = &o, .active = NULL, .distill = 0};
    float *losses = malloc((size_t)steps * sizeof(float)), *tl = malloc((size_t)steps * T * sizeof(float));
    int32_t *ids = malloc((size_t)B * sizeof(int32_t));
    assert_non_null(losses);
    assert_non_null(tl);
    assert_non_null(ids);
    for (int k = 0; k < steps; k++) {
        char nm[32];
        m->bt.B = B;
        for (int j = 0; j < 2; j++) {
            snprintf(nm, sizeof nm, "c%d_%d", j, k);
            assert_int_equal(fixture_get_i32(&fx, nm, ids, (size_t)B), 0);
            memcpy(m->bt.cat[j], ids, (size_t)B * sizeof(int32_t));
        }
        snprintf(nm, sizeof nm, "num_%d", k);
        const float *num = fixture_get(&fx, nm, (size_t)B * 2);
        assert_non_null(num);
        for (int b = 0; b < B; b++) m->bt.num[0][b] = num[b * 2], m->bt.num[1][b] = num[b * 2 + 1];
        snprintf(nm, sizeof nm, "y_%d", k);
        const float *y = fixture_get(&fx, nm, (size_t)B * T);
        assert_non_null(y);
        memcpy(m->bt.y, y, (size_t)B * T * sizeof(float));
        double loss[T];
        assert_int_equal(model_train_step(m, &ctx, loss), PT_OK);
        double tot = 0.0;
        for (int t = 0; t < T; t++) tot += (double)cfg->tasks[t].weight * loss[t], tl[k * T + t] = (float)loss[t];
        losses[k] = (float)tot;
        fprintf(stderr, "%-14s step %d: loss %.7f (a %.7f, b %.7f)\n", name, k, tot, loss[0], loss[1]);
    }
    char what[160];
    snprintf(what, sizeof what, "%s task losses", name);
    assert_int_equal(fixture_compare(what, tl, fixture_get(&fx, "task_losses", (size_t)steps * T), (size_t)steps * T,
                                     0.0, LOSS_RTOL),
                     0);
    snprintf(what, sizeof what, "%s losses", name);
    assert_int_equal(fixture_compare(what, losses, fixture_get(&fx, "losses", (size_t)steps), (size_t)steps, 0.0,
                                     LOSS_RTOL),
                     0);
    double lworst = 0.0; /* max relative loss difference */
    const float *lw = fixture_get(&fx, "losses", (size_t)steps);
    for (int k = 0; k < steps; k++) lworst = fmax(lworst, fabs((double)losses[k] - lw[k]) / fabs((double)lw[k]));
    size_t bad = 0;
    double worst = 0.0, wabs = 0.0; /* max |ours - torch| / (atol + rtol |torch|), max |ours - torch| */
    for (int i = 0; i < m->nparams; i++) {
        const struct param *p = &m->p[i];
        size_t n = (size_t)(p->rows * p->cols);
        snprintf(an, sizeof an, "final.%s", p->name);
        const float *want = fixture_get(&fx, an, n);
        assert_non_null(want);
        snprintf(what, sizeof what, "%s %s", name, an);
        bad += fixture_compare(what, m->w + p->off, want, n, P_ATOL, P_RTOL);
        for (size_t e = 0; e < n; e++)
        {
            double d = fabs((double)m->w[p->off + e] - want[e]);
            wabs = fmax(wabs, d);
            worst = fmax(worst, d / (P_ATOL + P_RTOL * fabs((double)want[e])));
        }
    }
    fprintf(stderr, "%-14s losses: max rel diff %.2e; final params: max |ours - torch| %.2e, %.3f of the tolerance\n",
            name, lworst, wabs, worst);
    assert_int_equal(bad, 0);
    free(losses), free(tl), free(ids);
    model_destroy(m); /* frees the schema */
    pt_config_free(cfg);
    fixture_free(&fx);
}

static void test_shared_bottom(void **state)
{
    (void)state;
    check_model("shared_bottom");
}

static void test_mmoe(void **state)
{
    (void)state;
    check_model("mmoe");
}

static void test_ple_l1(void **state)
{
    (void)state;
    check_model("ple_l1");
}

static void test_ple_l2(void **state)
{
    (void)state;
    check_model("ple_l2");
}

static void test_esmm(void **state)
{
    (void)state;
    check_model("esmm");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_bottom), cmocka_unit_test(test_mmoe), cmocka_unit_test(test_ple_l1),
        cmocka_unit_test(test_ple_l2),        cmocka_unit_test(test_esmm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
