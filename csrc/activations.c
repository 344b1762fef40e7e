/* Activations and their derivatives. The derivative uses whichever of (inp, out) is cheaper and
 * stable; softmax subtracts the row max before exp. Derivatives at kinks follow the frameworks:
 * relu'(0) = 0, leaky_relu'(0) = slope. No allocation, no fast-math tricks. */
#include "activations.h"

#include <math.h>

#include "common.h"
#include "exp_nonpos.h"

#define SELU_ALPHA 1.67326324f  /* Keras selu constants (Klambauer et al. 2017) */
#define SELU_SCALE 1.05070098f
#define LEAKY_SLOPE 0.2f
#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

float mc_sigmoidf(float x) {
    /* exp of a non-positive number only: never overflows */
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

float mc_row_max(const float *x, size_t n) {
    float mx = x[0];
    for (size_t j = 1; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

/* x[k] = e^x[k] (x[k] <= 0) over a flat array. Compiled also for AVX2 and AVX-512 and picked at
 * load time, as scan.c's loop is (4-wide, it was 3-4% of predicting the 10k test set); element-wise
 * without contraction, so every width gives the same bits (checked on all 2^32 inputs). */
MC_ALL_WIDTHS
static void exp_nonpos_all(float *x, size_t n) {
    for (size_t k = 0; k < n; k++) x[k] = mc_exp_nonpos(x[k]);
}

void mc_exp_shifted_rows(float *out, const float *inp, size_t B, size_t n) {
    /* subtract the row max: exp never overflows and the largest term is exactly 1 */
    for (size_t i = 0; i < B; i++) {
        const float *x = inp + i * n;
        float *y = out + i * n, mx = mc_row_max(x, n);
        for (size_t j = 0; j < n; j++) y[j] = x[j] - mx;
    }
    /* one flat loop over the whole batch: rows of 10 classes are too short to vectorise alone */
    exp_nonpos_all(out, B * n);
}

static void softmax_rows(float *out, const float *inp, size_t B, size_t n) {
    mc_exp_shifted_rows(out, inp, B, n);
    for (size_t i = 0; i < B; i++) {
        float *y = out + i * n;
        double s = 0.0;
        for (size_t j = 0; j < n; j++) s += y[j];
        float inv = (float)(1.0 / s);
        for (size_t j = 0; j < n; j++) y[j] *= inv;
    }
}

static void softmax_rows_backward(float *dinp, const float *dout, const float *out, size_t B, size_t n) {
    for (size_t i = 0; i < B; i++) {
        const float *g = dout + i * n, *y = out + i * n;
        float *d = dinp + i * n;
        double dot = 0.0;
        for (size_t j = 0; j < n; j++) dot += (double)g[j] * y[j];
        float fdot = (float)dot;
        for (size_t j = 0; j < n; j++) d[j] = y[j] * (g[j] - fdot);
    }
}

void mc_activation_forward(int act, float *out, const float *inp, size_t B, size_t n) {
    size_t T = B * n;
    switch (act) {
    case MC_ACT_LINEAR:
        if (out != inp) for (size_t i = 0; i < T; i++) out[i] = inp[i];
        break;
    case MC_ACT_RELU:
        for (size_t i = 0; i < T; i++) out[i] = inp[i] > 0.0f || inp[i] != inp[i] ? inp[i] : 0.0f; /* NaN stays NaN */
        break;
    case MC_ACT_SIGMOID:
        for (size_t i = 0; i < T; i++) out[i] = mc_sigmoidf(inp[i]);
        break;
    case MC_ACT_TANH:
        for (size_t i = 0; i < T; i++) out[i] = tanhf(inp[i]);
        break;
    case MC_ACT_SOFTMAX:
        softmax_rows(out, inp, B, n);
        break;
    case MC_ACT_ELU:
        /* expm1 keeps precision for small negative x */
        for (size_t i = 0; i < T; i++) out[i] = inp[i] > 0.0f ? inp[i] : expm1f(inp[i]);
        break;
    case MC_ACT_SELU:
        for (size_t i = 0; i < T; i++)
            out[i] = SELU_SCALE * (inp[i] > 0.0f ? inp[i] : SELU_ALPHA * expm1f(inp[i]));
        break;
    case MC_ACT_GELU:
        for (size_t i = 0; i < T; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * INV_SQRT2));
        break;
    case MC_ACT_SILU:
        for (size_t i = 0; i < T; i++) out[i] = inp[i] * mc_sigmoidf(inp[i]);
        break;
    case MC_ACT_SOFTPLUS:
        /* max(x, 0) + log1p(exp(-|x|)): no overflow, and log1p keeps the tail accurate */
        for (size_t i = 0; i < T; i++) {
            float x = inp[i];
            out[i] = (x > 0.0f ? x : 0.0f) + log1pf(expf(-fabsf(x)));
        }
        break;
    case MC_ACT_LEAKY_RELU:
        for (size_t i = 0; i < T; i++) out[i] = inp[i] > 0.0f ? inp[i] : LEAKY_SLOPE * inp[i];
        break;
    case MC_ACT_SOFTSIGN:
        for (size_t i = 0; i < T; i++) out[i] = inp[i] / (1.0f + fabsf(inp[i]));
        break;
    case MC_ACT_EXPONENTIAL:
        for (size_t i = 0; i < T; i++) out[i] = expf(inp[i]);
        break;
    default:
        break;
    }
}

void mc_activation_backward(int act, float *dinp, const float *dout, const float *inp, const float *out,
                            size_t B, size_t n) {
    size_t T = B * n;
    switch (act) {
    case MC_ACT_LINEAR:
        if (dinp != dout) for (size_t i = 0; i < T; i++) dinp[i] = dout[i];
        break;
    case MC_ACT_RELU:
        for (size_t i = 0; i < T; i++) dinp[i] = inp[i] > 0.0f ? dout[i] : 0.0f;
        break;
    case MC_ACT_SIGMOID:
        for (size_t i = 0; i < T; i++) dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
        break;
    case MC_ACT_TANH:
        for (size_t i = 0; i < T; i++) dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
        break;
    case MC_ACT_SOFTMAX:
        softmax_rows_backward(dinp, dout, out, B, n);
        break;
    case MC_ACT_ELU:
        /* for x <= 0: d/dx (exp(x) - 1) = exp(x); exp(x) itself, not out + 1, keeps its relative precision */
        for (size_t i = 0; i < T; i++) dinp[i] = inp[i] > 0.0f ? dout[i] : dout[i] * expf(inp[i]);
        break;
    case MC_ACT_SELU:
        for (size_t i = 0; i < T; i++)
            dinp[i] = dout[i] * (inp[i] > 0.0f ? SELU_SCALE : SELU_SCALE * SELU_ALPHA * expf(inp[i]));
        break;
    case MC_ACT_GELU:
        for (size_t i = 0; i < T; i++) {
            float x = inp[i];
            float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
            float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
            dinp[i] = dout[i] * (cdf + x * pdf);
        }
        break;
    case MC_ACT_SILU:
        for (size_t i = 0; i < T; i++) {
            float s = mc_sigmoidf(inp[i]);
            dinp[i] = dout[i] * s * (1.0f + inp[i] * (1.0f - s));
        }
        break;
    case MC_ACT_SOFTPLUS:
        for (size_t i = 0; i < T; i++) dinp[i] = dout[i] * mc_sigmoidf(inp[i]);
        break;
    case MC_ACT_LEAKY_RELU:
        for (size_t i = 0; i < T; i++) dinp[i] = inp[i] > 0.0f ? dout[i] : LEAKY_SLOPE * dout[i];
        break;
    case MC_ACT_SOFTSIGN:
        for (size_t i = 0; i < T; i++) {
            float d = 1.0f + fabsf(inp[i]);
            dinp[i] = dout[i] / (d * d);
        }
        break;
    case MC_ACT_EXPONENTIAL:
        for (size_t i = 0; i < T; i++) dinp[i] = dout[i] * out[i];
        break;
    default:
        break;
    }
}

void mc_bias_activation_block(int act, float *out, float *pre, const float *b, size_t n, size_t i0, size_t i1,
                              size_t j0, size_t j1) {
    size_t w = j1 - j0;
    const float *bias = b ? b + j0 : NULL;
    if (act == MC_ACT_RELU && out == pre) {
        for (size_t i = i0; i < i1; i++) {
            float *restrict o = out + i * n + j0;
            if (bias) {
                const float *restrict bb = bias;
                for (size_t j = 0; j < w; j++) {
                    float z = o[j] + bb[j];
                    o[j] = z > 0.0f || z != z ? z : 0.0f;
                }
            } else {
                for (size_t j = 0; j < w; j++) o[j] = o[j] > 0.0f || o[j] != o[j] ? o[j] : 0.0f;
            }
        }
        return;
    }
    for (size_t i = i0; i < i1; i++) {
        float *restrict z = pre + i * n + j0;
        if (bias) {
            const float *restrict bb = bias;
            for (size_t j = 0; j < w; j++) z[j] += bb[j];
        }
        if (act != MC_ACT_LINEAR || out != pre) mc_activation_forward(act, out + i * n + j0, z, 1, w);
    }
}

void mc_bias_activation_forward(int act, float *out, float *pre, const float *b, size_t B, size_t n) {
    mc_bias_activation_block(act, out, pre, b, n, 0, B, 0, n);
}

void mc_activation_bias_backward(int act, float *dout, float *db, const float *pre, const float *out,
                                 size_t B, size_t n) {
    if (db)
        for (size_t j = 0; j < n; j++) db[j] = 0.0f;
    for (size_t i = 0; i < B; i++) {
        float *restrict g = dout + i * n;
        if (act == MC_ACT_RELU) {
            const float *restrict y = out + i * n;
            if (db) {
                float *restrict d = db;
                for (size_t j = 0; j < n; j++) {
                    float v = y[j] > 0.0f ? g[j] : 0.0f;
                    g[j] = v;
                    d[j] += v;
                }
            } else {
                for (size_t j = 0; j < n; j++) g[j] = y[j] > 0.0f ? g[j] : 0.0f;
            }
            continue;
        }
        if (act != MC_ACT_LINEAR) mc_activation_backward(act, g, g, pre + i * n, out + i * n, 1, n);
        if (db) {
            float *restrict d = db;
            for (size_t j = 0; j < n; j++) d[j] += g[j];
        }
    }
}
