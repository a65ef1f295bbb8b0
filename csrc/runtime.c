#include "common.h"
#include "runtime.h"

int hr_cpu_has_avx2_fma(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* The AVX-512 build uses F, VL, BW and DQ (the Skylake-X set). */
int hr_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return hr_cpu_has_avx2_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
}

const char *hr_build_isa(void) {
#if defined(HR_AVX512)
    return "avx512";
#elif defined(HR_AVX2)
    return "avx2";
#else
    return "scalar";
#endif
}

void hr_set_num_threads(int n) {
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int hr_get_num_threads(void) { return hr_num_threads(); }
