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
#include <string.h>

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
 * padding. The same chain per element and the same epilogue as micro_12x32, so the same bits. */
TGT static void micro_16x16(size_t kc, const float *a, size_t a_rs, size_t a_ks, const float *bp,
                            size_t b_ks, float *c, size_t ldc, size_t m, size_t n, float alpha,
                            float beta) {
    __m512 acc[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    if (a_rs == 1) {  /* k-major */
        for (size_t k = 0; k < kc; k++, a += a_ks, bp += b_ks) {
            __m512 b0 = _mm512_loadu_ps(bp);
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), b0, acc[r]);
        }
    } else {          /* rows in place */
        for (size_t k = 0; k < kc; k++, bp += b_ks) {
            __m512 b0 = _mm512_loadu_ps(bp);
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

/* --- rows of A that are mostly zeros (mc_gemm_sparse_fn) --- */

/* Rows listed at a time, each chunk of B then read once for all of them (8 to 64 measured alike). */
#define SP_ROWS 32
#define SP_KC 128   /* this variant's K chunk bound */
#define SP_CAP (SP_KC + 16)

/* 1 when B[0:k, 0:n] holds no NaN or infinity (b - b is 0 exactly for finite b). */
TGT static int block_finite(const float *B, size_t ldb, size_t k, size_t n) {
    __mmask16 bad = 0;
    for (size_t r = 0; r < k; r++)
        for (size_t j = 0; j < n; j += 16) {
            __m512 b = _mm512_maskz_loadu_ps(lane_mask16(n - j, 0), B + r * ldb + j);
            bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(b, b), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        }
    return bad == 0;
}

/* The k < kc where a[k] != 0, or every k when all_k, into `ks`; returns the count. Writes up to 15
 * entries past it (ks has kc + 16 room). Asks for the same piece of the row `ahead` (NULL:
 * none) to be brought to L2 meanwhile: from rows spread over memory in chunks the hardware
 * prefetchers fetched too little (the first product's loads of A stalled 30% of the time). */
TGT INLINE size_t list_row(const float *a, const float *ahead, size_t kc, int all_k, int32_t *ks) {
    if (ahead)
        for (size_t k = 0; k < kc; k += 16) _mm_prefetch((const char *)(ahead + k), _MM_HINT_T1);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t n = 0;
    for (size_t k = 0; k < kc; k += 16) {
        __mmask16 in = lane_mask16(kc - k, 0);
        __mmask16 keep = all_k ? in : _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(in, a + k), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        _mm512_storeu_si512(ks + n, _mm512_maskz_compress_epi32(keep, _mm512_add_epi32(_mm512_set1_epi32((int)k), lanes)));
        n += (size_t)__builtin_popcount(keep);
    }
    return n;
}

/* acc[v] (v < nv) += a[k*a_ks] * B[k*ldb + 16v]: one step of a row's chains; columns masked by mk,
 * or all 16*nv of them (full) with plain loads, which fold into the FMAs. */
#define SP_STEP(acc, a, k)                                                                       \
    do {                                                                                         \
        __m512 x_ = _mm512_set1_ps((a)[(size_t)(k) * a_ks]);                                     \
        const float *b_ = B + (size_t)(k) * ldb;                                                 \
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)                                     \
            acc[v] = _mm512_fmadd_ps(x_, full ? _mm512_loadu_ps(b_ + 16 * v)                     \
                                              : _mm512_maskz_loadu_ps(mk[v], b_ + 16 * v), acc[v]); \
    } while (0)

/* c[0:16nv] = the epilogue of put16 on the lanes of mk (the others neither read nor written). */
TGT INLINE void put_row(const int nv, float *c, const __m512 *acc, const __mmask16 *mk, float alpha,
                        float beta) {
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) {
        __m512 r = beta != 0.0f ? _mm512_fmadd_ps(va, acc[v], _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(mk[v], c + 16 * v)))
                                : _mm512_mul_ps(va, acc[v]);
        _mm512_mask_storeu_ps(c + 16 * v, mk[v], r);
    }
}

/* Rows [0, m) of op(A) ((r, k) at A[r*a_rs + k*a_ks]), listed in ks/cnt, times columns [0, 16nv)
 * of B. With nv <= 4 two rows go together (2*nv independent chains); 8 vectors make enough chains
 * from one row and read only one k and one value per 8 FMAs (two rows of 8 measured slower). */
