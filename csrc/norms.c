/* LayerNorm and RMSNorm over the last axis, as in llm.c's layernorm_forward /
 * layernorm_backward, plus the RMS variant (no mean, no bias).
 *
 * Rows are independent in the forward pass and for dx, so threads split the
 * rows. dw and db sum over rows: there each thread owns a range of columns and
 * walks the rows in order, so every sum runs in the same order for any thread
 * count, and no partial sums need combining. */
#include "common.h"
#include "simd.h"
#include "norms.h"

/* dw/db pass: threads split the columns in units of one cache line (16 floats),
 * and a thread accumulates up to NORM_CHUNK columns at once in a stack buffer
 * (private, so no false sharing), walking the rows contiguously. */
#define NORM_UNIT 16
#define NORM_CHUNK 256

/* Σ_d a[d] (two accumulators halve the dependency chain for short rows) */
static inline float norm_sum(const float *a, int D) {
    hr_vec acc0 = hr_vzero(), acc1 = hr_vzero();
    int d = 0;
    for (; d + 2 * HR_VW <= D; d += 2 * HR_VW) {
        acc0 = hr_vadd(acc0, hr_vload(a + d, HR_VW));
        acc1 = hr_vadd(acc1, hr_vload(a + d + HR_VW, HR_VW));
    }
    for (; d < D; d += HR_VW) acc0 = hr_vadd(acc0, hr_vload(a + d, D - d));
    return hr_vhsum(hr_vadd(acc0, acc1));
}

/* Σ_d (a[d] - c)²; the dead lanes of the tail load as c, adding 0 */
static inline float norm_centred_sumsq(const float *a, float c, int D) {
    hr_vec acc0 = hr_vzero(), acc1 = hr_vzero(), cv = hr_vset1(c);
    int d = 0;
    for (; d + 2 * HR_VW <= D; d += 2 * HR_VW) {
        hr_vec t0 = hr_vsub(hr_vload(a + d, HR_VW), cv), t1 = hr_vsub(hr_vload(a + d + HR_VW, HR_VW), cv);
        acc0 = hr_vfma(t0, t0, acc0);
        acc1 = hr_vfma(t1, t1, acc1);
    }
    for (; d < D; d += HR_VW) {
        hr_vec t0 = hr_vsub(hr_vload_or(a + d, D - d, c), cv);
        acc0 = hr_vfma(t0, t0, acc0);
    }
    return hr_vhsum(hr_vadd(acc0, acc1));
}

/* r = 1/√(Σ_d (a[d] - c)² / D + eps). A float32 square overflows past |a - c| ≈ 1.8e19, which would
 * give r = 0 and y = 0: such a row is summed again in double, where every float's square fits. Other
 * rows keep the vector float32 sum (a row holding ±inf stays at r = 0 either way). */
static inline float norm_rstd(const float *a, float c, int D, float eps) {
    float ss = norm_centred_sumsq(a, c, D);
    if (!isinf(ss)) return 1.0f / sqrtf(ss / (float)D + eps);
    double wide = 0.0;
    for (int d = 0; d < D; d++) {
        double t = (double)a[d] - (double)c;
        wide += t * t;
    }
    return (float)(1.0 / sqrt(wide / D + (double)eps));
}

/* y[d] = (x[d] - c) * r * w[d] + b[d], b may be NULL */
static inline void norm_apply(const float *x, const float *w, const float *b, float c, float r, float *y, int D) {
    hr_vec cv = hr_vset1(c), rv = hr_vset1(r);
    HR_VLOOP(d, n, D, {
        hr_vec t = hr_vmul(hr_vmul(hr_vsub(hr_vload(x + d, n), cv), rv), hr_vload(w + d, n));
        if (b) t = hr_vadd(t, hr_vload(b + d, n));
        hr_vstore(y + d, t, n);
    });
}

/* For one row, with g = dy w and x̂ = (x - c) r: Σ_d g and Σ_d g x̂ (dead lanes have g = 0). */
static inline void norm_row_grad_sums(const float *dy, const float *x, const float *w, float c, float r, int D,
                                      float *sum_g, float *sum_gx) {
    hr_vec ag = hr_vzero(), agx = hr_vzero(), cv = hr_vset1(c), rv = hr_vset1(r);
    HR_VLOOP(d, n, D, {
        hr_vec g = hr_vmul(hr_vload(dy + d, n), hr_vload(w + d, n));
        ag = hr_vadd(ag, g);
        agx = hr_vfma(g, hr_vmul(hr_vsub(hr_vload(x + d, n), cv), rv), agx);
    });
    *sum_g = hr_vhsum(ag);
    *sum_gx = hr_vhsum(agx);
}

