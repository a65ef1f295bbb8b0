/* RWKV token shift: M learned interpolations between each token and the one before it, forward and backward. */
void hr_token_shift_forward(const float *x, const float *mu, const float *prefix, float *y, int B, int T, int C, int M);
void hr_token_shift_backward(const float *dy, const float *x, const float *mu, const float *prefix, float *dx, float *dmu, float *dprefix, int B, int T, int C, int M);
