/* invert.c — invertibility of each stage (invert.h).
 *
 * Why both the spec and the IR: the inverse has to be printed in the spec's
 * names (beta, grad(x[k])), which the IR has folded to numbers, so the
 * solving is done symbolically on the resolved optimizer (coefficients are
 * polynomials in its parameters). Whether a given stage and step can use it
 * depends on what only the unrolled IR knows: the value after -D (beta = 0
 * removes x[k-1] from the sum), learned per-step coefficients, the k = 0
 * clamp, a strided first step, and the activation sizes. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "ast.h"
#include "invert.h"
#include "optable.h"
#include "plan.h"

/* ---- text ---------------------------------------------------------------- */

typedef struct {
    char b[2048];
    size_t n;
} Str;

static void sput(Str *s, const char *f, ...) __attribute__((format(printf, 2, 3)));
static void sput(Str *s, const char *f, ...)
{
    if (s->n >= sizeof s->b - 1)
        return;
    va_list ap;
    va_start(ap, f);
    int r = vsnprintf(s->b + s->n, sizeof s->b - s->n, f, ap);
    va_end(ap);
    if (r > 0)
        s->n += (size_t)r < sizeof s->b - s->n ? (size_t)r : sizeof s->b - 1 - s->n;
}

/* The shortest decimal that reads back as v. */
static void num_text(char *buf, size_t cap, double v)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static const char *ref_text(Arena *a, const char *seq, int off, bool abs)
{
    if (abs)
        return arena_printf(a, "%s[%d]", seq, off);
    if (off == 0)
        return arena_printf(a, "%s[k]", seq);
    return arena_printf(a, "%s[k%+d]", seq, off);
}

/* ---- polynomials in the optimizer's parameters ---------------------------- */

#define MAX_ATOMS 6
#define MAX_MONOS 8

typedef struct {
    double c;
    int n;
    const char *at[MAX_ATOMS];  /* sorted */
} Mono;

typedef struct {
    int n;
    Mono m[MAX_MONOS];
} Poly;

typedef struct {
    Arena *a;
    const Spec *s;
    const OptInfo *oi;
    const char *fail;           /* why the rule is not a linear multistep rule */
    int inlines;                /* sequences defined at k substituted so far */
} Sym;

/* Substitutions of y[k] = ... per statement: sema's causality rules out
 * cycles, but a chain of sequences each reading the previous twice would
 * still grow exponentially. */
#define MAX_INLINES 4096

static Poly poly_const(double c)
{
    Poly p = { 0 };
    if (c != 0) {
        p.n = 1;
        p.m[0].c = c;
    }
    return p;
}

static Poly poly_atom(const char *t)
{
    Poly p = { 0 };
    p.n = 1;
    p.m[0].c = 1;
    p.m[0].n = 1;
    p.m[0].at[0] = t;
    return p;
}

static bool mono_same(const Mono *x, const Mono *y)
{
    if (x->n != y->n)
        return false;
    for (int i = 0; i < x->n; i++)
        if (strcmp(x->at[i], y->at[i]) != 0)
            return false;
    return true;
}

static void poly_addm(Sym *S, Poly *p, const Mono *m)
{
    for (int i = 0; i < p->n; i++)
        if (mono_same(&p->m[i], m)) {
            p->m[i].c += m->c;
            if (fabs(p->m[i].c) < 1e-12) {
                memmove(&p->m[i], &p->m[i + 1], sizeof(Mono) * (size_t)(p->n - i - 1));
                p->n--;
            }
            return;
        }
    if (m->c == 0)
        return;
    if (p->n == MAX_MONOS) {
        S->fail = "a coefficient too long to solve symbolically";
        return;
    }
    p->m[p->n++] = *m;
}

static Poly poly_add(Sym *S, Poly x, const Poly *y, double sign)
{
    for (int i = 0; i < y->n; i++) {
        Mono m = y->m[i];
        m.c *= sign;
        poly_addm(S, &x, &m);
    }
    return x;
}

static Poly poly_mul(Sym *S, const Poly *x, const Poly *y)
{
    Poly r = { 0 };
    for (int i = 0; i < x->n; i++)
        for (int j = 0; j < y->n; j++) {
            const Mono *a = &x->m[i], *b = &y->m[j];
            if (a->n + b->n > MAX_ATOMS) {
                S->fail = "a coefficient too long to solve symbolically";
                return r;
            }
            Mono m = { .c = a->c * b->c };
            int ia = 0, ib = 0;
            while (ia < a->n || ib < b->n)
                m.at[m.n++] = ib == b->n || (ia < a->n && strcmp(a->at[ia], b->at[ib]) <= 0)
                                  ? a->at[ia++] : b->at[ib++];
            poly_addm(S, &r, &m);
        }
    return r;
}

static bool poly_const_value(const Poly *p, double *c)
{
    if (p->n == 0) {
        *c = 0;
        return true;
    }
    if (p->n == 1 && p->m[0].n == 0) {
        *c = p->m[0].c;
        return true;
    }
    return false;
}

/* A coefficient reads as negative when its first term does: -beta, -1 + g. */
static bool poly_negative(const Poly *p)
{
    return p->n > 0 && p->m[0].c < 0;
}

