/* invert_drift.c — how far float32 reconstruction by the heavy-ball inverse
 * drifts (issue 13; docs/memory-free.md).
 *
 * Stage 1 of hb20_fmnist at initialisation: the stem conv3x3(16) on
 * Fashion-MNIST images (synthetic ones when the data set is missing), then
 * n heavy-ball steps x[k+1] = (1 + beta) x[k] - g_k(x[k]) - beta x[k-1]
 * with g_k = conv, bn, relu, conv, bn, relu in the spec's order
 * (bn, relu, conv3x3, bn, relu, conv3x3), Kaiming weights, BN in training
 * mode. The forward runs in float32 with the runtime's kernels and keeps
 * every state; the reconstruction starts from x[n] and x[n-1] only and
 * applies x[k-1] = ((1 + beta) x[k] - g_k(x[k]) - x[k+1]) / beta in
 * float32, recomputing g_k with the forward's BN batch statistics (as a
 * memory-free backward would). Printed per reconstructed state: the
 * relative L2 error and the largest absolute error against the forward's.
 *
 *   cc -std=c11 -O2 -Iruntime -o build/bench/invert_drift bench/invert_drift.c \
 *      build/libort.a $(pkg-config --libs openblas zlib) -fopenmp -lm
 *   build/bench/invert_drift [BATCH]                  (default 16 images) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "rt.h"

enum { C = 16, H = 28, W = 28, HW = H * W, MAXN = 18 };

typedef struct {
    float *w0, *w1;             /* [C][C][3][3] */
    float *mean0, *rstd0, *mean1, *rstd1;   /* the forward's batch statistics */
} Block;

static RtCtx ctx;
static int B;

static float *falloc(size_t n)
{
    float *p = calloc(n, sizeof *p);
    if (!p) {
        fprintf(stderr, "invert_drift: out of memory\n");
        exit(1);
    }
    return p;
}

static void kaiming(float *w, size_t n, int fan_in, RtRng *r)
{
    double sd = sqrt(2.0 / fan_in);
    for (size_t i = 0; i < n; i++)
        w[i] = (float)(sd * rt_rng_normal(r));
}

/* BN with given statistics, gamma 1, beta 0 (their values at init). */
static void bn_apply(float *out, const float *in, const float *mean, const float *rstd)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            const float *x = in + ((size_t)b * C + c) * HW;
            float *y = out + ((size_t)b * C + c) * HW;
            for (int i = 0; i < HW; i++)
                y[i] = (x[i] - mean[c]) * rstd[c];
        }
}

/* g(x) into out; train: compute and keep the batch statistics, else reuse. */
static void block(Block *bl, float *out, const float *x, float *t0, float *t1, int train)
{
    static float ones[C], zeros[C], rm[C], rv[C];
    for (int c = 0; c < C; c++)
        ones[c] = 1;
    size_t n = (size_t)B * C * HW;
    if (train)
        rt_bn_forward_train(&ctx, t0, bl->mean0, bl->rstd0, rm, rv, x, ones, zeros, B, C, HW, 0.1, 1e-5);
    else
        bn_apply(t0, x, bl->mean0, bl->rstd0);
    rt_relu_forward(&ctx, t0, t0, n, 0);
    rt_conv2d_forward(&ctx, t1, t0, bl->w0, B, C, H, W, C, 3, 1, 1);
    if (train)
        rt_bn_forward_train(&ctx, t0, bl->mean1, bl->rstd1, rm, rv, t1, ones, zeros, B, C, HW, 0.1, 1e-5);
    else
        bn_apply(t0, t1, bl->mean1, bl->rstd1);
    rt_relu_forward(&ctx, t0, t0, n, 0);
    rt_conv2d_forward(&ctx, out, t0, bl->w1, B, C, H, W, C, 3, 1, 1);
}

