/* winograd.c — float 3x3 convolutions of stride 1 and pad 1 by Winograd's
 * minimal filtering: the forward pass by F(2x2, 3x3), the input gradient
 * (the same code with the weights read transposed and flipped) by
 * F(4x4, 3x3), the weight gradient by either (its own section below).
 *
 * Why: the direct kernels (conv3x3.c) run near what direct convolution can
 * do; F(4x4, 3x3) needs 36 products per 16 outputs instead of 144,
 * F(2x2, 3x3) 16 per 4 instead of 36, for the price of the transforms.
 * Float error against double, relative to max|out|, at 16..64 channels:
 * F(4x4, 3x3) 3e-6..7e-6, F(2x2, 3x3) 2e-7..4e-7 (the direct kernels:
 * 4e-7..9e-7). The training forward takes the accurate one: F(4x4, 3x3)
 * there passes the PyTorch oracle (which holds the float gradients against
 * float64 on the float code's own ReLU pieces) but makes the float
 * gradients 7 times as far from double's (make gradcheck-all: ResNet-110 at
 * batch 1, a BN bias 1.1e-4 of its largest against 1.5e-5, over the
 * check's 1e-4) for 3-4 % of a ResNet-20 step (BENCHMARKS.md run 11). The
 * input gradient is linear in dout and decides no mask, so F(4x4, 3x3)'s
 * error stays 1e-5-sized there. An inference
 * forward (rt_conv2d_forward_mode with train 0: no backward, no mask
 * follows) takes F(4x4, 3x3) too on images at least EVAL_MIN_W wide
 * (logits within ~1e-6 of the training forward's), and rt_conv2d_bn_eval
 * applies the BN after it (running statistics: an affine map per channel)
 * and its relu while copying the output rows out, instead of a pass of its
 * own over the conv's output.
 *
 * Layout, for tiles of m x m outputs (patches of a = m+2): the weights are
 * transformed once per call (in double, rounded once) into U[a*a][C][kp]
 * (kp: K rounded up to the register block). Each thread owns a contiguous
 * range of images and walks its tile rows (image b, tile row ty: output
 * rows m*ty .. m*ty+m-1) a group of R rows at a time, R sized so that the
 * group's transformed input V[a*a][C][np] and products M[a*a][kp][np] (np:
 * the group's tiles rounded up to 16) stay in L2:
 *   input transform, per channel: B^T down the a input rows of each tile
 *     row, whole rows at a time (rows outside the image read a zero row),
 *     into T[a][tile rows x m*ntx] — consecutive tile rows side by side, so
 *     tile l of the group has its a columns at m*l-1 .. m*l+m; then B
 *     across those columns, tile by tile, into V (the first column of a
 *     row's first tile and the last of its last are the zero padding);
 *   a*a products M[pos] = U[pos]^T V[pos], register-blocked;
 *   output transform per output channel into m rows laid out like T,
 *     copied (or added, for acc) into the output rows inside the image.
 * No padded copy of the input and no partial sums: every output is one sum
 * over the input channels in order, whatever the thread count and group
 * size. Workspace: U and one slice per thread in ctx->scratch
 * (rt_wino_scratch_bytes); nothing is allocated here.
 *
 * Instruction sets as conv3x3.c: AVX-512F or AVX2+FMA at run time,
 * OPTC_CONV_ISA=avx2|none caps it; OPTC_CONV_WINO=0 turns Winograd off (the
 * direct kernels then take these convs), for tests and comparisons. */
#include <immintrin.h>
#include <math.h>
#include "hsum.h"
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "conv3x3.h"
#include "winograd.h"

/* Fewer input channels than this: the products are too short to pay for
 * the transforms (conv_bench: the 3-channel stem runs faster direct). */
#define WINO_MIN_C 8
/* Bytes of V and M a thread's group aims at: within its share of L2. */
#define GROUP_BYTES (1u << 20)
/* Fewer outputs than this: the weight gradient runs direct (DenseNet's
 * 48->12, conv_bench at 1 thread: the two tie at 32x32 and 16x16 since
 * F(4x4, 3x3), 12.4 and 2.9 ms; F(4x4, 3x3)'s error is not worth 8x8's
 * 0.9 against 1.0). */
#define DW_MIN_K 16
/* Narrower images: the inference forward keeps F(2x2, 3x3) (conv_bench,
 * 64 channels at 8x8: 3.1 ms against F(4x4, 3x3)'s 3.6-4.0; at 16x16 and
 * 32x32 F(4x4, 3x3) is the faster one). */
#define EVAL_MIN_W 16
/* Tiles per group of the weight gradient, at least: by F(2x2, 3x3), by
 * F(4x4, 3x3) (whose 36 positions make 4.5 times the bytes a tile;
 * 32->32 at 16x16: 3.3 ms with 128, 3.8 with 512). */
#define DW_TILES 512
#define DW_TILES4 128
/* Partial sums of the weight gradient, at most: the batch's groups are cut
 * into this many runs by the shape alone, each summed by one thread. More
 * would serve more threads, but each run ends in its own sums over the
 * lanes and a small batch then has short groups (64 channels at 8x8 by
 * F(4x4, 3x3), 1 thread: 3.35 ms with 2, 3.75 with 4). */
#define DW_PARTS 2
/* Images at least this wide: the weight gradient by F(4x4, 3x3) (see
 * dw_tile). */
#define DW_F4_MIN_W 8

enum { ISA_NONE, ISA_AVX2, ISA_AVX512 };

/* This machine's instruction set for these kernels, capped by
 * OPTC_CONV_ISA; ISA_NONE also when OPTC_CONV_WINO is "0". */
static int isa(void)
{
    const char *e = getenv("OPTC_CONV_WINO");
    if (e && strcmp(e, "0") == 0)
        return ISA_NONE;
    __builtin_cpu_init();
    int best = !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? ISA_NONE
             : __builtin_cpu_supports("avx512f") ? ISA_AVX512 : ISA_AVX2;
    e = getenv("OPTC_CONV_ISA");
    if (e && strcmp(e, "none") == 0)
        return ISA_NONE;
    if (e && strcmp(e, "avx2") == 0 && best > ISA_AVX2)
        return ISA_AVX2;
    return best;
}

/* --- the AVX2 variant -------------------------------------------------------- */
#define SFX(name) name##_avx2
#define KTARGET "avx2,fma"
#define VT __m256
#define VW 8
#define NK 4        /* 4 channels x 3 vectors + 3 inputs + 1 weight in 16 registers */
#define NV 3
#define DK 2        /* weight gradient: 2 x 4 sums + 6 inputs */
#define DC 4
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VBCAST(p) _mm256_broadcast_ss(p)
#define HSUM(v) hsum_avx2(v)


#include "winograd_kern.inc"
#undef SFX
#undef KTARGET
#undef VT
#undef VW
#undef NK
#undef NV
#undef DK
#undef DC
#undef VZERO
#undef VLOAD
#undef VSTORE
#undef VFMA
#undef VBCAST
#undef HSUM

/* --- the AVX-512 variant ----------------------------------------------------- */
#define SFX(name) name##_avx512
#define KTARGET "avx512f,avx2,fma"
#define VT __m512
#define VW 16
#define NK 8        /* 8 channels x 3 vectors + 3 inputs of the 32 registers */
#define NV 3
#define DK 4        /* weight gradient: 4 x 4 sums + 8 inputs */
#define DC 4
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VBCAST(p) _mm512_set1_ps(*(p))
#define HSUM(v) _mm512_reduce_add_ps(v)     /* a fixed tree of shuffles */
#include "winograd_kern.inc"

/* --- drivers ------------------------------------------------------------------
 * Tile size m: 4 for F(4x4, 3x3), 2 for F(2x2, 3x3); a patch is a = m + 2
 * rows and columns, a*a products per group. */

static size_t up16(size_t n)
{
    return (n + 15) / 16 * 16;
}

/* Floats of one thread's slice for groups of up to np tiles (a multiple of
 * 16) of a conv with C inputs, kp (padded) outputs and images of H x W: V,
 * M, T (a rows with 16 floats of margin either side), O (m rows), a zero
 * input row, the two border masks, and one channel of one image (A: the
 * input rows with an input BN and relu applied, rt_conv2d_bnin_*_eval). */
static size_t slice_floats(int m, int C, int kp, size_t np, int H, int W)
{
    size_t a = (size_t)m + 2;
    return a * a * (size_t)(C + kp) * np + a * ((size_t)m * np + 32) + (size_t)m * m * np
           + up16((size_t)W) + 2 * np + up16((size_t)H * W);
}

/* Floats of one thread's slice of the weight gradient with tiles of m x m
 * (a = m+2) for K output channels: V [a*a][C][np], Y [a*a][K][np], T and
 * D (a rows for the input, for dY), a zero row, the masks, and one channel
 * of one image (A: the input rows with a training BN and relu applied,
 * rt_bn_relu_conv3x3_backward). */
