/* kernels_f.c — the float32 instantiation of the runtime kernels (names
 * without suffix). The bodies live in kernels.inc, written once over T. */
#include <cblas.h>
#include "rt.h"

#define T float
#define RT_FN(name) name
#define GEMM cblas_sgemm
#include "kernels.inc"

/* One column matrix [Cin*K*K][Ho*Wo]: the batch loop of the conv kernels is
 * sequential (see kernels.inc), so the workspace does not grow with the
 * thread count; threads stays in the contract for a later per-thread
 * layout. A pointwise conv (1x1, stride 1, no padding) needs none. */
size_t rt_conv2d_scratch_bytes(int threads, int B, int Cin, int H, int W,
                               int K, int stride, int pad, size_t elem_size)
{
    (void)threads;
    (void)B;
    if (conv_is_pointwise(K, stride, pad))
        return 0;
    return conv_col_elems(Cin, H, W, K, stride, pad) * elem_size;
}
