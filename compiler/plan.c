/* plan.c — parameter layout and activation memory by liveness (plan.h). */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "optable.h"
#include "plan.h"

/* Offsets are kept multiples of this many elements (64 bytes of floats). */
#define PLAN_ALIGN 16

static size_t plan_align(size_t n)
{
    return (n + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN;
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

/* The size and offset of a buffer in its region's unit (a: per image,
 * b: fixed). */
static size_t plan_sz(const PlanBuf *b) { return b->size_a ? b->size_a : b->size_b; }
static size_t plan_off(const PlanBuf *b) { return b->size_a ? b->off_a : b->off_b; }

/* --- free blocks ---------------------------------------------------------
 * The free space of a region during the sweep: disjoint blocks [off,
 * off+len) in a treap ordered by offset, each node also holding the largest
 * block of its subtree, so the lowest block that fits is found in one
 * descent. The last block runs from the highest end used so far to
 * SIZE_MAX: there is always room. Expected depth O(log n). */

typedef struct {
    size_t off, len, max;   /* max: largest len in this subtree */
    unsigned prio;
    int l, r;               /* node indices, -1 for none */
    int idx;                /* plan_verify: the buffer occupying the block */
} PlanFree;

typedef struct {
    PlanFree *n;
    int *spare, nspare;     /* recycled node indices */
    int used;
    unsigned seed;
    size_t *work;           /* Plan.work */
} PlanTreap;

static size_t plan_fmax(const PlanTreap *t, int i) { return i < 0 ? 0 : t->n[i].max; }

static void plan_fpull(PlanTreap *t, int i)
{
    PlanFree *x = &t->n[i];
    size_t m = x->len, l = plan_fmax(t, x->l), r = plan_fmax(t, x->r);
    x->max = m > l ? (m > r ? m : r) : (l > r ? l : r);
}

static int plan_fnew(PlanTreap *t, size_t off, size_t len)
{
    int i = t->nspare ? t->spare[--t->nspare] : t->used++;
    /* xorshift: priorities only shape the tree, never the layout. */
    t->seed ^= t->seed << 13;
    t->seed ^= t->seed >> 17;
    t->seed ^= t->seed << 5;
    t->n[i] = (PlanFree){ off, len, len, t->seed, -1, -1, -1 };
    return i;
}

/* Join two treaps, every offset of a below every offset of b. */
static int plan_fjoin(PlanTreap *t, int a, int b)
{
    (*t->work)++;
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    if (t->n[a].prio > t->n[b].prio) {
        t->n[a].r = plan_fjoin(t, t->n[a].r, b);
        plan_fpull(t, a);
        return a;
    }
    t->n[b].l = plan_fjoin(t, a, t->n[b].l);
    plan_fpull(t, b);
    return b;
}

/* Split i into blocks below off (*lo) and at or above it (*hi). */
static void plan_fsplit(PlanTreap *t, int i, size_t off, int *lo, int *hi)
{
    (*t->work)++;
    if (i < 0) {
        *lo = *hi = -1;
    } else if (t->n[i].off < off) {
        plan_fsplit(t, t->n[i].r, off, &t->n[i].r, hi);
        plan_fpull(t, i);
        *lo = i;
    } else {
        plan_fsplit(t, t->n[i].l, off, lo, &t->n[i].l);
        plan_fpull(t, i);
        *hi = i;
    }
}

/* Take sz elements from the lowest block of i that holds them (one exists:
 * the top block is unbounded). Returns the subtree; the offset in *off. */
static int plan_ftake(PlanTreap *t, int i, size_t sz, size_t *off)
{
    (*t->work)++;
    PlanFree *x = &t->n[i];
    if (x->l >= 0 && t->n[x->l].max >= sz) {
        x->l = plan_ftake(t, x->l, sz, off);
    } else if (x->len >= sz) {
        *off = x->off;
        x->off += sz;
        x->len -= sz;
        if (x->len == 0) {
            t->spare[t->nspare++] = i;
            return plan_fjoin(t, x->l, x->r);
        }
    } else {
        x->r = plan_ftake(t, x->r, sz, off);
    }
    plan_fpull(t, i);
    return i;
}

/* The lowest / highest block of i, detached: the rest is returned and the
 * block's node index left in *node (-1 when i is empty). */
static int plan_fpop_first(PlanTreap *t, int i, int *node)
{
    (*t->work)++;
    if (i < 0) {
        *node = -1;
        return -1;
    }
    if (t->n[i].l < 0) {
        *node = i;
        return t->n[i].r;
    }
    t->n[i].l = plan_fpop_first(t, t->n[i].l, node);
    plan_fpull(t, i);
    return i;
}

static int plan_fpop_last(PlanTreap *t, int i, int *node)
{
    (*t->work)++;
    if (i < 0) {
        *node = -1;
        return -1;
    }
    if (t->n[i].r < 0) {
        *node = i;
        return t->n[i].l;
    }
    t->n[i].r = plan_fpop_last(t, t->n[i].r, node);
    plan_fpull(t, i);
    return i;
}

/* Return [off, off+sz) to the free space of root, merged with the blocks
 * it touches. Returns the new root. */
static int plan_fgive(PlanTreap *t, int root, size_t off, size_t sz)
{
    int lo, hi, p, s;
    plan_fsplit(t, root, off, &lo, &hi);
    lo = plan_fpop_last(t, lo, &p);
    if (p >= 0) {
        if (t->n[p].off + t->n[p].len == off) {
            off = t->n[p].off;
            sz += t->n[p].len;
            t->spare[t->nspare++] = p;
        } else {
            t->n[p].l = t->n[p].r = -1;
            plan_fpull(t, p);
            lo = plan_fjoin(t, lo, p);
        }
    }
    hi = plan_fpop_first(t, hi, &s);
    if (s >= 0) {
        if (off + sz == t->n[s].off) {
            /* The top block's length stays "to SIZE_MAX". */
            sz = t->n[s].len == SIZE_MAX - t->n[s].off ? SIZE_MAX - off : sz + t->n[s].len;
            t->spare[t->nspare++] = s;
        } else {
            t->n[s].l = t->n[s].r = -1;
            plan_fpull(t, s);
            hi = plan_fjoin(t, s, hi);
        }
    }
    return plan_fjoin(t, plan_fjoin(t, lo, plan_fnew(t, off, sz)), hi);
}

/* Sort keys of the sweep: births in time order, the larger buffer first
 * among those born together, then the index, so the layout is
 * deterministic; deaths in time order. */
typedef struct { int t; size_t sz; int idx; } PlanEvent;

static int plan_cmp_birth(const void *x, const void *y)
{
    const PlanEvent *a = x, *b = y;
    if (a->t != b->t)
        return a->t < b->t ? -1 : 1;
    if (a->sz != b->sz)
        return a->sz > b->sz ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static int plan_cmp_death(const void *x, const void *y)
{
    const PlanEvent *a = x, *b = y;
    if (a->t != b->t)
        return a->t < b->t ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

/* Pack the buffers of one region (per_image: the batch-scaled ones) by a
 * sweep over time: at each step the buffers that died before it return
 * their space, then each buffer born at it takes the lowest free block
 * that holds it (first fit, sizes rounded up to PLAN_ALIGN so every offset
 * stays aligned). Buffers live at the same step never share memory, as
 * plan_verify checks. O(n log n) for n buffers. Returns the region's
 * extent. */
static size_t plan_pack(Plan *p, bool per_image)
{
    size_t cnt = (size_t)p->nbufs + 1;
    PlanEvent *born = malloc(cnt * sizeof *born), *dead = malloc(cnt * sizeof *dead);
    PlanTreap t = { malloc((2 * cnt + 2) * sizeof *t.n), malloc((2 * cnt + 2) * sizeof(int)),
                    0, 0, 0x9e3779b9u, &p->work };
    if (!born || !dead || !t.n || !t.spare)
        abort();
    int n = 0;
    for (int i = 0; i < p->nbufs; i++)
        if ((p->bufs[i].size_a != 0) == per_image) {
            size_t sz = plan_align(plan_sz(&p->bufs[i]));
            born[n] = (PlanEvent){ p->bufs[i].birth, sz, i };
            dead[n++] = (PlanEvent){ p->bufs[i].death, sz, i };
        }
    qsort(born, (size_t)n, sizeof *born, plan_cmp_birth);
    qsort(dead, (size_t)n, sizeof *dead, plan_cmp_death);
    int root = plan_fnew(&t, 0, SIZE_MAX);
    size_t extent = 0;
    for (int k = 0, d = 0; k < n; k++) {
        /* Lifetimes are inclusive: a buffer dying at step s still holds its
         * memory at s. */
        for (; d < n && dead[d].t < born[k].t; d++)
            if (dead[d].sz > 0)
                root = plan_fgive(&t, root, plan_off(&p->bufs[dead[d].idx]), dead[d].sz);
        PlanBuf *b = &p->bufs[born[k].idx];
        size_t off = 0;
        root = plan_ftake(&t, root, born[k].sz, &off);
        if (per_image)
            b->off_a = off;
        else
            b->off_b = off;
        if (off + plan_sz(b) > extent)
            extent = off + plan_sz(b);
    }
    free(born);
    free(dead);
    free(t.n);
    free(t.spare);
    return plan_align(extent);
}

/* fprintf to diag, or nothing when diag is NULL. */
__attribute__((format(printf, 2, 3))) static void plan_say(FILE *diag, const char *fmt, ...)
{
    if (!diag)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(diag, fmt, ap);
    va_end(ap);
}

static bool plan_supported(const IrGraph *g, FILE *diag)
{
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        if (n->op == OP_GRAD) {
            plan_say(diag, "optc: %s: node %s is an abstract grad(.); only optimizer graphs "
                    "(optc analyze) have them\n", g->name, n->name);
            return false;
        }
        if (n->op == OP_EXACT && op_find(n->u.exact.phi, OPF_ACT) < 0) {
            plan_say(diag, "optc: %s: exact(%s): not an activation of the runtime\n",
                    g->name, n->u.exact.phi);
            return false;
        }
        if ((i == 0) != (n->op == OP_INPUT)) {
            plan_say(diag, "optc: internal: %s: node 0 and only node 0 must be the input\n",
                    g->name);
            return false;
        }
        for (int k = 0; k < n->nin; k++)
            if (n->in[k] < 0 || n->in[k] >= i) {
                plan_say(diag, "optc: internal: %s: node %d reads node %d\n", g->name, i,
                        n->in[k]);
                return false;
            }
    }
    if (g->output <= 0 || g->output >= g->nnodes) {
        plan_say(diag, "optc: internal: %s: bad output node %d\n", g->name, g->output);
        return false;
    }
    IrShape s = g->nodes[g->output].shape;
    if (s.c != g->classes || s.h != 1 || s.w != 1) {
        plan_say(diag, "optc: %s: the output is %dx%dx%d, expected %dx1x1 logits\n", g->name,
                s.c, s.h, s.w, g->classes);
        return false;
    }
    return true;
}

/* --- dense stages: one buffer per chain of concats (plan_image_stride) ------
 * Concat j extends concat i in place when j = concat(i, g) has two inputs
 * and i's other live readers are all BNs fused with their relu (the
 * kernels that can read a channel prefix: rt_bn_relu_*_strided). Chains of
 * such links share the buffers of their last node, the representative:
 * rep[i] names it, -1 outside chains; dense_stage[s] (s < nnodes, all false
 * on entry) is set for the stages that have a chain. O(edges). */
static void plan_dense_chains(const Plan *p, const IrGraph *g, const int *ro, const int *rd,
                              int *rep, bool *dense_stage)
{
    int N = g->nnodes;
    int *next = malloc((size_t)N * sizeof *next);
    bool *tail = calloc((size_t)N, sizeof *tail);
    if (!next || !tail)
        abort();
    for (int i = 0; i < N; i++)
        next[i] = rep[i] = -1;
    for (int j = 1; j < N; j++) {
        const IrNode *n = &g->nodes[j];
        if (n->op != OP_CONCAT || n->nin != 2 || !p->nodes[j].live)
            continue;
        int i = n->in[0];
        if (g->nodes[i].op != OP_CONCAT || !p->nodes[i].live || i == g->output ||
            n->in[1] == i || p->nodes[i].needs_grad != p->nodes[j].needs_grad)
            continue;
        bool ok = true;
        for (int e = ro[i]; e < ro[i + 1] && ok; e++) {
            int r = rd[e];
            if (p->nodes[r].live && r != j)
                ok = g->nodes[r].op == OP_BN && p->nodes[r].fuse;
        }
        if (ok) {
            next[i] = j;
            tail[j] = true;
        }
    }
    for (int i = N - 1; i > 0; i--) {
        rep[i] = next[i] >= 0 ? rep[next[i]] : tail[i] ? i : -1;
        int st = g->nodes[i].stage;
        if (rep[i] >= 0 && st >= 0 && st < N)
            dense_stage[st] = true;
    }
    free(next);
    free(tail);
}

/* The conv whose backward recomputes fused relu r's output (PlanNode.recomp),
 * or 0: r's BN reads a chain's state or lies in a stage with a chain (a
 * dense step's second bn, relu), r needs a gradient and has exactly one live
 * reader, a conv. The BN's input is kept for its backward anyway, so only
 * the relu's output is saved, at one elementwise pass per recompute. */
static int plan_recompute_reader(const Plan *p, const IrGraph *g, const int *ro, const int *rd,
                                 const int *rep, const bool *dense_stage, int r)
{
    const PlanNode *pn = &p->nodes[r];
    if (g->nodes[r].op != OP_RELU || !pn->fuse || !pn->needs_grad || !pn->live)
        return 0;
    int src = g->nodes[pn->fuse].in[0], reader = 0, nread = 0;
    int st = g->nodes[r].stage;
    if (rep[src] < 0 && !(st >= 0 && st < g->nnodes && dense_stage[st]))
        return 0;
    for (int e = ro[r]; e < ro[r + 1]; e++)
        if (p->nodes[rd[e]].live) {
            reader = rd[e];
            nread++;
        }
    return nread == 1 && g->nodes[reader].op == OP_CONV ? reader : 0;
}

/* Lifetimes of a chain's buffers, gathered over its members. */
typedef struct { int birth, death, gbirth, gdeath; } PlanSpan;

static void plan_span_add(PlanSpan *s, int birth, int death, int gbirth, int gdeath)
{
    if (s->birth < 0 || birth < s->birth)
        s->birth = birth;
    if (death > s->death)
        s->death = death;
    if (gbirth >= 0 && (s->gbirth < 0 || gbirth < s->gbirth))
        s->gbirth = gbirth;
    if (gdeath > s->gdeath)
        s->gdeath = gdeath;
}

size_t plan_image_stride(const Plan *p, const IrGraph *g, int node)
{
    int b = p->nodes[node].out;
    return b >= 0 ? p->bufs[b].size_a : ir_numel(g->nodes[node].shape);
}

/* A sum's backward copies its gradient into each term's, times the term's
 * coefficient. Where the copies are not needed the terms take the sum's
 * gradient buffer as their own (their PlanNode.grad becomes the sum's, the
 * buffer lives to the last of their deaths, theirs is dropped):
 * - a conv term of coefficient +1 or -1 read by the sum alone: its backward
 *   reads the sum's gradient, negated for -1 (PlanNode.gneg);
 * - one other term x of coefficient +1 whose gradient the sum writes first,
 *   x's other readers' backwards all coming after those convs' (which read
 *   the buffer before they add into it).
 * A sum taken on as such a term keeps the buffer's readers: its own terms'
 * other readers come after those too (inh). The sum's backward then skips
 * these terms. Fixed coefficients only (a
 * learned one reads the inputs); tbw[i] is node i's backward time, -1 for
 * none. Sums run from the last: a term that is itself a sum hands its
 * (already shared) buffer on. */
#define PLAN_FOLD_MAX 8
static bool plan_fold_ok(const Plan *p, const IrGraph *g, const IrNode *n, int k)
{
    int x = n->in[k];
    const PlanNode *px = &p->nodes[x];
    for (int q = 0; q < n->nin; q++)
        if (q != k && n->in[q] == x)
            return false;
    return x != 0 && x != g->output && px->needs_grad && px->grad >= 0 &&
           p->bufs[px->grad].node == x && n->u.sum.coef[k].nterms == 0 &&
           g->nodes[x].op != OP_CONCAT && ir_numel(g->nodes[x].shape) == ir_numel(n->shape);
}

static void plan_fold_sums(Plan *p, const IrGraph *g, const int *tbw)
{
    int N = g->nnodes;
    int *cnt = calloc((size_t)N * 4 + 1, sizeof *cnt), *min1 = cnt + N, *min2 = min1 + N;
    int *inh = min2 + N;    /* the last read of the buffer a term took on, by a later sum's conv */
    if (!cnt)
        abort();
    for (int i = 0; i < N; i++) {
        min1[i] = min2[i] = INT_MAX;
        inh[i] = -1;
    }
    for (int j = 0; j < N; j++) {
        const IrNode *n = &g->nodes[j];
        if (!p->nodes[j].live)
            continue;
        for (int k = 0; k < n->nin; k++) {
            int x = n->in[k];
            p->work++;
            cnt[x]++;
            if (!p->nodes[j].needs_grad)
                continue;
            int t = tbw[j] < 0 ? INT_MAX : tbw[j];
            if (t < min1[x]) {
                min2[x] = min1[x];
                min1[x] = t;
            } else if (t < min2[x]) {
                min2[x] = t;
            }
        }
    }
    for (int s = N - 1; s > 0; s--) {
        const IrNode *n = &g->nodes[s];
        const PlanNode *ps = &p->nodes[s];
        if (n->op != OP_SUM || !ps->live || !ps->needs_grad || s == g->output || ps->grad < 0 ||
            tbw[s] < 0 || op_bwd_reads_input(n))
            continue;
        int fold[PLAN_FOLD_MAX], nf = 0, last = tbw[s] > inh[s] ? tbw[s] : inh[s];
        for (int k = 0; k < n->nin && nf < PLAN_FOLD_MAX - 1; k++) {
            int x = n->in[k];
            double c = n->u.sum.coef[k].c0;
            if (plan_fold_ok(p, g, n, k) && g->nodes[x].op == OP_CONV && cnt[x] == 1 &&
                (c == 1.0 || c == -1.0) && tbw[x] > tbw[s]) {
                fold[nf++] = k;
                if (tbw[x] > last)
                    last = tbw[x];
            }
        }
        for (int k = 0; k < n->nin; k++) {
            int x = n->in[k];
            bool folded = false;
            for (int f = 0; f < nf; f++)
                folded = folded || fold[f] == k;
            if (!folded && plan_fold_ok(p, g, n, k) && n->u.sum.coef[k].c0 == 1.0 &&
                min1[x] == tbw[s] && min2[x] > last) {
                fold[nf++] = k;
                break;
            }
        }
        PlanBuf *b = &p->bufs[ps->grad];
        for (int f = 0; f < nf; f++) {
            int k = fold[f], x = n->in[k];
            PlanNode *px = &p->nodes[x];
            PlanBuf *xb = &p->bufs[px->grad];
            if (xb->death > b->death)
                b->death = xb->death;
            xb->node = -1;     /* dropped below */
            px->grad = ps->grad;
            px->gneg = g->nodes[x].op == OP_CONV && n->u.sum.coef[k].c0 == -1.0;
            inh[x] = last;
        }
    }
    free(cnt);
    /* drop the buffers given up, renumbering the rest */
    int *map = malloc(((size_t)p->nbufs + 1) * sizeof *map), nb = 0;
    if (!map)
        abort();
    for (int i = 0; i < p->nbufs; i++) {
        map[i] = p->bufs[i].node < 0 ? -1 : nb;
        if (map[i] >= 0)
            p->bufs[nb++] = p->bufs[i];
    }
    p->nbufs = nb;
    for (int i = 0; i < N; i++) {
        PlanNode *pn = &p->nodes[i];
        int *f[] = { &pn->out, &pn->grad, &pn->save0, &pn->save1, &pn->rec, &pn->recomp,
                     &pn->corr, &pn->corr_hdr };
        for (size_t k = 0; k < sizeof f / sizeof f[0]; k++)
            if (*f[k] >= 0)
                *f[k] = map[*f[k]];
    }
    free(map);
}

/* The readers of every node (CSR: the readers of i are rd[ro[i]] ..
 * rd[ro[i+1]-1], in node order; with live_only, only live readers), so a
 * pass over them costs O(edges), not O(nodes^2). The caller frees both. */
static int *plan_readers(Plan *p, const IrGraph *g, bool live_only, int **rd_out)
{
    int N = g->nnodes;
    int *ro = calloc((size_t)N + 2, sizeof *ro);
    if (!ro)
        abort();
    size_t nedges = 0;
    for (int j = 0; j < N; j++)
        if (!live_only || p->nodes[j].live)
            for (int k = 0; k < g->nodes[j].nin; k++) {
                ro[g->nodes[j].in[k] + 2]++;
                nedges++;
            }
    for (int i = 0; i < N; i++)
        ro[i + 2] += ro[i + 1];
    int *rd = malloc((nedges + 1) * sizeof *rd);
    if (!rd)
        abort();
    for (int j = 0; j < N; j++)
        if (!live_only || p->nodes[j].live)
            for (int k = 0; k < g->nodes[j].nin; k++)
                rd[ro[g->nodes[j].in[k] + 1]++] = j;
    p->work += (size_t)N + 2 * nedges;
    *rd_out = rd;
    return ro;
}

/* A sum's backward still writes c * g into a term x's gradient where the
 * term keeps its own buffer (heavy ball's 1 + beta and -beta), and x's
 * fused BN + relu backward then adds into it: a pass over g and x's
 * gradient per term. Where every backward that writes x's gradient but the
 * last is such a sum's (x once among its terms, a fixed coefficient) and
 * the last is x's fused BN + relu (non-strided), the sums skip x and the
 * BN's backward writes the gradient from their gradients in one pass
 * (PlanNode.npend); where every backward that writes it is such a sum's and
 * x is a pad (a shortcut across a stride), the pad's backward reads the
 * terms instead of x's gradient, which is then never written. Each such sum's gradient buffer then lives to that BN's
 * backward, so nothing may write it after the sum's backward: every term
 * that shares it (plan_fold_sums) is a conv, which only reads it. A
 * two-term sum whose terms both keep their buffers is left alone (its
 * backward's one-loop form rounds 0 + c g, not c g). x's gradient buffer
 * is then born at the BN's backward. tbw[i] is node i's backward time, -1
 * for none. */
static void plan_defer_sums(Plan *p, const IrGraph *g, const int *tbw)
{
    int N = g->nnodes;
    int *rd, *ro = plan_readers(p, g, true, &rd);
    for (int x = 1; x < N; x++) {
        PlanNode *px = &p->nodes[x];
        int R[PLAN_PEND_MAX + 1], m = 0, ok = 1;
        if (!px->live || !px->needs_grad || x == g->output || px->grad < 0 ||
            p->bufs[px->grad].node != x || ro[x + 1] - ro[x] > PLAN_PEND_MAX + 1)
            continue;
        for (int e = ro[x]; e < ro[x + 1] && ok; e++) {     /* by backward time */
            int j = rd[e], i = m++;
            ok = tbw[j] >= 0 && (e == ro[x] || rd[e - 1] != j);
            for (; ok && i > 0 && tbw[R[i - 1]] > tbw[j]; i--)
                R[i] = R[i - 1];
            R[i] = j;
        }
        if (!ok || m < 1)
            continue;
        /* the backward that takes the terms on: x's fused BN + relu, the
         * last to write its gradient, or a pad's own (x read by sums only) */
        int bn = R[m - 1], nsum = m - 1, tc = tbw[bn];
        const IrNode *nb = &g->nodes[bn];
        if (g->nodes[x].op == OP_PAD && nb->op == OP_SUM && m <= PLAN_PEND_MAX && tbw[x] >= 0) {
            nsum = m;
            tc = tbw[x];
        } else if (m < 2 || nb->op != OP_BN || !p->nodes[bn].fuse || nb->nin != 1 ||
                   plan_image_stride(p, g, x) != ir_numel(g->nodes[x].shape)) {
            continue;
        }
        int ks[PLAN_PEND_MAX];
        for (int i = 0; i < nsum && ok; i++) {
            int s = R[i];
            const IrNode *n = &g->nodes[s];
            const PlanNode *ps = &p->nodes[s];
            ok = n->op == OP_SUM && s != g->output && ps->grad >= 0 && !op_bwd_reads_input(n) &&
                 ir_numel(n->shape) == ir_numel(g->nodes[x].shape);
            int kept = 0;
            ks[i] = -1;
            for (int k = 0; ok && k < n->nin; k++) {
                const PlanNode *pk = &p->nodes[n->in[k]];
                if (n->in[k] == x)
                    ks[i] = ks[i] < 0 ? k : -2;
                if (pk->needs_grad && pk->grad >= 0 && pk->grad != ps->grad)
                    kept++;
                if (pk->grad == ps->grad && g->nodes[n->in[k]].op != OP_CONV)
                    ok = 0;
            }
            ok = ok && ks[i] >= 0 && n->u.sum.coef[ks[i]].nterms == 0 &&
                 !(n->nin == 2 && kept == 2);
        }
        if (!ok)
            continue;
        px->npend = nsum;
        for (int i = 0; i < nsum; i++) {
            PlanBuf *b = &p->bufs[p->nodes[R[i]].grad];
            px->pend_sum[i] = R[i];
            px->pend_k[i] = ks[i];
            if (b->death < tc)
                b->death = tc;
        }
        p->bufs[px->grad].birth = tc;     /* a pad's: never written, dead at once */
        if (nsum == m)
            p->bufs[px->grad].death = tc;
    }
    free(ro);
    free(rd);
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
        bool ng = op_has_params(n);
        for (int k = 0; k < n->nin; k++)
            ng = ng || p->nodes[n->in[k]].needs_grad;
        p->nodes[i].needs_grad = ng && p->nodes[i].live;
    }

    /* the readers of every node, live or not */
    int *rd, *ro = plan_readers(p, g, false, &rd);

    /* BN + relu pairs (PlanNode.fuse): a live BN read by exactly one live
     * node, a relu that is not the graph output. */
    for (int i = 1; i < N; i++) {
        if (g->nodes[i].op != OP_BN || !p->nodes[i].live || i == g->output)
            continue;
        int reader = -1, nread = 0;
        for (int e = ro[i]; e < ro[i + 1]; e++)
            if (p->nodes[rd[e]].live) {
                reader = rd[e];
                nread++;
            }
        if (nread == 1 && g->nodes[reader].op == OP_RELU && g->nodes[reader].nin == 1 &&
            reader != g->output && p->nodes[reader].needs_grad == p->nodes[i].needs_grad) {
            p->nodes[i].fuse = reader;
            p->nodes[reader].fuse = i;
        }
    }

    int *rep = malloc((size_t)N * sizeof *rep);
    PlanSpan *span = malloc((size_t)N * sizeof *span);
    bool *dense_stage = calloc((size_t)N, sizeof *dense_stage);
    if (!rep || !span || !dense_stage)
        abort();
    plan_dense_chains(p, g, ro, rd, rep, dense_stage);
    for (int i = 0; i < N; i++)
        span[i] = (PlanSpan){ -1, -1, -1, -1 };
    int cap = 0;
    for (int i = 0; i < N; i++) {
        PlanNode *pn = &p->nodes[i];
        const IrNode *n = &g->nodes[i];
        pn->out = pn->grad = pn->save0 = pn->save1 = pn->rec = pn->recomp = -1;
        pn->corr = pn->corr_hdr = -1;
        pn->corr_esc = 0;
        pn->gneg = false;
        pn->npend = 0;
        if (!pn->live)
            continue;
        int tf = plan_time_fwd(g, i), tb = plan_time_bwd(g, i);
        if (i != 0 && i != g->output) {
            int death = tf;
            int first_grad_write = -1;
            for (int e = ro[i]; e < ro[i + 1]; e++) {
                int j = rd[e];
                const IrNode *c = &g->nodes[j];
                p->work++;
                if (!p->nodes[j].live)
                    continue;
                if (plan_time_fwd(g, j) > death)
                    death = plan_time_fwd(g, j);
                if (p->nodes[j].needs_grad) {
                    if (op_bwd_reads_input(c) && plan_time_bwd(g, j) > death)
                        death = plan_time_bwd(g, j);
                    if (first_grad_write < 0 || plan_time_bwd(g, j) < first_grad_write)
                        first_grad_write = plan_time_bwd(g, j);
                }
            }
            if (pn->needs_grad && op_bwd_reads_output(n) && tb > death)
                death = tb;
            /* A fused relu: written at its BN's forward, read (output and
             * gradient) at its BN's backward. */
            int fb = pn->fuse && n->op == OP_RELU ? pn->fuse : 0;
            int birth = fb ? plan_time_fwd(g, fb) : tf, gdeath = tb;
            if (fb && pn->needs_grad) {
                gdeath = plan_time_bwd(g, fb);
                if (gdeath > death)
                    death = gdeath;
            }
            int rc = fb ? plan_recompute_reader(p, g, ro, rd, rep, dense_stage, i) : 0;
            if (rc) {   /* kept only until its reader's forward; backward recomputes it */
                death = plan_time_fwd(g, rc);
                pn->recomp = plan_add(p, &cap, PB_RECOMP, i, ir_numel(n->shape), 0,
                                      plan_time_bwd(g, rc), plan_time_bwd(g, fb));
            }
            if (rep[i] >= 0) {  /* a dense-stage state: the chain's buffers */
                PlanSpan *sp = &span[rep[i]];
                plan_span_add(sp, birth, death, pn->needs_grad ? first_grad_write : -1,
                              pn->needs_grad && first_grad_write >= 0 ? gdeath : -1);
                if (rep[i] == i) {
                    pn->out = plan_add(p, &cap, PB_OUT, i, ir_numel(n->shape), 0, sp->birth,
                                       sp->death);
                    if (sp->gbirth >= 0)
                        pn->grad = plan_add(p, &cap, PB_GRAD, i, ir_numel(n->shape), 0,
                                            sp->gbirth, sp->gdeath);
                }
            } else if (!(pn->fuse && n->op == OP_BN)) {
                pn->out = plan_add(p, &cap, PB_OUT, i, ir_numel(n->shape), 0, birth, death);
                if (pn->needs_grad && first_grad_write >= 0)
                    pn->grad = plan_add(p, &cap, PB_GRAD, i, ir_numel(n->shape), 0,
                                        first_grad_write, gdeath);
            }
        }
        int sdeath = pn->needs_grad ? tb : tf;
        if (n->op == OP_BN) {
            pn->save0 = plan_add(p, &cap, PB_SAVE0, i, 0, (size_t)n->shape.c, tf, sdeath);
            pn->save1 = plan_add(p, &cap, PB_SAVE1, i, 0, (size_t)n->shape.c, tf, sdeath);
        } else if (n->op == OP_EXACT) {
            pn->save0 = plan_add(p, &cap, PB_SAVE0, i, (size_t)n->u.exact.m, 0, tf, sdeath);
        } else if (n->op == OP_DROPOUT) {
            pn->save0 = plan_add(p, &cap, PB_SAVE0, i, ir_numel(n->shape), 0, tf, sdeath);
        }
    }
    for (int i = 1; i < N; i++)
        if (rep[i] >= 0 && rep[i] != i) {
            p->nodes[i].out = p->nodes[rep[i]].out;
            p->nodes[i].grad = p->nodes[rep[i]].grad;
        }
    free(rep);
    free(span);
    free(dense_stage);
    free(ro);
    free(rd);
    for (int i = 0; i < p->nbufs; i++) {
        p->naive_a += plan_align(p->bufs[i].size_a);
        p->naive_b += plan_align(p->bufs[i].size_b);
    }
    {
        int *tbw = malloc(((size_t)N + 1) * sizeof *tbw);
        if (!tbw)
            abort();
        for (int i = 0; i < N; i++)
            tbw[i] = plan_time_bwd(g, i);
        plan_fold_sums(p, g, tbw);
        plan_defer_sums(p, g, tbw);
        free(tbw);
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
             + (size_t)B * ir_numel(g->input) + 2 * (size_t)B * (size_t)g->classes;
    return n * elem_size;
}

PlanMemory plan_memory(const Plan *p, const IrGraph *g, int B)
{
    /* In doubles: a hostile network must not wrap a size_t. */
    double e = sizeof(float), b = (double)B;
    PlanMemory m;
    m.batch = B;
    m.params = (double)p->nparams * e;
    m.buffers = (double)p->nbuffers * e;
    m.acts = ((double)p->arena_a * b + (double)p->arena_b + b * (double)ir_numel(g->input) +
              2.0 * b * (double)g->classes) * e;
    m.total = 3.0 * m.params + m.buffers + m.acts;
    return m;
}

int plan_default_batch(const IrGraph *g)
{
    return g->train.batch > 0 ? g->train.batch : RT_DEFAULT_BATCH;
}

double plan_phys_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
}

int plan_check_memory(const Plan *p, const IrGraph *g, const char *spec, double phys,
                      FILE *diag)
{
    PlanMemory m = plan_memory(p, g, plan_default_batch(g));
    if (phys <= 0 || m.total <= phys)
        return 0;
    const double mib = 1048576.0;
    plan_say(diag, "%s: error: network %s needs %.0f MiB at batch %d (parameters %.0f MiB, "
             "activations %.0f MiB), more than this machine's %.0f MiB\n", spec, g->name,
             m.total / mib, m.batch, m.params / mib, m.acts / mib, phys / mib);
    return -1;
}

/* The lowest / highest block of a non-empty treap, left in place. */
static int plan_ffirst(const PlanTreap *t, int i)
{
    while (t->n[i].l >= 0)
        i = t->n[i].l;
    return i;
}

static int plan_flast(const PlanTreap *t, int i)
{
    while (t->n[i].r >= 0)
        i = t->n[i].r;
    return i;
}

/* One region of plan_verify: a sweep over time keeping the live buffers in
 * a treap by offset (there they are disjoint, so a new buffer need only be
 * checked against its two neighbours). O(n log n). */
static int plan_verify_region(const Plan *p, bool per_image, FILE *diag)
{
    size_t cnt = (size_t)p->nbufs + 1, work = 0;
    PlanEvent *born = malloc(cnt * sizeof *born), *dead = malloc(cnt * sizeof *dead);
    PlanTreap t = { malloc(cnt * sizeof *t.n), malloc(cnt * sizeof(int)), 0, 0, 0x9e3779b9u,
                    &work };
    if (!born || !dead || !t.n || !t.spare)
        abort();
    int n = 0;
    for (int i = 0; i < p->nbufs; i++)
        if ((p->bufs[i].size_a != 0) == per_image && plan_sz(&p->bufs[i]) > 0) {
            born[n] = (PlanEvent){ p->bufs[i].birth, 0, i };
            dead[n++] = (PlanEvent){ p->bufs[i].death, 0, i };
        }
    qsort(born, (size_t)n, sizeof *born, plan_cmp_death);  /* by time, then index */
    qsort(dead, (size_t)n, sizeof *dead, plan_cmp_death);
    int root = -1, rc = 0;
    for (int k = 0, d = 0; k < n && rc == 0; k++) {
        for (; d < n && dead[d].t < born[k].t; d++) {
            int lo, mid, hi;
            size_t off = plan_off(&p->bufs[dead[d].idx]);
            plan_fsplit(&t, root, off, &lo, &hi);
            plan_fsplit(&t, hi, off + 1, &mid, &hi);
            if (mid >= 0)   /* the buffer itself: offsets of live buffers are distinct */
                t.spare[t.nspare++] = mid;
            root = plan_fjoin(&t, lo, hi);
        }
        const PlanBuf *x = &p->bufs[born[k].idx];
        size_t off = plan_off(x), sz = plan_sz(x);
        int lo, hi, other = -1;
        plan_fsplit(&t, root, off, &lo, &hi);
        if (lo >= 0) {
            const PlanFree *f = &t.n[plan_flast(&t, lo)];
            if (f->off + f->len > off)
                other = f->idx;
        }
        if (hi >= 0) {
            const PlanFree *f = &t.n[plan_ffirst(&t, hi)];
            if (f->off < off + sz)
                other = f->idx;
        }
        if (other >= 0) {
            plan_say(diag, "plan: buffers %d (node %d) and %d (node %d) overlap\n",
                     born[k].idx, x->node, other, p->bufs[other].node);
            rc = -1;
        }
        int node = plan_fnew(&t, off, sz);
        t.n[node].idx = born[k].idx;
        root = plan_fjoin(&t, plan_fjoin(&t, lo, node), hi);
    }
    free(born);
    free(dead);
    free(t.n);
    free(t.spare);
    return rc;
}

int plan_verify(const Plan *p, FILE *diag)
{
    for (int i = 0; i < p->nbufs; i++) {
        const PlanBuf *x = &p->bufs[i];
        if ((x->size_a != 0) == (x->size_b != 0)) {
            plan_say(diag, "plan: buffer %d mixes per-image and fixed sizes\n", i);
            return -1;
        }
        size_t lim = x->size_a ? p->arena_a : p->arena_b;
        if (plan_off(x) + plan_sz(x) > lim || plan_off(x) % PLAN_ALIGN) {
            plan_say(diag, "plan: buffer %d (node %d) outside the arena or misaligned\n", i,
                     x->node);
            return -1;
        }
        if (x->birth > x->death) {
            plan_say(diag, "plan: buffer %d (node %d) dies before it is born\n", i, x->node);
            return -1;
        }
    }
    if (plan_verify_region(p, true, diag) || plan_verify_region(p, false, diag))
        return -1;
    return 0;
}

size_t plan_pack_lifetimes(PlanBuf *bufs, int n)
{
    Plan p;
    memset(&p, 0, sizeof p);
    p.bufs = bufs;
    p.nbufs = n;
    return plan_pack(&p, true);
}

int plan_verify_lifetimes(PlanBuf *bufs, int n, size_t extent, FILE *diag)
{
    Plan p;
    memset(&p, 0, sizeof p);
    p.bufs = bufs;
    p.nbufs = n;
    p.arena_a = extent;
    return plan_verify(&p, diag);
}

/* --- memory-free schedules ------------------------------------------------ */

typedef struct {
    const PlanSched *s;
    int nfwd;               /* events before the backward phase */
    int *fd, *rb, *rd;      /* per node: forward buffer's death, rec buffer's birth and death */
    int bad;                /* a backward read of a rebuilt value before it exists */
    int bad_node, bad_time;
} PlanUse;

/* Node j's output is read at event t. */
static void plan_use(PlanUse *u, int j, int t)
{
    if (t >= u->nfwd && u->s->rec[j]) {
        if (!u->bad && (u->rb[j] < 0 || t < u->rb[j])) {
            u->bad = 1;
            u->bad_node = j;
            u->bad_time = t;
        }
        if (t > u->rd[j])
            u->rd[j] = t;
    } else if (t > u->fd[j]) {
        u->fd[j] = t;
    }
}

static int plan_imax(int a, int b) { return a > b ? a : b; }

/* An element escapes its int8 code when the rebuild's rounding moves it by
 * more than 127 ulps: where it is small next to the terms it is solved
 * from, and more often the smaller c (the rounding is divided by c).
 * Measured (docs/memory-free.md): at most about 0.5% / c of a state's
 * elements (0.52% of stage1.x1 of the 110-layer heavy ball, c = 0.9; 1.9%
 * at c = 0.25); the list holds four times that, 2% / c, and all of them
 * below c = 0.02. */
size_t plan_mf_escapes(size_t n, double c)
{
    double f = fabs(c) > 0.02 ? 0.02 / fabs(c) : 1.0;
    size_t e = (size_t)ceil((double)n * f);
    return e < n ? e : n;
}

/* Codes take n bytes: n / 4 elements of a float arena (more than a double
 * one needs). */
size_t plan_mf_corr_elems(size_t n, double c)
{
    return plan_mf_escapes(n, c) + (n + 3) / 4;
}

/* The value of coefficient c at initialisation (a learned one's initial
 * value). */
double plan_coef_init(const IrGraph *g, const IrCoef *c)
{
    double v = c->c0;
    for (int j = 0; j < c->nterms; j++)
        v += c->a[j] * g->params[c->param[j]].init_value;
    return v;
}

Plan *plan_build_sched(const IrGraph *g, const PlanSched *s, FILE *diag)
{
    Plan *p = plan_build(g, diag);
    if (!p)
        return NULL;
    int N = g->nnodes;
    p->stored_a = p->arena_a;
    p->stored_b = p->arena_b;
    p->sched = s;
    free(p->bufs);
    p->bufs = NULL;
    p->nbufs = 0;
    p->naive_a = p->naive_b = 0;
    int *tf = malloc(7 * ((size_t)N + 1) * sizeof *tf);
    if (!tf)
        abort();
    int *tr = tf + N + 1, *tb = tr + N + 1, *gb = tb + N + 1;
    PlanUse u = { s, 0, gb + N + 1, gb + 2 * (N + 1), gb + 3 * (N + 1), 0, -1, -1 };
    for (int i = 0; i < 7 * (N + 1); i++)
        tf[i] = -1;
    for (int e = 0; e < s->nev; e++) {
        const PlanEv *v = &s->ev[e];
        if (v->kind == PLAN_EV_FWD) {
            tf[v->node] = e;
            u.nfwd = e + 1;
        } else if (v->kind == PLAN_EV_BWD) {
            tb[v->node] = e;
        } else {
            tr[v->node] = e;
        }
    }
    /* Births: a fused relu is written by its BN's events. */
    for (int i = 0; i < N; i++) {
        const PlanNode *pn = &p->nodes[i];
        int src = pn->fuse && g->nodes[i].op == OP_RELU ? pn->fuse : i;
        u.fd[i] = tf[src];
        u.rb[i] = s->rec[i] ? tr[src] : -1;
        u.rd[i] = u.rb[i];
    }
    for (int e = 0; e < s->nev && !u.bad; e++) {
        const PlanEv *v = &s->ev[e];
        const IrNode *n = &g->nodes[v->node];
        const PlanNode *pn = &p->nodes[v->node];
        bool fused_relu = pn->fuse && n->op == OP_RELU;
        switch (v->kind) {
        case PLAN_EV_FWD:
        case PLAN_EV_REC:
            if (!fused_relu)
                for (int k = 0; k < n->nin; k++)
                    plan_use(&u, n->in[k], e);
            break;
        case PLAN_EV_REB: {
            const IrNode *via = &g->nodes[v->via];
            plan_use(&u, v->via, e);
            for (int k = 0; k < via->nin; k++)
                if (k != v->at)
                    plan_use(&u, via->in[k], e);
            break;
        }
        case PLAN_EV_BWD:
            if (op_bwd_reads_input(n) && !fused_relu)
                for (int k = 0; k < n->nin; k++)
                    plan_use(&u, n->in[k], e);
            if (op_bwd_reads_output(n) && !fused_relu)
                plan_use(&u, v->node, e);
            if (pn->fuse && n->op == OP_BN)
                plan_use(&u, pn->fuse, e);
            /* the gradients it writes */
            for (int k = 0; k < n->nin; k++) {
                int j = n->in[k];
                if (p->nodes[j].needs_grad && (gb[j] < 0 || e < gb[j]))
                    gb[j] = e;
            }
            break;
        }
    }
    if (u.bad) {
        plan_say(diag, "optc: internal: %s: the memory-free schedule reads %s (event %d) before "
                 "it is rebuilt\n", g->name, g->nodes[u.bad_node].name, u.bad_time);
        free(tf);
        plan_free(p);
        return NULL;
    }
    int cap = 0;
    for (int i = 0; i < N; i++) {
        PlanNode *pn = &p->nodes[i];
        const IrNode *n = &g->nodes[i];
        pn->out = pn->grad = pn->save0 = pn->save1 = pn->rec = pn->recomp = -1;
        pn->corr = pn->corr_hdr = -1;
        pn->corr_esc = 0;
        pn->gneg = false;
        pn->npend = 0;
        if (!pn->live)
            continue;
        bool fused_relu = pn->fuse && n->op == OP_RELU;
        int gdeath = fused_relu ? tb[pn->fuse] : tb[i];
        if (i != 0 && i != g->output && !(pn->fuse && n->op == OP_BN)) {
            size_t sz = ir_numel(n->shape);
            int birth = tf[fused_relu ? pn->fuse : i];
            pn->out = plan_add(p, &cap, PB_OUT, i, sz, 0, birth, plan_imax(u.fd[i], birth));
            if (s->rec[i])
                pn->rec = plan_add(p, &cap, PB_OUT, i, sz, 0, u.rb[i], u.rd[i]);
            if (pn->needs_grad && gb[i] >= 0)
                pn->grad = plan_add(p, &cap, PB_GRAD, i, sz, 0, gb[i], plan_imax(gdeath, gb[i]));
        }
        int sdeath = pn->needs_grad && tb[i] >= 0 ? tb[i] : tf[i];
        if (n->op == OP_BN) {
            pn->save0 = plan_add(p, &cap, PB_SAVE0, i, 0, (size_t)n->shape.c, tf[i], sdeath);
            pn->save1 = plan_add(p, &cap, PB_SAVE1, i, 0, (size_t)n->shape.c, tf[i], sdeath);
        } else if (n->op == OP_EXACT) {
            pn->save0 = plan_add(p, &cap, PB_SAVE0, i, (size_t)n->u.exact.m, 0, tf[i], sdeath);
        } else if (n->op == OP_DROPOUT) {
            pn->save0 = plan_add(p, &cap, PB_SAVE0, i, ir_numel(n->shape), 0, tf[i], sdeath);
        }
    }
    /* Exact reconstruction: a state's correction lives from the forward of
     * the sum it is rebuilt from to its rebuild. */
    for (int e = 0; s->exact && e < s->nev; e++) {
        const PlanEv *v = &s->ev[e];
        if (v->kind != PLAN_EV_REB)
            continue;
        PlanNode *pn = &p->nodes[v->node];
        size_t n = ir_numel(g->nodes[v->node].shape);
        double c = plan_coef_init(g, &g->nodes[v->via].u.sum.coef[v->at]);
        pn->corr_esc = plan_mf_escapes(n, c);
        pn->corr = plan_add(p, &cap, PB_CORR, v->node, plan_mf_corr_elems(n, c), 0, tf[v->via],
                            e);
        pn->corr_hdr = plan_add(p, &cap, PB_CORR, v->node, 0, PLAN_MF_HDR_ELEMS, tf[v->via], e);
    }
    for (int i = 0; i < p->nbufs; i++) {
        p->naive_a += plan_align(p->bufs[i].size_a);
        p->naive_b += plan_align(p->bufs[i].size_b);
    }
    plan_fold_sums(p, g, tb);
    plan_defer_sums(p, g, tb);
    free(tf);
    p->arena_a = plan_pack(p, true);
    p->arena_b = plan_pack(p, false);
    return p;
}
