/* vocab.h: string → dense id map (open addressing, strings in one arena),
 * used for categorical vocabularies and group columns. Ids are assigned in
 * insertion order from 0. */
#ifndef PT_VOCAB_H
#define PT_VOCAB_H

#include <stddef.h>
#include <stdint.h>

struct vocab {
    char *arena;           /* NUL-terminated strings back to back */
    size_t arena_len, arena_cap;
    size_t *off;           /* id → offset in arena */
    int32_t n, cap;        /* ids used, id capacity */
    uint64_t *slots;       /* hash table: hash tag << 32 | id, UINT64_MAX empty */
    size_t nslots;         /* power of two */
};

void vocab_init(struct vocab *v);
void vocab_free(struct vocab *v);
/* Id of s, or -1. */
int32_t vocab_find(const struct vocab *v, const char *s, size_t len);
/* Id of s, inserting it when absent. [out] *id. Errors: PT_ENOMEM, PT_EINVAL past INT32_MAX-1 ids. */
int vocab_add(struct vocab *v, const char *s, size_t len, int32_t *id);
static inline const char *vocab_str(const struct vocab *v, int32_t id) { return v->arena + v->off[id]; }

#endif
