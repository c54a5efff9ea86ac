/* sema.c — the optimizers of a spec: names, types (scalar or tensor),
 * linearity and causality; every name of an update resolved for unroll
 * (Expr.ref/off/abs). Also the constant evaluator and the layer-list parser
 * that network.c uses. Network items and -D are network.c's; reading the
 * file and the trial unroll are load.c's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"
#include "layer.h"

typedef struct {
    Diag *d;
    Arena *a;
} Sema;

enum { TY_ERR = -1, TY_S = 0, TY_T = 1 };

int sema_find_param(const OptDecl *o, const char *name)
{
    for (int i = 0; i < o->nparams; i++)
        if (strcmp(o->params[i]->name, name) == 0)
            return i;
    return -1;
}

int sema_find_seq(const OptInfo *oi, const char *name)
{
    for (int i = 0; i < oi->nseqs; i++)
        if (strcmp(oi->seqs[i].name, name) == 0)
            return i;
    return -1;
}

static bool is_name(const Expr *e, const char *n)
{
    return e->kind == EX_NAME && strcmp(e->u.name, n) == 0;
}

static bool int_value(double v, long *out)
{
    if (!isfinite(v) || v != floor(v) || fabs(v) > 1e9)
        return false;
    *out = (long)v;
    return true;
}

bool sema_index_form(const Expr *e, int *off, bool *is_abs)
{
    long n;
    if (e->kind == EX_NUM) {
        if (!int_value(e->u.num, &n))
            return false;
        *is_abs = true;
        *off = (int)n;
        return true;
    }
    *is_abs = false;
    if (is_name(e, "k")) {
        *off = 0;
        return true;
    }
    if ((e->kind == EX_ADD || e->kind == EX_SUB) && is_name(e->u.bin.a, "k") &&
        e->u.bin.b->kind == EX_NUM && int_value(e->u.bin.b->u.num, &n) && n <= 1000000) {
        *off = e->kind == EX_ADD ? (int)n : -(int)n;
        return true;
    }
    return false;
}

/* Evaluates a constant scalar expression: numbers, + - * /, sqrt, pow. */
bool sema_const(Diag *d, const Expr *e, double *out)
{
    double a, b;
    switch (e->kind) {
    case EX_NUM:
        *out = e->u.num;
        return true;
    case EX_NEG:
        if (!sema_const(d, e->u.bin.a, &a))
            return false;
        *out = -a;
        return true;
    case EX_ADD: case EX_SUB: case EX_MUL: case EX_DIV:
        if (!sema_const(d, e->u.bin.a, &a) || !sema_const(d, e->u.bin.b, &b))
            return false;
        if (e->kind == EX_DIV && b == 0) {
            diag_error(d, e->span, "division by zero");
            return false;
        }
        *out = e->kind == EX_ADD ? a + b : e->kind == EX_SUB ? a - b : e->kind == EX_MUL ? a * b : a / b;
        break;
    case EX_CALL: {
        const char *f = e->u.call.name;
        int n = e->u.call.nargs;
        bool sq = strcmp(f, "sqrt") == 0, pw = strcmp(f, "pow") == 0;
        if ((!sq && !pw) || n != (sq ? 1 : 2)) {
            diag_error(d, e->span, "expected a constant");
            return false;
        }
        if (!sema_const(d, e->u.call.args[0]->value, &a))
            return false;
        if (pw && !sema_const(d, e->u.call.args[1]->value, &b))
            return false;
        *out = sq ? sqrt(a) : pow(a, b);
        break;
    }
    default:
        diag_error(d, e->span, "expected a constant");
        return false;
    }
    if (!isfinite(*out)) {
        diag_error(d, e->span, "value is not finite");
        return false;
    }
    return true;
}

bool sema_pval(Diag *d, const Expr *e, PVal *out)
{
    if (e->kind == EX_CALL && strcmp(e->u.call.name, "learned") == 0) {
        if (e->u.call.nargs != 1 || e->u.call.args[0]->name) {
            diag_error(d, e->span, "learned takes one initial value: learned(0.0)");
            return false;
        }
        out->learned = true;
        return sema_const(d, e->u.call.args[0]->value, &out->value);
    }
    out->learned = false;
    return sema_const(d, e, &out->value);
}

/* ---- optimizers --------------------------------------------------------- */

typedef struct {
    Sema *S;
    OptInfo *oi;
    int stmt;
    bool init;
    bool report;
} TyCtx;

#define TERR(...) do { if (t->report) diag_error(t->S->d, __VA_ARGS__); return TY_ERR; } while (0)

