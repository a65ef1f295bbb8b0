/* Element-wise activations. Each one is written once, on `act_v`: 16 floats
 * (AVX-512), 8 floats (AVX2+FMA) or one float (portable build), through the
 * few primitives below. The last n % ACT_W elements go through masked loads
 * and stores, so every element takes the same arithmetic. */
#include "common.h"
#include "vmath.h"
#include "activations.h"

#define ACT_GELU_C 0.7978845608028654f /* √(2/π) */
#define ACT_GELU_A 0.044715f
#define ACT_SOFTPLUS_THRESHOLD 20.0f

#if defined(HR_AVX512)
#define ACT_W 16
typedef __m512 act_v;
static inline act_v act_set(float a) { return _mm512_set1_ps(a); }
static inline act_v act_load(const float *p, int r) {
    return r == ACT_W ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps((__mmask16)((1u << r) - 1), p);
}
static inline void act_store(float *p, act_v v, int r) {
    if (r == ACT_W) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, (__mmask16)((1u << r) - 1), v);
}
static inline act_v act_add(act_v a, act_v b) { return _mm512_add_ps(a, b); }
static inline act_v act_sub(act_v a, act_v b) { return _mm512_sub_ps(a, b); }
static inline act_v act_mul(act_v a, act_v b) { return _mm512_mul_ps(a, b); }
static inline act_v act_div(act_v a, act_v b) { return _mm512_div_ps(a, b); }
static inline act_v act_fma(act_v a, act_v b, act_v c) { return _mm512_fmadd_ps(a, b, c); }
static inline act_v act_abs(act_v a) { return _mm512_abs_ps(a); }
static inline act_v act_max(act_v a, act_v b) { return _mm512_max_ps(a, b); }
static inline act_v act_min(act_v a, act_v b) { return _mm512_min_ps(a, b); }
static inline act_v act_exp(act_v a) { return hr_exp512(a); }
/* lanes of x > t take a, the others b */
static inline act_v act_gt_select(act_v x, act_v t, act_v a, act_v b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, t, _CMP_GT_OQ), b, a);
}
#elif defined(HR_AVX2)
#define ACT_W 8
typedef __m256 act_v;
static inline act_v act_set(float a) { return _mm256_set1_ps(a); }
static inline __m256i act_mask(int r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline act_v act_load(const float *p, int r) {
    return r == ACT_W ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, act_mask(r));
}
static inline void act_store(float *p, act_v v, int r) {
    if (r == ACT_W) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, act_mask(r), v);
}
static inline act_v act_add(act_v a, act_v b) { return _mm256_add_ps(a, b); }
static inline act_v act_sub(act_v a, act_v b) { return _mm256_sub_ps(a, b); }
static inline act_v act_mul(act_v a, act_v b) { return _mm256_mul_ps(a, b); }
static inline act_v act_div(act_v a, act_v b) { return _mm256_div_ps(a, b); }
static inline act_v act_fma(act_v a, act_v b, act_v c) { return _mm256_fmadd_ps(a, b, c); }
static inline act_v act_abs(act_v a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline act_v act_max(act_v a, act_v b) { return _mm256_max_ps(a, b); }
static inline act_v act_min(act_v a, act_v b) { return _mm256_min_ps(a, b); }
static inline act_v act_exp(act_v a) { return hr_exp256(a); }
static inline act_v act_gt_select(act_v x, act_v t, act_v a, act_v b) {
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, t, _CMP_GT_OQ));
}
#else
#define ACT_W 1
typedef float act_v;
static inline act_v act_set(float a) { return a; }
static inline act_v act_load(const float *p, int r) { (void)r; return *p; }
static inline void act_store(float *p, act_v v, int r) { (void)r; *p = v; }
static inline act_v act_add(act_v a, act_v b) { return a + b; }
static inline act_v act_sub(act_v a, act_v b) { return a - b; }
static inline act_v act_mul(act_v a, act_v b) { return a * b; }
static inline act_v act_div(act_v a, act_v b) { return a / b; }
static inline act_v act_fma(act_v a, act_v b, act_v c) { return a * b + c; }
static inline act_v act_abs(act_v a) { return fabsf(a); }
static inline act_v act_max(act_v a, act_v b) { return a > b ? a : b; }
static inline act_v act_min(act_v a, act_v b) { return a < b ? a : b; }
static inline act_v act_exp(act_v a) { return hr_expf(a); }
static inline act_v act_gt_select(act_v x, act_v t, act_v a, act_v b) { return x > t ? a : b; }
#endif

