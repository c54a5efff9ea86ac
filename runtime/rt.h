/* rt.h — the optc runtime: kernels, data, checkpoints, optimizer, driver.
 *
 * Every generated network links against this library. Conventions:
 * - Tensors are NCHW float32 (and float64 twins for gradient checks, the
 *   same names with suffix _d). Per-image shapes come from the generated
 *   code as constants; B is the batch.
 * - Argument order: context, outputs, inputs, dimensions (as llm.c).
 * - Backward kernels: parameter gradients always ACCUMULATE (+=; the driver
 *   zeroes the gradient block once per step). Input gradients are written
 *   when acc == 0 and added when acc == 1 (the emitter knows which). An
 *   input-gradient pointer may be NULL: that gradient is not needed.
 * - No mutable globals: all state is passed in. Kernels may run OpenMP
 *   loops with ctx->threads threads; results are deterministic for a given
 *   thread count.
 * - Fallible functions return 0 on success and -1 on error, with a message
 *   naming the file and what is wrong in *err. */
#ifndef OPTC_RT_H
#define OPTC_RT_H

#include <stddef.h>
#include <stdint.h>
#include "rt_defaults.h"

#define RT_VERSION "0.1.0"

typedef struct { char msg[1024]; } RtErr;

/* --- random numbers (xoshiro256**, seeded by splitmix64) --------------- */
typedef struct { uint64_t s[4]; } RtRng;
void     rt_rng_seed(RtRng *r, uint64_t seed);
uint64_t rt_rng_u64(RtRng *r);
double   rt_rng_uniform(RtRng *r);            /* [0, 1) */
double   rt_rng_normal(RtRng *r);             /* N(0, 1) */
uint32_t rt_rng_below(RtRng *r, uint32_t n);  /* uniform in [0, n) */

/* --- branch records (gradient checks) -------------------------------------
 * A piecewise kernel (relu, the exact block's relu, any later activation
 * with a kink) chooses a piece per element. Central differences across a
 * kink measure neither piece, and float and double can put an input that
 * lies within rounding of the kink on different sides. A branch record lets
 * a check freeze the choices: a recording pass stores each element's piece,
 * replaying passes take the stored piece whatever their input says, so the
 * checked function is one smooth function of the parameters.
 *
 * Contract for every piecewise kernel (forward and backward):
 * - It takes a site: the element offset of its pieces in rec->mask. The
 *   emitter lays the piecewise calls of a network one after another, per
 *   image, and passes B * (per-image offset); RtNet.branch_elems is the
 *   per-image total, so a record for batch B holds B * branch_elems bytes.
 *   The call's elements are mask[site .. site + n).
 * - m = rt_branch_mask(ctx, site, n) is NULL when ctx->branch is NULL (the
 *   training and evaluation case: the kernel runs its usual code, the cost
 *   is that one test per call). Otherwise the forward chooses each
 *   element's piece by p = rt_branch_take(ctx->branch, &m[i], piece, dist),
 *   where piece is what its input selects (0..255) and dist the input's
 *   distance to the nearest kink, and computes that piece's formula even
 *   when the input lies outside it (the piece extended: relu's piece 1 is
 *   the identity, also for a negative input). The backward reads m[i] as
 *   the piece and never looks at the input's side.
 * - Branch-mode loops run on one thread (rt_branch_take counts without
 *   atomics). */
typedef struct RtBranch {
    int replay;         /* 0: record each element's piece; 1: take the recorded one */
    uint8_t *mask;      /* one piece per element */
    size_t cap;         /* elements mask holds */
    const uint8_t *ref; /* replay: NULL, or other pieces (same layout) to count
                           crossings against instead of mask's */
    /* statistics since the last rt_branch_reset */
    size_t seen;        /* elements chosen */
    size_t crossed;     /* replay: elements whose input selects another piece
                           than the recorded (or ref) one */
    double cross_min;   /* smallest distance to the kink among the crossed */
    double near_min;    /* smallest distance to a kink among all elements */
} RtBranch;

/* Clear the statistics (the mask and mode stay). */
void rt_branch_reset(RtBranch *b);

/* --- synchronised batch norm ----------------------------------------------
 * Data-parallel training (runtime/mpi.c) splits each batch over ranks; a
 * BN layer in training mode must still normalise with the statistics of
 * the whole batch. When ctx->sync is set, the BN training kernels pass
 * their per-channel sums (and the element count) through sync->sum, which
 * replaces buf[0..n) on every rank by its sum over all ranks, added in
 * rank order (bit-identical on every rank and from run to run). It is a
 * collective: every rank calls it with the same n at the same point. */
typedef struct RtSync RtSync;
struct RtSync {
    void (*sum)(RtSync *s, double *buf, size_t n);
    /* The BN kernels' per-channel sums (2 C + 1 doubles): set by the owner
     * for the widest BN of the network so that a training step allocates
     * nothing; NULL or too small, they allocate one per call. */
    double *work;
    size_t work_len;
};

