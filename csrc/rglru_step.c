/* Decode step of Griffin's recurrent block (hybridref/layers/rglru.py): one token per stream through
 * both branches, the conv at T = 1, the RG-LRU gates and the recurrence at T = 1, touching only the
 * fixed-size state, so its cost does not depend on the position.
 *
 * Record (backends/c/rglru_step.py):
 *   ints  [C = lru_width, H = gate blocks, W = conv width]
 *   w     [linear_y w (C,D), b (C), linear_x w (C,D), b (C), conv w (C,W), conv b (C),
 *          input gate w (H,P,P), b (H,P), a gate w (H,P,P), b (H,P), a_param Λ (C), out w (D,C), b (D)]
 *   state [conv (B, W−1, C): the last W−1 conv inputs, h (B, C): the recurrence state]
 * The gates' multiplier is 1 at position 0 only: the gate op gets the stream position pos. */
#include <string.h>
#include "common.h"
#include "activations.h"
#include "linear_recurrence.h"
#include "rglru.h"
#include "decode_mixer.h"

enum { RS_C, RS_H, RS_W };  /* ints */
enum { RS_Y_W, RS_Y_B, RS_X_W, RS_X_B, RS_CONV_W, RS_CONV_B, RS_IG_W, RS_IG_B, RS_AG_W, RS_AG_B, RS_LAMBDA,
       RS_OUT_W, RS_OUT_B };  /* weights */
enum { RS_CONV, RS_STATE_H };  /* state */

/* scratch: y, x_in, x, gx, ga, a, xn (B,C each) | a block's input and output (B,P each) */
size_t hr_rglru_step_scratch(const dec_layer *layer, int B, int D) {
    const int *c = layer->ints;
    (void)D;
    return (size_t)B * (7 * c[RS_C] + 2 * (c[RS_C] / c[RS_H]));
}

/* g (B,C) = x (B,C) through H diagonal blocks: g_h = x_h w_hᵀ + b_h, w (H,P,P), b (H,P); bin, bout (B,P) */
static int rs_block_diagonal(const float *x, dec_matrix w, const float *b, float *g, float *bin, float *bout, int B,
                             int C, int H) {
    int P = C / H;
    for (int hd = 0; hd < H; hd++) {
        hr_dec_cols(bin, x, B, C, hd * P, P);
        int st = hr_dec_linear(bin, hr_dec_block(w, hd, P, P), b + (size_t)hd * P, bout, B, P, P);
        if (st != HR_OK) return st;
        for (int r = 0; r < B; r++)
            memcpy(g + (size_t)r * C + (size_t)hd * P, bout + (size_t)r * P, (size_t)P * sizeof(float));
    }
    return HR_OK;
}

/* h (B,D) at position pos -> recurrent block output (B,D) over h, advancing conv and the state h */
int hr_rglru_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    const int *c = layer->ints;
    const float *const *w = layer->w;
    int C = c[RS_C], H = c[RS_H], W = c[RS_W];
    size_t n = (size_t)B * C;
    float *conv = layer->state[RS_CONV], *state_h = layer->state[RS_STATE_H];
    float *y = scratch, *x_in = y + n, *x = x_in + n, *gx = x + n, *ga = gx + n, *a = ga + n, *xn = a + n,
          *bin = xn + n, *bout = bin + (size_t)B * (C / H);
    int st = hr_dec_linear(h, hr_dec_w(layer, RS_Y_W), w[RS_Y_B], y, B, D, C);
    if (st == HR_OK) st = hr_dec_linear(h, hr_dec_w(layer, RS_X_W), w[RS_X_B], x_in, B, D, C);
    if (st == HR_OK) st = hr_dec_conv_step(x_in, w[RS_CONV_W], w[RS_CONV_B], conv, x, B, C, W);
    if (st == HR_OK) st = rs_block_diagonal(x, hr_dec_w(layer, RS_IG_W), w[RS_IG_B], gx, bin, bout, B, C, H);
    if (st == HR_OK) st = rs_block_diagonal(x, hr_dec_w(layer, RS_AG_W), w[RS_AG_B], ga, bin, bout, B, C, H);
    for (int b = 0; b < B && st == HR_OK; b++) { /* stream b at its position pos[b] */
        size_t r = (size_t)b * C;
        st = hr_rglru_gate_forward(x + r, gx + r, ga + r, w[RS_LAMBDA], a + r, xn + r, 1, 1, C, pos[b]);
    }
    float *rec = gx; /* the recurrence's output h_t; gx is dead from here on */
    if (st == HR_OK) st = hr_linear_recurrence_forward(a, xn, state_h, rec, state_h, B, 1, C);
    if (st != HR_OK) return st;
    hr_gelu_forward(y, y, (long)n);
    for (size_t i = 0; i < n; i++) rec[i] *= y[i];
    return hr_dec_linear(rec, hr_dec_w(layer, RS_OUT_W), w[RS_OUT_B], h, B, C, D);
}
