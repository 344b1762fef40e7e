/* Loss values and gradients for one batch, and accuracy counting. Per-row arithmetic is in double
 * (a row is at most a few thousand values) so the loss sum does not drift over an epoch; gradients
 * are stored as float32. Clipping follows Keras: epsilon = 1e-7, and the gradient is zero where
 * the clip is active, as automatic differentiation of clip() gives. */
#include "losses.h"

#include <math.h>

#include "exp_nonpos.h"

#include "activations.h"

#define CLIP_EPS 1e-7

static mc_status metrics_check(const mc_metrics *metrics, int loss_kind, mc_error *err) {
    if (metrics->n > MC_MAX_METRICS)
        return mc_set_error(err, MC_ERR_ARG, "metric: at most %d metrics, got %zu", MC_MAX_METRICS, metrics->n);
    for (size_t i = 0; i < metrics->n; i++) {
        int code = metrics->m[i].code;
        if (code < 0 || code >= MC_METRIC_COUNT)
            return mc_set_error(err, MC_ERR_ARG, "metric: expected a code in [0, %d), got %d (metric %zu)",
                                MC_METRIC_COUNT, code, i);
        if ((code == MC_METRIC_SPARSE_CATEGORICAL || code == MC_METRIC_SPARSE_TOP_K) && loss_kind != MC_LOSS_SCCE)
            return mc_set_error(err, MC_ERR_ARG,
                                "metric: sparse %s accuracy (%d) needs int32 class ids (loss kind 4), got loss "
                                "kind %d with float targets", code == MC_METRIC_SPARSE_TOP_K ? "top-k" : "categorical",
                                code, loss_kind);
        if ((code == MC_METRIC_SPARSE_TOP_K || code == MC_METRIC_TOP_K) && metrics->m[i].k < 1)
            return mc_set_error(err, MC_ERR_ARG, "metric: top-k accuracy (%d) needs k >= 1, got k = %d (metric %zu)",
                                code, metrics->m[i].k, i);
        if (metrics->m[i].weighted != 0 && metrics->m[i].weighted != 1)
            return mc_set_error(err, MC_ERR_ARG, "metric: weighted must be 0 or 1, got %d (metric %zu)",
                                metrics->m[i].weighted, i);
    }
    return MC_OK;
}

mc_status mc_loss_check(const mc_loss_spec *spec, const mc_metrics *metrics, mc_error *err) {
    if (spec->kind < 0 || spec->kind >= MC_LOSS_COUNT)
        return mc_set_error(err, MC_ERR_ARG, "loss: kind must be in [0, %d), got %d", MC_LOSS_COUNT, spec->kind);
    if (spec->from_logits != 0 && spec->from_logits != 1)
        return mc_set_error(err, MC_ERR_ARG, "loss: from_logits must be 0 or 1, got %d", spec->from_logits);
    float ls = spec->label_smoothing;
    if (!(ls >= 0.0f && ls <= 1.0f))
        return mc_set_error(err, MC_ERR_ARG, "loss: label_smoothing must be in [0, 1], got %g", (double)ls);
    if (ls != 0.0f && spec->kind != MC_LOSS_CCE && spec->kind != MC_LOSS_BCE)
        return mc_set_error(err, MC_ERR_ARG,
                            "loss: label_smoothing applies to categorical (3) and binary (2) crossentropy "
                            "only, got %g with loss kind %d", (double)ls, spec->kind);
    return metrics ? metrics_check(metrics, spec->kind, err) : MC_OK;
}

/* target t_j of row i: smoothed one-hot for class ids, smoothed y otherwise */
static inline double target(const float *y, const int32_t *labels, size_t i, size_t j, size_t n,
                            double keep, double add) {
    double t = labels ? (labels[i] == (int32_t)j ? 1.0 : 0.0) : (double)y[i * n + j];
    return t * keep + add;
}

double mc_loss_mse(float *dp, const float *p, const float *y, size_t B, size_t n) {
    double total = 0.0, scale = 2.0 / ((double)n * (double)B);
    for (size_t i = 0; i < B * n; i++) {
        double e = (double)p[i] - (double)y[i];
        total += e * e;
        if (dp) dp[i] = (float)(scale * e);
    }
    return total / (double)n;
}

