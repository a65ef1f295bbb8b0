/* Vector math shared by the kernels (internal; not part of the cffi cdef).
 *
 * hr_exp256 / hr_exp512: eˣ on 8 / 16 floats, Cephes-style: x = n ln2 + r with
 * |r| <= ln2/2, eʳ by a degree-6 polynomial, 2ⁿ built in the exponent bits.
 * Max relative error ~2 ulp over [-86.6, 88.7]. Inputs below -86.6 give 0
 * (absolute error < 3e-38, keeping 2ⁿ a normal number); above 88.7 give +inf,
 * as expf does. NaN gives NaN: the clamps take x as their second operand, which
 * min/max return when either operand is NaN (a clamp to 88.7 would turn a NaN
 * into e^88.7, a finite value that hides it).
 */
#ifndef HR_VMATH_H
#define HR_VMATH_H
#include "common.h"

#define HR_EXP_HI 88.72283935546875f
#define HR_EXP_LO (-86.6f)
#define HR_LOG2E 1.44269504088896341f
#define HR_LN2_HI 0.693359375f
#define HR_LN2_LO (-2.12194440e-4f)
#define HR_EXP_P0 1.9875691500E-4f
#define HR_EXP_P1 1.3981999507E-3f
#define HR_EXP_P2 8.3334519073E-3f
#define HR_EXP_P3 4.1665795894E-2f
#define HR_EXP_P4 1.6666665459E-1f
#define HR_EXP_P5 5.0000001201E-1f

#ifdef HR_AVX2
static inline __m256 hr_exp256(__m256 x) {
    __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(HR_EXP_LO), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(HR_EXP_HI), x);
    x = _mm256_max_ps(_mm256_set1_ps(HR_EXP_LO), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(HR_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(HR_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(HR_LN2_LO), r);
    __m256 p = _mm256_set1_ps(HR_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(HR_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(HR_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(HR_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(HR_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(HR_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2ⁿ = 2^(n-1) * 2 so that n = 128 (x near 88.7) still builds a valid exponent. */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), _mm256_set1_ps(2.0f));
    return _mm256_andnot_ps(under, y);
}

/* Horizontal sum of 8 floats, in a fixed order. */
static inline float hr_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hr_hmax256(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#ifdef HR_AVX512
static inline __m512 hr_exp512(__m512 x) {
    __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(HR_EXP_LO), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_set1_ps(HR_EXP_HI), x);
    x = _mm512_max_ps(_mm512_set1_ps(HR_EXP_LO), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(HR_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(HR_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(HR_LN2_LO), r);
    __m512 p = _mm512_set1_ps(HR_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(HR_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(HR_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(HR_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(HR_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(HR_EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512 y = _mm512_scalef_ps(p, n); /* p * 2^n, exact */
    return _mm512_maskz_mov_ps(~under, y);
}
#endif

/* Scalar eˣ with the same clamping as the vector versions (HR_MIN(a, b) is b when
 * either is NaN, so NaN reaches expf). */
static inline float hr_expf(float x) {
    return x < HR_EXP_LO ? 0.0f : expf(HR_MIN(HR_EXP_HI, x));
}
#endif
