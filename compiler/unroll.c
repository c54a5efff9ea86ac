/* unroll.c — optimizer x stages -> IR graph (ir.h). Each tensor assignment
 * becomes at most one OP_SUM; scalar sequences and fixed parameters are
 * folded; learned parameters become one PK_SCALAR per step referenced by
 * IrCoef terms; grad(.) becomes the network's block (or OP_GRAD when the
 * optimizer is unrolled alone for analyze). It reads the spec as sema and
 * network.c resolved it (Expr.ref/off/abs, OptInfo.values, StageInfo.pv)
 * and calls back into neither. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"
#include "optable.h"

#define MAX_NODES 2000000
#define MAX_ELEMS (1L << 28)

typedef struct { int node; IrCoef c; } Term;
typedef struct { bool tensor; IrCoef s; Term *t; int n; } Val;

typedef struct {
    Arena *a;
    Diag *d;
    const Spec *s;
    const NetInfo *ni;          /* NULL: optimizer alone (OP_GRAD) */
    IrNode *nodes;
    int nnodes, capn;
    IrParam *params;
    int nparams, capp;
    bool failed;
    /* the stage being unrolled */
    int stage, step, stride, width;
    int at_stage, at_step;      /* stamped on new nodes (IrNode.stage/step) */
    bool transition;
    IrShape old_shape, new_shape;
    int sc_from[64], sc_to[64], nsc;   /* shortcut memo: older state -> its shortcut */
    int sc_weight;
    int grad_occ;
    const OptInfo *oi;
    const PVal *pv;             /* per optimizer parameter: its value here */
    int *lparam;                /* per optimizer parameter: this step's PK_SCALAR */
    Val **vals;                 /* per sequence, per index */
    bool **set;
} U;

static bool same_shape(IrShape a, IrShape b)
{
    return a.c == b.c && a.h == b.h && a.w == b.w;
}

static const char *shape_str(U *u, IrShape s)
{
    return arena_printf(u->a, "%dx%dx%d", s.c, s.h, s.w);
}

static bool fail(U *u, Span sp, const char *msg)
{
    diag_error(u->d, sp, "%s", msg);
    u->failed = true;
    return false;
}

static int add_node(U *u, IrOp op, const char *name, int nin, const int *in, IrShape shape, Span sp)
{
    if (u->nnodes >= MAX_NODES) {
        if (!u->failed)
            diag_error(u->d, sp, "network too large to unroll (more than %d ops)", MAX_NODES);
        u->failed = true;
        return -1;
    }
    if ((long)shape.c * shape.h * shape.w > MAX_ELEMS || shape.c < 1 || shape.h < 1 || shape.w < 1) {
        if (!u->failed)
            diag_error(u->d, sp, "tensor shape %dx%dx%d is out of range", shape.c, shape.h, shape.w);
        u->failed = true;
        return -1;
    }
    if (u->nnodes == u->capn) {
        int cap = u->capn ? u->capn * 2 : 256;
        IrNode *n = arena_alloc(u->a, sizeof(IrNode) * (size_t)cap);
        if (u->nnodes)
            memcpy(n, u->nodes, sizeof(IrNode) * (size_t)u->nnodes);
        u->nodes = n;
        u->capn = cap;
    }
    IrNode *n = &u->nodes[u->nnodes];
    n->id = u->nnodes;
    n->op = op;
    n->name = name;
    n->stage = u->at_stage;
    n->step = u->at_step;
    n->nin = nin;
    int *ins = arena_alloc(u->a, sizeof(int) * (size_t)(nin + 1));
    if (nin)
        memcpy(ins, in, sizeof(int) * (size_t)nin);
    n->in = ins;
    n->shape = shape;
    return u->nnodes++;
}

/* A parameter; when lookup is set an existing one of the same name is
 * returned (shared weights are one index named by several nodes). */
static int add_param(U *u, const char *name, IrParamKind kind, int ndim, const int *dims,
                     IrInit init, int fan_in, bool lookup)
{
    if (lookup)
        for (int i = 0; i < u->nparams; i++)
            if (strcmp(u->params[i].name, name) == 0)
                return i;
    if (u->nparams == u->capp) {
        int cap = u->capp ? u->capp * 2 : 256;
        IrParam *p = arena_alloc(u->a, sizeof(IrParam) * (size_t)cap);
        if (u->nparams)
            memcpy(p, u->params, sizeof(IrParam) * (size_t)u->nparams);
        u->params = p;
        u->capp = cap;
    }
    IrParam *p = &u->params[u->nparams];
    p->name = name;
    p->kind = kind;
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->dims[i] = dims[i];
        p->numel *= (size_t)dims[i];
    }
    p->init = init;
    p->fan_in = fan_in;
    p->trainable = kind != PK_BN_MEAN && kind != PK_BN_VAR;
    return u->nparams++;
}

