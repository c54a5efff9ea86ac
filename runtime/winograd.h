/* winograd.h — float 3x3 convolutions (stride 1, pad 1) by Winograd's
 * minimal filtering (forward pass F(2x2, 3x3), input gradient F(4x4, 3x3),
 * weight gradient either by the width; why in winograd.c), AVX2+FMA and
 * AVX-512F variants chosen at run time. Shapes and conventions as in rt.h;
 * rt_conv2d_forward / rt_conv2d_backward (kernels.inc) offer these calls
 * first and fall back to the direct kernels (conv3x3.c) when one returns 0. */
#ifndef OPTC_WINOGRAD_H
#define OPTC_WINOGRAD_H

#include <stddef.h>
#include "rt.h"

/* 1 when the Winograd kernels take a stride-1 pad-1 3x3 float conv of Cin
 * input channels on this machine: AVX2+FMA present, OPTC_CONV_ISA not
 * "none", OPTC_CONV_WINO not "0", and Cin at least 8 (fewer
 * channels run faster direct). */
int rt_wino_taken(int Cin, int Cout);

/* out[B][Cout][H][W] = conv3x3(in, w): return 1 having computed it, or 0
 * having touched nothing (not taken, or ctx->scratch too small). */
int rt_wino_forward(const RtCtx *ctx, float *out, const float *in, const float *w,
                    int B, int Cin, int H, int W, int Cout);
/* As rt_wino_forward for a forward pass that no backward follows
 * (rt_conv2d_forward_mode with train 0): F(4x4, 3x3) where the image is at
 * least EVAL_MIN_W (16) wide, relative error 3e-6..7e-6 of max|out|
 * instead of F(2x2, 3x3)'s 2e-7..4e-7; F(2x2, 3x3) on narrower ones. */
int rt_wino_forward_eval(const RtCtx *ctx, float *out, const float *in, const float *w,
                         int B, int Cin, int H, int W, int Cout);
/* din (+)= per acc the input gradient of that conv from dout: 1, or 0 having
 * touched nothing. */
int rt_wino_backward_data(const RtCtx *ctx, float *din, int acc, const float *dout,
                          const float *w, int B, int Cin, int H, int W, int Cout);
/* The same with the weights negated: din (+)= -conv3x3^T(dout), exactly the
 * negation of the product (a term of -1 in a sum, rt_conv2d_backward_neg). */
int rt_wino_backward_data_neg(const RtCtx *ctx, float *din, int acc, const float *dout,
                              const float *w, int B, int Cin, int H, int W, int Cout);

/* dw += the weight gradient of that conv from dout and in: 1, or 0 having
 * touched nothing (also for Cout < 16, which runs faster direct). By
 * F(4x4, 3x3) on images from 8 pixels wide (relative error 2e-6..4e-6),
 * on narrower ones F(2x2, 3x3) (2e-7); each entry
 * summed in an order fixed by the shape, whatever the thread count. */
int rt_wino_backward_weights(const RtCtx *ctx, float *dw, const float *dout, const float *in,
                             int B, int Cin, int H, int W, int Cout);

/* Workspace in bytes that lets threads threads run the three calls of a conv of
 * Cin channels of H x W with Cout <= Cin (rt_conv2d_scratch_bytes takes the
 * larger of this and its own figure). */
size_t rt_wino_scratch_bytes(int threads, int Cin, int H, int W);

#endif
