/* Softmax cross-entropy, as llm.c's fused softmax + crossentropy, with the
 * max-shift for stability. The targets are checked to lie in [0, C) by the
 * Python wrapper. */
#include "common.h"
#include "vmath.h"
#include "losses.h"

static inline float ce_row_max(const float *x, int C) {
    int c = 0;
    float mx = -INFINITY;
#ifdef HR_AVX2
    if (C >= 8) {
        __m256 acc = _mm256_loadu_ps(x);
        for (c = 8; c + 8 <= C; c += 8) acc = _mm256_max_ps(acc, _mm256_loadu_ps(x + c));
        mx = hr_hmax256(acc);
    }
#endif
    for (; c < C; c++) mx = HR_MAX(mx, x[c]);
    return mx;
}

/* p[c] = e^{x[c] - mx}; returns Σ_c p[c]. The exponential dominates a row, so
 * the AVX-512 build takes 16 lanes at a time here before the 8-lane loop. */
static inline float ce_row_exp(const float *x, float mx, float *p, int C) {
    int c = 0;
    float s = 0.0f;
#ifdef HR_AVX512
    __m512 acc16 = _mm512_setzero_ps(), mv16 = _mm512_set1_ps(mx);
    for (; c + 16 <= C; c += 16) {
        __m512 e = hr_exp512(_mm512_sub_ps(_mm512_loadu_ps(x + c), mv16));
        _mm512_storeu_ps(p + c, e);
        acc16 = _mm512_add_ps(acc16, e);
    }
    s = _mm512_reduce_add_ps(acc16);
#endif
#ifdef HR_AVX2
    __m256 acc = _mm256_setzero_ps(), mv = _mm256_set1_ps(mx);
    for (; c + 8 <= C; c += 8) {
        __m256 e = hr_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + c), mv));
        _mm256_storeu_ps(p + c, e);
        acc = _mm256_add_ps(acc, e);
    }
    s += hr_hsum256(acc);
#endif
    for (; c < C; c++) {
        p[c] = hr_expf(x[c] - mx);
        s += p[c];
    }
    return s;
}

static inline void ce_row_scale(float *p, float a, int C) {
    int c = 0;
#ifdef HR_AVX2
    __m256 av = _mm256_set1_ps(a);
    for (; c + 8 <= C; c += 8) _mm256_storeu_ps(p + c, _mm256_mul_ps(_mm256_loadu_ps(p + c), av));
#endif
    for (; c < C; c++) p[c] *= a;
}

/* logits (M,C), targets (M,) -> probs (M,C) = softmax(logits), row_loss (M,)
 * = logsumexp(logits[m]) - logits[m, targets[m]]; returns the mean of row_loss,
 * summed in float64 in row order (the same for any thread count). */
double hr_cross_entropy_forward(const float *logits, const int64_t *targets, float *probs, float *row_loss, int M,
                                int C) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = logits + (size_t)m * C;
        float *p = probs + (size_t)m * C;
        float mx = ce_row_max(x, C);
        float s = ce_row_exp(x, mx, p, C);
        ce_row_scale(p, 1.0f / s, C);
        row_loss[m] = logf(s) + mx - x[targets[m]];
    }
    double total = 0.0;
    for (int m = 0; m < M; m++) total += row_loss[m];
    return total / M;
}

/* probs (M,C), targets (M,) -> dlogits (M,C) = (probs - onehot(targets)) / M */
void hr_cross_entropy_backward(const float *probs, const int64_t *targets, float *dlogits, int M, int C) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *p = probs + (size_t)m * C;
        float *g = dlogits + (size_t)m * C;
        int c = 0;
#ifdef HR_AVX2
        __m256 mv = _mm256_set1_ps((float)M);
        for (; c + 8 <= C; c += 8) _mm256_storeu_ps(g + c, _mm256_div_ps(_mm256_loadu_ps(p + c), mv));
#endif
        for (; c < C; c++) g[c] = p[c] / (float)M;
        g[targets[m]] = (p[targets[m]] - 1.0f) / (float)M;
    }
}
