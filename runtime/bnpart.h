/* bnpart.h — a training BN's batch statistics from partials per image and
 * channel, one definition for the two places that gather them: the BN
 * kernels (kernels.inc) from their input, and a 3x3 conv's Winograd output
 * copy (winograd.c) as it writes the BN's input, so that the BN reads its
 * input once (rt_conv2d_forward_part, rt_bn_relu_forward_train_part in
 * rt.h). Both give the same bits: every sum below runs in an order fixed
 * by the plane's shape alone, and C11 mode contracts nothing (no FMA), so
 * each instruction-set variant rounds alike.
 *
 * A plane's partial (one image, one channel, n elements x[0..n-1]) is
 * RT_BN_PART doubles: p[0] = x[0], the shift k; p[1 + l] the sum of
 * x[i] - k and p[9 + l] that of (x[i] - k)^2 over the i with i % 8 == l,
 * each lane in the order of i. A plane may arrive in pieces (rows, in
 * order): rt_bn_part_row(p, x, n, i0) adds elements i0 .. i0+n-1 and starts
 * the partial at i0 == 0. */
#ifndef OPTC_BNPART_H
#define OPTC_BNPART_H

#include <stddef.h>

#define RT_BN_PART 17

#define RT_BN_PART_ROW(NAME, T)                                                              \
    static inline __attribute__((always_inline)) void NAME(double *p, const T *x, int n,     \
                                                           size_t i0)                        \
    {                                                                                        \
        if (i0 == 0) {                                                                       \
            p[0] = (double)x[0];                                                             \
            for (int l = 1; l < RT_BN_PART; l++)                                             \
                p[l] = 0;                                                                    \
        }                                                                                    \
        double k = p[0];                                                                     \
        int j = 0;                                                                           \
        if ((i0 & 7) == 0 && n >= 8) {  /* whole lanes: one vector of 8 sums each */         \
            double s[8], q[8];                                                               \
            for (int l = 0; l < 8; l++)                                                      \
                s[l] = p[1 + l], q[l] = p[9 + l];                                            \
            for (; j + 8 <= n; j += 8)                                                       \
                for (int l = 0; l < 8; l++) {                                                \
                    double d = (double)x[j + l] - k;                                         \
                    s[l] += d;                                                               \
                    q[l] += d * d;                                                           \
                }                                                                            \
            for (int l = 0; l < 8; l++)                                                      \
                p[1 + l] = s[l], p[9 + l] = q[l];                                            \
        }                                                                                    \
        for (; j < n; j++) {                                                                 \
            int l = (int)((i0 + (size_t)j) & 7);                                             \
            double d = (double)x[j] - k;                                                     \
            p[1 + l] += d;                                                                   \
            p[9 + l] += d * d;                                                               \
        }                                                                                    \
    }
RT_BN_PART_ROW(bn_part_row, float)
RT_BN_PART_ROW(bn_part_row_d, double)

/* Adds the partial p of a plane of n elements to a channel's running count,
 * mean and sum of squared deviations (cnt = 0 to start), the images in
 * order: Chan, Golub and LeVeque's pairwise update. */
static inline __attribute__((always_inline)) void rt_bn_part_add(double *cnt, double *mean,
                                                                 double *m2, const double *p,
                                                                 int n)
{
    double s = ((p[1] + p[2]) + (p[3] + p[4])) + ((p[5] + p[6]) + (p[7] + p[8]));
    double q = ((p[9] + p[10]) + (p[11] + p[12])) + ((p[13] + p[14]) + (p[15] + p[16]));
    double nb = (double)n, dm = s / nb, mb = p[0] + dm, qb = q - s * dm;
    if (qb < 0)
        qb = 0;
    if (*cnt == 0) {
        *cnt = nb, *mean = mb, *m2 = qb;
        return;
    }
    double na = *cnt, nt = na + nb, delta = mb - *mean;
    *mean += delta * (nb / nt);
    *m2 += qb + delta * delta * (na * nb / nt);
    *cnt = nt;
}

#endif
