/* GEMM driver: variant dispatch, packing, cache blocking and the split over threads, plus the
 * portable kernels (plain C with compiler-generic vectors, no ISA flags). The AVX2 and AVX-512 kernels live in
 * gemm_avx2.c / gemm_avx512.c. Threads only ever split C into independent blocks; every C element
 * is reduced over K in an order fixed by the shape and the variant alone, so results are the same
 * for any thread count. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "gemm.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cpu.h"
#include "gemm_impl.h"
#include "threads.h"

/* A GEMM uses one thread per FLOPS_PER_THREAD flops (at most mc_get_num_threads()), so 2 threads
 * from 8e5 flops: below that, a second thread gains little when its core is idle and loses when
 * the core is busy elsewhere (bench/RESULTS.md, "Design measurements"). */
#define FLOPS_PER_THREAD 4.0e5
/* Blocks of C per thread: claimed dynamically, so a thread whose core is busy elsewhere takes
 * fewer of them. */
#define TASKS_PER_THREAD 4
/* A task's K chunk of packed B up to this size is read from L2 (half of a 512 KiB L2) while
 * op(A) is read in place; larger ones take the packed-A (BLIS) loop order. */
#define DIRECT_B_BYTES ((size_t)256 << 10)
/* Products with a long K and a small C (the forward of a 784-input layer on a batch: 128 x 128 x
 * 784) are summed as two halves of K, C = (chunks of the first half) + (chunks of the second half),
 * the second half into scratch and added at the end. A shape rule like the K chunks, so the bits
 * do not depend on the thread count; what it buys is placement: with two threads each one reads
 * only its half of B (the layer's weights) and of op(A), and a weight matrix updated half by each
 * core stays in that core's L2 instead of crossing between cores every step (bench/RESULTS.md,
 * "Design measurements"). */
#define KSPLIT_MIN_K 512
#define KSPLIT_MAX_MN 65536

#define SPARSE_SAMPLE_ROWS 8

/* Largest packed B (floats) per N block: all of K times as many columns as fit. */
#define B_PACK_MAX ((size_t)1 << 20)

/* Largest tile and K chunk over all variants: sizes the on-stack panels of the fallback path. */
#define MAX_MR 16
#define MAX_NR 32
#define MAX_KC 256

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }
static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

/* --- portable variant --- */

/* Generic 4-float vectors (GCC/Clang): the compiler lowers them to whatever the target has (SSE
 * on x86-64, NEON on arm64, scalar code elsewhere) without any ISA flag. Written out rather than
 * left to the auto-vectoriser, whose output for this loop nest swung 6x between -O2 and
 * -O2 -ftree-vectorize (it turned the k loop into an in-order reduction). Each lane is the same
 * IEEE a*b, then +, as the scalar code (ISO C mode keeps -ffp-contract=off), so the portable
 * variant rounds every product and every sum separately and differs from the FMA variants in the
 * last bits. */
typedef float v4f __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline v4f v4_splat(float x) { return (v4f){x, x, x, x}; }

/* 4 x 12 tile: 12 vector accumulators + 3 B vectors + 1 broadcast = the 16 SSE registers, which
 * keeps its speed at every optimisation level where wider tiles spilled at some (bench/RESULTS.md,
 * "Design measurements"). */
#define PMR 4
#define PNR 12
#define PSN 16  /* columns per step of the few-rows path */

static void micro_portable(size_t kc, const float *restrict a, size_t a_rs, size_t a_ks,
                           const float *restrict bp, size_t b_ks, float *c, size_t ldc, size_t m,
                           size_t n, float alpha, float beta) {
    v4f acc[PMR][PNR / 4];
#pragma GCC unroll 4
    for (int r = 0; r < PMR; r++)
#pragma GCC unroll 3
        for (int q = 0; q < PNR / 4; q++) acc[r][q] = v4_splat(0.0f);
    for (size_t k = 0; k < kc; k++) {
        const float *ak = a + k * a_ks, *b = bp + k * b_ks;
        v4f bv[PNR / 4];
#pragma GCC unroll 3
        for (int q = 0; q < PNR / 4; q++) bv[q] = v4_load(b + 4 * q);
#pragma GCC unroll 4
        for (int r = 0; r < PMR; r++) {
            v4f x = v4_splat(ak[(size_t)r * a_rs]);
#pragma GCC unroll 3
            for (int q = 0; q < PNR / 4; q++) acc[r][q] += x * bv[q];
        }
    }
    /* acc is only ever indexed by constants, so it lives in registers; the ragged-edge loops
     * below index a copy */
    float out[PMR][PNR];
#pragma GCC unroll 4
    for (int r = 0; r < PMR; r++)
#pragma GCC unroll 3
        for (int q = 0; q < PNR / 4; q++) memcpy(&out[r][4 * q], &acc[r][q], sizeof(v4f));
    for (size_t r = 0; r < m; r++) {
        float *cr = c + r * ldc;
        if (beta == 0.0f)
            for (size_t j = 0; j < n; j++) cr[j] = alpha * out[r][j];
        else
            for (size_t j = 0; j < n; j++) cr[j] = alpha * out[r][j] + beta * cr[j];
    }
}

