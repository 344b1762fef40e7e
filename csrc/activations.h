/* Element-wise and row-wise activations with their derivatives, float32, rows of n values.
 * The codes are the ones of the layer table (engine API). No allocation; cannot fail. */
#ifndef MC_ACTIVATIONS_H
#define MC_ACTIVATIONS_H

#include <stddef.h>

typedef enum {
    MC_ACT_LINEAR = 0,
    MC_ACT_RELU,
    MC_ACT_SIGMOID,
    MC_ACT_TANH,
    MC_ACT_SOFTMAX,     /* over each row of n values */
    MC_ACT_ELU,         /* alpha 1 */
    MC_ACT_SELU,
    MC_ACT_GELU,        /* exact: x * Phi(x), with erf */
    MC_ACT_SILU,        /* x * sigmoid(x), a.k.a. swish */
    MC_ACT_SOFTPLUS,
    MC_ACT_LEAKY_RELU,  /* negative_slope 0.2 (Keras 3 default) */
    MC_ACT_SOFTSIGN,
    MC_ACT_EXPONENTIAL,
    MC_ACT_COUNT
} mc_activation;

/* out = act(inp); inp, out (B, n). out may equal inp (in place). act must be < MC_ACT_COUNT. */
void mc_activation_forward(int act, float *out, const float *inp, size_t B, size_t n);

/* dinp = dout * act'(inp) (softmax: the row Jacobian-vector product out * (dout - <dout, out>)).
 * dinp, dout, inp (the pre-activation) and out (= act(inp), as forward wrote it) are (B, n).
 * dinp is overwritten and may equal dout (in place); it must not alias inp or out. */
void mc_activation_backward(int act, float *dinp, const float *dout, const float *inp, const float *out,
                            size_t B, size_t n);

/* The pass right after a dense layer's GEMM, one row at a time while the row is in L1: pre (B, n) holds
 * inp @ W; pre += b (b (n) or NULL), then out = act(pre). out may equal pre (in place, as model.c does
 * for relu, whose backward only needs out). Same bits as adding the bias and then calling
 * mc_activation_forward. */
void mc_bias_activation_forward(int act, float *out, float *pre, const float *b, size_t B, size_t n);

/* The same on rows [i0, i1) and columns [j0, j1) of (., n) arrays: the per-element work does not
 * depend on the block. Softmax needs whole rows (j0 == 0, j1 == n). */
void mc_bias_activation_block(int act, float *out, float *pre, const float *b, size_t n, size_t i0, size_t i1,
                              size_t j0, size_t j1);

/* Largest of the n values at x (n >= 1; NaN compares false, so it is skipped unless first). */
float mc_row_max(const float *x, size_t n);

/* out[i, j] = e^(inp[i, j] - max_j inp[i, :]) for B rows of n (out may equal inp): the shifted
 * exponentials softmax and the cross-entropy from logits share, by mc_exp_nonpos in one flat loop
 * over the batch. */
void mc_exp_shifted_rows(float *out, const float *inp, size_t B, size_t n);

/* Backward through the activation and a dense layer's bias in one pass over the rows:
 * dpre = dout * act'(pre) written in place into dout (pre may be NULL for relu: out is used, since
 * out > 0 exactly where pre > 0), and db (n, or NULL) = sum over rows of dpre, OVERWRITTEN, summed
 * in float32 row after row (the order mc_dense_backward uses). act LINEAR only sums. */
void mc_activation_bias_backward(int act, float *dout, float *db, const float *pre, const float *out,
                                 size_t B, size_t n);

/* Numerically stable logistic function (no overflow for large |x|). */
float mc_sigmoidf(float x);

#endif
