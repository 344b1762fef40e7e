/* The persistent worker pool behind mc_parallel_for. One job runs at a time (a trylock; a second
 * concurrent caller runs its tasks alone); the caller works on its own job too, and waits only for
 * the workers that joined it: a worker that wakes late (its core busy elsewhere) finds the job
 * closed and goes back to waiting, so a job never stalls on a thread that did no work. A
 * background job is one the owner leaves to the workers while it works on something else; it
 * holds the pool until the owner ends it, which stops further tasks from starting. Workers
 * block all signals, spin briefly between jobs (training calls GEMMs back to back) and then sleep.
 * After a fork the child starts with no workers and creates new ones on demand (pthread_atfork). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "threads.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long an idle worker (and a caller waiting for its workers) spins before sleeping. Between
 * two parallel GEMMs of a training step there are tens of microseconds of serial work; waking a
 * sleeping thread costs about as much, so a spin of this order keeps the hand-off cheap without
 * holding a core for long once the work stops. After the first PAUSE_NS the spin yields the CPU
 * on every round, so a spinning thread does not starve a runnable one (more threads than cores,
 * or a core shared with another process). */
#define SPIN_NS 150000L
#define PAUSE_NS 20000L

typedef struct {
    pthread_t tid;
    atomic_uint ticket;   /* the job number this worker should run; bumped by the job owner */
    unsigned seen;        /* the ticket the worker started from (written before pthread_create) */
    pthread_cond_t cv;    /* where this worker sleeps, under park_mu */
} worker;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t cfg_mu = PTHREAD_MUTEX_INITIALIZER;  /* n_threads and its source */
static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER;  /* held by the owner of the running job */
static pthread_mutex_t park_mu = PTHREAD_MUTEX_INITIALIZER; /* sleeping workers and a waiting owner */
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER;

static atomic_int n_threads = 1;
static int n_default = 1;
static const char *source = "default";

/* Guarded by job_mu: the workers that exist and the job being handed out. The job fields are
 * written before the job is opened (job_word) and read by a worker only after it has entered the
 * job; the owner rewrites them only after closing the job with nobody inside. */
static worker pool[MC_MAX_THREADS];
static int n_workers;
static unsigned job_gen;
static mc_task_fn job_fn;
static void *job_ctx;
static size_t job_n;
static size_t job_parts;  /* participants: the owner and the workers it signalled */
/* Task t belongs to lane p when p*n/parts <= t < (p+1)*n/parts; lane[p].next counts the claims
 * made on it. Cache-line padded: the lanes are claimed from different cores. */
static struct {
    _Alignas(64) atomic_size_t next;
} lane[MC_MAX_THREADS];

/* The job's state in one word: its number in the high 32 bits; in the low bits the count of
 * workers inside it, or JOB_CLOSED once its owner has shut it. */
static _Atomic uint64_t job_word;
#define JOB_CLOSED ((uint64_t)1 << 31)
static atomic_int owner_sleeping;

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* --- default thread count --- */

/* ceil(quota / period) from a cgroup v2 cpu.max file ("max 100000" or "200000 100000"); 0 when
 * there is no quota or the file cannot be read. */
static int read_cpu_max(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    char quota[32] = {0};
    long long period = 0;
    int got = fscanf(f, "%31s %lld", quota, &period);
    fclose(f);
    if (got != 2 || period <= 0 || strcmp(quota, "max") == 0) return 0;
    char *end = NULL;
    long long q = strtoll(quota, &end, 10);
    if (end == quota || *end != '\0' || q <= 0) return 0;
    long long n = (q + period - 1) / period;
    return n > MC_MAX_THREADS ? MC_MAX_THREADS : (int)n;
}

/* The smallest cpu.max quota on the path from this process's cgroup (/proc/self/cgroup, line
 * "0::/path") up to /sys/fs/cgroup; 0 when none applies. */
static int cgroup_cpu_limit(void) {
    char path[512] = "";
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3) == 0) {
                size_t n = strcspn(line + 3, "\n");
                if (n < sizeof path) {
                    memcpy(path, line + 3, n);
                    path[n] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    int best = 0;
    for (;;) {
        char file[600];
        snprintf(file, sizeof file, "/sys/fs/cgroup%s/cpu.max", strcmp(path, "/") == 0 ? "" : path);
        int q = read_cpu_max(file);
        if (q > 0 && (best == 0 || q < best)) best = q;
        char *slash = strrchr(path, '/');
        if (!slash || path[0] == '\0' || strcmp(path, "/") == 0) break;
        if (slash == path) strcpy(path, "/");
        else *slash = '\0';
    }
    return best;
}

static int cpus_usable(void) {
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n < 1) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)(c > MC_MAX_THREADS ? MC_MAX_THREADS : c) : 1;
    }
    int q = cgroup_cpu_limit();
    if (q > 0 && q < n) n = q;
    return n > MC_MAX_THREADS ? MC_MAX_THREADS : n;
}

/* --- fork safety --- */

static void atfork_prepare(void) {
    pthread_mutex_lock(&cfg_mu);
    pthread_mutex_lock(&job_mu);
    pthread_mutex_lock(&park_mu);
}

