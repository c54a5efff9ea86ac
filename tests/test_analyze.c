/* test_analyze.c — optc analyze on known methods: gradient descent and heavy
 * ball have closed-form rates on quadratics; Nesterov must beat gradient
 * descent; concat has no rate; -D must change the answer. Hand-built graphs
 * pin the analysis itself, specs pin the path through the front end. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "analyze.h"
#include "tmain.h"

/* ---- hand-built optimizer graphs ------------------------------------------- */

typedef enum { HB_GD, HB_HEAVY, HB_NESTEROV, HB_CONCAT, HB_LEARNED } Kind;

typedef struct {
    Kind kind;
    double beta;
} Hand;

typedef struct {
    Arena *a;
    IrGraph *g;
    int cap;
    IrCoef *last;   /* the coefficients of the last sum added */
} Builder;

static int add(Builder *b, IrOp op, int nin, const int *in, const double *coef)
{
    IrGraph *g = b->g;
    if (g->nnodes == b->cap) {
        IrNode *n = arena_alloc(b->a, sizeof(IrNode) * (size_t)b->cap * 2);
        memcpy(n, g->nodes, sizeof(IrNode) * (size_t)b->cap);
        g->nodes = n;
        b->cap *= 2;
    }
    IrNode *n = &g->nodes[g->nnodes];
    n->id = g->nnodes;
    n->op = op;
    n->name = "n";
    n->nin = nin;
    int *ins = arena_alloc(b->a, sizeof(int) * (size_t)(nin + 1));
    if (nin > 0)
        memcpy(ins, in, sizeof(int) * (size_t)nin);
    n->in = ins;
    n->shape = (IrShape){1, 1, 1};
    if (op == OP_SUM) {
        IrCoef *c = arena_alloc(b->a, sizeof(IrCoef) * (size_t)nin);
        for (int i = 0; i < nin; i++)
            c[i].c0 = coef[i];
        n->u.sum.coef = c;
        b->last = c;
    }
    return g->nnodes++;
}

static IrGraph *hand_unroll(void *ctx, Arena *a, int steps)
{
    const Hand *h = ctx;
    Builder b = {a, arena_alloc(a, sizeof(IrGraph)), 16, NULL};
    b.g->name = "hand";
    b.g->nodes = arena_alloc(a, sizeof(IrNode) * 16);
    if (h->kind == HB_LEARNED) {
        b.g->params = arena_alloc(a, sizeof(IrParam));
        b.g->params[0] = (IrParam){.name = "beta", .kind = PK_SCALAR, .ndim = 1,
                                   .dims = {1}, .numel = 1, .init = INIT_CONST,
                                   .init_value = 0.5, .trainable = true};
        b.g->nparams = 1;
    }
    int x = add(&b, OP_INPUT, 0, NULL, NULL), xprev = x;
    double t = 1.0;
    for (int k = 0; k < steps; k++) {
        int in[4], gr;
        double c[4];
        int next;
        switch (h->kind) {
        case HB_GD:
            gr = add(&b, OP_GRAD, 1, &x, NULL);
            in[0] = x, in[1] = gr, c[0] = 1, c[1] = -1;
            next = add(&b, OP_SUM, 2, in, c);
            break;
        case HB_HEAVY:
        case HB_LEARNED:
            gr = add(&b, OP_GRAD, 1, &x, NULL);
            in[0] = x, in[1] = gr, in[2] = xprev;
            c[0] = 1 + h->beta, c[1] = -1, c[2] = -h->beta;
            next = add(&b, OP_SUM, 3, in, c);
            if (h->kind == HB_LEARNED) {
                /* coefficient of x: 1 + beta, of xprev: -beta, beta learned */
                IrCoef *co = b.last;
                co[0] = (IrCoef){.c0 = 1, .nterms = 1, .param = {0}, .a = {1}};
                co[2] = (IrCoef){.c0 = 0, .nterms = 1, .param = {0}, .a = {-1}};
            }
            break;
        case HB_NESTEROV: {
            double t1 = (1 + sqrt(1 + 4 * t * t)) / 2, ck = (t - 1) / t1;
            t = t1;
            in[0] = x, in[1] = xprev, c[0] = 1 + ck, c[1] = -ck;
            int y = add(&b, OP_SUM, 2, in, c);
            gr = add(&b, OP_GRAD, 1, &y, NULL);
            in[0] = y, in[1] = gr, c[0] = 1, c[1] = -1;
            next = add(&b, OP_SUM, 2, in, c);
            break;
        }
        case HB_CONCAT:
        default:
            gr = add(&b, OP_GRAD, 1, &x, NULL);
            in[0] = x, in[1] = gr;
            next = add(&b, OP_CONCAT, 2, in, NULL);
            break;
        }
        xprev = x;
        x = next;
    }
    b.g->output = x;
    return b.g;
}