static int type_expr(TyCtx *t, Expr *e);

static int type_index(TyCtx *t, Expr *e)
{
    const OptDecl *o = t->oi->decl;
    const char *n = e->u.index.name;
    int si = sema_find_seq(t->oi, n);
    if (si < 0) {
        if (sema_find_param(o, n) >= 0)
            TERR(e->span, "'%s' is a parameter, not a sequence", n);
        TERR(e->u.index.name_span, "unknown sequence '%s'", n);
    }
    if (t->init)
        TERR(e->span, "an initial value must be a constant");
    int off;
    bool abs;
    if (!sema_index_form(e->u.index.index, &off, &abs))
        TERR(e->u.index.index->span, "index must be k, k+N, k-N or 0");
    e->ref = si;
    e->off = off;
    e->abs = abs;
    if (abs && off != 0)
        TERR(e->u.index.index->span, "a constant index must be 0");
    if (!abs && off > 1)
        TERR(e->span, "'%s[k+%d]' lies in the future: only k+1 of a sequence defined earlier in the step is known", n, off);
    const Seq *s = &t->oi->seqs[si];
    if (!t->report)     /* the type fixed point: causality is checked after */
        return s->tensor ? TY_T : TY_S;
    int p = t->stmt;
    if (s->off < 0)
        TERR(e->span, "'%s' has an initial value but is never updated", n);
    if (s->off == 1) {
        if (!abs && off == 1) {
            if (s->def_stmt == p)
                TERR(e->span, "'%s[k+1]' is the value being defined", n);
            if (s->def_stmt > p)
                TERR(e->span, "'%s[k+1]' is used before it is defined in this step", n);
        } else if (si != t->oi->state && s->init_stmt < 0) {
            TERR(e->span, "'%s' has no initial value (add %s[0] = ...;)", n, n);
        }
    } else {
        if (!abs && off == 1)
            TERR(e->span, "'%s' is defined as %s[k]: %s[k+1] is not known yet", n, n, n);
        if (s->def_stmt >= p)
            TERR(e->span, "'%s' is used before it is defined in this step", n);
    }
    return s->tensor ? TY_T : TY_S;
}

static int type_call(TyCtx *t, Expr *e)
{
    const char *f = e->u.call.name;
    int n = e->u.call.nargs;
    Arg **args = e->u.call.args;
    int want;
    if (strcmp(f, "grad") == 0 || strcmp(f, "concat") == 0)
        want = TY_T;
    else if (strcmp(f, "sqrt") == 0 || strcmp(f, "pow") == 0)
        want = TY_S;
    else if (strcmp(f, "learned") == 0)
        TERR(e->span, "learned(...) is only allowed as a parameter default or a stage argument");
    else
        TERR(e->u.call.name_span, "unknown function '%s'", f);
    if (strcmp(f, "grad") == 0 && n != 1)
        TERR(e->span, "grad takes one argument");
    if (strcmp(f, "sqrt") == 0 && n != 1)
        TERR(e->span, "sqrt takes one argument");
    if (strcmp(f, "pow") == 0 && n != 2)
        TERR(e->span, "pow takes two arguments");
    if (strcmp(f, "concat") == 0 && n < 1)
        TERR(e->span, "concat takes at least one argument");
    int res = want;
    for (int i = 0; i < n; i++) {
        if (args[i]->name)
            TERR(args[i]->name_span, "%s takes no named arguments", f);
        int ty = type_expr(t, args[i]->value);
        if (ty == TY_ERR) {
            res = TY_ERR;
            continue;
        }
        if (ty != want) {
            if (t->report)
                diag_error(t->S->d, args[i]->value->span, want == TY_T ?
                           "%s needs a tensor argument, not a scalar" :
                           "%s needs a scalar argument, not a tensor", f);
            res = TY_ERR;
        }
    }
    return res;
}

/* The type of e (TY_S, TY_T or TY_ERR); resolves the names in e (Expr.ref,
 * off, abs) for unroll on the way. */
