/* Decode step of the Mamba mixer: one token per stream through conv, x_proj, dt_proj and the scan at
 * T = 1, touching only the fixed-size state, so its cost does not depend on the position.
 *
 * Record (backends/c/mamba_step.py):
 *   ints   [Din, N, R = dt_rank, W = conv width, bcdt (1: RMSNorms on dt, B, C: Jamba's bcdt_rms),
 *           H = mamba_heads (Zamba's multi-head Mamba; 1: Mamba)]
 *   floats [the bcdt norms' eps]
 *   w      [in_proj w (2Din, D), conv w (Din, W), conv b (Din), x_proj w (H, R+2N, Dh), dt_proj w (H, Dh, R),
 *           dt_proj b (H, Dh), A = −exp(A_log) (Din, N), D (Din), out_proj w (D, Din), dt norm w (R), B norm w
 *           (N), C norm w (N) (NULL without bcdt)]; Dh = Din/H, and with H = 1 these are Mamba's matrices
 *   state [conv (B, W−1, Din): the last W−1 conv inputs, ssm (B, Din, N): the scan state, head h's rows
 *          h·Dh … (h+1)·Dh − 1 of each stream's] */
#include <string.h>
#include "common.h"
#include "activations.h"
#include "norms.h"
#include "selective_scan.h"
#include "decode_mixer.h"

enum { MB_DIN, MB_N, MB_R, MB_W, MB_BCDT, MB_HEADS };  /* ints */
enum { MB_BCDT_EPS };                                  /* floats */
enum { MB_IN_W, MB_CONV_W, MB_CONV_B, MB_XPROJ_W, MB_DTPROJ_W, MB_DTPROJ_B, MB_A, MB_D, MB_OUT_W, MB_DT_NORM_W,
       MB_B_NORM_W, MB_C_NORM_W };           /* weights */
enum { MB_CONV, MB_SSM };  /* state */

/* scratch, 9 Din + 2(R+2N) + 1 floats per stream: xz (B, 2Din) | x_in, z, x_conv, x, one head's x and y
 * (B, Din each) | the head's work: dbc (B, R+2N), dt (B,R), Bm, Cm (B,N), the bcdt norms' rstd (B), delta (B, Din) */
size_t hr_mamba_step_scratch(const dec_layer *layer, int B, int D) {
    const int *c = layer->ints;
    (void)D;
    return (size_t)B * (9 * c[MB_DIN] + 2 * (c[MB_R] + 2 * c[MB_N]) + 1);
}

/* Head h's lines from x_proj to the scan: x (B,Dh) its channels of the conv output -> y (B,Dh), advancing
 * its rows of ssm; work: the head's scratch of hr_mamba_step_scratch. */
static int mb_head_step(const dec_layer *layer, const float *x, float *y, float *work, int h, int B) {
    const int *c = layer->ints;
    const float *const *w = layer->w;
    int Din = c[MB_DIN], N = c[MB_N], R = c[MB_R], H = c[MB_HEADS], Dh = Din / H, E = R + 2 * N;
    float *ssm = layer->state[MB_SSM];
    float *dbc = work, *dt = dbc + (size_t)B * E, *Bm = dt + (size_t)B * R, *Cm = Bm + (size_t)B * N,
          *rstd = Cm + (size_t)B * N, *delta = rstd + B;
    int st = hr_dec_linear(x, hr_dec_block(hr_dec_w(layer, MB_XPROJ_W), h, E, Dh), NULL, dbc, B, Dh, E);
    if (st != HR_OK) return st;
    hr_dec_cols(dt, dbc, B, E, 0, R); /* dbc = [dt | B | C] */
    hr_dec_cols(Bm, dbc, B, E, R, N);
    hr_dec_cols(Cm, dbc, B, E, R + N, N);
    if (c[MB_BCDT]) { /* Jamba: dt, B, C = RMSNorm(dt), RMSNorm(B), RMSNorm(C), each over its own width */
        float eps = layer->floats[MB_BCDT_EPS];
        hr_rmsnorm_forward(dt, w[MB_DT_NORM_W], dt, rstd, B, R, eps);
        hr_rmsnorm_forward(Bm, w[MB_B_NORM_W], Bm, rstd, B, N, eps);
        hr_rmsnorm_forward(Cm, w[MB_C_NORM_W], Cm, rstd, B, N, eps);
    }
    st = hr_dec_linear(dt, hr_dec_block(hr_dec_w(layer, MB_DTPROJ_W), h, Dh, R), w[MB_DTPROJ_B] + h * Dh,
                       delta, B, R, Dh);
    if (st != HR_OK) return st;
    hr_softplus_forward(delta, delta, (long)B * Dh);
    const float *A = w[MB_A] + (size_t)h * Dh * N, *Dw = w[MB_D] + h * Dh;
    if (H == 1) return hr_selective_scan_forward(x, delta, A, Bm, Cm, Dw, ssm, y, ssm, B, 1, Din, N);
    /* a head's states are not contiguous across streams (ssm (B, Din, N)): one stream at a time */
    for (int b = 0; b < B && st == HR_OK; b++) {
        float *s = ssm + ((size_t)b * Din + (size_t)h * Dh) * N;
        st = hr_selective_scan_forward(x + (size_t)b * Dh, delta + (size_t)b * Dh, A, Bm + (size_t)b * N,
                                       Cm + (size_t)b * N, Dw, s, y + (size_t)b * Dh, s, 1, 1, Dh, N);
    }
    return st;
}