/* Few rows, B untransposed: stream B's rows straight from memory (packing B would cost as much
 * as the multiply). 16 columns at a time in vectors, the rest one by one; either way each element
 * is acc = sum_k a*b in k order, then the same epilogue as micro_portable. */
static void small_portable(int trans_a, size_t M, size_t N, size_t K, float alpha, const float *A,
                           size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    for (size_t i = 0; i < M; i++) {
        float *ci = C + i * ldc;
        size_t j = 0;
        for (; j + PSN <= N; j += PSN) {
            v4f acc[PSN / 4];
#pragma GCC unroll 4
            for (int q = 0; q < PSN / 4; q++) acc[q] = v4_splat(0.0f);
            for (size_t k = 0; k < K; k++) {
                v4f x = v4_splat(trans_a ? A[k * lda + i] : A[i * lda + k]);
                const float *b = B + k * ldb + j;
#pragma GCC unroll 4
                for (int q = 0; q < PSN / 4; q++) acc[q] += x * v4_load(b + 4 * q);
            }
            float out[PSN];
#pragma GCC unroll 4
            for (int q = 0; q < PSN / 4; q++) memcpy(&out[4 * q], &acc[q], sizeof(v4f));
            if (beta == 0.0f)
                for (int t = 0; t < PSN; t++) ci[j + t] = alpha * out[t];
            else
                for (int t = 0; t < PSN; t++) ci[j + t] = alpha * out[t] + beta * ci[j + t];
        }
        for (; j < N; j++) {
            float acc = 0.0f;
            for (size_t k = 0; k < K; k++)
                acc += (trans_a ? A[k * lda + i] : A[i * lda + k]) * B[k * ldb + j];
            ci[j] = beta == 0.0f ? alpha * acc : alpha * acc + beta * ci[j];
        }
    }
}

static const mc_gemm_impl impl_portable = {
    "portable", PMR, PNR, 256, 120, 1024, 5, micro_portable, small_portable, NULL, NULL, NULL, NULL, 0,
};

/* --- variant selection (once) --- */

static const mc_gemm_impl *const impls[MC_KERNEL_COUNT] = {
    &impl_portable, &mc_gemm_impl_avx2, &mc_gemm_impl_avx512,
};
static const char *const kernel_names[MC_KERNEL_COUNT] = {"portable", "avx2", "avx512"};

static pthread_once_t kernel_once = PTHREAD_ONCE_INIT;
static int kernel_ok[MC_KERNEL_COUNT];
static mc_kernel kernel_active = MC_KERNEL_PORTABLE;
static char kernel_req[32];
static int kernel_req_set;
static atomic_int sparse_on;  /* mc_gemm_sparse */
static pthread_key_t scratch_key;
static int scratch_key_ok;

typedef struct {
    float *p[3];
    size_t n[3];  /* floats */
} scratch;

static void scratch_free(void *arg) {
    scratch *s = arg;
    for (int i = 0; i < 3; i++) free(s->p[i]);
    free(s);
}

/* A variant's tile and K chunk must fit the on-stack panels (a build-time property). */
static int fits_stack(const mc_gemm_impl *im) {
    return im->micro != NULL && im->mr <= MAX_MR && im->nr <= MAX_NR && im->kc <= MAX_KC &&
           im->mr > 0 && im->nr > 0 && im->kc > 0;
}

static void kernel_init(void) {
    kernel_ok[MC_KERNEL_PORTABLE] = fits_stack(&impl_portable);
    kernel_ok[MC_KERNEL_AVX2] = fits_stack(&mc_gemm_impl_avx2) && mc_cpu_has_avx2_fma();
    kernel_ok[MC_KERNEL_AVX512] = fits_stack(&mc_gemm_impl_avx512) && mc_cpu_has_avx512f();
    kernel_active = kernel_ok[MC_KERNEL_AVX512] ? MC_KERNEL_AVX512
                    : kernel_ok[MC_KERNEL_AVX2] ? MC_KERNEL_AVX2
                                                : MC_KERNEL_PORTABLE;
    const char *env = getenv("MNISTC_KERNEL");
    if (env) {
        kernel_req_set = 1;
        strncpy(kernel_req, env, sizeof kernel_req - 1);
        for (int k = 0; k < MC_KERNEL_COUNT; k++)
            if (strcasecmp(env, kernel_names[k]) == 0 && kernel_ok[k]) kernel_active = (mc_kernel)k;
    }
    const char *sp = getenv("MNISTC_SPARSE");
    atomic_store(&sparse_on, !(sp && strcmp(sp, "0") == 0));
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

int mc_gemm_sparse(void) {
    pthread_once(&kernel_once, kernel_init);
    return atomic_load(&sparse_on);
}

int mc_gemm_set_sparse(int on) {
    pthread_once(&kernel_once, kernel_init);
    return atomic_exchange(&sparse_on, on != 0);
}

const char *mc_kernel_name(mc_kernel k) {
    return (unsigned)k < MC_KERNEL_COUNT ? kernel_names[k] : NULL;
}

int mc_kernel_supported(mc_kernel k) {
    pthread_once(&kernel_once, kernel_init);
    return (unsigned)k < MC_KERNEL_COUNT && kernel_ok[k];
}

mc_kernel mc_kernel_active(void) {
    pthread_once(&kernel_once, kernel_init);
    return kernel_active;
}

const char *mc_kernel_requested(void) {
    pthread_once(&kernel_once, kernel_init);
    return kernel_req_set ? kernel_req : NULL;
}

/* Scratch of the calling thread, kept between calls (a training run calls the same shapes
 * thousands of times) and freed when the thread exits: slot 0 holds packed A blocks, slot 1 the
 * packed B of a whole call, slot 2 the second K half's sums (slots 1 and 2 are owned by the
 * calling thread and used by its helpers). It is a cache, not a per-call allocation, so it uses
 * malloc directly; if it cannot grow, the caller takes the on-stack path, which gives the same
 * bits. */
static float *scratch_slot(int slot, size_t n) {
    if (!scratch_key_ok) return NULL;
    scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
    }
    if (s->n[slot] < n) {
        free(s->p[slot]);
        s->p[slot] = NULL;
        s->n[slot] = 0;
        size_t want = (n + 16383) & ~(size_t)16383;  /* 64 KiB steps: few regrowths */
        void *p = NULL;
        if (want > ((size_t)-1) / sizeof(float) || posix_memalign(&p, 64, want * sizeof(float)) != 0)
            return NULL;
        s->p[slot] = p;
        s->n[slot] = want;
    }
    return s->p[slot];
}

