/* Attention of one new query per stream over a KV cache: q (B,H,P), k, v (B,Hk,L,P) -> o (B,H,P). */
int hr_attention_decode(const float *q, const float *k, const float *v, float *o, int B, int H, int Hk, int P, int L, int length, int window);
