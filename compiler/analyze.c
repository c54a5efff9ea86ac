/* analyze.c — optc analyze: each optimizer of a spec as a method on
 * quadratics (see analyze.h), and the theory block's network run as the
 * optimizer on f.
 *
 * Finding the companion matrix without knowing how the front end names its
 * nodes: the unrolled graph of j steps is a prefix of the graph of j+1 steps
 * (checked, node by node), so the nodes one step adds are a block, and a
 * node's "role" is its offset inside its block. When the last blocks are
 * identical (same ops, same (lag, role) inputs, same coefficients), the
 * step is a fixed linear map of the values it reads from earlier blocks,
 * which is the companion matrix. Anything else is simulated. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "analyze.h"
#include "optable.h"
#include "rt.h"
#include "cli.h"

/* LAPACK's general eigenvalue solver, provided by OpenBLAS (no header is
 * installed for it); the trailing arguments are Fortran's hidden string
 * lengths. */
extern void dgeev_(const char *jobvl, const char *jobvr, const int *n, double *a,
                   const int *lda, double *wr, double *wi, double *vl, const int *ldvl,
                   double *vr, const int *ldvr, double *work, const int *lwork, int *info,
                   size_t ljobvl, size_t ljobvr);

enum {
    AN_T = 16,          /* steps unrolled to find the steady block */
    AN_MAXORDER = 48,   /* largest companion matrix handled */
    AN_MAXLAG = 8
};

void analyze_defaults(AnalyzeOpts *o)
{
    o->mu = 0.01;
    o->L = 1.0;
    o->h = 0.0;
    o->steps = 400;
    o->grid = 1001;
}

/* A coefficient's value with learned scalars at their init values. */
static double coef_value(const IrGraph *g, const IrCoef *c)
{
    double v = c->c0;
    for (int t = 0; t < c->nterms; t++)
        v += c->a[t] * g->params[c->param[t]].init_value;
    return v;
}

static bool has_op(const IrGraph *g, IrOp op)
{
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == op)
            return true;
    return false;
}

/* Only the ops an unrolled optimizer may contain are interpreted. */
static int check_ops(const IrGraph *g, FILE *diag)
{
    for (int i = 1; i < g->nnodes; i++) {
        IrOp op = g->nodes[i].op;
        if (op != OP_SUM && op != OP_GRAD && op != OP_CONCAT) {
            fprintf(diag, "optc analyze: node %d (%s) is not an optimizer op\n", i,
                    g->nodes[i].name ? g->nodes[i].name : "?");
            return -1;
        }
    }
    return 0;
}

/* Scalar interpretation of the whole graph for one eigenvalue: x0 = 1. */
static void eval_scalar(const IrGraph *g, double hl, double *val)
{
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        switch (n->op) {
        case OP_INPUT:
            val[i] = 1.0;
            break;
        case OP_GRAD:
            val[i] = hl * val[n->in[0]];
            break;
        case OP_SUM: {
            double s = 0.0;
            for (int j = 0; j < n->nin; j++)
                s += coef_value(g, &n->u.sum.coef[j]) * val[n->in[j]];
            val[i] = s;
            break;
        }
        default:
            val[i] = NAN;   /* check_ops keeps other ops out */
            break;
        }
    }
}

static bool coef_equal(const IrCoef *a, const IrCoef *b)
{
    if (a->c0 != b->c0 || a->nterms != b->nterms)
        return false;
    for (int t = 0; t < a->nterms; t++)
        if (a->param[t] != b->param[t] || a->a[t] != b->a[t])
            return false;
    return true;
}

/* Node i of a equals node i of b: op, inputs, coefficients. */
static bool node_equal(const IrNode *x, const IrNode *y)
{
    if (x->op != y->op || x->nin != y->nin)
        return false;
    for (int j = 0; j < x->nin; j++) {
        if (x->in[j] != y->in[j])
            return false;
        if (x->op == OP_SUM && !coef_equal(&x->u.sum.coef[j], &y->u.sum.coef[j]))
            return false;
    }
    return true;
}

static bool is_prefix(const IrGraph *small, const IrGraph *big)
{
    if (small->nnodes > big->nnodes)
        return false;
    for (int i = 0; i < small->nnodes; i++)
        if (!node_equal(&small->nodes[i], &big->nodes[i]))
            return false;
    return true;
}

