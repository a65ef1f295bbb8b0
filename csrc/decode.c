/* Streaming decoder: one call advances a whole language model (embedding, every block, final norm,
 * head) by one token for B independent streams, stream b at its own position pos[b].
 *
 * The model is described once by flat arrays built in backends/c/decode.py (no structs cross the
 * cffi boundary):
 *   cfg   ints: DEC_HEADER = [V, D, n_layers, norm (0 RMSNorm, 1 LayerNorm), embed (the index of the state
 *         buffer (B,D) that receives each step's token embeddings, the side input "embed" of Zamba's
 *         shared block; -1: none), wtypes (where in cfg the element type and layout of each weight of w
 *         start, one int per pointer: decode_mixer.h's DEC_F32, DEC_BF16, DEC_PANELS), streams (where in cfg
 *         [the number of states, then each state's floats per stream] starts, when every state holds the
 *         streams along its first axis; -1: not so)], then per layer
 *         DEC_LAYER_INTS = [kind, mlp_hidden (0: no MLP), mlp kind (MLP_GELU, MLP_GATED_GELU, MLP_SWIGLU,
 *         MLP_GATED_GELU_ERF),
 *         where its mixer's ints, floats, weights and states start in cfg, fcfg, w and state, where the
 *         record of its mixture-of-experts MLP starts in cfg (-1: a dense MLP; the mlp kind is then
 *         its experts' kind, csrc/moe_step.c)]
 *   fcfg  floats: [norm eps, logit soft cap c (0: none; else logits c·tanh(z/c), hybridref/layers/softcap.py)],
 *         then the mixers' floats
 *   w     weight pointers: DEC_GLOBAL_W = [embed (V,D), norm w, norm b, head w (V,D), head b], then per
 *         layer DEC_BLOCK_W = [norm1 w, norm1 b, norm2 w, norm2 b, fc w, fc b, proj w, proj b] followed
 *         by its mixer's weights. Absent biases are NULL; a NULL norm1 w: the block has no norm1 (its mixer
 *         reads the residual stream x itself, Zamba's hybrid layer). A gated MLP's (GeGLU, SwiGLU) fc is
 *         (2·hidden, D), rows [W_gate; W_up] (hybridref/layers/mlp.py).
 *   state the mixers' state buffers.
 * A mixer's part of the arrays (its record) has whatever length its kind needs: the kind's step
 * (csrc/<name>_step.c, found through the table DEC_KINDS) reads it back. Two layers may be given
 * the same state buffer: that is how a side input (a value computed by one layer and read by a later
 * one) crosses layers in a step.
 *
 * Every piece reuses the training kernels (norms, activations, embedding, and in the mixers conv1d,
 * the scan at T = 1, rope). The weight matrices are stored in the decoder's panel layout
 * (decode_mixer.h), built once with the decoder: the product of the streams' rows by a matrix streams
 * each panel front to back, DEC_GEMV_ROWS rows at a time, without packing anything per step. */
#include <string.h>
#include <time.h>
#include "common.h"
#include "simd.h"
#include "activations.h"
#include "conv1d.h"
#include "embedding.h"
#include "norms.h"
#include "decode_mixer.h"
#include "sample.h"
#include "decode.h"
#include "moe_step.h"

enum { DEC_HEADER = 7, DEC_LAYER_INTS = 8, DEC_GLOBAL_W = 5 };
/* rows of x per pass over a panel: 3 · 8 accumulators fill AVX-512's 32 registers with the loaded weights
 * and broadcasts; AVX2's 16 hold one row's 8 */
