/* What several layer kinds share (layer.h): the window geometry rule of Conv2D and the pooling
 * kinds, and splitting a batch by samples over the pool. */
#include "layer.h"
#include "threads.h"

static mc_status check_dim(size_t l, const char *what, const char *dim, const char *pad_name, size_t in, size_t k,
                           size_t s, size_t pad, size_t out, mc_error *err) {
    if (k < 1 || s < 1 || k > MC_MAX_WINDOW || s > MC_MAX_WINDOW)
        return mc_set_error(err, MC_ERR_ARG, "layers[%zu]: %s kernel %s and stride %s must be in [1, %zu], found %zu and %zu",
                            l, what, dim, dim, MC_MAX_WINDOW, k, s);
    size_t same_out = (in + s - 1) / s, span = (same_out - 1) * s + k;
    size_t same_pad = span > in ? (span - in) / 2 : 0;
    if (in >= k && pad == 0 && out == (in - k) / s + 1) return MC_OK;
    if (out == same_out && pad == same_pad) return MC_OK;
    if (in < k)
        return mc_set_error(err, MC_ERR_SHAPE,
                            "layers[%zu]: %s %s: kernel %zu is larger than the input %zu, so only padding 'same' fits "
                            "(output %zu, %s %zu); found output %zu, %s %zu",
                            l, what, dim, k, in, same_out, pad_name, same_pad, out, pad_name, pad);
    return mc_set_error(err, MC_ERR_SHAPE,
                        "layers[%zu]: %s %s: input %zu, kernel %zu, stride %zu give output %zu with %s 0 ('valid') "
                        "or output %zu with %s %zu ('same'); found output %zu, %s %zu",
                        l, what, dim, in, k, s, (in - k) / s + 1, pad_name, same_out, pad_name, same_pad, out,
                        pad_name, pad);
}

mc_status mc_window_check(const mc_layer *ly, size_t l, const char *what, mc_error *err) {
    mc_status st = check_dim(l, what, "height", "pad_top", ly->in.h, ly->kernel_h, ly->stride_h, ly->pad_top,
                             ly->out.h, err);
    if (st != MC_OK) return st;
    return check_dim(l, what, "width", "pad_left", ly->in.w, ly->kernel_w, ly->stride_w, ly->pad_left, ly->out.w,
                     err);
}

/* Floats of work below which a range of samples is not worth a task of its own. */
#define SAMPLES_MIN_WORK 16384
#define SAMPLES_TASKS_PER_THREAD 4

static size_t sample_tasks(size_t rows, size_t work) {
    size_t nt = (size_t)mc_get_num_threads();
    if (nt <= 1 || rows < 2) return 1;
    double by_work = (double)rows * (double)work / SAMPLES_MIN_WORK;
    size_t t = rows < SAMPLES_TASKS_PER_THREAD * nt ? rows : SAMPLES_TASKS_PER_THREAD * nt;
    if (by_work < (double)t) t = (size_t)by_work;
    return t < 1 ? 1 : t;
}

int mc_samples_threads(size_t rows, size_t work) {
    size_t t = sample_tasks(rows, work), nt = (size_t)mc_get_num_threads();
    return (int)(t < nt ? t : nt);
}

typedef struct {
    void (*fn)(void *ctx, size_t s0, size_t s1);
    void *ctx;
    size_t rows, tasks;
} split_job;

static void split_task(void *ctx, size_t t) {
    const split_job *j = ctx;
    j->fn(j->ctx, t * j->rows / j->tasks, (t + 1) * j->rows / j->tasks);
}

void mc_for_samples(size_t rows, size_t work, int pool, void (*fn)(void *ctx, size_t s0, size_t s1), void *ctx) {
    size_t tasks = pool ? sample_tasks(rows, work) : 1;
    if (tasks <= 1) {
        if (rows) fn(ctx, 0, rows);
        return;
    }
    split_job j = {fn, ctx, rows, tasks};
    mc_parallel_for(tasks, split_task, &j);
}
