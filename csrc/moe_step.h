/* One token per stream through a mixture-of-experts MLP in the C decoder (csrc/moe_step.c); w: the decoder's
 * weight pointers, wtype their element types (decode_mixer.h's DEC_F32 / DEC_BF16). */
int hr_moe_step(const int *rec, const float *const *w, const int *wtype, float *h, int B, int D, int hidden);
