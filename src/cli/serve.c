/* serve.c: `polytask serve --registry FILE.db [--listen HOST:PORT] ...`. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char HELP[] =
    "usage: polytask serve --registry FILE.db [options]\n"
    "\n"
    "Serves the registry's active models over HTTP/1.1 (docs/api.md): /v1/predict,\n"
    "/v1/recommend, /v1/events, /v1/models[/NAME[/activate|/rollback]], /healthz,\n"
    "/readyz and /metrics (Prometheus). API keys (polytask models keys create) go in\n"
    "an 'Authorization: Bearer KEY' header. SIGTERM or Ctrl-C drains and stops.\n"
    "\n"
    "options:\n"
    "  --registry FILE.db   the model registry (polytask models)\n"
    "  --listen HOST:PORT   address (default 127.0.0.1:8080; port 0 picks a free one)\n"
    "  --threads N          request threads (default 4)\n"
    "  --max-body BYTES     largest request body (default 8388608)\n"
    "  --max-rows N         most rows per request (default 10000)\n"
    "  --timeout S          idle connection timeout in seconds (default 30)\n"
    "  --insecure-no-auth   accept requests without API keys (local use only)\n"
    "\n"
    "online learning (events posted to /v1/events train a copy of the active version,\n"
    "published as the next version; docs/operations.md):\n"
    "  --no-learn           store events, learn nothing from them\n"
    "  --learn-batch N      events per micro-batch (default 512)\n"
    "  --publish-events N   publish after this many events (default 10000)\n"
    "  --publish-seconds S  or this long after the first unpublished event (default 60)\n"
    "  --learn-lr X         learning rate (default: the model's train.lr)\n"
    "  --model-dir DIR      where published model files go (default: the registry's folder/online)\n"
    "  -h, --help           this help\n";

static void ready(int port, void *user)
{
    const char *listen = user;
    const char *colon = strrchr(listen, ':');
    fprintf(stderr, "polytask: serving on %.*s:%d\n", colon ? (int)(colon - listen) : 9, colon ? listen : "127.0.0.1", port);
    fflush(stderr);
}

int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"registry", required_argument, 0, 'r'}, {"listen", required_argument, 0, 'l'}, {"threads", required_argument, 0, 't'},
        {"max-body", required_argument, 0, 'b'}, {"max-rows", required_argument, 0, 'n'}, {"timeout", required_argument, 0, 'T'},
        {"insecure-no-auth", no_argument, 0, 'I'}, {"no-learn", no_argument, 0, 'N'},
        {"learn-batch", required_argument, 0, 'B'}, {"publish-events", required_argument, 0, 'P'},
        {"publish-seconds", required_argument, 0, 'S'}, {"learn-lr", required_argument, 0, 'L'},
        {"model-dir", required_argument, 0, 'D'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    pt_serve_opts o = pt_serve_opts_default();
    long long v;
    double x;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': o.registry = optarg; break;
        case 'l': o.listen = optarg; break;
        case 't':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 256) return cli_usage_error("serve", "--threads needs a number 1..256");
            o.threads = (int)v;
            break;
        case 'b':
            if (cli_parse_int(optarg, &v) || v < 1024) return cli_usage_error("serve", "--max-body needs a number of bytes >= 1024");
            o.max_body = (size_t)v;
            break;
        case 'n':
            if (cli_parse_int(optarg, &v) || v < 1) return cli_usage_error("serve", "--max-rows needs a number >= 1");
            o.max_rows = v;
            break;
        case 'T':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 3600) return cli_usage_error("serve", "--timeout needs 1..3600 seconds");
            o.timeout_s = (int)v;
            break;
        case 'I': o.insecure_no_auth = 1; break;
        case 'N': o.no_learn = 1; break;
        case 'B':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 100000) return cli_usage_error("serve", "--learn-batch needs a number 1..100000");
            o.learn_batch = (int)v;
            break;
        case 'P':
            if (cli_parse_int(optarg, &v) || v < 1) return cli_usage_error("serve", "--publish-events needs a number >= 1");
            o.publish_events = v;
            break;
        case 'S':
            if (cli_parse_double(optarg, &x) || !(x > 0)) return cli_usage_error("serve", "--publish-seconds needs a number > 0");
            o.publish_seconds = x;
            break;
        case 'L':
            if (cli_parse_double(optarg, &x) || !(x > 0) || x > 10) return cli_usage_error("serve", "--learn-lr needs a number in (0, 10]");
            o.learn_lr = x;
            break;
        case 'D': o.model_dir = optarg; break;
        case 'h': fputs(HELP, stdout); return EXIT_OK;
        case ':': return cli_usage_error("serve", "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error("serve", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (!o.registry) return cli_usage_error("serve", "--registry is required");
    if (o.insecure_no_auth)
        fprintf(stderr, "polytask: warning: --insecure-no-auth: every request is accepted without an API key; for local use only\n");
    pt_set_log_callback(cli_log, NULL);
    int rc = pt_serve(&o, ready, (void *)o.listen);
    if (rc) return cli_fail(rc);
    fprintf(stderr, "polytask: stopped\n");
    return EXIT_OK;
}