static void atfork_parent(void) {
    pthread_mutex_unlock(&park_mu);
    pthread_mutex_unlock(&job_mu);
    pthread_mutex_unlock(&cfg_mu);
}

/* Only the forking thread exists in the child: forget the workers (their condition variables may
 * still count waiters that are gone, so they are initialised afresh when a worker is created). */
static void atfork_child(void) {
    n_workers = 0;
    atomic_store(&job_word, ((uint64_t)job_gen << 32) | JOB_CLOSED);
    atomic_store(&owner_sleeping, 0);
    pthread_cond_init(&done_cv, NULL);
    pthread_mutex_unlock(&park_mu);
    pthread_mutex_unlock(&job_mu);
    pthread_mutex_unlock(&cfg_mu);
}

static void init(void) {
    n_default = cpus_usable();
    int n = n_default;
    const char *env = getenv("MNISTC_NUM_THREADS");
    if (env && *env) {
        char *end = NULL;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v >= 1 && v <= MC_MAX_THREADS) {
            n = (int)v;
            source = "env";
        }
    }
    atomic_store(&n_threads, n);
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

int mc_get_num_threads(void) {
    pthread_once(&init_once, init);
    return atomic_load(&n_threads);
}

int mc_threads_default(void) {
    pthread_once(&init_once, init);
    return n_default;
}

const char *mc_threads_source(void) {
    pthread_once(&init_once, init);
    pthread_mutex_lock(&cfg_mu);
    const char *s = source;
    pthread_mutex_unlock(&cfg_mu);
    return s;
}

mc_status mc_set_num_threads(int n, mc_error *err) {
    if (n < 1) return mc_set_error(err, MC_ERR_ARG, "num_threads must be >= 1, got %d", n);
    if (n > MC_MAX_THREADS)
        return mc_set_error(err, MC_ERR_ARG, "num_threads must be <= %d, got %d", MC_MAX_THREADS, n);
    pthread_once(&init_once, init);
    pthread_mutex_lock(&cfg_mu);
    atomic_store(&n_threads, n);
    source = "set";
    pthread_mutex_unlock(&cfg_mu);
    return MC_OK;
}

/* --- the pool --- */

/* Claim and run tasks of the current job until none is left. Participant `self` (0 = the owner,
 * i + 1 = worker i) first claims the tasks of its own lane, in order, then those left in the
 * others. Jobs cut the same way (the pieces of an optimizer step, the row blocks of a GEMM) thus
 * give each core the same data step after step, which stays in its L2, while a participant that
 * is late or descheduled still has its tasks taken over. Tasks are claimed in increasing order
 * within a lane, and lane 0 (the owner's, who always runs) holds the lowest tasks, so a task that
 * waits for lower-numbered ones (GEMM packing) waits only for tasks that are claimed and running
 * or that the owner will claim. */
static void run_tasks(size_t self) {
    size_t parts = job_parts, n = job_n;
    for (size_t k = 0; k < parts; k++) {
        size_t p = (self + k) % parts, lo = p * n / parts, hi = (p + 1) * n / parts;
        for (;;) {
            size_t t = lo + atomic_fetch_add(&lane[p].next, 1);
            if (t >= hi) break;
            job_fn(job_ctx, t);
        }
    }
}

/* One round of a spin that began at `start`: pause, or yield once past PAUSE_NS. Returns 0 once
 * SPIN_NS has passed (time to sleep instead). */
static int spin_round(long long start, unsigned it, int *yielding) {
    if (!*yielding) {
        cpu_relax();
        if ((it & 63) != 0) return 1;
        long long dt = now_ns() - start;
        if (dt > PAUSE_NS) *yielding = 1;
        return dt <= SPIN_NS;
    }
    sched_yield();
    return now_ns() - start <= SPIN_NS;
}

static unsigned wait_ticket(worker *w, unsigned seen) {
    unsigned t;
    long long start = now_ns();
    int yielding = 0;
    for (unsigned it = 1;; it++) {
        t = atomic_load_explicit(&w->ticket, memory_order_acquire);
        if (t != seen) return t;
        if (!spin_round(start, it, &yielding)) break;
    }
    pthread_mutex_lock(&park_mu);
    while ((t = atomic_load_explicit(&w->ticket, memory_order_acquire)) == seen)
        pthread_cond_wait(&w->cv, &park_mu);
    pthread_mutex_unlock(&park_mu);
    return t;
}

/* Join job `gen` if it is still open; 1 when joined. */
static int enter_job(unsigned gen) {
    uint64_t w = atomic_load(&job_word);
    for (;;) {
        if ((unsigned)(w >> 32) != gen || (w & JOB_CLOSED)) return 0;
        if (atomic_compare_exchange_weak(&job_word, &w, w + 1)) return 1;
    }
}