/* The steady step as a linear map: block nodes (roles 0..n-1) whose inputs
 * are (lag, role) pairs, lag 0 meaning the same block. */
typedef struct {
    int n;                  /* nodes per block */
    int start;              /* first node of the model block in g */
    const IrGraph *g;
    int *lag, *role;        /* per input of each block node, flattened */
    int *first;             /* first[r]: index of role r's first input */
    int maxlag[AN_MAXORDER];
    int order;
    int slot[AN_MAXORDER][AN_MAXLAG + 1];  /* state index of (role, lag) */
} Step;

static int block_of(const int *b, int nb, int node)
{
    for (int j = 1; j < nb; j++)
        if (node >= b[j - 1] && node < b[j])
            return j;
    return -1;
}

/* Find the steady step from graphs G_1..G_T (G[j-1] has j steps). b[j] =
 * nodes of G_j, block j = [b[j-1], b[j]) for j >= 2 (block 1 also holds the
 * prelude). Returns 1 when the last three blocks are identical and read
 * only finitely many earlier blocks, 0 otherwise (simulate instead). */
static int find_step(IrGraph *const *G, int T, Step *st)
{
    int b[AN_T + 1];
    b[0] = 0;
    for (int j = 1; j <= T; j++) {
        b[j] = G[j - 1]->nnodes;
        if (b[j] <= b[j - 1] || !is_prefix(G[j - 1], G[T - 1]))
            return 0;
    }
    const IrGraph *g = G[T - 1];
    int n = b[T] - b[T - 1];
    if (n > AN_MAXORDER)
        return 0;
    for (int j = T - 2; j <= T; j++)
        if (b[j] - b[j - 1] != n)
            return 0;
    int nin = 0;
    for (int r = 0; r < n; r++)
        nin += g->nodes[b[T - 1] + r].nin;
    st->n = n;
    st->g = g;
    st->start = b[T - 1];
    st->lag = malloc(sizeof(int) * (size_t)(nin + 1));
    st->role = malloc(sizeof(int) * (size_t)(nin + 1));
    st->first = malloc(sizeof(int) * (size_t)(n + 1));
    if (!st->lag || !st->role || !st->first)
        return 0;
    memset(st->maxlag, 0, sizeof st->maxlag);
    /* Compare the last three blocks role by role. */
    int k = 0;
    for (int r = 0; r < n; r++) {
        st->first[r] = k;
        for (int jb = T; jb >= T - 2; jb--) {
            const IrNode *x = &g->nodes[b[jb - 1] + r];
            const IrNode *m = &g->nodes[b[T - 1] + r];
            if (x->op != m->op || x->nin != m->nin)
                return 0;
            for (int i = 0; i < x->nin; i++) {
                int q = x->in[i];
                int bq = block_of(b, T + 1, q);
                if (bq < 2)
                    return 0;   /* reads the prelude: not a finite recurrence */
                int lag = jb - bq, role = q - b[bq - 1];
                if (lag > AN_MAXLAG)
                    return 0;
                if (jb == T) {
                    st->lag[k + i] = lag;
                    st->role[k + i] = role;
                } else {
                    if (st->lag[k + i] != lag || st->role[k + i] != role)
                        return 0;
                    if (x->op == OP_SUM) {
                        double cx = coef_value(g, &x->u.sum.coef[i]);
                        double cm = coef_value(g, &m->u.sum.coef[i]);
                        if (fabs(cx - cm) > 1e-12 * (1.0 + fabs(cm)))
                            return 0;   /* k-dependent coefficients */
                    }
                }
            }
        }
        for (int i = 0; i < g->nodes[b[T - 1] + r].nin; i++) {
            int role = st->role[k + i], lag = st->lag[k + i];
            if (lag > st->maxlag[role])
                st->maxlag[role] = lag;
        }
        k += g->nodes[b[T - 1] + r].nin;
    }
    st->first[n] = k;
    int order = 0;
    for (int r = 0; r < n; r++)
        for (int d = 1; d <= st->maxlag[r]; d++) {
            if (order >= AN_MAXORDER)
                return 0;
            st->slot[r][d] = order++;
        }
    st->order = order;
    return order > 0;
}

