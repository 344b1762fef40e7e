/* Conv2D (channels last) as im2col and one product: the receptive field of each output pixel,
 * (kernel_h, kernel_w, in.c), becomes a row of col (rows * out.h * out.w, K = kernel_h * kernel_w *
 * in.c), and out = act(col @ kernel + b) is dense's product, the Keras kernel layout being already
 * (K, out.c) row-major. Channels last makes a window row (kernel_w * in.c floats) contiguous in the
 * input, so im2col and col2im copy whole window rows. A 1x1 stride-1 conv without padding is dense
 * on every pixel: the input is col. A small receptive field (a first layer's) takes the direct
 * kernels of conv_small.h for the forward product and the weight gradient instead, and a 3x3
 * stride-1 conv with enough channels Winograd's forward of conv_winograd.h (backward stays
 * im2col's: the gradients of the same convolution). */
#include <string.h>

#include "activations.h"
#include "conv_small.h"
#include "conv_winograd.h"
#include "dense.h"
#include "gemm.h"
#include "layer.h"
#include "threads.h"

/* --- Conv2D --- */

/* Samples whose col (pix * K floats each) an im2col block holds at most: about 512 KiB, so that a
 * block is written, multiplied and (in backward) overwritten with dcol and summed back while it
 * is in L2, and the same block buffer serves a range's blocks one after the other. */
#define COL_BLOCK_FLOATS ((size_t)1 << 17)
/* The weight gradient is summed per group of samples (at most GROUPS_MAX groups, each of at least
 * GROUP_MIN_SAMPLES), the groups on the pool, then the groups' sums in order: a split fixed by the
 * batch size alone, so the bits do not depend on the thread count. */
#define GROUPS_MAX 16
#define GROUP_MIN_SAMPLES 8

typedef struct {
    size_t K;      /* kernel_h * kernel_w * in.c: a row of col */
    size_t N;      /* out.c */
    size_t pix;    /* out.h * out.w */
    size_t col;    /* floats of col per sample (0 when direct) */
    size_t pre;    /* floats of pre-activation kept per sample (0: out is the pre-activation or relu's) */
    size_t extra;  /* floats per sample for the groups' weight-gradient sums: a group's samples hold a
                    * slot of two (K * N + N)-float halves */
    size_t block;  /* samples per im2col block */
    size_t work;   /* floats per sample of a range's work buffer: col, or Winograd's when larger */
    size_t wblock; /* samples per Winograd block */
    int direct;    /* 1x1, stride 1, no padding: col is the input itself */
    int wino;      /* the forward product is w's Winograd F(m x m, 3x3) */
    mc_conv_wino w;
} conv_dims;

/* Floats of Winograd's buffer for one sample with w planned for training or inference, or 0 when
 * the layer takes none; sizes far beyond memory are left to im2col (and its errors). */
static size_t wino_floats(const mc_layer *ly, int inference, mc_conv_wino *w) {
    size_t wb;
    if (!mc_conv_wino_plan(ly, inference, w) || (wb = mc_conv_wino_buffer(w, 1)) == 0 || wb >= SIZE_MAX / 64)
        return 0;
    return wb;
}

/* The layer's sizes, its Winograd plan that of training or of inference. relu needs no
 * pre-activation: its backward reads out > 0, which holds exactly where pre > 0. */
static conv_dims dims_of(const mc_layer *ly, int inference) {
    conv_dims d;
    d.K = ly->kernel_h * ly->kernel_w * ly->in.c;
    d.N = ly->out.c;
    d.pix = ly->out.h * ly->out.w;
    d.direct = ly->kernel_h == 1 && ly->kernel_w == 1 && ly->stride_h == 1 && ly->stride_w == 1 &&
               ly->pad_top == 0 && ly->pad_left == 0;
    d.col = d.direct ? 0 : d.pix * d.K;
    d.pre = ly->activation != MC_ACT_LINEAR && ly->activation != MC_ACT_RELU ? ly->n_out : 0;
    d.extra = (2 * (d.K * d.N + d.N) + GROUP_MIN_SAMPLES - 1) / GROUP_MIN_SAMPLES;
    size_t pk = d.pix * d.K;
    d.block = pk && pk < COL_BLOCK_FLOATS ? COL_BLOCK_FLOATS / pk : 1;
    mc_conv_wino other;
    size_t wb = d.direct ? 0 : wino_floats(ly, inference, &d.w);
    size_t wo = d.direct ? 0 : wino_floats(ly, !inference, &other);
    d.wino = wb != 0;
    /* work holds col or either mode's Winograd buffer: one scratch serves both */
    d.work = wb > d.col ? wb : d.col;
    if (wo > d.work) d.work = wo;
    size_t per = d.wino ? d.w.planes * d.w.tiles * (d.w.C + d.w.N) : 0;
    d.wblock = per && per < COL_BLOCK_FLOATS ? COL_BLOCK_FLOATS / per : 1;
    return d;
}

