/* Streaming decoder: one call advances a whole language model (embedding, every block, final norm,
 * head) by one token for B independent streams that stand at the same position `pos`.
 *
 * The model is described once by flat arrays built in backends/c/decode.py (no structs cross the
 * cffi boundary):
 *   cfg  ints:   [V, D, n_layers, norm (0 RMSNorm, 1 LayerNorm)], then DEC_LAYER_INTS per layer:
 *                [kind (0 attention, 1 Mamba), mlp_hidden (0: no MLP), then six mixer ints]:
 *                attention (H, Hk, P, window or -1, rope 0/1, L = cache rows); Mamba (Din, N, R, W)
 *   fcfg floats: [norm eps, rope base]
 *   w    weight pointers: [embed (V,D), norm w, norm b, head w (V,D), head b], then DEC_LAYER_W per
 *                layer: [norm1 w, norm1 b, norm2 w, norm2 b, fc w, fc b, proj w, proj b] and the mixer's:
 *                attention [qkv w ((H+2Hk)P, D), out w (D, HP)]; Mamba [in_proj w (2Din, D),
 *                conv w (Din, W), conv b, x_proj w (R+2N, Din), dt_proj w (Din, R), dt_proj b,
 *                A = −exp(A_log) (Din, N), D (Din,), out_proj w (D, Din)]. Absent biases are NULL.
 *   state        two buffers per layer: attention k, v caches (B, Hk, L, P); Mamba conv (B, W-1, Din)
 *                and ssm (B, Din, N).
 *
 * Every piece reuses the training kernels (norms, activations, conv1d and the scan at T = 1, rope,
 * embedding); the products of a few rows by a weight matrix are a GEMV that reads each weight row
 * once for all streams (hr_gemm would pack the whole matrix per call), switching to hr_gemm from
 * DEC_GEMM_ROWS streams. A Mamba step touches only its fixed-size state; an attention step reads
 * the `pos + 1` cached keys and values, so its cost grows linearly with the position. */
#include <string.h>
#include "common.h"
#include "simd.h"
#include "activations.h"
#include "conv1d.h"
#include "embedding.h"
#include "linear.h"
#include "norms.h"
#include "rope.h"
#include "selective_scan.h"
#include "decode.h"

enum { DEC_HEADER = 4, DEC_LAYER_INTS = 8, DEC_GLOBAL_W = 5, DEC_LAYER_W = 17, DEC_GEMM_ROWS = 16 };
enum { DEC_ATTENTION = 0, DEC_MAMBA = 1 };

/* y = x wᵀ + b: x (M,K), w (N,K), b (N,) or NULL -> y (M,N). Each output element has one owner. */
static int dec_linear(const float *x, const float *w, const float *b, float *y, int M, int K, int N) {
    if (M >= DEC_GEMM_ROWS) return hr_linear_forward(x, w, b, y, M, K, N);
    #pragma omp parallel for schedule(static) if ((long)N * K > 16384)
    for (int n = 0; n < N; n++) {
        const float *wr = w + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            const float *xr = x + (size_t)m * K;
            hr_vec acc0 = hr_vzero(), acc1 = hr_vzero();
            int k = 0;
            for (; k + 2 * HR_VW <= K; k += 2 * HR_VW) {
                acc0 = hr_vfma(hr_vload(wr + k, HR_VW), hr_vload(xr + k, HR_VW), acc0);
                acc1 = hr_vfma(hr_vload(wr + k + HR_VW, HR_VW), hr_vload(xr + k + HR_VW, HR_VW), acc1);
            }
            for (; k < K; k += HR_VW) acc0 = hr_vfma(hr_vload(wr + k, K - k), hr_vload(xr + k, K - k), acc0);
            y[(size_t)m * N + n] = hr_vhsum(hr_vadd(acc0, acc1)) + (b ? b[n] : 0.0f);
        }
    }
    return HR_OK;
}

/* y = norm(x) over rows of D; mean/rstd scratch of M floats each */
static void dec_norm(int kind, const float *x, const float *wt, const float *bias, float *y, float *mean, float *rstd,
                     int M, int D, float eps) {
    if (kind == 1) hr_layernorm_forward(x, wt, bias, y, mean, rstd, M, D, eps);
    else hr_rmsnorm_forward(x, wt, y, rstd, M, D, eps);
}

/* dst[m, :n] = src[m, off:off+n] for M rows of width `ld` */
static void dec_cols(float *dst, const float *src, int M, int ld, int off, int n) {
    for (int m = 0; m < M; m++) memcpy(dst + (size_t)m * n, src + (size_t)m * ld + off, (size_t)n * sizeof(float));
}

