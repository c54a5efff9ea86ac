/* test_frontend.c — the front end: examples parse, check and unroll to the
 * expected ops; published parameter counts; Nesterov's folded FISTA
 * coefficients; -D; golden diagnostics of tests/bad; hostile inputs. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "frontend.h"
#include "testutil.h"
#include "tmain.h"

static IrGraph *load_net(Arena *a, const char *path, const char *net, const Define *defs, int ndefs)
{
    int nerr = -1;
    Spec *s = fe_load(a, path, defs, ndefs, stderr, &nerr);
    ck_assert_msg(s != NULL, "%s does not load", path);
    ck_assert_int_eq(nerr, 0);
    IrGraph *g = fe_unroll(a, s, net, stderr, &nerr);
    ck_assert_msg(g != NULL, "%s: %s does not unroll", path, net ? net : "(first)");
    return g;
}

static size_t trainable(const IrGraph *g)
{
    size_t n = 0;
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].trainable)
            n += g->params[i].numel;
    return n;
}

static int count_op(const IrGraph *g, IrOp op)
{
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        n += g->nodes[i].op == op;
    return n;
}

static int count_kind(const IrGraph *g, IrParamKind k)
{
    int n = 0;
    for (int i = 0; i < g->nparams; i++)
        n += g->params[i].kind == k;
    return n;
}

static const IrNode *lookup_node(const IrGraph *g, const char *name)
{
    for (int i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return &g->nodes[i];
    return NULL;
}

/* The node of that name; the test fails (and stops) without one. */
static const IrNode *find_node(const IrGraph *g, const char *name)
{
    const IrNode *n = lookup_node(g, name);
    if (!n) {
        fprintf(stderr, "no node %s in %s\n", name, g->name);
        ck_abort_msg("no node %s", name);
        abort();
    }
    return n;
}

static bool same_shape(IrShape a, IrShape b)
{
    return a.c == b.c && a.h == b.h && a.w == b.w;
}

/* The IR's contract (ir.h): node 0 input, topological order, params in
 * range, sums of equal shapes, logits output of shape classes x 1 x 1. */
static void check_invariants(const IrGraph *g)
{
    ck_assert_int_eq(g->nodes[0].op, OP_INPUT);
    for (int i = 0; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        ck_assert_int_eq(n->id, i);
        ck_assert(n->name && n->name[0]);
        for (int j = 0; j < n->nin; j++)
            ck_assert_msg(n->in[j] >= 0 && n->in[j] < i, "%s: input %d not before it", n->name, n->in[j]);
        ck_assert(n->shape.c >= 1 && n->shape.h >= 1 && n->shape.w >= 1);
        if (n->op == OP_CONV) {
            ck_assert(n->u.conv.w >= 0 && n->u.conv.w < g->nparams);
            const IrParam *p = &g->params[n->u.conv.w];
            ck_assert_int_eq(p->dims[0], n->shape.c);
            ck_assert_int_eq(p->dims[1], g->nodes[n->in[0]].shape.c);
            ck_assert_int_eq(p->fan_in, p->dims[1] * p->dims[2] * p->dims[3]);
        }
        if (n->op == OP_SUM) {
            ck_assert_int_ge(n->nin, 1);
            for (int j = 0; j < n->nin; j++) {
                ck_assert(same_shape(g->nodes[n->in[j]].shape, n->shape));
                for (int t = 0; t < n->u.sum.coef[j].nterms; t++)
                    ck_assert_int_eq(g->params[n->u.sum.coef[j].param[t]].kind, PK_SCALAR);
                for (int i2 = 0; i2 < j; i2++)
                    ck_assert_msg(n->in[i2] != n->in[j], "%s: duplicate input", n->name);
            }
        }
        if (n->op == OP_BN) {
            ck_assert_int_eq(g->params[n->u.bn.mean].kind, PK_BN_MEAN);
            ck_assert(!g->params[n->u.bn.var].trainable);
        }
    }
    const IrNode *o = &g->nodes[g->output];
    ck_assert_int_eq(o->shape.c, g->classes);
    ck_assert_int_eq(o->shape.h, 1);
    ck_assert_int_eq(o->shape.w, 1);
}

/* ---- examples ----------------------------------------------------------- */

typedef struct {
    const char *file, *net;
    int input, conv, bn, relu, sum, concat, pad, avgpool, gap, linear, exact;
    int scalars;
} OpCounts;