/* The window of output column ox covers input columns [ix0, ix0 + kernel_w), of which kernel
 * columns [kx0, kx1) lie inside the input. */
typedef struct {
    ptrdiff_t ix0;
    size_t kx0, kx1;
} window_cols;

static window_cols cols_of(const mc_layer *ly, size_t ox) {
    window_cols c;
    c.ix0 = (ptrdiff_t)(ox * ly->stride_w) - (ptrdiff_t)ly->pad_left;
    c.kx0 = c.ix0 < 0 ? (size_t)-c.ix0 : 0;
    ptrdiff_t room = (ptrdiff_t)ly->in.w - c.ix0;
    c.kx1 = room < (ptrdiff_t)ly->kernel_w ? (size_t)room : ly->kernel_w;
    return c;
}

/* dst[0 : kernel_h rows of `row` floats] = the rows of a window wholly inside the input, from src
 * (the window's first element; input rows `stride` floats apart). Inlined with row constant for
 * the short rows of a first layer, where a loop's overhead would outweigh the copy. */
static inline __attribute__((always_inline)) void copy_window(float *restrict dst, const float *restrict src,
                                                              size_t kernel_h, size_t row, size_t stride) {
    for (size_t ky = 0; ky < kernel_h; ky++, dst += row, src += stride)
        for (size_t i = 0; i < row; i++) dst[i] = src[i];
}

/* col (pix, K) of one sample x (in.h, in.w, in.c); zeros where the window is off the input. */
static void im2col_sample(float *col, const float *x, const mc_layer *ly, size_t K) {
    size_t C = ly->in.c, row = ly->kernel_w * C, stride = ly->in.w * C;
    for (size_t oy = 0; oy < ly->out.h; oy++) {
        ptrdiff_t iy0 = (ptrdiff_t)(oy * ly->stride_h) - (ptrdiff_t)ly->pad_top;
        int rows_inside = iy0 >= 0 && (size_t)iy0 + ly->kernel_h <= ly->in.h;
        for (size_t ox = 0; ox < ly->out.w; ox++) {
            window_cols wc = cols_of(ly, ox);
            float *dst = col + (oy * ly->out.w + ox) * K;
            if (rows_inside && wc.kx0 == 0 && wc.kx1 == ly->kernel_w) {
                const float *src = x + ((size_t)iy0 * ly->in.w + (size_t)wc.ix0) * C;
                if (row == 3) copy_window(dst, src, ly->kernel_h, 3, stride);
                else if (row == 5) copy_window(dst, src, ly->kernel_h, 5, stride);
                else copy_window(dst, src, ly->kernel_h, row, stride);
                continue;
            }
            size_t lo = wc.kx0 * C, hi = wc.kx1 * C;
            for (size_t ky = 0; ky < ly->kernel_h; ky++, dst += row) {
                ptrdiff_t iy = iy0 + (ptrdiff_t)ky;
                if (iy < 0 || iy >= (ptrdiff_t)ly->in.h) {
                    for (size_t i = 0; i < row; i++) dst[i] = 0.0f;
                    continue;
                }
                const float *src = x + ((size_t)iy * ly->in.w + (size_t)wc.ix0) * C;
                for (size_t i = 0; i < lo; i++) dst[i] = 0.0f;
                for (size_t i = lo; i < hi; i++) dst[i] = src[i];
                for (size_t i = hi; i < row; i++) dst[i] = 0.0f;
            }
        }
    }
}

/* dx (in.h, in.w, in.c) of one sample = the sum of dcol's rows at their windows (pads dropped), in
 * the same order at every vector width. */
