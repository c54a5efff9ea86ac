/* test_fuse.c — the fused BN + relu kernels (rt_bn_relu_*) against the pair
 * they replace, rt_bn_* then rt_relu_* (their strided forms and the
 * recompute against the plain ones, the cached forward against the strided
 * one, and the concat slices against the
 * whole concat: the kernels of a shared dense stage): forward in training
 * and evaluation mode, backward with acc 0 and 1, in float and double, on one thread and
 * on two (a size above the kernels' parallel threshold), and with a branch
 * record (recording, then replaying at another input: the same pieces, the
 * same counts, the same outputs and gradients as the pair's; the nearest
 * distances to the kink within the tolerance). Tolerance:
 * 1e-12 relative in double, 1e-6 in float (the fused kernels round like the
 * pair, so the differences are those of reduction order). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "conv3x3.h"
#include "rt.h"
#include "testutil.h"
#include "tmain.h"

/* Largest |a - b| / max(1, |b|) over n elements. */
#define FU_ERR(T)                                                        \
    static double fu_err_##T(const T *a, const T *b, size_t n)           \
    {                                                                    \
        double m = 0;                                                    \
        for (size_t i = 0; i < n; i++) {                                 \
            double d = fabs((double)a[i] - (double)b[i]) /               \
                       fmax(1.0, fabs((double)b[i]));                    \
            if (!(d <= m))                                               \
                m = d;                                                   \
        }                                                                \
        return m;                                                        \
    }
FU_ERR(float)
FU_ERR(double)

/* One comparison of fused against pair, element type T, kernel suffix S.
 * threads: the contexts' thread count; branch: with a record (recorded at
 * x, replayed at x2 = a perturbed x, the pair and the fused kernels each
 * on their own record at site SITE). */
#define FU_CASE(T, S)                                                                           \
    static void fu_case_##T(int B, int C, int HW, int threads, int branch, double tol)        \
    {                                                                                           \
        enum { SITE = 8 };                                                                      \
        size_t n = (size_t)B * C * HW;                                                          \
        RtRng rng;                                                                              \
        rt_rng_seed(&rng, 1234 + (uint64_t)n + (uint64_t)branch);                              \
        T *x = tu_calloc(n, sizeof(T)), *x2 = tu_calloc(n, sizeof(T));                              \
        T *dout = tu_calloc(n, sizeof(T)), *y = tu_calloc(n, sizeof(T));                            \
        T *r_bn = tu_calloc(n, sizeof(T)), *r_out = tu_calloc(n, sizeof(T));                        \
        T *f_out = tu_calloc(n, sizeof(T)), *r_g = tu_calloc(n, sizeof(T));                         \
        T *r_din = tu_calloc(n, sizeof(T)), *f_din = tu_calloc(n, sizeof(T));                       \
        T *gamma = tu_calloc((size_t)C, sizeof(T)), *beta = tu_calloc((size_t)C, sizeof(T));        \
        T *r_st = tu_calloc(4 * (size_t)C, sizeof(T)), *f_st = tu_calloc(4 * (size_t)C, sizeof(T)); \
        T *r_dp = tu_calloc(2 * (size_t)C, sizeof(T)), *f_dp = tu_calloc(2 * (size_t)C, sizeof(T)); \
        for (size_t i = 0; i < n; i++) {                                                        \
            /* an offset per channel, so both pieces are well populated */                     \
            x[i] = (T)(rt_rng_normal(&rng) + 0.3 * (double)((i / (size_t)HW) % 3) - 0.3);       \
            x2[i] = (T)((double)x[i] + 0.5 * rt_rng_normal(&rng));                              \
            dout[i] = (T)rt_rng_normal(&rng);                                                   \
            y[i] = (T)rt_rng_normal(&rng);                                                      \
        }                                                                                       \
        for (int c = 0; c < C; c++) {                                                           \
            gamma[c] = (T)(0.5 + rt_rng_uniform(&rng));                                         \
            beta[c] = (T)(rt_rng_uniform(&rng) - 0.5);                                          \
            r_st[2 * C + c] = f_st[2 * C + c] = (T)(0.1 * c);       /* running mean */         \
            r_st[3 * C + c] = f_st[3 * C + c] = (T)(1.0 + 0.2 * c); /* running var */          \
            r_dp[c] = f_dp[c] = (T)0.25;                                                        \
            r_dp[C + c] = f_dp[C + c] = (T)-0.5;                                                \
        }                                                                                       \
        uint8_t *rm = tu_calloc(n + SITE, 1), *fm = tu_calloc(n + SITE, 1);                         \
        RtBranch rb = {.replay = 0, .mask = rm, .cap = n + SITE};                               \
        RtBranch fb = {.replay = 0, .mask = fm, .cap = n + SITE};                               \
        rt_branch_reset(&rb);                                                                   \
        rt_branch_reset(&fb);                                                                   \
        RtCtx rc = {threads, NULL, 0, branch ? &rb : NULL, NULL};                                   \
        RtCtx fc = {threads, NULL, 0, branch ? &fb : NULL, NULL};                                   \
        size_t site = branch ? SITE : 0;                                                        \
        T *r_mean = r_st, *r_rstd = r_st + C, *f_mean = f_st, *f_rstd = f_st + C;               \
        /* training forward (recording when branch) */                                         \
        rt_bn_forward_train##S(&rc, r_bn, r_mean, r_rstd, r_st + 2 * C, r_st + 3 * C, x,        \
                               gamma, beta, B, C, HW, 0.1, 1e-5);                               \
        rt_relu_forward##S(&rc, r_out, r_bn, n, site);                                          \
        rt_bn_relu_forward_train##S(&fc, f_out, f_mean, f_rstd, f_st + 2 * C, f_st + 3 * C, x,  \
                                    gamma, beta, B, C, HW, 0.1, 1e-5, site);                    \
        ck_assert_double_le(fu_err_##T(f_out, r_out, n), tol);                                  \
        ck_assert_double_le(fu_err_##T(f_st, r_st, 4 * (size_t)C), tol);                        \
        if (branch) {                                                                           \
            ck_assert_int_eq(memcmp(rm, fm, n + SITE), 0);                                      \
            ck_assert_uint_eq(fb.seen, n);                                                      \
            ck_assert_uint_eq(rb.seen, n);                                                      \
            ck_assert_double_le(fabs(fb.near_min - rb.near_min), tol * fmax(1, rb.near_min));   \
            /* replay at x2: the pieces of x, the crossings counted alike */                   \
            rb.replay = fb.replay = 1;                                                          \
            rt_branch_reset(&rb);                                                               \
            rt_branch_reset(&fb);                                                               \
            rt_bn_forward_train##S(&rc, r_bn, r_mean, r_rstd, NULL, NULL, x2, gamma, beta,      \
                                   B, C, HW, 0.1, 1e-5);                                        \
            rt_relu_forward##S(&rc, r_out, r_bn, n, site);                                      \
            rt_bn_relu_forward_train##S(&fc, f_out, f_mean, f_rstd, NULL, NULL, x2, gamma,      \
                                        beta, B, C, HW, 0.1, 1e-5, site);                       \
            ck_assert_double_le(fu_err_##T(f_out, r_out, n), tol);                              \
            ck_assert_uint_gt(rb.crossed, 0);                                                   \
            ck_assert_uint_eq(fb.crossed, rb.crossed);                                          \
            ck_assert_double_le(fabs(fb.cross_min - rb.cross_min), tol * fmax(1, rb.cross_min)); \
            /* the replayed output keeps negative values where the record says 1 */            \
            size_t neg = 0;                                                                     \
            for (size_t i = 0; i < n; i++)                                                      \
                neg += f_out[i] < 0;                                                            \
            ck_assert_uint_gt(neg, 0);                                                          \
            ck_assert_int_eq(memcmp(rm, fm, n + SITE), 0);                                      \
        }                                                                                       \
        /* backward, acc 0 then 1 (onto the same starting values) */                           \
        const T *xin = branch ? x2 : x;                                                         \
        for (int acc = 0; acc < 2; acc++) {                                                     \
            memcpy(r_din, y, n * sizeof(T));                                                    \
            memcpy(f_din, y, n * sizeof(T));                                                    \
            rt_relu_backward##S(&rc, r_g, 0, dout, r_out, n, site);                             \
            rt_bn_backward##S(&rc, r_din, acc, r_dp, r_dp + C, r_g, xin, r_mean, r_rstd,        \
                              gamma, B, C, HW);                                                 \
            rt_bn_relu_backward##S(&fc, f_din, acc, f_dp, f_dp + C, dout, f_out, xin, f_mean,   \
                                   f_rstd, gamma, beta, B, C, HW, site);                        \
            ck_assert_double_le(fu_err_##T(f_din, r_din, n), tol);                              \
            ck_assert_double_le(fu_err_##T(f_dp, r_dp, 2 * (size_t)C), tol);                    \
        }                                                                                       \
        /* no input gradient wanted: only the parameter gradients */                           \
        rt_bn_relu_backward##S(&fc, NULL, 0, f_dp, f_dp + C, dout, f_out, xin, f_mean, f_rstd,  \
                               gamma, beta, B, C, HW, site);                                    \
        rt_bn_backward##S(&rc, NULL, 0, r_dp, r_dp + C, r_g, xin, r_mean, r_rstd, gamma, B, C,  \
                          HW);                                                                  \
        ck_assert_double_le(fu_err_##T(f_dp, r_dp, 2 * (size_t)C), tol);                        \
        /* evaluation forward with the running statistics */                                   \
        rb.replay = fb.replay = 1;                                                              \
        rt_bn_forward_eval##S(&rc, r_bn, x, gamma, beta, r_st + 2 * C, r_st + 3 * C, B, C, HW,  \
                              1e-5);                                                            \
        rt_relu_forward##S(&rc, r_out, r_bn, n, site);                                          \
        rt_bn_relu_forward_eval##S(&fc, f_out, x, gamma, beta, f_st + 2 * C, f_st + 3 * C, B,   \
                                   C, HW, 1e-5, site);                                          \
        ck_assert_double_le(fu_err_##T(f_out, r_out, n), tol);                                  \
        if (branch)                                                                             \
            ck_assert_uint_eq(fb.crossed, rb.crossed);                                          \
        free(x); free(x2); free(dout); free(y); free(r_bn); free(r_out); free(f_out);           \
        free(r_g); free(r_din); free(f_din); free(gamma); free(beta); free(r_st); free(f_st);   \
        free(r_dp); free(f_dp); free(rm); free(fm);                                             \
    }
