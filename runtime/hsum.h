/* hsum.h — the lanes of an AVX2 vector summed in a fixed order, shared by
 * the direct (conv3x3.c) and Winograd (winograd.c) kernels: results must not
 * depend on which file reduced them. */
#ifndef OPTC_HSUM_H
#define OPTC_HSUM_H
#include <immintrin.h>

__attribute__((target("avx2,fma")))
static inline float hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

#endif
