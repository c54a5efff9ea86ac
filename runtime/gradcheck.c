/* gradcheck.c — the gradcheck command: the whole network's gradients
 * against central finite differences, in double precision, and the float
 * gradients against the double ones.
 *
 * Both models run in train mode (BN batch statistics). Every evaluation
 * starts from the same BN running statistics and the same dropout stream,
 * and every piecewise op (relu, the exact block's relu) takes the piece the
 * float forward recorded (a branch record, rt.h), so the loss is one smooth
 * deterministic function of the parameters: a central difference never
 * straddles a kink, and float and double differentiate the same function
 * even where an input lies within rounding of a kink. Evaluations whose
 * inputs would have crossed a kink unfrozen are counted and reported.
 *
 * Per parameter tensor: sampled coordinates against central differences,
 * one derivative along a random unit direction over the whole tensor
 * (catches a wrong gradient on any coordinate, for two forwards), and the
 * float gradient against the double one on every coordinate. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

/* Finite-difference step (default of --step). On ResNet-20 (Fashion-MNIST,
 * batch 2, frozen branches) the largest error was 3.6e-7 at 1e-6 (the
 * loss's rounding noise over 2h), 3.4e-8 at 1e-5, 8.7e-8 at 1e-4 (the
 * h^2 truncation). */
#define GC_STEP 1e-5
/* Analytic double vs central differences of the frozen double loss, per
 * coordinate and per direction. With the branches frozen the function is
 * smooth; what is left is the O(h^2) truncation and the loss's rounding
 * noise over 2h, at most 4e-8 on the example networks (make gradcheck-all),
 * so a gradient one part in 10^6 wrong fails. */
#define GC_TOL_D 1e-6
/* Float vs double gradients on the same branches, max|f - d| / max(max|d|,
 * GC_FLOOR) per tensor: float accumulation error, at most 1.6e-5 on the
 * example networks (DenseNet-BC-100 at batch 1), mostly <= 5e-6. */
#define GC_TOL_F 1e-4
/* Finite differences of a loss computed to ~1e-15 carry ~1e-11 of absolute
 * noise at this step; the floor keeps that noise from counting as relative
 * error on tiny gradients while a 1e-6 relative error on any gradient
 * above 1e-3 still fails. */
#define GC_FLOOR 1e-3

typedef struct {
    const RtNet *net;
    RtModelD *md;
    double *buf0, *probs;
    RtRng rng0;
    const uint8_t *labels;
    int B;
    RtBranch *rec;
    double *save, *dir;     /* nparams each: a tensor's saved values, its direction */
    /* perturbed evaluations that crossed a kink, and the closest input */
    long evals, crossed_evals;
    double cross_min;
} GcLoss;

/* The double loss at the current parameters, from the saved state, on the
 * recorded branches. */
static double gc_loss(GcLoss *g)
{
    memcpy(g->md->buffers, g->buf0, g->net->nbuffers * sizeof *g->buf0);
    g->md->rng = g->rng0;
    rt_branch_reset(g->rec);
    g->net->forward_d(g->md, g->B, 1);
    return rt_xent_forward_d(&g->md->ctx, g->probs, g->md->logits, g->labels, g->B,
                             g->net->classes);
}

/* A perturbed evaluation: also tallies whether it crossed a kink. Returns
 * 1 when it did. */
static int gc_loss_pert(GcLoss *g, double *loss)
{
    *loss = gc_loss(g);
    g->evals++;
    if (!g->rec->crossed)
        return 0;
    g->crossed_evals++;
    if (g->rec->cross_min < g->cross_min)
        g->cross_min = g->rec->cross_min;
    return 1;
}

static double rel_err(double a, double b)
{
    double d = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return fabs(a - b) / (d > GC_FLOOR ? d : GC_FLOOR);
}

/* Tensor t against finite differences: n sampled coordinates (the first n
 * when the tensor has no more) and one random unit direction. The largest
 * coordinate error goes to *ed, the direction's to *edir. */
static void gc_check_tensor(GcLoss *g, const RtTensor *t, const double *ga, int n, double h,
                            RtRng *rng, double *ed, double *edir)
{
    double *params = g->md->params;
    *ed = 0;
    for (int s = 0; s < n; s++) {
        size_t i = t->offset + ((size_t)n >= t->numel ? (size_t)s
                                                      : (size_t)rt_rng_below(rng, (uint32_t)t->numel));
        double orig = params[i], lp, lm;
        params[i] = orig + h;
        gc_loss_pert(g, &lp);
        params[i] = orig - h;
        gc_loss_pert(g, &lm);
        params[i] = orig;
        *ed = fmax(*ed, rel_err(ga[i], (lp - lm) / (2 * h)));
    }
    /* one random unit direction v over the whole tensor: g.v against
     * (L(p + hv) - L(p - hv)) / 2h, g.v taken over the steps the rounded
     * parameters actually made */
    double *p = params + t->offset, *p0 = g->save + t->offset, *v = g->dir + t->offset;
    double vn = 0, dd = 0, lp, lm;
    memcpy(p0, p, t->numel * sizeof *p);
    for (size_t j = 0; j < t->numel; j++) {
        v[j] = rt_rng_normal(rng);
        vn += v[j] * v[j];
    }
    vn = vn > 0 ? h / sqrt(vn) : 0;
    for (size_t j = 0; j < t->numel; j++)
        p[j] = p0[j] + v[j] * vn;
    gc_loss_pert(g, &lp);
    for (size_t j = 0; j < t->numel; j++) {
        double up = p[j] - p0[j];
        p[j] = p0[j] - v[j] * vn;
        dd += ga[t->offset + j] * (up - (p[j] - p0[j]));
    }
    gc_loss_pert(g, &lm);
    memcpy(p, p0, t->numel * sizeof *p);
    *edir = rel_err(dd / (2 * h), (lp - lm) / (2 * h));
}

