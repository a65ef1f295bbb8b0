"""Wrapper of csrc/long_conv.c (the long causal depthwise convolution of Hyena's filters).

`method` (not part of the op contract) picks the kernel's path: "auto" (by size, the default), "direct"
(the O(T·L) sum) or "fft"; tests/test_long_conv.py and the benchmark force each.

Non-finite inputs: the direct sum keeps a nan or inf where the oracle (backends/numpy/long_conv.py)
puts it, in the outputs whose terms it enters; a transform mixes every position of a channel with
every other (and the two batch rows that share one complex transform), so the FFT path would spread
it over them all. "auto" therefore takes the direct path whenever an input holds a non-finite value
(np.isfinite over the inputs: O(B·T·C), negligible against either path); a forced "fft" does not.
"""
import numpy as np

from . import checks
from .checks import empty_f32 as empty

_METHODS = {"auto": 0, "direct": 1, "fft": 2}


def _check(op, u, h, prefix, method):
    """Validate u (B,T,C), h (L,C), prefix (B,L−1,C) or None; return (B, T, C, L, method code)."""
    checks.check_array(op, "u", u, ndim=3)
    B, T, C = u.shape  # any may be 0: y and du are then empty, dh the empty sum 0
    checks.check_array(op, "h", h, ndim=2)
    L = h.shape[0]
    if L <= 0 or h.shape[1] != C:
        raise ValueError(f"{op}: h must have shape (L, {C}) with L >= 1 (the channels of u), got {h.shape}")
    checks.check_c_int_sizes(op, B=B, T=T, C=C, L=L, **{"the FFT size 4·(L−1+T)": 4 * (L - 1 + T)})
    if prefix is not None:
        checks.check_array(op, "prefix", prefix, shape=(B, L - 1, C))
    if method not in _METHODS:
        raise ValueError(f"{op}: method must be one of {list(_METHODS)}, got {method!r}")
    return B, T, C, L, _METHODS[method]


def _path(code, *arrays):
    """The method code to run: "auto" becomes "direct" when an input is not all finite."""
    if code == _METHODS["auto"] and not all(a is None or np.isfinite(a).all() for a in arrays):
        return _METHODS["direct"]
    return code


def long_conv_forward(be, u, h, prefix=None, method="auto"):
    op = "long_conv_forward"
    B, T, C, L, code = _check(op, u, h, prefix, method)
    y = empty((B, T, C))
    status = be.lib.hr_long_conv_forward(be.f32(u), be.f32(h), be.f32_or_null(prefix), be.f32(y), B, T, C, L,
                                         _path(code, u, h, prefix))
    be.raise_status(op, status)
    return y


def long_conv_backward(be, dy, u, h, prefix=None, method="auto"):
    op = "long_conv_backward"
    B, T, C, L, code = _check(op, u, h, prefix, method)
    checks.check_array(op, "dy", dy, shape=(B, T, C))
    du, dh = empty((B, T, C)), empty((L, C))
    dprefix = empty((B, L - 1, C)) if prefix is not None else None
    fn = be.f32_or_null
    status = be.lib.hr_long_conv_backward(be.f32(dy), be.f32(u), be.f32(h), fn(prefix), be.f32(du), be.f32(dh),
                                          fn(dprefix), B, T, C, L, _path(code, dy, u, h, prefix))
    be.raise_status(op, status)
    return du, dh, dprefix
