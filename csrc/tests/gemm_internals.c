/* C-level checks of the GEMM internals and the thread pool, built as one file that includes the
 * sources it tests (so it reaches static kernels and paths), hence not named test_*.c, which
 * test_c_core.py links against the library: tests/test_gemm.py builds and runs this one. With
 * -DMC_AVX512_SHIM -Icsrc/tests the AVX-512 kernels run on portable stand-ins for their
 * intrinsics, so their logic is checked on machines without AVX-512; without it they run only on
 * a CPU with AVX-512F. Built with ASan+UBSan, and with TSan for the pool ("threads" argument).
 * Prints one line per failed check and a summary; exit status 0 when everything passed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common.c"
#include "../cpu.c"
#include "../threads.c"
#include "../gemm.c"
#include "../gemm_avx2.c"
#include "../gemm_avx512.c"

static int n_checks, n_failed;

#define CHECK(cond, ...)                                          \
    do {                                                          \
        n_checks++;                                               \
        if (!(cond)) {                                            \
            n_failed++;                                           \
            printf("%s:%d: FAILED %s: ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                  \
            printf("\n");                                         \
        }                                                         \
    } while (0)

static unsigned rng_state = 12345u;
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* One GEMM with padded strides against a float64 reference, with the bound
 * |err| <= 2 (K+2) u (|alpha| |A||B| + |beta| |C|) elementwise, u = 2^-24; the padding of C
 * must be left alone. */
static void check_gemm(const mc_gemm_impl *im, int ta, int tb, size_t M, size_t N, size_t K,
                       float alpha, float beta) {
    size_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    size_t lda = ac + 3, ldb = bc + 1, ldc = N + 2;
    float *A = malloc((ar * lda + 1) * sizeof(float)), *B = malloc((br * ldb + 1) * sizeof(float));
    float *C = malloc((M * ldc + 1) * sizeof(float));
    double *R = malloc((M * N + 1) * sizeof(double)), *bound = malloc((M * N + 1) * sizeof(double));
    for (size_t i = 0; i < ar * lda; i++) A[i] = frand();
    for (size_t i = 0; i < br * ldb; i++) B[i] = frand();
    for (size_t i = 0; i < M * ldc; i++) C[i] = beta == 0.0f ? NAN : frand();
    float *C0 = malloc((M * ldc + 1) * sizeof(float));
    memcpy(C0, C, M * ldc * sizeof(float));
    for (size_t i = 0; i < M; i++)
        for (size_t j = 0; j < N; j++) {
            double acc = 0.0, mag = 0.0;
            for (size_t k = 0; k < K; k++) {
                double a = ta ? A[k * lda + i] : A[i * lda + k];
                double b = tb ? B[j * ldb + k] : B[k * ldb + j];
                acc += a * b;
                mag += fabs(a * b);
            }
            double c = beta == 0.0f ? 0.0 : (double)C[i * ldc + j];
            R[i * N + j] = alpha * acc + beta * c;
            bound[i * N + j] = 2.0 * (double)(K + 2) * ldexp(1.0, -24) *
                               (fabs(alpha) * mag + fabs(beta) * fabs(c)) + 1e-30;
        }
    gemm_run(im, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, NULL);
    size_t bad = 0, pad = 0;
    double worst = 0.0;
    for (size_t i = 0; i < M; i++) {
        for (size_t j = 0; j < N; j++) {
            double e = fabs((double)C[i * ldc + j] - R[i * N + j]);
            if (!(e <= bound[i * N + j])) bad++;
            if (e > worst) worst = e;
        }
        for (size_t j = N; j < ldc; j++)
            if (memcmp(&C[i * ldc + j], &C0[i * ldc + j], sizeof(float)) != 0) pad++;
    }
    CHECK(bad == 0 && pad == 0, "%s ta=%d tb=%d M=%zu N=%zu K=%zu alpha=%g beta=%g: %zu wrong "
          "(worst %.3g), %zu padding writes", im->name, ta, tb, M, N, K, alpha, beta, bad, worst, pad);
    free(A);
    free(B);
    free(C);
    free(C0);
    free(R);
    free(bound);
}