MC_ALL_WIDTHS static void col2im_sample(float *restrict dx, const float *restrict dcol, const mc_layer *ly, size_t K) {
    size_t C = ly->in.c, row = ly->kernel_w * C;
    memset(dx, 0, ly->n_in * sizeof *dx);
    for (size_t oy = 0; oy < ly->out.h; oy++) {
        ptrdiff_t iy0 = (ptrdiff_t)(oy * ly->stride_h) - (ptrdiff_t)ly->pad_top;
        for (size_t ox = 0; ox < ly->out.w; ox++) {
            window_cols wc = cols_of(ly, ox);
            const float *src = dcol + (oy * ly->out.w + ox) * K;
            size_t lo = wc.kx0 * C, hi = wc.kx1 * C;
            for (size_t ky = 0; ky < ly->kernel_h; ky++, src += row) {
                ptrdiff_t iy = iy0 + (ptrdiff_t)ky;
                if (iy < 0 || iy >= (ptrdiff_t)ly->in.h) continue;
                float *dst = dx + ((size_t)iy * ly->in.w + (size_t)wc.ix0) * C;
                for (size_t i = lo; i < hi; i++) dst[i] += src[i];
            }
        }
    }
}

/* The rows a product multiplies for samples [s, s + n): col of them written to buf, or for a
 * direct conv the input itself. */
static const float *col_rows(const mc_layer *ly, const conv_dims *d, const float *x, size_t s, size_t n, float *buf) {
    if (d->direct) return x + s * ly->n_in;
    for (size_t i = 0; i < n; i++) im2col_sample(buf + i * d->col, x + (s + i) * ly->n_in, ly, d->K);
    return buf;
}

static mc_status conv_init(mc_layer *ly, size_t l, mc_error *err) {
    mc_status st = mc_window_check(ly, l, "Conv2D", err);
    if (st != MC_OK) return st;
    if (ly->w[0].off < 0)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: Conv2D needs its kernel as weight 0, found none", l);
    for (size_t i = 2; i < MC_MAX_WEIGHTS; i++)
        if (ly->w[i].off >= 0)
            return mc_set_error(err, MC_ERR_ARG,
                                "layers[%zu]: Conv2D has 2 weights (kernel, bias), found weight %zu at offset %td", l,
                                i, ly->w[i].off);
    size_t K, len, col, pix;
    if (!mc_mul_size(ly->kernel_h * ly->kernel_w, ly->in.c, &K) || !mc_mul_size(K, ly->out.c, &len) ||
        !mc_mul_size(ly->out.h, ly->out.w, &pix) || !mc_mul_size(pix, K, &col) ||
        len > SIZE_MAX / 4 - ly->out.c || col > SIZE_MAX / 4 - ly->n_out - len / 2)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: Conv2D kernel %zux%zu on %zu channels is too large", l,
                            ly->kernel_h, ly->kernel_w, ly->in.c);
    ly->w[0] = (mc_weight){ly->w[0].off, len, 1};
    ly->w[1] = (mc_weight){ly->w[1].off, ly->w[1].off >= 0 ? ly->out.c : 0, 1};
    ly->n_weights = 2;
    return MC_OK;
}

/* Scratch of B samples (a batch, or an inference block): [pre (B, n_out)][work (B, work)][extra
 * (B, extra)]. pre comes first so that it is the (B, n_out) logits. work holds col, or Winograd's
 * buffers, and is only ever used a block at a time: a range of samples im2cols (or transforms) its
 * blocks one after the other into the work of its first samples, and backward makes col again
 * from the input rather than reading it back from memory. extra holds a slot per group (its
 * GROUP_MIN_SAMPLES samples' extra at least): the group's weight-gradient sums (the first group's
 * go to dw: its slot holds kernel^T instead), then the same transposed. Untouched parts of the
 * arena cost no memory. */
static size_t conv_scratch(const mc_layer *ly) {
    conv_dims d = dims_of(ly, 0);
    return d.pre + d.work + d.extra;
}

typedef struct {
    const mc_layer *ly;
    conv_dims d;
    const float *x;            /* the input at sample 0 of these rows */
    float *out, *pre, *work;   /* at sample 0 of these rows */
    const float *w, *b;
    const float *wino_u;       /* the Winograd kernel made for the call, or NULL */
    size_t batch;              /* rows of the whole batch (the products' plan) */
    mc_gemm_rows_plan rp;
    atomic_int *nonfinite;
    int small;                 /* the direct kernels of cs run the product */
    mc_conv_small cs;
} fwd_job;

