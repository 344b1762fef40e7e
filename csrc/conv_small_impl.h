/* The direct small-K convolution kernels (conv_small.h) on one vector width. Included by
 * conv_small_avx2.c and conv_small_avx512.c after they define:
 *   CS_(name)            the variant's name for a function
 *   CS_TGT               the target attribute of its functions
 *   CS_V, CS_LANES       the float vector type and its lanes
 *   CS_MASK, CS_LANE_MASK(n)   a lane mask type; the first min(n, CS_LANES) lanes
 *   CS_MLOAD(m, p)       load of the lanes in m (others 0; lanes outside m are not read)
 *   CS_MSTORE(p, m, v)   store of the lanes in m
 *   CS_FMA(a, b, c)      a*b + c rounded once
 *   CS_SET1(x), CS_ZERO(), CS_ADD(a, b)
 *   CS_RELU(z)           z where z > 0 or z is NaN, else +0
 *   CS_KEEP_POSITIVE(y, g)  g where y > 0, else +0 (relu's derivative applied to g)
 *   CS_HITS              the lane mask type compares give
 *   CS_HIT(v, m)         lanes where v == m or both are NaN (max pooling's pick)
 *   CS_KEEP(h, g), CS_DROP(h, g)   g in the lanes of h / not of h, +0 in the others
 *   CS_POOL_TAKE(m, v)   v where v > m or v is NaN, unless m is NaN; else m (max pooling's step)
 *   CS_MAX(a, b)         a where a > b, else b (vmaxps: b on ties and NaNs)
 *   CS_ABS(v)            |v|
 *   CS_ANY_NONFINITE(v, m)  nonzero when a lane of v in m is NaN or infinite
 *   CS_PIX               output pixels per forward step (independent chains per weight vector)
 *   CS_KB                window elements per weight-gradient pass (K x 2 vectors of sums)
 * Each pass covers 2 vectors of output channels. */
#include <math.h>
#include <string.h>

#define CS_INLINE static inline __attribute__((always_inline))

/* Output columns [lo, hi) whose windows' columns lie wholly inside the input. */
static void CS_(inside_cols)(const mc_layer *ly, size_t *lo, size_t *hi) {
    size_t a = (ly->pad_left + ly->stride_w - 1) / ly->stride_w;
    size_t b = ly->in.w + ly->pad_left >= ly->kernel_w ? (ly->in.w + ly->pad_left - ly->kernel_w) / ly->stride_w + 1 : 0;
    if (b > ly->out.w) b = ly->out.w;
    *lo = a < b ? a : b;
    *hi = b;
}

/* The window of output pixel (oy, ox) as K contiguous floats in im2col's order, zeros off the input. */
static void CS_(window_of)(float *tmp, const float *x, const mc_layer *ly, size_t oy, size_t ox) {
    size_t C = ly->in.c;
    ptrdiff_t iy0 = (ptrdiff_t)(oy * ly->stride_h) - (ptrdiff_t)ly->pad_top;
    ptrdiff_t ix0 = (ptrdiff_t)(ox * ly->stride_w) - (ptrdiff_t)ly->pad_left;
    for (size_t ky = 0; ky < ly->kernel_h; ky++)
        for (size_t kx = 0; kx < ly->kernel_w; kx++, tmp += C) {
            ptrdiff_t iy = iy0 + (ptrdiff_t)ky, ix = ix0 + (ptrdiff_t)kx;
            if (iy < 0 || iy >= (ptrdiff_t)ly->in.h || ix < 0 || ix >= (ptrdiff_t)ly->in.w) {
                for (size_t c = 0; c < C; c++) tmp[c] = 0.0f;
                continue;
            }
            const float *src = x + ((size_t)iy * ly->in.w + (size_t)ix) * C;
            for (size_t c = 0; c < C; c++) tmp[c] = src[c];
        }
}

/* The window of output pixel (oy, ox) for a whole-inside row and column: its first element. */
CS_INLINE const float *CS_(window_at)(const float *x, const mc_layer *ly, size_t oy, size_t ox) {
    size_t iy0 = oy * ly->stride_h - ly->pad_top, ix0 = ox * ly->stride_w - ly->pad_left;
    return x + (iy0 * ly->in.w + ix0) * ly->in.c;
}

/* acc[i][0], acc[i][1] = the fused multiply-add chains, over k in order from zero, of P output
 * pixels' window elements src[i][off[k]] with two vectors (lanes m0, m1) of w's row k at wj. */