static float *thread_scratch(size_t n) { return scratch_slot(0, n); }
static float *thread_scratch_b(size_t n) { return scratch_slot(1, n); }
static float *thread_scratch_c(size_t n) { return scratch_slot(2, n); }

/* --- packing --- */

typedef struct {
    const mc_gemm_impl *impl;
    int ta, tb, small;
    size_t M, N, K, kc;     /* kc: length of every K chunk but the last */
    size_t plan_m;          /* M of the whole product when this is a block of its rows (mc_gemm_rows) */
    float alpha, beta;
    const float *A, *B;
    float *C;
    size_t lda, ldb, ldc;
    /* The current N block: columns [j0, j0 + ncur) of C, with op(B)[:, block] packed for all of
     * K at bp: the chunk starting at row pc is bp + pc*ncpad, panels of nr columns within it. */
    size_t j0, ncur, ncpad;
    float *bp;
    /* op(B) = B with N a multiple of nr: every column panel is nr contiguous floats per row of B,
     * so the micro-kernel reads B where it lies (row stride ldb) and nothing is packed. */
    int b_in_place;
    /* Tasks 0 .. n_pack-1 pack B (pack_step column panels each); the others each compute a block
     * of a gm x gn grid over the tm x tn tiles (mu x nu elements each) of C, block (t - n_pack),
     * the tiles dealt evenly (block sizes differ by at most one tile). */
    size_t n_pack, pack_step, tm, tn, gm, gn, mu, nu;
    atomic_size_t packed;   /* packing tasks finished; compute tasks start when all are */
    /* The K halves (KSPLIT_*): chunks starting below k_mid go to C, the rest to P (M x N, row
     * stride N), added to C at the end; k_mid == K when there is no split. The compute tasks of
     * half 1 follow those of half 0 (n_compute each). */
    size_t k_mid, n_compute;
    float *P;
    const mc_gemm_then *then;  /* NULL, or run on each block once final */
    int sparse;                /* compute with impl->sparse or sparse_t (B read in place) */
    /* Per K half, whether its rows of B are finite, found by the first task that needs it and
     * shared by the others: 0 not known yet, 1 finite, 2 not (every term must then run). */
    atomic_int b_finite[2];
} gemm_job;

static void then_block(const gemm_job *g, size_t i0, size_t i1, size_t j0, size_t j1) {
    if (g->then && i0 < i1 && j0 < j1) g->then->fn(g->then->ctx, g->C, g->ldc, i0, i1, j0, j1);
}

/* Where the K chunks of `half` go: their range, the output and its row stride, and the beta of
 * the half's first chunk (the caller's beta for half 0; P starts from zero). */
typedef struct {
    size_t k0, k1;
    float *out;
    size_t ld;
    float beta;
} k_half;

static k_half half_of(const gemm_job *g, int half) {
    if (half == 0) return (k_half){0, g->k_mid, g->C, g->ldc, g->beta};
    return (k_half){g->k_mid, g->K, g->P, g->N, 0.0f};
}

typedef float v4f __attribute__((vector_size(16)));

