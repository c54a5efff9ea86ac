/* optable.c — the op table (optable.h): the rows of ops.def with the
 * activation arguments of act.def and each op's multiply-add count. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "optable.h"
#include "rt.h"

static IrShape in_shape(const IrGraph *g, const IrNode *n)
{
    return n->nin ? g->nodes[n->in[0]].shape : n->shape;
}

static long long madds_conv(const IrGraph *g, const IrNode *n)
{
    return (long long)ir_numel(n->shape) * in_shape(g, n).c * n->u.conv.k * n->u.conv.k;
}

static long long madds_linear(const IrGraph *g, const IrNode *n)
{
    return (long long)ir_numel(in_shape(g, n)) * n->shape.c;
}

/* a = z U, then z - phi(a) U^T. */
static long long madds_exact(const IrGraph *g, const IrNode *n)
{
    return 2LL * (long long)ir_numel(in_shape(g, n)) * n->u.exact.m;
}

static const OpInfo op_table[OP_COUNT] = {
#define OP(name, text, flags, madds) [OP_##name] = { text, flags, "", 0, -1, false, madds },
#define ACT(name, NAME, arg, def, kernels, kink)                                                 \
    [OP_##NAME] = { #name, OPF_LAYER | OPF_ACT | ((kernels) ? OPF_BWD_IN : OPF_BWD_OUT),     \
                    arg, def, RT_ACT_##NAME, kink, NULL },
#include "ops.def"
#undef ACT
#undef OP
};

const OpInfo *op_info(IrOp op)
{
    return &op_table[(unsigned)op < OP_COUNT ? op : OP_INPUT];
}

const char *ir_op_name(IrOp op)
{
    return (unsigned)op < OP_COUNT ? op_table[op].text : "?";
}

int op_find(const char *name, unsigned need)
{
    for (int i = 0; i < OP_COUNT; i++)
        if ((op_table[i].flags & need) == need && strcmp(op_table[i].text, name) == 0)
            return i;
    return -1;
}

static bool op_has_learned(const IrNode *n)
{
    if (n->op != OP_SUM)
        return false;
    for (int i = 0; i < n->nin; i++)
        if (n->u.sum.coef[i].nterms > 0)
            return true;
    return false;
}

bool op_bwd_reads_input(const IrNode *n)
{
    return (op_info(n->op)->flags & OPF_BWD_IN) || op_has_learned(n);
}

bool op_bwd_reads_output(const IrNode *n)
{
    return (op_info(n->op)->flags & OPF_BWD_OUT) != 0;
}

size_t op_branch_len(const IrNode *n)
{
    if (op_info(n->op)->kink)
        return ir_numel(n->shape);
    if (n->op == OP_EXACT) {
        int phi = op_find(n->u.exact.phi, OPF_ACT);
        return phi >= 0 && op_info((IrOp)phi)->kink ? (size_t)n->u.exact.m : 0;
    }
    return 0;
}

bool op_has_params(const IrNode *n)
{
    return (op_info(n->op)->flags & OPF_PARAMS) || op_has_learned(n);
}

const char *op_num(char *buf, size_t size, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return buf;
    }
    return buf;     /* NaN: %.17g already written */
}
