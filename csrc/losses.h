/* Losses (Keras 3 numerics, reduction "sum_over_batch_size") with their gradients, and the accuracy
 * metrics, for one batch of rows. Per-sample losses are computed in double; gradients are float32.
 * Optional per-sample weights scale each row's loss (Keras: sum(w_i l_i) / B, the divisor staying the
 * row count); ignore_class and other reductions are not supported. */
#ifndef MC_LOSSES_H
#define MC_LOSSES_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum {
    MC_LOSS_MSE = 0,  /* mean over the row of (p - y)^2 */
    MC_LOSS_MAE,      /* mean over the row of |p - y| */
    MC_LOSS_BCE,      /* binary crossentropy, mean over the row */
    MC_LOSS_CCE,      /* categorical crossentropy, sum over classes, float targets */
    MC_LOSS_SCCE,     /* the same with int32 class ids */
    MC_LOSS_COUNT
} mc_loss_kind;

typedef enum {
    MC_METRIC_NONE = 0,
    MC_METRIC_SPARSE_CATEGORICAL,  /* argmax(row) == label (ties: first max) */
    MC_METRIC_CATEGORICAL,         /* argmax(pred) == argmax(y) */
    MC_METRIC_BINARY,              /* mean over the row of (pred > 0.5) == (y > 0.5) */
    MC_METRIC_COUNT
} mc_metric;

typedef struct {
    int kind;               /* mc_loss_kind */
    int from_logits;        /* 0/1: CCE, SCCE, BCE read raw scores instead of probabilities */
    float label_smoothing;  /* CCE: y*(1-ls) + ls/n; BCE: y*(1-ls) + ls/2; must be 0 for other kinds */
} mc_loss_spec;

/* Checks spec and metric codes and their compatibility (sparse accuracy needs SCCE class ids).
 * MC_ERR_ARG with a message naming the field otherwise. */
mc_status mc_loss_check(const mc_loss_spec *spec, int metric, mc_error *err);

/* Each loss below takes one batch of B rows of n values and returns the SUM over rows of the
 * per-sample losses (double). d (B, n), if not NULL, is OVERWRITTEN with the gradient of the batch
 * MEAN loss (sum / B) with respect to the input it names. y (B, n) float32 targets; labels (B)
 * int32 class ids in [0, n) (exactly one of y / labels is not NULL where both appear). */

/* MSE: mean_j (p - y)^2; d = 2 (p - y) / (n B). */
double mc_loss_mse(float *dp, const float *p, const float *y, size_t B, size_t n);
/* MAE: mean_j |p - y|; d = sign(p - y) / (n B) (0 where p == y). */
double mc_loss_mae(float *dp, const float *p, const float *y, size_t B, size_t n);
/* BCE on logits z: mean_j max(z,0) - z t + log1p(exp(-|z|)) with t = y (1-ls) + ls/2;
 * dz = (sigmoid(z) - t) / (n B). */
double mc_loss_bce_logits(float *dz, const float *z, const float *y, float ls, size_t B, size_t n);
/* BCE on probabilities p: c = clip(p, 1e-7, 1 - 1e-7); mean_j -(t log c + (1-t) log(1-c));
 * the gradient flows through the clip (0 where p is outside the clip range). */
double mc_loss_bce_probs(float *dp, const float *p, const float *y, float ls, size_t B, size_t n);
/* CCE on logits z: sum_j t_j (logsumexp(z) - z_j), t = targets smoothed as y (1-ls) + ls/n;
 * dz = (sum(t) softmax(z) - t) / B. Subtracts the row max; no clipping. */
double mc_loss_cce_logits(float *dz, const float *z, const float *y, const int32_t *labels, float ls,
                          size_t B, size_t n);
/* CCE on probabilities p: q = p / sum(p); c = clip(q, 1e-7, 1 - 1e-7); -sum_j t_j log c_j;
 * the gradient flows through the normalisation and the clip (0 where q is clipped). */
double mc_loss_cce_probs(float *dp, const float *p, const float *y, const int32_t *labels, float ls,
                         size_t B, size_t n);

/* The variant the engine uses for spec: `fused` (the model's last activation is the softmax/sigmoid
 * matching the crossentropy and from_logits is 0) evaluates the logits variant on `logits` (the
 * activation's input) and d is the gradient w.r.t. those logits; otherwise the loss reads `out` and d
 * is w.r.t. out. Label smoothing is applied for CCE and BCE only. w (B) float32 sample weights, or
 * NULL for all ones: returns sum_i w_i l_i, and d is the gradient of that sum over B (Keras's
 * "sum_over_batch_size" with sample weights). */
double mc_loss_eval(const mc_loss_spec *spec, int fused, float *d, const float *out, const float *logits,
                    const float *y, const int32_t *labels, const float *w, size_t B, size_t n);

/* Sum over the B rows of the per-sample metric value (0 or 1; binary: the row's fraction of
 * matches). pred (B, n); targets as above (class ids count as one-hot rows). 0 for MC_METRIC_NONE. */
double mc_metric_sum(int metric, const float *pred, const float *y, const int32_t *labels, size_t B, size_t n);

#endif
