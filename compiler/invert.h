/* invert.h — which stages of a network a memory-free backward pass could
 * rebuild from their last states instead of storing every activation.
 *
 * The rule (issue 13): an update x[k+1] = sum_j a_j x[k-j] + sum b grad(...)
 * (plus auxiliary tensor sequences such as a velocity) gives back its oldest
 * state when that state's coefficient is non-zero and no grad(...) reads it:
 * heavy ball x[k-1] = ((1 + beta) * x[k] - grad(x[k]) - x[k+1]) / beta.
 * Gradient descent, x[k] = x[k+1] + grad(x[k]), is implicit (only a
 * fixed-point iteration could solve it) and so not invertible by the rule.
 *
 * Two levels. inv_rule works on the optimizer as written (the resolved spec):
 * it solves the update statements for the states a backward step must
 * recover and prints the inverse in the spec's own names. inv_analyze then
 * checks each stage of an unrolled network step by step on the IR, where the
 * parameter values are known (-D beta=0 folds the old state away), learned
 * coefficients are visible, and strided first steps, concat and the k = 0
 * clamp (x[k-1] means x[0] at k = 0) show up. Only the analysis is built:
 * no backward pass uses it yet (docs/memory-free.md). */
#ifndef OPTC_INVERT_H
#define OPTC_INVERT_H

#include <stdbool.h>
#include <stdio.h>
#include "frontend.h"
#include "plan.h"

/* The optimizer alone. formula[i] recovers unknown[i]; apply them in order
 * (later ones may read what earlier ones recovered). */
typedef struct {
    const char *opt;
    bool invertible;
    const char *why;            /* !invertible: the reason, in spec terms */
    int n;                      /* states to recover per backward step */
    const char **unknown;       /* "x[k-1]" */
    const char **formula;       /* "x[k-1] = ((1 + beta) * x[k] - grad(x[k]) - x[k+1]) / beta" */
    const char **divisor;       /* "beta"; NULL when the formula divides by nothing */
} InvRule;

/* NULL when optimizer opt is not in the spec. Allocated in a. */
InvRule *inv_rule(Arena *a, const Spec *s, const char *opt);

typedef enum {
    INV_YES,        /* invertible */
    INV_COND,       /* invertible while a learned coefficient is non-zero */
    INV_NO,         /* not invertible: keeps its activations */
    INV_SKIP        /* nothing to recover: its oldest inputs are the stage
                     * input or initial values, which stay available */
} InvVerdict;

typedef struct {
    int first, last;            /* a run of steps with the same verdict */
    InvVerdict v;
    const char *why;
} InvSteps;

/* One state a memory-free backward step gives back: node = (sum node via -
 * the other terms of via) / via's coefficient at input at. node is state
 * number index of its sequence; the inverse reads the span states after it
 * (heavy ball: x[k-1] from x[k] and x[k+1], span 2), which a checkpoint
 * keeps to restart the chain exactly. */
typedef struct {
    int node, via, at;
    int index, span;
} InvRebuild;

typedef struct {
    int stage;                  /* 1-based */
    const char *opt;
    const char *params;         /* the stage's parameter values: "beta = 0.9" */
    int steps;
    InvVerdict v;               /* YES, COND or NO (SKIP only per step) */
    const char *why;            /* COND: the condition; NO: the reason */
    const InvRule *rule;
    InvSteps *runs;
    int nruns;
    const char *kept;           /* what a memory-free build stores */
    InvVerdict *step_v;         /* per step */
    InvRebuild **rebuild;       /* per step: the states it gives back, in order */
    int *nrebuild;              /* per step; 0 unless step_v is YES or COND */
    double stored, free;        /* activation floats per image: stored build, memory-free */
} InvStage;

typedef struct {
    const char *net;
    InvStage *stages;
    int nstages;
    double outside;             /* saved activations outside the stages (stem, head) */
    double stored, free;        /* whole network, floats per image */
} InvReport;

/* Analyse every stage of g, which must be the network of s named g->name
 * unrolled by fe_unroll. NULL when it is not in s. */
InvReport *inv_analyze(Arena *a, const Spec *s, const IrGraph *g);

/* The report optc check --explain prints. */
void inv_print(FILE *out, const InvReport *r);

const char *inv_verdict_name(InvVerdict v);

/* optc build --memory-free (emit_mfree.c): the schedule of g, planned by p
 * (plan_build), from its report r: every invertible step recomputes its
 * grad block and rebuilds its states before its backward. NULL, with the
 * reason in *why, when no step can (the whole network stays stored). Free
 * it with mfree_sched_free, after the plan built from it. */
PlanSched *mfree_schedule(const IrGraph *g, const Plan *p, const InvReport *r, const char **why);
/* The same with a checkpoint every `every` states: the states j..j+span-1
 * with j a positive multiple of every stay stored, so no rebuilt chain is
 * longer than every steps (float drift grows with the chain). 0: each
 * stage's default, from the coefficient its inverse divides by (4 steps at
 * 0.9); a number above the stages' depth: no checkpoint. */
PlanSched *mfree_schedule_every(const IrGraph *g, const Plan *p, const InvReport *r, int every,
                                const char **why);
void mfree_sched_free(PlanSched *s);

#endif
