/* test_codegen.c — the whole compiler end to end: the example specs go
 * through $OPTC_BUILD/optc build and are checked for the published
 * parameter counts, gradcheck and falling training loss; the theory block is
 * compared with an independent run of the optimizers. The planner, the
 * emitter on hand-built graphs and the command line have suites of their
 * own (test_plan, test_emit, test_cli). Run from the project root. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actref.h"
#include "frontend.h"
#include "rt.h"
#include "plan.h"
#include "tmain.h"
#include "cgutil.h"

/* --- the theory block against an independent optimizer run ------------- */

typedef enum { TH_GD, TH_HB, TH_NAG } ThKind;

/* The activation of the exact block under test: act.def's lines. */
static const struct { const char *name; double a; } th_acts[] = {
#define ACT(name, NAME, arg, def, k, kink) { #name, def },
#include "act.def"
#undef ACT
};
#define TH_NACTS ((int)(sizeof th_acts / sizeof th_acts[0]))
static int th_act;

/* grad f(z) = z - U phi(U^T z), U[d][m] row-major, phi = th_acts[th_act]. */
static void th_grad(double *g, const double *z, const double *U, int d, int m)
{
    double *a = calloc((size_t)m, sizeof *a);
    ck_assert_ptr_nonnull(a);
    for (int j = 0; j < m; j++) {
        double s = 0;
        for (int i = 0; i < d; i++)
            s += z[i] * U[(size_t)i * m + j];
        a[j] = actref_phi(th_acts[th_act].name, s, th_acts[th_act].a);
        ck_assert(!isnan(a[j]));
    }
    for (int i = 0; i < d; i++) {
        double s = 0;
        for (int j = 0; j < m; j++)
            s += U[(size_t)i * m + j] * a[j];
        g[i] = z[i] - s;
    }
    free(a);
}

/* The points where the optimizer evaluates grad, steps of them, from x0:
 * x[k] for gradient descent and heavy ball, y[k] for Nesterov (FISTA t). */
static double *th_reference(ThKind kind, double beta, const double *x0, const double *U, int d,
                            int m, int steps)
{
    double *pts = calloc((size_t)steps * d, sizeof *pts);
    double *x = malloc((size_t)d * sizeof *x), *xp = malloc((size_t)d * sizeof *xp);
    double *y = malloc((size_t)d * sizeof *y), *g = malloc((size_t)d * sizeof *g);
    ck_assert(pts && x && xp && y && g);
    memcpy(x, x0, (size_t)d * sizeof *x);
    memcpy(xp, x0, (size_t)d * sizeof *x);     /* x[-1] = x[0] */
    double t = 1;
    for (int k = 0; k < steps; k++) {
        double c = 0;
        if (kind == TH_HB)
            c = beta;
        if (kind == TH_NAG) {
            double tn = (1 + sqrt(1 + 4 * t * t)) / 2;
            c = (t - 1) / tn;
            t = tn;
        }
        /* y = x + c (x - x_prev); heavy ball evaluates at x but adds the
         * same momentum term after the gradient step. */
        for (int i = 0; i < d; i++)
            y[i] = x[i] + c * (x[i] - xp[i]);
        const double *at = kind == TH_NAG ? y : x;
        memcpy(pts + (size_t)k * d, at, (size_t)d * sizeof *at);
        th_grad(g, at, U, d, m);
        memcpy(xp, x, (size_t)d * sizeof *x);
        for (int i = 0; i < d; i++)
            x[i] = y[i] - g[i];
    }
    free(x);
    free(xp);
    free(y);
    free(g);
    return pts;
}

/* The element offset of node j's output in the arena at batch 1, or -1 for
 * the input. */
static long th_offset(const Plan *p, int j)
{
    if (j == 0)
        return -1;
    const PlanBuf *b = &p->bufs[p->nodes[j].out];
    return b->size_a ? (long)b->off_a : (long)(p->arena_a + b->off_b);
}

/* Build network net of spec src through the emitter, run its double
 * forward pass on one image with a chosen U, and compare every exact
 * node's input (the optimizer's evaluation point at that step) with an
 * independent run from the first one. */
