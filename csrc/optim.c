/* Optimizer updates as Keras 3 writes them (keras/src/optimizers/{sgd,adam,rmsprop}.py and
 * base_optimizer.py for weight decay), in float32 like the Keras variables, except Adam's b^t,
 * which is computed in double. One pass over each trainable segment; frozen ranges are never touched. */
#include "optim.h"

#include <math.h>
#include <pthread.h>

#include "cpu.h"
#include "threads.h"

size_t mc_optim_n_slots(int kind, const double *hyper) {
    switch (kind) {
    case MC_OPT_SGD:
        return hyper[MC_HYPER_B1] > 0.0 ? 1 : 0;
    case MC_OPT_ADAM:
        return hyper[MC_HYPER_FLAG] != 0.0 ? 3 : 2;
    case MC_OPT_RMSPROP:
        return 1 + (hyper[MC_HYPER_MOMENTUM] > 0.0) + (hyper[MC_HYPER_FLAG] != 0.0);
    default:
        return 0;
    }
}

size_t mc_optim_slot_len(const int64_t *segments, size_t n_segments) {
    size_t n = 0;
    for (size_t s = 0; s < n_segments; s++) n += segments[2 * s + 1] > 0 ? (size_t)segments[2 * s + 1] : 0;
    return n;
}

static mc_status check_range(const char *name, double v, double lo, double hi, int hi_open, mc_error *err) {
    if (!isfinite(v) || v < lo || v > hi || (hi_open && v == hi))
        return mc_set_error(err, MC_ERR_ARG, "hyper: %s must be in [%g, %g%s, got %g", name, lo, hi,
                            hi_open ? ")" : "]", v);
    return MC_OK;
}

mc_status mc_optim_check(const mc_optim *opt, size_t P, mc_error *err) {
    const double *h = opt->hyper;
    mc_status st;
    if (opt->kind < 0 || opt->kind >= MC_OPT_COUNT)
        return mc_set_error(err, MC_ERR_ARG, "opt: expected 0 (SGD), 1 (Adam) or 2 (RMSprop), got %d", opt->kind);
    if (!isfinite(h[MC_HYPER_LR]))
        return mc_set_error(err, MC_ERR_ARG, "hyper: learning_rate must be finite, got %g", h[MC_HYPER_LR]);
    if ((st = check_range("weight_decay", h[MC_HYPER_WD], 0.0, HUGE_VAL, 0, err))) return st;
    if (opt->kind == MC_OPT_SGD) {
        if ((st = check_range("momentum", h[MC_HYPER_B1], 0.0, 1.0, 0, err))) return st;
    } else if (opt->kind == MC_OPT_ADAM) {
        if ((st = check_range("beta_1", h[MC_HYPER_B1], 0.0, 1.0, 1, err))) return st;
        if ((st = check_range("beta_2", h[MC_HYPER_B2], 0.0, 1.0, 1, err))) return st;
        if ((st = check_range("epsilon", h[MC_HYPER_EPS], 0.0, HUGE_VAL, 0, err))) return st;
    } else {
        if ((st = check_range("rho", h[MC_HYPER_B1], 0.0, 1.0, 0, err))) return st;
        if ((st = check_range("epsilon", h[MC_HYPER_EPS], 0.0, HUGE_VAL, 0, err))) return st;
        if ((st = check_range("momentum", h[MC_HYPER_MOMENTUM], 0.0, 1.0, 0, err))) return st;
    }
    size_t want = mc_optim_n_slots(opt->kind, h);
    if (opt->n_slots != want)
        return mc_set_error(err, MC_ERR_ARG, "slots: optimizer %d with these hyperparameters needs %zu slot "
                            "arrays, got %zu", opt->kind, want, opt->n_slots);
    size_t end = 0;
    for (size_t s = 0; s < opt->n_segments; s++) {
        int64_t off = opt->segments[2 * s], len = opt->segments[2 * s + 1];
        if (off < 0 || len < 0 || (uint64_t)off > P || (uint64_t)len > P - (size_t)off)
            return mc_set_error(err, MC_ERR_SHAPE, "segments[%zu]: range [%lld, %lld + %lld) is outside the "
                                "%zu parameters", s, (long long)off, (long long)off, (long long)len, P);
        if ((size_t)off < end)
            return mc_set_error(err, MC_ERR_SHAPE, "segments[%zu]: offset %lld overlaps or precedes the previous "
                                "segment, which ends at %zu (segments must be sorted and disjoint)", s,
                                (long long)off, end);
        end = (size_t)off + (size_t)len;
    }
    return MC_OK;
}

