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
 * order): bn_part_row(p, x, n, i0) (bn_part_row_d for doubles) adds
 * elements i0 .. i0+n-1 and starts the partial at i0 == 0 (winograd.c has
 * an AVX-512 / AVX2 twin: lane-wise the same operations). A channel's
 * statistics add its planes' partials image by image, lane by lane
 * (rt_bn_acc_add), then the lanes (rt_bn_acc_final): whatever the thread
 * count, since each thread gathers whole planes.
 *
 * Why per image and shifted by each plane's first element: the conv
 * gathers its images on several threads at once, none knowing another
 * image's values, and the shift keeps sum((x - k)^2) - n (mean - k)^2
 * from cancelling (the first element lies within a few standard deviations
 * of the mean). */
#ifndef OPTC_BNPART_H
#define OPTC_BNPART_H

#include <stddef.h>
#include <string.h>

#define RT_BN_PART 17

/* Vectors of 8 doubles and of 8 elements (GCC's generic vectors: each
 * target splits them into its own registers, lane by lane). */
typedef double rt_bn_v8d __attribute__((vector_size(64)));
typedef float rt_bn_v8f __attribute__((vector_size(32)));

#define RT_BN_PART_ROW(NAME, T, VT)                                                          \
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
        if ((i0 & 7) == 0 && n >= 8) {  /* whole lanes: lane l of the vectors */             \
            rt_bn_v8d s, q, kv = {k, k, k, k, k, k, k, k};                                   \
            memcpy(&s, p + 1, sizeof s);                                                     \
            memcpy(&q, p + 9, sizeof q);                                                     \
            for (; j + 8 <= n; j += 8) {                                                     \
                VT v;                                                                        \
                memcpy(&v, x + j, sizeof v);                                                 \
                rt_bn_v8d d = __builtin_convertvector(v, rt_bn_v8d) - kv;                    \
                s += d;                                                                      \
                q += d * d;                                                                  \
            }                                                                                \
            memcpy(p + 1, &s, sizeof s);                                                     \
            memcpy(p + 9, &q, sizeof q);                                                     \
        }                                                                                    \
        for (; j < n; j++) {                                                                 \
            int l = (int)((i0 + (size_t)j) & 7);                                             \
            double d = (double)x[j] - k;                                                     \
            p[1 + l] += d;                                                                   \
            p[9 + l] += d * d;                                                               \
        }                                                                                    \
    }
RT_BN_PART_ROW(bn_part_row, float, rt_bn_v8f)
RT_BN_PART_ROW(bn_part_row_d, double, rt_bn_v8d)

/* A channel's sums over the planes so far, image by image: k the first
 * plane's shift, s[l] and q[l] the sums of x - k and (x - k)^2 over lane l
 * of every plane. */
typedef struct {
    double k;
    rt_bn_v8d s, q;
} RtBnAcc;

/* Adds plane partial p (n elements) to a (first: the first plane, which
 * sets the shift), lane by lane: a plane shifted by k' = k + e has
 * sum(x - k) = s' + n_l e and sum((x - k)^2) = q' + 2 e s' + n_l e^2. */
static inline __attribute__((always_inline)) void rt_bn_acc_add(RtBnAcc *a, const double *p,
                                                                int n, int first)
{
    rt_bn_v8d s, q;
    memcpy(&s, p + 1, sizeof s);
    memcpy(&q, p + 9, sizeof q);
    if (first) {
        a->k = p[0], a->s = s, a->q = q;
        return;
    }
    double e = p[0] - a->k, nb = (double)(n / 8);
    rt_bn_v8d ev = {e, e, e, e, e, e, e, e}, nl = {nb, nb, nb, nb, nb, nb, nb, nb};
    for (int l = 0; l < n % 8; l++)
        nl[l] += 1;
    a->s += s + nl * ev;
    a->q += q + (ev + ev) * s + nl * (ev * ev);
}

/* The mean and the sum of squared deviations of the N elements summed in a. */
static inline __attribute__((always_inline)) void rt_bn_acc_final(const RtBnAcc *a, size_t N,
                                                                  double *mean, double *m2)
{
    rt_bn_v8d s = a->s, q = a->q;
    double S = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    double Q = ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]));
    double dm = S / (double)N;
    *mean = a->k + dm;
    *m2 = Q - S * dm;
}

#endif