/* σ(x), and σ(x)σ(-x) = σ'(x) in *dsig, from e = e^{-|x|} ∈ [0, 1]:
 * σ(|x|) = 1/(1+e), σ(-|x|) = e/(1+e). The exponential never overflows, so a
 * large |x| gives exactly 0 or 1 (and σ' = 0), never inf/inf or a clamped
 * e^88 that would leave x σ(x) wrong for x near -FLT_MAX. */
static inline act_v act_sigmoid(act_v x, act_v *dsig) {
    act_v e = act_exp(act_sub(act_set(0.0f), act_abs(x)));
    act_v r = act_div(act_set(1.0f), act_add(act_set(1.0f), e));
    act_v er = act_mul(e, r);
    *dsig = act_mul(er, r);
    return act_gt_select(act_set(0.0f), x, er, r);
}

/* log(1 + e) for e ∈ [0, 1], as 2 atanh(s) with s = e/(2+e) ∈ [0, 1/3]: the
 * odd series 2(s + s³/3 + ... + s¹⁵/15) truncates below 2e-9 relative, and
 * s is formed without the cancellation of log(1+e) near e = 0. */
static inline act_v act_log1p_unit(act_v e) {
    act_v s = act_div(e, act_add(act_set(2.0f), e));
    act_v s2 = act_mul(s, s);
    act_v p = act_set(1.0f / 15.0f);
    p = act_fma(p, s2, act_set(1.0f / 13.0f));
    p = act_fma(p, s2, act_set(1.0f / 11.0f));
    p = act_fma(p, s2, act_set(1.0f / 9.0f));
    p = act_fma(p, s2, act_set(1.0f / 7.0f));
    p = act_fma(p, s2, act_set(1.0f / 5.0f));
    p = act_fma(p, s2, act_set(1.0f / 3.0f));
    p = act_fma(p, s2, act_set(1.0f));
    return act_mul(act_add(s, s), p);
}

/* GELU (tanh form) as ½ x (1 + tanh u) = x σ(2u), u = √(2/π)(x + 0.044715 x³):
 * the same function, with σ accurate for large |u| of either sign. Then
 * dy/dx = σ(2u) + x · 2σ'(2u) · √(2/π)(1 + 3·0.044715 x²). */
static inline act_v act_gelu_sigmoid(act_v x, act_v *dsig) {
    act_v x3 = act_mul(act_mul(x, x), x);
    act_v two_u = act_mul(act_set(2.0f * ACT_GELU_C), act_fma(act_set(ACT_GELU_A), x3, x));
    return act_sigmoid(two_u, dsig);
}

static inline act_v act_gelu(act_v x) {
    act_v dsig;
    return act_mul(x, act_gelu_sigmoid(x, &dsig));
}

static inline act_v act_gelu_grad(act_v x) {
    act_v dsig, sig = act_gelu_sigmoid(x, &dsig);
    /* σ'(2u) is exactly 0 for |x| >= 10, so clamping x there changes nothing
     * but keeps x (1 + 3a x²) finite (no 0 · inf) up to FLT_MAX. */
    act_v xc = act_min(act_max(x, act_set(-10.0f)), act_set(10.0f));
    act_v poly = act_fma(act_set(3.0f * ACT_GELU_A), act_mul(xc, xc), act_set(1.0f));
    act_v corr = act_mul(act_mul(act_set(2.0f * ACT_GELU_C), xc), act_mul(poly, dsig));
    return act_add(sig, corr);
}

