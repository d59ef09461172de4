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

#endif
