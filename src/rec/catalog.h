/* catalog.h: item attributes for recommendation (recommend.items): category,
 * brand, price band and title tokens, joined to the interaction item ids.
 * Items missing from the table, or attributes left empty, are -1 / NAN /
 * no tokens. */
#ifndef PT_CATALOG_H
#define PT_CATALOG_H

#include <stdint.h>

#include "data/config.h"
#include "data/vocab.h"

#define CATALOG_TOKEN_BUCKETS (1 << 18) /* hashed title n-grams */
#define CATALOG_PRICE_BANDS 16          /* quantile bands of the known prices */

struct rec_catalog {
    int32_t N;               /* items: the interaction vocabulary's size */
    int32_t *cat;            /* [N] category id in cats, or -1 */
    int32_t *brand;          /* [N] brand id in brands, or -1 */
    float *price;            /* [N] price, NAN when unknown */
    int8_t *band;            /* [N] price band 0..CATALOG_PRICE_BANDS-1, or -1 */
    int64_t *tok_off;        /* [N+1] into tok */
    int32_t *tok;            /* title tokens: hashed word unigrams and character
                                trigrams of the lower-cased UTF-8 title, in
                                [0, CATALOG_TOKEN_BUCKETS) */
    char **title;            /* [N] the title as given, or NULL */
    struct vocab cats, brands;
    int64_t rows, added;     /* table rows read; ids the interactions did not name */
};

/* Reads cfg's items tables. An id the interactions never name is added to
 * `items` (a new item: only content can recommend it); an id given again
 * keeps its first row (raw invoice lines repeat products). Bad rows:
 * "FILE:LINE: what is wrong", skipped up to max_bad_rows. */
int rec_catalog_read(const struct rec_cfg *cfg, struct vocab *items, struct rec_catalog *out);

/* Content neighbours: for each item j with cold[j] set, its best M items i
 * with cold[i] unset by cosine of TF-IDF content vectors (category, brand,
 * price band, title tokens). CSR [N+1] off / item / sim; rows of warm items
 * are empty. */
int rec_catalog_neighbours(const struct rec_catalog *c, const uint8_t *cold, int M, int64_t **off, int32_t **item,
                           float **sim);
void rec_catalog_free(struct rec_catalog *c);

/* Title tokens of s[0..len) into out (at most max); returns the count. */
int rec_catalog_tokens(const char *s, size_t len, int32_t *out, int max);

#endif
