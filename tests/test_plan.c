/* test_plan.c — the planner (plan.c): parameter layout, liveness over
 * forward and backward, arena packing, its self-check plan_verify (on
 * planner output and on plans made by hand), its cost, the memory check. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "plan.h"
#include "tmain.h"
#include "cgutil.h"

START_TEST(test_plan_hand)
{
    static Hand h;
    for (int which = 0; which < 2; which++) {
        if (which == 0)
            h_resnet(&h);
        else
            h_all(&h);
        Plan *p = plan_build(&h.g, stderr);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(plan_verify(p, stderr), 0);
        size_t want = 0;
        for (int i = 0; i < h.g.nparams; i++)
            want += h.params[i].trainable ? h.params[i].numel : 0;
        ck_assert_uint_eq(p->nparams, want);
        /* Reuse: the arena is smaller than one buffer per tensor. */
        ck_assert_uint_lt(p->arena_a, p->naive_a);
        /* A forward activation read by a backward lives until then. */
        for (int b = 0; b < p->nbufs; b++) {
            const PlanBuf *pb = &p->bufs[b];
            const IrNode *n = &h.g.nodes[pb->node];
            if (pb->kind == PB_OUT && n->op == OP_RELU && p->nodes[pb->node].needs_grad)
                ck_assert_int_ge(pb->death, plan_time_bwd(&h.g, pb->node));
            /* a relu fused with its BN (PlanNode.fuse) is written at the
             * BN's forward and read at its backward */
            int fb = n->op == OP_RELU ? p->nodes[pb->node].fuse : 0;
            /* a gradient lives to its (last) reader's backward: a sum's
             * terms may share its buffer (plan_fold_sums) */
            if (pb->kind == PB_GRAD) {
                int last = -1;
                for (int i = 1; i < h.g.nnodes; i++) {
                    int fi = h.g.nodes[i].op == OP_RELU ? p->nodes[i].fuse : 0;
                    if (p->nodes[i].grad == b && plan_time_bwd(&h.g, fi ? fi : i) > last)
                        last = plan_time_bwd(&h.g, fi ? fi : i);
                }
                ck_assert_int_eq(pb->death, last);  /* no terms taken on by a BN here */
            }
            if (pb->kind == PB_OUT && fb) {
                ck_assert_int_eq(pb->birth, plan_time_fwd(&h.g, fb));
                ck_assert_int_ge(pb->death, plan_time_bwd(&h.g, fb));
            }
        }
        /* Fused pairs: a BN read only by a relu; the BN keeps no buffers
         * but its saved statistics. */
        int nfused = 0;
        for (int i = 1; i < h.g.nnodes; i++) {
            const PlanNode *pn = &p->nodes[i];
            if (!pn->fuse)
                continue;
            ck_assert_int_eq(p->nodes[pn->fuse].fuse, i);
            if (h.g.nodes[i].op == OP_BN) {
                nfused++;
                ck_assert_int_eq(h.g.nodes[pn->fuse].op, OP_RELU);
                ck_assert_int_eq(h.g.nodes[pn->fuse].in[0], i);
                ck_assert_int_eq(pn->out, -1);
                ck_assert_int_eq(pn->grad, -1);
                ck_assert_int_ge(pn->save0, 0);
            }
        }
        if (which == 0)
            ck_assert_int_gt(nfused, 0);
        /* Terms sharing their sum's gradient buffer (plan_fold_sums): +1,
         * or a conv of -1 (gneg) that reads it negated. */
        int nfold = 0;
        for (int i = 1; i < h.g.nnodes; i++) {
            const IrNode *n = &h.g.nodes[i];
            if (n->op != OP_SUM)
                continue;
            for (int k = 0; k < n->nin; k++) {
                const PlanNode *px = &p->nodes[n->in[k]];
                const IrCoef *c = &n->u.sum.coef[k];
                if (px->gneg) {
                    ck_assert_int_eq(h.g.nodes[n->in[k]].op, OP_CONV);
                    ck_assert(c->nterms == 0 && c->c0 == -1.0);
                }
                if (px->grad >= 0 && px->grad == p->nodes[i].grad) {
                    nfold++;
                    ck_assert(c->nterms == 0 && (c->c0 == 1.0 || px->gneg));
                } else
                    ck_assert(!px->gneg);
            }
        }
        if (which == 0)
            ck_assert_int_gt(nfold, 0);     /* its blocks' x + conv: both terms */
        plan_free(p);
    }
}
END_TEST