static size_t dw_slice_floats(int m, int C, int K, size_t np, int H, int W)
{
    size_t a = (size_t)m + 2;
    return a * a * (size_t)(C + K) * np + 2 * a * ((size_t)m * np + 32) + up16((size_t)W)
           + 2 * np + up16((size_t)H * W);
}

/* Tile rows per group for this conv: V and M within GROUP_BYTES, at least one. */
static int group_rows(int m, int C, int kp, int ntx)
{
    size_t n = GROUP_BYTES / ((size_t)(m + 2) * (m + 2) * sizeof(float) * (size_t)(C + kp));
    return n / (size_t)ntx > 1 ? (int)(n / (size_t)ntx) : 1;
}

/* Floats of U and of one slice for a conv with tile size m. */
static size_t need(int m, int C, int kp, int H, int W, int R, size_t *slice)
{
    size_t ntx = (size_t)(W + m - 1) / (size_t)m;
    *slice = up16(slice_floats(m, C, kp, up16((size_t)R * ntx), H, W));
    return up16((size_t)(m + 2) * (m + 2) * (size_t)C * kp);
}

static int dw_group_rows(int m, int C, int K, int W)
{
    /* as the other passes, but at least DW_TILES (DW_TILES4) tiles: each
     * group ends in a horizontal sum per entry of dU, which shorter groups
     * do not repay (64 channels at 8x8: 9.6 ms with 1 MB groups, 6.2 with
     * 512 tiles) */
    int ntx = (W + m - 1) / m, R = group_rows(m, C, K, ntx);
    int least = ((m == 4 ? DW_TILES4 : DW_TILES) + ntx - 1) / ntx;
    return R > least ? R : least;
}

/* Floats of the weight gradient's workspace for t threads, tiles of m x m:
 * DW_PARTS partial sums dU [a*a][K][C], then a slice per thread. */
static size_t dw_floats(int m, int t, int C, int K, size_t np, int H, int W)
{
    size_t a = (size_t)m + 2;
    return DW_PARTS * up16(a * a * (size_t)K * C)
           + (size_t)t * up16(dw_slice_floats(m, C, K, np, H, W));
}

size_t rt_wino_scratch_bytes(int threads, int Cin, int H, int W)
{
    if (Cin < WINO_MIN_C || H < 1 || W < 1)
        return 0;
    int kp = (Cin + 7) / 8 * 8;
    size_t t = threads > 1 ? (size_t)threads : 1, most = 0;
    for (int m = 2; m <= 4; m += 2) {   /* the forward's tiles, the input gradient's */
        size_t slice, u = need(m, Cin, kp, H, W, group_rows(m, Cin, kp, (W + m - 1) / m), &slice);
        if (u + t * slice > most)
            most = u + t * slice;
    }
    for (int m = 2; m <= 4; m += 2) {   /* the weight gradient, sized for Cin outputs */
        int R = dw_group_rows(m, Cin, Cin, W);
        size_t dws = dw_floats(m, (int)t, Cin, Cin, up16((size_t)R * ((W + m - 1) / m)), H, W);
        if (dws > most)
            most = dws;
    }
    return most * sizeof(float) + 64;
}

int rt_wino_taken(int Cin, int Cout)
{
    return Cin >= WINO_MIN_C && Cout >= 1 && isa() != ISA_NONE;
}

/* The weight transform, weights_tf_avx2 / _avx512 (winograd_kern.inc):
 * U[a*i+j][c][k] = (G g G^T)[i][j] for the 3x3 kernel g of output k, input
 * c: g[p][q] = w[k*wk + c*wc + (flip & 1 ? 8 - (3p+q) : 3p+q)], negated for
 * flip & 2 (exact: every later step is linear, rounding symmetric), in
 * double and rounded once; 0 for k >= K. Channels c0..c1-1, tile size m. */

/* One thread's slice: its buffers for groups of up to np tiles. */
typedef struct {
    float *V, *M, *T, *O, *zero;
    float *m0, *m5;     /* 1 or 0 per tile: its first (last) column lies inside the image row */
    float *A;           /* H x W: an input channel's rows after an input BN and relu */
    size_t ts, os;      /* floats per row of T, of O */
} Slice;

static Slice carve(float *p, int m, int C, int kp, size_t np, int W)
{
    Slice s;
    size_t a = (size_t)m + 2;
    s.V = p, p += a * a * (size_t)C * np;
    s.M = p, p += a * a * (size_t)kp * np;
    s.ts = (size_t)m * np + 32, s.T = p, p += a * s.ts;
    s.os = (size_t)m * np, s.O = p, p += (size_t)m * s.os;
    s.zero = p, p += up16((size_t)W);
    s.m0 = p, s.m5 = p + np, p += 2 * np;
    s.A = p;    /* up16(H * W) floats: the last */
    return s;
}

/* A BN with running statistics and its relu applied to a conv's input as
 * the input transform reads it (rt_conv2d_bnin_*_eval): per channel c,
 * max(0, x sc_c + sh_c) with sc_c = gamma_c / sqrt(var_c + eps), sh_c =
 * beta_c - mean_c sc_c, in double and rounded once, as
 * rt_bn_relu_forward_eval computes it (the same bytes); the zero padding
 * stays 0, outside the activation. */
typedef struct {
    const float *gamma, *beta, *mean, *var;
    double eps;
    /* a training BN instead (the weight gradient of rt_bn_relu_conv3x3_backward):
     * the saved statistics, sc_c = rstd_c gamma_c, sh_c = beta_c - mean_c sc_c,
     * as rt_bn_relu_recompute takes them (var unused) */
    const float *rstd;
} BnIn;

/* Prefetch the n floats from p into the caches (for writing: w 1). */
static void prefetch_rows(const float *p, size_t n, int w)
{
    for (size_t i = 0; i < n; i += 16) {
        if (w)
            __builtin_prefetch(p + i, 1);
        else
            __builtin_prefetch(p + i, 0);
    }
}

/* The input transform of one group into s->V ([a*a][C][np]): tile rows
 * g0 .. g0+nr-1 (tile row g: image g / nty, tile row g % nty) of in with C
 * channels, tiles of m x m; also sets the border masks. Lanes n..np-1 of V
 * come out 0. With bi, each channel's rows that the group reads in an image
 * are first activated into s->A (once each, whichever tile rows share
 * them), and the transform reads them there. */
static void in_tf(int v, int m, const Slice *s, const float *in, int C, int H, int W, int g0,
                  int nr, const BnIn *bi)
{
    int a = m + 2, nty = (H + m - 1) / m, ntx = (W + m - 1) / m, L = m * ntx, n = nr * ntx;
    int np = (int)up16((size_t)n), big = v == ISA_AVX512;
    size_t hw = (size_t)H * W;
    for (int l = 0; l < np; l++) {
        s->m0[l] = l < n && l % ntx != 0 ? 1.0f : 0.0f;
        s->m5[l] = l < n && l % ntx != ntx - 1 ? 1.0f : 0.0f;
    }
    for (int i = 0; i < a; i++) {       /* the margins of T: read, never written below */
        float *t = s->T + (size_t)i * s->ts;
        memset(t, 0, 16 * sizeof(float));
        memset(t + 16 + (size_t)m * n, 0, (size_t)(m * (np - n) + 16) * sizeof(float));
    }
    for (int c = 0; c < C; c++) {
        double sc = 0.0, sh = 0.0;
        if (bi && bi->rstd) {
            sc = (double)bi->rstd[c] * (double)bi->gamma[c];
            sh = (double)bi->beta[c] - (double)bi->mean[c] * sc;
        } else if (bi) {
            sc = (double)bi->gamma[c] / sqrt((double)bi->var[c] + bi->eps);
            sh = (double)bi->beta[c] - (double)bi->mean[c] * sc;
        }
        for (int r = 0, ab = -1; r < nr; r++) {
            int g = g0 + r, b = g / nty, ty = g % nty;
            const float *src = in + ((size_t)b * C + c) * hw, *rows[6];
            if (bi && b != ab) {    /* image b's rows that tile rows ty .. tl read */
                int tl = ty + (nr - 1 - r) < nty - 1 ? ty + (nr - 1 - r) : nty - 1;
                int lo = m * ty - 1 > 0 ? m * ty - 1 : 0;
                int hi = m * tl + m + 1 < H ? m * tl + m + 1 : H;
                (big ? bn_relu_rows_avx512 : bn_relu_rows_avx2)(
                    s->A + (size_t)lo * W, src + (size_t)lo * W, (size_t)(hi - lo) * W, sc, sh);
                ab = b;
                if (c + 1 < C)  /* the next channel's rows: a jump the prefetchers miss */
                    prefetch_rows(src + hw + (size_t)lo * W, (size_t)(hi - lo) * W, 0);
            }
            if (bi)
                src = s->A;
            for (int j = 0; j < a; j++) {
                int y = m * ty - 1 + j;
                rows[j] = y >= 0 && y < H ? src + (size_t)y * W : s->zero;
            }
            float *t = s->T + 16 + (size_t)r * L;
            if (m == 4)
                (big ? in_rows_avx512 : in_rows_avx2)(t, s->ts, rows, W, L);
            else
                (big ? in_rows2_avx512 : in_rows2_avx2)(t, s->ts, rows, W, L);
        }
        for (int i = 0; i < a; i++) {
            float *vd = s->V + ((size_t)a * i * C + c) * np;
            const float *t = s->T + (size_t)i * s->ts + 16;
            if (m == 4)
                (big ? in_cols_avx512 : in_cols_avx2)(vd, (size_t)C * np, t, s->m0, s->m5, np);
            else
                (big ? in_cols2_avx512 : in_cols2_avx2)(vd, (size_t)C * np, t, s->m0, s->m5, np);
        }
    }
}

