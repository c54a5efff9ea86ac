/* conv3x3.c — direct float 3x3 convolutions (pad 1, stride 1 or 2) for
 * AVX2+FMA and AVX-512F, the instruction set chosen at run time.
 *
 * Why: with 16..64 channels the im2col + GEMM path spends as much time
 * building the column matrix and in OpenBLAS packing it as in the multiply
 * (ResNet-20 profile: sgemm 29 %, im2col 24 %, packing 17 %; and Debian's
 * OpenBLAS 0.3.21 does not know recent CPUs and runs its SSE3 kernel on
 * them). Here the products run straight from the input, vectorised along
 * the output width: a block of output channels times two vectors of output
 * pixels stays in registers while the input channels and the 9 taps stream
 * past.
 *
 * Unpadded reads (stride 1, and stride 2 with 16-lane rows): tap (ky, kx)
 * of output pixel (y, x) is input (S*y+ky-1, S*x+kx-1) read where it is.
 * Loads that reach past a row's ends are masked (AVX-512 masked loads,
 * AVX2 vmaskmov: no fault on masked lanes, zeros in them), and only those:
 * AVX-512 blends a masked load on an FMA port. Taps on rows outside the
 * image are skipped, or loaded under an empty mask. 8-wide rows on AVX-512
 * pair two rows in a vector (rows of 8 are consecutive floats). Stride 2
 * with fewer than 16 output channels picks the even and odd columns out of
 * two loads with permutes.
 *
 * Channels in the lanes (stride 2: the forward and input gradient with at
 * least a vector's worth of channels in the vector's dimension, and the
 * weight gradient): a vector holds 16 (8) channels of one pixel, the
 * other operand is broadcast one float at a time from where it lies in
 * the unpadded image, so stride 2 costs no permute and no copy of the
 * image; only the small operand indexed by those channels is transposed
 * once into the workspace (the weights, or a group's output gradient),
 * and the sums are transposed back in registers where they go to pixels.
 *
 * Padded copy (what is left: the stride-2 forward with fewer output
 * channels than a vector, with 8 lanes: AVX2, and AVX-512 on rows under
 * 12 wide): per channel H+2 rows of `pitch` floats; row r is input row r-1
 * with column c = input column c-1, zeros elsewhere, three planes (one per
 * kx) holding every second column. Output columns past Wo are computed and
 * never stored.
 *
 * Forward: stride 1 and 2. Input gradient, stride 1: the forward kernel on
 * the output gradient with the weights read transposed and flipped; stride
 * 2: input rows 2p, 2p+1 and even / odd columns made together from
 * gradient rows p, p+1 (din2_block; d2_block with the channels in the
 * lanes). Weight gradient, stride 1: the 9 taps x 2 output channels in
 * registers, one input row multiplied by three gradient rows, per group of
 * images added into dw in batch order; stride 2: output channels in the
 * lanes times input channels x 3 taps (dw2_block), per group into a
 * per-thread accumulator added into dw at the end. Each thread owns a
 * range of input channels. Every summation order depends on the shapes
 * alone, never on the thread count.
 *
 * Workspace: the padded copies and the transposed operands live in
 * ctx->scratch, one slice per thread (scratch_bytes / threads; the
 * transposed weights one copy for the team), channels a chunk at a time (a
 * chunk size fixed by the shape), so the slice rt_conv2d_scratch_bytes
 * gives for im2col always holds one chunk for the networks' shapes. A call
 * whose slice is too small returns 0 and the caller runs im2col + GEMM.
 * Nothing is allocated here.
 *
 * Without AVX2+FMA nothing here runs: the callers keep im2col + GEMM, the
 * portable path. OPTC_CONV_ISA=avx2 in the environment keeps the AVX2
 * kernels on an AVX-512 machine, OPTC_CONV_ISA=none turns the direct
 * kernels off (both for tests and measurements). */
#include <immintrin.h>
#include "hsum.h"
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "conv3x3.h"

/* A training BN + relu applied to a 1x1 conv's input as it is read (the
 * saved statistics of the BN's statistics-only pass; pw_bnin is
 * bn_relu_recompute's arithmetic, the same bytes as h written and read). */
typedef struct {
    const float *mean, *rstd, *gamma, *beta;
} PwBn;

/* Where the taps of an output pixel lie in the padded buffer (see above). */
typedef struct {
    int S, pitch;       /* padded rows per output row (stride, doubled for pairs); floats per row */
    int Ho, Wo, nv;     /* output as the kernels see it; vectors per output row */
    int pair;           /* 1: a row holds output rows 2y' and 2y'+1 (Wo = 8 in 16 lanes) */
    int planes;         /* 3: one plane per kx; 1: tap kx is column offset kx */
    int stride, rows;   /* the conv's stride; rows per plane */
    int coff[3];        /* offset of tap kx's plane */
    size_t P;           /* floats per padded channel (3 planes) */
    int H, W;           /* the input */
    int unp;            /* 1: stride 1, rows not paired: the kernels read the input unpadded */
} ConvGeo;

enum { ISA_NONE, ISA_AVX2, ISA_AVX512 };

/* The instruction set of this machine, capped by OPTC_CONV_ISA. */
static int isa(void)
{
    __builtin_cpu_init();
    int best = !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? ISA_NONE
             : __builtin_cpu_supports("avx512f") ? ISA_AVX512 : ISA_AVX2;
    const char *e = getenv("OPTC_CONV_ISA");
    if (e && strcmp(e, "none") == 0)
        return ISA_NONE;
    if (e && strcmp(e, "avx2") == 0 && best > ISA_AVX2)
        return ISA_AVX2;
    return best;
}

/* The variant and layout for a conv. Forward and input gradient: 16-float
 * vectors where a row fills them, or where an 8-wide output of an even
 * height pairs its rows (for 16 and more output channels: with 12 the
 * paired kernel measured slower); weight gradient (stride 1: stride 2 has
 * its own kernels, weights2): 16-float vectors for rows of 16 and more
 * (rows of 8 paired). Else 8-float vectors. Three planes (one per kx)
 * for paired rows and stride 2, where consecutive lanes are not
 * consecutive columns; one plane otherwise (measured faster: a third of
 * the data to keep in cache). */
