/* test_conv.c — the direct 3x3 float convolutions (runtime/conv3x3.c)
 * against the plain double loops (rt_conv2d_forward_ref_d,
 * rt_conv2d_backward_ref_d), for every instruction-set variant this machine
 * has (OPTC_CONV_ISA=avx2 forces the 8-wide kernels on an AVX-512 machine):
 *   - forward, input gradient written (acc 0) and added to (acc 1), weight
 *     gradient added to what is there, stride 1 and 2 (odd sizes: the last
 *     input row and column of stride 2 take one tap row / column only);
 *   - channel counts that leave partial register blocks (1, 2, 3, 5, 7, 12),
 *     widths with vector tails (5, 7, 9, 17, 28, 33, 34) and the networks'
 *     32, 16, 8; rows of three 16-float vectors (the general loop);
 *   - batches of 1 and 3 and 1 and 2 threads, with the workspace
 *     rt_conv2d_scratch_bytes gives;
 *   - the same bytes for 1 and 2 threads (no summation order depends on the
 *     thread count);
 *   - a 64-channel 32x32 image, read in several chunks;
 *   - stride 2 with the channels in the vector lanes: partial vectors of
 *     channels, the weights or sums in several chunks of channels, a
 *     single row or column;
 *   - stride 1 reads the input unpadded (masked loads at the borders): one
 *     pixel, single rows, odd heights, paired 8-wide rows (AVX-512);
 *   - the pointwise (1x1) kernels the same way.
 * Tolerance: normwise relative difference max|f - d| / max|d| < F32_TOL
 * (1e-4; the float kernels sum up to 64*9*128*32*32 products). On a machine
 * without AVX2+FMA the direct kernels are not taken and the cases report
 * that and check the im2col path instead. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conv3x3.h"
#include "gradcheck.h"
#include "rt.h"
#include "testutil.h"
#include "tmain.h"

#define F32_TOL 1e-4

/* The variants: 0 = this machine's best, 1 = AVX2 forced. */
static const char *const isa_env[] = {NULL, "avx2"};

typedef struct {
    int B, C, H, W, Co, S;
} Shape;

