/* emit_dot.c — the IR as Graphviz. ir_dot draws the optimizer: each grad
 * block (every op of stageS.stepK.grad), the stem, each transition and the
 * head are one node, each sum is a node whose incoming edges carry their
 * coefficients, so heavy ball's skip from two steps back reads at a glance.
 * ir_dot_layers draws every op, one cluster per stage. */
#include <stdlib.h>
#include <string.h>
#include "diag.h"
#include "frontend.h"
#include "optable.h"

/* The cluster of each node, from its stage field: stage N's nodes are
 * "stageN"; the others lie before the first stage ("stem"), between stages
 * N and N+1 ("transN") or after the last ("head"); the input (node 0) is in
 * none. key[i] numbers the clusters (0: none); names must hold 24 bytes. */
enum { CL_NONE, CL_STEM, CL_STAGE, CL_TRANS, CL_HEAD };

static void clusters(const IrGraph *g, int *key, char (*names)[24])
{
    int last = -1;      /* the last stage node */
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].stage >= 1)
            last = i;
    int prev = 0;       /* the stage before node i */
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        int kind = i == 0 ? CL_NONE : n->stage >= 1 ? CL_STAGE : prev == 0 ? CL_STEM
                 : i > last ? CL_HEAD : CL_TRANS;
        int num = kind == CL_STAGE ? n->stage : kind == CL_TRANS ? prev : 0;
        key[i] = kind == CL_NONE ? 0 : kind * 1000000 + num;
        static const char *const text[] = { "", "stem", "stage", "trans", "head" };
        snprintf(names[i], sizeof names[i], num ? "%s%d" : "%s", text[kind], num);
        if (n->stage >= 1)
            prev = n->stage;
    }
}

static void node_line(FILE *out, const IrNode *n)
{
    const char *fill = n->op == OP_SUM ? "lightyellow" : n->op == OP_CONV ? "lightblue"
                     : n->op == OP_CONCAT ? "lightpink" : n->op == OP_PAD ? "lightgrey" : "white";
    fprintf(out, "    n%d [label=\"%s\\n%s\\n%dx%dx%d\", fillcolor=%s];\n", n->id, ir_op_name(n->op), n->name,
            n->shape.c, n->shape.h, n->shape.w, fill);
}

void ir_dot_layers(FILE *out, const IrGraph *g)
{
    fprintf(out, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, style=filled, fontsize=10];\n", g->name);
    bool *done = calloc((size_t)g->nnodes + 1, sizeof(bool));
    int *key = calloc((size_t)g->nnodes + 1, sizeof(int));
    char (*names)[24] = calloc((size_t)g->nnodes + 1, sizeof *names);
    if (!done || !key || !names)
        DIAG_BUG("out of memory");
    clusters(g, key, names);
    for (int i = 0; i < g->nnodes; i++) {
        if (done[i])
            continue;
        if (key[i] == 0) {
            node_line(out, &g->nodes[i]);
            done[i] = true;
            continue;
        }
        fprintf(out, "  subgraph \"cluster_%s\" {\n    label=\"%s\";\n", names[i], names[i]);
        for (int j = i; j < g->nnodes; j++) {
            if (!done[j] && key[j] == key[i]) {
                node_line(out, &g->nodes[j]);
                done[j] = true;
            }
        }
        fputs("  }\n", out);
    }
    free(key);
    free(names);
    free(done);
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            fprintf(out, "  n%d -> n%d;\n", g->nodes[i].in[j], i);
    fputs("}\n", out);
}

/* --- the optimizer view ---------------------------------------------------- */

/* The part of a node name before its first '.' ("stem", "head", "trans1"). */
static size_t name_head_len(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot ? (size_t)(dot - name) : 0;
}

/* The length of the block prefix of a node name: "stage1.step0.grad" of
 * "stage1.step0.grad.conv0", "stem" of "stem.bn0", "head", "trans1"; 0 for
 * a node drawn by itself (input, sums, concats, shortcuts). */
static size_t block_len(const char *name)
{
    const char *g = strstr(name, ".grad.");
    if (g)
        return (size_t)(g - name) + 5;
    size_t len = name_head_len(name);
    if ((len == 4 && strncmp(name, "stem", 4) == 0) || (len == 4 && strncmp(name, "head", 4) == 0) ||
        (len > 5 && strncmp(name, "trans", 5) == 0))
        return len;
    return 0;
}

