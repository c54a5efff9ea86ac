/* analyze.h — an optimizer of a spec as a method on quadratics.
 *
 * Model problem: grad(z) = h*A z with the eigenvalues of A in [mu, L]. Each
 * eigen-direction is an independent scalar recurrence, so the unrolled
 * optimizer (fe_unroll_optimizer) is interpreted with every tensor a scalar:
 * OP_GRAD(v) = h*lambda*v, OP_SUM the weighted sum of its coefficients
 * (learned coefficients at their init values). The error is x itself (the
 * minimiser is 0).
 *
 * Constant coefficients: the rate per step is the spectral radius of the
 * step's companion matrix (state = every value a step reads from earlier
 * steps), worst case over a grid of lambda in [mu, L], endpoints included.
 * k-dependent coefficients (Nesterov's t-sequence): the recurrence is run
 * from x0 = 1 for opts->steps steps and the rate is the worst case over
 * lambda of |x_N / x_0|^(1/N). Optimizers that concatenate (DenseNet) have
 * no contraction. */
#ifndef OPTC_ANALYZE_H
#define OPTC_ANALYZE_H

#include <stdbool.h>
#include <stdio.h>
#include "frontend.h"

typedef struct {
    double mu, L;   /* spectrum of A */
    double h;       /* step: grad(z) = h*A z; <= 0 means 1/L */
    int steps;      /* horizon of the simulated (k-dependent) recurrences */
    int grid;       /* lambda grid points in [mu, L], endpoints included */
} AnalyzeOpts;

/* mu = 0.01, L = 1 (kappa = 100), h = 1/L, steps = 400, grid = 1001. */
void analyze_defaults(AnalyzeOpts *o);

typedef enum {
    AN_COMPANION,   /* constant coefficients: companion spectral radius */
    AN_SIMULATED,   /* k-dependent: geometric mean rate of a simulation */
    AN_CONCAT       /* concat-based: no contraction */
} AnalyzeMethod;

typedef struct {
    AnalyzeMethod method;
    double rate;            /* worst-case contraction per step */
    double worst_lambda;    /* the lambda attaining it */
    int steps_1e3;          /* steps to shrink the error 1000-fold; -1 never */
    int order;              /* companion matrix size (AN_COMPANION) */
    bool learned;           /* some coefficient is learned: its init was used */
    double h;               /* the step actually used */
} AnalyzeResult;

/* Unrolls the optimizer under study for steps steps into arena a (the
 * contract of fe_unroll_optimizer); NULL on error. Lets the tests feed
 * hand-built graphs. */
typedef IrGraph *(*AnalyzeUnrollFn)(void *ctx, Arena *a, int steps);

/* Analyse the optimizer that unroll produces. Returns 0, or -1 with a
 * message on diag (an op that is not an optimizer op, an unroll error, an
 * iteration too large to analyse). */
int analyze_rate(AnalyzeUnrollFn unroll, void *ctx, const AnalyzeOpts *o,
                 AnalyzeResult *r, FILE *diag);

/* The same for optimizer opt of a loaded spec. */
int analyze_optimizer(const Spec *s, const char *opt, const AnalyzeOpts *o,
                      AnalyzeResult *r, FILE *diag);


/* Evaluate f(z) = |z|^2/2 - sum_i Psi(u_i^T z), Psi(t) = relu(t)^2/2, along
 * the stages of a network whose grad block is exact(relu): fvals[k] gets
 * f at the k-th state the network computes (states are the values that a
 * grad block reads, then the last stage output), starting from a seeded
 * random z0 and a seeded random U scaled to spectral norm 0.9 (so f is
 * strongly convex, minimum 0 at z = 0). Returns the number of values (at
 * most cap), or -1 with a message when the graph has no exact block or an
 * op other than input, exact, sum, and the head. */
int analyze_theory(const IrGraph *g, unsigned long long seed, double *fvals, int cap,
                   FILE *diag);

#endif
