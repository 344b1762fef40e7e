/* AVX-512F GEMM kernels: a 12x32 register tile (24 zmm accumulators, 2 B loads and 12 broadcasts
 * of op(A) per k, op(A) packed or in place), a 16x16 tile for N <= 16, a direct path for a few
 * rows with masked loads, the kernels that skip the zeros of mostly-zero inputs, and the FMA peak
 * probe. Per-function target attributes; gemm.c calls them only when the CPU has AVX-512F.
 * Rounding as in the AVX2 variant (one FMA per k); K is chunked by 128 instead of 256, which
 * keeps a 128x32 B panel (16 KiB) in L1 but rounds differently from AVX2 for K > 128.
 * The test build (MC_AVX512_SHIM) compiles this file against portable stand-ins for the few
 * intrinsics used, so its logic is checked on machines without AVX-512. */
#include "gemm_impl.h"

#include <stdint.h>

#if defined(MC_AVX512_SHIM)
#include "avx512_shim.h"
#define MC_HAVE_AVX512 1
#define TGT
#elif (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define MC_HAVE_AVX512 1
#define TGT __attribute__((target("avx512f")))
#endif

#ifdef MC_HAVE_AVX512
#include <time.h>

#define INLINE static inline __attribute__((always_inline))
#define MR 12
#define NR 32
#define KC 128 /* K chunk bound */

/* c[0:16] = alpha*acc + beta*c, or alpha*acc when beta == 0 (c not read). */
TGT INLINE void put16(float *c, __m512 acc, __m512 va, __m512 vb, int use_beta) {
    if (use_beta) _mm512_storeu_ps(c, _mm512_fmadd_ps(va, acc, _mm512_mul_ps(vb, _mm512_loadu_ps(c))));
    else _mm512_storeu_ps(c, _mm512_mul_ps(va, acc));
}

/* A full tile's epilogue on rows of stride ldc; partial tiles go through a local copy so that
 * every element is computed by the same instructions wherever it sits. */
TGT INLINE void put_tile16(float *c, size_t ldc, size_t m, size_t n, const __m512 *acc, int rows,
                         int vecs, float alpha, float beta) {
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    int use_beta = beta != 0.0f;
    if (m == (size_t)rows && n == (size_t)(16 * vecs)) {
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
            for (int v = 0; v < vecs; v++) put16(c + r * ldc + 16 * v, acc[r * vecs + v], va, vb, use_beta);
        return;
    }
    float t[MR * 64];
    size_t w = (size_t)(16 * vecs);
    if (use_beta)
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < n; j++) t[r * w + j] = c[r * ldc + j];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int v = 0; v < vecs; v++) put16(t + r * w + 16 * v, acc[r * vecs + v], va, vb, use_beta);
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < n; j++) c[r * ldc + j] = t[r * w + j];
}

TGT static void micro_12x32(size_t kc, const float *a, size_t a_rs, size_t a_ks,
                            const float *bp, size_t b_ks, float *c, size_t ldc, size_t m, size_t n,
                            float alpha, float beta) {
    __m512 acc[MR * 2];
#pragma GCC unroll 24
    for (int i = 0; i < MR * 2; i++) acc[i] = _mm512_setzero_ps();
    if (a_rs == 1) {  /* k-major: row r of step k at a[k*a_ks + r] */
        for (size_t k = 0; k < kc; k++, a += a_ks, bp += b_ks) {
            __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
#pragma GCC unroll 12
            for (int r = 0; r < MR; r++) {
                __m512 x = _mm512_set1_ps(a[r]);
                acc[2 * r] = _mm512_fmadd_ps(x, b0, acc[2 * r]);
                acc[2 * r + 1] = _mm512_fmadd_ps(x, b1, acc[2 * r + 1]);
            }
        }
    } else {          /* rows in place: row r of step k at a[r*a_rs + k] */
        for (size_t k = 0; k < kc; k++, bp += b_ks) {
            __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
#pragma GCC unroll 12
            for (int r = 0; r < MR; r++) {
                __m512 x = _mm512_set1_ps(a[(size_t)r * a_rs + k]);
                acc[2 * r] = _mm512_fmadd_ps(x, b0, acc[2 * r]);
                acc[2 * r + 1] = _mm512_fmadd_ps(x, b1, acc[2 * r + 1]);
            }
        }
    }
    put_tile16(c, ldc, m, n, acc, MR, 2, alpha, beta);
}

