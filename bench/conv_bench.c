/* conv_bench.c — per-kernel timings of the runtime's float convolutions on
 * the 3x3 and 1x1 shapes of ResNet-20 and DenseNet-BC (batch 128 unless given;
 * the stride-2 ones of the Fashion-MNIST ResNets too),
 * one thread (or THREADS), for each kernel path: im2col + OpenBLAS (OPTC_CONV_ISA=none),
 * the AVX2 direct kernels and the AVX-512 ones (where the CPU has them,
 * OPTC_CONV_WINO=0), and for the stride-1 3x3 convs Winograd on each
 * (w-avx2, w-avx512; GFLOP/s counts the direct convolution's FLOPs, so it
 * compares with the other rows).
 * Times are the median of REPS calls of this thread's CPU time, so other
 * processes on a shared machine change them little.
 *
 *   cc -O2 -fopenmp -Iruntime -o build/bench/conv_bench bench/conv_bench.c \
 *      build/libort.a $(pkg-config --libs openblas) -lz -lm
 *   build/bench/conv_bench [REPS [B [SHAPE [PATHS [THREADS]]]]]
 *
 * SHAPE keeps the shapes whose name contains it ("res", "s2", "" for all);
 * PATHS the paths named in it ("avx512", "avx2,avx512"; default all);
 * THREADS (default 1) the kernels' threads: above 1 the times are the
 * process's CPU time, all threads together (what a split that repeats work
 * costs; the wall time follows from it only on an idle machine).
 * Prints one line per shape, pass and path: milliseconds and GFLOP/s
 * (2 x multiply-adds). The 1x1 shapes also time the forward and the weight
 * gradient of a training BN + relu's output never written (bnf, bndw:
 * rt_conv1x1_bnin_*, DenseNet's bottleneck) on the direct paths. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "conv3x3.h"
#include "benchutil.h"
#include "rt.h"


typedef struct {
    const char *name;
    int C, H, W, Co, S, K;  /* K 1: pointwise (stride 1, pad 0); else 3x3 pad 1 */
} Shape;

static const Shape shapes[] = {
    {"res 16->16 32x32", 16, 32, 32, 16, 1, 3}, {"res 16->32 s2", 16, 32, 32, 32, 2, 3},
    {"res 32->32 16x16", 32, 16, 16, 32, 1, 3}, {"res 32->64 s2", 32, 16, 16, 64, 2, 3},
    {"res 64->64 8x8", 64, 8, 8, 64, 1, 3},     {"dense 48->12 32x32", 48, 32, 32, 12, 1, 3},
    {"dense 48->12 8x8", 48, 8, 8, 12, 1, 3},   {"dense 1x1 96->48 32", 96, 32, 32, 48, 1, 1},
    {"dense 1x1 168->84 32", 168, 32, 32, 84, 1, 1}, {"dense 1x1 96->48 8x8", 96, 8, 8, 48, 1, 1},
    {"fmnist 16->32 s2 28", 16, 28, 28, 32, 2, 3},  {"fmnist 32->64 s2 14", 32, 14, 14, 64, 2, 3},
};

