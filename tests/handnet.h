/* handnet.h — a small network assembled by hand, written the way optc's
 * generated code is: straight-line kernel calls with constant shapes, one
 * parameter block, one activation arena with offsets computed by hand.
 *
 *   input 1x28x28
 *   conv3x3(16) bn relu                 16x28x28
 *   conv3x3(32, stride 2) bn relu       32x14x14
 *   alpha * x   (a learned scalar)      32x14x14
 *   avgpool 2x2                         32x7x7
 *   dropout(0.1), linear(10)
 *
 * Used by test_train.c (it learns Fashion-MNIST) and test_driver.c
 * (gradcheck, checkpoints, interruption). */
#ifndef OPTC_HANDNET_H
#define OPTC_HANDNET_H
#include <stddef.h>
#include "rt.h"

/* per-image sizes */
#define HN_N1 (16 * 28 * 28)
#define HN_N2 (32 * 14 * 14)
#define HN_NP (32 * 7 * 7)

/* parameter block */
#define HN_P_CONV1 0                       /* [16][1][3][3] */
#define HN_P_G1 (HN_P_CONV1 + 144)         /* [16] */
#define HN_P_B1 (HN_P_G1 + 16)             /* [16] */
#define HN_P_CONV2 (HN_P_B1 + 16)          /* [32][16][3][3] */
#define HN_P_G2 (HN_P_CONV2 + 4608)        /* [32] */
#define HN_P_B2 (HN_P_G2 + 32)             /* [32] */
#define HN_P_ALPHA (HN_P_B2 + 32)          /* [1] */
#define HN_P_FCW (HN_P_ALPHA + 1)          /* [10][1568] */
#define HN_P_FCB (HN_P_FCW + 15680)        /* [10] */
#define HN_NPARAMS (HN_P_FCB + 10)

/* buffer block */
#define HN_B_RM1 0
#define HN_B_RV1 16
#define HN_B_RM2 32
#define HN_B_RV2 64
#define HN_NBUFFERS 96

/* activation arena: batch-sized arrays, then the per-channel statistics */
enum { HN_C1, HN_BN1, HN_R1, HN_C2, HN_BN2, HN_R2, HN_S, HN_POOL, HN_MASK, HN_DROP,
       HN_GDROP, HN_GPOOL, HN_GS, HN_GR2, HN_GBN2, HN_GR1, HN_GBN1, HN_GC1, HN_GC2, HN_NARR };
static const size_t hn_arr_size[HN_NARR] = {
    HN_N1, HN_N1, HN_N1, HN_N2, HN_N2, HN_N2, HN_N2, HN_NP, HN_NP, HN_NP,
    HN_NP, HN_NP, HN_N2, HN_N2, HN_N2, HN_N1, HN_N1, HN_N1, HN_N2};

static size_t hn_off(int B, int which)
{
    size_t o = 0;
    for (int i = 0; i < which && i < HN_NARR; i++)
        o += hn_arr_size[i] * (size_t)B;
    return o;
}
/* mean1, rstd1 [16], mean2, rstd2 [32] follow the arrays */
#define HN_STATS(B) hn_off(B, HN_NARR)

static size_t hn_act_elems(int B)
{
    return HN_STATS(B) + 16 + 16 + 32 + 32;
}

static size_t hn_scratch(int B, int threads, size_t elem)
{
    size_t a = rt_conv2d_scratch_bytes(threads, B, 1, 28, 28, 3, 1, 1, elem);
    size_t b = rt_conv2d_scratch_bytes(threads, B, 16, 28, 28, 3, 2, 1, elem);
    return a > b ? a : b;
}

#define HN_DROPOUT 0.1