static const Shape shapes[] = {
    {3, 16, 32, 32, 16, 1}, {1, 16, 32, 32, 32, 2}, {3, 32, 16, 16, 32, 1},
    {3, 32, 16, 16, 64, 2}, {3, 64, 8, 8, 64, 1},   {3, 1, 5, 9, 16, 1},
    {1, 3, 28, 28, 16, 1},  {3, 16, 7, 7, 3, 1},    {3, 12, 17, 17, 12, 1},
    {3, 3, 17, 9, 5, 2},    {1, 48, 8, 8, 12, 1},   {3, 16, 9, 7, 16, 2},
    {1, 64, 32, 32, 16, 1}, {3, 12, 5, 5, 48, 2},
    {2, 5, 33, 33, 7, 1},   {1, 2, 32, 34, 1, 1},   {2, 4, 66, 40, 2, 2},
    /* unpadded reads: one pixel, one row, rows of 1..4 vectors with
     * interior blocks, odd heights, paired 8-wide rows with an odd count
     * of row pairs (6 and 10 rows), B = 1 */
    {1, 3, 1, 1, 4, 1},     {1, 3, 1, 20, 2, 1},    {1, 2, 3, 64, 5, 1},
    {2, 3, 15, 16, 4, 1},   {2, 3, 2, 17, 16, 1},   {1, 5, 6, 8, 16, 1},
    {2, 7, 10, 8, 16, 1},   {1, 16, 8, 8, 17, 1},
    /* stride-2 input gradient: odd and even sizes, rows of 1..3 vectors */
    {2, 7, 33, 35, 13, 2},  {1, 5, 3, 3, 3, 2},     {2, 9, 4, 65, 8, 2},
    /* stride 2 with channels in the lanes (AVX-512): partial channel
     * vectors, odd sizes, rows of 8 + 1 pixels, and many channel chunks
     * (the weights' transposed copy outgrows the workspace) */
    {2, 20, 9, 11, 24, 2},  {1, 17, 6, 18, 40, 2},  {1, 16, 6, 6, 48, 2},
    {2, 16, 1, 9, 17, 2},   {1, 17, 9, 1, 16, 2},
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

/* One shape, one variant: forward, din (acc 0 and 1), dw, each on 1 and 2
 * threads, against the double loops, and 1 vs 2 threads bytewise. */
static void check_shape(const Shape *s, int variant)
{
    int B = s->B, C = s->C, H = s->H, W = s->W, Co = s->Co, S = s->S;
    int Ho = rt_conv_out(H, 3, S, 1), Wo = rt_conv_out(W, 3, S, 1);
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * Ho * Wo, nw = (size_t)Co * C * 9;
    double *in = tu_calloc(ni, sizeof(double)), *w = tu_calloc(nw, sizeof(double));
    double *dout = tu_calloc(no, sizeof(double)), *out = tu_calloc(no, sizeof(double));
    double *din = tu_calloc(ni, sizeof(double)), *dw = tu_calloc(nw, sizeof(double));
    float *inf = tu_calloc(ni, sizeof(float)), *wf = tu_calloc(nw, sizeof(float));
    float *doutf = tu_calloc(no, sizeof(float)), *outf[2], *dinf[2], *dwf[2];
    RtRng rng;
    rt_rng_seed(&rng, 1000u + (unsigned)(s - shapes));
    gc_fill(in, ni, &rng);
    gc_fill(w, nw, &rng);
    gc_fill(dout, no, &rng);
    gc_to_float(inf, in, ni);
    gc_to_float(wf, w, nw);
    gc_to_float(doutf, dout, no);
    /* oracle: din = 0.5 + conv^T dout, dw = 0.25 + sum */
    rt_conv2d_forward_ref_d(out, in, w, B, C, H, W, Co, 3, S, 1);
    for (size_t i = 0; i < ni; i++)
        din[i] = 0.5;
    for (size_t i = 0; i < nw; i++)
        dw[i] = 0.25;
    rt_conv2d_backward_ref_d(din, 1, dw, dout, in, w, B, C, H, W, Co, 3, S, 1);

    const char *isa_e = getenv("OPTC_CONV_ISA");
    int direct = tu_has_avx2() && !(isa_e && strcmp(isa_e, "none") == 0);
    for (int th = 1; th <= 2; th++) {
        int k = th - 1;
        outf[k] = tu_calloc(no, sizeof(float));
        dinf[k] = tu_calloc(ni, sizeof(float));
        dwf[k] = tu_calloc(nw, sizeof(float));
        size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, S, 1, sizeof(float));
        RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
        const char *tag = variant ? "avx2" : "best";
        ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_FORWARD, C, Co, 3, S, 1), direct);
        ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_WEIGHTS, C, Co, 3, S, 1), direct);
        ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_DATA, C, Co, 3, S, 1), direct);

        /* the direct entry points themselves: taken, and right */
        if (direct) {
            ck_assert_int_eq(rt_conv3x3_forward(&ctx, outf[k], inf, wf, B, C, H, W, Co, S), 1);
            double e = gc_normdiff_f(outf[k], out, no);
            ck_assert_msg(e < F32_TOL, "%s forward %d/%d %dx%d s%d B%d t%d: %.3g", tag, C, Co,
                          H, W, S, B, th, e);
            for (size_t i = 0; i < nw; i++)
                dwf[k][i] = 0.25f;
            ck_assert_int_eq(rt_conv3x3_backward(&ctx, NULL, 0, dwf[k], doutf, inf, wf, B, C,
                                                 H, W, Co, S), 1);
            e = gc_normdiff_f(dwf[k], dw, nw);
            ck_assert_msg(e < F32_TOL, "%s dw %d/%d %dx%d s%d B%d t%d: %.3g", tag, C, Co, H, W,
                          S, B, th, e);
            {
                for (size_t i = 0; i < ni; i++)
                    dinf[k][i] = 1e30f;                 /* acc 0 must overwrite */
                ck_assert_int_eq(rt_conv3x3_backward(&ctx, dinf[k], 0, NULL, doutf, inf, wf,
                                                     B, C, H, W, Co, S), 1);
                for (size_t i = 0; i < ni; i++)
                    dinf[k][i] += 0.5f;
                e = gc_normdiff_f(dinf[k], din, ni);
                ck_assert_msg(e < F32_TOL, "%s din acc 0 %d/%d %dx%d s%d B%d t%d: %.3g", tag, C,
                              Co, H, W, S, B, th, e);
            }
        }
        /* through rt_conv2d_*: din added to 0.5 (acc 1), any stride */
        memset(outf[k], 0, no * sizeof(float));
        rt_conv2d_forward(&ctx, outf[k], inf, wf, B, C, H, W, Co, 3, S, 1);
        double e = gc_normdiff_f(outf[k], out, no);
        ck_assert_msg(e < F32_TOL, "%s conv2d forward %d/%d %dx%d s%d B%d t%d: %.3g", tag, C,
                      Co, H, W, S, B, th, e);
        for (size_t i = 0; i < ni; i++)
            dinf[k][i] = 0.5f;
        for (size_t i = 0; i < nw; i++)
            dwf[k][i] = 0.25f;
        rt_conv2d_backward(&ctx, dinf[k], 1, dwf[k], doutf, inf, wf, B, C, H, W, Co, 3, S, 1);
        e = gc_normdiff_f(dinf[k], din, ni);
        ck_assert_msg(e < F32_TOL, "%s conv2d din acc 1 %d/%d %dx%d s%d B%d t%d: %.3g", tag, C,
                      Co, H, W, S, B, th, e);
        e = gc_normdiff_f(dwf[k], dw, nw);
        ck_assert_msg(e < F32_TOL, "%s conv2d dw %d/%d %dx%d s%d B%d t%d: %.3g", tag, C, Co,
                      H, W, S, B, th, e);
        free(ctx.scratch);
    }
    /* the direct kernels' results do not depend on the thread count */
    ck_assert_mem_eq(outf[0], outf[1], no * sizeof(float));
    ck_assert_mem_eq(dwf[0], dwf[1], nw * sizeof(float));
    if (direct)
        ck_assert_mem_eq(dinf[0], dinf[1], ni * sizeof(float));
    for (int k = 0; k < 2; k++)
        free(outf[k]), free(dinf[k]), free(dwf[k]);
    free(in), free(w), free(dout), free(out), free(din), free(dw);
    free(inf), free(wf), free(doutf);
}

