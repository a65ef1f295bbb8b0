/* LayerNorm and RMSNorm over the last axis, as in llm.c's layernorm_forward /
 * layernorm_backward, plus the RMS variant (no mean, no bias).
 *
 * Rows are independent in the forward pass and for dx, so threads split the
 * rows. dw and db sum over rows: there each thread owns a block of columns and
 * walks the rows in order, so the sums are bit-for-bit the same for any
 * thread count, with no scratch memory. */
#include "common.h"
#include "vmath.h"
#include "norms.h"

/* Column block owned by one thread in the dw/db pass: 16 floats, one cache line. */
#define NORM_COLS 16

/* Σ_d a[d] b[d] */
static inline float norm_dot(const float *a, const float *b, int D) {
    int d = 0;
    float s = 0.0f;
#ifdef HR_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (; d + 8 <= D; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + d), _mm256_loadu_ps(b + d), acc);
    s = hr_hsum256(acc);
#endif
    for (; d < D; d++) s += a[d] * b[d];
    return s;
}

static inline float norm_sum(const float *a, int D) {
    int d = 0;
    float s = 0.0f;
#ifdef HR_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (; d + 8 <= D; d += 8) acc = _mm256_add_ps(_mm256_loadu_ps(a + d), acc);
    s = hr_hsum256(acc);
#endif
    for (; d < D; d++) s += a[d];
    return s;
}

/* Σ_d (a[d] - c)² */
static inline float norm_centred_sumsq(const float *a, float c, int D) {
    int d = 0;
    float s = 0.0f;
#ifdef HR_AVX2
    __m256 acc = _mm256_setzero_ps(), cv = _mm256_set1_ps(c);
    for (; d + 8 <= D; d += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(a + d), cv);
        acc = _mm256_fmadd_ps(t, t, acc);
    }
    s = hr_hsum256(acc);
#endif
    for (; d < D; d++) s += (a[d] - c) * (a[d] - c);
    return s;
}

/* y[d] = (x[d] - c) * r * w[d] + b[d], b may be NULL */
static inline void norm_apply(const float *x, const float *w, const float *b, float c, float r, float *y, int D) {
    int d = 0;
#ifdef HR_AVX2
    __m256 cv = _mm256_set1_ps(c), rv = _mm256_set1_ps(r);
    for (; d + 8 <= D; d += 8) {
        __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + d), cv), rv), _mm256_loadu_ps(w + d));
        if (b) t = _mm256_add_ps(t, _mm256_loadu_ps(b + d));
        _mm256_storeu_ps(y + d, t);
    }
#endif
    for (; d < D; d++) y[d] = (x[d] - c) * r * w[d] + (b ? b[d] : 0.0f);
}

/* dx[d] = r (g[d] - gmean - x̂[d] gxmean), g = dy w, x̂ = (x - c) r */
static inline void norm_dx(const float *dy, const float *x, const float *w, float c, float r, float gmean,
                           float gxmean, float *dx, int D) {
    int d = 0;
#ifdef HR_AVX2
    __m256 cv = _mm256_set1_ps(c), rv = _mm256_set1_ps(r), gm = _mm256_set1_ps(gmean), gxm = _mm256_set1_ps(gxmean);
    for (; d + 8 <= D; d += 8) {
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + d), _mm256_loadu_ps(w + d));
        __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + d), cv), rv);
        __m256 t = _mm256_fnmadd_ps(xhat, gxm, _mm256_sub_ps(g, gm));
        _mm256_storeu_ps(dx + d, _mm256_mul_ps(rv, t));
    }
#endif
    for (; d < D; d++) {
        float xhat = (x[d] - c) * r;
        dx[d] = r * (dy[d] * w[d] - gmean - xhat * gxmean);
    }
}

/* For one row, with g = dy w and x̂ = (x - c) r: Σ_d g and Σ_d g x̂. */
static inline void norm_row_grad_sums(const float *dy, const float *x, const float *w, float c, float r, int D,
                                      float *sum_g, float *sum_gx) {
    int d = 0;
    float sg = 0.0f, sgx = 0.0f;
#ifdef HR_AVX2
    __m256 ag = _mm256_setzero_ps(), agx = _mm256_setzero_ps(), cv = _mm256_set1_ps(c), rv = _mm256_set1_ps(r);
    for (; d + 8 <= D; d += 8) {
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + d), _mm256_loadu_ps(w + d));
        __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + d), cv), rv);
        ag = _mm256_add_ps(ag, g);
        agx = _mm256_fmadd_ps(g, xhat, agx);
    }
    sg = hr_hsum256(ag);
    sgx = hr_hsum256(agx);
#endif
    for (; d < D; d++) {
        float g = dy[d] * w[d];
        sg += g;
        sgx += g * (x[d] - c) * r;
    }
    *sum_g = sg;
    *sum_gx = sgx;
}

