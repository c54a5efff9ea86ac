/* test_act.c — the activations of runtime/act.def, one loop test per
 * activation and check:
 *  (a) the double forward against a plain-loop reference written here from
 *      the textbook formula (libm in double), tolerance REF_TOL;
 *  (b) the double backward against central differences of L = <phi(x), R>
 *      (h = FD_H relative to max(1, |x|)), tolerance FD_TOL per entry;
 *      random inputs are kept KINK_GAP away from 0, and an activation with
 *      a kink (relu, leaky_relu, elu) is also checked at inputs within 1e-9
 *      of it, its pieces frozen by a branch record (rt.h RtBranch: recorded
 *      at x, replayed at x +- h; the replay must see crossings);
 *  (c) float forward and backward against double, normwise, F32_TOL;
 *  (d) acc == 1 adds, acc == 0 overwrites, a NULL din is skipped;
 *  (e) Psi (the theory block's objective) has Psi(0) = 0 and Psi' = phi
 *      (central differences, PSI_TOL);
 *  (f) the exact block with that phi: din and dU against central
 *      differences, float against double.
 * Every activation of act.def must have a reference in actref.h: one without
 * fails (a) instead of passing unchecked. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "actref.h"
#include "gradcheck.h"
#include "rt.h"
#include "tmain.h"

#define REF_TOL 1e-12
#define FD_TOL 1e-6
#define FD_H 1e-6
#define F32_TOL 1e-5
#define PSI_TOL 1e-7
#define KINK_GAP 1e-2
#define N 1031                  /* odd, not a multiple of any vector width */

typedef struct {
    const char *name;
    int act;
    double a;                   /* the argument used (not always the default) */
    int generic;                /* kernels written by act.inc (relu's are not) */
    int kink;                   /* two pieces at 0 */
} Act;

static const Act acts[] = {
#define ACT(name, NAME, arg, def, k, kink) { #name, RT_ACT_##NAME, (arg)[0] ? 0.5 * (def) + 0.05 : 0.0, k, kink },
#include "act.def"
#undef ACT
};
#define NACTS ((int)(sizeof acts / sizeof acts[0]))

static void fill(double *x, size_t n, uint64_t seed, double scale)
{
    RtRng r;
    rt_rng_seed(&r, seed);
    gc_fill(x, n, &r);
    for (size_t i = 0; i < n; i++) {
        x[i] = (double)(float)(scale * x[i]);
        if (fabs(x[i]) < KINK_GAP)
            x[i] = x[i] < 0 ? -0.25 : 0.25;
    }
}