/* Loop index: shape i * 2 + variant. */
START_TEST(test_direct_vs_ref)
{
    int si = _i / 2, variant = _i % 2;
    const Shape *s = &shapes[si];
    if (tu_sanitized() && (size_t)s->C * s->Co * s->H * s->W > 200000)
        TEST_SKIP("shape %d under the sanitizers: the double loops dominate; smaller shapes cover the code",
                  si);
    if (!tu_has_avx2())
        fprintf(stderr, "test_conv: no AVX2+FMA here: the direct kernels are skipped, "
                        "the im2col path is checked\n");
    if (isa_env[variant])
        setenv("OPTC_CONV_ISA", isa_env[variant], 1);
    else
        unsetenv("OPTC_CONV_ISA");
    check_shape(s, variant);
    unsetenv("OPTC_CONV_ISA");
}
END_TEST

/* The pointwise kernels (1x1, stride 1, no padding) through rt_conv2d_*:
 * forward, din added (acc 1) and written (acc 0), dw added, 1 and 2
 * threads (bytes equal), against the double loops; loop index: shape i * 2
 * + variant. */
static const int pw_shapes[][5] = {     /* B, C, H, W, Co */
    {3, 24, 32, 32, 48}, {2, 48, 8, 8, 12}, {3, 5, 7, 7, 3}, {1, 13, 5, 3, 9}, {2, 36, 16, 16, 7},
    /* the 1x1 forward's packed panels: ragged last panel and vector (N
     * 1073), panels of 2 vectors (700 inputs), too many inputs to pack */
    {2, 13, 37, 29, 11}, {2, 700, 1, 83, 5}, {1, 1100, 1, 45, 3},
};
#define NPW (int)(sizeof pw_shapes / sizeof pw_shapes[0])