/* dw[d] = Σ_m dy[m,d] x̂[m,d], db[d] = Σ_m dy[m,d] (db may be NULL) for d in
 * [d0, d1), rows walked in order; centre is NULL for RMSNorm (x̂ = x rstd). */
static void norm_param_grads(const float *dy, const float *x, const float *centre, const float *rstd, float *dw,
                             float *db, int M, int D, int d0, int d1) {
    int d = d0;
#ifdef HR_AVX2
    for (; d + 8 <= d1; d += 8) {
        __m256 aw = _mm256_setzero_ps(), ab = _mm256_setzero_ps();
        for (int m = 0; m < M; m++) {
            const float *dym = dy + (size_t)m * D + d, *xm = x + (size_t)m * D + d;
            __m256 xhat = _mm256_loadu_ps(xm);
            if (centre) xhat = _mm256_sub_ps(xhat, _mm256_set1_ps(centre[m]));
            xhat = _mm256_mul_ps(xhat, _mm256_set1_ps(rstd[m]));
            __m256 g = _mm256_loadu_ps(dym);
            aw = _mm256_fmadd_ps(g, xhat, aw);
            ab = _mm256_add_ps(ab, g);
        }
        _mm256_storeu_ps(dw + d, aw);
        if (db) _mm256_storeu_ps(db + d, ab);
    }
#endif
    for (; d < d1; d++) {
        float aw = 0.0f, ab = 0.0f;
        for (int m = 0; m < M; m++) {
            float g = dy[(size_t)m * D + d];
            aw += g * (x[(size_t)m * D + d] - (centre ? centre[m] : 0.0f)) * rstd[m];
            ab += g;
        }
        dw[d] = aw;
        if (db) db[d] = ab;
    }
}

/* x (M,D), w (D,), b (D,) -> y (M,D), mean (M,), rstd (M,) */
void hr_layernorm_forward(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd, int M,
                          int D, float eps) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * D;
        float mu = norm_sum(xm, D) / (float)D;
        /* two passes (mean, then centred squares): no cancellation for rows with a large mean */
        float r = 1.0f / sqrtf(norm_centred_sumsq(xm, mu, D) / (float)D + eps);
        norm_apply(xm, w, b, mu, r, y + (size_t)m * D, D);
        mean[m] = mu;
        rstd[m] = r;
    }
}

/* dy, x (M,D), w (D,), mean, rstd (M,) -> dx (M,D), dw (D,), db (D,) */
void hr_layernorm_backward(const float *dy, const float *x, const float *w, const float *mean, const float *rstd,
                           float *dx, float *dw, float *db, int M, int D) {
    int nblocks = (D + NORM_COLS - 1) / NORM_COLS;
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int m = 0; m < M; m++) {
            size_t off = (size_t)m * D;
            float sg, sgx;
            norm_row_grad_sums(dy + off, x + off, w, mean[m], rstd[m], D, &sg, &sgx);
            norm_dx(dy + off, x + off, w, mean[m], rstd[m], sg / (float)D, sgx / (float)D, dx + off, D);
        }
        #pragma omp for schedule(static)
        for (int blk = 0; blk < nblocks; blk++)
            norm_param_grads(dy, x, mean, rstd, dw, db, M, D, blk * NORM_COLS, HR_MIN(D, (blk + 1) * NORM_COLS));
    }
}

/* x (M,D), w (D,) -> y (M,D), rstd (M,) */
void hr_rmsnorm_forward(const float *x, const float *w, float *y, float *rstd, int M, int D, float eps) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * D;
        float r = 1.0f / sqrtf(norm_dot(xm, xm, D) / (float)D + eps);
        norm_apply(xm, w, NULL, 0.0f, r, y + (size_t)m * D, D);
        rstd[m] = r;
    }
}

/* dy, x (M,D), w (D,), rstd (M,) -> dx (M,D), dw (D,) */
void hr_rmsnorm_backward(const float *dy, const float *x, const float *w, const float *rstd, float *dx, float *dw,
                         int M, int D) {
    int nblocks = (D + NORM_COLS - 1) / NORM_COLS;
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int m = 0; m < M; m++) {
            size_t off = (size_t)m * D;
            float sg, sgx;
            norm_row_grad_sums(dy + off, x + off, w, 0.0f, rstd[m], D, &sg, &sgx);
            norm_dx(dy + off, x + off, w, 0.0f, rstd[m], 0.0f, sgx / (float)D, dx + off, D);
        }
        #pragma omp for schedule(static)
        for (int blk = 0; blk < nblocks; blk++)
            norm_param_grads(dy, x, NULL, rstd, dw, NULL, M, D, blk * NORM_COLS, HR_MIN(D, (blk + 1) * NORM_COLS));
    }
}
