/* ir.h — the unrolled graph: the contract between the front end (unroll)
 * and the back end (plan, emit_c, emit_dot, analyze).
 *
 * A graph is one network: nodes in topological order (every input of node i
 * has an id < i), node 0 is OP_INPUT, graph->output is the logits node
 * (shape classes x 1 x 1). Shapes are per image (C x H x W); the batch
 * dimension is left to run time. Parameters live in one table; a node names
 * them by index, so weights shared between steps are two nodes naming the
 * same index (their gradients accumulate). All memory is owned by the arena
 * the graph was built in. */
#ifndef OPTC_IR_H
#define OPTC_IR_H

#include <stdbool.h>
#include <stddef.h>
#include "rt_defaults.h"

typedef enum {
#define OP(name, text, flags, madds) OP_##name,
#define ACT(name, NAME, arg, def, kernels, kink) OP_##NAME,
#include "ops.def"
#undef ACT
#undef OP
    OP_COUNT
} IrOp;

typedef struct { int c, h, w; } IrShape;

/* The elements of one image of shape s. */
static inline size_t ir_numel(IrShape s)
{
    return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

/* How a parameter tensor is initialised by the generated program. */
typedef enum {
    INIT_KAIMING,   /* normal(0, sqrt(2 / fan_in))  (conv weights) */
    INIT_UNIFORM,   /* uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))  (linear, exact U) */
    INIT_ONES,      /* bn gamma, bn running var */
    INIT_ZEROS,     /* bn beta, biases, bn running mean */
    INIT_CONST      /* learned scalars: init_value */
} IrInit;

typedef enum {
    PK_WEIGHT,      /* conv / linear / exact weight: trained, decayed */
    PK_BIAS,        /* linear bias: trained, not decayed by default */
    PK_BN_GAMMA,    /* trained; decayed only if the train block says so */
    PK_BN_BETA,
    PK_SCALAR,      /* a learned(init) optimizer coefficient, one element */
    PK_BN_MEAN,     /* running statistics: not trained (buffers) */
    PK_BN_VAR
} IrParamKind;

typedef struct {
    const char *name;       /* e.g. "stage2.step1.grad.conv0.weight" */
    IrParamKind kind;
    int ndim;
    int dims[4];
    size_t numel;
    IrInit init;
    double init_value;      /* INIT_CONST */
    int fan_in;             /* INIT_KAIMING / INIT_UNIFORM */
    bool trainable;         /* false for BN running statistics */
} IrParam;

/* A scaled-sum coefficient: c = c0 + sum_j a[j] * param[j], where each
 * param[j] indexes a one-element PK_SCALAR parameter. Fixed coefficients
 * have nterms == 0. Products of learned scalars are rejected by sema. src
 * is the coefficient in the optimizer's own terms ("1 + beta", "-beta"),
 * or NULL when it involves no parameter (a plain number). */
#define IR_COEF_TERMS 4
typedef struct {
    double c0;
    int nterms;
    int param[IR_COEF_TERMS];
    double a[IR_COEF_TERMS];
    const char *src;
} IrCoef;

typedef struct {
    int id;
    IrOp op;
    const char *name;       /* e.g. "stage1.step0.grad.conv0", "stage1.x1" */
    int stage;              /* 1-based stage the node belongs to; -1 outside
                             * the stages (input, stem, transitions, head) */
    int step;               /* 0-based step of that stage that made it; -1
                             * outside a step (initial values, not a stage) */
    int nin;
    const int *in;          /* node ids, nin of them */
    IrShape shape;          /* output shape, per image */
    union {
        struct { int cout, k, stride, pad, w; } conv;            /* w: param index */
        struct { int gamma, beta, mean, var; double eps, momentum; } bn;
        struct { const IrCoef *coef; } sum;                     /* nin coefficients */
        struct { int stride; } pad;                             /* out channels = shape.c */
        struct { int k, stride; } pool;
        struct { int w, b; } linear;                            /* b may be -1 */
        struct { int u, m; char phi[16]; double alpha; } exact; /* U: d x m, phi "relu", its a */
        struct { double p; } dropout;
        struct { double a; } act;       /* an activation's argument (leaky_relu, elu) */
    } u;
} IrNode;

typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE } IrSchedule;

/* Training defaults from the network's train block; the generated program
 * uses them unless its command line overrides them. */
typedef struct {
    int epochs, batch;
    double lr, momentum, weight_decay;
    bool nesterov, decay_bn;
    IrSchedule schedule;
    int warmup_epochs;
    double step_gamma;       /* SCHED_STEP: lr *= step_gamma at each milestone */
    int milestones[4], nmilestones;  /* epochs */
    int crop_pad;            /* augment crop(n); 0 = none */
    bool flip;               /* augment flip */
} IrTrain;

typedef struct {
    const char *name;       /* network name, a valid C identifier */
    const char *spec_path;  /* the spec file it came from */
    IrShape input;
    int classes;
    IrNode *nodes;
    int nnodes;
    int output;             /* id of the logits node */
    IrParam *params;
    int nparams;
    IrTrain train;
} IrGraph;

#endif
