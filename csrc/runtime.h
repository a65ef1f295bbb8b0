/* Runtime facts about this build and the CPU, and the OpenMP thread count. */
int hr_cpu_has_avx2_fma(void);
int hr_cpu_has_avx512(void);
const char *hr_build_isa(void);
void hr_set_num_threads(int n);
int hr_get_num_threads(void);
