/* Counter-based random numbers for dropout: a pure function of (seed, step, layer, element), so a
 * mask never depends on call order, batch layout or thread count, and needs no state to carry.
 * splitmix64's finaliser (Steele, Lea & Flood 2014) is the mixer. Not for cryptography. */
#ifndef MC_RNG_H
#define MC_RNG_H

#include <stdint.h>

/* splitmix64 step: a bijective, well-mixed hash of x. */
static inline uint64_t mc_rng_mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Key of one (seed, optimizer step, layer index) stream. */
static inline uint64_t mc_rng_key(uint64_t seed, uint64_t step, uint64_t layer) {
    return mc_rng_mix(mc_rng_mix(mc_rng_mix(seed) ^ step) ^ layer);
}

/* Uniform double in [0, 1) with 53 random bits for element `idx` of the stream `key`. */
static inline double mc_rng_uniform(uint64_t key, uint64_t idx) {
    return (double)(mc_rng_mix(key ^ idx) >> 11) * 0x1p-53;
}

#endif
