/* emit_infer.c — a trained network as standalone C99 inference code
 * (optc emit --inference): DIR/NET.h (the interface), DIR/NET.c (the
 * forward pass, one static buffer, no allocation, libm at most) and
 * DIR/NET_weights.c (the weights as named const arrays).
 *
 * From the IR graph and a checkpoint:
 * - eval-mode BN directly after a convolution whose output feeds only that
 *   BN is folded into the convolution (w' = w * s, bias = shift); a
 *   one-input scaled sum directly after such a convolution is folded into
 *   it too; any other BN becomes a per-channel affine map;
 * - sum coefficients, fixed or learned, become constants (learned ones from
 *   the checkpoint's scalars, rounded to float as the runtime does);
 * - dropout and one-input sums with coefficient 1 are the identity: their
 *   tensor is their input's;
 * - the activation buffer is planned by liveness over the forward pass
 *   alone (plan_pack_lifetimes, plan.c), elementwise ops writing in place
 *   when their input dies there.
 *
 * Safety of the output: identifiers are the network's name (a C
 * identifier) and IR names with every byte outside [A-Za-z0-9_] made '_';
 * user text in comments passes through infer_comment, which cannot end a
 * comment or form a trigraph. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli.h"
#include "optable.h"
#include "plan.h"
#include "rt.h"

/* Inputs of one sum or concat the emitter handles. */
#define INFER_MAX_IN 256

/* Elementwise activations (runtime/act.def): the IR op (its op table text
 * names the generated helpers act_NAME(v, a) and apply_NAME(out, in, n, a)),
 * the body of act_NAME in float, and whether it needs libm. exact(phi) looks
 * phi up by name here. A new activation of act.def is one row. */
typedef struct {
    IrOp op;
    const char *body;
    bool libm;
} InferAct;

static const InferAct infer_acts[] = {
    { OP_RELU, "(void)a;\n    return v > 0.0f ? v : 0.0f;", false },
    { OP_LEAKY_RELU, "return v > 0.0f ? v : a * v;", false },
    { OP_ELU, "return v > 0.0f ? v : a * expm1f(v);", true },
    { OP_SIGMOID, "float e;\n    (void)a;\n    if (v >= 0.0f)\n"
      "        return 1.0f / (1.0f + expf(-v));\n    e = expf(v);\n    return e / (1.0f + e);",
      true },
    { OP_TANH, "(void)a;\n    return tanhf(v);", true },
    { OP_SOFTPLUS, "(void)a;\n    return (v > 0.0f ? v : 0.0f) + log1pf(expf(-fabsf(v)));",
      true },
    { OP_SOFTSIGN, "(void)a;\n    return v / (1.0f + fabsf(v));", true },
    { OP_SILU, "float e;\n    (void)a;\n    if (v >= 0.0f)\n"
      "        return v / (1.0f + expf(-v));\n    e = expf(v);\n    return v * e / (1.0f + e);",
      true },
    { OP_GELU, "(void)a;\n    return 0.5f * v * (1.0f + erff(v * 0.707106781f));", true },
};
#define INFER_NACTS ((int)(sizeof infer_acts / sizeof infer_acts[0]))
#define INFER_MAX_ACTS 32

static const InferAct *infer_act_op(IrOp op)
{
    for (int i = 0; i < INFER_NACTS; i++)
        if (infer_acts[i].op == op)
            return &infer_acts[i];
    return NULL;
}

static const InferAct *infer_act_name(const char *name)
{
    int op = op_find(name, OPF_ACT);
    return op < 0 ? NULL : infer_act_op((IrOp)op);
}

/* The name of act in the generated helpers ("relu": act_relu, apply_relu). */
static const char *infer_act_text(const InferAct *act)
{
    return op_info(act->op)->text;
}

/* How one IR node is realised. */
typedef struct {
    bool live;          /* its output reaches the logits */
    bool emit;          /* an op is written at this node */
    int alias;          /* >= 0: the identity of that node (dropout, 1 * x) */
    int folded_into;    /* >= 0: a conv / bn folded into that later node */
    int conv, bn;       /* chain ends: the conv and the bn folded into it (-1: none) */
    float scale;        /* chain ends: a folded one-input sum's coefficient (1: none) */
    int scale_node;     /* that sum, or -1 */
    int death;          /* the last node reading its tensor */
    int group;          /* storage: the node whose buffer it writes (in place) */
    int buf, scratch;   /* indices into bufs; -1 none */
    char *local;        /* its tensor's name in the generated code */
} InferNode;

/* One weight array of NET_weights.c. */
typedef struct {
    char *name;
    char *what;         /* comment: where it comes from */
    float *data;
    size_t n;
    int key, variant;   /* the parameter it is made of, and how; key -1: unique */
} InferArr;

typedef struct {
    const IrGraph *g;
    const char *lname;  /* the network name in lower case */
    float **param;      /* per IrParam, read from the checkpoint */
    InferNode *nd;
    PlanBuf *bufs;
    int nbufs;
    size_t extent;
    InferArr *arr;
    int narr, caparr;
    int *warr, *barr;   /* per node: arrays of its (folded) weight / bias, -1 none */
    RtNorm norm;        /* the input normalisation, as the data loader applies it */
    unsigned char used_act[INFER_MAX_ACTS]; /* per infer_acts row: 1 the function, 2 the loop */
    bool bad;
    FILE *diag;
} Infer;

static char *infer_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (!d)
        abort();
    memcpy(d, s, n);
    return d;
}

