/* The layer interface: the table that describes a model to C, and what every layer kind provides.
 * Each kind lives in a file of its own (dense.c, elementwise.c, conv.c, ...) and exports one
 * mc_layer_ops; model.c and train.c dispatch through mc_layer_ops_of(kind) only, and know no kind.
 * Shapes are per sample, channels last: a sample of a layer's input is (in.h, in.w, in.c) floats in
 * row-major order, a flat vector being (1, 1, n). A batch is B such samples one after the other. */
#ifndef MC_LAYER_H
#define MC_LAYER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

typedef enum {
    MC_LAYER_DENSE = 0,   /* out = act(inp @ W + b) on the last axis: (h, w, n_in) -> (h, w, units) */
    MC_LAYER_ACTIVATION,  /* out = act(inp) */
    MC_LAYER_DROPOUT,     /* inverted dropout while training, rate in f[MC_FCOL_RATE] */
    MC_LAYER_RESCALING,   /* out = inp * f[MC_FCOL_SCALE] + f[MC_FCOL_OFFSET] */
    MC_LAYER_CONV2D,      /* out = act(conv(inp, kernel) + b): kernel (kernel_h, kernel_w, in.c, out.c) */
    MC_LAYER_MAXPOOL2D,   /* max over each kernel_h x kernel_w window, per channel */
    MC_LAYER_AVGPOOL2D,   /* mean over each window's elements inside the input ("same" pads excluded) */
    MC_LAYER_GLOBALAVGPOOL2D, /* (h, w, c) -> (1, 1, c): the mean over h and w */
    MC_LAYER_BATCHNORM,   /* (inp - mean) / sqrt(var + f[MC_FCOL_EPSILON]) * gamma + beta, per channel */
    MC_LAYER_RELU,        /* Keras's ReLU and LeakyReLU: inp > threshold ? min(inp, f[MC_FCOL_MAX_VALUE]) :
                           * f[MC_FCOL_NEGATIVE_SLOPE] * (inp - threshold) */
    MC_LAYER_NORMALIZATION, /* (inp - mean) / max(sqrt(variance), f[MC_FCOL_EPSILON]) per channel, or the inverse */
    MC_LAYER_COUNT
} mc_layer_kind;

/* The columns of one row of the int64 layer table (L, MC_TABLE_COLS). Geometry a kind does not use
 * is 0 (kernel, strides, padding); weight offsets it does not have are -1. */
enum {
    MC_COL_KIND = 0,       /* mc_layer_kind */
    MC_COL_ACTIVATION,     /* mc_activation applied at the layer's end (LINEAR for kinds without) */
    MC_COL_TRAINABLE,      /* 0 or 1: whether the optimizer trains the layer's weights */
    MC_COL_IN_H, MC_COL_IN_W, MC_COL_IN_C,
    MC_COL_OUT_H, MC_COL_OUT_W, MC_COL_OUT_C,
    MC_COL_KERNEL_H, MC_COL_KERNEL_W,
    MC_COL_STRIDE_H, MC_COL_STRIDE_W,
    MC_COL_PAD_TOP, MC_COL_PAD_LEFT,   /* zeros added before the first row / column ("same") */
    MC_COL_WEIGHT0,        /* offsets into params of the kind's weights, in the kind's order */
    MC_COL_WEIGHT1, MC_COL_WEIGHT2, MC_COL_WEIGHT3,
    MC_TABLE_COLS
};
#define MC_MAX_WEIGHTS 4

/* Largest kernel size and stride of the windowed kinds: keeps every size product below overflow. */
#define MC_MAX_WINDOW ((size_t)1 << 24)

/* The columns of the float64 constants table (L, MC_FTABLE_COLS): columns 0-2 are named per kind;
 * columns 3-6 are every kind's weight penalties (Keras's kernel/bias, gamma/beta regularizers) on its
 * weight slots 0 and 1: l1 * sum|w| + l2 * sum(w^2), added to the loss while the weight is trained.
 * 0 for no penalty, and for a slot the layer does not have (model.c checks). */