/* dst[k*w + r] = src[r*rs + k] for r, k < 4: a 4x4 block transposed in registers. */
static inline __attribute__((always_inline)) void transpose_4x4(const float *src, size_t rs, float *restrict dst,
                                                                size_t w) {
    v4f a, b, c, d;
    memcpy(&a, src, sizeof a);
    memcpy(&b, src + rs, sizeof b);
    memcpy(&c, src + 2 * rs, sizeof c);
    memcpy(&d, src + 3 * rs, sizeof d);
    v4f ab01 = __builtin_shufflevector(a, b, 0, 4, 1, 5), ab23 = __builtin_shufflevector(a, b, 2, 6, 3, 7);
    v4f cd01 = __builtin_shufflevector(c, d, 0, 4, 1, 5), cd23 = __builtin_shufflevector(c, d, 2, 6, 3, 7);
    v4f k0 = __builtin_shufflevector(ab01, cd01, 0, 1, 4, 5), k1 = __builtin_shufflevector(ab01, cd01, 2, 3, 6, 7);
    v4f k2 = __builtin_shufflevector(ab23, cd23, 0, 1, 4, 5), k3 = __builtin_shufflevector(ab23, cd23, 2, 3, 6, 7);
    memcpy(dst, &k0, sizeof k0);
    memcpy(dst + w, &k1, sizeof k1);
    memcpy(dst + 2 * w, &k2, sizeof k2);
    memcpy(dst + 3 * w, &k3, sizeof k3);
}

/* One panel of w rows or columns: dst[k*w + r] = src[r*rs + k*ks] for r < n (n <= w), k < kc,
 * and zero for n <= r < w. Inlined with w constant, so the copies are unrolled and vectorised. */
static inline __attribute__((always_inline)) void pack_panel(const size_t w, const float *src,
                                                             size_t rs, size_t ks, size_t n,
                                                             size_t kc, float *restrict dst) {
    if (n == w && rs == 1) {          /* each k is w consecutive floats: a straight copy */
        /* a memcpy of constant size is inlined as vector moves; the equivalent loop GCC turns
         * into a libc memmove call per k (128 bytes each), which cost more than the copying */
        for (size_t k = 0; k < kc; k++) memcpy(dst + k * w, src + k * ks, w * sizeof *dst);
    } else if (n == w && ks == 1) {   /* w rows each contiguous in k: transposed 4x4 at a time */
        size_t k = 0;
        if (w % 4 == 0)
            for (; k + 4 <= kc; k += 4)
                for (size_t r = 0; r < w; r += 4) transpose_4x4(src + r * rs + k, rs, dst + k * w + r, w);
        for (; k < kc; k++)
            for (size_t r = 0; r < w; r++) dst[k * w + r] = src[r * rs + k];
    } else {                          /* ragged edge */
        for (size_t k = 0; k < kc; k++) {
            for (size_t r = 0; r < n; r++) dst[k * w + r] = src[r * rs + k * ks];
            for (size_t r = n; r < w; r++) dst[k * w + r] = 0.0f;
        }
    }
}

static void pack_panels(size_t w, const float *src, size_t rs, size_t ks, size_t n, size_t kc,
                        float *dst) {
    for (size_t p = 0; p < n; p += w) {
        size_t nn = min_sz(w, n - p);
        const float *s = src + p * rs;
        float *d = dst + p * kc;
        switch (w) {  /* the widths of the variants' register tiles */
        case 4: pack_panel(4, s, rs, ks, nn, kc, d); break;
        case 6: pack_panel(6, s, rs, ks, nn, kc, d); break;
        case 8: pack_panel(8, s, rs, ks, nn, kc, d); break;
        case 12: pack_panel(12, s, rs, ks, nn, kc, d); break;
        case 16: pack_panel(16, s, rs, ks, nn, kc, d); break;
        case 32: pack_panel(32, s, rs, ks, nn, kc, d); break;
        default: pack_panel(w, s, rs, ks, nn, kc, d); break;
        }
    }
}

/* op(A)[i0:i0+mc, p0:p0+kc] into panels of mr rows, each k-major (ap[k*mr + r]); rows past mc
 * are zero so the micro-kernel always runs a full tile. op(A)[i][k] is A[i*lda + k], or
 * A[k*lda + i] when transposed. */
static void pack_a(const gemm_job *g, size_t i0, size_t mc, size_t p0, size_t kc, float *ap) {
    if (g->ta) pack_panels(g->impl->mr, g->A + p0 * g->lda + i0, 1, g->lda, mc, kc, ap);
    else pack_panels(g->impl->mr, g->A + i0 * g->lda + p0, g->lda, 1, mc, kc, ap);
}

/* op(B)[p0:p0+kc, j0:j0+nc] into panels of nr columns (bp[k*nr + j]), zero past nc. */
static void pack_b(const gemm_job *g, size_t p0, size_t kc, size_t j0, size_t nc, float *bp) {
    if (g->tb) pack_panels(g->impl->nr, g->B + j0 * g->ldb + p0, g->ldb, 1, nc, kc, bp);
    else pack_panels(g->impl->nr, g->B + p0 * g->ldb + j0, 1, g->ldb, nc, kc, bp);
}

/* --- the on-stack path (no scratch memory to be had) --- */

/* C[i0:i1, j0:j1] with one register tile of each operand packed at a time, serially. Same K
 * chunks and kernel as the blocked path, so the same bits: an element's sum does not depend on
 * where it sits in a tile or on how much is packed at once. */
