/* Batch loops over a data set. Per call: one arena (model activations and gradients) plus one block
 * for gathered batches, both freed before returning; nothing is allocated inside the loops. The hook
 * timing uses CLOCK_MONOTONIC. Large batch gathers are split over the thread pool, and training
 * gathers the next batch in the background during a step's serial part (rows are independent, so
 * the bytes do not depend on the thread count or on who copied them); the GIL is the binding's
 * business. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "train.h"

#include "scan.h"
#include "threads.h"

#include <string.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Batch buffers: gathered x rows (float32), targets and sample weights, sized for B rows; when
 * training gathers rows, a second x buffer for the next batch (gathered in the background, see run)
 * and one flag per gather task of it. */
typedef struct {
    float *x, *x_next;
    unsigned char *done;
    float *y;
    int32_t *labels;
    float *w;
    void *block;
} batch_bufs;

/* Rows per gather task: small, so that a background gather cut short by the next parallel job
 * keeps the caller waiting for at most one task's rows. */
#define GATHER_ROWS 4

static size_t gather_tasks(size_t b) { return (b + GATHER_ROWS - 1) / GATHER_ROWS; }

static mc_status bufs_init(batch_bufs *bb, const mc_data *dt, size_t n_out, size_t B, int need_x, int need_y,
                           int double_x, mc_error *err) {
    memset(bb, 0, sizeof *bb);
    size_t nx = 0, ny = 0, nl = 0, nw = 0, nd = 0, bytes;
    int ok = 1;
    if (need_x) ok = ok && mc_mul_size(B, dt->d, &nx);
    if (need_x && double_x) {
        ok = ok && mc_mul_size(nx, 2, &nx);
        nd = (gather_tasks(B) + 3) / 4;  /* the flags, in floats */
    }
    if (need_y && dt->y) ok = ok && mc_mul_size(B, n_out, &ny);
    if (need_y && dt->labels) nl = B;
    if (need_y && dt->sw) nw = B;
    ok = ok && nx + ny >= nx && nx + ny + nl >= nx + ny && nx + ny + nl + nw >= nx + ny + nl &&
         nx + ny + nl + nw + nd >= nx + ny + nl + nw && mc_mul_size(nx + ny + nl + nw + nd, 4, &bytes);
    if (!ok) return mc_set_error(err, MC_ERR_NOMEM, "batch buffers: size overflows for batch_size %zu", B);
    if (bytes == 0) return MC_OK;
    bb->block = mc_malloc(bytes);
    if (!bb->block)
        return mc_set_error(err, MC_ERR_NOMEM, "batch buffers: cannot allocate %zu bytes for batch_size %zu",
                            bytes, B);
    float *f = bb->block;
    if (nx) bb->x = f;
    if (nx && double_x) bb->x_next = f + nx / 2;
    if (ny) bb->y = f + nx;
    if (nl) bb->labels = (int32_t *)(f + nx + ny);
    if (nw) bb->w = f + nx + ny + nl;
    if (nd) bb->done = (unsigned char *)(f + nx + ny + nl + nw);
    return MC_OK;
}

static size_t row_of(const int64_t *perm, size_t i) { return perm ? (size_t)perm[i] : i; }

/* How the batch gather treats uint8 rows: when the first C layer is an affine map (a Rescaling:
 * mc_layer_ops.affine), the gather computes (float)u8 * scale + offset itself (the same two float
 * operations the layer does, so the same bits) and the forward pass starts at layer 1. */
typedef struct {
    size_t first;   /* first layer the forward pass runs */
    float scale, offset;
    int rescale;
} gather_plan;

static gather_plan plan_gather(const mc_model *m, const mc_data *dt) {
    gather_plan p = {0, 1.0f, 0.0f, 0};
    const mc_layer *ly = &m->layers[0];
    if (dt->x_u8 && m->L >= 2 && ly->ops->affine && ly->ops->affine(ly, &p.scale, &p.offset)) {
        p.first = 1;
        p.rescale = 1;
    }
    return p;
}

static void convert_u8(float *restrict dst, const uint8_t *restrict src, size_t d) {
    for (size_t j = 0; j < d; j++) dst[j] = (float)src[j];
}

