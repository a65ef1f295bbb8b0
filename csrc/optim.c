#include "common.h"
#include "simd.h"
#include "optim.h"

/* sum_squares splits x into this many fixed parts, whatever the thread count,
 * and adds their float64 partials in part order: the result depends on n only. */
#define OPT_PARTS 64

/* x (n) -> Σ x² accumulated in float64 */
double hr_sum_squares(const float *x, long n) {
    double partial[OPT_PARTS];
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < OPT_PARTS; p++) {
        long i, end;
        hr_partition(n, OPT_PARTS, p, &i, &end);
        double s = 0.0;
#ifdef HR_AVX2
        __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
        for (; i + 8 <= end; i += 8) {
            __m256 xv = _mm256_loadu_ps(x + i);
            __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
            acc0 = _mm256_fmadd_pd(lo, lo, acc0);
            acc1 = _mm256_fmadd_pd(hi, hi, acc1);
        }
        __m256d acc = _mm256_add_pd(acc0, acc1);
        __m128d h = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
        s = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
#endif
        for (; i < end; i++) s += (double)x[i] * x[i];
        partial[p] = s;
    }
    double total = 0.0;
    for (int p = 0; p < OPT_PARTS; p++) total += partial[p];
    return total;
}

/* param, grad, m, v (n); m, v, param updated in place (torch.optim.AdamW):
 * g = grad·grad_scale; m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²;
 * param -= lr (m/(1-β1^step) / (√(v/(1-β2^step)) + eps) + weight_decay param)
 * The bias corrections are folded into two per-step constants, as torch does
 * (step_size = lr/(1-β1^step), √v / √(1-β2^step)), leaving one division and
 * one square root per element. */
void hr_adamw_step(float *param, const float *grad, float *m, float *v, long n, int step, float lr, float beta1,
                   float beta2, float eps, float weight_decay, float grad_scale) {
    float inv_bc1 = (float)(1.0 / (1.0 - pow(beta1, step))), inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(beta2, step)));
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += HR_VW) {
        int r = (int)HR_MIN(HR_VW, n - i);
        hr_vec g = hr_vmul(hr_vload(grad + i, r), hr_vset1(grad_scale));
        hr_vec mi = hr_vfma(hr_vset1(beta1), hr_vload(m + i, r), hr_vmul(hr_vset1(1.0f - beta1), g));
        hr_vec vi = hr_vfma(hr_vset1(beta2), hr_vload(v + i, r), hr_vmul(hr_vset1(1.0f - beta2), hr_vmul(g, g)));
        hr_vec denom = hr_vfma(hr_vsqrt(vi), hr_vset1(inv_sqrt_bc2), hr_vset1(eps));
        hr_vec p = hr_vload(param + i, r);
        hr_vec upd = hr_vfma(hr_vset1(weight_decay), p, hr_vdiv(hr_vmul(mi, hr_vset1(inv_bc1)), denom));
        hr_vstore(m + i, mi, r);
        hr_vstore(v + i, vi, r);
        hr_vstore(param + i, hr_vfnma(hr_vset1(lr), upd, p), r);
    }
}
