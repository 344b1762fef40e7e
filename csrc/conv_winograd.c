/* Winograd's F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks"):
 * for a 4x4 input patch d and a 3x3 kernel g, the 2x2 outputs are A^T [(G g G^T) . (B^T d B)] A
 * with
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * The 16 elements xi of the transformed patch each take one product over the channels: V[xi]
 * (tiles, C) @ U[xi] (C, N). Channels last makes every transform a loop over contiguous channels,
 * so the loops vectorize. */
#include "conv_winograd.h"

#include "gemm.h"

int mc_conv_wino_plan(const mc_layer *ly, mc_conv_wino *w) {
    if (ly->kernel_h != 3 || ly->kernel_w != 3 || ly->stride_h != 1 || ly->stride_w != 1 ||
        ly->in.c < MC_CONV_WINO_MIN_C || ly->out.c < MC_CONV_WINO_MIN_C)
        return 0;
    w->ly = ly;
    w->C = ly->in.c;
    w->N = ly->out.c;
    w->th = (ly->out.h + 1) / 2;
    w->tw = (ly->out.w + 1) / 2;
    w->tiles = w->th * w->tw;
    return 1;
}

/* [U (16, C, N)][C zeros][V (16, n * tiles, C)][M (16, n * tiles, N)] */
size_t mc_conv_wino_buffer(const mc_conv_wino *w, size_t n) {
    size_t u, t, cn, vm;
    if (!mc_mul_size(w->C, w->N, &u) || !mc_mul_size(u, 16, &u) || !mc_mul_size(n, w->tiles, &t) ||
        w->C > SIZE_MAX - w->N || !mc_mul_size(t, w->C + w->N, &cn) || !mc_mul_size(cn, 16, &vm) ||
        u > SIZE_MAX - w->C || u + w->C > SIZE_MAX - vm)
        return 0;
    return u + w->C + vm;
}

/* Row (a, b, c) of 3 through G's columns: (a, (a + b + c) / 2, (a - b + c) / 2, c) into o[0],
 * o[plane], o[2 plane], o[3 plane]; halving is exact. */
static inline __attribute__((always_inline)) void g_row(float *o, size_t plane, float a, float b, float c) {
    o[0] = a;
    o[plane] = 0.5f * (a + b + c);
    o[2 * plane] = 0.5f * (a - b + c);
    o[3 * plane] = c;
}

/* U[xi][c][n] = (G g G^T)[xi] for every input channel c and output channel n; g[a][b] is
 * kernel[((a * 3 + b) * C + c) * N + n]. */
MC_ALL_WIDTHS static void transform_kernel(float *restrict u, const float *restrict kernel, size_t C, size_t N) {
    size_t plane = C * N;
    for (size_t c = 0; c < C; c++) {
        const float *k = kernel + c * N;
        float *o = u + c * N;
#pragma GCC ivdep
        for (size_t n = 0; n < N; n++) {
            float g00 = k[n], g01 = k[plane + n], g02 = k[2 * plane + n];
            float g10 = k[3 * plane + n], g11 = k[4 * plane + n], g12 = k[5 * plane + n];
            float g20 = k[6 * plane + n], g21 = k[7 * plane + n], g22 = k[8 * plane + n];
            /* G g, then each of its 4 rows through G^T */
            g_row(o + n, plane, g00, g01, g02);
            g_row(o + 4 * plane + n, plane, 0.5f * (g00 + g10 + g20), 0.5f * (g01 + g11 + g21),
                  0.5f * (g02 + g12 + g22));
            g_row(o + 8 * plane + n, plane, 0.5f * (g00 - g10 + g20), 0.5f * (g01 - g11 + g21),
                  0.5f * (g02 - g12 + g22));
            g_row(o + 12 * plane + n, plane, g20, g21, g22);
        }
    }
}

/* Row (t0, t1, t2, t3) through B: (t0 - t2, t1 + t2, t2 - t1, t1 - t3) into o[0], o[plane], ... */
static inline __attribute__((always_inline)) void b_row(float *o, size_t plane, float t0, float t1, float t2,
                                                        float t3) {
    o[0] = t0 - t2;
    o[plane] = t1 + t2;
    o[2 * plane] = t2 - t1;
    o[3 * plane] = t1 - t3;
}

