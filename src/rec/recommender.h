/* recommender.h: the pt_recommender handle's fields. */
#ifndef PT_RECOMMENDER_H
#define PT_RECOMMENDER_H

#include "polytask.h"
#include "rec/rec.h"

struct pt_recommender {
    struct rec_model m;
    struct rec_hist hist;    /* every user's items: scoring (item2item) and exclude-seen */
    struct vocab users, items;
    struct vocab cats;       /* category names of m.item_cat (empty without a catalogue) */
    char **titles;           /* [m.N] item titles from the catalogue, or NULL */
    char *report;            /* training report, JSON */
    int k_default;
};

const char *rec_kind_name(enum rec_kind k);

struct mf_file;
/* The recommender in a read model file (store/rec_io.c); path for messages. */
int rec_load_file(const struct mf_file *f, const char *path, pt_recommender **out);

/* One query's state: scores, the filters of q, the result of the last user. */
struct ask {
    const pt_recommender *r;
    int K;
    float *scores, *hs, *os;
    int32_t *hi, *top;
    uint8_t *deny, *base; /* base: the query's item filters; deny = base + the user's items */
    int32_t *hist;        /* the query's history items (known ids) for unknown users */
    int nhist;
};
int ask_init(struct ask *a, const pt_recommender *r, const pt_rec_query *q);
/* Top-K for user id u (-1: unknown) into a->top / a->os; returns the count or a negative error. */
int ask_user(struct ask *a, int32_t u, int include_seen);
void ask_free(struct ask *a);

#endif
