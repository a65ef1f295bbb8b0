/* Softmax cross-entropy, as llm.c's fused softmax + crossentropy, with the
 * max-shift for stability. The targets are checked to lie in [0, C) by the
 * Python wrapper. */
#include "common.h"
#include "simd.h"
#include "losses.h"

/* The dead lanes of a row's tail load as -inf: they neither raise the max nor,
 * as e^{-inf} = 0, add to the sum. */
static inline float ce_row_max(const float *x, int C) {
    hr_vec acc = hr_vset1(-INFINITY);
    HR_VLOOP(c, n, C, { acc = hr_vmax(acc, hr_vload_or(x + c, n, -INFINITY)); });
    return hr_vhmax(acc);
}

/* p[c] = e^{x[c] - mx}; returns Σ_c p[c]. */
static inline float ce_row_exp(const float *x, float mx, float *p, int C) {
    hr_vec acc = hr_vzero(), mv = hr_vset1(mx);
    HR_VLOOP(c, n, C, {
        hr_vec e = hr_vexp(hr_vsub(hr_vload_or(x + c, n, -INFINITY), mv));
        hr_vstore(p + c, e, n);
        acc = hr_vadd(acc, e);
    });
    return hr_vhsum(acc);
}

static inline void ce_row_scale(float *p, float a, int C) {
    hr_vec av = hr_vset1(a);
    HR_VLOOP(c, n, C, { hr_vstore(p + c, hr_vmul(hr_vload(p + c, n), av), n); });
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
        hr_vec mv = hr_vset1((float)M);
        HR_VLOOP(c, n, C, { hr_vstore(g + c, hr_vdiv(hr_vload(p + c, n), mv), n); });
        g[targets[m]] = (p[targets[m]] - 1.0f) / (float)M;
    }
}
