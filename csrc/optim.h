/* SGD, Adam and RMSprop with Keras 3's exact update rules, over the trainable segments of the flat
 * parameter block. Optimizer state (slots) is kept only for trainable weights, segment after segment.
 * Gradient clipping, EMA and learning-rate schedules are not here (a schedule is Python's job). */
#ifndef MC_OPTIM_H
#define MC_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum { MC_OPT_SGD = 0, MC_OPT_ADAM, MC_OPT_RMSPROP, MC_OPT_COUNT } mc_opt_kind;

/* Indices into the hyperparameter vector (float64, MC_HYPER_COUNT entries). */
enum {
    MC_HYPER_LR = 0,       /* learning_rate */
    MC_HYPER_B1 = 1,       /* SGD momentum | Adam beta_1 | RMSprop rho */
    MC_HYPER_B2 = 2,       /* Adam beta_2 */
    MC_HYPER_EPS = 3,      /* Adam / RMSprop epsilon */
    MC_HYPER_MOMENTUM = 4, /* RMSprop momentum */
    MC_HYPER_FLAG = 5,     /* SGD nesterov | Adam amsgrad | RMSprop centered (0/1) */
    MC_HYPER_WD = 6,       /* weight_decay, 0 = none */
    MC_HYPER_COUNT = 8     /* [7] reserved */
};

#define MC_OPT_MAX_SLOTS 3

typedef struct {
    int kind;                          /* mc_opt_kind */
    double hyper[MC_HYPER_COUNT];
    const int64_t *segments;           /* (n_segments, 2) rows [param_offset, length]: trainable ranges */
    size_t n_segments;
    float *slots[MC_OPT_MAX_SLOTS];    /* each of length sum(length), laid out segment after segment */
    size_t n_slots;
} mc_optim;

/* Number of slot arrays kind/hyper need: SGD (m) if momentum > 0; Adam (m, v) or (m, v, vhat) with
 * amsgrad; RMSprop (v) + (mom) if momentum > 0 + (mg) if centered. 0 for an unknown kind. */
size_t mc_optim_n_slots(int kind, const double *hyper);

/* Sum of the segment lengths (the slot length). */
size_t mc_optim_slot_len(const int64_t *segments, size_t n_segments);

/* Validates opt against a parameter block of P floats: kind, finite hyperparameters in range, slot
 * count, segments within [0, P), in increasing order and not overlapping. MC_ERR_ARG / MC_ERR_SHAPE
 * with a message naming the field. */
mc_status mc_optim_check(const mc_optim *opt, size_t P, mc_error *err);

/* One optimizer step (t = *iterations + 1), then *iterations += 1. Only params inside the segments
 * are read and written; grads (same layout as params) is read only. Weight decay, when set, is
 * applied first: w -= w * wd * lr (Keras base optimizer). Cannot fail (check with mc_optim_check). */
void mc_optim_step(const mc_optim *opt, float *params, const float *grads, int64_t *iterations);

#endif
