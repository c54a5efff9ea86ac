/* emit_mfree.c — optc build --memory-free: a backward pass that rebuilds
 * each invertible stage's states from its last states instead of storing
 * them (docs/memory-free.md).
 *
 * The schedule (mfree_schedule) comes from the invertibility analysis
 * (invert.c): for every step whose verdict is invertible it lists the
 * states the step gives back and the sum node each is solved from. In the
 * backward pass, just before the step's first backward call (its last state
 * sum), the step's grad block is recomputed from the states known by then
 * (BN with the forward's saved batch statistics) and the older states are
 * rebuilt, in the analysis's order:
 *     U = (via - sum_{t != at} c_t in_t) / c_at
 * with rt_sum_forward and the coefficients (1/c_at, -c_t/c_at). The planner
 * (plan_build_sched) gives every recomputed or rebuilt node a second buffer
 * for the backward phase, so the forward's copy dies with the forward and
 * a stage keeps O(1) states instead of O(steps). Steps with nothing to
 * give back (steps 0/1 whose oldest input is the stage input, a strided
 * first step) recompute their grad block too, from the stage input (kept)
 * or a state a later step rebuilt; a node read outside its step (a
 * subsampled x[0]) keeps its forward buffer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "emit_c_int.h"
#include "invert.h"
#include "optable.h"

/* Events per emitted function (see emit_c.c's EMIT_PART_OPS). */
#define MF_PART_EVENTS 24

static bool mf_supported(IrOp op)
{
    if (op_info(op)->flags & OPF_ACT)
        return true;
    switch (op) {
    case OP_CONV: case OP_BN: case OP_SUM: case OP_PAD: case OP_AVGPOOL: case OP_CONCAT:
    case OP_GAP: case OP_LINEAR:
        return true;
    default:
        return false;
    }
}

/* A stage's state ("stage1.x3", "stage2.v1"): a sum named without a step. */
static bool mf_is_state(const IrNode *n)
{
    const char *d = n->name ? strchr(n->name, '.') : NULL;
    return n->op == OP_SUM && d && !strchr(d + 1, '.') && strncmp(n->name, "stage", 5) == 0;
}

static void mf_push(PlanSched *s, int *cap, PlanEv ev)
{
    if (s->nev == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        PlanEv *n = realloc(s->ev, (size_t)*cap * sizeof *n);
        if (!n)
            abort();
        s->ev = n;
    }
    s->ev[s->nev++] = ev;
}

/* The value of coefficient c at initialisation. */
static double mf_coef_init(const IrGraph *g, const IrCoef *c)
{
    double v = c->c0;
    for (int j = 0; j < c->nterms; j++)
        v += c->a[j] * g->params[c->param[j]].init_value;
    return v;
}

/* The default checkpoint interval of stage st (--memory-free without
 * --checkpoint-every): float drift grows by a roughly constant factor per
 * rebuilt step, about 1.5x where the inverse divides by 0.9 and about
 * 1.5/c below that (docs/memory-free.md, "Drift"); a chain of N steps stays
 * within MF_DRIFT_GROWTH, which at 0.9 is 4 steps: the 110-layer heavy
 * ball's float gradients then equal the stored build's to 1e-5 with a
 * margin (6 steps came to 1.09e-5 on one tensor after the Winograd
 * kernels changed the forward's rounding). 0: the stage rebuilds nothing. */
#define MF_DRIFT_GROWTH 12.0

static int mf_auto_every(const IrGraph *g, const InvStage *st)
{
    double c = 0;
    for (int k = 0; k < st->steps; k++)
        for (int u = 0; st->nrebuild && u < st->nrebuild[k]; u++) {
            const InvRebuild *b = &st->rebuild[k][u];
            double v = fabs(mf_coef_init(g, &g->nodes[b->via].u.sum.coef[b->at]));
            if (v > 0 && (c == 0 || v < c))
                c = v;
        }
    if (c == 0)
        return 0;
    double f = c < 1 ? 1.5 / c : 1.5;
    int n = (int)(log(MF_DRIFT_GROWTH) / log(f < 1.5 ? 1.5 : f));
    return n < 1 ? 1 : n;
}

