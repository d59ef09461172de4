/* fuzz_request.c: libFuzzer target for the server's request-body checks:
 * serve_body_depth must never read past the body, and whenever it accepts a
 * body (depth >= 0) its figure must be an upper bound of what jansson sees,
 * so a body it lets through cannot nest deeper than the server's limit. */
#include <stdint.h>
#include <stdlib.h>

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
    json_decref(j);
    return 0;
}
