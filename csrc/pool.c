/* MaxPooling2D, AveragePooling2D and GlobalAveragePooling2D, channels last. Each sample is done on
 * its own (ranges of samples over the pool for a whole batch), by output pixel, then window pixel,
 * then channel: the inner loops run over in.c contiguous floats. "same" padding adds no elements:
 * a window covers the part of it inside the input, and the average divides by that part's size. */
#include <math.h>
#include <string.h>

#include "activations.h"
#include "layer.h"

/* the input rows (or columns) [lo, hi) under output row o */
typedef struct {
    size_t lo, hi;
} span;

static span span_of(size_t o, size_t k, size_t s, size_t pad, size_t n) {
    ptrdiff_t start = (ptrdiff_t)(o * s) - (ptrdiff_t)pad, end = start + (ptrdiff_t)k;
    span r = {start < 0 ? 0 : (size_t)start, end > (ptrdiff_t)n ? n : (size_t)end};
    return r;
}

static mc_status check_pool(mc_layer *ly, size_t l, const char *what, int windowed, mc_error *err) {
    if (windowed) {
        mc_status st = mc_window_check(ly, l, what, err);
        if (st != MC_OK) return st;
    } else if (ly->out.h != 1 || ly->out.w != 1) {
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: %s output must be (1, 1, %zu), found (%zu, %zu, %zu)", l,
                            what, ly->in.c, ly->out.h, ly->out.w, ly->out.c);
    }
    if (ly->out.c != ly->in.c)
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: %s keeps the %zu channels of its input, found %zu", l, what,
                            ly->in.c, ly->out.c);
    if (ly->activation != MC_ACT_LINEAR)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: %s has no activation (code %d), found code %d", l, what,
                            MC_ACT_LINEAR, ly->activation);
    for (size_t i = 0; i < MC_MAX_WEIGHTS; i++)
        if (ly->w[i].off >= 0)
            return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: %s has no weights, found weight %zu at offset %td", l,
                                what, i, ly->w[i].off);
    ly->n_weights = 0;
    return MC_OK;
}

typedef struct {
    const mc_layer *ly;
    float *out;
    const float *x;
    float *dinp;
    float *dout;
} pool_job;

static size_t no_scratch(const mc_layer *ly) {
    (void)ly;
    return 0;
}

/* --- MaxPooling2D --- */

/* Its range functions are compiled also for AVX2 and AVX-512 and picked at load time, as scan.c's
 * loop is (their helpers are inlined, so compiled with them): compares, selects and 0.0f + g only,
 * so every width gives the same bits. */

/* Forward keeps only the maxima; backward finds again where each came from, comparing its window
 * with it in the same order. Nothing is kept between the two, and forward is a plain max that
 * vectorizes. The first maximum wins; a NaN wins over numbers and stays (the first NaN): backward
 * picks the first element equal to the output, or the first NaN when the output is one, which is
 * the element forward took. */

/* the larger of best and v, the first of equals, NaN winning over numbers: v when it is larger or
 * a NaN (not v <= best), unless best is already a NaN */
static inline float max_keep_nan(float best, float v) {
    return (!(v <= best) & (best == best)) ? v : best;
}

/* One output pixel's C channels from the window rows ys and columns xs. Starting from -inf takes
 * the first element as it is (a NaN, a -0, or -inf itself) without a copy, which would be a
 * library call per pixel. */
static inline __attribute__((always_inline)) void max_window(float *restrict out, const float *restrict x, size_t W,
                                                             size_t C, span ys, span xs) {
    for (size_t c = 0; c < C; c++) out[c] = -INFINITY;
    for (size_t iy = ys.lo; iy < ys.hi; iy++)
        for (size_t ix = xs.lo; ix < xs.hi; ix++) {
            const float *v = x + (iy * W + ix) * C;
            for (size_t c = 0; c < C; c++) out[c] = max_keep_nan(out[c], v[c]);
        }
}

