/* inspect.c: `polytask inspect MODEL [--json]` */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char HELP[] =
    "usage: polytask inspect MODEL [--json] [--gates --data FILE]\n"
    "\n"
    "Prints a model file's metadata (engine version, config), schema (features,\n"
    "vocabulary sizes, numeric statistics), parameter tensors and counts, and the\n"
    "metrics stored at training time. The file's checksum is verified first.\n"
    "\n"
    "options:\n"
    "  --json                everything as one JSON object\n"
    "  --gates --data FILE   mean gate weight of each expert per task over FILE's rows\n"
    "                        (MMoE, PLE): how to check that experts are not collapsed\n"
    "  -h, --help            this help\n";

int cmd_inspect(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'},
                                         {"gates", no_argument, 0, 'g'}, {"data", required_argument, 0, 'd'},
                                         {0, 0, 0, 0}};
    int json = 0, gates = 0, c;
    const char *data = NULL;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (c == 'j') json = 1;
        else if (c == 'g') gates = 1;
        else if (c == 'd') data = optarg;
        else if (c == ':') return cli_usage_error("inspect", "%s needs a value", argv[optind - 1]);
        else if (c == 'h') { fputs(HELP, stdout); return EXIT_OK; }
        else return cli_usage_error("inspect", "unknown option '%s'", argv[optind - 1]);
    }
    if (optind != argc - 1) return cli_usage_error("inspect", "give exactly one MODEL file");
    const char *path = argv[optind];
    if (gates != (data != NULL)) return cli_usage_error("inspect", "--gates and --data FILE go together");
    pt_model *m = NULL;
    char *info = NULL;
    int rc = pt_model_load(path, &m);
    if (rc) return cli_fail(rc);
    if (gates) {
        rc = pt_model_gate_stats(m, data, NULL, &info);
        pt_model_free(m);
        if (rc) return cli_fail(rc);
        if (json) {
            printf("%s\n", info);
        } else {
            json_t *r = json_loads(info, 0, NULL);
            size_t i, k;
            json_t *g, *v;
            printf("mean gate weights over %lld rows of %s:\n", (long long)json_integer_value(json_object_get(r, "rows")), data);
            json_array_foreach(json_object_get(r, "gates"), i, g) {
                printf("  gate %s\n", json_string_value(json_object_get(g, "gate")));
                json_array_foreach(json_object_get(g, "mean"), k, v)
                    printf("    %-36s %.4f\n", json_string_value(json_array_get(json_object_get(g, "experts"), k)),
                           json_number_value(v));
            }
            json_decref(r);
        }
        pt_string_free(info);
        return EXIT_OK;
    }
    rc = pt_model_info(m, &info);
    pt_model_free(m);
    if (rc) return cli_fail(rc);
    if (json) {
        printf("%s\n", info);
        pt_string_free(info);
        return EXIT_OK;
    }
    json_t *r = json_loads(info, 0, NULL);
    json_t *model = json_object_get(r, "model");
    printf("model file     %s\n", path);
    printf("engine         polytask %s (gemm: %s)\n", json_string_value(json_object_get(r, "engine_version")),
           json_string_value(json_object_get(r, "gemm")));
    printf("config         %s\n", json_string_value(json_object_get(r, "config_path")));
    printf("kind           %s\n", json_string_value(json_object_get(model, "kind")));
    printf("parameters     %lld\n", (long long)json_integer_value(json_object_get(model, "params")));
    printf("\nfeatures:\n");
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(json_object_get(r, "schema"), "features"), i, f) {
        const char *kind = json_string_value(json_object_get(f, "kind"));
        printf("  %-24s %-12s", json_string_value(json_object_get(f, "name")), kind);
        if (!strcmp(kind, "numeric")) {
            size_t nb = json_array_size(json_object_get(f, "bounds"));
            printf(" mean %.4g  std %.4g", json_number_value(json_object_get(f, "mean")),
                   json_number_value(json_object_get(f, "std")));
            if (nb) printf("  %zu quantile buckets", nb + 1);
            printf("\n");
        }
        else if (json_object_get(f, "vocab_size"))
            printf(" vocabulary %lld (+1 unknown)\n", (long long)json_integer_value(json_object_get(f, "vocab_size")));
        else
            printf(" %lld hash buckets\n", (long long)json_integer_value(json_object_get(f, "rows")));
    }
    printf("\ntensors:\n");
    json_array_foreach(json_object_get(r, "tensors"), i, f) {
        json_t *shape = json_object_get(f, "shape");
        printf("  %-40s [", json_string_value(json_object_get(f, "name")));
        size_t k;
        json_t *d;
        json_array_foreach(shape, k, d) printf("%s%lld", k ? ", " : "", (long long)json_integer_value(d));
        printf("]\n");
    }
    json_t *metrics = json_object_get(r, "metrics");
    if (metrics) {
        char *tj = json_dumps(metrics, JSON_COMPACT);
        printf("\nmetrics (%s set at training time):\n",
               json_string_value(json_object_get(json_object_get(r, "train"), "evaluated_on")));
        if (tj) cli_print_tasks(stdout, tj);
        free(tj);
    }
    json_decref(r);
    pt_string_free(info);
    return EXIT_OK;
}
