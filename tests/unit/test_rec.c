/* test_rec.c: the recommendation core on hand-computed cases: the split
 * protocol (first time of a pair, latest item held out, file order breaking
 * time ties, time split), ranking metrics (HR, recall, NDCG, MRR, coverage,
 * popularity rank), item2item similarities, and a train → save → load →
 * recommend round trip with a doctored file refused. */
#define _GNU_SOURCE
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "data/config.h"
#include "polytask.h"
#include "rec/catalog.h"
#include "rec/rec.h"
#include "tmpdir.h"
#include "util/util.h"

static void close_to(double got, double want)
{
    if (!(fabs(got - want) <= 1e-6)) fail_msg("got %.9g, want %.9g", got, want);
}

/* A log from "user item time" triples. */
static void make_log(struct rec_log *log, const char *const *rows, int n)
{
    memset(log, 0, sizeof *log);
    vocab_init(&log->users);
    vocab_init(&log->items);
    log->user = pt_malloc((size_t)n * sizeof *log->user);
    log->item = pt_malloc((size_t)n * sizeof *log->item);
    log->time = pt_malloc((size_t)n * sizeof *log->time);
    log->weight = pt_malloc((size_t)n * sizeof *log->weight);
    for (int k = 0; k < n; k++) {
        char u[16], i[16];
        long long t;
        assert_int_equal(sscanf(rows[k], "%15s %15s %lld", u, i, &t), 3);
        assert_int_equal(vocab_add(&log->users, u, strlen(u), &log->user[k]), PT_OK);
        assert_int_equal(vocab_add(&log->items, i, strlen(i), &log->item[k]), PT_OK);
        log->time[k] = t;
        log->weight[k] = 1;
    }
    log->n = log->cap = n;
    log->has_time = 1;
}

static int32_t item_id(const struct rec_log *log, const char *s) { return vocab_find(&log->items, s, strlen(s)); }

static void test_leave_last_out(void **state)
{
    (void)state;
    /* u0 re-buys a at 30: counts once, at 10. u2's b and c share a second: file order decides. u1 has one item. */
    const char *const rows[] = {"u0 a 10", "u1 a 5", "u0 b 20", "u2 b 1", "u0 a 30", "u2 c 1", "u0 c 30"};
    struct rec_log log;
    make_log(&log, rows, 7);
    struct rec_split s;
    assert_int_equal(rec_split_make(&log, REC_LEAVE_LAST, INT64_MIN, &s), PT_OK);
    assert_int_equal(s.ntest, 2);
    const struct rec_hist *h = &s.train;
    /* u0: a, b trained; c held out */
    assert_int_equal(s.test_user[0], 0);
    assert_int_equal(s.test_off[1] - s.test_off[0], 1);
    assert_int_equal(s.test_item[0], item_id(&log, "c"));
    assert_int_equal(h->off[1] - h->off[0], 2);
    assert_int_equal(h->item[h->off[0]], item_id(&log, "a"));
    assert_int_equal(h->time[h->off[0]], 10);
    assert_int_equal(h->item[h->off[0] + 1], item_id(&log, "b"));
    /* u1 has one item: no test item, and (as in the peer's protocol) no training either */
    assert_int_equal(h->off[2] - h->off[1], 0);
    /* u2: b then c in the same second: c is the latest */
    assert_int_equal(s.test_user[1], 2);
    assert_int_equal(s.test_item[1], item_id(&log, "c"));
    assert_int_equal(h->item[h->off[2]], item_id(&log, "b"));
    rec_split_free(&s);

    assert_int_equal(rec_split_make(&log, REC_TIME_SPLIT, 25, &s), PT_OK);
    assert_int_equal(s.ntest, 1); /* only u0 has items from 25 on */
    assert_int_equal(s.test_item[0], item_id(&log, "c"));
    assert_int_equal(s.train.off[3], 2 + 1 + 2);
    rec_split_free(&s);
    rec_log_free(&log);
}

