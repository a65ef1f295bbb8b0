/* Depthwise causal conv1d over time (Mamba's short conv); return HR_OK or HR_ENOMEM. */
int hr_causal_conv1d_forward(const float *x, const float *w, const float *bias, const float *prefix, float *y, int B, int T, int C, int W);
int hr_causal_conv1d_backward(const float *dy, const float *x, const float *w, const float *prefix, float *dx, float *dw, float *dbias, float *dprefix, int B, int T, int C, int W);
