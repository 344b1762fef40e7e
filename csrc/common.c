/* Error records and allocation wrappers. The only global is the failure-injection counter,
 * an atomic so that tests on several threads cannot corrupt it. */
#include "common.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_long fail_countdown = -1;

static void vset(mc_error *err, mc_status code, int sys_errno, const char *fmt, va_list ap) {
    if (!err) return;
    err->code = code;
    err->sys_errno = sys_errno;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

mc_status mc_set_error(mc_error *err, mc_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vset(err, code, 0, fmt, ap);
    va_end(ap);
    return code;
}

mc_status mc_set_io_error(mc_error *err, int sys_errno, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vset(err, MC_ERR_IO, sys_errno, fmt, ap);
    va_end(ap);
    return MC_ERR_IO;
}

static int should_fail(void) {
    long c = atomic_load(&fail_countdown);
    while (c >= 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1)) return c == 0;
    }
    return 0;
}

void *mc_malloc(size_t n) {
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *mc_calloc(size_t count, size_t size) {
    if (should_fail()) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void mc_free(void *p) { free(p); }

void mc_fail_alloc_after(long k) { atomic_store(&fail_countdown, k < 0 ? -1 : k); }