START_TEST(test_pointwise)
{
    const int *d = pw_shapes[_i / 2];
    int B = d[0], C = d[1], H = d[2], W = d[3], Co = d[4];
    if (isa_env[_i % 2])
        setenv("OPTC_CONV_ISA", isa_env[_i % 2], 1);
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * H * W, nw = (size_t)Co * C;
    double *in = tu_calloc(ni, sizeof(double)), *w = tu_calloc(nw, sizeof(double));
    double *dout = tu_calloc(no, sizeof(double)), *out = tu_calloc(no, sizeof(double));
    double *din = tu_calloc(ni, sizeof(double)), *dw = tu_calloc(nw, sizeof(double));
    float *inf = tu_calloc(ni, sizeof(float)), *wf = tu_calloc(nw, sizeof(float));
    float *doutf = tu_calloc(no, sizeof(float)), *of[2], *dif[2], *dwf[2];
    RtRng rng;
    rt_rng_seed(&rng, 77u + (unsigned)_i);
    gc_fill(in, ni, &rng);
    gc_fill(w, nw, &rng);
    gc_fill(dout, no, &rng);
    gc_to_float(inf, in, ni);
    gc_to_float(wf, w, nw);
    gc_to_float(doutf, dout, no);
    rt_conv2d_forward_ref_d(out, in, w, B, C, H, W, Co, 1, 1, 0);
    for (size_t i = 0; i < nw; i++)
        dw[i] = 0.25;
    rt_conv2d_backward_ref_d(din, 0, dw, dout, in, w, B, C, H, W, Co, 1, 1, 0);
    /* rt_conv1x1_bnin_forward's images (one per thread); none in double */
    ck_assert_uint_eq(rt_conv2d_scratch_bytes(2, B, C, H, W, 1, 1, 0, sizeof(float)),
                      (size_t)2 * C * H * W * sizeof(float));
    ck_assert_uint_eq(rt_conv2d_scratch_bytes(2, B, C, H, W, 1, 1, 0, sizeof(double)), 0);
    for (int k = 0; k < 2; k++) {
        RtCtx ctx = {.threads = k + 1};
        of[k] = tu_calloc(no, sizeof(float));
        dif[k] = tu_calloc(ni, sizeof(float));
        dwf[k] = tu_calloc(nw, sizeof(float));
        if (tu_has_avx2())
            ck_assert_int_eq(rt_conv1x1_forward(&ctx, of[k], inf, wf, B, C, H * W, Co), 1);
        rt_conv2d_forward(&ctx, of[k], inf, wf, B, C, H, W, Co, 1, 1, 0);
        double e = gc_normdiff_f(of[k], out, no);
        ck_assert_msg(e < F32_TOL, "pointwise forward %d/%d %dx%d t%d: %.3g", C, Co, H, W, k + 1, e);
        for (size_t i = 0; i < ni; i++)
            dif[k][i] = 1e30f;                      /* acc 0 must overwrite */
        for (size_t i = 0; i < nw; i++)
            dwf[k][i] = 0.25f;
        rt_conv2d_backward(&ctx, dif[k], 0, dwf[k], doutf, inf, wf, B, C, H, W, Co, 1, 1, 0);
        e = gc_normdiff_f(dif[k], din, ni);
        ck_assert_msg(e < F32_TOL, "pointwise din %d/%d %dx%d t%d: %.3g", C, Co, H, W, k + 1, e);
        e = gc_normdiff_f(dwf[k], dw, nw);
        ck_assert_msg(e < F32_TOL, "pointwise dw %d/%d %dx%d t%d: %.3g", C, Co, H, W, k + 1, e);
        /* acc 1 adds the same again */
        rt_conv2d_backward(&ctx, dif[k], 1, NULL, doutf, inf, wf, B, C, H, W, Co, 1, 1, 0);
        for (size_t i = 0; i < ni; i++)
            dif[k][i] *= 0.5f;                      /* exact: back to one din */
        e = gc_normdiff_f(dif[k], din, ni);
        ck_assert_msg(e < F32_TOL, "pointwise din acc 1 %d/%d t%d: %.3g", C, Co, k + 1, e);
    }
    if (tu_has_avx2()) {   /* OpenBLAS's threading is its own business */
        ck_assert_mem_eq(of[0], of[1], no * sizeof(float));
        ck_assert_mem_eq(dif[0], dif[1], ni * sizeof(float));
        ck_assert_mem_eq(dwf[0], dwf[1], nw * sizeof(float));
    }
    for (int k = 0; k < 2; k++)
        free(of[k]), free(dif[k]), free(dwf[k]);
    free(in), free(w), free(dout), free(out), free(din), free(dw);
    free(inf), free(wf), free(doutf);
    unsetenv("OPTC_CONV_ISA");
}
END_TEST

