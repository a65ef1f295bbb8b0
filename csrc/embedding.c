/* Token embedding. The ids are checked to lie in [0, V) by the Python wrapper. */
#include <string.h>
#include "common.h"
#include "embedding.h"

/* Backward: threads split the columns in units of one cache line (16 floats). */
#define EMB_UNIT 16

/* ids (M,), table (V,D) -> y (M,D), y[m] = table[ids[m]] */
void hr_embedding_forward(const int64_t *ids, const float *table, float *y, int M, int D) {
    HR_PARALLEL_FOR((long)M * D >= HR_PARALLEL_MIN,
        for (int m = 0; m < M; m++)
            memcpy(y + (size_t)m * D, table + (size_t)ids[m] * D, (size_t)D * sizeof(float)););
}

/* dy (M,D), ids (M,) -> dtable (V,D), dtable[v] = Σ_{m: ids[m]=v} dy[m]
 * Ids repeat, so rows cannot be split between threads without a race. Each
 * thread owns a range of columns instead and walks m = 0..M-1 in order: every
 * sum runs in the same order for any thread count. The inner loop is a plain
 * float add that the compiler vectorises at each ISA level. */
void hr_embedding_backward(const float *dy, const int64_t *ids, float *dtable, int M, int V, int D) {
    /* part boundaries on cache-line boundaries of the table's first row (and of
     * every row when D is a multiple of 16), so two threads never write one line */
    int shift = (int)((64 - (uintptr_t)dtable % 64) % 64 / sizeof(float));
    int P = hr_num_threads(), nunits = (D - shift + EMB_UNIT - 1) / EMB_UNIT + 1;
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int v = 0; v < V; v++) memset(dtable + (size_t)v * D, 0, (size_t)D * sizeof(float));
        #pragma omp for schedule(static)
        for (int p = 0; p < P; p++) {
            long u0, u1;
            hr_partition(nunits, P, p, &u0, &u1);
            /* unit 0 is columns [0, shift), unit k >= 1 starts at shift + (k-1) EMB_UNIT */
            int d0 = u0 == 0 ? 0 : HR_MIN(D, shift + ((int)u0 - 1) * EMB_UNIT);
            int d1 = u1 == 0 ? 0 : HR_MIN(D, shift + ((int)u1 - 1) * EMB_UNIT);
            for (int m = 0; m < M; m++) {
                float *dst = dtable + (size_t)ids[m] * D;
                const float *src = dy + (size_t)m * D;
                for (int d = d0; d < d1; d++) dst[d] += src[d];
            }
        }
    }
}
