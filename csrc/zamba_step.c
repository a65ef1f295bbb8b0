/* Decode step of Zamba's shared attention + MLP block, one call (hybridref/layers/zamba.py):
 *     c = RMSNorm₂ᴰ([h | e]),  a = attention(c) W_outᵀ,  h <- MLP(RMSNormᴰ(a)) W_callᵀ
 * h (B,D) the block's normed input, e (B,D) the token embeddings decode.c writes into the shared
 * "embed" state buffer (its header's H_EMBED) before the blocks run.
 *
 * Record (backends/c/zamba_step.py): the attention record's first (csrc/attention_step.c), so the
 * attention part is hr_attention_attend_step on the same record:
 *   ints   [H, Hk, P, window (-1), rope dims, L, | mlp kind, mlp hidden, D]
 *   floats [rope base, | norm eps]
 *   w      [qkv w ((H+2Hk)P, 2D), out w (D, HP), out b (NULL), | norm_in w (2D), norm_ff w (D), fc w, fc b, proj w, proj b,
 *           call w (D,D)]
 *   state  [k cache (B,Hk,L,P), v cache, | embed (B,D)]
 * The weights but W_call are the same pointers in every call's record (one shared set); the KV
 * cache is the call's own. */
#include <string.h>
#include "common.h"
#include "norms.h"
#include "decode_mixer.h"

enum { ZB_MLP_KIND = 6, ZB_HIDDEN, ZB_D };                                              /* ints */
enum { ZB_EPS = 1 };                                                                     /* floats */
enum { ZB_NORM_IN = 3, ZB_NORM_FF, ZB_FC_W, ZB_FC_B, ZB_PROJ_W, ZB_PROJ_B, ZB_CALL_W }; /* weights */
enum { ZB_EMBED = 2 };                                                                   /* state */

/* the attention part's scratch (hr_attention_step's: 2(H+2Hk)P + HP per stream), then c (B,2D), o (B,HP),
 * a (B,D), fc and act (B, 2·hidden each), rstd (B) */
static size_t zamba_attend_scratch(const int *c, int B) {
    return (size_t)B * 2 * (c[0] + 2 * c[1]) * c[2];
}

size_t hr_zamba_step_scratch(const dec_layer *layer, int B, int D) {
    const int *c = layer->ints;
    return zamba_attend_scratch(c, B) + (size_t)B * (2 * D + c[0] * c[2] + D + 4 * c[ZB_HIDDEN] + 1);
}

/* h (B,D) at position pos -> the shared block's output for this call (B,D) over h */
int hr_zamba_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    const int *c = layer->ints;
    const float *const *w = layer->w;
    int HP = c[0] * c[2], hidden = c[ZB_HIDDEN];
    float eps = layer->floats[ZB_EPS];
    float *cat = scratch + zamba_attend_scratch(c, B), *o = cat + (size_t)B * 2 * D, *a = o + (size_t)B * HP,
          *fc = a + (size_t)B * D, *act = fc + (size_t)B * 2 * hidden, *rstd = act + (size_t)B * 2 * hidden;
    const float *e = layer->state[ZB_EMBED];
    for (int b = 0; b < B; b++) {
        memcpy(cat + (size_t)b * 2 * D, h + (size_t)b * D, (size_t)D * sizeof(float));
        memcpy(cat + (size_t)b * 2 * D + D, e + (size_t)b * D, (size_t)D * sizeof(float));
    }
    hr_rmsnorm_forward(cat, w[ZB_NORM_IN], cat, rstd, B, 2 * D, eps);
    int st = hr_attention_attend_step(layer, cat, o, scratch, B, 2 * D, pos);
    if (st == HR_OK) st = hr_dec_linear(o, hr_dec_w(layer, 1), NULL, a, B, HP, D);
    if (st != HR_OK) return st;
    hr_rmsnorm_forward(a, w[ZB_NORM_FF], a, rstd, B, D, eps);
    st = hr_dec_mlp(c[ZB_MLP_KIND], hr_dec_w(layer, ZB_FC_W), w[ZB_FC_B], hr_dec_w(layer, ZB_PROJ_W), w[ZB_PROJ_B], a,
                    fc, act, B, D, hidden);
    return st != HR_OK ? st : hr_dec_linear(a, hr_dec_w(layer, ZB_CALL_W), NULL, h, B, D, D);
}
