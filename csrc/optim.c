/* Optimizer updates as Keras 3 writes them (keras/src/optimizers/{sgd,adam,rmsprop,adagrad,adamax,
 * nadam}.py and base_optimizer.py for weight decay), in float32 like the Keras variables, except the
 * per-step constants (b^t, the learning-rate schedule), which are computed in double. One pass over
 * each trainable segment; frozen ranges are never touched. */
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
    case MC_OPT_ADAGRAD:
        return 1;
    case MC_OPT_ADAMAX:
        return 2;
    case MC_OPT_NADAM:
        return 3;
    default:
        return 0;
    }
}

int mc_optim_slot_is_scalar(int kind, size_t i) { return kind == MC_OPT_NADAM && i == 2; }

/* --- learning-rate schedules --- */

/* Expects a piecewise schedule's count p[0] already checked to fit its n parameters. */
static size_t sched_n_params(int kind, const double *p) {
    switch (kind) {
    case MC_SCHED_CONSTANT:
        return 0;
    case MC_SCHED_EXPONENTIAL:
    case MC_SCHED_INVERSE_TIME:
        return 4;
    case MC_SCHED_POLYNOMIAL:
    case MC_SCHED_COSINE:
        return 5;
    case MC_SCHED_PIECEWISE:
        return 2 + 2 * (size_t)p[0]; /* the count, then count boundaries and count + 1 values */
    default:
        return 0;
    }
}

static mc_status sched_check(const mc_optim *opt, mc_error *err) {
    double kd = opt->hyper[MC_HYPER_SCHED];
    if (!(kd >= 0 && kd < MC_SCHED_COUNT) || kd != floor(kd))
        return mc_set_error(err, MC_ERR_ARG, "hyper: schedule kind must be an integer in [0, %d), got %g",
                            (int)MC_SCHED_COUNT, kd);
    int kind = (int)kd;
    const double *p = opt->sched;
    size_t n = p ? opt->n_sched : 0;
    if (kind == MC_SCHED_PIECEWISE &&
        (n < 2 || !(p[0] >= 0) || p[0] != floor(p[0]) || p[0] > (double)(n - 2) / 2))
        return mc_set_error(err, MC_ERR_ARG, "schedule: piecewise constant needs its boundary count first, then "
                            "count boundaries and count + 1 values; got %zu parameters%s", n,
                            n ? " that do not match the count" : "");
    size_t want = sched_n_params(kind, p);
    if (n != want)
        return mc_set_error(err, MC_ERR_ARG, "schedule: kind %d expects %zu parameters after the %d fixed "
                            "hyperparameters, got %zu", kind, want, (int)MC_HYPER_COUNT, n);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return mc_set_error(err, MC_ERR_ARG, "schedule: parameter %zu is %g, expected a finite "
                                                 "number", i, p[i]);
    if (kind != MC_SCHED_CONSTANT && kind != MC_SCHED_PIECEWISE && !(p[1] > 0))
        return mc_set_error(err, MC_ERR_ARG, "schedule: decay_steps must be > 0, got %g", p[1]);
    if (kind == MC_SCHED_COSINE && p[4] < 0)
        return mc_set_error(err, MC_ERR_ARG, "schedule: warmup_steps must be >= 0, got %g", p[4]);
    if (kind == MC_SCHED_PIECEWISE)
        for (size_t i = 2; i <= (size_t)p[0]; i++)
            if (!(p[i] > p[i - 1]))
                return mc_set_error(err, MC_ERR_ARG, "schedule: boundaries must be strictly increasing, got %g "
                                    "after %g", p[i], p[i - 1]);
    return MC_OK;
}

