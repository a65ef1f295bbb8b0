/* What the streaming decoder (decode.c) and the decode step of each mixer kind (csrc/<name>_step.c)
 * share. Internal: not part of the cffi cdef (there is no decode_mixer.c).
 *
 * A mixer kind's step advances one token for B streams, stream b at position pos[b]: it reads
 * h (B, D), the normed residual stream, and writes its output over h, updating its state in place.
 * Its record (ints, floats, weight and state pointers) is laid out by the `decode_record` of its
 * C wrapper, backends/c/<name>_step.py, which the step reads back by the same names. */
#ifndef HR_DECODE_MIXER_H
#define HR_DECODE_MIXER_H
#include "common.h"
#include "simd.h"

/* The element type and layout of a weight pointer (backends/c/decode.py sets one per pointer): DEC_BF16
 * marks bfloat16 elements (the top 16 bits of a float32, rounded to nearest even: the decoder's
 * `weights="bf16"` option, which halves the bytes a step reads), DEC_PANELS a matrix in the panel layout
 * below; a pointer with neither flag is plain float32 (norm weights, biases, conv taps, states' inputs).
 *
 * The panel layout of a weight matrix w (N,K), in which the decoder stores every matrix it multiplies:
 * column panels of P = DEC_PANEL output rows, panel p = w[p·P : (p+1)·P]ᵀ as a (K, width) row-major block,
 * the panels one after another; every panel is P wide but the last, whose width is its rows rounded up to
 * DEC_PANEL_UNIT (zero past row N), so that a matrix of few rows (Mamba's x_proj, a small head) is not
 * padded to a whole panel. A matrix takes hr_dec_panel_elems(N, K) elements. A GEMV (hr_dec_linear) then reads each panel once, front to
 * back (one stream the prefetcher follows, from the caches or from DRAM), into P/HR_VW vector
 * accumulators per row of x with no horizontal sum, and several rows share each load. Each output's sum
 * runs over k in order. A stacked matrix (G,N,K) is G such matrices one after another
 * (hr_dec_block). In bfloat16 each group of 2·HR_VW columns of a panel row is stored interleaved, column
 * j at 2j and column HR_VW + j at 2j + 1, so that one load and two bit operations widen it
 * (hr_vload_bf16_pair); the sums are those of the float32 panels of the rounded weights, bit for bit. */
enum { DEC_F32 = 0, DEC_BF16 = 1, DEC_PANELS = 2 };
#define DEC_PANEL (8 * HR_VW)
#define DEC_PANEL_UNIT (2 * HR_VW) /* a pair of vectors: the bfloat16 interleave's group */

static inline size_t hr_dec_panel_elems(int N, int K) {
    return (size_t)((N + DEC_PANEL_UNIT - 1) / DEC_PANEL_UNIT * DEC_PANEL_UNIT) * K;
}

/* A weight matrix (N,K) of type `dtype` (DEC_F32 or DEC_BF16, with DEC_PANELS), as hr_dec_linear reads it. */
typedef struct {
    const void *data;
    int dtype;
} dec_matrix;

typedef struct {
    const int *ints;
    const float *floats;
    const float *const *w;
    const int *wtype;  /* wtype[i]: the element type of w[i] (DEC_F32 or DEC_BF16) */
    float *const *state;
} dec_layer;

/* the matrix in weight slot i of an array w whose element types are wtype */
static inline dec_matrix hr_dec_slot(const float *const *w, const int *wtype, int i) {
    dec_matrix m = {w[i], wtype[i]};
    return m;
}

/* the matrix in weight slot i of a layer's record */
static inline dec_matrix hr_dec_w(const dec_layer *layer, int i) {
    return hr_dec_slot(layer->w, layer->wtype, i);
}

/* block g of a stacked matrix m (G,N,K) in panel layout: the matrix (N,K) of one head, block or expert */
static inline dec_matrix hr_dec_block(dec_matrix m, int g, int N, int K) {
    size_t elems = (size_t)g * hr_dec_panel_elems(N, K);
    m.data = (const char *)m.data + elems * (m.dtype & DEC_BF16 ? sizeof(uint16_t) : sizeof(float));
    return m;
}

/* One line per mixer kind the C decoder can step: X(name) for csrc/<name>_step.c, which defines
 *   int hr_<name>_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos);
 *   size_t hr_<name>_step_scratch(const dec_layer *layer, int B, int D);  (floats of scratch it needs)
 * A kind missing here is refused by name when a decoder is built (hr_decode_kind returns -1). */
#define HR_DECODE_KINDS(X) X(attention) X(mamba) X(retnet) X(gla) X(mamba2) X(rglru) X(rwkv7) X(rwkv7_cmix) X(hyena) X(zamba) X(hymba) X(falcon_h1) X(zamba_hybrid)

#define HR_DECODE_DECLARE(name)                                                                 \
    int hr_##name##_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos); \
    size_t hr_##name##_step_scratch(const dec_layer *layer, int B, int D);
HR_DECODE_KINDS(HR_DECODE_DECLARE)
#undef HR_DECODE_DECLARE

/* y = x wᵀ + b: x (M,K), w (N,K) float32 or bfloat16 in panel layout, b (N,) or NULL -> y (M,N), in float32,
 * each row of y summed in the same order at every M. HR_ELAYOUT when w is not in panel layout. */
int hr_dec_linear(const float *x, dec_matrix w, const float *b, float *y, int M, int K, int N);
/* One token of a depthwise causal conv whose state `conv` (B, W−1, C) holds the previous W−1 inputs:
 * y = conv1d(concat(conv, x)) for x (B, C) -> y (B, C), then conv <- its last W−1 rows (x appended). */
int hr_dec_conv_step(const float *x, const float *w, const float *bias, float *conv, float *y, int B, int C, int W);
/* dst[m, :n] = src[m, off:off+n] for M rows of width ld */
void hr_dec_cols(float *dst, const float *src, int M, int ld, int off, int n);
/* h (B,D) -> MLP(h) (B,D) over h, of the decoder's MLP kind `mlp_kind` (decode.c's MLP_*, which
 * backends/c/decode.py gives a record); fc, act: scratch of B·(2·)hidden floats each (2· when gated).
 * For kinds that hold an MLP of their own (Zamba's shared block). */
int hr_dec_mlp(int mlp_kind, dec_matrix fc_w, const float *fc_b, dec_matrix proj_w, const float *proj_b, float *h,
               float *fc, float *act, int B, int D, int hidden);
/* The attention step up to the heads' outputs (csrc/attention_step.c): x (B,Din) -> o (B,H·P), the KV
 * cache of the attention record `layer` advanced; scratch as hr_attention_step's. */
int hr_attention_attend_step(const dec_layer *layer, const float *x, float *o, float *scratch, int B, int Din,
                             const int *pos);
/* The Mamba step up to its gated output (csrc/mamba_step.c): h (B,D) -> y ⊙ SiLU(z) (B,Din), conv and ssm of
 * the Mamba record `layer` advanced; scratch as hr_mamba_step's. */
int hr_mamba_gated_step(const dec_layer *layer, const float *h, float *gated, float *scratch, int B, int D);
#endif
