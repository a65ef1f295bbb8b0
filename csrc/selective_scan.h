/* Mamba S6 selective scan; return HR_OK or HR_ENOMEM. */
int hr_selective_scan_forward(const float *x, const float *delta, const float *A, const float *Bm, const float *Cm, const float *D, const float *h0, float *y, float *h_last, int B, int T, int Din, int N);
int hr_selective_scan_backward(const float *dy, const float *x, const float *delta, const float *A, const float *Bm, const float *Cm, const float *D, const float *h0, const float *dh_last, float *dx, float *ddelta, float *dA, float *dBm, float *dCm, float *dD, float *dh0, int B, int T, int Din, int N);
