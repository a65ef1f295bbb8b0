/* Softmax cross-entropy over C classes for M rows, averaged over rows. */
double hr_cross_entropy_forward(const float *logits, const int64_t *targets, float *probs, double *row_loss, int M, int C);
void hr_cross_entropy_backward(const float *probs, const int64_t *targets, float *dlogits, int M, int C);
