/* AVX2+FMA GEMM kernels: a 6x16 register tile on packed B (12 ymm accumulators, 2 B loads and 6
 * broadcasts of op(A) per k, op(A) packed or in place), a direct path for a few rows, the kernels
 * that skip the zeros of mostly-zero inputs, and the FMA peak probe. Compiled for the
 * generic target with per-function target attributes; gemm.c calls them only when the CPU has
 * AVX2 and FMA. Rounding: one fused multiply-add per k, and c = fma(alpha, acc, beta*c). */
#include "gemm_impl.h"

#include <stdint.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#include <time.h>

#define TGT __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

#define MR 6
#define NR 16
#define KC 256 /* K chunk bound */

/* c[0:8] = alpha*acc + beta*c, or alpha*acc when beta == 0 (c not read). */
TGT INLINE void put8(float *c, __m256 acc, __m256 va, __m256 vb, int use_beta) {
    if (use_beta) _mm256_storeu_ps(c, _mm256_fmadd_ps(va, acc, _mm256_mul_ps(vb, _mm256_loadu_ps(c))));
    else _mm256_storeu_ps(c, _mm256_mul_ps(va, acc));
}

/* A full tile's epilogue on rows of stride ldc. Partial tiles go through a local copy so that
 * every element is computed by exactly the same instructions wherever it sits. */
TGT INLINE void put_tile8(float *c, size_t ldc, size_t m, size_t n, const __m256 *acc, int rows,
                         int vecs, float alpha, float beta) {
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    int use_beta = beta != 0.0f;
    if (m == (size_t)rows && n == (size_t)(8 * vecs)) {
#pragma GCC unroll 16
        for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
            for (int v = 0; v < vecs; v++) put8(c + r * ldc + 8 * v, acc[r * vecs + v], va, vb, use_beta);
        return;
    }
    float t[MR * 32];
    size_t w = (size_t)(8 * vecs);
    if (use_beta)
        for (size_t r = 0; r < m; r++)
            for (size_t j = 0; j < n; j++) t[r * w + j] = c[r * ldc + j];
#pragma GCC unroll 16
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 4
        for (int v = 0; v < vecs; v++) put8(t + r * w + 8 * v, acc[r * vecs + v], va, vb, use_beta);
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < n; j++) c[r * ldc + j] = t[r * w + j];
}

TGT static void micro_6x16(size_t kc, const float *a, size_t a_rs, size_t a_ks, const float *bp,
                           size_t b_ks, float *c, size_t ldc, size_t m, size_t n, float alpha,
                           float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    /* one k: rows 0..5 of op(A) at P0..P5, B row at bp + BO */
#define STEP(P0, P1, P2, P3, P4, P5, BO)                                     \
    do {                                                                     \
        __m256 b0 = _mm256_loadu_ps(bp + (BO));                              \
        __m256 b1 = _mm256_loadu_ps(bp + (BO) + 8);                          \
        __m256 x;                                                            \
        x = _mm256_broadcast_ss(P0);                                         \
        c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01); \
        x = _mm256_broadcast_ss(P1);                                         \
        c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11); \
        x = _mm256_broadcast_ss(P2);                                         \
        c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21); \
        x = _mm256_broadcast_ss(P3);                                         \
        c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31); \
        x = _mm256_broadcast_ss(P4);                                         \
        c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41); \
        x = _mm256_broadcast_ss(P5);                                         \
        c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51); \
    } while (0)
    size_t k = 0;
    if (a_rs == 1) {  /* k-major: row r of step k at a[k*a_ks + r] */
        for (; k + 2 <= kc; k += 2, bp += 2 * b_ks) {
            const float *p = a, *q = a + a_ks;
            STEP(p, p + 1, p + 2, p + 3, p + 4, p + 5, 0);
            STEP(q, q + 1, q + 2, q + 3, q + 4, q + 5, b_ks);
            a = q + a_ks;
        }
        for (; k < kc; k++, a += a_ks, bp += b_ks) STEP(a, a + 1, a + 2, a + 3, a + 4, a + 5, 0);
    } else {          /* rows in place: row r of step k at a[r*a_rs + k] */
        const float *a0 = a, *a1 = a + a_rs, *a2 = a + 2 * a_rs, *a3 = a + 3 * a_rs;
        const float *a4 = a + 4 * a_rs, *a5 = a + 5 * a_rs;
        for (; k + 2 <= kc; k += 2, bp += 2 * b_ks) {
            STEP(a0 + k, a1 + k, a2 + k, a3 + k, a4 + k, a5 + k, 0);
            STEP(a0 + k + 1, a1 + k + 1, a2 + k + 1, a3 + k + 1, a4 + k + 1, a5 + k + 1, b_ks);
        }
        for (; k < kc; k++, bp += b_ks) STEP(a0 + k, a1 + k, a2 + k, a3 + k, a4 + k, a5 + k, 0);
    }
