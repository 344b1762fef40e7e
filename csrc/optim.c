/* Optimizer updates as Keras 3 writes them (keras/src/optimizers/{sgd,adam,rmsprop}.py and
 * base_optimizer.py for weight decay), in float32 like the Keras variables, except Adam's b^t,
 * which is computed in double. One pass over each trainable segment; frozen ranges are never touched. */
#include "optim.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "cpu.h"
#include "threads.h"

#if defined(__x86_64__) || (defined(__i386__) && defined(__SSE__))
#include <xmmintrin.h>
#define MC_HAVE_MXCSR 1
#endif

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

/* One segment's update: the pointers, the per-step constants (computed once per step, Adam's bias
 * correction in double) and which variant runs. Every variant is one loop over the elements, with
 * weight decay (when set) applied to each element just before its update, so a segment is read once. */
typedef struct {
    float *w, *s0, *s1, *s2;
    const float *g;
    int kind, flag, has_mom, wd_on;
    float lr, wd, mu, c1, c2, eps, a;
} upd;

/* The loops below have no branch on the variant inside (each variant is its own loop), call nothing
 * that sets errno (sqrtf with -fno-math-errno) and take restrict pointers, so GCC vectorises them.
 * ISO C mode (-std=c11) keeps -ffp-contract=off: the portable and AVX2 builds give the same bits. */
#define WD(i) if (wd_on) w[i] = w[i] - w[i] * wd * lr /* wd_on is a constant in each inlined copy */

/* restrict on parameters (GCC keeps it through inlining; on local pointer variables it may not) */
static inline __attribute__((always_inline)) void upd_loops(const upd *u, float *restrict w,
                                                             const float *restrict g, float *restrict s0,
                                                             float *restrict s1, float *restrict s2,
                                                             size_t lo, size_t hi, const int wd_on) {
    const float lr = u->lr, wd = u->wd, mu = u->mu, c1 = u->c1, c2 = u->c2, eps = u->eps, a = u->a;
    switch (u->kind) {
    case MC_OPT_SGD:
        if (!s0) {
            for (size_t i = lo; i < hi; i++) {
                WD(i);
                w[i] -= g[i] * lr;
            }
        } else if (u->flag) {
            /* Nesterov as Keras writes it: m = mu m - lr g; w += mu m - lr g */
            for (size_t i = lo; i < hi; i++) {
                WD(i);
                float m = s0[i] * mu - g[i] * lr;
                s0[i] = m;
                w[i] += m * mu - g[i] * lr;
            }
        } else {
            for (size_t i = lo; i < hi; i++) {
                WD(i);
                float m = s0[i] * mu - g[i] * lr;
                s0[i] = m;
                w[i] += m;
            }
        }
        break;
    case MC_OPT_ADAM:
        /* step size a = lr sqrt(1 - b2^t) / (1 - b1^t) with epsilon added after sqrt, uncorrected
         * ("epsilon hat", Kingma & Ba 2014 sec. 2), as Keras does */
        if (!s2) {
            for (size_t i = lo; i < hi; i++) {
                WD(i);
                float gi = g[i];
                float m = s0[i] + (gi - s0[i]) * c1;
                float v = s1[i] + (gi * gi - s1[i]) * c2;
                s0[i] = m;
                s1[i] = v;
                w[i] -= (m * a) / (sqrtf(v) + eps);
            }
        } else {
            for (size_t i = lo; i < hi; i++) {
                WD(i);
                float gi = g[i];
                float m = s0[i] + (gi - s0[i]) * c1;
                float v = s1[i] + (gi * gi - s1[i]) * c2;
                float vh = s2[i] > v ? s2[i] : v;
                s0[i] = m;
                s1[i] = v;
                s2[i] = vh;
                w[i] -= (m * a) / (sqrtf(vh) + eps);
            }
        }
        break;
    case MC_OPT_RMSPROP: {
        /* s0 = v; s1 = mom (momentum > 0) or NULL; s2 = mg (centered) or NULL. c1 = 1 - rho, mu = rho. */
        float *restrict mom = s1, *restrict mg = s2;
        const float rho = mu, m2 = a; /* a holds the momentum here */
        if (!mg && !mom) {
            for (size_t i = lo; i < hi; i++) {
                WD(i);
                float v = rho * s0[i] + c1 * (g[i] * g[i]);
                s0[i] = v;
                w[i] -= (lr * g[i]) / sqrtf(v + eps);
            }
        } else if (!mg) {
            for (size_t i = lo; i < hi; i++) {
                WD(i);
                float v = rho * s0[i] + c1 * (g[i] * g[i]);
                s0[i] = v;
                float mo = m2 * mom[i] + (lr * g[i]) / sqrtf(v + eps);
                mom[i] = mo;
                w[i] -= mo;
            }
        } else if (!mom) {
            for (size_t i = lo; i < hi; i++) {
                WD(i);
                float v = rho * s0[i] + c1 * (g[i] * g[i]);
                float c = rho * mg[i] + c1 * g[i];
                s0[i] = v;
                mg[i] = c;
                w[i] -= (lr * g[i]) / sqrtf(v - c * c + eps);
            }
        } else {
            for (size_t i = lo; i < hi; i++) {
                WD(i);
                float v = rho * s0[i] + c1 * (g[i] * g[i]);
                float c = rho * mg[i] + c1 * g[i];
                s0[i] = v;
                mg[i] = c;
                float mo = m2 * mom[i] + (lr * g[i]) / sqrtf(v - c * c + eps);
                mom[i] = mo;
                w[i] -= mo;
            }
        }
        break;
    }
    default:
        break;
    }
}
#undef WD

