/* Internal helpers shared by every kernel file (not part of the cffi cdef).
 * Kernels are compiled three times (scalar, AVX2+FMA, AVX-512) from the same
 * source; HR_AVX2 / HR_AVX512 say which build this is, so a kernel can carry an
 * intrinsics path and a portable C path side by side. */
#ifndef HR_COMMON_H
#define HR_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HR_AVX2 1
#endif
#if defined(__AVX512F__)
#define HR_AVX512 1
#endif

#define HR_RESTRICT __restrict__
#define HR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define HR_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Error codes returned by kernels that allocate scratch memory. */
#define HR_OK 0
#define HR_ENOMEM 1
#define HR_ENONFINITE 2 /* sampling met a non-finite logit (sample.c) */
#define HR_ELAYOUT 3    /* the decoder met a weight matrix that is not in its panel layout (decode_mixer.h) */

static inline void *hr_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) & ~(size_t)63) != 0) return NULL;
    return p;
}

static inline int hr_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* HR_PARALLEL_FOR(worth, for-statement): the loop shared by the OpenMP team (schedule static) when `worth`
 * holds (typically: its work is at least HR_PARALLEL_MIN elements) and more than one thread is allowed;
 * otherwise the same loop run plainly, outside any parallel region. libgomp builds a team and makes a
 * futex syscall for every region, even a team of one, and an `if` clause does not avoid it; a one-token
 * decode step calls ~70 small kernels (benchmarks/profile_decode.py: the 13 norms of a step took 5.8 µs
 * in regions, 0.8 µs without). Below HR_PARALLEL_MIN elements a second thread does not pay for its
 * wake-up. Inside an active region (the decoder's token loop running slices of the streams on the
 * threads) the loop runs plainly too. The loop's iterations must be independent (each writes its own
 * outputs), as for `omp for`. */
#define HR_PARALLEL_MIN 16384
#ifdef _OPENMP
#define HR_PARALLEL_FOR(worth, ...)                                                     \
    do {                                                                                \
        if ((worth) && omp_get_max_threads() > 1 && !omp_in_parallel()) {               \
            _Pragma("omp parallel for schedule(static)") __VA_ARGS__                    \
        } else {                                                                        \
            __VA_ARGS__                                                                 \
        }                                                                               \
    } while (0)
#else
#define HR_PARALLEL_FOR(worth, ...) do { __VA_ARGS__ } while (0)
#endif

/* [begin, end) of part `i` of `n` equal parts of `total`: a fixed split, so a
 * reduction combined part by part in order is bit-for-bit repeatable for a
 * given thread count. */
static inline void hr_partition(long total, int n, int i, long *begin, long *end) {
    long q = total / n, r = total % n;
    *begin = i * q + (i < r ? i : r);
    *end = *begin + q + (i < r ? 1 : 0);
}

/* SplitMix64's output function (Steele, Lea & Flood 2014): the hash of the counter-based random
 * numbers of dropout (dropout.c) and sampling (sample.c); NumPy twin in backends/numpy/dropout.py. */
static inline uint64_t hr_splitmix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
#endif