static ConvGeo geometry(int H, int W, int S, int Co, int weights, int *variant)
{
    int Ho = rt_conv_out(H, 3, S, 1), Wo = rt_conv_out(W, 3, S, 1);
    int v = isa(), vw = 8;
    ConvGeo g;
    g.pair = 0;
    if (v == ISA_AVX512 && Wo >= (weights ? 16 : 12))
        vw = 16;
    else if (v == ISA_AVX512 && Wo == 8 && Ho % 2 == 0 && (weights || Co >= 16))
        vw = 16, g.pair = 1;
    else if (v == ISA_AVX512)
        v = ISA_AVX2;
    *variant = v;
    g.stride = S;
    g.H = H, g.W = W;
    g.unp = S == 1;
    g.planes = g.pair || S > 1 ? 3 : 1;
    if (g.pair) {
        g.S = 2 * S, g.Ho = Ho / 2, g.Wo = 16, g.nv = 1, g.pitch = 16;
        g.rows = H + 2 - S;
    } else {
        g.S = S, g.Ho = Ho, g.Wo = Wo, g.nv = (Wo + vw - 1) / vw;
        g.pitch = g.nv * vw + (g.planes == 1 ? vw : 0);    /* one plane: reads reach nv*vw+1 */
        g.rows = H + 2;
    }
    size_t plane = (size_t)g.rows * g.pitch;
    if (g.planes == 3)
        g.coff[0] = 0, g.coff[1] = (int)plane, g.coff[2] = (int)(2 * plane);
    else
        g.coff[0] = 0, g.coff[1] = 1, g.coff[2] = 2;
    g.P = (size_t)g.planes * plane;
    if (g.unp)      /* paired rows of 8 are consecutive floats too */
        g.planes = 1, g.pitch = W, g.rows = H, g.P = (size_t)H * W;
    return g;
}

int rt_conv3x3_taken(int what, int Cin, int Cout, int K, int stride, int pad)
{
    if (K != 3 || pad != 1 || Cin <= 0 || Cout <= 0 || isa() == ISA_NONE)
        return 0;
    return (what == RT_CONV3X3_DATA || what == RT_CONV3X3_FORWARD || what == RT_CONV3X3_WEIGHTS)
           && (stride == 1 || stride == 2);
}

/* Copy channels x[C][H][W] into xp in the layout of g, every float of the
 * C padded channels written (the slice is shared by every conv): plane kx,
 * row r, lane l holds padded row r (+ stride for the second half of a
 * pair), padded column stride * l + kx, where padded (r, c) is input
 * (r-1, c-1) inside the image and 0 outside. */
__attribute__((noinline))     /* inlined into direct's loop it measured 5 % slower */
static void pad_image(float *xp, const float *x, int C, int H, int W, const ConvGeo *g)
{
    int half = g->pair ? 8 : g->pitch, s = g->stride;
    for (int c = 0; c < C; c++)
        for (int kx = 0; kx < g->planes; kx++) {
            float *d = xp + (size_t)c * g->P + (g->planes == 3 ? g->coff[kx] : 0);
            /* lanes u whose column s*u + kx - 1 lies in [0, W) */
            int lo = kx >= 1 ? 0 : 1, hi = W - kx < 0 ? 0 : (W - kx) / s + 1;
            if (hi > half)
                hi = half;
            for (int r = 0; r < g->rows; r++)
                for (int q = 0; q * half < g->pitch; q++) {
                    float *o = d + (size_t)r * g->pitch + q * half;
                    int y = r + q * s - 1;
                    if (y < 0 || y >= H) {
                        memset(o, 0, (size_t)half * sizeof(float));
                        continue;
                    }
                    const float *src = x + ((size_t)c * H + y) * W;
                    int top = hi > lo ? hi : lo;
                    /* rows are 8..48 floats: inline loops beat library calls */
                    for (int u = 0; u < lo; u++)
                        o[u] = 0;
                    if (s == 1) {
                        const float *ss = src + kx - 1;
#pragma omp simd
                        for (int u = lo; u < top; u++)
                            o[u] = ss[u];
                    } else {
                        const float *ss = src + kx - 1;
                        for (int u = lo; u < top; u++)
                            o[u] = ss[2 * u];
                    }
                    for (int u = top; u < half; u++)
                        o[u] = 0;
                }
        }
}