TGT INLINE void sparse_cols(const int nv, const int full, size_t m, const float *A, size_t a_rs, size_t a_ks,
                            const int32_t *ks, const size_t *cnt, const float *B, size_t ldb, float *C, size_t ldc,
                            const __mmask16 *mk, float alpha, float beta) {
    size_t r = 0;
    if (nv <= 4)
        for (; r + 2 <= m; r += 2) {
            __m512 a0[4], a1[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) a0[v] = a1[v] = _mm512_setzero_ps();
            const int32_t *k0 = ks + r * SP_CAP, *k1 = k0 + SP_CAP;
            const float *x0 = A + r * a_rs, *x1 = x0 + a_rs;
            size_t n0 = cnt[r], n1 = cnt[r + 1], both = n0 < n1 ? n0 : n1, p = 0;
            for (; p < both; p++) {
                SP_STEP(a0, x0, k0[p]);
                SP_STEP(a1, x1, k1[p]);
            }
            for (size_t q = p; q < n0; q++) SP_STEP(a0, x0, k0[q]);
            for (size_t q = p; q < n1; q++) SP_STEP(a1, x1, k1[q]);
            put_row(nv, C + r * ldc, a0, mk, alpha, beta);
            put_row(nv, C + (r + 1) * ldc, a1, mk, alpha, beta);
        }
    for (; r < m; r++) {
        __m512 a0[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) a0[v] = _mm512_setzero_ps();
        const int32_t *k0 = ks + r * SP_CAP;
        const float *x0 = A + r * a_rs;
        for (size_t q = 0; q < cnt[r]; q++) SP_STEP(a0, x0, k0[q]);
        put_row(nv, C + r * ldc, a0, mk, alpha, beta);
    }
}

/* C[0:rows, 0:n] from listed rows of op(A): column blocks of 128 (8 vectors), then of 64 with a
 * masked tail. */
