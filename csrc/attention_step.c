/* Decode step of the attention mixer: one new token per stream against a KV cache.
 *
 * Record (backends/c/attention_step.py):
 *   ints  [H, Hk, P, window (-1: none), rope dims R (0: no RoPE; else RoPE on the first R <= P of each
 *          head), L = cache rows]
 *   floats [rope base]
 *   w     [qkv w ((H+2Hk)P, D), out w (D, HP), out b (D) or NULL]
 *   state [k cache (B,Hk,L,P), v cache (B,Hk,L,P)]
 * Position p lives in row p % L. The step writes k, v at row pos % L and attends over positions
 * 0..pos: without a window L = max_len and its cost grows linearly with the position; with a window
 * the cache is a ring of L = min(max_len, window + 1) rows, and memory and cost are constant.
 *
 * hr_attention_decode also reads caches with sinks S (attention sinks, Hymba's meta tokens: positions
 * 0..S-1, visible to every query whatever the window): rows 0..S-1 hold them for good and the other
 * L - S rows are the ring of the later positions (hr_attention_cache_row). */
#include <string.h>
#include "common.h"
#include "simd.h"
#include "rope.h"
#include "decode_mixer.h"
#include "attention_step.h"

enum { AT_H, AT_HK, AT_P, AT_WINDOW, AT_ROPE, AT_L };  /* ints */
enum { AT_ROPE_BASE };                                  /* floats */
enum { AT_QKV_W, AT_OUT_W, AT_OUT_B };                  /* weights */
enum { AT_K_CACHE, AT_V_CACHE };                        /* state */

/* Row of position p in a cache of L rows with S sinks: p for a sink (p < S), else S + (p - S) % (L - S), the
 * ring of the other rows (p % L when S = 0). */
long hr_attention_cache_row(long p, int L, int S) { return p < S ? p : S + (p - S) % (L - S); }

/* The keys a query at position len - 1 reads: the sinks 0..s-1 (with a window: the window hides them) and
 * positions j0..len-1; -> their count s + len - j0. */
static int decode_keys(int len, int window, int S, int *s, int *j0) {
    *s = window < 0 ? 0 : HR_MIN(S, len);
    *j0 = window < 0 ? 0 : HR_MAX(*s, len - 1 - window);
    return *s + len - *j0;
}

/* One (b, h) of attention_decode over the keys of a query at position len - 1 in the cache kb, vb (L rows of
 * P, S sinks): scores into s, softmax, o = Σ_j p_j v_j. The keys read are at most three runs of consecutive
 * rows, each walked linearly: the sinks (rows 0..s-1), then the ring from row(j0) to its end and from its
 * first row S on. */
static void attend_one(const float *qr, const float *kb, const float *vb, float *orow, float *s, int len, int window,
                       int L, int S, int P) {
    float scale = 1.0f / sqrtf((float)P), mx = -INFINITY;
    int s_n, j0, n = decode_keys(len, window, S, &s_n, &j0);
    int r0 = j0 < len ? (int)hr_attention_cache_row(j0, L, S) : 0;  /* (no ring key: a cache of sinks only) */
    int first = HR_MIN(len - j0, L - r0);                            /* ring keys before the ring wraps */
    const int run_n[3] = {s_n, first, len - j0 - first};
    const float *run_k[3] = {kb, kb + (size_t)r0 * P, kb + (size_t)S * P};
    const float *run_v[3] = {vb, vb + (size_t)r0 * P, vb + (size_t)S * P};
    for (int r = 0, j = 0; r < 3; r++)
        for (int i = 0; i < run_n[r]; i++, j++) {
            const float *kr = run_k[r] + (size_t)i * P;
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
        for (int r = 0, j = 0; r < 3; r++)
            for (int i = 0; i < run_n[r]; i++, j++)
                acc = hr_vfma(hr_vset1(s[j]), hr_vload(run_v[r] + (size_t)i * P + p, P - p), acc);
        hr_vstore(orow + p, hr_vmul(acc, inv), P - p);
    }
}

/* hr_attention_decode with stream b's query at its own position qpos[b · stride] (stride 0: one position for
 * all streams), so its keys are among positions 0..qpos (length qpos + 1) */
static int attention_decode_streams(const float *q, const float *k, const float *v, float *o, int B, int H, int Hk,
                                    int P, int L, const int *qpos, int stride, int window, int S) {
    int group = H / Hk, most = 0, s_n, j0;
    for (int b = 0; b < B; b++) most = HR_MAX(most, decode_keys(qpos[b * stride] + 1, window, S, &s_n, &j0));
    float *scores = hr_alloc((size_t)B * H * most * sizeof(float));
    if (!scores) return HR_ENOMEM;
    HR_PARALLEL_FOR((long)B * H * most * P > 32768,
        for (long task = 0; task < (long)B * H; task++) {
            long b = task / H, h = task % H;
            size_t kv = ((size_t)b * Hk + h / group) * L * P;
            attend_one(q + (size_t)task * P, k + kv, v + kv, o + (size_t)task * P, scores + (size_t)task * most,
                       qpos[b * stride] + 1, window, L, S, P);
        });
    free(scores);
    return HR_OK;
}