static char *infer_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *infer_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    if (!s)
        abort();
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* An IR name as a C identifier fragment: bytes outside [A-Za-z0-9_] -> '_'. */
static char *infer_ident(const char *s)
{
    char *d = infer_strdup(s ? s : "");
    for (char *c = d; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
            *c = '_';
    return d;
}

/* Text for a comment: printable ASCII except '*', '?' and '\\' (so it
 * cannot close the comment, open a nested one or form a trigraph). */
static void infer_comment(FILE *out, const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        fputc(*c >= 0x20 && *c < 0x7f && *c != '*' && *c != '?' && *c != '\\' ? *c : '_', out);
}

/* A float as a C literal that reads back to the same float. */
static void infer_float(FILE *out, float v)
{
    char s[48];
    snprintf(s, sizeof s, "%.9g", (double)v);
    if (!strpbrk(s, ".en"))
        strcat(s, ".0");
    fprintf(out, "%sf", s);
}

/* Add an array; one made the same way (key, variant) from the same
 * parameter as an earlier one (weights shared between steps, the theory
 * block's one U) is that one. */
static int infer_add_arr(Infer *in, char *name, char *what, float *data, size_t n, int key,
                         int variant)
{
    for (int i = 0; key >= 0 && i < in->narr; i++)
        if (in->arr[i].key == key && in->arr[i].variant == variant) {
            free(name);
            free(what);
            free(data);
            return i;
        }
    if (in->narr == in->caparr) {
        in->caparr = in->caparr ? 2 * in->caparr : 64;
        InferArr *na = realloc(in->arr, (size_t)in->caparr * sizeof *na);
        if (!na)
            abort();
        in->arr = na;
    }
    for (int i = 0; i < in->narr; i++)
        if (strcmp(in->arr[i].name, name) == 0) {   /* two IR names mapped to one */
            char *nn = infer_fmt("%s_%d", name, in->narr);
            free(name);
            name = nn;
        }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(data[i]))
            in->bad = true;
    in->arr[in->narr] = (InferArr){ name, what, data, n, key, variant };
    return in->narr++;
}

static float *infer_alloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p)
        abort();
    return p;
}

/* --- reading the checkpoint ------------------------------------------------ */

static int infer_norm(Infer *in, const EmitInferRequest *rq, const RtStFile *f)
{
    int C = in->g->input.c;
    if (C > RT_NORM_MAX_C) {
        fprintf(in->diag, "optc: %s: %d input channels; inference supports at most %d\n",
                in->g->name, C, RT_NORM_MAX_C);
        return -1;
    }
    const char *ms = rt_st_meta(f, "input_mean"), *ss = rt_st_meta(f, "input_std");
    const char *from = rq->weights, *why = NULL;
    char *copy = NULL;
    if (rq->norm) {
        copy = infer_strdup(rq->norm);
        char *colon = strchr(copy, ':');
        if (!colon) {
            fprintf(in->diag, "optc emit: --norm '%s': expected MEAN,...:STD,...\n", rq->norm);
            free(copy);
            return -1;
        }
        *colon = '\0';
        ms = copy;
        ss = colon + 1;
        from = "--norm";
    } else if (!ms || !ss) {
        fprintf(in->diag, "%s: error: the checkpoint holds no input normalisation (metadata "
                "input_mean and input_std); retrain it with a newer optc, or pass "
                "--norm MEAN,...:STD,... (one value per input channel)\n", rq->weights);
        return -1;
    }
    /* The runtime's own parser: the same values the data loader applies. */
    if (rt_norm_parse(&in->norm, C, ms, ss, &why) != 0) {
        fprintf(in->diag, "%s: error: input normalisation: %s\n", from, why);
        free(copy);
        return -1;
    }
    free(copy);
    return 0;
}

static int infer_read(Infer *in, const EmitInferRequest *rq)
{
    const IrGraph *g = in->g;
    RtErr err = { { 0 } };
    RtStFile *f = rt_st_open(rq->weights, &err);
    if (!f) {
        fprintf(in->diag, "optc emit: %s\n", err.msg);
        return -1;
    }
    const char *net = rt_st_meta(f, "net");
    if (net && strcmp(net, g->name) != 0) {
        fprintf(in->diag, "%s: error: checkpoint is from network '%s', not '%s'\n", rq->weights,
                net, g->name);
        rt_st_close(f);
        return -1;
    }
    in->param = calloc((size_t)g->nparams + 1, sizeof *in->param);
    if (!in->param)
        abort();
    for (int i = 0; i < g->nparams; i++) {
        const IrParam *p = &g->params[i];
        int ndim, dims[4];
        if (rt_st_shape(f, p->name, &ndim, dims) != 0) {
            fprintf(in->diag, "%s: error: tensor '%s' is missing (checkpoint not from network "
                    "'%s'?)\n", rq->weights, p->name, g->name);
            rt_st_close(f);
            return -1;
        }
        bool same = ndim == p->ndim;
        for (int d = 0; same && d < ndim; d++)
            same = dims[d] == p->dims[d];
        if (!same) {
            fprintf(in->diag, "%s: error: tensor '%s' has another shape than network '%s' "
                    "expects\n", rq->weights, p->name, g->name);
            rt_st_close(f);
            return -1;
        }
        in->param[i] = infer_alloc(p->numel);
        if (rt_st_read(f, p->name, in->param[i], p->numel, &err) != 0) {
            fprintf(in->diag, "optc emit: %s\n", err.msg);
            rt_st_close(f);
            return -1;
        }
    }
    int rc = infer_norm(in, rq, f);
    rt_st_close(f);
    return rc;
}

/* A sum coefficient as the runtime uses it: c0 + sum a_j * scalar_j in
 * double, rounded to float. */
static float infer_coef(const Infer *in, const IrCoef *c)
{
    double v = c->c0;
    for (int j = 0; j < c->nterms; j++)
        v += c->a[j] * (double)in->param[c->param[j]][0];
    return (float)v;
}

/* --- the forward plan ------------------------------------------------------ */

static int infer_res(const Infer *in, int n)
{
    while (in->nd[n].alias >= 0)
        n = in->nd[n].alias;
    return n;
}

/* The node whose inputs an emitted node reads: a chain end reads its conv's. */
static const IrNode *infer_src(const Infer *in, int n)
{
    return &in->g->nodes[in->nd[n].conv >= 0 ? in->nd[n].conv : n];
}

static bool infer_elementwise(const Infer *in, int n)
{
    const IrNode *x = &in->g->nodes[n];
    if (in->nd[n].conv >= 0)
        return false;
    return x->op == OP_BN || x->op == OP_SUM || infer_act_op(x->op) != NULL;
}

