/* fuzz_recmodel.c: libFuzzer target for loading a recommender model file
 * (store/rec_io.c) and answering from it.
 *
 * As in fuzz_modelfile.c, an odd first byte means "the rest is a file body
 * without its trailer": the target fits st_len to the body, appends the right
 * CRC-32 and "PTEN", so mutations get past the container's checksum to the
 * recommender's own checks (ids, counts, indices, shapes, kinds). An even
 * first byte feeds the input as it is. A file that loads must answer a
 * known and an unknown user without reading out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "polytask.h"
#include "rec/recommender.h"
#include "store/modelfile.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mf_file *f = NULL;
    int rc;
    if (size > 0 && (data[0] & 1)) {
        size_t body = size - 1;
        uint8_t *buf = malloc(body + 8);
        if (!buf) return 0;
        if (body) memcpy(buf, data + 1, body);
        if (body >= 32) {
            uint64_t meta_len = 0;
            for (int i = 7; i >= 0; i--) meta_len = meta_len << 8 | buf[16 + i];
            if (meta_len <= body - 32) {
                uint64_t st_len = body - 32 - meta_len;
                for (int i = 0; i < 8; i++) buf[24 + i] = (uint8_t)(st_len >> (8 * i));
            }
        }
        uint32_t crc = (uint32_t)crc32(0L, buf, (uInt)body);
        for (int i = 0; i < 4; i++) buf[body + i] = (uint8_t)(crc >> (8 * i));
        memcpy(buf + body + 4, "PTEN", 4);
        rc = modelfile_read_mem(buf, body + 8, "fuzz", &f);
        free(buf);
    } else {
        rc = modelfile_read_mem(data, size, "fuzz", &f);
    }
    if (rc) return 0;
    pt_recommender *r = NULL;
    if (rec_load_file(f, "fuzz", &r) == PT_OK) {
        pt_rec_query q = pt_rec_query_default();
        q.k = 5;
        char *json = NULL;
        const char *first = r->users.n ? vocab_str(&r->users, 0) : "x";
        if (pt_rec_recommend(r, first, &q, &json) == PT_OK) pt_string_free(json);
        json = NULL;
        const char *hist[1] = {r->items.n ? vocab_str(&r->items, 0) : "y"};
        q.history = hist, q.nhistory = 1;
        if (pt_rec_recommend(r, "\x01unknown", &q, &json) == PT_OK) pt_string_free(json);
        pt_rec_free(r);
    }
    modelfile_free(f);
    return 0;
}