static int type_expr(TyCtx *t, Expr *e)
{
    const OptDecl *o = t->oi->decl;
    int a, b;
    switch (e->kind) {
    case EX_NUM:
        return TY_S;
    case EX_NAME:
        if (strcmp(e->u.name, "k") == 0) {
            e->ref = AST_STEP;
            if (t->init)
                TERR(e->span, "an initial value must be a constant");
            return TY_S;
        }
        if ((e->ref = sema_find_param(o, e->u.name)) >= 0)
            return TY_S;
        e->ref = AST_UNRESOLVED;
        if (sema_find_seq(t->oi, e->u.name) >= 0)
            TERR(e->span, "'%s' is a sequence: index it, as in %s[k]", e->u.name, e->u.name);
        TERR(e->span, "unknown name '%s'", e->u.name);
    case EX_INDEX:
        return type_index(t, e);
    case EX_CALL:
        return type_call(t, e);
    case EX_NEG:
        return type_expr(t, e->u.bin.a);
    case EX_ADD: case EX_SUB:
        a = type_expr(t, e->u.bin.a);
        b = type_expr(t, e->u.bin.b);
        if (a == TY_ERR || b == TY_ERR)
            return TY_ERR;
        if (a != b && !t->report)
            return TY_T;    /* the fixed point: tensor-ness wins until all is known */
        if (a != b)
            TERR(e->span, "cannot %s a tensor and a scalar", e->kind == EX_ADD ? "add" : "subtract");
        return a;
    case EX_MUL:
        a = type_expr(t, e->u.bin.a);
        b = type_expr(t, e->u.bin.b);
        if (a == TY_ERR || b == TY_ERR)
            return TY_ERR;
        if (a == TY_T && b == TY_T)
            TERR(e->span, "product of two tensors is not linear");
        return a == TY_T || b == TY_T ? TY_T : TY_S;
    case EX_DIV:
        a = type_expr(t, e->u.bin.a);
        b = type_expr(t, e->u.bin.b);
        if (a == TY_ERR || b == TY_ERR)
            return TY_ERR;
        if (b == TY_T)
            TERR(e->u.bin.b->span, "division by a tensor is not linear");
        return a;
    }
    return TY_ERR;
}

