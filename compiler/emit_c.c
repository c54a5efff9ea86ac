/* emit_c.c — one C file per network: straight-line forward and backward
 * calls into the runtime with every shape and offset a constant (plan.h).
 *
 * Safety of the output: user text reaches the file only in the opening
 * comment (escaped so it cannot close the comment or form trigraphs) and
 * in string literals (quote, backslash and '?' escaped, bytes outside
 * printable ASCII as octal escapes). Identifiers in the file are fixed
 * names, never derived from the spec; comments beside the code carry the
 * compiler's own names, filtered (emit_comment_name). */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "frontend.h"
#include "optable.h"
#include "plan.h"
#include "emit_c_int.h"

/* C11 guarantees string literals of 4095 characters; -Wpedantic warns
 * beyond. Longer texts are written as a char array initializer. */
#define EMIT_MAX_LITERAL 4000

void emit_f(Emit *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(e->out, fmt, ap);
    va_end(ap);
}

bool emit_plain(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.';
}

/* A double as a C literal that reads back to the same value, in the
 * shortest such form ("1.9", not "1.8999999999999999"). */
const char *emit_num(Emit *e, double v)
{
    char *s = e->ring[e->ringpos++ % 64];
    if (!isfinite(v)) {
        e->bad = 1;
        snprintf(s, sizeof e->ring[0], "0");
        return s;
    }
    return op_num(s, sizeof e->ring[0], v);
}

/* Text for a comment from the compiler's own names (node, parameter and
 * optimizer-parameter names, coefficient sources): bytes outside
 * [A-Za-z0-9_. +-*()/] become '_', and a '*' '/' or '/' '*' pair cannot
 * form, so nothing can close or open a comment. */
void emit_comment_name(Emit *e, const char *s)
{
    char prev = 0;
    for (; s && *s; s++) {
        char c = *s;
        bool ok = emit_plain((unsigned char)c) || strchr(" +-*()/", c);
        if (!ok || (c == '/' && prev == '*') || (c == '*' && prev == '/'))
            c = '_';
        fputc(c, e->out);
        prev = c;
    }
}

/* Text inside the opening block comment: no "*" "/" pair, no "/" "*" pair
 * (-Wcomment), no "??" (trigraphs), no control bytes or NULs; bytes
 * outside printable ASCII become \xNN. Newlines start a " * " line. */
static void emit_comment_text(FILE *out, const char *s, size_t n)
{
    fputs(" * ", out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        unsigned char next = i + 1 < n ? (unsigned char)s[i + 1] : 0;
        if (c == '\n') {
            fputs(i + 1 < n ? "\n * " : "", out);
        } else if (c == '*' && next == '/') {
            fputs("*\\", out);
        } else if (c == '/' && next == '*') {
            fputs("/\\", out);
        } else if (c == '?' && next == '?') {
            fputs("?\\", out);
        } else if (c == '\\') {
            fputs("\\\\", out);     /* no backslash-newline splices */
        } else if (c == '\t' || (c >= 0x20 && c < 0x7f)) {
            fputc(c, out);
        } else {
            fprintf(out, "\\x%02x", c);
        }
    }
    fputc('\n', out);
}

/* A string literal of n bytes that reads like the text: printable ASCII as
 * itself except '"', '\\' and '?' (no trigraphs), which are escaped, as are
 * newlines and tabs; every other byte an octal escape. Split after each
 * newline. */
static void emit_literal(FILE *out, const char *s, size_t n, const char *indent)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '?')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, out);
        else
            fprintf(out, "\\%03o", c);
        if (c == '\n' && i + 1 < n)
            fprintf(out, "\"\n%s\"", indent);
    }
    fputc('"', out);
}

/* static const char name[] = the text: a literal when short enough, else
 * a byte list. */
static void emit_text_array(FILE *out, const char *name, const char *s, size_t n)
{
    fprintf(out, "static const char %s[] =\n", name);
    if (n <= EMIT_MAX_LITERAL) {
        fputs("    ", out);
        emit_literal(out, s, n, "    ");
        fputs(";\n", out);
        return;
    }
    fputs("{", out);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s%u,", i % 16 ? " " : "\n    ", (unsigned)(unsigned char)s[i]);
    fputs("\n    0\n};\n", out);
}

/* The arena address of plan buffer b: "act + a * nB" for per-image
 * buffers, "fix + b" for fixed-size ones (fix = act + arena_a * nB). */
const char *emit_buf(Emit *e, int b)
{
    char *s = e->ring[e->ringpos++ % 64];
    const PlanBuf *pb = &e->p->bufs[b];
    if (pb->size_a) {
        if (pb->off_a)
            snprintf(s, sizeof e->ring[0], "act + %zu * nB", pb->off_a);
        else
            snprintf(s, sizeof e->ring[0], "act");
    } else {
        if (pb->off_b)
            snprintf(s, sizeof e->ring[0], "fix + %zu", pb->off_b);
        else
            snprintf(s, sizeof e->ring[0], "fix");
    }
    return s;
}

const char *emit_out(Emit *e, int node)
{
    if (node == 0)
        return "m->input";
    if (node == e->g->output)
        return "m->logits";
    if (e->p->nodes[node].out < 0)     /* a BN fused with its relu: never written */
        return "NULL";
    if (e->bwd && e->p->nodes[node].rec >= 0)  /* memory-free: the rebuilt value */
        return emit_buf(e, e->p->nodes[node].rec);
    return emit_buf(e, e->p->nodes[node].out);
}

const char *emit_grad(Emit *e, int node)
{
    if (node == e->g->output)
        return "m->dlogits";
    if (!e->p->nodes[node].needs_grad || e->p->nodes[node].grad < 0)
        return "NULL";
    return emit_buf(e, e->p->nodes[node].grad);
}

/* P + offset (params) or G + offset (grads) or buf + offset (buffers). */
const char *emit_param(Emit *e, const char *base, int param)
{
    char *s = e->ring[e->ringpos++ % 64];
    size_t off = e->p->param_off[param];
    if (off)
        snprintf(s, sizeof e->ring[0], "%s + %zu", base, off);
    else
        snprintf(s, sizeof e->ring[0], "%s", base);
    return s;
}

/* The coefficients of a sum as a local array c[] (emit_coefs) or name[]. */
/* Term k's coefficient of sum n as a T expression. */
static void emit_coef(Emit *e, const IrNode *n, int k)
{
    const IrCoef *c = &n->u.sum.coef[k];
    if (c->src) {   /* where the number comes from: "1 + beta" */
        emit_f(e, "/* ");
        emit_comment_name(e, c->src);
        emit_f(e, " */ ");
    }
    if (c->nterms == 0) {
        emit_f(e, "(%s)%s", e->T, emit_num(e, c->c0));
        return;
    }
    emit_f(e, "(%s)(%s", e->T, emit_num(e, c->c0));
    for (int j = 0; j < c->nterms; j++) {
        emit_f(e, " + %s * (double)P[%zu] /* ", emit_num(e, c->a[j]),
               e->p->param_off[c->param[j]]);
        emit_comment_name(e, e->g->params[c->param[j]].name);
        emit_f(e, " */");
    }
    emit_f(e, ")");
}

static void emit_coefs_as(Emit *e, const IrNode *n, const char *name)
{
    emit_f(e, "        const %s %s[%d] = {", e->T, name, n->nin);
    for (int k = 0; k < n->nin; k++) {
        emit_f(e, "%s", k ? ",\n            " : "\n            ");
        emit_coef(e, n, k);
    }
    emit_f(e, "\n        };\n");
}

void emit_coefs(Emit *e, const IrNode *n)
{
    emit_coefs_as(e, n, "c");
}

/* The terms of a sum (the inputs of a node) as a local array xs[] or name[]. */
static void emit_xs_as(Emit *e, const IrNode *n, const char *name)
{
    emit_f(e, "        const %s *const %s[%d] = {", e->T, name, n->nin);
    for (int k = 0; k < n->nin; k++)
        emit_f(e, "%s%s", k ? ", " : " ", emit_out(e, n->in[k]));
    emit_f(e, " };\n");
}

void emit_xs(Emit *e, const IrNode *n)
{
    emit_xs_as(e, n, "xs");
}

static void emit_cs(Emit *e, const IrNode *n)
{
    emit_f(e, "        const int cs[%d] = {", n->nin);
    for (int k = 0; k < n->nin; k++)
        emit_f(e, "%s%d", k ? ", " : " ", e->g->nodes[n->in[k]].shape.c);
    emit_f(e, " };\n");
}

/* The call's comment names its tensors: "8 stage1.x1 = sum(stem.conv0,
 * stage1.step0.grad.conv1): 16x28x28 -> 16x28x28", so the anonymous arena
 * offsets of the call read as the node's output and inputs, in order. */
void emit_node_comment(Emit *e, const IrNode *n)
{
    const IrShape *in = n->nin ? &e->g->nodes[n->in[0]].shape : &n->shape;
    emit_f(e, "    /* %d ", n->id);
    emit_comment_name(e, n->name);
    emit_f(e, " = %s(", ir_op_name(n->op));
    for (int k = 0; k < n->nin && k < 8; k++) {
        emit_f(e, "%s", k ? ", " : "");
        emit_comment_name(e, e->g->nodes[n->in[k]].name);
    }
    emit_f(e, "%s): %dx%dx%d -> %dx%dx%d */\n", n->nin > 8 ? ", ..." : "", in->c, in->h, in->w,
           n->shape.c, n->shape.h, n->shape.w);
}

/* The RtAct constant of an exact block's activation (plan_build checked
 * the name): the act.def line's NAME. */
static const char *emit_act(const char *phi)
{
    switch (op_find(phi, OPF_ACT)) {
#define OP(name, text, flags, madds)
#define ACT(name, NAME, arg, def, kernels, kink) case OP_##NAME: return "RT_ACT_" #NAME;
#include "ops.def"
#undef ACT
#undef OP
    default: return "RT_ACT_RELU";
    }
}

/* The per-image offset of node id's pieces: the live piecewise nodes
 * before it, in node order; with id = nnodes, the per-image total. */
size_t emit_branch_site(const Emit *e, int id)
{
    size_t off = 0;
    for (int i = 1; i < id && i < e->g->nnodes; i++)
        if (e->p->nodes[i].live)
            off += op_branch_len(&e->g->nodes[i]);
    return off;
}

/* --- dense stages (plan_image_stride) --------------------------------------
 * A concat whose output buffer is shared with its first input's (or is a
 * prefix of a later state's) writes and reads back only the channels of the
 * inputs that are not in place; the fused BN + relu over a state reads it
 * with the buffer's image stride. */

/* The image stride of node's output when it is not ir_numel of its shape
 * (a channel prefix of a dense stage's buffer), else 0. */
static size_t emit_prefix_stride(const Emit *e, int node)
{
    size_t xs = plan_image_stride(e->p, e->g, node);
    return xs != ir_numel(e->g->nodes[node].shape) ? xs : 0;
}

/* A concat of a dense stage's chain. */
static bool emit_concat_shared(const Emit *e, const IrNode *n)
{
    const PlanNode *pn = &e->p->nodes[n->id];
    if (n->op != OP_CONCAT || pn->out < 0)
        return false;
    if (emit_prefix_stride(e, n->id))
        return true;
    for (int k = 0; k < n->nin; k++)
        if (e->p->nodes[n->in[k]].out == pn->out)
            return true;
    return false;
}

/* Forward of such a concat: each input not already in place copied to its
 * channels. */
static void emit_concat_shared_forward(Emit *e, const IrNode *n, const char *out)
{
    size_t os = plan_image_stride(e->p, e->g, n->id);
    int hw = n->shape.h * n->shape.w, c0 = 0;
    for (int k = 0; k < n->nin; k++) {
        const IrNode *x = &e->g->nodes[n->in[k]];
        if (e->p->nodes[x->id].out == e->p->nodes[n->id].out)
            emit_f(e, "    /* channels %d..%d: ", c0, c0 + x->shape.c - 1);
        else
            emit_f(e, "    FN(rt_concat_slice_forward%s)(ctx, %s, %s, B, %d, %d, %d, %zu);"
                   "   /* channels %d..%d: ", e->S, out, emit_out(e, x->id), x->shape.c, hw, c0,
                   os, c0, c0 + x->shape.c - 1);
        emit_comment_name(e, x->name);
        emit_f(e, "%s */\n", e->p->nodes[x->id].out == e->p->nodes[n->id].out ? ", in place" : "");
        c0 += x->shape.c;
    }
}

/* Its backward: the gradient of each input not in place read from its
 * channels; an input in place has its gradient there already (its other
 * readers then add to it). */
static void emit_concat_shared_backward(Emit *e, const IrNode *n, const char *dout,
                                        char (*din)[128], const int *acc)
{
    size_t os = plan_image_stride(e->p, e->g, n->id);
    int hw = n->shape.h * n->shape.w, c0 = 0;
    for (int k = 0; k < n->nin; k++) {
        const IrNode *x = &e->g->nodes[n->in[k]];
        if (e->p->nodes[x->id].out != e->p->nodes[n->id].out && strcmp(din[k], "NULL") != 0)
            emit_f(e, "    FN(rt_concat_slice_backward%s)(ctx, %s, %d, %s, B, %d, %d, %d, %zu);\n",
                   e->S, din[k], acc[k], dout, x->shape.c, hw, c0, os);
        c0 += x->shape.c;
    }
}

/* --- the BN statistics of dense stages ----------------------------------------
 * The fused BN + relus that read one dense stage's buffer, each a longer
 * channel prefix (each state of the chain is the previous one and a new
 * slice), gather the same statistics for the channels they share: one cache
 * per buffer, 4 elements per channel of the buffer after the plan's fixed
 * buffers, that each of them fills for its new channels and reads for the
 * others (rt_bn_relu_forward_train_cached; the results are the uncached
 * kernel's, bit for bit). Not in memory-free builds, whose rebuilt states
 * are read by other schedules. */

