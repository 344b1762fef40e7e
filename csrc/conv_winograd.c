/* Winograd's minimal filtering (Lavin and Gray, "Fast Algorithms for Convolutional Neural
 * Networks"): for an (m + 2) x (m + 2) input patch d and a 3x3 kernel g, the m x m outputs are
 * A^T [(G g G^T) . (B^T d B)] A. F(2x2, 3x3) has
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1];
 * F(4x4, 3x3) (points 0, 1, -1, 2, -2)
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
 *   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1].
 * The (m + 2)^2 elements xi of the transformed patch each take one product over the channels:
 * V[xi] (tiles, C) @ U[xi] (C, N). Channels last makes every transform a loop over contiguous
 * channels, so the loops vectorize. The input and output transforms multiply by powers of two
 * only, so each product is exact and contracting it into a fused multiply-add changes nothing. */
#include "conv_winograd.h"

#include "gemm.h"

/* M(0); .. M(5); and M(0); .. M(3);: the transforms' rows and columns written out, so that each
 * channel loop is one straight block the compiler vectorizes */
#define MC_WINO_EACH4(M) M(0); M(1); M(2); M(3)
#define MC_WINO_EACH6(M) MC_WINO_EACH4(M); M(4); M(5)

/* Products a layer's output takes in tiles of m x m outputs: (m + 2)^2 per tile. */
static size_t products(const mc_layer *ly, size_t m) {
    return (ly->out.h + m - 1) / m * ((ly->out.w + m - 1) / m) * (m + 2) * (m + 2);
}

int mc_conv_wino_plan(const mc_layer *ly, int inference, mc_conv_wino *w) {
    if (ly->kernel_h != 3 || ly->kernel_w != 3 || ly->stride_h != 1 || ly->stride_w != 1 ||
        ly->in.c < MC_CONV_WINO_MIN_C || ly->out.c < MC_CONV_WINO_MIN_C)
        return 0;
    w->ly = ly;
    w->C = ly->in.c;
    w->N = ly->out.c;
    /* F(2x2)'s sums are closer to the exact ones: training keeps it, and inference on a tie */
    w->m = inference && products(ly, 4) < products(ly, 2) ? 4 : 2;
    w->planes = (w->m + 2) * (w->m + 2);
    w->th = (ly->out.h + w->m - 1) / w->m;
    w->tw = (ly->out.w + w->m - 1) / w->m;
    w->tiles = w->th * w->tw;
    return 1;
}

/* [U (planes, C, N)][C zeros][V (planes, n * tiles, C)][M (planes, n * tiles, N)] */
size_t mc_conv_wino_buffer(const mc_conv_wino *w, size_t n) {
    size_t u, t, cn, vm;
    if (!mc_mul_size(w->C, w->N, &u) || !mc_mul_size(u, w->planes, &u) || !mc_mul_size(n, w->tiles, &t) ||
        w->C > SIZE_MAX - w->N || !mc_mul_size(t, w->C + w->N, &cn) || !mc_mul_size(cn, w->planes, &vm) ||
        u > SIZE_MAX - w->C || u + w->C > SIZE_MAX - vm)
        return 0;
    return u + w->C + vm;
}