static void convert_u8_scaled(float *restrict dst, const uint8_t *restrict src, size_t d, float s, float o) {
    for (size_t j = 0; j < d; j++) dst[j] = (float)src[j] * s + o;
}

/* Batches of at least this many values are gathered on the thread pool (the seed MLP's 128 x 784
 * floats are; bench/RESULTS.md, "Design measurements"). */
#define GATHER_PAR_MIN 16384

/* Rows [start, start + b) of the data (through perm) into buf, GATHER_ROWS rows per task; done
 * (NULL: none) flags the tasks already run, which are skipped, and is set by those that run. */
typedef struct {
    const mc_data *dt;
    const gather_plan *gp;
    const int64_t *perm;
    size_t start, b;
    float *buf;
    unsigned char *done;
} gather_job;

/* While a row is copied, the first GATHER_PREFETCH bytes of the next one are requested (into L2):
 * shuffled rows sit at random places in a data set far larger than the caches, and each would
 * otherwise start with a full memory latency before the hardware prefetcher takes up its stream
 * (bench/RESULTS.md, "Design measurements"). */
#define GATHER_PREFETCH 2048

static void gather_rows(const gather_job *j, size_t lo, size_t hi) {
    const mc_data *dt = j->dt;
    size_t d = dt->d, row_bytes = d * (dt->x_u8 ? sizeof(uint8_t) : sizeof(float));
    size_t ahead = row_bytes < GATHER_PREFETCH ? row_bytes : GATHER_PREFETCH;
    for (size_t i = lo; i < hi; i++) {
        size_t r = row_of(j->perm, j->start + i);
        float *dst = j->buf + i * d;
        if (i + 1 < j->b) {
            const char *next = (const char *)dt->x + row_of(j->perm, j->start + i + 1) * row_bytes;
            for (size_t o = 0; o < ahead; o += 64) __builtin_prefetch(next + o, 0, 2);
        }
        if (dt->x_u8) {
            const uint8_t *src = (const uint8_t *)dt->x + r * d;
            if (j->gp->rescale) convert_u8_scaled(dst, src, d, j->gp->scale, j->gp->offset);
            else convert_u8(dst, src, d);
        } else {
            memcpy(dst, (const float *)dt->x + r * d, d * sizeof *dst);
        }
    }
}

static void gather_task(void *ctx, size_t t) {
    const gather_job *j = ctx;
    if (j->done && j->done[t]) return;
    size_t lo = t * GATHER_ROWS, hi = lo + GATHER_ROWS < j->b ? lo + GATHER_ROWS : j->b;
    gather_rows(j, lo, hi);
    if (j->done) j->done[t] = 1;
}

static int needs_gather(const mc_data *dt, const int64_t *perm) { return dt->x_u8 || perm; }

/* Input rows [start, start + b) through perm; points into x itself when no copy is needed. Rows
 * are copied independently, so splitting them over the thread pool gives the same bytes. done:
 * as in gather_job. */
static const float *gather_x(const mc_data *dt, const gather_plan *gp, const int64_t *perm, size_t start,
                             size_t b, float *buf, unsigned char *done) {
    if (!needs_gather(dt, perm)) return (const float *)dt->x + start * dt->d;
    gather_job j = {dt, gp, perm, start, b, buf, done};
    size_t n = gather_tasks(b);
    if (b * dt->d >= GATHER_PAR_MIN && mc_get_num_threads() > 1) {
        mc_parallel_for(n, gather_task, &j);
    } else {
        for (size_t t = 0; t < n; t++) gather_task(&j, t);
    }
    return buf;
}

static void gather_y(const mc_data *dt, const int64_t *perm, size_t start, size_t b, size_t n,
                     const batch_bufs *bb, const float **y, const int32_t **labels) {
    *y = NULL;
    *labels = NULL;
    if (dt->labels) {
        if (!perm) {
            *labels = dt->labels + start;
            return;
        }
        for (size_t i = 0; i < b; i++) bb->labels[i] = dt->labels[row_of(perm, start + i)];
        *labels = bb->labels;
    } else if (dt->y) {
        if (!perm) {
            *y = dt->y + start * n;
            return;
        }
        for (size_t i = 0; i < b; i++) memcpy(bb->y + i * n, dt->y + row_of(perm, start + i) * n, n * sizeof(float));
        *y = bb->y;
    }
}