CS_TGT CS_INLINE void CS_(chains)(const int P, const float *const *src, const ptrdiff_t *off, size_t K,
                                   const float *wj, size_t N, CS_MASK m0, CS_MASK m1, CS_V acc[CS_PIX][2]) {
#pragma GCC unroll 16
    for (int i = 0; i < P; i++) acc[i][0] = acc[i][1] = CS_ZERO();
    for (size_t k = 0; k < K; k++, wj += N) {
        CS_V w0 = CS_MLOAD(m0, wj), w1 = CS_MLOAD(m1, wj + CS_LANES);
        ptrdiff_t o = off[k];
#pragma GCC unroll 16
        for (int i = 0; i < P; i++) {
            CS_V a = CS_SET1(src[i][o]);
            acc[i][0] = CS_FMA(a, w0, acc[i][0]);
            acc[i][1] = CS_FMA(a, w1, acc[i][1]);
        }
    }
}

/* P output pixels (windows src[i], elements at src[i][off[k]]), all their output channels:
 * dst[i][j] = relu?(chain + b[j]). With `pooled`, the pixels are 2x2 windows of a max pooling
 * (src[4 q + 2 a + b] the pixel in row a, column b of window q) and dst[q] receives each window's
 * maximum as pool.c's forward takes it (from -inf, its elements in order); the maximum is taken
 * before the bias and relu, which then run once per window: both are monotone and rounding is, so
 * the value is the same (a NaN bias aside, whose payload may differ). `lean`: the sample is one
 * whose sums, and sums plus the bias, are all finite (sample_is_lean), so there is no NaN or
 * infinity to check for or keep: the maximum is vmaxps's, taken in reverse order (it keeps its
 * second operand on ties, as the rule keeps the first element), and relu is max(z, +0). */
CS_TGT CS_INLINE void CS_(pixels)(const int P, const int pooled, const int lean, const float *const *src,
                                   const ptrdiff_t *off, size_t K, const float *w, size_t N, const float *b, int relu,
                                   float *const *dst, int *bad) {
#define CS_ACTIVATE(z) (lean ? CS_MAX(z, CS_ZERO()) : CS_RELU(z))
    for (size_t j = 0; j < N; j += 2 * CS_LANES) {
        CS_MASK m0 = CS_LANE_MASK(N - j), m1 = N - j > CS_LANES ? CS_LANE_MASK(N - j - CS_LANES) : CS_LANE_MASK(0);
        CS_V acc[CS_PIX][2];
        CS_(chains)(P, src, off, K, w + j, N, m0, m1, acc);
        CS_V b0 = b ? CS_MLOAD(m0, b + j) : CS_ZERO(), b1 = b ? CS_MLOAD(m1, b + j + CS_LANES) : CS_ZERO();
        if (pooled) {
#pragma GCC unroll 16
            for (int q = 0; q < P / 4; q++) {
                const int i = 4 * q;
                CS_V max0, max1;
                if (lean) {
                    max0 = CS_MAX(CS_MAX(acc[i + 3][0], acc[i + 2][0]), CS_MAX(acc[i + 1][0], acc[i][0]));
                    max1 = CS_MAX(CS_MAX(acc[i + 3][1], acc[i + 2][1]), CS_MAX(acc[i + 1][1], acc[i][1]));
                } else {
                    max0 = max1 = CS_SET1(-INFINITY);
#pragma GCC unroll 4
                    for (int e = i; e < i + 4; e++) {
                        if (bad) *bad |= CS_ANY_NONFINITE(acc[e][0], m0) | CS_ANY_NONFINITE(acc[e][1], m1);
                        max0 = CS_POOL_TAKE(max0, acc[e][0]), max1 = CS_POOL_TAKE(max1, acc[e][1]);
                    }
                }
                if (b) max0 = CS_ADD(max0, b0), max1 = CS_ADD(max1, b1);
                if (relu) max0 = CS_ACTIVATE(max0), max1 = CS_ACTIVATE(max1);
                CS_MSTORE(dst[q] + j, m0, max0);
                CS_MSTORE(dst[q] + j + CS_LANES, m1, max1);
            }
            continue;
        }
#pragma GCC unroll 16
        for (int i = 0; i < P; i++) {
            CS_V z0 = acc[i][0], z1 = acc[i][1];
            if (bad && !lean) *bad |= CS_ANY_NONFINITE(z0, m0) | CS_ANY_NONFINITE(z1, m1);
            if (b) z0 = CS_ADD(z0, b0), z1 = CS_ADD(z1, b1);
            if (relu) z0 = CS_ACTIVATE(z0), z1 = CS_ACTIVATE(z1);
            CS_MSTORE(dst[i] + j, m0, z0);
            CS_MSTORE(dst[i] + j + CS_LANES, m1, z1);
        }
    }
#undef CS_ACTIVATE
}