/* Heavy ball's 1 + beta and -beta terms taken on by the states' BN + relu
 * backwards (plan_defer_sums), in the stored and the memory-free plans:
 * a node x with npend > 0 is read by exactly those sums (x once each, a
 * fixed coefficient, their backwards in pend_sum's order) and, last, by its
 * fused BN, or it is a pad read by those sums alone (its own backward takes
 * them on); each sum's gradient buffer lives to that backward and is
 * shared by no term but convs (it is only read after the sum's backward);
 * x's own gradient is born there (a pad's dies there too). */
static void plan_check_defer(const IrGraph *g, const Plan *p, const int *tb, int *ndefer)
{
    for (int x = 1; x < g->nnodes; x++) {
        const PlanNode *px = &p->nodes[x];
        if (px->npend <= 0)
            continue;
        ck_assert_int_le(px->npend, PLAN_PEND_MAX);
        int bn = -1, nread = 0;
        for (int j = 1; j < g->nnodes; j++)
            for (int k = 0; k < g->nodes[j].nin; k++)
                if (g->nodes[j].in[k] == x && p->nodes[j].live) {
                    nread++;
                    if (g->nodes[j].op == OP_BN)
                        bn = j;
                }
        if (g->nodes[x].op == OP_PAD) {     /* read by the sums alone: its own backward */
            ck_assert_int_eq(bn, -1);
            ck_assert_int_eq(nread, px->npend);
            bn = x;
            ck_assert_int_eq(p->bufs[px->grad].death, tb[x]);
        } else {
            ck_assert_int_ge(bn, 0);
            ck_assert(p->nodes[bn].fuse);
            ck_assert_int_eq(nread, px->npend + 1);
        }
        ck_assert_int_eq(p->bufs[px->grad].birth, tb[bn]);
        for (int i = 0; i < px->npend; i++) {
            int s = px->pend_sum[i];
            const IrNode *n = &g->nodes[s];
            ck_assert_int_eq(n->op, OP_SUM);
            ck_assert_int_eq(n->in[px->pend_k[i]], x);
            ck_assert_int_eq(n->u.sum.coef[px->pend_k[i]].nterms, 0);
            ck_assert_int_lt(tb[s], tb[bn]);
            if (i > 0)
                ck_assert_int_lt(tb[px->pend_sum[i - 1]], tb[s]);
            int gb = p->nodes[s].grad;
            ck_assert_int_ge(gb, 0);
            ck_assert_int_ge(p->bufs[gb].death, tb[bn]);
            for (int k = 0; k < n->nin; k++)
                if (p->nodes[n->in[k]].grad == gb)
                    ck_assert_int_eq(g->nodes[n->in[k]].op, OP_CONV);
        }
        (*ndefer)++;
    }
}

START_TEST(test_plan_defer)
{
    static const char src[] =
        "optimizer hb(beta = 0.9) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
        "network hb {\n"
        "    input 1x8x8; classes 3; stem conv3x3(4);\n"
        "    grad = bn, relu, conv3x3, bn, relu, conv3x3;\n"
        "    stage hb steps 3 width 4;\n"
        "    stage hb steps 3 width 8 stride 2;\n"
        "    shortcut = pad;\n"
        "    head bn, relu, avgpool, linear;\n"
        "}\n";
    Arena *a = arena_new();
    int nerr = 0;
    Spec *sp = fe_load_string(a, "hb.opt", src, strlen(src), NULL, 0, stderr, &nerr);
    ck_assert_ptr_nonnull(sp);
    IrGraph *g = fe_unroll(a, sp, "hb", stderr, &nerr);
    ck_assert_ptr_nonnull(g);
    Plan *p = plan_build(g, stderr);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(plan_verify(p, stderr), 0);
    int *tb = malloc((size_t)g->nnodes * sizeof *tb), ndefer = 0, two = 0;
    ck_assert_ptr_nonnull(tb);
    for (int i = 0; i < g->nnodes; i++)
        tb[i] = plan_time_bwd(g, i);
    plan_check_defer(g, p, tb, &ndefer);
    for (int x = 1; x < g->nnodes; x++)
        two += p->nodes[x].npend == 2;
    /* stem and x1 of stage 1 (two sums each), x2 (one); x1 of stage 2 (two),
     * x2 (one); the stage-2 shortcut, a pad read by two sums only */
    ck_assert_int_eq(ndefer, 6);
    ck_assert_int_eq(two, 4);
    int npad = 0;
    for (int x = 1; x < g->nnodes; x++)
        if (g->nodes[x].op == OP_PAD) {
            ck_assert_int_eq(p->nodes[x].npend, 2);
            npad++;
        }
    ck_assert_int_eq(npad, 1);
    plan_free(p);
    free(tb);
    arena_free(a);
}
END_TEST

