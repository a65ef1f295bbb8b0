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
F = torch.nn.functional


def t64(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def run_layer(layer, x, dy):
    layer.zero_grad()
    y = layer.forward(x)
    dx = layer.backward(dy)
    return y, dx, {n: p.grad.copy() for n, p in layer.named_params()}


def torch_attention(x, W, dy, n_heads, window=None):
    p = {n: t64(w) for n, w in W.items()}
    xt = t64(x)
    B, T, D = x.shape
    P = D // n_heads
    q, k, v = (xt @ p["qkv.weight"].T).split(D, dim=-1)
    q, k, v = (t.reshape(B, T, n_heads, P).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / P ** 0.5
    i = torch.arange(T)
    allowed = (i[None, :] <= i[:, None]) & ((i[:, None] - i[None, :] <= window) if window is not None else True)
    o = torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1) @ v
    y = o.transpose(1, 2).reshape(B, T, D) @ p["out.weight"].T
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), {n: t.grad.numpy() for n, t in p.items()}


def torch_mamba(layer, x, dy):
    p = {n: t64(w.data) for n, w in layer.named_params()}
    xt = t64(x)
    din, N, R = layer.d_inner, layer.d_state, layer.dt_rank
    T = x.shape[1]
    xz = xt @ p["in_proj.weight"].T
    xs, z = xz[..., :din], xz[..., din:]
    conv = F.conv1d(xs.transpose(1, 2), p["conv_weight"][:, None, :], p["conv_bias"],
                    padding=p["conv_weight"].shape[1] - 1, groups=din)[..., :T]
    u = F.silu(conv.transpose(1, 2))
    dbc = u @ p["x_proj.weight"].T
    dt, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
    delta = F.softplus(dt @ p["dt_proj.weight"].T + p["dt_proj.bias"])
    A = -torch.exp(p["A_log"])
    h = torch.zeros(x.shape[0], din, N, dtype=torch.float64)
    ys = []
    for t in range(T):  # selective_scan_ref: h = exp(ΔA) h + Δ B x, y = C·h + D x
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * Bm[:, t, None, :] * u[:, t, :, None]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + p["D"] * u[:, t])
    y = (torch.stack(ys, 1) * F.silu(z)) @ p["out_proj.weight"].T
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), {n: t.grad.numpy() for n, t in p.items()}


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
    W = {n: p.data for n, p in layer.named_params()}
    ref = torch_attention(x, W, dy, H, window)
    compare(run_layer(layer.to(npb).astype(np.float64), x, dy), ref, 1e-9)
    layer.astype(np.float32).to(cb)
    compare(run_layer(layer, x.astype(np.float32), dy.astype(np.float32)), ref, 1e-4)


def test_mamba_matches_torch(npb, cb):
    rng = np.random.default_rng(1)
    B, T, D = 2, 23, 20
    x, dy = rng.standard_normal((2, B, T, D))
    layer = Mamba(D, rng)
    layer.out_proj.weight.data *= 10  # make the output O(1) so errors are measured at a meaningful scale
    ref = torch_mamba(layer, x, dy)
    compare(run_layer(layer.to(npb).astype(np.float64), x, dy), ref, 1e-9)
    layer.astype(np.float32).to(cb)
    compare(run_layer(layer, x.astype(np.float32), dy.astype(np.float32)), ref, 1e-4)


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