/* Whether node n is such a BN: live, fused with its relu, reading a concat
 * of a dense stage. */
static bool emit_bnc_reader(const Emit *e, const IrNode *n)
{
    if (e->p->sched || n->op != OP_BN || n->nin != 1 || !e->p->nodes[n->id].live ||
        !e->p->nodes[n->id].fuse || e->p->nodes[n->in[0]].out < 0)
        return false;
    const IrNode *x = &e->g->nodes[n->in[0]];
    return x->op == OP_CONCAT && emit_concat_shared(e, x);
}

/* The leading channels of such a BN n's input whose statistics an earlier
 * reader of the same buffer (in node order, the order the forward runs)
 * left in the cache: all of them when it read the same state, those of the
 * state it extends in place when it read that one. */
static int emit_bnc_known(const Emit *e, const IrNode *n)
{
    const IrNode *x = &e->g->nodes[n->in[0]];
    int y = x->in[0], b = e->p->nodes[x->id].out, known = 0;
    bool y_in_place = e->p->nodes[y].out == b;
    for (int m = 1; m < n->id; m++) {
        const IrNode *r = &e->g->nodes[m];
        if (!emit_bnc_reader(e, r))
            continue;
        int c = r->in[0] == x->id ? x->shape.c
              : r->in[0] == y && y_in_place ? e->g->nodes[y].shape.c : 0;
        if (c > known)
            known = c;
    }
    return known;
}

/* Places the caches (e->bnc) and sizes the fixed arena (e->arena_b). */
static void emit_bnc_plan(Emit *e)
{
    const IrGraph *g = e->g;
    e->arena_b = e->p->arena_b;
    e->bnc = calloc((size_t)(e->p->nbufs > 0 ? e->p->nbufs : 1), sizeof *e->bnc);
    if (!e->bnc)
        abort();
    for (int i = 1; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        if (!emit_bnc_reader(e, n))
            continue;
        int b = e->p->nodes[n->in[0]].out;
        size_t hw = (size_t)n->shape.h * n->shape.w;
        if (e->bnc[b] || !hw)
            continue;
        e->bnc[b] = e->arena_b + 1;
        e->arena_b += 4 * (e->p->bufs[b].size_a / hw);
    }
}

/* Before the backward of conv n: the output of its input, a fused relu
 * whose forward output was not kept (PlanNode.recomp), recomputed into the
 * recompute buffer; returns that buffer's address, or NULL. */
static const char *emit_recompute(Emit *e, const IrNode *n)
{
    int r = n->nin ? n->in[0] : 0;
    const PlanNode *pr = &e->p->nodes[r];
    if (n->op != OP_CONV || pr->recomp < 0)
        return NULL;
    const IrNode *bn = &e->g->nodes[pr->fuse];
    const PlanNode *pb = &e->p->nodes[bn->id];
    const char *buf = emit_buf(e, pr->recomp);
    emit_f(e, "    FN(rt_bn_relu_recompute%s)(ctx, %s, %s, %s, %s, %s, %s, B, %d, %d, nB * %zu, "
           "%zu);   /* ", e->S, buf, emit_out(e, bn->in[0]), emit_buf(e, pb->save0),
           emit_buf(e, pb->save1), emit_param(e, "P", bn->u.bn.gamma),
           emit_param(e, "P", bn->u.bn.beta), bn->shape.c, bn->shape.h * bn->shape.w,
           emit_branch_site(e, r), plan_image_stride(e->p, e->g, bn->in[0]));
    emit_comment_name(e, e->g->nodes[r].name);
    emit_f(e, ", not kept from forward */\n");
    return buf;
}

/* In a backward, the BN whose relu the 1x1 conv (or 3x3 stride-1 conv) c
 * reads where the relu was not kept (PlanNode.recomp) and c is its only
 * reader: c's backward is rt_bn_relu_conv1x1_backward
 * (rt_bn_relu_conv3x3_backward: the relu applied as the weight gradient
 * reads its input, or recomputed there where it must be), the recompute not
 * emitted; else 0. */
static int emit_conv_pwin_bwd(const Emit *e, int c)
{
    const IrGraph *g = e->g;
    const IrNode *n = &g->nodes[c];
    bool pw = n->u.conv.k == 1 && n->u.conv.stride == 1 && n->u.conv.pad == 0;
    bool k3 = n->u.conv.k == 3 && n->u.conv.stride == 1 && n->u.conv.pad == 1;
    if (n->op != OP_CONV || !(pw || k3) || !n->nin || e->p->nodes[c].gneg)
        return 0;
    int r = n->in[0];
    if (r <= 0 || g->nodes[r].op != OP_RELU || !e->p->nodes[r].fuse || e->p->nodes[r].recomp < 0)
        return 0;
    int bn = e->p->nodes[r].fuse;
    if (g->nodes[bn].op != OP_BN || g->nodes[bn].nin != 1)
        return 0;
    for (int j = 1; j < g->nnodes; j++) {
        if (!e->p->nodes[j].live || j == c)
            continue;
        for (int k = 0; k < g->nodes[j].nin; k++)
            if (g->nodes[j].in[k] == r)
                return 0;   /* another reader of the relu */
    }
    return bn;
}

/* Whether plan buffers x and y (-1: none) may share arena memory. */
static bool emit_bufs_overlap(const Plan *p, int x, int y)
{
    if (x < 0 || y < 0)
        return false;
    const PlanBuf *a = &p->bufs[x], *b = &p->bufs[y];
    if ((a->size_a && a->size_b) || (b->size_a && b->size_b))
        return true;    /* mixed sizes: not worth the arithmetic */
    if (!a->size_a != !b->size_a)
        return false;   /* a per-image buffer and a fixed one */
    size_t a0 = a->size_a ? a->off_a : a->off_b, a1 = a0 + (a->size_a ? a->size_a : a->size_b);
    size_t b0 = b->size_a ? b->off_a : b->off_b, b1 = b0 + (b->size_a ? b->size_a : b->size_b);
    return a0 < b1 && b0 < a1;
}

/* Whether node r runs right after node c in a stored build's forward (no
 * live node between): an inference forward that writes r's output at c's
 * step then overwrites no buffer that the training plan lets die between. */
static bool emit_next_live(const Emit *e, int c, int r)
{
    for (int j = c + 1; j < r; j++)
        if (e->p->nodes[j].live)
            return false;
    return true;
}

/* Plan buffers x and y are the same memory (offsets and sizes). */
static bool emit_bufs_same(const Plan *p, int x, int y)
{
    if (x < 0 || y < 0)
        return false;
    const PlanBuf *a = &p->bufs[x], *b = &p->bufs[y];
    return a->off_a == b->off_a && a->off_b == b->off_b && a->size_a == b->size_a
           && a->size_b == b->size_b;
}

/* For the inference fusions below: when node c is a 3x3 stride-1 conv of a
 * stored build's forward (only Winograd gains by a fusion: the other convs
 * make one pass either way) whose output one live node reads, once, that
 * node; else 0. */
static int emit_fusable_conv(const Emit *e, int c)
{
    const IrGraph *g = e->g;
    const IrNode *n = &g->nodes[c];
    if (e->bwd || e->p->sched || n->op != OP_CONV || c == g->output || e->p->nodes[c].out < 0)
        return 0;
    if (n->u.conv.k != 3 || n->u.conv.stride != 1 || n->u.conv.pad != 1)
        return 0;
    int reader = 0, nread = 0;
    for (int j = c + 1; j < g->nnodes; j++)
        for (int k = 0; k < g->nodes[j].nin; k++)
            if (g->nodes[j].in[k] == c && e->p->nodes[j].live)
                reader = j, nread++;
    return nread == 1 ? reader : 0;
}

/* In a stored build's forward pass, the BN that an inference forward
 * applies within the 3x3 stride-1 conv node c
 * (rt_conv2d_bn_eval): the one live reader of c's output, right after c, a
 * BN reading it whole (no dense-stage prefix), whose output (or its relu's) does not
 * share memory with c's input; else 0. */
static int emit_conv_bn(const Emit *e, int c)
{
    const IrGraph *g = e->g;
    int reader = emit_fusable_conv(e, c);
    if (reader <= 0 || g->nodes[reader].op != OP_BN || g->nodes[reader].nin != 1
        || emit_prefix_stride(e, c) || !emit_next_live(e, c, reader))
        return 0;
    /* the BN's output (its relu's) is written while the conv reads its
     * input: the training plan may have given them the same memory */
    int r = e->p->nodes[reader].fuse ? e->p->nodes[reader].fuse : reader;
    if (r == g->output
        || emit_bufs_overlap(e->p, e->p->nodes[r].out, e->p->nodes[g->nodes[c].in[0]].out))
        return 0;
    return reader;
}

/* In a stored build's forward pass, the sum that the training and the
 * inference forward compute within the 3x3 stride-1 conv node c
 * (rt_conv2d_sum_train, rt_conv2d_sum_eval): the one live reader of c's
 * output, right after c, a sum of c and one other term computed before c,
 * with numbers for coefficients, whose output shares no memory with c's
 * input or the other term; else 0. Nothing reads c's output but that sum,
 * whose backward needs only its output's gradient (number coefficients),
 * so the training forward need not store it. */
static int emit_conv_sum(const Emit *e, int c)
{
    const IrGraph *g = e->g;
    const IrNode *n = &g->nodes[c];
    int reader = emit_fusable_conv(e, c);
    if (reader <= 0)
        return 0;
    const IrNode *s = &g->nodes[reader];
    if (s->op != OP_SUM || s->nin != 2 || reader == g->output)
        return 0;
    int kc = s->in[1] == c, o = s->in[1 - kc];
    if (o == c || o == reader || s->u.sum.coef[0].nterms || s->u.sum.coef[1].nterms)
        return 0;
    if (emit_prefix_stride(e, c) || emit_prefix_stride(e, o) || emit_prefix_stride(e, reader))
        return 0;
    int so = e->p->nodes[reader].out, ci = e->p->nodes[n->in[0]].out;
    if (so < 0 || emit_bufs_overlap(e->p, so, ci) || emit_bufs_overlap(e->p, so, e->p->nodes[o].out))
        return 0;
    if (o < c)
        return emit_next_live(e, c, reader) ? reader : 0;
    /* the other term runs between them (ResNet's shortcut pad after the
     * conv): the pair runs at the sum's step, o the one live node between,
     * which must leave the conv's input as it was */
    if (!e->p->nodes[o].live || !emit_next_live(e, c, o) || !emit_next_live(e, o, reader)
        || emit_bufs_overlap(e->p, e->p->nodes[o].out, ci))
        return 0;
    return reader;
}

/* How often sum node s reads node self when its coefficients are numbers
 * and each other term, computed by node last, is a whole tensor whose
 * memory is s's output's (same_ok) or shares none with it; else -1. */
static int emit_sum_terms(const Emit *e, int s, int self, int last, bool same_ok)
{
    const IrNode *sn = &e->g->nodes[s];
    const Plan *p = e->p;
    int so = p->nodes[s].out, n = 0;
    for (int k = 0; k < sn->nin; k++) {
        int o = sn->in[k], ob = p->nodes[o].out;
        if (sn->u.sum.coef[k].nterms)
            return -1;
        if (o == self) {
            n++;
            continue;
        }
        if (o > last || emit_prefix_stride(e, o)
            || (!(same_ok && emit_bufs_same(p, so, ob)) && emit_bufs_overlap(p, so, ob)))
            return -1;
    }
    return n;
}

/* In a stored build's forward pass, the 3-term (or 1-term: momentum's
 * first v) sum that the training forward computes within the 3x3 stride-1
 * conv node c (rt_conv2d_sums_train): as emit_conv_sum, c's one live
 * reader right after it, with c once among its terms, the others computed
 * before c, numbers for coefficients, and an output sharing no memory with
 * c's input or the other terms; else 0. Its inference forward stays the
 * conv and then the sum. */
static int emit_conv_sum3(const Emit *e, int c)
{
    const IrGraph *g = e->g;
    int reader = emit_fusable_conv(e, c);
    if (reader <= 0 || reader == g->output || !emit_next_live(e, c, reader))
        return 0;
    const IrNode *s = &g->nodes[reader];
    if (s->op != OP_SUM || (s->nin != 3 && s->nin != 1) || emit_prefix_stride(e, c)
        || emit_prefix_stride(e, reader))
        return 0;
    int so = e->p->nodes[reader].out, ci = e->p->nodes[g->nodes[c].in[0]].out;
    if (so < 0 || emit_bufs_overlap(e->p, so, ci))
        return 0;
    return emit_sum_terms(e, reader, c, c, false) == 1 ? reader : 0;
}

/* The conv that computes sum node s within it (emit_conv_sum: at the
 * conv's step, or at the sum's when its other term runs between;
 * emit_conv_sum3); else 0. */
static int emit_sum_conv(const Emit *e, int s)
{
    const IrNode *n = &e->g->nodes[s];
    if (n->op != OP_SUM)
        return 0;
    for (int k = 0; k < n->nin; k++) {
        int c = n->in[k];
        if (emit_conv_sum(e, c) == s)
            return c;
        if (emit_conv_sum3(e, c) == s)
            return c;
    }
    return 0;
}

/* The next live node after node j (g->nnodes: none). */
static int emit_live_after(const Emit *e, int j)
{
    do
        j++;
    while (j < e->g->nnodes && !e->p->nodes[j].live);
    return j;
}

