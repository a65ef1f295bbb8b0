/* Attention of one new query per stream over a KV cache: q (B,H,P), k, v (B,Hk,L,P) -> o (B,H,P). */
int hr_attention_decode(const float *q, const float *k, const float *v, float *o, int B, int H, int Hk, int P, int L, int length, int window);
/* One token for B streams through a whole language model described by cfg / fcfg / w (see decode.c),
 * advancing the per-layer states; ids (B,) -> logits (B,V). Return HR_OK or HR_ENOMEM. */
int hr_decode_step(const int *cfg, const float *fcfg, const float *const *w, float *const *state, const int64_t *ids, float *logits, int B, int pos);
