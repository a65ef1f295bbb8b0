/* Attention of one new query per stream over a KV cache: q (B,H,P), k, v (B,Hk,L,P) -> o (B,H,P). */
int hr_attention_decode(const float *q, const float *k, const float *v, float *o, int B, int H, int Hk, int P, int L, int length, int window, int sinks);
/* The cache row of position p with S sinks (rows 0..S-1 hold positions 0..S-1, the others a ring). */
long hr_attention_cache_row(long p, int L, int S);