int rt_drv_cmd_gradcheck(const RtNet *net, const char *prog, int argc, char **argv)
{
    int B = 2, samples = 16, threads = 1, ntens = 0;
    uint64_t seed = 1;
    double h = GC_STEP;
    RtDrvOpt opts[] = {
        {"batch", OPT_INT, &B, 1, 4096, "N", "batch", 0},
        {"seed", OPT_U64, &seed, 0, 0, "N", "seed of weights, input and sampled coordinates", 0},
        {"samples", OPT_INT, &samples, 1, 1000000, "N",
         "coordinates checked per tensor (all when it has fewer)", 0},
        {"threads", OPT_INT, &threads, 1, 1024, "N", "threads", 0},
        {"step", OPT_DOUBLE, &h, 1e-12, 1e-1, "H", "finite-difference step", 0},
        {"tensors", OPT_INT, &ntens, 0, 1000000, "N",
         "finite differences on N random tensors (0: all; float vs double: all)", 0},
    };
    char about[1024];
    snprintf(about, sizeof about,
             "Compares the network's analytic gradients, in double precision and train mode,\n"
             "with central finite differences of the double loss (--step) on sampled\n"
             "coordinates and along one random unit direction of every parameter tensor,\n"
             "and the float gradients with the double ones on every coordinate. Errors:\n"
             "double vs finite differences |a - b| / max(|a|, |b|, %g), tolerance %g;\n"
             "float vs double max|f - d| / max(max|d|, %g) per tensor, tolerance %g.\n"
             "BN uses batch statistics (its running statistics are restored before every\n"
             "forward), dropout the same masks, and relu the pieces the float forward chose,\n"
             "so no difference straddles a kink; evaluations whose inputs would have crossed\n"
             "one are counted (column kinks). Exits 1 when any tensor exceeds a tolerance.",
             GC_FLOOR, GC_TOL_D, GC_FLOOR, GC_TOL_F);
    int rc = rt_drv_parse(prog, "gradcheck", " [options]", about, opts, 6, argc, argv);
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
    size_t nbr = (size_t)B * net->branch_elems;
    double *ga = malloc((np + 1) * sizeof *ga), *buf0 = malloc((nb + 1) * sizeof *buf0);
    double *dir = malloc((np + 1) * sizeof *dir), *save = malloc((np + 1) * sizeof *save);
    double *probs_d = malloc(nlog * sizeof *probs_d);
    float *fbuf0 = malloc((nb + 1) * sizeof *fbuf0), *probs_f = malloc(nlog * sizeof *probs_f);
    uint8_t *labels = malloc((size_t)B), *mask = calloc(nbr + 1, 1);
    uint8_t *dmask = calloc(nbr + 1, 1);
    int *pick = malloc(((size_t)net->ntensors + 1) * sizeof *pick);
    char *checked = malloc((size_t)net->ntensors + 1);
    int status = 1;
    if (!ga || !buf0 || !dir || !save || !probs_d || !fbuf0 || !probs_f || !labels || !mask || !dmask ||
        !pick || !checked) {
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
    rt_model_synth_batch(net, &rng, mf.input, nin, labels, B);
    for (size_t i = 0; i < nin; i++)
        md.input[i] = (double)mf.input[i];
    RtBranch rec = {.replay = 0, .mask = mask, .cap = nbr};
    GcLoss g = {net, &md, buf0, probs_d, mf.rng, labels, B, &rec, save, dir, 0, 0, INFINITY};

    /* float gradients; the forward records every piecewise choice */
    mf.ctx.branch = &rec;
    rt_branch_reset(&rec);
    net->forward(&mf, B, 1);
    double near_f = rec.near_min;
    double loss_f = rt_xent_forward(&mf.ctx, probs_f, mf.logits, labels, B, net->classes);
    rt_xent_backward(&mf.ctx, mf.dlogits, probs_f, labels, B, net->classes);
    memset(mf.grads, 0, np * sizeof *mf.grads);
    net->backward(&mf, B);
    memcpy(mf.buffers, fbuf0, nb * sizeof *fbuf0);

    /* the double's own pieces at the base point: what an unfrozen
     * evaluation crosses a kink against */
    RtBranch drec = {.replay = 0, .mask = dmask, .cap = nbr};
    md.ctx.branch = &drec;
    g.rec = &drec;
    gc_loss(&g);
    /* analytic double gradients on the float's pieces */
    rec.replay = 1;
    md.ctx.branch = &rec;
    g.rec = &rec;
    double loss = gc_loss(&g);
    size_t base_crossed = rec.crossed;
    double base_cross_min = rec.cross_min;
    rec.ref = dmask;
    rt_xent_backward_d(&md.ctx, md.dlogits, probs_d, labels, B, net->classes);
    memset(md.grads, 0, np * sizeof *md.grads);
    net->backward_d(&md, B);
    memcpy(ga, md.grads, np * sizeof *ga);

    printf("gradcheck: net=%s batch=%d seed=%llu loss=%.10f (float %.7f) step=%g\n", net->name,
           B, (unsigned long long)seed, loss, loss_f, h);
    printf("%-44s %10s %8s %12s %12s %12s %6s\n", "tensor", "numel", "checked", "fd_rel_err",
           "dir_rel_err", "float_rel_err", "kinks");
    double worst_d = 0, worst_dir = 0, worst_f = 0;
    int bad = 0;
    /* --tensors N: N of the parameter tensors, a uniform choice */
    int nparam_t = 0, npick;
    for (int ti = 0; ti < net->ntensors; ti++)
        if (!net->tensors[ti].buffer)
            pick[nparam_t++] = ti;
    npick = ntens > 0 && ntens < nparam_t ? ntens : nparam_t;
    for (int k = 0; k < npick; k++) {
        int j = k + (int)rt_rng_below(&rng, (uint32_t)(nparam_t - k)), tmp = pick[k];
        pick[k] = pick[j];
        pick[j] = tmp;
    }
    for (int ti = 0; ti < net->ntensors; ti++)
        checked[ti] = 0;
    for (int k = 0; k < npick; k++)
        checked[pick[k]] = 1;
    for (int ti = 0; ti < net->ntensors; ti++) {
        const RtTensor *t = &net->tensors[ti];
        if (t->buffer)
            continue;
        double ed = 0, ef = 0, edir = 0;
        long kinks0 = g.crossed_evals;
        int n = t->numel <= (size_t)samples ? (int)t->numel : samples;
        if (checked[ti])
            gc_check_tensor(&g, t, ga, n, h, &rng, &ed, &edir);
        else
            n = 0;
        /* float vs double over the whole tensor, relative to its largest
         * gradient: float rounding is relative to the tensor's scale, not
         * to each coordinate's. The floor: a gradient that is a sum with
         * heavy cancellation (a learned scalar's, lm20_fmnist at batch 1:
         * 2.4e-4 from terms of 1e-2) keeps the absolute float error of its
         * terms (3e-8, 1.3e-4 of it). */
        double dmax = 0, gmax = 0;
        for (size_t i = t->offset; i < t->offset + t->numel; i++) {
            dmax = fmax(dmax, fabs((double)mf.grads[i] - ga[i]));
            gmax = fmax(gmax, fabs(ga[i]));
        }
        ef = dmax / (gmax > GC_FLOOR ? gmax : GC_FLOOR);
        int fail = !(ed <= GC_TOL_D) || !(edir <= GC_TOL_D) || !(ef <= GC_TOL_F);
        bad += fail;
        worst_d = fmax(worst_d, ed);
        worst_dir = fmax(worst_dir, edir);
        worst_f = fmax(worst_f, ef);
        printf("%-44s %10zu %8d %12.3e %12.3e %12.3e %6ld%s\n", t->name, t->numel, n, ed, edir,
               ef, g.crossed_evals - kinks0, fail ? "  FAIL" : "");
    }
    printf("gradcheck: branches: %zu piecewise elements frozen; closest input to a kink "
           "%.3e; the double forward would take another piece at %zu of them%s",
           nbr, nbr ? near_f : 0.0, base_crossed, base_crossed ? "" : "\n");
    if (base_crossed)
        printf(" (closest %.3e)\n", base_cross_min);
    printf("gradcheck: kinks: %ld of %ld perturbed evaluations would cross a kink unfrozen",
           g.crossed_evals, g.evals);
    if (g.crossed_evals)
        printf(" (closest input %.3e); all checked on the recorded pieces", g.cross_min);
    printf("\n");
    printf("gradcheck: %s  max fd_rel_err=%.3e max dir_rel_err=%.3e (tol %g)  "
           "max float_rel_err=%.3e (tol %g)\n", bad ? "FAILED" : "passed", worst_d, worst_dir,
           GC_TOL_D, worst_f, GC_TOL_F);
    status = bad ? 1 : 0;
done:
    free(ga);
    free(buf0);
    free(dir);
    free(save);
    free(probs_d);
    free(fbuf0);
    free(probs_f);
    free(labels);
    free(mask);
    free(dmask);
    free(pick);
    free(checked);
    mf.ctx.branch = NULL;
    md.ctx.branch = NULL;
    rt_model_free(&mf);
    rt_model_free_d(&md);
    return status;
}
