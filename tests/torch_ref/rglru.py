"""Griffin's recurrent block in PyTorch (De et al. 2024, section 2.4 and fig. 2), from the paper's
equations, one position at a time:

    y   = GeLU_tanh(W_y u + b_y)                           branch 1, width C
    x   = conv1d_4(W_x u + b_x)                            x_t = b + Σ_k w[:, W−1−k] ⊙ x_in_{t−k}
    r_t = σ(W_a x_t + b_a),  i_t = σ(W_x x_t + b_x)        per head: block-diagonal (H blocks of P)
    a_t = σ(−Λ)^(c r_t),  c = 8                            (eq. 3: a = σ(Λ')^(c r) with Λ' = −Λ)
    h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i_t ⊙ x_t)         the factor is 1 at position 0
    out = W_out (y ⊙ h) + b_out

Decoding keeps the last W−1 conv inputs (B, W−1, C) and h (B, C); `step` at position pos uses the
factor 1 when pos == 0.

opts: n_heads (the gates' blocks); lru_width and conv_width are read off the weights' shapes.
"""
import torch
import torch.nn.functional as F


def _block_diagonal(x, w, b):
    """x (..., H·P) -> per head h: x_h w_hᵀ + b_h, w (H,P,P), b (H,P)."""
    H, P, _ = w.shape
    xh = x.reshape(*x.shape[:-1], H, P)
    return (torch.einsum("...hi,hji->...hj", xh, w) + b).reshape(x.shape)


def _rglru_step(p, x_t, h, pos):
    """One RG-LRU position: x_t (B,C) conv output, h (B,C) previous state -> the new state."""
    r = torch.sigmoid(_block_diagonal(x_t, p["a_gate.weight"], p["a_gate.bias"]))
    i = torch.sigmoid(_block_diagonal(x_t, p["input_gate.weight"], p["input_gate.bias"]))
    a = torch.sigmoid(-p["a_param"]) ** (8.0 * r)
    factor = torch.ones_like(a) if pos == 0 else torch.sqrt(1.0 - a * a)
    return a * h + factor * (i * x_t)


def _branches(p, u):
    y = F.gelu(u @ p["linear_y.weight"].T + p["linear_y.bias"], approximate="tanh")
    return y, u @ p["linear_x.weight"].T + p["linear_x.bias"]


def _conv(p, window):
    """window (B,W,C): the last W conv inputs, oldest first -> (B,C)."""
    return (window * p["conv_weight"].T).sum(1) + p["conv_bias"]


def forward(p, u, opts):
    B, T, _ = u.shape
    C, W = p["conv_weight"].shape
    y, x_in = _branches(p, u)
    padded = torch.cat([torch.zeros(B, W - 1, C, dtype=u.dtype), x_in], dim=1)
    h = torch.zeros(B, C, dtype=u.dtype)
    hs = []
    for t in range(T):
        h = _rglru_step(p, _conv(p, padded[:, t:t + W]), h, t)
        hs.append(h)
    return (y * torch.stack(hs, 1)) @ p["linear_out.weight"].T + p["linear_out.bias"]


def init_state(p, opts, batch, max_len=None, fill=None):
    """{"conv": (B, W−1, C), "h": (B, C)}; max_len is not needed (constant-size state)."""
    C, W = p["conv_weight"].shape
    dtype = p["conv_weight"].dtype
    shapes = {"conv": (batch, W - 1, C), "h": (batch, C)}
    if fill is not None:
        return {k: torch.randn(s, generator=fill, dtype=dtype) for k, s in shapes.items()}
    return {k: torch.zeros(s, dtype=dtype) for k, s in shapes.items()}


def step(p, u_t, state, opts, pos):
    y, x_in = _branches(p, u_t)
    window = torch.cat([state["conv"], x_in[:, None]], dim=1)  # (B,W,C)
    state["conv"].copy_(window[:, 1:])
    h = _rglru_step(p, _conv(p, window), state["h"], pos)
    state["h"].copy_(h)
    return (y * h) @ p["linear_out.weight"].T + p["linear_out.bias"]