static int infer_plan(Infer *in)
{
    const IrGraph *g = in->g;
    int N = g->nnodes;
    InferNode *nd = in->nd;
    int *readers = calloc((size_t)N, sizeof *readers);
    if (!readers)
        abort();
    for (int i = 0; i < N; i++) {
        nd[i] = (InferNode){ .alias = -1, .folded_into = -1, .conv = -1, .bn = -1, .scale = 1.0f,
                             .scale_node = -1, .death = i, .group = -1, .buf = -1,
                             .scratch = -1 };
    }
    nd[g->output].live = true;
    for (int i = N - 1; i >= 0; i--)
        if (nd[i].live)
            for (int k = 0; k < g->nodes[i].nin; k++)
                nd[g->nodes[i].in[k]].live = true;
    /* Distinct live readers of each node. */
    for (int i = 1; i < N; i++) {
        const IrNode *x = &g->nodes[i];
        if (!nd[i].live)
            continue;
        for (int k = 0; k < x->nin; k++) {
            bool seen = false;
            for (int j = 0; j < k; j++)
                seen = seen || x->in[j] == x->in[k];
            if (!seen)
                readers[x->in[k]]++;
        }
    }
    for (int i = 1; i < N; i++) {
        const IrNode *x = &g->nodes[i];
        if (!nd[i].live)
            continue;
        if (x->nin > INFER_MAX_IN) {
            fprintf(in->diag, "optc: %s: node %s has %d inputs; inference handles at most %d\n",
                    g->name, x->name, x->nin, INFER_MAX_IN);
            free(readers);
            return -1;
        }
        int src = x->nin ? x->in[0] : -1;
        bool one_sum = x->op == OP_SUM && x->nin == 1;
        /* The identity: its tensor is its input's (not for the logits, which
         * are written to the caller's array). */
        if (i != g->output &&
            (x->op == OP_DROPOUT || (one_sum && infer_coef(in, &x->u.sum.coef[0]) == 1.0f))) {
            nd[i].alias = src;
            continue;
        }
        bool sole = src > 0 && readers[src] == 1 && src != g->output && nd[src].alias < 0;
        if (x->op == OP_BN && sole && g->nodes[src].op == OP_CONV) {
            nd[src].folded_into = i;
            nd[i].conv = src;
            nd[i].bn = i;
        } else if (one_sum && sole && (g->nodes[src].op == OP_CONV || nd[src].conv >= 0)) {
            nd[src].folded_into = i;
            nd[i].conv = nd[src].conv >= 0 ? nd[src].conv : src;
            nd[i].bn = nd[src].bn;
            nd[i].scale = (nd[src].conv >= 0 ? nd[src].scale : 1.0f) *
                          infer_coef(in, &x->u.sum.coef[0]);
            nd[i].scale_node = i;
        }
    }
    free(readers);
    for (int i = 0; i < N; i++)
        nd[i].emit = nd[i].live && nd[i].alias < 0 && nd[i].folded_into < 0;
    /* Deaths: the last emitted node reading each tensor. */
    for (int i = 1; i < N; i++) {
        if (!nd[i].emit)
            continue;
        const IrNode *s = infer_src(in, i);
        for (int k = 0; k < s->nin; k++) {
            int r = infer_res(in, s->in[k]);
            if (nd[r].death < i)
                nd[r].death = i;
        }
    }
    /* Storage: in place where an elementwise op's input dies at it. */
    int *last = malloc((size_t)N * sizeof *last);  /* per group root: its latest member */
    if (!last)
        abort();
    for (int i = 0; i < N; i++) {
        if (!nd[i].emit || i == g->output)
            continue;
        nd[i].group = i;
        last[i] = i;
        if (!infer_elementwise(in, i))
            continue;
        const IrNode *s = infer_src(in, i);
        for (int k = 0; k < s->nin; k++) {
            int r = infer_res(in, s->in[k]);
            if (r != g->output && nd[r].death == i && last[nd[r].group] == r) {
                nd[i].group = nd[r].group;
                last[nd[r].group] = i;
                break;
            }
        }
    }
    int cap = 2 * N + 2;
    in->bufs = calloc((size_t)cap, sizeof *in->bufs);
    if (!in->bufs)
        abort();
    for (int i = 0; i < N; i++) {
        if (nd[i].group != i)
            continue;
        /* Each member took the buffer over when the one before died at it, so
         * the group lives until its last member dies. */
        int death = nd[last[i]].death;
        PlanBuf *b = &in->bufs[in->nbufs];
        b->kind = PB_OUT;
        b->node = i;
        b->size_a = ir_numel(g->nodes[i].shape);
        b->birth = i;
        b->death = death;
        nd[i].buf = in->nbufs++;
    }
    for (int i = 0; i < N; i++) {
        if (nd[i].group >= 0 && nd[i].group != i)
            nd[i].buf = nd[nd[i].group].buf;
        if (nd[i].emit && g->nodes[i].op == OP_EXACT) {
            PlanBuf *b = &in->bufs[in->nbufs];
            b->kind = PB_SAVE0;
            b->node = i;
            b->size_a = (size_t)g->nodes[i].u.exact.m;
            b->birth = b->death = i;
            nd[i].scratch = in->nbufs++;
        }
    }
    free(last);
    in->extent = plan_pack_lifetimes(in->bufs, in->nbufs);
    if (plan_verify_lifetimes(in->bufs, in->nbufs, in->extent, in->diag) != 0)
        return -1;
    return 0;
}

/* --- names ----------------------------------------------------------------- */

static const char *const infer_reserved[] = {
    "act", "pixels", "logits", "xs", "c", "cs", "normalise", "conv2d", "affine", "sum",
    "concat", "pad_channels", "avgpool", "gap", "linear", "exact", "input_mean",
    "input_std",
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "size_t", "NULL",
};

static void infer_names(Infer *in)
{
    const IrGraph *g = in->g;
    for (int i = 0; i < g->nnodes; i++) {
        if (!in->nd[i].emit || i == g->output)
            continue;
        char *s = infer_ident(i == 0 ? "input" : g->nodes[i].name);
        bool clash = s[0] == '\0' || (s[0] >= '0' && s[0] <= '9');
        for (size_t k = 0; !clash && k < sizeof infer_reserved / sizeof *infer_reserved; k++)
            clash = strcmp(s, infer_reserved[k]) == 0 || infer_act_name(s) ||
                    strncmp(s, "act_", 4) == 0 || strncmp(s, "apply_", 6) == 0;
        for (int j = 0; !clash && j < i; j++)
            clash = in->nd[j].local && strcmp(in->nd[j].local, s) == 0;
        if (clash) {
            char *t = infer_fmt("t%d_%s", i, s);
            free(s);
            s = t;
        }
        in->nd[i].local = s;
    }
}

/* The C expression of node n's tensor. */
static const char *infer_t(const Infer *in, int n)
{
    n = infer_res(in, n);
    return n == in->g->output ? "logits" : in->nd[n].local;
}

/* --- weights --------------------------------------------------------------- */

