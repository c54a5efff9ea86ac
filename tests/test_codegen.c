/* test_codegen.c — the planner and the C emitter, end to end.
 *
 * Hand-built IR graphs (no front end needed) are planned, checked for
 * buffer overlaps, emitted, compiled with the flags make wrote beside optc
 * ($OPTC_BUILD/optc.flags, -Werror included) and run: gradcheck and info.
 * The example specs go through $OPTC_BUILD/optc build and are checked for
 * the published parameter counts, gradcheck and falling training loss; the
 * theory block is compared with an independent run of the optimizers.
 * Run from the project root (make check does). */
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

/* --- helpers: files, commands ------------------------------------------- */

static const char *build_dir(void)
{
    const char *b = getenv("OPTC_BUILD");
    return b && *b ? b : "build";
}

static bool sanitized(void)
{
    const char *s = getenv("OPTC_SANITIZED");
    return s && *s && strcmp(s, "0") != 0;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Run a shell command with stdout+stderr into *out (malloc'd); returns the
 * exit status. */
static int run(const char *cmd, char **out)
{
    char tmpl[] = "/tmp/optc-test-out-XXXXXX";
    int fd = mkstemp(tmpl);
    ck_assert_int_ge(fd, 0);
    close(fd);
    size_t n = strlen(cmd) + strlen(tmpl) + 16;
    char *full = malloc(n);
    ck_assert_ptr_nonnull(full);
    snprintf(full, n, "%s >%s 2>&1", cmd, tmpl);
    int st = system(full);
    free(full);
    char *text = read_all(tmpl);
    remove(tmpl);
    if (out)
        *out = text;
    else
        free(text);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* The end of a long output, for failure messages (Check limits their size). */
static const char *tail(const char *s)
{
    if (!s)
        return "";
    size_t n = strlen(s);
    return n > 1500 ? s + n - 1500 : s;
}

static char *tmpdir(void)
{
    char tmpl[] = "/tmp/optc-codegen-XXXXXX";
    char *d = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(d);
    return strdup(d);
}

/* OPTC_TEST_KEEP=1 keeps the temporary directories for inspection. */
static void rmtree(const char *dir)
{
    const char *keep = getenv("OPTC_TEST_KEEP");
    if (keep && *keep) {
        fprintf(stderr, "kept %s\n", dir);
        return;
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* The compile command make recorded for generated programs. */
typedef struct { char cc[1024], cflags[4096], include[1024], libs[4096]; } Flags;

static void flags_load(Flags *fl)
{
    char path[512];
    snprintf(path, sizeof path, "%s/optc.flags", build_dir());
    char *text = read_all(path);
    ck_assert_msg(text != NULL, "cannot read %s (make writes it)", path);
    memset(fl, 0, sizeof *fl);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = '\0';
        if (!strcmp(line, "CC"))
            snprintf(fl->cc, sizeof fl->cc, "%s", eq + 1);
        else if (!strcmp(line, "CFLAGS"))
            snprintf(fl->cflags, sizeof fl->cflags, "%s", eq + 1);
        else if (!strcmp(line, "INCLUDE"))
            snprintf(fl->include, sizeof fl->include, "%s", eq + 1);
        else if (!strcmp(line, "LIBS"))
            snprintf(fl->libs, sizeof fl->libs, "%s", eq + 1);
    }
    free(text);
    ck_assert(fl->cc[0] && fl->include[0] && fl->libs[0]);
    ck_assert_msg(strstr(fl->cflags, "-Werror") != NULL, "generated code must build with -Werror");
}

/* Compile src into exe with the recorded flags; returns the status, the
 * compiler's messages in *log. */
static int compile(const char *src, const char *exe, char **log)
{
    Flags fl;
    flags_load(&fl);
    size_t n = strlen(fl.cc) + strlen(fl.cflags) + strlen(fl.include) + strlen(fl.libs) +
               strlen(src) + strlen(exe) + 64;
    char *cmd = malloc(n);
    ck_assert_ptr_nonnull(cmd);
    snprintf(cmd, n, "%s %s -I%s -o %s %s %s", fl.cc, fl.cflags, fl.include, exe, src, fl.libs);
    int st = run(cmd, log);
    free(cmd);
    return st;
}

/* --- hand-built graphs ---------------------------------------------------- */

#define HMAX 96
typedef struct {
    IrGraph g;
    IrNode nodes[HMAX];
    int ins[HMAX][8];
    IrCoef coefs[HMAX][8];
    IrParam params[HMAX];
    char names[HMAX][48];
    char pnames[HMAX][64];
} Hand;

static void h_init(Hand *h, const char *name, int c, int hh, int w, int classes)
{
    memset(h, 0, sizeof *h);
    h->g.name = name;
    h->g.spec_path = "hand.opt";
    h->g.input = (IrShape){ c, hh, w };
    h->g.classes = classes;
    h->g.nodes = h->nodes;
    h->g.params = h->params;
    h->g.train = (IrTrain){ .epochs = 1, .batch = 32, .lr = 0.1, .momentum = 0.9,
                            .weight_decay = 5e-4, .schedule = SCHED_COSINE };
    IrNode *n = &h->nodes[h->g.nnodes++];
    n->op = OP_INPUT;
    n->name = "input";
    n->shape = h->g.input;
    h->g.output = 0;
}

static int h_param(Hand *h, const char *name, IrParamKind kind, int ndim, const int *dims,
                   IrInit init, int fan_in, bool trainable)
{
    ck_assert_int_lt(h->g.nparams, HMAX);
    int i = h->g.nparams++;
    IrParam *p = &h->params[i];
    snprintf(h->pnames[i], sizeof h->pnames[i], "%s", name);
    p->name = h->pnames[i];
    p->kind = kind;
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        p->dims[d] = dims[d];
        p->numel *= (size_t)dims[d];
    }
    p->init = init;
    p->fan_in = fan_in;
    p->trainable = trainable;
    p->init_value = 0.5;
    return i;
}

static int h_node(Hand *h, IrOp op, const char *what, int nin, const int *in, IrShape shape)
{
    ck_assert_int_lt(h->g.nnodes, HMAX);
    int i = h->g.nnodes++;
    IrNode *n = &h->nodes[i];
    n->id = i;
    n->op = op;
    snprintf(h->names[i], sizeof h->names[i], "n%d.%s", i, what);
    n->name = h->names[i];
    n->nin = nin;
    for (int k = 0; k < nin; k++)
        h->ins[i][k] = in[k];
    n->in = h->ins[i];
    n->shape = shape;
    h->g.output = i;
    return i;
}

static IrShape h_shape(Hand *h, int node) { return h->nodes[node].shape; }

static int conv_out(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }

static int h_conv(Hand *h, int x, int cout, int k, int stride)
{
    IrShape s = h_shape(h, x);
    int pad = k / 2;
    char nm[64];
    snprintf(nm, sizeof nm, "conv%d.weight", h->g.nnodes);
    int dims[4] = { cout, s.c, k, k };
    int w = h_param(h, nm, PK_WEIGHT, 4, dims, INIT_KAIMING, s.c * k * k, true);
    IrShape o = { cout, conv_out(s.h, k, stride, pad), conv_out(s.w, k, stride, pad) };
    int n = h_node(h, OP_CONV, "conv", 1, &x, o);
    h->nodes[n].u.conv.cout = cout;
    h->nodes[n].u.conv.k = k;
    h->nodes[n].u.conv.stride = stride;
    h->nodes[n].u.conv.pad = pad;
    h->nodes[n].u.conv.w = w;
    return n;
}

static int h_bn(Hand *h, int x)
{
    IrShape s = h_shape(h, x);
    int dims[1] = { s.c };
    char nm[64];
    int i = h->g.nnodes;
    snprintf(nm, sizeof nm, "bn%d.weight", i);
    int ga = h_param(h, nm, PK_BN_GAMMA, 1, dims, INIT_ONES, 0, true);
    snprintf(nm, sizeof nm, "bn%d.bias", i);
    int be = h_param(h, nm, PK_BN_BETA, 1, dims, INIT_ZEROS, 0, true);
    snprintf(nm, sizeof nm, "bn%d.running_mean", i);
    int me = h_param(h, nm, PK_BN_MEAN, 1, dims, INIT_ZEROS, 0, false);
    snprintf(nm, sizeof nm, "bn%d.running_var", i);
    int va = h_param(h, nm, PK_BN_VAR, 1, dims, INIT_ONES, 0, false);
    int n = h_node(h, OP_BN, "bn", 1, &x, s);
    h->nodes[n].u.bn.gamma = ga;
    h->nodes[n].u.bn.beta = be;
    h->nodes[n].u.bn.mean = me;
    h->nodes[n].u.bn.var = va;
    h->nodes[n].u.bn.eps = 1e-5;
    h->nodes[n].u.bn.momentum = 0.1;
    return n;
}

static int h_relu(Hand *h, int x) { return h_node(h, OP_RELU, "relu", 1, &x, h_shape(h, x)); }

/* sum_i c_i x_i; learned >= 0 makes coefficient 1 learned: c = 1 + 0.5*s. */
static int h_sum(Hand *h, int n, const int *xs, const double *c, int learned)
{
    int node = h_node(h, OP_SUM, "sum", n, xs, h_shape(h, xs[0]));
    for (int k = 0; k < n; k++)
        h->coefs[node][k] = (IrCoef){ .c0 = c[k] };
    if (learned >= 0) {
        int one[1] = { 1 };
        char nm[64];
        snprintf(nm, sizeof nm, "sum%d.beta", node);
        int sp = h_param(h, nm, PK_SCALAR, 1, one, INIT_CONST, 0, true);
        h->coefs[node][learned].nterms = 1;
        h->coefs[node][learned].param[0] = sp;
        h->coefs[node][learned].a[0] = 0.5;
    }
    h->nodes[node].u.sum.coef = h->coefs[node];
    return node;
}

static int h_pad(Hand *h, int x, int cout, int stride)
{
    IrShape s = h_shape(h, x);
    IrShape o = { cout, (s.h + stride - 1) / stride, (s.w + stride - 1) / stride };
    int n = h_node(h, OP_PAD, "pad", 1, &x, o);
    h->nodes[n].u.pad.stride = stride;
    return n;
}

static int h_gap(Hand *h, int x)
{
    IrShape s = h_shape(h, x);
    return h_node(h, OP_GAP, "gap", 1, &x, (IrShape){ s.c, 1, 1 });
}

static int h_pool(Hand *h, int x, int k, int stride)
{
    IrShape s = h_shape(h, x);
    IrShape o = { s.c, (s.h - k) / stride + 1, (s.w - k) / stride + 1 };
    int n = h_node(h, OP_AVGPOOL, "avgpool", 1, &x, o);
    h->nodes[n].u.pool.k = k;
    h->nodes[n].u.pool.stride = stride;
    return n;
}

static int h_linear(Hand *h, int x, int out, bool bias)
{
    IrShape s = h_shape(h, x);
    int in = s.c * s.h * s.w;
    int dims[2] = { out, in };
    char nm[64];
    snprintf(nm, sizeof nm, "fc%d.weight", h->g.nnodes);
    int w = h_param(h, nm, PK_WEIGHT, 2, dims, INIT_UNIFORM, in, true);
    int b = -1;
    if (bias) {
        snprintf(nm, sizeof nm, "fc%d.bias", h->g.nnodes);
        b = h_param(h, nm, PK_BIAS, 1, dims, INIT_ZEROS, in, true);
    }
    int n = h_node(h, OP_LINEAR, "linear", 1, &x, (IrShape){ out, 1, 1 });
    h->nodes[n].u.linear.w = w;
    h->nodes[n].u.linear.b = b;
    return n;
}

static int h_exact(Hand *h, int x, int u, int m)
{
    int n = h_node(h, OP_EXACT, "exact", 1, &x, h_shape(h, x));
    h->nodes[n].u.exact.u = u;
    h->nodes[n].u.exact.m = m;
    snprintf(h->nodes[n].u.exact.phi, sizeof h->nodes[n].u.exact.phi, "relu");
    return n;
}

static int h_concat(Hand *h, int a, int b)
{
    int xs[2] = { a, b };
    IrShape s = h_shape(h, a);
    s.c += h_shape(h, b).c;
    return h_node(h, OP_CONCAT, "concat", 2, xs, s);
}

static int h_dropout(Hand *h, int x, double p)
{
    int n = h_node(h, OP_DROPOUT, "dropout", 1, &x, h_shape(h, x));
    h->nodes[n].u.dropout.p = p;
    return n;
}

/* A pre-activation residual block: x + conv(relu(bn(conv(relu(bn x))))),
 * with an option-A shortcut when it strides. */
static int h_block(Hand *h, int x, int cout, int stride)
{
    int y = h_conv(h, h_relu(h, h_bn(h, x)), cout, 3, stride);
    y = h_conv(h, h_relu(h, h_bn(h, y)), cout, 3, 1);
    int sc = stride > 1 || h_shape(h, x).c != cout ? h_pad(h, x, cout, stride) : x;
    int xs[2] = { sc, y };
    double c[2] = { 1, 1 };
    return h_sum(h, 2, xs, c, -1);
}

/* Tiny pre-activation ResNet on 1x8x8, 3 classes. */
static void h_resnet(Hand *h)
{
    h_init(h, "tiny_resnet", 1, 8, 8, 3);
    int x = h_conv(h, 0, 4, 3, 1);
    x = h_block(h, x, 4, 1);
    x = h_block(h, x, 8, 2);
    x = h_relu(h, h_bn(h, x));
    h_linear(h, h_gap(h, x), 3, true);
}

/* Every op at once: a learned heavy-ball sum, concat, pool, exact with a
 * shared U, dropout, a linear without bias. */
static void h_all(Hand *h)
{
    h_init(h, "all_ops", 2, 6, 6, 4);
    int x0 = h_conv(h, 0, 3, 3, 1);
    int g0 = h_conv(h, h_relu(h, h_bn(h, x0)), 3, 3, 1);
    int xs1[2] = { x0, g0 };
    double c1[2] = { 1, -1 };
    int x1 = h_sum(h, 2, xs1, c1, -1);
    int g1 = h_conv(h, h_relu(h, h_bn(h, x1)), 3, 3, 1);
    /* x2 = x1 - g1 + beta (x1 - x0) = (1 + beta) x1 - g1 - beta x0, beta learned */
    int xs2[3] = { x1, g1, x0 };
    double c2[3] = { 1, -1, -0.25 };
    int x2 = h_sum(h, 3, xs2, c2, 0);
    int cat = h_concat(h, x2, h_relu(h, x1));
    int p = h_pool(h, cat, 2, 2);                       /* 6x3x3 */
    int udims[2] = { 54, 5 };
    int u = h_param(h, "theory.U", PK_WEIGHT, 2, udims, INIT_UNIFORM, 54, true);
    int z = h_exact(h, p, u, 5);
    z = h_exact(h, z, u, 5);                            /* shared U: gradients accumulate */
    z = h_dropout(h, z, 0.25);
    h_linear(h, z, 4, false);
}

/* --- planner -------------------------------------------------------------- */

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
            if (pb->kind == PB_GRAD)
                ck_assert_int_eq(pb->death, plan_time_bwd(&h.g, pb->node));
        }
        plan_free(p);
    }
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
    ck_assert_int_eq(B, g->train.batch > 0 ? g->train.batch : 128);
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

/* --- emitter on hand graphs ------------------------------------------------ */

/* Emit h into dir/name.c, compile it into dir/name; returns the C text. */
static char *emit_build(Hand *h, const char *dir, const char *name, const char *spec,
                        size_t spec_len)
{
    Plan *p = plan_build(&h->g, stderr);
    ck_assert_ptr_nonnull(p);
    char src[512], exe[512];
    snprintf(src, sizeof src, "%s/%s.c", dir, name);
    snprintf(exe, sizeof exe, "%s/%s", dir, name);
    FILE *f = fopen(src, "w");
    ck_assert_ptr_nonnull(f);
    EmitInfo info = { .command = "optc emit hand.opt", .spec_path = "hand.opt",
                      .spec_text = spec, .spec_len = spec_len };
    ck_assert_int_eq(emit_c(f, &h->g, p, &info, stderr), 0);
    ck_assert_int_eq(fclose(f), 0);
    plan_free(p);
    char *log = NULL;
    int st = compile(src, exe, &log);
    ck_assert_msg(st == 0, "compiling %s failed:\n%s", src, tail(log));
    free(log);
    char *text = read_all(src);
    ck_assert_ptr_nonnull(text);
    /* No allocation in generated code: all memory comes from rt_model_init. */
    ck_assert_ptr_null(strstr(text, "malloc"));
    ck_assert_ptr_null(strstr(text, "calloc"));
    return text;
}

START_TEST(test_emit_hand)
{
    static Hand h;
    char *dir = tmpdir();
    for (int which = 0; which < 2; which++) {
        if (which == 0)
            h_resnet(&h);
        else
            h_all(&h);
        const char *spec = "# hand-built graph\n";
        free(emit_build(&h, dir, h.g.name, spec, strlen(spec)));
        char cmd[1024], *out = NULL;
        snprintf(cmd, sizeof cmd, "%s/%s gradcheck --batch 3", dir, h.g.name);
        int st = run(cmd, &out);
        ck_assert_msg(st == 0, "%s: status %d\n%s", cmd, st, tail(out));
        free(out);
        snprintf(cmd, sizeof cmd, "%s/%s info --json", dir, h.g.name);
        st = run(cmd, &out);
        ck_assert_msg(st == 0, "%s: status %d\n%s", cmd, st, tail(out));
        Plan *p = plan_build(&h.g, stderr);
        char want[64];
        snprintf(want, sizeof want, "\"params\":%zu", p->nparams);
        ck_assert_msg(strstr(out, want) != NULL, "info: %s (want %s)", tail(out), want);
        plan_free(p);
        free(out);
    }
    rmtree(dir);
    free(dir);
}
END_TEST

/* User text cannot escape its comment or string literal: a spec and names
 * full of comment closers, trigraphs, quotes, backslash-newlines, NULs and
 * preprocessor lines still compile under -Werror into the same program. */
START_TEST(test_emit_escaping)
{
    static Hand h;
    char *dir = tmpdir();
    h_resnet(&h);
    snprintf(h.pnames[0], sizeof h.pnames[0], "w*/\n#error injected\n/*\"?\?/\\");
    static const char spec[] = "network x { } */\n#error injected\n/* ?\?/\n \\\n"
                               "\"\\\" ?\?= \x01\xff\0 end */";
    char *text = emit_build(&h, dir, "escaping", spec, sizeof spec - 1);
    ck_assert_ptr_null(strstr(text, "\n#error"));
    ck_assert_ptr_null(strstr(text, "??"));
    /* The comment closes exactly once, at the end of the header. */
    char *first = strstr(text, "*/");
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_nonnull(strstr(first, "#include \"rt.h\""));
    free(text);
    rmtree(dir);
    free(dir);
}
END_TEST

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

/* --- the example specs through the optc command line ----------------------- */

static char *optc_cmd(const char *args)
{
    size_t n = strlen(build_dir()) + strlen(args) + 16;
    char *cmd = malloc(n);
    ck_assert_ptr_nonnull(cmd);
    snprintf(cmd, n, "%s/optc %s", build_dir(), args);
    return cmd;
}

/* Run optc with args; its output in *out; asserts success. */
static void optc_ok(const char *args, char **out)
{
    char *cmd = optc_cmd(args);
    char *text = NULL;
    int st = run(cmd, &text);
    ck_assert_msg(st == 0, "%s: status %d\n%s", cmd, st, tail(text));
    free(cmd);
    if (out)
        *out = text;
    else
        free(text);
}

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

/* optc emit/build: usage errors, bad specs and --keep-c. */
START_TEST(test_cli)
{
    char *out = NULL, *cmd = optc_cmd("emit --help");
    ck_assert_int_eq(run(cmd, &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: optc emit"));
    free(out);
    free(cmd);
    cmd = optc_cmd("build --help");
    ck_assert_int_eq(run(cmd, &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "--keep-c"));
    free(out);
    free(cmd);
    cmd = optc_cmd("emit examples/resnet.opt --bogus");
    ck_assert_int_eq(run(cmd, NULL), 2);
    free(cmd);
    cmd = optc_cmd("emit examples/resnet.opt -n no_such_net");
    ck_assert_int_eq(run(cmd, NULL), 1);
    free(cmd);
    /* A failed emit leaves no file behind. */
    char *dir = tmpdir(), args[512], path[512];
    snprintf(args, sizeof args, "emit examples/resnet.opt -n no_such_net -o %s/x.c", dir);
    cmd = optc_cmd(args);
    ck_assert_int_eq(run(cmd, NULL), 1);
    free(cmd);
    snprintf(path, sizeof path, "%s/x.c", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* emit -o and stdout agree; the file records a relative spec path. */
    snprintf(args, sizeof args, "emit examples/theory.opt -n theory_gd_fmnist -o %s/t.c", dir);
    optc_ok(args, NULL);
    optc_ok("emit examples/theory.opt -n theory_gd_fmnist", &out);
    snprintf(path, sizeof path, "%s/t.c", dir);
    char *file = read_all(path);
    ck_assert_ptr_nonnull(file);
    /* Only the recorded command line (with its -o) differs. */
    const char *body = strstr(file, "static const RtTensor");
    const char *body2 = strstr(out, "static const RtTensor");
    ck_assert(body && body2);
    ck_assert_msg(strcmp(body, body2) == 0, "emit -o and emit to stdout differ");
    ck_assert_ptr_nonnull(strstr(file, " * examples/theory.opt\n"));
    free(file);
    free(out);
    /* build --keep-c keeps PATH.c. */
    snprintf(args, sizeof args, "build examples/theory.opt -n theory_gd_fmnist -o %s/t --keep-c",
             dir);
    optc_ok(args, NULL);
    snprintf(path, sizeof path, "%s/t.c", dir);
    ck_assert_int_eq(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/t", dir);
    ck_assert_int_eq(access(path, X_OK), 0);
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

/* Heavy ball with beta = 0 is gradient descent: the same emitted network,
 * and the same outputs for the same weights. */
START_TEST(test_heavy_ball_zero)
{
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

/* Read column col (0-based) of data row row (0-based) of a CSV file. */
static double csv_value(const char *path, int row, int col)
{
    char *text = read_all(path);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    char *save = NULL, *line = strtok_r(text, "\n", &save);   /* header */
    for (int r = 0; r <= row; r++) {
        line = strtok_r(NULL, "\n", &save);
        ck_assert_msg(line != NULL, "%s: no row %d", path, row);
    }
    char *p = line;
    for (int c = 0; c < col; c++) {
        p = strchr(p, ',');
        ck_assert_ptr_nonnull(p);
        p++;
    }
    double v = strtod(p, NULL);
    free(text);
    return v;
}

/* Build one example, pass gradcheck, and lower its training loss over 50
 * steps of real Fashion-MNIST (two epochs of 25 batches of 8 images: the
 * second epoch's mean loss is below the first's). Small batches and one
 * thread keep the suite's time reasonable on a busy 2-core machine. */
START_TEST(test_example_trains)
{
    if (sanitized() && strncmp(fm[_i].net, "theory", 6) != 0)
        return;     /* under ASan: the small theory networks only (time) */
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
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, test_plan_hand);
    tcase_add_test(tc, test_plan_rejects_grad);
    tcase_add_test(tc, test_plan_n_log_n);
    tcase_add_test(tc, test_plan_memory_check);
    tcase_add_test(tc, test_plan_verify_catches);
    suite_add_tcase(s, tc);
    tc = tcase_create("emit");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_emit_hand);
    tcase_add_test(tc, test_emit_escaping);
    tcase_add_loop_test(tc, test_theory, 0, 3 * TH_NACTS);
    tcase_add_test(tc, test_dot_optimizer);
    tcase_add_test(tc, test_emit_readable);
    suite_add_tcase(s, tc);
    tc = tcase_create("examples");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_published_counts, 0, (int)(sizeof counts / sizeof counts[0]));
    tcase_add_test(tc, test_cli);
    tcase_add_test(tc, test_fmnist_table_complete);
    if (!sanitized()) {
        tcase_add_test(tc, test_info_resnet20);
        tcase_add_test(tc, test_heavy_ball_zero);
    }
    tcase_add_loop_test(tc, test_example_trains, 0, NFM);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(codegen_suite)
