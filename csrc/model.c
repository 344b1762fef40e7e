/* The layer chain: table validation, the activation arena, and forward/backward through each layer
 * kind's ops (layer.h); no kind is named here. Nothing is allocated per batch: the arena is made once
 * per call by the caller. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activations.h"
#include "losses.h"
#include "rng.h"
#include "threads.h"

typedef struct {
    size_t lo, hi, layer;
    const char *what;
} prange;

static int cmp_range(const void *pa, const void *pb) {
    const prange *a = pa, *b = pb;
    return a->lo < b->lo ? -1 : a->lo > b->lo ? 1 : 0;
}

static mc_status check_offset(ptrdiff_t off, size_t len, size_t P, size_t l, const char *what, mc_error *err) {
    if (off < 0 || (uint64_t)off > P || len > P - (size_t)off)
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: %s range [%lld, %lld + %zu) is outside the %zu "
                            "parameters", l, what, (long long)off, (long long)off, len, P);
    return MC_OK;
}

/* A table column that must hold a value >= lo. */
static mc_status column(const int64_t *r, int col, int64_t lo, size_t l, const char *what, int64_t *out,
                        mc_error *err) {
    if (r[col] < lo)
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: %s must be >= %lld, got %lld", l, what, (long long)lo,
                            (long long)r[col]);
    *out = r[col];
    return MC_OK;
}

static mc_status shape_of(const int64_t *r, int col, size_t l, const char *what, mc_shape *s, size_t *n,
                          mc_error *err) {
    int64_t h = 0, w = 0, c = 0;
    mc_status st;
    if ((st = column(r, col, 1, l, what, &h, err)) || (st = column(r, col + 1, 1, l, what, &w, err)) ||
        (st = column(r, col + 2, 1, l, what, &c, err)))
        return st;
    *s = (mc_shape){(size_t)h, (size_t)w, (size_t)c};
    if (!mc_mul_size(s->h, s->w, n) || !mc_mul_size(*n, s->c, n))
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: %s (%zu, %zu, %zu) overflows", l, what, s->h, s->w, s->c);
    return MC_OK;
}

/* The l1 and l2 factors of weight slot i's penalty (layer.h). */
static double penalty_l1(const mc_layer *ly, size_t i) { return ly->f[MC_FCOL_W0_L1 + 2 * i]; }
static double penalty_l2(const mc_layer *ly, size_t i) { return ly->f[MC_FCOL_W0_L2 + 2 * i]; }

/* Penalty factors are finite and >= 0, and 0 on a slot without a trained weight. */
static mc_status check_penalties(const mc_layer *ly, size_t l, mc_error *err) {
    static const char *const names[2] = {"l1", "l2"};
    for (size_t i = 0; i < MC_PENALIZED_WEIGHTS; i++) {
        for (int k = 0; k < 2; k++) {
            double v = k ? penalty_l2(ly, i) : penalty_l1(ly, i);
            if (!(v >= 0.0 && isfinite(v)))
                return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: weight %zu's %s penalty factor must be a finite "
                                    "number >= 0, got %g", l, i, names[k], v);
            if (v != 0.0 && (i >= ly->n_weights || !ly->w[i].len || !ly->w[i].trained))
                return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: %s has no trained weight %zu here, so its %s "
                                    "penalty factor must be 0, got %g", l, ly->ops->name, i, names[k], v);
        }
    }
    return MC_OK;
}