static void fwd_d(const Act *A, const RtCtx *c, double *out, const double *in, size_t n)
{
    if (A->generic) {
#define ACT(name, NAME, arg, def, k, kink) \
        if (A->act == RT_ACT_##NAME && k) { FWD_##k(name, _d, out, in, n, A->a); return; }
#define FWD_1(name, S, o, i, n, a) rt_##name##_forward##S(c, o, i, n, a, 0)
#define FWD_0(name, S, o, i, n, a) (void)0
#include "act.def"
#undef ACT
    }
    rt_relu_forward_d(c, out, in, n, 0);
}

static void fwd_f(const Act *A, const RtCtx *c, float *out, const float *in, size_t n)
{
    if (A->generic) {
#define ACT(name, NAME, arg, def, k, kink) \
        if (A->act == RT_ACT_##NAME && k) { FWD_##k(name, , out, in, n, A->a); return; }
#include "act.def"
#undef ACT
    }
    rt_relu_forward(c, out, in, n, 0);
}

/* relu's backward reads the output: y is phi(x) there. */
static void bwd_d(const Act *A, const RtCtx *c, double *din, int acc, const double *dout, const double *x,
                  const double *y, size_t n)
{
    if (A->generic) {
#define ACT(name, NAME, arg, def, k, kink) \
        if (A->act == RT_ACT_##NAME && k) { BWD_##k(name, _d, din, acc, dout, x, n, A->a); return; }
#define BWD_1(name, S, di, ac, d, x, n, a) rt_##name##_backward##S(c, di, ac, d, x, n, a, 0)
#define BWD_0(name, S, di, ac, d, x, n, a) (void)0
#include "act.def"
#undef ACT
    }
    rt_relu_backward_d(c, din, acc, dout, y, n, 0);
}

static void bwd_f(const Act *A, const RtCtx *c, float *din, int acc, const float *dout, const float *x,
                  const float *y, size_t n)
{
    if (A->generic) {
#define ACT(name, NAME, arg, def, k, kink) \
        if (A->act == RT_ACT_##NAME && k) { BWD_##k(name, , din, acc, dout, x, n, A->a); return; }
#include "act.def"
#undef ACT
    }
    rt_relu_backward(c, din, acc, dout, y, n, 0);
}

/* (a) */
START_TEST(forward_matches_reference)
{
    const Act *A = &acts[_i];
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    fill(x, N, 11 + (uint64_t)_i, 3.0);
    x[0] = 40;      /* far tails: no overflow, no NaN */
    x[1] = -40;
    fwd_d(A, NULL, y, x, N);
    double worst = 0;
    for (size_t i = 0; i < N; i++) {
        double r = actref_phi(A->name, x[i], A->a);
        ck_assert_msg(!isnan(r), "%s has no reference in test_act.c", A->name);
        worst = fmax(worst, fabs(y[i] - r) / fmax(1.0, fabs(r)));
    }
    ck_assert_msg(worst <= REF_TOL, "%s: forward off the reference by %g", A->name, worst);
    free(x);
    free(y);
}
END_TEST

typedef struct { const Act *A; const RtCtx *c; const double *x; size_t n; } FdState;
static void fd_fwd(void *st, double *out)
{
    FdState *s = st;
    fwd_d(s->A, s->c, out, s->x, s->n);
}

/* (b) */
START_TEST(backward_matches_differences)
{
    const Act *A = &acts[_i];
    const size_t n = 257;
    double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *R = malloc(n * sizeof *R);
    double *dx = malloc(n * sizeof *dx), *op = malloc(n * sizeof *op), *om = malloc(n * sizeof *om);
    fill(x, n, 21 + (uint64_t)_i, 2.0);
    fill(R, n, 31 + (uint64_t)_i, 1.0);
    uint8_t *mask = calloc(n, 1);
    RtBranch br = { .replay = 0, .mask = mask, .cap = n };
    RtCtx ctx = { 1, NULL, 0, &br };
    const RtCtx *c = NULL;
    if (A->kink) {      /* right at the kink: only a frozen branch passes */
        x[0] = 1e-9;
        x[1] = -1e-9;
        c = &ctx;
    }
    fwd_d(A, c, y, x, n);   /* records the pieces */
    br.replay = 1;
    rt_branch_reset(&br);
    bwd_d(A, c, dx, 0, R, x, y, n);
    FdState s = { A, c, x, n };
    double floor = 1e-3 * gc_maxabs(dx, n), worst = 0;
    for (size_t i = 0; i < n; i++) {
        double num = gc_central(fd_fwd, &s, x, i, FD_H, R, n, op, om);
        worst = fmax(worst, gc_relerr(dx[i], num, floor));
    }
    ck_assert_msg(worst <= FD_TOL, "%s: backward off central differences by %g", A->name, worst);
    if (A->kink)
        ck_assert_msg(br.crossed > 0, "%s: the differences never crossed the kink", A->name);
    free(x); free(y); free(R); free(dx); free(op); free(om); free(mask);
}
END_TEST

/* (c) and (d) */
START_TEST(float_matches_double_and_acc)
{
    const Act *A = &acts[_i];
    double *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *g = malloc(N * sizeof *g);
    double *dx = malloc(N * sizeof *dx), *dx2 = malloc(N * sizeof *dx2);
    float *xf = malloc(N * sizeof *xf), *yf = malloc(N * sizeof *yf), *gf = malloc(N * sizeof *gf);
    float *dxf = malloc(N * sizeof *dxf);
    fill(x, N, 41 + (uint64_t)_i, 3.0);
    fill(g, N, 51 + (uint64_t)_i, 1.0);
    gc_to_float(xf, x, N);
    gc_to_float(gf, g, N);
    fwd_d(A, NULL, y, x, N);
    fwd_f(A, NULL, yf, xf, N);
    ck_assert_msg(gc_normdiff_f(yf, y, N) <= F32_TOL, "%s: float forward off by %g", A->name,
                  gc_normdiff_f(yf, y, N));
    bwd_d(A, NULL, dx, 0, g, x, y, N);
    bwd_f(A, NULL, dxf, 0, gf, xf, yf, N);
    ck_assert_msg(gc_normdiff_f(dxf, dx, N) <= F32_TOL, "%s: float backward off by %g",
                  A->name, gc_normdiff_f(dxf, dx, N));
    for (size_t i = 0; i < N; i++)
        dx2[i] = 1.0;
    bwd_d(A, NULL, dx2, 1, g, x, y, N);
    for (size_t i = 0; i < N; i++)
        ck_assert_double_eq_tol(dx2[i], 1.0 + dx[i], 1e-12);
    bwd_d(A, NULL, NULL, 0, g, x, y, N);    /* must not crash or write */
    free(x); free(y); free(g); free(dx); free(dx2); free(xf); free(yf); free(gf); free(dxf);
}
END_TEST

/* (e) */
START_TEST(psi_is_the_antiderivative)
{
    const Act *A = &acts[_i];
    ck_assert_double_eq_tol(rt_act_psi_d(A->act, A->a, 0.0), 0.0, 1e-15);
    for (double t = -4.05; t < 4.1; t += 0.3) {
        double h = 1e-5;
        double num = (rt_act_psi_d(A->act, A->a, t + h) - rt_act_psi_d(A->act, A->a, t - h)) / (2 * h);
        double phi = rt_act_phi_d(A->act, A->a, t, NULL);
        ck_assert_msg(fabs(num - phi) <= PSI_TOL * fmax(1.0, fabs(phi)),
                      "%s: Psi'(%g) = %.12g, phi = %.12g", A->name, t, num, phi);
    }
}
END_TEST

typedef struct { const Act *A; const RtCtx *c; double *x, *U, *a; int B, d, m; } ExState;
static void ex_fwd(void *st, double *out)
{
    ExState *s = st;
    rt_exact_forward_d(s->c, out, s->a, s->x, s->U, s->B, s->d, s->m, s->A->act, s->A->a, 0);
}

/* (f) */
START_TEST(exact_block_gradients)
{
    const Act *A = &acts[_i];
    const int B = 3, d = 7, m = 5;
    size_t nx = (size_t)B * d, nu = (size_t)d * m, na = (size_t)B * m;
    double *x = malloc(nx * sizeof *x), *U = malloc(nu * sizeof *U), *a = malloc(na * sizeof *a);
    double *R = malloc(nx * sizeof *R), *y = malloc(nx * sizeof *y), *dx = malloc(nx * sizeof *dx);
    double *dU = calloc(nu, sizeof *dU), *op = malloc(nx * sizeof *op), *om = malloc(nx * sizeof *om);
    fill(x, nx, 61 + (uint64_t)_i, 1.0);
    fill(U, nu, 71 + (uint64_t)_i, 0.5);
    fill(R, nx, 81 + (uint64_t)_i, 1.0);
    /* A kinked phi: the pieces of a = x U frozen (recorded here, replayed
     * by every difference). */
    uint8_t *mask = calloc(na, 1);
    RtBranch br = { .replay = 0, .mask = mask, .cap = na };
    RtCtx ctx = { 1, NULL, 0, &br };
    ExState s = { A, A->kink ? &ctx : NULL, x, U, a, B, d, m };
    ex_fwd(&s, y);
    br.replay = 1;
    for (size_t i = 0; i < na && !A->kink; i++)     /* smooth: no kink to avoid */
        ck_assert(isfinite(a[i]));
    rt_exact_backward_d(s.c, dx, 0, dU, R, x, a, U, B, d, m, A->act, A->a, 0);
    double fx = 1e-3 * gc_maxabs(dx, nx), fu = 1e-3 * gc_maxabs(dU, nu), worst = 0;
    for (size_t i = 0; i < nx; i++)
        worst = fmax(worst, gc_relerr(dx[i], gc_central(ex_fwd, &s, x, i, FD_H, R, nx, op, om), fx));
    for (size_t i = 0; i < nu; i++)
        worst = fmax(worst, gc_relerr(dU[i], gc_central(ex_fwd, &s, U, i, FD_H, R, nx, op, om), fu));
    ck_assert_msg(worst <= FD_TOL, "exact(%s): gradients off central differences by %g", A->name,
                  worst);

    float *xf = malloc(nx * sizeof *xf), *Uf = malloc(nu * sizeof *Uf), *af = malloc(na * sizeof *af);
    float *Rf = malloc(nx * sizeof *Rf), *yf = malloc(nx * sizeof *yf), *dxf = malloc(nx * sizeof *dxf);
    float *dUf = calloc(nu, sizeof *dUf);
    gc_to_float(xf, x, nx);
    gc_to_float(Uf, U, nu);
    gc_to_float(Rf, R, nx);
    s.c = NULL;
    ex_fwd(&s, y);
    rt_exact_backward_d(NULL, dx, 0, memset(dU, 0, nu * sizeof *dU), R, x, a, U, B, d, m, A->act,
                        A->a, 0);
    rt_exact_forward(NULL, yf, af, xf, Uf, B, d, m, A->act, A->a, 0);
    rt_exact_backward(NULL, dxf, 0, dUf, Rf, xf, af, Uf, B, d, m, A->act, A->a, 0);
    ck_assert_double_le(gc_normdiff_f(yf, y, nx), F32_TOL);
    ck_assert_double_le(gc_normdiff_f(dxf, dx, nx), F32_TOL);
    ck_assert_double_le(gc_normdiff_f(dUf, dU, nu), F32_TOL);
    free(x); free(U); free(a); free(R); free(y); free(dx); free(dU); free(op); free(om);
    free(mask); free(xf); free(Uf); free(af); free(Rf); free(yf); free(dxf); free(dUf);
}
END_TEST

static Suite *act_suite(void)
{
    Suite *s = suite_create("act");
    TCase *t = tcase_create("act");
    tcase_add_loop_test(t, forward_matches_reference, 0, NACTS);
    tcase_add_loop_test(t, backward_matches_differences, 0, NACTS);
    tcase_add_loop_test(t, float_matches_double_and_acc, 0, NACTS);
    tcase_add_loop_test(t, psi_is_the_antiderivative, 0, NACTS);
    tcase_add_loop_test(t, exact_block_gradients, 0, NACTS);
    suite_add_tcase(s, t);
    return s;
}

TEST_MAIN(act_suite)
