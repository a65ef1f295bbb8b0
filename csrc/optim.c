#include "common.h"
#include "vmath.h"
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
 * one square root per element. Blocks of 8 elements: whole blocks take the
 * AVX2 path, the last partial block (every block in the portable build) the
 * scalar one. */
void hr_adamw_step(float *param, const float *grad, float *m, float *v, long n, int step, float lr, float beta1,
                   float beta2, float eps, float weight_decay, float grad_scale) {
    float inv_bc1 = (float)(1.0 / (1.0 - pow(beta1, step))), inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(beta2, step)));
    #pragma omp parallel for schedule(static)
    for (long i0 = 0; i0 < n; i0 += 8) {
#ifdef HR_AVX2
        if (i0 + 8 <= n) {
            __m256 g = _mm256_mul_ps(_mm256_loadu_ps(grad + i0), _mm256_set1_ps(grad_scale));
            __m256 mi = _mm256_fmadd_ps(_mm256_set1_ps(beta1), _mm256_loadu_ps(m + i0),
                                        _mm256_mul_ps(_mm256_set1_ps(1.0f - beta1), g));
            __m256 vi = _mm256_fmadd_ps(_mm256_set1_ps(beta2), _mm256_loadu_ps(v + i0),
                                        _mm256_mul_ps(_mm256_set1_ps(1.0f - beta2), _mm256_mul_ps(g, g)));
            __m256 denom = _mm256_fmadd_ps(_mm256_sqrt_ps(vi), _mm256_set1_ps(inv_sqrt_bc2), _mm256_set1_ps(eps));
            __m256 p = _mm256_loadu_ps(param + i0);
            __m256 upd = _mm256_fmadd_ps(_mm256_set1_ps(weight_decay), p,
                                         _mm256_div_ps(_mm256_mul_ps(mi, _mm256_set1_ps(inv_bc1)), denom));
            _mm256_storeu_ps(m + i0, mi);
            _mm256_storeu_ps(v + i0, vi);
            _mm256_storeu_ps(param + i0, _mm256_fnmadd_ps(_mm256_set1_ps(lr), upd, p));
            continue;
        }
#endif
        for (long i = i0; i < HR_MIN(i0 + 8, n); i++) {
            float g = grad[i] * grad_scale;
            float mi = beta1 * m[i] + (1.0f - beta1) * g;
            float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            param[i] -= lr * (mi * inv_bc1 / (sqrtf(vi) * inv_sqrt_bc2 + eps) + weight_decay * param[i]);
        }
    }
}
