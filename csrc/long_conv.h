/* Long causal depthwise convolution y[t] = Σ_{j<L} h[j] ũ[t+L-1-j] (Hyena's filters); method 0 chooses
 * by size, 1 forces the direct sum, 2 the FFT; return HR_OK or HR_ENOMEM. */
int hr_long_conv_forward(const float *u, const float *h, const float *prefix, float *y, int B, int T, int C, int L, int method);
int hr_long_conv_backward(const float *dy, const float *u, const float *h, const float *prefix, float *du, float *dh, float *dprefix, int B, int T, int C, int L, int method);
