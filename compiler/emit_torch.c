/* emit_torch.c — optc emit --pytorch: the network as a readable PyTorch
 * module, the oracle the C is checked against (tests/oracle/).
 *
 * The module computes what the C forward computes, op for op in the same
 * order (live nodes only, as emit_c), with one comment line per op in the
 * C's format. Autograd gives the backward; batch norm is F.batch_norm over
 * registered tensors (training: batch statistics, the running averages
 * updated with the IR momentum and the unbiased variance as the runtime
 * does; eval: the running statistics), so state_dict() holds exactly the IR
 * tensor names: no num_batches_tracked.
 *
 * Safety of the output: user text reaches the file only in comments (one
 * "# " line per source line, control and non-ASCII bytes as \xNN) and in
 * string literals (bytes outside [A-Za-z0-9_.] as \xNN escapes). Python
 * identifiers in the file are fixed names or x<node id>. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "emit_torch.h"
#include "frontend.h"
#include "optable.h"

/* Each activation of the op table as PyTorch computes it (its functional
 * form); the module defines one Python function per activation, which the
 * forward calls by name (the oracle wraps the kinked ones). An activation
 * missing here cannot be emitted (tch_act_expr returns NULL). */
static const struct { const char *name, *expr; } tch_acts[] = {
    { "relu", "F.relu(x)" },
    { "leaky_relu", "F.leaky_relu(x, a)" },
    { "elu", "F.elu(x, a)" },
    { "sigmoid", "torch.sigmoid(x)" },
    { "tanh", "torch.tanh(x)" },
    { "softplus", "F.softplus(x)" },
    { "softsign", "F.softsign(x)" },
    { "silu", "F.silu(x)" },
    { "gelu", "F.gelu(x)" },     /* the exact erf form, as optc's */
};

static const char *tch_act_expr(const char *name)
{
    for (size_t i = 0; i < sizeof tch_acts / sizeof tch_acts[0]; i++)
        if (strcmp(tch_acts[i].name, name) == 0)
            return tch_acts[i].expr;
    return NULL;
}

typedef struct {
    FILE *out;
    const IrGraph *g;
    const Plan *p;
    int bad;            /* a number or name could not be written */
    char ring[16][64];  /* texts handed out by tch_num */
    int ringpos;
} Tch;

static void tch_f(Tch *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tch_f(Tch *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(t->out, fmt, ap);
    va_end(ap);
}

/* A double as a Python literal that reads back to the same value. */
static const char *tch_num(Tch *t, double v)
{
    char *s = t->ring[t->ringpos++ % 16];
    if (!isfinite(v)) {
        t->bad = 1;
        snprintf(s, sizeof t->ring[0], "0.0");
        return s;
    }
    /* the shortest of %.15g..%.17g that reads back exactly */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof t->ring[0], "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    if (!strpbrk(s, ".eni"))
        strcat(s, ".0");        /* a float literal, so the arithmetic stays float */
    return s;
}

/* A Python string literal. */
static void tch_str(Tch *t, const char *s)
{
    fputc('"', t->out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (emit_plain(c))
            fputc(c, t->out);
        else
            fprintf(t->out, "\\x%02x", c);
    }
    fputc('"', t->out);
}

/* Text as comment lines "# ...", each source line its own comment. */
static void tch_comment(FILE *out, const char *s, size_t n)
{
    fputs("# ", out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs(i + 1 < n ? "\n# " : "", out);
        else if (c == '\\')
            fputs("\\\\", out);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, out);
        else
            fprintf(out, "\\x%02x", c);
    }
    fputc('\n', out);
}

/* P["name"]: the tensor of parameter index i. */
static void tch_param(Tch *t, int i)
{
    fputs("P[", t->out);
    tch_str(t, t->g->params[i].name ? t->g->params[i].name : "");
    fputs("]", t->out);
}