static void th_check(const char *src, const char *net, ThKind kind, double beta)
{
    Arena *a = arena_new();
    int nerr = 0;
    Spec *sp = fe_load_string(a, "theory_test.opt", src, strlen(src), NULL, 0, stderr, &nerr);
    ck_assert_msg(sp != NULL && nerr == 0, "spec does not load");
    IrGraph *g = fe_unroll(a, sp, net, stderr, &nerr);
    ck_assert_ptr_nonnull(g);
    int ex[64], nex = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == OP_EXACT) {
            ck_assert_int_lt(nex, 64);
            ex[nex++] = i;
        }
    ck_assert_int_ge(nex, 3);
    const IrNode *e0 = &g->nodes[ex[0]];
    IrShape is = g->nodes[e0->in[0]].shape;
    int d = is.c * is.h * is.w, m = e0->u.exact.m, u = e0->u.exact.u;
    for (int k = 1; k < nex; k++)
        ck_assert_int_eq(g->nodes[ex[k]].u.exact.u, u);     /* one shared U */

    Plan *p = plan_build(g, stderr);
    ck_assert_ptr_nonnull(p);
    char *dir = tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/net.c", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    EmitInfo info = { .command = "optc emit theory_test.opt", .spec_path = "theory_test.opt",
                      .spec_text = src, .spec_len = strlen(src) };
    ck_assert_int_eq(emit_c(f, g, p, &info, stderr), 0);
    fclose(f);

    /* U: fixed pseudo-random entries scaled so the iteration stays tame. */
    double *U = malloc((size_t)d * m * sizeof *U);
    ck_assert_ptr_nonnull(U);
    uint64_t st = 88172645463325252ULL;
    for (size_t i = 0; i < (size_t)d * m; i++) {
        st ^= st << 13; st ^= st >> 7; st ^= st << 17;
        U[i] = ((double)(st >> 11) / 9007199254740992.0 - 0.5) * 2.0 / sqrt((double)d);
    }
    snprintf(path, sizeof path, "%s/harness.c", dir);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "int optc_generated_main(int argc, char **argv);\n#define main optc_generated_main\n"
               "#include \"net.c\"\n#undef main\n#include <stdio.h>\n#include <stdlib.h>\n");
    fprintf(f, "static const double U0[%zu] = {\n", (size_t)d * m);
    for (size_t i = 0; i < (size_t)d * m; i++)
        fprintf(f, "%.17g,\n", U[i]);
    fprintf(f, "};\nstatic const long at[%d] = {", nex);
    for (int k = 0; k < nex; k++)
        fprintf(f, "%ld, ", th_offset(p, g->nodes[ex[k]].in[0]));
    fprintf(f, "};\nint main(void)\n{\n    RtModel fm;\n    RtModelD dm;\n    RtErr err;\n"
               "    if (rt_model_init(&fm, &net, 1, 1, 5, &err) || "
               "rt_model_init_d(&dm, &net, 1, 1, &err)) {\n"
               "        fprintf(stderr, \"%%s\\n\", err.msg);\n        return 1;\n    }\n"
               "    for (size_t i = 0; i < net.nparams; i++)\n"
               "        dm.params[i] = (double)fm.params[i];\n"
               "    for (size_t i = 0; i < net.nbuffers; i++)\n"
               "        dm.buffers[i] = (double)fm.buffers[i];\n"
               "    for (size_t i = 0; i < %zu; i++)\n        dm.params[%zu + i] = U0[i];\n"
               "    for (size_t i = 0; i < (size_t)(net.in_c * net.in_h * net.in_w); i++)\n"
               "        dm.input[i] = (double)((i * 37) %% 17) / 8.0 - 1.0;\n"
               "    forward_d(&dm, 1, 0);\n"
               "    for (int k = 0; k < %d; k++) {\n"
               "        const double *x = at[k] < 0 ? dm.input : dm.acts + at[k];\n"
               "        for (int i = 0; i < %d; i++)\n"
               "            printf(\"%%.17g\\n\", x[i]);\n    }\n"
               "    rt_model_free(&fm);\n    rt_model_free_d(&dm);\n    return 0;\n}\n",
            (size_t)d * m, p->param_off[u], nex, d);
    ck_assert_int_eq(fclose(f), 0);
    char exe[512], *log = NULL;
    snprintf(exe, sizeof exe, "%s/harness", dir);
    int rc = compile(path, exe, &log);
    ck_assert_msg(rc == 0, "harness does not compile:\n%s", tail(log));
    free(log);
    char *out = NULL;
    rc = run(exe, &out);
    ck_assert_msg(rc == 0, "harness failed:\n%s", tail(out));

    double *got = malloc((size_t)nex * d * sizeof *got);
    ck_assert_ptr_nonnull(got);
    char *s = out;
    for (size_t i = 0; i < (size_t)nex * d; i++) {
        char *end;
        got[i] = strtod(s, &end);
        ck_assert_msg(end != s, "harness output too short");
        s = end;
    }
    double *want = th_reference(kind, beta, got, U, d, m, nex);
    for (int k = 0; k < nex; k++) {
        double num = 0, den = 0;
        for (int i = 0; i < d; i++) {
            double df = got[(size_t)k * d + i] - want[(size_t)k * d + i];
            num += df * df;
            den += want[(size_t)k * d + i] * want[(size_t)k * d + i];
        }
        double rel = sqrt(num) / (sqrt(den) + 1e-300);
        ck_assert_msg(rel <= 1e-5, "%s step %d: relative error %g", net, k, rel);
    }
    /* The iteration must actually move, or the comparison proves little. */
    double moved = 0;
    for (int i = 0; i < d; i++)
        moved += fabs(want[(size_t)(nex - 1) * d + i] - want[i]);
    ck_assert(moved > 1e-3);
    free(want);
    free(got);
    free(out);
    free(U);
    plan_free(p);
    rmtree(dir);
    free(dir);
    arena_free(a);
}

