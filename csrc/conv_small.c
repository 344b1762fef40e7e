/* Which direct small-K convolution kernels run (conv_small.h): those of the GEMM's kernel variant,
 * so that a forward product keeps the bits the im2col path gives with that variant. */
#include "conv_small.h"

#include "gemm.h"

static const mc_conv_small_kernels *kernels(void) {
    switch (mc_kernel_active()) {
    case MC_KERNEL_AVX512: return &mc_conv_small_avx512;
    case MC_KERNEL_AVX2: return &mc_conv_small_avx2;
    default: return NULL;
    }
}

int mc_conv_small_plan(const mc_layer *ly, mc_conv_small *cs) {
    const mc_conv_small_kernels *k = kernels();
    size_t K = ly->kernel_h * ly->kernel_w * ly->in.c;
    if (!k || !k->forward || K == 0 || K > MC_CONV_SMALL_MAX_K) return 0;
    cs->ly = ly;
    cs->K = K;
    size_t i = 0;
    for (size_t ky = 0; ky < ly->kernel_h; ky++)
        for (size_t kx = 0; kx < ly->kernel_w; kx++)
            for (size_t c = 0; c < ly->in.c; c++) cs->off[i++] = (ptrdiff_t)((ky * ly->in.w + kx) * ly->in.c + c);
    return 1;
}

void mc_conv_small_forward(const mc_conv_small *cs, const float *x, size_t n, const float *w, const float *b,
                           int relu, float *dst, atomic_int *nonfinite) {
    int bad = 0;
    kernels()->forward(cs, x, n, w, b, relu, dst, nonfinite ? &bad : NULL);
    if (bad) atomic_store_explicit(nonfinite, 1, memory_order_relaxed);
}

void mc_conv_small_weight_grad(const mc_conv_small *cs, const float *x, const float *g, const float *relu_out,
                               size_t n, float *dw, float *db) {
    kernels()->weight_grad(cs, x, g, relu_out, n, dw, db);
}

void mc_conv_small_weight_grad_pooled(const mc_conv_small *cs, const float *x, const mc_conv_small_pool *pool,
                                      const float *y, int relu, size_t n, float *dw, float *db) {
    kernels()->weight_grad_pooled(cs, x, pool, y, relu, n, dw, db);
}

void mc_conv_small_forward_pooled(const mc_conv_small *cs, const float *x, size_t n, const float *w, const float *b,
                                  int relu, const mc_conv_small_pool *pool, float *dst, atomic_int *nonfinite) {
    int bad = 0;
    kernels()->forward_pooled(cs, x, n, w, b, relu, pool, dst, nonfinite ? &bad : NULL);
    if (bad) atomic_store_explicit(nonfinite, 1, memory_order_relaxed);
}
