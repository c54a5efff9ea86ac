/* ast.h — the front end's internal header: syntax tree (every node carries
 * its Span), the checked spec (Spec), and the phase entry points of the
 * grammar, sema.c, network.c and unroll.c, driven by load.c. */
#ifndef OPTC_AST_H
#define OPTC_AST_H

#include <stdbool.h>
#include "diag.h"
#include "frontend.h"

/* Expressions deeper than this are refused (recursion bound for sema and
 * unroll; the lexer separately bounds bracket nesting). */
#define AST_MAX_DEPTH 500
#define AST_MAX_NESTING 200

/* Expr.ref of a name that sema has not resolved, and of the step index k. */
#define AST_UNRESOLVED (-2)
#define AST_STEP (-1)

typedef enum { EX_NUM, EX_NAME, EX_INDEX, EX_CALL, EX_NEG, EX_ADD, EX_SUB, EX_MUL, EX_DIV } ExprKind;

typedef struct Expr Expr;
typedef struct Arg Arg;

struct Arg {                    /* name = value, or a positional value (name NULL) */
    const char *name;
    Span span, name_span;
    Expr *value;
};

struct Expr {
    ExprKind kind;
    Span span;
    int depth;
    /* Resolved by sema (ast_expr sets ref to AST_UNRESOLVED): for EX_NAME
     * the parameter index, AST_STEP for k; for EX_INDEX the sequence index
     * and the index form s[k+off] (abs false) or s[off] (abs true). */
    int ref, off;
    bool abs;
    union {
        double num;                                              /* EX_NUM */
        const char *name;                                        /* EX_NAME */
        struct { const char *name; Span name_span; Expr *index; } index;
        struct { const char *name; Span name_span; Arg **args; int nargs; } call;
        struct { Expr *a, *b; } bin;                             /* EX_NEG uses a */
    } u;
};

typedef struct {
    const char *name;
    Span span, name_span;
    Expr *def;
} Param;

typedef struct {
    const char *seq;
    Span span, seq_span;
    Expr *index;
    Expr *rhs;
} Stmt;

typedef struct {
    const char *name;
    Span span, name_span;
    Param **params;
    int nparams;
    Stmt **stmts;
    int nstmts;
} OptDecl;

/* Network bodies use one generic item syntax, interpreted by sema:
 *   name [=] group, group, ... ;     group = atom atom ...
 *   name { item ... }                 (train block) */
typedef enum { AT_NUM, AT_NAME, AT_DIMS, AT_CALL } AtomKind;

typedef struct {
    AtomKind kind;
    Span span;
    double num;
    const char *name;
    int dims[3];
    Arg **args;
    int nargs;
} Atom;

typedef struct {
    Atom **atoms;
    int natoms;
    Span span;
} Group;

typedef struct Item Item;
struct Item {
    const char *name;
    Span span, name_span;
    bool eq, block;
    Group **groups;
    int ngroups;
    Item **items;
    int nitems;
};

typedef struct {
    const char *name;
    Span span, name_span;
    Item **items;
    int nitems;
} NetDecl;

/* A growable pointer list in the arena (parser helper). */
typedef struct { void **v; int n, cap; } PList;
void ast_push(Arena *a, PList *l, void *p);

/* Parser context: %parse-param of the grammar. */
typedef struct {
    Arena *arena;
    Diag *diag;
    PList opts, nets;
    int pos, depth;         /* lexer: byte offset, bracket nesting */
    PList syntax_errors;    /* int * offsets of syntax errors */
    int open[AST_MAX_NESTING + 1];  /* offsets of the unclosed brackets */
} ParseCtx;

Expr *ast_expr(ParseCtx *c, ExprKind k, Span sp, Expr *a, Expr *b);

/* ---- checked spec ------------------------------------------------------ */

typedef struct {            /* one sequence of an optimizer: x, v, t, y ... */
    const char *name;
    bool tensor;
    int off;                /* defined as s[k+off]: 0 or 1; -1 never updated */
    int def_stmt;           /* statement index of that update */
    int init_stmt;          /* statement index of s[0] = ..., or -1 */
    double init;            /* scalar initial value */
} Seq;

typedef enum { SK_INIT, SK_UPDATE } StmtKind;

typedef struct {
    bool learned;
    double value;           /* fixed value, or the learned initial value */
} PVal;