/* One step of the schedule: the step's rec/reb events. */
typedef struct {
    int stage, step;
    int trigger;                /* its highest live node: the events go before its backward */
    InvRebuild *rb;             /* the states it rebuilds (malloc'd) */
    int nrb;
    const InvRebuild *all;      /* ...and all it could (their vias are its state sums) */
    int nall;
} MfStep;

PlanSched *mfree_schedule(const IrGraph *g, const Plan *p, const InvReport *r, const char **why)
{
    return mfree_schedule_every(g, p, r, 0, why);
}

PlanSched *mfree_schedule_every(const IrGraph *g, const Plan *p, const InvReport *r, int every,
                                const char **why)
{
    int N = g->nnodes;
    MfStep *steps = NULL;
    int nsteps = 0, cap = 0;
    const char *reason = NULL;
    for (int si = 0; si < r->nstages; si++) {
        const InvStage *st = &r->stages[si];
        if (st->v == INV_NO) {
            if (!reason)
                reason = st->why;
            continue;
        }
        int ev = every > 0 ? every : mf_auto_every(g, st);
        for (int k = 0; k < st->steps; k++) {
            /* A step with nothing to give back (step 0, heavy ball's step 1,
             * a strided step 0) still recomputes its grad block: its input
             * is the stage input (kept) or a state a later step rebuilds. */
            bool block_only = st->step_v[k] == INV_SKIP || (k == 0 && st->step_v[k] == INV_NO);
            if (!block_only && (!st->nrebuild || st->nrebuild[k] == 0))
                continue;
            int nreb = block_only ? 0 : st->nrebuild[k];
            /* A learned coefficient that starts at 0 divides by zero. */
            bool ok = true;
            for (int u = 0; u < nreb; u++) {
                const InvRebuild *b = &st->rebuild[k][u];
                if (mf_coef_init(g, &g->nodes[b->via].u.sum.coef[b->at]) == 0) {
                    ok = false;
                    reason = "a learned coefficient the inverse divides by starts at 0, where "
                             "the rule is not invertible";
                }
            }
            int trigger = -1;
            for (int i = 1; i < N && ok; i++) {
                const IrNode *n = &g->nodes[i];
                if (n->stage != st->stage || n->step != k || !p->nodes[i].live)
                    continue;
                trigger = i;
                if (!mf_supported(n->op)) {
                    ok = false;
                    if (!reason)
                        reason = "a grad block holds an op the recomputation does not run "
                                 "(dropout, exact)";
                }
            }
            if (!ok || trigger < 0)
                continue;
            if (nsteps == cap) {
                cap = cap ? 2 * cap : 16;
                MfStep *ns = realloc(steps, (size_t)cap * sizeof *ns);
                if (!ns)
                    abort();
                steps = ns;
            }
            /* Checkpoints: the states that restart a chain stay stored. */
            InvRebuild *rb = malloc(((size_t)nreb + 1) * sizeof *rb);
            if (!rb)
                abort();
            int nrb = 0;
            for (int u = 0; u < nreb; u++) {
                const InvRebuild *b = &st->rebuild[k][u];
                if (!(ev > 0 && b->index >= ev && b->index % ev < b->span))
                    rb[nrb++] = *b;
            }
            steps[nsteps++] = (MfStep){ st->stage, k, trigger, rb, nrb,
                                        nreb ? st->rebuild[k] : NULL, nreb };
        }
    }
    int nrebsteps = 0;
    for (int q = 0; q < nsteps; q++)
        nrebsteps += steps[q].nall > 0;
    if (nrebsteps == 0) {
        for (int q = 0; q < nsteps; q++)
            free(steps[q].rb);
        free(steps);
        *why = reason ? reason : "no stage has a step whose states can be rebuilt";
        return NULL;
    }
    PlanSched *s = calloc(1, sizeof *s);
    char *mark = calloc((size_t)N + 1, 1);     /* 1: a rebuilt state; 2: a grad node of its step */
    bool *done = calloc((size_t)N + 1, sizeof *done);
    int *at_step = malloc(((size_t)N + 1) * sizeof *at_step);
    if (!s || !mark || !done || !at_step)
        abort();
    s->rec = calloc((size_t)N + 1, sizeof *s->rec);
    if (!s->rec)
        abort();
    for (int i = 0; i <= N; i++)
        at_step[i] = -1;
    for (int q = 0; q < nsteps; q++)
        at_step[steps[q].trigger] = q;
    /* A node read outside its own step (stage 2's subsampled x[0], which
     * step 1 reads too) keeps its forward buffer: it is not recomputed. */
    bool *shared = calloc((size_t)N + 1, sizeof *shared);
    if (!shared)
        abort();
    for (int i = 1; i < N; i++)
        for (int t = 0; t < g->nodes[i].nin; t++) {
            const IrNode *x = &g->nodes[g->nodes[i].in[t]];
            if (x->stage != g->nodes[i].stage || x->step != g->nodes[i].step)
                shared[x->id] = true;
        }
    int ecap = 0;
    for (int i = 1; i < N; i++)
        if (p->nodes[i].live)
            mf_push(s, &ecap, (PlanEv){ PLAN_EV_FWD, i, -1, -1 });
    int bad = 0;
    for (int i = N - 1; i >= 1 && !bad; i--) {
        if (!p->nodes[i].live)
            continue;
        int q = at_step[i];
        if (q >= 0) {
            const MfStep *ms = &steps[q];
            /* Step nodes that are not the states it writes: its grad block. */
            for (int j = 1; j <= ms->trigger; j++) {
                const IrNode *n = &g->nodes[j];
                mark[j] = 0;
                if (n->stage == ms->stage && n->step == ms->step && p->nodes[j].live)
                    mark[j] = 2;
            }
            for (int u = 0; u < ms->nall; u++)     /* the step's state sums */
                mark[ms->all[u].via] = 0;
            for (int j = 1; j <= ms->trigger; j++)
                if (mark[j] == 2 && (mf_is_state(&g->nodes[j]) || shared[j]))
                    mark[j] = 0;
            for (int u = 0; u < ms->nrb; u++)
                mark[ms->rb[u].node] = 1;
            int left = 0;
            for (int j = 1; j <= ms->trigger; j++)
                if (mark[j] == 2) {
                    done[j] = false;
                    left++;
                }
            for (int u = 0; u <= ms->nrb && !bad; u++) {
                /* Recompute what the known states allow, in node order. */
                for (int j = 1; j <= ms->trigger; j++) {
                    if (mark[j] != 2 || done[j])
                        continue;
                    bool ready = true;
                    for (int t = 0; t < g->nodes[j].nin; t++) {
                        int x = g->nodes[j].in[t];
                        if (mark[x] == 1 || (mark[x] == 2 && !done[x]))
                            ready = false;
                    }
                    if (ready) {
                        done[j] = true;
                        s->rec[j] = true;
                        left--;
                        mf_push(s, &ecap, (PlanEv){ PLAN_EV_REC, j, -1, -1 });
                    }
                }
                if (u == ms->nrb)
                    break;
                const InvRebuild *b = &ms->rb[u];
                const IrNode *via = &g->nodes[b->via];
                for (int t = 0; t < via->nin; t++) {
                    int x = via->in[t];
                    if (t != b->at && (mark[x] == 1 || (mark[x] == 2 && !done[x])))
                        bad = 1;
                }
                mf_push(s, &ecap, (PlanEv){ PLAN_EV_REB, b->node, b->via, b->at });
                s->rec[b->node] = true;
                mark[b->node] = 0;
                s->nrebuilt++;
            }
            if (left != 0)
                bad = 1;
            for (int j = 1; j <= ms->trigger; j++)
                mark[j] = 0;
        }
        if (p->nodes[i].needs_grad)
            mf_push(s, &ecap, (PlanEv){ PLAN_EV_BWD, i, -1, -1 });
    }
    for (int q = 0; q < nsteps; q++)
        free(steps[q].rb);
    free(steps);
    free(mark);
    free(shared);
    free(done);
    free(at_step);
    if (bad) {
        mfree_sched_free(s);
        *why = "internal: a step's grad block reads a state not rebuilt yet";
        return NULL;
    }
    return s;
}

