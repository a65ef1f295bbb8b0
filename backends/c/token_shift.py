"""Wrapper of csrc/token_shift.c (RWKV's token shift: learned mixes of each token with the one before)."""
from . import checks
from .checks import empty_f32 as empty


def _check(op, x, mu, prefix):
    """Validate x (B,T,C), mu (M,C), prefix (B,1,C) or None; return (B, T, C, M)."""
    checks.check_array(op, "x", x, ndim=3)
    B, T, C = x.shape
    checks.check_array(op, "mu", mu, shape=(None, C))
    M = mu.shape[0]
    checks.check_positive(op, "mixes M (mu.shape[0])", M)
    if prefix is not None:
        checks.check_array(op, "prefix", prefix, shape=(B, 1, C))
    checks.check_c_int_sizes(op, B=B, T=T, C=C, M=M)
    return B, T, C, M


def token_shift_forward(be, x, mu, prefix=None):
    op = "token_shift_forward"
    B, T, C, M = _check(op, x, mu, prefix)
    y = empty((B, T, M, C))
    be.lib.hr_token_shift_forward(be.f32(x), be.f32(mu), be.f32_or_null(prefix), be.f32(y), B, T, C, M)
    return y


def token_shift_backward(be, dy, x, mu, prefix=None):
    op = "token_shift_backward"
    B, T, C, M = _check(op, x, mu, prefix)
    checks.check_array(op, "dy", dy, shape=(B, T, M, C))
    dx, dmu = empty((B, T, C)), empty((M, C))
    dprefix = empty((B, 1, C)) if prefix is not None else None
    be.lib.hr_token_shift_backward(be.f32(dy), be.f32(x), be.f32(mu), be.f32_or_null(prefix), be.f32(dx),
                                   be.f32(dmu), be.f32_or_null(dprefix), B, T, C, M)
    return dx, dmu, dprefix
