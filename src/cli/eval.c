/* eval.c: `polytask eval --model MODEL --data FILE ...` and
 * `polytask predict --model MODEL --data FILE --out FILE`. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char EVAL_HELP[] =
    "usage: polytask eval --model MODEL --data FILE [options]\n"
    "\n"
    "Scores a labelled file (same format and columns as the training data) and\n"
    "prints per-task metrics: AUC, GAUC with --group-by, logloss, calibration,\n"
    "accuracy / precision / recall / F1 at --threshold, RMSE and MAE.\n"
    "\n"
    "options:\n"
    "  --model MODEL         a model file written by polytask train --out\n"
    "  --data FILE           CSV/TSV (gzip accepted) with the label columns\n"
    "  --group-by COLUMN     also report GAUC over groups of this column (e.g. user id)\n"
    "  --roc-out FILE        write ROC curve points (task,threshold,fpr,tpr) as CSV\n"
    "  --threshold X         decision threshold for accuracy/precision/recall/F1 (0.5)\n"
    "  --top-k K             with --group-by: rank each group's rows by score and report\n"
    "                        NDCG, recall, precision, hit rate and MAP at K, and MRR\n"
    "  --score COLUMN        a baseline: score every task by this numeric feature of the\n"
    "                        model (e.g. i_view, an item's past views) instead of the\n"
    "                        model's predictions; reports AUC and GAUC only\n"
    "  --max-bad-rows N      skip up to N malformed rows\n"
    "  --threads N           threads (default 1)\n"
    "  --json                print {\"rows\":..,\"tasks\":{..}} as JSON\n"
    "  -h, --help            this help\n";

static const char PREDICT_HELP[] =
    "usage: polytask predict --model MODEL --data FILE --out FILE [options]\n"
    "\n"
    "Writes a CSV with the config's key columns (data.keys) and one p_<task>\n"
    "column per task for each row of FILE. Labels are not needed. The output is\n"
    "written atomically.\n"
    "\n"
    "options:\n"
    "  --model MODEL         a model file written by polytask train --out\n"
    "  --data FILE           CSV/TSV (gzip accepted) in the training data's format\n"
    "  --out FILE            the CSV to write\n"
    "  --max-bad-rows N      skip up to N malformed rows\n"
    "  --threads N           threads (default 1)\n"
    "  -h, --help            this help\n";

static int run(int argc, char **argv, int predict)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"data", required_argument, 0, 'd'},
        {"out", required_argument, 0, 'o'}, {"group-by", required_argument, 0, 'g'},
        {"roc-out", required_argument, 0, 'r'}, {"threshold", required_argument, 0, 'T'},
        {"max-bad-rows", required_argument, 0, 'b'}, {"threads", required_argument, 0, 't'},
        {"score", required_argument, 0, 's'}, {"top-k", required_argument, 0, 'K'}, {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *cmd = predict ? "predict" : "eval";
    const char *model = NULL, *data = NULL, *out = NULL;
    pt_eval_opts o = pt_eval_opts_default();
    int json = 0, c;
    long long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': data = optarg; break;
        case 'o': if (!predict) goto unknown; out = optarg; break;
        case 'g': if (predict) goto unknown; o.group_by = optarg; break;
        case 'r': if (predict) goto unknown; o.roc_out = optarg; break;
        case 'j': if (predict) goto unknown; json = 1; break;
        case 's': if (predict) goto unknown; o.score_column = optarg; break;
        case 'K':
            if (predict) goto unknown;
            if (cli_parse_int(optarg, &v) || v < 1 || v > 1000000) return cli_usage_error(cmd, "--top-k needs a number 1..1000000");
            o.top_k = (int)v;
            break;
        case 'T':
            if (predict) goto unknown;
            o.threshold = strtod(optarg, &end);
            if (end == optarg || *end || !(o.threshold >= 0 && o.threshold <= 1))
                return cli_usage_error(cmd, "--threshold needs a number in 0..1");
            break;
        case 'b':
            if (cli_parse_int(optarg, &v)) return cli_usage_error(cmd, "--max-bad-rows needs a non-negative integer");
            o.max_bad_rows = v;
            break;
        case 't':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 1024) return cli_usage_error(cmd, "--threads needs a number 1..1024");
            o.threads = (int)v;
            break;
        case 'h': fputs(predict ? PREDICT_HELP : EVAL_HELP, stdout); return EXIT_OK;
        case ':': return cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
        default:
        unknown:
            return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model) return cli_usage_error(cmd, "--model MODEL is required");
    if (!data) return cli_usage_error(cmd, "--data FILE is required");
    if (predict && !out) return cli_usage_error(cmd, "--out FILE is required");

    pt_model *m = NULL;
    int rc = pt_model_load(model, &m);
    if (rc) return cli_fail(rc);
    if (predict) {
        int64_t rows = 0;
        rc = pt_model_predict_file(m, data, out, &o, &rows);
        pt_model_free(m);
        if (rc) return cli_fail(rc);
        fprintf(stderr, "polytask: wrote %lld predictions to %s\n", (long long)rows, out);
        return EXIT_OK;
    }
    char *report = NULL;
    rc = pt_model_eval(m, data, &o, &report);
    pt_model_free(m);
    if (rc) return cli_fail(rc);
    if (json) {
        printf("%s\n", report);
    } else {
        json_t *r = json_loads(report, 0, NULL);
        char *tj = json_dumps(json_object_get(r, "tasks"), JSON_COMPACT);
        printf("%s: %lld rows", data, (long long)json_integer_value(json_object_get(r, "rows")));
        if (json_integer_value(json_object_get(r, "bad_rows")))
            printf(", %lld bad rows skipped", (long long)json_integer_value(json_object_get(r, "bad_rows")));
        printf("\n");
        if (tj) cli_print_tasks(stdout, tj);
        free(tj);
        json_decref(r);
        if (o.roc_out) printf("ROC points written to %s\n", o.roc_out);
    }
    pt_string_free(report);
    return EXIT_OK;
}

int cmd_eval(int argc, char **argv) { return run(argc, argv, 0); }
int cmd_predict(int argc, char **argv) { return run(argc, argv, 1); }
