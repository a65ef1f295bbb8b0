/* Dropout whose mask is a hash of (seed, global row, global position, feature): nothing is stored
 * for the backward, and every backend and every slicing of the batch or sequence over processes
 * draws the same mask. Definition (and the NumPy oracle): backends/numpy/dropout.py. */
#include "common.h"
#include "dropout.h"

#define DROPOUT_MASK_BITS 24

/* row(b) = splitmix64(splitmix64(seed) + b); keep (b,t,d) iff splitmix64(row(b) + t·D + d) >> 40 >= ⌊p·2²⁴ + ½⌋ */
void hr_dropout(const float *x, float *y, long B, long T, long D, double p, uint64_t seed, long batch_offset,
                long time_offset) {
    const uint64_t threshold = (uint64_t)floor(p * (double)(1 << DROPOUT_MASK_BITS) + 0.5);
    const float scale = (float)(1.0 / (1.0 - p));
    const uint64_t key = hr_splitmix64(seed);
    #pragma omp parallel for schedule(static) if (B * T * D > 65536)
    for (long r = 0; r < B * T; r++) {
        long b = r / T, t = r % T;
        uint64_t row = hr_splitmix64(key + (uint64_t)(batch_offset + b));
        uint64_t counter = row + (uint64_t)(time_offset + t) * (uint64_t)D;
        const float *xr = x + (size_t)r * D;
        float *yr = y + (size_t)r * D;
        for (long d = 0; d < D; d++) {
            uint64_t u = hr_splitmix64(counter + (uint64_t)d) >> (64 - DROPOUT_MASK_BITS);
            yr[d] = u >= threshold ? xr[d] * scale : 0.0f;
        }
    }
}
