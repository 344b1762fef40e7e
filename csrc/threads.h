/* A small process-wide pthread pool for splitting independent pieces of work (the output blocks
 * of a GEMM) over cores. It never splits a reduction: callers hand it tasks whose results do not
 * depend on which thread runs them, so results are identical for every thread count. Its
 * configuration is under a mutex. The C core's other process-wide state: the choices made once at
 * first use (the GEMM kernel variant and zero skipping, gemm.h; the vector width of the optimizer's
 * and softmax's loops, from the CPU), each thread's GEMM packing buffers, and the allocation-failure
 * test hook. Independent of NumPy's BLAS threads (see gemm.h). */
#ifndef MC_THREADS_H
#define MC_THREADS_H

#include <stddef.h>

#include "common.h"

/* Upper bound of mc_set_num_threads. */
#define MC_MAX_THREADS 256

/* One task: fn(ctx, task) for task in [0, n_tasks). Tasks run concurrently and in any order. */
typedef void (*mc_task_fn)(void *ctx, size_t task);

/* Run fn(ctx, t) for every t in [0, n_tasks) on up to min(n_tasks, mc_get_num_threads()) threads,
 * the caller included, and return when all have finished. Workers are created on the first call
 * that needs them and then parked (a short spin, then a condition variable). Cannot fail: if a
 * worker cannot be created, or another thread is already running a parallel job, the tasks run
 * on fewer threads (down to the caller alone). A task must not fork. */
void mc_parallel_for(size_t n_tasks, mc_task_fn fn, void *ctx);

/* The same on at most max_threads threads (values < 1 mean 1), never more than
 * mc_get_num_threads(). The tasks are cut into one contiguous lane per thread, lane 0 (the
 * lowest tasks) the caller's; each thread claims its own lane's tasks in increasing order, then
 * what is left of the others, lane after lane. So jobs cut alike give each thread the same data
 * job after job, and a task may wait (spin) for lower-numbered tasks to finish: those are
 * claimed by running threads or will be by the caller, which never waits on a higher lane. */
void mc_parallel_for_n(size_t n_tasks, int max_threads, mc_task_fn fn, void *ctx);

/* Start fn(ctx, t) for t in [0, n_tasks) on the pool's workers only and return at once, so that
 * the caller can go on with work of its own while they run (training gathers the next batch this
 * way during the serial part of a step). Returns 1 if the job was started, 0 if not (one thread,
 * no worker, the pool busy, or a background job of this thread already open): then nothing has
 * run. Tasks are claimed in increasing order within lanes, as in mc_parallel_for_n; some may
 * never run: the caller must record which did (each task its own flag). */
int mc_parallel_begin(size_t n_tasks, mc_task_fn fn, void *ctx);

/* End the calling thread's background job, if any: tasks not yet started never will be, those
 * running are waited for. Every mc_parallel_for(_n) of that thread calls it first. */
void mc_parallel_end(void);

/* Number of threads mc_parallel_for may use (caller included). Fixed at first use from env
 * MNISTC_NUM_THREADS (an integer in [1, MC_MAX_THREADS]; anything else is ignored), otherwise the
 * CPUs this process may run on (sched_getaffinity), bounded by a cgroup v2 cpu.max quota. */
int mc_get_num_threads(void);

/* Set the thread count for later calls. MC_ERR_ARG unless 1 <= n <= MC_MAX_THREADS. */
mc_status mc_set_num_threads(int n, mc_error *err);

/* The default count described at mc_get_num_threads (CPUs usable, bounded by cpu.max), and where
 * the current count came from: "default", "env" (MNISTC_NUM_THREADS) or "set". */
int mc_threads_default(void);
const char *mc_threads_source(void);

#endif
