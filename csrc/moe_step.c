/* Decode step of a mixture-of-experts MLP (hybridref/layers/moe.py), h (B,D) -> MoE(h) over h:
 *     experts, weights = top-k of softmax(h W_rᵀ)          hr_moe_route_forward (csrc/moe.c)
 *     xs = the B·k rows grouped by expert                    hr_moe_dispatch_forward
 *     each expert's MLP on its rows, in place                hr_dec_mlp (the block MLP of the experts' kind)
 *     h[b] = Σ_j weights[b,j] ys[slot_pos[b,j]]              hr_moe_combine_forward
 * so a stream reads the weights of its k experts only, and an expert's weights are read once for all
 * the streams routed to it.
 *
 * Record (backends/c/decode.py, _moe_record), at the cfg offset of the layer's L_MOE int:
 *   ints [n_experts E, top_k, normalize, expert MLP kind (decode.c's MLP_*), fc width F (hidden, or
 *        2·hidden when gated), w_at]
 *   w[w_at ...] [router (E,D), fc w (E,F,D), fc b (E,F) or NULL, proj w (E,D,hidden), proj b (E,D) or NULL] */
#include <string.h>
#include "common.h"
#include "decode_mixer.h"
#include "moe.h"
#include "moe_step.h"

enum { MS_E, MS_K, MS_NORMALIZE, MS_KIND, MS_FC_WIDTH, MS_W };       /* ints */
enum { MS_ROUTER, MS_FC_W, MS_FC_B, MS_PROJ_W, MS_PROJ_B };          /* weights from w_at */

int hr_moe_step(const int *rec, const float *const *w, const int *wtype, float *h, int B, int D, int hidden) {
    const int E = rec[MS_E], k = rec[MS_K], F = rec[MS_FC_WIDTH];
    const float *const *mw = w + rec[MS_W];
    const int *mt = wtype + rec[MS_W];
    const size_t rows = (size_t)B * k;
    /* scratch: stats (2E+2 doubles), experts, slot_pos (B·k int64), offsets (E+1 int64), then floats:
     * logits, probs (B·E), lse (B), weights (B·k), xs (B·k·D), fc (B·k·F), act (B·k·hidden) */
    size_t n8 = 2 * (size_t)E + 2 + 2 * rows + (size_t)E + 1;
    size_t n4 = 2 * (size_t)B * E + B + rows + rows * ((size_t)D + F + hidden);
    double *stats = hr_alloc(n8 * 8 + n4 * sizeof(float));
    if (!stats) return HR_ENOMEM;
    int64_t *experts = (int64_t *)(stats + 2 * E + 2), *slot_pos = experts + rows, *offsets = slot_pos + rows;
    float *logits = (float *)(offsets + E + 1), *probs = logits + (size_t)B * E, *lse = probs + (size_t)B * E,
          *weights = lse + B, *xs = weights + rows, *fc = xs + rows * D, *act = fc + rows * F;
    int st = hr_dec_linear(h, hr_dec_slot(mw, mt, MS_ROUTER), NULL, logits, B, D, E);
    if (st == HR_OK) st = hr_moe_route_forward(logits, experts, weights, probs, lse, stats, B, E, k, rec[MS_NORMALIZE]);
    if (st == HR_OK) st = hr_moe_dispatch_forward(h, experts, xs, slot_pos, offsets, B, D, k, E);
    for (int e = 0; e < E && st == HR_OK; e++) {
        const int n = (int)(offsets[e + 1] - offsets[e]);
        if (n == 0) continue;
        dec_matrix fc_w = hr_dec_block(hr_dec_slot(mw, mt, MS_FC_W), e, F, D);
        dec_matrix proj_w = hr_dec_block(hr_dec_slot(mw, mt, MS_PROJ_W), e, D, hidden);
        const float *fc_b = mw[MS_FC_B] ? mw[MS_FC_B] + (size_t)e * F : NULL;
        const float *proj_b = mw[MS_PROJ_B] ? mw[MS_PROJ_B] + (size_t)e * D : NULL;
        st = hr_dec_mlp(rec[MS_KIND], fc_w, fc_b, proj_w, proj_b, xs + offsets[e] * D, fc, act, n, D, hidden);
    }
    if (st == HR_OK) hr_moe_combine_forward(xs, slot_pos, weights, h, B, D, k);
    free(stats);
    return st;
}