FU_CASE(double, _d)
FU_CASE(float, )

/* The strided forms on a channel prefix of a wider tensor X[B][CX][HW]
 * against the plain ones on a copy of that prefix: the same numbers (the
 * same arithmetic in the same order; the backward's relu mask read from
 * the forward's output in one, recomputed from x in the other), and din's
 * channels past the prefix untouched. Then rt_bn_relu_recompute against the training forward's
 * output: equal in double (the saved mean and rstd are the forward's), to
 * rounding in float, and with a branch record the record's pieces (a
 * replayed forward's negative values come back). */
#define FU_STRIDED(T, S)                                                                        \
    static void fu_strided_##T(int B, int C, int CX, int HW, int threads, double tol)          \
    {                                                                                           \
        enum { SITE = 4 };                                                                      \
        size_t n = (size_t)B * C * HW, nx = (size_t)B * CX * HW, xs = (size_t)CX * HW;        \
        RtRng rng;                                                                              \
        rt_rng_seed(&rng, 99 + (uint64_t)nx);                                                   \
        T *X = tu_calloc(nx, sizeof(T)), *x = tu_calloc(n, sizeof(T));                          \
        T *DX = tu_calloc(nx, sizeof(T)), *dx = tu_calloc(n, sizeof(T));                        \
        T *DX0 = tu_calloc(nx, sizeof(T)), *dout = tu_calloc(n, sizeof(T));                     \
        T *o1 = tu_calloc(n, sizeof(T)), *o2 = tu_calloc(n, sizeof(T));                         \
        T *gamma = tu_calloc((size_t)C, sizeof(T)), *beta = tu_calloc((size_t)C, sizeof(T));    \
        T *st1 = tu_calloc(4 * (size_t)C, sizeof(T)), *st2 = tu_calloc(4 * (size_t)C, sizeof(T)); \
        T *dp1 = tu_calloc(2 * (size_t)C, sizeof(T)), *dp2 = tu_calloc(2 * (size_t)C, sizeof(T)); \
        for (size_t i = 0; i < nx; i++) {                                                       \
            X[i] = (T)(rt_rng_normal(&rng) + 0.2 * (double)((i / (size_t)HW) % 3) - 0.2);       \
            DX0[i] = (T)rt_rng_normal(&rng);                                                    \
        }                                                                                       \
        for (int b = 0; b < B; b++)                                                             \
            memcpy(x + (size_t)b * C * HW, X + (size_t)b * xs, (size_t)C * HW * sizeof(T));     \
        for (size_t i = 0; i < n; i++)                                                          \
            dout[i] = (T)rt_rng_normal(&rng);                                                   \
        for (int c = 0; c < C; c++) {                                                           \
            gamma[c] = (T)(0.5 + rt_rng_uniform(&rng));                                         \
            beta[c] = (T)(rt_rng_uniform(&rng) - 0.5);                                          \
            st1[3 * C + c] = st2[3 * C + c] = (T)1;                                             \
        }                                                                                       \
        RtCtx ctx = {threads, NULL, 0, NULL, NULL};                                             \
        rt_bn_relu_forward_train##S(&ctx, o1, st1, st1 + C, st1 + 2 * C, st1 + 3 * C, x, gamma, \
                                    beta, B, C, HW, 0.1, 1e-5, 0);                              \
        rt_bn_relu_forward_train_strided##S(&ctx, o2, st2, st2 + C, st2 + 2 * C, st2 + 3 * C,   \
                                            X, gamma, beta, B, C, HW, 0.1, 1e-5, 0, xs);        \
        ck_assert_int_eq(memcmp(o1, o2, n * sizeof(T)), 0);                                     \
        ck_assert_int_eq(memcmp(st1, st2, 4 * (size_t)C * sizeof(T)), 0);                       \
        for (int acc = 0; acc < 2; acc++) {                                                     \
            memcpy(DX, DX0, nx * sizeof(T));                                                    \
            for (int b = 0; b < B; b++)                                                         \
                memcpy(dx + (size_t)b * C * HW, DX0 + (size_t)b * xs,                           \
                       (size_t)C * HW * sizeof(T));                                             \
            /* relu's mask read from o1 (beta NULL) here, recomputed from X below: */           \
            /* the same bytes */                                                                \
            rt_bn_relu_backward##S(&ctx, dx, acc, dp1, dp1 + C, dout, o1, x, st1, st1 + C,      \
                                   gamma, NULL, B, C, HW, 0);                                   \
            rt_bn_relu_backward_strided##S(&ctx, DX, acc, dp2, dp2 + C, dout, o2, X, st2,       \
                                           st2 + C, gamma, beta, B, C, HW, 0, xs);              \
            ck_assert_int_eq(memcmp(dp1, dp2, 2 * (size_t)C * sizeof(T)), 0);                   \
            for (int b = 0; b < B; b++) {                                                       \
                const T *row = DX + (size_t)b * xs;                                             \
                ck_assert_int_eq(memcmp(dx + (size_t)b * C * HW, row,                           \
                                        (size_t)C * HW * sizeof(T)), 0);                        \
                ck_assert_int_eq(memcmp(row + (size_t)C * HW, DX0 + (size_t)b * xs +            \
                                        (size_t)C * HW, (size_t)(CX - C) * HW * sizeof(T)), 0); \
            }                                                                                   \
        }                                                                                       \
        rt_bn_relu_forward_eval##S(&ctx, o1, x, gamma, beta, st1 + 2 * C, st1 + 3 * C, B, C,    \
                                   HW, 1e-5, 0);                                                \
        rt_bn_relu_forward_eval_strided##S(&ctx, o2, X, gamma, beta, st2 + 2 * C, st2 + 3 * C,  \
                                           B, C, HW, 1e-5, 0, xs);                              \
        ck_assert_int_eq(memcmp(o1, o2, n * sizeof(T)), 0);                                     \
        /* recompute: the training forward's output from the saved statistics */               \
        rt_bn_relu_forward_train_strided##S(&ctx, o1, st1, st1 + C, NULL, NULL, X, gamma, beta, \
                                            B, C, HW, 0.1, 1e-5, 0, xs);                        \
        for (size_t i = 0; i < n; i++)                                                          \
            o2[i] = (T)-7;                                                                      \
        rt_bn_relu_recompute##S(&ctx, o2, X, st1, st1 + C, gamma, beta, B, C, HW, 0, xs);       \
        ck_assert_double_le(fu_err_##T(o2, o1, n), tol);                                        \
        /* with a record: recorded at X, replayed at X + noise, recomputed there */              \
        uint8_t *mask = tu_calloc(n + SITE, 1);                                                 \
        RtBranch br = {.replay = 0, .mask = mask, .cap = n + SITE};                             \
        rt_branch_reset(&br);                                                                   \
        RtCtx bc = {threads, NULL, 0, &br, NULL};                                               \
        rt_bn_relu_forward_train_strided##S(&bc, o1, st1, st1 + C, NULL, NULL, X, gamma, beta,  \
                                            B, C, HW, 0.1, 1e-5, SITE, xs);                     \
        for (size_t i = 0; i < nx; i++)                                                         \
            X[i] = (T)((double)X[i] + 0.5 * rt_rng_normal(&rng));                               \
        br.replay = 1;                                                                          \
        rt_branch_reset(&br);                                                                   \
        rt_bn_relu_forward_train_strided##S(&bc, o1, st1, st1 + C, NULL, NULL, X, gamma, beta,  \
                                            B, C, HW, 0.1, 1e-5, SITE, xs);                     \
        size_t seen = br.seen, neg = 0;                                                         \
        rt_bn_relu_recompute##S(&bc, o2, X, st1, st1 + C, gamma, beta, B, C, HW, SITE, xs);     \
        ck_assert_uint_eq(br.seen, seen);   /* nothing taken */                                 \
        ck_assert_double_le(fu_err_##T(o2, o1, n), tol);                                        \
        for (size_t i = 0; i < n; i++)                                                          \
            neg += o2[i] < 0;                                                                   \
        ck_assert_uint_gt(neg, 0);                                                              \
        free(X); free(x); free(DX); free(dx); free(DX0); free(dout); free(o1); free(o2);        \
        free(gamma); free(beta); free(st1); free(st2); free(dp1); free(dp2); free(mask);        \
    }
