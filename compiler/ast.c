/* ast.c — syntax tree constructors used by the grammar. */
#include <string.h>
#include "ast.h"

void ast_push(Arena *a, PList *l, void *p)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        void **v = arena_alloc(a, sizeof(void *) * (size_t)cap);
        if (l->n)
            memcpy(v, l->v, sizeof(void *) * (size_t)l->n);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = p;
}

/* A unary or binary node; refuses (once, fatally) trees deeper than
 * AST_MAX_DEPTH so later recursive passes stay bounded. */
Expr *ast_expr(ParseCtx *c, ExprKind k, Span sp, Expr *a, Expr *b)
{
    Expr *e = arena_alloc(c->arena, sizeof *e);
    e->kind = k;
    e->span = sp;
    e->ref = AST_UNRESOLVED;
    e->u.bin.a = a;
    e->u.bin.b = b;
    int d = 0;
    if (a && a->depth > d)
        d = a->depth;
    if (b && b->depth > d)
        d = b->depth;
    e->depth = d + 1;
    /* >=, not ==: a call's depth is set after this (by the grammar), so a
     * parent can jump straight past the limit. Silent once reported. */
    if (e->depth >= AST_MAX_DEPTH)
        diag_fatal(c->diag, sp, "expression nested more than %d levels deep", AST_MAX_DEPTH);
    return e;
}
