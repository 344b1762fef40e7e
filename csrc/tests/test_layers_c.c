/* Standalone checks of the windowed and normalising layer kinds (conv.c, pool.c, norm.c,
 * normalization.c) and of ReLU (elementwise.c) through the layer interface, meant to run under ASan/UBSan. Each kind's forward is compared with a direct
 * double-precision implementation written here, its backward with central differences of the loss
 * sum(out * R) through that implementation; forward on blocks of rows (inference's plan) must give
 * the whole batch's bits, and one thread the bits of two. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "activations.h"
#include "common.h"
#include "layer.h"
#include "mc_test.h"
#include "rng.h"
#include "threads.h"

static uint64_t counter = 0;

/* uniform in [-1, 1) from the engine's own hash */
static float frand(void) { return (float)(2.0 * mc_rng_uniform(777, counter++) - 1.0); }

static float *alloc_rand(size_t n) {
    float *a = malloc((n ? n : 1) * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = frand();
    return a;
}

static float *alloc_nan(size_t n) {
    float *a = malloc((n ? n : 1) * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = NAN;
    return a;
}

/* Keras's output size and leading pad of one dimension. */
static void window(size_t in, size_t k, size_t s, int same, size_t *out, size_t *pad) {
    if (same) {
        *out = (in + s - 1) / s;
        size_t span = (*out - 1) * s + k;
        *pad = span > in ? (span - in) / 2 : 0;
    } else {
        *out = (in - k) / s + 1;
        *pad = 0;
    }
}

static mc_layer make_layer(const mc_layer_ops *ops, int kind, int act, size_t h, size_t w, size_t c, size_t oc,
                           size_t kh, size_t kw, size_t sh, size_t sw, int same) {
    mc_layer ly;
    memset(&ly, 0, sizeof ly);
    ly.ops = ops;
    ly.kind = kind;
    ly.activation = act;
    ly.trainable = 1;
    ly.in = (mc_shape){h, w, c};
    if (kh) {
        window(h, kh, sh, same, &ly.out.h, &ly.pad_top);
        window(w, kw, sw, same, &ly.out.w, &ly.pad_left);
    } else {
        ly.out.h = h;
        ly.out.w = w;
    }
    ly.out.c = oc;
    ly.kernel_h = kh;
    ly.kernel_w = kw;
    ly.stride_h = sh;
    ly.stride_w = sw;
    ly.n_in = h * w * c;
    ly.n_out = ly.out.h * ly.out.w * ly.out.c;
    for (size_t i = 0; i < MC_MAX_WEIGHTS; i++) ly.w[i].off = -1;
    return ly;
}

/* Present weights (mask bit i) get offsets after init has told their lengths; returns P. */
static size_t init_layer(mc_layer *ly, unsigned present) {
    for (size_t i = 0; i < MC_MAX_WEIGHTS; i++) ly->w[i].off = present >> i & 1 ? 0 : -1;
    mc_error err = {0};
    mc_status st = ly->ops->init(ly, 0, &err);
    CHECK(st == MC_OK);
    if (st != MC_OK) fprintf(stderr, "init: %s\n", err.msg);
    size_t P = 0;
    for (size_t i = 0; i < ly->n_weights; i++) {
        if (ly->w[i].off < 0) continue;
        ly->w[i].off = (ptrdiff_t)P;
        P += ly->w[i].len;
    }
    return P;
}

/* ReLU's threshold, in float32 as the layer computes it */
static float threshold_of(const mc_layer *ly) { return (float)ly->f[MC_FCOL_THRESHOLD]; }

/* --- double-precision references: out (B, n_out) from x (B, n_in) and the parameter block p --- */

typedef void (*ref_fn)(const mc_layer *ly, double *out, const double *x, const double *p, size_t B, int training);

static void act_ref(int act, double *v, size_t n) {
    if (act == MC_ACT_SOFTMAX) {
        double m = v[0], s = 0.0;
        for (size_t i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
        for (size_t i = 0; i < n; i++) s += v[i] = exp(v[i] - m);
        for (size_t i = 0; i < n; i++) v[i] /= s;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double z = v[i];
        switch (act) {
        case MC_ACT_RELU: v[i] = z > 0.0 ? z : 0.0; break;
        case MC_ACT_TANH: v[i] = tanh(z); break;
        case MC_ACT_SIGMOID: v[i] = 1.0 / (1.0 + exp(-z)); break;
        case MC_ACT_ELU: v[i] = z > 0.0 ? z : expm1(z); break;
        default: break;
        }
    }
}

/* input row iy of output row oy and kernel row ky, or -1 when in the padding */
static ptrdiff_t in_row(size_t o, size_t k, size_t s, size_t pad, size_t n) {
    ptrdiff_t i = (ptrdiff_t)(o * s + k) - (ptrdiff_t)pad;
    return i >= 0 && i < (ptrdiff_t)n ? i : -1;
}

static void conv_ref(const mc_layer *ly, double *out, const double *x, const double *p, size_t B, int training) {
    (void)training;
    size_t C = ly->in.c, OC = ly->out.c;
    const double *w = p + ly->w[0].off, *b = ly->w[1].off >= 0 ? p + ly->w[1].off : NULL;
    for (size_t s = 0; s < B; s++)
        for (size_t oy = 0; oy < ly->out.h; oy++)
            for (size_t ox = 0; ox < ly->out.w; ox++) {
                double *o = out + s * ly->n_out + (oy * ly->out.w + ox) * OC;
                for (size_t j = 0; j < OC; j++) o[j] = b ? b[j] : 0.0;
                for (size_t ky = 0; ky < ly->kernel_h; ky++) {
                    ptrdiff_t iy = in_row(oy, ky, ly->stride_h, ly->pad_top, ly->in.h);
                    for (size_t kx = 0; kx < ly->kernel_w && iy >= 0; kx++) {
                        ptrdiff_t ix = in_row(ox, kx, ly->stride_w, ly->pad_left, ly->in.w);
                        if (ix < 0) continue;
                        const double *xi = x + s * ly->n_in + ((size_t)iy * ly->in.w + (size_t)ix) * C;
                        for (size_t c = 0; c < C; c++)
                            for (size_t j = 0; j < OC; j++) o[j] += xi[c] * w[((ky * ly->kernel_w + kx) * C + c) * OC + j];
                    }
                }
                act_ref(ly->activation, o, OC);
            }
}

/* --- the generic check of a layer against its reference --- */

static double *to_double(const float *a, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = a[i];
    return d;
}

static double ref_loss(const mc_layer *ly, ref_fn ref, const double *x, const double *p, const float *R, size_t B,
                       int training) {
    double *out = malloc(B * ly->n_out * sizeof *out), s = 0.0;
    ref(ly, out, x, p, B, training);
    for (size_t i = 0; i < B * ly->n_out; i++) s += out[i] * R[i];
    free(out);
    return s;
}

static double central_diff(const mc_layer *ly, ref_fn ref, double *x, double *p, double *v, size_t i, const float *R,
                           size_t B, int training) {
    const double eps = 1e-4;
    double old = v[i];
    v[i] = old + eps;
    double lp = ref_loss(ly, ref, x, p, R, B, training);
    v[i] = old - eps;
    double lm = ref_loss(ly, ref, x, p, R, B, training);
    v[i] = old;
    return (lp - lm) / (2.0 * eps);
}

typedef struct {
    float *out, *dinp, *grads, *scratch, *params;
} run_result;

static void run_free(run_result *r) {
    free(r->out);
    free(r->dinp);
    free(r->grads);
    free(r->scratch);
    free(r->params);
}

/* forward then backward (dout = R) of the whole batch, on a copy of params */
static run_result run_layer(const mc_layer *ly, const float *x, const float *params, size_t P, const float *R,
                            size_t B, int training, int skip_act) {
    run_result r;
    r.out = alloc_nan(B * ly->n_out);
    r.dinp = alloc_nan(B * ly->n_in);
    r.grads = alloc_nan(P);
    r.scratch = alloc_nan(B * ly->ops->scratch(ly));
    r.params = malloc((P ? P : 1) * sizeof *r.params);
    memcpy(r.params, params, P * sizeof *params);
    mc_fwd f = {r.out, x, r.scratch, r.params, B, training, 0, NULL, 0, NULL, NULL};
    ly->ops->forward(ly, &f);
    float *dout = malloc(B * ly->n_out * sizeof *dout);
    memcpy(dout, R, B * ly->n_out * sizeof *dout);
    mc_bwd b = {r.dinp, dout, x, r.out, r.scratch, r.params, r.grads, B, training, skip_act};
    ly->ops->backward(ly, &b);
    free(dout);
    return r;
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof *a) == 0; }

/* forward on blocks of rows, each in buffers of its own, with an inference plan and the weights
 * the layer derives for inference (ops->derive) gives the whole batch's bits (out and logits) */
static void check_blocks(const mc_layer *ly, const float *x, const float *params, size_t B) {
    size_t per = ly->ops->scratch(ly);
    float *out = alloc_nan(B * ly->n_out), *scratch = alloc_nan(B * per);
    float *bout = alloc_nan(B * ly->n_out), *blogits = alloc_nan(B * ly->n_out);
    size_t nd = ly->ops->derived ? ly->ops->derived(ly) : 0;
    float *derived = nd ? alloc_nan(nd) : NULL;
    if (nd) ly->ops->derive(ly, params, derived);
    mc_infer_plan plan = {1, -1, B, NULL};
    mc_fwd f = {out, x, scratch, (float *)params, B, 0, 0, NULL, 0, NULL, NULL};
    ly->ops->forward(ly, &f);
    for (size_t r0 = 0, step = 1; r0 < B; r0 += step, step++) {
        size_t rows = B - r0 < step ? B - r0 : step;
        float *o = alloc_nan(rows * ly->n_out), *sc = alloc_nan(rows * per);
        mc_fwd g = {o, x + r0 * ly->n_in, sc, (float *)params, rows, 0, 0, &plan, 1, NULL, derived};
        ly->ops->forward(ly, &g);
        memcpy(bout + r0 * ly->n_out, o, rows * ly->n_out * sizeof *o);
        if (ly->ops->logits)
            memcpy(blogits + r0 * ly->n_out, ly->ops->logits(ly, x + r0 * ly->n_in, o, sc),
                   rows * ly->n_out * sizeof *o);
        free(o);
        free(sc);
    }
    CHECK(same_bits(out, bout, B * ly->n_out));
    if (ly->ops->logits) CHECK(same_bits(ly->ops->logits(ly, x, out, scratch), blogits, B * ly->n_out));
    free(out);
    free(scratch);
    free(bout);
    free(blogits);
    free(derived);
}

/* The whole check of one layer (init done, P parameters) on a batch of B. */
static void check_layer(const mc_layer *ly, ref_fn ref, size_t P, size_t B, int training) {
    float *x = alloc_rand(B * ly->n_in), *R = alloc_rand(B * ly->n_out), *params = alloc_rand(P);
    /* max: distinct values 2 / n apart, so that no difference quotient straddles a change of argmax */
    if (ly->kind == MC_LAYER_MAXPOOL2D)
        for (size_t i = 0, n = B * ly->n_in; i < n; i++) x[i] = (float)(-1.0 + 2.0 * (double)(i * 7919 % n) / (double)n);
    /* moving variances must be positive */
    if (ly->kind == MC_LAYER_BATCHNORM)
        for (size_t i = 0; i < ly->w[3].len; i++) params[ly->w[3].off + (ptrdiff_t)i] += 1.5f;
    if (ly->kind == MC_LAYER_NORMALIZATION)
        for (size_t i = 0; i < ly->w[1].len; i++) params[ly->w[1].off + (ptrdiff_t)i] += 1.5f;
    /* ReLU: no input within a difference step of a kink (the threshold, the maximum) */
    if (ly->kind == MC_LAYER_RELU)
        for (size_t i = 0; i < B * ly->n_in; i++)
            if (fabs(x[i] - threshold_of(ly)) < 1e-3 || fabs(x[i] - ly->f[MC_FCOL_MAX_VALUE]) < 1e-3) x[i] += 3e-3f;
    double *xd = to_double(x, B * ly->n_in), *pd = to_double(params, P);
    double *want = malloc(B * ly->n_out * sizeof *want);
    ref(ly, want, xd, pd, B, training);
    run_result r = run_layer(ly, x, params, P, R, B, training, 0);
    int bad = 0;
    for (size_t i = 0; i < B * ly->n_out; i++) bad += !(fabs(r.out[i] - want[i]) <= 1e-5 + 1e-4 * fabs(want[i]));
    CHECK(bad == 0);
    for (size_t i = 0; i < B * ly->n_in; i++)
        CHECK_NEAR(r.dinp[i], central_diff(ly, ref, xd, pd, xd, i, R, B, training), 1e-4, 1e-3);
    for (size_t k = 0; k < ly->n_weights; k++) {
        if (ly->w[k].off < 0 || !ly->w[k].trained) continue;
        for (size_t i = (size_t)ly->w[k].off; i < (size_t)ly->w[k].off + ly->w[k].len; i++)
            CHECK_NEAR(r.grads[i], central_diff(ly, ref, xd, pd, pd, i, R, B, training), 1e-4, 1e-3);
    }
    if (!training) check_blocks(ly, x, params, B);
    free(x);
    free(R);
    free(params);
    free(xd);
    free(pd);
    free(want);
    run_free(&r);
}

/* one thread, two and three give the same bits, forward and backward */
static void check_threads(const mc_layer *ly, size_t P, size_t B, int training) {
    float *x = alloc_rand(B * ly->n_in), *R = alloc_rand(B * ly->n_out), *params = alloc_rand(P);
    if (ly->kind == MC_LAYER_BATCHNORM)
        for (size_t i = 0; i < ly->w[3].len; i++) params[ly->w[3].off + (ptrdiff_t)i] += 1.5f;
    mc_error err;
    int before = mc_get_num_threads();
    CHECK(mc_set_num_threads(1, &err) == MC_OK);
    run_result one = run_layer(ly, x, params, P, R, B, training, 0);
    CHECK(mc_set_num_threads(2, &err) == MC_OK);
    run_result two = run_layer(ly, x, params, P, R, B, training, 0);
    CHECK(mc_set_num_threads(3, &err) == MC_OK);
    run_result three = run_layer(ly, x, params, P, R, B, training, 0);
    CHECK(mc_set_num_threads(before, &err) == MC_OK);
    CHECK(same_bits(one.out, three.out, B * ly->n_out));
    CHECK(same_bits(one.dinp, three.dinp, B * ly->n_in));
    CHECK(same_bits(one.grads, three.grads, P));
    run_free(&three);
    CHECK(same_bits(one.out, two.out, B * ly->n_out));
    CHECK(same_bits(one.dinp, two.dinp, B * ly->n_in));
    CHECK(same_bits(one.params, two.params, P));
    for (size_t k = 0; k < ly->n_weights; k++)
        if (ly->w[k].off >= 0 && ly->w[k].trained)
            CHECK(same_bits(one.grads + ly->w[k].off, two.grads + ly->w[k].off, ly->w[k].len));
    free(x);
    free(R);
    free(params);
    run_free(&one);
    run_free(&two);
}

/* init's verdict on a layer: the status, and the message names layers[l] */
static mc_status init_status(mc_layer ly, size_t l) {
    mc_error err = {0};
    mc_status st = ly.ops->init(&ly, l, &err);
    if (st != MC_OK) {
        char want[32];
        snprintf(want, sizeof want, "layers[%zu]: ", l);
        CHECK(strncmp(err.msg, want, strlen(want)) == 0);
    }
    return st;
}

/* --- Conv2D --- */

static void test_conv_case(size_t B, size_t h, size_t w, size_t c, size_t oc, size_t kh, size_t kw, size_t sh,
                           size_t sw, int same, int act, int bias) {
    mc_layer ly = make_layer(&mc_conv2d_ops, MC_LAYER_CONV2D, act, h, w, c, oc, kh, kw, sh, sw, same);
    size_t P = init_layer(&ly, bias ? 3u : 1u);
    CHECK(ly.n_weights == 2 && ly.w[0].len == kh * kw * c * oc && ly.w[1].len == (bias ? oc : 0));
    check_layer(&ly, conv_ref, P, B, 1);
    check_layer(&ly, conv_ref, P, B, 0);
}

static void test_conv(void) {
    test_conv_case(3, 7, 6, 2, 3, 3, 3, 1, 1, 0, MC_ACT_LINEAR, 1);
    test_conv_case(1, 7, 6, 2, 3, 3, 3, 1, 1, 1, MC_ACT_RELU, 1);
    test_conv_case(3, 7, 8, 3, 4, 3, 2, 2, 2, 1, MC_ACT_TANH, 0);
    test_conv_case(3, 9, 7, 1, 2, 3, 3, 2, 1, 0, MC_ACT_SOFTMAX, 1);
    test_conv_case(3, 5, 5, 3, 2, 1, 1, 1, 1, 0, MC_ACT_SIGMOID, 1);   /* direct: no im2col */
    test_conv_case(1, 5, 4, 2, 3, 1, 1, 2, 2, 1, MC_ACT_ELU, 0);      /* 1x1 strided: im2col */
    test_conv_case(3, 2, 3, 2, 2, 5, 4, 1, 1, 1, MC_ACT_LINEAR, 1);   /* kernel larger than the input */
    test_conv_case(1, 6, 6, 2, 2, 2, 2, 3, 3, 1, MC_ACT_RELU, 1);     /* stride above the kernel */
    /* batches of 16 and more sum the weight gradient in groups of samples */
    test_conv_case(17, 5, 4, 2, 3, 3, 3, 1, 1, 1, MC_ACT_RELU, 1);
    test_conv_case(16, 3, 3, 2, 3, 1, 1, 1, 1, 0, MC_ACT_TANH, 1);    /* direct */
    test_conv_case(33, 4, 4, 1, 2, 3, 3, 1, 1, 0, MC_ACT_SOFTMAX, 0);
    /* 3x3 stride 1, 16 channels and more in and out: Winograd's forward */
    test_conv_case(2, 5, 4, 16, 17, 3, 3, 1, 1, 1, MC_ACT_TANH, 1);
}

/* skip_act: dout is already dL/d(pre); the gradients are those of the linear conv */
static void test_conv_skip_act(void) {
    mc_layer lin = make_layer(&mc_conv2d_ops, MC_LAYER_CONV2D, MC_ACT_LINEAR, 6, 5, 2, 3, 3, 3, 1, 1, 1);
    mc_layer soft = make_layer(&mc_conv2d_ops, MC_LAYER_CONV2D, MC_ACT_SOFTMAX, 6, 5, 2, 3, 3, 3, 1, 1, 1);
    size_t P = init_layer(&lin, 3u), B = 3;
    init_layer(&soft, 3u);
    float *x = alloc_rand(B * lin.n_in), *R = alloc_rand(B * lin.n_out), *params = alloc_rand(P);
    run_result a = run_layer(&lin, x, params, P, R, B, 1, 0), b = run_layer(&soft, x, params, P, R, B, 1, 1);
    CHECK(same_bits(a.dinp, b.dinp, B * lin.n_in));
    CHECK(same_bits(a.grads, b.grads, P));
    /* the logits of the softmax conv are the linear conv's output */
    CHECK(same_bits(soft.ops->logits(&soft, x, b.out, b.scratch), a.out, B * lin.n_out));
    free(x);
    free(R);
    free(params);
    run_free(&a);
    run_free(&b);
}

/* the product's NaN/Inf is reported through mc_fwd.nonfinite, even under relu */
static void test_conv_nonfinite(void) {
    mc_layer ly = make_layer(&mc_conv2d_ops, MC_LAYER_CONV2D, MC_ACT_RELU, 5, 5, 1, 2, 3, 3, 1, 1, 0);
    size_t P = init_layer(&ly, 3u), B = 2;
    float *x = alloc_rand(B * ly.n_in), *params = alloc_rand(P), *out = alloc_nan(B * ly.n_out);
    float *scratch = alloc_nan(B * ly.ops->scratch(&ly));
    atomic_int flag = 0;
    mc_fwd f = {out, x, scratch, params, B, 0, 0, NULL, 0, &flag, NULL};
    ly.ops->forward(&ly, &f);
    CHECK(atomic_load(&flag) == 0);
    x[ly.n_in + 12] = NAN;
    ly.ops->forward(&ly, &f);
    CHECK(atomic_load(&flag) == 1);
    free(x);
    free(params);
    free(out);
    free(scratch);
}

static void test_conv_threads(void) {
    mc_layer ly = make_layer(&mc_conv2d_ops, MC_LAYER_CONV2D, MC_ACT_TANH, 14, 13, 4, 16, 3, 3, 1, 1, 1);
    size_t P = init_layer(&ly, 3u);
    check_threads(&ly, P, 24, 1);
    check_threads(&ly, P, 150, 1);  /* 16 groups of at least 9 samples, blocks of several samples */
    mc_layer d = make_layer(&mc_conv2d_ops, MC_LAYER_CONV2D, MC_ACT_RELU, 12, 12, 8, 16, 1, 1, 1, 1, 0);
    P = init_layer(&d, 3u);
    check_threads(&d, P, 24, 1);
}

/* K = 3 * 3 * 64 is cut into chunks, as a product of few rows would not be: a block's rows must
 * be summed like the whole batch's */
static void test_conv_blocks(void) {
    /* the third takes Winograd's F(4x4, 3x3) in inference, its kernel derived once */
    int acts[] = {MC_ACT_RELU, MC_ACT_SOFTMAX, MC_ACT_RELU};
    size_t hw[] = {3, 6, 9}, oc[] = {8, 8, 16};
    for (size_t a = 0; a < 3; a++) {
        mc_layer ly = make_layer(&mc_conv2d_ops, MC_LAYER_CONV2D, acts[a], hw[a], hw[a], 64, oc[a], 3, 3, 1, 1, 0);
        size_t P = init_layer(&ly, 3u), B = 14;
        float *x = alloc_rand(B * ly.n_in), *params = alloc_rand(P);
        check_blocks(&ly, x, params, B);
        free(x);
        free(params);
    }
}

static void test_conv_init_rejects(void) {
    mc_layer good = make_layer(&mc_conv2d_ops, MC_LAYER_CONV2D, MC_ACT_RELU, 8, 8, 2, 4, 3, 3, 2, 2, 0);
    good.w[0].off = 0;
    good.w[1].off = 72;
    CHECK(init_status(good, 4) == MC_OK);
    mc_layer ly = good;
    ly.out.h = 4;  /* valid gives 3; 4 is 'same', whose pad_top is 0 here */
    CHECK(init_status(ly, 4) == MC_OK);
    ly.out.h = 5;
    CHECK(init_status(ly, 4) == MC_ERR_SHAPE);
    ly = good;
    ly.pad_left = 1;
    CHECK(init_status(ly, 2) == MC_ERR_SHAPE);
    ly = good;
    ly.kernel_h = 9;  /* larger than the input: only 'same' */
    CHECK(init_status(ly, 1) == MC_ERR_SHAPE);
    ly = good;
    ly.stride_w = 0;
    CHECK(init_status(ly, 1) == MC_ERR_ARG);
    ly = good;
    ly.kernel_w = 0;
    CHECK(init_status(ly, 1) == MC_ERR_ARG);
    ly = good;
    ly.w[0].off = -1;
    CHECK(init_status(ly, 0) == MC_ERR_ARG);
    ly = good;
    ly.w[2].off = 80;
    CHECK(init_status(ly, 0) == MC_ERR_ARG);
    /* 'same' with the pad Keras does not use */
    mc_layer s = make_layer(&mc_conv2d_ops, MC_LAYER_CONV2D, MC_ACT_RELU, 7, 7, 1, 1, 4, 4, 1, 1, 1);
    s.w[0].off = 0;
    CHECK(init_status(s, 3) == MC_OK);
    CHECK(s.pad_top == 1);
    s.pad_top = 2;
    CHECK(init_status(s, 3) == MC_ERR_SHAPE);
}

/* --- pooling --- */

typedef struct {
    size_t lo, hi;
} span;

/* input rows (or columns) under output row o, the padding left out */
static span window_span(size_t o, size_t k, size_t s, size_t pad, size_t n) {
    ptrdiff_t a = (ptrdiff_t)(o * s) - (ptrdiff_t)pad, b = a + (ptrdiff_t)k;
    span r = {a < 0 ? 0 : (size_t)a, b > (ptrdiff_t)n ? n : (size_t)b};
    return r;
}

/* max (mean when `mean`) over each window's elements inside the input */
static void pool_ref_impl(const mc_layer *ly, double *out, const double *x, size_t B, int mean) {
    size_t C = ly->in.c;
    for (size_t s = 0; s < B; s++)
        for (size_t oy = 0; oy < ly->out.h; oy++)
            for (size_t ox = 0; ox < ly->out.w; ox++)
                for (size_t c = 0; c < C; c++) {
                    span ys = window_span(oy, ly->kernel_h, ly->stride_h, ly->pad_top, ly->in.h);
                    span xs = window_span(ox, ly->kernel_w, ly->stride_w, ly->pad_left, ly->in.w);
                    double acc = mean ? 0.0 : -INFINITY;
                    for (size_t iy = ys.lo; iy < ys.hi; iy++)
                        for (size_t ix = xs.lo; ix < xs.hi; ix++) {
                            double v = x[s * ly->n_in + (iy * ly->in.w + ix) * C + c];
                            acc = mean ? acc + v : (v > acc ? v : acc);
                        }
                    if (mean) acc /= (double)((ys.hi - ys.lo) * (xs.hi - xs.lo));
                    out[s * ly->n_out + (oy * ly->out.w + ox) * C + c] = acc;
                }
}

static void max_ref(const mc_layer *ly, double *out, const double *x, const double *p, size_t B, int training) {
    (void)p;
    (void)training;
    pool_ref_impl(ly, out, x, B, 0);
}

static void avg_ref(const mc_layer *ly, double *out, const double *x, const double *p, size_t B, int training) {
    (void)p;
    (void)training;
    pool_ref_impl(ly, out, x, B, 1);
}

static void gap_ref(const mc_layer *ly, double *out, const double *x, const double *p, size_t B, int training) {
    (void)p;
    (void)training;
    size_t C = ly->in.c, pix = ly->in.h * ly->in.w;
    for (size_t s = 0; s < B; s++)
        for (size_t c = 0; c < C; c++) {
            double acc = 0.0;
            for (size_t q = 0; q < pix; q++) acc += x[s * ly->n_in + q * C + c];
            out[s * C + c] = acc / (double)pix;
        }
}

static void test_pool_case(size_t B, size_t h, size_t w, size_t c, size_t k, size_t st, int same) {
    mc_layer mx = make_layer(&mc_maxpool2d_ops, MC_LAYER_MAXPOOL2D, MC_ACT_LINEAR, h, w, c, c, k, k, st, st, same);
    mc_layer av = make_layer(&mc_avgpool2d_ops, MC_LAYER_AVGPOOL2D, MC_ACT_LINEAR, h, w, c, c, k, k, st, st, same);
    CHECK(init_layer(&mx, 0u) == 0 && mx.n_weights == 0);
    CHECK(init_layer(&av, 0u) == 0 && av.n_weights == 0);
    check_layer(&mx, max_ref, 0, B, 0);
    check_layer(&av, avg_ref, 0, B, 0);
}

static void test_pool(void) {
    test_pool_case(3, 7, 6, 2, 2, 2, 0);  /* valid floors: 7 -> 3 */
    test_pool_case(3, 7, 6, 2, 2, 2, 1);  /* same: 7 -> 4, the last window half outside */
    test_pool_case(1, 7, 7, 3, 3, 2, 1);  /* overlapping windows, a pad on both sides */
    test_pool_case(3, 5, 8, 1, 3, 1, 0);
    test_pool_case(1, 2, 3, 2, 5, 1, 1);  /* pool larger than the input */
    test_pool_case(2, 5, 4, 19, 2, 2, 1); /* a whole group of channels and a part */
    for (size_t b = 1; b <= 3; b += 2) {
        mc_layer g = make_layer(&mc_globalavgpool2d_ops, MC_LAYER_GLOBALAVGPOOL2D, MC_ACT_LINEAR, 5, 3, 4, 4, 0, 0,
                                0, 0, 0);
        g.out.h = g.out.w = 1;
        g.n_out = 4;
        CHECK(init_layer(&g, 0u) == 0);
        check_layer(&g, gap_ref, 0, b, 0);
    }
    mc_layer big = make_layer(&mc_maxpool2d_ops, MC_LAYER_MAXPOOL2D, MC_ACT_LINEAR, 26, 26, 32, 32, 2, 2, 2, 2, 0);
    init_layer(&big, 0u);
    check_threads(&big, 0, 16, 1);
    big.ops = &mc_avgpool2d_ops;
    big.kind = MC_LAYER_AVGPOOL2D;
    check_threads(&big, 0, 16, 1);
}

/* a window holding NaN gives NaN wherever the NaN is in it; -inf windows keep a valid argmax;
 * the first of equal maxima takes the gradient */
static void test_maxpool_special(void) {
    mc_layer ly = make_layer(&mc_maxpool2d_ops, MC_LAYER_MAXPOOL2D, MC_ACT_LINEAR, 2, 6, 1, 1, 2, 2, 2, 2, 0);
    init_layer(&ly, 0u);
    /* windows: columns 0-1, 2-3, 4-5 of both rows */
    float x[12] = {NAN, 5, 1, 2, -INFINITY, -INFINITY,
                   7, 9, 3, NAN, -INFINITY, -INFINITY};
    float out[3], scratch[3], dinp[12], dout[3] = {1, 2, 3};
    mc_fwd f = {out, x, scratch, NULL, 1, 1, 0, NULL, 0, NULL, NULL};
    ly.ops->forward(&ly, &f);
    CHECK(isnan(out[0]) && isnan(out[1]));
    CHECK(out[2] == -INFINITY);
    mc_bwd b = {dinp, dout, x, out, scratch, NULL, NULL, 1, 1, 0};
    ly.ops->backward(&ly, &b);
    CHECK(dinp[0] == 1 && dinp[9] == 2 && dinp[4] == 3);
    float sum = 0;
    for (size_t i = 0; i < 12; i++) sum += dinp[i];
    CHECK(sum == 6);
    float ties[12] = {4, 4, 0, 0, 0, 0, 4, 4, 0, 0, 0, 0};
    f.inp = ties;
    b.inp = ties;
    ly.ops->forward(&ly, &f);
    ly.ops->backward(&ly, &b);
    CHECK(out[0] == 4 && dinp[0] == 1 && dinp[1] == 0 && dinp[6] == 0 && dinp[7] == 0);
    /* the same over 16 channels at once: NaN after a number in the even ones */
    mc_layer wide = make_layer(&mc_maxpool2d_ops, MC_LAYER_MAXPOOL2D, MC_ACT_LINEAR, 1, 2, 16, 16, 1, 2, 1, 2, 0);
    init_layer(&wide, 0u);
    float wx[32], wout[16], wscratch[16], wdinp[32], wdout[16];
    for (size_t c = 0; c < 16; c++) {
        wx[c] = c % 2 ? 0.0f : 2.0f;
        wx[16 + c] = c % 2 ? 1.0f : NAN;
        wdout[c] = (float)c;
    }
    mc_fwd wf = {wout, wx, wscratch, NULL, 1, 1, 0, NULL, 0, NULL, NULL};
    wide.ops->forward(&wide, &wf);
    mc_bwd wb = {wdinp, wdout, wx, wout, wscratch, NULL, NULL, 1, 1, 0};
    wide.ops->backward(&wide, &wb);
    for (size_t c = 0; c < 16; c++) {
        CHECK(c % 2 ? wout[c] == 1.0f : isnan(wout[c]));
        CHECK(wdinp[c] == 0.0f && wdinp[16 + c] == (float)c);
    }
}

static void test_pool_init_rejects(void) {
    mc_layer good = make_layer(&mc_maxpool2d_ops, MC_LAYER_MAXPOOL2D, MC_ACT_LINEAR, 11, 11, 3, 3, 2, 2, 2, 2, 0);
    CHECK(good.out.h == 5 && init_status(good, 2) == MC_OK);
    mc_layer ly = good;
    ly.out.h = 6;  /* 'same' gives 6, but with pad_top 0 ... which is its pad: accepted */
    CHECK(init_status(ly, 2) == MC_OK);
    ly.out.h = 7;
    CHECK(init_status(ly, 2) == MC_ERR_SHAPE);
    ly = good;
    ly.out.c = 4;
    CHECK(init_status(ly, 2) == MC_ERR_SHAPE);
    ly = good;
    ly.activation = MC_ACT_RELU;
    CHECK(init_status(ly, 2) == MC_ERR_ARG);
    ly = good;
    ly.w[0].off = 0;
    CHECK(init_status(ly, 2) == MC_ERR_ARG);
    ly = good;
    ly.ops = &mc_avgpool2d_ops;
    ly.pad_top = 1;
    CHECK(init_status(ly, 2) == MC_ERR_SHAPE);
    mc_layer g = make_layer(&mc_globalavgpool2d_ops, MC_LAYER_GLOBALAVGPOOL2D, MC_ACT_LINEAR, 5, 5, 4, 4, 0, 0, 0, 0,
                            0);
    CHECK(init_status(g, 1) == MC_ERR_SHAPE);  /* output left at (5, 5, 4) */
    g.out.h = g.out.w = 1;
    CHECK(init_status(g, 1) == MC_OK);
    g.out.c = 3;
    CHECK(init_status(g, 1) == MC_ERR_SHAPE);
}

/* --- BatchNormalization --- */

static void bn_ref(const mc_layer *ly, double *out, const double *x, const double *p, size_t B, int training) {
    size_t C = ly->in.c, n = B * ly->in.h * ly->in.w;
    double eps = ly->f[MC_FCOL_EPSILON];
    for (size_t c = 0; c < C; c++) {
        double mean = p[ly->w[2].off + (ptrdiff_t)c], var = p[ly->w[3].off + (ptrdiff_t)c];
        if (training && ly->trainable) {
            mean = var = 0.0;
            for (size_t i = 0; i < n; i++) mean += x[i * C + c];
            mean /= (double)n;
            for (size_t i = 0; i < n; i++) var += (x[i * C + c] - mean) * (x[i * C + c] - mean);
            var /= (double)n;
        }
        double gamma = ly->w[0].off >= 0 ? p[ly->w[0].off + (ptrdiff_t)c] : 1.0;
        double beta = ly->w[1].off >= 0 ? p[ly->w[1].off + (ptrdiff_t)c] : 0.0;
        for (size_t i = 0; i < n; i++) out[i * C + c] = (x[i * C + c] - mean) / sqrt(var + eps) * gamma + beta;
    }
}

static mc_layer make_bn(size_t h, size_t w, size_t c, double eps, double momentum) {
    mc_layer ly = make_layer(&mc_batchnorm_ops, MC_LAYER_BATCHNORM, MC_ACT_LINEAR, h, w, c, c, 0, 0, 0, 0, 0);
    ly.f[MC_FCOL_EPSILON] = eps;
    ly.f[MC_FCOL_MOMENTUM] = momentum;
    return ly;
}

static void test_batchnorm(void) {
    struct {
        size_t B, h, w, c;
        unsigned present;  /* gamma, beta, moving mean, moving variance */
    } cases[] = {{3, 4, 3, 2, 15u}, {1, 4, 3, 3, 15u}, {3, 1, 1, 5, 15u}, {3, 3, 2, 2, 12u}, {2, 2, 3, 17, 13u}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mc_layer ly = make_bn(cases[k].h, cases[k].w, cases[k].c, 1e-3, 0.99);
        size_t P = init_layer(&ly, cases[k].present);
        CHECK(ly.n_weights == 4 && ly.w[2].len == cases[k].c && !ly.w[2].trained && !ly.w[3].trained);
        CHECK(ly.w[0].trained && ly.w[1].trained && ly.w[0].len == (cases[k].present & 1u ? cases[k].c : 0));
        check_layer(&ly, bn_ref, P, cases[k].B, 1);
        check_layer(&ly, bn_ref, P, cases[k].B, 0);
        ly.trainable = 0;  /* frozen: inference mode inside fit, as Keras 3 */
        check_layer(&ly, bn_ref, P, cases[k].B, 1);
    }
    mc_layer big = make_bn(13, 13, 40, 1e-3, 0.9);
    size_t P = init_layer(&big, 15u);
    check_threads(&big, P, 16, 1);
    check_threads(&big, P, 16, 0);
}

/* training moves the moving statistics toward the batch's (biased variance); inference and a
 * frozen layer leave them */
static void test_batchnorm_moving(void) {
    size_t B = 3, C = 2;
    mc_layer ly = make_bn(2, 2, C, 1e-3, 0.9);
    size_t P = init_layer(&ly, 15u), n = B * 4;
    float *x = alloc_rand(B * ly.n_in), *R = alloc_rand(B * ly.n_out), *params = alloc_rand(P);
    for (size_t c = 0; c < C; c++) params[ly.w[3].off + (ptrdiff_t)c] = 1.0f + (float)c;
    run_result r = run_layer(&ly, x, params, P, R, B, 1, 0);
    for (size_t c = 0; c < C; c++) {
        double mean = 0.0, var = 0.0;
        for (size_t i = 0; i < n; i++) mean += x[i * C + c];
        mean /= (double)n;
        for (size_t i = 0; i < n; i++) var += (x[i * C + c] - mean) * (x[i * C + c] - mean);
        var /= (double)n;
        size_t m = (size_t)ly.w[2].off + c, v = (size_t)ly.w[3].off + c;
        CHECK_NEAR(r.params[m], 0.9 * params[m] + 0.1 * mean, 1e-6, 1e-5);
        CHECK_NEAR(r.params[v], 0.9 * params[v] + 0.1 * var, 1e-6, 1e-5);
    }
    CHECK(same_bits(r.params, params, 2 * C));  /* gamma and beta untouched */
    run_result inf = run_layer(&ly, x, params, P, R, B, 0, 0);
    CHECK(same_bits(inf.params, params, P));
    ly.trainable = 0;
    run_result frozen = run_layer(&ly, x, params, P, R, B, 1, 0);
    CHECK(same_bits(frozen.params, params, P));
    CHECK(same_bits(frozen.out, inf.out, B * ly.n_out));
    free(x);
    free(R);
    free(params);
    run_free(&r);
    run_free(&inf);
    run_free(&frozen);
}

static void test_batchnorm_init_rejects(void) {
    mc_layer good = make_bn(3, 3, 4, 1e-3, 0.99);
    for (size_t i = 0; i < MC_MAX_WEIGHTS; i++) good.w[i].off = (ptrdiff_t)(4 * i);
    CHECK(init_status(good, 5) == MC_OK);
    mc_layer ly = good;
    ly.out.c = 3;
    CHECK(init_status(ly, 5) == MC_ERR_SHAPE);
    ly = good;
    ly.w[3].off = -1;
    CHECK(init_status(ly, 5) == MC_ERR_ARG);
    double bad_eps[] = {0.0, -1e-3, NAN, INFINITY};
    for (size_t i = 0; i < 4; i++) {
        ly = good;
        ly.f[MC_FCOL_EPSILON] = bad_eps[i];
        CHECK(init_status(ly, 5) == MC_ERR_ARG);
    }
    double bad_momentum[] = {-0.1, 1.5, NAN};
    for (size_t i = 0; i < 3; i++) {
        ly = good;
        ly.f[MC_FCOL_MOMENTUM] = bad_momentum[i];
        CHECK(init_status(ly, 5) == MC_ERR_ARG);
    }
    ly = good;
    ly.activation = MC_ACT_TANH;
    CHECK(init_status(ly, 5) == MC_ERR_ARG);
}

/* --- ReLU (Keras's relu with negative_slope, max_value, threshold) --- */

static void relu_ref(const mc_layer *ly, double *out, const double *x, const double *p, size_t B, int training) {
    (void)p, (void)training;
    double slope = (float)ly->f[MC_FCOL_NEGATIVE_SLOPE], max = (float)ly->f[MC_FCOL_MAX_VALUE], t = threshold_of(ly);
    for (size_t i = 0; i < B * ly->n_in; i++) out[i] = x[i] > t ? (x[i] < max ? x[i] : max) : slope * (x[i] - t);
}

static mc_layer make_relu(size_t h, size_t w, size_t c, double slope, double max, float threshold) {
    mc_layer ly = make_layer(&mc_relu_ops, MC_LAYER_RELU, MC_ACT_LINEAR, h, w, c, c, 0, 0, 0, 0, 0);
    ly.f[MC_FCOL_THRESHOLD] = threshold;
    ly.f[MC_FCOL_NEGATIVE_SLOPE] = slope;
    ly.f[MC_FCOL_MAX_VALUE] = max;
    return ly;
}

static void test_relu(void) {
    struct {
        double slope, max;
        float threshold;
    } cases[] = {{0.0, INFINITY, 0.0f}, {0.3, INFINITY, 0.0f}, {0.0, 0.5, 0.0f}, {0.5, 0.6, 0.25f},
                 {1.5, INFINITY, 0.1f}, {0.2, 0.1, 0.3f}};  /* the last: max below the threshold */
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mc_layer ly = make_relu(2, 3, 4, cases[k].slope, cases[k].max, cases[k].threshold);
        size_t P = init_layer(&ly, 0u);
        CHECK(ly.n_weights == 0 && P == 0);
        check_layer(&ly, relu_ref, P, 3, 1);
        check_layer(&ly, relu_ref, P, 2, 0);
    }
    /* exact values: at the threshold and the maximum, infinities, NaN, the derivative's sides */
    mc_layer ly = make_relu(1, 1, 7, 0.5, 2.0, 1.0f);
    init_layer(&ly, 0u);
    float x[7] = {1.0f, 2.0f, 3.0f, -INFINITY, INFINITY, NAN, 0.0f}, out[7], d[7], dout[7] = {1, 1, 1, 1, 1, 1, 1};
    mc_fwd f = {out, x, NULL, NULL, 1, 0, 0, NULL, 0, NULL, NULL};
    ly.ops->forward(&ly, &f);
    float want[7] = {0.0f, 2.0f, 2.0f, -INFINITY, 2.0f, NAN, -0.5f};
    for (size_t i = 0; i < 7; i++) CHECK(i == 5 ? out[i] != out[i] : out[i] == want[i]);
    mc_bwd b = {d, dout, x, out, NULL, NULL, NULL, 1, 0, 0};
    ly.ops->backward(&ly, &b);
    float dwant[7] = {0.5f, 0.0f, 0.0f, 0.5f, 0.0f, 0.5f, 0.5f};
    for (size_t i = 0; i < 7; i++) CHECK(d[i] == dwant[i]);
    /* a slope of 0 gives 0 below the threshold, -inf included (no 0 * inf) */
    mc_layer flat = make_relu(1, 1, 7, 0.0, INFINITY, 0.0f);
    init_layer(&flat, 0u);
    ly.ops->forward(&flat, &f);
    CHECK(out[3] == 0.0f && out[4] == INFINITY && out[5] != out[5] && out[0] == 1.0f);
}

static void test_relu_init_rejects(void) {
    mc_layer good = make_relu(2, 2, 3, 0.3, 6.0, 0.5f);
    CHECK(init_status(good, 2) == MC_OK);
    double bad_slope[] = {-0.1, NAN, INFINITY};
    for (size_t i = 0; i < 3; i++) {
        mc_layer ly = good;
        ly.f[MC_FCOL_NEGATIVE_SLOPE] = bad_slope[i];
        CHECK(init_status(ly, 2) == MC_ERR_ARG);
    }
    double bad_max[] = {-1.0, NAN};
    for (size_t i = 0; i < 2; i++) {
        mc_layer ly = good;
        ly.f[MC_FCOL_MAX_VALUE] = bad_max[i];
        CHECK(init_status(ly, 2) == MC_ERR_ARG);
    }
    float bad_t[] = {-1.0f, NAN, INFINITY};
    for (size_t i = 0; i < 3; i++) {
        mc_layer ly = make_relu(2, 2, 3, 0.3, 6.0, bad_t[i]);
        CHECK(init_status(ly, 2) == MC_ERR_ARG);
    }
    mc_layer ly = good;
    ly.f[MC_FCOL_THRESHOLD] = 1e39;  /* finite as a double, infinite in float32 */
    CHECK(init_status(ly, 2) == MC_ERR_ARG);
    ly = good;
    ly.out.c = 2;
    CHECK(init_status(ly, 2) == MC_ERR_SHAPE);
    ly = good;
    ly.activation = MC_ACT_TANH;
    CHECK(init_status(ly, 2) == MC_ERR_ARG);
    ly = good;
    ly.w[0].off = 0;
    CHECK(init_status(ly, 2) == MC_ERR_ARG);
}

/* --- Normalization (fixed statistics, or their inverse) --- */

static void normalization_ref(const mc_layer *ly, double *out, const double *x, const double *p, size_t B,
                              int training) {
    (void)training;
    size_t C = ly->in.c, n = B * ly->in.h * ly->in.w;
    double eps = (float)ly->f[MC_FCOL_EPSILON];
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < C; c++) {
            double mean = p[ly->w[0].off + (ptrdiff_t)c], d = sqrt(p[ly->w[1].off + (ptrdiff_t)c]);
            d = d < eps ? eps : d;
            out[i * C + c] = ly->f[MC_FCOL_INVERT] != 0.0 ? mean + x[i * C + c] * d : (x[i * C + c] - mean) / d;
        }
}