FU_STRIDED(double, _d)
FU_STRIDED(float, )

START_TEST(test_fused_strided)
{
    fu_strided_double(3, 4, 7, 300, 1, 0.0);
    fu_strided_double(2, 5, 5, 7, 1, 0.0);      /* the whole tensor */
    fu_strided_double(4, 8, 11, 1100, 2, 0.0);
    fu_strided_float(3, 4, 7, 300, 1, 1e-6);
    fu_strided_float(4, 8, 11, 1100, 2, 1e-6);
}
END_TEST

/* rt_bn_relu_forward_train_cached: the BNs that read a dense stage's
 * buffer X[B][CX][HW] in turn (prefixes of C1, C2, C2 again, CX channels,
 * each with its own gamma, beta, eps and running statistics) sharing one
 * statistics cache, against the strided form on each: the same bytes
 * (output, mean, rstd, running mean and variance). The cache starts as
 * garbage: only channels an earlier reader filled may be read. */
#define FU_CACHED(T, S)                                                                         \
    static void fu_cached_##T(int B, int C1, int C2, int CX, int HW, int threads)             \
    {                                                                                           \
        size_t nx = (size_t)B * CX * HW, xs = (size_t)CX * HW;                                 \
        const int cs[4] = { C1, C2, C2, CX }, known[4] = { 0, C1, C2, C2 };                     \
        const double eps[4] = { 1e-5, 1e-3, 1e-5, 0.1 };                                       \
        RtRng rng;                                                                              \
        rt_rng_seed(&rng, 7 + (uint64_t)nx);                                                    \
        T *X = tu_calloc(nx, sizeof(T)), *o1 = tu_calloc(nx, sizeof(T));                        \
        T *o2 = tu_calloc(nx, sizeof(T)), *cache = tu_calloc(4 * (size_t)CX, sizeof(T));        \
        T *gamma = tu_calloc((size_t)CX, sizeof(T)), *beta = tu_calloc((size_t)CX, sizeof(T));  \
        T *st1 = tu_calloc(4 * (size_t)CX, sizeof(T)), *st2 = tu_calloc(4 * (size_t)CX, sizeof(T)); \
        for (size_t i = 0; i < nx; i++)                                                         \
            X[i] = (T)(rt_rng_normal(&rng) + 0.3 * (double)((i / (size_t)HW) % 5) - 0.5);       \
        memset(cache, 0x7f, 4 * (size_t)CX * sizeof(T));                                        \
        RtCtx ctx = {threads, NULL, 0, NULL, NULL};                                             \
        for (int r = 0; r < 4; r++) {                                                           \
            int C = cs[r];                                                                      \
            for (int c = 0; c < C; c++) {                                                       \
                gamma[c] = (T)(0.5 + rt_rng_uniform(&rng));                                     \
                beta[c] = (T)(rt_rng_uniform(&rng) - 0.5);                                      \
                st1[2 * C + c] = st2[2 * C + c] = (T)rt_rng_uniform(&rng);                      \
                st1[3 * C + c] = st2[3 * C + c] = (T)(1 + rt_rng_uniform(&rng));                \
            }                                                                                   \
            rt_bn_relu_forward_train_strided##S(&ctx, o1, st1, st1 + C, st1 + 2 * C,            \
                                                st1 + 3 * C, X, gamma, beta, B, C, HW, 0.1,     \
                                                eps[r], 0, xs);                                 \
            rt_bn_relu_forward_train_cached##S(&ctx, o2, st2, st2 + C, st2 + 2 * C,             \
                                               st2 + 3 * C, X, gamma, beta, B, C, HW, 0.1,      \
                                               eps[r], 0, xs, cache, known[r]);                 \
            ck_assert_int_eq(memcmp(o1, o2, (size_t)B * C * HW * sizeof(T)), 0);                \
            ck_assert_int_eq(memcmp(st1, st2, 4 * (size_t)C * sizeof(T)), 0);                   \
        }                                                                                       \
        free(X); free(o1); free(o2); free(cache); free(gamma); free(beta); free(st1); free(st2); \
    }