/* @: the activation. */
static const char theory_spec[] =
    "optimizer gd { x[k+1] = x[k] - grad(x[k]); }\n"
    "optimizer hb(beta = 0.5) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
    "optimizer nag {\n"
    "    t[0] = 1;\n"
    "    t[k+1] = (1 + sqrt(1 + 4 * t[k] * t[k])) / 2;\n"
    "    y[k] = x[k] + (t[k] - 1) / t[k+1] * (x[k] - x[k-1]);\n"
    "    x[k+1] = y[k] - grad(y[k]);\n"
    "}\n"
    "network th_gd { input 2x3x3; classes 3; stem none; grad = exact(@, 7);\n"
    "    stage gd steps 6; head linear; }\n"
    "network th_hb { input 2x3x3; classes 3; stem none; grad = exact(@, 7);\n"
    "    stage hb steps 6; head linear; }\n"
    "network th_nag { input 2x3x3; classes 3; stem none; grad = exact(@, 7);\n"
    "    stage nag steps 6; head linear; }\n";

/* Loop index: activation _i / 3 of act.def, optimizer _i % 3. */
START_TEST(test_theory)
{
    static const char *const nets[] = { "th_gd", "th_hb", "th_nag" };
    static const ThKind kinds[] = { TH_GD, TH_HB, TH_NAG };
    char src[sizeof theory_spec + 64];
    th_act = _i / 3;
    size_t n = 0;
    for (const char *c = theory_spec; *c && n + 20 < sizeof src; c++)
        n += (size_t)snprintf(src + n, sizeof src - n, "%s", *c == '@' ? th_acts[th_act].name : (char[]){ *c, 0 });
    th_check(src, nets[_i % 3], kinds[_i % 3], 0.5);
}
END_TEST

/* --- optc dot: the optimizer view ------------------------------------------- */

/* Heavy ball drawn as its optimizer: each grad block one node, the sums with
 * their coefficients, the skip from two steps back dashed; --layers keeps
 * every op. */
START_TEST(test_dot_optimizer)
{
    static const char src[] =
        "optimizer hb(beta = 0.9) { x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]); }\n"
        "network n { input 1x8x8; classes 2; stem conv3x3(4); grad = bn, relu, conv3x3;\n"
        "    stage hb steps 3; head bn, relu, avgpool, linear; }\n";
    Arena *a = arena_new();
    int nerr = 0;
    Spec *sp = fe_load_string(a, "dot.opt", src, strlen(src), NULL, 0, stderr, &nerr);
    ck_assert_ptr_nonnull(sp);
    IrGraph *g = fe_unroll(a, sp, "n", stderr, &nerr);
    ck_assert_ptr_nonnull(g);
    char *buf = NULL, *all = NULL;
    size_t len = 0, alen = 0;
    FILE *m = open_memstream(&buf, &len);
    ir_dot(m, g);
    fclose(m);
    m = open_memstream(&all, &alen);
    ir_dot_layers(m, g);
    fclose(m);
    /* One node per grad block, none per layer inside it. */
    ck_assert_ptr_nonnull(strstr(buf, "label=\"stage1.step2.grad\\nbn relu conv\\n4x8x8\""));
    ck_assert_ptr_null(strstr(buf, "stage1.step0.grad.conv0"));
    ck_assert_ptr_nonnull(strstr(all, "stage1.step0.grad.conv0"));
    /* x3 = 1.9 x2 - g2 - 0.9 x1: coefficients in their shortest form, the
     * older state's edge dashed. */
    ck_assert_ptr_nonnull(strstr(buf, "[label=\"1.9\"]"));
    ck_assert_ptr_nonnull(strstr(buf, "[label=\"-0.9\", style=dashed"));
    ck_assert_ptr_null(strstr(buf, "1.8999"));
    int edges = 0;
    for (const char *c = buf; (c = strstr(c, " -> ")); c++)
        edges++;
    /* input->stem, stem->head... : 1 + 3 steps x (state->grad, 2 or 3 sum
     * edges) + head: far fewer than the layer graph's. */
    ck_assert_int_eq(edges, 1 + (1 + 2) + (1 + 3) + (1 + 3) + 1);
    free(buf);
    free(all);
    arena_free(a);
}
END_TEST

/* The published parameter counts, as the emitted program records them
 * (.nparams is what `./net info` prints). */
