/* The direct small-K convolution kernels (conv_small_impl.h) on AVX-512F: 8 pixels per forward step
 * (16 chains), 12 window elements per weight-gradient pass (24 sums). */
#include "conv_small.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>

#define CS_(name) name##_avx512
#define CS_TGT __attribute__((target("avx512f")))
#define CS_V __m512
#define CS_LANES 16
#define CS_MASK __mmask16
#define CS_LANE_MASK(n) ((n) >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n)) - 1u))
#define CS_MLOAD(m, p) _mm512_maskz_loadu_ps(m, p)
#define CS_MSTORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define CS_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define CS_SET1(x) _mm512_set1_ps(x)
#define CS_ZERO() _mm512_setzero_ps()
#define CS_ADD(a, b) _mm512_add_ps(a, b)
#define CS_RELU(z) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ) | \
                                       _mm512_cmp_ps_mask(z, z, _CMP_UNORD_Q), z)
#define CS_KEEP_POSITIVE(y, g) _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ), g)
#define CS_HITS __mmask16
#define CS_HIT(v, m) (_mm512_cmp_ps_mask(v, m, _CMP_EQ_OQ) | \
                      (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q)))
#define CS_KEEP(h, g) _mm512_maskz_mov_ps(h, g)
#define CS_DROP(h, g) _mm512_maskz_mov_ps((__mmask16)~(h), g)
#define CS_POOL_TAKE(m, v) _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(v, m, _CMP_NLE_UQ) & \
                                              _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q), v)
#define CS_MAX(a, b) _mm512_max_ps(a, b)
#define CS_ABS(v) _mm512_abs_ps(v)
/* x - x is 0 for finite x, NaN otherwise */
#define CS_ANY_NONFINITE(v, m) \
    (_mm512_mask_cmp_ps_mask(m, _mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ) != 0)
#define CS_PIX 8
#define CS_KB 12

#include "conv_small_impl.h"

#else
const mc_conv_small_kernels mc_conv_small_avx512 = {NULL, NULL, NULL, NULL};
#endif
