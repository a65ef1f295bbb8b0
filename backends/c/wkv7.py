"""Wrapper of csrc/wkv7.c (WKV-7, RWKV-7's generalized delta rule)."""
from . import checks
from .checks import empty_f32 as empty


def _check(op, r, w, k, v, a, b, h0):
    """Validate r, w, k, a, b (B,T,H,K), v (B,T,H,V), h0 (B,H,K,V) or None; return (B, T, H, K, V)."""
    checks.check_array(op, "r", r, ndim=4)
    B, T, H, K = r.shape
    for name, x in (("w", w), ("k", k), ("a", a), ("b", b)):
        checks.check_array(op, name, x, shape=(B, T, H, K))
    checks.check_array(op, "v", v, shape=(B, T, H, None))
    V = v.shape[3]
    for name, n in (("heads H (r.shape[2])", H), ("key size K (r.shape[3])", K), ("value size V (v.shape[3])", V)):
        checks.check_positive(op, name, n)
    if h0 is not None:
        checks.check_array(op, "h0", h0, shape=(B, H, K, V))
    checks.check_c_int_sizes(op, **{"B*T*H*max(K,V)": B * T * H * max(K, V), "B*H*K*V": B * H * K * V})
    return B, T, H, K, V


def wkv7_forward(be, r, w, k, v, a, b, h0=None):
    op = "wkv7_forward"
    B, T, H, K, V = _check(op, r, w, k, v, a, b, h0)
    y, h_last = empty((B, T, H, V)), empty((B, H, K, V))
    f = be.f32
    status = be.lib.hr_wkv7_forward(f(r), f(w), f(k), f(v), f(a), f(b), be.f32_or_null(h0), f(y), f(h_last),
                                    B, T, H, K, V)
    be.raise_status(op, status)
    return y, h_last


def wkv7_backward(be, dy, r, w, k, v, a, b, h0=None, dh_last=None):
    op = "wkv7_backward"
    B, T, H, K, V = _check(op, r, w, k, v, a, b, h0)
    checks.check_array(op, "dy", dy, shape=(B, T, H, V))
    if dh_last is not None:
        checks.check_array(op, "dh_last", dh_last, shape=(B, H, K, V))
    dr, dw, dk, da, db = (empty((B, T, H, K)) for _ in range(5))
    dv = empty((B, T, H, V))
    dh0 = empty((B, H, K, V)) if h0 is not None else None
    f, fn = be.f32, be.f32_or_null
    status = be.lib.hr_wkv7_backward(f(dy), f(r), f(w), f(k), f(v), f(a), f(b), fn(h0), fn(dh_last), f(dr), f(dw),
                                     f(dk), f(dv), f(da), f(db), fn(dh0), B, T, H, K, V)
    be.raise_status(op, status)
    return dr, dw, dk, dv, da, db, dh0