/* The 1x1 conv of relu(bn(x)) with h never written (rt_conv1x1_bnin_*,
 * its BN applied as the forward packs its panels) against the BN writing
 * h (rt_bn_relu_recompute) and the plain 1x1 conv reading it: the same
 * bytes, forward and dw, 1 and 2 threads; x's images further apart than
 * C x N (a dense stage's prefix). Loop index: shape i * 2 + variant. */
static const int pwbn_shapes[][4] = {   /* B, C, N, Co */
    {3, 24, 1024, 48}, {2, 84, 1024, 48}, {2, 13, 1073, 11}, {2, 700, 83, 5},
    {1, 1100, 45, 3}, {3, 36, 64, 12}, {2, 5, 7, 3},
};
#define NPWBN (int)(sizeof pwbn_shapes / sizeof pwbn_shapes[0])

START_TEST(test_pointwise_bnin)
{
    if (!tu_has_avx2())
        TEST_SKIP("no AVX2+FMA here: no 1x1 kernels with a BN");
    const int *d = pwbn_shapes[_i / 2];
    int B = d[0], C = d[1], N = d[2], Co = d[3];
    if (isa_env[_i % 2])
        setenv("OPTC_CONV_ISA", isa_env[_i % 2], 1);
    size_t xs = (size_t)(C + 3) * N, ni = (size_t)B * xs, nh = (size_t)B * C * N;
    size_t no = (size_t)B * Co * N, nw = (size_t)Co * C;
    float *in = tu_calloc(ni, sizeof(float)), *h = tu_calloc(nh, sizeof(float));
    float *w = tu_calloc(nw, sizeof(float)), *dout = tu_calloc(no, sizeof(float));
    float *st = tu_calloc((size_t)4 * C, sizeof(float));
    float *mean = st, *rstd = st + C, *gamma = st + 2 * C, *beta = st + 3 * C;
    RtRng rng;
    rt_rng_seed(&rng, 91u + (unsigned)_i);
    for (size_t i = 0; i < ni; i++)
        in[i] = (float)rt_rng_uniform(&rng) * 4 - 2;
    for (size_t i = 0; i < nw; i++)
        w[i] = (float)rt_rng_uniform(&rng) - 0.5f;
    for (size_t i = 0; i < no; i++)
        dout[i] = (float)rt_rng_uniform(&rng) - 0.5f;
    for (int c = 0; c < C; c++) {
        mean[c] = (float)rt_rng_uniform(&rng) - 0.5f;
        rstd[c] = (float)rt_rng_uniform(&rng) + 0.5f;
        gamma[c] = (float)rt_rng_uniform(&rng) * 2 - 1;
        beta[c] = (float)rt_rng_uniform(&rng) - 0.5f;
    }
    RtCtx one = {.threads = 1};
    rt_bn_relu_recompute(&one, h, in, mean, rstd, gamma, beta, B, C, N, 0, xs);
    size_t sb = (size_t)2 * C * N * sizeof(float);
    void *scratch = tu_calloc(sb, 1);
    float *ref = tu_calloc(no, sizeof(float)), *out = tu_calloc(no, sizeof(float));
    float *dwr = tu_calloc(nw, sizeof(float)), *dw = tu_calloc(nw, sizeof(float));
    ck_assert_int_eq(rt_conv1x1_forward(&one, ref, h, w, B, C, N, Co), 1);
    ck_assert_int_eq(rt_conv1x1_backward(&one, NULL, 0, dwr, dout, h, w, B, C, N, Co), 1);
    for (int k = 0; k < 2; k++) {
        RtCtx ctx = {.threads = k + 1, .scratch = scratch, .scratch_bytes = sb};
        for (size_t i = 0; i < no; i++)
            out[i] = 1e30f;
        memset(dw, 0, nw * sizeof(float));
        ck_assert_int_eq(rt_conv1x1_bnin_forward(&ctx, out, in, xs, mean, rstd, gamma, beta, w,
                                                 B, C, N, Co), 1);
        ck_assert_int_eq(rt_conv1x1_bnin_backward(&ctx, NULL, 0, dw, dout, in, xs, mean, rstd,
                                                  gamma, beta, w, B, C, N, Co), 1);
        ck_assert_msg(memcmp(out, ref, no * sizeof(float)) == 0, "bnin forward %d/%d N%d t%d",
                      C, Co, N, k + 1);
        ck_assert_msg(memcmp(dw, dwr, nw * sizeof(float)) == 0, "bnin dw %d/%d N%d t%d", C, Co,
                      N, k + 1);
    }
    free(in), free(h), free(w), free(dout), free(st), free(scratch);
    free(ref), free(out), free(dwr), free(dw);
    unsetenv("OPTC_CONV_ISA");
}
END_TEST