#define HN_DEFINE(T, S, MODEL)                                                                \
static void hn_forward##S(MODEL *m, int B, int train)                                       \
{                                                                                             \
    T *a = m->acts;                                                                          \
    const T *p = m->params;                                                                  \
    T *bf = m->buffers;                                                                      \
    T *c1 = a + hn_off(B, HN_C1), *b1 = a + hn_off(B, HN_BN1), *r1 = a + hn_off(B, HN_R1);   \
    T *c2 = a + hn_off(B, HN_C2), *b2 = a + hn_off(B, HN_BN2), *r2 = a + hn_off(B, HN_R2);   \
    T *s = a + hn_off(B, HN_S), *pl = a + hn_off(B, HN_POOL);                                \
    T *mask = a + hn_off(B, HN_MASK), *dr = a + hn_off(B, HN_DROP);                          \
    T *st = a + HN_STATS(B);                                                                 \
    rt_conv2d_forward##S(&m->ctx, c1, m->input, p + HN_P_CONV1, B, 1, 28, 28, 16, 3, 1, 1);   \
    if (train)                                                                               \
        rt_bn_forward_train##S(&m->ctx, b1, st, st + 16, bf + HN_B_RM1, bf + HN_B_RV1, c1,   \
                               p + HN_P_G1, p + HN_P_B1, B, 16, 784, 0.1, 1e-5);             \
    else                                                                                     \
        rt_bn_forward_eval##S(&m->ctx, b1, c1, p + HN_P_G1, p + HN_P_B1, bf + HN_B_RM1,      \
                              bf + HN_B_RV1, B, 16, 784, 1e-5);                              \
    rt_relu_forward##S(&m->ctx, r1, b1, (size_t)B * HN_N1, 0);                               \
    rt_conv2d_forward##S(&m->ctx, c2, r1, p + HN_P_CONV2, B, 16, 28, 28, 32, 3, 2, 1);        \
    if (train)                                                                               \
        rt_bn_forward_train##S(&m->ctx, b2, st + 32, st + 64, bf + HN_B_RM2, bf + HN_B_RV2,  \
                               c2, p + HN_P_G2, p + HN_P_B2, B, 32, 196, 0.1, 1e-5);         \
    else                                                                                     \
        rt_bn_forward_eval##S(&m->ctx, b2, c2, p + HN_P_G2, p + HN_P_B2, bf + HN_B_RM2,      \
                              bf + HN_B_RV2, B, 32, 196, 1e-5);                              \
    rt_relu_forward##S(&m->ctx, r2, b2, (size_t)B * HN_N2, (size_t)B * HN_N1);               \
    const T *xs[1] = {r2};                                                                   \
    rt_sum_forward##S(&m->ctx, s, 1, xs, p + HN_P_ALPHA, (size_t)B * HN_N2);                 \
    rt_avgpool_forward##S(&m->ctx, pl, s, B, 32, 14, 14, 2, 2);                              \
    const T *fin = pl;                                                                       \
    if (train) {                                                                             \
        rt_dropout_forward##S(&m->ctx, dr, mask, pl, (size_t)B * HN_NP, HN_DROPOUT, &m->rng); \
        fin = dr;                                                                            \
    }                                                                                        \
    rt_linear_forward##S(&m->ctx, m->logits, fin, p + HN_P_FCW, p + HN_P_FCB, B, HN_NP, 10); \
}                                                                                             \
static void hn_backward##S(MODEL *m, int B)                                                  \
{                                                                                             \
    T *a = m->acts;                                                                          \
    const T *p = m->params;                                                                  \
    T *g = m->grads;                                                                         \
    const T *c1 = a + hn_off(B, HN_C1), *r1 = a + hn_off(B, HN_R1);                          \
    const T *c2 = a + hn_off(B, HN_C2), *r2 = a + hn_off(B, HN_R2);                          \
    const T *mask = a + hn_off(B, HN_MASK), *dr = a + hn_off(B, HN_DROP);                    \
    const T *st = a + HN_STATS(B);                                                           \
    T *gdr = a + hn_off(B, HN_GDROP), *gpl = a + hn_off(B, HN_GPOOL);                        \
    T *gs = a + hn_off(B, HN_GS), *gr2 = a + hn_off(B, HN_GR2), *gb2 = a + hn_off(B, HN_GBN2); \
    T *gc2 = a + hn_off(B, HN_GC2), *gr1 = a + hn_off(B, HN_GR1);                            \
    T *gb1 = a + hn_off(B, HN_GBN1), *gc1 = a + hn_off(B, HN_GC1);                           \
    rt_linear_backward##S(&m->ctx, gdr, 0, g + HN_P_FCW, g + HN_P_FCB, m->dlogits, dr,       \
                          p + HN_P_FCW, B, HN_NP, 10);                                       \
    rt_dropout_backward##S(&m->ctx, gpl, 0, gdr, mask, (size_t)B * HN_NP);                   \
    rt_avgpool_backward##S(&m->ctx, gs, 0, gpl, B, 32, 14, 14, 2, 2);                        \
    T *dxs[1] = {gr2};                                                                       \
    const int acc[1] = {0};                                                                  \
    const T *xs[1] = {r2};                                                                   \
    rt_sum_backward##S(&m->ctx, dxs, acc, g + HN_P_ALPHA, gs, xs, p + HN_P_ALPHA, 1,         \
                       (size_t)B * HN_N2);                                                   \
    rt_relu_backward##S(&m->ctx, gb2, 0, gr2, r2, (size_t)B * HN_N2, (size_t)B * HN_N1);     \
    rt_bn_backward##S(&m->ctx, gc2, 0, g + HN_P_G2, g + HN_P_B2, gb2, c2, st + 32, st + 64,  \
                      p + HN_P_G2, B, 32, 196);                                              \
    rt_conv2d_backward##S(&m->ctx, gr1, 0, g + HN_P_CONV2, gc2, r1, p + HN_P_CONV2,          \
                          B, 16, 28, 28, 32, 3, 2, 1);                                       \
    rt_relu_backward##S(&m->ctx, gb1, 0, gr1, r1, (size_t)B * HN_N1, 0);                     \
    rt_bn_backward##S(&m->ctx, gc1, 0, g + HN_P_G1, g + HN_P_B1, gb1, c1, st, st + 16,       \
                      p + HN_P_G1, B, 16, 784);                                              \
    rt_conv2d_backward##S(&m->ctx, NULL, 0, g + HN_P_CONV1, gc1, m->input, p + HN_P_CONV1,   \
                          B, 1, 28, 28, 16, 3, 1, 1);                                        \
}

