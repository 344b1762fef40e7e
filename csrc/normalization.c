/* Keras's Normalization layer: out = (inp - mean) / max(sqrt(variance), epsilon) per channel, or with
 * invert out = mean + inp * max(sqrt(variance), epsilon), each operation in float32 as Keras does it,
 * so that the results are its bits. Channels are the last axis; a model describes axis=None as one
 * channel holding every value of a sample. The statistics are weights the layer never changes (adapt()
 * computes them in Python): no weight gradient, no state, no batch statistics. */
#include <math.h>

#include "activations.h"
#include "layer.h"

enum { W_MEAN = 0, W_VAR = 1 };

/* max(sqrt(variance), epsilon) with NumPy's maximum: a NaN variance gives NaN */
static float denominator(float var, float eps) {
    float s = sqrtf(var);
    return s < eps ? eps : s;
}

static int inverted(const mc_layer *ly) { return ly->f[MC_FCOL_INVERT] != 0.0; }

static mc_status normalization_init(mc_layer *ly, size_t l, mc_error *err) {
    if (ly->out.h != ly->in.h || ly->out.w != ly->in.w || ly->out.c != ly->in.c)
        return mc_set_error(err, MC_ERR_SHAPE,
                            "layers[%zu]: Normalization keeps its input's shape (%zu, %zu, %zu), found output "
                            "(%zu, %zu, %zu)",
                            l, ly->in.h, ly->in.w, ly->in.c, ly->out.h, ly->out.w, ly->out.c);
    if (ly->activation != MC_ACT_LINEAR)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: Normalization has no activation (code %d), found code %d",
                            l, MC_ACT_LINEAR, ly->activation);
    double eps = ly->f[MC_FCOL_EPSILON], inv = ly->f[MC_FCOL_INVERT];
    if (!(eps > 0.0) || !isfinite(eps))
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: Normalization epsilon must be a finite number > 0, found %g",
                            l, eps);
    if (inv != 0.0 && inv != 1.0)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: Normalization invert must be 0 or 1, found %g", l, inv);
    if (ly->w[W_MEAN].off < 0 || ly->w[W_VAR].off < 0)
        return mc_set_error(err, MC_ERR_ARG,
                            "layers[%zu]: Normalization needs mean and variance as weights 0 and 1, found offsets "
                            "%td and %td",
                            l, ly->w[W_MEAN].off, ly->w[W_VAR].off);
    ly->w[W_MEAN] = (mc_weight){ly->w[W_MEAN].off, ly->in.c, 0};
    ly->w[W_VAR] = (mc_weight){ly->w[W_VAR].off, ly->in.c, 0};
    ly->n_weights = 2;
    return MC_OK;
}

static size_t normalization_scratch(const mc_layer *ly) {
    (void)ly;
    return 0;
}

static void normalization_forward(const mc_layer *ly, const mc_fwd *f) {
    size_t C = ly->in.c, pixels = f->rows * ly->in.h * ly->in.w;
    const float *mean = f->params + ly->w[W_MEAN].off, *var = f->params + ly->w[W_VAR].off;
    float eps = (float)ly->f[MC_FCOL_EPSILON];
    int inv = inverted(ly);
    for (size_t p = 0; p < pixels; p++) {
        const float *x = f->inp + p * C;
        float *o = f->out + p * C;
        if (inv)
            for (size_t c = 0; c < C; c++) o[c] = mean[c] + x[c] * denominator(var[c], eps);
        else
            for (size_t c = 0; c < C; c++) o[c] = (x[c] - mean[c]) / denominator(var[c], eps);
    }
}

/* dinp = dout / max(sqrt(variance), epsilon) (dout times it with invert): the gradient of Keras's
 * division (TensorFlow's RealDiv: grad / y) */
static void normalization_backward(const mc_layer *ly, const mc_bwd *b) {
    size_t C = ly->in.c, pixels = b->rows * ly->in.h * ly->in.w;
    const float *var = b->params + ly->w[W_VAR].off;
    float eps = (float)ly->f[MC_FCOL_EPSILON];
    int inv = inverted(ly);
    for (size_t p = 0; p < pixels; p++) {
        const float *dy = b->dout + p * C;
        float *dx = b->dinp + p * C;
        if (inv)
            for (size_t c = 0; c < C; c++) dx[c] = dy[c] * denominator(var[c], eps);
        else
            for (size_t c = 0; c < C; c++) dx[c] = dy[c] / denominator(var[c], eps);
    }
}

const mc_layer_ops mc_normalization_ops = {
    .name = "Normalization",
    .init = normalization_init,
    .scratch = normalization_scratch,
    .forward = normalization_forward,
    .backward = normalization_backward,
};
