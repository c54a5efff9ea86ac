/* gradcheck.c — the gradcheck command: the whole network's gradients
 * against central finite differences, in double precision, and the float
 * gradients against the double ones.
 *
 * Both models run in train mode (BN batch statistics). Every evaluation
 * starts from the same BN running statistics and the same dropout stream,
 * so the loss is one deterministic function of the parameters and the
 * running statistics do not drift over the thousands of forwards. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define GC_STEP 1e-6       /* finite-difference step */
#define GC_TOL_D 1e-5      /* analytic double vs finite differences */
#define GC_TOL_F 2e-2      /* float vs double gradients */
/* Finite differences of a loss computed to ~1e-14 carry ~1e-8 of absolute
 * noise at this step; the floor keeps that noise from counting as relative
 * error on tiny gradients while a 1 % error on any gradient above 1e-5
 * still fails. */
#define GC_FLOOR 1e-3

typedef struct {
    const RtNet *net;
    RtModelD *md;
    double *buf0, *probs;
    RtRng rng0;
    const uint8_t *labels;
    int B;
} GcLoss;

/* The double loss at the current parameters, from the saved state. */
static double gc_loss(GcLoss *g)
{
    memcpy(g->md->buffers, g->buf0, g->net->nbuffers * sizeof *g->buf0);
    g->md->rng = g->rng0;
    g->net->forward_d(g->md, g->B, 1);
    return rt_xent_forward_d(&g->md->ctx, g->probs, g->md->logits, g->labels, g->B,
                             g->net->classes);
}

static double rel_err(double a, double b)
{
    double d = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) / (d > GC_FLOOR ? d : GC_FLOOR);
}

