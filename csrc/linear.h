/* Linear layer y = x wᵀ + b and its gradients, through hr_gemm. */
int hr_linear_forward(const float *x, const float *w, const float *b, float *y, int M, int K, int N);
int hr_linear_backward(const float *dy, const float *x, const float *w, float *dx, float *dw, float *db, int M, int K,
                       int N);
