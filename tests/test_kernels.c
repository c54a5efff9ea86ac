/* test_kernels.c — every runtime kernel against finite differences, its
 * float twin against its double twin, every BLAS path against its plain-loop
 * twin, the acc/NULL gradient conventions and run-to-run determinism.
 *
 * One loop test per op over an op table. Each op is described by an adapter:
 * init() fixes the shape and the arguments (inputs, parameters, constants),
 * fwd/bwd call the kernels in one precision. A generic checker then runs:
 *  (a) the double backward against central differences (h = 1e-6, relative
 *      to max(1, |x|)) of L = <out, R> computed with the double forward,
 *      tolerance FD_TOL per entry (see gc_relerr); piecewise ops (relu,
 *      exact) on the pieces their base forward recorded (a branch record,
 *      rt.h), relu with inputs planted within the step of its kink,
 *      tolerance FD_TOL_FROZEN;
 *  (b) float forward and backward against double, normwise relative
 *      tolerance F32_TOL;
 *  (c) the BLAS kernels against the _ref loops (conv, linear), normwise
 *      relative tolerance REF_TOL in double and F32_TOL in float;
 *  (d) acc == 1 adds to what is there, acc == 0 overwrites, parameter
 *      gradients always add, and a NULL gradient is skipped without
 *      changing the others;
 *  (e) two identical float runs with 2 threads give identical bytes.
 * OPTC_VERBOSE=1 prints the largest errors seen per op. */
#include <cblas.h>
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conv3x3.h"
#include "gradcheck.h"
#include "rt.h"
#include "testutil.h"
#include "tmain.h"

#define FD_TOL 1e-5
/* Piecewise ops (relu, exact) run on frozen pieces (a branch record: the
 * double base forward records, every other call replays), so their
 * differences never straddle a kink and the tolerance is gradcheck's. */
#define FD_TOL_FROZEN 1e-6
#define FD_H 1e-5
#define F32_TOL 1e-4
#define REF_TOL 1e-12

enum { ARG_IN, ARG_PARAM, ARG_WRITE, ARG_CONST };
#define MAXA 6
#define MAXAUX 4

typedef struct Prob {
    int d[10];                /* the op's dimensions (meaning per op) */
    double r[2];              /* real settings (momentum, eps, p) */
    int nargs;
    size_t len[MAXA];
    int kind[MAXA];
    double *xd[MAXA];
    float *xf[MAXA];
    size_t nout;
    size_t auxlen[MAXAUX];    /* saved forward state (mean, rstd, a, mask) */
    double *auxd[MAXAUX];
    float *auxf[MAXAUX];
    uint8_t *labels;          /* xent: nlabels labels below d[1] */
    int nlabels;
    size_t scratch;           /* bytes for doubles */
    size_t npieces;           /* piecewise ops: elements that pick a piece */
    RtBranch br;              /* their branch record, at site 0 */
    RtCtx ctx;
} Prob;

typedef struct {
    const char *name;
    int nshapes;
    void (*init)(Prob *p, int shape);
    void (*fwd_d)(Prob *p, const RtCtx *c, double *out);
    void (*bwd_d)(Prob *p, const RtCtx *c, const double *dout, double **g, int acc);
    void (*fwd_f)(Prob *p, const RtCtx *c, float *out);
    void (*bwd_f)(Prob *p, const RtCtx *c, const float *dout, float **g, int acc);
    /* plain-loop twins, when the kernel uses BLAS */
    void (*fwd_ref_d)(Prob *p, double *out);
    void (*bwd_ref_d)(Prob *p, const double *dout, double **g, int acc);
    void (*fwd_ref_f)(Prob *p, float *out);
    void (*bwd_ref_f)(Prob *p, const float *dout, float **g, int acc);
} OpDesc;

/* =========================================================================
 * Adapters. Each is written once over (T, S, KS, X, A): element type, the
 * adapter's suffix, the kernel's suffix, argument array (xf/xd) and aux
 * array (auxf/auxd). */

/* --- conv: d = B Cin H W Cout K stride pad; args in, w ------------------- */
static const int conv_shapes[][8] = {
    {1, 1, 5, 5, 1, 1, 1, 0},   /* pointwise fast path */
    {3, 6, 5, 7, 4, 1, 1, 0},   /* pointwise, dw split over threads */
    {3, 3, 7, 7, 4, 3, 1, 1},
    {3, 2, 5, 9, 3, 3, 2, 1},   /* stride 2, odd sizes */
    {1, 4, 7, 7, 5, 1, 2, 0},   /* 1x1 stride 2 (the projection shortcut) */
    {2, 3, 9, 5, 2, 5, 2, 2},
    {3, 2, 6, 7, 2, 2, 2, 0},   /* even K, no padding */
    {2, 16, 16, 16, 8, 3, 1, 1},/* large enough for the OpenMP paths */
};

static void conv_init(Prob *p, int s)
{
    const int *v = conv_shapes[s];
    memcpy(p->d, v, 8 * sizeof(int));
    int Ho = rt_conv_out(v[2], v[5], v[6], v[7]), Wo = rt_conv_out(v[3], v[5], v[6], v[7]);
    p->nargs = 2;
    p->len[0] = (size_t)v[0] * v[1] * v[2] * v[3];
    p->kind[0] = ARG_IN;
    p->len[1] = (size_t)v[4] * v[1] * v[5] * v[5];
    p->kind[1] = ARG_PARAM;
    p->nout = (size_t)v[0] * v[4] * Ho * Wo;
    p->scratch = rt_conv2d_scratch_bytes(2, v[0], v[1], v[2], v[3], v[5], v[6], v[7], sizeof(double));
}

#define CONV_DIMS p->d[0], p->d[1], p->d[2], p->d[3], p->d[4], p->d[5], p->d[6], p->d[7]
#define ADAPT_CONV(T, S, KS, X)                                                               \
static void conv_fwd##S(Prob *p, const RtCtx *c, T *out)                                  \
{ rt_conv2d_forward##KS(c, out, p->X[0], p->X[1], CONV_DIMS); }                            \
static void conv_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)           \
{ rt_conv2d_backward##KS(c, g[0], acc, g[1], dout, p->X[0], p->X[1], CONV_DIMS); }         \
static void conv_fwd_ref##S(Prob *p, T *out)                                              \
{ rt_conv2d_forward_ref##KS(out, p->X[0], p->X[1], CONV_DIMS); }                           \
static void conv_bwd_ref##S(Prob *p, const T *dout, T **g, int acc)                       \
{ rt_conv2d_backward_ref##KS(g[0], acc, g[1], dout, p->X[0], p->X[1], CONV_DIMS); }
ADAPT_CONV(float, _f, , xf)
ADAPT_CONV(double, _d, _d, xd)

/* --- bn (training): d = B C HW; args in, gamma, beta; aux mean, rstd,
 * run_mean, run_var (reset before each forward so repeated forwards agree) */
static const int bn_shapes[][3] = {{3, 4, 25}, {2, 3, 35}, {3, 5, 1}, {1, 2, 9}, {3, 8, 1500}};

static void bn_init(Prob *p, int s)
{
    memcpy(p->d, bn_shapes[s], 3 * sizeof(int));
    p->r[0] = 0.1;
    p->r[1] = 1e-5;
    p->nargs = 3;
    p->len[0] = (size_t)p->d[0] * p->d[1] * p->d[2];
    p->kind[0] = ARG_IN;
    p->len[1] = p->len[2] = (size_t)p->d[1];
    p->kind[1] = p->kind[2] = ARG_PARAM;
    p->nout = p->len[0];
    for (int i = 0; i < 4; i++)
        p->auxlen[i] = (size_t)p->d[1];
}

#define ADAPT_BN(T, S, KS, X, A)                                                              \
static void bn_fwd##S(Prob *p, const RtCtx *c, T *out)                                    \
{                                                                                         \
    for (int i = 0; i < p->d[1]; i++) {                                                   \
        p->A[2][i] = (T)0.5;                                                              \
        p->A[3][i] = (T)2;                                                                \
    }                                                                                     \
    rt_bn_forward_train##KS(c, out, p->A[0], p->A[1], p->A[2], p->A[3], p->X[0],           \
                           p->X[1], p->X[2], p->d[0], p->d[1], p->d[2], p->r[0], p->r[1]);\
}                                                                                         \
static void bn_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)             \
{                                                                                         \
    rt_bn_backward##KS(c, g[0], acc, g[1], g[2], dout, p->X[0], p->A[0], p->A[1],          \
                      p->X[1], p->d[0], p->d[1], p->d[2]);                                \
}
ADAPT_BN(float, _f, , xf, auxf)
ADAPT_BN(double, _d, _d, xd, auxd)

/* --- relu: d = n; args in; aux = the forward's output ------------------- */
static void relu_init(Prob *p, int s)
{
    static const int n[] = {7, 45, 100000};
    p->d[0] = n[s];
    p->nargs = 1;
    p->len[0] = p->nout = p->auxlen[0] = p->npieces = (size_t)n[s];
    p->kind[0] = ARG_IN;
}

