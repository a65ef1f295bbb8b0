/* One token per stream through a mixture-of-experts MLP in the C decoder (csrc/moe_step.c). */
int hr_moe_step(const int *rec, const float *const *w, float *h, int B, int D, int hidden);
