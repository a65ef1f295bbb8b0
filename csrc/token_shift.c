/* RWKV token shift (backends/numpy/token_shift.py is the oracle): M mixes of each token with the one
 * before it, y[b,t,m] = x_t + (x_{t-1} − x_t) ⊙ mu_m, x_{-1} = prefix (zeros if NULL). Channels are the
 * vector axis. The backward's dmu is a sum over all (b, t): each thread owns a range of channel blocks
 * and walks the rows in order, so it does not depend on the thread count. */
#include "common.h"
#include "simd.h"
#include "token_shift.h"

/* x_{t-1} of row (b, t): the previous row, the prefix at t = 0, or NULL (zeros). */
static inline const float *ts_previous(const float *x, const float *prefix, long b, int t, int T, int C) {
    if (t > 0) return x + ((size_t)b * T + t - 1) * C;
    return prefix ? prefix + (size_t)b * C : NULL;
}

/* x (B,T,C), mu (M,C), prefix (B,1,C) or NULL -> y (B,T,M,C) */
void hr_token_shift_forward(const float *x, const float *mu, const float *prefix, float *y, int B, int T, int C,
                            int M) {
    HR_PARALLEL_FOR((long)B * T * C * M >= HR_PARALLEL_MIN,
        for (long row = 0; row < (long)B * T; row++) {
            long b = row / T;
            int t = (int)(row % T);
            const float *xt = x + (size_t)row * C, *xp = ts_previous(x, prefix, b, t, T, C);
            float *yt = y + (size_t)row * M * C;
            for (int c = 0; c < C; c += HR_VW) {
                hr_vec xc = hr_vload(xt + c, C - c), xx = hr_vsub(xp ? hr_vload(xp + c, C - c) : hr_vzero(), xc);
                for (int m = 0; m < M; m++)
                    hr_vstore(yt + (size_t)m * C + c, hr_vfma(xx, hr_vload(mu + (size_t)m * C + c, C - c), xc), C - c);
            }
        });
}

/* dx_t = Σ_m dy_{t,m} ⊙ (1 − mu_m) + Σ_m dy_{t+1,m} ⊙ mu_m;  dmu_m = Σ_{b,t} dy_{t,m} ⊙ (x_{t-1} − x_t);
 * dprefix = Σ_m dy_{0,m} ⊙ mu_m (skipped when NULL). dy (B,T,M,C) -> dx (B,T,C), dmu (M,C), dprefix (B,1,C) */
void hr_token_shift_backward(const float *dy, const float *x, const float *mu, const float *prefix, float *dx,
                             float *dmu, float *dprefix, int B, int T, int C, int M) {
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (long row = 0; row < (long)B * T; row++) {
            int t = (int)(row % T);
            const float *dyt = dy + (size_t)row * M * C, *dyn = t + 1 < T ? dyt + (size_t)M * C : NULL;
            for (int c = 0; c < C; c += HR_VW) {
                hr_vec s = hr_vzero(), next = hr_vzero();
                for (int m = 0; m < M; m++) {
                    hr_vec mc = hr_vload(mu + (size_t)m * C + c, C - c), d = hr_vload(dyt + (size_t)m * C + c, C - c);
                    s = hr_vadd(s, hr_vfnma(d, mc, d)); /* dy ⊙ (1 − mu) */
                    if (dyn) next = hr_vfma(hr_vload(dyn + (size_t)m * C + c, C - c), mc, next);
                }
                hr_vstore(dx + (size_t)row * C + c, hr_vadd(s, next), C - c);
            }
        }
        if (dprefix) {
            #pragma omp for schedule(static)
            for (int b = 0; b < B; b++) {
                const float *dy0 = dy + (size_t)b * T * M * C;
                for (int c = 0; c < C; c += HR_VW) {
                    hr_vec s = hr_vzero();
                    for (int m = 0; m < M && T > 0; m++) /* T = 0: no position reads the prefix */
                        s = hr_vfma(hr_vload(dy0 + (size_t)m * C + c, C - c), hr_vload(mu + (size_t)m * C + c, C - c), s);
                    hr_vstore(dprefix + (size_t)b * C + c, s, C - c);
                }
            }
        }
        #pragma omp for schedule(static)
        for (int c = 0; c < C; c += HR_VW) {
            int n = HR_MIN(HR_VW, C - c);
            for (int m = 0; m < M; m++) {
                hr_vec s = hr_vzero();
                for (long row = 0; row < (long)B * T; row++) {
                    const float *xt = x + (size_t)row * C, *xp = ts_previous(x, prefix, row / T, (int)(row % T), T, C);
                    hr_vec xx = hr_vsub(xp ? hr_vload(xp + c, n) : hr_vzero(), hr_vload(xt + c, n));
                    s = hr_vfma(hr_vload(dy + ((size_t)row * M + m) * C + c, n), xx, s);
                }
                hr_vstore(dmu + (size_t)m * C + c, s, n);
            }
        }
    }
}
