/* emit_c_int.h — the C emitter's internals shared by emit_c.c and
 * emit_mfree.c (the memory-free backward pass). Not for other users. */
#ifndef OPTC_EMIT_C_INT_H
#define OPTC_EMIT_C_INT_H

#include <stdbool.h>
#include <stdio.h>
#include "plan.h"

/* Inputs of one node (sum, concat) the emitter handles. */
#define EMIT_MAX_IN 64

/* One emission: the graph, its plan, the element type being written. */
typedef struct {
    FILE *out;
    FILE *diag;
    const IrGraph *g;
    const Plan *p;
    const char *T;      /* "float" or "double" */
    const char *S;      /* kernel suffix: "" or "_d" */
    int bad;            /* a number could not be written */
    char ring[64][128]; /* short texts handed out by emit_num, emit_buf... */
    int ringpos;
    bool bwd;           /* emitting the backward phase: memory-free builds read
                         * rebuilt values (PlanNode.rec) there */
    size_t *bnc;        /* per plan buffer: 1 + the fixed-arena offset of its BN
                         * statistics cache (emit_bnc_plan), 0 none; NULL: none at all */
    size_t arena_b;     /* the fixed arena: the plan's and the caches */
} Emit;

void emit_f(Emit *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *emit_num(Emit *e, double v);
void emit_comment_name(Emit *e, const char *s);
const char *emit_buf(Emit *e, int b);
const char *emit_out(Emit *e, int node);
const char *emit_grad(Emit *e, int node);
const char *emit_param(Emit *e, const char *base, int param);
void emit_coefs(Emit *e, const IrNode *n);
void emit_xs(Emit *e, const IrNode *n);
void emit_node_comment(Emit *e, const IrNode *n);
size_t emit_branch_site(const Emit *e, int id);
void emit_forward_node(Emit *e, const IrNode *n);
void emit_backward_node(Emit *e, const IrNode *n, bool *written);
void emit_prologue(Emit *e, bool fwd);

/* emit_mfree.c: forward and backward bodies of a memory-free plan. */
void emit_mfree_bodies(Emit *e, const char *model);
/* ...the RtNet fields of the memory-free report, and the names they point at
 * (written before the RtNet). */
void emit_mfree_net(Emit *e);
void emit_mfree_names(Emit *e);

#endif
