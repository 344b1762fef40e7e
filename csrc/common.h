/* Status codes, the error record every fallible function fills, the allocation wrappers, and
 * MC_ALL_WIDTHS. No Python here: pyutil.c maps mc_error to exceptions. No global mutable state
 * except the allocation-failure injection counter used by the fault tests. */
#ifndef MC_COMMON_H
#define MC_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define MC_VERSION "0.1.0"

typedef enum {
    MC_OK = 0,
    MC_ERR_NOMEM,   /* allocation failed */
    MC_ERR_IO,      /* OS-level error; sys_errno holds errno */
    MC_ERR_FORMAT,  /* bad file content */
    MC_ERR_SHAPE,   /* array shapes disagree */
    MC_ERR_ARG,     /* bad argument value */
    MC_STOPPED      /* a progress hook asked to stop: not an error */
} mc_status;

typedef struct {
    mc_status code;
    int sys_errno;
    char msg[256];
} mc_error;

/* Fill err (if not NULL) with code and a printf-style message; returns code. */
mc_status mc_set_error(mc_error *err, mc_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Same, recording errno as sys_errno (code MC_ERR_IO). */
mc_status mc_set_io_error(mc_error *err, int sys_errno, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* malloc/calloc/free through one door so tests can inject failures (mc_fail_alloc_after). */
void *mc_malloc(size_t n);
void *mc_calloc(size_t count, size_t size);
void mc_free(void *p);
/* Make the (k+1)-th following mc_malloc/mc_calloc fail; k < 0 disables injection. */
void mc_fail_alloc_after(long k);

/* a*b into *out; returns 0 on overflow. */
static inline int mc_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* A function compiled also for AVX2 and AVX-512, the CPU picking one at load time (GCC's
 * target_clones, which needs glibc's ifunc support: musl and macOS get the generic build). Only for
 * loops whose every width gives the same bits; helpers inlined into it are compiled with it. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && defined(__GLIBC__)
#define MC_ALL_WIDTHS __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MC_ALL_WIDTHS
#endif

#endif