FU_CACHED(double, _d)
FU_CACHED(float, )

START_TEST(test_fused_cached)
{
    fu_cached_double(3, 4, 7, 12, 300, 1);
    fu_cached_double(4, 24, 36, 48, 64, 2);     /* channel groups, two threads */
    fu_cached_float(3, 4, 7, 12, 300, 1);
    fu_cached_float(4, 24, 36, 48, 64, 2);
    fu_cached_float(8, 12, 20, 21, 1024, 2);
}
END_TEST

/* rt_bn_relu_conv1x1_train: relu(bn(x)) of a channel prefix of X[B][CX][HW]
 * and the 1x1 conv reading it, against the pair (the cached BN writing h,
 * rt_conv2d_forward reading it): the same bytes in the conv's output, the
 * saved and running statistics and the cache. The float build with its
 * scratch (rt_conv2d_scratch_bytes) does not write h; without scratch, in
 * double, or with a branch record, it runs the pair (h written). */
#define FU_PW(T, S)                                                                             \
    static void fu_pw_##T(int B, int C, int CX, int H, int W, int Cout, int threads,           \
                          int scratch, int known)                                              \
    {                                                                                           \
        int HW = H * W;                                                                         \
        size_t nx = (size_t)B * CX * HW, xs = (size_t)CX * HW, nh = (size_t)B * C * HW;        \
        size_t no = (size_t)B * Cout * HW;                                                      \
        RtRng rng;                                                                              \
        rt_rng_seed(&rng, 11 + (uint64_t)nx);                                                   \
        T *X = tu_calloc(nx, sizeof(T)), *h1 = tu_calloc(nh, sizeof(T));                        \
        T *h2 = tu_calloc(nh, sizeof(T)), *o1 = tu_calloc(no, sizeof(T));                       \
        T *o2 = tu_calloc(no, sizeof(T)), *w = tu_calloc((size_t)Cout * C, sizeof(T));          \
        T *c1 = tu_calloc(4 * (size_t)CX, sizeof(T)), *c2 = tu_calloc(4 * (size_t)CX, sizeof(T)); \
        T *gamma = tu_calloc((size_t)C, sizeof(T)), *beta = tu_calloc((size_t)C, sizeof(T));    \
        T *st1 = tu_calloc(4 * (size_t)C, sizeof(T)), *st2 = tu_calloc(4 * (size_t)C, sizeof(T)); \
        for (size_t i = 0; i < nx; i++)                                                         \
            X[i] = (T)(rt_rng_normal(&rng) + 0.3 * (double)((i / (size_t)HW) % 5) - 0.5);       \
        for (int i = 0; i < Cout * C; i++)                                                      \
            w[i] = (T)(rt_rng_normal(&rng) * 0.3);                                              \
        for (int c = 0; c < C; c++) {                                                           \
            gamma[c] = (T)(0.5 + rt_rng_uniform(&rng));                                         \
            beta[c] = (T)(rt_rng_uniform(&rng) - 0.5);                                          \
            st1[2 * C + c] = st2[2 * C + c] = (T)rt_rng_uniform(&rng);                          \
            st1[3 * C + c] = st2[3 * C + c] = (T)(1 + rt_rng_uniform(&rng));                    \
        }                                                                                       \
        /* the cache as an earlier reader of known channels left it */                         \
        RtCtx ctx = {threads, NULL, 0, NULL, NULL};                                             \
        if (known)                                                                              \
            rt_bn_relu_forward_train_cached##S(&ctx, h1, st1, st1 + C, st1 + 2 * C,             \
                                               st1 + 3 * C, X, gamma, beta, B, known, HW, 0.1,  \
                                               1e-5, 0, xs, c1, 0);                             \
        memcpy(c2, c1, 4 * (size_t)CX * sizeof(T));                                             \
        memcpy(st2, st1, 4 * (size_t)C * sizeof(T));                                            \
        size_t sb = scratch ? rt_conv2d_scratch_bytes(threads, B, C, H, W, 1, 1, 0, sizeof(T)) \
                            : 0;                                                                \
        void *sp = sb ? tu_calloc(sb, 1) : NULL;                                                \
        RtCtx ctx2 = {threads, sp, sb, NULL, NULL};                                             \
        rt_bn_relu_forward_train_cached##S(&ctx, h1, st1, st1 + C, st1 + 2 * C, st1 + 3 * C,   \
                                           X, gamma, beta, B, C, HW, 0.1, 1e-3, 0, xs, c1,      \
                                           known);                                              \
        rt_conv2d_forward##S(&ctx2, o1, h1, w, B, C, H, W, Cout, 1, 1, 0);                      \
        for (size_t i = 0; i < nh; i++)                                                         \
            h2[i] = (T)NAN;                                                                     \
        rt_bn_relu_conv1x1_train##S(&ctx2, o2, h2, st2, st2 + C, st2 + 2 * C, st2 + 3 * C, X,  \
                                    gamma, beta, B, C, H, W, 0.1, 1e-3, 0, xs, c2, known, w,    \
                                    Cout);                                                      \
        ck_assert_int_eq(memcmp(o1, o2, no * sizeof(T)), 0);                                    \
        ck_assert_int_eq(memcmp(st1, st2, 4 * (size_t)C * sizeof(T)), 0);                       \
        ck_assert_int_eq(memcmp(c1, c2, 4 * (size_t)C * sizeof(T)), 0);                         \
        int fused = sizeof(T) == sizeof(float) && sb                                            \
                    && rt_conv1x1_bnin_ok(&ctx2, B, C, HW, Cout);                               \
        size_t nan = 0;                                                                         \
        for (size_t i = 0; i < nh; i++)                                                         \
            nan += isnan((double)h2[i]);                                                        \
        ck_assert_uint_eq(nan, fused ? nh : 0);                                                 \
        if (!fused)                                                                             \
            ck_assert_int_eq(memcmp(h1, h2, nh * sizeof(T)), 0);                                \
        size_t pos = 0;                                                                         \
        for (size_t i = 0; i < no; i++)                                                         \
            pos += o1[i] > 0;                                                                   \
        ck_assert_uint_gt(pos, 0);                                                              \
        /* the backward: h applied per image for dw (never written) against        \
         * the recompute and rt_conv2d_backward, din accumulated */                 \
        T *gd = tu_calloc(no, sizeof(T)), *h3 = tu_calloc(nh, sizeof(T));                       \
        T *d1 = tu_calloc(nh, sizeof(T)), *d2 = tu_calloc(nh, sizeof(T));                       \
        T *dw1 = tu_calloc((size_t)Cout * C, sizeof(T));                                        \
        T *dw2 = tu_calloc((size_t)Cout * C, sizeof(T));                                        \
        for (size_t i = 0; i < no; i++)                                                         \
            gd[i] = (T)rt_rng_normal(&rng);                                                     \
        for (size_t i = 0; i < nh; i++) {                                                       \
            d1[i] = d2[i] = (T)(i % 5);                                                         \
            h3[i] = (T)NAN;                                                                     \
        }                                                                                       \
        for (int i = 0; i < Cout * C; i++)                                                      \
            dw1[i] = dw2[i] = (T)(i % 3);                                                       \
        rt_conv2d_backward##S(&ctx2, d1, 1, dw1, gd, h1, w, B, C, H, W, Cout, 1, 1, 0);         \
        rt_bn_relu_conv1x1_backward##S(&ctx2, d2, 1, dw2, gd, h3, X, st2, st2 + C, gamma, beta, \
                                       B, C, H, W, 0, xs, w, Cout);                             \
        ck_assert_int_eq(memcmp(d1, d2, nh * sizeof(T)), 0);                                    \
        ck_assert_int_eq(memcmp(dw1, dw2, (size_t)Cout * C * sizeof(T)), 0);                    \
        nan = 0;                                                                                \
        for (size_t i = 0; i < nh; i++)                                                         \
            nan += isnan((double)h3[i]);                                                        \
        ck_assert_uint_eq(nan, fused ? nh : 0);                                                 \
        if (!fused)                                                                             \
            ck_assert_int_eq(memcmp(h1, h3, nh * sizeof(T)), 0);                                \
        free(gd); free(h3); free(d1); free(d2); free(dw1); free(dw2);                           \
        free(sp); free(X); free(h1); free(h2); free(o1); free(o2); free(w); free(c1); free(c2); \
        free(gamma); free(beta); free(st1); free(st2);                                          \
    }
