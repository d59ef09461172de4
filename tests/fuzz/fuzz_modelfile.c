/* fuzz_modelfile.c: libFuzzer target for the model file reader.
 *
 * Two paths, picked by the first byte of the input:
 *   even (a real file starts with 'P' = 0x50): the input is the file as is,
 *        so the size, magic, version, length, end-marker and CRC checks are
 *        fuzzed directly;
 *   odd: the rest of the input is a file body without its trailer; the
 *        target patches st_len to fit the body when it can, then appends the
 *        right CRC-32 and "PTEN", so mutations reach the JSON and tensor checks
 *        behind the checksum.
 * Any accepted file must be internally consistent; anything else must come
 * back as a clean error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "store/modelfile.h"
#include "util/util.h"

static void check_file(const struct mf_file *f)
{
    if (!f->meta_json) abort();
    for (size_t i = 0; i < f->ntensors; i++) {
        const struct mf_tensor *t = &f->tensors[i];
        if (!t->name || !t->data || t->ndim < 0 || t->ndim > MODELFILE_MAX_DIMS) abort();
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++) count *= (size_t)t->shape[d];
        volatile float sum = 0; /* touch every element: ASan checks the bounds */
        for (size_t k = 0; k < count; k++) sum += t->data[k];
        (void)sum;
        if (modelfile_find(f, t->name) != t) abort();
    }
}

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
        uint32_t crc = (uint32_t)crc32_z(0, buf, body);
        for (int i = 0; i < 4; i++) buf[body + i] = (uint8_t)(crc >> (8 * i));
        memcpy(buf + body + 4, "PTEN", 4);
        rc = modelfile_read_mem(buf, body + 8, "fuzz", &f);
        free(buf);
    } else {
        rc = modelfile_read_mem(data, size, "fuzz", &f);
    }
    if ((rc == PT_OK) != (f != NULL)) abort();
    if (rc != PT_OK && strncmp(pt_errmsg(), "fuzz: ", 6) != 0 && strcmp(pt_errmsg(), "out of memory") != 0)
        abort();
    if (f) check_file(f);
    modelfile_free(f);
    return 0;
}