double mc_loss_mae(float *dp, const float *p, const float *y, size_t B, size_t n) {
    double total = 0.0, scale = 1.0 / ((double)n * (double)B);
    for (size_t i = 0; i < B * n; i++) {
        double e = (double)p[i] - (double)y[i];
        total += fabs(e);
        if (dp) dp[i] = (float)(e > 0 ? scale : e < 0 ? -scale : 0.0);
    }
    return total / (double)n;
}

double mc_loss_bce_logits(float *dz, const float *z, const float *y, float ls, size_t B, size_t n) {
    double total = 0.0, scale = 1.0 / ((double)n * (double)B);
    double keep = 1.0 - ls, add = 0.5 * ls;
    for (size_t i = 0; i < B * n; i++) {
        double x = z[i], t = (double)y[i] * keep + add;
        /* max(x,0) - x t + log(1 + exp(-|x|)): the exp argument is never positive */
        total += (x > 0 ? x : 0.0) - x * t + log1p(exp(-fabs(x)));
        if (dz) {
            double s = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
            dz[i] = (float)(scale * (s - t));
        }
    }
    return total / (double)n;
}

double mc_loss_bce_probs(float *dp, const float *p, const float *y, float ls, size_t B, size_t n) {
    double total = 0.0, scale = 1.0 / ((double)n * (double)B);
    double keep = 1.0 - ls, add = 0.5 * ls;
    for (size_t i = 0; i < B * n; i++) {
        double q = p[i], t = (double)y[i] * keep + add;
        int clipped = !(q >= CLIP_EPS && q <= 1.0 - CLIP_EPS);
        double c = q < CLIP_EPS ? CLIP_EPS : q > 1.0 - CLIP_EPS ? 1.0 - CLIP_EPS : q;
        total -= t * log(c) + (1.0 - t) * log(1.0 - c);
        if (dp) dp[i] = clipped ? 0.0f : (float)(scale * (-t / q + (1.0 - t) / (1.0 - q)));
    }
    return total / (double)n;
}

/* Rows up to this wide keep their exp terms on the stack, so softmax, loss and gradient take one exp
 * per element; wider rows recompute the exp for the gradient. */
#define CCE_ROW_STACK 64

/* Class ids without label smoothing (the usual SparseCategoricalCrossentropy): t is one-hot, so
 * the row loss is lse - z_label and dz = (softmax - onehot) / B, with no per-element target; the
 * same arithmetic as the general loop below for this case. The exp terms are float (as Keras
 * computes them), summed in double. With a gradient to fill, the exps go there first
 * (mc_exp_shifted_rows, as softmax takes them). */
static double cce_logits_ids(float *dz, const float *z, const int32_t *labels, size_t B, size_t n) {
    double total = 0.0, inv_b = 1.0 / (double)B;
    float row_e[CCE_ROW_STACK];
    if (dz) mc_exp_shifted_rows(dz, z, B, n);
    for (size_t i = 0; i < B; i++) {
        const float *x = z + i * n;
        float mx = mc_row_max(x, n);
        float *e = dz ? dz + i * n : row_e;
        if (!dz)
            for (size_t j = 0; j < n; j++) e[j] = mc_exp_nonpos(x[j] - mx);
        double s = 0.0;
        for (size_t j = 0; j < n; j++) s += e[j];
        size_t c = (size_t)labels[i];
        total += (double)mx + log(s) - (double)x[c];
        if (dz) {
            double inv_s = 1.0 / s;
            float ec = e[c];
            for (size_t j = 0; j < n; j++) e[j] = (float)(inv_b * ((double)e[j] * inv_s));
            e[c] = (float)(inv_b * ((double)ec * inv_s - 1.0));
        }
    }
    return total;
}

