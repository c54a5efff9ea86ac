/* test_optim.c — SGD (PyTorch's convention) against values computed by
 * hand, and the learning-rate schedules at known points. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "rt.h"
#include "tmain.h"

/* Three steps from p = 1 with gradients 0.5, -0.2, 0.3, lr 0.1.
 * Worked by hand, e.g. momentum 0.9, wd 0.01, plain:
 *   d = 0.5 + 0.01*1 = 0.51, buf = 0.51, p = 1 - 0.051 = 0.949;
 *   d = -0.2 + 0.00949 = -0.19051, buf = 0.459 - 0.19051 = 0.26849,
 *   p = 0.949 - 0.026849 = 0.922151;
 *   d = 0.30922151, buf = 0.241641 + 0.30922151 = 0.55086251,
 *   p = 0.867064749.
 * Nesterov steps by d + mu*buf instead of buf. */
static const struct {
    double mu, wd;
    int nesterov;
    double p[3];
} sgd_ref[] = {
    {0.9, 0.01, 0, {0.949, 0.922151, 0.867064749}},
    {0.9, 0.01, 1, {0.9031, 0.89807411, 0.817657258191}},
    {0.0, 0.0, 0, {0.95, 0.97, 0.94}},
    {0.0, 0.01, 0, {0.949, 0.968051, 0.937082949}},
    {0.9, 0.0, 0, {0.95, 0.925, 0.8725}},
};

START_TEST(sgd_hand)
{
    const float g[3] = {0.5f, -0.2f, 0.3f};
    float p = 1.0f, buf = 0.0f;
    for (int k = 0; k < 3; k++) {
        rt_sgd_update(&p, &g[k], sgd_ref[_i].mu != 0.0 ? &buf : NULL, 1, 0.1, sgd_ref[_i].mu,
                      sgd_ref[_i].wd, sgd_ref[_i].nesterov);
        ck_assert_msg(fabs((double)p - sgd_ref[_i].p[k]) < 1e-6, "case %d step %d: %.9g vs %.9g",
                      _i, k, (double)p, sgd_ref[_i].p[k]);
    }
}
END_TEST

/* A long vector against a double-precision loop of the same formula:
 * every element is updated independently and by the same rule. */
START_TEST(sgd_vector)
{
    enum { N = 1003, STEPS = 5 };
    float *p = malloc(N * sizeof *p), *g = malloc(N * sizeof *g), *buf = calloc(N, sizeof *buf);
    double *rp = malloc(N * sizeof *rp), *rb = calloc(N, sizeof *rb);
    RtRng r;
    rt_rng_seed(&r, 5);
    for (int i = 0; i < N; i++)
        rp[i] = p[i] = (float)rt_rng_normal(&r);
    const double lr = 0.05, mu = 0.9, wd = 5e-4;
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < N; i++)
            g[i] = (float)rt_rng_normal(&r);
        rt_sgd_update(p, g, buf, N, lr, mu, wd, 1);
        for (int i = 0; i < N; i++) {
            double d = (double)g[i] + wd * rp[i];
            rb[i] = mu * rb[i] + d;
            rp[i] -= lr * (d + mu * rb[i]);
        }
    }
    for (int i = 0; i < N; i++) {
        ck_assert_msg(fabs((double)p[i] - rp[i]) < 1e-5, "element %d: %g vs %g", i, (double)p[i],
                      rp[i]);
        ck_assert_msg(fabs((double)buf[i] - rb[i]) < 1e-5, "buffer %d", i);
    }
    free(p);
    free(g);
    free(buf);
    free(rp);
    free(rb);
}
END_TEST

static RtTrainConfig cfg_base(RtSchedule s)
{
    RtTrainConfig c = {0};
    c.epochs = 10;
    c.lr = 0.1;
    c.schedule = s;
    c.step_gamma = 0.1;
    c.milestones[0] = 3;
    c.milestones[1] = 6;
    c.nmilestones = 2;
    return c;
}

#define LR_EQ(cfg, e, want) \
    ck_assert_msg(fabs(rt_lr_at(&(cfg), (e)) - (want)) < 1e-12, "lr at %g: %.15g, want %.15g", \
                  (double)(e), rt_lr_at(&(cfg), (e)), (double)(want))

