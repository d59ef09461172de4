/* vocab.c: see vocab.h. Linear probing over a power-of-two table kept at
 * most half full; the hash is pt_hash64. Lookups are on the hot path of
 * reading big files, where each table access is a cache miss, so a slot
 * carries enough to decide a match by itself: the string's first 8 bytes,
 * its length and 24 bits of its hash. Strings of up to 8 bytes (most ids)
 * are then compared without touching the arena. */
#include <string.h>

#include "data/vocab.h"
#include "util/util.h"

#define NO_ID UINT32_MAX

void vocab_init(struct vocab *v) { memset(v, 0, sizeof *v); }

void vocab_free(struct vocab *v)
{
    if (!v) return;
    pt_free(v->arena);
    pt_free(v->off);
    pt_free(v->slots);
    memset(v, 0, sizeof *v);
}

static uint64_t head8(const char *s, size_t len)
{
    uint64_t k = 0;
    memcpy(&k, s, len < 8 ? len : 8);
    return k;
}

/* hash bits above the ones that pick the slot, and the length (255: longer) */
static uint32_t meta_of(uint64_t h, size_t len) { return (uint32_t)(h >> 40) << 8 | (uint32_t)(len < 255 ? len : 255); }

static size_t slot_of(const struct vocab *v, const char *s, size_t len, uint64_t h)
{
    size_t mask = v->nslots - 1;
    size_t i = (size_t)h & mask;
    uint64_t key = head8(s, len);
    uint32_t meta = meta_of(h, len);
    for (;;) {
        const struct vocab_slot *e = &v->slots[i];
        if (e->id == NO_ID) return i;
        if (e->meta == meta && e->key == key) {
            if (len <= 8) return i;
            const char *t = v->arena + v->off[e->id];
            if (memcmp(t, s, len) == 0 && t[len] == 0) return i;
        }
        i = (i + 1) & mask;
    }
}

int32_t vocab_find_h(const struct vocab *v, const char *s, size_t len, uint64_t h)
{
    if (!v->nslots) return -1;
    uint32_t id = v->slots[slot_of(v, s, len, h)].id;
    return id == NO_ID ? -1 : (int32_t)id;
}

int32_t vocab_find(const struct vocab *v, const char *s, size_t len)
{
    return vocab_find_h(v, s, len, vocab_hash(s, len));
}

static void slot_put(struct vocab_slot *slots, size_t ns, const char *s, size_t len, uint64_t h, uint32_t id)
{
    size_t i = (size_t)h & (ns - 1);
    while (slots[i].id != NO_ID) i = (i + 1) & (ns - 1);
    slots[i].key = head8(s, len);
    slots[i].meta = meta_of(h, len);
    slots[i].id = id;
}

static int grow_table(struct vocab *v)
{
    size_t ns = v->nslots ? v->nslots * 2 : 64;
    struct vocab_slot *slots = pt_malloc(ns * sizeof *slots);
    if (!slots) return pt_error(PT_ENOMEM, "out of memory");
    for (size_t k = 0; k < ns; k++) slots[k].id = NO_ID;
    /* rehash from the arena: the slot keeps too few hash bits to move */
    for (int32_t id = 0; id < v->n; id++) {
        const char *t = v->arena + v->off[id];
        size_t tl = strlen(t);
        slot_put(slots, ns, t, tl, pt_hash64(t, tl, 0), (uint32_t)id);
    }
    pt_free(v->slots);
    v->slots = slots;
    v->nslots = ns;
    return PT_OK;
}

int vocab_add(struct vocab *v, const char *s, size_t len, int32_t *id)
{
    return vocab_add_h(v, s, len, vocab_hash(s, len), id);
}

int vocab_add_h(struct vocab *v, const char *s, size_t len, uint64_t h, int32_t *id)
{
    if (v->nslots) {
        uint32_t e = v->slots[slot_of(v, s, len, h)].id;
        if (e != NO_ID) {
            *id = (int32_t)e;
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
    slot_put(v->slots, v->nslots, s, len, h, (uint32_t)v->n);
    *id = v->n++;
    return PT_OK;
}