enum {
    MC_FCOL_RATE = 0,      /* DROPOUT */
    MC_FCOL_SCALE = 0,     /* RESCALING */
    MC_FCOL_OFFSET = 1,
    MC_FCOL_EPSILON = 0,   /* BATCHNORM, NORMALIZATION */
    MC_FCOL_MOMENTUM = 1,
    MC_FCOL_NEGATIVE_SLOPE = 0, /* RELU */
    MC_FCOL_MAX_VALUE = 1,      /* +inf: no maximum */
    MC_FCOL_THRESHOLD = 2,      /* computed in float32, as Keras casts it */
    MC_FCOL_INVERT = 1,    /* NORMALIZATION: 1 for out = mean + inp * max(sqrt(variance), epsilon), else 0 */
    MC_FCOL_W0_L1 = 3,     /* every kind: the penalties of weight slot 0 ... */
    MC_FCOL_W0_L2 = 4,
    MC_FCOL_W1_L1 = 5,     /* ... and of weight slot 1 */
    MC_FCOL_W1_L2 = 6,
    MC_FTABLE_COLS = 7
};
#define MC_PENALIZED_WEIGHTS 2 /* the slots with penalty columns; slot i's l1 is MC_FCOL_W0_L1 + 2 * i */

typedef struct {
    size_t h, w, c;
} mc_shape;

/* One weight of a layer: params[off, off + len). `trained`: updated by the optimizer when the
 * layer is trainable (0 for state a layer updates itself, such as moving statistics). */
typedef struct {
    ptrdiff_t off;
    size_t len;
    int trained;
} mc_weight;

typedef struct mc_layer_ops mc_layer_ops;

typedef struct mc_layer {
    const mc_layer_ops *ops;
    int kind, activation, trainable;
    mc_shape in, out;
    size_t n_in, n_out;            /* floats per sample: in.h * in.w * in.c, out.h * out.w * out.c */
    size_t kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
    mc_weight w[MC_MAX_WEIGHTS];   /* the kind's weights; n_weights of them are used */
    size_t n_weights;
    double f[MC_FTABLE_COLS];      /* float constants, MC_FCOL_* */
} mc_layer;

/* What inference decides once for a whole batch, for each block of its rows (mc_model_infer_rows). */
typedef struct {
    int params_finite; /* 1: the parameter block holds no NaN or infinity; 0: not known */
    int x_sparse;      /* whether the first layer's product skips the zeros of x, or -1: each block
                        * decides from a sample of its own rows */
    size_t batch_rows; /* rows of the whole batch: the products' blocking, hence their bits, follow it */
    float *const *derived; /* per layer: what its ops->derive made of the parameters, or NULL */
} mc_infer_plan;

/* One forward call of a layer on `rows` samples. */
typedef struct {
    float *out;               /* (rows, n_out) */
    const float *inp;         /* (rows, n_in) */
    float *scratch;           /* what the layer keeps for its backward: rows * ops->scratch(ly) floats */
    float *params;            /* the whole parameter block (written only by layers that keep state) */
    size_t rows;
    int training;
    uint64_t key;             /* random stream of (seed, step, layer) (rng.h); elements by batch index */
    const mc_infer_plan *plan;/* NULL: the whole batch, work split over the pool; else a block of a
                               * batch on the calling thread alone, with the whole batch's bits */
    int reads_x;              /* 1: inp is the model's input (plan->x_sparse applies) */
    atomic_int *nonfinite;    /* NULL, or set to 1 when the layer's product holds NaN/Inf (predict's
                               * check of x through the first layer, ops->checks_products) */
    const float *derived;     /* inference: what ops->derive made of params, or NULL (none, training) */
} mc_fwd;

/* One backward call of a layer on `rows` samples, after its forward on the same rows. */
typedef struct {
    float *dinp;              /* receives dL/d(inp) (rows, n_in), OVERWRITTEN; NULL when not needed.
                               * Never aliases dout. */
    float *dout;              /* dL/d(out) (rows, n_out); the layer may clobber it */
    const float *inp, *out;
    float *scratch;           /* as forward left it */
    const float *params;
    float *grads;             /* the gradient block: the layer OVERWRITES its trained weights' ranges;
                               * NULL when the layer is frozen */
    size_t rows;
    int training;
    int skip_act;             /* 1: dout is already dL/d(pre-activation) (a fused loss) */
} mc_bwd;