static void sgd(const mc_optim *o, float *w, const float *g, float *m, size_t n) {
    float lr = (float)o->hyper[MC_HYPER_LR], mu = (float)o->hyper[MC_HYPER_B1];
    if (!m) {
        for (size_t i = 0; i < n; i++) w[i] -= g[i] * lr;
    } else if (o->hyper[MC_HYPER_FLAG] != 0.0) {
        /* Nesterov as Keras writes it: m = mu m - lr g; w += mu m - lr g */
        for (size_t i = 0; i < n; i++) {
            m[i] = m[i] * mu - g[i] * lr;
            w[i] += m[i] * mu - g[i] * lr;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            m[i] = m[i] * mu - g[i] * lr;
            w[i] += m[i];
        }
    }
}

/* Adam's per-element update, in float32 with the step size alpha (bias corrections folded in) computed
 * once per step in double by the caller. No branch, no errno-setting call and restrict pointers, so
 * GCC vectorises it; the AVX2 copy below is the same source compiled for wider registers. ISO C mode
 * (-std=c11) keeps -ffp-contract=off, so neither copy fuses a multiply-add and both give the same bits. */
typedef struct {
    float a, c1, c2, eps;
} adam_consts;

static inline __attribute__((always_inline)) void adam_body(float *restrict w, const float *restrict g,
                                                             float *restrict m, float *restrict v,
                                                             float *restrict vhat, size_t n, adam_consts k) {
    if (!vhat) {
        for (size_t i = 0; i < n; i++) {
            float gi = g[i];
            float mi = m[i] + (gi - m[i]) * k.c1;
            float vi = v[i] + (gi * gi - v[i]) * k.c2;
            m[i] = mi;
            v[i] = vi;
            w[i] -= (mi * k.a) / (sqrtf(vi) + k.eps);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float gi = g[i];
            float mi = m[i] + (gi - m[i]) * k.c1;
            float vi = v[i] + (gi * gi - v[i]) * k.c2;
            float hi = vhat[i] > vi ? vhat[i] : vi;
            m[i] = mi;
            v[i] = vi;
            vhat[i] = hi;
            w[i] -= (mi * k.a) / (sqrtf(hi) + k.eps);
        }
    }
}

static void adam_portable(float *restrict w, const float *restrict g, float *restrict m, float *restrict v,
                          float *restrict vhat, size_t n, adam_consts k) {
    adam_body(w, g, m, v, vhat, n, k);
}

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define MC_OPTIM_AVX2 1
__attribute__((target("avx2"))) static void adam_avx2(float *restrict w, const float *restrict g,
                                                      float *restrict m, float *restrict v,
                                                      float *restrict vhat, size_t n, adam_consts k) {
    adam_body(w, g, m, v, vhat, n, k);
}
#endif

typedef void (*adam_fn)(float *restrict, const float *restrict, float *restrict, float *restrict,
                        float *restrict, size_t, adam_consts);

static adam_fn adam_kernel;
static pthread_once_t adam_once = PTHREAD_ONCE_INIT;

static void adam_pick(void) {
    adam_kernel = adam_portable;
#ifdef MC_OPTIM_AVX2
    if (mc_cpu_has_avx2_fma()) adam_kernel = adam_avx2;
#endif
}

/* Pieces of one segment for the thread pool: disjoint element ranges, so the result is the same for
 * any thread count. */
typedef struct {
    float *w, *m, *v, *vhat;
    const float *g;
    size_t n, chunk;
    adam_consts k;
} adam_job;

static void adam_task(void *ctx, size_t t) {
    const adam_job *j = ctx;
    size_t lo = t * j->chunk, hi = lo + j->chunk < j->n ? lo + j->chunk : j->n;
    adam_kernel(j->w + lo, j->g + lo, j->m + lo, j->v + lo, j->vhat ? j->vhat + lo : NULL, hi - lo, j->k);
}