void mfree_sched_free(PlanSched *s)
{
    if (!s)
        return;
    free(s->ev);
    free(s->rec);
    free(s);
}

/* The index of node's REB event among the schedule's rebuilds, or -1. */
static int mf_rebuild_index(const PlanSched *s, int node)
{
    int r = 0;
    for (int e = 0; e < s->nev; e++)
        if (s->ev[e].kind == PLAN_EV_REB) {
            if (s->ev[e].node == node)
                return r;
            r++;
        }
    return -1;
}

/* A recomputed BN: the forward with the saved batch statistics (and no
 * update of the running ones), fused with its relu when the plan fuses. */
static void mf_rec_bn(Emit *e, const IrNode *n)
{
    const PlanNode *pn = &e->p->nodes[n->id];
    const char *in = emit_out(e, n->in[0]);
    if (pn->fuse) {
        int r = pn->fuse;
        int hw = n->shape.h * n->shape.w;
        emit_f(e, "    FN(rt_bn_relu_recompute%s)(ctx, %s, %s, %s, %s, %s, %s, B, %d, %d, "
               "nB * %zu, %zu);\n", e->S, emit_out(e, r), in, emit_buf(e, pn->save0),
               emit_buf(e, pn->save1), emit_param(e, "P", n->u.bn.gamma),
               emit_param(e, "P", n->u.bn.beta), n->shape.c, hw, emit_branch_site(e, r),
               (size_t)n->shape.c * (size_t)hw);
        return;
    }
    emit_f(e, "    FN(rt_bn_forward_stats%s)(ctx, %s, %s, %s, %s, %s, %s, B, %d, %d);\n", e->S,
           emit_out(e, n->id), in, emit_buf(e, pn->save0), emit_buf(e, pn->save1),
           emit_param(e, "P", n->u.bn.gamma), emit_param(e, "P", n->u.bn.beta), n->shape.c,
           n->shape.h * n->shape.w);
}