/* What a forward applies to the conv's output as it copies it out: with r
 * NULL, a BN (+ relu) of an inference forward (rt_conv2d_bn_eval): out[k] =
 * conv * sc_k + sh_k, sc_k = gamma_k / sqrt(var_k + eps), sh_k = beta_k -
 * mean_k sc_k, then relu; else a sum, r laid out as out: in float, out =
 * conv * cc + r * cr (rt_conv2d_sum_eval), or with train in double as
 * rt_sum_forward rounds it (rt_conv2d_sums_train, 2 or 3 terms). */
typedef struct {
    const float *gamma, *beta, *mean, *var;
    double eps;
    int relu;
    const float *r;
    float cc, cr;
    /* a training sum (rt_conv2d_sums_train): r and (3 terms) r2 the other
     * terms in the sum's order, c[] the coefficients, the conv's place j */
    int train;
    const float *r2;
    double c[3];
    int j;
    /* then (rt_conv2d_sums_then_train) out2 = a sum of the sum just written
     * (term j2) and q[0], q[1] with coefficients d[], as rt_sum_forward */
    float *out2;
    const float *q[2];
    double d[3];
    int j2;
    const BnIn *bi;     /* a BN + relu of the conv's input, or NULL */
    int plain;          /* nothing applied to the output (only bi to the input) */
} Epi;

/* out (+)= conv3x3(in) of one group: tile rows g0 .. g0+nr-1 of a conv
 * with C inputs, K outputs, tiles of m x m. */
static void group(int v, int m, const Slice *s, float *out, int acc, const float *in,
                  const float *U, int C, int K, int kp, int H, int W, int g0, int nr,
                  const Epi *ep)
{
    int a = m + 2, nty = (H + m - 1) / m, ntx = (W + m - 1) / m, L = m * ntx, n = nr * ntx;
    int np = (int)up16((size_t)n), big = v == ISA_AVX512;
    size_t hw = (size_t)H * W;
    in_tf(v, m, s, in, C, H, W, g0, nr, ep ? ep->bi : NULL);
    if (ep && ep->plain)
        ep = NULL;
    for (int pos = 0; pos < a * a; pos++)
        (big ? gemm_avx512 : gemm_avx2)(s->M + (size_t)pos * kp * np, U + (size_t)pos * C * kp,
                                        s->V + (size_t)pos * C * np, C, kp, np);
    for (int k = 0; k < K; k++) {
        const float *mk = s->M + (size_t)k * np;
        if (m == 4)
            (big ? out_tiles_avx512 : out_tiles_avx2)(s->O, s->os, mk, (size_t)kp * np, n);
        else
            (big ? out_tiles2_avx512 : out_tiles2_avx2)(s->O, s->os, mk, (size_t)kp * np, n);
        float sc = 1.0f, sh = 0.0f;
        if (ep && !ep->r && !ep->train) {   /* a BN */
            double scd = (double)ep->gamma[k] / sqrt((double)ep->var[k] + ep->eps);
            sc = (float)scd;
            sh = (float)((double)ep->beta[k] - (double)ep->mean[k] * scd);
        }
        for (int r = 0; r < nr; r++) {
            int g = g0 + r, b = g / nty, ty = g % nty;
            for (int y = 0; y < m && m * ty + y < H; y++) {
                float *d = out + ((size_t)b * K + k) * hw + (size_t)(m * ty + y) * W;
                const float *o = s->O + (size_t)y * s->os + (size_t)r * L;
                if (ep && !ep->train && k + 1 < K) {    /* the next channel's rows */
                    prefetch_rows(d + hw, (size_t)W, 1);
                    if (ep->r)
                        prefetch_rows(ep->r + (d - out) + hw, (size_t)W, 0);
                }
                if (ep && ep->train) {
                    size_t at = (size_t)(d - out);
                    (big ? put_row_sum_train_avx512 : put_row_sum_train_avx2)(
                        d, o, ep->r ? ep->r + at : NULL, ep->r2 ? ep->r2 + at : NULL, W, ep->c,
                        ep->j);
                    if (ep->out2)   /* the next sum, from the row just written */
                        (big ? put_row_sum_train_avx512 : put_row_sum_train_avx2)(
                            ep->out2 + at, d, ep->q[0] + at, ep->q[1] ? ep->q[1] + at : NULL,
                            W, ep->d, ep->j2);
                } else if (ep && ep->r)
                    (big ? put_row_sum_avx512 : put_row_sum_avx2)(d, o, ep->r + (d - out), W,
                                                                  ep->cc, ep->cr);
                else if (ep)
                    (big ? put_row_bn_avx512 : put_row_bn_avx2)(d, o, W, sc, sh, ep->relu);
                else
                    (big ? put_row_avx512 : put_row_avx2)(d, o, W, acc);
            }
        }
    }
}

/* ctx->scratch from its first 64-byte boundary, as floats: *have of them
 * (0 and NULL when there is none). */
static float *scratch_floats(const RtCtx *ctx, size_t *have)
{
    *have = 0;
    if (!ctx || !ctx->scratch)
        return NULL;
    size_t skip = (64 - (size_t)((uintptr_t)ctx->scratch % 64)) % 64;
    if (ctx->scratch_bytes <= skip)
        return NULL;
    *have = (ctx->scratch_bytes - skip) / sizeof(float);
    return (float *)(void *)((char *)ctx->scratch + skip);
}

/* out[b] (+)= conv3x3(in[b]) with C inputs, K outputs, the weight of (k, c)
 * at w + k*wk + c*wc (taps flipped for flip), tiles of m x m; 0 when not
 * taken or the workspace is too small. */
static int wino(const RtCtx *ctx, int m, float *out, int acc, const float *in, const float *w,
                ptrdiff_t wk, ptrdiff_t wc, int flip, int B, int C, int H, int W, int K,
                const Epi *ep)
{
    int v = isa();
    if (v == ISA_NONE || C < WINO_MIN_C || K < 1 || B < 1 || H < 1 || W < 1)
        return 0;
    int nk = v == ISA_AVX512 ? 8 : 4, kp = (K + nk - 1) / nk * nk;
    int nty = (H + m - 1) / m, ntx = (W + m - 1) / m;
    int t = ctx && ctx->threads > 0 ? ctx->threads : 1;
    if (t > B)
        t = B;
    size_t have;
    float *base = scratch_floats(ctx, &have);
    /* group size: as aimed, within the rows a thread has, within the
     * workspace (fewer rows, then fewer threads) */
    int R = group_rows(m, C, kp, ntx), per = (B + t - 1) / t * nty;
    if (R > per)
        R = per;
    size_t usz, ssz;
    for (;;) {
        usz = need(m, C, kp, H, W, R, &ssz);
        if (usz + (size_t)t * ssz <= have)
            break;
        if (R > 1)
            R = R / 2;
        else if (t > 1)
            t--;
        else
            return 0;
    }
    size_t np = up16((size_t)R * ntx);
    float *U = base;
#pragma omp parallel num_threads(t)
    {
        int i = omp_get_thread_num(), nt = omp_get_num_threads();
        (v == ISA_AVX512 ? weights_tf_avx512 : weights_tf_avx2)(
            U, m, w, wk, wc, flip, C, K, kp, (int)((long long)C * i / nt),
            (int)((long long)C * (i + 1) / nt));
#pragma omp barrier
        Slice s = carve(base + usz + (size_t)i * ssz, m, C, kp, np, W);
        memset(s.zero, 0, (size_t)W * sizeof(float));
        int g1 = (int)((long long)B * (i + 1) / nt) * nty;
        for (int g = (int)((long long)B * i / nt) * nty; g < g1; g += R)
            group(v, m, &s, out, acc, in, U, C, K, kp, H, W, g, g1 - g < R ? g1 - g : R, ep);
    }
    return 1;
}