/* Column c of the companion matrix at h*lambda = hl: evaluate one step
 * from the unit state e_c. */
static void step_column(const Step *st, double hl, int c, double *col)
{
    double state[AN_MAXORDER] = {0}, cur[AN_MAXORDER];
    state[c] = 1.0;
    const IrGraph *g = st->g;
    for (int r = 0; r < st->n; r++) {
        const IrNode *x = &g->nodes[st->start + r];
        double v = 0.0;
        for (int i = 0; i < x->nin; i++) {
            int k = st->first[r] + i;
            int lag = st->lag[k], role = st->role[k];
            double in = lag == 0 ? cur[role] : state[st->slot[role][lag]];
            if (x->op == OP_GRAD)
                v = hl * in;
            else
                v += coef_value(g, &x->u.sum.coef[i]) * in;
        }
        cur[r] = v;
    }
    for (int r = 0; r < st->n; r++)
        for (int d = 1; d <= st->maxlag[r]; d++)
            col[st->slot[r][d]] = d == 1 ? cur[r] : state[st->slot[r][d - 1]];
}

/* Spectral radius of the order x order matrix m (column-major); -1 when
 * LAPACK fails. */
static double spectral_radius(int order, double *m)
{
    if (order == 1)
        return fabs(m[0]);
    double wr[AN_MAXORDER], wi[AN_MAXORDER], work[8 * AN_MAXORDER], dummy = 0;
    int lwork = 8 * AN_MAXORDER, one = 1, info = 0;
    dgeev_("N", "N", &order, m, &order, wr, wi, &dummy, &one, &dummy, &one, work, &lwork,
           &info, 1, 1);
    if (info != 0)
        return -1.0;
    double rho = 0;
    for (int i = 0; i < order; i++) {
        double a = hypot(wr[i], wi[i]);
        if (a > rho)
            rho = a;
    }
    return rho;
}

static double lambda_at(const AnalyzeOpts *o, int i)
{
    if (o->grid <= 1)
        return o->mu;
    return o->mu + (o->L - o->mu) * (double)i / (double)(o->grid - 1);
}

static int steps_for(double rate)
{
    if (!(rate < 1.0))
        return -1;
    if (rate <= 0.0)
        return 1;
    return (int)ceil(log(1e-3) / log(rate) - 1e-9);
}

static int companion_rate(const Step *st, const AnalyzeOpts *o, double h, AnalyzeResult *r,
                          FILE *diag)
{
    int order = st->order;
    double m[AN_MAXORDER * AN_MAXORDER];
    r->rate = -1;
    for (int i = 0; i < o->grid; i++) {
        double lambda = lambda_at(o, i);
        for (int c = 0; c < order; c++)
            step_column(st, h * lambda, c, &m[c * order]);
        double rho = spectral_radius(order, m);
        if (rho < 0) {
            fprintf(diag, "optc analyze: eigenvalue solver failed at lambda %g\n", lambda);
            return -1;
        }
        if (rho > r->rate) {
            r->rate = rho;
            r->worst_lambda = lambda;
        }
    }
    r->method = AN_COMPANION;
    r->order = order;
    r->steps_1e3 = steps_for(r->rate);
    return 0;
}

/* Simulate from x0 = 1 for N steps; the trajectory x_k is read at the
 * outputs of the shorter unrolls, which are prefixes of the longest (when
 * they are not, steps to 1e-3 come from the rate). */
