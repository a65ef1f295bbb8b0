/* Element-wise activations over n elements (any shape), forward and backward. */
void hr_gelu_forward(const float *x, float *y, long n);
void hr_gelu_backward(const float *dy, const float *x, float *dx, long n);
void hr_gelu_erf_forward(const float *x, float *y, long n);
void hr_gelu_erf_backward(const float *dy, const float *x, float *dx, long n);
void hr_silu_forward(const float *x, float *y, long n);
void hr_silu_backward(const float *dy, const float *x, float *dx, long n);
void hr_silu_gate_forward(const float *x, const float *z, float *y, long n);
void hr_silu_gate_backward(const float *dy, const float *x, const float *z, float *dx, float *dz, long n);
void hr_softplus_forward(const float *x, float *y, long n);
void hr_softplus_backward(const float *dy, const float *x, float *dx, long n);
