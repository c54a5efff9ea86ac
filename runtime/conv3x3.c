/* conv3x3.c — a direct float 3x3 convolution (stride 1, pad 1) for AVX2+FMA.
 *
 * Why: with 16..64 channels the im2col + GEMM path spends as much time
 * building the column matrix and in OpenBLAS packing it as in the multiply
 * (ResNet-20 profile: sgemm 29 %, im2col 24 %, packing 17 %). Here each
 * image is copied once into a zero-bordered buffer and the products run
 * straight from it, vectorised along the width: a block of 4 output
 * channels times 16 output pixels of one row stays in 8 registers while
 * the input channels and the 9 taps stream past.
 *
 * Padded image: [C][H+2][Wp], row r = input row r-1, column c = input
 * column c-1, zeros elsewhere; Wp >= 8*ceil(W/8) + 2 so every 8-wide load
 * at an output column block plus a tap offset (0..2) stays inside the row.
 * Output columns past W are computed (from zeros) and never stored.
 *
 * Backward data is the same forward kernel on the padded output gradient
 * with the weights transposed and flipped. The weight gradient sums, per
 * image group, 3 output channels x 3 taps in 9 float vector registers, and adds
 * each group's sums into double accumulators in batch order; each thread
 * owns whole blocks of output channels, so the result does not depend on
 * the thread count or the scheduling.
 *
 * Without AVX2+FMA (checked at run time) nothing here runs: the callers
 * keep im2col + GEMM, the portable path. */
#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "conv3x3.h"

#define CB 4    /* output channels per register block (forward) */
#define DB 3    /* the same for the weight gradient: 3 x 3 taps + 3 inputs
                 * + 1 gradient + the tail mask fit the 16 ymm registers;
                 * with 4 channels gcc spilled an accumulator */

static int has_avx2_fma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int rt_conv3x3_taken(int what, int Cin, int Cout, int K, int stride, int pad)
{
    if (K != 3 || stride != 1 || pad != 1 || Cin <= 0 || Cout <= 0 || !has_avx2_fma())
        return 0;
    return what == RT_CONV3X3_DATA || (what == RT_CONV3X3_WEIGHTS && Cout <= 16);
}

static int pad_width(int W)
{
    return (W + 7) / 8 * 8 + 8;
}

/* Copy x[C][H][W] into the interior of the zero-bordered xp (whose border
 * was zeroed once when it was allocated and is never written). */
static void pad_image(float *xp, const float *x, int C, int H, int W, int Wp)
{
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            memcpy(xp + ((size_t)c * (H + 2) + y + 1) * Wp + 1, x + ((size_t)c * H + y) * W,
                   (size_t)W * sizeof(float));
}

