/* Internal to the GEMM files: what one kernel variant (portable, AVX2+FMA, AVX-512F) provides to
 * the blocked driver in gemm.c. Not part of the C core's interface. */
#ifndef MC_GEMM_IMPL_H
#define MC_GEMM_IMPL_H

#include <stddef.h>

/* Micro-kernel: acc = a (mr x kc) @ bp (kc x nr: bp[k*b_ks + j]; b_ks = nr for a packed panel,
 * ldb for nr columns of an untransposed B read in place), summed over k in order;
 * then for the top-left m x n corner (m <= mr, n <= nr) of the tile at c (row stride ldc):
 * c = alpha*acc + beta*c, and with beta == 0, c = alpha*acc without reading c. Element (r, k) of
 * a is a[r*a_rs + k*a_ks] with either a_rs == 1 (k-major: a packed panel, a_ks = mr, or a piece
 * of A^T in place, a_ks = lda) or a_ks == 1 (rows of A in place, a_rs = lda); all mr rows are
 * read, whatever m is. The sum and the epilogue are the same instructions for every layout and
 * tile position, so an element's bits do not depend on them. Each variant fixes how the
 * epilogue rounds (see gemm.c). */
typedef void (*mc_gemm_micro_fn)(size_t kc, const float *a, size_t a_rs, size_t a_ks,
                                 const float *bp, size_t b_ks, float *c, size_t ldc, size_t m,
                                 size_t n, float alpha, float beta);

/* Direct (unpacked) path for a few rows of op(A) and an untransposed B: the same contract as
 * mc_gemm with trans_b == 0, with each C element reduced over all of K in order in one chain. */
typedef void (*mc_gemm_small_fn)(int trans_a, size_t M, size_t N, size_t K, float alpha,
                                 const float *A, size_t lda, const float *B, size_t ldb, float beta,
                                 float *C, size_t ldc);

/* Products whose op(A) is mostly exact zeros, as an image's background makes it: C[0:m, 0:n] (row
 * strides lda, ldb, ldc) summed over k < k_len in chunks of kc steps, kc at most the variant's
 * own (the last chunk shorter), the first chunk with beta and the others with 1, as micro would on
 * each chunk. Each element's chain runs over the k where its row of op(A) (or any of the rows
 * taken with it) is not zero (NaN and infinities count as not zero), in order: micro's chain
 * minus terms x*b with x == 0, each of which would add a zero. So for finite B the bits are micro's but for the sign of a zero sum,
 * which only products that underflow to -0 can make. all_k: every k runs, as it must where B holds
 * NaN or an infinity (0*b is NaN there). `sparse` takes op(A) = A ((r, k) at A[r*lda + k]),
 * `sparse_t` op(A) = A^T ((r, k) at A[k*lda + r]: a layer's input in its weight gradient). */
typedef void (*mc_gemm_sparse_fn)(size_t m, size_t n, size_t k_len, size_t kc, const float *A,
                                  size_t lda, const float *B, size_t ldb, float *C, size_t ldc,
                                  float alpha, float beta, int all_k);

/* 1 when B[0:k, 0:n] (row stride ldb) holds no NaN or infinity. */
typedef int (*mc_gemm_finite_fn)(const float *B, size_t ldb, size_t k, size_t n);

typedef struct mc_gemm_impl {
    const char *name;
    size_t mr, nr;          /* register tile */
    size_t kc, mc, nc;      /* cache blocks: kc bounds the K chunk; mc, nc multiples of mr, nr */
    size_t small_m_max;     /* use `small` when M <= this and trans_b == 0 (0: never) */
    mc_gemm_micro_fn micro;
    mc_gemm_small_fn small;
    /* Taken instead when N <= narrow->nr (NULL: none): a tile shaped for few columns, with the
     * same K chunks and per-element instructions, so the same bits as this one. */
    const struct mc_gemm_impl *narrow;
    mc_gemm_sparse_fn sparse, sparse_t;  /* NULL: none */
    mc_gemm_finite_fn finite;            /* with sparse */
    /* 1: micro reads only the first n columns of B (masked, the rest taken as 0, as a packed
     * panel's zero padding), so an untransposed B is read in place whatever N is */
    int b_masked;
} mc_gemm_impl;

extern const mc_gemm_impl mc_gemm_impl_avx2;
extern const mc_gemm_impl mc_gemm_impl_avx512;

/* GFLOP/s of one core running independent FMA chains for about `seconds` (0 if not compiled in). */
double mc_fma_probe_avx2(double seconds);
double mc_fma_probe_avx512(double seconds);

#endif
