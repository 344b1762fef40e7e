/* The direct small-K convolution kernels (conv_small_impl.h) on AVX2+FMA: 4 pixels per forward step
 * (8 chains), 5 window elements per weight-gradient pass (10 sums), within the 16 ymm registers. */
#include "conv_small.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

#define CS_(name) name##_avx2
#define CS_TGT __attribute__((target("avx2,fma")))
#define CS_V __m256
#define CS_LANES 8
#define CS_MASK __m256i
/* lane i is in the mask when i < n (maskload/maskstore read the sign bits) */
#define CS_LANE_MASK(n) \
    _mm256_cmpgt_epi32(_mm256_set1_epi32((int)((n) < 8 ? (n) : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define CS_MLOAD(m, p) _mm256_maskload_ps(p, m)
#define CS_MSTORE(p, m, v) _mm256_maskstore_ps(p, m, v)
#define CS_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define CS_SET1(x) _mm256_set1_ps(x)
#define CS_ZERO() _mm256_setzero_ps()
#define CS_ADD(a, b) _mm256_add_ps(a, b)
#define CS_RELU(z) _mm256_and_ps(_mm256_or_ps(_mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ), \
                                              _mm256_cmp_ps(z, z, _CMP_UNORD_Q)), z)
#define CS_KEEP_POSITIVE(y, g) _mm256_and_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ), g)
#define CS_HITS __m256
#define CS_HIT(v, m) _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_EQ_OQ), \
                                  _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), _mm256_cmp_ps(m, m, _CMP_UNORD_Q)))
#define CS_KEEP(h, g) _mm256_and_ps(h, g)
#define CS_DROP(h, g) _mm256_andnot_ps(h, g)
#define CS_POOL_TAKE(m, v) _mm256_blendv_ps(m, v, _mm256_and_ps(_mm256_cmp_ps(v, m, _CMP_NLE_UQ), \
                                                                _mm256_cmp_ps(m, m, _CMP_ORD_Q)))
#define CS_MAX(a, b) _mm256_max_ps(a, b)
#define CS_ABS(v) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v)
#define CS_ANY_NONFINITE(v, m) \
    (_mm256_movemask_ps(_mm256_and_ps(_mm256_castsi256_ps(m), \
                                      _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ))) != 0)
#define CS_PIX 4
#define CS_KB 5

#include "conv_small_impl.h"

#else
const mc_conv_small_kernels mc_conv_small_avx2 = {NULL, NULL, NULL, NULL};
#endif