static void mono_print(Str *s, const Mono *m, bool with_sign)
{
    char num[32];
    double c = with_sign ? m->c : fabs(m->c);
    num_text(num, sizeof num, c);
    if (m->n == 0) {
        sput(s, "%s", num);
        return;
    }
    if (c == -1)
        sput(s, "-");
    else if (c != 1)
        sput(s, "%s * ", num);
    for (int i = 0; i < m->n; i++)
        sput(s, "%s%s", i ? " * " : "", m->at[i]);
}

static void poly_print(Str *s, const Poly *p)
{
    if (p->n == 0)
        sput(s, "0");
    for (int i = 0; i < p->n; i++) {
        if (i)
            sput(s, p->m[i].c < 0 ? " - " : " + ");
        mono_print(s, &p->m[i], i == 0);
    }
}

/* One product (a number times atoms) prints without brackets. */
static bool poly_simple(const Poly *p)
{
    return p->n <= 1;
}

/* ---- linear forms over states and grad blocks ------------------------------ */

typedef enum { T_STATE, T_GRAD } TermKind;

typedef struct {
    int seq, off;
    bool abs;
} Ref;

typedef struct {
    TermKind kind;
    Ref r;                      /* T_STATE */
    const char *text;           /* T_GRAD: as written, "grad(x[k])" */
    const Ref *reads;           /* T_GRAD: the states its argument reads */
    int nreads;
    Poly c;
} Term;

typedef struct {
    int n;
    Term *t;
} Lin;

typedef struct {
    bool tensor;
    Poly p;                     /* scalar */
    Lin l;                      /* tensor */
} Val;

static Lin lin_copy(Sym *S, const Lin *l, int extra)
{
    Lin r = { l->n, arena_alloc(S->a, sizeof(Term) * (size_t)(l->n + extra + 1)) };
    if (l->n)
        memcpy(r.t, l->t, sizeof(Term) * (size_t)l->n);
    return r;
}

static bool ref_same(const Ref *x, const Ref *y)
{
    return x->seq == y->seq && x->off == y->off && x->abs == y->abs;
}

static Lin lin_add(Sym *S, const Lin *x, const Lin *y, double sign)
{
    Lin r = lin_copy(S, x, y->n);
    for (int i = 0; i < y->n; i++) {
        Term t = y->t[i];
        Poly neg = poly_const(sign);
        t.c = poly_mul(S, &t.c, &neg);
        int j = 0;
        if (t.kind == T_STATE)
            for (; j < r.n; j++)
                if (r.t[j].kind == T_STATE && ref_same(&r.t[j].r, &t.r))
                    break;
        if (t.kind == T_STATE && j < r.n)
            r.t[j].c = poly_add(S, r.t[j].c, &t.c, 1);
        else
            r.t[r.n++] = t;
    }
    return r;
}

static Lin lin_scale(Sym *S, const Lin *x, const Poly *c)
{
    Lin r = lin_copy(S, x, 0);
    for (int i = 0; i < r.n; i++)
        r.t[i].c = poly_mul(S, &r.t[i].c, c);
    return r;
}

static const char *span_text(Sym *S, Span sp)
{
    int n = sp.end - sp.beg;
    char *t = arena_alloc(S->a, (size_t)n + 1);
    memcpy(t, S->s->src + sp.beg, (size_t)n);
    return t;
}

static bool sym_expr(Sym *S, const Expr *e, int shift, int depth, Val *out);

/* The states a linear form reads (grad arguments included). */
static int lin_refs(Sym *S, const Lin *l, Ref **out)
{
    int cap = 1;
    for (int i = 0; i < l->n; i++)
        cap += 1 + l->t[i].nreads;
    Ref *r = arena_alloc(S->a, sizeof(Ref) * (size_t)cap);
    int n = 0;
    for (int i = 0; i < l->n; i++) {
        const Term *t = &l->t[i];
        if (t->kind == T_STATE)
            r[n++] = t->r;
        else
            for (int j = 0; j < t->nreads; j++)
                r[n++] = t->reads[j];
    }
    *out = r;
    return n;
}