static int simulated_rate(AnalyzeUnrollFn unroll, void *ctx, const AnalyzeOpts *o, double h,
                          AnalyzeResult *r, FILE *diag)
{
    int N = o->steps;
    Arena *a = arena_new();
    int rc = -1;
    int *outk = calloc((size_t)N + 1, sizeof(int));
    double *worst = calloc((size_t)N + 1, sizeof(double));
    IrGraph *gN = unroll(ctx, a, N);
    double *val = NULL;
    if (!outk || !worst || !gN)
        goto done;
    if (check_ops(gN, diag) < 0)
        goto done;
    bool traj = true;
    for (int k = 1; k < N && traj; k++) {
        Arena *ak = arena_new();
        IrGraph *gk = unroll(ctx, ak, k);
        if (!gk || !is_prefix(gk, gN))
            traj = false;
        else
            outk[k] = gk->output;
        arena_free(ak);
    }
    outk[0] = 0;
    outk[N] = gN->output;
    val = malloc(sizeof(double) * (size_t)gN->nnodes);
    if (!val)
        goto done;
    r->rate = -1;
    for (int i = 0; i < o->grid; i++) {
        double lambda = lambda_at(o, i);
        eval_scalar(gN, h * lambda, val);
        double eN = fabs(val[gN->output]);
        double rate = pow(eN, 1.0 / N);
        if (!isfinite(rate))
            rate = INFINITY;
        if (rate > r->rate) {
            r->rate = rate;
            r->worst_lambda = lambda;
        }
        if (traj)
            for (int k = 0; k <= N; k++)
                if (fabs(val[outk[k]]) > worst[k])
                    worst[k] = fabs(val[outk[k]]);
    }
    r->method = AN_SIMULATED;
    r->order = 0;
    r->steps_1e3 = steps_for(r->rate);
    if (traj) {
        /* The first k after which the worst error stays below 1e-3. */
        int k = N;
        while (k > 0 && worst[k - 1] <= 1e-3)
            k--;
        r->steps_1e3 = worst[N] <= 1e-3 ? k : -1;
    }
    rc = 0;
done:
    if (rc < 0 && !gN)
        fprintf(diag, "optc analyze: cannot unroll %d steps\n", N);
    free(val);
    free(worst);
    free(outk);
    arena_free(a);
    return rc;
}

int analyze_rate(AnalyzeUnrollFn unroll, void *ctx, const AnalyzeOpts *o, AnalyzeResult *r,
                 FILE *diag)
{
    memset(r, 0, sizeof *r);
    double h = o->h > 0 ? o->h : 1.0 / o->L;
    r->h = h;
    if (!(o->mu > 0) || !(o->L >= o->mu) || o->steps < 1 || o->grid < 1) {
        fprintf(diag, "optc analyze: need 0 < mu <= L, steps >= 1\n");
        return -1;
    }
    Arena *a = arena_new();
    IrGraph *G[AN_T];
    int rc = -1;
    for (int j = 1; j <= AN_T; j++) {
        G[j - 1] = unroll(ctx, a, j);
        if (!G[j - 1]) {
            fprintf(diag, "optc analyze: cannot unroll %d steps\n", j);
            goto done;
        }
    }
    if (check_ops(G[AN_T - 1], diag) < 0)
        goto done;
    for (int i = 0; i < G[AN_T - 1]->nnodes; i++) {
        const IrNode *n = &G[AN_T - 1]->nodes[i];
        if (n->op == OP_SUM)
            for (int j = 0; j < n->nin; j++)
                r->learned |= n->u.sum.coef[j].nterms > 0;
    }
    if (has_op(G[AN_T - 1], OP_CONCAT)) {
        r->method = AN_CONCAT;
        r->rate = NAN;
        r->steps_1e3 = -1;
        rc = 0;
        goto done;
    }
    Step st = {0};
    if (find_step(G, AN_T, &st))
        rc = companion_rate(&st, o, h, r, diag);
    else
        rc = simulated_rate(unroll, ctx, o, h, r, diag);
    free(st.lag);
    free(st.role);
    free(st.first);
done:
    arena_free(a);
    return rc;
}

typedef struct {
    const Spec *s;
    const char *opt;
    FILE *diag;
} SpecCtx;

static IrGraph *unroll_spec(void *ctx, Arena *a, int steps)
{
    const SpecCtx *c = ctx;
    int nerr = 0;
    IrShape one = {1, 1, 1};
    return fe_unroll_optimizer(a, c->s, c->opt, steps, one, c->diag, &nerr);
}

int analyze_optimizer(const Spec *s, const char *opt, const AnalyzeOpts *o, AnalyzeResult *r,
                      FILE *diag)
{
    SpecCtx c = {s, opt, diag};
    return analyze_rate(unroll_spec, &c, o, r, diag);
}

/* ---- the theory block ----------------------------------------------------- */

