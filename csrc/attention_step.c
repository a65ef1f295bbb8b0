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

/* Dot products of q with a block of keys: each key's products q ⊙ k are summed along P in a vector of its
 * own, then across its lanes, four keys at a time, by a transpose-and-add tree instead of one horizontal
 * sum per key: sum_quad takes four keys' vectors to a quad, AT_QUAD floats of partial sums (per 128-bit
 * lane l: the four keys' sums over lane l), and sum_quads takes the four quads of AT_KEYS = 16 keys to
 * their 16 sums. Quads add: the quad of a sum of vectors is the sum of their quads. */
enum { AT_KEYS = 16, AT_QUAD = HR_VW >= 4 ? HR_VW : 4 };
#if defined(HR_AVX512)
static inline void sum_quad(const hr_vec *a, float *quad) {
    __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a[0], a[1]), _mm512_unpackhi_ps(a[0], a[1]));
    __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a[2], a[3]), _mm512_unpackhi_ps(a[2], a[3]));
    _mm512_storeu_ps(quad, _mm512_add_ps(_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)),
                                         _mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2))));
}
static inline void sum_quads(const float *quads, float *s) {
    __m512 w[2];
    for (int i = 0; i < 2; i++) {
        __m512 u0 = _mm512_loadu_ps(quads + 32 * i), u1 = _mm512_loadu_ps(quads + 32 * i + 16);
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    _mm512_storeu_ps(s, _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                      _mm512_shuffle_f32x4(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1))));
}
#elif defined(HR_AVX2)
static inline void sum_quad(const hr_vec *a, float *quad) {
    _mm256_storeu_ps(quad, _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3])));
}
static inline void sum_quads(const float *quads, float *s) {
    for (int i = 0; i < 2; i++) {
        __m256 u0 = _mm256_loadu_ps(quads + 16 * i), u1 = _mm256_loadu_ps(quads + 16 * i + 8);
        _mm256_storeu_ps(s + 8 * i, _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31)));
    }
}
#else
static inline void sum_quad(const hr_vec *a, float *quad) { memcpy(quad, a, 4 * sizeof(float)); }
static inline void sum_quads(const float *quads, float *s) { memcpy(s, quads, AT_KEYS * sizeof(float)); }
#endif

/* A row of K or V is read in spans of up to AT_SPAN vectors, whose count NV is a constant of each copy of
 * score_span and value_span (always_inline, one switch case per NV): q and the accumulators stay in
 * registers, and every row is read whole, front to back, as the cache streams in. */
enum { AT_SPAN = 4 };
/* score_block's keys per call, whose rows (at most 16 KB for P = 128) stay in L1 while every head of the
 * group reads them */
enum { AT_SCORE_KEYS = 2 * AT_KEYS };

/* quad (+)= the quad of q[p0..]·k_j[p0..] over the NV vectors of P from p0 (q's in qv, the last one with
 * `last` live lanes), for the four keys j from row k (rows of P floats) of which the first m are live (the
 * others repeat key m - 1): add 0 sets quad, add 1 adds to it. */
static inline __attribute__((always_inline)) void score_quad(const int NV, const hr_vec *qv, const float *k, int m,
                                                             int P, int last, int add, float *quad) {
    hr_vec a[4];
    for (int j = 0; j < 4; j++) {
        const float *kr = k + (size_t)(j < m ? j : m - 1) * P;
        a[j] = hr_vzero();
        for (int c = 0; c < NV; c++) a[j] = hr_vfma(qv[c], hr_vload(kr + c * HR_VW, c + 1 < NV ? HR_VW : last), a[j]);
    }
    if (!add) {
        sum_quad(a, quad);
        return;
    }
    float more[AT_QUAD];
    sum_quad(a, more);
    for (int l = 0; l < AT_QUAD; l++) quad[l] += more[l];
}

/* quads (+)= the quads of the n keys from row k over the NV vectors of P from p0: the first span (p0 = 0)
 * sets them, the later ones add to them */
static inline __attribute__((always_inline)) void score_span(const int NV, const float *q, const float *k, float *quads,
                                                             int n, int P, int p0) {
    const int last = P - p0 - (NV - 1) * HR_VW;  /* the live lanes of the span's last vector */
    hr_vec qv[AT_SPAN];
    for (int c = 0; c < NV; c++) qv[c] = hr_vload(q + p0 + c * HR_VW, c + 1 < NV ? HR_VW : last);
    int i = 0;
    for (; i + 4 <= n; i += 4) score_quad(NV, qv, k + (size_t)i * P + p0, 4, P, last, p0 > 0, quads + i / 4 * AT_QUAD);
    if (i < n) score_quad(NV, qv, k + (size_t)i * P + p0, n - i, P, last, p0 > 0, quads + i / 4 * AT_QUAD);
}