static const char *tch_kind(IrParamKind k)
{
    switch (k) {
    case PK_WEIGHT: return "weight";
    case PK_BIAS: return "bias";
    case PK_BN_GAMMA: return "bn_weight";
    case PK_BN_BETA: return "bn_bias";
    case PK_SCALAR: return "scalar";
    case PK_BN_MEAN: return "bn_mean";
    case PK_BN_VAR: return "bn_var";
    }
    return "weight";
}

static const char *tch_init(IrInit k)
{
    switch (k) {
    case INIT_KAIMING: return "kaiming";
    case INIT_UNIFORM: return "uniform";
    case INIT_ONES: return "ones";
    case INIT_ZEROS: return "zeros";
    case INIT_CONST: return "const";
    }
    return "zeros";
}

/* One coefficient of a sum: a number, or (c0 + a * P["s"] ...) when learned. */
static void tch_coef(Tch *t, const IrCoef *c)
{
    if (c->nterms == 0) {
        tch_f(t, "%s", tch_num(t, c->c0));
        return;
    }
    tch_f(t, "(%s", tch_num(t, c->c0));
    for (int j = 0; j < c->nterms; j++) {
        tch_f(t, " + %s * ", tch_num(t, c->a[j]));
        tch_param(t, c->param[j]);
    }
    tch_f(t, ")");
}

/* The comment line of a node, as the C has it. */
static void tch_node_comment(Tch *t, const IrNode *n)
{
    const IrShape *in = n->nin ? &t->g->nodes[n->in[0]].shape : &n->shape;
    tch_f(t, "        # %d ", n->id);
    for (const char *c = n->name ? n->name : ""; *c; c++)
        fputc(emit_plain((unsigned char)*c) ? *c : '_', t->out);
    tch_f(t, ": %s %dx%dx%d -> %dx%dx%d\n", ir_op_name(n->op), in->c, in->h, in->w,
          n->shape.c, n->shape.h, n->shape.w);
}

