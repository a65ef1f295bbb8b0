"""Cross-checks against PyTorch autograd (torch==2.13.0 CPU, a test-only oracle).

Each mixer has one independent PyTorch reference, tests/torch_ref/<name>.py (found by the mixer's
registered name), written from the published formulas and run with the same weights; outputs and
every gradient must agree. float64 NumPy vs float64 torch: 1e-9 (two exact-arithmetic
implementations, differing only in summation order). float32 C vs float64 torch: 1e-4 (float32
rounding through ~10 ops and length-T scans/sums, ~1e-6 per op, with margin for small-gradient
cancellation). The torch references' own decode (`step`) is checked against their `forward` in
float64: 1e-10.
"""
import numpy as np
import pytest

from hybridref.layers.registry import mixer_spec, mixers
from hybridref.optim import AdamW
from helpers import rel_err

torch = pytest.importorskip("torch")
import torch_ref  # noqa: E402  (needs torch)
from torch_ref.models import mnist_hybrid  # noqa: E402

B, T, D = 2, 19, 24

# Every registered mixer with its spec's test_options, then further option sets of some mixers
# (by letter; each is skipped when its mixer is not registered).
EXTRA_OPTIONS = [
    ("A", dict(n_heads=3, rope_base=None)),
    ("A", dict(n_heads=3, window=5, rope_base=None)),
    ("A", dict(n_heads=4, n_kv_heads=2, window=5)),
    ("A", dict(n_heads=4, n_kv_heads=1, rope_base=500.0)),
    ("A", dict(n_heads=4, n_kv_heads=1, window=5, rope_dims=4, out_bias=True)),  # RecurrentGemma's local attention
    ("M", dict(d_state=16)),
    ("M", dict(d_state=3, d_conv=2, expand=1, dt_rank=5)),
    ("M", dict(directions=2)),  # Vision Mamba (tests/torch_ref/mamba.py; the cross scan: test_scan_directions.py)
    ("S", dict(norm_eps=1e-2)),  # transformers' Mamba2 gives the gated norm its layer_norm_epsilon
    ("F", dict(gate_norm=True, norm_eps=1e-2)),  # Falcon-H1's mamba_rms_norm true
    ("F", dict(head_dim=8, d_inner=30, headdim=5, ngroups=1)),  # heads of 8 (H·P ≠ D), Din ≠ expand·D
]


def _case_id(spec, extra):
    return spec.name + "".join(f"-{k}={v}" for k, v in extra.items())


def _cases():
    registered = mixers()
    cases = [pytest.param(letter, {}, id=_case_id(spec, {})) for letter, spec in registered.items()]
    return cases + [pytest.param(letter, extra, id=_case_id(registered[letter], extra))
                    for letter, extra in EXTRA_OPTIONS if letter in registered]


def build(letter, extra, seed):
    """A mixer of d_model D with its spec's test_options (and `extra`); -> (layer, its options)."""
    spec = mixer_spec(letter)
    options = {**spec.options, **spec.test_options, **extra}
    return spec.build(D, np.random.default_rng(seed), options), options


def t64(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def run_layer(layer, x, dy):
    layer.zero_grad()
    y = layer.forward(x)
    dx = layer.backward(dy)
    return y, dx, {n: p.grad.copy() for n, p in layer.named_params()}


def torch_run(fn, params, x, dy, *args):
    """Run a torch reference in float64 with autograd: (y, dx, {param: grad})."""
    p = {n: t64(w) for n, w in params.items()}
    xt = t64(x)
    y = fn(p, xt, *args)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), {n: t.grad.numpy() for n, t in p.items()}


def params_of(layer):
    return {n: p.data for n, p in layer.named_params()}


def compare(ours, ref, tol):
    (y, dx, g), (ty, tdx, tg) = ours, ref
    assert rel_err(y, ty) < tol
    assert rel_err(dx, tdx) < tol
    assert set(g) == set(tg)
    for name in tg:
        assert rel_err(g[name], tg[name]) < tol, name


