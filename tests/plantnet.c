/* plantnet.c — the hand net (handnet.h) with one gradient bug planted, for
 * test_gradcheck: gradcheck must fail on each. RT_PLANT picks the bug:
 *  1: BN's input gradient (channel 0 of every BN) scaled by 1.01;
 *  2: a sum drops its last coefficient's gradient;
 *  3: the conv weight gradient misses the batch's last image.
 * The bug sits in a wrapper of the runtime kernel in both precisions, the
 * way a kernel bug would: the Makefile links with the linker's --wrap, so
 * the network's calls reach __wrap_X and the runtime itself stays as it is
 * (one runtime library for every build). */
#include <stdlib.h>
#include <string.h>
#include "handnet.h"

#ifndef RT_PLANT
#error "plantnet.c: define RT_PLANT (0: no bug, 1, 2 or 3)"
#endif

#define PLANT_WRAPPERS(T, S)                                                                 \
void __real_rt_bn_backward##S(const RtCtx *ctx, T *din, int acc, T *dgamma, T *dbeta,        \
        const T *dout, const T *in, const T *mean, const T *rstd, const T *gamma,            \
        int B, int C, int HW);                                                               \
void __wrap_rt_bn_backward##S(const RtCtx *ctx, T *din, int acc, T *dgamma, T *dbeta,        \
        const T *dout, const T *in, const T *mean, const T *rstd, const T *gamma,            \
        int B, int C, int HW);                                                               \
void __wrap_rt_bn_backward##S(const RtCtx *ctx, T *din, int acc, T *dgamma, T *dbeta,        \
        const T *dout, const T *in, const T *mean, const T *rstd, const T *gamma,            \
        int B, int C, int HW)                                                                \
{                                                                                            \
    size_t n = (size_t)B * C * HW;                                                           \
    T *tmp = RT_PLANT == 1 && din ? malloc(n * sizeof(T)) : NULL;                            \
    if (!tmp) {                                                                              \
        __real_rt_bn_backward##S(ctx, din, acc, dgamma, dbeta, dout, in, mean, rstd, gamma,  \
                                 B, C, HW);                                                  \
        return;                                                                              \
    }                                                                                        \
    __real_rt_bn_backward##S(ctx, tmp, 0, dgamma, dbeta, dout, in, mean, rstd, gamma,        \
                             B, C, HW);                                                      \
    for (size_t i = 0; i < n; i++) {                                                         \
        T v = (i / (size_t)HW) % (size_t)C == 0 ? (T)(1.01 * (double)tmp[i]) : tmp[i];       \
        din[i] = acc ? din[i] + v : v;                                                       \
    }                                                                                        \
    free(tmp);                                                                               \
}                                                                                            \
void __real_rt_sum_backward##S(const RtCtx *ctx, T *const *dxs, const int *acc, T *dc,       \
        const T *dout, const T *const *xs, const T *c, int n, size_t len);                   \
void __wrap_rt_sum_backward##S(const RtCtx *ctx, T *const *dxs, const int *acc, T *dc,       \
        const T *dout, const T *const *xs, const T *c, int n, size_t len);                   \
void __wrap_rt_sum_backward##S(const RtCtx *ctx, T *const *dxs, const int *acc, T *dc,       \
        const T *dout, const T *const *xs, const T *c, int n, size_t len)                    \
{                                                                                            \
    T keep = dc && n > 0 ? dc[n - 1] : (T)0;                                                 \
    __real_rt_sum_backward##S(ctx, dxs, acc, dc, dout, xs, c, n, len);                       \
    if (RT_PLANT == 2 && dc && n > 0)                                                        \
        dc[n - 1] = keep;                                                                    \
}                                                                                            \
void __real_rt_conv2d_backward##S(const RtCtx *ctx, T *din, int acc, T *dw, const T *dout,   \
        const T *in, const T *w, int B, int Cin, int H, int W, int Cout, int K, int stride,  \
        int pad);                                                                            \
void __wrap_rt_conv2d_backward##S(const RtCtx *ctx, T *din, int acc, T *dw, const T *dout,   \
        const T *in, const T *w, int B, int Cin, int H, int W, int Cout, int K, int stride,  \
        int pad);                                                                            \
void __wrap_rt_conv2d_backward##S(const RtCtx *ctx, T *din, int acc, T *dw, const T *dout,   \
        const T *in, const T *w, int B, int Cin, int H, int W, int Cout, int K, int stride,  \
        int pad)                                                                             \
{                                                                                            \
    if (RT_PLANT != 3 || !dw) {                                                              \
        __real_rt_conv2d_backward##S(ctx, din, acc, dw, dout, in, w, B, Cin, H, W, Cout, K,  \
                                     stride, pad);                                           \
        return;                                                                              \
    }                                                                                        \
    __real_rt_conv2d_backward##S(ctx, din, acc, NULL, dout, in, w, B, Cin, H, W, Cout, K,    \
                                 stride, pad);                                               \
    if (B > 1)  /* images 0 .. B-2 only */                                                   \
        __real_rt_conv2d_backward##S(ctx, NULL, 0, dw, dout, in, w, B - 1, Cin, H, W, Cout,  \
                                     K, stride, pad);                                        \
}

PLANT_WRAPPERS(float, )
PLANT_WRAPPERS(double, _d)

int main(int argc, char **argv)
{
    (void)hn_run;
    return rt_main(&handnet, argc, argv);
}
