/* Decode step of the RWKV-7 channel mixing (hybridref/layers/rwkv7_cmix.py): the token shift from the
 * previous token (the token_shift kernel at T = 1), key, relu², value. Constant cost per token.
 *
 * Record (backends/c/rwkv7_cmix_step.py):
 *   ints   [C, hidden]
 *   w      [mix (1, C), key w (hidden, C), value w (C, hidden)]
 *   state  [shift (B, 1, C): the previous token's input] */
#include <string.h>

#include "common.h"
#include "token_shift.h"
#include "decode_mixer.h"

enum { CM_C, CM_HIDDEN };          /* ints */
enum { CM_MIX, CM_KEY, CM_VALUE }; /* weights */
enum { CM_SHIFT };                 /* state */

/* scratch: x_k (B, C) | hidden (B, hidden) */
size_t hr_rwkv7_cmix_step_scratch(const dec_layer *layer, int B, int D) {
    (void)D;
    return (size_t)B * ((size_t)layer->ints[CM_C] + (size_t)layer->ints[CM_HIDDEN]);
}

/* h (B,C) -> the channel mixing's output (B,C) over h, advancing shift */
int hr_rwkv7_cmix_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    int C = layer->ints[CM_C], F = layer->ints[CM_HIDDEN];
    float *shift = layer->state[CM_SHIFT], *xk = scratch, *z = xk + (size_t)B * C;
    (void)D;
    (void)pos;
    hr_token_shift_forward(h, layer->w[CM_MIX], shift, xk, B, 1, C, 1);
    memcpy(shift, h, (size_t)B * C * sizeof(float));
    int st = hr_dec_linear(xk, hr_dec_w(layer, CM_KEY), NULL, z, B, C, F);
    if (st != HR_OK) return st;
    for (long i = 0; i < (long)B * F; i++) z[i] = z[i] > 0.0f ? z[i] * z[i] : 0.0f; /* relu² */
    return hr_dec_linear(z, hr_dec_w(layer, CM_VALUE), NULL, h, B, F, C);
}