static void check_variant(const mc_gemm_impl *im) {
    /* edges of every register tile (6, 12 rows; 8, 16, 32 columns), one and several K chunks */
    static const size_t Ms[] = {1, 3, 5, 6, 7, 13, 25, 97}, Ns[] = {1, 7, 16, 17, 33, 65};
    static const size_t Ks[] = {1, 5, 64, 300};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
                for (size_t b = 0; b < sizeof Ns / sizeof Ns[0]; b++)
                    for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++)
                        check_gemm(im, ta, tb, Ms[a], Ns[b], Ks[c], a % 2 ? 1.0f : -0.75f,
                                   (a + b + c) % 3 == 0 ? 0.0f : (a + b + c) % 3 == 1 ? 1.0f : 0.5f);
    /* the MLP's shapes; several M blocks (M > mc) and K chunks; two N blocks (K*N > B_PACK_MAX) */
    check_gemm(im, 0, 0, 96, 128, 784, 1.0f, 0.0f);
    check_gemm(im, 1, 0, 784, 128, 96, 1.0f, 1.0f);
    check_gemm(im, 0, 1, 96, 128, 10, 1.0f, 0.0f);
    check_gemm(im, 0, 0, 150, 70, 300, 0.5f, 0.25f);
    check_gemm(im, 1, 1, 7, 1500, 700, -1.0f, 1.0f);
}

static void check_stack_path_k(const mc_gemm_impl *im, int ta, int tb, size_t K) {
    size_t M = 61, N = 77;
    float *A = malloc(M * K * sizeof(float)), *B = malloc(K * N * sizeof(float));
    float *C1 = malloc(M * N * sizeof(float)), *C2 = malloc(M * N * sizeof(float));
    for (size_t i = 0; i < M * K; i++) A[i] = frand();
    for (size_t i = 0; i < K * N; i++) B[i] = frand();
    for (size_t i = 0; i < M * N; i++) C1[i] = C2[i] = frand();
    size_t lda = ta ? M : K, ldb = tb ? K : N;
    gemm_run(im, ta, tb, M, N, K, 1.5f, A, lda, B, ldb, 0.5f, C1, N, NULL, NULL);
    gemm_job g = {.impl = im, .ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = 1.5f,
                  .beta = 0.5f, .A = A, .B = B, .C = C2, .lda = lda, .ldb = ldb, .ldc = N};
    plan_k(&g);
    gemm_on_stack(&g);
    CHECK(memcmp(C1, C2, M * N * sizeof(float)) == 0, "%s ta=%d tb=%d K=%zu: stack path differs",
          im->name, ta, tb, K);
    free(A);
    free(B);
    free(C1);
    free(C2);
}

/* The on-stack path (one register tile of each operand) gives the same bits as the blocked one,
 * with K summed in one run of chunks (K = 300) and in two halves (K = 600). */
static void check_stack_path(const mc_gemm_impl *im, int ta, int tb) {
    for (size_t K = 300; K <= 600; K += 300) check_stack_path_k(im, ta, tb, K);
}

/* --- thread pool --- */

typedef struct {
    atomic_int *hits;
    size_t n;
} hit_ctx;

static void hit_task(void *ctx, size_t t) {
    hit_ctx *h = ctx;
    atomic_fetch_add(&h->hits[t], 1);
}

/* Busy-waits for us microseconds. */
static void spin_us(long us) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do clock_gettime(CLOCK_MONOTONIC, &t1);
    while ((t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000 < us);
}

/* Uneven tasks: some spin for tens of microseconds, so workers join, leave and arrive late in
 * every order relative to the owner closing the job. */
static void slow_hit_task(void *ctx, size_t t) {
    hit_ctx *h = ctx;
    spin_us((long)((t * 7 + h->n) % 4) * 15);
    atomic_fetch_add(&h->hits[t], 1);
}