/* --- the weight gradient ------------------------------------------------------
 * By F(m x m, 3x3), m = 2 or 4 by the width (dw_tile): dU[pos][k][c] =
 * sum over the batch's tiles of (A dY_k A^T)[pos] (B^T d_c B)[pos], then
 * dw[k][c] += G^T dU G (in double). The batch's tile rows are cut into
 * groups of R rows and the groups into P <= DW_PARTS runs of consecutive
 * groups, R and P fixed by the shape; run p sums its groups in order into
 * its own partial dU_p (a group over its lanes in a fixed order), and
 * thread i takes runs i, i+t, ... Each tile's input is transformed once, by
 * the thread of its run. Then each thread sums dU_0 .. dU_P-1 in that
 * order (in double) for its share of the output channels and applies
 * G^T . G: nothing depends on the thread count. */

/* Tile rows per group of the weight gradient, a function of the shape only:
 * dw_group_rows, but at most a DW_PARTS-th of the batch's, so that there
 * are runs for DW_PARTS threads (64 channels at 8x8, B 128, by F(4x4, 3x3)
 * would otherwise be one group). */
static int dw_rows(int m, int B, int C, int K, int H, int W)
{
    int R = dw_group_rows(m, C, K, W), rows = B * ((H + m - 1) / m);
    int most = (rows + DW_PARTS - 1) / DW_PARTS;
    return R < most ? R : most;
}

/* (y0, y1, y2) = G^T (x0 .. x5) for G of F(4x4, 3x3), in double. */
#define DW_GT4(y0, y1, y2, x0, x1, x2, x3, x4, x5)                             \
    do {                                                                        \
        double s12_ = (x1) + (x2), s34_ = (x3) + (x4);                          \
        y0 = (x0) / 4 - s12_ / 6 + s34_ / 24;                                   \
        y1 = ((x2) - (x1)) / 6 + ((x3) - (x4)) / 12;                            \
        y2 = (s34_ - s12_) / 6 + (x5);                                          \
    } while (0)
/* The same for G of F(2x2, 3x3) from (x0 .. x3). */
#define DW_GT2(y0, y1, y2, x0, x1, x2, x3)                                      \
    do {                                                                        \
        y0 = (x0) + ((x1) + (x2)) / 2;                                          \
        y1 = ((x1) - (x2)) / 2;                                                 \
        y2 = ((x1) + (x2)) / 2 + (x3);                                          \
    } while (0)

/* dw[k][c] += G^T dU G for k0 <= k < k1, dU = du_0 + .. + du_P-1 in double
 * (du_p at du + p*dus: [a*a][K][C]), G of F(m x m, 3x3). */
static void dw_back(int m, float *dw, const float *du, size_t dus, int P, int K, int C, int k0,
                    int k1)
{
    int a = m + 2;
    size_t ps = (size_t)K * C;
    for (int k = k0; k < k1; k++)
        for (int c = 0; c < C; c++) {
            const float *u = du + (size_t)k * C + c;
            double d[36], h[6][3];
            for (int pos = 0; pos < a * a; pos++) {
                double e = 0.0;
                for (int p = 0; p < P; p++)
                    e += (double)u[(size_t)p * dus + (size_t)pos * ps];
                d[pos] = e;
            }
            float *o = dw + ((size_t)k * C + c) * 9;
            if (m == 4) {
                for (int i = 0; i < 6; i++) {   /* h = dU G, row i */
                    const double *x = d + 6 * i;
                    DW_GT4(h[i][0], h[i][1], h[i][2], x[0], x[1], x[2], x[3], x[4], x[5]);
                }
                for (int b = 0; b < 3; b++) {   /* G^T h, column b */
                    double y0, y1, y2;
                    DW_GT4(y0, y1, y2, h[0][b], h[1][b], h[2][b], h[3][b], h[4][b], h[5][b]);
                    o[b] += (float)y0, o[3 + b] += (float)y1, o[6 + b] += (float)y2;
                }
            } else {
                for (int i = 0; i < 4; i++) {
                    const double *x = d + 4 * i;
                    DW_GT2(h[i][0], h[i][1], h[i][2], x[0], x[1], x[2], x[3]);
                }
                for (int b = 0; b < 3; b++) {
                    double y0, y1, y2;
                    DW_GT2(y0, y1, y2, h[0][b], h[1][b], h[2][b], h[3][b]);
                    o[b] += (float)y0, o[3 + b] += (float)y1, o[6 + b] += (float)y2;
                }
            }
        }
}
#undef DW_GT4
#undef DW_GT2

/* The transforms of one group of tile rows g0 .. g0+nr-1, tiles of m x m:
 * V [a*a][C][npg] through T (in_tf, the forward pass's), Y [a*a][K][npg]
 * through D. */
static void dw_tf(int v, int m, const Slice *s, float *Y, float *D, const float *dout,
                  const float *in, int C, int K, int H, int W, int g0, int nr, const BnIn *bi)
{
    int a = m + 2, nty = (H + m - 1) / m, ntx = (W + m - 1) / m, L = m * ntx;
    int big = v == ISA_AVX512, n = nr * ntx, npg = (int)up16((size_t)n);
    size_t hw = (size_t)H * W;
    in_tf(v, m, s, in, C, H, W, g0, nr, bi);
    for (int j = 0; j < a; j++)     /* lanes n.. of Y read zeros */
        memset(D + (size_t)j * s->ts + (size_t)m * n, 0, (size_t)m * (npg - n) * sizeof(float));
    for (int k = 0; k < K; k++) {
        for (int r = 0; r < nr; r++) {
            int g = g0 + r, b = g / nty, ty = g % nty;
            const float *e[4], *plane = dout + ((size_t)b * K + k) * hw;
            for (int j = 0; j < m; j++)
                e[j] = m * ty + j < H ? plane + (size_t)(m * ty + j) * W : s->zero;
            if (m == 4)
                (big ? dy_rows4_avx512 : dy_rows4_avx2)(D + (size_t)r * L, s->ts, e, W, L);
            else
                (big ? dy_rows2_avx512 : dy_rows2_avx2)(D + (size_t)r * L, s->ts, e, W, L);
        }
        for (int j = 0; j < a; j++) {
            float *y = Y + ((size_t)a * j * K + k) * npg;
            if (m == 4)
                (big ? dy_cols4_avx512 : dy_cols4_avx2)(y, (size_t)K * npg,
                                                        D + (size_t)j * s->ts, npg);
            else
                (big ? dy_cols2_avx512 : dy_cols2_avx2)(y, (size_t)K * npg,
                                                        D + (size_t)j * s->ts, npg);
        }
    }
}

/* du[pos][k][c] += the products of one group, tile rows g0 .. g0+nr-1 of
 * tiles m x m, through the thread's slice s and its Y, D. */
static void dw_group(int v, int m, const Slice *s, float *Y, float *D, float *du,
                     const float *dout, const float *in, int C, int K, int H, int W, int g0,
                     int nr, const BnIn *bi)
{
    int a = m + 2, npg = (int)up16((size_t)nr * ((W + m - 1) / m));
    dw_tf(v, m, s, Y, D, dout, in, C, K, H, W, g0, nr, bi);
    for (int pos = 0; pos < a * a; pos++)
        (v == ISA_AVX512 ? dot_avx512 : dot_avx2)(du + (size_t)pos * K * C,
                                                  Y + (size_t)pos * K * npg,
                                                  s->V + (size_t)pos * C * npg, K, C, npg);
}

/* The weight gradient's tile size, by the width alone: F(4x4, 3x3) from
 * DW_F4_MIN_W pixels (conv_bench at 1 thread, 16 channels at 32x32: 4.1 ms
 * against F(2x2, 3x3)'s 4.9; 32 at 16x16: 3.3 against 4.5; 64 at 8x8: 3.3
 * against 4.4; float error against double 2e-6..4e-6 of max|dw|,
 * F(2x2, 3x3)'s 2e-7), else F(2x2, 3x3). */
static int dw_tile(int W)
{
    return W >= DW_F4_MIN_W ? 4 : 2;
}

/* The weight gradient, dw +=; with bi, of relu(bn(in)) (the rows applied
 * per channel and image into the slice's A, in_tf), in never read as the
 * conv's input. */
