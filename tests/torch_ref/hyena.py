"""The Hyena operator in PyTorch (Poli et al. 2023), after safari's standalone_hyena.py: the long
convolutions by FFT as safari's fftconv (rfft of size 2L, product, irfft, the first L positions, plus
the bias term D·u), the implicit filter as safari's HyenaFilter (positional embedding over l_max, sine
MLP with one shared frequency, exponential modulation), the short filter a depthwise Conv1d of width 3
padded by 2 and cut to the first T outputs.

Decoding keeps the last two short-conv inputs and, per long convolution, every input so far; `step` at
position pos sums the filter's first pos + 1 taps against that history (the filter over l_max, computed
once by init_state).

opts: order, emb_dim, l_max, fast_decay_pct, slow_decay_pct, shift (num_inner_mlps and filter_order are
read off the weights).
"""
import math

import torch
import torch.nn.functional as F


def _filter(p, opts, dtype):
    """h (l_max, (N−1)·D)."""
    L, emb = opts["l_max"], opts["emb_dim"]
    bands = (emb - 1) // 2
    t = torch.linspace(0, 1, L, dtype=dtype)[:, None]
    w = 2 * math.pi * torch.linspace(0, L - 1, L, dtype=dtype)[:, None] / L
    f = torch.linspace(1e-4, bands - 1, bands, dtype=dtype)[None]
    z = torch.exp(-1j * f * w)
    s = torch.cat([t, z.real, z.imag], dim=-1)
    n_lin = len([k for k in p if k.startswith("filter_mlp.") and k.endswith(".weight")])
    for i in range(n_lin - 1):
        s = torch.sin(p["freq"] * (s @ p[f"filter_mlp.{i}.weight"].T + p[f"filter_mlp.{i}.bias"]))
    k = s @ p[f"filter_mlp.{n_lin - 1}.weight"].T
    target = 1e-2
    deltas = torch.linspace(math.log(target) / opts["slow_decay_pct"], math.log(target) / opts["fast_decay_pct"],
                            k.shape[1], dtype=dtype)[None]
    return k * (torch.exp(-t * deltas.abs()) + opts["shift"])


def _fftconv(u, k, bias):
    """u (B,D,T), k (D,T), bias (D,) -> causal conv + bias·u (safari's fftconv)."""
    T = u.shape[-1]
    n = 2 * T
    k_f = torch.fft.rfft(k, n=n) / n
    u_f = torch.fft.rfft(u, n=n)
    y = torch.fft.irfft(u_f * k_f, n=n, norm="forward")[..., :T]
    return y + u * bias[:, None]


def _short_conv(p, z):
    """z (B,T,(N+1)D) -> depthwise conv of width 3, padded 2, cut to T: (B,(N+1)D,T)."""
    T = z.shape[1]
    w = p["conv_weight"][:, None, :]  # (C, 1, 3)
    return F.conv1d(z.transpose(1, 2), w, p["conv_bias"], padding=2, groups=w.shape[0])[..., :T]


def forward(p, u, opts):
    B, T, D = u.shape
    N = opts["order"]
    z = u @ p["in_proj.weight"].T + p["in_proj.bias"]
    uc = _short_conv(p, z)
    *x, v = uc.split(D, dim=1)
    k = _filter(p, opts, u.dtype)[:T].T.reshape(N - 1, D, T)
    bias = p["filter_bias"].reshape(N - 1, D)
    for o, x_i in enumerate(reversed(x[1:])):
        v = _fftconv(v * x_i, k[o], bias[o])
    y = (v * x[0]).transpose(1, 2)
    return y @ p["out_proj.weight"].T + p["out_proj.bias"]


def init_state(p, opts, batch, max_len=None, fill=None):
    """{"conv": (B, 2, (N+1)D), "hist": [(B, 0, D)] × (N−1) growing by one row per step, "filter"}."""
    D = p["out_proj.weight"].shape[0]
    N, dtype = opts["order"], p["conv_weight"].dtype
    conv = (torch.randn((batch, 2, (N + 1) * D), generator=fill, dtype=dtype) if fill is not None
            else torch.zeros((batch, 2, (N + 1) * D), dtype=dtype))
    return {"conv": conv, "hist": [torch.zeros((batch, 0, D), dtype=dtype) for _ in range(N - 1)],
            "filter": _filter(p, opts, dtype)}


def step(p, u_t, state, opts, pos):
    D = u_t.shape[1]
    N = opts["order"]
    z = u_t @ p["in_proj.weight"].T + p["in_proj.bias"]
    window = torch.cat([state["conv"], z[:, None]], dim=1)  # (B,3,(N+1)D), oldest first
    state["conv"].copy_(window[:, 1:])
    uc = (window * p["conv_weight"].T).sum(1) + p["conv_bias"]
    *x, v = uc.split(D, dim=1)
    h, bias = state["filter"], p["filter_bias"].reshape(N - 1, D)
    for o, x_i in enumerate(reversed(x[1:])):
        w = v * x_i
        state["hist"][o] = torch.cat([state["hist"][o], w[:, None]], dim=1)
        taps = h[:pos + 1, o * D:(o + 1) * D].flip(0)  # h[pos − s] for s = 0..pos
        v = (state["hist"][o] * taps).sum(1) + bias[o] * w
    return (v * x[0]) @ p["out_proj.weight"].T + p["out_proj.bias"]
