/* conv3x3.h — the direct float 3x3 convolution (stride 1, pad 1), used by
 * rt_conv2d_forward / rt_conv2d_backward in place of im2col + GEMM when the
 * machine has AVX2 and FMA. Shapes and conventions as in rt.h. */
#ifndef OPTC_CONV3X3_H
#define OPTC_CONV3X3_H

#include "rt.h"

/* What a direct kernel computes: the forward pass and the input gradient
 * (the same kernel), or the weight gradient. */
enum { RT_CONV3X3_DATA = 1, RT_CONV3X3_WEIGHTS = 2 };

/* 1 when `what` of a float conv of this shape runs the direct kernels on
 * this machine, else 0: K = 3, stride 1, pad 1, AVX2+FMA present, and for
 * the weight gradient at most 16 output channels (with more, the im2col
 * GEMM measured faster: BENCHMARKS.md). */
int rt_conv3x3_taken(int what, int Cin, int Cout, int K, int stride, int pad);

/* Compute the conv directly and return 1, or return 0 having touched
 * nothing (shape not taken, or no memory for the padded images): the
 * caller then runs im2col + GEMM. Needs no ctx->scratch. */
int rt_conv3x3_forward(const RtCtx *ctx, float *out, const float *in, const float *w,
                       int B, int Cin, int H, int W, int Cout);
/* As rt_conv2d_backward: din (+)= per acc, dw +=; either may be NULL.
 * Either both are computed here (return 1) or neither (return 0); the
 * caller asks for each only when rt_conv3x3_taken says so. */
int rt_conv3x3_backward(const RtCtx *ctx, float *din, int acc, float *dw, const float *dout,
                        const float *in, const float *w, int B, int Cin, int H, int W,
                        int Cout);

#endif
