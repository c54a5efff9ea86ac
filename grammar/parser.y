/* parser.y — optc's grammar: a pure reentrant LALR(1) parser with byte-span
 * locations on every node and recovery at statement level, so one run
 * reports several errors. Semantic checks live in sema.c
 * (optimizers) and network.c (network items), driven by load.c. */
%define api.pure full
%locations
%define api.location.type {Span}
%define parse.error custom
%expect 0
%param {yyscan_t scanner}
%parse-param {ParseCtx *ctx}

%code requires {
#include "ast.h"
#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif
#define YYLLOC_DEFAULT(Cur, Rhs, N)                               \
    do {                                                          \
        if (N) {                                                  \
            (Cur).beg = YYRHSLOC(Rhs, 1).beg;                     \
            (Cur).end = YYRHSLOC(Rhs, N).end;                     \
        } else {                                                  \
            (Cur).beg = (Cur).end = YYRHSLOC(Rhs, 0).end;         \
        }                                                         \
    } while (0)
}

%code {
#include <string.h>
#include "lexer.h"
static void yyerror(YYLTYPE *loc, yyscan_t scanner, ParseCtx *ctx, const char *msg);
#define NEW(T) ((T *)arena_alloc(ctx->arena, sizeof(T)))
#define ARR(T, l) ((T **)(l).v)
static Span join(Span a, Span b) { Span s = { a.beg, b.end }; return s; }
/* A group from its (non-empty) list of atoms. */
static Group *new_group(ParseCtx *ctx, PList atoms)
{
    Group *g = NEW(Group);
    g->atoms = ARR(Atom, atoms);
    g->natoms = atoms.n;
    g->span = join(g->atoms[0]->span, g->atoms[atoms.n - 1]->span);
    return g;
}
}

%union {
    double num;
    const char *str;
    int dims[3];
    Expr *expr;
    Arg *arg;
    Atom *atom;
    Group *group;
    Item *item;
    Param *param;
    Stmt *stmt;
    PList list;
}

%token KW_OPTIMIZER "'optimizer'" KW_NETWORK "'network'"
%token <str> IDENT "name"
%token <num> NUMBER "number"
%token <dims> DIMS "dimensions"

%type <expr> expr primary
%type <arg> arg
%type <list> args args_opt params params_opt stmts items groups group
%type <param> param
%type <stmt> stmt
%type <item> item
%type <atom> atom

%left '+' '-'
%left '*' '/'
%precedence NEG

%%

file
    : %empty
    | file decl
    ;

/* decl: optimizer NAME [(params)] { stmt... } | network NAME { item... } */
decl
    : KW_OPTIMIZER IDENT params_opt '{' stmts '}'
        {
            OptDecl *o = NEW(OptDecl);
            o->name = $2; o->span = @$; o->name_span = @2;
            o->params = ARR(Param, $3); o->nparams = $3.n;
            o->stmts = ARR(Stmt, $5); o->nstmts = $5.n;
            ast_push(ctx->arena, &ctx->opts, o);
        }
    | KW_NETWORK IDENT '{' items '}'
        {
            NetDecl *n = NEW(NetDecl);
            n->name = $2; n->span = @$; n->name_span = @2;
            n->items = ARR(Item, $4); n->nitems = $4.n;
            ast_push(ctx->arena, &ctx->nets, n);
        }
    | error '}'
    ;

params_opt
    : %empty                { memset(&$$, 0, sizeof $$); }
    | '(' ')'               { memset(&$$, 0, sizeof $$); }
    | '(' params ')'        { $$ = $2; }
    ;

params
    : param                 { memset(&$$, 0, sizeof $$); ast_push(ctx->arena, &$$, $1); }
    | params ',' param      { $$ = $1; ast_push(ctx->arena, &$$, $3); }
    ;

/* param: NAME = expr   (expr may be learned(init)) */
param
    : IDENT '=' expr        { $$ = NEW(Param); $$->name = $1; $$->span = @$; $$->name_span = @1; $$->def = $3; }
    ;

