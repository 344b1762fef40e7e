/* Whole-array scans used to check user input before it reaches the engine: NaN and infinity
 * counts and the range of the numbers. Exact (counts, min and max do not depend on the order in
 * which pieces are visited), so the result is the same for every thread count. */
#ifndef MC_SCAN_H
#define MC_SCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t n_nan, n_inf;
    double lo, hi; /* over the non-NaN values; both NaN when there is none */
} mc_scan_result;

typedef enum { MC_SCAN_F32, MC_SCAN_F64, MC_SCAN_U8 } mc_scan_type;

/* Scan n elements at p (contiguous). Large arrays are split over the thread pool. */
mc_scan_result mc_scan(const void *p, mc_scan_type type, size_t n);

#endif