/* ---- layers ------------------------------------------------------------- */

typedef struct {
    const char *node_prefix;    /* "stem", "stage1.step0.grad", "head" */
    const char *param_prefix;   /* the same, or a step-free one when shared */
    bool lookup;
    int width;                  /* convs without a width */
    int stride;                 /* the first conv's stride */
} LayerCtx;

/* Node names number each kind within a list: conv0, conv1, bn0, relu0...
 * (pooling ops share one count). */
static int apply_layers(U *u, const Layer *L, int n, int cur, LayerCtx *lc)
{
    int nconv = 0, nbn = 0, npool = 0, ndrop = 0, nact[OP_COUNT] = { 0 };
    for (int i = 0; i < n && cur >= 0; i++) {
        IrShape in = u->nodes[cur].shape, out = in;
        const Layer *l = &L[i];
        int id;
        if (op_info(l->op)->flags & OPF_ACT) {     /* pointwise: the shape is kept */
            id = add_node(u, l->op, arena_printf(u->a, "%s.%s%d", lc->node_prefix, ir_op_name(l->op), nact[l->op]++), 1,
                          &cur, out, l->span);
            if (id >= 0)
                u->nodes[id].u.act.a = l->a;
            cur = id;
            continue;
        }
        switch (l->op) {
        case OP_BN: {
            const char *nm = arena_printf(u->a, "%s.bn%d", lc->node_prefix, nbn);
            const char *pp = arena_printf(u->a, "%s.bn%d", lc->param_prefix, nbn++);
            int dims[1] = { in.c };
            int g = add_param(u, arena_printf(u->a, "%s.weight", pp), PK_BN_GAMMA, 1, dims, INIT_ONES, 0, lc->lookup);
            int b = add_param(u, arena_printf(u->a, "%s.bias", pp), PK_BN_BETA, 1, dims, INIT_ZEROS, 0, lc->lookup);
            int m = add_param(u, arena_printf(u->a, "%s.running_mean", pp), PK_BN_MEAN, 1, dims, INIT_ZEROS, 0, lc->lookup);
            int v = add_param(u, arena_printf(u->a, "%s.running_var", pp), PK_BN_VAR, 1, dims, INIT_ONES, 0, lc->lookup);
            id = add_node(u, OP_BN, nm, 1, &cur, out, l->span);
            if (id >= 0)
                u->nodes[id].u.bn = (__typeof__(u->nodes[id].u.bn)){ g, b, m, v, 1e-5, 0.1 };
            break;
        }
        case OP_CONV: {
            int cout = l->width ? l->width : l->ratio > 0 ? (int)floor(in.c * l->ratio) : lc->width;
            if (cout < 1)
                cout = 1;
            int s = lc->stride;
            lc->stride = 1;
            out = (IrShape){ cout, (in.h - 1) / s + 1, (in.w - 1) / s + 1 };
            int dims[4] = { cout, in.c, l->k, l->k };
            int w = add_param(u, arena_printf(u->a, "%s.conv%d.weight", lc->param_prefix, nconv), PK_WEIGHT, 4, dims,
                              INIT_KAIMING, in.c * l->k * l->k, lc->lookup);
            id = add_node(u, OP_CONV, arena_printf(u->a, "%s.conv%d", lc->node_prefix, nconv++), 1, &cur, out, l->span);
            if (id >= 0)
                u->nodes[id].u.conv = (__typeof__(u->nodes[id].u.conv)){ cout, l->k, s, l->k / 2, w };
            break;
        }
        case OP_AVGPOOL:
            if (in.h < l->k || in.w < l->k) {
                diag_error(u->d, l->span, "avgpool(%d) on a %dx%d map", l->k, in.h, in.w);
                u->failed = true;
                return -1;
            }
            out = (IrShape){ in.c, in.h / l->k, in.w / l->k };
            id = add_node(u, OP_AVGPOOL, arena_printf(u->a, "%s.avgpool%d", lc->node_prefix, npool++), 1, &cur, out, l->span);
            if (id >= 0)
                u->nodes[id].u.pool = (__typeof__(u->nodes[id].u.pool)){ l->k, l->k };
            break;
        case OP_GAP:
            out = (IrShape){ in.c, 1, 1 };
            id = add_node(u, OP_GAP, arena_printf(u->a, "%s.gap%d", lc->node_prefix, npool++), 1, &cur, out, l->span);
            break;
        case OP_DROPOUT:
            id = add_node(u, OP_DROPOUT, arena_printf(u->a, "%s.dropout%d", lc->node_prefix, ndrop++), 1, &cur, out, l->span);
            if (id >= 0)
                u->nodes[id].u.dropout.p = l->p;
            break;
        case OP_LINEAR: {
            int classes = u->ni->classes;
            int fan = in.c * in.h * in.w;
            int wd[2] = { classes, fan }, bd[1] = { classes };
            int w = add_param(u, arena_printf(u->a, "%s.linear.weight", lc->param_prefix), PK_WEIGHT, 2, wd, INIT_UNIFORM, fan, false);
            int b = add_param(u, arena_printf(u->a, "%s.linear.bias", lc->param_prefix), PK_BIAS, 1, bd, INIT_UNIFORM, fan, false);
            out = (IrShape){ classes, 1, 1 };
            id = add_node(u, OP_LINEAR, arena_printf(u->a, "%s.linear", lc->node_prefix), 1, &cur, out, l->span);
            if (id >= 0)
                u->nodes[id].u.linear = (__typeof__(u->nodes[id].u.linear)){ w, b };
            break;
        }
        case OP_EXACT: {
            int dsz = in.c * in.h * in.w;
            int dims[2] = { dsz, l->m };
            /* One U for the whole network (per state size, should stages differ). */
            const char *pn = arena_printf(u->a, "grad.exact.U");
            for (int i2 = 0; i2 < u->nparams; i2++)
                if (strcmp(u->params[i2].name, pn) == 0 && u->params[i2].dims[0] != dsz)
                    pn = arena_printf(u->a, "grad.exact%d.U", dsz);
            int w = add_param(u, pn, PK_WEIGHT, 2, dims, INIT_UNIFORM, dsz, true);
            id = add_node(u, OP_EXACT, arena_printf(u->a, "%s.exact", lc->node_prefix), 1, &cur, out, l->span);
            if (id >= 0) {
                u->nodes[id].u.exact.u = w;
                u->nodes[id].u.exact.m = l->m;
                strcpy(u->nodes[id].u.exact.phi, l->phi);
                u->nodes[id].u.exact.alpha = l->a;
            }
            break;
        }
        default:
            DIAG_BUG("layer op %d", (int)l->op);
        }
        cur = id;
    }
    return cur;
}