/* o[b,h] = Σ_j softmax_j(q[b,h]·k[b,g,j]/√P) v[b,g,j], g = h / (H/Hk), over the keys j < length with
 * j >= length-1-window or j < sinks (every j when window < 0); key j in row hr_attention_cache_row(j, L,
 * sinks) (the ring holds the window's keys: checked by the wrapper)
 * q (B,H,P), k, v (B,Hk,L,P) -> o (B,H,P) */
int hr_attention_decode(const float *q, const float *k, const float *v, float *o, int B, int H, int Hk, int P, int L,
                        int length, int window, int sinks) {
    int qpos = length - 1;
    return attention_decode_streams(q, k, v, o, B, H, Hk, P, L, &qpos, 0, window, sinks);
}

/* scratch: qkv (B, (H+2Hk)P), then q (B,HP), k, v (B,HkP), o (B,HP) */
size_t hr_attention_step_scratch(const dec_layer *layer, int B, int D) {
    const int *c = layer->ints;
    (void)D;
    return (size_t)B * (2 * (c[AT_H] + 2 * c[AT_HK]) + c[AT_H]) * c[AT_P];
}

/* RoPE at position pos on the first R of the P dims of each of the H heads of x (H·P), in place; tmp
 * (H·R floats) holds those dims while they rotate when R < P (a partial rotary, RecurrentGemma's). */
static int rope_heads(float *x, float *tmp, int H, int P, int R, long pos, double base) {
    if (R == P) return hr_rope_forward(x, x, 1, 1, H, P, pos, base);
    for (int h = 0; h < H; h++) memcpy(tmp + (size_t)h * R, x + (size_t)h * P, (size_t)R * sizeof(float));
    int st = hr_rope_forward(tmp, tmp, 1, 1, H, R, pos, base);
    for (int h = 0; h < H; h++) memcpy(x + (size_t)h * P, tmp + (size_t)h * R, (size_t)R * sizeof(float));
    return st;
}

/* x (B,Din), stream b at position pos[b] -> o (B,H·P), the heads' outputs before the output projection:
 * q, k, v = split(x W_qkvᵀ), RoPE, k and v written to the cache at row pos[b] % L, o = attention_decode(q,
 * cache) over each stream's pos[b] + 1 keys.
 * scratch: hr_attention_step_scratch's, less o. Shared with Zamba's step (its attention reads 2·D). */
int hr_attention_attend_step(const dec_layer *layer, const float *x, float *o, float *scratch, int B, int Din,
                             const int *pos) {
    const int *c = layer->ints;
    int H = c[AT_H], Hk = c[AT_HK], P = c[AT_P], L = c[AT_L], W3 = (H + 2 * Hk) * P;
    float *kc = layer->state[AT_K_CACHE], *vc = layer->state[AT_V_CACHE];
    float *qkv = scratch, *q = qkv + (size_t)B * W3, *k = q + (size_t)B * H * P, *v = k + (size_t)B * Hk * P;
    int st = hr_dec_linear(x, hr_dec_w(layer, AT_QKV_W), NULL, qkv, B, Din, W3);
    if (st != HR_OK) return st;
    hr_dec_cols(q, qkv, B, W3, 0, H * P);
    hr_dec_cols(k, qkv, B, W3, H * P, Hk * P);
    hr_dec_cols(v, qkv, B, W3, (H + Hk) * P, Hk * P);
    if (c[AT_ROPE]) {  /* qkv is free from here: rope_heads' tmp */
        float base = layer->floats[AT_ROPE_BASE];
        for (int b = 0; b < B && st == HR_OK; b++) {
            st = rope_heads(q + (size_t)b * H * P, qkv, H, P, c[AT_ROPE], pos[b], base);
            if (st == HR_OK) st = rope_heads(k + (size_t)b * Hk * P, qkv, Hk, P, c[AT_ROPE], pos[b], base);
        }
        if (st != HR_OK) return st;
    }
    for (int b = 0; b < B; b++)
        for (int g = 0; g < Hk; g++) {
            size_t row = (((size_t)b * Hk + g) * L + pos[b] % L) * P;
            memcpy(kc + row, k + ((size_t)b * Hk + g) * P, (size_t)P * sizeof(float));
            memcpy(vc + row, v + ((size_t)b * Hk + g) * P, (size_t)P * sizeof(float));
        }
    return attention_decode_streams(q, kc, vc, o, B, H, Hk, P, L, pos, 1, c[AT_WINDOW], 0);
}

/* h (B,D), stream b at position pos[b] -> attention output (B,D) over h: the heads' outputs o, then o W_outᵀ + b_out */
int hr_attention_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos) {
    const int *c = layer->ints;
    float *o = scratch + (size_t)B * (2 * (c[AT_H] + 2 * c[AT_HK])) * c[AT_P];
    int st = hr_attention_attend_step(layer, h, o, scratch, B, D, pos);
    return st != HR_OK ? st : hr_dec_linear(o, hr_dec_w(layer, AT_OUT_W), layer->w[AT_OUT_B], h, B, c[AT_H] * c[AT_P], D);
}