/* s_i = q·k_i for the n <= AT_SCORE_KEYS keys of a block (rows of P floats from k) -> s (n floats) */
static void score_block(const float *q, const float *k, float *s, int n, int P) {
    float quads[AT_SCORE_KEYS / 4 * AT_QUAD], tail[AT_KEYS];
    for (int p0 = 0; p0 < P; p0 += AT_SPAN * HR_VW)
        switch (HR_MIN(AT_SPAN, (P - p0 + HR_VW - 1) / HR_VW)) {
        case 1: score_span(1, q, k, quads, n, P, p0); break;
        case 2: score_span(2, q, k, quads, n, P, p0); break;
        case 3: score_span(3, q, k, quads, n, P, p0); break;
        default: score_span(AT_SPAN, q, k, quads, n, P, p0);
        }
    int i0 = 0;
    for (; i0 + AT_KEYS <= n; i0 += AT_KEYS) sum_quads(quads + i0 / 4 * AT_QUAD, s + i0);
    if (i0 < n) {  /* a last group short of AT_KEYS keys: its missing quads are zeros, their sums unused */
        int filled = (n + 3) / 4 * AT_QUAD;
        memset(quads + filled, 0, (size_t)((i0 + AT_KEYS) / 4 * AT_QUAD - filled) * sizeof(float));
        sum_quads(quads + i0 / 4 * AT_QUAD, tail);
        memcpy(s + i0, tail, (size_t)(n - i0) * sizeof(float));
    }
}

/* o[p0..] += Σ_i w_i v_i[p0..] over the NV vectors of P from p0, for the m rows v_i (P floats) from v: two
 * keys at a time into two sets of accumulators, so that consecutive keys' FMAs do not wait on each other. */
static inline __attribute__((always_inline)) void value_span(const int NV, const float *w, const float *v, float *o,
                                                             int m, int P, int p0) {
    const int last = P - p0 - (NV - 1) * HR_VW;
    hr_vec even[AT_SPAN], odd[AT_SPAN];
    for (int c = 0; c < NV; c++) {
        even[c] = hr_vload(o + p0 + c * HR_VW, c + 1 < NV ? HR_VW : last);
        odd[c] = hr_vzero();
    }
    const float *vr = v + p0;
    int i = 0;
    for (; i + 2 <= m; i += 2, vr += 2 * (size_t)P) {
        hr_vec w0 = hr_vset1(w[i]), w1 = hr_vset1(w[i + 1]);
        for (int c = 0; c < NV; c++) {
            int n = c + 1 < NV ? HR_VW : last;
            even[c] = hr_vfma(w0, hr_vload(vr + c * HR_VW, n), even[c]);
            odd[c] = hr_vfma(w1, hr_vload(vr + P + c * HR_VW, n), odd[c]);
        }
    }
    for (int c = 0; c < NV; c++) {
        int n = c + 1 < NV ? HR_VW : last;
        if (i < m) even[c] = hr_vfma(hr_vset1(w[i]), hr_vload(vr + c * HR_VW, n), even[c]);
        hr_vstore(o + p0 + c * HR_VW, hr_vadd(even[c], odd[c]), n);
    }
}

/* o += Σ_i w_i v_i over the m rows v_i (P floats) from v, w the m weights */
static void value_block(const float *w, const float *v, float *o, int m, int P) {
    for (int p0 = 0; p0 < P; p0 += AT_SPAN * HR_VW)
        switch (HR_MIN(AT_SPAN, (P - p0 + HR_VW - 1) / HR_VW)) {
        case 1: value_span(1, w, v, o, m, P, p0); break;
        case 2: value_span(2, w, v, o, m, P, p0); break;
        case 3: value_span(3, w, v, o, m, P, p0); break;
        default: value_span(AT_SPAN, w, v, o, m, P, p0);
        }
}

/* value_block's rows per call: 16 KB of V, which stay in L1 while every head of the group and every
 * span of P reads them (the cache itself streams from L2/L3 once). */
enum { AT_VALUE_BLOCK_FLOATS = 4096 };

/* The G heads of one kv group of attention_decode (queries q (G,P) -> o (G,P)) over the n keys of a query at
 * position len - 1 in the cache kb, vb (L rows of P, S sinks); scratch: G·(n + 1) floats, the scores s and
 * each head's softmax sum. Three passes, each over all G heads, so that the group reads each key and value
 * row once: s = q·k in blocks of AT_SCORE_KEYS keys; e = exp((s - max s)/√P) for each head's row of s;
 * o = Σ_j e_j v_j / Σ_j e_j in blocks of value rows. The keys read are at most three runs of consecutive
 * rows, each walked linearly: the sinks (rows 0..s-1), then the ring from row(j0) to its end and from its
 * first row S on. */
