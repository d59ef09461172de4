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
    char *report;            /* training report, JSON */
    int k_default;
};

const char *rec_kind_name(enum rec_kind k);

#endif