static void test_metrics_by_hand(void **state)
{
    (void)state;
    /* 5 items; popularity scores 5..1; u0 trained {0}, u1 trained {1, 2};
     * u0 holds out 2 (unseen ranking 1 > 2 > 3 > 4: rank 1), u1 holds out 4
     * (unseen 0 > 3 > 4: rank 2). */
    int64_t off[3] = {0, 1, 3}, tt[3] = {0, 0, 0};
    int32_t items[3] = {0, 1, 2};
    float w[3] = {1, 1, 1};
    struct rec_split s = {0};
    s.train = (struct rec_hist){.U = 2, .off = off, .item = items, .time = tt, .weight = w};
    int32_t tu[2] = {0, 1}, ti[2] = {2, 4};
    int64_t toff[3] = {0, 1, 2}, ttime[2] = {0, 0};
    s.ntest = 2, s.test_user = tu, s.test_off = toff, s.test_item = ti, s.test_time = ttime;
    float pop[5] = {5, 4, 3, 2, 1};
    struct rec_model m = {.kind = REC_POPULARITY, .U = 2, .N = 5, .pop = pop};
    struct rec_metrics x;
    assert_int_equal(rec_evaluate(&m, &s, 2, &x), PT_OK);
    assert_int_equal(x.users, 2);
    close_to(x.hr, 0.5);
    close_to(x.recall, 0.5);
    close_to(x.ndcg, (1 / log2(3.0)) / 2);
    close_to(x.mrr, (1.0 / 2 + 1.0 / 3) / 2);
    /* top-2 lists: u0 {1, 2}, u1 {0, 3}: 4 of 5 items */
    close_to(x.coverage, 0.8);
    /* training counts 1,1,1,0,0: ranks 1,1,1,4,4; recommended 1,2,0,3 */
    close_to(x.pop_rank, (1 + 1 + 1 + 4) / 4.0);
    /* K past the catalogue: every unseen item is listed */
    assert_int_equal(rec_evaluate(&m, &s, 10, &x), PT_OK);
    close_to(x.hr, 1.0);
    close_to(x.ndcg, (1 / log2(3.0) + 1 / log2(4.0)) / 2);
}

static void test_item2item_similarity(void **state)
{
    (void)state;
    /* users {a,b}, {a,b,c}, {b,c}: n = 2, 3, 2; c_ab = 2, c_ac = 1, c_bc = 2 */
    const char *const rows[] = {"u0 a 1", "u0 b 2", "u1 a 1", "u1 b 2", "u1 c 3", "u2 b 1", "u2 c 2"};
    struct rec_log log;
    make_log(&log, rows, 7);
    struct rec_hist h;
    assert_int_equal(rec_hist_build(&log, &h), PT_OK);
    struct rec_cfg cfg = {.neighbours = 10, .alpha = 0.5};
    struct rec_model m = {0};
    assert_int_equal(rec_i2i_train(&cfg, &h, log.items.n, &m), PT_OK);
    int32_t a = item_id(&log, "a"), b = item_id(&log, "b"), c = item_id(&log, "c");
    assert_int_equal(m.nb_off[a + 1] - m.nb_off[a], 2);
    assert_int_equal(m.nb_item[m.nb_off[a]], b);
    close_to(m.nb_sim[m.nb_off[a]], 2 / sqrt(6.0));
    assert_int_equal(m.nb_item[m.nb_off[a] + 1], c);
    close_to(m.nb_sim[m.nb_off[a] + 1], 1 / 2.0);
    /* alpha 1: divide by the source item's count only */
    rec_model_free(&m);
    cfg.alpha = 1;
    assert_int_equal(rec_i2i_train(&cfg, &h, log.items.n, &m), PT_OK);
    assert_int_equal(m.nb_item[m.nb_off[c]], b);
    close_to(m.nb_sim[m.nb_off[c]], 2 / 2.0);
    /* one neighbour kept */
    rec_model_free(&m);
    cfg.neighbours = 1;
    assert_int_equal(rec_i2i_train(&cfg, &h, log.items.n, &m), PT_OK);
    assert_int_equal(m.nb_off[log.items.n], 3);
    rec_model_free(&m);
    rec_hist_free(&h);
    rec_log_free(&log);
}

static void test_title_tokens(void **state)
{
    (void)state;
    int32_t a[96], b[96], c[96];
    /* case and punctuation do not matter; UTF-8 letters are word characters */
    int na = rec_catalog_tokens("Red  Heart, T-Light", 19, a, 96);
    int nb = rec_catalog_tokens("red heart t light", 17, b, 96);
    assert_true(na > 4);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    const char *u = "Crème brûlée";
    int nc = rec_catalog_tokens(u, strlen(u), c, 96);
    /* 2 words, 1 bigram, trigrams over code points of "#crème#" (5) and "#brûlée#" (6) */
    assert_int_equal(nc, 2 + 1 + 5 + 6);
    for (int k = 0; k < nc; k++) assert_true(c[k] >= 0 && c[k] < CATALOG_TOKEN_BUCKETS);
    /* a cut in the middle of a character never reads past the end */
    assert_true(rec_catalog_tokens(u, 4, c, 96) >= 1);
    assert_int_equal(rec_catalog_tokens("", 0, c, 96), 0);
    assert_int_equal(rec_catalog_tokens("a b c d e f", 11, c, 3), 3);
}