/* The sample weights of rows [start, start + b) through perm (NULL when the data has none). */
static const float *gather_w(const mc_data *dt, const int64_t *perm, size_t start, size_t b, const batch_bufs *bb) {
    if (!dt->sw || !perm) return dt->sw ? dt->sw + start : NULL;
    for (size_t i = 0; i < b; i++) bb->w[i] = dt->sw[row_of(perm, start + i)];
    return bb->w;
}

static mc_status check_call(const mc_model *m, size_t batch_size, mc_error *err) {
    if (m->L == 0) return mc_set_error(err, MC_ERR_ARG, "layers: the model has no layers");
    if (batch_size == 0) return mc_set_error(err, MC_ERR_ARG, "batch_size: expected a positive integer, got 0");
    return MC_OK;
}

/* SCCE reads class ids, every other loss float targets. */
static mc_status check_targets(const mc_loss_spec *loss, const float *y, const int32_t *labels, mc_error *err) {
    int sparse = loss->kind == MC_LOSS_SCCE;
    if (sparse ? !labels : !y)
        return mc_set_error(err, MC_ERR_ARG, "y: loss kind %d needs %s targets", loss->kind,
                            sparse ? "int32 class id" : "float32");
    return MC_OK;
}

/* Calls the hook if it is due; returns nonzero when it asks to stop. */
static int report(const mc_hook *hook, double *last, size_t batch, size_t n_batches, const mc_sums *s,
                  size_t n_metrics) {
    if (!hook || !hook->fn) return 0;
    int is_last = batch + 1 == n_batches;
    double now = 0.0;
    if (!is_last && hook->interval > 0.0) {
        now = now_seconds();
        if (now - *last < hook->interval) return 0;
    }
    mc_progress p = {batch, n_batches, s->loss_sum, s->metric_sums, n_metrics, s->n_seen, s->weight_sum};
    int stop = hook->fn(hook->ctx, &p);
    if (hook->interval > 0.0) *last = now_seconds();
    return stop;
}

/* The first of the layers from which the forward pass runs on the calling thread alone: those
 * after the last layer whose forward is split over threads (mc_layer_ops.threads). The background gather
 * starts there, so that it also has the last layers' forward pass to run in. */
static size_t serial_layers_from(const mc_model *m, size_t first, size_t B) {
    size_t from = first;
    for (size_t l = first; l < m->L; l++) {
        const mc_layer *ly = &m->layers[l];
        if (ly->ops->threads && ly->ops->threads(ly, B) > 1) from = l + 1;
    }
    return from;
}

/* MC_ERR_ARG naming rows [start, start + b) when those float rows of x hold NaN or infinities. */
static mc_status check_rows(const mc_data *dt, size_t start, size_t b, mc_error *err) {
    mc_scan_result r = mc_scan((const float *)dt->x + start * dt->d, MC_SCAN_F32, b * dt->d);
    if (r.n_nan || r.n_inf)
        return mc_set_error(err, MC_ERR_ARG, "x: rows %zu to %zu hold %zu NaN and %zu infinite value(s)", start,
                            start + b - 1, r.n_nan, r.n_inf);
    return MC_OK;
}

/* Inference runs a batch as blocks of rows, each block through every layer on one thread, in an
 * arena of that thread's own (mc_model_infer_rows): one parallel job per batch instead of one per
 * product with serial parts between them, a block's activations stay in cache, and the memory
 * does not grow with the batch size. Blocks are whole 12-row tiles, about INFER_TASKS_PER_THREAD
 * per thread, and no more rows than keep a block's layer outputs within INFER_BLOCK_BYTES
 * (bench/RESULTS.md, "Design measurements"). */
#define INFER_TILE 12
#define INFER_TASKS_PER_THREAD 4
#define INFER_BLOCK_BYTES ((size_t)1 << 20)

/* The arenas of inference's blocks and, for evaluate, the batch's outputs the loss and metrics
 * read. */