/* ---- values ------------------------------------------------------------- */

static IrCoef cconst(double v)
{
    IrCoef c = { 0 };
    c.c0 = v;
    return c;
}

static bool coef_zero(const IrCoef *c)
{
    return c->c0 == 0 && c->nterms == 0;
}

static void coef_norm(IrCoef *c)
{
    int j = 0;
    for (int i = 0; i < c->nterms; i++)
        if (c->a[i] != 0) {
            c->param[j] = c->param[i];
            c->a[j++] = c->a[i];
        }
    c->nterms = j;
}

/* --- coefficient source text (IrCoef.src) ---
 * Built alongside the value when a parameter takes part, so the emitted
 * code can say where a number comes from; NULL (a plain number) otherwise,
 * and when it would grow past COEF_SRC_MAX (a parameter inside a long
 * sequence recurrence). */
#define COEF_SRC_MAX 64

/* c's text: its src, or its value when it is a plain number. */
static const char *coef_text(U *u, const IrCoef *c)
{
    return c->src ? c->src : arena_printf(u->a, "%g", c->c0);
}

static bool coef_compound(const char *s)
{
    return strstr(s, " + ") || strstr(s, " - ");
}

static const char *coef_src_keep(const char *s)
{
    return s && strlen(s) <= COEF_SRC_MAX ? s : NULL;
}

/* The text of a + sb * b (sb is 1 or -1 in every caller that has text). */
static const char *coef_src_add(U *u, const IrCoef *a, const IrCoef *b, double sb)
{
    if (!a->src && !b->src)
        return NULL;
    bool a0 = !a->src && a->c0 == 0 && a->nterms == 0;
    const char *bt = coef_text(u, b);
    if (sb != 1 && sb != -1)
        return NULL;
    if (a0)
        return sb > 0 ? bt : arena_printf(u->a, coef_compound(bt) ? "-(%s)" : "-%s", bt);
    return arena_printf(u->a, sb > 0 || !coef_compound(bt) ? "%s %c %s" : "%s %c (%s)", coef_text(u, a),
               sb > 0 ? '+' : '-', bt);
}