/* OPTC_CONV_ISA=none turns the direct kernels off: the callers' im2col
 * path then runs (and still agrees with the loops). */
START_TEST(test_isa_none)
{
    setenv("OPTC_CONV_ISA", "none", 1);
    ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_FORWARD, 16, 16, 3, 1, 1), 0);
    check_shape(&shapes[7], 0);
    unsetenv("OPTC_CONV_ISA");
    ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_FORWARD, 16, 16, 3, 1, 1), tu_has_avx2());
    ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_FORWARD, 16, 16, 3, 3, 1), 0);
    ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_FORWARD, 16, 16, 1, 1, 0), 0);
    ck_assert_int_eq(rt_conv3x3_taken(RT_CONV3X3_FORWARD, 16, 16, 3, 1, 0), 0);
}
END_TEST

/* A workspace too small for one padded chunk: the stride-2 kernels decline
 * and leave everything untouched; stride 1 needs no workspace at all. */
START_TEST(test_small_scratch)
{
    if (!tu_has_avx2())
        TEST_SKIP("no AVX2+FMA here: no direct kernels to decline");
    float in[2 * 16 * 16] = {0}, w[2 * 2 * 9] = {0}, out[2 * 16 * 16], dw[2 * 2 * 9];
    float sc[4];
    RtCtx ctx = {.threads = 1, .scratch = sc, .scratch_bytes = sizeof sc};
    for (int i = 0; i < 2 * 16 * 16; i++)
        out[i] = 7;
    for (int i = 0; i < 36; i++)
        dw[i] = 7;
    ck_assert_int_eq(rt_conv3x3_forward(&ctx, out, in, w, 1, 2, 16, 16, 2, 2), 0);
    ck_assert_int_eq(rt_conv3x3_backward(&ctx, NULL, 0, dw, out, in, w, 1, 2, 16, 16, 2, 2), 0);
    for (int i = 0; i < 2 * 16 * 16; i++)
        ck_assert(out[i] == 7.0f);
    for (int i = 0; i < 36; i++)
        ck_assert(dw[i] == 7.0f);
    /* stride 1, no workspace: taken, zeros in, zeros out */
    RtCtx none = {.threads = 2};
    ck_assert_int_eq(rt_conv3x3_forward(&none, out, in, w, 1, 2, 16, 16, 2, 1), 1);
    ck_assert_int_eq(rt_conv3x3_backward(&none, NULL, 0, dw, out, in, w, 1, 2, 16, 16, 2, 1), 1);
    for (int i = 0; i < 2 * 16 * 16; i++)
        ck_assert(out[i] == 0.0f);
    for (int i = 0; i < 36; i++)
        ck_assert(dw[i] == 7.0f);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("direct");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_direct_vs_ref, 0, 2 * NSHAPES);
    tcase_add_loop_test(tc, test_pointwise, 0, 2 * NPW);
    tcase_add_loop_test(tc, test_pointwise_bnin, 0, 2 * NPWBN);
    tcase_add_test(tc, test_isa_none);
    tcase_add_test(tc, test_small_scratch);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(conv_suite)