#undef STEP
    __m256 acc[MR * 2] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    put_tile8(c, ldc, m, n, acc, MR, 2, alpha, beta);
}

/* Lane j of vector v is live when 8*v + j < nn. */
TGT INLINE __m256i lane_mask8(size_t nn, int v) {
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nn - 8 * v), idx);
}

/* `rows` (<= 3) rows of op(A) times B[:, 0:nn] (nn <= 32) straight from memory: 4 B vectors per
 * k, one broadcast per row, each element one FMA chain over all of K. Three rows are 12
 * accumulators: with the B vectors and the broadcast that fills the 16 ymm registers (four spill). */
TGT INLINE void small_rows8(const int rows, int trans_a, size_t K, const float *A, size_t lda,
                           const float *B, size_t ldb, size_t nn, float alpha, float beta, float *C,
                           size_t ldc) {
    __m256 acc[3 * 4];
#pragma GCC unroll 12
    for (int i = 0; i < 3 * 4; i++) acc[i] = _mm256_setzero_ps();
    const size_t sa_k = trans_a ? lda : 1, sa_r = trans_a ? 1 : lda;
    if (nn == 32) {
        for (size_t k = 0; k < K; k++) {
            const float *b = B + k * ldb;
            __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
            __m256 b2 = _mm256_loadu_ps(b + 16), b3 = _mm256_loadu_ps(b + 24);
#pragma GCC unroll 4
            for (int r = 0; r < rows; r++) {
                __m256 a = _mm256_broadcast_ss(A + k * sa_k + (size_t)r * sa_r);
                acc[r * 4 + 0] = _mm256_fmadd_ps(a, b0, acc[r * 4 + 0]);
                acc[r * 4 + 1] = _mm256_fmadd_ps(a, b1, acc[r * 4 + 1]);
                acc[r * 4 + 2] = _mm256_fmadd_ps(a, b2, acc[r * 4 + 2]);
                acc[r * 4 + 3] = _mm256_fmadd_ps(a, b3, acc[r * 4 + 3]);
            }
        }
    } else {
        __m256i m0 = lane_mask8(nn, 0), m1 = lane_mask8(nn, 1), m2 = lane_mask8(nn, 2), m3 = lane_mask8(nn, 3);
        for (size_t k = 0; k < K; k++) {
            const float *b = B + k * ldb;
            /* masked-off lanes are neither read nor faulted on */
            __m256 b0 = _mm256_maskload_ps(b, m0), b1 = _mm256_maskload_ps(b + 8, m1);
            __m256 b2 = _mm256_maskload_ps(b + 16, m2), b3 = _mm256_maskload_ps(b + 24, m3);
#pragma GCC unroll 4
            for (int r = 0; r < rows; r++) {
                __m256 a = _mm256_broadcast_ss(A + k * sa_k + (size_t)r * sa_r);
                acc[r * 4 + 0] = _mm256_fmadd_ps(a, b0, acc[r * 4 + 0]);
                acc[r * 4 + 1] = _mm256_fmadd_ps(a, b1, acc[r * 4 + 1]);
                acc[r * 4 + 2] = _mm256_fmadd_ps(a, b2, acc[r * 4 + 2]);
                acc[r * 4 + 3] = _mm256_fmadd_ps(a, b3, acc[r * 4 + 3]);
            }
        }
    }
    put_tile8(C, ldc, (size_t)rows, nn, acc, rows, 4, alpha, beta);
}

