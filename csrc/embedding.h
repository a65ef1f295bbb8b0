/* Token embedding lookup (M ids into a (V, D) table) and its scatter-add gradient. */
void hr_embedding_forward(const int64_t *ids, const float *table, float *y, int M, int D);
void hr_embedding_backward(const float *dy, const int64_t *ids, float *dtable, int M, int V, int D);