typedef struct {
    mc_arena *arenas;   /* one per thread that may run blocks */
    size_t n_arenas;
    size_t rows;        /* rows each arena holds: the most a block of a batch of B rows has */
    float *out, *logits;/* (B, n_out) each, or NULL: predict writes its rows in place; no fused loss
                         * (evaluate's logits exist only for one) */
    void *block;
    float **derived;    /* per layer: its ops->derive's weights in derived_block, or NULL */
    float *derived_block;
} infer_bufs;

/* Rows per block of a batch of b rows: whole tiles, about INFER_TASKS_PER_THREAD blocks per thread,
 * fewer rows (down to one tile) where a block's layer outputs would pass INFER_BLOCK_BYTES; then,
 * when that makes more than one block, the batch cut evenly into that many blocks rounded up to a
 * multiple of the threads, so that no thread waits on the last one. */
static size_t block_rows(const mc_model *m, size_t first, size_t b, int threads) {
    size_t tiles = (b + INFER_TILE - 1) / INFER_TILE, want = (size_t)threads * INFER_TASKS_PER_THREAD;
    size_t tiles_per = (tiles + want - 1) / want, per_row = 0, max_tiles = 1;
    for (size_t l = first; l < m->L; l++) per_row += m->layers[l].n_out;
    if (per_row <= INFER_BLOCK_BYTES / (INFER_TILE * sizeof(float)))
        max_tiles = INFER_BLOCK_BYTES / (INFER_TILE * sizeof(float) * per_row);
    if (tiles_per > max_tiles) tiles_per = max_tiles;
    size_t rows = tiles_per * INFER_TILE, blocks = (b + rows - 1) / rows, T = (size_t)threads;
    if (blocks > 1) blocks = (blocks + T - 1) / T * T;
    if (blocks > b) blocks = b;
    return (b + blocks - 1) / blocks;
}

static void infer_release(infer_bufs *ib) {
    for (size_t t = 0; ib->arenas && t < ib->n_arenas; t++) mc_arena_release(&ib->arenas[t]);
    mc_free(ib->arenas);
    mc_free(ib->block);
    mc_free(ib->derived);
    mc_free(ib->derived_block);
    memset(ib, 0, sizeof *ib);
}

/* The weights the layers derive from the parameters (ops->derive), made once for the call; on
 * an error ib is released. */
static mc_status derive(infer_bufs *ib, const mc_model *m, size_t first, mc_error *err) {
    size_t total = 0;
    for (size_t l = first; l < m->L; l++) {
        const mc_layer *ly = &m->layers[l];
        size_t n = ly->ops->derived ? ly->ops->derived(ly) : 0;
        if (n > SIZE_MAX / sizeof(float) - total) {
            infer_release(ib);
            return mc_set_error(err, MC_ERR_NOMEM, "inference: the derived weights' size overflows");
        }
        total += n;
    }
    if (total == 0) return MC_OK;
    ib->derived = mc_calloc(m->L, sizeof *ib->derived);
    ib->derived_block = mc_malloc(total * sizeof(float));
    if (!ib->derived || !ib->derived_block) {
        infer_release(ib);
        return mc_set_error(err, MC_ERR_NOMEM, "inference: cannot allocate %zu floats of derived weights", total);
    }
    float *p = ib->derived_block;
    for (size_t l = first; l < m->L; l++) {
        const mc_layer *ly = &m->layers[l];
        size_t n = ly->ops->derived ? ly->ops->derived(ly) : 0;
        if (n == 0) continue;
        ly->ops->derive(ly, m->params, p);
        ib->derived[l] = p;
        p += n;
    }
    return MC_OK;
}