FU_PW(double, _d)
FU_PW(float, )

START_TEST(test_fused_conv1x1)
{
    fu_pw_float(3, 5, 9, 4, 5, 7, 1, 1, 0);
    fu_pw_float(4, 24, 36, 8, 8, 48, 2, 1, 12);    /* a prefix, the cache, two threads */
    fu_pw_float(5, 36, 36, 32, 32, 48, 2, 1, 24);   /* the whole tensor, DenseNet's size */
    fu_pw_float(3, 20, 20, 3, 3, 13, 2, 1, 0);      /* N 9: the AVX2 kernel */
    fu_pw_float(4, 24, 36, 8, 8, 48, 2, 0, 12);     /* no scratch: the pair */
    fu_pw_double(4, 24, 36, 8, 8, 48, 2, 1, 12);    /* double: the pair */
    if (rt_conv1x1_bnin_ok(&(RtCtx){1, NULL, 0, NULL, NULL}, 1, 1, 1, 1))
        ck_abort_msg("ran without scratch");
}
END_TEST

/* rt_concat_slice_*: a dense stage's concats written one slice at a time
 * into a tensor of CX channels equal rt_concat_forward's output, and the
 * slices' backward equals rt_concat_backward's split (acc 0 and 1). */
START_TEST(test_concat_slices)
{
    enum { B = 3, HW = 5, NS = 3, CX = 9 };
    const int cs[NS] = { 4, 2, 3 };
    double xs_[NS][B * 4 * HW], full[B * CX * HW], sl[B * CX * HW];
    const double *xs[NS] = { xs_[0], xs_[1], xs_[2] };
    RtRng rng;
    rt_rng_seed(&rng, 5);
    for (int k = 0; k < NS; k++)
        for (int i = 0; i < B * cs[k] * HW; i++)
            xs_[k][i] = rt_rng_normal(&rng);
    for (int i = 0; i < B * CX * HW; i++)
        sl[i] = NAN;
    RtCtx ctx = {1, NULL, 0, NULL, NULL};
    rt_concat_forward_d(&ctx, full, NS, xs, cs, B, HW);
    for (int k = 0, c0 = 0; k < NS; c0 += cs[k], k++)
        rt_concat_slice_forward_d(&ctx, sl, xs[k], B, cs[k], HW, c0, (size_t)CX * HW);
    ck_assert_int_eq(memcmp(full, sl, sizeof full), 0);
    double d1[NS][B * 4 * HW], d2[NS][B * 4 * HW];
    for (int acc = 0; acc < 2; acc++) {
        for (int k = 0; k < NS; k++)
            for (int i = 0; i < B * 4 * HW; i++)
                d1[k][i] = d2[k][i] = (double)(i % 7);
        double *dxs[NS] = { d1[0], d1[1], d1[2] };
        const int accs[NS] = { acc, acc, acc };
        rt_concat_backward_d(&ctx, dxs, accs, full, NS, cs, B, HW);
        for (int k = 0, c0 = 0; k < NS; c0 += cs[k], k++)
            rt_concat_slice_backward_d(&ctx, d2[k], acc, full, B, cs[k], HW, c0,
                                       (size_t)CX * HW);
        ck_assert_int_eq(memcmp(d1, d2, sizeof d1), 0);
    }
}
END_TEST

/* HW 300: one full chunk of the backward's masked gradient and a partial
 * one; HW 7: less than one. */
START_TEST(test_fused_double)
{
    fu_case_double(3, 4, 300, 1, 0, 1e-12);
    fu_case_double(2, 5, 7, 1, 0, 1e-12);
    fu_case_double(4, 8, 1100, 2, 0, 1e-12);
}
END_TEST

START_TEST(test_fused_float)
{
    fu_case_float(3, 4, 300, 1, 0, 1e-6);
    fu_case_float(2, 5, 7, 1, 0, 1e-6);
    fu_case_float(4, 8, 1100, 2, 0, 1e-6);
}
END_TEST

START_TEST(test_fused_branch)
{
    fu_case_double(3, 4, 300, 1, 1, 1e-12);
    fu_case_double(4, 8, 1100, 2, 1, 1e-12);
    fu_case_float(3, 4, 300, 1, 1, 1e-6);
    fu_case_float(4, 8, 1100, 2, 1, 1e-6);
}
END_TEST

/* The instruction-set variants of the fused and sum kernels
 * (OPTC_KERNEL_ISA caps them: none, avx2; unset, the CPU's best, AVX-512
 * here when it has it). Under each: the pair comparisons above (with
 * channel groups: C 40 at HW 64 is three groups, the last a partial one).
 * Across them: the training forward's outputs and statistics and the
 * backward's gradients within rounding of the baseline's (only the simd
 * reductions' order differs); the recompute under one variant from the
 * statistics saved under another equal to that forward bit for bit (the
 * element-wise arithmetic is the same in every variant: no FMA); the sums
 * bit for bit (no reduction). */
static void isa_set(const char *isa)
{
    if (isa)
        setenv("OPTC_KERNEL_ISA", isa, 1);
    else
        unsetenv("OPTC_KERNEL_ISA");
}