struct mc_layer_ops {
    const char *name;
    /* Checks the kind's part of a table row (geometry, constants, which weights are present) and
     * fills ly->w[].len / trained / n_weights; the generic part (kind, activation, trainable, shapes
     * >= 1, offsets, chain) is checked by model.c. MC_ERR_SHAPE / MC_ERR_ARG naming "layers[l]". */
    mc_status (*init)(mc_layer *ly, size_t l, mc_error *err);
    /* Floats per sample the layer keeps from forward to backward (0: none). */
    size_t (*scratch)(const mc_layer *ly);
    void (*forward)(const mc_layer *ly, const mc_fwd *f);
    void (*backward)(const mc_layer *ly, const mc_bwd *b);
    /* Optional (NULL): */
    /* the logits a fused loss reads (the input of the final activation) after forward */
    const float *(*logits)(const mc_layer *ly, const float *inp, const float *out, const float *scratch);
    /* threads the forward pass of a batch of B samples runs on (1 when absent) */
    int (*threads)(const mc_layer *ly, size_t B);
    /* whether the product of a forward on x (B samples) skips its left operand's zeros
     * (mc_gemm_skips_zeros), decided once for a batch split in blocks; -1 when absent */
    int (*sparse_input)(const mc_layer *ly, const float *x, size_t B);
    /* 1 with *scale, *offset when the layer is out = inp * scale + offset, computed as such in
     * float32: the uint8 batch gather applies it itself */
    int (*affine)(const mc_layer *ly, float *scale, float *offset);
    /* this layer's backward together with that of `above` (the layer whose input is this layer's
     * output) in one pass, when this layer needs no input gradient and above computes no weight
     * gradients: b is this layer's call with dout NULL, ab above's with dinp NULL (the gradient
     * between the two is never written). 1 when done, 0 for a pair it does not take (each layer
     * then runs its own backward). */
    int (*backward_with_above)(const mc_layer *ly, const mc_bwd *b, const mc_layer *above, const mc_bwd *ab);
    /* inference on a block of rows (f->plan set): this layer's forward and that of `above` in one
     * pass, writing above's output (af->out) only; this layer's output is left unwritten. 1 when
     * done, 0 for a pair it does not take. */
    int (*forward_with_above)(const mc_layer *ly, const mc_fwd *f, const mc_layer *above, const mc_fwd *af);
    /* weights inference derives from the parameters once per call (predict, evaluate) rather than
     * in every block, read by forward at f->derived: their floats (0: none), and making them */
    size_t (*derived)(const mc_layer *ly);
    void (*derive)(const mc_layer *ly, const float *params, float *dst);
    int checks_products;      /* forward sets mc_fwd.nonfinite */
};

/* The ops of a kind, NULL for a code out of range. */
const mc_layer_ops *mc_layer_ops_of(int kind);

extern const mc_layer_ops mc_dense_ops, mc_activation_ops, mc_dropout_ops, mc_rescaling_ops;
extern const mc_layer_ops mc_conv2d_ops, mc_maxpool2d_ops, mc_avgpool2d_ops, mc_globalavgpool2d_ops,
    mc_batchnorm_ops, mc_relu_ops, mc_normalization_ops;

/* Whether a pooling layer's windows tile the top-left part of its input: stride = kernel, no
 * padding, every window inside the input (pool.c). Each element then lies in at most one window. */
int mc_pool_windows_tile(const mc_layer *ly);

/* Shared by the kinds (layer_shared.c). */

/* Checks that kernel, strides, pads and output size of a windowed kind are Keras's "valid" rule
 * (pad 0, out = (in - k) / s + 1) or its "same" rule (out = ceil(in / s), pad_top = pad_total / 2
 * with pad_total = max((out - 1) * s + k - in, 0)) in each dimension, so that every window lies
 * in the padded input and overlaps the input. `what` names the kind in messages. */
mc_status mc_window_check(const mc_layer *ly, size_t l, const char *what, mc_error *err);

/* fn(ctx, s0, s1) on ranges of samples covering [0, rows) once: split over the pool when `pool`
 * and the work (floats touched per sample) is worth it, else on the calling thread. Per-sample work
 * only, so results do not depend on the split. */
void mc_for_samples(size_t rows, size_t work, int pool, void (*fn)(void *ctx, size_t s0, size_t s1), void *ctx);
/* The threads mc_for_samples(rows, work, 1, ...) runs on. */
int mc_samples_threads(size_t rows, size_t work);

#endif
