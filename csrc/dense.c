/* Dense forward/backward on top of mc_gemm. mc_dense_forward/backward are the plain layer (bias added
 * in a pass after the product, bias gradient summed in float32 row by row, so the result does not
 * depend on how mc_gemm splits its work); the model uses mc_dense_forward_act (bias and activation
 * in the product's epilogue hook) and the bare backward products (mc_dense_backward_gemms, the bias
 * gradient fused with the activation's backward in activations.c), same bits. */
#include "dense.h"

#include "activations.h"
#include "gemm.h"
#include "layer.h"

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

/* --- the layer kind: Dense on the last axis, (h, w, n_in) -> (h, w, units) --- */

/* rows of the product for `rows` samples: one per position of the leading axes */
static size_t product_rows(const mc_layer *ly, size_t rows) { return rows * ly->in.h * ly->in.w; }

/* relu needs no pre-activation buffer: the bias and relu are applied in place on the GEMM output and
 * the backward mask reads out > 0, which holds exactly where pre > 0. */
static int keeps_pre(const mc_layer *ly) {
    return ly->activation != MC_ACT_LINEAR && ly->activation != MC_ACT_RELU;
}

static mc_status dense_init(mc_layer *ly, size_t l, mc_error *err) {
    size_t units = ly->out.c, n = ly->in.c, wlen;
    if (ly->out.h != ly->in.h || ly->out.w != ly->in.w)
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: dense maps the last axis only, so the output's leading "
                            "axes (%zu, %zu) must equal the input's (%zu, %zu)", l, ly->out.h, ly->out.w, ly->in.h,
                            ly->in.w);
    if (ly->activation == MC_ACT_SOFTMAX && (ly->in.h != 1 || ly->in.w != 1))
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: softmax over a dense layer needs flat samples, got input "
                            "(%zu, %zu, %zu)", l, ly->in.h, ly->in.w, ly->in.c);
    if (ly->w[0].off < 0)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: dense needs a kernel (weight 0), got offset %lld", l,
                            (long long)ly->w[0].off);
    if (!mc_mul_size(n, units, &wlen))
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: n_in * n_out overflows", l);
    ly->w[0] = (mc_weight){ly->w[0].off, wlen, 1};
    ly->w[1] = (mc_weight){ly->w[1].off, ly->w[1].off >= 0 ? units : 0, 1};
    ly->n_weights = 2;
    return MC_OK;
}

static size_t dense_scratch(const mc_layer *ly) { return keeps_pre(ly) ? ly->n_out : 0; }

static const float *bias_of(const mc_layer *ly, const float *params) {
    return ly->w[1].len ? params + ly->w[1].off : NULL;
}

static void dense_layer_forward(const mc_layer *ly, const mc_fwd *f) {
    size_t M = product_rows(ly, f->rows);
    float *pre = keeps_pre(ly) ? f->scratch : f->out;
    if (f->plan) {
        mc_gemm_rows_plan rp = {product_rows(ly, f->plan->batch_rows), f->plan->params_finite,
                                f->reads_x ? f->plan->x_sparse : -1};
        mc_dense_forward_act(ly->activation, f->out, pre, f->inp, f->params + ly->w[0].off, bias_of(ly, f->params), M,
                             ly->in.c, ly->out.c, f->nonfinite, &rp);
    } else {
        mc_dense_forward_act(ly->activation, f->out, pre, f->inp, f->params + ly->w[0].off, bias_of(ly, f->params), M,
                             ly->in.c, ly->out.c, f->nonfinite, NULL);
    }
}

static void dense_layer_backward(const mc_layer *ly, const mc_bwd *b) {
    size_t M = product_rows(ly, b->rows);
    float *dw = b->grads ? b->grads + ly->w[0].off : NULL;
    float *db = b->grads && ly->w[1].len ? b->grads + ly->w[1].off : NULL;
    /* activation derivative and bias gradient in one pass over the rows, then the two products */
    int act = b->skip_act ? MC_ACT_LINEAR : ly->activation;
    if (act != MC_ACT_LINEAR || db)
        mc_activation_bias_backward(act, b->dout, db, keeps_pre(ly) ? b->scratch : NULL, b->out, M, ly->out.c);
    mc_dense_backward_gemms(b->dinp, dw, b->dout, b->inp, b->params + ly->w[0].off, M, ly->in.c, ly->out.c);
}

static const float *dense_logits(const mc_layer *ly, const float *inp, const float *out, const float *scratch) {
    (void)inp;
    return keeps_pre(ly) ? scratch : out;
}

static int dense_threads(const mc_layer *ly, size_t B) {
    return mc_gemm_threads(product_rows(ly, B), ly->out.c, ly->in.c);
}

static int dense_sparse_input(const mc_layer *ly, const float *x, size_t B) {
    return mc_gemm_skips_zeros(product_rows(ly, B), ly->out.c, ly->in.c, x, ly->in.c);
}

const mc_layer_ops mc_dense_ops = {
    .name = "dense",
    .init = dense_init,
    .scratch = dense_scratch,
    .forward = dense_layer_forward,
    .backward = dense_layer_backward,
    .logits = dense_logits,
    .threads = dense_threads,
    .sparse_input = dense_sparse_input,
    .checks_products = 1,
};
