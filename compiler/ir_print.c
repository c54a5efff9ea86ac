/* ir_print.c — the IR as text: a header, then one op per line with its
 * inputs, output shape and parameters. */
#include <string.h>
#include "frontend.h"

static const char *const op_text[] = {
#define OP(name, text, np) text,
#include "ops.def"
#undef OP
};

const char *ir_op_name(IrOp op)
{
    return op >= 0 && op < OP_COUNT ? op_text[op] : "?";
}

static void param_ref(FILE *out, const IrGraph *g, const char *role, int p)
{
    if (p < 0)
        return;
    const IrParam *q = &g->params[p];
    fprintf(out, " %s=%s[", role, q->name);
    for (int i = 0; i < q->ndim; i++)
        fprintf(out, "%s%d", i ? "x" : "", q->dims[i]);
    fputc(']', out);
}

static void coef(FILE *out, const IrGraph *g, const IrCoef *c)
{
    fprintf(out, "%.17g", c->c0);
    for (int i = 0; i < c->nterms; i++)
        fprintf(out, "%+.17g*%s", c->a[i], g->params[c->param[i]].name);
}

void ir_print(FILE *out, const IrGraph *g)
{
    size_t total = 0;
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].trainable)
            total += g->params[i].numel;
    fprintf(out, "# network %s from %s: input %dx%dx%d, %d classes\n", g->name, g->spec_path,
            g->input.c, g->input.h, g->input.w, g->classes);
    fprintf(out, "# %d ops, %d parameter tensors, %zu trainable values\n", g->nnodes, g->nparams, total);
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        fprintf(out, "%4d %-7s %-32s (", n->id, ir_op_name(n->op), n->name);
        for (int j = 0; j < n->nin; j++)
            fprintf(out, "%s%d", j ? "," : "", n->in[j]);
        fprintf(out, ") -> %dx%dx%d", n->shape.c, n->shape.h, n->shape.w);
        switch (n->op) {
        case OP_CONV:
            fprintf(out, " k%d s%d p%d", n->u.conv.k, n->u.conv.stride, n->u.conv.pad);
            param_ref(out, g, "w", n->u.conv.w);
            break;
        case OP_BN:
            param_ref(out, g, "gamma", n->u.bn.gamma);
            param_ref(out, g, "beta", n->u.bn.beta);
            break;
        case OP_SUM:
            fputs(" coef ", out);
            for (int j = 0; j < n->nin; j++) {
                if (j)
                    fputs(", ", out);
                coef(out, g, &n->u.sum.coef[j]);
            }
            break;
        case OP_PAD:
            fprintf(out, " stride %d", n->u.pad.stride);
            break;
        case OP_AVGPOOL:
            fprintf(out, " k%d s%d", n->u.pool.k, n->u.pool.stride);
            break;
        case OP_LINEAR:
            param_ref(out, g, "w", n->u.linear.w);
            param_ref(out, g, "b", n->u.linear.b);
            break;
        case OP_EXACT:
            fprintf(out, " %s m=%d", n->u.exact.phi, n->u.exact.m);
            param_ref(out, g, "U", n->u.exact.u);
            break;
        case OP_DROPOUT:
            fprintf(out, " p=%g", n->u.dropout.p);
            break;
        case OP_INPUT: case OP_RELU: case OP_CONCAT: case OP_GAP: case OP_GRAD: case OP_COUNT:
            break;
        }
        fputc('\n', out);
    }
    fprintf(out, "output %d\n", g->output);
}