static bool sym_expr(Sym *S, const Expr *e, int shift, int depth, Val *out)
{
    const OptInfo *oi = S->oi;
    Val a, b;
    memset(out, 0, sizeof *out);
    if (depth > AST_MAX_DEPTH) {
        S->fail = "an expression too deep";
        return false;
    }
    switch (e->kind) {
    case EX_NUM:
        out->p = poly_const(e->u.num);
        return true;
    case EX_NAME:
        if (e->ref == AST_STEP)
            out->p = poly_atom(shift ? arena_printf(S->a, "(k %+d)", shift) : "k");
        else
            out->p = poly_atom(oi->decl->params[e->ref]->name);
        return true;
    case EX_INDEX: {
        const Seq *q = &oi->seqs[e->ref];
        if (!q->tensor) {
            out->p = poly_atom(ref_text(S->a, q->name, e->off + (e->abs ? 0 : shift), e->abs));
            return true;
        }
        out->tensor = true;
        if (q->off == 0 && !e->abs && ++S->inlines > MAX_INLINES) {
            S->fail = "too many substitutions of sequences defined at k";
            return false;
        }
        if (q->off == 0 && !e->abs)        /* y[k+o]: its definition, shifted */
            return sym_expr(S, oi->decl->stmts[q->def_stmt]->rhs, shift + e->off, depth + 1, out);
        out->l.n = 1;
        out->l.t = arena_alloc(S->a, sizeof(Term));
        out->l.t[0] = (Term){ .kind = T_STATE, .r = { e->ref, e->off + (e->abs ? 0 : shift), e->abs },
                              .c = poly_const(1) };
        return true;
    }
    case EX_CALL: {
        const char *f = e->u.call.name;
        if (strcmp(f, "concat") == 0) {
            S->fail = "concat(...) is not a sum of states with scalar coefficients: x[k] is a "
                      "channel slice of x[k+1], so the stage output already holds every state";
            return false;
        }
        if (strcmp(f, "grad") != 0) {       /* sqrt, pow: a scalar */
            out->p = poly_atom(span_text(S, e->span));
            return true;
        }
        if (e->u.call.nargs != 1 || !sym_expr(S, e->u.call.args[0]->value, shift, depth + 1, &a))
            return false;
        Ref *r;
        int nr = lin_refs(S, &a.l, &r);
        const char *text = span_text(S, e->span);
        if (shift) {
            Str st = { .n = 0 };
            sput(&st, "%s shifted by %+d", text, shift);
            text = arena_strdup(S->a, st.b);
        }
        out->tensor = true;
        out->l.n = 1;
        out->l.t = arena_alloc(S->a, sizeof(Term));
        out->l.t[0] = (Term){ .kind = T_GRAD, .text = text, .reads = r, .nreads = nr, .c = poly_const(1) };
        return true;
    }
    case EX_NEG: {
        if (!sym_expr(S, e->u.bin.a, shift, depth + 1, &a))
            return false;
        Poly m1 = poly_const(-1);
        *out = a;
        if (a.tensor)
            out->l = lin_scale(S, &a.l, &m1);
        else
            out->p = poly_mul(S, &a.p, &m1);
        return true;
    }
    case EX_ADD: case EX_SUB: case EX_MUL: case EX_DIV:
        if (!sym_expr(S, e->u.bin.a, shift, depth + 1, &a) || !sym_expr(S, e->u.bin.b, shift, depth + 1, &b))
            return false;
        break;
    }
    double sign = e->kind == EX_SUB ? -1 : 1, c;
    switch (e->kind) {
    case EX_ADD: case EX_SUB:
        if (a.tensor != b.tensor) {
            S->fail = "a scalar added to a tensor";
            return false;
        }
        out->tensor = a.tensor;
        if (a.tensor)
            out->l = lin_add(S, &a.l, &b.l, sign);
        else
            out->p = poly_add(S, a.p, &b.p, sign);
        return true;
    case EX_MUL:
        if (a.tensor && b.tensor) {
            S->fail = "a product of tensors";
            return false;
        }
        out->tensor = a.tensor || b.tensor;
        if (a.tensor)
            out->l = lin_scale(S, &a.l, &b.p);
        else if (b.tensor)
            out->l = lin_scale(S, &b.l, &a.p);
        else
            out->p = poly_mul(S, &a.p, &b.p);
        return true;
    case EX_DIV: {
        if (b.tensor) {
            S->fail = "a division by a tensor";
            return false;
        }
        Poly inv = poly_const_value(&b.p, &c) && c != 0
                       ? poly_const(1 / c)
                       : poly_atom(arena_printf(S->a, "1 / (%s)", span_text(S, e->u.bin.b->span)));
        out->tensor = a.tensor;
        if (a.tensor)
            out->l = lin_scale(S, &a.l, &inv);
        else
            out->p = poly_mul(S, &a.p, &inv);
        return true;
    }
    default:
        return false;
    }
}

/* ---- the optimizer's rule, solved for the states to recover ---------------- */

/* A term c * t of a formula's numerator, with its sign. */
static void term_print(Str *s, const Poly *c, const char *t, bool first)
{
    Poly p = *c;
    bool neg = poly_negative(&p);
    if (neg)
        for (int i = 0; i < p.n; i++)
            p.m[i].c = -p.m[i].c;
    if (!first)
        sput(s, neg ? " - " : " + ");
    else if (neg)
        sput(s, "-");
    double v;
    if (poly_const_value(&p, &v) && v == 1) {
        sput(s, "%s", t);
        return;
    }
    if (poly_simple(&p)) {
        mono_print(s, &p.m[0], true);
    } else {
        sput(s, "(");
        poly_print(s, &p);
        sput(s, ")");
    }
    sput(s, " * %s", t);
}

typedef struct {
    int stmt;                   /* update statement (of a tensor sequence, s[k+1] = ...) */
    int lhs;                    /* its sequence */
    Lin l;
} Eq;

static const char *term_name(Sym *S, const Term *t)
{
    if (t->kind == T_GRAD)
        return t->text;
    return ref_text(S->a, S->oi->seqs[t->r.seq].name, t->r.off, t->r.abs);
}

static int term_index(const Lin *l, const Ref *u)
{
    for (int i = 0; i < l->n; i++)
        if (l->t[i].kind == T_STATE && ref_same(&l->t[i].r, u))
            return i;
    return -1;
}