static const OpCounts expected[] = {
    /* file                    net                     in conv bn relu sum cat pad pool gap lin ex scal */
    { "examples/resnet.opt", "resnet20_cifar",          1, 19, 19, 19,  9,  0, 2, 0, 1, 1, 0, 0 },
    { "examples/resnet.opt", "resnet56_cifar",          1, 55, 55, 55, 27,  0, 2, 0, 1, 1, 0, 0 },
    { "examples/resnet.opt", "resnet110_cifar",         1,109,109,109, 54,  0, 2, 0, 1, 1, 0, 0 },
    { "examples/resnet.opt", "resnet20_fmnist",         1, 19, 19, 19,  9,  0, 2, 0, 1, 1, 0, 0 },
    { "examples/heavy_ball.opt", "hb20_cifar",          1, 19, 19, 19,  9,  0, 2, 0, 1, 1, 0, 0 },
    { "examples/heavy_ball.opt", "hb20_fmnist",         1, 19, 19, 19,  9,  0, 2, 0, 1, 1, 0, 0 },
    /* Nesterov: y[0] = x[0] needs no node, y[1], y[2] do: 6 more sums */
    { "examples/nesterov.opt", "nesterov20_cifar",      1, 19, 19, 19, 15,  0, 2, 0, 1, 1, 0, 0 },
    { "examples/nesterov.opt", "nesterov20_fmnist",     1, 19, 19, 19, 15,  0, 2, 0, 1, 1, 0, 0 },
    /* momentum: one v and one x sum per step */
    { "examples/momentum.opt", "momentum20_cifar",      1, 19, 19, 19, 18,  0, 2, 0, 1, 1, 0, 0 },
    { "examples/momentum.opt", "momentum20_fmnist",     1, 19, 19, 19, 18,  0, 2, 0, 1, 1, 0, 0 },
    { "examples/lm.opt", "lm20_cifar",                  1, 19, 19, 19,  9,  0, 2, 0, 1, 1, 0, 9 },
    { "examples/lm.opt", "lm20_fmnist",                 1, 19, 19, 19,  9,  0, 2, 0, 1, 1, 0, 9 },
    /* DenseNet-BC-100: 48 bottleneck blocks, 2 transitions */
    { "examples/densenet.opt", "densenet_bc100_cifar",  1, 99, 99, 99,  0, 48, 0, 2, 1, 1, 0, 0 },
    { "examples/densenet.opt", "densenet_bc100_fmnist", 1, 99, 99, 99,  0, 48, 0, 2, 1, 1, 0, 0 },
    { "examples/theory.opt", "theory_gd_cifar",         1,  0,  0,  0, 10,  0, 0, 0, 0, 1, 10, 0 },
    { "examples/theory.opt", "theory_hb_fmnist",        1,  0,  0,  0, 10,  0, 0, 0, 0, 1, 10, 0 },
    { "examples/theory.opt", "theory_gd_fmnist",        1,  0,  0,  0, 10,  0, 0, 0, 0, 1, 10, 0 },
};

START_TEST(test_example_ops)
{
    const OpCounts *e = &expected[_i];
    Arena *a = arena_new();
    IrGraph *g = load_net(a, e->file, e->net, NULL, 0);
    check_invariants(g);
    ck_assert_str_eq(g->name, e->net);
    ck_assert_int_eq(count_op(g, OP_INPUT), e->input);
    ck_assert_int_eq(count_op(g, OP_CONV), e->conv);
    ck_assert_int_eq(count_op(g, OP_BN), e->bn);
    ck_assert_int_eq(count_op(g, OP_RELU), e->relu);
    ck_assert_int_eq(count_op(g, OP_SUM), e->sum);
    ck_assert_int_eq(count_op(g, OP_CONCAT), e->concat);
    ck_assert_int_eq(count_op(g, OP_PAD), e->pad);
    ck_assert_int_eq(count_op(g, OP_AVGPOOL), e->avgpool);
    ck_assert_int_eq(count_op(g, OP_GAP), e->gap);
    ck_assert_int_eq(count_op(g, OP_LINEAR), e->linear);
    ck_assert_int_eq(count_op(g, OP_EXACT), e->exact);
    ck_assert_int_eq(count_op(g, OP_GRAD), 0);
    ck_assert_int_eq(count_kind(g, PK_SCALAR), e->scalars);
    /* printers run and say something about every node */
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    ir_print(m, g);
    ir_dot(m, g);
    fclose(m);
    ck_assert(strstr(buf, "digraph") != NULL);
    ck_assert(strstr(buf, g->nodes[g->output].name) != NULL);
    free(buf);
    arena_free(a);
}
END_TEST

/* Every network of every example loads and unroll; names are unique
 * C identifiers across all files. */
START_TEST(test_examples_all)
{
    static const char *files[] = { "examples/resnet.opt", "examples/heavy_ball.opt", "examples/nesterov.opt",
                                   "examples/densenet.opt", "examples/momentum.opt", "examples/lm.opt",
                                   "examples/theory.opt" };
    char names[64][64];
    int nn = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        Arena *a = arena_new();
        int nerr = -1;
        Spec *s = fe_load(a, files[f], NULL, 0, stderr, &nerr);
        ck_assert_msg(s && nerr == 0, "%s", files[f]);
        bool cifar = false, fmnist = false;
        for (int i = 0; i < fe_network_count(s); i++) {
            const char *n = fe_network_name(s, i);
            for (int j = 0; j < nn; j++)
                ck_assert_msg(strcmp(names[j], n) != 0, "network %s defined twice", n);
            ck_assert(nn < 64 && strlen(n) < 64);
            strcpy(names[nn++], n);
            IrGraph *g = fe_unroll(a, s, n, stderr, &nerr);
            ck_assert(g != NULL);
            check_invariants(g);
            cifar |= g->input.c == 3 && g->input.h == 32 && g->input.w == 32;
            fmnist |= g->input.c == 1 && g->input.h == 28 && g->input.w == 28;
        }
        ck_assert_msg(cifar && fmnist, "%s needs a CIFAR and a Fashion-MNIST network", files[f]);
        arena_free(a);
    }
}
END_TEST