/* The coefficients and inputs of the rebuild of via's term at: the
 * forward's correction and the backward's rebuild run the same code, so
 * the same values (the phase, Emit.bwd, picks the buffers). */
static void mf_rebuild_terms(Emit *e, const IrNode *via, int at)
{
    emit_coefs(e, via);
    emit_f(e, "        const %s *const xs[%d] = {", e->T, via->nin);
    for (int t = 0; t < via->nin; t++)
        emit_f(e, "%s%s", t ? ", " : " ", emit_out(e, t == at ? via->id : via->in[t]));
    emit_f(e, " };\n        %s rc[%d];\n", e->T, via->nin);
    emit_f(e, "        for (int t = 0; t < %d; t++)\n"
              "            rc[t] = t == %d ? (%s)1 / c[%d] : -c[t] / c[%d];\n", via->nin, at,
           e->T, at, at);
}

/* Exact reconstruction: right after the forward of sum via, the correction
 * of every state the backward rebuilds from it (rt_mf_correct). */
static void mf_corrections(Emit *e, const IrNode *via)
{
    const PlanSched *s = e->p->sched;
    int r = 0;
    for (int i = 0; i < s->nev; i++) {
        const PlanEv *v = &s->ev[i];
        if (v->kind != PLAN_EV_REB)
            continue;
        const IrNode *n = &e->g->nodes[v->node];
        const PlanNode *pn = &e->p->nodes[n->id];
        if (v->via == via->id && pn->corr >= 0) {
            size_t len = ir_numel(n->shape);
            emit_f(e, "    /* correction of %d ", n->id);
            emit_comment_name(e, n->name);
            emit_f(e, " against its rebuild from %d (exact reconstruction; training "
                      "only) */\n    if (train) {\n", via->id);
            mf_rebuild_terms(e, via, v->at);
            emit_f(e, "        FN(rt_mf_correct%s)(ctx, %s, %s, nB * %zu, %s, %d, xs, rc, "
                   "nB * %zu, m->drift, %d);\n    }\n", e->S, emit_buf(e, pn->corr_hdr),
                   emit_buf(e, pn->corr), pn->corr_esc, emit_out(e, n->id), via->nin,
                   len, r);
        }
        r++;
    }
}

