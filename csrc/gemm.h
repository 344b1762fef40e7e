/* General matrix multiply for the shapes training needs; row-major throughout. */
#ifndef MC_GEMM_H
#define MC_GEMM_H

#include <stddef.h>

/* C = alpha * op(A) @ op(B) + beta * C, where op(X) is X or X^T (trans_a / trans_b nonzero).
 * op(A) is (M, K), op(B) is (K, N), C is (M, N); lda/ldb/ldc are row strides in elements of the
 * matrices as stored. beta == 0 overwrites C without reading it (NaN in C does not propagate).
 * Cannot fail. Results do not depend on the number of threads. */
void mc_gemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
             const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

#endif