/* The weight (and bias) arrays of the emitted nodes, folded. */
static void infer_weights(Infer *in)
{
    const IrGraph *g = in->g;
    for (int i = 0; i < g->nnodes; i++) {
        in->warr[i] = in->barr[i] = -1;
        if (!in->nd[i].emit)
            continue;
        const IrNode *x = &g->nodes[i];
        const InferNode *n = &in->nd[i];
        if (n->conv >= 0 || x->op == OP_CONV) {
            const IrNode *cv = infer_src(in, i);
            const IrParam *wp = &g->params[cv->u.conv.w];
            int cout = cv->u.conv.cout;
            size_t per = wp->numel / (size_t)cout;
            float *w = infer_alloc(wp->numel), *b = NULL;
            const float *w0 = in->param[cv->u.conv.w];
            char *what = infer_fmt("%s", wp->name);
            if (n->bn >= 0) {
                const IrNode *bn = &g->nodes[n->bn];
                const float *ga = in->param[bn->u.bn.gamma], *be = in->param[bn->u.bn.beta];
                const float *mu = in->param[bn->u.bn.mean], *va = in->param[bn->u.bn.var];
                b = infer_alloc((size_t)cout);
                for (int o = 0; o < cout; o++) {
                    double sc = (double)ga[o] / sqrt((double)va[o] + bn->u.bn.eps);
                    double sh = (double)be[o] - (double)mu[o] * sc;
                    for (size_t j = 0; j < per; j++)
                        w[(size_t)o * per + j] =
                            (float)((double)w0[(size_t)o * per + j] * sc * (double)n->scale);
                    b[o] = (float)(sh * (double)n->scale);
                }
                char *t = infer_fmt("%s with %s folded in", what, bn->name);
                free(what);
                what = t;
            } else {
                for (size_t j = 0; j < wp->numel; j++)
                    w[j] = (float)((double)w0[j] * (double)n->scale);
            }
            if (n->scale_node >= 0) {
                char *t = infer_fmt("%s, times %.9g (%s)", what, (double)n->scale,
                                    g->nodes[n->scale_node].name);
                free(what);
                what = t;
            }
            char *base = infer_ident(wp->name);
            size_t bl = strlen(base);
            if (bl > 7 && strcmp(base + bl - 7, "_weight") == 0)
                base[bl - 7] = '\0';
            bool plain = n->bn < 0 && n->scale_node < 0;
            in->warr[i] = infer_add_arr(in, infer_fmt("%s_%s_weight", in->lname, base),
                                        what, w, wp->numel, plain ? cv->u.conv.w : -1, 0);
            if (b)
                in->barr[i] = infer_add_arr(in, infer_fmt("%s_%s_bias", in->lname, base),
                                            infer_fmt("%s: shift of %s", wp->name,
                                                      g->nodes[n->bn].name),
                                            b, (size_t)cout, -1, 0);
            free(base);
        } else if (x->op == OP_BN) {
            int C = x->shape.c;
            float *s = infer_alloc((size_t)C), *b = infer_alloc((size_t)C);
            const float *ga = in->param[x->u.bn.gamma], *be = in->param[x->u.bn.beta];
            const float *mu = in->param[x->u.bn.mean], *va = in->param[x->u.bn.var];
            for (int c = 0; c < C; c++) {
                double sc = (double)ga[c] / sqrt((double)va[c] + x->u.bn.eps);
                s[c] = (float)sc;
                b[c] = (float)((double)be[c] - (double)mu[c] * sc);
            }
            char *id = infer_ident(x->name);
            in->warr[i] = infer_add_arr(in, infer_fmt("%s_%s_scale", in->lname, id),
                                        infer_fmt("%s: weight / sqrt(running_var + eps)",
                                                  x->name), s, (size_t)C, x->u.bn.gamma, 1);
            in->barr[i] = infer_add_arr(in, infer_fmt("%s_%s_shift", in->lname, id),
                                        infer_fmt("%s: bias - running_mean * scale", x->name),
                                        b, (size_t)C, x->u.bn.gamma, 2);
            free(id);
        } else if (x->op == OP_LINEAR || x->op == OP_EXACT) {
            int wi = x->op == OP_LINEAR ? x->u.linear.w : x->u.exact.u;
            const IrParam *wp = &g->params[wi];
            float *w = infer_alloc(wp->numel);
            memcpy(w, in->param[wi], wp->numel * sizeof *w);
            char *id = infer_ident(wp->name);
            in->warr[i] = infer_add_arr(in, infer_fmt("%s_%s", in->lname, id),
                                        infer_fmt("%s", wp->name), w, wp->numel, wi, 0);
            free(id);
            if (x->op == OP_LINEAR && x->u.linear.b >= 0) {
                const IrParam *bp = &g->params[x->u.linear.b];
                float *b = infer_alloc(bp->numel);
                memcpy(b, in->param[x->u.linear.b], bp->numel * sizeof *b);
                id = infer_ident(bp->name);
                in->barr[i] = infer_add_arr(in, infer_fmt("%s_%s", in->lname, id),
                                            infer_fmt("%s", bp->name), b, bp->numel,
                                            x->u.linear.b, 0);
                free(id);
            }
        }
    }
}

static int infer_write_weights(const Infer *in, FILE *out, const EmitInferRequest *rq)
{
    fprintf(out, "/* Weights of network ");
    infer_comment(out, in->g->name);
    fprintf(out, " for %s.c, generated by optc %s from\n * ", in->g->name, OPTC_VERSION);
    infer_comment(out, rq->weights);
    fprintf(out, "; do not edit.\n * Eval-mode BN is folded in where the comment says so. */\n");
    size_t total = 0;
    for (int a = 0; a < in->narr; a++) {
        const InferArr *x = &in->arr[a];
        fprintf(out, "\n/* ");
        infer_comment(out, x->what);
        fprintf(out, " */\nconst float %s[%zu] = {", x->name, x->n);
        for (size_t i = 0; i < x->n; i++) {
            fputs(i % 8 ? " " : "\n    ", out);
            infer_float(out, x->data[i]);
            fputc(',', out);
        }
        fputs("\n};\n", out);
        total += x->n;
    }
    if (in->narr == 0)  /* ISO C forbids an empty translation unit */
        fprintf(out, "\ntypedef int %s_no_weights;\n", in->lname);
    fprintf(out, "\n/* %zu values in %d arrays. */\n", total, in->narr);
    return 0;
}

/* --- the code -------------------------------------------------------------- */

/* The helpers NET.c calls, each written only when used. */
enum { H_NORM, H_CONV, H_AFFINE, H_SUM, H_CONCAT, H_PAD, H_AVGPOOL, H_GAP, H_LINEAR, H_EXACT,
       H_COUNT };

