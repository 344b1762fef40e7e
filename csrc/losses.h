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

/* The metrics computed inside the batch loops: each is a mean over samples of a per-sample value,
 * so the loops keep its sum. Class ids count as one-hot rows where a metric reads a target row. */
typedef enum {
    MC_METRIC_NONE = 0,
    MC_METRIC_SPARSE_CATEGORICAL,  /* argmax(row) == label (ties: first max) */
    MC_METRIC_CATEGORICAL,         /* argmax(pred) == argmax(y) */
    MC_METRIC_BINARY,              /* mean over the row of (pred > 0.5) == (y > 0.5) */
    MC_METRIC_SPARSE_TOP_K,        /* the label's score is among the k highest (ties with the k-th count) */
    MC_METRIC_TOP_K,               /* the same for argmax(y) */
    MC_METRIC_MSE,                 /* mean over the row of (pred - t)^2 */
    MC_METRIC_MAE,                 /* mean over the row of |pred - t| */
    MC_METRIC_COUNT
} mc_metric;

/* MSE and MAE with class ids compare every score with the id itself, t = label (Keras expands the
 * (B,) targets to (B, 1) and broadcasts them over the row). */

#define MC_MAX_METRICS 8

typedef struct {
    int code;      /* mc_metric */
    int k;         /* top-k metrics: how many of the highest scores count (>= 1); unused by the others */
    int weighted;  /* 1: each sample's value counts w_i times, the batch's sample weights (Keras's
                    * `weighted_metrics`, a mean sum(w v) / sum(w)); 0: once (Keras's `metrics`) */
} mc_metric_spec;

/* The metrics of one call, in the caller's order; n == 0: none. */
typedef struct {
    size_t n;
    mc_metric_spec m[MC_MAX_METRICS];
} mc_metrics;

typedef struct {
    int kind;               /* mc_loss_kind */
    int from_logits;        /* 0/1: CCE, SCCE, BCE read raw scores instead of probabilities */
    float label_smoothing;  /* CCE: y*(1-ls) + ls/n; BCE: y*(1-ls) + ls/2; must be 0 for other kinds */
} mc_loss_spec;

/* Checks spec, the metrics (NULL: none) and their compatibility (the sparse metrics need SCCE class
 * ids, top-k a k >= 1, `weighted` is 0 or 1). MC_ERR_ARG with a message naming the field otherwise. */
mc_status mc_loss_check(const mc_loss_spec *spec, const mc_metrics *metrics, mc_error *err);

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

/* Sum over the B rows of the per-sample metric value v_i (accuracies 0 or 1; binary: the row's
 * fraction of matches; MSE/MAE: the row's mean), or of w_i v_i when w (B) is not NULL. pred (B, n);
 * targets as above. 0 for MC_METRIC_NONE. metric->weighted is the caller's business. */
double mc_metric_sum(const mc_metric_spec *metric, const float *pred, const float *y, const int32_t *labels,
                     const float *w, size_t B, size_t n);

/* For each of the metrics (NULL: none): sums[i] += mc_metric_sum of metrics->m[i] over the batch,
 * with the sample weights w (B; NULL: all ones) for the weighted ones. When one of them is weighted,
 * *weight_sum += sum(w) (B without weights), their denominator; untouched otherwise. */
void mc_metrics_add(const mc_metrics *metrics, double *sums, double *weight_sum, const float *pred, const float *y,
                    const int32_t *labels, const float *w, size_t B, size_t n);

#endif
