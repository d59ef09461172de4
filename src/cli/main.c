/* main.c: `polytask <command>`: dispatch, --help, --version. */
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char USAGE[] =
    "usage: polytask <command> [options]\n"
    "\n"
    "commands:\n"
    "  build     turn an event log into sample tables (docs/samples.md)\n"
    "  train     train a model from a YAML config (docs/config.md)\n"
    "  eval      score a labelled file with a model and print its metrics\n"
    "  predict   write one p_<task> column per task for each row of a file\n"
    "  inspect   print a model file's metadata, schema, parameters and metrics\n"
    "  recommend train a recommender (recommend train) or ask one for top-K items\n"
    "  models    the model registry: import, activate, rollback, A/B splits, API keys, audit\n"
    "  serve     serve the registry's models over HTTP (docs/api.md)\n"
    "\n"
    "`polytask <command> --help` tells more. Exit codes: 0 ok, 1 runtime error, 2 usage error.\n";

int cli_fail(int rc)
{
    const char *msg = pt_errmsg();
    fprintf(stderr, "polytask: %s\n", msg && *msg ? msg : pt_strerror(rc));
    return EXIT_RUNTIME;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "polytask %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see polytask %s --help)\n", cmd);
    return EXIT_USAGE;
}

int cli_parse_int(const char *s, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < 0) return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

void cli_log(int level, const char *msg, void *user)
{
    (void)user;
    if (level >= PT_LOG_INFO) fprintf(stderr, "polytask: %s%s\n", level >= PT_LOG_WARN ? "warning: " : "", msg);
}

static void cell(FILE *f, json_t *v)
{
    if (json_is_integer(v)) fprintf(f, " %10lld", (long long)json_integer_value(v));
    else if (json_is_number(v)) fprintf(f, " %10.5f", json_number_value(v));
    else fprintf(f, " %10s", "-");
}

void cli_print_tasks(FILE *f, const char *tasks_json)
{
    static const char *const cols[] = {"rows", "positives", "auc", "gauc", "logloss", "calibration",
                                       "accuracy", "f1", "rmse", "mae", "ndcg_at_k", "recall_at_k",
                                       "hit_at_k", "map_at_k", "mrr"};
    json_t *tasks = json_loads(tasks_json, 0, NULL);
    if (!json_is_object(tasks)) {
        json_decref(tasks);
        return;
    }
    int used[sizeof cols / sizeof cols[0]] = {0};
    const char *name;
    json_t *t;
    json_object_foreach(tasks, name, t)
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
            if (json_object_get(t, cols[c])) used[c] = 1;
    fprintf(f, "%-16s", "task");
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
        if (used[c]) fprintf(f, " %10s", cols[c]);
    fputc('\n', f);
    json_object_foreach(tasks, name, t) {
        fprintf(f, "%-16s", name);
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
            if (used[c]) cell(f, json_object_get(t, cols[c]));
        fputc('\n', f);
    }
    json_decref(tasks);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        printf("polytask %s\n", pt_version());
        return EXIT_OK;
    }
    pt_set_log_callback(cli_log, NULL);
    if (!strcmp(cmd, "build")) return cmd_build(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict")) return cmd_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "recommend")) return cmd_recommend(argc - 1, argv + 1);
    if (!strcmp(cmd, "models")) return cmd_models(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    fprintf(stderr, "polytask: unknown command '%s'\n\n%s", cmd, USAGE);
    return EXIT_USAGE;
}