#define FU_ISA(T, S)                                                                            \
    static void fu_isa_##T(int B, int C, int HW, int threads, double tol)                      \
    {                                                                                           \
        static const char *const isas[] = {"none", "avx2", NULL};                               \
        size_t n = (size_t)B * C * HW;                                                          \
        RtRng rng;                                                                              \
        rt_rng_seed(&rng, 31 + (uint64_t)n);                                                    \
        T *x = tu_calloc(n, sizeof(T)), *dout = tu_calloc(n, sizeof(T));                        \
        T *o[3], *d[3], *st[3], *dp[3], *rc = tu_calloc(n, sizeof(T));                          \
        T *gamma = tu_calloc((size_t)C, sizeof(T)), *beta = tu_calloc((size_t)C, sizeof(T));    \
        for (size_t i = 0; i < n; i++) {                                                        \
            x[i] = (T)(rt_rng_normal(&rng) + 0.3 * (double)((i / (size_t)HW) % 3) - 0.3);       \
            dout[i] = (T)rt_rng_normal(&rng);                                                   \
        }                                                                                       \
        for (int c = 0; c < C; c++) {                                                           \
            gamma[c] = (T)(0.5 + rt_rng_uniform(&rng));                                         \
            beta[c] = (T)(rt_rng_uniform(&rng) - 0.5);                                          \
        }                                                                                       \
        RtCtx ctx = {threads, NULL, 0, NULL, NULL};                                             \
        for (int k = 0; k < 3; k++) {                                                           \
            o[k] = tu_calloc(n, sizeof(T));                                                     \
            d[k] = tu_calloc(n, sizeof(T));                                                     \
            st[k] = tu_calloc(4 * (size_t)C, sizeof(T));                                        \
            dp[k] = tu_calloc(2 * (size_t)C, sizeof(T));                                        \
            for (int c = 0; c < C; c++)                                                         \
                st[k][3 * C + c] = (T)1;                                                        \
            isa_set(isas[k]);                                                                   \
            rt_bn_relu_forward_train##S(&ctx, o[k], st[k], st[k] + C, st[k] + 2 * C,            \
                                        st[k] + 3 * C, x, gamma, beta, B, C, HW, 0.1, 1e-5, 0); \
            rt_bn_relu_backward##S(&ctx, d[k], 0, dp[k], dp[k] + C, dout, o[k], x, st[k],       \
                                   st[k] + C, gamma, beta, B, C, HW, 0);                        \
        }                                                                                       \
        for (int k = 1; k < 3; k++) {                                                           \
            ck_assert_double_le(fu_err_##T(o[k], o[0], n), tol);                                \
            ck_assert_double_le(fu_err_##T(st[k], st[0], 4 * (size_t)C), tol);                  \
            ck_assert_double_le(fu_err_##T(d[k], d[0], n), tol);                                \
            ck_assert_double_le(fu_err_##T(dp[k], dp[0], 2 * (size_t)C), tol);                  \
        }                                                                                       \
        for (int k = 0; k < 3; k++)                                                             \
            for (int f = 0; f < 3; f++) {                                                       \
                isa_set(isas[k]);                                                               \
                rt_bn_relu_recompute##S(&ctx, rc, x, st[f], st[f] + C, gamma, beta, B, C, HW,   \
                                        0, (size_t)C * HW);                                     \
                ck_assert_int_eq(memcmp(rc, o[f], n * sizeof(T)), 0);                           \
            }                                                                                   \
        /* sums: out = 0.5 x - 2 dout; d0 = 0.5 dout, d1 += -2 dout */                          \
        const T cs[2] = {(T)0.5, (T)-2};                                                        \
        const T *xs[2] = {x, dout};                                                             \
        const int accs[2] = {0, 1};                                                             \
        for (int k = 0; k < 3; k++) {                                                           \
            isa_set(isas[k]);                                                                   \
            rt_sum_forward##S(&ctx, o[k], 2, xs, cs, n);                                        \
            memcpy(d[k], x, n * sizeof(T));                                                     \
            T *dxs[2] = {rc, d[k]};                                                             \
            rt_sum_backward##S(&ctx, dxs, accs, NULL, dout, NULL, cs, 2, n);                    \
            if (k > 0) {                                                                        \
                ck_assert_int_eq(memcmp(o[k], o[0], n * sizeof(T)), 0);                         \
                ck_assert_int_eq(memcmp(d[k], d[0], n * sizeof(T)), 0);                         \
            }                                                                                   \
        }                                                                                       \
        isa_set(NULL);                                                                          \
        for (int k = 0; k < 3; k++) {                                                           \
            free(o[k]); free(d[k]); free(st[k]); free(dp[k]);                                   \
        }                                                                                       \
        free(x); free(dout); free(rc); free(gamma); free(beta);                                 \
    }
FU_ISA(double, _d)
FU_ISA(float, )

START_TEST(test_fused_isa)
{
    static const char *const isas[] = {"none", "avx2", NULL};
    for (int k = 0; k < 3; k++) {
        isa_set(isas[k]);
        fu_case_double(3, 4, 300, 1, 0, 1e-12);
        fu_case_double(4, 40, 64, 2, 0, 1e-12);
        fu_case_double(4, 8, 1100, 2, 1, 1e-12);
        fu_case_float(4, 40, 64, 1, 0, 1e-6);
        fu_case_float(3, 4, 300, 1, 1, 1e-6);
        fu_strided_double(4, 8, 11, 1100, 2, 0.0);
        fu_strided_double(4, 40, 45, 64, 1, 0.0);
        fu_strided_float(3, 4, 7, 300, 1, 1e-6);
        fu_cached_double(4, 24, 36, 48, 64, 2);
        fu_cached_float(3, 4, 7, 12, 300, 1);
    }
    isa_set(NULL);
    fu_isa_double(3, 4, 300, 1, 1e-12);
    fu_isa_double(8, 40, 64, 2, 1e-12);     /* channel groups, two threads */
    fu_isa_double(2, 5, 7, 1, 1e-12);
    fu_isa_float(3, 4, 300, 1, 1e-6);
    fu_isa_float(8, 40, 64, 2, 1e-6);
}
END_TEST

/* The BN + relu the backward tests below run: x around 0 (a channel's
 * mean shifted by -0.3, 0 or 0.3), dout with zeros, gamma in [0.5, 1.5),
 * beta in [-0.5, 0.5), running variance 1, and its training forward into
 * o and the statistics st (mean, rstd, running mean, running var). */
#define FU_BN_SETUP(T, S)                                                                       \
    static void fu_bn_setup_##T(const RtCtx *ctx, RtRng *rng, T *x, T *dout, T *o, T *gamma,    \
                                T *beta, T *st, int B, int C, int HW)                           \
    {                                                                                           \
        size_t n = (size_t)B * C * HW;                                                          \
        for (size_t i = 0; i < n; i++) {                                                        \
            x[i] = (T)(rt_rng_normal(rng) + 0.3 * (double)((i / (size_t)HW) % 3) - 0.3);        \
            dout[i] = i % 5 == 0 ? (T)0 : (T)rt_rng_normal(rng);                                \
        }                                                                                       \
        for (int cc = 0; cc < C; cc++) {                                                        \
            gamma[cc] = (T)(0.5 + rt_rng_uniform(rng));                                         \
            beta[cc] = (T)(rt_rng_uniform(rng) - 0.5);                                          \
            st[3 * C + cc] = (T)1;                                                              \
        }                                                                                       \
        rt_bn_relu_forward_train##S(ctx, o, st, st + C, st + 2 * C, st + 3 * C, x, gamma, beta, \
                                    B, C, HW, 0.1, 1e-5, 0);                                    \
    }
