"""Batched decoding of independent streams with prompts of different lengths (Decoder.prefill_streams on
the C decoder: each stream at its own position): every stream's logits and tokens are those of the
stream decoded alone."""
import numpy as np
import pytest

from hybridref.models.char_lm import CharLM

V = 65


def _alone(model, prompt, steps, max_len):
    """(logits after the prompt and after each fed token, greedy tokens) of one stream decoded alone."""
    dec = model.decoder(1, max_len)
    logits = [dec.prefill(prompt[None])]
    tokens, _ = dec.generate(logits[0], steps, seed=0, temperature=0, final=False)
    dec = model.decoder(1, max_len)
    dec.prefill(prompt[None])
    for t in tokens[0]:
        logits.append(dec.step(np.array([t])))
    return np.concatenate(logits), tokens[0]


@pytest.mark.parametrize("arch", ["hybrid", "griffin", "retnet", "rwkv7"])  # attention, RG-LRU, RoPE'd retention
def test_streams_at_their_own_positions_decode_as_alone(arch, cb):
    """Each row of a product is summed in the same order at every batch size (the decoder's panel GEMV,
    csrc/decode.c, whatever group of rows it falls in), so at 4 and at 17 streams every stream's logits and
    tokens equal those it decodes alone, bit for bit."""
    model = CharLM.preset(arch, V).to(cb)
    rng = np.random.default_rng(0)
    for B in (4, 17):
        prompts = [rng.integers(0, V, int(n)) for n in rng.integers(1, 12, B)]
        steps, max_len = 6, 12 + 6
        dec = model.decoder(B, max_len)
        logits = [dec.prefill_streams(prompts)]
        tokens, _ = dec.generate(logits[0], steps, seed=0, temperature=0, final=False)
        dec = model.decoder(B, max_len)
        dec.prefill_streams(prompts)
        for i in range(steps):
            logits.append(dec.step(tokens[:, i]))
        for b, prompt in enumerate(prompts):
            want_logits, want_tokens = _alone(model, prompt, steps, max_len)
            np.testing.assert_array_equal(np.stack([lg[b] for lg in logits]), want_logits)
            np.testing.assert_array_equal(tokens[b], want_tokens)


def test_prefill_streams_refuses_bad_prompts(cb):
    model = CharLM(5, d_model=16, pattern="MA", n_heads=2).to(cb)
    dec = model.decoder(2, 4)
    with pytest.raises(ValueError, match="one prompt per stream"):
        dec.prefill_streams([np.zeros(2, np.int64)])
    with pytest.raises(ValueError, match="1 to max_len = 4 tokens; stream 1"):
        dec.prefill_streams([np.zeros(2, np.int64), np.zeros(5, np.int64)])
    dec.prefill_streams([np.zeros(2, np.int64), np.zeros(3, np.int64)])
    with pytest.raises(ValueError, match="context holds 4 tokens"):  # the longest stream, at 3, has room for 1
        dec.generate(np.zeros((2, 5), np.float32), 2, seed=0, final=False)
