/* Gates of Griffin's RG-LRU: decays a and the normalised input xn of the linear recurrence; return HR_OK. */
int hr_rglru_gate_forward(const float *x, const float *gx, const float *ga, const float *a_param, float *a, float *xn, int B, int T, int C, long time_offset);
int hr_rglru_gate_backward(const float *da, const float *dxn, const float *x, const float *gx, const float *ga, const float *a_param, float *dx, float *dgx, float *dga, float *da_param, int B, int T, int C, long time_offset);
