/* Decode step of the gated linear attention (GLA) mixer: one token per stream through the
 * projections, the low-rank data-dependent gate, the GLA recurrence at T = 1 (the linear_attention
 * kernel with one log decay per key dim, updating S in place), the per-head RMSNorm, the swish
 * gate and the out projection. It touches only the fixed-size state S, so its cost does not depend
 * on the position.
 *
 * Record (backends/c/gla_step.py):
 *   ints   [H, Kh, Vh, r = gate rank, chunk]
 *   floats [scale = 1/√Kh, norm eps, gate logit normalizer n]
 *   w      [in_proj w (2K+2V+r, D) = [q | k | v | g | z], gk_proj w (K, r), gk_proj b (K),
 *           g_norm w (Vh), out_proj w (D, V)]
 *   state  [S (B, H, Kh, Vh)]
 * with K = H·Kh, V = H·Vh. */
#include "common.h"
#include "activations.h"
#include "linear_attention.h"
#include "norms.h"
#include "decode_mixer.h"

enum { GL_H, GL_KH, GL_VH, GL_R, GL_CHUNK };                 /* ints */
enum { GL_SCALE, GL_EPS, GL_NORMALIZER };                    /* floats */
enum { GL_IN_W, GL_GK_W, GL_GK_B, GL_NORM_W, GL_OUT_W };     /* weights */
enum { GL_S };                                               /* state */

/* scratch: proj (B, 2K+2V+r) | q, k, gk (B, K) | v, g, o (B, V) | z (B, r) | rstd (B, H) */
size_t hr_gla_step_scratch(const dec_layer *layer, int B, int D) {
    const int *c = layer->ints;
    size_t K = (size_t)c[GL_H] * c[GL_KH], V = (size_t)c[GL_H] * c[GL_VH];
    (void)D;
    return (size_t)B * (5 * K + 5 * V + 2 * (size_t)c[GL_R] + (size_t)c[GL_H]);
}

/* h (B,D) -> GLA output (B,D) over h, advancing S */
int hr_gla_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    const int *c = layer->ints;
    const float *f = layer->floats;
    int H = c[GL_H], Kh = c[GL_KH], Vh = c[GL_VH], R = c[GL_R], K = H * Kh, V = H * Vh, W = 2 * K + 2 * V + R;
    float *S = layer->state[GL_S];
    float *proj = scratch, *q = proj + (size_t)B * W, *k = q + (size_t)B * K, *gk = k + (size_t)B * K,
          *v = gk + (size_t)B * K, *g = v + (size_t)B * V, *o = g + (size_t)B * V, *z = o + (size_t)B * V,
          *rstd = z + (size_t)B * R;
    (void)pos;
    int st = hr_dec_linear(h, hr_dec_w(layer, GL_IN_W), NULL, proj, B, D, W);
    if (st != HR_OK) return st;
    hr_dec_cols(q, proj, B, W, 0, K);
    hr_dec_cols(k, proj, B, W, K, K);
    hr_dec_cols(v, proj, B, W, 2 * K, V);
    hr_dec_cols(g, proj, B, W, 2 * K + V, V);
    hr_dec_cols(z, proj, B, W, 2 * K + 2 * V, R);
    st = hr_dec_linear(z, hr_dec_w(layer, GL_GK_W), layer->w[GL_GK_B], gk, B, R, K);
    if (st != HR_OK) return st;
    /* gk = logsigmoid(x) / n = −softplus(−x) / n */
    float neg_inv_n = -1.0f / f[GL_NORMALIZER];
    for (long i = 0; i < (long)B * K; i++) gk[i] = -gk[i];
    hr_softplus_forward(gk, gk, (long)B * K);
    for (long i = 0; i < (long)B * K; i++) gk[i] *= neg_inv_n;
    st = hr_linear_attention_forward(q, k, v, gk, S, o, S, B, 1, H, H, Kh, Vh, Kh, f[GL_SCALE], c[GL_CHUNK]);
    if (st != HR_OK) return st;
    hr_rmsnorm_forward(o, layer->w[GL_NORM_W], o, rstd, B * H, Vh, f[GL_EPS]); /* per head: (B·H, Vh) */
    hr_silu_gate_forward(o, g, o, (long)B * V);
    return hr_dec_linear(o, hr_dec_w(layer, GL_OUT_W), NULL, h, B, V, D);
}
