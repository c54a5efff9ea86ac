/* dump.c — the dump command: the network's numbers for one batch, for an
 * outside oracle (tests/oracle/ compares them with the PyTorch module that
 * optc emit --pytorch writes).
 *
 * From one set of weights (--weights FILE, else drawn from --seed) and one
 * batch (--input FILE, else a seeded synthetic one) it runs:
 *   double code: an eval forward (BN running statistics as loaded or
 *     drawn); then a training forward (batch statistics, running ones
 *     updated), the loss, the backward;
 *   float code: the same, from the same starting state;
 *   the optimizer: two SGD steps of runtime/optim.c on the float parameters
 *     with the float gradients (the same gradients both steps, momentum
 *     buffer from zero), with the weight-decay classes of rt_weight_decay.
 *
 * Output, in directory DIR (--out):
 *   dump.bin   every tensor as float64, little-endian, one after another;
 *   dump.json  {"meta": {...}, "tensors": {NAME: {"offset": ELEMENTS,
 *              "shape": [...]}, ...}}, offsets in float64 elements.
 * Tensors: input [B][C][H][W] and labels [B]; init.T (every parameter and
 * BN statistic T as loaded or drawn, float32 values); double.loss [] and
 * float.loss []; {double,float}.logits [B][K] (training forward),
 * .eval_logits [B][K] (the eval forward, before the training one),
 * .grad.T (parameters), .state.T (BN statistics after the training
 * forward); sgd.T (parameters after the two steps); float.pieces [P] and
 * float.pieces_logits [B][K]: the float training forward run once more
 * with a branch record (runtime/rt.h) from the same state, P = B x the
 * network's piecewise elements per image: the piece (0..255) each element
 * of each piecewise call took, the calls in node order, each call's
 * elements in its tensor's order (an activation with a kink: 1 where its
 * input is > 0), and that forward's logits (the training forward's, byte
 * for byte, or the record is not the float code's). Reading it
 * in Python:
 *   idx = json.load(open(d + "/dump.json"))
 *   raw = torch.frombuffer(bytearray(open(d + "/dump.bin", "rb").read()), dtype=torch.float64)
 *   t = {k: raw[v["offset"]:v["offset"] + math.prod(v["shape"])].view(v["shape"])
 *        for k, v in idx["tensors"].items()}
 *
 * --input FILE is a safetensors file with F32 tensors "input" [B][C][H][W]
 * and "labels" [B] (integral class numbers); B comes from the file. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "driver.h"

/* Salt of the synthetic batch's stream (apart from the weights' one). */
#define DUMP_INPUT_SALT 0x64756d70ULL
#define DUMP_SGD_STEPS 2

typedef struct {
    FILE *bin, *json;
    size_t off;         /* float64 elements written so far */
    int n;              /* tensors written */
} Dump;

/* One float64 value, little-endian. */
static void dump_f64(Dump *w, double v)
{
    uint64_t u;
    unsigned char b[8];
    memcpy(&u, &v, sizeof u);
    for (int k = 0; k < 8; k++)
        b[k] = (unsigned char)(u >> (8 * k));
    fwrite(b, 1, 8, w->bin);
}

/* The index entry of the numel values just written: shape dims[0..ndim)
 * ([] for a scalar), or [numel] with dims NULL and ndim 1. */
static void dump_index(Dump *w, const char *prefix, const char *name, size_t numel,
                       const int *dims, int ndim)
{
    fprintf(w->json, "%s\n  \"%s%s\": {\"offset\": %zu, \"shape\": [", w->n ? "," : "", prefix,
            name, w->off);
    if (!dims && ndim == 1)
        fprintf(w->json, "%zu", numel);
    for (int k = 0; dims && k < ndim; k++)
        fprintf(w->json, "%s%d", k ? ", " : "", dims[k]);
    fprintf(w->json, "]}");
    w->off += numel;
    w->n++;
}

/* One tensor: values from float (f) or double (d) memory, shape dims. */
static void dump_put(Dump *w, const char *prefix, const char *name, const float *f,
                     const double *d, size_t numel, const int *dims, int ndim)
{
    for (size_t i = 0; i < numel; i++)
        dump_f64(w, f ? (double)f[i] : d[i]);
    dump_index(w, prefix, name, numel, dims, ndim);
}

/* One tensor of bytes b (as float64 values 0..255), shape [n]. */
static void dump_put_bytes(Dump *w, const char *name, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dump_f64(w, (double)b[i]);
    dump_index(w, "", name, n, NULL, 1);
}