/* --- memory-free drift ---------------------------------------------------
 * A memory-free build (optc build --memory-free) rebuilds states in its
 * backward pass. With the model's drift set, its forward keeps a copy of each
 * state it will rebuild (rt_drift_keep) and the backward measures the
 * rebuilt value against it (rt_drift_check): err[r] = max |rebuilt - kept|
 * / max |kept|, for rebuilt state r (RtNet.mf_names[r]). */
typedef struct {
    int n;                  /* states (RtNet.mf_nrebuilt) */
    double **ref;           /* the kept copies */
    size_t *len;            /* elements of each */
    double *err;            /* -1 until measured */
    /* exact reconstruction (rt_mf_correct): per state the escapes, those
     * that did not fit its escape list and its capacity; over all states
     * the codes by size (0, 1, 2-3, ..., 64-127 ulps) and escapes (last) */
    size_t *esc, *lost, *cap;
    size_t hist[9];
} RtDrift;
/* n slots; rt_drift_free releases them. NULL when out of memory. */
RtDrift *rt_drift_new(int n);
void rt_drift_free(RtDrift *d);

/* --- execution context --------------------------------------------------- */
typedef struct {
    int threads;            /* OpenMP threads for the runtime's own loops */
    void *scratch;          /* kernel workspace (im2col), owned by the caller */
    size_t scratch_bytes;
    RtBranch *branch;       /* NULL, or the record piecewise kernels freeze (above) */
    RtSync *sync;           /* NULL, or BN statistics summed across ranks (above) */
} RtCtx;

/* The n pieces of the call at site, or NULL when ctx has no branch record.
 * Aborts with a message when the site lies outside the record (a network
 * whose branch_elems is wrong). */
uint8_t *rt_branch_mask(const RtCtx *ctx, size_t site, size_t n);

/* Record (piece stored and returned) or replay (the stored piece returned,
 * a disagreement with `piece` counted) one element. */
static inline int rt_branch_take(RtBranch *b, uint8_t *m, int piece, double dist)
{
    b->seen++;
    if (dist < b->near_min)
        b->near_min = dist;
    if (!b->replay) {
        *m = (uint8_t)piece;
        return piece;
    }
    if ((b->ref ? b->ref[m - b->mask] : *m) != (uint8_t)piece) {
        b->crossed++;
        if (dist < b->cross_min)
            b->cross_min = dist;
    }
    return *m;
}

/* Workspace a conv2d forward or backward call needs, in bytes, for elements
 * of elem_size bytes. The caller sizes ctx->scratch as the maximum over all
 * convolutions of the network. */
size_t rt_conv2d_scratch_bytes(int threads, int B, int Cin, int H, int W,
                               int K, int stride, int pad, size_t elem_size);
/* Workspace an exact block (z - U phi(U^T z), U: d x m) needs at batch B:
 * the [B][m] temporary of rt_exact_forward and rt_exact_backward. Without
 * it in ctx->scratch they allocate one per call. */
size_t rt_exact_scratch_bytes(int B, int m, size_t elem_size);
static inline int rt_conv_out(int n, int k, int stride, int pad)
{
    return (n + 2 * pad - k) / stride + 1;
}

