/* The layer kinds that map each sample to one of the same shape: Activation, Dropout, Rescaling. */
#include <math.h>
#include <string.h>

#include "activations.h"
#include "layer.h"
#include "rng.h"

static mc_status same_shape(const mc_layer *ly, size_t l, mc_error *err) {
    if (ly->in.h != ly->out.h || ly->in.w != ly->out.w || ly->in.c != ly->out.c)
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: %s is element-wise, so its output shape must equal its "
                            "input shape, got (%zu, %zu, %zu) and (%zu, %zu, %zu)", l, ly->ops->name, ly->in.h,
                            ly->in.w, ly->in.c, ly->out.h, ly->out.w, ly->out.c);
    for (size_t i = 0; i < MC_MAX_WEIGHTS; i++)
        if (ly->w[i].off != -1)
            return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: %s has no weights, so weight %zu's offset must be -1, "
                                "got %lld", l, ly->ops->name, i, (long long)ly->w[i].off);
    return MC_OK;
}

static size_t no_scratch(const mc_layer *ly) {
    (void)ly;
    return 0;
}

static void copy_rows(float *dst, const float *src, size_t rows, size_t n) {
    if (dst != src) memcpy(dst, src, rows * n * sizeof *dst);
}

/* --- Activation: softmax over the last axis, the others element by element --- */

static mc_status activation_init(mc_layer *ly, size_t l, mc_error *err) { return same_shape(ly, l, err); }

static void activation_forward(const mc_layer *ly, const mc_fwd *f) {
    mc_activation_forward(ly->activation, f->out, f->inp, f->rows * ly->in.h * ly->in.w, ly->in.c);
}

static void activation_backward(const mc_layer *ly, const mc_bwd *b) {
    if (b->skip_act)
        copy_rows(b->dinp, b->dout, b->rows, ly->n_in);
    else
        mc_activation_backward(ly->activation, b->dinp, b->dout, b->inp, b->out, b->rows * ly->in.h * ly->in.w,
                               ly->in.c);
}

static const float *activation_logits(const mc_layer *ly, const float *inp, const float *out, const float *scratch) {
    (void)ly, (void)out, (void)scratch;
    return inp;
}

const mc_layer_ops mc_activation_ops = {
    .name = "activation",
    .init = activation_init,
    .scratch = no_scratch,
    .forward = activation_forward,
    .backward = activation_backward,
    .logits = activation_logits,
};

/* --- Dropout: inverted, masks a pure function of (seed, step, layer, element of the batch) --- */

static mc_status dropout_init(mc_layer *ly, size_t l, mc_error *err) {
    double rate = ly->f[MC_FCOL_RATE];
    if (!(rate >= 0.0 && rate <= 1.0))
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: dropout rate must be in [0, 1], got %g", l, rate);
    return same_shape(ly, l, err);
}

static size_t dropout_scratch(const mc_layer *ly) { return ly->n_in; }

static int dropping(const mc_layer *ly, int training) { return training && ly->f[MC_FCOL_RATE] > 0.0; }

static void dropout_forward(const mc_layer *ly, const mc_fwd *f) {
    size_t T = f->rows * ly->n_in;
    if (!dropping(ly, f->training)) {
        copy_rows(f->out, f->inp, f->rows, ly->n_in);
        return;
    }
    /* keep with probability 1 - rate; kept units scaled by 1/(1-rate) */
    double rate = ly->f[MC_FCOL_RATE];
    float scale = rate < 1.0 ? (float)(1.0 / (1.0 - rate)) : 0.0f;
    size_t base = f->r0 * ly->n_in;
    for (size_t i = 0; i < T; i++) {
        f->scratch[i] = mc_rng_uniform(f->key, base + i) >= rate ? scale : 0.0f;
        f->out[i] = f->inp[i] * f->scratch[i];
    }
}

static void dropout_backward(const mc_layer *ly, const mc_bwd *b) {
    size_t T = b->rows * ly->n_in;
    if (!dropping(ly, b->training)) {
        copy_rows(b->dinp, b->dout, b->rows, ly->n_in);
        return;
    }
    for (size_t i = 0; i < T; i++) b->dinp[i] = b->dout[i] * b->scratch[i];
}

const mc_layer_ops mc_dropout_ops = {
    .name = "dropout",
    .init = dropout_init,
    .scratch = dropout_scratch,
    .forward = dropout_forward,
    .backward = dropout_backward,
};

/* --- Rescaling: out = inp * scale + offset, both rounded to float32 first --- */

static mc_status rescaling_init(mc_layer *ly, size_t l, mc_error *err) {
    if (!isfinite(ly->f[MC_FCOL_SCALE]) || !isfinite(ly->f[MC_FCOL_OFFSET]))
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: rescaling scale and offset must be finite, got %g and %g",
                            l, ly->f[MC_FCOL_SCALE], ly->f[MC_FCOL_OFFSET]);
    return same_shape(ly, l, err);
}

static void rescaling_forward(const mc_layer *ly, const mc_fwd *f) {
    float s = (float)ly->f[MC_FCOL_SCALE], o = (float)ly->f[MC_FCOL_OFFSET];
    size_t T = f->rows * ly->n_in;
    for (size_t i = 0; i < T; i++) f->out[i] = f->inp[i] * s + o;
}

static void rescaling_backward(const mc_layer *ly, const mc_bwd *b) {
    float s = (float)ly->f[MC_FCOL_SCALE];
    size_t T = b->rows * ly->n_in;
    for (size_t i = 0; i < T; i++) b->dinp[i] = b->dout[i] * s;
}

static int rescaling_affine(const mc_layer *ly, float *scale, float *offset) {
    *scale = (float)ly->f[MC_FCOL_SCALE];
    *offset = (float)ly->f[MC_FCOL_OFFSET];
    return 1;
}

const mc_layer_ops mc_rescaling_ops = {
    .name = "rescaling",
    .init = rescaling_init,
    .scratch = no_scratch,
    .forward = rescaling_forward,
    .backward = rescaling_backward,
    .affine = rescaling_affine,
};