static void leave_job(void) {
    uint64_t w = atomic_fetch_sub(&job_word, 1) - 1;
    if ((w & 0xffffffffu) == 0 && atomic_load(&owner_sleeping)) {
        pthread_mutex_lock(&park_mu);
        pthread_cond_broadcast(&done_cv);
        pthread_mutex_unlock(&park_mu);
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    unsigned seen = w->seen;
    for (;;) {
        seen = wait_ticket(w, seen);
        if (enter_job(seen)) {
            run_tasks((size_t)(w - pool) + 1);
            leave_job();
        }
    }
    return NULL;
}

/* Close the open job once no worker is inside (all tasks have been claimed by now, so a worker
 * inside is finishing one). */
static void close_job(void) {
    const uint64_t open = (uint64_t)job_gen << 32;
    long long start = now_ns();
    int yielding = 0;
    for (unsigned it = 1;; it++) {
        uint64_t expect = open;
        if (atomic_compare_exchange_strong(&job_word, &expect, open | JOB_CLOSED)) return;
        if (!spin_round(start, it, &yielding)) break;
    }
    atomic_store(&owner_sleeping, 1);
    pthread_mutex_lock(&park_mu);
    for (;;) {
        uint64_t expect = open;
        if (atomic_compare_exchange_strong(&job_word, &expect, open | JOB_CLOSED)) break;
        pthread_cond_wait(&done_cv, &park_mu);
    }
    pthread_mutex_unlock(&park_mu);
    atomic_store(&owner_sleeping, 0);
}

/* Create workers until there are `want` (job_mu held). Stops quietly at the first failure. */
static void grow_pool(int want) {
    if (want <= n_workers) return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  /* workers inherit it: signals go to other threads */
    pthread_attr_t attr;
    int have_attr = pthread_attr_init(&attr) == 0;
    if (have_attr) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, (size_t)1 << 20);
    }
    while (n_workers < want) {
        worker *w = &pool[n_workers];
        if (pthread_cond_init(&w->cv, NULL) != 0) break;
        atomic_store(&w->ticket, job_gen);
        w->seen = job_gen;
        if (pthread_create(&w->tid, have_attr ? &attr : NULL, worker_main, w) != 0) {
            pthread_cond_destroy(&w->cv);
            break;
        }
        if (!have_attr) pthread_detach(w->tid);
        n_workers++;
    }
    if (have_attr) pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Take the pool for a job of n_tasks on up to nt threads (the caller included): returns the number
 * of workers signalled, with job_mu held, or 0 (job_mu not held) when the tasks are the caller's
 * alone: one thread, no worker could be created, or another thread holds the pool. */
static int open_job(size_t n_tasks, size_t nt, mc_task_fn fn, void *ctx) {
    if (nt > n_tasks + 1) nt = n_tasks + 1;
    if (nt <= 1 || pthread_mutex_trylock(&job_mu) != 0) return 0;
    grow_pool((int)nt - 1);
    int nw = n_workers < (int)nt - 1 ? n_workers : (int)nt - 1;
    if (nw == 0) {
        pthread_mutex_unlock(&job_mu);
        return 0;
    }
    job_fn = fn;
    job_ctx = ctx;
    job_n = n_tasks;
    job_parts = (size_t)nw + 1;
    for (size_t p = 0; p < job_parts; p++) atomic_store(&lane[p].next, 0);
    job_gen++;
    atomic_store(&job_word, (uint64_t)job_gen << 32);  /* open, nobody inside */
    for (int i = 0; i < nw; i++) atomic_store_explicit(&pool[i].ticket, job_gen, memory_order_release);
    pthread_mutex_lock(&park_mu);
    for (int i = 0; i < nw; i++) pthread_cond_signal(&pool[i].cv);
    pthread_mutex_unlock(&park_mu);
    return nw;
}

/* Whether the calling thread has a background job open (it then holds job_mu). */
static _Thread_local int background_open;

int mc_parallel_begin(size_t n_tasks, mc_task_fn fn, void *ctx) {
    if (n_tasks == 0 || background_open) return 0;
    if (open_job(n_tasks, (size_t)mc_get_num_threads(), fn, ctx) == 0) return 0;
    background_open = 1;
    return 1;
}

void mc_parallel_end(void) {
    if (!background_open) return;
    /* claim every task not yet started: a claim made before this store stands and is finished
     * before close_job returns, one made after it finds its lane exhausted */
    for (size_t p = 0; p < job_parts; p++) atomic_store(&lane[p].next, job_n + 1);
    close_job();
    background_open = 0;
    pthread_mutex_unlock(&job_mu);
}

void mc_parallel_for(size_t n_tasks, mc_task_fn fn, void *ctx) {
    mc_parallel_for_n(n_tasks, MC_MAX_THREADS, fn, ctx);
}

void mc_parallel_for_n(size_t n_tasks, int max_threads, mc_task_fn fn, void *ctx) {
    if (n_tasks == 0) return;
    mc_parallel_end();
    size_t nt = (size_t)mc_get_num_threads();
    if (max_threads < 1) max_threads = 1;
    if (nt > (size_t)max_threads) nt = (size_t)max_threads;
    if (nt > n_tasks) nt = n_tasks;
    if (open_job(n_tasks, nt, fn, ctx) == 0) {
        for (size_t t = 0; t < n_tasks; t++) fn(ctx, t);
        return;
    }
    run_tasks(0);
    close_job();
    pthread_mutex_unlock(&job_mu);
}