static int backward_weights(const RtCtx *ctx, float *dw, const float *dout, const float *in,
                            int B, int Cin, int H, int W, int Cout, const BnIn *bi)
{
    int v = isa(), C = Cin, K = Cout;
    if (v == ISA_NONE || C < WINO_MIN_C || K < DW_MIN_K || B < 1 || H < 1 || W < 1)
        return 0;
    int m = dw_tile(W), a = m + 2;
    int ntx = (W + m - 1) / m, R = dw_rows(m, B, C, K, H, W), rows = B * ((H + m - 1) / m);
    int ng = (rows + R - 1) / R, P = ng < DW_PARTS ? ng : DW_PARTS;
    size_t np = up16((size_t)R * ntx), dus = up16((size_t)a * a * K * C);
    int t = ctx && ctx->threads > 0 ? ctx->threads : 1;
    if (t > P)
        t = P;
    size_t have;
    float *base = scratch_floats(ctx, &have);
    size_t ssz = up16(dw_slice_floats(m, C, K, np, H, W));
    for (;;) {      /* fewer threads if need be; never a smaller group */
        if ((size_t)P * dus + (size_t)t * ssz <= have)
            break;
        if (t == 1)
            return 0;
        t--;
    }
#pragma omp parallel num_threads(t)
    {
        int i = omp_get_thread_num(), nt = omp_get_num_threads();
        float *p = base + (size_t)P * dus + (size_t)i * ssz;
        Slice s;
        s.V = p, p += (size_t)a * a * C * np;
        float *Y = p;
        p += (size_t)a * a * K * np;
        s.ts = (size_t)m * np + 32, s.T = p, p += (size_t)a * s.ts;
        float *D = p;
        p += (size_t)a * s.ts;
        s.zero = p, p += up16((size_t)W);
        s.m0 = p, s.m5 = p + np, p += 2 * np;
        s.A = p;
        s.M = s.O = NULL, s.os = 0;
        memset(s.zero, 0, (size_t)W * sizeof(float));
        for (int run = i; run < P; run += nt) {
            float *du = base + (size_t)run * dus;
            memset(du, 0, (size_t)a * a * K * C * sizeof(float));
            int e = (int)((long long)ng * (run + 1) / P);
            for (int g = (int)((long long)ng * run / P); g < e; g++)
                dw_group(v, m, &s, Y, D, du, dout, in, C, K, H, W, g * R,
                         rows - g * R < R ? rows - g * R : R, bi);
        }
#pragma omp barrier
        dw_back(m, dw, base, dus, P, K, C, (int)((long long)K * i / nt),
                (int)((long long)K * (i + 1) / nt));
    }
    return 1;
}

int rt_wino_backward_weights(const RtCtx *ctx, float *dw, const float *dout, const float *in,
                             int B, int Cin, int H, int W, int Cout)
{
    return backward_weights(ctx, dw, dout, in, B, Cin, H, W, Cout, NULL);
}

/* rt_conv2d_backward of h = relu(x sc + sh) with the training BN's saved
 * statistics (sc = rstd gamma, sh = beta - mean sc, rt_bn_relu_recompute's
 * arithmetic), 3x3 stride 1 pad 1: the weight gradient applies the BN +
 * relu as it reads its input (Winograd: in_tf's rows; direct:
 * rt_conv3x3_bnin_weights, a group of images in the scratch) where the
 * plain call would take that kernel, the input gradient needs no h; h is
 * not written and the BN backward after takes relu's mask from x. With a
 * branch record, synchronised BN, no beta, or a kernel that would not run,
 * h is recomputed into h and the plain backward reads it. The same bytes
 * in din and dw either way. */
/* dw += (neg: -=) the weight gradient of relu(x sc + sh), h not written;
 * 0 (dw as it was) where the kernel the plain call takes cannot. */
static int bnin_weights(const RtCtx *ctx, float *dw, const float *dout, const float *x,
                        const float *mean, const float *rstd, const float *gamma,
                        const float *beta, int B, int C, int H, int W, int Cout, int neg)
{
    size_t nw = (size_t)Cout * C * 9;
    if (!ctx || ctx->sync || ctx->branch || !beta)
        return 0;
    BnIn bi = {.gamma = gamma, .beta = beta, .mean = mean, .rstd = rstd};
    if (neg)    /* as rt_conv2d_backward_neg: negated around the sum (exact) */
        for (size_t i = 0; i < nw; i++)
            dw[i] = -dw[i];
    int done = backward_weights(ctx, dw, dout, x, B, C, H, W, Cout, &bi)
               || rt_conv3x3_bnin_weights(ctx, dw, dout, x, (size_t)C * H * W, mean, rstd, gamma,
                                          beta, B, C, H, W, Cout);
    if (neg)
        for (size_t i = 0; i < nw; i++)
            dw[i] = -dw[i];
    return done;
}

/* rt_bn_relu_conv3x3_backward and its _neg: dw with the BN applied as the
 * weight gradient reads x (bnin_weights), din reading no input; else the
 * recompute of h and the plain backward. */
static void bnin_backward(const RtCtx *ctx, float *din, int acc, float *dw, const float *dout,
                          float *h, const float *x, const float *mean, const float *rstd,
                          const float *gamma, const float *beta, int B, int C, int H, int W,
                          size_t site, size_t xs, const float *w, int Cout, int neg)
{
    void (*bwd)(const RtCtx *, float *, int, float *, const float *, const float *,
                const float *, int, int, int, int, int, int, int, int) =
        neg ? rt_conv2d_backward_neg : rt_conv2d_backward;
    if (dw && xs == (size_t)C * H * W
        && bnin_weights(ctx, dw, dout, x, mean, rstd, gamma, beta, B, C, H, W, Cout, neg)) {
        if (din)    /* reads no input */
            bwd(ctx, din, acc, NULL, dout, h, w, B, C, H, W, Cout, 3, 1, 1);
        return;
    }
    rt_bn_relu_recompute(ctx, h, x, mean, rstd, gamma, beta, B, C, H * W, site, xs);
    bwd(ctx, din, acc, dw, dout, h, w, B, C, H, W, Cout, 3, 1, 1);
}

void rt_bn_relu_conv3x3_backward(const RtCtx *ctx, float *din, int acc, float *dw,
                                 const float *dout, float *h, const float *x, const float *mean,
                                 const float *rstd, const float *gamma, const float *beta,
                                 int B, int C, int H, int W, size_t site, size_t xs,
                                 const float *w, int Cout)
{
    bnin_backward(ctx, din, acc, dw, dout, h, x, mean, rstd, gamma, beta, B, C, H, W, site, xs,
                  w, Cout, 0);
}

/* The same for a conv whose sum's term is -1 (rt_conv2d_backward_neg). */
void rt_bn_relu_conv3x3_backward_neg(const RtCtx *ctx, float *din, int acc, float *dw,
                                     const float *dout, float *h, const float *x,
                                     const float *mean, const float *rstd, const float *gamma,
                                     const float *beta, int B, int C, int H, int W, size_t site,
                                     size_t xs, const float *w, int Cout)
{
    bnin_backward(ctx, din, acc, dw, dout, h, x, mean, rstd, gamma, beta, B, C, H, W, site, xs,
                  w, Cout, 1);
}

void rt_bn_relu_conv3x3_backward_neg_d(const RtCtx *ctx, double *din, int acc, double *dw,
                                       const double *dout, double *h, const double *x,
                                       const double *mean, const double *rstd,
                                       const double *gamma, const double *beta, int B, int C,
                                       int H, int W, size_t site, size_t xs, const double *w,
                                       int Cout)
{
    rt_bn_relu_recompute_d(ctx, h, x, mean, rstd, gamma, beta, B, C, H * W, site, xs);
    rt_conv2d_backward_neg_d(ctx, din, acc, dw, dout, h, w, B, C, H, W, Cout, 3, 1, 1);
}

/* The terms of an n-term sum but its j-th into o[], its coefficients into
 * cd[] as doubles; 0 unless n is 1, 2 or 3. */
static int sum_terms(const float **o, double *cd, int n, int j, const float *const *xs,
                     const float *c)
{
    if (n < 1 || n > 3)
        return 0;
    for (int i = 0, k = 0; i < n; i++) {
        cd[i] = (double)c[i];
        if (i != j)
            o[k++] = xs[i];
    }
    return 1;
}

/* The training forward of h = relu(bn(x)) (rt_bn_relu_forward_train: the
 * saved and running statistics) and the 3x3 stride-1 conv of h, into out
 * (n 0) or with its sums as rt_conv2d_sums_then_train (n terms, xs[j] being
 * conv, its scratch; then out2 when not NULL): the float build with
 * Winograd taking the conv, no branch record and no synchronised BN: the BN
 * gathers its statistics only and the conv applies the BN + relu as its
 * input transform reads x (the saved statistics, rt_bn_relu_recompute's
 * arithmetic), h never written (the backward is
 * rt_bn_relu_conv3x3_backward). Elsewhere the pair: the BN writes h, the
 * conv reads it. The same bytes either way. */
