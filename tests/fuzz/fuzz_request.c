/* fuzz_request.c: libFuzzer target for the server's request-body checks:
 * serve_body_depth must never read past the body, and whenever it accepts a
 * body (depth >= 0) its figure must be an upper bound of what jansson sees,
 * so a body it lets through cannot nest deeper than the server's limit.
 * serve_body_members must accept every JSON object jansson accepts (without
 * duplicate member names), and the spans it finds must parse to the very
 * values jansson puts in those members. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "serve/body.h"

static int depth_of(json_t *v)
{
    int d = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            int k = depth_of(json_array_get(v, i));
            if (k > d) d = k;
        }
        return d + 1;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach(v, key, x) {
            int k = depth_of(x);
            if (k > d) d = k;
        }
        return d + 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int d = serve_body_depth((const char *)data, size);
    if (d < 0 || d > 64) return 0; /* refused, or too deep to hand to jansson here */
    json_error_t e;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &e);
    if (j && depth_of(j) > d) abort();
    static const char *const names[3] = {"model", "user", "rows"};
    size_t off[3], vl[3], where;
    int ok = serve_body_members((const char *)data, size, names, 3, off, vl, &where) == 0;
    json_t *strict = json_is_object(j) ? json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e) : NULL;
    if (strict && !ok) abort(); /* a valid object refused */
    for (int k = 0; strict && k < 3; k++) {
        json_t *want = json_object_get(strict, names[k]);
        if (!vl[k]) {
            /* absent, unless the name was written with escapes */
            if (want && memchr(data, '\\', size) == NULL) abort();
            continue;
        }
        if (off[k] + vl[k] > size) abort();
        json_t *got = json_loadb((const char *)data + off[k], vl[k], JSON_DECODE_ANY, &e);
        if (!got || !want || !json_equal(got, want)) abort();
        json_decref(got);
    }
    json_decref(strict);
    json_decref(j);
    return 0;
}
