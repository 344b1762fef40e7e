/* Dense forward/backward on top of mc_gemm. mc_dense_forward/backward are the plain layer (bias added
 * in a pass after the product, bias gradient summed in float32 row by row, so the result does not
 * depend on how mc_gemm splits its work); the model uses mc_dense_forward_act (bias and activation
 * in the product's epilogue hook) and the bare backward products (mc_dense_backward_gemms, the bias
 * gradient fused with the activation's backward in activations.c), same bits. */
#include "dense.h"

#include "activations.h"
#include "gemm.h"

void mc_dense_forward(float *out, const float *inp, const float *w, const float *b,
                      size_t B, size_t n_in, size_t n_out) {
    mc_gemm(0, 0, B, n_out, n_in, 1.0f, inp, n_in, w, n_out, 0.0f, out, n_out);
    if (!b) return;
    for (size_t i = 0; i < B; i++) {
        float *o = out + i * n_out;
        for (size_t j = 0; j < n_out; j++) o[j] += b[j];
    }
}

void mc_dense_backward(float *dinp, float *dw, float *db, const float *dout,
                       const float *inp, const float *w, size_t B, size_t n_in, size_t n_out) {
    if (dw) mc_gemm(1, 0, n_in, n_out, B, 1.0f, inp, n_in, dout, n_out, 0.0f, dw, n_out);
    if (db) {
        for (size_t j = 0; j < n_out; j++) db[j] = 0.0f;
        for (size_t i = 0; i < B; i++) {
            const float *g = dout + i * n_out;
            for (size_t j = 0; j < n_out; j++) db[j] += g[j];
        }
    }
    if (dinp) mc_gemm(0, 1, B, n_in, n_out, 1.0f, dout, n_out, w, n_out, 0.0f, dinp, n_in);
}

void mc_dense_backward_gemms(float *dinp, float *dw, const float *dout, const float *inp, const float *w,
                             size_t B, size_t n_in, size_t n_out) {
    if (dw) mc_gemm(1, 0, n_in, n_out, B, 1.0f, inp, n_in, dout, n_out, 0.0f, dw, n_out);
    if (dinp) mc_gemm(0, 1, B, n_in, n_out, 1.0f, dout, n_out, w, n_out, 0.0f, dinp, n_in);
}

typedef struct {
    int act;
    float *out;
    const float *b;
    size_t n;
    atomic_int *nonfinite;
} bias_act;

/* 1 when C[i0:i1, j0:j1] (row stride n) holds NaN or an infinity: x - x is 0 for finite x only. */
static int block_nonfinite(const float *C, size_t n, size_t i0, size_t i1, size_t j0, size_t j1) {
    int bad = 0;
    for (size_t i = i0; i < i1; i++) {
        const float *c = C + i * n;
        for (size_t j = j0; j < j1; j++) bad |= c[j] - c[j] != 0.0f;
    }
    return bad;
}

static void bias_act_block(void *ctx, float *C, size_t ldc, size_t i0, size_t i1, size_t j0, size_t j1) {
    const bias_act *e = ctx;
    (void)ldc; /* C is pre, whose row stride is n */
    if (e->nonfinite && block_nonfinite(C, e->n, i0, i1, j0, j1))
        atomic_store_explicit(e->nonfinite, 1, memory_order_relaxed);
    mc_bias_activation_block(e->act, e->out, C, e->b, e->n, i0, i1, j0, j1);
}

void mc_dense_forward_act(int act, float *out, float *pre, const float *inp, const float *w, const float *b,
                          size_t B, size_t n_in, size_t n_out, atomic_int *nonfinite, const mc_gemm_rows_plan *rows) {
    bias_act e = {act, out, b, n_out, nonfinite};
    mc_gemm_then then = {bias_act_block, &e};
    int softmax = act == MC_ACT_SOFTMAX;  /* needs whole rows: after the product */
    if (rows)
        mc_gemm_rows(rows, 0, 0, B, n_out, n_in, 1.0f, inp, n_in, w, n_out, 0.0f, pre, n_out, softmax ? NULL : &then);
    else
        mc_gemm_ex(0, 0, B, n_out, n_in, 1.0f, inp, n_in, w, n_out, 0.0f, pre, n_out, softmax ? NULL : &then);
    if (!softmax) return;
    if (nonfinite && block_nonfinite(pre, n_out, 0, B, 0, n_out))
        atomic_store_explicit(nonfinite, 1, memory_order_relaxed);
    mc_bias_activation_forward(act, out, pre, b, B, n_out);
}