static const char *const infer_helpers[H_COUNT] = {
    [H_NORM] =
    "/* out[c][i] = (pixels[c][i] - mean[c]) / std[c], as the training data was. */\n"
    "static void normalise(float *out, const float *pixels, const float *mean,\n"
    "                      const float *std, int C, int HW)\n"
    "{\n"
    "    for (int c = 0; c < C; c++)\n"
    "        for (int i = 0; i < HW; i++)\n"
    "            out[c * HW + i] = (pixels[c * HW + i] - mean[c]) / std[c];\n"
    "}\n",
    [H_CONV] =
    "/* out[Cout][Ho][Wo] = bias + conv(in[Cin][H][W], w[Cout][Cin][K][K]), zero\n"
    " * padding pad; bias[Cout] may be NULL. */\n"
    "static void conv2d(float *out, const float *in, const float *w, const float *bias,\n"
    "                   int Cin, int H, int W, int Cout, int K, int stride, int pad)\n"
    "{\n"
    "    int Ho = (H + 2 * pad - K) / stride + 1, Wo = (W + 2 * pad - K) / stride + 1;\n"
    "    for (int co = 0; co < Cout; co++) {\n"
    "        float *o = out + co * Ho * Wo;\n"
    "        float b = bias ? bias[co] : 0.0f;\n"
    "        for (int i = 0; i < Ho * Wo; i++)\n"
    "            o[i] = b;\n"
    "        for (int ci = 0; ci < Cin; ci++)\n"
    "            for (int ky = 0; ky < K; ky++)\n"
    "                for (int kx = 0; kx < K; kx++) {\n"
    "                    float wv = w[((co * Cin + ci) * K + ky) * K + kx];\n"
    "                    /* the output columns whose input column lies in [0, W) */\n"
    "                    int lo = 0, hi = Wo;\n"
    "                    while (lo < Wo && lo * stride + kx - pad < 0)\n"
    "                        lo++;\n"
    "                    while (hi > lo && (hi - 1) * stride + kx - pad >= W)\n"
    "                        hi--;\n"
    "                    for (int oy = 0; oy < Ho; oy++) {\n"
    "                        int y = oy * stride + ky - pad;\n"
    "                        if (y < 0 || y >= H)\n"
    "                            continue;\n"
    "                        const float *s = in + (ci * H + y) * W + kx - pad;\n"
    "                        float *d = o + oy * Wo;\n"
    "                        if (stride == 1)\n"
    "                            for (int ox = lo; ox < hi; ox++)\n"
    "                                d[ox] += wv * s[ox];\n"
    "                        else\n"
    "                            for (int ox = lo; ox < hi; ox++)\n"
    "                                d[ox] += wv * s[ox * stride];\n"
    "                    }\n"
    "                }\n"
    "    }\n"
    "}\n",
    [H_AFFINE] =
    "/* Eval-mode batch norm: out[c][i] = in[c][i] * scale[c] + shift[c] (in place\n"
    " * allowed). */\n"
    "static void affine(float *out, const float *in, const float *scale, const float *shift,\n"
    "                   int C, int HW)\n"
    "{\n"
    "    for (int c = 0; c < C; c++)\n"
    "        for (int i = 0; i < HW; i++)\n"
    "            out[c * HW + i] = in[c * HW + i] * scale[c] + shift[c];\n"
    "}\n",
    [H_SUM] =
    "/* out[j] = sum_i c[i] xs[i][j] (out may be one of the inputs). */\n"
    "static void sum(float *out, int n, const float *const *xs, const float *c, int len)\n"
    "{\n"
    "    for (int j = 0; j < len; j++) {\n"
    "        float s = 0.0f;\n"
    "        for (int i = 0; i < n; i++)\n"
    "            s += c[i] * xs[i][j];\n"
    "        out[j] = s;\n"
    "    }\n"
    "}\n",
    [H_CONCAT] =
    "/* Channel concatenation: out[sum cs][HW] from xs[i][cs[i]][HW]. */\n"
    "static void concat(float *out, int n, const float *const *xs, const int *cs, int HW)\n"
    "{\n"
    "    for (int i = 0; i < n; i++)\n"
    "        for (int j = 0; j < cs[i] * HW; j++)\n"
    "            *out++ = xs[i][j];\n"
    "}\n",
    [H_PAD] =
    "/* Option-A shortcut: every stride-th pixel of the Cin channels, then zero\n"
    " * channels up to Cout. */\n"
    "static void pad_channels(float *out, const float *in, int Cin, int H, int W, int Cout,\n"
    "                         int stride)\n"
    "{\n"
    "    int Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;\n"
    "    for (int c = 0; c < Cout; c++)\n"
    "        for (int i = 0; i < Ho; i++)\n"
    "            for (int j = 0; j < Wo; j++)\n"
    "                out[(c * Ho + i) * Wo + j] =\n"
    "                    c < Cin ? in[(c * H + i * stride) * W + j * stride] : 0.0f;\n"
    "}\n",
    [H_AVGPOOL] =
    "/* K x K average pooling with stride, no padding. */\n"
    "static void avgpool(float *out, const float *in, int C, int H, int W, int K, int stride)\n"
    "{\n"
    "    int Ho = (H - K) / stride + 1, Wo = (W - K) / stride + 1;\n"
    "    for (int c = 0; c < C; c++)\n"
    "        for (int i = 0; i < Ho; i++)\n"
    "            for (int j = 0; j < Wo; j++) {\n"
    "                float s = 0.0f;\n"
    "                for (int ky = 0; ky < K; ky++)\n"
    "                    for (int kx = 0; kx < K; kx++)\n"
    "                        s += in[(c * H + i * stride + ky) * W + j * stride + kx];\n"
    "                out[(c * Ho + i) * Wo + j] = s / (float)(K * K);\n"
    "            }\n"
    "}\n",
    [H_GAP] =
    "/* Global average pooling: out[c] = mean of in[c][HW]. */\n"
    "static void gap(float *out, const float *in, int C, int HW)\n"
    "{\n"
    "    for (int c = 0; c < C; c++) {\n"
    "        float s = 0.0f;\n"
    "        for (int i = 0; i < HW; i++)\n"
    "            s += in[c * HW + i];\n"
    "        out[c] = s / (float)HW;\n"
    "    }\n"
    "}\n",
    [H_LINEAR] =
    "/* out[OUT] = w[OUT][IN] in[IN] + b[OUT] (b may be NULL). */\n"
    "static void linear(float *out, const float *in, const float *w, const float *b, int IN,\n"
    "                   int OUT)\n"
    "{\n"
    "    for (int o = 0; o < OUT; o++) {\n"
    "        float s = 0.0f;\n"
    "        for (int i = 0; i < IN; i++)\n"
    "            s += w[o * IN + i] * in[i];\n"
    "        out[o] = b ? s + b[o] : s;\n"
    "    }\n"
    "}\n",
    [H_EXACT] =
    "/* The theory block: a = in U, out = in - phi(a) U^T, U[d][m]; a[m] is scratch. */\n"
    "static void exact(float *out, float *a, const float *in, const float *U, int d, int m,\n"
    "                  float (*phi)(float, float), float alpha)\n"
    "{\n"
    "    for (int j = 0; j < m; j++)\n"
    "        a[j] = 0.0f;\n"
    "    for (int i = 0; i < d; i++)\n"
    "        for (int j = 0; j < m; j++)\n"
    "            a[j] += in[i] * U[i * m + j];\n"
    "    for (int j = 0; j < m; j++)\n"
    "        a[j] = phi(a[j], alpha);\n"
    "    for (int i = 0; i < d; i++) {\n"
    "        float s = 0.0f;\n"
    "        for (int j = 0; j < m; j++)\n"
    "            s += a[j] * U[i * m + j];\n"
    "        out[i] = in[i] - s;\n"
    "    }\n"
    "}\n",
};