static mc_status infer_init(infer_bufs *ib, const mc_model *m, size_t first, size_t B, int evaluate, int fused,
                            atomic_int *product_nonfinite, mc_error *err) {
    memset(ib, 0, sizeof *ib);
    int threads = mc_get_num_threads();
    size_t rows = block_rows(m, first, B, threads), n_out = m->layers[m->L - 1].n_out, bytes;
    if (rows > B) rows = B;
    size_t blocks = (B + rows - 1) / rows, n = blocks < (size_t)threads ? blocks : (size_t)threads;
    size_t floats = (size_t)evaluate * (1 + (size_t)fused);
    if (floats && (!mc_mul_size(B, n_out, &bytes) || !mc_mul_size(bytes, floats * sizeof(float), &bytes)))
        return mc_set_error(err, MC_ERR_NOMEM, "inference outputs: size overflows for batch_size %zu", B);
    ib->arenas = mc_calloc(n, sizeof *ib->arenas);
    ib->block = floats ? mc_malloc(bytes) : NULL;
    if (!ib->arenas || (floats && !ib->block)) {
        infer_release(ib);
        return mc_set_error(err, MC_ERR_NOMEM, "inference: cannot allocate the outputs of batch_size %zu", B);
    }
    ib->rows = rows;
    for (; ib->n_arenas < n; ib->n_arenas++) {
        mc_status st = mc_arena_init(&ib->arenas[ib->n_arenas], m, rows, err);
        if (st != MC_OK) {
            infer_release(ib);
            return st;
        }
        ib->arenas[ib->n_arenas].first_product_nonfinite = product_nonfinite;
    }
    if (floats) ib->out = ib->block;
    if (floats == 2) ib->logits = ib->out + B * n_out;
    return derive(ib, m, first, err);
}

typedef struct {
    const mc_model *m;
    const infer_bufs *ib;
    const float *x;
    size_t first, b, rows_per;
    float *out, *logits;  /* the batch's (b, n_out) output and fused logits (NULL: not wanted) */
    mc_infer_plan plan;
    atomic_size_t next;   /* the next block to run */
} infer_job;

/* Task t runs blocks on arena t until none is left: the blocks' bits do not depend on who runs
 * them. */
static void infer_task(void *ctx, size_t t) {
    infer_job *j = ctx;
    const mc_model *m = j->m;
    mc_arena *a = &j->ib->arenas[t];
    size_t n_out = m->layers[m->L - 1].n_out, d = m->layers[j->first].n_in;
    for (;;) {
        size_t k = atomic_fetch_add(&j->next, 1);
        if (k >= (j->b + j->rows_per - 1) / j->rows_per) return;
        size_t r0 = k * j->rows_per, rows = j->b - r0 < j->rows_per ? j->b - r0 : j->rows_per;
        const float *x = j->x + r0 * d;
        mc_model_infer_rows(m, a, x, j->first, rows, &j->plan);
        memcpy(j->out + r0 * n_out, a->out[m->L - 1], rows * n_out * sizeof(float));
        if (j->logits)
            memcpy(j->logits + r0 * n_out, mc_model_logits_from(m, a, x, j->first), rows * n_out * sizeof(float));
    }
}

/* The forward pass of inference on a batch of b rows (layers first.. of x) into out and, when not
 * NULL, the fused loss's logits. */
static void infer(const mc_model *m, const infer_bufs *ib, const float *x, size_t first, size_t b, float *out,
                  float *logits, int *params_finite) {
    int threads = mc_get_num_threads();
    size_t rows = block_rows(m, first, b, threads);
    if (rows > ib->rows) rows = ib->rows;
    /* whether the first product skips x's zeros: one sample of the batch (the rows the whole
     * product would look at) rather than one per block, each a trip to memory */
    const mc_layer *ly = &m->layers[first];
    int x_sparse = ly->ops->sparse_input ? ly->ops->sparse_input(ly, x, b) : -1;
    /* whether the weights are finite (the zero skipping must keep 0 * inf terms): once per call
     * rather than in every block's products, unless the batch is one block */
    size_t blocks = (b + rows - 1) / rows, n = blocks < ib->n_arenas ? blocks : ib->n_arenas;
    if (blocks > 1 && *params_finite < 0) {
        mc_scan_result r = mc_scan(m->params, MC_SCAN_F32, m->P);
        *params_finite = r.n_nan == 0 && r.n_inf == 0;
    }
    infer_job j = {m, ib, x, first, b, rows, out, logits, {*params_finite == 1, x_sparse, b, ib->derived}, 0};
    if (n < 2) infer_task(&j, 0);
    else mc_parallel_for_n(n, (int)n, infer_task, &j);
}