START_TEST(test_plan_rejects_grad)
{
    static Hand h;
    h_init(&h, "abstract", 1, 4, 4, 4);
    int g = h_node(&h, OP_GRAD, "grad", 1, (int[]){ 0 }, (IrShape){ 1, 4, 4 });
    h_linear(&h, g, 4, true);
    char *msg = NULL;
    size_t len = 0;
    FILE *diag = open_memstream(&msg, &len);
    Plan *p = plan_build(&h.g, diag);
    fclose(diag);
    ck_assert_ptr_null(p);
    ck_assert_ptr_nonnull(strstr(msg, "grad"));
    free(msg);
}
END_TEST

/* A chain network of one stage of `steps` steps (4 ops each), unrolled
 * through the front end into a; NULL on failure. */
static IrGraph *plan_chain(Arena *a, int steps)
{
    char src[512];
    snprintf(src, sizeof src,
             "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
             "network deep {\n"
             "    input 1x8x8; classes 3; stem conv3x3(4);\n"
             "    grad = bn, relu, conv3x3;\n"
             "    stage gd steps %d width 4;\n"
             "    head bn, relu, avgpool, linear;\n"
             "}\n", steps);
    int nerr = 0;
    Spec *sp = fe_load_string(a, "deep.opt", src, strlen(src), NULL, 0, stderr, &nerr);
    return sp ? fe_unroll(a, sp, "deep", stderr, &nerr) : NULL;
}

/* The planner is O(n log n): its work counter (reader edges plus free-list
 * tree nodes visited) stays within a small multiple of n log2 n for a
 * 3000-step stage (n = nodes + buffers, ~30,000), and tripling the graph
 * from 1000 steps multiplies it by well under 9, the quadratic packer's
 * factor (which compared every buffer with every other: ~10^8 steps here).
 * Counts, not time: the test cannot depend on the machine's load. */
START_TEST(test_plan_n_log_n)
{
    double work[2], n[2];
    const int steps[2] = { 1000, 3000 };
    for (int k = 0; k < 2; k++) {
        Arena *a = arena_new();
        IrGraph *g = plan_chain(a, steps[k]);
        ck_assert_ptr_nonnull(g);
        Plan *p = plan_build(g, stderr);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(plan_verify(p, stderr), 0);
        n[k] = (double)g->nnodes + (double)p->nbufs;
        work[k] = (double)p->work;
        ck_assert_msg(n[k] > 3.0 * steps[k], "%d steps: only %.0f nodes and buffers", steps[k],
                      n[k]);
        ck_assert_msg(work[k] <= 8.0 * n[k] * log2(n[k]),
                      "%d steps: %.0f planner steps for n = %.0f (bound 8 n log2 n = %.0f)",
                      steps[k], work[k], n[k], 8.0 * n[k] * log2(n[k]));
        /* Reuse is kept: a chain needs far less than a buffer per tensor. */
        ck_assert_uint_lt(2 * p->arena_a, p->naive_a);
        plan_free(p);
        arena_free(a);
    }
    ck_assert_msg(work[1] < 4.5 * work[0], "work grows %.2fx for 3x the steps",
                  work[1] / work[0]);
}
END_TEST

/* Whether any two buffers of p live at one step share memory, by all pairs:
 * the oracle for plan_verify's sweep. */
static bool plan_pairs_overlap(const Plan *p)
{
    for (int i = 0; i < p->nbufs; i++)
        for (int j = 0; j < i; j++) {
            const PlanBuf *x = &p->bufs[i], *y = &p->bufs[j];
            if ((x->size_a != 0) != (y->size_a != 0) || x->birth > y->death ||
                y->birth > x->death)
                continue;
            size_t xo = x->size_a ? x->off_a : x->off_b, xs = x->size_a ? x->size_a : x->size_b;
            size_t yo = y->size_a ? y->off_a : y->off_b, ys = y->size_a ? y->size_a : y->size_b;
            if (xo < yo + ys && yo < xo + xs)
                return true;
        }
    return false;
}