/* The process's CPU time, all threads. */
static double proc_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 7, B = argc > 2 ? atoi(argv[2]) : 128;
    const char *only = argc > 3 ? argv[3] : "", *want = argc > 4 ? argv[4] : NULL;
    int th = argc > 5 ? atoi(argv[5]) : 1;
    if (reps < 1 || B < 1 || th < 1) {
        fprintf(stderr, "usage: conv_bench [REPS [B [SHAPE [PATHS [THREADS]]]]]\n");
        return 2;
    }
    openblas_set_num_threads(1);
    /* path p: OPTC_CONV_ISA isas[p], Winograd on for p >= 3 */
    static const char *const paths[] = {"none", "avx2", "avx512", "w-avx2", "w-avx512"};
    static const char *const isas[] = {"none", "avx2", "avx512", "avx2", "avx512"};
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f"), avx2 = __builtin_cpu_supports("avx2");
    printf("%-20s %-4s %-8s %9s %8s\n", "shape", "pass", "path", "ms", "GFLOP/s");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const Shape *s = &shapes[si];
        if (!strstr(s->name, only))
            continue;
        int K = s->K, P = K == 3 ? 1 : 0;
        int Ho = rt_conv_out(s->H, K, s->S, P), Wo = rt_conv_out(s->W, K, s->S, P);
        size_t ni = (size_t)B * s->C * s->H * s->W, no = (size_t)B * s->Co * Ho * Wo;
        size_t nw = (size_t)s->Co * s->C * K * K;
        float *in = malloc(ni * sizeof(float)), *din = malloc(ni * sizeof(float));
        float *out = malloc(no * sizeof(float)), *w = malloc(nw * sizeof(float));
        float *dw = calloc(nw, sizeof(float)), *st = malloc((size_t)4 * s->C * sizeof(float));
        size_t bytes = rt_conv2d_scratch_bytes(th, B, s->C, s->H, s->W, K, s->S, P, sizeof(float));
        void *scratch = malloc(bytes ? bytes : 1);
        double *t = malloc((size_t)reps * sizeof(double));
        if (!in || !din || !out || !w || !dw || !st || !scratch || !t) {
            fprintf(stderr, "conv_bench: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < ni; i++)
            in[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
        for (size_t i = 0; i < nw; i++)
            w[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
        for (size_t i = 0; i < no; i++)
            out[i] = (float)((i * 31) % 1000) * 1e-3f - 0.5f;
        for (int c = 0; c < s->C; c++)     /* mean, rstd, gamma, beta */
            st[c] = 0.1f, st[s->C + c] = 1.5f, st[2 * s->C + c] = 1, st[3 * s->C + c] = 0;
        RtCtx ctx = {.threads = th, .scratch = scratch, .scratch_bytes = bytes};
        double flop = 2.0 * (double)no * s->C * K * K;
        for (int pass = 0; pass < (K == 1 ? 5 : 3); pass++) {
            for (int p = 0; p < 5; p++) {
                if (pass >= 3 && (p == 0 || p >= 3))
                    continue;
                if ((p == 2 || p == 4) ? !avx512 : p > 0 && !avx2)
                    continue;
                if (p >= 3 && (K != 3 || s->S != 1))
                    continue;
                if (want && !strstr(want, paths[p]))
                    continue;
                setenv("OPTC_CONV_ISA", isas[p], 1);
                setenv("OPTC_CONV_WINO", p >= 3 ? "1" : "0", 1);
                for (int r = 0; r < reps + 1; r++) {
                    double t0 = th > 1 ? proc_ms() : cpu_ms();
                    if (pass == 0)
                        rt_conv2d_forward(&ctx, out, in, w, B, s->C, s->H, s->W, s->Co, K, s->S, P);
                    else if (pass == 1)
                        rt_conv2d_backward(&ctx, din, 0, NULL, out, in, w, B, s->C, s->H, s->W,
                                           s->Co, K, s->S, P);
                    else if (pass == 2)
                        rt_conv2d_backward(&ctx, NULL, 0, dw, out, in, w, B, s->C, s->H, s->W,
                                           s->Co, K, s->S, P);
                    else if (pass == 3)
                        rt_conv1x1_bnin_forward(&ctx, out, in, (size_t)s->C * s->H * s->W, st,
                                                st + s->C, st + 2 * s->C, st + 3 * s->C, w, B,
                                                s->C, s->H * s->W, s->Co);
                    else
                        rt_conv1x1_bnin_backward(&ctx, NULL, 0, dw, out, in,
                                                 (size_t)s->C * s->H * s->W, st, st + s->C,
                                                 st + 2 * s->C, st + 3 * s->C, w, B, s->C,
                                                 s->H * s->W, s->Co);
                    if (r > 0)  /* the first call warms the caches */
                        t[r - 1] = (th > 1 ? proc_ms() : cpu_ms()) - t0;
                }
                qsort(t, (size_t)reps, sizeof(double), cmp);
                double ms = t[reps / 2];
                static const char *const pass_names[] = {"fwd", "din", "dw", "bnf", "bndw"};
                printf("%-20s %-4s %-8s %9.2f %8.1f\n", s->name, pass_names[pass], paths[p], ms,
                       flop / (ms * 1e6));
                fflush(stdout);
            }
        }
        free(in), free(din), free(out), free(w), free(dw), free(st), free(scratch), free(t);
    }
    unsetenv("OPTC_CONV_ISA");
    unsetenv("OPTC_CONV_WINO");
    return 0;
}
