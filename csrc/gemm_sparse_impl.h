/* The zero-skipping kernels (mc_gemm_sparse_fn, gemm_impl.h), written once for every vector width.
 * Included by gemm_avx2.c and gemm_avx512.c, each after defining:
 *   TGT, INLINE            the file's target attribute and forced inlining
 *   SP_(name)              name##_<variant>: the names below, distinct per variant
 *   SP_V, SP_MASK, SP_LANES  the vector type, a lane mask type, floats per vector
 *   SP_LOADU(p), SP_STOREU(p, v), SP_MLOAD(mk, p), SP_MSTORE(p, mk, v)  plain and masked loads
 *                          and stores (masked-off lanes neither read, written nor faulted on)
 *   SP_FMA(a, b, c) = a*b + c fused, SP_MUL, SP_SET1(x), SP_BCAST(p) = SP_SET1(*p), SP_ZERO()
 *   SP_LANE_MASK(nn, v)    the lanes of vector v that lie below column nn
 *   SP_ROWS, SP_KC, SP_CAP rows listed at a time, the variant's K chunk bound, list room per row
 *   SP_GROUP_ROWS          (optional) 3: the forward runs three rows at a time over one list
 * and the functions the lists come from:
 *   size_t SP_(list_row)(a, ahead, kc, all_k, ks): the k < kc where a[k] != 0 (every k when all_k;
 *       NaN and infinities count as not zero), in order, into ks (room kc + 16); the count.
 *       `ahead` (NULL: none): kc floats of A needed later, to prefetch (may lie past A's end)
 *   or, with SP_GROUP_ROWS, size_t SP_(list_union)(a, lda, g, ahead, g_ahead, kc, all_k, ks): the
 *       same for the k where any of the g rows a + r*lda is not zero; `ahead`: g_ahead such rows
 *   void SP_(list_cols)(a, lda, rows, kc, all_k, ks, cnt): for r < rows, the k < kc where
 *       a[k*lda + r] != 0, in order, into ks + r*SP_CAP; their number into cnt[r]
 * It defines the variant's kernels SP_(sparse) and SP_(sparse_t), and undefines the parameters.
 *
 * Each element's chain runs over its row's listed k, in order, in the K chunks of the dense kernels,
 * and ends in their epilogue (fma(alpha, acc, beta*c), or alpha*acc when beta == 0): the dense
 * chain minus terms x*b with x == 0. Columns go 8 vectors at a time, one row's 8 independent
 * chains; a narrower rest takes two rows together when 4 vectors or fewer cover it. With
 * SP_GROUP_ROWS the forward lists the k where any of three rows is not zero and runs their 3 x 4
 * vectors of chains over it: a row's terms where its own x is zero add zeros, as in the dense
 * chain, and one list and one load of B serve three rows. */

#define SP_COLS (8 * SP_LANES) /* columns of a full block */

/* acc[v] (v < nv) += a[k*a_ks] * B[k*ldb + v*SP_LANES]: one step of a row's chains; columns masked
 * by mk, or all of them (full) with plain loads, which fold into the FMAs. */
#define SP_STEP(acc, a, k)                                                                       \
    do {                                                                                         \
        SP_V x_ = SP_BCAST((a) + (size_t)(k) * a_ks);                                            \
        const float *b_ = B + (size_t)(k) * ldb;                                                 \
        _Pragma("GCC unroll 8") for (int v = 0; v < nv; v++)                                     \
            acc[v] = SP_FMA(x_, full ? SP_LOADU(b_ + SP_LANES * v)                               \
                                     : SP_MLOAD(mk[v], b_ + SP_LANES * v), acc[v]);              \
    } while (0)

/* c[0 : nv*SP_LANES] = the dense kernels' epilogue on the lanes of mk (the others neither read nor
 * written), or on all of them (full) with plain loads and stores: AMD's AVX2 masked stores are
 * microcoded, several times slower. */