static void check_parallel_for(void) {
    atomic_int hits[64];
    for (int threads = 1; threads <= 4; threads++) {
        mc_set_num_threads(threads, NULL);
        for (size_t n = 0; n <= 64; n += 7) {
            for (size_t i = 0; i < 64; i++) atomic_store(&hits[i], 0);
            hit_ctx h = {hits, n};
            for (int rep = 0; rep < 50; rep++) mc_parallel_for(n, hit_task, &h);
            for (int rep = 0; rep < 3; rep++) mc_parallel_for_n(n, threads, slow_hit_task, &h);
            int ok = 1;
            for (size_t i = 0; i < 64; i++) ok &= atomic_load(&hits[i]) == (i < n ? 53 : 0);
            CHECK(ok, "threads=%d n=%zu: some task did not run exactly once per call", threads, n);
        }
    }
}

/* Background jobs: the caller's own work runs while workers take tasks; ending the job runs no
 * further task and waits for those started; whatever ran did so once, and the caller can run the
 * rest. A parallel job of the same caller ends the background job first. */
typedef struct {
    atomic_int *hits;
    atomic_int *flag;
} bg_ctx;

static void bg_task(void *ctx, size_t t) {
    bg_ctx *b = ctx;
    spin_us(2 * (long)(t % 5));
    atomic_fetch_add(&b->hits[t], 1);
    atomic_store(&b->flag[t], 1);
}

static atomic_int slow_started;

static void slow_5ms_task(void *ctx, size_t t) {
    hit_ctx *h = ctx;
    atomic_fetch_add(&slow_started, 1);
    spin_us(5000);
    atomic_fetch_add(&h->hits[t], 1);
}

static void check_background(void) {
    atomic_int hits[40], flag[40];
    for (int threads = 1; threads <= 3; threads++) {
        mc_set_num_threads(threads, NULL);
        for (long own_us = 0; own_us <= 200; own_us += 50) {
            for (int how = 0; how < 2; how++) {
                for (size_t i = 0; i < 40; i++) atomic_store(&hits[i], 0), atomic_store(&flag[i], 0);
                bg_ctx b = {hits, flag};
                int started = mc_parallel_begin(40, bg_task, &b);
                CHECK(started == (threads > 1), "threads=%d: begin returned %d", threads, started);
                CHECK(!mc_parallel_begin(40, bg_task, &b), "a second background job was started");
                spin_us(own_us);
                if (how == 0) {
                    mc_parallel_end();
                } else {  /* a parallel job of this thread ends it, then runs whole */
                    atomic_int other[8];
                    for (size_t i = 0; i < 8; i++) atomic_store(&other[i], 0);
                    hit_ctx h = {other, 8};
                    mc_parallel_for(8, hit_task, &h);
                    int all = 1;
                    for (size_t i = 0; i < 8; i++) all &= atomic_load(&other[i]) == 1;
                    CHECK(all, "threads=%d: a parallel job after a background job missed tasks", threads);
                }
                mc_parallel_end();  /* a no-op once ended */
                int after[40], ok = 1;
                for (size_t i = 0; i < 40; i++) after[i] = atomic_load(&hits[i]);
                spin_us(100);  /* nothing runs once the job has ended */
                for (size_t i = 0; i < 40; i++) ok &= atomic_load(&hits[i]) == after[i] && after[i] <= 1 &&
                                                     atomic_load(&flag[i]) == after[i];
                CHECK(ok, "threads=%d: a task ran twice or after the end of its background job", threads);
                if (threads == 1) CHECK(after[0] + after[39] == 0, "nothing runs when begin returns 0");
            }
        }
    }
    /* ending cuts the job short: of 40 tasks of 5 ms, ended while the worker runs its first, the
     * worker finishes that one and starts no other */
    mc_set_num_threads(2, NULL);
    for (size_t i = 0; i < 40; i++) atomic_store(&hits[i], 0);
    atomic_store(&slow_started, 0);
    hit_ctx slow = {hits, 40};
    CHECK(mc_parallel_begin(40, slow_5ms_task, &slow), "no background job on two threads");
    while (atomic_load(&slow_started) == 0) spin_us(10);
    mc_parallel_end();
    int ran = 0;
    for (size_t i = 0; i < 40; i++) ran += atomic_load(&hits[i]);
    CHECK(ran == 1, "%d tasks ran in a background job ended during its first task", ran);
}

