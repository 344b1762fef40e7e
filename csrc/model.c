/* The layer chain: table validation, the activation arena, and forward/backward with a switch over
 * the layer kind. Dense products go through dense.c (mc_gemm), each followed by one fused pass (bias +
 * activation forward; activation derivative + bias gradient backward); the rest are short element-wise
 * loops. Nothing is allocated per batch: the arena is made once per call by the caller. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activations.h"
#include "dense.h"
#include "losses.h"
#include "rng.h"

typedef struct {
    size_t lo, hi, layer;
    const char *what;
} prange;

static int cmp_range(const void *pa, const void *pb) {
    const prange *a = pa, *b = pb;
    return a->lo < b->lo ? -1 : a->lo > b->lo ? 1 : 0;
}

static mc_status check_offset(int64_t off, size_t len, size_t P, size_t l, const char *what, mc_error *err) {
    if (off < 0 || (uint64_t)off > P || len > P - (size_t)off)
        return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: %s range [%lld, %lld + %zu) is outside the %zu "
                            "parameters", l, what, (long long)off, (long long)off, len, P);
    return MC_OK;
}

mc_status mc_layers_from_table(mc_layer *layers, const int64_t *rows, const double *lfloats, size_t L,
                               size_t d, size_t P, mc_error *err) {
    mc_status st = MC_OK;
    size_t n_ranges = 0;
    prange *ranges = NULL;
    if (L == 0) return mc_set_error(err, MC_ERR_SHAPE, "layers: the table has no rows (expected at least one layer)");
    for (size_t l = 0; l < L; l++) {
        const int64_t *r = rows + l * MC_TABLE_COLS;
        int64_t kind = r[0], n_in = r[1], n_out = r[2], act = r[3], tr = r[4], w_off = r[5], b_off = r[6];
        mc_layer *ly = &layers[l];
        if (kind < 0 || kind >= MC_LAYER_COUNT)
            return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: kind must be in [0, %d), got %lld", l,
                                MC_LAYER_COUNT, (long long)kind);
        if (n_in < 1 || n_out < 1)
            return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: n_in and n_out must be >= 1, got %lld and %lld",
                                l, (long long)n_in, (long long)n_out);
        if (act < 0 || act >= MC_ACT_COUNT)
            return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: activation must be in [0, %d), got %lld", l,
                                MC_ACT_COUNT, (long long)act);
        if (tr != 0 && tr != 1)
            return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: trainable must be 0 or 1, got %lld", l, (long long)tr);
        size_t prev = l == 0 ? d : layers[l - 1].n_out;
        if ((uint64_t)n_in != prev) {
            if (l == 0)
                return mc_set_error(err, MC_ERR_SHAPE, "layers[0]: n_in %lld does not match the input row width %zu",
                                    (long long)n_in, d);
            return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: n_in %lld does not match the previous layer's "
                                "n_out %zu", l, (long long)n_in, prev);
        }
        if (kind != MC_LAYER_DENSE && n_in != n_out)
            return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: kind %lld is element-wise, so n_in must equal "
                                "n_out, got %lld and %lld", l, (long long)kind, (long long)n_in, (long long)n_out);
        if (kind != MC_LAYER_DENSE && (w_off != -1 || b_off != -1))
            return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: kind %lld has no weights, so w_off and b_off must be "
                                "-1, got %lld and %lld", l, (long long)kind, (long long)w_off, (long long)b_off);
        ly->kind = (int)kind;
        ly->activation = (int)act;
        ly->trainable = (int)tr;
        ly->n_in = (size_t)n_in;
        ly->n_out = (size_t)n_out;
        ly->w_off = (ptrdiff_t)w_off;
        ly->b_off = (ptrdiff_t)b_off;
        ly->p0 = lfloats[2 * l];
        ly->p1 = lfloats[2 * l + 1];
        if (kind == MC_LAYER_DENSE) {
            size_t wlen;
            if (!mc_mul_size(ly->n_in, ly->n_out, &wlen))
                return mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: n_in * n_out overflows", l);
            if ((st = check_offset(w_off, wlen, P, l, "kernel", err))) return st;
            if (b_off != -1 && (st = check_offset(b_off, ly->n_out, P, l, "bias", err))) return st;
        } else if (kind == MC_LAYER_DROPOUT) {
            if (!(ly->p0 >= 0.0 && ly->p0 <= 1.0))
                return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: dropout rate (lfloats[%zu, 0]) must be in [0, 1], "
                                    "got %g", l, l, ly->p0);
        } else if (kind == MC_LAYER_RESCALING) {
            if (!isfinite(ly->p0) || !isfinite(ly->p1))
                return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: rescaling scale and offset must be finite, got %g "
                                    "and %g", l, ly->p0, ly->p1);
        }
    }
    /* no two weight ranges may overlap: gradients are overwritten per layer */
    ranges = mc_malloc(2 * L * sizeof *ranges);
    if (!ranges) return mc_set_error(err, MC_ERR_NOMEM, "layers: out of memory checking %zu rows", L);
    for (size_t l = 0; l < L; l++) {
        const mc_layer *ly = &layers[l];
        if (ly->kind != MC_LAYER_DENSE) continue;
        size_t wlo = (size_t)ly->w_off;
        ranges[n_ranges++] = (prange){wlo, wlo + ly->n_in * ly->n_out, l, "kernel"};
        if (ly->b_off >= 0) {
            size_t blo = (size_t)ly->b_off;
            ranges[n_ranges++] = (prange){blo, blo + ly->n_out, l, "bias"};
        }
    }
    qsort(ranges, n_ranges, sizeof *ranges, cmp_range);
    for (size_t i = 1; i < n_ranges; i++) {
        if (ranges[i].lo < ranges[i - 1].hi) {
            st = mc_set_error(err, MC_ERR_SHAPE, "layers[%zu]: %s range [%zu, %zu) overlaps the %s of layers[%zu] "
                              "[%zu, %zu)", ranges[i].layer, ranges[i].what, ranges[i].lo, ranges[i].hi,
                              ranges[i - 1].what, ranges[i - 1].layer, ranges[i - 1].lo, ranges[i - 1].hi);
            break;
        }
    }
    mc_free(ranges);
    return st;
}