/* One row of op(A) times B[:, 0:64]: the same chains as small_rows8, but 8 of them, where one
 * row's 4 would leave the FMA units waiting on each other's latency (a single image's forward). */
TGT static void small_row64(size_t K, const float *a, size_t sa_k, const float *B, size_t ldb, float alpha,
                            float beta, float *c) {
    __m256 acc[8];
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) acc[v] = _mm256_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        __m256 x = _mm256_broadcast_ss(a + k * sa_k);
        const float *b = B + k * ldb;
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) acc[v] = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + 8 * v), acc[v]);
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
    for (int v = 0; v < 8; v++) put8(c + 8 * v, acc[v], va, vb, beta != 0.0f);
}

TGT static void small_avx2(int trans_a, size_t M, size_t N, size_t K, float alpha, const float *A,
                           size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    for (size_t i = 0; i < M; i += 3) {
        size_t rows = M - i < 3 ? M - i : 3;
        const float *a = trans_a ? A + i : A + i * lda;
        size_t j = 0;
        if (rows == 1)
            for (; j + 64 <= N; j += 64)
                small_row64(K, a, trans_a ? lda : 1, B + j, ldb, alpha, beta, C + i * ldc + j);
        for (; j < N; j += 32) {
            size_t nn = N - j < 32 ? N - j : 32;
            float *c = C + i * ldc + j;
            switch (rows) {
            case 1: small_rows8(1, trans_a, K, a, lda, B + j, ldb, nn, alpha, beta, c, ldc); break;
            case 2: small_rows8(2, trans_a, K, a, lda, B + j, ldb, nn, alpha, beta, c, ldc); break;
            default: small_rows8(3, trans_a, K, a, lda, B + j, ldb, nn, alpha, beta, c, ldc); break;
            }
        }
    }
}

/* --- products whose op(A) is mostly zeros (mc_gemm_sparse_fn): gemm_sparse_impl.h on 8 lanes,
 * lists packed from bit masks with a table (AVX2 has no compress or scatter) --- */

#define SP_(name) name##_avx2
#define SP_V __m256
#define SP_MASK __m256i
#define SP_LANES 8
#define SP_LOADU(p) _mm256_loadu_ps(p)
#define SP_STOREU(p, v) _mm256_storeu_ps(p, v)
#define SP_MLOAD(mk, p) _mm256_maskload_ps(p, mk)
#define SP_MSTORE(p, mk, v) _mm256_maskstore_ps(p, mk, v)
#define SP_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SP_MUL(a, b) _mm256_mul_ps(a, b)
#define SP_SET1(x) _mm256_set1_ps(x)
#define SP_BCAST(p) _mm256_broadcast_ss(p)
#define SP_ZERO() _mm256_setzero_ps()
#define SP_LANE_MASK(nn, v) lane_mask8(nn, v)
#define SP_ROWS 32
#define SP_KC KC
#define SP_CAP (SP_KC + 16)
#define SP_GROUP_ROWS 3

TGT static int block_finite_avx2(const float *B, size_t ldb, size_t k, size_t n) {
    int bad = 0;
    for (size_t r = 0; r < k; r++)
        for (size_t j = 0; j < n; j += 8) {
            __m256 b = _mm256_maskload_ps(B + r * ldb + j, lane_mask8(n - j, 0));
            bad |= _mm256_movemask_ps(_mm256_cmp_ps(_mm256_sub_ps(b, b), _mm256_setzero_ps(), _CMP_NEQ_UQ));
        }
    return bad == 0;
}