/* splitmix64: a small seeded generator, enough for a reproducible U. */
static double rnd_normal(uint64_t *s)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        u[i] = ((double)(z >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

/* The exact block's activation: an RtAct and its argument. */
typedef struct { int act; double a; } Phi;

/* f(z) = |z|^2/2 - sum_i Psi(u_i^T z) for U d x m (row-major), Psi the
 * antiderivative of phi with Psi(0) = 0 (runtime/act.inc). */
static double theory_f(Phi phi, const double *U, int d, int m, const double *z)
{
    double f = 0;
    for (int i = 0; i < d; i++)
        f += 0.5 * z[i] * z[i];
    for (int j = 0; j < m; j++) {
        double t = 0;
        for (int i = 0; i < d; i++)
            t += U[(size_t)i * m + j] * z[i];
        f -= rt_act_psi_d(phi.act, phi.a, t);
    }
    return f;
}

/* grad f(z) = z - U phi(U^T z): the exact block. */
static void theory_grad(Phi phi, const double *U, int d, int m, const double *z, double *out,
                        double *t)
{
    for (int j = 0; j < m; j++) {
        double s = 0;
        for (int i = 0; i < d; i++)
            s += U[(size_t)i * m + j] * z[i];
        t[j] = rt_act_phi_d(phi.act, phi.a, s, NULL);
    }
    for (int i = 0; i < d; i++) {
        double s = 0;
        for (int j = 0; j < m; j++)
            s += U[(size_t)i * m + j] * t[j];
        out[i] = z[i] - s;
    }
}

/* Scale U to spectral norm 0.9 (power iteration on U U^T). */
static void scale_spectral(double *U, int d, int m)
{
    double *v = malloc(sizeof(double) * (size_t)d), *w = malloc(sizeof(double) * (size_t)m);
    if (!v || !w) {
        free(v);
        free(w);
        return;
    }
    for (int i = 0; i < d; i++)
        v[i] = 1.0 / sqrt((double)d) * (1.0 + 0.01 * i);
    double sig = 1.0;
    for (int it = 0; it < 200; it++) {
        for (int j = 0; j < m; j++) {
            double s = 0;
            for (int i = 0; i < d; i++)
                s += U[(size_t)i * m + j] * v[i];
            w[j] = s;
        }
        double nv = 0;
        for (int i = 0; i < d; i++) {
            double s = 0;
            for (int j = 0; j < m; j++)
                s += U[(size_t)i * m + j] * w[j];
            v[i] = s;
            nv += s * s;
        }
        nv = sqrt(nv);
        if (nv == 0)
            break;
        sig = sqrt(nv);
        for (int i = 0; i < d; i++)
            v[i] /= nv;
    }
    for (size_t k = 0; k < (size_t)d * m; k++)
        U[k] *= 0.9 / sig;
    free(v);
    free(w);
}

int analyze_theory(const IrGraph *g, unsigned long long seed, double *fvals, int cap, FILE *diag)
{
    int first = -1;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == OP_EXACT) {
            first = i;
            break;
        }
    if (first < 0) {
        fprintf(diag, "optc analyze: network %s has no exact block\n", g->name);
        return -1;
    }
    const IrNode *e0 = &g->nodes[first];
    int d = e0->u.exact.m > 0 ? g->params[e0->u.exact.u].dims[0] : 0;
    int m = e0->u.exact.m;
    int z0 = e0->in[0];
    int op = op_find(e0->u.exact.phi, OPF_ACT);
    if (d <= 0 || m <= 0 || op < 0) {
        fprintf(diag, "optc analyze: bad exact block in %s\n", g->name);
        return -1;
    }
    Phi phi = { op_info((IrOp)op)->act, e0->u.exact.alpha };
    /* The stage input is the latest non-stage node before the first exact
     * block: every stage node must read it or a later stage node. */
    for (int i = first - 1; i > z0; i--)
        if (g->nodes[i].op != OP_SUM) {
            fprintf(diag, "optc analyze: %s: unexpected op before the stages\n", g->name);
            return -1;
        }
    uint64_t s = seed;
    double *U = malloc(sizeof(double) * (size_t)d * m);
    double *val = calloc((size_t)g->nnodes * d, sizeof(double));
    double *t = malloc(sizeof(double) * (size_t)m);
    int nf = -1;
    if (!U || !val || !t)
        goto done;
    for (size_t k = 0; k < (size_t)d * m; k++)
        U[k] = rnd_normal(&s);
    scale_spectral(U, d, m);
    for (int i = 0; i < d; i++)
        val[(size_t)z0 * d + i] = rnd_normal(&s);
    nf = 0;
    int last = z0;
    for (int i = z0 + 1; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        if (n->op != OP_SUM && n->op != OP_EXACT)
            break;
        if (n->shape.c * n->shape.h * n->shape.w != d)
            break;
        double *out = &val[(size_t)i * d];
        if (n->op == OP_EXACT) {
            if (n->u.exact.u != e0->u.exact.u || strcmp(n->u.exact.phi, e0->u.exact.phi) != 0 ||
                n->u.exact.alpha != e0->u.exact.alpha) {
                fprintf(diag, "optc analyze: %s: exact blocks do not share U and phi\n", g->name);
                nf = -1;
                goto done;
            }
            const double *z = &val[(size_t)n->in[0] * d];
            if (nf < cap)
                fvals[nf++] = theory_f(phi, U, d, m, z);
            theory_grad(phi, U, d, m, z, out, t);
        } else {
            for (int j = 0; j < n->nin; j++) {
                double c = coef_value(g, &n->u.sum.coef[j]);
                const double *x = &val[(size_t)n->in[j] * d];
                for (int k = 0; k < d; k++)
                    out[k] += c * x[k];
            }
        }
        last = i;
    }
    if (nf < cap)
        fvals[nf++] = theory_f(phi, U, d, m, &val[(size_t)last * d]);
done:
    free(U);
    free(val);
    free(t);
    return nf;
}

/* ---- the command ------------------------------------------------------------ */

static const char usage[] =
    "usage: optc analyze SPEC [--mu X] [--L X] [--h X] [--steps N] [-D name=value]...\n"
    "  Each optimizer of SPEC on quadratics: grad(z) = h*A z, eig(A) in [mu, L]\n"
    "  (defaults mu 0.01, L 1, h 1/L, steps 400 for k-dependent coefficients).\n"
    "  Networks whose grad block is exact(ACT, M) are run on their f, per step.\n";

static int parse_pos(const char *flag, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v <= 0) {
        fprintf(stderr, "optc analyze: %s wants a positive number, got '%s'\n", flag, s);
        return 2;
    }
    *out = v;
    return 0;
}