/* ---- published parameter counts ---------------------------------------- */

START_TEST(test_param_counts)
{
    Arena *a = arena_new();
    ck_assert_uint_eq(trainable(load_net(a, "examples/resnet.opt", "resnet20_cifar", NULL, 0)), 269722);
    ck_assert_uint_eq(trainable(load_net(a, "examples/resnet.opt", "resnet56_cifar", NULL, 0)), 853018);
    ck_assert_uint_eq(trainable(load_net(a, "examples/resnet.opt", "resnet110_cifar", NULL, 0)), 1727962);
    ck_assert_uint_eq(trainable(load_net(a, "examples/densenet.opt", "densenet_bc100_cifar", NULL, 0)), 769162);
    ck_assert_uint_eq(trainable(load_net(a, "examples/densenet.opt", "densenet_bc100_fmnist", NULL, 0)), 768730);
    /* the same optimizer as ResNet: heavy ball adds no weights */
    ck_assert_uint_eq(trainable(load_net(a, "examples/heavy_ball.opt", "hb20_cifar", NULL, 0)), 269722);
    /* ResNet-56 and -110 from ResNet-20 by -D */
    Define d56[] = { { "resnet20_cifar.stage1.steps", "9" }, { "resnet20_cifar.stage2.steps", "9" },
                     { "resnet20_cifar.stage3.steps", "9" } };
    ck_assert_uint_eq(trainable(load_net(a, "examples/resnet.opt", "resnet20_cifar", d56, 3)), 853018);
    Define d110[] = { { "stage1.steps", "18" }, { "stage2.steps", "18" }, { "stage3.steps", "18" } };
    ck_assert_uint_eq(trainable(load_net(a, "examples/resnet.opt", "resnet20_cifar", d110, 3)), 1727962);
    arena_free(a);
}
END_TEST

/* Parameter names, kinds and inits follow the brief's scheme. */
START_TEST(test_param_table)
{
    Arena *a = arena_new();
    IrGraph *g = load_net(a, "examples/resnet.opt", "resnet20_cifar", NULL, 0);
    static const struct { const char *name; IrParamKind kind; IrInit init; int fan_in; bool trainable; } want[] = {
        { "stem.conv0.weight", PK_WEIGHT, INIT_KAIMING, 27, true },
        { "stage1.step0.grad.bn0.weight", PK_BN_GAMMA, INIT_ONES, 0, true },
        { "stage1.step0.grad.bn0.bias", PK_BN_BETA, INIT_ZEROS, 0, true },
        { "stage1.step0.grad.bn0.running_mean", PK_BN_MEAN, INIT_ZEROS, 0, false },
        { "stage1.step0.grad.bn0.running_var", PK_BN_VAR, INIT_ONES, 0, false },
        { "stage2.step0.grad.conv0.weight", PK_WEIGHT, INIT_KAIMING, 144, true },
        { "stage3.step2.grad.conv1.weight", PK_WEIGHT, INIT_KAIMING, 576, true },
        { "head.linear.weight", PK_WEIGHT, INIT_UNIFORM, 64, true },
        { "head.linear.bias", PK_BIAS, INIT_UNIFORM, 64, true },
    };
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        int found = -1;
        for (int i = 0; i < g->nparams; i++)
            if (strcmp(g->params[i].name, want[w].name) == 0)
                found = i;
        ck_assert_msg(found >= 0, "no parameter %s", want[w].name);
        const IrParam *p = &g->params[found];
        ck_assert_int_eq(p->kind, want[w].kind);
        ck_assert_int_eq(p->init, want[w].init);
        ck_assert_int_eq(p->trainable, want[w].trainable);
        if (want[w].fan_in)
            ck_assert_int_eq(p->fan_in, want[w].fan_in);
    }
    const IrNode *c = find_node(g, "stage2.step0.grad.conv0");
    ck_assert(c != NULL);
    ck_assert_int_eq(c->u.conv.stride, 2);
    ck_assert_int_eq(c->shape.c, 32);
    ck_assert_int_eq(c->shape.h, 16);
    const IrNode *bn = find_node(g, "stage1.step0.grad.bn0");
    ck_assert_double_eq_tol(bn->u.bn.eps, 1e-5, 1e-12);
    ck_assert_double_eq_tol(bn->u.bn.momentum, 0.1, 1e-12);
    /* train block */
    ck_assert_int_eq(g->train.epochs, 30);
    ck_assert_int_eq(g->train.crop_pad, 4);
    ck_assert(g->train.flip);
    ck_assert_int_eq(g->train.schedule, SCHED_COSINE);
    arena_free(a);
}
END_TEST

