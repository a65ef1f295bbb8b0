/* WKV-7, RWKV-7's generalized delta rule, forward and backward; return HR_OK or HR_ENOMEM. h_last may alias h0. */
int hr_wkv7_forward(const float *r, const float *w, const float *k, const float *v, const float *a, const float *b, const float *h0, float *y, float *h_last, int B, int T, int H, int K, int V);
int hr_wkv7_backward(const float *dy, const float *r, const float *w, const float *k, const float *v, const float *a, const float *b, const float *h0, const float *dh_last, float *dr, float *dw, float *dk, float *dv, float *da, float *db, float *dh0, int B, int T, int H, int K, int V);