/* Two threads calling GEMMs at once: one gets the pool, the other runs alone; both correct. */
static void *gemm_thread(void *arg) {
    float *out = arg;
    size_t M = 96, N = 128, K = 300;
    float *A = malloc(M * K * sizeof(float)), *B = malloc(K * N * sizeof(float));
    for (size_t i = 0; i < M * K; i++) A[i] = (float)(i % 7) - 3.0f;
    for (size_t i = 0; i < K * N; i++) B[i] = (float)(i % 5) - 2.0f;
    for (int rep = 0; rep < 20; rep++)
        mc_gemm(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, out, N);
    free(A);
    free(B);
    return NULL;
}

static void check_concurrent_callers(void) {
    mc_set_num_threads(2, NULL);
    size_t n = 96 * 128;
    float *c1 = calloc(n, sizeof(float)), *c2 = calloc(n, sizeof(float)), *c3 = calloc(n, sizeof(float));
    pthread_t t1, t2;
    pthread_create(&t1, NULL, gemm_thread, c1);
    pthread_create(&t2, NULL, gemm_thread, c2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    mc_set_num_threads(1, NULL);
    gemm_thread(c3);
    /* small integers: exact in float whatever the order, so all three agree bit for bit */
    CHECK(memcmp(c1, c3, n * sizeof(float)) == 0 && memcmp(c2, c3, n * sizeof(float)) == 0,
          "concurrent GEMMs disagree with the serial one");
    free(c1);
    free(c2);
    free(c3);
}

static void check_thread_invariance(const mc_gemm_impl *im) {
    size_t M = 100, N = 90, K = 300;
    float *A = malloc(M * K * sizeof(float)), *B = malloc(K * N * sizeof(float));
    float *ref = malloc(M * N * sizeof(float)), *C = malloc(M * N * sizeof(float));
    for (size_t i = 0; i < M * K; i++) A[i] = frand();
    for (size_t i = 0; i < K * N; i++) B[i] = frand();
    mc_set_num_threads(1, NULL);
    gemm_run(im, 1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, ref, N, NULL, NULL);
    for (int t = 2; t <= 5; t++) {
        mc_set_num_threads(t, NULL);
        gemm_run(im, 1, 0, M, N, K, 1.0f, A, M, B, N, 0.0f, C, N, NULL, NULL);
        CHECK(memcmp(ref, C, M * N * sizeof(float)) == 0, "%s: %d threads differ from 1", im->name, t);
    }
    mc_set_num_threads(2, NULL);
    free(A);
    free(B);
    free(ref);
    free(C);
}

/* The `then` hook sees every element of C exactly once, holding its final value: on the blocked
 * path with and without K halves, packed and in place, the few-rows path, K = 0 and the on-stack
 * path. */
typedef struct {
    size_t N;
    float *seen;
    int *visits;
} then_ctx;

static void then_copy(void *ctx, float *C, size_t ldc, size_t i0, size_t i1, size_t j0, size_t j1) {
    then_ctx *t = ctx;
    for (size_t i = i0; i < i1; i++)
        for (size_t j = j0; j < j1; j++) {
            t->seen[i * t->N + j] = C[i * ldc + j];
            t->visits[i * t->N + j]++;
        }
}

static void check_then(const mc_gemm_impl *im) {
    static const size_t shapes[][5] = {  /* ta, tb, M, N, K */
        {0, 0, 128, 128, 784}, {0, 1, 60, 70, 900}, {1, 0, 784, 128, 128}, {0, 0, 3, 40, 300},
        {0, 0, 50, 10, 128}, {0, 0, 5, 7, 0},
    };
    mc_set_num_threads(2, NULL);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int ta = (int)shapes[s][0], tb = (int)shapes[s][1];
        size_t M = shapes[s][2], N = shapes[s][3], K = shapes[s][4];
        float *A = malloc((M * K + 1) * sizeof(float)), *B = malloc((K * N + 1) * sizeof(float));
        float *C = malloc(M * N * sizeof(float)), *seen = malloc(M * N * sizeof(float));
        int *visits = calloc(M * N, sizeof(int));
        for (size_t i = 0; i < M * K; i++) A[i] = frand();
        for (size_t i = 0; i < K * N; i++) B[i] = frand();
        for (size_t i = 0; i < M * N; i++) C[i] = frand();
        then_ctx t = {N, seen, visits};
        mc_gemm_then then = {then_copy, &t};
        size_t lda = ta ? M : (K ? K : 1), ldb = tb ? (K ? K : 1) : N;
        for (int stack = 0; stack < 2; stack++) {
            memset(visits, 0, M * N * sizeof(int));
            if (stack && K) {
                gemm_job g = {.impl = im, .ta = ta, .tb = tb, .M = M, .N = N, .K = K, .alpha = 1.0f,
                              .beta = 0.5f, .A = A, .B = B, .C = C, .lda = lda, .ldb = ldb, .ldc = N,
                              .then = &then};
                plan_k(&g);
                gemm_on_stack(&g);
            } else {
                gemm_run(im, ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.5f, C, N, &then, NULL);
            }
            int once = 1;
            for (size_t i = 0; i < M * N; i++) once &= visits[i] == 1;
            CHECK(once, "%s %zux%zux%zu stack=%d: an element was not visited exactly once", im->name, M, N, K,
                  stack);
            CHECK(memcmp(seen, C, M * N * sizeof(float)) == 0, "%s %zux%zux%zu stack=%d: a block was visited "
                  "before its final value", im->name, M, N, K, stack);
        }
        free(A);
        free(B);
        free(C);
        free(seen);
        free(visits);
    }
}