static void test_content_neighbours(void **state)
{
    (void)state;
    char dir[64], items[128];
    assert_int_equal(tmpdir_make(dir, sizeof dir, "cat"), 0);
    snprintf(items, sizeof items, "%s/items.csv", dir);
    FILE *f = fopen(items, "w");
    assert_non_null(f);
    fputs("id,cat,title,price\nA,mugs,red spotty mug,3\nB,mugs,blue spotty mug,3.2\nC,lamps,paper lantern,9\n"
          "A,mugs,ignored second row,1\nNEW,mugs,green spotty mug,3.1\n",
          f);
    fclose(f);
    struct rec_cfg cfg = {.items = {.header = 1, .path = items}, .item_id = "id", .item_category = "cat", .item_title = "title",
                          .item_price = "price"};
    char *paths[1] = {items};
    cfg.item_paths = paths, cfg.nitem_paths = 1;
    struct vocab v;
    vocab_init(&v);
    int32_t id;
    assert_int_equal(vocab_add(&v, "A", 1, &id), PT_OK);
    assert_int_equal(vocab_add(&v, "B", 1, &id), PT_OK);
    assert_int_equal(vocab_add(&v, "C", 1, &id), PT_OK);
    struct rec_catalog c;
    assert_int_equal(rec_catalog_read(&cfg, &v, &c), PT_OK);
    assert_int_equal(v.n, 4); /* NEW was added */
    assert_int_equal(c.added, 1);
    assert_int_equal(c.rows, 5);
    assert_int_equal(c.cats.n, 2);
    assert_int_equal(c.cat[0], c.cat[1]);
    assert_int_equal(c.cat[3], c.cat[0]);
    close_to(c.price[0], 3); /* the first row of A wins */
    uint8_t cold[4] = {0, 0, 0, 1};
    int64_t *off;
    int32_t *it;
    float *sim;
    assert_int_equal(rec_catalog_neighbours(&c, cold, 5, &off, &it, &sim), PT_OK);
    assert_int_equal(off[3], 0); /* warm rows are empty */
    assert_true(off[4] - off[3] >= 2);
    /* the spotty mugs come before the lantern, whatever order */
    assert_true(it[off[3]] == 0 || it[off[3]] == 1);
    assert_true(sim[off[3]] > 0.05f && sim[off[3]] <= 1.0001f);
    for (int64_t q = off[3]; q < off[4]; q++) assert_true(it[q] != 2 || (q >= off[3] + 2 && sim[q] < sim[off[3] + 1]));
    pt_free(off), pt_free(it), pt_free(sim);
    rec_catalog_free(&c);
    vocab_free(&v);
    tmpdir_remove(dir);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void round_trip(const char *dir, const char *kind)
{
    char csv[512], yaml[1024], model[512], cfgp[512];
    snprintf(csv, sizeof csv, "%s/in.csv", dir);
    snprintf(cfgp, sizeof cfgp, "%s/rec.yaml", dir);
    snprintf(model, sizeof model, "%s/%s.ptm", dir, kind);
    /* 30 users over 12 items in 3 groups; each user buys within one group */
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    fprintf(f, "user_id,item_id,timestamp\n");
    for (int u = 0; u < 30; u++)
        for (int k = 0; k < 3; k++) fprintf(f, "U%d,I%d,%d\n", u, (u % 3) * 4 + (u + k) % 4, 100 * u + k);
    fclose(f);
    snprintf(yaml, sizeof yaml,
             "recommend:\n  interactions:\n    path: in.csv\n    columns: {user: user_id, item: item_id, time: timestamp}\n"
             "  model: %s\n  dim: 8\n  epochs: 5\n  batch: 16\n  neighbours: 5\n  eval: {k: 3}\n",
             kind);
    write_file(cfgp, yaml);
    pt_config *cfg = NULL;
    assert_int_equal(pt_config_load(cfgp, &cfg), PT_OK);
    pt_recommender *r = NULL, *r2 = NULL;
    assert_int_equal(pt_rec_train(cfg, NULL, &r), PT_OK);
    char *rep = NULL;
    assert_int_equal(pt_rec_report(r, &rep), PT_OK);
    assert_non_null(strstr(rep, "\"popularity\""));
    pt_string_free(rep);
    assert_int_equal(pt_rec_save(r, model), PT_OK);
    assert_int_equal(pt_rec_load(model, &r2), PT_OK);
    pt_rec_query q = pt_rec_query_default();
    q.k = 4;
    const char *users[] = {"U0", "U7", "nobody"};
    for (int k = 0; k < 3; k++) {
        char *a = NULL, *b = NULL;
        assert_int_equal(pt_rec_recommend(r, users[k], &q, &a), PT_OK);
        assert_int_equal(pt_rec_recommend(r2, users[k], &q, &b), PT_OK);
        assert_string_equal(a, b);
        pt_string_free(a);
        pt_string_free(b);
    }
    /* batch mode (blocked top-K for factor models) answers as single queries do */
    char batch[600];
    snprintf(batch, sizeof batch, "%s/%s.top.csv", dir, kind);
    int64_t nu = 0;
    assert_int_equal(pt_rec_recommend_file(r2, NULL, &q, batch, &nu), PT_OK);
    assert_int_equal(nu, 30);
    FILE *bf = fopen(batch, "r");
    assert_non_null(bf);
    char line[256];
    assert_non_null(fgets(line, sizeof line, bf));
    assert_string_equal(line, "user,rank,item,score\n");
    for (int u = 0; u < 30; u++) {
        char uname[16], *one = NULL, want[64];
        snprintf(uname, sizeof uname, "U%d", u);
        assert_int_equal(pt_rec_recommend(r2, uname, &q, &one), PT_OK);
        for (int k = 1; k <= 4; k++) {
            assert_non_null(fgets(line, sizeof line, bf));
            char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL, *c3 = c2 ? strchr(c2 + 1, ',') : NULL;
            assert_non_null(c3);
            assert_true(!strncmp(line, uname, (size_t)(c1 - line)) && atoi(c1 + 1) == k);
            snprintf(want, sizeof want, "\"item\":\"%.*s\"", (int)(c3 - c2 - 1), c2 + 1);
            if (!strstr(one, want)) fail_msg("%s: batch row %s not in %s", kind, line, one);
        }
        pt_string_free(one);
    }
    assert_null(fgets(line, sizeof line, bf));
    fclose(bf);
    /* a seen item never comes back unless asked: U0 bought I0, I1, I2 */
    char *a = NULL;
    assert_int_equal(pt_rec_recommend(r2, "U0", &q, &a), PT_OK);
    assert_null(strstr(a, "\"I0\""));
    assert_null(strstr(a, "\"I1\""));
    pt_string_free(a);
    /* the allow list restricts */
    const char *allow[] = {"I5", "I9"};
    q.allow = allow, q.nallow = 2;
    assert_int_equal(pt_rec_recommend(r2, "U0", &q, &a), PT_OK);
    assert_non_null(strstr(a, "\"I5\""));
    assert_null(strstr(a, "\"I3\""));
    pt_string_free(a);
    pt_rec_free(r2);
    /* a flipped byte is refused */
    f = fopen(model, "r+b");
    assert_non_null(f);
    fseek(f, 200, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 200, SEEK_SET);
    fputc(ch ^ 0x20, f);
    fclose(f);
    r2 = NULL;
    assert_int_not_equal(pt_rec_load(model, &r2), PT_OK);
    assert_null(r2);
    /* a multi-task model file is not a recommender */
    pt_rec_free(r);
    pt_config_free(cfg);
}

static void test_round_trip(void **state)
{
    (void)state;
    char dir[64];
    assert_int_equal(tmpdir_make(dir, sizeof dir, "rec"), 0);
    round_trip(dir, "item2item");
    round_trip(dir, "bpr");
    round_trip(dir, "popularity");
    round_trip(dir, "two_tower");
    tmpdir_remove(dir);
}

static void test_config_errors(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"recommend:\n  model: nope\n  interactions: {path: x.csv}\n", "'model' must be"},
        {"recommend:\n  interactions: {path: x.csv}\n  dim: 0\n", "'dim' must be an integer in 1..4096"},
        {"recommend:\n  model: bpr\n", "needs a path"},
        {"recommend:\n  interactions: {path: x.csv, event_weights: {view: 1}}\n", "needs a 'columns.type'"},
        {"recommend:\n  interactions: {path: x.csv}\n  eval: {protocol: random}\n", "leave_last_out or time_split"},
        {"recommend:\n  interactions: {path: x.csv}\n  colour: red\n", "colour"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        struct pt_config *c = NULL;
        int rc = config_parse(bad[k][0], strlen(bad[k][0]), "t.yaml", &c);
        assert_int_equal(rc, PT_ECONFIG);
        if (!strstr(pt_errmsg(), bad[k][1])) fail_msg("case %zu: message '%s' lacks '%s'", k, pt_errmsg(), bad[k][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leave_last_out),     cmocka_unit_test(test_metrics_by_hand),
        cmocka_unit_test(test_item2item_similarity), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_config_errors),      cmocka_unit_test(test_title_tokens),
        cmocka_unit_test(test_content_neighbours),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
