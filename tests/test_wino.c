/* test_wino.c — the Winograd F(4x4, 3x3) float convolutions
 * (runtime/winograd.c) against the plain double loops
 * (rt_conv2d_forward_ref_d, rt_conv2d_backward_ref_d), for every
 * instruction-set variant this machine has (OPTC_CONV_ISA=avx2 forces the
 * 8-wide kernels on an AVX-512 machine):
 *   - forward, input gradient written (acc 0) and added to (acc 1), weight
 *     gradient added to what is there (Cout >= 16 only), called directly
 *     and through rt_conv2d_forward / rt_conv2d_backward (which must give
 *     the same bytes: the dispatch takes Winograd);
 *   - ResNet-20's 16/32/64 channels at 32/16/8 pixels, DenseNet's 48->12,
 *     odd sizes (7x7, 5x9, 9x13: tiles cut by the border), channel counts
 *     that are not multiples of 16 or of the register block (12, 20, 9),
 *     Cout > Cin and Cin < 8 (not taken: the direct kernels do it), B = 1;
 *   - 1 and 2 threads, the same bytes (no summation order depends on the
 *     thread count), with the workspace rt_conv2d_scratch_bytes gives;
 *   - OPTC_CONV_WINO=0 and a workspace too small: not taken, nothing
 *     touched.
 * Tolerance: max|f - d| / max|d| below FWD_TOL = 2e-6 for the forward pass
 * (F(2x2, 3x3): measured 2e-7..4e-7 at 16..64 channels, as accurate as the
 * direct kernels; F(4x4, 3x3) there makes float gradients 7 times as far from
 * double's, see winograd.c) and DIN_TOL = 2e-5 for the input gradient (F(4x4,
 * 3x3): measured 3e-6..7e-6, linear in dout, no mask depends on it; the
 * gradient checks and the oracle allow 1e-4), DW_TOL = 2e-5 for the weight
 * gradient (F(4x4, 3x3) from 8 pixels wide: 2e-6..4e-6; F(2x2, 3x3) on
 * narrower images: 2e-7), EVAL_TOL = 2e-5 for the inference forward (F(4x4,
 * 3x3) from 16 pixels wide, as the input gradient; the BN and relu it applies
 * are checked against the double affine map and relu). On a machine without
 * AVX2+FMA the cases report themselves skipped. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gradcheck.h"
#include "rt.h"
#include "testutil.h"
#include "tmain.h"
#include "winograd.h"

#define FWD_TOL 2e-6
#define DIN_TOL 2e-5
#define DW_TOL 2e-5
#define EVAL_TOL 2e-5

/* The variants: 0 = this machine's best, 1 = AVX2 forced. */
static const char *const isa_env[] = {NULL, "avx2"};

typedef struct {
    int B, C, H, W, Co;
} Shape;

static const Shape shapes[] = {
    {2, 16, 32, 32, 16}, {3, 32, 16, 16, 32}, {5, 64, 8, 8, 64},  {2, 48, 32, 32, 12},
    {3, 48, 8, 8, 12},   {1, 16, 7, 7, 16},   {2, 20, 5, 9, 12},  {3, 9, 9, 13, 20},
    {1, 12, 4, 4, 3},    {2, 3, 8, 8, 16},    {1, 64, 32, 32, 64}, {2, 8, 1, 6, 8},
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static void set_variant(int variant)
{
    if (isa_env[variant])
        setenv("OPTC_CONV_ISA", isa_env[variant], 1);
    else
        unsetenv("OPTC_CONV_ISA");
}

static void check_shape(const Shape *s, int variant)
{
    int B = s->B, C = s->C, H = s->H, W = s->W, Co = s->Co;
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * H * W, nw = (size_t)Co * C * 9;
    double *in = tu_calloc(ni, sizeof(double)), *w = tu_calloc(nw, sizeof(double));
    double *dout = tu_calloc(no, sizeof(double)), *out = tu_calloc(no, sizeof(double));
    double *din = tu_calloc(ni, sizeof(double));
    float *inf = tu_calloc(ni, sizeof(float)), *wf = tu_calloc(nw, sizeof(float));
    float *doutf = tu_calloc(no, sizeof(float));
    float *outf[2], *dinf[2], *outd = tu_calloc(no, sizeof(float));
    float *dind = tu_calloc(ni, sizeof(float));
    RtRng rng;
    rt_rng_seed(&rng, 2000u + (unsigned)(s - shapes));
    gc_fill(in, ni, &rng);
    gc_fill(w, nw, &rng);
    gc_fill(dout, no, &rng);
    gc_to_float(inf, in, ni);
    gc_to_float(wf, w, nw);
    gc_to_float(doutf, dout, no);
    rt_conv2d_forward_ref_d(out, in, w, B, C, H, W, Co, 3, 1, 1);
    rt_conv2d_backward_ref_d(din, 0, NULL, dout, in, w, B, C, H, W, Co, 3, 1, 1);
    double *dw = tu_calloc(nw, sizeof(double));        /* 0.25 + the weight gradient */
    for (size_t i = 0; i < nw; i++)
        dw[i] = 0.25;
    rt_conv2d_backward_ref_d(NULL, 0, dw, dout, in, w, B, C, H, W, Co, 3, 1, 1);
    float *dwf[2];
    double *din1 = tu_calloc(ni, sizeof(double));      /* 0.5 + din, for acc 1 */
    for (size_t i = 0; i < ni; i++)
        din1[i] = 0.5 + din[i];

    const char *tag = variant ? "avx2" : "best";
    /* a conv of fewer than 8 input channels gets no Winograd workspace
     * from rt_conv2d_scratch_bytes, so neither direction is taken */
    int fwd_taken = rt_wino_taken(C, Co), din_taken = rt_wino_taken(Co, C) && C >= 8;
    for (int th = 1; th <= 2; th++) {
        int k = th - 1;
        outf[k] = tu_calloc(no, sizeof(float));
        dinf[k] = tu_calloc(ni, sizeof(float));
        size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
        RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};

        /* forward, directly */
        for (size_t i = 0; i < no; i++)
            outf[k][i] = 1e30f;
        ck_assert_int_eq(rt_wino_forward(&ctx, outf[k], inf, wf, B, C, H, W, Co), fwd_taken);
        if (fwd_taken) {
            double e = gc_normdiff_f(outf[k], out, no);
            ck_assert_msg(e < FWD_TOL, "%s forward %d->%d %dx%d B%d t%d: %.3g", tag, C, Co, H,
                          W, B, th, e);
        } else {
            ck_assert_msg(outf[k][0] == 1e30f, "not taken, yet wrote");
        }
        /* input gradient, directly: acc 0 overwrites, acc 1 adds */
        {
            for (size_t i = 0; i < ni; i++)
                dinf[k][i] = 1e30f;
            ck_assert_int_eq(rt_wino_backward_data(&ctx, dinf[k], 0, doutf, wf, B, C, H, W, Co),
                             din_taken);
        }
        if (din_taken) {
            double e = gc_normdiff_f(dinf[k], din, ni);
            ck_assert_msg(e < DIN_TOL, "%s din acc 0 %d->%d %dx%d B%d t%d: %.3g", tag, C, Co,
                          H, W, B, th, e);
            for (size_t i = 0; i < ni; i++)
                dinf[k][i] = 0.5f;
            ck_assert_int_eq(rt_wino_backward_data(&ctx, dinf[k], 1, doutf, wf, B, C, H, W, Co),
                             1);
            e = gc_normdiff_f(dinf[k], din1, ni);
            ck_assert_msg(e < DIN_TOL, "%s din acc 1 %d->%d %dx%d B%d t%d: %.3g", tag, C, Co,
                          H, W, B, th, e);
        }

        /* weight gradient, directly: added to what is there */
        dwf[k] = tu_calloc(nw, sizeof(float));
        for (size_t i = 0; i < nw; i++)
            dwf[k][i] = 0.25f;
        int dw_taken = fwd_taken && Co >= 16;
        ck_assert_int_eq(rt_wino_backward_weights(&ctx, dwf[k], doutf, inf, B, C, H, W, Co),
                         dw_taken);
        if (dw_taken) {
            double e = gc_normdiff_f(dwf[k], dw, nw);
            ck_assert_msg(e < DW_TOL, "%s dw %d->%d %dx%d B%d t%d: %.3g", tag, C, Co, H, W, B,
                          th, e);
        }

        /* through the dispatch: right, and Winograd's bytes where taken */
        rt_conv2d_forward(&ctx, outd, inf, wf, B, C, H, W, Co, 3, 1, 1);
        double e = gc_normdiff_f(outd, out, no);
        ck_assert_msg(e < FWD_TOL, "%s conv2d forward %d->%d %dx%d B%d t%d: %.3g", tag, C, Co,
                      H, W, B, th, e);
        if (fwd_taken)
            ck_assert_msg(memcmp(outd, outf[k], no * sizeof(float)) == 0,
                          "%s conv2d forward %d->%d %dx%d: not Winograd's result", tag, C, Co, H,
                          W);
        for (size_t i = 0; i < ni; i++)
            dind[i] = 0.5f;
        rt_conv2d_backward(&ctx, dind, 1, NULL, doutf, inf, wf, B, C, H, W, Co, 3, 1, 1);
        e = gc_normdiff_f(dind, din1, ni);
        ck_assert_msg(e < DIN_TOL, "%s conv2d din %d->%d %dx%d B%d t%d: %.3g", tag, C, Co, H,
                      W, B, th, e);
        if (din_taken)
            ck_assert_msg(memcmp(dind, dinf[k], ni * sizeof(float)) == 0,
                          "%s conv2d din %d->%d %dx%d: not Winograd's result", tag, C, Co, H, W);
        float *dwd = tu_calloc(nw, sizeof(float));
        for (size_t i = 0; i < nw; i++)
            dwd[i] = 0.25f;
        rt_conv2d_backward(&ctx, NULL, 0, dwd, doutf, inf, wf, B, C, H, W, Co, 3, 1, 1);
        e = gc_normdiff_f(dwd, dw, nw);
        ck_assert_msg(e < DW_TOL, "%s conv2d dw %d->%d %dx%d B%d t%d: %.3g", tag, C, Co, H, W,
                      B, th, e);
        if (dw_taken)
            ck_assert_msg(memcmp(dwd, dwf[k], nw * sizeof(float)) == 0,
                          "%s conv2d dw %d->%d %dx%d: not Winograd's result", tag, C, Co, H, W);
        free(dwd);
        free(ctx.scratch);
    }
    if (fwd_taken)
        ck_assert_msg(memcmp(outf[0], outf[1], no * sizeof(float)) == 0,
                      "%s forward %d->%d %dx%d: 1 and 2 threads differ", tag, C, Co, H, W);
    if (din_taken)
        ck_assert_msg(memcmp(dinf[0], dinf[1], ni * sizeof(float)) == 0,
                      "%s din %d->%d %dx%d: 1 and 2 threads differ", tag, C, Co, H, W);
    if (fwd_taken && Co >= 16)
        ck_assert_msg(memcmp(dwf[0], dwf[1], nw * sizeof(float)) == 0,
                      "%s dw %d->%d %dx%d: 1 and 2 threads differ", tag, C, Co, H, W);
    for (int k = 0; k < 2; k++)
        free(outf[k]), free(dinf[k]), free(dwf[k]);
    free(dw);
    free(in), free(w), free(dout), free(out), free(din), free(din1), free(inf), free(wf);
    free(doutf), free(outd), free(dind);
}