/* (B^T d B) of one tile's 4x4 patch (d[a * 4 + b] points at the channels of element (a, b)) into
 * o[xi * plane + c]. */
static inline __attribute__((always_inline)) void input_tile(float *restrict o, size_t plane, const float *const d[16],
                                                             size_t C) {
    const float *d00 = d[0], *d01 = d[1], *d02 = d[2], *d03 = d[3], *d10 = d[4], *d11 = d[5], *d12 = d[6],
                *d13 = d[7], *d20 = d[8], *d21 = d[9], *d22 = d[10], *d23 = d[11], *d30 = d[12], *d31 = d[13],
                *d32 = d[14], *d33 = d[15];
#pragma GCC ivdep
    for (size_t c = 0; c < C; c++) {
        /* B^T d, then each of its 4 rows through B */
        b_row(o + c, plane, d00[c] - d20[c], d01[c] - d21[c], d02[c] - d22[c], d03[c] - d23[c]);
        b_row(o + 4 * plane + c, plane, d10[c] + d20[c], d11[c] + d21[c], d12[c] + d22[c], d13[c] + d23[c]);
        b_row(o + 8 * plane + c, plane, d20[c] - d10[c], d21[c] - d11[c], d22[c] - d12[c], d23[c] - d13[c]);
        b_row(o + 12 * plane + c, plane, d10[c] - d30[c], d11[c] - d31[c], d12[c] - d32[c], d13[c] - d33[c]);
    }
}

/* V[xi][t][:] = (B^T d B)[xi] for the tiles of n samples x (tile t of sample s at index s * tiles
 * + t): d's rows and columns off the input (padding) read zeros. */
MC_ALL_WIDTHS static void transform_input(float *restrict v, const float *x, size_t n, const mc_conv_wino *w,
                                          const float *zeros) {
    const mc_layer *ly = w->ly;
    size_t C = w->C, H = ly->in.h, W = ly->in.w, plane = n * w->tiles * C;
    for (size_t s = 0; s < n; s++)
        for (size_t ty = 0; ty < w->th; ty++)
            for (size_t tx = 0; tx < w->tw; tx++) {
                const float *d[16];
                ptrdiff_t iy0 = (ptrdiff_t)(2 * ty) - (ptrdiff_t)ly->pad_top;
                ptrdiff_t ix0 = (ptrdiff_t)(2 * tx) - (ptrdiff_t)ly->pad_left;
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) {
                        ptrdiff_t iy = iy0 + a, ix = ix0 + b;
                        int inside = iy >= 0 && iy < (ptrdiff_t)H && ix >= 0 && ix < (ptrdiff_t)W;
                        d[a * 4 + b] = inside ? x + (s * H * W + (size_t)iy * W + (size_t)ix) * C : zeros;
                    }
                input_tile(v + ((s * w->th + ty) * w->tw + tx) * C, plane, d, C);
            }
}

/* Rows r00, r01 (the tile's top outputs) and r10, r11 of jn channels = A^T M A from the 16 planes
 * at q, then + bias and relu as activations.c has them (z > 0 or NaN stays, else 0). Inlined with
 * the flags constant. */