void rt_bn_relu_conv3x3_sums_train(const RtCtx *ctx, float *out, float *conv, float *h,
                                   float *mean, float *rstd, float *run_mean, float *run_var,
                                   const float *x, const float *gamma, const float *beta, int B,
                                   int C, int H, int W, double momentum, double eps,
                                   size_t site, const float *w, int Cout, int n, int j,
                                   const float *const *xs, const float *c, float *out2, int n2,
                                   int j2, const float *const *xs2, const float *c2)
{
    int HW = H * W;
    Epi ep = {.plain = n == 0, .train = n != 0, .j = j, .out2 = out2, .j2 = j2};
    const float *o[2] = {NULL, NULL};
    if (ctx && !ctx->sync && !ctx->branch && mean && rstd && rt_wino_taken(C, Cout)
        && (n == 0 || sum_terms(o, ep.c, n, j, xs, c))
        && (!out2 || sum_terms(ep.q, ep.d, n2, j2, xs2, c2))) {
        rt_bn_relu_forward_train_cached(ctx, NULL, mean, rstd, run_mean, run_var, x, gamma,
                                        beta, B, C, HW, momentum, eps, site, (size_t)C * HW,
                                        NULL, 0);
        BnIn bi = {.gamma = gamma, .beta = beta, .mean = mean, .rstd = rstd};
        ep.r = o[0], ep.r2 = o[1], ep.bi = &bi;
        if (wino(ctx, 2, out, 0, x, w, (ptrdiff_t)C * 9, 9, 0, B, C, H, W, Cout, &ep))
            return;
        rt_bn_relu_recompute(ctx, h, x, mean, rstd, gamma, beta, B, C, HW, site, (size_t)C * HW);
    } else {
        rt_bn_relu_forward_train(ctx, h, mean, rstd, run_mean, run_var, x, gamma, beta, B, C, HW,
                                 momentum, eps, site);
    }
    if (n)
        rt_conv2d_sums_then_train(ctx, out, conv, h, w, B, C, H, W, Cout, 3, 1, 1, n, j, xs, c,
                                  out2, n2, j2, xs2, c2);
    else
        rt_conv2d_forward(ctx, out, h, w, B, C, H, W, Cout, 3, 1, 1);
}

/* rt_bn_relu_conv3x3_sums_train into out (r NULL) or with a 2-term sum out
 * = cc conv + cr r as rt_conv2d_sum_train (the coefficients as
 * rt_sum_forward sees them: floats). */
void rt_bn_relu_conv3x3_train(const RtCtx *ctx, float *out, float *conv, float *h, float *mean,
                              float *rstd, float *run_mean, float *run_var, const float *x,
                              const float *gamma, const float *beta, int B, int C, int H, int W,
                              double momentum, double eps, size_t site, const float *w,
                              int Cout, double cc, const float *r, double cr)
{
    const float c[2] = {(float)cc, (float)cr};
    const float *const xs[2] = {conv, r};
    rt_bn_relu_conv3x3_sums_train(ctx, out, conv, h, mean, rstd, run_mean, run_var, x, gamma,
                                  beta, B, C, H, W, momentum, eps, site, w, Cout, r ? 2 : 0, 0,
                                  xs, c, NULL, 0, 0, NULL, NULL);
}

void rt_bn_relu_conv3x3_sums_train_d(const RtCtx *ctx, double *out, double *conv, double *h,
                                     double *mean, double *rstd, double *run_mean,
                                     double *run_var, const double *x, const double *gamma,
                                     const double *beta, int B, int C, int H, int W,
                                     double momentum, double eps, size_t site, const double *w,
                                     int Cout, int n, int j, const double *const *xs,
                                     const double *c, double *out2, int n2, int j2,
                                     const double *const *xs2, const double *c2)
{
    rt_bn_relu_forward_train_d(ctx, h, mean, rstd, run_mean, run_var, x, gamma, beta, B, C,
                               H * W, momentum, eps, site);
    if (n)
        rt_conv2d_sums_then_train_d(ctx, out, conv, h, w, B, C, H, W, Cout, 3, 1, 1, n, j, xs, c,
                                    out2, n2, j2, xs2, c2);
    else
        rt_conv2d_forward_d(ctx, out, h, w, B, C, H, W, Cout, 3, 1, 1);
}

void rt_bn_relu_conv3x3_train_d(const RtCtx *ctx, double *out, double *conv, double *h,
                                double *mean, double *rstd, double *run_mean, double *run_var,
                                const double *x, const double *gamma, const double *beta, int B,
                                int C, int H, int W, double momentum, double eps, size_t site,
                                const double *w, int Cout, double cc, const double *r, double cr)
{
    const double c[2] = {cc, cr};
    const double *const xs[2] = {conv, r};
    rt_bn_relu_conv3x3_sums_train_d(ctx, out, conv, h, mean, rstd, run_mean, run_var, x, gamma,
                                    beta, B, C, H, W, momentum, eps, site, w, Cout, r ? 2 : 0, 0,
                                    xs, c, NULL, 0, 0, NULL, NULL);
}

void rt_bn_relu_conv3x3_backward_d(const RtCtx *ctx, double *din, int acc, double *dw,
                                   const double *dout, double *h, const double *x,
                                   const double *mean, const double *rstd, const double *gamma,
                                   const double *beta, int B, int C, int H, int W, size_t site,
                                   size_t xs, const double *w, int Cout)
{
    rt_bn_relu_recompute_d(ctx, h, x, mean, rstd, gamma, beta, B, C, H * W, site, xs);
    rt_conv2d_backward_d(ctx, din, acc, dw, dout, h, w, B, C, H, W, Cout, 3, 1, 1);
}

int rt_wino_forward(const RtCtx *ctx, float *out, const float *in, const float *w,
                    int B, int Cin, int H, int W, int Cout)
{
    return wino(ctx, 2, out, 0, in, w, (ptrdiff_t)Cin * 9, 9, 0, B, Cin, H, W, Cout, NULL);
}

/* The inference forward, with ep's BN applied when ep is not NULL. */
static int forward_eval(const RtCtx *ctx, float *out, const float *in, const float *w, int B,
                        int Cin, int H, int W, int Cout, const Epi *ep)
{
    /* the workspace is sized for F(4x4, 3x3) with Cout <= Cin; should a
     * wider conv not fit, F(2x2, 3x3) */
    ptrdiff_t wk = (ptrdiff_t)Cin * 9;
    if (W >= EVAL_MIN_W && wino(ctx, 4, out, 0, in, w, wk, 9, 0, B, Cin, H, W, Cout, ep))
        return 1;
    return wino(ctx, 2, out, 0, in, w, wk, 9, 0, B, Cin, H, W, Cout, ep);
}

/* The conv with its sum and the sum after it (out2 NULL: none) written
 * as its output rows are copied out (rt_conv2d_sums_then_train with train
 * 1, the _eval forms with 0, bi their input's BN + relu applied as the
 * input transform reads in): 0 where Winograd does not take it. */
static int sums_fused(const RtCtx *ctx, int train, const BnIn *bi, float *out, const float *in,
                      const float *w, int B, int Cin, int H, int W, int Cout, int K, int stride,
                      int pad, int n, int j, const float *const *xs, const float *c, float *out2,
                      int n2, int j2, const float *const *xs2, const float *c2)
{
    Epi ep = {.train = 1, .j = j, .out2 = out2, .j2 = j2, .bi = bi};
    const float *o[2] = {NULL, NULL};
    if (K != 3 || stride != 1 || pad != 1 || !sum_terms(o, ep.c, n, j, xs, c)
        || (out2 && !sum_terms(ep.q, ep.d, n2, j2, xs2, c2)))
        return 0;
    ep.r = o[0], ep.r2 = o[1];
    return train ? wino(ctx, 2, out, 0, in, w, (ptrdiff_t)Cin * 9, 9, 0, B, Cin, H, W, Cout, &ep)
                 : forward_eval(ctx, out, in, w, B, Cin, H, W, Cout, &ep);
}

/* The same as its calls: the conv (rt_conv2d_forward_mode) into conv,
 * then the sums. */
static void sums_plain(const RtCtx *ctx, int train, float *out, float *conv, const float *in,
                       const float *w, int B, int Cin, int H, int W, int Cout, int K, int stride,
                       int pad, int n, const float *const *xs, const float *c, float *out2,
                       int n2, const float *const *xs2, const float *c2)
{
    size_t len = (size_t)B * Cout * (size_t)rt_conv_out(H, K, stride, pad)
                 * (size_t)rt_conv_out(W, K, stride, pad);
    rt_conv2d_forward_mode(ctx, train, conv, in, w, B, Cin, H, W, Cout, K, stride, pad);
    rt_sum_forward(ctx, out, n, xs, c, len);
    if (out2)
        rt_sum_forward(ctx, out2, n2, xs2, c2, len);
}

/* sums_fused, else sums_plain. */
static void sums_then(const RtCtx *ctx, int train, float *out, float *conv, const float *in,
                      const float *w, int B, int Cin, int H, int W, int Cout, int K, int stride,
                      int pad, int n, int j, const float *const *xs, const float *c, float *out2,
                      int n2, int j2, const float *const *xs2, const float *c2)
{
    if (!sums_fused(ctx, train, NULL, out, in, w, B, Cin, H, W, Cout, K, stride, pad, n, j, xs,
                    c, out2, n2, j2, xs2, c2))
        sums_plain(ctx, train, out, conv, in, w, B, Cin, H, W, Cout, K, stride, pad, n, xs, c,
                   out2, n2, xs2, c2);
}

