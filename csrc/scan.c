/* Input scans. float32 is the hot case (every fit/predict/evaluate checks x for NaN and Inf): the
 * bit-pattern tests and lane-wise min/max below vectorise, and large arrays are cut into fixed
 * pieces for the thread pool, so a 10k x 784 predict batch is scanned at memory speed rather than
 * one double conversion per element. */
#include "scan.h"

#include <math.h>
#include <string.h>

#include "threads.h"

enum {
    LANES = 16,              /* independent accumulators: one AVX-512 or two AVX2 registers */
    PIECE = 1 << 16,         /* elements per task; also bounds the uint32 lane counters */
};

typedef struct {
    const void *p;
    mc_scan_type type;
    size_t n;
    mc_scan_result *parts;
} scan_job;

/* NaN fails both comparisons, so it never reaches lo/hi; infinities do, as numbers. Compiled also
 * for AVX2 and AVX-512 (picked at load time by the CPU): the generic build's 4-wide SSE loop was
 * compute-bound, a quarter of predict's time on the 10k test set. */
MC_ALL_WIDTHS
static mc_scan_result scan_f32(const float *p, size_t n) {
    float lo[LANES], hi[LANES];
    uint32_t nan[LANES] = {0}, inf[LANES] = {0};
    for (int l = 0; l < LANES; l++) {
        lo[l] = HUGE_VALF;
        hi[l] = -HUGE_VALF;
    }
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) {
            float v = p[i + l];
            uint32_t bits;
            memcpy(&bits, &v, sizeof bits);
            bits &= 0x7fffffffu;
            nan[l] += bits > 0x7f800000u;
            inf[l] += bits == 0x7f800000u;
            lo[l] = v < lo[l] ? v : lo[l];
            hi[l] = v > hi[l] ? v : hi[l];
        }
    }
    for (; i < n; i++) {
        float v = p[i];
        nan[0] += isnan(v) != 0;
        inf[0] += isinf(v) != 0;
        lo[0] = v < lo[0] ? v : lo[0];
        hi[0] = v > hi[0] ? v : hi[0];
    }
    mc_scan_result r = {0, 0, HUGE_VAL, -HUGE_VAL};
    for (int l = 0; l < LANES; l++) {
        r.n_nan += nan[l];
        r.n_inf += inf[l];
        r.lo = lo[l] < r.lo ? lo[l] : r.lo;
        r.hi = hi[l] > r.hi ? hi[l] : r.hi;
    }
    return r;
}

static mc_scan_result scan_f64(const double *p, size_t n) {
    mc_scan_result r = {0, 0, HUGE_VAL, -HUGE_VAL};
    for (size_t i = 0; i < n; i++) {
        double v = p[i];
        r.n_nan += isnan(v) != 0;
        r.n_inf += isinf(v) != 0;
        r.lo = v < r.lo ? v : r.lo;
        r.hi = v > r.hi ? v : r.hi;
    }
    return r;
}

static mc_scan_result scan_u8(const uint8_t *p, size_t n) {
    uint8_t lo = 255, hi = 0;
    for (size_t i = 0; i < n; i++) {
        lo = p[i] < lo ? p[i] : lo;
        hi = p[i] > hi ? p[i] : hi;
    }
    mc_scan_result r = {0, 0, n ? lo : HUGE_VAL, n ? hi : -HUGE_VAL};
    return r;
}

static mc_scan_result scan_range(const scan_job *j, size_t begin, size_t end) {
    switch (j->type) {
    case MC_SCAN_F32:
        return scan_f32((const float *)j->p + begin, end - begin);
    case MC_SCAN_F64:
        return scan_f64((const double *)j->p + begin, end - begin);
    default:
        return scan_u8((const uint8_t *)j->p + begin, end - begin);
    }
}

static void scan_task(void *ctx, size_t task) {
    scan_job *j = ctx;
    size_t begin = task * (size_t)PIECE, end = begin + PIECE < j->n ? begin + PIECE : j->n;
    j->parts[task] = scan_range(j, begin, end);
}

enum { MAX_PIECES_ON_STACK = 1024 };

mc_scan_result mc_scan(const void *p, mc_scan_type type, size_t n) {
    scan_job j = {p, type, n, NULL};
    size_t pieces = (n + PIECE - 1) / PIECE;
    mc_scan_result r = {0, 0, HUGE_VAL, -HUGE_VAL};
    if (pieces <= 1 || mc_get_num_threads() == 1) {
        if (n) r = scan_range(&j, 0, n);
    } else {
        /* Beyond 1024 pieces (2^26 elements) the array is scanned in rounds of that many. */
        mc_scan_result parts[MAX_PIECES_ON_STACK];
        j.parts = parts;
        for (size_t first = 0; first < pieces; first += MAX_PIECES_ON_STACK) {
            size_t count = pieces - first < MAX_PIECES_ON_STACK ? pieces - first : MAX_PIECES_ON_STACK;
            size_t offset = first * (size_t)PIECE;
            scan_job round = j;
            round.n = n - offset;
            round.p = (const char *)p + offset * (type == MC_SCAN_F32 ? 4 : type == MC_SCAN_F64 ? 8 : 1);
            mc_parallel_for(count, scan_task, &round);
            for (size_t t = 0; t < count; t++) {
                r.n_nan += parts[t].n_nan;
                r.n_inf += parts[t].n_inf;
                r.lo = parts[t].lo < r.lo ? parts[t].lo : r.lo;
                r.hi = parts[t].hi > r.hi ? parts[t].hi : r.hi;
            }
        }
    }
    if (r.lo > r.hi) r.lo = r.hi = NAN; /* no number seen */
    return r;
}
