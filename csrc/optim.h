/* SGD, Adam, RMSprop, Adagrad, Adamax and Nadam with Keras 3's exact update rules, over the trainable
 * segments of the flat parameter block, and Keras's built-in learning-rate schedules evaluated at every
 * step. Optimizer state (slots) is kept only for trainable weights, segment after segment.
 * Gradient clipping and EMA are not here. */
#ifndef MC_OPTIM_H
#define MC_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum {
    MC_OPT_SGD = 0,
    MC_OPT_ADAM,
    MC_OPT_RMSPROP,
    MC_OPT_ADAGRAD,
    MC_OPT_ADAMAX,
    MC_OPT_NADAM,
    MC_OPT_COUNT
} mc_opt_kind;

/* Indices into the hyperparameter vector (float64, MC_HYPER_COUNT entries). */
enum {
    MC_HYPER_LR = 0,       /* learning_rate (a constant; unused under a schedule) */
    MC_HYPER_B1 = 1,       /* SGD momentum | Adam, Adamax, Nadam beta_1 | RMSprop rho */
    MC_HYPER_B2 = 2,       /* Adam, Adamax, Nadam beta_2 */
    MC_HYPER_EPS = 3,      /* epsilon of all but SGD */
    MC_HYPER_MOMENTUM = 4, /* RMSprop momentum */
    MC_HYPER_FLAG = 5,     /* SGD nesterov | Adam amsgrad | RMSprop centered (0/1) */
    MC_HYPER_WD = 6,       /* weight_decay, 0 = none */
    MC_HYPER_SCHED = 7,    /* mc_sched_kind; its parameters follow the MC_HYPER_COUNT fixed entries */
    MC_HYPER_COUNT = 8
};

/* Learning-rate schedules (keras/src/optimizers/schedules/learning_rate_schedule.py), evaluated at
 * step = iterations before the step's increment, as Keras's optimizer does. Their parameters:
 *   EXPONENTIAL   initial, decay_steps, decay_rate, staircase   init * rate^(step / decay_steps)
 *   INVERSE_TIME  initial, decay_steps, decay_rate, staircase   init / (1 + rate * step / decay_steps)
 *   POLYNOMIAL    initial, decay_steps, end, power, cycle
 *   COSINE        initial, decay_steps, alpha, warmup_target, warmup_steps (no warmup: target =
 *                 initial and 0 steps, which is the same function)
 *   PIECEWISE     n, boundaries[n] (strictly increasing), values[n + 1] */
typedef enum {
    MC_SCHED_CONSTANT = 0,
    MC_SCHED_EXPONENTIAL,
    MC_SCHED_PIECEWISE,
    MC_SCHED_POLYNOMIAL,
    MC_SCHED_INVERSE_TIME,
    MC_SCHED_COSINE,
    MC_SCHED_COUNT
} mc_sched_kind;

#define MC_OPT_MAX_SLOTS 3

typedef struct {
    int kind;                          /* mc_opt_kind */
    double hyper[MC_HYPER_COUNT];
    const int64_t *segments;           /* (n_segments, 2) rows [param_offset, length]: trainable ranges */
    size_t n_segments;
    float *slots[MC_OPT_MAX_SLOTS];    /* each of length sum(length), laid out segment after segment,
                                          except an optimizer-wide scalar (mc_optim_slot_is_scalar) */
    size_t n_slots;
    const double *sched;               /* the schedule's parameters (n_sched), NULL for a constant */
    size_t n_sched;
} mc_optim;

/* Number of slot arrays kind/hyper need: SGD (m) if momentum > 0; Adam (m, v) or (m, v, vhat) with
 * amsgrad; RMSprop (v) + (mom) if momentum > 0 + (mg) if centered; Adagrad (accumulator); Adamax
 * (m, u); Nadam (m, v, u_product). 0 for an unknown kind. */
size_t mc_optim_n_slots(int kind, const double *hyper);

/* 1 if slot i of kind holds one float for the whole optimizer (Nadam's u_product, the running product
 * of its momentum schedule, which Keras also keeps as one variable), 0 if it holds one per weight. */
int mc_optim_slot_is_scalar(int kind, size_t i);

/* The learning rate opt uses at the step taken when the counter reads `step` (its schedule's value,
 * or hyper[MC_HYPER_LR]). Expects a checked opt. */
double mc_optim_learning_rate(const mc_optim *opt, int64_t step);

/* Sum of the segment lengths (the slot length). */
size_t mc_optim_slot_len(const int64_t *segments, size_t n_segments);

/* Validates opt against a parameter block of P floats: kind, finite hyperparameters in range, the
 * schedule (kind, parameter count and values), slot count, segments within [0, P), in increasing order
 * and not overlapping. MC_ERR_ARG / MC_ERR_SHAPE with a message naming the field. */
mc_status mc_optim_check(const mc_optim *opt, size_t P, mc_error *err);

/* One optimizer step (t = *iterations + 1) at the learning rate mc_optim_learning_rate(opt, t - 1),
 * then *iterations += 1. Only params inside the segments are read and written; grads (same layout as
 * params) is read only. Weight decay, when set, is applied first: w -= w * wd * lr (Keras base
 * optimizer). Cannot fail (check with mc_optim_check). */
void mc_optim_step(const mc_optim *opt, float *params, const float *grads, int64_t *iterations);

#endif
