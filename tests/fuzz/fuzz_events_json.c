/* fuzz_events_json.c: libFuzzer target for raw events (POST /v1/events
 * {"events": [...]}): pt_model_check_events_json and a fresh pt_builder fed
 * the same text.
 *
 * The first byte sets max_rows ((byte % 4), 0: no limit) and whether the
 * builder's rows are taken with a skip (byte & 4); the rest is the events'
 * JSON. The model is trained once, at the first input, from samples built
 * from a small generated log (views, carts; negatives; a one-hour window) in
 * a temporary folder that is removed right after. Invariants: a failed check
 * is PT_EINVAL (or PT_ENOMEM) with a message; a passed check counts the
 * array's events, and pushing the text uses each of them or counts it as
 * skipped (only times more than 68 years apart are); a push never fails on
 * text the check passed; take gives a
 * JSON array of objects whose values are strings, and the builder counts
 * the rows it gave plus at most the skip. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "polytask.h"
#include "util/util.h"

static pt_model *model;
static char scratch[64];

static void init(void)
{
    char dir[] = "/tmp/pt_fuzz_events_XXXXXX", log[600], cp[600], y[2048];
    if (!mkdtemp(dir)) abort();
    snprintf(log, sizeof log, "%s/events.csv", dir);
    FILE *f = fopen(log, "wb");
    if (!f) abort();
    fprintf(f, "user,item,type,ts\n");
    for (int i = 0; i < 400; i++) {
        fprintf(f, "u%d,i%d,view,%d\n", i % 7, (i * 5) % 23, 1700000000 + 60 * i);
        if (i % 4 == 0) fprintf(f, "u%d,i%d,cart,%d\n", i % 7, (i * 5) % 23, 1700000000 + 60 * i + 30);
    }
    if (fclose(f)) abort();
    snprintf(y, sizeof y,
             "samples:\n  events: %s\n  columns: {user: user, item: item, type: type, time: ts}\n"
             "  event_types: [view, cart]\n  exposure: view\n  labels: [{name: cart, event: cart, window: 1h}]\n"
             "  negatives: {per_exposure: 1}\n  features: {windows: [1h, all], sequence: 2}\n"
             "  cache: %s/s\n"
             "features:\n  categorical: [{name: user, dim: 2}, {name: item, dim: 2}]\n"
             "  multi: [{name: seq_items, dim: 2}]\n  numeric: [{name: since_last, impute: mean}, {name: u_view_1h}]\n"
             "tasks: [{name: click, label: click}, {name: cart, label: cart}]\n"
             "model: {kind: mmoe, experts: 2, expert_dims: [4], tower_dims: [2]}\ntrain: {epochs: 1, batch: 64}\n",
             log, dir);
    snprintf(cp, sizeof cp, "%s/c.yaml", dir);
    f = fopen(cp, "wb");
    if (!f || fputs(y, f) == EOF || fclose(f)) abort();
    pt_config *c = NULL;
    pt_train_opts o = pt_train_opts_default();
    if (pt_config_load(cp, &c) || pt_train(c, &o, &model)) {
        fprintf(stderr, "fuzz_events_json: training the model failed: %s\n", pt_errmsg());
        abort();
    }
    pt_config_free(c);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) abort();
    snprintf(scratch, sizeof scratch, "%s", "/tmp");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!model) init();
    if (size == 0) return 0;
    int64_t max_rows = data[0] % 4, n = -1;
    int64_t skip = data[0] & 4 ? 1 : 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    pt_error_clear();
    int rc = pt_model_check_events_json(model, text, len, max_rows, &n);
    if (rc != PT_OK) {
        if ((rc != PT_EINVAL && rc != PT_ENOMEM) || !*pt_errmsg()) abort();
        return 0;
    }
    json_t *in = json_loadb(text, len, 0, NULL);
    if (!in || !json_is_array(in) || (int64_t)json_array_size(in) != n) abort();
    json_decref(in);
    pt_builder *b = NULL;
    if (pt_builder_open(model, scratch, 0, &b)) abort();
    int64_t used = -1;
    if (pt_builder_push_json(b, text, len, &used) || used > n) abort();
    char *js = NULL;
    int64_t got = -1;
    if (pt_builder_take_json(b, skip, &js, &got)) abort();
    json_t *out = json_loads(js, 0, NULL);
    if (!out || !json_is_array(out) || (int64_t)json_array_size(out) != got) abort();
    for (size_t i = 0; i < json_array_size(out); i++) {
        json_t *row = json_array_get(out, i), *v;
        const char *k;
        if (!json_is_object(row)) abort();
        json_object_foreach(row, k, v) if (!json_is_string(v)) abort();
    }
    pt_builder_stats s;
    pt_builder_counts(b, &s);
    if (s.events != used || s.events + s.bad != n || s.rows < got || s.rows - got > skip) abort();
    json_decref(out);
    pt_string_free(js);
    pt_builder_close(b);
    return 0;
}
