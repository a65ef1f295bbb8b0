/* Element-wise activations. Each one is written once, on `hr_vec` (simd.h):
 * 16 floats (AVX-512), 8 floats (AVX2+FMA) or one float (portable build). The
 * last n % HR_VW elements go through masked loads and stores, so every element
 * takes the same arithmetic. */
#include <math.h>
#include "common.h"
#include "simd.h"
#include "activations.h"

#define ACT_GELU_C 0.7978845608028654f /* √(2/π) */
#define ACT_GELU_A 0.044715f
#define ACT_SOFTPLUS_THRESHOLD 20.0f

/* σ(x), and σ(x)σ(-x) = σ'(x) in *dsig, from e = e^{-|x|} ∈ [0, 1]:
 * σ(|x|) = 1/(1+e), σ(-|x|) = e/(1+e). The exponential never overflows, so a
 * large |x| gives exactly 0 or 1 (and σ' = 0), never inf/inf or a clamped
 * e^88 that would leave x σ(x) wrong for x near -FLT_MAX. */
static inline hr_vec act_sigmoid(hr_vec x, hr_vec *dsig) {
    hr_vec e = hr_vexp(hr_vsub(hr_vset1(0.0f), hr_vabs(x)));
    hr_vec r = hr_vdiv(hr_vset1(1.0f), hr_vadd(hr_vset1(1.0f), e));
    hr_vec er = hr_vmul(e, r);
    *dsig = hr_vmul(er, r);
    return hr_vgt_select(hr_vset1(0.0f), x, er, r);
}

/* log(1 + e) for e ∈ [0, 1], as 2 atanh(s) with s = e/(2+e) ∈ [0, 1/3]: the
 * odd series 2(s + s³/3 + ... + s¹⁵/15) truncates below 2e-9 relative, and
 * s is formed without the cancellation of log(1+e) near e = 0. */
static inline hr_vec act_log1p_unit(hr_vec e) {
    hr_vec s = hr_vdiv(e, hr_vadd(hr_vset1(2.0f), e));
    hr_vec s2 = hr_vmul(s, s);
    hr_vec p = hr_vset1(1.0f / 15.0f);
    p = hr_vfma(p, s2, hr_vset1(1.0f / 13.0f));
    p = hr_vfma(p, s2, hr_vset1(1.0f / 11.0f));
    p = hr_vfma(p, s2, hr_vset1(1.0f / 9.0f));
    p = hr_vfma(p, s2, hr_vset1(1.0f / 7.0f));
    p = hr_vfma(p, s2, hr_vset1(1.0f / 5.0f));
    p = hr_vfma(p, s2, hr_vset1(1.0f / 3.0f));
    p = hr_vfma(p, s2, hr_vset1(1.0f));
    return hr_vmul(hr_vadd(s, s), p);
}

/* GELU (tanh form) as ½ x (1 + tanh u) = x σ(2u), u = √(2/π)(x + 0.044715 x³):
 * the same function, with σ accurate for large |u| of either sign. Then
 * dy/dx = σ(2u) + x · 2σ'(2u) · √(2/π)(1 + 3·0.044715 x²). */
static inline hr_vec act_gelu_sigmoid(hr_vec x, hr_vec *dsig) {
    hr_vec x3 = hr_vmul(hr_vmul(x, x), x);
    hr_vec two_u = hr_vmul(hr_vset1(2.0f * ACT_GELU_C), hr_vfma(hr_vset1(ACT_GELU_A), x3, x));
    return act_sigmoid(two_u, dsig);
}

static inline hr_vec act_gelu(hr_vec x) {
    hr_vec dsig;
    return hr_vmul(x, act_gelu_sigmoid(x, &dsig));
}

static inline hr_vec act_gelu_grad(hr_vec x) {
    hr_vec dsig, sig = act_gelu_sigmoid(x, &dsig);
    /* σ'(2u) is exactly 0 for |x| >= 10, so clamping x there changes nothing
     * but keeps x (1 + 3a x²) finite (no 0 · inf) up to FLT_MAX. */
    hr_vec xc = hr_vmin(hr_vmax(x, hr_vset1(-10.0f)), hr_vset1(10.0f));
    hr_vec poly = hr_vfma(hr_vset1(3.0f * ACT_GELU_A), hr_vmul(xc, xc), hr_vset1(1.0f));
    hr_vec corr = hr_vmul(hr_vmul(hr_vset1(2.0f * ACT_GELU_C), xc), hr_vmul(poly, dsig));
    return hr_vadd(sig, corr);
}

/* d/dx x σ(x) = σ(x) + x σ'(x) */
static inline hr_vec act_silu_grad(hr_vec x) {
    hr_vec dsig, sig = act_sigmoid(x, &dsig);
    return hr_vfma(x, dsig, sig);
}

/* log(1 + eˣ) = max(x, 0) + log(1 + e^{-|x|}), and x itself above the threshold */
static inline hr_vec act_softplus(hr_vec x) {
    hr_vec e = hr_vexp(hr_vsub(hr_vset1(0.0f), hr_vabs(x)));
    hr_vec y = hr_vadd(hr_vmax(x, hr_vset1(0.0f)), act_log1p_unit(e));
    return hr_vgt_select(x, hr_vset1(ACT_SOFTPLUS_THRESHOLD), x, y);
}

