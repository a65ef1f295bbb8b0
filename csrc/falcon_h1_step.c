/* Decode step of Falcon-H1's parallel hybrid mixer (hybridref/layers/falcon_h1.py): the attention and the
 * Mamba-2 branch read the same token and their outputs add:
 *     h <- attention(h) + mamba2(h)          h (B,D)
 *
 * Record (backends/c/falcon_h1_step.py): the Mamba-2 record (csrc/mamba2_step.c) and the attention record
 * (csrc/attention_step.c) one after the other, each whole, after four ints that say where the second starts
 * (as csrc/zamba_hybrid_step.c's), so each branch is its own kind's step on its part:
 *   ints   [Mamba-2's ints, floats, weights, states (counts), | Din, N, G, Hm, W | attention's ints]
 *   floats [norm eps | attention's floats]
 *   w      [in_proj w, conv w, conv b, dt_bias, A, D, norm w (NULL: no norm), out_proj w | attention's weights]
 *   state  [conv (B,W−1,Din+2GN), ssm (B,Hm,N,Pm) | k cache (B,Hk,L,P), v cache] */
#include <string.h>
#include "common.h"
#include "decode_mixer.h"

enum { FH_INTS, FH_FLOATS, FH_W, FH_STATES, FH_HEADER };

/* the Mamba-2 and the attention record inside the layer's record */
static void falcon_h1_parts(const dec_layer *layer, dec_layer *mamba2, dec_layer *attention) {
    const int *n = layer->ints;
    *mamba2 = (dec_layer){layer->ints + FH_HEADER, layer->floats, layer->w, layer->wtype, layer->state};
    *attention = (dec_layer){layer->ints + FH_HEADER + n[FH_INTS], layer->floats + n[FH_FLOATS], layer->w + n[FH_W],
                             layer->wtype + n[FH_W], layer->state + n[FH_STATES]};
}

/* scratch: a (B,D), the attention branch's output, then the larger of the two steps' scratch (they run one
 * after the other) */
size_t hr_falcon_h1_step_scratch(const dec_layer *layer, int B, int D) {
    dec_layer mamba2, attention;
    falcon_h1_parts(layer, &mamba2, &attention);
    return (size_t)B * D + HR_MAX(hr_mamba2_step_scratch(&mamba2, B, D), hr_attention_step_scratch(&attention, B, D));
}

/* h (B,D), stream b at position pos[b] -> attention(h) + mamba2(h) (B,D) over h */
int hr_falcon_h1_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    dec_layer mamba2, attention;
    falcon_h1_parts(layer, &mamba2, &attention);
    float *a = scratch, *part = scratch + (size_t)B * D;
    memcpy(a, h, (size_t)B * D * sizeof(float));
    int st = hr_attention_step(&attention, a, part, B, D, pos);
    if (st == HR_OK) st = hr_mamba2_step(&mamba2, h, part, B, D, pos);
    if (st != HR_OK) return st;
    for (long i = 0; i < (long)B * D; i++) h[i] += a[i];
    return HR_OK;
}