static __attribute__((noinline)) void gemm_on_stack(const gemm_job *g) {
    _Alignas(64) float ap[MAX_MR * MAX_KC];
    _Alignas(64) float bp[MAX_KC * MAX_NR];
    _Alignas(64) float tile[MAX_MR * MAX_NR];  /* the second K half of one tile */
    const mc_gemm_impl *im = g->impl;
    size_t mr = im->mr, nr = im->nr;
    int halves = g->k_mid < g->K ? 2 : 1;
    for (size_t jc = 0; jc < g->N; jc += nr) {
        size_t nn = min_sz(nr, g->N - jc);
        for (size_t ic = 0; ic < g->M; ic += mr) {
            size_t mm = min_sz(mr, g->M - ic);
            float *c = g->C + ic * g->ldc + jc;
            for (int h = 0; h < halves; h++) {
                k_half kh = half_of(g, h);
                float *out = h ? tile : c;
                size_t ld = h ? nr : g->ldc;
                for (size_t pc = kh.k0; pc < kh.k1; pc += g->kc) {
                    size_t kcur = min_sz(g->kc, g->K - pc);
                    float beta = pc == kh.k0 ? kh.beta : 1.0f;  /* later chunks add to the first */
                    pack_b(g, pc, kcur, jc, nn, bp);
                    pack_a(g, ic, mm, pc, kcur, ap);
                    im->micro(kcur, ap, 1, mr, bp, nr, out, ld, mm, nn, g->alpha, beta);
                }
            }
            if (halves == 2)
                for (size_t r = 0; r < mm; r++)
                    for (size_t j = 0; j < nn; j++) c[r * g->ldc + j] += tile[r * nr + j];
            then_block(g, ic, ic + mm, jc, jc + nn);
        }
    }
}

/* --- tasks --- */

/* Pack column panels [q0, q1) of the N block for every K chunk. */
static void pack_b_task(gemm_job *g, size_t t) {
    size_t nr = g->impl->nr;
    size_t q0 = t * g->pack_step * nr, q1 = min_sz(g->ncur, q0 + g->pack_step * nr);
    for (size_t pc = 0; pc < g->K; pc += g->kc) {
        size_t kcur = min_sz(g->kc, g->K - pc);
        pack_b(g, pc, kcur, g->j0 + q0, q1 - q0, g->bp + pc * g->ncpad + q0 * kcur);
    }
    atomic_fetch_add_explicit(&g->packed, 1, memory_order_release);
}

static void wait_packed(gemm_job *g) {
    for (unsigned it = 0; atomic_load_explicit(&g->packed, memory_order_acquire) < g->n_pack; it++) {
        if (it < 2000) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
        } else {
            sched_yield();  /* a packer lost its core: let it run */
        }
    }
}

/* Column panel jr (from the N block's start) of the K chunk starting at row pc, and its row stride:
 * packed (stride nr) or B in place (stride ldb). The kernel reads the same values either way. */
static const float *b_panel(const gemm_job *g, size_t pc, size_t kcur, size_t jr, size_t *b_ks) {
    if (g->b_in_place) {
        *b_ks = g->ldb;
        return g->B + pc * g->ldb + g->j0 + jr;
    }
    *b_ks = g->impl->nr;
    return g->bp + pc * g->ncpad + jr * kcur;
}

/* C[i0:i1, j0+c0 : j0+c1], K chunks in order for every element. When a K chunk of this task's
 * packed B fits in L2 (DIRECT_B_BYTES), row panels go outside and column panels inside: the
 * mr x kc piece of op(A) is read where it lies (it stays in L1 across the column panels) and
 * only a ragged last panel is packed, with zero rows. Otherwise, BLIS order: a packed M block of
 * op(A) in L2, one B panel in L1 across the row panels. */
