/* Dropout with a counter-based (SplitMix64) mask: y = x ⊙ keep / (1 − p), x and y (B, T, D), batch
 * row b and position t of the block at global (batch_offset + b, time_offset + t). The op is its own
 * backward (dx = the same call on dy). y may be x. */
void hr_dropout(const float *x, float *y, long B, long T, long D, double p, uint64_t seed, long batch_offset,
                long time_offset);