static bool grad_reads(const Lin *l, const Ref *u, const char **which)
{
    for (int i = 0; i < l->n; i++)
        for (int j = 0; l->t[i].kind == T_GRAD && j < l->t[i].nreads; j++)
            if (ref_same(&l->t[i].reads[j], u)) {
                *which = l->t[i].text;
                return true;
            }
    return false;
}

/* unknown = (lhs - others) / c, printed with the signs the reader expects. */
static void formula_print(Sym *S, const Eq *q, int ui, const char *unknown, Str *f, Str *dv)
{
    const Poly *cu = &q->l.t[ui].c;
    bool neg = poly_negative(cu);
    Poly div = *cu;
    if (neg)
        for (int i = 0; i < div.n; i++)
            div.m[i].c = -div.m[i].c;
    const char *lhs = ref_text(S->a, S->oi->seqs[q->lhs].name, 1, false);
    Str num = { .n = 0 };
    int nterms = 0;
    Poly one = poly_const(1);
    if (!neg)
        term_print(&num, &one, lhs, nterms++ == 0);
    for (int i = 0; i < q->l.n; i++) {
        if (i == ui)
            continue;
        Poly c = q->l.t[i].c;
        if (!neg)
            for (int j = 0; j < c.n; j++)
                c.m[j].c = -c.m[j].c;
        term_print(&num, &c, term_name(S, &q->l.t[i]), nterms++ == 0);
    }
    if (neg) {
        Poly m1 = poly_const(-1);
        term_print(&num, &m1, lhs, nterms++ == 0);
    }
    double v;
    dv->n = 0;
    dv->b[0] = 0;
    if (poly_const_value(&div, &v) && v == 1) {
        sput(f, "%s = %s", unknown, num.b);
        return;
    }
    bool bare = div.n == 1 && (div.m[0].n == 0 || (div.m[0].c == 1 && div.m[0].n == 1));
    poly_print(dv, &div);
    sput(f, nterms > 1 ? "%s = (%s) / " : "%s = %s / ", unknown, num.b);
    sput(f, bare ? "%s" : "(%s)", dv->b);
}

typedef struct {
    InvRule pub;
    Sym S;
    Ref *unk;                   /* per unknown: its reference (offset relative to k) */
    int *unk_eq;                /* per unknown: the equation that gives it */
    Eq *eqs;
    int neqs;
    int *minoff;                /* per sequence: the oldest offset read (1: none) */
} Rule;

static Rule *rule_build(Arena *a, const Spec *s, int opt)
{
    const OptInfo *oi = &s->opts[opt];
    const OptDecl *od = oi->decl;
    Rule *R = arena_alloc(a, sizeof *R);
    Sym *S = &R->S;
    *S = (Sym){ a, s, oi, NULL, 0 };
    InvRule *P = &R->pub;
    P->opt = od->name;
    R->eqs = arena_alloc(a, sizeof(Eq) * (size_t)(od->nstmts + 1));
    R->minoff = arena_alloc(a, sizeof(int) * (size_t)(oi->nseqs + 1));
    for (int i = 0; i < oi->nseqs; i++)
        R->minoff[i] = 1;
    for (int i = 0; i < od->nstmts; i++) {
        int q = oi->stmt_seq[i];
        if (oi->stmt_kind[i] != SK_UPDATE || !oi->seqs[q].tensor || oi->seqs[q].off != 1)
            continue;
        Val v;
        S->inlines = 0;
        if (!sym_expr(S, od->stmts[i]->rhs, 0, 0, &v) || S->fail) {
            P->why = S->fail ? S->fail : "an update that is not linear";
            return R;
        }
        if (!v.tensor)
            continue;
        R->eqs[R->neqs++] = (Eq){ i, q, v.l };
        Ref *r;
        int nr = lin_refs(S, &v.l, &r);
        for (int j = 0; j < nr; j++)
            if (!r[j].abs && r[j].off < R->minoff[r[j].seq])
                R->minoff[r[j].seq] = r[j].off;
    }
    /* The states one backward step must recover: each sequence's oldest. */
    R->unk = arena_alloc(a, sizeof(Ref) * (size_t)(oi->nseqs + 1));
    R->unk_eq = arena_alloc(a, sizeof(int) * (size_t)(oi->nseqs + 1));
    P->unknown = arena_alloc(a, sizeof(char *) * (size_t)(oi->nseqs + 1));
    P->formula = arena_alloc(a, sizeof(char *) * (size_t)(oi->nseqs + 1));
    P->divisor = arena_alloc(a, sizeof(char *) * (size_t)(oi->nseqs + 1));
    int nu = 0;
    Ref all[64];
    for (int q = 0; q < oi->nseqs && nu < 64; q++)
        if (oi->seqs[q].tensor && oi->seqs[q].off == 1 && R->minoff[q] <= 0)
            all[nu++] = (Ref){ q, R->minoff[q], false };
    bool solved[64] = { false };
    bool used[64] = { false };
    int nsolved = 0;
    for (bool progress = true; progress && nsolved < nu;) {
        progress = false;
        for (int e = 0; e < R->neqs && !progress; e++) {
            if (used[e])
                continue;
            const Lin *l = &R->eqs[e].l;
            int ui = -1, cnt = 0, which = -1;
            const char *g;
            for (int u = 0; u < nu; u++) {
                if (solved[u])
                    continue;
                int ti = term_index(l, &all[u]);
                if (grad_reads(l, &all[u], &g))
                    cnt += 2;       /* implicit in that unknown */
                else if (ti >= 0)
                    cnt++, ui = ti, which = u;
            }
            if (cnt != 1)
                continue;
            used[e] = solved[which] = true;
            const char *un = term_name(S, &l->t[ui]);
            Str f = { .n = 0 }, dv = { .n = 0 };
            formula_print(S, &R->eqs[e], ui, un, &f, &dv);
            R->unk[P->n] = all[which];
            R->unk_eq[P->n] = e;
            P->unknown[P->n] = un;
            P->formula[P->n] = arena_strdup(a, f.b);
            P->divisor[P->n] = dv.n ? arena_strdup(a, dv.b) : NULL;
            P->n++;
            nsolved++;
            progress = true;
        }
    }
    if (nsolved == nu) {
        P->invertible = true;
        return R;
    }
    /* Why not: the first unknown no equation gives. */
    for (int u = 0; u < nu; u++) {
        if (solved[u])
            continue;
        const char *un = ref_text(a, oi->seqs[all[u].seq].name, all[u].off, false);
        for (int e = 0; e < R->neqs; e++) {
            const char *g;
            int ti = term_index(&R->eqs[e].l, &all[u]);
            if (grad_reads(&R->eqs[e].l, &all[u], &g)) {
                Str f = { .n = 0 }, dv = { .n = 0 };
                if (ti >= 0)
                    formula_print(S, &R->eqs[e], ti, un, &f, &dv);
                if (f.n > 60)       /* only short ones help the reader */
                    ti = -1;
                P->why = arena_printf(a, "%s reads %s, the state to recover, so %s is implicit%s%s%s: "
                                 "only a fixed-point iteration could solve it (it converges when "
                                 "grad is a contraction)",
                              g, un, un, ti >= 0 ? " (" : "", ti >= 0 ? f.b : "", ti >= 0 ? ")" : "");
                return R;
            }
        }
        P->why = arena_printf(a, "no update gives %s alone (its coefficient is zero, or it is coupled "
                         "with another state to recover)", un);
        return R;
    }
    return R;
}