static const struct { const char *spec, *net; size_t params; } counts[] = {
    { "examples/resnet.opt", "resnet20_cifar", 269722 },
    { "examples/resnet.opt", "resnet56_cifar", 853018 },
    { "examples/resnet.opt", "resnet110_cifar", 1727962 },
    { "examples/densenet.opt", "densenet_bc100_cifar", 769162 },
    { "examples/densenet.opt", "densenet_bc100_fmnist", 768730 },
};

START_TEST(test_published_counts)
{
    char args[256], want[64], *out = NULL;
    snprintf(args, sizeof args, "emit %s -n %s", counts[_i].spec, counts[_i].net);
    optc_ok(args, &out);
    snprintf(want, sizeof want, "\n    .nparams = %zu,", counts[_i].params);
    ck_assert_msg(strstr(out, want) != NULL, "%s: want %zu parameters", counts[_i].net,
                  counts[_i].params);
    ck_assert_ptr_null(strstr(out, "malloc"));
    free(out);
}
END_TEST

/* One program built and asked: ResNet-20 reports 269,722 parameters. */
START_TEST(test_info_resnet20)
{
    if (tu_sanitized())
        TEST_SKIP("a ResNet-20 build under the sanitizers takes too long");
    char *dir = tmpdir(), args[512], cmd[512], *out = NULL;
    snprintf(args, sizeof args, "build examples/resnet.opt -n resnet20_cifar -o %s/r20", dir);
    optc_ok(args, NULL);
    snprintf(cmd, sizeof cmd, "%s/r20 info --json", dir);
    ck_assert_int_eq(run(cmd, &out), 0);
    ck_assert_msg(strstr(out, "\"params\":269722,") != NULL, "%s", tail(out));
    free(out);
    rmtree(dir);
    free(dir);
}
END_TEST

/* The part of an emitted file that defines the computation: tensor table,
 * sizes, forward and backward (not the provenance or the train defaults). */
/* The code of an emitted network that does not depend on its name and
 * spec: the tensor table up to the RtNet, and the passes after it, with
 * comments removed (they name where coefficients come from: "1 + beta"). */
static char *emitted_core(const char *args)
{
    char *out = NULL;
    optc_ok(args, &out);
    char *a = strstr(out, "static const RtTensor tensors");
    char *b = strstr(out, "static const RtNet net");
    char *c = strstr(out, "#else /* OPTC_BODY");
    ck_assert(a && b && c && a < b && b < c);
    *b = '\0';
    size_t na = strlen(a), nc = strlen(c);
    char *core = malloc(na + nc + 1);
    ck_assert_ptr_nonnull(core);
    size_t n = 0;
    for (const char *src = a; src; src = src == a ? c : NULL)
        for (const char *p = src; *p; p++) {
            if (p[0] == '/' && p[1] == '*') {
                const char *end = strstr(p + 2, "*/");
                ck_assert_ptr_nonnull(end);
                p = end + (end[2] == ' ' ? 2 : 1);     /* and the space after it */
                continue;
            }
            core[n++] = *p;
        }
    core[n] = '\0';
    free(out);
    return core;
}

/* The emitted heavy ball reads beside its spec: coefficients with their
 * source in the shortest form, the spec once (as a readable string), the
 * calls naming their tensors, one body for float and double. */
START_TEST(test_emit_readable)
{
    char *out = NULL;
    optc_ok("emit examples/heavy_ball.opt -n hb20_fmnist", &out);
    ck_assert_ptr_nonnull(strstr(out, "/* 1 + beta */ (T)1.9,"));
    ck_assert_ptr_nonnull(strstr(out, "/* -beta */ (T)-0.9"));
    ck_assert_ptr_null(strstr(out, "1.8999999999999999"));
    ck_assert_ptr_null(strstr(out, "0.90000000000000002"));
    const char *spec = "    x[k+1] = x[k] - grad(x[k]) + beta * (x[k] - x[k-1]);\\n\"";
    char *first = strstr(out, spec);
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_null(strstr(first + strlen(spec), "x[k+1] = x[k]"));     /* once */
    ck_assert_ptr_nonnull(strstr(out, "/* 15 stage1.x2 = sum(stage1.x1, stage1.step1.grad.conv1, "
                                      "stem.conv0): 16x28x28 -> 16x28x28 */"));
    ck_assert_ptr_nonnull(strstr(out, "/* name "));                /* the table's header */
    /* one body: a single definition of the first forward part, over T */
    char *f1 = strstr(out, "static void FN(forward_1)(Model *m, int B, int train)");
    ck_assert_ptr_nonnull(f1);
    ck_assert_ptr_null(strstr(f1 + 1, "static void FN(forward_1)"));
    ck_assert_ptr_null(strstr(out, "forward_d_1"));
    free(out);
}
END_TEST

