/* The forward product of a 3x3, stride-1 Conv2D with enough channels as Winograd's F(m x m, 3x3):
 * each m x m block of output pixels (a tile) from the (m + 2)^2 input patch under it, in (m + 2)^2
 * products of (tiles, in.c) @ (in.c, out.c) instead of m^2 * 9 of im2col's: F(2x2, 3x3) 2.25 times
 * fewer multiplications, F(4x4, 3x3) 4 times fewer with looser sums (its input transform scales by
 * up to 100, its output transform by 8, its kernel's by sixths). Training takes F(2x2), so that
 * its gradients stay as close to the exact ones; inference takes the one that runs fewer products
 * on the layer's output. The transforms run in a fixed order at every vector width, and the
 * products are mc_gemm_rows blocks of the whole batch's, so an output gets the same bits whichever
 * block or thread computes it. They are not im2col's bits: the sums are grouped differently. */
#ifndef MC_CONV_WINOGRAD_H
#define MC_CONV_WINOGRAD_H

#include <stddef.h>

#include "layer.h"

/* Fewest input and output channels that take it: the products need some length to gain (not
 * tuned; the convnet's 32 -> 64 gains, bench/RESULTS.md). */
#define MC_CONV_WINO_MIN_C 16

typedef struct {
    const mc_layer *ly;
    size_t C, N;           /* in.c, out.c */
    size_t m, planes;      /* outputs per tile side (2 or 4), and (m + 2)^2 */
    size_t th, tw, tiles;  /* tile rows and columns of a sample's output, and their product */
} mc_conv_wino;

/* 1 with *w filled when ly is a 3x3, stride-1 conv with at least MC_CONV_WINO_MIN_C input and
 * output channels, 0 otherwise. m is 2, or 4 in inference where F(4x4) runs fewer products. */
int mc_conv_wino_plan(const mc_layer *ly, int inference, mc_conv_wino *w);

/* Floats of work buffer a call on `n` samples needs (mc_conv_wino_forward's buf), or 0 when the
 * count overflows. */
size_t mc_conv_wino_buffer(const mc_conv_wino *w, size_t n);

/* Floats of the transformed kernel U (planes, C, N), and U made from kernel (3, 3, in.c, out.c). */
size_t mc_conv_wino_kernel_floats(const mc_conv_wino *w);
void mc_conv_wino_kernel(const mc_conv_wino *w, const float *kernel, float *u);

/* A 2x2 max pooling with stride 2 and no padding on the conv's output, its rows and columns (at
 * most out.h / 2, out.w / 2): taken in the output transform, the conv's output never written. */
typedef struct {
    size_t h, w;
} mc_conv_wino_pool;

/* dst (n, out.h, out.w, out.c) = the conv of n samples of x (n, in.h, in.w, in.c) with kernel
 * (3, 3, in.c, out.c), + bias (when not NULL), then relu (when `relu`), with the bits of adding the
 * bias and applying relu as activations.c does; the products planned as blocks of a batch of
 * batch_rows samples. With pool (else NULL), dst is the pooling's output (n, pool->h, pool->w,
 * out.c), with the bits of pool.c's forward on the conv's (a NaN bias's payload aside). u: the
 * kernel's mc_conv_wino_kernel, or NULL to make it in buf. buf: mc_conv_wino_buffer(w, block)
 * floats, block <= n samples being transformed at a time. */
void mc_conv_wino_forward(const mc_conv_wino *w, const float *x, size_t n, const float *kernel, const float *u,
                          const float *bias, int relu, const mc_conv_wino_pool *pool, float *dst, size_t batch_rows,
                          size_t block, float *buf);

#endif