/* ---- Nesterov ----------------------------------------------------------- */

START_TEST(test_nesterov_fista)
{
    Arena *a = arena_new();
    Define d[] = { { "nesterov20_cifar.stage1.steps", "40" } };
    IrGraph *g = load_net(a, "examples/nesterov.opt", "nesterov20_cifar", d, 1);
    double t[64];
    t[0] = 1;
    for (int k = 0; k < 50; k++)
        t[k + 1] = (1 + sqrt(1 + 4 * t[k] * t[k])) / 2;
    ck_assert(lookup_node(g, "stage1.y0") == NULL);   /* y[0] = x[0]: no node */
    for (int k = 1; k < 40; k++) {
        char name[32];
        snprintf(name, sizeof name, "stage1.y%d", k);
        const IrNode *y = find_node(g, name);
        double c = (t[k] - 1) / t[k + 1];
        ck_assert_int_eq(y->op, OP_SUM);
        ck_assert_int_eq(y->nin, 2);
        snprintf(name, sizeof name, "stage1.x%d", k);
        ck_assert_str_eq(g->nodes[y->in[0]].name, name);
        ck_assert_double_eq_tol(y->u.sum.coef[0].c0, 1 + c, 1e-12);
        ck_assert_double_eq_tol(y->u.sum.coef[1].c0, -c, 1e-12);
        ck_assert_int_eq(y->u.sum.coef[0].nterms, 0);
    }
    arena_free(a);
}
END_TEST

/* ---- -D ----------------------------------------------------------------- */

START_TEST(test_defines)
{
    Arena *a = arena_new();
    Define d1[] = { { "heavy_ball.beta", "0.5" } };
    IrGraph *g = load_net(a, "examples/heavy_ball.opt", "hb20_cifar", d1, 1);
    const IrNode *x2 = find_node(g, "stage1.x2");
    ck_assert(x2 && x2->nin == 3);
    ck_assert_double_eq_tol(x2->u.sum.coef[0].c0, 1.5, 1e-15);   /* x1 */
    ck_assert_double_eq_tol(x2->u.sum.coef[2].c0, -0.5, 1e-15);  /* x0 */
    /* learned by -D: one scalar per step */
    Define d2[] = { { "beta", "learned(0.25)" } };
    g = load_net(a, "examples/heavy_ball.opt", "hb20_cifar", d2, 1);
    ck_assert_int_eq(count_kind(g, PK_SCALAR), 9);
    for (int i = 0; i < g->nparams; i++)
        if (g->params[i].kind == PK_SCALAR) {
            ck_assert_int_eq(g->params[i].init, INIT_CONST);
            ck_assert_double_eq(g->params[i].init_value, 0.25);
        }
    x2 = find_node(g, "stage1.x2");
    ck_assert_int_eq(x2->u.sum.coef[0].nterms, 1);
    ck_assert_str_eq(g->params[x2->u.sum.coef[0].param[0]].name, "stage1.step1.beta");
    /* width by -D */
    Define d3[] = { { "resnet20_cifar.stage1.width", "32" } };
    g = load_net(a, "examples/resnet.opt", "resnet20_cifar", d3, 1);
    ck_assert_int_eq(find_node(g, "stage1.x3")->shape.c, 32);
    /* unused, malformed and out-of-range -D are errors */
    static const Define bad[][1] = { { { "nosuch", "1" } }, { { "heavy_ball.beta", "abc" } },
                                     { { "stage1.steps", "0" } }, { { "stage9.steps", "3" } },
                                     { { "hb20_cifar.stage1.steps", "2000000000" } } };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        int nerr = 0;
        Spec *s = fe_load(a, "examples/heavy_ball.opt", bad[i], 1, m, &nerr);
        fclose(m);
        ck_assert_msg(s == NULL && nerr > 0, "-D %s=%s accepted", bad[i][0].name, bad[i][0].value);
        ck_assert(strstr(buf, "<command line>: error:") != NULL);
        free(buf);
    }
    arena_free(a);
}
END_TEST

/* ---- golden diagnostics ------------------------------------------------- */

static char *slurp(const char *path)
{
    return fe_read_file(path, 1 << 24, NULL);
}