/* Shared loop of train / evaluate / predict (mode 0 / 1 / 2). */
static mc_status run(const mc_model *m, const mc_data *dt, const int64_t *perm, size_t batch_size,
                     const mc_loss_spec *loss, const mc_metrics *metrics, const mc_optim *opt, int64_t *iterations,
                     uint64_t seed, const mc_hook *hook, mc_sums *sums, float *pred, int mode, mc_error *err) {
    mc_sums s = {0};
    if (sums) *sums = s;
    mc_status st = check_call(m, batch_size, err);
    if (st == MC_OK && mode != 2) st = check_targets(loss, dt->y, dt->labels, err);
    if (st != MC_OK || dt->N == 0) return st;
    size_t N = dt->N, n_out = m->layers[m->L - 1].n_out;
    size_t B = batch_size < N ? batch_size : N;
    size_t n_batches = N / batch_size + (N % batch_size != 0);
    int training = mode == 0;
    int fused = loss ? mc_model_fused(m, loss->kind, loss->from_logits) : 0;
    /* training: the batch's arena; inference: the blocks' arenas and evaluate's outputs */
    mc_arena a;
    infer_bufs ib;
    batch_bufs bb;
    memset(&a, 0, sizeof a);
    memset(&ib, 0, sizeof ib);
    memset(&bb, 0, sizeof bb);
    gather_plan gp = plan_gather(m, dt);
    /* predict refuses float rows holding NaN or infinities. Such a value makes every product of its
     * row in a first layer with a product (dense) NaN or infinite, so that layer checks its products
     * (values still in cache) and x is scanned only when they hold one, for the error and its counts:
     * one trip to memory over x instead of two. Other first layers get x scanned first. */
    atomic_int product_nonfinite = 0;
    int check_x = mode == 2 && dt->check_finite && !dt->x_u8;
    int check_products = check_x && m->layers[gp.first].ops->checks_products;
    st = training ? mc_arena_init(&a, m, B, err)
                  : infer_init(&ib, m, gp.first, B, mode == 1, fused, check_products ? &product_nonfinite : NULL, err);
    if (st != MC_OK) return st;
    /* Training on gathered rows: while a step's serial part runs (the small last layers, the loss,
     * the first backward products) the pool's otherwise idle workers gather the next batch into
     * the second buffer; what they have not done when the step's next parallel job starts is
     * gathered with that batch. The same bytes either way. */
    int ahead = training && needs_gather(dt, perm) && mc_get_num_threads() > 1;
    if ((st = bufs_init(&bb, dt, n_out, B, needs_gather(dt, perm), mode != 2 && perm, ahead, err)) != MC_OK)
        goto done;
    size_t serial_from = ahead ? serial_layers_from(m, gp.first, B) : gp.first;
    int params_finite = -1;  /* not scanned yet (infer) */
    /* the weight penalties added to each batch's loss: evaluate's weights stay as they are; training
     * has them from each step's backward pass, at the weights of that step (Keras's loss) */
    double penalty = mode == 1 ? mc_model_penalty(m) : 0.0;
    gather_job next;
    float *x_cur = bb.x, *x_next = bb.x_next;
    double last = now_seconds();
    for (size_t k = 0, start = 0; k < n_batches; k++, start += batch_size) {
        size_t b = N - start < batch_size ? N - start : batch_size;
        if (check_x && !check_products && (st = check_rows(dt, start, b, err)) != MC_OK) break;
        const float *xb;
        if (ahead && k > 0) {  /* this batch went to x_next, partly or not at all */
            mc_parallel_end();
            float *t = x_cur;
            x_cur = x_next;
            x_next = t;
            xb = gather_x(dt, &gp, perm, start, b, x_cur, bb.done);
        } else {
            xb = gather_x(dt, &gp, perm, start, b, x_cur, NULL);
        }
        uint64_t step = training ? (uint64_t)*iterations : 0;
        const float *outp, *logits = NULL;
        if (training) {
            mc_model_forward_layers(m, &a, xb, gp.first, gp.first, serial_from, b, training, seed, step);
            if (ahead && k + 1 < n_batches) {
                size_t nb = N - (start + batch_size) < batch_size ? N - (start + batch_size) : batch_size;
                memset(bb.done, 0, gather_tasks(nb));
                next = (gather_job){dt, &gp, perm, start + batch_size, nb, x_next, bb.done};
                mc_parallel_begin(gather_tasks(nb), gather_task, &next);
            }
            mc_model_forward_layers(m, &a, xb, gp.first, serial_from, m->L, b, training, seed, step);
            outp = a.out[m->L - 1];
            if (fused) logits = mc_model_logits_from(m, &a, xb, gp.first);
        } else {
            float *o = mode == 2 ? pred + start * n_out : ib.out;
            infer(m, &ib, xb, gp.first, b, o, ib.logits, &params_finite);
            outp = o;
            logits = ib.logits;
        }
        if (check_products && atomic_exchange(&product_nonfinite, 0) &&
            (st = check_rows(dt, start, b, err)) != MC_OK)
            break;
        if (mode != 2) {
            const float *yb;
            const int32_t *lb;
            gather_y(dt, perm, start, b, n_out, &bb, &yb, &lb);
            float *dl = training ? a.g0 : NULL;
            const float *wb = gather_w(dt, perm, start, b, &bb);
            double lsum = mc_loss_eval(loss, fused, dl, outp, logits, yb, lb, wb, b, n_out);
            mc_metrics_add(metrics, s.metric_sums, &s.weight_sum, outp, yb, lb, wb, b, n_out);
            if (training) {
                penalty = mc_model_backward_from(m, &a, xb, gp.first, b, 1, dl, fused, NULL);
                mc_optim_step(opt, m->params, m->grads, iterations);
            }
            s.loss_sum += lsum + penalty * (double)b;
        }
        s.n_seen += b;
        if (sums) *sums = s;
        /* the hook may run Python code that forks or calls the engine: the pool must be free then
         * (a small model has no parallel job after the forward pass to end the gather) */
        mc_parallel_end();
        if (report(hook, &last, k, n_batches, &s, metrics ? metrics->n : 0)) {
            st = mc_set_error(err, MC_STOPPED, "stopped by the progress hook after batch %zu of %zu", k + 1,
                              n_batches);
            break;
        }
    }
done:
    mc_parallel_end();
    mc_free(bb.block);
    mc_arena_release(&a);
    infer_release(&ib);
    return st;
}