FU_BN_SETUP(double, _d)
FU_BN_SETUP(float, )

/* rt_bn_relu_backward_pend against what it replaces: rt_sum_backward
 * writing then adding c[t] g[t] into din term by term, then
 * rt_bn_relu_backward adding into it (acc 1): the same bytes, under every
 * instruction set, 1 to 3 terms (4: the fallback that runs those calls),
 * zeros among the g (0 * c is -0 for c < 0: the sums' order of rounding
 * keeps its sign). */
#define FU_PEND(T, S)                                                                           \
    static void fu_pend_##T(int B, int C, int HW, int threads)                                  \
    {                                                                                           \
        static const char *const isas[] = {"none", "avx2", NULL};                               \
        size_t n = (size_t)B * C * HW;                                                          \
        RtRng rng;                                                                              \
        rt_rng_seed(&rng, 77 + (uint64_t)n);                                                    \
        T *x = tu_calloc(n, sizeof(T)), *dout = tu_calloc(n, sizeof(T));                        \
        T *o = tu_calloc(n, sizeof(T)), *d1 = tu_calloc(n, sizeof(T));                          \
        T *d2 = tu_calloc(n, sizeof(T)), *g[4];                                                 \
        T *gamma = tu_calloc((size_t)C, sizeof(T)), *beta = tu_calloc((size_t)C, sizeof(T));    \
        T *st = tu_calloc(4 * (size_t)C, sizeof(T));                                            \
        T *dp1 = tu_calloc(2 * (size_t)C, sizeof(T)), *dp2 = tu_calloc(2 * (size_t)C, sizeof(T)); \
        const T c[4] = {(T)-0.9, (T)1.9, (T)1, (T)-0.25};                                       \
        for (int t = 0; t < 4; t++) {                                                           \
            g[t] = tu_calloc(n, sizeof(T));                                                     \
            for (size_t i = 0; i < n; i++)                                                      \
                g[t][i] = i % 7 == (size_t)t ? (T)0 : (T)rt_rng_normal(&rng);                   \
        }                                                                                       \
        RtCtx ctx = {threads, NULL, 0, NULL, NULL};                                             \
        fu_bn_setup_##T(&ctx, &rng, x, dout, o, gamma, beta, st, B, C, HW);                     \
        const T *const pg[4] = {g[0], g[1], g[2], g[3]};                                        \
        for (int k = 0; k < 3; k++)                                                             \
            for (int np = 1; np <= 4; np++) {                                                   \
                isa_set(isas[k]);                                                               \
                for (int t = 0; t < np; t++) {                                                  \
                    T *dxs[3] = {NULL, d1, NULL};                                               \
                    const int acc[3] = {0, t > 0, 0};                                           \
                    const T c3[3] = {(T)2, c[t], (T)3};                                         \
                    rt_sum_backward##S(&ctx, dxs, acc, NULL, g[t], NULL, c3, 3, n);             \
                }                                                                               \
                memset(dp1, 0, 2 * (size_t)C * sizeof(T));                                      \
                memset(dp2, 0, 2 * (size_t)C * sizeof(T));                                      \
                rt_bn_relu_backward##S(&ctx, d1, 1, dp1, dp1 + C, dout, o, x, st, st + C, gamma, \
                                       beta, B, C, HW, 0);                                      \
                for (size_t i = 0; i < n; i++)                                                  \
                    d2[i] = (T)NAN;     /* written, not read */                                  \
                rt_bn_relu_backward_pend##S(&ctx, d2, np, pg, c, dp2, dp2 + C, dout, o, x, st,  \
                                            st + C, gamma, beta, B, C, HW, 0);                  \
                ck_assert_int_eq(memcmp(d1, d2, n * sizeof(T)), 0);                             \
                ck_assert_int_eq(memcmp(dp1, dp2, 2 * (size_t)C * sizeof(T)), 0);               \
            }                                                                                   \
        isa_set(NULL);                                                                          \
        for (int t = 0; t < 4; t++)                                                             \
            free(g[t]);                                                                         \
        free(x); free(dout); free(o); free(d1); free(d2); free(gamma); free(beta); free(st);    \
        free(dp1); free(dp2);                                                                   \
    }
FU_PEND(double, _d)
FU_PEND(float, )

/* rt_pad_backward_pend against rt_sum_backward's terms into dout, then
 * rt_pad_backward: the same bytes, acc 0 and 1, 1 to 3 terms. */
#define FU_PAD_PEND(T, S)                                                                       \
    static void fu_pad_pend_##T(int B, int Cin, int H, int W, int Cout, int stride)             \
    {                                                                                           \
        int Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;                     \
        size_t no = (size_t)B * Cout * Ho * Wo, ni = (size_t)B * Cin * H * W;                   \
        RtRng rng;                                                                              \
        rt_rng_seed(&rng, 5 + no);                                                              \
        T *g[3], *dout = tu_calloc(no, sizeof(T)), *d1 = tu_calloc(ni, sizeof(T));             \
        T *d2 = tu_calloc(ni, sizeof(T)), *d0 = tu_calloc(ni, sizeof(T));                       \
        const T c[3] = {(T)-0.9, (T)1, (T)1.9};                                                 \
        for (int t = 0; t < 3; t++) {                                                           \
            g[t] = tu_calloc(no, sizeof(T));                                                    \
            for (size_t i = 0; i < no; i++)                                                     \
                g[t][i] = i % 5 == (size_t)t ? (T)0 : (T)rt_rng_normal(&rng);                   \
        }                                                                                       \
        for (size_t i = 0; i < ni; i++)                                                         \
            d0[i] = (T)rt_rng_normal(&rng);                                                     \
        const T *const pg[3] = {g[0], g[1], g[2]};                                              \
        RtCtx ctx = {2, NULL, 0, NULL, NULL};                                                   \
        for (int acc = 0; acc < 2; acc++)                                                       \
            for (int np = 1; np <= 3; np++) {                                                   \
                for (int t = 0; t < np; t++) {                                                  \
                    T *dxs[1] = {dout};                                                         \
                    const int a[1] = {t > 0};                                                   \
                    rt_sum_backward##S(&ctx, dxs, a, NULL, g[t], NULL, c + t, 1, no);           \
                }                                                                               \
                memcpy(d1, d0, ni * sizeof(T));                                                 \
                memcpy(d2, d0, ni * sizeof(T));                                                 \
                rt_pad_backward##S(&ctx, d1, acc, dout, B, Cin, H, W, Cout, stride);            \
                rt_pad_backward_pend##S(&ctx, d2, acc, np, pg, c, B, Cin, H, W, Cout, stride);  \
                ck_assert_int_eq(memcmp(d1, d2, ni * sizeof(T)), 0);                            \
            }                                                                                   \
        for (int t = 0; t < 3; t++)                                                             \
            free(g[t]);                                                                         \
        free(dout); free(d0); free(d1); free(d2);                                               \
    }
FU_PAD_PEND(double, _d)
FU_PAD_PEND(float, )

/* rt_bn_relu_backward_then against what it replaces: rt_bn_relu_backward
 * into din (acc 0 and 1), rt_sum_backward of a 2-term sum from din (two
 * outputs: the one-loop form; or one, the other term sharing din: the
 * general form, din kept), then (s2) rt_sum_backward of a 1- or 2-term sum
 * from the first sum's output j: the same bytes in every output and in
 * dgamma, dbeta, under every instruction set, zeros among dout (0 * c is
 * -0 for c < 0); din written only when kept, the first sum's output j
 * (the second's gradient) too; and the fallback (the two outputs the same
 * tensor) as the calls. */