static inline __attribute__((always_inline)) void output_tile(float *r00, float *r01, float *r10, float *r11,
                                                              const float *restrict q, size_t plane, size_t jn,
                                                              const float *restrict bias, const int has_bias,
                                                              const int relu) {
#pragma GCC ivdep
    for (size_t j = 0; j < jn; j++) {
        float m00 = q[j], m01 = q[plane + j], m02 = q[2 * plane + j], m03 = q[3 * plane + j];
        float m10 = q[4 * plane + j], m11 = q[5 * plane + j], m12 = q[6 * plane + j], m13 = q[7 * plane + j];
        float m20 = q[8 * plane + j], m21 = q[9 * plane + j], m22 = q[10 * plane + j], m23 = q[11 * plane + j];
        float m30 = q[12 * plane + j], m31 = q[13 * plane + j], m32 = q[14 * plane + j], m33 = q[15 * plane + j];
        /* A^T M: rows t0, t1 */
        float t00 = m00 + m10 + m20, t01 = m01 + m11 + m21, t02 = m02 + m12 + m22, t03 = m03 + m13 + m23;
        float t10 = m10 - m20 - m30, t11 = m11 - m21 - m31, t12 = m12 - m22 - m32, t13 = m13 - m23 - m33;
        /* (A^T M) A */
        float z00 = t00 + t01 + t02, z01 = t01 - t02 - t03, z10 = t10 + t11 + t12, z11 = t11 - t12 - t13;
        if (has_bias) {
            float b = bias[j];
            z00 = z00 + b, z01 = z01 + b, z10 = z10 + b, z11 = z11 + b;
        }
        if (relu) {
            z00 = z00 > 0.0f || z00 != z00 ? z00 : 0.0f;
            z01 = z01 > 0.0f || z01 != z01 ? z01 : 0.0f;
            z10 = z10 > 0.0f || z10 != z10 ? z10 : 0.0f;
            z11 = z11 > 0.0f || z11 != z11 ? z11 : 0.0f;
        }
        r00[j] = z00, r01[j] = z01, r10[j] = z10, r11[j] = z11;
    }
}

/* dst's outputs of n samples = A^T M A per tile (+ bias, relu); a tile's outputs past the last row
 * or column (an odd out.h or out.w) are dropped. */
MC_ALL_WIDTHS static void transform_output(float *restrict dst, const float *restrict m, size_t n,
                                           const mc_conv_wino *w, const float *bias, int relu) {
    const mc_layer *ly = w->ly;
    size_t N = w->N, OH = ly->out.h, OW = ly->out.w, plane = n * w->tiles * N;
    float bin[2 * 256];  /* where an edge tile's missing column or row goes: the loop stays one */
    for (size_t s = 0; s < n; s++)
        for (size_t ty = 0; ty < w->th; ty++)
            for (size_t tx = 0; tx < w->tw; tx++) {
                const float *p = m + ((s * w->th + ty) * w->tw + tx) * N;
                size_t oy = 2 * ty, ox = 2 * tx;
                float *y0 = dst + ((s * OH + oy) * OW + ox) * N;
                int right = ox + 1 < OW, below = oy + 1 < OH;
                for (size_t j0 = 0; j0 < N; j0 += 256) {
                    size_t jn = N - j0 < 256 ? N - j0 : 256;
                    float *r00 = y0 + j0, *r01 = right ? y0 + N + j0 : bin;
                    float *r10 = below ? y0 + OW * N + j0 : bin;
                    float *r11 = right && below ? y0 + (OW + 1) * N + j0 : bin + 256;
                    const float *b = bias ? bias + j0 : NULL;
                    if (b && relu) output_tile(r00, r01, r10, r11, p + j0, plane, jn, b, 1, 1);
                    else if (b) output_tile(r00, r01, r10, r11, p + j0, plane, jn, b, 1, 0);
                    else if (relu) output_tile(r00, r01, r10, r11, p + j0, plane, jn, NULL, 0, 1);
                    else output_tile(r00, r01, r10, r11, p + j0, plane, jn, NULL, 0, 0);
                }
            }
}

void mc_conv_wino_forward(const mc_conv_wino *w, const float *x, size_t n, const float *kernel, const float *bias,
                          int relu, float *dst, size_t batch_rows, size_t block, float *buf) {
    size_t C = w->C, N = w->N;
    float *u = buf, *zeros = u + 16 * C * N, *v = zeros + C;
    transform_kernel(u, kernel, C, N);
    for (size_t c = 0; c < C; c++) zeros[c] = 0.0f;
    mc_gemm_rows_plan rp = {batch_rows * w->tiles, 0, 0};
    size_t in = w->ly->n_in, out = w->ly->n_out;
    for (size_t s = 0; s < n; s += block) {
        size_t b = n - s < block ? n - s : block, T = b * w->tiles;
        float *m = v + 16 * T * C;
        transform_input(v, x + s * in, b, w, zeros);
        for (size_t xi = 0; xi < 16; xi++)
            mc_gemm_rows(&rp, 0, 0, T, N, C, 1.0f, v + xi * T * C, C, u + xi * C * N, N, 0.0f, m + xi * T * N, N,
                         NULL);
        transform_output(dst + s * out, m, b, w, bias, relu);
    }
}