mc_status mc_train_epoch(const mc_model *m, const mc_data *data, const int64_t *perm, size_t batch_size,
                         const mc_loss_spec *loss, const mc_metrics *metrics, const mc_optim *opt, int64_t *iterations,
                         uint64_t seed, const mc_hook *hook, mc_sums *sums, mc_error *err) {
    return run(m, data, perm, batch_size, loss, metrics, opt, iterations, seed, hook, sums, NULL, 0, err);
}

mc_status mc_evaluate(const mc_model *m, const mc_data *data, size_t batch_size, const mc_loss_spec *loss,
                      const mc_metrics *metrics, const mc_hook *hook, mc_sums *sums, mc_error *err) {
    return run(m, data, NULL, batch_size, loss, metrics, NULL, NULL, 0, hook, sums, NULL, 1, err);
}

mc_status mc_predict(const mc_model *m, const mc_data *data, float *out, size_t batch_size, const mc_hook *hook,
                     mc_error *err) {
    return run(m, data, NULL, batch_size, NULL, NULL, NULL, NULL, 0, hook, NULL, out, 2, err);
}

mc_status mc_loss_and_grad(const mc_model *m, const float *x, size_t B, const float *y, const int32_t *labels,
                           const float *sw, const mc_loss_spec *loss, uint64_t seed, int training,
                           double *loss_out, float *dx, mc_error *err) {
    mc_status st = check_call(m, B, err);
    if (st == MC_OK) st = check_targets(loss, y, labels, err);
    if (st != MC_OK) return st;
    mc_arena a;
    if ((st = mc_arena_init(&a, m, B, err)) != MC_OK) return st;
    int fused = mc_model_fused(m, loss->kind, loss->from_logits);
    mc_model_forward(m, &a, x, B, training, seed, 0);
    const float *logits = fused ? mc_model_logits(m, &a, x) : NULL;
    size_t n_out = m->layers[m->L - 1].n_out;
    double lsum = mc_loss_eval(loss, fused, a.g0, a.out[m->L - 1], logits, y, labels, sw, B, n_out);
    *loss_out = lsum / (double)B + mc_model_backward(m, &a, x, B, training, a.g0, fused, dx);
    mc_arena_release(&a);
    return MC_OK;
}
