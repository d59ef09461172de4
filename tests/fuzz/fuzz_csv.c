/* fuzz_csv.c: libFuzzer target for the CSV reader.
 *
 * Byte 0 picks the delimiter (low two bits: "," "\t" ", " ";"); the rest is
 * the input, read to the end through csv_reader_open_mem (input starting
 * 1f 8b goes through the gzip path). Checks what the reader promises: every
 * field NUL-terminated at its length, line numbers that only grow, progress
 * on every call (a parse error skips ahead, it never loops), and that the
 * same bytes gzip-compressed (bit 2 of byte 0) read the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/csv.h"
#include "util/util.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

/* Reads everything; returns a checksum of records, fields and errors. */
static uint64_t read_all(const uint8_t *data, size_t size, const char *delim, size_t max_calls)
{
    struct csv_opts o = {delim, 0};
    struct csv_reader *r;
    if (csv_reader_open_mem(&r, data, size, "fuzz", &o) < 0) return 0;
    uint64_t h = 1469598103934665603ull;
    long last_line = 0;
    size_t nf, *lens;
    char **f;
    for (size_t calls = 0;; calls++) {
        CHECK(calls <= max_calls);
        int rc = csv_reader_next(r, &nf, &f, &lens);
        h = (h ^ (uint64_t)(rc + 16)) * 1099511628211ull;
        if (rc == 0) break;
        if (rc == PT_EPARSE) continue;
        if (rc < 0) break;
        CHECK(rc == 1 && nf >= 1);
        long line = csv_reader_line(r);
        CHECK(line > last_line);
        last_line = line;
        h = (h ^ (uint64_t)line) * 1099511628211ull;
        for (size_t i = 0; i < nf; i++) {
            CHECK(f[i][lens[i]] == 0);
            h = pt_hash64(f[i], lens[i] + 1, h);
        }
    }
    csv_reader_close(r);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *delims[] = {",", "\t", ", ", ";"};
    if (size < 1) return 0;
    const char *delim = delims[data[0] & 3];
    int also_gzip = data[0] & 4;
    data++;
    size--;
    /* each call returns a record, skips at least one byte after an error, or
     * ends the input: at most two calls per byte, plus the final ones */
    uint64_t h = read_all(data, size, delim, 2 * size + 4);
    if (!also_gzip || (size >= 2 && data[0] == 0x1f && data[1] == 0x8b)) return 0;

    uLongf cap = compressBound((uLong)size) + 32;
    uint8_t *gz = malloc(cap);
    if (!gz) return 0;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK) {
        zs.next_in = (Bytef *)data;
        zs.avail_in = (uInt)size;
        zs.next_out = gz;
        zs.avail_out = (uInt)cap;
        if (deflate(&zs, Z_FINISH) == Z_STREAM_END) {
            uint64_t hz = read_all(gz, cap - zs.avail_out, delim, 2 * size + 4);
            CHECK(hz == h);
        }
        deflateEnd(&zs);
    }
    free(gz);
    return 0;
}