#define DEC_GEMV_ROWS (HR_VW == 16 ? 3 : 1)
enum { H_VOCAB, H_D, H_LAYERS, H_NORM, H_EMBED, H_WTYPES, H_STREAMS };            /* cfg header */
enum { L_KIND, L_MLP, L_MLP_KIND, L_INTS, L_FLOATS, L_W, L_STATE, L_MOE };        /* per-layer ints */
enum { G_EMBED, G_NORM_W, G_NORM_B, G_HEAD_W, G_HEAD_B };                         /* global weights */
enum { B_NORM1_W, B_NORM1_B, B_NORM2_W, B_NORM2_B, B_FC_W, B_FC_B, B_PROJ_W, B_PROJ_B, DEC_BLOCK_W };
enum { NORM_RMS, NORM_LAYER };
enum { MLP_GELU, MLP_GATED_GELU, MLP_SWIGLU, MLP_GATED_GELU_ERF };  /* the MLP kinds of hybridref/layers/mlp.py */

typedef struct {
    const char *name;
    int (*step)(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos);
    size_t (*scratch)(const dec_layer *layer, int B, int D);
} dec_kind;

#define HR_DECODE_ENTRY(name) {#name, hr_##name##_step, hr_##name##_step_scratch},
static const dec_kind DEC_KINDS[] = {HR_DECODE_KINDS(HR_DECODE_ENTRY)};
#undef HR_DECODE_ENTRY
enum { DEC_N_KINDS = sizeof(DEC_KINDS) / sizeof(DEC_KINDS[0]) };

/* Optional timing of the parts of hr_decode_step, for benchmarks/profile_decode.py: while a buffer is
 * set, each part's wall time (seconds) is added to its slot, DEC_PROF_* then one slot per mixer kind
 * (the index hr_decode_kind gives). Off (NULL, the default) a part costs one untaken branch. One
 * buffer for the process: a profiling run decodes one model at a time. */
enum { DEC_PROF_ALLOC, DEC_PROF_EMBED, DEC_PROF_NORM, DEC_PROF_ADD, DEC_PROF_MLP, DEC_PROF_HEAD, DEC_PROF_SAMPLE,
       DEC_PROF_KINDS };
static double *dec_profile;

int hr_decode_profile(double *seconds) {
    dec_profile = seconds;
    return DEC_PROF_KINDS + DEC_N_KINDS;
}

static double dec_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* charge the time since *t to `slot` and restart *t (profiling only) */
static inline void dec_lap(int slot, double *t) {
    if (!dec_profile) return;
    double now = dec_clock();
    dec_profile[slot] += now - *t;
    *t = now;
}

int hr_decode_kind(const char *name) {
    for (int i = 0; i < DEC_N_KINDS; i++)
        if (strcmp(DEC_KINDS[i].name, name) == 0) return i;
    return -1;
}

/* y[r, 0:live] = x[r] · panel + b for R rows of x (row stride K) and one panel (K, NV·HR_VW) of a matrix in
 * panel layout (decode_mixer.h), y's rows N apart: per k, the panel row is loaded once (a bfloat16 one
 * widened with two bit operations per pair of vectors) and FMAed into R·NV accumulators, one per output
 * vector. NV = 8 gives 8 independent chains per row, enough to keep the FMA pipes busy at R = 1; R ≤ 3 rows
 * share each load (kept in a register: hr_vkeep), so a batch reads a panel M/R times. Each output's sum runs over k in order at every R,
 * so a stream's products do not depend on the batch it is in, and a bfloat16 matrix gives the float32
 * sums of its rounded weights, bit for bit. */
static inline __attribute__((always_inline)) void dec_gemv_panel(const float *x, const void *panel, int bf16,
                                                                const float *b, float *y, int K, int N, int live,
                                                                int R, int NV) {
    hr_vec acc[3][DEC_PANEL / HR_VW];  /* R ≤ 3 */
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[r][v] = hr_vzero();
    }
    for (int k = 0; k < K; k++) {
        hr_vec xk[3];
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) xk[r] = hr_vset1(x[(size_t)r * K + k]);
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v += 2) {
            hr_vec w0, w1;
            if (bf16) {
                hr_vload_bf16_pair((const uint16_t *)panel + ((size_t)k * NV + v) * HR_VW, &w0, &w1);
            } else {
                const float *row = (const float *)panel + ((size_t)k * NV + v) * HR_VW;
                w0 = hr_vload(row, HR_VW);
                w1 = hr_vload(row + HR_VW, HR_VW);
                hr_vkeep(&w0);  /* one load for the R rows */
                hr_vkeep(&w1);
            }
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                acc[r][v] = hr_vfma(w0, xk[r], acc[r][v]);
                acc[r][v + 1] = hr_vfma(w1, xk[r], acc[r][v + 1]);
            }
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        #pragma GCC unroll 8
        for (int v = 0; v < NV; v++) {
            int n = HR_MIN(HR_VW, live - v * HR_VW);
            if (n <= 0) break;
            hr_vstore(y + (size_t)r * N + v * HR_VW, b ? hr_vadd(acc[r][v], hr_vload(b + v * HR_VW, n)) : acc[r][v], n);
        }
    }
}