HN_DEFINE(float, , RtModel)
HN_DEFINE(double, _d, RtModelD)

static const RtTensor hn_tensors[] = {
    {"conv1.weight", RT_PK_WEIGHT, 4, {16, 1, 3, 3}, HN_P_CONV1, 144, 0, RT_INIT_KAIMING, 0, 9},
    {"bn1.weight", RT_PK_BN_GAMMA, 1, {16, 0, 0, 0}, HN_P_G1, 16, 0, RT_INIT_ONES, 0, 0},
    {"bn1.bias", RT_PK_BN_BETA, 1, {16, 0, 0, 0}, HN_P_B1, 16, 0, RT_INIT_ZEROS, 0, 0},
    {"conv2.weight", RT_PK_WEIGHT, 4, {32, 16, 3, 3}, HN_P_CONV2, 4608, 0, RT_INIT_KAIMING, 0,
     144},
    {"bn2.weight", RT_PK_BN_GAMMA, 1, {32, 0, 0, 0}, HN_P_G2, 32, 0, RT_INIT_ONES, 0, 0},
    {"bn2.bias", RT_PK_BN_BETA, 1, {32, 0, 0, 0}, HN_P_B2, 32, 0, RT_INIT_ZEROS, 0, 0},
    {"alpha", RT_PK_SCALAR, 1, {1, 0, 0, 0}, HN_P_ALPHA, 1, 0, RT_INIT_CONST, 1.0, 0},
    {"fc.weight", RT_PK_WEIGHT, 2, {10, HN_NP, 0, 0}, HN_P_FCW, 15680, 0, RT_INIT_UNIFORM, 0,
     HN_NP},
    {"fc.bias", RT_PK_BIAS, 1, {10, 0, 0, 0}, HN_P_FCB, 10, 0, RT_INIT_UNIFORM, 0, HN_NP},
    {"bn1.running_mean", RT_PK_BN_MEAN, 1, {16, 0, 0, 0}, HN_B_RM1, 16, 1, RT_INIT_ZEROS, 0, 0},
    {"bn1.running_var", RT_PK_BN_VAR, 1, {16, 0, 0, 0}, HN_B_RV1, 16, 1, RT_INIT_ONES, 0, 0},
    {"bn2.running_mean", RT_PK_BN_MEAN, 1, {32, 0, 0, 0}, HN_B_RM2, 32, 1, RT_INIT_ZEROS, 0, 0},
    {"bn2.running_var", RT_PK_BN_VAR, 1, {32, 0, 0, 0}, HN_B_RV2, 32, 1, RT_INIT_ONES, 0, 0},
};