START_TEST(schedules)
{
    RtTrainConfig c = cfg_base(RT_SCHED_CONSTANT);
    LR_EQ(c, 0.0, 0.1);
    LR_EQ(c, 5.5, 0.1);
    LR_EQ(c, 9.99, 0.1);

    c = cfg_base(RT_SCHED_STEP);
    LR_EQ(c, 0.0, 0.1);
    LR_EQ(c, 2.999, 0.1);
    LR_EQ(c, 3.0, 0.01);
    LR_EQ(c, 5.5, 0.01);
    LR_EQ(c, 6.0, 0.001);
    LR_EQ(c, 9.9, 0.001);
    c.nmilestones = 0;
    LR_EQ(c, 9.9, 0.1);

    c = cfg_base(RT_SCHED_COSINE);
    LR_EQ(c, 0.0, 0.1);
    LR_EQ(c, 2.5, 0.05 * (1.0 + sqrt(0.5)));   /* cos(pi/4) */
    LR_EQ(c, 5.0, 0.05);
    LR_EQ(c, 7.5, 0.05 * (1.0 - sqrt(0.5)));
    ck_assert(rt_lr_at(&c, 9.999) < 1e-8);
    ck_assert(rt_lr_at(&c, 9.999) > 0.0);
}
END_TEST

START_TEST(warmup)
{
    RtTrainConfig c = cfg_base(RT_SCHED_CONSTANT);
    c.warmup_epochs = 2;
    LR_EQ(c, 0.0, 0.1 / 3.0);
    LR_EQ(c, 1.0, 0.1 * 2.0 / 3.0);
    LR_EQ(c, 1.5, 0.1 * 2.5 / 3.0);
    LR_EQ(c, 2.0, 0.1);
    LR_EQ(c, 8.0, 0.1);
    /* Increasing through the warm-up, continuous at its end. */
    double prev = 0.0;
    for (double e = 0.0; e < 2.0; e += 0.01) {
        double lr = rt_lr_at(&c, e);
        ck_assert(lr > prev);
        prev = lr;
    }
    ck_assert(fabs(prev - 0.1) < 1e-3);
    /* Warm-up scales whatever the schedule gives. */
    c = cfg_base(RT_SCHED_COSINE);
    c.warmup_epochs = 2;
    LR_EQ(c, 1.0, 0.05 * (1.0 + cos(M_PI / 10.0)) * 2.0 / 3.0);
    LR_EQ(c, 5.0, 0.05);
    c = cfg_base(RT_SCHED_STEP);
    c.warmup_epochs = 1;
    LR_EQ(c, 0.0, 0.05);
    LR_EQ(c, 3.0, 0.01);
}
END_TEST

/* Which tensors decay: weights always, BN's affine parameters only with
 * decay_bn, biases, scalars and BN statistics never. */
START_TEST(decay_classes)
{
    RtTrainConfig c = {0};
    c.weight_decay = 5e-4;
    RtTensor t = {0};
    for (int bn = 0; bn <= 1; bn++) {
        c.decay_bn = bn;
        t.kind = RT_PK_WEIGHT;
        ck_assert(rt_weight_decay(&t, &c) == 5e-4);
        t.kind = RT_PK_BN_GAMMA;
        ck_assert(rt_weight_decay(&t, &c) == (bn ? 5e-4 : 0.0));
        t.kind = RT_PK_BN_BETA;
        ck_assert(rt_weight_decay(&t, &c) == (bn ? 5e-4 : 0.0));
        t.kind = RT_PK_BIAS;
        ck_assert(rt_weight_decay(&t, &c) == 0.0);
        t.kind = RT_PK_SCALAR;
        ck_assert(rt_weight_decay(&t, &c) == 0.0);
        t.kind = RT_PK_BN_MEAN;
        ck_assert(rt_weight_decay(&t, &c) == 0.0);
    }
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("sgd");
    tcase_add_loop_test(tc, sgd_hand, 0, (int)(sizeof sgd_ref / sizeof sgd_ref[0]));
    tcase_add_test(tc, sgd_vector);
    tcase_add_test(tc, decay_classes);
    suite_add_tcase(s, tc);
    tc = tcase_create("schedules");
    tcase_add_test(tc, schedules);
    tcase_add_test(tc, warmup);
    suite_add_tcase(s, tc);
    return s;
}

TEST_MAIN(optim_suite)
