/* Standalone checks of the training engine, meant to run under ASan/UBSan: dense forward/backward
 * against central differences, Adam against a double-precision hand computation with frozen ranges,
 * table validation messages, the epoch loop's hook stop, allocation failures (no leak, no partial
 * update), and weight penalties. The numeric oracle for everything else is tests/reference.py. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "activations.h"
#include "common.h"
#include "dense.h"
#include "losses.h"
#include "mc_test.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "train.h"

enum { B = 3, NI = 4, NO = 5 };

static uint64_t counter = 0;

/* uniform in [-1, 1) from the engine's own hash */
static float frand(void) { return (float)(2.0 * mc_rng_uniform(12345, counter++) - 1.0); }

static void fill(float *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = frand();
}

/* L = sum(tanh(x @ w + b) * r), accumulated in double */
static double dense_tanh_loss(const float *x, const float *w, const float *b, const float *r) {
    float pre[B * NO], out[B * NO];
    mc_dense_forward(pre, x, w, b, B, NI, NO);
    mc_activation_forward(MC_ACT_TANH, out, pre, B, NO);
    double s = 0.0;
    for (size_t i = 0; i < B * NO; i++) s += (double)out[i] * r[i];
    return s;
}

/* central difference of dense_tanh_loss with respect to v[i] */
static double central_diff(float *v, size_t i, const float *x, const float *w, const float *b, const float *r) {
    const float eps = 1e-2f;
    float old = v[i];
    v[i] = old + eps;
    double lp = dense_tanh_loss(x, w, b, r);
    v[i] = old - eps;
    double lm = dense_tanh_loss(x, w, b, r);
    v[i] = old;
    return (lp - lm) / (2.0 * eps);
}

static void test_dense_gradcheck(void) {
    float x[B * NI], w[NI * NO], b[NO], r[B * NO];
    fill(x, B * NI);
    fill(w, NI * NO);
    fill(b, NO);
    fill(r, B * NO);
    float pre[B * NO], out[B * NO], dpre[B * NO], dx[B * NI], dw[NI * NO], db[NO];
    mc_dense_forward(pre, x, w, b, B, NI, NO);
    mc_activation_forward(MC_ACT_TANH, out, pre, B, NO);
    mc_activation_backward(MC_ACT_TANH, dpre, r, pre, out, B, NO);
    /* outputs are overwritten, never read: start them as NaN */
    for (size_t i = 0; i < B * NI; i++) dx[i] = NAN;
    for (size_t i = 0; i < NI * NO; i++) dw[i] = NAN;
    for (size_t i = 0; i < NO; i++) db[i] = NAN;
    mc_dense_backward(dx, dw, db, dpre, x, w, B, NI, NO);
    for (size_t i = 0; i < B * NI; i++) CHECK_NEAR(dx[i], central_diff(x, i, x, w, b, r), 2e-3, 1e-2);
    for (size_t i = 0; i < NI * NO; i++) CHECK_NEAR(dw[i], central_diff(w, i, x, w, b, r), 2e-3, 1e-2);
    for (size_t i = 0; i < NO; i++) CHECK_NEAR(db[i], central_diff(b, i, x, w, b, r), 2e-3, 1e-2);
    /* NULL gradients are skipped; the others are unchanged by that */
    float dw2[NI * NO];
    mc_dense_backward(NULL, dw2, NULL, dpre, x, w, B, NI, NO);
    CHECK(memcmp(dw, dw2, sizeof dw) == 0);
    /* without bias */
    mc_dense_forward(pre, x, w, NULL, B, NI, NO);
    double s = 0.0;
    for (size_t j = 0; j < NI; j++) s += (double)x[j] * w[j * NO + 2];
    CHECK_NEAR(pre[2], s, 1e-6, 1e-6);
}

