/* One token for B streams, stream b at position pos[b], through a whole language model described by
 * cfg / fcfg / w / state (see decode.c), advancing the per-layer states; ids (B,) -> logits (B,V).
 * Return HR_OK, HR_ENOMEM or HR_ELAYOUT (a weight matrix not in panel layout). */
int hr_decode_step(const int *cfg, const float *fcfg, const float *const *w, float *const *state, const int64_t *ids, float *logits, int B, const int *pos);
/* The index of the mixer kind `name` in the decoder's table (the kind an hr_decode_step record gives), or -1. */
int hr_decode_kind(const char *name);
/* Time the parts of hr_decode_step into seconds[] (added to; NULL: off, the default) for profiling:
 * [scratch alloc, embedding, norms, residual adds, MLP, head, sampling, then one per mixer kind (hr_decode_kind)].
 * Returns the number of slots. */
int hr_decode_profile(double *seconds);
/* n tokens (B,n) for B streams, stream b at position pos[b]: each sampled from logits (B,V) (sample.c; u
 * of draw i of stream b: hr_sample_uniform(seed, b, pos[b] + i)) and fed back through a step that updates
 * logits; the last one is not fed when `final`. Return HR_OK, HR_ENOMEM or HR_ENONFINITE (non-finite logits). */
int hr_generate(const int *cfg, const float *fcfg, const float *const *w, float *const *state, float *logits, int B,
                const int *pos, int n, int final, double temperature, int top_k, double top_p, uint64_t seed,
                int64_t *tokens);
/* The width of the decoder's weight panels in this build (decode_mixer.h: DEC_PANEL columns, 8 vectors);
 * *unit: what the width of a matrix's last panel is rounded up to (DEC_PANEL_UNIT). */
int hr_dec_panel_width(int *unit);
