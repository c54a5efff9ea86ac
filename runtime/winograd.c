/* winograd.c — float 3x3 convolutions of stride 1 and pad 1 by Winograd's
 * F(4x4, 3x3): the forward pass and the input gradient (the same code with
 * the weights read transposed and flipped).
 *
 * Why: the direct kernels (conv3x3.c) run near what direct convolution can
 * do; F(4x4, 3x3) needs 36 products per 16 outputs instead of 144, a
 * quarter of the multiplies, for the price of the transforms. Its float
 * error stays within ~6e-6 of max|out| for the networks' 16..64 channels
 * (F(2x2, 3x3): ~4e-7, but half the saving); the gradient checks allow 1e-4.
 *
 * Layout. The weights are transformed once per call (in double, rounded
 * once) into U[36][C][kp] (kp: K rounded up to the register block). Each
 * thread owns a contiguous range of images and walks its tile rows (image b,
 * tile row ty: output rows 4ty..4ty+3) a group of R rows at a time, R sized
 * so that the group's transformed input V[36][C][np] and products
 * M[36][kp][np] (np: the group's tiles rounded up to 16) stay in L2:
 *   input transform, per channel: B^T down the six input rows of each tile
 *     row, whole rows at a time (rows outside the image read a zero row),
 *     into T[6][tile rows x 4 ntx] — consecutive tile rows side by side, so
 *     tile l of the group has its six columns at 4l-1 .. 4l+4; then B
 *     across those columns, tile by tile, into V (the first column of a
 *     row's first tile and the last of its last are the zero padding);
 *   36 products M[pos] = U[pos]^T V[pos], register-blocked;
 *   output transform per output channel into four rows laid out like T,
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
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "winograd.h"

/* Fewer input channels than this: the products are too short to pay for
 * the transforms (conv_bench: the 3-channel stem runs faster direct). */
#define WINO_MIN_C 8
/* Bytes of V and M a thread's group aims at: within its share of L2. */
#define GROUP_BYTES (1u << 20)

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
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VBCAST(p) _mm256_broadcast_ss(p)
#include "winograd_kern.inc"
#undef SFX
#undef KTARGET
#undef VT
#undef VW
#undef NK
#undef NV
#undef VZERO
#undef VLOAD
#undef VSTORE
#undef VFMA
#undef VBCAST

/* --- the AVX-512 variant ----------------------------------------------------- */
#define SFX(name) name##_avx512
#define KTARGET "avx512f,avx2,fma"
#define VT __m512
#define VW 16
#define NK 8        /* 8 channels x 3 vectors + 3 inputs of the 32 registers */
#define NV 3
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VBCAST(p) _mm512_set1_ps(*(p))
#include "winograd_kern.inc"

/* --- drivers ------------------------------------------------------------------ */

static size_t up16(size_t n)
{
    return (n + 15) / 16 * 16;
}

/* Floats of one thread's slice for groups of up to np tiles (a multiple of
 * 16) of a conv with C inputs, kp (padded) outputs and rows of W: V, M, T
 * (six rows with 16 floats of margin either side), O (four rows), a zero
 * input row, and the two border masks. */
static size_t slice_floats(int C, int kp, size_t np, int W)
{
    return 36 * (size_t)(C + kp) * np + 6 * (4 * np + 32) + 4 * 4 * np + up16((size_t)W)
           + 2 * np;
}

/* Tile rows per group for this conv: V and M within GROUP_BYTES, at least one. */
static int group_rows(int C, int kp, int ntx)
{
    size_t n = GROUP_BYTES / (36 * sizeof(float) * (size_t)(C + kp));
    return n / (size_t)ntx > 1 ? (int)(n / (size_t)ntx) : 1;
}

size_t rt_wino_scratch_bytes(int threads, int Cin, int H, int W)
{
    if (Cin < WINO_MIN_C || H < 1 || W < 1)
        return 0;
    int kp = (Cin + 7) / 8 * 8, ntx = (W + 3) / 4;
    size_t t = threads > 1 ? (size_t)threads : 1;
    size_t np = up16((size_t)group_rows(Cin, kp, ntx) * ntx);
    size_t floats = up16(36 * (size_t)Cin * kp) + t * up16(slice_floats(Cin, kp, np, W));
    return floats * sizeof(float) + 64;
}

int rt_wino_taken(int Cin, int Cout)
{
    return Cin >= WINO_MIN_C && Cout >= 1 && isa() != ISA_NONE;
}

/* U[6i+j][c][k] = (G g G^T)[i][j] for the 3x3 kernel g of output k, input
 * c: g[a][b] = w[k*wk + c*wc + (flip ? 8 - (3a+b) : 3a+b)], in double and
 * rounded once; 0 for k >= K. Channels c0..c1-1. */
