/* optable.h — one row per IR op (ops.def, and runtime/act.def for the
 * activations): what the layer parser, unroll, the planner, the emitter and
 * the printers need to know about an op without a switch of their own. */
#ifndef OPTC_OPTABLE_H
#define OPTC_OPTABLE_H

#include "frontend.h"

enum {
    OPF_LAYER   = 1u << 0,  /* written as a layer in a spec (its text is the name) */
    OPF_ACT     = 1u << 1,  /* a pointwise activation of act.def */
    OPF_BWD_IN  = 1u << 2,  /* backward reads the input activation */
    OPF_BWD_OUT = 1u << 3,  /* backward reads the output activation */
    OPF_PARAMS  = 1u << 4   /* owns trainable parameters */
};

typedef struct {
    const char *text;       /* "conv", "leaky_relu": IR name, layer name */
    unsigned flags;         /* OPF_* */
    const char *arg;        /* activations: the optional argument ("a"), "" for none */
    double arg_default;     /* ...and its default */
    int act;                /* activations: the RtAct id (exact's phi), else -1 */
    bool kink;              /* activations: two pieces at 0 (a gradient check
                               freezes them: rt.h RtBranch) */
    /* Multiply-adds per image of node n (its input shape is), NULL for none
     * worth counting (pointwise ops). */
    long long (*madds)(const IrGraph *g, const IrNode *n);
} OpInfo;

/* The row of op (op < OP_COUNT). */
const OpInfo *op_info(IrOp op);
/* The op whose text is name and whose flags include all of need; -1 if none. */
int op_find(const char *name, unsigned need);
/* Whether node n's backward reads its input / output activation (a sum
 * with learned coefficients reads its inputs for their gradients). */
bool op_bwd_reads_input(const IrNode *n);
bool op_bwd_reads_output(const IrNode *n);
/* Branch-record elements per image of node n (rt.h RtBranch): one per
 * element of an activation with a kink, m for an exact block whose phi has
 * one, 0 for smooth ops. */
size_t op_branch_len(const IrNode *n);
/* Whether node n owns trainable parameters (learned sum coefficients too). */
bool op_has_params(const IrNode *n);

/* v in the shortest %g form that reads back as the same double ("1.9",
 * not "1.8999999999999999"), written into buf; returns buf. */
const char *op_num(char *buf, size_t size, double v);

#endif
