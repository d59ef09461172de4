/* learner.h: the server's online learner (learner.c), one background thread.
 *
 * It follows the events /v1/events stored in the registry: for each
 * multi-task model with an active version it trains a copy of that version
 * on the events after the learner's offset, in micro-batches, and publishes
 * the copy as the next version (activated, offset advanced, one
 * transaction) after publish_events events or publish_seconds. Before
 * learning from an event it scores it with every version the server is
 * serving for the model, for the running AUC per version and task.
 *
 * The server lends it its model table through hooks, so scoring uses the
 * versions requests use and a published version is loaded off the request
 * path. */
#ifndef PT_SERVE_LEARNER_H
#define PT_SERVE_LEARNER_H

#include <stdio.h>

#include <jansson.h>

#include "polytask.h"

struct learner_hooks {
    void *srv;
    /* The versions now served for name (active and A/B variants), each with
     * a reference taken: at most max, written to models/versions/refs.
     * Returns how many. */
    int (*served)(void *srv, const char *name, pt_model **models, int *versions, void **refs, int max);
    void (*release)(void *srv, void *ref);
    /* name's version was published: serve it (loaded off the request path) */
    void (*published)(void *srv, const char *name, int version);
};

struct learner;

/* Starts the thread; it opens its own registry handle. */
int learner_start(struct learner **out, const pt_serve_opts *o, const struct learner_hooks *h);
/* Stops the thread, publishing what was learned since the last publish (a
 * kill instead drops it: the offset still points before it, so a restart
 * learns it again). */
void learner_stop(struct learner *l);
/* Prometheus lines: events consumed, lag, versions published, skipped
 * events, running AUC per model, version and task. */
void learner_metrics(struct learner *l, FILE *f);
/* {"running_auc": {"<task>": auc, ...}, "events": N} of name's version, or
 * NULL when no event was scored with it. [out] new reference. */
json_t *learner_version_json(struct learner *l, const char *name, int version);

#endif
