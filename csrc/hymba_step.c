/* Decode step of Hymba's hybrid-head mixer (hybridref/layers/hymba.py): attention heads and Mamba heads on
 * the same token, averaged after their norms, then W_out:
 *     q, k, v = h W_qkvᵀ,  a = attention(RoPE(q), cache + RoPE(k), cache + v)      (B, H·e·P)
 *     m = Mamba's gated output (hr_mamba_gated_step, its x, z rows of W_in)        (B, Din)
 *     h <- ½ (RMSNorm(a) ⊙ w_a + RMSNorm(m) ⊙ w_m) W_outᵀ
 *
 * Record (backends/c/hymba_step.py): the Mamba record first (csrc/mamba_step.c, its in_proj the x, z rows
 * of W_in, its out_proj W_out), so the SSM heads are hr_mamba_gated_step on the same record:
 *   ints   [Din, N, R, W, bcdt, mamba heads (1), | H, Hk, P, e, window (-1), rope, L, own_kv, sinks S]
 *   floats [bcdt eps, | rope base, norm eps]
 *   w      [Mamba's 12, | W_qkv (the q, k, v rows of W_in: (H+Hk+e·Hk)P, or HP for a consumer), w_a, w_m]
 *   state  [conv, ssm, | k cache (B,Hk,L,P), v cache (B,e·Hk,L,P)]
 * A consumer of shared keys and values (own_kv 0) has only q rows and its record holds its producer's
 * cache buffers, which the producer's step, earlier in the same step, has advanced: it only reads them.
 * Value chunk c of kv head g is cache head c·Hk + g, so each chunk is a contiguous (Hk,L,P) cache per
 * stream for hr_attention_decode. The model's S meta tokens are the window layers' sinks: cache rows
 * 0..S-1 keep them, the other rows are the window's ring (hr_attention_cache_row). */
#include <string.h>
#include "common.h"
#include "norms.h"
#include "rope.h"
#include "attention_step.h"
#include "decode_mixer.h"

enum { HY_H = 6, HY_HK, HY_P, HY_E, HY_WINDOW, HY_ROPE, HY_L, HY_OWN_KV, HY_SINKS }; /* ints, after Mamba's */
enum { HY_ROPE_BASE = 1, HY_EPS };                                       /* floats */
enum { HY_OUT_W = 8, HY_QKV_W = 12, HY_NORM_A, HY_NORM_M };  /* weights (HY_OUT_W: Mamba's out_proj slot) */
enum { HY_K_CACHE = 2, HY_V_CACHE };                                     /* state */

/* columns of W_qkv's output: q (HP), then k (HkP) and v (e·Hk·P) for a layer with its own keys */
static int hymba_qkv_width(const int *c) {
    return (c[HY_H] + (c[HY_OWN_KV] ? c[HY_HK] * (1 + c[HY_E]) : 0)) * c[HY_P];
}

/* scratch: Mamba's (hr_mamba_step_scratch), then proj (B, qkv width), a (B, H·e·P), m (B, Din), o (H·P),
 * rstd (B) */
size_t hr_hymba_step_scratch(const dec_layer *layer, int B, int D) {
    const int *c = layer->ints;
    return hr_mamba_step_scratch(layer, B, D) +
           (size_t)B * (hymba_qkv_width(c) + c[HY_H] * c[HY_E] * c[HY_P] + c[0] + 1) + (size_t)c[HY_H] * c[HY_P];
}

/* proj (B, qkv width) of stream positions pos -> a (B, H, e·P): RoPE on q (and k), k and v written at pos[b]'s
 * row of the own cache, then per stream and value chunk attention over the keys of its pos[b] + 1 */
static int hymba_attend(const dec_layer *layer, float *proj, float *a, float *o, int B, const int *pos) {
    const int *c = layer->ints;
    int H = c[HY_H], Hk = c[HY_HK], P = c[HY_P], e = c[HY_E], L = c[HY_L], width = hymba_qkv_width(c), st = HR_OK;
    float *kc = layer->state[HY_K_CACHE], *vc = layer->state[HY_V_CACHE];
    for (int b = 0; b < B && st == HR_OK; b++) {
        float *q = proj + (size_t)b * width, *k = q + (size_t)H * P, *v = k + (size_t)Hk * P;
        if (c[HY_ROPE]) {
            double base = layer->floats[HY_ROPE_BASE];
            st = hr_rope_forward(q, q, 1, 1, H, P, pos[b], base);
            if (st == HR_OK && c[HY_OWN_KV]) st = hr_rope_forward(k, k, 1, 1, Hk, P, pos[b], base);
            if (st != HR_OK) break;
        }
        size_t row = (size_t)hr_attention_cache_row(pos[b], L, c[HY_SINKS]) * P;
        if (c[HY_OWN_KV])
            for (int g = 0; g < Hk; g++) {
                memcpy(kc + ((size_t)b * Hk + g) * L * P + row, k + (size_t)g * P, (size_t)P * sizeof(float));
                for (int ch = 0; ch < e; ch++)  /* value head g is e·P wide: chunk ch to cache head ch·Hk + g */
                    memcpy(vc + ((size_t)b * e * Hk + ch * Hk + g) * L * P + row, v + ((size_t)g * e + ch) * P,
                           (size_t)P * sizeof(float));
            }
        for (int ch = 0; ch < e && st == HR_OK; ch++) {
            st = hr_attention_decode(q, kc + (size_t)b * Hk * L * P, vc + ((size_t)b * e + ch) * Hk * L * P, o, 1, H, Hk,
                                     P, L, pos[b] + 1, c[HY_WINDOW], c[HY_SINKS]);
            for (int h = 0; h < H; h++)
                memcpy(a + ((size_t)b * H + h) * e * P + (size_t)ch * P, o + (size_t)h * P, (size_t)P * sizeof(float));
        }
    }
    return st;
}

/* h (B,D), stream b at position pos[b] -> the mixer's output (B,D) over h */
int hr_hymba_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    const int *c = layer->ints;
    const float *const *w = layer->w;
    int Din = c[0], A = c[HY_H] * c[HY_E] * c[HY_P];
    float eps = layer->floats[HY_EPS];
    float *proj = scratch + hr_mamba_step_scratch(layer, B, D), *a = proj + (size_t)B * hymba_qkv_width(c),
          *m = a + (size_t)B * A, *o = m + (size_t)B * Din, *rstd = o + (size_t)c[HY_H] * c[HY_P];
    int st = hr_dec_linear(h, hr_dec_w(layer, HY_QKV_W), NULL, proj, B, D, hymba_qkv_width(c));
    if (st == HR_OK) st = hymba_attend(layer, proj, a, o, B, pos);
    if (st == HR_OK) st = hr_mamba_gated_step(layer, h, m, scratch, B, D);
    if (st != HR_OK) return st;
    hr_rmsnorm_forward(a, w[HY_NORM_A], a, rstd, B, A, eps);
    hr_rmsnorm_forward(m, w[HY_NORM_M], m, rstd, B, Din, eps);
    for (long i = 0; i < (long)B * Din; i++) m[i] = 0.5f * (a[i] + m[i]);
    return hr_dec_linear(m, hr_dec_w(layer, HY_OUT_W), NULL, h, B, Din, D);
}