MC_ALL_WIDTHS static void max_forward_range(void *ctx, size_t s0, size_t s1) {
    const pool_job *j = ctx;
    const mc_layer *ly = j->ly;
    size_t C = ly->in.c, W = ly->in.w;
    for (size_t s = s0; s < s1; s++) {
        const float *x = j->x + s * ly->n_in;
        float *out = j->out + s * ly->n_out;
        for (size_t oy = 0; oy < ly->out.h; oy++) {
            span ys = span_of(oy, ly->kernel_h, ly->stride_h, ly->pad_top, ly->in.h);
            for (size_t ox = 0; ox < ly->out.w; ox++)
                max_window(out + (oy * ly->out.w + ox) * C, x, W, C, ys,
                           span_of(ox, ly->kernel_w, ly->stride_w, ly->pad_left, W));
        }
    }
}

/* The last rows or columns of an input the kernel does not divide lie in no window. */
int mc_pool_windows_tile(const mc_layer *ly) {
    return ly->stride_h == ly->kernel_h && ly->stride_w == ly->kernel_w && ly->pad_top == 0 && ly->pad_left == 0 &&
           ly->out.h * ly->kernel_h <= ly->in.h && ly->out.w * ly->kernel_w <= ly->in.w;
}

/* Channels whose window search one pass carries in locals. */
#define MAX_CHANNELS 16

/* dx[the element forward took for out[c]] += g[c], channels [c0, c0 + cn) of one output pixel (out
 * and g point at channel c0); inlined with cn constant for whole groups, so the steps vectorize.
 * tiles: the window's elements are in no other window, and dx is written instead of added into,
 * with the bits of the sum into a cleared dx (0.0f + g: a -0 gradient gives +0). */
static inline __attribute__((always_inline)) void max_window_backward(float *restrict dx, const float *restrict x,
                                                                      const float *restrict out,
                                                                      const float *restrict g, size_t W, size_t C,
                                                                      span ys, span xs, size_t c0, const size_t cn,
                                                                      const int tiles) {
    float rest[MAX_CHANNELS];   /* g until the channel's element is found, then 0 */
    memcpy(rest, g, cn * sizeof *rest);
    for (size_t iy = ys.lo; iy < ys.hi; iy++)
        for (size_t ix = xs.lo; ix < xs.hi; ix++) {
            size_t base = (iy * W + ix) * C + c0;
            for (size_t c = 0; c < cn; c++) {
                float v = x[base + c], m = out[c], r = rest[c];
                int hit = (v == m) | ((v != v) & (m != m));
                if (tiles)
                    dx[base + c] = 0.0f + (hit ? r : 0.0f);
                else
                    dx[base + c] += hit ? r : 0.0f;
                rest[c] = hit ? 0.0f : r;
            }
        }
}

/* One sample's dx. tiles (mc_pool_windows_tile): one pass writes each element of dx once, the elements in
 * no window 0, instead of clearing dx and adding into it. */
static inline __attribute__((always_inline)) void max_backward_sample(float *restrict dx, const float *restrict x,
                                                                      const float *restrict out,
                                                                      const float *restrict g, const mc_layer *ly,
                                                                      const int tiles) {
    size_t C = ly->in.c, W = ly->in.w;
    if (!tiles) memset(dx, 0, ly->n_in * sizeof *dx);
    for (size_t oy = 0; oy < ly->out.h; oy++) {
        span ys = span_of(oy, ly->kernel_h, ly->stride_h, ly->pad_top, ly->in.h);
        for (size_t ox = 0; ox < ly->out.w; ox++) {
            span xs = span_of(ox, ly->kernel_w, ly->stride_w, ly->pad_left, W);
            size_t o = (oy * ly->out.w + ox) * C;
            size_t c0 = 0;
            for (; c0 + MAX_CHANNELS <= C; c0 += MAX_CHANNELS)
                max_window_backward(dx, x, out + o + c0, g + o + c0, W, C, ys, xs, c0, MAX_CHANNELS, tiles);
            if (c0 < C) max_window_backward(dx, x, out + o + c0, g + o + c0, W, C, ys, xs, c0, C - c0, tiles);
        }
        size_t covered_w = ly->out.w * ly->kernel_w;
        if (tiles && covered_w < W)   /* the columns right of the last window */
            for (size_t iy = ys.lo; iy < ys.hi; iy++)
                memset(dx + (iy * W + covered_w) * C, 0, (W - covered_w) * C * sizeof *dx);
    }
    size_t covered_h = ly->out.h * ly->kernel_h;
    if (tiles)   /* the rows below the last window */
        memset(dx + covered_h * W * C, 0, (ly->in.h - covered_h) * W * C * sizeof *dx);
}

