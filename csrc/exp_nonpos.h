/* e^x for x <= 0, branch-free so that loops over it vectorise (glibc's expf is a call per
 * element): what softmax and the cross-entropy need once the row max is subtracted. Cody-Waite
 * reduction x = n ln2 + r, |r| <= ln2/2, e^r by the Cephes polynomial, times 2^n set in the
 * exponent bits: within 8.1e-8 relative of e^x (under one ulp; measured against double exp on
 * every 8th float of [-87, 0]). Below -87 (e^-87 = 1.6e-38, where float turns subnormal) the
 * result is 0; NaN stays NaN. Separate multiplies and adds (ISO C mode does not contract them),
 * so every build rounds alike. */
#ifndef MC_EXP_NONPOS_H
#define MC_EXP_NONPOS_H

#include <stdint.h>
#include <string.h>

static inline float mc_exp_nonpos(float x) {
    const float lo = -87.0f;
    /* x clamped to [lo, 0] on its bit pattern, so that the conversion to int below is always
     * defined: as unsigned integers, floats <= 0 grow with their magnitude (-inf and negative NaN
     * above lo's), and x > 0 (positive NaN included) becomes -0. Integer min/max and the masks at
     * the end, rather than float selects, let GCC vectorise loops over it for AVX2 and AVX-512 too
     * (a select feeding the conversion, or chosen against it, made it keep the branches). */
    uint32_t xb, cb;
    memcpy(&xb, &x, sizeof xb);
    cb = xb < 0x80000000u ? 0x80000000u : xb;
    cb = cb < 0xc2ae0000u ? cb : 0xc2ae0000u; /* -87.0f */
    float xc;
    memcpy(&xc, &cb, sizeof xc);
    /* xc * log2(e) - 0.5 is negative, and truncation rounds it up: n is xc * log2(e) to nearest */
    int32_t n = (int32_t)(xc * 1.44269504088896341f - 0.5f);
    float fn = (float)n;
    float r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t bits = (uint32_t)(n + 127) << 23;  /* 2^n, n in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    /* y where x >= lo, +0 below lo, x itself where x is NaN */
    uint32_t yb, keep = 0u - (uint32_t)(x >= lo), nan = 0u - (uint32_t)(x != x);
    memcpy(&yb, &y, sizeof yb);
    yb = (yb & keep) | (xb & nan);
    memcpy(&y, &yb, sizeof y);
    return y;
}

#endif