/* Whether node o may run between conv c's sum s (emit_conv_sum3, run at
 * c's step) and the sum t after it when the three run at t's step
 * (emit_sums_step): o is a term of t, reads neither c nor s, and writes no
 * memory that c's input, s's or t's output or s's terms have (t's output
 * is then the conv's scratch: o may have the conv's own memory). */
static bool emit_then_between(const Emit *e, int c, int s, int o, int t)
{
    const IrGraph *g = e->g;
    const Plan *p = e->p;
    int oo = p->nodes[o].out, term = 0;
    if (oo < 0 || emit_prefix_stride(e, o) || emit_conv_sum3(e, c) != s)
        return false;
    for (int k = 0; k < g->nodes[t].nin; k++)
        term |= g->nodes[t].in[k] == o;
    for (int k = 0; k < g->nodes[o].nin; k++)
        if (g->nodes[o].in[k] == c || g->nodes[o].in[k] == s)
            return false;
    /* t's output is the conv's scratch there (emit_conv_sums): o's must be apart */
    if (!term || emit_bufs_overlap(p, oo, p->nodes[g->nodes[c].in[0]].out)
        || emit_bufs_overlap(p, oo, p->nodes[s].out) || emit_bufs_overlap(p, oo, p->nodes[t].out))
        return false;
    for (int k = 0; k < g->nodes[s].nin; k++)
        if (g->nodes[s].in[k] != c && emit_bufs_overlap(p, oo, p->nodes[g->nodes[s].in[k]].out))
            return false;
    return true;
}

/* In a stored build's training forward, the sum that conv node c's fused
 * sum s (emit_sum_conv) hands on within the same output copy: the next
 * live node after s (or after the one after s, a term of it:
 * emit_then_between), a sum of 2 or 3 terms with numbers for coefficients,
 * s once among them, c not, the others computed before s (before c, or
 * the term that runs between c and s; momentum's x + v,
 * Nesterov's extrapolation) or that term after s (then the three run at
 * its step: emit_sums_step), whose output shares no memory with c's input
 * or s's output, and of each other term of the two sums either none or all
 * (each pixel of a term is read before that pixel of the output is
 * written); it may be c's output, which is dead once s is written. */
static int emit_conv_sum_then(const Emit *e, int c, int s)
{
    const IrGraph *g = e->g;
    int t = emit_live_after(e, s), o = 0;
    if (t >= g->nnodes || t == g->output || emit_sum_conv(e, s) != c)
        return 0;
    if (g->nodes[t].op != OP_SUM) {     /* a term of the next sum between them */
        o = t;
        t = emit_live_after(e, o);
        if (t >= g->nnodes || t == g->output || !emit_then_between(e, c, s, o, t))
            return 0;
    }
    const IrNode *tn = &g->nodes[t], *sn = &g->nodes[s];
    if (tn->op != OP_SUM || tn->nin < 2 || tn->nin > 3 || emit_prefix_stride(e, t))
        return 0;
    const Plan *p = e->p;
    int to = p->nodes[t].out;
    if (to < 0 || emit_bufs_overlap(p, to, p->nodes[g->nodes[c].in[0]].out)
        || emit_bufs_overlap(p, to, p->nodes[s].out))
        return 0;
    for (int k = 0; k < tn->nin; k++)
        if (tn->in[k] == c)
            return 0;
    for (int k = 0; k < sn->nin; k++) {
        int ob = p->nodes[sn->in[k]].out;
        if (sn->in[k] != c && !emit_bufs_same(p, to, ob) && emit_bufs_overlap(p, to, ob))
            return 0;
    }
    return emit_sum_terms(e, t, s, o ? o : s, true) == 1 ? t : 0;
}

/* The step at which conv c and the sums it computes within it
 * (emit_conv_sum, emit_conv_sum3, emit_conv_sum_then) run, training and
 * inference: its sum's when the sum's other term runs between them
 * (ResNet's shortcut pad), the sum after its sum when a term of that one
 * runs between them (emit_then_between: momentum's x + v after the pad),
 * else c's own; 0 when c computes no sum. */
static int emit_sums_step(const Emit *e, int c)
{
    int s = emit_conv_sum(e, c);
    if (s) {
        const IrNode *sn = &e->g->nodes[s];
        return sn->in[0] > c || sn->in[1] > c ? s : c;
    }
    s = emit_conv_sum3(e, c);
    int t = s ? emit_conv_sum_then(e, c, s) : 0;
    return t && !emit_next_live(e, s, t) ? t : s ? c : 0;
}

/* The training call of conv c running its input's BN + relu bn
 * (emit_conv_tbnin): rt_bn_relu_conv3x3_train (into out, or with a 2-term
 * sum as rt_conv2d_sum_train, conv its scratch) or with sums
 * rt_bn_relu_conv3x3_sums_train, tail its last arguments, ind its indent. */
static void emit_tbnin_call(Emit *e, const char *ind, int c, int bn, bool sums,
                            const char *out, const char *conv, const char *tail)
{
    const IrNode *n = &e->g->nodes[c], *b = &e->g->nodes[bn];
    const PlanNode *pb = &e->p->nodes[bn];
    int rl = n->in[0];
    emit_f(e, "%sFN(rt_bn_relu_conv3x3_%strain%s)(ctx, %s, %s, %s, ", ind, sums ? "sums_" : "",
           e->S, out, conv, emit_out(e, rl));
    emit_f(e, "%s, %s, ", emit_buf(e, pb->save0), emit_buf(e, pb->save1));
    emit_f(e, "%s, %s, ", emit_param(e, "buf", b->u.bn.mean), emit_param(e, "buf", b->u.bn.var));
    emit_f(e, "%s, %s, %s, ", emit_out(e, b->in[0]), emit_param(e, "P", b->u.bn.gamma),
           emit_param(e, "P", b->u.bn.beta));
    emit_f(e, "B, %d, %d, %d, %s, ", b->shape.c, b->shape.h, b->shape.w,
           emit_num(e, b->u.bn.momentum));
    emit_f(e, "%s, nB * %zu, %s, %d, %s);\n", emit_num(e, b->u.bn.eps),
           emit_branch_site(e, rl), emit_param(e, "P", n->u.conv.w), n->u.conv.cout, tail);
}

/* The BN + relu pair bn -> r runs right before node c (no live node
 * between) and c is the relu's one live reader. */
static bool emit_pair_feeds(const Emit *e, int bn, int r, int c)
{
    const IrGraph *g = e->g;
    for (int j = bn + 1; j < g->nnodes; j++) {
        if (!e->p->nodes[j].live)
            continue;
        if (j < c && j != r)
            return false;   /* a live node between the pair and c */
        for (int k = 0; k < g->nodes[j].nin; k++)
            if (g->nodes[j].in[k] == r && j != c)
                return false;   /* another reader of the relu */
    }
    return true;
}

/* In a stored build's forward pass, the BN of the BN + relu pair whose
 * inference forward the 3x3 stride-1 conv node c applies to its input
 * (rt_conv2d_bnin_bn_eval, rt_conv2d_bnin_sum_eval): c takes its BN or its
 * sum within it (emit_conv_bn, emit_conv_sum), c's input is a fused relu
 * (PlanNode.fuse) read by c alone, whose BN reads a whole tensor (no
 * dense-stage prefix), is not applied by the conv before it
 * (emit_conv_bn), and runs right before c, and what c writes in
 * inference shares no memory with that BN's input, nor does the other term
 * of a sum run between them (the shortcut pad) write there; else 0. The
 * relu's output is then not written in inference (the runtime's other
 * paths use it as scratch). */
static int emit_conv_bnin(const Emit *e, int c)
{
    const IrGraph *g = e->g;
    int s = emit_conv_sum(e, c), b = s ? 0 : emit_conv_bn(e, c), r = g->nodes[c].in[0];
    if ((!s && !b) || r <= 0 || g->nodes[r].op != OP_RELU || !e->p->nodes[r].fuse)
        return 0;
    int bn = e->p->nodes[r].fuse, x = g->nodes[bn].in[0];
    if (g->nodes[bn].op != OP_BN || g->nodes[bn].nin != 1 || emit_prefix_stride(e, x)
        || emit_prefix_stride(e, bn))
        return 0;
    if (g->nodes[x].op == OP_CONV && emit_conv_bn(e, x) == bn)
        return 0;   /* the pair runs in its own conv's output copy: x is never written */
    if (!emit_pair_feeds(e, bn, r, c))
        return 0;
    int xo = e->p->nodes[x].out, dst;
    if (s) {
        const IrNode *sn = &g->nodes[s];
        int o = sn->in[sn->in[1] != c];
        dst = e->p->nodes[s].out;
        if (o > c && emit_bufs_overlap(e->p, e->p->nodes[o].out, xo))
            return 0;
    } else {
        dst = e->p->nodes[e->p->nodes[b].fuse ? e->p->nodes[b].fuse : b].out;
    }
    return emit_bufs_overlap(e->p, dst, xo) ? 0 : bn;
}

/* In a forward pass (not a backward's recomputation), the BN whose relu
 * the 1x1 conv c reads when the training forward runs the pair within c
 * (rt_bn_relu_conv1x1_train, emitted at the BN; c then runs only in
 * inference): the relu is fused, read by c alone, not kept for the backward
 * (PlanNode.recomp: DenseNet's bn0 -> relu0 -> conv0, the backward
 * recomputes it), runs right before c, c takes no sum or BN within it, and
 * c's output shares no memory with the BN's input (read image by image as
 * c writes); else 0. */
static int emit_conv_pwin(const Emit *e, int c)
{
    const IrGraph *g = e->g;
    const IrNode *n = &g->nodes[c];
    if (e->bwd || n->op != OP_CONV || n->u.conv.k != 1 || n->u.conv.stride != 1
        || n->u.conv.pad != 0 || !n->nin)
        return 0;
    int r = n->in[0];
    if (r <= 0 || g->nodes[r].op != OP_RELU || !e->p->nodes[r].fuse || e->p->nodes[r].recomp < 0)
        return 0;
    int bn = e->p->nodes[r].fuse, x = g->nodes[bn].in[0];
    if (g->nodes[bn].op != OP_BN || g->nodes[bn].nin != 1 || emit_conv_sum(e, c)
        || emit_conv_sum3(e, c) || emit_conv_bn(e, c))
        return 0;
    if (g->nodes[x].op == OP_CONV && emit_conv_bn(e, x) == bn)
        return 0;
    if (!emit_pair_feeds(e, bn, r, c))
        return 0;
    return emit_bufs_overlap(e->p, e->p->nodes[c].out, e->p->nodes[x].out) ? 0 : bn;
}

/* The input BN's arguments of rt_conv2d_bnin_*_eval for conv c reading the
 * relu of BN bn: c's input (h, scratch), the BN's input, its parameters,
 * eps and the relu's branch site. */
static void emit_bnin_args(Emit *e, int c, int bn)
{
    const IrNode *b = &e->g->nodes[bn];
    emit_f(e, "%s, %s, ", emit_out(e, e->g->nodes[c].in[0]), emit_out(e, b->in[0]));
    emit_f(e, "%s, ", emit_param(e, "P", e->g->nodes[c].u.conv.w));
    emit_f(e, "B, %d, %d, %d, %d, 3, 1, 1, %s, %s, %s, %s, %s, nB * %zu, ",
           e->g->nodes[b->in[0]].shape.c, b->shape.h, b->shape.w, e->g->nodes[c].u.conv.cout,
           emit_param(e, "P", b->u.bn.gamma), emit_param(e, "P", b->u.bn.beta),
           emit_param(e, "buf", b->u.bn.mean), emit_param(e, "buf", b->u.bn.var),
           emit_num(e, b->u.bn.eps), emit_branch_site(e, e->g->nodes[c].in[0]));
}

/* In a stored build, the BN of the BN + relu pair whose training forward
 * the 3x3 stride-1 conv node c runs within it (rt_bn_relu_conv3x3_train:
 * the BN gathers its statistics, the conv applies the pair as its input
 * transform reads x, h not written; c's backward is then
 * rt_bn_relu_conv3x3_backward(_neg), which needs no h or recomputes it):
 * c's input a fused relu (kept for the backward, ResNet's, or not,
 * DenseNet's: PlanNode.recomp, emit_conv_pwin_bwd), read by c alone and
 * right after the pair (emit_pair_feeds), whose BN reads a
 * whole tensor (no dense-stage prefix or statistics cache), and what c's
 * training forward writes (its output, or the sums it computes within it:
 * emit_conv_sum, emit_conv_sum3, emit_conv_sum_then) shares no memory with
 * x; else 0. The same answer in the forward and the backward phase. */
static int emit_conv_tbnin(const Emit *e, int c)
{
    const IrGraph *g = e->g;
    const IrNode *n = &g->nodes[c];
    if (e->p->sched || n->op != OP_CONV || n->u.conv.k != 3 || n->u.conv.stride != 1
        || n->u.conv.pad != 1 || !n->nin)
        return 0;
    int r = n->in[0];
    if (r <= 0 || g->nodes[r].op != OP_RELU || !e->p->nodes[r].fuse)
        return 0;
    int bn = e->p->nodes[r].fuse, x = g->nodes[bn].in[0];
    if (g->nodes[bn].op != OP_BN || g->nodes[bn].nin != 1 || emit_prefix_stride(e, x)
        || emit_prefix_stride(e, bn) || (e->bnc && emit_bnc_reader(e, &g->nodes[bn])))
        return 0;
    if (!emit_pair_feeds(e, bn, r, c))
        return 0;
    Emit f = *e;    /* the forward phase's fusions */
    f.bwd = false;
    int s = emit_conv_sum(&f, c);
    if (!s)
        s = emit_conv_sum3(&f, c);
    int t = s ? emit_conv_sum_then(&f, c, s) : 0, xo = e->p->nodes[x].out;
    if (t && emit_bufs_overlap(e->p, e->p->nodes[t].out, xo))
        return 0;
    if (t && !emit_next_live(&f, s, t)     /* the term run before them must leave x */
        && emit_bufs_overlap(e->p, e->p->nodes[emit_live_after(&f, s)].out, xo))
        return 0;
    return emit_bufs_overlap(e->p, e->p->nodes[s ? s : c].out, xo) ? 0 : bn;
}

