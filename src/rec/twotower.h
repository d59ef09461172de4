/* twotower.h: two-tower retrieval model for recommend (model: two_tower).
 *
 * Dims: N items, D0 input embedding width, D output width, B batch rows,
 * C candidate columns (B in-batch positives, then the shared extra
 * negatives), H history items pooled per user, NC categories, NB price
 * bands.
 *
 *   item input  x_j = E[j] + Ec[cat_j] + Eb[band_j]        E [N, D0]
 *               (Ec [NC, D0], Eb [NB, D0]; a missing attribute adds nothing)
 *   item tower  v_j = Wv · x_j + bv
 *   user tower  p   = mean of x_i over the user's last H items
 *               u   = W2 · relu(W1 · p + b1) + b2
 *   score(u, j) = <u, v_j>
 * So the user tower sees the categories and bands of the recent items, and
 * an item without interactions still gets its attributes' vector. The
 * attributes come from the catalogue (struct rec_catalog: cat, band); a
 * model made without one (or whose catalogue names no category / no band)
 * has no Ec (Eb) and is exactly the id-only model: same tensors, same
 * draws, same results. Training: in-batch sampled softmax with the logQ
 * correction (Yi et al. 2019) plus cfg->negatives uniform negatives shared
 * by the batch; Adam with lazy rows for E, Ec and Eb. */
#ifndef PT_TWOTOWER_H
#define PT_TWOTOWER_H

#include <stdint.h>

#include "data/config.h"
#include "rec/catalog.h"
#include "rec/rec.h"
#include "store/modelfile.h"

struct rec_tt; /* weights, their gradients, Adam moments and a batch workspace */

#define REC_TT_NTENSORS 12 /* the most rec_tt_tensors fills (8 without attributes) */
#define REC_TT_NGRAD 9      /* the most rec_tt_grad_tensors fills (7 without attributes) */

/* A fresh model with N items, widths D0 and D, pooling the last `history`
 * items; E ~ N(0, 0.1²), the linear layers He-initialised, biases 0, all
 * drawn from seed. cat (NULL: ids only; its N must be N): the item
 * attributes, copied: a category table Ec [cat->cats.n, D0] when some item
 * has a category (cat->cat[j] >= 0), a price band table Eb
 * [CATALOG_PRICE_BANDS, D0] when some item has a band (cat->band[j] >= 0;
 * either array may be NULL), both ~ N(0, 0.1²) drawn after the rest.
 * PT_EINVAL for an attribute id out of range. [out] *out: free with
 * rec_tt_free. */
int rec_tt_create(int32_t N, int D0, int D, int history, const struct rec_catalog *cat, uint64_t seed,
                  struct rec_tt **out);
void rec_tt_free(struct rec_tt *tt);

/* Trains on the histories h (items < N) and the attributes of cat (NULL:
 * none; as rec_tt_create) with cfg's dim (D0 = D = dim),
 * history, epochs, batch, negatives, lr, l2 and seed. Every pair (u, k) at
 * position k >= 1 of u's history is one example: the positive is item k,
 * the pooled history items max(0, k-history) .. k-1 (strictly earlier).
 * [out] *out: the model (rec_tt_free); *item_vectors: [N, D] item tower
 * outputs, pt_malloc'd (pt_free). Both NULL on error. */
int rec_tt_train(const struct rec_cfg *cfg, const struct rec_hist *h, int32_t N, const struct rec_catalog *cat,
                 struct rec_tt **out, float **item_vectors);

/* out[N, D]: the item tower for every item. PT_ENOMEM (only a model with
 * attributes allocates, a chunk of inputs). */
int rec_tt_item_vectors(const struct rec_tt *tt, float *out);

/* out[B, D]: the user tower over the last `history` items of each user
 * uids[b] in h. A uid < 0 or >= h->U, or one without items (< N), gets a
 * zero vector (the caller falls back to popularity). */
int rec_tt_user_vectors(const struct rec_tt *tt, const struct rec_hist *h, const int32_t *uids, int B, float *out);

/* The model's widths: *D0, *D, *history (any may be NULL). */
void rec_tt_dims(const struct rec_tt *tt, int *D0, int *D, int *history);
/* The attribute table sizes: *ncat (NC), *nband (NB); 0 when absent. */
void rec_tt_attrs(const struct rec_tt *tt, int32_t *ncat, int32_t *nband);

/* Fills t[0..n) with the model's tensors, named "tt.*", whose data point
 * INTO the model (not copies; valid until rec_tt_free; names likewise), in
 * this order, the attribute ones only when the model has that table:
 * tt.item_emb [N, D0], tt.item.weight [D, D0], tt.item.bias [D],
 * tt.user.fc0.weight [D, D0], tt.user.fc0.bias [D], tt.user.fc1.weight
 * [D, D], tt.user.fc1.bias [D], tt.cat_emb [NC, D0], tt.band_emb [NB, D0]
 * (F32), then tt.history [1], tt.item_cat [N], tt.item_band [N] (I32; -1:
 * none). Ready for modelfile_write. Returns n (8 to REC_TT_NTENSORS), or
 * PT_EINVAL when max < n. */
int rec_tt_tensors(const struct rec_tt *tt, struct mf_tensor *t, int max);
/* The same names and shapes over the gradient arena (the F32 ones: the
 * first n of rec_tt_tensors), for tests: n (7 to REC_TT_NGRAD) tensors, or
 * PT_EINVAL when max < n. */
int rec_tt_grad_tensors(const struct rec_tt *tt, struct mf_tensor *t, int max);

/* A model from the tt.* tensors of a read model file for N items, with or
 * without the attribute tensors (files of the id-only model load as they
 * always did). Refuses (PT_EFORMAT, "PATH: what is wrong") a missing
 * tensor, a wrong dtype, an attribute table without its ids (or the
 * reverse), an attribute id out of its table, or shapes that disagree with
 * each other or with N. [out] *out: rec_tt_free. */
int rec_tt_from_file(const struct mf_file *f, const char *path, int32_t N, struct rec_tt **out);

/* One training batch. Row b pools the item inputs x of hist[hoff[b] ..
 * hoff[b+1]) (mean; empty gives zeros) and its positive is cand[b]; columns cand[0..C) (C >= B) are
 * scored for every row, logq[c] is subtracted from column c's logit, and a
 * column c != b with cand[c] == cand[b] is left out of row b's softmax (the
 * same item as the positive is no negative). */
struct rec_tt_batch {
    int B, C;
    const int32_t *hoff;  /* [B+1] */
    const int32_t *hist;  /* [hoff[B]] item ids < N */
    const int32_t *cand;  /* [C] item ids < N, the positives first */
    const float *logq;    /* [C] log expected count of the item in the candidates */
};

/* Forward and backward of one batch: *loss = mean over rows of
 * -log softmax(row)[b]; gradients of every parameter ADDED into the model's
 * gradient arena (rec_tt_zero_grad clears it). Grows the workspace as
 * needed (PT_ENOMEM). */
int rec_tt_batch_loss(struct rec_tt *tt, const struct rec_tt_batch *bt, float *loss);
void rec_tt_zero_grad(struct rec_tt *tt);

#endif