int rt_drv_cmd_gradcheck(const RtNet *net, const char *prog, int argc, char **argv)
{
    int B = 2, samples = 16, threads = 1;
    uint64_t seed = 1;
    RtDrvOpt opts[] = {
        {"batch", OPT_INT, &B, 1, 4096, "N", "batch", 0},
        {"seed", OPT_U64, &seed, 0, 0, "N", "seed of weights, input and sampled coordinates", 0},
        {"samples", OPT_INT, &samples, 1, 1000000, "N",
         "coordinates checked per tensor (all when it has fewer)", 0},
        {"threads", OPT_INT, &threads, 1, 1024, "N", "threads", 0},
    };
    char about[640];
    snprintf(about, sizeof about,
             "Compares the network's analytic gradients, in double precision and train mode,\n"
             "with central finite differences (step %g) of the double loss on sampled\n"
             "coordinates of every parameter tensor, and the float gradients with the double\n"
             "ones on every coordinate. Errors: double vs finite differences\n"
             "|a - b| / max(|a|, |b|, %g) per coordinate, tolerance %g; float vs double\n"
             "max|f - d| / max|d| per tensor, tolerance %g. BN uses batch statistics (its\n"
             "running statistics are restored before every forward), dropout the same masks.\n"
             "Exits 1 when any tensor exceeds its tolerance.",
             GC_STEP, GC_FLOOR, GC_TOL_D, GC_TOL_F);
    int rc = rt_drv_parse(prog, "gradcheck", " [options]", about, opts, 4, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!net->forward_d || !net->backward_d) {
        fprintf(stderr, "error: network '%s' has no double-precision twin\n", net->name);
        return 1;
    }
    RtErr err = {{0}};
    RtModel mf;
    RtModelD md;
    rt_drv_set_threads(threads);
    if (rt_model_init(&mf, net, B, threads, seed, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    if (rt_model_init_d(&md, net, B, threads, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        rt_model_free(&mf);
        return 1;
    }
    size_t nin = (size_t)B * (size_t)net->in_c * (size_t)net->in_h * (size_t)net->in_w;
    size_t nlog = (size_t)B * (size_t)net->classes;
    size_t np = net->nparams, nb = net->nbuffers;
    double *ga = malloc((np + 1) * sizeof *ga), *buf0 = malloc((nb + 1) * sizeof *buf0);
    double *probs_d = malloc(nlog * sizeof *probs_d);
    float *fbuf0 = malloc((nb + 1) * sizeof *fbuf0), *probs_f = malloc(nlog * sizeof *probs_f);
    uint8_t *labels = malloc((size_t)B);
    int status = 1;
    if (!ga || !buf0 || !probs_d || !fbuf0 || !probs_f || !labels) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < np; i++)
        md.params[i] = (double)mf.params[i];
    for (size_t i = 0; i < nb; i++)
        buf0[i] = md.buffers[i] = (double)mf.buffers[i];
    memcpy(fbuf0, mf.buffers, nb * sizeof *fbuf0);
    RtRng rng;
    rt_rng_seed(&rng, seed + 0x67726164ULL);
    for (size_t i = 0; i < nin; i++) {
        mf.input[i] = (float)rt_rng_normal(&rng);
        md.input[i] = (double)mf.input[i];
    }
    for (int i = 0; i < B; i++)
        labels[i] = (uint8_t)rt_rng_below(&rng, (uint32_t)net->classes);
    GcLoss g = {net, &md, buf0, probs_d, mf.rng, labels, B};

    /* analytic double gradients */
    double loss = gc_loss(&g);
    rt_xent_backward_d(&md.ctx, md.dlogits, probs_d, labels, B, net->classes);
    memset(md.grads, 0, np * sizeof *md.grads);
    net->backward_d(&md, B);
    memcpy(ga, md.grads, np * sizeof *ga);

    /* float gradients from the same state */
    mf.rng = g.rng0;
    net->forward(&mf, B, 1);
    double loss_f = rt_xent_forward(&mf.ctx, probs_f, mf.logits, labels, B, net->classes);
    rt_xent_backward(&mf.ctx, mf.dlogits, probs_f, labels, B, net->classes);
    memset(mf.grads, 0, np * sizeof *mf.grads);
    net->backward(&mf, B);
    memcpy(mf.buffers, fbuf0, nb * sizeof *fbuf0);

    printf("gradcheck: net=%s batch=%d seed=%llu loss=%.10f (float %.7f) step=%g\n", net->name,
           B, (unsigned long long)seed, loss, loss_f, GC_STEP);
    printf("%-44s %10s %8s %12s %12s\n", "tensor", "numel", "checked", "fd_rel_err",
           "float_rel_err");
    double worst_d = 0, worst_f = 0;
    int bad = 0;
    for (int ti = 0; ti < net->ntensors; ti++) {
        const RtTensor *t = &net->tensors[ti];
        if (t->buffer)
            continue;
        double ed = 0, ef = 0;
        int n = t->numel <= (size_t)samples ? (int)t->numel : samples;
        for (int s = 0; s < n; s++) {
            size_t i = t->offset + (t->numel <= (size_t)samples
                                        ? (size_t)s
                                        : (size_t)rt_rng_below(&rng, (uint32_t)t->numel));
            double orig = md.params[i];
            md.params[i] = orig + GC_STEP;
            double lp = gc_loss(&g);
            md.params[i] = orig - GC_STEP;
            double lm = gc_loss(&g);
            md.params[i] = orig;
            double e = rel_err(ga[i], (lp - lm) / (2 * GC_STEP));
            if (e > ed)
                ed = e;
        }
        /* float vs double over the whole tensor, relative to its largest
         * gradient: float rounding is relative to the tensor's scale, not
         * to each coordinate's */
        double dmax = 0, gmax = 0;
        for (size_t i = t->offset; i < t->offset + t->numel; i++) {
            dmax = fmax(dmax, fabs((double)mf.grads[i] - ga[i]));
            gmax = fmax(gmax, fabs(ga[i]));
        }
        ef = dmax / (gmax > 1e-30 ? gmax : 1e-30);
        int fail = !(ed <= GC_TOL_D) || !(ef <= GC_TOL_F);
        bad += fail;
        if (ed > worst_d)
            worst_d = ed;
        if (ef > worst_f)
            worst_f = ef;
        printf("%-44s %10zu %8d %12.3e %12.3e%s\n", t->name, t->numel, n, ed, ef,
               fail ? "  FAIL" : "");
    }
    printf("gradcheck: %s  max fd_rel_err=%.3e (tol %g)  max float_rel_err=%.3e (tol %g)\n",
           bad ? "FAILED" : "passed", worst_d, GC_TOL_D, worst_f, GC_TOL_F);
    status = bad ? 1 : 0;
done:
    free(ga);
    free(buf0);
    free(probs_d);
    free(fbuf0);
    free(probs_f);
    free(labels);
    rt_model_free(&mf);
    rt_model_free_d(&md);
    return status;
}