START_TEST(test_golden_diagnostics)
{
    DIR *dir = opendir("tests/bad");
    ck_assert_msg(dir != NULL, "run from the repository root");
    struct dirent *e;
    int nspecs = 0;
    while ((e = readdir(dir))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".opt") != 0)
            continue;
        char spec[512], err[512];
        snprintf(spec, sizeof spec, "tests/bad/%s", e->d_name);
        snprintf(err, sizeof err, "tests/bad/%.*s.err", (int)(l - 4), e->d_name);
        char *want = slurp(err);
        ck_assert_msg(want != NULL, "missing golden %s", err);
        char *got = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&got, &len);
        Arena *a = arena_new();
        int nerr = 0;
        Spec *s = fe_load(a, spec, NULL, 0, m, &nerr);
        fclose(m);
        ck_assert_msg(s == NULL && nerr > 0, "%s was accepted", spec);
        ck_assert_msg(strcmp(got, want) == 0, "%s: diagnostics differ\n--- got:\n%s--- want:\n%s", spec, got, want);
        free(got);
        free(want);
        arena_free(a);
        nspecs++;
    }
    closedir(dir);
    ck_assert_int_ge(nspecs, 30);
}
END_TEST

/* One run reports several errors (statement-level recovery). */
START_TEST(test_several_errors)
{
    static const char src[] =
        "optimizer a {\n  x[k+1] = x[k] + ;\n  y[k] = 1 +;\n}\n"
        "optimizer b {\n  x[k+1] = x[k] * x[k] + q;\n}\n";
    Arena *a = arena_new();
    int nerr = 0;
    ck_assert(fe_load_string(a, "s.opt", src, sizeof src - 1, NULL, 0, NULL, &nerr) == NULL);
    ck_assert_int_ge(nerr, 4);
    arena_free(a);
}
END_TEST

/* ---- hostile inputs ----------------------------------------------------- */

static int load_mem(const char *src, size_t len)
{
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load_string(a, "hostile.opt", src, len, NULL, 0, NULL, &nerr);
    ck_assert((s == NULL) == (nerr > 0));
    arena_free(a);
    return nerr;
}

START_TEST(test_hostile)
{
    size_t n = 400 * 1024;
    char *buf = malloc(n + 64);
    /* binary garbage (a fixed LCG: reproducible) */
    unsigned x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (char)(x >> 16);
    }
    ck_assert_int_gt(load_mem(buf, n), 0);
    /* empty */
    ck_assert_int_gt(load_mem("", 0), 0);
    /* 400 KB of nested parentheses, inside a statement and at top level */
    memcpy(buf, "optimizer a { x[k+1] = ", 23);
    memset(buf + 23, '(', n - 23);
    ck_assert_int_gt(load_mem(buf, n), 0);
    memset(buf, '(', n);
    ck_assert_int_gt(load_mem(buf, n), 0);
    memset(buf + 23, '-', n - 23);
    memcpy(buf, "optimizer a { x[k+1] = ", 23);
    ck_assert_int_gt(load_mem(buf, n), 0);
    /* a long flat sum: refused as too deep, not a stack overflow */
    size_t len = 0;
    len += (size_t)sprintf(buf, "optimizer a { x[k+1] = x[k]");
    while (len < n - 16)
        len += (size_t)sprintf(buf + len, " + x[k]");
    len += (size_t)sprintf(buf + len, "; }");
    ck_assert_int_gt(load_mem(buf, len), 0);
    /* the same through a call whose argument sits at the depth limit (a
     * call's depth is set by the grammar, after ast_expr's check) */
    for (int inner = 490; inner <= 510; inner++) {
        len = (size_t)sprintf(buf, "optimizer a { x[k+1] = x[k] - grad(x[k]");
        for (int i = 1; i < inner; i++)
            len += (size_t)sprintf(buf + len, " + x[k]");
        len += (size_t)sprintf(buf + len, ")");
        for (int i = 0; i < 1000; i++)
            len += (size_t)sprintf(buf + len, " + 0 * x[k]");
        len += (size_t)sprintf(buf + len, "; }");
        ck_assert_msg(load_mem(buf, len) > 0, "depth limit bypassed through a call (%d terms)", inner);
    }
    /* NUL bytes, huge numbers, 2e9 steps */
    static const char nul[] = "optimizer a\0 { x[k+1] = x[k] - grad(x[k]); }";
    ck_assert_int_gt(load_mem(nul, sizeof nul - 1), 0);
    static const char huge[] = "optimizer a(b = 1e400) { x[k+1] = x[k] - b * grad(x[k]); }";
    ck_assert_int_gt(load_mem(huge, sizeof huge - 1), 0);
    static const char steps[] =
        "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
        "network n { input 3x32x32; classes 10; grad = bn, relu, conv3x3;\n"
        "  stage gd steps 2000000000 width 16; head bn, relu, avgpool, linear; }\n";
    ck_assert_int_gt(load_mem(steps, sizeof steps - 1), 0);
    static const char wide[] =
        "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
        "network n { input 4096x4096x4096; classes 10; grad = bn, relu, conv3x3;\n"
        "  stage gd steps 2 width 65536; head bn, relu, avgpool, linear; }\n";
    ck_assert_int_gt(load_mem(wide, sizeof wide - 1), 0);
    free(buf);
}
END_TEST