#define HN_NET_INIT(NAME, FWD, BWD, FWD_D, BWD_D)                                            \
    {                                                                                         \
        .name = NAME, .optc_version = RT_VERSION, .command = "hand-written",                 \
        .spec = "tests/handnet.h", .in_c = 1, .in_h = 28, .in_w = 28, .classes = 10,        \
        .nparams = HN_NPARAMS, .nbuffers = HN_NBUFFERS, .tensors = hn_tensors,              \
        .ntensors = (int)(sizeof hn_tensors / sizeof hn_tensors[0]),                        \
        .madds = 16LL * 9 * 784 + 32LL * 144 * 196 + 10LL * HN_NP, .nops = 11,              \
        .branch_elems = HN_N1 + HN_N2,   /* the two relus, in order */                     \
        .act_elems = hn_act_elems, .scratch_bytes = hn_scratch, .forward = FWD,              \
        .backward = BWD, .forward_d = FWD_D, .backward_d = BWD_D,                            \
        .defaults = {.epochs = 6, .batch = 32, .lr = 0.05, .momentum = 0.9,                  \
                     .weight_decay = 5e-4, .schedule = RT_SCHED_COSINE, .seed = 1,           \
                     .threads = 2, .data = "fashion-mnist"},                                 \
    }

static const RtNet handnet = HN_NET_INIT("handnet", hn_forward, hn_backward, hn_forward_d,
                                         hn_backward_d);
/* Run rt_main(net, args...) (a NULL-terminated list) in a forked child,
 * stdout and stderr to errpath when given (else stdout discarded), and return its exit
 * status, -1 when it crashed. The child keeps OpenMP and
 * OpenBLAS threads out of the test process: forking after they started is
 * unsafe, so the test process itself never runs kernels. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int hn_run_io(const RtNet *net, const char *const *args, const char *errpath)
{
    int argc = 0;
    while (args[argc])
        argc++;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (errpath ? !freopen(errpath, "w", stderr) || dup2(fileno(stderr), 1) < 0
                    : !freopen("/dev/null", "w", stdout))
            _exit(98);
        char **argv = calloc((size_t)argc + 1, sizeof *argv);
        for (int i = 0; argv && i < argc; i++)
            argv[i] = strdup(args[i]);
        int rc = argv ? rt_main(net, argc, argv) : 99;
        for (int i = 0; argv && i < argc; i++)
            free(argv[i]);
        free(argv);
        /* exit, not _exit: LeakSanitizer checks the child too */
        exit(rc);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static int hn_run(const RtNet *net, const char *const *args)
{
    return hn_run_io(net, args, NULL);
}

#endif
