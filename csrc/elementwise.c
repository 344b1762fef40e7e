/* The layer kinds that map each sample to one of the same shape: Activation, Dropout, Rescaling, ReLU. */
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

/* The mask of elements [0, T) (batch elements base + i) and out = inp * mask, element by element. */
static void dropout_mask_scalar(float *mask, float *out, const float *inp, size_t T, uint64_t key, uint64_t base,
                                double rate, float scale) {
    for (size_t i = 0; i < T; i++) {
        mask[i] = mc_rng_uniform(key, base + i) >= rate ? scale : 0.0f;
        out[i] = inp[i] * mask[i];
    }
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(MC_AVX512_SHIM)
#include <immintrin.h>
#include <pthread.h>

/* The same mask 8 elements at a time: mc_rng_mix on 64-bit lanes (AVX-512DQ's 64-bit multiply),
 * the top 53 bits converted to double exactly, scaled by a power of two and compared: the same
 * bits as the scalar loop, which would spend about 10 cycles an element on the hash. */
/* Lanes of the 8 elements idx where the uniform draw is >= rate. */
__attribute__((target("avx512f,avx512dq"))) static inline __mmask8 keep8(__m512i vkey, __m512i idx, __m512d vrate) {
    const __m512i c0 = _mm512_set1_epi64((long long)0x9E3779B97F4A7C15ull);
    const __m512i c1 = _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ull);
    const __m512i c2 = _mm512_set1_epi64((long long)0x94D049BB133111EBull);
    __m512i x = _mm512_add_epi64(_mm512_xor_si512(vkey, idx), c0);
    x = _mm512_mullo_epi64(_mm512_xor_si512(x, _mm512_srli_epi64(x, 30)), c1);
    x = _mm512_mullo_epi64(_mm512_xor_si512(x, _mm512_srli_epi64(x, 27)), c2);
    x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 31));
    __m512d u = _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(x, 11)), _mm512_set1_pd(0x1p-53));
    return _mm512_cmp_pd_mask(u, vrate, _CMP_GE_OQ);
}

/* The same mask 16 elements at a time: mc_rng_mix on 64-bit lanes (AVX-512DQ's 64-bit multiply),
 * the top 53 bits converted to double exactly, scaled by a power of two and compared: the same
 * bits as the scalar loop, which spends about 10 cycles an element on the hash. */
__attribute__((target("avx512f,avx512dq"))) static void dropout_mask_avx512(float *mask, float *out,
                                                                            const float *inp, size_t T, uint64_t key,
                                                                            uint64_t base, double rate, float scale) {
    const __m512i vkey = _mm512_set1_epi64((long long)key), eight = _mm512_set1_epi64(8);
    const __m512d vrate = _mm512_set1_pd(rate);
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512i idx = _mm512_add_epi64(_mm512_set1_epi64((long long)base), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    size_t i = 0;
    for (; i + 16 <= T; i += 16) {
        __mmask8 lo = keep8(vkey, idx, vrate);
        idx = _mm512_add_epi64(idx, eight);
        __mmask8 hi = keep8(vkey, idx, vrate);
        idx = _mm512_add_epi64(idx, eight);
        __m512 m = _mm512_maskz_mov_ps((__mmask16)(lo | (unsigned)hi << 8), vscale);
        _mm512_storeu_ps(mask + i, m);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(inp + i), m));
    }
    dropout_mask_scalar(mask + i, out + i, inp + i, T - i, key, base + i, rate, scale);
}

static pthread_once_t mask_once = PTHREAD_ONCE_INIT;
static int mask_wide;

static void mask_init(void) {
    __builtin_cpu_init();
    mask_wide = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}

static void dropout_mask(float *mask, float *out, const float *inp, size_t T, uint64_t key, uint64_t base,
                         double rate, float scale) {
    pthread_once(&mask_once, mask_init);
    if (mask_wide) dropout_mask_avx512(mask, out, inp, T, key, base, rate, scale);
    else dropout_mask_scalar(mask, out, inp, T, key, base, rate, scale);
}
#else
#define dropout_mask dropout_mask_scalar
#endif