/* "CxHxW" of a shape. */
static char *infer_shape(IrShape s)
{
    return infer_fmt("%dx%dx%d", s.c, s.h, s.w);
}

/* The output pointer of emitted node i: a declaration line for planned
 * buffers, the caller's logits for the output. */
static const char *infer_decl(Infer *in, FILE *out, int i)
{
    const InferNode *n = &in->nd[i];
    if (i == in->g->output)
        return "logits";
    const PlanBuf *b = &in->bufs[n->buf];
    char *sh = infer_shape(in->g->nodes[i].shape);
    fprintf(out, "    float *const %s = act + %zu;   /* %s%s */\n", n->local, b->off_a, sh,
            n->group != i ? ", in place" : "");
    free(sh);
    return n->local;
}

static void infer_op_comment(Infer *in, FILE *out, int i)
{
    const IrGraph *g = in->g;
    const IrNode *x = &g->nodes[i];
    const InferNode *n = &in->nd[i];
    fprintf(out, "\n    /* %d ", i);
    if (n->conv >= 0) {
        const IrNode *cv = &g->nodes[n->conv];
        infer_comment(out, cv->name);
        if (n->bn >= 0) {
            fputs(" + ", out);
            infer_comment(out, g->nodes[n->bn].name);
        }
        if (n->scale_node >= 0) {
            fputs(" + ", out);
            infer_comment(out, g->nodes[n->scale_node].name);
        }
        fprintf(out, ": conv %dx%d stride %d pad %d%s", cv->u.conv.k, cv->u.conv.k,
                cv->u.conv.stride, cv->u.conv.pad, n->bn >= 0 ? ", bn folded" : "");
        if (n->scale_node >= 0)
            fprintf(out, ", times %.9g folded", (double)n->scale);
    } else {
        infer_comment(out, i == 0 ? "input" : x->name);
        switch (x->op) {
        case OP_INPUT: fputs(": normalise", out); break;
        case OP_CONV:
            fprintf(out, ": conv %dx%d stride %d pad %d", x->u.conv.k, x->u.conv.k,
                    x->u.conv.stride, x->u.conv.pad);
            break;
        case OP_BN: fputs(": bn (eval), per-channel affine", out); break;
        case OP_SUM: {
            fputs(" =", out);
            for (int k = 0; k < x->nin; k++) {
                fprintf(out, "%s%.9g * ", k ? " + " : " ",
                        (double)infer_coef(in, &x->u.sum.coef[k]));
                infer_comment(out, g->nodes[x->in[k]].name);
            }
            break;
        }
        case OP_CONCAT: fprintf(out, ": concat of %d", x->nin); break;
        case OP_PAD: fprintf(out, ": shortcut pad, stride %d", x->u.pad.stride); break;
        case OP_AVGPOOL:
            fprintf(out, ": avgpool %dx%d stride %d", x->u.pool.k, x->u.pool.k,
                    x->u.pool.stride);
            break;
        case OP_GAP: fputs(": global average pool", out); break;
        case OP_LINEAR: fputs(": linear", out); break;
        case OP_EXACT: fprintf(out, ": exact(%s, %d)", x->u.exact.phi, x->u.exact.m); break;
        case OP_DROPOUT: fputs(": dropout, the identity at inference", out); break;
        default: {  /* the activations (infer_acts) */
            const InferAct *act = infer_act_op(x->op);
            if (act)
                fprintf(out, ": %s", infer_act_text(act));
            break;
        }
        }
    }
    const IrShape *is = x->nin ? &g->nodes[infer_src(in, i)->in[0]].shape : &x->shape;
    fprintf(out, ", %dx%dx%d -> %dx%dx%d */\n", is->c, is->h, is->w, x->shape.c, x->shape.h,
            x->shape.w);
}

