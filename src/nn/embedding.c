/* embedding.c: table lookups, single-valued and bagged, and the sorted
 * unique-row list the row-sparse optimiser needs.
 *
 * Dims: B batch rows, D embedding width, n ids in a batch.
 * Ids are trusted here: the data layer maps raw values into [0, rows) before
 * they reach a layer, so no bounds checks on the hot path.
 * Backward loops stay serial: a batch repeats popular ids, and parallel
 * scatter-adds into the same table row would race. In training the "table"
 * a backward adds into is the batch's compact gradient (one row per distinct
 * id, indexed by nn_unique_rows_inv's inv), not a full-size mirror. */
#include <string.h>

#include "nn/nn.h"

/* out[b, 0:D] (row stride ldo >= D) = table[ids[b], :]; table[rows, D]. */
void nn_embedding_forward(float *out, int ldo, const float *table, const int32_t *ids, int B, int D)
{
    for (int b = 0; b < B; b++) {
        if (b + 8 < B) PT_PREFETCH(table + (size_t)ids[b + 8] * D, 0); /* scattered rows */
        memcpy(out + (size_t)b * ldo, table + (size_t)ids[b] * D, (size_t)D * sizeof(float));
    }
}

/* dtable[ids[b], :] += dout[b, 0:D] (row stride lddo); repeated ids add up. */
void nn_embedding_backward(float *dtable, const float *dout, int lddo, const int32_t *ids, int B,
                           int D)
{
    for (int b = 0; b < B; b++) {
        if (b + 8 < B) PT_PREFETCH(dtable + (size_t)ids[b + 8] * D, 1);
        float *dt = dtable + (size_t)ids[b] * D;
        const float *g = dout + (size_t)b * lddo;
        for (int d = 0; d < D; d++) dt[d] += g[d];
    }
}

/* out[b, 0:D] = sum (or mean) of table[ids[k], :] for k in [off[b], off[b+1]).
 * off[B+1] ascending, ids[off[B]]. An empty bag gives a zero row (mean of
 * nothing is taken as 0, not NaN, so a missing multi-value field is neutral). */
void nn_embedding_bag_forward(float *out, int ldo, const float *table, const int32_t *off,
                              const int32_t *ids, int B, int D, int mean)
{
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * ldo;
        for (int d = 0; d < D; d++) o[d] = 0.0f;
        int n = off[b + 1] - off[b];
        for (int k = off[b]; k < off[b + 1]; k++) {
            const float *t = table + (size_t)ids[k] * D;
            for (int d = 0; d < D; d++) o[d] += t[d];
        }
        if (mean && n > 0) {
            float s = 1.0f / (float)n;
            for (int d = 0; d < D; d++) o[d] *= s;
        }
    }
}

/* dtable[ids[k], :] += dout[b, :] (times 1/n for mean) for each k in bag b. */
void nn_embedding_bag_backward(float *dtable, const float *dout, int lddo, const int32_t *off,
                               const int32_t *ids, int B, int D, int mean)
{
    for (int b = 0; b < B; b++) {
        int n = off[b + 1] - off[b];
        if (n <= 0) continue;
        const float *g = dout + (size_t)b * lddo;
        float s = mean ? 1.0f / (float)n : 1.0f;
        for (int k = off[b]; k < off[b + 1]; k++) {
            float *dt = dtable + (size_t)ids[k] * D;
            for (int d = 0; d < D; d++) dt[d] += s * g[d];
        }
    }
}

/* rows[0..count) = sorted distinct values of ids[0..n), inv[k] = position
 * in rows of ids[k]; returns count (0 for n <= 0). keys: scratch of 2n.
 * One LSD radix sort, 8 bits a pass, of (id, k) pairs on the id half: linear
 * in n, no allocation (this runs every batch over each table's ids), passes
 * where every id shares the byte (the high bytes of small vocabularies)
 * skipped. Flipping the sign bit maps int32 order onto uint32 order, so
 * negative ids (which callers should not pass) still sort correctly. */
int nn_unique_rows_inv(int32_t *rows, int32_t *inv, const int32_t *ids, int n, uint64_t *keys)
{
    if (n <= 0) return 0;
    uint64_t *a = keys, *tmp = keys + n;
    for (int i = 0; i < n; i++) a[i] = (uint64_t)((uint32_t)ids[i] ^ 0x80000000u) << 32 | (uint32_t)i;
    for (int shift = 32; shift < 64; shift += 8) {
        size_t cnt[256] = {0};
        for (int i = 0; i < n; i++) cnt[(a[i] >> shift) & 255u]++;
        if (cnt[(a[0] >> shift) & 255u] == (size_t)n) continue;
        size_t pos = 0;
        for (int k = 0; k < 256; k++) {
            size_t c = cnt[k];
            cnt[k] = pos;
            pos += c;
        }
        for (int i = 0; i < n; i++) tmp[cnt[(a[i] >> shift) & 255u]++] = a[i];
        uint64_t *t = a;
        a = tmp;
        tmp = t;
    }
    int count = 0;
    for (int i = 0; i < n; i++) {
        uint32_t id = (uint32_t)(a[i] >> 32);
        if (i == 0 || id != (uint32_t)(a[i - 1] >> 32)) rows[count++] = (int32_t)(id ^ 0x80000000u);
        inv[(uint32_t)a[i]] = count - 1;
    }
    return count;
}
