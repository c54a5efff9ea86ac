/* layer.c — one layer of a network, from its atom in the item syntax
 * (`conv3x3(32)`, `leaky_relu(a = 0.1)`, `exact(tanh, 64)`) to a Layer: the
 * name is looked up in the op table, so every op with OPF_LAYER is a layer
 * and every activation of act.def takes its one optional argument the same
 * way. Only the ops with arguments of their own (conv, avgpool, dropout,
 * exact) have a case here. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "layer.h"
#include "optable.h"

#define LAYER_MAX_WIDTH SEMA_MAX_WIDTH

/* An integer constant expression in lo..hi. */
static bool layer_int(Diag *d, const Arg *g, long lo, long hi, const char *what, int *out)
{
    double v;
    if (!sema_const(d, g->value, &v))
        return false;
    if (!(v == floor(v) && v >= (double)lo && v <= (double)hi)) {
        diag_error(d, g->value->span, "%s must be an integer in %ld..%ld", what, lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

/* The activations' names, for messages. */
static const char *layer_act_names(char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < OP_COUNT && len < size; i++)
        if (op_info((IrOp)i)->flags & OPF_ACT)
            len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? ", " : "",
                                    ir_op_name((IrOp)i));
    return buf;
}

/* The argument of activation op: none (its default), one positional value
 * or `NAME = value` with the table's argument name. at is the call for
 * messages. */
static bool layer_act_arg(Diag *d, IrOp op, Span at, Arg **args, int nargs, double *a)
{
    const OpInfo *oi = op_info(op);
    *a = oi->arg_default;
    if (nargs == 0)
        return true;
    if (!oi->arg[0] || nargs > 1) {
        if (oi->arg[0])
            diag_error(d, at, "'%s' takes one argument: %s(%s = %g)", oi->text, oi->text, oi->arg,
                       oi->arg_default);
        else
            diag_error(d, at, "'%s' takes no arguments", oi->text);
        return false;
    }
    const Arg *g = args[0];
    if (g->name && strcmp(g->name, oi->arg) != 0) {
        diag_error(d, g->name_span, "unknown argument '%s' ('%s' takes %s)", g->name, oi->text,
                   oi->arg);
        return false;
    }
    if (!sema_const(d, g->value, a))
        return false;
    if (!(fabs(*a) <= 1e6)) {
        diag_error(d, g->value->span, "%s must be a number in [-1e6, 1e6]", oi->arg);
        return false;
    }
    return true;
}

/* convKxK[(width | ratio = r)]. */
static bool layer_conv(Diag *d, const Atom *at, int ctx, int k1, int k2, Layer *L)
{
    const char *n = at->name;
    L->op = OP_CONV;
    if (k1 != k2 || k1 < 1 || k1 > 11 || k1 % 2 == 0) {
        diag_error(d, at->span, "convolution size must be odd, square and at most 11x11");
        return false;
    }
    L->k = k1;
    if (at->nargs > 1) {
        diag_error(d, at->span, "%s takes at most one argument: a width or ratio = r", n);
        return false;
    }
    if (at->nargs == 1) {
        const Arg *g = at->args[0];
        if (g->name && strcmp(g->name, "ratio") == 0) {
            if (!sema_const(d, g->value, &L->ratio))
                return false;
            if (!(L->ratio > 0 && L->ratio <= 16)) {
                diag_error(d, g->value->span, "ratio must be in (0, 16]");
                return false;
            }
        } else if (g->name) {
            diag_error(d, g->name_span, "unknown argument '%s' (a conv takes a width or ratio = r)", g->name);
            return false;
        } else if (!layer_int(d, g, 1, LAYER_MAX_WIDTH, "width", &L->width)) {
            return false;
        }
    }
    if (ctx == CTX_HEAD) {
        diag_error(d, at->span, "convolutions are not allowed in the head");
        return false;
    }
    return true;
}

/* exact(ACT, m) or exact(ACT(a), m): the theory block. */
static bool layer_exact(Diag *d, const Atom *at, int ctx, Layer *L)
{
    char names[256];
    if (ctx != CTX_GRAD) {
        diag_error(d, at->span, "'exact' is only allowed as the grad block");
        return false;
    }
    const Expr *phi = at->nargs == 2 && !at->args[0]->name ? at->args[0]->value : NULL;
    if (!phi || (phi->kind != EX_NAME && phi->kind != EX_CALL)) {
        diag_error(d, at->span, "exact takes an activation and a width: exact(relu, 64)");
        return false;
    }
    const char *pn = phi->kind == EX_NAME ? phi->u.name : phi->u.call.name;
    int op = op_find(pn, OPF_ACT);
    if (op < 0) {
        diag_error(d, at->args[0]->span, "unknown activation '%s' (exact supports %s)", pn,
                   layer_act_names(names, sizeof names));
        return false;
    }
    if (!layer_act_arg(d, (IrOp)op, phi->span, phi->kind == EX_CALL ? phi->u.call.args : NULL,
                       phi->kind == EX_CALL ? phi->u.call.nargs : 0, &L->a))
        return false;
    snprintf(L->phi, sizeof L->phi, "%s", pn);
    return layer_int(d, at->args[1], 1, LAYER_MAX_WIDTH, "exact width", &L->m);
}

static bool layer_parse(Diag *d, const Atom *at, int ctx, Layer *L)
{
    memset(L, 0, sizeof *L);
    L->span = at->span;
    if (at->kind != AT_NAME && at->kind != AT_CALL) {
        diag_error(d, at->span, "expected a layer name");
        return false;
    }
    const char *n = at->name;
    int k1, k2, nc = 0;
    if (sscanf(n, "conv%dx%d%n", &k1, &k2, &nc) == 2 && n[nc] == 0)
        return layer_conv(d, at, ctx, k1, k2, L);
    int op = op_find(n, OPF_LAYER);
    if (op < 0 || op == OP_CONV) {
        diag_error(d, at->span, "unknown layer '%s'", n);
        return false;
    }
    L->op = (IrOp)op;
    if (op_info(L->op)->flags & OPF_ACT)
        return layer_act_arg(d, L->op, at->span, at->args, at->nargs, &L->a);
    switch (L->op) {
    case OP_AVGPOOL:
        if (at->nargs == 0) {
            L->op = OP_GAP;     /* avgpool without a size pools the whole map */
            return true;
        }
        if (at->nargs != 1 || at->args[0]->name) {
            diag_error(d, at->span, "avgpool takes one size");
            return false;
        }
        return layer_int(d, at->args[0], 1, 64, "pool size", &L->k);
    case OP_DROPOUT:
        if (at->nargs != 1 || at->args[0]->name) {
            diag_error(d, at->span, "dropout takes one probability: dropout(0.2)");
            return false;
        }
        if (!sema_const(d, at->args[0]->value, &L->p))
            return false;
        if (!(L->p >= 0 && L->p < 1)) {
            diag_error(d, at->args[0]->value->span, "dropout probability must be in [0, 1)");
            return false;
        }
        return true;
    case OP_EXACT:
        return layer_exact(d, at, ctx, L);
    default:    /* bn, gap, linear */
        if (at->nargs != 0) {
            diag_error(d, at->span, "'%s' takes no arguments", n);
            return false;
        }
        if (L->op == OP_LINEAR && ctx != CTX_HEAD) {
            diag_error(d, at->span, "'linear' is only allowed in the head");
            return false;
        }
        return true;
    }
}

void layer_parse_list(Diag *d, Arena *a, const Item *it, int ctx, Layer **out, int *n)
{
    *n = 0;
    *out = arena_alloc(a, sizeof(Layer) * (size_t)(it->ngroups + 1));
    if (it->ngroups == 1 && it->groups[0]->natoms == 1 && it->groups[0]->atoms[0]->kind == AT_NAME &&
        strcmp(it->groups[0]->atoms[0]->name, "none") == 0 && ctx != CTX_GRAD && ctx != CTX_HEAD)
        return;
    if (it->ngroups == 0) {
        diag_error(d, it->span, "'%s' needs a list of layers", it->name);
        return;
    }
    for (int i = 0; i < it->ngroups; i++) {
        const Group *g = it->groups[i];
        if (g->natoms != 1) {
            diag_error(d, g->span, "expected one layer between commas");
            continue;
        }
        if (layer_parse(d, g->atoms[0], ctx, &(*out)[*n]))
            (*n)++;
    }
    if (ctx == CTX_GRAD) {
        for (int i = 0; i < *n; i++)
            if ((*out)[i].op == OP_EXACT && *n != 1)
                diag_error(d, (*out)[i].span, "exact(...) must be the whole grad block");
    }
}