/* Every tensor of the table (parameters when params, else BN statistics)
 * from the block of either type, as prefix.name. */
static void dump_tensors(Dump *w, const RtNet *net, const char *prefix, const float *f,
                         const double *d, int params)
{
    for (int i = 0; i < net->ntensors; i++) {
        const RtTensor *t = &net->tensors[i];
        if (t->buffer == params)
            continue;
        dump_put(w, prefix, t->name, f ? f + t->offset : NULL, d ? d + t->offset : NULL,
                 t->numel, t->dims, t->ndim);
    }
}

/* The batch from a safetensors file: *B from its shape, x and y allocated. */
static int dump_read_input(const char *path, const RtNet *net, int *B, float **x, uint8_t **y,
                           RtErr *err)
{
    RtStFile *f = rt_st_open(path, err);
    if (!f)
        return -1;
    int nd, dims[4], nl, ld[4];
    if (rt_st_shape(f, "input", &nd, dims) || rt_st_shape(f, "labels", &nl, ld) || nd != 4 ||
        nl != 1 || dims[1] != net->in_c || dims[2] != net->in_h || dims[3] != net->in_w ||
        ld[0] != dims[0] || dims[0] < 1) {
        snprintf(err->msg, sizeof err->msg,
                 "%s: needs F32 tensors input [B][%d][%d][%d] and labels [B]", path, net->in_c,
                 net->in_h, net->in_w);
        rt_st_close(f);
        return -1;
    }
    size_t n = (size_t)dims[0] * (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    float *lab = malloc((size_t)dims[0] * sizeof *lab);
    *x = malloc(n * sizeof **x);
    *y = malloc((size_t)dims[0]);
    if (!lab || !*x || !*y || rt_st_read(f, "input", *x, n, err) ||
        rt_st_read(f, "labels", lab, (size_t)dims[0], err)) {
        if (!lab || !*x || !*y)
            snprintf(err->msg, sizeof err->msg, "out of memory");
        free(lab);
        rt_st_close(f);
        return -1;
    }
    for (int i = 0; i < dims[0]; i++) {
        if (!(lab[i] >= 0 && lab[i] < (float)net->classes) || lab[i] != floorf(lab[i])) {
            snprintf(err->msg, sizeof err->msg, "%s: label %d is %g, not a class in [0, %d)",
                     path, i, (double)lab[i], net->classes);
            free(lab);
            rt_st_close(f);
            return -1;
        }
        (*y)[i] = (uint8_t)lab[i];
    }
    *B = dims[0];
    free(lab);
    rt_st_close(f);
    return 0;
}

/* Both codes' training and eval passes over the same state; see the head
 * comment. Returns 0, or -1 with err set. */
static int dump_run(const RtNet *net, Dump *w, RtModel *mf, const uint8_t *labels, int B,
                    const RtTrainConfig *c, RtErr *err)
{
    size_t np = net->nparams, nb = net->nbuffers, K = (size_t)net->classes;
    size_t nin = (size_t)B * (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    int lshape[2] = {B, net->classes}, ishape[4] = {B, net->in_c, net->in_h, net->in_w};
    RtModelD md;
    if (rt_model_init_d(&md, net, B, mf->ctx.threads, err))
        return -1;
    float *buf0 = malloc((nb + 1) * sizeof *buf0), *probs = malloc(B * K * sizeof *probs);
    float *mom = calloc(np + 1, sizeof *mom), *lab = malloc((size_t)B * sizeof *lab);
    double *probs_d = malloc(B * K * sizeof *probs_d);
    uint8_t *pieces = malloc((size_t)B * net->branch_elems + 1);
    if (!buf0 || !probs || !mom || !lab || !probs_d || !pieces) {
        snprintf(err->msg, sizeof err->msg, "out of memory");
        free(buf0), free(probs), free(mom), free(lab), free(probs_d), free(pieces);
        rt_model_free_d(&md);
        return -1;
    }
    memcpy(buf0, mf->buffers, nb * sizeof *buf0);
    for (int i = 0; i < B; i++)
        lab[i] = (float)labels[i];
    dump_put(w, "", "input", mf->input, NULL, nin, ishape, 4);
    dump_put(w, "", "labels", lab, NULL, (size_t)B, &B, 1);
    dump_tensors(w, net, "init.", mf->params, NULL, 1);
    dump_tensors(w, net, "init.", mf->buffers, NULL, 0);

    /* double */
    for (size_t i = 0; i < np; i++)
        md.params[i] = (double)mf->params[i];
    for (size_t i = 0; i < nb; i++)
        md.buffers[i] = (double)buf0[i];
    for (size_t i = 0; i < nin; i++)
        md.input[i] = (double)mf->input[i];
    md.rng = mf->rng;
    net->forward_d(&md, B, 0);
    dump_put(w, "", "double.eval_logits", NULL, md.logits, B * K, lshape, 2);
    net->forward_d(&md, B, 1);
    double loss_d = rt_xent_forward_d(&md.ctx, probs_d, md.logits, labels, B, net->classes);
    rt_xent_backward_d(&md.ctx, md.dlogits, probs_d, labels, B, net->classes);
    memset(md.grads, 0, np * sizeof *md.grads);
    net->backward_d(&md, B);
    dump_put(w, "", "double.loss", NULL, &loss_d, 1, NULL, 0);
    dump_put(w, "", "double.logits", NULL, md.logits, B * K, lshape, 2);
    dump_tensors(w, net, "double.grad.", NULL, md.grads, 1);
    dump_tensors(w, net, "double.state.", NULL, md.buffers, 0);

    /* float, from the same state */
    RtRng rng0 = mf->rng;
    net->forward(mf, B, 0);
    dump_put(w, "", "float.eval_logits", mf->logits, NULL, B * K, lshape, 2);
    /* the float code's pieces: the training forward once with a branch
     * record (runtime/rt.h), every piecewise choice stored, then the state
     * put back; its logits are the forward's below, byte for byte */
    size_t npc = (size_t)B * net->branch_elems;
    RtBranch rec = {.replay = 0, .mask = pieces, .cap = npc};
    RtRng rng1 = mf->rng;
    mf->ctx.branch = &rec;
    net->forward(mf, B, 1);
    mf->ctx.branch = NULL;
    dump_put(w, "", "float.pieces_logits", mf->logits, NULL, B * K, lshape, 2);
    dump_put_bytes(w, "float.pieces", pieces, npc);
    memcpy(mf->buffers, buf0, nb * sizeof *buf0);
    mf->rng = rng1;
    net->forward(mf, B, 1);
    double loss_f = rt_xent_forward(&mf->ctx, probs, mf->logits, labels, B, net->classes);
    rt_xent_backward(&mf->ctx, mf->dlogits, probs, labels, B, net->classes);
    memset(mf->grads, 0, np * sizeof *mf->grads);
    net->backward(mf, B);
    dump_put(w, "", "float.loss", NULL, &loss_f, 1, NULL, 0);
    dump_put(w, "", "float.logits", mf->logits, NULL, B * K, lshape, 2);
    dump_tensors(w, net, "float.grad.", mf->grads, NULL, 1);
    dump_tensors(w, net, "float.state.", mf->buffers, NULL, 0);
    mf->rng = rng0;

    /* the optimizer, as train.c calls it */
    for (int s = 0; s < DUMP_SGD_STEPS; s++)
        for (int i = 0; i < net->ntensors; i++) {
            const RtTensor *t = &net->tensors[i];
            if (!t->buffer)
                rt_sgd_update(mf->params + t->offset, mf->grads + t->offset, mom + t->offset,
                              t->numel, c->lr, c->momentum, rt_weight_decay(t, c), c->nesterov);
        }
    dump_tensors(w, net, "sgd.", mf->params, NULL, 1);
    printf("dump: net=%s batch=%d loss_double=%.17g loss_float=%.9g\n", net->name, B, loss_d,
           loss_f);
    free(buf0), free(probs), free(mom), free(lab), free(probs_d), free(pieces);
    rt_model_free_d(&md);
    return 0;
}

int rt_drv_cmd_dump(const RtNet *net, const char *prog, int argc, char **argv)
{
    const char *out = NULL, *weights = NULL, *input = NULL;
    int B = 2, threads = 1;
    uint64_t seed = 1;
    RtTrainConfig c = net->defaults;
    RtDrvOpt opts[] = {
        {"out", OPT_STR, &out, 0, 0, "DIR", "directory for dump.json and dump.bin (required)", 0},
        {"weights", OPT_STR, &weights, 0, 0, "FILE", "checkpoint to load (default: --seed's)", 0},
        {"seed", OPT_U64, &seed, 0, 0, "N", "seed of the weights and the synthetic batch", 0},
        {"input", OPT_STR, &input, 0, 0, "FILE",
         "safetensors batch: F32 input [B][C][H][W], labels [B] (default: synthetic)", 0},
        {"batch", OPT_INT, &B, 1, 4096, "N", "synthetic batch size", 0},
        {"threads", OPT_INT, &threads, 1, 1024, "N", "threads", 0},
        {"lr", OPT_DOUBLE, &c.lr, 0, 1e6, "X", "SGD learning rate", 0},
        {"momentum", OPT_DOUBLE, &c.momentum, 0, 1, "X", "SGD momentum", 0},
        {"weight-decay", OPT_DOUBLE, &c.weight_decay, 0, 1e6, "X", "L2 weight decay", 0},
        {"nesterov", OPT_INT, &c.nesterov, 0, 1, "0|1", "Nesterov momentum", 0},
        {"decay-bn", OPT_INT, &c.decay_bn, 0, 1, "0|1", "decay BN's affine parameters too", 0},
    };
    int rc = rt_drv_parse(prog, "dump", " --out DIR [options]",
                          "Runs one batch through the double and the float code (eval forward,\n"
                          "training forward, loss, backward) and two SGD steps, and writes\n"
                          "every number to DIR/dump.bin (float64, little-endian) indexed by\n"
                          "DIR/dump.json; the format is described atop runtime/dump.c. For\n"
                          "comparing with another implementation (optc emit --pytorch).",
                          opts, 11, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!out) {
        fprintf(stderr, "%s dump: error: --out DIR is required\n", prog);
        return 2;
    }
    if (!net->forward_d || !net->backward_d) {
        fprintf(stderr, "error: network '%s' has no double-precision twin\n", net->name);
        return 1;
    }
    RtErr err = {{0}};
    float *x = NULL;
    uint8_t *y = NULL;
    if (input && dump_read_input(input, net, &B, &x, &y, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        free(x), free(y);
        return 1;
    }
    RtModel m;
    rt_drv_set_threads(threads);
    if (rt_model_init(&m, net, B, threads, seed, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        free(x), free(y);
        return 1;
    }
    int status = 1;
    Dump w = {0};
    char path[4096];
    uint8_t *labels = y ? y : malloc((size_t)B);
    if (!labels) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    if (weights) {
        RtStFile *f = rt_st_open(weights, &err);
        int bad = !f || rt_drv_load_weights(f, weights, net, m.params, m.buffers, NULL, &err);
        if (f)
            rt_st_close(f);
        if (bad) {
            fprintf(stderr, "error: %s\n", err.msg);
            goto done;
        }
    }
    size_t nin = (size_t)B * (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    if (x) {
        memcpy(m.input, x, nin * sizeof *x);
    } else {
        RtRng rng;
        rt_rng_seed(&rng, seed ^ DUMP_INPUT_SALT);
        rt_model_synth_batch(net, &rng, m.input, nin, labels, B);
    }
    if (mkdir(out, 0777) && errno != EEXIST) {
        fprintf(stderr, "error: cannot create %s: %s\n", out, strerror(errno));
        goto done;
    }
    snprintf(path, sizeof path, "%s/dump.bin", out);
    w.bin = fopen(path, "wb");
    if (w.bin) {
        snprintf(path, sizeof path, "%s/dump.json", out);
        w.json = fopen(path, "w");
    }
    if (!w.json) {
        fprintf(stderr, "error: cannot write %s: %s\n", path, strerror(errno));
        goto done;
    }
    fprintf(w.json, "{\"meta\": {\"net\": \"%s\", \"batch\": %d, \"seed\": %llu, "
            "\"weights\": %s, \"lr\": %.17g, \"momentum\": %.17g, \"weight_decay\": %.17g, "
            "\"nesterov\": %d, \"decay_bn\": %d, \"sgd_steps\": %d},\n\"tensors\": {",
            net->name, B, (unsigned long long)seed, weights ? "true" : "false", c.lr,
            c.momentum, c.weight_decay, c.nesterov, c.decay_bn, DUMP_SGD_STEPS);
    if (dump_run(net, &w, &m, labels, B, &c, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        goto done;
    }
    fprintf(w.json, "\n}}\n");
    status = 0;
done:
    if (w.bin && fclose(w.bin) != 0)
        status = 1;
    if (w.json && (ferror(w.json) | fclose(w.json)) != 0)
        status = 1;
    if (labels != y)
        free(labels);
    free(x), free(y);
    rt_model_free(&m);
    return status;
}