/* One panel's products for R rows, the panel's width (a whole panel, or a narrower last one: an even
 * number of vectors) made a constant, so that the accumulators stay in registers */
static inline __attribute__((always_inline)) void dec_gemv_rows(const float *x, const void *panel, int bf16,
                                                               const float *b, float *y, int K, int N, int live,
                                                               int R) {
    int nv = (int)(hr_dec_panel_elems(live, 1) / HR_VW);
    if (nv == 8) dec_gemv_panel(x, panel, bf16, b, y, K, N, live, R, 8);
    else if (nv == 6) dec_gemv_panel(x, panel, bf16, b, y, K, N, live, R, 6);
    else if (nv == 4) dec_gemv_panel(x, panel, bf16, b, y, K, N, live, R, 4);
    else dec_gemv_panel(x, panel, bf16, b, y, K, N, live, R, 2);
}

/* y = x wᵀ + b of hr_dec_linear over the panels of w: the rows of x in groups of DEC_GEMV_ROWS, each
 * (panel, group) a task, panel-major so that a thread's tasks share their panels. Always inlined with a
 * constant element type, so each type gets its own loops without a branch in them. */
static inline __attribute__((always_inline)) void dec_gemv(const float *x, const void *w, int bf16, const float *b,
                                                          float *y, int M, int K, int N) {
    int panels = (N + DEC_PANEL - 1) / DEC_PANEL, groups = (M + DEC_GEMV_ROWS - 1) / DEC_GEMV_ROWS;
    size_t esize = bf16 ? sizeof(uint16_t) : sizeof(float);
    HR_PARALLEL_FOR((long)M * N * K >= HR_PARALLEL_MIN * 4,
        for (int task = 0; task < panels * groups; task++) {
            int p = task / groups, m = task % groups * DEC_GEMV_ROWS, n0 = p * DEC_PANEL;
            int live = HR_MIN(DEC_PANEL, N - n0), rows = HR_MIN(DEC_GEMV_ROWS, M - m);
            const char *panel = (const char *)w + (size_t)n0 * K * esize;
            const float *xm = x + (size_t)m * K, *bp = b ? b + n0 : NULL;
            float *ym = y + (size_t)m * N + n0;
            if (rows == DEC_GEMV_ROWS) dec_gemv_rows(xm, panel, bf16, bp, ym, K, N, live, DEC_GEMV_ROWS);
            else if (DEC_GEMV_ROWS == 3 && rows == 2) dec_gemv_rows(xm, panel, bf16, bp, ym, K, N, live, 2);
            else dec_gemv_rows(xm, panel, bf16, bp, ym, K, N, live, 1);
        });
}

int hr_dec_panel_width(int *unit) {
    *unit = DEC_PANEL_UNIT;
    return DEC_PANEL;
}

int hr_dec_linear(const float *x, dec_matrix w, const float *b, float *y, int M, int K, int N) {
    if (!(w.dtype & DEC_PANELS)) return HR_ELAYOUT;
    if (w.dtype & DEC_BF16) dec_gemv(x, w.data, 1, b, y, M, K, N);
    else dec_gemv(x, w.data, 0, b, y, M, K, N);
    return HR_OK;
}

