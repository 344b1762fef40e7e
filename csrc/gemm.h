/* General matrix multiply for the shapes training needs; row-major throughout. */
#ifndef MC_GEMM_H
#define MC_GEMM_H

#include <stddef.h>

/* C = alpha * op(A) @ op(B) + beta * C, where op(X) is X or X^T (trans_a / trans_b nonzero).
 * op(A) is (M, K), op(B) is (K, N), C is (M, N); lda/ldb/ldc are row strides in elements of the
 * matrices as stored (lda >= columns of A as stored, etc.); C must not overlap A or B.
 * beta == 0 overwrites C without reading it (NaN in C does not propagate); alpha == 0 or K == 0
 * only scales C (A and B are not read). M, N or K may be 0.
 * Cannot fail. Runs on up to mc_get_num_threads() threads (threads.h), splitting C into blocks:
 * each element is reduced over K in an order fixed by the shape and the kernel variant alone,
 * so results are bit-identical for any thread count and from run to run. Safe to call from
 * several threads at once (one of them gets the pool, the others run alone). Each calling thread
 * keeps its packing buffers between calls (about 4*K*min(N, 1M/K) bytes plus ~150 KiB; freed at
 * thread exit). It never calls a BLAS: NumPy's BLAS threads are a separate pool, so running
 * NumPy matmuls concurrently with training can oversubscribe the cores (limit one of the two). */
void mc_gemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
             const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

/* Work to do on C block by block, as soon as a block holds its final value (all of K summed,
 * alpha and beta applied): fn(ctx, C, ldc, i0, i1, j0, j1) for rows [i0, i1) and columns
 * [j0, j1). The blocks cover C once, are disjoint and may run concurrently on any thread; what fn
 * does to an element must not depend on the block it comes in. Lets a layer add its bias and
 * apply its activation while C is still in the cache of the core that computed it. */
typedef struct {
    void (*fn)(void *ctx, float *C, size_t ldc, size_t i0, size_t i1, size_t j0, size_t j1);
    void *ctx;
} mc_gemm_then;

/* The number of threads mc_gemm runs an (M, N, K) product on (1 for a product too small to be
 * worth splitting; at most mc_get_num_threads()). */
int mc_gemm_threads(size_t M, size_t N, size_t K);

/* mc_gemm, then `then` (NULL: nothing) on every block of C. */
void mc_gemm_ex(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A,
                size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc,
                const mc_gemm_then *then);

/* How mc_gemm_rows computes a block of rows of a larger product. */
typedef struct {
    size_t plan_m;  /* the rows of the whole product, whose shape fixes the K chunks and the path */
    int b_finite;   /* 1: op(B) is known to hold no NaN or infinity; 0: not known (checked here) */
    int sparse;     /* 0 or 1: whether to skip op(A)'s zeros (mc_gemm_skips_zeros on the whole A);
                     * -1: decided from a sample of the block's own rows */
} mc_gemm_rows_plan;

/* mc_gemm_ex on M rows of a product of plan->plan_m rows (M <= plan_m; A and C at the block's
 * first row), on the calling thread alone, each row getting the bits it gets in the whole
 * product. For callers that split a batch's rows over the pool themselves: inference runs all
 * the layers on a block of rows per task, one parallel job per batch instead of one per product. */
void mc_gemm_rows(const mc_gemm_rows_plan *plan, int trans_a, int trans_b, size_t M, size_t N, size_t K,
                  float alpha, const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                  size_t ldc, const mc_gemm_then *then);

/* Products skip the exact zeros of op(A) when at least this share of a sample of A's rows is zeros
 * (MNIST's pixels are 81% zeros): below it the zero lists cost more than the skipped products save
 * (bench/RESULTS.md, "Design measurements"). */
#define MC_GEMM_SPARSE_MIN_ZEROS 0.7

/* Whether mc_gemm (trans_a = trans_b = 0) would skip the zeros of A (M x K, row stride lda) in a
 * product with N columns (mc_gemm_rows_plan.sparse): looks at a sample of A's rows. */
int mc_gemm_skips_zeros(size_t M, size_t N, size_t K, const float *A, size_t lda);

/* The kernel variants. mc_gemm runs one of them, chosen once at first use: env MNISTC_KERNEL
 * (portable|avx2|avx512) when this CPU supports it, otherwise the best the CPU supports. Variants
 * differ in the last bits, each one bit-for-bit repeatable and independent of the thread count:
 *   portable  3x16 tile, plain C; a*b then +, separately rounded; K chunks of <= 256
 *   avx2      6x16 tile, AVX2+FMA; one fused multiply-add per k; K chunks of <= 256
 *   avx512    12x32 tile, AVX-512F; fused multiply-add; K chunks of <= 128
 * For all: K is cut into equal chunks (a function of K alone); an element's partial sum over a
 * chunk is added to C after the previous chunk's; the epilogue is alpha*acc + beta*C (fused in
 * the SIMD variants). Up to 9 (avx2) / 4 (avx512) / 5 (portable) rows of op(A) with B not
 * transposed take a direct path: one chain over all of K per element, no chunks. Products with
 * K >= 512 and M*N <= 65536 (a wide layer's forward on a batch) take an even number of chunks and
 * sum them as two halves, C = (first half) + (second half), so that two threads can each take
 * one half of B. avx512 runs N <= 16 on a 16x16 tile with the same per-element instructions.
 * Mostly-zero inputs (avx512 and avx2; B not transposed, >= 70% exact zeros in a sample of A's
 * rows, as an image's background gives a first layer's forward product and its weight gradient):
 * each element's chains run over the k where its row of op(A) is nonzero only (avx2's forward:
 * where any of the three rows taken with it is), in the same chunks and order. Leaving out a term
 * x*b with x == 0 and b finite leaves the sum as it was, so the bits are the dense path's but for
 * the sign of a zero sum that products underflowing to -0 can make; where B's rows of a K half
 * hold NaN or infinities, every term of that half runs. */
typedef enum { MC_KERNEL_PORTABLE = 0, MC_KERNEL_AVX2 = 1, MC_KERNEL_AVX512 = 2 } mc_kernel;
#define MC_KERNEL_COUNT 3

/* "portable", "avx2", "avx512"; NULL for a value out of range. */
const char *mc_kernel_name(mc_kernel k);
/* 1 when this build and this CPU can run variant k (portable always), else 0. */
int mc_kernel_supported(mc_kernel k);
/* The variant mc_gemm uses, and the MNISTC_KERNEL string read at first use (NULL if unset). */
mc_kernel mc_kernel_active(void);
const char *mc_kernel_requested(void);

/* Whether mc_gemm may take the zero-skipping path above: on unless env MNISTC_SPARSE=0 at first
 * use; mc_gemm_set_sparse switches it for the whole process and returns the previous setting. */
int mc_gemm_sparse(void);
int mc_gemm_set_sparse(int on);

/* mc_gemm with variant k; an unsupported k runs mc_kernel_active() instead. */
void mc_gemm_variant(mc_kernel k, int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
                     const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                     size_t ldc);

/* Peak single-core GFLOP/s measured with independent FMA chains for about `seconds` (clamped to
 * [0.01, 10]), using the widest vector unit the CPU supports (AVX-512F, AVX2+FMA, else scalar
 * multiply-add); *isa (may be NULL) receives the variant whose instructions were timed. */
double mc_fma_probe(double seconds, mc_kernel *isa);

#endif
