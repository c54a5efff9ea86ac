/* cgutil.h — helpers the back-end suites (test_plan, test_emit, test_infer,
 * test_codegen, test_cli) share: files and commands, the flags make wrote
 * for generated programs, optc itself, and IR graphs built by hand (no
 * front end needed). Run from the project root (make check does). */
#ifndef OPTC_CGUTIL_H
#define OPTC_CGUTIL_H
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "frontend.h"
#include "testutil.h"

/* --- helpers: files, commands ------------------------------------------- */

/* Run a shell command with stdout+stderr into *out (malloc'd); returns the
 * exit status. */
static inline int run(const char *cmd, char **out)
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
    char *text = tu_slurp(tmpl, NULL);
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
static inline const char *tail(const char *s)
{
    if (!s)
        return "";
    size_t n = strlen(s);
    return n > 1500 ? s + n - 1500 : s;
}

static inline char *tmpdir(void)
{
    char d[4096];
    tu_tmpdir(d, sizeof d, "codegen");
    return strdup(d);
}

/* OPTC_TEST_KEEP=1 keeps the temporary directories for inspection. */
static inline void rmtree(const char *dir)
{
    const char *keep = getenv("OPTC_TEST_KEEP");
    if (keep && *keep) {
        fprintf(stderr, "kept %s\n", dir);
        return;
    }
    tu_rmrf(dir);
}

/* The compile command make recorded for generated programs. */
typedef struct { char cc[1024], cflags[4096], include[1024], libs[4096]; } Flags;

static inline void flags_load(Flags *fl)
{
    char path[512];
    snprintf(path, sizeof path, "%s/optc.flags", tu_build_dir());
    char *text = tu_slurp(path, NULL);
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
static inline int compile(const char *src, const char *exe, char **log)
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

static inline void h_init(Hand *h, const char *name, int c, int hh, int w, int classes)
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
    n->stage = n->step = -1;
    n->shape = h->g.input;
    h->g.output = 0;
}

