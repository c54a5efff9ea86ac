/* gradcheck.h — numeric helpers for the kernel tests: random fills, error
 * measures and central finite differences, all in double precision. */
#ifndef OPTC_GRADCHECK_H
#define OPTC_GRADCHECK_H
#include <math.h>
#include <stddef.h>
#include "rt.h"

/* x[i] ~ N(0, 1) rounded to float, so that the float and double kernels see
 * exactly the same inputs and their difference measures the kernels only. */
static inline void gc_fill(double *x, size_t n, RtRng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (double)(float)rt_rng_normal(r);
}

static inline void gc_to_float(float *dst, const double *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

static inline double gc_maxabs(const double *x, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

/* Normwise relative difference max|a - b| / max|b| (0 when both are 0):
 * the measure for float-vs-double and BLAS-vs-loop comparisons. */
static inline double gc_normdiff(const double *a, const double *b, size_t n)
{
    double d = 0, m = gc_maxabs(b, n);
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs(a[i] - b[i]));
    return m > 0 ? d / m : d;
}

static inline double gc_normdiff_f(const float *a, const double *b, size_t n)
{
    double d = 0, m = gc_maxabs(b, n);
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)a[i] - b[i]));
    return m > 0 ? d / m : d;
}

/* Relative error of one gradient entry: |ana - num| / max(|ana|, |num|,
 * floor). The floor (a thousandth of the largest gradient entry of the same
 * tensor) keeps entries that are zero or nearly so from turning the
 * finite-difference rounding noise into a huge relative error. */
static inline double gc_relerr(double ana, double num, double floor)
{
    double den = fmax(fmax(fabs(ana), fabs(num)), floor);
    return den > 0 ? fabs(ana - num) / den : 0;
}

/* Central difference of L(x) = <f(x), R> in x[i], where f writes n outputs
 * into its buffer. L(x+h) - L(x-h) is summed as <f(x+h) - f(x-h), R>, so
 * outputs that x[i] does not touch cancel exactly instead of adding the
 * rounding noise of a long sum. x[i] is restored; outp, outm hold n each. */
static inline double gc_central(void (*f)(void *, double *), void *st, double *x, size_t i,
                                double h, const double *R, size_t n, double *outp, double *outm)
{
    double x0 = x[i];
    double step = h * fmax(1.0, fabs(x0));
    x[i] = x0 + step;
    f(st, outp);
    x[i] = x0 - step;
    f(st, outm);
    x[i] = x0;
    double d = 0;
    for (size_t k = 0; k < n; k++)
        d += (outp[k] - outm[k]) * R[k];
    return d / (2 * step);
}

#endif