/* dx[d] = r (g[d] - gmean - x̂[d] gxmean), g = dy w, x̂ = (x - c) r */
static inline void norm_dx(const float *dy, const float *x, const float *w, float c, float r, float gmean,
                           float gxmean, float *dx, int D) {
    hr_vec cv = hr_vset1(c), rv = hr_vset1(r), gm = hr_vset1(gmean), gxm = hr_vset1(gxmean);
    HR_VLOOP(d, n, D, {
        hr_vec g = hr_vmul(hr_vload(dy + d, n), hr_vload(w + d, n));
        hr_vec xhat = hr_vmul(hr_vsub(hr_vload(x + d, n), cv), rv);
        hr_vstore(dx + d, hr_vmul(rv, hr_vfnma(xhat, gxm, hr_vsub(g, gm))), n);
    });
}

/* dw[d] = Σ_m dy[m,d] x̂[m,d], db[d] = Σ_m dy[m,d] (db may be NULL) for d in
 * [d0, d1), rows in order; centre is NULL for RMSNorm (x̂ = x rstd). Each column
 * is one lane of its own accumulator, so its bits do not depend on the split. */
static void norm_param_grads(const float *dy, const float *x, const float *centre, const float *rstd, float *dw,
                             float *db, int M, int D, int d0, int d1) {
    float aw[NORM_CHUNK], ab[NORM_CHUNK];
    for (int c0 = d0; c0 < d1; c0 += NORM_CHUNK) {
        int c1 = HR_MIN(d1, c0 + NORM_CHUNK);
        for (int j = 0; j < c1 - c0; j++) aw[j] = ab[j] = 0.0f;
        for (int m = 0; m < M; m++) {
            const float *dym = dy + (size_t)m * D + c0, *xm = x + (size_t)m * D + c0;
            hr_vec cv = hr_vset1(centre ? centre[m] : 0.0f), rv = hr_vset1(rstd[m]);
            HR_VLOOP(j, n, c1 - c0, {
                hr_vec g = hr_vload(dym + j, n), xhat = hr_vmul(hr_vsub(hr_vload(xm + j, n), cv), rv);
                hr_vstore(aw + j, hr_vfma(g, xhat, hr_vload(aw + j, n)), n);
                hr_vstore(ab + j, hr_vadd(g, hr_vload(ab + j, n)), n);
            });
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
    HR_PARALLEL_FOR((long)M * D >= HR_PARALLEL_MIN,
        for (int m = 0; m < M; m++) {
            const float *xm = x + (size_t)m * D;
            float mu = norm_sum(xm, D) / (float)D;
            /* two passes (mean, then centred squares): no cancellation for rows with a large mean */
            float r = norm_rstd(xm, mu, D, eps);
            norm_apply(xm, w, b, mu, r, y + (size_t)m * D, D);
            mean[m] = mu;
            rstd[m] = r;
        });
}

/* dy, x (M,D), w (D,), mean, rstd (M,) -> dx (M,D), dw (D,), db (D,) */
void hr_layernorm_backward(const float *dy, const float *x, const float *w, const float *mean, const float *rstd,
                           float *dx, float *dw, float *db, int M, int D) {
    norm_backward(dy, x, w, mean, rstd, dx, dw, db, M, D);
}

/* x (M,D), w (D,) -> y (M,D), rstd (M,) */
void hr_rmsnorm_forward(const float *x, const float *w, float *y, float *rstd, int M, int D, float eps) {
    HR_PARALLEL_FOR((long)M * D >= HR_PARALLEL_MIN,
        for (int m = 0; m < M; m++) {
            const float *xm = x + (size_t)m * D;
            float r = norm_rstd(xm, 0.0f, D, eps);
            norm_apply(xm, w, NULL, 0.0f, r, y + (size_t)m * D, D);
            rstd[m] = r;
        });
}

/* dy, x (M,D), w (D,), rstd (M,) -> dx (M,D), dw (D,) */
void hr_rmsnorm_backward(const float *dy, const float *x, const float *w, const float *rstd, float *dx, float *dw,
                         int M, int D) {
    norm_backward(dy, x, w, NULL, rstd, dx, dw, NULL, M, D);
}