/* Narrow products (N <= 16, as the 10-unit layer of an MNIST classifier makes): a 16x16 tile, one B
 * vector and 16 broadcasts per k, where the 12x32 tile would spend 22 of every 32 FMA lanes on
 * padding. The same chain per element and the same epilogue as micro_12x32, so the same bits. It
 * reads B's first n columns only (b_masked): a ragged panel in place, its other lanes 0 as packing
 * would pad them. */
TGT static void micro_16x16(size_t kc, const float *a, size_t a_rs, size_t a_ks, const float *bp,
                            size_t b_ks, float *c, size_t ldc, size_t m, size_t n, float alpha,
                            float beta) {
    __m512 acc[16];
    __mmask16 bm = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    if (a_rs == 1) {  /* k-major */
        for (size_t k = 0; k < kc; k++, a += a_ks, bp += b_ks) {
            __m512 b0 = _mm512_maskz_loadu_ps(bm, bp);
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), b0, acc[r]);
        }
    } else {          /* rows in place */
        for (size_t k = 0; k < kc; k++, bp += b_ks) {
            __m512 b0 = _mm512_maskz_loadu_ps(bm, bp);
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++)
                acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[(size_t)r * a_rs + k]), b0, acc[r]);
        }
    }
    put_tile16(c, ldc, m, n, acc, 16, 1, alpha, beta);
}

/* Lanes 16*v .. 16*v+15 that lie below nn. */
INLINE __mmask16 lane_mask16(size_t nn, int v) {
    size_t lo = (size_t)(16 * v);
    if (nn <= lo) return 0;
    return nn - lo >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nn - lo)) - 1u);
}

/* `rows` rows of op(A) times B[:, 0:nn] (nn <= 64) straight from memory: 4 B vectors per k, one
 * broadcast per row, each element one FMA chain over all of K. */
TGT INLINE void small_rows16(const int rows, int trans_a, size_t K, const float *A, size_t lda,
                           const float *B, size_t ldb, size_t nn, float alpha, float beta, float *C,
                           size_t ldc) {
    __m512 acc[4 * 4];
#pragma GCC unroll 16
    for (int i = 0; i < 4 * 4; i++) acc[i] = _mm512_setzero_ps();
    const size_t sa_k = trans_a ? lda : 1, sa_r = trans_a ? 1 : lda;
    __mmask16 m0 = lane_mask16(nn, 0), m1 = lane_mask16(nn, 1), m2 = lane_mask16(nn, 2), m3 = lane_mask16(nn, 3);
    for (size_t k = 0; k < K; k++) {
        const float *b = B + k * ldb;
        /* masked-off lanes are neither read nor faulted on */
        __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
        __m512 b2 = _mm512_maskz_loadu_ps(m2, b + 32), b3 = _mm512_maskz_loadu_ps(m3, b + 48);
#pragma GCC unroll 4
        for (int r = 0; r < rows; r++) {
            __m512 a = _mm512_set1_ps(A[k * sa_k + (size_t)r * sa_r]);
            acc[r * 4 + 0] = _mm512_fmadd_ps(a, b0, acc[r * 4 + 0]);
            acc[r * 4 + 1] = _mm512_fmadd_ps(a, b1, acc[r * 4 + 1]);
            acc[r * 4 + 2] = _mm512_fmadd_ps(a, b2, acc[r * 4 + 2]);
            acc[r * 4 + 3] = _mm512_fmadd_ps(a, b3, acc[r * 4 + 3]);
        }
    }
    put_tile16(C, ldc, (size_t)rows, nn, acc, rows, 4, alpha, beta);
}