int rt_wino_forward_eval(const RtCtx *ctx, float *out, const float *in, const float *w,
                         int B, int Cin, int H, int W, int Cout)
{
    return forward_eval(ctx, out, in, w, B, Cin, H, W, Cout, NULL);
}

void rt_conv2d_forward_mode(const RtCtx *ctx, int train, float *out, const float *in,
                            const float *w, int B, int Cin, int H, int W, int Cout, int K,
                            int stride, int pad)
{
    if (!train && K == 3 && stride == 1 && pad == 1
        && rt_wino_forward_eval(ctx, out, in, w, B, Cin, H, W, Cout))
        return;
    rt_conv2d_forward(ctx, out, in, w, B, Cin, H, W, Cout, K, stride, pad);
}

void rt_conv2d_forward_mode_d(const RtCtx *ctx, int train, double *out, const double *in,
                              const double *w, int B, int Cin, int H, int W, int Cout, int K,
                              int stride, int pad)
{
    (void)train;    /* the double build is the reference: one path */
    rt_conv2d_forward_d(ctx, out, in, w, B, Cin, H, W, Cout, K, stride, pad);
}

void rt_conv2d_bn_eval(const RtCtx *ctx, float *out, const float *in, const float *w, int B,
                       int Cin, int H, int W, int Cout, int K, int stride, int pad,
                       const float *gamma, const float *beta, const float *run_mean,
                       const float *run_var, double eps, int relu, size_t site)
{
    Epi ep = {.gamma = gamma, .beta = beta, .mean = run_mean, .var = run_var, .eps = eps,
              .relu = relu};
    /* a branch record (gradient checks) goes to rt_relu_forward below */
    if (K == 3 && stride == 1 && pad == 1 && !(ctx && ctx->branch)
        && forward_eval(ctx, out, in, w, B, Cin, H, W, Cout, &ep))
        return;
    rt_conv2d_forward_mode(ctx, 0, out, in, w, B, Cin, H, W, Cout, K, stride, pad);
    int Ho = rt_conv_out(H, K, stride, pad), Wo = rt_conv_out(W, K, stride, pad);
    size_t hw = (size_t)Ho * Wo;
    int rl = relu && !(ctx && ctx->branch), t = ctx && ctx->threads > 0 ? ctx->threads : 1;
#pragma omp parallel for num_threads(t) schedule(static)
    for (int bk = 0; bk < B * Cout; bk++) {
        int k = bk % Cout;
        double scd = (double)gamma[k] / sqrt((double)run_var[k] + eps);
        float sc = (float)scd, sh = (float)((double)beta[k] - (double)run_mean[k] * scd);
        float *o = out + (size_t)bk * hw;
        if (rl) {
#pragma omp simd
            for (size_t i = 0; i < hw; i++) {
                float v = o[i] * sc + sh;
                o[i] = v > 0.0f ? v : 0.0f;
            }
        } else {
#pragma omp simd
            for (size_t i = 0; i < hw; i++)
                o[i] = o[i] * sc + sh;
        }
    }
    if (relu && !rl)    /* the record's pieces */
        rt_relu_forward(ctx, out, out, (size_t)B * Cout * hw, site);
}

void rt_conv2d_sum_eval(const RtCtx *ctx, float *out, const float *in, const float *w, int B,
                        int Cin, int H, int W, int Cout, int K, int stride, int pad,
                        double cc, const float *r, double cr)
{
    Epi ep = {.r = r, .cc = (float)cc, .cr = (float)cr};
    if (K == 3 && stride == 1 && pad == 1
        && forward_eval(ctx, out, in, w, B, Cin, H, W, Cout, &ep))
        return;
    rt_conv2d_forward_mode(ctx, 0, out, in, w, B, Cin, H, W, Cout, K, stride, pad);
    size_t n = (size_t)B * Cout * (size_t)rt_conv_out(H, K, stride, pad)
               * (size_t)rt_conv_out(W, K, stride, pad);
    float fc = (float)cc, fr = (float)cr;
#pragma omp parallel for simd num_threads(ctx && ctx->threads > 0 ? ctx->threads : 1) schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = out[i] * fc + r[i] * fr;
}

/* rt_bn_relu_forward_eval (h = relu(bn(x)), at site isite) then
 * rt_conv2d_bn_eval on h; Winograd applies the input BN as it transforms x
 * and never writes h (the other paths do: h is scratch). */
void rt_conv2d_bnin_bn_eval(const RtCtx *ctx, float *out, float *h, const float *x,
                            const float *w, int B, int Cin, int H, int W, int Cout, int K,
                            int stride, int pad, const float *igamma, const float *ibeta,
                            const float *imean, const float *ivar, double ieps, size_t isite,
                            const float *gamma, const float *beta, const float *run_mean,
                            const float *run_var, double eps, int relu, size_t site)
{
    BnIn bi = {igamma, ibeta, imean, ivar, ieps, NULL};
    Epi ep = {.gamma = gamma, .beta = beta, .mean = run_mean, .var = run_var, .eps = eps,
              .relu = relu, .bi = &bi};
    if (K == 3 && stride == 1 && pad == 1 && !(ctx && ctx->branch)
        && forward_eval(ctx, out, x, w, B, Cin, H, W, Cout, &ep))
        return;
    rt_bn_relu_forward_eval(ctx, h, x, igamma, ibeta, imean, ivar, B, Cin, H * W, ieps, isite);
    rt_conv2d_bn_eval(ctx, out, h, w, B, Cin, H, W, Cout, K, stride, pad, gamma, beta, run_mean,
                      run_var, eps, relu, site);
}

/* rt_bn_relu_forward_eval (h = relu(bn(x))) then rt_conv2d_sum_eval on h;
 * h as in rt_conv2d_bnin_bn_eval. */
void rt_conv2d_bnin_sum_eval(const RtCtx *ctx, float *out, float *h, const float *x,
                             const float *w, int B, int Cin, int H, int W, int Cout, int K,
                             int stride, int pad, const float *igamma, const float *ibeta,
                             const float *imean, const float *ivar, double ieps, size_t isite,
                             double cc, const float *r, double cr)
{
    BnIn bi = {igamma, ibeta, imean, ivar, ieps, NULL};
    Epi ep = {.r = r, .cc = (float)cc, .cr = (float)cr, .bi = &bi};
    if (K == 3 && stride == 1 && pad == 1 && !(ctx && ctx->branch)
        && forward_eval(ctx, out, x, w, B, Cin, H, W, Cout, &ep))
        return;
    rt_bn_relu_forward_eval(ctx, h, x, igamma, ibeta, imean, ivar, B, Cin, H * W, ieps, isite);
    rt_conv2d_sum_eval(ctx, out, h, w, B, Cin, H, W, Cout, K, stride, pad, cc, r, cr);
}

/* rt_bn_relu_forward_eval (h = relu(bn(x))) then rt_conv2d_sums_then_eval on
 * h; h as in rt_conv2d_bnin_bn_eval. */
void rt_conv2d_bnin_sums_then_eval(const RtCtx *ctx, float *out, float *conv, float *h,
                                   const float *x, const float *w, int B, int Cin, int H, int W,
                                   int Cout, int K, int stride, int pad, const float *igamma,
                                   const float *ibeta, const float *imean, const float *ivar,
                                   double ieps, size_t isite, int n, int j,
                                   const float *const *xs, const float *c, float *out2, int n2,
                                   int j2, const float *const *xs2, const float *c2)
{
    BnIn bi = {igamma, ibeta, imean, ivar, ieps, NULL};
    if (!(ctx && ctx->branch) && sums_fused(ctx, 0, &bi, out, x, w, B, Cin, H, W, Cout, K, stride,
                                            pad, n, j, xs, c, out2, n2, j2, xs2, c2))
        return;
    rt_bn_relu_forward_eval(ctx, h, x, igamma, ibeta, imean, ivar, B, Cin, H * W, ieps, isite);
    sums_plain(ctx, 0, out, conv, h, w, B, Cin, H, W, Cout, K, stride, pad, n, xs, c, out2, n2,
               xs2, c2);
}

void rt_conv2d_bnin_bn_eval_d(const RtCtx *ctx, double *out, double *h, const double *x,
                              const double *w, int B, int Cin, int H, int W, int Cout, int K,
                              int stride, int pad, const double *igamma, const double *ibeta,
                              const double *imean, const double *ivar, double ieps,
                              size_t isite, const double *gamma, const double *beta,
                              const double *run_mean, const double *run_var, double eps,
                              int relu, size_t site)
{
    rt_bn_relu_forward_eval_d(ctx, h, x, igamma, ibeta, imean, ivar, B, Cin, H * W, ieps, isite);
    rt_conv2d_bn_eval_d(ctx, out, h, w, B, Cin, H, W, Cout, K, stride, pad, gamma, beta,
                        run_mean, run_var, eps, relu, site);
}

