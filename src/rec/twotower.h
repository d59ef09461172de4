/* twotower.h: two-tower retrieval model for recommend (model: two_tower).
 *
 * Dims: N items, D0 input embedding width, D output width, B batch rows,
 * C candidate columns (B in-batch positives, then the shared extra
 * negatives), H history items pooled per user.
 *
 *   item tower  v_j = Wv · E[j] + bv                       E [N, D0]
 *   user tower  x   = mean of E[i] over the user's last H items
 *               u   = W2 · relu(W1 · x + b1) + b2
 *   score(u, j) = <u, v_j>
 * Training: in-batch sampled softmax with the logQ correction (Yi et al.
 * 2019) plus cfg->negatives uniform negatives shared by the batch; Adam with
 * lazy rows for E. Only item ids are used (no catalogue attributes). */
#ifndef PT_TWOTOWER_H
#define PT_TWOTOWER_H

#include <stdint.h>

#include "data/config.h"
#include "rec/rec.h"
#include "store/modelfile.h"

struct rec_tt; /* weights, their gradients, Adam moments and a batch workspace */

#define REC_TT_NTENSORS 8 /* what rec_tt_tensors fills */

/* A fresh model with N items, widths D0 and D, pooling the last `history`
 * items; E ~ N(0, 0.1²), the linear layers He-initialised, biases 0, all
 * drawn from seed. [out] *out: free with rec_tt_free. */
int rec_tt_create(int32_t N, int D0, int D, int history, uint64_t seed, struct rec_tt **out);
void rec_tt_free(struct rec_tt *tt);

/* Trains on the histories h (items < N) with cfg's dim (D0 = D = dim),
 * history, epochs, batch, negatives, lr, l2 and seed. Every pair (u, k) at
 * position k >= 1 of u's history is one example: the positive is item k,
 * the pooled history items max(0, k-history) .. k-1 (strictly earlier).
 * [out] *out: the model (rec_tt_free); *item_vectors: [N, D] item tower
 * outputs, pt_malloc'd (pt_free). Both NULL on error. */
int rec_tt_train(const struct rec_cfg *cfg, const struct rec_hist *h, int32_t N, struct rec_tt **out,
                 float **item_vectors);

/* out[N, D]: the item tower for every item. */
void rec_tt_item_vectors(const struct rec_tt *tt, float *out);

/* out[B, D]: the user tower over the last `history` items of each user
 * uids[b] in h. A uid < 0 or >= h->U, or one without items (< N), gets a
 * zero vector (the caller falls back to popularity). */
int rec_tt_user_vectors(const struct rec_tt *tt, const struct rec_hist *h, const int32_t *uids, int B, float *out);

/* The model's widths: *D0, *D, *history (any may be NULL). */
void rec_tt_dims(const struct rec_tt *tt, int *D0, int *D, int *history);

/* Fills t[0..n) with the model's tensors, named "tt.*", whose data point
 * INTO the model (not copies; valid until rec_tt_free; names likewise):
 * tt.item_emb [N, D0], tt.item.weight [D, D0], tt.item.bias [D],
 * tt.user.fc0.weight [D, D0], tt.user.fc0.bias [D], tt.user.fc1.weight
 * [D, D], tt.user.fc1.bias [D], tt.history [1] (I32). Ready for
 * modelfile_write. Returns n (REC_TT_NTENSORS), or PT_EINVAL when max < n. */
int rec_tt_tensors(const struct rec_tt *tt, struct mf_tensor *t, int max);
/* The same names and shapes over the gradient arena (no tt.history), for
 * tests: 7 tensors, or PT_EINVAL when max < 7. */
int rec_tt_grad_tensors(const struct rec_tt *tt, struct mf_tensor *t, int max);

/* A model from the tt.* tensors of a read model file for N items. Refuses
 * (PT_EFORMAT, "PATH: what is wrong") a missing tensor, a wrong dtype, or
 * shapes that disagree with each other or with N. [out] *out: rec_tt_free. */
int rec_tt_from_file(const struct mf_file *f, const char *path, int32_t N, struct rec_tt **out);

/* One training batch. Row b pools hist[hoff[b] .. hoff[b+1]) (mean; empty
 * gives zeros) and its positive is cand[b]; columns cand[0..C) (C >= B) are
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
