/* Decode step of Falcon-H1's parallel hybrid mixer (hybridref/layers/falcon_h1.py): the attention and the
 * Mamba-2 branch read the same token and their outputs add:
 *     h <- attention(h) + mamba2(h)          h (B,D)
 *
 * Record (backends/c/falcon_h1_step.py): the Mamba-2 record (csrc/mamba2_step.c) followed by the attention
 * record (csrc/attention_step.c), each whole, so each branch is its own kind's step on its part:
 *   ints   [Din, N, G, Hm, W, | H, Hk, P, window (-1), rope dims, L]
 *   floats [norm eps, | rope base]
 *   w      [in_proj w, conv w, conv b, dt_bias, A, D, norm w (NULL: no norm), out_proj w, | qkv w, out w, out b (NULL)]
 *   state  [conv (B,W−1,Din+2GN), ssm (B,Hm,N,Pm), | k cache (B,Hk,L,P), v cache] */
#include <string.h>
#include "common.h"
#include "decode_mixer.h"

enum { FH_M2_INTS = 5, FH_M2_FLOATS = 1, FH_M2_W = 8, FH_M2_STATE = 2 }; /* the Mamba-2 record's lengths */

/* the attention part of the record, read as a record of its own */
static dec_layer falcon_h1_attention(const dec_layer *layer) {
    dec_layer a = {layer->ints + FH_M2_INTS, layer->floats + FH_M2_FLOATS, layer->w + FH_M2_W,
                   layer->wtype + FH_M2_W, layer->state + FH_M2_STATE};
    return a;
}

/* scratch: a (B,D), the attention branch's output, then the larger of the two steps' scratch (they run one
 * after the other) */
size_t hr_falcon_h1_step_scratch(const dec_layer *layer, int B, int D) {
    dec_layer at = falcon_h1_attention(layer);
    size_t na = hr_attention_step_scratch(&at, B, D), nm = hr_mamba2_step_scratch(layer, B, D);
    return (size_t)B * D + HR_MAX(na, nm);
}

/* h (B,D), stream b at position pos[b] -> attention(h) + mamba2(h) (B,D) over h */
int hr_falcon_h1_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    dec_layer at = falcon_h1_attention(layer);
    float *a = scratch, *rest = scratch + (size_t)B * D;
    memcpy(a, h, (size_t)B * D * sizeof(float));
    int st = hr_attention_step(&at, a, rest, B, D, pos);
    if (st == HR_OK) st = hr_mamba2_step(layer, h, rest, B, D, pos);
    if (st != HR_OK) return st;
    for (long i = 0; i < (long)B * D; i++) h[i] += a[i];
    return HR_OK;
}