static void compute_task(gemm_job *g, int half, size_t i0, size_t i1, size_t c0, size_t c1) {
    const mc_gemm_impl *im = g->impl;
    size_t mr = im->mr, nr = im->nr;
    _Alignas(64) float stack_ap[MAX_MR * MAX_KC];
    k_half kh = half_of(g, half);
    if (g->sparse) {  /* the same K chunks */
        int finite = atomic_load_explicit(&g->b_finite[half], memory_order_relaxed);
        if (!finite) {  /* two threads may both look: the same answer */
            finite = im->finite(g->B + kh.k0 * g->ldb, g->ldb, kh.k1 - kh.k0, g->N) ? 1 : 2;
            atomic_store_explicit(&g->b_finite[half], finite, memory_order_relaxed);
        }
        const float *b = g->B + kh.k0 * g->ldb + c0;
        float *c = kh.out + i0 * kh.ld + c0;
        if (g->ta)
            im->sparse_t(i1 - i0, c1 - c0, kh.k1 - kh.k0, g->kc, g->A + kh.k0 * g->lda + i0, g->lda, b, g->ldb,
                         c, kh.ld, g->alpha, kh.beta, finite == 2);
        else
            im->sparse(i1 - i0, c1 - c0, kh.k1 - kh.k0, g->kc, g->A + i0 * g->lda + kh.k0, g->lda, b, g->ldb,
                       c, kh.ld, g->alpha, kh.beta, finite == 2);
        return;
    }
    wait_packed(g);
    if (g->kc * (c1 - c0) * sizeof(float) <= DIRECT_B_BYTES) {
        for (size_t pc = kh.k0; pc < kh.k1; pc += g->kc) {
            size_t kcur = min_sz(g->kc, g->K - pc);
            float beta = pc == kh.k0 ? kh.beta : 1.0f;  /* later chunks add to what the first wrote */
            for (size_t ir = i0; ir < i1; ir += mr) {
                size_t mm = min_sz(mr, i1 - ir);
                const float *a = stack_ap;
                size_t rs = 1, ks = mr;
                if (mm < mr) pack_a(g, ir, mm, pc, kcur, stack_ap);
                else if (g->ta) a = g->A + pc * g->lda + ir, ks = g->lda;
                else a = g->A + ir * g->lda + pc, rs = g->lda, ks = 1;
                for (size_t jr = c0; jr < c1; jr += nr) {
                    size_t b_ks;
                    const float *b = b_panel(g, pc, kcur, jr, &b_ks);
                    im->micro(kcur, a, rs, ks, b, b_ks, kh.out + ir * kh.ld + g->j0 + jr, kh.ld, mm,
                              min_sz(nr, c1 - jr), g->alpha, beta);
                }
            }
        }
        return;
    }
    size_t mc = min_sz(im->mc / mr * mr, ceil_div(i1 - i0, mr) * mr);
    float *ap = thread_scratch(mc * g->kc);
    if (!ap) {  /* one panel at a time from the stack: same bits */
        ap = stack_ap;
        mc = mr;
    }
    for (size_t ic = i0; ic < i1; ic += mc) {
        size_t mcur = min_sz(mc, i1 - ic);
        for (size_t pc = kh.k0; pc < kh.k1; pc += g->kc) {
            size_t kcur = min_sz(g->kc, g->K - pc);
            float beta = pc == kh.k0 ? kh.beta : 1.0f;
            pack_a(g, ic, mcur, pc, kcur, ap);
            for (size_t jr = c0; jr < c1; jr += nr) {
                size_t b_ks;
                const float *b = b_panel(g, pc, kcur, jr, &b_ks);
                for (size_t ir = 0; ir < mcur; ir += mr)
                    im->micro(kcur, ap + ir * kcur, 1, mr, b, b_ks, kh.out + (ic + ir) * kh.ld + g->j0 + jr,
                              kh.ld, min_sz(mr, mcur - ir), min_sz(nr, c1 - jr), g->alpha, beta);
            }
        }
    }
}

static void gemm_task(void *ctx, size_t t) {
    gemm_job *g = ctx;
    if (t < g->n_pack) {
        pack_b_task(g, t);
        return;
    }
    t -= g->n_pack;
    int half = t >= g->n_compute;  /* the K halves' tasks, one after the other */
    t -= half ? g->n_compute : 0;
    size_t bm = t / g->gn, bn = t % g->gn;
    size_t i0 = bm * g->tm / g->gm * g->mu, i1 = min_sz(g->M, (bm + 1) * g->tm / g->gm * g->mu);
    size_t c0 = bn * g->tn / g->gn * g->nu, c1 = min_sz(g->ncur, (bn + 1) * g->tn / g->gn * g->nu);
    if (i0 >= i1 || c0 >= c1) return;
    if (g->small) {
        const float *a = g->ta ? g->A + i0 : g->A + i0 * g->lda;
        g->impl->small(g->ta, i1 - i0, c1 - c0, g->K, g->alpha, a, g->lda, g->B + c0, g->ldb,
                       g->beta, g->C + i0 * g->ldc + c0, g->ldc);
    } else {
        compute_task(g, half, i0, i1, c0, c1);
    }
    if (g->k_mid == g->K) then_block(g, i0, i1, g->j0 + c0, g->j0 + c1);  /* else after the add */
}

/* C = beta * C (beta == 0 writes zeros without reading C). */
static void scale_c(size_t M, size_t N, float beta, float *C, size_t ldc) {
    if (beta == 1.0f) return;
    for (size_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f) memset(c, 0, N * sizeof(float));
        else for (size_t j = 0; j < N; j++) c[j] *= beta;
    }
}

/* Cut the current N block (or, on the small path, all of C) into about TASKS_PER_THREAD blocks
 * per thread, whole register tiles each, rows first, of equal size to a tile: each thread's lane
 * then holds an equal share, and several blocks per thread even out a core that is shared with
 * another process. Returns the number of tasks. */
static size_t plan_tasks(gemm_job *g, size_t threads) {
    size_t mu = g->small ? g->M : g->impl->mr, nu = g->small ? 64 : g->impl->nr;
    size_t tm = ceil_div(g->M, mu), tn = ceil_div(g->ncur, nu);
    size_t halves = g->k_mid < g->K ? 2 : 1;
    /* tasks per K half: with two halves one per thread, so that each thread's lane holds one half
     * and it reads only that half of B; otherwise TASKS_PER_THREAD per thread */
    size_t per_thread = halves > 1 ? 1 : TASKS_PER_THREAD;
    size_t goal = threads > 1 ? ceil_div(threads * per_thread, halves) : 1;
    g->mu = mu;
    g->nu = nu;
    g->tm = tm;
    g->tn = tn;
    g->gm = min_sz(goal, tm);
    g->gn = min_sz(tn, ceil_div(goal, g->gm));
    g->n_compute = g->gm * g->gn;
    g->n_pack = 0;
    if (!g->small && !g->b_in_place) {
        size_t panels = ceil_div(g->ncur, g->impl->nr);
        size_t want = threads > 1 ? min_sz(panels, 2 * threads) : 1;
        g->pack_step = ceil_div(panels, want);
        g->n_pack = ceil_div(panels, g->pack_step);
    }
    atomic_store(&g->packed, 0);
    return g->n_pack + g->n_compute * halves;
}

