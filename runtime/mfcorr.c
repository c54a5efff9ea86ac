/* mfcorr.c — exact reconstruction for memory-free builds (optc build
 * --memory-free, docs/memory-free.md).
 *
 * The backward pass rebuilds a state U from a newer sum as
 * U' = sum_t c[t] xs[t], which is U up to rounding. Right after the forward
 * computes that sum, rt_mf_correct runs the same rebuild on the same values
 * (the same arithmetic per element: the result does not depend on the
 * thread split, the block or the vector lane) and keeps, per element, the
 * difference of U's and U''s order-preserving integer images (bits mapped so
 * that integer order is float order): an int8 code when it lies in
 * [-127, 127], else the escape code -128 and U's value in an escape list.
 * rt_mf_restore rebuilds U' in the backward and applies the codes, giving U
 * bit for bit; so every later rebuild starts from exact values too.
 *
 * The record lives in the activation arena (the planner sizes it at build
 * time): a header of RT_MF_HDR_BYTES, and cap escape values then len codes.
 * The escape list of a state is bounded by cap; a chunk (len / RT_MF_CHUNKS
 * elements, independent of the thread count) whose escapes do not fit keeps
 * none, and those elements stay U' (counted as lost: the drift report and
 * ./net info show them; a training step, which has no report, warns once
 * on stderr). No allocation. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "rt.h"

/* Set once a training step (no drift report to carry it) has lost escapes:
 * the warning is printed once per process. */
static int mf_warned;

/* OpenMP loops shorter than this (elements times terms) run on one thread. */
#define MF_PAR_MIN 32768
#define BN_VEC __attribute__((optimize("vect-cost-model=dynamic")))

static int mf_threads(const RtCtx *ctx)
{
    return ctx && ctx->threads > 0 ? ctx->threads : 1;
}

static int mf_avx2(void)
{
    return __builtin_cpu_supports("avx2");
}

/* The histogram bucket of a code: 0, 1, 2-3, 4-7, ..., 64-127 ulps. */
static int mf_bucket(int code)
{
    unsigned a = (unsigned)(code < 0 ? -code : code);
    int b = 0;
    while (a) {
        b++;
        a >>= 1;
    }
    return b;
}

#define T float
#define UI uint32_t
#define RT_FN(name) name
#include "mfcorr.inc"
#undef T
#undef UI
#undef RT_FN

#define T double
#define UI uint64_t
#define RT_FN(name) name##_d
#include "mfcorr.inc"
#undef T
#undef UI
#undef RT_FN
