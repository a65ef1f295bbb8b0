"""The MLP kind of a model (`mlp_kind`: "gelu", "gated_gelu", "gated_gelu_erf", ...; hybridref/layers/mlp.py):
gradients, C = NumPy, the C decoder's MLP branch, the torch reference model, configs written before the option."""
import math

import numpy as np
import pytest

from helpers import check_layer_grads, check_lm_grads, rel_err
from hybridref.layers.mlp import GatedMLP, MLP_KINDS, make_mlp
from hybridref.models.char_lm import CharLM

V = 11


@pytest.mark.parametrize("kind", ["gated_gelu", "gated_gelu_erf"])
def test_gated_mlp_gradients_float64(npb, rng, kind):
    """Central differences (helpers.check_layer_grads: float64, eps 1e-6) of the input and every parameter."""
    mlp = make_mlp(kind, 6, 5, rng).to(npb).astype(np.float64)
    assert isinstance(mlp, GatedMLP) and mlp.fc.weight.shape == (10, 6)
    x, G = rng.standard_normal((2, 3, 4, 6))
    check_layer_grads(mlp, x, G, rng)


def test_gated_mlp_is_geglu(npb, rng):
    """y = W_down(GELU(W_gate x + b_gate) ⊙ (W_up x + b_up)) + b_down, fc's rows [W_gate; W_up]."""
    mlp = make_mlp("gated_gelu", 6, 5, rng).to(npb).astype(np.float64)
    x = rng.standard_normal((4, 6))
    W, b = mlp.fc.weight.data, mlp.fc.bias.data
    gelu = lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
    want = (gelu(x @ W[:5].T + b[:5]) * (x @ W[5:].T + b[5:])) @ mlp.proj.weight.data.T + mlp.proj.bias.data
    assert rel_err(mlp.step(x), want) < 1e-14


def test_gated_gelu_erf_is_the_exact_gelu(npb, rng):
    """y = W_down(g Φ(g) ⊙ (W_up x)), g = W_gate x, Φ the normal CDF (torch's GELU; Zamba's MLP, no biases)."""
    mlp = make_mlp("gated_gelu_erf", 6, 5, rng, bias=False).to(npb).astype(np.float64)
    x = rng.standard_normal((4, 6)) * 2
    W = mlp.fc.weight.data
    phi = np.vectorize(lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2))))
    g = x @ W[:5].T
    assert rel_err(mlp.step(x), (g * phi(g) * (x @ W[5:].T)) @ mlp.proj.weight.data.T) < 1e-14


@pytest.mark.parametrize("kind", list(MLP_KINDS))
def test_model_c_matches_numpy_and_decodes(npb, cb, rng, kind):
    """A CharLM of each MLP kind: the C forward/backward = NumPy (float32, as the conformance suite:
    1e-5 logits, 1e-4 gradients), and prefill + steps on the C decoder = the parallel forward (1e-5)."""
    model = CharLM(V, d_model=16, pattern="LAM", n_heads=2, d_state=4, mlp_hidden=10, mlp_kind=kind, seed=1)
    ids = rng.integers(0, V, (2, 9))
    dlogits = rng.standard_normal((2, 9, V)).astype(np.float32)
    out = {}
    for be in (npb, cb):
        model.to(be).zero_grad()
        logits = model.forward(ids)
        model.backward(dlogits)
        out[be.name] = logits, {n: p.grad.copy() for n, p in model.named_params()}
    assert rel_err(out["c"][0], out["numpy"][0]) < 1e-5
    for name, g in out["numpy"][1].items():
        assert rel_err(out["c"][1][name], g) < 1e-4, name
    full = model.to(npb).prefill(ids, model.init_state(2, 9))
    dec = model.to(cb).decoder(2, 9)
    steps = [dec.prefill(ids[:, :3])] + [dec.step(ids[:, t]) for t in range(3, 9)]
    assert rel_err(np.stack(steps, 1), full[:, 2:]) < 1e-5


def test_torch_reference_follows_the_kind(npb, rng):
    torch = pytest.importorskip("torch")
    from torch_ref.models import char_lm_forward
    model = CharLM(V, d_model=16, pattern="AL", n_heads=2, mlp_hidden=12, mlp_kind="gated_gelu").to(npb)
    ids = rng.integers(0, V, (2, 7))
    ours = model.prefill(ids, model.init_state(2, 7))
    p = {k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()}
    with torch.inference_mode():
        theirs = char_lm_forward(p, torch.from_numpy(ids), model.config).numpy()
    assert rel_err(theirs, ours) < 1e-5  # float32, independent formulations


def test_the_kind_is_a_model_option():
    model = CharLM(V, d_model=16, pattern="A", n_heads=2, mlp_kind="gated_gelu")
    assert model.config["mlp_kind"] == "gated_gelu"
    # a config written before the option existed is a GELU-MLP model
    old = {k: v for k, v in CharLM(V, d_model=16, pattern="A", n_heads=2).config.items() if k != "mlp_kind"}
    assert CharLM.from_config(old).config["mlp_kind"] == "gelu"
    with pytest.raises(ValueError, match=r"unknown mlp_kind 'relu'; known: gelu, gated_gelu, swiglu"):
        CharLM(V, d_model=16, pattern="A", n_heads=2, mlp_kind="relu")


def test_swiglu_without_biases_and_norm_eps(npb, cb, rng):
    """Llama's block options: a SwiGLU MLP without biases (mlp_bias False: no bias parameters at all)
    and a norm epsilon other than 1e-5. Float64 finite differences (check_lm_grads), and C = NumPy
    in the forward and on the C decoder (float32, 1e-5 as above); norm_eps reaches every norm."""
    kw = dict(d_model=12, pattern="AM", n_heads=2, d_state=4, mlp_hidden=7, mlp_kind="swiglu", mlp_bias=False,
              norm_eps=1e-2, seed=2)
    model = CharLM(V, **kw).to(npb).astype(np.float64)
    assert not [n for n, _ in model.named_params() if n.startswith("blocks.") and "mlp" in n and "bias" in n]
    assert {m.eps for m in model.modules() if hasattr(m, "eps")} == {1e-2}
    ids = rng.integers(0, V, (2, 5))
    check_lm_grads(model, npb, ids, rng.integers(0, V, 10), rng, per_param=3)
    model = CharLM(V, **kw)
    ids = rng.integers(0, V, (2, 8))
    full = model.to(npb).prefill(ids, model.init_state(2, 8))
    assert rel_err(model.to(cb).forward(ids), full) < 1e-5
    dec = model.to(cb).decoder(2, 8)
    steps = [dec.prefill(ids[:, :3])] + [dec.step(ids[:, t]) for t in range(3, 8)]
    assert rel_err(np.stack(steps, 1), full[:, 2:]) < 1e-5
    # the eps matters: with the default the logits differ (so the test above could fail)
    assert rel_err(CharLM(V, **{**kw, "norm_eps": 1e-5}).to(npb).forward(ids), full) > 1e-3
