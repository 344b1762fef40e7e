/* mc_exp_nonpos against double exp: relative error under one float ulp on every 16th float of
 * [-87, 0], and its edges (0, -87, below it, -inf, NaN of either sign, above 0). */
#include <math.h>

#include "exp_nonpos.h"
#include "mc_test.h"

int main(void) {
    double worst = 0.0;
    long n = 0;
    for (float x = 0.0f; x >= -87.0f; x = nextafterf(x, -INFINITY), n++) {
        if (n % 16) continue;
        double want = exp((double)x), err = fabs((double)mc_exp_nonpos(x) - want) / want;
        worst = err > worst ? err : worst;
    }
    CHECK(worst < 1.0e-7); /* measured: 8.1e-8 */
    CHECK(mc_exp_nonpos(0.0f) == 1.0f);
    CHECK(mc_exp_nonpos(-0.0f) == 1.0f);
    CHECK(mc_exp_nonpos(-87.5f) == 0.0f);
    CHECK(mc_exp_nonpos(-INFINITY) == 0.0f);
    CHECK(isnan(mc_exp_nonpos(NAN)));
    CHECK(isnan(mc_exp_nonpos(-NAN)));
    CHECK(mc_exp_nonpos(2.5f) == 1.0f);     /* above 0: clamped to 0 */
    CHECK(mc_exp_nonpos(INFINITY) == 1.0f);
    CHECK(mc_exp_nonpos(-87.0f) > 0.0f);    /* lo itself is computed */
    CHECK_NEAR(mc_exp_nonpos(-1.0f), exp(-1.0), 0.0, 1e-7);
    MC_TEST_EXIT();
}