static AnalyzeResult run_hand(Hand h, const AnalyzeOpts *o)
{
    AnalyzeResult r;
    ck_assert_int_eq(analyze_rate(hand_unroll, &h, o, &r, stderr), 0);
    return r;
}

START_TEST(gd_rate_kappa_100)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    AnalyzeResult r = run_hand((Hand){HB_GD, 0}, &o);
    ck_assert_int_eq(r.method, AN_COMPANION);
    ck_assert_int_eq(r.order, 1);
    ck_assert_double_eq_tol(r.rate, 0.99, 1e-12);
    ck_assert_double_eq_tol(r.worst_lambda, 0.01, 1e-12);
    ck_assert_int_eq(r.steps_1e3, 688);    /* ceil(log 1e-3 / log 0.99) */
}
END_TEST

START_TEST(heavy_ball_optimal)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    double kappa = o.L / o.mu, sk = sqrt(kappa);
    o.h = 4.0 / pow(sqrt(o.L) + sqrt(o.mu), 2);
    double beta = pow((sk - 1) / (sk + 1), 2);
    AnalyzeResult r = run_hand((Hand){HB_HEAVY, beta}, &o);
    ck_assert_int_eq(r.method, AN_COMPANION);
    ck_assert_int_eq(r.order, 2);
    /* (sqrt(kappa)-1)/(sqrt(kappa)+1) = 9/11 at kappa = 100; the endpoints
     * are Jordan blocks, where the eigenvalue solver loses half its digits. */
    ck_assert_double_eq_tol(r.rate, 9.0 / 11.0, 1e-3);
    ck_assert_double_eq_tol(r.rate, 0.8182, 1e-3);
}
END_TEST

START_TEST(nesterov_beats_gd)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    AnalyzeResult gd = run_hand((Hand){HB_GD, 0}, &o);
    AnalyzeResult ne = run_hand((Hand){HB_NESTEROV, 0}, &o);
    ck_assert_int_eq(ne.method, AN_SIMULATED);
    ck_assert(ne.rate < gd.rate);
    ck_assert(ne.steps_1e3 > 0);
    ck_assert_int_lt(ne.steps_1e3, gd.steps_1e3);
}
END_TEST

START_TEST(concat_has_no_rate)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    AnalyzeResult r = run_hand((Hand){HB_CONCAT, 0}, &o);
    ck_assert_int_eq(r.method, AN_CONCAT);
    ck_assert(isnan(r.rate));
}
END_TEST

START_TEST(learned_uses_init)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    AnalyzeResult l = run_hand((Hand){HB_LEARNED, 0.5}, &o);
    AnalyzeResult f = run_hand((Hand){HB_HEAVY, 0.5}, &o);
    ck_assert(l.learned);
    ck_assert(!f.learned);
    ck_assert_double_eq_tol(l.rate, f.rate, 1e-12);
}
END_TEST

START_TEST(bad_options)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    o.mu = 2.0;     /* above L */
    AnalyzeResult r;
    FILE *null = fopen("/dev/null", "w");
    ck_assert_int_eq(analyze_rate(hand_unroll, &(Hand){HB_GD, 0}, &o, &r, null), -1);
    fclose(null);
}
END_TEST


/* ---- through the front end ------------------------------------------------------ */

