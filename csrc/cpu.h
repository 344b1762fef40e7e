/* Run-time CPU feature detection for choosing a GEMM kernel. The answers cover both the CPU and
 * the OS (XSAVE state enabled for the wider registers), as __builtin_cpu_supports checks. */
#ifndef MC_CPU_H
#define MC_CPU_H

/* 1 when AVX2 and FMA instructions can run, else 0 (always 0 off x86). */
int mc_cpu_has_avx2_fma(void);
/* 1 when AVX-512F instructions can run, else 0 (always 0 off x86). */
int mc_cpu_has_avx512f(void);

#endif