/* The largest sum over k of |w[k][j]| (w K x N), or +inf when a bias is NaN or beyond 2^125 or a
 * sum beyond 2^125 or NaN (no sample is lean then). */
static double CS_(weight_bound)(const float *w, const float *b, size_t K, size_t N) {
    double worst = 0.0;
    for (size_t j = 0; j < N; j++) {
        double sum = 0.0;
        for (size_t k = 0; k < K; k++) sum += fabs((double)w[k * N + j]);
        if (!(sum <= 0x1p125) || (b && !(fabs((double)b[j]) <= 0x1p125))) return INFINITY;
        if (sum > worst) worst = sum;
    }
    return worst;
}

/* 1 when no sum of the sample x (n floats) with the weights of weight_bound `bound` can overflow or
 * be NaN, nor such a sum plus the bias: x finite and sum |x| * bound <= 2^125 (a sum's partial sums
 * stay below 2^127, 2^125 of bias on top below 2^128). */
CS_TGT static int CS_(sample_is_lean)(const float *x, size_t n, double bound) {
    CS_V sum = CS_ZERO();
    for (size_t i = 0; i < n; i += CS_LANES) sum = CS_ADD(sum, CS_ABS(CS_MLOAD(CS_LANE_MASK(n - i), x + i)));
    float lanes[CS_LANES];
    CS_MSTORE(lanes, CS_LANE_MASK(CS_LANES), sum);
    double total = 0.0;
    for (int l = 0; l < CS_LANES; l++) total += lanes[l];
    return total * bound <= 0x1p125;  /* false for NaN and infinities */
}

/* Pooled row py of one sample (x at the sample) into out, for a 2x2 pooling whose pixels all have
 * their windows inside the input (forward_pooled checks): CS_PIX / 4 windows per step. */
CS_TGT CS_INLINE void CS_(pooled_row)(const mc_conv_small *cs, const float *x, size_t py, size_t pw,
                                      const float *w, const float *b, int relu, float *out, int lean, int *bad) {
    const mc_layer *ly = cs->ly;
    size_t N = ly->out.c;
    const float *src[CS_PIX], *first = CS_(window_at)(x, ly, 2 * py, 0);
    float *d[CS_PIX / 4];
    /* pixel i of a step: row i / 2 % 2, column i % 2 of the step's window i / 4 */
    ptrdiff_t at[CS_PIX];
    for (int i = 0; i < CS_PIX; i++)
        at[i] = (ptrdiff_t)(((size_t)(i / 2 % 2) * ly->stride_h * ly->in.w + (size_t)(2 * (i / 4) + i % 2) * ly->stride_w) *
                            ly->in.c);
    size_t window = 2 * ly->stride_w * ly->in.c, px = 0;  /* floats from one window's first pixel to the next's */
    for (; px + CS_PIX / 4 <= pw; px += CS_PIX / 4, first += CS_PIX / 4 * window) {
        for (int i = 0; i < CS_PIX; i++) src[i] = first + at[i];
        for (int q = 0; q < CS_PIX / 4; q++) d[q] = out + (px + (size_t)q) * N;
        CS_(pixels)(CS_PIX, 1, lean, src, cs->off, cs->K, w, N, b, relu, d, bad);
    }
    for (; px < pw; px++, first += window) {
        for (int i = 0; i < 4; i++) src[i] = first + at[i];
        d[0] = out + px * N;
        CS_(pixels)(4, 1, lean, src, cs->off, cs->K, w, N, b, relu, d, bad);
    }
}

