/* Decode step of the RWKV-7 time mixing (hybridref/layers/rwkv7.py): one token per stream through the
 * token shift (the token_shift kernel at T = 1 from the previous token), the projections and low-rank
 * maps, the value residual, κ̂ and the modified key, one step of WKV-7 (the wkv7 kernel at T = 1,
 * updating the state in place), the per-head GroupNorm, the bonus, the gate and the output projection.
 * It touches only its fixed-size state, so its cost does not depend on the position.
 *
 * Value residual: the records of every rwkv7 layer of a model share one v_first buffer (B, C)
 * (backends/c/rwkv7_step.py): the first layer (`first` = 1) writes its v there, the later ones read it.
 *
 * Record (backends/c/rwkv7_step.py):
 *   ints   [C, H, P = head size, Rw, Ra, Rv, Rg (low-rank dims), first]
 *   floats [GroupNorm eps]
 *   w      [mix (6, C), receptance w, key w, value w (C, C), w1 (Rw, C), w2 (C, Rw), w0 (C), a1, a2, a0,
 *           v1, v2, v0, g1 (Rg, C), g2 (C, Rg), k_k (C), k_a (C), r_k (H, P), ln w (C), ln b (C), output w (C, C)]
 *   state  [shift (B, 1, C): the previous token's input, wkv (B, H, P, P), v_first (B, C) (shared)] */
#include <string.h>

#include "common.h"
#include "norms.h"
#include "token_shift.h"
#include "wkv7.h"
#include "decode_mixer.h"

enum { RW_C, RW_H, RW_P, RW_RW, RW_RA, RW_RV, RW_RG, RW_FIRST };            /* ints */
enum { RW_EPS };                                                           /* floats */
enum { RW_MIX, RW_R, RW_K, RW_V, RW_W1, RW_W2, RW_W0, RW_A1, RW_A2, RW_A0, RW_V1, RW_V2, RW_V0, RW_G1, RW_G2,
       RW_KK, RW_KA, RW_RK, RW_LN_W, RW_LN_B, RW_OUT };                    /* weights */
enum { RW_SHIFT, RW_WKV, RW_VFIRST };                                      /* state */

static inline float rw_sigmoid(float x) { return 0.5f * (1.0f + tanhf(0.5f * x)); }

/* scratch: x_r .. x_g (B, C each) | r, k, v, w, a, g, kh, ka, kb, y, o (B, C each) | low (B, max rank) | mean, rstd (1 each) */
size_t hr_rwkv7_step_scratch(const dec_layer *layer, int B, int D) {
    const int *c = layer->ints;
    int R = HR_MAX(HR_MAX(c[RW_RW], c[RW_RA]), HR_MAX(c[RW_RV], c[RW_RG]));
    (void)D;
    return (size_t)B * (17 * (size_t)c[RW_C] + (size_t)R) + 2;
}

enum { RW_IDENTITY, RW_TANH, RW_SIGMOID };

/* y (B, C) = second(f(first(x))) + bias for the low-rank map x (B, C) -> (B, R) -> (B, C) */
static int rw_low_rank(const float *x, dec_matrix first, dec_matrix second, const float *bias, float *low,
                       float *y, int B, int C, int R, int f) {
    int st = hr_dec_linear(x, first, NULL, low, B, C, R);
    for (long i = 0; st == HR_OK && f != RW_IDENTITY && i < (long)B * R; i++)
        low[i] = f == RW_TANH ? tanhf(low[i]) : rw_sigmoid(low[i]);
    return st == HR_OK ? hr_dec_linear(low, second, bias, y, B, R, C) : st;
}