#define ADAPT_RELU(T, S, KS, X, A)                                                            \
static void relu_fwd##S(Prob *p, const RtCtx *c, T *out)                                  \
{                                                                                         \
    rt_relu_forward##KS(c, out, p->X[0], p->len[0], 0);                                   \
    memcpy(p->A[0], out, p->len[0] * sizeof(T));                                          \
}                                                                                         \
static void relu_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)           \
{ rt_relu_backward##KS(c, g[0], acc, dout, p->A[0], p->len[0], 0); }
ADAPT_RELU(float, _f, , xf, auxf)
ADAPT_RELU(double, _d, _d, xd, auxd)

/* --- sum: d = n len; args xs[0..n-1], c ----------------------------------- */
static void sum_init(Prob *p, int s)
{
    static const int sh[][2] = {{1, 10}, {3, 17}, {5, 40000}};
    p->d[0] = sh[s][0];
    p->d[1] = sh[s][1];
    p->nargs = p->d[0] + 1;
    for (int i = 0; i < p->d[0]; i++) {
        p->len[i] = (size_t)p->d[1];
        p->kind[i] = ARG_IN;
    }
    p->len[p->d[0]] = (size_t)p->d[0];
    p->kind[p->d[0]] = ARG_PARAM;
    p->nout = (size_t)p->d[1];
}

#define ADAPT_SUM(T, S, KS, X)                                                                \
static void sum_fwd##S(Prob *p, const RtCtx *c, T *out)                                   \
{                                                                                         \
    const T *xs[MAXA];                                                                    \
    for (int i = 0; i < p->d[0]; i++)                                                     \
        xs[i] = p->X[i];                                                                  \
    rt_sum_forward##KS(c, out, p->d[0], xs, p->X[p->d[0]], p->nout);                       \
}                                                                                         \
static void sum_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)            \
{                                                                                         \
    const T *xs[MAXA];                                                                    \
    int accs[MAXA];                                                                       \
    for (int i = 0; i < p->d[0]; i++) {                                                   \
        xs[i] = p->X[i];                                                                  \
        accs[i] = acc;                                                                    \
    }                                                                                     \
    rt_sum_backward##KS(c, g, accs, g[p->d[0]], dout, xs, p->X[p->d[0]], p->d[0], p->nout);\
}
ADAPT_SUM(float, _f, , xf)
ADAPT_SUM(double, _d, _d, xd)

/* --- concat: d = n B HW cs[0..n-1]; args xs ------------------------------- */
static void concat_init(Prob *p, int s)
{
    static const int sh[][6] = {{1, 1, 4, 3}, {2, 3, 9, 2, 5}, {3, 2, 25, 1, 4, 2},
                                {2, 3, 1000, 8, 16}};
    memcpy(p->d, sh[s], 6 * sizeof(int));
    int Ct = 0;
    p->nargs = p->d[0];
    for (int i = 0; i < p->d[0]; i++) {
        p->len[i] = (size_t)p->d[1] * p->d[3 + i] * p->d[2];
        p->kind[i] = ARG_IN;
        Ct += p->d[3 + i];
    }
    p->nout = (size_t)p->d[1] * Ct * p->d[2];
}

#define ADAPT_CONCAT(T, S, KS, X)                                                             \
static void concat_fwd##S(Prob *p, const RtCtx *c, T *out)                                \
{                                                                                         \
    const T *xs[MAXA];                                                                    \
    for (int i = 0; i < p->d[0]; i++)                                                     \
        xs[i] = p->X[i];                                                                  \
    rt_concat_forward##KS(c, out, p->d[0], xs, p->d + 3, p->d[1], p->d[2]);                \
}                                                                                         \
static void concat_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)         \
{                                                                                         \
    int accs[MAXA];                                                                       \
    for (int i = 0; i < p->d[0]; i++)                                                     \
        accs[i] = acc;                                                                    \
    rt_concat_backward##KS(c, g, accs, dout, p->d[0], p->d + 3, p->d[1], p->d[2]);         \
}
ADAPT_CONCAT(float, _f, , xf)
ADAPT_CONCAT(double, _d, _d, xd)

/* --- pad: d = B Cin H W Cout stride; args in ------------------------------ */
static void pad_init(Prob *p, int s)
{
    static const int sh[][6] = {{1, 2, 4, 4, 2, 1}, {3, 2, 7, 7, 4, 2}, {2, 3, 5, 9, 6, 2},
                                {1, 1, 7, 5, 3, 3}, {3, 16, 32, 32, 32, 2}};
    memcpy(p->d, sh[s], 6 * sizeof(int));
    int s2 = p->d[5];
    int Ho = (p->d[2] + s2 - 1) / s2, Wo = (p->d[3] + s2 - 1) / s2;
    p->nargs = 1;
    p->len[0] = (size_t)p->d[0] * p->d[1] * p->d[2] * p->d[3];
    p->kind[0] = ARG_IN;
    p->nout = (size_t)p->d[0] * p->d[4] * Ho * Wo;
}