/* One op of the forward: "x<id> = ..." (one case per op kind). */
static void tch_node(Tch *t, const IrNode *n)
{
    const IrShape *is = n->nin ? &t->g->nodes[n->in[0]].shape : &n->shape;
    int x = n->nin ? n->in[0] : 0;
    tch_node_comment(t, n);
    tch_f(t, "        x%d = ", n->id);
    const OpInfo *oi = op_info(n->op);
    if (oi->flags & OPF_ACT) {
        /* Activations are functions defined once (tch_act_defs) and called
         * by name, with their argument when they have one. */
        if (!tch_act_expr(oi->text))
            t->bad = 1;
        if (oi->arg[0])
            tch_f(t, "%s(x%d, %s)\n", oi->text, x, tch_num(t, n->u.act.a));
        else
            tch_f(t, "%s(x%d)\n", oi->text, x);
        return;
    }
    switch (n->op) {
    case OP_CONV:
        tch_f(t, "F.conv2d(x%d, ", x);
        tch_param(t, n->u.conv.w);
        tch_f(t, ", None, %d, %d)\n", n->u.conv.stride, n->u.conv.pad);
        break;
    case OP_BN:
        tch_f(t, "F.batch_norm(x%d, ", x);
        tch_param(t, n->u.bn.mean);
        tch_f(t, ", ");
        tch_param(t, n->u.bn.var);
        tch_f(t, ", ");
        tch_param(t, n->u.bn.gamma);
        tch_f(t, ", ");
        tch_param(t, n->u.bn.beta);
        tch_f(t, ", self.training, %s, %s)\n", tch_num(t, n->u.bn.momentum),
              tch_num(t, n->u.bn.eps));
        break;
    case OP_SUM:
        /* Left to right, as the C accumulates in double; products with 1
         * and -1 and the sign moved into a subtraction change no bit. */
        for (int k = 0; k < n->nin; k++) {
            const IrCoef *c = &n->u.sum.coef[k];
            if (c->nterms == 0 && (c->c0 == 1.0 || c->c0 == -1.0)) {
                if (k)
                    tch_f(t, " %s x%d", c->c0 > 0 ? "+" : "-", n->in[k]);
                else
                    tch_f(t, "%sx%d", c->c0 > 0 ? "" : "-", n->in[k]);
                continue;
            }
            if (k && c->nterms == 0 && c->c0 < 0)   /* a + (-c) x is a - c x exactly */
                tch_f(t, " - %s * x%d", tch_num(t, -c->c0), n->in[k]);
            else {
                tch_f(t, "%s", k ? " + " : "");
                tch_coef(t, c);
                tch_f(t, " * x%d", n->in[k]);
            }
        }
        tch_f(t, "\n");
        break;
    case OP_CONCAT:
        tch_f(t, "torch.cat([");
        for (int k = 0; k < n->nin; k++)
            tch_f(t, "%sx%d", k ? ", " : "", n->in[k]);
        tch_f(t, "], 1)\n");
        break;
    case OP_PAD:
        tch_f(t, "F.pad(x%d[:, :, ::%d, ::%d], (0, 0, 0, 0, 0, %d))\n", x, n->u.pad.stride,
              n->u.pad.stride, n->shape.c - is->c);
        break;
    case OP_AVGPOOL:
        tch_f(t, "F.avg_pool2d(x%d, %d, %d)\n", x, n->u.pool.k, n->u.pool.stride);
        break;
    case OP_GAP:
        tch_f(t, "x%d.mean((2, 3), keepdim=True)\n", x);
        break;
    case OP_LINEAR:
        tch_f(t, "F.linear(x%d.flatten(1), ", x);
        tch_param(t, n->u.linear.w);
        tch_f(t, ", ");
        if (n->u.linear.b >= 0)
            tch_param(t, n->u.linear.b);
        else
            tch_f(t, "None");
        tch_f(t, ").view(-1, %d, %d, %d)\n", n->shape.c, n->shape.h, n->shape.w);
        break;
    case OP_EXACT: {
        int phi = op_find(n->u.exact.phi, OPF_ACT);
        if (phi < 0 || !tch_act_expr(n->u.exact.phi)) {
            t->bad = 1;
            tch_f(t, "None\n");
            break;
        }
        tch_f(t, "exact(x%d, ", x);
        tch_param(t, n->u.exact.u);
        tch_f(t, ", %s", n->u.exact.phi);
        if (op_info((IrOp)phi)->arg[0])
            tch_f(t, ", %s", tch_num(t, n->u.exact.alpha));
        tch_f(t, ")\n");
        break;
    }
    case OP_DROPOUT:
        tch_f(t, "F.dropout(x%d, %s, self.training)\n", x, tch_num(t, n->u.dropout.p));
        break;
    default:    /* input, grad: not an op of a module */
        t->bad = 1;
        tch_f(t, "None\n");
        break;
    }
}

/* The fixed part of every file: activations, the exact block, the tensor
 * tree, the loss, optc's weight-decay classes. */
static const char tch_imports[] =
    "import math\n"
    "\n"
    "import torch\n"
    "import torch.nn.functional as F\n"
    "\n"
    "\n";

/* One function per activation of the op table: the forward calls these
 * names. */
static void tch_act_defs(Tch *t)
{
    tch_f(t, "# The activations, one function each: the forward calls these names.\n");
    for (int i = 0; i < OP_COUNT; i++) {
        const OpInfo *oi = op_info((IrOp)i);
        if (!(oi->flags & OPF_ACT))
            continue;
        const char *expr = tch_act_expr(oi->text);
        if (!expr) {
            t->bad = 1;
            continue;
        }
        if (oi->arg[0])
            tch_f(t, "def %s(x, a=%s):\n    return %s\n\n\n", oi->text, tch_num(t, oi->arg_default),
                  expr);
        else
            tch_f(t, "def %s(x):\n    return %s\n\n\n", oi->text, expr);
    }
}