static int opt_index(const Spec *s, const char *opt)
{
    for (int i = 0; i < s->nopt; i++)
        if (strcmp(s->optd[i]->name, opt) == 0)
            return i;
    return -1;
}

InvRule *inv_rule(Arena *a, const Spec *s, const char *opt)
{
    int i = opt_index(s, opt);
    return i < 0 ? NULL : &rule_build(a, s, i)->pub;
}

/* ---- the unrolled network ------------------------------------------------- */

const char *inv_verdict_name(InvVerdict v)
{
    switch (v) {
    case INV_YES: return "invertible";
    case INV_COND: return "conditionally invertible";
    case INV_NO: return "not invertible";
    case INV_SKIP: return "nothing to recover";
    }
    return "?";
}

typedef struct {
    const char *name;
    int id;
} NameId;

static int name_cmp(const void *x, const void *y)
{
    return strcmp(((const NameId *)x)->name, ((const NameId *)y)->name);
}

typedef struct {
    Arena *a;
    const IrGraph *g;
    NameId *names;
    int nnames;
    bool *saved;                /* output read by some backward */
    double *size;               /* floats per image */
} Net;

static int node_named(const Net *N, const char *name)
{
    NameId key = { name, 0 };
    const NameId *f = bsearch(&key, N->names, (size_t)N->nnames, sizeof key, name_cmp);
    return f ? f->id : -1;
}

static int state_node(const Net *N, int stage, const char *seq, int j)
{
    char buf[256];
    snprintf(buf, sizeof buf, "stage%d.%s%d", stage, seq, j);
    return node_named(N, buf);
}

typedef struct {
    InvVerdict v;
    const char *why;
    InvRebuild *rb;             /* YES / COND: the states the step gives back */
    int nrb;
} StepV;

/* Whether node id, computed inside step k of stage st (not through the
 * step's state sums), reads node target. */
static bool block_reads(const Net *N, int st, int k, int id, int target, int depth)
{
    const IrNode *n = &N->g->nodes[id];
    if (n->stage != st || n->step != k || n->op == OP_SUM || depth > 64)
        return false;
    for (int t = 0; t < n->nin; t++)
        if (n->in[t] == target || block_reads(N, st, k, n->in[t], target, depth + 1))
            return true;
    return false;
}

