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

typedef struct {
    int i[16];
} shim_m512i;

static __attribute__((noinline)) shim_m512 shim_sub(shim_m512 a, shim_m512 b) {
    shim_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = a.f[i] - b.f[i];
    return r;
}
/* only the predicate the kernels use: not equal, or unordered (_CMP_NEQ_UQ) */
static __attribute__((noinline)) shim_mask16 shim_cmp_neq_uq(shim_m512 a, shim_m512 b) {
    shim_mask16 k = 0;
    for (int i = 0; i < 16; i++) k |= (shim_mask16)(!(a.f[i] == b.f[i]) << i);
    return k;
}
static __attribute__((noinline)) void shim_mask_storeu(void *p, shim_mask16 k, shim_m512 a) {
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) ((float *)p)[i] = a.f[i];
}
static __attribute__((noinline)) shim_m512i shim_set1_epi32(int x) {
    shim_m512i r;
    for (int i = 0; i < 16; i++) r.i[i] = x;
    return r;
}
static __attribute__((noinline)) shim_m512i shim_setr_epi32(int e0, int e1, int e2, int e3, int e4, int e5, int e6,
                                                            int e7, int e8, int e9, int e10, int e11, int e12,
                                                            int e13, int e14, int e15) {
    shim_m512i r = {{e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13, e14, e15}};
    return r;
}
static __attribute__((noinline)) shim_m512i shim_add_epi32(shim_m512i a, shim_m512i b) {
    shim_m512i r;
    for (int i = 0; i < 16; i++) r.i[i] = a.i[i] + b.i[i];
    return r;
}
/* the lanes of k, packed to the low end, the rest zero */
static __attribute__((noinline)) shim_m512i shim_maskz_compress_epi32(shim_mask16 k, shim_m512i a) {
    shim_m512i r = {{0}};
    int n = 0;
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) r.i[n++] = a.i[i];
    return r;
}
static __attribute__((noinline)) void shim_storeu_si512(void *p, shim_m512i a) {
    for (int i = 0; i < 16; i++) ((int *)p)[i] = a.i[i];
}

/* base[idx[i] * scale bytes] = a[i] for the lanes of k */
static __attribute__((noinline)) void shim_mask_i32scatter_epi32(void *base, shim_mask16 k, shim_m512i idx,
                                                                shim_m512i a, int scale) {
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) *(int *)((char *)base + (long)idx.i[i] * scale) = a.i[i];
}
static __attribute__((noinline)) shim_m512i shim_mask_add_epi32(shim_m512i src, shim_mask16 k, shim_m512i a,
                                                               shim_m512i b) {
    for (int i = 0; i < 16; i++)
        if ((k >> i) & 1) src.i[i] = a.i[i] + b.i[i];
    return src;
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
#define _mm512_sub_ps shim_sub
#define _mm512_cmp_ps_mask(a, b, imm) shim_cmp_neq_uq(a, b)
#define _mm512_mask_storeu_ps shim_mask_storeu
#define __m512i shim_m512i
#define _mm512_set1_epi32 shim_set1_epi32
#undef _mm512_setr_epi32
#define _mm512_setr_epi32 shim_setr_epi32
#define _mm512_add_epi32 shim_add_epi32
#define _mm512_maskz_compress_epi32 shim_maskz_compress_epi32
#define _mm512_storeu_si512 shim_storeu_si512
#define _mm512_store_si512 shim_storeu_si512
#define _mm512_mask_i32scatter_epi32 shim_mask_i32scatter_epi32
#define _mm512_mask_add_epi32 shim_mask_add_epi32
#define _mm_prefetch(p, hint) ((void)(p))
#undef _CMP_NEQ_UQ
#define _CMP_NEQ_UQ 4

#endif
