/* optim.h: optimisers over flat parameter arrays (one arena per model; the
 * gradient and moment arrays mirror it).
 *
 * Dense slices are updated whole; embedding tables are updated row-sparsely:
 * only the rows a batch touched, with Adam's moments updated lazily (rows not
 * touched keep their moments; bias correction uses the global step), as in
 * TensorFlow's LazyAdam and PyTorch's SparseAdam. One difference from those
 * two: a touched row takes exactly the dense Adam step (eps added to
 * sqrt(v_hat)), so a table updated every step matches dense Adam bit for bit;
 * SparseAdam adds eps to sqrt(v) instead, which only matters for gradients
 * near eps in size. After a step the gradient of
 * the updated elements is zeroed, ready for the next batch. L2 regularisation
 * adds l2 * w to the gradient of the updated elements. */
#ifndef PT_OPTIM_H
#define PT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

enum optim_kind { OPTIM_SGD = 0, OPTIM_ADAM = 1, OPTIM_ADAGRAD = 2 };

struct optim {
    enum optim_kind kind;
    float lr, beta1, beta2, eps, l2;
    int64_t step; /* incremented by optim_begin_step */
};

/* Defaults: Adam lr 1e-3, betas (0.9, 0.999), eps 1e-8 (PyTorch's); Adagrad
 * eps 1e-10, initial accumulator 0; l2 0. */
void optim_init(struct optim *o, enum optim_kind kind, float lr);

/* Call once per batch before the updates of that batch. */
void optim_begin_step(struct optim *o);

/* w[N] -= update(g); m, v: moments (Adam: m and v; Adagrad: v holds the sum
 * of squares, m unused; SGD: neither). Zeroes g[0..N). */
void optim_update_dense(const struct optim *o, float *w, float *g, float *m, float *v, size_t N);

/* Same for rows[0..nrows) of a [*, D] table (w, m, v all [rows_total, D]).
 * g: [rows_total, D] like w when g_compact is 0; the batch's compact
 * gradient [nrows, D] (row k for rows[k]) when 1. g is zeroed after use. */
void optim_update_rows(const struct optim *o, float *w, float *g, float *m, float *v,
                       const int32_t *rows, int nrows, int D, int g_compact);

/* The same for tables stored row-interleaved: row r is w at base + r*ld,
 * then its m at + D and v at + 2D (ld >= 3D), so one row's update touches one
 * contiguous stretch of memory instead of three scattered ones; g is the
 * batch's compact gradient [nrows, D] (zeroed after use). Adam and Adagrad
 * (v only at + 2D) and SGD. */
void optim_update_rows_interleaved(const struct optim *o, float *base, int64_t ld, float *g, const int32_t *rows,
                                   int nrows, int D);

#endif