/* Step k of stage st: can its inverse give back the states step k-1 needs? */
static StepV step_verdict(const Net *N, const Rule *R, int st, int k, bool strided)
{
    Arena *a = N->a;
    const OptInfo *oi = R->S.oi;
    const InvRule *P = &R->pub;
    if (k == 0 && strided)
        return (StepV){ .v = INV_NO, .why = "it changes the shape (the first grad strides and the shortcut "
                                "subsamples x[0]), so x[0] cannot be rebuilt from the stage's states; "
                                "a memory-free build recomputes its grad block from x[0], which stays stored" };
    if (!P->invertible && !P->n && P->why && !R->neqs)
        return (StepV){ .v = INV_NO, .why = P->why };
    /* The states this step would recover; only those after x[0] matter. */
    bool needed = false;
    for (int q = 0; q < oi->nseqs; q++)
        if (oi->seqs[q].tensor && oi->seqs[q].off == 1 && R->minoff[q] <= 0 && k + R->minoff[q] >= 1)
            needed = true;
    if (!needed)
        return (StepV){ .v = INV_SKIP, .why = "its inverse would only give back the stage input x[0] "
                                  "or initial values, which stay available" };
    if (!P->invertible)
        return (StepV){ .v = INV_NO, .why = P->why };
    StepV res = { INV_YES, NULL, arena_alloc(a, sizeof(InvRebuild) * (size_t)(P->n + 1)), 0 };
    int *unode = arena_alloc(a, sizeof(int) * (size_t)(P->n + 1));
    for (int u = 0; u < P->n; u++) {
        const Ref *r = &R->unk[u];
        unode[u] = k + r->off >= 1 ? state_node(N, st, oi->seqs[r->seq].name, k + r->off) : -1;
    }
    for (int u = 0; u < P->n; u++) {
        const Ref *r = &R->unk[u];
        int j = k + r->off;
        if (j < 1)
            continue;
        const Eq *q = &R->eqs[R->unk_eq[u]];
        const char *ln = oi->seqs[q->lhs].name;
        int U = unode[u], L = state_node(N, st, ln, k + 1);
        if (U < 0 || L < 0 || N->g->nodes[L].op != OP_SUM)
            return (StepV){ .v = INV_NO, .why = arena_printf(a, "%s or %s[k+1] is not a sum node of its own in the IR",
                                         P->unknown[u], ln) };
        /* The grad blocks feeding this equation may read only states known
         * by now: not this unknown nor one recovered after it. */
        const IrNode *ln_node = &N->g->nodes[L];
        for (int t = 0; t < ln_node->nin; t++)
            for (int v = u; v < P->n; v++)
                if (unode[v] >= 0 && block_reads(N, st, k, ln_node->in[t], unode[v], 0))
                    return (StepV){ .v = INV_NO, .why = arena_printf(a, "a grad block of %s[k+1] reads %s, not yet recovered",
                                                 ln, P->unknown[v]) };
        int at = -1;
        for (int t = 0; t < ln_node->nin; t++)
            if (ln_node->in[t] == U)
                at = t;
        const char *dv = P->divisor[u] ? P->divisor[u] : "1";
        if (at < 0)
            return (StepV){ .v = INV_NO, .why = arena_printf(a, "%s's coefficient %s is 0 here, so %s[k+1] does not hold it",
                                         P->unknown[u], dv, ln) };
        res.rb[res.nrb++] = (InvRebuild){ U, L, at, j, 1 - r->off };
        const IrCoef *c = &ln_node->u.sum.coef[at];
        if (c->nterms == 0) {
            if (c->c0 == 0)
                return (StepV){ .v = INV_NO, .why = arena_printf(a, "%s's coefficient %s is 0 here", P->unknown[u], dv) };
            continue;
        }
        /* Said without the step's parameter names, so equal steps group. */
        double init = c->c0;
        for (int t = 0; t < c->nterms; t++)
            init += c->a[t] * N->g->params[c->param[t]].init_value;
        res.v = INV_COND;
        res.why = arena_printf(a, "while %s != 0 (learned, one per step%s)", dv,
                       init == 0 ? "; it starts at 0, where it is not invertible" : "");
    }
    return res;
}

static void param_values(Str *s, const Spec *sp, const StageInfo *si)
{
    const OptDecl *od = sp->optd[si->opt];
    for (int i = 0; i < od->nparams; i++) {
        char num[32];
        num_text(num, sizeof num, si->pv[i].value);
        if (si->pv[i].learned)
            sput(s, "%s%s learned per step from %s", i ? ", " : "", od->params[i]->name, num);
        else
            sput(s, "%s%s = %s", i ? ", " : "", od->params[i]->name, num);
    }
}

