#include "common.h"
#include "simd.h"
#include "conv1d.h"

/* Channels are the vector axis: every tap of the depthwise filter is a lane-wise
 * multiply-add across channels. hr_vload/hr_vstore take the number of live lanes
 * n (a masked access when n < HR_VW), so a channel count that is no multiple of
 * the vector width needs no scalar tail loop.
 *
 * dw/dbias are reduced over (b, t) by channel blocks of one 64-byte line, each owned by one thread:
 * every channel sums in the same (b, t) order whatever the thread count, and no two threads share a line. */
enum { CONV1D_BLOCK = 16 };

/* Row s of x̃ = concat(prefix, x) along time for batch b, s in [0, W-1+T); NULL for the zero prefix. */
static inline const float *conv1d_xrow(const float *x, const float *prefix, long b, long s, int T, int C, int W) {
    if (s >= W - 1) return x + ((size_t)b * T + (size_t)(s - (W - 1))) * C;
    return prefix ? prefix + ((size_t)b * (W - 1) + (size_t)s) * C : NULL;
}

/* (C,W) -> (W,C): one contiguous row of channels per tap. */
static float *conv1d_transpose(const float *w, int C, int W) {
    float *wt = hr_alloc((size_t)W * C * sizeof(float));
    if (!wt) return NULL;
    for (int c = 0; c < C; c++)
        for (int j = 0; j < W; j++) wt[(size_t)j * C + c] = w[(size_t)c * W + j];
    return wt;
}

/* y[b,t,c] = bias[c] + Σ_{j<W} w[c,j] x̃[b,t+j,c],  x̃ = concat(prefix, x) along time
 * x (B,T,C), w (C,W), bias (C,) or NULL, prefix (B,W-1,C) or NULL (zeros) -> y (B,T,C) */
int hr_causal_conv1d_forward(const float *x, const float *w, const float *bias, const float *prefix, float *y,
                             int B, int T, int C, int W) {
    float *wt = conv1d_transpose(w, C, W);
    if (!wt) return HR_ENOMEM;
    HR_PARALLEL_FOR((long)B * T * C * W >= HR_PARALLEL_MIN,
        for (long r = 0; r < (long)B * T; r++) {
            long b = r / T, t = r % T;
            float *yr = y + (size_t)r * C;
            for (int c = 0; c < C; c += HR_VW) {
                int n = C - c;
                hr_vec acc = bias ? hr_vload(bias + c, n) : hr_vzero();
                for (int j = 0; j < W; j++) {
                    const float *xr = conv1d_xrow(x, prefix, b, t + j, T, C, W);
                    if (xr) acc = hr_vfma(hr_vload(wt + (size_t)j * C + c, n), hr_vload(xr + c, n), acc);
                }
                hr_vstore(yr + c, acc, n);
            }
        });
    free(wt);
    return HR_OK;
}

/* dx̃[b,s,c] = Σ_j w[c,j] dy[b,s-j,c]  (dx = dx̃[:, W-1:], dprefix = dx̃[:, :W-1])
 * dw[c,j] = Σ_{b,t} dy[b,t,c] x̃[b,t+j,c],  dbias[c] = Σ_{b,t} dy[b,t,c]
 * dy, x (B,T,C), w (C,W), prefix (B,W-1,C) or NULL -> dx (B,T,C), dw (C,W),
 * dbias (C,) (skipped when NULL), dprefix (B,W-1,C) (skipped when NULL) */
int hr_causal_conv1d_backward(const float *dy, const float *x, const float *w, const float *prefix, float *dx,
                              float *dw, float *dbias, float *dprefix, int B, int T, int C, int W) {
    float *wt = conv1d_transpose(w, C, W);
    float *dwt = hr_alloc((size_t)W * C * sizeof(float)); /* (W,C), transposed into dw at the end */
    if (!wt || !dwt) {
        free(wt);
        free(dwt);
        return HR_ENOMEM;
    }
    long S = (long)T + W - 1;
    #pragma omp parallel
    {
        /* Each row of dx̃ gathers the W rows of dy it reaches, so every output has one owner. */
        #pragma omp for schedule(static)
        for (long r = 0; r < (long)B * S; r++) {
            long b = r / S, s = r % S;
            float *out = s >= W - 1 ? dx + ((size_t)b * T + (size_t)(s - (W - 1))) * C
                       : dprefix ? dprefix + ((size_t)b * (W - 1) + (size_t)s) * C : NULL;
            if (!out) continue;
            long j0 = HR_MAX(0, s - T + 1), j1 = HR_MIN(W - 1, s);
            for (int c = 0; c < C; c += HR_VW) {
                int n = C - c;
                hr_vec acc = hr_vzero();
                for (long j = j0; j <= j1; j++)
                    acc = hr_vfma(hr_vload(wt + (size_t)j * C + c, n),
                                  hr_vload(dy + ((size_t)b * T + (size_t)(s - j)) * C + c, n), acc);
                hr_vstore(out + c, acc, n);
            }
        }
        #pragma omp for schedule(static)
        for (int blk = 0; blk < (C + CONV1D_BLOCK - 1) / CONV1D_BLOCK; blk++) {
            int c0 = blk * CONV1D_BLOCK, c1 = HR_MIN(C, c0 + CONV1D_BLOCK);
            for (int c = c0; c < c1; c += HR_VW) {
                if (dbias) hr_vstore(dbias + c, hr_vzero(), c1 - c);
                for (int j = 0; j < W; j++) hr_vstore(dwt + (size_t)j * C + c, hr_vzero(), c1 - c);
            }
            for (long r = 0; r < (long)B * T; r++) {
                long b = r / T, t = r % T;
                const float *dyr = dy + (size_t)r * C;
                for (int c = c0; c < c1; c += HR_VW) {
                    int n = c1 - c;
                    hr_vec g = hr_vload(dyr + c, n);
                    if (dbias) hr_vstore(dbias + c, hr_vadd(hr_vload(dbias + c, n), g), n);
                    for (int j = 0; j < W; j++) {
                        const float *xr = conv1d_xrow(x, prefix, b, t + j, T, C, W);
                        if (!xr) continue;
                        float *acc = dwt + (size_t)j * C + c;
                        hr_vstore(acc, hr_vfma(g, hr_vload(xr + c, n), hr_vload(acc, n)), n);
                    }
                }
            }
            for (int c = c0; c < c1; c++)
                for (int j = 0; j < W; j++) dw[(size_t)c * W + j] = dwt[(size_t)j * C + c];
        }
    }
    free(wt);
    free(dwt);
    return HR_OK;
}