static void attend_group(const float *q, const float *kb, const float *vb, float *o, float *scratch, int G, int len,
                         int window, int L, int S, int P) {
    int s_n, j0, n = decode_keys(len, window, S, &s_n, &j0);
    int r0 = j0 < len ? (int)hr_attention_cache_row(j0, L, S) : 0;  /* (no ring key: a cache of sinks only) */
    int first = HR_MIN(len - j0, L - r0);                            /* ring keys before the ring wraps */
    const int run_n[3] = {s_n, first, len - j0 - first};
    const size_t run_row[3] = {0, (size_t)r0, (size_t)S};
    float *s = scratch, *sum = s + (size_t)G * n;
    for (int r = 0, j = 0; r < 3; j += run_n[r++])
        for (int i = 0; i < run_n[r]; i += AT_SCORE_KEYS)
            for (int h = 0; h < G; h++)
                score_block(q + (size_t)h * P, kb + (run_row[r] + i) * P, s + (size_t)h * n + j + i,
                            HR_MIN(AT_SCORE_KEYS, run_n[r] - i), P);
    hr_vec vscale = hr_vset1(1.0f / sqrtf((float)P));
    for (int h = 0; h < G; h++) {
        float *sh = s + (size_t)h * n;
        hr_vec vmx = hr_vset1(-INFINITY), e_sum = hr_vzero();
        for (int j = 0; j < n; j += HR_VW) vmx = hr_vmax(vmx, hr_vload_or(sh + j, n - j, -INFINITY));
        vmx = hr_vset1(hr_vhmax(vmx));
        for (int j = 0; j < n; j += HR_VW) {
            hr_vstore(sh + j, hr_vexp(hr_vmul(hr_vsub(hr_vload(sh + j, n - j), vmx), vscale)), n - j);
            e_sum = hr_vadd(e_sum, hr_vload(sh + j, n - j)); /* reload: the dead lanes of the tail load as 0 */
        }
        sum[h] = hr_vhsum(e_sum);
    }
    memset(o, 0, (size_t)G * P * sizeof(float));
    int rows = HR_MAX(1, AT_VALUE_BLOCK_FLOATS / P);
    for (int r = 0, j = 0; r < 3; j += run_n[r++])
        for (int i = 0; i < run_n[r]; i += rows)
            for (int h = 0; h < G; h++)
                value_block(s + (size_t)h * n + j + i, vb + (run_row[r] + i) * P, o + (size_t)h * P,
                            HR_MIN(rows, run_n[r] - i), P);
    for (int h = 0; h < G; h++) {
        float *oh = o + (size_t)h * P;
        hr_vec inv = hr_vset1(1.0f / sum[h]);
        HR_VLOOP(p, m, P, { hr_vstore(oh + p, hr_vmul(hr_vload(oh + p, m), inv), m); });
    }
}

/* hr_attention_decode with stream b's query at its own position qpos[b · stride] (stride 0: one position for
 * all streams), so its keys are among positions 0..qpos (length qpos + 1). A task is one kv group of one
 * stream: its H/Hk query heads share the group's reads of the cache. */
static int attention_decode_streams(const float *q, const float *k, const float *v, float *o, int B, int H, int Hk,
                                    int P, int L, const int *qpos, int stride, int window, int S) {
    int group = H / Hk, most = 0, s_n, j0;
    for (int b = 0; b < B; b++) most = HR_MAX(most, decode_keys(qpos[b * stride] + 1, window, S, &s_n, &j0));
    size_t per_task = (size_t)group * (most + 1);  /* attend_group's scratch */
    float *scratch = hr_alloc((size_t)B * Hk * per_task * sizeof(float));
    if (!scratch) return HR_ENOMEM;
    HR_PARALLEL_FOR((long)B * H * most * P > 32768,
        for (long task = 0; task < (long)B * Hk; task++) {
            size_t kv = (size_t)task * L * P, qo = (size_t)task * group * P;
            attend_group(q + qo, k + kv, v + kv, o + qo, scratch + task * per_task, group, qpos[task / Hk * stride] + 1,
                         window, L, S, P);
        });
    free(scratch);
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
 * (H·R floats) holds those dims while they rotate when R < P (a partial rotary, RecurrentGemma's). The
 * angles' table (csrc/rope.c: a pow and a cos/sin per frequency, in double) is built once per call. */
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
    if (c[AT_ROPE]) {  /* a stream's q and k heads side by side in its qkv row: one table of angles for both */
        float base = layer->floats[AT_ROPE_BASE];
        for (int b = 0; b < B && st == HR_OK; b++)  /* q and k's space is free until the split: rope_heads' tmp */
            st = rope_heads(qkv + (size_t)b * W3, q, H + Hk, P, c[AT_ROPE], pos[b], base);
        if (st != HR_OK) return st;
    }
    hr_dec_cols(q, qkv, B, W3, 0, H * P);
    hr_dec_cols(k, qkv, B, W3, H * P, Hk * P);
    hr_dec_cols(v, qkv, B, W3, (H + Hk) * P, Hk * P);
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