static void weights_tf(float *U, const float *w, ptrdiff_t wk, ptrdiff_t wc, int flip, int C,
                       int K, int kp, int c0, int c1)
{
    size_t ps = (size_t)C * kp;
    for (int c = c0; c < c1; c++)
        for (int k = 0; k < kp; k++) {
            double g[3][3], t[6][3];
            for (int a = 0; a < 9; a++)
                g[a / 3][a % 3] = k < K ? (double)w[k * wk + c * wc + (flip ? 8 - a : a)] : 0.0;
            for (int b = 0; b < 3; b++) {    /* t = G g */
                double g0 = g[0][b], g1 = g[1][b], g2 = g[2][b];
                t[0][b] = g0 / 4;
                t[1][b] = -(g0 + g1 + g2) / 6;
                t[2][b] = -(g0 - g1 + g2) / 6;
                t[3][b] = g0 / 24 + g1 / 12 + g2 / 6;
                t[4][b] = g0 / 24 - g1 / 12 + g2 / 6;
                t[5][b] = g2;
            }
            float *u = U + (size_t)c * kp + k;
            for (int i = 0; i < 6; i++) {    /* row i of t G^T */
                double g0 = t[i][0], g1 = t[i][1], g2 = t[i][2];
                u[(6 * i + 0) * ps] = (float)(g0 / 4);
                u[(6 * i + 1) * ps] = (float)(-(g0 + g1 + g2) / 6);
                u[(6 * i + 2) * ps] = (float)(-(g0 - g1 + g2) / 6);
                u[(6 * i + 3) * ps] = (float)(g0 / 24 + g1 / 12 + g2 / 6);
                u[(6 * i + 4) * ps] = (float)(g0 / 24 - g1 / 12 + g2 / 6);
                u[(6 * i + 5) * ps] = (float)g2;
            }
        }
}

/* One thread's slice: its buffers for groups of up to np tiles. */
typedef struct {
    float *V, *M, *T, *O, *zero;
    float *m0, *m5;     /* 1 or 0 per tile: its first (last) column lies inside the image row */
    size_t ts, os;      /* floats per row of T, of O */
} Slice;

static Slice carve(float *p, int C, int kp, size_t np, int W)
{
    Slice s;
    s.V = p, p += 36 * (size_t)C * np;
    s.M = p, p += 36 * (size_t)kp * np;
    s.ts = 4 * np + 32, s.T = p, p += 6 * s.ts;
    s.os = 4 * np, s.O = p, p += 4 * s.os;
    s.zero = p, p += up16((size_t)W);
    s.m0 = p, s.m5 = p + np;
    return s;
}

/* out (+)= conv3x3(in) of one group: tile rows g0 .. g0+nr-1 (tile row g:
 * image g / nty, tile row g % nty) of a conv with C inputs, K outputs. */
static void group(int v, const Slice *s, float *out, int acc, const float *in, const float *U,
                  int C, int K, int kp, int H, int W, int g0, int nr)
{
    int nty = (H + 3) / 4, ntx = (W + 3) / 4, L = 4 * ntx, n = nr * ntx;
    int np = (int)up16((size_t)n);
    size_t hw = (size_t)H * W;
    for (int l = 0; l < np; l++) {
        s->m0[l] = l < n && l % ntx != 0 ? 1.0f : 0.0f;
        s->m5[l] = l < n && l % ntx != ntx - 1 ? 1.0f : 0.0f;
    }
    for (int i = 0; i < 6; i++) {       /* the margins of T: read, never written below */
        float *t = s->T + (size_t)i * s->ts;
        memset(t, 0, 16 * sizeof(float));
        memset(t + 16 + (size_t)4 * n, 0, (size_t)(4 * (np - n) + 16) * sizeof(float));
    }
    for (int c = 0; c < C; c++) {
        for (int r = 0; r < nr; r++) {
            int g = g0 + r, b = g / nty, ty = g % nty;
            const float *rows[6];
            for (int j = 0; j < 6; j++) {
                int y = 4 * ty - 1 + j;
                rows[j] = y >= 0 && y < H ? in + ((size_t)b * C + c) * hw + (size_t)y * W
                                          : s->zero;
            }
            if (v == ISA_AVX512)
                in_rows_avx512(s->T + 16 + (size_t)r * L, s->ts, rows, W, L);
            else
                in_rows_avx2(s->T + 16 + (size_t)r * L, s->ts, rows, W, L);
        }
        for (int i = 0; i < 6; i++) {
            float *vd = s->V + ((size_t)6 * i * C + c) * np;
            const float *t = s->T + (size_t)i * s->ts + 16;
            if (v == ISA_AVX512)
                in_cols_avx512(vd, (size_t)C * np, t, s->m0, s->m5, np);
            else
                in_cols_avx2(vd, (size_t)C * np, t, s->m0, s->m5, np);
        }
    }
    for (int pos = 0; pos < 36; pos++) {
        float *m = s->M + (size_t)pos * kp * np;
        const float *u = U + (size_t)pos * C * kp, *vv = s->V + (size_t)pos * C * np;
        if (v == ISA_AVX512)
            gemm_avx512(m, u, vv, C, kp, np);
        else
            gemm_avx2(m, u, vv, C, kp, np);
    }
    for (int k = 0; k < K; k++) {
        const float *m = s->M + (size_t)k * np;
        if (v == ISA_AVX512)
            out_tiles_avx512(s->O, s->os, m, (size_t)kp * np, n);
        else
            out_tiles_avx2(s->O, s->os, m, (size_t)kp * np, n);
        for (int r = 0; r < nr; r++) {
            int g = g0 + r, b = g / nty, ty = g % nty;
            for (int y = 0; y < 4 && 4 * ty + y < H; y++) {
                float *d = out + ((size_t)b * K + k) * hw + (size_t)(4 * ty + y) * W;
                const float *o = s->O + (size_t)y * s->os + (size_t)r * L;
                if (v == ISA_AVX512)
                    put_row_avx512(d, o, W, acc);
                else
                    put_row_avx2(d, o, W, acc);
            }
        }
    }
}