static void test_adam(void) {
    enum { P = 10 };
    const int64_t segs[] = {0, 4, 6, 3}; /* [4, 6) and [9, 10) frozen */
    float w[P], g[P], m[7] = {0}, v[7] = {0};
    double wr[P], mr[7] = {0}, vr[7] = {0};
    fill(w, P);
    for (size_t i = 0; i < P; i++) wr[i] = w[i];
    float frozen[4] = {w[4], w[5], w[9], 0};
    mc_optim opt = {MC_OPT_ADAM, {0.01, 0.9, 0.999, 1e-7, 0, 0, 0, 0}, segs, 2, {m, v, NULL}, 2, NULL, 0};
    mc_error err = {0};
    CHECK(mc_optim_check(&opt, P, &err) == MC_OK);
    CHECK(mc_optim_n_slots(MC_OPT_ADAM, opt.hyper) == 2);
    int64_t it = 0;
    for (int step = 1; step <= 4; step++) {
        fill(g, P);
        g[4] = g[5] = g[9] = 1e3f; /* frozen: must be ignored */
        mc_optim_step(&opt, w, g, &it);
        double alpha = 0.01 * sqrt(1.0 - pow(0.999, step)) / (1.0 - pow(0.9, step));
        size_t k = 0;
        for (size_t s = 0; s < 2; s++) {
            for (int64_t i = segs[2 * s]; i < segs[2 * s] + segs[2 * s + 1]; i++, k++) {
                mr[k] += (g[i] - mr[k]) * 0.1;
                vr[k] += ((double)g[i] * g[i] - vr[k]) * 0.001;
                wr[i] -= alpha * mr[k] / (sqrt(vr[k]) + 1e-7);
            }
        }
    }
    CHECK(it == 4);
    for (size_t i = 0; i < P; i++) CHECK_NEAR(w[i], wr[i], 1e-5, 1e-4);
    for (size_t k = 0; k < 7; k++) CHECK_NEAR(m[k], mr[k], 1e-6, 1e-4);
    CHECK(w[4] == frozen[0] && w[5] == frozen[1] && w[9] == frozen[2]);
    /* slot count and segment checks */
    opt.n_slots = 3;
    CHECK(mc_optim_check(&opt, P, &err) == MC_ERR_ARG && strstr(err.msg, "needs 2 slot arrays"));
    opt.n_slots = 2;
    CHECK(mc_optim_check(&opt, 8, &err) == MC_ERR_SHAPE && strstr(err.msg, "segments[1]"));
}

/* one flat dense row n_in -> n_out with its kernel at w_off and bias at b_off */
static void dense_row(int64_t *r, int64_t n_in, int64_t n_out, int act, int64_t w_off, int64_t b_off) {
    memset(r, 0, MC_TABLE_COLS * sizeof *r);
    r[MC_COL_KIND] = MC_LAYER_DENSE;
    r[MC_COL_ACTIVATION] = act;
    r[MC_COL_TRAINABLE] = 1;
    r[MC_COL_IN_H] = r[MC_COL_IN_W] = r[MC_COL_OUT_H] = r[MC_COL_OUT_W] = 1;
    r[MC_COL_IN_C] = n_in;
    r[MC_COL_OUT_C] = n_out;
    r[MC_COL_WEIGHT0] = w_off;
    r[MC_COL_WEIGHT1] = b_off;
    r[MC_COL_WEIGHT2] = r[MC_COL_WEIGHT3] = -1;
}

/* a 4 -> 5 (tanh) -> 3 (softmax) table with P = 20 + 5 + 15 + 3 */
static void two_layers(int64_t rows[2 * MC_TABLE_COLS]) {
    dense_row(rows, 4, 5, MC_ACT_TANH, 0, 20);
    dense_row(rows + MC_TABLE_COLS, 5, 3, MC_ACT_SOFTMAX, 25, 40);
}

static void test_table_validation(void) {
    int64_t rows[2 * MC_TABLE_COLS];
    double lf[2 * MC_FTABLE_COLS] = {0};
    mc_layer layers[2];
    mc_error err = {0};
    two_layers(rows);
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, 43, &err) == MC_OK);
    CHECK(layers[1].n_in == 5 && layers[1].w[1].off == 40 && layers[1].w[1].len == 3 &&
          layers[0].activation == MC_ACT_TANH && layers[0].ops == &mc_dense_ops);
    rows[MC_TABLE_COLS + MC_COL_IN_C] = 6;
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, 43, &err) == MC_ERR_SHAPE);
    CHECK(strstr(err.msg, "layers[1]: input size 6 (1 x 1 x 6) does not match the previous layer's output size 5"));
    two_layers(rows);
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 7, 43, &err) == MC_ERR_SHAPE);
    CHECK(strstr(err.msg, "layers[0]: input size 4 (1 x 1 x 4) does not match the input row width 7") != NULL);
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, 42, &err) == MC_ERR_SHAPE);
    CHECK(strstr(err.msg, "layers[1]: weight 1 range") != NULL);
    rows[MC_TABLE_COLS + MC_COL_WEIGHT0] = 10; /* kernel of layer 1 over layer 0's kernel */
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, 43, &err) == MC_ERR_SHAPE);
    CHECK(strstr(err.msg, "overlaps") != NULL);
}

