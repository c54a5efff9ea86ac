/* kernels_d.c — the float64 instantiation of the runtime kernels (suffix
 * _d), used by gradient checks. The bodies live in kernels.inc. */
#include <cblas.h>
#include "rt.h"

#define T double
#define RT_FN(name) name##_d
#define GEMM cblas_dgemm
#include "act.inc"
#include "kernels.inc"