TGT static void small_avx512(int trans_a, size_t M, size_t N, size_t K, float alpha, const float *A,
                             size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    for (size_t i = 0; i < M; i += 4) {
        size_t rows = M - i < 4 ? M - i : 4;
        const float *a = trans_a ? A + i : A + i * lda;
        for (size_t j = 0; j < N; j += 64) {
            size_t nn = N - j < 64 ? N - j : 64;
            float *c = C + i * ldc + j;
            switch (rows) {
            case 1: small_rows16(1, trans_a, K, a, lda, B + j, ldb, nn, alpha, beta, c, ldc); break;
            case 2: small_rows16(2, trans_a, K, a, lda, B + j, ldb, nn, alpha, beta, c, ldc); break;
            case 3: small_rows16(3, trans_a, K, a, lda, B + j, ldb, nn, alpha, beta, c, ldc); break;
            default: small_rows16(4, trans_a, K, a, lda, B + j, ldb, nn, alpha, beta, c, ldc); break;
            }
        }
    }
}

/* --- products whose op(A) is mostly zeros (mc_gemm_sparse_fn): gemm_sparse_impl.h on 16 lanes,
 * lists made with compress and scatter --- */

#define SP_(name) name##_avx512
#define SP_V __m512
#define SP_MASK __mmask16
#define SP_LANES 16
#define SP_LOADU(p) _mm512_loadu_ps(p)
#define SP_STOREU(p, v) _mm512_storeu_ps(p, v)
#define SP_MLOAD(mk, p) _mm512_maskz_loadu_ps(mk, p)
#define SP_MSTORE(p, mk, v) _mm512_mask_storeu_ps(p, mk, v)
#define SP_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SP_MUL(a, b) _mm512_mul_ps(a, b)
#define SP_SET1(x) _mm512_set1_ps(x)
#define SP_BCAST(p) _mm512_set1_ps(*(p))
#define SP_ZERO() _mm512_setzero_ps()
#define SP_LANE_MASK(nn, v) lane_mask16(nn, v)
#define SP_ROWS 32
#define SP_KC KC
#define SP_CAP (SP_KC + 16)

TGT static int block_finite_avx512(const float *B, size_t ldb, size_t k, size_t n) {
    __mmask16 bad = 0;
    for (size_t r = 0; r < k; r++)
        for (size_t j = 0; j < n; j += 16) {
            __m512 b = _mm512_maskz_loadu_ps(lane_mask16(n - j, 0), B + r * ldb + j);
            bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(b, b), _mm512_setzero_ps(), _CMP_NEQ_UQ);  /* 0 or NaN */
        }
    return bad == 0;
}

/* Lanes of `in` where a[0:16] is not zero (NaN and infinities included). */
TGT INLINE __mmask16 nonzero16(const float *a, __mmask16 in) {
    return _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(in, a), _mm512_setzero_ps(), _CMP_NEQ_UQ);
}

/* Writes up to 15 entries past the count. The prefetch of `ahead`: from rows spread over memory
 * in chunks the hardware prefetchers fetched too little (the first product's loads of A stalled
 * 30% of the time). */
TGT INLINE size_t list_row_avx512(const float *a, const float *ahead, size_t kc, int all_k, int32_t *ks) {
    if (ahead)
        for (size_t k = 0; k < kc; k += 16) _mm_prefetch((const char *)(ahead + k), _MM_HINT_T1);
    const __m512i sixteen = _mm512_set1_epi32(16);
    __m512i kv = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);  /* k of each lane */
    size_t n = 0, k = 0;
    if (!all_k)  /* whole vectors first: no lane mask to make, plain loads */
        for (; k + 16 <= kc; k += 16, kv = _mm512_add_epi32(kv, sixteen)) {
            __mmask16 keep = _mm512_cmp_ps_mask(_mm512_loadu_ps(a + k), _mm512_setzero_ps(), _CMP_NEQ_UQ);
            _mm512_storeu_si512(ks + n, _mm512_maskz_compress_epi32(keep, kv));
            n += (size_t)__builtin_popcount(keep);
        }
    for (; k < kc; k += 16, kv = _mm512_add_epi32(kv, sixteen)) {
        __mmask16 in = lane_mask16(kc - k, 0);
        __mmask16 keep = all_k ? in : nonzero16(a + k, in);
        _mm512_storeu_si512(ks + n, _mm512_maskz_compress_epi32(keep, kv));
        n += (size_t)__builtin_popcount(keep);
    }
    return n;
}

