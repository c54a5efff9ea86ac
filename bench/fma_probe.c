/* fma_probe.c — this machine's single-precision multiply-add peak on one
 * core, the yardstick for the effective GFLOPS that `make bench` prints.
 *
 * Each kernel runs many independent accumulator chains (more than FMA
 * latency x FMA ports) through acc = acc * m + c, so the loop is bound by
 * FMA throughput, not latency. The widest instruction set the CPU has is
 * chosen at run time with __builtin_cpu_supports; a plain-C kernel is the
 * portable fallback (it measures whatever the compiler makes of a*b+c).
 * One FMA counts as 2 FLOPs.
 *
 * Output: fma_peak_gflops_per_core=N.N isa=NAME, and on an AVX-512 machine
 * a second line avx2_peak_gflops_per_core=N.N isa=avx2+fma
 * Usage:  fma_probe [seconds-per-trial]   (default 0.2; best of 5 trials) */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L     /* clock_gettime under -std=c11 */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FMA_X86 1
#include <immintrin.h>
#else
#define FMA_X86 0
#endif

/* Accumulator chains per kernel: 12 covers 2 ports x 4-5 cycles latency
 * with room to spare on the CPUs optc targets. The step is spelled out
 * chain by chain so every accumulator lives in a register whatever the
 * compiler's unrolling heuristics (gcc -O2 keeps a looped array on the
 * stack, which halves the rate). */
#define CHAINS 12
#define STEP12(F) F(0) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11)

typedef double (*Kernel)(long iters, float m, float c, float *sink);

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Each kernel performs iters x CHAINS vector FMAs, stores a reduction to
 * *sink (so nothing is optimised away) and returns FLOPs done. */

#if FMA_X86
__attribute__((target("avx512f")))
static double kernel_avx512(long iters, float m, float c, float *sink)
{
    __m512 acc[CHAINS];
    const __m512 vm = _mm512_set1_ps(m), vc = _mm512_set1_ps(c);
    for (int j = 0; j < CHAINS; j++)
        acc[j] = _mm512_set1_ps((float)j);
#define FMA512(j) acc[j] = _mm512_fmadd_ps(acc[j], vm, vc);
    for (long i = 0; i < iters; i++) {
        STEP12(FMA512)
    }
#undef FMA512
    __m512 s = acc[0];
    for (int j = 1; j < CHAINS; j++)
        s = _mm512_add_ps(s, acc[j]);
    *sink = _mm512_reduce_add_ps(s);
    return 2.0 * 16.0 * CHAINS * (double)iters;
}

__attribute__((target("avx2,fma")))
static double kernel_avx2(long iters, float m, float c, float *sink)
{
    __m256 acc[CHAINS];
    const __m256 vm = _mm256_set1_ps(m), vc = _mm256_set1_ps(c);
    for (int j = 0; j < CHAINS; j++)
        acc[j] = _mm256_set1_ps((float)j);
#define FMA256(j) acc[j] = _mm256_fmadd_ps(acc[j], vm, vc);
    for (long i = 0; i < iters; i++) {
        STEP12(FMA256)
    }
#undef FMA256
    __m256 s = acc[0];
    for (int j = 1; j < CHAINS; j++)
        s = _mm256_add_ps(s, acc[j]);
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    float t = 0.0f;
    for (int l = 0; l < 8; l++)
        t += lanes[l];
    *sink = t;
    return 2.0 * 8.0 * CHAINS * (double)iters;
}
#endif

/* Portable: scalar chains, 8 lanes each, which the compiler may vectorise
 * (and contract to FMA where its flags allow). Counts a*b+c as 2 FLOPs. */
static double kernel_plain(long iters, float m, float c, float *sink)
{
    float acc[CHAINS][8];
    for (int j = 0; j < CHAINS; j++)
        for (int l = 0; l < 8; l++)
            acc[j][l] = (float)(j + l);
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < CHAINS; j++)
            for (int l = 0; l < 8; l++)
                acc[j][l] = acc[j][l] * m + c;
    float t = 0.0f;
    for (int j = 0; j < CHAINS; j++)
        for (int l = 0; l < 8; l++)
            t += acc[j][l];
    *sink = t;
    return 2.0 * 8.0 * CHAINS * (double)iters;
}

/* Best GFLOPS over 5 trials of about `seconds` each. */
static double measure(Kernel k, double seconds)
{
    /* m < 1 keeps every chain converging to c / (1 - m): no overflow and no
     * denormals. volatile stops the compiler folding the constants in. */
    volatile float vm = 0.999f, vc = 0.001f;
    float sink = 0.0f;
    long iters = 1000;
    for (;;) {                                   /* calibrate */
        double t0 = now_s();
        k(iters, vm, vc, &sink);
        double dt = now_s() - t0;
        if (dt >= seconds / 4 || iters > (1L << 40))
            break;
        iters *= 2;
    }
    iters = (long)((double)iters * 4.0);
    double best = 0.0;
    for (int trial = 0; trial < 5; trial++) {
        double t0 = now_s();
        double flops = k(iters, vm, vc, &sink);
        double dt = now_s() - t0;
        if (dt > 0 && flops / dt > best)
            best = flops / dt;
    }
    if (sink != sink)                            /* NaN: impossible unless broken */
        fprintf(stderr, "fma_probe: warning: non-finite result\n");
    return best * 1e-9;
}

int main(int argc, char **argv)
{
    double seconds = 0.2;
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: fma_probe [seconds-per-trial]\n");
        return 2;
    }
    if (argc == 2) {
        char *end;
        seconds = strtod(argv[1], &end);
        if (*end != '\0' || !(seconds > 0.0 && seconds <= 60.0)) {
            fprintf(stderr, "fma_probe: seconds-per-trial must be in (0, 60], got '%s'\n", argv[1]);
            return 2;
        }
    }
    Kernel k = kernel_plain;
    const char *isa = "plain-c";
#if FMA_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        k = kernel_avx512;
        isa = "avx512f";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        k = kernel_avx2;
        isa = "avx2+fma";
    }
#endif
    printf("fma_peak_gflops_per_core=%.1f isa=%s\n", measure(k, seconds), isa);
#if FMA_X86
    /* the 8-wide peak too where the widest is 16-wide: optc's kernels use
     * both, and some CPUs run AVX-512 at the AVX2 rate */
    if (k == kernel_avx512 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        printf("avx2_peak_gflops_per_core=%.1f isa=avx2+fma\n", measure(kernel_avx2, seconds));
#endif
    return 0;
}