static void mf_event(Emit *e, const PlanEv *v, bool *written, int *nreb)
{
    const IrGraph *g = e->g;
    const IrNode *n = &g->nodes[v->node];
    switch (v->kind) {
    case PLAN_EV_FWD:
        emit_forward_node(e, n);
        if (e->p->sched->rec[v->node] && n->op == OP_SUM) {
            int r = mf_rebuild_index(e->p->sched, v->node);
            if (r >= 0)     /* gradcheck / info: the forward's value, to measure drift */
                emit_f(e, "    FN(rt_drift_keep%s)(m->drift, %d, %s, nB * %zu);\n", e->S, r,
                       emit_out(e, v->node), ir_numel(n->shape));
        }
        if (e->p->sched->exact && n->op == OP_SUM)
            mf_corrections(e, n);
        break;
    case PLAN_EV_REC:
        emit_f(e, "    /* recomputed: */\n");
        if (n->op == OP_BN) {
            emit_node_comment(e, n);
            mf_rec_bn(e, n);
        } else if (n->op == OP_RELU && e->p->nodes[n->id].fuse) {
            emit_node_comment(e, n);
            emit_f(e, "    /* with its bn above (rt_bn_relu_recompute) */\n");
        } else {
            emit_forward_node(e, n);
        }
        break;
    case PLAN_EV_REB: {
        const IrNode *via = &g->nodes[v->via];
        const PlanNode *pn = &e->p->nodes[n->id];
        size_t len = ir_numel(n->shape);
        emit_f(e, "    /* rebuilt: %d ", n->id);
        emit_comment_name(e, n->name);
        emit_f(e, " from %d ", via->id);
        emit_comment_name(e, via->name);
        emit_f(e, " (its term %d solved for)%s */\n    {\n", v->at,
               pn->corr >= 0 ? ", corrected to the forward's value" : "");
        mf_rebuild_terms(e, via, v->at);
        if (pn->corr >= 0)
            emit_f(e, "        FN(rt_mf_restore%s)(ctx, %s, %s, %s, nB * %zu, %d, xs, rc, "
                   "nB * %zu);\n", e->S, emit_out(e, n->id), emit_buf(e, pn->corr_hdr),
                   emit_buf(e, pn->corr), pn->corr_esc, via->nin, len);
        else
            emit_f(e, "        FN(rt_sum_forward%s)(ctx, %s, %d, xs, rc, nB * %zu);\n", e->S,
                   emit_out(e, n->id), via->nin, len);
        emit_f(e, "        FN(rt_drift_check%s)(m->drift, %d, %s, nB * %zu);\n    }\n", e->S, *nreb,
               emit_out(e, n->id), len);
        ++*nreb;
        break;
    }
    case PLAN_EV_BWD:
        emit_backward_node(e, n, written);
        break;
    }
}