/* Row oy of one sample's output (x at the sample) into row. lo, hi: inside_cols; flat: 0..K-1. */
CS_TGT CS_INLINE void CS_(conv_row)(const mc_conv_small *cs, const float *x, size_t oy, const float *w,
                                    const float *b, int relu, float *row, int lean, int *bad, size_t lo, size_t hi,
                                    const ptrdiff_t *flat) {
    const mc_layer *ly = cs->ly;
    size_t N = ly->out.c, K = cs->K;
    float tmp[MC_CONV_SMALL_MAX_K];
    ptrdiff_t iy0 = (ptrdiff_t)(oy * ly->stride_h) - (ptrdiff_t)ly->pad_top;
    int rows_inside = iy0 >= 0 && (size_t)iy0 + ly->kernel_h <= ly->in.h;
    size_t ox = 0;
    while (ox < ly->out.w) {
        int inside = rows_inside && ox >= lo && ox < hi;
        if (inside && ox + CS_PIX <= hi) {
            const float *src[CS_PIX];
            float *d[CS_PIX];
            for (int i = 0; i < CS_PIX; i++) {
                src[i] = CS_(window_at)(x, ly, oy, ox + (size_t)i);
                d[i] = row + (ox + (size_t)i) * N;
            }
            CS_(pixels)(CS_PIX, 0, lean, src, cs->off, K, w, N, b, relu, d, bad);
            ox += CS_PIX;
            continue;
        }
        const float *src = tmp;
        if (inside) src = CS_(window_at)(x, ly, oy, ox);
        else CS_(window_of)(tmp, x, ly, oy, ox);
        float *d = row + ox * N;
        CS_(pixels)(1, 0, lean, &src, inside ? cs->off : flat, K, w, N, b, relu, &d, bad);
        ox++;
    }
}

CS_TGT static void CS_(forward)(const mc_conv_small *cs, const float *x, size_t n, const float *w, const float *b,
                                int relu, float *dst, int *nonfinite) {
    const mc_layer *ly = cs->ly;
    size_t lo, hi, row_n = ly->out.w * ly->out.c;
    CS_(inside_cols)(ly, &lo, &hi);
    ptrdiff_t flat[MC_CONV_SMALL_MAX_K];
    for (size_t k = 0; k < cs->K; k++) flat[k] = (ptrdiff_t)k;
    int found = 0, *bad = nonfinite ? &found : NULL;  /* the check only where it is asked for */
    double bound = CS_(weight_bound)(w, b, cs->K, ly->out.c);
    for (size_t s = 0; s < n; s++, x += ly->n_in) {
        int lean = CS_(sample_is_lean)(x, ly->n_in, bound);
        for (size_t oy = 0; oy < ly->out.h; oy++)
            CS_(conv_row)(cs, x, oy, w, b, relu, dst + (s * ly->out.h + oy) * row_n, lean, bad, lo, hi, flat);
    }
    if (found) *nonfinite = 1;
}

/* forward, then the max pooling p (its out and g unused) of each band of p->kh output rows, the band
 * kept in a stack buffer: only the pooled output (n, p->h, p->w, out.c) is written. Rows in no
 * window are not computed. The pooling is pool.c's forward: from -inf, each window's elements in
 * order, an element taken when it is larger or a NaN, unless a NaN was taken. */
CS_TGT static void CS_(forward_pooled)(const mc_conv_small *cs, const float *x, size_t n, const float *w,
                                       const float *b, int relu, const mc_conv_small_pool *p, float *dst,
                                       int *nonfinite) {
    const mc_layer *ly = cs->ly;
    size_t N = ly->out.c, lo, hi, row_n = ly->out.w * N;
    CS_(inside_cols)(ly, &lo, &hi);
    ptrdiff_t flat[MC_CONV_SMALL_MAX_K];
    for (size_t k = 0; k < cs->K; k++) flat[k] = (ptrdiff_t)k;
    float band[MC_CONV_SMALL_POOLED_BAND];
    int found = 0, *bad = nonfinite ? &found : NULL;
    /* 2x2 windows whose pixels' windows lie inside the input in the columns: pooled in registers */
    int pairs = p->kh == 2 && p->kw == 2 && lo == 0 && 2 * p->w <= hi;
    double bound = CS_(weight_bound)(w, b, cs->K, N);
    for (size_t s = 0; s < n; s++, x += ly->n_in) {
        int lean = CS_(sample_is_lean)(x, ly->n_in, bound);
        for (size_t py = 0; py < p->h; py++) {
            ptrdiff_t iy0 = (ptrdiff_t)(2 * py * ly->stride_h) - (ptrdiff_t)ly->pad_top;
            if (pairs && iy0 >= 0 && (size_t)iy0 + ly->stride_h + ly->kernel_h <= ly->in.h) {
                CS_(pooled_row)(cs, x, py, p->w, w, b, relu, dst + (s * p->h + py) * p->w * N, lean, bad);
                continue;
            }
            for (size_t a = 0; a < p->kh; a++)
                CS_(conv_row)(cs, x, py * p->kh + a, w, b, relu, band + a * row_n, lean, bad, lo, hi, flat);
            float *out = dst + (s * p->h + py) * p->w * N;
            for (size_t px = 0; px < p->w; px++, out += N) {
                for (size_t c = 0; c < N; c++) out[c] = -INFINITY;
                for (size_t a = 0; a < p->kh; a++)
                    for (size_t ix = px * p->kw; ix < (px + 1) * p->kw; ix++) {
                        const float *v = band + a * row_n + ix * N;
                        for (size_t c = 0; c < N; c++)
                            out[c] = (!(v[c] <= out[c]) & (out[c] == out[c])) ? v[c] : out[c];
                    }
            }
        }
    }
    if (found) *nonfinite = 1;
}