/* The text of a * b. */
static const char *coef_src_mul(U *u, const IrCoef *a, const IrCoef *b)
{
    if (!a->src && !b->src)
        return NULL;
    const IrCoef *x = a->src ? a : b, *k = a->src ? b : a;   /* k may be text too */
    if (!k->src && k->c0 == 0 && k->nterms == 0)
        return NULL;                                        /* 0 * beta is 0 */
    if (!k->src && k->c0 == 1)
        return x->src;
    if (!k->src && k->c0 == -1)
        return arena_printf(u->a, coef_compound(x->src) ? "-(%s)" : "-%s", x->src);
    const char *at = coef_text(u, a), *bt = coef_text(u, b);
    return arena_printf(u->a, "%s%s%s * %s%s%s", coef_compound(at) ? "(" : "", at, coef_compound(at) ? ")" : "",
               coef_compound(bt) ? "(" : "", bt, coef_compound(bt) ? ")" : "");
}

static bool coef_add(U *u, Span sp, IrCoef a, const IrCoef *b, double sb, IrCoef *out)
{
    const char *src = coef_src_keep(coef_src_add(u, &a, b, sb));
    a.c0 += sb * b->c0;
    a.src = src;
    for (int i = 0; i < b->nterms; i++) {
        int j = 0;
        while (j < a.nterms && a.param[j] != b->param[i])
            j++;
        if (j == a.nterms) {
            if (a.nterms == IR_COEF_TERMS)
                return fail(u, sp, "coefficient involves too many learned parameters");
            a.param[j] = b->param[i];
            a.a[j] = 0;
            a.nterms++;
        }
        a.a[j] += sb * b->a[i];
    }
    coef_norm(&a);
    *out = a;
    return true;
}

static bool coef_mul(U *u, Span sp, const IrCoef *a, const IrCoef *b, IrCoef *out)
{
    if (a->nterms && b->nterms)
        return fail(u, sp, "product of learned parameters is not linear");
    const IrCoef *k = a->nterms ? b : a, *v = a->nterms ? a : b;
    IrCoef r = *v;
    r.src = coef_src_keep(coef_src_mul(u, a, b));
    r.c0 *= k->c0;
    for (int i = 0; i < r.nterms; i++)
        r.a[i] *= k->c0;
    coef_norm(&r);
    *out = r;
    return true;
}

static bool coef_finite(U *u, Span sp, const IrCoef *c)
{
    bool ok = isfinite(c->c0);
    for (int i = 0; i < c->nterms; i++)
        ok = ok && isfinite(c->a[i]);
    return ok ? true : fail(u, sp, "value is not finite");
}

/* a + sb * b for tensor values, merging terms on the same node. */
static bool tadd(U *u, Span sp, const Val *a, const Val *b, double sb, Val *out)
{
    Term *t = arena_alloc(u->a, sizeof(Term) * (size_t)(a->n + b->n + 1));
    int n = a->n;
    if (n)
        memcpy(t, a->t, sizeof(Term) * (size_t)n);
    for (int i = 0; i < b->n; i++) {
        int j = 0;
        while (j < n && t[j].node != b->t[i].node)
            j++;
        if (j == n) {
            t[n].node = b->t[i].node;
            t[n++].c = cconst(0);
        }
        if (!coef_add(u, sp, t[j].c, &b->t[i].c, sb, &t[j].c))
            return false;
    }
    *out = (Val){ .tensor = true, .t = t, .n = n };
    return true;
}

/* k * t for a tensor value t and a scalar coefficient k. */
static bool tscale(U *u, Span sp, const Val *t, const IrCoef *k, Val *out)
{
    *out = (Val){ .tensor = true, .t = arena_alloc(u->a, sizeof(Term) * (size_t)(t->n + 1)), .n = t->n };
    for (int i = 0; i < t->n; i++) {
        out->t[i].node = t->t[i].node;
        if (!coef_mul(u, sp, &t->t[i].c, k, &out->t[i].c) || !coef_finite(u, sp, &out->t[i].c))
            return false;
    }
    return true;
}

static IrShape nshape(U *u, int node)
{
    return u->nodes[node].shape;
}

/* The shortcut of an older state at a shape-changing stage start: one node
 * per older state, memoised. */