/* Count of needle in hay. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *q = strstr(hay, needle); q; q = strstr(q + 1, needle))
        n++;
    return n;
}

/* ResNet-20's nine residual sums run inside the conv whose output they
 * read, in training (rt_conv2d_sum_train; here within
 * rt_bn_relu_conv3x3_train, the conv applying its input's BN + relu) and
 * inference alike: no
 * rt_sum_forward is left in the forward pass; the two sums whose other term
 * (the shortcut's pad) runs after the conv run at the sum's step, the pad
 * first. A sum of that sum right after it (momentum, Nesterov) runs in the
 * conv too, in training, and so do heavy ball's 3-term sums: each of these
 * convs also applies its input's BN + relu (rt_bn_relu_conv3x3_sums_train),
 * so the four nets write h of none of their stride-1 convs but the stage
 * stem's. The memory-free momentum network keeps its sums (its backward
 * rebuilds states from them). Nesterov's extrapolation y's backward runs
 * within its BN + relu's backward, and so do momentum's x + v and v. */
START_TEST(test_sums_in_conv)
{
    char *out = NULL;
    optc_ok("emit examples/resnet.opt -n resnet20_cifar", &out);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sum_train)("), 0);
    ck_assert_int_eq(count_of(out, "(rt_bn_relu_conv3x3_train), h not written */"), 16);
    ck_assert_int_eq(count_of(out, "(h not written), and its sum */"), 9);
    /* inference: 2 of them also apply their input's BN and relu (bnin) */
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sum_eval)("), 7);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_bnin_sum_eval)("), 2);
    ck_assert_int_eq(count_of(out, "FN(rt_sum_forward)("), 0);
    const char *pad = strstr(out, "stage2.shortcut0 = pad(stage1.x3)");
    ck_assert_ptr_nonnull(pad);
    const char *sum = strstr(out, "stage2.x1 = sum(stage2.shortcut0, stage2.step0.grad.conv1)");
    ck_assert_ptr_nonnull(sum);
    ck_assert_ptr_nonnull(strstr(pad, "FN(rt_pad_forward)("));
    const char *call = strstr(sum, "FN(rt_bn_relu_conv3x3_train)(");
    ck_assert_ptr_nonnull(call);
    ck_assert_ptr_eq(strstr(pad, "FN(rt_bn_relu_conv3x3_train)("), call);  /* after the pad */
    free(out);
    /* momentum: x + v after v = g v - (1 - g) grad in the same conv, training
     * and inference (rt_conv2d_sums_then_eval); step 0's v = -(1 - g) grad
     * (one term) too, with x + v, where the shortcut's pad runs between
     * (stages 2 and 3) at x + v's step, after the pad, x + v's output the
     * conv's scratch (the pad has the conv's memory): no sum pass left */
    optc_ok("emit examples/momentum.opt -n momentum20_cifar", &out);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sum_train)("), 0);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sums_then_train)("), 0);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sums_train)("), 0);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_conv3x3_sums_train)("), 9);
    ck_assert_int_eq(count_of(out, "sum below and the sum after it; inference with the sums */"),
                     1);
    ck_assert_int_eq(count_of(out, "its sum and the sum after it; inference with the sums */"), 8);
    ck_assert_int_eq(count_of(out, "with its sum and the sum after it, below */"), 2);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sums_then_eval)("), 9);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_forward_train)("), 3);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sum_eval)("), 0);
    ck_assert_int_eq(count_of(out, "if (!train) {    /* training: with its conv above */"), 0);
    ck_assert_int_eq(count_of(out, "FN(rt_sum_forward)("), 0);
    const char *pad2 = strstr(out, "stage2.shortcut0 = pad(stage1.x3)");
    const char *x1 = strstr(out, "stage2.x1 = sum(stage2.shortcut0, stage2.v1)");
    ck_assert_ptr_nonnull(pad2);
    ck_assert_ptr_nonnull(x1);
    ck_assert_ptr_eq(strstr(pad2, "FN(rt_bn_relu_conv3x3_sums_train)("),
                     strstr(x1, "FN(rt_bn_relu_conv3x3_sums_train)("));    /* after the pad */
    /* the backward: x + v's sum and then v's within the BN's of x
     * (rt_bn_relu_backward_then), v's in 6 of 9: not after the head's BN
     * (the conv's gradient there has part of the BN's memory) nor where the
     * shortcut's pad runs between (the first steps of stages 2 and 3); 3
     * sums' backwards left of 18 */
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_backward_then)("), 9);
    ck_assert_int_eq(count_of(out, "dxs2, acc2, c2);"), 6);
    ck_assert_int_eq(count_of(out, "FN(rt_sum_backward)("), 3);
    free(out);
    /* Nesterov: the extrapolation y after x = y - grad(y), also where the
     * shortcut's pad runs between the conv and x (stages 2 and 3) */
    optc_ok("emit examples/nesterov.opt -n nesterov20_cifar", &out);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sums_then_train)("), 0);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_conv3x3_sums_train)("), 6);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_forward_train)("), 3);
    /* inference: the extrapolation in the conv too, also where the conv
     * applies its input's BN (rt_conv2d_bnin_sums_then_eval, stages 2 and 3):
     * no sum pass left in the forward */
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sums_then_eval)("), 4);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_bnin_sums_then_eval)("), 2);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_bnin_sum_eval)("), 0);
    ck_assert_int_eq(count_of(out, "FN(rt_sum_forward)("), 0);
    /* the extrapolation's backward within its BN's (rt_bn_relu_backward_then):
     * the 3 sums left are the first steps' x1 (the shortcut's pad) */
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_backward_then)("), 6);
    ck_assert_int_eq(count_of(out, "FN(rt_sum_backward)("), 3);
    free(out);
    /* heavy ball: the 3-term sums of steps 1 and 2 in their conv, training
     * and inference (rt_conv2d_sums_then_eval with one sum); step 0's 2-term
     * sums with their conv's input BN + relu */
    optc_ok("emit examples/heavy_ball.opt -n hb20_cifar", &out);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sum_train)("), 0);
    ck_assert_int_eq(count_of(out, "(h not written), and its sum */"), 3);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sums_train)("), 0);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_conv3x3_sums_train)("), 6);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_forward_train)("), 3);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sums_then_eval)("), 6);
    ck_assert_int_eq(count_of(out, "FN(rt_sum_forward)("), 0);
    free(out);
    optc_ok("emit examples/heavy_ball.opt -n hb20_cifar --memory-free", &out);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sums_train)("), 0);
    free(out);
    optc_ok("emit examples/momentum.opt -n momentum20_cifar --memory-free", &out);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sum_train)("), 0);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_sum_eval)("), 0);
    free(out);
}
END_TEST

