/* Sampling a token from logits with a counter-based uniform number. Definition and NumPy oracle:
 * backends/numpy/sample.py (same operations in the same order: the same token for the same logits). */
/* u ∈ [0,1) of the draw (seed, stream, position): (splitmix64(splitmix64(splitmix64(seed) + stream) + pos) >> 11)·2⁻⁵³ */
double hr_sample_uniform(uint64_t seed, int64_t stream, int64_t pos);
/* ids (B,): row b of logits (B,V) drawn with u = hr_sample_uniform(seed, b, pos[b]) after temperature (0:
 * greedy), top-k (0: all), top-p (1: all); -1 for a row holding a non-finite logit. scratch: 3·V doubles. */
void hr_sample(const float *logits, const int64_t *pos, int64_t *ids, int B, int V, uint64_t seed, double temperature,
               int top_k, double top_p, double *scratch);