/* plan_verify (a sweep, no longer all pairs) agrees with the all-pairs
 * check on every plan made by moving one buffer onto another's offset or
 * across its end: overlaps of buffers live together are caught, buffers
 * never live together may share. */
START_TEST(test_plan_verify_catches)
{
    Arena *a = arena_new();
    IrGraph *g = plan_chain(a, 3);
    ck_assert_ptr_nonnull(g);
    Plan *p = plan_build(g, stderr);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(plan_verify(p, NULL), 0);
    int tried = 0, shared = 0;
    for (int i = 0; i < p->nbufs; i++)
        for (int j = 0; j < p->nbufs; j++) {
            PlanBuf *x = &p->bufs[i], *y = &p->bufs[j];
            if (i == j || !x->size_a || !y->size_a || x->size_a < 2 * 16)
                continue;
            bool together = x->birth <= y->death && y->birth <= x->death;
            size_t keep = y->off_a;
            for (int shift = 0; shift < 2; shift++) {
                /* y at x's offset, then at x's end minus one aligned unit. */
                y->off_a = shift ? x->off_a + (x->size_a / 16 - 1) * 16 : x->off_a;
                if (y->off_a + y->size_a > p->arena_a)
                    continue;
                int rc = plan_verify(p, NULL);
                bool bad = plan_pairs_overlap(p);
                ck_assert(bad || !together);
                ck_assert_msg(rc == (bad ? -1 : 0),
                              "buffers %d [%d,%d] and %d [%d,%d] at %zu/%zu: verify %d", i,
                              x->birth, x->death, j, y->birth, y->death, x->off_a, y->off_a, rc);
                tried += bad;
                shared += !bad;
            }
            y->off_a = keep;
        }
    ck_assert_int_gt(tried, 10);
    ck_assert_int_gt(shared, 10);
    ck_assert_int_eq(plan_verify(p, NULL), 0);
    plan_free(p);
    arena_free(a);
}
END_TEST

/* The memory check refuses exactly the networks bigger than the machine,
 * with the message the user sees from emit, build and check. */
START_TEST(test_plan_memory_check)
{
    Arena *a = arena_new();
    IrGraph *g = plan_chain(a, 2);
    ck_assert_ptr_nonnull(g);
    Plan *p = plan_build(g, stderr);
    ck_assert_ptr_nonnull(p);
    int B = plan_default_batch(g);
    ck_assert_int_eq(B, g->train.batch > 0 ? g->train.batch : RT_DEFAULT_BATCH);
    PlanMemory m = plan_memory(p, g, B);
    double e = sizeof(float);
    ck_assert(m.params == (double)p->nparams * e);
    ck_assert(m.acts == ((double)plan_arena_elems(p, B) + (double)B * 64 + 2.0 * B * 3) * e);
    /* Parameters, gradients and momentum; plan_total_bytes has the first two. */
    ck_assert(m.total == (double)plan_total_bytes(p, g, B, sizeof(float)) + m.params);
    char *msg = NULL;
    size_t len = 0;
    FILE *diag = open_memstream(&msg, &len);
    ck_assert_int_eq(plan_check_memory(p, g, "deep.opt", m.total, diag), 0);
    ck_assert_int_eq(plan_check_memory(p, g, "deep.opt", 0, diag), 0);   /* unknown */
    fflush(diag);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(plan_check_memory(p, g, "deep.opt", m.total - 1, diag), -1);
    fclose(diag);
    char want[512];
    snprintf(want, sizeof want, "deep.opt: error: network deep needs %.0f MiB at batch %d "
             "(parameters %.0f MiB, activations %.0f MiB), more than this machine's %.0f MiB\n",
             m.total / 1048576.0, B, m.params / 1048576.0, m.acts / 1048576.0,
             (m.total - 1) / 1048576.0);
    ck_assert_str_eq(msg, want);
    free(msg);
    ck_assert(plan_phys_bytes() > 0);
    plan_free(p);
    arena_free(a);
}
END_TEST

/* --- plan_verify on plans made by hand ----------------------------------- */

/* A plan of n per-image buffers (birth, death, offset, size each) in an
 * arena of `arena` per-image elements; nothing else is needed by verify. */
typedef struct { int birth, death; size_t off, size; } HBuf;

