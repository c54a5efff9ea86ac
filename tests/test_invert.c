/* test_invert.c — the invertibility analysis (compiler/invert.c): heavy
 * ball, velocity momentum, a learned beta and a three-term rule are
 * invertible with the right inverse; gradient descent, concat, beta = 0 and
 * a strided first step are refused with their reason; the --explain report
 * of examples/heavy_ball.opt. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "invert.h"
#include "tmain.h"
#include "cgutil.h"

/* A network body around optimizer OPT: stage 1 keeps the shape, stage 2
 * strides. */
#define NET(name, opt, steps)                                                   \
    "network " name " {\n"                                                      \
    "    input 1x8x8;\n    classes 10;\n    stem conv3x3(4);\n"                 \
    "    grad = bn, relu, conv3x3, bn, relu, conv3x3;\n"                        \
    "    stage " opt " steps " steps " width 4;\n"                              \
    "    stage " opt " steps " steps " width 8 stride 2;\n"                     \
    "    shortcut = pad;\n    head bn, relu, avgpool, linear;\n}\n"

static const char spec_src[] =
    "optimizer hb(beta = 0.9) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
    "optimizer mom(g = 0.9) { v[0] = 0; v[k+1] = g * v[k] - (1 - g) * grad(x[k]); x[k+1] = x[k] + v[k+1]; }\n"
    "optimizer lm(beta = learned(0.0)) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
    "optimizer three(a = 0.5, b = 0.25) {\n"
    "    x[k+1] = x[k] - grad(x[k]) + a * (x[k] - x[k-1]) + b * (x[k-1] - x[k-2]);\n}\n"
    "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
    "optimizer dense { x[k+1] = concat(x[k], grad(x[k])); }\n"
    NET("net_hb", "hb", "4") NET("net_mom", "mom", "4") NET("net_lm", "lm", "4")
    NET("net_three", "three", "5") NET("net_gd", "gd", "4")
    "network net_dense {\n    input 1x8x8;\n    classes 10;\n    stem conv3x3(4);\n"
    "    grad = bn, relu, conv3x3(2);\n    stage dense steps 3;\n"
    "    head bn, relu, avgpool, linear;\n}\n";

typedef struct {
    Arena *a;
    Spec *s;
    InvReport *r;
} Fix;

static Fix load(const char *net, const char *define)
{
    Fix f = { arena_new(), NULL, NULL };
    Define d[1];
    int nd = 0, nerr = 0;
    if (define) {
        static char buf[128];
        snprintf(buf, sizeof buf, "%s", define);
        char *eq = strchr(buf, '=');
        ck_assert_ptr_nonnull(eq);
        *eq = 0;
        d[nd++] = (Define){ buf, eq + 1 };
    }
    f.s = fe_load_string(f.a, "invert.opt", spec_src, sizeof spec_src - 1, d, nd, stderr, &nerr);
    ck_assert_msg(f.s != NULL, "spec did not load (%d errors)", nerr);
    IrGraph *g = fe_unroll(f.a, f.s, net, stderr, &nerr);
    ck_assert_ptr_nonnull(g);
    f.r = inv_analyze(f.a, f.s, g);
    ck_assert_ptr_nonnull(f.r);
    return f;
}

static void contains(const char *hay, const char *needle)
{
    ck_assert_msg(hay && strstr(hay, needle), "'%s' not in '%s'", needle, hay ? hay : "(null)");
}

START_TEST(heavy_ball)
{
    Fix f = load("net_hb", NULL);
    const InvStage *st = &f.r->stages[0];
    ck_assert_int_eq(st->v, INV_YES);
    ck_assert_int_eq(st->rule->n, 1);
    ck_assert_str_eq(st->rule->formula[0], "x[k-1] = ((1 + beta) * x[k] - grad(x[k]) - x[k+1]) / beta");
    ck_assert_str_eq(st->rule->divisor[0], "beta");
    /* Steps 0 and 1 would only give back x[0]; steps 2-3 are inverted. */
    ck_assert_int_eq(st->nruns, 2);
    ck_assert_int_eq(st->runs[0].v, INV_SKIP);
    ck_assert_int_eq(st->runs[0].last, 1);
    ck_assert_int_eq(st->runs[1].v, INV_YES);
    ck_assert_int_eq(st->runs[1].first, 2);
    ck_assert_int_eq(st->runs[1].last, 3);
    contains(st->kept, "x[4], x[3]");
    ck_assert(st->free < st->stored);
    ck_assert(f.r->free < f.r->stored);
    arena_free(f.a);
}
END_TEST

START_TEST(velocity_momentum)
{
    Fix f = load("net_mom", NULL);
    const InvStage *st = &f.r->stages[0];
    ck_assert_int_eq(st->v, INV_YES);
    ck_assert_int_eq(st->rule->n, 2);
    /* x first (it reads only what is known), then v, whose grad reads x[k]. */
    ck_assert_str_eq(st->rule->formula[0], "x[k] = x[k+1] - v[k+1]");
    ck_assert_str_eq(st->rule->formula[1], "v[k] = (v[k+1] + (1 - g) * grad(x[k])) / g");
    ck_assert_ptr_null(st->rule->divisor[0]);
    ck_assert_int_eq(st->runs[0].v, INV_SKIP);
    ck_assert_int_eq(st->runs[1].v, INV_YES);
    ck_assert_int_eq(st->runs[1].first, 1);
    contains(st->kept, "v[4], x[4]");
    arena_free(f.a);
}
END_TEST