/* Whether the inference forward computes conv c's sum within it, and the
 * sum after it (rt_conv2d_sums_then_eval, or with its input's BN + relu
 * rt_conv2d_bnin_sums_then_eval): a training sum of emit_conv_sum3, or one
 * of emit_conv_sum followed by emit_conv_sum_then's sum. */
static bool emit_conv_sums_eval(const Emit *e, int c)
{
    if (emit_conv_sum3(e, c))
        return true;
    int s = emit_conv_sum(e, c), t = s ? emit_conv_sum_then(e, c, s) : 0;
    if (!t)
        return false;
    /* with its input's BN (read as x, h not written): the second sum's
     * output must leave x as it was */
    int bn = emit_conv_bnin(e, c);
    return !bn || !emit_bufs_overlap(e->p, e->p->nodes[t].out,
                                     e->p->nodes[e->g->nodes[bn].in[0]].out);
}

/* Conv c computing sum s (emit_conv_sum, emit_conv_sum3) and then sum t
 * (emit_conv_sum_then; 0: none) within it in training, with its input's BN
 * + relu bn (emit_conv_tbnin; 0: none), what the comment's words: with
 * eval, inference too (emit_conv_sums_eval, rt_conv2d_sums_then_eval or with
 * its input's BN rt_conv2d_bnin_sums_then_eval), one
 * block sharing the sums' arrays; without, the `if (train) {` block, and
 * the caller emits what follows its closing brace. */
static void emit_conv_sums(Emit *e, int c, int s, int t, int bn, bool eval, const char *what)
{
    const IrNode *n = &e->g->nodes[c], *sn = &e->g->nodes[s], *tn = &e->g->nodes[t];
    const IrShape *is = &e->g->nodes[n->in[0]].shape;
    const char *ind = eval ? "            " : "        ";
    int j = 0, j2 = 0;
    while (sn->in[j] != c)
        j++;
    /* the conv's scratch (what the paths that write it write): its own
     * output, or where the three run at t's step (emit_sums_step), whose
     * term between may have the conv's memory, t's output */
    char cv[64];
    snprintf(cv, sizeof cv, "%s", emit_out(e, t && emit_sums_step(e, c) == t ? t : c));
    if (eval)
        emit_f(e, "    {   /* training %s; inference with the sum%s */\n", what,
               t ? "s" : "");
    else
        emit_f(e, "    if (train) {    /* %s */\n", what);
    emit_coefs(e, sn);
    emit_f(e, "        const %s *const xs[%d] = {", e->T, sn->nin);
    for (int k = 0; k < sn->nin; k++)
        emit_f(e, "%s%s", k ? ", " : " ", sn->in[k] == c ? cv : emit_out(e, sn->in[k]));
    emit_f(e, " };\n");
    char tail[192], t2[96] = "NULL, 0, 0, NULL, NULL";
    if (t) {
        while (tn->in[j2] != s)
            j2++;
        emit_coefs_as(e, tn, "c2");
        emit_xs_as(e, tn, "xs2");
        snprintf(t2, sizeof t2, "%s, %d, %d, xs2, c2", emit_out(e, t), tn->nin, j2);
    }
    snprintf(tail, sizeof tail, "%d, %d, xs, c%s%s", sn->nin, j, t || bn ? ", " : "",
             t || bn ? t2 : "");
    if (eval)
        emit_f(e, "        if (train)\n");
    if (bn)
        emit_tbnin_call(e, ind, c, bn, true, emit_out(e, s), cv, tail);
    else
        emit_f(e, "%sFN(rt_conv2d_sums_%strain%s)(ctx, %s, %s, %s, %s, B, %d, %d, %d, %d, "
               "3, 1, 1, %s);\n", ind, t ? "then_" : "", e->S, emit_out(e, s), cv,
               emit_out(e, n->in[0]), emit_param(e, "P", n->u.conv.w), is->c, is->h, is->w,
               n->u.conv.cout, tail);
    if (!eval) {
        emit_f(e, "    }");
        return;
    }
    int ib = emit_conv_bnin(e, c);
    if (ib) {   /* with its input's BN + relu (emit_conv_bnin) */
        emit_f(e, "        else\n%sFN(rt_conv2d_bnin_sums_then_eval%s)(ctx, %s, %s, ", ind, e->S,
               emit_out(e, s), cv);
        emit_bnin_args(e, c, ib);
        emit_f(e, "%d, %d, xs, c, %s);\n    }\n", sn->nin, j, t2);
        return;
    }
    emit_f(e, "        else\n%sFN(rt_conv2d_sums_then_eval%s)(ctx, %s, %s, %s, %s, B, %d, %d, "
           "%d, %d, 3, 1, 1, %d, %d, xs, c, %s);\n    }\n", ind, e->S, emit_out(e, s),
           cv, emit_out(e, n->in[0]), emit_param(e, "P", n->u.conv.w), is->c,
           is->h, is->w, n->u.conv.cout, sn->nin, j, t2);
}

/* The fused conv c and sum s (emit_conv_sum), training and inference. */
static void emit_conv_sum_call(Emit *e, int c, int s)
{
    const char *S = e->S;
    const IrNode *n = &e->g->nodes[c], *sn = &e->g->nodes[s];
    const IrShape *is = &e->g->nodes[n->in[0]].shape;
    const char *in = emit_out(e, n->in[0]);
    int kc = sn->in[1] == c, t = emit_conv_sum_then(e, c, s), tb = emit_conv_tbnin(e, c);
    if (t) {
        bool ev = emit_conv_sums_eval(e, c);
        emit_conv_sums(e, c, s, t, tb, ev, tb ? "with its input's bn and relu (h not written), "
                       "its sum and the sum after it" : "with its sum and the sum after it");
        if (ev)
            return;
        emit_f(e, "\n");
    } else if (tb) {
        emit_f(e, "    if (train)  /* with its input's bn and relu (h not written), and its "
               "sum */\n");
        char tail[192];     /* (ring strings: all three live at once) */
        snprintf(tail, sizeof tail, "%s, %s, %s", emit_num(e, sn->u.sum.coef[kc].c0),
                 emit_out(e, sn->in[1 - kc]), emit_num(e, sn->u.sum.coef[1 - kc].c0));
        emit_tbnin_call(e, "        ", c, tb, false, emit_out(e, s), emit_out(e, c), tail);
    } else
        emit_f(e, "    if (train)  /* with its sum */\n        FN(rt_conv2d_sum_train%s)(ctx, "
               "%s, %s, %s, %s, B, %d, %d, %d, %d, 3, 1, 1, (%s)%s, %s, (%s)%s);\n", S,
               emit_out(e, s), emit_out(e, c), in, emit_param(e, "P", n->u.conv.w), is->c,
               is->h, is->w, n->u.conv.cout, e->T, emit_num(e, sn->u.sum.coef[kc].c0),
               emit_out(e, sn->in[1 - kc]), e->T, emit_num(e, sn->u.sum.coef[1 - kc].c0));
    int bn = emit_conv_bnin(e, c);
    if (bn) {
        emit_f(e, "    else    /* with its input's bn and relu, and its sum */\n"
               "        FN(rt_conv2d_bnin_sum_eval%s)(ctx, %s, ", S, emit_out(e, s));
        emit_bnin_args(e, c, bn);
        emit_f(e, "%s, %s, %s);\n", emit_num(e, sn->u.sum.coef[kc].c0),
               emit_out(e, sn->in[1 - kc]), emit_num(e, sn->u.sum.coef[1 - kc].c0));
        return;
    }
    emit_f(e, "    else    /* with its sum */\n        FN(rt_conv2d_sum_eval%s)(ctx, %s, "
           "%s, %s, B, %d, %d, %d, %d, 3, 1, 1, %s, %s, %s);\n", S,
           emit_out(e, s), in, emit_param(e, "P", n->u.conv.w), is->c, is->h, is->w,
           n->u.conv.cout, emit_num(e, sn->u.sum.coef[kc].c0),
           emit_out(e, sn->in[1 - kc]), emit_num(e, sn->u.sum.coef[1 - kc].c0));
}

/* Conv c's call with the sums it computes within it (emit_sums_step,
 * emitted at that step): emit_conv_sum_call for a 2-term sum, else
 * emit_conv_sums, training and inference. */
static void emit_conv_sums_here(Emit *e, int c)
{
    int s = emit_conv_sum(e, c);
    if (s) {
        emit_conv_sum_call(e, c, s);
        return;
    }
    s = emit_conv_sum3(e, c);
    int t = emit_conv_sum_then(e, c, s), tb = emit_conv_tbnin(e, c);
    const char *bn = tb ? "its input's bn and relu (h not written), " : "";
    char what[96];
    if (emit_sums_step(e, c) == c)
        snprintf(what, sizeof what, "with %sits sum below%s", bn, t ? " and the sum after it" : "");
    else
        snprintf(what, sizeof what, "with %sits sum and the sum after it", bn);
    emit_conv_sums(e, c, s, t, tb, true, what);
}