@pytest.mark.parametrize("letter, extra", _cases())
def test_mixer_matches_torch(npb, cb, letter, extra):
    """Forward, input gradient and every parameter gradient of each registered mixer vs its torch reference."""
    layer, options = build(letter, extra, seed=0)
    ref = torch_ref.mixer(mixer_spec(letter).name)
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((2, B, T, D))
    expected = torch_run(ref.forward, params_of(layer), x, dy, options)
    compare(run_layer(layer.to(npb).astype(np.float64), x, dy), expected, 1e-9)
    layer.astype(np.float32).to(cb)
    compare(run_layer(layer, x.astype(np.float32), dy.astype(np.float32)), expected, 1e-4)


@pytest.mark.parametrize("letter, extra", _cases())
def test_torch_reference_step_matches_its_forward(letter, extra):
    """Each torch reference's decode: `step` from a fresh init_state, one position at a time, equals
    its parallel `forward` (float64), so the peers' decoding is cross-checked too."""
    layer, options = build(letter, extra, seed=2)
    if not layer.causal:
        pytest.skip("a non-causal mixer does not decode")
    ref = torch_ref.mixer(mixer_spec(letter).name)
    p = {n: torch.tensor(np.asarray(w, dtype=np.float64)) for n, w in params_of(layer).items()}
    x = torch.tensor(np.random.default_rng(3).standard_normal((B, T, D)))
    with torch.inference_mode():
        full = ref.forward(p, x, options).numpy()
        state = ref.init_state(p, options, B, T)
        steps = np.stack([ref.step(p, x[:, t], state, options, t).numpy() for t in range(T)], 1)
    assert rel_err(steps, full) < 1e-10


def test_missing_torch_reference_is_a_clear_error():
    with pytest.raises(ModuleNotFoundError, match=r"tests/torch_ref/no_such_mixer\.py"):
        torch_ref.mixer("no_such_mixer")


def test_whole_mnist_model_matches_torch(cb):
    """Logits, loss and every parameter gradient of the full model (C, float32) vs torch float64."""
    from hybridref.models.mnist_hybrid import MnistHybrid, patchify
    model = MnistHybrid(pattern="MAMA", seed=4).to(cb)
    rng = np.random.default_rng(5)
    images, labels = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), rng.integers(0, 10, 6)
    model.zero_grad()
    logits = model.forward(images)
    loss, probs = cb.cross_entropy_forward(logits, labels)
    model.backward(cb.cross_entropy_backward(probs, labels))
    p = {n: t64(w) for n, w in params_of(model).items()}
    tl = mnist_hybrid(p, torch.tensor(patchify(images, 7), dtype=torch.float64), model.config)
    tloss = torch.nn.functional.cross_entropy(tl, torch.tensor(labels))
    tloss.backward()
    assert rel_err(logits, tl.detach().numpy()) < 1e-4 and abs(loss - tloss.item()) < 1e-5
    for name, prm in model.named_params():
        assert rel_err(prm.grad, p[name].grad.numpy()) < 1e-4, name


def test_adamw_matches_torch(cb):
    """Five steps with clipping and decoupled weight decay, as torch.optim.AdamW + clip_grad_norm_."""
    from hybridref.layers.module import Param
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal((7, 13)).astype(np.float32)
    grads = [rng.standard_normal((7, 13)).astype(np.float32) * 3 for _ in range(5)]
    p = Param(w0.copy())
    opt = AdamW([p], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, clip_norm=1.0)
    tw = torch.tensor(w0.astype(np.float64), requires_grad=True)
    topt = torch.optim.AdamW([tw], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    for g in grads:
        p.grad[...] = g
        opt.step(cb)
        tw.grad = torch.tensor(g.astype(np.float64))
        torch.nn.utils.clip_grad_norm_([tw], 1.0)
        topt.step()
    # float32 state vs float64: ~1e-7 relative per step on O(1) weights
    assert rel_err(p.data, tw.detach().numpy()) < 1e-6