stmts
    : %empty                { memset(&$$, 0, sizeof $$); }
    | stmts stmt            { $$ = $1; ast_push(ctx->arena, &$$, $2); }
    | stmts error ';'       { $$ = $1; }
    ;

/* stmt: NAME [ index ] = expr ; */
stmt
    : IDENT '[' expr ']' '=' expr ';'
        {
            $$ = NEW(Stmt);
            $$->seq = $1; $$->seq_span = @1; $$->span = join(@1, @6);
            $$->index = $3; $$->rhs = $6;
        }
    ;

expr
    : expr '+' expr         { $$ = ast_expr(ctx, EX_ADD, @$, $1, $3); }
    | expr '-' expr         { $$ = ast_expr(ctx, EX_SUB, @$, $1, $3); }
    | expr '*' expr         { $$ = ast_expr(ctx, EX_MUL, @$, $1, $3); }
    | expr '/' expr         { $$ = ast_expr(ctx, EX_DIV, @$, $1, $3); }
    | '-' expr %prec NEG    { $$ = ast_expr(ctx, EX_NEG, @$, $2, NULL); }
    | '+' expr %prec NEG    { $$ = $2; }
    | primary
    ;

primary
    : NUMBER                { $$ = ast_expr(ctx, EX_NUM, @$, NULL, NULL); $$->u.num = $1; }
    | IDENT                 { $$ = ast_expr(ctx, EX_NAME, @$, NULL, NULL); $$->u.name = $1; }
    | IDENT '[' expr ']'
        {
            $$ = ast_expr(ctx, EX_INDEX, @$, $3, NULL);
            $$->u.index.name = $1; $$->u.index.name_span = @1; $$->u.index.index = $3;
        }
    | IDENT '(' args_opt ')'
        {
            $$ = ast_expr(ctx, EX_CALL, @$, NULL, NULL);
            for (int i = 0; i < $3.n; i++) {
                Arg *g = $3.v[i];
                if (g->value->depth + 1 > $$->depth)
                    $$->depth = g->value->depth + 1;
            }
            $$->u.call.name = $1; $$->u.call.name_span = @1;
            $$->u.call.args = ARR(Arg, $3); $$->u.call.nargs = $3.n;
        }
    | '(' expr ')'          { $$ = $2; $$->span = @$; }
    ;

args_opt
    : %empty                { memset(&$$, 0, sizeof $$); }
    | args
    ;

args
    : arg                   { memset(&$$, 0, sizeof $$); ast_push(ctx->arena, &$$, $1); }
    | args ',' arg          { $$ = $1; ast_push(ctx->arena, &$$, $3); }
    ;

arg
    : expr                  { $$ = NEW(Arg); $$->span = @$; $$->value = $1; }
    | IDENT '=' expr        { $$ = NEW(Arg); $$->span = @$; $$->name = $1; $$->name_span = @1; $$->value = $3; }
    ;

items
    : %empty                { memset(&$$, 0, sizeof $$); }
    | items item            { $$ = $1; ast_push(ctx->arena, &$$, $2); }
    | items error ';'       { $$ = $1; }
    ;

/* item: NAME ; | NAME [=] group, group... ; | NAME { item... } */
item
    : IDENT ';'             { $$ = NEW(Item); $$->name = $1; $$->span = @1; $$->name_span = @1; }
    | IDENT groups ';'
        {
            $$ = NEW(Item); $$->name = $1; $$->span = join(@1, @2); $$->name_span = @1;
            $$->groups = ARR(Group, $2); $$->ngroups = $2.n;
        }
    | IDENT '=' groups ';'
        {
            $$ = NEW(Item); $$->name = $1; $$->span = join(@1, @3); $$->name_span = @1; $$->eq = true;
            $$->groups = ARR(Group, $3); $$->ngroups = $3.n;
        }
    | IDENT '{' items '}'
        {
            $$ = NEW(Item); $$->name = $1; $$->span = @$; $$->name_span = @1; $$->block = true;
            $$->items = ARR(Item, $3); $$->nitems = $3.n;
        }
    ;