static const char tch_lib[] =
    "def exact(x, U, phi, *arg):\n"
    "    \"\"\"The theory block z - U phi(U^T z) on the flattened input (U: d x m).\"\"\"\n"
    "    z = x.flatten(1)\n"
    "    return (z - phi(z @ U, *arg) @ U.t()).view_as(x)\n"
    "\n"
    "\n"
    "def loss(logits, labels):\n"
    "    \"\"\"optc's loss: softmax cross-entropy, mean over the batch.\"\"\"\n"
    "    return F.cross_entropy(logits, labels)\n"
    "\n"
    "\n"
    "def _initial(shape, init, value, fan_in):\n"
    "    \"\"\"A tensor drawn by optc's init rule (not optc's random stream).\"\"\"\n"
    "    fan = float(fan_in if fan_in > 0 else 1)\n"
    "    if init == \"kaiming\":\n"
    "        return torch.randn(shape) * math.sqrt(2.0 / fan)\n"
    "    if init == \"uniform\":\n"
    "        return (torch.rand(shape) * 2 - 1) / math.sqrt(fan)\n"
    "    if init == \"ones\":\n"
    "        return torch.ones(shape)\n"
    "    if init == \"const\":\n"
    "        return torch.full(shape, float(value))\n"
    "    return torch.zeros(shape)\n"
    "\n"
    "\n"
    "class Net(torch.nn.Module):\n"
    "    \"\"\"The network; tensors are registered under their optc names (a\n"
    "    dotted name is a path of submodules), BN running statistics as\n"
    "    buffers.\"\"\"\n"
    "\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        # Straight into the registries, not through add_module and\n"
    "        # register_*, so that any optc name works, even one that is also\n"
    "        # a Module attribute (an optimizer parameter called \"train\").\n"
    "        for name, shape, kind, init, value, fan_in in TENSORS:\n"
    "            owner = self\n"
    "            *path, leaf = name.split(\".\")\n"
    "            for part in path:\n"
    "                owner = owner._modules.setdefault(part, torch.nn.Module())\n"
    "            t = _initial(shape, init, value, fan_in)\n"
    "            if kind in (\"bn_mean\", \"bn_var\"):\n"
    "                owner._buffers[leaf] = t\n"
    "            else:\n"
    "                owner._parameters[leaf] = torch.nn.Parameter(t)\n"
    "\n"
    "    def tensors(self):\n"
    "        \"\"\"Every parameter and buffer by its optc name.\"\"\"\n"
    "        P = dict(self.named_parameters())\n"
    "        P.update(self.named_buffers())\n"
    "        return P\n"
    "\n"
    "    def forward(self, x):\n"
    "        \"\"\"Logits [B][classes] of images x [B][C][H][W], computed in the\n"
    "        parameters' dtype. Training mode: BN batch statistics (running\n"
    "        ones updated) and dropout; eval mode: running statistics.\"\"\"\n"
    "        P = self.tensors()\n"
    "        x0 = x.to(next(iter(P.values())).dtype) if P else x\n";

static const char tch_tail[] =
    "\n"
    "\n"
    "def build():\n"
    "    \"\"\"A fresh module (float32; .double() for float64).\"\"\"\n"
    "    return Net()\n"
    "\n"
    "\n"
    "def decay_of(kind, weight_decay, decay_bn):\n"
    "    \"\"\"optc's weight-decay classes: weights decayed; BN affine only when\n"
    "    the network says so; biases and learned scalars never.\"\"\"\n"
    "    if kind == \"weight\":\n"
    "        return weight_decay\n"
    "    if kind in (\"bn_weight\", \"bn_bias\") and decay_bn:\n"
    "        return weight_decay\n"
    "    return 0.0\n"
    "\n"
    "\n"
    "def param_groups(model, weight_decay=None, decay_bn=None):\n"
    "    \"\"\"torch.optim.SGD parameter groups with optc's decay classes\n"
    "    (defaults: the network's train block).\"\"\"\n"
    "    wd = TRAIN[\"weight_decay\"] if weight_decay is None else weight_decay\n"
    "    dbn = TRAIN[\"decay_bn\"] if decay_bn is None else decay_bn\n"
    "    P = dict(model.named_parameters())\n"
    "    groups = {}\n"
    "    for name, _shape, kind, _init, _value, _fan in TENSORS:\n"
    "        if name in P:\n"
    "            groups.setdefault(decay_of(kind, wd, dbn), []).append(P[name])\n"
    "    return [{\"params\": ps, \"weight_decay\": d} for d, ps in groups.items()]\n";