/* out[b] (+)= conv3x3(in[b]) with C inputs, K outputs, the weight of (k, c)
 * at w + k*wk + c*wc (taps flipped for flip); 0 when not taken or the
 * workspace is too small. */
static int wino(const RtCtx *ctx, float *out, int acc, const float *in, const float *w,
                ptrdiff_t wk, ptrdiff_t wc, int flip, int B, int C, int H, int W, int K)
{
    int v = isa();
    if (v == ISA_NONE || C < WINO_MIN_C || K < 1 || B < 1 || H < 1 || W < 1)
        return 0;
    int nk = v == ISA_AVX512 ? 8 : 4, kp = (K + nk - 1) / nk * nk;
    int nty = (H + 3) / 4, ntx = (W + 3) / 4;
    int t = ctx && ctx->threads > 0 ? ctx->threads : 1;
    if (t > B)
        t = B;
    /* the workspace, 64-byte aligned */
    size_t have = 0;
    float *base = NULL;
    if (ctx && ctx->scratch) {
        size_t skip = (64 - (size_t)((uintptr_t)ctx->scratch % 64)) % 64;
        if (ctx->scratch_bytes > skip) {
            have = (ctx->scratch_bytes - skip) / sizeof(float);
            base = (float *)(void *)((char *)ctx->scratch + skip);
        }
    }
    /* group size: as aimed, within the rows a thread has, within the
     * workspace (fewer rows, then fewer threads) */
    size_t usz = up16(36 * (size_t)C * kp);
    int R = group_rows(C, kp, ntx), per = (B + t - 1) / t * nty;
    if (R > per)
        R = per;
    size_t ssz;
    for (;;) {
        ssz = up16(slice_floats(C, kp, up16((size_t)R * ntx), W));
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
        weights_tf(U, w, wk, wc, flip, C, K, kp, (int)((long long)C * i / nt),
                   (int)((long long)C * (i + 1) / nt));
#pragma omp barrier
        Slice s = carve(base + usz + (size_t)i * ssz, C, kp, np, W);
        memset(s.zero, 0, (size_t)W * sizeof(float));
        int g1 = (int)((long long)B * (i + 1) / nt) * nty;
        for (int g = (int)((long long)B * i / nt) * nty; g < g1; g += R)
            group(v, &s, out, acc, in, U, C, K, kp, H, W, g, g1 - g < R ? g1 - g : R);
    }
    return 1;
}

int rt_wino_forward(const RtCtx *ctx, float *out, const float *in, const float *w,
                    int B, int Cin, int H, int W, int Cout)
{
    return wino(ctx, out, 0, in, w, (ptrdiff_t)Cin * 9, 9, 0, B, Cin, H, W, Cout);
}

int rt_wino_backward_data(const RtCtx *ctx, float *din, int acc, const float *dout,
                          const float *w, int B, int Cin, int H, int W, int Cout)
{
    /* din = conv3x3(dout, w read as [ci][co] with the taps flipped) */
    return wino(ctx, din, acc, dout, w, 9, (ptrdiff_t)Cin * 9, 1, B, Cout, H, W, Cin);
}
