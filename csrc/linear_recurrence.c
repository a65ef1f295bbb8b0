/* The diagonal linear recurrence of the RG-LRU (Griffin), per batch b and channel c:
 *
 *     h_t = a_t ⊙ h_{t-1} + x_t,    h_{-1} = h0 (zeros when NULL).
 *
 * Channels are independent and contiguous, so they are the vector axis: a task is one batch row and
 * LR_BLOCK consecutive channels, whose states stay in registers while the task walks through time
 * (one FMA per channel and step; the op is bound by reading a, x and writing h). OpenMP runs over
 * the (batch, channel block) tasks; no value is reduced across tasks, so results do not depend on the
 * thread count. */
#include "common.h"
#include "simd.h"
#include "linear_recurrence.h"

/* Channels per task: four zmm / eight ymm of state, enough independent FMA chains to hide latency. */
enum { LR_BLOCK = 64, LR_VECS = LR_BLOCK / HR_VW };
/* Below this many elements one thread does it all (a decode step: T = 1). */
enum { LR_PARALLEL_MIN = 1 << 15 };

static inline hr_vec lr_load_or_zero(const float *p, int n) { return p ? hr_vload(p, n) : hr_vzero(); }

/* a, x (B,T,C), h0 (B,C) or NULL -> h (B,T,C), h_last (B,C) */
int hr_linear_recurrence_forward(const float *a, const float *x, const float *h0, float *h, float *h_last, int B, int T,
                                 int C) {
    int blocks = (C + LR_BLOCK - 1) / LR_BLOCK;
    HR_PARALLEL_FOR((long)B * T * C > LR_PARALLEL_MIN,
        for (long task = 0; task < (long)B * blocks; task++) {
            int b = (int)(task / blocks), c0 = (int)(task % blocks) * LR_BLOCK, n = HR_MIN(LR_BLOCK, C - c0);
            size_t base = (size_t)b * T * C + c0;
            hr_vec s[LR_VECS];
            for (int k = 0; k * HR_VW < n; k++)
                s[k] = lr_load_or_zero(h0 ? h0 + (size_t)b * C + c0 + k * HR_VW : NULL, n - k * HR_VW);
            for (int t = 0; t < T; t++) {
                size_t row = base + (size_t)t * C;
                for (int k = 0; k * HR_VW < n; k++) {
                    int j = k * HR_VW;
                    s[k] = hr_vfma(hr_vload(a + row + j, n - j), s[k], hr_vload(x + row + j, n - j));
                    hr_vstore(h + row + j, s[k], n - j);
                }
            }
            for (int k = 0; k * HR_VW < n; k++) hr_vstore(h_last + (size_t)b * C + c0 + k * HR_VW, s[k], n - k * HR_VW);
        });
    return HR_OK;
}

/* The adjoint recurrence, backwards in time: g_t = dh_t + a_{t+1} ⊙ g_{t+1}, g_{T-1} = dh_{T-1} + dh_last;
 * dx_t = g_t, da_t = g_t ⊙ h_{t-1}, dh0 = a_0 ⊙ g_0.
 * dh, a, x (B,T,C), h0, dh_last (B,C) or NULL -> da, dx (B,T,C), dh0 (B,C) (not written when h0 is NULL).
 * The states are recomputed, not stored: the forward sweep writes h_{t-1} into da_t, which the
 * backward sweep then reads and overwrites with g_t ⊙ h_{t-1}, so the op needs no scratch. */
int hr_linear_recurrence_backward(const float *dh, const float *a, const float *x, const float *h0,
                                  const float *dh_last, float *da, float *dx, float *dh0, int B, int T, int C) {
    int blocks = (C + LR_BLOCK - 1) / LR_BLOCK;
    HR_PARALLEL_FOR((long)B * T * C > LR_PARALLEL_MIN,
        for (long task = 0; task < (long)B * blocks; task++) {
            int b = (int)(task / blocks), c0 = (int)(task % blocks) * LR_BLOCK, n = HR_MIN(LR_BLOCK, C - c0);
            size_t base = (size_t)b * T * C + c0, srow = (size_t)b * C + c0;
            hr_vec s[LR_VECS];
            for (int k = 0; k * HR_VW < n; k++) s[k] = lr_load_or_zero(h0 ? h0 + srow + k * HR_VW : NULL, n - k * HR_VW);
            for (int t = 0; t < T; t++) {
                size_t row = base + (size_t)t * C;
                for (int k = 0; k * HR_VW < n; k++) {
                    int j = k * HR_VW;
                    hr_vstore(da + row + j, s[k], n - j); /* h_{t-1} */
                    s[k] = hr_vfma(hr_vload(a + row + j, n - j), s[k], hr_vload(x + row + j, n - j));
                }
            }
            for (int k = 0; k * HR_VW < n; k++)
                s[k] = lr_load_or_zero(dh_last ? dh_last + srow + k * HR_VW : NULL, n - k * HR_VW); /* a_{t+1} g_{t+1} */
            for (int t = T - 1; t >= 0; t--) {
                size_t row = base + (size_t)t * C;
                for (int k = 0; k * HR_VW < n; k++) {
                    int j = k * HR_VW;
                    hr_vec g = hr_vadd(hr_vload(dh + row + j, n - j), s[k]);
                    hr_vstore(dx + row + j, g, n - j);
                    hr_vstore(da + row + j, hr_vmul(g, hr_vload(da + row + j, n - j)), n - j);
                    s[k] = hr_vmul(hr_vload(a + row + j, n - j), g);
                }
            }
            if (h0)
                for (int k = 0; k * HR_VW < n; k++) hr_vstore(dh0 + srow + k * HR_VW, s[k], n - k * HR_VW);
        });
    return HR_OK;
}
