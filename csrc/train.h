/* The batch loops: one training epoch, evaluation, prediction, and a single forward/backward for
 * tests. Batches are gathered through an index permutation (uint8 rows converted on the fly), running
 * sums are kept in double, and a progress hook (a C function pointer) is called between batches.
 * Shuffling, callbacks and argument conversion are the caller's job. */
#ifndef MC_TRAIN_H
#define MC_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "losses.h"
#include "model.h"
#include "optim.h"

typedef struct {
    size_t batch;       /* index of the batch just finished, from 0 */
    size_t n_batches;   /* batches in this call */
    double loss_sum;    /* sum over finished batches of (batch mean loss + weight penalties) * batch rows */
    const double *metric_sums;  /* per metric of the call, in its order: sum of per-sample values */
    size_t n_metrics;
    size_t n_seen;      /* rows finished */
    double weight_sum;  /* see mc_sums */
} mc_progress;

/* Called between batches; a nonzero return stops the loop after the current batch (MC_STOPPED). */
typedef int (*mc_progress_fn)(void *ctx, const mc_progress *p);

typedef struct {
    mc_progress_fn fn;  /* NULL: never called */
    void *ctx;
    double interval;    /* seconds: call when at least this much passed since the last call; <= 0: after
                         * every batch. Always called after the last batch. */
} mc_hook;

/* A data set: x (N, d) float32 or uint8 rows; targets are either y (N, n_out) float32 or labels (N)
 * int32 class ids (the other NULL; both NULL for predict); sw (N) float32 sample weights of the loss,
 * gathered with the rows (NULL: all ones). Nothing here is ever written. */
typedef struct {
    const void *x;
    int x_u8;
    size_t N, d;
    const float *y;
    const int32_t *labels;
    int check_finite;   /* predict: refuse float rows holding NaN/Inf, each batch as it is used */
    const float *sw;
} mc_data;

typedef struct {
    double loss_sum;
    double metric_sums[MC_MAX_METRICS];  /* per metric of the call, in its order; weighted metrics: sum w v */
    size_t n_seen;
    double weight_sum;  /* the weighted metrics' denominator: sum of the sample weights of the rows
                         * finished (their count without weights); 0 when no metric is weighted */
} mc_sums;

/* One epoch of training: for each batch of batch_size rows taken in the order perm (int64 (N), a
 * permutation of [0, N); NULL = sequential), the last batch possibly shorter: gather -> forward
 * (dropout on, masks keyed by (seed, *iterations, layer, element)) -> loss and gradient -> backward
 * (grads of trainable layers overwritten, their weight penalties' gradients added) -> optimizer step
 * over opt's segments -> *iterations += 1. Each batch's loss includes the weight penalties
 * (mc_model_penalty) at the weights of its step, before the update.
 * sums receives the running sums (also on MC_STOPPED). Allocates one arena for the call.
 * Returns MC_OK, MC_STOPPED (the hook asked), MC_ERR_NOMEM, or MC_ERR_ARG for batch_size 0, an
 * empty layer chain, or targets of the wrong form for the loss (SCCE: labels, others: y). Labels
 * must lie in [0, n_out) (not checked here: out-of-range ids only make wrong losses, never
 * out-of-bounds accesses). */
mc_status mc_train_epoch(const mc_model *m, const mc_data *data, const int64_t *perm, size_t batch_size,
                         const mc_loss_spec *loss, const mc_metrics *metrics, const mc_optim *opt, int64_t *iterations,
                         uint64_t seed, const mc_hook *hook, mc_sums *sums, mc_error *err);

/* Loss and metric sums over the data in order, inference mode (no dropout), nothing written but sums;
 * each batch's loss includes the weight penalties (mc_model_penalty), as Keras's evaluate reports.
 * Same return codes as mc_train_epoch. */
mc_status mc_evaluate(const mc_model *m, const mc_data *data, size_t batch_size, const mc_loss_spec *loss,
                      const mc_metrics *metrics, const mc_hook *hook, mc_sums *sums, mc_error *err);

/* Model output for every row, inference mode: out (N, n_out of the last layer), overwritten in order.
 * On MC_STOPPED the rows after the last finished batch are left as they were. */
mc_status mc_predict(const mc_model *m, const mc_data *data, float *out, size_t batch_size, const mc_hook *hook,
                     mc_error *err);

/* One forward/backward over all B rows of x (B, d) float32 as a single batch (dropout on when
 * training != 0, masks keyed by (seed, step 0, layer, element)): *loss_out = batch mean loss (weighted
 * by sw (B) when not NULL, see mc_loss_eval) + the weight penalties (mc_model_penalty), grads of
 * trainable layers OVERWRITTEN (with the penalties' gradients, as mc_model_backward), dx (B, d) = dL/dx
 * if not NULL. MC_ERR_ARG for B == 0 or targets of the wrong form, MC_ERR_NOMEM. */
mc_status mc_loss_and_grad(const mc_model *m, const float *x, size_t B, const float *y, const int32_t *labels,
                           const float *sw, const mc_loss_spec *loss, uint64_t seed, int training,
                           double *loss_out, float *dx, mc_error *err);

#endif
