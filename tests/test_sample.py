"""The sampler (backends/numpy/sample.py, csrc/sample.c) and the decoders' token loop (Decoder.generate):
C and NumPy draw the same token from the same logits, the C token loop gives the tokens of the NumPy
sampler applied to the C decoder's own logits, top-k / top-p restrict the draw, greedy is the argmax."""
import numpy as np
import pytest

from hybridref.backends.numpy.sample import sample_row, uniform
from hybridref.errors import UserError
from hybridref.models.char_lm import CharLM

LOGITS = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32))


def _draws(be, n=300, **kw):
    return {int(be.sample(LOGITS, np.array([p], np.int64), 5, **kw)[0]) for p in range(n)}


def test_top_k_and_top_p_restrict_the_draw(cb, npb):
    for be in (cb, npb):
        assert _draws(be) == {0, 1, 2, 3}
        assert _draws(be, top_k=2) == {0, 1}
        assert _draws(be, top_p=0.7) == {0, 1}  # 0.5 < 0.7 <= 0.8
        assert _draws(be, top_p=0.5) == {0}
        assert _draws(be, n=20, temperature=0) == {0}


def test_the_draw_follows_the_probabilities():
    """Frequencies of 20,000 draws within 4 standard deviations of [0.5, 0.3, 0.15, 0.05]."""
    p = np.exp(LOGITS[0].astype(np.float64))
    n = 20000
    counts = np.bincount([sample_row(LOGITS[0], u) for u in uniform(3, 0, np.arange(n))], minlength=4)
    assert np.all(np.abs(counts / n - p) < 4 * np.sqrt(p * (1 - p) / n))


def test_c_and_numpy_draw_the_same_tokens_from_the_same_logits(cb, npb):
    rng = np.random.default_rng(0)
    for trial in range(60):
        V = int(rng.integers(1, 200))
        logits = (rng.standard_normal((5, V)) * rng.uniform(0.1, 10)).astype(np.float32)
        if trial % 3 == 0:
            logits = np.round(logits)  # ties, at the top-k threshold and in the top-p order
        positions = rng.integers(0, 2**62, 5)
        for kw in (dict(), dict(temperature=0), dict(top_k=3), dict(top_p=0.8),
                   dict(temperature=0.6, top_k=7, top_p=0.5), dict(top_k=V + 1, top_p=1e-9)):
            want = npb.sample(logits, positions, trial, **kw)
            np.testing.assert_array_equal(cb.sample(logits, positions, trial, **kw), want, err_msg=str(kw))


def test_greedy_is_the_first_largest_and_non_finite_rows_are_marked(cb, npb):
    logits = np.array([[1, 3, 3, 0], [0, np.nan, 1, 2], [np.inf, 0, 0, 0]], dtype=np.float32)
    for be in (cb, npb):
        np.testing.assert_array_equal(be.sample(logits, np.zeros(3, np.int64), 0, temperature=0), [1, -1, -1])


@pytest.mark.parametrize("arch", ["hybrid", "griffin"])
def test_c_token_loop_is_the_numpy_sampler_on_the_c_logits(arch, cb):
    """Decoder.generate on the C backend (sampling in C, chunks of 1 and 7 tokens) against steps of the C
    decoder with the NumPy oracle's sampler: the same logits, so the same tokens whatever the seed."""
    from hybridref.backends.numpy.sample import sample
    model = CharLM.preset(arch, 65).to(cb)
    prompt = np.random.default_rng(1).integers(0, 65, (2, 9))
    for kw in (dict(temperature=0, seed=0), dict(temperature=1.0, seed=4), dict(temperature=0.8, top_k=10, top_p=0.9,
                                                                             seed=5)):
        dec = model.decoder(2, 9 + 15)
        logits, want = dec.prefill(prompt), []
        for i in range(15):
            ids = sample(logits, np.full(2, dec.pos), **kw)
            want.append(ids)
            if i < 14:
                logits = dec.step(ids)
        dec = model.decoder(2, 9 + 15)
        logits, got = dec.prefill(prompt), []
        for n, final in ((1, False), (7, False), (7, True)):
            tokens, logits = dec.generate(logits, n, final=final, **kw)
            got.append(tokens)
        np.testing.assert_array_equal(np.concatenate(got, axis=1), np.stack(want, axis=1), err_msg=str(kw))
        assert logits is None and dec.pos == 9 + 14


def test_generate_refuses_what_it_cannot_run(cb, npb):
    for be in (cb, npb):
        model = CharLM(5, d_model=16, pattern="MA", n_heads=2).to(be)
        dec = model.decoder(1, 4)
        logits = dec.prefill(np.zeros((1, 2), np.int64))
        with pytest.raises(ValueError, match="context holds 4 tokens"):
            dec.generate(logits, 3, seed=0, final=False)  # 3 tokens fed after position 2
        with pytest.raises(ValueError, match="n must be"):
            dec.generate(logits, 0, seed=0)
        with pytest.raises(ValueError, match="logits must have shape"):
            dec.generate(logits[:, :3], 1, seed=0)
        with pytest.raises(ValueError, match="temperature"):
            dec.generate(logits, 1, seed=0, temperature=1e-300)
        with pytest.raises(UserError, match="non-finite logits"):
            dec.generate(np.full_like(logits, np.nan), 1, seed=0)
        tokens, _ = dec.generate(logits, 3, seed=0, final=True)  # the last token is not fed: it fits
        assert tokens.shape == (1, 3)