/* The zero-skipping path against the dense one, bit for bit: A mostly zeros (+0 and -0, with
 * NaN and infinities in some rows), A in place and transposed, tails of every tile and column
 * block, one and several K chunks and the K halves, alpha/beta, and B with and without an
 * infinity and a NaN (where the path must keep every term). Also that the path is taken. */
static void check_sparse_case(const mc_gemm_impl *im, int ta, size_t M, size_t N, size_t K, float alpha,
                              float beta, int special) {
    size_t ar = ta ? K : M, ac = ta ? M : K, lda = ac + 1, ldb = N + 3, ldc = N + 2;
    float *A = calloc(ar * lda + 1, sizeof(float)), *B = malloc((K * ldb + 1) * sizeof(float));
    float *C1 = malloc((M * ldc + 1) * sizeof(float)), *C2 = malloc((M * ldc + 1) * sizeof(float));
    for (size_t i = 0; i < ar * lda; i++) {
        float r = frand();
        A[i] = r > 0.35f ? r : r < -0.45f ? -0.0f : 0.0f;  /* ~15% nonzero, some negative zeros */
    }
    if (special & 1) {
        A[lda + 2] = NAN;
        A[(ar - 1) * lda] = INFINITY;
    }
    for (size_t i = 0; i < K * ldb; i++) B[i] = frand();
    if (special & 2) {
        B[(K / 2) * ldb + N / 2] = INFINITY;
        B[(K - 1) * ldb] = NAN;
    }
    for (size_t i = 0; i < M * ldc; i++) C1[i] = C2[i] = frand();
    gemm_job g = {.impl = im->narrow && N <= im->narrow->nr ? im->narrow : im, .ta = ta, .M = M, .N = N,
                  .K = K, .A = A, .lda = lda, .ldb = ldb};
    g.small = g.impl->small && M <= g.impl->small_m_max;
    plan_k(&g);
    int taken = take_sparse(&g, -1);
    mc_gemm_set_sparse(0);
    gemm_run(im, ta, 0, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc, NULL, NULL);
    mc_gemm_set_sparse(1);
    gemm_run(im, ta, 0, M, N, K, alpha, A, lda, B, ldb, beta, C2, ldc, NULL, NULL);
    if (ac >= 98)  /* a sample of >= 8 x 98 elements: far from the 70% line at ~85% zeros */
        CHECK(taken == !g.small, "%s ta=%d %zux%zux%zu: sparse path taken=%d", im->name, ta, M, N, K, taken);
    CHECK(memcmp(C1, C2, M * ldc * sizeof(float)) == 0, "%s ta=%d M=%zu N=%zu K=%zu alpha=%g beta=%g special=%d: "
          "the sparse path differs from the dense one", im->name, ta, M, N, K, alpha, beta, special);
    free(A);
    free(B);
    free(C1);
    free(C2);
}