/* CRLF line ends: accepted, and diagnostics show the line without '\r'. */
START_TEST(test_crlf)
{
    static const char ok[] = "optimizer gd {\r\n  x[k+1] = x[k] - grad(x[k]);\r\n}\r\n";
    ck_assert_int_eq(load_mem(ok, sizeof ok - 1), 0);
    static const char bad[] = "optimizer gd {\r\n  x[k+1] = x[k] * x[k];\r\n}\r\n";
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    Arena *a = arena_new();
    int nerr = 0;
    ck_assert(fe_load_string(a, "crlf.opt", bad, sizeof bad - 1, NULL, 0, m, &nerr) == NULL);
    fclose(m);
    ck_assert_str_eq(buf, "crlf.opt:2:12: error: product of two tensors is not linear\n"
                          "   x[k+1] = x[k] * x[k];\n"
                          "            ^~~~~~~~~~~\n");
    free(buf);
    arena_free(a);
}
END_TEST

/* Random byte edits of an example never crash the front end. */
START_TEST(test_mutations)
{
    char *src = slurp("examples/nesterov.opt");
    ck_assert(src != NULL);
    size_t len = strlen(src);
    char *m = malloc(len + 1);
    unsigned x = 777;
    int rounds = tu_sanitized() ? 100 : 400, rejected = 0;
    static const char alphabet[] = "x[]k+-*/=;,(){}0123456789.e grad concat";
    for (int r = 0; r < rounds; r++) {
        memcpy(m, src, len);
        for (int e = 0; e < 3; e++) {
            x = x * 1103515245u + 12345u;
            size_t at = (x >> 8) % len;
            x = x * 1103515245u + 12345u;
            m[at] = alphabet[(x >> 8) % (sizeof alphabet - 1)];
        }
        rejected += load_mem(m, len) > 0;
    }
    ck_assert_int_gt(rejected, 0);
    free(m);
    free(src);
}
END_TEST

/* ---- sharing, theory, optimizer alone ----------------------------------- */

START_TEST(test_shared_weights)
{
    static const char src[] =
        "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
        "network n { input 3x32x32; classes 10; stem conv3x3(16);\n"
        "  grad = bn, relu, conv3x3, bn, relu, conv3x3; share = stage;\n"
        "  stage gd steps 3 width 16; stage gd steps 3 width 32 stride 2;\n"
        "  head bn, relu, avgpool, linear; }\n";
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load_string(a, "shared.opt", src, sizeof src - 1, NULL, 0, stderr, &nerr);
    ck_assert(s != NULL);
    IrGraph *g = fe_unroll(a, s, NULL, stderr, &nerr);
    ck_assert(g != NULL);
    check_invariants(g);
    const IrNode *c0 = find_node(g, "stage1.step0.grad.conv1");
    const IrNode *c2 = find_node(g, "stage1.step2.grad.conv1");
    ck_assert_int_eq(c0->u.conv.w, c2->u.conv.w);
    /* the strided first step of stage 2 has its own block; steps 1.. share */
    const IrNode *s0 = find_node(g, "stage2.step0.grad.conv0");
    const IrNode *s1 = find_node(g, "stage2.step1.grad.conv0");
    const IrNode *s2 = find_node(g, "stage2.step2.grad.conv0");
    ck_assert_int_ne(s0->u.conv.w, s1->u.conv.w);
    ck_assert_int_eq(s1->u.conv.w, s2->u.conv.w);
    arena_free(a);
}
END_TEST

/* Parameter values are resolved once by sema: default, then the stage's
 * argument, then -D; unroll reads them per stage. */
