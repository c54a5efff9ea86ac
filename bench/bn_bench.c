/* bn_bench.c — per-kernel timings of the runtime's float BN + relu, relu and
 * sum kernels on ResNet-20's shapes (batch 128 unless given), one thread,
 * for each instruction set the CPU has (OPTC_KERNEL_ISA = none, avx2,
 * avx512). Before each call the caches are flushed (a 64 MB buffer is
 * written), as in a training step where the operands come from L3 or
 * memory. Times are the median of REPS calls of this thread's CPU time.
 *
 *   cc -O2 -fopenmp -Iruntime -o build/bench/bn_bench bench/bn_bench.c \
 *      build/libort.a $(pkg-config --libs openblas) -lz -lm
 *   build/bench/bn_bench [REPS [B]]      (BN_BENCH_Y=1: the backward reads relu's mask from y)
 *
 * Prints one line per shape, kernel and instruction set: milliseconds
 * and GB/s (the bytes each kernel must read and write once: a two-pass
 * kernel's second pass is not counted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "benchutil.h"
#include "rt.h"


enum { K_FWD, K_BWD, K_BWDP, K_EVAL, K_RC, K_SUMF, K_SUMB, K_N };
static const char *const knames[K_N] = {"bn_relu fwd", "bn_relu bwd", "bn_relu bwd dp",
                                        "bn_relu eval", "bn_relu recompute", "sum fwd (2)",
                                        "sum bwd (2)"};
/* tensors read or written once ("bwd dp": the parameter gradients only,
 * the first pass) */
static const int ktensors[K_N] = {2, 4, 3, 2, 2, 3, 3};

#define FLUSH_FLOATS ((size_t)16 << 20)

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 7, B = argc > 2 ? atoi(argv[2]) : 128;
    if (reps < 1 || B < 1) {
        fprintf(stderr, "usage: bn_bench [REPS [B]]\n");
        return 2;
    }
    static const int shapes[][2] = {{16, 1024}, {32, 256}, {64, 64}};
    static const char *const isas[] = {"none", "avx2", "avx512"};
    float *flush = malloc(FLUSH_FLOATS * sizeof(float));
    double *ms = malloc((size_t)reps * sizeof(double));
    if (!flush || !ms)
        return 1;
    RtCtx ctx = {1, NULL, 0, NULL, NULL};
    int from_y = getenv("BN_BENCH_Y") != NULL;     /* the backward reads relu's mask from y */
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int C = shapes[s][0], HW = shapes[s][1];
        size_t n = (size_t)B * C * HW;
        float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
        float *g = malloc(n * sizeof(float)), *d = malloc(n * sizeof(float));
        float *p = calloc(8 * (size_t)C, sizeof(float));
        if (!x || !y || !g || !d || !p)
            return 1;
        RtRng rng;
        rt_rng_seed(&rng, 7);
        for (size_t i = 0; i < n; i++) {
            x[i] = (float)rt_rng_normal(&rng);
            g[i] = (float)rt_rng_normal(&rng);
        }
        float *gamma = p, *beta = p + C, *mean = p + 2 * C, *rstd = p + 3 * C;
        float *rm = p + 4 * C, *rv = p + 5 * C, *dg = p + 6 * C, *db = p + 7 * C;
        for (int c = 0; c < C; c++)
            gamma[c] = rv[c] = 1;
        rt_bn_relu_forward_train(&ctx, y, mean, rstd, rm, rv, x, gamma, beta, B, C, HW, 0.1,
                                 1e-5, 0);
        for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
            setenv("OPTC_KERNEL_ISA", isas[ii], 1);
            for (int k = 0; k < K_N; k++) {
                for (int r = 0; r < reps; r++) {
                    for (size_t i = 0; i < FLUSH_FLOATS; i++)
                        flush[i] = (float)i;
                    const float *xs[2] = {x, g};
                    float *dxs[2] = {d, y};
                    int acc[2] = {0, 1};
                    double t0 = cpu_ms();
                    switch (k) {
                    case K_FWD:
                        rt_bn_relu_forward_train(&ctx, y, mean, rstd, rm, rv, x, gamma, beta, B,
                                                 C, HW, 0.1, 1e-5, 0);
                        break;
                    case K_BWD:
                        rt_bn_relu_backward(&ctx, d, 0, dg, db, g, y, x, mean, rstd, gamma,
                                            from_y ? NULL : beta, B, C, HW, 0);
                        break;
                    case K_BWDP:
                        rt_bn_relu_backward(&ctx, NULL, 0, dg, db, g, y, x, mean, rstd, gamma,
                                            from_y ? NULL : beta, B, C, HW, 0);
                        break;
                    case K_EVAL:
                        rt_bn_relu_forward_eval(&ctx, y, x, gamma, beta, rm, rv, B, C, HW, 1e-5,
                                                0);
                        break;
                    case K_RC:
                        rt_bn_relu_recompute(&ctx, y, x, mean, rstd, gamma, beta, B, C, HW, 0,
                                             (size_t)C * HW);
                        break;
                    case K_SUMF:
                        rt_sum_forward(&ctx, y, 2, xs, NULL, n);
                        break;
                    default:
                        rt_sum_backward(&ctx, dxs, acc, NULL, g, NULL, NULL, 2, n);
                        break;
                    }
                    ms[r] = cpu_ms() - t0;
                }
                qsort(ms, (size_t)reps, sizeof *ms, cmp);
                double med = ms[reps / 2];
                printf("%-3d x %-5d %-18s %-6s %8.3f ms %6.1f GB/s\n", C, HW, knames[k],
                       isas[ii], med, (double)ktensors[k] * (double)n * 4.0 / (med * 1e6));
            }
        }
        free(x); free(y); free(g); free(d); free(p);
    }
    free(flush);
    free(ms);
    return 0;
}
