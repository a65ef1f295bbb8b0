/* One vector type for the kernels (internal; not part of the cffi cdef).
 *
 * Every kernel file is compiled three times (scalar, AVX2+FMA, AVX-512), so a
 * kernel written on `hr_vec` through the hr_v* primitives below is written once
 * and runs as 16 floats (AVX-512), 8 floats (AVX2) or one float (portable
 * build, where each primitive is the plain C expression). Loads and stores take
 * the number n of live lanes and are masked when n < HR_VW: the last elements of
 * a row go through the same arithmetic as the others instead of a second, scalar
 * copy of the loop body. Dead lanes load as 0 (hr_vload) or as a given fill
 * value (hr_vload_or) and are never written. Only primitives some kernel uses
 * are here; a tuned micro-kernel (gemm, attention's tile products) may still
 * use intrinsics directly.
 */
#ifndef HR_SIMD_H
#define HR_SIMD_H
#include "common.h"
#include "vmath.h"

#if defined(HR_AVX512)
#define HR_VW 16
typedef __m512 hr_vec;
/* the first n lanes, 0 <= n < HR_VW */
static inline __mmask16 hr_vlanes(int n) { return (__mmask16)((1u << n) - 1); }
static inline hr_vec hr_vload(const float *p, int n) {
    return n >= HR_VW ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(hr_vlanes(n), p);
}
static inline hr_vec hr_vload_or(const float *p, int n, float fill) {
    return n >= HR_VW ? _mm512_loadu_ps(p) : _mm512_mask_loadu_ps(_mm512_set1_ps(fill), hr_vlanes(n), p);
}
/* n bfloat16 values widened to float32 (exact: a bfloat16 is the top half of a float32) */
static inline hr_vec hr_vload_bf16(const uint16_t *p, int n) {
    __m256i h = n >= HR_VW ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(hr_vlanes(n), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
/* 2·HR_VW bfloat16 stored interleaved (column j at 2j, column HR_VW + j at 2j + 1: the decoder's bfloat16
 * panels, decode_mixer.h) -> *lo = columns 0 .. HR_VW−1 and *hi = columns HR_VW .. 2·HR_VW−1, widened
 * exactly: an even element is the low half of its 32-bit lane (shifted up), an odd one the high half (kept) */
static inline void hr_vload_bf16_pair(const uint16_t *p, hr_vec *lo, hr_vec *hi) {
    __m512i v = _mm512_loadu_si512((const void *)p);
    __asm__("" : "+v"(v)); /* one load for both halves: else the compiler folds it into each operation */
    *lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    *hi = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
}
static inline void hr_vstore(float *p, hr_vec v, int n) {
    if (n >= HR_VW) _mm512_storeu_ps(p, v);
    else _mm512_mask_storeu_ps(p, hr_vlanes(n), v);
}
/* v stays in a register for its later uses: else the compiler may fold the load that produced it into
 * each use (an FMA's memory operand), loading it again per use */
static inline void hr_vkeep(hr_vec *v) { __asm__("" : "+v"(*v)); }
static inline hr_vec hr_vset1(float a) { return _mm512_set1_ps(a); }
static inline hr_vec hr_vzero(void) { return _mm512_setzero_ps(); }
static inline hr_vec hr_vadd(hr_vec a, hr_vec b) { return _mm512_add_ps(a, b); }
static inline hr_vec hr_vsub(hr_vec a, hr_vec b) { return _mm512_sub_ps(a, b); }
static inline hr_vec hr_vmul(hr_vec a, hr_vec b) { return _mm512_mul_ps(a, b); }
static inline hr_vec hr_vdiv(hr_vec a, hr_vec b) { return _mm512_div_ps(a, b); }
static inline hr_vec hr_vfma(hr_vec a, hr_vec b, hr_vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline hr_vec hr_vfnma(hr_vec a, hr_vec b, hr_vec c) { return _mm512_fnmadd_ps(a, b, c); }
static inline hr_vec hr_vsqrt(hr_vec a) { return _mm512_sqrt_ps(a); }
static inline hr_vec hr_vabs(hr_vec a) { return _mm512_abs_ps(a); }
static inline hr_vec hr_vmax(hr_vec a, hr_vec b) { return _mm512_max_ps(a, b); }
static inline hr_vec hr_vmin(hr_vec a, hr_vec b) { return _mm512_min_ps(a, b); }
static inline hr_vec hr_vexp(hr_vec a) { return hr_exp512(a); }
/* lanes of x > t take a, the others b */
static inline hr_vec hr_vgt_select(hr_vec x, hr_vec t, hr_vec a, hr_vec b) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, t, _CMP_GT_OQ), b, a);
}
/* horizontal sum / max in a fixed order (a fixed shuffle tree) */
static inline float hr_vhsum(hr_vec a) { return _mm512_reduce_add_ps(a); }
static inline float hr_vhmax(hr_vec a) { return _mm512_reduce_max_ps(a); }
#elif defined(HR_AVX2)
#define HR_VW 8
typedef __m256 hr_vec;
static inline __m256i hr_vlanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline hr_vec hr_vload(const float *p, int n) {
    return n >= HR_VW ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, hr_vlanes(n));
}
static inline hr_vec hr_vload_or(const float *p, int n, float fill) {
    if (n >= HR_VW) return _mm256_loadu_ps(p);
    __m256i m = hr_vlanes(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline hr_vec hr_vload_bf16(const uint16_t *p, int n) {
    __m128i h;
    if (n >= HR_VW) h = _mm_loadu_si128((const __m128i *)p);
    else { /* AVX2 has no 16-bit masked load: the live lanes through a zeroed buffer */
        uint16_t tail[HR_VW] = {0};
        for (int i = 0; i < n; i++) tail[i] = p[i];
        h = _mm_loadu_si128((const __m128i *)tail);
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
/* 2·HR_VW bfloat16 stored interleaved (column j at 2j, column HR_VW + j at 2j + 1: the decoder's bfloat16
 * panels, decode_mixer.h) -> *lo = columns 0 .. HR_VW−1 and *hi = columns HR_VW .. 2·HR_VW−1, widened
 * exactly: an even element is the low half of its 32-bit lane (shifted up), an odd one the high half (kept) */
static inline void hr_vload_bf16_pair(const uint16_t *p, hr_vec *lo, hr_vec *hi) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    __asm__("" : "+x"(v)); /* one load for both halves: else the compiler folds it into each operation */
    *lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    *hi = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xFFFF0000u)));
}
static inline void hr_vstore(float *p, hr_vec v, int n) {
    if (n >= HR_VW) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, hr_vlanes(n), v);
}
/* v stays in a register for its later uses: else the compiler may fold the load that produced it into
 * each use (an FMA's memory operand), loading it again per use */