/* "beta=0.9,g=learned(0.5)": the parameter values in effect (after -D). */
static void opt_params(const Spec *s, int i, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (int j = 0; j < fe_optimizer_param_count(s, i) && n < cap; j++) {
        double v;
        bool learned;
        const char *name = fe_optimizer_param(s, i, j, &v, &learned);
        n += (size_t)snprintf(buf + n, cap - n, learned ? "%s%s=learned(%g)" : "%s%s=%g",
                              j ? "," : "", name, v);
    }
    if (!buf[0])
        snprintf(buf, cap, "-");
}

static void print_row(const char *name, const AnalyzeResult *r, const char *params)
{
    char rate[32], steps[32], how[48];
    if (r->method == AN_CONCAT) {
        printf("%-20s %-24s %-12s %-14s %s\n", name, params, "n/a (concat)", "n/a", "-");
        return;
    }
    snprintf(rate, sizeof rate, "%.6f", r->rate);
    if (r->steps_1e3 < 0)
        snprintf(steps, sizeof steps, "never");
    else
        snprintf(steps, sizeof steps, "%d", r->steps_1e3);
    if (r->method == AN_COMPANION)
        snprintf(how, sizeof how, "companion %dx%d", r->order, r->order);
    else
        snprintf(how, sizeof how, "simulated");
    printf("%-20s %-24s %-12s %-14s %s, worst lambda %.4g\n", name, params, rate, steps, how,
           r->worst_lambda);
}

