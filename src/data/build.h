/* build.h: event log → sample tables (the samples: section, docs/samples.md).
 *
 * One streaming pass over events in time order. Every exposure becomes a
 * sample whose features come from state built of strictly earlier events,
 * and whose labels are filled in by the later events of the same user on the
 * same item within each label's window. A sample leaves memory when its
 * longest window has passed, so memory follows users, items, the history kept
 * per user and the exposures inside one window, not the length of the log. */
#ifndef PT_BUILD_H
#define PT_BUILD_H

#include "data/config.h"

/* Writes DIR/train.csv (and valid.csv, test.csv as the split asks) and
 * DIR/build.json. [out] *report: the report as JSON (pt_free), may be NULL. */
int build_samples(const struct samples_cfg *sc, const char *dir, const pt_build_opts *opts, char **report);

/* ---- online (the server's learner; docs/samples.md "Online") ----
 * The same builder kept open: raw events pushed as JSON batches, samples
 * handed out as labelled rows once their windows have passed. */
struct online_build;

/* Checks a JSON array of raw events (objects keyed by the events' column
 * names) as the builder would read them, without state: PT_EINVAL with
 * "event R: what is wrong" for the first bad one. max > 0: most events.
 * [out] *n events (may be NULL). */
int online_build_check(const struct samples_cfg *sc, const char *json, size_t len, int64_t max, int64_t *n);
/* replay: read the config's event log first (its samples are not handed
 * out). keep[0..nkeep): the sample columns rows carry (the model's). dir:
 * where the scratch file of waiting rows lives. */
int online_build_open(const struct samples_cfg *sc, const char *dir, int replay, const char *const *keep, int nkeep,
                      struct online_build **out);
/* Events that cannot be built from are skipped and counted. [out] *used. */
int online_build_push(struct online_build *ob, const char *json, size_t len, int64_t *used);
/* The rows finished since the last call, as a JSON array of objects (the
 * first skip rows left out but counted). [out] *json (pt_free), *n. */
int online_build_take(struct online_build *ob, int64_t skip, char **json, int64_t *n);
void online_build_stats(const struct online_build *ob, int64_t *events, int64_t *late, int64_t *bad, int64_t *rows,
                        int64_t *waiting);
void online_build_close(struct online_build *ob);

#endif
