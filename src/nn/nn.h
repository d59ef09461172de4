/* nn.h: layers as forward/backward pairs over caller-owned buffers.
 *
 * Dims: B batch rows, I input width, O output width, D embedding width,
 * C classes, N element count. Row-major float32 throughout.
 * Every backward ADDS (+=) into the gradients it is given (parameters and
 * inputs), so gradients from several consumers accumulate; a NULL input
 * gradient pointer means "not needed". Each layer keeps its plain-loop
 * oracle (the _naive forms, or the loops themselves) beside the fast path. */
#ifndef PT_NN_H
#define PT_NN_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* ---- GEMM wrapper (gemm.c, the only file that knows the BLAS) ----
 * C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major;
 * trans 'N' or 'T'; lda/ldb/ldc are row strides as stored. */
void nn_sgemm(char transa, char transb, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);
void nn_sgemm_naive(char transa, char transb, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* Name of the backend compiled in: "dnnl", "openblas" or "naive". */
const char *nn_gemm_backend(void);

/* ---- bf16 products (train.precision: bf16) ----
 * nn_sgemm_bf16: nn_sgemm's contract, but op(A) and op(B) are first rounded
 * to bfloat16 (nearest, ties to even; with oneDNN on an AVX512_BF16 CPU,
 * subnormal inputs become zero); products accumulate and C is written in
 * float32. With oneDNN it runs a bf16 matmul primitive cached per shape on
 * the calling thread; otherwise the float32 product of the rounded copies.
 * A product with M, N or K under 16 (a gate over a few experts, a one-unit
 * output layer) is nn_sgemm's in float32, unrounded. Allocates scratch on a thread's first call with a larger shape
 * (freed by nn_gemm_release); if that fails the answer comes from a plain
 * loop, still right. */
void nn_sgemm_bf16(char transa, char transb, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc);
/* The calling thread's precision for nn_sgemm: NN_PREC_BF16 routes it to
 * nn_sgemm_bf16. Per thread, default NN_PREC_F32; the training loop sets it
 * around its steps only (scoring stays float32). Returns the previous one. */
enum nn_precision { NN_PREC_F32 = 0, NN_PREC_BF16 = 1 };
enum nn_precision nn_gemm_set_precision(enum nn_precision p);
enum nn_precision nn_gemm_precision(void);
/* While its precision is bf16, between two nn_gemm_set_precision calls, a
 * thread keeps the bf16 copy of each operand it converted and uses it again
 * for the same stored matrix (pointer, rows, columns, stride): the caller
 * promises that within that span an operand's memory changes only as the C
 * of this thread's products (which drop the copies they overwrite). The training loop sets the
 * precision around each step, and a step writes its operands before it
 * first reads them. nn_gemm_keep_copies(0) converts every operand anew (the
 * reference the kept copies are tested against); default on. */
void nn_gemm_keep_copies(int on);
/* For a producer that makes an operand's bf16 copy itself, in the pass that
 * writes its float values (which saves the products a pass over memory):
 * the buffer [rows x cols] (rows packed) that this step's products take as
 * the copy of the stored matrix src (rows x cols at stride ld). The caller
 * fills it with nn_bf16_pack of the final values before the next product.
 * only = 1: the caller does not write the final float values into src
 * either (nothing but products reads them this step); a product that must
 * fall back to float inputs restores them from the copy first. NULL when
 * there is no such copy (float32, copies off, no oneDNN, out of memory):
 * the caller writes src and the products convert it themselves. */
uint16_t *nn_gemm_bf16_slot(float *src, int rows, int cols, int ld, int only);
/* The current bf16 copy of the stored matrix src (rows x cols at stride
 * ld), rows packed, or NULL: for a pass that reads only signs, such as a
 * ReLU backward whose activations were left stale (nn_gemm_bf16_slot). */
const uint16_t *nn_gemm_bf16_find(const float *src, int rows, int cols, int ld);
/* A layer's bf16 product with its bias and optional ReLU run by oneDNN
 * inside the product: y = act(x W^T + b) for x[B,I] at stride ldx, W[O,I],
 * b[O] (float32, added to the float32 sums). Into ybf (B x O bf16 bits,
 * packed; y not written) when non-NULL, else into y at stride ldy as
 * float32. Returns 0 when done; -1 when it cannot run that way (precision
 * float32, no oneDNN, no bias, a dimension under 16, out of memory) and
 * nothing was written: the caller runs the product and its epilogue. */
int nn_gemm_bf16_layer(const float *x, int ldx, const float *W, const float *b, int B, int I, int O, int relu,
                       float *y, int ldy, uint16_t *ybf);
/* C[M, N] = op(A) op(B), written only as bf16 into the copy of the stale
 * stored matrix that holds C's place (nn_gemm_bf16_slot with only, at
 * stride ldc), where a consumer reads it: the float C is not written. For
 * a producer whose output only products and sign/mask passes read. Returns
 * 0 when done; -1 (nothing written) when there is no such copy or the
 * product cannot run that way: the caller runs the float product, which
 * restores the copy's other values before it drops it (copies_drop). */
int nn_gemm_bf16_into_copy(char transa, char transb, int M, int N, int K, const float *A, int lda, const float *B,
                           int ldb, float *C, int ldc);
/* 1 when a product of these dims on this thread would read bf16 copies
 * (precision bf16, oneDNN, no dimension under 16). */
int nn_gemm_bf16_dims(int M, int N, int K);
/* dst[i] = the bf16 bits of src[i], rounded as nn_bf16_round. */
void nn_bf16_pack(uint16_t *dst, const float *src, size_t n);
/* Frees the calling thread's bf16 scratch and primitives (no-op if none);
 * the next bf16 product makes them again. */
void nn_gemm_release(void);
/* dst[i] = src[i] rounded to the nearest bfloat16, ties to even, held as
 * float (NaN stays NaN, overflow goes to infinity); dst may equal src. */
void nn_bf16_round(float *dst, const float *src, size_t n);

/* ---- linear: y[B,O] = x[B,I] . W[O,I]^T + b[O]  (PyTorch layout) ----
 * y may have a row stride ldy >= O (to write into a wider buffer). */
void nn_linear_forward(float *y, int ldy, const float *x, const float *W, const float *b, int B,
                       int I, int O);
/* dx[B,I] += dy . W (skipped if dx NULL); dW[O,I] += dy^T . x; db[O] += sum_b dy. */
void nn_linear_backward(float *dx, float *dW, float *db, const float *dy, int lddy, const float *x,
                        const float *W, int B, int I, int O);
/* The same with every row stride explicit (x at ldx >= I, dx at lddx >= I):
 * for layers that read or write a column block of a wider buffer, as the
 * fused first layers of several experts do. relu: y = max(x W^T + b, 0);
 * dx[:, 0:dxcols] = dx_beta * dx + dy . W[:, 0:dxcols] (dx_beta 0: dx is
 * overwritten, never read; columns from dxcols on are left alone: inputs
 * that need no gradient, such as numeric features, go last).
 * copy_block > 0 (dividing O): the output's column blocks of that width are
 * read next by bf16 products, so their copies are made here, from each
 * final row (nn_gemm_bf16_slot); the caller must not change y afterwards.
 * stale_ok: the caller reads y only through those products and the copies
 * themselves (nn_gemm_bf16_find), so y's float values are left unwritten
 * where every block has a copy (the products restore them if they need
 * them). At bf16 the bias and ReLU run inside oneDNN's product where that
 * pass would do nothing else (no copies, or copies with stale_ok). */
void nn_linear_forward_ld(float *y, int ldy, const float *x, int ldx, const float *W, const float *b,
                          int B, int I, int O, int relu, int copy_block, int stale_ok);
void nn_linear_backward_ld(float *dx, int lddx, int dxcols, float dx_beta, float *dW, float *db, const float *dy,
                           int lddy, const float *x, int ldx, const float *W, int B, int I, int O);
/* dW[O,I] += dy^T . x as the product x^T . dy into wt[I,O], then added
 * transposed: faster where O is several times I. */
void nn_linear_backward_wt(float *dW, float *wt, const float *dy, int lddy, const float *x, int ldx, int B, int I,
                           int O);

/* ---- embedding: out[b, 0:D] = table[ids[b], :] written at row stride ldo ---- */
void nn_embedding_forward(float *out, int ldo, const float *table, const int32_t *ids, int B, int D);
/* dtable[ids[b], :] += dout[b, :] (rows not in ids untouched). */
void nn_embedding_backward(float *dtable, const float *dout, int lddo, const int32_t *ids, int B,
                           int D);
/* Bag (multi-valued): row b pools ids[off[b] .. off[b+1]) by sum or mean
 * (mean=1); an empty bag gives zeros. */
void nn_embedding_bag_forward(float *out, int ldo, const float *table, const int32_t *off,
                              const int32_t *ids, int B, int D, int mean);
void nn_embedding_bag_backward(float *dtable, const float *dout, int lddo, const int32_t *off,
                               const int32_t *ids, int B, int D, int mean);
/* rows[0..count) = sorted distinct ids[0..n), inv[k] = index in rows of
 * ids[k]; keys: scratch of 2n. Returns count. */
int nn_unique_rows_inv(int32_t *rows, int32_t *inv, const int32_t *ids, int n, uint64_t *keys);

/* ---- ReLU ---- */
void nn_relu_forward(float *y, const float *x, size_t N);
/* dx += dy * (y > 0) */
void nn_relu_backward(float *dx, const float *dy, const float *y, size_t N);

/* ---- dropout (inverted: kept units scaled by 1/(1-p)) ----
 * mask[N] receives 0 or 1/(1-p); p == 0 copies x and fills mask with 1. */
void nn_dropout_forward(float *y, float *mask, const float *x, size_t N, float p, struct rng *r);
void nn_dropout_backward(float *dx, const float *dy, const float *mask, size_t N);

/* ---- concat along columns: out[B, sum w] = [x0[B,w0] | x1[B,w1] | ...] ---- */
void nn_concat_forward(float *out, const float *const *xs, const int *widths, int n, int B);
/* dxs[i] += matching column block of dout (NULL entries skipped). */
void nn_concat_backward(float *const *dxs, const float *dout, const int *widths, int n, int B);

/* ---- softmax over rows: y[B,C] = softmax(x[B,C]) ---- */
void nn_softmax_forward(float *y, const float *x, int B, int C);
/* dx += y * (dy - sum_c dy*y) */
void nn_softmax_backward(float *dx, const float *dy, const float *y, int B, int C);

/* ---- sigmoid + binary cross-entropy on logits ----
 * Labels y may be NaN = missing: that row is skipped. Logits and labels are
 * read at stride ld (column j of a [B,ld] matrix: pass pointers offset by j).
 * p[b] (stride ld, may be NULL) receives sigmoid(logit).
 * Returns the SUM of losses over non-missing rows; *count receives their
 * number. Numerically stable for large |logit|. */
double nn_bce_forward(float *p, const float *logit, const float *y, int B, int ld, int *count);
/* dlogit[b] += scale * (sigmoid(logit) - y) for non-missing rows
 * (scale is typically weight / count for a mean loss). */
void nn_bce_backward(float *dlogit, const float *logit, const float *y, int B, int ld, float scale);

/* ---- mean squared error (regression), same conventions: returns the sum of
 * (pred - y)^2 over non-missing rows ---- */
double nn_mse_forward(const float *pred, const float *y, int B, int ld, int *count);
/* dpred += scale * 2 * (pred - y) */
void nn_mse_backward(float *dpred, const float *pred, const float *y, int B, int ld, float scale);

/* ---- gated mixture of experts (MMoE / PLE): out[B,H] = sum_k g[b,k] * e_k[b,:] ----
 * es[k] points to expert k's output [B,H] at row stride lde (K experts);
 * g [B,K] are the gate weights (softmax outputs). */
void nn_mixture_forward(float *out, const float *const *es, int lde, const float *g, int B, int K,
                        int H);
/* des[k] += g[b,k] * dout (NULL entries skipped); dg[b,k] += <dout[b,:], e_k[b,:]>. */
void nn_mixture_backward(float *const *des, float *dg, const float *dout, const float *const *es,
                         int lde, const float *g, int B, int K, int H);
/* One gate of a level, for the *_gates functions: its weights g [B,K] over
 * experts[0:K] (indices into the level's es / des) and, forward, its
 * mixture out [B,H]; backward, the gradient of its mixture dout [B,H],
 * where its dg [B,K] goes, and first[k] = 1 when no earlier gate in the
 * list mixes experts[k]. */
struct nn_mix_gate {
    const float *g;
    const int *experts;
    int K;
    float *out;
    const float *dout;
    float *dg;
    const unsigned char *first;
};
/* Every gate of a level at once: each gate's out = its mixture of es, the
 * same values as nn_mixture_forward per gate. */
void nn_mixture_forward_gates(const float *const *es, int lde, int H, const struct nn_mix_gate *gates, int G,
                              int B);
/* An expert whose output came out of a ReLU (es[e] is that output): once
 * the gates have made its gradient row, the row is taken back through the
 * ReLU (zero where es[e] <= 0) while in cache, summed into db[H] (the
 * expert's last bias gradient) and, with bf, packed as bf16 into
 * bf[b*H ...] for the expert's products; the masked float row is written
 * to des[e] only without bf (nn_gemm_bf16_slot's only): with bf, des[e]
 * is left untouched when E * H <= 4096 (the row is made on the stack) and
 * holds the unmasked row otherwise. db NULL: the expert is left as the
 * gates made it. */
struct nn_mix_relu {
    float *db;
    uint16_t *bf;
};
/* Every gate of a level at once: des[e] = sum over the gates mixing expert
 * e of g[b,k] * dout (WRITTEN by the first such gate, then added; NULL
 * entries skipped; every expert with a des must be mixed by some gate) and
 * each gate's dg[b,k] = <dout[b,:], e_k[b,:]> (written). The same values as
 * nn_mixture_backward gate after gate on zeroed des and dg. relu (NULL:
 * none) holds E entries, one per expert index: see struct nn_mix_relu. */
void nn_mixture_backward_gates(float *const *des, const float *const *es, int lde, int H,
                               const struct nn_mix_gate *gates, int G, int B, const struct nn_mix_relu *relu,
                               int E);

/* ---- ESMM: pCTCVR = sigmoid(z_ctr) * sigmoid(z_cvr), binary cross-entropy
 * of pCTCVR against y (click AND conversion), with p clipped to
 * [1e-7, 1 - 1e-7] as the PyTorch reference does. z_ctr, z_cvr, y and p read
 * at stride ld; NaN y = row skipped. p (may be NULL) receives pCTCVR.
 * Returns the SUM of losses; *count the rows used. ---- */
double nn_ctcvr_forward(float *p, const float *z_ctr, const float *z_cvr, const float *y, int B,
                        int ld, int *count);
/* dz_ctr += scale * dL/dz_ctr, dz_cvr += scale * dL/dz_cvr (zero where the
 * clip is active, as in autograd through clamp). */
void nn_ctcvr_backward(float *dz_ctr, float *dz_cvr, const float *z_ctr, const float *z_cvr,
                       const float *y, int B, int ld, float scale);

/* ---- initialisation ---- */
/* W[O,I] ~ N(0, 2/I) (He, for ReLU layers) or U(+-sqrt(6/(I+O))) (Xavier). */
void nn_init_he(float *W, int O, int I, struct rng *r);
void nn_init_xavier(float *W, int O, int I, struct rng *r);
/* N(0, std^2) for embeddings. */
void nn_init_normal(float *W, size_t N, float std, struct rng *r);

#endif