/* Lanes of a[0:8] below nn that are not zero (NaN and infinities included), as bits (the lanes
 * masked off load as 0). */
TGT INLINE unsigned nonzero8(const float *a, size_t nn) {
    __m256 x = nn == 8 ? _mm256_loadu_ps(a) : _mm256_maskload_ps(a, lane_mask8(nn, 0));
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
}

/* Byte i of pack4[m]: the lane of the i-th set bit of the 4-bit mask m (later bytes 0); count4[m]:
 * its set bits. */
static const uint32_t pack4[16] = {
    0x00000000, 0x00000000, 0x00000001, 0x00000100, 0x00000002, 0x00000200, 0x00000201, 0x00020100,
    0x00000003, 0x00000300, 0x00000301, 0x00030100, 0x00000302, 0x00030200, 0x00030201, 0x03020100,
};
static const uint8_t count4[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

/* out[0 : count) = k + the lanes of the set bits of the 8-bit mask keep, in order, from one vector
 * store (up to 8 entries past the count are written); the count. No branch and no store per lane,
 * which made the lists cost as much as the products on AMD Zen 3. */
TGT INLINE size_t pack_lanes8(int32_t *out, unsigned keep, size_t k) {
    unsigned lo = keep & 15u, hi = keep >> 4;
    uint64_t lanes = pack4[lo] | (uint64_t)(pack4[hi] + 0x04040404u) << (8 * count4[lo]);
    __m256i at = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)&lanes));
    _mm256_storeu_si256((__m256i *)out, _mm256_add_epi32(_mm256_set1_epi32((int)k), at));
    return count4[lo] + count4[hi];
}

TGT INLINE size_t list_union_avx2(const float *a, size_t lda, size_t g, const float *ahead, size_t g_ahead,
                                  size_t kc, int all_k, int32_t *ks) {
    for (size_t r = 0; r < g_ahead; r++)
        for (size_t k = 0; k < kc; k += 16) _mm_prefetch((const char *)(ahead + r * lda + k), _MM_HINT_T1);
    size_t n = 0;
    for (size_t k = 0; k < kc; k += 8) {
        size_t nn = kc - k < 8 ? kc - k : 8;
        unsigned keep = (1u << nn) - 1u;
        if (!all_k) {
            keep = 0;
            for (size_t r = 0; r < g; r++) keep |= nonzero8(a + r * lda + k, nn);
        }
        n += pack_lanes8(ks + n, keep, k);
    }
    return n;
}

/* Bytes of 0xFF where a[0:32] (lanes below rows) is not zero, NaN included, else 0; in the lane
 * order of two saturating packs: 4-lane groups 0, 2, 4, 6, 1, 3, 5, 7. */
TGT INLINE __m256i nonzero32(const float *a, size_t rows) {
    __m256i f[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) {
        size_t nn = rows > (size_t)(8 * v) ? rows - (size_t)(8 * v) : 0;
        __m256 x = nn >= 8 ? _mm256_loadu_ps(a + 8 * v) : _mm256_maskload_ps(a + 8 * v, lane_mask8(nn, 0));
        f[v] = _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    }
    return _mm256_packs_epi16(_mm256_packs_epi32(f[0], f[1]), _mm256_packs_epi32(f[2], f[3]));
}

/* The flags of 8 rows of k at a time are folded into one byte per column r (bit j: row 8g+j),
 * a bit transpose in registers, and each column's list is packed from its bytes. */
