"""RWKV-7 channel mixing in PyTorch (RWKV-LM's RWKV_CMix_x070, its "slow pytorch version"):

    k   = x + (x_{t−1} − x) ⊙ x_k         x_{−1} = 0 (RWKV's time_shift)
    out = relu(k W_keyᵀ)² W_valueᵀ

hybridref's names: mix (1,C) = x_k, key.weight, value.weight. opts: none used (hidden_ratio sizes key).
"""
import torch
import torch.nn.functional as F


def _mix(p, x, prev):
    k = x + (prev - x) * p["mix"][0]
    return torch.relu(k @ p["key.weight"].T) ** 2 @ p["value.weight"].T


def forward(p, x, opts):
    return _mix(p, x, F.pad(x, (0, 0, 1, -1)))


def init_state(p, opts, batch, max_len=None, fill=None):
    """{"shift": the previous token (B,C)}."""
    shape, dtype = (batch, p["mix"].shape[1]), p["mix"].dtype
    return {"shift": torch.randn(shape, generator=fill, dtype=dtype) if fill is not None else torch.zeros(shape, dtype=dtype)}


def step(p, x_t, state, opts, pos):
    out = _mix(p, x_t, state["shift"])
    state["shift"].copy_(x_t)
    return out