/* h (B,C) -> the time mixing's output (B,C) over h, advancing shift and wkv (and writing v_first when first) */
int hr_rwkv7_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    const int *c = layer->ints;
    const float *const *wt = layer->w;
    int C = c[RW_C], H = c[RW_H], P = c[RW_P];
    float *shift = layer->state[RW_SHIFT], *S = layer->state[RW_WKV], *vfirst = layer->state[RW_VFIRST];
    size_t n = (size_t)B * C;
    float *xs = scratch, *r = xs + 6 * n, *k = r + n, *v = k + n, *w = v + n, *a = w + n, *g = a + n, *kh = g + n,
          *ka = kh + n, *kb = ka + n, *y = kb + n, *o = y + n, *low = o + n;
    float *mean = low + (size_t)B * HR_MAX(HR_MAX(c[RW_RW], c[RW_RA]), HR_MAX(c[RW_RV], c[RW_RG])), *rstd = mean + 1;
    float *x6[6];
    (void)D;
    (void)pos;
    /* the six mixes of the token with the previous one, each (B, C), then the state holds this token */
    for (int m = 0; m < 6; m++) {
        x6[m] = xs + m * n;
        hr_token_shift_forward(h, wt[RW_MIX] + (size_t)m * C, shift, x6[m], B, 1, C, 1);
    }
    memcpy(shift, h, n * sizeof(float));
    const float *xr = x6[0], *xw = x6[1], *xk = x6[2], *xv = x6[3], *xa = x6[4], *xg = x6[5];
    int st = hr_dec_linear(xr, hr_dec_w(layer, RW_R), NULL, r, B, C, C);
    if (st == HR_OK) st = hr_dec_linear(xk, hr_dec_w(layer, RW_K), NULL, k, B, C, C);
    if (st == HR_OK) st = hr_dec_linear(xv, hr_dec_w(layer, RW_V), NULL, v, B, C, C);
    /* w = exp(−e^{−0.5} σ(w0 + tanh(x_w W1) W2)) */
    if (st == HR_OK)
        st = rw_low_rank(xw, hr_dec_w(layer, RW_W1), hr_dec_w(layer, RW_W2), wt[RW_W0], low, w, B, C, c[RW_RW],
                         RW_TANH);
    for (size_t i = 0; st == HR_OK && i < n; i++) w[i] = expf(-0.60653065971263342f * rw_sigmoid(w[i]));
    /* value residual: the first layer keeps its v, the later ones mix theirs with it */
    if (st == HR_OK && c[RW_FIRST]) {
        memcpy(vfirst, v, n * sizeof(float));
    } else if (st == HR_OK) {
        st = rw_low_rank(xv, hr_dec_w(layer, RW_V1), hr_dec_w(layer, RW_V2), wt[RW_V0], low, o, B, C, c[RW_RV],
                         RW_IDENTITY);
        for (size_t i = 0; st == HR_OK && i < n; i++) v[i] += (vfirst[i] - v[i]) * rw_sigmoid(o[i]);
    }
    /* a = σ(a0 + x_a A1 A2); g = σ(x_g G1) G2 */
    if (st == HR_OK)
        st = rw_low_rank(xa, hr_dec_w(layer, RW_A1), hr_dec_w(layer, RW_A2), wt[RW_A0], low, a, B, C, c[RW_RA],
                         RW_IDENTITY);
    for (size_t i = 0; st == HR_OK && i < n; i++) a[i] = rw_sigmoid(a[i]);
    if (st == HR_OK)
        st = rw_low_rank(xg, hr_dec_w(layer, RW_G1), hr_dec_w(layer, RW_G2), NULL, low, g, B, C, c[RW_RG], RW_SIGMOID);
    if (st != HR_OK) return st;
    /* κ̂ = L2norm_head(k ⊙ k_k) (eps 1e-12); the delta rule's a = −κ̂, b = κ̂ ⊙ a; k ⊙ (1 + (a − 1) ⊙ k_a) */
    for (size_t row = 0; row < (size_t)B * H; row++) {
        size_t o0 = row * P;
        int ch = (int)(o0 % C);
        float ss = 0.0f;
        for (int p = 0; p < P; p++) {
            kh[o0 + p] = k[o0 + p] * wt[RW_KK][ch + p];
            ss += kh[o0 + p] * kh[o0 + p];
        }
        float inv = 1.0f / HR_MAX(sqrtf(ss), 1e-12f);
        for (int p = 0; p < P; p++) {
            float kk = kh[o0 + p] * inv, ai = a[o0 + p];
            ka[o0 + p] = -kk;
            kb[o0 + p] = kk * ai;
            k[o0 + p] *= 1.0f + (ai - 1.0f) * wt[RW_KA][ch + p];
        }
    }
    st = hr_wkv7_forward(r, w, k, v, ka, kb, S, y, S, B, 1, H, P, P);
    if (st != HR_OK) return st;
    /* (GroupNorm per head + (Σ_p r ⊙ k ⊙ r_k) v) ⊙ g */
    for (size_t row = 0; row < (size_t)B * H; row++) {
        size_t o0 = row * P;
        int hh = (int)(row % H), ch = hh * P;
        hr_layernorm_forward(y + o0, wt[RW_LN_W] + ch, wt[RW_LN_B] + ch, o + o0, mean, rstd, 1, P,
                             layer->floats[RW_EPS]);
        float s = 0.0f;
        for (int p = 0; p < P; p++) s += r[o0 + p] * k[o0 + p] * wt[RW_RK][ch + p];
        for (int p = 0; p < P; p++) o[o0 + p] = (o[o0 + p] + s * v[o0 + p]) * g[o0 + p];
    }
    return hr_dec_linear(o, hr_dec_w(layer, RW_OUT), NULL, h, B, C, C);
}
