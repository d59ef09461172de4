/* train.c: `polytask train --config FILE [--out MODEL] ...` */
#define _GNU_SOURCE
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"

static const char HELP[] =
    "usage: polytask train --config FILE [options]\n"
    "\n"
    "Trains the model a YAML config describes (docs/config.md) on its train data,\n"
    "with early stopping on its valid data, then evaluates on its test data when\n"
    "the config names one, and prints the metrics.\n"
    "\n"
    "options:\n"
    "  --config FILE         the YAML config (required)\n"
    "  --out MODEL           write the trained model to this file\n"
    "  --threads N           threads (default: the config's train.threads, else 1)\n"
    "  --seed S              seed for initialisation, shuffling and dropout\n"
    "  --max-bad-rows N      skip up to N malformed rows, counted and reported\n"
    "  --checkpoint FILE     write the training state after each epoch (atomically)\n"
    "  --resume              continue from --checkpoint FILE when it exists\n"
    "  --init-from MODEL     warm-start every tensor whose name and shape match MODEL's\n"
    "                        (transfer learning; a config with one more task trains its new tower)\n"
    "  --freeze GROUPS       keep these parameter groups fixed (comma list of embeddings,\n"
    "                        experts, gates, towers, loss); use with --init-from\n"
    "  --teacher MODEL       distil: mix MODEL's predictions into the labels with weight\n"
    "                        train.distill_weight (default 0.5)\n"
    "  --json                print the summary as JSON on stdout\n"
    "  -h, --help            this help\n";

struct prog {
    int tty;
    int json;
};

static void on_progress(const pt_progress *p, void *user)
{
    struct prog *pr = user;
    if (p->end_of_epoch) {
        if (pr->tty) fprintf(stderr, "\r\033[K");
        fprintf(stderr, "epoch %d/%d  loss %.5f  %.0f samples/s", p->epoch, p->epochs, p->loss, p->samples_per_s);
        json_t *v = p->valid_json ? json_loads(p->valid_json, 0, NULL) : NULL;
        const char *name;
        json_t *t;
        json_object_foreach(v, name, t) {
            json_t *auc = json_object_get(t, "auc"), *rmse = json_object_get(t, "rmse");
            if (json_is_number(auc)) fprintf(stderr, "  valid %s auc %.5f", name, json_number_value(auc));
            else if (json_is_number(rmse)) fprintf(stderr, "  valid %s rmse %.5f", name, json_number_value(rmse));
        }
        json_decref(v);
        fputc('\n', stderr);
    } else if (pr->tty) {
        fprintf(stderr, "\r\033[Kepoch %d/%d  %3.0f%%  loss %.5f  %.0f samples/s  ETA %.0fs", p->epoch, p->epochs,
                100.0 * (double)p->done / (double)(p->total ? p->total : 1), p->loss, p->samples_per_s, p->eta_s);
    }
    fflush(stderr);
}

int cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 't'}, {"seed", required_argument, 0, 's'},
        {"max-bad-rows", required_argument, 0, 'b'}, {"checkpoint", required_argument, 0, 'k'},
        {"resume", no_argument, 0, 'r'}, {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'},
        {"init-from", required_argument, 0, 'i'}, {"freeze", required_argument, 0, 'f'},
        {"teacher", required_argument, 0, 'T'},
        {0, 0, 0, 0}};
    const char *config = NULL, *out = NULL;
    pt_train_opts o = pt_train_opts_default();
    struct prog pr = {.tty = isatty(2)};
    long long v;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'o': out = optarg; break;
        case 't':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 1024) return cli_usage_error("train", "--threads needs a number 1..1024");
            o.threads = (int)v;
            break;
        case 's':
            if (cli_parse_int(optarg, &v)) return cli_usage_error("train", "--seed needs a non-negative integer");
            o.seed = v;
            o.has_seed = 1;
            break;
        case 'b':
            if (cli_parse_int(optarg, &v)) return cli_usage_error("train", "--max-bad-rows needs a non-negative integer");
            o.max_bad_rows = v;
            break;
        case 'k': o.checkpoint = optarg; break;
        case 'r': o.resume = 1; break;
        case 'i': o.init_from = optarg; break;
        case 'f': o.freeze = optarg; break;
        case 'T': o.teacher = optarg; break;
        case 'j': pr.json = 1; break;
        case 'h': fputs(HELP, stdout); return EXIT_OK;
        case ':': return cli_usage_error("train", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("train", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    if (!config) return cli_usage_error("train", "--config FILE is required");
    if (o.resume && !o.checkpoint) return cli_usage_error("train", "--resume needs --checkpoint FILE");
    o.progress = on_progress;
    o.progress_user = &pr;

    pt_config *cfg = NULL;
    pt_model *m = NULL;
    char *report = NULL;
    int rc = pt_config_load(config, &cfg);
    if (rc) return cli_fail(rc);
    rc = pt_train(cfg, &o, &m);
    pt_config_free(cfg);
    if (rc) return cli_fail(rc);
    if (out && (rc = pt_model_save(m, out))) {
        pt_model_free(m);
        return cli_fail(rc);
    }
    if ((rc = pt_model_train_report(m, &report))) {
        pt_model_free(m);
        return cli_fail(rc);
    }
    json_t *r = json_loads(report, 0, NULL);
    if (pr.json) {
        printf("%s\n", report);
    } else {
        const char *on = json_string_value(json_object_get(r, "evaluated_on"));
        if (on && strcmp(on, "none")) {
            char *tj = json_dumps(json_object_get(r, "tasks"), JSON_COMPACT);
            printf("%s metrics (%lld rows):\n", on,
                   (long long)json_integer_value(json_object_get(r, strcmp(on, "test") ? "valid_rows" : "test_rows")));
            if (tj) cli_print_tasks(stdout, tj);
            free(tj);
        } else {
            printf("no valid or test data, so no metrics (set data.valid, data.test or data.split)\n");
        }
        printf("trained %lld rows in %.2f s (%.0f samples/s, %lld parameters, %s GEMM, %lld threads)\n",
               (long long)json_integer_value(json_object_get(r, "train_rows")),
               json_number_value(json_object_get(r, "train_seconds")),
               json_number_value(json_object_get(r, "train_samples_per_second")),
               (long long)json_integer_value(json_object_get(r, "params")),
               json_string_value(json_object_get(r, "gemm")),
               (long long)json_integer_value(json_object_get(r, "threads")));
        if (out) printf("model written to %s\n", out);
    }
    json_decref(r);
    pt_string_free(report);
    pt_model_free(m);
    return EXIT_OK;
}