/* --- F(2x2, 3x3) --- */

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
MC_ALL_WIDTHS static void kernel2(float *restrict u, const float *restrict kernel, size_t C, size_t N) {
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
static inline __attribute__((always_inline)) void input_tile2(float *restrict o, size_t plane, const float *const *d,
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

/* + bias (when has_bias), then relu as activations.c has it (z > 0 or NaN stays, else 0). */
static inline __attribute__((always_inline)) float finish(float z, float b, const int has_bias, const int relu) {
    if (has_bias) z = z + b;
    if (relu) z = z > 0.0f || z != z ? z : 0.0f;
    return z;
}

/* The maximum of a 2x2 pooling window's elements in its order as pool.c's forward takes it (from
 * -inf, an element taken when larger or a NaN, unless a NaN was taken: the first NaN, else the
 * first largest), then finish(): max pooling commutes with the bias and relu, both monotone as
 * rounding is (a NaN bias's payload aside). Written as plain selects, which vectorize. */
static inline __attribute__((always_inline)) float pooled(float a, float b, float c, float d, float bias,
                                                          const int has_bias, const int relu) {
    float m = a;
    m = b > m ? b : m;
    m = c > m ? c : m;
    m = d > m ? d : m;
    m = d != d ? d : m;
    m = c != c ? c : m;
    m = b != b ? b : m;
    m = a != a ? a : m;
    return finish(m, bias, has_bias, relu);
}

/* Outputs r[0], r[1] (the tile's top row) and r[2], r[3] of jn channels = A^T M A from the 16
 * planes at q, + bias, relu; with `pool`, their pooled maximum to r[0] instead. */
static inline __attribute__((always_inline)) void output_tile2(float *const *r, const float *restrict q, size_t plane,
                                                               size_t jn, const float *restrict bias,
                                                               const int has_bias, const int relu, const int pool) {
    float *r00 = r[0], *r01 = r[1], *r10 = r[2], *r11 = r[3];
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
        float b = has_bias ? bias[j] : 0.0f;
        float z00 = t00 + t01 + t02, z01 = t01 - t02 - t03, z10 = t10 + t11 + t12, z11 = t11 - t12 - t13;
        if (pool) {
            r00[j] = pooled(z00, z01, z10, z11, b, has_bias, relu);
        } else {
            r00[j] = finish(z00, b, has_bias, relu);
            r01[j] = finish(z01, b, has_bias, relu);
            r10[j] = finish(z10, b, has_bias, relu);
            r11[j] = finish(z11, b, has_bias, relu);
        }
    }
}

/* --- F(4x4, 3x3) --- */

/* (a, b, c) through G into r[0 .. 5]. */
static inline __attribute__((always_inline)) void g6(double r[6], double a, double b, double c) {
    r[0] = a * 0.25;
    r[1] = (a + b + c) * (-1.0 / 6);
    r[2] = (a - b + c) * (-1.0 / 6);
    r[3] = a * (1.0 / 24) + b * (1.0 / 12) + c * (1.0 / 6);
    r[4] = a * (1.0 / 24) - b * (1.0 / 12) + c * (1.0 / 6);
    r[5] = c;
}

/* U[xi][c][n] = (G g G^T)[xi] as kernel2 has it, in double and rounded once: G's sixths are not
 * exact in float. */
MC_ALL_WIDTHS static void kernel4(float *restrict u, const float *restrict kernel, size_t C, size_t N) {
    size_t plane = C * N;
    for (size_t c = 0; c < C; c++) {
        const float *k = kernel + c * N;
        float *o = u + c * N;
#pragma GCC ivdep
        for (size_t n = 0; n < N; n++) {
            /* G g, a column at a time: t<b>[a] is its element (a, b) */
            double t0[6], t1[6], t2[6];
            g6(t0, k[n], k[3 * plane + n], k[6 * plane + n]);
            g6(t1, k[plane + n], k[4 * plane + n], k[7 * plane + n]);
            g6(t2, k[2 * plane + n], k[5 * plane + n], k[8 * plane + n]);
            /* each of its rows through G^T */
#define MC_WINO_ROW(a)                                                                                           \
    do {                                                                                                         \
        double r[6];                                                                                             \
        float *oa = o + (a) * 6 * plane + n;                                                                     \
        g6(r, t0[a], t1[a], t2[a]);                                                                              \
        oa[0] = (float)r[0], oa[plane] = (float)r[1], oa[2 * plane] = (float)r[2], oa[3 * plane] = (float)r[3];  \
        oa[4 * plane] = (float)r[4], oa[5 * plane] = (float)r[5];                                                \
    } while (0)
            MC_WINO_EACH6(MC_WINO_ROW);
#undef MC_WINO_ROW
        }
    }
}

/* (d0 .. d5) through B^T into r[0 .. 5], as sums of exact products (4 and 5 as 4 + 1). */
static inline __attribute__((always_inline)) void b6(float r[6], float d0, float d1, float d2, float d3, float d4,
                                                     float d5) {
    r[0] = 4.0f * (d0 - d2) + (d4 - d2);
    r[1] = (d3 + d4) - 4.0f * (d1 + d2);
    r[2] = (d4 - d3) + 4.0f * (d1 - d2);
    r[3] = (d4 - d2) + 2.0f * (d3 - d1);
    r[4] = (d4 - d2) - 2.0f * (d3 - d1);
    r[5] = 4.0f * (d1 - d3) + (d5 - d3);
}

/* (B^T d B) of one tile's 6x6 patch (d[a * 6 + b] points at the channels of element (a, b)) into
 * o[xi * plane + c]. */
static inline __attribute__((always_inline)) void input_tile4(float *restrict o, size_t plane, const float *const *d,
                                                              size_t C) {
#pragma GCC ivdep
    for (size_t c = 0; c < C; c++) {
        /* B^T d, a column at a time: t<b>[a] is its element (a, b) */
        float t0[6], t1[6], t2[6], t3[6], t4[6], t5[6];
#define MC_WINO_COL(b) b6(t##b, d[b][c], d[6 + b][c], d[12 + b][c], d[18 + b][c], d[24 + b][c], d[30 + b][c])
        MC_WINO_EACH6(MC_WINO_COL);
#undef MC_WINO_COL
        /* each of its rows through B */
#define MC_WINO_ROW(a)                                                                                           \
    do {                                                                                                         \
        float r[6], *oa = o + (a) * 6 * plane + c;                                                               \
        b6(r, t0[a], t1[a], t2[a], t3[a], t4[a], t5[a]);                                                         \
        oa[0] = r[0], oa[plane] = r[1], oa[2 * plane] = r[2], oa[3 * plane] = r[3], oa[4 * plane] = r[4];        \
        oa[5 * plane] = r[5];                                                                                    \
    } while (0)
        MC_WINO_EACH6(MC_WINO_ROW);
#undef MC_WINO_ROW
    }
}

/* (m0 .. m5) through A^T into r[0 .. 3]. */
static inline __attribute__((always_inline)) void a6(float r[4], float m0, float m1, float m2, float m3, float m4,
                                                     float m5) {
    float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
    r[0] = m0 + s12 + s34;
    r[1] = d12 + 2.0f * d34;
    r[2] = s12 + 4.0f * s34;
    r[3] = d12 + 8.0f * d34 + m5;
}

/* Outputs r[a * 4 + b] (row a, column b of the tile) of jn channels = A^T M A from the 36 planes
 * at q, + bias, relu; with `pool`, the maxima of its 2x2 windows to r[wa * 2 + wb] instead. */
static inline __attribute__((always_inline)) void output_tile4(float *const *r, const float *restrict q, size_t plane,
                                                               size_t jn, const float *restrict bias,
                                                               const int has_bias, const int relu, const int pool) {
#pragma GCC ivdep
    for (size_t j = 0; j < jn; j++) {
        /* A^T M, a column at a time: t<b>[a] is its element (a, b) */
        float t0[4], t1[4], t2[4], t3[4], t4[4], t5[4];
        const float *qj = q + j;
#define MC_WINO_COL(b)                                                                                           \
    a6(t##b, qj[(b) * plane], qj[(6 + b) * plane], qj[(12 + b) * plane], qj[(18 + b) * plane],                   \
       qj[(24 + b) * plane], qj[(30 + b) * plane])
        MC_WINO_EACH6(MC_WINO_COL);
#undef MC_WINO_COL
        float b = has_bias ? bias[j] : 0.0f;
        if (pool) {
            float z0[4], z1[4], z2[4], z3[4];
            a6(z0, t0[0], t1[0], t2[0], t3[0], t4[0], t5[0]);
            a6(z1, t0[1], t1[1], t2[1], t3[1], t4[1], t5[1]);
            a6(z2, t0[2], t1[2], t2[2], t3[2], t4[2], t5[2]);
            a6(z3, t0[3], t1[3], t2[3], t3[3], t4[3], t5[3]);
            r[0][j] = pooled(z0[0], z0[1], z1[0], z1[1], b, has_bias, relu);
            r[1][j] = pooled(z0[2], z0[3], z1[2], z1[3], b, has_bias, relu);
            r[2][j] = pooled(z2[0], z2[1], z3[0], z3[1], b, has_bias, relu);
            r[3][j] = pooled(z2[2], z2[3], z3[2], z3[3], b, has_bias, relu);
        } else {
            /* each of its rows through A */
#define MC_WINO_ROW(a)                                                                                           \
    do {                                                                                                         \
        float z[4];                                                                                              \
        a6(z, t0[a], t1[a], t2[a], t3[a], t4[a], t5[a]);                                                         \
        r[(a) * 4][j] = finish(z[0], b, has_bias, relu), r[(a) * 4 + 1][j] = finish(z[1], b, has_bias, relu);    \
        r[(a) * 4 + 2][j] = finish(z[2], b, has_bias, relu), r[(a) * 4 + 3][j] = finish(z[3], b, has_bias, relu); \
    } while (0)
            MC_WINO_EACH4(MC_WINO_ROW);
#undef MC_WINO_ROW
        }
    }
}

/* --- both --- */

/* V[xi][t][:] = (B^T d B)[xi] for the tiles of n samples x (tile t of sample s at index s * tiles
 * + t): d's rows and columns off the input (padding) read zeros. */
MC_ALL_WIDTHS static void transform_input(float *restrict v, const float *x, size_t n, const mc_conv_wino *w,
                                          const float *zeros) {
    const mc_layer *ly = w->ly;
    size_t C = w->C, H = ly->in.h, W = ly->in.w, m = w->m, a = m + 2, plane = n * w->tiles * C;
    for (size_t s = 0; s < n; s++)
        for (size_t ty = 0; ty < w->th; ty++)
            for (size_t tx = 0; tx < w->tw; tx++) {
                const float *d[36];
                ptrdiff_t iy0 = (ptrdiff_t)(m * ty) - (ptrdiff_t)ly->pad_top;
                ptrdiff_t ix0 = (ptrdiff_t)(m * tx) - (ptrdiff_t)ly->pad_left;
                for (size_t i = 0; i < a; i++)
                    for (size_t k = 0; k < a; k++) {
                        ptrdiff_t iy = iy0 + (ptrdiff_t)i, ix = ix0 + (ptrdiff_t)k;
                        int inside = iy >= 0 && iy < (ptrdiff_t)H && ix >= 0 && ix < (ptrdiff_t)W;
                        d[i * a + k] = inside ? x + (s * H * W + (size_t)iy * W + (size_t)ix) * C : zeros;
                    }
                float *o = v + ((s * w->th + ty) * w->tw + tx) * C;
                if (m == 4) input_tile4(o, plane, d, C);
                else input_tile2(o, plane, d, C);
            }
}

/* One tile's outputs (or pooled outputs) at r, of channels [j0, j0 + jn), with the flags constant
 * in each call. */
static inline __attribute__((always_inline)) void output_tile(size_t m, float *const *r, const float *q, size_t plane,
                                                              size_t jn, const float *bias, int relu, int pool) {
#define MC_WINO_TILE(hb, rl, pl)                                                                                 \
    (m == 4 ? output_tile4(r, q, plane, jn, bias, hb, rl, pl) : output_tile2(r, q, plane, jn, bias, hb, rl, pl))
#define MC_WINO_POOL(hb, rl)                                                                                     \
    (pool ? MC_WINO_TILE(hb, rl, 1) : MC_WINO_TILE(hb, rl, 0))
    if (bias && relu) MC_WINO_POOL(1, 1);
    else if (bias) MC_WINO_POOL(1, 0);
    else if (relu) MC_WINO_POOL(0, 1);
    else MC_WINO_POOL(0, 0);
#undef MC_WINO_POOL
#undef MC_WINO_TILE
}

/* dst's outputs of n samples = A^T M A per tile (+ bias, relu); a tile's outputs past the last row
 * or column (out.h or out.w not a multiple of m) are dropped. With pool, dst holds the pooled
 * outputs (n, pool->h, pool->w, N) instead, windows past those rows and columns dropped. */
MC_ALL_WIDTHS static void transform_output(float *restrict dst, const float *restrict mm, size_t n,
                                           const mc_conv_wino *w, const float *bias, int relu,
                                           const mc_conv_wino_pool *pool) {
    const mc_layer *ly = w->ly;
    size_t N = w->N, OH = ly->out.h, OW = ly->out.w, m = w->m, plane = n * w->tiles * N;
    if (pool) OH = pool->h, OW = pool->w;
    size_t rm = pool ? m / 2 : m;  /* outputs (pooled or not) per tile side */
    float bin[256];  /* where an edge tile's missing outputs go: the loop stays one */
    for (size_t s = 0; s < n; s++)
        for (size_t ty = 0; ty < w->th; ty++)
            for (size_t tx = 0; tx < w->tw; tx++) {
                const float *p = mm + ((s * w->th + ty) * w->tw + tx) * N;
                size_t oy = rm * ty, ox = rm * tx;
                for (size_t j0 = 0; j0 < N; j0 += 256) {
                    size_t jn = N - j0 < 256 ? N - j0 : 256;
                    float *r[16];
                    for (size_t i = 0; i < rm; i++)
                        for (size_t k = 0; k < rm; k++)
                            r[i * rm + k] = oy + i < OH && ox + k < OW
                                                ? dst + ((s * OH + oy + i) * OW + ox + k) * N + j0
                                                : bin;
                    output_tile(m, r, p + j0, plane, jn, bias ? bias + j0 : NULL, relu, pool != NULL);
                }
            }
}

size_t mc_conv_wino_kernel_floats(const mc_conv_wino *w) { return w->planes * w->C * w->N; }

void mc_conv_wino_kernel(const mc_conv_wino *w, const float *kernel, float *u) {
    if (w->m == 4) kernel4(u, kernel, w->C, w->N);
    else kernel2(u, kernel, w->C, w->N);
}

void mc_conv_wino_forward(const mc_conv_wino *w, const float *x, size_t n, const float *kernel, const float *u,
                          const float *bias, int relu, const mc_conv_wino_pool *pool, float *dst, size_t batch_rows,
                          size_t block, float *buf) {
    size_t C = w->C, N = w->N, planes = w->planes;
    float *zeros = buf + mc_conv_wino_kernel_floats(w), *v = zeros + C;
    if (!u) {
        mc_conv_wino_kernel(w, kernel, buf);
        u = buf;
    }
    for (size_t c = 0; c < C; c++) zeros[c] = 0.0f;
    mc_gemm_rows_plan rp = {batch_rows * w->tiles, 0, 0};
    size_t in = w->ly->n_in, out = pool ? pool->h * pool->w * N : w->ly->n_out;
    for (size_t s = 0; s < n; s += block) {
        size_t b = n - s < block ? n - s : block, T = b * w->tiles;
        float *m = v + planes * T * C;
        transform_input(v, x + s * in, b, w, zeros);
        for (size_t xi = 0; xi < planes; xi++)
            mc_gemm_rows(&rp, 0, 0, T, N, C, 1.0f, v + xi * T * C, C, u + xi * C * N, N, 0.0f, m + xi * T * N, N,
                         NULL);
        transform_output(dst + s * out, m, b, w, bias, relu, pool);
    }
}
