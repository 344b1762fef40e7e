/* BatchNormalization over the last axis (Keras's axis=-1): each of the c channels is normalised
 * over the rows * h * w values it has in a batch. Training (mc_fwd.training and the layer
 * trainable, as Keras 3: a frozen layer runs in inference mode) uses the batch's mean and biased
 * variance and moves the moving statistics toward them; otherwise the moving statistics are used.
 * Either way out = inp * scale + shift per channel, scale = gamma / sqrt(var + epsilon), shift =
 * beta - mean * scale, Keras's form. Reductions over the batch run in double, each channel's in
 * one fixed order whatever the thread count (tasks take groups of channels). */
#include <math.h>
#include <string.h>

#include "activations.h"
#include "layer.h"
#include "threads.h"

enum { W_GAMMA = 0, W_BETA = 1, W_MEAN = 2, W_VAR = 3 };

/* Channels a reduction task takes: one cache line of each pixel. */
#define GROUP 16
/* Floats below which a reduction is not split over the pool. */
#define SPLIT_MIN 16384

/* The scratch, 4 c floats kept from the call's first sample on: per channel the mean and
 * 1/sqrt(var + epsilon) that were used, then scale and shift (the backward's coefficients later). */
typedef struct {
    float *mean, *inv, *scale, *shift;
} stats;

static stats stats_of(float *scratch, size_t C) {
    stats s = {scratch, scratch + C, scratch + 2 * C, scratch + 3 * C};
    return s;
}

typedef struct {
    const mc_layer *ly;
    stats st;
    const float *x, *dy;
    float *out, *dx;
    float *params;
    float *dgamma, *dbeta;   /* backward: NULL when not wanted */
    size_t n;                /* pixels in the batch: rows * h * w */
    int batch_stats, update;
} bn_job;

static float weight_or(const mc_layer *ly, const float *params, int k, size_t c, float dflt) {
    return ly->w[k].off >= 0 ? params[ly->w[k].off + (ptrdiff_t)c] : dflt;
}

static void for_groups(const bn_job *j, int pool, mc_task_fn fn) {
    size_t C = j->ly->in.c, groups = (C + GROUP - 1) / GROUP;
    if (pool && groups > 1 && (double)j->n * (double)C >= SPLIT_MIN) {
        mc_parallel_for(groups, fn, (void *)j);
        return;
    }
    for (size_t g = 0; g < groups; g++) fn((void *)j, g);
}

/* Channels [c0, c0 + GROUP) of the statistics: batch mean and variance (two passes) or the moving
 * ones, then scale and shift, and the moving statistics' update. */
static void stats_task(void *ctx, size_t g) {
    const bn_job *j = ctx;
    const mc_layer *ly = j->ly;
    size_t C = ly->in.c, c0 = g * GROUP, cn = C - c0 < GROUP ? C - c0 : GROUP;
    double mean[GROUP], var[GROUP], eps = ly->f[MC_FCOL_EPSILON];
    if (j->batch_stats) {
        double acc[GROUP] = {0};
        for (size_t p = 0; p < j->n; p++) {
            const float *x = j->x + p * C + c0;
            for (size_t c = 0; c < cn; c++) acc[c] += x[c];
        }
        for (size_t c = 0; c < cn; c++) mean[c] = acc[c] / (double)j->n, acc[c] = 0.0;
        for (size_t p = 0; p < j->n; p++) {
            const float *x = j->x + p * C + c0;
            for (size_t c = 0; c < cn; c++) {
                double d = x[c] - mean[c];
                acc[c] += d * d;
            }
        }
        for (size_t c = 0; c < cn; c++) var[c] = acc[c] / (double)j->n;
    } else {
        for (size_t c = 0; c < cn; c++) {
            mean[c] = j->params[ly->w[W_MEAN].off + (ptrdiff_t)(c0 + c)];
            var[c] = j->params[ly->w[W_VAR].off + (ptrdiff_t)(c0 + c)];
        }
    }
    for (size_t c = 0; c < cn; c++) {
        double inv = 1.0 / sqrt(var[c] + eps);
        double scale = weight_or(ly, j->params, W_GAMMA, c0 + c, 1.0f) * inv;
        j->st.mean[c0 + c] = (float)mean[c];
        j->st.inv[c0 + c] = (float)inv;
        j->st.scale[c0 + c] = (float)scale;
        j->st.shift[c0 + c] = (float)(weight_or(ly, j->params, W_BETA, c0 + c, 0.0f) - mean[c] * scale);
    }
    if (!j->update) return;
    /* Keras: moving * momentum + batch * (1 - momentum), in float32 */
    float m = (float)ly->f[MC_FCOL_MOMENTUM], one_m = (float)(1.0 - ly->f[MC_FCOL_MOMENTUM]);
    float *mm = j->params + ly->w[W_MEAN].off + c0, *mv = j->params + ly->w[W_VAR].off + c0;
    for (size_t c = 0; c < cn; c++) {
        mm[c] = mm[c] * m + (float)mean[c] * one_m;
        mv[c] = mv[c] * m + (float)var[c] * one_m;
    }
}