/* Merges touching ranges of a sorted list in place; returns the new count. */
static size_t merge_ranges(prange *r, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].hi == r[i].lo) continue;
        if (k && r[k - 1].hi == r[i].lo) r[k - 1].hi = r[i].hi;
        else r[k++] = r[i];
    }
    return k;
}

mc_status mc_model_check_segments(const mc_model *m, const int64_t *segments, size_t S, mc_error *err) {
    mc_status st = MC_OK;
    size_t nt = 0, ns = 0;
    prange *t = mc_malloc((2 * m->L + S + 1) * sizeof *t);
    if (!t) return mc_set_error(err, MC_ERR_NOMEM, "segments: out of memory checking %zu segments", S);
    for (size_t l = 0; l < m->L; l++) {
        const mc_layer *ly = &m->layers[l];
        if (ly->kind != MC_LAYER_DENSE || !ly->trainable) continue;
        size_t w = (size_t)ly->w_off;
        t[nt++] = (prange){w, w + ly->n_in * ly->n_out, l, "kernel"};
        if (ly->b_off >= 0) t[nt++] = (prange){(size_t)ly->b_off, (size_t)ly->b_off + ly->n_out, l, "bias"};
    }
    qsort(t, nt, sizeof *t, cmp_range);
    nt = merge_ranges(t, nt);
    prange *s = t + nt;
    for (size_t i = 0; i < S; i++)
        s[i] = (prange){(size_t)segments[2 * i], (size_t)(segments[2 * i] + segments[2 * i + 1]), i, "segment"};
    ns = merge_ranges(s, S);
    for (size_t i = 0; i < nt || i < ns; i++) {
        if (i < nt && i < ns && t[i].lo == s[i].lo && t[i].hi == s[i].hi) continue;
        char want[64] = "nothing", got[64] = "nothing";
        if (i < nt) snprintf(want, sizeof want, "[%zu, %zu)", t[i].lo, t[i].hi);
        if (i < ns) snprintf(got, sizeof got, "[%zu, %zu)", s[i].lo, s[i].hi);
        st = mc_set_error(err, MC_ERR_SHAPE, "segments: do not match the weights of the trainable layers: expected "
                          "%s, found %s as contiguous range %zu (segments must list exactly the weights of layers "
                          "with trainable=1)", want, got, i);
        break;
    }
    mc_free(t);
    return st;
}

