/* Decode step of the RetNet retention mixer: one token per stream through the projections, RoPE at
 * position `pos`, the retention recurrence at T = 1 (the linear_attention kernel, updating S in
 * place), the per-head RMSNorm, the swish gate and the out projection. It touches only the
 * fixed-size state S, so its cost does not depend on the position.
 *
 * Record (backends/c/retnet_step.py):
 *   ints   [H, Kh, Vh, chunk]
 *   floats [scale = 1/√Kh, norm eps, rope base, log γ_h for h = 0..H−1]
 *   w      [in_proj w (2K+2V, D) = [q | k | v | g], g_norm w (Vh), out_proj w (D, V)]
 *   state  [S (B, H, Kh, Vh)]
 * with K = H·Kh, V = H·Vh. */
#include "common.h"
#include "activations.h"
#include "linear_attention.h"
#include "norms.h"
#include "rope.h"
#include "decode_mixer.h"

enum { RN_H, RN_KH, RN_VH, RN_CHUNK };                 /* ints */
enum { RN_SCALE, RN_EPS, RN_ROPE_BASE, RN_LOG_DECAY }; /* floats; log γ_h at RN_LOG_DECAY + h */
enum { RN_IN_W, RN_NORM_W, RN_OUT_W };                 /* weights */
enum { RN_S };                                         /* state */

/* scratch: proj (B, 2K+2V) | q, k (B, K) | v, g, o (B, V) | decay, rstd (B, H) */
size_t hr_retnet_step_scratch(const dec_layer *layer, int B, int D) {
    const int *c = layer->ints;
    size_t K = (size_t)c[RN_H] * c[RN_KH], V = (size_t)c[RN_H] * c[RN_VH];
    (void)D;
    return (size_t)B * (4 * K + 5 * V + 2 * (size_t)c[RN_H]);
}

/* h (B,D) at position pos -> retention output (B,D) over h, advancing S */
int hr_retnet_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    const int *c = layer->ints;
    const float *f = layer->floats;
    int H = c[RN_H], Kh = c[RN_KH], Vh = c[RN_VH], K = H * Kh, V = H * Vh, W = 2 * K + 2 * V;
    float *S = layer->state[RN_S];
    float *proj = scratch, *q = proj + (size_t)B * W, *k = q + (size_t)B * K, *v = k + (size_t)B * K,
          *g = v + (size_t)B * V, *o = g + (size_t)B * V, *decay = o + (size_t)B * V, *rstd = decay + (size_t)B * H;
    int st = hr_dec_linear(h, hr_dec_w(layer, RN_IN_W), NULL, proj, B, D, W);
    if (st != HR_OK) return st;
    hr_dec_cols(q, proj, B, W, 0, K);
    hr_dec_cols(k, proj, B, W, K, K);
    hr_dec_cols(v, proj, B, W, 2 * K, V);
    hr_dec_cols(g, proj, B, W, 2 * K + V, V);
    for (int b = 0; b < B && st == HR_OK; b++) { /* stream b at its position pos[b] */
        st = hr_rope_forward(q + (size_t)b * K, q + (size_t)b * K, 1, 1, H, Kh, pos[b], f[RN_ROPE_BASE]);
        if (st == HR_OK) st = hr_rope_forward(k + (size_t)b * K, k + (size_t)b * K, 1, 1, H, Kh, pos[b], f[RN_ROPE_BASE]);
    }
    if (st != HR_OK) return st;
    for (int b = 0; b < B; b++) /* the op takes one log decay per (stream, head): g (B, 1, H, 1) */
        for (int hd = 0; hd < H; hd++) decay[(size_t)b * H + hd] = f[RN_LOG_DECAY + hd];
    st = hr_linear_attention_forward(q, k, v, decay, S, o, S, B, 1, H, H, Kh, Vh, 1, f[RN_SCALE], c[RN_CHUNK]);
    if (st != HR_OK) return st;
    hr_rmsnorm_forward(o, layer->w[RN_NORM_W], o, rstd, B * H, Vh, f[RN_EPS]); /* per head: (B·H, Vh) */
    hr_silu_gate_forward(o, g, o, (long)B * V);
    return hr_dec_linear(o, hr_dec_w(layer, RN_OUT_W), NULL, h, B, V, D);
}
