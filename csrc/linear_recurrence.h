/* Diagonal linear recurrence h_t = a_t ⊙ h_{t-1} + x_t (RG-LRU); return HR_OK. */
int hr_linear_recurrence_forward(const float *a, const float *x, const float *h0, float *h, float *h_last, int B, int T, int C);
int hr_linear_recurrence_backward(const float *dh, const float *a, const float *x, const float *h0, const float *dh_last, float *da, float *dx, float *dh0, int B, int T, int C);