static void run_gemm_tasks(gemm_job *g, size_t threads) {
    size_t n = plan_tasks(g, threads);
    if (threads <= 1) {
        for (size_t t = 0; t < n; t++) gemm_task(g, t);
    } else {
        mc_parallel_for_n(n, (int)threads, gemm_task, g);
    }
}

/* How K is summed, a function of the shape alone: equal chunks no longer than impl->kc, in order;
 * for the shapes of KSPLIT_* an even number of them, so that the two halves (and the two threads
 * that take them) get the same share: K = 784 is 8 chunks of 98, halves of 392. */
static void plan_k(gemm_job *g) {
    size_t K = g->K, kc = g->impl->kc;
    if (!g->small && K >= KSPLIT_MIN_K && g->plan_m <= KSPLIT_MAX_MN / g->N) {
        size_t chunks = 2 * ceil_div(K, 2 * kc);
        g->kc = ceil_div(K, chunks);
        g->k_mid = chunks / 2 * g->kc;
    } else {
        g->kc = ceil_div(K, ceil_div(K, kc));
        g->k_mid = K;
    }
}

/* Whether the zero-skipping path fits this product: a kernel for it, B not transposed and A (a
 * sample of its rows as stored) mostly exact zeros. decided >= 0 answers the last question instead
 * of a sample: a block of rows of a product whose own sample answered it (mc_gemm_rows_plan.sparse). */
static int take_sparse(const gemm_job *g, int decided) {
    if ((g->ta ? !g->impl->sparse_t : !g->impl->sparse) || g->tb || g->small ||
        !atomic_load_explicit(&sparse_on, memory_order_relaxed))
        return 0;
    if (decided >= 0) return decided != 0;
    size_t n_rows = g->ta ? g->K : g->M, len = g->ta ? g->M : g->K;
    size_t rows = min_sz(n_rows, SPARSE_SAMPLE_ROWS), zeros = 0;
    for (size_t s = 0; s < rows; s++) {
        const float *a = g->A + s * n_rows / rows * g->lda;
        uint32_t z = 0;  /* 32-bit lanes: the compare vectorizes four or eight at a time */
        for (size_t k = 0; k < len; k++) z += a[k] == 0.0f;
        zeros += z;
    }
    return (double)zeros >= MC_GEMM_SPARSE_MIN_ZEROS * (double)(rows * len);
}

int mc_gemm_threads(size_t M, size_t N, size_t K) {
    double flops = 2.0 * (double)M * (double)N * (double)K;
    int nt = mc_get_num_threads();
    if (nt <= 1 || flops < 2.0 * FLOPS_PER_THREAD) return 1;
    double w = flops / FLOPS_PER_THREAD;
    return w >= (double)nt ? nt : (int)w;
}

/* C += P, the second K half, row blocks split over the threads. */
#define ADD_ROWS 16

static void add_half_task(void *ctx, size_t t) {
    const gemm_job *g = ctx;
    size_t i1 = min_sz(g->M, (t + 1) * ADD_ROWS);
    for (size_t i = t * ADD_ROWS; i < i1; i++) {
        float *restrict c = g->C + i * g->ldc;
        const float *restrict p = g->P + i * g->N;
        for (size_t j = 0; j < g->N; j++) c[j] += p[j];
    }
    then_block(g, t * ADD_ROWS, i1, 0, g->N);
}

static void add_second_half(gemm_job *g, size_t threads) {
    size_t n = ceil_div(g->M, ADD_ROWS);
    if (threads <= 1) {
        for (size_t t = 0; t < n; t++) add_half_task(g, t);
    } else {
        mc_parallel_for_n(n, (int)threads, add_half_task, g);
    }
}