typedef struct {
    OptDecl *decl;
    Seq *seqs;
    int nseqs;
    int state;              /* index of x */
    int *stmt_seq;          /* per statement: its sequence */
    StmtKind *stmt_kind;
    PVal *defaults;         /* per parameter */
    bool *overridden;       /* per parameter: a -D set it for all uses */
    PVal *override;
    PVal *values;           /* per parameter: the value in effect (default, then -D) */
    bool ok;
} OptInfo;

/* One layer of a stem, grad block, transition or head (layer.c). */
typedef struct {
    IrOp op;                /* the op it becomes (optable.h) */
    Span span;
    int k;                  /* conv / avgpool size */
    int width;              /* conv: explicit width, 0 = stage width */
    double ratio;           /* conv: width = ratio * input channels (0: unused) */
    double p;               /* dropout */
    int m;                  /* exact: columns of U */
    char phi[16];           /* exact: the activation */
    double a;               /* an activation's argument (also exact's phi's) */
} Layer;

typedef struct {
    Span span;
    int opt;                /* OptInfo index */
    PVal *pv;               /* per optimizer parameter: default, then the
                             * stage's argument, then -D (resolved once) */
    int steps, width, stride;   /* width 0: keep the input channels */
} StageInfo;

typedef enum { SC_PAD, SC_CONV } Shortcut;

typedef struct {
    NetDecl *decl;
    IrShape input;
    int classes;
    Layer *stem; int nstem;
    Layer *grad; int ngrad; Span grad_span;
    Layer *trans; int ntrans;
    Layer *head; int nhead; Span head_span;
    StageInfo *stages; int nstages;
    Shortcut shortcut;
    bool share;             /* grad weights shared by a stage's steps */
    IrTrain train;
} NetInfo;

struct Spec {
    const char *path;
    const char *src;
    size_t len;
    Arena *arena;
    OptDecl **optd; int nopt;
    NetDecl **netd; int nnet;
    OptInfo *opts;
    NetInfo *nets;
};

/* The parse (grammar/parser.y): fills ctx->opts / ctx->nets. */
void ast_parse(ParseCtx *c, const char *src, size_t len);

/* The phases, called in this order by load.c (fe_load_string); each
 * consumes what the previous one filled in and none calls back.
 *
 * sema.c: an optimizer's names, types, linearity and causality; resolves
 * every Expr.ref/off/abs and fills oi (defaults, sequences, statements). */
void sema_check_optimizer(Diag *d, Arena *a, OptInfo *oi, OptDecl *o);
/* A parameter value: a constant expression or learned(constant). */
bool sema_pval(Diag *d, const Expr *e, PVal *out);
/* A constant scalar expression: numbers, + - * /, sqrt, pow. */
bool sema_const(Diag *d, const Expr *e, double *out);
int sema_find_param(const OptDecl *o, const char *name);
int sema_find_seq(const OptInfo *oi, const char *name);
int sema_find_opt(const Spec *s, const char *name);
/* s[k+off] (*is_abs false) or s[abs] (*is_abs true); false if not that form. */
bool sema_index_form(const Expr *e, int *off, bool *is_abs);

#define SEMA_MAX_STEPS 10000
#define SEMA_MAX_WIDTH 65536

/* Network-item atoms (sema.c, for network.c); layer lists are layer.h's. */
bool sema_atom_int(Diag *d, const Atom *at, long lo, long hi, const char *what, int *out);
bool sema_atom_num(Diag *d, const Atom *at, double lo, double hi, const char *what, double *out);
bool sema_arg_int(Diag *d, const Arg *g, long lo, long hi, const char *what, int *out);
const Atom *sema_single_atom(Diag *d, const Item *it);  /* the item's one atom */

/* network.c: network i's items into s->nets[i] (stage parameter values
 * from defaults and arguments); then -D over the whole spec, after which
 * OptInfo.values and StageInfo.pv hold the values in effect. */
void network_check(Diag *d, Arena *a, Spec *s, int i);
void network_apply_defines(Diag *d, Spec *s, const Define *defs, int ndefs);

/* unroll.c: net is an index into s->nets; reads the resolved spec only.
 * diag reports shape and linearity errors at the causing expression. NULL
 * on error. */
IrGraph *unroll_network(Arena *a, const Spec *s, int net, Diag *d);
IrGraph *unroll_optimizer(Arena *a, const Spec *s, int opt, int steps, IrShape st, Diag *d);

#endif