/* The generic part of one row: codes, shapes, geometry, weight offsets; then the kind's own checks. */
static mc_status layer_from_row(mc_layer *ly, const int64_t *r, const double *f, size_t l, size_t prev,
                                mc_error *err) {
    mc_status st;
    int64_t kind = r[MC_COL_KIND], act = r[MC_COL_ACTIVATION], tr = r[MC_COL_TRAINABLE], g[6] = {0};
    memset(ly, 0, sizeof *ly);
    ly->ops = kind >= 0 && kind < MC_LAYER_COUNT ? mc_layer_ops_of((int)kind) : NULL;
    if (!ly->ops)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: kind must be in [0, %d), got %lld", l, MC_LAYER_COUNT,
                            (long long)kind);
    if (act < 0 || act >= MC_ACT_COUNT)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: activation must be in [0, %d), got %lld", l, MC_ACT_COUNT,
                            (long long)act);
    if (tr != 0 && tr != 1)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: trainable must be 0 or 1, got %lld", l, (long long)tr);
    ly->kind = (int)kind;
    ly->activation = (int)act;
    ly->trainable = (int)tr;
    if ((st = shape_of(r, MC_COL_IN_H, l, "input shape", &ly->in, &ly->n_in, err)) ||
        (st = shape_of(r, MC_COL_OUT_H, l, "output shape", &ly->out, &ly->n_out, err)))
        return st;
    if (ly->n_in != prev) {
        if (l == 0)
            return mc_set_error(err, MC_ERR_SHAPE, "layers[0]: input size %zu (%zu x %zu x %zu) does not match the input "
                                "row width %zu", ly->n_in, ly->in.h, ly->in.w, ly->in.c, prev);
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: input size %zu (%zu x %zu x %zu) does not match the "
                            "previous layer's output size %zu", l, ly->n_in, ly->in.h, ly->in.w, ly->in.c, prev);
    }
    static const char *const geometry[6] = {"kernel_h", "kernel_w", "stride_h", "stride_w", "pad_top", "pad_left"};
    for (int i = 0; i < 6; i++)
        if ((st = column(r, MC_COL_KERNEL_H + i, 0, l, geometry[i], &g[i], err))) return st;
    ly->kernel_h = (size_t)g[0], ly->kernel_w = (size_t)g[1], ly->stride_h = (size_t)g[2];
    ly->stride_w = (size_t)g[3], ly->pad_top = (size_t)g[4], ly->pad_left = (size_t)g[5];
    for (int i = 0; i < MC_MAX_WEIGHTS; i++) {
        int64_t off = r[MC_COL_WEIGHT0 + i];
        if (off < -1)
            return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: weight %d's offset must be >= 0, or -1 for none, got "
                                "%lld", l, i, (long long)off);
        ly->w[i].off = (ptrdiff_t)off;
    }
    for (int i = 0; i < MC_FTABLE_COLS; i++) ly->f[i] = f[i];
    if ((st = ly->ops->init(ly, l, err))) return st;
    for (size_t i = 0; i < MC_MAX_WEIGHTS; i++) {
        if (i >= ly->n_weights) ly->w[i].len = 0;
        if (ly->w[i].len == 0 && ly->w[i].off != -1)
            return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: %s has no weight %zu here, so its offset must be -1, got "
                                "%lld", l, ly->ops->name, i, (long long)ly->w[i].off);
    }
    return check_penalties(ly, l, err);
}

mc_status mc_layers_from_table(mc_layer *layers, const int64_t *rows, const double *lfloats, size_t L,
                               size_t d, size_t P, mc_error *err) {
    mc_status st = MC_OK;
    size_t n_ranges = 0;
    prange *ranges = NULL;
    if (L == 0) return mc_set_error(err, MC_ERR_SHAPE, "layers: the table has no rows (expected at least one layer)");
    for (size_t l = 0; l < L; l++) {
        size_t prev = l == 0 ? d : layers[l - 1].n_out;
        if ((st = layer_from_row(&layers[l], rows + l * MC_TABLE_COLS, lfloats + l * MC_FTABLE_COLS, l, prev, err)))
            return st;
        const mc_layer *ly = &layers[l];
        for (size_t i = 0; i < ly->n_weights; i++) {
            if (!ly->w[i].len) continue;
            char what[32];
            snprintf(what, sizeof what, "weight %zu", i);
            if ((st = check_offset(ly->w[i].off, ly->w[i].len, P, l, what, err))) return st;
        }
    }
    /* no two weight ranges may overlap: gradients are overwritten per layer */
    ranges = mc_malloc(MC_MAX_WEIGHTS * L * sizeof *ranges);
    if (!ranges) return mc_set_error(err, MC_ERR_NOMEM, "layers: out of memory checking %zu rows", L);
    static const char *const names[MC_MAX_WEIGHTS] = {"weight 0", "weight 1", "weight 2", "weight 3"};
    for (size_t l = 0; l < L; l++) {
        const mc_layer *ly = &layers[l];
        for (size_t i = 0; i < ly->n_weights; i++) {
            if (!ly->w[i].len) continue;
            size_t lo = (size_t)ly->w[i].off;
            ranges[n_ranges++] = (prange){lo, lo + ly->w[i].len, l, names[i]};
        }
    }
    qsort(ranges, n_ranges, sizeof *ranges, cmp_range);
    for (size_t i = 1; i < n_ranges; i++) {
        if (ranges[i].lo < ranges[i - 1].hi) {
            st = mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: %s range [%zu, %zu) overlaps %s of layers[%zu] "
                              "[%zu, %zu)", ranges[i].layer, ranges[i].what, ranges[i].lo, ranges[i].hi,
                              ranges[i - 1].what, ranges[i - 1].layer, ranges[i - 1].lo, ranges[i - 1].hi);
            break;
        }
    }
    mc_free(ranges);
    return st;
}