static mc_layer make_normalization(size_t h, size_t w, size_t c, int invert) {
    mc_layer ly = make_layer(&mc_normalization_ops, MC_LAYER_NORMALIZATION, MC_ACT_LINEAR, h, w, c, c, 0, 0, 0, 0, 0);
    ly.f[MC_FCOL_EPSILON] = 1e-7;
    ly.f[MC_FCOL_INVERT] = invert;
    return ly;
}

static void test_normalization(void) {
    struct {
        size_t B, h, w, c;
        int invert;
    } cases[] = {{3, 1, 1, 5, 0}, {3, 1, 1, 5, 1}, {2, 4, 3, 2, 0}, {3, 1, 6, 1, 0}, {1, 2, 2, 17, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mc_layer ly = make_normalization(cases[k].h, cases[k].w, cases[k].c, cases[k].invert);
        size_t P = init_layer(&ly, 3u);
        CHECK(ly.n_weights == 2 && ly.w[0].len == cases[k].c && ly.w[1].len == cases[k].c);
        CHECK(!ly.w[0].trained && !ly.w[1].trained);
        check_layer(&ly, normalization_ref, P, cases[k].B, 1);
        check_layer(&ly, normalization_ref, P, cases[k].B, 0);
    }
}

/* tiny variances: the denominator is epsilon, below it sqrt(variance); NaN stays NaN */
static void test_normalization_epsilon(void) {
    mc_layer ly = make_normalization(1, 1, 4, 0);
    size_t P = init_layer(&ly, 3u);
    float params[8] = {0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 1e-16f, 4.0f, NAN}, x[4] = {1.0f, 1.0f, 3.0f, 1.0f}, out[4];
    CHECK(P == 8);
    mc_fwd f = {out, x, NULL, params, 1, 0, 0, NULL, 0, NULL, NULL};
    ly.ops->forward(&ly, &f);
    CHECK(out[0] == 1.0f / 1e-7f && out[1] == 0.0f && out[2] == 1.5f && out[3] != out[3]);
    ly.f[MC_FCOL_INVERT] = 1.0;
    ly.ops->forward(&ly, &f);
    CHECK(out[0] == 1e-7f && out[1] == 1.0f + 1e-7f && out[2] == 6.0f && out[3] != out[3]);
}

static void test_normalization_init_rejects(void) {
    mc_layer good = make_normalization(2, 2, 3, 0);
    good.w[0].off = 0;
    good.w[1].off = 3;
    CHECK(init_status(good, 4) == MC_OK);
    mc_layer ly = good;
    ly.w[1].off = -1;
    CHECK(init_status(ly, 4) == MC_ERR_ARG);
    double bad_eps[] = {0.0, -1e-7, NAN, INFINITY};
    for (size_t i = 0; i < 4; i++) {
        ly = good;
        ly.f[MC_FCOL_EPSILON] = bad_eps[i];
        CHECK(init_status(ly, 4) == MC_ERR_ARG);
    }
    double bad_invert[] = {0.5, 2.0, NAN};
    for (size_t i = 0; i < 3; i++) {
        ly = good;
        ly.f[MC_FCOL_INVERT] = bad_invert[i];
        CHECK(init_status(ly, 4) == MC_ERR_ARG);
    }
    ly = good;
    ly.out.w = 1;
    CHECK(init_status(ly, 4) == MC_ERR_SHAPE);
    ly = good;
    ly.activation = MC_ACT_RELU;
    CHECK(init_status(ly, 4) == MC_ERR_ARG);
}

int main(void) {
    test_conv();
    test_conv_skip_act();
    test_conv_nonfinite();
    test_conv_threads();
    test_conv_blocks();
    test_conv_init_rejects();
    test_pool();
    test_maxpool_special();
    test_pool_init_rejects();
    test_batchnorm();
    test_batchnorm_moving();
    test_batchnorm_init_rejects();
    test_relu();
    test_relu_init_rejects();
    test_normalization();
    test_normalization_epsilon();
    test_normalization_init_rejects();
    MC_TEST_EXIT();
}
