/* Test-only stand-ins for the AVX-512F intrinsics gemm_avx512.c uses, in plain C, so the AVX-512
 * kernels' indexing, masking, packing and epilogues can be checked on machines without AVX-512.
 * The multiply-add is done in double (the product is exact there; the sum may round twice, so the
 * last bit can differ from a hardware FMA now and then: good enough for checking logic). The intrinsic names are macros for
 * shim_* functions, so this also works after <immintrin.h>. Not part of the library build. */
#ifndef MC_AVX512_SHIM_H
#define MC_AVX512_SHIM_H

typedef struct {
    float f[16];
} shim_m512;
typedef unsigned short shim_mask16;

static __attribute__((noinline)) shim_m512 shim_setzero(void) {
    shim_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = 0.0f;
    return r;
}
static __attribute__((noinline)) shim_m512 shim_set1(float x) {
    shim_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = x;
    return r;
}
static __attribute__((noinline)) shim_m512 shim_loadu(const void *p) {
    shim_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = ((const float *)p)[i];
    return r;
}
/* masked-off lanes are not read (as the hardware does not fault on them); noinline keeps the
 * fully unrolled kernels quick to compile */
static __attribute__((noinline)) shim_m512 shim_maskz_loadu(shim_mask16 k, const void *p) {
    shim_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = (k >> i) & 1 ? ((const float *)p)[i] : 0.0f;
    return r;
}
static __attribute__((noinline)) void shim_storeu(void *p, shim_m512 a) {
    for (int i = 0; i < 16; i++) ((float *)p)[i] = a.f[i];
}
static __attribute__((noinline)) shim_m512 shim_fmadd(shim_m512 a, shim_m512 b, shim_m512 c) {
    shim_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = (float)((double)a.f[i] * b.f[i] + c.f[i]);
    return r;
}
static __attribute__((noinline)) shim_m512 shim_mul(shim_m512 a, shim_m512 b) {
    shim_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = a.f[i] * b.f[i];
    return r;
}
static __attribute__((noinline)) shim_m512 shim_add(shim_m512 a, shim_m512 b) {
    shim_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = a.f[i] + b.f[i];
    return r;
}

#define __m512 shim_m512
#define __mmask16 shim_mask16
#define _mm512_setzero_ps shim_setzero
#define _mm512_set1_ps shim_set1
#define _mm512_loadu_ps shim_loadu
#define _mm512_maskz_loadu_ps shim_maskz_loadu
#define _mm512_storeu_ps shim_storeu
#define _mm512_fmadd_ps shim_fmadd
#define _mm512_mul_ps shim_mul
#define _mm512_add_ps shim_add

#endif
