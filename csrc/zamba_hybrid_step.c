/* Decode step of Zamba's hybrid layer (hybridref/layers/zamba.py, ZambaHybrid; transformers' ZambaHybridLayer
 * without the residual addition, which decode.c does):
 *     t = Z(u, e)  (csrc/zamba_step.c),   h <- Mamba(RMSNorm(u + t))  (csrc/mamba_step.c)
 * h (B,D) is the residual stream itself (the block has no norm1: decode.c copies x for a NULL norm1 weight).
 *
 * Record (backends/c/zamba_hybrid_step.py): the two parts' records one after the other, after four ints that
 * say where the second starts:
 *   ints   [Z's ints, floats, weights, states (counts), | Z's ints | Mamba's ints]
 *   floats [Z's floats (its norm eps is also the eps of the norm before the Mamba) | Mamba's floats]
 *   w      [Z's weights | norm w (D) | Mamba's weights]
 *   state  [Z's states (this call's KV cache, the shared embeddings) | Mamba's conv, ssm] */
#include <string.h>
#include "common.h"
#include "norms.h"
#include "decode_mixer.h"

enum { ZH_INTS, ZH_FLOATS, ZH_W, ZH_STATES, ZH_HEADER };
enum { ZH_CALL_EPS = 1 }; /* the Z record's norm eps (csrc/zamba_step.c's ZB_EPS) */

/* the Z record, the Mamba record and the norm weight inside the layer's record */
static void zh_parts(const dec_layer *layer, dec_layer *call, dec_layer *mamba, const float **norm_w) {
    const int *n = layer->ints;
    *call = (dec_layer){layer->ints + ZH_HEADER, layer->floats, layer->w, layer->wtype, layer->state};
    *norm_w = layer->w[n[ZH_W]];
    *mamba = (dec_layer){layer->ints + ZH_HEADER + n[ZH_INTS], layer->floats + n[ZH_FLOATS], layer->w + n[ZH_W] + 1,
                         layer->wtype + n[ZH_W] + 1, layer->state + n[ZH_STATES]};
}

/* u (B,D), rstd (B), then the larger of the two parts' scratch */
size_t hr_zamba_hybrid_step_scratch(const dec_layer *layer, int B, int D) {
    dec_layer call, mamba;
    const float *norm_w;
    zh_parts(layer, &call, &mamba, &norm_w);
    return (size_t)B * (D + 1) + HR_MAX(hr_zamba_step_scratch(&call, B, D), hr_mamba_step_scratch(&mamba, B, D));
}

/* h (B,D) the residual stream at position pos -> Mamba(RMSNorm(h + t)) over h */
int hr_zamba_hybrid_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    dec_layer call, mamba;
    const float *norm_w;
    zh_parts(layer, &call, &mamba, &norm_w);
    float *u = scratch, *rstd = u + (size_t)B * D, *part = rstd + B;
    size_t n = (size_t)B * D;
    memcpy(u, h, n * sizeof(float));
    int st = hr_zamba_step(&call, h, part, B, D, pos); /* h <- t */
    if (st != HR_OK) return st;
    for (size_t i = 0; i < n; i++) h[i] += u[i];
    hr_rmsnorm_forward(h, norm_w, h, rstd, B, D, call.floats[ZH_CALL_EPS]);
    return hr_mamba_step(&mamba, h, part, B, D, pos);
}
