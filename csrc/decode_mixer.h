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

typedef struct {
    const int *ints;
    const float *floats;
    const float *const *w;
    float *const *state;
} dec_layer;

/* One line per mixer kind the C decoder can step: X(name) for csrc/<name>_step.c, which defines
 *   int hr_<name>_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos);
 *   size_t hr_<name>_step_scratch(const dec_layer *layer, int B, int D);  (floats of scratch it needs)
 * A kind missing here is refused by name when a decoder is built (hr_decode_kind returns -1). */
#define HR_DECODE_KINDS(X) X(attention) X(mamba) X(retnet) X(gla) X(mamba2) X(rglru) X(rwkv7) X(rwkv7_cmix) X(hyena) X(zamba)

#define HR_DECODE_DECLARE(name)                                                                 \
    int hr_##name##_step(const dec_layer *layer, float *h, float *scratch, int B, int D, const int *pos); \
    size_t hr_##name##_step_scratch(const dec_layer *layer, int B, int D);
HR_DECODE_KINDS(HR_DECODE_DECLARE)
#undef HR_DECODE_DECLARE

/* y = x wᵀ + b: x (M,K), w (N,K), b (N,) or NULL -> y (M,N); a GEMV below DEC_GEMM_ROWS rows. */
int hr_dec_linear(const float *x, const float *w, const float *b, float *y, int M, int K, int N);
/* One token of a depthwise causal conv whose state `conv` (B, W−1, C) holds the previous W−1 inputs:
 * y = conv1d(concat(conv, x)) for x (B, C) -> y (B, C), then conv <- its last W−1 rows (x appended). */
int hr_dec_conv_step(const float *x, const float *w, const float *bias, float *conv, float *y, int B, int C, int W);
/* dst[m, :n] = src[m, off:off+n] for M rows of width ld */
void hr_dec_cols(float *dst, const float *src, int M, int ld, int off, int n);
/* h (B,D) -> MLP(h) (B,D) over h, of the decoder's MLP kind `mlp_kind` (decode.c's MLP_*, which
 * backends/c/decode.py gives a record); fc, act: scratch of B·(2·)hidden floats each (2· when gated).
 * For kinds that hold an MLP of their own (Zamba's shared block). */
int hr_dec_mlp(int mlp_kind, const float *fc_w, const float *fc_b, const float *proj_w, const float *proj_b, float *h,
               float *fc, float *act, int B, int D, int hidden);
/* The attention step up to the heads' outputs (csrc/attention_step.c): x (B,Din) -> o (B,H·P), the KV
 * cache of the attention record `layer` advanced; scratch as hr_attention_step's. */
int hr_attention_attend_step(const dec_layer *layer, const float *x, float *o, float *scratch, int B, int Din,
                             const int *pos);
#endif