void emit_mfree_bodies(Emit *e, const char *model)
{
    const PlanSched *s = e->p->sched;
    int nf = 0;
    while (nf < s->nev && s->ev[nf].kind == PLAN_EV_FWD)
        nf++;
    int nb = s->nev - nf;
    int fparts = nf ? (nf + MF_PART_EVENTS - 1) / MF_PART_EVENTS : 1;
    int bparts = nb ? (nb + MF_PART_EVENTS - 1) / MF_PART_EVENTS : 1;
    int ev = 0, nreb = 0;
    bool *written = calloc((size_t)e->g->nnodes + 1, sizeof *written);
    if (!written)
        abort();
    e->bwd = false;
    for (int part = 0; part < fparts; part++) {
        emit_f(e, "\n/* Forward, part %d of %d. */\n", part + 1, fparts);
        emit_f(e, "static void FN(forward%s_%d)(%s *m, int B, int train)\n{\n", e->S, part + 1,
               model);
        emit_prologue(e, true);
        for (int done = 0; ev < nf && done < MF_PART_EVENTS; ev++, done++)
            mf_event(e, &s->ev[ev], written, &nreb);
        emit_f(e, "}\n");
    }
    emit_f(e, "\n/* Forward pass on a batch of B <= m->batch images; train selects batch\n"
              " * statistics (and updates the running ones) and dropout. */\n");
    emit_f(e, "static void FN(forward%s)(%s *m, int B, int train)\n{\n", e->S, model);
    for (int part = 0; part < fparts; part++)
        emit_f(e, "    FN(forward%s_%d)(m, B, train);\n", e->S, part + 1);
    emit_f(e, "}\n");
    e->bwd = true;
    for (int part = 0; part < bparts; part++) {
        emit_f(e, "\n/* Backward (memory-free), part %d of %d. */\n", part + 1, bparts);
        emit_f(e, "static void FN(backward%s_%d)(%s *m, int B)\n{\n", e->S, part + 1, model);
        emit_prologue(e, false);
        for (int done = 0; ev < s->nev && done < MF_PART_EVENTS; ev++, done++)
            mf_event(e, &s->ev[ev], written, &nreb);
        emit_f(e, "}\n");
    }
    e->bwd = false;
    free(written);
    emit_f(e, "\n/* Backward pass from m->dlogits after a training forward on the same\n"
              " * batch: parameter gradients accumulate into m->grads. Invertible steps\n"
              " * recompute their grad block and rebuild older states on the way. */\n");
    emit_f(e, "static void FN(backward%s)(%s *m, int B)\n{\n", e->S, model);
    for (int part = 0; part < bparts; part++)
        emit_f(e, "    FN(backward%s_%d)(m, B);\n", e->S, part + 1);
    emit_f(e, "}\n");
}

void emit_mfree_net(Emit *e)
{
    const PlanSched *s = e->p->sched;
    emit_f(e, "    .mf_stored_a = %zu, .mf_stored_b = %zu, .mf_nrebuilt = %d, .mf_names = mf_names,\n",
           e->p->stored_a, e->p->stored_b, s->nrebuilt);
    size_t ca = 0, cb = 0;
    for (int i = 0; i < e->p->nbufs; i++)
        if (e->p->bufs[i].kind == PB_CORR) {
            ca += e->p->bufs[i].size_a;
            cb += e->p->bufs[i].size_b;
        }
    emit_f(e, "    .mf_exact = %d, .mf_corr_a = %zu, .mf_corr_b = %zu,\n", s->exact ? 1 : 0, ca, cb);
}

/* The names of the rebuilt states, in drift-index order, for the report. */
void emit_mfree_names(Emit *e)
{
    const PlanSched *s = e->p->sched;
    emit_f(e, "\n/* The states the memory-free backward rebuilds, in order. */\n"
              "static const char *const mf_names[%d] = {\n", s->nrebuilt + 1);
    for (int i = 0; i < s->nev; i++)
        if (s->ev[i].kind == PLAN_EV_REB) {
            emit_f(e, "    \"");
            emit_comment_name(e, e->g->nodes[s->ev[i].node].name);
            emit_f(e, "\",\n");
        }
    emit_f(e, "    0\n};\n");
}
