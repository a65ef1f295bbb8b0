"""RecurrentGemma's model and attention options (hybridref/convert/hf_recurrentgemma.py uses them): the
logits' soft cap (`logit_softcap`, hybridref/layers/softcap.py), and the attention's partial rotary
(`rope_dims`) and output bias (`out_bias`). Float64 finite differences through a whole model, C = NumPy
in the forward and on the C decoder (float32, 1e-5 as tests/test_mlp_kind.py), and bad values refused."""
import numpy as np
import pytest

from helpers import check_lm_grads, rel_err
from hybridref.errors import UserError
from hybridref.models.char_lm import CharLM

V = 11
KW = dict(d_model=16, pattern="LA", mlp_hidden=7, mlp_kind="gated_gelu", logit_softcap=0.5, seed=3,
          mixers={"L": dict(n_heads=2), "A": dict(n_heads=2, n_kv_heads=1, window=3, rope_dims=4, out_bias=True)})


def _model(**overrides):
    model = CharLM(V, **{**KW, **overrides})
    with_bias = model.blocks[1].mixer.out.bias
    with_bias.data[...] = np.random.default_rng(0).normal(0, 0.5, with_bias.shape)  # the init's zeros hide it
    return model


def test_gradients_float64(npb, rng):
    model = _model().to(npb).astype(np.float64)
    ids = rng.integers(0, V, (2, 6))
    check_lm_grads(model, npb, ids, rng.integers(0, V, 12), rng, per_param=3)


def test_logits_are_capped_and_c_decoder_equals_numpy(npb, cb, rng):
    """|logits| < c = 0.5, C = NumPy, and the C decoder's steps (its own cap, the partial rotary and the
    output bias in csrc/attention_step.c) equal the parallel forward, past the window."""
    model = _model()
    ids = rng.integers(0, V, (2, 9))
    full = model.to(npb).prefill(ids, model.init_state(2, 9))
    assert np.abs(full).max() < 0.5
    assert rel_err(model.to(cb).forward(ids), full) < 1e-5
    dec = model.to(cb).decoder(2, 9)
    steps = [dec.prefill(ids[:, :2])] + [dec.step(ids[:, t]) for t in range(2, 9)]
    assert rel_err(np.stack(steps, 1), full[:, 1:]) < 1e-5
    # each option matters, so the comparisons above could fail
    for name, change in dict(cap=dict(logit_softcap=None), rope=dict(mixers={**KW["mixers"], "A": {
            **KW["mixers"]["A"], "rope_dims": None}})).items():
        other = _model(**change).to(npb)
        assert rel_err(other.forward(ids), full) > 1e-3, name


@pytest.mark.parametrize("bad, message", [
    (dict(logit_softcap=0.0), r"logit_softcap must be null or a positive number"),
    (dict(logit_softcap=True), r"logit_softcap must be null or a positive number"),
    (dict(mixers={"A": dict(n_heads=2, rope_dims=3)}, pattern="A"), r"rope_dims 3 is not an even count from 2 to"),
])
def test_bad_values_are_refused(bad, message):
    with pytest.raises((UserError, ValueError), match=message):
        CharLM(V, **{**KW, **bad})
