/* fuzz_config.c: libFuzzer target for the YAML config parser.
 *
 * The input is a config file's text, parsed by config_parse as
 * "fuzz.yaml". Checks what the parser promises: it returns PT_OK with a
 * config, or a negative code with none and a message naming the file;
 * a parsed config has the fields config_check guarantees (a train path,
 * at least one task and one feature, every task labelled and named; or,
 * for a samples-only config, a samples: section build can run on; for a
 * recommend: section, what recommend train reads). The
 * config is freed either way, so LeakSanitizer sees anything left behind. */
#include <stdint.h>
#include <string.h>

#include "data/config.h"
#include "util/util.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

/* libfyaml 0.7.12 leaks a text buffer when the text of a single-quoted
 * scalar with five or more '' escapes is fetched (fy_node_get_scalar,
 * fy_token_get_text; see regress/fuzz_config/leak_libfyaml_quoted_escapes).
 * Not ours and not fixable from config.c without dropping libfyaml's scalar
 * API, so leaks whose allocation is in libfyaml are not reported; leaks of
 * pt_malloc'd memory are. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfyaml.so\n"; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pt_config *c = NULL;
    int rc = config_parse((const char *)data, size, "fuzz.yaml", &c);
    if (rc != PT_OK) {
        CHECK(rc < 0 && c == NULL);
        CHECK(!strncmp(pt_errmsg(), "fuzz.yaml", 9) || rc == PT_ENOMEM);
        return 0;
    }
    const struct samples_cfg *sc = c ? c->samples : NULL;
    const struct rec_cfg *r = c ? c->rec : NULL;
    if (r) {
        CHECK(r->in.path || sc);
        if (r->in.path) CHECK(r->col_user && r->col_item && r->npaths >= 1 && r->paths[0]);
        CHECK(!r->items.path || (r->item_id && r->nitem_paths >= 1));
        CHECK(r->k >= 1 && r->dim >= 1 && r->batch >= 1 && r->history >= 1 && r->neighbours >= 1);
        CHECK(r->negatives >= 1 || (r->model != REC_BPR && r->model != REC_WARP && r->model != REC_SOFTMAX));
        CHECK(!r->nwtypes || r->col_type || !r->in.path);
        if (!sc && !c->ntasks && !c->nfeats && !c->train) { /* recommend only */
            pt_config_free(c);
            return 0;
        }
    }
    if (sc) {
        /* what build relies on: every type index in range, a cache folder */
        CHECK(sc->events.path && sc->col_user && sc->col_item && sc->col_time && sc->cache && sc->text);
        CHECK(sc->ntypes >= 1 && sc->exposure_type >= 0 && sc->exposure_type < sc->ntypes);
        CHECK(sc->purchase_type >= -1 && sc->purchase_type < sc->ntypes);
        CHECK(!sc->col_type != !sc->every_line);
        for (int l = 0; l < sc->nlabels; l++)
            CHECK(sc->labels[l].name && sc->labels[l].type >= 0 && sc->labels[l].type < sc->ntypes &&
                  sc->labels[l].window > 0);
        CHECK(sc->nlabels >= 1 || sc->neg_k >= 1);
        CHECK(sc->seq_len <= sc->history && sc->nwindows >= 1);
        if (!c->ntasks && !c->nfeats && !c->train) { /* samples only: a config for build (and recommend) */
            pt_config_free(c);
            return 0;
        }
    }
    CHECK(c && c->train && c->ntasks >= 1 && c->nfeats >= 1);
    CHECK(c->header || c->ncolumns > 0);
    for (int t = 0; t < c->ntasks; t++) CHECK(c->tasks[t].name && c->tasks[t].label);
    for (int f = 0; f < c->nfeats; f++) {
        CHECK(c->feats[f].name);
        CHECK(c->feats[f].kind != FEAT_MULTI || c->feats[f].sep);
    }
    CHECK(c->model != MODEL_MLP || c->nhidden > 0);
    pt_config_free(c);
    return 0;
}
