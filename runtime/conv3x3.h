/* conv3x3.h — the direct float 3x3 convolutions (pad 1, stride 1 or 2),
 * used by rt_conv2d_forward / rt_conv2d_backward in place of im2col + GEMM
 * when the machine has AVX2 and FMA (AVX-512F variants where it has that).
 * Shapes and conventions as in rt.h. */
#ifndef OPTC_CONV3X3_H
#define OPTC_CONV3X3_H

#include "rt.h"

/* What a direct kernel computes: the input gradient, the weight gradient,
 * or the forward pass (stride 1 and 2 each). */
enum { RT_CONV3X3_DATA = 1, RT_CONV3X3_WEIGHTS = 2, RT_CONV3X3_FORWARD = 4 };

/* 1 when `what` of a float conv of this shape runs the direct kernels on
 * this machine, else 0: K = 3, pad 1, stride 1 or 2, AVX2+FMA present and
 * not turned off by OPTC_CONV_ISA=none. */
int rt_conv3x3_taken(int what, int Cin, int Cout, int K, int stride, int pad);

/* Compute the conv directly and return 1, or return 0 having touched
 * nothing (shape not taken, or ctx->scratch too small for one chunk where
 * stride 2 needs a workspace: the padded copy with 8-wide vectors, the
 * transposed weights or output gradient with the channels in the lanes):
 * the caller then runs im2col + GEMM. The workspace is ctx->scratch (one
 * of rt_conv2d_scratch_bytes is enough); stride 1 needs none. */
int rt_conv3x3_forward(const RtCtx *ctx, float *out, const float *in, const float *w,
                       int B, int Cin, int H, int W, int Cout, int stride);
/* As rt_conv2d_backward for one of din (+)= per acc, dw += (the other
 * NULL): return 1 having computed it, or 0 having touched nothing. */
int rt_conv3x3_backward(const RtCtx *ctx, float *din, int acc, float *dw, const float *dout,
                        const float *in, const float *w, int B, int Cin, int H, int W,
                        int Cout, int stride);

/* The pointwise conv (K = 1, stride 1, pad 0) of N = H*W pixels directly:
 * return 1 having computed it (forward: out = ...; backward: din (+)= per
 * acc and dw += , either may be NULL), or 0 having touched nothing (no
 * AVX2+FMA, or OPTC_CONV_ISA=none). Needs no workspace. */
int rt_conv1x1_forward(const RtCtx *ctx, float *out, const float *in, const float *w,
                       int B, int Cin, int N, int Cout);
int rt_conv1x1_backward(const RtCtx *ctx, float *din, int acc, float *dw, const float *dout,
                        const float *in, const float *w, int B, int Cin, int N, int Cout);

/* rt_conv1x1_forward of h = relu(x sc + sh) with h never written (sc, sh
 * from the saved mean and rstd as rt_bn_relu_recompute takes them; x's
 * images xs floats apart); needs Cin * N floats of ctx->scratch per thread
 * (rt_conv2d_scratch_bytes). _ok: whether it would run (else 0, nothing
 * touched). */
int rt_conv1x1_bnin_ok(const RtCtx *ctx, int B, int Cin, int N, int Cout);
int rt_conv1x1_bnin_forward(const RtCtx *ctx, float *out, const float *in, size_t xs,
                            const float *mean, const float *rstd, const float *gamma,
                            const float *beta, const float *w, int B, int Cin, int N, int Cout);

/* The backward of rt_conv1x1_bnin_forward's conv: din (+)= W^T dout (may be
 * NULL), dw += dout h^T with h applied per image into ctx->scratch (Cin * N
 * floats), never written out. 0 (nothing touched) without the ISA or
 * scratch. */
int rt_conv1x1_bnin_backward(const RtCtx *ctx, float *din, int acc, float *dw,
                             const float *dout, const float *in, size_t xs, const float *mean,
                             const float *rstd, const float *gamma, const float *beta,
                             const float *w, int B, int Cin, int N, int Cout);

/* The stride-1 3x3 weight gradient of h = relu(x sc + sh) (sc, sh as
 * rt_conv1x1_bnin_forward takes them), dw += as rt_conv3x3_backward's, h
 * applied a group of images at a time into ctx->scratch and never written
 * out (the same bytes). 0 (nothing touched) without the ISA or scratch. */
int rt_conv3x3_bnin_weights(const RtCtx *ctx, float *dw, const float *dout, const float *in,
                            size_t xs, const float *mean, const float *rstd, const float *gamma,
                            const float *beta, int B, int Cin, int H, int W, int Cout);

#endif
