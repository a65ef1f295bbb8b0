/* Σ x² in float64 (gradient-norm clipping) and the AdamW update, over n elements. */
double hr_sum_squares(const float *x, long n);
void hr_adamw_step(float *param, const float *grad, float *m, float *v, long n, int step, float lr, float beta1, float beta2, float eps, float weight_decay, float grad_scale);