/* ResNet-20's inference forward: the BN + relu before each stride-1 conv
 * (after the stem, each residual sum and each stride-2 conv) runs in that
 * conv's input transform (rt_conv2d_bnin_bn_eval / _sum_eval, nine), the
 * BN's own inference call dropped (a comment says where it went); three
 * rt_bn_relu_forward_eval are left (before the two stride-2 convs and the
 * head). In training, each of those 16 pairs runs in its conv too
 * (rt_bn_relu_conv3x3_train: h not written), its conv's backward applying
 * it for the weight gradient (rt_bn_relu_conv3x3_backward, _neg for the
 * sums' -1 terms); the other three rt_bn_relu_forward_train stay. Not in
 * memory-free builds (momentum's). */
START_TEST(test_bnin_in_conv)
{
    char *out = NULL;
    optc_ok("emit examples/resnet.opt -n resnet20_cifar", &out);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_bnin_bn_eval)("), 7);
    ck_assert_int_eq(count_of(out, "FN(rt_conv2d_bnin_sum_eval)("), 2);
    ck_assert_int_eq(count_of(out, "/* inference: in the conv below, as it reads its input */"),
                     9);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_forward_eval)("), 3);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_forward_train)("), 3);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_conv3x3_train)("), 16);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_conv3x3_backward)("), 7);
    ck_assert_int_eq(count_of(out, "FN(rt_bn_relu_conv3x3_backward_neg)("), 9);
    /* the first: the stem's BN applied by stage 1's first conv */
    const char *c = strstr(out, "stage1.step0.grad.conv0 = conv(stage1.step0.grad.relu0)");
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(strstr(c, "FN(rt_conv2d_bnin_bn_eval)(ctx, act + 49152 * nB, "
                                    "act + 16384 * nB, act, P + 464, B, 16, 32, 32, 16, 3, 1, 1, "
                                    "P + 432, P + 448, buf, buf + 16, 1e-05, nB * 0, "));
    free(out);
    optc_ok("emit examples/momentum.opt -n momentum20_cifar --memory-free", &out);
    ck_assert_int_eq(count_of(out, "bnin"), 0);
    ck_assert_int_eq(count_of(out, "conv3x3_train"), 0);
    free(out);
}
END_TEST

/* Heavy ball with beta = 0 is gradient descent: the same emitted network,
 * and the same outputs for the same weights. */