double mc_loss_cce_logits(float *dz, const float *z, const float *y, const int32_t *labels, float ls,
                          size_t B, size_t n) {
    if (labels && ls == 0.0f && n <= CCE_ROW_STACK) return cce_logits_ids(dz, z, labels, B, n);
    double total = 0.0, keep = 1.0 - ls, add = (double)ls / (double)n, inv_b = 1.0 / (double)B;
    double e[CCE_ROW_STACK];
    int keep_e = n <= CCE_ROW_STACK;
    for (size_t i = 0; i < B; i++) {
        const float *x = z + i * n;
        /* log-sum-exp with the row max subtracted: exp never overflows */
        float mx = mc_row_max(x, n);
        double s = 0.0;
        for (size_t j = 0; j < n; j++) {
            double ej = (double)mc_exp_nonpos(x[j] - mx);  /* as cce_logits_ids */
            if (keep_e) e[j] = ej;
            s += ej;
        }
        double lse = mx + log(s), tsum = 0.0, row = 0.0;
        for (size_t j = 0; j < n; j++) {
            double t = target(y, labels, i, j, n, keep, add);
            tsum += t;
            if (t != 0.0) row += t * (lse - x[j]);
        }
        total += row;
        if (dz) {
            /* d/dz_k sum_j t_j (lse - z_j) = sum(t) softmax_k - t_k, softmax_k = e_k / s */
            double inv_s = 1.0 / s;
            for (size_t j = 0; j < n; j++) {
                double t = target(y, labels, i, j, n, keep, add);
                double p = keep_e ? e[j] * inv_s : exp((double)x[j] - lse);
                dz[i * n + j] = (float)(inv_b * (tsum * p - t));
            }
        }
    }
    return total;
}

double mc_loss_cce_probs(float *dp, const float *p, const float *y, const int32_t *labels, float ls,
                         size_t B, size_t n) {
    double total = 0.0, keep = 1.0 - ls, add = (double)ls / (double)n, inv_b = 1.0 / (double)B;
    for (size_t i = 0; i < B; i++) {
        const float *r = p + i * n;
        double s = 0.0;
        for (size_t j = 0; j < n; j++) s += r[j];
        double row = 0.0, gq = 0.0;
        for (size_t j = 0; j < n; j++) {
            double q = r[j] / s, t = target(y, labels, i, j, n, keep, add);
            double c = q < CLIP_EPS ? CLIP_EPS : q > 1.0 - CLIP_EPS ? 1.0 - CLIP_EPS : q;
            if (t != 0.0) row -= t * log(c);
            /* g_j = dL/dq_j = -t_j / q_j inside the clip range, 0 outside; gq = sum_j g_j q_j */
            if (q >= CLIP_EPS && q <= 1.0 - CLIP_EPS) gq -= t;
        }
        total += row;
        if (dp) {
            /* through q = p / s: dL/dp_k = (g_k - sum_j g_j q_j) / s */
            for (size_t j = 0; j < n; j++) {
                double q = r[j] / s, t = target(y, labels, i, j, n, keep, add);
                double g = (q >= CLIP_EPS && q <= 1.0 - CLIP_EPS) ? -t / q : 0.0;
                dp[i * n + j] = (float)(inv_b * (g - gq) / s);
            }
        }
    }
    return total;
}

static double loss_rows(const mc_loss_spec *spec, int fused, float *d, const float *out, const float *logits,
                        const float *y, const int32_t *labels, size_t B, size_t n) {
    const float *in = fused ? logits : out;
    switch (spec->kind) {
    case MC_LOSS_MSE:
        return mc_loss_mse(d, out, y, B, n);
    case MC_LOSS_MAE:
        return mc_loss_mae(d, out, y, B, n);
    case MC_LOSS_BCE:
        if (fused || spec->from_logits) return mc_loss_bce_logits(d, in, y, spec->label_smoothing, B, n);
        return mc_loss_bce_probs(d, out, y, spec->label_smoothing, B, n);
    case MC_LOSS_CCE:
    case MC_LOSS_SCCE: {
        float ls = spec->kind == MC_LOSS_CCE ? spec->label_smoothing : 0.0f;
        const float *yy = spec->kind == MC_LOSS_CCE ? y : NULL;
        const int32_t *ll = spec->kind == MC_LOSS_SCCE ? labels : NULL;
        if (fused || spec->from_logits) return mc_loss_cce_logits(d, in, yy, ll, ls, B, n);
        return mc_loss_cce_probs(d, out, yy, ll, ls, B, n);
    }
    default:
        return 0.0;
    }
}

