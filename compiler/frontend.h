/* frontend.h — the front end's API: arena, spec loading (lex, parse, sema),
 * unrolling to the IR of ir.h, and the IR printers. Implemented by arena.c,
 * diag.c, the grammar, load.c (driving sema.c, network.c, unroll.c),
 * ir_print.c, emit_dot.c. */
#ifndef OPTC_FRONTEND_H
#define OPTC_FRONTEND_H

#include <stdbool.h>
#include <stdio.h>
#include "ir.h"

#define OPTC_VERSION "0.1.0"

/* One arena per compilation; everything the front end returns lives in it. */
typedef struct Arena Arena;
Arena *arena_new(void);
void   arena_free(Arena *a);
void  *arena_alloc(Arena *a, size_t size);          /* zeroed; aborts on OOM */
char  *arena_strdup(Arena *a, const char *s);
/* printf into the arena (the whole text, never cut short). */
char  *arena_printf(Arena *a, const char *f, ...) __attribute__((format(printf, 2, 3)));

/* -D name=value. Names: an optimizer parameter as OPT.PARAM (all uses) or a
 * network-level override as NET.stageN.steps / NET.stageN.width (1-based
 * stage numbers), or a bare PARAM / stageN.steps / stageN.width applying to
 * every optimizer / network that has it. An unused -D is an error. */
typedef struct { const char *name, *value; } Define;

typedef struct Spec Spec;

/* The whole file at path, NUL-terminated (embedded NULs kept), for the
 * caller to free; its size in *len when len is given. NULL with errno set
 * when it cannot be opened or read (EFBIG: larger than limit bytes). The
 * one file reader of the compiler. */
char *fe_read_file(const char *path, size_t limit, size_t *len);

/* Parse and check a spec. Diagnostics (file:line:col, source line, carets)
 * go to diag. Returns NULL when there were errors (*nerrors > 0). */
Spec *fe_load(Arena *a, const char *path, const Define *defs, int ndefs,
              FILE *diag, int *nerrors);
/* The same for a spec held in memory (tests, the fuzzer); name is used in
 * diagnostics. src need not be NUL-terminated. */
Spec *fe_load_string(Arena *a, const char *name, const char *src, size_t len,
                     const Define *defs, int ndefs, FILE *diag, int *nerrors);

int         fe_network_count(const Spec *s);
const char *fe_network_name(const Spec *s, int i);
int         fe_optimizer_count(const Spec *s);
const char *fe_optimizer_name(const Spec *s, int i);
/* Optimizer i's parameters as in effect after -D (the network-less values
 * fe_unroll_optimizer uses): the name of parameter j, its value in *value
 * and whether it is learned (*value is then its initial value). */
int         fe_optimizer_param_count(const Spec *s, int i);
const char *fe_optimizer_param(const Spec *s, int i, int j, double *value, bool *learned);

/* Unroll network net (NULL: the first in the file) into an IR graph with
 * every shape known and every fixed scalar folded. NULL on error. */
/* The optimizer that every stage of network net (NULL: the first) runs,
 * whose analyze rate is the network's; NULL with *why set when
 * no one optimizer's rate describes it (stages run different optimizers,
 * or a stage passes arguments that analyze_optimizer does not see) or net
 * is unknown. */
const char *fe_network_optimizer(const Spec *s, const char *net, const char **why);

IrGraph *fe_unroll(Arena *a, const Spec *s, const char *net, FILE *diag, int *nerrors);

/* Unroll optimizer opt alone (default parameters, after -D) for steps steps
 * on a state of the given shape, leaving grad(.) abstract as OP_GRAD nodes
 * (no parameters, no head): node 0 is the initial state x[0], graph->output
 * the final x[steps]. For optc analyze. */
IrGraph *fe_unroll_optimizer(Arena *a, const Spec *s, const char *opt, int steps,
                             IrShape state, FILE *diag, int *nerrors);

/* An op's name in the spec and the printers ("conv", "sum"...): the op
 * table's (optable.c); "?" for a value that is no op. */
const char *ir_op_name(IrOp op);

/* Printers: one op per line with shapes; Graphviz of the optimizer (grad
 * blocks as nodes, sums with their coefficients on the edges); Graphviz of
 * every op. */
void ir_print(FILE *out, const IrGraph *g);
void ir_dot(FILE *out, const IrGraph *g);
void ir_dot_layers(FILE *out, const IrGraph *g);

#endif