START_TEST(test_heavy_ball_zero)
{
    if (tu_sanitized())
        TEST_SKIP("two full emits under the sanitizers take too long");
    char *hb = emitted_core("emit examples/heavy_ball.opt -n hb20_fmnist -D heavy_ball.beta=0");
    char *gd = emitted_core("emit examples/resnet.opt -n resnet20_fmnist");
    ck_assert_msg(strcmp(hb, gd) == 0, "heavy ball (beta 0) differs from gradient descent");
    free(hb);
    free(gd);
    /* And not by accident: with beta = 0.9 they differ. */
    hb = emitted_core("emit examples/heavy_ball.opt -n hb20_fmnist");
    gd = emitted_core("emit examples/resnet.opt -n resnet20_fmnist");
    ck_assert(strcmp(hb, gd) != 0);
    free(hb);
    free(gd);

    /* The IR graphs agree op by op, in process. */
    Arena *a = arena_new();
    int ne = 0;
    Define def = { "heavy_ball.beta", "0" };
    Spec *s1 = fe_load(a, "examples/heavy_ball.opt", &def, 1, stderr, &ne);
    Spec *s2 = fe_load(a, "examples/resnet.opt", NULL, 0, stderr, &ne);
    ck_assert(s1 && s2);
    IrGraph *g1 = fe_unroll(a, s1, "hb20_fmnist", stderr, &ne);
    IrGraph *g2 = fe_unroll(a, s2, "resnet20_fmnist", stderr, &ne);
    ck_assert(g1 && g2);
    ck_assert_int_eq(g1->nnodes, g2->nnodes);
    ck_assert_int_eq(g1->nparams, g2->nparams);
    for (int i = 0; i < g1->nnodes; i++) {
        const IrNode *x = &g1->nodes[i], *y = &g2->nodes[i];
        ck_assert_int_eq(x->op, y->op);
        ck_assert_int_eq(x->nin, y->nin);
        ck_assert(x->shape.c == y->shape.c && x->shape.h == y->shape.h &&
                  x->shape.w == y->shape.w);
        for (int k = 0; k < x->nin; k++)
            ck_assert_int_eq(x->in[k], y->in[k]);
        if (x->op == OP_SUM)
            for (int k = 0; k < x->nin; k++)
                ck_assert(x->u.sum.coef[k].c0 == y->u.sum.coef[k].c0 &&
                          x->u.sum.coef[k].nterms == 0 && y->u.sum.coef[k].nterms == 0);
    }

    /* Both programs evaluate one checkpoint (written here, without a net
     * name, from the shared tensor table) to the same loss and accuracy. */
    char *dir = tmpdir(), args[512], path[512];
    snprintf(args, sizeof args,
             "build examples/heavy_ball.opt -n hb20_fmnist -D heavy_ball.beta=0 -o %s/hb", dir);
    optc_ok(args, NULL);
    snprintf(args, sizeof args, "build examples/resnet.opt -n resnet20_fmnist -o %s/gd", dir);
    optc_ok(args, NULL);
    RtStEntry *ent = calloc((size_t)g2->nparams, sizeof *ent);
    float **data = calloc((size_t)g2->nparams, sizeof *data);
    ck_assert(ent && data);
    uint64_t st = 12345;
    for (int i = 0; i < g2->nparams; i++) {
        const IrParam *pp = &g2->params[i];
        data[i] = malloc(pp->numel * sizeof **data);
        ck_assert_ptr_nonnull(data[i]);
        for (size_t j = 0; j < pp->numel; j++) {
            st ^= st << 13; st ^= st >> 7; st ^= st << 17;
            double r = (double)(st >> 11) / 9007199254740992.0;
            data[i][j] = pp->kind == PK_BN_VAR ? (float)(0.5 + r)
                       : pp->kind == PK_BN_GAMMA ? (float)(0.5 + r)
                       : (float)((r - 0.5) * 2.0 / sqrt((double)(pp->fan_in ? pp->fan_in : 4)));
        }
        ent[i] = (RtStEntry){ pp->name, pp->ndim, { 0 }, data[i] };
        for (int d = 0; d < pp->ndim; d++)
            ent[i].dims[d] = pp->dims[d];
    }
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    RtErr err;
    ck_assert_msg(rt_st_save(path, ent, g2->nparams, NULL, 0, &err) == 0, "%s", err.msg);
    for (int i = 0; i < g2->nparams; i++)
        free(data[i]);
    free(data);
    free(ent);
    char *res[2];
    const char *prog[2] = { "hb", "gd" };
    for (int k = 0; k < 2; k++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s/%s eval --weights %s --test-limit 300 --threads 1", dir,
                 prog[k], path);
        char *out = NULL;
        int rc = run(cmd, &out);
        ck_assert_msg(rc == 0, "%s: %s", cmd, tail(out));
        char *at = strstr(out, "test_loss=");
        ck_assert_ptr_nonnull(at);
        char *sp = strstr(at, " images_per_s");
        ck_assert_ptr_nonnull(sp);
        *sp = '\0';
        res[k] = strdup(at);
        free(out);
    }
    ck_assert_str_eq(res[0], res[1]);
    free(res[0]);
    free(res[1]);
    rmtree(dir);
    free(dir);
    arena_free(a);
}
END_TEST

/* Every Fashion-MNIST-shaped example network: extra -D that keep the
 * suite's time reasonable (DenseNet-BC-100 at 2 steps per stage; its full
 * depth is checked above by parameter count). */
