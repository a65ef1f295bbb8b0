"""Wrapper of csrc/rglru.c (the RG-LRU gates: decays and normalised input of the linear recurrence)."""
from . import checks
from .checks import empty_f32 as empty


def _check(op, x, gx, ga, a_param, time_offset):
    """Validate x, gx, ga (B,T,C), a_param (C,) and the offset; return (B, T, C, time_offset)."""
    checks.check_array(op, "x", x, ndim=3)
    B, T, C = x.shape  # any may be 0 (no rows: da_param = 0 from the empty sum)
    checks.check_array(op, "gx", gx, shape=(B, T, C))
    checks.check_array(op, "ga", ga, shape=(B, T, C))
    checks.check_array(op, "a_param", a_param, shape=(C,))
    checks.check_c_int_sizes(op, B=B, T=T, C=C)
    # time_offset + t stays below 2**62 + 2**31, within the kernel's C long
    time_offset, = checks.check_scalars(op, time_offset=time_offset)
    return B, T, C, time_offset


def rglru_gate_forward(be, x, gx, ga, a_param, time_offset=0):
    op = "rglru_gate_forward"
    B, T, C, time_offset = _check(op, x, gx, ga, a_param, time_offset)
    a, xn = empty((B, T, C)), empty((B, T, C))
    f = be.f32
    be.raise_status(op, be.lib.hr_rglru_gate_forward(f(x), f(gx), f(ga), f(a_param), f(a), f(xn), B, T, C,
                                                     time_offset))
    return a, xn


def rglru_gate_backward(be, da, dxn, x, gx, ga, a_param, time_offset=0):
    op = "rglru_gate_backward"
    B, T, C, time_offset = _check(op, x, gx, ga, a_param, time_offset)
    checks.check_array(op, "da", da, shape=(B, T, C))
    checks.check_array(op, "dxn", dxn, shape=(B, T, C))
    dx, dgx, dga, da_param = empty((B, T, C)), empty((B, T, C)), empty((B, T, C)), empty((C,))
    f = be.f32
    be.raise_status(op, be.lib.hr_rglru_gate_backward(f(da), f(dxn), f(x), f(gx), f(ga), f(a_param), f(dx), f(dgx),
                                                      f(dga), f(da_param), B, T, C, time_offset))
    return dx, dgx, dga, da_param