/* h (B,D) -> gated (B,Din) = y ⊙ SiLU(z), the Mamba output before out_proj, advancing conv and ssm; scratch:
 * hr_mamba_step_scratch's. Shared with Hymba's step (csrc/hymba_step.c), whose SSM heads are this. */
int hr_mamba_gated_step(const dec_layer *layer, const float *h, float *gated, float *scratch, int B, int D) {
    const int *c = layer->ints;
    const float *const *w = layer->w;
    int Din = c[MB_DIN], W = c[MB_W], H = c[MB_HEADS], Dh = Din / H;
    float *conv = layer->state[MB_CONV];
    float *xz = scratch, *x_in = xz + (size_t)B * 2 * Din, *z = x_in + (size_t)B * Din, *x_conv = z + (size_t)B * Din,
          *x = x_conv + (size_t)B * Din, *xh = x + (size_t)B * Din, *yh = xh + (size_t)B * Din,
          *work = yh + (size_t)B * Din;
    int st = hr_dec_linear(h, hr_dec_w(layer, MB_IN_W), NULL, xz, B, D, 2 * Din);
    if (st != HR_OK) return st;
    hr_dec_cols(x_in, xz, B, 2 * Din, 0, Din);
    hr_dec_cols(z, xz, B, 2 * Din, Din, Din);
    st = hr_dec_conv_step(x_in, w[MB_CONV_W], w[MB_CONV_B], conv, x_conv, B, Din, W);
    if (st != HR_OK) return st;
    hr_silu_forward(x_conv, x, (long)B * Din);
    float *y = x_in; /* reuse: x_in is dead from here on */
    if (H == 1) st = mb_head_step(layer, x, y, work, 0, B);
    for (int hd = 0; hd < H && H > 1 && st == HR_OK; hd++) { /* each head on its channels, gathered and put back */
        hr_dec_cols(xh, x, B, Din, hd * Dh, Dh);
        st = mb_head_step(layer, xh, yh, work, hd, B);
        for (int b = 0; b < B; b++)
            memcpy(y + (size_t)b * Din + (size_t)hd * Dh, yh + (size_t)b * Dh, (size_t)Dh * sizeof(float));
    }
    if (st != HR_OK) return st;
    hr_silu_gate_forward(y, z, gated, (long)B * Din);
    return HR_OK;
}

/* h (B,D) -> Mamba output (B,D) over h, advancing conv and ssm */
int hr_mamba_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    int Din = layer->ints[MB_DIN];
    float *gated = scratch + (size_t)B * 5 * Din; /* the dead x of hr_mamba_gated_step's scratch */
    (void)pos;
    int st = hr_mamba_gated_step(layer, h, gated, scratch, B, D);
    return st != HR_OK ? st : hr_dec_linear(gated, hr_dec_w(layer, MB_OUT_W), NULL, h, B, Din, D);
}