/* Loop index i of a shapes x variants test: check shape i % NSHAPES under
 * kernel variant i / NSHAPES (0: AVX2, 1: AVX-512), or skip where the
 * machine lacks it. */
#define WINO_VARIANT_CASE(i, check)                                                    \
    do {                                                                               \
        if (!tu_has_avx2())                                                            \
            TEST_SKIP("no AVX2+FMA on this machine: Winograd is never taken");         \
        __builtin_cpu_init();                                                          \
        int variant_ = (i) / NSHAPES;                                                  \
        if (variant_ == 1 && !__builtin_cpu_supports("avx512f"))                       \
            TEST_SKIP("no AVX-512: the best variant is the AVX2 one, checked already"); \
        set_variant(variant_);                                                         \
        check(&shapes[(i) % NSHAPES], variant_);                                       \
        unsetenv("OPTC_CONV_ISA");                                                     \
    } while (0)

START_TEST(test_wino_shapes) { WINO_VARIANT_CASE(_i, check_shape); }
END_TEST

/* OPTC_CONV_WINO=0, OPTC_CONV_ISA=none and a workspace one float short of
 * a slice: not taken, output untouched. */
START_TEST(test_wino_off)
{
    if (!tu_has_avx2())
        TEST_SKIP("no AVX2+FMA on this machine: Winograd is never taken");
    int B = 1, C = 16, H = 8, W = 8, Co = 16;
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * H * W;
    float *in = tu_calloc(ni, sizeof(float)), *w = tu_calloc((size_t)Co * C * 9, sizeof(float));
    float *out = tu_calloc(no, sizeof(float));
    size_t bytes = rt_conv2d_scratch_bytes(1, B, C, H, W, 3, 1, 1, sizeof(float));
    RtCtx ctx = {.threads = 1, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
    ck_assert_int_eq(rt_wino_taken(C, Co), 1);
    ck_assert_int_eq(rt_wino_forward(&ctx, out, in, w, B, C, H, W, Co), 1);
    setenv("OPTC_CONV_WINO", "0", 1);
    ck_assert_int_eq(rt_wino_taken(C, Co), 0);
    out[0] = 7.0f;
    ck_assert_int_eq(rt_wino_forward(&ctx, out, in, w, B, C, H, W, Co), 0);
    ck_assert_int_eq(rt_wino_backward_data(&ctx, out, 0, in, w, B, C, H, W, Co), 0);
    ck_assert(out[0] == 7.0f);
    unsetenv("OPTC_CONV_WINO");
    setenv("OPTC_CONV_ISA", "none", 1);
    ck_assert_int_eq(rt_wino_taken(C, Co), 0);
    ck_assert_int_eq(rt_wino_forward(&ctx, out, in, w, B, C, H, W, Co), 0);
    unsetenv("OPTC_CONV_ISA");
    /* too small a workspace: U alone needs 36*16*16 floats */
    RtCtx small = {.threads = 1, .scratch = ctx.scratch, .scratch_bytes = 36 * 16 * 16 * 4};
    ck_assert_int_eq(rt_wino_forward(&small, out, in, w, B, C, H, W, Co), 0);
    RtCtx none = {.threads = 1, .scratch = NULL, .scratch_bytes = 0};
    ck_assert_int_eq(rt_wino_forward(&none, out, in, w, B, C, H, W, Co), 0);
    ck_assert(out[0] == 7.0f);
    free(in), free(w), free(out), free(ctx.scratch);
}
END_TEST

/* The inference forward (train 0) of each shape, 1 and 2 threads:
 * rt_wino_forward_eval (F(4x4, 3x3) from 16 pixels wide) against the double
 * loops within EVAL_TOL, the same bytes for 1 and 2 threads and through
 * rt_conv2d_forward_mode(train 0); rt_conv2d_forward_mode(train 1) gives
 * rt_conv2d_forward's bytes; rt_conv2d_bn_eval (BN with running statistics,
 * relu 0 and 1) against the double conv, affine map and relu, also for a
 * stride-2 conv (no Winograd: the conv, then one pass) and with a branch
 * record (relu 1 through rt_relu_forward, which records the pieces);
 * rt_conv2d_sum_eval against the double conv's weighted sum with a tensor. */
static void check_eval(const Shape *s, int variant)
{
    int B = s->B, C = s->C, H = s->H, W = s->W, Co = s->Co;
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * H * W, nw = (size_t)Co * C * 9;
    double *in = tu_calloc(ni, sizeof(double)), *w = tu_calloc(nw, sizeof(double));
    double *out = tu_calloc(no, sizeof(double)), *bnd[2];
    double *par = tu_calloc(4 * (size_t)Co, sizeof(double));
    float *inf = tu_calloc(ni, sizeof(float)), *wf = tu_calloc(nw, sizeof(float));
    float *parf = tu_calloc(4 * (size_t)Co, sizeof(float));
    float *o[2], *x = tu_calloc(no, sizeof(float)), *y = tu_calloc(no, sizeof(float));
    RtRng rng;
    rt_rng_seed(&rng, 3000u + (unsigned)(s - shapes));
    gc_fill(in, ni, &rng);
    gc_fill(w, nw, &rng);
    gc_fill(par, 4 * (size_t)Co, &rng);
    for (int k = 0; k < Co; k++)    /* the running variance: positive */
        par[3 * Co + k] = 0.2 + par[3 * Co + k] * par[3 * Co + k];
    gc_to_float(inf, in, ni);
    gc_to_float(wf, w, nw);
    gc_to_float(parf, par, 4 * (size_t)Co);
    for (int k = 0; k < 4 * Co; k++)    /* the double reference sees the floats' values */
        par[k] = (double)parf[k];
    rt_conv2d_forward_ref_d(out, in, w, B, C, H, W, Co, 3, 1, 1);
    const double eps = 1e-5;
    for (int relu = 0; relu < 2; relu++) {
        bnd[relu] = tu_calloc(no, sizeof(double));
        for (size_t i = 0; i < no; i++) {
            int k = (int)(i / ((size_t)H * W)) % Co;
            double v = (out[i] - par[2 * Co + k]) * par[k] / sqrt(par[3 * Co + k] + eps)
                       + par[Co + k];
            bnd[relu][i] = relu && v < 0 ? 0.0 : v;
        }
    }
    const char *tag = variant ? "avx2" : "best";
    int taken = rt_wino_taken(C, Co);
    for (int th = 1; th <= 2; th++) {
        int k = th - 1;
        o[k] = tu_calloc(no, sizeof(float));
        size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
        RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
        ck_assert_int_eq(rt_wino_forward_eval(&ctx, o[k], inf, wf, B, C, H, W, Co), taken);
        if (taken) {
            double e = gc_normdiff_f(o[k], out, no);
            ck_assert_msg(e < EVAL_TOL, "%s eval %d->%d %dx%d B%d t%d: %.3g", tag, C, Co, H, W,
                          B, th, e);
        }
        rt_conv2d_forward_mode(&ctx, 0, x, inf, wf, B, C, H, W, Co, 3, 1, 1);
        ck_assert_msg(gc_normdiff_f(x, out, no) < EVAL_TOL, "%s mode 0 %d->%d", tag, C, Co);
        if (taken)
            ck_assert_msg(memcmp(x, o[k], no * sizeof(float)) == 0,
                          "%s mode 0 %d->%d %dx%d: not the eval forward's bytes", tag, C, Co, H, W);
        rt_conv2d_forward_mode(&ctx, 1, x, inf, wf, B, C, H, W, Co, 3, 1, 1);
        rt_conv2d_forward(&ctx, y, inf, wf, B, C, H, W, Co, 3, 1, 1);
        ck_assert_msg(memcmp(x, y, no * sizeof(float)) == 0, "%s mode 1 %d->%d: not the forward",
                      tag, C, Co);
        for (int relu = 0; relu < 2; relu++) {
            rt_conv2d_bn_eval(&ctx, x, inf, wf, B, C, H, W, Co, 3, 1, 1, parf, parf + Co,
                              parf + 2 * Co, parf + 3 * Co, eps, relu, 0);
            double e = gc_normdiff_f(x, bnd[relu], no);
            ck_assert_msg(e < EVAL_TOL, "%s bn_eval relu %d %d->%d %dx%d B%d t%d: %.3g", tag,
                          relu, C, Co, H, W, B, th, e);
        }
        free(ctx.scratch);
    }
    if (taken)
        ck_assert_msg(memcmp(o[0], o[1], no * sizeof(float)) == 0,
                      "%s eval %d->%d %dx%d: 1 and 2 threads differ", tag, C, Co, H, W);

    /* the sum out = -1.5 conv + 0.5 r, 2 threads: Winograd where taken */
    {
        float *rf = tu_calloc(no, sizeof(float));
        double *sd = tu_calloc(no, sizeof(double));
        for (size_t i = 0; i < no; i++) {
            rf[i] = (float)(out[(i * 7) % no] + 0.25);
            sd[i] = -1.5 * out[i] + 0.5 * (double)rf[i];
        }
        size_t sb = rt_conv2d_scratch_bytes(2, B, C, H, W, 3, 1, 1, sizeof(float));
        RtCtx sc = {.threads = 2, .scratch = tu_calloc(sb, 1), .scratch_bytes = sb};
        rt_conv2d_sum_eval(&sc, x, inf, wf, B, C, H, W, Co, 3, 1, 1, -1.5, rf, 0.5);
        double e = gc_normdiff_f(x, sd, no);
        ck_assert_msg(e < EVAL_TOL, "%s sum_eval %d->%d %dx%d B%d: %.3g", tag, C, Co, H, W, B, e);
        free(sc.scratch), free(rf), free(sd);
    }

    /* a branch record: the pieces recorded (1 where the input is positive) */
    uint8_t *mask = tu_calloc(no, 1);
    RtBranch br = {.replay = 0, .mask = mask, .cap = no};
    size_t bytes = rt_conv2d_scratch_bytes(1, B, C, H, W, 3, 1, 1, sizeof(float));
    RtCtx bc = {.threads = 1, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes,
                .branch = &br};
    rt_conv2d_bn_eval(&bc, x, inf, wf, B, C, H, W, Co, 3, 1, 1, parf, parf + Co, parf + 2 * Co,
                      parf + 3 * Co, eps, 1, 0);
    ck_assert_msg(gc_normdiff_f(x, bnd[1], no) < EVAL_TOL, "%s bn_eval with a record", tag);
    ck_assert_uint_eq(br.seen, no);
    free(bc.scratch), free(mask);

    /* stride 2: the conv, then one pass */
    int Ho = (H - 1) / 2 + 1, Wo = (W - 1) / 2 + 1;
    size_t n2 = (size_t)B * Co * Ho * Wo;
    double *r2 = tu_calloc(n2, sizeof(double));
    rt_conv2d_forward_ref_d(r2, in, w, B, C, H, W, Co, 3, 2, 1);
    for (size_t i = 0; i < n2; i++) {
        int k = (int)(i / ((size_t)Ho * Wo)) % Co;
        double v = (r2[i] - par[2 * Co + k]) * par[k] / sqrt(par[3 * Co + k] + eps) + par[Co + k];
        r2[i] = v < 0 ? 0.0 : v;
    }
    bytes = rt_conv2d_scratch_bytes(2, B, C, H, W, 3, 2, 1, sizeof(float));
    RtCtx c2 = {.threads = 2, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
    rt_conv2d_bn_eval(&c2, x, inf, wf, B, C, H, W, Co, 3, 2, 1, parf, parf + Co, parf + 2 * Co,
                      parf + 3 * Co, eps, 1, 0);
    double e2 = gc_normdiff_f(x, r2, n2);
    ck_assert_msg(e2 < FWD_TOL, "%s bn_eval stride 2 %d->%d %dx%d: %.3g", tag, C, Co, H, W, e2);
    free(c2.scratch), free(r2);

    for (int k = 0; k < 2; k++)
        free(o[k]), free(bnd[k]);
    free(in), free(w), free(out), free(par), free(inf), free(wf), free(parf), free(x), free(y);
}

START_TEST(test_wino_eval) { WINO_VARIANT_CASE(_i, check_eval); }
END_TEST

/* The training forward's conv and sum (rt_conv2d_sum_train; a 3-term one
 * too, rt_conv2d_sums_train), 1 and 2
 * threads, coefficients a float cannot hold (0.3, -1.7) and -1, 1: the
 * bytes of rt_conv2d_forward then rt_sum_forward (the terms in the other
 * order, as ResNet's sums list them), the conv's buffer untouched where
 * Winograd takes the conv and holding the conv's output where it does not
 * (fewer than 8 input channels); the double twin as its two calls. */
static void check_sum_train(const Shape *s, int variant)
{
    int B = s->B, C = s->C, H = s->H, W = s->W, Co = s->Co;
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * H * W, nw = (size_t)Co * C * 9;
    double *in = tu_calloc(ni, sizeof(double)), *w = tu_calloc(nw, sizeof(double));
    double *rd = tu_calloc(no, sizeof(double));
    float *inf = tu_calloc(ni, sizeof(float)), *wf = tu_calloc(nw, sizeof(float));
    float *rf = tu_calloc(no, sizeof(float)), *conv = tu_calloc(no, sizeof(float));
    float *ref = tu_calloc(no, sizeof(float)), *out = tu_calloc(no, sizeof(float));
    float *cbuf = tu_calloc(no, sizeof(float));
    RtRng rng;
    rt_rng_seed(&rng, 4000u + (unsigned)(s - shapes));
    gc_fill(in, ni, &rng);
    gc_fill(w, nw, &rng);
    gc_fill(rd, no, &rng);
    gc_to_float(inf, in, ni);
    gc_to_float(wf, w, nw);
    gc_to_float(rf, rd, no);
    const char *tag = variant ? "avx2" : "best";
    int taken = rt_wino_taken(C, Co);
    const double cs[2][2] = {{0.3, -1.7}, {-1, 1}};
    for (int th = 1; th <= 2; th++)
        for (int j = 0; j < 2; j++) {
            double cc = (double)(float)cs[j][0], cr = (double)(float)cs[j][1];
            size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
            RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
            rt_conv2d_forward(&ctx, conv, inf, wf, B, C, H, W, Co, 3, 1, 1);
            const float *const xs[2] = {rf, conv};
            const float c[2] = {(float)cr, (float)cc};
            rt_sum_forward(&ctx, ref, 2, xs, c, no);
            for (size_t i = 0; i < no; i++)
                cbuf[i] = 1e30f, out[i] = -1e30f;
            rt_conv2d_sum_train(&ctx, out, cbuf, inf, wf, B, C, H, W, Co, 3, 1, 1, cc, rf, cr);
            ck_assert_msg(memcmp(out, ref, no * sizeof(float)) == 0,
                          "%s sum_train %d->%d %dx%d B%d t%d c%d: not the conv and sum's bytes",
                          tag, C, Co, H, W, B, th, j);
            if (taken)
                ck_assert_msg(cbuf[0] == 1e30f && cbuf[no - 1] == 1e30f,
                              "%s sum_train %d->%d: Winograd wrote the conv's buffer", tag, C, Co);
            else
                ck_assert_msg(memcmp(cbuf, conv, no * sizeof(float)) == 0,
                              "%s sum_train %d->%d: the conv's buffer", tag, C, Co);
            free(ctx.scratch);
        }
    /* a 3-term sum (rt_conv2d_sums_train; heavy ball's), the conv at each
     * place among the terms: rt_sum_forward's bytes, the conv's buffer as
     * above */
    float *r2 = tu_calloc(no, sizeof(float));
    for (size_t i = 0; i < no; i++)
        r2[i] = (float)rt_rng_normal(&rng);
    for (int th = 1; th <= 2; th++)
        for (int j = 0; j < 3; j++) {
            size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
            RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
            rt_conv2d_forward(&ctx, conv, inf, wf, B, C, H, W, Co, 3, 1, 1);
            const float c[3] = {1.9f, -1.0f, -0.9f};
            const float *xr[3], *xf[3];
            for (int i = 0, k = 0; i < 3; i++) {
                xr[i] = i == j ? conv : k ? r2 : rf;
                xf[i] = i == j ? cbuf : k ? r2 : rf;
                k += i != j;
            }
            rt_sum_forward(&ctx, ref, 3, xr, c, no);
            for (size_t i = 0; i < no; i++)
                cbuf[i] = 1e30f, out[i] = -1e30f;
            rt_conv2d_sums_train(&ctx, out, cbuf, inf, wf, B, C, H, W, Co, 3, 1, 1, 3, j, xf, c);
            ck_assert_msg(memcmp(out, ref, no * sizeof(float)) == 0,
                          "%s sums_train %d->%d %dx%d B%d t%d conv at %d: not the sum's bytes",
                          tag, C, Co, H, W, B, th, j);
            if (taken)
                ck_assert_msg(cbuf[0] == 1e30f && cbuf[no - 1] == 1e30f,
                              "%s sums_train %d->%d: Winograd wrote the conv's buffer", tag, C,
                              Co);
            else
                ck_assert_msg(memcmp(cbuf, conv, no * sizeof(float)) == 0,
                              "%s sums_train %d->%d: the conv's buffer", tag, C, Co);
            free(ctx.scratch);
        }
    /* a sum, then a sum of it (rt_conv2d_sums_then_train; momentum's v then
     * x + v, Nesterov's x then its extrapolation): both as rt_sum_forward
     * writes them, the second's output in the place of the first's other
     * term (momentum's plan), of the conv's buffer (Nesterov's; momentum's
     * first step, whose first sum has one term) or apart */
    float *q = tu_calloc(no, sizeof(float)), *t1 = tu_calloc(no, sizeof(float));
    float *ref2 = tu_calloc(no, sizeof(float)), *o2 = tu_calloc(no, sizeof(float));
    for (size_t i = 0; i < no; i++)
        q[i] = (float)rt_rng_normal(&rng);
    for (int th = 1; th <= 2; th++)
        for (int v = 0; v < 4; v++) {
            size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
            RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
            int n = v == 2 ? 3 : v == 3 ? 1 : 2, j = v == 3 ? 0 : 1;
            int n2 = v == 2 ? 3 : 2, j2 = v == 1 ? 0 : n2 - 1;
            const float c[3] = {0.9f, -0.1f, 0.7f}, c2[3] = {1.2817535f, -0.2817535f, 1.0f};
            rt_conv2d_forward(&ctx, conv, inf, wf, B, C, H, W, Co, 3, 1, 1);
            const float *xr[3] = {rf, conv, r2}, *xr2[3] = {q, q, r2};
            if (v == 3)     /* one term: momentum's first v = -(1 - g) grad */
                xr[0] = conv;
            xr2[j2] = ref;
            rt_sum_forward(&ctx, ref, n, xr, c, no);
            rt_sum_forward(&ctx, ref2, n2, xr2, c2, no);
            memcpy(t1, rf, no * sizeof(float));
            for (size_t i = 0; i < no; i++)
                cbuf[i] = 1e30f, out[i] = o2[i] = -1e30f;
            float *dst2 = v == 0 ? t1 : v == 1 || v == 3 ? cbuf : o2;
            const float *xf[3] = {t1, cbuf, r2}, *xf2[3] = {q, q, r2};
            if (v == 3)
                xf[0] = cbuf;
            xf2[j2] = out;
            rt_conv2d_sums_then_train(&ctx, out, cbuf, inf, wf, B, C, H, W, Co, 3, 1, 1, n, j,
                                      xf, c, dst2, n2, j2, xf2, c2);
            ck_assert_msg(memcmp(out, ref, no * sizeof(float)) == 0
                              && memcmp(dst2, ref2, no * sizeof(float)) == 0,
                          "%s sums_then_train %d->%d %dx%d B%d t%d case %d: not the sums' bytes",
                          tag, C, Co, H, W, B, th, v);
            /* the inference twin (rt_conv2d_sums_then_eval): the bytes of the
             * inference conv (rt_conv2d_forward_mode, train 0) then the
             * sums; and the first sum alone (heavy ball's 3 terms) */
            rt_conv2d_forward_mode(&ctx, 0, conv, inf, wf, B, C, H, W, Co, 3, 1, 1);
            rt_sum_forward(&ctx, ref, n, xr, c, no);
            rt_sum_forward(&ctx, ref2, n2, xr2, c2, no);
            for (int alone = 0; alone < 2; alone++) {
                memcpy(t1, rf, no * sizeof(float));
                for (size_t i = 0; i < no; i++)
                    cbuf[i] = 1e30f, out[i] = o2[i] = -1e30f;
                rt_conv2d_sums_then_eval(&ctx, out, cbuf, inf, wf, B, C, H, W, Co, 3, 1, 1, n,
                                         j, xf, c, alone ? NULL : dst2, n2, j2, xf2, c2);
                ck_assert_msg(memcmp(out, ref, no * sizeof(float)) == 0
                                  && (alone || memcmp(dst2, ref2, no * sizeof(float)) == 0),
                              "%s sums_then_eval %d->%d %dx%d B%d t%d case %d%s: not the bytes "
                              "of the inference conv and the sums", tag, C, Co, H, W, B, th, v,
                              alone ? " (one sum)" : "");
                if (alone && taken)
                    ck_assert_msg(cbuf[0] == 1e30f && cbuf[no - 1] == 1e30f,
                                  "%s sums_then_eval %d->%d: Winograd wrote the conv's buffer",
                                  tag, C, Co);
            }
            /* with the input's BN + relu (rt_conv2d_bnin_sums_then_eval): the
             * bytes of rt_bn_relu_forward_eval into h, then the above on h */
            {
                float *bp = tu_calloc(4 * (size_t)C, sizeof(float));
                float *hh = tu_calloc(ni, sizeof(float)), *hr = tu_calloc(ni, sizeof(float));
                for (int k = 0; k < C; k++)
                    bp[k] = 1.1f, bp[C + k] = 0.1f, bp[2 * C + k] = 0.05f, bp[3 * C + k] = 0.9f;
                rt_bn_relu_forward_eval(&ctx, hr, inf, bp, bp + C, bp + 2 * C, bp + 3 * C, B, C,
                                        H * W, 1e-5, 0);
                rt_conv2d_forward_mode(&ctx, 0, conv, hr, wf, B, C, H, W, Co, 3, 1, 1);
                rt_sum_forward(&ctx, ref, n, xr, c, no);
                rt_sum_forward(&ctx, ref2, n2, xr2, c2, no);
                memcpy(t1, rf, no * sizeof(float));
                for (size_t i = 0; i < no; i++)
                    cbuf[i] = 1e30f, out[i] = o2[i] = -1e30f;
                for (size_t i = 0; i < ni; i++)
                    hh[i] = 1e30f;
                rt_conv2d_bnin_sums_then_eval(&ctx, out, cbuf, hh, inf, wf, B, C, H, W, Co, 3, 1,
                                              1, bp, bp + C, bp + 2 * C, bp + 3 * C, 1e-5, 0, n,
                                              j, xf, c, dst2, n2, j2, xf2, c2);
                ck_assert_msg(memcmp(out, ref, no * sizeof(float)) == 0
                                  && memcmp(dst2, ref2, no * sizeof(float)) == 0,
                              "%s bnin_sums_then_eval %d->%d %dx%d B%d t%d case %d: not the bytes "
                              "of the BN, the inference conv and the sums", tag, C, Co, H, W, B,
                              th, v);
                if (taken)  /* the BN applied as the transform reads x: h not written */
                    ck_assert_msg(hh[0] == 1e30f && hh[ni - 1] == 1e30f,
                                  "%s bnin_sums_then_eval %d->%d: wrote h", tag, C, Co);
                free(bp), free(hh), free(hr);
            }
            free(ctx.scratch);
        }
    free(q), free(t1), free(ref2), free(o2);
    free(r2);
    /* the double twin */
    {
        double *cd = tu_calloc(no, sizeof(double)), *sd = tu_calloc(no, sizeof(double));
        double *od = tu_calloc(no, sizeof(double)), *cb = tu_calloc(no, sizeof(double));
        size_t bytes = rt_conv2d_scratch_bytes(2, B, C, H, W, 3, 1, 1, sizeof(double));
        RtCtx ctx = {.threads = 2, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
        rt_conv2d_forward_d(&ctx, cd, in, w, B, C, H, W, Co, 3, 1, 1);
        const double *const xs[2] = {rd, cd};
        const double c[2] = {-1.7, 0.3};
        rt_sum_forward_d(&ctx, sd, 2, xs, c, no);
        rt_conv2d_sum_train_d(&ctx, od, cb, in, w, B, C, H, W, Co, 3, 1, 1, 0.3, rd, -1.7);
        ck_assert_msg(memcmp(od, sd, no * sizeof(double)) == 0, "sum_train_d %d->%d", C, Co);
        free(ctx.scratch), free(cd), free(sd), free(od), free(cb);
    }
    free(in), free(w), free(rd), free(inf), free(wf), free(rf), free(conv), free(ref), free(out);
    free(cbuf);
}

START_TEST(test_wino_sum_train) { WINO_VARIANT_CASE(_i, check_sum_train); }
END_TEST

/* The conv with its input's BN and relu (rt_conv2d_bnin_bn_eval,
 * rt_conv2d_bnin_sum_eval), 1 and 2 threads, output BN relu 0 and 1: the
 * bytes of rt_bn_relu_forward_eval into h then rt_conv2d_bn_eval /
 * rt_conv2d_sum_eval reading h (input BN statistics that send 10..90 % of
 * the inputs below 0), h untouched where Winograd takes the conv and
 * holding relu(bn(x)) where it does not; with a branch record, the two
 * calls (the record's pieces); the double twins as their two calls. */
static void check_bnin(const Shape *s, int variant)
{
    int B = s->B, C = s->C, H = s->H, W = s->W, Co = s->Co;
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * H * W, nw = (size_t)Co * C * 9;
    double *xd = tu_calloc(ni, sizeof(double)), *w = tu_calloc(nw, sizeof(double));
    double *par = tu_calloc(4 * (size_t)(C + Co), sizeof(double));
    float *x = tu_calloc(ni, sizeof(float)), *wf = tu_calloc(nw, sizeof(float));
    float *pf = tu_calloc(4 * (size_t)(C + Co), sizeof(float)), *ip = pf, *op = pf + 4 * C;
    float *h = tu_calloc(ni, sizeof(float)), *href = tu_calloc(ni, sizeof(float));
    float *ref = tu_calloc(no, sizeof(float)), *out = tu_calloc(no, sizeof(float));
    float *rf = tu_calloc(no, sizeof(float));
    RtRng rng;
    rt_rng_seed(&rng, 5000u + (unsigned)(s - shapes));
    gc_fill(xd, ni, &rng);
    gc_fill(w, nw, &rng);
    gc_fill(par, 4 * (size_t)(C + Co), &rng);
    for (int k = 0; k < C; k++)     /* positive variances */
        par[3 * C + k] = 0.2 + par[3 * C + k] * par[3 * C + k];
    for (int k = 0; k < Co; k++)
        par[4 * C + 3 * Co + k] = 0.2 + par[4 * C + 3 * Co + k] * par[4 * C + 3 * Co + k];
    gc_to_float(x, xd, ni);
    gc_to_float(wf, w, nw);
    gc_to_float(pf, par, 4 * (size_t)(C + Co));
    for (size_t i = 0; i < no; i++)
        rf[i] = (float)rt_rng_normal(&rng);
    const double ieps = 1e-5, eps = 1e-3;
    const char *tag = variant ? "avx2" : "best";
    int taken = rt_wino_taken(C, Co);
    size_t pos = 0;
    for (size_t i = 0; i < ni; i++) {
        int c = (int)(i / ((size_t)H * W)) % C;
        double sc = (double)ip[c] / sqrt((double)ip[3 * C + c] + ieps);
        double v = ((double)x[i] - (double)ip[2 * C + c]) * sc + (double)ip[C + c];
        pos += v > 0;
    }
    ck_assert_msg(pos > ni / 10 && pos < ni - ni / 10, "input BN: %zu of %zu positive", pos, ni);
    for (int th = 1; th <= 2; th++) {
        size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
        RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
        rt_bn_relu_forward_eval(&ctx, href, x, ip, ip + C, ip + 2 * C, ip + 3 * C, B, C, H * W,
                                ieps, 0);
        for (int relu = 0; relu < 3; relu++) {  /* 2: the sum */
            if (relu < 2)
                rt_conv2d_bn_eval(&ctx, ref, href, wf, B, C, H, W, Co, 3, 1, 1, op, op + Co,
                                  op + 2 * Co, op + 3 * Co, eps, relu, 0);
            else
                rt_conv2d_sum_eval(&ctx, ref, href, wf, B, C, H, W, Co, 3, 1, 1, -1.0, rf, 1.0);
            for (size_t i = 0; i < ni; i++)
                h[i] = 1e30f;
            for (size_t i = 0; i < no; i++)
                out[i] = -1e30f;
            if (relu < 2)
                rt_conv2d_bnin_bn_eval(&ctx, out, h, x, wf, B, C, H, W, Co, 3, 1, 1, ip, ip + C,
                                       ip + 2 * C, ip + 3 * C, ieps, 0, op, op + Co, op + 2 * Co,
                                       op + 3 * Co, eps, relu, 0);
            else
                rt_conv2d_bnin_sum_eval(&ctx, out, h, x, wf, B, C, H, W, Co, 3, 1, 1, ip, ip + C,
                                        ip + 2 * C, ip + 3 * C, ieps, 0, -1.0, rf, 1.0);
            ck_assert_msg(memcmp(out, ref, no * sizeof(float)) == 0,
                          "%s bnin %s %d->%d %dx%d B%d t%d: not bn_relu_eval and the conv's bytes",
                          tag, relu < 2 ? "bn_eval" : "sum_eval", C, Co, H, W, B, th);
            if (taken)
                ck_assert_msg(h[0] == 1e30f && h[ni - 1] == 1e30f, "%s bnin %d->%d: wrote h",
                              tag, C, Co);
            else
                ck_assert_msg(memcmp(h, href, ni * sizeof(float)) == 0, "%s bnin %d->%d: h", tag,
                              C, Co);
        }
        free(ctx.scratch);
    }
    /* a branch record: both calls, the input BN's pieces and the output's */
    {
        uint8_t *mask = tu_calloc(ni + no, 1);
        RtBranch br = {.replay = 0, .mask = mask, .cap = ni + no};
        size_t bytes = rt_conv2d_scratch_bytes(1, B, C, H, W, 3, 1, 1, sizeof(float));
        RtCtx bc = {.threads = 1, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes,
                    .branch = &br};
        rt_conv2d_bnin_bn_eval(&bc, out, h, x, wf, B, C, H, W, Co, 3, 1, 1, ip, ip + C,
                               ip + 2 * C, ip + 3 * C, ieps, 0, op, op + Co, op + 2 * Co,
                               op + 3 * Co, eps, 1, ni);
        ck_assert_uint_eq(br.seen, ni + no);
        ck_assert_msg(memcmp(h, href, ni * sizeof(float)) == 0, "%s bnin with a record: h", tag);
        rt_conv2d_bn_eval(&bc, ref, href, wf, B, C, H, W, Co, 3, 1, 1, op, op + Co, op + 2 * Co,
                          op + 3 * Co, eps, 1, 0);
        ck_assert_msg(memcmp(out, ref, no * sizeof(float)) == 0, "%s bnin with a record", tag);
        free(bc.scratch), free(mask);
    }
    /* the double twins */
    {
        double *pd = tu_calloc(4 * (size_t)(C + Co), sizeof(double)), *hd = tu_calloc(ni, 8);
        double *od = tu_calloc(no, 8), *rd = tu_calloc(no, 8), *hr = tu_calloc(ni, 8);
        double *rr = tu_calloc(no, 8);
        for (size_t i = 0; i < 4 * (size_t)(C + Co); i++)
            pd[i] = (double)pf[i];
        for (size_t i = 0; i < no; i++)
            rr[i] = (double)rf[i];
        const double *ipd = pd, *opd = pd + 4 * C;
        size_t bytes = rt_conv2d_scratch_bytes(2, B, C, H, W, 3, 1, 1, sizeof(double));
        RtCtx ctx = {.threads = 2, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
        rt_bn_relu_forward_eval_d(&ctx, hr, xd, ipd, ipd + C, ipd + 2 * C, ipd + 3 * C, B, C,
                                  H * W, ieps, 0);
        rt_conv2d_bn_eval_d(&ctx, rd, hr, w, B, C, H, W, Co, 3, 1, 1, opd, opd + Co,
                            opd + 2 * Co, opd + 3 * Co, eps, 1, 0);
        rt_conv2d_bnin_bn_eval_d(&ctx, od, hd, xd, w, B, C, H, W, Co, 3, 1, 1, ipd, ipd + C,
                                 ipd + 2 * C, ipd + 3 * C, ieps, 0, opd, opd + Co, opd + 2 * Co,
                                 opd + 3 * Co, eps, 1, 0);
        ck_assert_msg(memcmp(od, rd, no * sizeof(double)) == 0, "bnin_bn_eval_d %d->%d", C, Co);
        rt_conv2d_sum_eval_d(&ctx, rd, hr, w, B, C, H, W, Co, 3, 1, 1, -1.0, rr, 1.0);
        rt_conv2d_bnin_sum_eval_d(&ctx, od, hd, xd, w, B, C, H, W, Co, 3, 1, 1, ipd, ipd + C,
                                  ipd + 2 * C, ipd + 3 * C, ieps, 0, -1.0, rr, 1.0);
        ck_assert_msg(memcmp(od, rd, no * sizeof(double)) == 0, "bnin_sum_eval_d %d->%d", C, Co);
        free(ctx.scratch), free(pd), free(hd), free(od), free(rd), free(hr), free(rr);
    }
    free(xd), free(w), free(par), free(x), free(wf), free(pf), free(h), free(href), free(ref);
    free(out), free(rf);
}

START_TEST(test_wino_bnin) { WINO_VARIANT_CASE(_i, check_bnin); }
END_TEST

/* The backward of a 3x3 conv of h = relu(x sc + sh) with a training BN's
 * saved statistics, h not kept (rt_bn_relu_conv3x3_backward): the bytes of
 * rt_bn_relu_recompute into h and rt_conv2d_backward reading it, din
 * written and added to, dw added to, 1 and 2 threads; h untouched where
 * the weight gradient applies the BN itself (Winograd's input rows with 16
 * and more outputs, the direct kernel's groups of images with DenseNet's
 * 12: every shape of ResNet-20's and DenseNet's), written where it must be
 * (a branch record: the recompute's pieces); the double twin as its two
 * calls. */
static void check_bnin_bwd(const Shape *s, int variant)
{
    int B = s->B, C = s->C, H = s->H, W = s->W, Co = s->Co;
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * H * W, nw = (size_t)Co * C * 9;
    double *xd = tu_calloc(ni, sizeof(double)), *wd = tu_calloc(nw, sizeof(double));
    double *dd = tu_calloc(no, sizeof(double)), *pd = tu_calloc(4 * (size_t)C, sizeof(double));
    float *x = tu_calloc(ni, sizeof(float)), *w = tu_calloc(nw, sizeof(float));
    float *dout = tu_calloc(no, sizeof(float)), *pf = tu_calloc(4 * (size_t)C, sizeof(float));
    float *h = tu_calloc(ni, sizeof(float)), *href = tu_calloc(ni, sizeof(float));
    float *din[2], *dw[2];
    RtRng rng;
    rt_rng_seed(&rng, 9000u + (unsigned)(s - shapes));
    gc_fill(xd, ni, &rng);
    gc_fill(wd, nw, &rng);
    gc_fill(dd, no, &rng);
    gc_fill(pd, 4 * (size_t)C, &rng);
    for (int k = 0; k < C; k++)     /* rstd > 0 */
        pd[C + k] = 0.5 + pd[C + k] * pd[C + k];
    gc_to_float(x, xd, ni);
    gc_to_float(w, wd, nw);
    gc_to_float(dout, dd, no);
    gc_to_float(pf, pd, 4 * (size_t)C);
    const float *mean = pf, *rstd = pf + C, *gamma = pf + 2 * C, *beta = pf + 3 * C;
    const char *tag = variant ? "avx2" : "best";
    int fused = s - shapes < 5 && tu_has_avx2();    /* ResNet-20's and DenseNet's shapes */
    for (int k = 0; k < 2; k++)
        din[k] = tu_calloc(ni, sizeof(float)), dw[k] = tu_calloc(nw, sizeof(float));
    for (int th = 1; th <= 2; th++)
        for (int acc = 0; acc <= 1; acc++) {
            size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
            RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
            for (int k = 0; k < 2; k++) {
                for (size_t i = 0; i < ni; i++)
                    din[k][i] = 0.5f;
                for (size_t i = 0; i < nw; i++)
                    dw[k][i] = 0.25f;
            }
            rt_bn_relu_recompute(&ctx, href, x, mean, rstd, gamma, beta, B, C, H * W, 0,
                                 (size_t)C * H * W);
            rt_conv2d_backward(&ctx, din[0], acc, dw[0], dout, href, w, B, C, H, W, Co, 3, 1, 1);
            for (size_t i = 0; i < ni; i++)
                h[i] = 1e30f;
            rt_bn_relu_conv3x3_backward(&ctx, din[1], acc, dw[1], dout, h, x, mean, rstd, gamma,
                                        beta, B, C, H, W, 0, (size_t)C * H * W, w, Co);
            ck_assert_msg(memcmp(din[0], din[1], ni * sizeof(float)) == 0,
                          "%s bnin bwd %d->%d %dx%d B%d t%d acc%d: din", tag, C, Co, H, W, B, th,
                          acc);
            ck_assert_msg(memcmp(dw[0], dw[1], nw * sizeof(float)) == 0,
                          "%s bnin bwd %d->%d %dx%d B%d t%d acc%d: dw", tag, C, Co, H, W, B, th,
                          acc);
            int untouched = 1;
            for (size_t i = 0; i < ni; i++)
                untouched &= h[i] == 1e30f;
            if (fused)
                ck_assert_msg(untouched, "%s bnin bwd %d->%d %dx%d: wrote h", tag, C, Co, H, W);
            else if (!untouched)
                ck_assert_msg(memcmp(h, href, ni * sizeof(float)) == 0, "%s bnin bwd %d->%d: h",
                              tag, C, Co);
            /* a branch record: h recomputed (the record's pieces), the same bytes */
            uint8_t *mask = tu_calloc(ni, 1);
            for (size_t i = 0; i < ni; i++)
                mask[i] = href[i] > 0.0f;
            RtBranch br = {.replay = 1, .mask = mask, .cap = ni};
            RtCtx bc = ctx;
            bc.branch = &br;
            rt_bn_relu_conv3x3_backward(&bc, din[1], 1, dw[1], dout, h, x, mean, rstd, gamma,
                                        beta, B, C, H, W, 0, (size_t)C * H * W, w, Co);
            ck_assert_msg(memcmp(h, href, ni * sizeof(float)) == 0, "%s bnin bwd record: h",
                          tag);
            free(mask), free(ctx.scratch);
        }
    /* the double twin */
    {
        double *xp = tu_calloc(4 * (size_t)C, sizeof(double)), *hd = tu_calloc(ni, 8);
        double *hr = tu_calloc(ni, 8), *d0 = tu_calloc(ni, 8), *d1 = tu_calloc(ni, 8);
        double *g0 = tu_calloc(nw, 8), *g1 = tu_calloc(nw, 8);
        for (size_t i = 0; i < 4 * (size_t)C; i++)
            xp[i] = (double)pf[i];
        size_t bytes = rt_conv2d_scratch_bytes(2, B, C, H, W, 3, 1, 1, sizeof(double));
        RtCtx ctx = {.threads = 2, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
        rt_bn_relu_recompute_d(&ctx, hr, xd, xp, xp + C, xp + 2 * C, xp + 3 * C, B, C, H * W, 0,
                               (size_t)C * H * W);
        rt_conv2d_backward_d(&ctx, d0, 0, g0, dd, hr, wd, B, C, H, W, Co, 3, 1, 1);
        rt_bn_relu_conv3x3_backward_d(&ctx, d1, 0, g1, dd, hd, xd, xp, xp + C, xp + 2 * C,
                                      xp + 3 * C, B, C, H, W, 0, (size_t)C * H * W, wd, Co);
        ck_assert_msg(memcmp(d0, d1, ni * 8) == 0 && memcmp(g0, g1, nw * 8) == 0,
                      "bnin bwd _d %d->%d", C, Co);
        free(ctx.scratch), free(xp), free(hd), free(hr), free(d0), free(d1), free(g0), free(g1);
    }
    for (int k = 0; k < 2; k++)
        free(din[k]), free(dw[k]);
    free(xd), free(wd), free(dd), free(pd), free(x), free(w), free(dout), free(pf), free(h);
    free(href);
}

START_TEST(test_wino_bnin_bwd) { WINO_VARIANT_CASE(_i, check_bnin_bwd); }
END_TEST

/* The sums of check_bnin_train's case sum (2: momentum's v = 0.9 v - 0.1
 * conv, then x + v into out2; 3: heavy ball's 3 terms) of conv (xs[1]) and
 * r, r2: rt_bn_relu_conv3x3_sums_train's arguments. */
typedef struct {
    int n, j, n2, j2;
    const float *xs[3], *xs2[2];
    float c[3], c2[2];
} BninSums;

static BninSums bnin_sums(int sum, const float *conv, const float *r, const float *r2,
                          const float *out)
{
    BninSums b = {.n = sum == 3 ? 3 : 2, .j = 1, .xs = {r, conv, r2}};
    const float c[2][3] = {{0.9f, -0.1f}, {1.9f, -1.0f, -0.9f}};
    memcpy(b.c, c[sum - 2], sizeof b.c);
    if (sum == 2)
        b.n2 = 2, b.j2 = 1, b.xs2[0] = r2, b.xs2[1] = out, b.c2[0] = b.c2[1] = 1.0f;
    return b;
}

/* rt_bn_relu_conv3x3_sums_train with check_bnin_train's sums of case sum
 * (bnin_sums, from 2), else rt_bn_relu_conv3x3_train: no sum (0) or
 * -conv + r (1); the statistics st (mean, rstd, running mean, var). */
static void bnin_train_run(const RtCtx *ctx, int sum, const BninSums *bs, float *out, float *o2,
                           float *conv, float *h, float *st, const float *x, const float *gamma,
                           const float *beta, int B, int C, int H, int W, const float *w, int Co,
                           const float *r)
{
    if (sum >= 2)
        rt_bn_relu_conv3x3_sums_train(ctx, out, conv, h, st, st + C, st + 2 * C, st + 3 * C, x,
                                      gamma, beta, B, C, H, W, 0.1, 1e-5, 0, w, Co, bs->n, bs->j,
                                      bs->xs, bs->c, bs->n2 ? o2 : NULL, bs->n2, bs->j2, bs->xs2,
                                      bs->c2);
    else
        rt_bn_relu_conv3x3_train(ctx, out, conv, h, st, st + C, st + 2 * C, st + 3 * C, x, gamma,
                                 beta, B, C, H, W, 0.1, 1e-5, 0, w, Co, sum ? -1.0 : 0.0,
                                 sum ? r : NULL, 1.0);
}

/* The training forward of relu(bn(x)) and the 3x3 conv of it, h not
 * written where Winograd takes the conv (rt_bn_relu_conv3x3_train, and
 * with sums rt_bn_relu_conv3x3_sums_train): the bytes of
 * rt_bn_relu_forward_train into h then rt_conv2d_forward (no sum),
 * rt_conv2d_sum_train (a sum) or rt_conv2d_sums_then_train (momentum's
 * two sums, heavy ball's 3 terms) reading it, in the outputs and in the
 * saved and running statistics, 1 and 2 threads; then its backward with
 * the sum's term -1 (rt_bn_relu_conv3x3_backward_neg) against
 * rt_conv2d_backward_neg reading h; with a branch record both write h (the
 * pair); the double twins as their calls. */
static void check_bnin_train(const Shape *s, int variant)
{
    int B = s->B, C = s->C, H = s->H, W = s->W, Co = s->Co, HW = H * W;
    size_t ni = (size_t)B * C * HW, no = (size_t)B * Co * HW, nw = (size_t)Co * C * 9;
    double *xd = tu_calloc(ni, sizeof(double)), *wd = tu_calloc(nw, sizeof(double));
    double *pd = tu_calloc(2 * (size_t)C, sizeof(double)), *rd = tu_calloc(no, sizeof(double));
    float *x = tu_calloc(ni, sizeof(float)), *w = tu_calloc(nw, sizeof(float));
    float *pf = tu_calloc(2 * (size_t)C, sizeof(float)), *rf = tu_calloc(no, sizeof(float));
    float *h = tu_calloc(ni, sizeof(float)), *href = tu_calloc(ni, sizeof(float));
    float *out[2], *conv = tu_calloc(no, sizeof(float)), *st[2], *o2[2];
    float *r2 = tu_calloc(no, sizeof(float));
    RtRng rng;
    rt_rng_seed(&rng, 9500u + (unsigned)(s - shapes));
    gc_fill(xd, ni, &rng);
    gc_fill(wd, nw, &rng);
    gc_fill(pd, 2 * (size_t)C, &rng);
    gc_fill(rd, no, &rng);
    gc_to_float(x, xd, ni);
    gc_to_float(w, wd, nw);
    gc_to_float(pf, pd, 2 * (size_t)C);
    gc_to_float(rf, rd, no);
    for (size_t i = 0; i < no; i++)
        r2[i] = (float)rt_rng_normal(&rng);
    const float *gamma = pf, *beta = pf + C;
    const char *tag = variant ? "avx2" : "best";
    int fused = rt_wino_taken(C, Co);
    for (int k = 0; k < 2; k++) {   /* mean, rstd, running mean, running var */
        out[k] = tu_calloc(no, sizeof(float)), st[k] = tu_calloc(4 * (size_t)C, sizeof(float));
        o2[k] = tu_calloc(no, sizeof(float));
    }
    for (int th = 1; th <= 2; th++)
        for (int sum = 0; sum <= 3; sum++) {
            size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
            RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
            for (int k = 0; k < 2; k++)
                for (int c = 0; c < C; c++)
                    st[k][2 * C + c] = 0.25f, st[k][3 * C + c] = 1.5f;
            rt_bn_relu_forward_train(&ctx, href, st[0], st[0] + C, st[0] + 2 * C, st[0] + 3 * C,
                                     x, gamma, beta, B, C, HW, 0.1, 1e-5, 0);
            BninSums bs[2] = {{0}};
            for (int k = 0; k < 2 && sum >= 2; k++)
                bs[k] = bnin_sums(sum, conv, rf, r2, out[k]);
            if (sum >= 2)
                rt_conv2d_sums_then_train(&ctx, out[0], conv, href, w, B, C, H, W, Co, 3, 1, 1,
                                          bs[0].n, bs[0].j, bs[0].xs, bs[0].c,
                                          bs[0].n2 ? o2[0] : NULL, bs[0].n2, bs[0].j2,
                                          bs[0].xs2, bs[0].c2);
            else if (sum)
                rt_conv2d_sum_train(&ctx, out[0], conv, href, w, B, C, H, W, Co, 3, 1, 1, -1.0,
                                    rf, 1.0);
            else
                rt_conv2d_forward(&ctx, out[0], href, w, B, C, H, W, Co, 3, 1, 1);
            for (size_t i = 0; i < ni; i++)
                h[i] = 1e30f;
            for (size_t i = 0; i < no; i++)
                o2[1][i] = -1e30f;
            bnin_train_run(&ctx, sum, &bs[1], out[1], o2[1], conv, h, st[1], x, gamma, beta, B,
                           C, H, W, w, Co, rf);
            ck_assert_msg(memcmp(out[0], out[1], no * sizeof(float)) == 0,
                          "%s bnin train %d->%d %dx%d B%d t%d sum%d: out", tag, C, Co, H, W, B,
                          th, sum);
            if (sum == 2)
                ck_assert_msg(memcmp(o2[0], o2[1], no * sizeof(float)) == 0,
                              "%s bnin train %d->%d %dx%d B%d t%d: the second sum", tag, C, Co,
                              H, W, B, th);
            ck_assert_msg(memcmp(st[0], st[1], 4 * (size_t)C * sizeof(float)) == 0,
                          "%s bnin train %d->%d t%d: statistics", tag, C, Co, th);
            if (fused)
                ck_assert_msg(h[0] == 1e30f && h[ni - 1] == 1e30f, "%s bnin train %d->%d: wrote h",
                              tag, C, Co);
            else
                ck_assert_msg(memcmp(h, href, ni * sizeof(float)) == 0, "%s bnin train: h", tag);
            /* the backward with the term -1, din added to, dw added to */
            float *d[2], *g[2];
            for (int k = 0; k < 2; k++) {
                d[k] = tu_calloc(ni, sizeof(float)), g[k] = tu_calloc(nw, sizeof(float));
                for (size_t i = 0; i < ni; i++)
                    d[k][i] = 0.5f;
                for (size_t i = 0; i < nw; i++)
                    g[k][i] = 0.25f;
            }
            rt_conv2d_backward_neg(&ctx, d[0], 1, g[0], rf, href, w, B, C, H, W, Co, 3, 1, 1);
            rt_bn_relu_conv3x3_backward_neg(&ctx, d[1], 1, g[1], rf, h, x, st[1], st[1] + C,
                                            gamma, beta, B, C, H, W, 0, (size_t)C * HW, w, Co);
            ck_assert_msg(memcmp(d[0], d[1], ni * sizeof(float)) == 0
                              && memcmp(g[0], g[1], nw * sizeof(float)) == 0,
                          "%s bnin backward_neg %d->%d t%d", tag, C, Co, th);
            for (int k = 0; k < 2; k++)
                free(d[k]), free(g[k]);
            /* a branch record: the pair, h written with the record's pieces */
            uint8_t *mask = tu_calloc(ni, 1);
            RtBranch br = {.replay = 0, .mask = mask, .cap = ni};
            RtCtx bc = ctx;
            bc.branch = &br;
            bc.threads = 1;
            for (size_t i = 0; i < ni; i++)
                h[i] = 1e30f;
            bnin_train_run(&bc, sum, &bs[1], out[1], o2[1], conv, h, st[1], x, gamma, beta, B,
                           C, H, W, w, Co, rf);
            ck_assert_uint_eq(br.seen, ni);
            ck_assert_msg(memcmp(h, href, ni * sizeof(float)) == 0, "%s bnin train record: h",
                          tag);
            free(mask), free(ctx.scratch);
        }
    /* the double twin */
    {
        double *p2 = tu_calloc(2 * (size_t)C, 8), *s0 = tu_calloc(4 * (size_t)C, 8);
        double *s1 = tu_calloc(4 * (size_t)C, 8), *h0 = tu_calloc(ni, 8), *h1 = tu_calloc(ni, 8);
        double *o0 = tu_calloc(no, 8), *o1 = tu_calloc(no, 8), *cv = tu_calloc(no, 8);
        for (size_t i = 0; i < 2 * (size_t)C; i++)
            p2[i] = (double)pf[i];
        size_t bytes = rt_conv2d_scratch_bytes(2, B, C, H, W, 3, 1, 1, sizeof(double));
        RtCtx ctx = {.threads = 2, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
        rt_bn_relu_forward_train_d(&ctx, h0, s0, s0 + C, s0 + 2 * C, s0 + 3 * C, xd, p2, p2 + C,
                                   B, C, HW, 0.1, 1e-5, 0);
        rt_conv2d_sum_train_d(&ctx, o0, cv, h0, wd, B, C, H, W, Co, 3, 1, 1, -1.0, rd, 1.0);
        rt_bn_relu_conv3x3_train_d(&ctx, o1, cv, h1, s1, s1 + C, s1 + 2 * C, s1 + 3 * C, xd, p2,
                                   p2 + C, B, C, H, W, 0.1, 1e-5, 0, wd, Co, -1.0, rd, 1.0);
        ck_assert_msg(memcmp(o0, o1, no * 8) == 0 && memcmp(s0, s1, 4 * (size_t)C * 8) == 0,
                      "bnin train _d %d->%d", C, Co);
        free(ctx.scratch), free(p2), free(s0), free(s1), free(h0), free(h1), free(o0), free(o1);
        free(cv);
    }
    for (int k = 0; k < 2; k++)
        free(out[k]), free(st[k]), free(o2[k]);
    free(xd), free(wd), free(pd), free(rd), free(x), free(w), free(pf), free(rf), free(h);
    free(href), free(conv), free(r2);
}

START_TEST(test_wino_bnin_train) { WINO_VARIANT_CASE(_i, check_bnin_train); }
END_TEST

/* The weight gradient over batches of several groups of tile rows (cut
 * into runs of their own partial sums, one thread each): against
 * the double loops within DW_TOL, and the same bytes for 1, 2, 3 and 4
 * threads. Shapes: ResNet-20's (16 channels at 32x32, B 8 and B 5: groups
 * of unequal runs; 32 at 16x16, B 9; 64 at 8x8, B 20), odd tile counts (24
 * -> 16 at 10x10), wide rows and an odd height (16 at 9x64), groups that
 * cut an image (8 -> 16 at 6x96, B 7), tiles cut by the border (16 at
 * 11x20, 12 -> 16 at 7x17), and F(2x2, 3x3) below 8 pixels wide (16 at
 * 6x6, B 40). */
static const Shape dw_shapes[] = {
    {8, 16, 32, 32, 16}, {5, 16, 32, 32, 16}, {9, 32, 16, 16, 32}, {20, 64, 8, 8, 64},
    {23, 24, 10, 10, 16}, {3, 16, 9, 64, 16}, {7, 8, 6, 96, 16},  {9, 16, 11, 20, 16},
    {2, 12, 7, 17, 16},   {40, 16, 6, 6, 16},
};
#define NDW (int)(sizeof dw_shapes / sizeof dw_shapes[0])

static void check_dw_runs(const Shape *s, int variant)
{
    int B = s->B, C = s->C, H = s->H, W = s->W, Co = s->Co;
    size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * H * W, nw = (size_t)Co * C * 9;
    double *in = tu_calloc(ni, sizeof(double)), *dout = tu_calloc(no, sizeof(double));
    double *dw = tu_calloc(nw, sizeof(double));
    float *inf = tu_calloc(ni, sizeof(float)), *doutf = tu_calloc(no, sizeof(float));
    float *dwf[4];
    RtRng rng;
    rt_rng_seed(&rng, 3000u + (unsigned)(s - dw_shapes));
    gc_fill(in, ni, &rng);
    gc_fill(dout, no, &rng);
    gc_to_float(inf, in, ni);
    gc_to_float(doutf, dout, no);
    rt_conv2d_backward_ref_d(NULL, 0, dw, dout, in, NULL, B, C, H, W, Co, 3, 1, 1);
    const char *tag = variant ? "avx2" : "best";
    for (int th = 1; th <= 4; th++) {
        int k = th - 1;
        size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, 1, 1, sizeof(float));
        RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
        dwf[k] = tu_calloc(nw, sizeof(float));
        ck_assert_int_eq(rt_wino_backward_weights(&ctx, dwf[k], doutf, inf, B, C, H, W, Co), 1);
        double e = gc_normdiff_f(dwf[k], dw, nw);
        ck_assert_msg(e < DW_TOL, "%s dw %d->%d %dx%d B%d t%d: %.3g", tag, C, Co, H, W, B, th,
                      e);
        if (k > 0)
            ck_assert_msg(memcmp(dwf[k], dwf[0], nw * sizeof(float)) == 0,
                          "%s dw %d->%d %dx%d B%d: 1 and %d threads differ", tag, C, Co, H, W,
                          B, th);
        free(ctx.scratch);
    }
    for (int k = 0; k < 4; k++)
        free(dwf[k]);
    free(in), free(dout), free(dw), free(inf), free(doutf);
}

/* rt_conv2d_backward_neg (a sum's term of -1 folded into its conv) against
 * rt_conv2d_backward on -dout: the same numbers (== : zeros may differ in
 * sign), din written and added to, dw added to, stride 1 (Winograd's
 * negated weights where taken) and 2 (negated around the plain call),
 * float and double, 1 and 2 threads. */
static void check_neg(const Shape *s, int variant)
{
    (void)variant;
    for (int stride = 1; stride <= 2; stride++)
        for (int th = 1; th <= 2; th++) {
            int B = s->B, C = s->C, H = s->H, W = s->W, Co = s->Co;
            int Ho = rt_conv_out(H, 3, stride, 1), Wo = rt_conv_out(W, 3, stride, 1);
            size_t ni = (size_t)B * C * H * W, no = (size_t)B * Co * Ho * Wo;
            size_t nw = (size_t)Co * C * 9;
            float *in = tu_calloc(ni, sizeof(float)), *w = tu_calloc(nw, sizeof(float));
            float *dout = tu_calloc(no, sizeof(float)), *ndout = tu_calloc(no, sizeof(float));
            double *ind = tu_calloc(ni, sizeof(double)), *wd = tu_calloc(nw, sizeof(double));
            double *doutd = tu_calloc(no, sizeof(double)), *ndoutd = tu_calloc(no, sizeof(double));
            RtRng rng;
            rt_rng_seed(&rng, 7000u + (unsigned)(s - shapes));
            for (size_t i = 0; i < ni; i++)
                ind[i] = in[i] = (float)rt_rng_normal(&rng);
            for (size_t i = 0; i < nw; i++)
                wd[i] = w[i] = (float)(0.1 * rt_rng_normal(&rng));
            for (size_t i = 0; i < no; i++) {
                doutd[i] = dout[i] = (float)rt_rng_normal(&rng);
                ndoutd[i] = ndout[i] = -dout[i];
            }
            size_t bytes = rt_conv2d_scratch_bytes(th, B, C, H, W, 3, stride, 1, sizeof(double));
            RtCtx ctx = {.threads = th, .scratch = tu_calloc(bytes, 1), .scratch_bytes = bytes};
            for (int acc = 0; acc <= 1; acc++) {
                float *d[2], *g[2];
                double *dd[2], *gd[2];
                for (int k = 0; k < 2; k++) {
                    d[k] = tu_calloc(ni, sizeof(float)), g[k] = tu_calloc(nw, sizeof(float));
                    dd[k] = tu_calloc(ni, sizeof(double)), gd[k] = tu_calloc(nw, sizeof(double));
                    for (size_t i = 0; i < ni; i++)
                        dd[k][i] = d[k][i] = 0.5f;
                    for (size_t i = 0; i < nw; i++)
                        gd[k][i] = g[k][i] = 0.25f;
                }
                rt_conv2d_backward_neg(&ctx, d[0], acc, g[0], dout, in, w, B, C, H, W, Co, 3,
                                       stride, 1);
                rt_conv2d_backward(&ctx, d[1], acc, g[1], ndout, in, w, B, C, H, W, Co, 3,
                                   stride, 1);
                rt_conv2d_backward_neg_d(&ctx, dd[0], acc, gd[0], doutd, ind, wd, B, C, H, W,
                                         Co, 3, stride, 1);
                rt_conv2d_backward_d(&ctx, dd[1], acc, gd[1], ndoutd, ind, wd, B, C, H, W, Co,
                                     3, stride, 1);
                for (size_t i = 0; i < ni; i++) {
                    ck_assert_msg(d[0][i] == d[1][i], "neg din %d->%d %dx%d s%d acc%d t%d [%zu]",
                                  C, Co, H, W, stride, acc, th, i);
                    ck_assert_msg(dd[0][i] == dd[1][i], "neg din_d %d->%d s%d acc%d [%zu]", C,
                                  Co, stride, acc, i);
                }
                for (size_t i = 0; i < nw; i++) {
                    ck_assert_msg(g[0][i] == g[1][i], "neg dw %d->%d %dx%d s%d acc%d t%d [%zu]",
                                  C, Co, H, W, stride, acc, th, i);
                    ck_assert_msg(gd[0][i] == gd[1][i], "neg dw_d %d->%d s%d [%zu]", C, Co,
                                  stride, i);
                }
                for (int k = 0; k < 2; k++)
                    free(d[k]), free(g[k]), free(dd[k]), free(gd[k]);
            }
            free(ctx.scratch);
            free(in), free(w), free(dout), free(ndout), free(ind), free(wd), free(doutd);
            free(ndoutd);
        }
}

START_TEST(test_wino_neg) { WINO_VARIANT_CASE(_i, check_neg); }
END_TEST

START_TEST(test_wino_dw_runs)
{
    if (!tu_has_avx2())
        TEST_SKIP("no AVX2+FMA on this machine: Winograd is never taken");
    __builtin_cpu_init();
    int variant = _i / NDW;
    if (variant == 1 && !__builtin_cpu_supports("avx512f"))
        TEST_SKIP("no AVX-512: the best variant is the AVX2 one, checked already");
    set_variant(variant);
    check_dw_runs(&dw_shapes[_i % NDW], variant);
    unsetenv("OPTC_CONV_ISA");
}
END_TEST

static Suite *wino_suite(void)
{
    Suite *s = suite_create("wino");
    TCase *tc = tcase_create("wino");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_wino_shapes, 0, 2 * NSHAPES);
    tcase_add_loop_test(tc, test_wino_eval, 0, 2 * NSHAPES);
    tcase_add_loop_test(tc, test_wino_sum_train, 0, 2 * NSHAPES);
    tcase_add_loop_test(tc, test_wino_bnin, 0, 2 * NSHAPES);
    tcase_add_loop_test(tc, test_wino_bnin_bwd, 0, 2 * NSHAPES);
    tcase_add_loop_test(tc, test_wino_bnin_train, 0, 2 * NSHAPES);
    tcase_add_loop_test(tc, test_wino_dw_runs, 0, 2 * NDW);
    tcase_add_loop_test(tc, test_wino_neg, 0, 2 * NSHAPES);
    tcase_add_test(tc, test_wino_off);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(wino_suite)