static void forward_range(void *ctx, size_t s0, size_t s1) {
    const fwd_job *j = ctx;
    const conv_dims *d = &j->d;
    size_t n_out = j->ly->n_out;
    if (j->small) {
        int act = j->ly->activation;
        float *out = j->out + s0 * n_out, *dst = j->pre ? j->pre + s0 * n_out : out;
        mc_conv_small_forward(&j->cs, j->x + s0 * j->ly->n_in, s1 - s0, j->w, j->b, act == MC_ACT_RELU, dst,
                              j->nonfinite);
        if (j->pre) mc_activation_forward(act, out, dst, (s1 - s0) * d->pix, d->N);
        return;
    }
    float *buf = j->work + s0 * d->work;
    if (d->wino) {
        float *out = j->out + s0 * n_out, *dst = j->pre ? j->pre + s0 * n_out : out;
        size_t n = s1 - s0, block = n < d->wblock ? n : d->wblock;
        /* no product check: Conv2D does not claim ops->checks_products, predict scans x first */
        int act = j->ly->activation;
        mc_conv_wino_forward(&d->w, j->x + s0 * j->ly->n_in, n, j->w, j->wino_u, j->b, act == MC_ACT_RELU, NULL,
                             dst, j->batch, block, buf);
        if (j->pre) mc_activation_forward(act, out, dst, n * d->pix, d->N);
        return;
    }
    for (size_t s = s0; s < s1; s += d->block) {
        size_t n = s1 - s < d->block ? s1 - s : d->block;
        const float *a = col_rows(j->ly, d, j->x, s, n, buf);
        float *out = j->out + s * n_out;
        mc_dense_forward_act(j->ly->activation, out, j->pre ? j->pre + s * n_out : out, a, j->w, j->b, n * d->pix, d->K,
                             d->N, j->nonfinite, &j->rp);
    }
}

/* Each block of rows is a block of the whole batch's product (mc_gemm_rows), so a row gets the
 * same bits whichever block and thread computes it, here or in inference's blocks. */
static void conv_forward(const mc_layer *ly, const mc_fwd *f) {
    conv_dims d = dims_of(ly, !f->training);
    size_t B = f->rows, batch = f->plan ? f->plan->batch_rows : B;
    int sparse = 0;  /* col's zeros: with K as short as a first layer's, skipping them costs more than it saves */
    if (d.direct)
        sparse = !f->plan ? mc_gemm_skips_zeros(B * d.pix, d.N, d.K, f->inp, d.K) : f->reads_x ? f->plan->x_sparse : -1;
    fwd_job j = {
        .ly = ly, .d = d, .x = f->inp, .out = f->out, .pre = d.pre ? f->scratch : NULL,
        .work = f->scratch + B * d.pre,
        .w = f->params + ly->w[0].off, .b = ly->w[1].off >= 0 ? f->params + ly->w[1].off : NULL,
        .wino_u = f->derived, .batch = batch,
        .rp = {batch * d.pix, f->plan ? f->plan->params_finite : 0, sparse},
        .nonfinite = f->nonfinite,
    };
    j.small = !d.direct && !d.wino && mc_conv_small_plan(ly, &j.cs);
    mc_for_samples(f->rows, d.col + ly->n_in + ly->n_out, f->plan == NULL, forward_range, &j);
}

/* Inference makes its Winograd kernel once per call. */
static size_t conv_derived(const mc_layer *ly) {
    conv_dims d = dims_of(ly, 1);
    return d.wino ? mc_conv_wino_kernel_floats(&d.w) : 0;
}

static void conv_derive(const mc_layer *ly, const float *params, float *dst) {
    conv_dims d = dims_of(ly, 1);
    mc_conv_wino_kernel(&d.w, params + ly->w[0].off, dst);
}

typedef struct {
    const mc_layer *ly;
    conv_dims d;
    const mc_bwd *b;
    int act;
    size_t groups;
    const float *pre, *w;
    float *work, *extra;       /* the batch's scratch areas */
    float *dw, *db;            /* NULL: not wanted */
    int small;                 /* the direct kernels of cs sum the weight gradient */
    mc_conv_small cs;
    const mc_conv_small_pool *pool; /* not NULL: the gradient comes through this max pooling above */
    const float *wt;           /* not NULL: kernel^T (N, K), read in place by dcol's product */
    int wt_finite;             /* 1: wt holds no NaN or infinity (the zero-skipping products need not look) */
} bwd_job;

