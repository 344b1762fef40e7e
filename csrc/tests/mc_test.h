/* Minimal checks for the standalone C tests: CHECK and CHECK_NEAR print file:line and count failures
 * instead of stopping, and MC_TEST_EXIT() ends main with status 1 if any check failed. Test programs
 * only: the library under csrc/ never prints. */
#ifndef MC_TEST_H
#define MC_TEST_H

#include <math.h>
#include <stdio.h>

static int mc_test_checks = 0;
static int mc_test_failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        mc_test_checks++;                                                            \
        if (!(cond)) {                                                               \
            mc_test_failures++;                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

/* |got - want| <= atol + rtol * |want| (NaN fails). */
#define CHECK_NEAR(got, want, atol, rtol)                                                             \
    do {                                                                                              \
        double got_ = (double)(got), want_ = (double)(want);                                          \
        mc_test_checks++;                                                                             \
        if (!(fabs(got_ - want_) <= (atol) + (rtol) * fabs(want_))) {                                 \
            mc_test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK_NEAR failed: %s = %.9g, %s = %.9g\n", __FILE__, __LINE__, #got, \
                    got_, #want, want_);                                                              \
        }                                                                                             \
    } while (0)

#define MC_TEST_EXIT()                                                                          \
    do {                                                                                        \
        printf("%s: %d checks, %d failed\n", __FILE__, mc_test_checks, mc_test_failures);       \
        return mc_test_failures ? 1 : 0;                                                        \
    } while (0)

#endif