TGT INLINE void sparse_block(size_t rows, size_t n, const float *A, size_t a_rs, size_t a_ks, const int32_t *ks,
                             const size_t *cnt, const float *B, size_t ldb, float *C, size_t ldc, float alpha,
                             float beta) {
    const __mmask16 all[8] = {0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF};
    size_t j = 0;
    for (; j + 128 <= n; j += 128)
        sparse_cols(8, 1, rows, A, a_rs, a_ks, ks, cnt, B + j, ldb, C + j, ldc, all, alpha, beta);
    for (; j < n; j += 64) {
        size_t nn = n - j < 64 ? n - j : 64;
        __mmask16 mk[4] = {lane_mask16(nn, 0), lane_mask16(nn, 1), lane_mask16(nn, 2), lane_mask16(nn, 3)};
        const float *b = B + j;
        float *c = C + j;
        switch ((nn + 15) / 16) {  /* as many vectors as there are columns */
        case 1: sparse_cols(1, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
        case 2: sparse_cols(2, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
        case 3: sparse_cols(3, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
        default:
            if (nn == 64) sparse_cols(4, 1, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta);
            else sparse_cols(4, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta);
            break;
        }
    }
}

TGT static void sparse_avx512(size_t m, size_t n, size_t k_len, size_t kc, const float *A, size_t lda,
                              const float *B, size_t ldb, float *C, size_t ldc, float alpha, float beta) {
    _Alignas(64) int32_t ks[SP_ROWS * SP_CAP];
    size_t cnt[SP_ROWS];
    int all_k = !block_finite(B, ldb, k_len, n);  /* 0*b is NaN there: no term may be left out */
    /* row blocks outside: each row of A is read once, front to back, as the prefetchers like */
    for (size_t i0 = 0; i0 < m; i0 += SP_ROWS) {
        size_t rows = m - i0 < SP_ROWS ? m - i0 : SP_ROWS;
        for (size_t p = 0; p < k_len; p += kc) {
            size_t kcur = k_len - p < kc ? k_len - p : kc;
            const float *a = A + i0 * lda + p;
            for (size_t r = 0; r < rows; r++) {
                const float *ahead = i0 + r + SP_ROWS < m ? a + (r + SP_ROWS) * lda : NULL;  /* the next block */
                cnt[r] = list_row(a + r * lda, ahead, kcur, all_k, ks + r * SP_CAP);
            }
            sparse_block(rows, n, a, lda, 1, ks, cnt, B + p * ldb, ldb, C + i0 * ldc, ldc, alpha,
                         p == 0 ? beta : 1.0f);  /* later chunks add to the first */
        }
    }
}

/* --- the same for op(A) = A^T (a weight gradient: A is the layer's input, r a pixel, k a batch row) --- */

/* For each r < rows: the k < kc where a[k*lda + r] != 0 (every k when all_k), in order, into
 * ks + r*SP_CAP, and their number into cnt[r]. Each row of A is read once, 16 pixels at a time, and
 * the k scattered to the lists of the pixels where it is nonzero. */
TGT INLINE void list_cols(const float *a, size_t lda, size_t rows, size_t kc, int all_k, int32_t *ks,
                          size_t *cnt) {
    const __m512i lanes = _mm512_setr_epi32(0, SP_CAP, 2 * SP_CAP, 3 * SP_CAP, 4 * SP_CAP, 5 * SP_CAP, 6 * SP_CAP,
                                            7 * SP_CAP, 8 * SP_CAP, 9 * SP_CAP, 10 * SP_CAP, 11 * SP_CAP,
                                            12 * SP_CAP, 13 * SP_CAP, 14 * SP_CAP, 15 * SP_CAP);
    const __m512i one = _mm512_set1_epi32(1);
    __m512i pos[SP_ROWS / 16];  /* per pixel: where its next k goes */
    for (int v = 0; v < SP_ROWS / 16; v++) pos[v] = _mm512_add_epi32(lanes, _mm512_set1_epi32(16 * v * SP_CAP));
    for (size_t k = 0; k < kc; k++) {
        const float *ak = a + k * lda;
        __m512i kv = _mm512_set1_epi32((int)k);
#pragma GCC unroll 2
        for (int v = 0; v < SP_ROWS / 16; v++) {
            if ((size_t)(16 * v) >= rows) break;
            __mmask16 in = lane_mask16(rows, v);
            __mmask16 keep = all_k ? in : _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(in, ak + 16 * v), _mm512_setzero_ps(), _CMP_NEQ_UQ);
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

/* C[0:m, 0:n] for op(A) = A^T, (r, k) at A[k*lda + r]: per block of pixels and K chunk, each
 * pixel's list of batch rows, then its chains as in sparse_avx512 (the same chunks, order and
 * epilogue, the zero terms left out). */
TGT static void sparse_t_avx512(size_t m, size_t n, size_t k_len, size_t kc, const float *A, size_t lda,
                                const float *B, size_t ldb, float *C, size_t ldc, float alpha, float beta) {
    _Alignas(64) int32_t ks[SP_ROWS * SP_CAP];
    size_t cnt[SP_ROWS];
    int all_k = !block_finite(B, ldb, k_len, n);
    for (size_t i0 = 0; i0 < m; i0 += SP_ROWS) {
        size_t rows = m - i0 < SP_ROWS ? m - i0 : SP_ROWS;
        for (size_t p = 0; p < k_len; p += kc) {
            size_t kcur = k_len - p < kc ? k_len - p : kc;
            const float *a = A + p * lda + i0;
            list_cols(a, lda, rows, kcur, all_k, ks, cnt);
            sparse_block(rows, n, a, 1, lda, ks, cnt, B + p * ldb, ldb, C + i0 * ldc, ldc, alpha, p == 0 ? beta : 1.0f);
        }
    }
}

#undef SP_STEP

static const mc_gemm_impl impl_avx512_narrow = {
    "avx512", 16, 16, SP_KC, 144, 1024, 4, micro_16x16, small_avx512, NULL, sparse_avx512, sparse_t_avx512,
};

const mc_gemm_impl mc_gemm_impl_avx512 = {
    "avx512", MR, NR, SP_KC, 144, 1024, 4, micro_12x32, small_avx512, &impl_avx512_narrow, sparse_avx512,
    sparse_t_avx512,
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
#undef SP_ROWS
#undef SP_KC
#undef SP_CAP
#undef TGT
#undef INLINE

#else

const mc_gemm_impl mc_gemm_impl_avx512 = {"avx512", 12, 32, 128, 144, 1024, 0, NULL, NULL, NULL, NULL, NULL};
double mc_fma_probe_avx512(double seconds) {
    (void)seconds;
    return 0.0;
}

#endif