static void check_sparse(const mc_gemm_impl *im) {
    static const size_t Ms[] = {5, 33, 97, 130}, Ns[] = {1, 10, 17, 64, 100, 128, 130, 200};
    static const size_t Ks[] = {7, 98, 300, 784};
    int n = 0;
    for (int ta = 0; ta < 2; ta++)
        for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof Ns[0]; b++)
                for (size_t c = 0; c < sizeof Ks / sizeof Ks[0]; c++, n++)
                    check_sparse_case(im, ta, Ms[a], Ns[b], Ks[c], n % 2 ? 1.0f : -0.75f,
                                      n % 3 == 0 ? 0.0f : n % 3 == 1 ? 1.0f : 0.5f, n % 4);
    check_sparse_case(im, 0, 128, 128, 784, 1.0f, 0.0f, 0);  /* the first layer's forward: K halves */
    check_sparse_case(im, 1, 784, 128, 128, 1.0f, 0.0f, 0);  /* and its weight gradient */
    check_sparse_case(im, 0, 1000, 128, 784, 1.0f, 0.0f, 3);
    /* predict's larger batches: ragged column blocks, the K halves */
    static const size_t Np[] = {10, 17, 100, 130};
    for (int b = 0; b < 4; b++) {
        check_sparse_case(im, 0, 256, Np[b], 784, -0.75f, 0.5f, b);
        check_sparse_case(im, 0, 600, Np[b], 300, 1.0f, b % 2 ? 1.0f : 0.0f, 3 - b);
    }
    int threads = mc_get_num_threads();  /* enough tasks that they split the columns too */
    mc_set_num_threads(16, NULL);
    check_sparse_case(im, 0, 256, 128, 784, 1.0f, 0.0f, 0);
    check_sparse_case(im, 0, 256, 100, 300, 0.5f, 1.0f, 1);
    mc_set_num_threads(threads, NULL);
}

/* mc_gemm_rows: a product computed block of rows by block of rows, each block planned for the
 * whole product, gives the whole product's bits: blocks of 1 row (alone, the few-rows path), of 5
 * and of 12, a K split into halves (M x 128 <= 65536) or not, mostly-zero and dense A, a narrow N,
 * and B with an infinity where A is all zero, told finite or not (0 * inf must stay NaN). */