static inline __attribute__((always_inline)) void upd_body(const upd *u, size_t lo, size_t hi) {
    if (u->wd_on) upd_loops(u, u->w, u->g, u->s0, u->s1, u->s2, lo, hi, 1);
    else upd_loops(u, u->w, u->g, u->s0, u->s1, u->s2, lo, hi, 0);
}

static void upd_portable(const upd *u, size_t lo, size_t hi) { upd_body(u, lo, hi); }

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define MC_OPTIM_AVX2 1
__attribute__((target("avx2"))) static void upd_avx2(const upd *u, size_t lo, size_t hi) { upd_body(u, lo, hi); }
#endif

typedef void (*upd_fn)(const upd *, size_t, size_t);
static upd_fn upd_kernel;

/* Optimizer state decays geometrically wherever a gradient stays at zero (Adam's m by beta_1 each
 * step: the weights of MNIST's border pixels) and reaches float32's subnormal range after about a
 * thousand steps. On x86 an operation on a subnormal takes a microcode assist of ~100 cycles: the
 * seed MLP's Adam step grew from ~20 to ~75 us from the second epoch on. Updates therefore run
 * with subnormals flushed to zero (MXCSR FTZ + DAZ), the mode TensorFlow runs its CPU ops in (so
 * Keras's optimizers on that backend); it is set and restored around every piece on whichever
 * thread runs it, so the results are the same for any thread count. A subnormal step is far below
 * half an ulp of any normal weight, so flushing changes only the optimizer state and weights that
 * are themselves zero or subnormal. Off x86 the update is plain IEEE. */
static void upd_run(const upd *u, size_t lo, size_t hi) {
#ifdef MC_HAVE_MXCSR
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040u); /* FTZ (bit 15) and DAZ (bit 6) */
    upd_kernel(u, lo, hi);
    _mm_setcsr(csr);
#else
    upd_kernel(u, lo, hi);
#endif
}

static pthread_once_t upd_once = PTHREAD_ONCE_INIT;

static void upd_pick(void) {
    upd_kernel = upd_portable;
#ifdef MC_OPTIM_AVX2
    if (mc_cpu_has_avx2_fma()) upd_kernel = upd_avx2;
#endif
}

/* Segments of at least UPD_PAR_MIN elements are split over the thread pool in UPD_CHUNK pieces:
 * disjoint element ranges, so the result is the same for any thread count. Measured on the seed
 * MLP's 101,770 Adam parameters: 38 us per step on one thread, 25 us on two. */
#define UPD_PAR_MIN 32768
#define UPD_CHUNK 16384

typedef struct {
    const upd *u;
    size_t n;
} upd_job;

static void upd_task(void *ctx, size_t t) {
    const upd_job *j = ctx;
    size_t lo = t * UPD_CHUNK, hi = lo + UPD_CHUNK < j->n ? lo + UPD_CHUNK : j->n;
    upd_run(j->u, lo, hi);
}

void mc_optim_step(const mc_optim *opt, float *params, const float *grads, int64_t *iterations) {
    const double *h = opt->hyper;
    int64_t t = *iterations + 1;
    upd u;
    memset(&u, 0, sizeof u);
    u.kind = opt->kind;
    u.flag = h[MC_HYPER_FLAG] != 0.0;
    u.wd_on = h[MC_HYPER_WD] > 0.0;
    u.lr = (float)h[MC_HYPER_LR];
    u.wd = (float)h[MC_HYPER_WD];
    switch (opt->kind) {
    case MC_OPT_SGD:
        u.mu = (float)h[MC_HYPER_B1];
        break;
    case MC_OPT_ADAM:
        u.a = (float)(h[MC_HYPER_LR] * sqrt(1.0 - pow(h[MC_HYPER_B2], (double)t)) /
                      (1.0 - pow(h[MC_HYPER_B1], (double)t)));
        u.c1 = (float)(1.0 - h[MC_HYPER_B1]);
        u.c2 = (float)(1.0 - h[MC_HYPER_B2]);
        u.eps = (float)h[MC_HYPER_EPS];
        break;
    case MC_OPT_RMSPROP:
        u.mu = (float)h[MC_HYPER_B1];
        u.c1 = (float)(1.0 - h[MC_HYPER_B1]);
        u.eps = (float)h[MC_HYPER_EPS];
        u.a = (float)h[MC_HYPER_MOMENTUM];
        break;
    default:
        break;
    }
    pthread_once(&upd_once, upd_pick);
    int threads = mc_get_num_threads();
    size_t pos = 0;
    for (size_t s = 0; s < opt->n_segments; s++) {
        size_t off = (size_t)opt->segments[2 * s], n = (size_t)opt->segments[2 * s + 1];
        float *s0 = opt->n_slots > 0 ? opt->slots[0] + pos : NULL;
        float *s1 = opt->n_slots > 1 ? opt->slots[1] + pos : NULL;
        float *s2 = opt->n_slots > 2 ? opt->slots[2] + pos : NULL;
        u.w = params + off;
        u.g = grads + off;
        u.s0 = s0;
        u.s1 = s1;
        u.s2 = s2;
        if (opt->kind == MC_OPT_RMSPROP) {
            /* slot order: v, then mom if momentum > 0, then mg if centered */
            int has_mom = h[MC_HYPER_MOMENTUM] > 0.0;
            u.s1 = has_mom ? s1 : NULL;
            u.s2 = u.flag ? (has_mom ? s2 : s1) : NULL;
        }
        if (n < UPD_PAR_MIN || threads < 2) {
            upd_run(&u, 0, n);
        } else {
            upd_job j = {&u, n};
            mc_parallel_for((n + UPD_CHUNK - 1) / UPD_CHUNK, upd_task, &j);
        }
        pos += n;
    }
    *iterations = t;
}