typedef struct {
    int calls;
    size_t stop_at;
} hook_state;

static int stop_hook(void *ctx, const mc_progress *p) {
    hook_state *h = ctx;
    h->calls++;
    return p->batch == h->stop_at;
}

static void test_epoch_loop(void) {
    enum { N = 10, P = 43 };
    int64_t rows[2 * MC_TABLE_COLS];
    double lf[2 * MC_FTABLE_COLS] = {0};
    mc_layer layers[2];
    mc_error err = {0};
    two_layers(rows);
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, P, &err) == MC_OK);
    float params[P], grads[P], x[N * 4], m[P] = {0}, v[P] = {0};
    int32_t labels[N];
    fill(params, P);
    fill(x, N * 4);
    for (int i = 0; i < N; i++) labels[i] = i % 3;
    const int64_t segs[] = {0, P};
    const int64_t perm[N] = {3, 1, 4, 0, 5, 9, 2, 6, 8, 7};
    mc_model model = {layers, 2, params, grads, P};
    mc_data data = {x, 0, N, 4, NULL, labels, 0, NULL};
    mc_loss_spec loss = {MC_LOSS_SCCE, 0, 0.0f};
    mc_optim opt = {MC_OPT_ADAM, {0.01, 0.9, 0.999, 1e-7, 0, 0, 0, 0}, segs, 1, {m, v, NULL}, 2, NULL, 0};
    int64_t derived[2 * MC_MAX_WEIGHTS * 2];
    CHECK(mc_model_segments(&model, derived) == 1 && derived[0] == 0 && derived[1] == P);
    int64_t it = 0;
    hook_state hs = {0, 1};
    mc_hook hook = {stop_hook, &hs, 0.0};
    mc_sums sums;
    mc_metrics accuracy = {1, {{MC_METRIC_SPARSE_CATEGORICAL, 0, 0}}};
    CHECK(mc_train_epoch(&model, &data, perm, 4, &loss, &accuracy, &opt, &it, 7, &hook, &sums,
                         &err) == MC_STOPPED);
    CHECK(hs.calls == 2 && it == 2 && sums.n_seen == 8);
    /* a full epoch: 3 batches (4, 4, 2), the hook once per batch */
    hs.stop_at = 99;
    hs.calls = 0;
    CHECK(mc_train_epoch(&model, &data, perm, 4, &loss, &accuracy, &opt, &it, 7, &hook, &sums, &err) == MC_OK);
    CHECK(hs.calls == 3 && it == 5 && sums.n_seen == N && sums.metric_sums[0] >= 0 && sums.metric_sums[0] <= N);
    /* weighted metrics: sum w v with the rows' weights and sum w as their denominator; the unweighted
     * metric and the loss-free weight sum untouched by the weights */
    float w[N];
    double w_total = 0.0;
    for (int i = 0; i < N; i++) w_total += w[i] = 0.25f * (float)(i + 1);
    mc_metrics both = {2, {{MC_METRIC_SPARSE_CATEGORICAL, 0, 0}, {MC_METRIC_SPARSE_CATEGORICAL, 0, 1}}};
    mc_sums plain, weighted;
    CHECK(mc_evaluate(&model, &data, 4, &loss, &both, NULL, &plain, &err) == MC_OK);
    CHECK(plain.metric_sums[0] == plain.metric_sums[1] && plain.weight_sum == N);
    mc_data wdata = data;
    wdata.sw = w;
    CHECK(mc_evaluate(&model, &wdata, 4, &loss, &both, NULL, &weighted, &err) == MC_OK);
    CHECK(weighted.metric_sums[0] == plain.metric_sums[0] && weighted.weight_sum == w_total);
    CHECK(weighted.metric_sums[1] >= 0 && weighted.metric_sums[1] <= w_total);
    CHECK(mc_evaluate(&model, &wdata, 4, &loss, &accuracy, NULL, &weighted, &err) == MC_OK &&
          weighted.weight_sum == 0.0);
    /* every allocation of a call can fail: clean error, nothing written, nothing leaked */
    float before[P];
    memcpy(before, params, sizeof params);
    for (long k = 0; k < 2; k++) {
        mc_fail_alloc_after(k);
        mc_status st = mc_train_epoch(&model, &data, perm, 4, &loss, NULL, &opt, &it, 7, NULL, &sums, &err);
        mc_fail_alloc_after(-1);
        CHECK(st == MC_ERR_NOMEM && it == 5 && memcmp(before, params, sizeof params) == 0);
    }
    mc_fail_alloc_after(0);
    double l = 0.0;
    CHECK(mc_loss_and_grad(&model, x, N, NULL, labels, NULL, &loss, 0, 0, &l, NULL, &err) == MC_ERR_NOMEM);
    mc_fail_alloc_after(-1);
    /* loss_and_grad: dx against a central difference along one direction */
    float dx[N * 4], xp[N * 4], xm[N * 4];
    CHECK(mc_loss_and_grad(&model, x, N, NULL, labels, NULL, &loss, 0, 0, &l, dx, &err) == MC_OK);
    double lp, lm, an = 0.0;
    for (size_t i = 0; i < N * 4; i++) {
        float d = frand();
        xp[i] = x[i] + 1e-2f * d;
        xm[i] = x[i] - 1e-2f * d;
        an += (double)dx[i] * ((double)xp[i] - xm[i]);
    }
    mc_loss_and_grad(&model, xp, N, NULL, labels, NULL, &loss, 0, 0, &lp, NULL, &err);
    mc_loss_and_grad(&model, xm, N, NULL, labels, NULL, &loss, 0, 0, &lm, NULL, &err);
    CHECK_NEAR(lp - lm, an, 1e-5, 2e-2);
    /* batch_size 0 and targets that do not fit the loss are argument errors */
    CHECK(mc_evaluate(&model, &data, 0, &loss, NULL, NULL, &sums, &err) == MC_ERR_ARG);
    mc_loss_spec cce = {MC_LOSS_CCE, 0, 0.0f};
    CHECK(mc_evaluate(&model, &data, 4, &cce, NULL, NULL, &sums, &err) == MC_ERR_ARG);
    CHECK(strstr(err.msg, "y: loss kind 3 needs float32 targets") != NULL);
    /* predict with check_finite: a NaN in the third batch is reported with its rows */
    float out[N * 3];
    mc_data px = {x, 0, N, 4, NULL, NULL, 1, NULL};
    CHECK(mc_predict(&model, &px, out, 4, NULL, &err) == MC_OK);
    float saved = x[9 * 4 + 2];
    x[9 * 4 + 2] = NAN;
    CHECK(mc_predict(&model, &px, out, 4, NULL, &err) == MC_ERR_ARG);
    CHECK(strstr(err.msg, "x: rows 8 to 9 hold 1 NaN and 0 infinite value(s)") != NULL);
    px.check_finite = 0;
    CHECK(mc_predict(&model, &px, out, 4, NULL, &err) == MC_OK && isnan(out[9 * 3]));
    x[9 * 4 + 2] = saved;
}