int emit_torch(FILE *out, const IrGraph *g, const Plan *p, const EmitInfo *info, FILE *diag)
{
    Tch t0 = { .out = out, .g = g, .p = p };
    Tch *t = &t0;
    const char *cmd = info && info->command ? info->command : "";
    const char *path = info && info->spec_path ? info->spec_path : (g->spec_path ? g->spec_path : "");

    fprintf(out, "# Generated by optc %s from the spec below; do not edit.\n#\n# Command:\n",
            OPTC_VERSION);
    tch_comment(out, cmd, strlen(cmd));
    fputs("# Network:\n", out);
    tch_comment(out, g->name, strlen(g->name));
    fprintf(out, "# Input %dx%dx%d, %d classes. The PyTorch twin of the C optc emits for\n"
                 "# this network: the same ops in the same order, autograd for the backward.\n",
            g->input.c, g->input.h, g->input.w, g->classes);
    fputs("#\n# Spec:\n", out);
    tch_comment(out, path, strlen(path));
    fputs("#\n", out);
    if (info && info->spec_text)
        tch_comment(out, info->spec_text, info->spec_len);
    fputs("\"\"\"optc network as a PyTorch module: build() returns it; loss(logits, labels)\n"
          "is optc's loss; param_groups(model) gives torch.optim.SGD optc's decay classes.\"\"\"\n",
          out);
    fputs(tch_imports, out);
    tch_act_defs(t);
    fputs(tch_lib, out);
    for (int i = 1; i < g->nnodes; i++)
        if (p->nodes[i].live)
            tch_node(t, &g->nodes[i]);
    tch_f(t, "        return x%d.flatten(1)\n", g->output);

    tch_f(t, "\n\nNAME = ");
    tch_str(t, g->name);
    tch_f(t, "\nINPUT = (%d, %d, %d)\nCLASSES = %d\n", g->input.c, g->input.h, g->input.w,
          g->classes);
    const IrTrain *tr = &g->train;
    tch_f(t, "TRAIN = {\"epochs\": %d, \"batch\": %d, \"lr\": %s, \"momentum\": %s,\n"
             "         \"weight_decay\": %s, \"nesterov\": %s, \"decay_bn\": %s}\n",
          tr->epochs, tr->batch, tch_num(t, tr->lr), tch_num(t, tr->momentum),
          tch_num(t, tr->weight_decay), tr->nesterov ? "True" : "False",
          tr->decay_bn ? "True" : "False");
    tch_f(t, "\n# name, shape, kind, init, init value, fan-in: optc's tensor table.\n"
             "TENSORS = [\n");
    for (int i = 0; i < g->nparams; i++) {
        const IrParam *q = &g->params[i];
        if (!q->name || q->ndim < 0 || q->ndim > 4)
            t->bad = 1;
        tch_f(t, "    (");
        tch_str(t, q->name ? q->name : "");
        tch_f(t, ", (");
        for (int d = 0; d < q->ndim && d < 4; d++)
            tch_f(t, "%d%s", q->dims[d], q->ndim == 1 ? "," : d + 1 < q->ndim ? ", " : "");
        tch_f(t, "), \"%s\", \"%s\", %s, %d),\n", tch_kind(q->kind), tch_init(q->init),
              tch_num(t, q->init_value), q->fan_in);
    }
    tch_f(t, "]\n");
    fputs(tch_tail, out);
    if (t->bad) {
        fprintf(diag, "optc: %s: a value cannot be written as Python (non-finite number, "
                "unknown activation or op)\n", g->name);
        return -1;
    }
    if (fflush(out) != 0 || ferror(out)) {
        fprintf(diag, "optc: write error while emitting %s\n", g->name);
        return -1;
    }
    return 0;
}