/* One forward op; marks the helpers it calls in used[]. */
static void infer_op(Infer *in, FILE *out, int i, bool *used)
{
    const IrGraph *g = in->g;
    const IrNode *x = &g->nodes[i];
    const InferNode *n = &in->nd[i];
    infer_op_comment(in, out, i);
    const char *y = infer_decl(in, out, i);
    const IrNode *s = infer_src(in, i);
    const IrShape *is = s->nin ? &g->nodes[s->in[0]].shape : &x->shape;
    const char *a = s->nin ? infer_t(in, s->in[0]) : "pixels";
    const char *W = in->warr[i] >= 0 ? in->arr[in->warr[i]].name : "NULL";
    const char *Bs = in->barr[i] >= 0 ? in->arr[in->barr[i]].name : "NULL";
    int hw = x->shape.h * x->shape.w;
    size_t len = ir_numel(x->shape);
    if (n->conv >= 0 || x->op == OP_CONV) {
        used[H_CONV] = true;
        fprintf(out, "    conv2d(%s, %s, %s, %s, %d, %d, %d, %d, %d, %d, %d);\n", y, a, W, Bs,
                is->c, is->h, is->w, s->u.conv.cout, s->u.conv.k, s->u.conv.stride,
                s->u.conv.pad);
        return;
    }
    const InferAct *act = infer_act_op(x->op);
    if (act) {
        in->used_act[act - infer_acts] |= 3;
        fprintf(out, "    apply_%s(%s, %s, %zu, ", infer_act_text(act), y, a, len);
        infer_float(out, (float)x->u.act.a);
        fputs(");\n", out);
        return;
    }
    switch (x->op) {
    case OP_INPUT:
        used[H_NORM] = true;
        fprintf(out, "    normalise(%s, pixels, input_mean, input_std, %d, %d);\n", y,
                x->shape.c, hw);
        break;
    case OP_BN:
        used[H_AFFINE] = true;
        fprintf(out, "    affine(%s, %s, %s, %s, %d, %d);\n", y, a, W, Bs, x->shape.c, hw);
        break;
    case OP_SUM: case OP_DROPOUT:   /* a dropout here is the logits: a copy */
        used[H_SUM] = true;
        fprintf(out, "    {\n        const float *const xs[%d] = {", x->nin);
        for (int k = 0; k < x->nin; k++)
            fprintf(out, "%s%s", k ? ", " : " ", infer_t(in, x->in[k]));
        fprintf(out, " };\n        static const float c[%d] = {", x->nin);
        for (int k = 0; k < x->nin; k++) {
            fputs(k ? ", " : " ", out);
            infer_float(out, x->op == OP_SUM ? infer_coef(in, &x->u.sum.coef[k]) : 1.0f);
        }
        fprintf(out, " };\n        sum(%s, %d, xs, c, %zu);\n    }\n", y, x->nin, len);
        break;
    case OP_CONCAT:
        used[H_CONCAT] = true;
        fprintf(out, "    {\n        const float *const xs[%d] = {", x->nin);
        for (int k = 0; k < x->nin; k++)
            fprintf(out, "%s%s", k ? ", " : " ", infer_t(in, x->in[k]));
        fprintf(out, " };\n        static const int cs[%d] = {", x->nin);
        for (int k = 0; k < x->nin; k++)
            fprintf(out, "%s%d", k ? ", " : " ", g->nodes[x->in[k]].shape.c);
        fprintf(out, " };\n        concat(%s, %d, xs, cs, %d);\n    }\n", y, x->nin, hw);
        break;
    case OP_PAD:
        used[H_PAD] = true;
        fprintf(out, "    pad_channels(%s, %s, %d, %d, %d, %d, %d);\n", y, a, is->c, is->h,
                is->w, x->shape.c, x->u.pad.stride);
        break;
    case OP_AVGPOOL:
        used[H_AVGPOOL] = true;
        fprintf(out, "    avgpool(%s, %s, %d, %d, %d, %d, %d);\n", y, a, is->c, is->h, is->w,
                x->u.pool.k, x->u.pool.stride);
        break;
    case OP_GAP:
        used[H_GAP] = true;
        fprintf(out, "    gap(%s, %s, %d, %d);\n", y, a, is->c, is->h * is->w);
        break;
    case OP_LINEAR:
        used[H_LINEAR] = true;
        fprintf(out, "    linear(%s, %s, %s, %s, %zu, %d);\n", y, a, W, Bs, ir_numel(*is),
                x->shape.c);
        break;
    case OP_EXACT: {
        const InferAct *phi = infer_act_name(x->u.exact.phi);
        if (!phi)   /* emit_infer refused the graph already */
            abort();
        used[H_EXACT] = true;
        in->used_act[phi - infer_acts] |= 1;
        fprintf(out, "    exact(%s, act + %zu, %s, %s, %zu, %d, act_%s, ", y,
                in->bufs[n->scratch].off_a, a, W, ir_numel(*is), x->u.exact.m, infer_act_text(phi));
        infer_float(out, (float)x->u.exact.alpha);
        fputs(");\n", out);
        break;
    }
    default:    /* conv and the activations are written above */
        break;
    }
}

static int infer_write_code(Infer *in, FILE *out, const EmitInferRequest *rq)
{
    const IrGraph *g = in->g;
    /* The body first, into memory: it decides which helpers are written. */
    char *body = NULL;
    size_t blen = 0;
    FILE *bf = open_memstream(&body, &blen);
    if (!bf)
        abort();
    bool used[H_COUNT] = { false };
    int nops = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (in->nd[i].emit) {
            infer_op(in, bf, i, used);
            nops++;
        }
    if (fclose(bf) != 0)
        abort();

    size_t naive = 0;
    for (int b = 0; b < in->nbufs; b++)
        naive += in->bufs[b].size_a;
    bool libm = false;
    for (int a = 0; a < INFER_NACTS; a++)
        libm = libm || (in->used_act[a] && infer_acts[a].libm);
    fprintf(out, "/* Inference code of network ");
    infer_comment(out, g->name);
    fprintf(out, ", generated by optc %s; do not edit.\n *\n * Command: ", OPTC_VERSION);
    infer_comment(out, rq->command ? rq->command : "");
    fputs("\n * Spec: ", out);
    infer_comment(out, rq->spec_path ? rq->spec_path : "");
    fputs("\n * Weights: ", out);
    infer_comment(out, rq->weights);
    fprintf(out, " (in %s_weights.c)\n", g->name);
    fprintf(out, " * Input %dx%dx%d, %d classes; %d ops after folding (%d in the graph).\n",
            g->input.c, g->input.h, g->input.w, g->classes, nops, g->nnodes);
    fprintf(out, " * One static buffer of %zu floats (%zu without reuse): %s_predict is not\n"
                 " * reentrant. C99, no allocation, %s.\n */\n", in->extent, naive, in->lname,
            libm ? "libm" : "no library calls");
    fprintf(out, "#include <stddef.h>\n%s#include \"%s.h\"\n", libm ? "#include <math.h>\n" : "",
            g->name);

    fprintf(out, "\n/* The weights (%s_weights.c). */\n", g->name);
    for (int a = 0; a < in->narr; a++)
        fprintf(out, "extern const float %s[%zu];\n", in->arr[a].name, in->arr[a].n);

    fprintf(out, "\n/* The input normalisation of the training data: (x - mean) / std. */\n");
    fprintf(out, "static const float input_mean[%d] = {", g->input.c);
    for (int c = 0; c < g->input.c; c++) {
        fputs(c ? ", " : " ", out);
        infer_float(out, in->norm.mean[c]);
    }
    fprintf(out, " };\nstatic const float input_std[%d] = {", g->input.c);
    for (int c = 0; c < g->input.c; c++) {
        fputs(c ? ", " : " ", out);
        infer_float(out, in->norm.std[c]);
    }
    fprintf(out, " };\n");

    for (int a = 0; a < INFER_NACTS; a++) {
        const char *nm = infer_act_text(&infer_acts[a]);
        if (in->used_act[a])
            fprintf(out, "\nstatic float act_%s(float v, float a)\n{\n    %s\n}\n", nm,
                    infer_acts[a].body);
        if (in->used_act[a] & 2)
            fprintf(out, "\n/* out[i] = %s(in[i]) (in place allowed); a: its argument. */\n"
                         "static void apply_%s(float *out, const float *in, int n, float a)\n{\n"
                         "    for (int i = 0; i < n; i++)\n"
                         "        out[i] = act_%s(in[i], a);\n}\n", nm, nm, nm);
    }
    for (int h = 0; h < H_COUNT; h++)
        if (used[h])
            fprintf(out, "\n%s", infer_helpers[h]);

    fprintf(out, "\n/* Every activation, placed by liveness over the forward pass. */\n"
                 "static float act[%zu];\n", in->extent ? in->extent : 1);
    fprintf(out, "\nvoid %s_predict(const float *pixels, float *logits)\n{", in->lname);
    fwrite(body, 1, blen, out);
    fprintf(out, "}\n");
    free(body);
    return 0;
}

