/* model_io.h: a model (and optionally its training state) to and from the
 * model file (modelfile.h). */
#ifndef PT_MODEL_IO_H
#define PT_MODEL_IO_H

#include <jansson.h>

#include "models/model.h"
#include "store/modelfile.h"

/* Training state saved with a checkpoint: optimiser moments, the best
 * parameters so far, and the loop's counters (JSON, owned by the caller). */
struct checkpoint {
    const float *best;   /* [total] or NULL */
    json_t *state;       /* {"epoch": ..., "step": ..., ...} */
};

/* Writes m atomically; with ck, adds "opt.m.*", "opt.v.*", "best.*" tensors
 * and metadata "checkpoint". */
int model_write(const struct model *m, const char *path, const struct checkpoint *ck);

/* Reads a model file into a new model that owns its config and schema.
 * [out] *out; [out] *file (may be NULL): the parsed file, for checkpoints
 * (free with modelfile_free). */
int model_read(const char *path, struct model **out, struct mf_file **file);

/* Copies tensors prefix+name of f into dst (an arena like m->w). */
int model_copy_tensors(const struct model *m, const struct mf_file *f, const char *prefix, float *dst,
                       const char *path);

#endif
