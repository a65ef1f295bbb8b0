/* One token for B streams through a whole language model described by cfg / fcfg / w / state (see
 * decode.c), advancing the per-layer states; ids (B,) -> logits (B,V). Return HR_OK or HR_ENOMEM. */
int hr_decode_step(const int *cfg, const float *fcfg, const float *const *w, float *const *state, const int64_t *ids, float *logits, int B, int pos);
/* The index of the mixer kind `name` in the decoder's table (the kind an hr_decode_step record gives), or -1. */
int hr_decode_kind(const char *name);
/* Time the parts of hr_decode_step into seconds[] (added to; NULL: off, the default) for profiling:
 * [scratch alloc, embedding, norms, residual adds, MLP, head, then one per mixer kind (hr_decode_kind)].
 * Returns the number of slots. */
int hr_decode_profile(double *seconds);
