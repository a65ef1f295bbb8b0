/* LayerNorm and RMSNorm over the last axis of (M, D), forward and backward. */
void hr_layernorm_forward(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd, int M, int D, float eps);
void hr_layernorm_backward(const float *dy, const float *x, const float *w, const float *mean, const float *rstd, float *dx, float *dw, float *db, int M, int D);
void hr_rmsnorm_forward(const float *x, const float *w, float *y, float *rstd, int M, int D, float eps);
void hr_rmsnorm_backward(const float *dy, const float *x, const float *w, const float *rstd, float *dx, float *dw, int M, int D);
