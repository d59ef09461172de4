/* optim.c: SGD, Adam and Adagrad over flat parameter slices.
 *
 * Dims: N elements of a dense slice; D width of a table row; nrows rows a
 * batch touched.
 * Adam and Adagrad follow PyTorch's formulas (torch.optim.Adam/Adagrad with
 * weight_decay = l2, amsgrad off, no lr decay) so reference fixtures match:
 *   g += l2 * w
 *   Adam:    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *            w -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
 *   Adagrad: v += g^2;  w -= lr * g / (sqrt(v) + eps)
 *   SGD:     w -= lr * g
 * then g = 0. Row-sparse updates are lazy (untouched rows keep their
 * moments) but use the global step t in the bias correction, like
 * TensorFlow's LazyAdam. No momentum for SGD, no AdamW decoupled decay, no
 * gradient clipping: the training loop does that before calling in. */
#include <math.h>

#include "train/optim.h"
#include "util/util.h"

/* Per-step constants, computed once in double so the bias correction is
 * accurate even when b2^t is within float rounding of 1. The operation order
 * in the kernels mirrors PyTorch's single-tensor Adam, so results agree to a
 * rounding or two. */
struct step_consts {
    float lr, b1, b2, eps, l2;
    float step_size;  /* Adam: lr / (1 - b1^t) */
    float bc2_sqrt;   /* Adam: sqrt(1 - b2^t) */
};

static struct step_consts consts_of(const struct optim *o)
{
    struct step_consts c = {o->lr, o->beta1, o->beta2, o->eps, o->l2, o->lr, 1.0f};
    /* A caller that forgot optim_begin_step still gets a sane first step. */
    double t = o->step > 0 ? (double)o->step : 1.0;
    if (o->kind == OPTIM_ADAM) {
        double bc1 = 1.0 - pow((double)o->beta1, t);
        double bc2 = 1.0 - pow((double)o->beta2, t);
        c.step_size = (float)((double)o->lr / bc1);
        c.bc2_sqrt = (float)sqrt(bc2);
    }
    return c;
}

/* The kernels over one contiguous span: branch-free loops over restrict
 * pointers that the compiler vectorises, sqrt included: this file is built
 * with -fno-math-errno (CMakeLists.txt), without which a sqrtf call (which
 * may set errno) stops GCC and Clang from vectorising the loop around it. */
static void sgd_span(const struct step_consts *c, float *restrict w, float *restrict g, size_t n)
{
    const float lr = c->lr, l2 = c->l2;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * w[i];
        w[i] -= lr * gi;
        g[i] = 0.0f;
    }
}

PT_VECTOR_CLONES static void adam_span(const struct step_consts *c, float *restrict w, float *restrict g,
                      float *restrict m, float *restrict v, size_t n)
{
    const float b1 = c->b1, b2 = c->b2, a1 = 1.0f - c->b1, a2 = 1.0f - c->b2;
    const float eps = c->eps, l2 = c->l2, ss = c->step_size, bc = c->bc2_sqrt;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * w[i];
        m[i] = b1 * m[i] + a1 * gi;
        v[i] = b2 * v[i] + a2 * gi * gi;
        w[i] -= ss * (m[i] / (sqrtf(v[i]) / bc + eps));
        g[i] = 0.0f;
    }
}

PT_VECTOR_CLONES static void adagrad_span(const struct step_consts *c, float *restrict w, float *restrict g,
                                          float *restrict v, size_t n)
{
    const float lr = c->lr, eps = c->eps, l2 = c->l2;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + l2 * w[i];
        v[i] += gi * gi;
        w[i] -= lr * gi / (sqrtf(v[i]) + eps);
        g[i] = 0.0f;
    }
}

static void update_span(const struct optim *o, const struct step_consts *c, float *w, float *g,
                        float *m, float *v, size_t n)
{
    switch (o->kind) {
    case OPTIM_ADAM: adam_span(c, w, g, m, v, n); break;
    case OPTIM_ADAGRAD: adagrad_span(c, w, g, v, n); break;
    case OPTIM_SGD:
    default: sgd_span(c, w, g, n); break;
    }
}

void optim_init(struct optim *o, enum optim_kind kind, float lr)
{
    o->kind = kind;
    o->lr = lr;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = kind == OPTIM_ADAGRAD ? 1e-10f : 1e-8f;
    o->l2 = 0.0f;
    o->step = 0;
}

void optim_begin_step(struct optim *o) { o->step++; }

/* Chunk size for splitting a dense slice across threads: large enough that
 * each thread streams several pages, small enough to balance ~200k params. */
#define OPTIM_CHUNK 16384

/* w, g, m, v: [N]; m, v may be NULL where the kind does not use them. */
void optim_update_dense(const struct optim *o, float *w, float *g, float *m, float *v, size_t N)
{
    struct step_consts c = consts_of(o);
    size_t nchunks = (N + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
#ifdef PT_HAVE_OPENMP
#pragma omp parallel for schedule(static) if (nchunks > 2)
#endif
    for (size_t k = 0; k < nchunks; k++) {
        size_t lo = k * OPTIM_CHUNK, n = N - lo < OPTIM_CHUNK ? N - lo : OPTIM_CHUNK;
        update_span(o, &c, w + lo, g + lo, m ? m + lo : NULL, v ? v + lo : NULL, n);
    }
}

/* rows[nrows]: distinct row indices (nn_unique_rows_inv); each row r updates
 * w/m/v[r*D .. r*D+D) with gradient row r of g, or row k of a compact g.
 * Rows must be distinct: a repeated row would be stepped twice (and raced
 * on under OpenMP). */
void optim_update_rows(const struct optim *o, float *w, float *g, float *m, float *v,
                       const int32_t *rows, int nrows, int D, int g_compact)
{
    struct step_consts c = consts_of(o);
#ifdef PT_HAVE_OPENMP
#pragma omp parallel for schedule(static) if ((size_t)nrows * (size_t)D > 3 * OPTIM_CHUNK)
#endif
    for (int k = 0; k < nrows; k++) {
        /* rows of a big table are scattered: fetch a few rows ahead, since
         * each row costs a cache miss in each of the four arrays */
        if (k + 16 < nrows) {
            size_t pf = (size_t)rows[k + 16] * (size_t)D;
            PT_PREFETCH(w + pf, 1);
            if (!g_compact) PT_PREFETCH(g + pf, 1);
            if (m) PT_PREFETCH(m + pf, 1);
            if (v) PT_PREFETCH(v + pf, 1);
        }
        size_t off = (size_t)rows[k] * (size_t)D;
        float *gr = g + (g_compact ? (size_t)k * (size_t)D : off);
        update_span(o, &c, w + off, gr, m ? m + off : NULL, v ? v + off : NULL, (size_t)D);
    }
}

void optim_update_rows_interleaved(const struct optim *o, float *base, int64_t ld, float *g, const int32_t *rows,
                                   int nrows, int D)
{
    struct step_consts c = consts_of(o);
    for (int k = 0; k < nrows; k++) {
        if (k + 8 < nrows) {
            const float *pf = base + (size_t)rows[k + 8] * (size_t)ld;
            for (int64_t b = 0; b < 3 * (int64_t)D; b += 16) PT_PREFETCH(pf + b, 1);
        }
        float *w = base + (size_t)rows[k] * (size_t)ld;
        update_span(o, &c, w, g + (size_t)k * (size_t)D, w + D, w + 2 * D, (size_t)D);
    }
}
