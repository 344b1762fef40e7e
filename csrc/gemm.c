/* Portable reference GEMM: correct for every shape and transpose, written for clarity.
 * The loop order keeps the innermost loop over contiguous memory where the layout allows. */
#include "gemm.h"

void mc_gemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
             const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    for (size_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) for (size_t j = 0; j < N; j++) c[j] = 0.0f;
        else if (beta != 1.0f) for (size_t j = 0; j < N; j++) c[j] *= beta;
        for (size_t k = 0; k < K; k++) {
            float a = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);
            if (!trans_b) {
                const float *b = B + k * ldb;
                for (size_t j = 0; j < N; j++) c[j] += a * b[j];
            } else {
                for (size_t j = 0; j < N; j++) c[j] += a * B[j * ldb + k];
            }
        }
    }
}
