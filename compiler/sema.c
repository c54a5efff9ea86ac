/* sema.c — loading a spec: read, parse, check names, types, causality and
 * ranges, apply -D overrides, then unroll every network once so shape and
 * linearity errors are reported by `optc check` too. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"
#include "layer.h"

#define MAX_STEPS 10000
#define MAX_WIDTH 65536
#define MAX_SPEC_BYTES (16 << 20)

typedef struct {
    Diag *d;
    Spec *s;
    Arena *a;
    const Define *defs;
    int ndefs;
    bool *def_used;
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

/* A -D value: a number or learned(number). */
static bool define_value(const char *v, PVal *out)
{
    char *end;
    out->learned = false;
    if (strncmp(v, "learned(", 8) == 0) {
        out->learned = true;
        v += 8;
    }
    errno = 0;
    out->value = strtod(v, &end);
    if (end == v || errno || !isfinite(out->value))
        return false;
    if (out->learned) {
        if (*end != ')')
            return false;
        end++;
    }
    return *end == 0;
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

static int type_expr(TyCtx *t, const Expr *e);

static int type_index(TyCtx *t, const Expr *e)
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

static int type_call(TyCtx *t, const Expr *e)
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

static int type_expr(TyCtx *t, const Expr *e)
{
    const OptDecl *o = t->oi->decl;
    int a, b;
    switch (e->kind) {
    case EX_NUM:
        return TY_S;
    case EX_NAME:
        if (strcmp(e->u.name, "k") == 0) {
            if (t->init)
                TERR(e->span, "an initial value must be a constant");
            return TY_S;
        }
        if (sema_find_param(o, e->u.name) >= 0)
            return TY_S;
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

static void check_optimizer(Sema *S, OptInfo *oi, OptDecl *o)
{
    Diag *d = S->d;
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

static bool atom_int(Diag *d, const Atom *at, long lo, long hi, const char *what, int *out)
{
    long v;
    if (at->kind != AT_NUM || !int_value(at->num, &v) || v < lo || v > hi) {
        diag_error(d, at->span, "%s must be an integer in %ld..%ld", what, lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

static bool atom_num(Diag *d, const Atom *at, double lo, double hi, const char *what, double *out)
{
    if (at->kind != AT_NUM || !(at->num >= lo && at->num <= hi)) {
        diag_error(d, at->span, "%s must be a number in [%g, %g]", what, lo, hi);
        return false;
    }
    *out = at->num;
    return true;
}

static bool arg_int(Diag *d, const Arg *g, long lo, long hi, const char *what, int *out)
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
static const Atom *single_atom(Diag *d, const Item *it)
{
    if (it->ngroups != 1 || it->groups[0]->natoms != 1) {
        diag_error(d, it->span, "'%s' takes one value", it->name);
        return NULL;
    }
    return it->groups[0]->atoms[0];
}

static int find_opt(const Spec *s, const char *name)
{
    for (int i = 0; i < s->nopt; i++)
        if (strcmp(s->optd[i]->name, name) == 0)
            return i;
    return -1;
}

static void parse_stage(Sema *S, const Item *it, StageInfo *st)
{
    Diag *d = S->d;
    memset(st, 0, sizeof *st);
    st->span = it->span;
    st->opt = -1;
    st->stride = 1;
    if (it->ngroups != 1) {
        diag_error(d, it->span, "expected: stage OPTIMIZER[(args)] steps N [width W] [stride S];");
        return;
    }
    const Group *g = it->groups[0];
    const Atom *o = g->atoms[0];
    if (o->kind != AT_NAME && o->kind != AT_CALL) {
        diag_error(d, o->span, "expected an optimizer name");
        return;
    }
    st->opt = find_opt(S->s, o->name);
    if (st->opt < 0) {
        diag_error(d, o->span, "unknown optimizer '%s'", o->name);
        return;
    }
    const OptDecl *od = S->s->optd[st->opt];
    st->args = o->args;
    st->nargs = o->nargs;
    for (int i = 0; i < o->nargs; i++) {
        const Arg *a = o->args[i];
        PVal pv;
        if (!a->name) {
            diag_error(d, a->span, "stage arguments are named: %s(param = value)", od->name);
            continue;
        }
        if (sema_find_param(od, a->name) < 0) {
            diag_error(d, a->name_span, "optimizer '%s' has no parameter '%s'", od->name, a->name);
            continue;
        }
        for (int j = 0; j < i; j++)
            if (o->args[j]->name && strcmp(o->args[j]->name, a->name) == 0)
                diag_error(d, a->name_span, "duplicate argument '%s'", a->name);
        sema_pval(d, a->value, &pv);
    }
    bool seen[3] = { false, false, false };
    for (int i = 1; i < g->natoms; i += 2) {
        const Atom *kw = g->atoms[i];
        if (kw->kind != AT_NAME) {
            diag_error(d, kw->span, "expected steps, width or stride");
            return;
        }
        int which = strcmp(kw->name, "steps") == 0 ? 0 : strcmp(kw->name, "width") == 0 ? 1
                  : strcmp(kw->name, "stride") == 0 ? 2 : -1;
        if (which < 0) {
            diag_error(d, kw->span, "unknown stage option '%s' (expected steps, width or stride)", kw->name);
            return;
        }
        if (seen[which])
            diag_error(d, kw->span, "duplicate '%s'", kw->name);
        seen[which] = true;
        if (i + 1 >= g->natoms) {
            diag_error(d, kw->span, "'%s' needs a value", kw->name);
            return;
        }
        const Atom *v = g->atoms[i + 1];
        if (which == 0)
            atom_int(d, v, 1, MAX_STEPS, "steps", &st->steps);
        else if (which == 1)
            atom_int(d, v, 1, MAX_WIDTH, "width", &st->width);
        else
            atom_int(d, v, 1, 8, "stride", &st->stride);
    }
    if (!seen[0])
        diag_error(d, it->span, "stage needs 'steps N'");
}

static bool word_is(const Atom *a, const char *w)
{
    return a->kind == AT_NAME && strcmp(a->name, w) == 0;
}

static bool bool_item(Diag *d, const Item *it, bool *out)
{
    if (it->ngroups == 0) {
        *out = true;
        return true;
    }
    const Atom *a = single_atom(d, it);
    if (!a)
        return false;
    if (word_is(a, "true") || word_is(a, "on") || (a->kind == AT_NUM && a->num == 1))
        *out = true;
    else if (word_is(a, "false") || word_is(a, "off") || (a->kind == AT_NUM && a->num == 0))
        *out = false;
    else {
        diag_error(d, a->span, "expected true or false");
        return false;
    }
    return true;
}

static void parse_train(Diag *d, const Item *blk, IrTrain *t)
{
    for (int i = 0; i < blk->nitems; i++) {
        const Item *it = blk->items[i];
        const char *n = it->name;
        const Atom *a;
        if (it->block) {
            diag_error(d, it->span, "unexpected block in train");
            continue;
        }
        if (strcmp(n, "nesterov") == 0) {
            bool_item(d, it, &t->nesterov);
            continue;
        }
        if (strcmp(n, "decay_bn") == 0) {
            bool_item(d, it, &t->decay_bn);
            continue;
        }
        if (strcmp(n, "augment") == 0) {
            for (int j = 0; j < it->ngroups; j++) {
                const Group *g = it->groups[j];
                const Atom *x = g->atoms[0];
                if (g->natoms != 1)
                    diag_error(d, g->span, "expected crop(N), flip or none");
                else if (word_is(x, "flip"))
                    t->flip = true;
                else if (word_is(x, "none"))
                    ;
                else if (x->kind == AT_CALL && strcmp(x->name, "crop") == 0 && x->nargs == 1 && !x->args[0]->name)
                    arg_int(d, x->args[0], 1, 64, "crop padding", &t->crop_pad);
                else
                    diag_error(d, x->span, "expected crop(N), flip or none");
            }
            continue;
        }
        if (strcmp(n, "schedule") == 0) {
            if (!(a = single_atom(d, it)))
                continue;
            if (word_is(a, "constant"))
                t->schedule = SCHED_CONSTANT;
            else if (word_is(a, "cosine"))
                t->schedule = SCHED_COSINE;
            else if (a->kind == AT_CALL && strcmp(a->name, "step") == 0) {
                t->schedule = SCHED_STEP;
                t->step_gamma = 0.1;
                t->nmilestones = 0;
                for (int j = 0; j < a->nargs; j++) {
                    const Arg *g = a->args[j];
                    if (g->name && strcmp(g->name, "gamma") == 0) {
                        if (sema_const(d, g->value, &t->step_gamma) && !(t->step_gamma > 0 && t->step_gamma <= 1))
                            diag_error(d, g->value->span, "gamma must be in (0, 1]");
                    } else if (g->name) {
                        diag_error(d, g->name_span, "unknown argument '%s'", g->name);
                    } else if (t->nmilestones == 4) {
                        diag_error(d, g->span, "at most 4 milestones");
                    } else if (arg_int(d, g, 1, 100000, "milestone", &t->milestones[t->nmilestones])) {
                        if (t->nmilestones && t->milestones[t->nmilestones] <= t->milestones[t->nmilestones - 1])
                            diag_error(d, g->span, "milestones must increase");
                        t->nmilestones++;
                    }
                }
                if (t->nmilestones == 0)
                    diag_error(d, a->span, "step(...) needs at least one milestone epoch");
            } else
                diag_error(d, a->span, "expected constant, cosine or step(m1, m2, ..., gamma = g)");
            continue;
        }
        if (!(a = single_atom(d, it)))
            continue;
        if (strcmp(n, "epochs") == 0)
            atom_int(d, a, 1, 100000, "epochs", &t->epochs);
        else if (strcmp(n, "batch") == 0)
            atom_int(d, a, 1, 65536, "batch", &t->batch);
        else if (strcmp(n, "warmup") == 0)
            atom_int(d, a, 0, 100000, "warmup", &t->warmup_epochs);
        else if (strcmp(n, "lr") == 0) {
            if (atom_num(d, a, 0, 100, "lr", &t->lr) && t->lr == 0)
                diag_error(d, a->span, "lr must be positive");
        } else if (strcmp(n, "momentum") == 0)
            atom_num(d, a, 0, 0.999999, "momentum", &t->momentum);
        else if (strcmp(n, "weight_decay") == 0)
            atom_num(d, a, 0, 1, "weight_decay", &t->weight_decay);
        else
            diag_error(d, it->name_span, "unknown train setting '%s'", n);
    }
}

static void check_network(Sema *S, NetInfo *ni, NetDecl *nd)
{
    Diag *d = S->d;
    ni->decl = nd;
    ni->shortcut = SC_PAD;
    ni->train = (IrTrain){ .epochs = 10, .batch = 128, .lr = 0.1, .momentum = 0.9,
                           .weight_decay = 5e-4, .schedule = SCHED_COSINE, .step_gamma = 0.1 };
    ni->stages = arena_alloc(S->a, sizeof(StageInfo) * (size_t)(nd->nitems + 1));
    ni->stem = arena_alloc(S->a, sizeof(Layer));
    ni->trans = arena_alloc(S->a, sizeof(Layer));
    static const char *const once[] = { "input", "classes", "stem", "grad", "share", "shortcut",
                                        "transition", "head", "train" };
    enum { NONCE = sizeof once / sizeof once[0] };
    const Item *seen[NONCE] = { 0 };
    for (int i = 0; i < nd->nitems; i++) {
        const Item *it = nd->items[i];
        const char *n = it->name;
        if (strcmp(n, "stage") == 0) {
            parse_stage(S, it, &ni->stages[ni->nstages++]);
            continue;
        }
        int w = -1;
        for (int j = 0; j < NONCE; j++)
            if (strcmp(n, once[j]) == 0)
                w = j;
        if (w < 0) {
            diag_error(d, it->name_span, "unknown network item '%s'", n);
            continue;
        }
        if (seen[w]) {
            diag_error(d, it->name_span, "duplicate '%s'", n);
            diag_note(d, seen[w]->name_span, "first given here");
            continue;
        }
        seen[w] = it;
        if ((w == 8) != it->block) {
            diag_error(d, it->span, w == 8 ? "train takes a block: train { epochs 10; ... }"
                                           : "unexpected block");
            continue;
        }
        const Atom *a;
        switch (w) {
        case 0:
            if (it->ngroups != 1 || it->groups[0]->natoms != 1)
                diag_error(d, it->span, "expected the input shape as CxHxW, e.g. 3x32x32");
            else if ((a = single_atom(d, it))) {
                if (a->kind != AT_DIMS)
                    diag_error(d, a->span, "expected the input shape as CxHxW, e.g. 3x32x32");
                else
                    ni->input = (IrShape){ a->dims[0], a->dims[1], a->dims[2] };
            }
            break;
        case 1:
            if ((a = single_atom(d, it)))
                atom_int(d, a, 1, 100000, "classes", &ni->classes);
            break;
        case 2:
            layer_parse_list(d, S->a, it, CTX_STEM, &ni->stem, &ni->nstem);
            break;
        case 3:
            layer_parse_list(d, S->a, it, CTX_GRAD, &ni->grad, &ni->ngrad);
            ni->grad_span = it->span;
            break;
        case 4:
            if ((a = single_atom(d, it))) {
                if (word_is(a, "stage"))
                    ni->share = true;
                else if (!word_is(a, "none"))
                    diag_error(d, a->span, "expected share = none | stage");
            }
            break;
        case 5:
            if ((a = single_atom(d, it))) {
                if (word_is(a, "conv1x1"))
                    ni->shortcut = SC_CONV;
                else if (!word_is(a, "pad"))
                    diag_error(d, a->span, "expected shortcut = pad | conv1x1");
            }
            break;
        case 6:
            layer_parse_list(d, S->a, it, CTX_TRANS, &ni->trans, &ni->ntrans);
            break;
        case 7:
            layer_parse_list(d, S->a, it, CTX_HEAD, &ni->head, &ni->nhead);
            ni->head_span = it->span;
            break;
        case 8:
            parse_train(d, it, &ni->train);
            break;
        }
    }
    static const int required[] = { 0, 1, 3, 7 };
    for (int j = 0; j < 4; j++)
        if (!seen[required[j]])
            diag_error(d, nd->name_span, "network '%s' has no '%s'", nd->name, once[required[j]]);
    if (ni->nstages == 0)
        diag_error(d, nd->name_span, "network '%s' has no stage", nd->name);
    if (ni->nhead && ni->head[ni->nhead - 1].op != OP_LINEAR)
        diag_error(d, ni->head_span, "the head must end with 'linear'");
}

/* ---- -D ----------------------------------------------------------------- */

static bool stage_key(const char *a, const char *b, int *stage, bool *steps)
{
    int n = 0, st;
    if (sscanf(a, "stage%d%n", &st, &n) != 1 || a[n] != 0 || st < 1)
        return false;
    if (strcmp(b, "steps") != 0 && strcmp(b, "width") != 0)
        return false;
    *stage = st;
    *steps = b[1] == 't';
    return true;
}

static void apply_stage_define(Sema *S, int di, NetInfo *ni, int stage, bool steps)
{
    if (stage > ni->nstages)
        return;
    long v;
    char *end;
    errno = 0;
    v = strtol(S->defs[di].value, &end, 10);
    S->def_used[di] = true;
    if (errno || *end || end == S->defs[di].value || v < 1 || v > (steps ? MAX_STEPS : MAX_WIDTH)) {
        diag_error_noloc(S->d, "<command line>", "-D %s=%s: %s must be an integer in 1..%d",
                         S->defs[di].name, S->defs[di].value, steps ? "steps" : "width",
                         steps ? MAX_STEPS : MAX_WIDTH);
        return;
    }
    if (steps)
        ni->stages[stage - 1].steps = (int)v;
    else
        ni->stages[stage - 1].width = (int)v;
}

static void apply_defines(Sema *S)
{
    Spec *s = S->s;
    for (int di = 0; di < S->ndefs; di++) {
        const Define *df = &S->defs[di];
        char buf[256];
        if (!df->name || !df->value || strlen(df->name) >= sizeof buf) {
            diag_error_noloc(S->d, "<command line>", "malformed -D");
            continue;
        }
        strcpy(buf, df->name);
        char *part[4];
        int np = 0;
        for (char *p = buf; np < 4;) {
            part[np++] = p;
            p = strchr(p, '.');
            if (!p)
                break;
            *p++ = 0;
        }
        int stage;
        bool steps;
        if (np == 1 || np == 2) {
            for (int oi = 0; oi < s->nopt; oi++) {
                if (np == 2 && strcmp(part[0], s->optd[oi]->name) != 0)
                    continue;
                int pi = sema_find_param(s->optd[oi], part[np - 1]);
                if (pi < 0)
                    continue;
                S->def_used[di] = true;
                if (!s->opts[oi].override)  /* unchecked: it has a syntax error */
                    continue;
                if (!define_value(df->value, &s->opts[oi].override[pi])) {
                    diag_error_noloc(S->d, "<command line>", "-D %s=%s: expected a number or learned(number)",
                                     df->name, df->value);
                    break;
                }
                s->opts[oi].overridden[pi] = true;
            }
        }
        if (np == 2 && stage_key(part[0], part[1], &stage, &steps))
            for (int ni = 0; ni < s->nnet; ni++)
                apply_stage_define(S, di, &s->nets[ni], stage, steps);
        if (np == 3 && stage_key(part[1], part[2], &stage, &steps))
            for (int ni = 0; ni < s->nnet; ni++)
                if (strcmp(s->netd[ni]->name, part[0]) == 0)
                    apply_stage_define(S, di, &s->nets[ni], stage, steps);
        if (!S->def_used[di])
            diag_error_noloc(S->d, "<command line>", "-D %s matches no optimizer parameter or stage", df->name);
    }
}

/* ---- entry points -------------------------------------------------------- */

/* Declarations holding a syntax error are not checked further: their
 * statements are incomplete and would only produce follow-on errors. */
static bool has_syntax_error(const ParseCtx *pc, Span sp)
{
    for (int i = 0; i < pc->syntax_errors.n; i++) {
        int off = *(const int *)pc->syntax_errors.v[i];
        if (off >= sp.beg && off <= sp.end)
            return true;
    }
    return false;
}

Spec *fe_load_string(Arena *a, const char *name, const char *src, size_t len,
                     const Define *defs, int ndefs, FILE *diag, int *nerrors)
{
    Spec *s = arena_alloc(a, sizeof *s);
    char *copy = arena_alloc(a, len + 1);
    memcpy(copy, src, len);
    s->path = arena_strdup(a, name);
    s->src = copy;
    s->len = len;
    s->arena = a;
    Diag d;
    diag_init(&d, a, diag, s->path, copy, len);
    if (len > MAX_SPEC_BYTES) {
        diag_error_noloc(&d, NULL, "spec larger than %d bytes", MAX_SPEC_BYTES);
        *nerrors = d.nerrors;
        return NULL;
    }
    ParseCtx pc = { .arena = a, .diag = &d };
    ast_parse(&pc, copy, len);
    s->optd = (OptDecl **)pc.opts.v;
    s->nopt = pc.opts.n;
    s->netd = (NetDecl **)pc.nets.v;
    s->nnet = pc.nets.n;
    Sema S = { &d, s, a, defs, ndefs, arena_alloc(a, sizeof(bool) * (size_t)(ndefs + 1)) };
    s->opts = arena_alloc(a, sizeof(OptInfo) * (size_t)(s->nopt + 1));
    s->nets = arena_alloc(a, sizeof(NetInfo) * (size_t)(s->nnet + 1));
    if (!d.stop) {
        for (int i = 0; i < s->nopt; i++) {
            for (int j = 0; j < i; j++)
                if (strcmp(s->optd[i]->name, s->optd[j]->name) == 0) {
                    diag_error(&d, s->optd[i]->name_span, "duplicate optimizer '%s'", s->optd[i]->name);
                    diag_note(&d, s->optd[j]->name_span, "first defined here");
                }
            if (!has_syntax_error(&pc, s->optd[i]->span))
                check_optimizer(&S, &s->opts[i], s->optd[i]);
        }
        for (int i = 0; i < s->nnet; i++) {
            for (int j = 0; j < i; j++)
                if (strcmp(s->netd[i]->name, s->netd[j]->name) == 0) {
                    diag_error(&d, s->netd[i]->name_span, "duplicate network '%s'", s->netd[i]->name);
                    diag_note(&d, s->netd[j]->name_span, "first defined here");
                }
            if (!has_syntax_error(&pc, s->netd[i]->span))
                check_network(&S, &s->nets[i], s->netd[i]);
        }
        apply_defines(&S);
    }
    if (d.nerrors == 0 && s->nopt == 0 && s->nnet == 0)
        diag_error_noloc(&d, NULL, "no optimizer or network in this spec");
    /* A trial unroll of each network reports shape and linearity errors. */
    for (int i = 0; i < s->nnet && d.nerrors == 0; i++) {
        Arena *tmp = arena_new();
        unroll_network(tmp, s, i, &d);
        arena_free(tmp);
    }
    *nerrors = d.nerrors;
    return d.nerrors ? NULL : s;
}

Spec *fe_load(Arena *a, const char *path, const Define *defs, int ndefs, FILE *diag, int *nerrors)
{
    FILE *f = fopen(path, "rb");
    Diag d;
    diag_init(&d, a, diag, path, "", 0);
    if (!f) {
        diag_error_noloc(&d, path, "cannot open: %s", strerror(errno));
        *nerrors = d.nerrors;
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len == cap) {
            if (cap > MAX_SPEC_BYTES)
                break;
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                DIAG_BUG("out of memory");
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        diag_error_noloc(&d, path, "read error");
        *nerrors = d.nerrors;
        return NULL;
    }
    Spec *s = fe_load_string(a, path, buf, len, defs, ndefs, diag, nerrors);
    free(buf);
    return s;
}

int fe_network_count(const Spec *s) { return s->nnet; }
const char *fe_network_name(const Spec *s, int i) { return s->netd[i]->name; }
int fe_optimizer_count(const Spec *s) { return s->nopt; }
const char *fe_optimizer_name(const Spec *s, int i) { return s->optd[i]->name; }

static int net_index(Diag *d, const Spec *s, const char *net)
{
    if (s->nnet == 0) {
        diag_error_noloc(d, NULL, "no network in this spec");
        return -1;
    }
    if (!net)
        return 0;
    for (int i = 0; i < s->nnet; i++)
        if (strcmp(s->netd[i]->name, net) == 0)
            return i;
    diag_error_noloc(d, NULL, "no network named '%s'", net);
    return -1;
}

IrGraph *fe_unroll(Arena *a, const Spec *s, const char *net, FILE *diag, int *nerrors)
{
    Diag d;
    diag_init(&d, a, diag, s->path, s->src, s->len);
    int ni = net_index(&d, s, net);
    IrGraph *g = ni < 0 ? NULL : unroll_network(a, s, ni, &d);
    *nerrors = d.nerrors;
    return d.nerrors ? NULL : g;
}

IrGraph *fe_unroll_optimizer(Arena *a, const Spec *s, const char *opt, int steps,
                             IrShape state, FILE *diag, int *nerrors)
{
    Diag d;
    diag_init(&d, a, diag, s->path, s->src, s->len);
    int oi = opt ? find_opt(s, opt) : (s->nopt ? 0 : -1);
    IrGraph *g = NULL;
    if (oi < 0)
        diag_error_noloc(&d, NULL, "no optimizer named '%s'", opt ? opt : "(none)");
    else if (steps < 1 || steps > MAX_STEPS)
        diag_error_noloc(&d, NULL, "steps must be in 1..%d", MAX_STEPS);
    else
        g = unroll_optimizer(a, s, oi, steps, state, &d);
    *nerrors = d.nerrors;
    return d.nerrors ? NULL : g;
}