/* --- kernels: declared once per element type ----------------------------
 * Shapes: conv in[B][Cin][H][W] w[Cout][Cin][K][K] out[B][Cout][Ho][Wo];
 * bn in/out[B][C][HW], mean/rstd/run_mean/run_var/gamma/beta[C];
 * pad in[B][Cin][H][W] out[B][Cout][ceil(H/s)][ceil(W/s)] (Cout >= Cin);
 * pool out[B][C][(H-K)/s+1][(W-K)/s+1]; gap out[B][C];
 * linear in[B][IN] w[OUT][IN] b[OUT] out[B][OUT];
 * exact (theory block) in/out[B][d] U[d][m] a[B][m], phi = activation act
 *   (an RtAct) with argument alpha: a = in U, out = in - phi(a) U^T;
 * activations (act.def, act.inc) out/in/din/dout[n], a = the activation's
 *   argument (ignored by those without one); backward reads the input;
 * bn_relu: relu(bn(x)) in one pass, out = relu's output, dout = relu's
 *   output gradient (the BN output is never written); site as relu's; the
 *   _strided forms read in (and write din) xs elements apart from image to
 *   image, a channel prefix of a larger tensor; recompute: the training
 *   forward's output again from the saved mean and rstd;
 * relu, the activations with a kink (act.def) and exact with such a phi are
 *   piecewise: site is their branch-record offset (see RtBranch; n resp.
 *   B*m pieces); smooth activations ignore it;
 * concat out[B][sum cs][HW] from xs[i][B][cs[i]][HW]; concat_slice: one
 *   input x[B][C][HW] at channel c0 of out, whose images are os elements apart;
 * sum out[len] = sum_i c[i] xs[i][len];
 * dropout mask[n] holds 0 or 1/(1-p);
 * conv2d_forward_mode is conv2d_forward in a forward pass: train 1, or 0
 *   where no backward follows (inference), and the float build may then
 *   take a faster kernel of larger float error (winograd.c: F(4x4, 3x3),
 *   ~5e-6 of max|out| instead of ~3e-7); the double build ignores train.
 * conv2d_bn_eval is conv2d_forward_mode with train 0 followed by
 *   bn_forward_eval (relu 0) or bn_relu_forward_eval (relu 1, at site) into
 *   out, where the conv's output feeds only that BN: inference needs no
 *   conv output of its own, and the float build applies the BN's affine map
 *   (and the relu) as it writes the conv's output rows.
 * conv2d_sum_eval is conv2d_forward_mode with train 0 followed by the sum
 *   out = cc conv + cr r, where the conv's output feeds only that sum (r:
 *   its other term, laid out as out, sharing no memory with it or in).
 * conv2d_bnin_bn_eval and conv2d_bnin_sum_eval are bn_relu_forward_eval
 *   (h = relu(bn(x)) with running statistics igamma .. ivar, ieps, at
 *   isite) followed by conv2d_bn_eval or conv2d_sum_eval reading h, where
 *   h feeds only that conv: the float build's Winograd path applies the BN
 *   and relu to x's rows as its input transform reads them (the same bytes
 *   in out) and never writes h (the other paths do: h is scratch).
 * conv2d_sum_train is the training forward's conv2d_forward into conv
 *   followed by sum_forward(out, 2, {conv, r}, {(T)cc, (T)cr}), the same
 *   bytes in out (cc and cr arrive as T values); the float build's
 *   Winograd path writes the sum as it copies the conv's output rows out
 *   and never writes conv (the other paths do: conv is scratch).
 * conv2d_sums_train is the same for a sum of n terms in the sum's order,
 *   xs[j] being conv: conv2d_forward into conv, then sum_forward(out, n, xs,
 *   c), the same bytes; the float build's Winograd path writes a 1-, 2- or 3-term sum
 *   as it copies the conv's rows out and never writes conv.
 * conv2d_sums_then_train is conv2d_sums_train followed by sum_forward(out2,
 *   n2, xs2, c2), xs2[j2] being out (momentum's x + v after v = b v - c
 *   grad): the same bytes in out and out2; the Winograd path writes both
 *   as it copies the conv's rows out. out2 shares no memory with in or
 *   out, and of each other term of either sum either none or all (it may
 *   be conv: the Winograd path never writes conv, the others are done with
 *   it when they write out2).
 * conv2d_sums_then_eval is the inference forward's twin: conv2d_forward_mode
 *   with train 0 into conv, then the two sum_forward calls (out2 NULL: the
 *   first alone), the same bytes; the float build's Winograd path writes
 *   the sums as it copies the conv's rows out and never writes conv.
 *   conv2d_bnin_sums_then_eval is bn_relu_forward_eval (h = relu(bn(x)))
 *   followed by it reading h; h as in conv2d_bnin_bn_eval.
 * xent probs[B][K]; returns the mean loss; backward writes
 *   dlogits = (probs - onehot(labels)) / B. */
#define RT_DECLARE_KERNELS(T, S)                                                         \
void rt_conv2d_forward##S(const RtCtx *ctx, T *out, const T *in, const T *w,            \
        int B, int Cin, int H, int W, int Cout, int K, int stride, int pad);           \
void rt_conv2d_forward_mode##S(const RtCtx *ctx, int train, T *out, const T *in,        \
        const T *w, int B, int Cin, int H, int W, int Cout, int K, int stride, int pad); \
void rt_conv2d_bn_eval##S(const RtCtx *ctx, T *out, const T *in, const T *w, int B,     \
        int Cin, int H, int W, int Cout, int K, int stride, int pad, const T *gamma,    \
        const T *beta, const T *run_mean, const T *run_var, double eps, int relu,       \
        size_t site);                                                                   \
void rt_conv2d_sum_eval##S(const RtCtx *ctx, T *out, const T *in, const T *w, int B,    \
        int Cin, int H, int W, int Cout, int K, int stride, int pad, double cc,         \
        const T *r, double cr);                                                         \
void rt_conv2d_bnin_bn_eval##S(const RtCtx *ctx, T *out, T *h, const T *x, const T *w,  \
        int B, int Cin, int H, int W, int Cout, int K, int stride, int pad,             \
        const T *igamma, const T *ibeta, const T *imean, const T *ivar, double ieps,    \
        size_t isite, const T *gamma, const T *beta, const T *run_mean,                 \
        const T *run_var, double eps, int relu, size_t site);                           \
void rt_conv2d_bnin_sum_eval##S(const RtCtx *ctx, T *out, T *h, const T *x, const T *w, \
        int B, int Cin, int H, int W, int Cout, int K, int stride, int pad,             \
        const T *igamma, const T *ibeta, const T *imean, const T *ivar, double ieps,    \
        size_t isite, double cc, const T *r, double cr);                                \
void rt_conv2d_sum_train##S(const RtCtx *ctx, T *out, T *conv, const T *in, const T *w,  \
        int B, int Cin, int H, int W, int Cout, int K, int stride, int pad, double cc,  \
        const T *r, double cr);                                                         \
void rt_conv2d_sums_train##S(const RtCtx *ctx, T *out, T *conv, const T *in,            \
        const T *w, int B, int Cin, int H, int W, int Cout, int K, int stride, int pad, \
        int n, int j, const T *const *xs, const T *c);                                  \