static int shortcut(U *u, int node, Span sp)
{
    for (int i = 0; i < u->nsc; i++)
        if (u->sc_from[i] == node)
            return u->sc_to[i];
    if (u->nsc == 64) {
        fail(u, sp, "too many older states cross a stride");
        return -1;
    }
    IrShape in = nshape(u, node), out = u->new_shape;
    int id;
    if (u->ni->shortcut == SC_PAD) {
        if (out.c < in.c) {
            fail(u, sp, "a pad shortcut cannot reduce channels (use shortcut = conv1x1)");
            return -1;
        }
        id = add_node(u, OP_PAD, arena_printf(u->a, "stage%d.shortcut%d", u->stage, u->nsc), 1, &node, out, sp);
        if (id >= 0)
            u->nodes[id].u.pad.stride = u->stride;
    } else {
        if (u->sc_weight < 0) {
            int dims[4] = { out.c, in.c, 1, 1 };
            u->sc_weight = add_param(u, arena_printf(u->a, "stage%d.shortcut.weight", u->stage), PK_WEIGHT, 4, dims,
                                     INIT_KAIMING, in.c, false);
        }
        id = add_node(u, OP_CONV, arena_printf(u->a, "stage%d.shortcut%d", u->stage, u->nsc), 1, &node, out, sp);
        if (id >= 0)
            u->nodes[id].u.conv = (__typeof__(u->nodes[id].u.conv)){ out.c, 1, u->stride, 0, u->sc_weight };
    }
    u->sc_from[u->nsc] = node;
    u->sc_to[u->nsc++] = id;
    return id;
}

/* Turns a linear combination into one node: none if it is a single input
 * with coefficient exactly 1, else an OP_SUM. Returns the node, -1 for the
 * zero tensor, -2 on error (reported at sp). */
static int materialize(U *u, const Val *v, Span sp, const char *name)
{
    Term *t = arena_alloc(u->a, sizeof(Term) * (size_t)(v->n + 1));
    int n = 0;
    for (int i = 0; i < v->n; i++)
        if (!coef_zero(&v->t[i].c))
            t[n++] = v->t[i];
    if (n == 0)
        return -1;
    bool mixed = false;
    for (int i = 1; i < n; i++)
        mixed |= !same_shape(nshape(u, t[i].node), nshape(u, t[0].node));
    if (mixed && u->transition) {
        Val a = { .tensor = true }, r;
        for (int i = 0; i < n; i++) {
            Term x = t[i];
            if (same_shape(nshape(u, x.node), u->old_shape) && (x.node = shortcut(u, x.node, sp)) < 0)
                return -2;
            Val one = { .tensor = true, .t = &x, .n = 1 };
            if (!tadd(u, sp, &a, &one, 1, &r))
                return -2;
            a = r;
        }
        t = a.t;
        n = a.n;
    }
    for (int i = 1; i < n; i++)
        if (!same_shape(nshape(u, t[i].node), nshape(u, t[0].node))) {
            diag_error(u->d, sp, "shape mismatch: %s and %s", shape_str(u, nshape(u, t[0].node)),
                       shape_str(u, nshape(u, t[i].node)));
            u->failed = true;
            return -2;
        }
    if (n == 1 && t[0].c.nterms == 0 && t[0].c.c0 == 1)
        return t[0].node;
    int *in = arena_alloc(u->a, sizeof(int) * (size_t)n);
    IrCoef *c = arena_alloc(u->a, sizeof(IrCoef) * (size_t)n);
    for (int i = 0; i < n; i++) {
        in[i] = t[i].node;
        c[i] = t[i].c;
    }
    int id = add_node(u, OP_SUM, name, n, in, nshape(u, t[0].node), sp);
    if (id < 0)
        return -2;
    u->nodes[id].u.sum.coef = c;
    return id;
}

static Val node_val(U *u, int node)
{
    Val v = { .tensor = true };
    if (node >= 0) {
        v.t = arena_alloc(u->a, sizeof(Term));
        v.t[0].node = node;
        v.t[0].c = cconst(1);
        v.n = 1;
    }
    return v;
}

static const char *step_prefix(U *u)
{
    return u->ni ? arena_printf(u->a, "stage%d.step%d", u->stage, u->step) : arena_printf(u->a, "step%d", u->step);
}

/* grad(v): the network's block (own weights, or shared by the stage). */
static int grad_block(U *u, int in, Span sp)
{
    int occ = u->grad_occ++;
    const char *g = occ ? arena_printf(u->a, "grad%d", occ) : "grad";
    const char *np = arena_printf(u->a, "%s.%s", step_prefix(u), g);
    if (!u->ni)
        return add_node(u, OP_GRAD, np, 1, &in, nshape(u, in), sp);
    const NetInfo *ni = u->ni;
    bool strided = u->transition && same_shape(nshape(u, in), u->old_shape);
    LayerCtx lc = { np, np, false, u->width, strided ? u->stride : 1 };
    if (ni->share && !strided) {
        lc.param_prefix = arena_printf(u->a, "stage%d.%s", u->stage, g);
        lc.lookup = true;
    }
    return apply_layers(u, ni->grad, ni->ngrad, in, &lc);
}

