/* fuzz_predict_json.c: libFuzzer target for pt_model_predict_json.
 *
 * The first byte picks the model and max_rows; the rest is the request body.
 * The models are trained once, at the first input, on a small generated CSV
 * in a temporary folder that is removed right after (training takes
 * milliseconds; a committed model file would go stale with the format):
 *   even byte: mmoe on a categorical, a mean-imputed numeric, a bucketised
 *              numeric and a multi-valued feature;
 *   odd byte:  esmm with one more numeric without impute:, so unreadable and
 *              missing numbers reach the encoder's error path.
 * max_rows = (byte >> 1) % 4 (0: no limit). Invariants: PT_OK exactly when
 * an output comes back; an output is a JSON array with one object per input
 * row, each holding a number or null per model output; a failure is
 * PT_EINVAL (or PT_ENOMEM) with a message; where jansson (a second parser)
 * reads the text as an array too, the row counts agree. (The rows are read
 * with cJSON, which is laxer than jansson in ways that cannot change a
 * row's meaning: numbers with a leading zero or a trailing dot, invalid
 * UTF-8 in strings, integers past 2^63; so text jansson rejects may be
 * accepted.) */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "polytask.h"
#include "data/config.h"
#include "util/util.h"

static pt_model *models[2];
static int nouts[2] = {2, 3};

static pt_model *train(const char *dir, const char *csv, const char *kind, const char *extra_feature)
{
    char y[2048], cp[512];
    snprintf(y, sizeof y,
             "data: {train: \"%s\", keys: [id], max_bad_rows: 1000}\n"
             "features:\n"
             "  categorical: [{name: c, dim: 3}]\n"
             "  numeric: [{name: n, impute: mean}, {name: b, transform: bucketize, buckets: 4, impute: mean, dim: 2}%s]\n"
             "  multi: [{name: tags, dim: 3, sep: \";\"}]\n"
             "tasks:\n  - {name: click, label: y1}\n  - {name: buy, label: y2}\n"
             "model: {kind: %s, experts: 2, expert_dims: [4], tower_dims: [3]}\n"
             "train: {epochs: 1, batch: 16}\n",
             csv, extra_feature, kind);
    snprintf(cp, sizeof cp, "%s/c.yaml", dir);
    struct pt_config *c = NULL;
    pt_model *m = NULL;
    pt_train_opts o = pt_train_opts_default();
    if (config_parse(y, strlen(y), cp, &c) || pt_train(c, &o, &m)) {
        fprintf(stderr, "fuzz_predict_json: training the model failed: %s\n", pt_errmsg());
        abort();
    }
    pt_config_free(c);
    return m;
}

static void init(void)
{
    char dir[] = "/tmp/pt_fuzz_pjson_XXXXXX", csv[600];
    if (!mkdtemp(dir)) abort();
    snprintf(csv, sizeof csv, "%s/train.csv", dir);
    FILE *f = fopen(csv, "wb");
    if (!f) abort();
    static const char *const cats[] = {"a", "b", "c", "true", "1"};
    fprintf(f, "id,c,n,b,s,tags,y1,y2\n");
    for (int i = 0; i < 200; i++)
        fprintf(f, "%d,%s,%d.5,%d,%d,%s;%s,%d,%d\n", i, cats[i % 5], i % 23 - 11, (i * 7) % 50, i % 3,
                cats[(i / 5) % 5], cats[(i / 3) % 5], (i % 3) == 0, (i % 6) == 0);
    if (fclose(f)) abort();
    models[0] = train(dir, csv, "mmoe", "");
    models[1] = train(dir, csv, "esmm", ", {name: s, impute: none}");
    unlink(csv);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!models[0]) init();
    if (size == 0) return 0;
    int which = data[0] & 1;
    int64_t max_rows = (data[0] >> 1) % 4;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    char *out = NULL;
    pt_error_clear(); /* a failure must set its own message */
    int rc = pt_model_predict_json(models[which], text, len, max_rows, &out);
    if ((rc == PT_OK) != (out != NULL)) abort();
    json_t *in = json_loadb(text, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, NULL);
    if (rc != PT_OK) {
        if (rc != PT_EINVAL && rc != PT_ENOMEM) abort();
        if (!*pt_errmsg()) abort();
    } else {
        if (in && !json_is_array(in)) abort(); /* accepted what is not an array */
        json_t *o = json_loads(out, 0, NULL);
        if (!o || !json_is_array(o) || (in && json_array_size(o) != json_array_size(in))) abort();
        for (size_t i = 0; i < json_array_size(o); i++) {
            json_t *row = json_array_get(o, i), *v;
            const char *k;
            if (!json_is_object(row) || (int)json_object_size(row) != nouts[which]) abort();
            json_object_foreach(row, k, v) if (!json_is_number(v) && !json_is_null(v)) abort();
        }
        json_decref(o);
    }
    json_decref(in);
    pt_string_free(out);
    return 0;
}