void rt_conv2d_sums_then_train##S(const RtCtx *ctx, T *out, T *conv, const T *in,       \
        const T *w, int B, int Cin, int H, int W, int Cout, int K, int stride, int pad, \
        int n, int j, const T *const *xs, const T *c, T *out2, int n2, int j2,          \
        const T *const *xs2, const T *c2);                                              \
void rt_conv2d_sums_then_eval##S(const RtCtx *ctx, T *out, T *conv, const T *in,        \
        const T *w, int B, int Cin, int H, int W, int Cout, int K, int stride, int pad, \
        int n, int j, const T *const *xs, const T *c, T *out2, int n2, int j2,          \
        const T *const *xs2, const T *c2);                                              \
void rt_conv2d_bnin_sums_then_eval##S(const RtCtx *ctx, T *out, T *conv, T *h,          \
        const T *x, const T *w, int B, int Cin, int H, int W, int Cout, int K, int stride, \
        int pad, const T *igamma, const T *ibeta, const T *imean, const T *ivar,        \
        double ieps, size_t isite, int n, int j, const T *const *xs, const T *c,        \
        T *out2, int n2, int j2, const T *const *xs2, const T *c2);                     \
void rt_conv2d_backward##S(const RtCtx *ctx, T *din, int acc, T *dw, const T *dout,     \
        const T *in, const T *w,                                                        \
        int B, int Cin, int H, int W, int Cout, int K, int stride, int pad);           \
void rt_conv2d_backward_neg##S(const RtCtx *ctx, T *din, int acc, T *dw, const T *dout, \
        const T *in, const T *w,                                                        \
        int B, int Cin, int H, int W, int Cout, int K, int stride, int pad);           \
void rt_conv2d_forward_ref##S(T *out, const T *in, const T *w,                          \
        int B, int Cin, int H, int W, int Cout, int K, int stride, int pad);           \
void rt_conv2d_backward_ref##S(T *din, int acc, T *dw, const T *dout,                   \
        const T *in, const T *w,                                                        \
        int B, int Cin, int H, int W, int Cout, int K, int stride, int pad);           \
void rt_bn_forward_train##S(const RtCtx *ctx, T *out, T *mean, T *rstd,                 \
        T *run_mean, T *run_var, const T *in, const T *gamma, const T *beta,            \
        int B, int C, int HW, double momentum, double eps);                             \
void rt_bn_forward_eval##S(const RtCtx *ctx, T *out, const T *in, const T *gamma,       \
        const T *beta, const T *run_mean, const T *run_var,                             \
        int B, int C, int HW, double eps);                                              \
void rt_bn_backward##S(const RtCtx *ctx, T *din, int acc, T *dgamma, T *dbeta,          \
        const T *dout, const T *in, const T *mean, const T *rstd, const T *gamma,       \
        int B, int C, int HW);                                                          \
void rt_bn_relu_forward_train##S(const RtCtx *ctx, T *out, T *mean, T *rstd,            \
        T *run_mean, T *run_var, const T *in, const T *gamma, const T *beta,            \
        int B, int C, int HW, double momentum, double eps, size_t site);                \
void rt_bn_relu_forward_eval##S(const RtCtx *ctx, T *out, const T *in, const T *gamma,  \
        const T *beta, const T *run_mean, const T *run_var,                             \
        int B, int C, int HW, double eps, size_t site);                                 \
void rt_bn_relu_backward##S(const RtCtx *ctx, T *din, int acc, T *dgamma, T *dbeta,     \
        const T *dout, const T *out, const T *in, const T *mean, const T *rstd,         \
        const T *gamma, const T *beta, int B, int C, int HW, size_t site);              \
void rt_bn_relu_backward_then##S(const RtCtx *ctx, T *din, int acc, T *dgamma,         \
        T *dbeta, const T *dout, const T *out, const T *in, const T *mean, const T *rstd,  \
        const T *gamma, const T *beta, int B, int C, int HW, size_t site, int keep,      \
        int n, T *const *dxs, const int *dacc, const T *c, int j, int n2,                \
        T *const *dxs2, const int *dacc2, const T *c2);                                   \
void rt_bn_relu_backward_pend##S(const RtCtx *ctx, T *din, int np, const T *const *pg,  \
        const T *pc, T *dgamma, T *dbeta, const T *dout, const T *out, const T *in,     \
        const T *mean, const T *rstd, const T *gamma, const T *beta, int B, int C,      \
        int HW, size_t site);                                                           \
void rt_bn_relu_forward_train_strided##S(const RtCtx *ctx, T *out, T *mean, T *rstd,    \
        T *run_mean, T *run_var, const T *in, const T *gamma, const T *beta,            \
        int B, int C, int HW, double momentum, double eps, size_t site, size_t xs);     \
void rt_bn_relu_forward_train_cached##S(const RtCtx *ctx, T *out, T *mean, T *rstd,     \
        T *run_mean, T *run_var, const T *in, const T *gamma, const T *beta,            \
        int B, int C, int HW, double momentum, double eps, size_t site, size_t xs,      \
        T *cache, int known);                                                           \