static size_t group_start(const bwd_job *j, size_t g) { return g * j->b->rows / j->groups; }

/* Whether a group's dpre (n floats, relu's derivative taken) is mostly zeros, as under a max
 * pooling, which routes each window's gradient to one of its elements. Counted over all of it:
 * a sample of rows could land on the same pixel of every sample, the first of its window. */
MC_ALL_WIDTHS static int mostly_zeros(const float *dpre, size_t n) {
    size_t zeros = 0;
    for (size_t i0 = 0; i0 < n; i0 += 1 << 20) {
        uint32_t z = 0;  /* 32-bit lanes: the compare vectorizes 16 at a time */
        for (size_t i = i0, i1 = n - i0 < (1 << 20) ? n : i0 + (1 << 20); i < i1; i++) z += dpre[i] == 0.0f;
        zeros += z;
    }
    return (double)zeros >= MC_GEMM_SPARSE_MIN_ZEROS * (double)n;
}

/* 1 when the n floats at p hold no NaN or infinity (x - x is 0 exactly for a finite x). */
MC_ALL_WIDTHS static int all_finite(const float *p, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= (p[i] - p[i]) != 0.0f;
    return !bad;
}

/* Group g's samples [s0, s1): the activation's derivative and bias gradient on its rows, then per
 * block the weight gradient of its col, and dcol = dpre @ kernel^T summed back into dx; or the
 * direct kernels' weight gradient. */
static void backward_group(void *ctx, size_t g) {
    const bwd_job *j = ctx;
    const conv_dims *d = &j->d;
    const mc_bwd *b = j->b;
    size_t s0 = group_start(j, g), s1 = group_start(j, g + 1), KN = d->K * d->N;
    float *pw = j->dw ? (g == 0 ? j->dw : j->extra + s0 * d->extra) : NULL;
    float *pb = j->db ? (g == 0 ? j->db : j->extra + s0 * d->extra + KN) : NULL;
    size_t m0 = s0 * d->pix, N = d->N;
    const float *inp = b->inp + s0 * j->ly->n_in;
    if (j->pool) {
        size_t pn = j->pool->h * j->pool->w * N;
        mc_conv_small_pool p = *j->pool;
        p.out += s0 * pn;
        p.g += s0 * pn;
        mc_conv_small_weight_grad_pooled(&j->cs, inp, &p, b->out + m0 * N, j->act == MC_ACT_RELU, s1 - s0, pw, pb);
        return;
    }
    float *dpre = b->dout + m0 * N;
    if (pw && j->small && !b->dinp && (j->act == MC_ACT_RELU || j->act == MC_ACT_LINEAR)) {
        /* nothing else reads dpre: relu's derivative and the bias gradient in the same pass */
        mc_conv_small_weight_grad(&j->cs, inp, dpre, j->act == MC_ACT_RELU ? b->out + m0 * N : NULL, s1 - s0, pw, pb);
        return;
    }
    mc_activation_bias_backward(j->act, dpre, pb, j->pre ? j->pre + m0 * N : NULL, b->out + m0 * N,
                                (s1 - s0) * d->pix, N);
    if (pw && j->small) {
        mc_conv_small_weight_grad(&j->cs, inp, dpre, NULL, s1 - s0, pw, NULL);
        pw = NULL;
    }
    /* mostly zeros: dcol's product skips them, and the weight gradient is summed as (dpre^T @
     * col)^T, whose product does (the same sums in the same order); with groups of at least
     * GROUP_MIN_SAMPLES, whose slots have room */
    int sparse = j->groups > 1 && (pw || b->dinp) ? mostly_zeros(dpre, (s1 - s0) * d->pix * N) : 0;
    float *pwt = sparse && pw ? j->extra + s0 * d->extra + KN + N : NULL;
    /* col holds the input's elements and zeros: finite when the group's input is */
    int col_finite = pwt ? all_finite(inp, (s1 - s0) * j->ly->n_in) : 0;
    mc_gemm_rows_plan rw = {d->K, 0, 0}, rwt = {N, col_finite, 1}, rx = {b->rows * d->pix, j->wt_finite, sparse};
    float *buf = j->work + s0 * d->work;
    for (size_t s = s0; s < s1 && (pw || b->dinp); s += d->block) {
        size_t n = s1 - s < d->block ? s1 - s : d->block, M = n * d->pix;
        const float *dp = b->dout + s * d->pix * N;
        if (pw) {
            const float *a = col_rows(j->ly, d, b->inp, s, n, buf);
            float beta = s == s0 ? 0.0f : 1.0f;
            if (pwt) mc_gemm_rows(&rwt, 1, 0, N, d->K, M, 1.0f, dp, N, a, d->K, beta, pwt, d->K, NULL);
            else mc_gemm_rows(&rw, 1, 0, d->K, N, M, 1.0f, a, d->K, dp, N, beta, pw, N, NULL);
        }
        if (!b->dinp) continue;
        float *dx = b->dinp + s * j->ly->n_in, *dcol = d->direct ? dx : buf;  /* buf has served dw */
        if (j->wt)
            mc_gemm_rows(&rx, 0, 0, M, d->K, N, 1.0f, dp, N, j->wt, d->K, 0.0f, dcol, d->K, NULL);
        else
            mc_gemm_rows(&rx, 0, 1, M, d->K, N, 1.0f, dp, N, j->w, N, 0.0f, dcol, d->K, NULL);
        if (d->direct) continue;
        for (size_t i = 0; i < n; i++) col2im_sample(dx + i * j->ly->n_in, buf + i * d->col, j->ly, d->K);
    }
    for (size_t k = 0; pwt && k < d->K; k++)
        for (size_t c = 0; c < N; c++) pw[k * N + c] = pwt[c * d->K + k];
}