void emit_forward_node(Emit *e, const IrNode *n)
{
    const char *S = e->S;
    const IrShape *is = n->nin ? &e->g->nodes[n->in[0]].shape : &n->shape;
    const char *out = emit_out(e, n->id);
    const char *in = n->nin ? emit_out(e, n->in[0]) : "NULL";
    const PlanNode *pn = &e->p->nodes[n->id];
    size_t len = ir_numel(n->shape);
    emit_node_comment(e, n);
    const OpInfo *oi = op_info(n->op);
    /* a BN whose inference forward its conv ran (emit_conv_bn) */
    bool in_conv = n->op == OP_BN && emit_conv_bn(e, n->in[0]) == n->id;
    int bnc;
    if (pn->fuse && n->op == OP_RELU) {
        emit_f(e, "    /* computed with its bn above (rt_bn_relu_forward) */\n");
        return;
    }
    if (pn->fuse && n->op == OP_BN) {
        /* relu(bn(x)) into the relu's output, with the relu's branch site */
        int r = pn->fuse;
        size_t site = emit_branch_site(e, r), xs = emit_prefix_stride(e, n->in[0]);
        char xsa[96] = "";  /* a state of a dense stage: the _strided kernels */
        if (xs)
            snprintf(xsa, sizeof xsa, ", %zu", xs);
        out = emit_out(e, r);
        size_t cache = e->bnc && emit_bnc_reader(e, n) ? e->bnc[e->p->nodes[n->in[0]].out] : 0;
        if (cache)    /* the dense stage's statistics cache */
            snprintf(xsa, sizeof xsa, ", %zu, fix + %zu, %d",
                     xs ? xs : (size_t)n->shape.c * n->shape.h * n->shape.w, cache - 1,
                     emit_bnc_known(e, n));
        int pc = 0;     /* the 1x1 conv running the pair within it in training */
        for (int j = r + 1; j < e->g->nnodes && !pc; j++)
            if (e->g->nodes[j].op == OP_CONV && e->g->nodes[j].in[0] == r
                && emit_conv_pwin(e, j) == n->id)
                pc = j;
        int tc = 0;     /* the 3x3 conv running it within it in training */
        for (int j = r + 1; j < e->g->nnodes && !tc && !e->bwd; j++)
            if (e->g->nodes[j].op == OP_CONV && e->g->nodes[j].in[0] == r
                && emit_conv_tbnin(e, j) == n->id)
                tc = j;
        if (tc) {
            emit_f(e, "    /* training: in the conv below (rt_bn_relu_conv3x3_train), h not "
                   "written */\n");
        } else if (pc) {
            const IrNode *cn = &e->g->nodes[pc];
            char ca[64] = "NULL, 0";
            if (cache)
                snprintf(ca, sizeof ca, "fix + %zu, %d", cache - 1, emit_bnc_known(e, n));
            emit_f(e, "    if (train)  /* with the 1x1 conv below: h not written */\n"
                   "        FN(rt_bn_relu_conv1x1_train%s)(ctx, %s, %s, %s, %s, %s, %s, %s, %s, "
                   "%s, B, %d, %d, %d, %s, %s, nB * %zu, %zu, %s, %s, %d);\n", S,
                   emit_out(e, pc), out, emit_buf(e, pn->save0), emit_buf(e, pn->save1),
                   emit_param(e, "buf", n->u.bn.mean), emit_param(e, "buf", n->u.bn.var), in,
                   emit_param(e, "P", n->u.bn.gamma), emit_param(e, "P", n->u.bn.beta),
                   n->shape.c, n->shape.h, n->shape.w, emit_num(e, n->u.bn.momentum),
                   emit_num(e, n->u.bn.eps), site,
                   xs ? xs : (size_t)n->shape.c * n->shape.h * n->shape.w, ca,
                   emit_param(e, "P", cn->u.conv.w), cn->u.conv.cout);
        } else {
            emit_f(e, "    if (train)\n        FN(rt_bn_relu_forward_train%s%s)(ctx, %s, %s, %s, %s, "
                   "%s, %s, %s, %s, B, %d, %d, %s, %s, nB * %zu%s);\n",
                   cache ? "_cached" : xs ? "_strided" : "", S, out,
                   emit_buf(e, pn->save0), emit_buf(e, pn->save1), emit_param(e, "buf", n->u.bn.mean),
                   emit_param(e, "buf", n->u.bn.var), in, emit_param(e, "P", n->u.bn.gamma),
                   emit_param(e, "P", n->u.bn.beta), n->shape.c, n->shape.h * n->shape.w,
                   emit_num(e, n->u.bn.momentum), emit_num(e, n->u.bn.eps), site, xsa);
        }
        if (xs)
            snprintf(xsa, sizeof xsa, ", %zu", xs);
        else
            xsa[0] = '\0';
        if (in_conv) {
            emit_f(e, "    /* inference: with its conv above */\n");
            return;
        }
        /* the relu's one reader, a conv that may apply the pair to its input */
        for (int j = r + 1; j < e->g->nnodes; j++)
            if (e->g->nodes[j].op == OP_CONV && e->g->nodes[j].in[0] == r
                && emit_conv_bnin(e, j) == n->id) {
                emit_f(e, "    /* inference: in the conv below, as it reads its input */\n");
                return;
            }
        emit_f(e, "    %s\n        FN(rt_bn_relu_forward_eval%s%s)(ctx, %s, %s, %s, %s, %s, %s, "
               "B, %d, %d, %s, nB * %zu%s);\n", tc ? "if (!train)" : "else",
               xs ? "_strided" : "", S, out, in,
               emit_param(e, "P", n->u.bn.gamma), emit_param(e, "P", n->u.bn.beta),
               emit_param(e, "buf", n->u.bn.mean), emit_param(e, "buf", n->u.bn.var), n->shape.c,
               n->shape.h * n->shape.w, emit_num(e, n->u.bn.eps), site, xsa);
        return;
    }
    if (oi->flags & OPF_ACT) {
        size_t site = oi->kink ? emit_branch_site(e, n->id) : 0;
        if (n->op == OP_RELU)
            emit_f(e, "    FN(rt_relu_forward%s)(ctx, %s, %s, nB * %zu, nB * %zu);\n", S, out, in,
                   len, site);
        else
            emit_f(e, "    FN(rt_%s_forward%s)(ctx, %s, %s, nB * %zu, %s, nB * %zu);\n", oi->text, S,
                   out, in, len, emit_num(e, n->u.act.a), site);
        return;
    }
    switch (n->op) {
    case OP_CONV:
        if ((bnc = emit_sums_step(e, n->id))) {
            /* the sums reading this conv within it (training: as the sums
             * round it, the conv's output is scratch; and inference), here
             * or at a later step */
            if (bnc == n->id)
                emit_conv_sums_here(e, n->id);
            else if (emit_conv_sum(e, n->id))
                emit_f(e, "    /* with its sum below (rt_conv2d_sum_train / _eval) */\n");
            else
                emit_f(e, "    /* with its sum and the sum after it, below */\n");
            break;
        }
        if ((bnc = emit_conv_bn(e, n->id))) {
            /* inference: the BN reading this conv (and its relu) within it */
            const IrNode *bn = &e->g->nodes[bnc];
            int r = e->p->nodes[bnc].fuse, tb = e->bwd ? 0 : emit_conv_tbnin(e, n->id);
            if (tb) {
                emit_f(e, "    if (train)  /* with its input's bn and relu: h not written */\n");
                emit_tbnin_call(e, "        ", n->id, tb, false, out, "NULL", "0, NULL, 0");
            } else
                emit_f(e, "    if (train)\n        FN(rt_conv2d_forward%s)(ctx, %s, %s, %s, B, %d, "
                       "%d, %d, %d, %d, %d, %d);\n", S, out, in, emit_param(e, "P", n->u.conv.w),
                       is->c, is->h, is->w, n->u.conv.cout, n->u.conv.k, n->u.conv.stride,
                       n->u.conv.pad);
            int ib = emit_conv_bnin(e, n->id);
            if (ib) {
                emit_f(e, "    else    /* with its input's bn and relu, and its %s */\n"
                       "        FN(rt_conv2d_bnin_bn_eval%s)(ctx, %s, ",
                       r ? "bn and relu" : "bn", S, emit_out(e, r ? r : bnc));
                emit_bnin_args(e, n->id, ib);
                emit_f(e, "%s, %s, %s, %s, %s, %d, nB * %zu);\n",
                       emit_param(e, "P", bn->u.bn.gamma), emit_param(e, "P", bn->u.bn.beta),
                       emit_param(e, "buf", bn->u.bn.mean), emit_param(e, "buf", bn->u.bn.var),
                       emit_num(e, bn->u.bn.eps), r ? 1 : 0, r ? emit_branch_site(e, r) : 0);
                break;
            }
            emit_f(e, "    else    /* with its %s */\n        FN(rt_conv2d_bn_eval%s)(ctx, %s, "
                   "%s, %s, B, %d, %d, %d, %d, %d, %d, %d, %s, %s, %s, %s, %s, %d, nB * %zu);\n",
                   r ? "bn and relu" : "bn", S, emit_out(e, r ? r : bnc), in,
                   emit_param(e, "P", n->u.conv.w), is->c, is->h, is->w, n->u.conv.cout,
                   n->u.conv.k, n->u.conv.stride, n->u.conv.pad,
                   emit_param(e, "P", bn->u.bn.gamma), emit_param(e, "P", bn->u.bn.beta),
                   emit_param(e, "buf", bn->u.bn.mean), emit_param(e, "buf", bn->u.bn.var),
                   emit_num(e, bn->u.bn.eps), r ? 1 : 0, r ? emit_branch_site(e, r) : 0);
            break;
        }
        /* a forward pass's 3x3 stride-1 convs pass train on: inference may
         * take a faster kernel (rt.h); a backward's recomputation may not */
        if (!e->bwd && (bnc = emit_conv_tbnin(e, n->id))) {
            emit_f(e, "    if (train)  /* with its input's bn and relu: h not written */\n");
            emit_tbnin_call(e, "        ", n->id, bnc, false, out, "NULL", "0, NULL, 0");
            emit_f(e, "    else\n        FN(rt_conv2d_forward_mode%s)(ctx, 0, %s, %s, %s, B, %d, "
                   "%d, %d, %d, 3, 1, 1);\n", S, out, in, emit_param(e, "P", n->u.conv.w), is->c,
                   is->h, is->w, n->u.conv.cout);
        } else if (!e->bwd && n->u.conv.k == 3 && n->u.conv.stride == 1 && n->u.conv.pad == 1)
            emit_f(e, "    FN(rt_conv2d_forward_mode%s)(ctx, train, %s, %s, %s, B, %d, %d, %d, %d, "
                   "3, 1, 1);\n", S, out, in, emit_param(e, "P", n->u.conv.w), is->c, is->h,
                   is->w, n->u.conv.cout);
        else
            emit_f(e, "%s    FN(rt_conv2d_forward%s)(ctx, %s, %s, %s, B, %d, %d, %d, %d, %d, %d, "
                   "%d);\n", emit_conv_pwin(e, n->id) ? "    if (!train)    /* training: with "
                   "its input's bn above (rt_bn_relu_conv1x1_train) */\n    " : "", S, out, in, emit_param(e, "P", n->u.conv.w), is->c, is->h, is->w,
                   n->u.conv.cout, n->u.conv.k, n->u.conv.stride, n->u.conv.pad);
        break;
    case OP_BN:
        emit_f(e, "    if (train)\n        FN(rt_bn_forward_train%s)(ctx, %s, %s, %s, %s, %s, %s, "
               "%s, %s, B, %d, %d, %s, %s);\n", S, out, emit_buf(e, pn->save0),
               emit_buf(e, pn->save1), emit_param(e, "buf", n->u.bn.mean),
               emit_param(e, "buf", n->u.bn.var), in, emit_param(e, "P", n->u.bn.gamma),
               emit_param(e, "P", n->u.bn.beta), n->shape.c, n->shape.h * n->shape.w,
               emit_num(e, n->u.bn.momentum), emit_num(e, n->u.bn.eps));
        if (in_conv) {
            emit_f(e, "    /* inference: with its conv above */\n");
            break;
        }
        emit_f(e, "    else\n        FN(rt_bn_forward_eval%s)(ctx, %s, %s, %s, %s, %s, %s, B, %d, "
               "%d, %s);\n", S, out, in, emit_param(e, "P", n->u.bn.gamma),
               emit_param(e, "P", n->u.bn.beta), emit_param(e, "buf", n->u.bn.mean),
               emit_param(e, "buf", n->u.bn.var), n->shape.c, n->shape.h * n->shape.w,
               emit_num(e, n->u.bn.eps));
        break;
    case OP_SUM: {
        /* the conv computing it within it: its sum's (then sum2 0), or
         * the conv of the sum before it (emit_conv_sum_then) */
        int sum_conv = 0, sum2 = 0;
        for (int k = 0; k < n->nin; k++) {
            int c = emit_sum_conv(e, n->in[k]);
            if (emit_conv_sum(e, n->in[k]) == n->id || emit_conv_sum3(e, n->in[k]) == n->id)
                sum_conv = n->in[k], sum2 = 0;
            else if (c && emit_conv_sum_then(e, c, n->in[k]) == n->id)
                sum_conv = c, sum2 = 1;
        }
        int step = sum_conv ? emit_sums_step(e, sum_conv) : 0;
        if (step == n->id) {    /* the conv and its sums, here */
            emit_conv_sums_here(e, sum_conv);
            break;
        }
        if (sum_conv && !sum2 && emit_conv_sum(e, sum_conv)) {
            emit_f(e, "    /* computed with its conv above (rt_conv2d_sum_train / _eval) */\n");
            break;
        }
        if (sum_conv && emit_conv_sums_eval(e, sum_conv)) {
            emit_f(e, "    /* computed with its conv %s (rt_conv2d_sums_then_train / _eval) "
                   "*/\n", step > n->id ? "below" : "above");
            break;
        }
        emit_f(e, "    %s{%s\n", sum_conv ? "if (!train) " : "",
               sum_conv ? "    /* training: with its conv above */" : "");
        emit_coefs(e, n);
        emit_xs(e, n);
        emit_f(e, "        FN(rt_sum_forward%s)(ctx, %s, %d, xs, c, nB * %zu);\n    }\n", S, out,
               n->nin, len);
        break;
    }
    case OP_CONCAT:
        if (emit_concat_shared(e, n)) {
            emit_concat_shared_forward(e, n, out);
            break;
        }
        emit_f(e, "    {\n");
        emit_xs(e, n);
        emit_cs(e, n);
        emit_f(e, "        FN(rt_concat_forward%s)(ctx, %s, %d, xs, cs, B, %d);\n    }\n", S, out,
               n->nin, n->shape.h * n->shape.w);
        break;
    case OP_PAD:
        emit_f(e, "    FN(rt_pad_forward%s)(ctx, %s, %s, B, %d, %d, %d, %d, %d);\n", S, out, in,
               is->c, is->h, is->w, n->shape.c, n->u.pad.stride);
        break;
    case OP_AVGPOOL:
        emit_f(e, "    FN(rt_avgpool_forward%s)(ctx, %s, %s, B, %d, %d, %d, %d, %d);\n", S, out, in,
               is->c, is->h, is->w, n->u.pool.k, n->u.pool.stride);
        break;
    case OP_GAP:
        emit_f(e, "    FN(rt_gap_forward%s)(ctx, %s, %s, B, %d, %d);\n", S, out, in, is->c,
               is->h * is->w);
        break;
    case OP_LINEAR:
        emit_f(e, "    FN(rt_linear_forward%s)(ctx, %s, %s, %s, %s, B, %zu, %d);\n", S, out, in,
               emit_param(e, "P", n->u.linear.w),
               n->u.linear.b >= 0 ? emit_param(e, "P", n->u.linear.b) : "NULL",
               ir_numel(*is), n->shape.c);
        break;
    case OP_EXACT:
        emit_f(e, "    FN(rt_exact_forward%s)(ctx, %s, %s, %s, %s, B, %zu, %d, %s, %s, nB * %zu);\n",
               S, out, emit_buf(e, pn->save0), in, emit_param(e, "P", n->u.exact.u),
               ir_numel(*is), n->u.exact.m, emit_act(n->u.exact.phi),
               emit_num(e, n->u.exact.alpha), emit_branch_site(e, n->id));
        break;
    case OP_DROPOUT:
        emit_f(e, "    if (train) {\n        FN(rt_dropout_forward%s)(ctx, %s, %s, %s, nB * %zu, %s, "
               "&m->rng);\n", S, out, emit_buf(e, pn->save0), in, len,
               emit_num(e, n->u.dropout.p));
        /* Evaluation copies the input: a one-term sum. */
        emit_f(e, "    } else {\n        const %s one[1] = { 1 };\n"
               "        const %s *const xs[1] = { %s };\n"
               "        FN(rt_sum_forward%s)(ctx, %s, 1, xs, one, nB * %zu);\n    }\n", e->T, e->T,
               in, S, out, len);
        break;
    default:    /* input, grad: nothing to run */
        break;
    }
}

/* A block opening with the sum gradients and coefficients pg[], pc[] that
 * px's gradient is made of (PlanNode.npend). */
static void emit_pend_terms(Emit *e, const PlanNode *px, const char *what)
{
    emit_f(e, "    {   /* %s */\n        const %s *const pg[%d] = {", what, e->T, px->npend);
    for (int i = 0; i < px->npend; i++)
        emit_f(e, "%s%s", i ? ", " : " ", emit_grad(e, px->pend_sum[i]));
    emit_f(e, " };\n        const %s pc[%d] = {", e->T, px->npend);
    for (int i = 0; i < px->npend; i++) {
        emit_f(e, "%s", i ? ",\n            " : "\n            ");
        emit_coef(e, &e->g->nodes[px->pend_sum[i]], px->pend_k[i]);
    }
    emit_f(e, "\n        };\n");
}

