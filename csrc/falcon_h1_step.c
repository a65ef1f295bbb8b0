/* Decode step of Falcon-H1's parallel hybrid mixer (hybridref/layers/falcon_h1.py): the attention and the
 * Mamba-2 branch read the same token and their outputs add:
 *     h <- attention(h) + mamba2(h)          h (B,D)
 *
 * Record (backends/c/falcon_h1_step.py): the attention record (csrc/attention_step.c) followed by the
 * Mamba-2 record (csrc/mamba2_step.c), each whole, so each branch is its own kind's step on its part:
 *   ints   [H, Hk, P, window (-1), rope dims, L, | Din, N, G, Hm, W]
 *   floats [rope base, | norm eps]
 *   w      [qkv w, out w, out b (NULL), | in_proj w, conv w, conv b, dt_bias, A, D, norm w (NULL: no norm), out_proj w]
 *   state  [k cache (B,Hk,L,P), v cache, | conv (B,W−1,Din+2GN), ssm (B,Hm,N,Pm)] */
#include <string.h>
#include "common.h"
#include "decode_mixer.h"

enum { FH_AT_INTS = 6, FH_AT_FLOATS = 1, FH_AT_W = 3, FH_AT_STATE = 2 }; /* the attention record's lengths */

/* the Mamba-2 part of the record, read as a record of its own */
static dec_layer falcon_h1_mamba2(const dec_layer *layer) {
    dec_layer m = {layer->ints + FH_AT_INTS, layer->floats + FH_AT_FLOATS, layer->w + FH_AT_W,
                   layer->wtype + FH_AT_W, layer->state + FH_AT_STATE};
    return m;
}

/* scratch: a (B,D), the attention branch's output, then the larger of the two steps' scratch (they run one
 * after the other) */
size_t hr_falcon_h1_step_scratch(const dec_layer *layer, int B, int D) {
    dec_layer m = falcon_h1_mamba2(layer);
    size_t at = hr_attention_step_scratch(layer, B, D), m2 = hr_mamba2_step_scratch(&m, B, D);
    return (size_t)B * D + HR_MAX(at, m2);
}

/* h (B,D), stream b at position pos[b] -> attention(h) + mamba2(h) (B,D) over h */
int hr_falcon_h1_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    dec_layer m = falcon_h1_mamba2(layer);
    float *a = scratch, *rest = scratch + (size_t)B * D;
    memcpy(a, h, (size_t)B * D * sizeof(float));
    int st = hr_attention_step(layer, a, rest, B, D, pos);
    if (st == HR_OK) st = hr_mamba2_step(&m, h, rest, B, D, pos);
    if (st != HR_OK) return st;
    for (long i = 0; i < (long)B * D; i++) h[i] += a[i];
    return HR_OK;
}
