#include "common.h"
#include "gemm.h"
#include "linear.h"

/* y = x wᵀ + b    x (M,K), w (N,K), b (N,) or NULL -> y (M,N)
 * The GEMM adds the bias as it stores each tile: no extra pass over y. */
int hr_linear_forward(const float *x, const float *w, const float *b, float *y, int M, int K, int N) {
    return hr_gemm(0, 1, M, N, K, x, K, w, K, b, 0.0f, y, N);
}

/* dx = dy w, dw = dyᵀ x, db[n] = Σ_m dy[m,n]
 * dy (M,N), x (M,K), w (N,K) -> dx (M,K), dw (N,K), db (N,) or NULL (no bias) */
int hr_linear_backward(const float *dy, const float *x, const float *w, float *dx, float *dw, float *db, int M, int K,
                       int N) {
    int status = hr_gemm(0, 0, M, K, N, dy, N, w, K, NULL, 0.0f, dx, K);
    if (status == HR_OK) status = hr_gemm(1, 0, N, K, M, dy, N, x, K, NULL, 0.0f, dw, K);
    if (status != HR_OK || !db) return status;
    /* Each thread owns whole 16-column (cache-line) groups of db and sums its
     * columns over m in order, so the result does not depend on the thread count. */
    const long groups = ((long)N + 15) / 16;
    #pragma omp parallel if ((long)M * N > (1L << 16))
    {
        long g_lo = 0, g_hi = groups;
#ifdef _OPENMP
        hr_partition(groups, omp_get_num_threads(), omp_get_thread_num(), &g_lo, &g_hi);
#endif
        const long n_lo = g_lo * 16, n_hi = HR_MIN(g_hi * 16, (long)N);
        for (long n = n_lo; n < n_hi; n++) db[n] = 0.0f;
        for (long m = 0; m < M; m++)
            for (long n = n_lo; n < n_hi; n++) db[n] += dy[m * N + n];
    }
    return HR_OK;
}