static inline void hr_vkeep(hr_vec *v) { __asm__("" : "+x"(*v)); }
static inline hr_vec hr_vset1(float a) { return _mm256_set1_ps(a); }
static inline hr_vec hr_vzero(void) { return _mm256_setzero_ps(); }
static inline hr_vec hr_vadd(hr_vec a, hr_vec b) { return _mm256_add_ps(a, b); }
static inline hr_vec hr_vsub(hr_vec a, hr_vec b) { return _mm256_sub_ps(a, b); }
static inline hr_vec hr_vmul(hr_vec a, hr_vec b) { return _mm256_mul_ps(a, b); }
static inline hr_vec hr_vdiv(hr_vec a, hr_vec b) { return _mm256_div_ps(a, b); }
static inline hr_vec hr_vfma(hr_vec a, hr_vec b, hr_vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline hr_vec hr_vfnma(hr_vec a, hr_vec b, hr_vec c) { return _mm256_fnmadd_ps(a, b, c); }
static inline hr_vec hr_vsqrt(hr_vec a) { return _mm256_sqrt_ps(a); }
static inline hr_vec hr_vabs(hr_vec a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline hr_vec hr_vmax(hr_vec a, hr_vec b) { return _mm256_max_ps(a, b); }
static inline hr_vec hr_vmin(hr_vec a, hr_vec b) { return _mm256_min_ps(a, b); }
static inline hr_vec hr_vexp(hr_vec a) { return hr_exp256(a); }
static inline hr_vec hr_vgt_select(hr_vec x, hr_vec t, hr_vec a, hr_vec b) {
    return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, t, _CMP_GT_OQ));
}
static inline float hr_vhsum(hr_vec a) { return hr_hsum256(a); }
static inline float hr_vhmax(hr_vec a) { return hr_hmax256(a); }
#else
#define HR_VW 1
typedef float hr_vec;
static inline hr_vec hr_vload(const float *p, int n) { (void)n; return *p; }
static inline hr_vec hr_vload_or(const float *p, int n, float fill) { (void)n; (void)fill; return *p; }
static inline hr_vec hr_vload_bf16(const uint16_t *p, int n) {
    union { uint32_t u; float f; } v = {(uint32_t)*p << 16};
    (void)n;
    return v.f;
}
/* 2·HR_VW bfloat16 stored interleaved (column j at 2j, column HR_VW + j at 2j + 1: the decoder's bfloat16
 * panels, decode_mixer.h) -> *lo = columns 0 .. HR_VW−1 and *hi = columns HR_VW .. 2·HR_VW−1, widened
 * exactly: an even element is the low half of its 32-bit lane (shifted up), an odd one the high half (kept) */
