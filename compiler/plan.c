/* plan.c — parameter layout and activation memory by liveness (plan.h). */
#include <stdlib.h>
#include <string.h>
#include "plan.h"

/* Offsets are kept multiples of this many elements (64 bytes of floats). */
#define PLAN_ALIGN 16

static size_t plan_align(size_t n)
{
    return (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
}

static size_t plan_numel(IrShape s)
{
    return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

int plan_time_fwd(const IrGraph *g, int node)
{
    (void)g;
    return node;
}

int plan_time_bwd(const IrGraph *g, int node)
{
    return 2 * g->nnodes - 1 - node;
}

static bool plan_has_learned(const IrNode *n)
{
    if (n->op != OP_SUM)
        return false;
    for (int i = 0; i < n->nin; i++)
        if (n->u.sum.coef[i].nterms > 0)
            return true;
    return false;
}

bool plan_bwd_reads_input(const IrNode *n)
{
    switch (n->op) {
    case OP_CONV: case OP_BN: case OP_LINEAR: case OP_EXACT:
        return true;
    case OP_SUM:
        return plan_has_learned(n);     /* only for the coefficient gradients */
    case OP_INPUT: case OP_RELU: case OP_CONCAT: case OP_PAD: case OP_AVGPOOL:
    case OP_GAP: case OP_DROPOUT: case OP_GRAD: case OP_COUNT:
        return false;
    }
    return false;
}

bool plan_bwd_reads_output(const IrNode *n)
{
    switch (n->op) {
    case OP_RELU:
        return true;
    case OP_INPUT: case OP_CONV: case OP_BN: case OP_SUM: case OP_CONCAT: case OP_PAD:
    case OP_AVGPOOL: case OP_GAP: case OP_LINEAR: case OP_EXACT: case OP_DROPOUT:
    case OP_GRAD: case OP_COUNT:
        return false;
    }
    return false;
}

/* Whether a node owns trainable parameters (learned sum coefficients too). */
static bool plan_has_params(const IrNode *n)
{
    switch (n->op) {
    case OP_CONV: case OP_BN: case OP_LINEAR: case OP_EXACT:
        return true;
    case OP_SUM:
        return plan_has_learned(n);
    case OP_INPUT: case OP_RELU: case OP_CONCAT: case OP_PAD: case OP_AVGPOOL:
    case OP_GAP: case OP_DROPOUT: case OP_GRAD: case OP_COUNT:
        return false;
    }
    return false;
}

static int plan_add(Plan *p, int *cap, PlanBufKind kind, int node, size_t a, size_t b,
                    int birth, int death)
{
    if (p->nbufs == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        PlanBuf *nb = realloc(p->bufs, (size_t)*cap * sizeof *nb);
        if (!nb)
            abort();
        p->bufs = nb;
    }
    PlanBuf *pb = &p->bufs[p->nbufs];
    memset(pb, 0, sizeof *pb);
    pb->kind = kind;
    pb->node = node;
    pb->size_a = a;
    pb->size_b = b;
    pb->birth = birth;
    pb->death = death;
    return p->nbufs++;
}

static bool plan_overlap_time(const PlanBuf *x, const PlanBuf *y)
{
    return x->birth <= y->death && y->birth <= x->death;
}

/* The size and offset of a buffer in its region's unit (a: per image,
 * b: fixed). */
static size_t plan_sz(const PlanBuf *b) { return b->size_a ? b->size_a : b->size_b; }
static size_t plan_off(const PlanBuf *b) { return b->size_a ? b->off_a : b->off_b; }

/* A sort key: largest first, then earliest birth, then index, so the
 * layout is deterministic. */
typedef struct { size_t sz; int birth, idx; } PlanKey;

static int plan_cmp(const void *x, const void *y)
{
    const PlanKey *a = x, *b = y;
    if (a->sz != b->sz)
        return a->sz > b->sz ? -1 : 1;
    if (a->birth != b->birth)
        return a->birth < b->birth ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static int plan_cmp_off(const void *x, const void *y)
{
    const size_t *a = x, *b = y;
    if (a[0] != b[0])
        return a[0] < b[0] ? -1 : 1;
    return a[1] < b[1] ? -1 : a[1] > b[1];
}

/* Greedy first fit of the buffers of one region (per_image: the batch
 * scaled ones) by decreasing size: each goes at the lowest aligned offset
 * not used by an already placed buffer whose lifetime overlaps its own.
 * Returns the region's extent. */
static size_t plan_pack(Plan *p, bool per_image)
{
    int n = 0;
    PlanKey *ord = malloc(((size_t)p->nbufs + 1) * sizeof *ord);
    size_t *iv = malloc(((size_t)p->nbufs + 1) * 2 * sizeof *iv);
    if (!ord || !iv)
        abort();
    for (int i = 0; i < p->nbufs; i++)
        if ((p->bufs[i].size_a != 0) == per_image)
            ord[n++] = (PlanKey){ plan_sz(&p->bufs[i]), p->bufs[i].birth, i };
    qsort(ord, (size_t)n, sizeof *ord, plan_cmp);
    size_t extent = 0;
    for (int k = 0; k < n; k++) {
        PlanBuf *b = &p->bufs[ord[k].idx];
        int m = 0;
        for (int q = 0; q < k; q++) {
            const PlanBuf *o = &p->bufs[ord[q].idx];
            if (plan_overlap_time(b, o)) {
                iv[2 * m] = plan_off(o);
                iv[2 * m + 1] = plan_off(o) + plan_sz(o);
                m++;
            }
        }
        qsort(iv, (size_t)m, 2 * sizeof *iv, plan_cmp_off);
        size_t off = 0, sz = plan_sz(b);
        for (int q = 0; q < m; q++) {
            if (off + sz <= iv[2 * q])
                break;
            if (iv[2 * q + 1] > off)
                off = plan_align(iv[2 * q + 1]);
        }
        if (per_image)
            b->off_a = off;
        else
            b->off_b = off;
        if (off + sz > extent)
            extent = off + sz;
    }
    free(ord);
    free(iv);
    return plan_align(extent);
}

static bool plan_supported(const IrGraph *g, FILE *diag)
{
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        if (n->op == OP_GRAD) {
            fprintf(diag, "optc: %s: node %s is an abstract grad(.); only optimizer graphs "
                    "(optc analyze) have them\n", g->name, n->name);
            return false;
        }
        if (n->op == OP_EXACT && strcmp(n->u.exact.phi, "relu") != 0) {
            fprintf(diag, "optc: %s: exact(%s) is not supported by the runtime (only relu)\n",
                    g->name, n->u.exact.phi);
            return false;
        }
        if ((i == 0) != (n->op == OP_INPUT)) {
            fprintf(diag, "optc: internal: %s: node 0 and only node 0 must be the input\n",
                    g->name);
            return false;
        }
        for (int k = 0; k < n->nin; k++)
            if (n->in[k] < 0 || n->in[k] >= i) {
                fprintf(diag, "optc: internal: %s: node %d reads node %d\n", g->name, i,
                        n->in[k]);
                return false;
            }
    }
    if (g->output <= 0 || g->output >= g->nnodes) {
        fprintf(diag, "optc: internal: %s: bad output node %d\n", g->name, g->output);
        return false;
    }
    IrShape s = g->nodes[g->output].shape;
    if (s.c != g->classes || s.h != 1 || s.w != 1) {
        fprintf(diag, "optc: %s: the output is %dx%dx%d, expected %dx1x1 logits\n", g->name,
                s.c, s.h, s.w, g->classes);
        return false;
    }
    return true;
}

Plan *plan_build(const IrGraph *g, FILE *diag)
{
    if (!plan_supported(g, diag))
        return NULL;
    Plan *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->param_off = calloc((size_t)g->nparams + 1, sizeof *p->param_off);
    p->nodes = calloc((size_t)g->nnodes, sizeof *p->nodes);
    if (!p->param_off || !p->nodes)
        abort();
    for (int i = 0; i < g->nparams; i++) {
        if (g->params[i].trainable) {
            p->param_off[i] = p->nparams;
            p->nparams += g->params[i].numel;
        } else {
            p->param_off[i] = p->nbuffers;
            p->nbuffers += g->params[i].numel;
        }
    }

    int N = g->nnodes;
    p->nodes[g->output].live = true;
    for (int i = N - 1; i >= 0; i--)
        if (p->nodes[i].live)
            for (int k = 0; k < g->nodes[i].nin; k++)
                p->nodes[g->nodes[i].in[k]].live = true;
    for (int i = 1; i < N; i++) {
        const IrNode *n = &g->nodes[i];
        bool ng = plan_has_params(n);
        for (int k = 0; k < n->nin; k++)
            ng = ng || p->nodes[n->in[k]].needs_grad;
        p->nodes[i].needs_grad = ng && p->nodes[i].live;
    }

    int cap = 0;
    for (int i = 0; i < N; i++) {
        PlanNode *pn = &p->nodes[i];
        const IrNode *n = &g->nodes[i];
        pn->out = pn->grad = pn->save0 = pn->save1 = -1;
        if (!pn->live)
            continue;
        int tf = plan_time_fwd(g, i), tb = plan_time_bwd(g, i);
        if (i != 0 && i != g->output) {
            int death = tf;
            int first_grad_write = -1;
            for (int j = i + 1; j < N; j++) {
                const IrNode *c = &g->nodes[j];
                bool reads = false;
                for (int k = 0; k < c->nin; k++)
                    reads = reads || c->in[k] == i;
                if (!reads || !p->nodes[j].live)
                    continue;
                if (plan_time_fwd(g, j) > death)
                    death = plan_time_fwd(g, j);
                if (p->nodes[j].needs_grad) {
                    if (plan_bwd_reads_input(c) && plan_time_bwd(g, j) > death)
                        death = plan_time_bwd(g, j);
                    if (first_grad_write < 0 || plan_time_bwd(g, j) < first_grad_write)
                        first_grad_write = plan_time_bwd(g, j);
                }
            }
            if (pn->needs_grad && plan_bwd_reads_output(n) && tb > death)
                death = tb;
            pn->out = plan_add(p, &cap, PB_OUT, i, plan_numel(n->shape), 0, tf, death);
            if (pn->needs_grad && first_grad_write >= 0)
                pn->grad = plan_add(p, &cap, PB_GRAD, i, plan_numel(n->shape), 0,
                                    first_grad_write, tb);
        }
        int sdeath = pn->needs_grad ? tb : tf;
        if (n->op == OP_BN) {
            pn->save0 = plan_add(p, &cap, PB_SAVE0, i, 0, (size_t)n->shape.c, tf, sdeath);
            pn->save1 = plan_add(p, &cap, PB_SAVE1, i, 0, (size_t)n->shape.c, tf, sdeath);
        } else if (n->op == OP_EXACT) {
            pn->save0 = plan_add(p, &cap, PB_SAVE0, i, (size_t)n->u.exact.m, 0, tf, sdeath);
        } else if (n->op == OP_DROPOUT) {
            pn->save0 = plan_add(p, &cap, PB_SAVE0, i, plan_numel(n->shape), 0, tf, sdeath);
        }
    }
    for (int i = 0; i < p->nbufs; i++) {
        p->naive_a += plan_align(p->bufs[i].size_a);
        p->naive_b += plan_align(p->bufs[i].size_b);
    }
    p->arena_a = plan_pack(p, true);
    p->arena_b = plan_pack(p, false);
    return p;
}

void plan_free(Plan *p)
{
    if (!p)
        return;
    free(p->param_off);
    free(p->nodes);
    free(p->bufs);
    free(p);
}

size_t plan_arena_elems(const Plan *p, int B)
{
    return p->arena_a * (size_t)B + p->arena_b;
}

size_t plan_total_bytes(const Plan *p, const IrGraph *g, int B, size_t elem_size)
{
    size_t n = 2 * p->nparams + p->nbuffers + plan_arena_elems(p, B)
             + (size_t)B * plan_numel(g->input) + 2 * (size_t)B * (size_t)g->classes;
    return n * elem_size;
}

int plan_verify(const Plan *p, FILE *diag)
{
    for (int i = 0; i < p->nbufs; i++) {
        const PlanBuf *x = &p->bufs[i];
        if ((x->size_a != 0) == (x->size_b != 0)) {
            fprintf(diag, "plan: buffer %d mixes per-image and fixed sizes\n", i);
            return -1;
        }
        size_t lim = x->size_a ? p->arena_a : p->arena_b;
        if (plan_off(x) + plan_sz(x) > lim || plan_off(x) % PLAN_ALIGN) {
            fprintf(diag, "plan: buffer %d (node %d) outside the arena or misaligned\n", i,
                    x->node);
            return -1;
        }
        if (x->birth > x->death) {
            fprintf(diag, "plan: buffer %d (node %d) dies before it is born\n", i, x->node);
            return -1;
        }
        for (int j = 0; j < i; j++) {
            const PlanBuf *y = &p->bufs[j];
            if ((x->size_a != 0) != (y->size_a != 0) || !plan_overlap_time(x, y))
                continue;
            if (plan_off(x) < plan_off(y) + plan_sz(y) && plan_off(y) < plan_off(x) + plan_sz(x)) {
                fprintf(diag, "plan: buffers %d (node %d) and %d (node %d) overlap\n", i,
                        x->node, j, y->node);
                return -1;
            }
        }
    }
    return 0;
}