int mc_model_fused(const mc_model *m, int loss_kind, int from_logits) {
    if (from_logits || m->L == 0) return 0;
    const mc_layer *ly = &m->layers[m->L - 1];
    if (ly->kind != MC_LAYER_DENSE && ly->kind != MC_LAYER_ACTIVATION) return 0;
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

/* relu needs no pre-activation buffer: the bias and relu are applied in place on the GEMM output and
 * the backward mask reads out > 0, which holds exactly where pre > 0. */
static int needs_pre(const mc_layer *ly) {
    return ly->kind == MC_LAYER_DENSE && ly->activation != MC_ACT_LINEAR && ly->activation != MC_ACT_RELU;
}

mc_status mc_arena_init(mc_arena *a, const mc_model *m, size_t B, mc_error *err) {
    memset(a, 0, sizeof *a);
    size_t L = m->L, floats = 0, maxw = mc_model_max_width(m);
    int ok = 1;
    for (size_t l = 0; l < L && ok; l++) {
        const mc_layer *ly = &m->layers[l];
        ok = add_buf(&floats, B, ly->n_out);
        if (ok && needs_pre(ly)) ok = add_buf(&floats, B, ly->n_out);
        if (ok && ly->kind == MC_LAYER_DROPOUT) ok = add_buf(&floats, B, ly->n_out);
    }
    ok = ok && add_buf(&floats, B, maxw) && add_buf(&floats, B, maxw);
    size_t ptr_bytes = 3 * L * sizeof(float *);
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
    a->pre = a->out + L;
    a->mask = a->pre + L;
    float *cur = (float *)(base + ptr_pad);
    for (size_t l = 0; l < L; l++) {
        const mc_layer *ly = &m->layers[l];
        a->out[l] = take_buf(&cur, B, ly->n_out);
        a->pre[l] = needs_pre(ly) ? take_buf(&cur, B, ly->n_out) : NULL;
        a->mask[l] = ly->kind == MC_LAYER_DROPOUT ? take_buf(&cur, B, ly->n_out) : NULL;
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

static void dropout_forward(float *out, float *mask, const float *inp, double rate, size_t T, uint64_t key) {
    /* keep with probability 1 - rate; kept units scaled by 1/(1-rate) (inverted dropout) */
    float scale = rate < 1.0 ? (float)(1.0 / (1.0 - rate)) : 0.0f;
    for (size_t i = 0; i < T; i++) {
        mask[i] = mc_rng_uniform(key, i) >= rate ? scale : 0.0f;
        out[i] = inp[i] * mask[i];
    }
}

void mc_model_forward_from(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t B,
                           int training, uint64_t seed, uint64_t step) {
    mc_model_forward_layers(m, a, x, first, first, m->L, B, training, seed, step);
}

/* Layers [lo, hi) on rows [r0, r0 + rows) of a batch of B rows (x and the arena's buffers at the
 * batch's row 0). block: 0 for the whole batch (r0 = 0, rows = B) with the products on the pool;
 * 1 for a block on this thread, each dense product planned for the B rows (and by `plan`, which
 * may be NULL). */
static void forward_rows(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t lo, size_t hi,
                         size_t B, size_t r0, size_t rows, int block, const mc_infer_plan *plan, int training,
                         uint64_t seed, uint64_t step) {
    if (lo >= hi) return;
    size_t n_in0 = m->layers[lo].n_in;
    const float *inp = lo > first ? a->out[lo - 1] + r0 * n_in0 : x + r0 * n_in0;
    for (size_t l = lo; l < hi; l++) {
        const mc_layer *ly = &m->layers[l];
        float *out = a->out[l] + r0 * ly->n_out;
        size_t T = rows * ly->n_out;
        switch (ly->kind) {
        case MC_LAYER_DENSE: {
            const float *w = m->params + ly->w_off;
            const float *b = ly->b_off >= 0 ? m->params + ly->b_off : NULL;
            float *z = a->pre[l] ? a->pre[l] + r0 * ly->n_out : out;
            mc_gemm_rows_plan rp = {B, plan ? plan->params_finite : 0, plan && l == first ? plan->x_sparse : -1};
            mc_dense_forward_act(ly->activation, out, z, inp, w, b, rows, ly->n_in, ly->n_out,
                                 l == first ? a->first_product_nonfinite : NULL, block ? &rp : NULL);
            break;
        }
        case MC_LAYER_ACTIVATION:
            mc_activation_forward(ly->activation, out, inp, rows, ly->n_out);
            break;
        case MC_LAYER_DROPOUT:
            if (training && ly->p0 > 0.0)
                dropout_forward(out, a->mask[l], inp, ly->p0, T, mc_rng_key(seed, step, l));
            else
                memcpy(out, inp, T * sizeof *out);
            break;
        case MC_LAYER_RESCALING: {
            float s = (float)ly->p0, o = (float)ly->p1;
            for (size_t i = 0; i < T; i++) out[i] = inp[i] * s + o;
            break;
        }
        default:
            break;
        }
        inp = out;
    }
}

void mc_model_forward_layers(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t lo, size_t hi,
                             size_t B, int training, uint64_t seed, uint64_t step) {
    forward_rows(m, a, x, first, lo, hi, B, 0, B, 0, NULL, training, seed, step);
}

void mc_model_infer_rows(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t B, size_t r0,
                         size_t rows, const mc_infer_plan *plan) {
    forward_rows(m, a, x, first, first, m->L, B, r0, rows, 1, plan, 0, 0, 0);
}

void mc_model_forward(const mc_model *m, mc_arena *a, const float *x, size_t B, int training,
                      uint64_t seed, uint64_t step) {
    mc_model_forward_from(m, a, x, 0, B, training, seed, step);
}

const float *mc_model_logits_from(const mc_model *m, const mc_arena *a, const float *x, size_t first) {
    size_t l = m->L - 1;
    if (m->layers[l].kind == MC_LAYER_DENSE) return a->pre[l] ? a->pre[l] : a->out[l];
    return l > first ? a->out[l - 1] : x;
}

const float *mc_model_logits(const mc_model *m, const mc_arena *a, const float *x) {
    return mc_model_logits_from(m, a, x, 0);
}

/* --- backward --- */

void mc_model_backward(const mc_model *m, mc_arena *a, const float *x, size_t B, int training, float *dlast,
                       int fused, float *dx) {
    mc_model_backward_from(m, a, x, 0, B, training, dlast, fused, dx);
}

void mc_model_backward_from(const mc_model *m, mc_arena *a, const float *x, size_t first, size_t B,
                            int training, float *dlast, int fused, float *dx) {
    size_t L = m->L, stop = first;
    if (!dx) {
        /* nothing below the lowest trainable dense layer needs a gradient */
        stop = L;
        for (size_t l = first; l < L; l++) {
            if (m->layers[l].kind == MC_LAYER_DENSE && m->layers[l].trainable) {
                stop = l;
                break;
            }
        }
        if (stop == L) return;
    }
    float *g = dlast, *other = dlast == a->g0 ? a->g1 : a->g0;
    for (size_t l = L; l-- > stop;) {
        const mc_layer *ly = &m->layers[l];
        const float *inp = l > first ? a->out[l - 1] : x;
        int need_dinp = dx != NULL || l > stop;
        int skip_act = fused && l == L - 1;
        size_t T = B * ly->n_out;
        if (ly->kind == MC_LAYER_DENSE) {
            float *target = need_dinp ? (l == first ? dx : other) : NULL;
            float *dw = ly->trainable ? m->grads + ly->w_off : NULL;
            float *db = ly->trainable && ly->b_off >= 0 ? m->grads + ly->b_off : NULL;
            /* activation derivative and bias gradient in one pass over the rows, then the two products */
            int act = skip_act ? MC_ACT_LINEAR : ly->activation;
            if (act != MC_ACT_LINEAR || db)
                mc_activation_bias_backward(act, g, db, a->pre[l], a->out[l], B, ly->n_out);
            mc_dense_backward_gemms(target, dw, g, inp, m->params + ly->w_off, B, ly->n_in, ly->n_out);
            if (target == other) {
                other = g;
                g = target;
            }
            continue;
        }
        if (!need_dinp) continue;
        float *target = l == first ? dx : g; /* element-wise kinds work in place */
        switch (ly->kind) {
        case MC_LAYER_ACTIVATION:
            if (skip_act) {
                if (target != g) memcpy(target, g, T * sizeof *g);
            } else {
                mc_activation_backward(ly->activation, target, g, inp, a->out[l], B, ly->n_out);
            }
            break;
        case MC_LAYER_DROPOUT:
            if (training && ly->p0 > 0.0) {
                const float *mask = a->mask[l];
                for (size_t i = 0; i < T; i++) target[i] = g[i] * mask[i];
            } else if (target != g) {
                memcpy(target, g, T * sizeof *g);
            }
            break;
        case MC_LAYER_RESCALING: {
            float s = (float)ly->p0;
            for (size_t i = 0; i < T; i++) target[i] = g[i] * s;
            break;
        }
        default:
            break;
        }
        g = target;
    }
}