int main(int argc, char **argv)
{
    B = argc > 1 ? atoi(argv[1]) : 16;
    if (B < 1 || B > 1024) {
        fprintf(stderr, "usage: invert_drift [BATCH 1..1024]\n");
        return 2;
    }
    ctx.threads = 1;
    ctx.scratch_bytes = rt_conv2d_scratch_bytes(1, B, C, H, W, 3, 1, 1, sizeof(float));
    ctx.scratch = ctx.scratch_bytes ? malloc(ctx.scratch_bytes) : NULL;
    size_t n = (size_t)B * C * HW;
    RtRng rng;
    rt_rng_seed(&rng, 1);

    /* The stage input: the stem on real images when there are some. */
    RtData tr, te;
    RtErr err;
    const char *data = "fashion-mnist";
    if (rt_data_load(&tr, &te, data, B, 1, 1, H, W, 10, 1, &err) != 0) {
        data = "synthetic";
        if (rt_data_load(&tr, &te, data, B, 1, 1, H, W, 10, 1, &err) != 0) {
            fprintf(stderr, "invert_drift: %s\n", err.msg);
            return 1;
        }
    }
    float *stem_w = falloc(C * 9);
    kaiming(stem_w, C * 9, 9, &rng);
    float *x0 = falloc(n);
    rt_conv2d_forward(&ctx, x0, tr.x, stem_w, B, 1, H, W, C, 3, 1, 1);

    Block bl[MAXN];
    for (int k = 0; k < MAXN; k++) {
        bl[k].w0 = falloc(C * C * 9);
        bl[k].w1 = falloc(C * C * 9);
        kaiming(bl[k].w0, C * C * 9, C * 9, &rng);
        kaiming(bl[k].w1, C * C * 9, C * 9, &rng);
        bl[k].mean0 = falloc(C), bl[k].rstd0 = falloc(C);
        bl[k].mean1 = falloc(C), bl[k].rstd1 = falloc(C);
    }
    float *x[MAXN + 1], *xr[MAXN + 1];
    for (int k = 0; k <= MAXN; k++)
        x[k] = falloc(n), xr[k] = falloc(n);
    float *g = falloc(n), *t0 = falloc(n), *t1 = falloc(n);

    printf("# heavy-ball stage 1 of hb20_fmnist at init, %d %s images, float32\n", B, data);
    printf("# beta steps state rel_l2 max_abs  (x[j] rebuilt from x[n], x[n-1])\n");
    const double betas[] = { 0.9, 0.5, 0.1 };
    const int depths[] = { 3, 9, 18 };
    for (int bi = 0; bi < 3; bi++)
        for (int di = 0; di < 3; di++) {
            double beta = betas[bi];
            int steps = depths[di];
            memcpy(x[0], x0, n * sizeof(float));
            for (int k = 0; k < steps; k++) {
                block(&bl[k], g, x[k], t0, t1, 1);
                /* At k = 0, x[k-1] is x[0]: the IR folds it to x[0] - g. */
                float c[3] = { k ? (float)(1 + beta) : 1, -1, (float)-beta };
                const float *xs[3] = { x[k], g, x[k ? k - 1 : 0] };
                rt_sum_forward(&ctx, x[k + 1], k ? 3 : 2, xs, c, n);
            }
            memcpy(xr[steps], x[steps], n * sizeof(float));
            memcpy(xr[steps - 1], x[steps - 1], n * sizeof(float));
            for (int k = steps - 1; k >= 1; k--) {
                block(&bl[k], g, xr[k], t0, t1, 0);
                float c[3] = { (float)((1 + beta) / beta), (float)(-1 / beta), (float)(-1 / beta) };
                const float *xs[3] = { xr[k], g, xr[k + 1] };
                rt_sum_forward(&ctx, xr[k - 1], 3, xs, c, n);
            }
            for (int j = steps - 2; j >= 0; j--) {
                double num = 0, den = 0, mx = 0;
                for (size_t i = 0; i < n; i++) {
                    double d = (double)xr[j][i] - x[j][i];
                    num += d * d;
                    den += (double)x[j][i] * x[j][i];
                    if (fabs(d) > mx)
                        mx = fabs(d);
                }
                printf("%.1f %2d x[%d] %.3e %.3e\n", beta, steps, j, sqrt(num / den), mx);
            }
        }
    return 0;
}
