/* embedding.c: table lookups, single-valued and bagged, and the sorted
 * unique-row list the row-sparse optimiser needs.
 *
 * Dims: B batch rows, D embedding width, n ids in a batch.
 * Ids are trusted here: the data layer maps raw values into [0, rows) before
 * they reach a layer, so no bounds checks on the hot path.
 * Backward loops stay serial: a batch repeats popular ids, and parallel
 * scatter-adds into the same table row would race. */
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

/* LSD radix sort, 8 bits a pass, ping-ponging between a and tmp; returns
 * whichever buffer holds the result. Linear in n, no allocation: this runs
 * every batch over B * fields ids. Passes where every id shares the byte
 * (the high bytes, for small vocabularies) are skipped. */
static uint32_t *radix_sort_u32(uint32_t *a, uint32_t *tmp, int n)
{
    for (int shift = 0; shift < 32; shift += 8) {
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
        uint32_t *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

/* rows[0..count) = sorted distinct values of ids[0..n); rows and scratch each
 * hold n ints. Returns count (0 for n <= 0). */
int nn_unique_rows(int32_t *rows, const int32_t *ids, int n, int32_t *scratch)
{
    if (n <= 0) return 0;
    /* Flipping the sign bit maps int32 order onto uint32 order, so negative
     * ids (which callers should not pass) still sort correctly. */
    uint32_t *a = (uint32_t *)rows, *tmp = (uint32_t *)scratch;
    for (int i = 0; i < n; i++) a[i] = (uint32_t)ids[i] ^ 0x80000000u;
    uint32_t *s = radix_sort_u32(a, tmp, n);
    int count = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || s[i] != s[i - 1]) s[count++] = s[i];
    for (int i = 0; i < count; i++) rows[i] = (int32_t)(s[i] ^ 0x80000000u);
    return count;
}
