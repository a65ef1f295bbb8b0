"""The MNIST hybrid written independently in PyTorch, from the published formulas.

It reads hybridref's parameter dict (same names), so one set of weights runs on both.
Used as an autograd oracle by the tests and as the PyTorch peer by benchmarks/.
The selective scan is a Python loop over time, as in mamba's selective_scan_ref.
"""
import math

import torch
import torch.nn.functional as F


def rmsnorm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def attention(p, x, n_heads, window=None):
    """Causal softmax attention with a fused q/k/v projection; window W keeps keys i−W ≤ j ≤ i."""
    B, T, D = x.shape
    P = D // n_heads
    q, k, v = (x @ p["qkv.weight"].T).split(D, dim=-1)
    q, k, v = (t.reshape(B, T, n_heads, P).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) / math.sqrt(P)
    i = torch.arange(T)
    allowed = i[None, :] <= i[:, None]
    if window is not None:
        allowed = allowed & (i[:, None] - i[None, :] <= window)
    o = torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1) @ v
    return o.transpose(1, 2).reshape(B, T, D) @ p["out.weight"].T


def mamba(p, x, d_state=16):
    """Mamba S6 mixer (mamba_simple.py with selective_scan_ref)."""
    B, T, _ = x.shape
    din = p["in_proj.weight"].shape[0] // 2
    R = p["dt_proj.weight"].shape[1]
    xz = x @ p["in_proj.weight"].T
    xs, z = xz[..., :din], xz[..., din:]
    width = p["conv_weight"].shape[1]
    conv = F.conv1d(xs.transpose(1, 2), p["conv_weight"][:, None, :], p["conv_bias"],
                    padding=width - 1, groups=din)[..., :T]
    u = F.silu(conv.transpose(1, 2))
    dbc = u @ p["x_proj.weight"].T
    dt, Bm, Cm = dbc[..., :R], dbc[..., R:R + d_state], dbc[..., R + d_state:]
    delta = F.softplus(dt @ p["dt_proj.weight"].T + p["dt_proj.bias"])
    A = -torch.exp(p["A_log"])
    h = torch.zeros(B, din, d_state, dtype=x.dtype)
    ys = []
    for t in range(T):  # h = exp(ΔA) h + Δ B x,  y = C·h + D x
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * Bm[:, t, None, :] * u[:, t, :, None]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + p["D"] * u[:, t])
    return (torch.stack(ys, 1) * F.silu(z)) @ p["out_proj.weight"].T


def sub(p, prefix):
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


def mnist_hybrid(p, tokens, config):
    """tokens (B,T,p²) (already patchified and normalised) -> logits (B,10); RMSNorm blocks."""
    x = tokens @ p["embed.weight"].T + p["embed.bias"] + p["pos"]
    for i, kind in enumerate(config["pattern"]):
        b = sub(p, f"blocks.{i}.")
        h = rmsnorm(x, b["norm1.weight"])
        if kind == "A":
            x = x + attention(sub(b, "mixer."), h, config["n_heads"])
        else:
            x = x + mamba(sub(b, "mixer."), h)
        h = rmsnorm(x, b["norm2.weight"])
        x = x + F.gelu(h @ b["mlp.fc.weight"].T + b["mlp.fc.bias"], approximate="tanh") @ b["mlp.proj.weight"].T \
            + b["mlp.proj.bias"]
    x = rmsnorm(x, p["norm.weight"]).mean(1)
    return x @ p["head.weight"].T + p["head.bias"]
