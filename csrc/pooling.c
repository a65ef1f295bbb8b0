#include "common.h"
#include "pooling.h"

/* y[b,d] = (1/T) Σ_t x[b,t,d]    x (B,T,D) -> y (B,D) */
void hr_mean_pool_forward(const float *x, float *y, int B, int T, int D) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *yb = y + (size_t)b * D;
        for (int d = 0; d < D; d++) yb[d] = 0.0f;
        for (int t = 0; t < T; t++) {
            const float *xt = x + ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++) yb[d] += xt[d];
        }
        for (int d = 0; d < D; d++) yb[d] /= (float)T;
    }
}

/* dx[b,t,d] = dy[b,d] / T    dy (B,D) -> dx (B,T,D) */
void hr_mean_pool_backward(const float *dy, float *dx, int B, int T, int D) {
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *dxt = dx + ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++) dxt[d] = dy[(size_t)b * D + d] / (float)T;
        }
    }
}
