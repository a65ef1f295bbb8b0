/* The gates of Griffin's RG-LRU (De et al. 2024), element-wise per batch b, position t, channel c:
 *
 *     r = σ(ga), i = σ(gx), log a = −c r softplus(Λ) (c = 8), xn = m ⊙ i ⊙ x,
 *     m = √(1 − a²), and m = 1 at the sequence's position 0 (time_offset + t == 0).
 *
 * a and xn feed the diagonal linear recurrence (linear_recurrence.c). Rows (b, t) are contiguous in
 * channels, the vector axis; a task is RG_ROWS consecutive rows. −c softplus(Λ) and σ(Λ) are computed
 * once per call. dΛ, a sum over rows, is summed per task into its own row of partials, which are then
 * added task by task in order: the task split does not depend on the thread count, so neither does
 * the result. */
#include "common.h"
#include "simd.h"
#include "rglru.h"

#define RG_C 8.0f
/* recurrentgemma's SqrtBoundDerivative: d√y/dy = 1/√max(4y, 1/1000²), at most 1000 in magnitude */
#define RG_SQRT_GRAD_FLOOR 1e-6f
#define RG_SOFTPLUS_THRESHOLD 20.0f /* softplus(z) = z above it, as torch and the softplus op */
enum { RG_ROWS = 64 };

/* σ(z) from e = e^{-|z|} ∈ [0, 1]: never inf/inf for a large |z| of either sign. */
static inline hr_vec rg_sigmoid(hr_vec z) {
    hr_vec e = hr_vexp(hr_vsub(hr_vzero(), hr_vabs(z)));
    hr_vec r = hr_vdiv(hr_vset1(1.0f), hr_vadd(hr_vset1(1.0f), e));
    return hr_vgt_select(hr_vzero(), z, hr_vmul(e, r), r);
}

static float rg_softplus(float z) { return z > RG_SOFTPLUS_THRESHOLD ? z : log1pf(expf(z)); }

/* −c softplus(Λ) and σ(Λ) of the C channels into consts (2C floats: the first, then the second) */
static void rg_channel_consts(const float *a_param, int C, float *consts) {
    for (int j = 0; j < C; j++) {
        float z = a_param[j];
        consts[j] = -RG_C * rg_softplus(z);
        consts[C + j] = 1.0f / (1.0f + expf(-z));
    }
}

static inline int rg_first(long time_offset, long row, int T) { return time_offset == 0 && row % T == 0; }

/* x, gx, ga (B,T,C), a_param (C,) -> a, xn (B,T,C) */
int hr_rglru_gate_forward(const float *x, const float *gx, const float *ga, const float *a_param, float *a, float *xn,
                          int B, int T, int C, long time_offset) {
    float *consts = hr_alloc(2 * (size_t)C * sizeof(float));
    if (!consts) return HR_ENOMEM;
    rg_channel_consts(a_param, C, consts);
    long rows = (long)B * T, tasks = (rows + RG_ROWS - 1) / RG_ROWS;
    HR_PARALLEL_FOR(rows * C > 32768,
        for (long task = 0; task < tasks; task++)
            for (long row = task * RG_ROWS; row < HR_MIN(rows, (task + 1) * RG_ROWS); row++) {
                int first = rg_first(time_offset, row, T);
                for (int j = 0; j < C; j += HR_VW) {
                    size_t o = (size_t)row * C + j;
                    int n = C - j;
                    hr_vec r = rg_sigmoid(hr_vload(ga + o, n)), i = rg_sigmoid(hr_vload(gx + o, n));
                    hr_vec av = hr_vexp(hr_vmul(hr_vload(consts + j, n), r));
                    hr_vec m = first ? hr_vset1(1.0f) : hr_vsqrt(hr_vfnma(av, av, hr_vset1(1.0f)));
                    hr_vstore(a + o, av, n);
                    hr_vstore(xn + o, hr_vmul(hr_vmul(m, i), hr_vload(x + o, n)), n);
                }
            });
    free(consts);
    return HR_OK;
}

/* da, dxn, x, gx, ga (B,T,C), a_param (C,) -> dx, dgx, dga (B,T,C), da_param (C,):
 *   dx = dxn m i, dgx = dxn x m i(1−i), ∂a = da − 2a (dxn i x)/√max(4(1−a²), 1e-6) (no second term at
 *   position 0), dga = ∂a a (−c softplus(Λ)) r(1−r), dΛ = Σ_{b,t} ∂a a (−c r) σ(Λ) */
int hr_rglru_gate_backward(const float *da, const float *dxn, const float *x, const float *gx, const float *ga,
                           const float *a_param, float *dx, float *dgx, float *dga, float *da_param, int B, int T,
                           int C, long time_offset) {
    long rows = (long)B * T, tasks = (rows + RG_ROWS - 1) / RG_ROWS;
    float *consts = hr_alloc((2 + (size_t)tasks) * C * sizeof(float));
    if (!consts) return HR_ENOMEM;
    float *partial = consts + 2 * (size_t)C; /* (tasks, C): Σ over a task's rows of ∂a a r */
    rg_channel_consts(a_param, C, consts);
    HR_PARALLEL_FOR(rows * C > 32768,
        for (long task = 0; task < tasks; task++) {
            float *acc = partial + (size_t)task * C;
            for (int j = 0; j < C; j++) acc[j] = 0.0f;
            for (long row = task * RG_ROWS; row < HR_MIN(rows, (task + 1) * RG_ROWS); row++) {
                int first = rg_first(time_offset, row, T);
                for (int j = 0; j < C; j += HR_VW) {
                    size_t o = (size_t)row * C + j;
                    int n = C - j;
                    hr_vec one = hr_vset1(1.0f), r = rg_sigmoid(hr_vload(ga + o, n)), i = rg_sigmoid(hr_vload(gx + o, n)),
                           xv = hr_vload(x + o, n), g = hr_vload(dxn + o, n), ncs = hr_vload(consts + j, n);
                    hr_vec av = hr_vexp(hr_vmul(ncs, r)), y = hr_vfnma(av, av, one);
                    hr_vec m = first ? one : hr_vsqrt(y), gi = hr_vmul(g, i), dA = hr_vload(da + o, n);
                    if (!first) {
                        hr_vec y4 = hr_vmax(hr_vmul(hr_vset1(4.0f), y), hr_vset1(RG_SQRT_GRAD_FLOOR));
                        dA = hr_vfnma(hr_vmul(hr_vadd(av, av), hr_vmul(gi, xv)), hr_vdiv(one, hr_vsqrt(y4)), dA);
                    }
                    hr_vec dlog = hr_vmul(dA, av);
                    hr_vstore(dx + o, hr_vmul(gi, m), n);
                    hr_vstore(dgx + o, hr_vmul(hr_vmul(hr_vmul(gi, xv), m), hr_vsub(one, i)), n);
                    hr_vstore(dga + o, hr_vmul(hr_vmul(dlog, ncs), hr_vmul(r, hr_vsub(one, r))), n);
                    hr_vstore(acc + j, hr_vfma(dlog, r, hr_vload(acc + j, n)), n);
                }
            }
        });
    HR_PARALLEL_FOR((long)tasks * C > 32768,
        for (int j = 0; j < C; j++) {
            float sum = 0.0f;
            for (long task = 0; task < tasks; task++) sum += partial[(size_t)task * C + j];
            da_param[j] = -RG_C * sum * consts[C + j];
        });
    free(consts);
    return HR_OK;
}