void rt_bn_relu_conv1x1_train##S(const RtCtx *ctx, T *conv, T *h, T *mean, T *rstd,     \
        T *run_mean, T *run_var, const T *in, const T *gamma, const T *beta,            \
        int B, int C, int H, int W, double momentum, double eps, size_t site,           \
        size_t xs, T *cache, int known, const T *w, int Cout);                          \
void rt_bn_relu_forward_eval_strided##S(const RtCtx *ctx, T *out, const T *in,          \
        const T *gamma, const T *beta, const T *run_mean, const T *run_var,             \
        int B, int C, int HW, double eps, size_t site, size_t xs);                      \
void rt_bn_relu_backward_strided##S(const RtCtx *ctx, T *din, int acc, T *dgamma,       \
        T *dbeta, const T *dout, const T *out, const T *in, const T *mean,              \
        const T *rstd, const T *gamma, const T *beta, int B, int C, int HW, size_t site, \
        size_t xs);                                                                     \
void rt_bn_relu_recompute##S(const RtCtx *ctx, T *out, const T *in, const T *mean,      \
        const T *rstd, const T *gamma, const T *beta, int B, int C, int HW,             \
        size_t site, size_t xs);                                                        \
void rt_bn_relu_conv1x1_backward##S(const RtCtx *ctx, T *din, int acc, T *dw,          \
        const T *dout, T *h, const T *in, const T *mean, const T *rstd, const T *gamma,  \
        const T *beta, int B, int C, int H, int W, size_t site, size_t xs, const T *w,   \
        int Cout);                                                                      \
void rt_bn_relu_conv3x3_backward##S(const RtCtx *ctx, T *din, int acc, T *dw,          \
        const T *dout, T *h, const T *in, const T *mean, const T *rstd, const T *gamma,  \
        const T *beta, int B, int C, int H, int W, size_t site, size_t xs, const T *w,   \
        int Cout);                                                                      \
void rt_bn_relu_conv3x3_backward_neg##S(const RtCtx *ctx, T *din, int acc, T *dw,      \
        const T *dout, T *h, const T *in, const T *mean, const T *rstd, const T *gamma,  \
        const T *beta, int B, int C, int H, int W, size_t site, size_t xs, const T *w,   \
        int Cout);                                                                      \
void rt_bn_relu_conv3x3_train##S(const RtCtx *ctx, T *out, T *conv, T *h, T *mean,       \
        T *rstd, T *run_mean, T *run_var, const T *x, const T *gamma, const T *beta,    \
        int B, int C, int H, int W, double momentum, double eps, size_t site,           \
        const T *w, int Cout, double cc, const T *r, double cr);                         \
void rt_bn_relu_conv3x3_sums_train##S(const RtCtx *ctx, T *out, T *conv, T *h, T *mean,  \
        T *rstd, T *run_mean, T *run_var, const T *x, const T *gamma, const T *beta,    \
        int B, int C, int H, int W, double momentum, double eps, size_t site,           \
        const T *w, int Cout, int n, int j, const T *const *xs, const T *c, T *out2,    \
        int n2, int j2, const T *const *xs2, const T *c2);                              \
void rt_relu_forward##S(const RtCtx *ctx, T *out, const T *in, size_t n, size_t site);  \
void rt_relu_backward##S(const RtCtx *ctx, T *din, int acc, const T *dout,              \
        const T *out, size_t n, size_t site);                                           \
void rt_sum_forward##S(const RtCtx *ctx, T *out, int n, const T *const *xs,             \
        const T *c, size_t len);                                                        \
void rt_sum_backward##S(const RtCtx *ctx, T *const *dxs, const int *acc, T *dc,         \
        const T *dout, const T *const *xs, const T *c, int n, size_t len);             \
void rt_concat_forward##S(const RtCtx *ctx, T *out, int n, const T *const *xs,          \
        const int *cs, int B, int HW);                                                  \
void rt_concat_backward##S(const RtCtx *ctx, T *const *dxs, const int *acc,             \
        const T *dout, int n, const int *cs, int B, int HW);                            \
void rt_concat_slice_forward##S(const RtCtx *ctx, T *out, const T *x, int B, int C,    \
        int HW, int c0, size_t os);                                                     \
void rt_concat_slice_backward##S(const RtCtx *ctx, T *dx, int acc, const T *dout,       \
        int B, int C, int HW, int c0, size_t os);                                       \
void rt_pad_forward##S(const RtCtx *ctx, T *out, const T *in,                           \
        int B, int Cin, int H, int W, int Cout, int stride);                            \
void rt_pad_backward##S(const RtCtx *ctx, T *din, int acc, const T *dout,               \
        int B, int Cin, int H, int W, int Cout, int stride);                            \
void rt_pad_backward_pend##S(const RtCtx *ctx, T *din, int acc, int np,                \
        const T *const *pg, const T *pc, int B, int Cin, int H, int W, int Cout,       \
        int stride);                                                                    \
void rt_avgpool_forward##S(const RtCtx *ctx, T *out, const T *in,                       \
        int B, int C, int H, int W, int K, int stride);                                 \
void rt_avgpool_backward##S(const RtCtx *ctx, T *din, int acc, const T *dout,           \
        int B, int C, int H, int W, int K, int stride);                                 \
