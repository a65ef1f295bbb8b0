"""Wrapper of csrc/pooling.c (mean over the sequence axis)."""
from . import checks
from .checks import empty_f32 as empty


def mean_pool_forward(be, x):
    op = "mean_pool_forward"
    checks.check_array(op, "x", x, ndim=3)
    B, T, D = x.shape
    checks.check_positive(op, "sequence length T", T)
    checks.check_c_int_sizes(op, B=B, T=T, D=D)
    y = empty((B, D))
    be.lib.hr_mean_pool_forward(be.f32(x), be.f32(y), B, T, D)
    return y


def mean_pool_backward(be, dy, seq_len):
    op = "mean_pool_backward"
    checks.check_array(op, "dy", dy, ndim=2)
    seq_len, = checks.check_scalars(op, seq_len=seq_len)
    B, D = dy.shape
    checks.check_c_int_sizes(op, B=B, D=D)
    dx = empty((B, seq_len, D))
    be.lib.hr_mean_pool_backward(be.f32(dy), be.f32(dx), B, seq_len, D)
    return dx
