/* vocab.c: see vocab.h. Linear probing over a power-of-two table kept at
 * most half full; the hash is pt_hash64. A slot holds the id in its low 32
 * bits and 32 bits of the hash above, so a probe compares strings only when
 * the hashes agree (the lookup is on the hot path of reading big files). */
#include <string.h>

#include "data/vocab.h"
#include "util/util.h"

void vocab_init(struct vocab *v) { memset(v, 0, sizeof *v); }

void vocab_free(struct vocab *v)
{
    if (!v) return;
    pt_free(v->arena);
    pt_free(v->off);
    pt_free(v->slots);
    memset(v, 0, sizeof *v);
}

#define SLOT_EMPTY UINT64_MAX

static size_t slot_of(const struct vocab *v, const char *s, size_t len, uint64_t h)
{
    size_t mask = v->nslots - 1;
    size_t i = (size_t)h & mask;
    uint64_t tag = h >> 32;
    for (;;) {
        uint64_t e = v->slots[i];
        if (e == SLOT_EMPTY) return i;
        if ((e >> 32) == tag) {
            const char *t = v->arena + v->off[(int32_t)(e & 0xffffffffu)];
            if (memcmp(t, s, len) == 0 && t[len] == 0) return i;
        }
        i = (i + 1) & mask;
    }
}

int32_t vocab_find(const struct vocab *v, const char *s, size_t len)
{
    if (!v->nslots) return -1;
    uint64_t e = v->slots[slot_of(v, s, len, pt_hash64(s, len, 0))];
    return e == SLOT_EMPTY ? -1 : (int32_t)(e & 0xffffffffu);
}

static int grow_table(struct vocab *v)
{
    size_t ns = v->nslots ? v->nslots * 2 : 64;
    uint64_t *slots = pt_malloc(ns * sizeof *slots);
    if (!slots) return pt_error(PT_ENOMEM, "out of memory");
    memset(slots, 0xff, ns * sizeof *slots);
    uint64_t *old = v->slots;
    size_t nold = v->nslots;
    v->slots = slots;
    v->nslots = ns;
    /* rehash from the stored tags: the low bits of the hash are lost, so
     * recompute them (the strings are in the arena) */
    for (size_t k = 0; k < nold; k++) {
        if (old[k] == SLOT_EMPTY) continue;
        int32_t id = (int32_t)(old[k] & 0xffffffffu);
        const char *t = v->arena + v->off[id];
        size_t tl = strlen(t);
        uint64_t h = pt_hash64(t, tl, 0);
        size_t i = (size_t)h & (ns - 1);
        while (slots[i] != SLOT_EMPTY) i = (i + 1) & (ns - 1);
        slots[i] = old[k];
    }
    pt_free(old);
    return PT_OK;
}

int vocab_add(struct vocab *v, const char *s, size_t len, int32_t *id)
{
    uint64_t h = pt_hash64(s, len, 0);
    if (v->nslots) {
        uint64_t e = v->slots[slot_of(v, s, len, h)];
        if (e != SLOT_EMPTY) {
            *id = (int32_t)(e & 0xffffffffu);
            return PT_OK;
        }
    }
    if (v->n >= INT32_MAX - 1) return pt_error(PT_EINVAL, "vocabulary over 2^31 entries");
    if ((size_t)(v->n + 1) * 2 > v->nslots && grow_table(v)) return PT_ENOMEM;
    if (v->n == v->cap) {
        int32_t nc = v->cap ? v->cap * 2 : 64;
        size_t *no = pt_realloc(v->off, (size_t)nc * sizeof *no);
        if (!no) return pt_error(PT_ENOMEM, "out of memory");
        v->off = no;
        v->cap = nc;
    }
    if (v->arena_len + len + 1 > v->arena_cap) {
        size_t nc = v->arena_cap ? v->arena_cap * 2 : 4096;
        while (nc < v->arena_len + len + 1) nc *= 2;
        char *na = pt_realloc(v->arena, nc);
        if (!na) return pt_error(PT_ENOMEM, "out of memory");
        v->arena = na;
        v->arena_cap = nc;
    }
    memcpy(v->arena + v->arena_len, s, len);
    v->arena[v->arena_len + len] = 0;
    v->off[v->n] = v->arena_len;
    v->arena_len += len + 1;
    v->slots[slot_of(v, s, len, h)] = (h & 0xffffffff00000000ull) | (uint64_t)(uint32_t)v->n;
    *id = v->n++;
    return PT_OK;
}