static void analyze_stage(const Net *N, const Spec *s, const NetInfo *ni, int st, InvStage *out,
                          bool *kept, double *work)
{
    Arena *a = N->a;
    const IrGraph *g = N->g;
    const StageInfo *si = &ni->stages[st - 1];
    Rule *R = rule_build(a, s, si->opt);
    const OptInfo *oi = R->S.oi;
    int steps = 0, lo = -1, hi = -1;
    bool strided = false;
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        if (n->stage != st)
            continue;
        if (lo < 0)
            lo = i;
        hi = i;
        if (n->step + 1 > steps)
            steps = n->step + 1;
        if (strstr(n->name, ".shortcut"))
            strided = true;
    }
    out->stage = st;
    out->opt = oi->decl->name;
    out->steps = steps;
    out->rule = &R->pub;
    Str pv = { .n = 0 };
    param_values(&pv, s, si);
    out->params = arena_strdup(a, pv.b);
    int *first = arena_alloc(a, sizeof(int) * (size_t)(steps + 1));
    int *last = arena_alloc(a, sizeof(int) * (size_t)(steps + 1));
    for (int k = 0; k < steps; k++)
        first[k] = g->nnodes, last[k] = -1;
    for (int i = lo; i >= 0 && i <= hi; i++) {
        int k = g->nodes[i].step;
        if (g->nodes[i].stage == st && k >= 0) {
            if (i < first[k])
                first[k] = i;
            last[k] = i;
        }
    }
    StepV *sv = arena_alloc(a, sizeof(StepV) * (size_t)(steps + 1));
    for (int k = 0; k < steps; k++)
        sv[k] = step_verdict(N, R, st, k, strided);
    out->step_v = arena_alloc(a, sizeof(InvVerdict) * (size_t)(steps + 1));
    out->rebuild = arena_alloc(a, sizeof(InvRebuild *) * (size_t)(steps + 1));
    out->nrebuild = arena_alloc(a, sizeof(int) * (size_t)(steps + 1));
    for (int k = 0; k < steps; k++) {
        out->step_v[k] = sv[k].v;
        out->rebuild[k] = sv[k].rb;
        out->nrebuild[k] = sv[k].v == INV_YES || sv[k].v == INV_COND ? sv[k].nrb : 0;
    }
    /* Runs of equal verdicts, and the stage's verdict (a strided step 0 is
     * reported on its own: it is the step, not the rule, that fails). */
    out->runs = arena_alloc(a, sizeof(InvSteps) * (size_t)(steps + 1));
    bool any = false, no = false, cond = false;
    for (int k = 0; k < steps; k++) {
        InvSteps *r = out->nruns ? &out->runs[out->nruns - 1] : NULL;
        if (r && r->v == sv[k].v && (r->why == sv[k].why || (r->why && sv[k].why && strcmp(r->why, sv[k].why) == 0)))
            r->last = k;
        else
            out->runs[out->nruns++] = (InvSteps){ k, k, sv[k].v, sv[k].why };
        if (sv[k].v == INV_SKIP || (k == 0 && strided))
            continue;
        any = true;
        if (sv[k].v == INV_NO && !no)
            no = true, out->why = sv[k].why;
        if (sv[k].v == INV_COND && !cond) {
            cond = true;
            if (!no)
                out->why = sv[k].why;
        }
    }
    out->v = no ? INV_NO : cond ? INV_COND : INV_YES;
    if (!any && !no)
        out->why = "nothing to reconstruct";
    /* Memory: a step that is not invertible keeps its activations; the rest
     * keep the last window of states and recompute one step at a time. */
    Str ks = { .n = 0 };
    for (int q = 0; q < oi->nseqs; q++) {
        if (!oi->seqs[q].tensor || oi->seqs[q].off != 1)
            continue;
        for (int o = 1; o >= (R->minoff[q] < 1 ? R->minoff[q] + 1 : 1); o--) {
            int j = steps - 1 + o, id = j >= 1 ? state_node(N, st, oi->seqs[q].name, j) : -1;
            if (id >= 0 && !kept[id]) {
                kept[id] = true;
                sput(&ks, "%s%s[%d]", ks.n ? ", " : "", oi->seqs[q].name, j);
            }
        }
    }
    bool all_no = true;
    for (int k = 0; k < steps; k++) {
        if (sv[k].v != INV_NO) {
            all_no = false;
            continue;
        }
        /* A strided step 0 is recomputed from x[0] (the previous stage's
         * output, stored anyway) like the other steps; only its shortcut,
         * which step 1 reads too, stays. */
        bool recomputed = k == 0 && strided;
        for (int i = first[k]; i <= last[k]; i++)
            if (g->nodes[i].stage == st && g->nodes[i].step == k
                && (!recomputed || strstr(g->nodes[i].name, ".shortcut")))
                kept[i] = true;
        /* The states older than a step that cannot give them back. */
        for (int q = 0; q < oi->nseqs; q++) {
            if (!oi->seqs[q].tensor || oi->seqs[q].off != 1)
                continue;
            for (int o = 0; o >= R->minoff[q]; o--) {
                int id = k + o >= 1 ? state_node(N, st, oi->seqs[q].name, k + o) : -1;
                if (id >= 0)
                    kept[id] = true;
            }
        }
    }
    for (int i = lo; i >= 0 && i <= hi; i++)       /* outside any step: keep */
        if (g->nodes[i].stage == st && g->nodes[i].step < 0)
            kept[i] = true;
    Str kt = { .n = 0 };
    if (all_no) {
        sput(&kt, "every activation (as the stored build)");
    } else {
        sput(&kt, "%s (the last states)", ks.n ? ks.b : "the stage output");
        for (int r = 0; r < out->nruns; r++)
            if (out->runs[r].v == INV_NO && strided && out->runs[r].first == 0
                && out->runs[r].last == 0) {
                sput(&kt, "; step 0's shortcut (its grad block is recomputed from x[0])");
            } else if (out->runs[r].v == INV_NO) {
                if (out->runs[r].first == out->runs[r].last)
                    sput(&kt, "; step %d's activations", out->runs[r].first);
                else
                    sput(&kt, "; steps %d-%d's activations", out->runs[r].first, out->runs[r].last);
            }
        sput(&kt, "; each other step's grad block is recomputed from the rebuilt states; "
                  "per rebuilt state, its correction (1 byte an element and an escape list: "
                  "the rebuild is exact)");
    }
    out->kept = arena_strdup(a, kt.b);
    double stored = 0, keep = 0, w = 0;
    for (int i = lo; i >= 0 && i <= hi; i++)
        if (g->nodes[i].stage == st) {
            stored += N->saved[i] ? N->size[i] : 0;
            keep += kept[i] && (N->saved[i] || g->nodes[i].op == OP_SUM) ? N->size[i] : 0;
        }
    /* Exact reconstruction (the build's default): a correction record per
     * rebuilt state, sized as the planner sizes it (in floats). */
    for (int k = 0; k < steps; k++)
        for (int r = 0; r < out->nrebuild[k]; r++) {
            const InvRebuild *rb = &out->rebuild[k][r];
            double c = plan_coef_init(g, &g->nodes[rb->via].u.sum.coef[rb->at]);
            keep += (double)plan_mf_corr_elems((size_t)N->size[rb->node], c);
        }
    for (int k = 0; k < steps; k++) {
        double sk = 0;
        for (int i = first[k]; i <= last[k]; i++)
            if (g->nodes[i].stage == st && g->nodes[i].step == k && N->saved[i] && !kept[i])
                sk += N->size[i];
        if (sk > w)
            w = sk;
    }
    out->stored = stored;
    out->free = keep + w;
    if (out->v == INV_NO || out->free > stored) {     /* the stage stays as the stored build */
        out->free = stored;
        out->kept = "every activation (as the stored build)";
        w = 0;
    }
    *work = w;
}