/* x (n) -> y (n) */
void hr_gelu_forward(const float *x, float *y, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i += HR_VW) {
            int r = (int)HR_MIN(HR_VW, n - i);
            hr_vstore(y + i, act_gelu(hr_vload(x + i, r)), r);
        });
}

/* dy, x (n) -> dx (n) */
void hr_gelu_backward(const float *dy, const float *x, float *dx, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i += HR_VW) {
            int r = (int)HR_MIN(HR_VW, n - i);
            hr_vstore(dx + i, hr_vmul(hr_vload(dy + i, r), act_gelu_grad(hr_vload(x + i, r))), r);
        });
}

/* Exact GELU, y = x Φ(x) with Φ(x) = ½ erfc(−x/√2) (torch's GELU; transformers' hidden_act "gelu"), and
 * dy/dx = Φ(x) + x φ(x), φ(x) = e^{−x²/2}/√(2π). One element at a time through libm's erfcf (simd.h has
 * no vector erf; this MLP kind is for converted models, not the hot path of training). erfc rather than
 * 1 + erf keeps Φ's relative precision in the left tail; φ is exactly 0 past |x| = 40, where x is
 * clamped so that x φ(x) stays 0 (no inf · 0) up to ±inf. */
static inline float act_phi(float x) {
    return 0.5f * erfcf(-x * 0.70710678118654752f);
}

/* x (n) -> y (n) */
void hr_gelu_erf_forward(const float *x, float *y, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i++) y[i] = x[i] * act_phi(x[i]););
}

/* dy, x (n) -> dx (n) */
void hr_gelu_erf_backward(const float *dy, const float *x, float *dx, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i++) {
            float xc = HR_MIN(HR_MAX(x[i], -40.0f), 40.0f);
            dx[i] = dy[i] * (act_phi(x[i]) + xc * expf(-0.5f * xc * xc) * 0.39894228040143268f);
        });
}

/* x (n) -> y (n) */
void hr_silu_forward(const float *x, float *y, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i += HR_VW) {
            int r = (int)HR_MIN(HR_VW, n - i);
            hr_vec xv = hr_vload(x + i, r), dsig;
            hr_vstore(y + i, hr_vmul(xv, act_sigmoid(xv, &dsig)), r);
        });
}

/* dy, x (n) -> dx (n) */
void hr_silu_backward(const float *dy, const float *x, float *dx, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i += HR_VW) {
            int r = (int)HR_MIN(HR_VW, n - i);
            hr_vstore(dx + i, hr_vmul(hr_vload(dy + i, r), act_silu_grad(hr_vload(x + i, r))), r);
        });
}

/* x, z (n) -> y = x z σ(z) (n) */
void hr_silu_gate_forward(const float *x, const float *z, float *y, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i += HR_VW) {
            int r = (int)HR_MIN(HR_VW, n - i);
            hr_vec zv = hr_vload(z + i, r), dsig;
            hr_vstore(y + i, hr_vmul(hr_vload(x + i, r), hr_vmul(zv, act_sigmoid(zv, &dsig))), r);
        });
}

/* dy, x, z (n) -> dx = dy z σ(z), dz = dy x (σ(z) + z σ'(z)) (n) */
void hr_silu_gate_backward(const float *dy, const float *x, const float *z, float *dx, float *dz, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i += HR_VW) {
            int r = (int)HR_MIN(HR_VW, n - i);
            hr_vec dyv = hr_vload(dy + i, r), zv = hr_vload(z + i, r), dsig;
            hr_vec sig = act_sigmoid(zv, &dsig);
            hr_vstore(dx + i, hr_vmul(dyv, hr_vmul(zv, sig)), r);
            hr_vstore(dz + i, hr_vmul(hr_vmul(dyv, hr_vload(x + i, r)), hr_vfma(zv, dsig, sig)), r);
        });
}

/* x (n) -> y (n) */
void hr_softplus_forward(const float *x, float *y, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i += HR_VW) {
            int r = (int)HR_MIN(HR_VW, n - i);
            hr_vstore(y + i, act_softplus(hr_vload(x + i, r)), r);
        });
}

/* dy, x (n) -> dx = dy σ(x), dy above the threshold (n) */
void hr_softplus_backward(const float *dy, const float *x, float *dx, long n) {
    HR_PARALLEL_FOR(n >= HR_PARALLEL_MIN,
        for (long i = 0; i < n; i += HR_VW) {
            int r = (int)HR_MIN(HR_VW, n - i);
            hr_vec xv = hr_vload(x + i, r), dyv = hr_vload(dy + i, r), dsig;
            hr_vec grad = hr_vgt_select(xv, hr_vset1(ACT_SOFTPLUS_THRESHOLD), hr_vset1(1.0f), act_sigmoid(xv, &dsig));
            hr_vstore(dx + i, hr_vmul(dyv, grad), r);
        });
}
