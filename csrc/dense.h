/* Fully connected layer without its activation: out = inp @ w + b, with the Keras kernel layout.
 * Every matrix product goes through mc_gemm; the activation is applied by model.c. */
#ifndef MC_DENSE_H
#define MC_DENSE_H

#include <stdatomic.h>
#include <stddef.h>

#include "gemm.h"

/* out = inp @ w + b.  inp (B, n_in), w (n_in, n_out) (Keras kernel layout), b (n_out) or NULL
 * (use_bias=False), out (B, n_out), overwritten. Cannot fail. */
void mc_dense_forward(float *out, const float *inp, const float *w, const float *b,
                      size_t B, size_t n_in, size_t n_out);

/* Gradients of out = inp @ w + b given dout = dL/dout (B, n_out):
 *   dinp (B, n_in) = dout @ w^T,  dw (n_in, n_out) = inp^T @ dout,  db (n_out) = sum over rows of dout.
 * All three are OVERWRITTEN (each parameter belongs to exactly one layer, so the training step needs
 * no zeroing pass). Pass NULL for a gradient you do not need (dinp of the first layer, dw/db of a
 * frozen layer or a layer without bias). dinp must not alias dout. Cannot fail. */
void mc_dense_backward(float *dinp, float *dw, float *db, const float *dout,
                       const float *inp, const float *w, size_t B, size_t n_in, size_t n_out);

/* The two products of mc_dense_backward alone (db computed elsewhere, e.g. fused with the activation's
 * backward by mc_activation_bias_backward): dw = inp^T @ dout and dinp = dout @ w^T, each skipped when
 * NULL, OVERWRITTEN. Cannot fail. */
void mc_dense_backward_gemms(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                             size_t B, size_t n_in, size_t n_out);

/* The product and mc_bias_activation_forward(act, out, pre, b, B, n_out) together, same bits: pre
 * (B, n_out) receives inp @ w + b, out = act(pre) (out may equal pre). The bias and activation run
 * in the GEMM's `then` hook, on each block of the product as it is finished, in the cache of the
 * core that computed it (softmax, which needs whole rows, after the product). nonfinite (NULL: no
 * check) is set to 1 when the product inp @ w holds NaN or an infinity, looked at before the bias
 * and the activation (ReLU would turn NaN into 0); it is never cleared here. rows: NULL for a whole
 * batch, its product on the pool; else these B rows are a block of a batch of rows->plan_m rows
 * (inp, out and pre at the block's first row), computed on the calling thread alone with the bits
 * they get in the whole batch (mc_gemm_rows). */
void mc_dense_forward_act(int act, float *out, float *pre, const float *inp, const float *w, const float *b,
                          size_t B, size_t n_in, size_t n_out, atomic_int *nonfinite, const mc_gemm_rows_plan *rows);

#endif