InvReport *inv_analyze(Arena *a, const Spec *s, const IrGraph *g)
{
    int ni = -1;
    for (int i = 0; i < s->nnet; i++)
        if (strcmp(s->netd[i]->name, g->name) == 0)
            ni = i;
    if (ni < 0)
        return NULL;
    const NetInfo *net = &s->nets[ni];
    Net N = { .a = a, .g = g };
    N.names = arena_alloc(a, sizeof(NameId) * (size_t)(g->nnodes + 1));
    N.saved = arena_alloc(a, sizeof(bool) * (size_t)(g->nnodes + 1));
    N.size = arena_alloc(a, sizeof(double) * (size_t)(g->nnodes + 1));
    bool *kept = arena_alloc(a, sizeof(bool) * (size_t)(g->nnodes + 1));
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        N.names[N.nnames++] = (NameId){ n->name, i };
        N.size[i] = (double)n->shape.c * n->shape.h * n->shape.w;
        if (op_bwd_reads_output(n))
            N.saved[i] = true;
        if (op_bwd_reads_input(n))
            for (int t = 0; t < n->nin; t++)
                N.saved[n->in[t]] = true;
    }
    qsort(N.names, (size_t)N.nnames, sizeof(NameId), name_cmp);
    InvReport *r = arena_alloc(a, sizeof *r);
    r->net = g->name;
    r->nstages = net->nstages;
    r->stages = arena_alloc(a, sizeof(InvStage) * (size_t)(net->nstages + 1));
    double maxw = 0, kept_sum = 0;
    for (int st = 1; st <= net->nstages; st++) {
        double w = 0;
        analyze_stage(&N, s, net, st, &r->stages[st - 1], kept, &w);
        r->stored += r->stages[st - 1].stored;
        kept_sum += r->stages[st - 1].free - w;
        if (w > maxw)
            maxw = w;
    }
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].stage < 1 && N.saved[i])
            r->outside += N.size[i];
    r->stored += r->outside;
    r->free = r->outside + kept_sum + maxw;
    return r;
}

static void floats_print(FILE *out, double f)
{
    fprintf(out, "%.0f floats (%.1f KiB)", f, f * 4 / 1024);
}

void inv_print(FILE *out, const InvReport *r)
{
    fprintf(out, "network %s\n", r->net);
    for (int i = 0; i < r->nstages; i++) {
        const InvStage *st = &r->stages[i];
        fprintf(out, "  stage %d: %s%s%s%s, %d step%s: %s", st->stage, st->opt, *st->params ? "(" : "",
                st->params, *st->params ? ")" : "", st->steps, st->steps == 1 ? "" : "s",
                inv_verdict_name(st->v));
        if (st->why)
            fprintf(out, st->v == INV_COND ? ", %s" : ": %s", st->why);
        fputc('\n', out);
        for (int f = 0; f < st->rule->n && st->v != INV_NO; f++)
            fprintf(out, "    %s\n", st->rule->formula[f]);
        for (int k = 0; k < st->nruns; k++) {
            const InvSteps *rn = &st->runs[k];
            if (rn->first == rn->last)
                fprintf(out, "    step %d: %s", rn->first, inv_verdict_name(rn->v));
            else
                fprintf(out, "    steps %d-%d: %s", rn->first, rn->last, inv_verdict_name(rn->v));
            if (rn->why && rn->why != st->why)
                fprintf(out, rn->v == INV_COND ? ", %s" : ": %s", rn->why);
            fputc('\n', out);
        }
        fprintf(out, "    memory-free keeps: %s\n", st->kept);
        fprintf(out, "    activations per image: stored ");
        floats_print(out, st->stored);
        fprintf(out, ", memory-free ");
        floats_print(out, st->free);
        fprintf(out, "\n");
    }
    fprintf(out, "  whole network, activations per image (stem and head included): stored ");
    floats_print(out, r->stored);
    fprintf(out, ", memory-free ");
    floats_print(out, r->free);
    fprintf(out, ": %.2fx less\n", r->free > 0 ? r->stored / r->free : 1.0);
}