#define PAD_DIMS p->d[0], p->d[1], p->d[2], p->d[3], p->d[4], p->d[5]
#define ADAPT_PAD(T, S, KS, X)                                                                \
static void pad_fwd##S(Prob *p, const RtCtx *c, T *out)                                   \
{ rt_pad_forward##KS(c, out, p->X[0], PAD_DIMS); }                                         \
static void pad_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)            \
{ rt_pad_backward##KS(c, g[0], acc, dout, PAD_DIMS); }
ADAPT_PAD(float, _f, , xf)
ADAPT_PAD(double, _d, _d, xd)

/* --- avgpool: d = B C H W K stride; args in ------------------------------- */
static void pool_init(Prob *p, int s)
{
    static const int sh[][6] = {{1, 1, 4, 4, 2, 2}, {3, 2, 7, 7, 3, 2}, {2, 3, 5, 9, 3, 1},
                                {3, 2, 8, 8, 1, 1}, {2, 2, 7, 7, 7, 1}, {3, 16, 32, 32, 2, 2}};
    memcpy(p->d, sh[s], 6 * sizeof(int));
    int Ho = (p->d[2] - p->d[4]) / p->d[5] + 1, Wo = (p->d[3] - p->d[4]) / p->d[5] + 1;
    p->nargs = 1;
    p->len[0] = (size_t)p->d[0] * p->d[1] * p->d[2] * p->d[3];
    p->kind[0] = ARG_IN;
    p->nout = (size_t)p->d[0] * p->d[1] * Ho * Wo;
}

#define POOL_DIMS p->d[0], p->d[1], p->d[2], p->d[3], p->d[4], p->d[5]
#define ADAPT_POOL(T, S, KS, X)                                                               \
static void pool_fwd##S(Prob *p, const RtCtx *c, T *out)                                  \
{ rt_avgpool_forward##KS(c, out, p->X[0], POOL_DIMS); }                                    \
static void pool_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)           \
{ rt_avgpool_backward##KS(c, g[0], acc, dout, POOL_DIMS); }
ADAPT_POOL(float, _f, , xf)
ADAPT_POOL(double, _d, _d, xd)

/* --- gap: d = B C HW; args in ----------------------------------------------- */
static void gap_init(Prob *p, int s)
{
    static const int sh[][3] = {{1, 1, 1}, {3, 4, 49}, {2, 5, 45}, {3, 64, 256}};
    memcpy(p->d, sh[s], 3 * sizeof(int));
    p->nargs = 1;
    p->len[0] = (size_t)p->d[0] * p->d[1] * p->d[2];
    p->kind[0] = ARG_IN;
    p->nout = (size_t)p->d[0] * p->d[1];
}

#define ADAPT_GAP(T, S, KS, X)                                                                \
static void gap_fwd##S(Prob *p, const RtCtx *c, T *out)                                   \
{ rt_gap_forward##KS(c, out, p->X[0], p->d[0], p->d[1], p->d[2]); }                        \
static void gap_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)            \
{ rt_gap_backward##KS(c, g[0], acc, dout, p->d[0], p->d[1], p->d[2]); }
ADAPT_GAP(float, _f, , xf)
ADAPT_GAP(double, _d, _d, xd)

/* --- linear: d = B IN OUT hasbias; args in, w, b ----------------------------- */
static void linear_init(Prob *p, int s)
{
    static const int sh[][4] = {{1, 1, 1, 1}, {3, 7, 5, 1}, {3, 9, 10, 0}, {1, 64, 10, 1},
                                {3, 200, 300, 1}};
    memcpy(p->d, sh[s], 4 * sizeof(int));
    p->nargs = p->d[3] ? 3 : 2;
    p->len[0] = (size_t)p->d[0] * p->d[1];
    p->kind[0] = ARG_IN;
    p->len[1] = (size_t)p->d[2] * p->d[1];
    p->kind[1] = ARG_PARAM;
    p->len[2] = (size_t)p->d[2];
    p->kind[2] = ARG_PARAM;
    p->nout = (size_t)p->d[0] * p->d[2];
}

#define LIN_B(X) (p->d[3] ? p->X[2] : NULL)
#define LIN_DB (p->d[3] ? g[2] : NULL)
#define LIN_DIMS p->d[0], p->d[1], p->d[2]
#define ADAPT_LINEAR(T, S, KS, X)                                                             \
static void linear_fwd##S(Prob *p, const RtCtx *c, T *out)                                \
{ rt_linear_forward##KS(c, out, p->X[0], p->X[1], LIN_B(X), LIN_DIMS); }                   \
static void linear_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)         \
{ rt_linear_backward##KS(c, g[0], acc, g[1], LIN_DB, dout, p->X[0], p->X[1], LIN_DIMS); }  \
static void linear_fwd_ref##S(Prob *p, T *out)                                            \
{ rt_linear_forward_ref##KS(out, p->X[0], p->X[1], LIN_B(X), LIN_DIMS); }                  \
static void linear_bwd_ref##S(Prob *p, const T *dout, T **g, int acc)                     \
{ rt_linear_backward_ref##KS(g[0], acc, g[1], LIN_DB, dout, p->X[0], p->X[1], LIN_DIMS); }
ADAPT_LINEAR(float, _f, , xf)
ADAPT_LINEAR(double, _d, _d, xd)

/* --- exact: d = B dim m; args in, U; aux a ------------------------------------ */
static void exact_init(Prob *p, int s)
{
    static const int sh[][3] = {{1, 1, 1}, {3, 6, 4}, {2, 9, 12}, {3, 120, 50}};
    memcpy(p->d, sh[s], 3 * sizeof(int));
    p->nargs = 2;
    p->len[0] = (size_t)p->d[0] * p->d[1];
    p->kind[0] = ARG_IN;
    p->len[1] = (size_t)p->d[1] * p->d[2];
    p->kind[1] = ARG_PARAM;
    p->nout = p->len[0];
    p->auxlen[0] = p->npieces = (size_t)p->d[0] * p->d[2];
}

#define ADAPT_EXACT(T, S, KS, X, A)                                                           \
static void exact_fwd##S(Prob *p, const RtCtx *c, T *out)                                 \
{ rt_exact_forward##KS(c, out, p->A[0], p->X[0], p->X[1], p->d[0], p->d[1], p->d[2],      \
                      RT_ACT_RELU, 0.0, 0); }                                             \
static void exact_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)          \
{                                                                                         \
    rt_exact_backward##KS(c, g[0], acc, g[1], dout, p->X[0], p->A[0], p->X[1],             \
                         p->d[0], p->d[1], p->d[2], RT_ACT_RELU, 0.0, 0);                 \
}
ADAPT_EXACT(float, _f, , xf, auxf)
ADAPT_EXACT(double, _d, _d, xd, auxd)

/* --- dropout: d = n, r[0] = p; args in; aux mask. The RNG is reseeded per
 * forward so finite differences see one fixed mask. -------------------------- */
static void dropout_init(Prob *p, int s)
{
    static const int n[] = {9, 1000, 70000};
    static const double pr[] = {0.0, 0.3, 0.5};
    p->d[0] = n[s];
    p->r[0] = pr[s];
    p->nargs = 1;
    p->len[0] = p->nout = p->auxlen[0] = p->npieces = (size_t)n[s];
    p->kind[0] = ARG_IN;
}

#define ADAPT_DROPOUT(T, S, KS, X, A)                                                         \
static void dropout_fwd##S(Prob *p, const RtCtx *c, T *out)                               \
{                                                                                         \
    RtRng rng;                                                                            \
    rt_rng_seed(&rng, 77);                                                                \
    rt_dropout_forward##KS(c, out, p->A[0], p->X[0], p->len[0], p->r[0], &rng);            \
}                                                                                         \
static void dropout_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)        \
{ rt_dropout_backward##KS(c, g[0], acc, dout, p->A[0], p->len[0]); }
ADAPT_DROPOUT(float, _f, , xf, auxf)
ADAPT_DROPOUT(double, _d, _d, xd, auxd)

/* --- xent: d = B K; args logits (written, not accumulated); out = the loss;
 * aux probs. Backward scales by dout[0] so that L = R * loss. ---------------- */
static void xent_init(Prob *p, int s)
{
    static const int sh[][2] = {{1, 2}, {3, 10}, {5, 7}, {64, 100}};
    memcpy(p->d, sh[s], 2 * sizeof(int));
    p->nargs = 1;
    p->len[0] = p->auxlen[0] = (size_t)p->d[0] * p->d[1];
    p->kind[0] = ARG_WRITE;
    p->nout = 1;
    p->nlabels = p->d[0];
}

#define ADAPT_XENT(T, S, KS, X, A)                                                            \
static void xent_fwd##S(Prob *p, const RtCtx *c, T *out)                                  \
{ out[0] = (T)rt_xent_forward##KS(c, p->A[0], p->X[0], p->labels, p->d[0], p->d[1]); }     \
static void xent_bwd##S(Prob *p, const RtCtx *c, const T *dout, T **g, int acc)           \
{                                                                                         \
    (void)acc;                                                                            \
    if (!g[0])                                                                            \
        return;                                                                           \
    rt_xent_backward##KS(c, g[0], p->A[0], p->labels, p->d[0], p->d[1]);                   \
    for (size_t i = 0; i < p->len[0]; i++)                                                \
        g[0][i] *= dout[0];                                                               \
}
ADAPT_XENT(float, _f, , xf, auxf)
ADAPT_XENT(double, _d, _d, xd, auxd)

#define OPS(name, n, ref)                                                                 \
    {#name, n, name##_init, name##_fwd_d, name##_bwd_d, name##_fwd_f, name##_bwd_f,       \
     ref(name, _d, fwd), ref(name, _d, bwd), ref(name, _f, fwd), ref(name, _f, bwd)}
#define REF(name, S, fb) name##_##fb##_ref##S
#define NOREF(name, S, fb) NULL

static const OpDesc ops[] = {
    OPS(conv, 8, REF),
    OPS(bn, 5, NOREF),
    OPS(relu, 3, NOREF),
    OPS(sum, 3, NOREF),
    OPS(concat, 4, NOREF),
    OPS(pad, 5, NOREF),
    OPS(pool, 6, NOREF),
    OPS(gap, 4, NOREF),
    OPS(linear, 5, REF),
    OPS(exact, 4, NOREF),
    OPS(dropout, 3, NOREF),
    OPS(xent, 4, NOREF),
};
#define NOPS ((int)(sizeof ops / sizeof ops[0]))

/* =========================================================================
 * The generic checker. */

typedef struct {
    double fd, f32, ref, acc;
} Worst;

static void prob_alloc(Prob *p, RtRng *rng)
{
    for (int k = 0; k < p->nargs; k++) {
        p->xd[k] = tu_calloc(p->len[k], sizeof(double));
        p->xf[k] = tu_calloc(p->len[k], sizeof(float));
        gc_fill(p->xd[k], p->len[k], rng);
        gc_to_float(p->xf[k], p->xd[k], p->len[k]);
    }
    for (int k = 0; k < MAXAUX; k++) {
        p->auxd[k] = tu_calloc(p->auxlen[k], sizeof(double));
        p->auxf[k] = tu_calloc(p->auxlen[k], sizeof(float));
    }
    if (p->nlabels > 0) {
        p->labels = tu_calloc((size_t)p->nlabels, 1);
        for (int i = 0; i < p->nlabels; i++)
            p->labels[i] = (uint8_t)rt_rng_below(rng, (uint32_t)p->d[1]);
    }
    p->ctx.threads = 2;
    p->ctx.scratch_bytes = p->scratch;
    p->ctx.scratch = tu_calloc(p->scratch + 1, 1);
    if (p->npieces) {
        p->br.mask = tu_calloc(p->npieces, 1);
        p->br.cap = p->npieces;
        rt_branch_reset(&p->br);
        p->ctx.branch = &p->br;
    }
}

static void prob_free(Prob *p)
{
    for (int k = 0; k < p->nargs; k++) {
        free(p->xd[k]);
        free(p->xf[k]);
    }
    for (int k = 0; k < MAXAUX; k++) {
        free(p->auxd[k]);
        free(p->auxf[k]);
    }
    free(p->labels);
    free(p->ctx.scratch);
    free(p->br.mask);
}

static int differentiable(int kind)
{
    return kind == ARG_IN || kind == ARG_PARAM || kind == ARG_WRITE;
}

/* The double forward as a function of the arguments: the finite-difference
 * target. */
typedef struct {
    const OpDesc *op;
    Prob *p;
} FdState;

static void fd_forward(void *st, double *out)
{
    FdState *s = st;
    s->op->fwd_d(s->p, &s->p->ctx, out);
}

/* gradient buffers, one per argument (NULL for constants) */
static void grads_alloc(const Prob *p, double **gd, float **gf)
{
    for (int k = 0; k < MAXA; k++) {
        gd[k] = k < p->nargs && differentiable(p->kind[k]) ? tu_calloc(p->len[k], sizeof(double)) : NULL;
        if (gf)
            gf[k] = gd[k] ? tu_calloc(p->len[k], sizeof(float)) : NULL;
    }
}

static void grads_free(double **gd, float **gf)
{
    for (int k = 0; k < MAXA; k++) {
        free(gd[k]);
        if (gf)
            free(gf[k]);
    }
}

/* gradients of the double kernels at the base point, acc = 0, param grads
 * from zero */
static void base_grads(const OpDesc *op, Prob *p, double *out, const double *R, double **g)
{
    op->fwd_d(p, &p->ctx, out);
    for (int k = 0; k < p->nargs; k++)
        if (g[k])
            memset(g[k], 0, p->len[k] * sizeof(double));
    op->bwd_d(p, &p->ctx, R, g, 0);
}

static void check_shape(const OpDesc *op, int shape, RtRng *rng, Worst *w)
{
    Prob P;
    memset(&P, 0, sizeof P);
    Prob *p = &P;
    op->init(p, shape);
    prob_alloc(p, rng);
    if (strcmp(op->name, "xent") == 0)
        for (size_t i = 0; i < p->len[0]; i++)   /* logits of a useful spread */
            p->xd[0][i] *= 3, p->xf[0][i] *= 3;
    if (strcmp(op->name, "relu") == 0)
        for (size_t i = 0; i < p->len[0]; i += 3) {  /* inputs a difference crosses */
            p->xd[0][i] = (i % 2 ? 1e-7 : -1e-7) * (double)(i % 5 + 1);
            p->xf[0][i] = (float)p->xd[0][i];
        }

    double *out = tu_calloc(p->nout, sizeof(double));
    double *out2 = tu_calloc(p->nout, sizeof(double));
    double *R = tu_calloc(p->nout, sizeof(double));
    float *outf = tu_calloc(p->nout, sizeof(float));
    float *Rf = tu_calloc(p->nout, sizeof(float));
    gc_fill(R, p->nout, rng);
    gc_to_float(Rf, R, p->nout);
    double *g[MAXA], *g2[MAXA];
    float *gf[MAXA], *gf2[MAXA];
    grads_alloc(p, g, gf);
    grads_alloc(p, g2, gf2);

    /* (a) finite differences of the double forward; a piecewise op's base
     * forward records its pieces, every later call replays them */
    base_grads(op, p, out, R, g);
    p->br.replay = 1;
    double fd_tol = p->npieces ? FD_TOL_FROZEN : FD_TOL;
    FdState st = {op, p};
    double *outm = tu_calloc(p->nout, sizeof(double));
    size_t maxprobe = tu_sanitized() ? 12 : 60;
    for (int k = 0; k < p->nargs; k++) {
        if (!g[k])
            continue;
        double floor = 1e-3 * gc_maxabs(g[k], p->len[k]);
        size_t n = p->len[k];
        size_t step = n <= maxprobe ? 1 : n / maxprobe;
        for (size_t i = 0; i < n; i += step) {
            /* spread the probes: a prime offset visits all parts of the tensor */
            size_t j = step == 1 ? i : (i + (i / step) * 7919) % n;
            double num = gc_central(fd_forward, &st, p->xd[k], j, FD_H, R, p->nout, out2, outm);
            double e = gc_relerr(g[k][j], num, floor);
            w->fd = fmax(w->fd, e);
            ck_assert_msg(e < fd_tol, "%s shape %d arg %d [%zu]: analytic %.12g numeric %.12g (rel %.3g)",
                          op->name, shape, k, j, g[k][j], num, e);
        }
    }
    free(outm);
    /* the planted near-kink relu inputs were crossed, and did not count */
    if (strcmp(op->name, "relu") == 0)
        ck_assert_uint_gt(p->br.crossed, 0);
    base_grads(op, p, out, R, g);   /* restore the saved forward state */

    /* (b) float against double */
    op->fwd_f(p, &p->ctx, outf);
    double e = gc_normdiff_f(outf, out, p->nout);
    w->f32 = fmax(w->f32, e);
    ck_assert_msg(e < F32_TOL, "%s shape %d: float forward off by %.3g", op->name, shape, e);
    op->bwd_f(p, &p->ctx, Rf, gf, 0);
    for (int k = 0; k < p->nargs; k++) {
        if (!g[k])
            continue;
        e = gc_normdiff_f(gf[k], g[k], p->len[k]);
        w->f32 = fmax(w->f32, e);
        ck_assert_msg(e < F32_TOL, "%s shape %d arg %d: float backward off by %.3g",
                      op->name, shape, k, e);
    }

    /* (c) BLAS against the plain loops, both precisions, acc 0 and 1 */
    if (op->fwd_ref_d) {
        op->fwd_ref_d(p, out2);
        e = gc_normdiff(out2, out, p->nout);
        w->ref = fmax(w->ref, e);
        ck_assert_msg(e < REF_TOL, "%s shape %d: ref forward off by %.3g", op->name, shape, e);
        for (int acc = 0; acc <= 1; acc++) {
            for (int k = 0; k < p->nargs; k++)
                if (g2[k])
                    for (size_t i = 0; i < p->len[k]; i++)
                        g2[k][i] = acc || p->kind[k] == ARG_PARAM ? g[k][i] : 1e30;
            op->bwd_ref_d(p, R, g2, acc);
            for (int k = 0; k < p->nargs; k++) {
                if (!g[k])
                    continue;
                int adds = acc || p->kind[k] == ARG_PARAM;
                for (size_t i = 0; i < p->len[k]; i++)
                    g2[k][i] -= adds ? g[k][i] : 0;
                e = gc_normdiff(g2[k], g[k], p->len[k]);
                w->ref = fmax(w->ref, e);
                ck_assert_msg(e < REF_TOL, "%s shape %d arg %d acc %d: ref backward off by %.3g",
                              op->name, shape, k, acc, e);
            }
        }
        float *of2 = tu_calloc(p->nout, sizeof(float));
        op->fwd_ref_f(p, of2);
        e = gc_normdiff_f(of2, out, p->nout);
        ck_assert_msg(e < F32_TOL, "%s shape %d: float ref forward off by %.3g", op->name, shape, e);
        for (int k = 0; k < p->nargs; k++)
            if (gf2[k])
                memset(gf2[k], 0, p->len[k] * sizeof(float));
        op->bwd_ref_f(p, Rf, gf2, 0);
        for (int k = 0; k < p->nargs; k++) {
            if (!g[k])
                continue;
            e = gc_normdiff_f(gf2[k], g[k], p->len[k]);
            ck_assert_msg(e < F32_TOL, "%s shape %d arg %d: float ref backward off by %.3g",
                          op->name, shape, k, e);
        }
        free(of2);
    }

    /* (d) acc semantics: acc = 1 adds to G0, acc = 0 overwrites garbage,
     * parameters always add; then each gradient NULL in turn. */
    for (int acc = 0; acc <= 1; acc++) {
        if (acc && p->kind[0] == ARG_WRITE)
            break;
        for (int k = 0; k < p->nargs; k++)
            if (g2[k])
                for (size_t i = 0; i < p->len[k]; i++)
                    g2[k][i] = acc || p->kind[k] == ARG_PARAM ? 0.25 + (double)(i % 7) : 1e30;
        op->bwd_d(p, &p->ctx, R, g2, acc);
        for (int k = 0; k < p->nargs; k++) {
            if (!g[k])
                continue;
            int adds = acc || p->kind[k] == ARG_PARAM;
            for (size_t i = 0; i < p->len[k]; i++)
                g2[k][i] -= adds ? 0.25 + (double)(i % 7) : 0;
            e = gc_normdiff(g2[k], g[k], p->len[k]);
            w->acc = fmax(w->acc, e);
            ck_assert_msg(e < 1e-12, "%s shape %d arg %d acc %d: gradient off by %.3g",
                          op->name, shape, k, acc, e);
        }
    }
    for (int skip = 0; skip < p->nargs; skip++) {
        if (!g2[skip])
            continue;
        double *held = g2[skip];
        g2[skip] = NULL;
        for (int k = 0; k < p->nargs; k++)
            if (g2[k])
                memset(g2[k], 0, p->len[k] * sizeof(double));
        op->bwd_d(p, &p->ctx, R, g2, 0);
        for (int k = 0; k < p->nargs; k++) {
            if (!g2[k])
                continue;
            e = gc_normdiff(g2[k], g[k], p->len[k]);
            ck_assert_msg(e < 1e-12, "%s shape %d: arg %d off by %.3g with arg %d NULL",
                          op->name, shape, k, e, skip);
        }
        g2[skip] = held;
    }

    /* (e) determinism: the float kernels twice with the same thread count */
    float *outf2 = tu_calloc(p->nout, sizeof(float));
    op->fwd_f(p, &p->ctx, outf);
    for (int k = 0; k < p->nargs; k++)
        if (gf[k])
            memset(gf[k], 0, p->len[k] * sizeof(float));
    op->bwd_f(p, &p->ctx, Rf, gf, 0);
    op->fwd_f(p, &p->ctx, outf2);
    for (int k = 0; k < p->nargs; k++)
        if (gf2[k])
            memset(gf2[k], 0, p->len[k] * sizeof(float));
    op->bwd_f(p, &p->ctx, Rf, gf2, 0);
    ck_assert_msg(memcmp(outf, outf2, p->nout * sizeof(float)) == 0,
                  "%s shape %d: forward not deterministic", op->name, shape);
    for (int k = 0; k < p->nargs; k++)
        if (gf[k])
            ck_assert_msg(memcmp(gf[k], gf2[k], p->len[k] * sizeof(float)) == 0,
                          "%s shape %d arg %d: backward not deterministic", op->name, shape, k);

    free(outf2);
    grads_free(g, gf);
    grads_free(g2, gf2);
    free(out);
    free(out2);
    free(R);
    free(outf);
    free(Rf);
    prob_free(p);
}

START_TEST(test_op)
{
    const OpDesc *op = &ops[_i];
    RtRng rng;
    rt_rng_seed(&rng, 1000 + (uint64_t)_i);
    Worst w = {0, 0, 0, 0};
    /* conv takes a different path when OpenBLAS is single-threaded (OpenMP
     * over the images): check both */
    int passes = strcmp(op->name, "conv") == 0 ? 2 : 1;
    int blas_threads = openblas_get_num_threads();
    for (int pass = 0; pass < passes; pass++) {
        openblas_set_num_threads(pass ? 2 : 1);
        for (int s = 0; s < op->nshapes; s++)
            check_shape(op, s, &rng, &w);
    }
    openblas_set_num_threads(blas_threads);
    const char *v = getenv("OPTC_VERBOSE");
    if (v && *v)
        printf("kernel %-8s fd %.2e (tol %.0e)  f32 %.2e (tol %.0e)  ref %.2e  acc %.2e\n",
               op->name, w.fd,
               strcmp(op->name, "relu") == 0 || strcmp(op->name, "exact") == 0 ? FD_TOL_FROZEN
                                                                               : FD_TOL,
               w.f32, F32_TOL, w.ref, w.acc);
}
END_TEST

/* =========================================================================
 * Semantics the generic checker cannot see. */

/* Running statistics follow PyTorch: run = (1 - m) run + m batch, with the
 * unbiased batch variance; mean/rstd use the biased one. */
START_TEST(test_bn_running_stats)
{
    enum { B = 3, C = 2, HW = 5 };
    double in[B * C * HW], out[B * C * HW], mean[C], rstd[C], rm[C] = {1, -1}, rv[C] = {2, 3};
    double gamma[C] = {1, 1}, beta[C] = {0, 0};
    RtRng rng;
    rt_rng_seed(&rng, 5);
    gc_fill(in, B * C * HW, &rng);
    RtCtx ctx = {1, NULL, 0, NULL, NULL};
    rt_bn_forward_train_d(&ctx, out, mean, rstd, rm, rv, in, gamma, beta, B, C, HW, 0.1, 1e-5);
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++)
                s += in[(b * C + c) * HW + i];
        double mu = s / (B * HW);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                double d = in[(b * C + c) * HW + i] - mu;
                ss += d * d;
            }
        ck_assert_double_eq_tol(mean[c], mu, 1e-14);
        ck_assert_double_eq_tol(rstd[c], 1 / sqrt(ss / (B * HW) + 1e-5), 1e-12);
        ck_assert_double_eq_tol(rm[c], 0.9 * (c ? -1 : 1) + 0.1 * mu, 1e-14);
        ck_assert_double_eq_tol(rv[c], 0.9 * (c ? 3 : 2) + 0.1 * ss / (B * HW - 1), 1e-14);
    }
    /* eval with the batch's own (biased) statistics reproduces training */
    double ev[B * C * HW], bv[C];
    for (int c = 0; c < C; c++)
        bv[c] = 1 / (rstd[c] * rstd[c]) - 1e-5;
    rt_bn_forward_eval_d(&ctx, ev, in, gamma, beta, mean, bv, B, C, HW, 1e-5);
    ck_assert_double_le(gc_normdiff(ev, out, B * C * HW), 1e-12);
    /* and with gamma, beta: y = gamma (x - m) / sqrt(v + eps) + beta */
    double g2[C] = {2, -0.5}, b2[C] = {0.25, 1}, m2[C] = {0.5, -0.25}, v2[C] = {4, 0.25};
    rt_bn_forward_eval_d(&ctx, ev, in, g2, b2, m2, v2, B, C, HW, 1e-5);
    for (int i = 0; i < B * C * HW; i++) {
        int c = (i / HW) % C;
        ck_assert_double_eq_tol(ev[i], g2[c] * (in[i] - m2[c]) / sqrt(v2[c] + 1e-5) + b2[c], 1e-14);
    }
}
END_TEST

START_TEST(test_dropout_stats)
{
    enum { N = 100000 };
    float *in = tu_calloc(N, sizeof(float)), *out = tu_calloc(N, sizeof(float));
    float *mask = tu_calloc(N, sizeof(float));
    for (int i = 0; i < N; i++)
        in[i] = 1.5f;
    RtCtx ctx = {2, NULL, 0, NULL, NULL};
    RtRng rng, r0;
    rt_rng_seed(&rng, 9);
    r0 = rng;
    rt_dropout_forward(&ctx, out, mask, in, N, 0.0, &rng);
    ck_assert_mem_eq(&rng, &r0, sizeof rng);    /* p = 0 draws nothing */
    ck_assert_mem_eq(out, in, N * sizeof(float));
    rt_dropout_forward(&ctx, out, mask, in, N, 0.25, &rng);
    int dropped = 0;
    for (int i = 0; i < N; i++) {
        ck_assert(mask[i] == 0.0f || fabsf(mask[i] - 1 / 0.75f) < 1e-6f);
        ck_assert(out[i] == in[i] * mask[i]);
        dropped += mask[i] == 0.0f;
    }
    /* 25 % +- 5 standard deviations (sd = sqrt(N p (1-p)) = 137) */
    ck_assert_int_lt(abs(dropped - N / 4), 685);
    free(in);
    free(out);
    free(mask);
}
END_TEST

START_TEST(test_xent_stable)
{
    /* logits far beyond exp's range: loss and gradient stay finite */
    double z[2][3] = {{1000, -1000, 999}, {-800, -801, -799}};
    uint8_t y[2] = {2, 1};
    double p[6], dz[6];
    RtCtx ctx = {1, NULL, 0, NULL, NULL};
    double loss = rt_xent_forward_d(&ctx, p, &z[0][0], y, 2, 3);
    /* loss_b = lse_b - z_b[y_b], lse_0 = 1000 + log(1 + e^-1 + e^-2000),
     * lse_1 = -799 + log(1 + e^-1 + e^-2) */
    double l0 = 1 + log(1 + exp(-1.0)), l1 = 2 + log(1 + exp(-1.0) + exp(-2.0));
    ck_assert_double_eq_tol(loss, (l0 + l1) / 2, 1e-12);
    rt_xent_backward_d(&ctx, dz, p, y, 2, 3);
    double s0 = 0, s1 = 0;
    for (int k = 0; k < 3; k++) {
        ck_assert(isfinite(dz[k]) && isfinite(dz[3 + k]));
        s0 += dz[k];
        s1 += dz[3 + k];
    }
    ck_assert_double_eq_tol(s0, 0, 1e-15);   /* softmax rows sum to one */
    ck_assert_double_eq_tol(s1, 0, 1e-15);
    float zf[6] = {88, 89, -100, 0, 0, 0}, pf[6];
    uint8_t yf[2] = {0, 2};
    double lf = rt_xent_forward(&ctx, pf, zf, yf, 2, 3);
    ck_assert(isfinite(lf));
    ck_assert_double_eq_tol(lf, ((1 + log(1 + exp(-1.0))) + log(3.0)) / 2, 1e-6);
}
END_TEST

START_TEST(test_rng)
{
    RtRng a, b;
    rt_rng_seed(&a, 42);
    rt_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(rt_rng_u64(&a), rt_rng_u64(&b));
    rt_rng_seed(&b, 43);
    ck_assert_uint_ne(rt_rng_u64(&a), rt_rng_u64(&b));
    rt_rng_seed(&a, 0);   /* seed 0 still gives a live state */
    ck_assert_uint_ne(rt_rng_u64(&a) | rt_rng_u64(&a), 0);

    enum { N = 200000 };
    double s = 0, ss = 0, umin = 1, umax = 0;
    int counts[7] = {0};
    for (int i = 0; i < N; i++) {
        double u = rt_rng_uniform(&a);
        umin = fmin(umin, u);
        umax = fmax(umax, u);
        double x = rt_rng_normal(&a);
        s += x;
        ss += x * x;
        uint32_t k = rt_rng_below(&a, 7);
        ck_assert_uint_lt(k, 7);
        counts[k]++;
    }
    ck_assert(umin >= 0 && umax < 1 && umin < 1e-3 && umax > 1 - 1e-3);
    ck_assert_double_lt(fabs(s / N), 0.02);            /* sd of the mean 0.0022 */
    ck_assert_double_lt(fabs(ss / N - 1), 0.02);       /* sd of the variance 0.0032 */
    for (int k = 0; k < 7; k++)                        /* sd 2.0e2 */
        ck_assert_int_lt(abs(counts[k] - N / 7), 1000);
    ck_assert_uint_eq(rt_rng_below(&a, 1), 0);
    ck_assert_uint_eq(rt_rng_below(&a, 0), 0);
}
END_TEST

/* The conv workspace is one column matrix per thread; none for a
 * pointwise conv. */
START_TEST(test_conv_scratch)
{
    ck_assert_uint_eq(rt_conv2d_scratch_bytes(2, 8, 3, 7, 9, 3, 2, 1, 4),
                      (size_t)2 * 3 * 9 * 4 * 5 * 4);
    ck_assert_uint_eq(rt_conv2d_scratch_bytes(1, 8, 16, 32, 32, 1, 1, 0, 8), 0);
    ck_assert_uint_eq(rt_conv2d_scratch_bytes(4, 8, 16, 32, 32, 1, 2, 0, 8),
                      (size_t)4 * 16 * 16 * 16 * 8);
    ck_assert_uint_eq(rt_conv2d_scratch_bytes(0, 8, 1, 5, 5, 3, 1, 1, 4), (size_t)9 * 25 * 4);

    /* a workspace sized for one thread, used with two: the kernels fall back
     * to what fits (AddressSanitizer would see an overrun) */
    enum { B = 3, C = 2, H = 6, W = 5, CO = 3 };
    double in[B * C * H * W], w[CO * C * 9], o1[B * CO * H * W], o2[B * CO * H * W];
    double dw1[CO * C * 9] = {0}, dw2[CO * C * 9] = {0}, di1[B * C * H * W], di2[B * C * H * W];
    RtRng rng;
    rt_rng_seed(&rng, 11);
    gc_fill(in, B * C * H * W, &rng);
    gc_fill(w, CO * C * 9, &rng);
    size_t bytes = rt_conv2d_scratch_bytes(1, B, C, H, W, 3, 1, 1, sizeof(double));
    RtCtx ctx = {2, tu_calloc(bytes, 1), bytes, NULL, NULL};
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    rt_conv2d_forward_d(&ctx, o1, in, w, B, C, H, W, CO, 3, 1, 1);
    rt_conv2d_forward_ref_d(o2, in, w, B, C, H, W, CO, 3, 1, 1);
    ck_assert_double_le(gc_normdiff(o1, o2, B * CO * H * W), 1e-12);
    rt_conv2d_backward_d(&ctx, di1, 0, dw1, o1, in, w, B, C, H, W, CO, 3, 1, 1);
    rt_conv2d_backward_ref_d(di2, 0, dw2, o1, in, w, B, C, H, W, CO, 3, 1, 1);
    ck_assert_double_le(gc_normdiff(di1, di2, B * C * H * W), 1e-12);
    ck_assert_double_le(gc_normdiff(dw1, dw2, CO * C * 9), 1e-12);
    openblas_set_num_threads(blas_threads);
    free(ctx.scratch);
}
END_TEST

/* The runtime's own loops (everything but BLAS) give the same bytes for 1
 * and 2 threads, on shapes big enough to run in parallel. */
START_TEST(test_thread_invariance)
{
    enum { B = 4, C = 16, HW = 1024, N = B * C * HW };
    float *x = tu_calloc(N, sizeof(float)), *y1 = tu_calloc(N, sizeof(float));
    float *y2 = tu_calloc(N, sizeof(float)), *d1 = tu_calloc(N, sizeof(float));
    float *d2 = tu_calloc(N, sizeof(float));
    float mean[C], rstd[C], gamma[C], beta[C], dg1[C] = {0}, db1[C] = {0}, dg2[C] = {0},
          db2[C] = {0}, dc1[2] = {0}, dc2[2] = {0}, c[2] = {0.5f, -2};
    RtRng rng;
    rt_rng_seed(&rng, 3);
    for (int i = 0; i < N; i++)
        x[i] = (float)rt_rng_normal(&rng);
    for (int i = 0; i < C; i++) {
        gamma[i] = 1 + 0.1f * (float)i;
        beta[i] = 0.01f * (float)i;
    }
    RtCtx c1 = {1, NULL, 0, NULL, NULL}, c2 = {2, NULL, 0, NULL, NULL};
    rt_bn_forward_train(&c1, y1, mean, rstd, NULL, NULL, x, gamma, beta, B, C, HW, 0.1, 1e-5);
    rt_bn_forward_train(&c2, y2, mean, rstd, NULL, NULL, x, gamma, beta, B, C, HW, 0.1, 1e-5);
    ck_assert_mem_eq(y1, y2, N * sizeof(float));
    rt_bn_backward(&c1, d1, 0, dg1, db1, y1, x, mean, rstd, gamma, B, C, HW);
    rt_bn_backward(&c2, d2, 0, dg2, db2, y1, x, mean, rstd, gamma, B, C, HW);
    ck_assert_mem_eq(d1, d2, N * sizeof(float));
    ck_assert_mem_eq(dg1, dg2, sizeof dg1);
    ck_assert_mem_eq(db1, db2, sizeof db1);
    const float *xs[2] = {x, y1};
    float *dxs[2] = {d1, NULL};
    int acc[2] = {0, 0};
    rt_sum_backward(&c1, dxs, acc, dc1, y2, xs, c, 2, N);
    dxs[0] = d2;
    rt_sum_backward(&c2, dxs, acc, dc2, y2, xs, c, 2, N);
    ck_assert_mem_eq(dc1, dc2, sizeof dc1);
    ck_assert_mem_eq(d1, d2, N * sizeof(float));
    free(x);
    free(y1);
    free(y2);
    free(d1);
    free(d2);
}
END_TEST

/* The fast paths of the kernels against their plain definitions:
 * - conv2d on shapes whose column matrix is split into several bands of
 *   output rows (a 64-channel 32x32 double image is over the band budget),
 *   stride 1 and 2, din accumulated, on 1 and 2 threads, against the _ref
 *   loops; the float kernel against the double reference;
 * - the branch-free relu and the two-input sum (acc 0 and 1, and the
 *   aliased case that must take the general loop), the three-input sum
 *   (output aliasing an input, no coefficients, dout aliased in backward);
 * - batch-norm statistics from shifted one-pass sums when the mean is large
 *   next to the spread (a plain sum of squares would cancel). */
/* The direct 3x3 float kernels (conv3x3.c) against the double plain loops:
 * forward, input gradient written (acc 0) and added to (acc 1), weight
 * gradient added to what is there; channel counts that leave partial
 * register blocks (1, 3), widths with vector tails (28, 7, 9, 5), 1 and 2
 * threads. On a machine without AVX2 the direct path is not taken and this
 * checks the im2col path instead; with AVX2 it also asserts that the path
 * is taken. */
START_TEST(test_conv_direct)
{
    static const int chan[][2] = {{1, 16}, {16, 16}, {16, 32}, {32, 32}, {3, 16}};
    static const int hw[][2] = {{32, 32}, {28, 28}, {7, 7}, {5, 9}};
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_DATA, 16, 16, 3, 1, 1), avx2);
    ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_WEIGHTS, 3, 16, 3, 1, 1), avx2);
    ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_DATA, 16, 16, 3, 2, 1), avx2);   /* stride-2 din direct too */
    ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_DATA, 16, 16, 1, 1, 0), 0);
    RtRng rng;
    rt_rng_seed(&rng, 33);
    for (int ci = 0; ci < 5; ci++)
        for (int si = 0; si < 4; si++)
            for (int B = 1; B <= 3; B += 2) {
                int C = chan[ci][0], Co = chan[ci][1], H = hw[si][0], W = hw[si][1];
                if (tu_sanitized() && H * W > 100 && C * Co > 256)
                    continue;       /* the double loops dominate under ASan */
                size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * H * W;
                size_t nw = (size_t)Co * C * 9;
                double *in = tu_calloc(ni, sizeof(double)), *w = tu_calloc(nw, sizeof(double));
                double *dout = tu_calloc(no, sizeof(double)), *out = tu_calloc(no, sizeof(double));
                double *din = tu_calloc(ni, sizeof(double)), *dw = tu_calloc(nw, sizeof(double));
                float *inf = tu_calloc(ni, sizeof(float)), *wf = tu_calloc(nw, sizeof(float));
                float *doutf = tu_calloc(no, sizeof(float)), *outf = tu_calloc(no, sizeof(float));
                float *dinf = tu_calloc(ni, sizeof(float)), *dwf = tu_calloc(nw, sizeof(float));
                gc_fill(in, ni, &rng);
                gc_fill(w, nw, &rng);
                gc_fill(dout, no, &rng);
                for (size_t i = 0; i < ni; i++)
                    inf[i] = (float)in[i];
                for (size_t i = 0; i < nw; i++)
                    wf[i] = (float)w[i];
                for (size_t i = 0; i < no; i++)
                    doutf[i] = (float)dout[i];
                /* oracle: din = 0.5 + conv^T (acc 1), dw = 0.25 + sum */
                rt_conv2d_forward_ref_d(out, in, w, B, C, H, W, Co, 3, 1, 1);
                for (size_t i = 0; i < ni; i++)
                    din[i] = 0.5;
                for (size_t i = 0; i < nw; i++)
                    dw[i] = 0.25;
                rt_conv2d_backward_ref_d(din, 1, dw, dout, in, w, B, C, H, W, Co, 3, 1, 1);
                for (int th = 1; th <= 2; th++) {
                    size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
                    RtCtx ctx = {th, tu_calloc(bytes, 1), bytes, NULL, NULL};
                    rt_conv2d_forward(&ctx, outf, inf, wf, B, C, H, W, Co, 3, 1, 1);
                    double e = gc_normdiff_f(outf, out, no);
                    ck_assert_msg(e < F32_TOL, "forward %d/%d %dx%d B%d t%d: %.3g",
                                  C, Co, H, W, B, th, e);
                    for (size_t i = 0; i < nw; i++)
                        dwf[i] = 0.25f;
                    for (int acc = 0; acc < 2; acc++) {
                        for (size_t i = 0; i < ni; i++)
                            dinf[i] = acc ? 0.5f : 1e30f;   /* acc 0 must overwrite */
                        rt_conv2d_backward(&ctx, dinf, acc, acc ? dwf : NULL, doutf, inf, wf,
                                           B, C, H, W, Co, 3, 1, 1);
                        if (!acc)
                            for (size_t i = 0; i < ni; i++)
                                dinf[i] += 0.5f;
                        e = gc_normdiff_f(dinf, din, ni);
                        ck_assert_msg(e < F32_TOL, "din acc %d %d/%d %dx%d B%d t%d: %.3g",
                                      acc, C, Co, H, W, B, th, e);
                    }
                    e = gc_normdiff_f(dwf, dw, nw);
                    ck_assert_msg(e < F32_TOL, "dw %d/%d %dx%d B%d t%d: %.3g",
                                  C, Co, H, W, B, th, e);
                    free(ctx.scratch);
                }
                free(in), free(w), free(dout), free(out), free(din), free(dw);
                free(inf), free(wf), free(doutf), free(outf), free(dinf), free(dwf);
            }
    openblas_set_num_threads(blas_threads);
}
END_TEST