static bool eval(U *u, const Expr *e, Val *out);

static bool eval_scalar_call(U *u, const Expr *e, Val *out)
{
    double a[2];
    for (int i = 0; i < e->u.call.nargs; i++) {
        Val v;
        if (!eval(u, e->u.call.args[i]->value, &v))
            return false;
        if (v.s.nterms)
            return fail(u, e->u.call.args[i]->value->span, "a learned parameter cannot go through sqrt or pow");
        a[i] = v.s.c0;
    }
    *out = (Val){ .s = cconst(strcmp(e->u.call.name, "sqrt") == 0 ? sqrt(a[0]) : pow(a[0], a[1])) };
    return coef_finite(u, e->span, &out->s);
}

static bool eval(U *u, const Expr *e, Val *out)
{
    Val a, b;
    memset(out, 0, sizeof *out);
    switch (e->kind) {
    case EX_NUM:
        out->s = cconst(e->u.num);
        return true;
    case EX_NAME: {
        int pi = e->ref;
        if (pi == AST_STEP) {
            out->s = cconst(u->step);
            return true;
        }
        if (pi < 0 || pi >= u->oi->decl->nparams)
            DIAG_BUG("unresolved name %s", e->u.name);
        if (u->pv[pi].learned) {
            if (u->lparam[pi] < 0)
                return fail(u, e->span, "a learned parameter cannot be used in an initial value");
            out->s.nterms = 1;
            out->s.param[0] = u->lparam[pi];
            out->s.a[0] = 1;
        } else {
            out->s = cconst(u->pv[pi].value);
        }
        out->s.src = e->u.name;
        return true;
    }
    case EX_INDEX: {
        int si = e->ref;
        if (si < 0 || si >= u->oi->nseqs)
            DIAG_BUG("unresolved sequence %s", e->u.index.name);
        int j = e->abs ? e->off : u->step + e->off;
        if (j < 0)
            j = 0;
        if (!u->set[si][j])
            DIAG_BUG("%s[%d] read before it is set", e->u.index.name, j);
        *out = u->vals[si][j];
        return true;
    }
    case EX_CALL: {
        const char *f = e->u.call.name;
        if (strcmp(f, "sqrt") == 0 || strcmp(f, "pow") == 0)
            return eval_scalar_call(u, e, out);
        int n = e->u.call.nargs;
        int *in = arena_alloc(u->a, sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) {
            const Expr *x = e->u.call.args[i]->value;
            if (!eval(u, x, &a))
                return false;
            in[i] = materialize(u, &a, x->span, arena_printf(u->a, "%s.%s.in%d", step_prefix(u), f, i));
            if (in[i] == -2)
                return false;
            if (in[i] == -1)
                return fail(u, x->span, "this argument is identically zero");
        }
        int id;
        if (f[0] == 'g') {
            id = grad_block(u, in[0], e->span);
        } else {
            IrShape s = nshape(u, in[0]);
            for (int i = 1; i < n; i++) {
                IrShape t = nshape(u, in[i]);
                if (t.h != s.h || t.w != s.w) {
                    diag_error(u->d, e->u.call.args[i]->value->span,
                               "concat of %s and %s: spatial sizes differ", shape_str(u, s), shape_str(u, t));
                    u->failed = true;
                    return false;
                }
                s.c += t.c;
            }
            id = add_node(u, OP_CONCAT, arena_printf(u->a, "%s.concat", step_prefix(u)), n, in, s, e->span);
        }
        if (id < 0) {
            u->failed = true;
            return false;
        }
        *out = node_val(u, id);
        return true;
    }
    case EX_NEG:
        if (!eval(u, e->u.bin.a, &a))
            return false;
        if (a.tensor)
            return tadd(u, e->span, &(Val){ .tensor = true }, &a, -1, out);
        out->s = cconst(0);
        return coef_add(u, e->span, out->s, &a.s, -1, &out->s);
    case EX_ADD: case EX_SUB: {
        double sg = e->kind == EX_ADD ? 1 : -1;
        if (!eval(u, e->u.bin.a, &a) || !eval(u, e->u.bin.b, &b))
            return false;
        if (a.tensor != b.tensor)
            return fail(u, e->span, "cannot mix a tensor and a scalar");
        if (a.tensor)
            return tadd(u, e->span, &a, &b, sg, out);
        return coef_add(u, e->span, a.s, &b.s, sg, &out->s) && coef_finite(u, e->span, &out->s);
    }
    case EX_MUL: {
        if (!eval(u, e->u.bin.a, &a) || !eval(u, e->u.bin.b, &b))
            return false;
        if (a.tensor && b.tensor)
            return fail(u, e->span, "product of two tensors is not linear");
        if (!a.tensor && !b.tensor)
            return coef_mul(u, e->span, &a.s, &b.s, &out->s) && coef_finite(u, e->span, &out->s);
        return a.tensor ? tscale(u, e->span, &a, &b.s, out) : tscale(u, e->span, &b, &a.s, out);
    }
    case EX_DIV: {
        if (!eval(u, e->u.bin.a, &a) || !eval(u, e->u.bin.b, &b))
            return false;
        if (b.tensor)
            return fail(u, e->u.bin.b->span, "division by a tensor is not linear");
        if (b.s.nterms)
            return fail(u, e->u.bin.b->span, "division by a learned parameter is not linear");
        if (b.s.c0 == 0)
            return fail(u, e->u.bin.b->span, "division by zero");
        IrCoef inv = cconst(1 / b.s.c0);
        if (b.s.src)
            inv.src = coef_src_keep(arena_printf(u->a, coef_compound(b.s.src) ? "1 / (%s)" : "1 / %s", b.s.src));
        if (!a.tensor)
            return coef_mul(u, e->span, &a.s, &inv, &out->s) && coef_finite(u, e->span, &out->s);
        return tscale(u, e->span, &a, &inv, out);
    }
    }
    DIAG_BUG("expression kind %d", (int)e->kind);
}