/* Lanes 0..n-1 on (n in 1..8). */
__attribute__((target("avx2,fma")))
static __m256i lane_mask(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* NX (1 or 2) output vectors of channels co0..co0+NC-1 from the padded
 * image xp [C][H+2][Wp] and weights w[Co][C][3][3]: row y, columns
 * 8*v .. 8*(v+NX)-1, or (ROWS) column block v of rows y and y+1 — a row
 * of one vector (W <= 8) would otherwise leave too few independent sums to
 * hide the FMA latency. A vector that is its row's last is masked by tail. */
__attribute__((target("avx2,fma"), always_inline))
static inline void fwd_block(float *out, int acc, const float *xp, const float *w, int C,
                             int H, int W, int Wp, int co0, int y, int v, int NC, int NX,
                             int ROWS, int nv, __m256i tail)
{
    __m256 a[CB][2];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
#pragma GCC unroll 2
        for (int j = 0; j < NX; j++)
            a[c][j] = _mm256_setzero_ps();
    size_t P = (size_t)(H + 2) * Wp;
    for (int ci = 0; ci < C; ci++) {
        const float *xr = xp + ci * P + (size_t)y * Wp + 8 * v;
        const float *wr = w + ((size_t)co0 * C + ci) * 9;
#pragma GCC unroll 3
        for (int ky = 0; ky < 3; ky++)
#pragma GCC unroll 3
            for (int kx = 0; kx < 3; kx++) {
                __m256 xv[2];
#pragma GCC unroll 2
                for (int j = 0; j < NX; j++)
                    xv[j] = _mm256_loadu_ps(xr + (size_t)(ky + (ROWS ? j : 0)) * Wp + kx
                                            + (ROWS ? 0 : 8 * j));
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    __m256 wv = _mm256_broadcast_ss(wr + (size_t)c * C * 9 + ky * 3 + kx);
#pragma GCC unroll 2
                    for (int j = 0; j < NX; j++)
                        a[c][j] = _mm256_fmadd_ps(wv, xv[j], a[c][j]);
                }
            }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
#pragma GCC unroll 2
        for (int j = 0; j < NX; j++) {
            int yj = y + (ROWS ? j : 0), vj = v + (ROWS ? 0 : j);
            float *o = out + ((size_t)(co0 + c) * H + yj) * W + 8 * vj;
            if (vj == nv - 1 && W % 8) {
                __m256 r = a[c][j];
                if (acc)
                    r = _mm256_add_ps(r, _mm256_maskload_ps(o, tail));
                _mm256_maskstore_ps(o, tail, r);
            } else {
                __m256 r = a[c][j];
                if (acc)
                    r = _mm256_add_ps(r, _mm256_loadu_ps(o));
                _mm256_storeu_ps(o, r);
            }
        }
}

/* One output-channel block of NC channels from co0, every row. */
__attribute__((target("avx2,fma"), always_inline))
static inline void fwd_rows(float *out, int acc, const float *xp, const float *w, int C,
                            int H, int W, int Wp, int co0, int NC, int nv, __m256i tail)
{
    if (nv == 1) {
        int y = 0;
        for (; y + 2 <= H; y += 2)
            fwd_block(out, acc, xp, w, C, H, W, Wp, co0, y, 0, NC, 2, 1, nv, tail);
        if (y < H)
            fwd_block(out, acc, xp, w, C, H, W, Wp, co0, y, 0, NC, 1, 0, nv, tail);
        return;
    }
    for (int y = 0; y < H; y++) {
        int v = 0;
        for (; v + 2 <= nv; v += 2)
            fwd_block(out, acc, xp, w, C, H, W, Wp, co0, y, v, NC, 2, 0, nv, tail);
        if (v < nv)
            fwd_block(out, acc, xp, w, C, H, W, Wp, co0, y, v, NC, 1, 0, nv, tail);
    }
}

/* out[Co][H][W] (+)= conv3x3(xp, w) for one image (acc as rt.h). */
__attribute__((target("avx2,fma")))
static void fwd_image(float *out, int acc, const float *xp, const float *w, int C, int Co,
                      int H, int W, int Wp)
{
    int nv = (W + 7) / 8;
    __m256i tail = lane_mask(W % 8 ? W % 8 : 8);
    int co0 = 0;
    for (; co0 + CB <= Co; co0 += CB)
        fwd_rows(out, acc, xp, w, C, H, W, Wp, co0, CB, nv, tail);
    for (; co0 < Co; co0++)
        fwd_rows(out, acc, xp, w, C, H, W, Wp, co0, 1, nv, tail);
}

/* dacc[co][ci][3][3] += sum over G images of dout[co] times the shifted
 * padded input, for the NC output channels from co0. dout holds G images
 * of [Co][H][W], xp their padded copies, one after the other. The float
 * sums run over the G images before going to double: for small images a
 * per-image horizontal sum would cost as much as the products. */
__attribute__((target("avx2,fma"), always_inline))
static inline void dw_block(double *dacc, const float *dout, const float *xp, int G, int C,
                            int Co, int H, int W, int Wp, int co0, int NC, __m256i tail)
{
    int nv = (W + 7) / 8;
    size_t P = (size_t)(H + 2) * Wp;
    for (int ci = 0; ci < C; ci++)
        for (int ky = 0; ky < 3; ky++) {
            __m256 a[DB][3];
#pragma GCC unroll 3
            for (int c = 0; c < NC; c++)
#pragma GCC unroll 3
                for (int kx = 0; kx < 3; kx++)
                    a[c][kx] = _mm256_setzero_ps();
            for (int g = 0; g < G; g++)
                for (int y = 0; y < H; y++) {
                    const float *xr = xp + ((size_t)g * C + ci) * P + (size_t)(y + ky) * Wp;
                    const float *dr = dout + (((size_t)g * Co + co0) * H + y) * W;
                    for (int v = 0; v < nv; v++) {
                        __m256 xv[3];
#pragma GCC unroll 3
                        for (int kx = 0; kx < 3; kx++)
                            xv[kx] = _mm256_loadu_ps(xr + 8 * v + kx);
                        int last = v == nv - 1 && W % 8;
#pragma GCC unroll 3
                        for (int c = 0; c < NC; c++) {
                            const float *d = dr + (size_t)c * H * W + 8 * v;
                            __m256 dv = last ? _mm256_maskload_ps(d, tail) : _mm256_loadu_ps(d);
#pragma GCC unroll 3
                            for (int kx = 0; kx < 3; kx++)
                                a[c][kx] = _mm256_fmadd_ps(dv, xv[kx], a[c][kx]);
                        }
                    }
                }
#pragma GCC unroll 3
            for (int c = 0; c < NC; c++)
#pragma GCC unroll 3
                for (int kx = 0; kx < 3; kx++) {
                    /* lanes summed in a fixed order */
                    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a[c][kx]),
                                          _mm256_extractf128_ps(a[c][kx], 1));
                    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
                    dacc[((size_t)(co0 + c) * C + ci) * 9 + ky * 3 + kx] +=
                        (double)_mm_cvtss_f32(s);
                }
        }
}