static const struct { const char *spec, *net, *defs; } fm[] = {
    { "examples/resnet.opt", "resnet20_fmnist", "" },
    { "examples/heavy_ball.opt", "hb20_fmnist", "" },
    { "examples/nesterov.opt", "nesterov20_fmnist", "" },
    { "examples/momentum.opt", "momentum20_fmnist", "" },
    { "examples/lm.opt", "lm20_fmnist", "" },
    { "examples/densenet.opt", "densenet_bc100_fmnist",
      "-D densenet_bc100_fmnist.stage1.steps=2 -D densenet_bc100_fmnist.stage2.steps=2 "
      "-D densenet_bc100_fmnist.stage3.steps=2" },
    { "examples/theory.opt", "theory_hb_fmnist", "" },
    { "examples/theory.opt", "theory_gd_fmnist", "" },
    { "examples/activations.opt", "acts_fmnist", "" },
    { "examples/activations.opt", "theory_tanh_fmnist", "" },
};
#define NFM ((int)(sizeof fm / sizeof fm[0]))

/* The table above names every *_fmnist network of every example spec. */
START_TEST(test_fmnist_table_complete)
{
    char *out = NULL;
    const char *specs[] = { "resnet", "heavy_ball", "nesterov", "momentum", "lm", "densenet",
                            "theory", "activations" };
    int found = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        char args[128];
        snprintf(args, sizeof args, "list examples/%s.opt", specs[s]);
        optc_ok(args, &out);
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
            size_t n = strlen(line);
            if (n < 7 || strcmp(line + n - 7, "_fmnist") != 0)
                continue;
            bool have = false;
            for (int i = 0; i < NFM; i++)
                have = have || strcmp(fm[i].net, line) == 0;
            ck_assert_msg(have, "example network %s is not tested", line);
            found++;
        }
        free(out);
    }
    ck_assert_int_eq(found, NFM);
}
END_TEST

/* Build one example, pass gradcheck, and lower its training loss over 50
 * steps of real Fashion-MNIST (two epochs of 25 batches of 8 images: the
 * second epoch's mean loss is below the first's). Small batches and one
 * thread keep the suite's time reasonable on a busy 2-core machine. */
START_TEST(test_example_trains)
{
    if (tu_sanitized() && strncmp(fm[_i].net, "theory", 6) != 0)
        TEST_SKIP("%s: under the sanitizers only the theory networks train (time)", fm[_i].net);
    char *dir = tmpdir(), args[1024], cmd[1024], *out = NULL;
    snprintf(args, sizeof args, "build %s -n %s %s -o %s/net", fm[_i].spec, fm[_i].net,
             fm[_i].defs, dir);
    optc_ok(args, NULL);
    snprintf(cmd, sizeof cmd, "%s/net gradcheck --batch 2 --samples 1 --threads 1", dir);
    int rc = run(cmd, &out);
    ck_assert_msg(rc == 0, "%s: gradcheck failed:\n%s", fm[_i].net, tail(out));
    ck_assert_ptr_nonnull(strstr(out, "gradcheck: passed"));
    free(out);
    snprintf(cmd, sizeof cmd,
             "%s/net train --data fashion-mnist --limit 200 --test-limit 100 --epochs 2 "
             "--batch 8 --seed 3 --threads 1 --out %s/run --quiet", dir, dir);
    rc = run(cmd, &out);
    ck_assert_msg(rc == 0, "%s: training failed:\n%s", fm[_i].net, tail(out));
    free(out);
    char path[1100];
    snprintf(path, sizeof path, "%s/run/log.csv", dir);
    double l1 = csv_value(path, 0, 2), l2 = csv_value(path, 1, 2);
    ck_assert_msg(isfinite(l1) && isfinite(l2) && l2 < l1,
                  "%s: training loss %g -> %g did not fall", fm[_i].net, l1, l2);
    rmtree(dir);
    free(dir);
}
END_TEST

static Suite *codegen_suite(void)
{
    Suite *s = suite_create("codegen");
    TCase *tc = tcase_create("theory");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_theory, 0, 3 * TH_NACTS);
    tcase_add_test(tc, test_dot_optimizer);
    tcase_add_test(tc, test_emit_readable);
    tcase_add_test(tc, test_sums_in_conv);
    tcase_add_test(tc, test_bnin_in_conv);
    suite_add_tcase(s, tc);
    tc = tcase_create("examples");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_published_counts, 0, (int)(sizeof counts / sizeof counts[0]));
    tcase_add_test(tc, test_fmnist_table_complete);
    tcase_add_test(tc, test_info_resnet20);
    tcase_add_test(tc, test_heavy_ball_zero);
    tcase_add_loop_test(tc, test_example_trains, 0, NFM);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(codegen_suite)