/* One (b, h) of attention_decode: scores into s (n floats), softmax, o = Σ_j p_j v_j. */
static void dec_attend_one(const float *qr, const float *kb, const float *vb, float *orow, float *s, int n, int P) {
    float scale = 1.0f / sqrtf((float)P), mx = -INFINITY;
    for (int j = 0; j < n; j++) {
        const float *kr = kb + (size_t)j * P;
        hr_vec acc = hr_vzero();
        for (int p = 0; p < P; p += HR_VW) acc = hr_vfma(hr_vload(qr + p, P - p), hr_vload(kr + p, P - p), acc);
        s[j] = hr_vhsum(acc) * scale;
        mx = HR_MAX(mx, s[j]);
    }
    hr_vec sum = hr_vzero(), vmx = hr_vset1(mx);
    for (int j = 0; j < n; j += HR_VW) {
        hr_vec e = hr_vexp(hr_vsub(hr_vload(s + j, n - j), vmx));
        hr_vstore(s + j, e, n - j);
        sum = hr_vadd(sum, hr_vload(s + j, n - j)); /* reload: the dead lanes of the tail load as 0 */
    }
    hr_vec inv = hr_vset1(1.0f / hr_vhsum(sum));
    for (int p = 0; p < P; p += HR_VW) {
        hr_vec acc = hr_vzero();
        for (int j = 0; j < n; j++) acc = hr_vfma(hr_vset1(s[j]), hr_vload(vb + (size_t)j * P + p, P - p), acc);
        hr_vstore(orow + p, hr_vmul(acc, inv), P - p);
    }
}

/* o[b,h] = Σ_j softmax_j(q[b,h]·k[b,g,j]/√P) v[b,g,j], g = h / (H/Hk), keys j0 <= j < length,
 * j0 = max(0, length-1-window) (0 when window < 0)
 * q (B,H,P), k, v (B,Hk,L,P) -> o (B,H,P) */
int hr_attention_decode(const float *q, const float *k, const float *v, float *o, int B, int H, int Hk, int P, int L,
                        int length, int window) {
    int j0 = window < 0 ? 0 : HR_MAX(0, length - 1 - window), n = length - j0, group = H / Hk;
    float *scores = hr_alloc((size_t)B * H * n * sizeof(float));
    if (!scores) return HR_ENOMEM;
    #pragma omp parallel for schedule(static) if ((long)B * H * n * P > 32768)
    for (long task = 0; task < (long)B * H; task++) {
        long b = task / H, h = task % H;
        size_t kv = (((size_t)b * Hk + h / group) * L + j0) * P;
        dec_attend_one(q + (size_t)task * P, k + kv, v + kv, o + (size_t)task * P, scores + (size_t)task * n, n, P);
    }
    free(scores);
    return HR_OK;
}

/* Scratch of one step: B rows of `wide` floats per buffer (wide >= every row width used), and B floats
 * for the norms' mean and rstd. A mixer reads h (the normed x) and writes its output over it. */
enum { DEC_BUFFERS = 10 };
typedef struct {
    float *x, *h, *a, *b, *c, *d, *e, *f, *g, *m, *mean, *rstd;
} dec_scratch;

/* attention mixer on h (B,D) at position pos -> out (B,D) */
static int dec_attention(const int *lc, const float *const *lw, float *kc, float *vc, const dec_scratch *s,
                         int B, int D, int pos, float rope_base) {
    int H = lc[2], Hk = lc[3], P = lc[4], window = lc[5], rope = lc[6], L = lc[7], W3 = (H + 2 * Hk) * P;
    float *q = s->b, *k = s->c, *v = s->d, *o = s->e;
    int st = dec_linear(s->h, lw[8], NULL, s->a, B, D, W3);
    if (st != HR_OK) return st;
    dec_cols(q, s->a, B, W3, 0, H * P);
    dec_cols(k, s->a, B, W3, H * P, Hk * P);
    dec_cols(v, s->a, B, W3, (H + Hk) * P, Hk * P);
    if (rope) {
        st = hr_rope_forward(q, q, B, 1, H, P, pos, rope_base);
        if (st == HR_OK) st = hr_rope_forward(k, k, B, 1, Hk, P, pos, rope_base);
        if (st != HR_OK) return st;
    }
    for (int b = 0; b < B; b++)
        for (int g = 0; g < Hk; g++) {
            size_t row = (((size_t)b * Hk + g) * L + pos) * P;
            memcpy(kc + row, k + ((size_t)b * Hk + g) * P, (size_t)P * sizeof(float));
            memcpy(vc + row, v + ((size_t)b * Hk + g) * P, (size_t)P * sizeof(float));
        }
    st = hr_attention_decode(q, kc, vc, o, B, H, Hk, P, L, pos + 1, window);
    return st != HR_OK ? st : dec_linear(o, lw[9], NULL, s->h, B, H * P, D);
}