static const char spec_src[] =
    "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
    "optimizer heavy_ball(beta = 0.9) {\n"
    "    x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]);\n"
    "}\n"
    "optimizer nesterov {\n"
    "    t[0] = 1;\n"
    "    t[k+1] = (1 + sqrt(1 + 4 * t[k] * t[k])) / 2;\n"
    "    y[k] = x[k] + (t[k] - 1) / t[k+1] * (x[k] - x[k-1]);\n"
    "    x[k+1] = y[k] - grad(y[k]);\n"
    "}\n"
    "optimizer lm(beta = learned(0.5)) {\n"
    "    x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]);\n"
    "}\n"
    "optimizer dense { x[k+1] = concat(x[k], grad(x[k])); }\n";

/* Analyse optimizer opt of spec_src with the given -D's. */
static AnalyzeResult spec_rate(const char *opt, const Define *defs, int ndefs,
                               const AnalyzeOpts *o)
{
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load_string(a, "analyze.opt", spec_src, sizeof spec_src - 1, defs, ndefs,
                             stderr, &nerr);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(nerr, 0);
    AnalyzeResult r;
    ck_assert_int_eq(analyze_optimizer(s, opt, o, &r, stderr), 0);
    arena_free(a);
    return r;
}

START_TEST(spec_gd)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    AnalyzeResult r = spec_rate("gd", NULL, 0, &o);
    ck_assert_int_eq(r.method, AN_COMPANION);
    ck_assert_double_eq_tol(r.rate, 0.99, 1e-12);
    ck_assert_int_eq(r.steps_1e3, 688);
}
END_TEST

START_TEST(spec_heavy_ball_optimal)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    double sk = sqrt(o.L / o.mu);
    o.h = 4.0 / pow(sqrt(o.L) + sqrt(o.mu), 2);
    char beta[64];
    snprintf(beta, sizeof beta, "%.17g", pow((sk - 1) / (sk + 1), 2));
    Define d = {"heavy_ball.beta", beta};
    AnalyzeResult r = spec_rate("heavy_ball", &d, 1, &o);
    ck_assert_int_eq(r.method, AN_COMPANION);
    ck_assert_double_eq_tol(r.rate, 0.8182, 1e-3);
}
END_TEST

START_TEST(spec_define_changes_rate)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    AnalyzeResult r9 = spec_rate("heavy_ball", NULL, 0, &o);
    Define d = {"beta", "0.5"};
    AnalyzeResult r5 = spec_rate("heavy_ball", &d, 1, &o);
    /* beta = 0.9 at h = 1/L: complex pair of modulus sqrt(beta) */
    ck_assert_double_eq_tol(r9.rate, sqrt(0.9), 1e-9);
    ck_assert(fabs(r5.rate - r9.rate) > 1e-3);
    ck_assert_int_ne(r5.steps_1e3, r9.steps_1e3);
}
END_TEST

START_TEST(spec_nesterov_learned_dense)
{
    AnalyzeOpts o;
    analyze_defaults(&o);
    AnalyzeResult gd = spec_rate("gd", NULL, 0, &o);
    AnalyzeResult ne = spec_rate("nesterov", NULL, 0, &o);
    ck_assert_int_eq(ne.method, AN_SIMULATED);
    ck_assert(ne.rate < gd.rate);
    ck_assert_int_lt(ne.steps_1e3, gd.steps_1e3);
    AnalyzeResult lm = spec_rate("lm", NULL, 0, &o);
    Define d = {"beta", "0.5"};
    AnalyzeResult hb = spec_rate("heavy_ball", &d, 1, &o);
    ck_assert(lm.learned);
    ck_assert_double_eq_tol(lm.rate, hb.rate, 1e-12);
    AnalyzeResult de = spec_rate("dense", NULL, 0, &o);
    ck_assert_int_eq(de.method, AN_CONCAT);
}
END_TEST

/* ---- the theory block -------------------------------------------------------- */

/* The activations of act.def, each the exact block's phi in turn. */
static const struct { const char *name; double a; } th_acts[] = {
#define ACT(name, NAME, arg, def, k, kink) { #name, def },
#include "act.def"
#undef ACT
};

/* A GD network on the exact block with activation phi (its argument a):
 * input d -> K steps -> output. */
