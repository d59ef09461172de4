/* vocab.c: see vocab.h. Linear probing over a power-of-two table kept at
 * most half full; the hash is pt_hash64. */
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

static size_t slot_of(const struct vocab *v, const char *s, size_t len)
{
    size_t mask = v->nslots - 1;
    size_t i = (size_t)pt_hash64(s, len, 0) & mask;
    for (;;) {
        int32_t id = v->slots[i];
        if (id < 0) return i;
        const char *t = v->arena + v->off[id];
        if (strncmp(t, s, len) == 0 && t[len] == 0) return i;
        i = (i + 1) & mask;
    }
}

int32_t vocab_find(const struct vocab *v, const char *s, size_t len)
{
    if (!v->nslots) return -1;
    return v->slots[slot_of(v, s, len)];
}

static int grow_table(struct vocab *v)
{
    size_t ns = v->nslots ? v->nslots * 2 : 64;
    int32_t *slots = pt_malloc(ns * sizeof *slots);
    if (!slots) return pt_error(PT_ENOMEM, "out of memory");
    memset(slots, 0xff, ns * sizeof *slots);
    int32_t *old = v->slots;
    v->slots = slots;
    v->nslots = ns;
    for (int32_t id = 0; id < v->n; id++) {
        const char *t = v->arena + v->off[id];
        v->slots[slot_of(v, t, strlen(t))] = id;
    }
    pt_free(old);
    return PT_OK;
}

int vocab_add(struct vocab *v, const char *s, size_t len, int32_t *id)
{
    if (v->nslots) {
        size_t i = slot_of(v, s, len);
        if (v->slots[i] >= 0) {
            *id = v->slots[i];
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
    v->slots[slot_of(v, s, len)] = v->n;
    *id = v->n++;
    return PT_OK;
}