START_TEST(test_stage_args)
{
    static const char src[] =
        "optimizer hb(beta = 0.9) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
        "network n { input 3x8x8; classes 10; stem conv3x3(4); grad = bn, relu, conv3x3;\n"
        "  stage hb(beta = 1 - 1 / 2) steps 3; stage hb steps 3; stage hb(beta = learned(0.3)) steps 2;\n"
        "  head gap, linear; }\n";
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load_string(a, "args.opt", src, sizeof src - 1, NULL, 0, stderr, &nerr);
    ck_assert(s != NULL);
    IrGraph *g = fe_unroll(a, s, NULL, stderr, &nerr);
    ck_assert(g != NULL);
    ck_assert_double_eq_tol(find_node(g, "stage1.x2")->u.sum.coef[0].c0, 1.5, 1e-15);
    ck_assert_double_eq_tol(find_node(g, "stage2.x2")->u.sum.coef[0].c0, 1.9, 1e-15);
    ck_assert_int_eq(find_node(g, "stage3.x2")->u.sum.coef[0].nterms, 1);
    ck_assert_int_eq(count_kind(g, PK_SCALAR), 2);
    /* -D overrides every use, stage arguments included */
    Define d[] = { { "hb.beta", "0.2" } };
    s = fe_load_string(a, "args.opt", src, sizeof src - 1, d, 1, stderr, &nerr);
    ck_assert(s != NULL);
    g = fe_unroll(a, s, NULL, stderr, &nerr);
    ck_assert(g != NULL);
    for (int st = 1; st <= 3; st++) {
        char nm[32];
        snprintf(nm, sizeof nm, "stage%d.x2", st);
        ck_assert_int_eq(find_node(g, nm)->u.sum.coef[0].nterms, 0);
        ck_assert_double_eq_tol(find_node(g, nm)->u.sum.coef[0].c0, 1.2, 1e-15);
    }
    ck_assert_int_eq(count_kind(g, PK_SCALAR), 0);
    double v = 0;
    bool learned = true;
    ck_assert_int_eq(fe_optimizer_param_count(s, 0), 1);
    ck_assert_str_eq(fe_optimizer_param(s, 0, 0, &v, &learned), "beta");
    ck_assert(v == 0.2 && !learned);
    Define dl[] = { { "beta", "learned(0.125)" } };
    s = fe_load_string(a, "args.opt", src, sizeof src - 1, dl, 1, stderr, &nerr);
    ck_assert(s != NULL);
    fe_optimizer_param(s, 0, 0, &v, &learned);
    ck_assert(v == 0.125 && learned);
    /* a bad stage argument is reported once, at load */
    static const char bad[] =
        "optimizer hb(beta = 0.9) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
        "network n { input 3x8x8; classes 10; stem conv3x3(4); grad = bn, relu, conv3x3;\n"
        "  stage hb(beta = 1 / 0) steps 3; head gap, linear; }\n";
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    ck_assert(fe_load_string(a, "bad.opt", bad, sizeof bad - 1, NULL, 0, m, &nerr) == NULL);
    fclose(m);
    ck_assert_int_eq(nerr, 1);
    ck_assert(strstr(buf, "division by zero") != NULL);
    free(buf);
    arena_free(a);
}
END_TEST

/* IrNode.stage/step agree with the names unroll gives (stageN.stepK...,
 * stageN.xJ made by step J-1; stem, trans and head outside the stages). */
START_TEST(test_stage_step_fields)
{
    static const char *const nets[][2] = { { "examples/heavy_ball.opt", "hb20_cifar" },
                                           { "examples/densenet.opt", NULL },
                                           { "examples/nesterov.opt", NULL } };
    for (size_t t = 0; t < sizeof nets / sizeof nets[0]; t++) {
        Arena *a = arena_new();
        IrGraph *g = load_net(a, nets[t][0], nets[t][1], NULL, 0);
        int nstage = 0, nstep = 0;
        for (int i = 0; i < g->nnodes; i++) {
            const IrNode *n = &g->nodes[i];
            int st = -1, sp = -1, j, len = 0;
            if (sscanf(n->name, "stage%d.step%d.%n", &st, &sp, &len) == 2 && len > 0) {
            } else if (sscanf(n->name, "stage%d.x%d%n", &st, &j, &len) == 2 && n->name[len] == 0) {
                sp = j - 1;
            } else if (sscanf(n->name, "stage%d.%n", &st, &len) == 1 && len > 0) {
                sp = n->step;       /* shortcuts, other sequences: the step that needed them */
            } else {
                st = -1;
            }
            ck_assert_msg(n->stage == st, "%s: stage %d, expected %d", n->name, n->stage, st);
            ck_assert_msg(n->step == sp, "%s: step %d, expected %d", n->name, n->step, sp);
            ck_assert(n->stage == -1 || n->step >= 0);
            nstage += n->stage > 0;
            nstep += n->step >= 0;
        }
        ck_assert_int_gt(nstage, 0);
        ck_assert_int_eq(nstep, nstage);
        ck_assert_int_eq(g->nodes[0].stage, -1);
        ck_assert_int_eq(g->nodes[g->output].stage, -1);
        /* dot --layers' clusters come from the fields */
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        ir_dot_layers(m, g);
        fclose(m);
        static const char *const cl[] = { "cluster_stem", "cluster_stage1", "cluster_stage2", "cluster_head" };
        for (size_t c = 0; c < sizeof cl / sizeof cl[0]; c++)
            ck_assert_msg(strstr(buf, cl[c]) != NULL, "%s: no %s", g->name, cl[c]);
        ck_assert(strstr(buf, "cluster_trans1") != NULL || t != 1);
        ck_assert(strstr(buf, "cluster_trans") == NULL || t == 1);
        free(buf);
        arena_free(a);
    }
    /* the optimizer alone: one stage, x0 outside it */
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load(a, "examples/heavy_ball.opt", NULL, 0, stderr, &nerr);
    IrGraph *g = fe_unroll_optimizer(a, s, "heavy_ball", 3, (IrShape){ 2, 1, 1 }, stderr, &nerr);
    ck_assert(g != NULL);
    ck_assert_int_eq(g->nodes[0].stage, -1);
    for (int i = 1; i < g->nnodes; i++) {
        ck_assert_int_eq(g->nodes[i].stage, 1);
        ck_assert(g->nodes[i].step >= 0 && g->nodes[i].step < 3);
    }
    ck_assert_int_eq(g->nodes[g->output].step, 2);
    arena_free(a);
}
END_TEST