/* Weight penalties: the table check, mc_model_penalty against a double sum, loss_and_grad's loss and
 * gradients against the same model without them (the difference is exactly the penalty's part), a
 * frozen layer counting nothing, and a whole epoch with them under the sanitizers. */
static void test_weight_penalties(void) {
    enum { N = 6, P = 43 };
    int64_t rows[2 * MC_TABLE_COLS];
    double lf[2 * MC_FTABLE_COLS] = {0}, none[2 * MC_FTABLE_COLS] = {0};
    mc_layer layers[2], plain[2];
    mc_error err = {0};
    two_layers(rows);
    lf[MC_FCOL_W0_L2] = 0.5;                    /* layer 0: kernel l2, bias l1 */
    lf[MC_FCOL_W1_L1] = 0.25;
    lf[MC_FTABLE_COLS + MC_FCOL_W0_L1] = 0.125; /* layer 1: kernel l1 and l2 */
    lf[MC_FTABLE_COLS + MC_FCOL_W0_L2] = 0.0625;
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, P, &err) == MC_OK);
    CHECK(mc_layers_from_table(plain, rows, none, 2, 4, P, &err) == MC_OK);
    float params[P], grads[P], gplain[P], x[N * 4];
    int32_t labels[N];
    fill(params, P);
    fill(x, N * 4);
    params[3] = 0.0f;  /* a kernel entry at |w|'s kink: sign(0) = 0 */
    params[25] = 0.0f; /* a kernel entry of layer 1 */
    for (int i = 0; i < N; i++) labels[i] = i % 3;
    double want = 0.0;
    for (int i = 0; i < 20; i++) want += 0.5 * (double)params[i] * params[i];
    for (int i = 20; i < 25; i++) want += 0.25 * fabs((double)params[i]);
    for (int i = 25; i < 40; i++) want += 0.125 * fabs((double)params[i]) + 0.0625 * (double)params[i] * params[i];
    mc_model model = {layers, 2, params, grads, P}, without = {plain, 2, params, gplain, P};
    CHECK_NEAR(mc_model_penalty(&model), want, 0, 1e-12);
    CHECK(mc_model_penalty(&without) == 0.0);
    mc_loss_spec loss = {MC_LOSS_SCCE, 0, 0.0f};
    double l = 0.0, lp = 0.0;
    CHECK(mc_loss_and_grad(&model, x, N, NULL, labels, NULL, &loss, 0, 0, &l, NULL, &err) == MC_OK);
    CHECK(mc_loss_and_grad(&without, x, N, NULL, labels, NULL, &loss, 0, 0, &lp, NULL, &err) == MC_OK);
    CHECK_NEAR(l - lp, want, 1e-12, 1e-12);
    int grads_ok = 1;
    for (int i = 0; i < P; i++) {
        double w = params[i], s = (w > 0) - (w < 0);
        double part = i < 20 ? 2 * 0.5 * w : i < 25 ? 0.25 * s : i < 40 ? 0.125 * s + 2 * 0.0625 * w : 0.0;
        grads_ok &= fabs((double)grads[i] - gplain[i] - part) <= 1e-6;
    }
    CHECK(grads_ok && grads[3] == gplain[3] && grads[40] == gplain[40]);
    /* layer 0 frozen: its penalty and gradients are gone, layer 1's stay */
    layers[0].trainable = 0;
    double frozen_want = 0.0;
    for (int i = 25; i < 40; i++)
        frozen_want += 0.125 * fabs((double)params[i]) + 0.0625 * (double)params[i] * params[i];
    CHECK_NEAR(mc_model_penalty(&model), frozen_want, 0, 1e-12);
    layers[0].trainable = 1;
    /* an epoch with penalties: the reported loss includes them (more than without) */
    const int64_t segs[] = {0, P};
    float m[P] = {0}, v[P] = {0}, saved[P];
    memcpy(saved, params, sizeof params);
    mc_optim opt = {MC_OPT_ADAM, {0.01, 0.9, 0.999, 1e-7, 0, 0, 0, 0}, segs, 1, {m, v, NULL}, 2, NULL, 0};
    mc_data data = {x, 0, N, 4, NULL, labels, 0, NULL};
    mc_sums sums;
    int64_t it = 0;
    CHECK(mc_train_epoch(&model, &data, NULL, N, &loss, NULL, &opt, &it, 7, NULL, &sums, &err) == MC_OK);
    CHECK_NEAR(sums.loss_sum / N, l, 1e-6, 1e-6); /* one batch: the loss at the weights before the step */
    memcpy(params, saved, sizeof params);
    /* bad factors: negative, NaN, and one on a bias the layer does not have */
    lf[MC_FCOL_W0_L1] = -0.5;
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, P, &err) == MC_ERR_ARG);
    CHECK(strstr(err.msg, "layers[0]: weight 0's l1 penalty factor must be a finite number >= 0, got -0.5") != NULL);
    lf[MC_FCOL_W0_L1] = NAN;
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, P, &err) == MC_ERR_ARG);
    CHECK(strstr(err.msg, "got nan") != NULL);
    lf[MC_FCOL_W0_L1] = 0.0;
    rows[MC_TABLE_COLS + MC_COL_WEIGHT1] = -1;
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, P, &err) == MC_OK);
    lf[MC_FTABLE_COLS + MC_FCOL_W1_L2] = 1.0;
    CHECK(mc_layers_from_table(layers, rows, lf, 2, 4, P, &err) == MC_ERR_ARG);
    CHECK(strstr(err.msg, "layers[1]: dense has no trained weight 1 here, so its l2 penalty factor must be 0, "
                          "got 1") != NULL);
}

static void test_rng(void) {
    double s = 0.0;
    int in_range = 1;
    uint64_t key = mc_rng_key(1, 2, 3);
    for (uint64_t i = 0; i < 100000; i++) {
        double u = mc_rng_uniform(key, i);
        in_range &= u >= 0.0 && u < 1.0;
        s += u;
    }
    CHECK(in_range);
    CHECK_NEAR(s / 100000, 0.5, 5e-3, 0);
    CHECK(mc_rng_key(1, 2, 3) == key && mc_rng_key(1, 3, 2) != key);
}

int main(void) {
    test_dense_gradcheck();
    test_adam();
    test_table_validation();
    test_epoch_loop();
    test_weight_penalties();
    test_rng();
    MC_TEST_EXIT();
}