/* Below this many elements a segment is updated by the calling thread alone. */
#define ADAM_PAR_MIN 32768
#define ADAM_CHUNK 16384 /* multiple of 16: every piece starts 64-byte aligned relative to the segment */

static void adam(const mc_optim *o, float *w, const float *g, float *m, float *v, float *vhat, size_t n,
                 int64_t t) {
    const double *h = o->hyper;
    /* Bias correction folded into the step size; epsilon added after sqrt without correction
     * ("epsilon hat", Kingma & Ba 2014 sec. 2), as Keras does. */
    double alpha = h[MC_HYPER_LR] * sqrt(1.0 - pow(h[MC_HYPER_B2], (double)t)) / (1.0 - pow(h[MC_HYPER_B1], (double)t));
    adam_consts k = {(float)alpha, (float)(1.0 - h[MC_HYPER_B1]), (float)(1.0 - h[MC_HYPER_B2]),
                     (float)h[MC_HYPER_EPS]};
    pthread_once(&adam_once, adam_pick);
    if (n < ADAM_PAR_MIN || mc_get_num_threads() < 2) {
        adam_kernel(w, g, m, v, vhat, n, k);
        return;
    }
    adam_job j = {w, m, v, vhat, g, n, ADAM_CHUNK, k};
    mc_parallel_for((n + ADAM_CHUNK - 1) / ADAM_CHUNK, adam_task, &j);
}

static void rmsprop(const mc_optim *o, float *w, const float *g, float *v, float *mom, float *mg, size_t n) {
    const double *h = o->hyper;
    float lr = (float)h[MC_HYPER_LR], rho = (float)h[MC_HYPER_B1], c = (float)(1.0 - h[MC_HYPER_B1]);
    float eps = (float)h[MC_HYPER_EPS], mu = (float)h[MC_HYPER_MOMENTUM];
    for (size_t i = 0; i < n; i++) {
        v[i] = rho * v[i] + c * (g[i] * g[i]);
        float denom;
        if (mg) {
            mg[i] = rho * mg[i] + c * g[i];
            denom = v[i] - mg[i] * mg[i] + eps;
        } else {
            denom = v[i] + eps;
        }
        float inc = (lr * g[i]) / sqrtf(denom);
        if (mom) {
            mom[i] = mu * mom[i] + inc;
            w[i] -= mom[i];
        } else {
            w[i] -= inc;
        }
    }
}

void mc_optim_step(const mc_optim *opt, float *params, const float *grads, int64_t *iterations) {
    const double *h = opt->hyper;
    int64_t t = *iterations + 1;
    float lr = (float)h[MC_HYPER_LR], wd = (float)h[MC_HYPER_WD];
    size_t pos = 0;
    for (size_t s = 0; s < opt->n_segments; s++) {
        size_t off = (size_t)opt->segments[2 * s], n = (size_t)opt->segments[2 * s + 1];
        float *w = params + off;
        const float *g = grads + off;
        float *s0 = opt->n_slots > 0 ? opt->slots[0] + pos : NULL;
        float *s1 = opt->n_slots > 1 ? opt->slots[1] + pos : NULL;
        float *s2 = opt->n_slots > 2 ? opt->slots[2] + pos : NULL;
        if (h[MC_HYPER_WD] > 0.0)
            for (size_t i = 0; i < n; i++) w[i] = w[i] - w[i] * wd * lr;
        switch (opt->kind) {
        case MC_OPT_SGD:
            sgd(opt, w, g, s0, n);
            break;
        case MC_OPT_ADAM:
            adam(opt, w, g, s0, s1, s2, n, t);
            break;
        case MC_OPT_RMSPROP: {
            /* slot order: v, then mom if momentum > 0, then mg if centered */
            int has_mom = h[MC_HYPER_MOMENTUM] > 0.0;
            float *mom = has_mom ? s1 : NULL;
            float *mg = h[MC_HYPER_FLAG] != 0.0 ? (has_mom ? s2 : s1) : NULL;
            rmsprop(opt, w, g, s0, mom, mg, n);
            break;
        }
        default:
            break;
        }
        pos += n;
    }
    *iterations = t;
}