static void dropout_forward(const mc_layer *ly, const mc_fwd *f) {
    size_t T = f->rows * ly->n_in;
    if (!dropping(ly, f->training)) {
        copy_rows(f->out, f->inp, f->rows, ly->n_in);
        return;
    }
    /* keep with probability 1 - rate; kept units scaled by 1/(1-rate) */
    double rate = ly->f[MC_FCOL_RATE];
    float scale = rate < 1.0 ? (float)(1.0 / (1.0 - rate)) : 0.0f;
    dropout_mask(f->scratch, f->out, f->inp, T, f->key, 0, rate, scale);  /* training: the whole batch */
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

/* --- ReLU: Keras's relu(x, negative_slope, max_value, threshold) with its constants in float32 --- */

typedef struct {
    float slope, max, threshold;
} relu_consts;

static relu_consts relu_of(const mc_layer *ly) {
    return (relu_consts){(float)ly->f[MC_FCOL_NEGATIVE_SLOPE], (float)ly->f[MC_FCOL_MAX_VALUE],
                         (float)ly->f[MC_FCOL_THRESHOLD]};
}

static mc_status relu_init(mc_layer *ly, size_t l, mc_error *err) {
    double slope = ly->f[MC_FCOL_NEGATIVE_SLOPE], max = ly->f[MC_FCOL_MAX_VALUE];
    if (!(slope >= 0.0) || !isfinite(slope))
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: ReLU negative_slope must be a finite number >= 0, got %g", l,
                            slope);
    if (!(max >= 0.0))
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: ReLU max_value must be >= 0 (inf for none), got %g", l, max);
    double t = ly->f[MC_FCOL_THRESHOLD];
    if (!(t >= 0.0) || !isfinite((float)t))
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: ReLU threshold must be a finite number >= 0 (in float32), "
                            "got %g", l, t);
    if (ly->activation != MC_ACT_LINEAR)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: ReLU has no activation (code %d), got code %d", l,
                            MC_ACT_LINEAR, ly->activation);
    return same_shape(ly, l, err);
}

/* Above the threshold: the input, clipped at max; at or below it: slope * (inp - threshold), which is
 * Keras's 0 - slope * relu(threshold - inp) up to the sign of a zero (and its leaky_relu exactly). A
 * slope of 0 gives 0 there (also for -inf), as Keras skips the term. NaN stays NaN. */
static void relu_forward(const mc_layer *ly, const mc_fwd *f) {
    relu_consts k = relu_of(ly);
    size_t T = f->rows * ly->n_in;
    const float *x = f->inp;
    float *out = f->out;
    if (k.slope == 0.0f) {
        for (size_t i = 0; i < T; i++)
            out[i] = x[i] > k.threshold ? (x[i] < k.max ? x[i] : k.max) : x[i] <= k.threshold ? 0.0f : x[i];
    } else {
        for (size_t i = 0; i < T; i++)
            out[i] = x[i] > k.threshold ? (x[i] < k.max ? x[i] : k.max)
                     : x[i] <= k.threshold ? k.slope * (x[i] - k.threshold) : x[i];
    }
}

/* d out / d inp: 1 strictly between threshold and max, 0 at max and above (TensorFlow's relu6,
 * PyTorch's hardtanh), slope at the threshold and below (relu'(0) = 0, leaky_relu'(0) = slope, as
 * the activations). */
static void relu_backward(const mc_layer *ly, const mc_bwd *b) {
    relu_consts k = relu_of(ly);
    size_t T = b->rows * ly->n_in;
    for (size_t i = 0; i < T; i++) {
        float x = b->inp[i], d = b->dout[i];
        b->dinp[i] = x > k.threshold ? (x < k.max ? d : 0.0f) : k.slope == 0.0f ? 0.0f : k.slope * d;
    }
}

const mc_layer_ops mc_relu_ops = {
    .name = "ReLU",
    .init = relu_init,
    .scratch = no_scratch,
    .forward = relu_forward,
    .backward = relu_backward,
};