/* The general path is compiled for the base width only: where windows overlap, dx sums gradients,
 * and of two NaN the sum keeps the one the add's operand order picks, which the compiler chooses
 * per width. */
static void max_backward_range(void *ctx, size_t s0, size_t s1) {
    const pool_job *j = ctx;
    const mc_layer *ly = j->ly;
    for (size_t s = s0; s < s1; s++)
        max_backward_sample(j->dinp + s * ly->n_in, j->x + s * ly->n_in, j->out + s * ly->n_out,
                            j->dout + s * ly->n_out, ly, 0);
}

MC_ALL_WIDTHS static void max_backward_tiled_range(void *ctx, size_t s0, size_t s1) {
    const pool_job *j = ctx;
    const mc_layer *ly = j->ly;
    for (size_t s = s0; s < s1; s++)
        max_backward_sample(j->dinp + s * ly->n_in, j->x + s * ly->n_in, j->out + s * ly->n_out,
                            j->dout + s * ly->n_out, ly, 1);
}

static mc_status max_init(mc_layer *ly, size_t l, mc_error *err) { return check_pool(ly, l, "MaxPooling2D", 1, err); }

static void max_forward(const mc_layer *ly, const mc_fwd *f) {
    pool_job j = {ly, f->out, f->inp, NULL, NULL};
    mc_for_samples(f->rows, ly->n_in + ly->n_out, f->plan == NULL, max_forward_range, &j);
}

static void max_backward(const mc_layer *ly, const mc_bwd *b) {
    if (!b->dinp) return;
    pool_job j = {ly, (float *)b->out, b->inp, b->dinp, b->dout};
    void (*range)(void *, size_t, size_t) =
        mc_pool_windows_tile(ly) ? max_backward_tiled_range : max_backward_range;
    mc_for_samples(b->rows, 2 * ly->n_in + ly->n_out, 1, range, &j);
}

static int pool_threads(const mc_layer *ly, size_t B) { return mc_samples_threads(B, ly->n_in + ly->n_out); }

const mc_layer_ops mc_maxpool2d_ops = {
    .name = "MaxPooling2D",
    .init = max_init,
    .scratch = no_scratch,
    .forward = max_forward,
    .backward = max_backward,
    .threads = pool_threads,
};

/* --- AveragePooling2D --- */

static void avg_sample(float *out, const float *x, const mc_layer *ly) {
    size_t C = ly->in.c, W = ly->in.w;
    for (size_t oy = 0; oy < ly->out.h; oy++) {
        span ys = span_of(oy, ly->kernel_h, ly->stride_h, ly->pad_top, ly->in.h);
        for (size_t ox = 0; ox < ly->out.w; ox++) {
            span xs = span_of(ox, ly->kernel_w, ly->stride_w, ly->pad_left, W);
            float *o = out + (oy * ly->out.w + ox) * C;
            float n = (float)((ys.hi - ys.lo) * (xs.hi - xs.lo));
            for (size_t c = 0; c < C; c++) o[c] = 0.0f;
            for (size_t iy = ys.lo; iy < ys.hi; iy++)
                for (size_t ix = xs.lo; ix < xs.hi; ix++) {
                    const float *v = x + (iy * W + ix) * C;
                    for (size_t c = 0; c < C; c++) o[c] += v[c];
                }
            for (size_t c = 0; c < C; c++) o[c] /= n;
        }
    }
}

static void avg_forward_range(void *ctx, size_t s0, size_t s1) {
    const pool_job *j = ctx;
    for (size_t s = s0; s < s1; s++) avg_sample(j->out + s * j->ly->n_out, j->x + s * j->ly->n_in, j->ly);
}

