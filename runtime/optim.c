/* optim.c — the parameter update (SGD with momentum, PyTorch's convention)
 * and learning-rate schedules. */
#include "rt.h"

#include <math.h>

/* torch.optim.SGD with dampening 0, in float32 like PyTorch:
 *   d = g + wd*p;  buf = mu*buf + d;  p -= lr * (nesterov ? d + mu*buf : buf).
 * buf starts at zero, so the first step gives buf = d, which is PyTorch's
 * initialisation of buf to the first gradient. With momentum 0 buf is not
 * touched (it may be NULL) and the step is plain SGD. */
void rt_sgd_update(float *p, const float *g, float *buf, size_t n, double lr, double momentum,
                   double wd, int nesterov)
{
    const float flr = (float)lr, fmu = (float)momentum, fwd = (float)wd;
    if (momentum == 0.0) {
        for (size_t i = 0; i < n; i++)
            p[i] -= flr * (g[i] + fwd * p[i]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + fwd * p[i];
        float b = fmu * buf[i] + d;
        buf[i] = b;
        p[i] -= flr * (nesterov ? d + fmu * b : b);
    }
}

/* The weight decay a tensor trains with: weights always, BN's affine
 * parameters when the network asks (decay_bn), biases and learned scalars
 * never. */
double rt_weight_decay(const RtTensor *t, const RtTrainConfig *cfg)
{
    if (t->kind == RT_PK_WEIGHT)
        return cfg->weight_decay;
    if ((t->kind == RT_PK_BN_GAMMA || t->kind == RT_PK_BN_BETA) && cfg->decay_bn)
        return cfg->weight_decay;
    return 0.0;
}

/* The schedule's value at a fractional epoch:
 *   constant: lr;
 *   step:     lr * step_gamma^(number of milestones <= epoch);
 *   cosine:   lr * (1 + cos(pi * epoch / epochs)) / 2.
 * Linear warm-up: while epoch < warmup_epochs = W the value is multiplied by
 * (epoch + 1) / (W + 1), rising from 1/(W+1) at epoch 0 to 1 at epoch W,
 * continuous there; a warm-up of one epoch therefore starts at lr/2. */
double rt_lr_at(const RtTrainConfig *cfg, double epoch)
{
    double lr = cfg->lr;
    switch (cfg->schedule) {
    case RT_SCHED_CONSTANT:
        break;
    case RT_SCHED_STEP:
        for (int i = 0; i < cfg->nmilestones && i < 4; i++)
            if ((double)cfg->milestones[i] <= epoch)
                lr *= cfg->step_gamma;
        break;
    case RT_SCHED_COSINE:
        if (cfg->epochs > 0)
            lr *= 0.5 * (1.0 + cos(M_PI * epoch / (double)cfg->epochs));
        break;
    }
    if (cfg->warmup_epochs > 0 && epoch < (double)cfg->warmup_epochs)
        lr *= (epoch + 1.0) / ((double)cfg->warmup_epochs + 1.0);
    return lr;
}