TGT INLINE void SP_(put_row)(const int nv, const int full, float *c, const SP_V *acc, const SP_MASK *mk,
                             float alpha, float beta) {
    SP_V va = SP_SET1(alpha), vb = SP_SET1(beta);
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) {
        float *cv = c + SP_LANES * v;
        SP_V r = beta != 0.0f ? SP_FMA(va, acc[v], SP_MUL(vb, full ? SP_LOADU(cv) : SP_MLOAD(mk[v], cv)))
                              : SP_MUL(va, acc[v]);
        if (full) SP_STOREU(cv, r);
        else SP_MSTORE(cv, mk[v], r);
    }
}

/* Rows [0, m) of op(A) ((r, k) at A[r*a_rs + k*a_ks]), listed in ks/cnt, times nv vectors of
 * columns of B. */
TGT INLINE void SP_(cols)(const int nv, const int full, size_t m, const float *A, size_t a_rs, size_t a_ks,
                          const int32_t *ks, const size_t *cnt, const float *B, size_t ldb, float *C, size_t ldc,
                          const SP_MASK *mk, float alpha, float beta) {
    size_t r = 0;
    if (nv <= 4)
        for (; r + 2 <= m; r += 2) {
            SP_V a0[4], a1[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) a0[v] = a1[v] = SP_ZERO();
            const int32_t *k0 = ks + r * SP_CAP, *k1 = k0 + SP_CAP;
            const float *x0 = A + r * a_rs, *x1 = x0 + a_rs;
            size_t n0 = cnt[r], n1 = cnt[r + 1], both = n0 < n1 ? n0 : n1, p = 0;
            for (; p < both; p++) {
                SP_STEP(a0, x0, k0[p]);
                SP_STEP(a1, x1, k1[p]);
            }
            for (size_t q = p; q < n0; q++) SP_STEP(a0, x0, k0[q]);
            for (size_t q = p; q < n1; q++) SP_STEP(a1, x1, k1[q]);
            SP_(put_row)(nv, full, C + r * ldc, a0, mk, alpha, beta);
            SP_(put_row)(nv, full, C + (r + 1) * ldc, a1, mk, alpha, beta);
        }
    for (; r < m; r++) {
        SP_V a0[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) a0[v] = SP_ZERO();
        const int32_t *k0 = ks + r * SP_CAP;
        const float *x0 = A + r * a_rs;
        for (size_t q = 0; q < cnt[r]; q++) SP_STEP(a0, x0, k0[q]);
        SP_(put_row)(nv, full, C + r * ldc, a0, mk, alpha, beta);
    }
}