/* The compiler's one file reader: whole file, NUL kept, errno on failure,
 * the size limit honoured; ir_op_name names every op; arena_printf. */
START_TEST(test_read_file_and_names)
{
    char path[] = "/tmp/optc-read-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    char data[10000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i % 251);
    ck_assert_int_eq(write(fd, data, sizeof data), (int)sizeof data);
    close(fd);
    size_t len = 0;
    char *b = fe_read_file(path, 1 << 20, &len);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(len, sizeof data);
    ck_assert(memcmp(b, data, sizeof data) == 0 && b[len] == 0);
    free(b);
    errno = 0;
    ck_assert_ptr_null(fe_read_file(path, 5000, &len));
    ck_assert_int_eq(errno, EFBIG);
    ck_assert_ptr_nonnull(b = fe_read_file(path, sizeof data, NULL));
    free(b);
    unlink(path);
    errno = 0;
    ck_assert_ptr_null(fe_read_file(path, 1 << 20, &len));
    ck_assert_int_eq(errno, ENOENT);
    for (int op = 0; op < OP_COUNT; op++)
        ck_assert(ir_op_name((IrOp)op)[0] != '?');
    ck_assert_str_eq(ir_op_name(OP_CONV), "conv");
    ck_assert_str_eq(ir_op_name(OP_COUNT), "?");
    /* arena_printf keeps the whole text, however long. */
    Arena *a = arena_new();
    ck_assert_str_eq(arena_printf(a, "stage%d.step%d", 2, 17), "stage2.step17");
    memset(data, 'x', 2999);
    data[2999] = 0;
    const char *longer = arena_printf(a, "%s.%s", data, "weight");
    ck_assert_uint_eq(strlen(longer), 3006);
    ck_assert_str_eq(longer + 2999, ".weight");
    arena_free(a);
}
END_TEST

START_TEST(test_theory_shared_u)
{
    Arena *a = arena_new();
    IrGraph *g = load_net(a, "examples/theory.opt", "theory_gd_cifar", NULL, 0);
    int u = -1;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == OP_EXACT) {
            if (u < 0)
                u = g->nodes[i].u.exact.u;
            ck_assert_int_eq(g->nodes[i].u.exact.u, u);
            ck_assert_str_eq(g->nodes[i].u.exact.phi, "relu");
        }
    ck_assert_int_eq(g->params[u].dims[0], 3 * 32 * 32);
    ck_assert_int_eq(g->params[u].dims[1], 256);
    arena_free(a);
}
END_TEST

START_TEST(test_unroll_optimizer)
{
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load(a, "examples/heavy_ball.opt", NULL, 0, stderr, &nerr);
    ck_assert(s != NULL);
    IrShape st = { 4, 1, 1 };
    IrGraph *g = fe_unroll_optimizer(a, s, "heavy_ball", 5, st, stderr, &nerr);
    ck_assert(g != NULL);
    ck_assert_int_eq(g->nodes[0].op, OP_INPUT);
    ck_assert_int_eq(count_op(g, OP_GRAD), 5);
    ck_assert_int_eq(count_op(g, OP_SUM), 5);
    ck_assert_int_eq(count_op(g, OP_CONV), 0);
    ck_assert_int_eq(g->nparams, 0);
    ck_assert_str_eq(g->nodes[g->output].name, "x5");
    s = fe_load(a, "examples/lm.opt", NULL, 0, stderr, &nerr);
    g = fe_unroll_optimizer(a, s, NULL, 3, st, stderr, &nerr);
    ck_assert(g != NULL);
    ck_assert_int_eq(count_kind(g, PK_SCALAR), 3);
    ck_assert(fe_unroll_optimizer(a, s, "nosuch", 3, st, NULL, &nerr) == NULL);
    ck_assert(fe_unroll_optimizer(a, s, NULL, 0, st, NULL, &nerr) == NULL);
    arena_free(a);
}
END_TEST

static Suite *frontend_suite(void)
{
    Suite *s = suite_create("frontend");
    TCase *tc = tcase_create("examples");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_example_ops, 0, (int)(sizeof expected / sizeof expected[0]));
    tcase_add_test(tc, test_examples_all);
    tcase_add_test(tc, test_param_counts);
    tcase_add_test(tc, test_param_table);
    tcase_add_test(tc, test_nesterov_fista);
    tcase_add_test(tc, test_defines);
    tcase_add_test(tc, test_shared_weights);
    tcase_add_test(tc, test_stage_args);
    tcase_add_test(tc, test_stage_step_fields);
    tcase_add_test(tc, test_read_file_and_names);
    tcase_add_test(tc, test_theory_shared_u);
    tcase_add_test(tc, test_unroll_optimizer);
    suite_add_tcase(s, tc);
    tc = tcase_create("diagnostics");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_golden_diagnostics);
    tcase_add_test(tc, test_several_errors);
    tcase_add_test(tc, test_hostile);
    tcase_add_test(tc, test_mutations);
    tcase_add_test(tc, test_crlf);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(frontend_suite)