START_TEST(test_fast_paths)
{
    enum { B = 2, CI = 64, H = 32, W = 32, CO = 3 };
    int shapes[2][2] = {{1, 1}, {2, 1}};    /* stride, pad */
    size_t nin = (size_t)B * CI * H * W;
    double *in = tu_calloc(nin, sizeof(double)), *w = tu_calloc(CO * CI * 9, sizeof(double));
    float *inf = tu_calloc(nin, sizeof(float)), *wf = tu_calloc(CO * CI * 9, sizeof(float));
    RtRng rng;
    rt_rng_seed(&rng, 21);
    gc_fill(in, nin, &rng);
    gc_fill(w, CO * CI * 9, &rng);
    for (size_t i = 0; i < nin; i++)
        inf[i] = (float)in[i];
    for (int i = 0; i < CO * CI * 9; i++)
        wf[i] = (float)w[i];
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    for (int sh = 0; sh < 2; sh++)
        for (int th = 1; th <= 2; th++) {
            int st = shapes[sh][0], pd = shapes[sh][1];
            int Ho = rt_conv_out(H, 3, st, pd), Wo = rt_conv_out(W, 3, st, pd);
            size_t nout = (size_t)B * CO * Ho * Wo;
            ck_assert_uint_lt(rt_conv2d_scratch_bytes(1, B, CI, H, W, 3, st, pd, 8),
                              (size_t)CI * 9 * Ho * Wo * 8);   /* really banded */
            size_t bytes = rt_conv2d_scratch_bytes(th, B, CI, H, W, 3, st, pd, sizeof(double));
            RtCtx ctx = {th, tu_calloc(bytes, 1), bytes, NULL, NULL};
            double *o1 = tu_calloc(nout, sizeof(double)), *o2 = tu_calloc(nout, sizeof(double));
            double *d1 = tu_calloc(nin, sizeof(double)), *d2 = tu_calloc(nin, sizeof(double));
            double *g1 = tu_calloc(CO * CI * 9, sizeof(double)), *g2 = tu_calloc(CO * CI * 9, sizeof(double));
            rt_conv2d_forward_d(&ctx, o1, in, w, B, CI, H, W, CO, 3, st, pd);
            rt_conv2d_forward_ref_d(o2, in, w, B, CI, H, W, CO, 3, st, pd);
            ck_assert_double_le(gc_normdiff(o1, o2, nout), 1e-12);
            for (size_t i = 0; i < nin; i++)
                d1[i] = d2[i] = 0.5;                       /* acc = 1 adds to this */
            rt_conv2d_backward_d(&ctx, d1, 1, g1, o1, in, w, B, CI, H, W, CO, 3, st, pd);
            rt_conv2d_backward_ref_d(d2, 1, g2, o1, in, w, B, CI, H, W, CO, 3, st, pd);
            ck_assert_double_le(gc_normdiff(d1, d2, nin), 1e-12);
            ck_assert_double_le(gc_normdiff(g1, g2, CO * CI * 9), 1e-12);
            /* float kernel, same bands in float */
            size_t fb = rt_conv2d_scratch_bytes(th, B, CI, H, W, 3, st, pd, sizeof(float));
            RtCtx cf = {th, tu_calloc(fb, 1), fb, NULL, NULL};
            float *of = tu_calloc(nout, sizeof(float)), *dinf = tu_calloc(nin, sizeof(float));
            float *gf = tu_calloc(CO * CI * 9, sizeof(float)), *doutf = tu_calloc(nout, sizeof(float));
            rt_conv2d_forward(&cf, of, inf, wf, B, CI, H, W, CO, 3, st, pd);
            ck_assert_double_le(gc_normdiff_f(of, o2, nout), F32_TOL);
            for (size_t i = 0; i < nout; i++)
                doutf[i] = (float)o1[i];
            for (int i = 0; i < CO * CI * 9; i++)
                g2[i] = 0;
            rt_conv2d_backward(&cf, dinf, 0, gf, doutf, inf, wf, B, CI, H, W, CO, 3, st, pd);
            rt_conv2d_backward_ref_d(d2, 0, g2, o1, in, w, B, CI, H, W, CO, 3, st, pd);
            ck_assert_double_le(gc_normdiff_f(dinf, d2, nin), F32_TOL);
            ck_assert_double_le(gc_normdiff_f(gf, g2, CO * CI * 9), F32_TOL);
            free(o1), free(o2), free(d1), free(d2), free(g1), free(g2), free(ctx.scratch);
            free(of), free(dinf), free(gf), free(doutf), free(cf.scratch);
        }
    openblas_set_num_threads(blas_threads);
    free(in), free(w), free(inf), free(wf);

    /* relu and the two-input sum, big enough to run on two threads */
    enum { N = 100003 };
    float *x = tu_calloc(N, sizeof(float)), *y = tu_calloc(N, sizeof(float));
    float *a = tu_calloc(N, sizeof(float)), *b = tu_calloc(N, sizeof(float));
    float *a0 = tu_calloc(N, sizeof(float)), *b0 = tu_calloc(N, sizeof(float));
    RtCtx c2 = {2, NULL, 0, NULL, NULL};
    for (int i = 0; i < N; i++) {
        x[i] = (float)rt_rng_normal(&rng);
        y[i] = (float)rt_rng_normal(&rng);
        a0[i] = (float)rt_rng_normal(&rng);
    }
    /* mismatches are counted, not asserted one by one: every ck_assert
     * writes to Check's pipe, and 10^5 of them take seconds */
    int bad = 0;
    rt_relu_forward(&c2, a, x, N, 0);
    for (int i = 0; i < N; i++)
        bad += a[i] != (x[i] > 0 ? x[i] : 0.0f);
    for (int acc = 0; acc < 2; acc++) {
        memcpy(b, a0, N * sizeof(float));
        rt_relu_backward(&c2, b, acc, y, a, N, 0);
        for (int i = 0; i < N; i++)
            bad += b[i] != (acc ? a0[i] : 0.0f) + (a[i] > 0 ? y[i] : 0.0f);
    }
    const float *xs[2] = {x, y};
    float cs[2] = {0.5f, -2};
    rt_sum_forward(&c2, a, 2, xs, cs, N);
    for (int i = 0; i < N; i++)
        bad += a[i] != (float)(0.5 * (double)x[i] - 2.0 * (double)y[i]);
    for (int acc = 0; acc < 2; acc++) {
        memcpy(a, a0, N * sizeof(float));
        memcpy(b, a0, N * sizeof(float));
        float *dxs[2] = {a, b};
        int accs[2] = {acc, 1 - acc};
        rt_sum_backward(&c2, dxs, accs, NULL, x, NULL, cs, 2, N);
        for (int i = 0; i < N; i++) {
            bad += a[i] != (acc ? a0[i] : 0.0f) + 0.5f * x[i];
            bad += b[i] != (acc ? 0.0f : a0[i]) + -2.0f * x[i];
        }
    }
    /* aliased: the same tensor twice (set, then add), and dout itself */
    memcpy(a, x, N * sizeof(float));
    {
        float *dxs[2] = {a, a};
        int accs[2] = {0, 1};
        rt_sum_backward(&c2, dxs, accs, NULL, a, NULL, cs, 2, N);
        for (int i = 0; i < N; i++)
            bad += a[i] != 0.5f * x[i] + -2.0f * x[i];
    }
    /* three inputs (heavy ball), the output aliasing one of them, and no
     * coefficients: (c0 x0 + c1 x1) + c2 x2 in double, rounded once */
    {
        float cs3[3] = {1.9f, -1.0f, -0.9f};
        memcpy(b, a0, N * sizeof(float));
        const float *xs3[3] = {x, y, b};
        rt_sum_forward(&c2, b, 3, xs3, cs3, N);
        for (int i = 0; i < N; i++)
            bad += b[i] != (float)((double)1.9f * (double)x[i] + -1.0 * (double)y[i]
                                   + (double)-0.9f * (double)a0[i]);
        rt_sum_forward(&c2, a, 3, xs3, NULL, N);
        for (int i = 0; i < N; i++)
            bad += a[i] != (float)((double)x[i] + (double)y[i] + (double)b[i]);
        /* backward: dout aliased by dxs[1], dxs[0] added to, dxs[2] NULL */
        memcpy(a, a0, N * sizeof(float));
        memcpy(b, x, N * sizeof(float));
        float *dxs3[3] = {a, b, NULL};
        int accs3[3] = {1, 0, 0};
        rt_sum_backward(&c2, dxs3, accs3, NULL, b, NULL, cs3, 3, N);
        for (int i = 0; i < N; i++) {
            bad += a[i] != a0[i] + 1.9f * x[i];
            bad += b[i] != -1.0f * x[i];
        }
    }
    ck_assert_int_eq(bad, 0);

    /* BN statistics with mean 1000 and spread 1 */
    enum { BB = 4, C = 3, HW = 257 };
    float bx[BB * C * HW], by[BB * C * HW], mean[C], rstd[C];
    float gamma[C] = {1, 1, 1}, beta[C] = {0, 0, 0};
    for (int i = 0; i < BB * C * HW; i++)
        bx[i] = 1000.0f + (float)rt_rng_normal(&rng);
    rt_bn_forward_train(&c2, by, mean, rstd, NULL, NULL, bx, gamma, beta, BB, C, HW, 0.1, 1e-5);
    for (int c = 0; c < C; c++) {
        double s = 0, v = 0;
        for (int bi = 0; bi < BB; bi++)
            for (int i = 0; i < HW; i++)
                s += (double)bx[(bi * C + c) * HW + i];
        s /= BB * HW;
        for (int bi = 0; bi < BB; bi++)
            for (int i = 0; i < HW; i++) {
                double d = (double)bx[(bi * C + c) * HW + i] - s;
                v += d * d;
            }
        v /= BB * HW;
        ck_assert_double_eq_tol(mean[c], s, 1e-3);
        ck_assert_double_eq_tol(rstd[c], 1 / sqrt(v + 1e-5), 1e-5);
    }
    free(x), free(y), free(a), free(b), free(a0), free(b0);
}
END_TEST

