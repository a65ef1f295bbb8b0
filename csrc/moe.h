/* Mixture-of-experts ops (hybridref/layers/moe.py, backends/numpy/moe.py): the router (softmax, top-k,
 * combine weights, balancing statistics), the token rows grouped by expert (counting sort), each
 * expert's linear on its rows (the grouped GEMM), and the weighted combination back per token. */
int hr_moe_route_forward(const float *logits, int64_t *experts, float *weights, float *probs, float *lse, double *stats,
                         int M, int E, int k, int normalize);
void hr_moe_route_backward(const float *dweights, const int64_t *experts, const float *probs, const float *lse,
                           const float *aux_dprobs, float z_scale, float *dlogits, int M, int E, int k, int normalize);
int hr_moe_dispatch_forward(const float *x, const int64_t *experts, float *xs, int64_t *slot_pos, int64_t *offsets,
                            int M, int D, int k, int E);
void hr_moe_dispatch_backward(const float *dxs, const int64_t *slot_pos, float *dx, int M, int D, int k);
int hr_moe_expert_linear_forward(const float *xs, const int64_t *offsets, const float *w, const float *b, float *ys,
                                 int E, int K, int N);
int hr_moe_expert_linear_backward(const float *dys, const float *xs, const int64_t *offsets, const float *w,
                                  float *dxs, float *dw, float *db, int E, int K, int N);
void hr_moe_combine_forward(const float *ys, const int64_t *slot_pos, const float *weights, float *y, int M, int D,
                            int k);
void hr_moe_combine_backward(const float *dy, const float *ys, const int64_t *slot_pos, const float *weights,
                             float *dys, float *dweights, int M, int D, int k);
