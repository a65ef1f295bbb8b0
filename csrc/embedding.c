/* Token embedding. The ids are checked to lie in [0, V) by the Python wrapper. */
#include <string.h>
#include "common.h"
#include "embedding.h"

/* Column block owned by one thread in the backward pass: 16 floats, one cache line. */
#define EMB_COLS 16

/* ids (M,), table (V,D) -> y (M,D), y[m] = table[ids[m]] */
void hr_embedding_forward(const int64_t *ids, const float *table, float *y, int M, int D) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) memcpy(y + (size_t)m * D, table + (size_t)ids[m] * D, (size_t)D * sizeof(float));
}

/* dy (M,D), ids (M,) -> dtable (V,D), dtable[v] = Σ_{m: ids[m]=v} dy[m]
 * Two ids may repeat, so rows cannot be split between threads without a race.
 * Each thread owns a block of columns instead and walks m = 0..M-1 in order:
 * every sum runs in the same order for any thread count. The inner loop is a
 * plain float add that the compiler vectorises at each ISA level. */
void hr_embedding_backward(const float *dy, const int64_t *ids, float *dtable, int M, int V, int D) {
    int nblocks = (D + EMB_COLS - 1) / EMB_COLS;
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int v = 0; v < V; v++) memset(dtable + (size_t)v * D, 0, (size_t)D * sizeof(float));
        #pragma omp for schedule(static)
        for (int blk = 0; blk < nblocks; blk++) {
            int d0 = blk * EMB_COLS, d1 = HR_MIN(D, d0 + EMB_COLS);
            for (int m = 0; m < M; m++) {
                float *dst = dtable + (size_t)ids[m] * D;
                const float *src = dy + (size_t)m * D;
                for (int d = d0; d < d1; d++) dst[d] += src[d];
            }
        }
    }
}
