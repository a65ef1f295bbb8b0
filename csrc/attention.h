/* Causal multi-head softmax attention, FlashAttention-2 tiling; window < 0 means none. Query i of the
   q block stands at key position i + q_offset (q_offset >= 0); the first `sinks` keys of the block stay
   visible to every later query whatever the window (0: none). */
int hr_attention_forward(const float *q, const float *k, const float *v, float *o, float *lse,
                         int B, int Tq, int Tk, int H, int Hk, int P, int window, int q_offset, int sinks);
int hr_attention_backward(const float *dout, const float *q, const float *k, const float *v,
                          const float *o, const float *lse, float *dq, float *dk, float *dv,
                          int B, int Tq, int Tk, int H, int Hk, int P, int window, int q_offset, int sinks);