static int verify_hand(const HBuf *b, int n, size_t arena, size_t fixed_arena)
{
    PlanBuf bufs[16];
    ck_assert_int_le(n, 16);
    for (int i = 0; i < n; i++) {
        bufs[i] = (PlanBuf){ .kind = PB_OUT, .node = i, .birth = b[i].birth, .death = b[i].death };
        if (b[i].size) {
            bufs[i].size_a = b[i].size;
            bufs[i].off_a = b[i].off;
        } else {            /* size 0 in the table: a fixed 16-element buffer at off */
            bufs[i].size_b = 16;
            bufs[i].off_b = b[i].off;
        }
    }
    Plan p = { .bufs = bufs, .nbufs = n, .arena_a = arena, .arena_b = fixed_arena };
    return plan_verify(&p, NULL);
}

START_TEST(test_verify_hand)
{
    /* disjoint lifetimes may share memory */
    HBuf share[] = { { 0, 3, 0, 64 }, { 4, 9, 0, 64 } };
    ck_assert_int_eq(verify_hand(share, 2, 64, 0), 0);
    /* a lifetime ending at step t and another born at t overlap (inclusive ranges) */
    HBuf touch[] = { { 0, 4, 0, 64 }, { 4, 9, 0, 64 } };
    ck_assert_int_eq(verify_hand(touch, 2, 64, 0), -1);
    /* live together, partly overlapping memory */
    HBuf part[] = { { 0, 5, 0, 64 }, { 2, 3, 48, 64 } };
    ck_assert_int_eq(verify_hand(part, 2, 128, 0), -1);
    /* live together, adjacent memory */
    HBuf adj[] = { { 0, 5, 0, 64 }, { 2, 3, 64, 64 } };
    ck_assert_int_eq(verify_hand(adj, 2, 128, 0), 0);
    /* one buffer nested inside a longer-lived one */
    HBuf nest[] = { { 0, 9, 0, 128 }, { 3, 4, 32, 16 } };
    ck_assert_int_eq(verify_hand(nest, 2, 128, 0), -1);
    /* past the arena's end; misaligned; dying before birth */
    HBuf past[] = { { 0, 1, 64, 64 } };
    ck_assert_int_eq(verify_hand(past, 1, 127, 0), -1);
    HBuf odd[] = { { 0, 1, 1, 16 } };
    ck_assert_int_eq(verify_hand(odd, 1, 64, 0), -1);
    HBuf back[] = { { 5, 4, 0, 16 } };
    ck_assert_int_eq(verify_hand(back, 1, 64, 0), -1);
    /* per-image and fixed buffers live in different regions: the same
     * numbers never collide, but two fixed ones do */
    HBuf regions[] = { { 0, 9, 0, 64 }, { 0, 9, 0, 0 } };
    ck_assert_int_eq(verify_hand(regions, 2, 64, 16), 0);
    HBuf fixed2[] = { { 0, 9, 0, 0 }, { 0, 9, 0, 0 } };
    ck_assert_int_eq(verify_hand(fixed2, 2, 64, 16), -1);
    /* many buffers: the sweep finds the one bad pair among them */
    HBuf many[12];
    for (int i = 0; i < 12; i++)
        many[i] = (HBuf){ i, i + 1, (size_t)(i % 2) * 64, 64 };
    ck_assert_int_eq(verify_hand(many, 12, 128, 0), 0);
    many[7].off = many[8].off;  /* 7 [7,8] and 8 [8,9] meet at step 8 */
    ck_assert_int_eq(verify_hand(many, 12, 128, 0), -1);
}
END_TEST

/* --- liveness edge cases -------------------------------------------------- */

/* A node whose output never reaches the logits is dead: no buffer, no
 * gradient; the input and the logits live outside the arena. */
START_TEST(test_liveness_dead_branch)
{
    static Hand h;
    h_init(&h, "dead", 1, 4, 4, 3);
    int c = h_conv(&h, 0, 2, 3, 1);
    int dead = h_relu(&h, c);                   /* read by nobody */
    int dead2 = h_bn(&h, dead);                 /* nor this, though it has parameters */
    int r = h_relu(&h, c);
    int out = h_linear(&h, h_gap(&h, r), 3, true);
    Plan *p = plan_build(&h.g, stderr);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(plan_verify(p, stderr), 0);
    ck_assert(!p->nodes[dead].live && !p->nodes[dead2].live);
    ck_assert(!p->nodes[dead2].needs_grad);
    ck_assert_int_eq(p->nodes[dead].out, -1);
    ck_assert_int_eq(p->nodes[dead2].save0, -1);
    ck_assert(p->nodes[c].live && p->nodes[c].needs_grad);
    ck_assert_int_eq(p->nodes[0].out, -1);      /* the input is m->input */
    ck_assert_int_eq(p->nodes[out].out, -1);    /* the logits are m->logits */
    ck_assert(!p->nodes[0].needs_grad);
    for (int b = 0; b < p->nbufs; b++)
        ck_assert(p->bufs[b].node != dead && p->bufs[b].node != dead2);
    plan_free(p);
}
END_TEST