/* x (B,D) = table[ids]: a float32 table's rows copied (hr_embedding_forward), a bfloat16 table's widened */
static void dec_embed(const int64_t *ids, dec_matrix table, float *x, int B, int D) {
    if (!(table.dtype & DEC_BF16)) {
        hr_embedding_forward(ids, table.data, x, B, D);
        return;
    }
    for (int b = 0; b < B; b++) {
        const uint16_t *row = (const uint16_t *)table.data + (size_t)ids[b] * D;
        HR_VLOOP(k, n, D, { hr_vstore(x + (size_t)b * D + k, hr_vload_bf16(row + k, n), n); });
    }
}

int hr_dec_conv_step(const float *x, const float *w, const float *bias, float *conv, float *y, int B, int C, int W) {
    int st = hr_causal_conv1d_forward(x, w, bias, W > 1 ? conv : NULL, y, B, 1, C, W);
    for (int b = 0; b < B && W > 1 && st == HR_OK; b++) {
        float *cb = conv + (size_t)b * (W - 1) * C;
        memmove(cb, cb + C, (size_t)(W - 2) * C * sizeof(float));
        memcpy(cb + (size_t)(W - 2) * C, x + (size_t)b * C, (size_t)C * sizeof(float));
    }
    return st;
}

void hr_dec_cols(float *dst, const float *src, int M, int ld, int off, int n) {
    for (int m = 0; m < M; m++) memcpy(dst + (size_t)m * n, src + (size_t)m * ld + off, (size_t)n * sizeof(float));
}

/* y = norm(x) over rows of D; mean/rstd scratch of M floats each */
static void dec_norm(int kind, const float *x, const float *wt, const float *bias, float *y, float *mean, float *rstd,
                     int M, int D, float eps) {
    if (kind == NORM_LAYER) hr_layernorm_forward(x, wt, bias, y, mean, rstd, M, D, eps);
    else hr_rmsnorm_forward(x, wt, y, rstd, M, D, eps);
}

static void dec_add(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

static int dec_gated(int mlp_kind) {
    return mlp_kind == MLP_GATED_GELU || mlp_kind == MLP_SWIGLU || mlp_kind == MLP_GATED_GELU_ERF;
}

/* The width of an MLP's fc output: hidden, or 2·hidden (gate and up) for a gated MLP. */
static size_t dec_fc_width(int mlp_kind, int hidden) {
    return (dec_gated(mlp_kind) ? 2 : 1) * (size_t)hidden;
}

/* h (B,D) -> MLP(h) (B,D) over h; fc, act: scratch of B·dec_fc_width floats each.
 *   MLP_GELU:       proj(GELU(fc h))
 *   MLP_GATED_GELU: proj(GELU(gate) ⊙ up), [gate | up] = fc h
 *   MLP_SWIGLU:     proj(SiLU(gate) ⊙ up), [gate | up] = fc h
 *   MLP_GATED_GELU_ERF: proj(x Φ(x) at gate ⊙ up), the exact GELU (Zamba's MLP) */
int hr_dec_mlp(int mlp_kind, dec_matrix fc_w, const float *fc_b, dec_matrix proj_w, const float *proj_b, float *h,
               float *fc, float *act, int B, int D, int hidden) {
    int width = (int)dec_fc_width(mlp_kind, hidden);
    int st = hr_dec_linear(h, fc_w, fc_b, fc, B, D, width);
    if (st != HR_OK) return st;
    if (dec_gated(mlp_kind)) {
        hr_dec_cols(act, fc, B, width, 0, hidden);
        if (mlp_kind == MLP_SWIGLU) hr_silu_forward(act, act, (long)B * hidden);
        else if (mlp_kind == MLP_GATED_GELU_ERF) hr_gelu_erf_forward(act, act, (long)B * hidden);
        else hr_gelu_forward(act, act, (long)B * hidden);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < hidden; j++) act[(size_t)b * hidden + j] *= fc[(size_t)b * width + hidden + j];
    } else {
        hr_gelu_forward(fc, act, (long)B * hidden);
    }
    return hr_dec_linear(act, proj_w, proj_b, h, B, hidden, D);
}

static dec_layer dec_layer_at(const int *cfg, const float *fcfg, const float *const *w, float *const *state, int l) {
    const int *lc = cfg + DEC_HEADER + l * DEC_LAYER_INTS;
    int at = lc[L_W] + DEC_BLOCK_W;
    dec_layer layer = {cfg + lc[L_INTS], fcfg + lc[L_FLOATS], w + at, cfg + cfg[H_WTYPES] + at, state + lc[L_STATE]};
    return layer;
}

/* floats of scratch a step of B streams needs: the residual stream x (B,D), the mixer/MLP io h
 * (B, max(D, V)), the MLP's fc output and activations (B, widest fc output, each), the norms' mean and
 * rstd (B), and the largest mixer scratch */
static size_t dec_scratch_floats(const int *cfg, const float *fcfg, const float *const *w, float *const *state, int B) {
    int V = cfg[H_VOCAB], D = cfg[H_D], nl = cfg[H_LAYERS];
    size_t mlp = 0, mixer = 0;
    for (int l = 0; l < nl; l++) {
        const int *lc = cfg + DEC_HEADER + l * DEC_LAYER_INTS;
        dec_layer layer = dec_layer_at(cfg, fcfg, w, state, l);
        mlp = HR_MAX(mlp, dec_fc_width(lc[L_MLP_KIND], lc[L_MLP]));
        mixer = HR_MAX(mixer, DEC_KINDS[lc[L_KIND]].scratch(&layer, B, D));
    }
    return (size_t)B * D + (size_t)B * HR_MAX(D, V) + 2 * (size_t)B * mlp + 2 * (size_t)B + mixer;
}

/* ids (B,) -> logits (B,V): x = embed[ids]; per block x += mixer(norm1 x) (or mixer(x)), x += MLP(norm2 x);
 * logits = head(norm x), soft-capped when fcfg[1] > 0. Stream b's states advance from position pos[b] to
 * pos[b] + 1. x: dec_scratch_floats; *t: the profile's clock. */
static int dec_step(const int *cfg, const float *fcfg, const float *const *w, float *const *state, const int64_t *ids,
                    float *logits, int B, const int *pos, float *x, double *t) {
    int V = cfg[H_VOCAB], D = cfg[H_D], nl = cfg[H_LAYERS], norm = cfg[H_NORM];
    float eps = fcfg[0];
    size_t mlp = 0;
    for (int l = 0; l < nl; l++) {
        const int *lc = cfg + DEC_HEADER + l * DEC_LAYER_INTS;
        mlp = HR_MAX(mlp, dec_fc_width(lc[L_MLP_KIND], lc[L_MLP]));
    }
    size_t n = (size_t)B * D, wide = (size_t)B * HR_MAX(D, V);
    float *h = x + n, *fc = h + wide, *act = fc + (size_t)B * mlp, *mean = act + (size_t)B * mlp, *rstd = mean + B,
          *scratch = rstd + B;
    const int *wtype = cfg + cfg[H_WTYPES];
    int st = HR_OK;
    dec_embed(ids, hr_dec_slot(w, wtype, G_EMBED), x, B, D);
    if (cfg[H_EMBED] >= 0) memcpy(state[cfg[H_EMBED]], x, n * sizeof(float));
    dec_lap(DEC_PROF_EMBED, t);
    for (int l = 0; l < nl && st == HR_OK; l++) {
        const int *lc = cfg + DEC_HEADER + l * DEC_LAYER_INTS;
        const float *const *bw = w + lc[L_W];
        dec_layer layer = dec_layer_at(cfg, fcfg, w, state, l);
        if (bw[B_NORM1_W]) dec_norm(norm, x, bw[B_NORM1_W], bw[B_NORM1_B], h, mean, rstd, B, D, eps);
        else memcpy(h, x, n * sizeof(float)); /* no norm1: the mixer reads the residual stream (Zamba's hybrid layer) */
        dec_lap(DEC_PROF_NORM, t);
        st = DEC_KINDS[lc[L_KIND]].step(&layer, h, scratch, B, D, pos);
        if (st != HR_OK) break;
        dec_lap(DEC_PROF_KINDS + lc[L_KIND], t);
        dec_add(x, h, n);
        dec_lap(DEC_PROF_ADD, t);
        int hidden = lc[L_MLP];
        if (hidden == 0) continue;
        dec_norm(norm, x, bw[B_NORM2_W], bw[B_NORM2_B], h, mean, rstd, B, D, eps);
        dec_lap(DEC_PROF_NORM, t);
        const int *bt = wtype + lc[L_W];
        st = lc[L_MOE] >= 0 ? hr_moe_step(cfg + lc[L_MOE], w, wtype, h, B, D, hidden)
                            : hr_dec_mlp(lc[L_MLP_KIND], hr_dec_slot(bw, bt, B_FC_W), bw[B_FC_B],
                                         hr_dec_slot(bw, bt, B_PROJ_W), bw[B_PROJ_B], h, fc, act, B, D, hidden);
        dec_lap(DEC_PROF_MLP, t);
        if (st == HR_OK) dec_add(x, h, n);
        dec_lap(DEC_PROF_ADD, t);
    }
    if (st == HR_OK) {
        dec_norm(norm, x, w[G_NORM_W], w[G_NORM_B], h, mean, rstd, B, D, eps);
        dec_lap(DEC_PROF_NORM, t);
        st = hr_dec_linear(h, hr_dec_slot(w, wtype, G_HEAD_W), w[G_HEAD_B], logits, B, D, V);
        float cap = fcfg[1];
        if (cap > 0.0f)
            for (size_t i = 0; i < (size_t)B * V; i++) logits[i] = cap * tanhf(logits[i] / cap);
        dec_lap(DEC_PROF_HEAD, t);
    }
    return st;
}

int hr_decode_step(const int *cfg, const float *fcfg, const float *const *w, float *const *state, const int64_t *ids,
                   float *logits, int B, const int *pos) {
    double t = dec_profile ? dec_clock() : 0.0;
    float *x = hr_alloc(dec_scratch_floats(cfg, fcfg, w, state, B) * sizeof(float));
    if (!x) return HR_ENOMEM;
    dec_lap(DEC_PROF_ALLOC, &t);
    int st = dec_step(cfg, fcfg, w, state, ids, logits, B, pos, x, &t);
    free(x);
    dec_lap(DEC_PROF_ALLOC, &t);
    return st;
}

/* The threads the token loop runs the streams on: with more than one allowed, B ≥ 2 streams and states
 * that hold the streams along their first axis (cfg's streams), each thread steps a slice of the streams
 * through the whole model, so that a step needs no fork or join per kernel; the profile's clock is one
 * per process, so a profiled loop runs on one thread. */
static int dec_stream_threads(const int *cfg, int B) {
    if (cfg[H_STREAMS] < 0 || B < 2 || dec_profile) return 1;
    return HR_MIN(hr_num_threads(), B);
}

/* What every thread of the token loop shares: the call's arguments, the buffers sampling fills for all
 * streams, and the status. */
typedef struct {
    const int *cfg, *pos;
    const float *fcfg;
    const float *const *w;
    float *const *state;
    float *logits;
    int B, n, final, top_k;
    double temperature, top_p;
    uint64_t seed;
    int64_t *tokens, *positions, *ids; /* (B,n); (B) each */
    double *sample_scratch;            /* 3V */
    int *at;                           /* (B) the positions of the step */
    double *t;                         /* the profile's clock */
    int st;
} dec_loop;

/* Thread tid of nt: sample every stream on one thread (omp single), then step this thread's slice of the
 * streams, its states a slice of each state buffer, with scratch of its own allocated once. With nt = 1
 * the constructs are orphaned (no parallel region: the kernels' own regions stay at the top level, where
 * libgomp keeps its threads; nested in an inactive region it would start new ones every time). */