/* The sums whose backwards a fused BN + relu's backward runs within it
 * (rt_bn_relu_backward_then): s, the BN's input; s2, the sum term j of s
 * is, whose backward follows (0: none); keep: bit 0, the BN still writes
 * s's gradient (a term of s shares the buffer and reads it later), bit 1,
 * s's backward still writes s2's. */
typedef struct {
    int s, keep, s2, j;
} EmitThen;

/* The next live node below node i in node order (the next backward); 0 if
 * none. */
static int emit_live_below(const Emit *e, int i)
{
    for (i--; i > 0 && !e->p->nodes[i].live; i--)
        ;
    return i;
}

/* A sum whose backward may run within the BN + relu backward above it:
 * numbers for coefficients, 1 or 2 terms, a gradient of its own, whole
 * tensors, no term's gradient taken on by a BN's or pad's backward. */
static bool emit_then_sum_ok(const Emit *e, int s)
{
    const IrNode *n = &e->g->nodes[s];
    const PlanNode *ps = &e->p->nodes[s];
    if (n->op != OP_SUM || n->nin > 2 || s == e->g->output || op_bwd_reads_input(n) ||
        ps->grad < 0 || ps->npend > 0 || emit_prefix_stride(e, s))
        return false;
    for (int k = 0; k < n->nin; k++)
        if (n->u.sum.coef[k].nterms || e->p->nodes[n->in[k]].npend > 0 || n->in[k] == e->g->output)
            return false;
    return true;
}

/* Whether the gradient buffers the backward of sum s writes (its terms'
 * own, not folded into s's) share memory with any of the n buffers in rw[]
 * or with each other, or with any of the 3 in ro[] but as the same memory
 * (each element is read before it is written, by the thread that writes
 * it: the tensors have one layout); each is then added to rw[] (at most
 * 2: emit_then_sum_ok's sums have 1 or 2 terms). */
static bool emit_then_clash(const Emit *e, int s, const int *ro, int *rw, int *n)
{
    const IrNode *sn = &e->g->nodes[s];
    for (int k = 0; k < sn->nin; k++) {
        const PlanNode *pt = &e->p->nodes[sn->in[k]];
        if (!pt->needs_grad || pt->grad < 0 || pt->grad == e->p->nodes[s].grad)
            continue;
        for (int i = 0; i < *n; i++)
            if (emit_bufs_overlap(e->p, pt->grad, rw[i]))
                return true;
        for (int i = 0; i < 3; i++)
            if (emit_bufs_overlap(e->p, pt->grad, ro[i]) && !emit_bufs_same(e->p, pt->grad, ro[i]))
                return true;
        rw[(*n)++] = pt->grad;
    }
    return false;
}

/* The terms of sum s whose gradients its backward writes (their own
 * buffers, not folded into s's). */
static int emit_own_grads(const Emit *e, int s)
{
    const IrNode *n = &e->g->nodes[s];
    int own = 0;
    for (int k = 0; k < n->nin; k++) {
        const PlanNode *pt = &e->p->nodes[n->in[k]];
        own += pt->needs_grad && pt->grad >= 0 && pt->grad != e->p->nodes[s].grad;
    }
    return own;
}

/* Whether a live node below s shares s's gradient buffer (reads it after
 * s's backward). */
static bool emit_grad_read_below(const Emit *e, int s)
{
    for (int j = 1; j < s; j++)
        if (e->p->nodes[j].live && e->p->nodes[j].grad == e->p->nodes[s].grad)
            return true;
    return false;
}

/* In a stored build, the sums whose backwards the fused BN + relu bn's
 * backward runs within it (rt_bn_relu_backward_then), into *t: bn's input
 * s is such a sum (emit_then_sum_ok), next to bn in node order, with a
 * term whose gradient it writes (not folded into its own: Nesterov's
 * extrapolation y = x_k + c (x_k - x_k-1), momentum's x_k+1 = x_k + v_k+1);
 * then the next backward, if it is the sum one of s's terms is (momentum's
 * v_k+1 = g v_k - (1 - g) grad) and writes a term's gradient of its own,
 * runs within it too: the bytes of rt_sum_backward's calls, the gradients
 * nobody reads afterwards never written. What the sums write shares no
 * memory with what the BN's backward reads (the planner may give a sum's
 * output the memory of the BN's gradient, dead once the BN's backward is
 * done) but as the same tensor, nor with each other. 0 if none. */
static int emit_bn_then(const Emit *e, int bn, EmitThen *t)
{
    const IrGraph *g = e->g;
    const Plan *p = e->p;
    const IrNode *b = &g->nodes[bn];
    memset(t, 0, sizeof *t);
    if (p->sched || b->op != OP_BN || !p->nodes[bn].fuse || b->nin != 1)
        return 0;
    int s = b->in[0];
    if (!emit_then_sum_ok(e, s) || emit_live_below(e, bn) != s || !emit_own_grads(e, s))
        return 0;
    const IrNode *n = &g->nodes[s];
    int r = p->nodes[bn].fuse, rec = p->nodes[r].recomp;
    /* what the BN's backward reads: dout, out and in; din */
    const int ro[3] = {p->nodes[r].grad, rec >= 0 ? rec : p->nodes[r].out, p->nodes[s].out};
    int rw[5] = {p->nodes[s].grad}, nb = 1;
    if (emit_then_clash(e, s, ro, rw, &nb))
        return 0;
    t->s = s;
    t->keep = emit_grad_read_below(e, s);
    int s2 = emit_live_below(e, s), j = -1;
    for (int k = 0; k < n->nin; k++)
        if (n->in[k] == s2)
            j = j < 0 ? k : -2;
    if (j < 0 || !emit_then_sum_ok(e, s2) || p->nodes[s2].grad == p->nodes[s].grad ||
        !p->nodes[s2].needs_grad || !emit_own_grads(e, s2) || emit_then_clash(e, s2, ro, rw, &nb))
        return s;
    t->keep |= emit_grad_read_below(e, s2) ? 2 : 0;
    t->s2 = s2;
    t->j = j;
    return s;
}

/* The BN whose backward runs sum s's within it (emit_bn_then); 0 if none. */
static int emit_sum_in_bn(const Emit *e, int s)
{
    EmitThen t;
    for (int i = s + 1, hops = 0; i < e->g->nnodes && hops < 2; i++) {
        if (!e->p->nodes[i].live)
            continue;
        if (emit_bn_then(e, i, &t) && (t.s == s || t.s2 == s))
            return i;
        hops++;
    }
    return 0;
}

/* The dxs, acc and coefficients arrays of sum s's backward (names with
 * suffix sfx), its folded terms NULL, acc from and into written[]. */
static void emit_then_arrays(Emit *e, int s, const char *sfx, bool *written)
{
    const IrNode *n = &e->g->nodes[s];
    char name[8];
    snprintf(name, sizeof name, "c%s", sfx);
    emit_coefs_as(e, n, name);
    emit_f(e, "        %s *const dxs%s[%d] = {", e->T, sfx, n->nin);
    for (int k = 0; k < n->nin; k++) {
        int x = n->in[k];
        bool fold = e->p->nodes[x].grad == e->p->nodes[s].grad;
        emit_f(e, "%s%s", k ? ", " : " ", fold ? "NULL" : emit_grad(e, x));
    }
    emit_f(e, " };\n        const int acc%s[%d] = {", sfx, n->nin);
    for (int k = 0; k < n->nin; k++) {
        int x = n->in[k];
        bool live = strcmp(emit_grad(e, x), "NULL") != 0 &&
                    e->p->nodes[x].grad != e->p->nodes[s].grad;
        emit_f(e, "%s%d", k ? ", " : " ", live && written[x]);
        if (live)
            written[x] = true;
    }
    emit_f(e, " };\n");
}

/* Backward of one node. written[] tracks which gradient buffers already
 * hold a value, so the first write overwrites (acc = 0) and later ones add. */