/* Branch records (rt.h, RtBranch): a recording relu stores each element's
 * piece; a replaying one takes the stored piece whatever its input says (the
 * identity extended to negative inputs, zero for positive ones), counts the
 * elements that crossed and the closest one; the backward follows the
 * record; exact's relu the same. Sites put each call at its own offset. */
START_TEST(test_branch_record)
{
    enum { N = 1000, SITE = 8, Bx = 2, D = 3, M = 4 };
    RtRng rng;
    rt_rng_seed(&rng, 11);
    double *x = tu_calloc(N, sizeof(double)), *y = tu_calloc(N, sizeof(double));
    double *o = tu_calloc(N, sizeof(double)), *g = tu_calloc(N, sizeof(double));
    float *xf = tu_calloc(N, sizeof(float)), *of = tu_calloc(N, sizeof(float));
    float *gf = tu_calloc(N, sizeof(float));
    uint8_t *mask = tu_calloc(N + SITE, 1);
    RtBranch br = {.replay = 0, .mask = mask, .cap = N + SITE};
    RtCtx c = {1, NULL, 0, &br, NULL};
    gc_fill(x, N, &rng);
    double amin = INFINITY;
    for (int i = 0; i < N; i++) {
        y[i] = -x[i];
        xf[i] = (float)x[i];
        amin = fmin(amin, fabs(x[i]));
    }
    int bad = 0;
    rt_branch_reset(&br);
    rt_relu_forward_d(&c, o, x, N, SITE);
    for (int i = 0; i < N; i++)
        bad += mask[SITE + i] != (x[i] > 0) || o[i] != (x[i] > 0 ? x[i] : 0);
    ck_assert_int_eq(bad, 0);
    ck_assert_uint_eq(br.seen, N);
    ck_assert_uint_eq(br.crossed, 0);
    ck_assert_double_eq(br.near_min, amin);

    br.replay = 1;
    rt_branch_reset(&br);
    rt_relu_forward_d(&c, o, y, N, SITE);
    size_t nz = 0;
    for (int i = 0; i < N; i++) {
        nz += x[i] != 0;
        bad += o[i] != (x[i] > 0 ? y[i] : 0);
    }
    ck_assert_int_eq(bad, 0);
    ck_assert_uint_eq(br.crossed, nz);
    ck_assert_double_eq(br.cross_min, amin);
    for (int acc = 0; acc < 2; acc++) {
        for (int i = 0; i < N; i++)
            g[i] = gf[i] = 1;
        rt_relu_backward_d(&c, g, acc, x, o, N, SITE);
        rt_relu_backward(&c, gf, acc, xf, of, N, SITE);
        for (int i = 0; i < N; i++) {
            bad += g[i] != acc + (x[i] > 0 ? x[i] : 0);
            bad += gf[i] != (float)acc + (x[i] > 0 ? xf[i] : 0.0f);
        }
    }
    ck_assert_int_eq(bad, 0);
    /* the float kernel replays the same record */
    rt_branch_reset(&br);
    for (int i = 0; i < N; i++)
        xf[i] = (float)y[i];
    rt_relu_forward(&c, of, xf, N, SITE);
    for (int i = 0; i < N; i++)
        bad += of[i] != (x[i] > 0 ? xf[i] : 0.0f);
    ck_assert_int_eq(bad, 0);
    ck_assert_uint_eq(br.crossed, nz);

    /* exact: record at in, replay at -in (every a flips sign) */
    double in[Bx * D], nin[Bx * D], U[D * M], a[Bx * M], a2[Bx * M], out[Bx * D];
    double dout[Bx * D], din[Bx * D], dU[D * M];
    gc_fill(in, Bx * D, &rng);
    gc_fill(U, D * M, &rng);
    gc_fill(dout, Bx * D, &rng);
    for (int i = 0; i < Bx * D; i++)
        nin[i] = -in[i];
    br.replay = 0;
    rt_branch_reset(&br);
    rt_exact_forward_d(&c, out, a, in, U, Bx, D, M, RT_ACT_RELU, 0.0, SITE);
    for (int i = 0; i < Bx * M; i++)
        bad += mask[SITE + i] != (a[i] > 0);
    br.replay = 1;
    rt_branch_reset(&br);
    rt_exact_forward_d(&c, out, a2, nin, U, Bx, D, M, RT_ACT_RELU, 0.0, SITE);
    ck_assert_uint_eq(br.seen, Bx * M);
    ck_assert_uint_eq(br.crossed, Bx * M);
    for (int b = 0; b < Bx; b++)
        for (int j = 0; j < D; j++) {
            double v = nin[b * D + j];
            for (int k = 0; k < M; k++)
                v -= (mask[SITE + b * M + k] ? a2[b * M + k] : 0) * U[j * M + k];
            bad += fabs(out[b * D + j] - v) > 1e-12;
        }
    /* backward: da = -(dout U) on the recorded pieces */
    memset(dU, 0, sizeof dU);
    rt_exact_backward_d(&c, din, 0, dU, dout, nin, a2, U, Bx, D, M, RT_ACT_RELU, 0.0,
                        SITE);
    for (int b = 0; b < Bx; b++)
        for (int j = 0; j < D; j++) {
            double v = dout[b * D + j];
            for (int k = 0; k < M; k++) {
                double da = 0;
                for (int jj = 0; jj < D; jj++)
                    da -= dout[b * D + jj] * U[jj * M + k];
                v += (mask[SITE + b * M + k] ? da : 0) * U[j * M + k];
            }
            bad += fabs(din[b * D + j] - v) > 1e-12;
        }
    ck_assert_int_eq(bad, 0);
    free(x), free(y), free(o), free(g), free(xf), free(of), free(gf), free(mask);
}
END_TEST

static Suite *kernels_suite(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_op, 0, NOPS);
    suite_add_tcase(s, tc);
    TCase *sem = tcase_create("semantics");
    tcase_set_timeout(sem, 60);   /* a loaded machine, not a slow test */
    tcase_add_test(sem, test_bn_running_stats);
    tcase_add_test(sem, test_dropout_stats);
    tcase_add_test(sem, test_xent_stable);
    tcase_add_test(sem, test_rng);
    tcase_add_test(sem, test_conv_scratch);
    tcase_add_test(sem, test_thread_invariance);
    tcase_add_test(sem, test_branch_record);
    suite_add_tcase(s, sem);
    TCase *fast = tcase_create("fast");
    tcase_set_timeout(fast, 120);
    tcase_add_test(fast, test_fast_paths);
    tcase_add_test(fast, test_conv_direct);
    suite_add_tcase(s, fast);
    return s;
}

TEST_MAIN(kernels_suite)
