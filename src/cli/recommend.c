/* recommend.c: `polytask recommend train --config FILE --out MODEL` and
 * `polytask recommend --model MODEL --user ID | --users FILE | --all`. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char TRAIN_HELP[] =
    "usage: polytask recommend train --config FILE [--out MODEL] [options]\n"
    "\n"
    "Trains the retrieval model of the config's recommend: section (docs/recommend.md)\n"
    "from interactions: a (user, item[, weight, time]) table or an event log. First it\n"
    "holds out by recommend.eval.protocol and prints HR, recall, NDCG and MRR at K,\n"
    "catalogue coverage and the mean popularity rank of what it recommends, beside the\n"
    "popularity baseline; then it trains the kept model on every interaction.\n"
    "\n"
    "options:\n"
    "  --config FILE     YAML config with a recommend: section\n"
    "  --out MODEL       model file to write (atomically)\n"
    "  --no-eval         skip the held-out evaluation\n"
    "  --no-refit        keep the model trained without the held-out items\n"
    "  --threads N       threads (default: recommend.threads, else 1)\n"
    "  --json            print the report as JSON\n"
    "  -h, --help        this help\n";

static const char QUERY_HELP[] =
    "usage: polytask recommend --model MODEL (--user ID | --users FILE | --all) [options]\n"
    "       polytask recommend train --config FILE --out MODEL   (see recommend train --help)\n"
    "       polytask recommend rank ...    ranking stage with a multi-task model (see --help)\n"
    "\n"
    "Top-K items for a user (an unknown user gets the cold-start answer), or for each\n"
    "user of a file (one id per line) or every known user, written as CSV\n"
    "user,rank,item,score.\n"
    "\n"
    "options:\n"
    "  --model MODEL         a file written by polytask recommend train --out\n"
    "  --user ID             one user: prints the items (JSON with --json)\n"
    "  --users FILE          batch mode over the ids in FILE; needs --out\n"
    "  --all                 batch mode over every known user; needs --out\n"
    "  --out FILE            CSV to write in batch mode\n"
    "  -k K                  items per user (default 20)\n"
    "  --include-seen        allow items the user already has (default: left out)\n"
    "  --category C          only items of category C (repeatable; needs a catalogue)\n"
    "  --exclude-category C  no items of category C (repeatable)\n"
    "  --allow FILE          only item ids listed in FILE, one per line (e.g. in stock)\n"
    "  --history I1,I2,...   for a user the model does not know: the items of their first\n"
    "                        events, used as their history (cold start)\n"
    "  --json                JSON output for --user\n"
    "  -h, --help            this help\n";

static const char RANK_HELP[] =
    "usage: polytask recommend rank --config FILE --model MODEL --rank-model MTL (--users FILE | --all)\n"
    "                               --out FILE [options]\n"
    "\n"
    "The ranking stage: retrieves --candidates items per user with MODEL, computes each\n"
    "candidate's features as `polytask build` would for an exposure one second after the\n"
    "last event of the config's samples: event log, scores them with the multi-task model\n"
    "MTL (trained on those samples), orders them by the objective and writes the top k as\n"
    "CSV user,rank,item,score,p_ctr,p_cvr,price,retrieval_rank.\n"
    "\n"
    "options:\n"
    "  --config FILE         the YAML config whose samples: section MTL was trained on\n"
    "  --model MODEL         a retrieval model (polytask recommend train --out)\n"
    "  --rank-model MTL      a multi-task model (polytask train --out)\n"
    "  --users FILE | --all  users to rank for (one id per line) or every known user\n"
    "  --out FILE            CSV to write\n"
    "  -k K                  items per user (default 20)\n"
    "  --candidates N        retrieved per user before ranking (default 100)\n"
    "  --objective OBJ       ctr, ctr_cvr (default) or revenue (ctr x cvr x price; needs a\n"
    "                        catalogue with prices in the retrieval model)\n"
    "  --ctr TASK            the click-like task (default: MTL's first task)\n"
    "  --cvr TASK            the purchase-like task (default: MTL's last task)\n"
    "  --per-category M      at most M items of one category in the top k (0: off)\n"
    "  --include-seen, --category C, --exclude-category C, --allow FILE: as for recommend\n"
    "  -h, --help            this help\n";

static void print_metrics_row(const char *name, json_t *m)
{
    printf("%-12s %8.5f %8.5f %8.5f %8.5f %9.4f %9.1f\n", name, json_number_value(json_object_get(m, "hr")),
           json_number_value(json_object_get(m, "recall")), json_number_value(json_object_get(m, "ndcg")),
           json_number_value(json_object_get(m, "mrr")), json_number_value(json_object_get(m, "coverage")),
           json_number_value(json_object_get(m, "pop_rank")));
}

static int cmd_rec_train(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'}, {"no-eval", no_argument, 0, 'E'},
        {"no-refit", no_argument, 0, 'R'}, {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *config = NULL, *out = NULL;
    pt_rec_train_opts o = pt_rec_train_opts_default();
    int json = 0, c;
    long long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'o': out = optarg; break;
        case 'E': o.eval = 0; break;
        case 'R': o.refit = 0; break;
        case 't':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 1024) return cli_usage_error("recommend train", "--threads needs a number 1..1024");
            o.threads = (int)v;
            break;
        case 'j': json = 1; break;
        case 'h': fputs(TRAIN_HELP, stdout); return EXIT_OK;
        case ':': return cli_usage_error("recommend train", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("recommend train", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("recommend train", "unexpected argument '%s'", argv[optind]);
    if (!config) return cli_usage_error("recommend train", "--config is required");
    pt_set_log_callback(cli_log, NULL);
    pt_config *cfg = NULL;
    pt_recommender *r = NULL;
    char *rep = NULL;
    int rc = pt_config_load(config, &cfg);
    if (!rc) rc = pt_rec_train(cfg, &o, &r);
    if (!rc && out) rc = pt_rec_save(r, out);
    if (!rc) rc = pt_rec_report(r, &rep);
    if (rc) {
        pt_rec_free(r);
        pt_config_free(cfg);
        return cli_fail(rc);
    }
    if (json) {
        printf("%s\n", rep);
    } else {
        json_t *j = json_loads(rep, 0, NULL);
        printf("model %s: %lld interactions (%lld skipped), %lld users, %lld items\n",
               json_string_value(json_object_get(j, "model")), (long long)json_integer_value(json_object_get(j, "interactions")),
               (long long)json_integer_value(json_object_get(j, "skipped")), (long long)json_integer_value(json_object_get(j, "users")),
               (long long)json_integer_value(json_object_get(j, "items")));
        json_t *ev = json_object_get(j, "eval");
        if (ev) {
            int k = (int)json_integer_value(json_object_get(ev, "k"));
            printf("eval %s: %lld test users, %lld training interactions, trained in %.2f s\n",
                   json_string_value(json_object_get(ev, "protocol")), (long long)json_integer_value(json_object_get(ev, "users")),
                   (long long)json_integer_value(json_object_get(ev, "train_interactions")),
                   json_number_value(json_object_get(ev, "train_seconds")));
            printf("%-12s %5s@%-2d %5s@%-2d %5s@%-2d %8s %7s@%-2d %9s\n", "", "hr", k, "recall", k, "ndcg", k, "mrr", "cover", k,
                   "pop_rank");
            print_metrics_row(json_string_value(json_object_get(j, "model")), json_object_get(ev, "model"));
            print_metrics_row("popularity", json_object_get(ev, "popularity"));
        }
        if (out) printf("wrote %s\n", out);
        json_decref(j);
    }
    pt_string_free(rep);
    pt_rec_free(r);
    pt_config_free(cfg);
    return EXIT_OK;
}

/* Lines of a file (one id each) into a NULL-terminated list; [out] *n. */
static char **read_lines(const char *path, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char **v = NULL, line[4096];
    int cap = 0;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (*n + 1 >= cap) {
            cap = cap ? cap * 2 : 256;
            char **nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) break;
            v = nv;
        }
        v[(*n)++] = strdup(line);
        v[*n] = NULL;
    }
    fclose(f);
    if (!v) v = calloc(1, sizeof *v);
    return v;
}

