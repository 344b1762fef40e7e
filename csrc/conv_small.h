/* Direct kernels for a convolution with a small receptive field (K = kernel_h * kernel_w * in.c of
 * at most MC_CONV_SMALL_MAX_K, as a first layer on images has): the forward product and the weight
 * gradient computed from the input itself, with no im2col copy and no packing. For such a K the
 * product of im2col is bound by memory, not by arithmetic.
 *
 * Forward keeps the bits of the im2col path: each output element is one fused multiply-add chain
 * over k in order from zero, as the AVX2 and AVX-512 GEMM variants sum a K that fits one chunk,
 * then + bias and the activation as activations.c does. The weight gradient is summed per element
 * in one chain over the samples and pixels given, in order (the same bits on both variants). The
 * portable variant has no direct kernels: its products round a*b and + separately. */
#ifndef MC_CONV_SMALL_H
#define MC_CONV_SMALL_H

#include <stdatomic.h>
#include <stddef.h>

#include "layer.h"

#define MC_CONV_SMALL_MAX_K 32

typedef struct {
    const mc_layer *ly;
    size_t K;
    /* window element k (ky, kx, c in im2col's order) lies off[k] floats after the window's first
     * element in the input */
    ptrdiff_t off[MC_CONV_SMALL_MAX_K];
} mc_conv_small;

/* 1 with *cs filled when the kernel variant mc_gemm runs has direct kernels and ly's K fits them;
 * 0 otherwise (the caller takes the im2col path). */
int mc_conv_small_plan(const mc_layer *ly, mc_conv_small *cs);

/* dst (n, out.h, out.w, out.c) = x's windows @ w (K, out.c) + b (b may be NULL) for n samples of x
 * (n, in.h, in.w, in.c), then relu when `relu` (z where z > 0 or z is NaN, else 0). *nonfinite
 * (when not NULL) is set to 1 when a product before the bias holds NaN or an infinity. */
void mc_conv_small_forward(const mc_conv_small *cs, const float *x, size_t n, const float *w, const float *b,
                           int relu, float *dst, atomic_int *nonfinite);

/* dw (K, out.c) = the sum over the n samples and their output pixels of window^T @ g (g: n, out.h,
 * out.w, out.c), overwriting dw; with relu_out (the layer's relu output, like g) g is taken as 0
 * where relu_out is not > 0 (relu's derivative, g left as it is); db (may be NULL) receives the
 * sum of (that) g over the pixels, in order, as activations.c sums a bias gradient. */
void mc_conv_small_weight_grad(const mc_conv_small *cs, const float *x, const float *g, const float *relu_out,
                               size_t n, float *dw, float *db);

/* A MaxPooling2D on the layer's output whose windows tile it (stride = pool size, no padding, every
 * window inside; elements past the last window lie in none): its pool size, its output shape and,
 * at the first sample of the n given, its output and the gradient of that output. The layer's
 * out.w is at most MC_CONV_SMALL_POOLED_MAX_W (a row's routed gradient is kept on the stack). */
#define MC_CONV_SMALL_POOLED_MAX_W 128
typedef struct {
    size_t kh, kw, h, w;
    const float *out, *g;
} mc_conv_small_pool;

/* mc_conv_small_weight_grad with g the pooling's input gradient, made on the fly as its backward
 * (pool.c) makes it and never stored: each window's output gradient goes to the first of its
 * elements of y equal to its maximum (the first NaN when that is a NaN) as 0.0f + g, +0 goes to
 * the others and to the elements in no window. y is the layer's output (n, out.h, out.w, out.c);
 * with relu, relu's derivative is taken from it as above. The same bits as pool.c's backward
 * followed by mc_conv_small_weight_grad. */
void mc_conv_small_weight_grad_pooled(const mc_conv_small *cs, const float *x, const mc_conv_small_pool *pool,
                                      const float *y, int relu, size_t n, float *dw, float *db);

/* mc_conv_small_forward followed by the max pooling `pool` (its out and g unused) on each band of
 * pool->kh output rows, which stays in a stack buffer: only the pooled output dst (n, pool->h,
 * pool->w, out.c) is written, with the bits of the two layers one after the other (pool.c's
 * forward). Needs pool->kh * out.w * out.c <= MC_CONV_SMALL_POOLED_BAND. */
#define MC_CONV_SMALL_POOLED_BAND 8192
void mc_conv_small_forward_pooled(const mc_conv_small *cs, const float *x, size_t n, const float *w, const float *b,
                                  int relu, const mc_conv_small_pool *pool, float *dst, atomic_int *nonfinite);

/* A variant's kernels (conv_small_impl.h); NULL members where the build or CPU has none. */
typedef struct {
    void (*forward)(const mc_conv_small *cs, const float *x, size_t n, const float *w, const float *b, int relu,
                    float *dst, int *nonfinite);
    void (*weight_grad)(const mc_conv_small *cs, const float *x, const float *g, const float *relu_out, size_t n,
                        float *dw, float *db);
    void (*weight_grad_pooled)(const mc_conv_small *cs, const float *x, const mc_conv_small_pool *pool,
                               const float *y, int relu, size_t n, float *dw, float *db);
    void (*forward_pooled)(const mc_conv_small *cs, const float *x, size_t n, const float *w, const float *b,
                           int relu, const mc_conv_small_pool *pool, float *dst, int *nonfinite);
} mc_conv_small_kernels;

extern const mc_conv_small_kernels mc_conv_small_avx2, mc_conv_small_avx512;

#endif
