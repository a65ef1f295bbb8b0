/* Mean over the sequence axis. */
void hr_mean_pool_forward(const float *x, float *y, int B, int T, int D);
void hr_mean_pool_backward(const float *dy, float *dx, int B, int T, int D);