static inline int h_param(Hand *h, const char *name, IrParamKind kind, int ndim, const int *dims,
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

static inline int h_node(Hand *h, IrOp op, const char *what, int nin, const int *in, IrShape shape)
{
    ck_assert_int_lt(h->g.nnodes, HMAX);
    int i = h->g.nnodes++;
    IrNode *n = &h->nodes[i];
    n->id = i;
    n->op = op;
    snprintf(h->names[i], sizeof h->names[i], "n%d.%s", i, what);
    n->name = h->names[i];
    n->stage = n->step = -1;
    n->nin = nin;
    for (int k = 0; k < nin; k++)
        h->ins[i][k] = in[k];
    n->in = h->ins[i];
    n->shape = shape;
    h->g.output = i;
    return i;
}

static inline IrShape h_shape(Hand *h, int node) { return h->nodes[node].shape; }

static inline int conv_out(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }

static inline int h_conv(Hand *h, int x, int cout, int k, int stride)
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

static inline int h_bn(Hand *h, int x)
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

static inline int h_relu(Hand *h, int x) { return h_node(h, OP_RELU, "relu", 1, &x, h_shape(h, x)); }

/* sum_i c_i x_i; learned >= 0 makes coefficient 1 learned: c = 1 + 0.5*s. */
static inline int h_sum(Hand *h, int n, const int *xs, const double *c, int learned)
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

static inline int h_pad(Hand *h, int x, int cout, int stride)
{
    IrShape s = h_shape(h, x);
    IrShape o = { cout, (s.h + stride - 1) / stride, (s.w + stride - 1) / stride };
    int n = h_node(h, OP_PAD, "pad", 1, &x, o);
    h->nodes[n].u.pad.stride = stride;
    return n;
}

static inline int h_gap(Hand *h, int x)
{
    IrShape s = h_shape(h, x);
    return h_node(h, OP_GAP, "gap", 1, &x, (IrShape){ s.c, 1, 1 });
}

static inline int h_pool(Hand *h, int x, int k, int stride)
{
    IrShape s = h_shape(h, x);
    IrShape o = { s.c, (s.h - k) / stride + 1, (s.w - k) / stride + 1 };
    int n = h_node(h, OP_AVGPOOL, "avgpool", 1, &x, o);
    h->nodes[n].u.pool.k = k;
    h->nodes[n].u.pool.stride = stride;
    return n;
}

static inline int h_linear(Hand *h, int x, int out, bool bias)
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

static inline int h_exact(Hand *h, int x, int u, int m)
{
    int n = h_node(h, OP_EXACT, "exact", 1, &x, h_shape(h, x));
    h->nodes[n].u.exact.u = u;
    h->nodes[n].u.exact.m = m;
    snprintf(h->nodes[n].u.exact.phi, sizeof h->nodes[n].u.exact.phi, "relu");
    return n;
}

static inline int h_concat(Hand *h, int a, int b)
{
    int xs[2] = { a, b };
    IrShape s = h_shape(h, a);
    s.c += h_shape(h, b).c;
    return h_node(h, OP_CONCAT, "concat", 2, xs, s);
}

static inline int h_dropout(Hand *h, int x, double p)
{
    int n = h_node(h, OP_DROPOUT, "dropout", 1, &x, h_shape(h, x));
    h->nodes[n].u.dropout.p = p;
    return n;
}

/* A pre-activation residual block: x + conv(relu(bn(conv(relu(bn x))))),
 * with an option-A shortcut when it strides. */
static inline int h_block(Hand *h, int x, int cout, int stride)
{
    int y = h_conv(h, h_relu(h, h_bn(h, x)), cout, 3, stride);
    y = h_conv(h, h_relu(h, h_bn(h, y)), cout, 3, 1);
    int sc = stride > 1 || h_shape(h, x).c != cout ? h_pad(h, x, cout, stride) : x;
    int xs[2] = { sc, y };
    double c[2] = { 1, 1 };
    return h_sum(h, 2, xs, c, -1);
}

/* Tiny pre-activation ResNet on 1x8x8, 3 classes. */
static inline void h_resnet(Hand *h)
{
    h_init(h, "tiny_resnet", 1, 8, 8, 3);
    int x = h_conv(h, 0, 4, 3, 1);
    x = h_block(h, x, 4, 1);
    x = h_block(h, x, 8, 2);
    x = h_relu(h, h_bn(h, x));
    h_linear(h, h_gap(h, x), 3, true);
}

/* A tiny DenseNet-BC on 2x6x6, 3 classes: stage 1 is `steps` steps of
 * x = concat(x, conv3x3(relu(bn(conv1x1(relu(bn(x))))))), growth 2 from 4
 * channels. With break_at in [0, steps) the state after that step is also
 * read by a gap beside the head (an extra reader, so that state ends one
 * shared chain and the next starts another). Returns the ids of the
 * concats in cats[] (steps of them). */
static inline void h_dense(Hand *h, int steps, int break_at, int *cats)
{
    h_init(h, "tiny_dense", 2, 6, 6, 3);
    int x = h_conv(h, 0, 4, 3, 1), side = -1;
    for (int k = 0; k < steps; k++) {
        int first = h->g.nnodes;
        int c0 = h_conv(h, h_relu(h, h_bn(h, x)), 6, 1, 1);
        int g = h_conv(h, h_relu(h, h_bn(h, c0)), 2, 3, 1);
        x = cats[k] = h_concat(h, x, g);
        for (int i = first; i < h->g.nnodes; i++) {
            h->nodes[i].stage = 1;
            h->nodes[i].step = k;
        }
        if (k == break_at)
            side = x;
    }
    int y = h_gap(h, h_relu(h, h_bn(h, x)));
    if (side >= 0)
        y = h_concat(h, y, h_gap(h, side));
    h_linear(h, y, 3, true);
}

/* Every op at once: a learned heavy-ball sum, concat, pool, exact with a
 * shared U, dropout, a linear without bias. */
static inline void h_all(Hand *h)
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

/* --- optc itself ---------------------------------------------------------- */

static inline char *optc_cmd(const char *args)
{
    size_t n = strlen(tu_build_dir()) + strlen(args) + 16;
    char *cmd = malloc(n);
    ck_assert_ptr_nonnull(cmd);
    snprintf(cmd, n, "%s/optc %s", tu_build_dir(), args);
    return cmd;
}

/* Run optc with args; its stdout and stderr in *out (malloc'd); returns
 * the exit status (-1: it did not exit normally). */
static inline int optc_status(const char *args, char **out)
{
    char *cmd = optc_cmd(args);
    int st = run(cmd, out);
    free(cmd);
    ck_assert_ptr_nonnull(*out);
    return st;
}

/* Run optc with args; its output in *out; asserts success. */
static inline void optc_ok(const char *args, char **out)
{
    char *text = NULL;
    char **where = out ? out : &text;
    int st = optc_status(args, where);
    ck_assert_msg(st == 0, "optc %s: status %d\n%s", args, st, tail(*where));
    free(text);
}

/* Read column col (0-based) of data row row (0-based) of a CSV file. */
static inline double csv_value(const char *path, int row, int col)
{
    char *text = tu_slurp(path, NULL);
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

#endif