double mc_loss_eval(const mc_loss_spec *spec, int fused, float *d, const float *out, const float *logits,
                    const float *y, const int32_t *labels, const float *w, size_t B, size_t n) {
    if (!w) return loss_rows(spec, fused, d, out, logits, y, labels, B, n);
    /* Weighted: each row on its own (a batch of 1 gives its loss and that loss's gradient), the loss
     * times w_i and the gradient times w_i / B: the gradient of sum_i w_i l_i / B. */
    double total = 0.0, inv_b = 1.0 / (double)B;
    for (size_t i = 0; i < B; i++) {
        float *di = d ? d + i * n : NULL;
        double li = loss_rows(spec, fused, di, out + i * n, logits ? logits + i * n : NULL, y ? y + i * n : NULL,
                              labels ? labels + i : NULL, 1, n);
        total += (double)w[i] * li;
        if (di) {
            double s = (double)w[i] * inv_b;
            for (size_t j = 0; j < n; j++) di[j] = (float)(s * (double)di[j]);
        }
    }
    return total;
}

static size_t argmax_row(const float *r, size_t n) {
    size_t k = 0;
    for (size_t j = 1; j < n; j++)
        if (r[j] > r[k]) k = j;
    return k;
}

/* Keras's in_top_k: the label's score is at least the k-th largest of the row, i.e. fewer than k
 * scores are above it. A NaN score is never inside. */
static int in_top_k(const float *r, size_t n, size_t label, int k) {
    float v = r[label];
    if (v != v) return 0;
    size_t above = 0;
    for (size_t j = 0; j < n; j++) above += r[j] > v;
    return above < (size_t)k;
}

/* The metric's value for row i (pred row r). */
static double metric_row(const mc_metric_spec *metric, const float *r, const float *y, const int32_t *labels,
                         size_t i, size_t n) {
    switch (metric->code) {
    case MC_METRIC_SPARSE_CATEGORICAL:
    case MC_METRIC_CATEGORICAL: {
        size_t want = labels ? (size_t)labels[i] : argmax_row(y + i * n, n);
        return argmax_row(r, n) == want ? 1.0 : 0.0;
    }
    case MC_METRIC_SPARSE_TOP_K:
    case MC_METRIC_TOP_K: {
        size_t want = labels ? (size_t)labels[i] : argmax_row(y + i * n, n);
        return in_top_k(r, n, want, metric->k) ? 1.0 : 0.0;
    }
    case MC_METRIC_BINARY: {
        size_t hits = 0;
        for (size_t j = 0; j < n; j++) {
            int t = labels ? labels[i] == (int32_t)j : y[i * n + j] > 0.5f;
            hits += (r[j] > 0.5f) == t;
        }
        return (double)hits / (double)n;
    }
    case MC_METRIC_MSE:
    case MC_METRIC_MAE: {
        double row = 0.0;
        for (size_t j = 0; j < n; j++) {
            double e = (double)r[j] - (labels ? (double)labels[i] : (double)y[i * n + j]);
            row += metric->code == MC_METRIC_MSE ? e * e : fabs(e);
        }
        return row / (double)n;
    }
    default:
        return 0.0;
    }
}

double mc_metric_sum(const mc_metric_spec *metric, const float *pred, const float *y, const int32_t *labels,
                     const float *w, size_t B, size_t n) {
    double total = 0.0;
    if (!w) {
        for (size_t i = 0; i < B; i++) total += metric_row(metric, pred + i * n, y, labels, i, n);
    } else {
        for (size_t i = 0; i < B; i++) total += (double)w[i] * metric_row(metric, pred + i * n, y, labels, i, n);
    }
    return total;
}

void mc_metrics_add(const mc_metrics *metrics, double *sums, double *weight_sum, const float *pred, const float *y,
                    const int32_t *labels, const float *w, size_t B, size_t n) {
    int any_weighted = 0;
    for (size_t i = 0; metrics && i < metrics->n; i++) {
        const mc_metric_spec *m = &metrics->m[i];
        sums[i] += mc_metric_sum(m, pred, y, labels, m->weighted ? w : NULL, B, n);
        any_weighted |= m->weighted;
    }
    if (!any_weighted) return;
    double total = (double)B;
    if (w) {
        total = 0.0;
        for (size_t i = 0; i < B; i++) total += (double)w[i];
    }
    *weight_sum += total;
}