/* --- the AVX2 variant -------------------------------------------------------- */
#define SFX(name) name##_avx2
#define KTARGET "avx2,fma"
#define VT __m256
#define MT __m256i
#define VW 8
#define CBV 4       /* 4 channels x 2 vectors + inputs + weight in 16 registers */
#define PWI 3       /* 1x1 weight gradient: 4 x 3 sums + 3 inputs + 1 gradient */
#define DBV 3       /* bound of the stride-1 weight-gradient arrays (UBV channels used) */
#define D2V 2       /* stride-2 weight gradient: 2 x 8 output channels x 2 inputs x 3 taps */
#define D2A 4       /*   (12 sums + 2 gradients + a broadcast in 16 registers) */
#define DW2_CASES DW2_CASE(2, 2) DW2_CASE(2, 1) DW2_CASE(1, 4) DW2_CASE(1, 1)
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VLOADM(p, m) _mm256_maskload_ps(p, m)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VSTOREM(p, m, v) _mm256_maskstore_ps(p, m, v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VBCAST(p) _mm256_broadcast_ss(p)
#define VADD(a, b) _mm256_add_ps(a, b)
#define UBV 1       /* 9 taps + 3 gradient rows + 3 inputs */
#define DINB 2      /* 2 channels x 4 vectors + 4 gradients + weight */
#define VZIPLO(a, b) _mm256_permute2f128_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b), 0x20)
#define VZIPHI(a, b) _mm256_permute2f128_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b), 0x31)
#define VFMAM(a, b, c, k) _mm256_blendv_ps(c, _mm256_fmadd_ps(a, b, c), _mm256_castsi256_ps(k))
#define VEVEN(a, b) _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8))
#define VODD(a, b) _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8))
#define MKMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define MOR(a, b) _mm256_or_si256(a, b)
#define MKRANGE(lo, hi) _mm256_and_si256(MKMASK(hi), _mm256_xor_si256(MKMASK(lo), _mm256_set1_epi32(-1)))
#define HSUM(v) hsum_avx2(v)


#include "conv3x3_kern.inc"
#undef SFX
#undef KTARGET
#undef VT
#undef MT
#undef VW
#undef CBV
#undef PWI
#undef DBV
#undef D2V
#undef D2A
#undef DW2_CASES
#undef VZERO
#undef VLOAD
#undef VLOADM
#undef VSTORE
#undef VSTOREM
#undef VFMA
#undef VBCAST
#undef VADD
#undef MKMASK
#undef MKRANGE
#undef MOR
#undef UBV
#undef DINB
#undef VZIPLO
#undef VZIPHI
#undef VEVEN
#undef VODD
#undef VFMAM
#undef UNEED
#undef HSUM

/* --- the AVX-512 variant ----------------------------------------------------- */
#define SFX(name) name##_avx512
#define KTARGET "avx512f,avx2,fma"
#define VT __m512
#define MT __mmask16
#define VW 16
#define CBV 8       /* 8 channels x 2 vectors of the 32 registers */
#define PWI 6       /* 1x1 weight gradient: 4 x 6 sums + 6 inputs + 1 gradient */
#define DBV 6       /* bound of the stride-1 weight-gradient arrays (UBV channels used) */
#define D2V 4       /* stride-2 weight gradient: up to 4 x 16 output channels, */
#define D2A 8       /*   times 8 / NV input channels x 3 taps (24 sums) */
#define DW2_CASES DW2_CASE(4, 2) DW2_CASE(4, 1) DW2_CASE(3, 2) DW2_CASE(3, 1) \
                  DW2_CASE(2, 4) DW2_CASE(2, 1) DW2_CASE(1, 8) DW2_CASE(1, 1)
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VLOADM(p, m) _mm512_maskz_loadu_ps(m, p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VSTOREM(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VBCAST(p) _mm512_set1_ps(*(p))
#define VADD(a, b) _mm512_add_ps(a, b)
#define UBV 2       /* 2 channels x 9 taps + 2 x 3 gradient rows + 3 inputs */
#define DINB 6      /* 6 channels x 4 vectors + 4 gradients + weight */
#define VZIPLO(a, b) _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b)
#define VZIPHI(a, b) _mm512_permutex2var_ps(a, _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), b)
#define VFMAM(a, b, c, k) _mm512_mask3_fmadd_ps(a, b, c, k)
#define VEVEN(a, b) _mm512_permutex2var_ps(a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b)
#define VODD(a, b) _mm512_permutex2var_ps(a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b)
#define MKMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define MOR(a, b) ((__mmask16)((a) | (b)))
#define MKRANGE(lo, hi) ((__mmask16)(((1u << (hi)) - 1u) & ~((1u << (lo)) - 1u)))
#define HSUM(v) hsum_avx512(v)

__attribute__((target("avx512f,avx2,fma")))
static inline float hsum_avx512(__m512 v)
{
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

#include "conv3x3_kern.inc"

/* --- drivers ------------------------------------------------------------------ */

/* Floats of padded input per chunk: the channels of one chunk stay in L2
 * while every output block streams them. Fixed by the shape, so the
 * summation order (chunk partial sums added into the output) is too. */
#define CHUNK_FLOATS 32768
/* Images per weight-gradient group: about DW_PIXELS output pixels (the
 * horizontal sums once per group), and for the unpadded kernel at most
 * DW_BYTES of input and gradient (measured: 512 -> 2048 pixels took the
 * 16x16 gradient from 87 to 110 GFLOP/s, but 32 images of 8x8 x 64
 * channels out of L2 lost 4 %). */
#define DW_PIXELS 2048
#define DW_BYTES (512 * 1024)
/* Bytes of transposed output gradient per stride-2 weight-gradient group. */
#define DW2_BYTES (32 * 1024)

/* Channels per chunk of G padded images: within CHUNK_FLOATS and within
 * `budget` floats, the one-thread workspace rt_conv2d_scratch_bytes gives
 * this conv (a size fixed by the shape); 0 when not even one fits. */
static int chunk_channels(int C, int G, size_t P, size_t budget)
{
    size_t n = CHUNK_FLOATS / ((size_t)G * P), m = budget / ((size_t)G * P);
    if (n < 1)
        n = 1;
    if (m < n)
        n = m;
    return n < (size_t)C ? (int)n : C;
}

/* That budget, in floats, for a conv of Cin channels of H x W. */
static size_t budget(int B, int Cin, int H, int W, int S)
{
    size_t n = rt_conv2d_scratch_bytes(1, B, Cin, H, W, 3, S, 1, sizeof(float)) / sizeof(float);
    return n > 32 ? n - 32 : 0;     /* room to align the slice and round it to 16 */
}

/* The room of one workspace shared by the team for a stride-2 conv of Cin
 * channels of H x W: all of the one-thread workspace (fixed by the shape). */
static size_t shared_room(int B, int Cin, int H, int W)
{
    return rt_conv2d_scratch_bytes(1, B, Cin, H, W, 3, 2, 1, sizeof(float)) / sizeof(float);
}

/* Threads that get a slice of at least `need` floats (at most n work items),
 * the slice size in floats (a multiple of 16) and the first slice (64-byte
 * aligned, so the kernels' loads are); 0 threads when not even one fits. */
static int team(const RtCtx *ctx, int n, size_t need, size_t *slice, float **base)
{
    int t = ctx && ctx->threads > 0 ? ctx->threads : 1;
    if (t > n)
        t = n > 0 ? n : 1;
    size_t have = 0;
    *base = NULL;
    if (ctx && ctx->scratch) {
        size_t skip = (64 - (size_t)((uintptr_t)ctx->scratch % 64)) % 64;
        if (ctx->scratch_bytes > skip) {
            have = (ctx->scratch_bytes - skip) / sizeof(float);
            *base = (float *)(void *)((char *)ctx->scratch + skip);
        }
    }
    need = (need + 15) / 16 * 16;
    if (have / need < (size_t)t)
        t = (int)(have / need);
    *slice = t > 0 ? have / (size_t)t / 16 * 16 : 0;
    return t;
}

/* One workspace of `need` floats for the whole team: 64-byte aligned where
 * ctx->scratch has room for that, else where it starts (the kernels load
 * unaligned; the results do not depend on it); NULL when it is smaller. */
static float *shared_ws(const RtCtx *ctx, size_t need)
{
    if (!ctx || !ctx->scratch)
        return NULL;
    size_t skip = (64 - (size_t)((uintptr_t)ctx->scratch % 64)) % 64;
    if (ctx->scratch_bytes >= skip + need * sizeof(float))
        return (float *)(void *)((char *)ctx->scratch + skip);
    return ctx->scratch_bytes >= need * sizeof(float) ? (float *)ctx->scratch : NULL;
}

/* Threads for n work items that need no workspace. */
static int threads(const RtCtx *ctx, int n)
{
    int t = ctx && ctx->threads > 0 ? ctx->threads : 1;
    return t < n ? t : (n > 0 ? n : 1);
}

static void fwd_image(int v, float *out, int acc, const float *xp, const float *w,
                      ptrdiff_t wo, ptrdiff_t wi, int flip, int C, int Co, const ConvGeo *g)
{
    if (v == ISA_AVX512)
        fwd_image_avx512(out, acc, xp, w, wo, wi, flip, C, Co, g);
    else
        fwd_image_avx2(out, acc, xp, w, wo, wi, flip, C, Co, g);
}

/* Row r (= ci * 9 + k) of the forward's transposed weights (f2_image):
 * wT[r * Cp + co] = w[co][ci0 + ci][k], 0 for Co <= co < Cp. */
static void f2_wtrans(float *wT, const float *w, int Cin, int Co, int Cp, int ci0, int r)
{
    const float *s = w + (size_t)ci0 * 9 + r;
    float *d = wT + (size_t)r * Cp;
    for (int co = 0; co < Co; co++)
        d[co] = s[(size_t)co * Cin * 9];
    for (int co = Co; co < Cp; co++)
        d[co] = 0;
}

/* Row r (= co * 9 + k) of the input gradient's transposed weights
 * (d2_image): wT[r * Cp + ci] = w[co0 + co][ci][k], 0 for Cin <= ci < Cp. */
static void d2_wtrans(float *wT, const float *w, int Cin, int Cp, int co0, int r)
{
    const float *s = w + (size_t)co0 * Cin * 9 + (size_t)(r / 9) * Cin * 9 + r % 9;
    float *d = wT + (size_t)r * Cp;
    for (int ci = 0; ci < Cin; ci++)
        d[ci] = s[(size_t)ci * 9];
    for (int ci = Cin; ci < Cp; ci++)
        d[ci] = 0;
}

/* The stride-2 forward for at least a vector's worth of output channels
 * (f2_image in conv3x3_kern.inc; AVX-512 measured ~62 -> ~135 GFLOP/s for
 * 8-wide rows, where the paired-row padded copy ran before, and ~99 -> ~140
 * for 16-wide ones, where the permutes did; AVX2 ~40-50 -> ~63-70 against
 * the padded copy), in one parallel region: per chunk of input
 * channels the team transposes their weights into the workspace (one copy,
 * read by every thread), then splits the batch, each image adding the
 * chunk's sums to the previous ones. The chunks (as even as the workspace
 * allows) are fixed by the shape. */
static int fwd2(const RtCtx *ctx, int v, float *out, int acc, const float *in, const float *w,
                int B, int C, int H, int W, int Co, size_t room)
{
    int vw = v == ISA_AVX512 ? 16 : 8;
    int Ho = rt_conv_out(H, 3, 2, 1), Wo = rt_conv_out(W, 3, 2, 1), Cp = (Co + vw - 1) / vw * vw;
    size_t per = (size_t)9 * Cp;
    if (room < per)
        return 0;
    int nch = (int)((C + room / per - 1) / (room / per)), cc = (C + nch - 1) / nch;
    float *wT = shared_ws(ctx, (size_t)cc * per);
    if (!wT)
        return 0;
#pragma omp parallel num_threads(threads(ctx, B))
    for (int c0 = 0; c0 < C; c0 += cc) {
        int n = C - c0 < cc ? C - c0 : cc;
#pragma omp for schedule(static)
        for (int r = 0; r < 9 * n; r++)
            f2_wtrans(wT, w, C, Co, Cp, c0, r);
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            float *o = out + (size_t)b * Co * Ho * Wo;
            const float *x = in + ((size_t)b * C + c0) * H * W;
            if (v == ISA_AVX512)
                f2_image_avx512(o, acc || c0 > 0, x, wT, n, Cp, H, W, Ho, Wo, Co);
            else
                f2_image_avx2(o, acc || c0 > 0, x, wT, n, Cp, H, W, Ho, Wo, Co);
        }
    }
    return 1;
}

/* out[b] (+)= conv3x3(in[b], w) for the batch, split over the team; weights
 * addressed as in fwd_block (C input channels of in). */
static int direct(const RtCtx *ctx, float *out, int acc, const float *in, const float *w,
                  ptrdiff_t wo, ptrdiff_t wi, int flip, int B, int C, int H, int W, int Co,
                  int S, size_t room)
{
    int v;
    ConvGeo g = geometry(H, W, S, Co, 0, &v);
    int v2 = isa();
    if (S == 2 && !flip && Co >= (v2 == ISA_AVX512 ? 16 : 8)
        && fwd2(ctx, v2, out, acc, in, w, B, C, H, W, Co, shared_room(B, C, H, W)))
        return 1;
    /* stride 2, rows of 12 and more on AVX-512: no copy either (even and
     * odd columns picked out by permutes; with 8 lanes, and with paired
     * rows of 8, the three-plane copy measured faster) */
    if (S == 2 && v == ISA_AVX512 && !g.pair) {
        int cc = chunk_channels(C, 1, (size_t)H * W, (size_t)-1);
#pragma omp parallel for num_threads(threads(ctx, B)) schedule(static)
        for (int b = 0; b < B; b++) {
            const float *x = in + (size_t)b * C * H * W;
            float *o = out + (size_t)b * Co * g.Ho * g.Wo;
            for (int c0 = 0; c0 < C; c0 += cc) {
                int n = C - c0 < cc ? C - c0 : cc;
                u2fwd_image_avx512(o, acc || c0 > 0, x + (size_t)c0 * H * W, w + c0 * wi, wo, wi,
                                   n, Co, &g);
            }
        }
        return 1;
    }
    if (g.unp) {    /* no copy: input channels a chunk at a time (L2) */
        int cc = chunk_channels(C, 1, g.P, (size_t)-1);
#pragma omp parallel for num_threads(threads(ctx, B)) schedule(static)
        for (int b = 0; b < B; b++) {
            const float *x = in + (size_t)b * C * H * W;
            float *o = out + (size_t)b * Co * g.Ho * g.Wo;
            for (int c0 = 0; c0 < C; c0 += cc) {
                int n = C - c0 < cc ? C - c0 : cc;
                if (v == ISA_AVX512)
                    ufwd_image_avx512(o, acc || c0 > 0, x + (size_t)c0 * H * W, w + c0 * wi, wo,
                                      wi, flip, n, Co, &g);
                else
                    ufwd_image_avx2(o, acc || c0 > 0, x + (size_t)c0 * H * W, w + c0 * wi, wo,
                                    wi, flip, n, Co, &g);
            }
        }
        return 1;
    }
    int cc = chunk_channels(C, 1, g.P, room);
    size_t slice;
    float *scratch;
    int t = cc < 1 ? 0 : team(ctx, B, (size_t)cc * g.P, &slice, &scratch);
    if (t < 1)
        return 0;
#pragma omp parallel for num_threads(t) schedule(static)
    for (int b = 0; b < B; b++) {
        float *xp = scratch + (size_t)omp_get_thread_num() * slice;
        const float *x = in + (size_t)b * C * H * W;
        float *o = out + (size_t)b * Co * g.Ho * g.Wo;
        for (int c0 = 0; c0 < C; c0 += cc) {
            int n = C - c0 < cc ? C - c0 : cc;
            pad_image(xp, x + (size_t)c0 * H * W, n, H, W, &g);
            fwd_image(v, o, acc || c0 > 0, xp, w + c0 * wi, wo, wi, flip, n, Co, &g);
        }
    }
    return 1;
}

int rt_conv3x3_forward(const RtCtx *ctx, float *out, const float *in, const float *w,
                       int B, int Cin, int H, int W, int Cout, int stride)
{
    if (!rt_conv3x3_taken(RT_CONV3X3_FORWARD, Cin, Cout, 3, stride, 1))
        return 0;
    return direct(ctx, out, 0, in, w, (ptrdiff_t)Cin * 9, 9, 0, B, Cin, H, W, Cout, stride,
                  budget(B, Cin, H, W, stride));
}

/* The stride-2 weight gradient (dw2_images in conv3x3_kern.inc): thread i
 * owns the input channels [Cin*i/t, Cin*(i+1)/t) and walks them a chunk of
 * cc channels at a time; per chunk it walks the batch G images at a time,
 * transposing their output gradient into its slice (each thread its own
 * copy), the sums going into a [cc*9][Cp] accumulator after it, added into
 * dw at the chunk's end. G (about DW2_BYTES of transposed gradient: it stays
 * in L1 while every block streams it) and cc (what the one-thread
 * workspace then holds) are fixed by the shape, so each entry's sum runs
 * over the same groups in the same order whatever the thread count.
 * AVX-512 for 9 and more output channels (a vector of 16 channels, the
 * lanes past Cout zero), AVX2 below. */
static int weights2(const RtCtx *ctx, float *dw, const float *dout, const float *in, int B,
                    int Cin, int H, int W, int Cout)
{
    int v = isa() == ISA_AVX512 && Cout > 8 ? ISA_AVX512 : ISA_AVX2, vw = v == ISA_AVX512 ? 16 : 8;
    int Ho = rt_conv_out(H, 3, 2, 1), Wo = rt_conv_out(W, 3, 2, 1);
    size_t N = (size_t)Ho * Wo, Cp = (size_t)(Cout + vw - 1) / vw * vw;
    size_t room = budget(B, Cin, H, W, 2), G = DW2_BYTES / (N * Cp * sizeof(float));
    if (G < 1)
        G = 1;
    if (G > (size_t)B)
        G = (size_t)B;
    if (G * N * Cp + 9 * Cp > room)
        G = 1;
    if (N * Cp + 9 * Cp > room)
        return 0;
    size_t dts = G * N * Cp, cc = (room - dts) / (9 * Cp), slice;
    if (cc > (size_t)Cin)
        cc = (size_t)Cin;
    float *scratch;
    int t = team(ctx, Cin, dts + cc * 9 * Cp, &slice, &scratch);
    if (t < 1)
        return 0;
    size_t img_in = (size_t)Cin * H * W, img_out = (size_t)Cout * N;
#pragma omp parallel num_threads(t)
    {
        int i = omp_get_thread_num(), n = omp_get_num_threads();
        int ci0 = (int)((long long)Cin * i / n), ci1 = (int)((long long)Cin * (i + 1) / n);
        float *dT = scratch + (size_t)i * slice, *acc = dT + dts;
        for (int c0 = ci0; c0 < ci1; c0 += (int)cc) {
            int nc = ci1 - c0 < (int)cc ? ci1 - c0 : (int)cc;
            memset(acc, 0, (size_t)nc * 9 * Cp * sizeof(float));
            for (int b = 0; b < B; b += (int)G) {
                int gn = B - b < (int)G ? B - b : (int)G;
                const float *x = in + b * img_in + (size_t)c0 * H * W;
                for (int im = 0; im < gn; im++) {
                    if (v == ISA_AVX512)
                        dw2_transpose_avx512(dT + im * N * Cp, dout + (b + im) * img_out, Cout,
                                             (int)N, (int)Cp);
                    else
                        dw2_transpose_avx2(dT + im * N * Cp, dout + (b + im) * img_out, Cout,
                                           (int)N, (int)Cp);
                }
                if (v == ISA_AVX512)
                    dw2_images_avx512(acc, dT, x, gn, nc, img_in, H, W, Ho, Wo, (int)Cp);
                else
                    dw2_images_avx2(acc, dT, x, gn, nc, img_in, H, W, Ho, Wo, (int)Cp);
            }
            for (int co = 0; co < Cout; co++)
                for (int k = 0; k < nc * 9; k++)
                    dw[((size_t)co * Cin + c0) * 9 + k] += acc[(size_t)k * Cp + co];
        }
    }
    return 1;
}

/* The weight gradient; stride 1: thread i owns the input channels
 * [Cin*i/t, Cin*(i+1)/t) (the dw entries it writes are its own) and walks
 * the whole batch in order, G images at a time, reading them unpadded.
 * Each entry's sum runs over the groups of images in batch order whatever
 * the split. */
/* Images per group of the stride-1 weight gradient: fixed by the shape. */
static int dw_group_images(const ConvGeo *g, int B, int Cin, int H, int W, int Cout)
{
    int G = (DW_PIXELS + g->Ho * g->Wo - 1) / (g->Ho * g->Wo);
    if (G > B)
        G = B;
    size_t img_in = (size_t)Cin * H * W, img_out = (size_t)Cout * g->Ho * g->Wo;
    size_t gb = DW_BYTES / ((img_in + img_out) * sizeof(float));
    if ((size_t)G > gb)
        G = gb > 0 ? (int)gb : 1;
    return G;
}

static int weights(const RtCtx *ctx, float *dw, const float *dout, const float *in, int B,
                   int Cin, int H, int W, int Cout, int S)
{
    if (S == 2)
        return weights2(ctx, dw, dout, in, B, Cin, H, W, Cout);
    int v;
    ConvGeo g = geometry(H, W, S, Cout, 1, &v);
    /* no copy, no workspace */
    int G = dw_group_images(&g, B, Cin, H, W, Cout);
    size_t img_in = (size_t)Cin * H * W, img_out = (size_t)Cout * g.Ho * g.Wo;
#pragma omp parallel num_threads(threads(ctx, Cin))
    {
        int i = omp_get_thread_num(), n = omp_get_num_threads();
        int ci0 = (int)((long long)Cin * i / n), ci1 = (int)((long long)Cin * (i + 1) / n);
        for (int b = 0; b < B; b += G) {
            int gn = B - b < G ? B - b : G;
            if (v == ISA_AVX512)
                udw_images_avx512(dw, dout + b * img_out, in + b * img_in, gn, ci0, ci1, Cin,
                                  Cout, &g);
            else
                udw_images_avx2(dw, dout + b * img_out, in + b * img_in, gn, ci0, ci1, Cin, Cout,
                                &g);
        }
    }
    return 1;
}

/* weights() (stride 1) of h = relu(x sc + sh), h never written: the same
 * groups of G images, each thread applying the BN + relu (pw_bnin,
 * rt_bn_relu_recompute's arithmetic) to its own input channels of the
 * group's images into ctx->scratch (G x Cin x H x W floats, the layout of
 * h) before udw_images reads them there: the same bytes as the recompute
 * writing h and weights() reading it. x's images are xs floats apart. 0
 * (nothing touched) without the ISA or the scratch. */
int rt_conv3x3_bnin_weights(const RtCtx *ctx, float *dw, const float *dout, const float *in,
                            size_t xs, const float *mean, const float *rstd, const float *gamma,
                            const float *beta, int B, int Cin, int H, int W, int Cout)
{
    if (!ctx || !ctx->scratch || B < 1 || H < 1 || W < 1
        || !rt_conv3x3_taken(RT_CONV3X3_WEIGHTS, Cin, Cout, 3, 1, 1))
        return 0;
    int v;
    ConvGeo g = geometry(H, W, 1, Cout, 1, &v);
    int G = dw_group_images(&g, B, Cin, H, W, Cout);
    size_t hw = (size_t)H * W, img_in = (size_t)Cin * hw, img_out = (size_t)Cout * g.Ho * g.Wo;
    if (ctx->scratch_bytes < (size_t)G * img_in * sizeof(float))
        return 0;
    float *h = ctx->scratch;
    PwBn bn = {mean, rstd, gamma, beta};
#pragma omp parallel num_threads(threads(ctx, Cin))
    {
        int i = omp_get_thread_num(), n = omp_get_num_threads();
        int ci0 = (int)((long long)Cin * i / n), ci1 = (int)((long long)Cin * (i + 1) / n);
        for (int b = 0; b < B && ci1 > ci0; b += G) {
            int gn = B - b < G ? B - b : G;
            for (int im = 0; im < gn; im++) {
                float *hb = h + im * img_in;
                const float *xb = in + (size_t)(b + im) * xs;
                if (v == ISA_AVX512)
                    pw_bnin_avx512(hb, xb, &bn, ci0, ci1, (int)hw);
                else
                    pw_bnin_avx2(hb, xb, &bn, ci0, ci1, (int)hw);
            }
            if (v == ISA_AVX512)
                udw_images_avx512(dw, dout + b * img_out, h, gn, ci0, ci1, Cin, Cout, &g);
            else
                udw_images_avx2(dw, dout + b * img_out, h, gn, ci0, ci1, Cin, Cout, &g);
        }
    }
    return 1;
}

/* The stride-2 input gradient for at least a vector's worth of input
 * channels (d2_image in conv3x3_kern.inc; ~50 -> ~133 GFLOP/s on AVX-512
 * at 8-wide rows, ~115 -> ~131 at 16; AVX2 ~45-52 -> ~58-68), as fwd2: per chunk of output channels
 * their weights transposed into the workspace by the team (one copy), then
 * the batch split over the team; chunks fixed by the shape. */
static int din2(const RtCtx *ctx, int v, float *din, int acc, const float *dout, const float *w,
                int B, int Cin, int H, int W, int Cout)
{
    int vw = v == ISA_AVX512 ? 16 : 8;
    int Ho = rt_conv_out(H, 3, 2, 1), Wo = rt_conv_out(W, 3, 2, 1), Cp = (Cin + vw - 1) / vw * vw;
    size_t room = shared_room(B, Cin, H, W), per = (size_t)9 * Cp;
    if (room < per)
        return 0;
    int nch = (int)((Cout + room / per - 1) / (room / per)), cc = (Cout + nch - 1) / nch;
    float *wT = shared_ws(ctx, (size_t)cc * per);
    if (!wT)
        return 0;
    size_t img_in = (size_t)Cin * H * W, img_out = (size_t)Cout * Ho * Wo;
#pragma omp parallel num_threads(threads(ctx, B))
    for (int c0 = 0; c0 < Cout; c0 += cc) {
        int n = Cout - c0 < cc ? Cout - c0 : cc;
#pragma omp for schedule(static)
        for (int r = 0; r < 9 * n; r++)
            d2_wtrans(wT, w, Cin, Cp, c0, r);
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            const float *d = dout + b * img_out + (size_t)c0 * Ho * Wo;
            if (v == ISA_AVX512)
                d2_image_avx512(din + b * img_in, acc || c0 > 0, d, wT, n, Cin, Cp, H, W, Ho, Wo);
            else
                d2_image_avx2(din + b * img_in, acc || c0 > 0, d, wT, n, Cin, Cp, H, W, Ho, Wo);
        }
    }
    return 1;
}

int rt_conv3x3_backward(const RtCtx *ctx, float *din, int acc, float *dw, const float *dout,
                        const float *in, const float *w, int B, int Cin, int H, int W,
                        int Cout, int stride)
{
    if ((din && !rt_conv3x3_taken(RT_CONV3X3_DATA, Cin, Cout, 3, stride, 1))
        || (dw && !rt_conv3x3_taken(RT_CONV3X3_WEIGHTS, Cin, Cout, 3, stride, 1)))
        return 0;
    int v2 = isa();
    if (din && stride == 2 && Cin >= (v2 == ISA_AVX512 ? 16 : 8)
        && din2(ctx, v2, din, acc, dout, w, B, Cin, H, W, Cout))
        din = NULL;
    if (din && stride == 2) {   /* no workspace */
        int Ho = rt_conv_out(H, 3, 2, 1), Wo = rt_conv_out(W, 3, 2, 1);
        int v = isa() == ISA_AVX512 && Wo >= 12 ? ISA_AVX512 : ISA_AVX2;
        size_t img_in = (size_t)Cin * H * W, img_out = (size_t)Cout * Ho * Wo;
#pragma omp parallel for num_threads(threads(ctx, B)) schedule(static)
        for (int b = 0; b < B; b++) {
            if (v == ISA_AVX512)
                din2_image_avx512(din + b * img_in, acc, dout + b * img_out, w, Cin, Cout, H, W,
                                  Ho, Wo);
            else
                din2_image_avx2(din + b * img_in, acc, dout + b * img_out, w, Cin, Cout, H, W,
                                Ho, Wo);
        }
        din = NULL;
    }
    /* din = conv3x3(dout, w read as [ci][co] with the taps flipped) */
    if (din && !direct(ctx, din, acc, dout, w, 9, (ptrdiff_t)Cin * 9, 1, B, Cout, H, W, Cin, 1,
                       budget(B, Cin, H, W, 1)))
        return 0;
    if (dw && !weights(ctx, dw, dout, in, B, Cin, H, W, Cout, stride))
        return 0;
    return 1;
}

/* --- pointwise convolutions ------------------------------------------------------
 * 1x1, stride 1, no padding: out = W x per image, din (+)= W^T dout, dw +=
 * dout x^T. Same register blocking as the 3x3 kernels, no padded copy; the
 * first two copy x a panel at a time into their stack (pw_image) and need
 * no workspace; the batch is split over the team for the first two, the
 * input channels for dw (each entry summed over the images in batch order
 * whatever the thread count). Replaces OpenBLAS, whose Debian build runs
 * its SSE3 kernels on CPUs it does not know. */

static int pw_variant(int N)
{
    int v = isa();
    return v == ISA_AVX512 && N < 12 ? ISA_AVX2 : v;
}

static int pw_team(const RtCtx *ctx, int n)
{
    int t = ctx && ctx->threads > 0 ? ctx->threads : 1;
    return t < n ? t : (n > 0 ? n : 1);
}

/* One image's input rows [c0, c1) of N floats for a 1x1 kernel: x itself,
 * or with bn, relu(bn(x)) into the same rows of h. */
static const float *pw_rows(int v, float *h, const float *x, const PwBn *bn, int c0, int c1,
                            int N)
{
    if (!bn)
        return x;
    if (v == ISA_AVX512)
        pw_bnin_avx512(h, x, bn, c0, c1, N);
    else
        pw_bnin_avx2(h, x, bn, c0, c1, N);
    return h;
}

/* Whether pw_image packs C input channels into panels (and so applies a BN
 * itself). */
static int pw_packs(int v, int C)
{
    return v == ISA_AVX512 ? pw_pv_avx512(C) > 0 : pw_pv_avx2(C) > 0;
}

/* out (acc ? +=: =) w x per image, the batch split over the team; x's
 * images are xs floats apart. With bn, pw_image applies it as it packs its
 * panels; for inputs too many to pack, each thread first activates the
 * image into its own C x N slice of ctx->scratch (in L2). */
static void pw_data(const RtCtx *ctx, float *out, int acc, const float *x, size_t xs,
                    const PwBn *bn, const float *w, ptrdiff_t wo, ptrdiff_t wi, int B, int C,
                    int Co, int N)
{
    int v = pw_variant(N), inplace = bn && !pw_packs(v, C);
#pragma omp parallel for num_threads(pw_team(ctx, B)) schedule(static)
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * xs;
        const PwBn *pb = bn;
        if (inplace) {
            float *h = (float *)ctx->scratch + (size_t)omp_get_thread_num() * C * N;
            xb = pw_rows(v, h, xb, bn, 0, C, N);
            pb = NULL;
        }
        float *ob = out + (size_t)b * Co * N;
        if (v == ISA_AVX512)
            pw_image_avx512(ob, acc, xb, pb, w, wo, wi, C, Co, N);
        else
            pw_image_avx2(ob, acc, xb, pb, w, wo, wi, C, Co, N);
    }
}

/* dw += dout x^T: thread i owns the input channels [Cin*i/t, Cin*(i+1)/t)
 * and walks the batch in order; with bn it activates its own rows of each
 * image, a block at a time, into the same rows of ctx->scratch (Cin x N
 * floats in all). */
static void pw_dw(const RtCtx *ctx, float *dw, const float *dout, const float *x, size_t xs,
                  const PwBn *bn, int B, int Cin, int N, int Cout)
{
    int v = pw_variant(N);
#pragma omp parallel num_threads(pw_team(ctx, Cin))
    {
        int i = omp_get_thread_num(), n = omp_get_num_threads();
        int ci0 = (int)((long long)Cin * i / n), ci1 = (int)((long long)Cin * (i + 1) / n);
        for (int b = 0; b < B && ci1 > ci0; b++) {
            const float *db = dout + (size_t)b * Cout * N;
            const float *xb = x + (size_t)b * xs;
            if (v == ISA_AVX512)
                pw_dw_image_avx512(dw, db, xb, bn, ctx->scratch, Cin, Cout, N, ci0, ci1);
            else
                pw_dw_image_avx2(dw, db, xb, bn, ctx->scratch, Cin, Cout, N, ci0, ci1);
        }
    }
}

int rt_conv1x1_forward(const RtCtx *ctx, float *out, const float *in, const float *w,
                       int B, int Cin, int N, int Cout)
{
    if (isa() == ISA_NONE || Cin <= 0 || Cout <= 0 || N <= 0)
        return 0;
    pw_data(ctx, out, 0, in, (size_t)Cin * N, NULL, w, Cin, 1, B, Cin, Cout, N);
    return 1;
}

/* The 1x1 conv of relu(bn(x)) in training, h never written (pw_data with
 * the BN): the same bytes as the BN writing h and rt_conv1x1_forward
 * reading it. x's images are xs floats apart (a dense stage's prefix).
 * 0 (nothing done) without the ISA or scratch. */
int rt_conv1x1_bnin_forward(const RtCtx *ctx, float *out, const float *in, size_t xs,
                            const float *mean, const float *rstd, const float *gamma,
                            const float *beta, const float *w, int B, int Cin, int N, int Cout)
{
    if (!rt_conv1x1_bnin_ok(ctx, B, Cin, N, Cout))
        return 0;
    PwBn bn = {mean, rstd, gamma, beta};
    pw_data(ctx, out, 0, in, xs, &bn, w, Cin, 1, B, Cin, Cout, N);
    return 1;
}

int rt_conv1x1_bnin_ok(const RtCtx *ctx, int B, int Cin, int N, int Cout)
{
    if (!ctx || isa() == ISA_NONE || Cin <= 0 || Cout <= 0 || N <= 0 || B <= 0)
        return 0;
    size_t need = (size_t)pw_team(ctx, B) * Cin * N * sizeof(float);
    return ctx->scratch && ctx->scratch_bytes >= need;
}

/* rt_conv1x1_backward of h = relu(x sc + sh), h never written: din needs
 * no h (W^T dout); dw is pw_dw with the BN. The same bytes as the
 * recompute writing h and rt_conv1x1_backward reading it. 0 (nothing done)
 * without the ISA or scratch. */
int rt_conv1x1_bnin_backward(const RtCtx *ctx, float *din, int acc, float *dw,
                             const float *dout, const float *in, size_t xs, const float *mean,
                             const float *rstd, const float *gamma, const float *beta,
                             const float *w, int B, int Cin, int N, int Cout)
{
    if (!ctx || isa() == ISA_NONE || Cin <= 0 || Cout <= 0 || N <= 0 || B <= 0 || !dw
        || !ctx->scratch || ctx->scratch_bytes < (size_t)Cin * N * sizeof(float))
        return 0;
    if (din)
        pw_data(ctx, din, acc, dout, (size_t)Cout * N, NULL, w, 1, Cin, B, Cout, Cin, N);
    PwBn bn = {mean, rstd, gamma, beta};
    pw_dw(ctx, dw, dout, in, xs, &bn, B, Cin, N, Cout);
    return 1;
}

int rt_conv1x1_backward(const RtCtx *ctx, float *din, int acc, float *dw, const float *dout,
                        const float *in, const float *w, int B, int Cin, int N, int Cout)
{
    if (isa() == ISA_NONE || Cin <= 0 || Cout <= 0 || N <= 0)
        return 0;
    if (din)    /* din[ci] = sum_co w[co][ci] dout[co] */
        pw_data(ctx, din, acc, dout, (size_t)Cout * N, NULL, w, 1, Cin, B, Cout, Cin, N);
    if (dw)
        pw_dw(ctx, dw, dout, in, (size_t)Cin * N, NULL, B, Cin, N, Cout);
    return 1;
}