/* acc[kk][v] += window[k0 + kk] * g[v] for kk < kb (kb <= CS_KB). */
CS_TGT CS_INLINE void CS_(wgrad_step)(CS_V acc[CS_KB][2], const float *src, const ptrdiff_t *off, size_t k0,
                                      size_t kb, CS_V g0, CS_V g1) {
#pragma GCC unroll 32
    for (size_t kk = 0; kk < CS_KB; kk++) {
        if (kk >= kb) break;
        CS_V a = CS_SET1(src[off[k0 + kk]]);
        acc[kk][0] = CS_FMA(a, g0, acc[kk][0]);
        acc[kk][1] = CS_FMA(a, g1, acc[kk][1]);
    }
}

/* The gradient the pooling routes to row oy of one sample's y, channels j.. (ys, pout and pg at the
 * sample and at column j; vectors of lanes m0, m1) into grow (out.w x 2 vectors): pool.c's
 * backward, each window's elements in its order, `rest` carrying from one row of a window to the
 * next each window's gradient until an element takes it. */
CS_TGT CS_INLINE void CS_(route_row)(const mc_conv_small_pool *p, const float *ys, const float *pout,
                                     const float *pg, size_t W, size_t N, size_t oy, CS_MASK m0, CS_MASK m1,
                                     CS_V *rest, CS_V *grow) {
    size_t py = oy / p->kh, ay = oy - py * p->kh, covered = py < p->h ? p->w * p->kw : 0;
    const float *yrow = ys + oy * W * N;
    for (size_t px = 0; px < p->w && covered; px++) {
        size_t o = (py * p->w + px) * N;
        CS_V max0 = CS_MLOAD(m0, pout + o), max1 = CS_MLOAD(m1, pout + o + CS_LANES);
        CS_V r0 = ay ? rest[2 * px] : CS_MLOAD(m0, pg + o);
        CS_V r1 = ay ? rest[2 * px + 1] : CS_MLOAD(m1, pg + o + CS_LANES);
        for (size_t ox = px * p->kw; ox < (px + 1) * p->kw; ox++) {
            const float *v = yrow + ox * N;
            CS_HITS hit0 = CS_HIT(CS_MLOAD(m0, v), max0), hit1 = CS_HIT(CS_MLOAD(m1, v + CS_LANES), max1);
            grow[2 * ox] = CS_ADD(CS_ZERO(), CS_KEEP(hit0, r0));
            grow[2 * ox + 1] = CS_ADD(CS_ZERO(), CS_KEEP(hit1, r1));
            r0 = CS_DROP(hit0, r0);
            r1 = CS_DROP(hit1, r1);
        }
        rest[2 * px] = r0;
        rest[2 * px + 1] = r1;
    }
    for (size_t ox = covered; ox < W; ox++) grow[2 * ox] = grow[2 * ox + 1] = CS_ZERO();  /* in no window */
}

/* The weight gradient, g read from memory or (pooled) routed from the pooling above; relu's
 * derivative from y when relu. */