static void free_lines(char **v)
{
    for (int i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

/* The item filters both query commands take: --include-seen, --category /
 * --exclude-category (repeatable, one kind), --allow FILE. */
struct filters {
    const char *cats[64];
    int ncats, excl;     /* excl: -1 none given, 0 --category, 1 --exclude-category */
    const char *allow;
    char **allowed;
};

/* Takes option c ('s', 'g', 'x' or 'A') into f and q: 1 taken, 0 not a
 * filter option, or EXIT_USAGE after printing the usage error. */
static int filter_option(struct filters *f, pt_rec_query *q, int c, const char *arg, const char *cmd)
{
    switch (c) {
    case 's': q->include_seen = 1; return 1;
    case 'g':
    case 'x':
        if ((f->excl >= 0 && f->excl != (c == 'x')) || f->ncats == 64)
            return -cli_usage_error(cmd, "give up to 64 --category or --exclude-category, not both");
        f->excl = c == 'x';
        f->cats[f->ncats++] = arg;
        return 1;
    case 'A': f->allow = arg; return 1;
    default: return 0;
    }
}

/* Puts the filters into q, reading the allow list; EXIT_OK or EXIT_RUNTIME. */
static int filters_apply(struct filters *f, pt_rec_query *q)
{
    q->categories = f->ncats ? f->cats : NULL;
    q->ncategories = f->ncats;
    q->exclude_categories = f->excl == 1;
    if (!f->allow) return EXIT_OK;
    int n = 0;
    if (!(f->allowed = read_lines(f->allow, &n))) {
        fprintf(stderr, "polytask: %s: cannot read the allow list\n", f->allow);
        return EXIT_RUNTIME;
    }
    q->allow = (const char *const *)f->allowed, q->nallow = n;
    return EXIT_OK;
}

static int cmd_rec_query(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"user", required_argument, 0, 'u'}, {"users", required_argument, 0, 'U'},
        {"all", no_argument, 0, 'a'}, {"out", required_argument, 0, 'o'}, {"include-seen", no_argument, 0, 's'},
        {"category", required_argument, 0, 'g'}, {"exclude-category", required_argument, 0, 'x'},
        {"allow", required_argument, 0, 'A'}, {"json", no_argument, 0, 'j'}, {"history", required_argument, 0, 'H'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model = NULL, *user = NULL, *users = NULL, *out = NULL, *history = NULL;
    const char *hist[256];
    char histbuf[4096];
    int all = 0, json = 0, c, taken;
    long long v;
    pt_rec_query q = pt_rec_query_default();
    struct filters flt = {.excl = -1};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hk:", opts, NULL)) != -1) {
        if ((taken = filter_option(&flt, &q, c, optarg, "recommend"))) {
            if (taken < 0) return -taken;
            continue;
        }
        switch (c) {
        case 'm': model = optarg; break;
        case 'u': user = optarg; break;
        case 'U': users = optarg; break;
        case 'a': all = 1; break;
        case 'o': out = optarg; break;
        case 'H': history = optarg; break;
        case 'k':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 100000) return cli_usage_error("recommend", "-k needs a number 1..100000");
            q.k = (int)v;
            break;
        case 'j': json = 1; break;
        case 'h': fputs(QUERY_HELP, stdout); return EXIT_OK;
        case ':': return cli_usage_error("recommend", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("recommend", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("recommend", "unexpected argument '%s'", argv[optind]);
    if (!model) return cli_usage_error("recommend", "--model is required");
    if (!!user + !!users + all != 1) return cli_usage_error("recommend", "give exactly one of --user, --users and --all");
    if (!user && !out) return cli_usage_error("recommend", "batch mode (--users, --all) needs --out");
    if (history) {
        if (!user) return cli_usage_error("recommend", "--history goes with --user");
        snprintf(histbuf, sizeof histbuf, "%s", history);
        for (char *save = NULL, *t = strtok_r(histbuf, ",", &save); t && q.nhistory < 256; t = strtok_r(NULL, ",", &save))
            hist[q.nhistory++] = t;
        q.history = hist;
    }
    if (filters_apply(&flt, &q)) return EXIT_RUNTIME;
    pt_set_log_callback(cli_log, NULL);
    pt_recommender *r = NULL;
    char *res = NULL;
    int64_t n = 0;
    int rc = pt_rec_load(model, &r);
    if (!rc) rc = user ? pt_rec_recommend(r, user, &q, &res) : pt_rec_recommend_file(r, users, &q, out, &n);
    free_lines(flt.allowed);
    if (rc) {
        pt_rec_free(r);
        return cli_fail(rc);
    }
    if (user && json) {
        printf("%s\n", res);
    } else if (user) {
        json_t *j = json_loads(res, 0, NULL), *items = json_object_get(j, "items");
        printf("user %s (%s)\n", user, json_is_true(json_object_get(j, "known")) ? "known" : "unknown: cold start");
        for (size_t k = 0; k < json_array_size(items); k++) {
            json_t *it = json_array_get(items, k);
            const char *title = json_string_value(json_object_get(it, "title"));
            printf("%3zu  %-12s %9.6g  %s\n", k + 1, json_string_value(json_object_get(it, "item")),
                   json_number_value(json_object_get(it, "score")), title ? title : "");
        }
        json_decref(j);
    } else {
        printf("wrote %s: %lld users\n", out, (long long)n);
    }
    pt_string_free(res);
    pt_rec_free(r);
    return EXIT_OK;
}

static int cmd_rec_rank(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'C'}, {"model", required_argument, 0, 'm'}, {"rank-model", required_argument, 0, 'R'},
        {"users", required_argument, 0, 'U'}, {"all", no_argument, 0, 'a'}, {"out", required_argument, 0, 'o'},
        {"candidates", required_argument, 0, 'n'}, {"objective", required_argument, 0, 'O'}, {"ctr", required_argument, 0, 'c'},
        {"cvr", required_argument, 0, 'v'}, {"per-category", required_argument, 0, 'p'}, {"include-seen", no_argument, 0, 's'},
        {"category", required_argument, 0, 'g'}, {"exclude-category", required_argument, 0, 'x'},
        {"allow", required_argument, 0, 'A'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *config = NULL, *model = NULL, *users = NULL, *out = NULL;
    int all = 0, c, taken;
    long long v;
    pt_rec_query q = pt_rec_query_default();
    pt_rec_rank_opts o = pt_rec_rank_opts_default();
    struct filters flt = {.excl = -1};
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hk:", opts, NULL)) != -1) {
        if ((taken = filter_option(&flt, &q, c, optarg, "recommend rank"))) {
            if (taken < 0) return -taken;
            continue;
        }
        switch (c) {
        case 'C': config = optarg; break;
        case 'm': model = optarg; break;
        case 'R': o.rank_model = optarg; break;
        case 'U': users = optarg; break;
        case 'a': all = 1; break;
        case 'o': out = optarg; break;
        case 'n':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 100000) return cli_usage_error("recommend rank", "--candidates needs a number 1..100000");
            o.candidates = (int)v;
            break;
        case 'O':
            if (!strcmp(optarg, "ctr")) o.objective = PT_RANK_CTR;
            else if (!strcmp(optarg, "ctr_cvr")) o.objective = PT_RANK_CTR_CVR;
            else if (!strcmp(optarg, "revenue")) o.objective = PT_RANK_REVENUE;
            else return cli_usage_error("recommend rank", "--objective must be ctr, ctr_cvr or revenue");
            break;
        case 'c': o.ctr_task = optarg; break;
        case 'v': o.cvr_task = optarg; break;
        case 'p':
            if (cli_parse_int(optarg, &v) || v > 100000) return cli_usage_error("recommend rank", "--per-category needs a number 0..100000");
            o.per_category = (int)v;
            break;
        case 'k':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 100000) return cli_usage_error("recommend rank", "-k needs a number 1..100000");
            q.k = (int)v;
            break;
        case 'h': fputs(RANK_HELP, stdout); return EXIT_OK;
        case ':': return cli_usage_error("recommend rank", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("recommend rank", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("recommend rank", "unexpected argument '%s'", argv[optind]);
    if (!config || !model || !o.rank_model || !out) return cli_usage_error("recommend rank", "--config, --model, --rank-model and --out are required");
    if (!!users + all != 1) return cli_usage_error("recommend rank", "give one of --users and --all");
    if (filters_apply(&flt, &q)) return EXIT_RUNTIME;
    pt_set_log_callback(cli_log, NULL);
    pt_config *cfg = NULL;
    pt_recommender *r = NULL;
    int64_t n = 0;
    int rc = pt_config_load(config, &cfg);
    if (!rc) rc = pt_rec_load(model, &r);
    if (!rc) rc = pt_rec_rank_file(r, cfg, users, &q, &o, out, &n);
    free_lines(flt.allowed);
    pt_rec_free(r);
    pt_config_free(cfg);
    if (rc) return cli_fail(rc);
    printf("wrote %s: %lld users\n", out, (long long)n);
    return EXIT_OK;
}

int cmd_recommend(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "train")) return cmd_rec_train(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "rank")) return cmd_rec_rank(argc - 1, argv + 1);
    return cmd_rec_query(argc, argv);
}