/* pool: NULL, or the max pooling above whose backward runs in the weight-gradient pass */
static void backward_through(const mc_layer *ly, const mc_bwd *b, const mc_conv_small_pool *pool) {
    conv_dims d = dims_of(ly, 0);
    size_t B = b->rows, KN = d.K * d.N, groups = B / GROUP_MIN_SAMPLES;
    if (groups > GROUPS_MAX) groups = GROUPS_MAX;
    if (groups < 1) groups = 1;
    bwd_job j = {
        .ly = ly, .d = d, .b = b, .act = b->skip_act ? MC_ACT_LINEAR : ly->activation, .groups = groups,
        .pre = d.pre ? b->scratch : NULL, .w = b->params + ly->w[0].off,
        .work = b->scratch + B * d.pre, .extra = b->scratch + B * (d.pre + d.work),
        .dw = b->grads ? b->grads + ly->w[0].off : NULL,
        .db = b->grads && ly->w[1].off >= 0 ? b->grads + ly->w[1].off : NULL,
    };
    j.small = !d.direct && mc_conv_small_plan(ly, &j.cs);
    j.pool = pool;
    if (b->dinp && groups > 1) {
        /* kernel^T, read in place, lets dcol's product skip the zeros of dpre (mostly_zeros). The
         * bits of the product with kernel transposed, but for the sign of a zero sum. */
        float *wt = j.extra;
        for (size_t k = 0; k < d.K; k++)
            for (size_t n = 0; n < d.N; n++) wt[n * d.K + k] = j.w[k * d.N + n];
        j.wt = wt;
        j.wt_finite = all_finite(wt, KN);
    }
    mc_parallel_for(groups, backward_group, &j);
    /* the groups' sums, in order */
    for (size_t g = 1; g < groups && j.dw; g++) {
        const float *restrict p = j.extra + group_start(&j, g) * d.extra;
        float *restrict dw = j.dw;
        for (size_t i = 0; i < KN; i++) dw[i] += p[i];
        if (!j.db) continue;
        float *restrict db = j.db;
        for (size_t i = 0; i < d.N; i++) db[i] += p[KN + i];
    }
}

static void conv_backward(const mc_layer *ly, const mc_bwd *b) { backward_through(ly, b, NULL); }

/* Whether ly and the layer above it are a convnet's first block as the direct kernels can fuse it:
 * ly runs them (cs filled) with relu or no activation, under a MaxPooling2D whose windows tile its
 * output (pool's geometry filled; its arrays NULL). */
