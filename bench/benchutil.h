/* benchutil.h — what the kernel benchmarks (conv_bench.c, bn_bench.c) share:
 * this thread's CPU time and a comparison for qsort of doubles (medians). */
#ifndef OPTC_BENCHUTIL_H
#define OPTC_BENCHUTIL_H

#include <time.h>

static inline double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static inline int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif
