"""Wrapper of csrc/attention.c (causal multi-head softmax attention, FlashAttention-2 tiling)."""
import numbers

from . import checks
from .checks import empty_f32 as empty

_INT_MAX = 2**31 - 1


def _check_qkv(op, q, k, v, window):
    """Validate q (B,T,H,P), k, v (B,T,Hk,P) and window; return (B, T, H, Hk, P, C window)."""
    checks.check_array(op, "q", q, ndim=4)
    checks.check_array(op, "k", k, ndim=4)
    B, T, H, P = q.shape
    checks.check_array(op, "k", k, shape=(B, T, None, P))
    checks.check_array(op, "v", v, shape=k.shape)
    Hk = k.shape[2]
    for name, size in (("batch B", B), ("sequence length T", T), ("heads H", H), ("kv heads Hk", Hk),
                       ("head dim P", P)):
        checks.check_positive(op, name, size)
        if size > _INT_MAX:
            raise ValueError(f"{op}: {name} = {size} exceeds the C kernel's int range")
    if H % Hk:
        raise ValueError(f"{op}: query heads H={H} (q {q.shape}) must be a multiple of kv heads Hk={Hk} "
                         f"(k {k.shape})")
    if window is None:
        return B, T, H, Hk, P, -1
    if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 0:
        raise ValueError(f"{op}: window must be None or an int >= 0, got {window!r}")
    return B, T, H, Hk, P, int(min(window, T))  # a window >= T hides nothing


def attention_forward(be, q, k, v, window=None):
    B, T, H, Hk, P, w = _check_qkv("attention_forward", q, k, v, window)
    o, lse = empty(q.shape), empty((B, H, T))
    status = be.lib.hr_attention_forward(be.f32(q), be.f32(k), be.f32(v), be.f32(o), be.f32(lse),
                                         B, T, H, Hk, P, w)
    be.raise_status("attention_forward", status)
    return o, lse


def attention_backward(be, do, q, k, v, o, lse, window=None):
    op = "attention_backward"
    B, T, H, Hk, P, w = _check_qkv(op, q, k, v, window)
    checks.check_array(op, "do", do, shape=q.shape)
    checks.check_array(op, "o", o, shape=q.shape)
    checks.check_array(op, "lse", lse, shape=(B, H, T))
    dq, dk, dv = empty(q.shape), empty(k.shape), empty(k.shape)
    status = be.lib.hr_attention_backward(be.f32(do), be.f32(q), be.f32(k), be.f32(v), be.f32(o), be.f32(lse),
                                          be.f32(dq), be.f32(dk), be.f32(dv), B, T, H, Hk, P, w)
    be.raise_status(op, status)
    return dq, dk, dv
