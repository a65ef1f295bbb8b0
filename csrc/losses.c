/* Softmax cross-entropy, as llm.c's fused softmax + crossentropy, with the
 * max-shift for stability. The targets are checked to lie in [0, C) by the
 * Python wrapper.
 *
 * Precision. A row's loss is log Σ_c e^{x_c − mx} − (x_t − mx) (mx the row's
 * max), never (log Σ + mx) − x_t: next to a large mx that float sum rounds a
 * small loss away (logits all 3e38 gave 0 instead of log C). And the sum is
 * split as Σ = k + rest, k the number of the row's maxima (their terms are
 * exactly e^0 = 1) and rest the sum of the other terms, each below 1: the loss
 * is log1p(k − 1 + rest) − (x_t − mx) in double, which keeps the digits of a
 * confident row's small rest that a float 1 + rest would round off (logits
 * near 200 were 23 % off). Non-finite logits follow IEEE arithmetic, as the
 * NumPy oracle: a -inf logit is a class of probability 0 (loss +inf when it is
 * the target), a nan or +inf logit makes its row's probabilities and the loss
 * nan (e^{x − mx} is nan for x = nan, and for x = mx = +inf). */
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

/* p[c] = e^{x[c] - mx}; *ones = Σ p[c] over the c with x[c] not below mx (the
 * maxima, each term exactly 1; a nan x[c] lands here too and makes it nan),
 * *rest = Σ p[c] over the others. */
static inline void ce_row_exp(const float *x, float mx, float *p, int C, float *ones, float *rest) {
    hr_vec acc_ones = hr_vzero(), acc_rest = hr_vzero(), mv = hr_vset1(mx), zero = hr_vzero();
    HR_VLOOP(c, n, C, {
        hr_vec xv = hr_vload_or(x + c, n, -INFINITY);
        hr_vec e = hr_vexp(hr_vsub(xv, mv));
        hr_vstore(p + c, e, n);
        acc_rest = hr_vadd(acc_rest, hr_vgt_select(mv, xv, e, zero));
        acc_ones = hr_vadd(acc_ones, hr_vgt_select(mv, xv, zero, e));
    });
    *ones = hr_vhsum(acc_ones);
    *rest = hr_vhsum(acc_rest);
}

static inline void ce_row_scale(float *p, float a, int C) {
    hr_vec av = hr_vset1(a);
    HR_VLOOP(c, n, C, { hr_vstore(p + c, hr_vmul(hr_vload(p + c, n), av), n); });
}

/* logits (M,C), targets (M,) -> probs (M,C) = softmax(logits), row_loss (M,)
 * = logsumexp(logits[m]) - logits[m, targets[m]] in double; returns the mean of
 * row_loss, summed in row order (the same for any thread count). */
double hr_cross_entropy_forward(const float *logits, const int64_t *targets, float *probs, double *row_loss, int M,
                                int C) {
    #pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = logits + (size_t)m * C;
        float *p = probs + (size_t)m * C;
        float mx = ce_row_max(x, C), ones, rest;
        ce_row_exp(x, mx, p, C, &ones, &rest);
        ce_row_scale(p, (float)(1.0 / ((double)ones + rest)), C);
        row_loss[m] = log1p(((double)ones - 1.0) + rest) - ((double)x[targets[m]] - mx);
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