#define FU_THEN(T, S)                                                                           \
    static void fu_then_##T(int B, int C, int HW, int threads)                                  \
    {                                                                                           \
        static const char *const isas[] = {"none", "avx2", NULL};                               \
        size_t n = (size_t)B * C * HW;                                                          \
        RtRng rng;                                                                              \
        rt_rng_seed(&rng, 91 + (uint64_t)n);                                                    \
        T *x = tu_calloc(n, sizeof(T)), *dout = tu_calloc(n, sizeof(T));                        \
        T *o = tu_calloc(n, sizeof(T)), *d0 = tu_calloc(n, sizeof(T));                          \
        T *d1 = tu_calloc(n, sizeof(T)), *d2 = tu_calloc(n, sizeof(T)), *e[2][4], *e0[4];       \
        T *gamma = tu_calloc((size_t)C, sizeof(T)), *beta = tu_calloc((size_t)C, sizeof(T));    \
        T *st = tu_calloc(4 * (size_t)C, sizeof(T));                                            \
        T *dp1 = tu_calloc(2 * (size_t)C, sizeof(T)), *dp2 = tu_calloc(2 * (size_t)C, sizeof(T)); \
        const T c[2] = {(T)1.2817535, (T)-0.2817535}, c2[2] = {(T)0.9, (T)-0.1};                \
        RtCtx ctx = {threads, NULL, 0, NULL, NULL};                                             \
        fu_bn_setup_##T(&ctx, &rng, x, dout, o, gamma, beta, st, B, C, HW);                     \
        for (size_t i = 0; i < n; i++)                                                          \
            d0[i] = i % 7 == 0 ? (T)0 : (T)rt_rng_normal(&rng);                                 \
        for (int t = 0; t < 4; t++) {                                                           \
            e0[t] = tu_calloc(n, sizeof(T));                                                    \
            for (size_t i = 0; i < n; i++)                                                      \
                e0[t][i] = i % 11 == 0 ? (T)0 : (T)rt_rng_normal(&rng);                         \
            for (int v = 0; v < 2; v++)                                                         \
                e[v][t] = tu_calloc(n, sizeof(T));                                              \
        }                                                                                       \
        for (int k = 0; k < 3; k++)                                                             \
            for (int m = 0; m < 192; m++) { /* acc, the terms' acc, forms, the second sum */   \
                int acc = m & 1, dacc[2] = {(m >> 1) & 1, (m >> 2) & 1}, form = (m >> 3) % 3;   \
                int s2 = (m / 24) % 4, n2 = s2 == 3 ? 1 : 2, j = s2 == 2, dacc2[2] = {acc, 0};   \
                int keep = (form != 0) | (m >= 96 ? 2 : 0);                                     \
                isa_set(isas[k]);                                                               \
                for (int v = 0; v < 2; v++)                                                     \
                    for (int t = 0; t < 4; t++)                                                 \
                        memcpy(e[v][t], e0[t], n * sizeof(T));                                  \
                /* form 0: two outputs; 1: one (din kept); 2: one tensor twice (fallback) */    \
                T *x1[2] = {form == 1 ? NULL : e[0][0], form == 2 ? e[0][0] : e[0][1]};         \
                T *x2[2] = {form == 1 ? NULL : e[1][0], form == 2 ? e[1][0] : e[1][1]};         \
                if (form == 1 && j == 0)                                                        \
                    j = 1;                                                                      \
                T *y1[2] = {e[0][2], e[0][3]}, *y2[2] = {e[1][2], e[1][3]};                     \
                memcpy(d1, d0, n * sizeof(T));                                                  \
                memcpy(d2, d0, n * sizeof(T));                                                  \
                memset(dp1, 0, 2 * (size_t)C * sizeof(T));                                      \
                memset(dp2, 0, 2 * (size_t)C * sizeof(T));                                      \
                rt_bn_relu_backward##S(&ctx, d1, acc, dp1, dp1 + C, dout, o, x, st, st + C,     \
                                       gamma, beta, B, C, HW, 0);                               \
                rt_sum_backward##S(&ctx, x1, dacc, NULL, d1, NULL, c, 2, n);                    \
                if (s2)                                                                         \
                    rt_sum_backward##S(&ctx, y1, dacc2, NULL, x1[j], NULL, c2, n2, n);          \
                rt_bn_relu_backward_then##S(&ctx, d2, acc, dp2, dp2 + C, dout, o, x, st,        \
                                            st + C, gamma, beta, B, C, HW, 0, keep, 2, x2,      \
                                            dacc, c, j, s2 ? n2 : 0, y2, dacc2, c2);            \
                for (int t = 0; t < 4; t++)                                                     \
                    if (!(s2 && form < 2 && t == j && m < 96))  /* not written: scratch */    \
                        ck_assert_msg(memcmp(e[0][t], e[1][t], n * sizeof(T)) == 0,             \
                                      "then %s m %d: output %d", isas[k] ? isas[k] : "best",     \
                                      m, t);                                                    \
                ck_assert_int_eq(memcmp(dp1, dp2, 2 * (size_t)C * sizeof(T)), 0);               \
                if (form == 0)                                                                  \
                    ck_assert_int_eq(memcmp(d2, d0, n * sizeof(T)), 0);                         \
                else                                                                            \
                    ck_assert_int_eq(memcmp(d2, d1, n * sizeof(T)), 0);                         \
            }                                                                                   \
        isa_set(NULL);                                                                          \
        for (int t = 0; t < 4; t++)                                                             \
            free(e0[t]), free(e[0][t]), free(e[1][t]);                                          \
        free(x); free(dout); free(o); free(d0); free(d1); free(d2); free(gamma); free(beta);    \
        free(st); free(dp1); free(dp2);                                                         \
    }
FU_THEN(double, _d)
FU_THEN(float, )

START_TEST(test_fused_pend)
{
    fu_then_double(3, 4, 300, 1);
    fu_then_float(3, 4, 300, 1);
    fu_then_float(8, 40, 64, 2);
    fu_then_float(2, 5, 7, 2);
    fu_pend_double(3, 4, 300, 1);
    fu_pend_double(8, 40, 64, 2);       /* channel groups, two threads */
    fu_pend_float(3, 4, 300, 1);
    fu_pend_float(8, 40, 64, 2);
    fu_pend_float(2, 5, 7, 2);
    fu_pad_pend_double(3, 4, 16, 16, 8, 2);
    fu_pad_pend_float(3, 4, 16, 16, 8, 2);
    fu_pad_pend_float(2, 3, 7, 9, 5, 2);
}
END_TEST

static Suite *fuse_suite(void)
{
    Suite *s = suite_create("fuse");
    TCase *tc = tcase_create("bn_relu");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_fused_double);
    tcase_add_test(tc, test_fused_float);
    tcase_add_test(tc, test_fused_branch);
    tcase_add_test(tc, test_fused_strided);
    tcase_add_test(tc, test_fused_cached);
    tcase_add_test(tc, test_fused_conv1x1);
    tcase_add_test(tc, test_fused_isa);
    tcase_add_test(tc, test_fused_pend);
    tcase_add_test(tc, test_concat_slices);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(fuse_suite)
