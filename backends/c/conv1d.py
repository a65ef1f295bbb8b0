"""Wrapper of csrc/conv1d.c (depthwise causal conv1d with an optional prefix of earlier tokens)."""
from . import checks
from .checks import empty_f32 as empty


def _check(op, x, w, prefix):
    """Validate x (B,T,C), w (C,W), prefix (B,W-1,C) or None; return (B, T, C, W)."""
    checks.check_array(op, "x", x, ndim=3)
    B, T, C = x.shape
    checks.check_array(op, "w", w, shape=(C, None))
    W = w.shape[1]
    checks.check_positive(op, "conv width W (w.shape[1])", W)
    if prefix is not None:
        checks.check_array(op, "prefix", prefix, shape=(B, W - 1, C))
    checks.check_c_int_sizes(op, B=B, T=T, C=C, W=W)
    return B, T, C, W


def causal_conv1d_forward(be, x, w, bias, prefix=None):
    op = "causal_conv1d_forward"
    B, T, C, W = _check(op, x, w, prefix)
    if bias is not None:
        checks.check_array(op, "bias", bias, shape=(C,))
    y = empty((B, T, C))
    status = be.lib.hr_causal_conv1d_forward(be.f32(x), be.f32(w), be.f32_or_null(bias), be.f32_or_null(prefix),
                                             be.f32(y), B, T, C, W)
    be.raise_status(op, status)
    return y


def causal_conv1d_backward(be, dy, x, w, has_bias, prefix=None):
    op = "causal_conv1d_backward"
    B, T, C, W = _check(op, x, w, prefix)
    checks.check_array(op, "dy", dy, shape=(B, T, C))
    has_bias, = checks.check_scalars(op, has_bias=has_bias)
    dx, dw = empty((B, T, C)), empty((C, W))
    dbias = empty((C,)) if has_bias else None
    dprefix = empty((B, W - 1, C)) if prefix is not None else None
    status = be.lib.hr_causal_conv1d_backward(be.f32(dy), be.f32(x), be.f32(w), be.f32_or_null(prefix), be.f32(dx),
                                              be.f32(dw), be.f32_or_null(dbias), be.f32_or_null(dprefix), B, T, C, W)
    be.raise_status(op, status)
    return dx, dw, dbias, dprefix
