"""Wrapper of csrc/linear_attention.c (decayed linear attention: Mamba-2/SSD, RetNet, GLA).

The kernel is chunked; mode "parallel" runs it with one chunk of length T and "recurrent" with chunks
of one position (the recurrence itself), so the three forms of the NumPy oracle are three chunk lengths
of one kernel here.
"""
import numpy as np

from . import checks
from .checks import empty_f32 as empty

def _check(op, q, k, v, g, h0):
    """Validate the inputs against q (B,T,Hq,K) and v (B,T,H,V); return (B, T, Hq, H, K, V, Kg)."""
    checks.check_array(op, "q", q, ndim=4)
    B, T, Hq, K = q.shape
    checks.check_array(op, "k", k, shape=(B, T, Hq, K))
    checks.check_array(op, "v", v, shape=(B, T, None, None))
    H, V = v.shape[2:]
    for name, n in (("heads Hq (q.shape[2])", Hq), ("key size K (q.shape[3])", K), ("value size V (v.shape[3])", V)):
        checks.check_positive(op, name, n)
    if H % Hq:
        raise ValueError(f"{op}: the value heads H = {H} (v.shape[2]) must be a multiple of the query/key heads "
                         f"Hq = {Hq} (q.shape[2])")
    checks.check_array(op, "g", g, shape=(B, T, H, None))
    Kg = g.shape[3]
    if Kg not in (1, K):
        raise ValueError(f"{op}: g must have shape (B, T, H, 1) or (B, T, H, K) = {(B, T, H, K)}, got {g.shape}")
    # the kernel bounds every decay factor by 1 only for g <= 0 (and -inf would make 0 * inf)
    if not ((g <= 0) & (g > -np.inf)).all():
        raise ValueError(f"{op}: g must hold finite log decays <= 0, got values in [{g.min()}, {g.max()}]")
    if h0 is not None:
        checks.check_array(op, "h0", h0, shape=(B, H, K, V))
    checks.check_c_int_sizes(op, **{"B*T*H*max(K,V)": B * T * H * max(K, V), "B*H*K*V": B * H * K * V})
    return B, T, Hq, H, K, V, Kg


def linear_attention_forward(be, q, k, v, g, scale=1.0, h0=None, chunk=64, mode="chunk"):
    op = "linear_attention_forward"
    scale, chunk, mode = checks.check_scalars(op, scale=scale, chunk=chunk, mode=mode)
    checks.check_c_floats(op, scale=scale)
    B, T, Hq, H, K, V, Kg = _check(op, q, k, v, g, h0)
    chunk = {"chunk": chunk, "parallel": max(T, 1), "recurrent": 1}[mode]
    o, h_last = empty((B, T, H, V)), empty((B, H, K, V))
    f = be.f32
    status = be.lib.hr_linear_attention_forward(f(q), f(k), f(v), f(g), be.f32_or_null(h0), f(o), f(h_last),
                                                B, T, Hq, H, K, V, Kg, scale, chunk)
    be.raise_status(op, status)
    return o, h_last


def linear_attention_backward(be, do, q, k, v, g, scale=1.0, h0=None, dh_last=None, chunk=64):
    op = "linear_attention_backward"
    scale, chunk = checks.check_scalars(op, scale=scale, chunk=chunk)
    checks.check_c_floats(op, scale=scale)
    B, T, Hq, H, K, V, Kg = _check(op, q, k, v, g, h0)
    checks.check_array(op, "do", do, shape=(B, T, H, V))
    if dh_last is not None:
        checks.check_array(op, "dh_last", dh_last, shape=(B, H, K, V))
    dq, dk, dv, dg = empty(q.shape), empty(k.shape), empty(v.shape), empty(g.shape)
    dh0 = empty((B, H, K, V)) if h0 is not None else None
    f, fn = be.f32, be.f32_or_null
    status = be.lib.hr_linear_attention_backward(f(do), f(q), f(k), f(v), f(g), fn(h0), fn(dh_last), f(dq), f(dk),
                                                 f(dv), f(dg), fn(dh0), B, T, Hq, H, K, V, Kg, float(scale), chunk)
    be.raise_status(op, status)
    return dq, dk, dv, dg, dh0