/* Unrolls one stage of steps steps from node x0 with the parameter values
 * pv (resolved by sema); returns the output node (x[steps]) or -1 on error. */
static int run_stage(U *u, int opt, const PVal *pv, int steps, int x0, Span sp)
{
    const OptInfo *oi = &u->s->opts[opt];
    const OptDecl *o = oi->decl;
    u->oi = oi;
    u->pv = pv;
    u->lparam = arena_alloc(u->a, sizeof(int) * (size_t)(o->nparams + 1));
    u->vals = arena_alloc(u->a, sizeof(Val *) * (size_t)oi->nseqs);
    u->set = arena_alloc(u->a, sizeof(bool *) * (size_t)oi->nseqs);
    for (int i = 0; i < oi->nseqs; i++) {
        u->vals[i] = arena_alloc(u->a, sizeof(Val) * (size_t)(steps + 2));
        u->set[i] = arena_alloc(u->a, sizeof(bool) * (size_t)(steps + 2));
    }
    u->vals[oi->state][0] = node_val(u, x0);
    u->set[oi->state][0] = true;
    for (int i = 0; i < o->nparams; i++)
        u->lparam[i] = -1;
    u->step = 0;
    for (int i = 0; i < o->nstmts; i++) {
        if (oi->stmt_kind[i] != SK_INIT)
            continue;
        int si = oi->stmt_seq[i];
        Val v;
        if (!eval(u, o->stmts[i]->rhs, &v))
            return -1;
        if (oi->seqs[si].tensor)
            v = (Val){ .tensor = true };
        u->vals[si][0] = v;
        u->set[si][0] = true;
    }
    for (int k = 0; k < steps; k++) {
        u->step = k;
        u->at_step = k;
        u->grad_occ = 0;
        for (int i = 0; i < o->nparams; i++) {
            if (!u->pv[i].learned)
                continue;
            int dims[1] = { 1 };
            const char *nm = arena_printf(u->a, "%s.%s", step_prefix(u), o->params[i]->name);
            u->lparam[i] = add_param(u, nm, PK_SCALAR, 1, dims, INIT_CONST, 0, false);
            u->params[u->lparam[i]].init_value = u->pv[i].value;
        }
        for (int i = 0; i < o->nstmts; i++) {
            if (oi->stmt_kind[i] != SK_UPDATE)
                continue;
            const Stmt *st = o->stmts[i];
            int si = oi->stmt_seq[i];
            const Seq *sq = &oi->seqs[si];
            int j = k + sq->off;
            Val v;
            if (!eval(u, st->rhs, &v))
                return -1;
            if (sq->tensor) {
                const char *nm = u->ni ? arena_printf(u->a, "stage%d.%s%d", u->stage, sq->name, j) : arena_printf(u->a, "%s%d", sq->name, j);
                int id = materialize(u, &v, st->rhs->span, nm);
                if (id == -2)
                    return -1;
                v = node_val(u, id);
            } else if (v.s.nterms) {
                return fail(u, st->rhs->span, "a scalar sequence cannot depend on a learned parameter");
            }
            u->vals[si][j] = v;
            u->set[si][j] = true;
        }
    }
    u->at_step = -1;
    const Val *xo = &u->vals[oi->state][steps];
    if (xo->n == 0)
        return fail(u, sp, "the stage output is identically zero"), -1;
    return xo->t[0].node;
}