/* With no parameter before it a node needs no gradient: a network whose
 * only parameters are in the head has no activation gradients before it;
 * a forward-only activation dies at its last forward reader. */
START_TEST(test_liveness_no_grad_prefix)
{
    static Hand h;
    h_init(&h, "frozen", 2, 4, 4, 3);
    int r = h_relu(&h, 0);
    int pl = h_pool(&h, r, 2, 2);
    int g = h_gap(&h, pl);
    h_linear(&h, g, 3, true);
    Plan *p = plan_build(&h.g, stderr);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(plan_verify(p, stderr), 0);
    for (int i = 0; i < h.g.nnodes - 1; i++) {
        ck_assert_msg(!p->nodes[i].needs_grad, "node %d needs a gradient", i);
        ck_assert_int_eq(p->nodes[i].grad, -1);
    }
    const PlanBuf *rb = &p->bufs[p->nodes[r].out];
    ck_assert_int_eq(rb->death, plan_time_fwd(&h.g, pl));
    /* the linear reads gap's output in its backward (for its weight gradient) */
    const PlanBuf *gb = &p->bufs[p->nodes[g].out];
    ck_assert_int_eq(gb->death, plan_time_bwd(&h.g, h.g.output));
    plan_free(p);
}
END_TEST

/* A node read by a reader far later (a skip connection) lives until that
 * reader, its gradient from the first backward that writes it to its own
 * backward; a node read twice by one sum is one buffer. */
START_TEST(test_liveness_long_skip)
{
    static Hand h;
    h_init(&h, "skip", 1, 4, 4, 3);
    int x = h_conv(&h, 0, 2, 3, 1);
    int y = x;
    for (int i = 0; i < 5; i++)
        y = h_conv(&h, h_relu(&h, y), 2, 3, 1);
    int xs[3] = { y, x, x };
    double c[3] = { 1, 0.5, 0.25 };
    int s = h_sum(&h, 3, xs, c, -1);
    h_linear(&h, h_gap(&h, s), 3, true);
    Plan *p = plan_build(&h.g, stderr);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(plan_verify(p, stderr), 0);
    const PlanBuf *xb = &p->bufs[p->nodes[x].out];
    ck_assert_int_eq(xb->birth, plan_time_fwd(&h.g, x));
    ck_assert_int_ge(xb->death, plan_time_fwd(&h.g, s));
    const PlanBuf *gx = &p->bufs[p->nodes[x].grad];
    ck_assert_int_eq(gx->birth, plan_time_bwd(&h.g, s));   /* the sum writes it first */
    ck_assert_int_eq(gx->death, plan_time_bwd(&h.g, x));
    int nx = 0;
    for (int b = 0; b < p->nbufs; b++)
        nx += p->bufs[b].node == x && p->bufs[b].kind == PB_OUT;
    ck_assert_int_eq(nx, 1);
    plan_free(p);
}
END_TEST

/* The time line: forward of node i at step i, backward at 2n-1-i. */
START_TEST(test_plan_times)
{
    static Hand h;
    h_resnet(&h);
    int n = h.g.nnodes;
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(plan_time_fwd(&h.g, i), i);
        ck_assert_int_eq(plan_time_bwd(&h.g, i), 2 * n - 1 - i);
    }
    Plan *p = plan_build(&h.g, stderr);
    ck_assert_ptr_nonnull(p);
    for (int b = 0; b < p->nbufs; b++) {
        ck_assert_int_ge(p->bufs[b].birth, 0);
        ck_assert_int_le(p->bufs[b].death, 2 * n - 1);
        ck_assert_int_le(p->bufs[b].birth, p->bufs[b].death);
    }
    plan_free(p);
}
END_TEST

