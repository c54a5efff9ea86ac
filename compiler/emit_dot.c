/* emit_dot.c — the IR as a Graphviz digraph, one cluster per stage. */
#include <stdlib.h>
#include <string.h>
#include "frontend.h"
#include "optable.h"

/* The cluster a node belongs to: the part of its name before the first
 * '.' ("stem", "stage2", "trans1", "head"), or "" for the input. */
static int cluster_len(const char *name)
{
    const char *dot = strchr(name, '.');
    return dot ? (int)(dot - name) : 0;
}

static void node_line(FILE *out, const IrNode *n)
{
    const char *fill = n->op == OP_SUM ? "lightyellow" : n->op == OP_CONV ? "lightblue"
                     : n->op == OP_CONCAT ? "lightpink" : n->op == OP_PAD ? "lightgrey" : "white";
    fprintf(out, "    n%d [label=\"%s\\n%s\\n%dx%dx%d\", fillcolor=%s];\n", n->id, op_name(n->op), n->name,
            n->shape.c, n->shape.h, n->shape.w, fill);
}

void ir_dot(FILE *out, const IrGraph *g)
{
    fprintf(out, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, style=filled, fontsize=10];\n", g->name);
    bool *done = calloc((size_t)g->nnodes + 1, sizeof(bool));
    for (int i = 0; i < g->nnodes; i++) {
        if (done[i])
            continue;
        const char *nm = g->nodes[i].name;
        int len = cluster_len(nm);
        if (len == 0) {
            node_line(out, &g->nodes[i]);
            done[i] = true;
            continue;
        }
        fprintf(out, "  subgraph \"cluster_%.*s\" {\n    label=\"%.*s\";\n", len, nm, len, nm);
        for (int j = i; j < g->nnodes; j++) {
            const char *m = g->nodes[j].name;
            if (!done[j] && cluster_len(m) == len && strncmp(m, nm, (size_t)len) == 0) {
                node_line(out, &g->nodes[j]);
                done[j] = true;
            }
        }
        fputs("  }\n", out);
    }
    free(done);
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            fprintf(out, "  n%d -> n%d;\n", g->nodes[i].in[j], i);
    fputs("}\n", out);
}
