/* Rotary position embedding (GPT-NeoX half split) on (B, T, H, P), positions offset..offset+T-1;
 * y may be x (in place). Return HR_OK or HR_ENOMEM. */
int hr_rope_forward(const float *x, float *y, int B, int T, int H, int P, long offset, double base);
int hr_rope_backward(const float *dy, float *dx, int B, int T, int H, int P, long offset, double base);