static void avg_backward_range(void *ctx, size_t s0, size_t s1) {
    const pool_job *j = ctx;
    const mc_layer *ly = j->ly;
    size_t C = ly->in.c, W = ly->in.w;
    for (size_t s = s0; s < s1; s++) {
        float *dx = j->dinp + s * ly->n_in, *dout = j->dout + s * ly->n_out;
        memset(dx, 0, ly->n_in * sizeof *dx);
        for (size_t oy = 0; oy < ly->out.h; oy++) {
            span ys = span_of(oy, ly->kernel_h, ly->stride_h, ly->pad_top, ly->in.h);
            for (size_t ox = 0; ox < ly->out.w; ox++) {
                span xs = span_of(ox, ly->kernel_w, ly->stride_w, ly->pad_left, W);
                float *g = dout + (oy * ly->out.w + ox) * C;
                float n = (float)((ys.hi - ys.lo) * (xs.hi - xs.lo));
                for (size_t c = 0; c < C; c++) g[c] /= n;
                for (size_t iy = ys.lo; iy < ys.hi; iy++)
                    for (size_t ix = xs.lo; ix < xs.hi; ix++) {
                        float *d = dx + (iy * W + ix) * C;
                        for (size_t c = 0; c < C; c++) d[c] += g[c];
                    }
            }
        }
    }
}

static mc_status avg_init(mc_layer *ly, size_t l, mc_error *err) {
    return check_pool(ly, l, "AveragePooling2D", 1, err);
}

static void avg_forward(const mc_layer *ly, const mc_fwd *f) {
    pool_job j = {ly, f->out, f->inp, NULL, NULL};
    mc_for_samples(f->rows, ly->n_in + ly->n_out, f->plan == NULL, avg_forward_range, &j);
}

static void avg_backward(const mc_layer *ly, const mc_bwd *b) {
    if (!b->dinp) return;
    pool_job j = {ly, NULL, NULL, b->dinp, b->dout};
    mc_for_samples(b->rows, ly->n_in + ly->n_out, 1, avg_backward_range, &j);
}

const mc_layer_ops mc_avgpool2d_ops = {
    .name = "AveragePooling2D",
    .init = avg_init,
    .scratch = no_scratch,
    .forward = avg_forward,
    .backward = avg_backward,
    .threads = pool_threads,
};

/* --- GlobalAveragePooling2D --- */

static void gap_forward_range(void *ctx, size_t s0, size_t s1) {
    const pool_job *j = ctx;
    size_t C = j->ly->in.c, pix = j->ly->in.h * j->ly->in.w;
    float n = (float)pix;
    for (size_t s = s0; s < s1; s++) {
        float *o = j->out + s * C;
        const float *x = j->x + s * j->ly->n_in;
        for (size_t c = 0; c < C; c++) o[c] = 0.0f;
        for (size_t p = 0; p < pix; p++)
            for (size_t c = 0; c < C; c++) o[c] += x[p * C + c];
        for (size_t c = 0; c < C; c++) o[c] /= n;
    }
}

static void gap_backward_range(void *ctx, size_t s0, size_t s1) {
    const pool_job *j = ctx;
    size_t C = j->ly->in.c, pix = j->ly->in.h * j->ly->in.w;
    float n = (float)pix;
    for (size_t s = s0; s < s1; s++) {
        float *dx = j->dinp + s * j->ly->n_in, *g = j->dout + s * C;
        for (size_t c = 0; c < C; c++) g[c] /= n;
        for (size_t p = 0; p < pix; p++)
            for (size_t c = 0; c < C; c++) dx[p * C + c] = g[c];
    }
}

static mc_status gap_init(mc_layer *ly, size_t l, mc_error *err) {
    return check_pool(ly, l, "GlobalAveragePooling2D", 0, err);
}

static void gap_forward(const mc_layer *ly, const mc_fwd *f) {
    pool_job j = {ly, f->out, f->inp, NULL, NULL};
    mc_for_samples(f->rows, ly->n_in, f->plan == NULL, gap_forward_range, &j);
}

static void gap_backward(const mc_layer *ly, const mc_bwd *b) {
    if (!b->dinp) return;
    pool_job j = {ly, NULL, NULL, b->dinp, b->dout};
    mc_for_samples(b->rows, ly->n_in, 1, gap_backward_range, &j);
}

const mc_layer_ops mc_globalavgpool2d_ops = {
    .name = "GlobalAveragePooling2D",
    .init = gap_init,
    .scratch = no_scratch,
    .forward = gap_forward,
    .backward = gap_backward,
    .threads = pool_threads,
};
