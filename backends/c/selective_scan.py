"""Wrapper of csrc/selective_scan.c (the Mamba S6 selective scan)."""
from . import checks
from .checks import empty_f32 as empty


def _check(op, x, delta, A, Bm, Cm, D, h0):
    """Validate the scan inputs against x (B,T,Din) and A (Din,N); return (B, T, Din, N)."""
    checks.check_array(op, "x", x, ndim=3)
    B, T, Din = x.shape
    checks.check_array(op, "delta", delta, shape=(B, T, Din))
    checks.check_array(op, "A", A, shape=(Din, None))
    N = A.shape[1]
    checks.check_positive(op, "state size N (A.shape[1])", N)
    checks.check_array(op, "Bm", Bm, shape=(B, T, N))
    checks.check_array(op, "Cm", Cm, shape=(B, T, N))
    checks.check_array(op, "D", D, shape=(Din,))
    if h0 is not None:
        checks.check_array(op, "h0", h0, shape=(B, Din, N))
    checks.check_c_int_sizes(op, B=B, T=T, Din=Din, N=N)
    return B, T, Din, N


def selective_scan_forward(be, x, delta, A, Bm, Cm, D, h0=None):
    op = "selective_scan_forward"
    B, T, Din, N = _check(op, x, delta, A, Bm, Cm, D, h0)
    y, h_last = empty((B, T, Din)), empty((B, Din, N))
    f = be.f32
    status = be.lib.hr_selective_scan_forward(f(x), f(delta), f(A), f(Bm), f(Cm), f(D), be.f32_or_null(h0),
                                              f(y), f(h_last), B, T, Din, N)
    be.raise_status(op, status)
    return y, h_last


def selective_scan_backward(be, dy, x, delta, A, Bm, Cm, D, h0=None, dh_last=None):
    op = "selective_scan_backward"
    B, T, Din, N = _check(op, x, delta, A, Bm, Cm, D, h0)
    checks.check_array(op, "dy", dy, shape=(B, T, Din))
    if dh_last is not None:
        checks.check_array(op, "dh_last", dh_last, shape=(B, Din, N))
    dx, ddelta, dA = empty((B, T, Din)), empty((B, T, Din)), empty((Din, N))
    dBm, dCm, dD = empty((B, T, N)), empty((B, T, N)), empty((Din,))
    dh0 = empty((B, Din, N)) if h0 is not None else None
    f, fn = be.f32, be.f32_or_null
    status = be.lib.hr_selective_scan_backward(f(dy), f(x), f(delta), f(A), f(Bm), f(Cm), f(D), fn(h0), fn(dh_last),
                                               f(dx), f(ddelta), f(dA), f(dBm), f(dCm), f(dD), fn(dh0),
                                               B, T, Din, N)
    be.raise_status(op, status)
    return dx, ddelta, dA, dBm, dCm, dD, dh0
