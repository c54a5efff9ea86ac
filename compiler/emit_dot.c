/* emit_dot.c — the IR as a Graphviz digraph, one cluster per stage. */
#include <stdlib.h>
#include <string.h>
#include "diag.h"
#include "frontend.h"

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

void ir_dot(FILE *out, const IrGraph *g)
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