groups
    : group                 { memset(&$$, 0, sizeof $$); ast_push(ctx->arena, &$$, new_group(ctx, $1)); }
    | groups ',' group      { $$ = $1; ast_push(ctx->arena, &$$, new_group(ctx, $3)); }
    ;

group
    : atom                  { memset(&$$, 0, sizeof $$); ast_push(ctx->arena, &$$, $1); }
    | group atom            { $$ = $1; ast_push(ctx->arena, &$$, $2); }
    ;

atom
    : NUMBER                { $$ = NEW(Atom); $$->kind = AT_NUM; $$->span = @$; $$->num = $1; }
    | IDENT                 { $$ = NEW(Atom); $$->kind = AT_NAME; $$->span = @$; $$->name = $1; }
    | DIMS                  { $$ = NEW(Atom); $$->kind = AT_DIMS; $$->span = @$; memcpy($$->dims, $1, sizeof $$->dims); }
    | IDENT '(' args_opt ')'
        {
            $$ = NEW(Atom); $$->kind = AT_CALL; $$->span = @$; $$->name = $1;
            $$->args = ARR(Arg, $3); $$->nargs = $3.n;
        }
    ;

%%

static void yyerror(YYLTYPE *loc, yyscan_t scanner, ParseCtx *ctx, const char *msg)
{
    (void)scanner;
    int *off = arena_alloc(ctx->arena, sizeof(int));
    *off = loc->beg;
    ast_push(ctx->arena, &ctx->syntax_errors, off);
    if (strcmp(msg, "memory exhausted") == 0)
        diag_fatal(ctx->diag, *loc, "input nested too deeply");
    else
        diag_error(ctx->diag, *loc, "%s", msg);
}

/* Syntax errors in the words of a reader: "expected ';' before '}'" when a
 * statement end is possible, else the unexpected token and (when there are
 * few) the expected ones. */
static int yyreport_syntax_error(const yypcontext_t *pc, yyscan_t scanner, ParseCtx *ctx)
{
    (void)scanner;
    yysymbol_kind_t exp[6];
    int n = yypcontext_expected_tokens(pc, exp, 6);
    yysymbol_kind_t got = yypcontext_token(pc);
    YYLTYPE loc = *yypcontext_location(pc);
    char msg[256];
    int len = 0;
    bool semi = false, operand = false;
    for (int i = 0; i < n; i++) {
        semi |= strcmp(yysymbol_name(exp[i]), "';'") == 0;
        operand |= exp[i] == YYSYMBOL_NUMBER;
    }
    if (semi && got != YYSYMBOL_YYEMPTY)
        len = snprintf(msg, sizeof msg, "expected ';' before %s", yysymbol_name(got));
    else if (operand)
        len = snprintf(msg, sizeof msg, "expected an expression before %s",
                       got == YYSYMBOL_YYEMPTY ? "this" : yysymbol_name(got));
    else {
        len = snprintf(msg, sizeof msg, "unexpected %s", got == YYSYMBOL_YYEMPTY ? "token" : yysymbol_name(got));
        for (int i = 0; n > 0 && n < 6 && i < n && len < 200; i++)
            len += snprintf(msg + len, sizeof msg - (size_t)len, "%s%s", i ? " or " : ", expected ",
                            yysymbol_name(exp[i]));
    }
    yyerror(&loc, scanner, ctx, msg);
    if (got == YYSYMBOL_YYEOF && ctx->depth > 0) {
        int at = ctx->open[ctx->depth - 1];
        Span sp = { at, at + 1 };
        diag_note(ctx->diag, sp, "to match this '%c'", ctx->diag->src[at]);
    }
    return 0;
}

/* Runs the parser over src[0..len); results and errors land in ctx. */
void ast_parse(ParseCtx *c, const char *src, size_t len)
{
    yyscan_t sc;
    if (yylex_init_extra(c, &sc) != 0)
        DIAG_BUG("yylex_init failed");
    YY_BUFFER_STATE b = yy_scan_bytes(src, (int)len, sc);
    yyparse(sc, c);
    yy_delete_buffer(b, sc);
    yylex_destroy(sc);
}
