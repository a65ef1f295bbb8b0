/* Decode step of the Mamba-2 mixer (SSD): one token per stream through in_proj, the conv over xBC,
 * the SSD recurrence at T = 1 (the linear_attention kernel, updating the state in place), the gated
 * grouped RMSNorm (or the gate alone: Falcon-H1's mixer without mamba_rms_norm) and out_proj. It touches only the fixed-size state, so its cost does not depend on
 * the position.
 *
 * Record (backends/c/mamba2_step.py), with C = Din + 2GN conv channels, P = Din / H:
 *   ints   [Din, N, G, H, W = conv width]
 *   floats [norm eps]
 *   w      [in_proj w (2Din+2GN+H, D), conv w (C, W), conv b (C), dt_bias (H), A = −exp(A_log) (H), D (H),
 *           norm w (Din; NULL: y ⊙ SiLU(z) with no norm), out_proj w (D, Din)]
 *   state  [conv (B, W−1, C): the last W−1 conv inputs, ssm (B, H, N, P): the SSM state] */
#include "common.h"
#include "activations.h"
#include "linear_attention.h"
#include "norms.h"
#include "decode_mixer.h"

enum { M2_DIN, M2_N, M2_G, M2_H, M2_W };                                                   /* ints */
enum { M2_EPS };                                                                           /* floats */
enum { M2_IN_W, M2_CONV_W, M2_CONV_B, M2_DT_BIAS, M2_A, M2_D, M2_NORM_W, M2_OUT_W };       /* weights */
enum { M2_CONV, M2_SSM };                                                                  /* state */

/* scratch: zxbcdt (B, 2Din+2GN+H) | z (B,Din) | xbc, xbc_act (B,C each) | x, v (B,Din each) |
 * Bm, Cm (B,GN each) | delta, g (B,H each) | rstd (1) */
size_t hr_mamba2_step_scratch(const dec_layer *layer, int B, int D) {
    const int *c = layer->ints;
    size_t din = c[M2_DIN], gn = (size_t)c[M2_G] * c[M2_N], h = c[M2_H], conv = din + 2 * gn;
    (void)D;
    return (size_t)B * ((2 * din + 2 * gn + h) + din + 2 * conv + 2 * din + 2 * gn + 2 * h) + 1;
}

/* h (B,D) -> Mamba-2 output (B,D) over h, advancing conv and ssm */
int hr_mamba2_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    const int *c = layer->ints;
    const float *const *w = layer->w;
    int Din = c[M2_DIN], N = c[M2_N], G = c[M2_G], H = c[M2_H], W = c[M2_W];
    int P = Din / H, GN = G * N, C = Din + 2 * GN, E = Din + C + H, gs = Din / G;
    float *conv = layer->state[M2_CONV], *ssm = layer->state[M2_SSM];
    float *zx = scratch, *z = zx + (size_t)B * E, *xbc = z + (size_t)B * Din, *xbc_act = xbc + (size_t)B * C,
          *x = xbc_act + (size_t)B * C, *v = x + (size_t)B * Din, *Bm = v + (size_t)B * Din, *Cm = Bm + (size_t)B * GN,
          *delta = Cm + (size_t)B * GN, *g = delta + (size_t)B * H, *rstd = g + (size_t)B * H;
    (void)pos;
    int st = hr_dec_linear(h, hr_dec_w(layer, M2_IN_W), NULL, zx, B, D, E); /* [z | xBC | dt] */
    if (st != HR_OK) return st;
    hr_dec_cols(z, zx, B, E, 0, Din);
    hr_dec_cols(xbc, zx, B, E, Din, C);
    hr_dec_cols(delta, zx, B, E, Din + C, H);
    st = hr_dec_conv_step(xbc, w[M2_CONV_W], w[M2_CONV_B], conv, xbc_act, B, C, W);
    if (st != HR_OK) return st;
    hr_silu_forward(xbc_act, xbc_act, (long)B * C);
    hr_dec_cols(x, xbc_act, B, C, 0, Din);
    hr_dec_cols(Bm, xbc_act, B, C, Din, GN);
    hr_dec_cols(Cm, xbc_act, B, C, Din + GN, GN);
    /* Δ = softplus(dt + dt_bias); the recurrence's v = Δ x per head and log decay g = Δ A */
    for (int b = 0; b < B; b++)
        for (int hh = 0; hh < H; hh++) delta[(size_t)b * H + hh] += w[M2_DT_BIAS][hh];
    hr_softplus_forward(delta, delta, (long)B * H);
    for (int b = 0; b < B; b++)
        for (int hh = 0; hh < H; hh++) {
            float d = delta[(size_t)b * H + hh];
            const float *xr = x + (size_t)b * Din + (size_t)hh * P;
            float *vr = v + (size_t)b * Din + (size_t)hh * P;
            g[(size_t)b * H + hh] = d * w[M2_A][hh];
            for (int p = 0; p < P; p++) vr[p] = d * xr[p];
        }
    /* one step of S = exp(g) S + Bᵀ v, y = C S (q = C, k = B; heads of a group share them), in place;
     * at T = 1 the chunk length makes no difference */
    float *y = xbc; /* reuse: xbc is dead once the conv state holds it */
    st = hr_linear_attention_forward(Cm, Bm, v, g, ssm, y, ssm, B, 1, G, H, N, P, 1, 1.0f, 1);
    if (st != HR_OK) return st;
    for (int b = 0; b < B; b++)
        for (int hh = 0; hh < H; hh++) {
            float dh = w[M2_D][hh];
            float *yr = y + (size_t)b * Din + (size_t)hh * P;
            const float *xr = x + (size_t)b * Din + (size_t)hh * P;
            for (int p = 0; p < P; p++) yr[p] += dh * xr[p];
        }
    /* RMSNorm(y ⊙ SiLU(z)) within each group of gs channels: (B, Din) is B·G contiguous rows of gs */
    float *gated = v, *normed = w[M2_NORM_W] ? xbc_act : gated; /* reuse: v and xbc_act are dead from here on */
    hr_silu_gate_forward(y, z, gated, (long)B * Din);
    for (int r = 0; w[M2_NORM_W] && r < B * G; r++)
        hr_rmsnorm_forward(gated + (size_t)r * gs, w[M2_NORM_W] + (size_t)(r % G) * gs, normed + (size_t)r * gs,
                           rstd, 1, gs, layer->floats[M2_EPS]);
    return hr_dec_linear(normed, hr_dec_w(layer, M2_OUT_W), NULL, h, B, Din, D);
}