START_TEST(learned_beta)
{
    Fix f = load("net_lm", NULL);
    const InvStage *st = &f.r->stages[0];
    ck_assert_int_eq(st->v, INV_COND);
    contains(st->why, "while beta != 0");
    contains(st->why, "starts at 0");
    ck_assert_str_eq(st->rule->formula[0], "x[k-1] = ((1 + beta) * x[k] - grad(x[k]) - x[k+1]) / beta");
    arena_free(f.a);
    /* Started away from zero, still conditional, without the warning. */
    f = load("net_lm", "lm.beta=learned(0.5)");
    ck_assert_int_eq(f.r->stages[0].v, INV_COND);
    ck_assert_ptr_null(strstr(f.r->stages[0].why, "starts at 0"));
    arena_free(f.a);
}
END_TEST

START_TEST(three_term)
{
    Fix f = load("net_three", NULL);
    const InvStage *st = &f.r->stages[0];
    ck_assert_int_eq(st->v, INV_YES);
    ck_assert_str_eq(st->rule->unknown[0], "x[k-2]");
    ck_assert_str_eq(st->rule->formula[0],
                     "x[k-2] = ((1 + a) * x[k] - grad(x[k]) - (a - b) * x[k-1] - x[k+1]) / b");
    /* x[k-2] is after x[0] from step 3 on. */
    ck_assert_int_eq(st->runs[0].v, INV_SKIP);
    ck_assert_int_eq(st->runs[0].last, 2);
    ck_assert_int_eq(st->runs[1].v, INV_YES);
    contains(st->kept, "x[5], x[4], x[3]");
    arena_free(f.a);
    /* b = 0 leaves a heavy ball, which this rule's oldest state no longer reaches. */
    f = load("net_three", "three.b=0");
    ck_assert_int_eq(f.r->stages[0].v, INV_NO);
    contains(f.r->stages[0].why, "coefficient b is 0");
    arena_free(f.a);
}
END_TEST

START_TEST(gradient_descent_refused)
{
    Fix f = load("net_gd", NULL);
    const InvStage *st = &f.r->stages[0];
    ck_assert_int_eq(st->v, INV_NO);
    ck_assert(!st->rule->invertible);
    contains(st->why, "grad(x[k]) reads x[k]");
    contains(st->why, "x[k] = x[k+1] + grad(x[k])");
    contains(st->why, "fixed-point");
    ck_assert(st->free == st->stored);
    arena_free(f.a);
}
END_TEST

START_TEST(concat_refused)
{
    Fix f = load("net_dense", NULL);
    const InvStage *st = &f.r->stages[0];
    ck_assert_int_eq(st->v, INV_NO);
    contains(st->why, "concat");
    ck_assert_int_eq(st->nruns, 1);
    ck_assert_int_eq(st->runs[0].v, INV_NO);
    ck_assert(f.r->free == f.r->stored);
    arena_free(f.a);
}
END_TEST

START_TEST(beta_zero_refused)
{
    Fix f = load("net_hb", "hb.beta=0");
    for (int i = 0; i < 2; i++) {
        const InvStage *st = &f.r->stages[i];
        ck_assert_int_eq(st->v, INV_NO);
        contains(st->why, "x[k-1]'s coefficient beta is 0");
        ck_assert(st->free == st->stored);
    }
    arena_free(f.a);
}
END_TEST

START_TEST(strided_first_step)
{
    Fix f = load("net_hb", NULL);
    const InvStage *st = &f.r->stages[1];
    /* The stage is invertible; its first step is not: the build recomputes
     * its grad block from x[0] and keeps only its shortcut. */
    ck_assert_int_eq(st->v, INV_YES);
    ck_assert_int_eq(st->runs[0].first, 0);
    ck_assert_int_eq(st->runs[0].last, 0);
    ck_assert_int_eq(st->runs[0].v, INV_NO);
    contains(st->runs[0].why, "changes the shape");
    contains(st->kept, "step 0's shortcut (its grad block is recomputed from x[0])");
    /* Stage 1 does not stride: its step 0 only has nothing to recover. */
    ck_assert_int_eq(f.r->stages[0].runs[0].v, INV_SKIP);
    arena_free(f.a);
}
END_TEST

START_TEST(rule_alone)
{
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load_string(a, "invert.opt", spec_src, sizeof spec_src - 1, NULL, 0, stderr, &nerr);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_null(inv_rule(a, s, "nope"));
    InvRule *r = inv_rule(a, s, "gd");
    ck_assert(!r->invertible);
    r = inv_rule(a, s, "dense");
    ck_assert(!r->invertible);
    contains(r->why, "concat");
    r = inv_rule(a, s, "mom");
    ck_assert(r->invertible);
    ck_assert_str_eq(r->unknown[1], "v[k]");
    arena_free(a);
}
END_TEST