static void apply_range(void *ctx, size_t s0, size_t s1) {
    const bn_job *j = ctx;
    size_t C = j->ly->in.c;
    const float *scale = j->st.scale, *shift = j->st.shift;
    for (size_t p = s0 * j->ly->in.h * j->ly->in.w, p1 = s1 * j->ly->in.h * j->ly->in.w; p < p1; p++) {
        const float *x = j->x + p * C;
        float *o = j->out + p * C;
        for (size_t c = 0; c < C; c++) o[c] = x[c] * scale[c] + shift[c];
    }
}

static int batch_stats(const mc_layer *ly, int training) { return training && ly->trainable; }

static void bn_forward(const mc_layer *ly, const mc_fwd *f) {
    size_t pix = ly->in.h * ly->in.w;
    int pool = f->plan == NULL, train = batch_stats(ly, f->training);
    bn_job j = {ly, stats_of(f->scratch, ly->in.c), f->inp, NULL, f->out, NULL, f->params, NULL, NULL,
                f->rows * pix, train, train};
    for_groups(&j, pool, stats_task);
    mc_for_samples(f->rows, 2 * ly->n_in, pool, apply_range, &j);
}

/* Channels [c0, c0 + GROUP): sum(dy) and sum(dy * xhat), xhat = (x - mean) * inv; into dbeta and
 * dgamma when wanted; then the coefficients of dx: scale slot = sum(dy) / n, shift slot =
 * sum(dy * xhat) / n (batch statistics only: otherwise dx = dy * scale). */
static void grad_task(void *ctx, size_t g) {
    const bn_job *j = ctx;
    size_t C = j->ly->in.c, c0 = g * GROUP, cn = C - c0 < GROUP ? C - c0 : GROUP;
    double sdy[GROUP] = {0}, sdyx[GROUP] = {0};
    const float *mean = j->st.mean + c0, *inv = j->st.inv + c0;
    for (size_t p = 0; p < j->n; p++) {
        const float *x = j->x + p * C + c0, *dy = j->dy + p * C + c0;
        for (size_t c = 0; c < cn; c++) {
            sdy[c] += dy[c];
            sdyx[c] += (double)dy[c] * ((x[c] - mean[c]) * inv[c]);
        }
    }
    for (size_t c = 0; c < cn; c++) {
        if (j->dbeta) j->dbeta[c0 + c] = (float)sdy[c];
        if (j->dgamma) j->dgamma[c0 + c] = (float)sdyx[c];
    }
    if (!j->batch_stats) return;
    /* the scale is no longer needed as such: dx's factor is gamma * inv */
    for (size_t c = 0; c < cn; c++) {
        j->st.scale[c0 + c] = (float)(sdy[c] / (double)j->n);
        j->st.shift[c0 + c] = (float)(sdyx[c] / (double)j->n);
    }
}