void rt_gap_forward##S(const RtCtx *ctx, T *out, const T *in, int B, int C, int HW);    \
void rt_gap_backward##S(const RtCtx *ctx, T *din, int acc, const T *dout,               \
        int B, int C, int HW);                                                          \
void rt_linear_forward##S(const RtCtx *ctx, T *out, const T *in, const T *w,            \
        const T *b, int B, int IN, int OUT);                                            \
void rt_linear_backward##S(const RtCtx *ctx, T *din, int acc, T *dw, T *db,             \
        const T *dout, const T *in, const T *w, int B, int IN, int OUT);               \
void rt_linear_forward_ref##S(T *out, const T *in, const T *w, const T *b,              \
        int B, int IN, int OUT);                                                        \
void rt_linear_backward_ref##S(T *din, int acc, T *dw, T *db, const T *dout,            \
        const T *in, const T *w, int B, int IN, int OUT);                               \
void rt_exact_forward##S(const RtCtx *ctx, T *out, T *a, const T *in, const T *U,       \
        int B, int d, int m, int act, double alpha, size_t site);                       \
void rt_exact_backward##S(const RtCtx *ctx, T *din, int acc, T *dU, const T *dout,      \
        const T *in, const T *a, const T *U, int B, int d, int m, int act,              \
        double alpha, size_t site);                                                     \
double rt_act_phi##S(int act, double alpha, double x, double *dphi);                   \
double rt_act_psi##S(int act, double alpha, double x);                                 \
void rt_dropout_forward##S(const RtCtx *ctx, T *out, T *mask, const T *in, size_t n,    \
        double p, RtRng *rng);                                                          \
void rt_dropout_backward##S(const RtCtx *ctx, T *din, int acc, const T *dout,           \
        const T *mask, size_t n);                                                       \
double rt_xent_forward##S(const RtCtx *ctx, T *probs, const T *logits,                  \
        const uint8_t *labels, int B, int K);                                           \
void rt_xent_backward##S(const RtCtx *ctx, T *dlogits, const T *probs,                  \
        const uint8_t *labels, int B, int K);

RT_DECLARE_KERNELS(float, )
RT_DECLARE_KERNELS(double, _d)

/* Memory-free builds: a training-mode BN (and BN + relu) forward with given
 * statistics (the forward's saved mean and rstd; the running statistics are
 * not touched), so the backward's recomputation is the same function; the
 * drift hooks (RtDrift). */
#define RT_DECLARE_MFREE(T, S)                                                           \
void rt_bn_forward_stats##S(const RtCtx *ctx, T *out, const T *in, const T *mean,       \
        const T *rstd, const T *gamma, const T *beta, int B, int C, int HW);            \
void rt_drift_keep##S(RtDrift *d, int r, const T *x, size_t n);                         \
void rt_drift_check##S(RtDrift *d, int r, const T *x, size_t n);
RT_DECLARE_MFREE(float, )
RT_DECLARE_MFREE(double, _d)

/* Exact reconstruction (mfcorr.c): the correction record of a rebuilt state
 * of len elements: a header at hdr (RT_MF_HDR_BYTES), and at corr cap
 * escape values of T then len int8 codes. rt_mf_correct, in the forward:
 * U' = sum_t c[t] xs[t] as the backward will rebuild it, and the
 * per-element correction from U' to u (state r of d's report, when d is
 * set); rt_mf_restore, in the backward: the same U' corrected into u, bit
 * for bit the forward's. */
#define RT_MF_CHUNKS 64
#define RT_MF_HDR_BYTES 512
#define RT_DECLARE_MFCORR(T, S)                                                          \
void rt_mf_correct##S(const RtCtx *ctx, T *hdr, T *corr, size_t cap, const T *u, int n, \
        const T *const *xs, const T *c, size_t len, RtDrift *d, int r);                 \
void rt_mf_restore##S(const RtCtx *ctx, T *u, const T *hdr, const T *corr, size_t cap,  \
        int n, const T *const *xs, const T *c, size_t len);
RT_DECLARE_MFCORR(float, )
RT_DECLARE_MFCORR(double, _d)

/* The activations of act.def: RT_ACT_RELU.., the exact block's act, and
 * their kernels (relu's are above: its backward reads the output). */
typedef enum {
#define ACT(name, NAME, arg, def, k, kink) RT_ACT_##NAME,
#include "act.def"
#undef ACT
    RT_ACT_COUNT
} RtAct;
#define RT_ACT_KERNELS_1(name, T, S)                                                     \
void rt_##name##_forward##S(const RtCtx *ctx, T *out, const T *in, size_t n, double a,  \
        size_t site);                                                                   \
void rt_##name##_backward##S(const RtCtx *ctx, T *din, int acc, const T *dout,          \
        const T *in, size_t n, double a, size_t site);
#define RT_ACT_KERNELS_0(name, T, S)
#define ACT(name, NAME, arg, def, k, kink) RT_ACT_KERNELS_##k(name, float, ) RT_ACT_KERNELS_##k(name, double, _d)
#include "act.def"
#undef ACT