static IrGraph *theory_graph(Arena *a, int d, int m, int K, const char *phi, double alpha)
{
    Builder b = {a, arena_alloc(a, sizeof(IrGraph)), 16, NULL};
    b.g->name = "theory";
    b.g->nodes = arena_alloc(a, sizeof(IrNode) * 16);
    b.g->params = arena_alloc(a, sizeof(IrParam));
    b.g->params[0] = (IrParam){.name = "U", .kind = PK_WEIGHT, .ndim = 2, .dims = {d, m},
                               .numel = (size_t)d * m, .init = INIT_UNIFORM, .fan_in = d,
                               .trainable = true};
    b.g->nparams = 1;
    int x = add(&b, OP_INPUT, 0, NULL, NULL);
    b.g->nodes[x].shape = (IrShape){d, 1, 1};
    for (int k = 0; k < K; k++) {
        int e = add(&b, OP_EXACT, 1, &x, NULL);
        b.g->nodes[e].shape = (IrShape){d, 1, 1};
        b.g->nodes[e].u.exact.u = 0;
        b.g->nodes[e].u.exact.m = m;
        snprintf(b.g->nodes[e].u.exact.phi, sizeof b.g->nodes[e].u.exact.phi, "%s", phi);
        b.g->nodes[e].u.exact.alpha = alpha;
        int in[2] = {x, e};
        double c[2] = {1, -1};
        x = add(&b, OP_SUM, 2, in, c);
        b.g->nodes[x].shape = (IrShape){d, 1, 1};
    }
    b.g->output = x;
    return b.g;
}

/* GD with step 1 descends on f for every activation (its Hessian
 * I - U diag(phi') U^T has eigenvalues in (0, 2) when |U| = 0.9 and
 * phi' in (-0.2, 1.2)); f >= 0 when phi(0) = 0 (Psi(t) <= t^2/2 then). */
START_TEST(theory_gd_descends)
{
    Arena *a = arena_new();
    IrGraph *g = theory_graph(a, 12, 20, 6, th_acts[_i].name, th_acts[_i].a);
    double f[16];
    int n = analyze_theory(g, 7, f, 16, stderr);
    ck_assert_int_eq(n, 7);     /* one per grad, then the output */
    for (int k = 1; k < n; k++)
        ck_assert_msg(f[k] <= f[k - 1] + 1e-12, "%s: f rose at step %d", th_acts[_i].name, k);
    ck_assert(f[n - 1] < f[0]);
    if (strcmp(th_acts[_i].name, "sigmoid") != 0 && strcmp(th_acts[_i].name, "softplus") != 0)
        ck_assert(f[n - 1] >= 0);
    arena_free(a);
}
END_TEST

START_TEST(theory_rejects_unknown_phi)
{
    Arena *a = arena_new();
    IrGraph *g = theory_graph(a, 4, 3, 2, "swish", 0);
    double f[8];
    char *msg = NULL;
    size_t len = 0;
    FILE *diag = open_memstream(&msg, &len);
    ck_assert_int_eq(analyze_theory(g, 7, f, 8, diag), -1);
    fclose(diag);
    ck_assert_ptr_nonnull(strstr(msg, "bad exact block"));
    free(msg);
    arena_free(a);
}
END_TEST

static Suite *analyze_suite(void)
{
    Suite *s = suite_create("analyze");
    TCase *tc = tcase_create("quadratics");
    tcase_add_test(tc, gd_rate_kappa_100);
    tcase_add_test(tc, heavy_ball_optimal);
    tcase_add_test(tc, nesterov_beats_gd);
    tcase_add_test(tc, concat_has_no_rate);
    tcase_add_test(tc, learned_uses_init);
    tcase_add_test(tc, bad_options);
    tcase_add_loop_test(tc, theory_gd_descends, 0, (int)(sizeof th_acts / sizeof th_acts[0]));
    tcase_add_test(tc, theory_rejects_unknown_phi);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("specs");
    tcase_set_timeout(ts, 60);
    tcase_add_test(ts, spec_gd);
    tcase_add_test(ts, spec_heavy_ball_optimal);
    tcase_add_test(ts, spec_define_changes_rate);
    tcase_add_test(ts, spec_nesterov_learned_dense);
    suite_add_tcase(s, ts);
    return s;
}

TEST_MAIN(analyze_suite)
