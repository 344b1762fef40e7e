/* CPU feature queries through GCC/Clang's __builtin_cpu_supports; call them once and cache the
 * answer (gemm.c does, under pthread_once), since __builtin_cpu_init writes a process global. */
#include "cpu.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
int mc_cpu_has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int mc_cpu_has_avx512f(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}
#else
int mc_cpu_has_avx2_fma(void) { return 0; }
int mc_cpu_has_avx512f(void) { return 0; }
#endif