/* A dense stage (plan_image_stride): every state of a concat chain lives in
 * one buffer of the last state's size, forward and gradient, alive from the
 * first concat's forward to the last backward that reads a state; a state
 * with another reader ends the chain. The bn+relu outputs of the stage that
 * feed a conv are recomputed in backward (PlanNode.recomp): kept only until
 * the conv's forward, recomputed at the conv's backward until the BN's. */
START_TEST(test_plan_dense_chain)
{
    static Hand h;
    int cats[4];
    for (int brk = -1; brk < 4; brk += 2) {    /* no break, after step 1, after step 3 */
        h_dense(&h, 4, brk, cats);
        Plan *p = plan_build(&h.g, stderr);
        ck_assert_ptr_nonnull(p);
        ck_assert_int_eq(plan_verify(p, stderr), 0);
        int start = 0;  /* the first concat of the current chain */
        for (int k = 0; k < 4; k++) {
            const PlanNode *pn = &p->nodes[cats[k]];
            int last = brk >= k ? brk : 3;   /* the chain's last concat (step) */
            const PlanNode *pl = &p->nodes[cats[last]];
            ck_assert_int_eq(pn->out, pl->out);
            ck_assert_int_eq(pn->grad, pl->grad);
            ck_assert_uint_eq(plan_image_stride(p, &h.g, cats[k]),
                              ir_numel(h.g.nodes[cats[last]].shape));
            ck_assert_uint_eq(p->bufs[pn->out].size_a, ir_numel(h.g.nodes[cats[last]].shape));
            if (k > start) {    /* a prefix read by the step's bn in backward */
                int bn = cats[k - 1] + 1;
                ck_assert_int_eq(h.g.nodes[bn].op, OP_BN);
                ck_assert_int_ge(p->bufs[pn->out].death, plan_time_bwd(&h.g, bn));
                ck_assert_int_le(p->bufs[pn->out].birth, plan_time_fwd(&h.g, cats[start]));
                ck_assert_int_ge(p->bufs[pn->grad].death, plan_time_bwd(&h.g, cats[start]));
            }
            if (k == brk) {
                start = k + 1;
                if (k < 3)  /* the next chain is another buffer */
                    ck_assert_int_ne(p->nodes[cats[k + 1]].out, pn->out);
            }
        }
        /* the stem conv is a plain buffer */
        ck_assert_uint_eq(plan_image_stride(p, &h.g, 1), ir_numel(h.g.nodes[1].shape));
        int nrc = 0;
        for (int i = 1; i < h.g.nnodes; i++) {
            const PlanNode *pn = &p->nodes[i];
            if (pn->recomp < 0)
                continue;
            nrc++;
            ck_assert_int_eq(h.g.nodes[i].op, OP_RELU);
            int conv = i + 1, bn = pn->fuse;
            ck_assert_int_eq(h.g.nodes[conv].op, OP_CONV);
            ck_assert_int_eq(h.g.nodes[conv].in[0], i);
            const PlanBuf *rb = &p->bufs[pn->recomp];
            ck_assert_int_eq(rb->kind, PB_RECOMP);
            ck_assert_int_eq(rb->birth, plan_time_bwd(&h.g, conv));
            ck_assert_int_eq(rb->death, plan_time_bwd(&h.g, bn));
            ck_assert_int_eq(p->bufs[pn->out].death, plan_time_fwd(&h.g, conv));
        }
        ck_assert_int_eq(nrc, 8);   /* both bn+relu pairs of each step; not the head's */
        plan_free(p);
    }
}
END_TEST

static Suite *plan_suite(void)
{
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("planner");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_plan_hand);
    tcase_add_test(tc, test_plan_rejects_grad);
    tcase_add_test(tc, test_plan_defer);
    tcase_add_test(tc, test_plan_n_log_n);
    tcase_add_test(tc, test_plan_memory_check);
    tcase_add_test(tc, test_plan_verify_catches);
    tcase_add_test(tc, test_plan_times);
    tcase_add_test(tc, test_plan_dense_chain);
    suite_add_tcase(s, tc);
    tc = tcase_create("verify");
    tcase_add_test(tc, test_verify_hand);
    suite_add_tcase(s, tc);
    tc = tcase_create("liveness");
    tcase_add_test(tc, test_liveness_dead_branch);
    tcase_add_test(tc, test_liveness_no_grad_prefix);
    tcase_add_test(tc, test_liveness_long_skip);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(plan_suite)
