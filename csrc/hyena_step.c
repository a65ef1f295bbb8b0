/* Decode step of the Hyena operator (hybridref/layers/hyena.py): one token per stream through the input
 * projection, the width-3 conv at T = 1 and the N−1 long convolutions, each of which appends its input to
 * its history and sums the filter's first pos + 1 taps against it: O(pos) per token, as attention.
 *
 * Record (backends/c/hyena_step.py):
 *   ints  [N = order, W = short conv width, M = max_len (rows of the filter and of each history)]
 *   w     [in_proj w ((N+1)D, D), b ((N+1)D), conv w ((N+1)D, W), conv b ((N+1)D), filter h (M, (N−1)D),
 *          filter bias ((N−1)D), out_proj w (D, D), b (D)]
 *   state [conv (B, W−1, (N+1)D): the last W−1 conv inputs, hist (N−1, B, M, D): row p of history o is the
 *          input of long convolution o at position p]
 * The filter is the layer's h over positions 0..M−1, computed once when the decode state is made. */
#include <string.h>
#include "common.h"
#include "simd.h"
#include "decode_mixer.h"

enum { HS_N, HS_W, HS_M };  /* ints */
enum { HS_IN_W, HS_IN_B, HS_CONV_W, HS_CONV_B, HS_FILTER, HS_FILTER_B, HS_OUT_W, HS_OUT_B };  /* weights */
enum { HS_CONV, HS_HIST };  /* state */

/* scratch: z, zc (B, (N+1)D each) | v (B, D) */
size_t hr_hyena_step_scratch(const dec_layer *layer, int B, int D) {
    return (size_t)B * D * (2 * (size_t)(layer->ints[HS_N] + 1) + 1);
}

/* One long convolution for B streams, stream b at position pos = pos_of[b]: w = v ⊙ x goes to row pos of
 * hist (B, M, D), then v <- Σ_{j<=pos} h[j] ⊙ hist[pos−j] + bias ⊙ w. x has row stride ldx; h has row stride ldh.
 * The sum sweeps j once per block of HS_COLS vectors of columns, reading each row of h and of hist as one
 * contiguous run: a sweep per vector (a column strip 1 KiB apart per j) read the rows in 64-byte pieces and
 * fell off the prefetcher and the TLB once the filter and history outgrew L3 (16K positions at D 128). */
enum { HS_COLS = 8 };  /* accumulators of one sweep: 8 vectors stay in registers on AVX2 and AVX-512 */
static void hs_long_conv(float *v, const float *x, int ldx, float *hist, const float *h, int ldh, const float *bias,
                         int B, int D, int M, const int *pos_of) {
    for (int b = 0; b < B; b++) {
        int pos = pos_of[b];
        float *hb = hist + (size_t)b * M * D, *vb = v + (size_t)b * D, *row = hb + (size_t)pos * D;
        const float *xb = x + (size_t)b * ldx;
        for (int c = 0; c < D; c += HR_VW)
            hr_vstore(row + c, hr_vmul(hr_vload(vb + c, D - c), hr_vload(xb + c, D - c)), D - c);
        for (int c0 = 0; c0 < D; c0 += HS_COLS * HR_VW) {
            int nv = (D - c0 + HR_VW - 1) / HR_VW;
            if (nv > HS_COLS) nv = HS_COLS;
            hr_vec acc[HS_COLS];
            for (int k = 0; k < nv; k++) {
                int c = c0 + k * HR_VW;
                acc[k] = hr_vmul(hr_vload(bias + c, D - c), hr_vload(row + c, D - c));
            }
            for (int j = 0; j <= pos; j++) {
                const float *hj = h + (size_t)j * ldh, *xj = hb + (size_t)(pos - j) * D;
                for (int k = 0; k < nv; k++) {
                    int c = c0 + k * HR_VW;
                    acc[k] = hr_vfma(hr_vload(hj + c, D - c), hr_vload(xj + c, D - c), acc[k]);
                }
            }
            for (int k = 0; k < nv; k++) {
                int c = c0 + k * HR_VW;
                hr_vstore(vb + c, acc[k], D - c);
            }
        }
    }
}

/* h (B,D) at position pos -> Hyena output (B,D) over h, advancing the conv state and the histories */
int hr_hyena_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    const int *c = layer->ints;
    const float *const *w = layer->w;
    int N = c[HS_N], W = c[HS_W], M = c[HS_M], width = (N + 1) * D;
    float *z = scratch, *zc = z + (size_t)B * width, *v = zc + (size_t)B * width;
    int st = hr_dec_linear(h, hr_dec_w(layer, HS_IN_W), w[HS_IN_B], z, B, D, width);
    if (st == HR_OK) st = hr_dec_conv_step(z, w[HS_CONV_W], w[HS_CONV_B], layer->state[HS_CONV], zc, B, width, W);
    if (st != HR_OK) return st;
    hr_dec_cols(v, zc, B, width, N * D, D);
    for (int o = 0; o < N - 1; o++)
        hs_long_conv(v, zc + (size_t)(N - 1 - o) * D, width, layer->state[HS_HIST] + (size_t)o * B * M * D,
                     w[HS_FILTER] + (size_t)o * D, (N - 1) * D, w[HS_FILTER_B] + (size_t)o * D, B, D, M, pos);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < D; i++) v[(size_t)b * D + i] *= zc[(size_t)b * width + i];
    return hr_dec_linear(v, hr_dec_w(layer, HS_OUT_W), w[HS_OUT_B], h, B, D, D);
}