TGT INLINE void list_cols_avx2(const float *a, size_t lda, size_t rows, size_t kc, int all_k, int32_t *ks,
                               size_t *cnt) {
    _Alignas(32) uint8_t bits[(SP_KC + 7) / 8][32];
    const __m256i in_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    size_t groups = (kc + 7) / 8;
    for (size_t g = 0; g < groups; g++) {
        size_t kn = kc - 8 * g < 8 ? kc - 8 * g : 8;
        __m256i byte = _mm256_setzero_si256();
        for (size_t j = 0; j < kn; j++) {
            __m256i f = all_k ? _mm256_set1_epi8(-1) : nonzero32(a + (8 * g + j) * lda, rows);
            byte = _mm256_or_si256(byte, _mm256_and_si256(f, _mm256_set1_epi8((char)(1u << j))));
        }
        _mm256_store_si256((__m256i *)bits[g], _mm256_permutevar8x32_epi32(byte, in_order));
    }
    for (size_t r = 0; r < rows; r++) {
        int32_t *list = ks + r * SP_CAP;
        size_t n = 0;
        for (size_t g = 0; g < groups; g++) n += pack_lanes8(list + n, bits[g][r], 8 * g);
        cnt[r] = n;
    }
}

#include "gemm_sparse_impl.h"

const mc_gemm_impl mc_gemm_impl_avx2 = {
    "avx2", MR, NR, KC, 144, 1024, 9, micro_6x16, small_avx2, NULL, sparse_avx2, sparse_t_avx2,
    block_finite_avx2, 0,
};


static double now_s8(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 12 independent chains x = x*a + b (enough to cover FMA latency x ports on current cores); the
 * values settle at b/(1-a), so no overflow or denormals. Best rate over ~2 ms slices. */
TGT double mc_fma_probe_avx2(double seconds) {
    __m256 x0 = _mm256_set1_ps(0.1f), x1 = _mm256_set1_ps(0.2f), x2 = _mm256_set1_ps(0.3f);
    __m256 x3 = _mm256_set1_ps(0.4f), x4 = _mm256_set1_ps(0.5f), x5 = _mm256_set1_ps(0.6f);
    __m256 x6 = _mm256_set1_ps(0.7f), x7 = _mm256_set1_ps(0.8f), x8 = _mm256_set1_ps(0.9f);
    __m256 x9 = _mm256_set1_ps(1.0f), x10 = _mm256_set1_ps(1.1f), x11 = _mm256_set1_ps(1.2f);
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
    const long iters = 1L << 18;
    double best = 0.0, start = now_s8();
    do {
        double t0 = now_s8();
        for (long i = 0; i < iters; i++) {
            x0 = _mm256_fmadd_ps(x0, a, b); x1 = _mm256_fmadd_ps(x1, a, b);
            x2 = _mm256_fmadd_ps(x2, a, b); x3 = _mm256_fmadd_ps(x3, a, b);
            x4 = _mm256_fmadd_ps(x4, a, b); x5 = _mm256_fmadd_ps(x5, a, b);
            x6 = _mm256_fmadd_ps(x6, a, b); x7 = _mm256_fmadd_ps(x7, a, b);
            x8 = _mm256_fmadd_ps(x8, a, b); x9 = _mm256_fmadd_ps(x9, a, b);
            x10 = _mm256_fmadd_ps(x10, a, b); x11 = _mm256_fmadd_ps(x11, a, b);
        }
        double dt = now_s8() - t0;
        double rate = 12.0 * 8.0 * 2.0 * (double)iters / dt * 1e-9;
        if (rate > best) best = rate;
    } while (now_s8() - start < seconds);
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)),
                             _mm256_add_ps(_mm256_add_ps(x4, x5), _mm256_add_ps(x6, x7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(x8, x9), _mm256_add_ps(x10, x11)));
    float out[8];
    _mm256_storeu_ps(out, s);
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

const mc_gemm_impl mc_gemm_impl_avx2 = {"avx2", 6, 16, 256, 144, 1024, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0};
double mc_fma_probe_avx2(double seconds) {
    (void)seconds;
    return 0.0;
}

#endif