double mc_optim_learning_rate(const mc_optim *opt, int64_t step) {
    const double *p = opt->sched;
    double s = (double)step;
    switch ((int)opt->hyper[MC_HYPER_SCHED]) {
    case MC_SCHED_EXPONENTIAL: {
        double e = p[3] != 0.0 ? floor(s / p[1]) : s / p[1];
        return p[0] * pow(p[2], e);
    }
    case MC_SCHED_INVERSE_TIME: {
        double e = p[3] != 0.0 ? floor(s / p[1]) : s / p[1];
        return p[0] / (1.0 + p[2] * e);
    }
    case MC_SCHED_POLYNOMIAL: {
        double ds = p[1];
        if (p[4] != 0.0) ds *= s == 0.0 ? 1.0 : ceil(s / p[1]); /* cycle: the first multiple past step */
        else if (s > ds) s = ds;
        return (p[0] - p[2]) * pow(1.0 - s / ds, p[3]) + p[2];
    }
    case MC_SCHED_COSINE: {
        double warm = p[4];
        if (s > p[1] + warm) s = p[1] + warm;
        if (s < warm) return (p[3] - p[0]) * (s / warm) + p[0];
        double cosine = 0.5 * (1.0 + cos(3.14159265358979323846 * ((s - warm) / p[1])));
        return p[3] * ((1.0 - p[2]) * cosine + p[2]);
    }
    case MC_SCHED_PIECEWISE: {
        /* values[0] while step <= boundaries[0], values[i] while step <= boundaries[i] */
        size_t n = (size_t)p[0], i = 0;
        while (i < n && s > p[1 + i]) i++;
        return p[1 + n + i];
    }
    default:
        return opt->hyper[MC_HYPER_LR];
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
        return mc_set_error(err, MC_ERR_ARG, "opt: expected 0 (SGD), 1 (Adam), 2 (RMSprop), 3 (Adagrad), "
                            "4 (Adamax) or 5 (Nadam), got %d", opt->kind);
    if (!isfinite(h[MC_HYPER_LR]))
        return mc_set_error(err, MC_ERR_ARG, "hyper: learning_rate must be finite, got %g", h[MC_HYPER_LR]);
    if ((st = sched_check(opt, err))) return st;
    if ((st = check_range("weight_decay", h[MC_HYPER_WD], 0.0, HUGE_VAL, 0, err))) return st;
    if (opt->kind == MC_OPT_SGD) {
        if ((st = check_range("momentum", h[MC_HYPER_B1], 0.0, 1.0, 0, err))) return st;
    } else if (opt->kind == MC_OPT_ADAM || opt->kind == MC_OPT_ADAMAX || opt->kind == MC_OPT_NADAM) {
        /* beta_1 < 1: Adam and Adamax divide by 1 - beta_1^t; beta_2 < 1: Adam and Nadam by 1 - beta_2^t */
        if ((st = check_range("beta_1", h[MC_HYPER_B1], 0.0, 1.0, 1, err))) return st;
        if ((st = check_range("beta_2", h[MC_HYPER_B2], 0.0, 1.0, opt->kind != MC_OPT_ADAMAX, err))) return st;
        if ((st = check_range("epsilon", h[MC_HYPER_EPS], 0.0, HUGE_VAL, 0, err))) return st;
    } else if (opt->kind == MC_OPT_ADAGRAD) {
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
    float ua, da, ub, db, dv; /* Nadam: u_{t+1}, 1 - u_product_{t+1}, 1 - u_t, 1 - u_product_t, 1 - b2^t */
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
    const float ua = u->ua, da = u->da, ub = u->ub, db = u->db, dv = u->dv;
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
    case MC_OPT_ADAGRAD:
        /* s0 = accumulator (starts at initial_accumulator_value); epsilon inside the sqrt */
        for (size_t i = lo; i < hi; i++) {
            WD(i);
            float acc = s0[i] + g[i] * g[i];
            s0[i] = acc;
            w[i] -= (lr * g[i]) / sqrtf(acc + eps);
        }
        break;
    case MC_OPT_ADAMAX:
        /* s0 = m, s1 = u (the exponentially weighted infinity norm); c2 = beta_2, a = 1 - beta_1^t */
        for (size_t i = lo; i < hi; i++) {
            WD(i);
            float gi = g[i];
            float m = s0[i] + (gi - s0[i]) * c1;
            float bu = c2 * s1[i], ag = fabsf(gi);
            float un = bu > ag ? bu : ag;
            s0[i] = m;
            s1[i] = un;
            w[i] -= (lr * m) / (a * (un + eps));
        }
        break;
    case MC_OPT_NADAM:
        /* s0 = m, s1 = v; Nesterov's look-ahead mixes the next step's momentum weight into m_hat */
        for (size_t i = lo; i < hi; i++) {
            WD(i);
            float gi = g[i];
            float m = s0[i] + (gi - s0[i]) * c1;
            float v = s1[i] + (gi * gi - s1[i]) * c2;
            s0[i] = m;
            s1[i] = v;
            float m_hat = (ua * m) / da + (ub * gi) / db;
            float v_hat = v / dv;
            w[i] -= (m_hat * lr) / (sqrtf(v_hat) + eps);
        }
        break;
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
 * disjoint element ranges, so the result is the same for any thread count (bench/RESULTS.md,
 * "Design measurements"). */
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
    double lr = mc_optim_learning_rate(opt, t - 1);
    u.lr = (float)lr;
    u.wd = (float)h[MC_HYPER_WD];
    switch (opt->kind) {
    case MC_OPT_SGD:
        u.mu = (float)h[MC_HYPER_B1];
        break;
    case MC_OPT_ADAM:
        u.a = (float)(lr * sqrt(1.0 - pow(h[MC_HYPER_B2], (double)t)) / (1.0 - pow(h[MC_HYPER_B1], (double)t)));
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
    case MC_OPT_ADAGRAD:
        u.eps = (float)h[MC_HYPER_EPS];
        break;
    case MC_OPT_ADAMAX:
        u.c1 = (float)(1.0 - h[MC_HYPER_B1]);
        u.c2 = (float)h[MC_HYPER_B2];
        u.eps = (float)h[MC_HYPER_EPS];
        u.a = (float)(1.0 - pow(h[MC_HYPER_B1], (double)t));
        break;
    case MC_OPT_NADAM: {
        /* u_t = beta_1 (1 - 0.5 * 0.96^t) (Keras 3's momentum schedule); the optimizer-wide product of
         * the u_i (its slot 2, a float32 variable in Keras too) advances once per step, here. */
        double b1 = h[MC_HYPER_B1];
        double u_t = b1 * (1.0 - 0.5 * pow(0.96, (double)t)), u_next = b1 * (1.0 - 0.5 * pow(0.96, (double)t + 1));
        float prod = opt->slots[2][0] * (float)u_t;
        opt->slots[2][0] = prod;
        u.ua = (float)u_next;
        u.da = 1.0f - prod * (float)u_next;
        u.ub = (float)(1.0 - u_t);
        u.db = 1.0f - prod;
        u.dv = (float)(1.0 - pow(h[MC_HYPER_B2], (double)t));
        u.c1 = (float)(1.0 - b1);
        u.c2 = (float)(1.0 - h[MC_HYPER_B2]);
        u.eps = (float)h[MC_HYPER_EPS];
        break;
    }
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
        float *s2 = opt->n_slots > 2 && !mc_optim_slot_is_scalar(opt->kind, 2) ? opt->slots[2] + pos : NULL;
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