/* The weight gradient of G images for the output channels co0..co1-1. */
__attribute__((target("avx2,fma")))
static void dw_images(double *dacc, const float *dout, const float *xp, int G, int C, int Co,
                      int H, int W, int Wp, int co0, int co1)
{
    __m256i tail = lane_mask(W % 8 ? W % 8 : 8);
    int co = co0;
    for (; co + DB <= co1; co += DB)
        dw_block(dacc, dout, xp, G, C, Co, H, W, Wp, co, DB, tail);
    for (; co < co1; co++)
        dw_block(dacc, dout, xp, G, C, Co, H, W, Wp, co, 1, tail);
}

/* Images per weight-gradient group: about DW_PIXELS output pixels. */
#define DW_PIXELS 512
static int dw_group(int B, int H, int W)
{
    int g = (DW_PIXELS + H * W - 1) / (H * W);
    return g < B ? g : B;
}

static int team(const RtCtx *ctx, int n)
{
    int t = ctx && ctx->threads > 0 ? ctx->threads : 1;
    return t < n ? t : (n > 0 ? n : 1);
}

/* One zeroed padded buffer of C channels per thread, or NULL. */
static float *pad_buffers(int t, int C, int H, int Wp, size_t *each)
{
    *each = (size_t)C * (H + 2) * Wp;
    return calloc((size_t)t * *each, sizeof(float));
}

/* out[b] (+)= conv3x3(in[b], w), batch split over the team. */
static int direct(const RtCtx *ctx, float *out, int acc, const float *in, const float *w,
                  int B, int C, int H, int W, int Co)
{
    int Wp = pad_width(W), t = team(ctx, B);
    size_t each;
    float *buf = pad_buffers(t, C, H, Wp, &each);
    if (!buf)
        return 0;
#pragma omp parallel for num_threads(t) schedule(static)
    for (int b = 0; b < B; b++) {
        float *xp = buf + (size_t)omp_get_thread_num() * each;
        pad_image(xp, in + (size_t)b * C * H * W, C, H, W, Wp);
        fwd_image(out + (size_t)b * Co * H * W, acc, xp, w, C, Co, H, W, Wp);
    }
    free(buf);
    return 1;
}

int rt_conv3x3_forward(const RtCtx *ctx, float *out, const float *in, const float *w,
                       int B, int Cin, int H, int W, int Cout)
{
    if (!rt_conv3x3_taken(RT_CONV3X3_DATA, Cin, Cout, 3, 1, 1))
        return 0;
    return direct(ctx, out, 0, in, w, B, Cin, H, W, Cout);
}

int rt_conv3x3_backward(const RtCtx *ctx, float *din, int acc, float *dw, const float *dout,
                        const float *in, const float *w, int B, int Cin, int H, int W,
                        int Cout)
{
    if ((din && !rt_conv3x3_taken(RT_CONV3X3_DATA, Cin, Cout, 3, 1, 1))
        || (dw && !rt_conv3x3_taken(RT_CONV3X3_WEIGHTS, Cin, Cout, 3, 1, 1)))
        return 0;
    size_t nw = (size_t)Cout * Cin * 9;
    float *wt = din ? malloc(nw * sizeof(float)) : NULL;
    double *dacc = dw ? calloc(nw, sizeof(double)) : NULL;
    int Wp = pad_width(W), nb = (Cout + DB - 1) / DB, t = team(ctx, nb), G = dw_group(B, H, W);
    size_t each;
    float *buf = dw ? pad_buffers(t, G * Cin, H, Wp, &each) : NULL;
    if ((din && !wt) || (dw && (!dacc || !buf))) {
        free(wt), free(dacc), free(buf);
        return 0;
    }
    if (din) {
        /* din = conv3x3(dout, w^T flipped): wt[ci][co][2-ky][2-kx] */
        for (int co = 0; co < Cout; co++)
            for (int ci = 0; ci < Cin; ci++)
                for (int k = 0; k < 9; k++)
                    wt[((size_t)ci * Cout + co) * 9 + 8 - k] = w[((size_t)co * Cin + ci) * 9 + k];
        if (!direct(ctx, din, acc, dout, wt, B, Cout, H, W, Cin)) {
            free(wt), free(dacc), free(buf);
            return 0;
        }
        free(wt);
    }
    if (!dw)
        return 1;
    /* thread i owns output-channel blocks [nb*i/t, nb*(i+1)/t) and walks
     * the whole batch in order, G images at a time */
#pragma omp parallel num_threads(t)
    {
        int i = omp_get_thread_num(), n = omp_get_num_threads();
        int co0 = DB * (int)((long long)nb * i / n), co1 = DB * (int)((long long)nb * (i + 1) / n);
        if (co1 > Cout)
            co1 = Cout;
        float *xp = buf + (size_t)i * each;
        for (int b = 0; b < B && co1 > co0; b += G) {
            int g = B - b < G ? B - b : G;
            pad_image(xp, in + (size_t)b * Cin * H * W, g * Cin, H, W, Wp);
            dw_images(dacc, dout + (size_t)b * Cout * H * W, xp, g, Cin, Cout, H, W, Wp,
                      co0, co1);
        }
    }
    for (size_t k = 0; k < nw; k++)
        dw[k] += (float)dacc[k];
    free(dacc), free(buf);
    return 1;
}