static int infer_write_header(const Infer *in, FILE *out)
{
    const IrGraph *g = in->g;
    char *up = infer_strdup(g->name);
    for (char *c = up; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    fprintf(out, "/* Standalone inference of network ");
    infer_comment(out, g->name);
    fprintf(out, ", generated by optc %s; do not edit. */\n", OPTC_VERSION);
    fprintf(out, "#ifndef %s_H\n#define %s_H\n\n", up, up);
    fprintf(out, "#define %s_INPUT_C %d\n#define %s_INPUT_H %d\n#define %s_INPUT_W %d\n"
                 "#define %s_CLASSES %d\n\n", up, g->input.c, up, g->input.h, up, g->input.w,
            up, g->classes);
    fprintf(out, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    fprintf(out, "/* One image, C x H x W, pixels in [0, 1]; the checkpoint's normalisation is\n"
                 " * applied inside; logits[%s_CLASSES]. Not reentrant: one static buffer. */\n"
                 "void %s_predict(const float *pixels, float *logits);\n\n", up, in->lname);
    fprintf(out, "#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
    free(up);
    return 0;
}

/* --- files ----------------------------------------------------------------- */

typedef int (*InferWriter)(Infer *in, FILE *out, const EmitInferRequest *rq);

static int infer_w_header(Infer *in, FILE *out, const EmitInferRequest *rq)
{
    (void)rq;
    return infer_write_header(in, out);
}

static int infer_w_weights(Infer *in, FILE *out, const EmitInferRequest *rq)
{
    return infer_write_weights(in, out, rq);
}

/* Write the three files to temporaries, then rename them all into place. */
static int infer_files(Infer *in, const EmitInferRequest *rq)
{
    static const char *const suffix[3] = { ".h", ".c", "_weights.c" };
    InferWriter writers[3] = { infer_w_header, infer_write_code, infer_w_weights };
    char *path[3], *tmp[3];
    int rc = 0, made = 0;
    if (mkdir(rq->dir, 0777) != 0 && errno != EEXIST) {
        fprintf(in->diag, "optc emit: cannot create %s: %s\n", rq->dir, strerror(errno));
        return -1;
    }
    for (int k = 0; k < 3 && rc == 0; k++) {
        path[k] = infer_fmt("%s/%s%s", rq->dir, in->g->name, suffix[k]);
        tmp[k] = infer_fmt("%s.tmp%ld", path[k], (long)getpid());
        made++;
        FILE *f = fopen(tmp[k], "w");
        if (!f) {
            fprintf(in->diag, "optc emit: cannot write %s: %s\n", tmp[k], strerror(errno));
            rc = -1;
            break;
        }
        rc = writers[k](in, f, rq);
        if (ferror(f))
            rc = -1;
        if (fclose(f) != 0)
            rc = -1;
        if (rc != 0)
            fprintf(in->diag, "optc emit: cannot write %s: %s\n", tmp[k], strerror(errno));
    }
    for (int k = 0; k < made; k++) {
        if (rc == 0 && rename(tmp[k], path[k]) != 0) {
            fprintf(in->diag, "optc emit: cannot write %s: %s\n", path[k], strerror(errno));
            rc = -1;
        }
        if (rc != 0)
            remove(tmp[k]);
        free(path[k]);
        free(tmp[k]);
    }
    return rc;
}

int emit_infer(const EmitInferRequest *rq, FILE *diag)
{
    const IrGraph *g = rq->g;
    Infer in0 = { .g = g, .diag = diag }, *in = &in0;
    int rc = -1;
    char *lname = infer_strdup(g->name);
    for (char *c = lname; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    in->lname = lname;
    in->nd = calloc((size_t)g->nnodes, sizeof *in->nd);
    in->warr = calloc((size_t)g->nnodes, sizeof *in->warr);
    in->barr = calloc((size_t)g->nnodes, sizeof *in->barr);
    if (!in->nd || !in->warr || !in->barr)
        abort();
    /* The graph must be one the back end plans (no abstract grad, exact(relu)...). */
    Plan *p = plan_build(g, diag);
    if (!p)
        goto done;
    plan_free(p);
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == OP_EXACT && !infer_act_name(g->nodes[i].u.exact.phi)) {
            fprintf(diag, "optc: %s: exact(%s) has no inference code\n", g->name,
                    g->nodes[i].u.exact.phi);
            goto done;
        }
    if (infer_read(in, rq) != 0 || infer_plan(in) != 0)
        goto done;
    infer_names(in);
    infer_weights(in);
    if (in->bad) {
        fprintf(diag, "%s: error: a weight is not finite (inf or nan); nothing written\n",
                rq->weights);
        goto done;
    }
    rc = infer_files(in, rq);
done:
    for (int i = 0; in->param && i < g->nparams; i++)
        free(in->param[i]);
    free(in->param);
    for (int i = 0; i < g->nnodes; i++)
        free(in->nd[i].local);
    for (int a = 0; a < in->narr; a++) {
        free(in->arr[a].name);
        free(in->arr[a].what);
        free(in->arr[a].data);
    }
    free(in->arr);
    free(in->nd);
    free(in->warr);
    free(in->barr);
    free(in->bufs);
    free(lname);
    return rc;
}
