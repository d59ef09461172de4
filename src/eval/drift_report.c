/* drift_report.c: pt_model_drift, the per-feature population stability
 * index of the rows scored since the model was loaded against the training
 * distribution in its model file (src/data/drift.c holds the bins, the
 * counters and the formula; docs/operations.md tells users how to read it).
 *
 * It only reads counters, so it may run while other threads score with the
 * same model. Not done here: no thresholds or alerts; the caller (the
 * server's metrics, an operator) decides what a figure means. */
#include <jansson.h>
#include <math.h>

#include "data/drift.h"
#include "data/schema.h"
#include "models/model.h"
#include "util/util.h"

int pt_model_drift(const pt_model *pm, char **json)
{
    const struct model *m = (const struct model *)pm;
    const struct schema *s = m->schema;
    int rc = PT_ENOMEM; /* every failure below is an allocation's */
    *json = NULL;
    int64_t rows = drift_rows(s);
    json_t *root = json_object(), *feats = json_array();
    if (!root || !feats || json_object_set_new(root, "rows", json_integer((json_int_t)rows)) ||
        json_object_set(root, "features", feats))
        goto done;
    for (int i = 0; i < s->nfeat; i++) {
        const struct feat_state *f = &s->f[i];
        if (!f->drift) continue; /* model file written before drift references */
        /* null rather than 0 while nothing was counted: 0 would read as "no drift" */
        double psi = rows > 0 ? drift_psi(f->drift) : NAN;
        json_t *o = json_pack("{s:s, s:o}", "name", f->cfg->name, "psi", isnan(psi) ? json_null() : json_real(psi));
        if (!o || json_array_append_new(feats, o)) goto done;
    }
    if ((*json = json_dumps(root, JSON_COMPACT))) rc = PT_OK;
done:
    if (rc) pt_error(rc, "out of memory");
    json_decref(feats);
    json_decref(root);
    return rc;
}