static int cmp_pair(const void *pa, const void *pb) {
    const int64_t *a = pa, *b = pb;
    return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}

size_t mc_model_segments(const mc_model *m, int64_t *out) {
    size_t n = 0;
    for (size_t l = 0; l < m->L; l++) {
        const mc_layer *ly = &m->layers[l];
        for (size_t i = 0; i < ly->n_weights && ly->trainable; i++) {
            if (!ly->w[i].trained || !ly->w[i].len) continue;
            out[2 * n] = (int64_t)ly->w[i].off;
            out[2 * n + 1] = (int64_t)ly->w[i].len;
            n++;
        }
    }
    qsort(out, n, 2 * sizeof *out, cmp_pair);
    size_t k = 0;  /* the ranges are disjoint (mc_layers_from_table): merge the touching ones */
    for (size_t i = 0; i < n; i++) {
        if (k && out[2 * (k - 1)] + out[2 * (k - 1) + 1] == out[2 * i]) {
            out[2 * (k - 1) + 1] += out[2 * i + 1];
        } else {
            out[2 * k] = out[2 * i];
            out[2 * k + 1] = out[2 * i + 1];
            k++;
        }
    }
    return k;
}

int mc_model_fused(const mc_model *m, int loss_kind, int from_logits) {
    if (from_logits || m->L == 0) return 0;
    const mc_layer *ly = &m->layers[m->L - 1];
    if (!ly->ops->logits) return 0;
    if (loss_kind == MC_LOSS_CCE || loss_kind == MC_LOSS_SCCE) return ly->activation == MC_ACT_SOFTMAX;
    if (loss_kind == MC_LOSS_BCE) return ly->activation == MC_ACT_SIGMOID;
    return 0;
}

size_t mc_model_max_width(const mc_model *m) {
    size_t w = 0;
    for (size_t l = 0; l < m->L; l++) {
        if (m->layers[l].n_in > w) w = m->layers[l].n_in;
        if (m->layers[l].n_out > w) w = m->layers[l].n_out;
    }
    return w;
}

/* --- arena --- */

#define ALIGN_FLOATS 16 /* 64-byte alignment for every buffer */