/* A coefficient as written on its edge: "-0.9", "1 + stage1.step1.beta". */
static void coef_label(FILE *out, const IrGraph *g, const IrCoef *c)
{
    char b[40];
    bool any = c->c0 != 0 || c->nterms == 0;
    if (any)
        fputs(op_num(b, sizeof b, c->c0), out);
    for (int j = 0; j < c->nterms; j++) {
        double a = c->a[j];
        const char *sign = a < 0 ? (any ? " - " : "-") : (any ? " + " : "");
        fputs(sign, out);
        if (a != 1 && a != -1)
            fprintf(out, "%s*", op_num(b, sizeof b, a < 0 ? -a : a));
        fputs(g->params[c->param[j]].name, out);
        any = true;
    }
}

void ir_dot(FILE *out, const IrGraph *g)
{
    /* rep[i]: the node that draws node i (the last node of its block). */
    int *rep = malloc(sizeof(int) * ((size_t)g->nnodes + 1));
    if (!rep)
        abort();
    for (int i = 0; i < g->nnodes; i++) {
        rep[i] = i;
        size_t len = block_len(g->nodes[i].name);
        for (int j = i + 1; len && j < g->nnodes; j++)
            if (block_len(g->nodes[j].name) == len &&
                strncmp(g->nodes[j].name, g->nodes[i].name, len) == 0)
                rep[i] = j;
    }
    fprintf(out, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, style=filled, fontsize=10];\n"
                 "  edge [fontsize=9];\n", g->name);
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        size_t len = block_len(n->name);
        if (rep[i] != i)
            continue;
        if (len == 0) {
            const char *shape = n->op == OP_SUM ? "ellipse" : "box";
            const char *fill = n->op == OP_SUM ? "lightyellow" : n->op == OP_INPUT ? "white"
                             : n->op == OP_CONCAT ? "lightpink" : "lightgrey";
            fprintf(out, "  n%d [shape=%s, fillcolor=%s, label=\"%s\\n%dx%dx%d\"];\n", i, shape, fill,
                    n->op == OP_SUM || n->op == OP_INPUT ? n->name : ir_op_name(n->op),
                    n->shape.c, n->shape.h, n->shape.w);
            continue;
        }
        /* A block: its name and its ops in order ("bn relu conv ..."). */
        fprintf(out, "  n%d [fillcolor=lightblue, label=\"%.*s\\n", i, (int)len, n->name);
        int col = 0;
        for (int j = 0; j <= i; j++)
            if (rep[j] == i) {
                const char *t = ir_op_name(g->nodes[j].op);
                if (col > 24) {
                    fputs("\\n", out);
                    col = 0;
                }
                fprintf(out, "%s%s", col ? " " : "", t);
                col += (int)strlen(t) + 1;
            }
        fprintf(out, "\\n%dx%dx%d\"];\n", n->shape.c, n->shape.h, n->shape.w);
    }
    /* Edges between drawn nodes; a sum's carry its coefficients, and those
     * from states older than its newest state input are dashed (momentum's
     * reach back). */
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        int newest = -1;
        for (int k = 0; n->op == OP_SUM && k < n->nin; k++)
            if (!strstr(g->nodes[n->in[k]].name, ".grad.") && n->in[k] > newest)
                newest = n->in[k];
        for (int k = 0; k < n->nin; k++) {
            int from = rep[n->in[k]], to = rep[i];
            if (from == to)
                continue;
            bool dup = false;
            for (int j = 0; j < k && !dup; j++)
                dup = rep[n->in[j]] == from && n->op != OP_SUM;
            if (dup)
                continue;
            fprintf(out, "  n%d -> n%d", from, to);
            if (n->op == OP_SUM) {
                fputs(" [label=\"", out);
                coef_label(out, g, &n->u.sum.coef[k]);
                fputs(!strstr(g->nodes[n->in[k]].name, ".grad.") && n->in[k] != newest
                      ? "\", style=dashed, color=blue, fontcolor=blue]" : "\"]", out);
            }
            fputs(";\n", out);
        }
    }
    fputs("}\n", out);
    free(rep);
}