static void dx_range(void *ctx, size_t s0, size_t s1) {
    const bn_job *j = ctx;
    const mc_layer *ly = j->ly;
    size_t C = ly->in.c, pix = ly->in.h * ly->in.w;
    const float *mean = j->st.mean, *inv = j->st.inv, *k2 = j->st.scale, *k3 = j->st.shift;
    const float *gamma = ly->w[W_GAMMA].off >= 0 ? j->params + ly->w[W_GAMMA].off : NULL;
    for (size_t p = s0 * pix; p < s1 * pix; p++) {
        const float *x = j->x + p * C, *dy = j->dy + p * C;
        float *dx = j->dx + p * C;
        if (!j->batch_stats) {
            for (size_t c = 0; c < C; c++) dx[c] = dy[c] * k2[c];
            continue;
        }
        for (size_t c = 0; c < C; c++) {
            float xhat = (x[c] - mean[c]) * inv[c];
            dx[c] = (gamma ? gamma[c] : 1.0f) * inv[c] * (dy[c] - k2[c] - xhat * k3[c]);
        }
    }
}

static void bn_backward(const mc_layer *ly, const mc_bwd *b) {
    size_t pix = ly->in.h * ly->in.w;
    int train = batch_stats(ly, b->training);
    float *dgamma = b->grads && ly->w[W_GAMMA].off >= 0 ? b->grads + ly->w[W_GAMMA].off : NULL;
    float *dbeta = b->grads && ly->w[W_BETA].off >= 0 ? b->grads + ly->w[W_BETA].off : NULL;
    bn_job j = {ly, stats_of(b->scratch, ly->in.c), b->inp, b->dout, NULL, b->dinp, (float *)b->params, dgamma, dbeta,
                b->rows * pix, train, 0};
    if (dgamma || dbeta || (train && b->dinp)) for_groups(&j, 1, grad_task);
    if (b->dinp) mc_for_samples(b->rows, 3 * ly->n_in, 1, dx_range, &j);
}

static mc_status bn_init(mc_layer *ly, size_t l, mc_error *err) {
    if (ly->out.h != ly->in.h || ly->out.w != ly->in.w || ly->out.c != ly->in.c)
        return mc_set_error(err, MC_ERR_SHAPE,
                            "layers[%zu]: BatchNormalization keeps its input's shape (%zu, %zu, %zu), found output "
                            "(%zu, %zu, %zu)",
                            l, ly->in.h, ly->in.w, ly->in.c, ly->out.h, ly->out.w, ly->out.c);
    if (ly->activation != MC_ACT_LINEAR)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: BatchNormalization has no activation (code %d), found code %d",
                            l, MC_ACT_LINEAR, ly->activation);
    double eps = ly->f[MC_FCOL_EPSILON], mom = ly->f[MC_FCOL_MOMENTUM];
    if (!(eps > 0.0) || !isfinite(eps))
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: BatchNormalization epsilon must be a finite number > 0, found %g",
                            l, eps);
    if (!(mom >= 0.0 && mom <= 1.0))
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: BatchNormalization momentum must be in [0, 1], found %g", l,
                            mom);
    if (ly->w[W_MEAN].off < 0 || ly->w[W_VAR].off < 0)
        return mc_set_error(err, MC_ERR_ARG,
                            "layers[%zu]: BatchNormalization needs moving_mean and moving_variance as weights 2 and 3, "
                            "found offsets %td and %td",
                            l, ly->w[W_MEAN].off, ly->w[W_VAR].off);
    for (int k = 0; k < MC_MAX_WEIGHTS; k++)
        ly->w[k] = (mc_weight){ly->w[k].off, ly->w[k].off >= 0 ? ly->in.c : 0, k == W_GAMMA || k == W_BETA};
    ly->n_weights = 4;
    return MC_OK;
}

/* the statistics and coefficients, 4 c floats, held in the first sample's share */
static size_t bn_scratch(const mc_layer *ly) { return 4 * ly->in.c; }

static int bn_threads(const mc_layer *ly, size_t B) { return mc_samples_threads(B, 2 * ly->n_in); }

const mc_layer_ops mc_batchnorm_ops = {
    .name = "BatchNormalization",
    .init = bn_init,
    .scratch = bn_scratch,
    .forward = bn_forward,
    .backward = bn_backward,
    .threads = bn_threads,
};