/* --- the network a generated program describes ------------------------- */
typedef enum {
    RT_PK_WEIGHT, RT_PK_BIAS, RT_PK_BN_GAMMA, RT_PK_BN_BETA, RT_PK_SCALAR,
    RT_PK_BN_MEAN, RT_PK_BN_VAR
} RtParamKind;
typedef enum { RT_INIT_KAIMING, RT_INIT_UNIFORM, RT_INIT_ONES, RT_INIT_ZEROS, RT_INIT_CONST } RtInit;

/* One named tensor of the parameter block (trainable) or the buffer block
 * (BN running statistics). */
typedef struct {
    const char *name;
    RtParamKind kind;
    int ndim;
    int dims[4];
    size_t offset, numel;   /* in elements, within its block */
    int buffer;             /* 0: parameter block, 1: buffer block */
    RtInit init;
    double init_value;
    int fan_in;
} RtTensor;

#define RT_MODEL_FIELDS(T)                                                    \
    RtCtx ctx;                                                                \
    int batch;      /* capacity the buffers were sized for */                 \
    T *params;      /* trainable parameters, one block */                     \
    T *grads;       /* their gradients, same layout */                        \
    T *buffers;     /* BN running statistics */                               \
    T *acts;        /* activation arena, net->act_elems(batch) elements */    \
    T *input;       /* [batch][C][H][W], filled by the driver */              \
    T *logits;      /* [batch][classes], written by forward */                \
    T *dlogits;     /* [batch][classes], read by backward */                  \
    RtRng rng;      /* dropout */                                             \
    RtDrift *drift; /* NULL, or what a memory-free build's drift report fills */

typedef struct { RT_MODEL_FIELDS(float) } RtModel;
typedef struct { RT_MODEL_FIELDS(double) } RtModelD;

typedef enum { RT_SCHED_CONSTANT, RT_SCHED_STEP, RT_SCHED_COSINE } RtSchedule;

typedef struct {
    int epochs, batch;
    double lr, momentum, weight_decay;
    int nesterov, decay_bn;
    RtSchedule schedule;
    int warmup_epochs;
    double step_gamma;
    int milestones[4], nmilestones;
    int crop_pad, flip;
    /* run-time only (command line) */
    uint64_t seed;
    int threads;
    int limit;               /* use the first N training images; 0 = all */
    int test_limit;          /* 0 = all */
    const char *data;        /* fashion-mnist | mnist:DIR | cifar10:DIR | cifar100:DIR | synthetic */
    const char *out;         /* run directory */
    const char *resume;      /* checkpoint to resume from */
} RtTrainConfig;

/* What a generated program hands to rt_main. Functions operate on a model
 * whose buffers rt_model_* sized from these figures. */
typedef struct RtNet {
    const char *name;
    const char *optc_version, *command, *spec;   /* provenance */
    int in_c, in_h, in_w, classes;
    size_t nparams, nbuffers;                   /* elements per block */
    const RtTensor *tensors;
    int ntensors;
    long long madds;                            /* forward multiply-adds per image */
    size_t branch_elems;                        /* piecewise elements per image (RtBranch) */
    int nops;
    size_t (*act_elems)(int B);                 /* activation arena elements */
    size_t (*scratch_bytes)(int B, int threads, size_t elem_size);
    void (*forward)(RtModel *m, int B, int train);
    void (*backward)(RtModel *m, int B);
    void (*forward_d)(RtModelD *m, int B, int train);
    void (*backward_d)(RtModelD *m, int B);
    RtTrainConfig defaults;
    /* memory-free builds only (0 otherwise): the stored build's arena
     * (elements mf_stored_a * B + mf_stored_b) and the states rebuilt */
    size_t mf_stored_a, mf_stored_b;
    int mf_nrebuilt;
    const char *const *mf_names;
    /* exact reconstruction (1; 0: drift): the correction records' share of
     * the arena, elements mf_corr_a * B + mf_corr_b */
    int mf_exact;
    size_t mf_corr_a, mf_corr_b;
} RtNet;

/* Allocate every buffer of a model for batch capacity B (one allocation
 * each, touched once); initialise parameters from the tensors' init rules
 * with the given seed. */
int  rt_model_init(RtModel *m, const RtNet *net, int B, int threads, uint64_t seed, RtErr *err);
void rt_model_free(RtModel *m);
int  rt_model_init_d(RtModelD *m, const RtNet *net, int B, int threads, RtErr *err);
void rt_model_free_d(RtModelD *m);
/* A synthetic batch from rng: nin N(0, 1) inputs, then B labels uniform
 * over the net's classes (bench, dump and gradcheck without a data set). */
void rt_model_synth_batch(const RtNet *net, RtRng *rng, float *input, size_t nin,
                          uint8_t *labels, int B);

/* --- data ---------------------------------------------------------------- */
typedef struct {
    int n, c, h, w, classes;
    float *x;               /* [n][c][h][w], normalised */
    uint8_t *y;             /* [n] */
} RtData;

