/* LayerNorm and RMSNorm over the last axis, as in llm.c's layernorm_forward /
 * layernorm_backward, plus the RMS variant (no mean, no bias).
 *
 * Rows are independent in the forward pass and for dx, so threads split the
 * rows. dw and db sum over rows: there each thread owns a range of columns and
 * walks the rows in order, so every sum runs in the same order for any thread
 * count, and no partial sums need combining. */
#include "common.h"
#include "vmath.h"
#include "norms.h"

/* dw/db pass: threads split the columns in units of one cache line (16 floats),
 * and a thread accumulates up to NORM_CHUNK columns at once in a stack buffer
 * (private, so no false sharing), walking the rows contiguously. */
#define NORM_UNIT 16
#define NORM_CHUNK 256

/* Σ_d a[d] (two accumulators halve the dependency chain for short rows) */
static inline float norm_sum(const float *a, int D) {
    int d = 0;
    float s = 0.0f;
#ifdef HR_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; d + 16 <= D; d += 16) {
        acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(a + d));
        acc1 = _mm256_add_ps(acc1, _mm256_loadu_ps(a + d + 8));
    }
    if (d + 8 <= D) {
        acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(a + d));
        d += 8;
    }
    s = hr_hsum256(_mm256_add_ps(acc0, acc1));
#endif
    for (; d < D; d++) s += a[d];
    return s;
}

/* Σ_d (a[d] - c)² */
static inline float norm_centred_sumsq(const float *a, float c, int D) {
    int d = 0;
    float s = 0.0f;
#ifdef HR_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), cv = _mm256_set1_ps(c);
    for (; d + 16 <= D; d += 16) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + d), cv), t1 = _mm256_sub_ps(_mm256_loadu_ps(a + d + 8), cv);
        acc0 = _mm256_fmadd_ps(t0, t0, acc0);
        acc1 = _mm256_fmadd_ps(t1, t1, acc1);
    }
    if (d + 8 <= D) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + d), cv);
        acc0 = _mm256_fmadd_ps(t0, t0, acc0);
        d += 8;
    }
    s = hr_hsum256(_mm256_add_ps(acc0, acc1));
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
        sgx += g * ((x[d] - c) * r);
    }
    *sum_g = sg;
    *sum_gx = sgx;
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
    for (; d < D; d++) dx[d] = r * (dy[d] * w[d] - gmean - (x[d] - c) * r * gxmean);
}

/* dw[d] = Σ_m dy[m,d] x̂[m,d], db[d] = Σ_m dy[m,d] (db may be NULL) for d in
 * [d0, d1), rows in order; centre is NULL for RMSNorm (x̂ = x rstd). d0 is a
 * multiple of NORM_UNIT, so column d takes the vector path exactly when
 * d < D - D % 8, whichever thread owns it: the bits do not depend on the split. */
static void norm_param_grads(const float *dy, const float *x, const float *centre, const float *rstd, float *dw,
                             float *db, int M, int D, int d0, int d1) {
    float aw[NORM_CHUNK], ab[NORM_CHUNK];
    for (int c0 = d0; c0 < d1; c0 += NORM_CHUNK) {
        int c1 = HR_MIN(d1, c0 + NORM_CHUNK);
        for (int j = 0; j < c1 - c0; j++) aw[j] = ab[j] = 0.0f;
        for (int m = 0; m < M; m++) {
            const float *dym = dy + (size_t)m * D, *xm = x + (size_t)m * D;
            float c = centre ? centre[m] : 0.0f, r = rstd[m];
            int d = c0;
#ifdef HR_AVX2
            __m256 cv = _mm256_set1_ps(c), rv = _mm256_set1_ps(r);
            for (; d + 8 <= c1; d += 8) {
                __m256 g = _mm256_loadu_ps(dym + d);
                __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xm + d), cv), rv);
                _mm256_storeu_ps(aw + d - c0, _mm256_fmadd_ps(g, xhat, _mm256_loadu_ps(aw + d - c0)));
                _mm256_storeu_ps(ab + d - c0, _mm256_add_ps(g, _mm256_loadu_ps(ab + d - c0)));
            }
#endif
            for (; d < c1; d++) {
                aw[d - c0] += dym[d] * ((xm[d] - c) * r);
                ab[d - c0] += dym[d];
            }
        }
        for (int d = c0; d < c1; d++) {
            dw[d] = aw[d - c0];
            if (db) db[d] = ab[d - c0];
        }
    }
}

/* Both backward passes: dx by rows, then dw/db by column ranges (P parts). */
static void norm_backward(const float *dy, const float *x, const float *w, const float *centre, const float *rstd,
                          float *dx, float *dw, float *db, int M, int D) {
    int P = hr_num_threads(), nunits = (D + NORM_UNIT - 1) / NORM_UNIT;
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int m = 0; m < M; m++) {
            size_t off = (size_t)m * D;
            float c = centre ? centre[m] : 0.0f, sg, sgx;
            norm_row_grad_sums(dy + off, x + off, w, c, rstd[m], D, &sg, &sgx);
            /* RMSNorm has no mean to subtract, so no Σ g term */
            norm_dx(dy + off, x + off, w, c, rstd[m], centre ? sg / (float)D : 0.0f, sgx / (float)D, dx + off, D);
        }
        #pragma omp for schedule(static)
        for (int p = 0; p < P; p++) {
            long u0, u1;
            hr_partition(nunits, P, p, &u0, &u1);
            norm_param_grads(dy, x, centre, rstd, dw, db, M, D, (int)u0 * NORM_UNIT, HR_MIN(D, (int)u1 * NORM_UNIT));
        }
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
    norm_backward(dy, x, w, mean, rstd, dx, dw, db, M, D);
}

/* x (M,D), w (D,) -> y (M,D), rstd (M,) */
void hr_rmsnorm_forward(const float *x, const float *w, float *y, float *rstd, int M, int D, float eps) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *xm = x + (size_t)m * D;
        float r = 1.0f / sqrtf(norm_centred_sumsq(xm, 0.0f, D) / (float)D + eps);
        norm_apply(xm, w, NULL, 0.0f, r, y + (size_t)m * D, D);
        rstd[m] = r;
    }
}

/* dy, x (M,D), w (D,), rstd (M,) -> dx (M,D), dw (D,) */
void hr_rmsnorm_backward(const float *dy, const float *x, const float *w, const float *rstd, float *dx, float *dw,
                         int M, int D) {
    norm_backward(dy, x, w, NULL, rstd, dx, dw, NULL, M, D);
}