int cmd_analyze(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 0;
        }
    CliArgs ca;
    if (cli_parse(&ca, argc, argv, usage) != 0)
        return 2;
    AnalyzeOpts o;
    analyze_defaults(&o);
    for (int i = 0; i < ca.nrest; i++) {
        const char *f = ca.rest[i];
        if (i + 1 >= ca.nrest) {
            fprintf(stderr, "optc analyze: unknown or incomplete flag '%s'\n%s", f, usage);
            return 2;
        }
        const char *v = ca.rest[++i];
        int rc = 0;
        if (!strcmp(f, "--mu"))
            rc = parse_pos(f, v, &o.mu);
        else if (!strcmp(f, "--L"))
            rc = parse_pos(f, v, &o.L);
        else if (!strcmp(f, "--h"))
            rc = parse_pos(f, v, &o.h);
        else if (!strcmp(f, "--steps")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (end == v || *end || n < 1 || n > 100000) {
                fprintf(stderr, "optc analyze: --steps wants 1..100000, got '%s'\n", v);
                return 2;
            }
            o.steps = (int)n;
        } else {
            fprintf(stderr, "optc analyze: unknown flag '%s'\n%s", f, usage);
            return 2;
        }
        if (rc)
            return rc;
    }
    if (o.mu > o.L) {
        fprintf(stderr, "optc analyze: need mu <= L\n");
        return 2;
    }
    Arena *a = arena_new();
    int nerr = 0, status = 0;
    Spec *s = fe_load(a, ca.spec, ca.defs, ca.ndefs, stderr, &nerr);
    if (!s) {
        arena_free(a);
        return 1;
    }
    double h = o.h > 0 ? o.h : 1.0 / o.L;
    printf("quadratics: grad(z) = h*A z, eig(A) in [%g, %g], kappa = %g, h = %g%s\n", o.mu,
           o.L, o.L / o.mu, h, o.h > 0 ? "" : " (1/L)");
    printf("%-20s %-24s %-12s %-14s %s\n", "optimizer", "parameters", "rate/step",
           "steps to 1e-3", "method");
    bool any_learned = false;
    for (int i = 0; i < fe_optimizer_count(s); i++) {
        const char *name = fe_optimizer_name(s, i);
        AnalyzeResult r;
        if (analyze_optimizer(s, name, &o, &r, stderr) < 0) {
            status = 1;
            continue;
        }
        char p[300];
        opt_params(s, i, p, sizeof p);
        any_learned |= r.learned;
        print_row(name, &r, p);
    }
    if (any_learned)
        printf("learned coefficients are taken at their init values: c0 + sum a_j*init_j\n");
    /* Networks built on the theory block: the network is the optimizer. */
    for (int i = 0; i < fe_network_count(s); i++) {
        const char *net = fe_network_name(s, i);
        IrGraph *g = fe_unroll(a, s, net, stderr, &nerr);
        if (!g) {
            status = 1;
            continue;
        }
        if (!has_op(g, OP_EXACT))
            continue;
        double f[1024];
        int nf = analyze_theory(g, 1, f, 1024, stderr);
        if (nf < 0) {
            status = 1;
            continue;
        }
        const IrNode *e = NULL;
        for (int k = 0; k < g->nnodes && !e; k++)
            e = g->nodes[k].op == OP_EXACT ? &g->nodes[k] : NULL;
        const OpInfo *oi = op_info((IrOp)op_find(e->u.exact.phi, OPF_ACT));
        char phi[64];
        if (oi->arg[0])
            snprintf(phi, sizeof phi, "%s(%s = %g)", e->u.exact.phi, oi->arg, e->u.exact.alpha);
        else
            snprintf(phi, sizeof phi, "%s", e->u.exact.phi);
        bool zero_min = rt_act_phi_d(oi->act, e->u.exact.alpha, 0.0, NULL) == 0.0;
        printf("\nnetwork %s (exact block) on f(z) = |z|^2/2 - sum_i Psi(u_i^T z), Psi' = %s,\n"
               "seeded U at spectral norm 0.9, %s; f where each grad is taken, then "
               "f(output):\n",
               net, phi, zero_min ? "min f = 0 at z = 0" : "phi(0) != 0: min f < 0, not at 0");
        for (int k = 0; k < nf; k++)
            printf("  %s %3d  f = %.6e\n", k + 1 < nf ? "step" : "out ", k, f[k]);
    }
    arena_free(a);
    return status;
}
