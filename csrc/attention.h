/* Causal multi-head softmax attention, FlashAttention-2 tiling; window < 0 means none. */
int hr_attention_forward(const float *q, const float *k, const float *v, float *o, float *lse,
                         int B, int T, int H, int Hk, int P, int window);
int hr_attention_backward(const float *dout, const float *q, const float *k, const float *v,
                          const float *o, const float *lse, float *dq, float *dk, float *dv,
                          int B, int T, int H, int Hk, int P, int window);
