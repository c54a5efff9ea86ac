/* ir_print.c — the IR as text: a header, then one op per line with its
 * inputs, output shape and parameters. */
#include <string.h>
#include "frontend.h"
#include "optable.h"

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

/* c0+a*param... in the shortest forms that read back exactly, then its
 * source in the optimizer's terms: "1.9 (1 + beta)". */
static void coef(FILE *out, const IrGraph *g, const IrCoef *c)
{
    char b[40];
    bool lead = c->c0 != 0 || c->nterms == 0;
    if (lead)
        fputs(op_num(b, sizeof b, c->c0), out);
    for (int i = 0; i < c->nterms; i++, lead = true)
        fprintf(out, "%s%s*%s", c->a[i] < 0 || !lead ? "" : "+", op_num(b, sizeof b, c->a[i]),
                g->params[c->param[i]].name);
    if (c->src)
        fprintf(out, " (%s)", c->src);
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
        const OpInfo *oi = op_info(n->op);
        fprintf(out, "%4d %-7s %-32s (", n->id, oi->text, n->name);
        for (int j = 0; j < n->nin; j++)
            fprintf(out, "%s%d", j ? "," : "", n->in[j]);
        fprintf(out, ") -> %dx%dx%d", n->shape.c, n->shape.h, n->shape.w);
        if ((oi->flags & OPF_ACT) && oi->arg[0])
            fprintf(out, " %s=%g", oi->arg, n->u.act.a);
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
            if (op_info((IrOp)op_find(n->u.exact.phi, OPF_ACT))->arg[0])
                fprintf(out, " a=%g", n->u.exact.alpha);
            param_ref(out, g, "U", n->u.exact.u);
            break;
        case OP_DROPOUT:
            fprintf(out, " p=%g", n->u.dropout.p);
            break;
        default:    /* no attributes beyond the shape */
            break;
        }
        fputc('\n', out);
    }
    fprintf(out, "output %d\n", g->output);
}