/* Mamba mixer on h (B,D) -> out (B,D), advancing conv (B,W-1,Din) and ssm (B,Din,N) */
static int dec_mamba(const int *lc, const float *const *lw, float *conv, float *ssm, const dec_scratch *s,
                     int B, int D) {
    int Din = lc[2], N = lc[3], R = lc[4], W = lc[5], E = R + 2 * N;
    float *xin = s->b, *z = s->c, *xc = s->d, *xs = s->e, *dt = s->f, *Bm = s->g, *Cm = s->m;
    int st = dec_linear(s->h, lw[8], NULL, s->a, B, D, 2 * Din);
    if (st != HR_OK) return st;
    dec_cols(xin, s->a, B, 2 * Din, 0, Din);
    dec_cols(z, s->a, B, 2 * Din, Din, Din);
    st = hr_causal_conv1d_forward(xin, lw[9], lw[10], W > 1 ? conv : NULL, xc, B, 1, Din, W);
    if (st != HR_OK) return st;
    for (int b = 0; b < B && W > 1; b++) { /* conv keeps the last W-1 inputs: shift by one, append xin */
        float *cb = conv + (size_t)b * (W - 1) * Din;
        memmove(cb, cb + Din, (size_t)(W - 2) * Din * sizeof(float));
        memcpy(cb + (size_t)(W - 2) * Din, xin + (size_t)b * Din, (size_t)Din * sizeof(float));
    }
    hr_silu_forward(xc, xs, (long)B * Din);
    st = dec_linear(xs, lw[11], NULL, s->a, B, Din, E); /* a = [dt | B | C] */
    if (st != HR_OK) return st;
    dec_cols(dt, s->a, B, E, 0, R);
    dec_cols(Bm, s->a, B, E, R, N);
    dec_cols(Cm, s->a, B, E, R + N, N);
    st = dec_linear(dt, lw[12], lw[13], xc, B, R, Din);
    if (st != HR_OK) return st;
    hr_softplus_forward(xc, xc, (long)B * Din); /* xc = Δ */
    st = hr_selective_scan_forward(xs, xc, lw[14], Bm, Cm, lw[15], ssm, xin, ssm, B, 1, Din, N); /* xin = y */
    if (st != HR_OK) return st;
    hr_silu_gate_forward(xin, z, xs, (long)B * Din);
    return dec_linear(xs, lw[16], NULL, s->h, B, Din, D);
}

/* largest row width any buffer of the step needs */
static int dec_wide(const int *cfg) {
    int V = cfg[0], D = cfg[1], wide = HR_MAX(V, D);
    for (int l = 0; l < cfg[2]; l++) {
        const int *lc = cfg + DEC_HEADER + l * DEC_LAYER_INTS;
        wide = HR_MAX(wide, lc[1]);
        if (lc[0] == DEC_ATTENTION) wide = HR_MAX(wide, (lc[2] + 2 * lc[3]) * lc[4]);
        else wide = HR_MAX(wide, HR_MAX(2 * lc[2], lc[4] + 2 * lc[3]));
    }
    return wide;
}

static void dec_add(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* ids (B,) -> logits (B,V): x = embed[ids]; per block x += mixer(norm1 x), x += MLP(norm2 x);
 * logits = head(norm x). The states advance from position pos to pos + 1. */
int hr_decode_step(const int *cfg, const float *fcfg, const float *const *w, float *const *state, const int64_t *ids,
                   float *logits, int B, int pos) {
    int D = cfg[1], nl = cfg[2], norm = cfg[3];
    float eps = fcfg[0], rope_base = fcfg[1];
    size_t row = (size_t)B * dec_wide(cfg), n = (size_t)B * D;
    float *arena = hr_alloc((DEC_BUFFERS * row + 2 * (size_t)B) * sizeof(float));
    if (!arena) return HR_ENOMEM;
    float *buf[DEC_BUFFERS];
    for (int i = 0; i < DEC_BUFFERS; i++) buf[i] = arena + i * row;
    dec_scratch s = {buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8], buf[9],
                     arena + DEC_BUFFERS * row, arena + DEC_BUFFERS * row + B};
    int st = HR_OK;
    hr_embedding_forward(ids, w[0], s.x, B, D);
    for (int l = 0; l < nl && st == HR_OK; l++) {
        const int *lc = cfg + DEC_HEADER + l * DEC_LAYER_INTS;
        const float *const *lw = w + DEC_GLOBAL_W + (size_t)l * DEC_LAYER_W;
        dec_norm(norm, s.x, lw[0], lw[1], s.h, s.mean, s.rstd, B, D, eps);
        st = lc[0] == DEC_ATTENTION ? dec_attention(lc, lw, state[2 * l], state[2 * l + 1], &s, B, D, pos, rope_base)
                                    : dec_mamba(lc, lw, state[2 * l], state[2 * l + 1], &s, B, D);
        if (st != HR_OK) break;
        dec_add(s.x, s.h, n);
        if (lc[1] == 0) continue;
        dec_norm(norm, s.x, lw[2], lw[3], s.h, s.mean, s.rstd, B, D, eps);
        st = dec_linear(s.h, lw[4], lw[5], s.a, B, D, lc[1]);
        if (st != HR_OK) break;
        hr_gelu_forward(s.a, s.b, (long)B * lc[1]);
        st = dec_linear(s.b, lw[6], lw[7], s.h, B, lc[1], D);
        if (st == HR_OK) dec_add(s.x, s.h, n);
    }
    if (st == HR_OK) {
        dec_norm(norm, s.x, w[1], w[2], s.h, s.mean, s.rstd, B, D, eps);
        st = dec_linear(s.h, w[3], w[4], logits, B, D, cfg[0]);
    }
    free(arena);
    return st;
}
