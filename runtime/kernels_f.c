/* kernels_f.c — the float32 instantiation of the runtime kernels (names
 * without suffix). The bodies live in kernels.inc, written once over T. */
#include <cblas.h>
#include "rt.h"
#include "conv3x3.h"
#include "winograd.h"

#define T float
#define CONV_DIRECT 1   /* try conv3x3.c before im2col + GEMM */
#define RT_FN(name) name
#define GEMM cblas_sgemm
#include "act.inc"
#include "kernels.inc"

/* One column band [Cin*K*K][rows*Wo] per thread (see the conv2d comment in
 * kernels.inc), or Winograd's workspace for a 3x3 float conv of stride 1 where
 * that is larger; a pointwise conv (1x1, stride 1, no padding) needs none. */
size_t rt_conv2d_scratch_bytes(int threads, int B, int Cin, int H, int W,
                               int K, int stride, int pad, size_t elem_size)
{
    (void)B;
    if (conv_is_pointwise(K, stride, pad))  /* rt_conv1x1_bnin_forward's images */
        return elem_size == sizeof(float) ? (threads > 1 ? (size_t)threads : 1)
                                            * (size_t)Cin * H * W * elem_size : 0;
    size_t t = threads > 1 ? (size_t)threads : 1;
    size_t n = t * conv_col_elems(Cin, H, W, K, stride, pad, elem_size) * elem_size;
    if (K == 3 && stride == 1 && pad == 1 && elem_size == sizeof(float)) {
        size_t wn = rt_wino_scratch_bytes(threads, Cin, H, W);     /* winograd.c */
        n = wn > n ? wn : n;
    }
    return n;
}

/* One [B][m] temporary (see exact_tmp in kernels.inc). */
size_t rt_exact_scratch_bytes(int B, int m, size_t elem_size)
{
    return ((size_t)B * (size_t)m + 1) * elem_size;
}
