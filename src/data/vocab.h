/* vocab.h: string → dense id map (open addressing, strings in one arena),
 * used for categorical vocabularies and group columns. Ids are assigned in
 * insertion order from 0. */
#ifndef PT_VOCAB_H
#define PT_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

struct vocab_slot {
    uint64_t key;          /* the string's first 8 bytes, zero-padded */
    uint32_t id;           /* UINT32_MAX: empty */
    uint32_t meta;         /* 24 hash bits << 8 | length (255: longer) */
};

struct vocab {
    char *arena;           /* NUL-terminated strings back to back */
    size_t arena_len, arena_cap;
    size_t *off;           /* id → offset in arena */
    int32_t n, cap;        /* ids used, id capacity */
    struct vocab_slot *slots; /* hash table, nslots entries */
    size_t nslots;         /* power of two */
};

void vocab_init(struct vocab *v);
void vocab_free(struct vocab *v);
/* Id of s, or -1. */
int32_t vocab_find(const struct vocab *v, const char *s, size_t len);
/* Id of s, inserting it when absent. [out] *id. Errors: PT_ENOMEM, PT_EINVAL past INT32_MAX-1 ids. */
int vocab_add(struct vocab *v, const char *s, size_t len, int32_t *id);
/* The same with the hash computed by vocab_hash (to prefetch first). */
int32_t vocab_find_h(const struct vocab *v, const char *s, size_t len, uint64_t h);
int vocab_add_h(struct vocab *v, const char *s, size_t len, uint64_t h, int32_t *id);
static inline uint64_t vocab_hash(const char *s, size_t len) { return pt_hash64(s, len, 0); }
/* Starts loading the slot a lookup of hash h will probe first: a row's
 * lookups are independent cache misses, so issuing them together lets them
 * overlap. */
static inline void vocab_prefetch(const struct vocab *v, uint64_t h)
{
    if (v->nslots) PT_PREFETCH(&v->slots[(size_t)h & (v->nslots - 1)], 0);
}
static inline const char *vocab_str(const struct vocab *v, int32_t id) { return v->arena + v->off[id]; }

#endif