static int add_buf(size_t *total, size_t B, size_t n) {
    size_t k;
    if (!mc_mul_size(B, n, &k)) return 0;
    k = (k + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    if (k < B * n || *total + k < *total) return 0;
    *total += k;
    return 1;
}

static float *take_buf(float **cur, size_t B, size_t n) {
    float *p = *cur;
    *cur += (B * n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    return p;
}

mc_status mc_arena_init(mc_arena *a, const mc_model *m, size_t B, mc_error *err) {
    memset(a, 0, sizeof *a);
    size_t L = m->L, floats = 0, maxw = mc_model_max_width(m);
    int ok = 1;
    for (size_t l = 0; l < L && ok; l++) {
        const mc_layer *ly = &m->layers[l];
        size_t keep = ly->ops->scratch(ly);
        ok = add_buf(&floats, B, ly->n_out);
        if (ok && keep) ok = add_buf(&floats, B, keep);
    }
    ok = ok && add_buf(&floats, B, maxw) && add_buf(&floats, B, maxw);
    size_t ptr_bytes = 2 * L * sizeof(float *);
    size_t ptr_pad = (ptr_bytes + 63) / 64 * 64;
    size_t bytes;
    ok = ok && mc_mul_size(floats, sizeof(float), &bytes) && bytes + ptr_pad + 64 > bytes;
    if (!ok)
        return mc_set_error(err, MC_ERR_NOMEM, "activation arena: size overflows for batch_size %zu", B);
    bytes += ptr_pad + 64;
    a->block = mc_malloc(bytes);
    if (!a->block)
        return mc_set_error(err, MC_ERR_NOMEM, "activation arena: cannot allocate %zu bytes for batch_size %zu",
                            bytes, B);
    uintptr_t base = ((uintptr_t)a->block + 63) / 64 * 64;
    a->out = (float **)base;
    a->scratch = a->out + L;
    float *cur = (float *)(base + ptr_pad);
    for (size_t l = 0; l < L; l++) {
        const mc_layer *ly = &m->layers[l];
        size_t keep = ly->ops->scratch(ly);
        a->out[l] = take_buf(&cur, B, ly->n_out);
        a->scratch[l] = keep ? take_buf(&cur, B, keep) : NULL;
    }
    a->g0 = take_buf(&cur, B, maxw);
    a->g1 = take_buf(&cur, B, maxw);
    a->B = B;
    return MC_OK;
}

void mc_arena_release(mc_arena *a) {
    if (!a) return;
    mc_free(a->block);
    memset(a, 0, sizeof *a);
}

/* --- forward --- */

void mc_model_forward_from(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t B,
                           int training, uint64_t seed, uint64_t step) {
    mc_model_forward_layers(m, a, x, first, first, m->L, B, training, seed, step);
}

/* Layers [lo, hi) on `rows` rows of x (x and the arena's buffers at their row 0). plan: NULL for a
 * whole batch, the layers splitting their work over the pool; else a block of a batch of
 * plan->batch_rows rows, on this thread, with the whole batch's bits. */
static void forward_rows(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t lo, size_t hi,
                         size_t rows, const mc_infer_plan *plan, int training, uint64_t seed, uint64_t step) {
    if (lo >= hi) return;
    const float *inp = lo > first ? a->out[lo - 1] : x;
    for (size_t l = lo; l < hi; l++) {
        const mc_layer *ly = &m->layers[l];
        mc_fwd f = {
            .out = a->out[l],
            .inp = inp,
            .scratch = a->scratch[l],
            .params = m->params,
            .rows = rows,
            .training = training,
            .key = mc_rng_key(seed, step, l),
            .plan = plan,
            .reads_x = l == first,
            .nonfinite = l == first ? a->first_product_nonfinite : NULL,
            .derived = plan && plan->derived ? plan->derived[l] : NULL,
        };
        if (plan && l + 1 < hi && l + 2 < m->L && ly->ops->forward_with_above) {
            /* inference: the layer may run the next one's forward in its own pass (not the last
             * layer's, whose input the loss's logits may read) */
            const mc_layer *above = &m->layers[l + 1];
            mc_fwd af = f;
            af.out = a->out[l + 1];
            af.inp = f.out;
            af.scratch = a->scratch[l + 1];
            af.key = mc_rng_key(seed, step, l + 1);
            af.reads_x = 0;
            af.nonfinite = NULL;
            af.derived = plan->derived ? plan->derived[l + 1] : NULL;
            if (ly->ops->forward_with_above(ly, &f, above, &af)) {
                inp = af.out;
                l++;
                continue;
            }
        }
        ly->ops->forward(ly, &f);
        inp = f.out;
    }
}

void mc_model_forward_layers(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t lo, size_t hi,
                             size_t B, int training, uint64_t seed, uint64_t step) {
    forward_rows(m, a, x, first, lo, hi, B, NULL, training, seed, step);
}

void mc_model_infer_rows(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t rows,
                         const mc_infer_plan *plan) {
    mc_infer_plan unknown = {0, -1, rows, NULL};
    forward_rows(m, a, x, first, first, m->L, rows, plan ? plan : &unknown, 0, 0, 0);
}

void mc_model_forward(const mc_model *m, mc_arena *a, const float *x, size_t B, int training,
                      uint64_t seed, uint64_t step) {
    mc_model_forward_from(m, a, x, 0, B, training, seed, step);
}

const float *mc_model_logits_from(const mc_model *m, const mc_arena *a, const float *x, size_t first) {
    size_t l = m->L - 1;
    const mc_layer *ly = &m->layers[l];
    return ly->ops->logits(ly, l > first ? a->out[l - 1] : x, a->out[l], a->scratch[l]);
}

const float *mc_model_logits(const mc_model *m, const mc_arena *a, const float *x) {
    return mc_model_logits_from(m, a, x, 0);
}

/* --- weight penalties --- */

static int penalized(const mc_layer *ly, size_t i) { return penalty_l1(ly, i) != 0.0 || penalty_l2(ly, i) != 0.0; }

/* A weight's penalty work is cut into at most PENALTY_PIECES pieces of at least PENALTY_PIECE_MIN
 * weights, a cut fixed by its length alone: each piece sums in double over PENALTY_LANES lanes (so
 * that the sums vectorize), then the lanes and the pieces are added in order, so the bits do not
 * depend on the thread count. Weights of PENALTY_PAR_MIN and more go over the pool. */
#define PENALTY_PIECES 64
#define PENALTY_PIECE_MIN 4096
#define PENALTY_LANES 8
#define PENALTY_PAR_MIN 32768

typedef float v2f __attribute__((vector_size(8)));
typedef double v2d __attribute__((vector_size(16)));
typedef unsigned long long v2u __attribute__((vector_size(16)));

/* w[0], w[1] as doubles */
static inline v2d pair(const float *w) {
    v2f f;
    memcpy(&f, w, sizeof f);
    return __builtin_convertvector(f, v2d);
}

/* |v|: the sign bits cleared */
static inline v2d magnitude(v2d v) {
    const v2d sign = {-0.0, -0.0};
    return (v2d)((v2u)v & ~(v2u)sign);
}

typedef struct {
    const float *w;
    float *g;          /* NULL: the sums only */
    size_t n, piece;
    float l1, two_l2;  /* the gradient's factors, rounded to float as Keras casts them to the weights' dtype */
    double s1[PENALTY_PIECES], s2[PENALTY_PIECES];  /* per piece: sum |w|, sum w^2 */
} penalty_job;

static void penalty_piece(void *ctx, size_t c) {
    penalty_job *j = ctx;
    size_t lo = c * j->piece, hi = j->n - lo < j->piece ? j->n : lo + j->piece, i = lo;
    const float *w = j->w;
    /* 4 accumulators of 2 doubles per sum, named (an array or a loop over them and GCC adds into
     * memory): 4 independent vector additions in flight instead of one scalar chain */
    v2d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, q0 = {0}, q1 = {0}, q2 = {0}, q3 = {0};
    for (; i + PENALTY_LANES <= hi; i += PENALTY_LANES) {
        v2d v0 = pair(w + i), v1 = pair(w + i + 2), v2 = pair(w + i + 4), v3 = pair(w + i + 6);
        a0 += magnitude(v0), a1 += magnitude(v1), a2 += magnitude(v2), a3 += magnitude(v3);
        q0 += v0 * v0, q1 += v1 * v1, q2 += v2 * v2, q3 += v3 * v3;
    }
    v2d sa = (a0 + a1) + (a2 + a3), sq = (q0 + q1) + (q2 + q3);
    double s1 = sa[0] + sa[1], s2 = sq[0] + sq[1];
    for (; i < hi; i++) {
        double v = w[i];
        s1 += fabs(v);
        s2 += v * v;
    }
    j->s1[c] = s1;
    j->s2[c] = s2;
    float *g = j->g;
    if (!g) return;
    if (j->l1 != 0.0f)  /* sign(0) = 0, the gradient of |w| at 0 in Keras's backends */
        for (i = lo; i < hi; i++) g[i] += j->l1 * (float)((w[i] > 0.0f) - (w[i] < 0.0f));
    if (j->two_l2 != 0.0f)
        for (i = lo; i < hi; i++) g[i] += j->two_l2 * w[i];
}

/* l1 * sum|w| + l2 * sum(w^2) of w (n), in double; with g (n) not NULL, also g += l1 * sign(w) +
 * 2 * l2 * w. */
static double weight_penalty(const float *w, float *g, size_t n, double l1, double l2) {
    penalty_job j = {.w = w, .g = g, .n = n, .l1 = (float)l1, .two_l2 = (float)(2.0 * l2)};
    j.piece = (n + PENALTY_PIECES - 1) / PENALTY_PIECES;
    if (j.piece < PENALTY_PIECE_MIN) j.piece = PENALTY_PIECE_MIN;
    size_t pieces = (n + j.piece - 1) / j.piece;
    if (n >= PENALTY_PAR_MIN && mc_get_num_threads() > 1) {
        mc_parallel_for(pieces, penalty_piece, &j);
    } else {
        for (size_t c = 0; c < pieces; c++) penalty_piece(&j, c);
    }
    double s1 = 0.0, s2 = 0.0;
    for (size_t c = 0; c < pieces; c++) {
        s1 += j.s1[c];
        s2 += j.s2[c];
    }
    return l1 * s1 + l2 * s2;
}

/* The penalties of a trainable layer's weights; with grads not NULL, their gradients added there. */
static double layer_penalty(const mc_layer *ly, const float *params, float *grads) {
    double total = 0.0;
    for (size_t i = 0; i < MC_PENALIZED_WEIGHTS; i++) {
        if (!penalized(ly, i)) continue;  /* also every slot without a trained weight (checked) */
        ptrdiff_t off = ly->w[i].off;
        total += weight_penalty(params + off, grads ? grads + off : NULL, ly->w[i].len, penalty_l1(ly, i),
                                penalty_l2(ly, i));
    }
    return total;
}

double mc_model_penalty(const mc_model *m) {
    double total = 0.0;
    for (size_t l = 0; l < m->L; l++)
        if (m->layers[l].trainable) total += layer_penalty(&m->layers[l], m->params, NULL);
    return total;
}

/* --- backward --- */

double mc_model_backward(const mc_model *m, mc_arena *a, const float *x, size_t B, int training, float *dlast,
                         int fused, float *dx) {
    return mc_model_backward_from(m, a, x, 0, B, training, dlast, fused, dx);
}

/* Whether backward writes gradients of the layer's weights. */
static int has_grads(const mc_layer *ly) {
    if (!ly->trainable) return 0;
    for (size_t i = 0; i < ly->n_weights; i++)
        if (ly->w[i].trained && ly->w[i].len) return 1;
    return 0;
}

double mc_model_backward_from(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t B,
                              int training, float *dlast, int fused, float *dx) {
    size_t L = m->L, stop = first;
    double penalty = 0.0;
    if (!dx) {
        /* nothing below the lowest layer with gradients to compute needs one */
        stop = L;
        for (size_t l = first; l < L && stop == L; l++)
            if (has_grads(&m->layers[l])) stop = l;
        if (stop == L) return penalty;
    }
    float *g = dlast, *other = dlast == a->g0 ? a->g1 : a->g0;
    for (size_t l = L; l-- > stop;) {
        const mc_layer *ly = &m->layers[l];
        int need_dinp = dx != NULL || l > stop, grads = has_grads(ly);
        if (!need_dinp && !grads) continue;
        mc_bwd b = {
            .dinp = need_dinp ? (l == first ? dx : other) : NULL,
            .dout = g,
            .inp = l > first ? a->out[l - 1] : x,
            .out = a->out[l],
            .scratch = a->scratch[l],
            .params = m->params,
            .grads = grads ? m->grads : NULL,
            .rows = B,
            .training = training,
            .skip_act = fused && l == L - 1,
        };
        if (!dx && l == stop + 1 && !grads) {
            /* the layer below is the last to run and needs no input gradient: it may take this
             * layer's backward into its own pass */
            const mc_layer *below = &m->layers[l - 1];
            mc_bwd ab = b, bb = {
                .inp = l - 1 > first ? a->out[l - 2] : x,
                .out = a->out[l - 1],
                .scratch = a->scratch[l - 1],
                .params = m->params,
                .grads = m->grads,
                .rows = B,
                .training = training,
            };
            ab.dinp = NULL;
            if (below->ops->backward_with_above && below->ops->backward_with_above(below, &bb, ly, &ab))
                return penalty + layer_penalty(below, m->params, m->grads);
        }
        ly->ops->backward(ly, &b);
        if (grads) penalty += layer_penalty(ly, m->params, m->grads);
        if (b.dinp == other) {
            other = g;
            g = b.dinp;
        }
    }
    return penalty;
}
