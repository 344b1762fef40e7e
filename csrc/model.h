/* A model as the C core sees it: a chain of layers (layer.h) mapping samples of n_in floats to samples
 * of n_out, described by a table whose weights are offsets into one flat float32 parameter block
 * (grads share the layout). Forward/backward over the chain use one activation arena sized for a
 * batch, and reach each layer through its kind's ops only. No shape inference and no weight
 * initialisation here (Python does both). */
#ifndef MC_MODEL_H
#define MC_MODEL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "layer.h"

typedef struct mc_model {
    const mc_layer *layers;
    size_t L;
    float *params;     /* (P) */
    float *grads;      /* (P), same layout; only trainable layers' ranges are written */
    size_t P;
} mc_model;

/* Converts and validates the engine table: rows (L, MC_TABLE_COLS) int64, lfloats (L, MC_FTABLE_COLS)
 * float64 into layers (L). Checks: codes in range, trainable 0/1, shapes >= 1, geometry >= 0, each
 * layer's input size equal to the previous layer's output size (the first's to d, the input row
 * width), the kind's own checks (mc_layer_ops.init), every weight inside [0, P) and not overlapping
 * any other, absent weights at offset -1, penalty factors finite, >= 0 and 0 on a slot without a
 * trained weight. MC_ERR_SHAPE / MC_ERR_ARG with a message naming
 * "layers[l]" and the values found. */
mc_status mc_layers_from_table(mc_layer *layers, const int64_t *rows, const double *lfloats, size_t L,
                               size_t d, size_t P, mc_error *err);

/* The optimizer's segments (model.h's side of optim.h): the ranges [offset, length] of the trained
 * weights (mc_weight.trained) of the layers with trainable = 1, in increasing order, touching ranges
 * merged, into out (room for 2 * MC_MAX_WEIGHTS * L values); returns their count. Cannot fail. */
size_t mc_model_segments(const mc_model *m, int64_t *out);

/* Whether the loss should read the last layer's logits (see mc_loss_eval): loss kind CCE/SCCE with
 * a final softmax, or BCE with a final sigmoid, in a last layer whose kind can give its logits,
 * and from_logits == 0. */
int mc_model_fused(const mc_model *m, int loss_kind, int from_logits);

/* Largest sample size of a layer's input or output (max over n_in, n_out). */
size_t mc_model_max_width(const mc_model *m);

/* Scratch for one forward/backward pass over at most B rows. All pointers point into one block. */
typedef struct mc_arena {
    size_t B;
    float **out;     /* L: layer outputs (B, n_out) */
    float **scratch; /* L: what each layer keeps for its backward (B, ops->scratch), NULL for none */
    float *g0, *g1; /* gradient ping-pong buffers (B, max width) */
    void *block;
    /* NULL, or: a forward pass whose first layer checks its products (mc_layer_ops.checks_products)
     * sets it to 1 when that layer's product holds NaN or an infinity */
    atomic_int *first_product_nonfinite;
} mc_arena;

/* Allocates the arena for m and B rows (B >= 1). MC_ERR_NOMEM if the allocation fails or sizes
 * overflow; the arena is then empty and mc_arena_release on it is a no-op. */
mc_status mc_arena_init(mc_arena *a, const mc_model *m, size_t B, mc_error *err);
void mc_arena_release(mc_arena *a);

/* Forward pass of B <= a->B rows x (B, n_in of layer 0). Layer outputs land in a->out; the model
 * output is a->out[L-1]. training != 0 turns dropout on, with masks drawn from
 * (seed, step, layer index, element index within the batch) (rng.h). Cannot fail. */
void mc_model_forward(const mc_model *m, mc_arena *a, const float *x, size_t B, int training,
                      uint64_t seed, uint64_t step);

/* The same starting at layer `first` (<= L - 1): x is then the input of layer `first`, already through
 * layers [0, first) (the batch gather folds a leading Rescaling into the uint8 conversion), whose
 * outputs are not written. Random streams keep the true layer index. */
void mc_model_forward_from(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t B,
                           int training, uint64_t seed, uint64_t step);

/* Layers [lo, hi) of mc_model_forward_from(m, a, x, first, ...) (first <= lo <= hi <= L), after
 * layers [first, lo) have run on the same arena: the pass in pieces, with the same results. */
void mc_model_forward_layers(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t lo, size_t hi,
                             size_t B, int training, uint64_t seed, uint64_t step);

/* Inference (dropout off) on a block of `rows` rows x of a batch of plan->batch_rows rows: what
 * mc_model_forward_from(m, ..., first, batch_rows, 0, ...) writes for those rows, bit for bit, in
 * the block's own arena a (at least `rows` rows), computed on the calling thread alone, so that a
 * batch's blocks can be split over the pool, one task per block through every layer, each in a
 * cache-sized arena of its own. plan NULL: the block is the whole batch. */
void mc_model_infer_rows(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t rows,
                         const mc_infer_plan *plan);

/* The logits the fused loss reads after a forward pass: the input of the last layer's activation. */
const float *mc_model_logits(const mc_model *m, const mc_arena *a, const float *x);
/* The same after mc_model_forward_from(..., x, first, ...). */
const float *mc_model_logits_from(const mc_model *m, const mc_arena *a, const float *x, size_t first);

/* The weight penalties (layer.h, MC_FCOL_W0_L1 ...) at the current params, in double: the sum over
 * the trainable layers' penalized weights of l1 * sum|w| + l2 * sum(w^2). Weights of frozen layers
 * count nothing, as in Keras (its penalties come from the trainable weights). A model without
 * penalties costs a look at each layer's factors, no pass over the weights. Cannot fail. */
double mc_model_penalty(const mc_model *m);

/* Backward pass after mc_model_forward with the same x, B and training flag. dlast (B, n_out of the
 * last layer) holds dL/d(output), or dL/d(logits) when fused != 0 (the last activation is skipped);
 * it must be a->g0 or a->g1 and is clobbered. For every trainable layer, the gradients of its
 * trained weights are OVERWRITTEN, plus the gradient of their penalty, l1 * sign(w) + 2 * l2 * w
 * with sign(0) = 0; frozen ranges are not touched. Returns those layers' penalties: the same sum as
 * mc_model_penalty, from the same pass over the weights. dx (B, n_in of layer 0), if not NULL,
 * receives dL/dx; without it the pass stops at the lowest trainable layer with trained weights and
 * the first layer's input gradient is never computed. Layers write their input's gradient into the
 * other of g0/g1 (ping-pong), so any layer may change the width. Cannot fail. */
double mc_model_backward(const mc_model *m, mc_arena *a, const float *x, size_t B, int training, float *dlast,
                         int fused, float *dx);

/* The same after mc_model_forward_from(..., x, first, ...): layers below `first` are not visited (nor
 * their penalties counted) and dx, if not NULL, receives dL/d(input of layer first). */
double mc_model_backward_from(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t B,
                              int training, float *dlast, int fused, float *dx);

#endif
