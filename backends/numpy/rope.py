"""Rotary position embedding (Su et al. 2021, RoFormer), GPT-NeoX half-split layout: the readable oracle."""
import numpy as np

from ..validate import check_scalars


def rope_angles(T, P, offset=0, base=10000.0):
    """cos, sin of p θ_i for positions p = offset..offset+T−1 and θ_i = base^(−2i/P): (T, P/2) float64."""
    theta = base ** (-np.arange(0, P, 2, dtype=np.float64) / P)
    # positions as the C kernel forms them, (double)(offset + t): exact integers rounded once
    angle = np.arange(offset, offset + T, dtype=np.int64).astype(np.float64)[:, None] * theta[None, :]
    return np.cos(angle), np.sin(angle)


def _rotate(op, x, offset, base, sign):
    check_scalars(op, offset=offset, base=base)
    B, T, H, P = x.shape
    if P % 2:
        raise ValueError(f"{op}: head dim P must be even, got x of shape {x.shape}")
    cos, sin = rope_angles(T, P, offset, base)
    cos, sin = cos[None, :, None, :], sign * sin[None, :, None, :]
    x1, x2 = x[..., :P // 2], x[..., P // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def rope_forward(x, offset=0, base=10000.0):
    """y₁ = x₁ cos(pθ) − x₂ sin(pθ), y₂ = x₂ cos(pθ) + x₁ sin(pθ), (x₁, x₂) the halves of the head dim,
    p = offset + t. x (B,T,H,P), P even -> y (B,T,H,P)."""
    return _rotate("rope_forward", x, offset, base, 1.0)


def rope_backward(dy, offset=0, base=10000.0):
    """The rotation is orthogonal, so dx is dy rotated by −pθ. dy (B,T,H,P) -> dx (B,T,H,P)."""
    return _rotate("rope_backward", dy, offset, base, -1.0)