/* A chain of sequences defined at k, each reading the previous twice, is
 * refused quickly instead of being substituted 2^40 times. */
START_TEST(substitution_chain_bounded)
{
    static char src[8192];
    size_t n = 0;
    n += (size_t)snprintf(src + n, sizeof src - n, "optimizer ch {\n    y0[k] = x[k] + x[k-1];\n");
    for (int i = 1; i < 40; i++)
        n += (size_t)snprintf(src + n, sizeof src - n, "    y%d[k] = y%d[k] + 0.5 * y%d[k];\n", i, i - 1, i - 1);
    n += (size_t)snprintf(src + n, sizeof src - n,
                          "    x[k+1] = x[k] - grad(x[k]) + 0.1 * y39[k];\n}\n");
    ck_assert(n < sizeof src);
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load_string(a, "chain.opt", src, n, NULL, 0, stderr, &nerr);
    ck_assert_ptr_nonnull(s);
    InvRule *r = inv_rule(a, s, "ch");
    ck_assert(!r->invertible);
    contains(r->why, "too many substitutions");
    arena_free(a);
}
END_TEST

/* optc check --explain examples/heavy_ball.opt -n hb20_fmnist, as printed. */
START_TEST(explain_heavy_ball)
{
    Arena *a = arena_new();
    int nerr = 0;
    Spec *s = fe_load(a, "examples/heavy_ball.opt", NULL, 0, stderr, &nerr);
    if (!s) {
        arena_free(a);
        TEST_SKIP("examples/heavy_ball.opt not found (run from the project root)");
    }
    IrGraph *g = fe_unroll(a, s, "hb20_fmnist", stderr, &nerr);
    ck_assert_ptr_nonnull(g);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(out);
    inv_print(out, inv_analyze(a, s, g));
    fclose(out);
    contains(buf, "network hb20_fmnist\n");
    contains(buf, "  stage 1: heavy_ball(beta = 0.9), 3 steps: invertible\n"
                  "    x[k-1] = ((1 + beta) * x[k] - grad(x[k]) - x[k+1]) / beta\n");
    contains(buf, "    step 2: invertible\n");
    contains(buf, "    step 0: not invertible: it changes the shape");
    contains(buf, "memory-free keeps: x[3], x[2] (the last states)");
    /* stage 1 of hb20_fmnist: 4 saved 16x28x28 tensors per step stored
     * (its output x, relu0, conv0, relu1); memory-free: x[3], x[2], the
     * state being rebuilt and one step's other 3 (75264), and x[1]'s
     * correction: 12544 one-byte codes (3136 floats) and an escape list of
     * 2% / 0.9 of its elements (279). */
    contains(buf, "activations per image: stored 150528 floats (588.0 KiB), memory-free 78679 floats");
    contains(buf, "whole network, activations per image");
    free(buf);
    arena_free(a);
}
END_TEST

/* The flag on optc's command line: status, stdout, and its misuses. */
START_TEST(explain_flag)
{
    char *out;
    if (access("examples/heavy_ball.opt", R_OK) != 0)
        TEST_SKIP("examples/heavy_ball.opt not found (run from the project root)");
    ck_assert_int_eq(optc_status("check --explain examples/heavy_ball.opt -n hb20_fmnist", &out), 0);
    contains(out, "network hb20_fmnist\n");
    contains(out, "x[k-1] = ((1 + beta) * x[k] - grad(x[k]) - x[k+1]) / beta");
    ck_assert_ptr_null(strstr(out, "hb20_cifar"));
    free(out);
    ck_assert_int_eq(optc_status("check --explain examples/resnet.opt -n resnet20_fmnist", &out), 0);
    contains(out, "fixed-point");
    free(out);
    ck_assert_int_eq(optc_status("check --explain examples/heavy_ball.opt -n nope", &out), 1);
    contains(out, "no network named 'nope'");
    free(out);
    ck_assert_int_eq(optc_status("check examples/heavy_ball.opt -n hb20_fmnist", &out), 2);
    free(out);
    ck_assert_int_eq(optc_status("check --help", &out), 0);
    contains(out, "--explain");
    free(out);
}
END_TEST

static Suite *invert_suite(void)
{
    Suite *s = suite_create("invert");
    TCase *tc = tcase_create("invert");
    tcase_add_test(tc, heavy_ball);
    tcase_add_test(tc, velocity_momentum);
    tcase_add_test(tc, learned_beta);
    tcase_add_test(tc, three_term);
    tcase_add_test(tc, gradient_descent_refused);
    tcase_add_test(tc, concat_refused);
    tcase_add_test(tc, beta_zero_refused);
    tcase_add_test(tc, strided_first_step);
    tcase_add_test(tc, rule_alone);
    tcase_add_test(tc, substitution_chain_bounded);
    tcase_add_test(tc, explain_heavy_ball);
    tcase_add_test(tc, explain_flag);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(invert_suite)