static void check_rows_case(const mc_gemm_impl *im, size_t M, size_t N, size_t K, size_t block, int zeros,
                            int b_inf) {
    float *A = malloc(M * K * sizeof(float)), *B = malloc(K * N * sizeof(float));
    float *C1 = malloc(M * N * sizeof(float)), *C2 = malloc(M * N * sizeof(float));
    for (size_t i = 0; i < M * K; i++) {
        float r = frand();
        A[i] = zeros && r < 0.6f ? 0.0f : r;
    }
    for (size_t i = 0; i < K * N; i++) B[i] = frand();
    if (b_inf) {
        for (size_t i = 0; i < M; i++) A[i * K + 3] = 0.0f;
        B[3 * N + N / 2] = INFINITY;
    }
    gemm_run(im, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C1, N, NULL, NULL);
    mc_gemm_rows_plan plan = {M, !b_inf, zeros ? mc_gemm_skips_zeros(M, N, K, A, K) : -1};  /* B: frand() */
    for (size_t i = 0; i < M; i += block) {
        size_t rows = M - i < block ? M - i : block;
        gemm_run(im, 0, 0, rows, N, K, 1.0f, A + i * K, K, B, N, 0.0f, C2 + i * N, N, NULL, &plan);
    }
    CHECK(memcmp(C1, C2, M * N * sizeof(float)) == 0, "%s %zux%zux%zu blocks of %zu zeros=%d inf=%d: the rows "
          "differ from the whole product", im->name, M, N, K, block, zeros, b_inf);
    if (b_inf) CHECK(isnan(C2[N / 2]), "%s %zux%zux%zu: 0 * inf left out", im->name, M, N, K);
    free(A);
    free(B);
    free(C1);
    free(C2);
}

static void check_rows(const mc_gemm_impl *im) {
    static const size_t blocks[] = {1, 5, 12, 37};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
        for (int zeros = 0; zeros < 2; zeros++) {
            check_rows_case(im, 25, 128, 784, blocks[b], zeros, 0);
            check_rows_case(im, 96, 128, 784, blocks[b], zeros, b % 2);
            check_rows_case(im, 600, 128, 784, blocks[b] * 10, zeros, 0);
            check_rows_case(im, 50, 10, 128, blocks[b], zeros, b % 2);
            check_rows_case(im, 7, 17, 64, blocks[b], zeros, 0);
        }
}

int main(int argc, char **argv) {
    int threads_only = argc > 1 && strcmp(argv[1], "threads") == 0;
    mc_error err = {0};
    CHECK(mc_set_num_threads(0, &err) == MC_ERR_ARG && strstr(err.msg, ">= 1, got 0"), "%s", err.msg);
    CHECK(mc_set_num_threads(MC_MAX_THREADS + 1, &err) == MC_ERR_ARG, "%s", err.msg);
    check_parallel_for();
    check_background();
    check_concurrent_callers();
    check_thread_invariance(&impl_portable);
    if (!threads_only) {
        check_variant(&impl_portable);
        check_then(&impl_portable);
        check_stack_path(&impl_portable, 0, 0);
        check_stack_path(&impl_portable, 1, 1);
        check_rows(&impl_portable);
        if (mc_kernel_supported(MC_KERNEL_AVX2)) {
            check_variant(&mc_gemm_impl_avx2);
            check_then(&mc_gemm_impl_avx2);
            check_stack_path(&mc_gemm_impl_avx2, 0, 1);
            check_stack_path(&mc_gemm_impl_avx2, 1, 0);
            check_thread_invariance(&mc_gemm_impl_avx2);
            check_sparse(&mc_gemm_impl_avx2);
            check_rows(&mc_gemm_impl_avx2);
        }
#ifdef MC_AVX512_SHIM
        int run512 = 1;
#else
        int run512 = mc_kernel_supported(MC_KERNEL_AVX512);
#endif
        if (run512) {
            check_variant(&mc_gemm_impl_avx512);
            check_then(&mc_gemm_impl_avx512);
            check_stack_path(&mc_gemm_impl_avx512, 0, 0);
            check_stack_path(&mc_gemm_impl_avx512, 1, 1);
            check_thread_invariance(&mc_gemm_impl_avx512);
            check_sparse(&mc_gemm_impl_avx512);
            check_rows(&mc_gemm_impl_avx512);
        }
        printf("avx512 kernels %s\n", run512 ? "checked" : "skipped (no AVX-512F, no shim)");
    }
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed != 0;
}
