"""Wrapper of csrc/rope.c (rotary position embedding)."""
from . import checks
from .checks import empty_f32 as empty


def _check(op, x, name, offset, base):
    checks.check_array(op, name, x, ndim=4)
    B, T, H, P = x.shape
    if P % 2:
        raise ValueError(f"{op}: head dim P must be even, got {name} of shape {x.shape}")
    checks.check_c_int_sizes(op, B=B, T=T, H=H, P=P)
    offset, base = checks.check_scalars(op, offset=offset, base=base)
    return B, T, H, P, offset, base


def rope_forward(be, x, offset=0, base=10000.0):
    B, T, H, P, offset, base = _check("rope_forward", x, "x", offset, base)
    y = empty(x.shape)
    be.raise_status("rope_forward", be.lib.hr_rope_forward(be.f32(x), be.f32(y), B, T, H, P, offset, base))
    return y


def rope_backward(be, dy, offset=0, base=10000.0):
    B, T, H, P, offset, base = _check("rope_backward", dy, "dy", offset, base)
    dx = empty(dy.shape)
    be.raise_status("rope_backward", be.lib.hr_rope_backward(be.f32(dy), be.f32(dx), B, T, H, P, offset, base))
    return dx