void emit_backward_node(Emit *e, const IrNode *n, bool *written)
{
    const char *S = e->S;
    const IrShape *is = n->nin ? &e->g->nodes[n->in[0]].shape : &n->shape;
    const PlanNode *pn = &e->p->nodes[n->id];
    const char *dout = emit_grad(e, n->id);
    int acc[EMIT_MAX_IN];
    char din[EMIT_MAX_IN][128];
    if (n->nin > EMIT_MAX_IN) {
        e->bad = 1;
        return;
    }
    for (int k = 0; k < n->nin; k++) {
        int src = n->in[k];
        snprintf(din[k], sizeof din[k], "%s", emit_grad(e, src));
        acc[k] = 0;
        if (strcmp(din[k], "NULL") != 0) {
            acc[k] = written[src];
            written[src] = true;
        }
    }
    const char *in = n->nin ? emit_out(e, n->in[0]) : "NULL";
    size_t len = ir_numel(n->shape);
    emit_node_comment(e, n);
    const OpInfo *oi = op_info(n->op);
    if (pn->fuse && n->op == OP_RELU) {
        emit_f(e, "    /* with its bn below (rt_bn_relu_backward) */\n");
        return;
    }
    if (pn->fuse && n->op == OP_BN) {
        int r = pn->fuse;
        size_t xs = emit_prefix_stride(e, n->in[0]);
        char xsa[48] = "";
        if (xs)
            snprintf(xsa, sizeof xsa, ", %zu", xs);
        const PlanNode *pr = &e->p->nodes[r];
        const PlanNode *px = &e->p->nodes[n->in[0]];
        if (px->npend > 0 && !xs) {
            /* the sums' terms it takes on (plan_defer_sums) */
            emit_pend_terms(e, px, "its input's gradient: its sums' terms, then this backward");
            emit_f(e, "        FN(rt_bn_relu_backward_pend%s)(ctx, %s, %d, pg, pc, %s, %s, %s, %s, %s, "
                   "%s, %s, %s, %s, B, %d, %d, nB * %zu);\n    }\n", S, din[0], px->npend,
                   emit_param(e, "G", n->u.bn.gamma), emit_param(e, "G", n->u.bn.beta),
                   emit_grad(e, r), pr->recomp >= 0 ? emit_buf(e, pr->recomp) : emit_out(e, r),
                   in, emit_buf(e, pn->save0), emit_buf(e, pn->save1),
                   emit_param(e, "P", n->u.bn.gamma), emit_param(e, "P", n->u.bn.beta),
                   n->shape.c, n->shape.h * n->shape.w, emit_branch_site(e, r));
            return;
        }
        EmitThen th;
        if (emit_bn_then(e, n->id, &th)) {  /* the sums' backwards within it */
            emit_f(e, "    {   /* with the backward of its input's sum below%s */\n",
                   th.s2 ? " and of the sum after it" : "");
            emit_then_arrays(e, th.s, "", written);
            if (th.s2)
                emit_then_arrays(e, th.s2, "2", written);
            emit_f(e, "        FN(rt_bn_relu_backward_then%s)(ctx, %s, %d, %s, %s, %s, %s, %s, %s, "
                   "%s, %s, %s, B, %d, %d, nB * %zu, %d, %d, dxs, acc, c, ", S, din[0], acc[0],
                   emit_param(e, "G", n->u.bn.gamma), emit_param(e, "G", n->u.bn.beta),
                   emit_grad(e, r), pr->recomp >= 0 ? emit_buf(e, pr->recomp) : emit_out(e, r),
                   in, emit_buf(e, pn->save0), emit_buf(e, pn->save1),
                   emit_param(e, "P", n->u.bn.gamma), emit_param(e, "P", n->u.bn.beta),
                   n->shape.c, n->shape.h * n->shape.w, emit_branch_site(e, r), th.keep,
                   e->g->nodes[th.s].nin);
            if (th.s2)
                emit_f(e, "%d, %d, dxs2, acc2, c2);\n    }\n", th.j, e->g->nodes[th.s2].nin);
            else
                emit_f(e, "0, 0, NULL, NULL, NULL);\n    }\n");
            return;
        }
        emit_f(e, "    FN(rt_bn_relu_backward%s%s)(ctx, %s, %d, %s, %s, %s, %s, %s, %s, %s, %s, "
               "%s, B, %d, %d, nB * %zu%s);\n", xs ? "_strided" : "", S, din[0], acc[0],
               emit_param(e, "G", n->u.bn.gamma), emit_param(e, "G", n->u.bn.beta),
               emit_grad(e, r), pr->recomp >= 0 ? emit_buf(e, pr->recomp) : emit_out(e, r), in,
               emit_buf(e, pn->save0), emit_buf(e, pn->save1),
               emit_param(e, "P", n->u.bn.gamma), emit_param(e, "P", n->u.bn.beta),
               n->shape.c, n->shape.h * n->shape.w,
               emit_branch_site(e, r), xsa);
        return;
    }
    if (oi->flags & OPF_ACT) {
        size_t site = oi->kink ? emit_branch_site(e, n->id) : 0;
        if (n->op == OP_RELU)
            emit_f(e, "    FN(rt_relu_backward%s)(ctx, %s, %d, %s, %s, nB * %zu, nB * %zu);\n", S,
                   din[0], acc[0], dout, emit_out(e, n->id), len, site);
        else
            emit_f(e, "    FN(rt_%s_backward%s)(ctx, %s, %d, %s, %s, nB * %zu, %s, nB * %zu);\n",
                   oi->text, S, din[0], acc[0], dout, in, len, emit_num(e, n->u.act.a), site);
        return;
    }
    switch (n->op) {
    case OP_CONV: {
        /* h = relu(bn(x)) was not kept (pwbn: the 1x1 or 3x3 conv applied
         * it per image; tb: rt_bn_relu_conv3x3_train never wrote it): the
         * backward applies it as dw reads x within the call (or recomputes
         * it into h where it must be); the bn's backward below takes relu's
         * mask from x */
        int pwbn = emit_conv_pwin_bwd(e, n->id), tb = pwbn ? 0 : emit_conv_tbnin(e, n->id);
        int bi = pwbn ? pwbn : tb;
        if (bi) {
            const IrNode *bn = &e->g->nodes[bi];
            const PlanNode *pb = &e->p->nodes[bi];
            int r = n->in[0], rc = e->p->nodes[r].recomp;
            emit_f(e, "    FN(rt_bn_relu_conv%s_backward%s%s)(ctx, %s, %d, %s, %s, %s, %s, %s, "
                   "%s, %s, %s, B, %d, %d, %d, nB * %zu, %zu, %s, %d);   /* ",
                   n->u.conv.k == 1 ? "1x1" : "3x3", tb && pn->gneg ? "_neg" : "", S, din[0],
                   acc[0], emit_param(e, "G", n->u.conv.w), dout,
                   pwbn || rc >= 0 ? emit_buf(e, rc) : emit_out(e, r), emit_out(e, bn->in[0]),
                   emit_buf(e, pb->save0), emit_buf(e, pb->save1),
                   emit_param(e, "P", bn->u.bn.gamma), emit_param(e, "P", bn->u.bn.beta),
                   bn->shape.c, bn->shape.h, bn->shape.w, emit_branch_site(e, r),
                   pwbn ? plan_image_stride(e->p, e->g, bn->in[0])
                        : (size_t)bn->shape.c * bn->shape.h * bn->shape.w,
                   emit_param(e, "P", n->u.conv.w), n->u.conv.cout);
            emit_comment_name(e, e->g->nodes[r].name);
            emit_f(e, tb ? " not written by the forward: applied as dw reads it */\n"
                   : n->u.conv.k == 1 ? ", not kept from forward: applied per image for dw */\n"
                   : ", not kept from forward: applied as dw reads it */\n");
            break;
        }
        const char *rin = emit_recompute(e, n);
        /* gneg: dout is its sum's gradient, the conv's term being -1 */
        emit_f(e, "    FN(rt_conv2d_backward%s%s)(ctx, %s, %d, %s, %s, %s, %s, B, %d, %d, %d, %d, "
               "%d, %d, %d);\n", pn->gneg ? "_neg" : "", S, din[0], acc[0],
               emit_param(e, "G", n->u.conv.w), dout,
               rin ? rin : in, emit_param(e, "P", n->u.conv.w), is->c, is->h, is->w,
               n->u.conv.cout, n->u.conv.k, n->u.conv.stride, n->u.conv.pad);
        break;
    }
    case OP_BN:
        emit_f(e, "    FN(rt_bn_backward%s)(ctx, %s, %d, %s, %s, %s, %s, %s, %s, %s, B, %d, %d);\n",
               S, din[0], acc[0], emit_param(e, "G", n->u.bn.gamma),
               emit_param(e, "G", n->u.bn.beta), dout, in, emit_buf(e, pn->save0),
               emit_buf(e, pn->save1), emit_param(e, "P", n->u.bn.gamma), n->shape.c,
               n->shape.h * n->shape.w);
        break;
    case OP_SUM: {
        bool learned = op_bwd_reads_input(n);
        if (emit_sum_in_bn(e, n->id)) {
            emit_f(e, "    /* within the bn's backward above (rt_bn_relu_backward_then) */\n");
            break;
        }
        /* terms that share the sum's gradient buffer (plan_fold_sums) have
         * it already: skipped */
        int nfold = 0, npend = 0;
        for (int k = 0; k < n->nin; k++) {
            int g = e->p->nodes[n->in[k]].grad;
            if (g >= 0 && g == pn->grad && strcmp(din[k], "NULL") != 0) {
                snprintf(din[k], sizeof din[k], "NULL");
                nfold++;
            } else if (e->p->nodes[n->in[k]].npend > 0 && strcmp(din[k], "NULL") != 0) {
                /* taken on by the term's BN + relu backward (plan_defer_sums) */
                snprintf(din[k], sizeof din[k], "NULL");
                npend++;
            }
        }
        int nnull = 0;
        for (int k = 0; k < n->nin; k++)
            nnull += strcmp(din[k], "NULL") == 0;
        if (nfold == n->nin || (npend && nnull == n->nin)) {
            if (npend)
                emit_f(e, "    /* no pass: its terms' backwards read its gradient where it is "
                          "(a BN + relu's or a pad's takes its coefficient on) */\n");
            else
                emit_f(e, "    /* its terms read its gradient where it is: no copy */\n");
            break;
        }
        emit_f(e, "    {\n");
        emit_coefs(e, n);
        emit_f(e, "        %s *const dxs[%d] = {", e->T, n->nin);
        for (int k = 0; k < n->nin; k++)
            emit_f(e, "%s%s", k ? ", " : " ", din[k]);
        emit_f(e, " };\n        const int acc[%d] = {", n->nin);
        for (int k = 0; k < n->nin; k++)
            emit_f(e, "%s%d", k ? ", " : " ", acc[k]);
        emit_f(e, " };\n");
        if (learned) {
            emit_xs(e, n);
            emit_f(e, "        %s dc[%d] = { 0 };\n", e->T, n->nin);
            emit_f(e, "        FN(rt_sum_backward%s)(ctx, dxs, acc, dc, %s, xs, c, %d, nB * %zu);\n",
                   S, dout, n->nin, len);
            for (int k = 0; k < n->nin; k++) {
                const IrCoef *c = &n->u.sum.coef[k];
                for (int j = 0; j < c->nterms; j++)
                    emit_f(e, "        G[%zu] += (%s)(%s * (double)dc[%d]);\n",
                           e->p->param_off[c->param[j]], e->T, emit_num(e, c->a[j]), k);
            }
        } else {
            /* Fixed coefficients: no dc, so the inputs are not read and
             * their activations may already be reused. */
            emit_f(e, "        FN(rt_sum_backward%s)(ctx, dxs, acc, NULL, %s, NULL, c, %d, "
                   "nB * %zu);\n", S, dout, n->nin, len);
        }
        emit_f(e, "    }\n");
        break;
    }
    case OP_CONCAT:
        if (emit_concat_shared(e, n)) {
            emit_concat_shared_backward(e, n, dout, din, acc);
            break;
        }
        emit_f(e, "    {\n        %s *const dxs[%d] = {", e->T, n->nin);
        for (int k = 0; k < n->nin; k++)
            emit_f(e, "%s%s", k ? ", " : " ", din[k]);
        emit_f(e, " };\n        const int acc[%d] = {", n->nin);
        for (int k = 0; k < n->nin; k++)
            emit_f(e, "%s%d", k ? ", " : " ", acc[k]);
        emit_f(e, " };\n");
        emit_cs(e, n);
        emit_f(e, "        FN(rt_concat_backward%s)(ctx, dxs, acc, %s, %d, cs, B, %d);\n    }\n", S,
               dout, n->nin, n->shape.h * n->shape.w);
        break;
    case OP_PAD:
        if (pn->npend > 0) {    /* its gradient: its sums' terms (plan_defer_sums) */
            emit_pend_terms(e, pn, "its gradient: its sums' terms, read where they are");
            emit_f(e, "        FN(rt_pad_backward_pend%s)(ctx, %s, %d, %d, pg, pc, B, %d, %d, %d, "
                   "%d, %d);\n    }\n", S, din[0], acc[0], pn->npend, is->c, is->h, is->w,
                   n->shape.c, n->u.pad.stride);
            break;
        }
        emit_f(e, "    FN(rt_pad_backward%s)(ctx, %s, %d, %s, B, %d, %d, %d, %d, %d);\n", S, din[0],
               acc[0], dout, is->c, is->h, is->w, n->shape.c, n->u.pad.stride);
        break;
    case OP_AVGPOOL:
        emit_f(e, "    FN(rt_avgpool_backward%s)(ctx, %s, %d, %s, B, %d, %d, %d, %d, %d);\n", S,
               din[0], acc[0], dout, is->c, is->h, is->w, n->u.pool.k, n->u.pool.stride);
        break;
    case OP_GAP:
        emit_f(e, "    FN(rt_gap_backward%s)(ctx, %s, %d, %s, B, %d, %d);\n", S, din[0], acc[0],
               dout, is->c, is->h * is->w);
        break;
    case OP_LINEAR:
        emit_f(e, "    FN(rt_linear_backward%s)(ctx, %s, %d, %s, %s, %s, %s, %s, B, %zu, %d);\n", S,
               din[0], acc[0], emit_param(e, "G", n->u.linear.w),
               n->u.linear.b >= 0 ? emit_param(e, "G", n->u.linear.b) : "NULL", dout, in,
               emit_param(e, "P", n->u.linear.w), ir_numel(*is), n->shape.c);
        break;
    case OP_EXACT:
        emit_f(e, "    FN(rt_exact_backward%s)(ctx, %s, %d, %s, %s, %s, %s, %s, B, %zu, %d, %s, %s, "
               "nB * %zu);\n", S, din[0], acc[0], emit_param(e, "G", n->u.exact.u), dout, in,
               emit_buf(e, pn->save0), emit_param(e, "P", n->u.exact.u), ir_numel(*is),
               n->u.exact.m, emit_act(n->u.exact.phi), emit_num(e, n->u.exact.alpha),
               emit_branch_site(e, n->id));
        break;
    case OP_DROPOUT:
        emit_f(e, "    FN(rt_dropout_backward%s)(ctx, %s, %d, %s, %s, nB * %zu);\n", S, din[0],
               acc[0], dout, emit_buf(e, pn->save0), len);
        break;
    default:    /* input, grad: nothing to run */
        break;
    }
}

/* The locals every body uses; (void) keeps unused ones quiet. */
void emit_prologue(Emit *e, bool fwd)
{
    emit_f(e, "    const RtCtx *ctx = &m->ctx;\n"
              "    const size_t nB = (size_t)B;\n"
              "    %s *const act = m->acts;\n"
              "    %s *const fix = act + %zu * nB;   /* the batch-independent buffers */\n"
              "    const %s *const P = m->params;\n", e->T, e->T, e->p->arena_a, e->T);
    if (fwd)
        emit_f(e, "    %s *const buf = m->buffers;\n", e->T);
    else
        emit_f(e, "    %s *const G = m->grads;\n", e->T);
    emit_f(e, "    (void)ctx; (void)nB; (void)act; (void)fix; (void)P; (void)%s;\n",
           fwd ? "buf; (void)train" : "G");
}

/* Ops per emitted function. Compilers (gcc's variable tracking for -g in
 * particular) slow down superlinearly on one huge function; parts of a few
 * dozen ops keep a DenseNet-BC-100 compiling in seconds, and the code in
 * each stays straight-line. */
#define EMIT_PART_OPS 24

static void emit_bodies(Emit *e, const char *model)
{
    if (e->p->sched) {          /* optc build --memory-free */
        emit_mfree_bodies(e, model);
        return;
    }
    const IrGraph *g = e->g;
    int nfwd = 0, nbwd = 0;
    for (int i = 1; i < g->nnodes; i++) {
        nfwd += e->p->nodes[i].live;
        nbwd += e->p->nodes[i].live && e->p->nodes[i].needs_grad;
    }
    int fparts = nfwd ? (nfwd + EMIT_PART_OPS - 1) / EMIT_PART_OPS : 1;
    int bparts = nbwd ? (nbwd + EMIT_PART_OPS - 1) / EMIT_PART_OPS : 1;

    /* Forward parts, in node order. */
    int i = 1;
    for (int part = 0; part < fparts; part++) {
        emit_f(e, "\n/* Forward, part %d of %d. */\n", part + 1, fparts);
        emit_f(e, "static void FN(forward%s_%d)(%s *m, int B, int train)\n{\n", e->S, part + 1,
               model);
        emit_prologue(e, true);
        for (int done = 0; i < g->nnodes && done < EMIT_PART_OPS; i++)
            if (e->p->nodes[i].live) {
                emit_forward_node(e, &g->nodes[i]);
                done++;
            }
        emit_f(e, "}\n");
    }
    emit_f(e, "\n/* Forward pass on a batch of B <= m->batch images; train selects batch\n"
              " * statistics (and updates the running ones) and dropout. */\n");
    emit_f(e, "static void FN(forward%s)(%s *m, int B, int train)\n{\n", e->S, model);
    for (int part = 0; part < fparts; part++)
        emit_f(e, "    FN(forward%s_%d)(m, B, train);\n", e->S, part + 1);
    emit_f(e, "}\n");

    /* Backward parts, in reverse node order. */
    bool *written = calloc((size_t)g->nnodes, sizeof *written);
    if (!written)
        abort();
    i = g->nnodes - 1;
    for (int part = 0; part < bparts; part++) {
        emit_f(e, "\n/* Backward, part %d of %d. */\n", part + 1, bparts);
        emit_f(e, "static void FN(backward%s_%d)(%s *m, int B)\n{\n", e->S, part + 1, model);
        emit_prologue(e, false);
        for (int done = 0; i >= 1 && done < EMIT_PART_OPS; i--)
            if (e->p->nodes[i].live && e->p->nodes[i].needs_grad) {
                emit_backward_node(e, &g->nodes[i], written);
                done++;
            }
        emit_f(e, "}\n");
    }
    free(written);
    emit_f(e, "\n/* Backward pass from m->dlogits after a training forward on the same\n"
              " * batch: parameter gradients accumulate into m->grads. */\n");
    emit_f(e, "static void FN(backward%s)(%s *m, int B)\n{\n", e->S, model);
    for (int part = 0; part < bparts; part++)
        emit_f(e, "    FN(backward%s_%d)(m, B);\n", e->S, part + 1);
    emit_f(e, "}\n");
}

