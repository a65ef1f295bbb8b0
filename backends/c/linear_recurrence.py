"""Wrapper of csrc/linear_recurrence.c (the diagonal linear recurrence h_t = a_t ⊙ h_{t−1} + x_t)."""
from . import checks
from .checks import empty_f32 as empty


def _check(op, a, x, h0):
    """Validate a, x (B,T,C) and h0 (B,C) or None; return (B, T, C)."""
    checks.check_array(op, "x", x, ndim=3)
    B, T, C = x.shape  # any may be 0: with T = 0 the kernel writes h_last = h0 (dh0 = dh_last), or zeros
    checks.check_array(op, "a", a, shape=(B, T, C))
    checks.check_c_int_sizes(op, B=B, T=T, C=C)
    if h0 is not None:
        checks.check_array(op, "h0", h0, shape=(B, C))
    return B, T, C


def linear_recurrence_forward(be, a, x, h0=None):
    op = "linear_recurrence_forward"
    B, T, C = _check(op, a, x, h0)
    h, h_last = empty((B, T, C)), empty((B, C))
    status = be.lib.hr_linear_recurrence_forward(be.f32(a), be.f32(x), be.f32_or_null(h0), be.f32(h), be.f32(h_last),
                                                 B, T, C)
    be.raise_status(op, status)
    return h, h_last


def linear_recurrence_backward(be, dh, a, x, h0=None, dh_last=None):
    op = "linear_recurrence_backward"
    B, T, C = _check(op, a, x, h0)
    checks.check_array(op, "dh", dh, shape=(B, T, C))
    if dh_last is not None:
        checks.check_array(op, "dh_last", dh_last, shape=(B, C))
    da, dx = empty((B, T, C)), empty((B, T, C))
    dh0 = empty((B, C)) if h0 is not None else None
    fn = be.f32_or_null
    status = be.lib.hr_linear_recurrence_backward(be.f32(dh), be.f32(a), be.f32(x), fn(h0), fn(dh_last), be.f32(da),
                                                  be.f32(dx), fn(dh0), B, T, C)
    be.raise_status(op, status)
    return da, dx, dh0
