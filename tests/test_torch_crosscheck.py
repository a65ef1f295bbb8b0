"""Cross-checks against PyTorch autograd (torch==2.13.0 CPU, a test-only oracle).

Each layer is rebuilt in torch from the published formulas with the same weights;
outputs and every gradient must agree. float64 NumPy vs float64 torch: 1e-9 (two
exact-arithmetic implementations, differing only in summation order).
float32 C vs float64 torch: 1e-4 (float32 rounding through ~10 ops and length-T
scans/sums, ~1e-6 per op, with margin for small-gradient cancellation).
"""
import numpy as np
import pytest

from hybridref.layers.attention import CausalSelfAttention
from hybridref.layers.mamba import Mamba
from hybridref.optim import AdamW
from helpers import rel_err

torch = pytest.importorskip("torch")
import torch_reference as ref  # noqa: E402  (needs torch)


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
    for name in tg:
        assert rel_err(g[name], tg[name]) < tol, name


@pytest.mark.parametrize("window", [None, 5])
def test_attention_matches_torch(npb, cb, window):
    rng = np.random.default_rng(0)
    B, T, D, H = 2, 19, 24, 3
    x, dy = rng.standard_normal((2, B, T, D))
    layer = CausalSelfAttention(D, H, rng, window=window)
    expected = torch_run(ref.attention, params_of(layer), x, dy, H, window)
    compare(run_layer(layer.to(npb).astype(np.float64), x, dy), expected, 1e-9)
    layer.astype(np.float32).to(cb)
    compare(run_layer(layer, x.astype(np.float32), dy.astype(np.float32)), expected, 1e-4)


def test_mamba_matches_torch(npb, cb):
    rng = np.random.default_rng(1)
    B, T, D = 2, 23, 20
    x, dy = rng.standard_normal((2, B, T, D))
    layer = Mamba(D, rng)
    layer.out_proj.weight.data *= 10  # make the output O(1) so errors are measured at a meaningful scale
    expected = torch_run(ref.mamba, params_of(layer), x, dy)
    compare(run_layer(layer.to(npb).astype(np.float64), x, dy), expected, 1e-9)
    layer.astype(np.float32).to(cb)
    compare(run_layer(layer, x.astype(np.float32), dy.astype(np.float32)), expected, 1e-4)


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
    tl = ref.mnist_hybrid(p, torch.tensor(patchify(images, 7), dtype=torch.float64), model.config)
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