static IrGraph *finish(U *u, IrGraph *g, int output)
{
    if (u->failed)
        return NULL;
    g->nodes = u->nodes;
    g->nnodes = u->nnodes;
    g->params = u->params;
    g->nparams = u->nparams;
    g->output = output;
    return g;
}

IrGraph *unroll_network(Arena *a, const Spec *s, int net, Diag *d)
{
    const NetInfo *ni = &s->nets[net];
    U u = { .a = a, .d = d, .s = s, .ni = ni, .sc_weight = -1, .at_stage = -1, .at_step = -1 };
    IrGraph *g = arena_alloc(a, sizeof *g);
    g->name = ni->decl->name;
    g->spec_path = s->path;
    g->input = ni->input;
    g->classes = ni->classes;
    g->train = ni->train;
    int cur = add_node(&u, OP_INPUT, "input", 0, NULL, ni->input, ni->decl->name_span);
    LayerCtx lc = { "stem", "stem", false, ni->input.c, 1 };
    for (int i = 0; i < ni->nstem && ni->stem[i].op == OP_CONV && !ni->stem[i].width; i++)
        if (!ni->stem[i].ratio)
            return fail(&u, ni->stem[i].span, "a stem convolution needs a width, e.g. conv3x3(16)"), NULL;
    cur = apply_layers(&u, ni->stem, ni->nstem, cur, &lc);
    for (int si = 0; si < ni->nstages && cur >= 0; si++) {
        const StageInfo *st = &ni->stages[si];
        if (si > 0 && ni->ntrans) {
            const char *p = arena_printf(u.a, "trans%d", si);
            LayerCtx tc = { p, p, false, nshape(&u, cur).c, 1 };
            cur = apply_layers(&u, ni->trans, ni->ntrans, cur, &tc);
            if (cur < 0)
                break;
        }
        IrShape in = nshape(&u, cur);
        u.stage = si + 1;
        u.stride = st->stride;
        u.width = st->width ? st->width : in.c;
        u.transition = st->stride > 1 || u.width != in.c;
        u.old_shape = in;
        u.new_shape = (IrShape){ u.width, (in.h - 1) / st->stride + 1, (in.w - 1) / st->stride + 1 };
        u.nsc = 0;
        u.sc_weight = -1;
        if (ni->ngrad == 1 && ni->grad[0].op == OP_EXACT && u.transition)
            return fail(&u, st->span, "exact(...) keeps the state's shape: a stage cannot change width or stride"), NULL;
        u.at_stage = u.stage;
        cur = run_stage(&u, st->opt, st->pv, st->steps, cur, st->span);
        u.at_stage = -1;
        if (cur >= 0 && u.transition && !same_shape(nshape(&u, cur), u.new_shape)) {
            diag_error(d, st->span, "stage output has shape %s, expected %s", shape_str(&u, nshape(&u, cur)),
                       shape_str(&u, u.new_shape));
            u.failed = true;
        }
    }
    if (cur < 0 || u.failed)
        return NULL;
    u.transition = false;
    LayerCtx hc = { "head", "head", false, nshape(&u, cur).c, 1 };
    cur = apply_layers(&u, ni->head, ni->nhead, cur, &hc);
    return cur < 0 ? NULL : finish(&u, g, cur);
}

IrGraph *unroll_optimizer(Arena *a, const Spec *s, int opt, int steps, IrShape st, Diag *d)
{
    U u = { .a = a, .d = d, .s = s, .sc_weight = -1, .at_stage = -1, .at_step = -1 };
    IrGraph *g = arena_alloc(a, sizeof *g);
    g->name = s->optd[opt]->name;
    g->spec_path = s->path;
    g->input = st;
    if (!s->opts[opt].ok) {
        diag_error_noloc(d, NULL, "optimizer '%s' has errors", g->name);
        return NULL;
    }
    int x0 = add_node(&u, OP_INPUT, "x0", 0, NULL, st, s->optd[opt]->name_span);
    u.width = st.c;
    u.at_stage = 1;     /* the optimizer alone is one stage */
    int out = x0 < 0 ? -1 : run_stage(&u, opt, s->opts[opt].values, steps, x0, s->optd[opt]->name_span);
    return out < 0 ? NULL : finish(&u, g, out);
}