static int first_block(const mc_layer *ly, const mc_layer *above, mc_conv_small *cs, mc_conv_small_pool *pool) {
    int act = ly->activation;
    if (above->ops != &mc_maxpool2d_ops || !mc_pool_windows_tile(above) || dims_of(ly, 0).direct ||
        (act != MC_ACT_RELU && act != MC_ACT_LINEAR) || !mc_conv_small_plan(ly, cs))
        return 0;
    *pool = (mc_conv_small_pool){above->kernel_h, above->kernel_w, above->out.h, above->out.w, NULL, NULL};
    return 1;
}

/* A first block's backward: the pooling's input gradient is made where the weight gradient reads
 * it, instead of written out (as large as the conv's output) and read back. */
static int conv_backward_with_above(const mc_layer *ly, const mc_bwd *b, const mc_layer *above, const mc_bwd *ab) {
    mc_conv_small cs;
    mc_conv_small_pool pool;
    if (!b->grads || ly->out.w > MC_CONV_SMALL_POOLED_MAX_W || !first_block(ly, above, &cs, &pool)) return 0;
    pool.out = ab->out;
    pool.g = ab->dout;
    backward_through(ly, b, &pool);
    return 1;
}

/* Inference's forward of a conv under a max pooling whose windows tile its output, the conv's output
 * never written: a first block's rows pooled band by band while in L1, or a Winograd conv's 2x2
 * windows pooled in its output transform. relu or no activation only (pooling first, then the
 * bias and relu, keeps the values). */
static int conv_forward_with_above(const mc_layer *ly, const mc_fwd *f, const mc_layer *above, const mc_fwd *af) {
    const float *kernel = f->params + ly->w[0].off, *bias = ly->w[1].off >= 0 ? f->params + ly->w[1].off : NULL;
    int relu = ly->activation == MC_ACT_RELU;
    mc_conv_small cs;
    mc_conv_small_pool pool;
    if (!f->plan) return 0;
    if (above->kernel_h * ly->out.w * ly->out.c <= MC_CONV_SMALL_POOLED_BAND && first_block(ly, above, &cs, &pool)) {
        mc_conv_small_forward_pooled(&cs, f->inp, f->rows, kernel, bias, relu, &pool, af->out, f->nonfinite);
        return 1;
    }
    conv_dims d = dims_of(ly, 1);
    if (!d.wino || above->ops != &mc_maxpool2d_ops || !mc_pool_windows_tile(above) || above->kernel_h != 2 ||
        above->kernel_w != 2 || (!relu && ly->activation != MC_ACT_LINEAR))
        return 0;
    mc_conv_wino_pool wp = {above->out.h, above->out.w};
    size_t block = f->rows < d.wblock ? f->rows : d.wblock;
    mc_conv_wino_forward(&d.w, f->inp, f->rows, kernel, f->derived, bias, relu, &wp, af->out, f->plan->batch_rows,
                         block, f->scratch + f->rows * d.pre);
    return 1;
}

static const float *conv_logits(const mc_layer *ly, const float *inp, const float *out, const float *scratch) {
    (void)inp;
    return dims_of(ly, 0).pre ? scratch : out;
}

static int conv_threads(const mc_layer *ly, size_t B) {
    conv_dims d = dims_of(ly, 0);
    return mc_samples_threads(B, d.col + ly->n_in + ly->n_out);
}

/* Only a direct conv multiplies x itself; otherwise 0: the product of col never skips zeros. */
static int conv_sparse_input(const mc_layer *ly, const float *x, size_t B) {
    conv_dims d = dims_of(ly, 0);
    return d.direct ? mc_gemm_skips_zeros(B * d.pix, d.N, d.K, x, d.K) : 0;
}

const mc_layer_ops mc_conv2d_ops = {
    .name = "Conv2D",
    .init = conv_init,
    .scratch = conv_scratch,
    .forward = conv_forward,
    .backward = conv_backward,
    .backward_with_above = conv_backward_with_above,
    .forward_with_above = conv_forward_with_above,
    .logits = conv_logits,
    .threads = conv_threads,
    .sparse_input = conv_sparse_input,
    .derived = conv_derived,
    .derive = conv_derive,
    /* not 1: with strides, an input pixel may lie in no window, so NaN there never reaches a product */
};