void rt_conv2d_bnin_sum_eval_d(const RtCtx *ctx, double *out, double *h, const double *x,
                               const double *w, int B, int Cin, int H, int W, int Cout, int K,
                               int stride, int pad, const double *igamma, const double *ibeta,
                               const double *imean, const double *ivar, double ieps,
                               size_t isite, double cc, const double *r, double cr)
{
    rt_bn_relu_forward_eval_d(ctx, h, x, igamma, ibeta, imean, ivar, B, Cin, H * W, ieps, isite);
    rt_conv2d_sum_eval_d(ctx, out, h, w, B, Cin, H, W, Cout, K, stride, pad, cc, r, cr);
}

/* A 2-term training sum: rt_conv2d_sums_train with the conv first. */
void rt_conv2d_sum_train(const RtCtx *ctx, float *out, float *conv, const float *in,
                         const float *w, int B, int Cin, int H, int W, int Cout, int K,
                         int stride, int pad, double cc, const float *r, double cr)
{
    /* the coefficients as rt_sum_forward sees them: floats */
    const float c[2] = {(float)cc, (float)cr};
    const float *const xs[2] = {conv, r};
    rt_conv2d_sums_train(ctx, out, conv, in, w, B, Cin, H, W, Cout, K, stride, pad, 2, 0, xs, c);
}

void rt_conv2d_sums_then_train(const RtCtx *ctx, float *out, float *conv, const float *in,
                               const float *w, int B, int Cin, int H, int W, int Cout, int K,
                               int stride, int pad, int n, int j, const float *const *xs,
                               const float *c, float *out2, int n2, int j2,
                               const float *const *xs2, const float *c2)
{
    sums_then(ctx, 1, out, conv, in, w, B, Cin, H, W, Cout, K, stride, pad, n, j, xs, c, out2, n2,
              j2, xs2, c2);
}

/* The inference twin of rt_conv2d_sums_then_train: the conv by the
 * inference kernel (rt_conv2d_forward_mode's with train 0) with its sum and
 * the sum after it (out2 NULL: none) written as its output rows are copied
 * out, each rounded as rt_sum_forward rounds it; the other paths write conv
 * and then the sums. */
void rt_conv2d_sums_then_eval(const RtCtx *ctx, float *out, float *conv, const float *in,
                              const float *w, int B, int Cin, int H, int W, int Cout, int K,
                              int stride, int pad, int n, int j, const float *const *xs,
                              const float *c, float *out2, int n2, int j2,
                              const float *const *xs2, const float *c2)
{
    sums_then(ctx, 0, out, conv, in, w, B, Cin, H, W, Cout, K, stride, pad, n, j, xs, c, out2, n2,
              j2, xs2, c2);
}

void rt_conv2d_sums_train(const RtCtx *ctx, float *out, float *conv, const float *in,
                          const float *w, int B, int Cin, int H, int W, int Cout, int K,
                          int stride, int pad, int n, int j, const float *const *xs,
                          const float *c)
{
    rt_conv2d_sums_then_train(ctx, out, conv, in, w, B, Cin, H, W, Cout, K, stride, pad, n, j,
                              xs, c, NULL, 0, 0, NULL, NULL);
}

void rt_conv2d_sums_then_train_d(const RtCtx *ctx, double *out, double *conv,
                                 const double *in, const double *w, int B, int Cin, int H,
                                 int W, int Cout, int K, int stride, int pad, int n, int j,
                                 const double *const *xs, const double *c, double *out2,
                                 int n2, int j2, const double *const *xs2, const double *c2)
{
    (void)j, (void)j2;  /* xs[j] is conv, xs2[j2] out */
    size_t len = (size_t)B * Cout * (size_t)rt_conv_out(H, K, stride, pad)
                 * (size_t)rt_conv_out(W, K, stride, pad);
    rt_conv2d_forward_d(ctx, conv, in, w, B, Cin, H, W, Cout, K, stride, pad);
    rt_sum_forward_d(ctx, out, n, xs, c, len);
    if (out2)
        rt_sum_forward_d(ctx, out2, n2, xs2, c2, len);
}

void rt_conv2d_sums_then_eval_d(const RtCtx *ctx, double *out, double *conv,
                                const double *in, const double *w, int B, int Cin, int H,
                                int W, int Cout, int K, int stride, int pad, int n, int j,
                                const double *const *xs, const double *c, double *out2,
                                int n2, int j2, const double *const *xs2, const double *c2)
{
    rt_conv2d_sums_then_train_d(ctx, out, conv, in, w, B, Cin, H, W, Cout, K, stride, pad, n, j,
                                xs, c, out2, n2, j2, xs2, c2);
}

void rt_conv2d_bnin_sums_then_eval_d(const RtCtx *ctx, double *out, double *conv, double *h,
                                     const double *x, const double *w, int B, int Cin, int H,
                                     int W, int Cout, int K, int stride, int pad,
                                     const double *igamma, const double *ibeta,
                                     const double *imean, const double *ivar, double ieps,
                                     size_t isite, int n, int j, const double *const *xs,
                                     const double *c, double *out2, int n2, int j2,
                                     const double *const *xs2, const double *c2)
{
    rt_bn_relu_forward_eval_d(ctx, h, x, igamma, ibeta, imean, ivar, B, Cin, H * W, ieps, isite);
    rt_conv2d_sums_then_eval_d(ctx, out, conv, h, w, B, Cin, H, W, Cout, K, stride, pad, n, j,
                               xs, c, out2, n2, j2, xs2, c2);
}

void rt_conv2d_sums_train_d(const RtCtx *ctx, double *out, double *conv, const double *in,
                            const double *w, int B, int Cin, int H, int W, int Cout, int K,
                            int stride, int pad, int n, int j, const double *const *xs,
                            const double *c)
{
    rt_conv2d_sums_then_train_d(ctx, out, conv, in, w, B, Cin, H, W, Cout, K, stride, pad, n, j,
                                xs, c, NULL, 0, 0, NULL, NULL);
}

void rt_conv2d_sum_train_d(const RtCtx *ctx, double *out, double *conv, const double *in,
                           const double *w, int B, int Cin, int H, int W, int Cout, int K,
                           int stride, int pad, double cc, const double *r, double cr)
{
    const double c[2] = {cc, cr};
    const double *const xs[2] = {conv, r};
    rt_conv2d_sums_train_d(ctx, out, conv, in, w, B, Cin, H, W, Cout, K, stride, pad, 2, 0, xs,
                           c);
}

void rt_conv2d_sum_eval_d(const RtCtx *ctx, double *out, const double *in, const double *w,
                          int B, int Cin, int H, int W, int Cout, int K, int stride, int pad,
                          double cc, const double *r, double cr)
{
    rt_conv2d_forward_d(ctx, out, in, w, B, Cin, H, W, Cout, K, stride, pad);
    size_t n = (size_t)B * Cout * (size_t)rt_conv_out(H, K, stride, pad)
               * (size_t)rt_conv_out(W, K, stride, pad);
    for (size_t i = 0; i < n; i++)
        out[i] = out[i] * cc + r[i] * cr;
}

void rt_conv2d_bn_eval_d(const RtCtx *ctx, double *out, const double *in, const double *w,
                         int B, int Cin, int H, int W, int Cout, int K, int stride, int pad,
                         const double *gamma, const double *beta, const double *run_mean,
                         const double *run_var, double eps, int relu, size_t site)
{
    rt_conv2d_forward_d(ctx, out, in, w, B, Cin, H, W, Cout, K, stride, pad);
    int Ho = rt_conv_out(H, K, stride, pad), Wo = rt_conv_out(W, K, stride, pad);
    size_t hw = (size_t)Ho * Wo;
    for (int k = 0; k < Cout; k++) {
        double sc = gamma[k] / sqrt(run_var[k] + eps), sh = beta[k] - run_mean[k] * sc;
        for (int b = 0; b < B; b++) {
            double *o = out + ((size_t)b * Cout + k) * hw;
            for (size_t i = 0; i < hw; i++)
                o[i] = o[i] * sc + sh;
        }
    }
    if (relu)
        rt_relu_forward_d(ctx, out, out, (size_t)B * Cout * hw, site);
}

int rt_wino_backward_data(const RtCtx *ctx, float *din, int acc, const float *dout,
                          const float *w, int B, int Cin, int H, int W, int Cout)
{
    /* din = conv3x3(dout, w read as [ci][co] with the taps flipped) */
    return wino(ctx, 4, din, acc, dout, w, 9, (ptrdiff_t)Cin * 9, 1, B, Cout, H, W, Cin, NULL);
}

int rt_wino_backward_data_neg(const RtCtx *ctx, float *din, int acc, const float *dout,
                              const float *w, int B, int Cin, int H, int W, int Cout)
{
    return wino(ctx, 4, din, acc, dout, w, 9, (ptrdiff_t)Cin * 9, 3, B, Cout, H, W, Cin, NULL);
}