/* C[0:rows, 0:n] from listed rows of op(A): full blocks of SP_COLS columns, then the rest masked. */
TGT INLINE void SP_(block)(size_t rows, size_t n, const float *A, size_t a_rs, size_t a_ks, const int32_t *ks,
                           const size_t *cnt, const float *B, size_t ldb, float *C, size_t ldc, float alpha,
                           float beta) {
    SP_MASK mk[8];
    size_t j = 0;
    for (int v = 0; v < 8; v++) mk[v] = SP_LANE_MASK(SP_COLS, v);
    for (; j + SP_COLS <= n; j += SP_COLS)
        SP_(cols)(8, 1, rows, A, a_rs, a_ks, ks, cnt, B + j, ldb, C + j, ldc, mk, alpha, beta);
    if (j == n) return;
    size_t nn = n - j;
    for (int v = 0; v < 8; v++) mk[v] = SP_LANE_MASK(nn, v);
    const float *b = B + j;
    float *c = C + j;
    switch ((nn + SP_LANES - 1) / SP_LANES) {  /* as many vectors as there are columns */
    case 1: SP_(cols)(1, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
    case 2: SP_(cols)(2, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
    case 3: SP_(cols)(3, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
    case 4: SP_(cols)(4, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
    case 5: SP_(cols)(5, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
    case 6: SP_(cols)(6, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
    default: SP_(cols)(7, 0, rows, A, a_rs, a_ks, ks, cnt, b, ldb, c, ldc, mk, alpha, beta); break;
    }
}

#ifdef SP_GROUP_ROWS
_Static_assert(SP_GROUP_ROWS == 3, "the grouped forward is written for three rows");

/* acc[r][v] for g rows of op(A) = A (row stride lda) over the list ks[0:cnt] (the k where any of
 * them is not zero) and nv vectors of columns of B; then C's rows (stride ldc), as SP_(put_row). */
TGT INLINE void SP_(group_cols)(const int g, const int nv, const int full, const float *A, size_t lda,
                                const int32_t *ks, size_t cnt, const float *B, size_t ldb, float *C,
                                size_t ldc, const SP_MASK *mk, float alpha, float beta) {
    SP_V acc[SP_GROUP_ROWS][4];
#pragma GCC unroll 3
    for (int r = 0; r < g; r++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) acc[r][v] = SP_ZERO();
    for (size_t q = 0; q < cnt; q++) {
        const float *b = B + (size_t)ks[q] * ldb;
        SP_V x[SP_GROUP_ROWS];
#pragma GCC unroll 3
        for (int r = 0; r < g; r++) x[r] = SP_BCAST(A + (size_t)r * lda + ks[q]);
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            SP_V bv = full ? SP_LOADU(b + SP_LANES * v) : SP_MLOAD(mk[v], b + SP_LANES * v);
#pragma GCC unroll 3
            for (int r = 0; r < g; r++) acc[r][v] = SP_FMA(x[r], bv, acc[r][v]);
        }
    }
#pragma GCC unroll 3
    for (int r = 0; r < g; r++) SP_(put_row)(nv, full, C + (size_t)r * ldc, acc[r], mk, alpha, beta);
}

/* C[0:g, 0:n] from g listed rows: blocks of 4 vectors of columns, then the rest masked. */
TGT INLINE void SP_(group)(const int g, const float *A, size_t lda, const int32_t *ks, size_t cnt,
                           const float *B, size_t ldb, size_t n, float *C, size_t ldc, float alpha, float beta) {
    SP_MASK mk[4];
    size_t j = 0;
    for (int v = 0; v < 4; v++) mk[v] = SP_LANE_MASK(4 * SP_LANES, v);
    for (; j + 4 * SP_LANES <= n; j += 4 * SP_LANES)
        SP_(group_cols)(g, 4, 1, A, lda, ks, cnt, B + j, ldb, C + j, ldc, mk, alpha, beta);
    if (j == n) return;
    size_t nn = n - j;
    for (int v = 0; v < 4; v++) mk[v] = SP_LANE_MASK(nn, v);
    switch ((nn + SP_LANES - 1) / SP_LANES) {  /* as many vectors as there are columns */
    case 1: SP_(group_cols)(g, 1, 0, A, lda, ks, cnt, B + j, ldb, C + j, ldc, mk, alpha, beta); break;
    case 2: SP_(group_cols)(g, 2, 0, A, lda, ks, cnt, B + j, ldb, C + j, ldc, mk, alpha, beta); break;
    case 3: SP_(group_cols)(g, 3, 0, A, lda, ks, cnt, B + j, ldb, C + j, ldc, mk, alpha, beta); break;
    default: SP_(group_cols)(g, 4, 0, A, lda, ks, cnt, B + j, ldb, C + j, ldc, mk, alpha, beta); break;
    }
}

/* op(A) = A, (r, k) at A[r*lda + k], three rows at a time: per K chunk one list for the three. */
TGT static void SP_(sparse)(size_t m, size_t n, size_t k_len, size_t kc, const float *A, size_t lda,
                            const float *B, size_t ldb, float *C, size_t ldc, float alpha, float beta,
                            int all_k) {
    _Alignas(64) int32_t ks[SP_CAP];
    for (size_t i = 0; i < m; i += SP_GROUP_ROWS) {
        size_t g = m - i < SP_GROUP_ROWS ? m - i : SP_GROUP_ROWS;
        size_t g_next = m - i - g < SP_GROUP_ROWS ? m - i - g : SP_GROUP_ROWS;
        const float *a = A + i * lda;
        for (size_t p = 0; p < k_len; p += kc) {
            size_t kcur = k_len - p < kc ? k_len - p : kc;
            const float *ahead = g_next ? a + g * lda + p : NULL;  /* the next rows' same chunk */
            size_t cnt = SP_(list_union)(a + p, lda, g, ahead, g_next, kcur, all_k, ks);
            const float *b = B + p * ldb;
            float *c = C + i * ldc;
            float bp = p == 0 ? beta : 1.0f;  /* later chunks add to the first */
            if (g == 1) SP_(group)(1, a + p, lda, ks, cnt, b, ldb, n, c, ldc, alpha, bp);
            else if (g == 2) SP_(group)(2, a + p, lda, ks, cnt, b, ldb, n, c, ldc, alpha, bp);
            else SP_(group)(3, a + p, lda, ks, cnt, b, ldb, n, c, ldc, alpha, bp);
        }
    }
}

#else

/* op(A) = A, (r, k) at A[r*lda + k]. Row blocks outside: each row of A is read once, front to
 * back, as the prefetchers like. */
TGT static void SP_(sparse)(size_t m, size_t n, size_t k_len, size_t kc, const float *A, size_t lda,
                            const float *B, size_t ldb, float *C, size_t ldc, float alpha, float beta,
                            int all_k) {
    _Alignas(64) int32_t ks[SP_ROWS * SP_CAP];
    size_t cnt[SP_ROWS];
    for (size_t i0 = 0; i0 < m; i0 += SP_ROWS) {
        size_t rows = m - i0 < SP_ROWS ? m - i0 : SP_ROWS;
        for (size_t p = 0; p < k_len; p += kc) {
            size_t kcur = k_len - p < kc ? k_len - p : kc;
            const float *a = A + i0 * lda + p;
            for (size_t r = 0; r < rows; r++) {
                /* the row's next chunk, or after its last the next block's first; past row m too,
                 * where a caller's next rows usually follow (inference's next task): the address
                 * is only prefetched, which never faults, and is computed on integers */
                uintptr_t next_block = (uintptr_t)(A + i0 * lda) + (r + SP_ROWS) * lda * sizeof(float);
                const float *ahead = p + kcur < k_len ? a + r * lda + kcur : (const float *)next_block;
                cnt[r] = SP_(list_row)(a + r * lda, ahead, kcur, all_k, ks + r * SP_CAP);
            }
            SP_(block)(rows, n, a, lda, 1, ks, cnt, B + p * ldb, ldb, C + i0 * ldc, ldc, alpha,
                       p == 0 ? beta : 1.0f);  /* later chunks add to the first */
        }
    }
}

#endif

/* op(A) = A^T, (r, k) at A[k*lda + r] (a layer's input in its weight gradient: r a pixel, k a batch
 * row): per block of pixels and K chunk, each pixel's list of batch rows, then its chains. */
TGT static void SP_(sparse_t)(size_t m, size_t n, size_t k_len, size_t kc, const float *A, size_t lda,
                              const float *B, size_t ldb, float *C, size_t ldc, float alpha, float beta,
                              int all_k) {
    _Alignas(64) int32_t ks[SP_ROWS * SP_CAP];
    size_t cnt[SP_ROWS];
    for (size_t i0 = 0; i0 < m; i0 += SP_ROWS) {
        size_t rows = m - i0 < SP_ROWS ? m - i0 : SP_ROWS;
        for (size_t p = 0; p < k_len; p += kc) {
            size_t kcur = k_len - p < kc ? k_len - p : kc;
            const float *a = A + p * lda + i0;
            SP_(list_cols)(a, lda, rows, kcur, all_k, ks, cnt);
            SP_(block)(rows, n, a, 1, lda, ks, cnt, B + p * ldb, ldb, C + i0 * ldc, ldc, alpha,
                       p == 0 ? beta : 1.0f);
        }
    }
}

#undef SP_STEP
#undef SP_COLS
/* the parameters, so that another variant can set them */
#undef SP_
#undef SP_V
#undef SP_MASK
#undef SP_LANES
#undef SP_LOADU
#undef SP_STOREU
#undef SP_MLOAD
#undef SP_MSTORE
#undef SP_FMA
#undef SP_MUL
#undef SP_SET1
#undef SP_BCAST
#undef SP_ZERO
#undef SP_LANE_MASK
#undef SP_ROWS
#undef SP_KC
#undef SP_CAP
#undef SP_GROUP_ROWS
