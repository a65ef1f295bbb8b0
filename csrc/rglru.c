/* The gates of Griffin's RG-LRU (De et al. 2024), element-wise per batch b, position t, channel c:
 *
 *     r = σ(ga), i = σ(gx), log a = −c r softplus(Λ) (c = 8), xn = m ⊙ i ⊙ x,
 *     m = √(1 − a²), and m = 1 at the sequence's position 0 (time_offset + t == 0).
 *
 * a and xn feed the diagonal linear recurrence (linear_recurrence.c). A task is RG_BLOCK channels
 * (one zmm) over every (b, t) row: softplus(Λ) and σ(Λ) are computed once per task, and dΛ, a sum
 * over rows, is owned by its task and accumulated in row order, so it does not depend on the thread
 * count. */
#include "common.h"
#include "simd.h"
#include "rglru.h"

#define RG_C 8.0f
/* recurrentgemma's SqrtBoundDerivative: d√y/dy = 1/√max(4y, 1/1000²), at most 1000 in magnitude */
#define RG_SQRT_GRAD_FLOOR 1e-6f
#define RG_SOFTPLUS_THRESHOLD 20.0f /* softplus(z) = z above it, as torch and the softplus op */
enum { RG_BLOCK = 16 };

/* σ(z) from e = e^{-|z|} ∈ [0, 1]: never inf/inf for a large |z| of either sign. */
static inline hr_vec rg_sigmoid(hr_vec z) {
    hr_vec e = hr_vexp(hr_vsub(hr_vzero(), hr_vabs(z)));
    hr_vec r = hr_vdiv(hr_vset1(1.0f), hr_vadd(hr_vset1(1.0f), e));
    return hr_vgt_select(hr_vzero(), z, hr_vmul(e, r), r);
}

static float rg_softplus(float z) { return z > RG_SOFTPLUS_THRESHOLD ? z : log1pf(expf(z)); }

/* −c softplus(Λ) and σ(Λ) of channels c0 .. c0+n−1 */
static void rg_channel_consts(const float *a_param, int c0, int n, float *neg_c_sp, float *sig) {
    for (int j = 0; j < n; j++) {
        float z = a_param[c0 + j];
        neg_c_sp[j] = -RG_C * rg_softplus(z);
        sig[j] = 1.0f / (1.0f + expf(-z));
    }
}

static inline int rg_first(long time_offset, int t) { return time_offset + t == 0; }

/* x, gx, ga (B,T,C), a_param (C,) -> a, xn (B,T,C) */
int hr_rglru_gate_forward(const float *x, const float *gx, const float *ga, const float *a_param, float *a, float *xn,
                          int B, int T, int C, long time_offset) {
    int blocks = (C + RG_BLOCK - 1) / RG_BLOCK;
    #pragma omp parallel for schedule(static) if ((long)B * T * C > 8192)
    for (int blk = 0; blk < blocks; blk++) {
        int c0 = blk * RG_BLOCK, n = HR_MIN(RG_BLOCK, C - c0);
        float ncs[RG_BLOCK], sig[RG_BLOCK];
        rg_channel_consts(a_param, c0, n, ncs, sig);
        for (long row = 0; row < (long)B * T; row++) {
            int first = rg_first(time_offset, (int)(row % T));
            for (int j = 0; j < n; j += HR_VW) {
                size_t o = (size_t)row * C + c0 + j;
                hr_vec r = rg_sigmoid(hr_vload(ga + o, n - j)), i = rg_sigmoid(hr_vload(gx + o, n - j));
                hr_vec av = hr_vexp(hr_vmul(hr_vload(ncs + j, n - j), r));
                hr_vec m = first ? hr_vset1(1.0f) : hr_vsqrt(hr_vfnma(av, av, hr_vset1(1.0f)));
                hr_vstore(a + o, av, n - j);
                hr_vstore(xn + o, hr_vmul(hr_vmul(m, i), hr_vload(x + o, n - j)), n - j);
            }
        }
    }
    return HR_OK;
}

/* da, dxn, x, gx, ga (B,T,C), a_param (C,) -> dx, dgx, dga (B,T,C), da_param (C,):
 *   dx = dxn m i, dgx = dxn x m i(1−i), ∂a = da − 2a (dxn i x)/√max(4(1−a²), 1e-6) (no second term at
 *   position 0), dga = ∂a a (−c softplus(Λ)) r(1−r), dΛ = Σ_{b,t} ∂a a (−c r) σ(Λ) */
int hr_rglru_gate_backward(const float *da, const float *dxn, const float *x, const float *gx, const float *ga,
                           const float *a_param, float *dx, float *dgx, float *dga, float *da_param, int B, int T,
                           int C, long time_offset) {
    int blocks = (C + RG_BLOCK - 1) / RG_BLOCK;
    #pragma omp parallel for schedule(static) if ((long)B * T * C > 8192)
    for (int blk = 0; blk < blocks; blk++) {
        int c0 = blk * RG_BLOCK, n = HR_MIN(RG_BLOCK, C - c0);
        float ncs[RG_BLOCK], sig[RG_BLOCK];
        rg_channel_consts(a_param, c0, n, ncs, sig);
        hr_vec acc[RG_BLOCK / HR_VW];
        for (int k = 0; k * HR_VW < n; k++) acc[k] = hr_vzero();
        for (long row = 0; row < (long)B * T; row++) {
            int first = rg_first(time_offset, (int)(row % T));
            for (int j = 0, k = 0; j < n; j += HR_VW, k++) {
                size_t o = (size_t)row * C + c0 + j;
                hr_vec one = hr_vset1(1.0f), r = rg_sigmoid(hr_vload(ga + o, n - j)),
                       i = rg_sigmoid(hr_vload(gx + o, n - j)), xv = hr_vload(x + o, n - j),
                       g = hr_vload(dxn + o, n - j), ncs_v = hr_vload(ncs + j, n - j);
                hr_vec av = hr_vexp(hr_vmul(ncs_v, r)), y = hr_vfnma(av, av, one);
                hr_vec m = first ? one : hr_vsqrt(y), gi = hr_vmul(g, i), dA = hr_vload(da + o, n - j);
                if (!first) {
                    hr_vec y4 = hr_vmax(hr_vmul(hr_vset1(4.0f), y), hr_vset1(RG_SQRT_GRAD_FLOOR));
                    hr_vec inv = hr_vdiv(one, hr_vsqrt(y4));
                    dA = hr_vfnma(hr_vmul(hr_vadd(av, av), hr_vmul(gi, xv)), inv, dA);
                }
                hr_vec dlog = hr_vmul(dA, av);
                hr_vstore(dx + o, hr_vmul(gi, m), n - j);
                hr_vstore(dgx + o, hr_vmul(hr_vmul(hr_vmul(gi, xv), m), hr_vsub(one, i)), n - j);
                hr_vstore(dga + o, hr_vmul(hr_vmul(dlog, ncs_v), hr_vmul(r, hr_vsub(one, r))), n - j);
                acc[k] = hr_vfma(dlog, r, acc[k]);
            }
        }
        for (int j = 0, k = 0; j < n; j += HR_VW, k++) {
            float part[HR_VW];
            hr_vstore(part, acc[k], HR_VW);
            for (int l = 0; l < HR_MIN(HR_VW, n - j); l++) da_param[c0 + j + l] = -RG_C * part[l] * sig[j + l];
        }
    }
    return HR_OK;
}