static void dec_token_loop(dec_loop *L, int tid, int nt) {
    const int *cfg = L->cfg;
    int B = L->B, V = cfg[H_VOCAB];
    const int *streams = cfg[H_STREAMS] >= 0 ? cfg + cfg[H_STREAMS] : NULL;
    int n_states = nt > 1 ? streams[0] : 0;
    long b0 = 0, b1 = B;
    hr_partition(B, nt, tid, &b0, &b1);
    int Bt = (int)(b1 - b0);
    size_t floats = (dec_scratch_floats(cfg, L->fcfg, L->w, L->state, Bt) + 1) & ~(size_t)1;  /* even: pointers align */
    float *x = hr_alloc(floats * sizeof(float) + (size_t)n_states * sizeof(float *));
    float **mine = x ? (float **)(void *)(x + floats) : NULL;
    for (int i = 0; x && i < n_states; i++) mine[i] = L->state[i] + b0 * streams[1 + i];
    float *const *states = nt > 1 ? (float *const *)mine : L->state;
    if (!x) {
        #pragma omp atomic write
        L->st = HR_ENOMEM;
    }
    dec_lap(DEC_PROF_ALLOC, L->t);
    for (int i = 0; i < L->n; i++) {
        #pragma omp barrier
        #pragma omp single
        if (L->st == HR_OK) {
            for (int b = 0; b < B; b++) L->positions[b] = (int64_t)L->pos[b] + i, L->at[b] = L->pos[b] + i;
            hr_sample(L->logits, L->positions, L->ids, B, V, L->seed, L->temperature, L->top_k, L->top_p,
                      L->sample_scratch);
            for (int b = 0; b < B; b++) {
                if (L->ids[b] < 0) L->st = HR_ENONFINITE;
                L->tokens[(size_t)b * L->n + i] = L->ids[b];
            }
            dec_lap(DEC_PROF_SAMPLE, L->t);
        }
        int ok;
        #pragma omp atomic read
        ok = L->st;
        if (ok != HR_OK || (L->final && i == L->n - 1)) continue;
        int s = dec_step(cfg, L->fcfg, L->w, states, L->ids + b0, L->logits + b0 * V, Bt, L->at + b0, x, L->t);
        if (s != HR_OK) {
            #pragma omp atomic write
            L->st = s;
        }
    }
    free(x);
}

/* The token loop: for i < n, tokens[b, i] = sample(logits[b], u(seed, b, pos[b] + i)) (sample.c), then one
 * decoder step with tokens[:, i], logits <- those of the next position; when `final`, the last token is
 * not fed (it would take a position past the context). The streams are stepped in slices on
 * dec_stream_threads threads (dec_token_loop); each stream's arithmetic is that of one stream alone. */
int hr_generate(const int *cfg, const float *fcfg, const float *const *w, float *const *state, float *logits, int B,
                const int *pos, int n, int final, double temperature, int top_k, double top_p, uint64_t seed,
                int64_t *tokens) {
    int V = cfg[H_VOCAB], nt = dec_stream_threads(cfg, B);
    double t = dec_profile ? dec_clock() : 0.0;
    /* positions (B int64) | ids (B int64) | the sampler's 3V doubles | step positions (B int) */
    double *shared = hr_alloc((2 * (size_t)B + 3 * (size_t)V) * sizeof(double) + B * sizeof(int));
    if (!shared) return HR_ENOMEM;
    dec_loop L = {cfg, pos, fcfg, w, state, logits, B, n, final, top_k, temperature, top_p, seed, tokens,
                  (int64_t *)(void *)shared, (int64_t *)(void *)shared + B, shared + 2 * (size_t)B,
                  (int *)(void *)(shared + 2 * (size_t)B + 3 * (size_t)V), &t, HR_OK};
#ifdef _OPENMP
    if (nt > 1) {
        #pragma omp parallel num_threads(nt)
        dec_token_loop(&L, omp_get_thread_num(), nt);
    } else
#endif
        dec_token_loop(&L, 0, 1);
    free(shared);
    dec_lap(DEC_PROF_ALLOC, &t);
    return L.st;
}