void sema_check_optimizer(Diag *d, Arena *a, OptInfo *oi, OptDecl *o)
{
    Sema SS = { d, a }, *S = &SS;
    int e0 = d->nerrors;
    oi->decl = o;
    oi->state = -1;
    oi->defaults = arena_alloc(S->a, sizeof(PVal) * (size_t)(o->nparams + 1));
    oi->overridden = arena_alloc(S->a, sizeof(bool) * (size_t)(o->nparams + 1));
    oi->override = arena_alloc(S->a, sizeof(PVal) * (size_t)(o->nparams + 1));
    for (int i = 0; i < o->nparams; i++) {
        Param *p = o->params[i];
        if (strcmp(p->name, "k") == 0 || strcmp(p->name, "x") == 0)
            diag_error(d, p->name_span, "'%s' is reserved and cannot be a parameter", p->name);
        for (int j = 0; j < i; j++)
            if (strcmp(o->params[j]->name, p->name) == 0) {
                diag_error(d, p->name_span, "duplicate parameter '%s'", p->name);
                diag_note(d, o->params[j]->name_span, "first declared here");
            }
        sema_pval(d, p->def, &oi->defaults[i]);
    }
    oi->seqs = arena_alloc(S->a, sizeof(Seq) * (size_t)(o->nstmts + 1));
    oi->stmt_seq = arena_alloc(S->a, sizeof(int) * (size_t)(o->nstmts + 1));
    oi->stmt_kind = arena_alloc(S->a, sizeof(StmtKind) * (size_t)(o->nstmts + 1));
    for (int i = 0; i < o->nstmts; i++) {
        Stmt *st = o->stmts[i];
        oi->stmt_seq[i] = -1;
        if (strcmp(st->seq, "k") == 0 || sema_find_param(o, st->seq) >= 0) {
            diag_error(d, st->seq_span, "'%s' is %s, not a sequence", st->seq,
                       strcmp(st->seq, "k") == 0 ? "the step index" : "a parameter");
            continue;
        }
        int off;
        bool abs;
        if (!sema_index_form(st->index, &off, &abs) || (abs && off != 0) || (!abs && off != 0 && off != 1)) {
            diag_error(d, st->index->span, "the left side must be %s[k+1], %s[k] or %s[0]", st->seq, st->seq, st->seq);
            continue;
        }
        int si = sema_find_seq(oi, st->seq);
        if (si < 0) {
            si = oi->nseqs++;
            Seq *ns = &oi->seqs[si];
            ns->name = st->seq;
            ns->off = -1;
            ns->def_stmt = -1;
            ns->init_stmt = -1;
            if (strcmp(st->seq, "x") == 0) {
                oi->state = si;
                ns->tensor = true;
            }
        }
        Seq *s = &oi->seqs[si];
        oi->stmt_seq[i] = si;
        if (abs) {
            oi->stmt_kind[i] = SK_INIT;
            if (si == oi->state) {
                diag_error(d, st->span, "x[0] is the stage input and cannot be assigned");
            } else if (s->init_stmt >= 0) {
                diag_error(d, st->span, "'%s[0]' is already initialised", s->name);
                diag_note(d, o->stmts[s->init_stmt]->span, "first initialised here");
            } else {
                s->init_stmt = i;
            }
        } else {
            oi->stmt_kind[i] = SK_UPDATE;
            if (s->def_stmt >= 0) {
                diag_error(d, st->span, "'%s' is already defined", s->name);
                diag_note(d, o->stmts[s->def_stmt]->span, "first defined here");
            } else {
                s->def_stmt = i;
                s->off = off;
            }
        }
    }
    for (int i = 0; i < oi->nseqs; i++) {
        Seq *s = &oi->seqs[i];
        if (s->off == 0 && s->init_stmt >= 0)
            diag_error(d, o->stmts[s->init_stmt]->span,
                       "'%s' is defined as %s[k]: it cannot also have an initial value", s->name, s->name);
    }
    if (d->nerrors > e0)
        return;
    if (oi->state < 0 || oi->seqs[oi->state].off != 1) {
        diag_error(d, o->name_span, "optimizer '%s' never updates the state (write x[k+1] = ...;)", o->name);
        return;
    }
    /* Tensor-ness flows along definitions: iterate to a fixed point. */
    TyCtx t = { S, oi, 0, false, false };
    for (int it = 0; it <= oi->nseqs; it++) {
        bool changed = false;
        for (int i = 0; i < o->nstmts; i++) {
            if (oi->stmt_kind[i] != SK_UPDATE)
                continue;
            t.stmt = i;
            if (type_expr(&t, o->stmts[i]->rhs) == TY_T && !oi->seqs[oi->stmt_seq[i]].tensor) {
                oi->seqs[oi->stmt_seq[i]].tensor = true;
                changed = true;
            }
        }
        if (!changed)
            break;
    }
    t.report = true;
    for (int i = 0; i < o->nstmts; i++) {
        Stmt *st = o->stmts[i];
        Seq *s = &oi->seqs[oi->stmt_seq[i]];
        t.stmt = i;
        t.init = oi->stmt_kind[i] == SK_INIT;
        int ty = type_expr(&t, st->rhs);
        if (ty == TY_ERR)
            continue;
        if (t.init && s->tensor && !(st->rhs->kind == EX_NUM && st->rhs->u.num == 0))
            diag_error(d, st->rhs->span, "'%s' is a tensor sequence: it can only start at 0", s->name);
        if (!t.init && oi->stmt_seq[i] == oi->state && ty != TY_T)
            diag_error(d, st->rhs->span, "the state x must be a tensor expression");
    }
    oi->ok = d->nerrors == e0;
}

/* ---- networks ----------------------------------------------------------- */

bool sema_atom_int(Diag *d, const Atom *at, long lo, long hi, const char *what, int *out)
{
    long v;
    if (at->kind != AT_NUM || !int_value(at->num, &v) || v < lo || v > hi) {
        diag_error(d, at->span, "%s must be an integer in %ld..%ld", what, lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

bool sema_atom_num(Diag *d, const Atom *at, double lo, double hi, const char *what, double *out)
{
    if (at->kind != AT_NUM || !(at->num >= lo && at->num <= hi)) {
        diag_error(d, at->span, "%s must be a number in [%g, %g]", what, lo, hi);
        return false;
    }
    *out = at->num;
    return true;
}

bool sema_arg_int(Diag *d, const Arg *g, long lo, long hi, const char *what, int *out)
{
    double v;
    long n;
    if (!sema_const(d, g->value, &v))
        return false;
    if (!int_value(v, &n) || n < lo || n > hi) {
        diag_error(d, g->value->span, "%s must be an integer in %ld..%ld", what, lo, hi);
        return false;
    }
    *out = (int)n;
    return true;
}

/* One atom as a single word (no args). */
const Atom *sema_single_atom(Diag *d, const Item *it)
{
    if (it->ngroups != 1 || it->groups[0]->natoms != 1) {
        diag_error(d, it->span, "'%s' takes one value", it->name);
        return NULL;
    }
    return it->groups[0]->atoms[0];
}

int sema_find_opt(const Spec *s, const char *name)
{
    for (int i = 0; i < s->nopt; i++)
        if (strcmp(s->optd[i]->name, name) == 0)
            return i;
    return -1;
}