long long emit_madds(const IrGraph *g)
{
    long long total = 0;
    for (int i = 1; i < g->nnodes; i++) {
        const OpInfo *oi = op_info(g->nodes[i].op);
        if (oi->madds)
            total += oi->madds(g, &g->nodes[i]);
    }
    return total;
}

static const char *emit_kind(IrParamKind k)
{
    switch (k) {
    case PK_WEIGHT: return "RT_PK_WEIGHT";
    case PK_BIAS: return "RT_PK_BIAS";
    case PK_BN_GAMMA: return "RT_PK_BN_GAMMA";
    case PK_BN_BETA: return "RT_PK_BN_BETA";
    case PK_SCALAR: return "RT_PK_SCALAR";
    case PK_BN_MEAN: return "RT_PK_BN_MEAN";
    case PK_BN_VAR: return "RT_PK_BN_VAR";
    }
    return "RT_PK_WEIGHT";
}

static const char *emit_init(IrInit k)
{
    switch (k) {
    case INIT_KAIMING: return "RT_INIT_KAIMING";
    case INIT_UNIFORM: return "RT_INIT_UNIFORM";
    case INIT_ONES: return "RT_INIT_ONES";
    case INIT_ZEROS: return "RT_INIT_ZEROS";
    case INIT_CONST: return "RT_INIT_CONST";
    }
    return "RT_INIT_ZEROS";
}

static void emit_tensors(Emit *e)
{
    const IrGraph *g = e->g;
    emit_f(e, "\n/* The parameter block (buffer 0) and the BN running statistics (1), one\n"
              " * row per tensor: offset and numel in elements within its block. */\n");
    if (g->nparams == 0) {
        emit_f(e, "static const RtTensor tensors[1];\n");
        return;
    }
    int wn = 4;     /* the name column: the longest plain name, quoted */
    for (int i = 0; i < g->nparams; i++) {
        size_t l = g->params[i].name ? strlen(g->params[i].name) + 3 : 3;
        if (l > (size_t)wn && l < 80)
            wn = (int)l;
    }
    emit_f(e, "static const RtTensor tensors[%d] = {\n", g->nparams);
    emit_f(e, "    /* %-*s %-16s ndim %-18s %8s %8s buf %-17s %-5s fan_in */\n", wn - 1, "name",
           "kind", "dims", "offset", "numel", "init", "value");
    for (int i = 0; i < g->nparams; i++) {
        const IrParam *t = &g->params[i];
        const char *name = t->name ? t->name : "";
        if (strlen(name) > EMIT_MAX_LITERAL || t->ndim < 0 || t->ndim > 4)
            e->bad = 1;
        emit_f(e, "    { ");
        emit_literal(e->out, name, strlen(name), "");
        char kind[32];
        snprintf(kind, sizeof kind, "%s,", emit_kind(t->kind));
        emit_f(e, ",%*s %-16s %d, ", (int)(strlen(name) + 3 < (size_t)wn ? wn - strlen(name) - 3 : 0),
               "", kind, t->ndim);
        char dims[64];
        snprintf(dims, sizeof dims, "{ %d, %d, %d, %d },", t->ndim > 0 ? t->dims[0] : 0,
                 t->ndim > 1 ? t->dims[1] : 0, t->ndim > 2 ? t->dims[2] : 0,
                 t->ndim > 3 ? t->dims[3] : 0);
        char init[32];
        snprintf(init, sizeof init, "%s,", emit_init(t->init));
        emit_f(e, "%-21s %8zu, %8zu, %d, %-17s %s, %d },\n", dims, e->p->param_off[i], t->numel,
               t->trainable ? 0 : 1, init, emit_num(e, t->init_value), t->fan_in);
    }
    emit_f(e, "};\n");
}

static void emit_scratch(Emit *e)
{
    const IrGraph *g = e->g;
    bool has_exact = false;
    for (int i = 1; i < g->nnodes; i++)
        has_exact = has_exact || (g->nodes[i].op == OP_EXACT && e->p->nodes[i].live);
    emit_f(e, "\n/* %s workspace: the largest any convolution%s needs. */\n"
              "static size_t scratch_bytes(int B, int threads, size_t elem_size)\n{\n"
              "    size_t s = 0, t;\n", has_exact ? "Kernel" : "im2col",
           has_exact ? " or exact block ([B][m] temporary)" : "");
    int nconv = 0, nexact = 0;
    for (int i = 1; i < g->nnodes; i++) {
        const IrNode *n = &g->nodes[i];
        if (n->op == OP_EXACT && e->p->nodes[i].live) {
            /* every exact block of a network has one m: U is shared */
            bool seen = false;
            for (int j = 1; j < i && !seen; j++)
                seen = g->nodes[j].op == OP_EXACT && e->p->nodes[j].live &&
                       g->nodes[j].u.exact.m == n->u.exact.m;
            if (!seen) {
                nexact++;
                emit_f(e, "    t = rt_exact_scratch_bytes(B, %d, elem_size);\n"
                       "    if (t > s)\n        s = t;\n", n->u.exact.m);
            }
            continue;
        }
        if (n->op != OP_CONV || !e->p->nodes[i].live)
            continue;
        const IrShape *is = &g->nodes[n->in[0]].shape;
        /* The same configuration once: later convs repeat earlier ones. */
        bool seen = false;
        for (int j = 1; j < i && !seen; j++) {
            const IrNode *o = &g->nodes[j];
            const IrShape *os = o->nin ? &g->nodes[o->in[0]].shape : &o->shape;
            seen = o->op == OP_CONV && e->p->nodes[j].live && os->c == is->c &&
                   os->h == is->h && os->w == is->w && o->u.conv.k == n->u.conv.k &&
                   o->u.conv.stride == n->u.conv.stride && o->u.conv.pad == n->u.conv.pad;
        }
        if (seen)
            continue;
        nconv++;
        emit_f(e, "    t = rt_conv2d_scratch_bytes(threads, B, %d, %d, %d, %d, %d, %d, "
               "elem_size);\n    if (t > s)\n        s = t;\n", is->c, is->h, is->w,
               n->u.conv.k, n->u.conv.stride, n->u.conv.pad);
    }
    if (!nconv && !nexact)
        emit_f(e, "    (void)B; (void)threads; (void)elem_size; (void)t;\n");
    else if (!nconv)
        emit_f(e, "    (void)threads;\n");
    emit_f(e, "    return s;\n}\n");
}

static const char *emit_sched(IrSchedule s)
{
    switch (s) {
    case SCHED_CONSTANT: return "RT_SCHED_CONSTANT";
    case SCHED_STEP: return "RT_SCHED_STEP";
    case SCHED_COSINE: return "RT_SCHED_COSINE";
    }
    return "RT_SCHED_CONSTANT";
}

static void emit_net(Emit *e)
{
    const IrGraph *g = e->g;
    const IrTrain *t = &g->train;
    int nops = 0;
    for (int i = 1; i < g->nnodes; i++)
        nops += e->p->nodes[i].live;
    emit_f(e, "\nstatic const RtNet net = {\n    .name = ");
    emit_literal(e->out, g->name, strlen(g->name), "");
    emit_f(e, ",\n    .optc_version = \"%s\",\n    .command = command_text,\n"
              "    .spec = spec_text,\n", OPTC_VERSION);
    emit_f(e, "    .in_c = %d, .in_h = %d, .in_w = %d, .classes = %d,\n", g->input.c, g->input.h,
           g->input.w, g->classes);
    emit_f(e, "    .nparams = %zu, .nbuffers = %zu,\n", e->p->nparams, e->p->nbuffers);
    emit_f(e, "    .tensors = tensors, .ntensors = %d,\n", g->nparams);
    emit_f(e, "    .madds = %lld, .nops = %d, .branch_elems = %zu,\n", emit_madds(g), nops,
           emit_branch_site(e, g->nnodes));
    emit_f(e, "    .act_elems = act_elems, .scratch_bytes = scratch_bytes,\n"
              "    .forward = forward, .backward = backward,\n"
              "    .forward_d = forward_d, .backward_d = backward_d,\n");
    if (e->p->sched)
        emit_mfree_net(e);
    emit_f(e, "    .defaults = {\n        .epochs = %d, .batch = %d, .lr = %s, .momentum = %s,\n",
           t->epochs, t->batch, emit_num(e, t->lr), emit_num(e, t->momentum));
    emit_f(e, "        .weight_decay = %s, .nesterov = %d, .decay_bn = %d,\n",
           emit_num(e, t->weight_decay), t->nesterov ? 1 : 0, t->decay_bn ? 1 : 0);
    emit_f(e, "        .schedule = %s, .warmup_epochs = %d, .step_gamma = %s,\n",
           emit_sched(t->schedule), t->warmup_epochs, emit_num(e, t->step_gamma));
    int nm = t->nmilestones < 0 ? 0 : t->nmilestones > 4 ? 4 : t->nmilestones;
    emit_f(e, "        .milestones = { %d, %d, %d, %d }, .nmilestones = %d,\n",
           nm > 0 ? t->milestones[0] : 0, nm > 1 ? t->milestones[1] : 0,
           nm > 2 ? t->milestones[2] : 0, nm > 3 ? t->milestones[3] : 0, nm);
    emit_f(e, "        .crop_pad = %d, .flip = %d,\n    },\n};\n", t->crop_pad, t->flip ? 1 : 0);
}

int emit_c(FILE *out, const IrGraph *g, const Plan *p, const EmitInfo *info, FILE *diag)
{
    Emit e0 = { .out = out, .diag = diag, .g = g, .p = p, .T = "float", .S = "" };
    Emit *e = &e0;
    const char *cmd = info && info->command ? info->command : "";
    const char *path = info && info->spec_path ? info->spec_path : (g->spec_path ? g->spec_path : "");
    emit_bnc_plan(e);

    fprintf(out, "/* Generated by optc %s from the spec below; do not edit.\n", OPTC_VERSION);
    fputs(" *\n * Command:\n", out);
    emit_comment_text(out, cmd, strlen(cmd));
    fputs(" * Network:\n", out);
    emit_comment_text(out, g->name, strlen(g->name));
    fprintf(out, " * Input %dx%dx%d, %d classes, %d ops, %lld multiply-adds per image.\n",
            g->input.c, g->input.h, g->input.w, g->classes, g->nnodes - 1, emit_madds(g));
    fprintf(out, " * Parameters: %zu; BN running statistics: %zu.\n", p->nparams, p->nbuffers);
    fprintf(out, " * Activation arena: %zu*B + %zu elements (%zu*B + %zu without reuse);\n"
                 " * a float model at batch %d takes %.1f MB in all.\n",
            p->arena_a, e->arena_b, p->naive_a, p->naive_b, RT_DEFAULT_BATCH,
            (double)plan_total_bytes(p, g, RT_DEFAULT_BATCH, sizeof(float)) / 1e6);
    fputs(" *\n * Spec:\n", out);
    emit_comment_text(out, path, strlen(path));
    /* The spec is written once: as the string spec_text below, or here
     * when it is too long for one string literal (then spec_text is a
     * byte list). */
    if (info && info->spec_text && info->spec_len > EMIT_MAX_LITERAL) {
        fputs(" *\n", out);
        emit_comment_text(out, info->spec_text, info->spec_len);
    } else {
        fputs(" * (its text is spec_text below)\n", out);
    }
    fputs(" */\n#ifndef OPTC_BODY\n#include <stddef.h>\n#include \"rt.h\"\n\n", out);

    emit_text_array(out, "command_text", cmd, strlen(cmd));
    if (info && info->spec_text)
        emit_text_array(out, "spec_text", info->spec_text, info->spec_len);
    else
        emit_text_array(out, "spec_text", "", 0);

    emit_tensors(e);
    emit_f(e, "\n/* Activation arena elements at batch B. */\n"
              "static size_t act_elems(int B)\n{\n"
              "    return (size_t)%zu * (size_t)B + (size_t)%zu;\n}\n", p->arena_a, e->arena_b);
    emit_scratch(e);
    /* One body over T, compiled twice by the file including itself (by its
     * own name, so from any directory). */
    emit_f(e, "\n/* The forward and backward passes (after the #else below) are written once\n"
              " * over T and compiled twice, by this file including itself: in float for\n"
              " * training, and in double (names ending in _d) for gradcheck. */\n"
              "#define OPTC_BODY\n"
              "#ifdef __FILE_NAME__\n#define OPTC_SELF __FILE_NAME__\n"
              "#else\n#define OPTC_SELF __FILE__\n#endif\n"
              "#define T float\n#define FN(name) name\n#define Model RtModel\n"
              "#include OPTC_SELF\n#undef T\n#undef FN\n#undef Model\n"
              "#define T double\n#define FN(name) name##_d\n#define Model RtModelD\n"
              "#include OPTC_SELF\n#undef T\n#undef FN\n#undef Model\n");
    if (p->sched)
        emit_mfree_names(e);
    emit_net(e);
    emit_f(e, "\nint main(int argc, char **argv)\n{\n    return rt_main(&net, argc, argv);\n}\n");
    emit_f(e, "\n#else /* OPTC_BODY: the passes, over T */\n");
    e->T = "T";
    e->S = "";
    emit_bodies(e, "Model");
    emit_f(e, "\n#endif /* OPTC_BODY */\n");
    free(e->bnc);
    e->bnc = NULL;
    if (e->bad) {
        fprintf(diag, "optc: %s: a value cannot be written as C (non-finite number, name "
                "too long or too many inputs)\n", g->name);
        return -1;
    }
    if (fflush(out) != 0 || ferror(out)) {
        fprintf(diag, "optc: write error while emitting %s\n", g->name);
        return -1;
    }
    return 0;
}