static inline void hr_vload_bf16_pair(const uint16_t *p, hr_vec *lo, hr_vec *hi) {
    *lo = hr_vload_bf16(p, 1);
    *hi = hr_vload_bf16(p + 1, 1);
}
static inline void hr_vstore(float *p, hr_vec v, int n) { (void)n; *p = v; }
/* v stays in a register for its later uses: else the compiler may fold the load that produced it into
 * each use (an FMA's memory operand), loading it again per use */
static inline void hr_vkeep(hr_vec *v) { (void)v; }
static inline hr_vec hr_vset1(float a) { return a; }
static inline hr_vec hr_vzero(void) { return 0.0f; }
static inline hr_vec hr_vadd(hr_vec a, hr_vec b) { return a + b; }
static inline hr_vec hr_vsub(hr_vec a, hr_vec b) { return a - b; }
static inline hr_vec hr_vmul(hr_vec a, hr_vec b) { return a * b; }
static inline hr_vec hr_vdiv(hr_vec a, hr_vec b) { return a / b; }
static inline hr_vec hr_vfma(hr_vec a, hr_vec b, hr_vec c) { return a * b + c; }
static inline hr_vec hr_vfnma(hr_vec a, hr_vec b, hr_vec c) { return c - a * b; }
static inline hr_vec hr_vsqrt(hr_vec a) { return sqrtf(a); }
static inline hr_vec hr_vabs(hr_vec a) { return fabsf(a); }
static inline hr_vec hr_vmax(hr_vec a, hr_vec b) { return a > b ? a : b; }
static inline hr_vec hr_vmin(hr_vec a, hr_vec b) { return a < b ? a : b; }
static inline hr_vec hr_vexp(hr_vec a) { return hr_expf(a); }
static inline hr_vec hr_vgt_select(hr_vec x, hr_vec t, hr_vec a, hr_vec b) { return x > t ? a : b; }
static inline float hr_vhsum(hr_vec a) { return a; }
static inline float hr_vhmax(hr_vec a) { return a; }
#endif

/* Runs the statement (a { } block) for i = 0, HR_VW, 2 HR_VW, ... < len with n the live lanes at i:
 * whole vectors first, in a loop where n is the constant HR_VW so that every mask test folds away
 * and the loop stays as tight as a plain intrinsics loop, then the tail once, masked. For short
 * loop bodies; where the body is heavy (exp, division) a plain loop with n = len - i costs the same. */
#define HR_VLOOP(i, n, len, ...)                                                                         \
    do {                                                                                                 \
        long i = 0;                                                                                      \
        for (; i + HR_VW <= (long)(len); i += HR_VW) {                                                   \
            const int n = HR_VW;                                                                         \
            __VA_ARGS__                                                                                  \
        }                                                                                                \
        if (i < (long)(len)) {                                                                           \
            const int n = (int)((long)(len) - i);                                                        \
            __VA_ARGS__                                                                                  \
        }                                                                                                \
    } while (0)
#endif