/* rows: NULL for a whole product on the pool, or a block of rows of a larger one (mc_gemm_rows). */
static void gemm_run(const mc_gemm_impl *impl, int trans_a, int trans_b, size_t M, size_t N,
                     size_t K, float alpha, const float *A, size_t lda, const float *B, size_t ldb,
                     float beta, float *C, size_t ldc, const mc_gemm_then *then, const mc_gemm_rows_plan *rows) {
    if (M == 0 || N == 0) return;
    if (impl->narrow && N <= impl->narrow->nr) impl = impl->narrow;
    gemm_job g = {
        .impl = impl, .ta = trans_a != 0, .tb = trans_b != 0, .M = M, .N = N, .K = K,
        .plan_m = rows && rows->plan_m > M ? rows->plan_m : M,
        .alpha = alpha, .beta = beta, .A = A, .B = B, .C = C, .lda = lda, .ldb = ldb, .ldc = ldc,
        .then = then,
    };
    if (K == 0 || alpha == 0.0f) {  /* op(A) @ op(B) contributes nothing (BLAS: A, B not read) */
        scale_c(M, N, beta, C, ldc);
        then_block(&g, 0, M, 0, N);
        return;
    }
    g.small = impl->small && !g.tb && g.plan_m <= impl->small_m_max;
    plan_k(&g);

    size_t threads = rows ? 1 : (size_t)mc_gemm_threads(M, N, K);

    if (g.small) {
        g.j0 = 0;
        g.ncur = N;
        run_gemm_tasks(&g, threads);
        return;
    }
    if (g.k_mid < K && !(g.P = thread_scratch_c(M * N))) {
        gemm_on_stack(&g);
        return;
    }
    size_t nr = impl->nr;
    g.sparse = take_sparse(&g, rows ? rows->sparse : -1);
    /* the sparse kernels read B in place, and so does a micro that masks a ragged last panel */
    g.b_in_place = !g.tb && (N % nr == 0 || g.sparse || impl->b_masked);
    int finite = rows && rows->b_finite ? 1 : 0;
    atomic_init(&g.b_finite[0], finite);
    atomic_init(&g.b_finite[1], finite);
    if (g.b_in_place) {  /* one N block, nothing to pack */
        g.j0 = 0;
        g.ncur = g.ncpad = N;
        run_gemm_tasks(&g, threads);
        if (g.P) add_second_half(&g, threads);
        return;
    }
    /* N blocks whose packed B (all of K) stays within B_PACK_MAX floats. */
    size_t nblk = (B_PACK_MAX / K) / nr * nr;
    if (nblk < nr) nblk = nr;
    nblk = min_sz(nblk, ceil_div(N, nr) * nr);
    g.bp = thread_scratch_b(K * nblk);
    if (!g.bp) {
        gemm_on_stack(&g);
        return;
    }
    for (g.j0 = 0; g.j0 < N; g.j0 += nblk) {
        g.ncur = min_sz(nblk, N - g.j0);
        g.ncpad = ceil_div(g.ncur, nr) * nr;
        run_gemm_tasks(&g, threads);
    }
    if (g.P) add_second_half(&g, threads);
}

void mc_gemm_variant(mc_kernel k, int trans_a, int trans_b, size_t M, size_t N, size_t K,
                     float alpha, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                     float *C, size_t ldc) {
    if (!mc_kernel_supported(k)) k = mc_kernel_active();
    gemm_run(impls[k], trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, NULL);
}

void mc_gemm(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha,
             const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc) {
    gemm_run(impls[mc_kernel_active()], trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
             ldc, NULL, NULL);
}

void mc_gemm_ex(int trans_a, int trans_b, size_t M, size_t N, size_t K, float alpha, const float *A,
                size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc,
                const mc_gemm_then *then) {
    gemm_run(impls[mc_kernel_active()], trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
             ldc, then, NULL);
}

void mc_gemm_rows(const mc_gemm_rows_plan *plan, int trans_a, int trans_b, size_t M, size_t N, size_t K,
                  float alpha, const float *A, size_t lda, const float *B, size_t ldb, float beta, float *C,
                  size_t ldc, const mc_gemm_then *then) {
    gemm_run(impls[mc_kernel_active()], trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
             ldc, then, plan);
}

int mc_gemm_skips_zeros(size_t M, size_t N, size_t K, const float *A, size_t lda) {
    const mc_gemm_impl *im = impls[mc_kernel_active()];
    if (im->narrow && N <= im->narrow->nr) im = im->narrow;
    gemm_job g = {.impl = im, .M = M, .N = N, .K = K, .plan_m = M, .A = A, .lda = lda};
    g.small = im->small && M <= im->small_m_max;
    return M && N && K && take_sparse(&g, -1);
}

/* --- peak probe --- */

#include <time.h>

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Scalar fallback: 8 independent multiply-add chains (2 flops each per step). */
static double probe_portable(double seconds) {
    float acc[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const float a = 0.999999f, b = 1e-7f;
    double best = 0.0, start = seconds_now();
    do {
        double t0 = seconds_now();
        for (int it = 0; it < 1 << 20; it++)
            for (int j = 0; j < 8; j++) acc[j] = acc[j] * a + b;
        double dt = seconds_now() - t0;
        double rate = 2.0 * 8.0 * (double)(1 << 20) / dt * 1e-9;
        if (rate > best) best = rate;
    } while (seconds_now() - start < seconds);
    volatile float sink = 0.0f;
    for (int j = 0; j < 8; j++) sink += acc[j];
    (void)sink;
    return best;
}

double mc_fma_probe(double seconds, mc_kernel *isa) {
    if (!(seconds >= 0.01)) seconds = 0.01;
    if (seconds > 10.0) seconds = 10.0;
    mc_kernel k = mc_kernel_supported(MC_KERNEL_AVX512) ? MC_KERNEL_AVX512
                  : mc_kernel_supported(MC_KERNEL_AVX2) ? MC_KERNEL_AVX2
                                                        : MC_KERNEL_PORTABLE;
    if (isa) *isa = k;
    if (k == MC_KERNEL_AVX512) return mc_fma_probe_avx512(seconds);
    if (k == MC_KERNEL_AVX2) return mc_fma_probe_avx2(seconds);
    return probe_portable(seconds);
}