/* d/dx x σ(x) = σ(x) + x σ'(x) */
static inline act_v act_silu_grad(act_v x) {
    act_v dsig, sig = act_sigmoid(x, &dsig);
    return act_fma(x, dsig, sig);
}

/* log(1 + eˣ) = max(x, 0) + log(1 + e^{-|x|}), and x itself above the threshold */
static inline act_v act_softplus(act_v x) {
    act_v e = act_exp(act_sub(act_set(0.0f), act_abs(x)));
    act_v y = act_add(act_max(x, act_set(0.0f)), act_log1p_unit(e));
    return act_gt_select(x, act_set(ACT_SOFTPLUS_THRESHOLD), x, y);
}

/* x (n) -> y (n) */
void hr_gelu_forward(const float *x, float *y, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += ACT_W) {
        int r = (int)HR_MIN(ACT_W, n - i);
        act_store(y + i, act_gelu(act_load(x + i, r)), r);
    }
}

/* dy, x (n) -> dx (n) */
void hr_gelu_backward(const float *dy, const float *x, float *dx, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += ACT_W) {
        int r = (int)HR_MIN(ACT_W, n - i);
        act_store(dx + i, act_mul(act_load(dy + i, r), act_gelu_grad(act_load(x + i, r))), r);
    }
}

/* x (n) -> y (n) */
void hr_silu_forward(const float *x, float *y, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += ACT_W) {
        int r = (int)HR_MIN(ACT_W, n - i);
        act_v xv = act_load(x + i, r), dsig;
        act_store(y + i, act_mul(xv, act_sigmoid(xv, &dsig)), r);
    }
}

/* dy, x (n) -> dx (n) */
void hr_silu_backward(const float *dy, const float *x, float *dx, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += ACT_W) {
        int r = (int)HR_MIN(ACT_W, n - i);
        act_store(dx + i, act_mul(act_load(dy + i, r), act_silu_grad(act_load(x + i, r))), r);
    }
}

/* x, z (n) -> y = x z σ(z) (n) */
void hr_silu_gate_forward(const float *x, const float *z, float *y, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += ACT_W) {
        int r = (int)HR_MIN(ACT_W, n - i);
        act_v zv = act_load(z + i, r), dsig;
        act_store(y + i, act_mul(act_load(x + i, r), act_mul(zv, act_sigmoid(zv, &dsig))), r);
    }
}

/* dy, x, z (n) -> dx = dy z σ(z), dz = dy x (σ(z) + z σ'(z)) (n) */
void hr_silu_gate_backward(const float *dy, const float *x, const float *z, float *dx, float *dz, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += ACT_W) {
        int r = (int)HR_MIN(ACT_W, n - i);
        act_v dyv = act_load(dy + i, r), zv = act_load(z + i, r), dsig;
        act_v sig = act_sigmoid(zv, &dsig);
        act_store(dx + i, act_mul(dyv, act_mul(zv, sig)), r);
        act_store(dz + i, act_mul(act_mul(dyv, act_load(x + i, r)), act_fma(zv, dsig, sig)), r);
    }
}

/* x (n) -> y (n) */
void hr_softplus_forward(const float *x, float *y, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += ACT_W) {
        int r = (int)HR_MIN(ACT_W, n - i);
        act_store(y + i, act_softplus(act_load(x + i, r)), r);
    }
}

/* dy, x (n) -> dx = dy σ(x), dy above the threshold (n) */
void hr_softplus_backward(const float *dy, const float *x, float *dx, long n) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i += ACT_W) {
        int r = (int)HR_MIN(ACT_W, n - i);
        act_v xv = act_load(x + i, r), dyv = act_load(dy + i, r), dsig;
        act_v grad = act_gt_select(xv, act_set(ACT_SOFTPLUS_THRESHOLD), act_set(1.0f), act_sigmoid(xv, &dsig));
        act_store(dx + i, act_mul(dyv, grad), r);
    }
}