/* spec: "fashion-mnist" (the Debian package's directory, or
 * fashion-mnist:DIR), "mnist:DIR", "cifar10:DIR", "cifar100:DIR",
 * "synthetic" (a small learnable set of shape c x h x w, classes).
 * limit/test_limit: 0 = all. Images are scaled to [0,1] and normalised per
 * channel with the training set's mean and std (applied to both sets). */
int  rt_data_load(RtData *train, RtData *test, const char *spec, int limit, int test_limit,
                  int c, int h, int w, int classes, uint64_t seed, RtErr *err);
void rt_data_free(RtData *d);

/* The input normalisation, per channel: x = (pixel / 255 - mean[c]) / std[c],
 * computed in float. Checkpoints store it (metadata input_mean, input_std). */
#define RT_NORM_MAX_C 64
typedef struct {
    int c;                          /* channels; 0: not known yet */
    float mean[RT_NORM_MAX_C], std[RT_NORM_MAX_C];
} RtNorm;
/* rt_data_load with the normalisation explicit: when norm->c > 0 both sets
 * are normalised with it (its channels must match the images'); otherwise it
 * is computed from the training set (after limit) and stored in *norm.
 * train may be NULL when norm is given: only the test set is read. */
int  rt_data_load_norm(RtData *train, RtData *test, const char *spec, int limit, int test_limit,
                       int c, int h, int w, int classes, uint64_t seed, RtNorm *norm, RtErr *err);
/* "m0,m1,..." and "s0,s1,..." ("%.9g": floats round-trip exactly) into
 * mean and std of cap bytes each; -1 when they do not fit. */
int  rt_norm_format(const RtNorm *n, char *mean, char *std, size_t cap);
/* The inverse, for c channels; -1 with a reason in *why when a value is
 * missing, extra, not a number, not finite, or a std is not positive. */
int  rt_norm_parse(RtNorm *n, int c, const char *mean, const char *std, const char **why);
/* Low-level readers (tests use them directly). IDX files may be gzipped. */
int  rt_idx_read_images(const char *path, float **x, int *n, int *h, int *w, RtErr *err);
int  rt_idx_read_labels(const char *path, uint8_t **y, int *n, RtErr *err);
/* CIFAR binary batches: cifar100 selects the 2-byte (coarse, fine) label
 * layout, using the fine label. */
int  rt_cifar_read(const char *path, int cifar100, float **x, uint8_t **y, int *n, RtErr *err);
/* Fill out[B][c][h][w] and labels[B] from images idx[0..B-1], with random
 * crop (zero padding pad) and horizontal flip when asked. */
void rt_data_batch(float *out, uint8_t *labels, const RtData *d, const uint32_t *idx, int B,
                   int crop_pad, int flip, RtRng *rng);
void rt_shuffle(uint32_t *idx, int n, RtRng *rng);

/* --- safetensors --------------------------------------------------------- */
typedef struct { const char *name; int ndim; int dims[4]; const float *data; } RtStEntry;
/* Write tensors (F32) and string metadata (meta: key, value, key, value...)
 * atomically: temporary file in the same directory, fsync, rename. */
int rt_st_save(const char *path, const RtStEntry *t, int n,
               const char *const *meta, int nmeta, RtErr *err);
typedef struct RtStFile RtStFile;
RtStFile   *rt_st_open(const char *path, RtErr *err);  /* validates the whole header */
/* 0 and the shape when present, -1 when absent. */
int         rt_st_shape(const RtStFile *f, const char *name, int *ndim, int dims[4]);
int         rt_st_read(RtStFile *f, const char *name, float *dst, size_t numel, RtErr *err);
const char *rt_st_meta(const RtStFile *f, const char *key);   /* NULL when absent */
int         rt_st_count(const RtStFile *f);
const char *rt_st_name(const RtStFile *f, int i);
void        rt_st_close(RtStFile *f);
/* NULL, or one line "PATH: skipped N integer tensors ...: NAME (I64), ..."
 * naming the integer tensors the reader skipped (PyTorch's
 * num_batches_tracked). F64/F16/BF16 tensors read as float. */
const char *rt_st_note(const RtStFile *f);
/* IEEE half and bfloat16 to float (exact, subnormals, inf and NaN kept). */
float       rt_st_f16_to_f32(uint16_t h);
float       rt_st_bf16_to_f32(uint16_t b);

/* --- optimizer ------------------------------------------------------------ */
/* SGD with momentum (PyTorch's convention: buf = mu*buf + g + wd*p;
 * p -= lr * (nesterov ? g + wd*p + mu*buf : buf)). */
void   rt_sgd_update(float *p, const float *g, float *buf, size_t n,
                     double lr, double momentum, double wd, int nesterov);
/* The wd rt_sgd_update gets for tensor t: cfg's weight decay for weights,
 * for BN's affine parameters only with decay_bn, 0 for the rest. */
double rt_weight_decay(const RtTensor *t, const RtTrainConfig *cfg);
/* The learning rate at a fractional epoch position in [0, epochs). */
double rt_lr_at(const RtTrainConfig *cfg, double epoch);

/* --- the driver ----------------------------------------------------------- */
/* Parses argv (train | eval | info | gradcheck | bench, each with --help),
 * runs the command and returns the process exit status. */
int rt_main(const RtNet *net, int argc, char **argv);

#endif