/* Each row of A is read once, 16 pixels at a time, and its k scattered to the lists of the pixels
 * where it is nonzero. */
TGT INLINE void list_cols_avx512(const float *a, size_t lda, size_t rows, size_t kc, int all_k, int32_t *ks,
                                 size_t *cnt) {
    const __m512i lanes = _mm512_setr_epi32(0, SP_CAP, 2 * SP_CAP, 3 * SP_CAP, 4 * SP_CAP, 5 * SP_CAP,
                                            6 * SP_CAP, 7 * SP_CAP, 8 * SP_CAP, 9 * SP_CAP, 10 * SP_CAP,
                                            11 * SP_CAP, 12 * SP_CAP, 13 * SP_CAP, 14 * SP_CAP, 15 * SP_CAP);
    const __m512i one = _mm512_set1_epi32(1);
    __m512i pos[SP_ROWS / 16];  /* per pixel: where its next k goes */
    for (int v = 0; v < SP_ROWS / 16; v++)
        pos[v] = _mm512_add_epi32(lanes, _mm512_set1_epi32(16 * v * SP_CAP));
    for (size_t k = 0; k < kc; k++) {
        const float *ak = a + k * lda;
        __m512i kv = _mm512_set1_epi32((int)k);
#pragma GCC unroll 2
        for (int v = 0; v < SP_ROWS / 16; v++) {
            if ((size_t)(16 * v) >= rows) break;
            __mmask16 in = lane_mask16(rows, v);
            __mmask16 keep = all_k ? in : nonzero16(ak + 16 * v, in);
            _mm512_mask_i32scatter_epi32(ks, keep, pos[v], kv, 4);
            pos[v] = _mm512_mask_add_epi32(pos[v], keep, pos[v], one);
        }
    }
    for (int v = 0; v < SP_ROWS / 16; v++) {
        _Alignas(64) int32_t end[16];
        _mm512_store_si512(end, pos[v]);
        for (int l = 0; l < 16 && (size_t)(16 * v + l) < rows; l++)
            cnt[16 * v + l] = (size_t)(end[l] - (16 * v + l) * SP_CAP);
    }
}

#include "gemm_sparse_impl.h"

static const mc_gemm_impl impl_avx512_narrow = {
    "avx512", 16, 16, KC, 144, 1024, 4, micro_16x16, small_avx512, NULL, sparse_avx512, sparse_t_avx512,
    block_finite_avx512, 1,
};

const mc_gemm_impl mc_gemm_impl_avx512 = {
    "avx512", MR, NR, KC, 144, 1024, 4, micro_12x32, small_avx512, &impl_avx512_narrow, sparse_avx512,
    sparse_t_avx512, block_finite_avx512, 0,
};

static double now_s16(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 16 independent chains x = x*a + b (covers 4-cycle latency x 2 ports with room); values settle
 * at b/(1-a). Best rate over short slices. */
TGT double mc_fma_probe_avx512(double seconds) {
    __m512 x[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) x[i] = _mm512_set1_ps(0.1f * (float)(i + 1));
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
    const long iters = 1L << 17;
    double best = 0.0, start = now_s16();
    do {
        double t0 = now_s16();
        for (long it = 0; it < iters; it++)
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) x[i] = _mm512_fmadd_ps(x[i], a, b);
        double dt = now_s16() - t0;
        double rate = 16.0 * 16.0 * 2.0 * (double)iters / dt * 1e-9;
        if (rate > best) best = rate;
    } while (now_s16() - start < seconds);
    float out[16];
    __m512 s = x[0];
#pragma GCC unroll 16
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, x[i]);
    _mm512_storeu_ps(out, s);
    volatile float sink = out[0];
    (void)sink;
    return best;
}

#undef MR
#undef NR
#undef KC
#undef TGT
#undef INLINE

#else

const mc_gemm_impl mc_gemm_impl_avx512 = {"avx512", 12, 32, 128, 144, 1024, 0, NULL, NULL, NULL, NULL, NULL, NULL};
double mc_fma_probe_avx512(double seconds) {
    (void)seconds;
    return 0.0;
}

#endif