CS_TGT CS_INLINE void CS_(wgrad)(const mc_conv_small *cs, const float *x, const float *g, const float *y, int relu,
                                 const mc_conv_small_pool *pool, size_t n, float *dw, float *db, const int pooled) {
    const mc_layer *ly = cs->ly;
    size_t N = ly->out.c, lo, hi, K = cs->K, pix = ly->out.h * ly->out.w;
    CS_(inside_cols)(ly, &lo, &hi);
    ptrdiff_t flat[MC_CONV_SMALL_MAX_K];
    for (size_t k = 0; k < K; k++) flat[k] = (ptrdiff_t)k;
    float tmp[MC_CONV_SMALL_MAX_K];
    size_t pool_n = pooled ? pool->h * pool->w * N : 0;
    CS_V rest[2 * MC_CONV_SMALL_POOLED_MAX_W], grow[2 * MC_CONV_SMALL_POOLED_MAX_W];
    for (size_t j = 0; j < N; j += 2 * CS_LANES) {
        CS_MASK m0 = CS_LANE_MASK(N - j), m1 = N - j > CS_LANES ? CS_LANE_MASK(N - j - CS_LANES) : CS_LANE_MASK(0);
        for (size_t k0 = 0; k0 < K; k0 += CS_KB) {
            size_t kb = K - k0 < CS_KB ? K - k0 : CS_KB;
            CS_V acc[CS_KB][2], bias0 = CS_ZERO(), bias1 = CS_ZERO();
#pragma GCC unroll 32
            for (size_t kk = 0; kk < CS_KB; kk++) acc[kk][0] = acc[kk][1] = CS_ZERO();
            for (size_t s = 0; s < n; s++) {
                size_t e = s * pix * N + j;  /* the sample's first element of g at column j */
                const float *xs = x + s * ly->n_in;
                for (size_t oy = 0; oy < ly->out.h; oy++) {
                    ptrdiff_t iy0 = (ptrdiff_t)(oy * ly->stride_h) - (ptrdiff_t)ly->pad_top;
                    int rows_inside = iy0 >= 0 && (size_t)iy0 + ly->kernel_h <= ly->in.h;
                    if (pooled)
                        CS_(route_row)(pool, y + s * pix * N + j, pool->out + s * pool_n + j, pool->g + s * pool_n + j,
                                       ly->out.w, N, oy, m0, m1, rest, grow);
                    for (size_t ox = 0; ox < ly->out.w; ox++, e += N) {
                        CS_V g0, g1;
                        if (pooled)
                            g0 = grow[2 * ox], g1 = grow[2 * ox + 1];
                        else
                            g0 = CS_MLOAD(m0, g + e), g1 = CS_MLOAD(m1, g + e + CS_LANES);
                        if (relu) {
                            g0 = CS_KEEP_POSITIVE(CS_MLOAD(m0, y + e), g0);
                            g1 = CS_KEEP_POSITIVE(CS_MLOAD(m1, y + e + CS_LANES), g1);
                        }
                        if (db && k0 == 0) bias0 = CS_ADD(bias0, g0), bias1 = CS_ADD(bias1, g1);
                        if (rows_inside && ox >= lo && ox < hi) {
                            CS_(wgrad_step)(acc, CS_(window_at)(xs, ly, oy, ox), cs->off, k0, kb, g0, g1);
                        } else {
                            CS_(window_of)(tmp, xs, ly, oy, ox);
                            CS_(wgrad_step)(acc, tmp, flat, k0, kb, g0, g1);
                        }
                    }
                }
            }
            for (size_t kk = 0; kk < kb; kk++) {
                CS_MSTORE(dw + (k0 + kk) * N + j, m0, acc[kk][0]);
                CS_MSTORE(dw + (k0 + kk) * N + j + CS_LANES, m1, acc[kk][1]);
            }
            if (db && k0 == 0) {
                CS_MSTORE(db + j, m0, bias0);
                CS_MSTORE(db + j + CS_LANES, m1, bias1);
            }
        }
    }
}

CS_TGT static void CS_(weight_grad)(const mc_conv_small *cs, const float *x, const float *g, const float *relu_out,
                                    size_t n, float *dw, float *db) {
    CS_(wgrad)(cs, x, g, relu_out, relu_out != NULL, NULL, n, dw, db, 0);
}

CS_TGT static void CS_(weight_grad_pooled)(const mc_conv_small *cs, const float *x, const mc_conv_small_pool *pool,
                                           const float *y, int relu, size_t n, float *dw, float *db) {
    CS_(wgrad)(cs, x, NULL, y, relu, pool, n, dw, db, 1);
}

const mc_conv_small_kernels CS_(mc_conv_small) = {CS_(forward), CS_(weight_grad), CS_(weight_grad_pooled),
                                                  CS_(forward_pooled)};

#undef CS_INLINE
