/* build.c: `polytask build --config FILE --out DIR`: event log → sample tables. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char HELP[] =
    "usage: polytask build --config FILE [--out DIR] [options]\n"
    "\n"
    "Turns the event log named in the config's samples: section into sample\n"
    "tables: one row per exposure, features computed only from earlier events,\n"
    "labels from what the same user did on the same item within each label's\n"
    "window, split by time (docs/samples.md). Writes DIR/train.csv, valid.csv\n"
    "and test.csv as the split asks, and DIR/build.json (the report).\n"
    "A DIR holding a build of the same section and unchanged inputs is kept.\n"
    "\n"
    "options:\n"
    "  --config FILE         YAML config with a samples: section\n"
    "  --out DIR             output folder (default: samples.cache, or <config>.samples/)\n"
    "  --assume-sorted       fail on the first event older than the one before it,\n"
    "                        instead of sorting the log first\n"
    "  --sort-memory MIB     memory for sorting an unsorted log (default 256)\n"
    "  --max-bad-rows N      skip up to N malformed rows (default: samples.max_bad_rows, 0)\n"
    "  --force               rebuild even when DIR is up to date\n"
    "  --threads N           accepted for symmetry; the build runs on one thread\n"
    "  --json                print the report as JSON on stdout\n"
    "  -h, --help            this help\n";

static void print_report(const char *report)
{
    json_t *r = json_loads(report, 0, NULL);
    json_t *s = json_object_get(r, "samples"), *pos = json_object_get(r, "positives"), *cold = json_object_get(r, "cold");
#define I(o, k) ((long long)json_integer_value(json_object_get((o), (k))))
    printf("events %lld (%lld lines, %lld bad, %lld without a user or item id), %s, %.2f s, %.0f events/s\n",
           I(r, "events"), I(r, "lines"), I(r, "bad_rows"), I(r, "missing_ids"),
           json_is_true(json_object_get(r, "sorted_input")) ? "in time order" : "sorted first",
           json_number_value(json_object_get(r, "seconds")), json_number_value(json_object_get(r, "events_per_second")));
    printf("users %lld, items %lld, exposures %lld (%lld repeats skipped by granularity)\n", I(r, "users"),
           I(r, "items"), I(r, "exposures"), I(r, "duplicates_skipped"));
    printf("samples: train %lld, valid %lld, test %lld (negatives %lld; windows past the log's end: %lld rows dropped, %lld with an empty label)\n",
           I(s, "train"), I(s, "valid"), I(s, "test"), I(r, "negatives"), I(r, "incomplete_dropped"),
           I(r, "incomplete_marked"));
    const char *k;
    json_t *v;
    printf("positives:");
    json_object_foreach(pos, k, v) printf(" %s %lld", k, (long long)json_integer_value(v));
    printf("\n");
    const char *vf = json_string_value(json_object_get(r, "valid_from")), *tf = json_string_value(json_object_get(r, "test_from"));
    if (vf || tf)
        printf("split: valid from %s, test from %s; cold in valid+test: %lld of %lld users, %lld of %lld items\n",
               vf ? vf : "-", tf ? tf : "-", I(cold, "users"), I(cold, "eval_users"), I(cold, "items"), I(cold, "eval_items"));
    printf("written to %s\n", json_string_value(json_object_get(r, "dir")));
#undef I
    json_decref(r);
}

int cmd_build(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
        {"assume-sorted", no_argument, 0, 'a'}, {"sort-memory", required_argument, 0, 's'},
        {"max-bad-rows", required_argument, 0, 'b'}, {"force", no_argument, 0, 'f'},
        {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *config = NULL, *out = NULL;
    pt_build_opts o = pt_build_opts_default();
    int json = 0, c;
    long long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'o': out = optarg; break;
        case 'a': o.assume_sorted = 1; break;
        case 'f': o.force = 1; break;
        case 'j': json = 1; break;
        case 's':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 1 << 20) return cli_usage_error("build", "--sort-memory must be 1..1048576 MiB");
            o.sort_memory = (size_t)v << 20;
            break;
        case 'b':
            if (cli_parse_int(optarg, &v)) return cli_usage_error("build", "--max-bad-rows must be a non-negative integer");
            o.max_bad_rows = v;
            break;
        case 't':
            if (cli_parse_int(optarg, &v) || v < 1) return cli_usage_error("build", "--threads must be a positive integer");
            break;
        case 'h': fputs(HELP, stdout); return EXIT_OK;
        case ':': return cli_usage_error("build", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("build", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("build", "unexpected argument '%s'", argv[optind]);
    if (!config) return cli_usage_error("build", "--config FILE is required");
    pt_config *cfg = NULL;
    char *report = NULL;
    int rc = pt_config_load(config, &cfg);
    if (rc) return cli_fail(rc);
    rc = pt_build_samples(cfg, out, &o, &report);
    pt_config_free(cfg);
    if (rc) return cli_fail(rc);
    if (json) printf("%s\n", report);
    else print_report(report);
    pt_string_free(report);
    return EXIT_OK;
}
